//! The Northflank provider against a local Northflank (`support/northflank_server.rs`): REST with
//! envelopes, validation and a request budget, and the exec WebSocket running real processes.

#[path = "support/northflank_server.rs"]
mod northflank_server;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use northflank_server::{FakeNorthflank, FakeOptions, PROJECT, TOKEN};
use rclaude::provider::northflank::{NorthflankProvider, NorthflankSettings};
use rclaude::provider::{
    ExecEvent, ExecRequest, FileUpload, Provider, ProviderError, Sandbox, SandboxError,
    SandboxSpec, SandboxState, run,
};
use serde_json::{Value, json};

struct Env {
    fake: FakeNorthflank,
    root: std::path::PathBuf,
    workdir: String,
    _vm: tempfile::TempDir,
}

fn env_with(f: impl FnOnce(&mut FakeOptions)) -> Env {
    let vm = tempfile::tempdir().unwrap();
    let root = vm.path().canonicalize().unwrap();
    let mut opts = FakeOptions {
        shared_root: Some(root.clone()),
        ..FakeOptions::default()
    };
    f(&mut opts);
    let fake = FakeNorthflank::start_with(opts);
    Env {
        fake,
        workdir: format!("{}/workspace/repo", root.display()),
        root,
        _vm: vm,
    }
}

fn env() -> Env {
    env_with(|_| {})
}

/// Settings as the CLI reads them (the default, gentle polling included).
fn settings(fake: &FakeNorthflank, project: Option<&str>) -> NorthflankSettings {
    let vars: Vec<(&str, String)> = fake
        .env()
        .into_iter()
        .filter(|(k, _)| *k != "NORTHFLANK_PROJECT_ID")
        .collect();
    NorthflankSettings::from_lookup(
        |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
        project,
    )
    .unwrap()
}

fn provider(fake: &FakeNorthflank) -> NorthflankProvider {
    NorthflankProvider::new(settings(fake, Some(PROJECT))).unwrap()
}

fn spec(workdir: &str) -> SandboxSpec {
    let mut metadata = BTreeMap::new();
    metadata.insert("rclaude.repo".to_string(), "demo".to_string());
    metadata.insert("rclaude.branch".to_string(), "main".to_string());
    metadata.insert("rclaude.session".to_string(), "s-1".to_string());
    let mut env = BTreeMap::new();
    env.insert("GREETING".to_string(), "hello 'world'".to_string());
    SandboxSpec {
        name: "Demo Repo".into(),
        image: Some("ubuntu:24.04".into()),
        cpu: Some(1),
        memory_mb: Some(3000),
        timeout: Some(Duration::from_secs(1800)),
        auto_pause: true,
        workdir: workdir.into(),
        env,
        metadata,
        ..SandboxSpec::default()
    }
}

async fn output(sb: &dyn Sandbox, req: ExecRequest) -> (Vec<u8>, String, i32) {
    let out = run(sb, req).await.unwrap();
    (out.stdout.clone(), out.stderr_str(), out.status.code)
}

async fn text(sb: &dyn Sandbox, cmd: &str) -> String {
    String::from_utf8(output(sb, ExecRequest::shell(cmd)).await.0).unwrap()
}

