//! `rclaude start URL[@REF]`: a session whose sandbox clones the repository from a real git
//! smart-HTTP server, reached afterwards with `--session ID` from a directory that is not a
//! repository; bad input leaves nothing running; `pull --session` brings the work into a
//! clone; `pr --session` pushes it upstream; `down --session` refuses to lose unpushed work.

mod common;
#[path = "support/git_http.rs"]
mod git_http;

use std::path::Path;
use std::process::Command;

use common::{Run, TestRepo, git_env};
use git_http::GitHttp;

const TOKEN: &str = "ghp_startTestToken0123456789abcdefg";
const COMMIT: &str = "git -c user.name=Agent -c user.email=agent@example.com commit -qam";

/// A private rclaude home and a working directory that is not a repository.
struct Home {
    home: tempfile::TempDir,
    cwd: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            home: tempfile::tempdir().unwrap(),
            cwd: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd_in(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(common::bin());
        c.args(args)
            .current_dir(dir)
            .env("RCLAUDE_HOME", self.home.path())
            .env("CI", "true")
            .env_remove("RCLAUDE_TOKEN")
            .env_remove("RCLAUDE_SERVER")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_API_URL")
            .env_remove("RCLAUDE_SESSION_ID");
        git_env(&mut c);
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        Run(self.cmd_in(self.cwd.path(), args).output().unwrap())
    }

    fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code(), 0, "rclaude {args:?}:\n{}", r.all());
        r
    }

    fn sandboxes(&self) -> usize {
        std::fs::read_dir(self.home.path().join("data/sandboxes"))
            .map(|d| d.flatten().filter(|e| e.path().is_dir()).count())
            .unwrap_or(0)
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        // Stop whatever a failed test left (local agents).
        let dir = self.home.path().join("state/sessions");
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path().join("session.json"))
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(id) = v["session_id"].as_str()
            {
                let _ = self
                    .cmd_in(
                        self.cwd.path(),
                        &["down", "--yes", "--discard", "--session", id],
                    )
                    .output();
            }
        }
    }
}

/// An upstream `acme/widget` with `main` (two commits, a `v1` tag on the first) and a
/// `feature` branch; `config` is committed as `.rclaude.toml` when given.
fn upstream(private: bool, config: Option<&str>) -> (GitHttp, TestRepo) {
    let git = GitHttp::start_temp();
    git.create_repo("acme", "widget", private);
    git.add_token(TOKEN, true);
    let src = TestRepo::new("");
    std::fs::remove_file(src.path().join(".rclaude.toml")).unwrap();
    src.write("README.md", "one\n");
    src.write(".gitignore", ".setup-ran\n");
    if let Some(c) = config {
        src.write(".rclaude.toml", c);
    }
    src.commit_all("first");
    src.git(&["tag", "v1"]);
    src.write("README.md", "two\n");
    src.commit_all("second");
    src.git(&["checkout", "-q", "-b", "feature"]);
    src.write("feature.txt", "f\n");
    src.commit_all("feature work");
    src.git(&["checkout", "-q", "main"]);
    git.seed_from("acme", "widget", src.path());
    (git, src)
}

#[test]
fn start_clones_and_later_commands_reach_the_session_from_anywhere() {
    let (git, _src) = upstream(false, Some("[setup]\nrun = \"echo set-up > .setup-ran\"\n"));
    let h = Home::new();
    let url = git.repo_url("acme", "widget");
    let r = h.ok(&["start", &url]);
    let id = r.stdout().trim().to_string();
    assert_eq!(id.len(), 36, "{}", r.all());
    let short = &id[..8];
    let log = h.ok(&[
        "exec",
        "--session",
        short,
        "--",
        "git",
        "log",
        "--format=%s",
    ]);
    assert_eq!(log.stdout(), "second\nfirst\n");
    // The repository's config applied: [setup] ran.
    let ran = h.ok(&["exec", "--session", short, "--", "cat", ".setup-ran"]);
    assert_eq!(ran.stdout(), "set-up\n");
    let status = h.ok(&["status", "--session", short]).stdout();
    assert!(status.contains("acme/widget"), "{status}");
    assert!(
        status.contains("the repository's .rclaude.toml"),
        "{status}"
    );

    // Work in the sandbox comes back into any clone of the repository.
    h.ok(&[
        "exec",
        "--session",
        short,
        "--",
        "sh",
        "-c",
        &format!("echo three > README.md && {COMMIT} 'third'"),
    ]);
    let clone = tempfile::tempdir().unwrap();
    let out = git_env(
        Command::new("git")
            .args(["clone", "-q", &url, "."])
            .current_dir(clone.path()),
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    let r = Run(h
        .cmd_in(clone.path(), &["pull", "--session", short])
        .output()
        .unwrap());
    assert_eq!(r.code(), 0, "{}", r.all());
    let shown = git_env(
        Command::new("git")
            .args(["show", "rclaude/main:README.md"])
            .current_dir(clone.path()),
    )
    .output()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&shown.stdout), "three\n");

    // Unpushed work: down refuses; pr delivers it; then down destroys.
    let r = h.run(&["down", "--yes", "--session", short]);
    assert_eq!(r.code(), 65, "{}", r.all());
    assert!(r.stderr().contains("never pushed"), "{}", r.all());
    let r = Run(h
        .cmd_in(h.cwd.path(), &["pr", "--session", short])
        .env("GITHUB_TOKEN", TOKEN)
        .output()
        .unwrap());
    assert_eq!(r.code(), 0, "{}", r.all());
    let branch = r.stdout().trim().to_string();
    assert!(branch.starts_with("rclaude/"), "{}", r.all());
    assert!(git.branch("acme", "widget", &branch).is_some());
    h.ok(&["down", "--yes", "--session", short]);
    assert_eq!(h.sandboxes(), 0);
    assert_ne!(h.run(&["status", "--session", short]).code(), 0);
}

