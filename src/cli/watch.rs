//! `rclaude watch`: live-sync local edits into the sandbox within milliseconds.

use super::GlobalArgs;
use crate::error::CliResult;
use crate::ops::up::{UpOptions, bring_up};
use crate::ops::watch::{only_watch, watch_loop};

/// Keep the sandbox's work tree in step with local edits as they happen.
///
/// Starts with a bundle sync (so the sandbox is exact), then watches the work tree and sends
/// each burst of changes as one batch: uploads through `/files`, removals through the file-system
/// RPC. `.gitignore` (nested too), `.git/info/exclude`, the global excludes file and
/// `[sync] ignore` are honoured; `.git` is never live-synced — a commit, checkout or rebase here
/// triggers a bundle sync instead. A sandbox edit to a file you then change locally is kept in
/// the sandbox as `<file>.rclaude-conflict-<time>`; a file changed in the sandbox is not deleted
/// when you delete it here. One change deleting more than `[sync] max_delete_percent` of the
/// tree stops and asks (or fails when not interactive). Ctrl-C stops.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude watch\n  rclaude up --watch\n  rclaude watch --quiet &    # in the background, warnings only"
)]
pub struct Args {}

pub async fn run(g: &GlobalArgs, _args: Args) -> CliResult {
    let ctx = g.ctx().await?;
    let guard = only_watch(&ctx)?;
    let live = bring_up(
        &ctx,
        UpOptions {
            sync: true,
            setup: true,
            create_if_gone: true,
            other_provider: crate::ops::up::OtherProvider::Use,
        },
    )
    .await?;
    watch_loop(&ctx, live, guard).await
}
