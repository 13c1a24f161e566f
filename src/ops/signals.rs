//! SIGINT, SIGTERM and SIGHUP while rclaude runs remote processes.
//!
//! Caught once, for the rest of the CLI's life, so that no signal is lost between two remote
//! commands (a task's lines, `[setup]`): whoever runs a remote process [`attach`]es and is told
//! of every signal, and sees one that arrived before. A SIGTERM or SIGHUP that arrives while
//! nobody is attached ends the CLI with 128+S, as the default action would (SIGINT is left to
//! the commands that handle Ctrl-C themselves).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Signals received so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// The first signal.
    pub first: Option<i32>,
    /// The latest signal.
    pub last: Option<i32>,
    /// How many arrived.
    pub count: u32,
}

struct Shared {
    rx: watch::Receiver<Received>,
    attached: AtomicUsize,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// A handle that is told of signals; while one exists, SIGTERM and SIGHUP do not end the CLI.
pub struct Attached {
    rx: watch::Receiver<Received>,
    seen: u32,
}

/// Start catching signals (once) and attach to them. Must be called inside the runtime.
pub fn attach() -> std::io::Result<Attached> {
    let shared = match SHARED.get() {
        Some(s) => s,
        None => {
            let mut int = signal(SignalKind::interrupt())?;
            let mut term = signal(SignalKind::terminate())?;
            let mut hup = signal(SignalKind::hangup())?;
            let (tx, rx) = watch::channel(Received::default());
            let shared = SHARED.get_or_init(|| Shared {
                rx,
                attached: AtomicUsize::new(0),
            });
            tokio::spawn(async move {
                loop {
                    let sig = tokio::select! {
                        Some(()) = int.recv() => libc::SIGINT,
                        Some(()) = term.recv() => libc::SIGTERM,
                        Some(()) = hup.recv() => libc::SIGHUP,
                        else => return,
                    };
                    tx.send_modify(|r| {
                        r.first.get_or_insert(sig);
                        r.last = Some(sig);
                        r.count += 1;
                    });
                    let attached = SHARED
                        .get()
                        .is_some_and(|s| s.attached.load(Ordering::SeqCst) > 0);
                    if sig != libc::SIGINT && !attached {
                        std::process::exit(128 + sig);
                    }
                }
            });
            shared
        }
    };
    shared.attached.fetch_add(1, Ordering::SeqCst);
    let rx = shared.rx.clone();
    Ok(Attached { rx, seen: 0 })
}

impl Attached {
    /// The first signal received so far, if any (also one from before this handle existed).
    pub fn pending(&self) -> Option<i32> {
        self.rx.borrow().first
    }

    /// Wait for a signal not yet returned by `next` on this handle; returns it.
    pub async fn next(&mut self) -> i32 {
        loop {
            let now = *self.rx.borrow_and_update();
            if now.count > self.seen {
                self.seen = now.count;
                return now.last.unwrap_or(libc::SIGINT);
            }
            if self.rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(s) = SHARED.get() {
            s.attached.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// `SIGINT`, `SIGTERM`, ... for messages.
pub fn name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "SIGINT (Ctrl-C)".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        other => format!("signal {other}"),
    }
}
