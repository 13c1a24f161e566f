//! `rclaude claude` end to end: the real Claude Code CLI (from npm) in a local-provider sandbox,
//! talking to a scripted Messages API stub on loopback, creating and editing files with its own
//! tools; the transcript, `--pull`, `--detach` + `attach`/`logs`, and `--continue`.
//!
//! Needs node and npm (and the npm registry once, to fill a package cache under the target
//! directory); set `RCLAUDE_SKIP_CLAUDE=1` to skip where they are missing.

#[path = "support/anthropic_stub.rs"]
mod anthropic_stub;
mod common;
#[path = "support/skip.rs"]
mod skip;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anthropic_stub::{Stub, text, tool};
use common::TestRepo;
use serde_json::json;

const SECRET: &str = "sk-ant-test-0123456789-do-not-leak";

fn skip() -> bool {
    for tool in ["node", "npm"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok
            && skip::opted_out(
                "RCLAUDE_SKIP_CLAUDE",
                &format!("Claude Code end-to-end test: `{tool}` missing"),
            )
        {
            return true;
        }
        assert!(
            ok,
            "`{tool}` is needed to install the real Claude Code CLI for this test; install Node.js \
             (and npm), or set RCLAUDE_SKIP_CLAUDE=1 to skip it"
        );
    }
    false
}

/// A directory with the pinned Claude Code installed and an npm cache holding its packages,
/// made once per target directory.
fn claude_cache() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let version = rclaude::claude::DEFAULT_VERSION;
        // Under /tmp it would be invisible to sandboxed processes (bubblewrap gives them a
        // private /tmp), so a checkout there keeps the cache in the user's cache directory.
        let target_tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let base = if target_tmp.starts_with("/tmp") {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/rclaude-tests")
        } else {
            target_tmp.to_path_buf()
        };
        let dir = base.join(format!("claude-code-{version}"));
        let bin = dir.join("node_modules/.bin/claude");
        let works = |b: &Path| {
            Command::new(b)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| {
                    o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with(version)
                })
        };
        if !works(&bin) {
            std::fs::create_dir_all(&dir).unwrap();
            let out = Command::new("npm")
                .args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--cache",
                ])
                .arg(dir.join("npm-cache"))
                .arg(format!("@anthropic-ai/claude-code@{version}"))
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success() && works(&bin),
                "npm could not install @anthropic-ai/claude-code@{version} into {}: {}{}",
                dir.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

/// The one local sandbox of a test repository (its directory on this machine).
fn sandbox_root(t: &TestRepo) -> PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir(t.sandboxes_dir())
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(dirs.len(), 1);
    dirs.remove(0).path().join("root")
}

/// Every file under `dir` containing `needle` (binary files included).
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file()
                && m.len() < 64 << 20
                && std::fs::read(&p)
                    .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                hits.push(p);
            }
        }
    }
    hits
}

fn claude_cmd(t: &TestRepo, stub: &Stub, args: &[&str]) -> Command {
    let mut c = t.cmd(args);
    c.env("ANTHROPIC_BASE_URL", &stub.url)
        .env("ANTHROPIC_API_KEY", SECRET)
        .env_remove("CLAUDE_CODE_OAUTH_TOKEN")
        .env_remove("ANTHROPIC_AUTH_TOKEN");
    c
}

