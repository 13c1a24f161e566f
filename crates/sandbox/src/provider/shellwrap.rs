//! Shell plumbing for providers whose sandboxes run only command strings or argv, with no cwd,
//! env or pid in their exec protocol (Daytona sessions, Northflank exec): POSIX quoting, the
//! wrapper script that applies an [`ExecRequest`]'s cwd, env and stdin, and the start marker it
//! prints so the client learns the process id and knows the command really started.
//!
//! The wrapper runs under `bash -c`. It enters the working directory (or reports that it cannot,
//! before printing anything on stdout), exports the env, points stdin at a file or `/dev/null`
//! when asked, prints `<nonce> <pid>\n` on stdout and `exec`s the command, so the pid printed is
//! the command's own. Shell commands run as `bash -l -c`, as E2B's SDK runs them.

use crate::provider::{Command, ExecRequest, SandboxError};

pub use crate::shell::{quote, quote_all};

/// Environment names a shell can export: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn check_env_name(name: &str) -> Result<(), SandboxError> {
    let mut bytes = name.bytes();
    let ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SandboxError::InvalidArgument(format!(
            "environment variable name {name:?} is not valid (letters, digits and '_', not starting with a digit)"
        )))
    }
}

/// Where the wrapped command's stdin comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinSource<'a> {
    /// `/dev/null`: reads see end-of-file at once.
    Closed,
    /// A file in the sandbox, opened and then deleted before the command starts.
    File(&'a str),
    /// Whatever the exec channel provides (the provider feeds and closes it).
    Channel,
}

/// A wrapper script and the marker it prints once the command is about to start.
#[derive(Debug, Clone)]
pub struct Wrapper {
    /// The script, to run as `bash -c SCRIPT`.
    pub script: String,
    /// Printed on stdout, followed by a space, the pid and a newline.
    pub nonce: String,
    /// The working directory the script enters.
    pub cwd: String,
}

impl Wrapper {
    /// `bash -c '<script>'` as one shell command line.
    pub fn command_line(&self) -> String {
        format!("bash -c {}", quote(&self.script))
    }

    /// `["bash", "-c", script]`.
    pub fn argv(&self) -> Vec<String> {
        vec!["bash".into(), "-c".into(), self.script.clone()]
    }
}

/// Message the wrapper prints on stderr when the working directory cannot be entered.
pub const CWD_ERROR: &str = "rclaude: cannot enter the working directory";

/// The wrapper for `req`, with `default_cwd` when the request names none.
pub fn wrap(
    req: &ExecRequest,
    default_cwd: &str,
    stdin: StdinSource<'_>,
) -> Result<Wrapper, SandboxError> {
    let cwd = req.cwd.clone().unwrap_or_else(|| default_cwd.to_string());
    if cwd.is_empty() || cwd.contains('\0') {
        return Err(SandboxError::InvalidArgument(format!(
            "working directory {cwd:?} is not a path"
        )));
    }
    let nonce = format!("rclaude-start-{}", uuid::Uuid::new_v4().simple());
    let mut s = String::new();
    s.push_str(&format!(
        "cd -- {q} 2>/dev/null || {{ printf '%s %s\\n' {msg} {q} >&2; exit 1; }}\n",
        q = quote(&cwd),
        msg = quote(CWD_ERROR)
    ));
    for (k, v) in &req.env {
        check_env_name(k)?;
        if v.contains('\0') {
            return Err(SandboxError::InvalidArgument(format!(
                "environment variable {k} contains a NUL byte"
            )));
        }
        s.push_str(&format!("export {}\n", quote(&format!("{k}={v}"))));
    }
    match stdin {
        StdinSource::Closed => s.push_str("exec 0</dev/null\n"),
        StdinSource::File(path) => s.push_str(&format!(
            "exec 0<{q} || exit 1\nrm -f -- {q}\n",
            q = quote(path)
        )),
        StdinSource::Channel => {}
    }
    s.push_str(&format!("printf '%s %s\\n' {nonce} \"$$\"\n"));
    match &req.command {
        Command::Shell(cmd) => {
            if cmd.contains('\0') {
                return Err(SandboxError::InvalidArgument(
                    "the command contains a NUL byte".into(),
                ));
            }
            s.push_str(&format!("exec bash -l -c {}\n", quote(cmd)));
        }
        Command::Argv(argv) => {
            if argv.is_empty() {
                return Err(SandboxError::InvalidArgument("empty command".into()));
            }
            if argv.iter().any(|a| a.contains('\0')) {
                return Err(SandboxError::InvalidArgument(
                    "an argument contains a NUL byte".into(),
                ));
            }
            s.push_str(&format!("exec {}\n", quote_all(argv)));
        }
    }
    Ok(Wrapper {
        script: s,
        nonce,
        cwd,
    })
}

