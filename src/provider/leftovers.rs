//! Processes a local sandbox's agent left behind.
//!
//! The agent kills its processes when it stops. When it dies instead (SIGKILL, a crash, a
//! machine that ran out of memory) and no bubblewrap sandbox takes them down with it, its
//! commands and their background children live on. Every process the agent starts carries
//! `RCLAUDE_SANDBOX_ID=<id>` in its environment, so they can be found again by scanning
//! `/proc`, whatever process group or session they moved to; [`kill_all`] runs before an agent
//! starts, after it stops and when the sandbox is destroyed.

use std::path::Path;

/// Pids of live processes (other than this one) whose environment has `RCLAUDE_SANDBOX_ID=id`.
pub fn find(id: &str) -> Vec<libc::pid_t> {
    let marker = format!("RCLAUDE_SANDBOX_ID={id}");
    let me = std::process::id() as libc::pid_t;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| has_marker(&Path::new("/proc").join(pid.to_string()), &marker))
        .collect()
}

fn has_marker(proc_dir: &Path, marker: &str) -> bool {
    // Unreadable (another user's, or gone): not ours.
    std::fs::read(proc_dir.join("environ"))
        .map(|env| env.split(|&b| b == 0).any(|v| v == marker.as_bytes()))
        .unwrap_or(false)
}

/// SIGKILL every leftover process of sandbox `id`; returns how many there were.
pub fn kill_all(id: &str) -> usize {
    let mut total = 0;
    // Killing a parent can let a child be reparented in between: look again until none is left.
    for _ in 0..5 {
        let pids = find(id);
        if pids.is_empty() {
            break;
        }
        for &pid in &pids {
            // SAFETY: kill(2) with a pid just read from /proc; a process that already went away
            // is ESRCH, which is fine.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        total += pids.len();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if total > 0 {
        tracing::warn!(
            sandbox = id,
            processes = total,
            "killed processes an agent left behind"
        );
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_processes_are_found_and_killed_and_others_are_not() {
        let id = format!("test-{}", uuid::Uuid::new_v4().simple());
        let mut marked = std::process::Command::new("sleep")
            .arg("30")
            .env("RCLAUDE_SANDBOX_ID", &id)
            .spawn()
            .unwrap();
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .env("RCLAUDE_SANDBOX_ID", format!("{id}-other"))
            .spawn()
            .unwrap();
        assert_eq!(find(&id), vec![marked.id() as libc::pid_t]);
        assert_eq!(kill_all(&id), 1);
        assert!(
            marked.wait().unwrap().code().is_none(),
            "killed by a signal"
        );
        assert!(
            other.try_wait().unwrap().is_none(),
            "the other sandbox's process lives"
        );
        let _ = other.kill();
        let _ = other.wait();
    }
}
