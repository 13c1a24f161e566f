//! Managed sessions against the real server binary, a real database (SQLite and PostgreSQL) and
//! the local provider's real agents: the server creates, pauses, resumes and deletes sandboxes,
//! clients reach them through envd directly, and billing follows the server's own transitions.

mod common;

use std::path::Path;

use common::{Engine, Server, TestDb, create_account};
use rclaude_sandbox::envd::client::EnvdClient;
use rclaude_sandbox::provider::envd_sandbox::EnvdSandbox;
use rclaude_sandbox::provider::{ExecRequest, run};
use reqwest::StatusCode;
use serde_json::{Value, json};

const T0: &str = "2026-03-02T10:00:00Z";

/// A server whose clock the test drives (`x-rclaude-now`): no idle auto-pause or reconciler,
/// which run on the real clock.
async fn start(db: &TestDb, sandboxes: &Path) -> Server {
    let mut flags = common::sandbox_flags(sandboxes, &common::agent_bin());
    flags.extend(["--idle-pause", "off", "--reconcile-every", "off"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(db, &flags).await
}

/// `POST /v1/sessions` for a managed session, with an optional Idempotency-Key, at `at`.
async fn create(
    c: &common::Client,
    body: Value,
    key: Option<&str>,
    at: &str,
) -> (StatusCode, Value) {
    create_now(c, body, key, Some(at)).await
}

/// Like [`create`], at the server's own clock when `at` is `None`.
async fn create_now(
    c: &common::Client,
    body: Value,
    key: Option<&str>,
    at: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = c
        .http
        .post(format!("{}/v1/sessions", c.base))
        .bearer_auth(&c.token)
        .json(&body);
    if let Some(at) = at {
        req = req.header("x-rclaude-now", at);
    }
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn act(
    c: &common::Client,
    method: reqwest::Method,
    path: &str,
    at: &str,
) -> (StatusCode, Value) {
    c.send(method, path, None, Some(at)).await
}

/// The session's sandbox as its client reaches it (envd URL and token from the answer).
fn envd_sandbox(sandbox: &Value) -> Result<EnvdSandbox, String> {
    let client = EnvdClient::new(
        sandbox["envd_url"].as_str().unwrap(),
        sandbox["access_token"].as_str().map(str::to_string),
        Default::default(),
    )
    .map_err(|e| e.to_string())?;
    Ok(EnvdSandbox::new(
        client,
        sandbox["id"].as_str().unwrap(),
        sandbox["workdir"].as_str().unwrap(),
        false,
    ))
}

/// Run a shell command in the sandbox through its envd, as a client of the session would.
async fn exec(sandbox: &Value, cmd: &str) -> Result<String, String> {
    let sbx = envd_sandbox(sandbox)?;
    let out = run(&sbx, ExecRequest::shell(cmd))
        .await
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("exit {}: {}", out.status.code, out.stderr_str()));
    }
    Ok(out.stdout_str())
}

fn sandbox_dirs(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

async fn lifecycle(engine: Engine) {
    let Some(db) = TestDb::new(engine).await else {
        return;
    };
    let sandboxes = db.dir.path().join("sandboxes");
    let token = create_account(&db, "acme").await;
    let other = create_account(&db, "other").await;
    let server = start(&db, &sandboxes).await;
    let c = server.client(&token);
    let o = server.client(&other);

    let (s, me) = c.get("/v1/me").await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["capabilities"]["managed_sessions"], "local", "{me}");

    let body = json!({"managed": true, "repository": "github.com/acme/app"});
    let (s, v) = create(&c, body.clone(), Some("create-1"), T0).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["session"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["session"]["managed"], true, "{v}");
    assert_eq!(v["session"]["state"], "running", "{v}");
    assert_eq!(v["session"]["provider"], "local", "{v}");
    let sandbox = v["sandbox"].clone();
    assert!(
        sandbox["envd_url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    let secret = sandbox["access_token"].as_str().unwrap().to_string();

    // The client reaches the sandbox directly; the work persists in it.
    assert_eq!(
        exec(&sandbox, "echo work > notes.txt && echo managed-$((1+1))")
            .await
            .unwrap(),
        "managed-2\n"
    );

    // A retried create is the same session, not a second sandbox.
    let (s, again) = create(&c, body.clone(), Some("create-1"), T0).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["session"]["id"], id.as_str());
    assert_eq!(sandbox_dirs(&sandboxes), 1);

    // Another account sees nothing of it.
    for (m, p) in [
        (reqwest::Method::POST, format!("/v1/sessions/{id}/pause")),
        (reqwest::Method::POST, format!("/v1/sessions/{id}/resume")),
        (reqwest::Method::DELETE, format!("/v1/sessions/{id}")),
        (reqwest::Method::GET, format!("/v1/sessions/{id}")),
    ] {
        let (s, v) = act(&o, m, &p, T0).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{p}: {v}");
    }

    // Clients cannot move a managed session between states; their reports change no billing.
    let (s, v) = c
        .post_at(
            &format!("/v1/sessions/{id}/events"),
            json!({"type": "paused", "idempotency_key": "k1"}),
            "2026-03-02T10:30:00Z",
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "session_managed", "{v}");

    // No client says anything for three hours: a managed session is still billed (the server
    // owns its lifecycle), where a reported one would be cut at last sign of life + grace.
    let (_, v) = c
        .get_at(&format!("/v1/sessions/{id}"), "2026-03-02T13:00:00Z")
        .await;
    assert_eq!(v["session"]["active_seconds"], 3 * 3600, "{v}");

    let (s, v) = act(
        &c,
        reqwest::Method::POST,
        &format!("/v1/sessions/{id}/pause"),
        "2026-03-02T13:00:00Z",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["session"]["state"], "paused");
    assert!(v.get("sandbox").is_none(), "{v}");
    assert!(
        exec(&sandbox, "true").await.is_err(),
        "the paused sandbox still answers"
    );
    // Paused time is free.
    let (_, v) = c
        .get_at(&format!("/v1/sessions/{id}"), "2026-03-02T15:00:00Z")
        .await;
    assert_eq!(v["session"]["active_seconds"], 3 * 3600, "{v}");

    let (s, v) = act(
        &c,
        reqwest::Method::POST,
        &format!("/v1/sessions/{id}/resume"),
        "2026-03-02T15:00:00Z",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["session"]["state"], "running");
    assert_eq!(
        exec(&v["sandbox"], "cat notes.txt").await.unwrap(),
        "work\n"
    );

    // A server restart leaves the sandbox running: the new process re-adopts it (same agent,
    // same envd address, the work still there).
    let url = v["sandbox"]["envd_url"].clone();
    assert!(server.terminate().await);
    let server = start(&db, &sandboxes).await;
    let c = server.client(&token);
    let (s, v) = act(
        &c,
        reqwest::Method::POST,
        &format!("/v1/sessions/{id}/resume"),
        "2026-03-02T15:30:00Z",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["sandbox"]["envd_url"], url, "a new agent was started");
    assert_eq!(
        exec(&v["sandbox"], "cat notes.txt").await.unwrap(),
        "work\n"
    );

    let (s, v) = act(
        &c,
        reqwest::Method::DELETE,
        &format!("/v1/sessions/{id}"),
        "2026-03-02T16:00:00Z",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["session"]["state"], "stopped");
    assert_eq!(v["session"]["active_seconds"], 4 * 3600, "{v}");
    assert_eq!(sandbox_dirs(&sandboxes), 0, "the sandbox is gone");
    let (s, v) = act(
        &c,
        reqwest::Method::POST,
        &format!("/v1/sessions/{id}/pause"),
        "2026-03-02T16:00:00Z",
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "session_stopped", "{v}");

    // Reported sessions are not the server's to pause.
    let reported = c.new_session("github.com/acme/app", Some(T0)).await;
    let (s, v) = act(
        &c,
        reqwest::Method::POST,
        &format!("/v1/sessions/{reported}/pause"),
        T0,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "session_not_managed", "{v}");

    let log = server.log_text();
    assert!(
        !log.contains(&secret),
        "the envd token is in the server log"
    );
    assert!(server.terminate().await);
}

#[tokio::test]
async fn managed_sessions_on_sqlite() {
    lifecycle(Engine::Sqlite).await;
}

#[tokio::test]
async fn managed_sessions_on_postgres() {
    lifecycle(Engine::Postgres).await;
}

#[tokio::test]
async fn bad_creates_are_refused_and_create_nothing() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let sandboxes = db.dir.path().join("sandboxes");
    let token = create_account(&db, "acme").await;
    let server = start(&db, &sandboxes).await;
    let c = server.client(&token);
    for (body, key, what) in [
        (
            json!({"managed": true, "repository": "acme/\u{7}app"}),
            None,
            "control character",
        ),
        (
            json!({"managed": true, "repository": "acme/app", "image": "x"}),
            None,
            "unknown field",
        ),
        (json!({"managed": true}), None, "no repository"),
        (
            json!({"managed": true, "repository": "acme/app"}),
            Some("bad key with spaces"),
            "key",
        ),
        (
            json!({"managed": false, "repository": "acme/app"}),
            None,
            "managed false",
        ),
        (
            json!({"managed": true, "repository": "acme/app", "template": "base image"}),
            None,
            "template with a space",
        ),
        (
            json!({"managed": true, "repository": "acme/app", "resources": {"cpu": 0}}),
            None,
            "no cpu",
        ),
        (
            json!({"managed": true, "repository": "acme/app", "resources": {"memory_mb": 64}}),
            None,
            "too little memory",
        ),
        (
            json!({"managed": true, "repository": "acme/app", "resources": {"gpu": 1}}),
            None,
            "unknown resource",
        ),
        (
            json!({"managed": true, "repository": "acme/app", "idle_pause": 10}),
            None,
            "idle pause under a minute",
        ),
    ] {
        let (s, v) = create(&c, body, key, T0).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {v}");
        assert!(v["error"]["message"].as_str().is_some(), "{what}: {v}");
    }
    let (_, list) = c.get("/v1/sessions").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 0, "{list}");
    assert_eq!(sandbox_dirs(&sandboxes), 0);
    assert!(server.terminate().await);
}

