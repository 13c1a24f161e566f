//! The real `rclaude` binary with `provider = "e2b"` against a local E2B
//! (`support/e2b_server.rs`), pointed at it with E2B's own override variables (`E2B_API_URL`,
//! `E2B_SANDBOX_URL`): up → run → ls → pause → status → resume → exec → pull → down; fork.

mod common;
#[path = "support/e2b_server.rs"]
mod e2b_server;

use common::{Run, TestRepo};
use e2b_server::{FakeE2b, FakeOptions, Injection, Route};
use serde_json::{Value, json};

/// A repository configured for E2B, a fake E2B whose sandboxes keep their files in `vm`
/// (like a VM's disk), and the workdir inside it.
struct T {
    repo: TestRepo,
    fake: FakeE2b,
    workdir: String,
    _vm: tempfile::TempDir,
}

fn setup(extra_sandbox: &str, rest: &str) -> T {
    let vm = tempfile::tempdir().unwrap();
    let root = vm.path().canonicalize().unwrap();
    let workdir = format!("{}/home/user/repo", root.display());
    let fake = FakeE2b::start_with(FakeOptions {
        shared_root: Some(root),
        ..FakeOptions::default()
    });
    let config = format!(
        "[sandbox]\nprovider = \"e2b\"\nimage = \"base\"\ntimeout = \"30m\"\nworkdir = \"{workdir}\"\n{extra_sandbox}\n{rest}"
    );
    let repo = TestRepo::new(&config);
    repo.write("README.md", "hello from the laptop\n");
    repo.commit_all("initial");
    T {
        repo,
        fake,
        workdir,
        _vm: vm,
    }
}

const TASKS: &str = r#"
[env]
GREETING = "hi"

[tasks.build]
run = [
  "echo from-sandbox > built.txt",
  "if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then git add built.txt && git -c user.name=Sandbox -c user.email=sandbox@example.com commit -qm sandbox-commit; fi",
  "echo built $GREETING",
]
"#;

impl T {
    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.repo.cmd(args);
        for var in [
            "E2B_DOMAIN",
            "E2B_DEBUG",
            "E2B_CONNECTION_RETRIES",
            "E2B_API_KEY",
        ] {
            c.env_remove(var);
        }
        c.envs(self.fake.env());
        c
    }

    fn rc(&self, args: &[&str]) -> Run {
        Run(self.cmd(args).output().unwrap())
    }

    fn ok(&self, args: &[&str]) -> Run {
        let r = self.rc(args);
        assert_eq!(r.code(), 0, "rclaude {args:?} failed:\n{}", r.all());
        r
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"]).stdout()).unwrap()
    }

    fn only_sandbox(&self) -> e2b_server::SandboxView {
        let all = self.fake.sandboxes();
        assert_eq!(all.len(), 1, "{all:?}");
        all.into_iter().next().unwrap()
    }
}

impl Drop for T {
    /// Destroy a sandbox a failed test left behind while the fake is still up (the repository's
    /// own clean-up runs without the E2B variables).
    fn drop(&mut self) {
        let _ = self.cmd(&["down", "--yes", "--discard"]).output();
    }
}

