//! The Stripe usage export end to end: the real `rclaude-server` binary with `--stripe-*` flags
//! against the local Stripe stand-in (`stripe_support`), on SQLite and PostgreSQL. Closed active
//! intervals become meter events (split at the month boundary), retried through injected 429 /
//! 500 / lost answers without double billing, only for accounts with a customer id; a refused key
//! keeps events queued; a rejected event is failed, shown by `admin stripe-status`, and queued
//! again by `admin stripe-retry-failed` after the configuration is fixed; an unreachable Stripe
//! only delays events.

mod common;
mod stripe_support;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use rclaude_server::storage::{MeterEventRow, Store};
use stripe_support::{Failure, FakeStripe};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const KEY: &str = "sk_test_exportKey42";
const METER: &str = "rclaude_active_seconds";
const APP: &str = "github.com/acme/app";

fn fmt(s: i64) -> String {
    OffsetDateTime::from_unix_timestamp(s)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

/// A UTC month boundary at least two hours in the past and well inside Stripe's 35-day window.
fn boundary() -> i64 {
    let now = OffsetDateTime::now_utc();
    let first = now.date().replace_day(1).unwrap().midnight().assume_utc();
    let b = if (now - first).whole_hours() >= 2 {
        first
    } else {
        let prev = (first.date() - time::Duration::days(1))
            .replace_day(1)
            .unwrap();
        prev.midnight().assume_utc()
    };
    b.unix_timestamp()
}

fn stripe_flags(base: &str, key: &str, meter: &str) -> Vec<String> {
    [
        "--stripe-api-key",
        key,
        "--stripe-api-base",
        base,
        "--stripe-meter-event",
        meter,
        "--stripe-poll-interval",
        "1s",
        "--stripe-retry-base",
        "1s",
        "--stripe-retry-max",
        "2s",
        "--heartbeat-grace",
        "1d",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn start(db: &TestDb, flags: &[String]) -> Server {
    let f: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(db, &f).await
}

async fn store(db: &TestDb) -> Store {
    let d = rclaude_server::db::open(&db.url, 2).await.expect("open db");
    Store::new(
        d,
        rclaude_server::config::Prices::default(),
        rclaude_server::events::Hub::new(1),
    )
}

async fn account_id(store: &Store, name: &str) -> String {
    store.find_account(name).await.unwrap().id
}

/// Polls `f` every 200 ms until it returns `Some` (panics after 60 s with `what`).
async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn rows_in(store: &Store, account: &str, state: &str, n: usize) -> Vec<MeterEventRow> {
    wait_for(&format!("{n} meter events in state {state}"), || async {
        let rows = store.meter_events(account).await.unwrap();
        (rows.len() == n && rows.iter().all(|r| r.state == state)).then_some(rows)
    })
    .await
}

async fn admin_ok(db: &TestDb, args: &[&str]) -> String {
    let (ok, out, err) = admin(db, args).await;
    assert!(ok, "admin {args:?} failed: {out}\n{err}");
    out
}

/// Alice: one session with intervals [B-1800, B+600) and [B+1200, B+1500). Bob the same, but
/// without a Stripe customer.
async fn usage_across_the_boundary(c: &Client, b: i64) {
    let sid = c.new_session(APP, Some(&fmt(b - 3600))).await;
    c.event(&sid, "started", Some(&fmt(b - 1800))).await;
    c.event(&sid, "paused", Some(&fmt(b + 600))).await;
    c.event(&sid, "resumed", Some(&fmt(b + 1200))).await;
    c.event(&sid, "stopped", Some(&fmt(b + 1500))).await;
}

async fn exports_with_retries_and_no_double_billing(db: TestDb) {
    let fake = FakeStripe::start(KEY, &[METER]).await;
    // The first three calls fail: rate limited, a server error, and a call whose answer is lost
    // after Stripe recorded the event.
    fake.fail_next(&[
        Failure::RateLimited,
        Failure::ServerError,
        Failure::RecordThenFail,
    ]);
    let alice = create_account(&db, "alice").await;
    let bob = create_account(&db, "bob").await;
    let out = admin_ok(&db, &["set-stripe-customer", "alice", "cus_Alice1"]).await;
    assert!(out.contains("cus_Alice1"), "{out}");
    let (ok, _, err) = admin(&db, &["set-stripe-customer", "bob", "not-a-customer"]).await;
    assert!(!ok && err.contains("not a Stripe customer id"), "{err}");

    let server = start(&db, &stripe_flags(&fake.base, KEY, METER)).await;
    let b = boundary();
    usage_across_the_boundary(&server.client(&alice), b).await;
    usage_across_the_boundary(&server.client(&bob), b).await;

    let st = store(&db).await;
    let alice_id = account_id(&st, "alice").await;
    let rows = rows_in(&st, &alice_id, "sent", 3).await;

    // One event per interval per month: 1800 s before the boundary, 600 s and 300 s after.
    let mut by_value: Vec<(i64, i64)> = rows.iter().map(|r| (r.value, r.timestamp_s)).collect();
    by_value.sort();
    assert_eq!(by_value, [(300, b + 1499), (600, b + 599), (1800, b - 1)]);

    // Stripe holds exactly those three, each once, with our ids as identifiers.
    let events = fake.events();
    assert_eq!(events.len(), 3, "{events:?}");
    for r in &rows {
        let e = events
            .iter()
            .find(|e| e.identifier == r.id)
            .unwrap_or_else(|| panic!("no Stripe event for {r:?}"));
        assert_eq!(e.value, r.value.to_string());
        assert_eq!(e.customer, "cus_Alice1");
        assert_eq!(e.event_name, METER);
        assert_eq!(e.timestamp, r.timestamp_s);
    }
    // Every retry repeated the same request under the same key.
    let mut bodies: HashMap<String, Vec<String>> = HashMap::new();
    for s in fake.seen() {
        let k = s
            .idempotency_key
            .clone()
            .expect("an idempotency key on every call");
        assert!(rows.iter().any(|r| r.id == k), "unknown key {k}");
        assert_eq!(
            s.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        bodies.entry(k).or_default().push(s.body);
    }
    assert_eq!(
        bodies.values().map(Vec::len).sum::<usize>(),
        6,
        "3 events + 3 failed calls"
    );
    for (k, bs) in &bodies {
        assert!(
            bs.iter().all(|x| x == &bs[0]),
            "{k} sent different bodies: {bs:?}"
        );
    }
    assert!(
        fake.seen().iter().any(|s| s.replayed),
        "the lost answer was replayed"
    );
    assert!(rows.iter().any(|r| r.attempts > 1));

    // Bob has no customer: nothing of his was queued.
    let bob_id = account_id(&st, "bob").await;
    assert!(st.meter_events(&bob_id).await.unwrap().is_empty());

    let status = admin_ok(&db, &["stripe-status"]).await;
    for line in [
        "pending   0",
        "sent      3",
        "failed    0",
        "unqueued  0",
        "oldest pending: none",
    ] {
        assert!(status.contains(line), "{line:?} missing in:\n{status}");
    }
    let log = server.log_text();
    assert!(!log.contains(KEY), "the Stripe key leaked into the log");
    assert!(server.terminate().await);

    // A restart sends nothing again.
    let before = fake.seen().len();
    let server = start(&db, &stripe_flags(&fake.base, KEY, METER)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(fake.seen().len(), before);
    assert!(server.terminate().await);
}

both_engines!(exports_with_retries_and_no_double_billing);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_key_rejected_event_and_unreachable_stripe() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let alice = create_account(&db, "alice").await;
    admin_ok(&db, &["set-stripe-customer", "alice", "cus_Alice1"]).await;
    let st = store(&db).await;
    let alice_id = account_id(&st, "alice").await;
    let b = boundary();

    // 1. Stripe is not there yet: events wait, with the connection error noted.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let base = format!("http://{addr}");
    let server = start(&db, &stripe_flags(&base, KEY, METER)).await;
    let c = server.client(&alice);
    let sid = c.new_session(APP, Some(&fmt(b + 60))).await;
    c.event(&sid, "started", Some(&fmt(b + 120))).await;
    c.event(&sid, "paused", Some(&fmt(b + 180))).await;
    wait_for("a connection error on the queued event", || async {
        let rows = st.meter_events(&alice_id).await.unwrap();
        rows.first()
            .filter(|r| {
                r.state == "pending"
                    && r.last_error
                        .as_deref()
                        .is_some_and(|e| e.contains("cannot reach Stripe"))
            })
            .cloned()
    })
    .await;
    let status = admin_ok(&db, &["stripe-status"]).await;
    assert!(status.contains("pending   1"), "{status}");
    assert!(status.contains("cannot reach Stripe"), "{status}");

    // Stripe comes up on that address: the event goes out.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let fake = FakeStripe::start_on(listener, KEY, &[METER]);
    let rows = rows_in(&st, &alice_id, "sent", 1).await;
    assert_eq!(rows[0].value, 60);
    assert_eq!(fake.events().len(), 1);
    assert!(server.terminate().await);

    // 2. A wrong key: nothing is sent and nothing is lost.
    let server = start(&db, &stripe_flags(&fake.base, "sk_test_wrongKey", METER)).await;
    let c = server.client(&alice);
    c.event(&sid, "resumed", Some(&fmt(b + 300))).await;
    c.event(&sid, "paused", Some(&fmt(b + 310))).await;
    wait_for("the refused key to be noted", || async {
        let rows = st.meter_events(&alice_id).await.unwrap();
        rows.iter()
            .find(|r| r.value == 10 && r.last_error.as_deref().is_some_and(|e| e.contains("401")))
            .cloned()
    })
    .await;
    let status = admin_ok(&db, &["stripe-status"]).await;
    assert!(
        status.contains("pending   1") && status.contains("check STRIPE_API_KEY"),
        "{status}"
    );
    assert!(!status.contains("sk_test_wrongKey"), "{status}");
    assert!(server.terminate().await);

    // 3. A meter name Stripe does not know. The queued event keeps the request it was queued
    // with (and goes out); new usage is queued under the wrong name and fails.
    let server = start(&db, &stripe_flags(&fake.base, KEY, "no_such_meter")).await;
    let c = server.client(&alice);
    c.event(&sid, "resumed", Some(&fmt(b + 400))).await;
    c.event(&sid, "paused", Some(&fmt(b + 420))).await;
    wait_for("the rejected event to fail", || async {
        let rows = st.meter_events(&alice_id).await.unwrap();
        let ten = rows.iter().any(|r| r.value == 10 && r.state == "sent");
        let twenty = rows.iter().any(|r| r.value == 20 && r.state == "failed");
        (ten && twenty).then_some(())
    })
    .await;
    let status = admin_ok(&db, &["stripe-status"]).await;
    assert!(
        status.contains("failed    1") && status.contains("event_name"),
        "{status}"
    );
    assert!(server.terminate().await);
    assert_eq!(fake.events().len(), 2);

    // Fixed configuration: retry-failed queues it again with the right meter, and it goes out.
    let out = tokio::process::Command::new(BIN)
        .args([
            "--database-url",
            &db.url,
            "admin",
            "stripe-retry-failed",
            "alice",
        ])
        .env("STRIPE_API_KEY", KEY)
        .env("RCLAUDE_STRIPE_METER_EVENT", METER)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("queued 1"), "{text}");
    let server = start(&db, &stripe_flags(&fake.base, KEY, METER)).await;
    let rows = rows_in(&st, &alice_id, "sent", 3).await;
    assert!(rows.iter().all(|r| r.event_name == METER));
    let events = fake.events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].value, "20");
    assert!(server.terminate().await);
}
