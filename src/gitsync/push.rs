//! `push`: make the sandbox's HEAD, index and work tree match the laptop.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use git2::{ObjectType, Oid, Repository};

use super::push_plan::{self, Action, Decision};
pub(crate) use super::push_report::plural;
pub use super::push_report::{PushReport, SavedRef};
use super::remote::{self, ApplyParams, RepoState};
use super::saved::{bring_back, saved_ref};
use super::snapshot::{self, HeadState, Snapshot};
use super::{
    EMPTY_TREE, SyncError, SyncProgress, SyncState, blocking, bundle, local_tmp_dir, open_repo,
};
use crate::provider::{Progress, Sandbox, SandboxError};

/// Options of [`push`].
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// `[sync] ignore` patterns (gitignore syntax) applied on top of `.gitignore`.
    pub extra_ignores: Vec<String>,
    /// Send everything, ignoring what the sandbox reports it has.
    pub force_full: bool,
    /// Recurse into submodules (not supported yet: submodules travel as gitlinks, and every
    /// sync says which ones; `git submodule update --init` in `[setup]` checks them out).
    pub submodules: bool,
}

/// Local facts gathered before talking to the sandbox.
struct Local {
    snap: Snapshot,
    info_exclude: String,
    shallow: Vec<Oid>,
}

/// What to send.
struct Plan {
    bundle: Option<(tempfile::TempPath, bundle::Written)>,
    /// Sandbox tips that exist here.
    known_local: Vec<Oid>,
    files_changed: usize,
    /// Sandbox's last snapshot, when this repository has it.
    prev_snapshot: Option<Oid>,
}

/// Push the local work tree to the sandbox (see the module docs of [`crate::gitsync`]).
pub async fn push(
    repo_path: &Path,
    sandbox: &dyn Sandbox,
    state: Option<&SyncState>,
    opts: &PushOptions,
    progress: &dyn SyncProgress,
) -> Result<PushReport, SyncError> {
    push_from(repo_path, sandbox, state, None, opts, progress).await
}

/// Push the state an earlier push sent (`recorded`, whose commits are in this repository)
/// instead of the work tree: a sandbox rebuilt from a checkpoint first gets what the lost one
/// was last given.
pub async fn push_recorded(
    repo_path: &Path,
    sandbox: &dyn Sandbox,
    state: Option<&SyncState>,
    recorded: &SyncState,
    opts: &PushOptions,
    progress: &dyn SyncProgress,
) -> Result<PushReport, SyncError> {
    push_from(repo_path, sandbox, state, Some(recorded), opts, progress).await
}

