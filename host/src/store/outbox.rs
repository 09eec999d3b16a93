//! The notification outbox (`batch_notifications`): how a row is claimed, marked and parked.
//!
//! A row is written in the alarm transaction (see `store::apply_changes`) and then:
//! - claimed by the instance that sends it: owner and expiry set in one UPDATE, in DB time, so
//!   two instances never hold the same row and a crashed one's claims lapse on their own;
//! - renewed just before its send (the claim is also the proof that nobody else took it);
//! - marked as soon as its notifier reports the outcome, not after a batch: `sent`, back to
//!   `pending` with a backoff of its own, or `parked` (can never be sent, or too old);
//! - remembered per recipient: a recipient that accepted it, or refused it for good, is not
//!   sent it again.
//!
//! The queue order is what matters first: opened or escalated critical/fail, then warning, then
//! repeats and recoveries; newest first within a class, so a backlog never holds back a fresh
//! alarm.

use crate::model::{Level, Timestamp, first_chars};
use crate::plugin::{Delivery, Notification, NotificationKind};
use anyhow::Context as _;
use serde::Serialize;
use sqlx::{MySqlPool, QueryBuilder, Row};
use std::collections::HashMap;
use std::time::Duration;

/// Queue class of a notification: lower goes first.
pub fn priority(kind: NotificationKind, level: Level) -> i8 {
    let severe = matches!(level, Level::Critical | Level::Fail);
    match kind {
        NotificationKind::Opened | NotificationKind::Escalated if severe => 0,
        NotificationKind::Opened | NotificationKind::Escalated => 1,
        NotificationKind::Repeated | NotificationKind::SteppedDown => 2,
        NotificationKind::Recovered => 3,
    }
}

/// A row this instance holds a claim on.
pub struct Claimed {
    pub id: i64,
    pub attempts: i64,
    pub notification: Notification,
}

/// Parks pending rows older than `max_age` (nobody wants a day-old "CPU high" mail) that no
/// live claim holds. Returns how many.
pub async fn park_expired(pool: &MySqlPool, max_age: Duration) -> anyhow::Result<u64> {
    let res = sqlx::query(
        "UPDATE batch_notifications SET status = 'parked', claimed_by = NULL, claim_until = NULL, \
         last_error = CONCAT('expired: not delivered within ', ?, ' s', IFNULL(CONCAT('; last error: ', LEFT(last_error, 1500)), '')) \
         WHERE status = 'pending' AND created_at < UTC_TIMESTAMP() - INTERVAL ? SECOND \
         AND (claim_until IS NULL OR claim_until < UTC_TIMESTAMP(3))",
    )
    .bind(max_age.as_secs())
    .bind(max_age.as_secs())
    .execute(pool)
    .await
    .context("parking expired notifications")?;
    Ok(res.rows_affected())
}

