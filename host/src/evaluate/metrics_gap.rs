//! "No data" is not "down" when nobody has data.
//!
//! After an InfluxDB outage longer than the policy window, or when a metrics writer stops, every
//! VM of an origin reads [`Measured::NoData`] at once. Opening a `fail` alarm (and sending a mail)
//! per VM, then a recovery per VM one tick later, says nothing about the VMs: the metrics pipeline
//! has a gap. So, per collector answer, when the share of silent VMs reaches
//! `alarms.pipeline_gap_ratio`, the per-VM `NoData` readings are dropped (no new per-VM `fail`
//! alarm; the ones already open are neither counted nor recovered) and the origin gets ONE alarm
//! of its own, on a synthetic target ([`pipeline_target`]), that goes through the normal alarm
//! engine: opened, repeated by the origin's repeat rule, recovered and closed when data is back.
//! A VM silent while the others report is still down, and gets its `fail` alarm as before.
//!
//! No database or network here: the scheduler feeds the answers in and persists the changes.

use crate::evaluate::engine::{self, Change, EngineOptions, OpenAlarm, Policy};
use crate::model::{Measured, Origin, Reading, Target, Timestamp};
use serde::Serialize;
use std::collections::HashSet;

/// A gap needs at least this many silent targets: a single silent target (the BOSH director,
/// a one-VM platform) cannot be told apart from a target that is down, so it stays a `fail`.
pub const MIN_SILENT_TARGETS: usize = 2;

/// `origin_id` of the pipeline alarm: no VM has id 0 (`vms.id` is auto-increment from 1).
pub const PIPELINE_ORIGIN_ID: i64 = 0;

/// What one collector's answer said about the pipeline of its origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GapCheck {
    pub origin: Origin,
    /// distinct targets in the answer (absent VMs left out); with none silent, the runs of a
    /// target's readings (an upper bound, exact as the collectors give a target's readings
    /// together)
    pub targets: usize,
    /// of which reported no data at all
    pub silent: usize,
    /// NoData readings of VMs missing from the BOSH inventory, dropped
    pub absent_dropped: usize,
    pub verdict: Verdict,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// too many silent targets: a gap in the metrics pipeline; per-VM NoData dropped
    Gap,
    /// at least one target reported: the pipeline works
    Flowing,
    /// nothing to judge by (no target, or a single silent one)
    Unknown,
    /// every target silent, too few to judge alone (the BOSH director), while another origin
    /// of the same tick has a gap: the same outage; NoData dropped, no pipeline alarm of its own
    SharedGap,
}

/// The target of an origin's pipeline alarm: no VM (origin_id 0, no IP), named for the title.
pub fn pipeline_target(origin: Origin) -> Target {
    Target {
        origin,
        origin_id: PIPELINE_ORIGIN_ID,
        name: format!("{origin} metrics pipeline").into(),
        ip: "".into(),
        app: None,
    }
}

fn is_pipeline(t: &Target) -> bool {
    t.app.is_none() && t.origin_id == PIPELINE_ORIGIN_ID
}

/// Looks at one collector's `readings` (all of `origin`). First drops the NoData readings of
/// VMs in `absent` (missing from the BOSH inventory, within their removal grace: a VM being
/// removed is silent, not down). Then, when the silent share of the remaining targets is at or
/// above `ratio` (and at least [`MIN_SILENT_TARGETS`] are silent), drops every NoData reading:
/// that silence is the pipeline's.
pub fn screen(
    origin: Origin,
    readings: &mut Vec<Reading>,
    ratio: f64,
    absent: &HashSet<i64>,
) -> GapCheck {
    screen_with_quiet(origin, readings, ratio, absent, 0)
}

