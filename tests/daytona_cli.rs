//! The real `rclaude` binary with `provider = "daytona"` against a local Daytona
//! (`support/daytona_server.rs`), pointed at it with Daytona's own variables (`DAYTONA_API_KEY`,
//! `DAYTONA_API_URL`): up → run → ls → pause → status → resume → exec → pull → down.

mod common;
#[path = "support/daytona_server.rs"]
mod daytona_server;

use common::{Run, TestRepo};
use daytona_server::{FakeDaytona, FakeOptions};
use serde_json::Value;

/// A repository configured for Daytona, a fake whose sandboxes keep their files in `vm`, and
/// the workdir inside it.
struct T {
    repo: TestRepo,
    fake: FakeDaytona,
    workdir: String,
    _vm: tempfile::TempDir,
}

/// A Daytona stand-in whose sandboxes keep their files in the returned directory, and the
/// workdir inside it.
fn fake_with_vm() -> (FakeDaytona, String, tempfile::TempDir) {
    let vm = tempfile::tempdir().unwrap();
    let root = vm.path().canonicalize().unwrap();
    let workdir = format!("{}/home/daytona/repo", root.display());
    let fake = FakeDaytona::start_with(FakeOptions {
        shared_root: Some(root),
        ..FakeOptions::default()
    });
    (fake, workdir, vm)
}

fn setup(rest: &str) -> T {
    let (fake, workdir, vm) = fake_with_vm();
    let config = format!(
        "[sandbox]\nprovider = \"daytona\"\nimage = \"python-dev\"\ntimeout = \"30m\"\nworkdir = \"{workdir}\"\n{rest}"
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
            "DAYTONA_API_KEY",
            "DAYTONA_JWT_TOKEN",
            "DAYTONA_SERVER_URL",
            "DAYTONA_TARGET",
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

    fn only_sandbox(&self) -> daytona_server::SandboxView {
        let all = self.fake.sandboxes();
        assert_eq!(all.len(), 1, "{all:?}");
        all.into_iter().next().unwrap()
    }
}

impl Drop for T {
    fn drop(&mut self) {
        let _ = self.cmd(&["down", "--yes", "--discard"]).output();
    }
}

#[test]
fn up_run_pause_resume_exec_pull_down() {
    let t = setup(TASKS);

    // up: a sandbox from the snapshot, labelled, with the work tree synced into the workdir.
    let up = t.ok(&["up"]);
    let sbx = t.only_sandbox();
    assert!(up.stderr().contains(&sbx.id), "{}", up.all());
    assert_eq!(sbx.state, "started");
    assert_eq!(sbx.snapshot.as_deref(), Some("python-dev"));
    assert_eq!(sbx.labels["rclaude.managed"], "true");
    assert_eq!(sbx.labels["rclaude.branch"], "main");
    assert_eq!(
        sbx.auto_stop_interval, 30,
        "the config's timeout, in minutes"
    );
    assert_eq!(sbx.env["GREETING"], "hi");
    let status = t.status();
    assert_eq!(status["provider"], "daytona");
    assert_eq!(status["sandbox"], sbx.id.as_str());
    assert_eq!(status["state"], "running");
    assert_eq!(status["workdir"], t.workdir.as_str());
    assert_eq!(
        sbx.labels["rclaude.session"],
        status["session"].as_str().unwrap()
    );
    assert!(status["end_at"].is_string(), "auto-stop time: {status}");
    assert_eq!(status["capabilities"]["pause_keeps_memory"], false);
    assert_eq!(status["capabilities"]["persistent_disk"], true);
    assert_eq!(
        std::fs::read_to_string(format!("{}/README.md", t.workdir)).unwrap(),
        "hello from the laptop\n"
    );

    // run: the task runs in the sandbox with [env], output streamed back.
    let r = t.ok(&["run", "build"]);
    assert!(r.stdout().contains("built hi"), "{}", r.all());
    assert!(std::path::Path::new(&format!("{}/built.txt", t.workdir)).exists());
    assert_eq!(
        t.only_sandbox().sessions,
        0,
        "every command's session is deleted"
    );

    // ls: the organization's rclaude sandboxes.
    let listed: Value = serde_json::from_str(&t.ok(&["ls", "--json"]).stdout()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], sbx.id.as_str());
    assert_eq!(listed[0]["current"], true);

    // pause = stop: the disk stays, status says processes do not survive.
    t.ok(&["pause"]);
    assert_eq!(t.only_sandbox().state, "stopped");
    let status = t.status();
    assert_eq!(status["state"], "paused");
    assert!(status["end_at"].is_null(), "{status}");
    let text = t.ok(&["status"]).stdout();
    assert!(
        text.contains("pause keeps files, not running processes"),
        "{text}"
    );

    // resume: start again.
    t.ok(&["resume"]);
    assert_eq!(t.only_sandbox().state, "started");
    assert_eq!(t.fake.requests_to("POST", "/start").len(), 1);

    // exec: the task's file survived the stop; exit codes come back.
    let r = t.ok(&["exec", "--", "cat built.txt && echo $GREETING"]);
    assert_eq!(r.stdout(), "from-sandbox\nhi\n");
    let r = t.rc(&["exec", "--", "echo oops >&2; exit 7"]);
    assert_eq!(r.code(), 7, "{}", r.all());
    assert!(r.stderr().contains("oops"), "{}", r.all());
    // pull: with the git-bundle sync the sandbox's commit comes back as rclaude/main.
    let pull = t.ok(&["pull"]);
    let branches = t.repo.git(&["branch", "--list", "rclaude/*"]);
    if !branches.trim().is_empty() {
        let log = t.repo.git(&["log", "--format=%s", "rclaude/main"]);
        assert!(log.contains("sandbox-commit"), "{log}\n{}", pull.all());
        assert_eq!(
            t.repo.git(&["show", "rclaude/main:built.txt"]),
            "from-sandbox\n"
        );
    }

    // down: deleted, disk gone.
    t.ok(&["down", "--yes"]);
    assert!(t.fake.sandboxes().is_empty());
    assert!(!std::path::Path::new(&format!("{}/README.md", t.workdir)).exists());
    assert!(t.ok(&["status"]).stdout().contains("No sandbox"));
    let ls = t.ok(&["ls", "--provider", "daytona"]);
    assert!(ls.stdout().contains("No rclaude sandboxes"), "{}", ls.all());
}

