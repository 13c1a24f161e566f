//! The local Stripe stand-in behaves like Stripe's published API for meter events (so the export
//! tests mean something), and the server's Stripe client classifies its answers correctly.

mod stripe_support;

use std::time::Duration;

use rclaude_server::config::{Secret, StripeConfig};
use rclaude_server::storage::MeterEventRow;
use rclaude_server::stripe::client::{Outcome, StripeClient};
use serde_json::Value;
use stripe_support::{Failure, FakeStripe};

const KEY: &str = "sk_test_fakeKey123";
const METER: &str = "rclaude_active_seconds";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn post(
    fake: &FakeStripe,
    auth: Option<&str>,
    key: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/billing/meter_events", fake.base))
        .header("content-type", content_type)
        .body(body.to_string());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

fn form(identifier: &str, value: i64) -> String {
    form_at(identifier, value, now() - 60)
}

fn form_at(identifier: &str, value: i64, timestamp: i64) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("event_name", METER)
        .append_pair("payload[stripe_customer_id]", "cus_A1")
        .append_pair("payload[value]", &value.to_string())
        .append_pair("identifier", identifier)
        .append_pair("timestamp", &timestamp.to_string())
        .finish()
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn fake_follows_stripes_api() {
    let fake = FakeStripe::start(KEY, &[METER]).await;
    let bearer = format!("Bearer {KEY}");
    let auth = Some(bearer.as_str());

    // Authentication: missing, wrong, Bearer and Basic.
    let (s, v, _) = post(&fake, None, None, FORM, &form("id-0", 1)).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let (s, v, _) = post(
        &fake,
        Some("Bearer sk_test_wrong"),
        None,
        FORM,
        &form("id-0", 1),
    )
    .await;
    assert_eq!(s, 401);
    assert!(
        !v.to_string().contains("sk_test_wrong"),
        "the key is masked: {v}"
    );
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"))
    );
    let (s, v, h) = post(&fake, Some(&basic), None, FORM, &form("id-basic", 5)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "billing.meter_event");
    assert_eq!(v["payload"]["value"], "5");
    assert!(h.get("request-id").is_some());

    // Bodies: form-encoded only; required and unknown parameters named.
    let (s, v, _) = post(
        &fake,
        auth,
        None,
        "application/json",
        "{\"event_name\":\"x\"}",
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, v, _) = post(&fake, auth, None, FORM, "event_name=rclaude_active_seconds").await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "parameter_missing");
    assert_eq!(v["error"]["param"], "payload[stripe_customer_id]");
    let (s, v, _) = post(
        &fake,
        auth,
        None,
        FORM,
        &format!("{}&colour=red", form("id-1", 1)),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("parameter_unknown"))
    );
    let bad_ts = form_at("id-2", 1, 1000);
    let (s, v, _) = post(&fake, auth, None, FORM, &bad_ts).await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("timestamp")));
    let bad_name = form("id-3", 1).replace(METER, "no_such_meter");
    let (s, v, _) = post(&fake, auth, None, FORM, &bad_name).await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("event_name")));

    // Idempotency: same key + same parameters → replay; different parameters → idempotency_error.
    // (One body for both: `form` stamps the current time, which may tick between the calls.)
    let body = form("id-4", 7);
    let (s, first, _) = post(&fake, auth, Some("key-1"), FORM, &body).await;
    assert_eq!(s, 200);
    let (s, again, h) = post(&fake, auth, Some("key-1"), FORM, &body).await;
    assert_eq!(s, 200);
    assert_eq!(again, first);
    assert_eq!(h.get("idempotent-replayed").unwrap(), "true");
    let (s, v, h) = post(&fake, auth, Some("key-1"), FORM, &form("id-4", 8)).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["type"], "idempotency_error");
    assert_eq!(h.get("stripe-should-retry").unwrap(), "false");

    // Identifier uniqueness (without an idempotency key).
    let (s, v, h) = post(&fake, auth, None, FORM, &form("id-4", 7)).await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already exists with identifier id-4")
    );
    assert_eq!(h.get("stripe-should-retry").unwrap(), "false");

    // Injected failures come before anything else and are not saved as idempotent results.
    fake.fail_next(&[Failure::RateLimited, Failure::ServerError]);
    let (s, v, h) = post(&fake, auth, Some("key-2"), FORM, &form("id-5", 1)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (429, Some("rate_limit")));
    assert_eq!(h.get("stripe-should-retry").unwrap(), "true");
    let (s, v, _) = post(&fake, auth, Some("key-2"), FORM, &form("id-5", 1)).await;
    assert_eq!((s, v["error"]["type"].as_str()), (500, Some("api_error")));
    let (s, _, _) = post(&fake, auth, Some("key-2"), FORM, &form("id-5", 1)).await;
    assert_eq!(s, 200);

    let ids: Vec<String> = fake.events().into_iter().map(|e| e.identifier).collect();
    assert_eq!(ids, ["id-basic", "id-4", "id-5"]);
}

