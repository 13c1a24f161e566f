//! `GET /sign-in` (the form), `POST /sign-in` (token → cookie session), `POST /sign-out`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::auth::{
    self, SESSION_COOKIE, SIGNIN_COOKIE, SIGNIN_COOKIE_MAX_AGE, WebUser, same_origin, same_secret,
};
use super::layout::{self, Nav, error_page, html_response, page};
use crate::clock::Now;
use crate::state::AppState;

fn query_param(raw: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(raw?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Renders the form with a fresh double-submit token (also set as a cookie).
fn form(
    state: &AppState,
    headers: &HeaderMap,
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let token = auth::new_secret();
    let body = html! {
        h1 { "Sign in" }
        p { "Sign in with one of your rclaude API tokens (" code { "rcl_…" } "). "
            "Create one with " code { "rclaude-server admin create-token ACCOUNT" } "." }
        @if let Some(e) = error {
            p class="error" role="alert" id="sign-in-error" { (e) }
        }
        form method="post" action="/sign-in" class="card" {
            input type="hidden" name="csrf" value=(token);
            input type="hidden" name="next" value=(next);
            p {
                label for="token" { "API token" }
                input id="token" name="token" type="password" required autocomplete="off"
                    spellcheck="false" autofocus
                    aria-describedby=[error.map(|_| "sign-in-error")];
            }
            p { button type="submit" { "Sign in" } }
        }
    };
    let mut resp = html_response(status, page("Sign in", None, Nav::None, body));
    resp.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(
            SIGNIN_COOKIE,
            &token,
            "/sign-in",
            SIGNIN_COOKIE_MAX_AGE,
            auth::secure(state, headers),
        ),
    );
    resp
}

/// `GET /sign-in?next=/path`: the form (or straight on, when already signed in).
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let next = auth::safe_next(query_param(q.as_deref(), "next").as_deref());
    if let Ok(Some(_)) = auth::cookie_principal(&headers, &state).await {
        return Redirect::to(&next).into_response();
    }
    form(&state, &headers, &next, None, StatusCode::OK)
}

/// `POST /sign-in` (form: `token`, `csrf`, `next`): creates the cookie session. The token is
/// never echoed back, even on failure.
pub async fn submit(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut token = None;
    let mut csrf = None;
    let mut next = None;
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "token" => token = Some(v.trim().to_string()),
            "csrf" => csrf = Some(v.into_owned()),
            "next" => next = Some(v.into_owned()),
            _ => {}
        }
    }
    let next = auth::safe_next(next.as_deref());
    let expected = auth::cookie(&headers, SIGNIN_COOKIE);
    let csrf_ok =
        matches!((&csrf, &expected), (Some(a), Some(b)) if !b.is_empty() && same_secret(a, b));
    if !same_origin(&headers) || !csrf_ok {
        return form(
            &state,
            &headers,
            &next,
            Some("The sign-in form expired or came from another site. Please try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let token = token.unwrap_or_default();
    let bad = |msg: &str| form(&state, &headers, &next, Some(msg), StatusCode::UNAUTHORIZED);
    if token.is_empty() {
        return bad("Enter an API token.");
    }
    if !crate::auth::well_formed(&token) {
        return bad("That is not an rclaude API token; tokens look like rcl_xxxxxxxx_….");
    }
    let principal = match state.store.authenticate(&crate::auth::hash(&token)).await {
        Ok(Some(p)) => p,
        Ok(None) => return bad("That token is unknown or revoked."),
        Err(e) => return layout::store_error(None, e),
    };
    let secret = auth::new_secret();
    let now = Now::system().ms();
    let ttl = state.config.dashboard.session_ttl;
    if let Err(e) = state
        .store
        .create_web_session(
            &auth::session_hash(&secret),
            &principal.account_id,
            &principal.token_id,
            now,
            now + ttl.as_millis() as i64,
        )
        .await
    {
        return layout::store_error(None, e);
    }
    tracing::info!(account = %principal.account_name, token = %principal.token_prefix, "dashboard sign-in");
    let secure = auth::secure(&state, &headers);
    let mut resp = Redirect::to(&next).into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        auth::set_cookie(SESSION_COOKIE, &secret, "/", ttl.as_secs() as i64, secure),
    );
    h.append(
        header::SET_COOKIE,
        auth::set_cookie(SIGNIN_COOKIE, "", "/sign-in", 0, secure),
    );
    h.insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    resp
}

/// `POST /sign-out` (form: `csrf`): deletes the server-side session and the cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: Result<WebUser, Response>,
    body: Bytes,
) -> Response {
    let secure = auth::secure(&state, &headers);
    let clear = |mut resp: Response| {
        resp.headers_mut().append(
            header::SET_COOKIE,
            auth::set_cookie(SESSION_COOKIE, "", "/", 0, secure),
        );
        resp
    };
    let Ok(user) = user else {
        // No live session: nothing to revoke.
        return clear(Redirect::to("/sign-in").into_response());
    };
    let csrf = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !same_origin(&headers) || !same_secret(&csrf, &user.csrf) {
        return error_page(
            Some(&user),
            StatusCode::FORBIDDEN,
            "Sign-out refused",
            "The sign-out form expired or came from another site; use the Sign out button.",
        );
    }
    if let Err(e) = state.store.delete_web_session(&user.session_hash).await {
        return layout::store_error(Some(&user), e);
    }
    state.revocations.signed_out(&user.session_hash);
    tracing::info!(account = %user.principal.account_name, "dashboard sign-out");
    clear(Redirect::to("/sign-in").into_response())
}
