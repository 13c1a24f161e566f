//! `rclaude exec -- CMD...`: run a command in the sandbox with live output and its exit code.

use std::collections::BTreeMap;

use super::GlobalArgs;
use super::context::Ctx;
use super::stream::{Input, Sink, run_streamed_with};
use super::up::{UpOptions, bring_up};
use crate::config::HumanDuration;
use crate::error::{CliError, CliResult};
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
    let ctx = Ctx::load(g)?;
    let env_extra = parse_env_pairs(&args.env)?;
    let timeout = args.timeout.as_deref().map(parse_duration).transpose()?;
    let live = bring_up(
        &ctx,
        UpOptions {
            sync: !args.no_sync,
            setup: true,
            create_if_gone: false,
        },
    )
    .await?;
    let cwd = remote_cwd(&ctx, &live.record.workdir, args.cwd.as_deref(), g)?;
    let mut env = ctx.exec_env(&live.record)?;
    env.extend(env_extra);
    let req = ExecRequest::shell(command_line(&args.command))
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

/// One argument is used verbatim as a shell line; several are shell-quoted and joined.
pub fn command_line(args: &[String]) -> String {
    match args {
        [one] => one.clone(),
        many => many
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Quote for POSIX sh when needed.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `KEY=VALUE` pairs from the command line.
pub fn parse_env_pairs(pairs: &[String]) -> CliResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| CliError::usage(format!("--env {p:?} is not KEY=VALUE")))?;
        if k.is_empty()
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || k.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(CliError::usage(format!(
                "--env {p:?}: {k:?} is not a valid variable name"
            )));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Parse a `--timeout` value with the config's duration syntax.
pub fn parse_duration(s: &str) -> CliResult<std::time::Duration> {
    s.parse::<HumanDuration>()
        .map(|d| d.0)
        .map_err(|e| CliError::usage(format!("--timeout {s:?}: {e}")))
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
            let here = super::context::start_dir(g)?
                .canonicalize()
                .unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(command_line(&["ls | wc -l".into()]), "ls | wc -l");
        assert_eq!(
            command_line(&["echo".into(), "a b".into(), "it's".into()]),
            r"echo 'a b' 'it'\''s'"
        );
        assert_eq!(
            command_line(&["cargo".into(), "test".into(), "-p".into(), "x".into()]),
            "cargo test -p x"
        );
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn env_pairs_are_validated() {
        assert_eq!(
            parse_env_pairs(&["A=1".into(), "B_2=x=y".into()]).unwrap()["B_2"],
            "x=y"
        );
        assert!(parse_env_pairs(&["1A=1".into()]).is_err());
        assert!(parse_env_pairs(&["novalue".into()]).is_err());
    }
}
