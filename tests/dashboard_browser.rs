//! The dashboard in a real browser: headless Chromium driven over the WebDriver protocol
//! (chromedriver, plain HTTP from Rust), against a real `rclaude-server` (SQLite) and the real
//! `rclaude` CLI. Signs in, watches a session appear live (no reload) when `rclaude up` starts
//! one, opens the session and usage pages, checks another account's data never shows, signs out.
//! Screenshots go to `$CARGO_TARGET_DIR/test-artifacts/dashboard/` (default `target/`).
//!
//! Needs the Debian packages `chromium` and `chromium-driver`; without them the test fails with
//! a message saying so, unless `RCLAUDE_SKIP_BROWSER=1`.

mod common;
#[path = "support/skip.rs"]
mod skip;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestRepo;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The server binary, built next to ours (`cargo test --workspace` builds it; build it if not).
fn server_bin() -> PathBuf {
    let path = PathBuf::from(common::bin()).with_file_name("rclaude-server");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-p", "rclaude-server"])
            .status()
            .unwrap();
        assert!(st.success(), "building rclaude-server failed");
    }
    path
}

/// Kills and reaps a child process when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts").join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A minimal WebDriver client (W3C protocol) over HTTP.
struct Driver {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    session: String,
    _chromedriver: Proc,
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let chromedriver = Proc(child);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = rt.block_on(async {
                match http.get(format!("{base}/status")).send().await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .ok()
                        .is_some_and(|v| v["value"]["ready"] == true),
                    Err(_) => false,
                }
            });
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let v = rt.block_on(async {
            let r = http
                .post(format!("{base}/session"))
                .json(&caps)
                .send()
                .await
                .expect("new session");
            r.json::<Value>().await.unwrap()
        });
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused the session: {v}"))
            .to_string();
        Driver {
            rt,
            http,
            base,
            session,
            _chromedriver: chromedriver,
            _profile: profile,
        }
    }

    fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let v: Value = self.rt.block_on(async {
            let mut r = self.http.request(method, url);
            if let Some(b) = body {
                r = r.json(&b);
            }
            r.send()
                .await
                .expect("webdriver call")
                .json()
                .await
                .expect("webdriver json")
        });
        if let Some(err) = v["value"].get("error") {
            panic!("webdriver {path}: {err}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            reqwest::Method::POST,
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element for {css}: {v}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let el = self.find(css);
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        );
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    fn source(&self) -> String {
        self.cmd(reqwest::Method::GET, "/source", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(artifacts_dir().join(name), png).unwrap();
    }

    /// Polls `script` (which returns a boolean) until true; panics with `what` after `limit`.
    fn wait_until(&self, what: &str, script: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.js(script) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}; page:\n{}", self.source());
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self
            .rt
            .block_on(async { self.http.delete(url).send().await });
    }
}

fn browser_available() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    if skip::opted_out(
        "RCLAUDE_SKIP_BROWSER",
        &format!("dashboard browser test: {CHROMIUM} / {CHROMEDRIVER} missing"),
    ) {
        return false;
    }
    panic!(
        "the dashboard browser test needs headless Chromium: install the Debian packages with \
         `apt-get install -y chromium chromium-driver` (or set RCLAUDE_SKIP_BROWSER=1 to skip it)"
    );
}

struct Server {
    _proc: Proc,
    base: String,
    db: String,
}

impl Server {
    fn start(db: &str) -> Server {
        // Direct mode: the CLI runs the sandbox and reports to the server.
        Server::start_with(db, &["--sandbox-provider", "none"])
    }

    fn start_with(db: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(server_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", db])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(
            base.starts_with("http://"),
            "unexpected first line {line:?}"
        );
        Server {
            _proc: Proc(child),
            base,
            db: db.to_string(),
        }
    }

    fn token(&self, account: &str) -> String {
        let out = Command::new(server_bin())
            .args([
                "admin",
                "create-account",
                account,
                "--database-url",
                &self.db,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string()
    }

    fn post(&self, token: &str, path: &str, body: Value) -> Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = reqwest::Client::new()
                .post(format!("{}{path}", self.base))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "POST {path}: {}", r.status());
            r.json().await.unwrap()
        })
    }
}

