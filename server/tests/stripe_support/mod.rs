//! A local stand-in for Stripe's `POST /v1/billing/meter_events`, following Stripe's published
//! API for that endpoint: form-encoded bodies (bracket notation for `payload[...]`), secret-key
//! auth (Bearer or Basic), `Idempotency-Key` semantics (same key + same parameters → the saved
//! answer again with `Idempotent-Replayed: true`; same key + different parameters → 400
//! `idempotency_error`; results saved only when the endpoint ran), `identifier` uniqueness, the
//! 35-day / 5-minute timestamp window, `Stripe-Version` format, and Stripe's error shape
//! `{"error": {"type", "code", "message", "param"}}` with `Request-Id` and `Stripe-Should-Retry`
//! headers. Failures can be injected ahead of the real handling.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// An injected failure, used for the next request(s) before any validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 429 rate limit (Stripe-Should-Retry: true).
    RateLimited,
    /// 500 api_error before anything happened.
    ServerError,
    /// 503 from a proxy in front (HTML body, no Stripe headers).
    ProxyUnavailable,
    /// The event is recorded (and the idempotent result saved), but the answer is lost: 500.
    RecordThenFail,
}

/// One accepted meter event.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub event_name: String,
    pub customer: String,
    pub value: String,
    pub identifier: String,
    pub timestamp: i64,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub idempotency_key: Option<String>,
    pub stripe_version: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
    pub status: u16,
    pub replayed: bool,
}

/// A saved idempotent result: the sorted parameters, the status and the body.
type Saved = (Vec<(String, String)>, u16, String);

#[derive(Debug, Default)]
struct Inner {
    api_key: String,
    meters: Vec<String>,
    events: Vec<Recorded>,
    identifiers: HashMap<String, usize>,
    /// Idempotency key → the saved result.
    saved: HashMap<String, Saved>,
    failures: VecDeque<Failure>,
    seen: Vec<Seen>,
    duplicate_code: bool,
    next_id: u64,
}

/// The fake server, on a loopback port, until dropped.
pub struct FakeStripe {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeStripe {
    /// Starts on a free port; accepts `api_key`; knows a meter for each of `meters`.
    pub async fn start(api_key: &str, meters: &[&str]) -> FakeStripe {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::start_on(listener, api_key, meters)
    }

