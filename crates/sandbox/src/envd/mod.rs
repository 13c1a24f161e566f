//! E2B's envd wire protocol: the one way rclaude talks to a sandbox.
//!
//! `proto` holds the JSON messages, `connect` the Connect-RPC framing and error codes, `client`
//! the HTTP client every envd-speaking provider uses. The agent (`crate::agent`) serves the same
//! types, so client and server cannot drift apart.

pub mod client;
pub mod connect;
pub mod proto;
pub mod signals;

/// Header carrying the sandbox access token.
pub const ACCESS_TOKEN_HEADER: &str = "x-access-token";
/// envd's port inside an E2B sandbox.
pub const ENVD_PORT: u16 = 49983;
/// The envd version the agent reports; the E2B SDK gates features on it.
pub const ENVD_VERSION: &str = "0.6.13";