#[tokio::test]
async fn a_server_without_sandboxes_says_so() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let token = create_account(&db, "acme").await;
    let server = Server::start(&db, &["--sandbox-provider", "none"]).await;
    let c = server.client(&token);
    let (_, me) = c.get("/v1/me").await;
    assert_eq!(me["capabilities"]["managed_sessions"], Value::Null, "{me}");
    let (s, v) = create(
        &c,
        json!({"managed": true, "repository": "acme/app"}),
        None,
        T0,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{v}");
    assert_eq!(v["error"]["code"], "managed_sessions_disabled", "{v}");
    // Reporting a session the client runs still works.
    c.new_session("acme/app", Some(T0)).await;
    assert!(server.terminate().await);
}

#[tokio::test]
async fn an_unknown_sandbox_provider_stops_the_server_at_start() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let out = tokio::process::Command::new(common::BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sandbox-provider",
            "aws",
        ])
        .arg("--database-url")
        .arg(&db.url)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sandbox_provider") && err.contains("local"),
        "{err}"
    );
}

/// Northflank reaches sandboxes only with the account's own key: a server told to manage
/// sandboxes there refuses to start, saying why and what to use, and shows no key.
#[tokio::test]
async fn a_provider_without_per_sandbox_access_is_refused_for_managed_sessions() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    {
        let (provider, key_var) = ("northflank", "NORTHFLANK_API_TOKEN");
        let out = tokio::process::Command::new(common::BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--sandbox-provider", provider])
            .arg("--database-url")
            .arg(&db.url)
            .env(key_var, "secret-deployment-key-0123456789")
            .env("NORTHFLANK_PROJECT_ID", "proj")
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{provider}: the server started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("--sandbox-provider {provider}"))
                && err.contains("`local`, `e2b` or `daytona`")
                && err.contains("managed = false"),
            "{provider}: {err}"
        );
        assert!(!err.contains("secret-deployment-key"), "{err}");
    }
}