#[test]
fn up_run_pause_resume_exec_pull_down() {
    let t = setup("", TASKS);

    // up: creates the sandbox with rclaude's metadata and syncs the work tree into the workdir.
    let up = t.ok(&["up"]);
    let sbx = t.only_sandbox();
    assert!(up.stderr().contains(&sbx.id), "{}", up.all());
    let repo_name = t
        .repo
        .path()
        .canonicalize()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(sbx.metadata.get("rclaude.repo"), Some(&repo_name));
    assert_eq!(
        sbx.metadata.get("rclaude.branch").map(String::as_str),
        Some("main")
    );
    assert_eq!(
        sbx.metadata.get("rclaude.managed").map(String::as_str),
        Some("true")
    );
    assert_eq!(sbx.template_id, "rki5dems9wqfm4r03t7g");
    assert!(
        sbx.auto_pause,
        "auto_pause defaults to true in .rclaude.toml"
    );
    let status = t.status();
    assert_eq!(status["provider"], "e2b");
    assert_eq!(status["sandbox"], sbx.id.as_str());
    assert_eq!(status["state"], "running");
    assert_eq!(status["workdir"], t.workdir.as_str());
    assert_eq!(
        sbx.metadata.get("rclaude.session").map(String::as_str),
        status["session"].as_str()
    );
    assert!(status["end_at"].is_string(), "time left is known: {status}");
    assert_eq!(status["capabilities"]["pause_keeps_memory"], true);
    assert_eq!(
        std::fs::read_to_string(format!("{}/README.md", t.workdir)).unwrap(),
        "hello from the laptop\n"
    );

    // run: the task runs in the sandbox, with [env].
    let r = t.ok(&["run", "build"]);
    assert!(r.stdout().contains("built hi"), "{}", r.all());
    assert!(std::path::Path::new(&format!("{}/built.txt", t.workdir)).exists());

    // ls: the account's rclaude sandboxes, this repository's marked.
    let ls = t.ok(&["ls"]);
    assert!(
        ls.stdout().lines().any(|l| l.starts_with('*')
            && l.contains(&sbx.id)
            && l.contains("running")
            && l.contains(&repo_name)),
        "{}",
        ls.all()
    );
    let listed: Value = serde_json::from_str(&t.ok(&["ls", "--json"]).stdout()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], sbx.id.as_str());
    assert_eq!(listed[0]["current"], true);
    assert_eq!(listed[0]["branch"], "main");

    // pause: the agent stops, files stay, status says paused.
    t.ok(&["pause"]);
    let paused = t.only_sandbox();
    assert_eq!(paused.state, "paused");
    assert_eq!(paused.agent_pid, None);
    let status = t.status();
    assert_eq!(status["state"], "paused");
    assert!(status["end_at"].is_null(), "{status}");

    // resume: connect resumes it (201).
    t.ok(&["resume"]);
    assert_eq!(t.only_sandbox().state, "running");
    let connects = t
        .fake
        .requests_to("POST", &format!("/v2/sandboxes/{}/connect", sbx.id));
    assert!(connects.iter().any(|r| r.status == 201), "{connects:?}");
    assert!(
        connects
            .iter()
            .all(|r| r.body.as_ref().unwrap()["timeout"] == 1800),
        "the config's timeout is kept"
    );

    // exec: the file the task made survived the pause.
    let r = t.ok(&["exec", "--", "cat built.txt && echo $GREETING"]);
    assert_eq!(r.stdout(), "from-sandbox\nhi\n");
    let r = t.rc(&["exec", "--", "exit 7"]);
    assert_eq!(r.code(), 7, "{}", r.all());

    // pull: with the git-bundle sync the sandbox's commit comes back as rclaude/main; with the
    // plain-copy placeholder there is nothing to bring back, and pull says so by succeeding.
    let pull = t.ok(&["pull"]);
    let branches = t.repo.git(&["branch", "--list", "rclaude/*"]);
    if !branches.trim().is_empty() {
        let log = t.repo.git(&["log", "--format=%s", "rclaude/main"]);
        assert!(log.contains("sandbox-commit"), "{log}\n{}", pull.all());
        let file = t.repo.git(&["show", "rclaude/main:built.txt"]);
        assert_eq!(file, "from-sandbox\n");
    }

    // down: the sandbox is killed and its disk removed.
    t.ok(&["down", "--yes"]);
    assert!(t.fake.sandboxes().is_empty());
    assert_eq!(
        t.fake
            .requests_to("DELETE", &format!("/sandboxes/{}", sbx.id))
            .len(),
        1
    );
    assert!(!std::path::Path::new(&format!("{}/README.md", t.workdir)).exists());
    assert!(t.ok(&["status"]).stdout().contains("No sandbox"));
    let ls = t.ok(&["ls", "--provider", "e2b"]);
    assert!(ls.stdout().contains("No rclaude sandboxes"), "{}", ls.all());
}

