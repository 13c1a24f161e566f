//! [`Sandbox`] over Daytona's toolbox: commands through one session each (async command, log
//! WebSocket, exit code afterwards, session delete as cancel), files through `/files`.
//!
//! Exec recipe, per command:
//! 1. `POST /process/session {sessionId}`;
//! 2. stdin, when given, is uploaded to `/tmp/rclaude-stdin-<uuid>` and the wrapper opens and
//!    deletes it before starting the command (the session's input endpoint never delivers an
//!    end-of-file: the daemon keeps the input pipe open, and it appends a newline to each write);
//!    without stdin the command reads `/dev/null`;
//! 3. `POST /process/session/{sid}/exec {command: "bash -c '<wrapper>'", runAsync: true}`;
//! 4. the logs WebSocket (`follow=true`), demultiplexed; the wrapper's start marker gives the pid;
//! 5. after the socket closes, `GET /process/session/{sid}/command/{cid}` for `exitCode`
//!    (retried briefly while absent), then `DELETE /process/session/{sid}`.
//!
//! A timeout or [`Sandbox::kill_process`] deletes the session (SIGTERM, then SIGKILL, to its
//! process group); the exit status is then `-1` / `signal: killed` (or `terminated`).
//! Output is line-granular (the daemon relays lines), and a last line without a newline gets
//! one: use files for byte-exact data.
//!
//! Length: one `Sandbox` implementation over one API (the toolbox): exec, files and PTY share
//! its session and error handling.

use crate::provider::download::DownloadFile;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::Method;
use serde::Deserialize;

use super::api::{Api, Call, chain};
use super::logs::{self, Channel, Demux};
use super::settings::check_path;
use crate::provider::shellwrap::{self, Detected, StartDetector, StdinSource};
use crate::provider::{
    Entry, EntryKind, ExecEvent, ExecRequest, ExecStream, ExitStatus, FileUpload, Progress,
    ProviderError, Sandbox, SandboxError,
};

/// How long to keep asking for an exit code the daemon has not written yet.
const EXIT_CODE_WAIT: Duration = Duration::from_secs(5);
/// After a kill, how long to wait for the log socket to close.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Why a command was stopped by us.
const NOT_KILLED: u8 = 0;
const TERMINATED: u8 = 1;
const KILLED: u8 = 2;

/// A command started by this handle.
#[derive(Clone)]
struct Running {
    session: String,
    killed: Arc<AtomicU8>,
}

/// One Daytona sandbox's toolbox.
#[derive(Clone)]
pub struct DaytonaSandbox {
    api: Api,
    /// `{toolboxProxyUrl}/{sandboxId}`.
    toolbox: String,
    id: String,
    workdir: String,
    running: Arc<Mutex<HashMap<u32, Running>>>,
}

impl std::fmt::Debug for DaytonaSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaytonaSandbox")
            .field("id", &self.id)
            .field("toolbox", &self.toolbox)
            .field("workdir", &self.workdir)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecReply {
    cmd_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommandReply {
    #[serde(default)]
    exit_code: Option<i32>,
}

/// `FileInfo` of the toolbox.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileInfo {
    name: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    mod_time: String,
    #[serde(default)]
    is_dir: bool,
    #[serde(default)]
    permissions: String,
}

