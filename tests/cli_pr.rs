//! `rclaude pr`, `claude --pr`'s and `ci --pr`'s delivery: the sandbox pushes `rclaude/<session>`
//! to a real git smart-HTTP upstream (token required for push), then a pull request is opened
//! or updated through a local GitHub API that checks every request against GitHub's published
//! OpenAPI description. The token never reaches the sandbox's git config, a log or the output.

#![recursion_limit = "256"]

mod common;
#[path = "support/git_http.rs"]
mod git_http;
#[path = "support/github_server.rs"]
mod github_server;

use common::TestRepo;
use git_http::GitHttp;
use github_server::FakeGithub;

const CONFIG: &str = "[sandbox]\nprovider = \"local\"\n";
const TOKEN: &str = "ghp_rclaudeTestToken0123456789abcdef";
const READ_ONLY: &str = "ghp_readOnlyToken0123456789abcdefgh";

struct World {
    git: GitHttp,
    gh: Option<FakeGithub>,
    repo: TestRepo,
}

/// An upstream `acme/widget` seeded from a local repository with one commit, whose `origin`
/// points at it; with `github`, the GitHub API stand-in knows it too.
fn world(github: bool) -> World {
    let git = GitHttp::start_temp();
    git.create_repo("acme", "widget", false);
    git.add_token(TOKEN, true);
    git.add_token(READ_ONLY, false);
    let repo = TestRepo::new(CONFIG);
    repo.write("README.md", "widget\n");
    repo.commit_all("init");
    git.seed_from("acme", "widget", repo.path());
    repo.git(&["remote", "add", "origin", &git.repo_url("acme", "widget")]);
    let gh = github.then(|| {
        let gh = FakeGithub::with_git(git.root(), &git.url);
        gh.add_repo("acme", "widget", "main");
        gh.add_token(TOKEN);
        gh
    });
    World { git, gh, repo }
}

impl World {
    fn pr(&self, args: &[&str], token: Option<&str>) -> common::Run {
        let mut c = self.repo.cmd(&[&["pr"], args].concat());
        c.env_remove("GITHUB_TOKEN").env_remove("GITHUB_API_URL");
        if let Some(t) = token {
            c.env("GITHUB_TOKEN", t);
        }
        if let Some(gh) = &self.gh {
            c.env("GITHUB_API_URL", &gh.url);
        }
        common::Run(c.output().unwrap())
    }

    /// A commit of a new file `x.txt` in the sandbox.
    fn commit_in_sandbox(&self) {
        self.repo.ok(&[
            "exec",
            "--",
            "sh",
            "-c",
            "echo x > x.txt && git add x.txt && git -c user.name=Agent -c user.email=agent@example.com commit -qm x",
        ]);
    }

