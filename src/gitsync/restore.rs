//! Rebuild a lost sandbox's work in a new sandbox from a checkpoint.
//!
//! The new sandbox is first given, by an ordinary push, the state the lost one was last given;
//! [`restore`] then lays the checkpoint over it: the checkpoint's commits are fetched, the work
//! tree becomes the checkpoint's tree, HEAD and the branch go where the lost sandbox had them,
//! and the index matches HEAD. What the sync installed is left recorded as it was, so the
//! checkpoint's edits count as sandbox work, exactly as in the lost sandbox: `pull` brings them
//! back, and a later sync of other laptop edits saves them first.

use std::path::Path;

use git2::Oid;

use super::bundle::{self, BundleRef};
use super::checkpoint::Checkpoint;
use super::push::{upload_bundle, write_temp_bundle};
use super::remote::{self, RestoreParams};
use super::{SyncError, SyncProgress, SyncState, blocking, open_repo, parse_oid};
use crate::provider::Sandbox;

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Bundle bytes sent (0 when the sandbox had every commit).
    pub sent_bytes: u64,
    /// The tree of the sandbox's work tree afterwards.
    pub tree: Oid,
    /// The checkpoint's tree: equal to `tree` when every file came back.
    pub expected: Oid,
}

impl Restored {
    /// The sandbox's work tree is the checkpoint's.
    pub fn matches(&self) -> bool {
        self.tree == self.expected
    }
}

/// Lay checkpoint `cp` (whose commits are in the repository at `repo_path`) over a sandbox
/// that was just synced to `state`.
pub async fn restore(
    repo_path: &Path,
    sandbox: &dyn Sandbox,
    state: &SyncState,
    cp: &Checkpoint,
    progress: &dyn SyncProgress,
) -> Result<Restored, SyncError> {
    remote::check_workdir(sandbox)?;
    let tip = parse_oid(&cp.tip)?;
    let head = cp.sandbox_head.as_deref().map(parse_oid).transpose()?;
    let synced: Vec<Oid> = [
        state.snapshot_oid(),
        state.index_oid(),
        state.head.as_deref().and_then(|h| parse_oid(h).ok()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let path = repo_path.to_path_buf();
    let (bundle, expected) = blocking(progress, move |p| {
        let repo = open_repo(&path)?;
        let expected = repo
            .find_commit(tip)
            .and_then(|c| c.tree())
            .map_err(SyncError::git("reading the checkpoint's commit"))?
            .id();
        let hidden: Vec<Oid> = synced
            .into_iter()
            .filter(|o| repo.find_commit(*o).is_ok())
            .collect();
        let mut refs = vec![BundleRef {
            name: "refs/rclaude/restore/tip".into(),
            oid: tip,
        }];
        if let Some(h) = head {
            refs.push(BundleRef {
                name: "refs/rclaude/restore/head".into(),
                oid: h,
            });
        }
        refs.retain(|r| !bundle::reachable(&repo, &hidden, r.oid));
        if refs.is_empty() {
            return Ok((None, expected));
        }
        let (tmp, written) = write_temp_bundle(&repo, "restore-", &refs, &hidden, p)?;
        Ok((Some((tmp, written.bytes)), expected))
    })
    .await?;

    let mut sent_bytes = 0;
    let mut remote_bundle = None;
    if let Some((tmp, bytes)) = &bundle {
        progress.stage("upload");
        remote_bundle = Some(
            upload_bundle(
                sandbox,
                tmp,
                *bytes,
                "restore",
                "checkpoint",
                "nothing was changed",
                progress,
            )
            .await?,
        );
        sent_bytes = *bytes;
    }
    progress.stage("apply");
    let tree = remote::restore(
        sandbox,
        &RestoreParams {
            identity: state.identity.clone(),
            bundle: remote_bundle,
            tip,
            head,
            branch: cp.sandbox_branch.clone(),
        },
    )
    .await?;
    Ok(Restored {
        sent_bytes,
        tree,
        expected,
    })
}
