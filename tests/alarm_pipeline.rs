//! The alarm pipeline end to end through the binary (`run --once`): metrics in the real
//! InfluxDB in the writers' layout, alarms in the real MariaDB, mails in the real SMTP sink.

mod common;

use common::{TestEnv, mails_with, now_s, unique, vm_points};
use mail_parser::MessageParser;

fn email_section(port: u16) -> String {
    format!(
        "[plugins.paasta]\nenabled = true\n[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\n\
         security = \"plain\"\nsender = \"PaaS-TA Monitor <monit@example.com>\"\ndisplay_utc_offset_hours = 9\n"
    )
}

#[derive(Debug, sqlx::FromRow)]
struct AlarmRow {
    id: i64,
    origin_type: String,
    origin_id: i64,
    alarm_type: String,
    level: String,
    app_yn: String,
    resolve_status: String,
    alarm_cnt: i64,
    alarm_title: String,
    complete_user: Option<String>,
}

async fn alarms(env: &TestEnv) -> Vec<AlarmRow> {
    sqlx::query_as(
        "SELECT CAST(id AS SIGNED) id, origin_type, CAST(origin_id AS SIGNED) origin_id, alarm_type, level, app_yn, \
         resolve_status, CAST(alarm_cnt AS SIGNED) alarm_cnt, alarm_title, complete_user FROM alarms ORDER BY id",
    )
    .fetch_all(&env.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn vm_alarm_opens_escalates_counts_repeats_and_recovers() {
    let env = TestEnv::new("life", &email_section(2525)).await;
    let tag = unique("ops");
    let (ops, oncall) = (
        format!("{tag}@example.com"),
        format!("oncall-{tag}@example.com"),
    );
    env.exec(&format!(
        "DELETE FROM alarm_targets; \
         INSERT INTO alarm_targets (origin_type, mail_address, mail_send_yn) VALUES ('pas','{ops}','Y'), ('pas','{oncall}','Y'), ('pas','muted-{tag}@example.com','N'), ('con','other-{tag}@example.com','Y'); \
         UPDATE alarm_policies SET measure_time = 300, warning_threshold = 85, critical_threshold = 90, repeat_time = 10 WHERE origin_type = 'pas';"
    ))
    .await;
    let vm = env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    let end = now_s();

    // 1. warning: mean 87% over the window
    env.write_points(&env.cf_db, &vm_points("10.0.16.21", end, 87.0))
        .await;
    assert!(env.run_once().status.success());
    let a = alarms(&env).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (
            a[0].origin_type.as_str(),
            a[0].origin_id,
            a[0].alarm_type.as_str(),
            a[0].level.as_str()
        ),
        ("pas", vm, "cpu", "warning")
    );
    assert_eq!(
        (
            a[0].resolve_status.as_str(),
            a[0].alarm_cnt,
            a[0].app_yn.as_str()
        ),
        ("1", 1, "N")
    );
    assert_eq!(a[0].alarm_title, "[cell_z1/0]의 cpu 상태 [warning]");
    let mails = mails_with("plain", &ops);
    assert_eq!(mails.len(), 1, "one mail for the opened alarm");
    let msg = MessageParser::default().parse(mails[0].as_bytes()).unwrap();
    let to: Vec<String> = msg
        .to()
        .unwrap()
        .iter()
        .filter_map(|a| a.address().map(str::to_string))
        .collect();
    assert!(
        to.contains(&ops) && to.contains(&oncall),
        "every alarm_targets row of the origin: {to:?}"
    );
    assert!(
        !mails[0].contains(&format!("muted-{tag}")) && !mails[0].contains(&format!("other-{tag}"))
    );
    assert!(
        msg.subject()
            .unwrap()
            .contains("[cell_z1/0]의 cpu 상태 [warning]"),
        "{:?}",
        msg.subject()
    );
    assert!(msg.from().is_some() && msg.date().is_some());
    let html = msg.body_html(0).unwrap();
    assert!(
        html.contains("https://monitor.example.com") || html.contains("cell_z1/0"),
        "{html}"
    );

    // 2. critical: the same alarm escalates, a second mail
    env.write_points(&env.cf_db, &vm_points("10.0.16.21", end, 95.0))
        .await;
    assert!(env.run_once().status.success());
    let a = alarms(&env).await;
    assert_eq!(a.len(), 1, "escalation keeps one row: {a:?}");
    assert_eq!((a[0].level.as_str(), a[0].alarm_cnt), ("critical", 2));
    assert_eq!(mails_with("plain", &ops).len(), 2);

    // 3. still critical within repeat_time: counted, no mail
    assert!(env.run_once().status.success());
    let a = alarms(&env).await;
    assert_eq!((a.len(), a[0].alarm_cnt), (1, 3));
    assert_eq!(
        mails_with("plain", &ops).len(),
        2,
        "no mail before repeat_time"
    );

    // 4. repeat_time passed: one repeat mail
    env.exec("UPDATE alarms SET alarm_send_date = UTC_TIMESTAMP() - INTERVAL 11 MINUTE")
        .await;
    assert!(env.run_once().status.success());
    assert_eq!(alarms(&env).await[0].alarm_cnt, 4);
    assert_eq!(mails_with("plain", &ops).len(), 3);

    // 5. recovered for the whole window: recovery mail, resolved row, alarm_actions entry
    env.write_points(&env.cf_db, &vm_points("10.0.16.21", end, 20.0))
        .await;
    assert!(env.run_once().status.success());
    let a = alarms(&env).await;
    assert_eq!(
        (a[0].resolve_status.as_str(), a[0].complete_user.as_deref()),
        ("3", Some("system"))
    );
    assert_eq!(
        env.scalar_i64(&format!(
            "SELECT COUNT(*) FROM alarm_actions WHERE alarm_id = {}",
            a[0].id
        ))
        .await,
        1
    );
    let mails = mails_with("plain", &ops);
    assert_eq!(mails.len(), 4);
    assert!(
        mails.iter().any(|m| MessageParser::default()
            .parse(m.as_bytes())
            .unwrap()
            .subject()
            .unwrap_or_default()
            .starts_with("[회복] ")),
        "a recovery mail"
    );

    // 6. nothing more to say
    assert!(env.run_once().status.success());
    assert_eq!(alarms(&env).await.len(), 1);
    assert_eq!(mails_with("plain", &ops).len(), 4);
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM batch_notifications WHERE status <> 'sent'")
            .await,
        0
    );
    env.cleanup().await;
}

