//! What a local sandbox's processes can see, with the real binary and real bubblewrap: nothing
//! of rclaude's state, of other sandboxes or of the user's secrets, while the normal workflow
//! (git, sh, node, exposed toolchains) works. Without bubblewrap, `up` and `status` say plainly
//! that commands run unconfined.
//!
//! Everything lives under the target directory, on the real disk: bubblewrap always gave
//! sandboxes a private `/tmp`, so secrets placed under `/tmp` would be hidden for the wrong
//! reason.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Run, bin, git_env};

/// A fake user: home with secrets, rclaude's home, repositories.
struct World {
    _base: tempfile::TempDir,
    base: PathBuf,
    home: PathBuf,
    rclaude_home: PathBuf,
    path: Option<String>,
}

impl World {
    fn new() -> World {
        let base_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let base = base_dir.path().canonicalize().unwrap();
        let home = base.join("home");
        let rclaude_home = base.join("rclaude");
        write(&home.join(".ssh/id_rsa"), "FAKE-PRIVATE-KEY\n");
        write(
            &home.join(".cargo/credentials.toml"),
            "[registry]\ntoken = \"FAKE-CARGO-TOKEN\"\n",
        );
        // A toolchain binary in the user's home: exposed (read-only), unlike ~/.cargo itself.
        write(
            &home.join(".cargo/bin/mytool"),
            "#!/bin/sh\necho mytool-ran\n",
        );
        set_exec(&home.join(".cargo/bin/mytool"));
        write(
            &home.join("projects/other/secret.txt"),
            "OTHER-REPO-CONTENT\n",
        );
        write(
            &rclaude_home.join("config/credentials.json"),
            "{\"server\":\"http://127.0.0.1:1\",\"token\":\"FAKE-SERVER-TOKEN\"}\n",
        );
        World {
            _base: base_dir,
            base,
            home,
            rclaude_home,
            path: None,
        }
    }

    /// A committed repository at `base/name` with `.rclaude.toml` = `config`.
    fn repo(&self, name: &str, config: &str) -> PathBuf {
        let dir = self.base.join(name);
        write(&dir.join(".rclaude.toml"), config);
        write(
            &dir.join("file.txt"),
            &format!("{name}-WORKSPACE-CONTENT\n"),
        );
        for args in [
            &["init", "-q", "-b", "main"][..],
            &["add", "-A"],
            &["commit", "-q", "-m", "init"],
        ] {
            let ok = git_env(Command::new("git").args(args).current_dir(&dir))
                .status()
                .unwrap()
                .success();
            assert!(ok, "git {args:?}");
        }
        dir
    }

    fn cmd(&self, repo: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .current_dir(repo)
            .env("RCLAUDE_HOME", &self.rclaude_home)
            .env("HOME", &self.home)
            .env("CI", "true")
            .env_remove("RCLAUDE_AGENT_BIN")
            .env_remove("RCLAUDE_TOKEN")
            .env_remove("RUSTUP_HOME")
            .env_remove("CARGO_HOME");
        if let Some(p) = &self.path {
            c.env("PATH", p);
        }
        git_env(&mut c);
        c
    }

    fn rc(&self, repo: &Path, args: &[&str]) -> Run {
        Run(self.cmd(repo, args).output().unwrap())
    }

    fn ok(&self, repo: &Path, args: &[&str]) -> Run {
        let r = self.rc(repo, args);
        assert_eq!(r.code(), 0, "rclaude {args:?} failed:\n{}", r.all());
        r
    }

