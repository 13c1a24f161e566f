//! Detached-run bookkeeping against a real agent, with a stand-in `claude` program (a shell
//! script that prints stream-json the way Claude Code does): the wrapper's files, following a
//! growing transcript (split lines included), the exit marker, stopping, range reads.
//! The real CLI is exercised by `claude_e2e.rs`; this runs everywhere, fast.

#[path = "support/agent.rs"]
mod agent;

use std::time::{Duration, Instant};

use agent::TestAgent;
use rclaude::claude::render::Renderer;
use rclaude::claude::run::{self, ClaudeArgs, Conversation, Follower, Launch, RunEnd};
use rclaude::provider::envd_sandbox::EnvdSandbox;
use rclaude::provider::{FileUpload, Sandbox};

/// Prints an init event with its `--session-id`/`--resume`, the prompt (from stdin) and the
/// environment it was given, a line written in two pieces, then waits for `go` and exits 3.
const FAKE_CLAUDE: &str = r#"#!/bin/bash
sid=""
while [ $# -gt 0 ]; do
  case "$1" in --session-id|--resume) sid=$2; shift;; esac
  shift
done
prompt=$(cat)
printf '{"type":"system","subtype":"init","cwd":"%s","session_id":"%s"}\n' "$PWD" "$sid"
printf '{"type":"assistant","message":{"content":[{"type":"text","text":"prompt=%s sandbox=%s key=%s"}]}}\n' "$prompt" "$IS_SANDBOX" "$FAKE_KEY"
printf '{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Wri'
sleep 0.4
printf 'te","input":{"file_path":"%s/a.txt"}}]}}\n' "$PWD"
while [ ! -e "$PWD/go" ]; do sleep 0.05; done
printf '{"type":"result","subtype":"success","is_error":false,"num_turns":2,"duration_ms":5,"usage":{}}\n'
exit 3
"#;

struct Fixture {
    /// Keeps the agent serving for the test's duration.
    _agent: TestAgent,
    sandbox: EnvdSandbox,
    workdir: String,
    claude: String,
}

async fn fixture() -> Fixture {
    let agent = TestAgent::start().await;
    let workdir = agent.root.join("repo");
    std::fs::create_dir_all(workdir.join(".git")).unwrap();
    let claude = agent.root.join("bin/claude");
    std::fs::create_dir_all(claude.parent().unwrap()).unwrap();
    std::fs::write(&claude, FAKE_CLAUDE).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();
    let workdir = workdir.to_string_lossy().into_owned();
    let sandbox = EnvdSandbox::new(agent.client(), "t", workdir.clone(), false);
    Fixture {
        claude: claude.to_string_lossy().into_owned(),
        _agent: agent,
        sandbox,
        workdir,
    }
}

fn launch(f: &Fixture, prompt: &str, conversation: Conversation) -> Launch {
    let mut env = std::collections::BTreeMap::new();
    env.insert("FAKE_KEY".to_string(), "k-123".to_string());
    Launch {
        claude: f.claude.clone(),
        claude_version: Some("9.9.9".into()),
        prompt: prompt.into(),
        args: ClaudeArgs {
            permission_mode: "bypassPermissions".into(),
            model: None,
            conversation,
            extra: vec![],
        },
        env,
        workdir: f.workdir.clone(),
    }
}

/// Poll until the run ends; returns every line and the end.
async fn follow_to_end(f: &mut Follower<'_>, mut on_line: impl FnMut(&str)) -> RunEnd {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = f.poll().await.unwrap();
        for l in &p.lines {
            on_line(l);
        }
        if let Some(end) = p.end {
            return end;
        }
        assert!(Instant::now() < deadline, "the run did not end");
        tokio::time::sleep(f.delay()).await;
    }
}

