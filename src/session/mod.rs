//! This machine's record of a repository's sandbox: which provider and sandbox, the session id,
//! what was last synced, and a lock so concurrent `rclaude` calls in one repository don't race.

mod lock;
mod repo;
pub mod started;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use lock::RepoLock;
pub use repo::Repo;

use crate::error::{CliError, CliResult};

/// Between a repository's key and a session name in a named session's record file name.
const NAMED_SEP: &str = "~";

/// Check a session name (`--session NAME`): 1 to 40 letters, digits, `-`, `_` or `.`, starting
/// with a letter or digit (it becomes part of branch and file names).
pub fn validate_session_name(name: &str) -> Result<(), String> {
    let ok = (1..=40).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.contains("..")
        && !name.ends_with('.')
        && !name.ends_with(".lock");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid session name {name:?}: use 1 to 40 letters, digits, `-`, `_` or `.`, starting with a letter or digit (no `/`, `..`, spaces)"
        ))
    }
}

/// Format version of [`SessionRecord`] files.
pub const RECORD_VERSION: u32 = 1;

/// What this machine knows about a repository's sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub version: u32,
    /// The repository's work tree on this machine.
    pub repo_root: PathBuf,
    /// Provider name (`local`, `e2b`, ...).
    pub provider: String,
    pub sandbox_id: String,
    /// rclaude's session id (also the server's, when reporting).
    pub session_id: String,
    /// Absolute path of the repository inside the sandbox.
    pub workdir: String,
    /// RFC 3339.
    pub created_at: String,
    /// Hash of the `[setup]` lines last run successfully in this sandbox.
    #[serde(default)]
    pub setup_hash: Option<String>,
    /// What the last sync left in the sandbox (opaque to everything but `gitsync`).
    #[serde(default)]
    pub sync: Option<serde_json::Value>,
    /// Claude Code's conversation id in this sandbox (`claude --continue`).
    #[serde(default)]
    pub claude_session: Option<String>,
    /// For a session started from a URL (`rclaude start`): what the sandbox cloned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// What a session started from a URL cloned (`rclaude start URL[@REF]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Origin {
    /// The repository URL (never with credentials).
    pub url: String,
    /// The REF asked for (`None`: the default branch).
    #[serde(default)]
    pub git_ref: Option<String>,
    /// The commit the clone checked out.
    pub commit: String,
    /// The checked-out branch (`None`: detached at a tag or commit).
    #[serde(default)]
    pub branch: Option<String>,
    /// The repository has a `.rclaude.toml` (else built-in defaults apply).
    pub config_from_repository: bool,
}

/// Reads and writes session records for one repository.
#[derive(Debug, Clone)]
pub struct SessionStore {
    path: PathBuf,
    lock_path: PathBuf,
}

impl SessionStore {
    /// The store for `repo` under the state directory.
    pub fn for_repo(repo: &Repo) -> SessionStore {
        SessionStore::in_dir(&crate::dirs::state_dir().join("repos"), &repo.key)
    }

    /// The store of `repo`'s named session `name` (beside the default one, never sharing its
    /// lock).
    pub fn for_named(repo: &Repo, name: &str) -> SessionStore {
        SessionStore::in_dir(
            &crate::dirs::state_dir().join("repos"),
            &format!("{}{NAMED_SEP}{name}", repo.key),
        )
    }

    /// Every session of `repo` this machine has a record of: the default one (`None`) first,
    /// then the named ones by name.
    pub fn all_of(repo: &Repo) -> Vec<(Option<String>, SessionRecord)> {
        let dir = crate::dirs::state_dir().join("repos");
        let mut out = Vec::new();
        if let Ok(Some(r)) = SessionStore::for_repo(repo).load() {
            out.push((None, r));
        }
        let prefix = format!("{}{NAMED_SEP}", repo.key);
        let mut named: Vec<(Option<String>, SessionRecord)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().into_string().ok()?;
                let name = file
                    .strip_prefix(&prefix)?
                    .strip_suffix(".json")?
                    .to_string();
                let rec = SessionStore::for_named(repo, &name).load().ok()??;
                Some((Some(name), rec))
            })
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        out.extend(named);
        out
    }

    /// A store keeping `<key>.json` and `<key>.lock` in `dir` (e.g. a throwaway record for
    /// `rclaude ci`, apart from the repository's own).
    pub fn in_dir(dir: &Path, key: &str) -> SessionStore {
        SessionStore {
            path: dir.join(format!("{key}.json")),
            lock_path: dir.join(format!("{key}.lock")),
        }
    }

    /// Path of the record file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current record, if any.
    pub fn load(&self) -> CliResult<Option<SessionRecord>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                CliError::internal(format!(
                    "session record {} is unreadable: {e}",
                    self.path.display()
                ))
                .hint("delete that file to forget the sandbox (the sandbox itself is kept)")
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::io(format!("reading {}", self.path.display()), e)),
        }
    }

    /// Write the record atomically (temp file + rename).
    pub fn save(&self, record: &SessionRecord) -> CliResult<()> {
        let json =
            serde_json::to_vec_pretty(record).map_err(|e| CliError::internal(e.to_string()))?;
        write_atomic(&self.path, &json)
    }

    /// Forget the record.
    pub fn remove(&self) -> CliResult<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CliError::io(format!("removing {}", self.path.display()), e)),
        }
    }

    /// Take the repository's lock (waits for other rclaude commands in the same repository).
    pub fn lock(&self) -> CliResult<RepoLock> {
        RepoLock::acquire(&self.lock_path)
    }
}

/// Write `bytes` to `path` atomically, creating parent directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> CliResult<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| CliError::io(format!("writing in {}", dir.display()), e))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| CliError::io(format!("writing {}", path.display()), e))?;
    tmp.persist(path)
        .map_err(|e| CliError::io(format!("writing {}", path.display()), e.error))?;
    Ok(())
}

#[cfg(test)]
mod name_tests {
    use super::validate_session_name as v;

    #[test]
    fn session_names_are_safe_in_branches_and_files() {
        for good in [
            "fix-1",
            "a",
            "Refactor_parser",
            "v2.1",
            "x".repeat(40).as_str(),
        ] {
            assert!(v(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            "a/b",
            "..",
            "a..b",
            "has space",
            "tab\t",
            "x.",
            "x.lock",
            ".hidden",
            "é",
            "x".repeat(41).as_str(),
        ] {
            assert!(v(bad).is_err(), "{bad:?}");
        }
    }
}
