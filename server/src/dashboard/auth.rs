//! Dashboard sign-in: cookie sessions, CSRF tokens, and the extractor of signed-in pages.
//!
//! Signing in with an API token creates a server-side session row keyed by the SHA-256 of a
//! random 256-bit secret; the secret travels only in the `rclaude_session` cookie (`HttpOnly`,
//! `SameSite=Strict`, `Path=/`, `Secure` per configuration). The per-session CSRF token that
//! state-changing forms carry is derived from the secret (`SHA-256("rclaude-csrf:" + secret)`),
//! so it is not stored and cannot be computed from what the database holds. The sign-in form
//! itself uses a double-submit token (a short-lived `rclaude_signin` cookie echoed in a hidden
//! field). Requests whose `Origin` (or `Sec-Fetch-Site`) says they come from another site are
//! refused on every form post and on cookie-authenticated WebSocket upgrades.

use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, HeaderValue, header, request::Parts};
use axum::response::{IntoResponse, Redirect, Response};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::clock::Now;
use crate::config::CookieSecure;
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::Principal;

/// The session cookie.
pub const SESSION_COOKIE: &str = "rclaude_session";
/// The sign-in form's double-submit cookie.
pub const SIGNIN_COOKIE: &str = "rclaude_signin";
/// Lifetime of the sign-in form's cookie, in seconds.
pub const SIGNIN_COOKIE_MAX_AGE: i64 = 3600;

/// A random secret of 43 base62 characters (about 256 bits).
pub fn new_secret() -> String {
    const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..43)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect()
}

/// Does `s` look like a secret we issued (before any database lookup)?
fn well_formed_secret(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// What the database stores for a session secret.
pub fn session_hash(secret: &str) -> String {
    crate::token::hash(secret)
}

/// The CSRF token of the session with this secret.
pub fn csrf_token(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"rclaude-csrf:");
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// Constant-time string comparison.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// Whether cookies set on this request get the `Secure` attribute.
pub fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    match state.config.dashboard.cookie_secure {
        CookieSecure::Always => true,
        CookieSecure::Never => false,
        CookieSecure::Auto => headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https")),
    }
}

/// A `Set-Cookie` value; `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> HeaderValue {
    let mut c =
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie values are ASCII")
}

/// False when the request says it comes from another site (`Origin` with another host than
/// `Host`, or `Sec-Fetch-Site: cross-site`/`same-site`). Requests without these headers (old
/// clients, curl) pass: the SameSite=Strict cookie and the CSRF token still protect them.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin = origin.to_str().unwrap_or("");
    match url::Url::parse(origin) {
        Ok(u) => {
            let authority = match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                _ => return false,
            };
            authority.eq_ignore_ascii_case(host)
        }
        Err(_) => false,
    }
}

/// The signed-in caller, from the session cookie.
pub async fn cookie_principal(
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Option<(Principal, String)>, ApiError> {
    let Some(secret) = cookie(headers, SESSION_COOKIE).filter(|s| well_formed_secret(s)) else {
        return Ok(None);
    };
    let p = state
        .store
        .web_session(&session_hash(&secret), Now::system().ms())
        .await?;
    Ok(p.map(|p| (p, secret)))
}

/// A signed-in dashboard user. Extracting it redirects to the sign-in page (303) when the
/// request has no live session.
#[derive(Debug, Clone)]
pub struct WebUser {
    pub principal: Principal,
    /// The CSRF token forms of this session must carry.
    pub csrf: String,
    /// SHA-256 of the session secret (the row's key).
    pub session_hash: String,
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match cookie_principal(&parts.headers, state).await {
            Ok(Some((principal, secret))) => {
                if let Some(slot) = parts.extensions.get::<crate::metrics::AccountSlot>() {
                    *slot.0.lock().expect("slot lock") = Some(principal.account_name.clone());
                }
                Ok(WebUser {
                    principal,
                    csrf: csrf_token(&secret),
                    session_hash: session_hash(&secret),
                })
            }
            Ok(None) => {
                let here = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
                Err(Redirect::to(&format!("/sign-in?next={next}")).into_response())
            }
            Err(e) => Err(super::layout::error_page(
                None,
                e.status,
                "Something went wrong",
                &e.message,
            )),
        }
    }
}

/// Where to go after signing in: a local path only (never another host).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.starts_with("/sign-")
                && n.len() <= 2000
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/sessions".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_csrf() {
        let a = new_secret();
        assert!(well_formed_secret(&a));
        assert_ne!(a, new_secret());
        assert_ne!(csrf_token(&a), session_hash(&a));
        assert!(same_secret(&csrf_token(&a), &csrf_token(&a)));
        assert!(!same_secret(&csrf_token(&a), &csrf_token(&new_secret())));
    }

    #[test]
    fn cookies_parse() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; rclaude_session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        let v = set_cookie(SESSION_COOKIE, "v", "/", 60, true);
        let v = v.to_str().unwrap();
        assert!(v.contains("HttpOnly") && v.contains("SameSite=Strict") && v.contains("Secure"));
    }

    #[test]
    fn origin_checks() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:7420".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "http://127.0.0.1:7420".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&h));
    }

    #[test]
    fn next_is_local() {
        assert_eq!(
            safe_next(Some("/usage?month=2025-02")),
            "/usage?month=2025-02"
        );
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "/sign-out",
        ] {
            assert_eq!(safe_next(Some(bad)), "/sessions", "{bad}");
        }
        assert_eq!(safe_next(None), "/sessions");
    }
}