/// [`screen`] of an answer whose collector left out the readings of `quiet_targets` targets
/// as quiet ([`crate::evaluate::engine::QuietReadings`]): they reported data, and count as
/// targets that did.
pub fn screen_with_quiet(
    origin: Origin,
    readings: &mut Vec<Reading>,
    ratio: f64,
    absent: &HashSet<i64>,
    quiet_targets: usize,
) -> GapCheck {
    let absent_silent = |r: &Reading| {
        origin == Origin::Pas
            && r.target.app.is_none()
            && r.value == Measured::NoData
            && absent.contains(&r.target.origin_id)
    };
    let before = readings.len();
    readings.retain(|r| !absent_silent(r));
    let absent_dropped = before - readings.len();

    // The silent share needs the distinct targets, and counting them hashes every target's
    // names (at a container fleet, hundreds of thousands of scattered strings each tick). With
    // none silent the verdict needs only "any": the readings' runs (a target's readings come
    // one after the other and share their names, told apart by pointer) are counted instead.
    let silent: rustc_hash::FxHashSet<&Target> = readings
        .iter()
        .filter(|r| r.value == Measured::NoData)
        .map(|r| &r.target)
        .collect();
    let targets = if silent.is_empty() {
        let mut previous: Option<&Target> = None;
        readings
            .iter()
            .filter(|r| {
                let new = previous != Some(&r.target);
                previous = Some(&r.target);
                new
            })
            .count()
    } else {
        // FxHash: a fleet's readings
        let all: rustc_hash::FxHashSet<&Target> = readings.iter().map(|r| &r.target).collect();
        all.len()
    };
    let targets = targets + quiet_targets;
    let silent = silent.len();
    // silent / targets, not ratio × targets: 9 of 10 is exactly the literal 0.9
    let verdict = if silent >= MIN_SILENT_TARGETS && silent as f64 / targets as f64 >= ratio {
        Verdict::Gap
    } else if silent < targets {
        Verdict::Flowing
    } else {
        Verdict::Unknown
    };
    if verdict == Verdict::Gap {
        readings.retain(|r| r.value != Measured::NoData);
    }
    GapCheck {
        origin,
        targets,
        silent,
        absent_dropped,
        verdict,
    }
}

/// A single silent target cannot tell a gap from a VM that is down, but when another origin has
/// a gap in the same tick (InfluxDB back after an outage: every measurement empty at once), the
/// silence is the same outage: its NoData readings are dropped too, and its check says
/// [`Verdict::SharedGap`] (no second pipeline alarm).
pub fn share_gaps(checks: &mut [GapCheck], readings: &mut Vec<Reading>) {
    if !checks.iter().any(|c| c.verdict == Verdict::Gap) {
        return;
    }
    let mut shared = Vec::new();
    for c in checks.iter_mut() {
        if c.verdict == Verdict::Unknown && c.silent > 0 && c.silent == c.targets {
            c.verdict = Verdict::SharedGap;
            shared.push(c.origin);
            tracing::warn!(
                origin = c.origin.code(),
                "metrics pipeline gap: {} silent target(s) while another origin has a gap; no fail alarm",
                c.silent
            );
        }
    }
    readings.retain(|r| !(shared.contains(&r.target.origin) && r.value == Measured::NoData));
}

/// Logs a gap once (a warning naming the origin and the count) and counts it in
/// `monit_metric_gaps_total{origin}`. Other verdicts are not worth a line.
pub fn report(check: &GapCheck) {
    if check.verdict != Verdict::Gap {
        return;
    }
    metrics::counter!("monit_metric_gaps_total", "origin" => check.origin.code()).increment(1);
    tracing::warn!(
        origin = check.origin.code(),
        silent = check.silent,
        targets = check.targets,
        "metrics pipeline gap: {} of {} targets have no data in the window; no per-VM fail \
         alarm is opened, one pipeline alarm stands for them",
        check.silent,
        check.targets
    );
}