async fn push_from(
    repo_path: &Path,
    sandbox: &dyn Sandbox,
    state: Option<&SyncState>,
    recorded: Option<&SyncState>,
    opts: &PushOptions,
    progress: &dyn SyncProgress,
) -> Result<PushReport, SyncError> {
    snapshot::validate_ignores(&opts.extra_ignores)?;
    if opts.submodules {
        return Err(SyncError::Unsupported(
            "syncing the contents of submodules is not supported yet; without the option, submodules are synced as gitlinks (the commit they are at)".into(),
        ));
    }
    remote::check_workdir(sandbox)?;

    progress.stage("snapshot");
    let path = repo_path.to_path_buf();
    let ignores = opts.extra_ignores.clone();
    let replaying = recorded.is_some();
    let recorded = recorded.cloned();
    // The sandbox's change token, read before anything looks at the sandbox (see
    // `SyncState::confirmed`), while the snapshot is taken.
    let token = async {
        match sandbox.change_token(sandbox.workdir()).await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!("no change token from the sandbox: {e}");
                None
            }
        }
    };
    let snapshot = blocking(progress, move |_| {
        let repo = open_repo(&path)?;
        let snap = match &recorded {
            Some(r) => snapshot::from_recorded(&repo, r)?,
            None => snapshot::create(&repo, &ignores)?,
        };
        let info_exclude = std::fs::read_to_string(repo.commondir().join("info").join("exclude"))
            .unwrap_or_default();
        let shallow = std::fs::read_to_string(repo.commondir().join("shallow"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| super::parse_oid(l.trim()).ok())
            .collect();
        Ok(Local {
            snap,
            info_exclude,
            shallow,
        })
    });
    // When the token already says the sandbox changed since a query last confirmed its state,
    // the query is needed whatever the snapshot finds: it runs while the snapshot is taken.
    let confirmed = state
        .and_then(|s| s.confirmed.as_ref())
        .map(|(t, _)| t.clone());
    let token_then_query = async {
        let token = token.await;
        let unconfirmed = token.is_none() || token != confirmed;
        let early = if unconfirmed || replaying || opts.force_full {
            Some(remote::query(sandbox).await)
        } else {
            None
        };
        (token, early)
    };
    let (local, (token, early_query)) = tokio::join!(snapshot, token_then_query);
    let local = local?;
    let snap = local.snap.clone();
    let excludes = excludes_file(&opts.extra_ignores, &local.info_exclude);
    let excludes_id = Oid::hash_object(ObjectType::Blob, excludes.as_bytes())
        .map_err(SyncError::git("hashing the ignore patterns"))?
        .to_string();
    let head = snap.head.oid();
    let branch = snap.head.branch().map(str::to_string);
    let report = |sent: Sent, saved: Vec<SavedRef>, state: SyncState, recreated: bool| PushReport {
        skipped_nothing_new: sent.skipped,
        sent_bytes: sent.bytes,
        objects: sent.objects,
        commits: sent.commits,
        prerequisites: sent.prerequisites,
        saved,
        state,
        head_desc: snap.head.describe(),
        files_changed: sent.files_changed,
        sandbox_recreated: recreated,
        recovered_interrupted_apply: sent.recovered,
        index_conflicts: snap.index_conflicts,
        skipped_nested: snap.skipped_nested.clone(),
        submodules: snap.submodules.clone(),
    };
    // Nothing changed here since the last sync, nor in the sandbox since a query confirmed it
    // held exactly that: nothing to ask it, nothing to send.
    if let (Some(t), Some(s)) = (&token, state)
        && !replaying
        && !opts.force_full
        && s.confirmed.as_ref() == Some(&(t.clone(), excludes_id.clone()))
        && s.snapshot_oid() == Some(snap.commit)
        && s.index_oid() == Some(snap.index_commit)
        && s.head == head.map(|o| o.to_string())
        && s.branch == branch
    {
        let sent = Sent {
            skipped: true,
            ..Sent::default()
        };
        return Ok(report(sent, Vec::new(), s.clone(), false));
    }

    progress.stage("query");
    let mut q = match early_query {
        Some(q) => q?,
        None => remote::query(sandbox).await?,
    };
    if q.state != RepoState::Ready {
        remote::init_sandbox(sandbox).await?;
        q = remote::query(sandbox).await?;
        if q.state != RepoState::Ready {
            return Err(SyncError::Protocol {
                step: "query",
                detail: "the sandbox repository is still missing after init".into(),
            });
        }
    }
    let decision = push_plan::decide(
        &push_plan::Facts {
            snapshot: snap.commit,
            index: snap.index_commit,
            head,
            branch: branch.as_deref(),
            excludes_id: &excludes_id,
            state,
            force_full: opts.force_full,
        },
        &q,
    );
    let Decision {
        action,
        recreated,
        mut fetched_saved,
        leftovers,
    } = decision;
    let new_state = |fetched_saved: BTreeMap<String, String>| SyncState {
        identity: q.identity.clone(),
        snapshot: Some(snap.commit.to_string()),
        index: Some(snap.index_commit.to_string()),
        head: head.map(|o| o.to_string()),
        branch: branch.clone(),
        fetched_saved,
        confirmed: None,
    };

    let (force_full, prev) = match action {
        Action::Skip => {
            let mut saved = Vec::new();
            let nothing_left = leftovers.is_empty();
            if !leftovers.is_empty() {
                let known: Vec<Oid> = [Some(snap.commit), Some(snap.index_commit), head]
                    .into_iter()
                    .flatten()
                    .collect();
                saved = bring_back(
                    repo_path,
                    sandbox,
                    leftovers,
                    known,
                    q.synced.snapshot,
                    progress,
                )
                .await?;
                for r in &saved {
                    fetched_saved.insert(r.sandbox_name.clone(), r.oid.clone());
                }
            }
            let sent = Sent {
                skipped: true,
                ..Sent::default()
            };
            let mut state = new_state(fetched_saved);
            // The query just confirmed the sandbox holds this state, with nothing left over.
            if nothing_left {
                state.confirmed = token.map(|t| (t, excludes_id.clone()));
            }
            return Ok(report(sent, saved, state, recreated));
        }
        Action::Send {
            full,
            prev_snapshot,
        } => (full, prev_snapshot),
    };

    progress.stage("bundle");
    let path = repo_path.to_path_buf();
    let sandbox_refs = q.refs.clone();
    let snap2 = snap.clone();
    let plan = blocking(progress, move |p| {
        plan_bundle(&path, &snap2, &sandbox_refs, force_full, prev, p)
    })
    .await?;

    let mut bundle_remote = None;
    let mut sent = Sent {
        files_changed: plan.files_changed,
        ..Sent::default()
    };
    if let Some((tmp, written)) = &plan.bundle {
        progress.stage("upload");
        let final_path = upload_bundle(
            sandbox,
            tmp,
            written.bytes,
            "push",
            "bundle",
            "nothing was applied; run the sync again",
            progress,
        )
        .await?;
        bundle_remote = Some(final_path);
        sent.bytes = written.bytes;
        sent.objects = written.objects;
        sent.commits = written.commits;
        sent.prerequisites = written.prerequisites.len();
    }

    progress.stage("apply");
    let mut known = vec![snap.commit, snap.index_commit];
    known.extend(head);
    for k in &plan.known_local {
        if !known.contains(k) {
            known.push(*k);
        }
    }
    let params = ApplyParams {
        identity: q.identity.clone(),
        bundle: bundle_remote,
        snapshot: snap.commit,
        index: snap.index_commit,
        head,
        branch: match &snap.head {
            HeadState::Detached { .. } => None,
            h => h.branch().map(str::to_string),
        },
        known: known.clone(),
        excludes,
        excludes_id,
        shallow: local.shallow.clone(),
        bundle_commits: sent.commits,
    };
    let applied = remote::apply(sandbox, &params).await?;

    // Bring saved work back: what this apply saved, and leftovers of earlier syncs.
    let wanted = push_plan::wanted_after_apply(&applied.saved, &leftovers);
    let mut saved = Vec::new();
    if !wanted.is_empty() {
        match bring_back(
            repo_path,
            sandbox,
            wanted.clone(),
            known,
            plan.prev_snapshot,
            progress,
        )
        .await
        {
            Ok(s) => saved = s,
            Err(e) => {
                // The sandbox keeps them; the next sync brings them back. Report them as remote only.
                tracing::warn!("could not bring saved sandbox work back: {e}");
                for w in wanted {
                    saved.push(saved_ref(&w.name, &w, false, plan.prev_snapshot));
                }
            }
        }
    }
    for r in saved.iter().filter(|r| r.local) {
        fetched_saved.insert(r.sandbox_name.clone(), r.oid.clone());
    }
    sent.recovered = applied.recovered;
    Ok(report(sent, saved, new_state(fetched_saved), recreated))
}

