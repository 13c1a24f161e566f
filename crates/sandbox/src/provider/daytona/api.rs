//! HTTP to Daytona: the control plane (`DAYTONA_API_URL`) and the toolbox proxy
//! (`{toolboxProxyUrl}/{sandboxId}`), both with the bearer credentials and the SDK version
//! header, and the retry policy of E2B's SDK (connection failures; 429/502/503/504 only for calls
//! that are safe to repeat).

use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::settings::DaytonaSettings;
use crate::provider::retry::is_retryable;
use crate::provider::{ProviderError, SandboxError};

/// Daytona's error body: `{statusCode, message, code?}`; `message` may be a list (validation).
#[derive(Debug, Clone, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

/// A response after retries: any status.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `METHOD path`, for messages.
    pub what: String,
}

impl Reply {
    /// Decode a success body.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, SandboxError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            SandboxError::Protocol(format!(
                "unexpected Daytona response to {}: {e} (the API changed, or a proxy answered)",
                self.what
            ))
        })
    }

    /// Daytona's `message`, or the body text, or the status line.
    pub fn message(&self) -> String {
        if let Ok(e) = serde_json::from_slice::<ErrorBody>(&self.body) {
            match e.message {
                Some(serde_json::Value::String(s)) if !s.is_empty() => return s,
                Some(serde_json::Value::Array(items)) if !items.is_empty() => {
                    return items
                        .iter()
                        .map(|v| {
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                }
                _ => {}
            }
            if let Some(e) = e.error.filter(|e| !e.is_empty()) {
                return e;
            }
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

    /// Daytona's machine-readable `code`, when present.
    pub fn code(&self) -> Option<String> {
        serde_json::from_slice::<ErrorBody>(&self.body)
            .ok()
            .and_then(|e| e.code)
    }

    /// The reply as a sandbox error (toolbox calls).
    pub fn sandbox_error(&self, subject: &str) -> SandboxError {
        let message = self.message();
        match self.status.as_u16() {
            400 | 422 => SandboxError::InvalidArgument(format!("{subject}: {message}")),
            401 | 403 => SandboxError::Unauthenticated(format!(
                "Daytona's toolbox refused {} ({}): {message}",
                self.what, self.status
            )),
            404 => SandboxError::NotFound(subject.to_string()),
            408 => SandboxError::Timeout(format!("{subject}: {message}")),
            409 => SandboxError::AlreadyExists(format!("{subject}: {message}")),
            _ => SandboxError::Remote {
                code: self.status.as_u16().to_string(),
                message: format!("{}: {message}", self.what),
            },
        }
    }
}

/// Whether a call may be sent again after a retryable status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Reads and idempotent changes: retried on 429/502/503/504 and connection failures.
    Safe,
    /// Creates: retried only when the request never left (connection failures) or on 429.
    Once,
}

/// One request.
pub struct Call {
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    pub query: Vec<(String, String)>,
    pub body: Option<serde_json::Value>,
    pub repeat: Repeat,
}

impl Call {
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Call {
            method,
            url: url.into(),
            query: Vec::new(),
            body: None,
            repeat: Repeat::Safe,
        }
    }
    pub fn json(mut self, body: impl serde::Serialize) -> Self {
        self.body = Some(serde_json::to_value(body).expect("request bodies serialize"));
        self
    }
    pub fn query(mut self, key: &str, value: impl Into<String>) -> Self {
        self.query.push((key.to_string(), value.into()));
        self
    }
    pub fn once(mut self) -> Self {
        self.repeat = Repeat::Once;
        self
    }
}

/// The HTTP client shared by the provider and its sandboxes.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    /// For streamed transfers: no overall timeout.
    transfer: reqwest::Client,
    pub settings: Arc<DaytonaSettings>,
}

impl Api {
    pub fn new(settings: Arc<DaytonaSettings>) -> Result<Self, ProviderError> {
        let build = |timeout: Option<std::time::Duration>| {
            let mut b = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .user_agent(concat!("rclaude/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::none());
            if let Some(t) = timeout {
                b = b.timeout(t);
            }
            b.build().map_err(|e| {
                ProviderError::Config(format!("cannot build the HTTP client for Daytona: {e}"))
            })
        };
        Ok(Api {
            http: build(Some(settings.request_timeout))?,
            transfer: build(None)?,
            settings,
        })
    }

    /// A control-plane URL.
    pub fn api_url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.api_url)
    }

    /// A request with the credentials and version header (for streamed bodies and downloads).
    pub fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let mut rb = self.transfer.request(method, url);
        for (k, v) in self.settings.auth_headers() {
            rb = rb.header(k, v);
        }
        rb
    }

    /// The credential headers for a WebSocket handshake.
    pub fn ws_headers(&self) -> Vec<(&'static str, String)> {
        self.settings.auth_headers()
    }

    /// Send `call`, retrying per the policy.
    pub async fn send(&self, call: Call) -> Result<Reply, SandboxError> {
        let policy = self.settings.retry;
        let path = call
            .url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
            .unwrap_or_else(|| call.url.clone());
        let what = format!("{} {path}", call.method);
        let (mut conn_failures, mut status_retries) = (0u32, 0u32);
        loop {
            let mut rb = self
                .http
                .request(call.method.clone(), &call.url)
                .header(reqwest::header::ACCEPT, "application/json");
            for (k, v) in self.settings.auth_headers() {
                rb = rb.header(k, v);
            }
            if !call.query.is_empty() {
                rb = rb.query(&call.query);
            }
            if let Some(body) = &call.body {
                rb = rb
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) if e.is_connect() && conn_failures < policy.connection_retries => {
                    let wait = policy.backoff(conn_failures);
                    conn_failures += 1;
                    tracing::debug!(%what, attempt = conn_failures, ?wait, "Daytona unreachable; retrying: {}", chain(&e));
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) if e.is_timeout() => {
                    return Err(SandboxError::Timeout(format!(
                        "Daytona {what}: {}",
                        chain(&e)
                    )));
                }
                Err(e) => {
                    return Err(SandboxError::Unreachable {
                        url: call.url.clone(),
                        reason: format!(
                            "{} (after {} attempt(s); check your network or DAYTONA_API_URL)",
                            chain(&e),
                            conn_failures + 1
                        ),
                    });
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(|e| SandboxError::Unreachable {
                url: call.url.clone(),
                reason: format!("reading the response failed: {}", chain(&e)),
            })?;
            let may_repeat = match call.repeat {
                Repeat::Safe => is_retryable(status.as_u16(), &headers),
                Repeat::Once => status.as_u16() == 429,
            };
            if may_repeat
                && status_retries < policy.status_retries
                && let Some(wait) = policy.wait_for(&headers, status_retries)
            {
                status_retries += 1;
                tracing::debug!(%what, %status, attempt = status_retries, ?wait, "Daytona asked to retry");
                tokio::time::sleep(wait).await;
                continue;
            }
            tracing::debug!(%what, %status, "Daytona reply");
            return Ok(Reply {
                status,
                headers,
                body,
                what,
            });
        }
    }
}

/// An error and its sources on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
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
