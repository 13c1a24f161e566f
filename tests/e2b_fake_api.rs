//! The local E2B (`support/e2b_server.rs`) rejects what E2B's API rejects: these pin its request
//! validation and response shapes, so the provider tests cannot pass against a lenient fake.

#[path = "support/e2b_server.rs"]
mod e2b_server;

use e2b_server::{API_KEY, FakeE2b, FakeOptions};
use serde_json::{Value, json};

struct T {
    fake: FakeE2b,
    http: reqwest::Client,
    _vm: tempfile::TempDir,
}

fn t() -> T {
    let vm = tempfile::tempdir().unwrap();
    let fake = FakeE2b::start_with(FakeOptions {
        shared_root: Some(vm.path().to_path_buf()),
        ..FakeOptions::default()
    });
    T {
        fake,
        http: reqwest::Client::new(),
        _vm: vm,
    }
}

impl T {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.fake.url)
    }

    async fn call(&self, rb: reqwest::RequestBuilder) -> (u16, Value, reqwest::header::HeaderMap) {
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (s, b, _) = self
            .call(
                self.http
                    .post(self.url(path))
                    .header("x-api-key", API_KEY)
                    .json(&body),
            )
            .await;
        (s, b)
    }

    async fn get(&self, path: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        self.call(self.http.get(self.url(path)).header("x-api-key", API_KEY))
            .await
    }

    async fn create(&self, body: Value) -> String {
        let (s, b) = self.post("/v2/sandboxes", body).await;
        assert_eq!(s, 201, "{b}");
        b["sandboxID"].as_str().unwrap().to_string()
    }
}

/// E2B's error body: `{"code": status, "message": "..."}`.
fn assert_error(status: u16, body: &Value, want: u16, contains: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["code"], want, "{body}");
    let m = body["message"].as_str().unwrap();
    assert!(m.contains(contains), "{m:?} should contain {contains:?}");
}

#[tokio::test]
async fn the_api_key_is_required_and_checked() {
    let t = t();
    let (s, b, _) = t.call(t.http.get(t.url("/v2/sandboxes"))).await;
    assert_error(s, &b, 401, "missing");
    let (s, b, _) = t
        .call(
            t.http
                .get(t.url("/v2/sandboxes"))
                .header("X-API-Key", "nope"),
        )
        .await;
    assert_error(s, &b, 401, "Invalid API key");
    // Header names are case-insensitive.
    let (s, _, _) = t
        .call(
            t.http
                .get(t.url("/v2/sandboxes"))
                .header("X-Api-Key", API_KEY),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _, _) = t.call(t.http.get(t.url("/health"))).await;
    assert_eq!(s, 204);
}

#[tokio::test]
async fn create_validates_its_body() {
    let t = t();
    let cases = [
        (json!({}), "templateID"),
        (json!({ "templateID": "" }), "templateID"),
        (json!({ "templateID": 5 }), "templateID"),
        (json!({ "templateID": "base", "timeout": 0 }), "at least 1"),
        (json!({ "templateID": "base", "timeout": 1.5 }), "integer"),
        (json!({ "templateID": "base", "timeout": "60" }), "integer"),
        (
            json!({ "templateID": "base", "autoPause": "yes" }),
            "boolean",
        ),
        (
            json!({ "templateID": "base", "metadata": { "n": 1 } }),
            "metadata/n",
        ),
        (json!({ "templateID": "base", "metadata": ["a"] }), "object"),
        (
            json!({ "templateID": "base", "envVars": { "A": true } }),
            "envVars/A",
        ),
        (
            json!({ "templateID": "base", "autoResume": true }),
            "autoResume",
        ),
        (json!(["base"]), "object"),
    ];
    for (body, want) in cases {
        let (s, b) = t.post("/v2/sandboxes", body.clone()).await;
        assert_error(s, &b, 400, want);
    }
    let (s, b) = t
        .post(
            "/v2/sandboxes",
            json!({ "templateID": "base", "timeout": 86401 }),
        )
        .await;
    assert_error(s, &b, 400, "cannot be greater than 24 hours");
    let (s, b, _) = t
        .call(
            t.http
                .post(t.url("/v2/sandboxes"))
                .header("x-api-key", API_KEY)
                .body("{\"templateID\":\"base\"}"),
        )
        .await;
    assert_error(s, &b, 400, "Content-Type");
    let (s, b, _) = t
        .call(
            t.http
                .post(t.url("/v2/sandboxes"))
                .header("x-api-key", API_KEY),
        )
        .await;
    assert_error(s, &b, 400, "required");
    let (s, b) = t
        .post("/v2/sandboxes", json!({ "templateID": "unknown" }))
        .await;
    assert_error(s, &b, 404, "'unknown' not found");
    assert!(t.fake.sandboxes().is_empty(), "nothing invalid was created");
}

