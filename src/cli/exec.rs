//! `rclaude exec -- CMD...`: run a command in the sandbox with live output and its exit code.

use super::GlobalArgs;
use crate::error::{CliError, CliResult};
use crate::ops::context::Ctx;
use crate::ops::stream::{Input, Sink, run_streamed_with};
use crate::ops::up::{UpOptions, bring_up};
use crate::provider::ExecRequest;

/// Run a command in the sandbox, streaming its output; exit with its exit code.
///
/// The sandbox is brought up and your work tree synced first (skip with `--no-sync`). The
/// command runs in the sandbox directory that matches your current directory in the repository.
/// A single argument is a shell command line (pipes and `&&` work); several arguments are quoted
/// and run as one command. `[env]` and `[secrets]` from .rclaude.toml are set.
///
/// When stdin is not a terminal (a pipe or a file), it is streamed to the command, and its end
/// closes the command's stdin; `--no-stdin` gives the command an empty stdin instead. SIGINT
/// (Ctrl-C), SIGTERM and SIGHUP stop the remote command (SIGTERM, then SIGKILL) before rclaude
/// exits with 130, 143 or 129.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude exec -- cargo test -p core\n  rclaude exec -- 'ls | wc -l'\n  rclaude exec -e RUST_LOG=debug --timeout 10m -- ./scripts/check.sh\n  gzip -dc dump.sql.gz | rclaude exec -- psql app"
)]
pub struct Args {
    /// Don't sync the work tree first.
    #[arg(long)]
    pub no_sync: bool,
    /// Working directory, relative to the repository root.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Extra environment variable for the command (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Kill the command after this long (e.g. 90s, 10m).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Don't forward stdin, even when it is a pipe or a file.
    #[arg(short = 'n', long)]
    pub no_stdin: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let ctx = g.ctx().await?;
    let env_extra = super::args::parse_env_pairs(&args.env)?;
    let timeout = args
        .timeout
        .as_deref()
        .map(super::args::parse_duration)
        .transpose()?;
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
    let cwd = remote_cwd(&ctx, &live.record.workdir, args.cwd.as_deref(), g)?;
    let mut env = ctx.exec_env(&live.record, crate::config::SecretPhase::Run)?;
    env.extend(env_extra);
    let req = ExecRequest::shell(super::args::command_line(&args.command))
        .cwd(cwd)
        .env(env)
        .timeout(timeout);

    let input = if !args.no_stdin && stdin_has_input() {
        Input::Forward
    } else {
        Input::Closed
    };
    let status = run_streamed_with(&*live.sandbox, req, Sink::Terminal, input).await?;
    Ok(status.shell_code())
}

/// Whether our stdin is something to forward: not a terminal (whose keystrokes belong to the
/// user), not /dev/null (nothing to send), and open.
fn stdin_has_input() -> bool {
    use std::io::IsTerminal;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return false;
    }
    let Ok(meta) =
        std::fs::metadata("/proc/self/fd/0").or_else(|_| std::fs::metadata("/dev/stdin"))
    else {
        return false;
    };
    let null = std::fs::metadata("/dev/null").map(|m| m.rdev()).ok();
    !(meta.file_type().is_char_device() && Some(meta.rdev()) == null)
}

/// The sandbox directory for `--cwd`, or the one matching the current directory.
fn remote_cwd(ctx: &Ctx, workdir: &str, cwd: Option<&str>, g: &GlobalArgs) -> CliResult<String> {
    let rel = match cwd {
        Some(c) => {
            let p = std::path::Path::new(c);
            if p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(CliError::usage(format!(
                    "--cwd {c:?} must be relative to the repository root, without `..`"
                )));
            }
            c.trim_end_matches('/').to_string()
        }
        None => {
            let here = g.start_dir()?.canonicalize().unwrap_or_default();
            here.strip_prefix(&ctx.repo.root)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default()
        }
    };
    Ok(if rel.is_empty() || rel == "." {
        workdir.to_string()
    } else {
        format!("{workdir}/{rel}")
    })
}
