//! Throwaway databases for the workspace's tests on the real MariaDB and InfluxDB: every test gets
//! databases of its own, so tests run in parallel and never see each other's rows.
//!
//! Test support only: it panics with a message naming the server and the database when a service
//! refuses, because a test cannot go on without its database.

pub mod alertmanager;
pub mod hook;

use sqlx::mysql::MySqlPoolOptions;
use sqlx::{Connection as _, MySqlConnection, MySqlPool};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The test MariaDB server, without a database and without a trailing `/`, so that
/// `format!("{}/{name}", mysql_url())` names a database on it.
pub fn mysql_url() -> String {
    std::env::var("MONIT_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://monit:monit@127.0.0.1:3306".into())
        .trim_end_matches('/')
        .to_string()
}

/// The test InfluxDB 1.x server, without a trailing `/`.
pub fn influx_url() -> String {
    std::env::var("MONIT_TEST_INFLUX_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8086".into())
        .trim_end_matches('/')
        .to_string()
}

/// The test VictoriaMetrics (single node, Prometheus API; `scripts/services.sh` starts it on
/// 127.0.0.1:8428), without a trailing `/`.
pub fn victoria_metrics_url() -> String {
    std::env::var("MONIT_TEST_VM_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8428".into())
        .trim_end_matches('/')
        .to_string()
}

/// Writes InfluxDB line protocol (`precision=s`) to VictoriaMetrics under `db` (it becomes the
/// label `db="<db>"`, which keeps tests apart on the shared server), then flushes so the points
/// can be queried at once.
pub async fn write_victoria_metrics(url: &str, db: &str, lines: &str) {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/write"))
        .query(&[("db", db), ("precision", "s")])
        .body(lines.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("VictoriaMetrics {url}: {e} (is scripts/services.sh run?)"));
    let status = r.status();
    assert!(
        status.is_success(),
        "VictoriaMetrics {url}/write db={db}: {status}: {}",
        r.text().await.unwrap_or_default()
    );
    let r = http
        .get(format!("{url}/internal/force_flush"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("VictoriaMetrics {url}: {e}"));
    assert!(
        r.status().is_success(),
        "VictoriaMetrics force_flush: {}",
        r.status()
    );
}

/// `tag` made unique: the pid keeps parallel test binaries apart, the counter the tests of one
/// binary, the clock a later run that got the same pid (leftovers of a crashed run, mails that stay
/// in the SMTP sink's Maildir).
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{tag}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000_000
    )
}

/// A MariaDB database of the test's own, empty, and a pool on it. Remove it with [`TestDb::drop`].
pub struct TestDb {
    pub name: String,
    pub pool: MySqlPool,
    server_url: String,
}

impl TestDb {
    /// On [`mysql_url`].
    pub async fn create(tag: &str) -> TestDb {
        Self::create_on(&mysql_url(), tag).await
    }

    /// On another server (a test's private MariaDB), given as `mysql://user:password@host:port`.
    pub async fn create_on(server_url: &str, tag: &str) -> TestDb {
        let server_url = server_url.trim_end_matches('/');
        let name = unique(&format!("monit_test_{tag}"));
        assert!(
            name.len() <= 64,
            "database name {name} is longer than MariaDB's 64 characters: shorten the tag"
        );
        // utf8mb4 whatever the server's default, so a private server behaves like the shared one
        admin(
            server_url,
            &format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
        )
        .await
        .unwrap_or_else(|e| panic!("creating MariaDB database {name}: {e}"));
        let pool = MySqlPoolOptions::new()
            .max_connections(5)
            .connect(&format!("{server_url}/{name}"))
            .await
            .unwrap_or_else(|e| panic!("connecting to MariaDB database {name}: {e}"));
        TestDb {
            name,
            pool,
            server_url: server_url.to_string(),
        }
    }

    /// Closes the pool and drops the database.
    pub async fn drop(self) {
        let name = self.name.clone();
        self.try_drop()
            .await
            .unwrap_or_else(|e| panic!("dropping MariaDB database {name}: {e}"));
    }

