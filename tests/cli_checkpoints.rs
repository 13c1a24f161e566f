//! Checkpoints: the sandbox's work copied off it at lifecycle edges, and `pull` recovering it
//! when the sandbox is gone (its agent killed with SIGKILL and its directory deleted).

mod common;

use std::process::Command;

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
    let bin = t.show_bytes("rclaude/main:generated.bin");
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

/// What the sandbox's repository looks like: branch, last commit, status, file contents.
const LOOK: &str = "git rev-parse --abbrev-ref HEAD; git log --format=%s -2; git status --porcelain; \
    cat a.txt notes.md sub/untracked.txt; test ! -e gone.txt && echo gone.txt-absent";

#[test]
fn up_rebuilds_a_lost_sandbox_from_its_latest_checkpoint() {
    let t = TestRepo::new(CONFIG);
    t.write("tools/claude", EDITING_CLAUDE);
    t.write("a.txt", "base\n");
    t.write("gone.txt", "deleted in the sandbox\n");
    t.commit_all("init");
    t.ok(&["up", "--quiet"]);
    // Claude Code commits one file and leaves edits; more by hand: an untracked file in a new
    // directory, a deleted tracked file, a branch of the sandbox's own.
    let r = common::Run(
        t.cmd(&["claude", "do the work"])
            .env("ANTHROPIC_API_KEY", "sk-test")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code(), 0, "{}", r.all());
    t.sh("git checkout -q -b sandbox-work && mkdir -p sub && echo fresh > sub/untracked.txt && rm gone.txt",
    );
    t.ok(&["checkpoints", "--take"]);
    let before = t.sh(LOOK);
    assert!(before.contains("sandbox-work\n"), "{before}");
    assert!(before.contains("gone.txt-absent"), "{before}");

    destroy_sandbox_behind_rclaudes_back(&t);
    let r = t.ok(&["up"]);
    assert!(r.stderr().contains("no longer exists"), "{}", r.all());
    assert!(
        r.stderr().contains("Rebuilt the work of sandbox"),
        "{}",
        r.all()
    );
    // The same branch, commits, status and files; [setup] ran again in the new sandbox.
    assert_eq!(t.sh(LOOK), before);
    t.sh("test -x \"$HOME/.local/bin/claude\"");
    // Its work still counts as the sandbox's: pull brings it back.
    t.ok(&["pull", "--branch", "rebuilt"]);
    assert_eq!(t.git(&["show", "rebuilt:notes.md"]), "uncommitted\nedit\n");
    assert_eq!(t.git(&["show", "rebuilt:sub/untracked.txt"]), "fresh\n");
    assert_eq!(t.read("a.txt"), "base\n");

    // Lost again, after this machine changed a file the old sandbox was never given: the sync
    // that follows the rebuild replaces the rebuilt work (as it would have replaced the old
    // sandbox's), and says which checkpoint keeps it.
    t.ok(&["checkpoints", "--take"]);
    let kept = checkpoints(&t).last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    t.write("laptop.txt", "from the laptop\n");
    destroy_sandbox_behind_rclaudes_back(&t);
    let r = t.ok(&["up"]);
    assert!(
        r.stderr().contains("Rebuilt the work of sandbox"),
        "{}",
        r.all()
    );
    assert!(
        r.stderr().contains(&format!("pull --checkpoint {kept}")),
        "{}",
        r.all()
    );
    assert_eq!(t.sh("cat laptop.txt"), "from the laptop\n");
}

/// Every file under `dir` (symlinks not followed).
/// Every file named `name` under `dir`.
fn find_files(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    common::walk(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == name))
        .collect()
}

