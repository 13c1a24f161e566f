//! HTTP client for the envd protocol (E2B sandboxes and `rclaude agent` alike): Connect-RPC with
//! the JSON codec over HTTP/1.1, plus the `/files` endpoints. Errors map to [`SandboxError`].
//!
//! Length: one client type for every envd endpoint (processes, files, watchers), each method
//! a request/response mapping; splitting it would scatter the shared error mapping.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ACCESS_TOKEN_HEADER;
use super::connect::{
    CONTENT_TYPE_STREAM, CONTENT_TYPE_UNARY, Code, ConnectError, EndStreamMessage, EnvelopeDecoder,
    encode_json,
};
use super::proto::{
    B64, Empty, EntryInfo, EntryResponse, HttpError, ListDirRequest, ListDirResponse, ListResponse,
    MoveRequest, PathRequest, ProcessEvent, ProcessInfo, ProcessInput, ProcessSelector, Pty,
    PtySize, SelectRequest, SendInputRequest, SendSignalRequest, Signal, StartRequest,
    StartResponse, UpdateRequest, WrittenFile,
};
use crate::provider::{Progress, SandboxError};

/// Events of a started or re-attached process; ends after the `end` event (or an error).
pub type ProcessStream = Pin<Box<dyn Stream<Item = Result<ProcessEvent, SandboxError>> + Send>>;

/// A downloaded file's bytes, as they arrive.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, SandboxError>> + Send>>;

/// Keepalive interval asked of the server on process streams, in seconds.
const KEEPALIVE_SECS: &str = "30";

/// Client of one envd endpoint.
#[derive(Clone)]
pub struct EnvdClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    headers: HeaderMap,
}

impl std::fmt::Debug for EnvdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvdClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Map a Connect error to a sandbox error.
pub fn connect_error(e: ConnectError) -> SandboxError {
    match e.code {
        Code::NotFound => SandboxError::NotFound(e.message),
        Code::Unauthenticated => SandboxError::Unauthenticated(e.message),
        Code::InvalidArgument => SandboxError::InvalidArgument(e.message),
        Code::AlreadyExists => SandboxError::AlreadyExists(e.message),
        Code::DeadlineExceeded | Code::Canceled => SandboxError::Timeout(e.message),
        code => SandboxError::Remote {
            code: code.as_str().into(),
            message: e.message,
        },
    }
}

