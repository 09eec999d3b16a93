//! The decision rules as data: every folder under `tests/cases/` holds one `case.json` (a
//! policy row as the Portal DB stores it, the platform's instance count, each instance's usage,
//! the time since the last scaling, and the expected decision). A new behaviour is a new folder.

use chrono::{TimeZone, Utc};
use monit_host::plugin::ScaleAction;
use monit_plugin_autoscale::decide::{self, Inputs, InstanceUsage, Usage, Verdict};
use monit_plugin_autoscale::policy::PolicyRow;
use serde_json::Value;
use std::path::PathBuf;

/// Bucket width the cases assume (`influx.bucket_seconds`).
const BUCKET_SECONDS: u64 = 30;

fn row(p: &Value) -> PolicyRow {
    let i = |k: &str| p.get(k).and_then(Value::as_i64);
    let f = |k: &str| p.get(k).and_then(Value::as_f64);
    let s = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
    PolicyRow {
        no: i("no"),
        guid: s("guid"),
        org: s("org"),
        space: s("space"),
        app: s("app"),
        instance_min_cnt: i("instance_min_cnt"),
        instance_max_cnt: i("instance_max_cnt"),
        cpu_threshold_min_per: f("cpu_threshold_min_per"),
        cpu_threshold_max_per: f("cpu_threshold_max_per"),
        memory_min_size: f("memory_min_size"),
        memory_max_size: f("memory_max_size"),
        check_time_sec: i("check_time_sec"),
        auto_increase_yn: s("auto_increase_yn"),
        auto_decrease_yn: s("auto_decrease_yn"),
    }
}

fn instances(v: &Value) -> Vec<InstanceUsage> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let buckets = i["buckets"].as_u64().unwrap_or(4) as u32;
            let usage = |k: &str| i[k].as_f64().map(|mean| Usage { mean, buckets });
            InstanceUsage {
                index: i["index"].as_i64().unwrap(),
                cpu: usage("cpu"),
                memory: usage("memory"),
            }
        })
        .collect()
}

fn action_code(a: ScaleAction) -> &'static str {
    match a {
        ScaleAction::Out => "out",
        ScaleAction::In => "in",
        ScaleAction::None => "none",
    }
}

fn run(name: &str, case: &Value) -> Result<(), String> {
    let expected = &case["expected"];
    let policy = match row(&case["policy"]).check() {
        Ok(p) => p,
        Err(bad) => {
            let want = expected["invalid"]
                .as_str()
                .ok_or(format!("row refused: {bad}"))?;
            return if bad.to_string().contains(want) {
                Ok(())
            } else {
                Err(format!(
                    "row refused with {bad:?}, expected a problem containing {want:?}"
                ))
            };
        }
    };
    if let Some(want) = expected["invalid"].as_str() {
        return Err(format!("row accepted, expected it refused with {want:?}"));
    }
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let usage = instances(&case["instances"]);
    let cooldown = case["cooldown_seconds"]
        .as_i64()
        .unwrap_or(policy.check_seconds as i64);
    let plan = decide::decide(&Inputs {
        policy: &policy,
        platform_instances: case["platform_instances"].as_i64(),
        usage: &usage,
        min_buckets: decide::required_buckets(policy.check_seconds, BUCKET_SECONDS),
        cooldown: chrono::Duration::seconds(cooldown),
        last_scaled: case["last_scaled_seconds_ago"]
            .as_i64()
            .map(|s| now - chrono::Duration::seconds(s)),
        now,
    });
    let verdict = match plan.verdict {
        Verdict::Act { .. } => "act",
        Verdict::Skip => "skip",
        Verdict::Block => "block",
    };
    let got = (
        action_code(plan.action),
        verdict,
        plan.target(),
        plan.reason.code,
    );
    let want = (
        expected["action"].as_str().unwrap_or("?"),
        expected["verdict"].as_str().unwrap_or("?"),
        expected["to"].as_i64(),
        expected["reason"].as_str().unwrap_or("?"),
    );
    if got != want {
        return Err(format!(
            "{name}: got (action, verdict, to, reason) = {got:?}, expected {want:?}; reason: {}",
            plan.reason
        ));
    }
    Ok(())
}

#[test]
fn cases() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "cases missing under {}", root.display());
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(dir.join("case.json")).unwrap();
        let case: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}/case.json: {e}"));
        assert!(
            case["description"].is_string(),
            "{name}: a case says what it shows"
        );
        if let Err(e) = run(&name, &case) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}
