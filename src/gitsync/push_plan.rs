//! What a push must do, decided from facts alone (no I/O): skip, or send a bundle (complete
//! or incremental), and which saved-work refs of the sandbox to bring back. [`super::push`]
//! gathers the facts, calls [`decide`], then acts.

use std::collections::BTreeMap;

use git2::Oid;

use super::SyncState;
use super::remote::{Query, SavedInSandbox};

/// Where saved sandbox work lives (`refs/rclaude/saved/<time>`).
const SAVED_PREFIX: &str = "refs/rclaude/saved/";
/// The sandbox's record of the last snapshot it installed.
const SNAPSHOT_REF: &str = "refs/rclaude/snapshot";

/// The local side of a push: the snapshot just taken and what the last sync recorded.
#[derive(Debug, Clone)]
pub(crate) struct Facts<'a> {
    /// Work-tree snapshot commit.
    pub snapshot: Oid,
    /// Index snapshot commit.
    pub index: Oid,
    /// HEAD commit (`None` on an unborn branch).
    pub head: Option<Oid>,
    /// Checked-out branch (`None` when detached).
    pub branch: Option<&'a str>,
    /// Blob id of the sandbox's `.git/info/exclude` this push would install.
    pub excludes_id: &'a str,
    /// This machine's record of the last sync with this sandbox.
    pub state: Option<&'a SyncState>,
    /// The user asked for a complete bundle (`sync --full`).
    pub force_full: bool,
}

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// The sandbox already has exactly this work tree, index, HEAD and ignore rules.
    Skip,
    /// Send a bundle of what the sandbox lacks (`full`: everything) and apply it.
    Send {
        full: bool,
        /// The sandbox's last installed snapshot, as a base for diffs of its saved work.
        prev_snapshot: Option<Oid>,
    },
}

/// A saved-work ref in the sandbox to bring back here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WantedRef {
    /// Its name in the sandbox (`refs/rclaude/saved/...`).
    pub name: String,
    pub oid: Oid,
    /// What it saved (`worktree`, `commits`, `index`, `branch`); empty for an earlier one.
    pub kinds: Vec<String>,
    /// Saved by an earlier sync that could not bring it back.
    pub earlier: bool,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub action: Action,
    /// The sandbox is not the one the last sync talked to (its identity changed).
    pub recreated: bool,
    /// Saved refs already brought back here (carried over unless the sandbox was recreated).
    pub fetched_saved: BTreeMap<String, String>,
    /// Saved refs in the sandbox that no earlier sync brought back.
    pub leftovers: Vec<WantedRef>,
}

/// Decide what a push does, from the local facts and the sandbox's answer to the query step.
pub(crate) fn decide(f: &Facts<'_>, q: &Query) -> Decision {
    let recreated = f
        .state
        .is_some_and(|s| !s.identity.is_empty() && s.identity != q.identity);
    let full = f.force_full || recreated;
    let fetched_saved = match f.state {
        Some(s) if !recreated => s.fetched_saved.clone(),
        _ => BTreeMap::new(),
    };
    let up_to_date = !q.marker
        && q.synced.snapshot == Some(f.snapshot)
        && q.get_ref(SNAPSHOT_REF) == Some(f.snapshot)
        && q.synced.index == Some(f.index)
        && q.synced.head == f.head
        && q.synced.branch.as_deref() == f.branch
        && q.synced.excludes.as_deref() == Some(f.excludes_id);
    let leftovers = q
        .refs
        .iter()
        .filter(|(n, _)| n.starts_with(SAVED_PREFIX) && !fetched_saved.contains_key(n))
        .map(|(n, o)| WantedRef {
            name: n.clone(),
            oid: *o,
            kinds: Vec::new(),
            earlier: true,
        })
        .collect();
    let action = if up_to_date && !full {
        Action::Skip
    } else {
        Action::Send {
            full,
            prev_snapshot: q.synced.snapshot.or_else(|| q.get_ref(SNAPSHOT_REF)),
        }
    };
    Decision {
        action,
        recreated,
        fetched_saved,
        leftovers,
    }
}

