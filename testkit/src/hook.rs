//! A webhook receiver of the test's own: a real HTTP server on 127.0.0.1 (axum, on a thread
//! and runtime of its own, so a test may block on the binary meanwhile). It records every POST
//! and can be told to answer 503 to the next N requests on a path (a receiver that is down for
//! a moment).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct HookRequest {
    /// the path without its leading `/`
    pub path: String,
    /// `x-monit-notification-id`
    pub notification_id: Option<String>,
    /// the answer it got
    pub status: u16,
    pub body: serde_json::Value,
}

#[derive(Default)]
struct Shared {
    requests: Vec<HookRequest>,
    fail_next: HashMap<String, u32>,
}

pub struct HookReceiver {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HookReceiver {
    pub fn start() -> HookReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("the listener's port").port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the hook receiver");
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                let app = axum::Router::new()
                    .route("/{*path}", axum::routing::post(receive))
                    .with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        HookReceiver {
            port,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// The next `n` requests on `path` get 503.
    pub fn fail_next(&self, path: &str, n: u32) {
        self.lock().fail_next.insert(path.to_string(), n);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<HookRequest> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn receive(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
    let status = match s.fail_next.get_mut(&path) {
        Some(n) if *n > 0 => {
            *n -= 1;
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::NO_CONTENT,
    };
    s.requests.push(HookRequest {
        path,
        notification_id: headers
            .get("x-monit-notification-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        status: status.as_u16(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    status
}

impl Drop for HookReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
