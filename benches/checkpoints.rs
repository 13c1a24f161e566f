//! Benchmark: checkpoints kept on the server, and recovery from them (issue 23).
//!
//! A repository of 10,000 files (pushed to a local bare "origin"), its local sandbox up, the
//! CLI logged in to a real `rclaude-server` (SQLite, direct mode). Per run:
//! - one file changed in the sandbox, then `checkpoints --take` (fetch off the sandbox, record,
//!   upload the new objects to the server): time, and the bytes the server stored;
//! - `checkpoints --take` again with nothing changed;
//! - the same two checkpoints taken in this process on a connection already open (what the
//!   checkpoints at the end of `run` and `claude` and before a pause pay: no process start, no
//!   listing afterwards; kept on this machine, not uploaded);
//! - `pull` from the live sandbox;
//! - the same work taken back on another clone (its own home, logged in to the same account)
//!   with `pull --session ID` from the server's checkpoint, while the sandbox still runs (so
//!   both pulls bring the same tree; the recovery path never touches the sandbox).
//!
//! ```text
//! cargo bench --bench checkpoints -- [--runs 5] [--files 10000]
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{arg, git, load_average, median, ms, server_bin};

fn main() {
    let runs = arg("--runs", 5).max(3);
    let files = arg("--files", 10_000);
    let rclaude = PathBuf::from(env!("CARGO_BIN_EXE_rclaude"));
    let scratch = tempfile::tempdir().expect("tempdir");
    let base = scratch.path();

    // The server (direct mode: it manages no sandboxes) and an account.
    let db = base.join("server.db");
    let server = server_bin(&rclaude);
    let mut child = Command::new(&server)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sandbox-provider",
            "none",
        ])
        .arg("--database-url")
        .arg(&db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rclaude-server");
    let url = support::server_url(&mut child);
    let token = support::create_account(&server, &db);

    // The repository: `files` files of ~100 bytes in 100 directories, pushed to an origin.
    let repo = base.join("repo");
    for i in 0..files {
        let p = repo.join(format!("d{:02}/f{i}.txt", i % 100));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("file {i}\n{}\n", "x".repeat(90))).unwrap();
    }
    std::fs::write(
        repo.join(".rclaude.toml"),
        "[sandbox]\nprovider = \"local\"\n",
    )
    .unwrap();
    support::commit_all(&repo);
    let origin = base.join("origin.git");
    git(
        base,
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            origin.to_str().unwrap(),
        ],
    );
    git(
        &repo,
        &["remote", "add", "origin", origin.to_str().unwrap()],
    );
    git(&repo, &["push", "-q", "-u", "origin", "main"]);
    let other = base.join("other");
    git(
        base,
        &[
            "clone",
            "-q",
            origin.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );

    let rc = |dir: &Path, home: &Path, args: &[&str]| -> (Duration, String) {
        let t = Instant::now();
        let out = Command::new(&rclaude)
            .args(args)
            .current_dir(dir)
            .env("RCLAUDE_HOME", home)
            .env("RCLAUDE_TOKEN", &token)
            .env("CI", "true")
            .output()
            .expect("rclaude");
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "rclaude {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (took, String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (home, other_home) = (base.join("home"), base.join("other-home"));
    rc(&repo, &home, &["login", "--server", &url]);
    rc(&other, &other_home, &["login", "--server", &url]);
    rc(&repo, &home, &["up", "--quiet"]);
    let state = std::fs::read_dir(home.join("state/repos"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("the session record");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    let session = record["session_id"].as_str().unwrap().to_string();
    // The first checkpoint carries the sandbox's first state; the runs measure what follows.
    let in_sandbox = |script: &str| {
        rc(
            &repo,
            &home,
            &["exec", "--no-sync", "--", "sh", "-c", script],
        )
    };
    in_sandbox("echo start > start.txt");
    rc(&repo, &home, &["checkpoints", "--take"]);
    // The sandbox, connected once, for the in-process checkpoints.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let provider =
        rclaude::provider::local::LocalProvider::at(home.join("data/sandboxes"), rclaude.clone());
    let record: rclaude::session::SessionRecord =
        serde_json::from_value(record.clone()).expect("a session record");
    let sandbox = {
        use rclaude::provider::Provider;
        runtime
            .block_on(provider.connect(&record.sandbox_id))
            .expect("connecting to the sandbox")
    };
    let take_open = |what: &str| -> Duration {
        let sync = rclaude::ops::sync::sync_state(&record);
        let t = Instant::now();
        let taken = runtime
            .block_on(rclaude::gitsync::checkpoint::take(
                &repo,
                &*sandbox,
                sync.as_ref(),
                &session,
                "manual",
                Vec::new(),
                rclaude::gitsync::checkpoint::KEEP,
                &rclaude::gitsync::NoProgress,
            ))
            .expect("a checkpoint");
        let took = t.elapsed();
        use rclaude::gitsync::checkpoint::Taken;
        match (what, &taken) {
            ("new", Taken::New(_)) | ("unchanged", Taken::Unchanged(_)) => {}
            _ => panic!("expected a {what} checkpoint, got {taken:?}"),
        }
        took
    };

    let mut take_one = Vec::new();
    let mut take_none = Vec::new();
    let mut live = Vec::new();
    let mut recover = Vec::new();
    let mut stored = Vec::new();
    let (mut open_one, mut open_none) = (Vec::new(), Vec::new());
    for i in 0..runs {
        in_sandbox(&format!("echo 'edit {i}' >> d07/f7.txt"));
        take_one.push(rc(&repo, &home, &["checkpoints", "--take"]).0);
        take_none.push(rc(&repo, &home, &["checkpoints", "--take"]).0);
        in_sandbox(&format!("echo 'open edit {i}' >> d08/f8.txt"));
        open_one.push(take_open("new"));
        open_none.push(take_open("unchanged"));
        let listed = http_get(&url, &token, &format!("/v1/sessions/{session}/checkpoints"));
        let last = listed["checkpoints"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        stored.push(last["size_bytes"].as_u64().unwrap());
        live.push(rc(&repo, &home, &["pull", "--branch", &format!("live-{i}")]).0);
        // The other clone forgets what it took back last time.
        let _ = std::fs::remove_dir_all(other.join(".git/rclaude/checkpoints"));
        let refs = Command::new("git")
            .args(["for-each-ref", "--format=%(refname)", "refs/rclaude/"])
            .current_dir(&other)
            .output()
            .unwrap();
        for r in String::from_utf8_lossy(&refs.stdout).lines() {
            git(&other, &["update-ref", "-d", r]);
        }
        recover.push(
            rc(
                &other,
                &other_home,
                &[
                    "pull",
                    "--session",
                    &session,
                    "--branch",
                    &format!("recovered-{i}"),
                ],
            )
            .0,
        );
    }
    rc(&repo, &home, &["down", "--yes", "--discard"]);
    let _ = child.kill();
    let _ = child.wait();
    stored.sort();
    let (open_one_m, open_none_m) = (median(&mut open_one), median(&mut open_none));
    let (one, none, live_m, rec_m) = (
        median(&mut take_one),
        median(&mut take_none),
        median(&mut live),
        median(&mut recover),
    );
    println!(
        "\n{files} files, {runs} runs, medians; load average {}\n",
        load_average()
    );
    println!("| step | time | bytes | target |\n|---|---|---|---|");
    println!(
        "| checkpoint, one file changed (`checkpoints --take`: take + upload) | {:.0} ms | {} B stored | < 50 ms, a few KiB |",
        ms(one),
        stored[stored.len() / 2]
    );
    println!(
        "| checkpoint, nothing changed (`checkpoints --take`) | {:.0} ms | 0 | < 10 ms |",
        ms(none)
    );
    println!(
        "| checkpoint on an open connection, one file changed (to this machine) | {:.1} ms | | < 50 ms |",
        ms(open_one_m)
    );
    println!(
        "| checkpoint on an open connection, nothing changed | {:.1} ms | 0 | < 10 ms |",
        ms(open_none_m)
    );
    println!(
        "| `pull` from the live sandbox | {:.0} ms | | baseline |",
        ms(live_m)
    );
    println!(
        "| `pull --session` on another clone, from the server | {:.0} ms | | ≤ 1.2× the live pull: {:.2}× |",
        ms(rec_m),
        rec_m.as_secs_f64() / live_m.as_secs_f64()
    );
}

fn http_get(base: &str, token: &str, path: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", "-H", &format!("authorization: Bearer {token}")])
        .arg(format!("{base}{path}"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "GET {path}");
    serde_json::from_slice(&out.stdout).unwrap()
}