#[test]
fn an_auto_stopped_sandbox_is_started_by_the_next_command() {
    let t = setup(TASKS);
    t.ok(&["up"]);
    let sbx = t.only_sandbox();
    t.ok(&["exec", "--", "echo kept > note.txt"]);
    t.fake
        .set_idle(&sbx.id, std::time::Duration::from_secs(31 * 60));
    assert_eq!(
        t.status()["state"],
        "paused",
        "Daytona stopped it after autoStopInterval"
    );
    let r = t.ok(&["exec", "--no-sync", "--", "cat note.txt"]);
    assert_eq!(r.stdout(), "kept\n");
    assert_eq!(t.only_sandbox().state, "started");
    t.ok(&["down", "--yes"]);
}

#[test]
fn key_and_endpoint_problems_are_explained() {
    let t = setup("");
    let r = Run(t
        .cmd(&["up"])
        .env_remove("DAYTONA_API_KEY")
        .output()
        .unwrap());
    assert_eq!(r.code(), 78, "{}", r.all());
    assert!(
        r.stderr().contains("DAYTONA_API_KEY is not set"),
        "{}",
        r.all()
    );

    let r = Run(t
        .cmd(&["up"])
        .env("DAYTONA_API_KEY", "dtn_revoked")
        .output()
        .unwrap());
    assert_ne!(r.code(), 0, "{}", r.all());
    assert!(
        r.stderr().contains("hint:") && r.stderr().contains("DAYTONA_API_KEY"),
        "{}",
        r.all()
    );
    assert!(!r.all().contains("dtn_revoked"), "the key is never printed");

    // A repository's .env cannot point rclaude (and the key) at another endpoint.
    t.repo
        .write(".env", "DAYTONA_API_URL=https://collector.example/api\n");
    let r = t.rc(&["up"]);
    assert_eq!(r.code(), 78, "{}", r.all());
    assert!(
        r.stderr().contains(".env") && r.stderr().contains("DAYTONA_API_URL"),
        "{}",
        r.all()
    );
    assert!(t.fake.sandboxes().is_empty());
}

