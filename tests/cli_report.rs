//! The CLI reporting to a real `rclaude-server` (SQLite): login, session events from up / run /
//! pause / down, an outage that queues events for later, usage and logs.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::TestRepo;
use common::server::Server;

const CONFIG: &str = r#"
[tasks.build]
run = "echo built"
[tasks.test]
run = "echo tested"
depends = ["build"]
"#;

fn event_types(v: &serde_json::Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sessions_are_reported_and_an_outage_only_delays_events() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("server.db").display());
    let server = Server::start(&db, "127.0.0.1:0");
    let token = server.create_account("alice");

    let t = TestRepo::new(CONFIG);
    t.commit_all("init");
    server.login(&t, &token);
    let creds = t.home.path().join("config/credentials.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
        0o600
    );

    t.ok(&["up"]);
    t.ok(&["run", "test"]);
    t.ok(&["pause"]);
    let record = t.session_record();
    let session = record["session_id"].as_str().unwrap().to_string();
    let detail = server.get(&token, &format!("/v1/sessions/{session}"));
    assert_eq!(
        event_types(&detail),
        [
            "created",
            "started",
            "task_started",
            "task_finished",
            "task_started",
            "task_finished",
            "paused"
        ],
        "{detail:#}"
    );
    let finished = &detail["events"][5]["data"];
    assert_eq!(finished["task"], "test");
    assert_eq!(finished["exit_code"], 0);
    assert_eq!(detail["session"]["state"], "paused");
    assert_eq!(detail["session"]["provider"], "local");

    // The server goes away: work goes on, events wait on disk.
    let base = server.stop();
    let r = t.rclaude(&["run", "build"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    let outbox = t.home.path().join("state/outbox");
    let queued = std::fs::read_dir(&outbox)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .count();
    assert!(queued >= 2, "expected queued events, found {queued}");

    // It comes back on the same address: the next command delivers them, once each.
    let server = Server::start(&db, base.trim_start_matches("http://"));
    t.ok(&["down", "--yes"]);
    let detail = server.get(&token, &format!("/v1/sessions/{session}"));
    let types = event_types(&detail);
    assert_eq!(
        &types[7..],
        ["resumed", "task_started", "task_finished", "stopped"],
        "{types:?}"
    );
    assert_eq!(
        std::fs::read_dir(&outbox)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .count(),
        0
    );

    // usage and logs read it back.
    let u = t.ok(&["usage", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&u.stdout()).unwrap();
    assert!(
        v["invoice"]["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["kind"] == "storage"),
        "{v:#}"
    );
    let logs = t.ok(&["logs", "--session", &session]);
    assert!(logs.stdout().contains("task_finished"), "{}", logs.all());
    assert!(logs.stdout().contains("exit 0"), "{}", logs.all());

    // A wrong token is refused at login.
    let bad = t
        .cmd(&["login", "--server", &server.base])
        .env("RCLAUDE_TOKEN", "rcl_wrong")
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(77),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn usage_months_out_of_range_are_usage_errors() {
    let repo = TestRepo::new("");
    for month in ["9999-12", "1969-12", "2026-13", "26-01"] {
        let r = repo.rclaude(&["usage", "--month", month]);
        assert_eq!(r.code(), 64, "--month {month}: {}", r.all());
    }
    let r = repo.rclaude(&["usage", "--month", "9999-12"]);
    assert!(r.stderr().contains("1970-01 to 9998-12"), "{}", r.all());
}

/// A server that runs managed sandboxes on the local provider under `dir`, and an account's
/// token.
fn managed_server(dir: &std::path::Path) -> (Server, PathBuf, String) {
    let (server, sandboxes) = Server::managed_local(dir, &[]);
    let token = server.create_account("alice");
    (server, sandboxes, token)
}

#[test]
fn a_managed_session_is_created_paused_and_ended_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (server, sandboxes, token) = managed_server(dir.path());
    // `managed = true` without a server says what it needs.
    let forced = TestRepo::new("[sandbox]\nmanaged = true\n");
    forced.commit_all("init");
    let r = forced.rclaude(&["up"]);
    assert_eq!(r.code(), 78, "{}", r.all());
    assert!(r.stderr().contains("rclaude login"), "{}", r.all());

    // No `managed` key: managed because the server we are logged in to offers it; its own
    // idle pause and size travel with the create.
    let t = TestRepo::new(&format!(
        "[sandbox]\nidle_pause = \"20m\"\ncpu = 2\n{CONFIG}"
    ));
    t.git(&["remote", "add", "origin", "https://github.com/acme/app.git"]);
    t.write("a.txt", "from the laptop\n");
    t.commit_all("init");
    let login = |t: &TestRepo| server.login(t, &token);
    login(&t);
    t.ok(&["up"]);
    let record = t.session_record();
    assert_eq!(record["provider"], "managed");
    let session = record["session_id"].as_str().unwrap().to_string();
    let on_server = |path: &str| server.get(&token, path);
    let detail = on_server(&format!("/v1/sessions/{session}"));
    assert_eq!(detail["session"]["managed"], true, "{detail:#}");
    assert_eq!(detail["session"]["state"], "running");
    assert_eq!(detail["session"]["provider"], "local");
    assert_eq!(detail["session"]["idle_pause_seconds"], 1200, "{detail:#}");
    assert_eq!(std::fs::read_dir(&sandboxes).unwrap().count(), 1);

    // The work tree was synced straight into the server's sandbox.
    let r = t.ok(&["exec", "--", "cat a.txt; echo session=$RCLAUDE_SESSION"]);
    assert_eq!(
        r.stdout(),
        format!("from the laptop\nsession={session}\n"),
        "{}",
        r.all()
    );
    t.ok(&["run", "test"]);

    // `status` shows what the server bills and the budget left.
    server.admin(&["set-limits", "alice", "--max-usd-per-month", "100"]);
    let r = t.ok(&["status"]);
    assert!(r.stdout().contains("billed by the server"), "{}", r.all());
    assert!(
        r.stdout().contains("left of $100.00 this month"),
        "{}",
        r.all()
    );
    let st: serde_json::Value =
        serde_json::from_str(&t.ok(&["status", "--json"]).stdout()).unwrap();
    assert_eq!(st["provider"], "managed");
    assert!(st["cost_micros"].is_i64(), "{st}");
    assert_eq!(st["budget"]["max_month_micros"], 100_000_000, "{st}");
    assert!(st["budget"]["left_micros"].as_i64().unwrap() > 0, "{st}");

    // Another clone of the repository, on another machine (its own home), joins the session.
    let other = TestRepo::new(CONFIG);
    other.git(&["fetch", "-q", t.path().to_str().unwrap(), "main"]);
    other.git(&["reset", "-q", "--hard", "FETCH_HEAD"]);
    other.git(&["remote", "add", "origin", "git@github.com:acme/app.git"]);
    login(&other);
    let r = other.ok(&["up"]);
    assert!(r.stderr().contains("Joining session"), "{}", r.all());
    assert_eq!(other.session_record()["session_id"], session.as_str());
    assert_eq!(std::fs::read_dir(&sandboxes).unwrap().count(), 1);
    let r = other.ok(&["exec", "--", "cat a.txt"]);
    assert_eq!(r.stdout(), "from the laptop\n");
    // Either machine lists the account's sessions from the server.
    let r = other.ok(&["ls"]);
    let line = r
        .stdout()
        .lines()
        .find(|l| l.contains(&session))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        line.starts_with('*') && line.contains("github.com/acme/app") && line.contains("running"),
        "{}",
        r.all()
    );
    let listed: serde_json::Value =
        serde_json::from_str(&t.ok(&["ls", "--managed", "--json"]).stdout()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["provider"], "managed");

    t.ok(&["pause"]);
    assert_eq!(
        on_server(&format!("/v1/sessions/{session}"))["session"]["state"],
        "paused"
    );
    // The next command resumes it through the server.
    let r = t.ok(&["exec", "--", "cat a.txt"]);
    assert_eq!(r.stdout(), "from the laptop\n");
    t.ok(&["down", "--yes", "--discard"]);
    let detail = on_server(&format!("/v1/sessions/{session}"));
    assert_eq!(detail["session"]["state"], "stopped", "{detail:#}");
    assert_eq!(std::fs::read_dir(&sandboxes).unwrap().count(), 0);
    // The lifecycle is the server's own record; the client added its task reports.
    assert_eq!(
        event_types(&detail),
        [
            "created",
            "started",
            "task_started",
            "task_finished",
            "task_started",
            "task_finished",
            "paused",
            "resumed",
            "stopped"
        ],
        "{detail:#}"
    );
    for e in detail["events"].as_array().unwrap() {
        if ["started", "paused", "resumed", "stopped"].contains(&e["type"].as_str().unwrap()) {
            assert_eq!(e["data"]["by"], "server", "{e}");
        }
    }

    // `up --direct`: the sandbox is ours again, the server only hears about it. (A record of
    // a managed session would be refused: forget the stopped one first.)
    let r = other.rclaude(&["up", "--direct"]);
    assert_eq!(r.code(), 78, "{}", r.all());
    for e in std::fs::read_dir(other.home.path().join("state/repos")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let r = other.ok(&["up", "--direct"]);
    assert!(!r.stderr().contains("Joining"), "{}", r.all());
    assert_eq!(other.session_record()["provider"], "local");
    assert_eq!(std::fs::read_dir(&sandboxes).unwrap().count(), 0);
}

#[path = "support/git_http.rs"]
mod git_http;

/// A session the server started from a URL (the dashboard's form, or `POST /v1/sessions` with
/// `clone_url`) is joined by its id from any directory of a logged-in machine.
#[test]
fn a_session_started_on_the_server_from_a_url_is_joined_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _sandboxes, token) = managed_server(dir.path());
    let git = git_http::GitHttp::start(&dir.path().join("git"));
    git.create_repo("acme", "app", false);
    let src = TestRepo::new("[setup]\nrun = \"true\"\n");
    src.write("README.md", "from upstream\n");
    src.commit_all("init");
    git.seed_from("acme", "app", src.path());
    let url = git.repo_url("acme", "app");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let created: serde_json::Value = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/sessions", server.base))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "managed": true, "repository": "local/acme/app", "clone_url": url
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        r.json().await.unwrap()
    });
    let id = created["session"]["id"].as_str().unwrap().to_string();

    // Another machine: a fresh home, logged in, in a directory that is no repository.
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let rc = |args: &[&str]| {
        let mut c = Command::new(common::bin());
        c.args(args)
            .current_dir(cwd.path())
            .env("RCLAUDE_HOME", home.path())
            .env("CI", "true")
            .env_remove("RCLAUDE_SERVER")
            .env_remove("RCLAUDE_TOKEN");
        common::git_env(&mut c);
        common::Run(c.output().unwrap())
    };
    let login = Command::new(common::bin())
        .args(["login", "--server", &server.base])
        .current_dir(cwd.path())
        .env("RCLAUDE_HOME", home.path())
        .env("RCLAUDE_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let r = rc(&["exec", "--session", &id, "--", "cat", "README.md"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert_eq!(r.stdout(), "from upstream\n");
    let status = rc(&["status", "--session", &id[..8]]);
    assert_eq!(status.code(), 0, "{}", status.all());
    assert!(
        status.stdout().contains("cloned in the sandbox from"),
        "{}",
        status.all()
    );
    assert!(
        status.stdout().contains("the repository's .rclaude.toml"),
        "{}",
        status.all()
    );
    let r = rc(&["down", "--yes", "--session", &id[..8]]);
    assert_eq!(r.code(), 0, "{}", r.all());
    let detail = server.get(&token, &format!("/v1/sessions/{id}"));
    assert_eq!(detail["session"]["state"], "stopped", "{detail:#}");
}

