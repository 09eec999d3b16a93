//! "No data" for (nearly) every VM is a gap in the metrics pipeline, not a platform down: end to
//! end through the binary (`run --once`), real InfluxDB, MariaDB and SMTP sink.

mod common;

use common::{TestEnv, mails_with, now_s, unique};

const IPS: [&str; 5] = [
    "10.0.20.1",
    "10.0.20.2",
    "10.0.20.3",
    "10.0.20.4",
    "10.0.20.5",
];

/// paasta collector and the email notifier to the sink, mails to `tag@example.com` only.
async fn env(name: &str, tag: &str) -> TestEnv {
    let env = TestEnv::new(
        name,
        "[plugins.paasta]\nenabled = true\n[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\n\
         smtp_port = 2525\nsecurity = \"plain\"\nsender = \"PaaS-TA Monitor <monit@example.com>\"\n",
    )
    .await;
    env.exec(&format!(
        "DELETE FROM alarm_targets; \
         INSERT INTO alarm_targets (origin_type, mail_address, mail_send_yn) VALUES ('pas', '{tag}@example.com', 'Y'); \
         UPDATE alarm_policies SET measure_time = 300, warning_threshold = 85, critical_threshold = 90, repeat_time = 10 \
         WHERE origin_type = 'pas';"
    ))
    .await;
    for (i, ip) in IPS.iter().enumerate() {
        env.add_vm(&format!("vm_z1/{i}"), ip, "vms").await;
    }
    env
}

/// cf_metrics of one VM at 30% CPU, memory and disk, every 10 s over `(from, to]`.
fn points(ip: &str, from: i64, to: i64) -> String {
    let mut out = String::new();
    let mut t = from + 10;
    while t <= to {
        for metric in ["cpuStats.0", "memoryStats.UsedPercent", "diskStats.Usage"] {
            out.push_str(&format!(
                "cf_metrics,ip={ip},metricname={metric} value=30 {t}\n"
            ));
        }
        t += 10;
    }
    out
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Alarm {
    id: i64,
    origin_id: i64,
    alarm_type: String,
    resolve_status: String,
    alarm_cnt: i64,
    alarm_title: String,
}

async fn alarms(env: &TestEnv) -> Vec<Alarm> {
    sqlx::query_as(
        "SELECT CAST(id AS SIGNED) id, CAST(origin_id AS SIGNED) origin_id, alarm_type, resolve_status, \
         CAST(alarm_cnt AS SIGNED) alarm_cnt, alarm_title FROM alarms ORDER BY id",
    )
    .fetch_all(&env.db)
    .await
    .unwrap()
}

fn run_json(env: &TestEnv) -> serde_json::Value {
    let out = env.run(&["run", "--once", "--json"]);
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn influxdb_back_after_a_long_outage_raises_one_pipeline_alarm_not_one_per_vm() {
    let tag = unique("gap");
    let env = env("gap", &tag).await;
    let now = now_s();
    // Data up to 20 minutes ago, then the outage: the 300 s window holds nothing for anyone.
    for ip in IPS {
        env.write_points(&env.cf_db, &points(ip, now - 1800, now - 1200))
            .await;
    }

    let sum = run_json(&env);
    let a = alarms(&env).await;
    assert_eq!(
        a.len(),
        1,
        "one pipeline alarm, no per-VM fail alarm: {a:?}"
    );
    assert_eq!(
        (
            a[0].origin_id,
            a[0].alarm_type.as_str(),
            a[0].resolve_status.as_str()
        ),
        (0, "fail", "1")
    );
    assert!(
        a[0].alarm_title.contains("pas metrics pipeline"),
        "{}",
        a[0].alarm_title
    );
    assert_eq!(
        sum["metric_gaps"],
        serde_json::json!([{"origin": "pas", "targets": 5, "silent": 5, "absent_dropped": 0, "verdict": "gap"}]),
        "{sum}"
    );
    assert_eq!(sum["alarms"]["opened"], 1, "{sum}");
    assert_eq!(mails_with("plain", &tag).len(), 1, "one mail, not five");

    // Still out, within repeat_time: the same alarm counted, no mail, still no VM alarm.
    let sum = run_json(&env);
    let a = alarms(&env).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!((a[0].resolve_status.as_str(), a[0].alarm_cnt), ("1", 2));
    assert_eq!(sum["alarms"]["continued"], 1, "{sum}");
    assert_eq!(mails_with("plain", &tag).len(), 1);

    // Data back for every VM: the pipeline alarm recovers and closes, one recovery mail, and no
    // VM alarm was ever opened.
    for ip in IPS {
        env.write_points(&env.cf_db, &points(ip, now_s() - 300, now_s()))
            .await;
    }
    let sum = run_json(&env);
    let a = alarms(&env).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].resolve_status, "3");
    assert_eq!(sum["metric_gaps"], serde_json::json!([]), "{sum}");
    assert_eq!(sum["alarms"]["recovered"], 1, "{sum}");
    assert_eq!(
        env.scalar_i64(&format!(
            "SELECT COUNT(*) FROM alarm_actions WHERE alarm_id = {}",
            a[0].id
        ))
        .await,
        1
    );
    let mails = mails_with("plain", &tag);
    assert_eq!(mails.len(), 2, "the alarm and its recovery");
    assert!(mails.iter().any(|m| {
        mail_parser::MessageParser::default()
            .parse(m.as_bytes())
            .and_then(|p| p.subject().map(|s| s.starts_with("[회복] ")))
            .unwrap_or(false)
    }));
    env.cleanup().await;
}