#[test]
fn an_unknown_snapshot_is_explained() {
    let t = setup("");
    t.repo.write(
        ".rclaude.toml",
        &t.repo
            .read(".rclaude.toml")
            .replace("image = \"python-dev\"", "image = \"my-missing-snapshot\""),
    );
    let r = t.rc(&["up"]);
    assert_ne!(r.code(), 0, "{}", r.all());
    assert!(
        r.stderr()
            .contains("snapshot \"my-missing-snapshot\" does not exist"),
        "{}",
        r.all()
    );
    assert!(t.fake.sandboxes().is_empty());
}

/// The server as the control plane on Daytona: it holds the API key, the CLI holds none. The
/// server creates, stops (pause), starts (resume) and deletes the sandbox; the CLI reaches the
/// sandbox's toolbox directly with the preview token the server hands it, which opens that one
/// sandbox and nothing else.
#[test]
fn a_server_runs_managed_sessions_on_daytona() {
    let (fake, workdir, _vm) = fake_with_vm();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("server.db").display());
    let server = common::server::Server::start_with_env(
        &db,
        "127.0.0.1:0",
        &[
            "--sandbox-provider",
            "daytona",
            "--sandbox-workdir",
            &workdir,
            "--idle-pause",
            "off",
        ],
        &fake.env(),
    );
    let token = server.create_account("alice");

    let repo = TestRepo::new("[tasks.hello]\nrun = \"cat README.md\"\n");
    repo.write("README.md", "hello from the laptop\n");
    repo.commit_all("initial");
    let cmd = |args: &[&str]| {
        let mut c = repo.cmd(args);
        for var in [
            "DAYTONA_API_KEY",
            "DAYTONA_JWT_TOKEN",
            "DAYTONA_API_URL",
            "DAYTONA_SERVER_URL",
        ] {
            c.env_remove(var);
        }
        c.env("RCLAUDE_TOKEN", &token);
        c
    };
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
    assert_eq!(sbx.labels["rclaude.managed"], "true", "{sbx:?}");
    assert_eq!(sbx.state, "started");
    assert_eq!(ok(&["run", "hello"]).stdout(), "hello from the laptop\n");
    let session = repo.session_id();
    let state = |id: &str| fake.sandboxes().into_iter().find(|s| s.id == id);

    ok(&["pause"]);
    assert_eq!(state(&sbx.id).unwrap().state, "stopped");
    let detail = server.get(&token, &format!("/v1/sessions/{session}"));
    assert_eq!(detail["session"]["state"], "paused", "{detail:#}");
    assert_eq!(detail["session"]["provider"], "daytona");
    // The next command resumes it through the server.
    assert_eq!(
        ok(&["exec", "--", "cat", "README.md"]).stdout(),
        "hello from the laptop\n"
    );
    assert_eq!(state(&sbx.id).unwrap().state, "started");

    ok(&["down", "--yes"]);
    assert!(
        state(&sbx.id).is_none_or(|s| matches!(s.state.as_str(), "destroying" | "destroyed")),
        "the Daytona sandbox is deleted"
    );
    let detail = server.get(&token, &format!("/v1/sessions/{session}"));
    assert_eq!(detail["session"]["state"], "stopped", "{detail:#}");

    // Control-plane calls came from the server, with its key; the CLI's toolbox calls carried
    // only the sandbox's preview token.
    let requests = fake.requests();
    let key = format!("Bearer {}", daytona_server::API_KEY);
    for r in requests.iter().filter(|r| r.path.starts_with("/api/")) {
        assert_eq!(
            r.headers.get("authorization"),
            Some(&key),
            "{} {}",
            r.method,
            r.path
        );
    }
    let by_token: Vec<_> = requests
        .iter()
        .filter(|r| r.headers.contains_key("x-daytona-preview-token"))
        .collect();
    assert!(
        by_token.len() > 3,
        "the CLI did not reach the toolbox with the preview token"
    );
    for r in &by_token {
        assert!(
            r.path.starts_with(&format!("/toolbox/{}/", sbx.id)),
            "{} {}",
            r.method,
            r.path
        );
        assert!(
            !r.headers.contains_key("authorization"),
            "{} {}",
            r.method,
            r.path
        );
        // Accepted (a 404 is a file the CLI looked for and that is not there).
        assert!(
            r.status != 401 && r.status != 403,
            "{} {} → {}",
            r.method,
            r.path,
            r.status
        );
    }
}