/// Longest stdout the detector holds while looking for the marker.
const MAX_PRELUDE: usize = 64 * 1024;

/// What [`StartDetector::push`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// No marker yet; keep feeding.
    Pending,
    /// The command started with this pid; `output` is the stdout around the marker (anything a
    /// shell start-up file printed before it, then the command's first output).
    Started { pid: u32, output: Vec<u8> },
}

/// Finds the wrapper's start marker in the first stdout bytes.
#[derive(Debug)]
pub struct StartDetector {
    nonce: Vec<u8>,
    buf: Vec<u8>,
}

impl StartDetector {
    pub fn new(nonce: &str) -> Self {
        StartDetector {
            nonce: nonce.as_bytes().to_vec(),
            buf: Vec::new(),
        }
    }

    /// Feed stdout bytes received before the marker was found.
    pub fn push(&mut self, data: &[u8]) -> Result<Detected, SandboxError> {
        self.buf.extend_from_slice(data);
        if let Some(at) = find(&self.buf, &self.nonce) {
            let rest = &self.buf[at + self.nonce.len()..];
            if let Some(nl) = rest.iter().position(|b| *b == b'\n') {
                let line = String::from_utf8_lossy(&rest[..nl]);
                let pid = line.trim().parse::<u32>().map_err(|_| {
                    SandboxError::Protocol(format!("unreadable start marker {line:?}"))
                })?;
                let mut output = self.buf[..at].to_vec();
                output.extend_from_slice(&rest[nl + 1..]);
                self.buf.clear();
                return Ok(Detected::Started { pid, output });
            }
        }
        if self.buf.len() > MAX_PRELUDE {
            return Err(SandboxError::Protocol(
                "the command's start marker did not appear in its first 64 KiB of output (does a shell start-up file print that much?)".into(),
            ));
        }
        Ok(Detected::Pending)
    }

