//! The E2B provider against a local E2B (`support/e2b_server.rs`): real HTTP on loopback, the
//! REST API validated like E2B's, and real `rclaude agent` processes behind E2B's envd edge.

#[path = "support/e2b_server.rs"]
mod e2b_server;

use std::collections::BTreeMap;
use std::time::Duration;

use e2b_server::{API_KEY, FakeE2b, FakeOptions, Injection, Route};
use futures::StreamExt;
use rclaude::provider::e2b::{E2bProvider, E2bSettings, MANAGED_KEY, TIMEOUT_KEY, WORKDIR_KEY};
use rclaude::provider::{
    ExecEvent, ExecRequest, Provider, ProviderError, SandboxSpec, SandboxState, run,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A fake whose sandboxes share one root, and the workdir inside it the specs use.
struct Env {
    fake: FakeE2b,
    workdir: String,
    _vm: tempfile::TempDir,
}

fn env() -> Env {
    env_with(|_| {})
}

fn env_with(f: impl FnOnce(&mut FakeOptions)) -> Env {
    let vm = tempfile::tempdir().unwrap();
    let root = vm.path().canonicalize().unwrap();
    let mut opts = FakeOptions {
        shared_root: Some(root.clone()),
        ..FakeOptions::default()
    };
    f(&mut opts);
    let fake = FakeE2b::start_with(opts);
    Env {
        fake,
        workdir: format!("{}/home/user/repo", root.display()),
        _vm: vm,
    }
}

/// Settings exactly as the CLI reads them: from the SDK's variables, here pointing at the fake.
fn settings(fake: &FakeE2b) -> E2bSettings {
    let vars = fake.env();
    E2bSettings::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
        .unwrap()
}

fn provider(fake: &FakeE2b) -> E2bProvider {
    E2bProvider::new(settings(fake)).unwrap()
}

fn spec(workdir: &str) -> SandboxSpec {
    SandboxSpec {
        name: "demo".into(),
        image: Some("base".into()),
        timeout: Some(Duration::from_secs(1800)),
        auto_pause: true,
        workdir: workdir.into(),
        env: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
        metadata: BTreeMap::from([
            ("rclaude.repo".to_string(), "demo".to_string()),
            ("rclaude.branch".to_string(), "main".to_string()),
            ("rclaude.session".to_string(), "session-1".to_string()),
        ]),
        ..SandboxSpec::default()
    }
}

fn api_error(e: ProviderError) -> (u16, String, String) {
    match e {
        ProviderError::Api {
            status,
            message,
            hint,
            ..
        } => (status, message, hint.unwrap_or_default()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn parse(t: &str) -> OffsetDateTime {
    OffsetDateTime::parse(t, &Rfc3339).unwrap()
}

#[tokio::test]
async fn create_sends_the_documented_request_and_prepares_the_workdir() {
    let env = env();
    let p = provider(&env.fake);
    let info = p.create(&spec(&env.workdir)).await.unwrap();
    assert_eq!(info.state, SandboxState::Running);
    assert_eq!(info.workdir, env.workdir);
    assert_eq!(info.provider, "e2b");

    let creates = env.fake.requests_to("POST", "/v2/sandboxes");
    assert_eq!(creates.len(), 1);
    let req = &creates[0];
    assert_eq!(
        req.headers.get("x-api-key").map(String::as_str),
        Some(API_KEY)
    );
    assert_eq!(
        req.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let key = req
        .headers
        .get("idempotency-key")
        .expect("an idempotency key");
    assert!(
        key.len() <= 255
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "{key}"
    );
    let body = req.body.clone().unwrap();
    assert_eq!(body["templateID"], "base");
    assert_eq!(body["timeout"], 1800);
    assert_eq!(body["autoPause"], true);
    assert_eq!(body["envVars"], json!({ "GREETING": "hello" }));
    let md = &body["metadata"];
    assert_eq!(md["rclaude.repo"], "demo");
    assert_eq!(md["rclaude.branch"], "main");
    assert_eq!(md["rclaude.session"], "session-1");
    assert_eq!(md[MANAGED_KEY], "true");
    assert_eq!(md[WORKDIR_KEY], env.workdir.as_str());
    assert_eq!(md[TIMEOUT_KEY], "1800");
    assert!(body.get("secure").is_none(), "v2 is always secured: {body}");

    let sbx = env.fake.sandbox(&info.id).unwrap();
    assert_eq!(
        sbx.env_vars.get("GREETING").map(String::as_str),
        Some("hello")
    );
    assert!(
        std::path::Path::new(&env.workdir).is_dir(),
        "create makes the workdir"
    );
    // The workdir was made over envd, through the header-routed edge, with the access token.
    let envd = env.fake.envd_requests();
    assert!(
        envd.iter()
            .any(|r| r.path == "/filesystem.Filesystem/MakeDir"
                && r.routed_by == "headers"
                && r.had_access_token),
        "{envd:?}"
    );
}

#[tokio::test]
async fn connect_runs_commands_in_a_login_shell_with_the_template_env() {
    let env = env();
    let p = provider(&env.fake);
    let info = p.create(&spec(&env.workdir)).await.unwrap();
    let sbx = p.connect(&info.id).await.unwrap();
    assert_eq!(sbx.workdir(), env.workdir);
    let out = run(
        &*sbx,
        ExecRequest::shell("echo $GREETING from $(pwd); shopt -q login_shell && echo login"),
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{}", out.stderr_str());
    assert_eq!(
        out.stdout_str(),
        format!("hello from {}\nlogin\n", env.workdir)
    );
    // Connecting to a running sandbox answers 200 and carries the stored timeout.
    let connects = env
        .fake
        .requests_to("POST", &format!("/v2/sandboxes/{}/connect", info.id));
    assert_eq!(connects.len(), 1);
    assert_eq!(connects[0].status, 200);
    assert_eq!(connects[0].body.as_ref().unwrap()["timeout"], 1800);
    let envd = env.fake.envd_requests();
    assert!(
        envd.iter()
            .filter(|r| r.path == "/process.Process/Start")
            .all(|r| r.had_access_token && r.sandbox == info.id)
    );
}

#[tokio::test]
async fn pause_keeps_files_and_connect_resumes_with_201() {
    let env = env();
    let p = provider(&env.fake);
    let info = p.create(&spec(&env.workdir)).await.unwrap();
    let sbx = p.connect(&info.id).await.unwrap();
    let out = run(&*sbx, ExecRequest::shell("echo kept > state.txt"))
        .await
        .unwrap();
    assert!(out.status.success());
    let agent_before = env.fake.sandbox(&info.id).unwrap().agent_pid.unwrap();

    p.pause(&info.id).await.unwrap();
    let view = env.fake.sandbox(&info.id).unwrap();
    assert_eq!(view.state, "paused");
    assert_eq!(view.agent_pid, None, "pausing stops the sandbox's agent");
    assert_eq!(view.paused_with_memory, Some(true));
    // The old connection is dead: the edge answers 502 for a paused sandbox.
    assert!(run(&*sbx, ExecRequest::shell("true")).await.is_err());
    // Pausing again is fine (E2B answers 409).
    p.pause(&info.id).await.unwrap();
    let pauses = env
        .fake
        .requests_to("POST", &format!("/sandboxes/{}/pause", info.id));
    assert_eq!(
        pauses.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![204, 409]
    );
    let i = p.info(&info.id).await.unwrap().unwrap();
    assert_eq!(i.state, SandboxState::Paused);
    assert_eq!(i.end_at, None, "a paused sandbox has no deadline");

    let sbx = p.connect(&info.id).await.unwrap();
    let connects = env
        .fake
        .requests_to("POST", &format!("/v2/sandboxes/{}/connect", info.id));
    assert_eq!(
        connects.last().unwrap().status,
        201,
        "a paused sandbox is resumed"
    );
    let view = env.fake.sandbox(&info.id).unwrap();
    assert_eq!(view.state, "running");
    assert_ne!(view.agent_pid, Some(agent_before));
    let out = run(&*sbx, ExecRequest::shell("cat state.txt"))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "kept\n");
}

#[tokio::test]
async fn pause_without_memory_is_sent_as_such() {
    let env = env();
    let p = provider(&env.fake);
    let info = p.create(&spec(&env.workdir)).await.unwrap();
    p.pause_with(&info.id, false).await.unwrap();
    let pauses = env
        .fake
        .requests_to("POST", &format!("/sandboxes/{}/pause", info.id));
    assert_eq!(pauses[0].body, Some(json!({ "memory": false })));
    assert_eq!(
        env.fake.sandbox(&info.id).unwrap().paused_with_memory,
        Some(false)
    );
}

#[tokio::test]
async fn info_reports_state_and_time_left() {
    let env = env();
    let p = provider(&env.fake);
    let before = OffsetDateTime::now_utc();
    let info = p.create(&spec(&env.workdir)).await.unwrap();
    let i = p.info(&info.id).await.unwrap().unwrap();
    assert_eq!(i.state, SandboxState::Running);
    assert_eq!(i.workdir, env.workdir);
    assert_eq!(
        i.metadata.get("rclaude.session").map(String::as_str),
        Some("session-1")
    );
    let end = parse(i.end_at.as_deref().unwrap());
    let started = parse(i.started_at.as_deref().unwrap());
    assert_eq!(
        (end - started).whole_seconds(),
        1800,
        "endAt = startedAt + timeout"
    );
    assert!(started >= before - Duration::from_secs(1));

    // keep_alive moves the deadline to now + the given lifetime.
    p.keep_alive(&info.id, Duration::from_secs(7200))
        .await
        .unwrap();
    let end2 = parse(
        p.info(&info.id)
            .await
            .unwrap()
            .unwrap()
            .end_at
            .as_deref()
            .unwrap(),
    );
    assert!(end2 > end, "{end2} should be after {end}");
    let timeouts = env
        .fake
        .requests_to("POST", &format!("/sandboxes/{}/timeout", info.id));
    assert_eq!(timeouts[0].body, Some(json!({ "timeout": 7200 })));

    assert!(p.info("i0000000000000000000").await.unwrap().is_none());
}

#[tokio::test]
async fn kill_removes_the_sandbox_and_its_files() {
    let env = env();
    let p = provider(&env.fake);
    let info = p.create(&spec(&env.workdir)).await.unwrap();
    let sbx = p.connect(&info.id).await.unwrap();
    run(&*sbx, ExecRequest::shell("echo x > file.txt"))
        .await
        .unwrap();
    p.kill(&info.id).await.unwrap();
    assert!(env.fake.sandbox(&info.id).is_none());
    assert!(!std::path::Path::new(&env.workdir).join("file.txt").exists());
    assert!(p.info(&info.id).await.unwrap().is_none());
    assert!(matches!(p.kill(&info.id).await, Err(ProviderError::NotFound(id)) if id == info.id));
    assert!(matches!(
        p.connect(&info.id).await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        p.pause(&info.id).await,
        Err(ProviderError::NotFound(_))
    ));
}

#[tokio::test]
async fn list_follows_pages_and_only_shows_rclaude_sandboxes() {
    let env = env();
    let mut s = settings(&env.fake);
    s.page_size = 2;
    let p = E2bProvider::new(s).unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut sp = spec(&env.workdir);
        sp.metadata
            .insert("rclaude.session".into(), format!("s{i}"));
        ids.push(p.create(&sp).await.unwrap().id);
    }
    p.pause(&ids[1]).await.unwrap();
    // A sandbox someone else made on the same team, without rclaude's marker.
    let other = reqwest::Client::new()
        .post(format!("{}/v2/sandboxes", env.fake.url))
        .header("x-api-key", API_KEY)
        .json(&json!({ "templateID": "base", "metadata": { "rclaude.repo": "demo" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 201);

    let listed = p.list().await.unwrap();
    let mut got: Vec<String> = listed.iter().map(|s| s.id.clone()).collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "every rclaude sandbox once, nothing else");
    let paused: Vec<&str> = listed
        .iter()
        .filter(|s| s.state == SandboxState::Paused)
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(paused, vec![ids[1].as_str()]);

    let pages = env.fake.requests_to("GET", "/v2/sandboxes");
    assert_eq!(pages.len(), 3, "5 sandboxes, 2 per page");
    for (i, page) in pages.iter().enumerate() {
        let q = page.query.as_deref().unwrap();
        assert!(q.contains("metadata=rclaude.managed%3Dtrue"), "{q}");
        assert!(
            q.contains("state=running%2Cpaused") || q.contains("state=running,paused"),
            "{q}"
        );
        assert!(q.contains("limit=2"), "{q}");
        assert_eq!(q.contains("nextToken="), i > 0, "{q}");
    }
}

#[tokio::test]
async fn create_retries_503_and_429_with_one_idempotency_key() {
    let env = env();
    let p = provider(&env.fake);
    env.fake.inject(
        Route::Create,
        [
            Injection::error(503, "service unavailable").header("retry-after", "0"),
            Injection::error(429, "rate limited").header("retry-after", "0"),
        ],
    );
    let info = p.create(&spec(&env.workdir)).await.unwrap();
    let creates = env.fake.requests_to("POST", "/v2/sandboxes");
    assert_eq!(
        creates.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 429, 201]
    );
    let keys: Vec<&String> = creates
        .iter()
        .map(|r| r.headers.get("idempotency-key").unwrap())
        .collect();
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "one key across retries: {keys:?}"
    );
    assert_eq!(env.fake.sandboxes().len(), 1);
    assert_eq!(env.fake.sandboxes()[0].id, info.id);

    // A second create is a different operation with a different key.
    p.create(&spec(&env.workdir)).await.unwrap();
    let creates = env.fake.requests_to("POST", "/v2/sandboxes");
    assert_ne!(
        creates.last().unwrap().headers.get("idempotency-key"),
        Some(keys[0])
    );
}

#[tokio::test]
async fn a_replayed_create_returns_the_same_sandbox() {
    let env = env();
    let http = reqwest::Client::new();
    let create = || {
        http.post(format!("{}/v2/sandboxes", env.fake.url))
            .header("x-api-key", API_KEY)
            .header("idempotency-key", "rclaude-test-key-1")
            .json(&json!({ "templateID": "base" }))
            .send()
    };
    let a: Value = create().await.unwrap().json().await.unwrap();
    let b: Value = create().await.unwrap().json().await.unwrap();
    assert_eq!(a["sandboxID"], b["sandboxID"]);
    assert_eq!(env.fake.sandboxes().len(), 1);
}

#[tokio::test]
async fn retries_stop_after_three_and_other_statuses_are_not_retried() {
    let env = env();
    let p = provider(&env.fake);
    env.fake.inject(
        Route::Create,
        (0..4).map(|_| Injection::error(502, "bad gateway").header("retry-after", "0")),
    );
    let (status, message, hint) = api_error(p.create(&spec(&env.workdir)).await.unwrap_err());
    assert_eq!((status, message.as_str()), (502, "bad gateway"));
    assert!(hint.contains("try again"), "{hint}");
    assert_eq!(
        env.fake.requests_to("POST", "/v2/sandboxes").len(),
        4,
        "1 attempt + 3 retries"
    );

    // Should-Retry: true makes any status retryable; a plain 500 is not retried.
    env.fake.inject(
        Route::List,
        [Injection::error(500, "flaky")
            .header("should-retry", "true")
            .header("retry-after", "0")],
    );
    p.list().await.unwrap();
    assert_eq!(env.fake.requests_to("GET", "/v2/sandboxes").len(), 2);
    env.fake
        .inject(Route::List, [Injection::error(500, "broken")]);
    let (status, message, _) = api_error(p.list().await.unwrap_err());
    assert_eq!((status, message.as_str()), (500, "broken"));
    assert_eq!(env.fake.requests_to("GET", "/v2/sandboxes").len(), 3);
}

#[tokio::test]
async fn a_bad_api_key_is_explained() {
    let env = env();
    let mut s = settings(&env.fake);
    s.api_key = "e2b_wrong".into();
    let p = E2bProvider::new(s).unwrap();
    let (status, message, hint) = api_error(p.create(&spec(&env.workdir)).await.unwrap_err());
    assert_eq!(status, 401);
    assert!(
        message.contains("Invalid API key"),
        "E2B's own message: {message}"
    );
    assert!(
        hint.contains("E2B_API_KEY") && hint.contains("e2b.dev"),
        "{hint}"
    );
    assert_eq!(env.fake.requests().len(), 1, "401 is not retried");
}

#[tokio::test]
async fn an_unknown_template_is_named_in_the_hint() {
    let env = env();
    let p = provider(&env.fake);
    let mut sp = spec(&env.workdir);
    sp.image = Some("no-such-template".into());
    let (status, message, hint) = api_error(p.create(&sp).await.unwrap_err());
    assert_eq!(status, 404);
    assert!(message.contains("no-such-template"), "{message}");
    assert!(
        hint.contains("\"no-such-template\"") && hint.contains("image"),
        "{hint}"
    );
    // Templates are found by id, name, name:tag and team/name too.
    for name in ["rki5dems9wqfm4r03t7g", "base:default", "acme/base"] {
        let mut sp = spec(&env.workdir);
        sp.image = Some(name.into());
        p.create(&sp)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn an_expired_sandbox_is_not_found() {
    let env = env();
    let p = provider(&env.fake);
    let mut sp = spec(&env.workdir);
    sp.auto_pause = false;
    let info = p.create(&sp).await.unwrap();
    env.fake.expire(&info.id);
    assert!(
        p.info(&info.id).await.unwrap().is_none(),
        "killed at its timeout"
    );
    let e = match p.connect(&info.id).await {
        Err(e) => e,
        Ok(_) => panic!("connected to an expired sandbox"),
    };
    assert!(
        matches!(&e, ProviderError::NotFound(id) if *id == info.id),
        "{e:?}"
    );
    // What the CLI shows for it.
    let cli = rclaude::error::CliError::from(e);
    assert!(cli.hint.unwrap().contains("rclaude up"));
}

#[tokio::test]
async fn an_auto_paused_sandbox_resumes_on_connect() {
    let env = env();
    let p = provider(&env.fake);
    let info = p.create(&spec(&env.workdir)).await.unwrap();
    env.fake.expire(&info.id);
    assert_eq!(
        p.info(&info.id).await.unwrap().unwrap().state,
        SandboxState::Paused
    );
    let sbx = p.connect(&info.id).await.unwrap();
    assert_eq!(
        run(&*sbx, ExecRequest::shell("echo up"))
            .await
            .unwrap()
            .stdout_str(),
        "up\n"
    );
}

#[tokio::test]
async fn quota_errors_carry_a_hint_after_retrying() {
    let env = env();
    let p = provider(&env.fake);
    env.fake.inject(
        Route::Create,
        (0..4).map(|_| {
            Injection::error(
                429,
                "You have reached the maximum number of concurrent E2B sandboxes (20)",
            )
            .header("retry-after", "0")
        }),
    );
    let (status, message, hint) = api_error(p.create(&spec(&env.workdir)).await.unwrap_err());
    assert_eq!(status, 429);
    assert!(message.contains("concurrent"), "{message}");
    assert!(
        hint.contains("rclaude ls") && hint.contains("concurrency"),
        "{hint}"
    );
}

#[tokio::test]
async fn a_timeout_over_the_plan_limit_is_explained() {
    let env = env_with(|o| o.max_timeout = 3600);
    let p = provider(&env.fake);
    let mut sp = spec(&env.workdir);
    sp.timeout = Some(Duration::from_secs(7200));
    let (status, message, hint) = api_error(p.create(&sp).await.unwrap_err());
    assert_eq!(status, 400);
    assert!(message.contains("1 hours"), "{message}");
    assert!(hint.contains("timeout"), "{hint}");
}

#[tokio::test]
async fn an_unresponsive_agent_at_pause_is_resumed_from_disk() {
    let env = env();
    let p = provider(&env.fake);
    let info = p.create(&spec(&env.workdir)).await.unwrap();
    p.pause(&info.id).await.unwrap();
    env.fake.inject(
        Route::Connect,
        [Injection::error(409, "the sandbox's envd was unresponsive at pause")
            .body(json!({ "code": 409, "message": "envd unresponsive at pause", "error_code": "envd_unresponsive_at_pause" }))],
    );
    let sbx = p.connect(&info.id).await.unwrap();
    assert!(
        run(&*sbx, ExecRequest::shell("true"))
            .await
            .unwrap()
            .status
            .success()
    );
    let connects = env
        .fake
        .requests_to("POST", &format!("/v2/sandboxes/{}/connect", info.id));
    assert_eq!(connects.len(), 2);
    assert_eq!(connects[1].body.as_ref().unwrap()["memory"], false);
    assert_eq!(connects[1].status, 201);
}

#[tokio::test]
async fn a_workdir_that_cannot_be_made_leaves_no_sandbox_behind() {
    // Per-sandbox roots: /srv/elsewhere is outside every sandbox, so envd refuses to make it.
    let fake = FakeE2b::start();
    let p = provider(&fake);
    let e = p.create(&spec("/srv/elsewhere/repo")).await.unwrap_err();
    assert!(matches!(e, ProviderError::Sandbox(_)), "{e:?}");
    assert_eq!(
        fake.sandboxes().len(),
        0,
        "the half-made sandbox was killed"
    );
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .count(),
        1
    );
}

#[tokio::test]
async fn connection_failures_are_retried_then_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut s = E2bSettings::new(API_KEY);
    s.api_url = url.clone();
    s.retry.connection_retries = 2;
    let p = E2bProvider::new(s).unwrap();
    let e = p
        .info("i0000000000000000000")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&url) && e.contains("after 3 attempt(s)"), "{e}");
}

#[tokio::test]
async fn process_output_streams_through_the_edge() {
    let env = env();
    let p = provider(&env.fake);
    let info = p.create(&spec(&env.workdir)).await.unwrap();
    let sbx = p.connect(&info.id).await.unwrap();
    let mut events = sbx
        .exec(ExecRequest::shell("echo first; exec sleep 60"))
        .await
        .unwrap();
    let pid = match events.next().await.unwrap().unwrap() {
        ExecEvent::Started { pid } => pid,
        other => panic!("{other:?}"),
    };
    // The first line arrives while the process is still running: the edge does not buffer.
    let first = tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("output was held back")
        .unwrap()
        .unwrap();
    assert_eq!(first, ExecEvent::Stdout("first\n".into()));
    sbx.kill_process(pid, true).await.unwrap();
    let mut exit = None;
    while let Some(ev) = events.next().await {
        if let ExecEvent::Exited(s) = ev.unwrap() {
            exit = Some(s);
        }
    }
    assert_eq!(exit.unwrap().code, -1);
}

#[tokio::test]
async fn chunked_uploads_pass_the_edge_and_downloads_stream_back() {
    let env = env();
    let p = provider(&env.fake);
    let info = p.create(&spec(&env.workdir)).await.unwrap();
    let token = env.fake.sandbox(&info.id).unwrap().token;
    let path = format!("{}/big.bin", env.workdir);
    let chunk = vec![7u8; 64 * 1024];
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..16).map(|_| Ok(chunk.clone())).collect();
    let resp = reqwest::Client::new()
        .post(format!("{}/files", env.fake.url))
        .query(&[("path", path.as_str())])
        .header("e2b-sandbox-id", &info.id)
        .header("e2b-sandbox-port", "49983")
        .header("x-access-token", &token)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 16 * 64 * 1024);
    let sbx = p.connect(&info.id).await.unwrap();
    let dest = tempfile::tempdir().unwrap();
    let n = sbx
        .download(&path, &dest.path().join("big.bin"), None)
        .await
        .unwrap();
    assert_eq!(n, 16 * 64 * 1024);
}

