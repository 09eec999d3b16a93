//! `/health` (liveness), `/ready` (DB reachable, last tick), `/metrics` (Prometheus text), and
//! in stream mode the ingest endpoints `/write` (InfluxDB line protocol) and `/api/v1/write`
//! (Prometheus remote write).

use crate::config::ServerSettings;
use crate::metric_store::stream::{IngestReport, StreamState};
use crate::run::scheduler::Status;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_ENCODING, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use monit_wire::line::Precision;
use sqlx::MySqlPool;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub struct HttpState {
    pub pool: MySqlPool,
    pub status: Arc<Mutex<Status>>,
    pub metrics: Option<PrometheusHandle>,
    /// stream mode: where the ingest endpoints put the points
    pub stream: Option<Arc<StreamState>>,
    /// `[console] enabled`: the operator console under `/ui/`
    pub console: Option<Arc<crate::run::console::Console>>,
}

pub fn router(state: HttpState) -> Router {
    let console = state.console.clone();
    let mut r = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics));
    if state.stream.is_some() {
        r = r
            .route("/write", post(write_lines))
            .route("/api/v1/write", post(write_remote));
    }
    let r = r.with_state(state);
    match console {
        Some(c) => r.merge(crate::run::console::router(c)),
        None => r,
    }
}

/// `/write` parameters, as InfluxDB 1.x takes them (`rp` is accepted and not used: the
/// readers name no retention policy either).
#[derive(serde::Deserialize)]
struct WriteParams {
    db: Option<String>,
    precision: Option<String>,
}

fn plain(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

fn rejected(reason: &'static str) {
    metrics::counter!("monit_ingest_rejected_total", "reason" => reason).increment(1);
}

/// The body, after the credentials, bounded before and after decompression.
async fn ingest_body(
    st: &StreamState,
    headers: &HeaderMap,
    body: Body,
    snappy: bool,
) -> Result<axum::body::Bytes, Response> {
    let auth = headers.get(AUTHORIZATION).map(|v| v.as_bytes());
    if !st.credentials.allows(auth) {
        rejected("unauthorized");
        return Err((
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, "Basic realm=\"monit-batch\"")],
            Json(serde_json::json!({ "error": "authorization failed" })),
        )
            .into_response());
    }
    let too_large = || {
        rejected("too_large");
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body larger than stream.max_body_bytes ({} bytes)",
                st.max_body_bytes
            ),
        )
    };
    let raw = axum::body::to_bytes(body, st.max_body_bytes)
        .await
        .map_err(|_| too_large())?;
    let gzip = headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if snappy {
        return monit_wire::remote_write::decompress(&raw, st.max_body_bytes)
            .map(Into::into)
            .map_err(|e| {
                if e.reason() == "too_large" {
                    return too_large();
                }
                rejected(e.reason());
                plain(StatusCode::BAD_REQUEST, e.to_string())
            });
    }
    if !gzip {
        return Ok(raw);
    }
    monit_wire::gzip::decompress(&raw, st.max_body_bytes)
        .map(Into::into)
        .map_err(|e| match e {
            monit_wire::GzipError::TooLarge { .. } => too_large(),
            e => {
                rejected(e.reason());
                plain(StatusCode::BAD_REQUEST, e.to_string())
            }
        })
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// The answer to a stored body: 204, or InfluxDB's 400 "partial write" when lines were
/// malformed (the others are stored).
fn answer(r: IngestReport) -> Response {
    if r.malformed > 0 {
        return plain(
            StatusCode::BAD_REQUEST,
            format!(
                "partial write: {} malformed lines or series skipped, {} points stored",
                r.malformed, r.points
            ),
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn write_lines(
    State(s): State<HttpState>,
    Query(q): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(st) = s.stream.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // one body read while another is stored: the writers' bodies wait in their connections,
    // not in our memory
    let Ok(_slot) = st.ingest_slots.clone().acquire_owned().await else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let body = match ingest_body(&st, &headers, body, false).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(db) = q.db.filter(|d| !d.is_empty()) else {
        return plain(StatusCode::BAD_REQUEST, "database is required (db=)");
    };
    let precision = match Precision::from_param(q.precision.as_deref().unwrap_or("ns")) {
        Ok(p) => p,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.0),
    };
    // parsing a large body is CPU work: off the threads that answer the probes
    match tokio::task::spawn_blocking(move || st.ingest_lines(&db, precision, &body, now_ns()))
        .await
    {
        Ok(r) => answer(r),
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "ingest failed"),
    }
}

async fn write_remote(State(s): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let Some(st) = s.stream.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(_slot) = st.ingest_slots.clone().acquire_owned().await else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let pb = match ingest_body(&st, &headers, body, true).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match tokio::task::spawn_blocking(move || st.ingest_remote_write(&pb, now_ns())).await {
        Ok(r) => answer(r),
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "ingest failed"),
    }
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

/// Connections accepted beyond `server.max_connections` when every connection is in the middle
/// of a request (none can be shed): they are served `/health` and `/ready` only, so a burst of
/// slow `/ready` or `/metrics` requests cannot keep a probe out. Small: each is a socket.
pub const PROBE_RESERVE: usize = 8;

/// What the accept loop knows of one open connection.
struct Open {
    /// true while a request of this connection is being answered; false while it waits for (or
    /// is still sending) a request head: then it may be shed
    busy: Arc<AtomicBool>,
    /// closes the connection (its task drops it)
    shed: tokio::sync::oneshot::Sender<()>,
}

/// Open connections in accept order (ids only grow), so the first idle one is the oldest.
type Registry = Arc<Mutex<BTreeMap<u64, Open>>>;

/// Serves until the process ends; a port that cannot be bound is an error at start.
///
/// Each connection must send its request headers within `header_read_timeout_seconds` (hyper's
/// timer, also between keep-alive requests), and each request is answered within
/// `request_timeout_seconds` (408 after). Every connection is accepted at once, so a probe never
/// queues in the listen backlog behind slow clients: when `max_connections` are open, the
/// oldest one that is not in the middle of a request (an idle keep-alive, or a client still
/// sending its request head: the slow ones) is closed to make room; when every one is busy
/// answering, up to [`PROBE_RESERVE`] more are accepted for `/health` and `/ready` only (503 for
/// anything else). Beyond that, new clients wait in the listen backlog. So at most
/// `max_connections + PROBE_RESERVE` sockets are open, and liveness and readiness answer
/// whatever other clients do.
pub async fn serve(
    server: &ServerSettings,
    state: HttpState,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (bind, port) = (&server.bind, server.port);
    let listener = tokio::net::TcpListener::bind((bind.as_str(), port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {bind}:{port} (server.port / PORT): {e}"))?;
    tracing::info!(
        "HTTP endpoint on {bind}:{port} (/health, /ready, /metrics{}{})",
        if state.stream.is_some() {
            ", /write, /api/v1/write"
        } else {
            ""
        },
        if state.console.is_some() {
            ", the console at /ui/"
        } else {
            ""
        }
    );
    let app = router(state).layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        Duration::from_secs(server.request_timeout_seconds),
    ));
    let header_timeout = Duration::from_secs(server.header_read_timeout_seconds);
    let max = server.max_connections.max(1);
    // the hard cap on sockets: waiting for it before accepting leaves clients in the backlog
    let sockets = Arc::new(tokio::sync::Semaphore::new(max + PROBE_RESERVE));
    let open: Registry = Default::default();
    let mut next_id = 0u64;
    Ok(tokio::spawn(async move {
        loop {
            let Ok(socket) = sockets.clone().acquire_owned().await else {
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
            next_id += 1;
            let id = next_id;
            let busy = Arc::new(AtomicBool::new(false));
            let (shed_tx, shed_rx) = tokio::sync::oneshot::channel();
            let probes_only = admit(&open, max, id, busy.clone(), shed_tx);
            let service = Tracked {
                inner: hyper_util::service::TowerToHyperService::new(app.clone()),
                busy,
                probes_only,
            };
            let mut conn = hyper::server::conn::http1::Builder::new();
            conn.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let open = open.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                tokio::select! {
                    r = conn.serve_connection(io, service) => {
                        if let Err(e) = r {
                            tracing::debug!("HTTP endpoint: connection closed: {e}");
                        }
                    }
                    _ = shed_rx => {
                        tracing::debug!("HTTP endpoint: an idle or slow connection closed to make room");
                    }
                }
                if let Ok(mut open) = open.lock() {
                    open.remove(&id);
                }
                drop(socket);
            });
        }
    }))
}

