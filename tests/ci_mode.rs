//! `rclaude ci` with the local provider: the JSON summary, exit codes, `--keep-going`, and the
//! sandbox destroyed after success, failure, setup failure, `--timeout`, SIGINT and SIGTERM.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Run, TestRepo};
use serde_json::Value;

const CONFIG: &str = r#"
[sandbox]
provider = "local"

[tasks.prepare]
run = "echo prepared > prepared.txt"

[tasks.build]
run = ["echo building", "test -f prepared.txt && echo built"]
depends = ["prepare"]

[tasks.broken]
run = ["echo before-failure", "echo to-stderr >&2", "exit 3", "echo never-printed"]
depends = ["prepare"]

[tasks.after-broken]
run = "echo should-not-run"
depends = ["broken"]

[tasks.independent]
run = "echo independent-ran; echo \"ci=$CI rclaude_ci=$RCLAUDE_CI\""

[tasks.slow]
run = "touch started-marker; sleep 600"

[tasks.limited]
run = "sleep 600"
timeout = "1s"
"#;

fn repo() -> TestRepo {
    let t = TestRepo::new(CONFIG);
    t.write("src/main.txt", "hello\n");
    t.commit_all("initial");
    t
}

/// Local sandbox directories left under the test's home.
fn sandboxes_left(t: &TestRepo) -> Vec<PathBuf> {
    match std::fs::read_dir(t.sandboxes_dir()) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Scratch records of ci runs left under the test's home.
fn ci_records_left(t: &TestRepo) -> Vec<PathBuf> {
    match std::fs::read_dir(t.home.path().join("state/ci")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// No sandbox and no ci record left behind.
fn assert_clean(t: &TestRepo) {
    assert!(
        sandboxes_left(t).is_empty(),
        "sandboxes left: {:?}",
        sandboxes_left(t)
    );
    assert!(
        ci_records_left(t).is_empty(),
        "ci records left: {:?}",
        ci_records_left(t)
    );
}

fn summary(stdout: &str) -> Value {
    serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{stdout}"))
}

fn task<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {v}"))
}

#[test]
fn json_summary_for_a_passing_run() {
    let t = repo();
    let r = t.rclaude(&["ci", "build", "independent", "--json"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    let v = summary(&r.stdout());
    assert_eq!(v["ok"], true);
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["provider"], "local");
    assert!(v["sandbox"].as_str().unwrap().starts_with("local-"), "{v}");
    assert_eq!(v["destroyed"], true);
    assert!(v["duration_ms"].is_u64());
    assert_eq!(v["stopped_by"], Value::Null);
    let names: Vec<&str> = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prepare", "build", "independent"]);
    for name in names {
        let t = task(&v, name);
        assert_eq!(t["status"], "passed", "{t}");
        assert_eq!(t["exit_code"], 0);
        assert!(t["duration_ms"].is_u64());
    }
    assert_eq!(task(&v, "build")["log_tail"], "building\nbuilt\n");
    assert!(
        task(&v, "independent")["log_tail"]
            .as_str()
            .unwrap()
            .contains("ci=true rclaude_ci=1"),
        "{v}"
    );
    // Task output went to stderr, keeping stdout for the summary.
    assert!(r.stderr().contains("building"), "{}", r.all());
    assert_clean(&t);
}

#[test]
fn a_failing_task_sets_the_exit_code_and_skips_the_rest_then_the_sandbox_is_gone() {
    let t = repo();
    let r = t.rclaude(&["ci", "after-broken", "independent", "--json", "--tail", "2"]);
    assert_eq!(r.code(), 3, "{}", r.all());
    let v = summary(&r.stdout());
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 3);
    assert_eq!(task(&v, "prepare")["status"], "passed");
    let broken = task(&v, "broken");
    assert_eq!(broken["status"], "failed");
    assert_eq!(broken["exit_code"], 3);
    // The last two lines, from both streams.
    assert_eq!(broken["log_tail"], "before-failure\nto-stderr\n");
    for name in ["after-broken", "independent"] {
        assert_eq!(task(&v, name)["status"], "skipped", "{v}");
        assert_eq!(task(&v, name)["exit_code"], Value::Null);
    }
    assert!(!r.stderr().contains("never-printed"), "{}", r.all());
    assert_clean(&t);
}

#[test]
fn keep_going_runs_what_does_not_depend_on_the_failure() {
    let t = repo();
    let r = t.rclaude(&["ci", "after-broken", "independent", "--keep-going"]);
    assert_eq!(r.code(), 3, "{}", r.all());
    assert!(r.stdout().contains("independent-ran"), "{}", r.all());
    assert!(!r.stdout().contains("should-not-run"), "{}", r.all());
    let err = r.stderr();
    assert!(err.contains("ci summary"), "{err}");
    assert!(err.contains("after-broken  skipped"), "{err}");
    assert!(err.contains("independent   passed"), "{err}");
    assert!(err.contains("ci: failed"), "{err}");
    assert_clean(&t);
}

#[test]
fn ci_neither_uses_nor_touches_the_repository_sandbox() {
    let t = repo();
    t.ok(&["up"]);
    let before: Value = serde_json::from_str(&t.ok(&["status", "--json"]).stdout()).unwrap();
    assert!(before["sandbox"].is_string(), "{before}");
    let r = t.rclaude(&["ci", "build", "--json"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    let v = summary(&r.stdout());
    assert_ne!(v["sandbox"], before["sandbox"], "ci must use a new sandbox");
    let after: Value = serde_json::from_str(&t.ok(&["status", "--json"]).stdout()).unwrap();
    assert_eq!(after["sandbox"], before["sandbox"]);
    assert_eq!(after["state"], "running");
    assert_eq!(
        sandboxes_left(&t).len(),
        1,
        "only the repository's own sandbox is left"
    );
}

#[test]
fn setup_failure_and_unknown_tasks() {
    let t = TestRepo::new(&format!(
        "{CONFIG}\n[setup]\nrun = \"echo setting-up; exit 7\"\n"
    ));
    t.commit_all("initial");
    let r = t.rclaude(&["ci", "build", "--json"]);
    assert_eq!(r.code(), 7, "{}", r.all());
    let v = summary(&r.stdout());
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("[setup]"),
        "{v}"
    );
    assert_eq!(task(&v, "build")["status"], "skipped");
    assert_eq!(v["destroyed"], true);
    assert_clean(&t);
    let r = t.rclaude(&["ci", "nope"]);
    assert_eq!(r.code(), 64, "{}", r.all());
    assert!(r.stderr().contains("nope"), "{}", r.all());
}

#[test]
fn timeouts_exit_124_and_destroy_the_sandbox() {
    let t = repo();
    // The task's own timeout.
    let r = t.rclaude(&["ci", "limited", "independent", "--json", "--keep-going"]);
    assert_eq!(r.code(), 124, "{}", r.all());
    let v = summary(&r.stdout());
    assert_eq!(task(&v, "limited")["status"], "timed_out");
    assert_eq!(task(&v, "limited")["exit_code"], 124);
    assert_eq!(task(&v, "independent")["status"], "passed");
    assert_clean(&t);

    // The whole run's --timeout, expiring while a task runs.
    let r = t.rclaude(&["ci", "slow", "--json", "--timeout", "8s"]);
    assert_eq!(r.code(), 124, "{}", r.all());
    let v = summary(&r.stdout());
    assert_eq!(v["stopped_by"], "timeout");
    assert_eq!(v["destroyed"], true);
    assert_eq!(task(&v, "slow")["status"], "timed_out", "{v}");
    assert_clean(&t);
}

/// Start `rclaude ci slow --json`, wait until the task has started in the sandbox.
fn start_slow(t: &TestRepo) -> Child {
    let mut child = t
        .cmd(&["ci", "slow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let started = sandboxes_left(t)
            .iter()
            .any(|d| d.join("root/workspace/started-marker").exists());
        if started {
            return child;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the task never started:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

#[test]
fn sigint_mid_task_destroys_the_sandbox_and_exits_130() {
    let t = repo();
    let child = start_slow(&t);
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let v = summary(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["stopped_by"], "SIGINT");
    assert_eq!(v["destroyed"], true);
    assert_eq!(task(&v, "slow")["status"], "interrupted");
    assert_clean(&t);
}

#[test]
fn sigterm_mid_task_destroys_the_sandbox_and_exits_143() {
    let t = repo();
    let child = start_slow(&t);
    signal(&child, "-TERM");
    // A second signal while cleaning up does not stop the cleanup.
    std::thread::sleep(Duration::from_millis(20));
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    let v = summary(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["stopped_by"], "SIGTERM");
    assert_clean(&t);
}

/// `rclaude ci` killed with SIGKILL: its sandbox (with the task still running in it) is left
/// behind until a later command notices that the run is gone.
fn kill_ci_mid_task(t: &TestRepo) -> String {
    let mut child = start_slow(t);
    signal(&child, "-KILL");
    let _ = child.wait();
    let left = sandboxes_left(t);
    assert_eq!(left.len(), 1, "{left:?}");
    left[0].file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn sandboxes_of_ci_runs_killed_with_sigkill_are_reaped_by_the_next_ci_up_or_ls() {
    let t = repo();
    for next in [&["ls"][..], &["ci", "independent"], &["up"]] {
        let id = kill_ci_mid_task(&t);
        let r = t.ok(next);
        assert!(
            r.stderr().contains(&format!("Destroyed sandbox {id}")),
            "{next:?}: {}",
            r.all()
        );
        assert!(r.stderr().contains("killed"), "{}", r.all());
        let left: Vec<_> = sandboxes_left(&t)
            .into_iter()
            .filter(|d| d.ends_with(&id))
            .collect();
        assert!(left.is_empty(), "{next:?} left {left:?}");
        assert!(ci_records_left(&t).is_empty(), "{:?}", ci_records_left(&t));
        if next == ["up"] {
            t.ok(&["down", "--yes", "--discard"]);
        }
    }
    assert_clean(&t);
}

#[test]
fn down_sandbox_destroys_a_sandbox_by_id_and_ls_marks_ci_sandboxes() {
    let t = repo();
    // While a run is alive, `ls` marks its sandbox and `down --sandbox` refuses it.
    let mut child = start_slow(&t);
    let id = sandboxes_left(&t)[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let ls = t.ok(&["ls"]);
    let line = ls
        .stdout()
        .lines()
        .find(|l| l.contains(&id))
        .unwrap()
        .to_string();
    assert!(line.starts_with("ci "), "{}", ls.all());
    let v: Value = serde_json::from_str(&t.ok(&["ls", "--json"]).stdout()).unwrap();
    assert_eq!(v[0]["ci"]["running"], true, "{v}");
    let r = t.rclaude(&["down", "--sandbox", &id, "--yes"]);
    assert_eq!(r.code(), 64, "{}", r.all());
    assert!(r.stderr().contains("still running"), "{}", r.all());
    signal(&child, "-KILL");
    let _ = child.wait();

    // Killed: destroyed by id, without a repository around, and its ci record goes too.
    let elsewhere = tempfile::tempdir().unwrap();
    let mut down = t.cmd(&["down", "--sandbox", &id]);
    down.current_dir(elsewhere.path());
    let r = common::Run(down.output().unwrap());
    assert_eq!(
        r.code(),
        64,
        "needs --yes when not interactive: {}",
        r.all()
    );
    let mut down = t.cmd(&["down", "--sandbox", &id, "--yes"]);
    down.current_dir(elsewhere.path());
    let r = common::Run(down.output().unwrap());
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(
        r.stderr().contains(&format!("Destroyed sandbox {id}")),
        "{}",
        r.all()
    );
    assert_clean(&t);

    // An id that does not exist is a clear error.
    let r = t.rclaude(&["down", "--sandbox", "local-000000000000", "--yes"]);
    assert_eq!(r.code(), 69, "{}", r.all());
    assert!(r.stderr().contains("rclaude ls"), "{}", r.all());
}

/// A library error's hint reaches `ci --json` as data, not inside the message.
#[test]
fn json_errors_carry_the_hint_as_data() {
    let t = TestRepo::new("[sandbox]\nprovider = \"e2b\"\n\n[tasks.build]\nrun = \"true\"\n");
    t.commit_all("initial");
    let r = Run(t
        .cmd(&["ci", "build", "--json"])
        .env_remove("E2B_API_KEY")
        .output()
        .unwrap());
    assert_ne!(r.code(), 0, "{}", r.all());
    let v = summary(&r.stdout());
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("E2B_API_KEY"), "{v}");
    assert!(!message.contains("hint:"), "{v}");
    assert!(
        v["error"]["hint"].as_str().is_some_and(|h| !h.is_empty()),
        "{v}"
    );
    assert_eq!(r.stderr().matches("hint:").count(), 1, "{}", r.all());
}
