//! Input checks that hold for every request, before routing: no control characters in the
//! path or the query string (after percent-decoding). PostgreSQL refuses NUL in text, so a `%00`
//! would otherwise reach the database as a 500 on one engine and pass on the other; no name,
//! id, month or token of this API contains a control character.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Middleware: 422 for a control character anywhere in the decoded path or query.
pub async fn reject_control_chars(req: Request, next: Next) -> Response {
    let uri = req.uri();
    if let Some(place) = control_char_in(uri.path(), uri.query()) {
        return ApiError::invalid(format!(
            "the {place} contains a control character (such as NUL); no value of this API does"
        ))
        .into_response();
    }
    next.run(req).await
}

/// Where a control character is, if any: `"path"` or `"query string"`.
fn control_char_in(path: &str, query: Option<&str>) -> Option<&'static str> {
    let bad = |s: &str| percent_decoded(s).iter().any(|&b| b < 0x20 || b == 0x7f);
    if bad(path) {
        return Some("path");
    }
    // `+` is a space in a query string; a space is fine.
    if query.is_some_and(bad) {
        return Some("query string");
    }
    None
}

fn percent_decoded(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_found_after_decoding() {
        assert_eq!(control_char_in("/v1/tokens/a%00b", None), Some("path"));
        assert_eq!(
            control_char_in("/v1/sessions", Some("repository=a%00")),
            Some("query string")
        );
        assert_eq!(
            control_char_in("/v1/x", Some("a=%1F")),
            Some("query string")
        );
        assert_eq!(
            control_char_in("/v1/x", Some("a=%7f")),
            Some("query string")
        );
        assert_eq!(control_char_in("/v1/x%20y", Some("a=b+c&d=%C3%A9")), None);
        assert_eq!(control_char_in("/v1/x%2", Some("a=%")), None);
    }
}