/// Idle auto-pause: a session no client shows activity on is paused by the server (once, even
/// with two replicas on one database) and stops billing; a session with heartbeats keeps running.
async fn idle_pause(engine: Engine) {
    let Some(db) = TestDb::new(engine).await else {
        return;
    };
    let sandboxes = db.dir.path().join("sandboxes");
    let token = create_account(&db, "acme").await;
    let mut flags = common::sandbox_flags(&sandboxes, &common::agent_bin());
    flags.extend(["--idle-pause".to_string(), "2s".to_string()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let one = Server::start(&db, &flags).await;
    // A second replica on the same database (PostgreSQL: the advisory lock keeps them apart).
    let two = match engine {
        Engine::Postgres => Some(Server::start(&db, &flags).await),
        Engine::Sqlite => None,
    };
    let c = one.client(&token);
    let body = |repo: &str| json!({"managed": true, "repository": repo});
    let (s, idle) = create_now(&c, body("acme/idle"), None, None).await;
    assert_eq!(s, StatusCode::CREATED, "{idle}");
    let (s, busy) = create_now(&c, body("acme/busy"), None, None).await;
    assert_eq!(s, StatusCode::CREATED, "{busy}");
    // Its own idle pause, an hour: left running although nobody uses it.
    let (s, patient) = create_now(
        &c,
        json!({"managed": true, "repository": "acme/patient", "idle_pause": 3600,
               "template": "base", "resources": {"cpu": 2, "memory_mb": 1024}}),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{patient}");
    assert_eq!(patient["session"]["idle_pause_seconds"], 3600, "{patient}");
    assert!(
        idle["session"].get("idle_pause_seconds").is_none(),
        "{idle}"
    );
    let patient_id = patient["session"]["id"].as_str().unwrap().to_string();
    let idle_id = idle["session"]["id"].as_str().unwrap().to_string();
    let busy_id = busy["session"]["id"].as_str().unwrap().to_string();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let paused = loop {
        // The busy session's client keeps sending heartbeats.
        c.event(&busy_id, "heartbeat", None).await;
        let (_, v) = c.get(&format!("/v1/sessions/{idle_id}")).await;
        if v["session"]["state"] == "paused" {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the idle session was not paused: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    let pauses: Vec<&Value> = paused["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "paused")
        .collect();
    assert_eq!(pauses.len(), 1, "{paused}");
    assert_eq!(pauses[0]["data"]["reason"], "idle", "{paused}");
    assert!(
        exec(&idle["sandbox"], "true").await.is_err(),
        "its agent still runs"
    );
    let billed = paused["session"]["active_seconds"].as_i64().unwrap();
    for _ in 0..10 {
        c.event(&busy_id, "heartbeat", None).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let (_, again) = c.get(&format!("/v1/sessions/{idle_id}")).await;
    assert_eq!(
        again["session"]["active_seconds"], billed,
        "paused time is billed"
    );
    assert_eq!(
        again["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "paused")
            .count(),
        1,
        "paused twice: {again}"
    );
    let (_, b) = c.get(&format!("/v1/sessions/{busy_id}")).await;
    assert_eq!(b["session"]["state"], "running", "{b}");
    let (_, p) = c.get(&format!("/v1/sessions/{patient_id}")).await;
    assert_eq!(
        p["session"]["state"], "running",
        "a session with its own longer idle_pause was paused: {p}"
    );
    assert_eq!(exec(&busy["sandbox"], "echo up").await.unwrap(), "up\n");
    // Resuming works as for any paused session.
    let (s, v) = c
        .post(&format!("/v1/sessions/{idle_id}/resume"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(exec(&v["sandbox"], "echo back").await.unwrap(), "back\n");
    for id in [&idle_id, &busy_id, &patient_id] {
        c.send(
            reqwest::Method::DELETE,
            &format!("/v1/sessions/{id}"),
            None,
            None,
        )
        .await;
    }
    if let Some(two) = two {
        assert!(two.terminate().await);
    }
    assert!(one.terminate().await);
}

#[tokio::test]
async fn idle_sessions_are_paused_on_sqlite() {
    idle_pause(Engine::Sqlite).await;
}

#[tokio::test]
async fn idle_sessions_are_paused_once_by_two_replicas_on_postgres() {
    idle_pause(Engine::Postgres).await;
}

/// The reconciler: a session whose agent was killed behind the server's back is closed (paused,
/// billing stopped at its last sign of life), and a sandbox no session owns is killed.
#[tokio::test]
async fn the_reconciler_closes_lost_sessions_and_kills_orphans() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let sandboxes = db.dir.path().join("sandboxes");
    let token = create_account(&db, "acme").await;
    let agent = common::agent_bin();
    let mut flags = common::sandbox_flags(&sandboxes, &agent);
    flags.extend(["--idle-pause", "off", "--reconcile-every", "1s"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start(&db, &flags).await;
    let c = server.client(&token);
    let (s, v) = create_now(
        &c,
        json!({"managed": true, "repository": "acme/app"}),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["session"]["id"].as_str().unwrap().to_string();
    let sandbox_id = v["sandbox"]["id"].as_str().unwrap().to_string();

    // A sandbox made by a server but owned by no session (as a create that crashed before
    // recording would leave).
    let orphan = {
        use rclaude_sandbox::provider::{Provider, SandboxSpec};
        let p = rclaude_sandbox::provider::local::LocalProvider::at(sandboxes.clone(), agent);
        let spec = SandboxSpec {
            name: "orphan".into(),
            metadata: [("rclaude.account".to_string(), "someone".to_string())].into(),
            ..SandboxSpec::default()
        };
        let info = p.create(&spec).await.unwrap();
        p.connect(&info.id).await.unwrap();
        info.id
    };
    assert!(sandboxes.join(&orphan).exists());

    // Let the server see the session alive for a while, then kill its agent behind its back.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let state: Value = serde_json::from_slice(
        &std::fs::read(sandboxes.join(&sandbox_id).join("agent.json")).unwrap(),
    )
    .unwrap();
    // SAFETY: kill(2) on the agent this test's server started.
    unsafe { libc::kill(state["pid"].as_i64().unwrap() as i32, libc::SIGKILL) };
    let killed_at = std::time::Instant::now();
    let created = std::time::Instant::now() - std::time::Duration::from_secs(3);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let closed = loop {
        let (_, v) = c.get(&format!("/v1/sessions/{id}")).await;
        if v["session"]["state"] != "running" {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "still running: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(closed["session"]["state"], "paused", "{closed}");
    let last = closed["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["type"].as_str(), last["data"]["reason"].as_str()),
        (Some("paused"), Some("lost"))
    );
    // Billed up to its last sign of life (within a reconcile round), not up to the discovery.
    let billed = closed["session"]["active_seconds"].as_i64().unwrap();
    let alive = (killed_at - created).as_secs() as i64;
    assert!(
        billed <= alive + 2,
        "billed {billed}s, alive about {alive}s"
    );

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sandboxes.join(&orphan).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphan sandbox lives on"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(
        sandboxes.join(&sandbox_id).exists(),
        "the session's own sandbox was killed"
    );
    assert!(server.terminate().await);
}

/// Limits: at most N running sessions (429 past it), and a monthly budget: once spent, running
/// sessions pause (reason `budget`) and creating or resuming answers 402.
#[tokio::test]
async fn account_limits_refuse_and_pause() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let sandboxes = db.dir.path().join("sandboxes");
    let token = create_account(&db, "acme").await;
    let mut flags = common::sandbox_flags(&sandboxes, &common::agent_bin());
    flags.extend(["--idle-pause", "off", "--reconcile-every", "1s"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start(&db, &flags).await;
    let c = server.client(&token);
    let body = json!({"managed": true, "repository": "acme/app"});

    let (ok, out, err) = common::admin(&db, &["set-limits", "acme", "--max-running", "1"]).await;
    assert!(ok && out.contains("at most 1 running"), "{out}{err}");
    let (s, a) = create_now(&c, body.clone(), None, None).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let a_id = a["session"]["id"].as_str().unwrap().to_string();
    let (s, v) = create_now(&c, body.clone(), None, None).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "too_many_sessions");
    assert_eq!(
        sandbox_dirs(&sandboxes),
        1,
        "a refused create made a sandbox"
    );
    let (s, _) = c
        .post(&format!("/v1/sessions/{a_id}/pause"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = create_now(&c, body.clone(), None, None).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let b_id = b["session"]["id"].as_str().unwrap().to_string();
    let (s, v) = c
        .post(&format!("/v1/sessions/{a_id}/resume"), json!({}))
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // Work that lives only in b's sandbox: a repository (as a first sync makes it) with a
    // commit and an uncommitted file.
    rclaude_sandbox_git::init_sandbox(&envd_sandbox(&b["sandbox"]).unwrap())
        .await
        .unwrap();
    exec(
        &b["sandbox"],
        "git -c user.name=a -c user.email=a@x commit -q --allow-empty -m first && echo draft > notes.txt",
    )
    .await
    .unwrap();

    // A budget already spent (the month's storage alone costs more than a micro-dollar).
    let (ok, out, err) = common::admin(
        &db,
        &[
            "set-limits",
            "acme",
            "--no-running-limit",
            "--max-usd-per-month",
            "0.000001",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let paused = loop {
        let (_, v) = c.get(&format!("/v1/sessions/{b_id}")).await;
        if v["session"]["state"] == "paused" {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not paused at the cap: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let last = paused["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["data"]["reason"], "budget", "{paused}");
    // The server checkpointed b's work before pausing it.
    let (_, cps) = c.get(&format!("/v1/sessions/{b_id}/checkpoints")).await;
    let cps = cps["checkpoints"].as_array().unwrap().clone();
    assert_eq!(cps.len(), 1, "{cps:?}");
    assert_eq!(cps[0]["info"]["checkpoint"]["reason"], "budget-pause");
    assert_eq!(cps[0]["info"]["checkpoint"]["wip"], true);
    assert!(cps[0]["size_bytes"].as_i64().unwrap() > 0);
    assert!(
        exec(&b["sandbox"], "true").await.is_err(),
        "still running at the cap"
    );
    let (s, v) = create_now(&c, body.clone(), None, None).await;
    assert_eq!(s, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert_eq!(v["error"]["code"], "budget_exhausted");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("budget"),
        "{v}"
    );
    let (s, v) = c
        .post(&format!("/v1/sessions/{b_id}/resume"), json!({}))
        .await;
    assert_eq!(s, StatusCode::PAYMENT_REQUIRED, "{v}");

    // Raised again: work resumes.
    let (ok, _, _) = common::admin(&db, &["set-limits", "acme", "--no-budget"]).await;
    assert!(ok);
    let (s, v) = c
        .post(&format!("/v1/sessions/{b_id}/resume"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for id in [&a_id, &b_id] {
        c.send(
            reqwest::Method::DELETE,
            &format!("/v1/sessions/{id}"),
            None,
            None,
        )
        .await;
    }
    let (ok, _, err) = common::admin(&db, &["set-limits", "acme", "--max-running", "0"]).await;
    assert!(!ok && err.contains("at least 1"), "{err}");
    assert!(server.terminate().await);
}

#[path = "../../tests/support/git_http.rs"]
mod git_http;

/// `clone_url`: the server's new sandbox clones the repository (at REF); a clone that cannot
/// happen (no repository there, unknown REF, private without a token) is 422 and leaves no
/// sandbox, no session and no bill; the token reaches neither the answer nor the clone's config.
#[tokio::test]
async fn start_from_a_url_clones_in_the_new_sandbox() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let sandboxes = db.dir.path().join("sandboxes");
    let token = create_account(&db, "acme").await;
    let server = start(&db, &sandboxes).await;
    let c = server.client(&token);

    let git = git_http::GitHttp::start(&db.dir.path().join("git"));
    let bare = git.create_repo("acme", "app", true);
    let secret = "ghp_serverSideCloneToken0123456789";
    git.add_token(secret, false);
    let src = db.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let sh = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&src)
            .env("GIT_AUTHOR_NAME", "T")
            .env("GIT_AUTHOR_EMAIL", "t@e")
            .env("GIT_COMMITTER_NAME", "T")
            .env("GIT_COMMITTER_EMAIL", "t@e")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(&["init", "-q", "-b", "main"]);
    std::fs::write(src.join("README.md"), "from upstream\n").unwrap();
    sh(&["add", "-A"]);
    sh(&["commit", "-qm", "first"]);
    sh(&["checkout", "-q", "-b", "feature"]);
    std::fs::write(src.join("README.md"), "feature\n").unwrap();
    sh(&["commit", "-qam", "feature"]);
    git.seed_from("acme", "app", &src);
    assert!(bare.exists());
    let url = git.repo_url("acme", "app");

    // Private, no token: refused, and nothing is left.
    let body = json!({"managed": true, "repository": "local/acme/app", "clone_url": url});
    let (s, v) = create_now(&c, body, None, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "repository_auth", "{v}");
    assert_eq!(sandbox_dirs(&sandboxes), 0);
    let (_, list) = c.get("/v1/sessions").await;
    assert_eq!(list["sessions"].as_array().map(Vec::len), Some(0), "{list}");

    // An unknown REF, with the token: the same.
    let body = json!({"managed": true, "repository": "local/acme/app",
        "clone_url": format!("{url}@no-such-ref"), "git_token": secret});
    let (s, v) = create_now(&c, body, None, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "unknown_ref", "{v}");
    assert_eq!(sandbox_dirs(&sandboxes), 0);

    // With the token, at a branch: cloned, the session works on that branch.
    let body = json!({"managed": true, "repository": "local/acme/app",
        "clone_url": format!("{url}@feature"), "git_token": secret});
    let (s, v) = create_now(&c, body, None, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(!v.to_string().contains(secret));
    assert_eq!(v["session"]["branch"], "feature", "{v}");
    let readme = exec(&v["sandbox"], "cat README.md").await.unwrap();
    assert_eq!(readme, "feature\n");
    let config = exec(&v["sandbox"], "git config --list").await.unwrap();
    assert!(!config.contains(secret), "{config}");
    let origin = exec(&v["sandbox"], "cat .git/rclaude/origin")
        .await
        .unwrap();
    assert!(origin.contains(&format!("url={url}")), "{origin}");
    let id = v["session"]["id"].as_str().unwrap().to_string();
    let (s, _) = c
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/sessions/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}