    fn session_branch(&self) -> String {
        let status = self.repo.ok(&["status", "--json"]).stdout();
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        let id = v["session"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {status}"));
        format!(
            "rclaude/{}",
            id.chars()
                .filter(char::is_ascii_alphanumeric)
                .take(8)
                .collect::<String>()
        )
    }

    /// Everything the sandbox's git and the agents could have written down.
    fn sandbox_text(&self) -> String {
        let mut all = String::new();
        for e in walk(&self.repo.sandboxes_dir()) {
            let name = e.to_string_lossy();
            if name.contains("/objects/") {
                continue;
            }
            if let Ok(t) = std::fs::read_to_string(&e) {
                all.push_str(&t);
            }
        }
        all
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}

fn spec_ok(test: &str) -> bool {
    github_server::github_spec_or_skip(test).is_some()
}

#[test]
fn pr_pushes_the_session_branch_opens_once_then_updates() {
    if !spec_ok("pr_pushes_the_session_branch_opens_once_then_updates") {
        return;
    }
    let w = world(true);
    w.repo.ok(&["up", "--quiet"]);
    w.repo.ok(&[
        "exec",
        "--",
        "sh",
        "-c",
        "echo fast > speed.txt && git add speed.txt && git -c user.name=Agent -c user.email=agent@example.com commit -qm 'Make it fast'",
    ]);
    let r = w.pr(&[], Some(TOKEN));
    assert_eq!(r.code(), 0, "{}{}", r.all(), w.repo.agent_logs());
    let branch = w.session_branch();
    let gh = w.gh.as_ref().unwrap();
    let pulls = gh.pulls("acme", "widget");
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let pr = &pulls[0];
    assert_eq!(pr["head"]["ref"], branch.as_str());
    assert_eq!(pr["base"]["ref"], "main");
    assert_eq!(pr["title"], "Make it fast", "one commit: its subject");
    assert_eq!(r.stdout().trim(), pr["html_url"].as_str().unwrap());
    let pushed = w
        .git
        .branch("acme", "widget", &branch)
        .expect("branch pushed");
    let sandbox_head = w
        .repo
        .ok(&["exec", "--", "git", "rev-parse", "HEAD"])
        .stdout();
    assert_eq!(pushed, sandbox_head.trim());

    // More work, second call: the same pull request, now with the new commit; no second one.
    w.repo.ok(&[
        "exec",
        "--",
        "sh",
        "-c",
        "echo faster > speed.txt && git -c user.name=Agent -c user.email=agent@example.com commit -qam 'Make it faster'",
    ]);
    let r = w.pr(&["--title", "Speed", "--json"], Some(TOKEN));
    assert_eq!(r.code(), 0, "{}", r.all());
    let out: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(out["pull_request"]["created"], false);
    assert_eq!(out["pull_request"]["number"], pr["number"]);
    assert_eq!(out["push"], "pushed");
    let pulls = gh.pulls("acme", "widget");
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0]["title"], "Speed");
    assert_ne!(w.git.branch("acme", "widget", &branch).unwrap(), pushed);

    // Nothing new: the branch is already there.
    let r = w.pr(&["--json"], Some(TOKEN));
    let out: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(out["push"], "up_to_date", "{}", r.all());
    // The agent rewrites its own pushed commit: this session's branch may be replaced (with a
    // lease on what it pushed), and still no second pull request.
    w.repo.ok(&[
        "exec",
        "--",
        "git",
        "-c",
        "user.name=Agent",
        "-c",
        "user.email=agent@example.com",
        "commit",
        "-q",
        "--amend",
        "-m",
        "Make it faster, amended",
    ]);
    let r = w.pr(&["--json"], Some(TOKEN));
    let out: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(out["push"], "forced", "{}", r.all());
    assert_eq!(gh.pulls("acme", "widget").len(), 1);

    assert_eq!(gh.violations(), Vec::<String>::new());
    // The token: not in the sandbox's git config or any file there, nor in our output.
    assert!(!w.sandbox_text().contains(TOKEN));
    assert!(!r.all().contains(TOKEN));
    let config = w
        .repo
        .ok(&["exec", "--", "git", "config", "--list", "--show-origin"])
        .stdout();
    assert!(!config.contains(TOKEN), "{config}");
    // git was asked for credentials on push only after a challenge, and got them.
    assert!(
        w.git
            .requests()
            .iter()
            .any(|q| q.is_push() && q.credentials && q.status == 200)
    );
}

#[test]
fn a_branch_rclaude_did_not_push_is_never_overwritten() {
    if !spec_ok("a_branch_rclaude_did_not_push_is_never_overwritten") {
        return;
    }
    let w = world(true);
    w.repo.ok(&["up", "--quiet"]);
    let branch = w.session_branch();
    // Someone else's unrelated branch with the same name is already upstream.
    let other = TestRepo::new(CONFIG);
    other.write("other.txt", "theirs\n");
    other.commit_all("theirs");
    let url = w.git.repo_url("acme", "widget");
    let auth_url = url.replacen("http://", &format!("http://x:{TOKEN}@"), 1);
    other.git(&[
        "push",
        "-q",
        &auth_url,
        &format!("HEAD:refs/heads/{branch}"),
    ]);
    let theirs = w.git.branch("acme", "widget", &branch).unwrap();

    w.commit_in_sandbox();
    let r = w.pr(&[], Some(TOKEN));
    assert_eq!(r.code(), 65, "{}", r.all());
    assert!(r.stderr().contains("already exists"), "{}", r.all());
    assert!(r.stderr().contains("hint:"), "{}", r.all());
    assert_eq!(w.git.branch("acme", "widget", &branch).unwrap(), theirs);
    assert!(w.gh.as_ref().unwrap().pulls("acme", "widget").is_empty());
}

