//! The `process.Process` service: start processes (pipes or a PTY), fan their output out to any
//! number of attached streams, take input, signal them, and remember how they ended.
//!
//! Output is delivered losslessly with back-pressure: a reader waits until every attached stream
//! has taken a chunk (a client that disconnects is dropped; with no stream attached output is
//! discarded). A client disconnecting never kills the process.
//!
//! Length: one RPC service; start, connect, input, signal and list share the process table.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::fdio::{self, NbFd};
use super::isolation::Launcher;
use super::leader::{self, Leader};
use super::paths::{Confinement, Follow};
use super::pty;
use super::reaper::{GroupLog, MARKER_VAR};
use super::rpc::{self, RpcResult, err};
use crate::envd::connect::{CONTENT_TYPE_STREAM, CONTENT_TYPE_UNARY, Code, ConnectError};
use crate::envd::proto::{
    B64, DataEvent, Empty, EndEvent, ListResponse, ProcessEvent, ProcessInfo, ProcessInput,
    ProcessSelector, SelectRequest, SendInputRequest, SendSignalRequest, Signal, StartEvent,
    StartRequest, StartResponse, StreamInputEvent, StreamInputRequest, UpdateRequest,
};

/// Largest stdout/stderr chunk per event (as envd).
const STD_CHUNK: usize = 32 * 1024;
/// Largest PTY chunk per event (as envd).
const PTY_CHUNK: usize = 16 * 1024;
/// How long the end of an exited process is kept for late `Connect`s.
const KEEP_ENDED: Duration = Duration::from_secs(30);
/// Per-stream buffer of output events.
const STREAM_BUFFER: usize = 16;
/// Bound on what is drained from a pipe after the process exited (background children may keep
/// writing to an inherited pipe forever).
const MAX_DRAIN_READS: usize = 64;

/// One output of a process: its descriptor, how chunks become events, and the chunk size.
type Output = (Arc<NbFd>, fn(Bytes) -> DataEvent, usize);

/// Where a process's input goes.
enum Input {
    /// `stdin: false`: stdin is /dev/null.
    Closed,
    /// A pipe, until CloseStdin.
    Pipe(tokio::sync::Mutex<Option<NbFd>>),
    /// The PTY master.
    Pty(Arc<NbFd>),
}

#[derive(Default)]
struct Subscribers {
    streams: Vec<mpsc::Sender<DataEvent>>,
    end: Option<EndEvent>,
}

/// One process started by the agent.
pub struct Proc {
    info: ProcessInfo,
    leader: Arc<Leader>,
    started: Instant,
    input: Input,
    subs: Mutex<Subscribers>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.info.pid
    }

    fn end_event(&self) -> Option<EndEvent> {
        self.subs.lock().unwrap().end.clone()
    }

    fn is_running(&self) -> bool {
        self.subs.lock().unwrap().end.is_none()
    }

    /// Attach a stream; after the end, the receiver is already closed.
    fn subscribe(&self) -> mpsc::Receiver<DataEvent> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let mut s = self.subs.lock().unwrap();
        if s.end.is_none() {
            s.streams.push(tx);
        }
        rx
    }

    /// Deliver one output chunk to every attached stream, waiting for each.
    async fn publish(&self, ev: DataEvent) {
        let targets: Vec<_> = self.subs.lock().unwrap().streams.clone();
        let mut dead = false;
        for t in targets {
            dead |= t.send(ev.clone()).await.is_err();
        }
        if dead {
            self.subs.lock().unwrap().streams.retain(|s| !s.is_closed());
        }
    }

    /// Record the end and close every stream (after their buffered output).
    fn finish(&self, end: EndEvent) {
        let mut s = self.subs.lock().unwrap();
        s.end = Some(end);
        s.streams.clear();
    }

    fn signal(&self, sig: libc::c_int) -> RpcResult<()> {
        if !self.is_running() {
            return Err(err(
                Code::NotFound,
                format!("process with pid {} has already exited", self.pid()),
            ));
        }
        match self.leader.signal_group(sig) {
            Ok(true) => Ok(()),
            // Reaped while its output drains: it has exited.
            Ok(false) => Err(err(
                Code::NotFound,
                format!("process with pid {} has already exited", self.pid()),
            )),
            Err(e) => Err(err(
                Code::Internal,
                format!("cannot signal process {}: {e}", self.pid()),
            )),
        }
    }
}

