//! Process isolation for the local provider, with bubblewrap: a sandbox process sees only what
//! it needs, not the host.
//!
//! Visible, read-only: the system (`/usr`, `/bin`, `/sbin`, `/lib*`, `/etc`, `/opt`, `/nix`,
//! and the resolver's `/run/systemd/resolve`), plus the paths the sandbox is configured to
//! expose (toolchains such as `~/.rustup`; `[sandbox] expose`). Visible, writable: the sandbox
//! root (its workspace and home). Private: `/tmp`, `/var/tmp`, `/dev`, `/proc`. Everything else
//! does not exist inside: the user's home (`~/.ssh`, credentials, other repositories),
//! rclaude's own state and config (agent tokens, the server token), other sandboxes. The network
//! is shared; the agent of every sandbox requires its own token, which no sandbox can read.
//!
//! There is deliberately no private PID namespace per process: as on E2B, a command may leave
//! background processes running after it exits (`server &`). They stay in the command's process
//! group, which the agent kills on shutdown (and so on `rclaude pause`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::config::Isolation;

/// System directories bound read-only when they exist.
const SYSTEM: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
    "/nix",
    // `/etc/resolv.conf` often points here.
    "/run/systemd/resolve",
];

/// How the agent launches processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launcher {
    /// Plain child processes on the host.
    Plain,
    /// Through bubblewrap at `bwrap`, with `expose` visible read-only besides the system.
    Bwrap {
        bwrap: PathBuf,
        expose: Vec<PathBuf>,
    },
}

/// Decide how to launch processes. `Bwrap` fails when bubblewrap is missing or does not work
/// here; `Auto` falls back to plain processes with a one-line notice.
pub fn select(isolation: Isolation, expose: Vec<PathBuf>) -> Result<Launcher, String> {
    let bwrap = |bwrap| Launcher::Bwrap { bwrap, expose };
    match isolation {
        Isolation::None => Ok(Launcher::Plain),
        Isolation::Bwrap => probe().map(bwrap),
        Isolation::Auto => match probe() {
            Ok(p) => Ok(bwrap(p)),
            Err(why) => {
                tracing::warn!(
                    "process isolation: none ({why}); install bubblewrap to confine sandbox processes"
                );
                Ok(Launcher::Plain)
            }
        },
    }
}

/// Why bubblewrap cannot be used here, or `None` when it can: what `up` and `status` say.
pub fn unavailable_reason() -> Option<String> {
    probe().err()
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
    cmd.args(bwrap_args(None, &[], Path::new("/")))
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

/// bubblewrap's arguments: a new root of its own with only the allowed paths in it, `root`
/// (when given) writable, then `cwd`.
fn bwrap_args(root: Option<&Path>, expose: &[PathBuf], cwd: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = Vec::new();
    let mut push = |args: &[&std::ffi::OsStr]| v.extend(args.iter().map(|a| a.to_os_string()));
    for dir in SYSTEM {
        let p = Path::new(dir);
        match std::fs::symlink_metadata(p) {
            // Merged /usr: keep `/bin -> usr/bin` a link, as on the host.
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(p) {
                    push(&["--symlink".as_ref(), target.as_os_str(), p.as_os_str()]);
                }
            }
            Ok(_) => push(&["--ro-bind".as_ref(), p.as_os_str(), p.as_os_str()]),
            Err(_) => {}
        }
    }
    push(&["--dev".as_ref(), "/dev".as_ref()]);
    // The host's devpts, so terminals handed in by the agent resolve (`tty`, job control).
    if Path::new("/dev/pts").is_dir() {
        push(&[
            "--dev-bind".as_ref(),
            "/dev/pts".as_ref(),
            "/dev/pts".as_ref(),
        ]);
    }
    push(&["--proc".as_ref(), "/proc".as_ref()]);
    push(&["--tmpfs".as_ref(), "/tmp".as_ref()]);
    push(&["--tmpfs".as_ref(), "/var/tmp".as_ref()]);
    for p in expose {
        push(&["--ro-bind-try".as_ref(), p.as_os_str(), p.as_os_str()]);
    }
    // After the tmpfs mounts: a root under /tmp is still the real one.
    if let Some(root) = root {
        push(&["--bind".as_ref(), root.as_os_str(), root.as_os_str()]);
    }
    push(&[
        "--die-with-parent".as_ref(),
        "--chdir".as_ref(),
        cwd.as_os_str(),
    ]);
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
            Launcher::Bwrap { bwrap, expose } => {
                let mut c = tokio::process::Command::new(bwrap);
                c.args(bwrap_args(Some(root), expose, cwd))
                    .arg("--")
                    .arg(program)
                    .args(args)
                    .current_dir(cwd);
                c
            }
        }
    }

    pub fn is_isolated(&self) -> bool {
        matches!(self, Launcher::Bwrap { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_system_the_root_and_exposed_paths_are_mounted() {
        let args: Vec<String> = bwrap_args(
            Some(Path::new("/data/sandboxes/x/root")),
            &[PathBuf::from("/home/u/.rustup")],
            Path::new("/data/sandboxes/x/root/workspace"),
        )
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
        let joined = args.join(" ");
        assert!(
            !joined.contains("--ro-bind / /"),
            "the whole host: {joined}"
        );
        assert!(
            joined.contains("--ro-bind-try /home/u/.rustup /home/u/.rustup"),
            "{joined}"
        );
        assert!(joined.contains("--bind /data/sandboxes/x/root /data/sandboxes/x/root"));
        // The writable root comes after the tmpfs mounts that would otherwise hide it.
        let tmp = args.iter().position(|a| a == "/tmp").unwrap();
        let root = args.iter().position(|a| a == "--bind").unwrap();
        assert!(root > tmp);
        assert!(joined.ends_with("--chdir /data/sandboxes/x/root/workspace"));
    }
}
