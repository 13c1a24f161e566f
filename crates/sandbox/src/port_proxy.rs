//! A local HTTP reverse proxy to one port a sandbox serves through its provider's edge: each
//! request goes to the port's URL with the headers [`PortAccess`] names added (routing, and a
//! private sandbox's traffic token, which the client never sees); HTTP/1.1 upgrades
//! (WebSockets) are passed through as a byte stream once the sandbox answers 101.
//!
//! Why not a plain TCP relay: the token must ride on every request of a keep-alive connection,
//! and the edge speaks TLS while the local side is plain HTTP. Why axum + reqwest rather than a
//! hand-written HTTP parser: both are already in the tree and handle framing, chunking and
//! upgrades correctly.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

use crate::provider::PortAccess;

/// Headers that describe one hop's connection, not the request (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

struct Proxy {
    access: PortAccess,
    http: reqwest::Client,
}

/// Serve the proxy on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    access: PortAccess,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let router = router(access).map_err(std::io::Error::other)?;
    // A response's head and body go out as separate writes: without TCP_NODELAY the second
    // waits for the client's delayed ACK (40 ms).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
}

/// The proxy as a router (one fallback handler), for callers that serve it themselves.
pub fn router(access: PortAccess) -> Result<axum::Router, reqwest::Error> {
    let http = reqwest::Client::builder()
        // Upgrades are HTTP/1.1 only; redirects go back to the client as they are.
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()?;
    Ok(axum::Router::new()
        .fallback(handle)
        .with_state(Arc::new(Proxy { access, http })))
}

/// The lower-cased tokens of the `Connection` headers.
fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect()
}

/// The protocol a request asks to upgrade to (`Connection: upgrade` and `Upgrade`).
fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    connection_tokens(headers)
        .iter()
        .any(|t| t == "upgrade")
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Copy end-to-end headers (those not named by `Connection` or hop-by-hop).
fn end_to_end(from: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    let named = connection_tokens(from);
    from.iter().filter(move |(k, _)| {
        let k = k.as_str();
        !HOP_BY_HOP.contains(&k) && k != "host" && !named.iter().any(|n| n == k)
    })
}

async fn handle(State(p): State<Arc<Proxy>>, mut req: Request) -> Response {
    let upgrade = upgrade_of(req.headers());
    let pq = req
        .uri()
        .path_and_query()
        .map(|x| x.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut out = p
        .http
        .request(req.method().clone(), format!("{}{pq}", p.access.url));
    for (k, v) in end_to_end(req.headers()) {
        out = out.header(k, v);
    }
    for (k, v) in &p.access.headers {
        out = out.header(k.as_str(), v.as_str());
    }
    let inbound_upgrade = match &upgrade {
        Some(proto) => {
            out = out
                .header(header::CONNECTION, "upgrade")
                .header(header::UPGRADE, proto);
            Some(hyper::upgrade::on(&mut req))
        }
        None => {
            // A request without a body stays one (a streamed body would go out chunked, and
            // a GET with a chunked body is not what the client sent).
            let has_body = req.headers().contains_key(header::CONTENT_LENGTH)
                || req.headers().contains_key(header::TRANSFER_ENCODING);
            if has_body {
                let body = req.into_body().into_data_stream();
                out = out.body(reqwest::Body::wrap_stream(body));
            }
            None
        }
    };
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "the sandbox port did not answer");
            return (
                StatusCode::BAD_GATEWAY,
                format!("rclaude port: the sandbox's port did not answer: {e}\n"),
            )
                .into_response();
        }
    };
    let status = resp.status();
    let mut builder = Response::builder().status(status);
    let headers = resp.headers().clone();
    for (k, v) in end_to_end(&headers) {
        builder = builder.header(k, v);
    }
    match inbound_upgrade {
        Some(inbound) if status == StatusCode::SWITCHING_PROTOCOLS => {
            for name in [header::CONNECTION, header::UPGRADE] {
                if let Some(v) = headers.get(&name) {
                    builder = builder.header(name, v);
                }
            }
            tokio::spawn(async move {
                let (inbound, outbound) = match tokio::join!(inbound, resp.upgrade()) {
                    (Ok(i), Ok(o)) => (i, o),
                    (i, o) => {
                        tracing::debug!(
                            inbound = i.is_ok(),
                            outbound = o.is_ok(),
                            "an upgraded connection could not be joined"
                        );
                        return;
                    }
                };
                let mut inbound = hyper_util::rt::TokioIo::new(inbound);
                let mut outbound = outbound;
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
            builder
                .body(Body::empty())
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        _ => builder
            .body(Body::from_stream(
                resp.bytes_stream().map_err(std::io::Error::other),
            ))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    }
}