/// The end event for an exit status: `exit status N` / `signal: killed`, code -1 on signals,
/// `error` set (to the status text) whenever the exit was not clean.
pub fn end_event(status: std::process::ExitStatus) -> EndEvent {
    let (exit_code, exited, text) = match (status.code(), status.signal()) {
        (Some(c), _) => (c, true, format!("exit status {c}")),
        (None, Some(s)) => {
            let core = if status.core_dumped() {
                " (core dumped)"
            } else {
                ""
            };
            (
                -1,
                false,
                format!("signal: {}{core}", crate::envd::signals::name(s)),
            )
        }
        (None, None) => (-1, false, "unknown exit status".into()),
    };
    let error = (exit_code != 0).then(|| text.clone());
    EndEvent {
        exit_code,
        exited,
        status: text,
        error,
    }
}

/// All processes of the agent.
pub struct Processes {
    procs: Mutex<HashMap<u32, Arc<Proc>>>,
    /// Every process group started, including those whose leader exited: background children
    /// may live on in them until the agent shuts down.
    groups: Mutex<std::collections::HashSet<u32>>,
    /// The same groups on disk, for the next agent to kill when this one dies (see `reaper`).
    group_log: Option<GroupLog>,
    conf: Arc<Confinement>,
    launcher: Launcher,
    base_env: BTreeMap<String, String>,
    keepalive_default: Duration,
    /// True once the sandbox is ready for commands (its `~/.npmrc` written, when the agent
    /// copies one in); every command waits for it.
    ready: tokio::sync::watch::Receiver<bool>,
}

impl Processes {
    pub fn new(
        conf: Arc<Confinement>,
        launcher: Launcher,
        extra_env: &BTreeMap<String, String>,
        keepalive_default: Duration,
        group_log: Option<GroupLog>,
        ready: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let mut base_env = BTreeMap::new();
        let path = std::env::var("PATH").unwrap_or_else(|_| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        });
        base_env.insert("PATH".into(), path);
        base_env.insert("HOME".into(), conf.home().display().to_string());
        let user = current_user();
        base_env.insert("USER".into(), user.clone());
        base_env.insert("LOGNAME".into(), user);
        base_env.insert("E2B_SANDBOX".into(), "true".into());
        base_env.insert(MARKER_VAR.into(), conf.root().display().to_string());
        base_env.extend(extra_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Processes {
            procs: Mutex::new(HashMap::new()),
            groups: Mutex::new(std::collections::HashSet::new()),
            group_log,
            conf,
            launcher,
            base_env,
            keepalive_default,
            ready,
        }
    }

    /// Kill every process group the agent started, with whatever is left in it, and the
    /// sandbox's PID namespace.
    pub fn kill_all(&self) {
        let leaders: Vec<Arc<Leader>> = self
            .procs
            .lock()
            .unwrap()
            .values()
            .map(|p| p.leader.clone())
            .collect();
        for l in leaders {
            let _ = l.signal_group(libc::SIGKILL);
        }
        let groups: Vec<u32> = self.groups.lock().unwrap().drain().collect();
        for g in groups {
            // A group whose leader was reaped and that emptied may have been reused by someone
            // else's processes: only a group still holding this sandbox's processes is killed.
            if super::reaper::group_is_ours(g, self.conf.root()) {
                let _ = leader::signal_group(g, libc::SIGKILL);
            }
        }
        self.launcher.shutdown();
        if let Some(log) = &self.group_log {
            log.clear();
        }
    }

    /// Remember a new process group (in memory and on disk); forget groups that have emptied.
    fn track_group(&self, pgid: u32) {
        let mut groups = self.groups.lock().unwrap();
        // SAFETY: signal 0 only checks whether the group still has members.
        groups.retain(|g| unsafe { libc::kill(-(*g as libc::pid_t), 0) } == 0);
        groups.insert(pgid);
        if let Some(log) = &self.group_log {
            log.record(pgid, &groups);
        }
    }