/// Registers connection `id`; when `max` are open already, sheds the oldest idle one, or (none
/// idle) admits this one for the probes only (the return value).
fn admit(
    open: &Registry,
    max: usize,
    id: u64,
    busy: Arc<AtomicBool>,
    shed: tokio::sync::oneshot::Sender<()>,
) -> bool {
    let Ok(mut open) = open.lock() else {
        // a poisoned registry (a panic elsewhere): serve the probes rather than nothing
        return true;
    };
    let mut probes_only = false;
    if open.len() >= max {
        let oldest_idle = open
            .iter()
            .find(|(_, c)| !c.busy.load(Ordering::Acquire))
            .map(|(id, _)| *id);
        match oldest_idle.and_then(|victim| open.remove(&victim)) {
            Some(victim) => {
                // its task may have ended meanwhile: nothing left to close then
                let _ = victim.shed.send(());
                metrics::counter!("monit_http_connections_shed_total").increment(1);
            }
            None => probes_only = true,
        }
    }
    open.insert(id, Open { busy, shed });
    probes_only
}

/// The router, marking its connection busy while a request is answered, and refusing all but
/// the probes on a connection admitted beyond the limit.
struct Tracked<S> {
    inner: S,
    busy: Arc<AtomicBool>,
    probes_only: bool,
}

type Req = axum::http::Request<hyper::body::Incoming>;

impl<S> hyper::service::Service<Req> for Tracked<S>
where
    S: hyper::service::Service<Req, Response = axum::response::Response>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = axum::response::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn call(&self, req: Req) -> Self::Future {
        if self.probes_only && !matches!(req.uri().path(), "/health" | "/ready") {
            let refused = (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::CONNECTION, "close")],
                "too many connections: only /health and /ready are served\n",
            )
                .into_response();
            return Box::pin(async move { Ok(refused) });
        }
        self.busy.store(true, Ordering::Release);
        let busy = BusyGuard(self.busy.clone());
        let answer = self.inner.call(req);
        Box::pin(async move {
            let r = answer.await;
            drop(busy);
            r
        })
    }
}

/// Marks the connection idle again when the answer is ready, or abandoned.
struct BusyGuard(Arc<AtomicBool>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
