//! `rclaude resume`: start a paused sandbox again.

use super::GlobalArgs;
use crate::error::CliResult;
use crate::ops::up::{UpOptions, bring_up};

/// Resume a paused sandbox and run `[start]`; files are as they were at pause.
///
/// Unlike `up`, this does not sync your work tree (use `rclaude sync` or `up` for that).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude resume\n  rclaude resume && rclaude exec -- git status"
)]
pub struct Args {}

pub async fn run(g: &GlobalArgs, _args: Args) -> CliResult {
    let ctx = g.ctx().await?;
    ctx.require_session()?;
    let live = bring_up(
        &ctx,
        UpOptions {
            sync: false,
            setup: false,
            create_if_gone: false,
            other_provider: crate::ops::up::OtherProvider::Use,
        },
    )
    .await?;
    ctx.ui.info(format!(
        "Sandbox {} is running; the repository is at {}",
        live.record.sandbox_id, live.record.workdir
    ));
    Ok(0)
}