#[tokio::test]
async fn a_run_outlives_its_start_call_and_a_follower_reads_it_to_the_end() {
    let f = fixture().await;
    let started = run::start(
        &f.sandbox,
        launch(&f, "fix it", Conversation::New("s-new-1".into())),
    )
    .await
    .unwrap();
    let id = started.files.id.clone();
    assert_eq!(
        run::current(&f.sandbox, &f.workdir).await.unwrap(),
        Some(id.clone())
    );
    assert!(run::is_running(&f.sandbox, &started.files).await.unwrap());
    assert_eq!(
        run::running_pid(&f.sandbox, &id).await.unwrap(),
        Some(started.pid)
    );
    let meta = run::meta(&f.sandbox, &started.files)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (meta.session_id.as_str(), meta.title.as_str(), meta.resumed),
        ("s-new-1", "fix it", false)
    );

    let mut follower = Follower::new(&f.sandbox, started.files.clone());
    let mut lines = Vec::new();
    let mut renderer = Renderer::new(false);
    let mut text = String::new();
    let mut released = false;
    let end = follow_to_end(&mut follower, |l| {
        lines.push(l.to_string());
        text.push_str(&renderer.line(l));
        if !released && l.contains("\"Write\"") {
            // The run is held until now: everything so far arrived while it was running.
            std::fs::write(format!("{}/go", f.workdir), "").unwrap();
            released = true;
        }
    })
    .await;
    assert_eq!(end, RunEnd::Exited(3));
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{lines:#?}"
    );
    assert!(text.contains("prompt=fix it sandbox=1 key=k-123"), "{text}");
    assert!(text.contains("✎ Write a.txt\n"), "{text}");
    assert!(text.contains("✓ Done · 2 turns"), "{text}");
    assert_eq!(renderer.session_id(), Some("s-new-1"));
    assert_eq!(
        run::exit_code(&f.sandbox, &started.files).await.unwrap(),
        Some(3)
    );
    assert!(!run::is_running(&f.sandbox, &started.files).await.unwrap());
    // The wrapper recorded the conversation from the init event.
    assert_eq!(
        run::conversation(&f.sandbox, &f.workdir)
            .await
            .unwrap()
            .as_deref(),
        Some("s-new-1")
    );
    // The secret was in the process environment only.
    let dir = std::path::Path::new(&f.workdir).join(".git/rclaude/claude");
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let bytes = std::fs::read(e.path()).unwrap();
        let s = String::from_utf8_lossy(&bytes);
        assert!(!s.contains("FAKE_KEY"), "{}: {s}", e.path().display());
    }
    // A second follower replays the same complete transcript.
    let mut again = Vec::new();
    let end = follow_to_end(&mut Follower::new(&f.sandbox, started.files.clone()), |l| {
        again.push(l.to_string())
    })
    .await;
    assert_eq!((end, again), (RunEnd::Exited(3), lines));
}

#[tokio::test]
async fn stopping_a_run_signals_claude_and_records_its_exit() {
    let f = fixture().await;
    let started = run::start(
        &f.sandbox,
        launch(&f, "wait", Conversation::Resume("s-old".into())),
    )
    .await
    .unwrap();
    // Wait until the stand-in runs (its pid file exists), then stop it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while f
        .sandbox
        .stat(&started.files.pid())
        .await
        .unwrap()
        .is_none()
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(run::stop(&f.sandbox, &started.files, false).await.unwrap());
    let end = follow_to_end(
        &mut Follower::new(&f.sandbox, started.files.clone()),
        |_| {},
    )
    .await;
    assert_eq!(end, RunEnd::Exited(128 + 15));
    assert!(
        !run::stop(&f.sandbox, &started.files, false).await.unwrap(),
        "nothing left to stop"
    );
    let meta = run::meta(&f.sandbox, &started.files)
        .await
        .unwrap()
        .unwrap();
    assert!(meta.resumed);
}

#[tokio::test]
async fn a_run_killed_with_its_process_group_is_reported_lost() {
    let f = fixture().await;
    let started = run::start(&f.sandbox, launch(&f, "x", Conversation::fresh()))
        .await
        .unwrap();
    f.sandbox.kill_process(started.pid, true).await.unwrap();
    let end = follow_to_end(
        &mut Follower::new(&f.sandbox, started.files.clone()),
        |_| {},
    )
    .await;
    assert_eq!(end, RunEnd::Lost);
}

#[tokio::test]
async fn range_reads_from_an_offset() {
    let f = fixture().await;
    let path = format!("{}/r.txt", f.workdir);
    f.sandbox
        .write_files(vec![FileUpload {
            path: path.clone(),
            contents: "hello\nworld\n".into(),
        }])
        .await
        .unwrap();
    for (offset, want) in [
        (0, "hello\nworld\n"),
        (6, "world\n"),
        (11, "\n"),
        (12, ""),
        (100, ""),
    ] {
        let got = f.sandbox.read_file_from(&path, offset).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&got), want, "offset {offset}");
    }
    assert!(matches!(
        f.sandbox
            .read_file_from(&format!("{}/missing", f.workdir), 3)
            .await,
        Err(rclaude::provider::SandboxError::NotFound(_))
    ));
}