    /// Number of processes still running.
    pub fn running(&self) -> usize {
        self.procs
            .lock()
            .unwrap()
            .values()
            .filter(|p| p.is_running())
            .count()
    }

    fn find(&self, sel: &ProcessSelector) -> RpcResult<Arc<Proc>> {
        let procs = self.procs.lock().unwrap();
        let found = match sel {
            ProcessSelector::Pid(pid) => procs.get(pid).cloned(),
            ProcessSelector::Tag(tag) => procs
                .values()
                .filter(|p| p.info.tag.as_deref() == Some(tag.as_str()))
                .max_by_key(|p| (p.is_running(), p.started))
                .cloned(),
        };
        found.ok_or_else(|| match sel {
            ProcessSelector::Pid(pid) => {
                err(Code::NotFound, format!("process with pid {pid} not found"))
            }
            ProcessSelector::Tag(tag) => {
                err(Code::NotFound, format!("process with tag {tag} not found"))
            }
        })
    }

    fn find_running(&self, sel: &ProcessSelector) -> RpcResult<Arc<Proc>> {
        let p = self.find(sel)?;
        if p.is_running() {
            Ok(p)
        } else {
            Err(err(
                Code::NotFound,
                format!("process with pid {} has already exited", p.pid()),
            ))
        }
    }

    /// Spawn a process. The returned receiver is already attached, so no output is missed.
    pub fn spawn(
        self: &Arc<Self>,
        req: StartRequest,
        timeout: Option<Duration>,
    ) -> RpcResult<(Arc<Proc>, mpsc::Receiver<DataEvent>)> {
        let cfg = &req.process;
        if cfg.cmd.is_empty() {
            return Err(err(Code::InvalidArgument, "process.cmd is empty"));
        }
        let cwd = self
            .conf
            .resolve(cfg.cwd.as_deref().unwrap_or(""), Follow::Yes)
            .map_err(|e| err(Code::InvalidArgument, format!("invalid cwd: {e}")))?;
        if !cwd.is_dir() {
            return Err(err(
                Code::InvalidArgument,
                format!("cwd '{}' does not exist", cwd.display()),
            ));
        }
        let pty_pair = match req.pty {
            Some(p) => Some(
                pty::open(p.size)
                    .map_err(|e| err(Code::Internal, format!("cannot open a terminal: {e}")))?,
            ),
            None => None,
        };
        let tty = pty_pair.as_ref().and_then(|(_, slave)| {
            std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).ok()
        });
        let cmd = self
            .launcher
            .command(self.conf.root(), &cwd, &cfg.cmd, &cfg.args, tty.as_deref())
            .map_err(|e| {
                err(
                    Code::Internal,
                    format!("cannot set up the sandbox for the process: {e}"),
                )
            })?;
        if let Some(h) = self.launcher.holder_group() {
            self.track_group(h);
        }
        // A std command: the child is reaped by its `Leader`, not by tokio.
        let mut cmd = cmd.into_std();
        cmd.env_clear().envs(&self.base_env).envs(&cfg.envs);
        if !self.launcher.is_isolated() {
            die_with_agent(&mut cmd);
        }

        let spawn_err = |e: std::io::Error| {
            err(
                Code::InvalidArgument,
                format!(
                    "error starting process '{}': {e}",
                    command_line(&cfg.cmd, &cfg.args)
                ),
            )
        };
        let io_err =
            |e: std::io::Error| err(Code::Internal, format!("cannot set up process I/O: {e}"));