/// Claims up to `limit` due rows of `notifier` for `owner` for `ttl`, in queue order, and
/// returns them with the recipients already done. Rows in `tried` (already attempted in this
/// run) are left alone. Unreadable payloads are parked, not returned.
///
/// `epoch`: the leader epoch this instance holds the lock under (None: leader election off).
/// A leader also takes, at once, rows another owner claimed under an older epoch: that owner
/// lost the lock (it died, or its lock connection did), checks the lock before each send and
/// renews a row's claim only while it still owns it, so it sends nothing more; at most the
/// mail it had in flight goes out twice, as after a claim lapses.
#[allow(clippy::too_many_arguments)]
pub async fn claim(
    pool: &MySqlPool,
    notifier: &str,
    owner: &str,
    epoch: Option<i64>,
    ttl: Duration,
    now: Timestamp,
    limit: u32,
    tried: &[i64],
) -> anyhow::Result<Vec<Claimed>> {
    let mut q = QueryBuilder::new("UPDATE batch_notifications SET claimed_by = ");
    q.push_bind(owner)
        .push(", claim_until = UTC_TIMESTAMP(3) + INTERVAL ")
        .push_bind(ttl.as_secs())
        .push(" SECOND, claim_epoch = ")
        .push_bind(epoch)
        .push(" WHERE notifier = ")
        .push_bind(notifier)
        .push(" AND status = 'pending' AND next_attempt_at <= ")
        .push_bind(now)
        .push(" AND (claim_until IS NULL OR claim_until < UTC_TIMESTAMP(3)");
    if let Some(epoch) = epoch {
        q.push(" OR (claim_epoch < ")
            .push_bind(epoch)
            .push(" AND claimed_by <> ")
            .push_bind(owner)
            .push(")");
    }
    q.push(")");
    if !tried.is_empty() {
        q.push(" AND NOT ");
        push_id_in(&mut q, "id", tried);
    }
    q.push(" ORDER BY priority, id DESC LIMIT ")
        .push_bind(limit);
    q.build()
        .execute(pool)
        .await
        .context("claiming notifications from the outbox")?;
    let rows = sqlx::query(
        "SELECT CAST(id AS SIGNED) AS id, CAST(attempts AS SIGNED) AS attempts, payload FROM batch_notifications \
         WHERE claimed_by = ? AND notifier = ? AND status = 'pending' AND claim_until > UTC_TIMESTAMP(3) \
         ORDER BY priority, id DESC",
    )
    .bind(owner)
    .bind(notifier)
    .fetch_all(pool)
    .await
    .context("reading claimed notifications")?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let payload: String = row.try_get("payload")?;
        match serde_json::from_str::<Notification>(&payload) {
            Ok(mut n) => {
                n.id = id;
                out.push(Claimed {
                    id,
                    attempts: row.try_get("attempts")?,
                    notification: n,
                });
            }
            Err(e) => {
                let reason = format!("unreadable payload: {e}");
                tracing::error!(notification_id = id, "outbox row parked: {reason}");
                metrics::counter!("monit_notifications_parked_total", "notifier" => notifier.to_string(), "why" => "unreadable")
                    .increment(1);
                park(pool, id, owner, &reason).await?;
            }
        }
    }
    let done = done_recipients(pool, &out.iter().map(|c| c.id).collect::<Vec<_>>()).await?;
    for c in &mut out {
        c.notification.done_recipients = done.get(&c.id).cloned().unwrap_or_default();
    }
    Ok(out)
}

async fn done_recipients(
    pool: &MySqlPool,
    ids: &[i64],
) -> anyhow::Result<HashMap<i64, Vec<String>>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let mut q = QueryBuilder::new(
        "SELECT CAST(notification_id AS SIGNED) AS id, recipient FROM batch_notification_recipients WHERE ",
    );
    push_id_in(&mut q, "notification_id", ids);
    for row in q
        .build()
        .fetch_all(pool)
        .await
        .context("reading delivered recipients")?
    {
        out.entry(row.try_get("id")?)
            .or_default()
            .push(row.try_get("recipient")?);
    }
    Ok(out)
}

/// `<column> IN (?, ?, …)` for a query builder.
pub fn push_id_in(q: &mut QueryBuilder<sqlx::MySql>, column: &str, ids: &[i64]) {
    q.push(column).push(" IN (");
    let mut sep = q.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
    q.push(")");
}

/// Extends the claim on one row just before it is sent. False: the claim lapsed and another
/// instance may hold the row now, so it must not be sent from here.
pub async fn renew(pool: &MySqlPool, id: i64, owner: &str, ttl: Duration) -> anyhow::Result<bool> {
    let res = sqlx::query(
        "UPDATE batch_notifications SET claim_until = UTC_TIMESTAMP(3) + INTERVAL ? SECOND \
         WHERE id = ? AND claimed_by = ? AND status = 'pending' AND claim_until > UTC_TIMESTAMP(3)",
    )
    .bind(ttl.as_secs())
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await
    .context("renewing a notification claim")?;
    Ok(res.rows_affected() == 1)
}

/// Gives claimed rows back without counting an attempt (budget spent, lease lost, sink down).
pub async fn release(pool: &MySqlPool, ids: &[i64], owner: &str) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::new(
        "UPDATE batch_notifications SET claimed_by = NULL, claim_until = NULL WHERE status = 'pending' AND claimed_by = ",
    );
    q.push_bind(owner).push(" AND ");
    push_id_in(&mut q, "id", ids);
    q.build()
        .execute(pool)
        .await
        .context("releasing notification claims")?;
    Ok(())
}

/// What the host does with a row after its delivery.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Sent,
    /// pending again, not before this time
    RetryAt(Timestamp),
    Parked,
}

