//! The real `rclaude` binary on real repositories with the local provider: up, exec, run,
//! status, pause/resume, down.

mod common;

use common::TestRepo;

const BASIC: &str = r#"
[sandbox]
provider = "local"

[env]
GREETING = "hi"

[tasks.prepare]
run = "echo prepared > prepared.txt"

[tasks.build]
run = ["echo building", "test -f prepared.txt && echo built > built.txt"]
depends = ["prepare"]

[tasks.test]
run = "cat built.txt && echo tested"
depends = ["build", "prepare"]

[tasks.broken]
run = ["echo before-failure", "exit 3", "echo never-printed"]
depends = ["prepare"]

[tasks.after-broken]
run = "echo should-not-run"
depends = ["broken"]
"#;

fn repo() -> TestRepo {
    let t = TestRepo::new(BASIC);
    t.write("src/main.txt", "hello from the laptop\n");
    t.commit_all("initial");
    t
}

#[test]
fn up_copies_the_repository_and_exec_streams_output_and_exit_code() {
    let t = repo();
    t.write("untracked.txt", "not committed yet\n");
    let up = t.ok(&["up"]);
    assert!(up.stderr().contains("is up"), "{}", up.all());

    let r = t.ok(&["exec", "--", "cat src/main.txt untracked.txt"]);
    assert_eq!(r.stdout(), "hello from the laptop\nnot committed yet\n");

    let r = t.rclaude(&["exec", "--", "echo to-out; echo to-err >&2; exit 7"]);
    assert_eq!(r.code(), 7, "{}", r.all());
    assert_eq!(r.stdout(), "to-out\n");
    assert!(r.stderr().contains("to-err"), "{}", r.all());

    // [env] is set; several arguments are quoted, not re-split.
    let r = t.ok(&["exec", "--", "printf", "%s|", "$GREETING", "a b"]);
    assert_eq!(r.stdout(), "$GREETING|a b|");
    let r = t.ok(&["exec", "--", "echo $GREETING"]);
    assert_eq!(r.stdout(), "hi\n");
}

#[test]
fn exec_runs_in_the_matching_subdirectory() {
    let t = repo();
    let mut c = t.cmd(&["exec", "--", "cat main.txt"]);
    c.current_dir(t.path().join("src"));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the laptop\n"
    );
}

#[test]
fn run_executes_dependencies_once_in_order() {
    let t = repo();
    let r = t.ok(&["run", "test"]);
    assert_eq!(r.stdout(), "building\nbuilt\ntested\n", "{}", r.all());
    let err = r.stderr();
    let p = err.find("prepare:").expect("prepare ran");
    let b = err.find("build: echo building").expect("build ran");
    let t_ = err.find("test: cat built.txt").expect("test ran");
    assert!(p < b && b < t_, "order wrong:\n{err}");
    assert_eq!(
        err.matches("▶ prepare:").count(),
        1,
        "prepare must run once:\n{err}"
    );
}

#[test]
fn run_stops_at_the_first_failure_with_its_exit_code() {
    let t = repo();
    let r = t.rclaude(&["run", "after-broken"]);
    assert_eq!(r.code(), 3, "{}", r.all());
    assert!(r.stdout().contains("before-failure"));
    assert!(!r.stdout().contains("never-printed"), "{}", r.all());
    assert!(!r.stdout().contains("should-not-run"), "{}", r.all());
    assert!(r.stderr().contains("task broken failed"), "{}", r.all());
}

#[test]
fn run_without_a_task_lists_tasks_and_unknown_task_is_a_usage_error() {
    let t = repo();
    let r = t.ok(&["run"]);
    for name in ["prepare", "build", "test", "broken"] {
        assert!(r.stdout().contains(name), "{}", r.all());
    }
    let r = t.rclaude(&["run", "nope"]);
    assert_eq!(r.code(), 64, "{}", r.all());
    assert!(r.stderr().contains("nope"), "{}", r.all());
}