#[tokio::test]
async fn create_exec_pause_resume_kill() {
    let e = env();
    let p = provider(&e.fake);
    let info = p.create(&spec(&e.workdir)).await.unwrap();
    assert_eq!(info.state, SandboxState::Running);
    assert_eq!(info.workdir, e.workdir);
    let (project, service) = info.id.split_once('/').unwrap();
    assert_eq!(project, PROJECT);
    assert!(service.starts_with("rclaude-demo-repo-"), "{service}");

    // What was asked of Northflank.
    let vols = e.fake.volumes();
    assert_eq!(vols.len(), 1);
    assert_eq!(
        vols[0].mount,
        format!("{}/workspace", e.root.display()),
        "mounted at the workdir's parent"
    );
    assert_eq!(
        (
            vols[0].size,
            vols[0].access_mode.as_str(),
            vols[0].storage_class.as_str()
        ),
        (10240, "ReadWriteMany", "nf-multi-rw")
    );
    let svc = &e.fake.services()[0];
    assert_eq!(svc.id, service);
    assert_eq!(
        svc.plan, "nf-compute-200",
        "1 vCPU and 3000 MB fit the 2/4 plan"
    );
    assert_eq!(svc.image, "ubuntu:24.04");
    assert_eq!(svc.custom_command, "sleep infinity");
    assert_eq!(svc.instances, 1);
    assert_eq!(svc.env["GREETING"], "hello 'world'");
    assert_eq!(svc.volumes, vec![vols[0].id.clone()]);
    assert!(
        svc.description.starts_with("rclaude workdir="),
        "{}",
        svc.description
    );
    let create = &e.fake.requests_to("POST", "/services/deployment")[0];
    assert_eq!(
        create.body.as_ref().unwrap()["createOptions"]["volumesToAttach"][0],
        vols[0].name.as_str()
    );
    assert!(std::path::Path::new(&e.workdir).is_dir(), "workdir made");

    // Commands: the exec protocol as Northflank defines it.
    let sb = p.connect(&info.id).await.unwrap();
    assert_eq!(
        text(&*sb, "pwd; echo \"$GREETING\"").await,
        format!("{}\nhello 'world'\n", e.workdir)
    );
    let inits = e.fake.exec_inits();
    assert!(
        inits
            .iter()
            .all(|c| c["shell"] == "none" && c["encoding"] == "base64" && c["tty"] == false)
    );
    assert!(inits.iter().all(|c| c["command"][0] == "bash"));

    // pause: only the volume survives, processes die.
    text(
        &*sb,
        &format!(
            "echo kept > kept.txt; echo lost > {}/root/lost.txt; (sleep 300 >/dev/null 2>&1 &)",
            e.root.display()
        ),
    )
    .await;
    p.pause(&info.id).await.unwrap();
    let svc = &e.fake.services()[0];
    assert!(svc.paused);
    assert_eq!(svc.processes, 0);
    assert_eq!(
        p.info(&info.id).await.unwrap().unwrap().state,
        SandboxState::Paused
    );
    assert!(
        !e.root.join("root/lost.txt").exists(),
        "the container file system is reset"
    );
    assert!(
        run(&*sb, ExecRequest::shell("true")).await.is_err(),
        "no container to exec in"
    );
    p.pause(&info.id).await.unwrap(); // already paused: fine

    // connect resumes and waits for a running container.
    let sb = p.connect(&info.id).await.unwrap();
    let resumes = e.fake.requests_to("POST", "/resume");
    assert_eq!(resumes.len(), 1);
    assert_eq!(resumes[0].body.as_ref().unwrap()["instances"], 1);
    assert_eq!(text(&*sb, "cat kept.txt").await, "kept\n");

    // A service scaled to zero elsewhere is scaled up again.
    e.fake.scale_to_zero(service);
    assert_eq!(
        p.info(&info.id).await.unwrap().unwrap().state,
        SandboxState::Paused
    );
    let sb = p.connect(&info.id).await.unwrap();
    assert_eq!(text(&*sb, "cat kept.txt").await, "kept\n");

    p.kill(&info.id).await.unwrap();
    let del = &e
        .fake
        .requests_to("DELETE", &format!("/services/{service}"))[0];
    assert_eq!(del.query.as_deref(), Some("delete_child_objects=true"));
    assert!(e.fake.services().is_empty());
    assert!(e.fake.volumes().is_empty(), "the volume went with it");
    assert!(p.info(&info.id).await.unwrap().is_none());
    assert!(matches!(
        p.kill(&info.id).await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        p.connect(&info.id).await,
        Err(ProviderError::NotFound(_))
    ));
    assert_eq!(e.fake.rejected(), 0);
}

