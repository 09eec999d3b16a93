//! Readings in: every collector at once, each bounded by the step timeout and isolated (its
//! failure is its origin's, the others go on), then screened for gaps in the metrics pipeline
//! (see [`metrics_gap`]). An origin whose collector failed is not evaluated: a failed query is
//! not a recovery.

use crate::evaluate::metrics_gap::{self, GapCheck};
use crate::model::{Origin, Reading};
use crate::plugin::{CollectContext, Collector, guarded};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Collected {
    pub readings: Vec<Reading>,
    /// origins whose collector answered
    pub evaluated: Vec<Origin>,
    pub gap_checks: Vec<GapCheck>,
    /// readings per collector
    pub counts: BTreeMap<String, usize>,
    pub errors: Vec<String>,
}

impl Collected {
    /// The checks whose answer was a gap (for the tick summary).
    pub fn gaps(&self) -> Vec<GapCheck> {
        self.gap_checks
            .iter()
            .filter(|c| {
                matches!(
                    c.verdict,
                    metrics_gap::Verdict::Gap | metrics_gap::Verdict::SharedGap
                )
            })
            .cloned()
            .collect()
    }
}

/// A collector and the context it reads in (stream mode: the stream, or the store for a
/// collector whose stream is not trusted this tick).
pub type Reader<'a, 'c> = (&'static str, Arc<dyn Collector>, &'a CollectContext<'c>);

/// Runs the collectors; `absent` are the VMs missing from the inventory (silent, not down).
pub async fn readings(
    collectors: &[Reader<'_, '_>],
    timeout: Duration,
    pipeline_gap_ratio: f64,
    absent: &HashSet<i64>,
) -> Collected {
    let results = futures::future::join_all(
        collectors
            .iter()
            .map(|(name, c, ctx)| guarded("collect", name, timeout, c.collect(ctx))),
    )
    .await;
    let mut out = Collected::default();
    let mut failed: Vec<Origin> = Vec::new();
    for ((name, c, ctx), res) in collectors.iter().zip(results) {
        // what the collector left out as quiet counts as read
        let quiet = ctx
            .quiet
            .map(|q| q.take_skipped(c.origin()))
            .unwrap_or_default();
        match res {
            Ok(mut r) => {
                let read = r.len() + quiet.readings;
                metrics::counter!("monit_readings_total", "collector" => *name)
                    .increment(read as u64);
                metrics::counter!("monit_readings_quiet_total", "collector" => *name)
                    .increment(quiet.readings as u64);
                out.counts.insert(name.to_string(), read);
                let check = metrics_gap::screen_with_quiet(
                    c.origin(),
                    &mut r,
                    pipeline_gap_ratio,
                    absent,
                    quiet.targets,
                );
                metrics_gap::report(&check);
                out.gap_checks.push(check);
                out.evaluated.push(c.origin());
                // the larger list is kept and the smaller appended: a large fleet's readings
                // (a hundred MB) are not copied; their order across origins decides nothing
                if r.len() > out.readings.len() {
                    std::mem::swap(&mut out.readings, &mut r);
                }
                // exact: a doubling would leave a list as large as the fleet's readings empty
                out.readings.reserve_exact(r.len());
                out.readings.extend(r);
            }
            Err(e) => {
                failed.push(c.origin());
                out.errors.push(e);
            }
        }
    }
    out.evaluated.retain(|o| !failed.contains(o));
    out.gap_checks.retain(|c| !failed.contains(&c.origin));
    metrics_gap::share_gaps(&mut out.gap_checks, &mut out.readings);
    out
}
