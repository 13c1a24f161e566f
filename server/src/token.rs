//! The shape of an API token (`rcl_<8 id chars>_<32 secret chars>`) and how it is stored
//! (SHA-256), below everything that issues, checks or redacts tokens.

use sha2::{Digest, Sha256};

/// The tag every token starts with.
pub const PREFIX_TAG: &str = "rcl_";
/// Characters of a token's id, after the tag.
pub const ID_LEN: usize = 8;
/// Characters of a token's secret, after the prefix and `_`.
pub const SECRET_LEN: usize = 32;
/// Length of the public prefix (`rcl_` + 8 characters).
pub const PREFIX_LEN: usize = PREFIX_TAG.len() + ID_LEN;

/// SHA-256 of a token, hex: what the database keeps instead of the token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
