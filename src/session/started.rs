//! Sessions started from a URL (`rclaude start`), which have no local checkout: each lives in
//! its own directory under `$XDG_STATE_HOME/rclaude/sessions/<key>/` with its record
//! (`session.json`) and the `.rclaude.toml` read from the clone (`config.toml`, when the
//! repository has one).

use std::path::{Path, PathBuf};

use super::{SessionRecord, SessionStore};
use crate::error::{CliError, CliResult};

/// The config copied from the clone, next to the record.
pub const CONFIG_FILE: &str = "config.toml";

/// A started session's directory.
#[derive(Debug, Clone)]
pub struct StartedDir {
    pub dir: PathBuf,
}

impl StartedDir {
    /// A fresh directory for a new session.
    pub fn create() -> CliResult<StartedDir> {
        let key = uuid::Uuid::new_v4().simple().to_string();
        let dir = root().join(&key[..16]);
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))?;
        Ok(StartedDir { dir })
    }

    /// The record store in this directory.
    pub fn store(&self) -> SessionStore {
        SessionStore::in_dir(&self.dir, "session")
    }

    /// The config text copied from the clone, if the repository had one.
    pub fn config_text(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join(CONFIG_FILE)).ok()
    }

    /// Keep the clone's `.rclaude.toml` as this session's config; answers where it went.
    pub fn write_config(&self, text: &str) -> CliResult<PathBuf> {
        let copy = self.dir.join(CONFIG_FILE);
        std::fs::write(&copy, text)
            .map_err(|e| CliError::io(format!("writing {}", copy.display()), e))?;
        Ok(copy)
    }

    /// Remove the directory (the session is gone).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn root() -> PathBuf {
    crate::dirs::state_dir().join("sessions")
}

/// The started session whose id (or sandbox id) is `id` or starts with it.
pub fn find(id: &str) -> CliResult<Option<(StartedDir, SessionRecord)>> {
    let id = id.trim();
    if id.len() < 4 {
        return Err(CliError::usage(format!(
            "session id {id:?} is too short: give at least 4 characters"
        )));
    }
    let mut found = Vec::new();
    for e in std::fs::read_dir(root()).into_iter().flatten().flatten() {
        let d = StartedDir { dir: e.path() };
        if let Ok(Some(r)) = d.store().load()
            && (r.session_id.starts_with(id) || r.sandbox_id == id)
        {
            found.push((d, r));
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(CliError::usage(format!(
            "{n} started sessions match {id:?}: give more of the id"
        ))),
    }
}

/// Every started session this machine knows, oldest first.
pub fn all() -> Vec<(StartedDir, SessionRecord)> {
    let mut out: Vec<(StartedDir, SessionRecord)> = std::fs::read_dir(root())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let d = StartedDir { dir: e.path() };
            let r = d.store().load().ok()??;
            Some((d, r))
        })
        .collect();
    out.sort_by(|a, b| a.1.created_at.cmp(&b.1.created_at));
    out
}

/// Whether `path` is inside a started session's directory.
pub fn is_started_dir(path: &Path) -> bool {
    path.starts_with(root())
}
