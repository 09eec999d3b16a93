//! `batch_runs`: one row per tick, and the pruning of old ledger rows and sent notifications.

use crate::model::Timestamp;
use crate::model::first_chars;
use anyhow::Context as _;
use sqlx::MySqlPool;

/// One ledger row per tick.
pub async fn record_run(
    pool: &MySqlPool,
    started: Timestamp,
    duration_ms: i64,
    instance: &str,
    dry_run: bool,
    summary: &serde_json::Value,
    errors: &[String],
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO batch_runs (started_at, duration_ms, instance, dry_run, summary, errors) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(started)
    .bind(duration_ms)
    .bind(first_chars(instance, 200))
    .bind(dry_run)
    .bind(summary.to_string())
    // URLs are stripped of userinfo at the source; this catches one that came from an answer
    .bind(if errors.is_empty() { None } else { Some(crate::config::redact::text(&errors.join("\n"))) })
    .execute(pool)
    .await
    .context("recording the run in batch_runs")?;
    Ok(())
}

/// Deletes ledger rows and sent notifications older than the retention.
pub async fn prune(pool: &MySqlPool, now: Timestamp, retention_days: u64) -> anyhow::Result<()> {
    let before = now - chrono::Duration::days(retention_days.min(36500) as i64);
    sqlx::query("DELETE FROM batch_runs WHERE started_at < ?")
        .bind(before)
        .execute(pool)
        .await
        .context("pruning batch_runs")?;
    sqlx::query(
        "DELETE FROM batch_notifications WHERE (status = 'sent' AND sent_at < ?) OR (status = 'dropped' AND created_at < ?)",
    )
    .bind(before)
    .bind(before)
    .execute(pool)
    .await
    .context("pruning sent notifications")?;
    sqlx::query(
        "DELETE r FROM batch_notification_recipients r LEFT JOIN batch_notifications n ON n.id = r.notification_id \
         WHERE n.id IS NULL",
    )
    .execute(pool)
    .await
    .context("pruning delivered recipients")?;
    Ok(())
}
