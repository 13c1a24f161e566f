//! E2B's control-plane REST API: JSON over HTTPS with `X-API-KEY`, the SDK's retry policy (or
//! less of it, for a call that must not be repeated: [`Resend`]), and the wire types of the
//! endpoints rclaude uses.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::settings::E2bSettings;
use crate::provider::retry::is_retryable;
use crate::provider::{ProviderError, SandboxError};

/// `POST /v2/sandboxes` body (NewSandboxV2).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSandbox {
    #[serde(rename = "templateID")]
    pub template_id: String,
    /// Seconds until the sandbox is paused (autoPause) or killed.
    pub timeout: u64,
    pub auto_pause: bool,
    pub metadata: BTreeMap<String, String>,
    pub env_vars: BTreeMap<String, String>,
    /// `false`: no internet access at all (`[network] deny_all`).
    #[serde(
        rename = "allow_internet_access",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_internet_access: Option<bool>,
    /// Egress rules (`[network] allow`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkOptions>,
}

/// `network` of NewSandboxV2: outbound traffic denied to `deny_out` except to `allow_out`;
/// `allow_public_traffic: false` makes its ports answer only requests carrying the sandbox's
/// traffic access token.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_public_traffic: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_out: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny_out: Vec<String>,
}

impl NetworkOptions {
    /// Every IPv4 address, E2B's `ALL_TRAFFIC`.
    pub const ALL_TRAFFIC: &'static str = "0.0.0.0/0";
}

/// `[network]` and whether ports are public as E2B's create options: nothing (open, the
/// default), no internet at all (`deny_all`), or everything denied but the allowed hosts,
/// domains and blocks; `allowPublicTraffic` when `public_ports` says.
pub fn network_options(
    policy: &crate::network::NetworkPolicy,
    public_ports: Option<bool>,
) -> (Option<bool>, Option<NetworkOptions>) {
    use crate::network::NetworkPolicy;
    let (internet, mut options) = match policy {
        NetworkPolicy::Open => (None, NetworkOptions::default()),
        NetworkPolicy::Restricted { allow } if allow.is_empty() => {
            (Some(false), NetworkOptions::default())
        }
        NetworkPolicy::Restricted { allow } => (
            None,
            NetworkOptions {
                allow_out: allow.iter().map(|r| r.as_config()).collect(),
                deny_out: vec![NetworkOptions::ALL_TRAFFIC.to_string()],
                ..NetworkOptions::default()
            },
        ),
    };
    options.allow_public_traffic = public_ports;
    let any = options.allow_public_traffic.is_some() || !options.deny_out.is_empty();
    (internet, any.then_some(options))
}

/// `Sandbox`: what create and connect return.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxHandle {
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    #[serde(default)]
    pub envd_access_token: Option<String>,
    /// Present when the sandbox's ports are not public: requests to them carry it in
    /// `e2b-traffic-access-token`.
    #[serde(default)]
    pub traffic_access_token: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
}

/// `ListedSandbox` / `SandboxDetail` (the detail adds the token and domain).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxDetail {
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    pub started_at: String,
    pub end_at: String,
    pub state: String,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub envd_access_token: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
}

/// `POST /sandboxes/{id}/fork` body.
#[derive(Debug, Clone, Serialize)]
pub struct ForkRequest {
    /// Seconds until each fork is paused (autoPause) or killed.
    pub timeout: u64,
    /// How many forks to make (1..=20).
    pub count: u32,
}

/// One element of the fork response: the new sandbox, or why this one was not made.
#[derive(Debug, Clone, Deserialize)]
pub struct ForkResult {
    #[serde(default)]
    pub sandbox: Option<SandboxHandle>,
    #[serde(default)]
    pub error: Option<ApiErrorObject>,
}

/// E2B's `Error` object (`{"code", "message"}`), as it appears inside a response.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiErrorObject {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
}

/// E2B's error body.
#[derive(Debug, Clone, Deserialize)]
struct ErrorBody {
    message: String,
    #[serde(default)]
    error_code: Option<String>,
}

