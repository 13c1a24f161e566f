//! rclaude: run Claude Code and project tasks in a persistent remote sandbox for a repository,
//! with the work tree synced by git bundles and results coming back as git.
pub mod agent;
pub mod claude;
pub mod cli;
pub mod config;
pub mod dirs;
pub mod envd;
pub mod error;
pub mod gitsync;
pub mod hooks;
pub mod livesync;
pub mod ops;
pub mod provider;
pub mod report;
pub mod session;
pub mod shell;
pub mod time;
pub mod ui;
