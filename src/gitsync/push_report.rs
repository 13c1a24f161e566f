//! What a push reports: what was sent, what sandbox work was saved and how to look at it.

use serde::Serialize;

use super::SyncState;

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