/// The refs to bring back after an apply: what it saved, then the leftovers it did not.
pub(crate) fn wanted_after_apply(
    saved: &[SavedInSandbox],
    leftovers: &[WantedRef],
) -> Vec<WantedRef> {
    let mut wanted: Vec<WantedRef> = saved
        .iter()
        .map(|s| WantedRef {
            name: s.name.clone(),
            oid: s.oid,
            kinds: s.kinds.clone(),
            earlier: false,
        })
        .collect();
    for l in leftovers {
        if !wanted.iter().any(|w| w.name == l.name) {
            wanted.push(l.clone());
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitsync::remote::{RepoState, Synced};

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    fn facts(state: Option<&SyncState>) -> Facts<'_> {
        Facts {
            snapshot: oid(1),
            index: oid(2),
            head: Some(oid(3)),
            branch: Some("main"),
            excludes_id: "ex",
            state,
            force_full: false,
        }
    }

    /// A sandbox that installed exactly `facts(..)`.
    fn synced_query() -> Query {
        Query {
            state: RepoState::Ready,
            identity: "sbx-1".into(),
            refs: vec![("refs/rclaude/snapshot".into(), oid(1))],
            marker: false,
            synced: Synced {
                snapshot: Some(oid(1)),
                index: Some(oid(2)),
                head: Some(oid(3)),
                branch: Some("main".into()),
                excludes: Some("ex".into()),
            },
        }
    }

    fn state(identity: &str) -> SyncState {
        SyncState {
            identity: identity.into(),
            fetched_saved: [("refs/rclaude/saved/a".to_string(), oid(9).to_string())].into(),
            ..SyncState::default()
        }
    }

    #[test]
    fn an_unchanged_tree_is_skipped() {
        let s = state("sbx-1");
        let d = decide(&facts(Some(&s)), &synced_query());
        assert_eq!(d.action, Action::Skip);
        assert!(!d.recreated);
        assert_eq!(d.fetched_saved, s.fetched_saved);
    }

    #[test]
    fn any_difference_sends_an_incremental_bundle() {
        let changes: [fn(&mut Query); 7] = [
            |q| q.synced.snapshot = Some(oid(7)),
            |q| q.refs.clear(),
            |q| q.synced.index = None,
            |q| q.synced.head = Some(oid(7)),
            |q| q.synced.branch = Some("other".into()),
            |q| q.synced.excludes = Some("older".into()),
            |q| q.marker = true,
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut q = synced_query();
            change(&mut q);
            let d = decide(&facts(None), &q);
            assert!(
                matches!(d.action, Action::Send { full: false, .. }),
                "change {i}: {d:?}"
            );
        }
    }

    #[test]
    fn a_recreated_sandbox_gets_everything_and_forgets_fetched_refs() {
        let s = state("sbx-old");
        let d = decide(&facts(Some(&s)), &synced_query());
        assert!(d.recreated);
        assert!(matches!(d.action, Action::Send { full: true, .. }));
        assert!(d.fetched_saved.is_empty());
        // An empty recorded identity (first sync) is not a recreation.
        let d = decide(&facts(Some(&state(""))), &synced_query());
        assert!(!d.recreated);
    }

    #[test]
    fn sync_full_sends_everything_even_when_up_to_date() {
        let mut f = facts(None);
        f.force_full = true;
        let d = decide(&f, &synced_query());
        assert_eq!(
            d.action,
            Action::Send {
                full: true,
                prev_snapshot: Some(oid(1))
            }
        );
    }

    #[test]
    fn the_previous_snapshot_falls_back_to_the_snapshot_ref() {
        let mut q = synced_query();
        q.synced = Synced::default();
        q.refs = vec![("refs/rclaude/snapshot".into(), oid(5))];
        let d = decide(&facts(None), &q);
        assert_eq!(
            d.action,
            Action::Send {
                full: false,
                prev_snapshot: Some(oid(5))
            }
        );
    }

    #[test]
    fn leftovers_are_saved_refs_not_yet_fetched() {
        let s = state("sbx-1");
        let mut q = synced_query();
        q.refs.push(("refs/rclaude/saved/a".into(), oid(9)));
        q.refs.push(("refs/rclaude/saved/b".into(), oid(8)));
        q.refs.push(("refs/heads/main".into(), oid(3)));
        let d = decide(&facts(Some(&s)), &q);
        assert_eq!(d.action, Action::Skip);
        assert_eq!(
            d.leftovers,
            [WantedRef {
                name: "refs/rclaude/saved/b".into(),
                oid: oid(8),
                kinds: vec![],
                earlier: true
            }]
        );
    }

    #[test]
    fn refs_saved_by_this_apply_come_first_and_are_not_repeated() {
        let saved = [SavedInSandbox {
            name: "refs/rclaude/saved/new".into(),
            oid: oid(4),
            kinds: vec!["worktree".into()],
        }];
        let leftovers = [
            WantedRef {
                name: "refs/rclaude/saved/new".into(),
                oid: oid(4),
                kinds: vec![],
                earlier: true,
            },
            WantedRef {
                name: "refs/rclaude/saved/old".into(),
                oid: oid(6),
                kinds: vec![],
                earlier: true,
            },
        ];
        let w = wanted_after_apply(&saved, &leftovers);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].name, "refs/rclaude/saved/new");
        assert!(!w[0].earlier);
        assert_eq!(w[0].kinds, ["worktree"]);
        assert_eq!(w[1].name, "refs/rclaude/saved/old");
    }
}
