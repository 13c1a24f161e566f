//! Has anything in a sandbox's work tree changed since a given moment? Answered without walking
//! the tree: each tree asked about gets an inotify watch on every directory, and a generation
//! that grows with every change seen. A *token* names a tree's state (`<watcher id>.<generation>`):
//! two equal tokens mean nothing in the tree changed between the two questions. A checkpoint
//! taken with a token need not be taken again while the token stays the same.
//!
//! Why it can be trusted:
//! - The kernel queues an event in the same system call that makes the change, and a question
//!   first reads every queued event: a change finished before the question is always counted.
//! - A new directory is watched (and walked, for anything made in it before its watch existed)
//!   before the generation moves past its creation, so an answer given after that moment covers
//!   everything made in it later.
//! - When events were lost (the kernel's queue overflowed), a watch could not be added (the
//!   per-user limit), or the tree itself went away, the watcher is dropped: no token until a new
//!   one has watched the whole tree again, and the new one has a new id.
//!
//! What exporting writes under `.git` (objects, rclaude's scratch files and lock, the exported
//! ref) is not watched: taking a checkpoint must not count as a change. Everything else counts:
//! ignored files (a change to `.gitignore` changes what a checkpoint holds), and what a sync
//! records in the sandbox (a push from another machine changes what the next push must do).

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

/// What exporting a checkpoint or a pull writes in a tree (objects, its scratch files and
/// lock, the ref it exports), and nothing that says what the tree holds or what a sync last
/// installed there (`.git/rclaude/synced`, `identity`, `refs/rclaude/snapshot`, ... are watched).
const NOT_WORK: &[&str] = &[
    ".git/objects",
    ".git/rclaude/export",
    ".git/rclaude/tmp",
    ".git/rclaude/lock",
    ".git/refs/rclaude/pull",
    ".git/logs/refs/rclaude/pull",
];

/// Changed paths remembered between two exports at most; past that, the next export looks at the
/// whole tree.
const DIRTY_LIMIT: usize = 4096;

/// How often a watcher's queue is read when nobody asks (keeps the kernel's queue from
/// overflowing during bursts of changes, such as a build).
const DRAIN_EVERY: Duration = Duration::from_millis(500);

/// After a tree could not be watched (typically more directories than the per-user inotify
/// limit allows), how long to answer "cannot tell" before trying again: a failed attempt walks
/// the whole tree, which must not happen on every question.
const RETRY_AFTER: Duration = Duration::from_secs(600);

/// The change generations of the trees asked about so far.
#[derive(Default)]
pub(crate) struct Changes {
    trees: Mutex<HashMap<PathBuf, Arc<Tree>>>,
    /// Trees that could not be watched, and when that was found.
    failed: Mutex<HashMap<PathBuf, std::time::Instant>>,
}

impl Changes {
    /// A token for the state of the tree at `dir` (a resolved host path) now, watching it first
    /// when this is the first question about it. `None`: no trustworthy answer (the tree is
    /// missing or cannot be watched); the caller must look at the tree itself. Blocking.
    pub fn token(&self, dir: &Path) -> Option<String> {
        self.tree(dir)?.token()
    }

    /// The paths changed under `dir` since the last call (relative to `dir`, as named in the
    /// events: a new or removed directory is one path), with the tokens the change set runs
    /// between; the next call starts where this one ends. `None` as [`Changes::token`]. Blocking.
    pub fn take_changed(&self, dir: &Path) -> Option<ChangedPaths> {
        self.tree(dir)?.take_changed()
    }

    /// The watcher of `dir`, started on the first question.
    fn tree(&self, dir: &Path) -> Option<Arc<Tree>> {
        let mut trees = self.trees.lock().unwrap();
        if let Some(t) = trees.get(dir)
            && !t.state.lock().unwrap().broken
        {
            return Some(t.clone());
        }
        trees.remove(dir);
        let mut failed = self.failed.lock().unwrap();
        if failed.get(dir).is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return None;
        }
        match Tree::watch(dir) {
            Ok(t) => {
                failed.remove(dir);
                trees.insert(dir.to_path_buf(), t.clone());
                Some(t)
            }
            Err(e) => {
                tracing::info!(
                    dir = %dir.display(),
                    "cannot watch the work tree for changes ({e}); syncs and checkpoints look at the tree instead"
                );
                if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EMFILE)) {
                    failed.insert(dir.to_path_buf(), std::time::Instant::now());
                }
                None
            }
        }
    }
}

