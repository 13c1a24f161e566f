//! `rclaude shell`: an interactive terminal in a local-provider sandbox, driven through a real
//! pseudo-terminal (the test plays the user's terminal), and with piped input.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestRepo;

const CONFIG: &str = "[sandbox]\nprovider = \"local\"\n";

fn repo() -> TestRepo {
    let t = TestRepo::new(CONFIG);
    t.write("hello.txt", "hello from the laptop\n");
    t.commit_all("initial");
    t
}

/// A pty pair `(master, slave)` of the given size.
fn openpty(cols: u16, rows: u16) -> (OwnedFd, OwnedFd) {
    let (mut m, mut s) = (-1, -1);
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two fds; name and termios may be null.
    let rc = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: fresh fds owned by us.
    unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) }
}

fn lflag(fd: &OwnedFd) -> libc::tcflag_t {
    // SAFETY: tcgetattr fills the struct.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
    t.c_lflag
}

fn set_size(fd: &OwnedFd, cols: u16, rows: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize.
    assert_eq!(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) },
        0
    );
}

/// The user's side of the terminal: everything the program printed, and a keyboard.
struct Terminal {
    master: std::fs::File,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    fn new(master: OwnedFd) -> Terminal {
        let master = std::fs::File::from(master);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal { master, seen }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn type_(&mut self, s: &str) {
        self.master.write_all(s.as_bytes()).unwrap();
    }

    /// Wait until the output contains `want` (typing `retype` again every second, if given).
    fn expect(&mut self, want: &str, retype: Option<&str>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = Instant::now();
        while !self.text().contains(want) {
            assert!(
                Instant::now() < deadline,
                "no {want:?} on the terminal; it shows:\n{}",
                self.text()
            );
            if let Some(r) = retype
                && last.elapsed() > Duration::from_secs(1)
            {
                self.type_(r);
                last = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn shell_on_a_terminal_runs_commands_follows_resizes_and_passes_the_exit_code() {
    let t = repo();
    t.ok(&["up"]);
    let (master, slave) = openpty(100, 30);
    let before = lflag(&slave);
    assert_ne!(before & libc::ICANON, 0);
    let mut cmd = t.cmd(&["shell"]);
    cmd.env("TERM", "xterm-256color")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    // SAFETY: setsid and ioctl are async-signal-safe; the child takes the pty as its terminal.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut term = Terminal::new(master.try_clone().unwrap());

    // A command's output comes back; the shell runs in the repository.
    term.type_("echo $((6*7))-$(cat hello.txt | wc -w)\r");
    term.expect("42-4", None);
    // Raw mode: Ctrl-C goes to the remote shell (which survives it), not to rclaude.
    term.type_("sleep 30\r");
    std::thread::sleep(Duration::from_millis(300));
    term.type_("\x03");
    term.type_("echo still-$((1+1))\r");
    term.expect("still-2", None);
    // The remote terminal has our size, and follows a resize.
    term.type_("stty size\r");
    term.expect("30 100", None);
    set_size(&master, 120, 40);
    term.expect("40 120", Some("stty size\r"));
    term.type_("exit 3\r");

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rclaude shell did not exit; terminal:\n{}", term.text());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3), "terminal:\n{}", term.text());
    // The terminal is back in the mode it was in.
    assert_eq!(lflag(&slave), before, "terminal settings not restored");
}

#[test]
fn shell_with_piped_input_and_commands() {
    let t = repo();
    let mut child = t
        .cmd(&["shell"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo hi-$((1+1)) $(cat hello.txt)\nexit 4\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("hi-2 hello from the laptop"), "{stdout}");

    // A command instead of a shell; input ends at once (Ctrl-D), its exit code passes through.
    let r = t.rclaude(&[
        "shell",
        "--no-sync",
        "--",
        "sh",
        "-c",
        "tty >/dev/null && echo on-a-tty; exit 5",
    ]);
    assert_eq!(r.code(), 5, "{}", r.all());
    assert!(r.stdout().contains("on-a-tty"), "{}", r.all());
}