#[test]
fn a_provider_that_drops_files_while_paused_is_caught_at_resume_and_the_pause_state_recovered() {
    let t = TestRepo::new("[sandbox]\nprovider = \"local\"\n");
    t.write("a.txt", "base\n");
    t.commit_all("init");
    t.ok(&["up", "--quiet"]);
    t.sh("echo precious > keep-me.txt && echo other > other.txt");

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

/// Direct mode (this laptop's own provider) reporting to a server: checkpoints are kept on the
/// server too. The sandbox dies; another machine (its own home, a clone of the shared remote)
/// takes the session's work back through the server, passing over a damaged copy.
#[test]
fn another_machine_recovers_a_dead_sessions_work_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("server.db").display());
    let server = common::server::Server::start(&db, "127.0.0.1:0");
    let token = server.create_account("acme");
    let origin = dir.path().join("origin.git");
    common::git_env(
        std::process::Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&origin),
    )
    .status()
    .unwrap();

    let t = TestRepo::new("[sandbox]\nprovider = \"local\"\n");
    t.write("a.txt", "base\n");
    t.commit_all("init");
    t.git(&["remote", "add", "origin", origin.to_str().unwrap()]);
    t.git(&["push", "-q", "-u", "origin", "main"]);
    server.login(&t, &token);
    t.ok(&["up", "--quiet"]);
    let session = t.session_id();
    // Work in the sandbox: a commit and an uncommitted edit; paused: checkpointed.
    t.sh("echo first > first.txt && git add first.txt && git -c user.name=c -c user.email=c@x commit -qm 'sandbox: first' && echo draft > draft.md");
    t.ok(&["pause"]);
    let cps = checkpoints(&t);
    assert_eq!(cps.len(), 1, "{cps:?}");
    assert_eq!(cps[0]["on_server"], true, "{cps:?}");
    // More work, checkpointed by hand: only what is new goes to the server.
    t.ok(&["resume"]);
    t.sh("head -c 300000 /dev/urandom > second.bin");
    t.ok(&["checkpoints", "--take"]);
    let cps = checkpoints(&t);
    assert_eq!(cps.len(), 2, "{cps:?}");
    assert!(cps.iter().all(|c| c["on_server"] == true), "{cps:?}");
    let latest = cps[1]["id"].as_str().unwrap().to_string();
    // The second copy builds on the first: only its new objects were sent.
    let kept = server.get(&token, &format!("/v1/sessions/{session}/checkpoints"));
    let kept = kept["checkpoints"].as_array().unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[1]["base"], kept[0]["name"], "{kept:?}");
    assert!(
        kept[1]["size_bytes"].as_i64().unwrap() < 400_000,
        "{kept:?}"
    );
    let second_bin = {
        let out = t
            .cmd(&["exec", "--no-sync", "--", "cat", "second.bin"])
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    };
    destroy_sandbox_behind_rclaudes_back(&t);

    // Another machine: a clone of the shared remote, logged in to the same account.
    let other = TestRepo::new("");
    other.git(&["remote", "add", "origin", origin.to_str().unwrap()]);
    other.git(&["fetch", "-q", "origin"]);
    other.git(&["reset", "-q", "--hard", "origin/main"]);
    server.login(&other, &token);
    let r = other.rclaude(&["checkpoints", "--session", &session]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(
        r.stdout().contains(&latest) && r.stdout().contains("server"),
        "{}",
        r.all()
    );

    // The newest copy is damaged in the store: it is caught, and the one before is used.
    let store = dir.path().join("checkpoints");
    // Stored as `<name>-<12 hex>.bundle`: match the whole name, since two checkpoints taken
    // in one second are `<stamp>` and `<stamp>-2`, and `<stamp>-<hex>` may begin with `2`.
    let is_latest = |p: &std::path::Path| {
        let name = p.file_name().unwrap().to_string_lossy();
        name.strip_prefix(&format!("{latest}-"))
            .and_then(|rest| rest.strip_suffix(".bundle"))
            .is_some_and(|u| u.len() == 12 && u.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let newest = common::walk(&store)
        .into_iter()
        .find(|p| is_latest(p))
        .expect("the newest checkpoint's object");
    let good = std::fs::read(&newest).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 100] ^= 0xff;
    std::fs::write(&newest, &bad).unwrap();
    let r = other.rclaude(&["pull", "--session", &session, "--branch", "recovered"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stderr().contains("damaged"), "{}", r.all());
    assert_eq!(other.git(&["show", "recovered:first.txt"]), "first\n");
    assert_eq!(other.git(&["show", "recovered:draft.md"]), "draft\n");
    let has_second = common::git_env(
        std::process::Command::new("git")
            .args(["cat-file", "-e", "recovered:second.bin"])
            .current_dir(other.path())
            .stderr(std::process::Stdio::null()),
    )
    .status()
    .unwrap()
    .success();
    assert!(
        !has_second,
        "the damaged checkpoint's file must not be there"
    );
    assert!(
        other
            .git(&["log", "--format=%s", "recovered"])
            .contains("sandbox: first")
    );

    // Repaired: the newest is taken back, every byte.
    std::fs::write(&newest, &good).unwrap();
    let r = other.rclaude(&[
        "pull",
        "--session",
        &session,
        "--checkpoint",
        &latest,
        "--branch",
        "newest",
    ]);
    assert_eq!(r.code(), 0, "{}", r.all());
    let bin = other.show_bytes("newest:second.bin");
    assert!(bin == second_bin, "second.bin differs");
    assert_eq!(other.read("a.txt"), "base\n", "the checkout is untouched");
    // Other commands cannot reach another machine's sandbox, and say what can.
    let r = other.rclaude(&["exec", "--session", &session, "--", "true"]);
    assert_ne!(r.code(), 0);
    assert!(r.stderr().contains("pull --session"), "{}", r.all());
}

/// `down` keeps the sandbox's last state as a checkpoint, on the server too: after the sandbox
/// is destroyed, `--session ID` still lists it and `pull --session ID` brings it back.
#[test]
fn down_keeps_the_last_state_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("server.db").display());
    let server = common::server::Server::start(&db, "127.0.0.1:0");
    let token = server.create_account("acme");
    let t = TestRepo::new("[sandbox]\nprovider = \"local\"\n");
    t.write("a.txt", "base\n");
    t.commit_all("init");
    server.login(&t, &token);
    t.ok(&["up", "--quiet"]);
    let session = t.session_id();
    t.sh("echo last > last.txt");
    t.ok(&["down", "--yes"]);
    let r = t.ok(&["checkpoints", "--session", &session, "--json"]);
    let cps: Vec<serde_json::Value> = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(cps.len(), 1, "{cps:?}");
    assert_eq!(cps[0]["reason"], "down");
    assert_eq!(cps[0]["on_server"], true);
    t.ok(&["pull", "--session", &session, "--branch", "after-down"]);
    assert_eq!(t.git(&["show", "after-down:last.txt"]), "last\n");
}

