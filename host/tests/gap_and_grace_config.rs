//! `alarms.pipeline_gap_ratio` and `batch.vm_removal_grace_minutes`: defaults, overrides, and
//! out-of-range values refused at load with the key in the message.

use monit_host::config::Settings;
use std::collections::HashMap;

const MINIMAL: &str = "[monitoring_db]\ndbname = \"monit\"\n";

fn load(extra: &str, env: &[(&str, &str)]) -> anyhow::Result<Settings> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.toml");
    std::fs::write(&p, format!("{MINIMAL}{extra}")).unwrap();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    monit_host::plugin::load_settings_with_env(Some(&p), env)
}

fn error(extra: &str) -> String {
    format!("{:#}", load(extra, &[]).unwrap_err())
}

#[test]
fn defaults_and_overrides() {
    let s = load("", &[]).unwrap();
    assert_eq!(s.alarms.pipeline_gap_ratio, 0.9);
    assert_eq!(s.batch.vm_removal_grace_minutes, 30);
    let s = load(
        "[alarms]\npipeline_gap_ratio = 1.0\n[batch]\nvm_removal_grace_minutes = 0\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        (
            s.alarms.pipeline_gap_ratio,
            s.batch.vm_removal_grace_minutes
        ),
        (1.0, 0)
    );
    let s = load(
        "",
        &[
            ("MONIT_BATCH__ALARMS__PIPELINE_GAP_RATIO", "0.75"),
            ("MONIT_BATCH__BATCH__VM_REMOVAL_GRACE_MINUTES", "10080"),
        ],
    )
    .unwrap();
    assert_eq!(
        (
            s.alarms.pipeline_gap_ratio,
            s.batch.vm_removal_grace_minutes
        ),
        (0.75, 10080)
    );
}

#[test]
fn out_of_range_values_name_their_key() {
    for bad in ["0", "0.0", "-0.5", "1.01", "nan", "inf"] {
        let e = error(&format!("[alarms]\npipeline_gap_ratio = {bad}\n"));
        assert!(
            e.contains("alarms.pipeline_gap_ratio") && e.contains("m.toml"),
            "{bad}: {e}"
        );
    }
    let e = error("[batch]\nvm_removal_grace_minutes = 10081\n");
    assert!(
        e.contains("batch.vm_removal_grace_minutes") && e.contains("10080"),
        "{e}"
    );
    // (an integer too large for TOML itself is item 10 of issue 11, not this key's check)
    for bad in ["-1", "\"soon\""] {
        let e = error(&format!("[batch]\nvm_removal_grace_minutes = {bad}\n"));
        assert!(e.contains("vm_removal_grace_minutes"), "{bad}: {e}");
    }
}