/// What changed in a tree between two tokens ([`Changes::take_changed`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangedPaths {
    /// The token at the previous take (the watcher's start for the first).
    pub since: String,
    /// The token now.
    pub now: String,
    /// Paths relative to the tree; `None` when there were too many to keep.
    pub paths: Option<Vec<PathBuf>>,
}

/// One watched tree.
struct Tree {
    id: String,
    state: Mutex<State>,
}

struct State {
    root: PathBuf,
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    generation: u64,
    broken: bool,
    /// Generation at the last [`Changes::take_changed`], and the paths changed since.
    mark: u64,
    dirty: Option<BTreeSet<PathBuf>>,
}

impl Tree {
    fn watch(root: &Path) -> io::Result<Arc<Tree>> {
        if !std::fs::symlink_metadata(root)?.is_dir() {
            return Err(io::Error::other("not a directory"));
        }
        let mut state = State {
            root: root.to_path_buf(),
            inotify: Inotify::init()?,
            dirs: HashMap::new(),
            generation: 0,
            broken: false,
            mark: 0,
            dirty: Some(BTreeSet::new()),
        };
        state.add_tree(root)?;
        let tree = Arc::new(Tree {
            id: uuid::Uuid::new_v4().simple().to_string(),
            state: Mutex::new(state),
        });
        let weak = Arc::downgrade(&tree);
        std::thread::Builder::new()
            .name("rclaude-changes".into())
            .spawn(move || drain_in_background(weak))?;
        Ok(tree)
    }

    fn token(&self) -> Option<String> {
        let mut s = self.state.lock().unwrap();
        s.drain();
        (!s.broken).then(|| format!("{}.{}", self.id, s.generation))
    }

    fn take_changed(&self) -> Option<ChangedPaths> {
        let mut s = self.state.lock().unwrap();
        s.drain();
        if s.broken {
            return None;
        }
        let taken = ChangedPaths {
            since: format!("{}.{}", self.id, s.mark),
            now: format!("{}.{}", self.id, s.generation),
            paths: s
                .dirty
                .replace(BTreeSet::new())
                .map(|d| d.into_iter().collect()),
        };
        s.mark = s.generation;
        Some(taken)
    }
}

