//! `monit-batch backtest` over seeded history gives the counts computed by hand.

mod common;

use common::{TestEnv, now_s};

#[tokio::test]
async fn backtest_counts_match_the_hand_computed_history() {
    let env = TestEnv::new("backtest", "[plugins.paasta]\nenabled = true\n").await;
    env.exec("UPDATE alarm_policies SET measure_time = 300, warning_threshold = 85, critical_threshold = 90, repeat_time = 10 WHERE origin_type = 'pas'").await;
    env.add_vm("router_z1/0", "10.0.16.11", "vms").await;
    // ten 5-minute blocks of constant CPU, one point every 30 s, ending before now
    let t0 = (now_s() / 300) * 300 - 3600;
    let blocks = [50.0, 87.0, 87.0, 95.0, 95.0, 95.0, 20.0, 20.0, 95.0, 20.0];
    let mut lines = String::new();
    for (k, v) in blocks.iter().enumerate() {
        for j in 1..=10 {
            let t = t0 + 300 * k as i64 + 30 * j;
            lines.push_str(&format!(
                "cf_metrics,ip=10.0.16.11,metricname=cpuStats.0 value={v} {t}\n"
            ));
        }
    }
    env.write_points(&env.cf_db, &lines).await;
    let from = chrono::DateTime::from_timestamp(t0, 0)
        .unwrap()
        .to_rfc3339();
    let to = chrono::DateTime::from_timestamp(t0 + 3000, 0)
        .unwrap()
        .to_rfc3339();
    let before = env.scalar_i64("SELECT COUNT(*) FROM alarms").await;
    let out = env.run(&[
        "backtest", "--from", &from, "--to", &to, "--step", "300", "--json",
    ]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ticks"], 10);
    // By hand, one tick at the end of each block (repeat_time 10 min = two blocks):
    //  50 nothing | 87 open warning (1) | 87 count | 95 escalate (2) | 95 count | 95 repeat (3)
    //  20 recover (4) | 20 nothing | 95 open critical (5) | 20 recover (6)
    assert_eq!(
        report["by_policy"]["pas cpu"],
        serde_json::json!({"alarms_opened": 2, "escalations": 1, "step_downs": 0, "repeats": 1, "recoveries": 2, "notifications": 6})
    );
    assert_eq!(report["by_policy"]["pas memory"]["notifications"], 0);
    // a stricter policy, tried before changing it: warning at 90 never fires on the 87% blocks
    env.exec("UPDATE alarm_policies SET warning_threshold = 90, critical_threshold = 96 WHERE origin_type = 'pas' AND alarm_type = 'cpu'").await;
    let out = env.run(&[
        "backtest", "--from", &from, "--to", &to, "--step", "300", "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 95 open warning (1) | 95 count | 95 repeat (2) | 20 recover (3) | 20 | 95 open (4) | 20 recover (5)
    assert_eq!(
        report["by_policy"]["pas cpu"],
        serde_json::json!({"alarms_opened": 2, "escalations": 0, "step_downs": 0, "repeats": 1, "recoveries": 2, "notifications": 5})
    );
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM alarms").await,
        before,
        "a backtest writes nothing"
    );
    let text = env.run(&["backtest", "--from", &from, "--to", &to, "--step", "300"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("pas cpu"),
        "a table for the terminal"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn backtest_replays_a_step_down_as_the_batch_would() {
    let env = TestEnv::new("backtest_down", "[plugins.paasta]\nenabled = true\n").await;
    env.exec("UPDATE alarm_policies SET measure_time = 300, warning_threshold = 85, critical_threshold = 90, repeat_time = 10 WHERE origin_type = 'pas'").await;
    env.add_vm("router_z1/0", "10.0.16.11", "vms").await;
    let t0 = (now_s() / 300) * 300 - 3600;
    let blocks = [95.0, 95.0, 87.0, 87.0, 87.0, 20.0];
    let mut lines = String::new();
    for (k, v) in blocks.iter().enumerate() {
        for j in 1..=10 {
            let t = t0 + 300 * k as i64 + 30 * j;
            lines.push_str(&format!(
                "cf_metrics,ip=10.0.16.11,metricname=cpuStats.0 value={v} {t}\n"
            ));
        }
    }
    env.write_points(&env.cf_db, &lines).await;
    let at = |s: i64| {
        chrono::DateTime::from_timestamp(t0 + s, 0)
            .unwrap()
            .to_rfc3339()
    };
    let out = env.run(&[
        "backtest",
        "--from",
        &at(0),
        "--to",
        &at(1800),
        "--step",
        "300",
        "--json",
    ]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 95 open critical (1) | 95 count | 87 step down, repeat due (2) | 87 count | 87 repeat (3)
    // | 20 recover (4)
    assert_eq!(
        report["by_policy"]["pas cpu"],
        serde_json::json!({"alarms_opened": 1, "escalations": 0, "step_downs": 1, "repeats": 1, "recoveries": 1, "notifications": 4})
    );
    env.cleanup().await;
}
