//! Benchmark: edit-to-visible latency and burst throughput of `rclaude watch` (local provider)
//! against an `inotifywait` + `rsync` loop and `lsyncd`, both set to their lowest delay.
//!
//! ```text
//! cargo bench --bench watch -- [--edits 200] [--burst 5000] [--bursts 3] [--only-rclaude]
//! ```
//! Each tool mirrors the same 1,000-file tree into its own destination; an edit counts as
//! visible when the destination file holds the new bytes. Prints a Markdown table.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FILES: usize = 1000;
/// How many bursts each tool gets (the median is reported).
static BURSTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(3);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, d: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let edits = arg("--edits", 200);
    let burst = arg("--burst", 5000);
    BURSTS.store(
        arg("--bursts", 3).max(1),
        std::sync::atomic::Ordering::Relaxed,
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let base = scratch.path();

    let only_rclaude = args.iter().any(|a| a == "--only-rclaude");
    let mut rows = Vec::new();
    rows.push(("rclaude watch", bench_rclaude(base, edits, burst)));
    if only_rclaude {
    } else if have("inotifywait") && have("rsync") {
        rows.push(("inotifywait + rsync loop", bench_loop(base, edits, burst)));
    } else {
        eprintln!(
            "inotifywait or rsync missing (Debian: inotify-tools, rsync): skipping that baseline"
        );
    }
    if only_rclaude {
    } else if have("lsyncd") {
        rows.push(("lsyncd (delay = 0)", bench_lsyncd(base, edits, burst)));
    } else {
        eprintln!("lsyncd missing (Debian: lsyncd): skipping that baseline");
    }

    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let reference = rows[0].1.clone();
    println!(
        "{edits} single-file edits (20 ms apart) and bursts of {burst} new small files (median of {} bursts), tree of {FILES} files.\n",
        BURSTS.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "| tool | edit p50 | edit p99 | burst of {burst} | p50 ÷ rclaude | p99 ÷ rclaude | burst ÷ rclaude |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, r) in &rows {
        let ratio = |a: Duration, b: Duration| format!("{:.1}×", a.as_secs_f64() / b.as_secs_f64());
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            ms(r.p50),
            ms(r.p99),
            ms(r.burst),
            ratio(r.p50, reference.p50),
            ratio(r.p99, reference.p99),
            ratio(r.burst, reference.burst)
        );
    }
}

