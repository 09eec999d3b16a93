//! Leader election through a MySQL named lock (`GET_LOCK`), so that several instances can run
//! and exactly one ticks at a time. The lock lives on a connection of its own: when the leader
//! dies, MySQL drops the connection and the lock with it, and a standby takes over on its next
//! interval.

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Mutex;

pub struct Leader {
    options: Option<MySqlConnectOptions>,
    lock_name: String,
    conn: Mutex<Option<MySqlConnection>>,
}

impl Leader {
    /// `options` None: leader election off, this instance always ticks.
    pub fn new(options: Option<MySqlConnectOptions>, lock_name: impl Into<String>) -> Self {
        Self {
            options,
            lock_name: lock_name.into(),
            conn: Mutex::new(None),
        }
    }

    /// True when this instance holds (or just took) the lock.
    pub async fn acquire(&self) -> bool {
        let Some(opts) = &self.options else {
            return true;
        };
        let mut guard = self.conn.lock().await;
        if let Some(conn) = guard.as_mut() {
            let held: Result<Option<i64>, _> =
                sqlx::query_scalar("SELECT IS_USED_LOCK(?) = CONNECTION_ID()")
                    .bind(&self.lock_name)
                    .fetch_one(&mut *conn)
                    .await;
            if let Ok(Some(1)) = held {
                return true;
            }
            tracing::warn!(lock = %self.lock_name, "leader lock lost (DB connection dropped?)");
            metrics::gauge!("monit_leader").set(0.0);
            *guard = None;
        }
        let mut conn = match opts.clone().connect().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(lock = %self.lock_name, "leader election: cannot reach the Monitoring DB: {e}");
                return false;
            }
        };
        let got: Result<Option<i64>, _> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
            .bind(&self.lock_name)
            .fetch_one(&mut conn)
            .await;
        match got {
            Ok(Some(1)) => {
                tracing::info!(lock = %self.lock_name, "this instance is now the leader");
                metrics::gauge!("monit_leader").set(1.0);
                *guard = Some(conn);
                true
            }
            Ok(_) => {
                tracing::debug!(lock = %self.lock_name, "standby: another instance is the leader");
                metrics::gauge!("monit_leader").set(0.0);
                false
            }
            Err(e) => {
                tracing::warn!(lock = %self.lock_name, "leader election failed: {e}");
                false
            }
        }
    }

    pub async fn is_leader(&self) -> bool {
        self.options.is_none() || self.conn.lock().await.is_some()
    }

    /// Lets a standby take over at once on a clean shutdown.
    pub async fn release(&self) {
        if let Some(mut conn) = self.conn.lock().await.take() {
            let _ = sqlx::query("SELECT RELEASE_LOCK(?)")
                .bind(&self.lock_name)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    }
}
