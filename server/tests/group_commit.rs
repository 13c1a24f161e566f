//! Group commit of session events: a batch of concurrent appends is committed in one
//! transaction and ends exactly as the same appends made one at a time (events, sequence
//! numbers, states, billed seconds, live order), each caller getting its own answer; a batch
//! that fails as a whole falls back to one append per event.
//!
//! The tests drive the store on a current-thread runtime: every append of a `join_all` is
//! queued before the writer task first runs, so the batch is the whole set, deterministically.

mod common;

use std::collections::BTreeMap;

use common::*;
use futures::future::join_all;
use rclaude_server::events::Hub;
use rclaude_server::model::EventKind;
use rclaude_server::storage::{Appended, NewEvent, NewSession, Store, StoreError};
use serde_json::{Value, json};

/// 2031-01-01T00:00:00Z in milliseconds.
const T: i64 = 1_924_992_000_000;

struct Append {
    account: usize,
    session: String,
    kind: EventKind,
    key: &'static str,
    data: Value,
    at_s: i64,
}

fn append(session: &str, kind: EventKind, key: &'static str, at_s: i64) -> Append {
    Append {
        account: 0,
        session: session.to_string(),
        kind,
        key,
        data: json!({}),
        at_s,
    }
}

async fn open(db: &TestDb, hub: Hub) -> Store {
    let d = rclaude_server::db::open(&db.url, 4).await.expect("open db");
    Store::new(d, rclaude_server::config::Prices::default(), hub)
}

/// Two accounts (`alice`, `bob`) and sessions `s0`..`s5` of alice's, created at `T`.
async fn seed(store: &Store) -> Vec<String> {
    let mut accounts = Vec::new();
    for name in ["alice", "bob"] {
        accounts.push(store.create_account(name, T).await.unwrap().id);
    }
    for i in 0..6 {
        let new = NewSession {
            id: format!("s{i}"),
            repository: "github.com/acme/app".into(),
            branch: "main".into(),
            provider: "local".into(),
            sandbox_id: None,
            config_hash: None,
            managed: false,
            idempotency_key: None,
            idle_pause_ms: None,
        };
        store.create_session(&accounts[0], &new, T).await.unwrap();
    }
    accounts
}

async fn run(store: &Store, accounts: &[String], a: &Append) -> Result<Appended, StoreError> {
    let new = NewEvent {
        kind: a.kind,
        idempotency_key: a.key.to_string(),
        data: a.data.clone(),
        by_server: false,
        lost: false,
    };
    store
        .append_event(&accounts[a.account], &a.session, &new, T + a.at_s * 1000)
        .await
}

/// Every session's lifecycle, interleaved across sessions, with retries, refusals and
/// unknown sessions mixed in.
fn script() -> Vec<Append> {
    use EventKind::*;
    let mut per_session: Vec<Vec<Append>> = (0..6)
        .map(|i| {
            let s = format!("s{i}");
            let mut task = append(&s, TaskStarted, "t1", 61);
            task.data = json!({"task": "test"});
            vec![
                append(&s, Started, "start", 1),
                append(&s, Heartbeat, "hb1", 60),
                task,
                // A retry of hb1: answered with the stored event, not stored again.
                append(&s, Heartbeat, "hb1", 62),
                append(&s, Paused, "pause", 120),
                append(&s, Resumed, "resume", 200),
                // Earlier than the session's last event: stored at that event's time.
                append(&s, Heartbeat, "hb2", 150),
            ]
        })
        .collect();
    per_session[0].push(append("s0", Stopped, "stop", 300));
    per_session[0].push(append("s0", Heartbeat, "late", 310));
    let mut reused = append("s1", TaskFinished, "t1", 320);
    reused.data = json!({"task": "test", "exit_code": 0});
    per_session[1].push(reused);
    per_session[2].push(append("nope", Heartbeat, "x", 5));
    let mut foreign = append("s3", Heartbeat, "foreign", 6);
    foreign.account = 1;
    per_session[3].push(foreign);

    let mut out = Vec::new();
    let longest = per_session.iter().map(Vec::len).max().unwrap();
    for step in 0..longest {
        for s in &mut per_session {
            if step < s.len() {
                out.push(std::mem::replace(
                    &mut s[step],
                    append("", Heartbeat, "", 0),
                ));
            }
        }
    }
    out
}

/// What a caller was told, comparable across databases (event ids differ). A retry's answer
/// carries the session as it is when answered (after the whole batch), so only its event counts.
fn answer(r: &Result<Appended, StoreError>) -> String {
    match r {
        Ok(a) if !a.created => format!(
            "{} seq {} {} at {} retried",
            a.event.session_id, a.event.seq, a.event.kind, a.event.created_at
        ),
        Ok(a) => format!(
            "{} seq {} {} at {} created={} state={} active={}",
            a.event.session_id,
            a.event.seq,
            a.event.kind,
            a.event.created_at,
            a.created,
            a.session.state,
            a.session.active_seconds
        ),
        Err(StoreError::NotFound) => "not found".into(),
        Err(StoreError::Conflict(_)) => "conflict".into(),
        Err(StoreError::InvalidTransition(e)) => format!("refused: {e}"),
        Err(e) => format!("other: {e}"),
    }
}

