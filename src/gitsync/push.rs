//! `push`: make the sandbox's HEAD, index and work tree match the laptop.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::{ObjectType, Oid, Repository};
use serde::Serialize;

use super::push_plan::{self, Action, Decision, WantedRef};
use super::remote::{self, ApplyParams, ExportMode, RepoState};
use super::snapshot::{self, HeadState, Snapshot};
use super::{
    EMPTY_TREE, SyncError, SyncProgress, SyncState, blocking, bundle, free_ref_name, local_tmp_dir,
    open_repo, short,
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

/// Sandbox work that a push saved before overwriting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavedRef {
    /// Ref name in this repository (normally the same as in the sandbox).
    pub name: String,
    /// Ref name in the sandbox.
    pub sandbox_name: String,
    pub oid: String,
    /// What it holds: `uncommitted edits`, `commits made in the sandbox`, `staged changes`,
    /// `commits on the branch being replaced`.
    pub kinds: Vec<String>,
    /// Brought back into this repository.
    pub local: bool,
    /// Saved by an earlier sync that did not finish bringing it back.
    pub earlier: bool,
    /// Commands to inspect or take it.
    pub commands: Vec<String>,
}

impl SavedRef {
    /// A user-facing paragraph about this saved ref.
    pub fn describe(&self) -> String {
        let what = if self.kinds.is_empty() {
            "work".to_string()
        } else {
            self.kinds.join(", ")
        };
        let mut m = format!(
            "The sandbox had {what} that this machine did not have. rclaude committed it to {}{} before syncing; nothing was lost.",
            self.name,
            if self.local {
                " (in the sandbox and here)"
            } else {
                " in the sandbox"
            },
        );
        if self.earlier {
            m.push_str(" (saved by an earlier sync)");
        }
        for c in &self.commands {
            m.push_str("\n    ");
            m.push_str(c);
        }
        m
    }
}

/// What [`push`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// The sandbox already had this exact state: nothing was sent or applied.
    pub skipped_nothing_new: bool,
    /// Bundle bytes uploaded (0 when no bundle was needed).
    pub sent_bytes: u64,
    /// Objects in the bundle.
    pub objects: u64,
    /// Commits in the bundle.
    pub commits: u64,
    /// Prerequisite commits of the bundle (0 = a complete bundle).
    pub prerequisites: usize,
    /// Sandbox work saved before the apply (and earlier saves not yet brought back).
    pub saved: Vec<SavedRef>,
    /// New state to persist.
    pub state: SyncState,
    /// e.g. `main at 1a2b3c4d5e`.
    pub head_desc: String,
    /// Files that differ between the sandbox's previous snapshot and the new one.
    pub files_changed: usize,
    /// The sandbox identity differed from the state: it was recreated, everything was resent.
    pub sandbox_recreated: bool,
    /// An interrupted apply was found and completed.
    pub recovered_interrupted_apply: bool,
    /// The local index had conflicts; the sandbox index got HEAD's tree instead.
    pub index_conflicts: bool,
    /// Embedded repositories (not submodules) in the work tree that were not synced.
    pub skipped_nested: Vec<String>,
    /// Submodules: the sandbox gets the commit each is at, not its files.
    pub submodules: Vec<String>,
}

