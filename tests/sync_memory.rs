//! Memory of a sync that carries a large untracked file: the file is streamed, never held whole
//! (issue: a 200 MB untracked file cost about twice its size to upload).

mod common;

use std::io::Write;
use std::time::Duration;

use common::TestRepo;

/// Peak resident memory (`VmHWM`, KiB) of a running process; `None` once it has exited.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Incompressible bytes (xorshift), so that compression cannot hide a copy held in memory.
fn write_noise(path: &std::path::Path, bytes: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..bytes / block.len() {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

#[test]
fn a_200_mb_untracked_file_is_synced_without_holding_it_in_memory() {
    const SIZE: usize = 200 << 20;
    let t = TestRepo::new("[sandbox]\nprovider = \"local\"\nisolation = \"none\"\n");
    write_noise(&t.path().join("big.bin"), SIZE);

    let mut child = t.cmd(&["up"]).spawn().unwrap();
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "rclaude up failed: {status}");
    // The CLI itself (git pack-objects streams the blob in a child process).
    let limit_kib = (SIZE / 1024 / 2) as u64;
    assert!(
        peak < limit_kib,
        "rclaude up peaked at {} MiB for a {} MiB file (limit {} MiB)",
        peak / 1024,
        SIZE >> 20,
        limit_kib / 1024
    );

    // And the file arrived whole.
    let r = t.ok(&["exec", "--no-sync", "--", "cksum big.bin"]);
    let local = std::process::Command::new("cksum")
        .arg("big.bin")
        .current_dir(t.path())
        .output()
        .unwrap();
    assert_eq!(r.stdout(), String::from_utf8_lossy(&local.stdout));
    t.ok(&["down", "--yes", "--discard"]);
}
