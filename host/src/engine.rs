//! The alarm engine: a pure function of (policies, open alarms, readings, now) that decides what
//! to open, escalate, count, re-notify and resolve. No I/O here; the store applies the result.

pub use crate::config::AutoResolve;
use crate::model::{
    ALARM_APP_NAME_CHARS, AlarmType, Level, Measured, Origin, Reading, Resource, Target, Timestamp,
};
use std::collections::{HashMap, HashSet};

mod scaling;
pub use scaling::{APP_LEVEL_INDEX, scale_changes};

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
    /// recovered but left open (an operator's alarm, or auto_resolve "none"): waits for a new
    /// breach, without repeating the notice
    pub recovered: bool,
    /// The level the last notification stated. It differs from `level` after a level change
    /// that was not notified (a step-down before repeat_time, or a flap back up), and keeps a
    /// level that flaps around a threshold from notifying on every crossing.
    pub notified_level: Level,
}

impl OpenAlarm {
    /// Recorded while its notification was held (silence, maintenance, inhibition) and not told
    /// since: when it still breaches after the hold, it is notified as a new alarm.
    pub fn never_notified(&self) -> bool {
        self.last_sent.is_none() && self.status == OpenStatus::Raised && !self.recovered
    }

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

// `alarms.auto_resolve` is a setting (config); what it closes is the engine's rule.
impl AutoResolve {
    pub fn closes(self, status: OpenStatus) -> bool {
        match self {
            AutoResolve::Unclaimed => status == OpenStatus::Raised,
            AutoResolve::All => true,
            AutoResolve::None => false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub auto_resolve: AutoResolve,
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
    /// up a level, in place; `notify` is false when the last notification already stated this
    /// level and repeat_time has not passed (a value flapping around the critical threshold)
    Escalate {
        alarm_id: i64,
        target: Target,
        alarm_type: AlarmType,
        from: Level,
        to: Level,
        value: Option<f64>,
        threshold: Option<f64>,
        notify: bool,
    },
    /// down a level, in place (threshold raised, or the value fell into the warning band);
    /// notified under the repeat rules: only when a repeat is due, else the row alone changes
    StepDown {
        alarm_id: i64,
        target: Target,
        alarm_type: AlarmType,
        from: Level,
        to: Level,
        value: Option<f64>,
        threshold: Option<f64>,
        notify: bool,
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
    /// a recovered-but-open alarm breaches again: notify as new, clear the mark
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
        /// every open row of the alarm, the lead first
        alarm_ids: Vec<i64>,
        /// the rows to close (auto_resolve); the others stay open with a note, marked recovered
        close_ids: Vec<i64>,
        target: Target,
        alarm_type: AlarmType,
        level: Level,
        value: Option<f64>,
    },
}

/// The open alarms as `change` leaves them: what the store writes, in memory. The backtest
/// replays history through it, so a change means the same thing there as in the database.
/// `next_id` numbers a newly opened alarm.
pub fn apply(open: &mut Vec<OpenAlarm>, change: &Change, now: Timestamp, next_id: &mut i64) {
    match change {
        Change::Open {
            target,
            alarm_type,
            level,
            ..
        } => {
            *next_id += 1;
            open.push(OpenAlarm {
                id: *next_id,
                origin: target.origin,
                origin_id: target.origin_id,
                alarm_type: *alarm_type,
                level: *level,
                status: OpenStatus::Raised,
                raised_at: now,
                last_sent: Some(now),
                app_name: target.app.as_ref().map(|a| a.app_name.clone()),
                app_index: target.app.as_ref().map(|a| a.app_index),
                recovered: false,
                notified_level: *level,
            });
        }
        Change::Escalate {
            alarm_id,
            to,
            notify,
            ..
        }
        | Change::StepDown {
            alarm_id,
            to,
            notify,
            ..
        } => {
            if let Some(a) = open.iter_mut().find(|a| a.id == *alarm_id) {
                a.level = *to;
                if *notify {
                    a.last_sent = Some(now);
                    a.notified_level = *to;
                }
            }
        }
        Change::Rebreach {
            alarm_id, level, ..
        } => {
            if let Some(a) = open.iter_mut().find(|a| a.id == *alarm_id) {
                a.level = *level;
                a.last_sent = Some(now);
                a.notified_level = *level;
                a.recovered = false;
            }
        }
        Change::Continue {
            alarm_id,
            level,
            renotify,
            ..
        } => {
            if *renotify && let Some(a) = open.iter_mut().find(|a| a.id == *alarm_id) {
                a.last_sent = Some(now);
                a.notified_level = *level;
            }
        }
        Change::Recover {
            alarm_ids,
            close_ids,
            ..
        } => {
            open.retain(|a| !close_ids.contains(&a.id));
            open.iter_mut()
                .filter(|a| alarm_ids.contains(&a.id))
                .for_each(|a| a.recovered = true);
        }
    }
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
            | Change::StepDown {
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
    pub stepped_down: u32,
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
            Change::StepDown { .. } => c.stepped_down += 1,
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
                    (Some(a), Some(level)) if a.recovered || a.never_notified() => {
                        changes.push(Change::Rebreach {
                            alarm_id: a.id,
                            target: r.target.clone(),
                            alarm_type,
                            level,
                            value: Some(*mean),
                            threshold: p.threshold(level),
                        })
                    }
                    (Some(a), Some(level)) => changes.push(still_breaching(
                        a,
                        &r.target,
                        alarm_type,
                        level,
                        (*mean, *peak),
                        p,
                        now,
                    )),
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
                    Some(a) if a.recovered || a.never_notified() => {
                        changes.push(Change::Rebreach {
                            alarm_id: a.id,
                            target: r.target.clone(),
                            alarm_type: AlarmType::Fail,
                            level: Level::Fail,
                            value: None,
                            threshold: None,
                        })
                    }
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

/// An open alarm that breaches `level` now. Its row always follows the current level (so no
/// message states a threshold the value does not exceed); what is mailed follows the repeat
/// rules, with a guard against a value flapping around the critical threshold:
/// * an escalation is mailed when it goes above the level the last mail stated, or when a repeat
///   is due; back up to the last mail's level within repeat_time, the row alone changes;
/// * a step-down is mailed only when a repeat is due and the whole window is under the threshold
///   of the level it leaves (the rule recovery follows), so crossing back and forth does not
///   read as a step-down; until then the row alone changes.
fn still_breaching(
    a: &OpenAlarm,
    target: &Target,
    alarm_type: AlarmType,
    level: Level,
    (mean, peak): (f64, f64),
    p: &Policy,
    now: Timestamp,
) -> Change {
    let repeat_due = a.repeat_due(now, p.repeat_minutes);
    let settled_below = |from: Level| p.threshold(from).is_none_or(|t| peak < t);
    let (alarm_id, target, value, threshold) =
        (a.id, target.clone(), Some(mean), p.threshold(level));
    if level > a.level {
        Change::Escalate {
            alarm_id,
            target,
            alarm_type,
            from: a.level,
            to: level,
            value,
            threshold,
            notify: level > a.notified_level || repeat_due,
        }
    } else if level < a.level {
        Change::StepDown {
            alarm_id,
            target,
            alarm_type,
            from: a.level,
            to: level,
            value,
            threshold,
            notify: repeat_due && settled_below(a.notified_level.max(a.level)),
        }
    } else if level < a.notified_level && repeat_due && settled_below(a.notified_level) {
        // stepped down without a mail earlier: the repeat that is due now says so
        Change::StepDown {
            alarm_id,
            target,
            alarm_type,
            from: a.notified_level,
            to: level,
            value,
            threshold,
            notify: true,
        }
    } else {
        Change::Continue {
            alarm_id,
            target,
            alarm_type,
            level,
            value,
            threshold,
            renotify: repeat_due,
        }
    }
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
        close_ids: group
            .iter()
            .filter(|a| opts.auto_resolve.closes(a.status))
            .map(|a| a.id)
            .collect(),
        target: target.clone(),
        alarm_type,
        level: group.first().map(|a| a.level).unwrap_or(Level::Warning),
        value,
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
            auto_resolve: AutoResolve::Unclaimed,
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
            notified_level: level,
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
    fn a_critical_alarm_back_in_the_warning_band_steps_down_in_place() {
        let t = vm(1);
        let p = [pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)];
        // within repeat_time: the row steps down, nothing is sent
        let o = [open(7, &t, CPU, Level::Critical, OpenStatus::Raised, 1)];
        let c = eval(&p, &o, &[usage(t.clone(), Resource::Cpu, 87.0, 89.0)]);
        assert!(
            matches!(&c[..], [Change::StepDown { alarm_id: 7, from: Level::Critical, to: Level::Warning, threshold: Some(x), notify: false, .. }] if *x == 85.0),
            "{c:?}"
        );
        // a repeat is due: the step-down is notified
        let o = [open(7, &t, CPU, Level::Critical, OpenStatus::Raised, 10)];
        let c = eval(&p, &o, &[usage(t.clone(), Resource::Cpu, 87.0, 89.0)]);
        assert!(
            matches!(
                &c[..],
                [Change::StepDown {
                    to: Level::Warning,
                    notify: true,
                    ..
                }]
            ),
            "{c:?}"
        );
        // an operator's alarm steps down too, silently (no repeats in status 2)
        let o = [open(
            7,
            &t,
            CPU,
            Level::Critical,
            OpenStatus::InProgress,
            600,
        )];
        let c = eval(&p, &o, &[usage(t, Resource::Cpu, 87.0, 89.0)]);
        assert!(
            matches!(
                &c[..],
                [Change::StepDown {
                    to: Level::Warning,
                    notify: false,
                    ..
                }]
            ),
            "{c:?}"
        );
    }

    #[test]
    fn raised_thresholds_step_a_critical_alarm_down_with_the_new_warning_threshold() {
        // the case: thresholds raised to 95/99 under a critical alarm at ~97 %
        let t = vm(1);
        let o = [open(7, &t, CPU, Level::Critical, OpenStatus::Raised, 11)];
        let c = eval(
            &[pol(Origin::Pas, Resource::Cpu, 95.0, 99.0)],
            &o,
            &[usage(t, Resource::Cpu, 97.03, 97.5)],
        );
        assert!(
            matches!(&c[..], [Change::StepDown { to: Level::Warning, threshold: Some(x), value: Some(v), notify: true, .. }] if *x == 95.0 && *v >= *x),
            "{c:?}"
        );
    }

    #[test]
    fn a_silent_step_down_is_told_by_the_next_due_repeat() {
        let t = vm(1);
        let p = [pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)];
        let mut o = open(7, &t, CPU, Level::Warning, OpenStatus::Raised, 10);
        o.notified_level = Level::Critical;
        let c = eval(
            &p,
            &[o.clone()],
            &[usage(t.clone(), Resource::Cpu, 87.0, 89.0)],
        );
        assert!(
            matches!(
                &c[..],
                [Change::StepDown {
                    from: Level::Critical,
                    to: Level::Warning,
                    notify: true,
                    ..
                }]
            ),
            "{c:?}"
        );
        // not yet due: counted, nothing sent
        o.last_sent = Some(now() - chrono::Duration::minutes(3));
        let c = eval(&p, &[o], &[usage(t, Resource::Cpu, 87.0, 89.0)]);
        assert!(
            matches!(
                &c[..],
                [Change::Continue {
                    level: Level::Warning,
                    renotify: false,
                    ..
                }]
            ),
            "{c:?}"
        );
    }

    #[test]
    fn a_value_flapping_around_critical_notifies_once_per_repeat_time() {
        // Simulated ticks one minute apart with the mean crossing 90 % every tick (the window
        // holds both, so its highest bucket stays above 90), applying each change to the alarm
        // as the store does. Within repeat_time neither the step-downs nor the flaps back up
        // send anything, and each mail states the level of its moment.
        let t = vm(1);
        for repeat in [10, 11] {
            let p = [Policy {
                repeat_minutes: repeat,
                ..pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)
            }];
            let start = now();
            let mut a = open(7, &t, CPU, Level::Critical, OpenStatus::Raised, 0);
            a.last_sent = Some(start);
            let mut sent = vec![(0, Level::Critical)];
            for minute in 1..=45 {
                let at = start + chrono::Duration::minutes(minute);
                let v = if minute % 2 == 1 { 89.0 } else { 91.0 };
                let c = evaluate(
                    &p,
                    std::slice::from_ref(&a),
                    &[usage(t.clone(), Resource::Cpu, v, 91.0)],
                    &Origin::ALL,
                    at,
                    &opts(),
                );
                let (level, notified) = match &c[..] {
                    [Change::Escalate { to, notify, .. } | Change::StepDown { to, notify, .. }] => {
                        (*to, *notify)
                    }
                    [
                        Change::Continue {
                            level, renotify, ..
                        },
                    ] => (*level, *renotify),
                    other => panic!("unexpected {other:?}"),
                };
                assert_eq!(
                    level,
                    if v >= 90.0 {
                        Level::Critical
                    } else {
                        Level::Warning
                    }
                );
                a.level = level;
                if notified {
                    a.last_sent = Some(at);
                    a.notified_level = level;
                    sent.push((minute, level));
                }
            }
            for w in sent.windows(2) {
                assert!(w[1].0 - w[0].0 >= repeat, "repeat {repeat}: {sent:?}");
            }
            assert!(sent.len() >= 4, "still reminded: {sent:?}");
        }
    }

    #[test]
    fn a_step_down_is_not_mailed_until_the_whole_window_is_under_the_level_it_leaves() {
        let t = vm(1);
        let p = [pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)];
        let o = [open(7, &t, CPU, Level::Critical, OpenStatus::Raised, 30)];
        // mean in the warning band, part of the window still critical: the row only
        let c = eval(&p, &o, &[usage(t.clone(), Resource::Cpu, 88.0, 93.0)]);
        assert!(
            matches!(
                &c[..],
                [Change::StepDown {
                    to: Level::Warning,
                    notify: false,
                    ..
                }]
            ),
            "{c:?}"
        );
        // once settled, the due repeat tells the step-down
        let mut o = o[0].clone();
        o.level = Level::Warning;
        let c = eval(&p, &[o], &[usage(t, Resource::Cpu, 88.0, 89.0)]);
        assert!(
            matches!(
                &c[..],
                [Change::StepDown {
                    from: Level::Critical,
                    to: Level::Warning,
                    notify: true,
                    ..
                }]
            ),
            "{c:?}"
        );
    }