impl PushReport {
    /// A short user-facing summary (several lines when work was saved).
    pub fn summary(&self) -> String {
        let mut s = if self.skipped_nothing_new {
            format!("Sandbox already up to date ({}).", self.head_desc)
        } else if self.sent_bytes == 0 {
            format!(
                "Synced {} to the sandbox ({} file{} changed, no new objects).",
                self.head_desc,
                self.files_changed,
                plural(self.files_changed)
            )
        } else {
            format!(
                "Synced {} to the sandbox: {} file{} changed, sent {} ({} object{}{}).",
                self.head_desc,
                self.files_changed,
                plural(self.files_changed),
                human_bytes(self.sent_bytes),
                self.objects,
                plural(self.objects as usize),
                if self.prerequisites == 0 {
                    ", complete bundle"
                } else {
                    ""
                }
            )
        };
        if self.sandbox_recreated {
            s.push_str(
                "\nThe sandbox was recreated since the last sync; everything was sent again.",
            );
        }
        if self.recovered_interrupted_apply {
            s.push_str("\nAn interrupted sync was found in the sandbox and completed.");
        }
        if !self.skipped_nested.is_empty() {
            s.push_str(&format!(
                "\nNot synced (another git repository inside the work tree; make it a submodule or ignore it): {}",
                self.skipped_nested.join(", ")
            ));
        }
        if self.index_conflicts {
            s.push_str(
                "\nYour index has unresolved conflicts; the sandbox's index was set to HEAD.",
            );
        }
        for r in &self.saved {
            s.push('\n');
            s.push_str(&r.describe());
        }
        s
    }
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub(crate) fn human_bytes(n: u64) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        n if n < 1024 * 1024 * 1024 => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
        n => format!("{:.2} GiB", n as f64 / (1024.0 * 1024.0 * 1024.0)),
    }
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
    let local = blocking(progress, move |_| {
        let repo = open_repo(&path)?;
        let snap = snapshot::create(&repo, &ignores)?;
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
    })
    .await?;
    let snap = local.snap.clone();
    let excludes = excludes_file(&opts.extra_ignores, &local.info_exclude);
    let excludes_id = Oid::hash_object(ObjectType::Blob, excludes.as_bytes())
        .map_err(SyncError::git("hashing the ignore patterns"))?
        .to_string();

    progress.stage("query");
    let mut q = remote::query(sandbox).await?;
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
    let head = snap.head.oid();
    let branch = snap.head.branch().map(str::to_string);
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
    };
    let report = |sent: Sent, saved: Vec<SavedRef>, state: SyncState| PushReport {
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

    let (force_full, prev) = match action {
        Action::Skip => {
            let mut saved = Vec::new();
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
            return Ok(report(sent, saved, new_state(fetched_saved)));
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
        let final_path =
            remote::remote_tmp_path(sandbox, &format!("push-{}.bundle", uuid::Uuid::new_v4()));
        let part = format!("{final_path}.part");
        if let Err(e) = transfer(
            sandbox,
            Direction::Up,
            tmp,
            &part,
            Some(written.bytes),
            progress,
        )
        .await
        {
            let _ = sandbox.remove(&part).await;
            return Err(SyncError::Sandbox {
                context: "uploading the bundle (nothing was applied; run the sync again)".into(),
                source: e,
            });
        }
        sandbox
            .rename(&part, &final_path)
            .await
            .map_err(SyncError::sandbox("moving the uploaded bundle into place"))?;
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
    Ok(report(sent, saved, new_state(fetched_saved)))
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
    let present = |x: Oid| {
        hidden
            .iter()
            .any(|k| *k == x || repo.graph_descendant_of(*k, x).unwrap_or(false))
    };

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
        let dir = local_tmp_dir(&repo)?;
        let tmp = tempfile::Builder::new()
            .prefix("push-")
            .suffix(".bundle")
            .tempfile_in(&dir)
            .map_err(SyncError::io(format!(
                "creating a bundle file in {}",
                dir.display()
            )))?;
        let written = {
            let mut out = BufWriter::with_capacity(256 * 1024, tmp.as_file());
            bundle::write(&repo, &refs, &hidden, &mut out, progress)?
        };
        tmp.as_file()
            .sync_all()
            .map_err(SyncError::io("writing the bundle file"))?;
        Some((tmp.into_temp_path(), written))
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
    let diff = repo
        .diff_tree_to_tree(Some(&from_tree), Some(&to_tree), None)
        .map_err(SyncError::git("comparing snapshots"))?;
    Ok(diff.deltas().len())
}

fn describe_kind(k: &str) -> String {
    match k {
        "worktree" => "uncommitted edits".into(),
        "commits" => "commits made in the sandbox".into(),
        "index" => "staged changes".into(),
        "branch" => "commits on the branch being replaced".into(),
        other => other.into(),
    }
}

fn saved_ref(
    local_name: &str,
    wanted: &WantedRef,
    local: bool,
    prev_snapshot: Option<Oid>,
) -> SavedRef {
    let sandbox_name = wanted.name.as_str();
    let mut commands = vec![format!(
        "git log --stat -p HEAD..{local_name}    # what the sandbox had that HEAD lacks"
    )];
    if let Some(p) = prev_snapshot {
        commands.push(format!(
            "git diff {} {local_name}    # sandbox changes since the last sync",
            short(&p)
        ));
    }
    commands.push(format!(
        "git switch -c sandbox-work {local_name}    # continue from it on a branch"
    ));
    if !local {
        commands = vec![format!(
            "rclaude pull --ref {sandbox_name}    # bring it here (the next sync also retries)"
        )];
    }
    SavedRef {
        name: local_name.to_string(),
        sandbox_name: sandbox_name.to_string(),
        oid: wanted.oid.to_string(),
        kinds: wanted.kinds.iter().map(|k| describe_kind(k)).collect(),
        local,
        earlier: wanted.earlier,
        commands,
    }
}

/// Fetch saved refs from the sandbox into local refs of the same name.
async fn bring_back(
    repo_path: &Path,
    sandbox: &dyn Sandbox,
    wanted: Vec<WantedRef>,
    mut bases: Vec<Oid>,
    prev_snapshot: Option<Oid>,
    progress: &dyn SyncProgress,
) -> Result<Vec<SavedRef>, SyncError> {
    progress.stage("fetch-saved");
    // Commits we already have for other saved refs help as bases too.
    let names: Vec<String> = wanted.iter().map(|w| w.name.clone()).collect();
    if let Some(p) = prev_snapshot {
        bases.push(p);
    }
    let fetched = fetch_refs(repo_path, sandbox, ExportMode::Refs(names), bases, progress).await?;
    let mut out = Vec::new();
    for w in wanted {
        let local_name = fetched
            .iter()
            .find(|(sn, ..)| *sn == w.name)
            .map(|(_, ln, _)| ln.clone())
            .unwrap_or_else(|| w.name.clone());
        out.push(saved_ref(&local_name, &w, true, prev_snapshot));
    }
    Ok(out)
}

/// Export refs from the sandbox and create them locally under the same names (a taken name with
/// another value gets a `-2`, `-3` suffix). Returns `(sandbox name, local name, oid)`.
async fn fetch_refs(
    repo_path: &Path,
    sandbox: &dyn Sandbox,
    mode: ExportMode,
    bases: Vec<Oid>,
    progress: &dyn SyncProgress,
) -> Result<Vec<(String, String, Oid)>, SyncError> {
    let out = remote::remote_tmp_path(sandbox, &format!("export-{}.bundle", uuid::Uuid::new_v4()));
    let e = remote::export(sandbox, &mode, &bases, &out).await?;
    let local_bundle = match &e.bundle {
        Some((path, size)) => {
            Some(download_bundle(repo_path, sandbox, path, *size, progress).await?)
        }
        None => None,
    };
    let path: PathBuf = repo_path.to_path_buf();
    let refs = e.refs.clone();
    blocking(progress, move |p| {
        let repo = open_repo(&path)?;
        if let Some(b) = &local_bundle {
            p.stage("index");
            bundle::read(&repo, b, p)?;
        }
        let mut done = Vec::new();
        for (name, oid) in refs {
            repo.find_commit(oid).map_err(|_| SyncError::Protocol {
                step: "export",
                detail: format!("{name} ({oid}) did not arrive"),
            })?;
            let local_name = match repo.refname_to_id(&name) {
                Ok(o) if o == oid => name.clone(),
                Ok(_) => {
                    let (prefix, stamp) = name
                        .rsplit_once('/')
                        .unwrap_or(("refs/rclaude/saved", &name));
                    free_ref_name(&repo, &format!("{prefix}/"), stamp)
                }
                Err(_) => name.clone(),
            };
            if local_name != name || repo.refname_to_id(&name).is_err() {
                repo.reference(
                    &local_name,
                    oid,
                    false,
                    "rclaude: sandbox work saved before a sync",
                )
                .map_err(SyncError::git(format!("creating {local_name}")))?;
            }
            done.push((name, local_name, oid));
        }
        Ok(done)
    })
    .await
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
