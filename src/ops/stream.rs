//! Run a remote process with its output streamed live to this terminal, its stdin optionally
//! streamed from ours, and signals to rclaude forwarded to it.

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::signals;
use crate::error::{CliError, CliResult, ErrorKind};
use crate::provider::{ExecEvent, ExecRequest, ExitStatus, Sandbox, SandboxError};

/// How long a remote process may take to end after SIGTERM or SIGHUP reached rclaude (and
/// SIGTERM was passed on) before it is killed and rclaude exits.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// Largest stdin chunk sent at once.
const STDIN_CHUNK: usize = 64 * 1024;

/// Where a remote process's output goes.
pub enum Sink<'a> {
    /// Straight to our stdout/stderr.
    Terminal,
    /// Like `Terminal`, also handing every chunk of either stream to `tap` (e.g. for a log tail).
    Tee { tap: &'a mut dyn FnMut(&[u8]) },
}

/// Where a remote process's stdin comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Closed at start (or as given in the request).
    Closed,
    /// Our own stdin, streamed as it is read; its EOF closes the remote stdin.
    Forward,
}

/// Run `req` in `sandbox`, streaming stdout/stderr, and return its exit status.
pub async fn run_streamed(
    sandbox: &dyn Sandbox,
    req: ExecRequest,
    sink: Sink<'_>,
) -> CliResult<ExitStatus> {
    run_streamed_with(sandbox, req, sink, Input::Closed).await
}

/// [`run_streamed`] with stdin from `input`.
///
/// Signals: Ctrl-C (SIGINT) sends SIGTERM to the remote process and waits for it to end (a
/// second Ctrl-C sends SIGKILL and stops waiting); SIGTERM and SIGHUP send SIGTERM and wait at
/// most [`TERM_GRACE`] before SIGKILL. Either way the result is an error with exit code 128+S
/// (130, 143, 129), so callers stop. A signal that arrived before this call (e.g. between two
/// tasks) stops before anything starts.
pub async fn run_streamed_with(
    sandbox: &dyn Sandbox,
    mut req: ExecRequest,
    mut sink: Sink<'_>,
    input: Input,
) -> CliResult<ExitStatus> {
    let mut sigs =
        signals::attach().map_err(|e| CliError::internal(format!("cannot handle signals: {e}")))?;
    if let Some(sig) = sigs.pending() {
        return Err(interrupted(sig, false));
    }
    let mut stdin_rx = None;
    if input == Input::Forward {
        if sandbox.streams_stdin() {
            req.stream_stdin = true;
        } else {
            // This provider takes stdin whole at start.
            let data = tokio::task::spawn_blocking(|| {
                let mut v = Vec::new();
                std::io::stdin().read_to_end(&mut v).map(|_| v)
            })
            .await
            .map_err(|e| CliError::internal(e.to_string()))?
            .map_err(|e| CliError::io("reading stdin", e))?;
            req = req.stdin(data);
        }
    }
    let streaming_stdin = req.stream_stdin;
    let command = match &req.command {
        crate::provider::Command::Shell(s) => s.clone(),
        crate::provider::Command::Argv(a) => a.join(" "),
    };
    let mut events = sandbox.exec(req).await?;
    let mut pid = None;
    let mut stop: Option<(i32, Option<tokio::time::Instant>)> = None;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    // Secret values never reach the terminal or a tap (logs, CI JSON, events), even split
    // across chunks.
    let (mut red_out, mut red_err) = (crate::redact::stream(), crate::redact::stream());
    loop {
        let deadline = stop.and_then(|(_, d)| d);
        tokio::select! {
            ev = events.next() => {
                let ev = match ev {
                    Some(Ok(ev)) => ev,
                    Some(Err(e)) => return Err(lost(sandbox, pid, &command, Some(e))),
                    None => return Err(lost(sandbox, pid, &command, None)),
                };
                match ev {
                    ExecEvent::Started { pid: p } => {
                        pid = Some(p);
                        if stop.is_some() {
                            let _ = sandbox.kill_process(p, false).await;
                        }
                        if streaming_stdin {
                            stdin_rx = Some(read_stdin());
                        }
                    }
                    ExecEvent::Stdout(b) => {
                        let b = red_out.push(&b);
                        if let Sink::Tee { tap } = &mut sink { tap(&b); }
                        let mut o = stdout.lock();
                        let written = o.write_all(&b).and_then(|()| o.flush());
                        drop(o);
                        if let Err(e) = written
                            && e.kind() == std::io::ErrorKind::BrokenPipe
                            && stop.is_none()
                        {
                            // Whoever read our output went away (`| head`): stop the remote
                            // command too, then exit as a shell would (141).
                            stop = Some((libc::SIGPIPE, Some(tokio::time::Instant::now() + TERM_GRACE)));
                            if let Some(p) = pid {
                                let _ = sandbox.kill_process(p, false).await;
                            }
                        }
                    }
                    ExecEvent::Stderr(b) => {
                        let b = red_err.push(&b);
                        if let Sink::Tee { tap } = &mut sink { tap(&b); }
                        let mut e = stderr.lock();
                        let _ = e.write_all(&b);
                        let _ = e.flush();
                    }
                    ExecEvent::Exited(status) => {
                        for (rest, to_stdout) in [(red_out.finish(), true), (red_err.finish(), false)] {
                            if rest.is_empty() { continue; }
                            if let Sink::Tee { tap } = &mut sink { tap(&rest); }
                            let _ = if to_stdout {
                                stdout.lock().write_all(&rest).and_then(|()| stdout.lock().flush())
                            } else {
                                stderr.lock().write_all(&rest)
                            };
                        }
                        return match stop {
                            Some((sig, _)) => Err(interrupted(sig, true)),
                            None => Ok(status),
                        };
                    }
                }
            }
            chunk = next_chunk(&mut stdin_rx) => {
                let Some(p) = pid else { continue };
                let r = match chunk {
                    Some(data) => sandbox.write_stdin(p, data).await,
                    None => {
                        stdin_rx = None;
                        sandbox.close_stdin(p).await
                    }
                };
                if let Err(e) = r {
                    // The process no longer reads (it exited or closed its stdin): stop feeding.
                    tracing::debug!(pid = p, "forwarding stdin stopped: {e}");
                    stdin_rx = None;
                }
            }
            sig = sigs.next() => {
                if stop.is_some() {
                    // A second signal: stop waiting.
                    if let Some(p) = pid {
                        let _ = sandbox.kill_process(p, true).await;
                    }
                    let first = stop.map(|(s, _)| s).unwrap_or(sig);
                    return Err(interrupted(first, true));
                }
                let grace = (sig != libc::SIGINT).then(|| tokio::time::Instant::now() + TERM_GRACE);
                stop = Some((sig, grace));
                if let Some(p) = pid {
                    let _ = sandbox.kill_process(p, false).await;
                }
                let note = if sig == libc::SIGINT {
                    "\ninterrupt: stopping the remote process (Ctrl-C again to force)…\n".to_string()
                } else {
                    format!(
                        "\n{}: stopping the remote process (killed if it has not ended in {}s)…\n",
                        signals::name(sig),
                        TERM_GRACE.as_secs()
                    )
                };
                // The terminal may be gone (SIGHUP): never fail on writing the note.
                let _ = stderr.lock().write_all(note.as_bytes());
            }
            _ = sleep_until(deadline) => {
                if let Some(p) = pid {
                    let _ = sandbox.kill_process(p, true).await;
                }
                let sig = stop.map(|(s, _)| s).unwrap_or(libc::SIGTERM);
                return Err(interrupted(sig, true));
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The next chunk of our stdin (`None` at EOF); pending forever when not forwarding.
async fn next_chunk(rx: &mut Option<mpsc::Receiver<Option<Bytes>>>) -> Option<Bytes> {
    match rx {
        Some(r) => r.recv().await.flatten(),
        None => std::future::pending().await,
    }
}

/// Read our stdin on a thread, in chunks as they arrive (a pipe delivers what was written, a
/// file up to [`STDIN_CHUNK`]), with back-pressure: at most a few chunks wait in memory.
fn read_stdin() -> mpsc::Receiver<Option<Bytes>> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; STDIN_CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .blocking_send(Some(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("reading stdin failed: {e}");
                    break;
                }
            }
        }
        let _ = tx.blocking_send(None);
    });
    rx
}

