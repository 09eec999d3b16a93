//! The alarm engine as data: every folder under `tests/engine_cases/` is one case (policies,
//! open alarms, readings, scale decisions, options, the time) and the changes it must produce,
//! in a compact JSON form. A new rule is a new folder (Telegraf's `testcases/`).
//!
//! Targets are written short: `"vm": 3` is PaaS-TA VM 3 (`vm/3`, 10.0.0.3); `"app": "web",
//! "index": 0, "cell": 61` is instance 0 of app `web` on cell 61 (`diego-cell/61`). Times are
//! minutes before `now` (2026-11-25 12:00 UTC).
//!
//! The expected changes are compared as a whole list, in any order; `"ordered": true` also
//! holds the engine to the order it returns them in. A reading's `mean` and `peak` may be
//! `"NaN"`, `"inf"` or `"-inf"`, which JSON numbers cannot say.
//!
//! `case.json` holds one case, or a list of cases when one rule needs the same alarm under
//! settings a single case cannot hold at once (two policies for one origin and resource, or
//! several `auto_resolve` modes). A case with `ticks` instead of `readings`/`decisions`/
//! `expected` runs the engine once per tick (`"minute"`: minutes after `now`), each tick with its
//! own readings and expected changes, and carries the open alarms from tick to tick as the
//! store would leave them ([`engine::apply`]).
//!
//! Two tests here are not cases: a property over a grid of inputs, and the parsing of
//! `auto_resolve`.

use chrono::TimeZone;
use monit_host::evaluate::engine::{
    self, AutoResolve, Change, EngineOptions, OpenAlarm, OpenStatus, Policy,
};
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
    /// compare the changes in the order the engine returns them
    #[serde(default)]
    ordered: bool,
    /// required unless the case has `ticks`
    #[serde(default)]
    expected: Option<Vec<Value>>,
    #[serde(default)]
    ticks: Vec<Tick>,
}

fn ten() -> i64 {
    10
}

/// One run of the engine in a case of several; the open alarms are those the previous ticks left.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tick {
    /// minutes after `now`
    minute: i64,
    #[serde(default)]
    readings: Vec<CaseReading>,
    #[serde(default)]
    decisions: Vec<CaseDecision>,
    expected: Vec<Value>,
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
                    name: app.clone().into(),
                    ip: format!("10.0.1.{cell}").into(),
                    app: Some(AppInstance {
                        app_name: app.clone().into(),
                        app_index: self.index.unwrap_or(0),
                        container_name: format!("{app}-{}", self.index.unwrap_or(0)).into(),
                        cell_name: format!("diego-cell/{cell}").into(),
                    }),
                }
            }
            (None, Some(id)) => Target {
                origin: Origin::Pas,
                origin_id: id,
                name: format!("vm/{id}").into(),
                ip: format!("10.0.0.{id}").into(),
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
    mean: Option<Float>,
    /// default: the mean
    #[serde(default)]
    peak: Option<Float>,
    #[serde(default)]
    no_data: bool,
}

/// A reading's number: a JSON number, or `"NaN"`, `"inf"`, `"-inf"` (a store can answer those).
#[derive(Deserialize, Clone, Copy)]
#[serde(try_from = "NumberOrName")]
struct Float(f64);

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrName {
    Number(f64),
    Name(String),
}