#[tokio::test]
async fn the_edge_routes_by_host_name_and_checks_its_headers() {
    let env = env();
    let p = provider(&env.fake);
    let info = p.create(&spec(&env.workdir)).await.unwrap();
    let token = env.fake.sandbox(&info.id).unwrap().token;
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{}/health", env.fake.url))
        .header("host", format!("49983-{}.sandboxes.example.org", info.id))
        .header("x-access-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(
        env.fake
            .envd_requests()
            .iter()
            .any(|r| r.routed_by == "host" && r.sandbox == info.id)
    );
    // Without the token the sandbox's envd refuses.
    let resp = http
        .get(format!("{}/health", env.fake.url))
        .header("e2b-sandbox-id", &info.id)
        .header("e2b-sandbox-port", "49983")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // One routing header without the other, a closed port, an unknown sandbox.
    let resp = http
        .get(format!("{}/health", env.fake.url))
        .header("e2b-sandbox-id", &info.id)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http
        .get(format!("{}/health", env.fake.url))
        .header("e2b-sandbox-id", &info.id)
        .header("e2b-sandbox-port", "8080")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let resp = http
        .get(format!("{}/health", env.fake.url))
        .header("e2b-sandbox-id", "inope")
        .header("e2b-sandbox-port", "49983")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
}