#[tokio::test]
async fn under_threshold_no_data_and_a_short_spike() {
    let env = TestEnv::new("quiet", "[plugins.paasta]\nenabled = true\n").await;
    env.exec("UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'")
        .await;
    let _calm = env.add_vm("calm/0", "10.0.0.1", "vms").await;
    let silent = env.add_vm("silent/0", "10.0.0.2", "vms").await;
    let _spiky = env.add_vm("spiky/0", "10.0.0.3", "vms").await;
    let end = now_s();
    env.write_points(&env.cf_db, &vm_points("10.0.0.1", end, 50.0))
        .await;
    // one 100% sample in a 300 s window of 50%: the mean stays far under 85
    let mut spiky = vm_points("10.0.0.3", end, 50.0);
    spiky.push_str(&format!(
        "cf_metrics,ip=10.0.0.3,metricname=cpuStats.0 value=100 {}\ncf_metrics,ip=10.0.0.3,metricname=cpuStats.1 value=100 {}\n",
        end - 100,
        end - 100
    ));
    env.write_points(&env.cf_db, &spiky).await;
    let out = env.run_once();
    assert!(out.status.success());
    let a = alarms(&env).await;
    assert_eq!(a.len(), 1, "only the silent VM alarms: {a:?}");
    assert_eq!(
        (
            a[0].origin_id,
            a[0].alarm_type.as_str(),
            a[0].level.as_str()
        ),
        (silent, "fail", "fail")
    );
    assert!(a[0].alarm_title.contains("silent/0"));
    // the VM reports again: its fail alarm is resolved
    env.write_points(&env.cf_db, &vm_points("10.0.0.2", now_s(), 30.0))
        .await;
    assert!(env.run_once().status.success());
    let a = alarms(&env).await;
    assert_eq!((a.len(), a[0].resolve_status.as_str()), (1, "3"));
    env.cleanup().await;
}

