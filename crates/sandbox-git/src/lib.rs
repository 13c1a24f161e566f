//! `rclaude-sandbox-git`: the sandbox-side half of rclaude's git sync. Each step is a POSIX
//! shell script ([`scripts`]) run through [`Sandbox::exec`](rclaude_sandbox::provider::Sandbox)
//! with its parameters in environment variables (never spliced into the script text). Every git
//! call disables hooks and auto-gc; paths only travel NUL-separated. Scripts answer with
//! `RCLAUDE:key=value` lines on stdout (anything else is ignored).
//!
//! Used by the CLI (sync, pull, checkpoints, rebuilds) and by the server (the checkpoint it takes
//! before a pause it makes itself), so both read a sandbox the same way.
//!
//! Sandbox layout (all under the repository's `.git`):
//! * `rclaude/identity`: random id written once by [`init_sandbox`];
//! * `rclaude/synced`: what the last complete apply installed (snapshot, index, head, branch);
//! * `rclaude/applying`: marker present while an apply touches HEAD, index and work tree;
//! * `rclaude/lock`: `flock` lock serialising apply/export steps;
//! * `rclaude/export/`: the index and stamp of the agent's in-process export ([`native`]);
//! * `rclaude/tmp/`: uploads (`*.part` renamed when complete), bundles, temporary indexes;
//! * refs: `refs/rclaude/{snapshot,index,head}` (last applied), `refs/rclaude/push/*` (incoming),
//!   `refs/rclaude/saved/<UTC stamp>` (sandbox work saved before a sync),
//!   `refs/rclaude/pull/tip` (last pulled state).

mod apply;
mod error;
mod export;
mod init;
pub mod native;
mod query;
mod restore;
mod scripts;
mod step;

pub use apply::{Applied, ApplyParams, SavedInSandbox, apply};
pub use error::StepError;
pub use export::{ExportMode, Exported, export};
pub use init::{check_workdir, init_sandbox, remote_tmp_path};
pub use query::{Query, RepoState, Synced, query};
pub use restore::{RestoreParams, restore};