#[test]
fn an_expired_sandbox_is_replaced_and_resynced() {
    let t = setup("auto_pause = false", TASKS);
    t.ok(&["up"]);
    let first = t.only_sandbox();
    assert!(!first.auto_pause);
    t.fake.expire(&first.id);

    let status = t.status();
    assert_eq!(
        status["state"], "gone",
        "E2B killed it at its timeout: {status}"
    );
    // Commands that need the sandbox say what happened and what to do.
    let r = t.rc(&["exec", "--no-sync", "--", "true"]);
    assert_eq!(r.code(), 69, "{}", r.all());
    assert!(r.stderr().contains("rclaude up"), "{}", r.all());

    let up = t.ok(&["up"]);
    assert!(up.stderr().contains("no longer exists"), "{}", up.all());
    let second = t.only_sandbox();
    assert_ne!(second.id, first.id);
    assert_eq!(
        std::fs::read_to_string(format!("{}/README.md", t.workdir)).unwrap(),
        "hello from the laptop\n",
        "re-synced"
    );
    assert_eq!(t.status()["sandbox"], second.id.as_str());
    t.ok(&["down", "--yes"]);
}

#[test]
fn an_auto_paused_sandbox_is_resumed_by_the_next_command() {
    let t = setup("", TASKS);
    t.ok(&["up"]);
    let sbx = t.only_sandbox();
    t.ok(&["exec", "--", "echo kept > note.txt"]);
    t.fake.expire(&sbx.id);
    assert_eq!(t.status()["state"], "paused");
    let r = t.ok(&["exec", "--no-sync", "--", "cat note.txt"]);
    assert_eq!(r.stdout(), "kept\n");
    assert_eq!(t.only_sandbox().state, "running");
    t.ok(&["down", "--yes"]);
}

#[test]
fn api_key_problems_are_explained() {
    let t = setup("", "");
    let r = Run(t.cmd(&["up"]).env_remove("E2B_API_KEY").output().unwrap());
    assert_eq!(r.code(), 78, "{}", r.all());
    assert!(r.stderr().contains("E2B_API_KEY is not set"), "{}", r.all());

    let r = Run(t
        .cmd(&["up"])
        .env("E2B_API_KEY", "e2b_revoked")
        .output()
        .unwrap());
    assert_eq!(r.code(), 77, "{}", r.all());
    assert!(
        r.stderr().contains("Invalid API key") && r.stderr().contains("hint:"),
        "{}",
        r.all()
    );
    assert!(!r.all().contains("e2b_revoked"), "the key is never printed");
    assert!(t.fake.sandboxes().is_empty());
}

#[test]
fn an_unknown_template_is_explained() {
    let t = setup("", "");
    t.repo.write(
        ".rclaude.toml",
        &t.repo
            .read(".rclaude.toml")
            .replace("image = \"base\"", "image = \"my-missing-template\""),
    );
    let r = t.rc(&["up"]);
    assert_eq!(r.code(), 69, "{}", r.all());
    assert!(
        r.stderr()
            .contains("template \"my-missing-template\" does not exist"),
        "{}",
        r.all()
    );
    assert!(t.fake.sandboxes().is_empty());
    assert!(t.ok(&["status"]).stdout().contains("No sandbox"));
}