#[tokio::test]
async fn newer_agent_metrics_alarm_on_memory_and_the_fullest_disk() {
    let env = TestEnv::new("agent", "[plugins.paasta]\nenabled = true\n").await;
    env.exec("UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'")
        .await;
    let vm = env.add_vm("diego-cell/6f0c", "10.0.16.30", "cel").await;
    let end = now_s();
    let mut lines = String::new();
    let mut t = end - 300;
    while t <= end {
        for (metric, v) in [
            ("cpuStats.core.0", 10.0),
            ("cpuStats.LoadAvg1Stats", 400.0), // not CPU percent: must not count (defect D14)
            ("memoryStats.TotalMemory", 8_000_000_000.0),
            ("memoryStats.AvailableMemory", 640_000_000.0), // 92% used
            ("memoryStats.FreeMemory", 100_000_000.0),
            ("diskStats./.Usage", 30.0),
            ("diskStats./var/vcap/data.Usage", 87.1),
        ] {
            lines.push_str(&format!("cf_metrics,deployment=paasta,id=6f0c,index=0,ip=10.0.16.30,metricname={metric},origin=diego-cell value={v} {t}\n"));
        }
        t += 30;
    }
    env.write_points(&env.cf_db, &lines).await;
    assert!(env.run_once().status.success());
    let a = alarms(&env).await;
    let by_type: Vec<(&str, &str, i64)> = a
        .iter()
        .map(|r| (r.alarm_type.as_str(), r.level.as_str(), r.origin_id))
        .collect();
    assert_eq!(
        by_type,
        vec![("memory", "critical", vm), ("disk", "warning", vm)],
        "{a:?}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn smtp_down_keeps_mail_pending_and_sends_it_once_when_back() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let env = TestEnv::new("smtpdown", &email_section(port)).await;
    let tag = unique("down");
    env.exec(&format!(
        "DELETE FROM alarm_targets; INSERT INTO alarm_targets (origin_type, mail_address) VALUES ('pas', '{tag}@example.com'); \
         UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas';"
    ))
    .await;
    env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    env.write_points(&env.cf_db, &vm_points("10.0.16.21", now_s(), 95.0))
        .await;

    let out = env.run_once();
    assert!(out.status.success(), "a failed send is not a failed tick");
    assert_eq!(
        alarms(&env).await.len(),
        1,
        "the alarm is recorded although SMTP is down"
    );
    assert_eq!(
        env.scalar_i64(
            "SELECT COUNT(*) FROM batch_notifications WHERE status = 'pending' AND attempts = 1"
        )
        .await,
        1
    );
    let err: String = sqlx::query_scalar("SELECT last_error FROM batch_notifications")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert!(
        err.contains(&format!("127.0.0.1:{port}")),
        "the error names the server: {err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pending 1"));

    // the server comes back
    let maildir = env.dir.path().join("mail");
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    let mut sink = std::process::Command::new("/usr/bin/python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(&maildir)
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(env.run_once().status.success());
    assert!(env.run_once().status.success());
    let delivered = std::fs::read_dir(maildir.join("new")).unwrap().count();
    let _ = sink.kill();
    let _ = sink.wait();
    assert_eq!(delivered, 1, "sent exactly once after the server came back");
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM batch_notifications WHERE status = 'sent'")
            .await,
        1
    );
    env.cleanup().await;
}

#[tokio::test]
async fn mail_as_received_escapes_hostile_names() {
    let env = TestEnv::new("escape", &email_section(2525)).await;
    let tag = unique("esc");
    env.exec(&format!(
        "DELETE FROM alarm_targets; INSERT INTO alarm_targets (origin_type, mail_address) VALUES ('pas', '{tag}@example.com'); \
         UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas';"
    ))
    .await;
    env.add_vm(
        "<script>x</script>\r\nBcc: evil@example.com",
        "10.0.16.22",
        "vms",
    )
    .await;
    env.write_points(&env.cf_db, &vm_points("10.0.16.22", now_s(), 95.0))
        .await;
    assert!(env.run_once().status.success());
    let mails = mails_with("plain", &tag);
    assert_eq!(mails.len(), 1);
    let msg = MessageParser::default().parse(mails[0].as_bytes()).unwrap();
    assert!(msg.bcc().is_none(), "no header injection");
    let headers = mails[0].split("\n\n").next().unwrap().replace("\r\n", "\n");
    let headers = headers.split("\n\n").next().unwrap();
    assert!(
        !headers
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
        "{headers}"
    );
    let html = msg.body_html(0).unwrap();
    assert!(!html.contains("<script>x</script>"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(msg.body_text(0).is_some(), "multipart: a text part too");
    env.cleanup().await;
}

#[tokio::test]
async fn one_influxdb_query_per_measurement_whatever_the_number_of_vms() {
    let env = TestEnv::new("queries", "[plugins.paasta]\nenabled = true\n").await;
    env.exec("UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'")
        .await;
    let end = now_s();
    let mut lines = String::new();
    for i in 0..60 {
        let ip = format!("10.1.{}.{}", i / 200, i % 200 + 1);
        env.add_vm(&format!("vm_z1/{i}"), &ip, "vms").await;
        lines += &vm_points(&ip, end, 30.0 + i as f64);
    }
    env.write_points(&env.cf_db, &lines).await;
    let out = env.run(&["run", "--once", "--json"]);
    assert!(out.status.success());
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        sum["influx_queries"], 3,
        "60 VMs, one query per resource: {sum}"
    );
    assert_eq!(
        sum["readings"]["paasta"], 180,
        "cpu, memory and disk of each VM"
    );
    // the window's points, raw (issue 20 item 7: cheaper for InfluxDB 1.x than aggregating
    // them four times): 4 series of 60 VMs, a point each 10 s over the last 300 s (30, or
    // fewer if the tick started seconds after the points were written)
    let rows = sum["influx_rows"].as_u64().unwrap_or_default();
    assert!(
        rows.is_multiple_of(60 * 4) && (60 * 4 * 28..=60 * 4 * 30).contains(&rows),
        "the points of the cpu, memory, disk series of 60 VMs: {sum}"
    );
    assert!(sum["steps_ms"]["3_collect"].is_number(), "{sum}");
    env.cleanup().await;
}
