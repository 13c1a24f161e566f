//! `pull --apply`: bring pulled sandbox work into the checked-out branch only when nothing local
//! can be lost.
//!
//! * (a) The local work tree and index are exactly what was last pushed, and the sandbox HEAD
//!   descends from the local HEAD: fast-forward to the sandbox HEAD and make the work tree equal
//!   the pulled tree (sandbox edits stay uncommitted).
//! * (b) The local tree is clean: fast-forward or merge (a merge commit) the sandbox commits,
//!   then apply the sandbox's uncommitted edits, uncommitted, when that merges cleanly.
//! * Otherwise refuse, explain, and suggest the manual commands; nothing is touched.
//!
//! When local uncommitted work is rewritten (case a), it is first kept as
//! `refs/rclaude/before-apply/<stamp>` (and `...-index`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{Oid, Repository, Tree};
use serde::Serialize;

use super::apply_plan::{Facts, Plan, Target, decide};
use super::snapshot::{self, HeadState};
use super::{EMPTY_TREE, SyncError, free_ref_name, short, utc_stamp};

/// What `pull --apply` did to the checked-out branch and work tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ApplyOutcome {
    /// The branch moved forward to the sandbox HEAD (`from == to` when only uncommitted edits
    /// were applied); `uncommitted_edits`: the sandbox's uncommitted edits are now uncommitted
    /// edits here.
    FastForward {
        from: Option<String>,
        to: Option<String>,
        uncommitted_edits: bool,
    },
    /// A merge commit joined local and sandbox commits.
    Merge {
        commit: String,
        uncommitted_edits: bool,
    },
    /// The local branch and work tree already had everything.
    UpToDate,
    /// Nothing was changed: doing it could lose local work.
    Refused {
        reason: String,
        commands: Vec<String>,
    },
}

impl ApplyOutcome {
    /// One user-facing line (plus commands when refused).
    pub fn summary(&self) -> String {
        match self {
            ApplyOutcome::FastForward {
                from,
                to,
                uncommitted_edits,
            } => {
                let edits = if *uncommitted_edits {
                    "; the sandbox's uncommitted edits are uncommitted here"
                } else {
                    ""
                };
                if from == to {
                    format!("Applied the sandbox's uncommitted edits to your work tree{edits}.")
                } else {
                    format!(
                        "Fast-forwarded {} to {}{edits}.",
                        from.as_deref()
                            .map(|s| &s[..10])
                            .unwrap_or("the empty branch"),
                        to.as_deref().map(|s| &s[..10]).unwrap_or("?")
                    )
                }
            }
            ApplyOutcome::Merge {
                commit,
                uncommitted_edits,
            } => format!(
                "Merged the sandbox's commits ({}){}.",
                &commit[..10],
                if *uncommitted_edits {
                    " and applied its uncommitted edits, uncommitted"
                } else {
                    ""
                }
            ),
            ApplyOutcome::UpToDate => {
                "Your branch and work tree already have the sandbox's work.".into()
            }
            ApplyOutcome::Refused { reason, commands } => {
                let mut s = format!("Not applied: {reason}. Your files and branch are unchanged.");
                for c in commands {
                    s.push_str("\n    ");
                    s.push_str(c);
                }
                s
            }
        }
    }
}

/// Inputs of [`apply`].
pub(crate) struct Input<'a> {
    /// Pulled commit (the sandbox HEAD, or the WIP commit on it).
    pub(crate) tip: Oid,
    /// The sandbox HEAD (`None`: the sandbox has no commits).
    pub(crate) sandbox_head: Option<Oid>,
    /// `tip` is a WIP commit holding uncommitted sandbox edits.
    pub(crate) wip: bool,
    /// Last pushed (snapshot, index) commits, when the state belongs to this sandbox.
    pub(crate) pushed: Option<(Oid, Oid)>,
    pub(crate) extra_ignores: &'a [String],
    /// The local branch the pull stored (for messages and commands).
    pub(crate) label: &'a str,
}

fn refuse(reason: impl Into<String>, label: &str) -> ApplyOutcome {
    ApplyOutcome::Refused {
        reason: reason.into(),
        commands: vec![
            "git stash push --include-untracked    # set your local changes aside".into(),
            format!(
                "git merge {label}    # take the sandbox's work (review first: git diff HEAD {label})"
            ),
            "git stash pop    # bring your changes back".into(),
        ],
    }
}

fn tree_of<'r>(repo: &'r Repository, commit: Option<Oid>) -> Result<Tree<'r>, SyncError> {
    match commit {
        Some(c) => repo
            .find_commit(c)
            .and_then(|c| c.tree())
            .map_err(SyncError::git("reading a commit's tree")),
        None => empty_tree(repo),
    }
}

