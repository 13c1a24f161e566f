//! Test harness: real databases (a SQLite file, or a fresh PostgreSQL database per test), the real
//! `rclaude-server` binary on a loopback port, and HTTP / WebSocket clients.
//!
//! PostgreSQL: `RCLAUDE_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) must
//! be reachable; otherwise PostgreSQL tests fail, unless `RCLAUDE_SKIP_PG=1`.
#![allow(dead_code)]

#[path = "../../../tests/support/skip.rs"]
pub mod skip;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

pub const BIN: &str = env!("CARGO_BIN_EXE_rclaude-server");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A fresh database, removed at drop.
pub struct TestDb {
    pub engine: Engine,
    pub url: String,
    pub dir: tempfile::TempDir,
    pg: Option<(String, String)>, // (admin url, database name)
}

fn pg_admin_url() -> String {
    std::env::var("RCLAUDE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

impl TestDb {
    /// `None` only for PostgreSQL when it is unreachable and `RCLAUDE_SKIP_PG=1`.
    pub async fn new(engine: Engine) -> Option<TestDb> {
        let dir = tempfile::tempdir().expect("tempdir");
        match engine {
            Engine::Sqlite => Some(TestDb {
                engine,
                url: dir.path().join("server.db").display().to_string(),
                dir,
                pg: None,
            }),
            Engine::Postgres => {
                let admin = pg_admin_url();
                let mut conn = match sqlx::PgConnection::connect(&admin).await {
                    Ok(c) => c,
                    Err(e) => {
                        if skip::opted_out(
                            "RCLAUDE_SKIP_PG",
                            &format!("PostgreSQL test: {admin} unreachable ({e})"),
                        ) {
                            return None;
                        }
                        panic!(
                            "PostgreSQL tests need a server at {admin} (set RCLAUDE_TEST_PG_URL to another admin URL, \
                             or RCLAUDE_SKIP_PG=1 to skip them): {e}"
                        );
                    }
                };
                let name = format!("rclaude_test_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("CREATE DATABASE");
                let _ = conn.close().await;
                let mut url = url::Url::parse(&admin).expect("admin url");
                url.set_path(&format!("/{name}"));
                Some(TestDb {
                    engine,
                    url: url.to_string(),
                    dir,
                    pg: Some((admin, name)),
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            // Drop runs outside any runtime guarantee: use a private one on its own thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                })
            })
            .join();
        }
    }
}

/// Runs `rclaude-server admin ARGS…` against a database; returns stdout.
pub async fn admin(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--database-url")
        .arg(&db.url)
        .arg("admin")
        .args(args)
        .env("RCLAUDE_LOG_FORMAT", "text")
        .output()
        .await
        .expect("run admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Creates an account with the admin CLI; returns its first token (the last output line).
pub async fn create_account(db: &TestDb, name: &str) -> String {
    let (ok, out, err) = admin(db, &["create-account", name]).await;
    assert!(ok, "create-account failed: {out}\n{err}");
    out.lines().last().expect("a token line").trim().to_string()
}

/// The `rclaude` executable a server runs local sandboxes' agents with (built when missing).
pub fn agent_bin() -> PathBuf {
    let dir = std::path::Path::new(BIN).parent().expect("target dir");
    let bin = dir.join("rclaude");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = std::process::Command::new(cargo)
            .args(["build", "-p", "rclaude", "--bin", "rclaude"])
            .status()
            .expect("cargo build")
            .success();
        assert!(ok, "building the rclaude binary for the agent failed");
    }
    bin
}

/// Flags for a server whose managed sandboxes live in `dir`, run by `agent`.
pub fn sandbox_flags(dir: &std::path::Path, agent: &std::path::Path) -> Vec<String> {
    vec![
        "--sandboxes-dir".into(),
        dir.display().to_string(),
        "--agent-bin".into(),
        agent.display().to_string(),
    ]
}

/// A running `rclaude-server` process.
pub struct Server {
    pub base: String,
    pub addr: String,
    child: Child,
    pub log: PathBuf,
}

impl Server {
    /// Starts the server on `127.0.0.1:0` with `--test-clock` and extra flags.
    pub async fn start(db: &TestDb, extra: &[&str]) -> Server {
        Server::start_with_url(db, &db.url, extra).await
    }

    /// Like [`Server::start`], reaching the database through `url` (e.g. a proxy to it).
    pub async fn start_with_url(db: &TestDb, url: &str, extra: &[&str]) -> Server {
        Server::start_full(db, url, extra, &[]).await
    }

    /// Like [`Server::start`], with extra environment variables for the server process.
    pub async fn start_env(db: &TestDb, extra: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::start_full(db, &db.url, extra, envs).await
    }

    async fn start_full(db: &TestDb, url: &str, extra: &[&str], envs: &[(&str, &str)]) -> Server {
        let log = db
            .dir
            .path()
            .join(format!("server-{}.log", uuid::Uuid::new_v4().simple()));
        // Checkpoints beside the test's database unless the test picks a store.
        let store = (!extra.contains(&"--checkpoint-store")).then(|| {
            vec![
                "--checkpoint-store".to_string(),
                db.dir.path().join("checkpoints").display().to_string(),
            ]
        });
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--test-clock"])
            .arg("--database-url")
            .arg(url)
            .args(store.unwrap_or_default())
            .args(extra)
            .envs(envs.iter().copied())
            .env("RCLAUDE_LOG_FORMAT", "json")
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn rclaude-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .ok()
            .and_then(|l| l.ok().flatten());
        let Some(line) = line else {
            let _ = child.kill().await;
            panic!(
                "rclaude-server did not start; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let base = line.rsplit(' ').next().expect("listening line").to_string();
        assert!(base.starts_with("http://"), "unexpected first line: {line}");
        let addr = base.trim_start_matches("http://").to_string();
        Server {
            base,
            addr,
            child,
            log,
        }
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited successfully.
    pub async fn terminate(mut self) -> bool {
        let pid = self.child.id().expect("pid") as i32;
        // SAFETY-free: plain kill(2) through the `kill` command keeps the test dependency-light.
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("server exits after SIGTERM")
            .expect("wait");
        status.success()
    }

    /// Kills the process with SIGKILL (a crash).
    pub async fn crash(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }

    pub fn client(&self, token: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            token: token.to_string(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An HTTP client bound to one server and token.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Client {
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        at: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(at) = at {
            req = req.header("x-rclaude-now", at);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None, None).await
    }

    pub async fn get_at(&self, path: &str, at: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None, Some(at)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body), None)
            .await
    }

    pub async fn post_at(&self, path: &str, body: Value, at: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body), Some(at))
            .await
    }

    /// Creates a session for `repository` and returns its id.
    pub async fn new_session(&self, repository: &str, at: Option<&str>) -> String {
        let body = json!({
            "repository": repository, "branch": "main", "provider": "local",
            "sandbox_id": "sbx-1", "config_hash": "abc123"
        });
        let (s, v) = self
            .send(reqwest::Method::POST, "/v1/sessions", Some(body), at)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["session"]["id"].as_str().expect("id").to_string()
    }

    /// Posts an event with a fresh idempotency key; asserts 201; returns the response.
    pub async fn event(&self, session: &str, kind: &str, at: Option<&str>) -> Value {
        self.event_with(session, kind, json!({}), at).await
    }

    pub async fn event_with(
        &self,
        session: &str,
        kind: &str,
        data: Value,
        at: Option<&str>,
    ) -> Value {
        let body = json!({
            "type": kind,
            "idempotency_key": uuid::Uuid::new_v4().to_string(),
            "data": data,
        });
        let (s, v) = self
            .send(
                reqwest::Method::POST,
                &format!("/v1/sessions/{session}/events"),
                Some(body),
                at,
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{kind} at {at:?}: {v}");
        v
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket with the bearer header; `Err(status)` if the handshake is refused.
pub async fn ws_connect(server_addr: &str, path: &str, token: &str) -> Result<Ws, u16> {
    let mut req = format!("ws://{server_addr}{path}")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// Opens a WebSocket passing the token as `?token=` (the browser way).
pub async fn ws_connect_query(server_addr: &str, path: &str, token: &str) -> Ws {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = format!("ws://{server_addr}{path}{sep}token={token}");
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connect")
        .0
}

/// The next JSON text message (skipping pings); panics after 30 s.
pub async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a websocket message within 30s")
            .expect("stream open")
            .expect("websocket message");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json message"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected websocket message: {other:?}"),
        }
    }
}

/// Asserts no text message arrives within `wait`.
pub async fn ws_quiet(ws: &mut Ws, wait: Duration) {
    if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(wait, ws.next()).await {
        panic!("unexpected message: {t}");
    }
}

/// Waits up to `within` for the server to close the socket; returns the close code (`None` when
/// the connection ended without a close frame). Panics when it stays open.
pub async fn ws_close_code(ws: &mut Ws, within: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("the socket is still open after {within:?}"));
        match msg {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

pub async fn ws_close(mut ws: Ws) {
    let _ = ws.send(Message::Close(None)).await;
}

/// Runs an async test body against one engine (skipping PostgreSQL only as documented above).
#[macro_export]
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(db) = TestDb::new(Engine::Sqlite).await {
                        super::$name(db).await;
                    }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(db) = TestDb::new(Engine::Postgres).await {
                        super::$name(db).await;
                    }
                }
            }
        )*
    };
}