#[test]
fn ls_lists_local_sandboxes_too() {
    let repo = TestRepo::new("[sandbox]\nprovider = \"local\"\n");
    repo.write("README.md", "x\n");
    repo.commit_all("initial");
    let empty = repo.ok(&["ls"]);
    assert!(
        empty
            .stdout()
            .contains("No rclaude sandboxes on provider \"local\""),
        "{}",
        empty.all()
    );
    repo.ok(&["up"]);
    let listed: Value = serde_json::from_str(&repo.ok(&["ls", "--json"]).stdout()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["provider"], "local");
    assert_eq!(listed[0]["state"], "running");
    assert_eq!(listed[0]["current"], true);
    let table = repo.ok(&["ls"]).stdout();
    let id = listed[0]["id"].as_str().unwrap();
    assert!(
        table.lines().any(|l| l.starts_with('*') && l.contains(id)),
        "{table}"
    );
    // Outside any repository, --provider picks the provider and nothing is marked.
    let elsewhere = tempfile::tempdir().unwrap();
    let r = Run(repo
        .cmd(&[
            "-C",
            elsewhere.path().to_str().unwrap(),
            "ls",
            "--provider",
            "local",
            "--json",
        ])
        .output()
        .unwrap());
    assert_eq!(r.code(), 0, "{}", r.all());
    let listed: Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(listed[0]["current"], false);
    repo.ok(&["down", "--yes"]);
}

const SETUP_COUNTS_RUNS: &str = "[setup]\nrun = \"echo ran >> $HOME/setup-runs\"\n";

#[test]
fn fork_copies_a_warm_sandbox_without_running_setup_again() {
    let t = setup("", SETUP_COUNTS_RUNS);
    t.ok(&["up"]);
    let src = t.only_sandbox();
    // An uncommitted edit, made in the sandbox.
    t.ok(&["exec", "--no-sync", "--", "echo edited > README.md"]);

    let r = t.ok(&["fork", "f1"]);
    assert!(r.stderr().contains("Forking sandbox"), "{}", r.all());
    // One fork request, with the source's lifetime (30m) and count 1; the source keeps running.
    let forks = t
        .fake
        .requests_to("POST", &format!("/sandboxes/{}/fork", src.id));
    assert_eq!(forks.len(), 1, "{forks:?}");
    assert_eq!(forks[0].status, 201);
    assert_eq!(
        forks[0].body,
        Some(json!({ "timeout": 1800, "count": 1 })),
        "{forks:?}"
    );
    let all = t.fake.sandboxes();
    assert_eq!(all.len(), 2, "{all:?}");
    let fork = all.iter().find(|s| s.id != src.id).unwrap().clone();
    assert_eq!(fork.forked_from.as_deref(), Some(src.id.as_str()));
    assert_eq!(fork.state, "running");
    assert_eq!(t.fake.sandbox(&src.id).unwrap().state, "running");
    let status: Value =
        serde_json::from_str(&t.ok(&["status", "--json", "-s", "f1"]).stdout()).unwrap();
    assert_eq!(status["sandbox"], fork.id.as_str(), "{status}");
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["workdir"], t.workdir.as_str(), "{status}");
    assert_ne!(status["session"], t.status()["session"], "its own session");

    let in_fork = |cmd: &str| t.ok(&["exec", "-s", "f1", "--no-sync", "--", cmd]).stdout();
    assert_eq!(in_fork("cat README.md"), "edited\n", "the edit came along");
    assert_eq!(
        in_fork("cat $HOME/setup-runs"),
        "ran\n",
        "setup ran once, in the source, and not again for the fork"
    );
    // A later `up` of the fork does not run it either (same setup, same state).
    t.ok(&["up", "-s", "f1"]);
    assert_eq!(in_fork("cat $HOME/setup-runs"), "ran\n");

    // The two are apart from here on, and the source still answers.
    in_fork("echo fork-only > b.txt");
    let r = t.ok(&[
        "exec",
        "--no-sync",
        "--",
        "cat README.md; cat $HOME/setup-runs",
    ]);
    assert_eq!(r.stdout(), "edited\nran\n");
    let r = t.rc(&["exec", "--no-sync", "--", "cat b.txt"]);
    assert_ne!(
        r.code(),
        0,
        "the fork's file showed up in the source: {}",
        r.all()
    );

    // Removing the fork removes only the fork.
    t.ok(&["down", "--yes", "--discard", "-s", "f1"]);
    let left = t.fake.sandboxes();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].id, src.id);
    assert_eq!(
        t.fake
            .requests_to("DELETE", &format!("/sandboxes/{}", fork.id))
            .len(),
        1
    );
    assert!(!fork.root.exists(), "the fork's disk is gone");
    let status: Value =
        serde_json::from_str(&t.ok(&["status", "--json", "-s", "f1"]).stdout()).unwrap();
    assert!(status["sandbox"].is_null(), "{status}");
    let r = t.ok(&["exec", "--no-sync", "--", "cat README.md"]);
    assert_eq!(r.stdout(), "edited\n");
    assert_eq!(t.status()["sandbox"], src.id.as_str());
    t.ok(&["down", "--yes", "--discard"]);
}

