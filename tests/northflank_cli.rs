//! The real `rclaude` binary with `provider = "northflank"` against a local Northflank
//! (`support/northflank_server.rs`): the project from `.rclaude.toml`, the token and endpoint from
//! the environment; up → run → ls → pause → status → resume → exec → pull → down, inside a request
//! budget.

mod common;
#[path = "support/northflank_server.rs"]
mod northflank_server;

use common::{Run, TestRepo};
use northflank_server::{FakeNorthflank, FakeOptions, PROJECT};
use serde_json::Value;

struct T {
    repo: TestRepo,
    fake: FakeNorthflank,
    root: std::path::PathBuf,
    workdir: String,
    _vm: tempfile::TempDir,
}

fn setup(project_line: &str, rest: &str) -> T {
    let vm = tempfile::tempdir().unwrap();
    let root = vm.path().canonicalize().unwrap();
    let workdir = format!("{}/workspace/repo", root.display());
    let fake = FakeNorthflank::start_with(FakeOptions {
        shared_root: Some(root.clone()),
        // Small enough that polling faster than every couple of seconds would be refused.
        budget: 60,
        ..FakeOptions::default()
    });
    let config = format!(
        "[sandbox]\nprovider = \"northflank\"\nimage = \"ubuntu:24.04\"\ncpu = 2\nmemory_mb = 4096\n{project_line}\nworkdir = \"{workdir}\"\n{rest}"
    );
    let repo = TestRepo::new(&config);
    repo.write("README.md", "hello from the laptop\n");
    repo.commit_all("initial");
    T {
        repo,
        fake,
        root,
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
        for var in ["NORTHFLANK_TOKEN", "NORTHFLANK_DEPLOYMENT_PLAN"] {
            c.env_remove(var);
        }
        // The project comes from .rclaude.toml, not the environment.
        for (k, v) in self.fake.env() {
            if k == "NORTHFLANK_PROJECT_ID" {
                c.env_remove(k);
            } else {
                c.env(k, v);
            }
        }
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

    fn only_service(&self) -> northflank_server::ServiceView {
        let all = self.fake.services();
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
    let t = setup(&format!("project = \"{PROJECT}\""), TASKS);

    let up = t.ok(&["up"]);
    let svc = t.only_service();
    let id = format!("{PROJECT}/{}", svc.id);
    assert!(up.stderr().contains(&id), "{}", up.all());
    assert_eq!(svc.plan, "nf-compute-200", "2 vCPU / 4096 MB");
    assert_eq!(svc.image, "ubuntu:24.04");
    assert_eq!(svc.env["GREETING"], "hi");
    let vols = t.fake.volumes();
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].mount, format!("{}/workspace", t.root.display()));
    let status = t.status();
    assert_eq!(status["provider"], "northflank");
    assert_eq!(status["sandbox"], id.as_str());
    assert_eq!(status["state"], "running");
    assert_eq!(status["workdir"], t.workdir.as_str());
    assert_eq!(status["capabilities"]["pause_keeps_memory"], false);
    assert_eq!(
        std::fs::read_to_string(format!("{}/README.md", t.workdir)).unwrap(),
        "hello from the laptop\n"
    );

    let r = t.ok(&["run", "build"]);
    assert!(r.stdout().contains("built hi"), "{}", r.all());
    assert!(std::path::Path::new(&format!("{}/built.txt", t.workdir)).exists());

    let listed: Value = serde_json::from_str(&t.ok(&["ls", "--json"]).stdout()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["current"], true);
    assert_eq!(listed[0]["branch"], "main");

    // pause: compute stops; the volume (and so the repository) stays, nothing else does.
    std::fs::write(t.root.join("root/outside-volume.txt"), "lost").unwrap();
    t.ok(&["pause"]);
    assert!(t.only_service().paused);
    assert!(!t.root.join("root/outside-volume.txt").exists());
    assert!(std::path::Path::new(&format!("{}/built.txt", t.workdir)).exists());
    assert_eq!(t.status()["state"], "paused");
    let text = t.ok(&["status"]).stdout();
    assert!(
        text.contains("pause keeps files, not running processes"),
        "{text}"
    );

    t.ok(&["resume"]);
    assert!(!t.only_service().paused);

    let r = t.ok(&["exec", "--", "cat built.txt && echo $GREETING"]);
    assert_eq!(r.stdout(), "from-sandbox\nhi\n");
    let r = t.rc(&["exec", "--", "echo oops >&2; exit 7"]);
    assert_eq!(r.code(), 7, "{}", r.all());
    assert!(r.stderr().contains("oops"), "{}", r.all());

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

    t.ok(&["down", "--yes"]);
    assert!(t.fake.services().is_empty());
    assert!(t.fake.volumes().is_empty());
    assert!(!std::path::Path::new(&format!("{}/README.md", t.workdir)).exists());
    assert!(t.ok(&["status"]).stdout().contains("No sandbox"));
    assert_eq!(
        t.fake.rejected(),
        0,
        "the whole flow stayed inside the request budget"
    );
}

#[test]
fn the_project_may_come_from_the_environment_and_must_come_from_somewhere() {
    let t = setup("", "");
    let r = t.rc(&["up"]);
    assert_eq!(r.code(), 78, "{}", r.all());
    assert!(
        r.stderr().contains("no Northflank project")
            && r.stderr().contains("NORTHFLANK_PROJECT_ID"),
        "{}",
        r.all()
    );
    assert!(t.fake.services().is_empty());

    let r = Run(t
        .cmd(&["up"])
        .env("NORTHFLANK_PROJECT_ID", PROJECT)
        .output()
        .unwrap());
    assert_eq!(r.code(), 0, "{}", r.all());
    assert_eq!(t.fake.services().len(), 1);
    // Later commands find the sandbox by its id, whatever the environment says.
    let r = t.ok(&["exec", "--", "echo still here"]);
    assert_eq!(r.stdout(), "still here\n");
    t.ok(&["down", "--yes"]);
}

#[test]
fn token_problems_are_explained() {
    let t = setup(&format!("project = \"{PROJECT}\""), "");
    let r = Run(t
        .cmd(&["up"])
        .env_remove("NORTHFLANK_API_TOKEN")
        .output()
        .unwrap());
    assert_eq!(r.code(), 78, "{}", r.all());
    assert!(
        r.stderr().contains("NORTHFLANK_API_TOKEN is not set"),
        "{}",
        r.all()
    );
    let r = Run(t
        .cmd(&["up"])
        .env("NORTHFLANK_API_TOKEN", "nf-revoked")
        .output()
        .unwrap());
    assert_ne!(r.code(), 0, "{}", r.all());
    assert!(r.stderr().contains("hint:"), "{}", r.all());
    assert!(!r.all().contains("nf-revoked"));
    assert!(t.fake.services().is_empty());
}