#[test]
fn run_appends_extra_arguments_to_the_last_command() {
    let t = TestRepo::new("[tasks.say]\nrun = \"echo said\"\n");
    t.commit_all("init");
    let r = t.ok(&["run", "say", "--", "it's", "two words"]);
    assert_eq!(r.stdout(), "said it's two words\n");
}

#[test]
fn pause_and_resume_keep_files_and_status_reports_state() {
    let t = repo();
    t.ok(&["up"]);
    t.ok(&["exec", "--", "echo kept > $HOME/state.txt"]);
    let s = t.ok(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&s.stdout()).unwrap();
    assert_eq!(v["state"], "running");
    assert_eq!(v["provider"], "local");

    t.ok(&["pause"]);
    let s = t.ok(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&s.stdout()).unwrap();
    assert_eq!(v["state"], "paused", "{}", s.all());

    t.ok(&["resume"]);
    let r = t.ok(&["exec", "--no-sync", "--", "cat $HOME/state.txt"]);
    assert_eq!(r.stdout(), "kept\n");
}

#[test]
fn pause_stops_running_processes() {
    let t = repo();
    t.ok(&["up"]);
    // A background process that would keep writing if it survived the pause.
    t.ok(&["exec", "--", "nohup sh -c 'while true; do date +%s%N >> $HOME/ticks; sleep 0.05; done' >/dev/null 2>&1 &"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    t.ok(&["pause"]);
    let dir = std::fs::read_dir(t.sandboxes_dir())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let ticks = dir.join("root/home/ticks");
    let before = std::fs::read_to_string(&ticks)
        .unwrap_or_default()
        .lines()
        .count();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let after = std::fs::read_to_string(&ticks)
        .unwrap_or_default()
        .lines()
        .count();
    assert!(before > 0, "the background process never ran");
    assert_eq!(before, after, "a process kept running after pause");
}

#[test]
fn down_removes_the_sandbox() {
    let t = repo();
    t.ok(&["up"]);
    assert_eq!(std::fs::read_dir(t.sandboxes_dir()).unwrap().count(), 1);
    t.ok(&["down", "--yes"]);
    assert_eq!(std::fs::read_dir(t.sandboxes_dir()).unwrap().count(), 0);
    let s = t.ok(&["status"]);
    assert!(s.stdout().contains("No sandbox"), "{}", s.all());
}

#[test]
fn down_without_yes_refuses_when_not_interactive() {
    let t = repo();
    t.ok(&["up"]);
    let r = t.rclaude(&["down"]);
    assert_eq!(r.code(), 64, "{}", r.all());
    assert!(r.stderr().contains("--yes"), "{}", r.all());
    assert_eq!(std::fs::read_dir(t.sandboxes_dir()).unwrap().count(), 1);
}

#[test]
fn a_sandbox_removed_behind_our_back_is_reported_as_gone() {
    let t = repo();
    t.ok(&["up"]);
    t.ok(&["pause"]);
    let dir = std::fs::read_dir(t.sandboxes_dir())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_dir_all(dir).unwrap();
    let r = t.rclaude(&["exec", "--", "true"]);
    assert_eq!(r.code(), 69, "{}", r.all());
    assert!(r.stderr().contains("no longer exists"), "{}", r.all());
    assert!(r.stderr().contains("rclaude up"), "{}", r.all());
    // `up` recovers by creating a new one.
    t.ok(&["up"]);
    t.ok(&["exec", "--", "test -f src/main.txt"]);
}

#[test]
fn an_agent_that_cannot_start_is_a_clear_unavailable_error() {
    let t = repo();
    let mut c = t.cmd(&["up"]);
    c.env("RCLAUDE_AGENT_BIN", "/bin/false");
    let out = c.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(69),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("agent"), "{err}");
}

#[test]
fn an_agent_killed_behind_our_back_is_restarted() {
    let t = repo();
    t.ok(&["up"]);
    unsafe { libc::kill(t.agent_pid(), libc::SIGKILL) };
    std::thread::sleep(std::time::Duration::from_millis(100));
    let r = t.ok(&["exec", "--", "echo back"]);
    assert_eq!(r.stdout(), "back\n");
}

#[test]
fn errors_outside_a_repository_and_without_config() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["up"])
        .current_dir(dir.path())
        .env("RCLAUDE_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside a git repository"));

    let t = TestRepo::new("");
    std::fs::remove_file(t.path().join(".rclaude.toml")).unwrap();
    let r = t.rclaude(&["up"]);
    assert_eq!(r.code(), 78, "{}", r.all());
    assert!(r.stderr().contains("rclaude init"), "{}", r.all());
}

