//! Stream mode's check against the store (`[metrics] mode = "stream"`): the stream can lose
//! points (InfluxDB drops subscription writes under load, a delivery fails), and a lost point
//! must never page anyone. So:
//!
//! * [`confirm`]: the changes that notify or close something (open, re-open, escalate, recover,
//!   and `fail` opened on no data) are re-read from the store, ONE query per origin for just
//!   their targets, through the same reader, and decided again; what the store does not confirm
//!   is dropped for this tick (`monit_stream_unconfirmed_total{origin}`). A recovery is
//!   confirmed too: the stream missing the breaching points would otherwise close a live alarm.
//!   Counts and repeats of an alarm that stays open at its level are not: the alarm was opened
//!   on the store's word, and a count changes nobody's page.
//! * [`drift`]: every `stream.reconcile_every` stream ticks the whole fleet is read from the store
//!   too, beside the ticks and a part of the inventory at a time (`evaluate::reconcile`), and
//!   compared with the stream's readings (`monit_stream_drift`).

use crate::evaluate::engine::{self, AlarmKey, Change, EngineOptions, KeyRef, OpenAlarm};
use crate::model::{AlarmType, Measured, Origin, Policy, Reading, Target, Timestamp};
use crate::plugin::{CollectContext, Collector, guarded};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// What stream mode did in a tick (the tick summary's `stream`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct StreamTick {
    /// per collector: the mode it read in (`stream`, or why not: `stream-warmup`,
    /// `stream-gap`, `stream-quiet`)
    pub modes: BTreeMap<String, String>,
    /// InfluxDB's `subWriteDrop` read this tick (InfluxDB only)
    pub sub_write_drop: Option<i64>,
    pub confirmation: Confirmation,
    /// per origin, of the reconciliation that ended since the last tick (one starts every
    /// `stream.reconcile_every` stream ticks and runs beside them)
    pub drift: Option<BTreeMap<String, Drift>>,
    /// that reconciliation: when it started, how long it took, its parts and store queries
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<crate::evaluate::reconcile::Report>,
    /// this tick started a reconciliation
    pub reconcile_started: bool,
}

/// The confirmation of a tick's changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Confirmation {
    /// targeted queries sent: one per origin with changes to confirm
    pub queries: u64,
    /// changes the store confirmed (written with the store's figures)
    pub confirmed: u64,
    /// per origin: changes the store did not confirm, dropped this tick
    pub unconfirmed: BTreeMap<String, u64>,
}

/// A change that needs the store's word before it is written: it notifies or closes.
pub fn needs_confirmation(c: &Change) -> bool {
    matches!(
        c,
        Change::Open { .. }
            | Change::Rebreach { .. }
            | Change::Escalate { .. }
            | Change::Recover { .. }
    )
}

/// Who a reading or change is about, whatever the alarm type.
fn identity(t: &Target) -> KeyRef<'_> {
    KeyRef::of_target(t, AlarmType::Fail)
}

fn key_of(c: &Change) -> AlarmKey {
    let s = c.subject();
    AlarmKey::of_target(s.target, s.alarm_type)
}

/// What a confirmation needs besides the changes.
pub struct ConfirmInputs<'a, 'c> {
    /// the collectors that read the stream this tick
    pub streamed: &'a [(&'static str, Arc<dyn Collector>)],
    /// the stream's readings of the tick: only changes about their targets are the stream's
    pub readings: &'a [Reading],
    /// the context of a query-mode read (the store's client)
    pub query: &'a CollectContext<'c>,
    pub policies: &'a [Policy],
    pub open: &'a [OpenAlarm],
    pub now: Timestamp,
    pub opts: &'a EngineOptions,
    pub timeout: Duration,
    /// a change about an open alarm that stays held and was never told: it notifies nobody
    /// and its alarm is already recorded, so it is not confirmed (the hold stage decides)
    pub still_held: &'a dyn Fn(&Change) -> bool,
}

/// The changes as the store confirms them: each change of [`needs_confirmation`] about a
/// target the stream read is decided again from a targeted read of the store, and kept (with
/// the store's figures) only when the store decides the same kind of change for the same alarm.
/// Returns the errors of failed confirmation reads (their changes are dropped too).
pub async fn confirm(
    changes: Vec<Change>,
    inp: &ConfirmInputs<'_, '_>,
    report: &mut Confirmation,
) -> (Vec<Change>, Vec<String>) {
    let origins: HashSet<Origin> = inp.streamed.iter().map(|(_, c)| c.origin()).collect();
    let candidate = |c: &Change| {
        needs_confirmation(c)
            && !(inp.still_held)(c)
            && origins.contains(&c.subject().target.origin)
    };
    // most stream ticks have nothing to confirm: the readings' keys only when something is
    if !changes.iter().any(candidate) {
        return (changes, Vec::new());
    }
    let from_stream: FxHashSet<KeyRef<'_>> =
        inp.readings.iter().map(|r| identity(&r.target)).collect();
    let pending = |c: &Change| candidate(c) && from_stream.contains(&identity(c.subject().target));
    let mut targets: BTreeMap<Origin, Vec<Target>> = BTreeMap::new();
    for c in changes.iter().filter(|c| pending(c)) {
        let t = c.subject().target;
        let list = targets.entry(t.origin).or_default();
        if !list.iter().any(|x| identity(x) == identity(t)) {
            list.push(t.clone());
        }
    }
    if targets.is_empty() {
        return (changes, Vec::new());
    }
    let mut errors = Vec::new();
    // the store's decisions per alarm, for the origins it answered
    let mut decided: HashMap<AlarmKey, Change> = HashMap::new();
    for (origin, list) in &targets {
        let Some((name, c)) = inp.streamed.iter().find(|(_, c)| c.origin() == *origin) else {
            continue;
        };
        let ctx = CollectContext {
            targets: Some(list),
            // the store's every reading of the targets: the decision is the engine's
            quiet: None,
            ..*inp.query
        };
        report.queries += 1;
        match guarded("confirm", name, inp.timeout, c.collect(&ctx)).await {
            Ok(readings) => {
                for d in engine::evaluate(
                    inp.policies,
                    inp.open,
                    &readings,
                    &[*origin],
                    inp.now,
                    inp.opts,
                ) {
                    decided.insert(key_of(&d), d);
                }
            }
            Err(e) => errors.push(format!("stream confirmation: {e}")),
        }
    }
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        if !pending(&c) {
            out.push(c);
            continue;
        }
        match decided.remove(&key_of(&c)) {
            Some(d) if std::mem::discriminant(&d) == std::mem::discriminant(&c) => {
                report.confirmed += 1;
                out.push(d);
            }
            _ => {
                let origin = c.subject().target.origin.code();
                metrics::counter!("monit_stream_unconfirmed_total", "origin" => origin)
                    .increment(1);
                tracing::info!(
                    origin,
                    target = %c.subject().target.label(),
                    alarm_type = c.subject().alarm_type.code(),
                    "stream: a change the store does not confirm is dropped for this tick"
                );
                *report.unconfirmed.entry(origin.to_string()).or_default() += 1;
            }
        }
    }
    (out, errors)
}