        let mut outputs: Vec<Output> = Vec::new();
        let input;
        let child;
        if let Some((master, slave)) = pty_pair {
            let dup = |fd: &OwnedFd| fd.try_clone().map(Stdio::from).map_err(io_err);
            cmd.stdin(dup(&slave)?)
                .stdout(dup(&slave)?)
                .stderr(dup(&slave)?);
            // SAFETY: child_setup only makes async-signal-safe calls.
            unsafe { cmd.pre_exec(pty::child_setup) };
            child = cmd.spawn().map_err(spawn_err)?;
            drop(cmd);
            drop(slave);
            let master = Arc::new(NbFd::new(master, true).map_err(io_err)?);
            input = Input::Pty(master.clone());
            outputs.push((master, |b| DataEvent::Pty(B64(b)), PTY_CHUNK));
        } else {
            let (out_r, out_w) = fdio::pipe().map_err(io_err)?;
            let (err_r, err_w) = fdio::pipe().map_err(io_err)?;
            cmd.stdout(Stdio::from(out_w))
                .stderr(Stdio::from(err_w))
                .process_group(0);
            let stdin_w = if req.stdin != Some(false) {
                let (in_r, in_w) = fdio::pipe().map_err(io_err)?;
                cmd.stdin(Stdio::from(in_r));
                Some(in_w)
            } else {
                cmd.stdin(Stdio::null());
                None
            };
            child = cmd.spawn().map_err(spawn_err)?;
            drop(cmd);
            input = match stdin_w {
                Some(w) => Input::Pipe(tokio::sync::Mutex::new(Some(
                    NbFd::new(w, false).map_err(io_err)?,
                ))),
                None => Input::Closed,
            };
            outputs.push((
                Arc::new(NbFd::new(out_r, false).map_err(io_err)?),
                |b| DataEvent::Stdout(B64(b)),
                STD_CHUNK,
            ));
            outputs.push((
                Arc::new(NbFd::new(err_r, false).map_err(io_err)?),
                |b| DataEvent::Stderr(B64(b)),
                STD_CHUNK,
            ));
        }
        let leader = Arc::new(Leader::new(child));
        let pid = leader.pid();
        let proc = Arc::new(Proc {
            leader: leader.clone(),
            info: ProcessInfo {
                config: req.process.clone(),
                pid,
                tag: req.tag.clone(),
            },
            started: Instant::now(),
            input,
            subs: Mutex::new(Subscribers::default()),
        });
        let rx = proc.subscribe();
        self.procs.lock().unwrap().insert(pid, proc.clone());
        self.track_group(pid);
        tracing::debug!(pid, cmd = %cfg.cmd, "process started");