#[tokio::test]
async fn create_answers_a_secured_sandbox() {
    let t = t();
    let (s, b) = t.post("/v2/sandboxes", json!({ "templateID": "base", "timeout": 60, "metadata": { "k": "v" }, "unknownField": 1 })).await;
    assert_eq!(s, 201, "{b}");
    for field in [
        "templateID",
        "sandboxID",
        "clientID",
        "envdVersion",
        "envdAccessToken",
    ] {
        assert!(b[field].is_string(), "{field} in {b}");
    }
    assert_eq!(b["templateID"], "rki5dems9wqfm4r03t7g");
    assert!(b["domain"].is_null());
}

#[tokio::test]
async fn idempotency_keys_are_checked_and_replayed() {
    let t = t();
    for bad in ["UPPER", "with space", "under_score", &"a".repeat(256)] {
        let (s, b, _) = t
            .call(
                t.http
                    .post(t.url("/v2/sandboxes"))
                    .header("x-api-key", API_KEY)
                    .header("idempotency-key", bad)
                    .json(&json!({ "templateID": "base" })),
            )
            .await;
        assert_error(s, &b, 400, "Idempotency-Key");
    }
    let send = || {
        t.http
            .post(t.url("/v2/sandboxes"))
            .header("x-api-key", API_KEY)
            .header("idempotency-key", "abc-123")
            .json(&json!({ "templateID": "base" }))
    };
    let (_, a, _) = t.call(send()).await;
    let (s, b, _) = t.call(send()).await;
    assert_eq!(s, 201);
    assert_eq!(a["sandboxID"], b["sandboxID"]);
    assert_eq!(t.fake.sandboxes().len(), 1);
}

#[tokio::test]
async fn list_validates_its_query_and_pages() {
    let t = t();
    for q in [
        "limit=0",
        "limit=101",
        "limit=x",
        "state=stopped",
        "state=running,gone",
        "nextToken=zz",
        "order=up",
    ] {
        let (s, b, _) = t.get(&format!("/v2/sandboxes?{q}")).await;
        assert_error(s, &b, 400, "");
        assert!(b["message"].as_str().unwrap().len() > 5, "{q}: {b}");
    }
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            t.create(
                json!({ "templateID": "base", "metadata": { "team": "a", "n": i.to_string() } }),
            )
            .await,
        );
    }
    t.create(json!({ "templateID": "base", "metadata": { "team": "b" } }))
        .await;
    // metadata is one URL-encoded `k=v&k2=v2` value.
    let (s, all, _) = t.get("/v2/sandboxes?metadata=team%3Da").await;
    assert_eq!(s, 200);
    assert_eq!(all.as_array().unwrap().len(), 3);
    let (_, one, _) = t.get("/v2/sandboxes?metadata=team%3Da%26n%3D1").await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["sandboxID"], ids[1].as_str());
    for field in [
        "templateID",
        "sandboxID",
        "clientID",
        "startedAt",
        "endAt",
        "cpuCount",
        "memoryMB",
        "diskSizeMB",
        "state",
        "envdVersion",
    ] {
        assert!(!one[0][field].is_null(), "{field} in {one}");
    }
    assert!(
        one[0].get("envdAccessToken").is_none(),
        "listing never shows tokens"
    );

    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..10 {
        let q = match &next {
            Some(n) => format!("/v2/sandboxes?metadata=team%3Da&limit=2&nextToken={n}"),
            None => "/v2/sandboxes?metadata=team%3Da&limit=2".into(),
        };
        let (_, page, headers) = t.get(&q).await;
        seen.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|s| s["sandboxID"].as_str().unwrap().to_string()),
        );
        next = headers
            .get("x-next-token")
            .map(|v| v.to_str().unwrap().to_string());
        if next.is_none() {
            break;
        }
    }
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);

    t.post(&format!("/sandboxes/{}/pause", ids[0]), json!({}))
        .await;
    let (_, paused, _) = t.get("/v2/sandboxes?state=paused").await;
    assert_eq!(paused.as_array().unwrap().len(), 1);
    assert_eq!(paused[0]["state"], "paused");
}

