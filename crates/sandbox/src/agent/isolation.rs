//! Process isolation for the local provider: bubblewrap (see [`super::bwrap`] for what a
//! sandbox process can and cannot see) or plain host processes.
//!
//! There is deliberately no private PID namespace per command: as on E2B, a command may leave
//! background processes running after it exits (`server &`). They share the sandbox's PID
//! namespace and stay in the command's process group, which the agent kills on shutdown (and so
//! on `rclaude pause`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use super::bwrap::View;
use super::bwrap::{self, Bwrap};
use crate::Isolation;

/// How the agent launches processes.
#[derive(Debug, Clone)]
pub enum Launcher {
    /// Plain child processes on the host, unconfined.
    Plain,
    /// Through bubblewrap.
    Bwrap(Arc<Bwrap>),
}

/// What isolation the agent ended up with, and why (for `rclaude status` and `up`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IsolationReport {
    /// `bwrap` or `none`.
    pub mode: String,
    /// Why there is none: bubblewrap missing or not working (absent when `none` was asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

impl IsolationReport {
    pub fn is_isolated(&self) -> bool {
        self.mode == "bwrap"
    }
}

/// Decide how to launch processes. `Bwrap` fails when bubblewrap is missing or does not work
/// here; `Auto` falls back to plain processes and says why in the report.
pub fn select(isolation: Isolation, view: View) -> Result<(Launcher, IsolationReport), String> {
    let plain = |missing: Option<String>| {
        (
            Launcher::Plain,
            IsolationReport {
                mode: "none".into(),
                missing,
            },
        )
    };
    match isolation {
        Isolation::None => Ok(plain(None)),
        Isolation::Bwrap => bwrap::probe().map(|p| bwrapped(p, view)),
        Isolation::Auto => match bwrap::probe() {
            Ok(p) => Ok(bwrapped(p, view)),
            Err(why) => {
                tracing::warn!(
                    "process isolation: NONE ({why}); sandbox commands run unconfined with your \
                     user's rights; install bubblewrap (apt-get install bubblewrap) to confine them"
                );
                Ok(plain(Some(why)))
            }
        },
    }
}

fn bwrapped(path: PathBuf, view: View) -> (Launcher, IsolationReport) {
    (
        Launcher::Bwrap(Arc::new(Bwrap::new(path, view))),
        IsolationReport {
            mode: "bwrap".into(),
            missing: None,
        },
    )
}

/// What `isolation` would give on this machine now, without starting anything lasting.
pub fn report_for(isolation: Isolation) -> IsolationReport {
    match select(isolation, View::default()) {
        Ok((launcher, report)) => {
            launcher.shutdown();
            report
        }
        Err(why) => IsolationReport {
            mode: "none".into(),
            missing: Some(why),
        },
    }
}

impl Launcher {
    /// Build the command that runs `program args` in `cwd` with `root` writable; `tty` is the
    /// PTY slave of a terminal process.
    pub fn command(
        &self,
        root: &Path,
        cwd: &Path,
        program: &str,
        args: &[String],
        tty: Option<&Path>,
    ) -> std::io::Result<tokio::process::Command> {
        match self {
            Launcher::Plain => {
                let mut c = tokio::process::Command::new(program);
                c.args(args).current_dir(cwd);
                Ok(c)
            }
            Launcher::Bwrap(b) => b.command(root, cwd, program, args, tty),
        }
    }

    /// Build the command that runs the host executable `exe` (an rclaude helper) with `args`
    /// the way `command` runs a sandbox program: inside bubblewrap it sees what the sandbox's
    /// processes see, and `exe` read-only.
    pub fn helper_command(
        &self,
        root: &Path,
        cwd: &Path,
        exe: &Path,
        args: &[String],
    ) -> std::io::Result<tokio::process::Command> {
        match self {
            Launcher::Plain => {
                let mut c = tokio::process::Command::new(exe);
                c.args(args).current_dir(cwd);
                Ok(c)
            }
            Launcher::Bwrap(b) => b.helper_command(root, cwd, exe, args),
        }
    }

    pub fn is_isolated(&self) -> bool {
        matches!(self, Launcher::Bwrap(_))
    }

    /// Process group of the sandbox's PID namespace holder, when there is one.
    pub fn holder_group(&self) -> Option<u32> {
        match self {
            Launcher::Plain => None,
            Launcher::Bwrap(b) => b.holder_pid(),
        }
    }

    /// Whether the sandbox's PID namespace is alive (always true without isolation).
    pub fn namespace_alive(&self) -> bool {
        match self {
            Launcher::Plain => true,
            Launcher::Bwrap(b) => b.holder_running(),
        }
    }

    /// Kill whatever isolation keeps running (the PID namespace and every process in it).
    pub fn shutdown(&self) {
        if let Launcher::Bwrap(b) = self {
            b.shutdown();
        }
    }
}
