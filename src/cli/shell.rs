//! `rclaude shell [-- CMD]`: an interactive terminal in the sandbox.

use super::GlobalArgs;
use crate::error::CliResult;
use crate::ops::terminal::interactive;
use crate::ops::up::{UpOptions, bring_up};
use crate::provider::{Command, PtyRequest};

/// Open an interactive terminal in the sandbox: a login shell in the repository, or CMD.
///
/// Your terminal is switched to raw mode, so every key (Ctrl-C included) goes to the sandbox;
/// it is restored when the shell exits. Window size changes follow. rclaude exits with the
/// shell's exit code. The work tree is synced first (skip with `--no-sync`).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude shell\n  rclaude shell -- htop\n  rclaude shell --no-sync -- python3"
)]
pub struct Args {
    /// Don't sync the work tree first.
    #[arg(long)]
    pub no_sync: bool,
    /// Run this instead of a login shell.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let ctx = g.ctx().await?;
    let live = bring_up(
        &ctx,
        UpOptions {
            sync: !args.no_sync,
            setup: true,
            create_if_gone: false,
            other_provider: crate::ops::up::OtherProvider::Use,
        },
    )
    .await?;
    let env = ctx.exec_env(&live.record, crate::config::SecretPhase::Run)?;
    let command = (!args.command.is_empty())
        .then(|| Command::Shell(super::args::command_line(&args.command)));
    let req = PtyRequest {
        command,
        cwd: Some(live.record.workdir.clone()),
        env,
        cols: 0,
        rows: 0,
        tag: None,
    };
    interactive(&*live.sandbox, req).await
}