impl DaytonaSandbox {
    /// A handle on sandbox `id` whose toolbox proxy is `toolbox_proxy_url`.
    pub fn new(api: Api, toolbox_proxy_url: &str, id: &str, workdir: &str) -> Self {
        DaytonaSandbox {
            api,
            toolbox: format!("{}/{id}", toolbox_proxy_url.trim_end_matches('/')),
            id: id.to_string(),
            workdir: workdir.to_string(),
            running: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A handle on sandbox `id` reached with its preview token (`toolbox_proxy_url` without
    /// the id): how a client of a sandbox that a server manages reaches it, holding no key.
    pub fn with_preview_token(
        toolbox_proxy_url: &str,
        id: &str,
        workdir: &str,
        token: &str,
    ) -> Result<Self, ProviderError> {
        let settings = super::settings::DaytonaSettings::for_preview_token(token);
        Ok(Self::new(
            Api::new(Arc::new(settings))?,
            toolbox_proxy_url,
            id,
            workdir,
        ))
    }

    /// The toolbox base URL of this sandbox.
    pub fn toolbox_url(&self) -> &str {
        &self.toolbox
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.toolbox)
    }

    async fn call(&self, call: Call) -> Result<super::api::Reply, SandboxError> {
        self.api.send(call).await
    }

    async fn delete_session(&self, sid: &str) {
        let r = self
            .call(Call::new(
                Method::DELETE,
                self.url(&format!("/process/session/{sid}")),
            ))
            .await;
        match r {
            Ok(r) if r.status.is_success() || r.status.as_u16() == 404 => {}
            Ok(r) => tracing::debug!(session = sid, "deleting the session: {}", r.message()),
            Err(e) => tracing::debug!(session = sid, "deleting the session: {e}"),
        }
    }

    /// Upload files in one multipart request (`files[i].path`, `files[i].file`).
    async fn bulk_upload(
        &self,
        files: Vec<(String, reqwest::multipart::Part)>,
    ) -> Result<(), SandboxError> {
        let mut form = reqwest::multipart::Form::new();
        let mut paths = Vec::new();
        for (i, (path, part)) in files.into_iter().enumerate() {
            check_path(&path)?;
            form = form
                .text(format!("files[{i}].path"), path.clone())
                .part(format!("files[{i}].file"), part);
            paths.push(path);
        }
        let url = self.url("/files/bulk-upload");
        let resp = self
            .api
            .request(Method::POST, &url)
            .multipart(form)
            .send()
            .await
            .map_err(|e| SandboxError::Unreachable {
                url: url.clone(),
                reason: chain(&e),
            })?;
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        let reply = super::api::Reply {
            status,
            headers: Default::default(),
            body,
            what: "POST /files/bulk-upload".into(),
        };
        let errors = serde_json::from_slice::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("errors").cloned())
            .and_then(|e| e.as_array().cloned())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|s| !s.is_empty());
        Err(match errors {
            Some(msg) => SandboxError::Remote {
                code: status.as_u16().to_string(),
                message: format!("uploading {}: {msg}", paths.join(", ")),
            },
            None => reply.sandbox_error(&paths.join(", ")),
        })
    }

    /// Start `req` in a new session; returns the session id, the command id and the wrapper.
    async fn start(
        &self,
        req: &ExecRequest,
    ) -> Result<(String, String, shellwrap::Wrapper), SandboxError> {
        let sid = format!("rclaude-{}", uuid::Uuid::new_v4().simple());
        let r = self
            .call(
                Call::new(Method::POST, self.url("/process/session"))
                    .json(serde_json::json!({ "sessionId": sid })),
            )
            .await?;
        if !r.status.is_success() {
            return Err(r.sandbox_error("creating a command session"));
        }
        let stdin_path = req
            .stdin
            .as_ref()
            .map(|_| format!("/tmp/rclaude-stdin-{}", uuid::Uuid::new_v4().simple()));
        let started = async {
            let source = match (&req.stdin, &stdin_path) {
                (Some(data), Some(path)) => {
                    let part = reqwest::multipart::Part::bytes(data.to_vec()).file_name("stdin");
                    self.bulk_upload(vec![(path.clone(), part)]).await?;
                    StdinSource::File(path)
                }
                _ => StdinSource::Closed,
            };
            let wrapper = shellwrap::wrap(req, &self.workdir, source)?;
            let r = self
                .call(
                    Call::new(
                        Method::POST,
                        self.url(&format!("/process/session/{sid}/exec")),
                    )
                    .json(serde_json::json!({
                        "command": wrapper.command_line(),
                        "runAsync": true,
                    }))
                    .once(),
                )
                .await?;
            if !r.status.is_success() {
                return Err(r.sandbox_error("starting the command"));
            }
            let reply: ExecReply = r.json()?;
            Ok((reply.cmd_id, wrapper))
        };
        match started.await {
            Ok((cid, wrapper)) => Ok((sid, cid, wrapper)),
            Err(e) => {
                // The command never ran: nothing will delete its stdin file.
                if let Some(path) = &stdin_path {
                    let _ = self.remove(path).await;
                }
                self.delete_session(&sid).await;
                Err(e)
            }
        }
    }