#[test]
fn bad_configs_name_file_line_column_and_key() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[sandbox]\nprovider = \"local\"\ncolour = \"blue\"\n",
            &[".rclaude.toml:3:1", "sandbox.colour", "provider"],
        ),
        (
            "[sandbox]\nprovider = \"moon\"\n",
            &[".rclaude.toml:2:12", "sandbox.provider", "local", "e2b"],
        ),
        (
            "[sandbox]\ntimeout = \"5 parsecs\"\n",
            &[".rclaude.toml:2:11", "sandbox.timeout", "1h30m"],
        ),
        (
            "[sandbox]\ncpu = \"two\"\n",
            &[".rclaude.toml:2:7", "sandbox.cpu"],
        ),
        (
            "[tasks.a]\nrun = \"x\"\ndepends = [\"missing\"]\n",
            &[".rclaude.toml:3:12", "tasks.a.depends", "missing"],
        ),
        (
            "[tasks.a]\nrun = \"x\"\ndepends = [\"b\"]\n[tasks.b]\nrun = \"y\"\ndepends = [\"a\"]\n",
            &["cycle", "a", "b"],
        ),
    ];
    for (config, needles) in cases {
        let t = TestRepo::new(config);
        let r = t.rclaude(&["up"]);
        assert_eq!(r.code(), 78, "config {config:?}: {}", r.all());
        for n in *needles {
            assert!(
                r.stderr().contains(n),
                "config {config:?}: expected {n:?} in:\n{}",
                r.stderr()
            );
        }
        assert!(
            !t.sandboxes_dir().exists(),
            "a sandbox was created despite a bad config"
        );
    }
}

#[test]
fn init_writes_a_starter_and_refuses_to_overwrite() {
    let t = TestRepo::new("");
    std::fs::remove_file(t.path().join(".rclaude.toml")).unwrap();
    t.write(
        "Cargo.toml",
        "[package]\nname = \"x\"\nversion = \"0.1.0\"\n",
    );
    t.ok(&["init"]);
    let text = t.read(".rclaude.toml");
    assert!(text.contains("cargo test"), "{text}");
    let r = t.rclaude(&["init"]);
    assert_ne!(r.code(), 0);
    assert!(r.stderr().contains("--force"), "{}", r.all());
    t.ok(&["init", "--force"]);
    // The starter is a valid config: `run` lists its tasks.
    let r = t.ok(&["run"]);
    assert!(r.stdout().contains("test"), "{}", r.all());
}

#[test]
fn secrets_come_from_the_local_environment_and_missing_ones_are_named() {
    let t = TestRepo::new("[secrets]\nAPI_TOKEN = { from_env = \"MY_LOCAL_TOKEN\" }\n");
    t.commit_all("init");
    let r = t.rclaude(&["exec", "--", "echo $API_TOKEN"]);
    assert_eq!(r.code(), 78, "{}", r.all());
    assert!(r.stderr().contains("MY_LOCAL_TOKEN"), "{}", r.all());

    let out = t
        .cmd(&["exec", "--", "echo ${#API_TOKEN}"])
        .env("MY_LOCAL_TOKEN", "s3cr3t-value")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "12\n");
    // The value is never written to rclaude's own files.
    for entry in walk(t.home.path()) {
        if entry.is_file() {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("s3cr3t-value"),
                "secret found in {}",
                entry.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() && !p.is_symlink() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// Whether a process whose command line contains `marker` runs on this machine.
fn running(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(marker))
            .unwrap_or(false)
    })
}

fn gone_within(marker: &str, d: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + d;
    while running(marker) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    true
}

