//! Git hooks that run `[hooks]` tasks in the sandbox: where git looks for hooks, the script
//! rclaude installs, and installing/uninstalling it without losing the hook that was there.
//!
//! An installed hook is a small POSIX `sh` script carrying [`MARKER`]. A hook that was already
//! in place is renamed to `<hook>.rclaude-orig` (same directory, same bytes and mode) and the
//! script runs it first, so its checks still apply; `uninstall` renames it back.

mod install;
mod script;

use std::path::{Path, PathBuf};

pub use install::{Action, Change, Status, install, status, uninstall};
pub use script::{MARKER, ORIG_SUFFIX, is_ours, script};

/// Errors installing or removing hooks.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// `git rev-parse --git-path hooks` could not be run or failed.
    #[error("cannot find the git hooks directory of {root}: {reason}")]
    HooksDir { root: PathBuf, reason: String },
    /// A file operation failed.
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Both a foreign hook and a kept original exist: installing would lose one of them.
    #[error(
        "{} is not rclaude's hook, and {} (the hook rclaude kept earlier) is still there; \
         installing would lose one of them",
        hook.display(),
        orig.display()
    )]
    Conflict { hook: PathBuf, orig: PathBuf },
}

impl HookError {
    pub(crate) fn io(context: &'static str, path: &Path, source: std::io::Error) -> HookError {
        HookError::Io {
            context,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The directory git runs hooks from for the work tree at `root`, as git itself resolves it:
/// `core.hooksPath` (relative to the work tree top when relative), else the common git
/// directory's `hooks` (shared by all worktrees).
pub fn hooks_dir(root: &Path) -> Result<PathBuf, HookError> {
    let err = |reason: String| HookError::HooksDir {
        root: root.to_path_buf(),
        reason,
    };
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--git-path", "hooks"])
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| err(format!("running git: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "`git rev-parse --git-path hooks` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8(out.stdout)
        .map_err(|_| err("git printed a path that is not UTF-8".into()))?;
    let rel = text.trim_end_matches(['\n', '\r']);
    if rel.is_empty() {
        return Err(err("git printed an empty path".into()));
    }
    Ok(normalize(&root.join(rel)))
}

/// Resolve `.` and `..` components without touching the file system (the directory may not
/// exist yet).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;
    use std::path::Path;

    #[test]
    fn normalize_resolves_dots() {
        assert_eq!(
            normalize(Path::new("/a/wt/../r/./.git/hooks")),
            Path::new("/a/r/.git/hooks")
        );
        assert_eq!(
            normalize(Path::new("/a/.githooks")),
            Path::new("/a/.githooks")
        );
    }
}
