//! Access control: the `X-Access-Token` header on every request (constant-time compare), or,
//! for `/files`, envd's presigned URL signature. No token configured = open (debug only).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AgentState;
use super::rpc;
use crate::envd::ACCESS_TOKEN_HEADER;
use crate::envd::connect::Code;
use crate::envd::proto::HttpError;

/// The agent's access token (or none, when running open for debugging).
#[derive(Clone)]
pub struct Auth {
    token: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Auth {
    pub fn new(token: Option<String>) -> Self {
        Auth { token }
    }

    /// Check the `X-Access-Token` header. `Err` carries the reason (never the token).
    pub fn check_header(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let Some(got) = headers.get(ACCESS_TOKEN_HEADER) else {
            return Err("missing X-Access-Token header");
        };
        if bool::from(got.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err("invalid access token")
        }
    }

    /// Check envd's file URL signature:
    /// `v1_` + base64-nopad(sha256("<path>:<op>:<user>:<token>[:<expiry>]")).
    pub fn check_signature(
        &self,
        path: &str,
        op: &str,
        user: &str,
        signature: &str,
        expiration: Option<&str>,
    ) -> Result<(), String> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let expected = sign(path, op, user, token, expiration);
        if !bool::from(signature.as_bytes().ct_eq(expected.as_bytes())) {
            return Err("invalid signature".into());
        }
        if let Some(exp) = expiration {
            let exp: i64 = exp
                .parse()
                .map_err(|_| format!("invalid signature_expiration {exp:?}"))?;
            if exp < time::OffsetDateTime::now_utc().unix_timestamp() {
                return Err("signature has expired".into());
            }
        }
        Ok(())
    }
}

/// Compute a file URL signature (for tests and for clients that hand out links).
pub fn sign(path: &str, op: &str, user: &str, token: &str, expiration: Option<&str>) -> String {
    let mut text = format!("{path}:{op}:{user}:{token}");
    if let Some(e) = expiration {
        text.push(':');
        text.push_str(e);
    }
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "v1_{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

fn is_rpc_path(path: &str) -> bool {
    path.starts_with("/process.Process/") || path.starts_with("/filesystem.Filesystem/")
}

/// Middleware: refuse unauthenticated requests with envd's error shapes.
pub async fn require_token(
    State(state): State<Arc<AgentState>>,
    req: Request,
    next: Next,
) -> Response {
    let reason = match state.auth.check_header(req.headers()) {
        Ok(()) => return next.run(req).await,
        Err(reason) => reason,
    };
    let path = req.uri().path().to_string();
    if path == "/files" && req.headers().get(ACCESS_TOKEN_HEADER).is_none() {
        let q: HashMap<String, String> = Query::try_from_uri(req.uri())
            .map(|q| q.0)
            .unwrap_or_default();
        if let Some(sig) = q.get("signature") {
            let op = if req.method() == Method::GET {
                "read"
            } else {
                "write"
            };
            let user = q.get("username").map(String::as_str).unwrap_or("");
            let file = q.get("path").map(String::as_str).unwrap_or("");
            return match state.auth.check_signature(
                file,
                op,
                user,
                sig,
                q.get("signature_expiration").map(String::as_str),
            ) {
                Ok(()) => next.run(req).await,
                Err(why) => http_unauthorized(&why),
            };
        }
    }
    if is_rpc_path(&path) {
        rpc::error_response(&rpc::err(Code::Unauthenticated, reason))
    } else {
        http_unauthorized(reason)
    }
}

fn http_unauthorized(message: &str) -> Response {
    let body = HttpError {
        code: 401,
        message: message.to_string(),
    };
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn header_check_is_exact() {
        let a = Auth::new(Some("s3cret".into()));
        let mut h = HeaderMap::new();
        assert!(a.check_header(&h).is_err());
        h.insert(ACCESS_TOKEN_HEADER, HeaderValue::from_static("s3cre"));
        assert!(a.check_header(&h).is_err());
        h.insert(ACCESS_TOKEN_HEADER, HeaderValue::from_static("s3cret"));
        assert!(a.check_header(&h).is_ok());
        assert!(Auth::new(None).check_header(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn signatures_bind_path_operation_and_expiry() {
        let a = Auth::new(Some("tok".into()));
        let sig = sign("/a", "read", "", "tok", None);
        assert!(sig.starts_with("v1_") && !sig.ends_with('='));
        assert!(a.check_signature("/a", "read", "", &sig, None).is_ok());
        assert!(a.check_signature("/b", "read", "", &sig, None).is_err());
        assert!(a.check_signature("/a", "write", "", &sig, None).is_err());
        let past = sign("/a", "read", "", "tok", Some("1000"));
        assert_eq!(
            a.check_signature("/a", "read", "", &past, Some("1000"))
                .unwrap_err(),
            "signature has expired"
        );
        let future = (time::OffsetDateTime::now_utc().unix_timestamp() + 600).to_string();
        let ok = sign("/a", "read", "", "tok", Some(&future));
        assert!(
            a.check_signature("/a", "read", "", &ok, Some(&future))
                .is_ok()
        );
    }
}
