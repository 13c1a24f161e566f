//! The generated OpenAPI document, against the real binary: it lists exactly the router's
//! operations, real answers (successes and errors, on every route) follow the schemas it gives,
//! and it is valid OpenAPI 3.1 by an independent validator.

mod common;
mod openapi_support;

use std::collections::BTreeSet;

use common::*;
use openapi_support::{Conformance, spec_validator};
use reqwest::Method;
use serde_json::{Value, json};

const PUBLIC: [&str; 3] = ["/healthz", "/metrics", "/v1/openapi.json"];

async fn fetch_document(server: &Server) -> Value {
    let r = reqwest::get(format!("{}/v1/openapi.json", server.base))
        .await
        .expect("GET /v1/openapi.json");
    assert_eq!(r.status(), 200);
    r.json().await.expect("the document is JSON")
}

fn routes() -> BTreeSet<(String, String)> {
    rclaude_server::routes::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_exactly_the_routes() {
    let db = TestDb::new(Engine::Sqlite).await.expect("sqlite");
    let server = Server::start(&db, &[]).await;
    let doc = fetch_document(&server).await;
    let documented: BTreeSet<_> = rclaude_server::openapi::operations(&doc)
        .into_iter()
        .collect();
    let routes = routes();
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routes).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented operations the router lacks: {unrouted:?}"
    );
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["info"]["version"],
        env!("CARGO_PKG_VERSION"),
        "the document's version is the server's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_openapi_3_1() {
    let Some(bin) = spec_validator::command() else {
        return;
    };
    let db = TestDb::new(Engine::Sqlite).await.expect("sqlite");
    let server = Server::start(&db, &[]).await;
    let doc = fetch_document(&server).await;
    let file = db.dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = spec_validator::validate(&bin, &file);
    assert!(
        out.status.success(),
        "openapi-spec-validator {} rejects the document:\n{}{}",
        spec_validator::VERSION,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The validator does reject a broken document (so the pass above means something).
    let mut broken = doc.clone();
    broken["paths"]["/v1/me"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
        json!({"type": "no such type"});
    std::fs::write(&file, serde_json::to_vec(&broken).unwrap()).unwrap();
    let out = spec_validator::validate(&bin, &file);
    assert!(
        !out.status.success(),
        "openapi-spec-validator accepted a broken document"
    );
}

#[test]
fn the_checker_rejects_answers_that_differ_from_the_document() {
    let doc = rclaude_server::openapi::document();
    let me = json!({
        "account": {"id": "a", "name": "alice", "created_at": "2025-01-10T10:00:00Z"},
        "token": {"id": "t", "prefix": "rcl_abcdefgh"},
        "capabilities": {"managed_sessions": "local"},
        "limits": {"max_month_micros": null, "max_running": 2, "month_cost_micros": 0}
    });
    Conformance::new(doc.clone()).check(
        "get",
        "/v1/me",
        200,
        Some("application/json"),
        &me.to_string(),
    );
    let rejects = |status: u16, content_type: &str, body: Value| {
        let doc = doc.clone();
        std::panic::catch_unwind(move || {
            Conformance::new(doc).check(
                "get",
                "/v1/me",
                status,
                Some(content_type),
                &body.to_string(),
            )
        })
        .is_err()
    };
    let mut no_token = me.clone();
    no_token.as_object_mut().unwrap().remove("token");
    let mut bad_time = me.clone();
    bad_time["account"]["created_at"] = json!("yesterday");
    assert!(
        rejects(200, "application/json", no_token),
        "a missing field"
    );
    assert!(
        rejects(200, "application/json", bad_time),
        "a malformed date-time"
    );
    assert!(
        rejects(200, "text/plain", me.clone()),
        "an undocumented content type"
    );
    assert!(
        rejects(418, "application/json", me),
        "an undocumented status"
    );
    assert!(
        rejects(
            401,
            "application/json",
            json!({"error": {"code": "unauthorized"}})
        ),
        "an error body without its message"
    );
}

/// What a request sends as its body.
enum Body {
    None,
    Json(Value),
    /// (content type, text)
    Raw(&'static str, String),
}

/// Sends requests, asserts each status, and checks each answer against the document.
struct Run {
    http: reqwest::Client,
    base: String,
    token: String,
    check: Conformance,
}

impl Run {
    /// `(method, template)` with `concrete` as the real path (and query); `token: None` sends none.
    async fn call(
        &mut self,
        (method, template): (&str, &str),
        concrete: &str,
        token: Option<&str>,
        body: Body,
        at: Option<&str>,
        expect: u16,
    ) -> Value {
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{concrete}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(at) = at {
            req = req.header("x-rclaude-now", at);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(ct, text) => req.header("content-type", ct).body(text),
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.expect("body");
        assert_eq!(
            status,
            expect,
            "{} {concrete}: {text}",
            method.to_uppercase()
        );
        self.check
            .check(method, template, status, ct.as_deref(), &text);
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// An `Upgrade: websocket` request lacking `Sec-WebSocket-Key`: a 400, checked.
    async fn handshake_without_key(&mut self, template: &str, path: &str) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.expect("body");
        assert_eq!(status, 400, "GET {path} (handshake without key): {text}");
        self.check
            .check("get", template, status, ct.as_deref(), &text);
    }

    /// [`Run::call`] with the run's token and no clock.
    async fn authed(
        &mut self,
        method: &str,
        template: &str,
        concrete: &str,
        body: Body,
        expect: u16,
    ) -> Value {
        let token = self.token.clone();
        self.call(
            (method, template),
            concrete,
            Some(&token),
            body,
            None,
            expect,
        )
        .await
    }
}

async fn answers_follow_the_document(db: TestDb) {
    let token = create_account(&db, "alice").await;
    let sandboxes = db.dir.path().join("sandboxes");
    let flags = sandbox_flags(&sandboxes, &agent_bin());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start(&db, &flags).await;
    let doc = fetch_document(&server).await;
    let mut run = Run {
        http: reqwest::Client::new(),
        base: server.base.clone(),
        token: token.clone(),
        check: Conformance::new(doc),
    };
    let jan = |t: &str| format!("2025-01-10T{t}Z");

    // Public operations.
    run.call(("get", "/healthz"), "/healthz", None, Body::None, None, 200)
        .await;
    run.call(("get", "/metrics"), "/metrics", None, Body::None, None, 200)
        .await;
    run.call(
        ("get", "/v1/openapi.json"),
        "/v1/openapi.json",
        None,
        Body::None,
        None,
        200,
    )
    .await;

    // Every other operation asks for a token: none, then a malformed one.
    let some_id = uuid::Uuid::new_v4().to_string();
    for (method, path) in routes() {
        if PUBLIC.contains(&path.as_str()) {
            continue;
        }
        let concrete = path
            .replace("{id}", &some_id)
            .replace("{name}", "c1")
            .replace("{month}", "2025-01")
            .replace("{token}", "rcl_zzzzzzzz");
        run.call((&method, &path), &concrete, None, Body::None, None, 401)
            .await;
        run.call(
            (&method, &path),
            &concrete,
            Some("nonsense"),
            Body::None,
            None,
            401,
        )
        .await;
    }

    // Me and tokens.
    run.authed("get", "/v1/me", "/v1/me", Body::None, 200).await;
    let made = run
        .authed(
            "post",
            "/v1/tokens",
            "/v1/tokens",
            Body::Json(json!({"name": "laptop"})),
            201,
        )
        .await;
    let prefix = made["token"]["prefix"].as_str().unwrap().to_string();
    run.authed("post", "/v1/tokens", "/v1/tokens", Body::None, 201)
        .await;
    for (body, status) in [
        (Body::Json(json!({"name": ""})), 422),
        (Body::Json(json!({"nmae": "x"})), 422),
        (Body::Json(json!(["laptop"])), 422),
        (Body::Raw("application/json", "{\"name\":".into()), 400),
        (Body::Raw("text/plain", "laptop".into()), 415),
        (Body::Json(json!({"name": "x".repeat(70 * 1024)})), 413),
    ] {
        run.authed("post", "/v1/tokens", "/v1/tokens", body, status)
            .await;
    }
    run.authed("get", "/v1/tokens", "/v1/tokens", Body::None, 200)
        .await;
    let revoke = format!("/v1/tokens/{prefix}");
    let revoked = run
        .authed("delete", "/v1/tokens/{token}", &revoke, Body::None, 200)
        .await;
    assert!(revoked["token"]["revoked_at"].is_string());
    run.authed("delete", "/v1/tokens/{token}", &revoke, Body::None, 200)
        .await;
    for (path, status) in [("/v1/tokens/rcl_zzzzzzzz", 404), ("/v1/tokens/a%00b", 422)] {
        run.authed("delete", "/v1/tokens/{token}", path, Body::None, status)
            .await;
    }

    // Sessions: created in January (the test clock), so the invoice has lines.
    let new_session = json!({
        "repository": "github.com/acme/app", "branch": "main", "provider": "local",
        "sandbox_id": "sbx-1", "config_hash": "abc123"
    });
    let sid = run
        .call(
            ("post", "/v1/sessions"),
            "/v1/sessions",
            Some(&token),
            Body::Json(new_session.clone()),
            Some(&jan("10:00:00")),
            201,
        )
        .await["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let chosen = uuid::Uuid::new_v4().to_string();
    let with_id = json!({"id": chosen, "repository": "github.com/acme/lib", "branch": "dev", "provider": "e2b"});
    run.authed(
        "post",
        "/v1/sessions",
        "/v1/sessions",
        Body::Json(with_id.clone()),
        201,
    )
    .await;
    run.authed(
        "post",
        "/v1/sessions",
        "/v1/sessions",
        Body::Json(with_id),
        200,
    )
    .await;
    for (body, status) in [
        (
            Body::Json(
                json!({"id": chosen, "repository": "other", "branch": "dev", "provider": "e2b"}),
            ),
            409,
        ),
        (Body::Json(json!({"repository": "x"})), 422),
        (
            Body::Json(json!({"repository": "x", "branch": "main", "provider": "Bad!"})),
            422,
        ),
        (Body::Raw("application/json", "{".into()), 400),
        (Body::Raw("text/plain", "{}".into()), 415),
        (
            Body::Json(
                json!({"repository": "x".repeat(70 * 1024), "branch": "main", "provider": "local"}),
            ),
            413,
        ),
    ] {
        run.authed("post", "/v1/sessions", "/v1/sessions", body, status)
            .await;
    }

    // Checkpoints: a multipart upload, its listing and download, and each refusal.
    {
        use sha2::Digest;
        let (coll, one) = (
            "/v1/sessions/{id}/checkpoints",
            "/v1/sessions/{id}/checkpoints/{name}",
        );
        let cps = format!("/v1/sessions/{sid}/checkpoints");
        let lost = format!("/v1/sessions/{}/checkpoints", uuid::Uuid::new_v4());
        let data = "# v2 git bundle\nnot really a pack\n";
        let sha = hex::encode(sha2::Sha256::digest(data.as_bytes()));
        let form = |meta: Value, data: &str| {
            Body::Raw(
                "multipart/form-data; boundary=XyZ",
                format!(
                    "--XyZ\r\nContent-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json\r\n\r\n{meta}\r\n\
                     --XyZ\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"c.bundle\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n{data}\r\n--XyZ--\r\n"
                ),
            )
        };
        let meta = |name: &str, base: Option<&str>, sha: &str, size: usize| {
            json!({"name": name, "base": base, "anchor": true, "sha256": sha,
                   "size_bytes": size, "info": {"reason": "pause"}})
        };
        let ok = meta("c1", None, &sha, data.len());
        run.authed("post", coll, &cps, form(ok.clone(), data), 201)
            .await;
        run.authed("post", coll, &cps, form(ok.clone(), data), 200)
            .await;
        run.authed("post", coll, &lost, form(ok.clone(), data), 404)
            .await;
        run.authed("post", coll, &cps, Body::Raw("text/plain", "x".into()), 400)
            .await;
        let base_gone = meta("c2", Some("nope"), &sha, data.len());
        run.authed("post", coll, &cps, form(base_gone, data), 409)
            .await;
        let huge = meta("c3", None, &sha, 1 << 40);
        run.authed("post", coll, &cps, form(huge, data), 413).await;
        let damaged = meta("c4", None, &"0".repeat(64), data.len());
        run.authed("post", coll, &cps, form(damaged, data), 422)
            .await;
        let listed = run.authed("get", coll, &cps, Body::None, 200).await;
        assert_eq!(listed["checkpoints"][0]["name"], "c1", "{listed}");
        run.authed("get", coll, &lost, Body::None, 404).await;
        let got = run
            .authed("get", one, &format!("{cps}/c1"), Body::None, 200)
            .await;
        assert_eq!(got, Value::Null, "the bundle is not JSON");
        run.authed("get", one, &format!("{cps}/c9"), Body::None, 404)
            .await;
    }

    // Events, at January times.
    let events = format!("/v1/sessions/{sid}/events");
    let append = "/v1/sessions/{id}/events";
    let ev = |kind: &str, key: &str, data: Value| {
        Body::Json(json!({"type": kind, "idempotency_key": key, "data": data}))
    };
    for (kind, key, data, at, status) in [
        ("started", "k1", json!({}), "10:00:01", 201),
        ("started", "k1", json!({}), "10:00:02", 200),
        ("heartbeat", "k1", json!({}), "10:00:03", 409),
        (
            "task_started",
            "k2",
            json!({"task": "test"}),
            "10:10:00",
            201,
        ),
        (
            "task_finished",
            "k3",
            json!({"task": "test", "exit_code": 0, "duration_ms": 5120, "extra": [1]}),
            "10:20:00",
            201,
        ),
        ("exploded", "k4", json!({}), "10:21:00", 422),
        ("task_finished", "k5", json!({"task": "t"}), "10:22:00", 422),
        ("heartbeat", "k6", json!({}), "10:30:00", 201),
    ] {
        run.call(
            ("post", append),
            &events,
            Some(&token),
            ev(kind, key, data),
            Some(&jan(at)),
            status,
        )
        .await;
    }
    let nowhere = format!("/v1/sessions/{}/events", uuid::Uuid::new_v4());
    run.authed(
        "post",
        append,
        &nowhere,
        ev("heartbeat", "k", json!({})),
        404,
    )
    .await;
    for (body, status) in [
        (Body::Raw("application/json", "{\"type\":".into()), 400),
        (Body::Raw("text/plain", "{}".into()), 415),
        (
            ev("heartbeat", "k", json!({"message": "x".repeat(70 * 1024)})),
            413,
        ),
    ] {
        run.authed("post", append, &events, body, status).await;
    }

    // Reading sessions and their events.
    let one = format!("/v1/sessions/{sid}");
    run.authed("get", "/v1/sessions/{id}", &one, Body::None, 200)
        .await;
    let missing = format!("/v1/sessions/{}", uuid::Uuid::new_v4());
    for (path, status) in [
        (missing.as_str(), 404),
        ("/v1/sessions/not-a-uuid", 404),
        ("/v1/sessions/a%00b", 422),
    ] {
        run.authed("get", "/v1/sessions/{id}", path, Body::None, status)
            .await;
    }
    let page = run
        .authed(
            "get",
            "/v1/sessions",
            "/v1/sessions?limit=1",
            Body::None,
            200,
        )
        .await;
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let last = run
        .authed(
            "get",
            "/v1/sessions",
            &format!("/v1/sessions?limit=1&cursor={cursor}"),
            Body::None,
            200,
        )
        .await;
    assert!(last["next_cursor"].is_null(), "{last}");
    for (path, status) in [
        (
            "/v1/sessions?state=running&provider=local&repository=github.com/acme/app",
            200,
        ),
        ("/v1/sessions?limit=0", 422),
        ("/v1/sessions?state=exploded", 422),
        ("/v1/sessions?cursor=nope", 422),
        ("/v1/sessions?bogus=1", 422),
    ] {
        run.authed("get", "/v1/sessions", path, Body::None, status)
            .await;
    }
    let stream = "/v1/sessions/{id}/events";
    for (query, status) in [
        ("", 200),
        ("?since_seq=2&limit=2", 200),
        ("?since_seq=-1", 422),
        ("?limit=0", 422),
    ] {
        run.authed(
            "get",
            stream,
            &format!("{events}{query}"),
            Body::None,
            status,
        )
        .await;
    }
    run.authed("get", stream, &nowhere, Body::None, 404).await;

    // WebSockets: the session socket replays, the account socket streams new events.
    let mut replay = ws_connect(&server.addr, &format!("{events}?since_seq=0"), &token)
        .await
        .expect("session socket");
    let first = ws_next(&mut replay).await;
    run.check.check_message(stream, &first);
    ws_close(replay).await;
    let mut live = ws_connect(&server.addr, "/v1/events", &token)
        .await
        .expect("account socket");
    run.call(
        ("post", append),
        &events,
        Some(&token),
        ev("stopped", "k7", json!({})),
        Some(&jan("11:00:00")),
        201,
    )
    .await;
    let message = ws_next(&mut live).await;
    run.check.check_message("/v1/events", &message);
    ws_close(live).await;
    run.authed("get", "/v1/events", "/v1/events", Body::None, 426)
        .await;
    // A WebSocket handshake without its key is refused.
    for (template, path) in [(stream, events.as_str()), ("/v1/events", "/v1/events")] {
        run.handshake_without_key(template, path).await;
    }
    run.authed("get", "/v1/events", "/v1/events?bogus=1", Body::None, 422)
        .await;
    // A stopped session takes no more events.
    run.call(
        ("post", append),
        &events,
        Some(&token),
        ev("heartbeat", "k8", json!({})),
        Some(&jan("11:00:01")),
        409,
    )
    .await;

    // Billing, as of March 2025 (January is final).
    let march = Some("2025-03-01T00:00:00Z");
    for (path, status) in [
        ("/v1/usage?from=2025-01-01&to=2025-01-31", 200),
        ("/v1/usage", 200),
        ("/v1/usage?from=2025-02-30", 422),
        ("/v1/usage?from=2025-01-31&to=2025-01-01", 422),
        ("/v1/usage?from=2024-01-01&to=2025-02-01", 422),
    ] {
        run.call(
            ("get", "/v1/usage"),
            path,
            Some(&token),
            Body::None,
            march,
            status,
        )
        .await;
    }
    let invoice = run
        .call(
            ("get", "/v1/invoices/{month}"),
            "/v1/invoices/2025-01",
            Some(&token),
            Body::None,
            march,
            200,
        )
        .await;
    assert_eq!(invoice["status"], "final");
    // acme/app: active time and storage (acme/lib was created today, outside January).
    assert_eq!(invoice["lines"].as_array().unwrap().len(), 2, "{invoice}");
    for month in ["2025-13", "0001-01", "january"] {
        run.authed(
            "get",
            "/v1/invoices/{month}",
            &format!("/v1/invoices/{month}"),
            Body::None,
            422,
        )
        .await;
    }

    // Managed sessions: created, paused, resumed and deleted by the server.
    let created = run
        .authed(
            "post",
            "/v1/sessions",
            "/v1/sessions",
            Body::Json(json!({"managed": true, "repository": "acme/managed"})),
            201,
        )
        .await;
    let mid = created["session"]["id"].as_str().unwrap().to_string();
    let missing = uuid::Uuid::new_v4().to_string();
    for (method, template, suffix) in [
        ("post", "/v1/sessions/{id}/pause", "/pause"),
        ("post", "/v1/sessions/{id}/resume", "/resume"),
        ("delete", "/v1/sessions/{id}", ""),
    ] {
        run.authed(
            method,
            template,
            &format!("/v1/sessions/{missing}{suffix}"),
            Body::None,
            404,
        )
        .await;
        // A session its client runs is not the server's to act on.
        run.authed(
            method,
            template,
            &format!("/v1/sessions/{sid}{suffix}"),
            Body::None,
            409,
        )
        .await;
    }
    let pause = format!("/v1/sessions/{mid}/pause");
    let resume = format!("/v1/sessions/{mid}/resume");
    // The same database served by a server without sandboxes, and by one whose agent cannot
    // start: 501 and 502 for what needs the provider.
    let none = Server::start(&db, &["--sandbox-provider", "none"]).await;
    let broken_flags = sandbox_flags(&sandboxes, std::path::Path::new("/bin/false"));
    let broken_flags: Vec<&str> = broken_flags.iter().map(String::as_str).collect();
    let broken = Server::start(&db, &broken_flags).await;
    let base = std::mem::replace(&mut run.base, none.base.clone());
    let managed_body = || Body::Json(json!({"managed": true, "repository": "acme/managed"}));
    run.authed("post", "/v1/sessions", "/v1/sessions", managed_body(), 501)
        .await;
    for (method, template, path) in [
        ("post", "/v1/sessions/{id}/pause", pause.as_str()),
        ("post", "/v1/sessions/{id}/resume", resume.as_str()),
        (
            "delete",
            "/v1/sessions/{id}",
            &format!("/v1/sessions/{mid}"),
        ),
    ] {
        run.authed(method, template, path, Body::None, 501).await;
    }
    run.base = base.clone();
    run.authed("post", "/v1/sessions/{id}/pause", &pause, Body::None, 200)
        .await;
    run.base = broken.base.clone();
    run.authed("post", "/v1/sessions", "/v1/sessions", managed_body(), 502)
        .await;
    run.authed("post", "/v1/sessions/{id}/resume", &resume, Body::None, 502)
        .await;
    run.base = base;
    assert!(none.terminate().await);
    assert!(broken.terminate().await);
    run.authed("post", "/v1/sessions/{id}/resume", &resume, Body::None, 200)
        .await;
    // A sandbox the provider lost cannot be resumed.
    let lost = run
        .authed(
            "post",
            "/v1/sessions",
            "/v1/sessions",
            Body::Json(json!({"managed": true, "repository": "acme/lost"})),
            201,
        )
        .await;
    let lost_id = lost["session"]["id"].as_str().unwrap().to_string();
    run.authed(
        "post",
        "/v1/sessions/{id}/pause",
        &format!("/v1/sessions/{lost_id}/pause"),
        Body::None,
        200,
    )
    .await;
    std::fs::remove_dir_all(sandboxes.join(lost["sandbox"]["id"].as_str().unwrap())).unwrap();
    run.authed(
        "post",
        "/v1/sessions/{id}/resume",
        &format!("/v1/sessions/{lost_id}/resume"),
        Body::None,
        410,
    )
    .await;
    // Account limits: one running session at most, then a spent budget.
    let lost_resume = format!("/v1/sessions/{lost_id}/resume");
    let (ok, out, err) = admin(&db, &["set-limits", "alice", "--max-running", "1"]).await;
    assert!(ok, "{out}{err}");
    run.authed("post", "/v1/sessions", "/v1/sessions", managed_body(), 429)
        .await;
    run.authed(
        "post",
        "/v1/sessions/{id}/resume",
        &lost_resume,
        Body::None,
        429,
    )
    .await;
    let (ok, out, err) = admin(
        &db,
        &[
            "set-limits",
            "alice",
            "--no-running-limit",
            "--max-usd-per-month",
            "0.000001",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    run.authed("post", "/v1/sessions", "/v1/sessions", managed_body(), 402)
        .await;
    run.authed(
        "post",
        "/v1/sessions/{id}/resume",
        &lost_resume,
        Body::None,
        402,
    )
    .await;
    let (ok, out, err) = admin(&db, &["set-limits", "alice", "--no-budget"]).await;
    assert!(ok, "{out}{err}");
    let delete = format!("/v1/sessions/{mid}");
    run.authed("delete", "/v1/sessions/{id}", &delete, Body::None, 200)
        .await;
    run.authed("delete", "/v1/sessions/{id}", &delete, Body::None, 409)
        .await;

    // Every route was called, and every status the document gives was answered and checked
    // (but a health check with the database down, and provider failures in the middle of a
    // pause or delete, or a machine without the `rclaude` executable).
    let unexercised = [
        ("get", "/healthz", 503),
        ("post", "/v1/sessions/{id}/pause", 502),
        ("delete", "/v1/sessions/{id}", 502),
        ("post", "/v1/sessions", 503),
        ("post", "/v1/sessions/{id}/resume", 503),
        // The checkpoint store failing (a bucket that stops answering).
        ("post", "/v1/sessions/{id}/checkpoints", 502),
        ("get", "/v1/sessions/{id}/checkpoints/{name}", 502),
    ];
    for (method, path) in routes() {
        let seen = run
            .check
            .seen()
            .get(&(method.clone(), path.clone()))
            .cloned()
            .unwrap_or_default();
        let missing: Vec<u16> = run
            .check
            .documented(&method, &path)
            .into_iter()
            .filter(|s| {
                !seen.contains(s) && !unexercised.contains(&(method.as_str(), path.as_str(), *s))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "{method} {path}: documented statuses never checked: {missing:?} (checked: {seen:?})"
        );
    }
    assert!(server.terminate().await);
}

both_engines!(answers_follow_the_document);
