//! rclaude's sandbox library: what the CLI (direct mode) and the server (managed mode) both use
//! to create, reach and control sandboxes.
//!
//! - [`provider`]: the [`provider::Provider`] and [`provider::Sandbox`] traits and the
//!   providers (local, E2B, Daytona, Northflank), chosen with [`provider::select`].
//! - [`envd`]: the client of E2B's in-sandbox daemon protocol, which the local agent speaks too.
//! - [`agent`]: `rclaude agent`, the local provider's envd (bubblewrap-isolated processes).
//!
//! Nothing here knows about the CLI, repositories or git: dependencies point from the CLI and
//! the server to this crate, never back.
pub mod agent;
pub mod dirs;
pub mod envd;
pub mod host;
mod kind;
pub mod network;
pub mod port_proxy;
pub mod provider;
pub mod shell;
pub mod time;

pub use kind::{Isolation, ProviderKind};