    /// [`TestDb::drop`] for a cleanup that must not decide the test's result (the server may be a
    /// private one the test stopped): the caller chooses to ignore the error.
    pub async fn try_drop(self) -> Result<(), sqlx::Error> {
        self.pool.close().await;
        admin(
            &self.server_url,
            &format!("DROP DATABASE IF EXISTS `{}`", self.name),
        )
        .await
    }
}

async fn admin(server_url: &str, statement: &str) -> Result<(), sqlx::Error> {
    let mut conn = MySqlConnection::connect(server_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&mut conn)
        .await?;
    conn.close().await
}

/// Creates InfluxDB database `name` on the server at `url`.
pub async fn create_influx_db(url: &str, name: &str) {
    influx_statement(url, &format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("creating InfluxDB database {name}: {e}"));
}

/// Drops InfluxDB database `name` on the server at `url`.
pub async fn drop_influx_db(url: &str, name: &str) {
    try_drop_influx_db(url, name)
        .await
        .unwrap_or_else(|e| panic!("dropping InfluxDB database {name}: {e}"));
}

/// [`drop_influx_db`] for a cleanup that must not decide the test's result.
pub async fn try_drop_influx_db(url: &str, name: &str) -> Result<(), String> {
    influx_statement(url, &format!("DROP DATABASE \"{name}\"")).await
}

/// InfluxDB 1.x answers a refused statement with 200 and an `error` in the body, so both count.
async fn influx_statement(url: &str, statement: &str) -> Result<(), String> {
    let endpoint = format!("{}/query", url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&endpoint)
        .form(&[("q", statement)])
        .send()
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    if status.is_success() && !body.contains("\"error\"") {
        Ok(())
    } else {
        Err(format!("{endpoint}: {status} {body}"))
    }
}

/// An SMTP server of the test's own that misbehaves on request (`smtp/fault_sink.py`, Debian's
/// aiosmtpd): slow, hanging after N mails, refusing or deferring chosen recipients, answering
/// DATA with a code. Every accepted mail lands in `maildir` with an `X-Sink-Rcpt` header.
pub struct FaultSink {
    pub port: u16,
    pub maildir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

/// One mail a [`FaultSink`] accepted.
#[derive(Clone, Debug)]
pub struct SinkMail {
    /// `X-Monit-Notification-Id`: the outbox row
    pub notification_id: Option<i64>,
    /// the envelope recipients the sink accepted
    pub rcpt: Vec<String>,
    pub raw: String,
}

impl FaultSink {
    /// On a free port; `args` as fault_sink.py takes them (`--delay 0.3`, `--refuse a@b`, ...).
    pub fn start(maildir: &std::path::Path, args: &[&str]) -> FaultSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        Self::start_on(port, maildir, args)
    }

    pub fn start_on(port: u16, maildir: &std::path::Path, args: &[&str]) -> FaultSink {
        use std::io::BufRead as _;
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp/fault_sink.py");
        let mut child = std::process::Command::new("/usr/bin/python3")
            .arg(script)
            .arg(port.to_string())
            .arg(maildir)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting testkit/smtp/fault_sink.py (python3-aiosmtpd: scripts/services.sh)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut first = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut first)
            .expect("fault sink output");
        assert_eq!(first.trim(), "ready", "fault sink did not start");
        FaultSink {
            port,
            maildir: maildir.to_path_buf(),
            child: Some(child),
        }
    }

    /// Every mail accepted so far.
    pub fn mails(&self) -> Vec<SinkMail> {
        let Ok(dir) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in dir.flatten() {
            let Ok(raw) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let header = |name: &str| {
                raw.lines().take_while(|l| !l.is_empty()).find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_string())
                })
            };
            out.push(SinkMail {
                notification_id: header("X-Monit-Notification-Id").and_then(|v| v.parse().ok()),
                rcpt: header("X-Sink-Rcpt")
                    .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                    .unwrap_or_default(),
                raw,
            });
        }
        out
    }

    /// Stops the server (its port closes).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for FaultSink {
    fn drop(&mut self) {
        self.stop();
    }
}
