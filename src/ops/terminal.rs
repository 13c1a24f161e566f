//! A terminal in the sandbox wired to this one (raw mode, window size, input forwarding, Ctrl-D
//! at end of input): `shell` and interactive `claude`.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::RawFd;
use std::sync::{Mutex, Once};

use bytes::Bytes;
use futures::StreamExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::error::{CliError, CliResult};
use crate::provider::{ExecEvent, PtyRequest, Sandbox, SandboxError};

/// Run `req` on a terminal in the sandbox, wired to this terminal, until it exits; returns its
/// exit code. Without a terminal on stdin, input is forwarded as is and end of input sends Ctrl-D.
pub async fn interactive(sandbox: &dyn Sandbox, mut req: PtyRequest) -> CliResult {
    let stdin_tty = std::io::stdin().is_terminal();
    if let Some((cols, rows)) = window_size() {
        req.cols = cols;
        req.rows = rows;
    }
    if !req.env.contains_key("TERM")
        && let Ok(term) = std::env::var("TERM")
        && !term.is_empty()
        && term != "dumb"
    {
        req.env.insert("TERM".into(), term);
    }
    let mut session = sandbox.pty(req).await.map_err(|e| match e {
        SandboxError::Unsupported(_) => CliError::unavailable(e.to_string())
            .hint("use `rclaude exec -- CMD` for non-interactive commands"),
        e => e.into(),
    })?;
    let raw = if stdin_tty {
        Some(RawMode::enter(0).map_err(|e| CliError::io("switching the terminal to raw mode", e))?)
    } else {
        None
    };
    let mut keys = stdin_reader();
    let mut winch = signal(SignalKind::window_change()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    // This loop handles SIGTERM and SIGHUP itself (see `signals`).
    let _signals = crate::ops::signals::attach().ok();
    let stdout = std::io::stdout();
    let mut input_open = true;
    let code = loop {
        tokio::select! {
            ev = session.events.next() => match ev {
                Some(Ok(ExecEvent::Stdout(b) | ExecEvent::Stderr(b))) => {
                    let mut o = stdout.lock();
                    let _ = o.write_all(&b);
                    let _ = o.flush();
                }
                Some(Ok(ExecEvent::Exited(s))) => break s.shell_code(),
                Some(Ok(ExecEvent::Started { .. })) => {}
                Some(Err(e)) => { drop(raw); return Err(e.into()); }
                None => {
                    drop(raw);
                    return Err(CliError::unavailable("the sandbox closed the terminal before the process ended")
                        .hint("the agent may have restarted; check with `rclaude status`"));
                }
            },
            data = keys.recv(), if input_open => match data {
                Some(b) => { input_open = delivered(session.input.write(b).await)?; }
                None => {
                    input_open = false;
                    if !stdin_tty {
                        // End of piped input: Ctrl-D, as a terminal would send it.
                        delivered(session.input.write(Bytes::from_static(b"\x04")).await)?;
                    }
                }
            },
            Some(()) = recv_signal(&mut winch) => {
                if let Some((cols, rows)) = window_size() {
                    let _ = session.input.resize(cols, rows).await;
                }
            },
            _ = tokio::signal::ctrl_c(), if raw.is_none() => {
                // Not in raw mode (no terminal): pass the interrupt on as a keystroke.
                delivered(session.input.write(Bytes::from_static(b"\x03")).await)?;
            },
            Some(()) = recv_signal(&mut term) => {
                let _ = sandbox.kill_process(session.pid, false).await;
                break 128 + libc::SIGTERM;
            },
            Some(()) = recv_signal(&mut hup) => {
                let _ = sandbox.kill_process(session.pid, false).await;
                break 128 + libc::SIGHUP;
            },
        }
    };
    drop(raw);
    Ok(code)
}

/// Whether input reached the process. Input for a process that has just exited is dropped
/// (`false`): its exit event is on the way, and its code is what counts.
fn delivered(r: Result<(), SandboxError>) -> Result<bool, SandboxError> {
    match r {
        Ok(()) => Ok(true),
        Err(SandboxError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn recv_signal(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Read stdin on a thread (blocking reads); `None` at end of input.
fn stdin_reader() -> tokio::sync::mpsc::Receiver<Bytes> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 8192];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    rx
}

/// Columns and rows of the terminal on stdout (or stdin).
pub(crate) fn window_size() -> Option<(u16, u16)> {
    for fd in [1, 0, 2] {
        // SAFETY: TIOCGWINSZ fills a winsize struct; fd is one of ours.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
            return Some((ws.ws_col, ws.ws_row));
        }
    }
    None
}

/// The terminal settings to put back if we panic while in raw mode.
static SAVED: Mutex<Option<(RawFd, libc::termios)>> = Mutex::new(None);
static PANIC_HOOK: Once = Once::new();

fn restore_saved() {
    if let Some((fd, t)) = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take() {
        // SAFETY: tcsetattr with settings previously read from the same fd.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
    }
}

/// The terminal in raw mode (no echo, no line editing, no signals from keys) until dropped.
/// The previous settings come back on drop, on panic, and so on every way out of `interactive`.
pub(crate) struct RawMode {
    _private: (),
}

impl RawMode {
    pub(crate) fn enter(fd: RawFd) -> std::io::Result<RawMode> {
        // SAFETY: tcgetattr fills a termios struct.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the struct in place; tcsetattr applies it.
        unsafe { libc::cfmakeraw(&mut raw) };
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some((fd, saved));
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_saved();
                previous(info);
            }));
        });
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            let e = std::io::Error::last_os_error();
            SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
            return Err(e);
        }
        Ok(RawMode { _private: () })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_saved();
    }
}