/// What a push sent, for its report.
#[derive(Debug, Default)]
struct Sent {
    skipped: bool,
    bytes: u64,
    objects: u64,
    commits: u64,
    prerequisites: usize,
    files_changed: usize,
    recovered: bool,
}

/// The sandbox's `.git/info/exclude`: the laptop's own plus the `[sync] ignore` patterns.
fn excludes_file(extra: &[String], info_exclude: &str) -> String {
    let mut s = String::from(
        "# Written by rclaude on every sync: the laptop's .git/info/exclude and [sync] ignore.\n",
    );
    for line in info_exclude.lines() {
        if !line.trim_start().starts_with('#') && !line.trim().is_empty() {
            s.push_str(line);
            s.push('\n');
        }
    }
    for p in extra {
        s.push_str(p);
        s.push('\n');
    }
    s
}

/// Decide what the sandbox lacks and write the bundle (blocking).
fn plan_bundle(
    path: &Path,
    snap: &Snapshot,
    sandbox_refs: &[(String, Oid)],
    force_full: bool,
    prev_snapshot: Option<Oid>,
    progress: &dyn SyncProgress,
) -> Result<Plan, SyncError> {
    let repo = open_repo(path)?;
    let mut known_local: Vec<Oid> = Vec::new();
    for (_, oid) in sandbox_refs {
        if !known_local.contains(oid) && repo.find_commit(*oid).is_ok() {
            known_local.push(*oid);
        }
    }
    let hidden: Vec<Oid> = if force_full {
        Vec::new()
    } else {
        known_local.clone()
    };
    let present = |x: Oid| bundle::reachable(&repo, &hidden, x);

    let mut refs = vec![
        bundle::BundleRef {
            name: "refs/rclaude/push/snapshot".into(),
            oid: snap.commit,
        },
        bundle::BundleRef {
            name: "refs/rclaude/push/index".into(),
            oid: snap.index_commit,
        },
    ];
    if let Some(h) = snap.head.oid() {
        refs.push(bundle::BundleRef {
            name: "refs/rclaude/push/head".into(),
            oid: h,
        });
    }
    refs.retain(|r| !present(r.oid));

    let prev_snapshot = prev_snapshot.filter(|p| repo.find_commit(*p).is_ok());
    let files_changed = count_changes(&repo, prev_snapshot, snap.tree)?;

    let bundle = if refs.is_empty() {
        None
    } else {
        Some(write_temp_bundle(&repo, "push-", &refs, &hidden, progress)?)
    };
    Ok(Plan {
        bundle,
        known_local,
        files_changed,
        prev_snapshot,
    })
}

