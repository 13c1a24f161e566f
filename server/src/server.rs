//! `serve`: bind, run, and shut down gracefully.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::router;
use crate::config::ServerConfig;
use crate::db::{self, Engine};
use crate::events::Hub;
use crate::events_listen;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::state::SocketTracker;
use crate::storage::Store;

/// Runs the server until SIGINT/SIGTERM, then drains: stops accepting, lets in-flight requests
/// finish (up to `shutdown_grace`), closes WebSockets with 1001 and closes the database pools.
///
/// Prints `rclaude-server listening on http://ADDR` on stdout once it accepts connections.
pub async fn serve(cfg: ServerConfig) -> anyhow::Result<()> {
    serve_until(cfg, shutdown_signal()).await
}

/// Like [`serve`], stopping when `stop` completes.
pub async fn serve_until(
    cfg: ServerConfig,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = db::open(&cfg.database_url, cfg.db_max_connections).await?;
    tracing::info!(
        database = %db.display_url,
        engine = db.engine.as_str(),
        "database ready (migrations applied)"
    );
    if cfg.test_clock {
        tracing::warn!(
            "--test-clock: the x-rclaude-now header sets the clock; never use this in production"
        );
    }
    let hub = Hub::default();
    let store = Store::new(db.clone(), cfg.prices, hub.clone());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let listener_task = if db.engine == Engine::Postgres {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(events_listen::listen_postgres(
            db.url.clone(),
            store.clone(),
            hub.clone(),
            shutdown_rx.clone(),
            ready_tx,
        ));
        tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .context("PostgreSQL LISTEN did not start within 30s")?
            .context("PostgreSQL LISTEN task ended before it started")?;
        Some(task)
    } else {
        None
    };

    let stripe_task = cfg.stripe.clone().map(|stripe| {
        tokio::spawn(crate::stripe::exporter::run(
            store.clone(),
            stripe,
            shutdown_rx.clone(),
        ))
    });

    let sandboxes = crate::sandboxes::Sandboxes::from_settings(&cfg.sandboxes)?;
    if let Some(s) = &sandboxes {
        tracing::info!(provider = s.kind().as_str(), "managed sessions enabled");
    }
    let checkpoints = crate::checkpoint_store::BlobStore::open(&cfg.checkpoints.store)?;
    tracing::info!(store = %checkpoints.describe(), "checkpoint store ready");
    // Pauses the server makes checkpoint the session's work first.
    let keeper = sandboxes
        .clone()
        .map(|sandboxes| crate::safekeeping::Safekeeper {
            store: store.clone(),
            sandboxes,
            blobs: checkpoints.clone(),
            settings: cfg.checkpoints.clone(),
        });
    let idle_task = match (&keeper, cfg.sandboxes.idle_pause) {
        (Some(k), Some(idle)) => Some(tokio::spawn(crate::guardians::idle_pause(
            k.clone(),
            idle,
            shutdown_rx.clone(),
        ))),
        _ => None,
    };
    let reconcile_task = match (&keeper, cfg.sandboxes.reconcile_every) {
        (Some(k), Some(every)) => Some(tokio::spawn(crate::guardians::reconcile(
            k.clone(),
            every,
            cfg.sandboxes.idle_pause,
            shutdown_rx.clone(),
        ))),
        _ => None,
    };
    // What an upload a crash interrupted left behind (never recorded, so never answered).
    {
        let (store, blobs) = (store.clone(), checkpoints.clone());
        tokio::spawn(async move {
            match store.live_checkpoint_keys().await {
                Ok(live) => match blobs.sweep(&live, Duration::from_secs(3600)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "swept unrecorded checkpoint objects"),
                    Err(e) => tracing::warn!(error = %e, "sweeping the checkpoint store failed"),
                },
                Err(e) => tracing::warn!(error = %e, "sweeping the checkpoint store failed"),
            }
        });
    }
    let expiry_task = cfg.checkpoints.keep_after_stop.map(|after| {
        tokio::spawn(crate::guardians::checkpoint_expiry(
            store.clone(),
            checkpoints.clone(),
            after,
            shutdown_rx.clone(),
        ))
    });
    let sockets = Arc::new(SocketTracker::default());
    let state = AppState {
        checkpoints,
        store,
        config: Arc::new(cfg.clone()),
        hub,
        metrics: Arc::new(Metrics::default()),
        shutdown: shutdown_rx,
        sockets: sockets.clone(),
        revocations: Default::default(),
        sandboxes,
    };
    let app = router(state);
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "rclaude-server listening on http://{addr}");
        let _ = out.flush();
    }
    tracing::info!(%addr, "listening");

    let (stopping_tx, mut stopping_rx) = watch::channel(false);
    let graceful = async move {
        stop.await;
        tracing::info!("shutting down: no new connections, draining requests");
        let _ = shutdown_tx.send(true);
        let _ = stopping_tx.send(true);
    };
    let limits = crate::listen::ConnLimits {
        header_read: cfg.header_read_timeout,
    };
    let server = crate::listen::serve(listener, app, limits, graceful);
    let drain_limit = cfg.shutdown_grace;
    tokio::select! {
        () = server => {}
        _ = async {
            let _ = stopping_rx.wait_for(|s| *s).await;
            tokio::time::sleep(drain_limit).await;
        } => tracing::warn!("drain limit reached; closing remaining connections"),
    }
    sockets.wait_idle(Duration::from_secs(3)).await;
    if let Some(t) = stripe_task {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    for t in [idle_task, reconcile_task, expiry_task]
        .into_iter()
        .flatten()
    {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    if let Some(t) = listener_task {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
