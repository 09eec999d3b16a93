//! Which notifications of a tick are held back, and why: a silence, maintenance of the VM's
//! deployment, or inhibition by a bigger alarm. A held alarm is recorded as usual; its
//! notification is not queued and, for a new alarm, it stays "never notified"
//! (`batch_alarm_state.held_since` set). When the hold ends and the alarm still breaches, the engine notifies it as
//! new; a never-notified alarm that recovers sends nothing.
//!
//! The fourth stage. In: the tick's changes, the open alarms, the silences, the deployments
//! under maintenance and the inventory. Out: [`Holds`], which the store consults when it
//! queues the notifications of each change.

pub mod inhibit;
pub mod maintenance;
pub mod silence;

use crate::evaluate::engine::{AlarmKey, Change, ChangeCounts, OpenAlarm};
use crate::hold::inhibit::Inhibitors;
use crate::hold::silence::{AlarmFacts, Silence};
use crate::model::{AlarmType, Target, Timestamp, Vm};
use std::collections::{HashMap, HashSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldReason {
    Silenced,
    Maintenance,
    Inhibited,
}

impl HoldReason {
    pub fn code(self) -> &'static str {
        match self {
            HoldReason::Silenced => "silenced",
            HoldReason::Maintenance => "maintenance",
            HoldReason::Inhibited => "inhibited",
        }
    }
}

/// What decides a hold this tick.
pub struct HoldInputs<'a> {
    pub open: &'a [OpenAlarm],
    pub vms: &'a [Vm],
    /// `alarms.inhibit`
    pub inhibit: bool,
    /// active silences
    pub silences: &'a [Silence],
    /// VM name -> BOSH deployment
    pub deployments: &'a HashMap<String, String>,
    /// deployments under maintenance
    pub maintenance: &'a HashSet<String>,
    /// deployments whose maintenance ran past `alarms.maintenance_max_hours`: not held, and
    /// each notification of their alarms carries this line saying why it comes
    pub cut_short: &'a HashMap<String, String>,
    pub now: Timestamp,
}

/// The held alarms of one tick, with the reason.
#[derive(Clone, Debug, Default)]
pub struct Holds {
    by_key: HashMap<AlarmKey, HoldReason>,
    /// alarms of a deployment whose maintenance hold was cut short: the line their
    /// notifications carry
    notes: HashMap<AlarmKey, String>,
}

/// Held notifications of a tick, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HeldCounts {
    pub silenced: u32,
    pub maintenance: u32,
    pub inhibited: u32,
}

impl Holds {
    pub fn reason(&self, target: &Target, alarm_type: AlarmType) -> Option<HoldReason> {
        self.by_key
            .get(&AlarmKey::of_target(target, alarm_type))
            .copied()
    }

    /// The line a notification of this alarm carries: its maintenance hold was cut short.
    pub fn note(&self, target: &Target, alarm_type: AlarmType) -> Option<&str> {
        self.notes
            .get(&AlarmKey::of_target(target, alarm_type))
            .map(String::as_str)
    }

    /// Decides the hold of every change. An operator's silence is named first, then
    /// maintenance, then inhibition.
    /// The holds of a tick's changes, with the held notifications counted once (tick summary
    /// and `monit_notifications_held_total`) and taken out of `counts`.
    pub fn for_tick(
        changes: &[Change],
        inp: &HoldInputs<'_>,
        counts: &mut ChangeCounts,
    ) -> (Holds, HeldCounts) {
        let holds = Holds::decide(changes, inp);
        let held = holds.count(changes, inp.open);
        holds.recount(counts, changes, inp.open);
        for (reason, n) in [
            (HoldReason::Silenced, held.silenced),
            (HoldReason::Maintenance, held.maintenance),
            (HoldReason::Inhibited, held.inhibited),
        ] {
            metrics::counter!("monit_notifications_held_total", "reason" => reason.code())
                .increment(n as u64);
        }
        (holds, held)
    }

