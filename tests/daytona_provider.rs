//! The Daytona provider against a local Daytona (`support/daytona_server.rs`): real HTTP and
//! WebSockets on loopback, the control plane validated like Daytona's, and a toolbox running
//! real processes with the daemon's session wrapper.

#[path = "support/daytona_server.rs"]
mod daytona_server;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use daytona_server::{API_KEY, FakeDaytona, FakeOptions};
use futures::StreamExt;
use rclaude::provider::daytona::{
    DaytonaProvider, DaytonaSandbox, DaytonaSettings, MANAGED_KEY, WORKDIR_KEY,
};
use rclaude::provider::{
    ClientAccess, ExecEvent, ExecRequest, FileUpload, Provider, ProviderError, Sandbox,
    SandboxError, SandboxSpec, SandboxState, run,
};
use serde_json::{Value, json};

struct Env {
    fake: FakeDaytona,
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
    let fake = FakeDaytona::start_with(opts);
    Env {
        fake,
        workdir: format!("{}/home/daytona/repo", root.display()),
        _vm: vm,
    }
}

fn env() -> Env {
    env_with(|_| {})
}

/// Settings exactly as the CLI reads them: from the SDK's variables, here pointing at the fake.
fn settings(fake: &FakeDaytona) -> DaytonaSettings {
    let vars = fake.env();
    let mut s = DaytonaSettings::from_lookup(
        |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
        None,
    )
    .unwrap();
    s.poll_interval = Duration::from_millis(20);
    s.max_poll_interval = Duration::from_millis(200);
    s.state_timeout = Duration::from_secs(30);
    s
}

fn provider(fake: &FakeDaytona) -> DaytonaProvider {
    DaytonaProvider::new(settings(fake)).unwrap()
}

fn spec(workdir: &str) -> SandboxSpec {
    let mut metadata = BTreeMap::new();
    metadata.insert("rclaude.repo".to_string(), "demo".to_string());
    metadata.insert("rclaude.branch".to_string(), "main".to_string());
    metadata.insert("rclaude.session".to_string(), "s-1".to_string());
    let mut env = BTreeMap::new();
    env.insert("GREETING".to_string(), "hello 'world'".to_string());
    SandboxSpec {
        name: "demo".into(),
        image: Some("python-dev".into()),
        timeout: Some(Duration::from_secs(30 * 60)),
        auto_pause: true,
        workdir: workdir.into(),
        env,
        metadata,
        ..SandboxSpec::default()
    }
}

async fn output(sb: &dyn Sandbox, req: ExecRequest) -> (String, String, i32) {
    let out = run(sb, req).await.unwrap();
    (out.stdout_str(), out.stderr_str(), out.status.code)
}

