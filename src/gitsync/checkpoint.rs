//! Checkpoints: the sandbox's whole work (commits, and a WIP commit of its uncommitted and
//! untracked edits, made without touching its index, HEAD or branches) copied off the sandbox
//! into the local repository, so that `pull` still works when the sandbox is gone.
//!
//! A checkpoint is the hidden ref `refs/rclaude/checkpoints/<session>/<id>` (the objects live in
//! the local object store; a bundle of only what it lacks crossed the wire, as for `pull`) and
//! `<git dir>/rclaude/checkpoints/<session>/<id>.json`, what a later pull needs to make the
//! same branch a live pull would have made. The ref is written before the JSON, so a crash
//! between them leaves an ignored ref, never a record without its objects. Nothing is stored
//! when nothing changed since the session's latest checkpoint; the newest [`KEEP`] are kept.

use std::path::{Path, PathBuf};

use git2::Oid;
use serde::{Deserialize, Serialize};

use super::pull::{Fetch, Fetched, PullOptions, PullReport, fetch, store};
use super::pull_plan::Pulled;
use super::{SyncError, SyncProgress, SyncState, blocking, open_repo, parse_oid, utc_stamp};
use crate::provider::Sandbox;

/// Checkpoints kept per session by default (`[checkpoints] keep`).
pub const KEEP: usize = 20;

/// One stored checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    /// `YYYYMMDDTHHMMSSZ` (with a suffix when two fall in one second).
    pub id: String,
    /// Why it was taken: `pause`, `claude`, `run`, `down`, `manual`.
    pub reason: String,
    pub tip: String,
    pub sandbox_head: Option<String>,
    /// `tip` is a WIP commit of uncommitted edits on top of `sandbox_head`.
    pub wip: bool,
    /// The sandbox's branch name (`detached` when none), for the pull branch's name.
    pub label: String,
    pub sandbox_branch: Option<String>,
    /// The (snapshot, index) commits last pushed to that sandbox.
    pub pushed: Option<(String, String)>,
    /// Bytes that crossed the wire for it.
    pub received_bytes: u64,
    /// The sandbox's change token read just before it was taken: while the sandbox answers the
    /// same, nothing changed since, and no export is needed to tell
    /// ([`Sandbox::change_token`]). What an export takes depends only on the sandbox (its own
    /// `.git/info/exclude`, which the token covers), not on this machine's ignore rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<String>,
}

/// What [`take`] did.
#[derive(Debug)]
pub enum Taken {
    /// A new checkpoint.
    New(Checkpoint),
    /// Nothing changed since this one.
    Unchanged(Checkpoint),
    /// The sandbox has no commits and an empty work tree.
    Empty,
}

fn meta_dir(repo: &git2::Repository, session: &str) -> PathBuf {
    repo.path().join("rclaude/checkpoints").join(session)
}

fn ref_prefix(session: &str) -> String {
    format!("refs/rclaude/checkpoints/{session}/")
}

/// Take a checkpoint of the sandbox's current work for `session` (an id that is a valid ref
/// component), keeping the newest `keep` (at least one).
#[allow(clippy::too_many_arguments)]
pub async fn take(
    repo_path: &Path,
    sandbox: &dyn Sandbox,
    state: Option<&SyncState>,
    session: &str,
    reason: &str,
    extra_ignores: Vec<String>,
    keep: usize,
    progress: &dyn SyncProgress,
) -> Result<Taken, SyncError> {
    if !git2::Reference::is_valid_name(&format!("{}x", ref_prefix(session))) {
        return Err(SyncError::invalid(
            "session",
            format!("{session:?} cannot name a checkpoint ref"),
        ));
    }
    // Read before the export looks at the tree: a change made after this moves the token, so
    // the next checkpoint looks again.
    let changes = match sandbox.change_token(sandbox.workdir()).await {
        Ok(token) => token,
        Err(e) => {
            tracing::debug!("no change token from the sandbox: {e}");
            None
        }
    };
    let (path, session, reason) = (
        repo_path.to_path_buf(),
        session.to_string(),
        reason.to_string(),
    );
    if let Some(token) = &changes {
        let (path, session, reason, token) =
            (path.clone(), session.clone(), reason.clone(), token.clone());
        let unchanged = blocking(progress, move |_| {
            let repo = open_repo(&path)?;
            let Some(last) = list_in(&repo, &session).pop() else {
                return Ok(None);
            };
            if last.changes.as_deref() != Some(token.as_str()) {
                return Ok(None);
            }
            mark_if_pause(&repo, &session, &reason, &last)?;
            Ok(Some(Taken::Unchanged(last)))
        })
        .await?;
        if let Some(taken) = unchanged {
            return Ok(taken);
        }
    }
    let opts = PullOptions {
        extra_ignores,
        ..PullOptions::default()
    };
    let fetched = match fetch(repo_path, sandbox, state, &opts, progress).await? {
        Fetch::Nothing { .. } => return Ok(Taken::Empty),
        Fetch::Got(f) => f,
    };
    blocking(progress, move |_| {
        let taken = record(&path, &session, &reason, &fetched, keep, changes)?;
        if let Taken::New(cp) | Taken::Unchanged(cp) = &taken {
            mark_if_pause(&open_repo(&path)?, &session, &reason, cp)?;
        }
        Ok(taken)
    })
    .await
}

