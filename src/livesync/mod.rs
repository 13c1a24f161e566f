//! Live sync: after a bundle push made the sandbox exact, mirror local edits into it as they
//! happen (`rclaude watch`, `rclaude up --watch`).
//!
//! * [`watcher`] turns file-system events into debounced batches.
//! * [`filter`] decides what is synced (git's ignore rules plus `[sync] ignore`; never `.git`).
//! * [`apply`] plans and performs the sandbox operations, keeping sandbox edits as conflict copies.
//! * [`local`] reads local state and keeps a manifest for periodic rescans (lost events).

pub mod apply;
pub mod filter;
pub mod local;
pub mod watcher;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use apply::{BatchOutcome, Op, RemoteState};
use filter::PathFilter;
use local::Manifest;

use crate::provider::{FileUpload, Sandbox, SandboxError};

/// Errors of the live-sync engine.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("reading the local repository: {0}")]
    Git(#[from] git2::Error),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(
        "this change would delete {deletes} of the {total} files synced to the sandbox ({percent}%, above the {limit}% safety limit)"
    )]
    MassDelete {
        deletes: usize,
        total: usize,
        percent: usize,
        limit: u8,
    },
}

/// Safety limits from `[sync]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_delete_percent: u8,
    pub max_delete_min_files: u32,
}

/// The state of one live-sync session between two bundle syncs.
pub struct LiveSync {
    root: PathBuf,
    workdir: String,
    extra_ignores: Vec<String>,
    filter: PathFilter,
    remote: RemoteState,
    manifest: Manifest,
    limits: Limits,
    /// Recent deletions, so that one `rm -rf` split over several batches still counts as one.
    recent_deletes: std::collections::VecDeque<(std::time::Instant, usize)>,
}

/// Deletions within this window count together for the safety limit.
const DELETE_WINDOW: std::time::Duration = std::time::Duration::from_secs(3);

/// Operations planned for one batch.
pub struct Planned {
    pub ops: Vec<Op>,
}

impl Planned {
    /// Number of deletions in the plan.
    pub fn deletes(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o, Op::Delete { .. }))
            .count()
    }
}

impl LiveSync {
    /// Start after a bundle push whose work-tree snapshot is `snapshot`: the sandbox holds exactly
    /// that tree now. Records the sandbox clock so later sandbox edits can be told apart.
    pub async fn start(
        root: &Path,
        sandbox: &dyn Sandbox,
        snapshot: git2::Oid,
        extra_ignores: &[String],
        limits: Limits,
    ) -> Result<LiveSync, LiveError> {
        let workdir = sandbox.workdir().to_string();
        let paths = snapshot_paths(root, snapshot)?;
        let epoch = sandbox_clock(sandbox, &workdir).await?;
        let filter = PathFilter::new(root, extra_ignores)?;
        let manifest = Manifest::scan(root, &filter);
        Ok(LiveSync {
            root: root.to_path_buf(),
            workdir,
            extra_ignores: extra_ignores.to_vec(),
            filter,
            remote: RemoteState::new(paths, epoch),
            manifest,
            limits,
            recent_deletes: Default::default(),
        })
    }

    /// Files rclaude manages in the sandbox.
    pub fn synced_files(&self) -> usize {
        self.remote.len()
    }

    /// Plan a batch of changed paths.
    pub fn plan(&self, dirty: &BTreeSet<String>) -> Planned {
        Planned {
            ops: apply::plan(&self.root, dirty, &self.filter, &self.remote),
        }
    }

    /// Refuse a plan that, with the deletions of the last few seconds, deletes too large a share
    /// of a non-trivial tree.
    pub fn check_deletions(&mut self, planned: &Planned) -> Result<(), LiveError> {
        let now = std::time::Instant::now();
        while self
            .recent_deletes
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > DELETE_WINDOW)
        {
            self.recent_deletes.pop_front();
        }
        let earlier: usize = self.recent_deletes.iter().map(|(_, n)| n).sum();
        let deletes = planned.deletes() + earlier;
        let total = (self.remote.len() + earlier).max(1);
        let percent = deletes * 100 / total;
        if total > self.limits.max_delete_min_files as usize
            && percent > self.limits.max_delete_percent as usize
        {
            return Err(LiveError::MassDelete {
                deletes,
                total,
                percent,
                limit: self.limits.max_delete_percent,
            });
        }
        if planned.deletes() > 0 {
            self.recent_deletes.push_back((now, planned.deletes()));
        }
        Ok(())
    }

    /// Carry out a plan, then remember the new local state of its paths.
    pub async fn apply(
        &mut self,
        sandbox: &dyn Sandbox,
        planned: Planned,
    ) -> Result<BatchOutcome, LiveError> {
        let rels: Vec<String> = planned.ops.iter().map(|o| o.rel().to_string()).collect();
        let outcome = apply::apply(
            sandbox,
            &self.workdir,
            &self.root,
            planned.ops,
            &mut self.remote,
        )
        .await?;
        let uploaded: BTreeSet<&str> = outcome.uploaded.iter().map(|(r, _)| r.as_str()).collect();
        for rel in rels.iter().filter(|r| !uploaded.contains(r.as_str())) {
            self.manifest.refresh(&self.root, rel);
        }
        for (rel, stamp) in &outcome.uploaded {
            self.manifest.set(rel, *stamp);
        }
        Ok(outcome)
    }

    /// Paths that changed locally without an event reaching us (periodic safety rescan).
    pub fn rescan(&mut self) -> BTreeSet<String> {
        let now = Manifest::scan(&self.root, &self.filter);
        let dirty = self.manifest.diff(&now);
        self.manifest = now;
        dirty
    }

    /// Ignore rules changed: rebuild the filter; returns the paths whose status may have changed.
    pub fn reload_ignores(&mut self) -> Result<BTreeSet<String>, LiveError> {
        self.filter = PathFilter::new(&self.root, &self.extra_ignores)?;
        Ok(self.rescan())
    }

    /// The index changed (git add/rm): re-read which paths are tracked.
    pub fn reload_index(&mut self) {
        self.filter.reload_index();
    }
}

/// Every file and symlink in a snapshot commit's tree (submodules excluded).
fn snapshot_paths(root: &Path, snapshot: git2::Oid) -> Result<Vec<String>, git2::Error> {
    let repo = crate::gitsync::open_work_tree(root)?;
    let tree = repo.find_commit(snapshot)?.tree()?;
    let mut out = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob)
            && let Ok(name) = entry.name()
        {
            out.push(format!("{dir}{name}"));
        }
        git2::TreeWalkResult::Ok
    })?;
    Ok(out)
}

/// The sandbox's clock in ns: write a marker file and read back its mtime.
async fn sandbox_clock(sandbox: &dyn Sandbox, workdir: &str) -> Result<i128, SandboxError> {
    let marker = format!("{workdir}/.git/rclaude/live-epoch");
    sandbox
        .write_files(vec![FileUpload {
            path: marker.clone(),
            contents: crate::time::now_rfc3339().into(),
        }])
        .await?;
    let entry = sandbox
        .stat(&marker)
        .await?
        .ok_or_else(|| SandboxError::NotFound(marker.clone()))?;
    entry
        .modified_time
        .as_deref()
        .and_then(apply::parse_ns)
        .ok_or_else(|| SandboxError::Protocol(format!("no modification time for {marker}")))
}
