//! Named sessions: several sandboxes of one repository side by side (`--session NAME`), each
//! with its own record and lock, each pulled to its own branch with exactly its own changes.

mod common;
#[path = "support/pip_tool.rs"]
mod pip_tool;
#[path = "support/skip.rs"]
mod skip;

use std::time::Duration;

use common::TestRepo;

const CONFIG: &str = "[sandbox]\nprovider = \"local\"\n";

#[test]
fn named_sessions_run_side_by_side_and_come_back_on_their_own_branches() {
    let t = TestRepo::new(CONFIG);
    t.write("base.txt", "base\n");
    t.commit_all("init");
    t.ok(&["up", "--quiet"]);
    t.ok(&["up", "--quiet", "-s", "alpha"]);
    t.ok(&["up", "--quiet", "--session", "beta"]);

    // A long command in alpha does not hold beta (nor the default session) back.
    let mut long = t
        .cmd(&[
            "exec",
            "-s",
            "alpha",
            "--no-sync",
            "--",
            "sh",
            "-c",
            "sleep 4; echo alpha > alpha.txt",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    t.ok(&[
        "exec",
        "-s",
        "beta",
        "--no-sync",
        "--",
        "sh",
        "-c",
        "echo beta > beta.txt",
    ]);
    t.sh("echo default > default.txt");
    assert!(
        long.try_wait().unwrap().is_none(),
        "alpha's command ended before the others ran: they waited for it"
    );
    assert!(long.wait().unwrap().success());

    // Three sandboxes, each listed with its session.
    let ls = t.ok(&["ls"]).stdout();
    for name in ["alpha", "beta", "(default)"] {
        assert!(ls.contains(name), "{ls}");
    }
    let ids: Vec<String> = ["alpha", "beta"]
        .iter()
        .map(|n| {
            let v: serde_json::Value =
                serde_json::from_str(&t.ok(&["status", "--json", "-s", n]).stdout()).unwrap();
            assert_eq!(v["session_name"], *n);
            v["sandbox"].as_str().unwrap().to_string()
        })
        .collect();
    assert_ne!(ids[0], ids[1]);

    // Each session's work on its own branch, and only its own.
    t.ok(&["pull", "-s", "alpha"]);
    t.ok(&["pull", "-s", "beta"]);
    t.ok(&["pull"]);
    let files = |branch: &str| t.git(&["ls-tree", "--name-only", branch]);
    let a = files("rclaude/alpha/main");
    assert!(
        a.contains("alpha.txt") && !a.contains("beta.txt") && !a.contains("default.txt"),
        "{a}"
    );
    let b = files("rclaude/beta/main");
    assert!(b.contains("beta.txt") && !b.contains("alpha.txt"), "{b}");
    let d = files("rclaude/main");
    assert!(
        d.contains("default.txt") && !d.contains("alpha.txt") && !d.contains("beta.txt"),
        "{d}"
    );

    // Removing one leaves the others.
    t.ok(&["down", "--yes", "-s", "alpha"]);
    let gone: serde_json::Value =
        serde_json::from_str(&t.ok(&["status", "--json", "-s", "alpha"]).stdout()).unwrap();
    assert!(gone["sandbox"].is_null(), "{gone}");
    t.ok(&["exec", "-s", "beta", "--no-sync", "--", "true"]);
    t.ok(&["down", "--yes", "--discard", "-s", "beta"]);
}

#[test]
fn bad_session_names_are_refused_before_anything_happens() {
    let t = TestRepo::new(CONFIG);
    t.write("base.txt", "base\n");
    t.commit_all("init");
    for bad in ["a/b", "..", "has space", "-x", "tab\tname", "x.lock"] {
        let r = t.rclaude(&["up", &format!("--session={bad}")]);
        assert_eq!(r.code(), 64, "{bad:?}: {}", r.all());
        assert!(
            r.stderr().contains("invalid session name"),
            "{bad:?}: {}",
            r.all()
        );
    }
    assert!(
        std::fs::read_dir(t.sandboxes_dir())
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
}

#[test]
fn wait_blocks_until_the_run_ends_and_exits_with_its_code() {
    let t = TestRepo::new(CONFIG);
    t.write("base.txt", "base\n");
    t.commit_all("init");
    t.ok(&["up", "--quiet", "-s", "w"]);
    let mut install = t
        .cmd(&[
            "exec",
            "-s",
            "w",
            "--no-sync",
            "--",
            "sh",
            "-c",
            "mkdir -p \"$HOME/.local/bin\" && cat > \"$HOME/.local/bin/claude\" && chmod +x \"$HOME/.local/bin/claude\"",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    install
        .stdin
        .take()
        .unwrap()
        .write_all(common::STAND_IN_CLAUDE.as_bytes())
        .unwrap();
    assert!(install.wait().unwrap().success());
    let r = common::Run(
        t.cmd(&["claude", "-s", "w", "--detach", "--no-sync", "do it"])
            .env("ANTHROPIC_API_KEY", "sk-test")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code(), 0, "{}", r.all());

    // Still running: --timeout gives up with 124 and leaves it going.
    let r = t.rclaude(&["wait", "-s", "w", "--timeout", "1s"]);
    assert_eq!(r.code(), 124, "{}", r.all());
    assert!(r.stderr().contains("still running"), "{}", r.all());

    // It ends with 5: wait (started before the end) exits 5, and so does a wait afterwards.
    let waiter = t.cmd(&["wait", "-s", "w"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    t.ok(&[
        "exec",
        "-s",
        "w",
        "--no-sync",
        "--",
        "sh",
        "-c",
        "echo 5 > \"$HOME/code\" && touch \"$HOME/go\"",
    ]);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(t.rclaude(&["wait", "-s", "w"]).code(), 5);
    // Nothing was printed: wait is for scripts.
    assert!(t.rclaude(&["wait", "-s", "w"]).stdout().is_empty());
    t.ok(&["down", "--yes", "--discard", "-s", "w"]);
}

#[test]
fn claude_new_runs_each_prompt_in_its_own_new_session() {
    let config = format!(
        "{CONFIG}[setup]\nrun = \"mkdir -p $HOME/.local/bin && cp tools/claude $HOME/.local/bin/claude && chmod +x $HOME/.local/bin/claude\"\n"
    );
    let t = TestRepo::new(&config);
    t.write("tools/claude", common::STAND_IN_CLAUDE);
    t.commit_all("init");
    let start = |args: &[&str]| {
        common::Run(
            t.cmd(args)
                .env("ANTHROPIC_API_KEY", "sk-test")
                .output()
                .unwrap(),
        )
    };
    let r = start(&["claude", "--new", "--detach", "fix the failing tests"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    let name = r
        .stderr()
        .split("New session \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no session name in {}", r.all()));
    assert!(name.starts_with("fix-the-failing-"), "{name}");
    let r = start(&["claude", "--new", "second", "--detach", "another prompt"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    // The same name again is refused; nothing of the first is touched.
    let r = start(&["claude", "--new", "second", "--detach", "again"]);
    assert_eq!(r.code(), 64, "{}", r.all());
    assert!(r.stderr().contains("already exists"), "{}", r.all());

    let ls = t.ok(&["ls"]).stdout();
    assert!(ls.contains(&name) && ls.contains("second"), "{ls}");
    for n in [name.as_str(), "second"] {
        t.ok(&[
            "exec",
            "-s",
            n,
            "--no-sync",
            "--",
            "sh",
            "-c",
            "touch \"$HOME/go\"",
        ]);
        assert_eq!(t.rclaude(&["wait", "-s", n]).code(), 0);
        t.ok(&["down", "--yes", "--discard", "-s", n]);
    }
}

#[test]
fn fork_carries_dependencies_and_edits_without_running_setup_again() {
    let config = format!(
        "{CONFIG}[setup]\nrun = \"echo ran >> $HOME/setup-runs && mkdir -p deps && echo lib > deps/lib.txt\"\n"
    );
    let t = TestRepo::new(&config);
    t.write(".gitignore", "deps/\n");
    t.write("a.txt", "base\n");
    t.commit_all("init");
    t.ok(&["up", "--quiet"]);
    t.sh("echo edited > a.txt");

    let r = t.ok(&["fork", "f1"]);
    assert!(r.stderr().contains("Forking sandbox"), "{}", r.all());
    let in_fork = |cmd: &str| {
        t.ok(&["exec", "-s", "f1", "--no-sync", "--", "sh", "-c", cmd])
            .stdout()
    };
    assert_eq!(in_fork("cat a.txt"), "edited\n");
    assert_eq!(in_fork("cat deps/lib.txt"), "lib\n");
    assert_eq!(
        in_fork("cat $HOME/setup-runs"),
        "ran\n",
        "setup ran again in the fork"
    );
    // A later `up` of the fork does not run it either (same setup, same state).
    t.ok(&["up", "--quiet", "-s", "f1"]);
    assert_eq!(in_fork("cat $HOME/setup-runs"), "ran\n");

    // The two are apart from here on.
    in_fork("echo fork-only > b.txt");
    let source = t.rclaude(&["exec", "--no-sync", "--", "cat", "b.txt"]);
    assert_ne!(source.code(), 0, "the fork's file showed up in the source");

    // Forking again to a taken name, from a missing session, or to a bad name: refused.
    let r = t.rclaude(&["fork", "f1"]);
    assert_eq!(r.code(), 64, "{}", r.all());
    assert!(r.stderr().contains("already exists"), "{}", r.all());
    let r = t.rclaude(&["fork", "f2", "--from", "nope"]);
    assert_ne!(r.code(), 0, "{}", r.all());
    assert!(r.stderr().contains("no session \"nope\""), "{}", r.all());
    let r = t.rclaude(&["fork", "a/b"]);
    assert_eq!(r.code(), 64, "{}", r.all());
    t.ok(&["down", "--yes", "--discard", "-s", "f1"]);
}

#[test]
fn a_fresh_fork_rebuilds_the_work_in_a_new_sandbox_and_runs_setup_there() {
    let config = format!(
        "{CONFIG}[setup]\nrun = \"echo ran >> $HOME/setup-runs && mkdir -p deps && echo lib > deps/lib.txt\"\n"
    );
    let t = TestRepo::new(&config);
    t.write(".gitignore", "deps/\n");
    t.write("a.txt", "base\n");
    t.commit_all("init");
    t.ok(&["up", "--quiet"]);
    // The source's work: a branch with a commit, an edit, an untracked file; and something
    // outside the work tree that only a copy of the whole sandbox would carry.
    t.sh(
        "git checkout -qb topic && echo one > one.txt && git add one.txt && \
         git -c user.name=s -c user.email=s@x commit -qm 'sandbox: one' && \
         echo edited > a.txt && echo new > new.txt && echo cached > $HOME/cache",
    );

    let r = t.ok(&["fork", "f2", "--fresh"]);
    assert!(
        r.stderr().contains("Rebuilt the work of sandbox"),
        "{}",
        r.all()
    );
    let in_fork = |cmd: &str| {
        t.ok(&["exec", "-s", "f2", "--no-sync", "--", "sh", "-c", cmd])
            .stdout()
    };
    assert_eq!(
        in_fork(
            "git rev-parse --abbrev-ref HEAD; git log -1 --format=%s; cat a.txt new.txt deps/lib.txt $HOME/setup-runs"
        ),
        "topic\nsandbox: one\nedited\nnew\nlib\nran\n"
    );
    assert_eq!(
        in_fork("test -e $HOME/cache && echo copied || echo fresh"),
        "fresh\n"
    );
    // Its work comes back on its own branch.
    t.ok(&["pull", "-s", "f2"]);
    assert_eq!(t.git(&["show", "rclaude/f2/topic:new.txt"]), "new\n");
    t.ok(&["down", "--yes", "--discard", "-s", "f2"]);
}

/// A local webhook receiver: keeps every request body it gets (answers 200).
fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            keep.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, got)
}

#[test]
fn a_finished_run_is_announced_once_to_the_webhook() {
    let config = format!(
        "{CONFIG}[setup]\nrun = \"mkdir -p $HOME/.local/bin && cp tools/claude $HOME/.local/bin/claude && chmod +x $HOME/.local/bin/claude\"\n"
    );
    let t = TestRepo::new(&config);
    t.write("tools/claude", common::STAND_IN_CLAUDE);
    t.commit_all("init");
    let (url, got) = receiver();
    let r = common::Run(
        t.cmd(&["claude", "--detach", "do it"])
            .env("ANTHROPIC_API_KEY", "sk-test")
            .env("RCLAUDE_NOTIFY_WEBHOOK", &url)
            .output()
            .unwrap(),
    );
    assert_eq!(r.code(), 0, "{}", r.all());
    let run_id = r.stdout().trim().to_string();
    // Claude Code itself does not see the webhook (read once its process has started: under
    // load the detached run may not have exec'd yet).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let env = loop {
        let env = t
            .ok(&[
                "exec",
                "--no-sync",
                "--",
                "sh",
                "-c",
                "cat /proc/$(cat .git/rclaude/claude/*.pid | head -n1)/environ 2>/dev/null | tr '\\0' '\\n'",
            ])
            .stdout();
        if env.contains("RCLAUDE_CLAUDE_RUN=") || std::time::Instant::now() > deadline {
            break env;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        env.contains("RCLAUDE_CLAUDE_RUN="),
        "not Claude Code's environment: {env}"
    );
    assert!(!env.contains("RCLAUDE_NOTIFY_WEBHOOK"), "{env}");
    assert!(got.lock().unwrap().is_empty(), "announced before the end");
    t.sh("echo 3 > \"$HOME/code\" && touch \"$HOME/go\"");
    assert_eq!(t.rclaude(&["wait"]).code(), 3);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let bodies = got.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let v: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(v["run"], run_id.as_str());
    assert_eq!(v["exit_code"], 3);
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("ended with exit code 3"),
        "{v}"
    );
}

/// A private D-Bus session bus with a notification server on it (what a desktop has), which
/// records every notification `notify-send` sends it. `None` when skipped.
struct Desktop {
    bus: std::process::Child,
    server: std::process::Child,
    address: String,
    notes: std::path::PathBuf,
}

impl Desktop {
    fn start(dir: &std::path::Path) -> Option<Desktop> {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let tools = ["notify-send", "dbus-daemon"].iter().all(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        let python = pip_tool::install(env!("CARGO_TARGET_TMPDIR"), "jeepney", "0.9.0", "python");
        if !tools || python.is_err() {
            let what =
                "desktop notification test: notify-send, dbus-daemon or python3 with venv missing";
            if skip::opted_out("RCLAUDE_SKIP_DESKTOP", what)
                || (python.is_err() && skip::opted_out("RCLAUDE_SKIP_PYTHON", what))
            {
                return None;
            }
            panic!(
                "the {what} (Debian: apt-get install -y libnotify-bin dbus-daemon python3-venv), \
                 or set RCLAUDE_SKIP_DESKTOP=1 to skip it"
            );
        }
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut address = String::new();
        std::io::BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let address = address.trim().to_string();
        assert!(address.starts_with("unix:"), "dbus-daemon said {address:?}");
        let notes = dir.join("notifications.jsonl");
        let mut server = Command::new(python.unwrap())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/notify/server.py"
            ))
            .arg(&notes)
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(
            ready.trim(),
            "ready",
            "the notification server did not start"
        );
        Some(Desktop {
            bus,
            server,
            address,
            notes,
        })
    }

    /// Notifications shown so far.
    fn shown(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.notes)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

#[test]
fn a_detached_run_ends_with_a_desktop_notification_and_a_checkpoint() {
    let config = format!(
        "{CONFIG}[setup]\nrun = \"mkdir -p $HOME/.local/bin && cp tools/claude $HOME/.local/bin/claude && chmod +x $HOME/.local/bin/claude\"\n"
    );
    let t = TestRepo::new(&config);
    let Some(desktop) = Desktop::start(t.home.path()) else {
        return;
    };
    t.write("tools/claude", common::STAND_IN_CLAUDE);
    t.commit_all("init");
    let on_desktop = |c: &mut std::process::Command| {
        c.env("DISPLAY", ":99")
            .env("DBUS_SESSION_BUS_ADDRESS", &desktop.address)
            .env_remove("RCLAUDE_NOTIFY_DESKTOP");
    };
    let mut c = t.cmd(&["claude", "--detach", "tidy the parser"]);
    on_desktop(&mut c);
    let r = common::Run(c.env("ANTHROPIC_API_KEY", "sk-test").output().unwrap());
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stderr().contains("desktop notification"), "{}", r.all());
    std::thread::sleep(Duration::from_millis(500));
    assert!(desktop.shown().is_empty(), "notified before the end");

    // The run edits a file and ends: the background wait notices, checkpoints, notifies.
    t.sh("echo edited > from-claude.txt && echo 0 > \"$HOME/code\" && touch \"$HOME/go\"");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while desktop.shown().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let shown = desktop.shown();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["app"], "rclaude");
    assert_eq!(shown[0]["summary"], "Claude Code finished");
    let body = shown[0]["body"].as_str().unwrap();
    assert!(body.contains("tidy the parser"), "{body}");
    // The checkpoint was taken before the notification: the edit is safe on this machine.
    let cps: serde_json::Value =
        serde_json::from_str(&t.ok(&["checkpoints", "--json"]).stdout()).unwrap();
    let cp = cps
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["reason"] == "claude")
        .unwrap_or_else(|| panic!("no checkpoint of the run's end: {cps}"));
    t.ok(&["pull", "--checkpoint", cp["id"].as_str().unwrap()]);
    assert_eq!(t.git(&["show", "rclaude/main:from-claude.txt"]), "edited\n");

    // Turned off, or without a graphical session: no background wait, nothing shown.
    t.sh("rm -f \"$HOME/go\"");
    let mut c = t.cmd(&["claude", "--detach", "again"]);
    on_desktop(&mut c);
    let r = common::Run(
        c.env("ANTHROPIC_API_KEY", "sk-test")
            .env("RCLAUDE_NOTIFY_DESKTOP", "0")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(!r.stderr().contains("desktop notification"), "{}", r.all());
    t.sh("touch \"$HOME/go\"");
    assert_eq!(t.rclaude(&["wait"]).code(), 0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(desktop.shown().len(), 1);
}
