//! The local git repository a command runs in.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{CliError, CliResult};

/// A repository on this machine.
#[derive(Debug, Clone)]
pub struct Repo {
    /// Top of the work tree (canonical).
    pub root: PathBuf,
    /// Short stable key derived from `root`, naming its session record.
    pub key: String,
    /// Directory name, used to name the sandbox.
    pub name: String,
}

impl Repo {
    /// Find the repository containing `start`.
    pub fn discover(start: &Path) -> CliResult<Repo> {
        let repo = crate::gitsync::open_work_tree(start).map_err(|_| {
            CliError::config(format!(
                "{} is not inside a git repository",
                start.display()
            ))
            .hint("run rclaude inside a git work tree (`git init` creates one)")
        })?;
        let workdir = repo.workdir().ok_or_else(|| {
            CliError::config(format!("{} is a bare repository", repo.path().display()))
                .hint("rclaude needs a work tree to sync")
        })?;
        let root = workdir
            .canonicalize()
            .map_err(|e| CliError::io(format!("resolving {}", workdir.display()), e))?;
        let key = hex::encode(&Sha256::digest(root.to_string_lossy().as_bytes())[..8]);
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repo".into());
        Ok(Repo { root, key, name })
    }

    /// The current branch name, `None` when detached.
    pub fn branch(&self) -> Option<String> {
        let repo = crate::gitsync::open_work_tree(&self.root).ok()?;
        let head = repo.find_reference("HEAD").ok()?;
        let target = head.symbolic_target().ok()??;
        target.strip_prefix("refs/heads/").map(str::to_string)
    }

    /// How the server names this repository: `host/owner/name` from `origin`, else the directory name.
    pub fn display_name(&self) -> String {
        let url = crate::gitsync::open_work_tree(&self.root)
            .ok()
            .and_then(|r| {
                r.find_remote("origin")
                    .ok()
                    .and_then(|o| o.url().ok().map(str::to_string))
            });
        url.and_then(|u| normalize_remote(&u))
            .unwrap_or_else(|| self.name.clone())
    }

    /// Path of `.rclaude.toml` at the top of the work tree.
    pub fn config_path(&self) -> PathBuf {
        self.root.join(crate::config::CONFIG_FILE)
    }
}

/// `git@github.com:o/r.git`, `https://user@github.com/o/r` → `github.com/o/r`.
fn normalize_remote(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    let rest = if url.contains("://") {
        rest.to_string()
    } else {
        rest.replacen(':', "/", 1)
    };
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    if rest.is_empty() || rest.starts_with('/') {
        None
    } else {
        Some(rest.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_remote;

    #[test]
    fn remotes_normalise_to_host_owner_name() {
        assert_eq!(
            normalize_remote("git@github.com:o/r.git").as_deref(),
            Some("github.com/o/r")
        );
        assert_eq!(
            normalize_remote("https://user@github.com/o/r/").as_deref(),
            Some("github.com/o/r")
        );
        assert_eq!(
            normalize_remote("ssh://git@host:22/o/r.git").as_deref(),
            Some("host:22/o/r")
        );
        assert_eq!(normalize_remote("/srv/git/r.git"), None);
    }
}