/// Map a plain HTTP error status (envd's `/files` or a proxy in front) to a sandbox error.
pub fn http_error(status: u16, message: String) -> SandboxError {
    match status {
        400 => SandboxError::InvalidArgument(message),
        401 => SandboxError::Unauthenticated(message),
        404 => SandboxError::NotFound(message),
        409 => SandboxError::AlreadyExists(message),
        408 | 504 => SandboxError::Timeout(message),
        _ => SandboxError::Remote {
            code: status.to_string(),
            message,
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
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

impl EnvdClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:49983`). `extra_headers` go on every
    /// request (E2B routing: `E2b-Sandbox-Id`, `E2b-Sandbox-Port`).
    pub fn new(
        base_url: impl Into<String>,
        access_token: Option<String>,
        extra_headers: HeaderMap,
    ) -> Result<Self, SandboxError> {
        let base = base_url.into().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(SandboxError::InvalidArgument(format!(
                "envd URL {base:?} must start with http:// or https://"
            )));
        }
        if let Some(t) = &access_token {
            HeaderValue::from_str(t).map_err(|_| {
                SandboxError::InvalidArgument(
                    "the access token contains characters not allowed in a header".into(),
                )
            })?;
        }
        let mut builder = reqwest::Client::builder()
            .http1_only()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("rclaude/", env!("CARGO_PKG_VERSION")));
        if base.starts_with("http://") {
            // Plain HTTP (the local agent, a forwarded port): no TLS roots to load. Loading the
            // system's (the platform verifier reads every file of /etc/ssl/certs) was about a
            // third of a no-op `rclaude exec`.
            builder = builder.tls_certs_only(Vec::new());
        }
        let http = builder.build().map_err(|e| {
            SandboxError::Protocol(format!("cannot build the HTTP client: {}", error_chain(&e)))
        })?;
        Ok(EnvdClient {
            http,
            base,
            token: access_token,
            headers: extra_headers,
        })
    }

    /// The envd base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The extra headers sent with every request (routing, never secrets), as text.
    pub fn routing_headers(&self) -> std::collections::BTreeMap<String, String> {
        self.headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect()
    }

    /// The access token sent with every request, if any.
    pub fn access_token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, url).headers(self.headers.clone());
        if let Some(t) = &self.token {
            rb = rb.header(HeaderName::from_static(ACCESS_TOKEN_HEADER), t);
        }
        rb
    }

    fn transport(&self, url: &str, e: reqwest::Error) -> SandboxError {
        if e.is_timeout() {
            SandboxError::Timeout(format!("{url}: {}", error_chain(&e)))
        } else {
            SandboxError::Unreachable {
                url: url.to_string(),
                reason: error_chain(&e),
            }
        }
    }

    async fn send(
        &self,
        rb: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, SandboxError> {
        rb.send().await.map_err(|e| self.transport(url, e))
    }

    /// Turn a non-success response into an error, from a Connect or envd JSON body when present.
    async fn failure(resp: reqwest::Response) -> SandboxError {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if let Ok(ce) = serde_json::from_str::<ConnectError>(&text) {
            return connect_error(ce);
        }
        if let Ok(he) = serde_json::from_str::<HttpError>(&text) {
            return http_error(status, he.message);
        }
        let text: String = text.trim().chars().take(300).collect();
        let msg = if text.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {text}")
        };
        if status == 404 {
            // A bare 404 means the endpoint itself is missing (wrong URL, proxy, old agent), not
            // a missing file: callers must not read it as "not found in the sandbox".
            SandboxError::Remote {
                code: Code::Unimplemented.as_str().into(),
                message: msg,
            }
        } else {
            http_error(status, msg)
        }
    }

    async fn unary<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        procedure: &str,
        req: &Req,
    ) -> Result<Resp, SandboxError> {
        let url = self.url(procedure);
        let rb = self
            .request(reqwest::Method::POST, &url)
            .header(CONTENT_TYPE, CONTENT_TYPE_UNARY)
            .header("connect-protocol-version", "1")
            .body(serde_json::to_vec(req).expect("protocol messages serialize"));
        let resp = self.send(rb, &url).await?;
        if !resp.status().is_success() {
            return Err(Self::failure(resp).await);
        }
        let body = resp.bytes().await.map_err(|e| self.transport(&url, e))?;
        serde_json::from_slice(&body)
            .map_err(|e| SandboxError::Protocol(format!("{procedure}: invalid response: {e}")))
    }

    async fn server_stream<Req: Serialize>(
        &self,
        procedure: &str,
        req: &Req,
        timeout: Option<Duration>,
    ) -> Result<ProcessStream, SandboxError> {
        let url = self.url(procedure);
        let mut rb = self
            .request(reqwest::Method::POST, &url)
            .header(CONTENT_TYPE, CONTENT_TYPE_STREAM)
            .header("connect-protocol-version", "1")
            .header("keepalive-ping-interval", KEEPALIVE_SECS)
            .body(encode_json(req));
        if let Some(t) = timeout {
            rb = rb.header("connect-timeout-ms", t.as_millis().max(1).to_string());
        }
        let resp = self.send(rb, &url).await?;
        if !resp.status().is_success() {
            return Err(Self::failure(resp).await);
        }
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if !ct.starts_with(CONTENT_TYPE_STREAM) {
            return Err(SandboxError::Protocol(format!(
                "{procedure}: unexpected content type {ct:?}"
            )));
        }
        Ok(decode_events(resp, procedure.to_string()))
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<(), SandboxError> {
        let url = self.url("/health");
        let resp = self
            .send(self.request(reqwest::Method::GET, &url), &url)
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Self::failure(resp).await)
        }
    }

    /// `POST /rclaude/changes` (rclaude's own agent only): a token for the state of the tree
    /// at `path`; equal tokens mean nothing there changed in between. `None`: it cannot tell.
    pub async fn change_token(&self, path: &str) -> Result<Option<String>, SandboxError> {
        let v = self
            .post_rclaude("/rclaude/changes", &serde_json::json!({ "path": path }))
            .await?;
        Ok(v["token"].as_str().map(str::to_string))
    }

    /// `POST /rclaude/export` (rclaude's own agent only): the export step's answer, or `None`
    /// when the agent declines (the caller runs the script).
    pub async fn export_worktree(
        &self,
        req: &crate::provider::WorktreeExportRequest,
    ) -> Result<Option<String>, SandboxError> {
        self.step("/rclaude/export", req).await
    }

    /// `POST /rclaude/apply` (rclaude's own agent only): the apply step's answer, or `None`
    /// when the agent declines (the caller runs the script).
    pub async fn apply_sync(
        &self,
        req: &crate::provider::ApplySyncRequest,
    ) -> Result<Option<String>, SandboxError> {
        self.step("/rclaude/apply", req).await
    }

    /// `POST /rclaude/query` (rclaude's own agent only): the query step's answer, or `None`
    /// when the agent declines (the caller runs the script).
    pub async fn query_sync(
        &self,
        req: &crate::provider::QuerySyncRequest,
    ) -> Result<Option<String>, SandboxError> {
        self.step("/rclaude/query", req).await
    }

    /// A step done by the agent's step helper: its answer, or `None` when it declined.
    async fn step(
        &self,
        path: &str,
        req: &impl serde::Serialize,
    ) -> Result<Option<String>, SandboxError> {
        let v = self.post_rclaude(path, req).await?;
        if let Some(reason) = v["declined"].as_str() {
            tracing::debug!("the agent declined {path}: {reason}");
        }
        Ok(v["answer"].as_str().map(str::to_string))
    }

    /// POST `body` to one of rclaude's extensions of the protocol; its JSON answer.
    async fn post_rclaude(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<serde_json::Value, SandboxError> {
        let url = self.url(path);
        let resp = self
            .send(self.request(reqwest::Method::POST, &url).json(body), &url)
            .await?;
        if !resp.status().is_success() {
            return Err(Self::failure(resp).await);
        }
        resp.json()
            .await
            .map_err(|e| SandboxError::Protocol(format!("{url}: {e}")))
    }

    /// Start a process; `timeout` (Connect-Timeout-Ms) bounds its lifetime.
    pub async fn start(
        &self,
        req: &StartRequest,
        timeout: Option<Duration>,
    ) -> Result<ProcessStream, SandboxError> {
        self.server_stream("/process.Process/Start", req, timeout)
            .await
    }

    /// Re-attach to a process: start event, live output, end.
    pub async fn connect(&self, process: ProcessSelector) -> Result<ProcessStream, SandboxError> {
        self.server_stream("/process.Process/Connect", &SelectRequest { process }, None)
            .await
    }

    /// Running processes.
    pub async fn list(&self) -> Result<Vec<ProcessInfo>, SandboxError> {
        let r: ListResponse = self.unary("/process.Process/List", &Empty {}).await?;
        Ok(r.processes)
    }

    pub async fn send_signal(
        &self,
        process: ProcessSelector,
        signal: Signal,
    ) -> Result<(), SandboxError> {
        let _: Empty = self
            .unary(
                "/process.Process/SendSignal",
                &SendSignalRequest { process, signal },
            )
            .await?;
        Ok(())
    }

    pub async fn send_input(
        &self,
        process: ProcessSelector,
        input: ProcessInput,
    ) -> Result<(), SandboxError> {
        let _: Empty = self
            .unary(
                "/process.Process/SendInput",
                &SendInputRequest { process, input },
            )
            .await?;
        Ok(())
    }

    /// Write `data` to stdin in chunks of at most 64 KiB.
    pub async fn send_stdin(
        &self,
        process: ProcessSelector,
        data: &[u8],
    ) -> Result<(), SandboxError> {
        for chunk in data.chunks(64 * 1024) {
            self.send_input(
                process.clone(),
                ProcessInput::Stdin(B64(Bytes::copy_from_slice(chunk))),
            )
            .await?;
        }
        Ok(())
    }

    pub async fn close_stdin(&self, process: ProcessSelector) -> Result<(), SandboxError> {
        let _: Empty = self
            .unary("/process.Process/CloseStdin", &SelectRequest { process })
            .await?;
        Ok(())
    }

    /// Resize a PTY.
    pub async fn update_pty(
        &self,
        process: ProcessSelector,
        size: PtySize,
    ) -> Result<(), SandboxError> {
        let _: Empty = self
            .unary(
                "/process.Process/Update",
                &UpdateRequest {
                    process,
                    pty: Some(Pty { size }),
                },
            )
            .await?;
        Ok(())
    }

    pub async fn stat(&self, path: &str) -> Result<EntryInfo, SandboxError> {
        let r: EntryResponse = self
            .unary(
                "/filesystem.Filesystem/Stat",
                &PathRequest { path: path.into() },
            )
            .await?;
        Ok(r.entry)
    }

    /// Entries below `path`, `depth` levels deep (0 means 1).
    pub async fn list_dir(&self, path: &str, depth: u32) -> Result<Vec<EntryInfo>, SandboxError> {
        let r: ListDirResponse = self
            .unary(
                "/filesystem.Filesystem/ListDir",
                &ListDirRequest {
                    path: path.into(),
                    depth,
                },
            )
            .await?;
        Ok(r.entries)
    }

    pub async fn make_dir(&self, path: &str) -> Result<EntryInfo, SandboxError> {
        let r: EntryResponse = self
            .unary(
                "/filesystem.Filesystem/MakeDir",
                &PathRequest { path: path.into() },
            )
            .await?;
        Ok(r.entry)
    }

    pub async fn move_(&self, source: &str, destination: &str) -> Result<EntryInfo, SandboxError> {
        let req = MoveRequest {
            source: source.into(),
            destination: destination.into(),
        };
        let r: EntryResponse = self.unary("/filesystem.Filesystem/Move", &req).await?;
        Ok(r.entry)
    }

    pub async fn remove(&self, path: &str) -> Result<(), SandboxError> {
        let _: Empty = self
            .unary(
                "/filesystem.Filesystem/Remove",
                &PathRequest { path: path.into() },
            )
            .await?;
        Ok(())
    }

    /// Write several files in one multipart request (each written atomically by the server).
    pub async fn write_files(
        &self,
        files: Vec<(String, Bytes)>,
    ) -> Result<Vec<WrittenFile>, SandboxError> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        for (p, _) in &files {
            if p.contains(['"', '\r', '\n']) {
                return Err(SandboxError::InvalidArgument(format!(
                    "path {p:?} contains a quote or line break"
                )));
            }
        }
        let mut form = reqwest::multipart::Form::new().percent_encode_noop();
        for (path, data) in files {
            let len = data.len() as u64;
            let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::from(data), len)
                .file_name(path)
                .mime_str("application/octet-stream")
                .expect("valid mime");
            form = form.part("file", part);
        }
        let url = self.url("/files");
        let resp = self
            .send(
                self.request(reqwest::Method::POST, &url).multipart(form),
                &url,
            )
            .await?;
        self.written(resp, &url).await
    }

    async fn written(
        &self,
        resp: reqwest::Response,
        url: &str,
    ) -> Result<Vec<WrittenFile>, SandboxError> {
        if !resp.status().is_success() {
            return Err(Self::failure(resp).await);
        }
        let body = resp.bytes().await.map_err(|e| self.transport(url, e))?;
        serde_json::from_slice(&body)
            .map_err(|e| SandboxError::Protocol(format!("POST /files: invalid response: {e}")))
    }

    /// Stream a local file to `path` (octet-stream body, never held in memory). Returns bytes sent.
    pub async fn upload_stream(
        &self,
        path: &str,
        local: &Path,
        progress: Option<Progress>,
    ) -> Result<u64, SandboxError> {
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| SandboxError::io(format!("cannot open {}", local.display()), e))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| SandboxError::io(format!("cannot stat {}", local.display()), e))?
            .len();
        let mut sent = 0u64;
        let body =
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |chunk| {
                if let Ok(c) = &chunk {
                    sent += c.len() as u64;
                    if let Some(p) = &progress {
                        p(sent);
                    }
                }
                chunk
            });
        let url = self.url("/files");
        let rb = self
            .request(reqwest::Method::POST, &url)
            .query(&[("path", path)])
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(body));
        let resp = self.send(rb, &url).await?;
        self.written(resp, &url).await?;
        Ok(size)
    }

    /// Stream a file's bytes.
    pub async fn download(&self, path: &str) -> Result<ByteStream, SandboxError> {
        let url = self.url("/files");
        let rb = self
            .request(reqwest::Method::GET, &url)
            .query(&[("path", path)]);
        let resp = self.send(rb, &url).await?;
        if !resp.status().is_success() {
            return Err(Self::failure(resp).await);
        }
        let stream = resp.bytes_stream().map(move |r| {
            r.map_err(|e| {
                SandboxError::Protocol(format!("download interrupted: {}", error_chain(&e)))
            })
        });
        Ok(Box::pin(stream))
    }

    /// Bytes of `path` from `offset` to its end with a `Range` request (empty when `offset` is
    /// at or past the end; a server that ignores `Range` is handled too).
    pub async fn read_from(&self, path: &str, offset: u64) -> Result<Bytes, SandboxError> {
        if offset == 0 {
            return self.read(path).await;
        }
        let url = self.url("/files");
        let rb = self
            .request(reqwest::Method::GET, &url)
            .query(&[("path", path)])
            .header(reqwest::header::RANGE, format!("bytes={offset}-"));
        let resp = self.send(rb, &url).await?;
        let status = resp.status().as_u16();
        if status == 416 {
            return Ok(Bytes::new());
        }
        if !resp.status().is_success() {
            return Err(Self::failure(resp).await);
        }
        let body = resp.bytes().await.map_err(|e| self.transport(&url, e))?;
        if status == 206 {
            return Ok(body);
        }
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(body.len());
        Ok(body.slice(start..))
    }

    /// Read a whole file.
    pub async fn read(&self, path: &str) -> Result<Bytes, SandboxError> {
        let mut s = self.download(path).await?;
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out.freeze())
    }
}

struct DecodeState {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    dec: EnvelopeDecoder,
    done: bool,
    procedure: String,
    url: String,
}

impl DecodeState {
    /// The connection closed before the stream's end: the server (the sandbox's agent, envd)
    /// went away, or the network in between dropped.
    fn cut(&mut self, how: String) -> Result<ProcessEvent, SandboxError> {
        self.done = true;
        Err(SandboxError::Unreachable {
            url: self.url.clone(),
            reason: format!("the connection closed in the middle of the stream ({how})"),
        })
    }
}

/// Decode a server stream of `{event}` messages ending with the end-of-stream frame.
fn decode_events(resp: reqwest::Response, procedure: String) -> ProcessStream {
    let url = resp.url().to_string();
    let st = DecodeState {
        body: Box::pin(resp.bytes_stream()),
        dec: EnvelopeDecoder::new(),
        done: false,
        procedure,
        url,
    };
    let s = futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let fail = |st: &mut DecodeState, msg: String| {
                st.done = true;
                Err(SandboxError::Protocol(format!("{}: {msg}", st.procedure)))
            };
            match st.dec.next_envelope() {
                Err(e) => return Some((fail(&mut st, e.to_string()), st)),
                Ok(Some(env)) if env.is_end() => {
                    st.done = true;
                    return match serde_json::from_slice::<EndStreamMessage>(&env.payload) {
                        Ok(EndStreamMessage { error: None, .. }) => None,
                        Ok(EndStreamMessage { error: Some(e), .. }) => {
                            Some((Err(connect_error(e)), st))
                        }
                        Err(e) => Some((
                            fail(&mut st, format!("invalid end-of-stream message: {e}")),
                            st,
                        )),
                    };
                }
                Ok(Some(env)) => {
                    return match serde_json::from_slice::<StartResponse>(&env.payload) {
                        Ok(r) => Some((Ok(r.event), st)),
                        Err(e) => Some((fail(&mut st, format!("invalid event: {e}")), st)),
                    };
                }
                Ok(None) => match st.body.next().await {
                    Some(Ok(chunk)) => st.dec.push(&chunk),
                    Some(Err(e)) => return Some((st.cut(error_chain(&e)), st)),
                    None => {
                        return Some((st.cut("no end-of-stream message".into()), st));
                    }
                },
            }
        }
    });
    Box::pin(s)
}
