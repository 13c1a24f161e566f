//! Benchmark: the round trip of a no-op command in a running local sandbox, as a user, a git
//! hook or CI pays it, against the least any CLI talking to the agent could cost, in the same run.
//!
//! - `rclaude exec --no-sync -q -- true`: start the CLI, read the config and state, connect to
//!   the agent, run `true` in the sandbox (bubblewrap when installed), stream its exit;
//! - `rclaude exec -q -- true`: the same after checking that the work tree is in sync (nothing
//!   changed, so nothing is sent);
//! - baseline `curl` of the agent's `/health`: a process start plus one HTTP round trip;
//! - floor: spawning `/bin/true` from here.
//!
//! ```text
//! cargo bench --bench exec -- [--runs 50]
//! ```
//! The four are interleaved run by run; prints a Markdown table of p50 and p99.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{find, load_average, ms};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|r| r.parse().ok())
        .unwrap_or(50)
        .max(5);
    let rclaude = PathBuf::from(env!("CARGO_BIN_EXE_rclaude"));
    let scratch = tempfile::tempdir().expect("tempdir");
    let repo = support::small_tree(scratch.path(), "[sandbox]\nprovider = \"local\"\n");
    support::commit_all(&repo);
    let home = scratch.path().join("home");
    let rc = |args: &[&str]| {
        let out = Command::new(&rclaude)
            .args(args)
            .current_dir(&repo)
            .env("RCLAUDE_HOME", &home)
            .env("CI", "true")
            .stdout(Stdio::null())
            .output()
            .expect("rclaude");
        assert!(
            out.status.success(),
            "rclaude {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    rc(&["up", "--quiet"]);
    let port = agent_port(&home);
    let health = format!("http://127.0.0.1:{port}/health");
    let token_header = format!("x-access-token: {}", agent_token(&home));
    let isolation = isolation(&home);

    let no_sync: &[&str] = &["exec", "--no-sync", "-q", "--", "true"];
    let with_sync: &[&str] = &["exec", "-q", "--", "true"];
    let mut samples: [Vec<Duration>; 4] = Default::default();
    for _ in 0..runs {
        samples[0].push(time(|| rc(no_sync)));
        samples[1].push(time(|| rc(with_sync)));
        samples[2].push(time(|| {
            let ok = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", "-H", &token_header, &health])
                .status()
                .expect("curl (install it for the baseline)")
                .success();
            assert!(ok, "curl {health}");
        }));
        samples[3].push(time(|| {
            assert!(Command::new("/bin/true").status().unwrap().success());
        }));
    }
    rc(&["down", "--yes", "--discard"]);

    let names = [
        "`rclaude exec --no-sync -- true`",
        "`rclaude exec -- true` (sync check, nothing changed)",
        "`curl` of the agent's `/health` (baseline)",
        "spawn `/bin/true` (floor)",
    ];
    let curl_p50 = percentile(&mut samples[2].clone(), 0.5);
    println!(
        "\nno-op round trip, local provider (isolation: {isolation}), {runs} runs each, interleaved; {} CPUs, load average {}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!("| command | p50 | p99 | p50 ÷ curl |");
    println!("|---|---|---|---|");
    for (name, s) in names.iter().zip(samples.iter_mut()) {
        let (p50, p99) = (percentile(s, 0.5), percentile(s, 0.99));
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.2}× |",
            ms(p50),
            ms(p99),
            p50.as_secs_f64() / curl_p50.as_secs_f64()
        );
    }
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// The port of the one agent under `home` (from its `agent.json`).
fn agent_port(home: &Path) -> u16 {
    let v = agent_state(home);
    v["port"].as_u64().expect("port in agent.json") as u16
}

/// The agent's access token (from `agent.token` beside its `agent.json`).
fn agent_token(home: &Path) -> String {
    let state = find(home, "agent.json").expect("agent.json under RCLAUDE_HOME");
    std::fs::read_to_string(state.with_file_name("agent.token"))
        .expect("agent.token")
        .trim()
        .to_string()
}

fn isolation(home: &Path) -> String {
    agent_state(home)["isolation"]["mode"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

fn agent_state(home: &Path) -> serde_json::Value {
    let found = find(home, "agent.json").expect("agent.json under RCLAUDE_HOME");
    serde_json::from_slice(&std::fs::read(found).unwrap()).unwrap()
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}
