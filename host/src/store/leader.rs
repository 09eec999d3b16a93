//! Leader election through a MySQL named lock (`GET_LOCK`), so that several instances can run
//! and exactly one ticks at a time. The lock lives on a connection of its own: when the leader
//! dies, MySQL drops the connection and the lock with it, and a standby takes over on its next
//! interval.
//!
//! Holding the lock at the start of a tick is not enough: the lock connection can be killed
//! mid-tick (a proxy's idle timeout, a DBA, a network blip) and a standby take over while this
//! instance is still writing or sending. So the sender asks [`Leader::holds`] before each mail,
//! and every write transaction checks the fencing epoch ([`Leader::fence`]): a new leader bumps
//! `batch_leader.epoch`, and a transaction of the old one finds another epoch and rolls back.

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Mutex;

pub struct Leader {
    options: Option<MySqlConnectOptions>,
    lock_name: String,
    holder: String,
    conn: Mutex<Option<MySqlConnection>>,
    epoch: std::sync::Mutex<Option<i64>>,
}

/// What a write transaction checks: the lock and the epoch this instance took it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub lock_name: String,
    pub epoch: i64,
}

impl Fence {
    /// Fails when another instance took the lock since this one did. Locks the lease row until
    /// the transaction ends, so a new leader's epoch bump waits for this transaction's commit.
    pub async fn check(&self, conn: &mut sqlx::MySqlConnection) -> anyhow::Result<()> {
        let epoch: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM batch_leader WHERE lock_name = ? FOR UPDATE")
                .bind(&self.lock_name)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| anyhow::anyhow!("checking the leader lease: {e}"))?;
        match epoch {
            Some(e) if e == self.epoch => Ok(()),
            other => anyhow::bail!(
                "this instance lost the leader lock {} (it holds epoch {}, the lease is at {}): another instance writes now; nothing written",
                self.lock_name,
                self.epoch,
                other
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "none".into())
            ),
        }
    }
}

impl Leader {
    /// `options` None: leader election off, this instance always ticks.
    pub fn new(options: Option<MySqlConnectOptions>, lock_name: impl Into<String>) -> Self {
        Self {
            options,
            lock_name: lock_name.into(),
            holder: format!(
                "{}:{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
                std::process::id()
            ),
            conn: Mutex::new(None),
            epoch: std::sync::Mutex::new(None),
        }
    }

    /// True when this instance holds (or just took) the lock.
    pub async fn acquire(&self) -> bool {
        let Some(opts) = &self.options else {
            metrics::gauge!("monit_leader").set(1.0);
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
            self.set_epoch(None);
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
            Ok(Some(1)) => match self.bump_epoch(&mut conn).await {
                Ok(epoch) => {
                    tracing::info!(lock = %self.lock_name, epoch, "this instance is now the leader");
                    metrics::gauge!("monit_leader").set(1.0);
                    self.set_epoch(Some(epoch));
                    *guard = Some(conn);
                    true
                }
                Err(e) => {
                    tracing::warn!(lock = %self.lock_name, "leader election: cannot record the lease: {e}");
                    let _ = conn.close().await;
                    false
                }
            },
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

    /// Asks the DB, now, whether this instance still holds the lock (before each send). A lock
    /// connection that fails to answer within a few seconds counts as lost.
    pub async fn holds(&self) -> bool {
        if self.options.is_none() {
            return true;
        }
        let mut guard = self.conn.lock().await;
        let Some(conn) = guard.as_mut() else {
            return false;
        };
        let held = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            sqlx::query_scalar::<_, Option<i64>>("SELECT IS_USED_LOCK(?) = CONNECTION_ID()")
                .bind(&self.lock_name)
                .fetch_one(&mut *conn),
        )
        .await;
        if let Ok(Ok(Some(1))) = held {
            return true;
        }
        tracing::warn!(lock = %self.lock_name, "leader lock lost mid-tick: stopping");
        metrics::gauge!("monit_leader").set(0.0);
        *guard = None;
        self.set_epoch(None);
        false
    }

    /// The fence write transactions check; None when leader election is off.
    pub fn fence(&self) -> Option<Fence> {
        self.options.as_ref()?;
        let epoch = self.epoch.lock().ok().and_then(|e| *e)?;
        Some(Fence {
            lock_name: self.lock_name.clone(),
            epoch,
        })
    }

    /// Whether leader election is on: then a write without a [`fence`](Self::fence) is refused.
    /// This instance's name in `batch_leader.holder` (`HOSTNAME:pid`).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn elected(&self) -> bool {
        self.options.is_some()
    }

    fn set_epoch(&self, epoch: Option<i64>) {
        if let Ok(mut e) = self.epoch.lock() {
            *e = epoch;
        }
    }

    async fn bump_epoch(&self, conn: &mut MySqlConnection) -> Result<i64, sqlx::Error> {
        sqlx::query(
            "INSERT INTO batch_leader (lock_name, holder, epoch, acquired_at) VALUES (?, ?, 1, UTC_TIMESTAMP(3)) \
             ON DUPLICATE KEY UPDATE epoch = epoch + 1, holder = VALUES(holder), acquired_at = VALUES(acquired_at)",
        )
        .bind(&self.lock_name)
        .bind(&self.holder)
        .execute(&mut *conn)
        .await?;
        sqlx::query_scalar("SELECT epoch FROM batch_leader WHERE lock_name = ?")
            .bind(&self.lock_name)
            .fetch_one(&mut *conn)
            .await
    }

    /// Lets a standby take over at once on a clean shutdown.
    pub async fn release(&self) {
        self.set_epoch(None);
        if let Some(mut conn) = self.conn.lock().await.take() {
            let _ = sqlx::query("SELECT RELEASE_LOCK(?)")
                .bind(&self.lock_name)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    }
}
