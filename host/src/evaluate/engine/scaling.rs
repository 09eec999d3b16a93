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
        name: d.app_name.clone(),
        ip: String::new(),
        app: Some(AppInstance {
            app_name: d.app_name.clone(),
            app_index: APP_LEVEL_INDEX,
            container_name: String::new(),
            cell_name: String::new(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::engine::OpenStatus;
    use crate::plugin::ScaleAction;
    use chrono::TimeZone;

    fn now() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .unwrap()
    }
    fn decision(outcome: ScaleOutcome, reason: &str) -> ScaleDecision {
        let code = reason.split(':').next().unwrap_or_default();
        ScaleDecision {
            evidence: if code == "partial_data" {
                ScaleEvidence::Unknown
            } else {
                ScaleEvidence::Load
            },
            blocked_on: (outcome == ScaleOutcome::Blocked).then(|| {
                if reason.contains("memory_high") {
                    Resource::Memory
                } else {
                    Resource::Cpu
                }
            }),
            app_guid: "g".into(),
            app_name: "web".into(),
            action: ScaleAction::Out,
            outcome,
            instances_before: Some(4),
            instances_after: None,
            cpu_percent: Some(95.0),
            memory_percent: Some(40.0),
            reason: reason.into(),
        }
    }
    fn open(id: i64, ty: AlarmType, sent_min_ago: i64) -> OpenAlarm {
        OpenAlarm {
            id,
            origin: Origin::Con,
            origin_id: 0,
            alarm_type: ty,
            level: Level::Critical,
            status: OpenStatus::Raised,
            raised_at: now(),
            last_sent: Some(now() - chrono::Duration::minutes(sent_min_ago)),
            app_name: Some("web".into()),
            app_index: Some(APP_LEVEL_INDEX),
            recovered: false,
            notified_level: Level::Critical,
        }
    }

    #[test]
    fn blocked_opens_then_counts_then_repeats() {
        let d = [decision(
            ScaleOutcome::Blocked,
            "at_max: cpu_high: cpu 95%; already at instance_max_cnt 4",
        )];
        let c = changes(&d, &[], now(), 10, AutoResolve::Unclaimed);
        assert!(
            matches!(&c[..], [Change::Open { alarm_type: AlarmType::Cpu, level: Level::Critical, value: Some(v), .. }] if *v == 95.0),
            "{c:?}"
        );
        let c = changes(
            &d,
            &[open(3, AlarmType::Cpu, 5)],
            now(),
            10,
            AutoResolve::Unclaimed,
        );
        assert!(
            matches!(
                &c[..],
                [Change::Continue {
                    alarm_id: 3,
                    renotify: false,
                    ..
                }]
            ),
            "{c:?}"
        );
        let c = changes(
            &d,
            &[open(3, AlarmType::Cpu, 10)],
            now(),
            10,
            AutoResolve::Unclaimed,
        );
        assert!(
            matches!(
                &c[..],
                [Change::Continue {
                    alarm_id: 3,
                    renotify: true,
                    ..
                }]
            ),
            "{c:?}"
        );
        let mem = [decision(
            ScaleOutcome::Blocked,
            "at_max: memory_high: mem 97%",
        )];
        let c = changes(&mem, &[], now(), 10, AutoResolve::Unclaimed);
        assert!(
            matches!(
                &c[..],
                [Change::Open {
                    alarm_type: AlarmType::Memory,
                    ..
                }]
            ),
            "{c:?}"
        );
    }

    #[test]
    fn a_decision_with_evidence_resolves_and_one_without_leaves_it() {
        let o = [open(3, AlarmType::Cpu, 5)];
        let c = changes(
            &[decision(ScaleOutcome::Skipped, "within_range: cpu 50%")],
            &o,
            now(),
            10,
            AutoResolve::Unclaimed,
        );
        assert!(
            matches!(&c[..], [Change::Recover { alarm_ids, close_ids, .. }] if alarm_ids == &vec![3] && close_ids == &vec![3]),
            "{c:?}"
        );
        let c = changes(
            &[decision(
                ScaleOutcome::Skipped,
                "partial_data: 1 of 4 instances",
            )],
            &o,
            now(),
            10,
            AutoResolve::Unclaimed,
        );
        assert!(c.is_empty(), "{c:?}");
        let c = changes(
            &[decision(ScaleOutcome::Skipped, "within_range: cpu 50%")],
            &[],
            now(),
            10,
            AutoResolve::Unclaimed,
        );
        assert!(c.is_empty(), "nothing open, nothing to resolve: {c:?}");
    }
}