#[tokio::test]
async fn network_policies_become_e2bs_create_options() {
    use rclaude::network::{NetworkPolicy, Rule};
    let env = env();
    let p = provider(&env.fake);
    let mut s = spec(&env.workdir);
    s.network = NetworkPolicy::deny_all();
    let a = p.create(&s).await.unwrap();
    s.network = NetworkPolicy::Restricted {
        allow: [
            "registry.npmjs.org",
            "*.github.com",
            "10.0.0.0/8",
            "192.0.2.7",
        ]
        .iter()
        .map(|r| Rule::parse(r).unwrap())
        .collect(),
    };
    let b = p.create(&s).await.unwrap();
    s.network = NetworkPolicy::Open;
    let c = p.create(&s).await.unwrap();
    let bodies: Vec<serde_json::Value> = env
        .fake
        .requests_to("POST", "/v2/sandboxes")
        .into_iter()
        .map(|r| r.body.unwrap())
        .collect();
    assert_eq!(bodies[0]["allow_internet_access"], false);
    assert!(bodies[0].get("network").is_none());
    assert!(bodies[1].get("allow_internet_access").is_none());
    assert_eq!(
        bodies[1]["network"],
        json!({
            "allowOut": ["registry.npmjs.org", "*.github.com", "10.0.0.0/8", "192.0.2.7"],
            "denyOut": ["0.0.0.0/0"],
        })
    );
    assert!(bodies[2].get("allow_internet_access").is_none() && bodies[2].get("network").is_none());
    for id in [a.id, b.id, c.id] {
        p.kill(&id).await.unwrap();
    }
}