/// Start a background process in the sandbox, then SIGKILL the sandbox's agent.
fn crash_agent_leaving(t: &TestRepo, marker: &str) {
    t.ok(&[
        "exec",
        "--",
        &format!("nohup sh -c 'while true; do sleep 0.05; done' {marker} >/dev/null 2>&1 &"),
    ]);
    // Polled: right after `exec` returns, the background process may be between fork and its
    // two execs (nohup, then sh), when /proc briefly shows it without its command line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !running(marker) {
        assert!(
            std::time::Instant::now() < deadline,
            "the background process did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the agent this test's sandbox runs.
    unsafe { libc::kill(t.agent_pid(), libc::SIGKILL) };
    std::thread::sleep(std::time::Duration::from_millis(300));
}

#[test]
fn without_bubblewrap_a_crashed_agents_processes_end_at_restart_pause_and_down() {
    let t = TestRepo::new("[sandbox]\nprovider = \"local\"\nisolation = \"none\"\n");
    t.write("README", "hi\n");
    t.commit_all("init");
    t.ok(&["up"]);
    for next in [&["exec", "--", "true"][..], &["pause"], &["down", "--yes"]] {
        let marker = format!("crash-{}", uuid::Uuid::new_v4().simple());
        crash_agent_leaving(&t, &marker);
        t.ok(next);
        assert!(
            gone_within(&marker, std::time::Duration::from_secs(3)),
            "a process of the crashed agent survived `rclaude {next:?}`"
        );
        if next == ["pause"] {
            t.ok(&["resume"]);
        }
        if next == ["down", "--yes"] {
            assert_eq!(std::fs::read_dir(t.sandboxes_dir()).unwrap().count(), 0);
        }
    }
}

#[test]
fn with_bubblewrap_a_crashed_agents_processes_end_with_it() {
    let t = TestRepo::new("[sandbox]\nprovider = \"local\"\nisolation = \"bwrap\"\n");
    t.write("README", "hi\n");
    t.commit_all("init");
    t.ok(&["up"]);
    let marker = format!("crash-{}", uuid::Uuid::new_v4().simple());
    crash_agent_leaving(&t, &marker);
    assert!(
        gone_within(&marker, std::time::Duration::from_secs(3)),
        "a process of the crashed agent survived it"
    );
}

/// The sandbox-side steps a command ran (from rclaude's debug log).
fn sandbox_steps(t: &TestRepo, args: &[&str]) -> Vec<String> {
    logged_steps(t, args).0.into_iter().map(|s| s.0).collect()
}

/// The sandbox-side steps a command ran, each with whether the agent's step helper did it,
/// and the debug log (of the sync steps and the provider library) they were read from.
fn logged_steps(t: &TestRepo, args: &[&str]) -> (Vec<(String, bool)>, String) {
    let out = t
        .cmd(args)
        .env(
            "RCLAUDE_LOG",
            "rclaude_sandbox_git=debug,rclaude_sandbox=debug",
        )
        .output()
        .unwrap();
    let r = common::Run(out);
    assert_eq!(r.code(), 0, "rclaude {args:?}: {}", r.all());
    let log = r.stderr();
    let steps = log
        .lines()
        .filter(|l| l.contains("running a sandbox-side step"))
        .filter_map(|l| {
            let name = l.split("step=").nth(1)?.split_whitespace().next()?;
            Some((
                name.trim_matches('"').to_string(),
                l.contains("helper=true"),
            ))
        })
        .collect();
    (steps, log)
}

/// With nothing changed on either side, a sync asks the sandbox nothing once a query has
/// confirmed its state: the agent's change token says it is still as it was. Any change in the
/// sandbox — a new file, a commit, a sync from elsewhere — brings the query back, and a change
/// here is sent as before.
#[test]
fn an_unchanged_sync_asks_the_sandbox_nothing_until_something_changes() {
    let t = TestRepo::new("[sandbox]\nprovider = \"local\"\n");
    t.write("a.txt", "one\n");
    t.commit_all("init");
    t.ok(&["up"]);
    // The first sync with nothing new confirms the sandbox's state with a query...
    assert_eq!(sandbox_steps(&t, &["sync"]), ["query"]);
    // ...after which nothing runs in the sandbox to find that nothing changed.
    assert!(sandbox_steps(&t, &["sync"]).is_empty());
    assert!(sandbox_steps(&t, &["exec", "--", "true"]).is_empty());
    // A file made in the sandbox, even right before the sync.
    t.sh("echo x > made-there.txt");
    assert_eq!(sandbox_steps(&t, &["sync"]), ["query"]);
    assert!(sandbox_steps(&t, &["sync"]).is_empty());
    // A commit in the sandbox.
    t.sh("git add -A && git -c user.name=s -c user.email=s@x commit -qm there");
    assert_eq!(sandbox_steps(&t, &["sync"]), ["query"]);
    // A change here is sent and applied; the next sync confirms, the one after asks nothing.
    t.write("a.txt", "two\n");
    let sent = sandbox_steps(&t, &["sync"]);
    assert!(sent.contains(&"apply".to_string()), "{sent:?}");
    assert_eq!(t.sh("cat a.txt"), "two\n");
    assert_eq!(sandbox_steps(&t, &["sync"]), ["query"]);
    assert!(sandbox_steps(&t, &["sync"]).is_empty());
    // Another session's record of the same sandbox is not ours: a sync from elsewhere (here:
    // the sandbox's sync record rewritten) brings the query back.
    let synced = common::find_in(&t.sandboxes_dir(), ".git/rclaude/synced");
    let text = std::fs::read_to_string(&synced).unwrap();
    std::fs::write(&synced, format!("{text}\n")).unwrap();
    assert_eq!(sandbox_steps(&t, &["sync"]), ["query"]);
    t.ok(&["down", "--yes", "--discard"]);
}

/// `git init` in a sandbox subdirectory, with no commit yet, stopped `git add -A` and with it
/// every sync, pull and checkpoint of that sandbox. Such a repository is left out and left
/// alone, like one with commits.
#[test]
fn a_repository_made_in_the_sandbox_without_a_commit_stops_nothing() {
    let t = repo();
    t.ok(&["up"]);
    t.sh("mkdir inner && cd inner && git init -q && echo kept > work.txt");
    t.write("src/main.txt", "edited on the laptop\n");
    t.ok(&["sync"]);
    assert_eq!(
        t.sh("cat src/main.txt inner/work.txt"),
        "edited on the laptop\nkept\n"
    );
    t.sh("echo sandbox edit > src/main.txt");
    let pulled = t.ok(&["pull"]);
    assert!(pulled.stderr().contains("rclaude/"), "{}", pulled.all());
    t.ok(&["checkpoints", "--take"]);
    t.ok(&["down", "--yes", "--discard"]);
}

/// The one-process apply (the agent's step helper) killed half-way together with the CLI and
/// the agent (SIGKILL to all three while it writes the work tree): the next `sync` restarts
/// the agent and recovers, the sandbox's own work comes back to the laptop, and both sides end
/// in sync.
#[test]
fn a_sync_killed_with_its_agent_mid_apply_loses_nothing() {
    const FILES: usize = 6000;
    let t = repo();
    t.ok(&["up"]);
    let rc = common::find_in(&t.sandbox_dir(), ".git/rclaude/identity")
        .parent()
        .unwrap()
        .to_path_buf();
    let work = rc.parent().unwrap().parent().unwrap().to_path_buf();
    t.ok(&["exec", "--", "echo made in the sandbox > sandbox.txt"]);
    for n in 0..FILES {
        t.write(&format!("many/{n:05}.txt"), &format!("{n}\n").repeat(300));
    }
    let mut cli = t.cmd(&["sync"]).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !rc.join("applying").exists() {
        assert!(
            cli.try_wait().unwrap().is_none(),
            "the sync ended before its apply's marker was seen"
        );
        assert!(std::time::Instant::now() < deadline, "no apply started");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let agent = t.agent_pid();
    let mut victims = vec![cli.id() as i32, agent];
    victims.extend(
        processes_running("__rclaude-sandbox-step")
            .into_iter()
            .filter(|p| descends_from(*p, agent)),
    );
    assert!(victims.len() > 2, "the apply runs in the step helper");
    for pid in victims {
        // SAFETY: kill(2) on this test's own CLI, its sandbox's agent and that agent's helper.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = cli.wait();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let written = std::fs::read_dir(work.join("many"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(written < FILES, "the apply was cut short ({written} files)");
    assert!(rc.join("applying").exists(), "its marker stays");

    let r = t.ok(&["sync"]);
    assert!(!rc.join("applying").exists(), "{}", r.all());
    let count = t.ok(&["exec", "--", "ls many | wc -l"]);
    assert_eq!(count.stdout().trim(), FILES.to_string());
    let saved = t.git(&["for-each-ref", "--format=%(refname)", "refs/rclaude/saved"]);
    let back = saved.lines().any(|r| {
        t.git(&["ls-tree", "--name-only", r, "sandbox.txt"]).trim() == "sandbox.txt"
            && t.show_bytes(&format!("{r}:sandbox.txt")) == b"made in the sandbox\n"
    });
    assert!(back, "the sandbox's file came back: {saved:?}\n{}", r.all());
    let status = t.ok(&["exec", "--", "git status --porcelain"]);
    assert_eq!(
        status.stdout(),
        t.git(&["status", "--porcelain"]),
        "the sandbox matches the laptop"
    );
}

/// Whether process `pid` is `ancestor` or one of its descendants.
fn descends_from(mut pid: i32, ancestor: i32) -> bool {
    while pid > 1 {
        if pid == ancestor {
            return true;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        pid = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
    }
    false
}

/// Pids of processes whose command line contains `needle`.
fn processes_running(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(needle).then_some(pid)
        })
        .collect()
}

/// A history longer than the step helper takes (`native::MAX_NEW_COMMITS`) goes straight to
/// the script's `git fetch`, whose `index-pack` uses every core where libgit2's indexer uses
/// one: the helper is not asked (before, it read the whole pack, then declined).
/// The next sync, of one new commit, is the helper's again.
#[test]
fn a_long_history_goes_straight_to_git_and_a_short_one_to_the_helper() {
    let t = repo();
    // 1,100 commits on top, written by `git fast-import` in one go.
    let mut stream = String::new();
    let head = t.git(&["rev-parse", "HEAD"]);
    for n in 0..1100 {
        let from = if n == 0 {
            format!("from {}\n", head.trim())
        } else {
            String::new()
        };
        let data = format!("line {n}\n");
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter t <t@example.com> {} +0000\ndata 5\nc{:03}\n{from}M 100644 inline history.txt\ndata {}\n{data}\n",
            1_700_000_000 + n,
            n % 1000,
            data.len()
        ));
    }
    let mut fi = std::process::Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(t.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    fi.stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(fi.wait().unwrap().success());
    t.git(&["reset", "-q", "--hard", "main"]);

    // Whether the helper did each apply step.
    let applies = |args: &[&str]| {
        let (steps, log) = logged_steps(&t, args);
        let by_helper: Vec<bool> = steps
            .into_iter()
            .filter(|(name, _)| name == "apply")
            .map(|(_, helper)| helper)
            .collect();
        (by_helper, log)
    };
    let (by_helper, up) = applies(&["up", "--no-setup"]);
    assert_eq!(by_helper, [false], "the script applied, once: {up}");
    assert!(
        !up.contains("declined /rclaude/apply"),
        "the helper was not asked: {up}"
    );
    let n = t.sh("git log --oneline | wc -l");
    assert_eq!(n.trim(), "1101");

    t.write("history.txt", "one more\n");
    t.commit_all("one more");
    let (by_helper, sync) = applies(&["sync"]);
    assert_eq!(by_helper, [true], "the helper applied, once: {sync}");
    assert_eq!(t.sh("cat history.txt"), "one more\n");
    t.ok(&["down", "--yes", "--discard"]);
}
