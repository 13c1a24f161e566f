//! Test harness: a real temporary git repository, a private RCLAUDE_HOME, and the real binary.
#![allow(dead_code)]

pub mod net;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the `rclaude` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rclaude")
}

/// A git identity for every git process the tests start (CI machines may have none).
pub fn git_env(cmd: &mut Command) -> &mut Command {
    cmd.env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
}

/// A temporary repository with its own rclaude home; its sandbox is destroyed on drop.
pub struct TestRepo {
    pub home: tempfile::TempDir,
    pub dir: tempfile::TempDir,
}

impl TestRepo {
    /// An empty repository on branch `main` with `.rclaude.toml` = `config`.
    pub fn new(config: &str) -> TestRepo {
        let t = TestRepo {
            home: tempfile::tempdir().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        };
        t.git(&["init", "-q", "-b", "main"]);
        t.write(".rclaude.toml", config);
        t
    }

    /// Root of the work tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, contents: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }

    /// Run git in the repository; panics on failure; returns stdout.
    pub fn git(&self, args: &[&str]) -> String {
        let out = git_env(Command::new("git").args(args).current_dir(self.path()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `git show REV:PATH` as bytes (binary files).
    pub fn show_bytes(&self, rev_path: &str) -> Vec<u8> {
        let out = git_env(
            Command::new("git")
                .args(["show", rev_path])
                .current_dir(self.path()),
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "git show {rev_path} failed");
        out.stdout
    }

    /// `git add -A && git commit`.
    pub fn commit_all(&self, msg: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", msg]);
    }

    /// The `rclaude` command, set up to run in this repository with a private home.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_of(Path::new(bin()), args)
    }

    /// [`Self::cmd`] with another copy of the `rclaude` binary.
    pub fn cmd_of(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(self.path())
            .env("RCLAUDE_HOME", self.home.path())
            .env("CI", "true")
            .env_remove("RCLAUDE_AGENT_BIN")
            .env_remove("RCLAUDE_TOKEN");
        git_env(&mut c);
        c
    }

    /// The default session's record in this repository's rclaude home.
    pub fn session_record(&self) -> serde_json::Value {
        let dir = self.home.path().join("state/repos");
        let f = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "json"))
            .unwrap();
        serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap()
    }

    /// The repository's session id (from its session record).
    pub fn session_id(&self) -> String {
        self.session_record()["session_id"]
            .as_str()
            .expect("a session record names its session")
            .to_string()
    }

    /// Run the shell `script` in the sandbox (`exec --no-sync -- sh -c SCRIPT`), asserting
    /// success; returns its stdout.
    pub fn sh(&self, script: &str) -> String {
        self.ok(&["exec", "--no-sync", "--", "sh", "-c", script])
            .stdout()
    }

    /// Run `rclaude ARGS` and return its output.
    pub fn rclaude(&self, args: &[&str]) -> Run {
        Run(self.cmd(args).output().unwrap())
    }

    /// Run `rclaude ARGS`, asserting success.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.rclaude(args);
        assert_eq!(
            r.code(),
            0,
            "rclaude {args:?} failed:\n{}{}",
            r.all(),
            self.agent_logs()
        );
        r
    }

    /// The logs of this test's local agents, for failure messages (a sandbox command that
    /// failed often says why only there).
    pub fn agent_logs(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.sandboxes_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let log = e.path().join("agent.log");
            if let Ok(text) = std::fs::read_to_string(&log) {
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                out.push_str(&format!("--- {} (last lines)\n", log.display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The local sandboxes directory of this test's home.
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.home.path().join("data/sandboxes")
    }

    /// The directory of this test's (first) local sandbox.
    pub fn sandbox_dir(&self) -> PathBuf {
        std::fs::read_dir(self.sandboxes_dir())
            .unwrap()
            .next()
            .expect("a local sandbox")
            .unwrap()
            .path()
    }

    /// The process id of the agent of this test's local sandbox (its `agent.json`).
    pub fn agent_pid(&self) -> i32 {
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.sandbox_dir().join("agent.json")).unwrap())
                .unwrap();
        state["pid"].as_i64().unwrap() as i32
    }
}

impl Drop for TestRepo {
    fn drop(&mut self) {
        let _ = self.cmd(&["down", "--yes", "--discard"]).output();
    }
}

/// A finished `rclaude` run.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// stdout and stderr, for failure messages.
    pub fn all(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout(), self.stderr())
    }
}

/// A stand-in `claude` in the sandbox: answers `--version`, then runs until `~/go` exists and
/// exits with the code in `~/code`.
pub const STAND_IN_CLAUDE: &str = r#"#!/bin/sh
if [ "$1" = "--version" ]; then echo "2.1.197 (Claude Code)"; exit 0; fi
cat >/dev/null
printf '{"type":"system","subtype":"init","session_id":"s-1"}\n'
while [ ! -e "$HOME/go" ]; do sleep 0.05; done
printf '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"duration_ms":5,"usage":{},"result":"done"}\n'
exit "$(cat "$HOME/code" 2>/dev/null || echo 0)"
"#;

/// Every file under `dir` (symlinks not followed).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_symlink() {
            continue;
        }
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The one file under `dir` whose path ends with `suffix` (e.g. `.git/rclaude/synced`).
pub fn find_in(dir: &Path, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| p.ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "files ending with {suffix}: {found:?}");
    found.into_iter().next().unwrap()
}
