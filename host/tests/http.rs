//! The HTTP endpoint's limits (issue 11, item 9): idle half-requests are closed after the
//! header-read timeout, a slow request is answered 408 after the request timeout, and `/health`
//! answers while more idle clients than the connection limit hold sockets.

use monit_host::config::secret::Secret;
use monit_host::config::{DbSettings, ServerSettings};
use monit_host::run::http::{HttpState, serve};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A "MySQL server" that accepts and never speaks: whatever asks the pool for a connection
/// waits until its own timeout.
fn silent_mysql() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

async fn start(server: ServerSettings, mysql_port: u16) -> u16 {
    let db = DbSettings {
        db_type: "mysql".into(),
        host: "127.0.0.1".into(),
        port: mysql_port,
        dbname: "none".into(),
        username: "none".into(),
        password: Secret::default(),
        ssl_ca: None,
        max_connections: 1,
    };
    let port = server.port;
    serve(
        &server,
        HttpState {
            pool: monit_host::store::db::lazy_pool(&db),
            status: Default::default(),
            metrics: None,
            stream: None,
            console: None,
        },
    )
    .await
    .unwrap();
    port
}

fn settings(header_s: u64, request_s: u64, max_connections: usize) -> ServerSettings {
    ServerSettings {
        enabled: true,
        bind: "127.0.0.1".into(),
        port: free_port(),
        header_read_timeout_seconds: header_s,
        request_timeout_seconds: request_s,
        max_connections,
    }
}

/// `GET path` on a fresh connection; the status line, or why there was none. Bounded by a
/// generous read timeout so a hung endpoint fails the test instead of hanging it.
fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("<empty answer>")
            .to_string(),
        Err(e) => format!("<no answer: {e}>"),
    }
}

/// True when the server closed the connection (EOF or reset) before `limit`.
fn closed_by_server(mut s: &TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => true, // an error answer, then close: not idle any more either
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_half_requests_are_closed_and_health_still_answers() {
    let (_mysql, mysql_port) = silent_mysql();
    let port = start(settings(1, 5, 8), mysql_port).await;
    // four times the connection limit, each a request that never ends
    let idle: Vec<TcpStream> = (0..32)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: loc").unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let health = tokio::task::spawn_blocking(move || get(port, "/health"))
        .await
        .unwrap();
    assert!(health.contains("200"), "/health: {health}");
    eprintln!(
        "/health answered after {:?} behind 32 idle clients",
        started.elapsed()
    );
    // every idle client was dropped by the header-read timeout, not left holding a socket
    let still_open = tokio::task::spawn_blocking(move || {
        idle.iter()
            .filter(|s| !closed_by_server(s, Duration::from_secs(30)))
            .count()
    })
    .await
    .unwrap();
    assert_eq!(still_open, 0, "idle connections left open by the server");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_request_is_answered_408_after_the_request_timeout() {
    // /ready waits for a DB connection that never comes (the pool would wait 10 s)
    let (_mysql, mysql_port) = silent_mysql();
    let port = start(settings(5, 1, 8), mysql_port).await;
    let ready = tokio::task::spawn_blocking(move || get(port, "/ready"))
        .await
        .unwrap();
    assert!(ready.contains("408"), "/ready: {ready}");
    let health = tokio::task::spawn_blocking(move || get(port, "/health"))
        .await
        .unwrap();
    assert!(health.contains("200"), "/health: {health}");
}

/// Every connection busy answering (`/ready` waiting for a DB that never speaks): `/health` and
/// `/ready` still get a connection of the probe reserve, anything else is refused there.
#[tokio::test(flavor = "multi_thread")]
async fn probes_answer_while_every_connection_is_busy() {
    let (_mysql, mysql_port) = silent_mysql();
    // the request timeout is longer than the test: only the reserve can let /health in
    let port = start(settings(5, 120, 4), mysql_port).await;
    let busy: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            write!(s, "GET /ready HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
            s
        })
        .collect();
    // the four requests have reached the router (each waits for the DB pool)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (health, other) = tokio::task::spawn_blocking(move || {
        let health = get_within(port, "/health", Duration::from_secs(5));
        let other = get_within(port, "/metrics", Duration::from_secs(5));
        (health, other)
    })
    .await
    .unwrap();
    assert!(health.contains("200"), "/health: {health}");
    assert!(
        other.contains("503"),
        "/metrics on a reserve connection: {other}"
    );
    drop(busy);
}

/// [`get`] with a shorter read timeout.
fn get_within(port: u16, path: &str, limit: Duration) -> String {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = match TcpStream::connect_timeout(&addr, limit) {
        Ok(s) => s,
        Err(e) => return format!("<connect: {e}>"),
    };
    s.set_read_timeout(Some(limit)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("<empty answer>")
            .to_string(),
        Err(e) => format!("<no answer within {limit:?}: {e}>"),
    }
}

#[test]
fn server_limits_are_range_checked() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("header_read_timeout_seconds", "0"),
        ("request_timeout_seconds", "100000"),
        ("max_connections", "0"),
    ] {
        let p = dir.path().join("m.toml");
        std::fs::write(
            &p,
            format!("[monitoring_db]\ndbname = \"m\"\n[server]\n{key} = {value}\n"),
        )
        .unwrap();
        let e = monit_host::plugin::load_settings_with_env(Some(&p), Default::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("server.{key}")), "{e}");
    }
}