        let (exited_tx, exited_rx) = watch::channel(false);
        let readers: Vec<_> = outputs
            .into_iter()
            .map(|(fd, make, chunk)| {
                tokio::spawn(pump_output(
                    proc.clone(),
                    fd,
                    make,
                    chunk,
                    exited_rx.clone(),
                ))
            })
            .collect();
        if let Some(t) = timeout.filter(|t| !t.is_zero()) {
            let mut exited = exited_rx.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(t) => {
                        tracing::debug!(pid, "process timeout elapsed; killing its process group");
                        let _ = leader.signal_group(libc::SIGKILL);
                    }
                    _ = exited.wait_for(|e| *e) => {}
                }
            });
        }
        let table = self.clone();
        let waited = proc.clone();
        tokio::spawn(async move {
            let status = waited.leader.wait().await;
            let _ = exited_tx.send(true);
            for r in readers {
                let _ = r.await;
            }
            if let Input::Pipe(stdin) = &waited.input {
                stdin.lock().await.take();
            }
            let end = match status {
                Ok(s) => end_event(s),
                Err(e) => EndEvent {
                    exit_code: -1,
                    exited: false,
                    status: format!("wait failed: {e}"),
                    error: Some(e.to_string()),
                },
            };
            tracing::debug!(pid, status = %end.status, "process ended");
            if table.launcher.is_isolated() && end.exit_code == 128 + libc::SIGKILL {
                // bubblewrap reports a command killed by SIGKILL as 137: say whether the
                // sandbox's PID namespace went with it (the kernel kills all of it then).
                tracing::info!(
                    pid,
                    cmd = %waited.info.config.cmd,
                    namespace_alive = table.launcher.namespace_alive(),
                    "the command was killed by SIGKILL"
                );
            }
            waited.finish(end);
            tokio::time::sleep(KEEP_ENDED).await;
            let mut procs = table.procs.lock().unwrap();
            if procs.get(&pid).is_some_and(|p| Arc::ptr_eq(p, &waited)) {
                procs.remove(&pid);
            }
        });
        Ok((proc, rx))
    }

    fn keepalive(&self, headers: &HeaderMap) -> Duration {
        headers
            .get("keepalive-ping-interval")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(self.keepalive_default)
    }

    /// Dispatch `/process.Process/<method>`.
    pub async fn handle(self: Arc<Self>, method: &str, headers: HeaderMap, body: Body) -> Response {
        match method {
            "Start" | "Connect" | "StreamInput" if !rpc::is_stream_json(&headers) => {
                return rpc::unsupported_media(CONTENT_TYPE_STREAM, &headers);
            }
            "Start" => return self.start(headers, body).await,
            "Connect" => return self.connect(headers, body).await,
            "StreamInput" => return rpc::stream_single(self.stream_input(body).await),
            "List" | "SendInput" | "SendSignal" | "CloseStdin" | "Update" => {}
            other => return rpc::unknown_method("process.Process", other),
        }
        if !rpc::is_unary_json(&headers) {
            return rpc::unsupported_media(CONTENT_TYPE_UNARY, &headers);
        }
        let body = match rpc::read_body(body, rpc::MAX_REQUEST).await {
            Ok(b) => b,
            Err(e) => return rpc::error_response(&e),
        };
        match method {
            "List" => rpc::unary_response(
                rpc::decode_unary::<Empty>(&headers, &body).map(|_| self.list()),
            ),
            "SendInput" => {
                let r = async {
                    let req: SendInputRequest = rpc::decode_unary(&headers, &body)?;
                    self.send_input(&req.process, req.input).await
                };
                rpc::unary_response(r.await.map(|_| Empty {}))
            }
            "SendSignal" => rpc::unary_response(
                rpc::decode_unary(&headers, &body)
                    .and_then(|r| self.send_signal(r))
                    .map(|_| Empty {}),
            ),
            "CloseStdin" => {
                let r = async {
                    let req: SelectRequest = rpc::decode_unary(&headers, &body)?;
                    self.close_stdin(&req.process).await
                };
                rpc::unary_response(r.await.map(|_| Empty {}))
            }
            _ => rpc::unary_response(
                rpc::decode_unary(&headers, &body)
                    .and_then(|r| self.update(r))
                    .map(|_| Empty {}),
            ),
        }
    }

    async fn start(self: Arc<Self>, headers: HeaderMap, body: Body) -> Response {
        let req: StartRequest = match rpc::decode_stream_request(&headers, body).await {
            Ok(r) => r,
            Err(e) => return rpc::stream_error(e),
        };
        // A closed channel (the preparing task gone) counts as ready: never wait forever.
        if !req.process.envs.contains_key(super::SYNC_STEP_VAR) {
            let _ = self.ready.clone().wait_for(|ready| *ready).await;
        }
        let timeout = match headers
            .get("connect-timeout-ms")
            .map(|v| v.to_str().map(|s| s.trim().parse::<u64>()))
        {
            None => None,
            Some(Ok(Ok(ms))) => Some(Duration::from_millis(ms)),
            Some(_) => {
                return rpc::stream_error(err(
                    Code::InvalidArgument,
                    "invalid Connect-Timeout-Ms header",
                ));
            }
        };
        let (proc, rx) = match self.spawn(req, timeout) {
            Ok(x) => x,
            Err(e) => return rpc::stream_error(e),
        };
        let (sender, resp) = rpc::stream_response();
        tokio::spawn(stream_events(sender, proc, rx, self.keepalive(&headers)));
        resp
    }

    async fn connect(self: Arc<Self>, headers: HeaderMap, body: Body) -> Response {
        let req: SelectRequest = match rpc::decode_stream_request(&headers, body).await {
            Ok(r) => r,
            Err(e) => return rpc::stream_error(e),
        };
        let proc = match self.find(&req.process) {
            Ok(p) => p,
            Err(e) => return rpc::stream_error(e),
        };
        let rx = proc.subscribe();
        let (sender, resp) = rpc::stream_response();
        tokio::spawn(stream_events(sender, proc, rx, self.keepalive(&headers)));
        resp
    }

    async fn stream_input(&self, body: Body) -> RpcResult<Empty> {
        let mut reader = rpc::EnvelopeReader::new(body);
        let first: StreamInputRequest = reader
            .next()
            .await?
            .ok_or_else(|| err(Code::InvalidArgument, "StreamInput: empty request stream"))?;
        let StreamInputEvent::Start(start) = first.event else {
            return Err(err(
                Code::InvalidArgument,
                "StreamInput: the first message must be `start`",
            ));
        };
        let proc = self.find_running(&start.process)?;
        while let Some(msg) = reader.next::<StreamInputRequest>().await? {
            match msg.event {
                StreamInputEvent::Data(d) => write_input(&proc, d.input).await?,
                StreamInputEvent::Keepalive(_) => {}
                StreamInputEvent::Start(_) => {
                    return Err(err(
                        Code::InvalidArgument,
                        "StreamInput: `start` sent twice",
                    ));
                }
            }
        }
        Ok(Empty {})
    }

    fn list(&self) -> ListResponse {
        let mut processes: Vec<ProcessInfo> = self
            .procs
            .lock()
            .unwrap()
            .values()
            .filter(|p| p.is_running())
            .map(|p| p.info.clone())
            .collect();
        processes.sort_by_key(|p| p.pid);
        ListResponse { processes }
    }

    async fn send_input(&self, sel: &ProcessSelector, input: ProcessInput) -> RpcResult<()> {
        let proc = self.find_running(sel)?;
        write_input(&proc, input).await
    }

    fn send_signal(&self, req: SendSignalRequest) -> RpcResult<()> {
        let sig = match req.signal {
            Signal::Sigterm => libc::SIGTERM,
            Signal::Sigkill => libc::SIGKILL,
            Signal::Unspecified => {
                return Err(err(
                    Code::InvalidArgument,
                    "signal is unspecified; use SIGNAL_SIGTERM or SIGNAL_SIGKILL",
                ));
            }
        };
        self.find_running(&req.process)?.signal(sig)
    }

    async fn close_stdin(&self, sel: &ProcessSelector) -> RpcResult<()> {
        let proc = self.find_running(sel)?;
        match &proc.input {
            Input::Pty(_) => Err(err(
                Code::FailedPrecondition,
                "cannot close stdin of a PTY process: send Ctrl+D (0x04) instead",
            )),
            Input::Closed => Ok(()),
            Input::Pipe(stdin) => {
                stdin.lock().await.take();
                Ok(())
            }
        }
    }

    fn update(&self, req: UpdateRequest) -> RpcResult<()> {
        let proc = self.find_running(&req.process)?;
        let Some(p) = req.pty else { return Ok(()) };
        match &proc.input {
            Input::Pty(master) => pty::resize(master.raw(), p.size)
                .map_err(|e| err(Code::Internal, format!("cannot resize the terminal: {e}"))),
            _ => Err(err(
                Code::FailedPrecondition,
                format!("process {} has no terminal to resize", proc.pid()),
            )),
        }
    }
}

