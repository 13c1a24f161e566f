//! HTTP handlers, one file per resource.

pub mod billing;
pub mod sessions;
pub mod system;
pub mod tokens;
