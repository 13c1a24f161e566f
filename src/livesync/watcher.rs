//! File-system events in, debounced batches out.
//!
//! Events are collected until the tree has been quiet for a few milliseconds (or a maximum delay
//! has passed), so an editor's save-via-rename or a `git checkout` of thousands of files becomes
//! one batch, not thousands. Changes inside `.git` are reduced to what matters: HEAD or refs
//! moved (→ bundle sync), the index changed (→ reload the tracked set).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::{Event, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// One debounced batch of changes.
#[derive(Debug, Default)]
pub struct Batch {
    /// Changed work-tree paths, relative, `/`-separated.
    pub paths: BTreeSet<String>,
    /// HEAD or a ref moved (commit, checkout, rebase, reset).
    pub git_moved: bool,
    /// `.git/index` changed.
    pub index_changed: bool,
    /// A `.gitignore` or `.git/info/exclude` changed.
    pub ignores_changed: bool,
    /// Events were lost (queue overflow): rescan everything.
    pub rescan: bool,
    /// A git command was writing (a `.lock` file appeared): wait for it before acting.
    pub git_busy: bool,
    /// When the first event of the batch arrived.
    pub first_event: Option<Instant>,
}

impl Batch {
    /// True when nothing in it needs work.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
            && !self.git_moved
            && !self.index_changed
            && !self.ignores_changed
            && !self.rescan
    }

    fn add(&mut self, root: &Path, ev: notify::Result<Event>) {
        let ev = match ev {
            Ok(ev) => ev,
            Err(_) => {
                self.rescan = true;
                return;
            }
        };
        if ev.need_rescan() {
            self.rescan = true;
        }
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return;
        }
        for p in ev.paths {
            let Ok(rel) = p.strip_prefix(root) else {
                continue;
            };
            let Some(rel) = rel.to_str() else { continue };
            if rel.is_empty() {
                continue;
            }
            self.add_rel(rel);
        }
    }

    fn add_rel(&mut self, rel: &str) {
        if let Some(git) = rel.strip_prefix(".git/") {
            if git.ends_with(".lock") {
                self.git_busy = true;
                return;
            }
            if git == "HEAD"
                || git == "packed-refs"
                || git.starts_with("refs/heads/")
                || git == "ORIG_HEAD"
            {
                self.git_moved = true;
            } else if git == "index" {
                self.index_changed = true;
            } else if git == "info/exclude" {
                self.ignores_changed = true;
            }
            return;
        }
        if rel == ".git" {
            return;
        }
        if rel == ".gitignore" || rel.ends_with("/.gitignore") {
            self.ignores_changed = true;
        }
        self.paths.insert(rel.to_string());
    }
}

/// Watches a work tree recursively (inotify, FSEvents; polling if watches run out).
pub struct Watcher {
    root: PathBuf,
    /// Events with the time they arrived.
    rx: mpsc::UnboundedReceiver<(Instant, notify::Result<Event>)>,
    quiet: Duration,
    max_delay: Duration,
    _inner: Box<dyn notify::Watcher + Send>,
    /// True when the OS watcher could not be used and polling is in effect.
    pub polling: bool,
}