#[derive(Clone)]
struct Result {
    p50: Duration,
    p99: Duration,
    burst: Duration,
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A repository of `FILES` small files.
fn make_tree(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..FILES {
        let p = dir.join(format!("src/d{}/f{i}.txt", i % 20));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("file {i}\n")).unwrap();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// Run the edits and the burst in `src`, waiting for each to show up in `dst`.
fn measure(src: &Path, dst: &Path, edits: usize, burst: usize) -> Result {
    let mut lat = Vec::with_capacity(edits);
    for k in 0..edits {
        let rel = format!("src/d{}/f{}.txt", k % 20, k % FILES);
        let content = format!("edit {k} at {:?}\n", Instant::now());
        let t0 = Instant::now();
        std::fs::write(src.join(&rel), &content).unwrap();
        wait_for(&dst.join(&rel), content.as_bytes(), Duration::from_secs(60));
        lat.push(t0.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    lat.sort();
    let p = |q: f64| {
        lat[((lat.len() as f64 * q).ceil() as usize)
            .saturating_sub(1)
            .min(lat.len() - 1)]
    };
    let mut bursts = Vec::new();
    for k in 0..BURSTS.load(std::sync::atomic::Ordering::Relaxed) {
        let t0 = Instant::now();
        for i in 0..burst {
            let path = src.join(format!("burst{k}/d{}/f{i}.txt", i % 50));
            if i < 50 {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            }
            std::fs::write(path, format!("burst {i}\n")).unwrap();
        }
        let mut next = 0;
        let deadline = Instant::now() + Duration::from_secs(300);
        while next < burst {
            let path = dst.join(format!("burst{k}/d{}/f{next}.txt", next % 50));
            if std::fs::read(&path).is_ok_and(|b| b == format!("burst {next}\n").as_bytes()) {
                next += 1;
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "burst never completed ({next}/{burst})"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        bursts.push(t0.elapsed());
        std::thread::sleep(Duration::from_millis(500));
    }
    bursts.sort();
    Result {
        p50: p(0.50),
        p99: p(0.99),
        burst: bursts[bursts.len() / 2],
    }
}

fn wait_for(path: &Path, want: &[u8], timeout: Duration) {
    let end = Instant::now() + timeout;
    loop {
        if std::fs::read(path).is_ok_and(|b| b == want) {
            return;
        }
        assert!(
            Instant::now() < end,
            "{} never got the edit",
            path.display()
        );
        std::thread::sleep(Duration::from_micros(100));
    }
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process group.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGTERM) };
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_group(cmd: &mut Command) -> Guard {
    use std::os::unix::process::CommandExt;
    Guard(
        cmd.process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn"),
    )
}

fn bench_rclaude(base: &Path, edits: usize, burst: usize) -> Result {
    let src = base.join("rclaude-src");
    make_tree(&src);
    std::fs::write(
        src.join(".rclaude.toml"),
        "[sandbox]\nprovider = \"local\"\n",
    )
    .unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-qm", "tree"]);
    let home = base.join("rclaude-home");
    let rclaude = PathBuf::from(env!("CARGO_BIN_EXE_rclaude"));
    let up = Command::new(&rclaude)
        .args(["up", "--no-setup"])
        .current_dir(&src)
        .env("RCLAUDE_HOME", &home)
        .env("CI", "true")
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let log = base.join("watch.log");
    let _watch = spawn_group(
        Command::new(&rclaude)
            .arg("watch")
            .current_dir(&src)
            .env("RCLAUDE_HOME", &home)
            .env("CI", "true")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let end = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("watching")
    {
        assert!(
            Instant::now() < end,
            "rclaude watch did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sandbox = std::fs::read_dir(home.join("data/sandboxes"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let r = measure(&src, &sandbox.join("root/workspace"), edits, burst);
    drop(_watch);
    if let Some(keep) = std::env::var_os("RCLAUDE_BENCH_WATCH_LOG") {
        let _ = std::fs::copy(&log, keep);
    }
    let _ = Command::new(&rclaude)
        .args(["down", "--yes", "--discard"])
        .current_dir(&src)
        .env("RCLAUDE_HOME", &home)
        .output();
    r
}

fn initial_copy(src: &Path, dst: &Path) {
    let mut from = src.as_os_str().to_owned();
    from.push("/");
    let ok = Command::new("rsync")
        .arg("-a")
        .arg(from)
        .arg(dst)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn bench_loop(base: &Path, edits: usize, burst: usize) -> Result {
    let src = base.join("loop-src");
    let dst = base.join("loop-dst");
    make_tree(&src);
    initial_copy(&src, &dst);
    // Monitor mode never misses an event between two rsync runs; queued events are drained
    // (coalesced) before each run, with no added delay.
    let script = format!(
        "inotifywait -m -r -q -e modify,create,delete,move,attrib,close_write '{s}' | \
         while read -r _; do while read -t 0 -r _; do read -r _; done; rsync -a --delete '{s}/' '{d}/'; done",
        s = src.display(),
        d = dst.display()
    );
    let _g = spawn_group(
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    std::thread::sleep(Duration::from_millis(500));
    measure(&src, &dst, edits, burst)
}

fn bench_lsyncd(base: &Path, edits: usize, burst: usize) -> Result {
    let src = base.join("lsyncd-src");
    let dst = base.join("lsyncd-dst");
    make_tree(&src);
    initial_copy(&src, &dst);
    let conf = base.join("lsyncd.lua");
    std::fs::write(
        &conf,
        format!(
            "settings {{ nodaemon = true, insist = true }}\nsync {{ default.rsync, source = \"{}\", target = \"{}\", delay = 0 }}\n",
            src.display(),
            dst.display()
        ),
    )
    .unwrap();
    let _g = spawn_group(
        Command::new("lsyncd")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    std::thread::sleep(Duration::from_secs(2));
    measure(&src, &dst, edits, burst)
}