    /// The command's exit code, once the daemon has written it.
    async fn exit_code(&self, sid: &str, cid: &str) -> Result<Option<i32>, SandboxError> {
        let deadline = tokio::time::Instant::now() + EXIT_CODE_WAIT;
        let mut wait = Duration::from_millis(50);
        loop {
            let r = self
                .call(Call::new(
                    Method::GET,
                    self.url(&format!("/process/session/{sid}/command/{cid}")),
                ))
                .await?;
            if r.status.as_u16() == 404 {
                return Ok(None);
            }
            if !r.status.is_success() {
                return Err(r.sandbox_error("reading the exit code"));
            }
            let c: CommandReply = r.json()?;
            if let Some(code) = c.exit_code {
                return Ok(Some(code));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(500));
        }
    }

    async fn run_collect(&self, argv: &[&str]) -> Result<crate::provider::Output, SandboxError> {
        crate::provider::run(self, ExecRequest::argv(argv.iter().copied()).cwd("/")).await
    }
}

/// Read the log socket until the start marker; then hand the rest to a follower task.
async fn follow(
    sb: DaytonaSandbox,
    sid: String,
    cid: String,
    wrapper: shellwrap::Wrapper,
    timeout: Option<Duration>,
) -> Result<ExecStream, SandboxError> {
    let url = logs::ws_url(&sb.url(&format!(
        "/process/session/{sid}/command/{cid}/logs?follow=true"
    )));
    let mut ws = logs::open(&url, &sb.api.ws_headers()).await?;
    let mut demux = Demux::default();
    let mut detector = StartDetector::new(&wrapper.nonce);
    let mut early_err: Vec<u8> = Vec::new();
    let mut pid_output: Option<(u32, Vec<u8>)> = None;
    let mut closed = false;
    while pid_output.is_none() {
        let pieces = match logs::next_frame(&mut ws).await {
            Some(frame) => demux.push(&frame?),
            None => {
                closed = true;
                demux.finish()
            }
        };
        for (ch, data) in pieces {
            match ch {
                Channel::Stderr => early_err.extend(data),
                Channel::Stdout => {
                    if let Some((_, out)) = &mut pid_output {
                        out.extend(data);
                    } else if let Detected::Started { pid, output } = detector.push(&data)? {
                        pid_output = Some((pid, output));
                    }
                }
            }
        }
        if closed {
            break;
        }
    }
    let Some((pid, first_out)) = pid_output else {
        let code = sb.exit_code(&sid, &cid).await.ok().flatten();
        sb.delete_session(&sid).await;
        let mut err = early_err;
        if err.is_empty() {
            err = detector.seen().to_vec();
        }
        return Err(shellwrap::not_started(&wrapper.cwd, &err, code));
    };
    let killed = Arc::new(AtomicU8::new(NOT_KILLED));
    sb.running.lock().expect("running map").insert(
        pid,
        Running {
            session: sid.clone(),
            killed: killed.clone(),
        },
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<ExecEvent, SandboxError>>(64);
    let _ = tx.try_send(Ok(ExecEvent::Started { pid }));
    if !first_out.is_empty() {
        let _ = tx.try_send(Ok(ExecEvent::Stdout(Bytes::from(first_out))));
    }
    if !early_err.is_empty() {
        let _ = tx.try_send(Ok(ExecEvent::Stderr(Bytes::from(early_err))));
    }
    tokio::spawn(async move {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut kill_deadline: Option<tokio::time::Instant> = None;
        let mut consumer_gone = false;
        let mut broken: Option<SandboxError> = None;
        if !closed {
            loop {
                let timer = async {
                    match (deadline, kill_deadline) {
                        (_, Some(k)) => tokio::time::sleep_until(k).await,
                        (Some(d), None) => tokio::time::sleep_until(d).await,
                        (None, None) => std::future::pending().await,
                    }
                };
                tokio::select! {
                    frame = logs::next_frame(&mut ws) => {
                        let pieces = match frame {
                            Some(Ok(f)) => demux.push(&f),
                            Some(Err(e)) => { broken = Some(e); break; }
                            None => break,
                        };
                        for (ch, data) in pieces {
                            let ev = match ch {
                                Channel::Stdout => ExecEvent::Stdout(Bytes::from(data)),
                                Channel::Stderr => ExecEvent::Stderr(Bytes::from(data)),
                            };
                            if tx.send(Ok(ev)).await.is_err() {
                                consumer_gone = true;
                            }
                        }
                        if consumer_gone { break; }
                    }
                    _ = timer => {
                        if kill_deadline.is_some() {
                            // The daemon did not close the log after the kill; stop waiting.
                            break;
                        }
                        killed.store(KILLED, Ordering::SeqCst);
                        sb.delete_session(&sid).await;
                        kill_deadline = Some(tokio::time::Instant::now() + KILL_GRACE);
                    }
                }
            }
        }
        if consumer_gone {
            // Nobody listens any more: leave the command running (like a detached process).
            sb.running.lock().expect("running map").remove(&pid);
            return;
        }
        for (ch, data) in demux.finish() {
            let ev = match ch {
                Channel::Stdout => ExecEvent::Stdout(Bytes::from(data)),
                Channel::Stderr => ExecEvent::Stderr(Bytes::from(data)),
            };
            let _ = tx.send(Ok(ev)).await;
        }
        let how = killed.load(Ordering::SeqCst);
        let result = if how != NOT_KILLED {
            Ok(ExitStatus {
                code: -1,
                status: if how == KILLED {
                    "signal: killed".into()
                } else {
                    "signal: terminated".into()
                },
            })
        } else {
            match sb.exit_code(&sid, &cid).await {
                Ok(Some(code)) => Ok(ExitStatus {
                    code,
                    status: format!("exit status {code}"),
                }),
                Ok(None) => Err(broken.unwrap_or_else(|| {
                    SandboxError::Protocol(
                        "the command's log ended but Daytona reported no exit code".into(),
                    )
                })),
                Err(e) => Err(e),
            }
        };
        sb.running.lock().expect("running map").remove(&pid);
        sb.delete_session(&sid).await;
        let _ = tx.send(result.map(ExecEvent::Exited)).await;
    });
    Ok(Box::pin(tokio_stream_from(rx)))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn entry_from(path: &str, f: FileInfo) -> Entry {
    let digits = f.permissions.trim_start_matches('0');
    let perm = if digits.is_empty() {
        0
    } else {
        u32::from_str_radix(digits, 8).unwrap_or(0)
    };
    Entry {
        name: f.name,
        kind: if f.is_dir {
            EntryKind::Directory
        } else {
            EntryKind::File
        },
        path: path.to_string(),
        size: u64::try_from(f.size).unwrap_or(0),
        mode: perm,
        modified_time: Some(f.mod_time).filter(|t| !t.is_empty()),
        symlink_target: None,
    }
}

#[async_trait]
impl Sandbox for DaytonaSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    fn workdir(&self) -> &str {
        &self.workdir
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecStream, SandboxError> {
        let (sid, cid, wrapper) = self.start(&req).await?;
        match follow(self.clone(), sid.clone(), cid, wrapper, req.timeout).await {
            Ok(s) => Ok(s),
            Err(e) => {
                self.delete_session(&sid).await;
                Err(e)
            }
        }
    }

    async fn kill_process(&self, pid: u32, force: bool) -> Result<(), SandboxError> {
        let running = self.running.lock().expect("running map").get(&pid).cloned();
        if let Some(r) = running {
            r.killed
                .store(if force { KILLED } else { TERMINATED }, Ordering::SeqCst);
            self.delete_session(&r.session).await;
            return Ok(());
        }
        let sig = if force { "KILL" } else { "TERM" };
        let pid_s = pid.to_string();
        let out = self.run_collect(&["kill", "-s", sig, "--", &pid_s]).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(SandboxError::NotFound(format!("process {pid}")))
        }
    }

    async fn write_files(&self, files: Vec<FileUpload>) -> Result<(), SandboxError> {
        if files.is_empty() {
            return Ok(());
        }
        let parts = files
            .into_iter()
            .map(|f| {
                let name = Path::new(&f.path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "file".into());
                (
                    f.path,
                    reqwest::multipart::Part::bytes(f.contents.to_vec()).file_name(name),
                )
            })
            .collect();
        self.bulk_upload(parts).await
    }

    async fn upload(
        &self,
        local: &Path,
        remote_path: &str,
        progress: Option<Progress>,
    ) -> Result<u64, SandboxError> {
        check_path(remote_path)?;
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
        let name = Path::new(remote_path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(body), size)
                .file_name(name)
                .mime_str("application/octet-stream")
                .map_err(|e| SandboxError::Protocol(e.to_string()))?;
        self.bulk_upload(vec![(remote_path.to_string(), part)])
            .await?;
        Ok(size)
    }

    async fn download(
        &self,
        remote_path: &str,
        local: &Path,
        progress: Option<Progress>,
    ) -> Result<u64, SandboxError> {
        check_path(remote_path)?;
        let url = self.url("/files/download");
        let resp = self
            .api
            .request(Method::GET, &url)
            .query(&[("path", remote_path)])
            .send()
            .await
            .map_err(|e| SandboxError::Unreachable {
                url: url.clone(),
                reason: chain(&e),
            })?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.bytes().await.unwrap_or_default();
            return Err(super::api::Reply {
                status,
                headers: Default::default(),
                body,
                what: "GET /files/download".into(),
            }
            .sandbox_error(remote_path));
        }
        let mut out = DownloadFile::create(local, progress)?;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                SandboxError::Protocol(format!(
                    "download of {remote_path} interrupted: {}",
                    chain(&e)
                ))
            })?;
            out.write(&chunk).await?;
        }
        out.finish().await
    }

    async fn read_file(&self, path: &str) -> Result<Bytes, SandboxError> {
        check_path(path)?;
        let url = self.url("/files/download");
        let resp = self
            .api
            .request(Method::GET, &url)
            .query(&[("path", path)])
            .send()
            .await
            .map_err(|e| SandboxError::Unreachable {
                url: url.clone(),
                reason: chain(&e),
            })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| {
            SandboxError::Protocol(format!("reading {path} was interrupted: {}", chain(&e)))
        })?;
        if status.is_success() {
            return Ok(body);
        }
        Err(super::api::Reply {
            status,
            headers: Default::default(),
            body,
            what: "GET /files/download".into(),
        }
        .sandbox_error(path))
    }

    async fn remove(&self, path: &str) -> Result<(), SandboxError> {
        check_path(path)?;
        let r = self
            .call(
                Call::new(Method::DELETE, self.url("/files"))
                    .query("path", path)
                    .query("recursive", "true"),
            )
            .await?;
        match r.status.as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(r.sandbox_error(path)),
        }
    }

    async fn stat(&self, path: &str) -> Result<Option<Entry>, SandboxError> {
        check_path(path)?;
        let r = self
            .call(Call::new(Method::GET, self.url("/files/info")).query("path", path))
            .await?;
        match r.status.as_u16() {
            200 => Ok(Some(entry_from(path, r.json()?))),
            404 => Ok(None),
            _ => Err(r.sandbox_error(path)),
        }
    }

    async fn make_dir(&self, path: &str) -> Result<bool, SandboxError> {
        match self.stat(path).await? {
            Some(e) if e.is_dir() => return Ok(false),
            Some(_) => {
                return Err(SandboxError::AlreadyExists(format!(
                    "{path} exists and is not a directory"
                )));
            }
            None => {}
        }
        let r = self
            .call(
                Call::new(Method::POST, self.url("/files/folder"))
                    .query("path", path)
                    .query("mode", "755"),
            )
            .await?;
        if r.status.is_success() {
            Ok(true)
        } else {
            Err(r.sandbox_error(path))
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), SandboxError> {
        check_path(from)?;
        check_path(to)?;
        let r = self
            .call(
                Call::new(Method::POST, self.url("/files/move"))
                    .query("source", from)
                    .query("destination", to),
            )
            .await?;
        match r.status.as_u16() {
            200..=299 => Ok(()),
            404 => Err(SandboxError::NotFound(from.to_string())),
            // The toolbox refuses to replace an existing destination; rename(2) does.
            409 => {
                let out = self.run_collect(&["mv", "-f", "--", from, to]).await?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(SandboxError::Remote {
                        code: out.status.code.to_string(),
                        message: format!("mv {from} {to}: {}", out.stderr_str().trim()),
                    })
                }
            }
            _ => Err(r.sandbox_error(from)),
        }
    }
}
