//! The local side: what a path is now, and a manifest of the synced tree for periodic rescans.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::filter::PathFilter;

/// What a path is on this machine right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalState {
    File {
        exec: bool,
    },
    /// A symlink whose target stays inside the work tree (as written in the link).
    Symlink {
        target: String,
    },
    Dir,
    Missing,
}

/// Look at `rel` under `root` without following a final symlink.
pub fn state_of(root: &Path, rel: &str) -> LocalState {
    let path = root.join(rel);
    match std::fs::symlink_metadata(&path) {
        Err(_) => LocalState::Missing,
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(&path)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            // Synced as a link wherever it points, as bundle sync does: a link is data, and the
            // sandbox resolves it inside its own file system.
            LocalState::Symlink { target }
        }
        Ok(m) if m.is_dir() => LocalState::Dir,
        Ok(m) if m.is_file() => LocalState::File {
            exec: m.permissions().mode() & 0o111 != 0,
        },
        Ok(_) => LocalState::Missing, // sockets, fifos: not synced
    }
}

/// Size, mtime (s, ns) and mode of a file: what changes when its content or mode changes.
pub type Stamp = (u64, i64, i64, u32);

/// The stamp of `path` now when it is a regular file (not following a final symlink).
pub fn file_stamp(path: &Path) -> Option<Stamp> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| stamp(&m))
}

/// Size, mtime and mode of every synced file, to find changes the watcher missed.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    entries: BTreeMap<String, Stamp>,
}

impl Manifest {
    /// Walk the synced tree.
    pub fn scan(root: &Path, filter: &PathFilter) -> Manifest {
        let mut entries = BTreeMap::new();
        walk(root, "", filter, &mut |rel, m| {
            entries.insert(rel.to_string(), stamp(m));
        });
        Manifest { entries }
    }

    /// Paths that differ between two scans (added, removed or changed).
    pub fn diff(&self, newer: &Manifest) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (k, v) in &newer.entries {
            if self.entries.get(k) != Some(v) {
                out.insert(k.clone());
            }
        }
        for k in self.entries.keys() {
            if !newer.entries.contains_key(k) {
                out.insert(k.clone());
            }
        }
        out
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no file is synced.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The recorded stamp of `rel`.
    pub fn get(&self, rel: &str) -> Option<&Stamp> {
        self.entries.get(rel)
    }

    /// Record `rel` as synced with this stamp (taken before its bytes were read).
    pub fn set(&mut self, rel: &str, stamp: Stamp) {
        self.entries.insert(rel.to_string(), stamp);
    }

    /// Record the current state of `rel` (after syncing it).
    pub fn refresh(&mut self, root: &Path, rel: &str) {
        match std::fs::symlink_metadata(root.join(rel)) {
            Ok(m) if !m.is_dir() => {
                self.entries.insert(rel.to_string(), stamp(&m));
            }
            _ => {
                self.entries.remove(rel);
            }
        }
    }
}

fn stamp(m: &std::fs::Metadata) -> Stamp {
    (m.len(), m.mtime(), m.mtime_nsec(), m.mode())
}

/// Visit every synced non-directory entry under `dir` (relative `rel`), pruning ignored dirs.
pub fn walk(
    root: &Path,
    rel: &str,
    filter: &PathFilter,
    f: &mut dyn FnMut(&str, &std::fs::Metadata),
) {
    let Ok(rd) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    for entry in rd.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let child = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            if filter.is_synced(&child, true) {
                walk(root, &child, filter, f);
            }
        } else if filter.is_synced(&child, false) {
            f(&child, &meta);
        }
    }
}
