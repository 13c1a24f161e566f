//! HTTP client for rclaude-server's `/v1` API.

use std::time::Duration;

use serde_json::{Value, json};

use super::Credentials;

/// Errors talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot reach the rclaude server at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("the rclaude server rejected the token: {0}")]
    Unauthorized(String),
    #[error("not found on the rclaude server: {0}")]
    NotFound(String),
    #[error("the rclaude server refused the request ({status}, {code}): {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from the rclaude server: {0}")]
    Protocol(String),
}

impl ServerError {
    /// True when retrying later may succeed (network trouble, server errors).
    pub fn is_transient(&self) -> bool {
        match self {
            ServerError::Unreachable { .. } | ServerError::Protocol(_) => true,
            ServerError::Rejected { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// How long a managed-session call may take (the server creates or resumes a sandbox).
const MANAGED_TIMEOUT: Duration = Duration::from_secs(120);

/// The error a non-2xx answer stands for (`value`: its body as JSON, `Null` when it is not).
fn refusal(status: u16, value: &Value, body: &[u8]) -> ServerError {
    let code = value["error"]["code"]
        .as_str()
        .unwrap_or("error")
        .to_string();
    let message = value["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    match status {
        401 | 403 => ServerError::Unauthorized(message),
        404 => ServerError::NotFound(message),
        _ => ServerError::Rejected {
            status,
            code,
            message,
        },
    }
}

/// Pauses between attempts of a call the server could not take (about 6 s in all: long enough
/// for a balancer to notice a dead replica or for one server to restart).
const RETRY_DELAYS: &[Duration] = &[
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(1500),
    Duration::from_millis(2500),
];

/// A failed attempt, and whether sending it again may succeed: the server was not reached, its
/// answer was lost, or a balancer had no replica for it. A request that timed out is not retried:
/// it may still be running there.
struct Failed {
    error: ServerError,
    retry: bool,
}

/// How long a checkpoint upload or download may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3600);

/// A client bound to one server and token.
#[derive(Debug, Clone)]
pub struct ServerClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ServerClient {
    pub fn new(c: &Credentials) -> Result<ServerClient, ServerError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("rclaude/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ServerError::Protocol(e.to_string()))?;
        Ok(ServerClient {
            base: c.server.clone(),
            token: c.token.clone(),
            http,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The token (for the WebSocket handshake).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Send `req`, retrying while the server cannot be reached or a balancer in front of it
    /// answers for it (a replica restarting or killed: another one takes the retry). Every call
    /// sent again is idempotent (creates carry an idempotency key, events theirs, pause, resume
    /// and delete of a session in that state change nothing), so a request the server acted on
    /// before its answer was lost is safe to send again.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, ServerError> {
        let req = req.bearer_auth(&self.token);
        let mut delays = RETRY_DELAYS.iter();
        loop {
            // A streamed body (a checkpoint upload) cannot be cloned: it is sent once.
            let Some(attempt) = req.try_clone() else {
                return self.send_once(req).await.map_err(|f| f.error);
            };
            let failed = match self.send_once(attempt).await {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            match delays.next() {
                Some(d) if failed.retry => {
                    tracing::debug!(error = %failed.error, "retrying a call to the rclaude server");
                    tokio::time::sleep(*d).await;
                }
                _ => return Err(failed.error),
            }
        }
    }

    /// Send `req` once: for what the outbox queues, which keeps a call that failed for the next
    /// command rather than holding this one up while the server is away.
    async fn send_queued(&self, req: reqwest::RequestBuilder) -> Result<Value, ServerError> {
        self.send_once(req.bearer_auth(&self.token))
            .await
            .map_err(|f| f.error)
    }

    async fn send_once(&self, req: reqwest::RequestBuilder) -> Result<Value, Failed> {
        let lost = |e: reqwest::Error| Failed {
            // A connection never made is safe to retry; a request that timed out may still run.
            retry: e.is_connect() || !e.is_timeout(),
            error: ServerError::Unreachable {
                server: self.base.clone(),
                reason: e.to_string(),
            },
        };
        let resp = req.send().await.map_err(lost)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(lost)?;
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        };
        if (200..300).contains(&status) {
            return Ok(value);
        }
        if matches!(status, 502..=504) && value["error"]["code"].as_str().is_none() {
            // Not the server's own JSON error: a proxy or balancer with no replica to send to.
            return Err(Failed {
                retry: true,
                error: ServerError::Unreachable {
                    server: self.base.clone(),
                    reason: format!("HTTP {status} from a proxy in front of it"),
                },
            });
        }
        Err(Failed {
            retry: false,
            error: refusal(status, &value, &body),
        })
    }

    /// `GET /v1/sessions/{id}/checkpoints`: the session's stored checkpoints, oldest first.
    pub async fn list_checkpoints(&self, session: &str) -> Result<Vec<Value>, ServerError> {
        let v = self
            .send(
                self.http
                    .get(format!("{}/v1/sessions/{session}/checkpoints", self.base)),
            )
            .await?;
        v["checkpoints"]
            .as_array()
            .cloned()
            .ok_or_else(|| ServerError::Protocol("no `checkpoints` list".into()))
    }

    /// `POST /v1/sessions/{id}/checkpoints`: upload the bundle at `path` (streamed) with
    /// `meta` (its `sha256` and `size_bytes` must describe the file).
    pub async fn upload_checkpoint(
        &self,
        session: &str,
        meta: &Value,
        path: &std::path::Path,
    ) -> Result<Value, ServerError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ServerError::Protocol(format!("reading {}: {e}", path.display())))?;
        let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let form = reqwest::multipart::Form::new()
            .part(
                "meta",
                reqwest::multipart::Part::text(meta.to_string())
                    .mime_str("application/json")
                    .map_err(|e| ServerError::Protocol(e.to_string()))?,
            )
            .part(
                "bundle",
                reqwest::multipart::Part::stream_with_length(body, len)
                    .file_name("checkpoint.bundle"),
            );
        self.send(
            self.http
                .post(format!("{}/v1/sessions/{session}/checkpoints", self.base))
                .timeout(TRANSFER_TIMEOUT)
                .multipart(form),
        )
        .await
    }

    /// `GET /v1/sessions/{id}/checkpoints/{name}` into `dest`; returns the SHA-256 the server
    /// recorded at upload (`None`: it sent none) and the one of the bytes received.
    pub async fn download_checkpoint(
        &self,
        session: &str,
        name: &str,
        dest: &std::path::Path,
    ) -> Result<(Option<String>, String), ServerError> {
        use sha2::Digest;
        use tokio::io::AsyncWriteExt;
        let unreachable = |e: &dyn std::fmt::Display| ServerError::Unreachable {
            server: self.base.clone(),
            reason: e.to_string(),
        };
        let mut resp = self
            .http
            .get(format!(
                "{}/v1/sessions/{session}/checkpoints/{name}",
                self.base
            ))
            .timeout(TRANSFER_TIMEOUT)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| unreachable(&e))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp.bytes().await.unwrap_or_default();
            let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Err(refusal(status, &value, &body));
        }
        let declared = resp
            .headers()
            .get("x-rclaude-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut out = tokio::fs::File::create(dest)
            .await
            .map_err(|e| ServerError::Protocol(format!("writing {}: {e}", dest.display())))?;
        let mut hash = sha2::Sha256::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable(&e))? {
            hash.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| ServerError::Protocol(format!("writing {}: {e}", dest.display())))?;
        }
        out.flush()
            .await
            .map_err(|e| ServerError::Protocol(format!("writing {}: {e}", dest.display())))?;
        Ok((declared, hex::encode(hash.finalize())))
    }

    /// `GET /v1/me`: who the token belongs to.
    pub async fn me(&self) -> Result<Value, ServerError> {
        self.send(self.http.get(format!("{}/v1/me", self.base)))
            .await
    }

    /// `POST /v1/sessions` (idempotent when `body.id` is set).
    pub async fn create_session(&self, body: &Value) -> Result<Value, ServerError> {
        self.send_queued(
            self.http
                .post(format!("{}/v1/sessions", self.base))
                .json(body),
        )
        .await
    }

    /// `POST /v1/sessions/{id}/events`.
    pub async fn post_event(
        &self,
        session: &str,
        kind: &str,
        key: &str,
        data: &Value,
    ) -> Result<Value, ServerError> {
        let body = json!({ "type": kind, "idempotency_key": key, "data": data });
        self.send_queued(
            self.http
                .post(format!("{}/v1/sessions/{session}/events", self.base))
                .json(&body),
        )
        .await
    }

    /// `GET /v1/sessions/{id}`: the session and its events.
    pub async fn session(&self, session: &str) -> Result<Value, ServerError> {
        self.send(
            self.http
                .get(format!("{}/v1/sessions/{session}", self.base)),
        )
        .await
    }

    /// `POST /v1/sessions` with `"managed": true` and `settings`: the server creates the sandbox. Idempotent
    /// by `key`.
    pub async fn create_managed(
        &self,
        repository: &str,
        name: &str,
        key: &str,
        settings: &ManagedSettings,
    ) -> Result<Value, ServerError> {
        let mut body = json!({ "managed": true, "repository": repository, "name": name });
        if let Some(t) = &settings.template {
            body["template"] = json!(t);
        }
        if settings.cpu.is_some() || settings.memory_mb.is_some() {
            body["resources"] = json!({ "cpu": settings.cpu, "memory_mb": settings.memory_mb });
        }
        if let Some(d) = settings.idle_pause {
            body["idle_pause"] = json!(d.as_secs());
        }
        self.send(
            self.http
                .post(format!("{}/v1/sessions", self.base))
                .header("idempotency-key", key)
                .timeout(MANAGED_TIMEOUT)
                .json(&body),
        )
        .await
    }

    /// `POST /v1/sessions/{id}/pause` or `/resume` (managed sessions).
    pub async fn session_action(&self, session: &str, action: &str) -> Result<Value, ServerError> {
        self.send(
            self.http
                .post(format!("{}/v1/sessions/{session}/{action}", self.base))
                .timeout(MANAGED_TIMEOUT),
        )
        .await
    }

    /// `GET /v1/sessions[?repository=]` (the first page of 200, newest first).
    pub async fn list_sessions(&self, repository: Option<&str>) -> Result<Value, ServerError> {
        let mut req = self
            .http
            .get(format!("{}/v1/sessions", self.base))
            .query(&[("limit", "200")]);
        if let Some(r) = repository {
            req = req.query(&[("repository", r)]);
        }
        self.send(req).await
    }

    /// `DELETE /v1/sessions/{id}` (managed sessions: the server kills the sandbox).
    pub async fn delete_session(&self, session: &str) -> Result<Value, ServerError> {
        self.send(
            self.http
                .delete(format!("{}/v1/sessions/{session}", self.base))
                .timeout(MANAGED_TIMEOUT),
        )
        .await
    }

    /// `GET /v1/usage?from&to` (dates `YYYY-MM-DD`).
    pub async fn usage(&self, from: &str, to: &str) -> Result<Value, ServerError> {
        self.send(
            self.http
                .get(format!("{}/v1/usage", self.base))
                .query(&[("from", from), ("to", to)]),
        )
        .await
    }

    /// `GET /v1/invoices/{YYYY-MM}`.
    pub async fn invoice(&self, month: &str) -> Result<Value, ServerError> {
        self.send(self.http.get(format!("{}/v1/invoices/{month}", self.base)))
            .await
    }

    /// WebSocket URL of a session's live events (or the account's, with `None`).
    pub fn events_url(&self, session: Option<&str>, since_seq: Option<i64>) -> String {
        let ws = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            format!("ws://{}", self.base.trim_start_matches("http://"))
        };
        let path = match session {
            Some(s) => format!("/v1/sessions/{s}/events"),
            None => "/v1/events".to_string(),
        };
        match since_seq {
            Some(n) => format!("{ws}{path}?since_seq={n}"),
            None => format!("{ws}{path}"),
        }
    }
}

/// What a managed session asks of its sandbox (`None`: the server's default).
#[derive(Debug, Clone, Default)]
pub struct ManagedSettings {
    /// The provider's template (image).
    pub template: Option<String>,
    pub cpu: Option<u32>,
    pub memory_mb: Option<u32>,
    /// Pause after this long without activity.
    pub idle_pause: Option<std::time::Duration>,
}