#[test]
fn a_fork_that_fails_or_has_no_source_leaves_no_session() {
    let t = setup("auto_pause = false", "");
    t.ok(&["up"]);
    let src = t.only_sandbox();
    let fork_path = format!("/sandboxes/{}/fork", src.id);
    let no_session = |name: &str| {
        let status: Value =
            serde_json::from_str(&t.ok(&["status", "--json", "-s", name]).stdout()).unwrap();
        assert!(
            status["sandbox"].is_null(),
            "a session record named {name} was left: {status}"
        );
    };

    // E2B answers with an error element: its message, exit 69, no record.
    t.fake.inject(
        Route::Fork,
        [Injection::error(201, "")
            .body(json!([{ "error": { "code": 500, "message": "fork failed: no capacity" } }]))],
    );
    let r = t.rc(&["fork", "f3"]);
    assert_eq!(r.code(), 69, "{}", r.all());
    assert!(r.stderr().contains("no capacity"), "{}", r.all());
    no_session("f3");

    // A 503 is not resent (the fork may have been made): one request, a clear failure.
    let before = t.fake.requests_to("POST", &fork_path).len();
    t.fake
        .inject(Route::Fork, [Injection::error(503, "upstream unavailable")]);
    let r = t.rc(&["fork", "f3"]);
    assert_eq!(r.code(), 69, "{}", r.all());
    assert!(r.stderr().contains("upstream unavailable"), "{}", r.all());
    assert!(r.stderr().contains("not retried"), "{}", r.all());
    assert_eq!(t.fake.requests_to("POST", &fork_path).len(), before + 1);
    no_session("f3");
    assert_eq!(t.fake.sandboxes().len(), 1);

    // The source vanished between the check and the fork: 404 is "no longer exists".
    t.fake
        .inject(Route::Fork, [Injection::error(404, "sandbox not found")]);
    let r = t.rc(&["fork", "f3"]);
    assert_eq!(r.code(), 69, "{}", r.all());
    assert!(r.stderr().contains("no longer exists"), "{}", r.all());
    no_session("f3");

    // The source's sandbox was deleted behind rclaude's back (E2B killed it at its timeout).
    t.fake.expire(&src.id);
    let before = t.fake.requests_to("POST", &fork_path).len();
    let r = t.rc(&["fork", "f2"]);
    assert_eq!(r.code(), 69, "{}", r.all());
    assert!(
        r.stderr().contains(&src.id) && r.stderr().contains("no longer exists"),
        "{}",
        r.all()
    );
    assert_eq!(
        t.fake.requests_to("POST", &fork_path).len(),
        before,
        "nothing to fork, so no fork was asked for"
    );
    assert!(t.fake.sandboxes().is_empty());
    no_session("f2");
}

/// What the sandbox's repository looks like: branch, commits, status, files.
const LOOK: &str = "git rev-parse --abbrev-ref HEAD; git log --format=%s -3; git status --porcelain; \
    cat README.md d/new.txt";

