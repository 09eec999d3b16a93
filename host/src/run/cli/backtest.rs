//! `backtest --from --to`: reads the time range, loads policies, VMs and the metric store, and
//! prints what [`crate::run::backtest`] replayed.

use crate::config::Settings;
use crate::metric_store::MetricStore;
use crate::run::scheduler::build_plugins;
use crate::store::db;
use std::process::ExitCode;
use std::sync::Arc;

/// The settings are loaded, and logging started, by the caller.
pub(super) async fn command(
    settings: Arc<Settings>,
    from: &str,
    to: &str,
    step: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    let from = parse_time(from, now)?;
    let to = parse_time(to, now)?;
    if from >= to {
        anyhow::bail!("backtest: --from must be before --to");
    }
    let plugins = build_plugins(&settings)?;
    let pool = db::lazy_pool(&settings.monitoring_db);
    let policies =
        crate::store::load_policies(&pool, settings.alarms.default_measure_seconds).await?;
    let vms = crate::store::load_vms(&pool).await?;
    let metrics = MetricStore::new(
        settings.metrics.backend,
        &settings.influx,
        &settings.prometheus,
    )?;
    let replay = crate::run::backtest::Replay {
        settings: &settings,
        metrics: &metrics,
        plugins: &plugins,
        policies: &policies,
        vms: &vms,
    };
    let step = std::time::Duration::from_secs(step.unwrap_or(settings.batch.interval_seconds));
    let report = replay.run(from, to, step).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "backtest {} .. {} every {}s over {} VMs",
            from.to_rfc3339(),
            to.to_rfc3339(),
            step.as_secs(),
            vms.len()
        );
        crate::run::backtest::print(&report, &policies);
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `2026-11-24T00:00:00Z`, or a duration back from `now`: `24h`, `90m`, `3600s`, `2d`.
fn parse_time(
    s: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| {
        anyhow::anyhow!("not a time: {s:?} (RFC 3339, or a duration back from now like 24h)")
    })?;
    let unit_secs = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => anyhow::bail!("not a time: {s:?} (units: s, m, h, d)"),
    };
    n.checked_mul(unit_secs)
        .and_then(chrono::Duration::try_seconds)
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| anyhow::anyhow!("not a time: {s:?} reaches before any date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtest_times_are_checked_not_overflowed() {
        let now = chrono::Utc::now();
        assert_eq!(
            parse_time("90m", now).unwrap(),
            now - chrono::Duration::minutes(90)
        );
        for bad in ["999999999999999d", "9223372036854775807s", "12x", "soon"] {
            let e = parse_time(bad, now).unwrap_err().to_string();
            assert!(e.contains("not a time"), "{bad}: {e}");
        }
    }
}
