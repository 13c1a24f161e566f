//! Run a remote process with its output streamed live to this terminal.

use std::io::Write;

use futures::StreamExt;

use crate::error::{CliError, CliResult, ErrorKind};
use crate::provider::{ExecEvent, ExecRequest, ExitStatus, Sandbox};

/// Where a remote process's output goes.
pub enum Sink<'a> {
    /// Straight to our stdout/stderr.
    Terminal,
    /// Like `Terminal`, also handing every chunk of either stream to `tap` (e.g. for a log tail).
    Tee { tap: &'a mut dyn FnMut(&[u8]) },
}

/// Run `req` in `sandbox`, streaming stdout/stderr, and return its exit status.
///
/// Ctrl-C sends SIGTERM to the remote process; a second Ctrl-C sends SIGKILL and gives up
/// waiting (exit 130).
pub async fn run_streamed(
    sandbox: &dyn Sandbox,
    req: ExecRequest,
    mut sink: Sink<'_>,
) -> CliResult<ExitStatus> {
    let mut events = sandbox.exec(req).await?;
    let mut pid = None;
    let mut interrupts = 0u32;
    // One handler for the whole run, so a Ctrl-C between two polls is not lost.
    let mut ctrl_c = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| CliError::internal(format!("cannot handle Ctrl-C: {e}")))?;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    loop {
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else {
                    return Err(CliError::unavailable("the sandbox closed the process stream before the process ended")
                        .hint("the agent may have restarted; check with `rclaude status`"));
                };
                match ev? {
                    ExecEvent::Started { pid: p } => pid = Some(p),
                    ExecEvent::Stdout(b) => match &mut sink {
                        Sink::Terminal => { let mut o = stdout.lock(); let _ = o.write_all(&b); let _ = o.flush(); }
                        Sink::Tee { tap } => { tap(&b); let mut o = stdout.lock(); let _ = o.write_all(&b); let _ = o.flush(); }
                    },
                    ExecEvent::Stderr(b) => match &mut sink {
                        Sink::Terminal => { let mut e = stderr.lock(); let _ = e.write_all(&b); let _ = e.flush(); }
                        Sink::Tee { tap } => { tap(&b); let mut e = stderr.lock(); let _ = e.write_all(&b); let _ = e.flush(); }
                    },
                    ExecEvent::Exited(status) => return Ok(status),
                }
            }
            _ = ctrl_c.recv() => {
                interrupts += 1;
                if let Some(p) = pid {
                    let _ = sandbox.kill_process(p, interrupts > 1).await;
                }
                if interrupts > 1 || pid.is_none() {
                    return Err(CliError::new(ErrorKind::Interrupted, "interrupted"));
                }
                eprintln!("\ninterrupt: stopping the remote process (Ctrl-C again to force)…");
            }
        }
    }
}
