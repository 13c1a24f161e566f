//! Descriptions of the error responses several operations share, for their OpenAPI
//! annotations (kept apart from the document so handlers need not import it).

/// 401: every authenticated operation.
pub const UNAUTHORIZED: &str = "Missing, malformed, unknown or revoked token (`unauthorized`, with `WWW-Authenticate: Bearer`)";
/// 404 of the operations on one session.
pub const NO_SESSION: &str = "No such session in this account (another account's is a 404 too)";
/// 400 of the operations with a JSON body.
pub const BAD_JSON: &str = "The body is not valid JSON (`invalid_json`)";
/// 413 of the operations with a body.
pub const TOO_LARGE: &str = "The body is larger than the server accepts (`payload_too_large`)";
/// 415 of the operations with a JSON body.
pub const NOT_JSON: &str =
    "The body is not sent as `Content-Type: application/json` (`unsupported_media_type`)";
/// 422 of the operations that take input.
pub const BAD_VALUE: &str = "A field or parameter has a wrong type or an unacceptable value, \
     or the path or query string holds a control character (`invalid_request`; the message names the field)";