#[test]
fn missing_or_read_only_tokens_are_clear_errors() {
    if !spec_ok("missing_or_read_only_tokens_are_clear_errors") {
        return;
    }
    let w = world(true);
    w.repo.ok(&["up", "--quiet"]);
    w.commit_in_sandbox();
    // GitHub upstream and no token: refused before anything is pushed.
    let r = w.pr(&[], None);
    assert_eq!(r.code(), 77, "{}", r.all());
    assert!(r.stderr().contains("GITHUB_TOKEN"), "{}", r.all());
    assert!(w.git.requests().iter().all(|q| !q.is_push()));
    // A token that may read but not push.
    let r = w.pr(&[], Some(READ_ONLY));
    assert_eq!(r.code(), 77, "{}", r.all());
    assert!(r.stderr().contains("cannot push"), "{}", r.all());
    assert!(!r.all().contains(READ_ONLY));
    assert!(
        w.git
            .requests()
            .iter()
            .any(|q| q.is_push() && q.status == 403)
    );
    assert!(w.gh.as_ref().unwrap().pulls("acme", "widget").is_empty());
}

#[test]
fn without_a_pull_request_api_the_branch_is_pushed_and_that_is_said() {
    let w = world(false);
    w.repo.ok(&["up", "--quiet"]);
    w.commit_in_sandbox();
    let r = w.pr(&[], Some(TOKEN));
    assert_eq!(r.code(), 0, "{}", r.all());
    let branch = w.session_branch();
    assert_eq!(r.stdout().trim(), branch);
    assert!(
        r.stderr().contains("no pull request API is configured"),
        "{}",
        r.all()
    );
    assert!(w.git.branch("acme", "widget", &branch).is_some());
}

#[test]
fn an_unreachable_upstream_or_a_missing_remote_is_named() {
    let w = world(false);
    w.repo.ok(&["up", "--quiet"]);
    w.repo.git(&[
        "remote",
        "set-url",
        "origin",
        "http://127.0.0.1:9/acme/widget.git",
    ]);
    let r = w.pr(&[], Some(TOKEN));
    assert_eq!(r.code(), 69, "{}", r.all());
    assert!(r.stderr().contains("cannot reach"), "{}", r.all());
    w.repo.git(&["remote", "remove", "origin"]);
    let r = w.pr(&[], Some(TOKEN));
    assert_eq!(r.code(), 78, "{}", r.all());
    assert!(r.stderr().contains("no remote \"origin\""), "{}", r.all());
}

#[test]
fn ci_pr_commits_what_the_tasks_changed_but_not_the_laptops_files() {
    let w = world(false);
    let config = format!("{CONFIG}\n[tasks.fmt]\nrun = \"echo formatted > fmt.txt\"\n");
    w.repo.write(".rclaude.toml", &config);
    w.repo.commit_all("tasks");
    w.repo.git(&[
        "push",
        "-q",
        &w.git
            .repo_url("acme", "widget")
            .replacen("http://", &format!("http://x:{TOKEN}@"), 1),
        "main",
    ]);
    // Uncommitted and untracked files here: synced to the sandbox, never proposed.
    w.repo.write("notes-private.txt", "mine\n");
    w.repo.write("README.md", "widget, edited here\n");
    let mut c = w.repo.cmd(&["ci", "fmt", "--pr", "--json"]);
    c.env("GITHUB_TOKEN", TOKEN).env_remove("GITHUB_API_URL");
    let r = common::Run(c.output().unwrap());
    assert_eq!(r.code(), 0, "{}", r.all());
    let out: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    let branch = out["pull_request"]["branch"]
        .as_str()
        .expect("proposed")
        .to_string();
    let bare = w.git.repo_path("acme", "widget");
    let show = |what: &str| {
        std::process::Command::new("git")
            .args(["--git-dir", bare.to_str().unwrap(), "show", what])
            .output()
            .unwrap()
    };
    assert_eq!(
        String::from_utf8_lossy(&show(&format!("{branch}:fmt.txt")).stdout),
        "formatted\n"
    );
    assert!(
        !show(&format!("{branch}:notes-private.txt"))
            .status
            .success()
    );
    assert_eq!(
        String::from_utf8_lossy(&show(&format!("{branch}:README.md")).stdout),
        "widget\n"
    );
}