impl Watcher {
    /// Watch `root`; batches close after `quiet` without events, or `max_delay` at most.
    pub fn new(
        root: &Path,
        quiet: Duration,
        max_delay: Duration,
    ) -> Result<Watcher, notify::Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let handler = move |ev: notify::Result<Event>| {
            let _ = tx.send((Instant::now(), ev));
        };
        let mut polling = false;
        let inner: Box<dyn notify::Watcher + Send> =
            match notify::recommended_watcher(handler.clone()) {
                Ok(mut w) => match w.watch(root, RecursiveMode::Recursive) {
                    Ok(()) => Box::new(w),
                    Err(e) if is_out_of_watches(&e) => {
                        polling = true;
                        poll_watcher(root, handler)?
                    }
                    Err(e) => return Err(e),
                },
                Err(e) if is_out_of_watches(&e) => {
                    polling = true;
                    poll_watcher(root, handler)?
                }
                Err(e) => return Err(e),
            };
        Ok(Watcher {
            root: root.to_path_buf(),
            rx,
            quiet,
            max_delay,
            _inner: inner,
            polling,
        })
    }

    /// The next non-empty batch; `None` when the watcher stopped.
    pub async fn next(&mut self) -> Option<Batch> {
        loop {
            let (arrived, first) = self.rx.recv().await?;
            let mut batch = Batch {
                first_event: Some(arrived),
                ..Batch::default()
            };
            batch.add(&self.root, first);
            // The delay counts from the first event's arrival: events that queued up while the
            // previous batch was applied go out at once, so batches grow with the backlog
            // instead of waiting out the delay again.
            let deadline = arrived + self.max_delay;
            loop {
                while let Ok((_, ev)) = self.rx.try_recv() {
                    batch.add(&self.root, ev);
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let wait = self.quiet.min(deadline - now);
                match tokio::time::timeout(wait, self.rx.recv()).await {
                    Ok(Some((_, ev))) => batch.add(&self.root, ev),
                    Ok(None) => break,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                return Some(batch);
            }
        }
    }

    /// Wait until no git command holds the index lock (a checkout rewrites files before it moves
    /// HEAD), then add every event that arrived meanwhile to `batch`.
    pub async fn settle_git(&mut self, batch: &mut Batch) {
        let lock = self.root.join(".git/index.lock");
        let give_up = Instant::now() + Duration::from_secs(30);
        loop {
            while let Ok((_, ev)) = self.rx.try_recv() {
                batch.add(&self.root, ev);
            }
            if !lock.exists() || Instant::now() > give_up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Let the last events of the git command arrive.
        while let Ok(Some((_, ev))) = tokio::time::timeout(self.quiet * 2, self.rx.recv()).await {
            batch.add(&self.root, ev);
        }
    }

    /// Keep adding events to `batch` until the tree is quiet for `quiet` (at most `max`): used
    /// before acting on deletions, so one `rm -rf` is judged as a whole.
    pub async fn extend(&mut self, batch: &mut Batch, quiet: Duration, max: Duration) {
        let deadline = Instant::now() + max;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match tokio::time::timeout(quiet.min(deadline - now), self.rx.recv()).await {
                Ok(Some((_, ev))) => batch.add(&self.root, ev),
                _ => break,
            }
        }
    }

    /// Throw away queued events (after a full bundle sync covered them).
    pub fn drain(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }
}

fn is_out_of_watches(e: &notify::Error) -> bool {
    matches!(e.kind, notify::ErrorKind::MaxFilesWatch)
        || matches!(&e.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::ENOSPC))
}

fn poll_watcher(
    root: &Path,
    handler: impl notify::EventHandler,
) -> Result<Box<dyn notify::Watcher + Send>, notify::Error> {
    let cfg = notify::Config::default().with_poll_interval(Duration::from_millis(500));
    let mut w = notify::PollWatcher::new(handler, cfg)?;
    w.watch(root, RecursiveMode::Recursive)?;
    Ok(Box::new(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_internals_are_reduced_to_what_matters() {
        let mut b = Batch::default();
        for rel in [
            ".git/objects/ab/cdef",
            ".git/index.lock",
            ".git/refs/heads/main.lock",
            "src/a.rs",
        ] {
            b.add_rel(rel);
        }
        assert!(!b.git_moved && !b.index_changed);
        assert_eq!(b.paths.iter().collect::<Vec<_>>(), ["src/a.rs"]);
        b.add_rel(".git/index");
        b.add_rel(".git/refs/heads/main");
        b.add_rel("sub/.gitignore");
        assert!(b.index_changed && b.git_moved && b.ignores_changed);
        assert!(b.paths.contains("sub/.gitignore"));
    }
}
