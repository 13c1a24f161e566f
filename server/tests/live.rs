//! Live events over WebSocket, replay without gaps or duplicates, account isolation, graceful
//! shutdown, and two server processes sharing one PostgreSQL database (LISTEN/NOTIFY).

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn seq(msg: &Value) -> i64 {
    msg["event"]["seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("no seq in {msg}"))
}

async fn websocket_delivery(db: TestDb) {
    let alice = create_account(&db, "alice").await;
    let bob = create_account(&db, "bob").await;
    let server = Server::start(&db, &[]).await;
    let a = server.client(&alice);
    let b = server.client(&bob);
    let s1 = a.new_session("github.com/acme/app", None).await;
    let s2 = a.new_session("github.com/acme/lib", None).await;
    let sb = b.new_session("github.com/bob/x", None).await;

    // Sockets: session s1 (header auth, live only), session s1 (browser-style ?token=, replay
    // from 0), and the whole account.
    let mut live = ws_connect(&server.addr, &format!("/v1/sessions/{s1}/events"), &alice)
        .await
        .expect("session socket");
    let mut replay = ws_connect_query(
        &server.addr,
        &format!("/v1/sessions/{s1}/events?since_seq=0"),
        &alice,
    )
    .await;
    let mut account = ws_connect(&server.addr, "/v1/events", &alice)
        .await
        .expect("account socket");
    // The replaying socket first gets the stored `created` event.
    let m = ws_next(&mut replay).await;
    assert_eq!((seq(&m), m["event"]["type"].as_str()), (1, Some("created")));
    assert_eq!(m["session"]["id"], s1.as_str());

    // Bob's event must not reach Alice's account socket (it is committed first, so it would
    // arrive first if it leaked).
    b.event(&sb, "started", None).await;
    a.event(&s2, "started", None).await;
    let m = ws_next(&mut account).await;
    assert_eq!(m["event"]["session_id"], s2.as_str(), "{m}");
    assert_eq!(m["session"]["state"], "running");

    // Twenty events on s1: every socket gets each once, in order.
    for i in 0..20 {
        let kind = if i == 0 { "started" } else { "heartbeat" };
        a.event(&s1, kind, None).await;
    }
    for n in 2..=21 {
        let m = ws_next(&mut live).await;
        assert_eq!(seq(&m), n);
        let m = ws_next(&mut replay).await;
        assert_eq!(seq(&m), n);
        let m = ws_next(&mut account).await;
        assert_eq!(
            (m["event"]["session_id"].as_str(), seq(&m)),
            (Some(s1.as_str()), n)
        );
    }
    // The retry of an event is not pushed again.
    let key = json!({"type": "heartbeat", "idempotency_key": "once"});
    assert_eq!(
        a.post(&format!("/v1/sessions/{s1}/events"), key.clone())
            .await
            .0,
        201
    );
    assert_eq!(
        a.post(&format!("/v1/sessions/{s1}/events"), key).await.0,
        200
    );
    assert_eq!(seq(&ws_next(&mut live).await), 22);
    a.event(&s1, "paused", None).await;
    let m = ws_next(&mut live).await;
    assert_eq!((seq(&m), m["event"]["type"].as_str()), (23, Some("paused")));
    assert_eq!(m["session"]["state"], "paused");
    // A large event (bigger than a NOTIFY payload) arrives whole.
    let log = "x".repeat(12_000);
    a.event_with(
        &s1,
        "task_finished",
        json!({"task": "test", "exit_code": 1, "duration_ms": 42, "log": log}),
        None,
    )
    .await;
    let m = ws_next(&mut live).await;
    assert_eq!(seq(&m), 24);
    assert_eq!(
        m["event"]["data"]["log"].as_str().map(str::len),
        Some(12_000)
    );
    assert_eq!(m["event"]["data"]["exit_code"], 1);
    ws_quiet(&mut live, Duration::from_millis(300)).await;
    ws_close(live).await;
    ws_close(replay).await;
    ws_close(account).await;

    // Replay while events keep coming: since_seq=10 must yield exactly 11, 12, … with no gap
    // and no duplicate, across the switch from the database to the live stream.
    let writer = {
        let (a, s1) = (a.clone(), s1.clone());
        tokio::spawn(async move {
            for _ in 0..60 {
                a.event(&s1, "heartbeat", None).await;
            }
        })
    };
    let mut catching_up = ws_connect(
        &server.addr,
        &format!("/v1/sessions/{s1}/events?since_seq=10"),
        &alice,
    )
    .await
    .unwrap();
    writer.await.unwrap();
    for n in 11..=84 {
        assert_eq!(seq(&ws_next(&mut catching_up).await), n);
    }
    ws_quiet(&mut catching_up, Duration::from_millis(300)).await;

    // Graceful shutdown closes sockets with 1001 (going away) and exits 0.
    let term = tokio::spawn(server.terminate());
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(30), catching_up.next())
            .await
            .expect("close within 30s")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(Message::Ping(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.expect("close frame").code), 1001);
    assert!(term.await.unwrap(), "server exit status");
}