#[test]
fn start_at_a_ref_and_without_a_config() {
    let (git, _src) = upstream(false, None);
    let h = Home::new();
    let url = git.repo_url("acme", "widget");
    for (at, want, branch) in [
        ("feature", "feature work", "feature\n"),
        ("v1", "first", "HEAD\n"),
    ] {
        let id = h
            .ok(&["start", &format!("{url}@{at}")])
            .stdout()
            .trim()
            .to_string();
        let log = h.ok(&[
            "exec",
            "--session",
            &id,
            "--",
            "git",
            "log",
            "-1",
            "--format=%s",
        ]);
        assert_eq!(log.stdout().trim(), want);
        let b = h.ok(&[
            "exec",
            "--session",
            &id,
            "--",
            "git",
            "rev-parse",
            "--abbrev-ref",
            "HEAD",
        ]);
        assert_eq!(b.stdout(), branch);
        let status = h.ok(&["status", "--session", &id]).stdout();
        assert!(status.contains("built-in defaults"), "{status}");
        h.ok(&["down", "--yes", "--discard", "--session", &id]);
    }
}

#[test]
fn bad_urls_refs_and_missing_tokens_leave_nothing_running() {
    let (git, _src) = upstream(true, None);
    let h = Home::new();
    let url = git.repo_url("acme", "widget");

    let r = h.run(&["start", &git.repo_url("acme", "nothing-here")]);
    assert_eq!(r.code(), 64, "{}", r.all());
    assert!(
        r.stderr().contains("not a git repository") || r.stderr().contains("not found"),
        "{}",
        r.all()
    );
    assert_eq!(h.sandboxes(), 0);

    // Private, no token.
    let r = h.run(&["start", &url]);
    assert_eq!(r.code(), 77, "{}", r.all());
    assert!(r.stderr().contains("GITHUB_TOKEN"), "{}", r.all());
    assert_eq!(h.sandboxes(), 0);

    // With the token: an unknown REF.
    let with_token = |args: &[&str]| {
        Run(h
            .cmd_in(h.cwd.path(), args)
            .env("GITHUB_TOKEN", TOKEN)
            .output()
            .unwrap())
    };
    let r = with_token(&["start", &format!("{url}@no-such-branch")]);
    assert_eq!(r.code(), 64, "{}", r.all());
    assert!(r.stderr().contains("no-such-branch"), "{}", r.all());
    assert_eq!(h.sandboxes(), 0);
    let r = h.run(&["start", "github.com/acme/widget@bad..ref"]);
    assert_eq!(r.code(), 64, "{}", r.all());

    // The token clones the private repository and is written nowhere in the sandbox.
    let r = with_token(&["start", &url, "--json"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    let id = v["session"].as_str().unwrap().to_string();
    assert_eq!(v["origin"]["url"], url.as_str());
    let config = h
        .ok(&["exec", "--session", &id, "--", "git", "config", "--list"])
        .stdout();
    assert!(!config.contains(TOKEN), "{config}");
    let mut leaked = Vec::new();
    let mut stack = vec![h.home.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .is_ok_and(|b| b.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()))
            {
                leaked.push(p);
            }
        }
    }
    assert!(leaked.is_empty(), "token written to {leaked:?}");
    assert!(!r.all().contains(TOKEN));
    h.ok(&["down", "--yes", "--discard", "--session", &id]);
}