/// Records one delivery: the recipients that are done and the row's new state, in one
/// transaction. Returns false when the row was no longer claimed by `owner`.
pub async fn record(
    pool: &MySqlPool,
    id: i64,
    owner: &str,
    delivery: &Delivery,
    outcome: &Outcome,
    now: Timestamp,
) -> anyhow::Result<bool> {
    let (accepted, rejected, reason): (&[String], &[crate::plugin::Refusal], Option<&str>) =
        match delivery {
            Delivery::Sent { rejected } => (&[], rejected, None),
            Delivery::Retry {
                reason,
                accepted,
                rejected,
            } => (accepted, rejected, Some(reason)),
            Delivery::Reject { reason } | Delivery::Unavailable { reason } => {
                (&[], &[], Some(reason))
            }
        };
    let mut tx = pool.begin().await.context("recording a delivery")?;
    if !accepted.is_empty() || !rejected.is_empty() {
        let rows: Vec<(&str, &str, Option<&str>)> = accepted
            .iter()
            .map(|a| (a.as_str(), "accepted", None))
            .chain(
                rejected
                    .iter()
                    .map(|r| (r.recipient.as_str(), "rejected", Some(r.reason.as_str()))),
            )
            .collect();
        let mut q = QueryBuilder::new(
            "INSERT IGNORE INTO batch_notification_recipients (notification_id, recipient, outcome, detail, decided_at) ",
        );
        q.push_values(rows, |mut b, (recipient, outcome, detail)| {
            b.push_bind(id)
                .push_bind(first_chars(recipient, 320))
                .push_bind(outcome)
                .push_bind(
                    detail.map(|d| first_chars(&crate::config::redact::text(d), 1000).to_owned()),
                )
                .push_bind(now);
        });
        q.build()
            .execute(&mut *tx)
            .await
            .context("recording recipients of a delivery")?;
    }
    let refused = (!rejected.is_empty()).then(|| {
        rejected
            .iter()
            .map(|r| format!("{} refused: {}", r.recipient, r.reason))
            .collect::<Vec<_>>()
            .join("; ")
    });
    let error = match (reason, refused) {
        (Some(r), Some(f)) => Some(format!("{r}; {f}")),
        (Some(r), None) => Some(r.to_string()),
        (None, f) => f,
    };
    let mut q = QueryBuilder::new("UPDATE batch_notifications SET attempts = attempts + 1, ");
    match outcome {
        Outcome::Sent => {
            q.push("status = 'sent', sent_at = ").push_bind(now);
        }
        Outcome::RetryAt(at) => {
            q.push("next_attempt_at = ").push_bind(*at);
        }
        Outcome::Parked => {
            q.push("status = 'parked'");
        }
    }
    q.push(", last_error = ")
        .push_bind(error.map(|e| first_chars(&crate::config::redact::text(&e), 2000).to_owned()))
        .push(", claimed_by = NULL, claim_until = NULL WHERE status = 'pending' AND id = ")
        .push_bind(id)
        .push(" AND claimed_by = ")
        .push_bind(owner);
    let res = q
        .build()
        .execute(&mut *tx)
        .await
        .context("marking a notification")?;
    tx.commit().await.context("recording a delivery")?;
    Ok(res.rows_affected() == 1)
}

async fn park(pool: &MySqlPool, id: i64, owner: &str, reason: &str) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE batch_notifications SET status = 'parked', last_error = ?, claimed_by = NULL, claim_until = NULL \
         WHERE id = ? AND claimed_by = ?",
    )
    .bind(first_chars(reason, 2000))
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await
    .context("parking a notification")?;
    Ok(())
}