#[test]
fn up_provider_moves_the_session_with_its_work_and_back() {
    let t = setup("", "");
    t.ok(&["up"]);
    let e2b_id = t.only_sandbox().id;
    // Work in the E2B sandbox: a branch of its own with a commit, an edit, an untracked file.
    t.ok(&[
        "exec",
        "--no-sync",
        "--",
        "git checkout -qb feature && echo one > one.txt && git add one.txt && \
         git -c user.name=s -c user.email=s@x commit -qm 'sandbox: one' && \
         echo more >> README.md && mkdir -p d && echo new > d/new.txt",
    ]);
    let before = t.ok(&["exec", "--no-sync", "--", LOOK]).stdout();
    assert!(before.starts_with("feature\nsandbox: one\n"), "{before}");

    // To local: the E2B sandbox is checkpointed, its work rebuilt, and it is destroyed.
    let r = t.ok(&["up", "--provider", "local"]);
    assert!(
        r.stderr().contains("Rebuilt the work of sandbox"),
        "{}",
        r.all()
    );
    assert!(
        t.fake.sandbox(&e2b_id).is_none(),
        "the E2B sandbox is destroyed"
    );
    assert_eq!(t.status()["provider"], "local", "{}", r.all());
    assert_eq!(t.ok(&["exec", "--no-sync", "--", LOOK]).stdout(), before);

    // And back to E2B after more work; `.rclaude.toml` still names e2b, so a plain `up` says how.
    t.ok(&["exec", "--no-sync", "--", "echo two > d/two.txt"]);
    let r = t.rc(&["up"]);
    assert_ne!(r.code(), 0, "{}", r.all());
    assert!(r.stderr().contains("up --provider e2b"), "{}", r.all());
    t.ok(&["up", "--provider", "e2b"]);
    assert_eq!(t.fake.sandboxes().len(), 1);
    assert_eq!(t.status()["provider"], "e2b");
    assert_eq!(
        t.ok(&["exec", "--no-sync", "--", "cat d/two.txt"]).stdout(),
        "two\n"
    );
    // Pull brings the sandbox's work back as it would have from the first sandbox.
    t.ok(&["pull", "--branch", "moved"]);
    assert_eq!(t.repo.git(&["show", "moved:d/two.txt"]), "two\n");
    assert_eq!(t.repo.git(&["show", "moved:one.txt"]), "one\n");
}

