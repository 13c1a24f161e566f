//! `rclaude fork NAME`: a new session that starts as a copy of a warm one.

use super::GlobalArgs;
use crate::error::{CliError, CliResult};

/// Make a new named session of this repository that starts with everything the source session
/// has — files, installed dependencies, build caches, sandbox-side commits and uncommitted
/// edits — without running `[setup]` again.
///
/// The source is the repository's default session, or `--from NAME` (`--session` works too).
/// On the local provider the sandbox is copied (copy-on-write where the file system supports
/// it), on E2B forked by E2B; on other providers the source's work is checkpointed and rebuilt
/// in a new sandbox, where `[setup]` runs again.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude fork try-2\n  rclaude fork try-3 --from try-2\n  rclaude fork clean --fresh      # the work only, [setup] run again\n  rclaude fork spike && rclaude claude -s spike \"try the other approach\""
)]
pub struct Args {
    /// The new session's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The session to copy (default: the repository's default session).
    #[arg(long, value_name = "SESSION")]
    pub from: Option<String>,
    /// A new sandbox with the source's work (files, sandbox-side commits, uncommitted edits)
    /// rebuilt from a checkpoint, where `[setup]` runs again, instead of a copy of the whole
    /// sandbox (what providers that cannot copy sandboxes always do).
    #[arg(long)]
    pub fresh: bool,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let from = match (&args.from, &g.session) {
        (Some(_), Some(_)) => {
            return Err(CliError::usage("give the source once: --from or --session"));
        }
        (Some(f), None) => Some(f.clone()),
        (None, s) => s.clone(),
    };
    let ctx = match &from {
        Some(f) => {
            crate::session::validate_session_name(f).map_err(CliError::usage)?;
            g.local_named_ctx(f)?
        }
        None => g.checkout_ctx()?,
    };
    crate::session::validate_session_name(&args.name).map_err(CliError::usage)?;
    let target = g.local_named_ctx(&args.name)?;
    let record = crate::ops::fork::fork(&ctx, &target, &args.name, args.fresh).await?;
    ctx.ui.info(format!(
        "Session \"{}\" is up ({}); `-s {}` reaches it",
        args.name, record.sandbox_id, args.name
    ));
    Ok(0)
}