fn row(id: &str, value: i64) -> MeterEventRow {
    MeterEventRow {
        id: id.to_string(),
        source: format!("{id}/2025-01"),
        interval_id: id.to_string(),
        account_id: "acct".into(),
        customer_id: "cus_A1".into(),
        event_name: METER.into(),
        value,
        timestamp_s: now() - 120,
        state: "pending".into(),
        attempts: 0,
        next_attempt_ms: 0,
        last_error: None,
        created_at_ms: 0,
        sent_at_ms: None,
    }
}

fn config(base: &str, key: &str, event: &str) -> StripeConfig {
    StripeConfig {
        api_key: Secret::new(key),
        meter_event_name: event.into(),
        api_base: base.into(),
        api_version: "2024-06-20".into(),
        poll_interval: Duration::from_secs(1),
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn client_classifies_stripes_answers() {
    let fake = FakeStripe::start(KEY, &[METER]).await;
    let client = StripeClient::new(config(&fake.base, KEY, METER)).unwrap();

    let r = row("e-1", 60);
    assert!(matches!(
        client.send(&r).await,
        Outcome::Recorded {
            request_id: Some(_)
        }
    ));
    // A retry of the same event (same key, same body) is replayed, still "recorded".
    assert!(matches!(client.send(&r).await, Outcome::Recorded { .. }));
    let seen = fake.seen();
    assert!(seen[1].replayed);
    assert_eq!(seen[0].body, seen[1].body);
    assert_eq!(seen[0].idempotency_key.as_deref(), Some("e-1"));
    assert_eq!(seen[0].stripe_version.as_deref(), Some("2024-06-20"));
    assert_eq!(seen[0].content_type.as_deref(), Some(FORM));

    // Stripe lost our key (24 h later): the identifier still protects us, in both answer forms.
    fake.forget_idempotency_keys();
    assert!(matches!(client.send(&r).await, Outcome::Duplicate { .. }));
    fake.forget_idempotency_keys();
    fake.duplicate_code(true);
    assert!(matches!(client.send(&r).await, Outcome::Duplicate { .. }));
    assert_eq!(fake.events().len(), 1);

    // Same id, different body (must never happen; Stripe would refuse): rejected.
    fake.duplicate_code(false);
    let seen_before = fake.seen().len();
    let _ = client.send(&row("e-2", 1)).await; // saves key e-2
    let mut other = row("e-2", 2);
    other.timestamp_s = now() - 120;
    match client.send(&other).await {
        Outcome::Rejected { error } => assert!(error.contains("idempotency_error"), "{error}"),
        o => panic!("{o:?}"),
    }
    assert_eq!(fake.seen().len(), seen_before + 2);

    // Retryable answers.
    fake.fail_next(&[
        Failure::RateLimited,
        Failure::ServerError,
        Failure::ProxyUnavailable,
    ]);
    for _ in 0..3 {
        assert!(matches!(
            client.send(&row("e-3", 1)).await,
            Outcome::Retry { .. }
        ));
    }
    assert!(matches!(
        client.send(&row("e-3", 1)).await,
        Outcome::Recorded { .. }
    ));

    // Wrong key, wrong meter.
    let bad_key = StripeClient::new(config(&fake.base, "sk_test_nope", METER)).unwrap();
    assert!(matches!(
        bad_key.send(&row("e-4", 1)).await,
        Outcome::Unauthorized { .. }
    ));
    let mut wrong_meter = row("e-5", 1);
    wrong_meter.event_name = "nope".into();
    match client.send(&wrong_meter).await {
        Outcome::Rejected { error } => assert!(error.contains("event_name"), "{error}"),
        o => panic!("{o:?}"),
    }

    // Nobody listening: a connection error is retried.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let offline = StripeClient::new(config(&base, KEY, METER)).unwrap();
    match offline.send(&row("e-6", 1)).await {
        Outcome::Retry { error, .. } => {
            assert!(error.contains("cannot reach Stripe"), "{error}");
            assert!(!error.contains(KEY), "{error}");
        }
        o => panic!("{o:?}"),
    }
}