    #[test]
    fn escalation_past_the_last_notified_level_always_notifies() {
        let t = vm(1);
        let p = [pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)];
        let o = [open(7, &t, CPU, Level::Warning, OpenStatus::Raised, 1)];
        let c = eval(&p, &o, &[usage(t.clone(), Resource::Cpu, 92.0, 95.0)]);
        assert!(
            matches!(&c[..], [Change::Escalate { notify: true, .. }]),
            "{c:?}"
        );
        // flapping back up to the level the last mail stated, within repeat_time: row only
        let mut o = open(7, &t, CPU, Level::Warning, OpenStatus::Raised, 1);
        o.notified_level = Level::Critical;
        let c = eval(&p, &[o], &[usage(t, Resource::Cpu, 92.0, 95.0)]);
        assert!(
            matches!(
                &c[..],
                [Change::Escalate {
                    to: Level::Critical,
                    notify: false,
                    ..
                }]
            ),
            "{c:?}"
        );
    }

    /// Property over a grid of policies, open alarms and readings: whenever a change states a
    /// threshold, the value it states meets it, and the threshold is the one of the level the
    /// change gives the alarm. (Messages and mails are rendered from exactly these numbers.)
    #[test]
    fn no_change_ever_states_a_threshold_its_value_does_not_exceed() {
        let t = vm(1);
        let thresholds = [(50.0, 60.0), (85.0, 90.0), (95.0, 99.0), (90.0, 90.0)];
        let values = [
            0.0, 49.9, 50.0, 59.99, 60.0, 84.9, 85.0, 89.99, 90.0, 94.0, 96.97, 97.03, 99.0, 100.0,
        ];
        let levels = [Level::Warning, Level::Critical];
        let statuses = [OpenStatus::Raised, OpenStatus::InProgress];
        let mut checked = 0;
        for (w, c) in thresholds {
            let p = [pol(Origin::Pas, Resource::Cpu, w, c)];
            let mut opens: Vec<Vec<OpenAlarm>> = vec![vec![]];
            for level in levels {
                for notified in levels {
                    for status in statuses {
                        for (sent_ago, recovered) in [(1, false), (30, false), (30, true)] {
                            let mut a = open(7, &t, CPU, level, status, sent_ago);
                            a.notified_level = notified;
                            a.recovered = recovered;
                            opens.push(vec![a]);
                        }
                    }
                }
            }
            for o in &opens {
                for &mean in &values {
                    for &peak in &values {
                        if peak < mean {
                            continue;
                        }
                        let reading = usage(t.clone(), Resource::Cpu, mean, peak);
                        for ch in eval(&p, o, &[reading]) {
                            let s = ch.subject();
                            if let Some(thr) = s.threshold {
                                let v = s.value.expect("a threshold comes with a value");
                                assert!(v >= thr, "{v} does not exceed {thr}: {ch:?}");
                                assert_eq!(Some(thr), p[0].threshold(s.level), "{ch:?}");
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 1000, "the grid produced changes: {checked}");
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
            matches!(&c[..], [Change::Recover { alarm_ids, close_ids, .. }] if alarm_ids == &vec![7] && close_ids == &vec![7]),
            "{c:?}"
        );
    }

    #[test]
    fn recovery_without_auto_resolve_marks_once_and_rebreach_notifies() {
        let t = vm(1);
        let p = [pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)];
        let o = [open(7, &t, CPU, Level::Warning, OpenStatus::Raised, 1)];
        let no_close = EngineOptions {
            auto_resolve: AutoResolve::None,
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
            matches!(&c[..], [Change::Recover { close_ids, .. }] if close_ids.is_empty()),
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
    fn an_operators_alarm_recovers_without_being_closed_unless_auto_resolve_is_all() {
        let t = vm(1);
        let p = [pol(Origin::Pas, Resource::Cpu, 85.0, 90.0)];
        let taken = [open(7, &t, CPU, Level::Warning, OpenStatus::InProgress, 1)];
        let raised = [open(8, &t, CPU, Level::Warning, OpenStatus::Raised, 1)];
        let low = [usage(t.clone(), Resource::Cpu, 10.0, 10.0)];
        let recover = |mode: AutoResolve, o: &[OpenAlarm]| {
            let opts = EngineOptions {
                auto_resolve: mode,
                default_repeat_minutes: 10,
            };
            match &evaluate(&p, o, &low, &Origin::ALL, now(), &opts)[..] {
                [
                    Change::Recover {
                        alarm_ids,
                        close_ids,
                        ..
                    },
                ] => (alarm_ids.clone(), close_ids.clone()),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(recover(AutoResolve::Unclaimed, &taken), (vec![7], vec![]));
        assert_eq!(recover(AutoResolve::Unclaimed, &raised), (vec![8], vec![8]));
        assert_eq!(recover(AutoResolve::All, &taken), (vec![7], vec![7]));
        assert_eq!(recover(AutoResolve::None, &raised), (vec![8], vec![]));
        // legacy duplicate rows, one taken: only the unclaimed one closes
        let both = [
            open(3, &t, CPU, Level::Warning, OpenStatus::Raised, 1),
            open(4, &t, CPU, Level::Critical, OpenStatus::InProgress, 1),
        ];
        assert_eq!(
            recover(AutoResolve::Unclaimed, &both),
            (vec![4, 3], vec![3])
        );
        // once recovered and left open, the notice is not repeated
        let mut marked = taken.clone();
        marked[0].recovered = true;
        assert!(eval(&p, &marked, &low).is_empty());
    }

    #[test]
    fn auto_resolve_accepts_the_modes_and_the_old_booleans() {
        let parse = |v: serde_json::Value| serde_json::from_value::<AutoResolve>(v);
        assert_eq!(
            parse(serde_json::json!(true)).unwrap(),
            AutoResolve::Unclaimed
        );
        assert_eq!(parse(serde_json::json!(false)).unwrap(), AutoResolve::None);
        assert_eq!(parse(serde_json::json!("all")).unwrap(), AutoResolve::All);
        assert_eq!(
            parse(serde_json::json!("unclaimed")).unwrap(),
            AutoResolve::Unclaimed
        );
        assert_eq!(parse(serde_json::json!("none")).unwrap(), AutoResolve::None);
        // an environment override arrives as a string
        assert_eq!(
            parse(serde_json::json!("false")).unwrap(),
            AutoResolve::None
        );
        let e = parse(serde_json::json!("maybe")).unwrap_err().to_string();
        assert!(e.contains("unclaimed") && e.contains("maybe"), "{e}");
        assert!(parse(serde_json::json!(1)).is_err());
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
