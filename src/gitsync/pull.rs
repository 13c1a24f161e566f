//! `pull`: bring the sandbox's commits and uncommitted edits back as a local branch.

use std::path::Path;

use git2::{Branch, Oid, Repository};
use serde::Serialize;

pub use super::local_apply::ApplyOutcome;
use super::local_apply::{self, Input};
use super::pull_plan::{BranchUpdate, Pulled, branch_update, hint_commands};
use super::push::{count_changes, download_bundle, plural};
use super::remote::{self, ExportMode};
use super::snapshot::{self, HeadState};
use super::{
    SyncError, SyncProgress, SyncState, blocking, bundle, free_ref_name, open_repo, utc_stamp,
};
use crate::provider::Sandbox;

/// Options of [`pull`].
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Local branch to store the pulled work in; `{branch}` = the sandbox's branch (`detached`
    /// when its HEAD is detached), `{session}` = [`PullOptions::session`].
    pub branch_template: String,
    /// Session id for `{session}` (empty: none).
    pub session: String,
    /// Also bring the work into the checked-out branch when that cannot lose anything.
    pub apply: bool,
    /// Pull this sandbox ref (e.g. `refs/rclaude/saved/<stamp>`) instead of its current state.
    pub sandbox_ref: Option<String>,
    /// The same `[sync] ignore` patterns as for push (used to compare the local work tree).
    pub extra_ignores: Vec<String>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            branch_template: "rclaude/{branch}".into(),
            session: String::new(),
            apply: false,
            sandbox_ref: None,
            extra_ignores: Vec::new(),
        }
    }
}

/// What [`pull`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// The sandbox has no commits and an empty work tree.
    pub nothing_to_pull: bool,
    /// Local branch (short name) now holding the sandbox's work.
    pub branch: Option<String>,
    /// Its commit.
    pub tip: Option<String>,
    /// The sandbox's branch (`None` when detached or pulling a ref).
    pub sandbox_branch: Option<String>,
    /// Sandbox commits the local HEAD lacks (the WIP commit not counted).
    pub commits: usize,
    /// The tip is a WIP commit holding the sandbox's uncommitted edits.
    pub has_uncommitted: bool,
    /// Files that differ between the last pushed snapshot (or HEAD) and the pulled tree.
    pub files_changed: usize,
    /// Bundle bytes downloaded.
    pub received_bytes: u64,
    /// Where the branch's previous tip was kept when it was not an ancestor of the new one.
    pub replaced: Option<String>,
    /// Result of `apply` when requested.
    pub applied: Option<ApplyOutcome>,
    /// Commands to review or take the work.
    pub hint_commands: Vec<String>,
}

impl PullReport {
    /// The sandbox had nothing this machine lacks: no commits missing here and no file that
    /// differs from the last pushed snapshot (or from HEAD when there is none).
    pub fn is_empty(&self) -> bool {
        self.nothing_to_pull || (self.commits == 0 && self.files_changed == 0)
    }

    /// One line: what was pulled where.
    pub fn summary(&self) -> String {
        let Some(branch) = &self.branch else {
            return "the sandbox has no commits and no files: nothing to pull".into();
        };
        if self.is_empty() {
            return format!("{branch}: nothing new since the last push");
        }
        format!(
            "{branch}: {} commit{}, {} file{} changed{}",
            self.commits,
            plural(self.commits),
            self.files_changed,
            plural(self.files_changed),
            if self.has_uncommitted {
                " (with uncommitted sandbox edits)"
            } else {
                ""
            }
        )
    }

    /// Lines to show after the summary: a replaced branch tip, the apply outcome, and the
    /// commands to review or take the work (left out once it was applied).
    pub fn hint_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let Some(branch) = &self.branch else {
            return lines;
        };
        if let Some(r) = &self.replaced {
            lines.push(format!(
                "The previous {branch} was not part of the new one; it is kept as {r}."
            ));
        }
        if let Some(a) = &self.applied {
            lines.extend(a.summary().lines().map(str::to_string));
        }
        let applied = matches!(
            self.applied,
            Some(
                ApplyOutcome::FastForward { .. }
                    | ApplyOutcome::Merge { .. }
                    | ApplyOutcome::UpToDate
            )
        );
        if !applied && !self.is_empty() {
            lines.extend(self.hint_commands.iter().map(|c| format!("  {c}")));
        }
        lines
    }
}