fn empty_tree(repo: &Repository) -> Result<Tree<'_>, SyncError> {
    let id = repo
        .treebuilder(None)
        .and_then(|tb| tb.write())
        .map_err(SyncError::git("writing the empty tree"))?;
    debug_assert_eq!(id.to_string(), EMPTY_TREE);
    repo.find_tree(id)
        .map_err(SyncError::git("reading the empty tree"))
}

/// Paths that differ between two trees: all of them (old and new names), the added ones, and
/// the deleted ones.
struct Changes {
    all: Vec<PathBuf>,
    added: Vec<PathBuf>,
    deleted: HashSet<PathBuf>,
}

fn changed_paths(repo: &Repository, a: &Tree<'_>, b: &Tree<'_>) -> Result<Changes, SyncError> {
    let diff = repo
        .diff_tree_to_tree(Some(a), Some(b), None)
        .map_err(SyncError::git("comparing trees"))?;
    let mut seen = HashSet::new();
    let mut c = Changes {
        all: Vec::new(),
        added: Vec::new(),
        deleted: HashSet::new(),
    };
    for d in diff.deltas() {
        for f in [d.old_file(), d.new_file()] {
            if let Some(p) = f.path()
                && seen.insert(p.to_path_buf())
            {
                c.all.push(p.to_path_buf());
            }
        }
        match d.status() {
            git2::Delta::Added => c.added.extend(d.new_file().path().map(Path::to_path_buf)),
            git2::Delta::Deleted => {
                c.deleted.extend(d.old_file().path().map(Path::to_path_buf));
            }
            _ => {}
        }
    }
    Ok(c)
}

/// A local file the checkout would overwrite or delete although it is not part of the tree being
/// replaced (an ignored file, or one that appeared meanwhile): at an added path, as a parent of
/// one, or inside a directory where a file arrives.
fn in_the_way(workdir: &Path, c: &Changes) -> Option<PathBuf> {
    for p in &c.added {
        match std::fs::symlink_metadata(workdir.join(p)) {
            Ok(m) if m.is_dir() => {
                if let Some(f) = foreign_file(workdir, p, &c.deleted) {
                    return Some(f);
                }
            }
            Ok(_) => return Some(p.clone()),
            Err(_) => {
                let mut q = p.parent();
                while let Some(a) = q.filter(|a| !a.as_os_str().is_empty()) {
                    match std::fs::symlink_metadata(workdir.join(a)) {
                        Ok(m) if m.is_dir() => break,
                        Ok(_) if c.deleted.contains(a) => break,
                        Ok(_) => return Some(a.to_path_buf()),
                        Err(_) => q = a.parent(),
                    }
                }
            }
        }
    }
    None
}

/// A file under directory `rel` that the checkout does not delete.
fn foreign_file(workdir: &Path, rel: &Path, deleted: &HashSet<PathBuf>) -> Option<PathBuf> {
    let entries = std::fs::read_dir(workdir.join(rel)).ok()?;
    for e in entries.flatten() {
        let r = rel.join(e.file_name());
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            if let Some(f) = foreign_file(workdir, &r, deleted) {
                return Some(f);
            }
        } else if !deleted.contains(&r) {
            return Some(r);
        }
    }
    None
}

fn checkout_paths(
    repo: &Repository,
    target: &Tree<'_>,
    paths: &[PathBuf],
    force: bool,
) -> Result<(), SyncError> {
    if paths.is_empty() {
        return Ok(());
    }
    let mut cb = CheckoutBuilder::new();
    if force {
        cb.force().remove_untracked(true);
    } else {
        cb.safe();
    }
    cb.overwrite_ignored(false)
        .update_index(false)
        .disable_pathspec_match(true);
    for p in paths {
        cb.path(p.as_path());
    }
    repo.checkout_tree(target.as_object(), Some(&mut cb))
        .map_err(SyncError::git("updating the work tree"))
}

fn set_index(repo: &Repository, tree: &Tree<'_>) -> Result<(), SyncError> {
    let mut idx = repo.index().map_err(SyncError::git("opening the index"))?;
    idx.read_tree(tree)
        .map_err(SyncError::git("setting the index"))?;
    idx.write().map_err(SyncError::git("writing the index"))
}

fn move_head(repo: &Repository, head: &HeadState, to: Oid, msg: &str) -> Result<(), SyncError> {
    match head {
        HeadState::Branch { name, .. } | HeadState::Unborn { name } => {
            repo.reference(&format!("refs/heads/{name}"), to, true, msg)
                .map_err(SyncError::git(format!("moving branch {name}")))?;
        }
        HeadState::Detached { .. } => {
            repo.set_head_detached(to)
                .map_err(SyncError::git("moving the detached HEAD"))?;
        }
    }
    Ok(())
}

