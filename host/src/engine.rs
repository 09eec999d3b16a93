//! The alarm engine: a pure function of (policies, open alarms, readings, now) that decides what
//! to open, escalate, count, re-notify and resolve. No I/O here; the store applies the result.

use crate::model::{
    ALARM_APP_NAME_CHARS, AlarmType, Level, Measured, Origin, Reading, Resource, Target, Timestamp,
};
use std::collections::{HashMap, HashSet};

/// An `alarm_policies` row, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub id: i64,
    pub origin: Origin,
    pub resource: Resource,
    pub warning: f64,
    pub critical: f64,
    /// minutes between notifications of a still-open alarm
    pub repeat_minutes: i64,
    /// averaging window, seconds (0 in the DB is replaced by the configured default)
    pub measure_seconds: u64,
}

impl Policy {
    /// The level a mean usage breaches, if any: critical wins over warning.
    pub fn level_for(&self, usage: f64) -> Option<Level> {
        if usage >= self.critical {
            Some(Level::Critical)
        } else if usage >= self.warning {
            Some(Level::Warning)
        } else {
            None
        }
    }

    pub fn threshold(&self, level: Level) -> Option<f64> {
        match level {
            Level::Warning => Some(self.warning),
            Level::Critical => Some(self.critical),
            Level::Fail => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenStatus {
    /// resolve_status 1
    Raised,
    /// resolve_status 2: an operator is on it; no repeats, but escalation and recovery still count
    InProgress,
}

/// An `alarms` row with resolve_status 1 or 2.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenAlarm {
    pub id: i64,
    pub origin: Origin,
    pub origin_id: i64,
    pub alarm_type: AlarmType,
    pub level: Level,
    pub status: OpenStatus,
    pub raised_at: Timestamp,
    pub last_sent: Option<Timestamp>,
    pub app_name: Option<String>,
    pub app_index: Option<i32>,
    /// recovered while auto_resolve was off: waits for a new breach, without repeating the notice
    pub recovered: bool,
}

impl OpenAlarm {
    /// A repeat notification is due: raised (not in an operator's hands) and `repeat_minutes`
    /// since the last one.
    pub fn repeat_due(&self, now: Timestamp, repeat_minutes: i64) -> bool {
        self.status == OpenStatus::Raised
            && self
                .last_sent
                .is_none_or(|t| now - t >= chrono::Duration::minutes(repeat_minutes.max(0)))
    }
}

/// The identity of an alarm. Containers are keyed by app and index, not by cell, so an instance
/// that moved to another cell keeps its alarm (as in the original).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AlarmKey {
    pub origin: Origin,
    pub origin_id: i64,
    pub alarm_type: AlarmType,
    pub app_name: String,
    pub app_index: i32,
}

impl AlarmKey {
    pub fn of_target(t: &Target, alarm_type: AlarmType) -> Self {
        match &t.app {
            Some(app) => AlarmKey {
                origin: t.origin,
                origin_id: 0,
                alarm_type,
                app_name: app.app_name.chars().take(ALARM_APP_NAME_CHARS).collect(),
                app_index: app.app_index,
            },
            None => AlarmKey {
                origin: t.origin,
                origin_id: t.origin_id,
                alarm_type,
                app_name: String::new(),
                app_index: 0,
            },
        }
    }

    pub fn of_alarm(a: &OpenAlarm) -> Self {
        let app_name = a.app_name.clone().unwrap_or_default();
        AlarmKey {
            origin: a.origin,
            origin_id: if a.origin == Origin::Con {
                0
            } else {
                a.origin_id
            },
            alarm_type: a.alarm_type,
            app_index: if app_name.is_empty() {
                0
            } else {
                a.app_index.unwrap_or(0)
            },
            app_name,
        }
    }
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub auto_resolve: bool,
    /// repeat interval of `fail` alarms when the origin has no policy rows
    pub default_repeat_minutes: i64,
}

/// What to do, for the store to apply in one transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Open {
        target: Target,
        alarm_type: AlarmType,
        level: Level,
        value: Option<f64>,
        threshold: Option<f64>,
    },
    Escalate {
        alarm_id: i64,
        target: Target,
        alarm_type: AlarmType,
        from: Level,
        to: Level,
        value: Option<f64>,
        threshold: Option<f64>,
    },
    /// still breaching: alarm_cnt + 1, and a repeat notification when `renotify`
    Continue {
        alarm_id: i64,
        target: Target,
        alarm_type: AlarmType,
        level: Level,
        value: Option<f64>,
        threshold: Option<f64>,
        renotify: bool,
    },
    /// a recovered-but-open alarm (auto_resolve off) breaches again: notify as new, clear the mark
    Rebreach {
        alarm_id: i64,
        target: Target,
        alarm_type: AlarmType,
        level: Level,
        value: Option<f64>,
        threshold: Option<f64>,
    },
    /// back under the warning threshold for a whole window (or data back, for `fail`)
    Recover {
        alarm_ids: Vec<i64>,
        target: Target,
        alarm_type: AlarmType,
        level: Level,
        value: Option<f64>,
        /// close it (auto_resolve) or only mark it recovered
        close: bool,
    },
}

