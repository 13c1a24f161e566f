//! `rclaude exec` stands in for the remote process: piped stdin reaches it, signals sent to
//! rclaude stop it, its death by a signal becomes `128 + N`, a closed stdout stops it, and a
//! sandbox agent that dies mid-command is reported with what to do. Real binary, real agent.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::TestRepo;

fn repo() -> TestRepo {
    repo_with("auto")
}

fn repo_with(isolation: &str) -> TestRepo {
    let r = TestRepo::new(&format!(
        "[sandbox]\nprovider = \"local\"\nisolation = \"{isolation}\"\n"
    ));
    r.write("README", "hi\n");
    r.commit_all("init");
    r.ok(&["up", "--quiet"]);
    r
}

fn spawn(repo: &TestRepo, args: &[&str]) -> Child {
    repo.cmd(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `path` in the sandbox's workspace to exist (the remote command's sign of life).
fn wait_for_file(repo: &TestRepo, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let found = std::fs::read_dir(repo.sandboxes_dir())
            .unwrap()
            .flatten()
            .any(|d| d.path().join("root/workspace").join(name).exists());
        if found {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{name} never appeared in the sandbox");
}

fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "rclaude did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn piped_stdin_reaches_the_remote_command() {
    let repo = repo();
    let mut child = repo
        .cmd(&["exec", "--no-sync", "--", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hi\nthere\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\nthere\ndone\n");

    // Several MiB, streamed (and the command sees EOF at the end).
    let big: Vec<u8> = (0..6 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut child = repo
        .cmd(&["exec", "--no-sync", "--", "sh", "-c", "wc -c; md5sum"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&big));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&format!("{}\n", 6 * 1024 * 1024)),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_command_killed_by_a_signal_exits_128_plus_its_number() {
    // Under bubblewrap and without it (where the agent reports the signal itself).
    for isolation in ["bwrap", "none"] {
        let repo = repo_with(isolation);
        for (sig, code) in [("SEGV", 139), ("ABRT", 134), ("USR1", 138), ("TERM", 143)] {
            let r = repo.rclaude(&[
                "exec",
                "--no-sync",
                "--",
                "sh",
                "-c",
                &format!("kill -{sig} $$"),
            ]);
            assert_eq!(r.code(), code, "{isolation}: SIG{sig}: {}", r.all());
        }
    }
}

#[test]
fn signals_to_rclaude_stop_the_remote_command_and_give_128_plus_n() {
    let repo = repo();
    for (sig, name, code) in [
        (libc::SIGTERM, "term", 143),
        (libc::SIGHUP, "hup", 129),
        (libc::SIGINT, "int", 130),
    ] {
        let marker = format!("running-{name}");
        let got = format!("got-{name}");
        let script = format!(
            "trap 'echo stopped > {got}; exit 0' TERM; touch {marker}; \
             while :; do sleep 0.1; done"
        );
        let mut child = spawn(&repo, &["exec", "--no-sync", "--", "bash", "-c", &script]);
        wait_for_file(&repo, &marker);
        unsafe { libc::kill(child.id() as i32, sig) };
        let exit = wait_exit(&mut child, Duration::from_secs(20));
        assert_eq!(exit, code, "after SIG{}", name.to_uppercase());
        // The remote command got SIGTERM and cleaned up, rather than running on.
        wait_for_file(&repo, &got);
    }
}

#[test]
fn a_closed_stdout_stops_the_remote_command() {
    let repo = repo();
    let mut child = spawn(
        &repo,
        &[
            "exec",
            "--no-sync",
            "--",
            "bash",
            "-c",
            "touch yes-running; yes",
        ],
    );
    let mut first = [0u8; 4];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take()); // the reader goes away, like `| head -1`
    let exit = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(exit, 141, "128 + SIGPIPE");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{err}");
    // Nothing named `yes` runs in the sandbox any more.
    let ps = repo.ok(&[
        "exec",
        "--no-sync",
        "--",
        "sh",
        "-c",
        "pgrep -x yes || true",
    ]);
    assert_eq!(ps.stdout().trim(), "", "yes still running");
}

#[test]
fn an_agent_that_dies_mid_command_is_reported_with_what_to_do() {
    let repo = repo();
    let mut child = spawn(
        &repo,
        &[
            "exec",
            "--no-sync",
            "--",
            "bash",
            "-c",
            "touch agent-test; sleep 60",
        ],
    );
    wait_for_file(&repo, "agent-test");
    let state = std::fs::read_dir(repo.sandboxes_dir())
        .unwrap()
        .flatten()
        .map(|d| d.path().join("agent.json"))
        .find(|p| p.exists())
        .expect("agent.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    let pid = v["pid"].as_i64().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let exit = wait_exit(&mut child, Duration::from_secs(20));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(exit, 69, "{err}");
    assert!(err.contains("agent") && err.contains("rclaude up"), "{err}");
}
