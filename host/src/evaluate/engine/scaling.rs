//! The engine's rule for alarms about autoscaling itself: an app that needs more instances but
//! sits at `instance_max_cnt` gets a `con` alarm (app_index -1: the app, not one instance),
//! re-notified after the `con`/`cpu` policy's `repeat_time` while it stays blocked, and resolved
//! by the first decision that is no longer blocked. Decisions that saw no load
//! ([`ScaleEvidence::Unknown`]) neither raise nor resolve. The decisions come from the scalers,
//! which run beside the collectors; these changes join the readings' in the tick's one write.

use super::{AlarmKey, AutoResolve, Change, EngineOptions, OpenAlarm, Policy};
use crate::model::{AlarmType, AppInstance, Level, Origin, Resource, Target, Timestamp};
use crate::plugin::{ScaleDecision, ScaleEvidence, ScaleOutcome};

/// app_index of alarms about a whole app.
pub const APP_LEVEL_INDEX: i32 = -1;

/// The alarm changes the tick's scale decisions call for. The repeat interval is the `con`/`cpu`
/// policy's, else the default.
pub fn scale_changes(
    decisions: &[ScaleDecision],
    policies: &[Policy],
    open: &[OpenAlarm],
    now: Timestamp,
    opts: &EngineOptions,
) -> Vec<Change> {
    let repeat = policies
        .iter()
        .find(|p| p.origin == Origin::Con && p.resource == Resource::Cpu)
        .map(|p| p.repeat_minutes)
        .unwrap_or(opts.default_repeat_minutes);
    changes(decisions, open, now, repeat, opts.auto_resolve)
}

fn target(d: &ScaleDecision) -> Target {
    Target {
        origin: Origin::Con,
        origin_id: 0,
        name: d.app_name.as_str().into(),
        ip: "".into(),
        app: Some(AppInstance {
            app_name: d.app_name.as_str().into(),
            app_index: APP_LEVEL_INDEX,
            container_name: "".into(),
            cell_name: "".into(),
        }),
    }
}

fn changes(
    decisions: &[ScaleDecision],
    open: &[OpenAlarm],
    now: Timestamp,
    repeat_minutes: i64,
    auto_resolve: AutoResolve,
) -> Vec<Change> {
    let mut out = Vec::new();
    for d in decisions {
        let t = target(d);
        let memory = d.blocked_on == Some(Resource::Memory);
        let alarm_type = if memory {
            AlarmType::Memory
        } else {
            AlarmType::Cpu
        };
        let open_for_app: Vec<&OpenAlarm> = open
            .iter()
            .filter(|a| {
                a.origin == Origin::Con
                    && a.app_index == Some(APP_LEVEL_INDEX)
                    && a.app_name.as_deref() == Some(d.app_name.as_str())
            })
            .collect();
        if d.outcome == ScaleOutcome::Blocked {
            let key = AlarmKey::of_target(&t, alarm_type);
            let value = if memory {
                d.memory_percent
            } else {
                d.cpu_percent
            };
            match open_for_app.iter().find(|a| AlarmKey::of_alarm(a) == key) {
                None => out.push(Change::Open {
                    target: t,
                    alarm_type,
                    level: Level::Critical,
                    value,
                    threshold: None,
                }),
                Some(a) => out.push(Change::Continue {
                    alarm_id: a.id,
                    target: t,
                    alarm_type,
                    level: a.level,
                    value,
                    threshold: None,
                    renotify: a.repeat_due(now, repeat_minutes),
                }),
            }
            continue;
        }
        if d.evidence == ScaleEvidence::Unknown || open_for_app.is_empty() {
            continue;
        }
        for a in open_for_app {
            out.push(Change::Recover {
                alarm_ids: vec![a.id],
                close_ids: if auto_resolve.closes(a.status) {
                    vec![a.id]
                } else {
                    vec![]
                },
                target: t.clone(),
                alarm_type: a.alarm_type,
                level: a.level,
                value: None,
            });
        }
    }
    out
}
