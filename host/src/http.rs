//! `/health` (liveness), `/ready` (DB reachable, last tick), `/metrics` (Prometheus text).

use crate::config::ServerSettings;
use crate::scheduler::Status;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::MySqlPool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub struct HttpState {
    pub pool: MySqlPool,
    pub status: Arc<Mutex<Status>>,
    pub metrics: Option<PrometheusHandle>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn ready(State(s): State<HttpState>) -> impl IntoResponse {
    let db_ok = sqlx::query("SELECT 1").execute(&s.pool).await.is_ok();
    let (last_tick, last_tick_ok) = s
        .status
        .lock()
        .map(|st| (st.last_tick, st.last_tick_ok))
        .unwrap_or((None, false));
    let code = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(serde_json::json!({
            "database": if db_ok { "ok" } else { "unreachable" },
            "last_tick": last_tick,
            "last_tick_ok": last_tick_ok,
        })),
    )
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    match &s.metrics {
        Some(h) => (StatusCode::OK, h.render()),
        None => (
            StatusCode::NOT_FOUND,
            "metrics recorder not installed".to_string(),
        ),
    }
}

/// Serves until the process ends; a port that cannot be bound is an error at start.
///
/// Each connection must send its request headers within `header_read_timeout_seconds` (hyper's
/// timer, also between keep-alive requests), each request is answered within
/// `request_timeout_seconds` (408 after), and at most `max_connections` are served at once: the
/// next waits in the listen backlog, so idle or slow clients can neither exhaust the process's
/// file descriptors nor keep `/health` from answering for longer than the header timeout.
pub async fn serve(
    server: &ServerSettings,
    state: HttpState,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (bind, port) = (&server.bind, server.port);
    let listener = tokio::net::TcpListener::bind((bind.as_str(), port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {bind}:{port} (server.port / PORT): {e}"))?;
    tracing::info!("HTTP endpoint on {bind}:{port} (/health, /ready, /metrics)");
    let app = router(state).layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        Duration::from_secs(server.request_timeout_seconds),
    ));
    let header_timeout = Duration::from_secs(server.header_read_timeout_seconds);
    let slots = Arc::new(tokio::sync::Semaphore::new(server.max_connections.max(1)));
    Ok(tokio::spawn(async move {
        loop {
            // Waiting for a slot before accepting leaves new clients in the kernel's backlog.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: wait for connections to close rather than spin
                    tracing::warn!("HTTP endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            let mut conn = hyper::server::conn::http1::Builder::new();
            conn.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = conn.serve_connection(io, service).await {
                    tracing::debug!("HTTP endpoint: connection closed: {e}");
                }
                drop(slot);
            });
        }
    }))
}
