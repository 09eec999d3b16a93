//! What ticks did, for the operator: the summary `run --once` prints, and `runs`, the last
//! ticks recorded in batch_runs.

use crate::config::Settings;
use crate::store::db;
use anyhow::Context as _;
use std::process::ExitCode;

#[derive(sqlx::FromRow)]
struct RunRow {
    started_at: chrono::DateTime<chrono::Utc>,
    duration_ms: i64,
    instance: String,
    summary: String,
    errors: Option<String>,
}

/// `runs --limit N`: one line per recorded tick, newest first.
pub(super) async fn print_runs(settings: &Settings, limit: i64) -> anyhow::Result<ExitCode> {
    let pool = db::lazy_pool(&settings.monitoring_db);
    let rows: Vec<RunRow> = sqlx::query_as(
        "SELECT started_at, duration_ms, instance, summary, errors FROM batch_runs ORDER BY id DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(&pool)
    .await
    .with_context(|| format!("reading batch_runs from {}", db::describe(&settings.monitoring_db)))?;
    for RunRow {
        started_at: started,
        duration_ms: ms,
        instance,
        summary,
        errors,
    } in rows
    {
        let s: serde_json::Value = serde_json::from_str(&summary).unwrap_or_default();
        println!(
            "{} {:>6}ms {} readings={} alarms={} notifications={} scale={} errors={}",
            started.format("%Y-%m-%dT%H:%M:%SZ"),
            ms,
            instance,
            s["readings"],
            s["alarms"],
            s["notifications"],
            s["scale"].as_array().map(|a| a.len()).unwrap_or(0),
            errors.map(|e| e.lines().count()).unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn print_summary(sum: &crate::run::scheduler::TickSummary) {
    println!(
        "tick {} ({} ms){}",
        sum.started_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        sum.duration_ms,
        if sum.dry_run {
            " DRY RUN: nothing written or sent"
        } else {
            ""
        }
    );
    for (name, s) in &sum.inventory_sync {
        let age = match s.age_seconds {
            Some(a) => format!("{a} s old"),
            None => "never synced by this process".to_string(),
        };
        if s.fetched {
            println!(
                "  inventory {name}: synced ({}), {age}",
                s.reason.describe()
            );
        } else {
            println!(
                "  inventory {name}: reused ({}, every {} s), {age}",
                s.reason.describe(),
                s.interval_seconds
            );
        }
    }
    for (name, ch) in &sum.inventory {
        println!(
            "  inventory {name}: +{} zones, +{} vms, {} updated, -{} removed, {} missing (kept), {} alarms closed",
            ch.zones_added,
            ch.vms_added,
            ch.vms_updated,
            ch.vms_removed,
            ch.vms_absent,
            ch.alarms_closed
        );
    }
    let steps: Vec<String> = sum
        .steps_ms
        .iter()
        .map(|(k, v)| format!("{k} {v}ms"))
        .collect();
    println!("  steps     {}", steps.join(", "));
    println!(
        "  {:<9} {} queries, {} rows, mode {}",
        sum.metric_store, sum.influx_queries, sum.influx_rows, sum.metric_mode
    );
    for (name, n) in &sum.readings {
        println!("  readings  {name}: {n}");
    }
    for g in &sum.metric_gaps {
        println!(
            "  gap       {}: {} of {} targets without data (metrics pipeline, one alarm)",
            g.origin, g.silent, g.targets
        );
    }
    let a = &sum.alarms;
    println!(
        "  alarms    opened {}, escalated {}, stepped down {}, still open {} (re-notified {}), recovered {}",
        a.opened, a.escalated, a.stepped_down, a.continued, a.renotified, a.recovered
    );
    let n = &sum.notifications;
    println!(
        "  notify    sent {}, failed {}, parked {}, pending {}",
        n.sent, n.failed, n.parked, n.pending
    );
    if n.digests > 0 {
        println!(
            "  digests   {} (several notifications as one message)",
            n.digests
        );
    }
    if n.restated > 0 {
        println!(
            "  restated  {} open alarms told again (a receiver that forgets what is not re-posted)",
            n.restated
        );
    }
    if n.history_queries > 0 {
        println!(
            "  charts    {} history queries (the alarmed readings' last hour)",
            n.history_queries
        );
    }
    let h = &sum.held;
    if h.silenced + h.maintenance + h.inhibited > 0 {
        println!(
            "  held      silenced {}, maintenance {}, inhibited {} (recorded, not notified)",
            h.silenced, h.maintenance, h.inhibited
        );
    }
    if !sum.maintenance.is_empty() {
        let names: Vec<_> = sum
            .maintenance
            .iter()
            .map(|d| crate::config::visible::escape(d))
            .collect();
        println!("  maintenance {}", names.join(", "));
    }
    for h in &sum.maintenance_cut_short {
        println!(
            "  maintenance {} CUT SHORT: task {} running since {} (alarms.maintenance_max_hours): alarms notified",
            crate::config::visible::escape(&h.deployment),
            h.task_id,
            h.since
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| "?".into())
        );
    }
    if let Some(age) = sum.maintenance_oldest_seconds {
        println!("  maintenance oldest hold {age} s");
    }
    for d in &sum.scale {
        println!(
            "  scale     {} ({}): {:?} {:?} {:?}->{:?}: {}",
            d.app_name,
            d.app_guid,
            d.action,
            d.outcome,
            d.instances_before,
            d.instances_after,
            d.reason
        );
    }
    for p in &sum.planned {
        println!("  would     {p}");
    }
    for e in &sum.errors {
        println!("  ERROR     {e}");
    }
}
