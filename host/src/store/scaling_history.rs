//! The scaling history (`batch_scaling_history`): every autoscale decision, and the cooldown's
//! source of truth.

use crate::model::{Timestamp, first_chars};
use crate::plugin::{ScaleAction, ScaleDecision, ScaleOutcome};
use anyhow::Context as _;
use sqlx::MySqlPool;
use std::collections::HashMap;

/// Column widths of `batch_scaling_history`, in characters: a longer value would make the whole
/// insert fail under strict SQL mode, and losing the tail of a reason is better than losing the row.
const GUID_CHARS: usize = 255;
const NAME_CHARS: usize = 255;
const REASON_CHARS: usize = 1000;

pub fn action_code(a: ScaleAction) -> &'static str {
    match a {
        ScaleAction::Out => "out",
        ScaleAction::In => "in",
        ScaleAction::None => "none",
    }
}

pub fn outcome_code(o: ScaleOutcome) -> &'static str {
    match o {
        ScaleOutcome::Acted => "acted",
        ScaleOutcome::DryRun => "dry_run",
        ScaleOutcome::Skipped => "skipped",
        ScaleOutcome::Blocked => "blocked",
        ScaleOutcome::Failed => "failed",
    }
}

/// Records decisions made at `now`, all or none.
pub async fn record_decisions(
    pool: &MySqlPool,
    decisions: &[ScaleDecision],
    now: Timestamp,
) -> anyhow::Result<()> {
    if decisions.is_empty() {
        return Ok(());
    }
    let mut tx = pool
        .begin()
        .await
        .context("recording scaling decisions: cannot start a transaction on the Monitoring DB")?;
    insert_decisions(&mut tx, decisions, now).await?;
    tx.commit()
        .await
        .context("recording scaling decisions: commit on the Monitoring DB failed")?;
    Ok(())
}

/// Writes the decisions inside the caller's transaction: the tick's one write (alarms, outbox
/// and scaling history together, see `store::apply_changes`).
pub async fn insert_decisions(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    decisions: &[ScaleDecision],
    now: Timestamp,
) -> anyhow::Result<()> {
    for d in decisions {
        sqlx::query(
            "INSERT INTO batch_scaling_history \
             (decided_at, app_guid, app_name, action, outcome, instances_before, instances_after, \
              cpu_percent, memory_percent, reason) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(now)
        .bind(first_chars(&d.app_guid, GUID_CHARS))
        .bind(first_chars(&d.app_name, NAME_CHARS))
        .bind(action_code(d.action))
        .bind(outcome_code(d.outcome))
        .bind(d.instances_before)
        .bind(d.instances_after)
        // NaN or infinity is not a value MySQL can store
        .bind(d.cpu_percent.filter(|v| v.is_finite()))
        .bind(d.memory_percent.filter(|v| v.is_finite()))
        .bind(first_chars(&d.reason, REASON_CHARS))
        .execute(&mut **tx)
        .await
        .with_context(|| {
            format!(
                "recording the scaling decision for app {} ({}) in batch_scaling_history",
                d.app_name, d.app_guid
            )
        })?;
    }
    Ok(())
}

/// Time of the last acted scaling per app guid. Only `acted` counts: a dry run, a failed call or a
/// blocked scale-out changed nothing on the platform, so it must not start a cooldown.
pub async fn last_acted(pool: &MySqlPool) -> anyhow::Result<HashMap<String, Timestamp>> {
    let rows: Vec<(String, Timestamp)> = sqlx::query_as(
        "SELECT app_guid, MAX(decided_at) FROM batch_scaling_history \
         WHERE outcome = ? GROUP BY app_guid",
    )
    .bind(outcome_code(ScaleOutcome::Acted))
    .fetch_all(pool)
    .await
    .context("reading the last acted scaling per app from batch_scaling_history")?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};
    use monit_testkit::TestDb;

    /// A freshly migrated Monitoring DB of its own.
    async fn fresh_db(tag: &str) -> TestDb {
        let db = TestDb::create(&format!("scaling_{tag}")).await;
        crate::store::db::MIGRATOR.run(&db.pool).await.unwrap();
        db
    }

    /// app_guid, action, outcome, instances_after, cpu_percent, reason
    type HistoryRow = (String, String, String, Option<i32>, Option<f64>, String);

    fn decision(guid: &str, action: ScaleAction, outcome: ScaleOutcome) -> ScaleDecision {
        ScaleDecision {
            app_guid: guid.into(),
            app_name: format!("app-{guid}"),
            action,
            outcome,
            instances_before: Some(2),
            instances_after: Some(3),
            evidence: crate::plugin::ScaleEvidence::Load,
            blocked_on: None,
            cpu_percent: Some(91.5),
            memory_percent: Some(40.0),
            reason: "cpu_high: mean CPU 91.5% > cpu_threshold_max_per 80%".into(),
        }
    }

    #[test]
    fn clips_on_character_boundaries() {
        assert_eq!(first_chars("가나다", 2), "가나");
        assert_eq!(first_chars("abc", 10), "abc");
    }

    #[tokio::test]
    async fn records_every_decision_and_cooldown_counts_only_acted() {
        let db = fresh_db("record").await;
        let pool = db.pool.clone();
        let t1 = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
        let t2 = t1 + Duration::minutes(5);
        let long_reason = "x".repeat(1500);
        record_decisions(
            &pool,
            &[decision("a", ScaleAction::Out, ScaleOutcome::Acted)],
            t1,
        )
        .await
        .unwrap();
        let mut later = vec![
            decision("a", ScaleAction::In, ScaleOutcome::Acted),
            decision("b", ScaleAction::Out, ScaleOutcome::DryRun),
            decision("c", ScaleAction::Out, ScaleOutcome::Blocked),
            decision("d", ScaleAction::Out, ScaleOutcome::Failed),
            decision("e", ScaleAction::None, ScaleOutcome::Skipped),
        ];
        later[4].reason = long_reason;
        later[4].cpu_percent = Some(f64::NAN);
        record_decisions(&pool, &later, t2).await.unwrap();

        let last = last_acted(&pool).await.unwrap();
        assert_eq!(
            last.len(),
            1,
            "only acted decisions start a cooldown: {last:?}"
        );
        assert_eq!(last.get("a"), Some(&t2), "the latest acted time wins");

        let rows: Vec<HistoryRow> = sqlx::query_as(
            "SELECT app_guid, action, outcome, instances_after, cpu_percent, reason \
             FROM batch_scaling_history ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), 6);
        let codes: Vec<_> = rows
            .iter()
            .map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str()))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("a", "out", "acted"),
                ("a", "in", "acted"),
                ("b", "out", "dry_run"),
                ("c", "out", "blocked"),
                ("d", "out", "failed"),
                ("e", "none", "skipped"),
            ]
        );
        assert_eq!(rows[0].3, Some(3));
        assert_eq!(rows[0].4, Some(91.5));
        assert_eq!(rows[5].4, None, "NaN is stored as NULL");
        assert_eq!(
            rows[5].5.chars().count(),
            REASON_CHARS,
            "a long reason is clipped, not refused"
        );
        db.drop().await;
    }

    #[tokio::test]
    async fn empty_history_has_no_cooldowns_and_empty_batch_is_a_no_op() {
        let db = fresh_db("empty").await;
        let pool = db.pool.clone();
        record_decisions(&pool, &[], Utc::now()).await.unwrap();
        assert!(last_acted(&pool).await.unwrap().is_empty());
        db.drop().await;
    }
}
