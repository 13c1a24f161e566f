//! `rclaude exec` and the remote process's life, with the real binary and a real local agent:
//! exit codes of signal deaths, signals to rclaude passed on to the remote command, piped
//! stdin streamed to it, and a clear error when the sandbox's agent goes away mid-command.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestRepo;

fn repo() -> TestRepo {
    repo_with("[sandbox]\nprovider = \"local\"\n")
}

fn repo_with(config: &str) -> TestRepo {
    let t = TestRepo::new(config);
    t.write("README", "hi\n");
    t.commit_all("init");
    t.ok(&["up"]);
    t
}

fn sandbox_dir(t: &TestRepo) -> std::path::PathBuf {
    std::fs::read_dir(t.sandboxes_dir())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// A running `rclaude` whose stdout and stderr are collected as they arrive.
struct Running {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Running {
    fn start(t: &TestRepo, args: &[&str], stdin: Stdio) -> Running {
        let mut child = t
            .cmd(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let collect = |mut r: Box<dyn Read + Send>| {
            let buf = Arc::new(Mutex::new(String::new()));
            let b = buf.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    b.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            });
            buf
        };
        let out = collect(Box::new(child.stdout.take().unwrap()));
        let err = collect(Box::new(child.stderr.take().unwrap()));
        Running { child, out, err }
    }

    fn wait_for_stdout(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.out.lock().unwrap().contains(needle) {
            if Instant::now() > deadline || self.child.try_wait().unwrap().is_some() {
                panic!(
                    "never saw {needle:?} on stdout:\n{}\n--- stderr\n{}",
                    self.out.lock().unwrap(),
                    self.err.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Wait for the exit; returns (code, stdout, stderr, how long it took).
    fn finish(mut self) -> (i32, String, String, Duration) {
        let t0 = Instant::now();
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let out = self.out.lock().unwrap().clone();
        let err = self.err.lock().unwrap().clone();
        (status.code().unwrap_or(-1), out, err, t0.elapsed())
    }
}

/// Whether a process whose command line contains `marker` runs on this machine.
fn running(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(marker))
            .unwrap_or(false)
    })
}

fn wait_gone(marker: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !running(marker) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !running(marker)
}

fn marker() -> String {
    format!(
        "rc-marker-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Without bubblewrap the agent itself sees the signal death and reports it as envd does
/// (`signal: segmentation fault`); under bubblewrap, bwrap turns it into an exit code first.
#[test]
fn a_command_killed_by_any_signal_exits_128_plus_that_signal() {
    for isolation in ["none", "bwrap"] {
        let t = repo_with(&format!(
            "[sandbox]\nprovider = \"local\"\nisolation = \"{isolation}\"\n"
        ));
        signal_deaths(&t);
    }
}

fn signal_deaths(t: &TestRepo) {
    for (sig, name) in [
        (libc::SIGSEGV, "SEGV"),
        (libc::SIGABRT, "ABRT"),
        (libc::SIGUSR1, "USR1"),
        (libc::SIGUSR2, "USR2"),
        (libc::SIGPIPE, "PIPE"),
        (libc::SIGALRM, "ALRM"),
        (libc::SIGQUIT, "QUIT"),
        (libc::SIGTERM, "TERM"),
        (libc::SIGKILL, "KILL"),
        (libc::SIGINT, "INT"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGSYS, "SYS"),
    ] {
        // (bash ignores SIGQUIT; sh does not.)
        let r = t.rclaude(&[
            "exec",
            "--no-sync",
            "--",
            &format!("exec sh -c 'kill -{name} $$'"),
        ]);
        assert_eq!(r.code(), 128 + sig, "SIG{name}: {}", r.all());
    }
    // A signal without a name of its own (a real-time one) too.
    let r = t.rclaude(&["exec", "--no-sync", "--", "kill -s RTMIN+2 $$"]);

    assert_eq!(r.code(), 128 + libc::SIGRTMIN() + 2, "{}", r.all());
    // Plain exit codes are passed through unchanged.
    let r = t.rclaude(&["exec", "--no-sync", "--", "exit 200"]);
    assert_eq!(r.code(), 200, "{}", r.all());
}

/// SIGTERM, SIGHUP or Ctrl-C to `rclaude exec`: the remote command gets SIGTERM (its trap runs),
/// nothing of it keeps running, and rclaude exits with 128 + the signal it got.
#[test]
fn signals_to_exec_stop_the_remote_command_and_exit_128_plus_the_signal() {
    let t = repo();
    let workspace = sandbox_dir(&t).join("root/workspace");
    for (sig, code) in [
        (libc::SIGTERM, 143),
        (libc::SIGHUP, 129),
        (libc::SIGINT, 130),
    ] {
        let m = marker();
        let trap_file = format!("trapped-{sig}");
        let script = format!(
            "trap 'echo $(date +%s) > {trap_file}; exit 7' TERM; \
             sh -c 'sleep 600' {m} & echo ready; wait"
        );
        let mut r = Running::start(&t, &["exec", "--no-sync", "--", &script], Stdio::null());
        r.wait_for_stdout("ready");
        assert!(running(&m), "the remote command is not running");
        r.signal(sig);
        let (got, out, err, _) = r.finish();
        assert_eq!(got, code, "signal {sig}:\n{out}\n{err}");
        assert!(
            workspace.join(&trap_file).exists(),
            "signal {sig}: the remote command never got SIGTERM:\n{err}"
        );
        assert!(err.contains("interrupted by"), "{err}");
        // Its background child is not left behind either (the trap does not kill it: the
        // agent's process-group signal does).
        assert!(
            wait_gone(&m, Duration::from_secs(5)),
            "signal {sig}: a remote process kept running after rclaude exited"
        );
    }
}

#[test]
fn a_remote_command_that_ignores_sigterm_is_killed_after_a_grace_period() {
    let t = repo();
    let m = marker();
    let script = format!("trap '' TERM; echo ready; exec sh -c 'trap \"\" TERM; sleep 600' {m}");
    let mut r = Running::start(&t, &["exec", "--no-sync", "--", &script], Stdio::null());
    r.wait_for_stdout("ready");
    std::thread::sleep(Duration::from_millis(200));
    r.signal(libc::SIGTERM);
    let (code, _, err, took) = r.finish();
    assert_eq!(code, 143, "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        wait_gone(&m, Duration::from_secs(5)),
        "the command survived SIGKILL"
    );
}

#[test]
fn piped_stdin_is_streamed_to_the_command() {
    let t = repo();
    // A pipe: `echo hi | rclaude exec -- cat`.
    let mut r = Running::start(&t, &["exec", "--no-sync", "--", "cat"], Stdio::piped());
    r.child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let (code, out, err, _) = r.finish();
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");

    // Streamed, not read whole first: the command answers the first line while stdin is still
    // open, and more input follows.
    let mut r = Running::start(
        &t,
        &[
            "exec",
            "--no-sync",
            "--",
            "while read l; do echo \"got $l\"; done; echo eof",
        ],
        Stdio::piped(),
    );
    let mut stdin = r.child.stdin.take().unwrap();
    stdin.write_all(b"one\n").unwrap();
    stdin.flush().unwrap();
    r.wait_for_stdout("got one");
    stdin.write_all(b"two\n").unwrap();
    drop(stdin);
    let (code, out, err, _) = r.finish();
    assert_eq!(
        (code, out.as_str()),
        (0, "got one\ngot two\neof\n"),
        "{err}"
    );

    // A large file, byte for byte.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = t.home.path().join("input.bin");
    std::fs::write(&file, &data).unwrap();
    let out = t
        .cmd(&["exec", "--no-sync", "--", "sha256sum | cut -c1-64"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    let expected = String::from_utf8(
        std::process::Command::new("sha256sum")
            .arg(&file)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        &expected[..64],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // --no-stdin: the command reads nothing even from a pipe.
    let mut r = Running::start(
        &t,
        &["exec", "--no-sync", "--no-stdin", "--", "wc -c"],
        Stdio::piped(),
    );
    r.child.stdin.take().unwrap().write_all(b"ignored").unwrap();
    let (code, out, _, _) = r.finish();
    assert_eq!((code, out.trim()), (0, "0"));
}

#[test]
fn an_agent_that_dies_mid_command_is_reported_as_gone_with_a_hint() {
    let t = repo();
    let dir = sandbox_dir(&t);
    let mut r = Running::start(
        &t,
        &["exec", "--no-sync", "--", "echo ready; sleep 600"],
        Stdio::null(),
    );
    r.wait_for_stdout("ready");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("agent.json")).unwrap()).unwrap();
    // SAFETY: kill(2) on the sandbox's agent, which this test started.
    unsafe { libc::kill(state["pid"].as_i64().unwrap() as i32, libc::SIGKILL) };
    let (code, _, err, _) = r.finish();
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("agent went away"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(err.contains("rclaude status"), "{err}");
    // The next command restarts the agent.
    let r = t.ok(&["exec", "--no-sync", "--", "echo back"]);
    assert_eq!(r.stdout(), "back\n");
}

#[test]
fn a_closed_stdout_stops_the_remote_command() {
    let t = repo();
    let m = marker();
    let mut child = t
        .cmd(&[
            "exec",
            "--no-sync",
            "--",
            "bash",
            "-c",
            &format!("exec -a {m} yes"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 4];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take()); // the reader goes away, like `| head -1`
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "rclaude kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(141), "128 + SIGPIPE");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        wait_gone(&m, Duration::from_secs(10)),
        "the remote `yes` still runs"
    );
}