/// Apply pulled work to the checked-out branch (see the module docs): gather the facts,
/// [`decide`], act.
pub(crate) fn apply(repo: &Repository, input: &Input<'_>) -> Result<ApplyOutcome, SyncError> {
    let workdir = repo
        .workdir()
        .ok_or_else(|| SyncError::Internal("no work tree".into()))?
        .to_path_buf();
    let now = snapshot::create(repo, input.extra_ignores)?;
    let head = now.head.clone();
    let h = head.oid();
    let c = input.sandbox_head;
    let head_tree = tree_of(repo, h)?;
    let tip_tree = tree_of(repo, Some(input.tip))?;
    let descends = |child: Oid, anc: Oid| {
        child == anc || repo.graph_descendant_of(child, anc).unwrap_or(false)
    };
    let facts = Facts {
        head: h,
        sandbox_head: c,
        head_has_sandbox: match (h, c) {
            (_, None) => true,
            (Some(h), Some(c)) => descends(h, c),
            (None, Some(_)) => false,
        },
        sandbox_has_head: match (h, c) {
            (None, _) => true,
            (Some(h), Some(c)) => descends(c, h),
            (Some(_), None) => false,
        },
        worktree_tree: now.tree,
        index_tree: now.index_tree,
        head_tree: head_tree.id(),
        tip_tree: tip_tree.id(),
        unchanged_since_push: input.pushed == Some((now.commit, now.index_commit)),
        pushed_known: input.pushed.is_some(),
    };
    let act = Act {
        repo,
        workdir: &workdir,
        input,
        head: &head,
        msg: format!("rclaude pull --apply from {}", input.label),
    };
    match decide(&facts) {
        Plan::UpToDate => Ok(ApplyOutcome::UpToDate),
        Plan::Refuse(why) => Ok(refuse(why.reason(), input.label)),
        Plan::OverPush {
            keep_local,
            move_head,
        } => {
            let now_tree = tree_of(repo, Some(now.commit))?;
            let changes = changed_paths(repo, &now_tree, &tip_tree)?;
            if let Some(refused) = act.refuse_if_in_the_way(&changes) {
                return Ok(refused);
            }
            if keep_local {
                keep_before_apply(repo, now.commit, now.index_commit)?;
            }
            checkout_paths(repo, &tip_tree, &changes.all, true)?;
            if move_head {
                act.move_branch(c)?;
            }
            Ok(ApplyOutcome::FastForward {
                from: h.map(|o| o.to_string()),
                to: c.or(h).map(|o| o.to_string()),
                uncommitted_edits: input.wip,
            })
        }
        Plan::Integrate(target) => act.integrate(target, h, c, &head_tree, &tip_tree),
    }
}

/// What acting on a [`Plan`] needs.
struct Act<'a> {
    repo: &'a Repository,
    workdir: &'a Path,
    input: &'a Input<'a>,
    head: &'a HeadState,
    /// Reflog message of the branch move.
    msg: String,
}