/// Render the branch template.
fn render_template(
    template: &str,
    branch: &str,
    session: Option<&str>,
) -> Result<String, SyncError> {
    let mut name = template.replace("{branch}", branch);
    if name.contains("{session}") {
        let s = session.ok_or_else(|| {
            SyncError::invalid(
                "branch template",
                format!("{template:?} uses {{session}} but no session was given"),
            )
        })?;
        name = name.replace("{session}", s);
    }
    if !Branch::name_is_valid(&name).unwrap_or(false) || name.contains('{') {
        return Err(SyncError::invalid(
            "branch name",
            format!("{name:?} (from template {template:?}) is not a valid branch name"),
        ));
    }
    Ok(name)
}

/// Pull the sandbox's work (see the module docs of [`crate::gitsync`]).
pub async fn pull(
    repo_path: &Path,
    sandbox: &dyn Sandbox,
    state: Option<&SyncState>,
    opts: &PullOptions,
    progress: &dyn SyncProgress,
) -> Result<PullReport, SyncError> {
    match fetch(repo_path, sandbox, state, opts, progress).await? {
        Fetch::Nothing { sandbox_branch } => Ok(PullReport {
            nothing_to_pull: true,
            branch: None,
            tip: None,
            sandbox_branch,
            commits: 0,
            has_uncommitted: false,
            files_changed: 0,
            received_bytes: 0,
            replaced: None,
            applied: None,
            hint_commands: Vec::new(),
        }),
        Fetch::Got(fetched) => {
            let path = repo_path.to_path_buf();
            let opts = opts.clone();
            blocking(progress, move |_| store(&path, &fetched, &opts)).await
        }
    }
}

