//! Records of `rclaude ci` runs, so that a run killed before it could clean up (SIGKILL, a
//! runner that vanished) does not leak its sandbox: each run keeps its throwaway session record
//! and an owner file (pid and process start time) in `state/ci/<run>/`; the next `ci` or `ls`
//! destroys the sandboxes of runs whose owner is gone and removes their records.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{SessionRecord, SessionStore};

/// Who runs a `ci` run: a pid, and that process's start time so that a reused pid is not
/// mistaken for the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot).
    pub start_ticks: u64,
}

impl Owner {
    /// This process.
    pub fn me() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    /// Whether the process that wrote this is still running.
    pub fn alive(&self) -> bool {
        start_ticks(self.pid).is_some_and(|t| t == self.start_ticks)
    }
}

fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The directory of all `ci` runs' records.
pub fn runs_dir() -> PathBuf {
    crate::dirs::state_dir().join("ci")
}

/// Write the owner file of the run in `dir`.
pub fn claim(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec(&Owner::me()).expect("owner serializes");
    std::fs::write(dir.join("owner.json"), json)
}

/// A run whose owner is gone, with the sandbox it left (if it recorded one).
#[derive(Debug, Clone)]
pub struct Orphan {
    pub dir: PathBuf,
    pub record: Option<SessionRecord>,
}

/// Runs whose owner process is gone. A run directory without an owner file is one being set
/// up right now, or one from before owner files: left alone unless it is over a day old.
pub fn orphans() -> Vec<Orphan> {
    let Ok(entries) = std::fs::read_dir(runs_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|dir| dir.is_dir())
        .filter(|dir| match std::fs::read(dir.join("owner.json")) {
            Ok(bytes) => serde_json::from_slice::<Owner>(&bytes).is_ok_and(|o| !o.alive()),
            Err(_) => std::fs::metadata(dir)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 86_400)),
        })
        .map(|dir| Orphan {
            record: SessionStore::in_dir(&dir, "session").load().ok().flatten(),
            dir,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not_us() {
        let me = Owner::me();
        assert!(me.start_ticks > 0);
        assert!(me.alive());
        let impostor = Owner {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!impostor.alive());
        let gone = Owner {
            pid: u32::MAX - 1,
            start_ticks: 1,
        };
        assert!(!gone.alive());
    }
}

/// Destroy the sandboxes of `ci` runs whose owner is gone and remove their records. Returns a
/// line per sandbox destroyed (or that could not be: it is kept, to try again next time).
pub async fn reap_orphans() -> Vec<String> {
    let mut notes = Vec::new();
    for orphan in orphans() {
        let Some(rec) = orphan.record else {
            let _ = std::fs::remove_dir_all(&orphan.dir);
            continue;
        };
        let gone = match crate::provider::for_name(&rec.provider) {
            Ok(p) => match p.kill(&rec.sandbox_id).await {
                Ok(()) | Err(crate::provider::ProviderError::NotFound(_)) => true,
                Err(e) => {
                    notes.push(format!(
                        "could not destroy sandbox {} ({}) left by a ci run that died: {e}",
                        rec.sandbox_id, rec.provider
                    ));
                    false
                }
            },
            Err(e) => {
                notes.push(format!(
                    "sandbox {} ({}) left by a ci run that died: {e}",
                    rec.sandbox_id, rec.provider
                ));
                false
            }
        };
        if gone {
            notes.push(format!(
                "destroyed sandbox {} ({}), left by a ci run that died",
                rec.sandbox_id, rec.provider
            ));
            let _ = std::fs::remove_dir_all(&orphan.dir);
        }
    }
    notes
}
