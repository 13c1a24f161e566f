//! Metering and billing against hand calculations, with the clock driven by `x-rclaude-now`
//! (the server runs with `--test-clock`): pause/resume cycles across a month boundary, rounding
//! once per line, storage proration, configured prices, and a client that vanishes mid-session.
//!
//! Prices unless said otherwise: $0.10/h = 100000 µ$/h, $5/month storage, 5 min grace.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

fn t(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

fn fmt(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// Posts `kind` at `at`.
async fn at(c: &Client, sid: &str, kind: &str, when: &str) {
    c.event(sid, kind, Some(when)).await;
}

/// Heartbeats every 4 minutes strictly between `from` and `to` (a live client).
async fn heartbeats(c: &Client, sid: &str, from: &str, to: &str) {
    let (mut now, end) = (t(from) + Duration::minutes(4), t(to));
    while now < end {
        c.event(sid, "heartbeat", Some(&fmt(now))).await;
        now += Duration::minutes(4);
    }
}

fn line<'a>(inv: &'a Value, kind: &str, repo: &str) -> &'a Value {
    inv["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == kind && l["repository"] == repo)
        .unwrap_or_else(|| panic!("no {kind} line for {repo} in {inv}"))
}

const APP: &str = "github.com/acme/app";
const LIB: &str = "github.com/acme/lib";

async fn month_boundary_pause_resume(db: TestDb) {
    let tok = create_account(&db, "alice").await;
    let server = Server::start(&db, &[]).await;
    let c = server.client(&tok);

    // Session 1 of APP: runs across midnight Jan 31 → Feb 1, pauses, resumes, three 2-second
    // cycles, stops.
    let s1 = c.new_session(APP, Some("2025-01-31T22:50:00Z")).await;
    at(&c, &s1, "started", "2025-01-31T23:00:00Z").await;
    heartbeats(&c, &s1, "2025-01-31T23:00:00Z", "2025-02-01T00:30:00Z").await;
    at(&c, &s1, "paused", "2025-02-01T00:30:00Z").await; // 5400 s: 3600 Jan + 1800 Feb
    at(&c, &s1, "heartbeat", "2025-02-01T05:00:00Z").await; // paused: free
    at(&c, &s1, "resumed", "2025-02-01T10:00:00Z").await;
    heartbeats(&c, &s1, "2025-02-01T10:00:00Z", "2025-02-01T11:15:07Z").await;
    at(&c, &s1, "paused", "2025-02-01T11:15:07Z").await; // 4507 s
    for (start, end, last) in [
        ("2025-02-01T12:00:00Z", "2025-02-01T12:00:02Z", "paused"),
        ("2025-02-01T12:10:00Z", "2025-02-01T12:10:02Z", "paused"),
        ("2025-02-01T12:20:00Z", "2025-02-01T12:20:02Z", "stopped"),
    ] {
        at(&c, &s1, "resumed", start).await;
        at(&c, &s1, last, end).await; // 2 s each
    }
    // Session 2 of LIB: created Feb 10, never started, never stopped (storage only).
    let _s2 = c.new_session(LIB, Some("2025-02-10T08:00:00Z")).await;

    // Feb invoice while February is still running (Feb 12, 01:00).
    let (s, feb) = c
        .get_at("/v1/invoices/2025-02", "2025-02-12T01:00:00Z")
        .await;
    assert_eq!(s, StatusCode::OK, "{feb}");
    assert_eq!(feb["status"], "open");
    // Active: 1800 + 4507 + 3 × 2 = 6313 s; 6313 × 100000 / 3600 = 175361.11 → 175361.
    // (Rounding each interval would give 50000 + 125194 + 3 × 56 = 175362.)
    let l = line(&feb, "active", APP);
    assert_eq!(
        (l["quantity"].as_i64(), l["unit"].as_str()),
        (Some(6313), Some("second"))
    );
    assert_eq!(l["unit_price_micros"], 100_000);
    assert_eq!(l["price_unit"], "hour");
    assert_eq!(l["amount_micros"], 175_361);
    // Storage APP: Feb 1 only → 5000000 / 28 = 178571.43 → 178571.
    let l = line(&feb, "storage", APP);
    assert_eq!(
        (l["quantity"].as_i64(), l["unit"].as_str()),
        (Some(1), Some("day"))
    );
    assert_eq!(l["amount_micros"], 178_571);
    // Storage LIB so far: Feb 10, 11, 12 → 3 × 5000000 / 28 = 535714.29 → 535714.
    assert_eq!(line(&feb, "storage", LIB)["quantity"], 3);
    assert_eq!(line(&feb, "storage", LIB)["amount_micros"], 535_714);
    assert_eq!(feb["lines"].as_array().unwrap().len(), 3);
    assert_eq!(feb["total_micros"], 175_361 + 178_571 + 535_714);

    // After the month: both invoices are final.
    let now = "2025-03-05T00:00:00Z";
    let (_, jan) = c.get_at("/v1/invoices/2025-01", now).await;
    assert_eq!(jan["status"], "final");
    assert_eq!(line(&jan, "active", APP)["quantity"], 3600);
    assert_eq!(line(&jan, "active", APP)["amount_micros"], 100_000);
    // Storage: Jan 31 → 5000000 / 31 = 161290.32 → 161290.
    assert_eq!(line(&jan, "storage", APP)["quantity"], 1);
    assert_eq!(line(&jan, "storage", APP)["amount_micros"], 161_290);
    assert_eq!(jan["lines"].as_array().unwrap().len(), 2);
    assert_eq!(jan["total_micros"], 261_290);
    let (_, feb) = c.get_at("/v1/invoices/2025-02", now).await;
    // LIB never stopped: Feb 10..=28 → 19 × 5000000 / 28 = 3392857.14 → 3392857.
    assert_eq!(line(&feb, "storage", LIB)["quantity"], 19);
    assert_eq!(line(&feb, "storage", LIB)["amount_micros"], 3_392_857);
    assert_eq!(feb["total_micros"], 175_361 + 178_571 + 3_392_857);
    let (_, dec) = c.get_at("/v1/invoices/2024-12", now).await;
    assert_eq!(dec["lines"].as_array().unwrap().len(), 0);
    assert_eq!(dec["total_micros"], 0);

    // Usage over Jan 31 – Feb 1.
    let (s, u) = c
        .get_at("/v1/usage?from=2025-01-31&to=2025-02-01", now)
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    let repos = u["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 1, "{u}");
    let r = &repos[0];
    assert_eq!(r["repository"], APP);
    assert_eq!(r["active_seconds"], 9913); // 3600 + 6313
    assert_eq!(r["active_cost_micros"], 275_361); // 9913 × 100000 / 3600 = 275361.11
    assert_eq!(r["storage_days"], 2);
    assert_eq!(r["storage_cost_micros"], 161_290 + 178_571);
    assert_eq!(r["cost_micros"], 275_361 + 161_290 + 178_571);
    assert_eq!(u["total_active_seconds"], 9913);
    assert_eq!(u["total_cost_micros"], 615_222);
    let days = u["days"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(days[0]["date"], "2025-01-31");
    assert_eq!(days[0]["active_seconds"], 3600);
    assert_eq!(days[0]["storage_repositories"], 1);
    assert_eq!(days[0]["cost_micros"], 261_290); // 100000 + 161290.32
    assert_eq!(days[1]["date"], "2025-02-01");
    assert_eq!(days[1]["active_seconds"], 6313);
    assert_eq!(days[1]["cost_micros"], 353_933); // 175361.11 + 178571.43 = 353932.54
    assert_eq!(days[1]["repositories"][0]["repository"], APP);

    // The session itself.
    let (_, v) = c.get_at(&format!("/v1/sessions/{s1}"), now).await;
    assert_eq!(v["session"]["state"], "stopped");
    assert_eq!(v["session"]["active_seconds"], 9913);
    assert_eq!(v["session"]["cost_micros"], 275_361);
    assert!(server.terminate().await);

    // Prices come from the server's configuration: $0.36/h and $3.10/month on the same data.
    let server = Server::start(
        &db,
        &[
            "--price-hour-usd",
            "0.36",
            "--price-storage-month-usd",
            "3.10",
        ],
    )
    .await;
    let c = server.client(&tok);
    let (_, jan) = c.get_at("/v1/invoices/2025-01", now).await;
    assert_eq!(line(&jan, "active", APP)["amount_micros"], 360_000);
    assert_eq!(line(&jan, "active", APP)["unit_price_micros"], 360_000);
    assert_eq!(line(&jan, "storage", APP)["amount_micros"], 100_000); // 3100000 / 31
    assert_eq!(jan["total_micros"], 460_000);
    assert!(server.terminate().await);
}

async fn crashed_client_stops_billing(db: TestDb) {
    let tok = create_account(&db, "bob").await;
    let server = Server::start(&db, &[]).await;
    let c = server.client(&tok);
    let sid = c.new_session(APP, Some("2025-03-10T08:55:00Z")).await;
    at(&c, &sid, "started", "2025-03-10T09:00:00Z").await;
    at(&c, &sid, "heartbeat", "2025-03-10T09:04:00Z").await;
    at(&c, &sid, "heartbeat", "2025-03-10T09:08:00Z").await;
    // The laptop crashes: no more events.
    let session = |when: &'static str| {
        let c = c.clone();
        let sid = sid.clone();
        async move { c.get_at(&format!("/v1/sessions/{sid}"), when).await.1["session"].clone() }
    };
    // Within grace the session still accrues.
    assert_eq!(session("2025-03-10T09:10:00Z").await["active_seconds"], 600);
    // Afterwards it is cut at last heartbeat + grace (09:13): 780 s, and stays there.
    let s = session("2025-03-10T15:00:00Z").await;
    assert_eq!(s["state"], "running");
    assert_eq!(s["active_seconds"], 780);
    assert_eq!(s["cost_micros"], 21_667); // 780 × 100000 / 3600 = 21666.67
    assert_eq!(session("2025-03-10T18:00:00Z").await["active_seconds"], 780);
    let (_, inv) = c
        .get_at("/v1/invoices/2025-03", "2025-03-10T18:00:00Z")
        .await;
    assert_eq!(line(&inv, "active", APP)["quantity"], 780);
    // The client comes back at 18:00 and stops two minutes later: the gap is not billed.
    at(&c, &sid, "heartbeat", "2025-03-10T18:00:00Z").await;
    at(&c, &sid, "stopped", "2025-03-10T18:02:00Z").await;
    let (_, inv) = c
        .get_at("/v1/invoices/2025-03", "2025-04-02T00:00:00Z")
        .await;
    assert_eq!(inv["status"], "final");
    assert_eq!(line(&inv, "active", APP)["quantity"], 900);
    assert_eq!(line(&inv, "active", APP)["amount_micros"], 25_000);
    assert_eq!(line(&inv, "storage", APP)["quantity"], 1);
    assert_eq!(line(&inv, "storage", APP)["amount_micros"], 161_290);
    assert_eq!(inv["total_micros"], 186_290);
    let (_, u) = c
        .get_at(
            "/v1/usage?from=2025-03-10&to=2025-03-10",
            "2025-04-02T00:00:00Z",
        )
        .await;
    assert_eq!(u["days"][0]["active_seconds"], 900);
    assert!(server.terminate().await);

    // A shorter configured grace cuts sooner: 1 minute after the last sign of life.
    let carol = create_account(&db, "carol").await;
    let server = Server::start(&db, &["--heartbeat-grace", "1m"]).await;
    let c = server.client(&carol);
    let sid = c.new_session(LIB, Some("2025-05-01T10:00:00Z")).await;
    at(&c, &sid, "started", "2025-05-01T10:00:00Z").await;
    c.event_with(
        &sid,
        "task_started",
        serde_json::json!({"task": "test"}),
        Some("2025-05-01T10:00:30Z"),
    )
    .await;
    let (_, v) = c
        .get_at(&format!("/v1/sessions/{sid}"), "2025-05-01T11:00:00Z")
        .await;
    assert_eq!(v["session"]["active_seconds"], 90);
    assert!(server.terminate().await);
}

both_engines!(month_boundary_pause_resume, crashed_client_stops_billing);
