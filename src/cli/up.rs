//! `rclaude up`: create or resume this repository's sandbox, sync the work tree, run setup.

use super::GlobalArgs;
use crate::error::CliResult;
use crate::ops::up::{OtherProvider, UpOptions, bring_up};

/// Create or resume this repository's sandbox, sync your work tree into it, and run setup.
///
/// The first `up` creates the sandbox on the provider named in `.rclaude.toml`, copies the
/// repository in as a git bundle plus a snapshot of your uncommitted and untracked files, runs
/// `[setup]` once and `[start]`. Later calls resume a paused sandbox, send only what changed,
/// re-run `[setup]` only when its lines changed, and run `[start]` again.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude up\n  rclaude up --no-setup\n  rclaude up --provider e2b     # move the session to E2B, its work included\n  rclaude -C ../other-repo up --quiet"
)]
pub struct Args {
    /// Skip `[setup]` even when its lines changed.
    #[arg(long)]
    pub no_setup: bool,
    /// Then keep live-syncing local edits (like `rclaude watch`); `[sync] watch = true` makes
    /// this the default on a terminal.
    #[arg(long, conflicts_with = "no_watch")]
    pub watch: bool,
    /// Don't live-sync even when `[sync] watch = true`.
    #[arg(long)]
    pub no_watch: bool,
    /// Run a new sandbox with your own provider even when the server you are logged in to
    /// offers managed sessions (as `[sandbox] managed = false` does).
    #[arg(long)]
    pub direct: bool,
    /// Run the sandbox on this provider with your own credentials. A session on another
    /// provider moves here: its latest work is checkpointed (or taken from its latest
    /// checkpoint when the old sandbox is gone), rebuilt in a new sandbox (the same files,
    /// commits and branch; `[setup]` runs again), and the old sandbox is destroyed.
    #[arg(long, value_name = "NAME", value_parser = super::args::parse_kind)]
    pub provider: Option<crate::config::ProviderKind>,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let mut ctx = g.ctx().await?;
    if args.direct || args.provider.is_some() {
        ctx.config.sandbox.managed = Some(false);
    }
    if let Some(kind) = args.provider {
        ctx.config.sandbox.provider = kind;
    }
    // Sandboxes of `rclaude ci` runs that were killed before they could destroy them.
    crate::ops::leftovers::reap(&ctx.ui).await;
    let watch = args.watch || (ctx.config.sync.watch && !args.no_watch && ctx.ui.is_fancy());
    let guard = if watch {
        Some(crate::ops::watch::only_watch(&ctx)?)
    } else {
        None
    };
    let live = bring_up(
        &ctx,
        UpOptions {
            sync: true,
            setup: !args.no_setup,
            create_if_gone: true,
            other_provider: if args.provider.is_some() {
                OtherProvider::Move
            } else {
                OtherProvider::Refuse
            },
        },
    )
    .await?;
    // The dashboard links the session's labelled ports.
    crate::ops::ports::report(&ctx, &live.record);
    ctx.reporter.flush().await;
    ctx.ui.info(format!(
        "Sandbox {} ({}) is up; the repository is at {}",
        live.record.sandbox_id, live.record.provider, live.record.workdir
    ));
    let isolation =
        crate::ops::isolation::local_isolation(&live.record.provider, &live.record.sandbox_id)
            .await;
    if let Some(w) = isolation
        .as_ref()
        .and_then(crate::ops::isolation::isolation_warning)
    {
        ctx.ui.warn(w);
    }
    if let Some(guard) = guard {
        return crate::ops::watch::watch_loop(&ctx, live, guard).await;
    }
    ctx.ui.info("  next: `rclaude run` lists tasks · `rclaude exec -- CMD` · `rclaude pull` brings work back");
    Ok(0)
}