#[test]
fn a_secret_a_task_prints_is_redacted_in_the_servers_events_and_in_logs() {
    const VALUE: &str = "sk-live-0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("server.db").display());
    let server = Server::start(&db, "127.0.0.1:0");
    let token = server.create_account("alice");
    let t = TestRepo::new(
        "[sandbox]\nprovider = \"local\"\n[secrets]\nAPI_KEY = \"T_API\"\n\
         [tasks.leak]\nrun = 'printf \"key=%s\\n\" \"$API_KEY\"; printf \"split=%s\" \"${API_KEY%????????????}\"; sleep 0.5; printf \"%s\\n\" \"${API_KEY#????????????}\"'\n",
    );
    t.commit_all("init");
    server.login(&t, &token);
    let run = common::Run(
        t.cmd(&["run", "leak"])
            .env("T_API", VALUE)
            .output()
            .unwrap(),
    );
    assert_eq!(run.code(), 0, "{}", run.all());
    assert!(run.stdout().contains("split=***API_KEY"), "{}", run.all());

    // What the server stored: the task's output tail, redacted.
    let session = t.session_id();
    let detail = server.get(&token, &format!("/v1/sessions/{session}"));
    let stored = detail.to_string();
    assert!(
        !stored.contains(VALUE) && !stored.contains(&VALUE[12..]),
        "{stored}"
    );
    let finished = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "task_finished")
        .unwrap_or_else(|| panic!("no task_finished in {detail}"));
    let tail = finished["data"]["output_tail"].as_str().unwrap();
    assert!(
        tail.contains("key=***API_KEY") && tail.contains("split=***API_KEY"),
        "{finished}"
    );

    // `logs` (without the secret in its environment) shows the stored, redacted tail.
    let logs = t.ok(&["logs"]);
    assert!(logs.stdout().contains("split=***API_KEY"), "{}", logs.all());
    assert!(!logs.all().contains(VALUE), "{}", logs.all());
    t.ok(&["down", "--yes", "--discard"]);
}