fn run(c: &mut Command) -> common::Run {
    common::Run(c.stdin(Stdio::null()).output().unwrap())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !f() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const CONFIG: &str = r#"
[sandbox]
provider = "local"

[env]
CLAUDE_CODE_MAX_RETRIES = "0"
npm_config_prefer_offline = "true"
npm_config_update_notifier = "false"

[claude]
model = "claude-stub"
"#;

#[test]
fn claude_works_on_the_repository_and_its_edits_come_back() {
    if skip() {
        return;
    }
    let cache = claude_cache();
    let t = TestRepo::new(CONFIG);
    t.write("README.md", "# demo\n");
    t.commit_all("initial");
    t.ok(&["up"]);
    // Give the sandbox's npm the packages it is about to install (so no download happens).
    let home = sandbox_root(&t).join("home");
    let status = Command::new("cp")
        .arg("-r")
        .arg(cache.join("npm-cache"))
        .arg(home.join(".npm"))
        .status()
        .unwrap();
    assert!(status.success());

    let stub = Stub::start(vec![
        (
            "create",
            vec![
                tool(
                    "Write",
                    json!({"file_path": "{cwd}/notes/hello.txt", "content": "hello from claude\n"}),
                ),
                tool("Read", json!({"file_path": "{cwd}/notes/hello.txt"})),
                tool(
                    "Edit",
                    json!({"file_path": "{cwd}/notes/hello.txt", "old_string": "hello", "new_string": "hi"}),
                ),
                tool(
                    "Bash",
                    json!({"command": "echo tool-ran > bash-out.txt", "description": "write a file"}),
                ),
                text("Created notes/hello.txt for you."),
            ],
        ),
        (
            "alone",
            vec![
                tool(
                    "Write",
                    json!({"file_path": "{cwd}/alone.txt", "content": "step one\n"}),
                ),
                tool("Read", json!({"file_path": "{cwd}/alone.txt"})).after("go"),
                tool(
                    "Edit",
                    json!({"file_path": "{cwd}/alone.txt", "old_string": "one", "new_string": "two"}),
                ),
                text("Finished on my own."),
            ],
        ),
        (
            "more",
            vec![
                tool("Read", json!({"file_path": "{cwd}/alone.txt"})),
                tool(
                    "Edit",
                    json!({"file_path": "{cwd}/alone.txt", "old_string": "two", "new_string": "three"}),
                ),
                text("Remembered the earlier request: {history:[[script:alone]]}."),
            ],
        ),
        (
            "home",
            vec![text(
                "Home remembers: {history:[[script:alone]]}, {history:[[script:more]]}.",
            )],
        ),
    ]);

    // 1. A foreground run: install, live transcript, --pull.
    let r = run(&mut claude_cmd(
        &t,
        &stub,
        &["claude", "Please add notes [[script:create]]", "--pull"],
    ));
    assert_eq!(r.code(), 0, "{}", r.all());
    let out = r.stdout();
    assert!(
        r.stderr().contains(&format!(
            "Installing Claude Code {}",
            rclaude::claude::DEFAULT_VERSION
        )),
        "{}",
        r.all()
    );
    for want in [
        "● Claude Code 2.1.197 · claude-stub · bypassPermissions · session ",
        "✎ Write notes/hello.txt\n",
        "◆ Read notes/hello.txt\n",
        "✎ Edit notes/hello.txt\n",
        "▸ Bash: echo tool-ran > bash-out.txt\n",
        "\nCreated notes/hello.txt for you.\n",
        "✓ Done · 5 turns · ",
    ] {
        assert!(
            out.contains(want),
            "transcript lacks {want:?}:\n{}",
            r.all()
        );
    }
    assert!(!out.contains("failed:"), "a tool call failed:\n{out}");
    let order: Vec<usize> = [
        "✎ Write",
        "◆ Read",
        "✎ Edit",
        "▸ Bash",
        "Created notes",
        "✓ Done",
    ]
    .iter()
    .map(|w| out.find(w).unwrap())
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order:\n{out}"
    );
    // The edits came back as branch rclaude/main; the checkout is untouched.
    assert_eq!(
        t.git(&["show", "rclaude/main:notes/hello.txt"]),
        "hi from claude\n"
    );
    assert_eq!(t.git(&["show", "rclaude/main:bash-out.txt"]), "tool-ran\n");
    assert!(!t.path().join("notes").exists());
    assert_eq!(t.git(&["rev-parse", "--abbrev-ref", "HEAD"]).trim(), "main");
    // The API key reached the API, and nothing else.
    let seen = stub.seen();
    assert!(
        seen.iter()
            .filter(|s| s.script.as_deref() == Some("create"))
            .count()
            >= 5
    );
    assert!(seen.iter().all(|s| s.api_key.as_deref() == Some(SECRET)));
    assert!(!r.all().contains(SECRET));

    // 2. A detached run: the command returns at once; attach replays and follows it.
    let r = run(&mut claude_cmd(
        &t,
        &stub,
        &["claude", "--detach", "Work on your own [[script:alone]]"],
    ));
    assert_eq!(r.code(), 0, "{}", r.all());
    let run_id = r.stdout().trim().to_string();
    assert!(r.stderr().contains("rclaude attach"), "{}", r.all());
    // Wait until it wrote its first file and is held at the gate, then attach.
    wait_for("the detached run to reach the gate", || {
        stub.seen()
            .iter()
            .any(|s| s.script.as_deref() == Some("alone") && s.step == 1)
    });
    let transcript = sandbox_root(&t).join(format!("workspace/.git/rclaude/claude/{run_id}.jsonl"));
    assert!(
        std::fs::read_to_string(&transcript)
            .unwrap()
            .contains(r#""name":"Write""#)
    );
    let mut attach = t
        .cmd(&["attach"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(attach.stdout.take().unwrap()).lines();
    let mut attached = String::new();
    // The transcript so far comes first...
    while !attached.contains("✎ Write alone.txt") {
        let l = lines
            .next()
            .expect("attach ended before replaying the transcript")
            .unwrap();
        attached.push_str(&l);
        attached.push('\n');
    }
    assert!(!attached.contains("Finished on my own"), "{attached}");
    // ...then what happens next, live, until the run ends.
    stub.open("go");
    for l in lines {
        attached.push_str(&l.unwrap());
        attached.push('\n');
    }
    let status = attach.wait().unwrap();
    let mut attach_err = String::new();
    std::io::Read::read_to_string(&mut attach.stderr.take().unwrap(), &mut attach_err).unwrap();
    assert_eq!(status.code(), Some(0), "{attached}\n{attach_err}");
    for want in [
        "◆ Read alone.txt",
        "✎ Edit alone.txt",
        "Finished on my own.",
        "✓ Done · 4 turns",
    ] {
        assert!(
            attached.contains(want),
            "attach output lacks {want:?}:\n{attached}\n{attach_err}"
        );
    }
    assert!(attach_err.contains("rclaude pull"), "{attach_err}");
    // `logs` (no server login) shows the same transcript; -f returns as the run has ended.
    let logs = t.ok(&["logs", "-f"]);
    assert!(
        logs.stdout().contains("✎ Write alone.txt")
            && logs.stdout().contains("Finished on my own."),
        "{}",
        logs.all()
    );
    let raw = t.ok(&["logs", "--claude", "--json"]);
    let first: serde_json::Value =
        serde_json::from_str(raw.stdout().lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "system");
    let session = first["session_id"].as_str().unwrap().to_string();
    t.ok(&["pull"]);
    assert_eq!(t.git(&["show", "rclaude/main:alone.txt"]), "step two\n");

    // 3. --continue resumes that conversation: the stub sees the earlier prompt in its history.
    let r = run(&mut claude_cmd(
        &t,
        &stub,
        &[
            "claude",
            "--continue",
            "One more thing [[script:more]]",
            "--pull",
        ],
    ));
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(
        r.stdout().contains("Remembered the earlier request: yes."),
        "{}",
        r.all()
    );
    assert!(
        r.stdout().contains(&format!("session {session}")),
        "{}",
        r.all()
    );
    assert!(!r.stdout().contains("failed:"), "{}", r.all());
    assert_eq!(t.git(&["show", "rclaude/main:alone.txt"]), "step three\n");

    // 4. `pull --transcript` takes the conversation home: the real Claude Code CLI here resumes
    // it (the stub sees the sandbox's earlier prompts in its history).
    let config_dir = t.home.path().join("claude-config");
    let r = t
        .cmd(&["pull", "--transcript", "--json"])
        .env("CLAUDE_CONFIG_DIR", &config_dir)
        .output()
        .unwrap();
    let r = common::Run(r);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(
        r.stderr().contains(&format!("claude --resume {session}")),
        "{}",
        r.all()
    );
    let report: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(report["transcript"]["session_id"], session.as_str());
    let local_root = t.path().canonicalize().unwrap();
    let stored = PathBuf::from(report["transcript"]["path"].as_str().unwrap());
    assert_eq!(
        stored,
        config_dir.join(format!(
            "projects/{}/{session}.jsonl",
            rclaude::claude::transcript::project_dir_name(&local_root.to_string_lossy())
        ))
    );
    // The sandbox's Claude Code named its project directory the way we compute it.
    let workspace = sandbox_root(&t).join("workspace");
    let sandbox_project = sandbox_root(&t).join("home/.claude/projects").join(
        rclaude::claude::transcript::project_dir_name(&workspace.to_string_lossy()),
    );
    assert!(
        sandbox_project.join(format!("{session}.jsonl")).is_file(),
        "no {session}.jsonl in {}",
        sandbox_project.display()
    );
    let text = std::fs::read_to_string(&stored).unwrap();
    assert!(
        text.contains(&format!(
            "\"cwd\":{}",
            serde_json::to_string(&local_root).unwrap()
        )),
        "the transcript's working directory was not rewritten"
    );
    assert!(!text.contains(&format!("\"cwd\":\"{}", workspace.display())));
    let out = Command::new(cache.join("node_modules/.bin/claude"))
        .args(["-p", "Back home [[script:home]]", "--resume", &session])
        .args(["--model", "claude-stub", "--output-format", "text"])
        .current_dir(t.path())
        .env("CLAUDE_CONFIG_DIR", &config_dir)
        .env("ANTHROPIC_BASE_URL", &stub.url)
        .env("ANTHROPIC_API_KEY", SECRET)
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .envs(rclaude::claude::QUIET_ENV)
        .env_remove("CLAUDE_CODE_OAUTH_TOKEN")
        .env_remove("ANTHROPIC_AUTH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("Home remembers: yes, yes."),
        "local claude --resume: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The key was only ever in process environments: not in any file of the sandbox, nor here.
    let leaked = files_containing(&sandbox_root(&t), SECRET);
    assert!(leaked.is_empty(), "the API key was written to {leaked:?}");
    assert!(files_containing(t.home.path(), SECRET).is_empty());
}

#[test]
fn failures_are_reported_with_claude_codes_exit_code() {
    if skip() {
        return;
    }
    let config = with_cached_claude(CONFIG);
    let t = TestRepo::new(&config);
    t.write("README.md", "# demo\n");
    t.commit_all("initial");
    let r = t.rclaude(&["attach"]);
    assert_eq!(r.code(), 69, "{}", r.all());
    assert!(r.stderr().contains("rclaude up"), "{}", r.all());
    t.ok(&["up"]);

    // Nothing to follow or continue yet.
    let r = t.rclaude(&["attach"]);
    assert_eq!(r.code(), 69, "{}", r.all());
    assert!(
        r.stderr()
            .contains("no Claude Code run in this sandbox yet"),
        "{}",
        r.all()
    );
    let r = t.rclaude(&["claude", "--continue", "go on"]);
    assert_eq!(r.code(), 64, "{}", r.all());
    assert!(
        r.stderr().contains("no earlier Claude Code conversation"),
        "{}",
        r.all()
    );
    let r = t.rclaude(&["claude", "--detach"]);
    assert_eq!(r.code(), 64, "{}", r.all());

    // An API that is not there: Claude Code's error is shown and its exit code passed through.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let r = run(t
        .cmd(&["claude", "hello"])
        .env("ANTHROPIC_BASE_URL", &url)
        .env("ANTHROPIC_API_KEY", SECRET));
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stdout().contains("✗ Claude Code failed: "), "{}", r.all());
    assert!(
        !r.stderr().contains("Installing"),
        "the CLI on PATH is used: {}",
        r.all()
    );
    assert!(r.stderr().contains("`rclaude pull`"), "{}", r.all());

    // A bad permission mode is a configuration error, found before anything starts.
    let r = t.rclaude(&["claude", "--permission-mode", "yolo", "hi"]);
    assert_eq!(r.code(), 78, "{}", r.all());
}

/// `config` with the cached Claude Code on PATH, and its directory exposed to the sandbox
/// (which sees no host path outside the system directories otherwise).
fn with_cached_claude(config: &str) -> String {
    let dir = claude_cache();
    config
        .replace(
            "provider = \"local\"\n",
            &format!("provider = \"local\"\nexpose = [\"{}\"]\n", dir.display()),
        )
        .replace(
            "[env]\n",
            &format!(
                "[env]\nPATH = \"{}:/usr/local/bin:/usr/bin:/bin\"\n",
                dir.join("node_modules/.bin").display()
            ),
        )
}

/// A repository whose config puts the cached Claude Code on PATH (no install step).
fn direct_repo() -> TestRepo {
    direct_repo_with("")
}

/// [`direct_repo`] with lines added to the config's `[claude]` table.
fn direct_repo_with(claude_extra: &str) -> TestRepo {
    let config = with_cached_claude(&format!("{CONFIG}{claude_extra}"));
    let t = TestRepo::new(&config);
    t.write("README.md", "# demo\n");
    t.commit_all("initial");
    t.ok(&["up"]);
    t
}

/// A running rclaude whose stdout is collected as it comes.
struct Running {
    child: std::process::Child,
    out: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = out.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                let mut o = sink.lock().unwrap();
                o.push_str(&l);
                o.push('\n');
            }
        });
        Running { child, out }
    }

    fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Wait for `want` on stdout (so the command is following the run), then send Ctrl-C.
    fn interrupt_after(&self, want: &str) {
        wait_for(want, || self.stdout().contains(want));
        // SAFETY: kill(2) on our own child.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) },
            0
        );
    }

    /// Exit code, stdout and stderr once it exited.
    fn wait(mut self) -> (i32, String, String) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the rclaude process did not exit; stdout:\n{}",
                    self.stdout()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut err = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut err).unwrap();
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        std::thread::sleep(Duration::from_millis(100));
        (code, self.stdout(), err)
    }
}

