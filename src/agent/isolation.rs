//! Process isolation for the local provider: with bubblewrap, sandbox processes see the host
//! read-only except the sandbox root (plus private `/tmp` and `/dev`); the network is shared.
//!
//! There is deliberately no private PID namespace per process: as on E2B, a command may leave
//! background processes running after it exits (`server &`). They stay in the command's process
//! group, which the agent kills on shutdown (and so on `rclaude pause`).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::config::Isolation;

/// How the agent launches processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launcher {
    /// Plain child processes on the host.
    Plain,
    /// Through bubblewrap at this path.
    Bwrap(PathBuf),
}

/// Decide how to launch processes. `Bwrap` fails when bubblewrap is missing or does not work
/// here; `Auto` falls back to plain processes with a one-line notice.
pub fn select(isolation: Isolation) -> Result<Launcher, String> {
    match isolation {
        Isolation::None => Ok(Launcher::Plain),
        Isolation::Bwrap => probe().map(Launcher::Bwrap),
        Isolation::Auto => match probe() {
            Ok(p) => Ok(Launcher::Bwrap(p)),
            Err(why) => {
                tracing::info!(
                    "process isolation: none ({why}); install bubblewrap to confine sandbox processes"
                );
                Ok(Launcher::Plain)
            }
        },
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Find bubblewrap and check that it can create the sandbox we use (user namespaces may be off).
fn probe() -> Result<PathBuf, String> {
    let bwrap = find_on_path("bwrap").ok_or("bwrap is not on PATH")?;
    let mut cmd = std::process::Command::new(&bwrap);
    cmd.args(base_args(Path::new("/tmp")))
        .arg("--")
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bwrap.display()))?;
    if out.status.success() {
        Ok(bwrap)
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "{} does not work here ({}): {}",
            bwrap.display(),
            out.status,
            err.trim()
        ))
    }
}

fn base_args(cwd: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = Vec::new();
    for a in ["--ro-bind", "/", "/", "--dev", "/dev"] {
        v.push(a.into());
    }
    // The host's devpts, so terminals handed in by the agent resolve (`tty`, job control).
    if Path::new("/dev/pts").is_dir() {
        for a in ["--dev-bind", "/dev/pts", "/dev/pts"] {
            v.push(a.into());
        }
    }
    for a in [
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--die-with-parent",
        "--chdir",
    ] {
        v.push(a.into());
    }
    v.push(cwd.into());
    v
}

impl Launcher {
    /// Build the command that runs `program args` in `cwd` with `root` writable.
    pub fn command(
        &self,
        root: &Path,
        cwd: &Path,
        program: &str,
        args: &[String],
    ) -> tokio::process::Command {
        match self {
            Launcher::Plain => {
                let mut c = tokio::process::Command::new(program);
                c.args(args).current_dir(cwd);
                c
            }
            Launcher::Bwrap(bwrap) => {
                let mut c = tokio::process::Command::new(bwrap);
                let mut args_v = base_args(cwd);
                // Insert the writable root bind before --chdir.
                let at = args_v.len() - 2;
                args_v.splice(
                    at..at,
                    [
                        "--bind".into(),
                        root.as_os_str().to_owned(),
                        root.as_os_str().to_owned(),
                    ],
                );
                c.args(args_v)
                    .arg("--")
                    .arg(program)
                    .args(args)
                    .current_dir(cwd);
                c
            }
        }
    }

    pub fn is_isolated(&self) -> bool {
        matches!(self, Launcher::Bwrap(_))
    }
}