/// Read the watcher's queue whenever it has events, until the tree is dropped or broken.
fn drain_in_background(tree: Weak<Tree>) {
    loop {
        let Some(t) = tree.upgrade() else { return };
        let fd = {
            let s = t.state.lock().unwrap();
            if s.broken {
                return;
            }
            s.inotify.as_raw_fd()
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `t` keeps the descriptor open for the whole call.
        let n = unsafe { libc::poll(&mut pfd, 1, DRAIN_EVERY.as_millis() as i32) };
        if n > 0 {
            t.state.lock().unwrap().drain();
            // Let changes gather rather than waking for each one.
            drop(t);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl State {
    fn not_work(&self, path: &Path) -> bool {
        path.strip_prefix(&self.root)
            .is_ok_and(|rel| NOT_WORK.iter().any(|p| rel.starts_with(p)))
    }

    fn note_dirty(&mut self, path: &Path) {
        let Some(dirty) = &mut self.dirty else { return };
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return;
        };
        dirty.insert(rel.to_path_buf());
        if dirty.len() > DIRTY_LIMIT {
            self.dirty = None;
        }
    }

    /// Watch `dir` and every directory under it (not following symlinks). Each directory is
    /// watched before it is read, so nothing made in it is missed by both.
    fn add_tree(&mut self, dir: &Path) -> io::Result<()> {
        let mask = WatchMask::MODIFY
            | WatchMask::CLOSE_WRITE
            | WatchMask::ATTRIB
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::DONT_FOLLOW
            | WatchMask::ONLYDIR
            | WatchMask::EXCL_UNLINK;
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            if self.not_work(&d) {
                continue;
            }
            let wd = match self.inotify.watches().add(&d, mask) {
                Ok(wd) => wd,
                // Gone or replaced by a file since it was listed: its parent's events say so.
                Err(e)
                    if d != self.root
                        && matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.dirs.insert(wd, d.clone());
            let entries = match std::fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound && d != self.root => continue,
                Err(e) => return Err(e),
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(e.path());
                }
            }
        }
        Ok(())
    }

    /// Read every queued event; move the generation when any was a change to work.
    fn drain(&mut self) {
        if self.broken {
            return;
        }
        let mut buf = [0u8; 16 * 1024];
        let mut changed = false;
        let mut new_dirs = Vec::new();
        loop {
            let events = match self.inotify.read_events(&mut buf) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!("reading the tree's changes: {e}");
                    self.broken = true;
                    return;
                }
            };
            for ev in events {
                if ev.mask.contains(EventMask::Q_OVERFLOW) {
                    tracing::debug!(root = %self.root.display(), "change events were lost");
                    self.broken = true;
                    return;
                }
                let Some(dir) = self.dirs.get(&ev.wd).cloned() else {
                    continue;
                };
                if ev.mask.contains(EventMask::IGNORED) {
                    self.dirs.remove(&ev.wd);
                }
                let root_gone = dir == self.root
                    && ev.mask.intersects(
                        EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF,
                    );
                if root_gone {
                    self.broken = true;
                    return;
                }
                let path = match ev.name {
                    Some(name) => dir.join(name as &OsStr),
                    None => dir,
                };
                if self.not_work(&path) {
                    continue;
                }
                if ev.mask.contains(EventMask::IGNORED) && ev.name.is_none() {
                    // The end of a deleted directory's watch; its deletion was counted.
                    continue;
                }
                changed = true;
                if ev.name.is_some() {
                    self.note_dirty(&path);
                }
                if ev.mask.contains(EventMask::ISDIR)
                    && ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
                {
                    new_dirs.push(path);
                }
            }
        }
        for d in new_dirs {
            if let Err(e) = self.add_tree(&d) {
                tracing::debug!(dir = %d.display(), "cannot watch a new directory: {e}");
                self.broken = true;
                return;
            }
        }
        if changed {
            self.generation += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, Changes) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("src/deep")).unwrap();
        std::fs::create_dir_all(d.path().join(".git/objects/ab")).unwrap();
        std::fs::create_dir_all(d.path().join(".git/refs/rclaude/pull")).unwrap();
        std::fs::create_dir_all(d.path().join(".git/refs/heads")).unwrap();
        std::fs::create_dir_all(d.path().join(".git/rclaude")).unwrap();
        std::fs::write(d.path().join("src/deep/a.txt"), "a").unwrap();
        (d, Changes::default())
    }

    #[test]
    fn a_change_made_just_before_the_question_moves_the_token() {
        let (d, c) = tree();
        let t0 = c.token(d.path()).unwrap();
        assert_eq!(c.token(d.path()).unwrap(), t0, "nothing changed");
        // No pause between the change and the question: the event is read before answering.
        std::fs::write(d.path().join("src/deep/a.txt"), "b").unwrap();
        let t1 = c.token(d.path()).unwrap();
        assert_ne!(t1, t0);
        std::fs::remove_file(d.path().join("src/deep/a.txt")).unwrap();
        let t2 = c.token(d.path()).unwrap();
        assert_ne!(t2, t1);
        // A commit (a branch ref moving) is a change too.
        std::fs::write(d.path().join(".git/refs/heads/main"), "x").unwrap();
        assert_ne!(c.token(d.path()).unwrap(), t2);
    }

    #[test]
    fn what_an_export_writes_is_not_a_change_but_what_a_sync_records_is() {
        let (d, c) = tree();
        let t0 = c.token(d.path()).unwrap();
        std::fs::write(d.path().join(".git/objects/ab/cdef"), "obj").unwrap();
        std::fs::create_dir_all(d.path().join(".git/objects/pack")).unwrap();
        std::fs::write(d.path().join(".git/refs/rclaude/pull/tip"), "x").unwrap();
        std::fs::create_dir_all(d.path().join(".git/rclaude/tmp/run.1")).unwrap();
        std::fs::write(d.path().join(".git/rclaude/tmp/run.1/index"), "i").unwrap();
        std::fs::write(d.path().join(".git/rclaude/lock"), "").unwrap();
        assert_eq!(c.token(d.path()).unwrap(), t0);
        std::fs::write(d.path().join(".git/rclaude/synced"), "snapshot=x").unwrap();
        let t1 = c.token(d.path()).unwrap();
        assert_ne!(t1, t0);
        std::fs::write(d.path().join(".git/refs/rclaude/snapshot"), "y").unwrap();
        assert_ne!(c.token(d.path()).unwrap(), t1);
    }

    #[test]
    fn files_made_in_a_new_directory_are_seen_at_any_depth() {
        let (d, c) = tree();
        let t0 = c.token(d.path()).unwrap();
        // A whole tree made at once (as by `mkdir -p` + writes, or a move into place).
        std::fs::create_dir_all(d.path().join("new/a/b")).unwrap();
        std::fs::write(d.path().join("new/a/b/f"), "1").unwrap();
        let t1 = c.token(d.path()).unwrap();
        assert_ne!(t1, t0);
        // Watches exist for the new directories now: a later change deep inside counts.
        std::fs::write(d.path().join("new/a/b/f"), "2").unwrap();
        let t2 = c.token(d.path()).unwrap();
        assert_ne!(t2, t1);
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("m/n")).unwrap();
        std::fs::rename(outside.path().join("m"), d.path().join("moved")).unwrap();
        let t3 = c.token(d.path()).unwrap();
        assert_ne!(t3, t2);
        std::fs::write(d.path().join("moved/n/g"), "3").unwrap();
        assert_ne!(c.token(d.path()).unwrap(), t3);
    }

    #[test]
    fn a_tree_that_goes_away_gives_no_token_and_a_new_one_a_new_id() {
        let (d, c) = tree();
        let t0 = c.token(d.path()).unwrap();
        let root = d.path().to_path_buf();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(c.token(&root), None);
        std::fs::create_dir_all(&root).unwrap();
        let t1 = c.token(&root).unwrap();
        assert_ne!(t1.split('.').next(), t0.split('.').next());
    }

    #[test]
    fn the_changed_paths_are_handed_over_once_and_chain_by_token() {
        let (d, c) = tree();
        let first = c.take_changed(d.path()).unwrap();
        assert_eq!(first.paths, Some(vec![]));
        std::fs::write(d.path().join("src/deep/a.txt"), "b").unwrap();
        std::fs::create_dir_all(d.path().join("new/x")).unwrap();
        std::fs::write(d.path().join("new/x/f"), "1").unwrap();
        std::fs::write(d.path().join(".git/objects/ab/cd"), "not work").unwrap();
        let second = c.take_changed(d.path()).unwrap();
        assert_eq!(
            second.since, first.now,
            "each change set starts where the last ended"
        );
        assert_ne!(second.now, second.since);
        let paths = second.paths.unwrap();
        assert!(
            paths.contains(&PathBuf::from("src/deep/a.txt")),
            "{paths:?}"
        );
        assert!(paths.contains(&PathBuf::from("new")), "{paths:?}");
        assert!(
            !paths.iter().any(|p| p.starts_with(".git/objects")),
            "{paths:?}"
        );
        let third = c.take_changed(d.path()).unwrap();
        assert_eq!(
            (third.since, third.paths),
            (second.now.clone(), Some(vec![]))
        );
        assert_eq!(c.token(d.path()).unwrap(), second.now);
        // Too many to remember: the next change set says so.
        for i in 0..=DIRTY_LIMIT {
            std::fs::write(d.path().join(format!("src/f{i}")), "x").unwrap();
        }
        // (On a loaded machine the kernel's queue may overflow first: no change set at all.)
        let over = c.take_changed(d.path());
        assert!(over.is_none_or(|o| o.paths.is_none()));
        assert_eq!(c.take_changed(d.path()).unwrap().paths, Some(vec![]));
    }
}