#[test]
fn ctrl_c_detaches_attach_but_stops_a_foreground_run() {
    if skip() {
        return;
    }
    let t = direct_repo();
    let stub = Stub::start(vec![
        (
            "slow",
            vec![
                tool(
                    "Write",
                    json!({"file_path": "{cwd}/slow.txt", "content": "started\n"}),
                ),
                text("Slow work done.").after("go"),
            ],
        ),
        (
            "stuck",
            vec![
                tool(
                    "Write",
                    json!({"file_path": "{cwd}/stuck.txt", "content": "started\n"}),
                ),
                text("never").after("never"),
            ],
        ),
    ]);
    let at_gate = |script: &str| {
        let script = script.to_string();
        let seen = &stub;
        move || {
            seen.seen()
                .iter()
                .any(|s| s.script.as_deref() == Some(script.as_str()) && s.step == 1)
        }
    };

    // Ctrl-C in `attach` leaves the run working; a later attach sees it finish.
    let r = run(&mut claude_cmd(
        &t,
        &stub,
        &["claude", "-d", "Take your time [[script:slow]]"],
    ));
    assert_eq!(r.code(), 0, "{}", r.all());
    wait_for("the slow run to reach the gate", at_gate("slow"));
    let attach = Running::spawn(&mut t.cmd(&["attach"]));
    attach.interrupt_after("✎ Write slow.txt");
    let (code, out, err) = attach.wait();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("✎ Write slow.txt") && !out.contains("✓ Done"),
        "{out}\n{err}"
    );
    assert!(err.contains("Detached"), "{err}");
    stub.open("go");
    let r = t.ok(&["attach"]);
    assert!(
        r.stdout().contains("Slow work done.") && r.stdout().contains("✓ Done"),
        "{}",
        r.all()
    );

    // Ctrl-C in a foreground run stops Claude Code; the run is over, not running on.
    let fg = Running::spawn(&mut claude_cmd(
        &t,
        &stub,
        &["claude", "Never finish [[script:stuck]]"],
    ));
    wait_for("the stuck run to reach the gate", at_gate("stuck"));
    fg.interrupt_after("✎ Write stuck.txt");
    let (code, out, err) = fg.wait();
    assert_eq!(
        code,
        128 + 15,
        "Claude Code's exit code after SIGTERM: {out}\n{err}"
    );
    assert!(err.contains("stopping Claude Code"), "{out}\n{err}");
    assert!(!out.contains("never"), "{out}");
    let r = t.rclaude(&["attach"]);
    assert_eq!(r.code(), code, "the stopped run's exit code: {}", r.all());
    let r = run(&mut claude_cmd(
        &t,
        &stub,
        &["claude", "-d", "Take your time [[script:slow]]"],
    ));
    assert_eq!(
        r.code(),
        0,
        "a new run may start once the stopped one ended: {}",
        r.all()
    );
    t.ok(&["attach"]);
}