/// When a failed row is tried again: `min * 2^attempts`, capped at `max`, spread by ±20 %
/// per row so that rows failed together do not all come due in the same second.
pub fn next_attempt(
    now: Timestamp,
    id: i64,
    attempts: i64,
    min: Duration,
    max: Duration,
) -> Timestamp {
    let base = (min.as_secs_f64() * 2f64.powi(attempts.clamp(0, 30) as i32)).min(max.as_secs_f64());
    // a fixed spread per row id (Knuth's multiplicative hash), no RNG needed
    let spread = (id.unsigned_abs().wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0;
    let secs = base * (0.8 + 0.4 * spread);
    now + chrono::Duration::milliseconds((secs * 1000.0) as i64)
}

/// What `notifier` was last told of each open alarm (resolve_status 1 or 2) with an id above
/// `after_alarm`, when that was not a recovery: the alarm's latest row of this notifier that was
/// sent or is a recovery (sent, pending or given up: a recovery on its way ends the firing), when
/// it is a sent notification. At most `limit` alarms, by alarm id; with the last alarm id read
/// (None: no more), where the next page starts. An alarm that was held and never told, or whose
/// first notification is still pending, is not in it.
pub async fn told_firing(
    pool: &MySqlPool,
    notifier: &str,
    after_alarm: i64,
    limit: u32,
) -> anyhow::Result<(Vec<Notification>, Option<i64>)> {
    let rows = sqlx::query(
        "SELECT CAST(a.id AS SIGNED) AS alarm_id, CAST(n.id AS SIGNED) AS id, n.payload \
         FROM alarms a JOIN batch_notifications n ON n.alarm_id = a.id AND n.notifier = ? \
         WHERE a.resolve_status IN ('1', '2') AND a.id > ? \
         AND n.status = 'sent' AND n.kind <> 'recovered' \
         AND n.id = (SELECT MAX(l.id) FROM batch_notifications l \
                     WHERE l.alarm_id = a.id AND l.notifier = ? AND (l.status = 'sent' OR l.kind = 'recovered')) \
         ORDER BY a.id LIMIT ?",
    )
    .bind(notifier)
    .bind(after_alarm)
    .bind(notifier)
    .bind(limit)
    .fetch_all(pool)
    .await
    .context("reading the open alarms a notifier was told")?;
    let mut out = Vec::with_capacity(rows.len());
    let mut last = None;
    for row in rows {
        let alarm_id: i64 = row.try_get("alarm_id")?;
        last = Some(alarm_id);
        let id: i64 = row.try_get("id")?;
        let payload: String = row.try_get("payload")?;
        match serde_json::from_str::<Notification>(&payload) {
            Ok(mut n) => {
                n.id = id;
                out.push(n);
            }
            // it was sent from this payload, so this is a payload of another version: the alarm
            // is left out of the restatement, not the others
            Err(e) => tracing::warn!(
                notifier,
                notification_id = id,
                "cannot restate alarm {alarm_id}: unreadable payload: {e}"
            ),
        }
    }
    Ok((out, last))
}

/// Rows by state, for the summary and `/metrics`.
pub async fn counts(pool: &MySqlPool) -> anyhow::Result<HashMap<String, i64>> {
    let rows = sqlx::query(
        "SELECT status, COUNT(*) AS n FROM batch_notifications WHERE status IN ('pending', 'parked') GROUP BY status",
    )
    .fetch_all(pool)
    .await
    .context("counting the outbox")?;
    let mut out = HashMap::new();
    for row in rows {
        out.insert(row.try_get("status")?, row.try_get("n")?);
    }
    Ok(out)
}

/// One outbox row, as `monit-batch outbox` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    pub id: i64,
    pub notifier: String,
    pub kind: String,
    pub alarm_id: i64,
    pub status: String,
    pub priority: i64,
    pub attempts: i64,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub claimed_by: Option<String>,
    pub last_error: Option<String>,
}

pub async fn list(
    pool: &MySqlPool,
    status: Option<&str>,
    limit: u32,
) -> anyhow::Result<Vec<Listed>> {
    let mut q = QueryBuilder::new(
        "SELECT CAST(id AS SIGNED) AS id, notifier, kind, CAST(alarm_id AS SIGNED) AS alarm_id, status, \
         CAST(priority AS SIGNED) AS priority, CAST(attempts AS SIGNED) AS attempts, created_at, next_attempt_at, \
         claimed_by, last_error FROM batch_notifications WHERE ",
    );
    match status {
        Some(s) => q.push("status = ").push_bind(s.to_string()),
        None => q.push("status IN ('pending', 'parked')"),
    };
    q.push(" ORDER BY status, priority, id DESC LIMIT ")
        .push_bind(limit);
    let rows = q
        .build()
        .fetch_all(pool)
        .await
        .context("listing the outbox")?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(Listed {
            id: row.try_get("id")?,
            notifier: row.try_get("notifier")?,
            kind: row.try_get("kind")?,
            alarm_id: row.try_get("alarm_id")?,
            status: row.try_get("status")?,
            priority: row.try_get("priority")?,
            attempts: row.try_get("attempts")?,
            created_at: row.try_get("created_at")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            claimed_by: row.try_get("claimed_by")?,
            last_error: row.try_get("last_error")?,
        });
    }
    Ok(out)
}

