//! The page shell, formatting helpers, HTML error pages and the security headers of every
//! dashboard response.
//!
//! Pages are `maud` templates: every interpolated value is HTML-escaped by construction.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::assets;
use super::auth::WebUser;

/// Which navigation entry is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Sessions,
    Usage,
    None,
}

/// A whole page: skip link, header with navigation and sign-out, `<main>`.
pub fn page(title: &str, user: Option<&WebUser>, nav: Nav, body: Markup) -> Markup {
    let current = |n: Nav| if n == nav { Some("page") } else { None };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · rclaude" }
                link rel="stylesheet" href=(assets::CSS_PATH);
                @if user.is_some() {
                    script src=(assets::JS_PATH) defer {}
                }
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    span class="brand" { "rclaude" }
                    @if let Some(u) = user {
                        nav aria-label="Main" {
                            ul {
                                li { a href="/sessions" aria-current=[current(Nav::Sessions)] { "Sessions" } }
                                li { a href="/usage" aria-current=[current(Nav::Usage)] { "Usage" } }
                            }
                        }
                        div class="who" {
                            span { "Signed in as " strong { (u.principal.account_name) } }
                            form method="post" action="/sign-out" class="inline" {
                                input type="hidden" name="csrf" value=(u.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" { (body) }
            }
        }
    }
}

/// An HTML response with `Cache-Control: no-store`.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        markup.into_string(),
    )
        .into_response()
}

/// An error page with a heading and a message.
pub fn error_page(
    user: Option<&WebUser>,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    html_response(
        status,
        page(
            title,
            user,
            Nav::None,
            html! {
                h1 { (title) }
                p role="alert" { (message) }
                p { a href="/sessions" { "Back to sessions" } }
            },
        ),
    )
}

/// The 404 page (also for another account's data: it does not exist for this account).
pub fn not_found(user: &WebUser, what: &str) -> Response {
    error_page(
        Some(user),
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("There is no {what} here in this account."),
    )
}

/// A storage error as an HTML 500/503 page (details go to the log, not the page).
pub fn store_error(user: Option<&WebUser>, e: crate::storage::StoreError) -> Response {
    let api: crate::error::ApiError = e.into();
    error_page(user, api.status, "Something went wrong", &api.message)
}

/// Content-Security-Policy of every dashboard page: our own scripts, styles and sockets only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Middleware: security headers on every dashboard response.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    resp
}

/// `2025-02-01T10:00:00.123Z` → `<time datetime=…>2025-02-01 10:00 UTC</time>`.
pub fn time(rfc3339: &str) -> Markup {
    let shown = match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => rfc3339.to_string(),
    };
    html! { time datetime=(rfc3339) { (shown) } }
}

/// Seconds as `1h 2m 3s`.
pub fn duration(secs: i64) -> String {
    crate::billing::format_hms(secs)
}

/// Micro-dollars as `$0.275361` / `$5.00`.
pub fn usd(micros: i64) -> String {
    crate::billing::format_usd(micros)
}

/// The first 8 characters of an id.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// A state badge (text, not only colour).
pub fn state_badge(state: &str) -> Markup {
    let class = match state {
        "running" | "paused" | "created" | "stopped" => state,
        _ => "other",
    };
    html! { span class={ "state state-" (class) } { (state) } }
}

/// `value` percent-encoded for a query string.
pub fn q(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Live-status region announced to screen readers (filled by the live script).
pub fn live_status() -> Markup {
    html! {
        p id="live-status" class="live-status" role="status" aria-live="polite" {
            "Live updates need JavaScript; reload the page to refresh."
        }
    }
}

/// Raw, trusted markup (only for constants we wrote).
pub fn trusted(s: &'static str) -> PreEscaped<&'static str> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything() {
        let evil = "<script>alert('x')</script>&\"";
        let m = html! { p title=(evil) { (evil) } }.into_string();
        assert!(!m.contains("<script>"), "{m}");
        assert!(m.contains("&lt;script&gt;"), "{m}");
        assert!(m.contains("&quot;"), "{m}");
    }

    #[test]
    fn formats() {
        assert_eq!(
            time("2025-02-01T10:00:00.123Z").into_string(),
            "<time datetime=\"2025-02-01T10:00:00.123Z\">2025-02-01 10:00 UTC</time>"
        );
        assert_eq!(short_id("0123456789abcdef"), "01234567");
        assert_eq!(q("a b/c&d"), "a+b%2Fc%26d");
    }
}
