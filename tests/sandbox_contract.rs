//! One contract for every provider: the same lifecycle and file/process scenario run against
//! the local provider (real `rclaude agent` processes) and against each cloud provider's local
//! fake (E2B, Daytona, Northflank; see `tests/support/*_server.rs`). Provider-specific behaviour
//! (request shapes, errors, budgets) stays in each provider's own test file.

#[path = "support/daytona_server.rs"]
mod daytona_server;
#[path = "support/e2b_server.rs"]
mod e2b_server;
#[path = "support/northflank_server.rs"]
mod northflank_server;

use std::collections::BTreeMap;
use std::time::Duration;

use rclaude::provider::daytona::{DaytonaProvider, DaytonaSettings};
use rclaude::provider::e2b::{E2bProvider, E2bSettings};
use rclaude::provider::local::LocalProvider;
use rclaude::provider::northflank::{NorthflankProvider, NorthflankSettings};
use rclaude::provider::{
    ExecRequest, FileUpload, Provider, ProviderError, SandboxSpec, SandboxState, run,
};

fn lookup(vars: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
}

fn spec(workdir: &str, image: Option<&str>, session: &str) -> SandboxSpec {
    SandboxSpec {
        name: "contract".into(),
        image: image.map(str::to_string),
        timeout: Some(Duration::from_secs(1800)),
        auto_pause: true,
        workdir: workdir.into(),
        env: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
        metadata: BTreeMap::from([
            ("rclaude.repo".to_string(), "contract".to_string()),
            ("rclaude.branch".to_string(), "main".to_string()),
            ("rclaude.session".to_string(), session.to_string()),
        ]),
        ..SandboxSpec::default()
    }
}

/// The scenario every provider must pass.
async fn contract(p: &dyn Provider, workdir: &str, image: Option<&str>) {
    let name = p.name();
    // Create: running, with the workdir we asked for (or the provider's own for local).
    let info = p.create(&spec(workdir, image, "s-1")).await.unwrap();
    assert_eq!(info.state, SandboxState::Running, "{name}");
    assert_eq!(info.provider, name);
    let sbx = p.connect(&info.id).await.unwrap();
    assert_eq!(sbx.id(), info.id, "{name}");
    let wd = sbx.workdir().to_string();

    // Processes: output, exit codes, the spec's environment, the workdir as cwd.
    let out = run(
        &*sbx,
        ExecRequest::shell("echo $GREETING; pwd; echo err >&2; exit 3"),
    )
    .await
    .unwrap();
    assert_eq!(out.status.code, 3, "{name}: {}", out.stderr_str());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("hello"), "{name}: {stdout}");
    assert_eq!(lines.next(), Some(wd.as_str()), "{name}: {stdout}");
    assert!(out.stderr_str().contains("err"), "{name}");

    // Files: write, read back byte-exact, stat, rename, upload/download, remove.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let a = format!("{wd}/dir/a.bin");
    sbx.make_dir(&format!("{wd}/dir")).await.unwrap();
    sbx.write_files(vec![FileUpload {
        path: a.clone(),
        contents: bytes.clone().into(),
    }])
    .await
    .unwrap();
    assert_eq!(sbx.read_file(&a).await.unwrap().as_ref(), bytes, "{name}");
    let st = sbx.stat(&a).await.unwrap().expect("stat of a written file");
    assert_eq!(st.size, bytes.len() as u64, "{name}");
    let b = format!("{wd}/dir/b.bin");
    sbx.rename(&a, &b).await.unwrap();
    assert!(sbx.stat(&a).await.unwrap().is_none(), "{name}");
    let local = tempfile::tempdir().unwrap();
    let down = local.path().join("b.bin");
    assert_eq!(
        sbx.download(&b, &down, None).await.unwrap(),
        bytes.len() as u64
    );
    assert_eq!(std::fs::read(&down).unwrap(), bytes, "{name}");
    let up = local.path().join("c.bin");
    std::fs::write(&up, b"uploaded\n").unwrap();
    let c = format!("{wd}/dir/c.bin");
    sbx.upload(&up, &c, None).await.unwrap();
    let cat = run(&*sbx, ExecRequest::shell("cat dir/c.bin"))
        .await
        .unwrap();
    assert_eq!(cat.stdout, b"uploaded\n", "{name}");
    sbx.remove(&format!("{wd}/dir")).await.unwrap();
    assert!(sbx.stat(&b).await.unwrap().is_none(), "{name}");
    sbx.remove(&format!("{wd}/dir")).await.unwrap(); // missing is not an error

    // Pause keeps the files; connect resumes.
    sbx.write_files(vec![FileUpload {
        path: format!("{wd}/kept.txt"),
        contents: "kept\n".into(),
    }])
    .await
    .unwrap();
    drop(sbx);
    p.pause(&info.id).await.unwrap();
    let paused = p
        .info(&info.id)
        .await
        .unwrap()
        .expect("a paused sandbox exists");
    assert_eq!(paused.state, SandboxState::Paused, "{name}");
    let sbx = p.connect(&info.id).await.unwrap();
    assert_eq!(
        p.info(&info.id).await.unwrap().unwrap().state,
        SandboxState::Running,
        "{name}"
    );
    let kept = run(&*sbx, ExecRequest::shell("cat kept.txt"))
        .await
        .unwrap();
    assert_eq!(kept.stdout, b"kept\n", "{name}");
    drop(sbx);

    // List: every sandbox made, across pages, with its state.
    let second = p.create(&spec(workdir, image, "s-2")).await.unwrap();
    let third = p.create(&spec(workdir, image, "s-3")).await.unwrap();
    let listed = p.list().await.unwrap();
    for id in [&info.id, &second.id, &third.id] {
        assert!(
            listed.iter().any(|s| &s.id == id),
            "{name}: {id} not in {listed:?}"
        );
    }

    // Kill: gone, and connecting says so.
    for id in [&info.id, &second.id, &third.id] {
        p.kill(id).await.unwrap();
        assert!(p.info(id).await.unwrap().is_none(), "{name}: {id}");
    }
    match p.connect(&info.id).await {
        Err(ProviderError::NotFound(_)) => {}
        Err(e) => panic!("{name}: connecting to a killed sandbox: {e:?}"),
        Ok(_) => panic!("{name}: connected to a killed sandbox"),
    }
    assert!(
        !p.list().await.unwrap().iter().any(|s| s.id == info.id),
        "{name}"
    );
}