impl TryFrom<NumberOrName> for Float {
    type Error = String;
    fn try_from(v: NumberOrName) -> Result<Self, String> {
        match v {
            NumberOrName::Number(x) => Ok(Float(x)),
            NumberOrName::Name(n) => match n.as_str() {
                "NaN" => Ok(Float(f64::NAN)),
                "inf" => Ok(Float(f64::INFINITY)),
                "-inf" => Ok(Float(f64::NEG_INFINITY)),
                other => Err(format!(
                    "{other:?} is not a number, \"NaN\", \"inf\" or \"-inf\""
                )),
            },
        }
    }
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

fn policies(case: &Case) -> Vec<Policy> {
    case.policies
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
        .collect()
}

fn open_alarms(case: &Case) -> Vec<OpenAlarm> {
    case.open
        .iter()
        .map(|o| {
            let t = if o.who.app.is_some() && o.who.index == Some(-1) {
                Target {
                    origin: Origin::Con,
                    origin_id: 0,
                    name: o.who.app.clone().unwrap_or_default().into(),
                    ip: String::new().into(),
                    app: None,
                }
            } else {
                o.who.target()
            };
            OpenAlarm {
                text_digest: None,
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
        .collect()
}

fn readings(readings: &[CaseReading]) -> Vec<Reading> {
    readings
        .iter()
        .map(|r| Reading {
            target: r.who.target(),
            value: if r.no_data {
                Measured::NoData
            } else {
                let mean = r.mean.expect("a reading has a mean or no_data").0;
                Measured::Usage {
                    resource: r.resource.expect("a usage reading names its resource"),
                    mean,
                    peak: r.peak.map_or(mean, |p| p.0),
                    buckets: 20,
                }
            },
        })
        .collect()
}

fn decisions(decisions: &[CaseDecision]) -> Vec<ScaleDecision> {
    decisions
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
        .collect()
}

/// The changes of one tick at `at`: the engine's, then the auto-scaler's.
fn tick(
    case: &Case,
    open: &[OpenAlarm],
    readings: &[Reading],
    decisions: &[ScaleDecision],
    at: Timestamp,
) -> Vec<Change> {
    let policies = policies(case);
    let opts = EngineOptions {
        auto_resolve: case.auto_resolve,
        default_repeat_minutes: case.default_repeat_minutes,
    };
    let evaluated = case.evaluated.clone().unwrap_or(Origin::ALL.to_vec());
    let mut changes = engine::evaluate(&policies, open, readings, &evaluated, at, &opts);
    changes.extend(engine::scale_changes(decisions, &policies, open, at, &opts));
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

fn compare(got: &[Change], want: &[Value], ordered: bool) -> Result<(), String> {
    let got: Vec<Value> = got.iter().map(compact).collect();
    let (got, want) = if ordered {
        (got, want.to_vec())
    } else {
        (sorted(got), sorted(want.to_vec()))
    };
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

fn run(case: &Case) -> Result<(), String> {
    let open = open_alarms(case);
    if case.ticks.is_empty() {
        let want = case
            .expected
            .as_ref()
            .ok_or("a case without ticks states its expected changes")?;
        let got = tick(
            case,
            &open,
            &readings(&case.readings),
            &decisions(&case.decisions),
            now(),
        );
        return compare(&got, want, case.ordered);
    }
    if case.expected.is_some() || !case.readings.is_empty() || !case.decisions.is_empty() {
        return Err(
            "a case with ticks has its readings, decisions and expected changes in them".into(),
        );
    }
    let mut open = open;
    let mut next_id = open.iter().map(|a| a.id).max().unwrap_or(0);
    for t in &case.ticks {
        let at = now() + chrono::Duration::minutes(t.minute);
        let got = tick(
            case,
            &open,
            &readings(&t.readings),
            &decisions(&t.decisions),
            at,
        );
        compare(&got, &t.expected, case.ordered)
            .map_err(|e| format!("minute {}: {e}", t.minute))?;
        for ch in &got {
            engine::apply(&mut open, ch, at, &mut next_id);
        }
    }
    Ok(())
}

fn run_case(dir: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(dir.join("case.json")).map_err(|e| e.to_string())?;
    let file: Value = serde_json::from_str(&text).map_err(|e| format!("case.json: {e}"))?;
    let cases = match file {
        Value::Array(cases) => cases,
        one => vec![one],
    };
    let mut failed = Vec::new();
    for (i, c) in cases.into_iter().enumerate() {
        let result = serde_json::from_value::<Case>(c)
            .map_err(|e| format!("case.json: {e}"))
            .and_then(|case| run(&case));
        if let Err(e) = result {
            failed.push(format!("case {i}: {e}"));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n"))
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

/// Property over a grid of policies, open alarms and readings: whenever a change states a
/// threshold, the value it states meets it, and the threshold is the one of the level the
/// change gives the alarm. (Messages and mails are rendered from exactly these numbers.)
#[test]
fn no_change_ever_states_a_threshold_its_value_does_not_exceed() {
    let t = Who {
        vm: Some(1),
        ..Who::default()
    }
    .target();
    let thresholds = [(50.0, 60.0), (85.0, 90.0), (95.0, 99.0), (90.0, 90.0)];
    let values = [
        0.0, 49.9, 50.0, 59.99, 60.0, 84.9, 85.0, 89.99, 90.0, 94.0, 96.97, 97.03, 99.0, 100.0,
    ];
    let levels = [Level::Warning, Level::Critical];
    let statuses = [OpenStatus::Raised, OpenStatus::InProgress];
    let opts = EngineOptions {
        auto_resolve: AutoResolve::Unclaimed,
        default_repeat_minutes: 10,
    };
    let mut checked = 0;
    for (warning, critical) in thresholds {
        let p = [Policy {
            id: 1,
            origin: Origin::Pas,
            resource: Resource::Cpu,
            warning,
            critical,
            repeat_minutes: 10,
            measure_seconds: 600,
        }];
        let mut opens: Vec<Vec<OpenAlarm>> = vec![vec![]];
        for level in levels {
            for notified_level in levels {
                for status in statuses {
                    for (sent_ago, recovered) in [(1, false), (30, false), (30, true)] {
                        opens.push(vec![OpenAlarm {
                            text_digest: None,
                            id: 7,
                            origin: t.origin,
                            origin_id: t.origin_id,
                            alarm_type: AlarmType::Cpu,
                            level,
                            status,
                            raised_at: minutes_ago(60),
                            last_sent: Some(minutes_ago(sent_ago)),
                            app_name: None,
                            app_index: None,
                            recovered,
                            notified_level,
                        }]);
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
                    let reading = Reading {
                        target: t.clone(),
                        value: Measured::Usage {
                            resource: Resource::Cpu,
                            mean,
                            peak,
                            buckets: 20,
                        },
                    };
                    for ch in engine::evaluate(&p, o, &[reading], &Origin::ALL, now(), &opts) {
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

/// The cases' own `auto_resolve` goes through this parser too; here are the forms a case does
/// not use: the old booleans, an environment override's string, and the errors.
#[test]
fn auto_resolve_accepts_the_modes_and_the_old_booleans() {
    let parse = |v: Value| serde_json::from_value::<AutoResolve>(v);
    assert_eq!(parse(json!(true)).unwrap(), AutoResolve::Unclaimed);
    assert_eq!(parse(json!(false)).unwrap(), AutoResolve::None);
    assert_eq!(parse(json!("all")).unwrap(), AutoResolve::All);
    assert_eq!(parse(json!("unclaimed")).unwrap(), AutoResolve::Unclaimed);
    assert_eq!(parse(json!("none")).unwrap(), AutoResolve::None);
    // an environment override arrives as a string
    assert_eq!(parse(json!("false")).unwrap(), AutoResolve::None);
    let e = parse(json!("maybe")).unwrap_err().to_string();
    assert!(e.contains("unclaimed") && e.contains("maybe"), "{e}");
    assert!(parse(json!(1)).is_err());
}
