//! Prometheus metrics (text format) and the per-request log line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Counters and histograms of one server process.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    pub events_appended: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub sessions_created: AtomicU64,
    pub ws_connections: AtomicI64,
    pub ws_messages_sent: AtomicU64,
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        let mut d = self.durations.lock().expect("metrics lock");
        let h = d.entry(route.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// The Prometheus text exposition, with the store's group commit counters.
    pub fn render(&self, commits: crate::storage::CommitStats) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP rclaude_build_info Server version.\n# TYPE rclaude_build_info gauge\nrclaude_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out.push_str("# HELP rclaude_http_requests_total HTTP requests by method, route and status.\n# TYPE rclaude_http_requests_total counter\n");
        for ((m, r, s), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "rclaude_http_requests_total{{method=\"{m}\",route=\"{}\",status=\"{s}\"}} {n}",
                escape(r)
            );
        }
        out.push_str("# HELP rclaude_http_request_duration_seconds HTTP request latency by route.\n# TYPE rclaude_http_request_duration_seconds histogram\n");
        for (r, h) in self.durations.lock().expect("metrics lock").iter() {
            let r = escape(r);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "rclaude_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "rclaude_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}\nrclaude_http_request_duration_seconds_sum{{route=\"{r}\"}} {}\nrclaude_http_request_duration_seconds_count{{route=\"{r}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        let counters = [
            (
                "rclaude_events_appended_total",
                "Session events stored.",
                self.events_appended.load(Ordering::Relaxed),
            ),
            (
                "rclaude_events_duplicate_total",
                "Session events answered from the idempotency key (retries).",
                self.events_duplicate.load(Ordering::Relaxed),
            ),
            (
                "rclaude_event_commits_total",
                "Transactions that stored appended events (group commit: one per batch).",
                commits.commits,
            ),
            (
                "rclaude_event_commit_events_total",
                "Events stored by those transactions.",
                commits.events,
            ),
            (
                "rclaude_event_commit_fallbacks_total",
                "Batches that failed as a whole and were appended one event at a time.",
                commits.fallbacks,
            ),
            (
                "rclaude_sessions_created_total",
                "Sessions created.",
                self.sessions_created.load(Ordering::Relaxed),
            ),
            (
                "rclaude_ws_messages_sent_total",
                "Event messages pushed over WebSockets.",
                self.ws_messages_sent.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP rclaude_ws_connections Open WebSocket connections.\n# TYPE rclaude_ws_connections gauge\nrclaude_ws_connections {}",
            self.ws_connections.load(Ordering::Relaxed)
        );
        out
    }
}

/// Filled by the auth extractor so the request log can name the account.
#[derive(Debug, Clone, Default)]
pub struct AccountSlot(pub std::sync::Arc<Mutex<Option<String>>>);

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Middleware: metrics and one structured log line per request (path only: the query string may
/// carry a token and is never logged).
pub async fn track(
    State(metrics): State<std::sync::Arc<Metrics>>,
    mut req: Request,
    next: Next,
) -> Response {
    let slot = AccountSlot::default();
    req.extensions_mut().insert(slot.clone());
    let start = Instant::now();
    // Known methods only, so a client cannot mint label values.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m,
        _ => "OTHER",
    }
    .to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    // A token pasted into a path by mistake must not reach the log.
    let path = crate::redact::tokens(req.uri().path()).into_owned();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let secs = start.elapsed().as_secs_f64();
    metrics.observe(&method, &route, status, secs);
    let account = slot.0.lock().expect("slot lock").take();
    tracing::info!(
        target: "rclaude_server::http",
        method,
        path,
        route,
        status,
        latency_ms = (secs * 1000.0 * 1000.0).round() / 1000.0,
        account,
        "request"
    );
    resp
}
