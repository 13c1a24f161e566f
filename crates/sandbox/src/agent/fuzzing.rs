//! Entry points for the fuzz targets in `fuzz/` (not part of the public API).
//!
//! [`agent_request`] feeds one arbitrary HTTP request to a real agent's router, in process: the
//! filesystem RPCs (unary and streaming JSON decoding, path confinement) and `/files` (query
//! strings, multipart and octet-stream bodies). Process RPCs are left out: a fuzzer that can
//! start processes would run whatever it stumbles on.

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use futures::StreamExt;
use tower::ServiceExt;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    _root: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("d/e")).expect("dirs");
        std::fs::write(root.path().join("d/f.txt"), "12345").expect("file");
        let mut opts = super::AgentOptions::new(root.path().to_path_buf());
        opts.listen = "127.0.0.1:0".parse().expect("addr");
        opts.isolation = crate::Isolation::None;
        let agent = runtime.block_on(super::bind(opts)).expect("agent");
        let router = super::router(agent.state.clone());
        Fixture {
            runtime,
            router,
            _root: root,
        }
    })
}

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/filesystem.Filesystem/Stat"),
    ("POST", "/filesystem.Filesystem/ListDir"),
    ("POST", "/filesystem.Filesystem/MakeDir"),
    ("POST", "/filesystem.Filesystem/Move"),
    ("POST", "/filesystem.Filesystem/Remove"),
    ("POST", "/filesystem.Filesystem/WatchDir"),
    ("POST", "/filesystem.Filesystem/CreateWatcher"),
    ("POST", "/filesystem.Filesystem/GetWatcherEvents"),
    ("POST", "/filesystem.Filesystem/RemoveWatcher"),
    ("GET", "/files"),
    ("POST", "/files"),
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/connect+json",
    "multipart/form-data; boundary=XyZ",
    "application/octet-stream",
    "",
];

/// One request: byte 0 picks the route, byte 1 the content type; for `/files` the bytes up to
/// the first newline are the query string; the rest is the body. Panics only on a bug.
pub fn agent_request(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let f = fixture();
    let (method, path) = ROUTES[data[0] as usize % ROUTES.len()];
    let content_type = CONTENT_TYPES[data[1] as usize % CONTENT_TYPES.len()];
    let mut rest = &data[2..];
    let mut uri = path.to_string();
    if path == "/files" {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let query: String = String::from_utf8_lossy(&rest[..end])
            .chars()
            .filter(|c| !c.is_control() && *c != ' ' && *c != '#')
            .collect();
        uri = format!("/files?{query}");
        rest = &rest[(end + 1).min(rest.len())..];
    }
    let Ok(uri) = uri.parse::<axum::http::Uri>() else {
        return;
    };
    let method = Method::from_bytes(method.as_bytes()).expect("known method");
    let mut req = Request::builder().method(method).uri(uri);
    if !content_type.is_empty() {
        req = req.header("content-type", content_type);
    }
    let Ok(req) = req.body(Body::from(rest.to_vec())) else {
        return;
    };
    let router = f.router.clone();
    f.runtime.block_on(async move {
        let Ok(resp) = router.oneshot(req).await;
        // Streams (WatchDir) never end by themselves: read what comes quickly, then hang up.
        let mut body = resp.into_body().into_data_stream();
        let _ = tokio::time::timeout(Duration::from_millis(20), async {
            while let Some(Ok(_)) = body.next().await {}
        })
        .await;
    });
}