/// All four in one test: the local provider reads `RCLAUDE_HOME` and `RCLAUDE_AGENT_BIN`
/// from the environment, which must not change while other tests run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_keeps_the_sandbox_contract() {
    let home = tempfile::tempdir().unwrap();
    // SAFETY: set before any thread of this test binary reads the environment.
    unsafe {
        std::env::set_var("RCLAUDE_HOME", home.path());
        std::env::set_var("RCLAUDE_AGENT_BIN", env!("CARGO_BIN_EXE_rclaude"));
    }
    let vm = tempfile::tempdir().unwrap();
    let root = vm.path().canonicalize().unwrap();

    contract(&LocalProvider::new(), "/unused", None).await;

    let e2b = e2b_server::FakeE2b::start_with(e2b_server::FakeOptions {
        shared_root: Some(root.join("e2b")),
        ..Default::default()
    });
    let p = E2bProvider::new(E2bSettings::from_lookup(lookup(e2b.env())).unwrap()).unwrap();
    let wd = format!("{}/e2b/home/user/repo", root.display());
    contract(&p, &wd, Some("base")).await;

    let daytona = daytona_server::FakeDaytona::start_with(daytona_server::FakeOptions {
        shared_root: Some(root.join("daytona")),
        ..Default::default()
    });
    let mut s = DaytonaSettings::from_lookup(lookup(daytona.env()), None).unwrap();
    s.poll_interval = Duration::from_millis(20);
    s.max_poll_interval = Duration::from_millis(200);
    let p = DaytonaProvider::new(s).unwrap();
    let wd = format!("{}/daytona/home/daytona/repo", root.display());
    contract(&p, &wd, Some("python-dev")).await;

    let nf = northflank_server::FakeNorthflank::start_with(northflank_server::FakeOptions {
        shared_root: Some(root.join("northflank")),
        ..Default::default()
    });
    let s = NorthflankSettings::from_lookup(lookup(nf.env()), Some(northflank_server::PROJECT))
        .unwrap();
    let p = NorthflankProvider::new(s).unwrap();
    let wd = format!("{}/northflank/workspace/repo", root.display());
    contract(&p, &wd, Some("ubuntu:24.04")).await;
}

/// Two handles on one local sandboxes directory (what two server replicas on one machine are):
/// an agent the other one stopped, or restarted on another port, is never answered from the
/// first one's memory of it, however recently it answered there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_sandbox_stopped_by_another_process_is_not_answered_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let agent = std::path::PathBuf::from(env!("CARGO_BIN_EXE_rclaude"));
    let one = LocalProvider::at(dir.path().to_path_buf(), agent.clone());
    let two = LocalProvider::at(dir.path().to_path_buf(), agent);
    let info = one.create(&SandboxSpec::default()).await.unwrap();
    let first = one.connect(&info.id).await.unwrap();
    assert_eq!(
        run(&*first, ExecRequest::shell("echo one"))
            .await
            .unwrap()
            .stdout_str(),
        "one\n"
    );
    // The other process stops the agent and starts it again (a new port), within the window
    // in which `one` trusts what answered it.
    two.pause(&info.id).await.unwrap();
    let _ = two.connect(&info.id).await.unwrap();
    let again = one.connect(&info.id).await.unwrap();
    assert_eq!(
        run(&*again, ExecRequest::shell("echo again"))
            .await
            .unwrap()
            .stdout_str(),
        "again\n"
    );
    two.pause(&info.id).await.unwrap();
    assert!(matches!(
        one.info(&info.id).await.unwrap().map(|i| i.state),
        Some(SandboxState::Paused) | Some(SandboxState::Other(_))
    ));
    one.kill(&info.id).await.unwrap();
}