#[test]
fn dashboard_in_a_browser_shows_a_session_live() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&format!(
        "sqlite://{}",
        dir.path().join("server.db").display()
    ));
    let alice = server.token("alice");
    let bob = server.token("bob");
    let bob_repo = "github.com/bob/private-thing";
    let bob_session = server.post(
        &bob,
        "/v1/sessions",
        json!({"repository": bob_repo, "branch": "bob-branch", "provider": "local"}),
    );
    let bob_sid = bob_session["session"]["id"].as_str().unwrap().to_string();

    let d = Driver::start();
    // Signing in: the sessions page sends us to the form, which brings us back.
    d.goto(&format!("{}/sessions", server.base));
    assert!(d.url().contains("/sign-in?next=%2Fsessions"), "{}", d.url());
    d.screenshot("01-sign-in.png");
    d.type_into("#token", &alice);
    d.click("form.card button[type=submit]");
    d.wait_until(
        "the sessions page",
        "return location.pathname === '/sessions' && !!document.getElementById('repositories')",
        Duration::from_secs(30),
    );
    assert!(d.source().contains("No sessions yet"));
    assert!(
        !d.source().contains(&alice),
        "the token must not appear in the page"
    );
    // The cookie is HttpOnly: scripts cannot read it.
    assert_eq!(
        d.js("return document.cookie.includes('rclaude_session')"),
        json!(false)
    );
    d.wait_until(
        "the live socket",
        "return document.getElementById('repositories').dataset.connected === 'yes'",
        Duration::from_secs(30),
    );
    d.js("window.__stillTheSamePage = 42; return true;");

    // The CLI starts a session: it appears in the open page, without a reload.
    let t = TestRepo::new("[tasks.test]\nrun = \"echo ok\"\n[ports]\n8080 = \"preview\"\n");
    t.commit_all("init");
    let login = t
        .cmd(&["login", "--server", &server.base])
        .env("RCLAUDE_TOKEN", &alice)
        .output()
        .unwrap();
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    t.ok(&["up"]);
    d.wait_until(
        "the new session row",
        "return document.querySelectorAll('tr[data-session]').length === 1",
        Duration::from_secs(60),
    );
    d.wait_until(
        "the running state",
        "return document.querySelector('tr[data-session]').dataset.state === 'running'",
        Duration::from_secs(60),
    );
    assert_eq!(
        d.js("return window.__stillTheSamePage"),
        json!(42),
        "the page was reloaded"
    );
    assert!(
        d.js("return document.getElementById('live-status').textContent")
            .as_str()
            .unwrap()
            .contains("New session")
    );
    d.wait_until("the updated totals", "return document.getElementById('account-summary').textContent.startsWith('1 session in 1 repository')", Duration::from_secs(30));
    d.screenshot("02-sessions-live.png");
    let sid = d
        .js("return document.querySelector('tr[data-session]').dataset.session")
        .as_str()
        .unwrap()
        .to_string();
    let page = d.source();
    assert!(
        !page.contains(bob_repo) && !page.contains(&bob_sid),
        "Bob's session shows for Alice"
    );

    // The session page, updating live when a task runs.
    d.click("tr[data-session] a");
    d.wait_until(
        "the session page",
        "return !!document.getElementById('timeline')",
        Duration::from_secs(30),
    );
    assert!(d.url().ends_with(&format!("/sessions/{sid}")));
    // The labelled port `up` reported, as a link.
    assert_eq!(
        d.js("const a = document.querySelector('#ports a'); return a && [a.href, a.textContent]"),
        serde_json::json!(["http://127.0.0.1:8080/", "preview (8080)"])
    );
    d.wait_until(
        "the session socket",
        "return document.getElementById('session-live').dataset.connected === 'yes'",
        Duration::from_secs(30),
    );
    t.ok(&["run", "test"]);
    d.wait_until("the task result", "return document.getElementById('tasks').textContent.includes('test') && document.getElementById('tasks').textContent.includes('passed')", Duration::from_secs(60));
    assert!(d.source().contains("task_finished"));
    d.screenshot("03-session.png");

    // The usage page.
    d.goto(&format!("{}/usage", server.base));
    d.wait_until(
        "the usage page",
        "return !!document.querySelector('svg.chart') && !!document.getElementById('invoice')",
        Duration::from_secs(30),
    );
    let usage = d.source();
    assert!(
        usage.contains("Persistent storage for"),
        "the invoice has the storage line"
    );
    assert!(!usage.contains(bob_repo));
    d.screenshot("04-usage.png");

    // Bob's session by its address: not found.
    d.goto(&format!("{}/sessions/{bob_sid}", server.base));
    let nf = d.source();
    assert!(nf.contains("Not found") && !nf.contains(bob_repo), "{nf}");
    d.screenshot("05-other-account-404.png");

    // Sign out: back to the form, and the pages are closed again.
    d.goto(&format!("{}/sessions", server.base));
    d.click("form[action='/sign-out'] button");
    d.wait_until(
        "the sign-in page",
        "return location.pathname === '/sign-in'",
        Duration::from_secs(30),
    );
    d.goto(&format!("{}/usage", server.base));
    assert!(d.url().contains("/sign-in"), "{}", d.url());

    t.ok(&["down", "--yes"]);
}