/// The state at pause is what a resume is compared with: note which checkpoint that is.
fn mark_if_pause(
    repo: &git2::Repository,
    session: &str,
    reason: &str,
    cp: &Checkpoint,
) -> Result<(), SyncError> {
    if reason != "pause" {
        return Ok(());
    }
    let marker = meta_dir(repo, session).join(PAUSED);
    std::fs::write(&marker, &cp.id).map_err(SyncError::io(format!("writing {}", marker.display())))
}

/// File naming the checkpoint taken at the session's last pause (removed by [`verify`]).
const PAUSED: &str = "PAUSED";

/// Make checkpoint `id` (one this machine has) the state [`verify`] compares the next resume
/// with: the checkpoint the server took when it paused the session itself.
pub fn mark_paused(repo_path: &Path, session: &str, id: &str) -> Result<(), SyncError> {
    let repo = open_repo(repo_path)?;
    let dir = meta_dir(&repo, session);
    std::fs::create_dir_all(&dir).map_err(SyncError::io(format!("creating {}", dir.display())))?;
    let marker = dir.join(PAUSED);
    std::fs::write(&marker, id).map_err(SyncError::io(format!("writing {}", marker.display())))
}

fn record(
    repo_path: &Path,
    session: &str,
    reason: &str,
    f: &Fetched,
    keep: usize,
    changes: Option<String>,
) -> Result<Taken, SyncError> {
    let repo = open_repo(repo_path)?;
    let tree_of = |o: Oid| repo.find_commit(o).and_then(|c| c.tree()).map(|t| t.id());
    let tip_tree = tree_of(f.pulled.tip).map_err(SyncError::git("reading the checkpoint"))?;
    if let Some(last) = list_in(&repo, session).pop() {
        let same_tree = parse_oid(&last.tip)
            .ok()
            .and_then(|o| tree_of(o).ok())
            .is_some_and(|t| t == tip_tree);
        let same_head = last.sandbox_head == f.pulled.sandbox_head.map(|o| o.to_string());
        if same_tree && same_head {
            // Remember the newer token, so that the next checkpoint can skip the export.
            let mut last = last;
            if changes.is_some() && last.changes != changes {
                last.changes = changes;
                let json = serde_json::to_vec_pretty(&last).expect("a checkpoint serializes");
                let file = meta_dir(&repo, session).join(format!("{}.json", last.id));
                crate::session::write_atomic(&file, &json).map_err(|e| {
                    SyncError::Internal(format!("writing the checkpoint record: {e}"))
                })?;
            }
            return Ok(Taken::Unchanged(last));
        }
    }
    let dir = meta_dir(&repo, session);
    std::fs::create_dir_all(&dir).map_err(SyncError::io(format!("creating {}", dir.display())))?;
    let mut id = utc_stamp();
    let mut n = 1;
    while repo
        .find_reference(&format!("{}{id}", ref_prefix(session)))
        .is_ok()
    {
        n += 1;
        id = format!("{}-{n}", utc_stamp());
    }
    let cp = Checkpoint {
        id: id.clone(),
        reason: reason.to_string(),
        tip: f.pulled.tip.to_string(),
        sandbox_head: f.pulled.sandbox_head.map(|o| o.to_string()),
        wip: f.pulled.wip,
        label: f.pulled.label.clone(),
        sandbox_branch: f.sandbox_branch.clone(),
        pushed: f.pushed.map(|(a, b)| (a.to_string(), b.to_string())),
        received_bytes: f.received_bytes,
        changes,
    };
    repo.reference(
        &format!("{}{id}", ref_prefix(session)),
        f.pulled.tip,
        false,
        &format!("rclaude checkpoint ({reason})"),
    )
    .map_err(SyncError::git("writing the checkpoint ref"))?;
    let json = serde_json::to_vec_pretty(&cp).expect("a checkpoint serializes");
    crate::session::write_atomic(&dir.join(format!("{id}.json")), &json)
        .map_err(|e| SyncError::Internal(format!("writing the checkpoint record: {e}")))?;
    prune(&repo, session, keep);
    Ok(Taken::New(cp))
}

