//! One rclaude command run for an MCP tool call: the same binary as a child process, its
//! output captured (never onto the protocol's stdout), its own error read back as JSON.
//!
//! A child per call, rather than the operations in this process, because every CLI command
//! already holds exactly the semantics users rely on (session locks, signal forwarding to the
//! remote command, exit codes); a call that panics or is cancelled ends one child, not the
//! server; and nothing an operation prints can corrupt the JSON-RPC stream on stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The environment variable naming the file a failing command writes its error to, as JSON
/// ([`ReportedError`]).
pub const ERROR_FILE_ENV: &str = "RCLAUDE_ERROR_FILE";

/// Output kept per stream: its last bytes (the end of a build log says what failed).
const STDOUT_CAP: usize = 96 * 1024;
const STDERR_CAP: usize = 32 * 1024;

/// rclaude's own error, as the failing command reported it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReportedError {
    /// `usage`, `sync`, `unavailable`, `internal`, `io`, `auth`, `config`, `interrupted`.
    pub kind: String,
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Underlying causes, outermost first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
    /// The exit code the command ended with.
    pub exit_code: i32,
    /// The code is a command's in the sandbox (a failing task), not rclaude's own failure.
    pub remote: bool,
}

/// How one command ended.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Outcome {
    /// The command's exit code (a remote command's, passed through, or rclaude's own: see
    /// `rclaude --help`).
    pub exit_code: i32,
    /// What it printed on stdout (a remote command's output; JSON for `--json` commands).
    pub stdout: String,
    /// Its progress lines and messages (stderr).
    pub log: String,
    /// Either stream was longer than kept: only its end is here.
    pub truncated: bool,
    /// rclaude's own error, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ReportedError>,
}

impl Outcome {
    /// rclaude could not do what was asked (as opposed to a command in the sandbox that ran
    /// and failed, which is a result).
    pub fn failed(&self) -> bool {
        self.error.as_ref().is_some_and(|e| !e.remote)
    }
}

/// One `rclaude ARGS` to run in a directory.
pub struct Invocation<'a> {
    exe: &'a Path,
    dir: &'a Path,
    args: Vec<String>,
}

impl<'a> Invocation<'a> {
    /// `exe ARGS` (the running binary) in `dir`.
    pub fn new(exe: &'a Path, dir: &'a Path) -> Invocation<'a> {
        Invocation {
            exe,
            dir,
            args: Vec::new(),
        }
    }

    /// Append arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Append `--session NAME` when a session is named.
    pub fn session(self, session: Option<&str>) -> Self {
        match session {
            Some(s) => self.args(["--session", s]),
            None => self,
        }
    }

    /// Run it to the end. Dropping the future (the client cancelled the call) sends the child
    /// SIGTERM, which it passes on to a remote command before exiting.
    pub async fn run(self) -> std::io::Result<Outcome> {
        let error_file = tempfile::NamedTempFile::new()?;
        let mut cmd = tokio::process::Command::new(self.exe);
        cmd.args(&self.args)
            .current_dir(self.dir)
            .env(ERROR_FILE_ENV, error_file.path())
            .env("NO_COLOR", "1")
            // The MCP server's own session selection must not leak into a call that names none.
            .env_remove("RCLAUDE_SESSION_ID")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let guard = TermOnDrop(child.id());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (out, err, status) = tokio::join!(
            read_tail(stdout, STDOUT_CAP),
            read_tail(stderr, STDERR_CAP),
            child.wait()
        );
        std::mem::forget(guard);
        let status = status?;
        let ((stdout, out_cut), (log, err_cut)) = (out?, err?);
        let exit_code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        });
        let error = std::fs::read(error_file.path())
            .ok()
            .filter(|b| !b.is_empty())
            .and_then(|b| serde_json::from_slice::<ReportedError>(&b).ok());
        Ok(Outcome {
            exit_code,
            stdout,
            log,
            truncated: out_cut || err_cut,
            error,
        })
    }
}

/// Sends SIGTERM to a child that is still running when its call is dropped.
struct TermOnDrop(Option<u32>);

impl Drop for TermOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: kill(2) with a pid we spawned; at worst the process is already gone.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
}

/// Read `r` to its end, keeping its last `cap` bytes; `true` when more was read than kept.
async fn read_tail(mut r: impl AsyncRead + Unpin, cap: usize) -> std::io::Result<(String, bool)> {
    let mut kept: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > cap * 2 {
            kept.drain(..kept.len() - cap);
            cut = true;
        }
    }
    if kept.len() > cap {
        kept.drain(..kept.len() - cap);
        cut = true;
    }
    Ok((String::from_utf8_lossy(&kept).into_owned(), cut))
}

/// The directory a tool call acts in: `repo` (absolute, or relative to `base`) or `base`.
pub fn resolve_dir(base: &Path, repo: Option<&str>) -> Result<PathBuf, String> {
    let dir = match repo {
        None => base.to_path_buf(),
        Some(r) if r.trim().is_empty() => return Err("`repo` is empty".into()),
        Some(r) => base.join(r),
    };
    if !dir.is_dir() {
        return Err(format!("`repo` {} is not a directory", dir.display()));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_tail_keeps_the_end_and_says_it_cut() {
        let data: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let (s, cut) = read_tail(&data[..], 1000).await.unwrap();
        assert!(cut);
        assert_eq!(s.as_bytes(), &data[data.len() - 1000..]);
        let (s, cut) = read_tail(&b"short"[..], 1000).await.unwrap();
        assert!(!cut);
        assert_eq!(s, "short");
    }

    #[test]
    fn a_repo_that_is_not_a_directory_is_refused() {
        let base = tempfile::tempdir().unwrap();
        assert_eq!(resolve_dir(base.path(), None).unwrap(), base.path());
        assert!(
            resolve_dir(base.path(), Some("nope"))
                .unwrap_err()
                .contains("nope")
        );
        assert!(resolve_dir(base.path(), Some(" ")).is_err());
    }
}
