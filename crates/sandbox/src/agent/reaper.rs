//! The process groups an agent started, recorded on disk, so that what a crashed agent left
//! running is killed when the sandbox's agent starts again, pauses or is destroyed.
//!
//! File format, one record per line: `root PATH` (the sandbox root, first line), then
//! `group PGID STARTTIME` (the group leader's start time in clock ticks since boot, from
//! `/proc/PID/stat`). A recorded group is only killed when it is provably the same: its leader
//! still runs with the recorded start time, or (leader gone) a member carries the sandbox's
//! marker variable `RCLAUDE_SANDBOX_ROOT=PATH` in its initial environment.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The environment variable every sandbox process carries (its value: the sandbox root).
pub const MARKER_VAR: &str = "RCLAUDE_SANDBOX_ROOT";

/// An open record of process groups.
pub struct GroupLog {
    path: PathBuf,
    root: PathBuf,
    state: Mutex<LogState>,
}

struct LogState {
    file: std::fs::File,
    /// Groups recorded in the file, with their leaders' start times.
    recorded: Vec<(u32, u64)>,
}

impl GroupLog {
    /// Start a fresh record for the sandbox at `root` (the previous one must have been reaped).
    pub fn create(path: &Path, root: &Path) -> std::io::Result<GroupLog> {
        let log = GroupLog {
            path: path.to_path_buf(),
            root: root.to_path_buf(),
            state: Mutex::new(LogState {
                file: Self::rewrite(path, root, &[])?,
                recorded: Vec::new(),
            }),
        };
        Ok(log)
    }

    fn rewrite(path: &Path, root: &Path, groups: &[(u32, u64)]) -> std::io::Result<std::fs::File> {
        let mut text = format!("root {}\n", root.display());
        for (g, s) in groups {
            text.push_str(&format!("group {g} {s}\n"));
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        std::fs::OpenOptions::new().append(true).open(path)
    }

    /// Remember a process group whose leader is running now; `live` are the groups that still
    /// have members (the record is compacted to them now and then).
    pub fn record(&self, pgid: u32, live: &HashSet<u32>) {
        let mut s = self.state.lock().unwrap();
        if s.recorded.iter().any(|(g, _)| *g == pgid) {
            return;
        }
        let Some(start) = start_time(pgid) else {
            return;
        };
        s.recorded.push((pgid, start));
        let result = if s.recorded.len() > 2 * live.len() + 64 {
            s.recorded.retain(|(g, _)| live.contains(g) || *g == pgid);
            Self::rewrite(&self.path, &self.root, &s.recorded).map(|f| s.file = f)
        } else {
            writeln!(s.file, "group {pgid} {start}")
        };
        if let Err(e) = result {
            tracing::warn!(
                "cannot record process group in {}: {e}",
                self.path.display()
            );
        }
    }

    /// Every recorded group has been killed: start the record afresh.
    pub fn clear(&self) {
        let mut s = self.state.lock().unwrap();
        s.recorded.clear();
        match Self::rewrite(&self.path, &self.root, &[]) {
            Ok(f) => s.file = f,
            Err(e) => tracing::warn!("cannot reset {}: {e}", self.path.display()),
        }
    }
}

/// One process as `/proc` shows it.
struct ProcEntry {
    pid: u32,
    pgid: u32,
    start: u64,
}

/// `(pgrp, starttime)` of a process from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after `(comm)`: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime ...
    let rest: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    Some((rest.get(2)?.parse().ok()?, rest.get(19)?.parse().ok()?))
}

fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, s)| s)
}

fn processes() -> Vec<ProcEntry> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (pgid, start) = stat(pid)?;
            Some(ProcEntry { pid, pgid, start })
        })
        .collect()
}

fn has_marker(pid: u32, marker: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|kv| kv == marker))
        .unwrap_or(false)
}

/// Whether process group `pgid` still holds a process of the sandbox at `root` (one carrying its
/// marker variable). Group ids are reused once a group empties (PIDs wrap at `pid_max`, as low
/// as 32768), so a remembered group must be checked before it is signalled.
pub fn group_is_ours(pgid: u32, root: &Path) -> bool {
    let marker = format!("{MARKER_VAR}={}", root.display()).into_bytes();
    processes()
        .iter()
        .any(|p| p.pgid == pgid && has_marker(p.pid, &marker))
}

/// Kill the process groups recorded in `path` that are still running, and empty the record.
/// Returns how many processes were killed. A missing record is nothing to do.
pub fn reap(path: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    let mut root = None;
    let mut groups = Vec::new();
    for line in text.lines() {
        let mut w = line.splitn(3, ' ');
        match (w.next(), w.next(), w.next()) {
            (Some("root"), Some(r), rest) => {
                root = Some(match rest {
                    Some(more) => format!("{r} {more}"),
                    None => r.to_string(),
                })
            }
            (Some("group"), Some(g), Some(s)) => {
                if let (Ok(g), Ok(s)) = (g.parse::<u32>(), s.trim().parse::<u64>()) {
                    groups.push((g, s));
                }
            }
            _ => {}
        }
    }
    let marker = root.map(|r| format!("{MARKER_VAR}={r}").into_bytes());
    let procs = processes();
    let me = std::process::id();
    let mut killed = 0;
    for (pgid, start) in groups {
        let members: Vec<&ProcEntry> = procs
            .iter()
            .filter(|p| p.pgid == pgid && p.pid != me)
            .collect();
        if members.is_empty() {
            continue;
        }
        let ours = match members.iter().find(|p| p.pid == pgid) {
            Some(leader) => leader.start == start,
            None => marker
                .as_deref()
                .is_some_and(|m| members.iter().any(|p| has_marker(p.pid, m))),
        };
        if ours {
            tracing::info!(
                pgid,
                processes = members.len(),
                "killing processes left behind by a previous agent"
            );
            // SAFETY: kill(2) on a process group verified above to be one the agent started.
            unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) };
            killed += members.len();
        }
    }
    let _ = std::fs::remove_file(path);
    killed
}