/// A real server whose managed sessions run on the E2B stand-in (the server holds the E2B key),
/// started with `flags` besides the provider's, and an account's token.
struct ManagedE2b {
    fake: FakeE2b,
    server: common::server::Server,
    token: String,
    _vm: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl ManagedE2b {
    fn start(flags: &[&str]) -> ManagedE2b {
        let vm = tempfile::tempdir().unwrap();
        let root = vm.path().canonicalize().unwrap();
        let workdir = format!("{}/home/user/workspace", root.display());
        let fake = FakeE2b::start_with(FakeOptions {
            shared_root: Some(root),
            ..FakeOptions::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("server.db").display());
        let mut all = vec!["--sandbox-provider", "e2b", "--sandbox-workdir", &workdir];
        all.extend_from_slice(flags);
        let server = common::server::Server::start_with_env(&db, "127.0.0.1:0", &all, &fake.env());
        let token = server.create_account("alice");
        ManagedE2b {
            fake,
            server,
            token,
            _vm: vm,
            _dir: dir,
        }
    }

    /// `rclaude args` in `repo` as a client of the server: it holds the account's token and no
    /// E2B key or address.
    fn cmd(&self, repo: &TestRepo, args: &[&str]) -> std::process::Command {
        let mut c = repo.cmd(args);
        for var in [
            "E2B_API_KEY",
            "E2B_API_URL",
            "E2B_SANDBOX_URL",
            "E2B_DOMAIN",
        ] {
            c.env_remove(var);
        }
        c.env("RCLAUDE_TOKEN", &self.token);
        c
    }
}

/// A server whose managed sessions run on E2B (the fake): the server holds the E2B key, the CLI
/// none; `up` creates the session through the server and syncs straight into the E2B sandbox's
/// envd; pause, resume and down act on E2B through the server.
#[test]
fn a_server_runs_managed_sessions_on_e2b() {
    let m = ManagedE2b::start(&["--idle-pause", "off"]);
    let (fake, server, token) = (&m.fake, &m.server, &m.token);
    let repo = TestRepo::new("[tasks.hello]\nrun = \"cat README.md\"\n");
    repo.write("README.md", "hello from the laptop\n");
    repo.commit_all("initial");
    let cmd = |args: &[&str]| m.cmd(&repo, args);
    let ok = |args: &[&str]| {
        let r = Run(cmd(args).output().unwrap());
        assert_eq!(r.code(), 0, "rclaude {args:?}:\n{}", r.all());
        r
    };
    ok(&["login", "--server", &server.base]);
    ok(&["up"]);
    assert_eq!(repo.session_record()["provider"], "managed");
    let sbx = {
        let all = fake.sandboxes();
        assert_eq!(all.len(), 1, "{all:?}");
        all.into_iter().next().unwrap()
    };
    assert_eq!(sbx.metadata["rclaude.managed"], "true", "{sbx:?}");
    assert_eq!(ok(&["run", "hello"]).stdout(), "hello from the laptop\n");
    let session = repo.session_id();

    ok(&["pause"]);
    assert_eq!(fake.sandbox(&sbx.id).unwrap().state, "paused");
    let detail = server.get(token, &format!("/v1/sessions/{session}"));
    assert_eq!(detail["session"]["state"], "paused", "{detail:#}");
    assert_eq!(detail["session"]["provider"], "e2b");
    // The next command resumes it through the server.
    assert_eq!(
        ok(&["exec", "--", "cat", "README.md"]).stdout(),
        "hello from the laptop\n"
    );
    assert_eq!(fake.sandbox(&sbx.id).unwrap().state, "running");

    ok(&["down", "--yes"]);
    assert!(fake.sandbox(&sbx.id).is_none(), "the E2B sandbox is killed");
    let detail = server.get(token, &format!("/v1/sessions/{session}"));
    assert_eq!(detail["session"]["state"], "stopped", "{detail:#}");
    // Every call to E2B carried the server's key; none came from the CLI's environment.
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.headers.get("x-api-key").map(String::as_str) == Some(e2b_server::API_KEY)),
        "a request without the server's key"
    );
}