    pub fn decide(changes: &[Change], inp: &HoldInputs<'_>) -> Holds {
        let inhibitors = inp
            .inhibit
            .then(|| Inhibitors::new(inp.open, changes, inp.vms));
        let mut by_key = HashMap::new();
        let mut notes = HashMap::new();
        for ch in changes {
            let s = ch.subject();
            let vm_name = s
                .target
                .app
                .as_ref()
                .map(|a| &*a.cell_name)
                .unwrap_or(&*s.target.name);
            let deployment = inp.deployments.get(vm_name).map(String::as_str);
            let facts = AlarmFacts {
                target: s.target,
                alarm_type: s.alarm_type,
                deployment,
            };
            let reason = if inp.silences.iter().any(|x| x.silences(&facts, inp.now)) {
                Some(HoldReason::Silenced)
            } else if deployment.is_some_and(|d| inp.maintenance.contains(d)) {
                Some(HoldReason::Maintenance)
            } else if inhibitors
                .as_ref()
                .is_some_and(|i| i.inhibits(s.target, s.alarm_type))
            {
                Some(HoldReason::Inhibited)
            } else {
                None
            };
            if let Some(r) = reason {
                by_key.insert(AlarmKey::of_target(s.target, s.alarm_type), r);
            }
            if let Some(line) = deployment.and_then(|d| inp.cut_short.get(d)) {
                notes.insert(AlarmKey::of_target(s.target, s.alarm_type), line.clone());
            }
        }
        Holds { by_key, notes }
    }

    /// The notifications the holds kept back: changes that would have notified. An alarm held
    /// since it opened is counted once, when it opened, not again every tick it stays held.
    pub fn count(&self, changes: &[Change], open: &[OpenAlarm]) -> HeldCounts {
        let mut c = HeldCounts::default();
        for ch in changes
            .iter()
            .filter(|ch| would_notify(ch, open) && !self.still_held(ch, open))
        {
            let s = ch.subject();
            match self.reason(s.target, s.alarm_type) {
                Some(HoldReason::Silenced) => c.silenced += 1,
                Some(HoldReason::Maintenance) => c.maintenance += 1,
                Some(HoldReason::Inhibited) => c.inhibited += 1,
                None => {}
            }
        }
        c
    }

    /// A never-notified alarm that breaches on and is held again: the engine proposed to
    /// announce it (as new), the hold keeps it silent; for the tick's counts it continues.
    pub fn still_held(&self, ch: &Change, open: &[OpenAlarm]) -> bool {
        let Change::Rebreach { alarm_id, .. } = ch else {
            return false;
        };
        let s = ch.subject();
        self.reason(s.target, s.alarm_type).is_some()
            && open.iter().any(|a| a.id == *alarm_id && a.never_notified())
    }

    /// The tick's change counts as operators read them: an alarm still held counts as
    /// continued, not opened again.
    pub fn recount(&self, counts: &mut ChangeCounts, changes: &[Change], open: &[OpenAlarm]) {
        let n = changes
            .iter()
            .filter(|ch| self.still_held(ch, open))
            .count() as u32;
        counts.opened = counts.opened.saturating_sub(n);
        counts.continued += n;
    }
}

/// Whether a change queues a notification when nothing holds it.
pub fn would_notify(ch: &Change, open: &[OpenAlarm]) -> bool {
    match ch {
        Change::Open { .. } | Change::Rebreach { .. } => true,
        Change::Escalate { notify, .. } | Change::StepDown { notify, .. } => *notify,
        Change::Continue { renotify, .. } => *renotify,
        Change::Recover { alarm_ids, .. } => lead_was_notified(alarm_ids, open),
    }
}

