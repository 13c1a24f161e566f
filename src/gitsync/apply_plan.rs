//! What `pull --apply` must do, decided from facts alone (no I/O): nothing, fast-forward over
//! what was pushed, refuse, or integrate the sandbox's commits into a clean branch.
//! [`super::local_apply::apply`] gathers the facts, calls [`decide`], then acts.

use git2::Oid;

/// The local and pulled state `apply` decides on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts {
    /// Local HEAD commit (`None` on an unborn branch).
    pub head: Option<Oid>,
    /// The sandbox HEAD (`None`: the sandbox has no commits).
    pub sandbox_head: Option<Oid>,
    /// `head` contains `sandbox_head` (trivially when the sandbox has no commits).
    pub head_has_sandbox: bool,
    /// `sandbox_head` contains `head` (trivially when the branch is unborn).
    pub sandbox_has_head: bool,
    /// Trees of the local work tree, of the index and of HEAD right now.
    pub worktree_tree: Oid,
    pub index_tree: Oid,
    pub head_tree: Oid,
    /// Tree of the pulled tip (sandbox HEAD plus its uncommitted edits).
    pub tip_tree: Oid,
    /// The local work tree and index are exactly what was last pushed to this sandbox.
    pub unchanged_since_push: bool,
    /// This machine has a record of what it pushed to this sandbox.
    pub pushed_known: bool,
}

/// Which commit the branch ends on when integrating into a clean tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The local HEAD already has the sandbox's commits.
    Head,
    /// The sandbox HEAD is ahead: fast-forward to it.
    Sandbox,
    /// Histories diverged: a merge commit of both.
    Merge,
}

/// Why nothing is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Uncommitted local changes differ from what was last pushed.
    ChangedSincePush,
    /// Uncommitted local changes, and no record of a push to this sandbox.
    UnknownChanges,
}

impl Refusal {
    /// The reason, as the user reads it.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::ChangedSincePush => {
                "you have uncommitted changes here that differ from what was last pushed to the sandbox"
            }
            Refusal::UnknownChanges => {
                "you have uncommitted changes here, and this sandbox has no record of them"
            }
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The branch and work tree already have the sandbox's work.
    UpToDate,
    /// Case (a): nothing changed here since the push and the sandbox built on this HEAD: make
    /// the work tree equal the pulled tree and move the branch to the sandbox HEAD.
    OverPush {
        /// Local uncommitted work is rewritten: keep it under `refs/rclaude/before-apply/` first.
        keep_local: bool,
        /// The branch moves (the sandbox made commits).
        move_head: bool,
    },
    /// Case (b): the tree here is clean: take the sandbox's commits (as [`Target`] says), then
    /// its uncommitted edits.
    Integrate(Target),
    /// Local work could be lost: change nothing.
    Refuse(Refusal),
}

/// Decide what `pull --apply` does (see the module docs of `local_apply`).
pub(crate) fn decide(f: &Facts) -> Plan {
    if f.worktree_tree == f.tip_tree && f.head_has_sandbox {
        return Plan::UpToDate;
    }
    if f.unchanged_since_push && f.sandbox_has_head {
        let dirty = f.worktree_tree != f.head_tree || f.index_tree != f.head_tree;
        return Plan::OverPush {
            keep_local: dirty,
            move_head: f.sandbox_head.is_some() && f.sandbox_head != f.head,
        };
    }
    let clean = f.worktree_tree == f.head_tree && f.index_tree == f.head_tree;
    if !clean {
        return Plan::Refuse(if f.pushed_known {
            Refusal::ChangedSincePush
        } else {
            Refusal::UnknownChanges
        });
    }
    Plan::Integrate(match (f.head, f.sandbox_head) {
        (None, _) => Target::Sandbox,
        (Some(_), None) => Target::Head,
        _ if f.head_has_sandbox => Target::Head,
        _ if f.sandbox_has_head => Target::Sandbox,
        _ => Target::Merge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    /// A clean checkout at commit 1 (tree 10) that pushed exactly this; the sandbox is at 1.
    fn clean() -> Facts {
        Facts {
            head: Some(oid(1)),
            sandbox_head: Some(oid(1)),
            head_has_sandbox: true,
            sandbox_has_head: true,
            worktree_tree: oid(10),
            index_tree: oid(10),
            head_tree: oid(10),
            tip_tree: oid(10),
            unchanged_since_push: true,
            pushed_known: true,
        }
    }

    #[test]
    fn the_same_tree_and_commits_are_up_to_date() {
        assert_eq!(decide(&clean()), Plan::UpToDate);
    }

    #[test]
    fn sandbox_edits_over_an_unchanged_push_fast_forward_in_place() {
        let f = Facts {
            tip_tree: oid(11),
            ..clean()
        };
        assert_eq!(
            decide(&f),
            Plan::OverPush {
                keep_local: false,
                move_head: false
            }
        );
        // The sandbox committed on top, and there were uncommitted edits here (pushed).
        let f = Facts {
            sandbox_head: Some(oid(2)),
            head_has_sandbox: false,
            worktree_tree: oid(12),
            tip_tree: oid(11),
            ..clean()
        };
        assert_eq!(
            decide(&f),
            Plan::OverPush {
                keep_local: true,
                move_head: true
            }
        );
    }

    #[test]
    fn local_changes_after_the_push_refuse() {
        let f = Facts {
            worktree_tree: oid(12),
            tip_tree: oid(11),
            unchanged_since_push: false,
            ..clean()
        };
        assert_eq!(decide(&f), Plan::Refuse(Refusal::ChangedSincePush));
        let f = Facts {
            pushed_known: false,
            ..f
        };
        assert_eq!(decide(&f), Plan::Refuse(Refusal::UnknownChanges));
        // A dirty index alone is a local change too.
        let f = Facts {
            index_tree: oid(13),
            tip_tree: oid(11),
            unchanged_since_push: false,
            ..clean()
        };
        assert_eq!(decide(&f), Plan::Refuse(Refusal::ChangedSincePush));
    }

    #[test]
    fn a_clean_tree_integrates_by_history() {
        let moved = |head_has_sandbox, sandbox_has_head| Facts {
            sandbox_head: Some(oid(2)),
            head_has_sandbox,
            sandbox_has_head,
            tip_tree: oid(11),
            unchanged_since_push: false,
            ..clean()
        };
        assert_eq!(
            decide(&moved(false, true)),
            Plan::Integrate(Target::Sandbox)
        );
        assert_eq!(decide(&moved(true, false)), Plan::Integrate(Target::Head));
        assert_eq!(decide(&moved(false, false)), Plan::Integrate(Target::Merge));
    }

    #[test]
    fn unborn_and_empty_histories() {
        // Unborn branch here, clean: take the sandbox's commits.
        let f = Facts {
            head: None,
            head_has_sandbox: false,
            unchanged_since_push: false,
            tip_tree: oid(11),
            ..clean()
        };
        assert_eq!(decide(&f), Plan::Integrate(Target::Sandbox));
        // The sandbox has no commits, only edits: keep HEAD, apply the edits.
        let f = Facts {
            sandbox_head: None,
            sandbox_has_head: false,
            unchanged_since_push: false,
            tip_tree: oid(11),
            ..clean()
        };
        assert_eq!(decide(&f), Plan::Integrate(Target::Head));
    }
}
