//! The alarm engine as data: every folder under `tests/engine_cases/` is one case (policies,
//! open alarms, readings, scale decisions, options, the time) and the changes it must produce,
//! in a compact JSON form. A new rule is a new folder (Telegraf's `testcases/`).
//!
//! Targets are written short: `"vm": 3` is PaaS-TA VM 3 (`vm/3`, 10.0.0.3); `"app": "web",
//! "index": 0, "cell": 61` is instance 0 of app `web` on cell 61 (`diego-cell/61`). Times are
//! minutes before `now` (2026-11-25 12:00 UTC).

use chrono::TimeZone;
use monit_host::engine::{self, AutoResolve, Change, EngineOptions, OpenAlarm, OpenStatus, Policy};
use monit_host::model::{
    AlarmType, AppInstance, Level, Measured, Origin, Reading, Resource, Target, Timestamp,
};
use monit_host::plugin::{ScaleAction, ScaleDecision, ScaleEvidence, ScaleOutcome};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn now() -> Timestamp {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    auto_resolve: AutoResolve,
    #[serde(default = "ten")]
    default_repeat_minutes: i64,
    /// origins whose collector answered this tick (default: all)
    #[serde(default)]
    evaluated: Option<Vec<Origin>>,
    policies: Vec<CasePolicy>,
    #[serde(default)]
    open: Vec<CaseOpen>,
    #[serde(default)]
    readings: Vec<CaseReading>,
    #[serde(default)]
    decisions: Vec<CaseDecision>,
    expected: Vec<Value>,
}

fn ten() -> i64 {
    10
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasePolicy {
    origin: Origin,
    resource: Resource,
    warning: f64,
    critical: f64,
    #[serde(default = "ten")]
    repeat_minutes: i64,
    #[serde(default = "six_hundred")]
    measure_seconds: u64,
}

fn six_hundred() -> u64 {
    600
}

/// Who: a VM (`vm`), or an app instance (`app`, `index`, `cell`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Who {
    #[serde(default)]
    vm: Option<i64>,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    index: Option<i32>,
    #[serde(default)]
    cell: Option<i64>,
}

