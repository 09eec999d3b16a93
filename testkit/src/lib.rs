//! Throwaway databases for the workspace's tests on the real MariaDB and InfluxDB: every test gets
//! databases of its own, so tests run in parallel and never see each other's rows.
//!
//! Test support only: it panics with a message naming the server and the database when a service
//! refuses, because a test cannot go on without its database.

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
