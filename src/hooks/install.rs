//! Installing and removing rclaude's hooks in a hooks directory, keeping any other hook.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::HookError;
use super::script::{ORIG_SUFFIX, is_ours, script};

/// What happened to one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Written where there was no hook.
    Installed,
    /// Written after moving the existing hook aside; that hook runs first.
    Chained,
    /// rclaude's hook was there already, but different (e.g. another rclaude binary): rewritten.
    Updated,
    /// rclaude's hook was there already, byte for byte.
    Unchanged,
    /// rclaude's hook removed; nothing was there before it.
    Removed,
    /// rclaude's hook removed (or already gone) and the earlier hook put back.
    Restored,
    /// The earlier hook was left at `<hook>.rclaude-orig`: something else now sits at `<hook>`.
    OrigLeft,
}

/// One hook's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub hook: String,
    pub action: Action,
    /// Whether an earlier hook runs before rclaude's (after an install).
    pub chained: bool,
}

/// Install rclaude's script for each of `hooks` in `dir` (created if missing), calling the
/// binary at `exe`, then remove rclaude's hooks not in `hooks`. Idempotent.
///
/// A hook that is not rclaude's is moved to `<hook>.rclaude-orig`; if that name is taken the
/// hook is refused with [`HookError::Conflict`] before anything in `dir` changes.
pub fn install(dir: &Path, hooks: &[&str], exe: &Path) -> Result<Vec<Change>, HookError> {
    // Refuse conflicts up front so a failed install changes nothing.
    for hook in hooks {
        let (path, orig) = paths(dir, hook);
        if exists(&path)? && !is_ours_file(&path) && exists(&orig)? {
            return Err(HookError::Conflict { hook: path, orig });
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| HookError::io("creating", dir, e))?;
    let mut changes = Vec::new();
    for hook in hooks {
        let (path, orig) = paths(dir, hook);
        let wanted = script(hook, exe);
        let action = if !exists(&path)? {
            write_script(&path, &wanted)?;
            Action::Installed
        } else if is_ours_file(&path) {
            let current = std::fs::read(&path).map_err(|e| HookError::io("reading", &path, e))?;
            let mode = mode_of(&path)?;
            if current == wanted.as_bytes() && mode & 0o111 != 0 {
                Action::Unchanged
            } else {
                write_script(&path, &wanted)?;
                Action::Updated
            }
        } else {
            std::fs::rename(&path, &orig).map_err(|e| HookError::io("moving aside", &path, e))?;
            write_script(&path, &wanted)?;
            Action::Chained
        };
        let chained = exists(&orig)?;
        changes.push(Change {
            hook: hook.to_string(),
            action,
            chained,
        });
    }
    changes.extend(uninstall(dir, hooks)?);
    Ok(changes)
}

/// Remove rclaude's hooks from `dir`, except those named in `keep`, putting back the hooks that
/// were there before (byte for byte, with their mode). Hooks that are not rclaude's stay.
pub fn uninstall(dir: &Path, keep: &[&str]) -> Result<Vec<Change>, HookError> {
    let mut changes = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(changes),
        Err(e) => return Err(HookError::io("listing", dir, e)),
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| HookError::io("listing", dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            let hook = name.strip_suffix(ORIG_SUFFIX).unwrap_or(name);
            if !hook.is_empty() && !hook.starts_with('.') && !names.iter().any(|n| n == hook) {
                names.push(hook.to_string());
            }
        }
    }
    names.sort();
    for hook in names {
        if keep.contains(&hook.as_str()) {
            continue;
        }
        let (path, orig) = paths(dir, &hook);
        let ours = exists(&path)? && is_ours_file(&path);
        if ours {
            std::fs::remove_file(&path).map_err(|e| HookError::io("removing", &path, e))?;
        }
        let action = if !exists(&orig)? {
            if !ours {
                continue;
            }
            Action::Removed
        } else if exists(&path)? {
            Action::OrigLeft
        } else {
            std::fs::rename(&orig, &path).map_err(|e| HookError::io("restoring", &orig, e))?;
            Action::Restored
        };
        changes.push(Change {
            hook,
            action,
            chained: false,
        });
    }
    Ok(changes)
}

/// What is installed in a hooks directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Each wanted hook, and whether rclaude's current script for it is in place.
    pub configured: Vec<(String, bool)>,
    /// rclaude's hooks that are installed but no longer wanted.
    pub stale: Vec<String>,
}

/// Which of `hooks` are installed and current, and rclaude's hooks in `dir` not in `hooks`.
pub fn status(dir: &Path, hooks: &[&str], exe: &Path) -> Result<Status, HookError> {
    let mut configured = Vec::new();
    for hook in hooks {
        let (path, _) = paths(dir, hook);
        let current = std::fs::read(&path).ok();
        configured.push((
            hook.to_string(),
            current.as_deref() == Some(script(hook, exe).as_bytes()),
        ));
    }
    let mut stale = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !hooks.contains(&name.as_str()) && is_ours_file(&entry.path()) {
                stale.push(name);
            }
        }
    }
    stale.sort();
    Ok(Status { configured, stale })
}

