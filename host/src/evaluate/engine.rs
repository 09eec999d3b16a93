//! The alarm engine: a pure function of (policies, open alarms, readings, now) that decides what
//! to open, escalate, count, re-notify and resolve. No I/O here; the store applies the result.

pub use crate::config::AutoResolve;
use crate::model::{
    ALARM_APP_NAME_CHARS, AlarmType, Level, Measured, Origin, Reading, Resource, Target, Timestamp,
    first_chars,
};
use rustc_hash::FxHashMap;

mod quiet;
mod scaling;
pub use quiet::{QuietReadings, Skipped};
pub use scaling::{APP_LEVEL_INDEX, scale_changes};

// The policy row is shared by every stage (the plugin contract sizes windows from it).
pub use crate::model::Policy;

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
    /// MD5 of the row's title, a newline and its message as stored (None: not read, as for
    /// an alarm opened in memory): the store rewrites a counted alarm's text only when the
    /// rendered text differs.
    pub text_digest: Option<[u8; 16]>,
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
        KeyRef::of_target(t, alarm_type).to_owned()
    }

    pub fn of_alarm(a: &OpenAlarm) -> Self {
        KeyRef::of_alarm(a).to_owned()
    }
}

/// An [`AlarmKey`] borrowing its app name: the maps over a whole tick's readings (hundreds of
/// thousands at a large fleet) allocate nothing per reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyRef<'a> {
    pub origin: Origin,
    pub origin_id: i64,
    pub alarm_type: AlarmType,
    pub app_name: &'a str,
    pub app_index: i32,
}

impl<'a> KeyRef<'a> {
    pub fn of_target(t: &'a Target, alarm_type: AlarmType) -> Self {
        Self::of_parts(t.origin, t.origin_id, t.instance(), alarm_type)
    }

    /// [`KeyRef::of_target`] of a target given by its parts: `app`, an app instance's name and
    /// index, else `origin_id` names it.
    pub fn of_parts(
        origin: Origin,
        origin_id: i64,
        app: Option<(&'a str, i32)>,
        alarm_type: AlarmType,
    ) -> Self {
        match app {
            Some((name, index)) => KeyRef {
                origin,
                origin_id: 0,
                alarm_type,
                app_name: first_chars(name, ALARM_APP_NAME_CHARS),
                app_index: index,
            },
            None => KeyRef {
                origin,
                origin_id,
                alarm_type,
                app_name: "",
                app_index: 0,
            },
        }
    }

    pub fn of_alarm(a: &'a OpenAlarm) -> Self {
        let app_name = a.app_name.as_deref().unwrap_or_default();
        KeyRef {
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

    pub fn to_owned(self) -> AlarmKey {
        AlarmKey {
            origin: self.origin,
            origin_id: self.origin_id,
            alarm_type: self.alarm_type,
            app_name: self.app_name.to_string(),
            app_index: self.app_index,
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
                text_digest: None,
                id: *next_id,
                origin: target.origin,
                origin_id: target.origin_id,
                alarm_type: *alarm_type,
                level: *level,
                status: OpenStatus::Raised,
                raised_at: now,
                last_sent: Some(now),
                app_name: target.app.as_ref().map(|a| a.app_name.to_string()),
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
    let policy: FxHashMap<(Origin, Resource), &Policy> = policies
        .iter()
        .map(|p| ((p.origin, p.resource), p))
        .collect();
    // Several open rows can share a key in a database the original wrote (it kept a warning and
    // a critical row side by side): the most severe, newest one leads, all close together.
    let mut groups: FxHashMap<KeyRef<'_>, Vec<&OpenAlarm>> = FxHashMap::default();
    for a in open.iter().filter(|a| evaluated.contains(&a.origin)) {
        groups.entry(KeyRef::of_alarm(a)).or_default().push(a);
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
    // What the tick saw of each target, keyed as its `fail` alarm: sized up front, a fleet's
    // readings would otherwise grow it through every doubling (a target has a reading per
    // resource).
    let mut seen: FxHashMap<KeyRef<'_>, Seen<'_>> =
        FxHashMap::with_capacity_and_hasher(readings.len() / 3, Default::default());
    // A target's readings come one after the other: its entry is looked up once per run of
    // them, not per reading (at a large fleet, each lookup is a miss in a table of many MB).
    let mut run: Option<(&Target, &mut Seen<'_>)> = None;
    for r in readings
        .iter()
        .filter(|r| evaluated.contains(&r.target.origin))
    {
        let ty = match &r.value {
            Measured::Usage { resource, .. } => AlarmType::from(*resource),
            Measured::NoData => AlarmType::Fail,
        };
        if !matches!(&run, Some((t, _)) if *t == &r.target) {
            let entry = seen
                .entry(KeyRef::of_target(&r.target, AlarmType::Fail))
                .or_default();
            run = Some((&r.target, entry));
        }
        let Some((_, target_seen)) = run.as_mut() else {
            continue;
        };
        // One decision per alarm key and tick: two readings with one key (the same app
        // instance reported twice) must not open two alarms. The first reading of a key decides.
        let bit = 1u8 << (ty as u8);
        if target_seen.decided & bit != 0 {
            continue;
        }
        target_seen.decided |= bit;
        let key = KeyRef::of_target(&r.target, ty);
        match &r.value {
            Measured::Usage {
                resource,
                mean,
                peak,
                ..
            } => {
                target_seen.with_data.get_or_insert(&r.target);
                let Some(p) = policy.get(&(r.target.origin, *resource)) else {
                    continue;
                };
                if !mean.is_finite() || !peak.is_finite() {
                    continue;
                }
                let alarm_type = ty;
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
                target_seen.with_data = None;
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
    for (key, g) in &groups {
        if key.alarm_type == AlarmType::Fail
            && let Some(target) = seen.get(key).and_then(|s| s.with_data)
            && let Some(a) = g.first()
            && !a.recovered
        {
            changes.push(recover(g, target, AlarmType::Fail, None, opts));
        }
    }
    changes
}

/// What one tick saw of a target (see [`evaluate`]).
#[derive(Default)]
struct Seen<'a> {
    /// the alarm types decided already, a bit each
    decided: u8,
    /// the target reported data: its first reading's target (a `fail` alarm's recovery names it)
    with_data: Option<&'a Target>,
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