/// The pipeline alarm's changes for this tick, decided by the alarm engine itself so the alarm
/// follows the same lifecycle as any other `fail` alarm: a gap is a NoData reading of the
/// pipeline target (open, count, repeat by the origin's rule, re-open after a marked recovery);
/// flowing data is a reading with data, which recovers (closes, with auto_resolve) its open
/// alarm. An origin whose verdict is `Unknown` leaves its pipeline alarm as it is.
pub fn pipeline_changes(
    checks: &[GapCheck],
    policies: &[Policy],
    open: &[OpenAlarm],
    now: Timestamp,
    opts: &EngineOptions,
) -> Vec<Change> {
    // Only the pipeline alarms: a container alarm also reads origin_id 0 to the engine, but it
    // always names an app.
    let open: Vec<OpenAlarm> = open
        .iter()
        .filter(|a| a.origin_id == PIPELINE_ORIGIN_ID && a.origin != Origin::Con)
        .filter(|a| a.app_name.as_deref().unwrap_or_default().is_empty())
        .cloned()
        .collect();
    let mut changes = Vec::new();
    for c in checks {
        let target = pipeline_target(c.origin);
        let reading = |value| Reading {
            target: target.clone(),
            value,
        };
        match c.verdict {
            Verdict::Gap => changes.extend(engine::evaluate(
                policies,
                &open,
                &[reading(Measured::NoData)],
                &[c.origin],
                now,
                opts,
            )),
            // Data with no policy to compare it against: the engine's "a target that reports
            // again closes its fail alarm" rule, and nothing else.
            Verdict::Flowing => changes.extend(engine::evaluate(
                &[],
                &open,
                &[reading(Measured::Usage {
                    resource: crate::model::Resource::Cpu,
                    mean: 0.0,
                    peak: 0.0,
                    buckets: 1,
                })],
                &[c.origin],
                now,
                opts,
            )),
            Verdict::Unknown | Verdict::SharedGap => {}
        }
    }
    debug_assert!(changes.iter().all(|c| is_pipeline(c.subject().target)));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::engine::OpenStatus;
    use crate::model::{AlarmType, AppInstance, Level, Resource};
    use chrono::TimeZone;

    fn now() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 29, 12, 0, 0)
            .unwrap()
    }
    use crate::testing::vm_target as vm;
    fn silent(id: i64) -> Reading {
        Reading {
            target: vm(id),
            value: Measured::NoData,
        }
    }
    fn reporting(id: i64) -> Vec<Reading> {
        Resource::ALL
            .iter()
            .map(|r| Reading {
                target: vm(id),
                value: Measured::Usage {
                    resource: *r,
                    mean: 20.0,
                    peak: 25.0,
                    buckets: 10,
                },
            })
            .collect()
    }
    /// `quiet` silent VMs (ids 1..) and `loud` reporting ones.
    fn answer(quiet: i64, loud: i64) -> Vec<Reading> {
        let mut r: Vec<Reading> = (1..=quiet).map(silent).collect();
        for id in quiet + 1..=quiet + loud {
            r.extend(reporting(id));
        }
        r
    }
    fn no_absent() -> HashSet<i64> {
        HashSet::new()
    }
    fn opts() -> EngineOptions {
        EngineOptions {
            auto_resolve: crate::evaluate::engine::AutoResolve::Unclaimed,
            default_repeat_minutes: 10,
        }
    }
    fn policy() -> Vec<Policy> {
        vec![Policy {
            id: 1,
            origin: Origin::Pas,
            resource: Resource::Cpu,
            warning: 85.0,
            critical: 90.0,
            repeat_minutes: 30,
            measure_seconds: 600,
        }]
    }
    fn open_pipeline(id: i64, sent_min_ago: i64, recovered: bool) -> OpenAlarm {
        OpenAlarm {
            text_digest: None,
            id,
            origin: Origin::Pas,
            origin_id: PIPELINE_ORIGIN_ID,
            alarm_type: AlarmType::Fail,
            level: Level::Fail,
            status: OpenStatus::Raised,
            raised_at: now() - chrono::Duration::minutes(60),
            last_sent: Some(now() - chrono::Duration::minutes(sent_min_ago)),
            app_name: Some(String::new()),
            app_index: Some(0),
            recovered,
            notified_level: Level::Fail,
        }
    }

    #[test]
    fn everyone_silent_is_a_gap_and_drops_every_no_data_reading() {
        let mut r = answer(5, 0);
        let c = screen(Origin::Pas, &mut r, 0.9, &no_absent());
        assert_eq!((c.targets, c.silent, c.verdict), (5, 5, Verdict::Gap));
        assert!(r.is_empty(), "{r:?}");
    }

    #[test]
    fn at_the_ratio_is_a_gap_below_it_is_not() {
        // 9 of 10 silent = 0.9: at the ratio
        let mut r = answer(9, 1);
        let c = screen(Origin::Pas, &mut r, 0.9, &no_absent());
        assert_eq!(c.verdict, Verdict::Gap);
        assert_eq!(r.len(), 3, "the reporting VM's readings stay");
        assert!(r.iter().all(|r| r.value != Measured::NoData));
        // 8 of 10 silent: VMs are down, the pipeline works
        let mut r = answer(8, 2);
        let c = screen(Origin::Pas, &mut r, 0.9, &no_absent());
        assert_eq!(c.verdict, Verdict::Flowing);
        assert_eq!(r.iter().filter(|r| r.value == Measured::NoData).count(), 8);
        // the same answer under a lower ratio is a gap
        let mut r = answer(8, 2);
        assert_eq!(
            screen(Origin::Pas, &mut r, 0.8, &no_absent()).verdict,
            Verdict::Gap
        );
    }

    #[test]
    fn one_silent_vm_among_reporting_ones_is_down_not_a_gap() {
        let mut r = answer(1, 4);
        let c = screen(Origin::Pas, &mut r, 0.9, &no_absent());
        assert_eq!((c.silent, c.verdict), (1, Verdict::Flowing));
        assert!(r.contains(&silent(1)), "its NoData reading is kept");
    }

    #[test]
    fn a_single_silent_target_is_down_not_a_gap() {
        // the BOSH director is its origin's only target: its silence is "BOSH is down"
        let mut r = answer(1, 0);
        let c = screen(Origin::Bos, &mut r, 0.9, &no_absent());
        assert_eq!(c.verdict, Verdict::Unknown);
        assert_eq!(r.len(), 1);
        let mut r = Vec::new();
        assert_eq!(
            screen(Origin::Pas, &mut r, 0.9, &no_absent()).verdict,
            Verdict::Unknown
        );
    }

    #[test]
    fn containers_never_gap_they_have_no_no_data_readings() {
        let app = Target {
            origin: Origin::Con,
            origin_id: 3,
            name: "web".into(),
            ip: "10.0.0.3".into(),
            app: Some(AppInstance {
                app_name: "web".into(),
                app_index: 0,
                container_name: "c".into(),
                cell_name: "cell/0".into(),
            }),
        };
        let mut r = vec![Reading {
            target: app,
            value: Measured::Usage {
                resource: Resource::Memory,
                mean: 1.0,
                peak: 1.0,
                buckets: 1,
            },
        }];
        assert_eq!(
            screen(Origin::Con, &mut r, 0.9, &no_absent()).verdict,
            Verdict::Flowing
        );
    }

    #[test]
    fn absent_vms_are_silent_not_down_and_not_counted() {
        let absent: HashSet<i64> = [1, 2].into_iter().collect();
        let mut r = answer(3, 7);
        let c = screen(Origin::Pas, &mut r, 0.9, &absent);
        assert_eq!((c.absent_dropped, c.targets, c.silent), (2, 8, 1));
        assert_eq!(c.verdict, Verdict::Flowing);
        assert!(!r.contains(&silent(1)) && !r.contains(&silent(2)));
        assert!(r.contains(&silent(3)), "VM 3 is in the inventory: down");
    }

    #[test]
    fn a_gap_opens_one_pipeline_alarm_and_repeats_by_the_origin_rule() {
        let gap = GapCheck {
            origin: Origin::Pas,
            targets: 5,
            silent: 5,
            absent_dropped: 0,
            verdict: Verdict::Gap,
        };
        let c = pipeline_changes(std::slice::from_ref(&gap), &policy(), &[], now(), &opts());
        match &c[..] {
            [
                Change::Open {
                    target,
                    alarm_type: AlarmType::Fail,
                    level: Level::Fail,
                    ..
                },
            ] => assert_eq!(*target, pipeline_target(Origin::Pas)),
            other => panic!("{other:?}"),
        }
        // open since 20 minutes: counted, no repeat before the origin's 30 minutes
        let c = pipeline_changes(
            std::slice::from_ref(&gap),
            &policy(),
            &[open_pipeline(7, 20, false)],
            now(),
            &opts(),
        );
        assert!(
            matches!(
                &c[..],
                [Change::Continue {
                    alarm_id: 7,
                    renotify: false,
                    ..
                }]
            ),
            "{c:?}"
        );
        let c = pipeline_changes(
            &[gap],
            &policy(),
            &[open_pipeline(7, 30, false)],
            now(),
            &opts(),
        );
        assert!(
            matches!(
                &c[..],
                [Change::Continue {
                    alarm_id: 7,
                    renotify: true,
                    ..
                }]
            ),
            "{c:?}"
        );
    }

    #[test]
    fn data_back_recovers_the_pipeline_alarm_and_unknown_leaves_it() {
        let check = |verdict| GapCheck {
            origin: Origin::Pas,
            targets: 5,
            silent: 0,
            absent_dropped: 0,
            verdict,
        };
        let open = [open_pipeline(7, 1, false)];
        let c = pipeline_changes(&[check(Verdict::Flowing)], &policy(), &open, now(), &opts());
        assert!(
            matches!(&c[..], [Change::Recover { alarm_ids, close_ids, alarm_type: AlarmType::Fail, .. }] if alarm_ids == &vec![7] && close_ids == &vec![7]),
            "{c:?}"
        );
        let c = pipeline_changes(&[check(Verdict::Unknown)], &policy(), &open, now(), &opts());
        assert!(c.is_empty(), "{c:?}");
        // nothing open and data flowing: nothing to say
        let c = pipeline_changes(&[check(Verdict::Flowing)], &policy(), &[], now(), &opts());
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn a_gap_is_counted_per_origin_and_flowing_data_is_not() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let check = |verdict| GapCheck {
            origin: Origin::Pas,
            targets: 5,
            silent: 5,
            absent_dropped: 0,
            verdict,
        };
        metrics::with_local_recorder(&recorder, || {
            report(&check(Verdict::Gap));
            report(&check(Verdict::Flowing));
            report(&check(Verdict::Unknown));
            report(&check(Verdict::Gap));
        });
        let text = handle.render();
        assert!(
            text.contains("monit_metric_gaps_total{origin=\"pas\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn vm_alarms_are_not_the_pipeline_alarm() {
        let mut vm_alarm = open_pipeline(8, 1, false);
        vm_alarm.origin_id = 4;
        let gap = GapCheck {
            origin: Origin::Pas,
            targets: 5,
            silent: 5,
            absent_dropped: 0,
            verdict: Verdict::Gap,
        };
        let c = pipeline_changes(&[gap], &policy(), &[vm_alarm], now(), &opts());
        assert!(
            matches!(&c[..], [Change::Open { .. }]),
            "a VM's open fail alarm neither stands for nor blocks the pipeline alarm: {c:?}"
        );
    }

    #[test]
    fn a_lone_silent_director_shares_the_gap_of_another_origin() {
        let director = Target {
            origin: Origin::Bos,
            origin_id: 9999,
            name: "micro-bosh".into(),
            ip: "10.0.0.6".into(),
            app: None,
        };
        let mut pas: Vec<Reading> = (1..=5).map(silent).collect();
        let mut bos = vec![Reading {
            target: director.clone(),
            value: Measured::NoData,
        }];
        let mut checks = vec![
            screen(Origin::Pas, &mut pas, 0.9, &HashSet::new()),
            screen(Origin::Bos, &mut bos, 0.9, &HashSet::new()),
        ];
        assert_eq!(checks[1].verdict, Verdict::Unknown);
        let mut all: Vec<Reading> = pas.into_iter().chain(bos).collect();
        share_gaps(&mut checks, &mut all);
        assert_eq!(checks[1].verdict, Verdict::SharedGap);
        assert!(all.is_empty(), "{all:?}");
        // one pipeline alarm, for the origin with the gap
        let opened = pipeline_changes(&checks, &[], &[], now(), &opts());
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].subject().target.origin, Origin::Pas);

        // alone (no gap elsewhere), a silent director is down, as before
        let mut bos = vec![Reading {
            target: director,
            value: Measured::NoData,
        }];
        let mut checks = vec![screen(Origin::Bos, &mut bos, 0.9, &HashSet::new())];
        share_gaps(&mut checks, &mut bos);
        assert_eq!(checks[0].verdict, Verdict::Unknown);
        assert_eq!(bos.len(), 1);
    }
}
