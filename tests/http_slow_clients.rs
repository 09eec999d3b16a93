//! `/health` and `/ready` keep answering while slow clients hold more connections than
//! `server.max_connections` (issue 18, item 6): `monit-batch run` on a real MariaDB, 300 clients
//! each trickling a request head byte by byte, then probes.

mod common;

use common::{TestEnv, free_port};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SLOW_CLIENTS: usize = 300;
const MAX_CONNECTIONS: usize = 64;

/// `monit-batch run`, stopped by pid when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on a fresh connection: the status line, or why there was none within `limit`.
fn probe(port: u16, path: &str, limit: Duration) -> String {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = match TcpStream::connect_timeout(&addr, limit) {
        Ok(s) => s,
        Err(e) => return format!("<connect: {e}>"),
    };
    s.set_read_timeout(Some(limit)).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    if let Err(e) = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    ) {
        return format!("<write: {e}>");
    }
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) if buf.is_empty() => "<closed without an answer>".into(),
        Ok(_) => String::from_utf8_lossy(&buf).into_owned(),
        Err(e) => format!("<no answer within {limit:?}: {e}>"),
    }
}

/// True when the server has closed `s` (EOF or reset) rather than keeping it open.
fn closed_by_server(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let closed = match (&*s).read(&mut buf) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_ready_answer_while_300_slow_clients_hold_the_connections() {
    let env = TestEnv::new("http_slow", "").await;
    let port = free_port();
    let _batch = Running(
        Command::new(env!("CARGO_BIN_EXE_monit-batch"))
            .arg("--config")
            .arg(&env.config)
            .arg("run")
            .env_remove("PORT")
            .env("MONIT_BATCH__SERVER__ENABLED", "true")
            .env("MONIT_BATCH__SERVER__BIND", "127.0.0.1")
            .env("MONIT_BATCH__SERVER__PORT", port.to_string())
            .env(
                "MONIT_BATCH__SERVER__MAX_CONNECTIONS",
                MAX_CONNECTIONS.to_string(),
            )
            // longer than the whole test: only the connection handling can keep /health up
            .env("MONIT_BATCH__SERVER__HEADER_READ_TIMEOUT_SECONDS", "120")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let up = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if probe(port, "/health", Duration::from_secs(2)).starts_with("HTTP/1.1 200") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    })
    .await
    .unwrap();
    assert!(up, "the endpoint never answered /health");

    let result = tokio::task::spawn_blocking(move || {
        // 300 clients, each sending a request head that never ends, a byte at a time. A server
        // that stops accepting fills its listen backlog and later connects hang: bounded by
        // a timeout each and 20 s in all
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        let mut slow = Vec::new();
        for _ in 0..SLOW_CLIENTS {
            if started.elapsed() > Duration::from_secs(20) {
                break;
            }
            // a busy machine may leave the accept loop unscheduled for a moment: a connect
            // that lands in a full backlog is retried by the kernel after 1 s and 3 s
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(mut s) => {
                    s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
                    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
                    slow.push(s);
                }
                Err(e) => eprintln!("connect failed after {:?}: {e}", started.elapsed()),
            }
        }
        let connected = slow.len();
        eprintln!("{connected} slow clients connected");
        let slow = Arc::new(slow);
        let stop = Arc::new(AtomicBool::new(false));
        let drip = {
            let (slow, stop) = (slow.clone(), stop.clone());
            std::thread::spawn(move || {
                // bounded: at most 120 rounds of 250 ms
                for _ in 0..120 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    for s in slow.iter() {
                        let _ = (&*s).write_all(b"a");
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
        };
        // let the server see every one of them
        std::thread::sleep(Duration::from_secs(2));
        let probes: Vec<String> = ["/health", "/health", "/health", "/ready"]
            .iter()
            .map(|p| {
                let started = Instant::now();
                let answer = probe(port, p, Duration::from_secs(5));
                eprintln!(
                    "{p} behind {connected} slow clients: {:?} after {:?}",
                    answer.lines().next(),
                    started.elapsed()
                );
                answer
            })
            .collect();
        let held_open = slow.iter().filter(|s| !closed_by_server(s)).count();
        stop.store(true, Ordering::Relaxed);
        let _ = drip.join();
        drop(slow);
        // the slow clients gone, the other routes are served again
        let metrics = probe(port, "/metrics", Duration::from_secs(5));
        (connected, probes, held_open, metrics)
    })
    .await
    .unwrap();
    let (connected, probes, held_open, metrics) = result;
    for (i, answer) in probes.iter().enumerate() {
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "probe {i} did not get 200 within 5 s: {}",
            answer.lines().next().unwrap_or_default()
        );
    }
    assert!(
        probes[3].contains("\"database\":\"ok\""),
        "/ready: {}",
        probes[3]
    );
    assert_eq!(
        connected, SLOW_CLIENTS,
        "every client is accepted (the slow ones shed), none left hanging in the backlog"
    );
    assert!(
        held_open <= MAX_CONNECTIONS + monit_host::run::http::PROBE_RESERVE,
        "{held_open} slow clients still held by the server: more sockets than the limit"
    );
    assert!(metrics.starts_with("HTTP/1.1 200"), "/metrics: {metrics}");
    assert!(
        metrics.contains("monit_http_connections_shed_total"),
        "the shed connections are counted: {metrics}"
    );
    env.cleanup().await;
}
