//! Checkpoints: the sandbox's work copied off it at lifecycle edges, and `pull` recovering it
//! when the sandbox is gone (its agent killed with SIGKILL and its directory deleted).

mod common;

use common::TestRepo;

const CONFIG: &str = "[sandbox]\nprovider = \"local\"\n\
    [setup]\nrun = \"mkdir -p $HOME/.local/bin && cp tools/claude $HOME/.local/bin/claude && chmod +x $HOME/.local/bin/claude\"\n\
    [tasks.gen]\nrun = \"head -c 200000 /dev/urandom > generated.bin && echo made > made.txt\"\n";

/// A stand-in `claude` that edits files as an agent would, commits one of them, and reports.
const EDITING_CLAUDE: &str = r#"#!/bin/sh
if [ "$1" = "--version" ]; then echo "2.1.197 (Claude Code)"; exit 0; fi
cat >/dev/null
printf '{"type":"system","subtype":"init","session_id":"s-1"}\n'
echo "committed by claude" > committed.txt
git add committed.txt && git -c user.name=c -c user.email=c@x commit -qm "claude: add committed.txt"
printf 'uncommitted\nedit\n' > notes.md
echo "changed" >> a.txt
printf '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"duration_ms":5,"usage":{},"result":"done"}\n'
"#;

fn checkpoints(t: &TestRepo) -> Vec<serde_json::Value> {
    serde_json::from_str(&t.ok(&["checkpoints", "--json"]).stdout()).unwrap()
}

/// SIGKILL the sandbox's agent and delete the sandbox: it is gone.
fn destroy_sandbox_behind_rclaudes_back(t: &TestRepo) {
    let dir = std::fs::read_dir(t.sandboxes_dir())
        .unwrap()
        .flatten()
        .find(|e| e.path().join("agent.json").exists())
        .expect("a local sandbox")
        .path();
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("agent.json")).unwrap()).unwrap();
    // SAFETY: kill(2) on the agent this test's sandbox runs.
    unsafe { libc::kill(state["pid"].as_i64().unwrap() as i32, libc::SIGKILL) };
    std::thread::sleep(std::time::Duration::from_millis(200));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pull_recovers_every_byte_from_the_checkpoint_when_the_sandbox_is_gone() {
    let t = TestRepo::new(CONFIG);
    t.write("tools/claude", EDITING_CLAUDE);
    t.write("a.txt", "base\n");
    t.commit_all("init");
    t.ok(&["up", "--quiet"]);
    assert!(checkpoints(&t).is_empty());

    // An attached Claude Code run ends: its work is checkpointed.
    let r = common::Run(
        t.cmd(&["claude", "do the work"])
            .env("ANTHROPIC_API_KEY", "sk-test")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code(), 0, "{}", r.all());
    let cps = checkpoints(&t);
    assert_eq!(cps.len(), 1, "{cps:?}");
    assert_eq!(cps[0]["reason"], "claude");
    assert_eq!(cps[0]["wip"], true);

    // A task writes more; `run` checkpoints again. Nothing new: no new checkpoint.
    t.ok(&["run", "gen"]);
    assert_eq!(checkpoints(&t).len(), 2);
    t.ok(&["exec", "--no-sync", "--", "true"]);
    t.ok(&["pause"]);
    assert_eq!(checkpoints(&t).len(), 2, "pause with nothing new adds none");
    let expected_bin = {
        t.ok(&["resume"]);
        let out = t
            .cmd(&["exec", "--no-sync", "--", "cat", "generated.bin"])
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    };
    assert_eq!(expected_bin.len(), 200_000);

    destroy_sandbox_behind_rclaudes_back(&t);
    let pulled = t.rclaude(&["pull"]);
    assert_eq!(pulled.code(), 0, "{}", pulled.all());
    assert!(pulled.stderr().contains("checkpoint"), "{}", pulled.all());
    // Every byte: the commit, the uncommitted edits, the task's binary output.
    assert_eq!(
        t.git(&["show", "rclaude/main:committed.txt"]),
        "committed by claude\n"
    );
    assert_eq!(
        t.git(&["show", "rclaude/main:notes.md"]),
        "uncommitted\nedit\n"
    );
    assert_eq!(t.git(&["show", "rclaude/main:a.txt"]), "base\nchanged\n");
    let bin = common::git_env(
        std::process::Command::new("git")
            .args(["show", "rclaude/main:generated.bin"])
            .current_dir(t.path()),
    )
    .output()
    .unwrap()
    .stdout;
    assert!(bin == expected_bin, "generated.bin differs");
    assert!(
        t.git(&["log", "--format=%s", "rclaude/main"])
            .contains("claude: add committed.txt")
    );
    // The checked-out branch and work tree were not touched.
    assert_eq!(t.read("a.txt"), "base\n");

    // An older checkpoint can be picked; an unknown one is a usage error.
    let first = checkpoints(&t)[0]["id"].as_str().unwrap().to_string();
    let r = t.rclaude(&["pull", "--checkpoint", &first, "--branch", "older"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(t.git(&["show", "older:notes.md"]).contains("uncommitted"));
    let r = t.rclaude(&["pull", "--checkpoint", "nope"]);
    assert_eq!(r.code(), 64, "{}", r.all());
}

/// Every file named `name` under `dir`.
fn find_files(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_symlink() {
            continue;
        }
        if p.is_dir() {
            out.extend(find_files(&p, name));
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_provider_that_drops_files_while_paused_is_caught_at_resume_and_the_pause_state_recovered() {
    let t = TestRepo::new("[sandbox]\nprovider = \"local\"\n");
    t.write("a.txt", "base\n");
    t.commit_all("init");
    t.ok(&["up", "--quiet"]);
    t.ok(&[
        "exec",
        "--no-sync",
        "--",
        "sh",
        "-c",
        "echo precious > keep-me.txt && echo other > other.txt",
    ]);

    // A clean pause and resume: no alarm.
    t.ok(&["pause"]);
    let r = t.ok(&["resume"]);
    assert!(!r.stderr().contains("CHANGED"), "{}", r.all());

    // Paused again; the "provider" loses a file while it sleeps.
    t.ok(&["pause"]);
    let cps = checkpoints(&t);
    let at_pause = cps.last().unwrap();
    let files = find_files(&t.sandboxes_dir(), "keep-me.txt");
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::remove_file(&files[0]).unwrap();

    let r = t.ok(&["resume"]);
    assert!(
        r.stderr().contains("CHANGED WHILE IT WAS PAUSED"),
        "{}",
        r.all()
    );
    assert!(r.stderr().contains("keep-me.txt (missing)"), "{}", r.all());
    assert!(!r.stderr().contains("other.txt"), "{}", r.all());
    let id = at_pause["id"].as_str().unwrap();
    assert!(
        r.stderr().contains(&format!("pull --checkpoint {id}")),
        "{}",
        r.all()
    );

    // The state at pause comes back from the checkpoint.
    t.ok(&["pull", "--checkpoint", id, "--branch", "at-pause"]);
    assert_eq!(t.git(&["show", "at-pause:keep-me.txt"]), "precious\n");
}