/// A managed E2B sandbox is created with E2B's 5-minute timeout; the server's reconciler moves
/// that timeout past the moment its own idle pause would come (the last activity + the idle
/// pause + a margin), so E2B never pauses a session before the server has checkpointed it.
/// An idle session costs one such call, not one per round.
#[test]
fn the_server_keeps_e2b_from_pausing_a_managed_sandbox_before_its_own_idle_pause() {
    let m = ManagedE2b::start(&["--idle-pause", "1h", "--reconcile-every", "1s"]);
    let fake = &m.fake;
    let repo = TestRepo::new("");
    repo.write("README.md", "hello\n");
    repo.commit_all("initial");
    let login = Run(m
        .cmd(&repo, &["login", "--server", &m.server.base])
        .output()
        .unwrap());
    assert_eq!(login.code(), 0, "{}", login.all());
    let mut c = m.cmd(&repo, &["up", "--quiet"]);
    let r = Run(c.output().unwrap());
    assert_eq!(r.code(), 0, "{}", r.all());
    let id = fake.sandboxes()[0].id.clone();
    let path = format!("/sandboxes/{id}/timeout");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while fake.requests_to("POST", &path).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never extended the sandbox's timeout"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let left =
        (fake.sandbox(&id).unwrap().end_at - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!(
        (3600..=3600 + 600 + 30).contains(&left),
        "E2B's timeout ends in {left} s, not just after the server's 1 h idle pause"
    );
    // An idle session: later rounds leave it alone.
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(fake.requests_to("POST", &path).len(), 1);
}

/// `rclaude port --local` on E2B. A sandbox whose `[ports]` are all private (none says
/// `public = true`) is created with `allowPublicTraffic: false`, so the edge answers its ports
/// only to requests carrying the sandbox's traffic token. The local forwarder adds it: an HTTP
/// server and a WebSocket echo in the sandbox are reached through it, while the same request
/// without the token is refused.
#[test]
fn private_e2b_ports_are_reached_through_rclaude_port_with_the_traffic_token() {
    use common::net::{
        Bg, WS_ECHO_PY, free_port, http_get, serve_web_and_echo, wait_for, ws_echo_round_trip,
    };
    use std::process::Stdio;
    let (web, ws) = (free_port(), free_port());
    let t = setup(
        "",
        &format!("[ports]\n{web} = \"web\"\n{ws} = {{ label = \"echo\" }}\n"),
    );
    t.repo.write("hello.txt", "hello from the sandbox\n");
    t.repo.write("ws_echo.py", WS_ECHO_PY);
    t.repo.commit_all("servers");
    t.ok(&["up", "--quiet"]);
    let create = t.fake.requests_to("POST", "/v2/sandboxes");
    assert_eq!(
        create[0].body.as_ref().unwrap()["network"]["allowPublicTraffic"],
        false,
        "{:?}",
        create[0].body
    );
    t.ok(&[
        "exec",
        "--no-sync",
        "--",
        "sh",
        "-c",
        &serve_web_and_echo(web, ws),
    ]);
    wait_for(web);
    wait_for(ws);

    // The URL is printed with a word on the token.
    let r = t.ok(&["port", &web.to_string()]);
    assert!(r.stderr().contains("traffic token"), "{}", r.all());

    // The edge refuses a request without the token.
    let id = t.fake.sandboxes()[0].id.clone();
    let edge = t.fake.env()[2].1.clone();
    let edge = edge.trim_start_matches("http://").to_string();
    let refused = {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&edge).unwrap();
        write!(
            c,
            "GET /hello.txt HTTP/1.0\r\nHost: x\r\ne2b-sandbox-id: {id}\r\ne2b-sandbox-port: {web}\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    };
    assert!(refused.starts_with("HTTP/1.0 403"), "{refused}");

    // Through `rclaude port --local`: HTTP, then a WebSocket.
    let (l_web, l_ws) = (free_port(), free_port());
    let fwd = |port: u16, local: u16| {
        Bg(
            t.cmd(&["port", &port.to_string(), "--local", &local.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    let _fwd_web = fwd(web, l_web);
    wait_for(l_web);
    let reply = http_get(l_web, "/hello.txt");
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    assert!(reply.ends_with("hello from the sandbox\n"), "{reply}");
    let _fwd_ws = fwd(ws, l_ws);
    wait_for(l_ws);
    ws_echo_round_trip(
        &format!("ws://127.0.0.1:{l_ws}/"),
        &["hello", "through E2B's edge"],
    );
    // A missing path is the sandbox server's own 404, not a refusal.
    assert!(http_get(l_web, "/nope").starts_with("HTTP/1.0 404"));

    // `open` cannot hand a browser the token: it opens a forwarder of its own, on a free
    // local port, and the page loads through it.
    let fetched = t.repo.path().join("fetched");
    let browser = t.repo.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!(
            "#!/bin/sh\nsleep 1\npython3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1] + \"/hello.txt\").read().decode())' \"$1\" > {}.part && mv {0}.part {0}\n",
            fetched.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _open = Bg(t
        .cmd(&["open", &web.to_string()])
        .env("BROWSER", &browser)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !fetched.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the page never loaded through `open`"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&fetched).unwrap(),
        "hello from the sandbox\n"
    );
}
