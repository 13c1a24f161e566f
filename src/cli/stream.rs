//! Run a remote process with its output streamed live to this terminal.
//!
//! The local process stands in for the remote one: Ctrl-C, `SIGTERM` (a `timeout`, a cancelled
//! CI job) and `SIGHUP` (a closed terminal) are passed on as `SIGTERM` to the remote process
//! (`SIGKILL` after [`FORCE_AFTER`] or a second Ctrl-C), and rclaude then exits `128 + N` for
//! the signal it received, as a shell would. A closed stdout (`| head`) stops the remote process
//! too. With [`Stdin::Forward`], local stdin is streamed to the remote process until EOF.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::error::{CliError, CliResult, ErrorKind};
use crate::provider::{ExecEvent, ExecRequest, ExitStatus, Sandbox, SandboxError, signals};

/// How long a remote process may take to end after `SIGTERM` before it gets `SIGKILL`.
pub const FORCE_AFTER: Duration = Duration::from_secs(5);

/// Where a remote process's output goes.
pub enum Sink<'a> {
    /// Straight to our stdout/stderr.
    Terminal,
    /// Like `Terminal`, also handing every chunk of either stream to `tap` (e.g. for a log tail).
    Tee { tap: &'a mut dyn FnMut(&[u8]) },
}

/// What the remote process reads on stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    /// Nothing (closed at start).
    Closed,
    /// This process's stdin, streamed until EOF.
    Forward,
}

/// Run `req` in `sandbox`, streaming stdout/stderr, and return its exit status (stdin closed).
pub async fn run_streamed(
    sandbox: &dyn Sandbox,
    req: ExecRequest,
    sink: Sink<'_>,
) -> CliResult<ExitStatus> {
    run_streamed_with(sandbox, req, sink, Stdin::Closed).await
}

/// The local signals passed on to the remote process.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> CliResult<Signals> {
        let on = |kind| {
            signal(kind).map_err(|e| CliError::internal(format!("cannot handle signals: {e}")))
        };
        Ok(Signals {
            int: on(SignalKind::interrupt())?,
            term: on(SignalKind::terminate())?,
            hup: on(SignalKind::hangup())?,
        })
    }

    /// The next signal received: its number.
    async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
        }
    }
}