/// A pause the server makes itself (idle auto-pause of a managed session) checkpoints the
/// sandbox's work first, so a sandbox lost while paused loses nothing: `pull` takes the
/// server's checkpoint back although this machine never took one. A pause whose work the
/// newest checkpoint already holds stores no second copy.
#[test]
fn a_server_made_pause_checkpoints_the_work_first() {
    let dir = tempfile::tempdir().unwrap();
    let (server, sandboxes) =
        common::server::Server::managed_local(dir.path(), &["--idle-pause", "2s"]);
    let token = server.create_account("acme");
    let t = TestRepo::new("[sandbox]\nmanaged = true\n");
    t.write("a.txt", "base\n");
    t.commit_all("init");
    server.login(&t, &token);
    t.ok(&["up", "--quiet"]);
    let session = t.session_id();
    t.sh("echo made > made.txt && git add made.txt && git -c user.name=a -c user.email=a@x commit -qm 'sandbox: made' && echo draft > draft.txt && echo edited >> a.txt");
    let detail = |p: &str| server.get(&token, &format!("/v1/sessions/{session}{p}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while detail("")["session"]["state"] != "paused" {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle session was not paused: {}",
            detail("")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let stored = detail("/checkpoints")["checkpoints"].clone();
    let stored = stored.as_array().unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let cp = &stored[0];
    assert_eq!(cp["info"]["by"], "server", "{cp}");
    assert_eq!(cp["info"]["checkpoint"]["reason"], "idle-pause", "{cp}");
    assert_eq!(cp["info"]["checkpoint"]["wip"], true, "{cp}");
    assert_eq!(cp["info"]["checkpoint"]["label"], "main", "{cp}");
    assert_eq!(cp["anchor"], true, "{cp}");
    // The provider loses a file while the session sleeps: the resume compares with the
    // server's checkpoint and says so.
    let files = find_files(&sandboxes, "draft.txt");
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::remove_file(&files[0]).unwrap();
    let r = t.ok(&["resume"]);
    assert!(
        r.stderr().contains("CHANGED WHILE IT WAS PAUSED"),
        "{}",
        r.all()
    );
    assert!(r.stderr().contains("draft.txt (missing)"), "{}", r.all());
    let name = cp["name"].as_str().unwrap();
    assert!(
        r.stderr().contains(&format!("pull --checkpoint {name}")),
        "{}",
        r.all()
    );
    t.ok(&["pull", "--checkpoint", name, "--branch", "at-idle-pause"]);
    assert_eq!(t.git(&["show", "at-idle-pause:draft.txt"]), "draft\n");
    t.sh("printf 'draft\\nmore\\n' > draft.txt");
    // It holds the sandbox's commit, which this machine does not have.
    let sandbox_head = t.ok(&["exec", "--no-sync", "--", "git", "rev-parse", "HEAD"]);
    assert_eq!(
        cp["info"]["checkpoint"]["sandbox_head"],
        sandbox_head.stdout().trim(),
        "{cp}"
    );

    // The CLI's own pause checkpoint comes next; the server's pause after it finds the same
    // work and stores nothing more. (Under load the server's idle pause may come first: then
    // the CLI finds its work on the server and uploads nothing. Either way, one copy.)
    t.ok(&["pause"]);
    let tips = || -> Vec<String> {
        detail("/checkpoints")["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["info"]["checkpoint"]["tip"].as_str().unwrap().to_string())
            .collect()
    };
    let after = tips();
    assert!(after.len() >= 2, "{after:?}");
    assert!(
        after.windows(2).all(|w| w[0] != w[1]),
        "two copies of the same work: {after:?}"
    );
    let before = after.len();

    // A server-made checkpoint is what `pull` falls back to: this clone's own were removed,
    // the sandbox is then lost while paused.
    t.sh("echo late > late.txt");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while tips().len() <= before || detail("")["session"]["state"] != "paused" {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint at the next idle pause: {}",
            detail("/checkpoints")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let third = detail("/checkpoints")["checkpoints"][before].clone();
    assert_eq!(third["info"]["by"], "server", "{third}");
    assert!(third["base"].is_string(), "it builds on an anchor: {third}");
    let git_dir = t.path().join(".git/rclaude/checkpoints");
    std::fs::remove_dir_all(&git_dir).unwrap();
    for r in t
        .git(&[
            "for-each-ref",
            "--format=%(refname)",
            "refs/rclaude/checkpoints",
        ])
        .lines()
    {
        t.git(&["update-ref", "-d", r]);
    }
    std::fs::remove_dir_all(&sandboxes).unwrap();
    let r = t.rclaude(&["pull", "--branch", "recovered"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(
        r.all().contains(third["name"].as_str().unwrap()),
        "{}",
        r.all()
    );
    assert_eq!(t.git(&["show", "recovered:late.txt"]), "late\n");
    assert_eq!(t.git(&["show", "recovered:draft.txt"]), "draft\nmore\n");
    assert_eq!(t.git(&["show", "recovered:made.txt"]), "made\n");
    assert_eq!(t.git(&["show", "recovered:a.txt"]), "base\nedited\n");
}

/// When the sandbox's agent reports no change since the newest checkpoint (its change token is
/// the same), a checkpoint runs nothing in the sandbox: the sync lock that every sandbox-side
/// step takes is not touched. Any change — one made just before the checkpoint, a file in a
/// brand-new directory tree, a commit — is taken all the same.
#[test]
fn an_unchanged_sandbox_is_not_exported_again_and_every_change_is() {
    let t = TestRepo::new("[sandbox]\nprovider = \"local\"\n");
    t.write("a.txt", "one\n");
    t.commit_all("init");
    t.ok(&["up"]);
    t.sh("echo two > a.txt");
    let taken = t.ok(&["checkpoints", "--take"]);
    assert!(taken.stderr().contains("taken"), "{}", taken.all());
    let lock = find_files(&t.sandboxes_dir(), "lock")
        .into_iter()
        .find(|p| p.ends_with(".git/rclaude/lock"))
        .expect("the sandbox's sync lock");
    let stamp = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let before = stamp(&lock);
    let again = t.ok(&["checkpoints", "--take"]);
    assert!(
        again.stderr().contains("Nothing changed"),
        "{}",
        again.all()
    );
    assert_eq!(stamp(&lock), before, "a sandbox-side step ran for nothing");
    let count = checkpoints(&t).len();

    // Each change, with the checkpoint right after it (no pause in between).
    let newest_has = |path: &str, want: &str| {
        let all = checkpoints(&t);
        let id = all.last().unwrap()["id"].as_str().unwrap().to_string();
        let r = format!("refs/rclaude/checkpoints/{}/{id}:{path}", t.session_id());
        assert_eq!(t.git(&["show", &r]), want, "{path} in checkpoint {id}");
        all.len()
    };
    t.sh("echo three > a.txt");
    t.ok(&["checkpoints", "--take"]);
    let n = newest_has("a.txt", "three\n");
    assert_eq!(n, count + 1);
    // rclaude's agent exported it itself, from the paths it saw change: its export index's
    // stamp (the script path keeps none).
    assert!(
        find_files(&t.sandboxes_dir(), "stamp")
            .iter()
            .any(|p| p.ends_with(".git/rclaude/export/stamp")),
        "the agent's own export was not used"
    );
    t.sh("mkdir -p new/deep/er && echo x > new/deep/er/f.txt");
    t.ok(&["checkpoints", "--take"]);
    assert_eq!(newest_has("new/deep/er/f.txt", "x\n"), n + 1);
    // The new directories are watched now: a change deep inside them counts.
    t.sh("echo y > new/deep/er/f.txt");
    t.ok(&["checkpoints", "--take"]);
    assert_eq!(newest_has("new/deep/er/f.txt", "y\n"), n + 2);
    t.sh("git add -A && git -c user.name=s -c user.email=s@x commit -qm 'in the sandbox'");
    t.ok(&["checkpoints", "--take"]);
    let all = checkpoints(&t);
    assert_eq!(all.len(), n + 3, "a commit is a change");
    t.sh("rm -r new && echo four > a.txt");
    t.ok(&["checkpoints", "--take"]);
    assert_eq!(newest_has("a.txt", "four\n"), n + 4);
    let id = checkpoints(&t).last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let gone = format!("refs/rclaude/checkpoints/{}/{id}:new", t.session_id());
    let has = Command::new("git")
        .args(["cat-file", "-e", &gone])
        .current_dir(t.path())
        .status()
        .unwrap();
    assert!(!has.success(), "a removed tree is gone");
    let head = t.sh("git rev-parse HEAD");
    assert_eq!(
        all.last().unwrap()["sandbox_head"].as_str(),
        Some(head.trim())
    );
    t.ok(&["down", "--yes", "--discard"]);
}