fn paths(dir: &Path, hook: &str) -> (PathBuf, PathBuf) {
    (dir.join(hook), dir.join(format!("{hook}{ORIG_SUFFIX}")))
}

/// True when something (a file, a directory, a symlink, even dangling) is at `path`.
fn exists(path: &Path) -> Result<bool, HookError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(HookError::io("inspecting", path, e)),
    }
}

fn is_ours_file(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    // rclaude writes plain files; a symlink is someone else's, even if it points at ours.
    meta.is_file() && std::fs::read(path).is_ok_and(|b| is_ours(&b))
}

fn mode_of(path: &Path) -> Result<u32, HookError> {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .map_err(|e| HookError::io("inspecting", path, e))
}

/// Write an executable script atomically (temp file in the same directory, then rename).
fn write_script(path: &Path, contents: &str) -> Result<(), HookError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".rclaude-hook")
        .tempfile_in(dir)
        .map_err(|e| HookError::io("writing in", dir, e))?;
    tmp.write_all(contents.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .and_then(|_| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o755))
        })
        .map_err(|e| HookError::io("writing", path, e))?;
    tmp.persist(path)
        .map_err(|e| HookError::io("writing", path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write_mode(path: &Path, contents: &[u8], mode: u32) {
        std::fs::write(path, contents).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn install_keeps_foreign_hooks_and_uninstall_restores_them_exactly() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("hooks");
        std::fs::create_dir(&dir).unwrap();
        let exe = Path::new("/usr/local/bin/rclaude");
        write_mode(&dir.join("pre-push"), b"#!/bin/sh\nexit 0\n", 0o750);
        write_mode(&dir.join("pre-commit"), b"#!/bin/sh\necho mine\n", 0o755);

        let c = install(&dir, &["pre-push", "commit-msg"], exe).unwrap();
        assert_eq!(c[0].action, Action::Chained);
        assert!(c[0].chained);
        assert_eq!(c[1].action, Action::Installed);
        assert!(!c[1].chained);
        assert_eq!(c.len(), 2);
        assert_eq!(
            std::fs::read(dir.join("pre-push.rclaude-orig")).unwrap(),
            b"#!/bin/sh\nexit 0\n"
        );
        assert_eq!(
            std::fs::read(dir.join("pre-commit")).unwrap(),
            b"#!/bin/sh\necho mine\n"
        );

        // Idempotent.
        let c = install(&dir, &["pre-push", "commit-msg"], exe).unwrap();
        assert!(c.iter().all(|c| c.action == Action::Unchanged), "{c:?}");
        // Dropping a hook from the config removes it on the next install.
        let c = install(&dir, &["pre-push"], exe).unwrap();
        assert_eq!(c[1].hook, "commit-msg");
        assert_eq!(c[1].action, Action::Removed);
        assert!(!dir.join("commit-msg").exists());

        let c = uninstall(&dir, &[]).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].action, Action::Restored);
        let p = dir.join("pre-push");
        assert_eq!(std::fs::read(&p).unwrap(), b"#!/bin/sh\nexit 0\n");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o750
        );
        assert!(!dir.join("pre-push.rclaude-orig").exists());
        assert_eq!(uninstall(&dir, &[]).unwrap(), vec![]);
    }

    #[test]
    fn install_refuses_to_lose_a_kept_original_and_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let exe = Path::new("/bin/rclaude");
        write_mode(
            &dir.join("pre-push"),
            b"#!/bin/sh\necho other tool\n",
            0o755,
        );
        write_mode(
            &dir.join("pre-push.rclaude-orig"),
            b"#!/bin/sh\necho first\n",
            0o755,
        );
        let e = install(dir, &["commit-msg", "pre-push"], exe).unwrap_err();
        assert!(matches!(e, HookError::Conflict { .. }), "{e}");
        assert!(!dir.join("commit-msg").exists());
        // Uninstall leaves both in place and says so.
        let c = uninstall(dir, &[]).unwrap();
        assert_eq!(c[0].action, Action::OrigLeft);
        assert!(dir.join("pre-push.rclaude-orig").exists());
    }

    #[test]
    fn a_new_binary_path_updates_the_script_and_a_missing_dir_is_created() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("custom/hooks");
        let c = install(&dir, &["pre-push"], Path::new("/a/rclaude")).unwrap();
        assert_eq!(c[0].action, Action::Installed);
        let c = install(&dir, &["pre-push"], Path::new("/b/rclaude")).unwrap();
        assert_eq!(c[0].action, Action::Updated);
        let s = status(&dir, &["pre-push"], Path::new("/b/rclaude")).unwrap();
        assert_eq!(s.configured, vec![("pre-push".to_string(), true)]);
        assert!(s.stale.is_empty());
        let s = status(&dir, &[], Path::new("/b/rclaude")).unwrap();
        assert_eq!(s.stale, vec!["pre-push".to_string()]);
    }
}