/// Number of files that differ between `from` (a commit, or the empty tree) and tree `to`.
pub(crate) fn count_changes(
    repo: &Repository,
    from: Option<Oid>,
    to: Oid,
) -> Result<usize, SyncError> {
    let from_tree = match from {
        Some(c) => repo
            .find_commit(c)
            .and_then(|c| c.tree())
            .map_err(SyncError::git("reading a snapshot"))?,
        None => repo
            .find_tree(Oid::from_str(EMPTY_TREE).expect("valid"))
            .or_else(|_| {
                let tb = repo.treebuilder(None)?;
                let id = tb.write()?;
                repo.find_tree(id)
            })
            .map_err(SyncError::git("reading the empty tree"))?,
    };
    let to_tree = repo
        .find_tree(to)
        .map_err(SyncError::git("reading a snapshot tree"))?;
    // Only the subtrees that differ are read (libgit2's diff reads every tree of both).
    super::remote::native::treediff::changes(repo, Some(&from_tree), &to_tree)
        .map(|c| c.len())
        .map_err(SyncError::git("comparing snapshots"))
}

/// Write a bundle of `refs` (leaving out what `hidden` reaches) to a new file named
/// `<prefix>….bundle` in the repository's temporary directory, flushed.
pub(crate) fn write_temp_bundle(
    repo: &Repository,
    prefix: &str,
    refs: &[bundle::BundleRef],
    hidden: &[Oid],
    progress: &dyn SyncProgress,
) -> Result<(tempfile::TempPath, bundle::Written), SyncError> {
    let dir = local_tmp_dir(repo)?;
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(".bundle")
        .tempfile_in(&dir)
        .map_err(SyncError::io(format!(
            "creating a bundle file in {}",
            dir.display()
        )))?;
    let written = {
        let mut out = BufWriter::with_capacity(256 * 1024, tmp.as_file());
        let w = bundle::write(repo, refs, hidden, &mut out, progress)?;
        out.flush()
            .map_err(SyncError::io("writing the bundle file"))?;
        w
    };
    // Not synced to disk: the file is read back at once and is worthless after a crash.
    Ok((tmp.into_temp_path(), written))
}