/// Like [`run_streamed`], with a choice of stdin.
pub async fn run_streamed_with(
    sandbox: &dyn Sandbox,
    mut req: ExecRequest,
    mut sink: Sink<'_>,
    stdin: Stdin,
) -> CliResult<ExitStatus> {
    let stream_stdin = stdin == Stdin::Forward && sandbox.streams_stdin();
    if stdin == Stdin::Forward && !stream_stdin {
        // This provider takes stdin only at start: read it all first.
        req.stdin = Some(read_all_stdin().await?);
    }
    req.stdin_open = stream_stdin;
    // Handlers for the whole run, so a signal between two polls is not lost.
    let mut signals = Signals::new()?;
    let mut events = sandbox.exec(req).await?;
    let mut pid = None;
    let mut feeding: Option<tokio::task::JoinHandle<()>> = None;
    let mut stdin_rx: Option<tokio::sync::mpsc::Receiver<Option<Bytes>>> = None;
    // The first signal received (its number), and when to stop waiting politely.
    let mut stopped_by: Option<i32> = None;
    let mut force_at: Option<tokio::time::Instant> = None;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let result = loop {
        let force = async {
            match force_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = events.next() => {
                let ev = match ev {
                    None => break Err(agent_gone(None)),
                    Some(Err(e)) => break Err(agent_gone(Some(e))),
                    Some(Ok(ev)) => ev,
                };
                let (chunk, to_stdout) = match ev {
                    ExecEvent::Started { pid: p } => {
                        pid = Some(p);
                        if stream_stdin {
                            let (task, rx) = spawn_stdin_reader();
                            feeding = Some(task);
                            stdin_rx = Some(rx);
                        }
                        continue;
                    }
                    ExecEvent::Stdout(b) => (b, true),
                    ExecEvent::Stderr(b) => (b, false),
                    ExecEvent::Exited(status) => {
                        // Stopped on our behalf: exit as the signal we received says.
                        break Ok(match stopped_by {
                            Some(sig) => ExitStatus {
                                code: -1,
                                status: format!("signal: {}", signals::name(sig)),
                            },
                            None => status,
                        });
                    }
                };
                if let Sink::Tee { tap } = &mut sink {
                    tap(&chunk);
                }
                let written = if to_stdout {
                    let mut o = stdout.lock();
                    o.write_all(&chunk).and_then(|()| o.flush())
                } else {
                    let mut e = stderr.lock();
                    e.write_all(&chunk).and_then(|()| e.flush())
                };
                if let Err(e) = written
                    && e.kind() == std::io::ErrorKind::BrokenPipe
                    && stopped_by.is_none()
                {
                    // Whoever read our output is gone (`| head`): stop the remote process.
                    stopped_by = Some(libc::SIGPIPE);
                    force_at = Some(tokio::time::Instant::now() + FORCE_AFTER);
                    if let Some(p) = pid {
                        let _ = sandbox.kill_process(p, false).await;
                    }
                }
            }
            sig = signals.recv() => {
                let again = stopped_by.is_some();
                stopped_by.get_or_insert(sig);
                match pid {
                    // A second Ctrl-C: force it and stop waiting.
                    Some(p) if again && sig == libc::SIGINT => {
                        let _ = sandbox.kill_process(p, true).await;
                        break Err(CliError::new(ErrorKind::Interrupted, "interrupted"));
                    }
                    Some(p) => {
                        let _ = sandbox.kill_process(p, again).await;
                        force_at.get_or_insert(tokio::time::Instant::now() + FORCE_AFTER);
                        if !again && sig == libc::SIGINT {
                            eprintln!("\ninterrupt: stopping the remote process (Ctrl-C again to force)…");
                        }
                    }
                    None => break Err(CliError::new(ErrorKind::Interrupted, "interrupted")),
                }
            }
            chunk = async {
                match stdin_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let Some(p) = pid else { continue };
                let sent = match chunk {
                    Some(Some(data)) => sandbox.write_stdin(p, data).await,
                    // EOF (or the reader ended): the remote process sees EOF too.
                    Some(None) | None => {
                        stdin_rx = None;
                        sandbox.close_stdin(p).await
                    }
                };
                if sent.is_err() {
                    // The process stopped reading (or ended): nothing more to feed.
                    stdin_rx = None;
                }
            }
            () = force => {
                force_at = None;
                if let Some(p) = pid {
                    let _ = sandbox.kill_process(p, true).await;
                }
            }
        }
    };
    if let Some(f) = feeding {
        f.abort();
    }
    result
}

/// The connection to the sandbox broke while the process ran.
fn agent_gone(cause: Option<SandboxError>) -> CliError {
    let detail = cause.map(|e| format!(": {e}")).unwrap_or_default();
    CliError::unavailable(format!(
        "lost the sandbox while the command was running (its agent stopped or the connection \
         broke){detail}"
    ))
    .hint(
        "`rclaude status` shows the sandbox; `rclaude up` starts its agent again (a local \
         sandbox's agent is restarted automatically); then run the command again",
    )
}

/// Read this process's stdin in a task of its own; chunks, then `None` at EOF, arrive on the
/// returned channel. (The writes to the sandbox happen in the caller's loop, which holds the
/// sandbox handle.)
fn spawn_stdin_reader() -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::Receiver<Option<Bytes>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Option<Bytes>>(4);
    let task = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None).await;
                    return;
                }
                Ok(n) => {
                    if tx
                        .send(Some(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    (task, rx)
}

/// All of stdin, for providers that take it only at start.
async fn read_all_stdin() -> CliResult<Bytes> {
    let mut all = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut all)
        .await
        .map_err(|e| CliError::io("reading standard input", e))?;
    Ok(all.into())
}