    /// Stdout seen so far (for the error when the command never started).
    pub fn seen(&self) -> &[u8] {
        &self.buf
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The error for a command whose wrapper exited before the start marker.
pub fn not_started(cwd: &str, stderr: &[u8], code: Option<i32>) -> SandboxError {
    let text = String::from_utf8_lossy(stderr);
    if text.contains(CWD_ERROR) {
        return SandboxError::NotFound(format!("working directory {cwd}"));
    }
    let text = text.trim();
    SandboxError::Remote {
        code: "not_started".into(),
        message: format!(
            "the process did not start{}{}",
            code.map(|c| format!(" (exit code {c})"))
                .unwrap_or_default(),
            if text.is_empty() {
                String::new()
            } else {
                format!(": {}", text.chars().take(500).collect::<String>())
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn bash(script: &str, stdin: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin);
        child.wait_with_output().unwrap()
    }

    #[test]
    fn quoting_survives_the_shell() {
        for word in [
            "plain", "", "it's", "a b", "$HOME", "`x`", "\\n", "é", "-n", "a\nb",
        ] {
            let out = bash(&format!("printf '%s' {}", quote(word)), b"");
            assert_eq!(String::from_utf8(out.stdout).unwrap(), word, "{word:?}");
        }
    }

    #[test]
    fn env_names_are_checked() {
        assert!(check_env_name("A_1").is_ok());
        assert!(check_env_name("_x").is_ok());
        for bad in ["", "1A", "A-B", "A B", "A=B"] {
            assert!(check_env_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_wrapper_applies_cwd_env_and_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().join("it's here");
        std::fs::create_dir(&cwd).unwrap();
        let mut env = BTreeMap::new();
        env.insert("GREETING".to_string(), "hi 'there' $x".to_string());
        let req = ExecRequest::shell("pwd; echo \"$GREETING\"; cat")
            .cwd(cwd.to_str().unwrap())
            .env(env);
        let w = wrap(&req, "/", StdinSource::Channel).unwrap();
        let out = bash(&w.script, b"from stdin");
        let mut det = StartDetector::new(&w.nonce);
        match det.push(&out.stdout).unwrap() {
            Detected::Started { pid, output } => {
                assert!(pid > 0);
                assert_eq!(
                    String::from_utf8(output).unwrap(),
                    format!("{}\nhi 'there' $x\nfrom stdin", cwd.display())
                );
            }
            other => panic!("{other:?}"),
        }
        // A file as stdin is read, then removed.
        let file = dir.path().join("stdin");
        std::fs::write(&file, b"file input").unwrap();
        let req = ExecRequest::argv(["cat"]);
        let w = wrap(&req, "/", StdinSource::File(file.to_str().unwrap())).unwrap();
        let out = bash(&w.script, b"ignored");
        assert!(String::from_utf8_lossy(&out.stdout).ends_with("\nfile input"));
        assert!(!file.exists());
        // Closed stdin reads as empty.
        let w = wrap(&ExecRequest::argv(["cat"]), "/", StdinSource::Closed).unwrap();
        let out = bash(&w.script, b"ignored");
        let mut det = StartDetector::new(&w.nonce);
        assert!(
            matches!(det.push(&out.stdout).unwrap(), Detected::Started { output, .. } if output.is_empty())
        );
    }

    #[test]
    fn a_missing_cwd_fails_before_the_marker() {
        let req = ExecRequest::shell("echo never").cwd("/definitely/not/here");
        let w = wrap(&req, "/", StdinSource::Closed).unwrap();
        let out = bash(&w.script, b"");
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty());
        let e = not_started(&w.cwd, &out.stderr, out.status.code());
        assert!(
            matches!(&e, SandboxError::NotFound(m) if m.contains("/definitely/not/here")),
            "{e}"
        );
    }

    #[test]
    fn argv_is_not_reinterpreted() {
        let req = ExecRequest::argv(["printf", "%s|", "a b", "$HOME", "*"]);
        let w = wrap(&req, "/", StdinSource::Closed).unwrap();
        let out = bash(&w.script, b"");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.ends_with("\na b|$HOME|*|"), "{text}");
        assert!(
            wrap(
                &ExecRequest::argv(Vec::<String>::new()),
                "/",
                StdinSource::Closed
            )
            .is_err()
        );
        let mut env = BTreeMap::new();
        env.insert("BAD-NAME".to_string(), "x".to_string());
        assert!(
            wrap(
                &ExecRequest::shell("true").env(env),
                "/",
                StdinSource::Closed
            )
            .is_err()
        );
    }

    #[test]
    fn the_detector_handles_split_markers_and_prelude() {
        let mut d = StartDetector::new("rclaude-start-abc");
        assert_eq!(d.push(b"noise\nrclaude-st").unwrap(), Detected::Pending);
        assert_eq!(d.push(b"art-abc 12").unwrap(), Detected::Pending);
        assert_eq!(
            d.push(b"3\nfirst").unwrap(),
            Detected::Started {
                pid: 123,
                output: b"noise\nfirst".to_vec()
            }
        );
        let mut d = StartDetector::new("n");
        assert!(d.push(b"n x\n").is_err());
        let mut d = StartDetector::new("rclaude-start-x");
        assert!(d.push(&vec![b'a'; MAX_PRELUDE + 1]).is_err());
    }
}