    fn sandbox_dir(&self, repo: &Path) -> PathBuf {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(repo, &["status", "--json"]).stdout()).unwrap();
        self.rclaude_home
            .join("data/sandboxes")
            .join(v["sandbox"].as_str().unwrap())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for name in ["a", "b", "plain"] {
            let dir = self.base.join(name);
            if dir.exists() {
                let _ = self.cmd(&dir, &["down", "--yes", "--discard"]).output();
            }
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn set_exec(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const LOCAL_BWRAP: &str = "[sandbox]\nprovider = \"local\"\nisolation = \"bwrap\"\n";

#[test]
fn a_sandbox_sees_nothing_of_rclaude_other_sandboxes_or_the_users_secrets() {
    let w = World::new();
    let a = w.repo("a", LOCAL_BWRAP);
    let b = w.repo("b", LOCAL_BWRAP);
    w.ok(&a, &["up"]);
    w.ok(&b, &["up"]);
    // A process of sandbox B that sandbox A must not see.
    w.ok(
        &b,
        &[
            "exec",
            "--",
            "nohup sleep 300 >/dev/null 2>&1 & echo started",
        ],
    );
    let a_dir = w.sandbox_dir(&a);
    let b_dir = w.sandbox_dir(&b);
    let agent_pid = |dir: &Path| -> String {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("agent.json")).unwrap()).unwrap();
        v["pid"].to_string()
    };
    let (a_agent, b_agent) = (agent_pid(&a_dir), agent_pid(&b_dir));

    // Every probe prints LEAK:<what> when it can read what it must not.
    let probes: Vec<(String, String)> = vec![
        (
            "sandbox B agent token".into(),
            format!("cat {}", b_dir.join("agent.token").display()),
        ),
        (
            "sandbox A own agent token".into(),
            format!("cat {}", a_dir.join("agent.token").display()),
        ),
        (
            "sandbox B agent state".into(),
            format!("cat {}", b_dir.join("agent.json").display()),
        ),
        (
            "sandbox B work tree".into(),
            format!("cat {}", b_dir.join("root/workspace/file.txt").display()),
        ),
        (
            "the rclaude sandboxes directory".into(),
            format!(
                "ls {} | grep -v '^{}$' | grep .",
                w.rclaude_home.join("data/sandboxes").display(),
                a_dir.file_name().unwrap().to_string_lossy()
            ),
        ),
        (
            "the rclaude state directory".into(),
            format!("ls -A {} | grep .", w.rclaude_home.join("state").display()),
        ),
        (
            "the server API token".into(),
            format!(
                "cat {}",
                w.rclaude_home.join("config/credentials.json").display()
            ),
        ),
        (
            "~/.ssh/id_rsa".into(),
            format!("cat {}", w.home.join(".ssh/id_rsa").display()),
        ),
        (
            "~/.cargo/credentials.toml".into(),
            format!("cat {}", w.home.join(".cargo/credentials.toml").display()),
        ),
        (
            "another repository of the user".into(),
            format!("cat {}", w.home.join("projects/other/secret.txt").display()),
        ),
        (
            "the repository of sandbox B".into(),
            format!("cat {}", b.join("file.txt").display()),
        ),
        (
            "sandbox B processes".into(),
            "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep 'sleep 30[0]'".into(),
        ),
        (
            "the agent file system through /proc".into(),
            format!("ls /proc/{a_agent}/root/ /proc/{b_agent}/root/"),
        ),
        (
            "the agent environment".into(),
            format!("cat /proc/{a_agent}/environ"),
        ),
    ];
    let mut script: String = probes
        .iter()
        .map(|(what, cmd)| format!("if ({cmd}) >/dev/null 2>&1; then echo 'LEAK:{what}'; fi\n"))
        .collect();
    // A control probe: the same kind of check on what the sandbox may read does report it.
    script.push_str("if (cat file.txt) >/dev/null 2>&1; then echo 'SEEN:own work tree'; fi\n");
    let r = w.ok(&a, &["exec", "--", &script]);
    let out = r.stdout();
    let leaks: Vec<&str> = out.lines().filter(|l| l.starts_with("LEAK:")).collect();
    assert!(
        leaks.is_empty(),
        "sandbox A could read: {leaks:#?}\n{}",
        r.all()
    );
    assert!(out.contains("SEEN:own work tree"), "{}", r.all());

    // What commands need still works: the work tree, HOME, /tmp, git, sh, node, the exposed
    // toolchain, the network settings in /etc.
    let r = w.ok(
        &a,
        &[
            "exec",
            "--",
            &format!(
                "cat file.txt && echo home > $HOME/h && cat $HOME/h && echo t > /tmp/t \
                 && cat /tmp/t && git status --short && git --version >/dev/null \
                 && node --version >/dev/null && {}/.cargo/bin/mytool && test -r /etc/passwd \
                 && echo ok",
                w.home.display()
            ),
        ],
    );
    assert_eq!(
        r.stdout(),
        "a-WORKSPACE-CONTENT\nhome\nt\nmytool-ran\nok\n",
        "{}",
        r.all()
    );
    // A write outside the sandbox's own files fails, even into the exposed toolchain.
    let r = w.rc(
        &a,
        &[
            "exec",
            "--",
            &format!("echo x > {}/.cargo/bin/planted", w.home.display()),
        ],
    );
    assert_ne!(r.code(), 0, "{}", r.all());
    assert!(!w.home.join(".cargo/bin/planted").exists());

    // `status` says what the sandbox sees.
    let s = w.ok(&a, &["status"]);
    assert!(s.stdout().contains("Isolation   bubblewrap"), "{}", s.all());
    assert!(!s.stderr().contains("NOT isolated"), "{}", s.all());
}

/// A PATH with everything of /usr/bin except bubblewrap.
fn path_without_bwrap(dir: &Path) -> String {
    let farm = dir.join("bin-without-bwrap");
    std::fs::create_dir_all(&farm).unwrap();
    for e in std::fs::read_dir("/usr/bin").unwrap().flatten() {
        if e.file_name() != "bwrap" {
            let _ = std::os::unix::fs::symlink(e.path(), farm.join(e.file_name()));
        }
    }
    format!("/usr/local/bin:{}", farm.display())
}

#[test]
fn up_and_status_say_every_time_that_a_sandbox_is_not_isolated() {
    let mut w = World::new();
    // isolation = auto on a machine without bubblewrap.
    w.path = Some(path_without_bwrap(&w.base));
    let plain = w.repo("plain", "[sandbox]\nprovider = \"local\"\n");
    for _ in 0..2 {
        let up = w.ok(&plain, &["up"]);
        let err = up.stderr();
        assert!(err.contains("NOT isolated"), "{err}");
        assert!(err.contains("apt-get install bubblewrap"), "{err}");
        let st = w.ok(&plain, &["status"]);
        assert!(st.stdout().contains("Isolation   NONE"), "{}", st.all());
        assert!(st.stderr().contains("NOT isolated"), "{}", st.all());
        assert!(
            st.stderr().contains("apt-get install bubblewrap"),
            "{}",
            st.all()
        );
        let v: serde_json::Value =
            serde_json::from_str(&w.ok(&plain, &["status", "--json"]).stdout()).unwrap();
        assert_eq!(v["isolation"]["mode"], "none", "{v}");
        // Really unconfined: the sandbox reads the fake ~/.ssh (this is what the warning is for).
        let r = w.ok(
            &plain,
            &[
                "exec",
                "--",
                &format!("cat {}", w.home.join(".ssh/id_rsa").display()),
            ],
        );
        assert_eq!(r.stdout(), "FAKE-PRIVATE-KEY\n");
    }
    // While paused too, `status` says what the sandbox will get.
    w.ok(&plain, &["pause"]);
    let st = w.ok(&plain, &["status"]);
    assert!(st.stderr().contains("NOT isolated"), "{}", st.all());

    // isolation = "none", chosen explicitly: still said plainly, without an install hint.
    w.path = None;
    write(
        &plain.join(".rclaude.toml"),
        "[sandbox]\nprovider = \"local\"\nisolation = \"none\"\n",
    );
    w.ok(&plain, &["down", "--yes", "--discard"]);
    let up = w.ok(&plain, &["up"]);
    assert!(
        up.stderr().contains("NOT isolated (isolation = \"none\""),
        "{}",
        up.all()
    );
    let st = w.ok(&plain, &["status"]);
    assert!(st.stderr().contains("NOT isolated"), "{}", st.all());
}

#[test]
fn a_terminal_in_the_sandbox_sees_its_own_tty_but_no_other_terminal_of_the_host() {
    let w = World::new();
    let a = w.repo("a", LOCAL_BWRAP);
    w.ok(&a, &["up"]);
    // Another terminal on the host (the user's shell, another sandbox's `rclaude shell`).
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors, closed at the end of the test.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0);
    let other = std::fs::read_link(format!("/proc/self/fd/{slave}")).unwrap();
    assert!(other.starts_with("/dev/pts/"), "{}", other.display());
    let script = format!(
        "tty; test -e {o} && echo LEAK-other-terminal; script -qc 'echo nested-ok' /dev/null; exit\n",
        o = other.display()
    );
    let mut c = w.cmd(&a, &["shell"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // SAFETY: closing the descriptors openpty gave us.
    unsafe {
        libc::close(master);
        libc::close(slave);
    }
    let lines: Vec<&str> = text.split(['\r', '\n']).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("/dev/pts/")),
        "no terminal of its own:\n{text}"
    );
    assert!(!lines.contains(&"LEAK-other-terminal"), "{text}");
    assert!(
        lines.iter().any(|l| l.ends_with("nested-ok")),
        "a nested terminal failed:\n{text}"
    );
}