#[test]
fn a_push_the_upstream_rejects_is_reported_with_what_to_do() {
    let w = world(false);
    // The upstream refuses every push to rclaude/* (a server-side rule, like branch protection).
    let hook = w.git.repo_path("acme", "widget").join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\nwhile read old new ref; do case \"$ref\" in refs/heads/rclaude/*) echo \"policy: no agent branches here\" >&2; exit 1;; esac; done\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    w.repo.ok(&["up", "--quiet"]);
    w.commit_in_sandbox();
    let r = w.pr(&[], Some(TOKEN));
    assert_eq!(r.code(), 65, "{}", r.all());
    assert!(r.stderr().contains("rejected the push"), "{}", r.all());
    assert!(r.stderr().contains("no agent branches here"), "{}", r.all());
    assert!(r.stderr().contains("hint:"), "{}", r.all());
    assert!(!r.all().contains(TOKEN));
    let branch = w.session_branch();
    assert!(w.git.branch("acme", "widget", &branch).is_none());
}

/// A stand-in `claude` that edits a file, as an agent would, and finishes with a summary.
const EDITING_CLAUDE: &str = r#"#!/bin/sh
if [ "$1" = "--version" ]; then echo "2.1.197 (Claude Code)"; exit 0; fi
cat >/dev/null
printf '{"type":"system","subtype":"init","session_id":"s-1"}\n'
echo "retry with backoff" > retry.txt
printf '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"duration_ms":5,"usage":{},"result":"Added retries to the client\\n\\nDetails follow."}\n'
"#;

#[test]
fn claude_pr_commits_the_runs_edits_and_proposes_them() {
    let w = world(false);
    w.repo.write("tools/claude", EDITING_CLAUDE);
    w.repo.write(
        ".rclaude.toml",
        &format!("{CONFIG}[setup]\nrun = \"mkdir -p $HOME/.local/bin && cp tools/claude $HOME/.local/bin/claude && chmod +x $HOME/.local/bin/claude\"\n"),
    );
    w.repo.commit_all("tools");
    let mut c = w.repo.cmd(&["claude", "--pr", "add retries"]);
    c.env("GITHUB_TOKEN", TOKEN)
        .env("ANTHROPIC_API_KEY", "sk-test")
        .env_remove("GITHUB_API_URL");
    let r = common::Run(c.output().unwrap());
    assert_eq!(r.code(), 0, "{}{}", r.all(), w.repo.agent_logs());
    let branch = w.session_branch();
    assert_eq!(
        r.stdout().lines().last().unwrap_or_default(),
        branch,
        "{}",
        r.all()
    );
    let bare = w.git.repo_path("acme", "widget");
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&bare)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(
        git(&["show", &format!("{branch}:retry.txt")]),
        "retry with backoff\n"
    );
    assert_eq!(
        git(&["log", "-1", "--format=%s", &branch]).trim(),
        "Added retries to the client"
    );
    // The commit is the laptop user's, and the laptop's own files (tools/, .rclaude.toml were
    // committed) are not in it beyond what the run changed.
    let files = git(&["show", "--name-only", "--format=", &branch]);
    assert_eq!(files.trim(), "retry.txt", "{files}");
}
