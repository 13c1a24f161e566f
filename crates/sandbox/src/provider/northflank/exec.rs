//! Northflank's exec channel: a WebSocket speaking one JSON object per message (the protocol of
//! `@northflank/js-client`). No auth header: the token goes in the first (`init`) message with the
//! command as argv and `shell: "none"`, `encoding: "base64"`, `tty: false`. Then stdin goes up as
//! base64 `payload` messages and a `stdInEnd`; `stdOut`/`stdErr` come down base64-encoded and a
//! `completion` carries the exit code. Client messages are sent as binary frames holding UTF-8
//! JSON (what the reference client sends); server messages are read as text or binary.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use super::api::chain;
use crate::provider::{Progress, SandboxError};

/// Raw bytes per stdin `payload` message (64 KiB once base64-encoded).
pub const STDIN_CHUNK: usize = 48 * 1024;

/// Where a command's stdin comes from.
pub enum Input {
    /// No stdin: nothing is sent (the command must not read it).
    None,
    Bytes(Bytes),
    /// A local file, streamed; `progress` sees the bytes sent so far.
    File {
        path: PathBuf,
        progress: Option<Progress>,
    },
}

/// How a command ended, as Northflank reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub code: Option<i32>,
    /// `Success`, `Failure` or `Unknown`.
    pub status: String,
    pub message: Option<String>,
}

/// One message of a running command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
    Exit(Completion),
}

/// The exec endpoint of one service.
#[derive(Clone)]
pub struct Target {
    /// `ws(s)://…/v1/command-exec/projects/{p}/services/{s}`.
    pub url: String,
    pub token: Arc<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("url", &self.url).finish()
    }
}

impl Target {
    /// The exec URL of service `service` in `project` under the REST base `api_url`.
    pub fn new(api_url: &str, token: &str, project: &str, service: &str) -> Self {
        let base = if let Some(rest) = api_url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = api_url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            api_url.to_string()
        };
        Target {
            url: format!("{base}/v1/command-exec/projects/{project}/services/{service}"),
            token: Arc::new(token.to_string()),
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type Sink = Arc<tokio::sync::Mutex<futures::stream::SplitSink<Ws, Message>>>;

/// A running command's messages; dropping it closes the channel.
pub type Messages = tokio::sync::mpsc::Receiver<Result<Output, SandboxError>>;

fn frame(v: &Value) -> Message {
    Message::Binary(Bytes::from(v.to_string()))
}

fn parse(msg: Message) -> Option<Result<Value, SandboxError>> {
    let bytes = match msg {
        Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
        Message::Binary(b) => b,
        _ => return None,
    };
    Some(serde_json::from_slice(&bytes).map_err(|e| {
        SandboxError::Protocol(format!("Northflank sent an unreadable exec message: {e}"))
    }))
}

fn decode(v: &Value) -> Result<Bytes, SandboxError> {
    let s = v.as_str().unwrap_or("");
    B64.decode(s).map(Bytes::from).map_err(|e| {
        SandboxError::Protocol(format!("Northflank sent output that is not base64: {e}"))
    })
}

/// Start `argv` (no shell) in the service's container.
pub async fn start(
    target: &Target,
    argv: Vec<String>,
    input: Input,
) -> Result<Messages, SandboxError> {
    if argv.is_empty() {
        return Err(SandboxError::InvalidArgument("empty command".into()));
    }
    // Small JSON messages both ways: no Nagle delay.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(target.url.as_str(), None, true)
        .await
        .map_err(|e| match &e {
            tokio_tungstenite::tungstenite::Error::Http(resp) => SandboxError::Remote {
                code: resp.status().as_u16().to_string(),
                message: format!(
                    "Northflank refused the exec connection: {}",
                    resp.body()
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default()
                        .trim()
                ),
            },
            _ => SandboxError::Unreachable {
                url: target.url.clone(),
                reason: chain(&e),
            },
        })?;
    let init = json!({
        "type": "init",
        "data": {
            "auth": { "type": "apiToken", "apiToken": target.token.as_str() },
            "context": {
                "command": argv,
                "shell": "none",
                "encoding": "base64",
                "tty": false,
            }
        }
    });
    ws.send(frame(&init)).await.map_err(|e| {
        SandboxError::Protocol(format!("sending the exec request failed: {}", chain(&e)))
    })?;
    // The first answer says whether the token was accepted and the command started.
    loop {
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                return Err(SandboxError::Protocol(format!(
                    "the exec connection broke before the command started: {}",
                    chain(&e)
                )));
            }
            None => {
                return Err(SandboxError::Protocol(
                    "Northflank closed the exec connection before the command started".into(),
                ));
            }
        };
        if let Message::Close(c) = &msg {
            return Err(SandboxError::Remote {
                code: "exec_closed".into(),
                message: format!(
                    "Northflank closed the exec connection: {}",
                    c.as_ref().map(|c| c.reason.to_string()).unwrap_or_default()
                ),
            });
        }
        let Some(v) = parse(msg) else { continue };
        let v = v?;
        match v["type"].as_str() {
            Some("init") => {
                if v["data"]["auth"].as_str() == Some("successful") {
                    break;
                }
                let m = v["data"]["message"]
                    .as_str()
                    .or_else(|| v["message"].as_str())
                    .unwrap_or("authentication failed");
                return Err(SandboxError::Unauthenticated(format!(
                    "Northflank refused the API token for command execution: {m}"
                )));
            }
            Some("error") => {
                let m = v["data"]["message"].as_str().unwrap_or("unknown error");
                return Err(SandboxError::Remote {
                    code: "exec_error".into(),
                    message: m.to_string(),
                });
            }
            _ => {
                return Err(SandboxError::Protocol(format!(
                    "Northflank's first exec message was not `init`: {v}"
                )));
            }
        }
    }
    let (sink, mut stream) = ws.split();
    let sink: Sink = Arc::new(tokio::sync::Mutex::new(sink));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Output, SandboxError>>(64);