#[test]
fn a_detached_run_outlives_the_cli_but_not_a_local_pause() {
    if skip() {
        return;
    }
    let t = direct_repo();
    let stub = Stub::start(vec![(
        "held",
        vec![
            tool(
                "Write",
                json!({"file_path": "{cwd}/held.txt", "content": "started\n"}),
            ),
            text("never").after("never"),
        ],
    )]);
    let r = run(&mut claude_cmd(
        &t,
        &stub,
        &["claude", "--detach", "Hold on [[script:held]]"],
    ));
    assert_eq!(r.code(), 0, "{}", r.all());
    wait_for("the run to reach the gate", || {
        stub.seen()
            .iter()
            .any(|s| s.script.as_deref() == Some("held") && s.step == 1)
    });
    // While it runs, another run is refused.
    let r = run(&mut claude_cmd(
        &t,
        &stub,
        &["claude", "--detach", "Another [[script:held]]"],
    ));
    assert_eq!(r.code(), 69, "{}", r.all());
    assert!(r.stderr().contains("already working"), "{}", r.all());
    // The local provider's pause stops the agent and its processes: the run is lost, and
    // attach says so instead of waiting forever.
    t.ok(&["pause"]);
    let r = t.rclaude(&["attach"]);
    assert_eq!(r.code(), 69, "{}", r.all());
    assert!(r.stdout().contains("✎ Write held.txt"), "{}", r.all());
    assert!(r.stderr().contains("did not finish"), "{}", r.all());
    // Its edits so far are in the sandbox.
    t.ok(&["pull"]);
    assert_eq!(t.git(&["show", "rclaude/main:held.txt"]), "started\n");
}

#[test]
fn claude_without_a_prompt_runs_claude_code_on_a_terminal() {
    if skip() {
        return;
    }
    // `--version` from [claude] args makes the interactive program print and exit at once.
    let t = direct_repo_with("args = [\"--version\"]\n");
    let r = t.ok(&["claude"]);
    assert!(r.stdout().contains("2.1.197 (Claude Code)"), "{}", r.all());
    // Its conversation id is recorded in the sandbox for `--continue`.
    let session =
        std::fs::read_to_string(sandbox_root(&t).join("workspace/.git/rclaude/claude/session"))
            .unwrap();
    assert_eq!(session.trim().len(), 36, "{session:?}");
}
