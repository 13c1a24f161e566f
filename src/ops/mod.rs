//! Operations on a repository's sandbox, shared by the front ends: bring a session up, sync,
//! run tasks and commands, pull, pause/resume/down, Claude Code runs.
//!
//! The CLI parses arguments, calls these and renders; it never calls one subcommand from
//! another. Progress goes through [`progress::Progress`], never straight to the terminal. Below: the sync engines (`gitsync`, `livesync`), `claude`, and the provider layer.

pub mod alive;
pub mod checkpoint;
pub mod checkpoint_server;
pub mod claude_run;
pub mod context;
pub mod fork;
pub mod isolation;
pub mod leftovers;
pub mod ports;
pub mod pr;
pub mod progress;
pub mod pull;
pub mod rebuild;
pub mod signals;
pub mod start;
pub mod stream;
pub mod sync;
pub mod tasks;
pub mod terminal;
pub mod transcript;
pub mod up;
pub mod watch;
