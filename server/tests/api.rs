//! Authentication, account isolation, tokens, input validation, and the operational endpoints,
//! against the real binary on SQLite and PostgreSQL.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

fn message(v: &Value) -> String {
    v["error"]["message"].as_str().unwrap_or("").to_string()
}

async fn auth_and_isolation(db: TestDb) {
    let alice = create_account(&db, "alice").await;
    let bob = create_account(&db, "bob").await;
    let server = Server::start(&db, &[]).await;
    let a = server.client(&alice);
    let b = server.client(&bob);

    // No token, malformed token, unknown token.
    let anon = reqwest::Client::new();
    let r = anon
        .get(format!("{}/v1/sessions", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let v: Value = r.json().await.unwrap();
    assert_eq!(code(&v), "unauthorized");
    assert!(message(&v).contains("Authorization"), "{v}");
    let (s, v) = server.client("nonsense").get("/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(message(&v).contains("malformed"), "{v}");
    let fake = format!("rcl_aaaaaaaa_{}", "A".repeat(32));
    let (s, v) = server.client(&fake).get("/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(message(&v).contains("unknown or revoked"), "{v}");

    // Who am I.
    let (s, v) = a.get("/v1/me").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["account"]["name"], "alice");
    assert_eq!(v["token"]["prefix"].as_str().unwrap(), &alice[..12]);

    // Alice's session is invisible to Bob: 404, never 403.
    let sid = a.new_session("github.com/acme/app", None).await;
    a.event(&sid, "started", None).await;
    let (s, v) = b.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(code(&v), "not_found");
    let (s, _) = b
        .post(
            &format!("/v1/sessions/{sid}/events"),
            json!({"type": "heartbeat", "idempotency_key": "k"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = b.get(&format!("/v1/sessions/{sid}/events")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        ws_connect(&server.addr, &format!("/v1/sessions/{sid}/events"), &bob)
            .await
            .err(),
        Some(404)
    );
    let (s, v) = b.get("/v1/sessions").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["sessions"].as_array().unwrap().len(), 0);
    let (_, v) = b.get("/v1/usage").await;
    assert_eq!(v["total_cost_micros"], 0);
    assert_eq!(v["repositories"].as_array().unwrap().len(), 0);
    // Alice still sees hers, with its history.
    let (s, v) = a.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(s, StatusCode::OK);
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "started"]);

    // Tokens: create (shown once), list by prefix, use, revoke, refused afterwards.
    let (s, v) = a.post("/v1/tokens", json!({"name": "laptop"})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let secret = v["secret"].as_str().unwrap().to_string();
    let prefix = v["token"]["prefix"].as_str().unwrap().to_string();
    assert!(secret.starts_with(&prefix));
    let a2 = server.client(&secret);
    assert_eq!(a2.get("/v1/me").await.0, StatusCode::OK);
    let (_, v) = a.get("/v1/tokens").await;
    let listed = v.to_string();
    assert!(listed.contains(&prefix));
    assert!(!listed.contains(&secret), "a secret leaked into the list");
    // Bob cannot revoke Alice's token.
    let (s, _) = b
        .send(Method::DELETE, &format!("/v1/tokens/{prefix}"), None, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = a
        .send(Method::DELETE, &format!("/v1/tokens/{prefix}"), None, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["token"]["revoked_at"].is_string());
    let (s, v) = a2.get("/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(message(&v).contains("revoked"));
    // Revoking again is harmless.
    let (s, _) = a
        .send(Method::DELETE, &format!("/v1/tokens/{prefix}"), None, None)
        .await;
    assert_eq!(s, StatusCode::OK);

    // Admin CLI: list shows prefixes only; revoke works from the command line.
    let (ok, out, _) = admin(&db, &["list-tokens", "alice"]).await;
    assert!(ok);
    assert!(out.contains(&alice[..12]) && out.contains(&prefix), "{out}");
    assert!(
        !out.contains(&alice) && !out.contains(&secret),
        "secret in list-tokens"
    );
    let (ok, out, _) = admin(&db, &["create-token", "bob", "--name", "ci"]).await;
    assert!(ok);
    let bob2 = out.lines().last().unwrap().trim().to_string();
    assert_eq!(server.client(&bob2).get("/v1/me").await.0, StatusCode::OK);
    let (ok, _, _) = admin(&db, &["revoke-token", &bob2[..12]]).await;
    assert!(ok);
    assert_eq!(
        server.client(&bob2).get("/v1/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (ok, _, err) = admin(&db, &["create-account", "alice"]).await;
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    let (ok, _, err) = admin(&db, &["list-tokens", "carol"]).await;
    assert!(!ok);
    assert!(err.contains("no account named"), "{err}");
    // The token is hashed at rest.
    assert!(server.terminate().await);
}

async fn bad_input_is_explained(db: TestDb) {
    let tok = create_account(&db, "alice").await;
    let server = Server::start(&db, &["--max-body-bytes", "2048"]).await;
    let c = server.client(&tok);
    let http = reqwest::Client::new();
    let sid = c.new_session("github.com/acme/app", None).await;
    let url = format!("{}/v1/sessions/{sid}/events", server.base);

    let raw = |body: &'static str, ct: &'static str| {
        http.post(&url)
            .bearer_auth(&tok)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let r = raw("{\"type\": \"started\",", "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(code(&v), "invalid_json");
    assert!(message(&v).contains("not valid JSON"), "{v}");

    let r = raw("", "application/json").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert!(message(&v).contains("empty"), "{v}");
    let r = raw("[{\"type\": \"started\"}]", "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = r.json().await.unwrap();
    assert!(message(&v).contains("JSON object"), "{v}");

    let r = raw("type=started", "application/x-www-form-urlencoded")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let v: Value = r.json().await.unwrap();
    assert!(message(&v).contains("application/json"), "{v}");

    // Wrong types and missing / unknown fields name the field.
    let cases = [
        (json!({"type": 7, "idempotency_key": "k"}), "`type`"),
        (json!({"type": "started"}), "idempotency_key"),
        (
            json!({"type": "exploded", "idempotency_key": "k"}),
            "exploded",
        ),
        (
            json!({"type": "started", "idempotency_key": "k", "colour": 1}),
            "colour",
        ),
        (
            json!({"type": "heartbeat", "idempotency_key": "k", "data": {"exit_code": "zero"}}),
            "data.exit_code",
        ),
        (
            json!({"type": "task_finished", "idempotency_key": "k", "data": {"task": "t"}}),
            "data.exit_code",
        ),
        (
            json!({"type": "heartbeat", "idempotency_key": "has space"}),
            "idempotency_key",
        ),
    ];
    for (body, needle) in cases {
        let (s, v) = c
            .post(&format!("/v1/sessions/{sid}/events"), body.clone())
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {v}");
        assert_eq!(code(&v), "invalid_request");
        assert!(
            message(&v).contains(needle),
            "{body}: `{}` lacks {needle}",
            message(&v)
        );
    }
    let session_cases = [
        (json!({"repository": "r", "branch": "main"}), "provider"),
        (
            json!({"repository": "", "branch": "main", "provider": "local"}),
            "repository",
        ),
        (
            json!({"repository": "r", "branch": "main", "provider": "Local Box"}),
            "provider",
        ),
        (
            json!({"repository": "r", "branch": 3, "provider": "local"}),
            "branch",
        ),
        (
            json!({"repository": "r", "branch": "m", "provider": "local", "config_hash": "xyz"}),
            "config_hash",
        ),
        (
            json!({"repository": "r", "branch": "m", "provider": "local", "id": "nope"}),
            "UUID",
        ),
    ];
    for (body, needle) in session_cases {
        let (s, v) = c.post("/v1/sessions", body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {v}");
        assert!(
            message(&v).contains(needle),
            "{body}: `{}` lacks {needle}",
            message(&v)
        );
    }

    // Too large.
    let big =
        json!({"type": "heartbeat", "idempotency_key": "k", "data": {"message": "x".repeat(4000)}});
    let (s, v) = c.post(&format!("/v1/sessions/{sid}/events"), big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(code(&v), "payload_too_large");

    // Unknown session: a UUID that does not exist, and something that is not a UUID.
    let ghost = uuid::Uuid::new_v4();
    let (s, v) = c.get(&format!("/v1/sessions/{ghost}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(message(&v).contains(&ghost.to_string()), "{v}");
    let (s, _) = c.get("/v1/sessions/not-a-uuid").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = c.get("/v1/sessions/%FF").await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"), "{v}");
    let (s, v) = c
        .post(
            &format!("/v1/sessions/{ghost}/events"),
            json!({"type": "heartbeat", "idempotency_key": "k"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    // Query strings and paths.
    for (path, needle) in [
        ("/v1/sessions?limit=abc", "limit"),
        ("/v1/sessions?limit=0", "limit"),
        ("/v1/sessions?state=sleeping", "sleeping"),
        ("/v1/sessions?cursor=xyz", "cursor"),
        ("/v1/sessions?colour=red", "colour"),
        ("/v1/usage?from=2025-02-30", "from"),
        ("/v1/usage?from=2025-03-01&to=2025-02-01", "before"),
        ("/v1/invoices/2025-13", "YYYY-MM"),
        ("/v1/invoices/last-month", "YYYY-MM"),
    ] {
        let (s, v) = c.get(path).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path} → {v}");
        assert!(
            message(&v).contains(needle),
            "{path}: `{}` lacks {needle}",
            message(&v)
        );
    }
    let (s, v) = c.get("/v1/nothing-here").await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "route_not_found"));
    let (s, v) = c.send(Method::PUT, "/v1/sessions", None, None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let (s, v) = c.get("/v1/events").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UPGRADE_REQUIRED, "websocket_required")
    );
    assert!(server.terminate().await);
}

async fn operational_endpoints(db: TestDb) {
    let tok = create_account(&db, "alice").await;
    let server = Server::start(&db, &[]).await;
    let c = server.client(&tok);
    let http = reqwest::Client::new();

    let r = http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");

    let sid = c.new_session("github.com/acme/app", None).await;
    c.event(&sid, "started", None).await;

    let r = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    assert!(text.contains("rclaude_events_appended_total 1"), "{text}");
    assert!(text.contains("rclaude_sessions_created_total 1"), "{text}");
    assert!(
        text.contains(
            "rclaude_http_requests_total{method=\"POST\",route=\"/v1/sessions\",status=\"201\"} 1"
        ),
        "{text}"
    );

    // The OpenAPI document matches the routes: every documented operation is served (answers
    // with its own status, never "no such route" / "method not allowed").
    let doc: Value = http
        .get(format!("{}/v1/openapi.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = rclaude_server::openapi::operations(&doc);
    assert_eq!(ops.len(), rclaude_server::routes::ROUTES.len());
    for (method, path) in ops {
        let concrete = path
            .replace("{id}", &sid)
            .replace("{month}", "2025-01")
            .replace("{token}", "rcl_zzzzzzzz");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = http
            .request(m, format!("{}{concrete}", server.base))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let public = ["/healthz", "/metrics", "/v1/openapi.json"].contains(&path.as_str());
        if public {
            assert_eq!(status, StatusCode::OK, "{method} {path}");
        } else {
            // Unauthenticated: the route exists and asks for a token.
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
    }
    // And with a token, the authenticated GETs answer 200.
    for path in [
        "/v1/me",
        "/v1/tokens",
        "/v1/sessions",
        "/v1/usage",
        "/v1/invoices/2025-01",
    ] {
        assert_eq!(c.get(path).await.0, StatusCode::OK, "{path}");
    }

    // Structured logs: JSON lines naming method, route and status, never the token.
    let log = server.log_text();
    assert!(!log.contains(&tok), "the token was logged");
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["route"] == "/v1/sessions" && l["method"] == "POST")
        .expect("a JSON log line for POST /v1/sessions");
    assert_eq!(line["status"], 201);
    assert_eq!(line["account"], "alice");
    assert!(server.terminate().await, "graceful shutdown exits 0");

    if db.engine == Engine::Sqlite {
        // The SQLite file was created on first start, in WAL mode.
        let mut conn =
            <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", db.url))
                .await
                .unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }
}

/// A request stuck behind a database lock is answered 503 `timeout` at the deadline, and the
/// server recovers once the lock is gone.
async fn request_deadline(db: TestDb) {
    let tok = create_account(&db, "alice").await;
    let server = Server::start(&db, &["--request-timeout", "1s"]).await;
    let c = server.client(&tok);
    let sid = c.new_session("github.com/acme/app", None).await;

    // Another client of the database takes the write lock and sits on it.
    let blocker: Box<dyn std::any::Any> = match db.engine {
        Engine::Sqlite => {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
                "sqlite://{}",
                db.url
            ))
            .await
            .unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            Box::new(conn)
        }
        Engine::Postgres => {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
                .await
                .unwrap();
            sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
            sqlx::query("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
                .execute(&mut conn)
                .await
                .unwrap();
            Box::new(conn)
        }
    };
    let (s, v) = c
        .post(
            &format!("/v1/sessions/{sid}/events"),
            json!({"type": "started", "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(code(&v), "timeout");
    assert!(message(&v).contains("1s"), "{v}");
    drop(blocker); // closing the connection releases the lock

    // The same event, retried, is stored exactly once.
    let mut stored = None;
    for _ in 0..50 {
        let (s, v) = c
            .post(
                &format!("/v1/sessions/{sid}/events"),
                json!({"type": "started", "idempotency_key": "k1"}),
            )
            .await;
        if s == StatusCode::CREATED || s == StatusCode::OK {
            stored = Some(v);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let v = stored.expect("the server recovers after the lock is released");
    assert_eq!(v["event"]["seq"], 2);
    let (_, v) = c.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(v["events"].as_array().unwrap().len(), 2);
    assert_eq!(v["session"]["state"], "running");
    assert!(server.terminate().await);
}

both_engines!(
    auth_and_isolation,
    bad_input_is_explained,
    operational_endpoints,
    request_deadline
);