/// Record `cp` (whose commits are in `repo`) as a checkpoint of `session`, as [`take`] would
/// have; an existing one of the same id is left as it is.
pub(crate) fn adopt(
    repo: &git2::Repository,
    session: &str,
    cp: &Checkpoint,
) -> Result<(), SyncError> {
    let name = format!("{}{}", ref_prefix(session), cp.id);
    if !git2::Reference::is_valid_name(&name) || cp.id.contains('/') {
        return Err(SyncError::invalid(
            "checkpoint",
            format!("{:?} cannot name a checkpoint", cp.id),
        ));
    }
    if list_in(repo, session).iter().any(|c| c.id == cp.id) {
        return Ok(());
    }
    let dir = meta_dir(repo, session);
    std::fs::create_dir_all(&dir).map_err(SyncError::io(format!("creating {}", dir.display())))?;
    repo.reference(
        &name,
        parse_oid(&cp.tip)?,
        true,
        &format!("rclaude checkpoint ({}, recovered)", cp.reason),
    )
    .map_err(SyncError::git("writing the checkpoint ref"))?;
    let json = serde_json::to_vec_pretty(cp).expect("a checkpoint serializes");
    crate::session::write_atomic(&dir.join(format!("{}.json", cp.id)), &json)
        .map_err(|e| SyncError::Internal(format!("writing the checkpoint record: {e}")))?;
    Ok(())
}

/// Drop all but the newest `keep` checkpoints of `session`.
fn prune(repo: &git2::Repository, session: &str, keep: usize) {
    let all = list_in(repo, session);
    for old in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        if let Ok(mut r) = repo.find_reference(&format!("{}{}", ref_prefix(session), old.id)) {
            let _ = r.delete();
        }
        let _ = std::fs::remove_file(meta_dir(repo, session).join(format!("{}.json", old.id)));
    }
}

fn list_in(repo: &git2::Repository, session: &str) -> Vec<Checkpoint> {
    let dir = meta_dir(repo, session);
    let mut out: Vec<Checkpoint> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let cp: Checkpoint = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            // Only a record whose ref (and so its objects) is there counts.
            let target = repo
                .refname_to_id(&format!("{}{}", ref_prefix(session), cp.id))
                .ok()?;
            (target.to_string() == cp.tip && repo.find_commit(target).is_ok()).then_some(cp)
        })
        .collect();
    out.sort_by(|a, b| id_order(&a.id, &b.id));
    out
}

/// Checkpoint ids in the order they were taken: `<stamp>`, `<stamp>-2`, … `<stamp>-10` within
/// one second (a plain string order puts `-10` before `-2`), the server's `<stamp>-server`,
/// `<stamp>-server2`, … after this machine's of the same second.
pub fn id_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(id: &str) -> (&str, &str, u64, &str) {
        let (stamp, rest) = id.split_once('-').unwrap_or((id, ""));
        let kind = rest.trim_end_matches(|c: char| c.is_ascii_digit());
        let n = rest[kind.len()..].parse().unwrap_or(1);
        (stamp, kind, n, id)
    }
    key(a).cmp(&key(b))
}

/// The checkpoints of `session`, oldest first.
pub fn list(repo_path: &Path, session: &str) -> Result<Vec<Checkpoint>, SyncError> {
    Ok(list_in(&open_repo(repo_path)?, session))
}

