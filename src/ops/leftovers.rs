//! Sandboxes left behind by `rclaude ci` runs that were killed before they could destroy them
//! (SIGKILL, an out-of-memory kill, a machine crash).
//!
//! Every run keeps a scratch directory `$XDG_STATE_HOME/rclaude/ci/<run>/` with its session
//! record (`session.json`, naming its sandbox) and `owner.json` (its pid and that process's start
//! time, so a reused pid is not mistaken for the run). A run that ends removes the directory; a
//! later `ci`, `up` or `ls` destroys the sandboxes of runs whose process is gone ([`reap`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::progress::Out;
use crate::config::ProviderKind;
use crate::error::{CliError, CliResult};
use crate::provider::ProviderError;
use crate::session::{SessionRecord, SessionStore};

/// `owner.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Owner {
    pid: u32,
    /// Start time of the process in clock ticks since boot (`/proc/PID/stat`).
    start: Option<u64>,
}

/// A `ci` run known on this machine.
#[derive(Debug, Clone)]
pub struct CiRun {
    pub dir: PathBuf,
    pub pid: u32,
    /// The run's process is still running.
    pub alive: bool,
    /// Its session record, once its sandbox exists.
    pub record: Option<SessionRecord>,
}

fn runs_dir() -> PathBuf {
    crate::dirs::state_dir().join("ci")
}

/// Scratch directory of a new run, with its owner recorded (this process).
pub fn start_run(run_id: &str) -> CliResult<PathBuf> {
    let dir = runs_dir().join(run_id);
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))?;
    let pid = std::process::id();
    let owner = Owner {
        pid,
        start: start_time(pid),
    };
    let json = serde_json::to_vec(&owner).map_err(|e| CliError::internal(e.to_string()))?;
    crate::session::write_atomic(&dir.join("owner.json"), &json)?;
    Ok(dir)
}

fn start_time(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

fn alive(o: &Owner) -> bool {
    if std::path::Path::new("/proc/self/stat").exists() {
        return match (start_time(o.pid), o.start) {
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
            (None, _) => false,
        };
    }
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(o.pid as libc::pid_t, 0) == 0 }
}

/// Every run with an owner record.
pub fn runs() -> Vec<CiRun> {
    let Ok(rd) = std::fs::read_dir(runs_dir()) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let dir = e.path();
            let owner: Owner =
                serde_json::from_slice(&std::fs::read(dir.join("owner.json")).ok()?).ok()?;
            let record = SessionStore::in_dir(&dir, "session").load().ok().flatten();
            Some(CiRun {
                alive: alive(&owner),
                pid: owner.pid,
                dir,
                record,
            })
        })
        .collect()
}

fn kind(name: &str) -> Option<ProviderKind> {
    ProviderKind::from_name(name)
}

/// Destroy the sandboxes of dead runs and remove their records. Returns what was destroyed
/// (`(provider, sandbox)`); runs whose sandbox cannot be destroyed now are kept and named in a
/// warning, with the command that removes them.
pub async fn reap(out: &Out) -> Vec<(String, String)> {
    let mut done = Vec::new();
    for run in runs().into_iter().filter(|r| !r.alive) {
        let Some(record) = run.record else {
            // Killed before it created a sandbox.
            let _ = std::fs::remove_dir_all(&run.dir);
            continue;
        };
        let destroyed = match kind(&record.provider)
            .ok_or_else(|| format!("unknown provider {:?}", record.provider))
            .and_then(|k| crate::provider::select::for_kind(k).map_err(|e| e.to_string()))
        {
            Ok(p) => match p.kill(&record.sandbox_id).await {
                Ok(()) | Err(ProviderError::NotFound(_)) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e),
        };
        match destroyed {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(&run.dir);
                out.info(format!(
                    "Destroyed sandbox {} ({}), left behind by a `rclaude ci` run that was \
                     killed (pid {}).",
                    record.sandbox_id, record.provider, run.pid
                ));
                done.push((record.provider.clone(), record.sandbox_id.clone()));
            }
            Err(e) => out.warn(format!(
                "sandbox {} ({}) was left behind by a `rclaude ci` run that was killed \
                 (pid {}), and cannot be destroyed now: {e}; `rclaude down --sandbox {} \
                 --provider {}` removes it",
                record.sandbox_id, record.provider, run.pid, record.sandbox_id, record.provider
            )),
        }
    }
    done
}

/// Forget the ci run records that name `sandbox` (it was destroyed by hand).
pub fn forget(sandbox: &str) {
    for run in runs() {
        if run.record.as_ref().is_some_and(|r| r.sandbox_id == sandbox) {
            let _ = std::fs::remove_dir_all(&run.dir);
        }
    }
}

/// The run whose sandbox is `sandbox`, if any.
pub fn run_of(sandbox: &str) -> Option<CiRun> {
    runs().into_iter().find(|r| {
        r.record
            .as_ref()
            .is_some_and(|rec| rec.sandbox_id == sandbox)
    })
}

/// Remove a finished run's directory.
pub fn finish_run(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