/// What a change is about, whatever its kind: the target, the alarm and the value that decided.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub target: &'a Target,
    pub alarm_type: AlarmType,
    /// the level after the change
    pub level: Level,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
}

impl Change {
    pub fn subject(&self) -> Subject<'_> {
        match self {
            Change::Open {
                target,
                alarm_type,
                level,
                value,
                threshold,
            }
            | Change::Escalate {
                target,
                alarm_type,
                to: level,
                value,
                threshold,
                ..
            }
            | Change::Rebreach {
                target,
                alarm_type,
                level,
                value,
                threshold,
                ..
            }
            | Change::Continue {
                target,
                alarm_type,
                level,
                value,
                threshold,
                ..
            } => Subject {
                target,
                alarm_type: *alarm_type,
                level: *level,
                value: *value,
                threshold: *threshold,
            },
            Change::Recover {
                target,
                alarm_type,
                level,
                value,
                ..
            } => Subject {
                target,
                alarm_type: *alarm_type,
                level: *level,
                value: *value,
                threshold: None,
            },
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChangeCounts {
    pub opened: u32,
    pub escalated: u32,
    pub continued: u32,
    pub renotified: u32,
    pub recovered: u32,
}

pub fn count(changes: &[Change]) -> ChangeCounts {
    let mut c = ChangeCounts::default();
    for ch in changes {
        match ch {
            Change::Open { .. } | Change::Rebreach { .. } => c.opened += 1,
            Change::Escalate { .. } => c.escalated += 1,
            Change::Continue { renotify, .. } => {
                c.continued += 1;
                if *renotify {
                    c.renotified += 1;
                }
            }
            Change::Recover { .. } => c.recovered += 1,
        }
    }
    c
}

/// Decides the changes of one tick.
///
/// `evaluated` lists the origins whose collector succeeded this tick: alarms of any other origin
/// are left alone, so a failed InfluxDB query never reads as a recovery.
pub fn evaluate(
    policies: &[Policy],
    open: &[OpenAlarm],
    readings: &[Reading],
    evaluated: &[Origin],
    now: Timestamp,
    opts: &EngineOptions,
) -> Vec<Change> {
    let policy: HashMap<(Origin, Resource), &Policy> = policies
        .iter()
        .map(|p| ((p.origin, p.resource), p))
        .collect();
    // Several open rows can share a key in a database the original wrote (it kept a warning and
    // a critical row side by side): the most severe, newest one leads, all close together.
    let mut groups: HashMap<AlarmKey, Vec<&OpenAlarm>> = HashMap::new();
    for a in open.iter().filter(|a| evaluated.contains(&a.origin)) {
        groups.entry(AlarmKey::of_alarm(a)).or_default().push(a);
    }
    for g in groups.values_mut() {
        g.sort_by_key(|a| std::cmp::Reverse((a.level, a.id)));
    }
    let repeat_of = |origin: Origin, resource: Option<Resource>| -> i64 {
        resource
            .and_then(|r| policy.get(&(origin, r)).map(|p| p.repeat_minutes))
            .or_else(|| {
                policies
                    .iter()
                    .filter(|p| p.origin == origin)
                    .map(|p| p.repeat_minutes)
                    .min()
            })
            .unwrap_or(opts.default_repeat_minutes)
    };

    let mut changes = Vec::new();
    let mut targets_with_data: HashSet<AlarmKey> = HashSet::new();
    // One decision per alarm key and tick: two readings with one key (the same app instance
    // reported twice) must not open two alarms. The first reading of a key decides.
    let mut decided: HashSet<AlarmKey> = HashSet::new();
    for r in readings
        .iter()
        .filter(|r| evaluated.contains(&r.target.origin))
    {
        let ty = match &r.value {
            Measured::Usage { resource, .. } => AlarmType::from(*resource),
            Measured::NoData => AlarmType::Fail,
        };
        if !decided.insert(AlarmKey::of_target(&r.target, ty)) {
            continue;
        }
        match &r.value {
            Measured::Usage {
                resource,
                mean,
                peak,
                ..
            } => {
                targets_with_data.insert(AlarmKey::of_target(&r.target, AlarmType::Fail));
                let Some(p) = policy.get(&(r.target.origin, *resource)) else {
                    continue;
                };
                if !mean.is_finite() || !peak.is_finite() {
                    continue;
                }
                let alarm_type = AlarmType::from(*resource);
                let key = AlarmKey::of_target(&r.target, alarm_type);
                let level = p.level_for(*mean);
                let lead = groups.get(&key).and_then(|g| g.first().copied());
                match (lead, level) {
                    (None, Some(level)) => changes.push(Change::Open {
                        target: r.target.clone(),
                        alarm_type,
                        level,
                        value: Some(*mean),
                        threshold: p.threshold(level),
                    }),
                    (None, None) => {}
                    (Some(a), Some(level)) if a.recovered => changes.push(Change::Rebreach {
                        alarm_id: a.id,
                        target: r.target.clone(),
                        alarm_type,
                        level,
                        value: Some(*mean),
                        threshold: p.threshold(level),
                    }),
                    (Some(a), Some(level)) if level > a.level => changes.push(Change::Escalate {
                        alarm_id: a.id,
                        target: r.target.clone(),
                        alarm_type,
                        from: a.level,
                        to: level,
                        value: Some(*mean),
                        threshold: p.threshold(level),
                    }),
                    (Some(a), Some(_)) => changes.push(Change::Continue {
                        alarm_id: a.id,
                        target: r.target.clone(),
                        alarm_type,
                        // an alarm never steps down while it is still breaching
                        level: a.level,
                        value: Some(*mean),
                        threshold: p.threshold(a.level),
                        renotify: a.repeat_due(now, p.repeat_minutes),
                    }),
                    (Some(a), None) => {
                        // Recovery waits until the whole window is under the warning threshold,
                        // so an alarm does not flap on a mean that dips just below it.
                        if *peak < p.warning && !a.recovered {
                            changes.push(recover(
                                &groups[&key],
                                &r.target,
                                alarm_type,
                                Some(*mean),
                                opts,
                            ));
                        }
                    }
                }
            }
            Measured::NoData => {
                let key = AlarmKey::of_target(&r.target, AlarmType::Fail);
                targets_with_data.remove(&key);
                match groups.get(&key).and_then(|g| g.first().copied()) {
                    None => changes.push(Change::Open {
                        target: r.target.clone(),
                        alarm_type: AlarmType::Fail,
                        level: Level::Fail,
                        value: None,
                        threshold: None,
                    }),
                    Some(a) if a.recovered => changes.push(Change::Rebreach {
                        alarm_id: a.id,
                        target: r.target.clone(),
                        alarm_type: AlarmType::Fail,
                        level: Level::Fail,
                        value: None,
                        threshold: None,
                    }),
                    Some(a) => changes.push(Change::Continue {
                        alarm_id: a.id,
                        target: r.target.clone(),
                        alarm_type: AlarmType::Fail,
                        level: Level::Fail,
                        value: None,
                        threshold: None,
                        renotify: a.repeat_due(now, repeat_of(r.target.origin, None)),
                    }),
                }
            }
        }
    }
    // A target that reports again closes its `fail` alarm.
    for key in &targets_with_data {
        if let Some(g) = groups.get(key)
            && let Some(a) = g.first()
            && !a.recovered
        {
            let target = readings
                .iter()
                .find(|r| AlarmKey::of_target(&r.target, AlarmType::Fail) == *key)
                .map(|r| r.target.clone());
            if let Some(target) = target {
                changes.push(recover(g, &target, AlarmType::Fail, None, opts));
            }
        }
    }
    changes
}

fn recover(
    group: &[&OpenAlarm],
    target: &Target,
    alarm_type: AlarmType,
    value: Option<f64>,
    opts: &EngineOptions,
) -> Change {
    Change::Recover {
        alarm_ids: group.iter().map(|a| a.id).collect(),
        target: target.clone(),
        alarm_type,
        level: group.first().map(|a| a.level).unwrap_or(Level::Warning),
        value,
        close: opts.auto_resolve,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AppInstance;
    use chrono::TimeZone;

    fn now() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .unwrap()
    }
    fn opts() -> EngineOptions {
        EngineOptions {
            auto_resolve: true,
            default_repeat_minutes: 10,
        }
    }
    fn pol(origin: Origin, resource: Resource, warning: f64, critical: f64) -> Policy {
        Policy {
            id: 1,
            origin,
            resource,
            warning,
            critical,
            repeat_minutes: 10,
            measure_seconds: 600,
        }
    }
    fn vm(id: i64) -> Target {
        Target {
            origin: Origin::Pas,
            origin_id: id,
            name: format!("vm/{id}"),
            ip: format!("10.0.0.{id}"),
            app: None,
        }
    }
    fn usage(t: Target, resource: Resource, mean: f64, peak: f64) -> Reading {
        Reading {
            target: t,
            value: Measured::Usage {
                resource,
                mean,
                peak,
                buckets: 20,
            },
        }
    }
    fn open(
        id: i64,
        t: &Target,
        ty: AlarmType,
        level: Level,
        status: OpenStatus,
        sent_min_ago: i64,
    ) -> OpenAlarm {
        OpenAlarm {
            id,
            origin: t.origin,
            origin_id: t.origin_id,
            alarm_type: ty,
            level,
            status,
            raised_at: now() - chrono::Duration::minutes(60),
            last_sent: Some(now() - chrono::Duration::minutes(sent_min_ago)),
            app_name: t.app.as_ref().map(|a| a.app_name.clone()),
            app_index: t.app.as_ref().map(|a| a.app_index),
            recovered: false,
        }
    }
    fn eval(p: &[Policy], o: &[OpenAlarm], r: &[Reading]) -> Vec<Change> {
        evaluate(p, o, r, &Origin::ALL, now(), &opts())
    }
    const CPU: AlarmType = AlarmType::Cpu;

    #[test]
    fn under_threshold_does_nothing() {
        let c = eval(
            &[pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)],
            &[],
            &[usage(vm(1), Resource::Cpu, 84.9, 99.0)],
        );
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn at_warning_opens_warning_and_critical_wins() {
        let p = [pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)];
        let c = eval(
            &p,
            &[],
            &[
                usage(vm(1), Resource::Cpu, 85.0, 85.0),
                usage(vm(2), Resource::Cpu, 95.0, 99.0),
            ],
        );
        assert!(
            matches!(&c[0], Change::Open { level: Level::Warning, threshold: Some(t), .. } if *t == 85.0),
            "{c:?}"
        );
        assert!(
            matches!(&c[1], Change::Open { level: Level::Critical, threshold: Some(t), .. } if *t == 90.0),
            "{c:?}"
        );
    }

    #[test]
    fn warning_to_critical_escalates_the_same_alarm() {
        let t = vm(1);
        let o = [open(7, &t, CPU, Level::Warning, OpenStatus::Raised, 1)];
        let c = eval(
            &[pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)],
            &o,
            &[usage(t, Resource::Cpu, 92.0, 95.0)],
        );
        assert!(
            matches!(
                &c[..],
                [Change::Escalate {
                    alarm_id: 7,
                    from: Level::Warning,
                    to: Level::Critical,
                    ..
                }]
            ),
            "{c:?}"
        );
    }