#[tokio::test]
async fn lifecycle_endpoints_answer_like_e2b() {
    let t = t();
    let id = t
        .create(json!({ "templateID": "base", "timeout": 120, "autoPause": true }))
        .await;
    let (s, d, _) = t.get(&format!("/sandboxes/{id}")).await;
    assert_eq!(s, 200);
    assert!(d["envdAccessToken"].is_string());
    assert_eq!(
        d["lifecycle"],
        json!({ "autoResume": false, "onTimeout": "pause" })
    );

    // Timeouts: /timeout sets, /refreshes only extends and is capped at an hour.
    let (s, b) = t.post(&format!("/sandboxes/{id}/timeout"), json!({})).await;
    assert_error(s, &b, 400, "timeout");
    let (s, b) = t
        .post(
            &format!("/sandboxes/{id}/refreshes"),
            json!({ "duration": 3601 }),
        )
        .await;
    assert_error(s, &b, 400, "at most 3600");
    let (s, _) = t
        .post(
            &format!("/sandboxes/{id}/refreshes"),
            json!({ "duration": 600 }),
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = t
        .post(
            &format!("/sandboxes/{id}/timeout"),
            json!({ "timeout": 30 }),
        )
        .await;
    assert_eq!(s, 204);
    let end = t.fake.sandbox(&id).unwrap().end_at;
    assert!(
        end < time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(60),
        "set-timeout may shorten"
    );

    // Pause: 204 then 409; connect resumes with 201, then 200.
    let (s, b) = t
        .post(&format!("/sandboxes/{id}/pause"), json!({ "memory": "no" }))
        .await;
    assert_error(s, &b, 400, "memory");
    let (s, _) = t.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!(s, 204);
    let (s, b) = t.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_error(s, &b, 409, "already paused");
    let (s, b) = t
        .post(
            &format!("/sandboxes/{id}/timeout"),
            json!({ "timeout": 30 }),
        )
        .await;
    assert_error(s, &b, 404, &id);
    let (s, b) = t
        .post(
            &format!("/v2/sandboxes/{id}/connect"),
            json!({ "timeout": -1 }),
        )
        .await;
    assert_error(s, &b, 400, "at least 0");
    let (s, b) = t
        .post(
            &format!("/v2/sandboxes/{id}/connect"),
            json!({ "timeout": 60 }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["sandboxID"], id.as_str());
    // The body is optional.
    let (s, _, _) = t
        .call(
            t.http
                .post(t.url(&format!("/v2/sandboxes/{id}/connect")))
                .header("x-api-key", API_KEY),
        )
        .await;
    assert_eq!(s, 200);

    // Kill: 204, then 404 everywhere.
    let (s, _, _) = t
        .call(
            t.http
                .delete(t.url(&format!("/sandboxes/{id}")))
                .header("x-api-key", API_KEY),
        )
        .await;
    assert_eq!(s, 204);
    let (s, b, _) = t
        .call(
            t.http
                .delete(t.url(&format!("/sandboxes/{id}")))
                .header("x-api-key", API_KEY),
        )
        .await;
    assert_error(s, &b, 404, &id);
    let (s, b, _) = t.get(&format!("/sandboxes/{id}")).await;
    assert_error(s, &b, 404, &id);
    let (s, b) = t
        .post(
            &format!("/v2/sandboxes/{id}/connect"),
            json!({ "timeout": 60 }),
        )
        .await;
    assert_error(s, &b, 404, &id);
    let (s, b) = t.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_error(s, &b, 404, &id);
}

#[tokio::test]
async fn fork_validates_its_body_and_copies_the_source() {
    let t = t();
    let id = t
        .create(json!({ "templateID": "base", "autoPause": true, "metadata": { "k": "v" }, "envVars": { "A": "1" } }))
        .await;
    let src = t.fake.sandbox(&id).unwrap();
    let note = src.root.join("home/user/note.txt");
    std::fs::write(&note, "from the source\n").unwrap();

    let path = format!("/sandboxes/{id}/fork");
    let cases = [
        (json!({ "timeout": -1 }), "at least 0"),
        (json!({ "timeout": "60" }), "integer"),
        (json!({ "timeout": 1.5 }), "integer"),
        (json!({ "count": 0 }), "at least 1"),
        (json!({ "count": 21 }), "at most 20"),
        (json!({ "count": "2" }), "integer"),
        (json!([1]), "object"),
    ];
    for (body, want) in cases {
        let (s, b) = t.post(&path, body.clone()).await;
        assert_error(s, &b, 400, want);
    }
    let (s, b) = t.post(&path, json!({ "timeout": 86401 })).await;
    assert_error(s, &b, 400, "cannot be greater than 24 hours");
    let (s, b) = t.post("/sandboxes/inope/fork", json!({})).await;
    assert_error(s, &b, 404, "inope");
    assert_eq!(t.fake.sandboxes().len(), 1, "nothing invalid was forked");

    // Two forks: running copies with the source's template, metadata, env and lifecycle.
    let (s, b) = t.post(&path, json!({ "timeout": 60, "count": 2 })).await;
    assert_eq!(s, 201, "{b}");
    let forks: Vec<String> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e.get("error").is_none(), "{e}");
            for field in [
                "templateID",
                "sandboxID",
                "clientID",
                "envdVersion",
                "envdAccessToken",
            ] {
                assert!(e["sandbox"][field].is_string(), "{field} in {e}");
            }
            e["sandbox"]["sandboxID"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(forks.len(), 2);
    assert_ne!(forks[0], forks[1]);
    for f in &forks {
        assert_ne!(f, &id);
        let v = t.fake.sandbox(f).unwrap();
        assert_eq!(v.state, "running");
        assert_eq!(v.template_id, src.template_id);
        assert_eq!(v.metadata, src.metadata);
        assert_eq!(v.env_vars, src.env_vars);
        assert!(v.auto_pause);
        assert_eq!(v.forked_from.as_deref(), Some(id.as_str()));
        assert_ne!(v.token, src.token);
        assert_ne!(v.root, src.root);
        assert_eq!(
            v.seen_at, src.seen_at,
            "a fork sees its copy at the source's paths"
        );
        assert!(
            v.end_at < time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(61),
            "the body's timeout"
        );
        assert_eq!(
            std::fs::read_to_string(v.root.join("home/user/note.txt")).unwrap(),
            "from the source\n"
        );
    }
    assert_eq!(
        t.fake.sandbox(&id).unwrap().state,
        "running",
        "the source keeps running"
    );

    // Through envd, the fork reads its copy at the source's path; later source edits stay there.
    std::fs::write(&note, "changed in the source\n").unwrap();
    let read = |sbx: String| {
        let token = t.fake.sandbox(&sbx).unwrap().token;
        t.http
            .get(t.url("/files"))
            .query(&[("path", note.to_str().unwrap())])
            .header("e2b-sandbox-id", sbx)
            .header("e2b-sandbox-port", "49983")
            .header("x-access-token", token)
    };
    let got = read(forks[0].clone()).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.text().await.unwrap(), "from the source\n");
    let got = read(id.clone()).send().await.unwrap();
    assert_eq!(got.text().await.unwrap(), "changed in the source\n");

    // A paused source forks too: the fork runs, the source stays paused.
    let (s, _) = t.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!(s, 204);
    let (s, b) = t.post(&path, json!({})).await;
    assert_eq!(s, 201, "{b}");
    let third = b[0]["sandbox"]["sandboxID"].as_str().unwrap().to_string();
    assert_eq!(t.fake.sandbox(&third).unwrap().state, "running");
    assert_eq!(t.fake.sandbox(&id).unwrap().state, "paused");

    // Killing the source leaves its forks whole.
    let (s, _, _) = t
        .call(
            t.http
                .delete(t.url(&format!("/sandboxes/{id}")))
                .header("x-api-key", API_KEY),
        )
        .await;
    assert_eq!(s, 204);
    let got = read(third.clone()).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.text().await.unwrap(), "changed in the source\n");
    // Killing a fork removes its copy.
    let root = t.fake.sandbox(&forks[1]).unwrap().root;
    let (s, _, _) = t
        .call(
            t.http
                .delete(t.url(&format!("/sandboxes/{}", forks[1])))
                .header("x-api-key", API_KEY),
        )
        .await;
    assert_eq!(s, 204);
    assert!(!root.exists());
}