/// A response after retries: any status.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// Decode a success body.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|e| ProviderError::Api {
            provider: "e2b".into(),
            status: self.status.as_u16(),
            message: format!("unexpected response to {what}: {e}"),
            hint: Some("the E2B API changed or a proxy answered instead; retry, or report it with RCLAUDE_LOG=debug output".into()),
        })
    }

    /// E2B's `message`, or the body text, or the status line.
    pub fn message(&self) -> String {
        if let Ok(e) = serde_json::from_slice::<ErrorBody>(&self.body) {
            return e.message;
        }
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        if text.is_empty() {
            self.status
                .canonical_reason()
                .unwrap_or("error")
                .to_string()
        } else {
            text.chars().take(500).collect()
        }
    }

    /// E2B's machine-readable `error_code`, when present.
    pub fn error_code(&self) -> Option<String> {
        serde_json::from_slice::<ErrorBody>(&self.body)
            .ok()
            .and_then(|e| e.error_code)
    }
}

/// The REST client.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    settings: Arc<E2bSettings>,
}

/// After which failures a call is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resend {
    /// E2B's SDK policy: failures to connect and retryable statuses (429, 502, 503, 504,
    /// `Should-Retry: true`). For reads, idempotent calls, and a create carrying an
    /// idempotency key.
    #[default]
    Retryable,
    /// Only failures to connect: the request never reached the server. For a call that is not
    /// idempotent and has no idempotency key (fork): a 502/504 from a proxy, or a 503, may come
    /// after E2B acted on it, and resending would act twice.
    UnsentOnly,
}

/// One request to send (and maybe resend).
pub struct Call<'a> {
    pub method: Method,
    pub path: String,
    pub query: Vec<(&'a str, String)>,
    pub body: Option<serde_json::Value>,
    pub idempotency_key: Option<String>,
    pub resend: Resend,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Call {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            idempotency_key: None,
            resend: Resend::Retryable,
        }
    }
    pub fn json(mut self, body: impl Serialize) -> Self {
        self.body = Some(serde_json::to_value(body).expect("request bodies serialize"));
        self
    }
    pub fn query(mut self, key: &'a str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }
}

impl Api {
    pub fn new(settings: Arc<E2bSettings>) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(settings.request_timeout)
            .user_agent(concat!("rclaude/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                ProviderError::Config(format!("cannot build the HTTP client for E2B: {e}"))
            })?;
        Ok(Api { http, settings })
    }

    /// Send `call`, retrying connection failures and (unless [`Resend::UnsentOnly`]) retryable
    /// statuses per the policy.
    pub async fn send(&self, call: Call<'_>) -> Result<Reply, ProviderError> {
        let url = format!("{}{}", self.settings.api_url, call.path);
        let policy = self.settings.retry;
        let (mut conn_failures, mut status_retries) = (0u32, 0u32);
        loop {
            let mut rb = self
                .http
                .request(call.method.clone(), &url)
                .header("x-api-key", &self.settings.api_key)
                .header(reqwest::header::ACCEPT, "application/json");
            if !call.query.is_empty() {
                rb = rb.query(&call.query);
            }
            if let Some(body) = &call.body {
                rb = rb
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            if let Some(key) = &call.idempotency_key {
                rb = rb.header("idempotency-key", key);
            }
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) if e.is_connect() && conn_failures < policy.connection_retries => {
                    let wait = policy.backoff(conn_failures);
                    conn_failures += 1;
                    tracing::debug!(%url, attempt = conn_failures, ?wait, "E2B API unreachable; retrying: {}", chain(&e));
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) => {
                    return Err(ProviderError::Sandbox(if e.is_timeout() {
                        SandboxError::Timeout(format!(
                            "E2B API {} {url}: {}",
                            call.method,
                            chain(&e)
                        ))
                    } else {
                        SandboxError::Unreachable {
                            url: url.clone(),
                            reason: format!(
                                "{} (after {} attempt(s); check your network, E2B_DOMAIN or E2B_API_URL)",
                                chain(&e),
                                conn_failures + 1
                            ),
                        }
                    }));
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(|e| {
                ProviderError::Sandbox(SandboxError::Unreachable {
                    url: url.clone(),
                    reason: format!("reading the response failed: {}", chain(&e)),
                })
            })?;
            if call.resend == Resend::Retryable
                && is_retryable(status.as_u16(), &headers)
                && status_retries < policy.status_retries
                && let Some(wait) = policy.wait_for(&headers, status_retries)
            {
                status_retries += 1;
                tracing::debug!(%url, %status, attempt = status_retries, ?wait, "E2B API asked to retry");
                tokio::time::sleep(wait).await;
                continue;
            }
            tracing::debug!(method = %call.method, %url, %status, "E2B API reply");
            return Ok(Reply {
                status,
                headers,
                body,
            });
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}