    #[test]
    fn still_breaching_counts_and_renotifies_only_after_repeat_time() {
        let t = vm(1);
        let p = [pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)];
        let recent = [open(7, &t, CPU, Level::Critical, OpenStatus::Raised, 9)];
        let c = eval(&p, &recent, &[usage(t.clone(), Resource::Cpu, 95.0, 95.0)]);
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
        let old = [open(7, &t, CPU, Level::Critical, OpenStatus::Raised, 10)];
        let c = eval(&p, &old, &[usage(t, Resource::Cpu, 95.0, 95.0)]);
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
    fn critical_alarm_at_warning_level_keeps_its_level() {
        let t = vm(1);
        let o = [open(7, &t, CPU, Level::Critical, OpenStatus::Raised, 1)];
        let c = eval(
            &[pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)],
            &o,
            &[usage(t, Resource::Cpu, 87.0, 89.0)],
        );
        assert!(
            matches!(
                &c[..],
                [Change::Continue {
                    level: Level::Critical,
                    ..
                }]
            ),
            "{c:?}"
        );
    }

    #[test]
    fn recovery_needs_the_whole_window_under_warning() {
        let t = vm(1);
        let p = [pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)];
        let o = [open(7, &t, CPU, Level::Warning, OpenStatus::Raised, 1)];
        // mean below, but part of the window still above: hold
        let c = eval(&p, &o, &[usage(t.clone(), Resource::Cpu, 70.0, 88.0)]);
        assert!(c.is_empty(), "{c:?}");
        let c = eval(&p, &o, &[usage(t, Resource::Cpu, 40.0, 50.0)]);
        assert!(
            matches!(&c[..], [Change::Recover { alarm_ids, close: true, .. }] if alarm_ids == &vec![7]),
            "{c:?}"
        );
    }

    #[test]
    fn recovery_without_auto_resolve_marks_once_and_rebreach_notifies() {
        let t = vm(1);
        let p = [pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)];
        let o = [open(7, &t, CPU, Level::Warning, OpenStatus::Raised, 1)];
        let no_close = EngineOptions {
            auto_resolve: false,
            default_repeat_minutes: 10,
        };
        let c = evaluate(
            &p,
            &o,
            &[usage(t.clone(), Resource::Cpu, 40.0, 50.0)],
            &Origin::ALL,
            now(),
            &no_close,
        );
        assert!(
            matches!(&c[..], [Change::Recover { close: false, .. }]),
            "{c:?}"
        );
        let mut marked = o.clone();
        marked[0].recovered = true;
        let c = evaluate(
            &p,
            &marked,
            &[usage(t.clone(), Resource::Cpu, 40.0, 50.0)],
            &Origin::ALL,
            now(),
            &no_close,
        );
        assert!(c.is_empty(), "recovery notice must not repeat: {c:?}");
        let c = evaluate(
            &p,
            &marked,
            &[usage(t, Resource::Cpu, 86.0, 90.0)],
            &Origin::ALL,
            now(),
            &no_close,
        );
        assert!(
            matches!(
                &c[..],
                [Change::Rebreach {
                    alarm_id: 7,
                    level: Level::Warning,
                    ..
                }]
            ),
            "{c:?}"
        );
    }

    #[test]
    fn in_progress_alarm_is_never_duplicated_nor_repeated_but_escalates_and_recovers() {
        let t = vm(1);
        let p = [pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)];
        let o = [open(
            7,
            &t,
            CPU,
            Level::Warning,
            OpenStatus::InProgress,
            600,
        )];
        let c = eval(&p, &o, &[usage(t.clone(), Resource::Cpu, 86.0, 88.0)]);
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
        let c = eval(&p, &o, &[usage(t.clone(), Resource::Cpu, 95.0, 96.0)]);
        assert!(
            matches!(&c[..], [Change::Escalate { alarm_id: 7, .. }]),
            "{c:?}"
        );
        let c = eval(&p, &o, &[usage(t, Resource::Cpu, 10.0, 10.0)]);
        assert!(matches!(&c[..], [Change::Recover { .. }]), "{c:?}");
    }

    #[test]
    fn policy_changed_between_ticks_uses_the_new_thresholds() {
        let t = vm(1);
        let o = [open(7, &t, CPU, Level::Warning, OpenStatus::Raised, 1)];
        // threshold raised above the usage: the alarm recovers
        let c = eval(
            &[pol(Origin::Pas, Resource::Cpu, 95.0, 98.0)],
            &o,
            &[usage(t.clone(), Resource::Cpu, 86.0, 90.0)],
        );
        assert!(matches!(&c[..], [Change::Recover { .. }]), "{c:?}");
        // critical lowered under the usage: the alarm escalates
        let c = eval(
            &[pol(Origin::Pas, Resource::Cpu, 50.0, 80.0)],
            &o,
            &[usage(t.clone(), Resource::Cpu, 86.0, 90.0)],
        );
        assert!(
            matches!(&c[..], [Change::Escalate { to: Level::Critical, threshold: Some(x), .. }] if *x == 80.0),
            "{c:?}"
        );
        // policy removed: nothing to compare against, the alarm is held as it is
        let c = eval(&[], &o, &[usage(t, Resource::Cpu, 10.0, 10.0)]);
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn no_data_opens_fail_and_data_back_recovers_it() {
        let t = vm(1);
        let p = [pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)];
        let nodata = Reading {
            target: t.clone(),
            value: Measured::NoData,
        };
        let c = eval(&p, &[], std::slice::from_ref(&nodata));
        assert!(
            matches!(
                &c[..],
                [Change::Open {
                    alarm_type: AlarmType::Fail,
                    level: Level::Fail,
                    ..
                }]
            ),
            "{c:?}"
        );
        let o = [open(
            9,
            &t,
            AlarmType::Fail,
            Level::Fail,
            OpenStatus::Raised,
            3,
        )];
        let c = eval(&p, &o, &[nodata]);
        assert!(
            matches!(
                &c[..],
                [Change::Continue {
                    alarm_id: 9,
                    renotify: false,
                    ..
                }]
            ),
            "{c:?}"
        );
        let c = eval(&p, &o, &[usage(t, Resource::Cpu, 10.0, 10.0)]);
        assert!(
            matches!(
                &c[..],
                [Change::Recover {
                    alarm_type: AlarmType::Fail,
                    ..
                }]
            ),
            "{c:?}"
        );
    }

    #[test]
    fn origins_not_evaluated_are_left_alone() {
        let t = vm(1);
        let o = [open(7, &t, CPU, Level::Warning, OpenStatus::Raised, 100)];
        let c = evaluate(
            &[pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)],
            &o,
            &[usage(t, Resource::Cpu, 1.0, 1.0)],
            &[Origin::Con],
            now(),
            &opts(),
        );
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn container_alarm_follows_the_app_instance_across_cells() {
        let app = |cell: i64| Target {
            origin: Origin::Con,
            origin_id: cell,
            name: "web".into(),
            ip: "10.0.0.9".into(),
            app: Some(AppInstance {
                app_name: "web".into(),
                app_index: 0,
                container_name: "c".into(),
                cell_name: format!("cell/{cell}"),
            }),
        };
        let o = [open(
            5,
            &app(1),
            AlarmType::Memory,
            Level::Warning,
            OpenStatus::Raised,
            1,
        )];
        let c = eval(
            &[pol(Origin::Con, Resource::Memory, 85.0, 90.0)],
            &o,
            &[usage(app(2), Resource::Memory, 88.0, 88.0)],
        );
        assert!(
            matches!(&c[..], [Change::Continue { alarm_id: 5, .. }]),
            "{c:?}"
        );
    }

    #[test]
    fn legacy_duplicate_rows_close_together() {
        let t = vm(1);
        let o = [
            open(3, &t, CPU, Level::Warning, OpenStatus::Raised, 1),
            open(4, &t, CPU, Level::Critical, OpenStatus::Raised, 1),
        ];
        let c = eval(
            &[pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)],
            &o,
            &[usage(t, Resource::Cpu, 1.0, 1.0)],
        );
        assert!(
            matches!(&c[..], [Change::Recover { alarm_ids, level: Level::Critical, .. }] if alarm_ids == &vec![4, 3]),
            "{c:?}"
        );
    }

    #[test]
    fn one_decision_per_key_even_with_duplicate_readings() {
        let p = [pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)];
        let c = eval(
            &p,
            &[],
            &[
                usage(vm(1), Resource::Cpu, 95.0, 95.0),
                usage(vm(1), Resource::Cpu, 96.0, 96.0),
            ],
        );
        assert_eq!(c.len(), 1, "{c:?}");
    }

    #[test]
    fn non_finite_values_are_ignored() {
        let c = eval(
            &[pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)],
            &[],
            &[usage(vm(1), Resource::Cpu, f64::NAN, f64::NAN)],
        );
        assert!(c.is_empty());
    }
}