impl Act<'_> {
    /// A refusal when the checkout would overwrite a file that is not part of what is replaced.
    fn refuse_if_in_the_way(&self, changes: &Changes) -> Option<ApplyOutcome> {
        let p = in_the_way(self.workdir, changes)?;
        Some(refuse(
            format!(
                "the sandbox's files would replace {}, which is not part of what was pushed here (an ignored or new file)",
                p.display()
            ),
            self.input.label,
        ))
    }

    /// Set the index to `to`'s tree and move the branch (or detached HEAD) there.
    fn move_branch(&self, to: Option<Oid>) -> Result<(), SyncError> {
        set_index(self.repo, &tree_of(self.repo, to)?)?;
        if let Some(to) = to {
            move_head(self.repo, self.head, to, &self.msg)?;
        }
        Ok(())
    }

    /// Case (b): take the sandbox's commits into a clean tree, then its uncommitted edits.
    fn integrate(
        &self,
        target: Target,
        h: Option<Oid>,
        c: Option<Oid>,
        head_tree: &Tree<'_>,
        tip_tree: &Tree<'_>,
    ) -> Result<ApplyOutcome, SyncError> {
        let (repo, label) = (self.repo, self.input.label);
        let n = match target {
            Target::Head => h,
            Target::Sandbox => c,
            Target::Merge => match self.merge_commit(h, c)? {
                Ok(m) => Some(m),
                Err(refused) => return Ok(refused),
            },
        };
        let n_tree = tree_of(repo, n)?;
        let result_tree = if self.input.wip {
            let ancestor = tree_of(repo, c)?;
            let mut idx = repo
                .merge_trees(&ancestor, &n_tree, tip_tree, None)
                .map_err(SyncError::git("merging the sandbox's uncommitted edits"))?;
            if idx.has_conflicts() {
                let paths = conflict_paths(&idx);
                return Ok(refuse(
                    format!("the sandbox's uncommitted edits conflict with your commits ({paths})"),
                    label,
                ));
            }
            let id = idx
                .write_tree_to(repo)
                .map_err(SyncError::git("writing the merged tree"))?;
            repo.find_tree(id)
                .map_err(SyncError::git("reading the merged tree"))?
        } else {
            n_tree.clone()
        };
        if n == h && result_tree.id() == head_tree.id() {
            return Ok(ApplyOutcome::UpToDate);
        }
        let changes = changed_paths(repo, head_tree, &result_tree)?;
        if let Some(refused) = self.refuse_if_in_the_way(&changes) {
            return Ok(refused);
        }
        checkout_paths(repo, &result_tree, &changes.all, false)?;
        if n != h {
            self.move_branch(n)?;
        }
        Ok(match target {
            Target::Merge => ApplyOutcome::Merge {
                commit: n.map(|m| m.to_string()).unwrap_or_default(),
                uncommitted_edits: self.input.wip,
            },
            Target::Head | Target::Sandbox => ApplyOutcome::FastForward {
                from: h.map(|o| o.to_string()),
                to: n.map(|o| o.to_string()),
                uncommitted_edits: self.input.wip,
            },
        })
    }

    /// A merge commit of HEAD and the sandbox HEAD, or the refusal when they conflict or no
    /// committer identity is configured.
    fn merge_commit(
        &self,
        h: Option<Oid>,
        c: Option<Oid>,
    ) -> Result<Result<Oid, ApplyOutcome>, SyncError> {
        let (repo, label) = (self.repo, self.input.label);
        let (Some(h), Some(c)) = (h, c) else {
            return Err(SyncError::Internal("a merge needs two commits".into()));
        };
        let ours = repo
            .find_commit(h)
            .map_err(SyncError::git("reading HEAD"))?;
        let theirs = repo
            .find_commit(c)
            .map_err(SyncError::git("reading the sandbox HEAD"))?;
        let mut idx = repo
            .merge_commits(&ours, &theirs, None)
            .map_err(SyncError::git("merging the sandbox's commits"))?;
        if idx.has_conflicts() {
            let paths = conflict_paths(&idx);
            return Ok(Err(refuse(
                format!("the sandbox's commits conflict with yours ({paths})"),
                label,
            )));
        }
        let tree_id = idx
            .write_tree_to(repo)
            .map_err(SyncError::git("writing the merged tree"))?;
        let tree = repo
            .find_tree(tree_id)
            .map_err(SyncError::git("reading the merged tree"))?;
        let Ok(sig) = repo.signature() else {
            return Ok(Err(refuse(
                "a merge commit is needed but git user.name / user.email are not configured here",
                label,
            )));
        };
        let message =
            format!("Merge sandbox work from {label}\n\nMerged by rclaude pull --apply.\n");
        let m = repo
            .commit(None, &sig, &sig, &message, &tree, &[&ours, &theirs])
            .map_err(SyncError::git("writing the merge commit"))?;
        Ok(Ok(m))
    }
}

fn conflict_paths(idx: &git2::Index) -> String {
    let mut paths: Vec<String> = Vec::new();
    if let Ok(conflicts) = idx.conflicts() {
        for c in conflicts.flatten() {
            let e = c.our.or(c.their).or(c.ancestor);
            if let Some(e) = e {
                let p = String::from_utf8_lossy(&e.path).into_owned();
                if !paths.contains(&p) {
                    paths.push(p);
                }
            }
        }
    }
    let n = paths.len();
    let mut s = paths.into_iter().take(5).collect::<Vec<_>>().join(", ");
    if n > 5 {
        s.push_str(&format!(" and {} more", n - 5));
    }
    s
}

/// Keep the local work tree and index (as snapshot commits) before rewriting them.
fn keep_before_apply(repo: &Repository, snapshot: Oid, index: Oid) -> Result<(), SyncError> {
    let stamp = utc_stamp();
    let name = free_ref_name(repo, "refs/rclaude/before-apply/", &stamp);
    repo.reference(
        &name,
        snapshot,
        false,
        "rclaude: work tree before pull --apply",
    )
    .map_err(SyncError::git(format!("creating {name}")))?;
    let _ = repo.reference(
        &format!("{name}-index"),
        index,
        false,
        "rclaude: index before pull --apply",
    );
    tracing::info!(
        "kept the work tree before the apply as {name} ({})",
        short(&snapshot)
    );
    Ok(())
}