/// The stream's readings against the store's, for one origin.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Drift {
    /// readings on both sides
    pub compared: u64,
    /// readings on both sides whose mean or peak differ
    pub differing: u64,
    /// readings only the stream has
    pub only_stream: u64,
    /// readings only the store has
    pub only_store: u64,
    /// the largest absolute difference of the means (percentage points)
    pub max_mean_difference: f64,
}

impl Drift {
    /// Adds the drift of another part of the fleet.
    pub fn add(&mut self, other: &Drift) {
        self.compared += other.compared;
        self.differing += other.differing;
        self.only_stream += other.only_stream;
        self.only_store += other.only_store;
        self.max_mean_difference = self.max_mean_difference.max(other.max_mean_difference);
    }
}

/// Equal up to the last bits: the two sides sum the same points, maybe in another order.
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The drift of the stream's readings from the store's, per origin.
pub fn drift(stream: &[Reading], store: &[Reading]) -> BTreeMap<String, Drift> {
    fn key(r: &Reading) -> KeyRef<'_> {
        let ty = match &r.value {
            Measured::Usage { resource, .. } => AlarmType::from(*resource),
            Measured::NoData => AlarmType::Fail,
        };
        KeyRef::of_target(&r.target, ty)
    }
    let theirs: FxHashMap<KeyRef<'_>, &Measured> =
        store.iter().map(|r| (key(r), &r.value)).collect();
    let mut out: BTreeMap<String, Drift> = BTreeMap::new();
    let mut seen = HashSet::new();
    for r in stream {
        let k = key(r);
        let d = out.entry(r.target.origin.code().to_string()).or_default();
        match theirs.get(&k) {
            None => d.only_stream += 1,
            Some(other) => {
                d.compared += 1;
                if let (
                    Measured::Usage {
                        mean: m1, peak: p1, ..
                    },
                    Measured::Usage {
                        mean: m2, peak: p2, ..
                    },
                ) = (&r.value, other)
                {
                    let diff = (m1 - m2).abs();
                    if diff.is_finite() {
                        d.max_mean_difference = d.max_mean_difference.max(diff);
                    }
                    if !same(*m1, *m2) || !same(*p1, *p2) {
                        d.differing += 1;
                    }
                }
            }
        }
        seen.insert(k);
    }
    for r in store {
        if !seen.contains(&key(r)) {
            out.entry(r.target.origin.code().to_string())
                .or_default()
                .only_store += 1;
        }
    }
    out
}

/// A reconciliation's drift on `/metrics` (`monit_stream_drift{origin,stat}`).
pub fn publish_drift(drift: &BTreeMap<String, Drift>) {
    for (origin, d) in drift {
        let o = origin.clone();
        metrics::gauge!("monit_stream_drift", "origin" => o.clone(), "stat" => "max_mean_difference")
            .set(d.max_mean_difference);
        metrics::gauge!("monit_stream_drift", "origin" => o.clone(), "stat" => "differing")
            .set(d.differing as f64);
        metrics::gauge!("monit_stream_drift", "origin" => o, "stat" => "missing")
            .set((d.only_stream + d.only_store) as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Resource;

    fn reading(ip: &str, mean: f64) -> Reading {
        Reading {
            target: Target {
                origin: Origin::Pas,
                origin_id: ip.len() as i64,
                name: ip.into(),
                ip: ip.into(),
                app: None,
            },
            value: Measured::Usage {
                resource: Resource::Cpu,
                mean,
                peak: mean,
                buckets: 3,
            },
        }
    }

    #[test]
    fn drift_is_zero_for_the_same_readings_and_counts_each_difference() {
        let a = vec![reading("10.0.0.1", 10.0), reading("10.0.0.22", 20.0)];
        let d = &drift(&a, &a)["pas"];
        assert_eq!(
            (d.compared, d.differing, d.max_mean_difference),
            (2, 0, 0.0)
        );
        let b = vec![reading("10.0.0.1", 12.5), reading("10.0.0.333", 1.0)];
        let d = &drift(&a, &b)["pas"];
        assert_eq!(
            (d.compared, d.differing, d.only_stream, d.only_store),
            (1, 1, 1, 1)
        );
        assert_eq!(d.max_mean_difference, 2.5);
    }
}