#[tokio::test]
async fn create_exec_pause_resume_kill() {
    let e = env();
    let p = provider(&e.fake);
    let info = p.create(&spec(&e.workdir)).await.unwrap();
    assert_eq!(info.state, SandboxState::Running);
    assert_eq!(info.workdir, e.workdir);
    assert!(info.end_at.is_some(), "auto-stop time is known: {info:?}");

    // The create request as Daytona expects it.
    let create = &e.fake.requests_to("POST", "/api/sandbox")[0];
    let body = create.body.as_ref().unwrap();
    assert_eq!(body["snapshot"], "python-dev");
    assert!(body.get("buildInfo").is_none());
    assert!(
        body.get("cpu").is_none(),
        "no resources with a snapshot: {body}"
    );
    assert_eq!(body["autoStopInterval"], 30);
    assert!(body.get("autoDeleteInterval").is_none());
    assert_eq!(body["labels"][MANAGED_KEY], "true");
    assert_eq!(body["labels"][WORKDIR_KEY], e.workdir.as_str());
    assert_eq!(body["labels"]["rclaude.repo"], "demo");
    assert_eq!(body["env"]["GREETING"], "hello 'world'");
    assert_eq!(create.headers["authorization"], format!("Bearer {API_KEY}"));
    assert_eq!(create.headers["x-daytona-sdk-version"], "0.218.0");
    assert!(std::path::Path::new(&e.workdir).is_dir(), "workdir made");

    // Commands run in the workdir, with the sandbox env.
    let sb = p.connect(&info.id).await.unwrap();
    assert_eq!(sb.workdir(), e.workdir);
    let (out, _, code) = output(&*sb, ExecRequest::shell("pwd; echo \"$GREETING\"")).await;
    assert_eq!(code, 0);
    assert_eq!(out, format!("{}\nhello 'world'\n", e.workdir));
    let (_, _, code) = output(
        &*sb,
        ExecRequest::shell("echo keep > kept.txt; (sleep 300 &)"),
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        e.fake.sandbox(&info.id).unwrap().sessions,
        0,
        "one session per command, deleted after"
    );

    // pause = stop: files stay, processes go.
    p.pause(&info.id).await.unwrap();
    assert_eq!(e.fake.sandbox(&info.id).unwrap().state, "stopped");
    assert_eq!(
        p.info(&info.id).await.unwrap().unwrap().state,
        SandboxState::Paused
    );
    p.pause(&info.id).await.unwrap(); // already stopped: nothing to do
    assert_eq!(e.fake.requests_to("POST", "/stop").len(), 1);
    // Toolbox refuses a stopped sandbox.
    assert!(run(&*sb, ExecRequest::shell("true")).await.is_err());

    // connect resumes.
    let sb = p.connect(&info.id).await.unwrap();
    assert_eq!(e.fake.sandbox(&info.id).unwrap().state, "started");
    let (out, _, _) = output(&*sb, ExecRequest::shell("cat kept.txt")).await;
    assert_eq!(out, "keep\n");

    p.kill(&info.id).await.unwrap();
    assert!(p.info(&info.id).await.unwrap().is_none());
    assert!(matches!(
        p.kill(&info.id).await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        p.connect(&info.id).await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(!std::path::Path::new(&e.workdir).exists(), "disk removed");
}

#[tokio::test]
async fn an_image_is_built_with_resources_and_the_default_workdir_moves_home() {
    let e = env_with(|o| o.shared_root = None);
    let p = provider(&e.fake);
    let mut s = spec("/home/user/repo");
    s.image = Some("ubuntu:24.04".into());
    s.cpu = Some(2);
    s.memory_mb = Some(3000);
    s.auto_pause = false;
    s.timeout = Some(Duration::from_secs(90));
    let info = p.create(&s).await.unwrap();
    assert_eq!(info.workdir, "/home/daytona/repo");
    let sbx = e.fake.sandbox(&info.id).unwrap();
    assert_eq!(sbx.dockerfile.as_deref(), Some("FROM ubuntu:24.04\n"));
    assert_eq!((sbx.cpu, sbx.memory), (2, 3), "memory in GiB, rounded up");
    assert_eq!(sbx.auto_stop_interval, 2, "timeout in minutes, rounded up");
    assert_eq!(
        sbx.auto_delete_interval, 0,
        "without auto_pause it is deleted when it stops"
    );
    assert_eq!(sbx.labels[WORKDIR_KEY], "/home/daytona/repo");
    let states: Vec<String> = e
        .fake
        .requests_to("GET", &format!("/api/sandbox/{}", info.id))
        .iter()
        .map(|r| r.status.to_string())
        .collect();
    assert!(states.len() >= 2, "state was polled: {states:?}");
    p.kill(&info.id).await.unwrap();
}

#[tokio::test]
async fn exec_streams_split_markers_exit_codes_stdin_and_argv() {
    let e = env();
    let p = provider(&e.fake);
    let info = p.create(&spec(&e.workdir)).await.unwrap();
    let sb = p.connect(&info.id).await.unwrap();

    // Interleaved stdout and stderr, every marker split across frames by the fake.
    let (out, err, code) = output(
        &*sb,
        ExecRequest::shell("for i in $(seq 1 150); do echo out$i; echo err$i >&2; done; exit 3"),
    )
    .await;
    assert_eq!(code, 3);
    let want_out: String = (1..=150).map(|i| format!("out{i}\n")).collect();
    let want_err: String = (1..=150).map(|i| format!("err{i}\n")).collect();
    assert_eq!(out, want_out);
    assert_eq!(err, want_err);

    // The stream starts with the real pid and ends with the exit status.
    let mut events = sb
        .exec(ExecRequest::shell("echo $$; echo bye"))
        .await
        .unwrap();
    let first = events.next().await.unwrap().unwrap();
    let ExecEvent::Started { pid } = first else {
        panic!("{first:?}")
    };
    let mut stdout = Vec::new();
    let mut exited = None;
    while let Some(ev) = events.next().await {
        match ev.unwrap() {
            ExecEvent::Stdout(b) => stdout.extend_from_slice(&b),
            ExecEvent::Exited(s) => exited = Some(s),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(String::from_utf8(stdout).unwrap(), format!("{pid}\nbye\n"));
    assert_eq!(exited.unwrap().code, 0);

    // Stdin bytes arrive exactly (no newline added) and end with EOF; no stdin = EOF at once.
    let data = b"line1\nline2 \x01\x01\x01 no newline".to_vec();
    let (out, _, _) = output(
        &*sb,
        ExecRequest::shell("wc -c; ls /tmp | grep -c rclaude-stdin- || true").stdin(data.clone()),
    )
    .await;
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap().trim(), data.len().to_string());
    assert_eq!(
        lines.next().unwrap().trim(),
        "0",
        "the stdin file was removed"
    );
    let (out, _, code) = output(&*sb, ExecRequest::shell("cat; echo done")).await;
    assert_eq!((out.as_str(), code), ("done\n", 0));

    // argv is passed verbatim; env and cwd per command.
    let mut env = BTreeMap::new();
    env.insert("ONE".to_string(), "it's $1".to_string());
    let (out, _, _) = output(
        &*sb,
        ExecRequest::argv(["printf", "%s|", "a b", "$HOME", "*"]).env(env.clone()),
    )
    .await;
    assert_eq!(
        out, "a b|$HOME|*|\n",
        "a last line without newline gets one (Daytona relays lines)"
    );
    let (out, _, _) = output(
        &*sb,
        ExecRequest::shell("pwd; echo \"$ONE\"")
            .cwd("/tmp")
            .env(env),
    )
    .await;
    assert_eq!(out, "/tmp\nit's $1\n");

    // A missing working directory fails the exec itself, like envd.
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
    assert_eq!(e.fake.sandbox(&info.id).unwrap().sessions, 0);
    p.kill(&info.id).await.unwrap();
}

#[tokio::test]
async fn timeout_and_kill_delete_the_session() {
    let e = env();
    let p = provider(&e.fake);
    let info = p.create(&spec(&e.workdir)).await.unwrap();
    let sb = p.connect(&info.id).await.unwrap();

    let out = run(
        &*sb,
        ExecRequest::shell("echo started; sleep 59.5; echo never")
            .timeout(Some(Duration::from_millis(500))),
    )
    .await
    .unwrap();
    assert_eq!(out.stdout_str(), "started\n");
    assert_eq!(out.status.code, -1);
    assert_eq!(out.status.status, "signal: killed");
    assert_eq!(out.status.shell_code(), 137);

    let mut events = sb
        .exec(ExecRequest::shell("sleep 59.5; echo never"))
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
    assert!(
        !e.fake
            .requests_containing("DELETE", "/process/session/")
            .is_empty()
    );
    // The session's processes are gone.
    let (out, _, _) = output(&*sb, ExecRequest::shell("pgrep -f '[s]leep 59.5' | wc -l")).await;
    assert_eq!(out.trim(), "0");
    assert_eq!(e.fake.sandbox(&info.id).unwrap().sessions, 0);
    p.kill(&info.id).await.unwrap();
}

#[tokio::test]
async fn files_round_trip_byte_exact() {
    let e = env();
    let p = provider(&e.fake);
    let info = p.create(&spec(&e.workdir)).await.unwrap();
    let sb = p.connect(&info.id).await.unwrap();
    let local = tempfile::tempdir().unwrap();

    // 5 MiB of every byte value, markers included.
    let mut data = Vec::with_capacity(5 << 20);
    let mut x: u32 = 12345;
    while data.len() < 5 << 20 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        data.push((x >> 16) as u8);
        if data.len() % 4096 == 0 {
            data.extend_from_slice(&[1, 1, 1, 2, 2, 2, 0, b'\n']);
        }
    }
    let src = local.path().join("big.bin");
    std::fs::write(&src, &data).unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    let remote = format!("{}/nested/dir/big.bin", e.workdir);
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
    let st = sb.stat(&remote).await.unwrap().unwrap();
    assert_eq!(st.size, data.len() as u64);
    let back = local.path().join("back/big.bin");
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

    // Small files, several at once, parents created.
    sb.write_files(vec![
        FileUpload {
            path: format!("{}/a.txt", e.workdir),
            contents: "A\n".into(),
        },
        FileUpload {
            path: format!("{}/new/b.bin", e.workdir),
            contents: vec![0u8, 1, 1, 1, 255].into(),
        },
    ])
    .await
    .unwrap();
    assert_eq!(
        sb.read_file(&format!("{}/a.txt", e.workdir)).await.unwrap(),
        "A\n"
    );
    assert_eq!(
        &sb.read_file(&format!("{}/new/b.bin", e.workdir))
            .await
            .unwrap()[..],
        &[0u8, 1, 1, 1, 255]
    );
    let uploads = e.fake.requests_to("POST", "/files/bulk-upload");
    assert!(
        uploads
            .iter()
            .all(|r| r.headers["content-type"].starts_with("multipart/form-data"))
    );

    // stat, make_dir, rename (also over an existing file), remove.
    let d = format!("{}/made/deep", e.workdir);
    assert!(sb.make_dir(&d).await.unwrap());
    assert!(!sb.make_dir(&d).await.unwrap());
    assert!(sb.make_dir(&format!("{}/a.txt", e.workdir)).await.is_err());
    let dir = sb.stat(&d).await.unwrap().unwrap();
    assert!(dir.is_dir());
    sb.rename(
        &format!("{}/a.txt", e.workdir),
        &format!("{}/c.txt", e.workdir),
    )
    .await
    .unwrap();
    sb.write_files(vec![FileUpload {
        path: format!("{}/d.txt", e.workdir),
        contents: "D".into(),
    }])
    .await
    .unwrap();
    sb.rename(
        &format!("{}/d.txt", e.workdir),
        &format!("{}/c.txt", e.workdir),
    )
    .await
    .unwrap();
    assert_eq!(
        sb.read_file(&format!("{}/c.txt", e.workdir)).await.unwrap(),
        "D"
    );
    assert!(
        sb.stat(&format!("{}/d.txt", e.workdir))
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
    sb.remove(&format!("{}/new", e.workdir)).await.unwrap();
    assert!(
        sb.stat(&format!("{}/new", e.workdir))
            .await
            .unwrap()
            .is_none()
    );
    sb.remove(&format!("{}/new", e.workdir)).await.unwrap();
    assert!(matches!(
        sb.read_file(&format!("{}/missing", e.workdir)).await,
        Err(SandboxError::NotFound(_))
    ));
    assert!(sb.read_file("relative/path").await.is_err());
    p.kill(&info.id).await.unwrap();
}

#[tokio::test]
async fn archive_auto_stop_and_keep_alive() {
    let e = env();
    let p = provider(&e.fake);
    let info = p.create(&spec(&e.workdir)).await.unwrap();

    // keep_alive resets Daytona's inactivity timer.
    e.fake.set_idle(&info.id, Duration::from_secs(20 * 60));
    p.keep_alive(&info.id, Duration::from_secs(1800))
        .await
        .unwrap();
    assert_eq!(e.fake.requests_to("POST", "/last-activity").len(), 1);
    assert_eq!(
        p.info(&info.id).await.unwrap().unwrap().state,
        SandboxState::Running
    );

    // Idle past autoStopInterval: Daytona stops it; the next connect starts it again.
    e.fake.set_idle(&info.id, Duration::from_secs(31 * 60));
    assert_eq!(
        p.info(&info.id).await.unwrap().unwrap().state,
        SandboxState::Paused
    );
    let sb = p.connect(&info.id).await.unwrap();
    let (out, _, _) = output(&*sb, ExecRequest::shell("echo back")).await;
    assert_eq!(out, "back\n");

    // archive stops first, then archives; connect restores it.
    p.archive(&info.id).await.unwrap();
    assert_eq!(e.fake.sandbox(&info.id).unwrap().state, "archived");
    assert_eq!(
        p.info(&info.id).await.unwrap().unwrap().state,
        SandboxState::Other("archived".into())
    );
    let sb = p.connect(&info.id).await.unwrap();
    let (out, _, _) = output(&*sb, ExecRequest::shell("echo restored")).await;
    assert_eq!(out, "restored\n");
    p.kill(&info.id).await.unwrap();
}

#[tokio::test]
async fn list_follows_cursors_and_keeps_to_rclaude_sandboxes() {
    let e = env_with(|o| {
        o.shared_root = None;
        o.page_size = 2;
    });
    let p = provider(&e.fake);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(p.create(&spec("/home/daytona/repo")).await.unwrap().id);
    }
    // Someone else's sandbox in the same organization.
    let other = reqwest::Client::new()
        .post(format!("{}/sandbox", e.fake.url))
        .bearer_auth(API_KEY)
        .json(&json!({ "labels": { "team": "x" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    let listed = p.list().await.unwrap();
    let mut got: Vec<String> = listed.iter().map(|s| s.id.clone()).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    assert!(listed.iter().all(|s| s.metadata["rclaude.repo"] == "demo"));
    let lists = e.fake.requests_to("GET", "/api/sandbox");
    assert_eq!(lists.len(), 2, "two pages");
    assert!(lists[0].query.as_deref().unwrap().contains("labels="));
    for id in ids {
        p.kill(&id).await.unwrap();
    }

    let e = env_with(|o| o.bare_list = true);
    let p = provider(&e.fake);
    let id = p.create(&spec(&e.workdir)).await.unwrap().id;
    assert_eq!(p.list().await.unwrap().len(), 1);
    p.kill(&id).await.unwrap();
}

#[tokio::test]
async fn the_toolbox_url_is_asked_for_when_the_sandbox_object_lacks_it() {
    let e = env_with(|o| o.omit_toolbox_url = true);
    let p = provider(&e.fake);
    let info = p.create(&spec(&e.workdir)).await.unwrap();
    let sb = p.connect(&info.id).await.unwrap();
    let (out, _, _) = output(&*sb, ExecRequest::shell("echo ok")).await;
    assert_eq!(out, "ok\n");
    assert!(!e.fake.requests_to("GET", "/toolbox-proxy-url").is_empty());
    p.kill(&info.id).await.unwrap();
}

#[tokio::test]
async fn errors_say_what_to_do() {
    let e = env_with(|o| o.failing_images = vec!["broken:1".into()]);
    let p = provider(&e.fake);

    let mut s = settings(&e.fake);
    s.credentials = rclaude::provider::daytona::settings::Credentials::ApiKey("dtn_revoked".into());
    let bad = DaytonaProvider::new(s).unwrap();
    let err = bad.create(&spec(&e.workdir)).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("401") && text.contains("DAYTONA_API_KEY"),
        "{text}"
    );
    assert!(!text.contains("dtn_revoked"));

    let mut sp = spec(&e.workdir);
    sp.image = Some("no-such-snapshot".into());
    let text = p.create(&sp).await.unwrap_err().to_string();
    assert!(
        text.contains("snapshot \"no-such-snapshot\" does not exist"),
        "{text}"
    );

    sp.image = Some("broken:1".into());
    let text = p.create(&sp).await.unwrap_err().to_string();
    assert!(
        text.contains("build_failed") && text.contains("could not be pulled"),
        "{text}"
    );
    assert!(text.contains("hint:"), "{text}");
    assert!(
        e.fake.sandboxes().is_empty(),
        "no half-made sandbox left behind"
    );

    assert!(matches!(
        p.connect("0000-missing").await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(p.info("0000-missing").await.unwrap().is_none());
    assert!(matches!(
        p.pause("0000-missing").await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(
        p.info("../etc").await.is_err(),
        "ids are checked before they reach a URL"
    );
}

#[tokio::test]
async fn the_fake_validates_like_daytona() {
    let e = env();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", e.fake.url);
    // No key.
    let r = http.get(url("/sandbox")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["statusCode"], 401);
    // Unknown property, resources with a snapshot, bad target.
    for (bad, want) in [
        (json!({ "snapshott": "x" }), "should not exist"),
        (json!({ "snapshot": "python-dev", "cpu": 2 }), "resources"),
        (json!({ "target": "mars" }), "Region"),
        (json!({ "labels": { "a": 1 } }), "string"),
        (
            json!({ "buildInfo": { "dockerfileContent": "RUN x" } }),
            "FROM",
        ),
    ] {
        let r = http
            .post(url("/sandbox"))
            .bearer_auth(API_KEY)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains(want), "{body}");
    }
    // Transitions are refused while one is in progress.
    let r: Value = http
        .post(url("/sandbox"))
        .bearer_auth(API_KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["id"].as_str().unwrap().to_string();
    assert_ne!(r["state"], r["desiredState"]);
    let busy = http
        .post(url(&format!("/sandbox/{id}/stop")))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 409);
    let p = provider(&e.fake);
    let sb = p.connect(&id).await.unwrap();
    let pause = http
        .post(url(&format!("/sandbox/{id}/pause")))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(pause.status(), 422);
    // Without the SDK version header the log loses its markers (merged output).
    let toolbox = format!("http://{}/toolbox/{id}", e.fake.addr);
    let sid = "raw-session";
    let r = http
        .post(format!("{toolbox}/process/session"))
        .bearer_auth(API_KEY)
        .json(&json!({ "sessionId": sid }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r: Value = http
        .post(format!("{toolbox}/process/session/{sid}/exec"))
        .bearer_auth(API_KEY)
        .json(&json!({ "command": "echo out; echo err >&2", "runAsync": false }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["exitCode"], 0);
    let cid = r["cmdId"].as_str().unwrap();
    let plain = http
        .get(format!(
            "{toolbox}/process/session/{sid}/command/{cid}/logs"
        ))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(!plain.contains(&1u8) && !plain.contains(&2u8), "{plain:?}");
    let marked = http
        .get(format!(
            "{toolbox}/process/session/{sid}/command/{cid}/logs"
        ))
        .bearer_auth(API_KEY)
        .header("x-daytona-sdk-version", "0.218.0")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        marked.starts_with(&[1, 1, 1]) || marked.starts_with(&[2, 2, 2]),
        "{marked:?}"
    );
    drop(sb);
    p.kill(&id).await.unwrap();
}

#[tokio::test]
async fn network_policies_become_daytonas_create_options_or_a_refusal() {
    use rclaude::network::{NetworkPolicy, Rule};
    let e = env();
    let p = provider(&e.fake);
    let rules = |r: &[&str]| NetworkPolicy::Restricted {
        allow: r.iter().map(|s| Rule::parse(s).unwrap()).collect(),
    };
    // deny_all: networkBlockAll.
    let mut s = spec(&e.workdir);
    s.network = NetworkPolicy::deny_all();
    let a = p.create(&s).await.unwrap();
    // IPv4 addresses and blocks: networkAllowList.
    s.network = rules(&["10.0.0.0/8", "192.0.2.7"]);
    let b = p.create(&s).await.unwrap();
    let bodies: Vec<Value> = e
        .fake
        .requests_to("POST", "/api/sandbox")
        .iter()
        .map(|r| r.body.clone().unwrap())
        .collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["networkBlockAll"], true);
    assert!(bodies[0].get("networkAllowList").is_none());
    assert!(bodies[1].get("networkBlockAll").is_none());
    assert_eq!(bodies[1]["networkAllowList"], "10.0.0.0/8,192.0.2.7/32");
    // A host name cannot be enforced there: refused before anything is created.
    s.network = rules(&["10.0.0.0/8", "api.anthropic.com"]);
    let err = p.create(&s).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config(m) if m.contains("api.anthropic.com") && m.contains("IPv4 CIDR")),
        "{err}"
    );
    assert_eq!(e.fake.requests_to("POST", "/api/sandbox").len(), 2);
    // The open default sends neither option.
    s.network = NetworkPolicy::Open;
    let c = p.create(&s).await.unwrap();
    let last = e.fake.requests_to("POST", "/api/sandbox")[2]
        .body
        .clone()
        .unwrap();
    assert!(last.get("networkBlockAll").is_none() && last.get("networkAllowList").is_none());
    for id in [a.id, b.id, c.id] {
        p.kill(&id).await.unwrap();
    }
}

/// What a server hands the clients of a sandbox it manages: the toolbox proxy and the sandbox's
/// preview token. The token runs commands in its own sandbox only; another sandbox's toolbox
/// and the control plane refuse it.
#[tokio::test]
async fn a_preview_token_opens_one_sandbox_only() {
    let e = env();
    let p = provider(&e.fake);
    let a = p.create(&spec(&e.workdir)).await.unwrap();
    let b = p.create(&spec(&e.workdir)).await.unwrap();
    let sa = p.connect(&a.id).await.unwrap();
    let Some(ClientAccess::DaytonaToolbox {
        toolbox_url,
        preview_token,
    }) = p.client_access(&a.id, &*sa).await.unwrap()
    else {
        panic!("no toolbox access");
    };
    assert_ne!(preview_token, API_KEY);
    let own = DaytonaSandbox::with_preview_token(&toolbox_url, &a.id, &e.workdir, &preview_token)
        .unwrap();
    let out = run(&own, ExecRequest::shell("echo in-a")).await.unwrap();
    assert_eq!(out.stdout_str(), "in-a\n");
    let other = DaytonaSandbox::with_preview_token(&toolbox_url, &b.id, &e.workdir, &preview_token)
        .unwrap();
    let err = run(&other, ExecRequest::shell("echo in-b"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );
    let control = reqwest::Client::new()
        .get(format!("{}/api/sandbox", e.fake.url))
        .header("x-daytona-preview-token", &preview_token)
        .send()
        .await
        .unwrap();
    assert_eq!(control.status().as_u16(), 401);
    p.kill(&a.id).await.unwrap();
    p.kill(&b.id).await.unwrap();
}