/// Bring the sandbox's work (its commits and a WIP commit of its uncommitted edits, or the
/// ref `opts.sandbox_ref`) into the local object store, on no branch yet.
pub(crate) async fn fetch(
    repo_path: &Path,
    sandbox: &dyn Sandbox,
    state: Option<&SyncState>,
    opts: &PullOptions,
    progress: &dyn SyncProgress,
) -> Result<Fetch, SyncError> {
    snapshot::validate_ignores(&opts.extra_ignores)?;
    remote::check_workdir(sandbox)?;
    if let Some(r) = &opts.sandbox_ref
        && (!r.starts_with("refs/") || !git2::Reference::is_valid_name(r))
    {
        return Err(SyncError::invalid(
            "sandbox ref",
            format!("{r:?} is not a full ref name such as refs/rclaude/saved/<stamp>"),
        ));
    }
    // Fail on a bad template before any transfer.
    render_template(&opts.branch_template, "x", Some("x"))?;

    progress.stage("prepare");
    let path = repo_path.to_path_buf();
    let st = state.cloned();
    let template = opts.branch_template.clone();
    let bases = blocking(progress, move |_| {
        let repo = open_repo(&path)?;
        let mut bases: Vec<Oid> = Vec::new();
        let mut add = |o: Option<Oid>| {
            if let Some(o) = o
                && !bases.contains(&o)
                && repo.find_commit(o).is_ok()
            {
                bases.push(o);
            }
        };
        add(snapshot::head_state(&repo)?.oid());
        if let Some(s) = &st {
            add(s.snapshot_oid());
            add(s.index_oid());
            add(s.head.as_deref().and_then(|h| super::parse_oid(h).ok()));
        }
        // Earlier pulls and saved refs make later pulls incremental.
        let prefix = template.split('{').next().unwrap_or("").to_string();
        for glob in [
            format!("refs/heads/{prefix}*"),
            "refs/rclaude/saved/*".to_string(),
        ] {
            if let Ok(refs) = repo.references_glob(&glob) {
                for r in refs.flatten().take(32) {
                    add(r.target());
                }
            }
        }
        Ok(bases)
    })
    .await?;

    progress.stage("export");
    let mode = match &opts.sandbox_ref {
        Some(r) => ExportMode::Refs(vec![r.clone()]),
        None => ExportMode::Worktree,
    };
    let out = remote::remote_tmp_path(sandbox, &format!("pull-{}.bundle", uuid::Uuid::new_v4()));
    let e = remote::export(sandbox, &mode, &bases, &[], &out).await?;
    let (tip, pulled_head, wip, label) = match &opts.sandbox_ref {
        Some(r) => {
            let oid = e
                .refs
                .first()
                .map(|(_, o)| *o)
                .ok_or_else(|| SyncError::Protocol {
                    step: "export",
                    detail: format!("no answer for {r}"),
                })?;
            let label = r
                .strip_prefix("refs/heads/")
                .or_else(|| r.strip_prefix("refs/rclaude/"))
                .or_else(|| r.strip_prefix("refs/"))
                .unwrap_or(r)
                .to_string();
            (Some(oid), Some(oid), false, label)
        }
        None => (
            e.tip,
            e.head,
            e.wip,
            e.branch.clone().unwrap_or_else(|| "detached".into()),
        ),
    };
    let Some(tip) = tip else {
        return Ok(Fetch::Nothing {
            sandbox_branch: e.branch.clone(),
        });
    };
    let pulled = Pulled {
        tip,
        sandbox_head: pulled_head,
        wip,
        label,
    };
    let (local_bundle, received_bytes) = match &e.bundle {
        Some((p, size)) => (
            Some(download_bundle(repo_path, sandbox, p, *size, progress).await?),
            *size,
        ),
        None => (None, 0),
    };

    let path = repo_path.to_path_buf();
    let pushed = state
        .filter(|s| s.identity == e.identity)
        .and_then(|s| Some((s.snapshot_oid()?, s.index_oid()?)));
    let sandbox_branch = if opts.sandbox_ref.is_some() {
        None
    } else {
        e.branch.clone()
    };
    let ref_bundle_name = match &opts.sandbox_ref {
        Some(r) => r.clone(),
        None => "refs/rclaude/pull/tip".to_string(),
    };
    blocking(progress, move |p| {
        let repo = open_repo(&path)?;
        if let Some(b) = &local_bundle {
            p.stage("index");
            let header = bundle::read(&repo, b, p)?;
            if let Some(o) = header.get(&ref_bundle_name)
                && o != tip
            {
                return Err(SyncError::Protocol {
                    step: "export",
                    detail: format!("the bundle's {ref_bundle_name} is {o}, expected {tip}"),
                });
            }
        }
        repo.find_commit(tip).map_err(|_| SyncError::Protocol {
            step: "export",
            detail: format!("commit {tip} did not arrive (the sandbox sent no bundle for it)"),
        })?;
        Ok(())
    })
    .await?;
    Ok(Fetch::Got(Fetched {
        pulled,
        pushed,
        sandbox_branch,
        received_bytes,
    }))
}

/// What [`fetch`] brought into the local object store.
pub(crate) enum Fetch {
    /// The sandbox has no commits and an empty work tree.
    Nothing {
        sandbox_branch: Option<String>,
    },
    Got(Fetched),
}

/// The sandbox's work, now in the local object store, not yet on any branch.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub pulled: Pulled,
    /// Last pushed (snapshot, index) commits, when the state belongs to this sandbox.
    pub pushed: Option<(Oid, Oid)>,
    pub sandbox_branch: Option<String>,
    pub received_bytes: u64,
}

/// Store fetched work as the pull branch (see [`finish`]).
pub(crate) fn store(
    repo_path: &Path,
    fetched: &Fetched,
    opts: &PullOptions,
) -> Result<PullReport, SyncError> {
    let repo = open_repo(repo_path)?;
    finish(
        &repo,
        &fetched.pulled,
        &Finish {
            pushed: fetched.pushed,
            opts,
            sandbox_branch: fetched.sandbox_branch.clone(),
            received_bytes: fetched.received_bytes,
        },
    )
}