/// Two `rclaude-server` processes on one PostgreSQL database: every event reaches the sockets of
/// both, whichever process stored it; sequence numbers and idempotency hold across processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_postgres() {
    let Some(db) = TestDb::new(Engine::Postgres).await else {
        return;
    };
    let tok = create_account(&db, "alice").await;
    let one = Server::start(&db, &[]).await;
    let two = Server::start(&db, &[]).await;
    let c1 = one.client(&tok);
    let c2 = two.client(&tok);
    let sid = c1.new_session("github.com/acme/app", None).await;

    let mut sock1 = ws_connect(&one.addr, &format!("/v1/sessions/{sid}/events"), &tok)
        .await
        .unwrap();
    let mut sock2 = ws_connect(&two.addr, &format!("/v1/sessions/{sid}/events"), &tok)
        .await
        .unwrap();
    let mut acct1 = ws_connect(&one.addr, "/v1/events", &tok).await.unwrap();
    let mut acct2 = ws_connect(&two.addr, "/v1/events", &tok).await.unwrap();

    // Alternate writers; then both at once.
    for i in 0..20 {
        let c = if i % 2 == 0 { &c1 } else { &c2 };
        c.event(&sid, if i == 0 { "started" } else { "heartbeat" }, None)
            .await;
    }
    let mut handles = Vec::new();
    for i in 0..40 {
        let c = if i % 2 == 0 { c1.clone() } else { c2.clone() };
        let sid = sid.clone();
        handles.push(tokio::spawn(async move {
            c.event(&sid, "heartbeat", None).await;
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    for sock in [&mut sock1, &mut sock2, &mut acct1, &mut acct2] {
        for n in 2..=61 {
            assert_eq!(seq(&ws_next(sock).await), n);
        }
        ws_quiet(sock, Duration::from_millis(300)).await;
    }

    // An event retried against the other replica is stored once.
    let body = json!({"type": "paused", "idempotency_key": "pause-1"});
    let path = format!("/v1/sessions/{sid}/events");
    let (s1, v1) = c1.post(&path, body.clone()).await;
    let (s2, v2) = c2.post(&path, body).await;
    assert_eq!((s1.as_u16(), s2.as_u16()), (201, 200));
    assert_eq!(v1["event"]["id"], v2["event"]["id"]);
    assert_eq!(seq(&ws_next(&mut sock2).await), 62);
    ws_quiet(&mut sock2, Duration::from_millis(300)).await;

    let (_, v) = c2.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(v["events"].as_array().unwrap().len(), 62);
    assert_eq!(v["session"]["state"], "paused");
    assert!(one.terminate().await);
    assert!(two.terminate().await);
}

both_engines!(websocket_delivery);
