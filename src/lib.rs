//! rclaude: run Claude Code and project tasks in a persistent remote sandbox for a repository,
//! with the work tree synced by git bundles and results coming back as git.
pub mod claude;
pub mod cli;
pub mod config;
pub mod error;
pub mod format;
pub mod gitsync;
pub mod hooks;
pub mod livesync;
pub mod mcp;
pub mod notify;
pub mod ops;
pub mod redact;
pub mod report;
pub mod session;
pub mod ui;

pub use rclaude_deliver as deliver;
pub use rclaude_sandbox::{agent, dirs, envd, host, network, provider, shell, time};