#[tokio::test]
async fn exec_streams_bytes_exit_codes_stdin_and_argv() {
    let e = env_with(|o| o.rollout = Duration::from_millis(200));
    let p = provider(&e.fake);
    let info = p.create(&spec(&e.workdir)).await.unwrap();
    let sb = p.connect(&info.id).await.unwrap();

    let out = run(
        &*sb,
        ExecRequest::shell("echo out; echo err >&2; printf 'a\\0b\\1\\1\\1'; exit 4"),
    )
    .await
    .unwrap();
    assert_eq!(
        out.stdout, b"out\na\0b\x01\x01\x01",
        "byte-exact, no newline added"
    );
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.status.code, 4);
    assert_eq!(out.status.status, "exit status 4");

    let mut events = sb.exec(ExecRequest::shell("echo $$")).await.unwrap();
    let Some(Ok(ExecEvent::Started { pid })) = events.next().await else {
        panic!("no start")
    };
    let mut stdout = Vec::new();
    while let Some(ev) = events.next().await {
        if let ExecEvent::Stdout(b) = ev.unwrap() {
            stdout.extend_from_slice(&b);
        }
    }
    assert_eq!(String::from_utf8(stdout).unwrap(), format!("{pid}\n"));

    // Stdin: every byte value, 200 KiB (several payload messages), then EOF.
    let data: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    let (out, _, code) = output(&*sb, ExecRequest::argv(["cat"]).stdin(data.clone())).await;
    assert_eq!(code, 0);
    assert_eq!(out, data);
    let (out, _, _) = output(&*sb, ExecRequest::shell("cat; echo done")).await;
    assert_eq!(out, b"done\n", "no stdin = end of file at once");

    let mut env = BTreeMap::new();
    env.insert("ONE".to_string(), "it's $1".to_string());
    let (out, _, _) = output(
        &*sb,
        ExecRequest::argv(["printf", "%s|", "a b", "$HOME", "*"]).env(env.clone()),
    )
    .await;
    assert_eq!(out, b"a b|$HOME|*|");
    let (out, _, _) = output(
        &*sb,
        ExecRequest::shell("pwd; echo \"$ONE\"")
            .cwd("/tmp")
            .env(env),
    )
    .await;
    assert_eq!(out, b"/tmp\nit's $1\n");

    let err = match sb
        .exec(ExecRequest::shell("true").cwd("/no/such/dir"))
        .await
    {
        Err(e) => e,
        Ok(_) => panic!("started in a missing directory"),
    };
    assert!(
        matches!(&err, SandboxError::NotFound(m) if m.contains("/no/such/dir")),
        "{err}"
    );
    p.kill(&info.id).await.unwrap();
}

#[tokio::test]
async fn timeout_and_kill_stop_the_whole_process_tree() {
    let e = env_with(|o| o.rollout = Duration::from_millis(200));
    let p = provider(&e.fake);
    let info = p.create(&spec(&e.workdir)).await.unwrap();
    let sb = p.connect(&info.id).await.unwrap();

    let out = run(
        &*sb,
        ExecRequest::shell("echo started; sleep 58.5; echo never")
            .timeout(Some(Duration::from_millis(500))),
    )
    .await
    .unwrap();
    assert_eq!(out.stdout_str(), "started\n");
    assert_eq!(
        (out.status.code, out.status.status.as_str()),
        (-1, "signal: killed")
    );

    let mut events = sb
        .exec(ExecRequest::shell("sleep 58.5; echo never"))
        .await
        .unwrap();
    let Some(Ok(ExecEvent::Started { pid })) = events.next().await else {
        panic!("no start")
    };
    sb.kill_process(pid, false).await.unwrap();
    let mut status = None;
    while let Some(ev) = events.next().await {
        if let ExecEvent::Exited(s) = ev.unwrap() {
            status = Some(s);
        }
    }
    assert_eq!(status.unwrap().status, "signal: terminated");
    assert_eq!(
        text(&*sb, "pgrep -f '[s]leep 58.5' | wc -l").await.trim(),
        "0"
    );
    assert!(matches!(
        sb.kill_process(pid, true).await,
        Err(SandboxError::NotFound(_))
    ));
    p.kill(&info.id).await.unwrap();
}