    /// Starts on a given listener (tests that need Stripe to be unreachable first).
    pub fn start_on(
        listener: tokio::net::TcpListener,
        api_key: &str,
        meters: &[&str],
    ) -> FakeStripe {
        let addr = listener.local_addr().expect("addr");
        let inner = Arc::new(Mutex::new(Inner {
            api_key: api_key.to_string(),
            meters: meters.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/v1/billing/meter_events", post(meter_events))
            .fallback(|| async {
                error(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    None,
                    "Unrecognized request URL.",
                    None,
                )
            })
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeStripe {
            base: format!("http://{addr}"),
            inner,
            task,
        }
    }

    /// Queues failures for the next requests, in order.
    pub fn fail_next(&self, failures: &[Failure]) {
        self.inner
            .lock()
            .unwrap()
            .failures
            .extend(failures.iter().copied());
    }

    /// Whether duplicate-identifier errors carry `code: duplicate_meter_event` (some of Stripe's
    /// answers do, some carry only the message).
    pub fn duplicate_code(&self, on: bool) {
        self.inner.lock().unwrap().duplicate_code = on;
    }

    /// Forgets saved idempotent results (Stripe prunes keys after 24 hours).
    pub fn forget_idempotency_keys(&self) {
        self.inner.lock().unwrap().saved.clear();
    }

    pub fn events(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().events.clone()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }
}

fn error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> Response {
    let mut e = json!({ "type": kind, "message": message });
    if let Some(c) = code {
        e["code"] = json!(c);
    }
    if let Some(p) = param {
        e["param"] = json!(p);
    }
    (status, axum::Json(json!({ "error": e }))).into_response()
}

fn with_headers(mut resp: Response, request_id: &str, should_retry: Option<bool>) -> Response {
    let h = resp.headers_mut();
    h.insert("request-id", HeaderValue::from_str(request_id).unwrap());
    if let Some(r) = should_retry {
        h.insert(
            "stripe-should-retry",
            HeaderValue::from_static(if r { "true" } else { "false" }),
        );
    }
    resp
}

fn api_key(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    if let Some(k) = v.strip_prefix("Bearer ") {
        return Some(k.trim().to_string());
    }
    let b = v.strip_prefix("Basic ")?;
    use base64::Engine as _;
    let dec = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .ok()?;
    let s = String::from_utf8(dec).ok()?;
    Some(s.split(':').next().unwrap_or("").to_string())
}

fn valid_version(v: &str) -> bool {
    let (date, name) = match v.split_once('.') {
        Some((d, n)) => (d, Some(n)),
        None => (v, None),
    };
    let b = date.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && name.is_none_or(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_lowercase()))
}

async fn meter_events(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = inner.lock().unwrap();
    st.next_id += 1;
    let request_id = format!("req_fake{:06}", st.next_id);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut seen = Seen {
        idempotency_key: key.clone(),
        stripe_version: headers
            .get("stripe-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: String::from_utf8_lossy(&body).into_owned(),
        status: 0,
        replayed: false,
    };
    let (resp, status, replayed) = handle(&mut st, &headers, &body, key.as_deref(), &request_id);
    seen.status = status;
    seen.replayed = replayed;
    st.seen.push(seen);
    resp
}

fn handle(
    st: &mut Inner,
    headers: &HeaderMap,
    body: &[u8],
    key: Option<&str>,
    request_id: &str,
) -> (Response, u16, bool) {
    let out = |r: Response, retry: Option<bool>| {
        let status = r.status().as_u16();
        (with_headers(r, request_id, retry), status, false)
    };
    // Injected failures come first (a rate limiter or proxy in front of the API).
    let failure = st.failures.pop_front();
    match failure {
        Some(Failure::RateLimited) => {
            return out(
                error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "invalid_request_error",
                    Some("rate_limit"),
                    "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
                    None,
                ),
                Some(true),
            );
        }
        Some(Failure::ServerError) => {
            return out(
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    None,
                    "An unknown error occurred",
                    None,
                ),
                Some(true),
            );
        }
        Some(Failure::ProxyUnavailable) => {
            let r = (
                StatusCode::SERVICE_UNAVAILABLE,
                [("content-type", "text/html")],
                "<html><body>503 Service Unavailable</body></html>",
            )
                .into_response();
            let status = r.status().as_u16();
            return (r, status, false);
        }
        _ => {}
    }
    // Authentication.
    let Some(given) = api_key(headers) else {
        return out(
            error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
                None,
            ),
            None,
        );
    };
    if given != st.api_key {
        let tail: String = given
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return out(
            error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                Some("api_key_invalid"),
                &format!("Invalid API Key provided: sk_****{tail}"),
                None,
            ),
            None,
        );
    }
    if let Some(v) = headers.get("stripe-version").and_then(|v| v.to_str().ok())
        && !valid_version(v)
    {
        return out(
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                &format!("Invalid Stripe API version: {v}"),
                None,
            ),
            None,
        );
    }
    if let Some(k) = key
        && (k.is_empty() || k.len() > 255)
    {
        return out(
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "Idempotency keys must be between 1 and 255 characters long.",
                None,
            ),
            None,
        );
    }
    // Form body.
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return out(
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "Invalid request: the body must be application/x-www-form-urlencoded.",
                None,
            ),
            None,
        );
    }
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    params.sort();
    // Idempotency: same key → same parameters, or an idempotency_error; saved answers replay.
    if let Some(k) = key
        && let Some((p, status, saved)) = st.saved.get(k)
    {
        if *p != params {
            return out(
                error(
                    StatusCode::BAD_REQUEST,
                    "idempotency_error",
                    None,
                    &format!(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request."
                    ),
                    None,
                ),
                Some(false),
            );
        }
        let mut r = (
            StatusCode::from_u16(*status).unwrap(),
            [("content-type", "application/json")],
            saved.clone(),
        )
            .into_response();
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        let status = r.status().as_u16();
        return (with_headers(r, request_id, None), status, true);
    }
    // Validation.
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (k, _) in &params {
        *names.entry(k.as_str()).or_default() += 1;
    }
    for (k, _) in &params {
        let known = matches!(k.as_str(), "event_name" | "identifier" | "timestamp")
            || (k.starts_with("payload[") && k.ends_with(']') && k.len() > 9)
            || k.starts_with("expand[");
        if !known {
            return out(
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("parameter_unknown"),
                    &format!("Received unknown parameter: {k}"),
                    Some(k),
                ),
                None,
            );
        }
        if names[k.as_str()] > 1 && !k.starts_with("expand[") {
            return out(
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("parameter_invalid_string"),
                    &format!("Invalid value for {k}: it was given more than once."),
                    Some(k),
                ),
                None,
            );
        }
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    for required in [
        "event_name",
        "payload[stripe_customer_id]",
        "payload[value]",
    ] {
        if get(required).is_none_or(|v| v.is_empty()) {
            return out(
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("parameter_missing"),
                    &format!("Missing required param: {required}."),
                    Some(required),
                ),
                None,
            );
        }
    }
    let event_name = get("event_name").unwrap();
    if event_name.len() > 100 || !st.meters.contains(&event_name) {
        return out(
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                &format!("No active meter was found that matches the event name {event_name}."),
                Some("event_name"),
            ),
            None,
        );
    }
    let value = get("payload[value]").unwrap();
    if value.parse::<f64>().map(|v| !v.is_finite()).unwrap_or(true) {
        return out(
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                &format!("The value `{value}` for payload[value] is not a number."),
                Some("payload[value]"),
            ),
            None,
        );
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let timestamp = match get("timestamp") {
        None => now,
        Some(t) => match t.parse::<i64>() {
            Ok(t) if t >= now - 35 * 86_400 && t <= now + 300 => t,
            _ => {
                return out(
                    error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        None,
                        "Timestamp must be within the past 35 calendar days or up to 5 minutes in the future.",
                        Some("timestamp"),
                    ),
                    None,
                );
            }
        },
    };
    let identifier = get("identifier").unwrap_or_else(|| format!("gen_{request_id}"));
    if identifier.is_empty() || identifier.len() > 100 {
        return out(
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "The identifier must be 1 to 100 characters.",
                Some("identifier"),
            ),
            None,
        );
    }
    if st.identifiers.contains_key(&identifier) {
        let code = st.duplicate_code.then_some("duplicate_meter_event");
        return out(
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                code,
                &format!("An event already exists with identifier {identifier}."),
                Some("identifier"),
            ),
            Some(false),
        );
    }
    // Record it.
    let customer = get("payload[stripe_customer_id]").unwrap();
    st.identifiers.insert(identifier.clone(), st.events.len());
    st.events.push(Recorded {
        event_name: event_name.clone(),
        customer: customer.clone(),
        value: value.clone(),
        identifier: identifier.clone(),
        timestamp,
    });
    let payload: serde_json::Map<String, Value> = params
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("payload[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_string(), json!(v)))
        })
        .collect();
    let obj = json!({
        "object": "billing.meter_event", "created": now, "event_name": event_name,
        "identifier": identifier, "livemode": false, "payload": payload, "timestamp": timestamp,
    })
    .to_string();
    if let Some(k) = key {
        st.saved
            .insert(k.to_string(), (params.clone(), 200, obj.clone()));
    }
    if failure == Some(Failure::RecordThenFail) {
        return out(
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                None,
                "An unknown error occurred",
                None,
            ),
            Some(true),
        );
    }
    let r = (StatusCode::OK, [("content-type", "application/json")], obj).into_response();
    out(r, None)
}