/// A recovery is told only for an alarm that was told: one held from its start
/// (`held_since` set) recovers silently.
pub fn lead_was_notified(alarm_ids: &[i64], open: &[OpenAlarm]) -> bool {
    let lead = alarm_ids.first();
    open.iter()
        .find(|a| Some(&a.id) == lead)
        .is_none_or(|a| a.last_sent.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hold::silence::Matcher;
    use crate::model::{Level, Origin};

    fn t(id: i64, name: &str) -> Target {
        Target {
            origin: Origin::Pas,
            origin_id: id,
            name: name.into(),
            ip: format!("10.0.0.{id}").into(),
            app: None,
        }
    }
    fn open_change(t: &Target, ty: AlarmType) -> Change {
        Change::Open {
            target: t.clone(),
            alarm_type: ty,
            level: Level::Critical,
            value: Some(95.0),
            threshold: Some(90.0),
        }
    }

    #[test]
    fn silence_then_maintenance_then_inhibition() {
        let now = chrono::Utc::now();
        let (a, b, c) = (t(1, "router/0"), t(2, "api/0"), t(3, "db/0"));
        let changes = [
            open_change(&a, AlarmType::Cpu),
            open_change(&b, AlarmType::Cpu),
            open_change(&c, AlarmType::Cpu),
            open_change(&c, AlarmType::Fail),
        ];
        let silence = Silence {
            id: 1,
            matchers: vec!["vm=router/*".parse::<Matcher>().unwrap()],
            author: "ops".into(),
            comment: "known".into(),
            created_at: now,
            ends_at: now + chrono::Duration::hours(1),
        };
        let deployments = HashMap::from([("api/0".to_string(), "cf".to_string())]);
        let maintenance = HashSet::from(["cf".to_string()]);
        let inp = HoldInputs {
            open: &[],
            vms: &[],
            inhibit: true,
            silences: std::slice::from_ref(&silence),
            deployments: &deployments,
            maintenance: &maintenance,
            cut_short: &HashMap::new(),
            now,
        };
        let h = Holds::decide(&changes, &inp);
        assert_eq!(h.reason(&a, AlarmType::Cpu), Some(HoldReason::Silenced));
        assert_eq!(h.reason(&b, AlarmType::Cpu), Some(HoldReason::Maintenance));
        assert_eq!(h.reason(&c, AlarmType::Cpu), Some(HoldReason::Inhibited));
        assert_eq!(h.reason(&c, AlarmType::Fail), None);
        assert_eq!(
            h.count(&changes, &[]),
            HeldCounts {
                silenced: 1,
                maintenance: 1,
                inhibited: 1
            }
        );
        // each gate off: nothing held
        let off = HoldInputs {
            inhibit: false,
            silences: &[],
            maintenance: &HashSet::new(),
            ..inp
        };
        let h = Holds::decide(&changes, &off);
        assert!(changes.iter().all(|ch| {
            let s = ch.subject();
            h.reason(s.target, s.alarm_type).is_none()
        }));
    }

    #[test]
    fn a_cut_short_maintenance_holds_nothing_and_names_why() {
        let now = chrono::Utc::now();
        let (a, b) = (t(1, "api/0"), t(2, "db/0"));
        let changes = [
            open_change(&a, AlarmType::Cpu),
            open_change(&b, AlarmType::Cpu),
        ];
        let deployments = HashMap::from([
            ("api/0".to_string(), "cf".to_string()),
            ("db/0".to_string(), "other".to_string()),
        ]);
        let cut = HashMap::from([("cf".to_string(), "[cut] task 9".to_string())]);
        let inp = HoldInputs {
            open: &[],
            vms: &[],
            inhibit: true,
            silences: &[],
            deployments: &deployments,
            maintenance: &HashSet::from(["other".to_string()]),
            cut_short: &cut,
            now,
        };
        let h = Holds::decide(&changes, &inp);
        assert_eq!(h.reason(&a, AlarmType::Cpu), None);
        assert_eq!(h.note(&a, AlarmType::Cpu), Some("[cut] task 9"));
        assert_eq!(h.reason(&b, AlarmType::Cpu), Some(HoldReason::Maintenance));
        assert_eq!(h.note(&b, AlarmType::Cpu), None);
    }
}