#[tokio::test]
async fn files_round_trip_byte_exact_over_exec() {
    let e = env_with(|o| o.rollout = Duration::from_millis(200));
    let p = provider(&e.fake);
    let info = p.create(&spec(&e.workdir)).await.unwrap();
    let sb = p.connect(&info.id).await.unwrap();
    let local = tempfile::tempdir().unwrap();

    let mut data = Vec::with_capacity(5 << 20);
    let mut x: u32 = 99;
    while data.len() < 5 << 20 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        data.push((x >> 16) as u8);
    }
    let src = local.path().join("big.bin");
    std::fs::write(&src, &data).unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    let remote = format!("{}/deep/er/big.bin", e.workdir);
    let n = sb
        .upload(
            &src,
            &remote,
            Some(Arc::new(move |b| s2.store(b, Ordering::SeqCst))),
        )
        .await
        .unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(seen.load(Ordering::SeqCst), data.len() as u64);
    assert_eq!(std::fs::read(&remote).unwrap(), data);
    let leftovers: Vec<_> = std::fs::read_dir(format!("{}/deep/er", e.workdir))
        .unwrap()
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    let back = local.path().join("x/back.bin");
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    let n = sb
        .download(
            &remote,
            &back,
            Some(Arc::new(move |b| s2.store(b, Ordering::SeqCst))),
        )
        .await
        .unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(std::fs::read(&back).unwrap(), data);
    assert_eq!(seen.load(Ordering::SeqCst), data.len() as u64);
    assert_eq!(
        sb.stat(&remote).await.unwrap().unwrap().size,
        data.len() as u64
    );

    sb.write_files(vec![
        FileUpload {
            path: format!("{}/a.txt", e.workdir),
            contents: "A\n".into(),
        },
        FileUpload {
            path: format!("{}/new/dir/b.bin", e.workdir),
            contents: vec![0u8, 1, 2, 255].into(),
        },
        FileUpload {
            path: format!("{}/{}", e.workdir, "long-".repeat(30)),
            contents: "L".into(),
        },
    ])
    .await
    .unwrap();
    assert_eq!(
        sb.read_file(&format!("{}/a.txt", e.workdir)).await.unwrap(),
        "A\n"
    );
    assert_eq!(
        &sb.read_file(&format!("{}/new/dir/b.bin", e.workdir))
            .await
            .unwrap()[..],
        &[0u8, 1, 2, 255]
    );
    assert_eq!(
        sb.read_file(&format!("{}/{}", e.workdir, "long-".repeat(30)))
            .await
            .unwrap(),
        "L"
    );

    let d = format!("{}/made/deep", e.workdir);
    assert!(sb.make_dir(&d).await.unwrap());
    assert!(!sb.make_dir(&d).await.unwrap());
    assert!(matches!(
        sb.make_dir(&format!("{}/a.txt", e.workdir)).await,
        Err(SandboxError::AlreadyExists(_))
    ));
    let st = sb.stat(&d).await.unwrap().unwrap();
    assert!(st.is_dir());
    sb.write_files(vec![FileUpload {
        path: format!("{}/b.txt", e.workdir),
        contents: "B".into(),
    }])
    .await
    .unwrap();
    sb.rename(
        &format!("{}/b.txt", e.workdir),
        &format!("{}/a.txt", e.workdir),
    )
    .await
    .unwrap();
    assert_eq!(
        sb.read_file(&format!("{}/a.txt", e.workdir)).await.unwrap(),
        "B"
    );
    assert!(
        sb.stat(&format!("{}/b.txt", e.workdir))
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        sb.rename(
            &format!("{}/missing", e.workdir),
            &format!("{}/x", e.workdir)
        )
        .await,
        Err(SandboxError::NotFound(_))
    ));
    assert!(matches!(
        sb.read_file(&format!("{}/missing", e.workdir)).await,
        Err(SandboxError::NotFound(_))
    ));
    assert!(matches!(
        sb.read_file(&e.workdir).await,
        Err(SandboxError::InvalidArgument(_))
    ));
    sb.remove(&format!("{}/new", e.workdir)).await.unwrap();
    sb.remove(&format!("{}/new", e.workdir)).await.unwrap();
    assert!(
        sb.stat(&format!("{}/new", e.workdir))
            .await
            .unwrap()
            .is_none()
    );
    p.kill(&info.id).await.unwrap();
}

