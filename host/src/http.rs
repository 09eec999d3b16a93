//! `/health` (liveness), `/ready` (DB reachable, last tick), `/metrics` (Prometheus text).

use crate::scheduler::Status;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::MySqlPool;
use std::sync::{Arc, Mutex};

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
pub async fn serve(
    bind: &str,
    port: u16,
    state: HttpState,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind((bind, port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {bind}:{port} (server.port / PORT): {e}"))?;
    tracing::info!("HTTP endpoint on {bind}:{port} (/health, /ready, /metrics)");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(state)).await {
            tracing::error!("HTTP endpoint stopped: {e}");
        }
    }))
}