/// The claim condition of an operator command, in DB time: no instance holds the row now. A row
/// under a live claim may be in the middle of its send; clearing or dropping it would lose the
/// record of that send and send it again (or drop a mail that went out).
const NO_LIVE_CLAIM: &str = "(claim_until IS NULL OR claim_until < UTC_TIMESTAMP(3))";

/// How long a claim lasts: one delivery (bounded by the step timeout) with room to record it
/// (up to half the claim); renewed before each send.
pub fn claim_ttl(step_timeout: Duration) -> Duration {
    step_timeout * 2 + Duration::from_secs(5)
}

/// Puts parked or pending rows that no instance holds back in the queue, due now. Returns how
/// many; [`why_untouched`] says why a row was left alone.
pub async fn requeue(pool: &MySqlPool, ids: &[i64], now: Timestamp) -> anyhow::Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let mut q =
        QueryBuilder::new("UPDATE batch_notifications SET status = 'pending', next_attempt_at = ");
    q.push_bind(now)
        .push(", created_at = ")
        .push_bind(now)
        .push(", claimed_by = NULL, claim_until = NULL, claim_epoch = NULL WHERE status IN ('pending', 'parked') AND ")
        .push(NO_LIVE_CLAIM)
        .push(" AND ");
    push_id_in(&mut q, "id", ids);
    Ok(q.build()
        .execute(pool)
        .await
        .context("re-queueing")?
        .rows_affected())
}

/// Drops parked or pending rows that no instance holds, for good. Returns how many.
pub async fn drop_rows(pool: &MySqlPool, ids: &[i64]) -> anyhow::Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let mut q = QueryBuilder::new(
        "UPDATE batch_notifications SET status = 'dropped', claimed_by = NULL, claim_until = NULL, claim_epoch = NULL \
         WHERE status IN ('pending', 'parked') AND ",
    );
    q.push(NO_LIVE_CLAIM).push(" AND ");
    push_id_in(&mut q, "id", ids);
    Ok(q.build()
        .execute(pool)
        .await
        .context("dropping")?
        .rows_affected())
}

/// Why [`requeue`] or [`drop_rows`] left a row as it was.
#[derive(Clone, Debug, PartialEq)]
pub enum Untouched {
    /// no such row
    Missing,
    /// an instance holds a live claim: the row may be in the middle of its send
    Claimed {
        holder: String,
        until: Timestamp,
        /// until the claim lapses, in DB time, rounded up
        seconds_left: i64,
    },
    /// `sent` or `dropped`: its outcome is final
    Final { status: String },
    /// pending or parked and not held (any more): the state changed since; try again
    Free,
}

/// Reads why a row was left alone by an operator command (after the conditional UPDATE, so the
/// answer may already be out of date: it explains, it decides nothing).
pub async fn why_untouched(pool: &MySqlPool, id: i64) -> anyhow::Result<Untouched> {
    let row = sqlx::query(
        "SELECT status, claimed_by, claim_until, \
         CAST(TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(3), claim_until) AS SIGNED) AS left_us \
         FROM batch_notifications WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .context("reading an outbox row")?;
    let Some(row) = row else {
        return Ok(Untouched::Missing);
    };
    let status: String = row.try_get("status")?;
    if !matches!(status.as_str(), "pending" | "parked") {
        return Ok(Untouched::Final { status });
    }
    let holder: Option<String> = row.try_get("claimed_by")?;
    let until: Option<Timestamp> = row.try_get("claim_until")?;
    let left_us: Option<i64> = row.try_get("left_us")?;
    Ok(match (holder, until, left_us) {
        (Some(holder), Some(until), Some(us)) if us > 0 => Untouched::Claimed {
            holder,
            until,
            seconds_left: (us + 999_999) / 1_000_000,
        },
        _ => Untouched::Free,
    })
}
