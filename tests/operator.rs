//! What an operator does with the binary: switch from the original's config.ini, dry runs,
//! reading the ledger, and logs that never carry a secret.

mod common;

use common::{TestEnv, influx_url, mails_with, mysql_url, now_s, unique};

fn hot_vm(ip: &str) -> String {
    TestEnv::cf_series(ip, "cpuStats.0", 300, |_| 97.0)
}

#[tokio::test]
async fn legacy_config_ini_with_mail_alarm_send_false_records_but_does_not_send() {
    let env = TestEnv::new("legacy", "").await;
    let tag = unique("legacy");
    env.exec(&format!(
        "DELETE FROM alarm_targets; INSERT INTO alarm_targets (origin_type, mail_address) VALUES ('pas', '{tag}@example.com'); \
         UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas';"
    ))
    .await;
    env.add_vm("router_z1/0", "10.0.16.11", "vms").await;
    env.write_points(&env.cf_db, &hot_vm("10.0.16.11")).await;
    let url = url::Url::parse(&mysql_url()).unwrap();
    let ini = env.dir.path().join("config.ini");
    // the original's keys, comments after values as its 2.0 sample had them
    std::fs::write(
        &ini,
        format!(
            "server.port=9999\ninflux.url={}\ninflux.paasta.db_name={}\ninflux.bosh.db_name={}\ninflux.container.db_name={}\n\
             influx.defaultTimeRange=130s\nmonitoring.db.type=mysql\nmonitoring.db.dbname={}\nmonitoring.db.username={}\n\
             monitoring.db.password={}\nmonitoring.db.host={}\nmonitoring.db.port={}\nmail.smtp.host=127.0.0.1\nmail.smtp.port=2525\n\
             mail.sender=monit@example.com\nmail.tls.send=false\nmail.alarm.send=false ⇒ true to send alarm mail\n\
             batch.interval.second=60 # seconds\ngmt.time.hour.gap=0\n",
            influx_url(),
            env.cf_db,
            env.bosh_db,
            env.container_db,
            env.name,
            url.username(),
            url.password().unwrap_or(""),
            url.host_str().unwrap(),
            url.port().unwrap_or(3306)
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(&ini)
        .args(["plugins"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("email") && l.contains("disabled")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("paasta") && l.contains("enabled")),
        "{listing}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(&ini)
        .args(["run", "--once"])
        .output()
        .unwrap();
    // no bosh.api.url, no portal: only the collectors run, as the original would
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("readings  paasta: 1"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.scalar_i64(
            "SELECT COUNT(*) FROM alarms WHERE origin_type = 'pas' AND alarm_type = 'cpu'"
        )
        .await,
        1
    );
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM batch_notifications")
            .await,
        0,
        "nothing queued"
    );
    assert!(mails_with("plain", &tag).is_empty(), "nothing sent");
    env.cleanup().await;
}

async fn table_counts(env: &TestEnv) -> Vec<i64> {
    let mut out = Vec::new();
    for t in [
        "alarms",
        "alarm_actions",
        "batch_notifications",
        "batch_runs",
        "vms",
        "zones",
        "batch_scaling_history",
        "batch_alarm_state",
    ] {
        out.push(env.scalar_i64(&format!("SELECT COUNT(*) FROM {t}")).await);
    }
    out
}

#[tokio::test]
async fn dry_run_prints_what_it_would_do_and_writes_and_sends_nothing() {
    let email = "[plugins.paasta]\nenabled = true\n[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\nsmtp_port = 2525\nsecurity = \"plain\"\nsender = \"monit@example.com\"\n";
    let env = TestEnv::new("dry", email).await;
    let tag = unique("dry");
    env.exec(&format!(
        "DELETE FROM alarm_targets; INSERT INTO alarm_targets (origin_type, mail_address) VALUES ('pas', '{tag}@example.com'); \
         UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas';"
    ))
    .await;
    env.add_vm("router_z1/0", "10.0.16.11", "vms").await;
    env.add_vm("api_z1/0", "10.0.16.12", "vms").await;
    env.write_points(&env.cf_db, &hot_vm("10.0.16.11")).await;
    let before = table_counts(&env).await;
    let out = env.run(&["run", "--once", "--dry-run"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("DRY RUN"), "{stdout}");
    assert!(
        stdout.contains("would     open cpu critical alarm for pas router_z1/0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("would     open fail fail alarm for pas api_z1/0"),
        "{stdout}"
    );
    assert_eq!(table_counts(&env).await, before, "no row written");
    assert!(mails_with("plain", &tag).is_empty(), "no mail sent");
    // the real run afterwards does what the dry run announced
    assert!(env.run_once().status.success());
    assert_eq!(env.scalar_i64("SELECT COUNT(*) FROM alarms").await, 2);
    env.cleanup().await;
}

#[tokio::test]
async fn logs_are_json_on_request_one_line_per_tick_and_never_carry_secrets() {
    let secrets = ["Infl0x-S3cret-pw", "Smtp-S3cret-pw", "B0sh-S3cret-pw"];
    let extra = format!(
        "[plugins.paasta]\nenabled = true\n[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\nsmtp_port = 1\nsecurity = \"plain\"\n\
         sender = \"monit@example.com\"\npassword = \"{}\"\n[plugins.bosh]\nenabled = true\napi_url = \"http://127.0.0.1:1\"\nusername = \"admin\"\n\
         password = \"{}\"\ncf_deployment = \"paasta\"\n",
        secrets[1], secrets[2]
    );
    let env = TestEnv::new("secrets", &extra).await;
    let cfg = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(
            "[influx]\n",
            &format!(
                "[influx]\nuser = \"monit\"\npassword = \"{}\"\n",
                secrets[0]
            ),
        )
        .replace("level = \"info\"", "level = \"debug\"\nformat = \"json\"");
    std::fs::write(&env.config, cfg).unwrap();
    env.add_vm("router_z1/0", "10.0.16.11", "vms").await;
    env.write_points(&env.cf_db, &hot_vm("10.0.16.11")).await;
    let mut all = String::new();
    for args in [&["run", "--once"][..], &["check-config"][..], &["runs"][..]] {
        let out = env.run(args);
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    for s in secrets {
        assert!(!all.contains(s), "secret {s} leaked:\n{all}");
    }
    let db_pw = url::Url::parse(&mysql_url())
        .unwrap()
        .password()
        .unwrap_or("")
        .to_string();
    assert!(
        db_pw.is_empty() || !all.contains(&format!("password\":\"{db_pw}")),
        "DB password in output"
    );
    let out = env.run(&["run", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tick_lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "tick done")
        .collect();
    assert_eq!(tick_lines.len(), 1, "one JSON line per tick:\n{stderr}");
    assert!(
        tick_lines[0]["fields"]["opened"].is_number()
            || tick_lines[0]["fields"]["duration_ms"].is_number()
    );
    // the ledger shows the ticks
    let runs = env.run(&["runs"]);
    let text = String::from_utf8_lossy(&runs.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("e2e") && text.contains("errors="), "{text}");
    let _ = now_s();
    env.cleanup().await;
}