/// Sessions and their events as stored, comparable across databases.
async fn stored(store: &Store, account: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let far = (T / 1000) + 86_400;
    for i in 0..6 {
        let id = format!("s{i}");
        let s = store.get_session(account, &id, far).await.unwrap().unwrap();
        let events: Vec<Value> = store
            .list_events(account, &id, 0, 1000)
            .await
            .unwrap()
            .iter()
            .map(|e| json!([e.seq, e.kind, e.created_at, e.data]))
            .collect();
        out.insert(
            id,
            json!({
                "state": s.state, "last_seq": s.last_seq, "updated_at": s.updated_at,
                "active_seconds": s.active_seconds, "cost_micros": s.cost_micros,
                "events": events,
            }),
        );
    }
    out
}

async fn batch_matches_one_at_a_time(engine: Engine) {
    let (Some(db_a), Some(db_b)) = (TestDb::new(engine).await, TestDb::new(engine).await) else {
        return;
    };
    let hub = Hub::new(1024);
    let mut live = hub.subscribe();
    let batched = open(&db_a, hub).await;
    let one_by_one = open(&db_b, Hub::new(16)).await;
    let acc_a = seed(&batched).await;
    let acc_b = seed(&one_by_one).await;
    let script = script();

    let together = join_all(script.iter().map(|a| run(&batched, &acc_a, a))).await;
    let mut alone = Vec::new();
    for a in &script {
        alone.push(run(&one_by_one, &acc_b, a).await);
    }

    let stats = batched.commit_stats();
    let created = together
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|a| a.created))
        .count() as u64;
    assert_eq!(
        (stats.commits, stats.events, stats.fallbacks),
        (1, created, 0),
        "all {} appends in one transaction",
        script.len()
    );
    assert_eq!(created, 6 * 6 + 1, "six events per session, plus s0's stop");
    for (i, (t, a)) in together.iter().zip(&alone).enumerate() {
        assert_eq!(answer(t), answer(a), "append {i} answered differently");
    }
    let answers: Vec<String> = together.iter().map(answer).collect();
    for want in [
        "not found",
        "conflict",
        "refused: session is stopped; it accepts no more events",
    ] {
        assert!(
            answers.iter().any(|a| a == want),
            "no `{want}` in {answers:#?}"
        );
    }
    assert_eq!(answers.iter().filter(|a| *a == "not found").count(), 2);
    assert_eq!(
        answers.iter().filter(|a| a.ends_with("retried")).count(),
        6,
        "each session's hb1 retry"
    );
    assert_eq!(
        stored(&batched, &acc_a[0]).await,
        stored(&one_by_one, &acc_b[0]).await
    );
    let s1 = &stored(&batched, &acc_a[0]).await["s1"];
    let grace = rclaude_server::config::Prices::default().heartbeat_grace_s;
    assert_eq!(s1["active_seconds"], 119 + grace.min(86_400 - 200), "{s1}");

    if engine == Engine::Sqlite {
        // Every stored event announced once, in sequence order per session (after each
        // session's `created`, seq 1).
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        let mut n = 0;
        while let Ok(ev) = live.try_recv() {
            let prev = last.insert(ev.session_id.clone(), ev.seq).unwrap_or(0);
            assert_eq!(ev.seq, prev + 1, "{} announced out of order", ev.session_id);
            n += 1;
        }
        assert_eq!(n, created + 6);
    }
}

/// A batch that fails as a whole (here: the intervals table is gone, so the pause cannot be
/// billed) is rolled back and retried one event at a time: the other sessions' events are
/// stored, the pause alone fails, nothing is half-written.
async fn a_failed_batch_is_appended_one_by_one(engine: Engine) {
    let Some(db) = TestDb::new(engine).await else {
        return;
    };
    let store = open(&db, Hub::new(16)).await;
    let acc = seed(&store).await;
    for i in 0..3 {
        run(
            &store,
            &acc,
            &append(&format!("s{i}"), EventKind::Started, "start", 1),
        )
        .await
        .unwrap();
    }
    let before = store.commit_stats();
    let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
    sqlx::query(sqlx::AssertSqlSafe(rename("active_intervals", "gone")))
        .execute(&store.db().write)
        .await
        .unwrap();

    let batch = [
        append("s0", EventKind::Paused, "pause", 120),
        append("s1", EventKind::Heartbeat, "hb", 60),
        append("s2", EventKind::Heartbeat, "hb", 60),
    ];
    let results = join_all(batch.iter().map(|a| run(&store, &acc, a))).await;
    sqlx::query(sqlx::AssertSqlSafe(rename("gone", "active_intervals")))
        .execute(&store.db().write)
        .await
        .unwrap();

    let after = store.commit_stats();
    assert_eq!(after.fallbacks - before.fallbacks, 1);
    assert!(
        matches!(results[0], Err(StoreError::Db(_))),
        "{:?}",
        answer(&results[0])
    );
    for r in &results[1..] {
        let a = r.as_ref().expect("heartbeat stored on its own");
        assert_eq!((a.event.seq, a.created), (3, true));
    }
    let s0 = store
        .get_session(&acc[0], "s0", T / 1000 + 130)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s0.state.as_str(), s0.last_seq), ("running", 2), "{s0:?}");
    // And the pause goes through once the table is back.
    let a = run(&store, &acc, &batch[0]).await.unwrap();
    assert_eq!((a.event.seq, a.session.state.as_str()), (3, "paused"));
}

macro_rules! on_both {
    ($($name:ident),*) => {$(
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                super::$name(Engine::Sqlite).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(Engine::Postgres).await;
            }
        }
    )*};
}

on_both!(
    batch_matches_one_at_a_time,
    a_failed_batch_is_appended_one_by_one
);