impl Who {
    fn target(&self) -> Target {
        match (&self.app, self.vm) {
            (Some(app), _) => {
                let cell = self.cell.unwrap_or(0);
                Target {
                    origin: Origin::Con,
                    origin_id: cell,
                    name: app.clone(),
                    ip: format!("10.0.1.{cell}"),
                    app: Some(AppInstance {
                        app_name: app.clone(),
                        app_index: self.index.unwrap_or(0),
                        container_name: format!("{app}-{}", self.index.unwrap_or(0)),
                        cell_name: format!("diego-cell/{cell}"),
                    }),
                }
            }
            (None, Some(id)) => Target {
                origin: Origin::Pas,
                origin_id: id,
                name: format!("vm/{id}"),
                ip: format!("10.0.0.{id}"),
                app: None,
            },
            (None, None) => panic!("a case names a target by vm or app"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseOpen {
    id: i64,
    #[serde(flatten)]
    who: Who,
    #[serde(rename = "type")]
    alarm_type: AlarmType,
    level: Level,
    /// "raised" (resolve_status 1) or "in_progress" (2, an operator's)
    #[serde(default)]
    in_progress: bool,
    #[serde(default = "sixty")]
    raised_min_ago: i64,
    sent_min_ago: Option<i64>,
    #[serde(default)]
    recovered: bool,
    /// the level the last notification stated (default: `level`)
    #[serde(default)]
    notified_level: Option<Level>,
}

fn sixty() -> i64 {
    60
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseReading {
    #[serde(flatten)]
    who: Who,
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default)]
    mean: Option<f64>,
    /// default: the mean
    #[serde(default)]
    peak: Option<f64>,
    #[serde(default)]
    no_data: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseDecision {
    app: String,
    outcome: ScaleOutcome,
    evidence: ScaleEvidence,
    #[serde(default)]
    blocked_on: Option<Resource>,
    #[serde(default)]
    cpu: Option<f64>,
    #[serde(default)]
    memory: Option<f64>,
}

fn minutes_ago(m: i64) -> Timestamp {
    now() - chrono::Duration::minutes(m)
}

fn build(case: &Case) -> Vec<Change> {
    let policies: Vec<Policy> = case
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| Policy {
            id: i as i64 + 1,
            origin: p.origin,
            resource: p.resource,
            warning: p.warning,
            critical: p.critical,
            repeat_minutes: p.repeat_minutes,
            measure_seconds: p.measure_seconds,
        })
        .collect();
    let open: Vec<OpenAlarm> = case
        .open
        .iter()
        .map(|o| {
            let t = if o.who.app.is_some() && o.who.index == Some(-1) {
                Target {
                    origin: Origin::Con,
                    origin_id: 0,
                    name: o.who.app.clone().unwrap_or_default(),
                    ip: String::new(),
                    app: None,
                }
            } else {
                o.who.target()
            };
            OpenAlarm {
                id: o.id,
                origin: t.origin,
                origin_id: t.origin_id,
                alarm_type: o.alarm_type,
                level: o.level,
                status: if o.in_progress {
                    OpenStatus::InProgress
                } else {
                    OpenStatus::Raised
                },
                raised_at: minutes_ago(o.raised_min_ago),
                last_sent: o.sent_min_ago.map(minutes_ago),
                app_name: o.who.app.clone(),
                app_index: o.who.app.as_ref().map(|_| o.who.index.unwrap_or(0)),
                recovered: o.recovered,
                notified_level: o.notified_level.unwrap_or(o.level),
            }
        })
        .collect();
    let readings: Vec<Reading> = case
        .readings
        .iter()
        .map(|r| Reading {
            target: r.who.target(),
            value: if r.no_data {
                Measured::NoData
            } else {
                let mean = r.mean.expect("a reading has a mean or no_data");
                Measured::Usage {
                    resource: r.resource.expect("a usage reading names its resource"),
                    mean,
                    peak: r.peak.unwrap_or(mean),
                    buckets: 20,
                }
            },
        })
        .collect();
    let decisions: Vec<ScaleDecision> = case
        .decisions
        .iter()
        .map(|d| ScaleDecision {
            app_guid: format!("guid-{}", d.app),
            app_name: d.app.clone(),
            action: ScaleAction::Out,
            outcome: d.outcome,
            instances_before: Some(4),
            instances_after: None,
            cpu_percent: d.cpu,
            memory_percent: d.memory,
            reason: String::new(),
            evidence: d.evidence,
            blocked_on: d.blocked_on,
        })
        .collect();
    let opts = EngineOptions {
        auto_resolve: case.auto_resolve,
        default_repeat_minutes: case.default_repeat_minutes,
    };
    let evaluated = case.evaluated.clone().unwrap_or(Origin::ALL.to_vec());
    let mut changes = engine::evaluate(&policies, &open, &readings, &evaluated, now(), &opts);
    changes.extend(engine::scale_changes(
        &decisions,
        &policies,
        &open,
        now(),
        &opts,
    ));
    changes
}

/// A change in the cases' compact form: its kind, who (the target's display name, with
/// `[index]` for an app instance), the alarm and what the store would need.
fn compact(c: &Change) -> Value {
    let s = c.subject();
    let mut v = json!({ "who": s.target.label(), "type": s.alarm_type, "level": s.level });
    let o = v.as_object_mut().expect("an object");
    let mut put = |k: &str, x: Value| {
        o.insert(k.to_string(), x);
    };
    match c {
        Change::Open {
            value, threshold, ..
        } => {
            put("change", json!("open"));
            put("value", json!(value));
            put("threshold", json!(threshold));
        }
        Change::Escalate {
            alarm_id,
            from,
            value,
            threshold,
            notify,
            ..
        }
        | Change::StepDown {
            alarm_id,
            from,
            value,
            threshold,
            notify,
            ..
        } => {
            let kind = if matches!(c, Change::Escalate { .. }) {
                "escalate"
            } else {
                "step_down"
            };
            put("change", json!(kind));
            put("alarm_id", json!(alarm_id));
            put("from", json!(from));
            put("value", json!(value));
            put("threshold", json!(threshold));
            put("notify", json!(notify));
        }
        Change::Continue {
            alarm_id,
            value,
            threshold,
            renotify,
            ..
        } => {
            put("change", json!("continue"));
            put("alarm_id", json!(alarm_id));
            put("value", json!(value));
            put("threshold", json!(threshold));
            put("renotify", json!(renotify));
        }
        Change::Rebreach {
            alarm_id,
            value,
            threshold,
            ..
        } => {
            put("change", json!("rebreach"));
            put("alarm_id", json!(alarm_id));
            put("value", json!(value));
            put("threshold", json!(threshold));
        }
        Change::Recover {
            alarm_ids,
            close_ids,
            value,
            ..
        } => {
            put("change", json!("recover"));
            put("alarm_ids", json!(alarm_ids));
            put("close_ids", json!(close_ids));
            put("value", json!(value));
        }
    }
    v
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|x| x.to_string());
    v
}

fn run_case(dir: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(dir.join("case.json")).map_err(|e| e.to_string())?;
    let case: Case = serde_json::from_str(&text).map_err(|e| format!("case.json: {e}"))?;
    let got = sorted(build(&case).iter().map(compact).collect());
    let want = sorted(case.expected.clone());
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "got  {}\nwant {}",
            serde_json::to_string_pretty(&got).unwrap_or_default(),
            serde_json::to_string_pretty(&want).unwrap_or_default()
        ))
    }
}

#[test]
fn engine_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/engine_cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 8, "cases under {}", root.display());
    let failed: Vec<String> = dirs
        .iter()
        .filter_map(|d| run_case(d).err().map(|e| format!("{}:\n{e}", d.display())))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
