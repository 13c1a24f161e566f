//! API tokens: generation, hashing, and the `Authorization: Bearer` extractor.
//!
//! A token looks like `rcl_k3j9x2m1_<32 random base62 chars>`. Its first 12 characters
//! (`rcl_k3j9x2m1`) are the public prefix shown in lists; the server keeps only the SHA-256 of the
//! whole token, so a token is shown once, at creation.

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use rand::Rng;

use crate::clock::Now;
use crate::error::ApiError;
use crate::model::TokenInfo;
use crate::revocations::Credential;
use crate::state::AppState;
use crate::storage::{Principal, Store, StoreError, TokenKey};

pub use crate::token::{ID_LEN, PREFIX_LEN, PREFIX_TAG, SECRET_LEN, hash};
/// How stale `last_used_at` may get before a request refreshes it.
const TOUCH_EVERY_MS: i64 = 60_000;

/// A freshly generated token: the secret (to show once) and its public prefix.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub secret: String,
    pub prefix: String,
}

/// Generates a token from the operating system's random source.
pub fn generate() -> NewToken {
    const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let id: String = (0..ID_LEN)
        .map(|_| LOWER[rng.random_range(0..LOWER.len())] as char)
        .collect();
    let secret: String = (0..SECRET_LEN)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect();
    let prefix = format!("{PREFIX_TAG}{id}");
    NewToken {
        secret: format!("{prefix}_{secret}"),
        prefix,
    }
}

/// Does `s` look like one of our tokens (before any database lookup)?
pub fn well_formed(s: &str) -> bool {
    s.len() == PREFIX_LEN + 1 + SECRET_LEN
        && s.starts_with(PREFIX_TAG)
        && s.as_bytes()[PREFIX_LEN] == b'_'
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// How a user named a token to revoke: its prefix or id, or — pasted by mistake where the prefix
/// belongs — the whole token, which is then looked up by its hash.
pub fn token_key(s: &str) -> TokenKey<'_> {
    if well_formed(s) {
        TokenKey::Hash(hash(s))
    } else {
        TokenKey::PrefixOrId(s)
    }
}

/// Creates and stores a token for an account; returns its description and the secret.
pub async fn issue(
    store: &Store,
    account_id: &str,
    name: &str,
    now_ms: i64,
) -> Result<(TokenInfo, String), StoreError> {
    let mut attempts = 0;
    loop {
        let t = generate();
        match store
            .insert_token(account_id, &t.prefix, &hash(&t.secret), name, now_ms)
            .await
        {
            Ok(info) => return Ok((info, t.secret)),
            Err(StoreError::Conflict(_)) if attempts < 3 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// An authenticated caller. Extracting it answers 401 for a missing, malformed, unknown or revoked
/// token. WebSocket upgrades may pass the token as `?token=` (browsers cannot set headers).
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, state).await.map(|(p, _)| Auth(p))
    }
}

/// Like [`Auth`], keeping the credential, for WebSockets that must check it again later.
#[derive(Debug, Clone)]
pub struct AuthWithCredential(pub Principal, pub Credential);

impl FromRequestParts<AppState> for AuthWithCredential {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, state)
            .await
            .map(|(p, c)| AuthWithCredential(p, c))
    }
}

async fn authenticate(
    parts: &mut Parts,
    state: &AppState,
) -> Result<(Principal, Credential), ApiError> {
    let token = match bearer(parts) {
        Ok(t) => t,
        Err(e) => {
            // The dashboard's WebSockets authenticate with its session cookie (same account
            // scoping; refused when the page is from another site).
            if is_upgrade(parts)
                && crate::dashboard::auth::same_origin(&parts.headers)
                && let Some((p, secret)) =
                    crate::dashboard::auth::cookie_principal(&parts.headers, state).await?
            {
                if let Some(slot) = parts.extensions.get::<crate::metrics::AccountSlot>() {
                    *slot.0.lock().expect("slot lock") = Some(p.account_name.clone());
                }
                let hash = crate::dashboard::auth::session_hash(&secret);
                return Ok((p, Credential::WebSession { hash }));
            }
            return Err(e);
        }
    };
    if !well_formed(&token) {
        return Err(ApiError::unauthorized(
            "the bearer token is malformed; tokens look like rcl_xxxxxxxx_… (create one with `rclaude-server admin create-token`)",
        ));
    }
    let token_hash = hash(&token);
    let principal = state
        .store
        .authenticate(&token_hash)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::unauthorized("the bearer token is unknown or revoked"))?;
    let now = Now::system().ms();
    if principal
        .last_used_at_ms
        .is_none_or(|t| now - t > TOUCH_EVERY_MS)
    {
        let store = state.store.clone();
        let id = principal.token_id.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(&id, now).await {
                tracing::warn!(error = %e, "cannot record token use");
            }
        });
    }
    if let Some(slot) = parts.extensions.get::<crate::metrics::AccountSlot>() {
        *slot.0.lock().expect("slot lock") = Some(principal.account_name.clone());
    }
    Ok((principal, Credential::Token { hash: token_hash }))
}

fn is_upgrade(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn bearer(parts: &Parts) -> Result<String, ApiError> {
    if let Some(v) = parts.headers.get(header::AUTHORIZATION) {
        let v = v
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
        let (scheme, token) = v.trim().split_once(' ').ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ));
        }
        return Ok(token.trim().to_string());
    }
    if is_upgrade(parts)
        && let Some(q) = parts.uri.query()
        && let Some((_, t)) = url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token")
    {
        return Ok(t.into_owned());
    }
    Err(ApiError::unauthorized(
        "missing `Authorization: Bearer <token>` header",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_well_formed_and_distinct() {
        let a = generate();
        let b = generate();
        assert!(well_formed(&a.secret), "{}", a.secret);
        assert!(a.secret.starts_with(&a.prefix));
        assert_eq!(a.prefix.len(), PREFIX_LEN);
        assert_ne!(a.secret, b.secret);
        assert_eq!(hash(&a.secret).len(), 64);
        assert!(!well_formed("rcl_short"));
        assert!(!well_formed(&a.secret.replace('_', "-")));
    }
}
