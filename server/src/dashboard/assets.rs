//! The dashboard's static files, embedded in the binary (no build step, no CDN).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The stylesheet.
pub const CSS: &str = include_str!("assets/app.css");
/// The live-update script (progressive enhancement: pages work without it).
pub const JS: &str = include_str!("assets/live.js");

/// URL of the stylesheet (the version busts caches across upgrades).
pub const CSS_PATH: &str = concat!("/assets/app.css?v=", env!("CARGO_PKG_VERSION"));
/// URL of the script.
pub const JS_PATH: &str = concat!("/assets/live.js?v=", env!("CARGO_PKG_VERSION"));

/// `GET /assets/{name}`.
pub async fn serve(Path(name): Path<String>) -> Response {
    let (body, mime) = match name.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "live.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