/// Upload local bundle `local` (`bytes` long) into the sandbox's temporary directory as
/// `<name>-<uuid>.bundle`, whole or not at all (a `.part` renamed when complete); its path
/// there. `what` names it in errors, `after_failure` says what a failed upload left.
pub(crate) async fn upload_bundle(
    sandbox: &dyn Sandbox,
    local: &Path,
    bytes: u64,
    name: &str,
    what: &str,
    after_failure: &str,
    progress: &dyn SyncProgress,
) -> Result<String, SyncError> {
    let final_path =
        remote::remote_tmp_path(sandbox, &format!("{name}-{}.bundle", uuid::Uuid::new_v4()));
    let part = format!("{final_path}.part");
    if let Err(e) = transfer(sandbox, Direction::Up, local, &part, Some(bytes), progress).await {
        let _ = sandbox.remove(&part).await;
        return Err(SyncError::Sandbox {
            context: format!("uploading the {what} ({after_failure})"),
            source: e,
        });
    }
    sandbox
        .rename(&part, &final_path)
        .await
        .map_err(SyncError::sandbox(format!(
            "moving the uploaded {what} into place"
        )))?;
    Ok(final_path)
}

/// Download a bundle the sandbox wrote into a local temporary file, then remove it there.
pub(crate) async fn download_bundle(
    repo_path: &Path,
    sandbox: &dyn Sandbox,
    remote_path: &str,
    size: u64,
    progress: &dyn SyncProgress,
) -> Result<tempfile::TempPath, SyncError> {
    progress.stage("download");
    let path = repo_path.to_path_buf();
    let tmp = blocking(progress, move |_| {
        let dir = local_tmp_dir(&open_repo(&path)?)?;
        Ok(tempfile::Builder::new()
            .prefix("pull-")
            .suffix(".bundle")
            .tempfile_in(&dir)
            .map_err(SyncError::io(format!(
                "creating a bundle file in {}",
                dir.display()
            )))?
            .into_temp_path())
    })
    .await?;
    let res = transfer(
        sandbox,
        Direction::Down,
        &tmp,
        remote_path,
        Some(size),
        progress,
    )
    .await;
    let _ = sandbox.remove(remote_path).await;
    res.map_err(SyncError::sandbox(
        "downloading the bundle from the sandbox",
    ))?;
    Ok(tmp)
}

#[derive(Clone, Copy)]
pub(crate) enum Direction {
    Up,
    Down,
}

/// Upload or download a file, forwarding byte progress.
pub(crate) async fn transfer(
    sandbox: &dyn Sandbox,
    dir: Direction,
    local: &Path,
    remote_path: &str,
    total: Option<u64>,
    progress: &dyn SyncProgress,
) -> Result<u64, SandboxError> {
    let (tx, mut rx) = tokio::sync::watch::channel(0u64);
    let cb: Progress = Arc::new(move |n| {
        let _ = tx.send(n);
    });
    let fut = async {
        match dir {
            Direction::Up => sandbox.upload(local, remote_path, Some(cb)).await,
            Direction::Down => sandbox.download(remote_path, local, Some(cb)).await,
        }
    };
    tokio::pin!(fut);
    let mut watching = true;
    loop {
        tokio::select! {
            res = &mut fut => {
                if let Ok(n) = &res {
                    progress.bytes(*n, total.or(Some(*n)));
                }
                return res;
            }
            changed = rx.changed(), if watching => {
                if changed.is_ok() {
                    let n = *rx.borrow_and_update();
                    progress.bytes(n, total);
                } else {
                    watching = false;
                }
            }
        }
    }
}