#[tokio::test]
async fn polling_stays_inside_a_small_budget() {
    // A rollout of 4 s against 16 requests per hour: polling every few seconds fits, a tight
    // loop would be refused.
    let e = env_with(|o| {
        o.rollout = Duration::from_secs(4);
        o.budget = 16;
    });
    let p = provider(&e.fake);
    let info = p.create(&spec(&e.workdir)).await.unwrap();
    p.pause(&info.id).await.unwrap();
    let sb = p.connect(&info.id).await.unwrap();
    assert_eq!(text(&*sb, "echo ok").await, "ok\n");
    p.kill(&info.id).await.unwrap();
    assert_eq!(e.fake.rejected(), 0, "no request was refused");
    assert!(e.fake.used() <= 16);
    let budget = p.budget();
    assert_eq!(budget.limit, Some(16));
    assert_eq!(budget.sent, e.fake.used());
}

#[tokio::test]
async fn a_spent_budget_fails_fast_with_a_hint() {
    let e = env_with(|o| {
        o.rollout = Duration::from_secs(30);
        o.budget = 3;
    });
    let p = provider(&e.fake);
    let err = p.create(&spec(&e.workdir)).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("budget") && text.contains("1,000 API requests per hour"),
        "{text}"
    );
    assert_eq!(
        e.fake.rejected(),
        0,
        "the client stopped before being refused"
    );
    assert_eq!(e.fake.used(), 3);
}

#[tokio::test]
async fn a_near_reset_is_waited_for() {
    let e = env_with(|o| {
        o.rollout = Duration::from_millis(200);
        o.budget = 3;
        o.window = Duration::from_secs(3);
    });
    let p = provider(&e.fake);
    let info = p.create(&spec(&e.workdir)).await.unwrap();
    p.kill(&info.id).await.unwrap();
    assert_eq!(e.fake.rejected(), 0);
}

