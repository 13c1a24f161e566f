//! The server under hostile or unlucky input, against real server processes on both engines:
//! revoked credentials close their WebSockets, whole tokens pasted into paths are revoked and
//! never echoed or logged, control characters are refused at the boundary, months out of range
//! are a 422, slow clients are cut off, a database that is down is a 503 with `Retry-After`,
//! config bounds, and a panic is a plain JSON 500.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

both_engines!(
    revoking_a_token_closes_its_sockets,
    a_whole_token_in_the_path_is_revoked_and_never_echoed,
    control_characters_are_refused_on_both_engines,
    months_out_of_range_are_422,
    slow_headers_are_cut_off_and_do_not_block_others,
    a_panic_is_a_plain_json_500,
);

/// A second token of the account behind `admin_token`.
async fn second_token(c: &Client) -> (String, String) {
    let (status, v) = c.post("/v1/tokens", json!({ "name": "ws" })).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    (
        v["secret"].as_str().unwrap().to_string(),
        v["token"]["prefix"].as_str().unwrap().to_string(),
    )
}

async fn revoking_a_token_closes_its_sockets(db: TestDb) {
    let admin_token = create_account(&db, "acme").await;
    // Default ping (30 s): the API revocation must close the socket at once, not at a ping.
    let server = Server::start(&db, &[]).await;
    let api = server.client(&admin_token);
    let (secret, prefix) = second_token(&api).await;
    let mut account_ws = ws_connect(&server.addr, "/v1/events", &secret)
        .await
        .unwrap();
    let sid = server
        .client(&secret)
        .new_session("github.com/acme/app", None)
        .await;
    let mut session_ws = ws_connect(
        &server.addr,
        &format!("/v1/sessions/{sid}/events?since_seq=0"),
        &secret,
    )
    .await
    .unwrap();
    assert_eq!(ws_next(&mut session_ws).await["event"]["type"], "created");
    // A socket of another token of the same account stays open.
    let mut other_ws = ws_connect(&server.addr, "/v1/events", &admin_token)
        .await
        .unwrap();

    let (status, v) = api
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/tokens/{prefix}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let within = Duration::from_secs(5);
    assert_eq!(ws_close_code(&mut account_ws, within).await, Some(1008));
    assert_eq!(ws_close_code(&mut session_ws, within).await, Some(1008));
    api.event(&sid, "heartbeat", None).await;
    assert!(ws_next(&mut other_ws).await["event"].is_object());

    // A revocation from another process (the admin CLI; likewise another replica) is caught by
    // the check each socket makes at its ping.
    server.terminate().await;
    let server = Server::start(&db, &["--ws-ping", "1s"]).await;
    let api = server.client(&admin_token);
    let (secret, prefix) = second_token(&api).await;
    let mut ws = ws_connect(&server.addr, "/v1/events", &secret)
        .await
        .unwrap();
    let (ok, out, err) = admin(&db, &["revoke-token", &prefix]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(ws_close_code(&mut ws, within).await, Some(1008));
    // And a revoked token cannot open a new one.
    assert_eq!(
        ws_connect(&server.addr, "/v1/events", &secret).await.err(),
        Some(401)
    );
}

async fn a_whole_token_in_the_path_is_revoked_and_never_echoed(db: TestDb) {
    let admin_token = create_account(&db, "acme").await;
    let server = Server::start(&db, &[]).await;
    let api = server.client(&admin_token);
    let (secret, _) = second_token(&api).await;
    let secret_part = &secret[13..];

    // Someone pastes the whole token where the prefix belongs: it is revoked.
    let (status, v) = api
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/tokens/{secret}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["token"]["revoked_at"].is_string(), "{v}");
    assert_eq!(
        server.client(&secret).get("/v1/me").await.0,
        StatusCode::UNAUTHORIZED
    );

    // An unknown whole token: 404, and the secret is neither in the body nor in the log.
    let unknown = format!("{}_{}", &secret[..12], "Z".repeat(32));
    let (status, v) = api
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/tokens/{unknown}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert!(!v.to_string().contains(&"Z".repeat(32)), "{v}");
    // Nor through the route-not-found message.
    let (status, v) = api.get(&format!("/v1/nowhere/{secret}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!v.to_string().contains(secret_part), "{v}");
    let log = server.log_text();
    assert!(
        log.contains("/v1/tokens/rcl_"),
        "the request log has the path"
    );
    assert!(!log.contains(secret_part), "a token secret reached the log");
    assert!(
        !log.contains(&"Z".repeat(32)),
        "a token secret reached the log"
    );
}

async fn control_characters_are_refused_on_both_engines(db: TestDb) {
    let token = create_account(&db, "acme").await;
    let server = Server::start(&db, &[]).await;
    let api = server.client(&token);
    for path in [
        "/v1/sessions?repository=a%00b",
        "/v1/sessions?provider=%00",
        "/v1/usage?month=2025-01%01",
    ] {
        let (status, v) = api.get(path).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("control character"),
            "{v}"
        );
    }
    let (status, v) = api
        .send(reqwest::Method::DELETE, "/v1/tokens/rcl_%00", None, None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // The server is fine afterwards (no poisoned connection).
    assert_eq!(api.get("/v1/sessions").await.0, StatusCode::OK);
}

async fn months_out_of_range_are_422(db: TestDb) {
    let token = create_account(&db, "acme").await;
    let server = Server::start(&db, &[]).await;
    let api = server.client(&token);
    for month in ["9999-12", "9999-01", "1969-12"] {
        let (status, v) = api.get(&format!("/v1/invoices/{month}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{month}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("1970-01") && msg.contains("9998-12"), "{msg}");
    }
    let (status, v) = api.get("/v1/invoices/9998-12").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // The usage endpoint parses months the same way.
    let (status, _) = api.get("/v1/usage?month=9999-12").await;
    assert!(status.is_client_error(), "{status}");
}

async fn slow_headers_are_cut_off_and_do_not_block_others(db: TestDb) {
    let token = create_account(&db, "acme").await;
    let server = Server::start(&db, &["--header-read-timeout", "2s"]).await;
    // A client that sends its headers a byte at a time, too slowly, is disconnected.
    let mut slow = TcpStream::connect(&server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf))
        .await
        .expect("the server must close a connection whose headers never finish");
    assert!(
        matches!(read, Ok(0) | Err(_)) || String::from_utf8_lossy(&buf).contains("408"),
        "{read:?} {}",
        String::from_utf8_lossy(&buf)
    );
    // A thousand such connections open at once do not keep a normal client out.
    let mut loris = Vec::new();
    for _ in 0..1000 {
        let mut s = TcpStream::connect(&server.addr).await.unwrap();
        s.write_all(b"GET /v1/me HTTP/1.1\r\nX").await.unwrap();
        loris.push(s);
    }
    let (status, v) = server.client(&token).get("/v1/me").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    drop(loris);
}

async fn a_panic_is_a_plain_json_500(db: TestDb) {
    let token = create_account(&db, "acme").await;
    let server = Server::start(&db, &[]).await;
    let (status, v) = server.client(&token).get("/__test/panic").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["error"]["code"], "internal", "{v}");
    let text = v.to_string();
    assert!(
        !text.contains("deliberate") && !text.contains("/home/secret"),
        "{text}"
    );
    // The server keeps serving.
    assert_eq!(server.client(&token).get("/v1/me").await.0, StatusCode::OK);
}

/// PostgreSQL behind a TCP proxy the test can cut: while the database is unreachable the API
/// answers 503 with `Retry-After`, and recovers once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_is_a_503_with_retry_after() {
    let Some(db) = TestDb::new(Engine::Postgres).await else {
        return;
    };
    let token = create_account(&db, "acme").await;
    let proxy = PgProxy::start(&db.url).await;
    let server = Server::start_with_url(&db, &proxy.url, &["--request-timeout", "25s"]).await;
    let api = server.client(&token);
    assert_eq!(api.get("/v1/sessions").await.0, StatusCode::OK);

    proxy.cut();
    let resp = api
        .http
        .get(format!("{}/v1/sessions", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        resp.headers().contains_key("retry-after"),
        "{:?}",
        resp.headers()
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(
        ["database_unavailable", "unavailable"].contains(&v["error"]["code"].as_str().unwrap()),
        "{v}"
    );

    proxy.restore();
    let mut ok = false;
    for _ in 0..40 {
        if api.get("/v1/sessions").await.0 == StatusCode::OK {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ok, "the server did not recover when the database came back");
}

#[tokio::test]
async fn heartbeat_grace_has_an_upper_bound() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rclaude-server"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-grace",
            "30d",
        ])
        .arg("--database-url")
        .arg(tempfile::tempdir().unwrap().path().join("x.db"))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("heartbeat_grace") && err.contains("86400s"),
        "{err}"
    );
}

/// A TCP proxy to PostgreSQL whose connections can be cut and refused, then allowed again.
struct PgProxy {
    url: String,
    state: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl PgProxy {
    async fn start(target_url: &str) -> PgProxy {
        let target = url::Url::parse(target_url).unwrap();
        let upstream = format!(
            "{}:{}",
            target.host_str().unwrap(),
            target.port().unwrap_or(5432)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut url = target.clone();
        url.set_port(Some(port)).unwrap();
        let (tx, rx) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !*rx.borrow() {
                    drop(client); // refused while down
                    continue;
                }
                let mut rx = rx.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        PgProxy {
            url: url.to_string(),
            state: std::sync::Arc::new(tx),
        }
    }

    /// Close every connection and refuse new ones.
    fn cut(&self) {
        let _ = self.state.send(false);
    }

    fn restore(&self) {
        let _ = self.state.send(true);
    }
}