#[test]
fn the_end_of_a_detached_run_reaches_the_server_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("server.db").display());
    let server = Server::start(&db, "127.0.0.1:0");
    let token = server.create_account("alice");
    let t = TestRepo::new(
        "[sandbox]\nprovider = \"local\"\n[setup]\nrun = \"mkdir -p $HOME/.local/bin && cp tools/claude $HOME/.local/bin/claude && chmod +x $HOME/.local/bin/claude\"\n",
    );
    t.write("tools/claude", common::STAND_IN_CLAUDE);
    t.commit_all("init");
    server.login(&t, &token);
    // No desktop here: the background wait is started for the server alone.
    let r = common::Run(
        t.cmd(&["claude", "--detach", "work alone"])
            .env("ANTHROPIC_API_KEY", "sk-test")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stderr().contains("reported to the server"), "{}", r.all());
    let run = r.stdout().trim().to_string();
    let session = t.session_id();
    let finished = |detail: &serde_json::Value| -> Vec<serde_json::Value> {
        detail["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "task_finished")
            .cloned()
            .collect()
    };
    assert!(finished(&server.get(&token, &format!("/v1/sessions/{session}"))).is_empty());

    // The run ends: the background wait alone reports it.
    t.sh("touch \"$HOME/go\"");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while finished(&server.get(&token, &format!("/v1/sessions/{session}"))).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the background wait did not report the end"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A later `wait` sees the same end and reports it again: the server keeps it once.
    assert_eq!(t.rclaude(&["wait"]).code(), 0);
    let events = finished(&server.get(&token, &format!("/v1/sessions/{session}")));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["run"], run.as_str());
    assert_eq!(events[0]["data"]["exit_code"], 0);
    assert_eq!(events[0]["data"]["detached"], true);
    // Both reports were the same event (a different one under the key would be refused and
    // buried in the outbox's `dead` directory).
    let dead = t.home.path().join("state/outbox/dead");
    assert!(
        dead.parent().unwrap().is_dir(),
        "no outbox at {}",
        dead.display()
    );
    assert_eq!(
        std::fs::read_dir(&dead).map(|d| d.count()).unwrap_or(0),
        0,
        "an event was refused: {}",
        dead.display()
    );
    t.ok(&["down", "--yes", "--discard"]);
}

#[test]
fn up_reports_where_the_labelled_ports_are_for_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("server.db").display());
    let server = Server::start(&db, "127.0.0.1:0");
    let token = server.create_account("alice");
    let t = TestRepo::new(
        "[sandbox]\nprovider = \"local\"\n[ports]\n3000 = \"web\"\n9229 = { label = \"debugger\" }\n",
    );
    t.commit_all("init");
    server.login(&t, &token);
    t.ok(&["up"]);
    let session = t.session_id();
    let detail = server.get(&token, &format!("/v1/sessions/{session}"));
    let ports = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "ports")
        .unwrap_or_else(|| panic!("no ports event: {detail:#}"));
    assert_eq!(
        ports["data"]["ports"],
        serde_json::json!([
            {"port": 3000, "label": "web", "url": "http://127.0.0.1:3000"},
            {"port": 9229, "label": "debugger", "url": "http://127.0.0.1:9229"}
        ])
    );
}
