//! MySQL pools and the embedded migrations of the Monitoring DB.

use crate::config::DbSettings;
use anyhow::Context as _;
use sqlx::MySqlPool;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlSslMode};
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub fn connect_options(s: &DbSettings) -> MySqlConnectOptions {
    let mut o = MySqlConnectOptions::new()
        .host(&s.host)
        .port(s.port)
        .database(&s.dbname)
        .username(&s.username)
        .charset("utf8mb4")
        // Times are UTC in the DB, as the original's driver wrote them.
        .timezone(Some("+00:00".to_string()));
    if !s.password.is_empty() {
        o = o.password(s.password.expose());
    }
    if let Some(ca) = &s.ssl_ca {
        o = o.ssl_mode(MySqlSslMode::VerifyCa).ssl_ca(ca);
    } else {
        o = o.ssl_mode(MySqlSslMode::Preferred);
    }
    o
}

/// A pool that connects lazily and reconnects by itself: MySQL down at start or restarted later
/// costs failed ticks, not a dead process (defect D12).
pub fn lazy_pool(s: &DbSettings) -> MySqlPool {
    MySqlPoolOptions::new()
        .max_connections(s.max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(true)
        .connect_lazy_with(connect_options(s))
}

/// Where a DB error points: `user@host:port/db`, never the password.
pub fn describe(s: &DbSettings) -> String {
    format!("mysql://{}@{}:{}/{}", s.username, s.host, s.port, s.dbname)
}

pub async fn migrate(pool: &MySqlPool, s: &DbSettings) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .with_context(|| format!("migrating the Monitoring DB {}", describe(s)))
}
