//! Sessions and events: idempotent creates and appends (also under concurrency), the state
//! machine, listing and paging, and a server crash mid-session.

mod common;

use std::collections::BTreeSet;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn idempotent_events(db: TestDb) {
    let tok = create_account(&db, "alice").await;
    let server = Server::start(&db, &[]).await;
    let c = server.client(&tok);
    let sid = c.new_session("github.com/acme/app", None).await;
    let path = format!("/v1/sessions/{sid}/events");

    // The same key twice: stored once; the retry answers 200 with the same event.
    let body = json!({"type": "started", "idempotency_key": "start-1"});
    let (s1, v1) = c.post(&path, body.clone()).await;
    let (s2, v2) = c.post(&path, body.clone()).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK), "{v1} {v2}");
    assert_eq!(v1["event"], v2["event"]);
    assert_eq!(v1["event"]["seq"], 2);

    // Sixteen concurrent retries of one new key: one 201, fifteen 200, one stored event.
    let body =
        json!({"type": "task_started", "idempotency_key": "task-1", "data": {"task": "test"}});
    let mut handles = Vec::new();
    for _ in 0..16 {
        let (c, path, body) = (c.clone(), path.clone(), body.clone());
        handles.push(tokio::spawn(async move { c.post(&path, body).await }));
    }
    let mut created = 0;
    let mut ids = BTreeSet::new();
    for h in handles {
        let (s, v) = h.await.unwrap();
        match s {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            other => panic!("unexpected {other}: {v}"),
        }
        ids.insert(v["event"]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);

    // The same key with a different event is refused.
    let (s, v) = c
        .post(
            &path,
            json!({"type": "paused", "idempotency_key": "start-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "idempotency_key_reused");

    // Forty concurrent distinct events: forty consecutive sequence numbers.
    let mut handles = Vec::new();
    for i in 0..40 {
        let (c, path) = (c.clone(), path.clone());
        handles.push(tokio::spawn(async move {
            c.post(
                &path,
                json!({"type": "heartbeat", "idempotency_key": format!("hb-{i}")}),
            )
            .await
        }));
    }
    let mut seqs = BTreeSet::new();
    for h in handles {
        let (s, v) = h.await.unwrap();
        assert_eq!(s, StatusCode::CREATED, "{v}");
        seqs.insert(v["event"]["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, (4..44).collect::<BTreeSet<i64>>());

    let (_, v) = c.get(&format!("/v1/sessions/{sid}")).await;
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 43); // created, started, task_started, 40 heartbeats
    let seq: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seq, (1..44).collect::<Vec<i64>>());
    assert_eq!(v["session"]["last_seq"], 43);
    assert_eq!(v["session"]["state"], "running");

    // Stopped is terminal, but a retried `stopped` is still answered.
    let stop = json!({"type": "stopped", "idempotency_key": "stop-1"});
    assert_eq!(c.post(&path, stop.clone()).await.0, StatusCode::CREATED);
    assert_eq!(c.post(&path, stop).await.0, StatusCode::OK);
    let (s, v) = c
        .post(
            &path,
            json!({"type": "heartbeat", "idempotency_key": "late"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["error"]["code"], "session_stopped");

    // Polling form of the event stream.
    let (s, v) = c.get(&format!("{path}?since_seq=40&limit=2")).await;
    assert_eq!(s, StatusCode::OK);
    let seq: Vec<i64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seq, [41, 42]);
    assert!(server.terminate().await);
}

async fn sessions_create_list_filter(db: TestDb) {
    let tok = create_account(&db, "alice").await;
    let server = Server::start(&db, &[]).await;
    let c = server.client(&tok);

    // Client-chosen id: idempotent create; a different session under the same id is refused.
    let id = uuid::Uuid::new_v4().to_string();
    let body = json!({"id": id, "repository": "github.com/acme/app", "branch": "main",
                      "provider": "local", "sandbox_id": "sbx-9", "config_hash": "00ff"});
    let (s1, v1) = c.post("/v1/sessions", body.clone()).await;
    let (s2, v2) = c.post("/v1/sessions", body.clone()).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK), "{v1} {v2}");
    assert_eq!(v1["session"]["id"], id.as_str());
    assert_eq!(v1["session"], v2["session"]);
    let s = &v1["session"];
    for (k, want) in [
        ("repository", "github.com/acme/app"),
        ("branch", "main"),
        ("provider", "local"),
        ("sandbox_id", "sbx-9"),
        ("config_hash", "00ff"),
        ("state", "created"),
    ] {
        assert_eq!(s[k], want, "{k}");
    }
    for k in ["created_at", "updated_at"] {
        let t = s[k].as_str().unwrap();
        assert!(t.ends_with('Z') && t.contains('T'), "{k}: {t}");
    }
    assert_eq!(s["active_seconds"], 0);
    assert_eq!(s["cost_micros"], 0);
    let mut other = body.clone();
    other["branch"] = json!("dev");
    let (s, v) = c.post("/v1/sessions", other).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    // A few more sessions in two repositories and two providers, at increasing times.
    let mut ids = vec![id.clone()];
    for i in 0..6 {
        let repo = if i % 2 == 0 {
            "github.com/acme/lib"
        } else {
            "github.com/acme/app"
        };
        let provider = if i < 3 { "local" } else { "e2b" };
        let (s, v) = c
            .post_at(
                "/v1/sessions",
                json!({"repository": repo, "branch": "main", "provider": provider}),
                &format!("2030-01-01T00:00:0{i}Z"),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        ids.push(v["session"]["id"].as_str().unwrap().to_string());
    }
    c.event(&ids[1], "started", None).await;

    let list = |q: &'static str| {
        let c = c.clone();
        async move {
            let (s, v) = c.get(&format!("/v1/sessions{q}")).await;
            assert_eq!(s, StatusCode::OK, "{q}: {v}");
            v
        }
    };
    let ids_of = |v: &Value| -> Vec<String> {
        v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids_of(&list("?repository=github.com/acme/lib").await).len(),
        3
    );
    assert_eq!(ids_of(&list("?provider=e2b").await).len(), 3);
    assert_eq!(ids_of(&list("?state=running").await), vec![ids[1].clone()]);
    assert_eq!(
        ids_of(&list("?repository=github.com/acme/app&provider=e2b").await).len(),
        2
    );

    // Paging: newest first, no overlap, nothing lost.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(cur) => format!("/v1/sessions?limit=2&cursor={cur}"),
            None => "/v1/sessions?limit=2".to_string(),
        };
        let (_, v) = c.get(&q).await;
        seen.extend(ids_of(&v));
        match v["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 7);
    assert_eq!(seen[0], ids[6]); // created last (2030-01-01T00:00:05Z)
    assert!(server.terminate().await);
}

/// The server is killed (SIGKILL) mid-session and restarted on the same database: nothing
/// acknowledged is lost, and the session carries on.
async fn server_crash_mid_session(db: TestDb) {
    let tok = create_account(&db, "alice").await;
    let server = Server::start(&db, &[]).await;
    let c = server.client(&tok);
    let sid = c
        .new_session("github.com/acme/app", Some("2031-05-01T10:00:00Z"))
        .await;
    c.event(&sid, "started", Some("2031-05-01T10:00:00Z")).await;
    c.event(&sid, "heartbeat", Some("2031-05-01T10:04:00Z"))
        .await;
    server.crash().await;

    let server = Server::start(&db, &[]).await;
    let c = server.client(&tok);
    let (_, v) = c
        .get_at(&format!("/v1/sessions/{sid}"), "2031-05-01T10:06:00Z")
        .await;
    assert_eq!(v["session"]["state"], "running");
    assert_eq!(v["events"].as_array().unwrap().len(), 3);
    assert_eq!(v["session"]["active_seconds"], 360);
    c.event(&sid, "heartbeat", Some("2031-05-01T10:08:00Z"))
        .await;
    c.event(&sid, "stopped", Some("2031-05-01T10:10:00Z")).await;
    let (_, v) = c
        .get_at(&format!("/v1/sessions/{sid}"), "2031-05-02T00:00:00Z")
        .await;
    assert_eq!(v["session"]["active_seconds"], 600);
    assert_eq!(v["session"]["cost_micros"], 16_667); // 600 × 100000 / 3600 = 16666.67
    assert!(server.terminate().await);
}

both_engines!(
    idempotent_events,
    sessions_create_list_filter,
    server_crash_mid_session
);