async fn write_input(proc: &Proc, input: ProcessInput) -> RpcResult<()> {
    let write_err = |e: std::io::Error| {
        err(
            Code::Internal,
            format!("error writing to process {}: {e}", proc.pid()),
        )
    };
    match (&proc.input, input) {
        (Input::Pty(master), ProcessInput::Pty(B64(data))) => {
            master.write_all(&data).await.map_err(write_err)
        }
        (Input::Pty(_), ProcessInput::Stdin(_)) => Err(err(
            Code::FailedPrecondition,
            "the process has a terminal: send input as `pty`, not `stdin`",
        )),
        (_, ProcessInput::Pty(_)) => Err(err(
            Code::FailedPrecondition,
            "the process has no terminal: send input as `stdin`",
        )),
        (Input::Closed, ProcessInput::Stdin(_)) => Err(err(
            Code::FailedPrecondition,
            "stdin was not enabled for this process (start it with stdin: true)",
        )),
        (Input::Pipe(stdin), ProcessInput::Stdin(B64(data))) => {
            let guard = stdin.lock().await;
            let Some(w) = guard.as_ref() else {
                return Err(err(
                    Code::FailedPrecondition,
                    "stdin of this process is already closed",
                ));
            };
            w.write_all(&data).await.map_err(write_err)
        }
    }
}