    let writer = {
        let sink = sink.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Err(e) = feed(&sink, input).await {
                let _ = tx.send(Err(e)).await;
                let _ = sink.lock().await.close().await;
            }
        })
    };
    tokio::spawn(async move {
        let mut done = false;
        while let Some(msg) = stream.next().await {
            let msg = match msg {
                Ok(Message::Close(_)) => break,
                Ok(m) => m,
                Err(e) => {
                    let _ = tx
                        .send(Err(SandboxError::Protocol(format!(
                            "the exec connection broke: {}",
                            chain(&e)
                        ))))
                        .await;
                    done = true;
                    break;
                }
            };
            let Some(v) = parse(msg) else { continue };
            let out = match v {
                Err(e) => Err(e),
                Ok(v) => match v["type"].as_str() {
                    Some("stdOut") => decode(&v["data"]).map(Output::Stdout),
                    Some("stdErr") => decode(&v["data"]).map(Output::Stderr),
                    Some("completion") => {
                        let d = &v["data"];
                        Ok(Output::Exit(Completion {
                            code: d["exitCode"].as_i64().map(|c| c as i32),
                            status: d["status"].as_str().unwrap_or("Unknown").to_string(),
                            message: d["message"].as_str().map(str::to_string),
                        }))
                    }
                    Some("error") => Err(SandboxError::Remote {
                        code: "exec_error".into(),
                        message: v["data"]["message"]
                            .as_str()
                            .unwrap_or("unknown error")
                            .to_string(),
                    }),
                    _ => continue,
                },
            };
            let last = matches!(out, Ok(Output::Exit(_)) | Err(_));
            if tx.send(out).await.is_err() || last {
                done = true;
                break;
            }
        }
        if !done {
            let _ = tx
                .send(Err(SandboxError::Protocol(
                    "Northflank closed the exec connection before the command completed".into(),
                )))
                .await;
        }
        writer.abort();
        let _ = sink.lock().await.close().await;
    });
    Ok(rx)
}

/// Send stdin as base64 payloads, then `stdInEnd`.
async fn feed(sink: &Sink, input: Input) -> Result<(), SandboxError> {
    let send = |v: Value| async move {
        sink.lock()
            .await
            .send(frame(&v))
            .await
            .map_err(|e| SandboxError::Protocol(format!("sending stdin failed: {}", chain(&e))))
    };
    match input {
        // Nothing to send: the commands rclaude runs without stdin never read it (the wrapper
        // points stdin at /dev/null). Sending `stdInEnd` anyway could reach a server that has
        // already finished a fast command and closed, which then resets the connection.
        Input::None => return Ok(()),
        Input::Bytes(b) => {
            for chunk in b.chunks(STDIN_CHUNK) {
                send(json!({ "type": "payload", "data": B64.encode(chunk) })).await?;
            }
        }
        Input::File { path, progress } => {
            let mut f = tokio::fs::File::open(&path)
                .await
                .map_err(|e| SandboxError::io(format!("cannot open {}", path.display()), e))?;
            let mut buf = vec![0u8; STDIN_CHUNK];
            let mut sent = 0u64;
            loop {
                let n = read_full(&mut f, &mut buf)
                    .await
                    .map_err(|e| SandboxError::io(format!("cannot read {}", path.display()), e))?;
                if n == 0 {
                    break;
                }
                send(json!({ "type": "payload", "data": B64.encode(&buf[..n]) })).await?;
                sent += n as u64;
                if let Some(p) = &progress {
                    p(sent);
                }
            }
        }
    }
    send(json!({ "type": "stdInEnd" })).await
}

async fn read_full(f: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let m = f.read(&mut buf[n..]).await?;
        if m == 0 {
            break;
        }
        n += m;
    }
    Ok(n)
}

/// Collected output of a command run to completion.
#[derive(Debug, Clone)]
pub struct Collected {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub completion: Completion,
}

impl Collected {
    pub fn code(&self) -> i32 {
        self.completion.code.unwrap_or(-1)
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Run `argv` to completion and collect its output.
pub async fn collect(
    target: &Target,
    argv: Vec<String>,
    input: Input,
) -> Result<Collected, SandboxError> {
    let mut rx = start(target, argv, input).await?;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Some(msg) = rx.recv().await {
        match msg? {
            Output::Stdout(b) => stdout.extend_from_slice(&b),
            Output::Stderr(b) => stderr.extend_from_slice(&b),
            Output::Exit(completion) => {
                return Ok(Collected {
                    stdout,
                    stderr,
                    completion,
                });
            }
        }
    }
    Err(SandboxError::Protocol(
        "the exec channel ended without a completion".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_urls() {
        let t = Target::new("https://api.northflank.com", "tok", "proj", "svc");
        assert_eq!(
            t.url,
            "wss://api.northflank.com/v1/command-exec/projects/proj/services/svc"
        );
        let t = Target::new("http://127.0.0.1:9", "tok", "p", "s");
        assert_eq!(
            t.url,
            "ws://127.0.0.1:9/v1/command-exec/projects/p/services/s"
        );
        assert!(!format!("{t:?}").contains("tok"));
    }
}