/// Make the pull branch from checkpoint `cp`, as a pull from the live sandbox would have.
pub fn pull_from(
    repo_path: &Path,
    cp: &Checkpoint,
    opts: &PullOptions,
) -> Result<PullReport, SyncError> {
    let oid = |s: &str| parse_oid(s);
    let fetched = Fetched {
        pulled: Pulled {
            tip: oid(&cp.tip)?,
            sandbox_head: cp.sandbox_head.as_deref().map(oid).transpose()?,
            wip: cp.wip,
            label: cp.label.clone(),
        },
        pushed: match &cp.pushed {
            Some((a, b)) => Some((oid(a)?, oid(b)?)),
            None => None,
        },
        sandbox_branch: cp.sandbox_branch.clone(),
        received_bytes: 0,
    };
    let mut opts = opts.clone();
    opts.apply = false;
    store(repo_path, &fetched, &opts)
}

/// How the sandbox's files compare with the checkpoint taken when it was paused.
#[derive(Debug)]
pub enum Drift {
    /// No checkpoint was taken at the last pause (paused by the provider, or before
    /// checkpoints): nothing to compare with.
    NoBaseline,
    /// The same tree and the same HEAD.
    Same,
    /// Files differ (a provider that lost or changed files while paused).
    Differs {
        checkpoint: Box<Checkpoint>,
        /// Up to 20 paths that differ, and how many differ in all.
        paths: Vec<String>,
        total: usize,
        /// The sandbox's HEAD moved too.
        head_moved: bool,
    },
}

/// Compare the sandbox's current work with the checkpoint taken at its last `pause` (call
/// right after resuming, before anything syncs into it).
pub async fn verify(
    repo_path: &Path,
    sandbox: &dyn Sandbox,
    state: Option<&SyncState>,
    session: &str,
    extra_ignores: Vec<String>,
    progress: &dyn SyncProgress,
) -> Result<Drift, SyncError> {
    // The baseline is the checkpoint `pause` took (or found unchanged), consumed here.
    let marker = meta_dir(&open_repo(repo_path)?, session).join(PAUSED);
    let Ok(id) = std::fs::read_to_string(&marker) else {
        return Ok(Drift::NoBaseline);
    };
    let _ = std::fs::remove_file(&marker);
    let Some(last) = list(repo_path, session)?
        .into_iter()
        .find(|c| c.id == id.trim())
    else {
        return Ok(Drift::NoBaseline);
    };
    let opts = PullOptions {
        extra_ignores,
        ..PullOptions::default()
    };
    let now = match fetch(repo_path, sandbox, state, &opts, progress).await? {
        Fetch::Nothing { .. } => None,
        Fetch::Got(f) => Some((f.pulled.tip, f.pulled.sandbox_head)),
    };
    let path = repo_path.to_path_buf();
    blocking(progress, move |_| {
        let repo = open_repo(&path)?;
        let tree_of = |o: Oid| {
            repo.find_commit(o)
                .and_then(|c| c.tree())
                .map_err(SyncError::git("reading a checkpoint tree"))
        };
        let then_tree = tree_of(parse_oid(&last.tip)?)?;
        let now_tree = now.map(|(tip, _)| tree_of(tip)).transpose()?;
        let head_moved = now.and_then(|(_, h)| h).map(|h| h.to_string()) != last.sandbox_head;
        let diff = repo
            .diff_tree_to_tree(Some(&then_tree), now_tree.as_ref(), None)
            .map_err(SyncError::git("comparing with the checkpoint"))?;
        let total = diff.deltas().len();
        if total == 0 && !head_moved {
            return Ok(Drift::Same);
        }
        let paths = diff
            .deltas()
            .take(20)
            .filter_map(|d| {
                let p = d.old_file().path().or(d.new_file().path())?;
                let what = match d.status() {
                    git2::Delta::Deleted => "missing",
                    git2::Delta::Added => "new",
                    _ => "changed",
                };
                Some(format!("{} ({what})", p.display()))
            })
            .collect();
        Ok(Drift::Differs {
            checkpoint: Box::new(last),
            paths,
            total,
            head_moved,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::id_order;

    #[test]
    fn ids_sort_in_the_order_they_were_taken() {
        let mut ids = vec![
            "20261206T050949Z",
            "20261206T050948Z-server",
            "20261206T050948Z-10",
            "20261206T050948Z-server2",
            "20261206T050948Z-2",
            "20261206T050948Z",
            "20261206T050948Z-9",
        ];
        ids.sort_by(|a, b| id_order(a, b));
        assert_eq!(
            ids,
            [
                "20261206T050948Z",
                "20261206T050948Z-2",
                "20261206T050948Z-9",
                "20261206T050948Z-10",
                "20261206T050948Z-server",
                "20261206T050948Z-server2",
                "20261206T050949Z",
            ]
        );
    }
}
