//! `rclaude mcp`: serve rclaude's operations to MCP clients (Claude Code, Claude Desktop,
//! Cursor) over stdio.

use super::GlobalArgs;
use crate::error::{CliError, CliResult};

/// Serve rclaude to AI assistants and editors as a Model Context Protocol server on stdio.
///
/// Tools: list_sessions, session_status, start_session (a checkout, or a repository URL),
/// run_task, exec, claude_run (start Claude Code on a prompt and wait for its result),
/// wait_run, pull (the sandbox's work as a local branch) and stop_session (pause, or destroy
/// with `confirm_destroy: true`). Each call runs the matching rclaude command; `repo` defaults
/// to the directory this server runs in (`-C DIR`). stdout carries the protocol only.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  claude mcp add rclaude -- rclaude mcp          # Claude Code, for the current project\n  rclaude mcp -C ~/src/app                         # tools act in ~/src/app by default\n\nClaude Desktop / Cursor (mcpServers in their JSON config):\n  \"rclaude\": { \"command\": \"rclaude\", \"args\": [\"mcp\", \"-C\", \"/home/me/src/app\"] }"
)]
pub struct Args {}

pub async fn run(g: &GlobalArgs, _args: Args) -> CliResult {
    // An explicit --session makes no sense here; RCLAUDE_SESSION_ID from the environment is
    // ignored (calls do not inherit it).
    if g.session.is_some() && std::env::var_os("RCLAUDE_SESSION_ID").is_none() {
        return Err(CliError::usage(
            "`mcp` takes no --session: each tool call names its own `session`",
        ));
    }
    let base = g.start_dir()?;
    if !base.is_dir() {
        return Err(CliError::usage(format!(
            "{} is not a directory",
            base.display()
        )));
    }
    crate::mcp::serve(base)
        .await
        .map_err(CliError::unavailable)?;
    Ok(0)
}