/// The WIP commit `tip` without the files it only has because the laptop had them untracked
/// when it last pushed (absent from the sandbox HEAD, unchanged since the push): those are not
/// sandbox edits, and cherry-picking them would collide with the laptop's own copies. Returns
/// `sandbox_head` when nothing else is left, `tip` when there was nothing to take out.
fn without_laptop_untracked(
    repo: &Repository,
    tip: Oid,
    sandbox_head: Option<Oid>,
    snapshot: Oid,
) -> Result<Oid, SyncError> {
    let wip = repo
        .find_commit(tip)
        .map_err(SyncError::git("reading the pulled commit"))?;
    let wip_tree = wip
        .tree()
        .map_err(SyncError::git("reading the pulled tree"))?;
    let head_tree = match sandbox_head {
        Some(h) => Some(
            repo.find_commit(h)
                .and_then(|c| c.tree())
                .map_err(SyncError::git("reading the sandbox HEAD's tree"))?,
        ),
        None => None,
    };
    let snap_tree = repo
        .find_commit(snapshot)
        .and_then(|c| c.tree())
        .map_err(SyncError::git("reading the pushed snapshot"))?;
    let diff = repo
        .diff_tree_to_tree(head_tree.as_ref(), Some(&wip_tree), None)
        .map_err(SyncError::git("comparing the sandbox's edits"))?;
    let mut untouched: Vec<std::path::PathBuf> = Vec::new();
    for d in diff.deltas() {
        if d.status() != git2::Delta::Added {
            continue;
        }
        let Some(path) = d.new_file().path() else {
            continue;
        };
        let same = snap_tree.get_path(path).is_ok_and(|e| {
            e.id() == d.new_file().id() && e.filemode() == i32::from(d.new_file().mode())
        });
        if same {
            untouched.push(path.to_path_buf());
        }
    }
    if untouched.is_empty() {
        return Ok(tip);
    }
    let mut index = git2::Index::new().map_err(SyncError::git("making an index"))?;
    index
        .read_tree(&wip_tree)
        .map_err(SyncError::git("reading the pulled tree"))?;
    for p in &untouched {
        index
            .remove_path(p)
            .map_err(SyncError::git("leaving out a file the laptop has"))?;
    }
    let tree_id = index
        .write_tree_to(repo)
        .map_err(SyncError::git("writing the sandbox's edits as a tree"))?;
    if head_tree.as_ref().is_some_and(|t| t.id() == tree_id) {
        return Ok(sandbox_head.expect("a head tree has a head"));
    }
    let tree = repo
        .find_tree(tree_id)
        .map_err(SyncError::git("reading the sandbox's edits"))?;
    let parents: Vec<git2::Commit<'_>> = wip.parents().collect();
    let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
    repo.commit(
        None,
        &wip.author(),
        &wip.committer(),
        wip.message()
            .unwrap_or("rclaude: uncommitted sandbox edits\n"),
        &tree,
        &parent_refs,
    )
    .map_err(SyncError::git("writing the sandbox's edits as a commit"))
}

/// What [`finish`] needs besides the pulled commits.
struct Finish<'a> {
    /// Last pushed (snapshot, index) commits, when the state belongs to this sandbox.
    pushed: Option<(Oid, Oid)>,
    opts: &'a PullOptions,
    sandbox_branch: Option<String>,
    received_bytes: u64,
}

