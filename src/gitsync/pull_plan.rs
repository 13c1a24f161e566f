//! What a pull does with what arrived, decided from facts alone (no I/O): how the local
//! `rclaude/<branch>` moves, and which git commands to suggest. [`super::pull`] gathers the
//! facts, decides with these functions, then acts.

use git2::Oid;

/// What the sandbox's export answered, named: the commit to store and what it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pulled {
    /// The commit to store (the sandbox HEAD, the WIP commit on it, or the requested ref).
    pub tip: Oid,
    /// The sandbox HEAD (`None`: the sandbox has no commits).
    pub sandbox_head: Option<Oid>,
    /// `tip` is a WIP commit holding the sandbox's uncommitted edits.
    pub wip: bool,
    /// The name the local branch is made from (the sandbox's branch, or the ref's short name).
    pub label: String,
}

/// How the local pull branch moves to the new tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BranchUpdate {
    /// The branch does not exist yet.
    Create,
    /// It already points at the tip.
    Unchanged,
    /// The tip descends from it.
    FastForward,
    /// The old tip is not part of the new one: keep it under `refs/rclaude/replaced/` first.
    ReplaceKeepingOld,
}

/// Decide how the branch moves: `old` is its current tip, `tip_has_old` whether the new tip
/// descends from it.
pub(crate) fn branch_update(old: Option<Oid>, tip: Oid, tip_has_old: bool) -> BranchUpdate {
    match old {
        None => BranchUpdate::Create,
        Some(o) if o == tip => BranchUpdate::Unchanged,
        Some(_) if tip_has_old => BranchUpdate::FastForward,
        Some(_) => BranchUpdate::ReplaceKeepingOld,
    }
}

/// The git commands a pull suggests for taking branch `name`: `commits` the sandbox made that
/// HEAD lacks, `unborn` when this branch has no commits yet, `wip` when the branch's tip holds
/// uncommitted sandbox edits.
pub(crate) fn hint_commands(name: &str, commits: usize, unborn: bool, wip: bool) -> Vec<String> {
    let mut hints = Vec::new();
    if commits > 0 {
        hints.push(format!(
            "git log --stat HEAD..{name}    # review the sandbox's commits"
        ));
    }
    if unborn {
        // No HEAD to diff against or cherry-pick onto.
        hints.push(format!(
            "git log --stat {name}    # review the sandbox's work"
        ));
        hints.push(format!(
            "git merge {name}    # take it{}",
            if wip {
                " (its uncommitted edits arrive as a commit you can amend)"
            } else {
                ""
            }
        ));
        return hints;
    }
    hints.push(format!("git diff HEAD {name}    # everything that differs"));
    match (wip, commits > 0) {
        (true, true) => {
            hints.push(format!(
                "git merge {name}~1    # take the sandbox's commits"
            ));
            hints.push(format!(
                "git cherry-pick --no-commit {name}    # then its uncommitted edits, left uncommitted"
            ));
        }
        (true, false) => hints.push(format!(
            "git cherry-pick --no-commit {name}    # take its uncommitted edits, left uncommitted"
        )),
        (false, _) => hints.push(format!("git merge {name}    # take the sandbox's work")),
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    #[test]
    fn the_branch_is_created_kept_fast_forwarded_or_replaced() {
        assert_eq!(branch_update(None, oid(1), false), BranchUpdate::Create);
        assert_eq!(
            branch_update(Some(oid(1)), oid(1), true),
            BranchUpdate::Unchanged
        );
        assert_eq!(
            branch_update(Some(oid(1)), oid(2), true),
            BranchUpdate::FastForward
        );
        assert_eq!(
            branch_update(Some(oid(1)), oid(2), false),
            BranchUpdate::ReplaceKeepingOld
        );
    }

    #[test]
    fn hints_fit_what_arrived() {
        let commits_only = hint_commands("rclaude/main", 2, false, false);
        assert_eq!(commits_only.len(), 3);
        assert!(commits_only[0].starts_with("git log --stat HEAD..rclaude/main"));
        assert!(commits_only[2].starts_with("git merge rclaude/main "));

        let edits_only = hint_commands("rclaude/main", 0, false, true);
        assert_eq!(edits_only.len(), 2);
        assert!(edits_only[1].starts_with("git cherry-pick --no-commit rclaude/main "));

        let both = hint_commands("rclaude/main", 1, false, true);
        assert!(
            both.iter()
                .any(|h| h.starts_with("git merge rclaude/main~1 "))
        );
        assert!(both.iter().any(|h| h.starts_with("git cherry-pick")));

        let unborn = hint_commands("rclaude/main", 0, true, true);
        assert_eq!(unborn.len(), 2);
        assert!(unborn[1].contains("a commit you can amend"));
        assert!(!unborn.iter().any(|h| h.contains("HEAD")));
    }
}