#[tokio::test]
async fn errors_say_what_to_do_and_leave_nothing_behind() {
    let e = env_with(|o| {
        o.rollout = Duration::from_millis(200);
        o.failing_images = vec!["registry.example/broken:1".into()];
    });
    let mut s = settings(&e.fake, Some(PROJECT));
    s.token = "nf-revoked".into();
    let text = NorthflankProvider::new(s)
        .unwrap()
        .create(&spec(&e.workdir))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("401") && text.contains("NORTHFLANK_API_TOKEN"),
        "{text}"
    );
    assert!(!text.contains("nf-revoked"));

    let text = NorthflankProvider::new(settings(&e.fake, Some("no-such-project")))
        .unwrap()
        .create(&spec(&e.workdir))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("project \"no-such-project\" does not exist"),
        "{text}"
    );

    let text = NorthflankProvider::new(settings(&e.fake, None))
        .unwrap()
        .create(&spec(&e.workdir))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("NORTHFLANK_PROJECT_ID") && text.contains("[sandbox]"),
        "{text}"
    );

    let p = provider(&e.fake);
    let mut sp = spec(&e.workdir);
    sp.image = Some("registry.example/broken:1".into());
    let text = p.create(&sp).await.unwrap_err().to_string();
    assert!(text.contains("failed") && text.contains("hint:"), "{text}");
    assert!(
        e.fake.services().is_empty() && e.fake.volumes().is_empty(),
        "cleaned up"
    );

    let mut sp = spec(&e.workdir);
    sp.image = Some(" ".into());
    sp.cpu = Some(999);
    sp.workdir = "/repo".into();
    let text = p.create(&sp).await.unwrap_err().to_string();
    assert!(text.contains("too shallow"), "{text}");
    assert!(matches!(
        p.info("not-an-id").await,
        Err(ProviderError::Config(_))
    ));
    assert!(
        p.info(&format!("{PROJECT}/missing-svc"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn list_pages_through_rclaude_services_only() {
    let e = env_with(|o| {
        o.shared_root = None;
        o.rollout = Duration::from_millis(100);
        o.page_size = 1;
    });
    let p = provider(&e.fake);
    let a = p.create(&spec("/workspace/repo")).await.unwrap();
    let b = p.create(&spec("/home/user/repo")).await.unwrap();
    assert_eq!(
        b.workdir, "/workspace/repo",
        "the config's default workdir moves onto the volume"
    );
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/v1/projects/{PROJECT}/services/deployment",
            e.fake.url
        ))
        .bearer_auth(TOKEN)
        .json(&json!({
            "name": "someone-else",
            "billing": { "deploymentPlan": "nf-compute-20" },
            "deployment": { "instances": 1, "external": { "imagePath": "nginx" } },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut listed = p.list().await.unwrap();
    listed.sort_by(|x, y| x.id.cmp(&y.id));
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(
        listed.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        want
    );
    assert!(listed.iter().all(|s| s.metadata["rclaude.repo"] == "demo" && s.metadata["rclaude.branch"] == "main"));
    assert_eq!(
        e.fake.requests_to("GET", "/services").len(),
        3,
        "one page per service"
    );
    p.kill(&a.id).await.unwrap();
    p.kill(&b.id).await.unwrap();
}

#[tokio::test]
async fn the_fake_validates_like_northflank() {
    let e = env();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/projects/{PROJECT}/services/deployment", e.fake.url);
    let r = http.post(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("x-ratelimit-remaining"));
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string());
    for bad in [
        json!({ "name": "ok-name", "billing": { "deploymentPlan": "nf-compute-200" }, "deployment": { "instances": 1, "external": { "imagePath": "x" } }, "extra": 1 }),
        json!({ "name": "ok-name", "billing": { "deploymentPlan": "huge" }, "deployment": { "instances": 1, "external": { "imagePath": "x" } } }),
        json!({ "name": "9starts-with-digit", "billing": { "deploymentPlan": "nf-compute-200" }, "deployment": { "instances": 1, "external": { "imagePath": "x" } } }),
        json!({ "name": "ok-name", "billing": { "deploymentPlan": "nf-compute-200" }, "deployment": { "instances": 1, "external": { "imagePath": "x" }, "docker": { "configType": "customCommand" } } }),
        json!({ "name": "ok-name", "billing": { "deploymentPlan": "nf-compute-200" }, "deployment": { "instances": 1, "external": { "imagePath": "x" } }, "createOptions": { "volumesToAttach": ["nope"] } }),
    ] {
        let r = http
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    // Exec: the token goes in the first message; a wrong one is refused.
    let ws_url = format!(
        "ws://{}/v1/command-exec/projects/{PROJECT}/services/x",
        e.fake.addr
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        json!({ "type": "init", "data": { "auth": { "type": "apiToken", "apiToken": "wrong" }, "context": { "command": ["true"], "shell": "none" } } }).to_string().into(),
    ))
    .await
    .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    let v: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(v["data"]["auth"], "failed");
}
