//! Policy back-test: replays the stored InfluxDB history through the current policies, as if
//! the batch had ticked every `step` between `from` and `to`, and counts per policy the alarms
//! and notifications they would have produced. Nothing is written.

use crate::config::Settings;
use crate::evaluate::engine::{self, Change, EngineOptions, OpenAlarm, Policy};
use crate::evaluate::metrics_gap;
use crate::metric_store::MetricStore;
use crate::model::{AlarmType, Origin, Timestamp, Vm};
use crate::plugin::{CollectContext, Windows};
use crate::run::scheduler::BuiltPlugin;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What one policy (or the `fail` rule of an origin) would have done.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PolicyOutcome {
    pub alarms_opened: u32,
    pub escalations: u32,
    /// alarms that went down a level and stayed open (notified or not)
    pub step_downs: u32,
    pub repeats: u32,
    pub recoveries: u32,
    pub notifications: u32,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct BacktestReport {
    pub ticks: u32,
    /// key: "pas cpu", "con memory", "bos fail", ...
    pub by_policy: BTreeMap<String, PolicyOutcome>,
    pub errors: Vec<String>,
}

fn key(origin: Origin, ty: AlarmType) -> String {
    format!("{origin} {ty}")
}

/// Applies the tick's changes to the replayed open alarms (as the store would, through
/// [`engine::apply`]) and counts them per policy.
fn apply(
    open: &mut Vec<OpenAlarm>,
    changes: &[Change],
    now: Timestamp,
    next_id: &mut i64,
    report: &mut BacktestReport,
) {
    for ch in changes {
        engine::apply(open, ch, now, next_id);
        let s = ch.subject();
        let o = report
            .by_policy
            .entry(key(s.target.origin, s.alarm_type))
            .or_default();
        match ch {
            Change::Open { .. } => {
                o.alarms_opened += 1;
                o.notifications += 1;
            }
            Change::Escalate { notify, .. } => {
                o.escalations += 1;
                o.notifications += u32::from(*notify);
            }
            Change::StepDown { notify, .. } => {
                o.step_downs += 1;
                o.notifications += u32::from(*notify);
            }
            Change::Rebreach { .. } => {
                o.escalations += 1;
                o.notifications += 1;
            }
            Change::Continue { renotify, .. } => {
                if *renotify {
                    o.repeats += 1;
                    o.notifications += 1;
                }
            }
            Change::Recover { .. } => {
                o.recoveries += 1;
                o.notifications += 1;
            }
        }
    }
}

pub struct Replay<'a> {
    pub settings: &'a Settings,
    pub metrics: &'a MetricStore,
    pub plugins: &'a [BuiltPlugin],
    pub policies: &'a [Policy],
    pub vms: &'a [Vm],
}

impl Replay<'_> {
    /// Ticks at `from + step`, `from + 2·step`, … up to `to`, starting with no open alarm.
    pub async fn run(&self, from: Timestamp, to: Timestamp, step: Duration) -> BacktestReport {
        let a = &self.settings.alarms;
        let windows = Windows::from_policies(
            self.policies,
            Duration::from_secs(a.default_measure_seconds),
        );
        let opts = EngineOptions {
            auto_resolve: a.auto_resolve,
            default_repeat_minutes: a.default_repeat_minutes as i64,
        };
        let step = chrono::Duration::from_std(step.max(Duration::from_secs(1)))
            .unwrap_or(chrono::Duration::seconds(60));
        let mut report = BacktestReport::default();
        for p in self.policies {
            report
                .by_policy
                .entry(key(p.origin, AlarmType::from(p.resource)))
                .or_default();
        }
        let mut open = Vec::new();
        let mut next_id = 0;
        let mut now = from + step;
        while now <= to {
            let ctx = CollectContext {
                now,
                bucket_seconds: self.settings.influx.bucket_seconds,
                metrics: self.metrics,
                vms: self.vms,
                windows: &windows,
                targets: None,
                narrow_to_vms: false,
                quiet: None,
            };
            let mut readings = Vec::new();
            let mut evaluated = Vec::new();
            let mut gap_checks = Vec::new();
            for p in self.plugins {
                let Some(c) = &p.parts.collector else {
                    continue;
                };
                match c.collect(&ctx).await {
                    Ok(mut r) => {
                        // as the live tick does; past absences from BOSH are not known
                        let no_absences = Default::default();
                        gap_checks.push(metrics_gap::screen(
                            c.origin(),
                            &mut r,
                            a.pipeline_gap_ratio,
                            &no_absences,
                        ));
                        evaluated.push(c.origin());
                        readings.extend(r);
                    }
                    Err(e) => report.errors.push(format!("{} at {now}: {e:#}", p.name)),
                }
            }
            metrics_gap::share_gaps(&mut gap_checks, &mut readings);
            let mut changes =
                engine::evaluate(self.policies, &open, &readings, &evaluated, now, &opts);
            changes.extend(metrics_gap::pipeline_changes(
                &gap_checks,
                self.policies,
                &open,
                now,
                &opts,
            ));
            apply(&mut open, &changes, now, &mut next_id, &mut report);
            report.ticks += 1;
            now += step;
        }
        report
    }
}

/// One line per policy, for the terminal.
pub fn print(report: &BacktestReport, policies: &[Policy]) {
    println!(
        "{:<12} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>13}",
        "policy",
        "warning",
        "critical",
        "window",
        "opened",
        "escal.",
        "down",
        "repeats",
        "recov.",
        "notifications"
    );
    for (k, o) in &report.by_policy {
        let p = policies
            .iter()
            .find(|p| key(p.origin, AlarmType::from(p.resource)) == *k);
        let (w, c, m) = p
            .map(|p| {
                (
                    format!("{}", p.warning),
                    format!("{}", p.critical),
                    format!("{}s", p.measure_seconds),
                )
            })
            .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
        println!(
            "{k:<12} {w:>9} {c:>9} {m:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>13}",
            o.alarms_opened, o.escalations, o.step_downs, o.repeats, o.recoveries, o.notifications
        );
    }
    println!("{} ticks replayed", report.ticks);
    for e in &report.errors {
        println!("ERROR {e}");
    }
}
