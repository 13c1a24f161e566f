//! rclaude: run Claude Code and project tasks in a persistent remote sandbox for a repository,
//! with the work tree synced by git bundles and results coming back as git.
pub mod cli;
pub mod config;
pub mod envd;
pub mod gitsync;
pub mod provider;