/// Read one output of a process and publish it until EOF, or until the process exited and the
/// pipe holds nothing more.
async fn pump_output(
    proc: Arc<Proc>,
    fd: Arc<NbFd>,
    make: fn(Bytes) -> DataEvent,
    chunk: usize,
    mut exited: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; chunk];
    let mut draining = false;
    let mut drained = 0;
    loop {
        if !draining && *exited.borrow() {
            draining = true;
        }
        let n = if draining {
            drained += 1;
            match fd.read_now(&mut buf) {
                Ok(Some(n)) if drained <= MAX_DRAIN_READS => n,
                _ => 0,
            }
        } else {
            tokio::select! {
                r = fd.read(&mut buf) => r.unwrap_or(0),
                changed = exited.changed() => {
                    if changed.is_err() { draining = true; }
                    continue;
                }
            }
        };
        if n == 0 {
            break;
        }
        proc.publish(make(Bytes::copy_from_slice(&buf[..n]))).await;
    }
}

/// Serve one Start/Connect stream: start, output and keepalives, end, end-of-stream.
async fn stream_events(
    sender: rpc::StreamSender,
    proc: Arc<Proc>,
    mut rx: mpsc::Receiver<DataEvent>,
    keepalive: Duration,
) {
    let ev = |event| StartResponse { event };
    if !sender
        .send(&ev(ProcessEvent::Start(StartEvent { pid: proc.pid() })))
        .await
    {
        return;
    }
    loop {
        match tokio::time::timeout(keepalive, rx.recv()).await {
            Err(_) => {
                if !sender.send(&ev(ProcessEvent::Keepalive(Empty {}))).await {
                    return;
                }
            }
            Ok(Some(data)) => {
                if !sender.send(&ev(ProcessEvent::Data(data))).await {
                    return;
                }
            }
            Ok(None) => break,
        }
    }
    match proc.end_event() {
        Some(end) => {
            if sender.send(&ev(ProcessEvent::End(end))).await {
                sender.finish(None).await;
            }
        }
        None => {
            sender
                .finish(Some(ConnectError::new(
                    Code::Internal,
                    "output ended before the process did",
                )))
                .await
        }
    }
}

/// Without bubblewrap: the process gets SIGKILL when the agent dies (its background children
/// are killed by the next agent from the on-disk record of groups).
fn die_with_agent(cmd: &mut std::process::Command) {
    let agent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != agent {
                return Err(std::io::Error::other("the agent exited"));
            }
            Ok(())
        });
    }
}

fn command_line(cmd: &str, args: &[String]) -> String {
    std::iter::once(cmd)
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

fn current_user() -> String {
    if let Ok(u) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        return u;
    }
    // SAFETY: getpwuid returns a pointer to static storage or null; we copy out immediately.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    "user".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_events_match_envd_texts() {
        let ok = end_event(std::process::ExitStatus::from_raw(0));
        assert_eq!(
            (
                ok.exit_code,
                ok.exited,
                ok.status.as_str(),
                ok.error.as_deref()
            ),
            (0, true, "exit status 0", None)
        );
        let three = end_event(std::process::ExitStatus::from_raw(3 << 8));
        assert_eq!(
            (
                three.exit_code,
                three.status.as_str(),
                three.error.as_deref()
            ),
            (3, "exit status 3", Some("exit status 3"))
        );
        let killed = end_event(std::process::ExitStatus::from_raw(libc::SIGKILL));
        assert_eq!(
            (killed.exit_code, killed.exited, killed.status.as_str()),
            (-1, false, "signal: killed")
        );
    }
}
