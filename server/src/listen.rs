//! The accept loop: one task per connection, with the limits hyper enforces per connection.
//!
//! `axum::serve` gives hyper no timer, so hyper's header-read timeout never fires and a client
//! that sends its headers one byte at a time (or connects and says nothing) holds a connection
//! for as long as it likes. Here every connection gets [`ConnLimits::header_read`]: the headers
//! of each request, including the wait for the next request on a kept-alive connection, must
//! arrive within it, or the connection is closed. Connections are served with upgrades
//! (WebSockets) and drained gracefully.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time allowed for a request's headers (and for the next request on an idle connection).
    pub header_read: Duration,
}

/// Serves `app` on `listener` until `stop` completes, then stops accepting and lets open
/// connections finish; returns when they have (the caller bounds how long it waits).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    stop: impl Future<Output = ()> + Send,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let service = app.into_service::<hyper::body::Incoming>();
    tokio::pin!(stop);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // WebSocket frames and streamed bodies are small writes that Nagle's algorithm would
        // hold back until the peer's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let hyper_service = TowerToHyperService::new(service.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), hyper_service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _: Result<(), _> = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
