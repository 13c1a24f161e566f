//! `rclaude mcp`: a Model Context Protocol server on stdio (the official Rust SDK, `rmcp`), so
//! that Claude Code, Claude Desktop, Cursor or any MCP client can list and start sessions, run
//! tasks and commands, run Claude Code in a sandbox and pull its work as a branch.

pub mod invoke;
mod params;
mod tools;

use std::path::PathBuf;

use rmcp::ServiceExt;

pub use tools::Tools;

/// Serve the tools on stdin/stdout until the client closes the connection. `base` is the
/// directory tools act in when a call names no `repo`.
pub async fn serve(base: PathBuf) -> Result<(), String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the rclaude binary: {e}"))?;
    let service = Tools::new(exe, base)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("MCP handshake failed: {e}"))?;
    service
        .waiting()
        .await
        .map_err(|e| format!("MCP server stopped: {e}"))?;
    Ok(())
}