/// Store the pulled work as the local pull branch, count it, suggest commands, and apply it
/// with `--apply`.
fn finish(repo: &Repository, pulled: &Pulled, f: &Finish<'_>) -> Result<PullReport, SyncError> {
    let Pulled {
        tip,
        sandbox_head,
        wip,
        ref label,
    } = *pulled;
    let (pushed, opts) = (f.pushed, f.opts);
    let session = Some(opts.session.as_str()).filter(|s| !s.is_empty());
    let name = render_template(&opts.branch_template, label, session)?;
    let refname = format!("refs/heads/{name}");
    let head = snapshot::head_state(repo)?;
    if let HeadState::Branch { name: hn, .. } | HeadState::Unborn { name: hn } = &head
        && *hn == name
    {
        return Err(SyncError::invalid(
            "pull target",
            format!(
                "branch {name} is checked out here; switch to another branch first, or pull into another branch name"
            ),
        ));
    }

    // The branch carries only the sandbox's own uncommitted edits, so that cherry-picking it
    // works; `--apply` below still gets the full pulled tip.
    let branch_tip = match (wip, pushed) {
        (true, Some((snapshot, _))) => without_laptop_untracked(repo, tip, sandbox_head, snapshot)?,
        _ => tip,
    };
    let wip_for_branch = wip && Some(branch_tip) != sandbox_head;
    let tip_for_apply = tip;
    let tip = branch_tip;

    // Store the branch; an old tip that is not part of the new one is kept.
    let old = repo.refname_to_id(&refname).ok();
    let tip_has_old = old.is_some_and(|o| repo.graph_descendant_of(tip, o).unwrap_or(false));
    let mut replaced = None;
    match branch_update(old, tip, tip_has_old) {
        BranchUpdate::Unchanged => {}
        BranchUpdate::FastForward => {
            repo.reference(&refname, tip, true, "rclaude pull: fast-forward")
                .map_err(SyncError::git(format!("updating {name}")))?;
        }
        BranchUpdate::ReplaceKeepingOld => {
            let old = old.expect("a replaced branch has a tip");
            let keep = free_ref_name(repo, "refs/rclaude/replaced/", &utc_stamp());
            repo.reference(&keep, old, false, &format!("rclaude pull: previous {name}"))
                .map_err(SyncError::git(format!(
                    "keeping the previous {name} as {keep}"
                )))?;
            repo.reference(&refname, tip, true, "rclaude pull")
                .map_err(SyncError::git(format!("updating {name}")))?;
            replaced = Some(keep);
        }
        BranchUpdate::Create => {
            repo.reference(&refname, tip, false, "rclaude pull")
                .map_err(SyncError::git(format!("creating {name}")))?;
        }
    }

    // Counts: sandbox commits the local HEAD lacks, files changed since the last push.
    let mut commits = 0;
    if let Some(c) = sandbox_head {
        let mut walk = repo.revwalk().map_err(SyncError::git("counting commits"))?;
        walk.push(c).map_err(SyncError::git("counting commits"))?;
        if let Some(h) = head.oid() {
            walk.hide(h).map_err(SyncError::git("counting commits"))?;
        }
        commits = walk.count();
    }
    let base = pushed.map(|(s, _)| s).or(head.oid());
    let tip_tree = repo
        .find_commit(tip_for_apply)
        .and_then(|c| c.tree())
        .map_err(SyncError::git("reading the pulled tree"))?
        .id();
    let files_changed = count_changes(repo, base, tip_tree)?;

    let hints = hint_commands(&name, commits, head.oid().is_none(), wip_for_branch);

    let applied = if opts.apply {
        if opts.sandbox_ref.is_some() {
            Some(ApplyOutcome::Refused {
                reason: "--apply takes the sandbox's current state, not a saved ref".into(),
                commands: hints.clone(),
            })
        } else {
            let input = Input {
                tip: tip_for_apply,
                sandbox_head,
                wip,
                pushed,
                extra_ignores: &opts.extra_ignores,
                label: &name,
            };
            Some(local_apply::apply(repo, &input)?)
        }
    } else {
        None
    };

    Ok(PullReport {
        nothing_to_pull: false,
        branch: Some(name),
        tip: Some(tip.to_string()),
        sandbox_branch: f.sandbox_branch.clone(),
        commits,
        has_uncommitted: wip_for_branch,
        files_changed,
        received_bytes: f.received_bytes,
        replaced,
        applied,
        hint_commands: hints,
    })
}