/// The error for a run cut short by signal `sig`.
fn interrupted(sig: i32, stopped_remote: bool) -> CliError {
    let what = if stopped_remote {
        "; the remote command was stopped"
    } else {
        ""
    };
    let mut e = CliError::new(
        ErrorKind::Interrupted,
        format!("interrupted by {}{what}", signals::name(sig)),
    );
    e.exit_code = Some(128 + sig);
    e
}

/// The process stream broke before the process ended: the sandbox's agent (or the connection
/// to it) went away.
fn lost(
    sandbox: &dyn Sandbox,
    pid: Option<u32>,
    command: &str,
    cause: Option<SandboxError>,
) -> CliError {
    let cause = cause.map(|e| format!(" ({e})")).unwrap_or_default();
    let short: String = command.chars().take(60).collect();
    let ellipsis = if command.chars().count() > 60 {
        "…"
    } else {
        ""
    };
    let pid = pid.map(|p| format!(", pid {p}")).unwrap_or_default();
    CliError::unavailable(format!(
        "lost the connection to sandbox {} while `{short}{ellipsis}`{pid} was running: the \
         sandbox's agent went away (it stopped or crashed, or the network dropped){cause}",
        sandbox.id()
    ))
    .hint(
        "the command's outcome is unknown and it was probably stopped with the agent; \
         `rclaude status` shows the sandbox, and the next `rclaude exec` or `rclaude up` \
         restarts a local sandbox's agent (for a cloud sandbox, check your network)",
    )
}