#[test]
fn a_managed_session_is_paused_resumed_and_stopped_from_the_dashboard() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sandboxes = dir.path().join("sandboxes");
    let server = Server::start_with(
        &format!("sqlite://{}", dir.path().join("server.db").display()),
        &[
            "--sandboxes-dir",
            sandboxes.to_str().unwrap(),
            "--agent-bin",
            env!("CARGO_BIN_EXE_rclaude"),
            "--idle-pause",
            "off",
        ],
    );
    let alice = server.token("alice");
    let made = server.post(
        &alice,
        "/v1/sessions",
        json!({"managed": true, "repository": "github.com/alice/app"}),
    );
    let sid = made["session"]["id"].as_str().unwrap().to_string();
    let sandbox = sandboxes.join(made["sandbox"]["id"].as_str().unwrap());
    let agent_running = || {
        let state: Value =
            serde_json::from_slice(&std::fs::read(sandbox.join("agent.json")).unwrap_or_default())
                .unwrap_or(Value::Null);
        // SAFETY: signal 0 only checks that the agent process exists.
        state["pid"]
            .as_i64()
            .is_some_and(|p| unsafe { libc::kill(p as i32, 0) } == 0)
    };
    assert!(agent_running());

    let d = Driver::start();
    d.goto(&format!("{}/sessions/{sid}", server.base));
    d.type_into("#token", &alice);
    d.click("form.card button[type=submit]");
    let state_is = |s: &str| {
        format!(
            "return location.pathname === '/sessions/{sid}' && \
             document.querySelector('#summary').textContent.includes('{s}')"
        )
    };
    d.wait_until(
        "the running session",
        &state_is("running"),
        Duration::from_secs(30),
    );
    d.click("#session-pause");
    d.wait_until(
        "the paused session",
        &state_is("paused"),
        Duration::from_secs(30),
    );
    assert!(!agent_running(), "the paused session's agent still runs");
    d.screenshot("managed-paused.png");
    d.click("#session-resume");
    d.wait_until(
        "the resumed session",
        &state_is("running"),
        Duration::from_secs(30),
    );
    assert!(agent_running(), "resume did not start the agent");
    d.click("#session-stop");
    d.wait_until(
        "the stopped session",
        &state_is("stopped"),
        Duration::from_secs(30),
    );
    assert_eq!(
        d.js("return document.querySelectorAll('.controls button').length"),
        json!(0),
        "a stopped session still offers buttons"
    );
    assert!(!sandbox.exists(), "the sandbox outlived its session");
}

#[path = "support/git_http.rs"]
mod git_http;

#[test]
fn a_session_is_started_from_a_repository_url_on_the_dashboard() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sandboxes = dir.path().join("sandboxes");
    let server = Server::start_with(
        &format!("sqlite://{}", dir.path().join("server.db").display()),
        &[
            "--sandboxes-dir",
            sandboxes.to_str().unwrap(),
            "--agent-bin",
            env!("CARGO_BIN_EXE_rclaude"),
            "--idle-pause",
            "off",
        ],
    );
    let alice = server.token("alice");
    let git = git_http::GitHttp::start(&dir.path().join("git"));
    git.create_repo("alice", "app", false);
    let src = TestRepo::new("");
    src.write("README.md", "started from the dashboard\n");
    src.commit_all("init");
    git.seed_from("alice", "app", src.path());

    let d = Driver::start();
    d.goto(&format!("{}/sessions", server.base));
    d.type_into("#token", &alice);
    d.click("form.card button[type=submit]");
    d.wait_until(
        "the sessions page with the start form",
        "return !!document.querySelector('#start-url')",
        Duration::from_secs(30),
    );
    d.type_into("#start-url", &git.repo_url("alice", "app"));
    d.click("#start-session button[type=submit]");
    d.wait_until(
        "the new session's page",
        "return /^\\/sessions\\/[0-9a-f-]{36}$/.test(location.pathname) && \
         document.querySelector('#summary').textContent.includes('running')",
        Duration::from_secs(60),
    );
    d.screenshot("started-from-url.png");
    let readme = walk(&sandboxes)
        .into_iter()
        .find(|p| p.ends_with("workspace/README.md"))
        .expect("the clone in the server's sandbox");
    assert_eq!(
        std::fs::read_to_string(readme).unwrap(),
        "started from the dashboard\n"
    );
    assert!(
        d.source().contains("alice/app"),
        "the session page names the repository"
    );
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() && !p.ends_with(".git") => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}