#[tokio::test]
async fn one_silent_vm_of_five_is_down_and_keeps_its_alarm_through_a_gap() {
    let tag = unique("gap1");
    let env = env("gap1", &tag).await;
    let silent_id = env
        .scalar_i64("SELECT CAST(id AS SIGNED) FROM vms WHERE ip = '10.0.20.5'")
        .await;
    let now = now_s();
    for ip in &IPS[..4] {
        env.write_points(&env.cf_db, &points(ip, now - 300, now))
            .await;
    }

    // 1 of 5 silent while the others report: that VM is down, as before.
    let sum = run_json(&env);
    let a = alarms(&env).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (
            a[0].origin_id,
            a[0].alarm_type.as_str(),
            a[0].resolve_status.as_str()
        ),
        (silent_id, "fail", "1")
    );
    assert!(a[0].alarm_title.contains("vm_z1/4"), "{}", a[0].alarm_title);
    assert_eq!(sum["metric_gaps"], serde_json::json!([]), "{sum}");
    assert_eq!(mails_with("plain", &tag).len(), 1);

    // Then everyone goes silent (a writer stops; here: the points are dropped): a gap. The
    // VM's own fail alarm is left exactly as it was (not counted, not recovered) and one
    // pipeline alarm opens.
    drop_points(&env).await;
    let sum = run_json(&env);
    let a = alarms(&env).await;
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(
        (a[0].origin_id, a[0].resolve_status.as_str(), a[0].alarm_cnt),
        (silent_id, "1", 1),
        "the VM's alarm is untouched during the gap"
    );
    assert_eq!(
        (a[1].origin_id, a[1].resolve_status.as_str()),
        (0, "1"),
        "the pipeline alarm: {a:?}"
    );
    assert_eq!(sum["metric_gaps"][0]["silent"], 5, "{sum}");
    assert_eq!(mails_with("plain", &tag).len(), 2);

    // Everyone reports again: both recover.
    for ip in IPS {
        env.write_points(&env.cf_db, &points(ip, now_s() - 300, now_s()))
            .await;
    }
    run_json(&env);
    let a = alarms(&env).await;
    assert_eq!(
        a.iter()
            .map(|a| (a.origin_id, a.resolve_status.as_str()))
            .collect::<Vec<_>>(),
        vec![(silent_id, "3"), (0, "3")]
    );
    env.cleanup().await;
}

/// Every cf_metrics point of the test's database gone.
async fn drop_points(env: &TestEnv) {
    let r = reqwest::Client::new()
        .post(format!("{}/query", env.influx))
        .query(&[
            ("db", env.cf_db.as_str()),
            ("q", "DROP SERIES FROM cf_metrics"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}
