//! Container alarms end to end: cAdvisor points in the real InfluxDB for several apps on several
//! cells, alarms in the real MariaDB with the app fields the management UI shows.

mod common;

use common::{TestEnv, now_s};

/// `container_metrics` of one app instance over the last 300 s, every 30 s: CPU grows by
/// `cpu_per_30s` seconds per 30 s (so 9 s = 30% of a core), memory at `mem` of a 1 GiB limit.
fn container(
    app: &str,
    idx: u32,
    iface: &str,
    cell_ip: &str,
    cpu_per_30s: f64,
    mem: f64,
    until: i64,
) -> String {
    let mut out = String::new();
    let tags = format!(
        "application_id={app}-guid,application_index={idx},application_name={app},cell_ip={cell_ip},container_id=/garden/{iface},container_interface={iface},machine=cell"
    );
    let mut t = until - 300;
    let mut cpu = 1000.0;
    while t <= until {
        for (name, v) in [
            ("cpu_usage_total", cpu),
            ("memory_usage", mem * 1073741824.0),
            ("disk_usage", 0.1 * 1073741824.0),
            ("load_average", 0.0),
        ] {
            out.push_str(&format!("container_metrics,{tags},name={name} app_mem=1073741824,app_disk=1073741824,value={v} {t}\n"));
        }
        cpu += cpu_per_30s;
        t += 30;
    }
    out
}

#[derive(Debug, sqlx::FromRow, PartialEq)]
struct ConAlarm {
    origin_id: i64,
    alarm_type: String,
    level: String,
    ip: Option<String>,
    app_yn: String,
    app_name: Option<String>,
    app_index: Option<i64>,
    container_name: Option<String>,
}

#[tokio::test]
async fn container_over_threshold_opens_a_con_alarm_with_app_fields() {
    let env = TestEnv::new("con", "[plugins.container]\nenabled = true\n").await;
    env.exec("UPDATE alarm_policies SET measure_time = 240 WHERE origin_type = 'con'")
        .await;
    let cell0 = env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    let cell1 = env.add_vm("cell_z1/1", "10.0.16.22", "cel").await;
    let now = now_s();
    let mut lines = String::new();
    lines += &container(
        "spring-music",
        0,
        "wggd5cu4rlph-0",
        "10.0.16.21",
        28.5,
        0.30,
        now,
    ); // 95% of a core
    lines += &container(
        "spring-music",
        1,
        "wggd5cu4rlph-1",
        "10.0.16.22",
        3.0,
        0.30,
        now,
    ); // 10%
    lines += &container("web", 0, "abcd-0", "10.0.16.21", 3.0, 0.87, now); // memory 87%: warning
    lines += &container("web", 1, "abcd-1", "10.0.16.22", 1.0, 0.20, now);
    // an app that stopped reporting five minutes ago, last seen at 100% CPU
    lines += &container("gone", 0, "dead-0", "10.0.16.22", 30.0, 0.99, now - 280);
    env.write_points(&env.container_db, &lines).await;

    let out = env.run_once();
    assert!(out.status.success());
    let rows: Vec<ConAlarm> = sqlx::query_as(
        "SELECT CAST(origin_id AS SIGNED) origin_id, alarm_type, level, ip, app_yn, app_name, CAST(app_index AS SIGNED) app_index, container_name \
         FROM alarms WHERE origin_type = 'con' ORDER BY app_name, alarm_type",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ConAlarm {
                origin_id: cell0,
                alarm_type: "cpu".into(),
                level: "critical".into(),
                ip: Some("10.0.16.21".into()),
                app_yn: "Y".into(),
                app_name: Some("spring-music".into()),
                app_index: Some(0),
                container_name: Some("wggd5cu4rlph-0".into()),
            },
            ConAlarm {
                origin_id: cell0,
                alarm_type: "memory".into(),
                level: "warning".into(),
                ip: Some("10.0.16.21".into()),
                app_yn: "Y".into(),
                app_name: Some("web".into()),
                app_index: Some(0),
                container_name: Some("abcd-0".into()),
            },
        ],
        "only the hot instances alarm; the stopped app opens nothing"
    );
    let _ = cell1;
    let title: String =
        sqlx::query_scalar("SELECT alarm_title FROM alarms WHERE app_name = 'spring-music'")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!(title, "spring-music[0] App 상태 Critical. ");
    let msg: String =
        sqlx::query_scalar("SELECT alarm_message FROM alarms WHERE app_name = 'spring-music'")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert!(msg.contains("CellName:[cell_z1/0]"), "{msg}");
    env.cleanup().await;
}

#[tokio::test]
async fn an_influxdb_error_skips_the_container_step_and_keeps_its_alarms() {
    let env = TestEnv::new(
        "conerr",
        "[plugins.container]\nenabled = true\n[plugins.paasta]\nenabled = true\n",
    )
    .await;
    env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    env.exec(
        "INSERT INTO alarms (origin_type, origin_id, alarm_type, level, ip, app_yn, app_name, app_index, container_name, alarm_title, alarm_message, resolve_status, alarm_send_date) \
         VALUES ('con', 1, 'cpu', 'warning', '10.0.16.21', 'Y', 'web', 0, 'abcd-0', 't', 'm', '1', UTC_TIMESTAMP())",
    )
    .await;
    // the container database does not exist: InfluxDB answers 200 with an error
    sqlx::query("SELECT 1").execute(&env.db).await.unwrap();
    let cfg = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(&env.container_db, "no_such_db_for_this_test");
    std::fs::write(&env.config, cfg).unwrap();
    let out = env.run_once();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a failed step is reported in the exit code"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ERROR     collect/container") && stdout.contains("database not found"),
        "{stdout}"
    );
    assert!(
        stdout.contains("readings  paasta"),
        "the other collector went on: {stdout}"
    );
    let (cnt, status): (i32, String) =
        sqlx::query_as("SELECT alarm_cnt, resolve_status FROM alarms WHERE origin_type = 'con'")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!(
        (cnt, status.as_str()),
        (1, "1"),
        "the open container alarm is neither counted nor resolved"
    );
    env.cleanup().await;
}

/// An app name longer than `alarms.app_name` (varchar(500)): the row keeps 500 characters, and
/// the alarm key compares the same 500, so the second tick continues the alarm instead of
/// opening another one every tick.
#[tokio::test]
async fn an_app_name_longer_than_the_column_keeps_one_alarm() {
    let env = TestEnv::new("longapp", "[plugins.container]\nenabled = true\n").await;
    env.exec("UPDATE alarm_policies SET measure_time = 240 WHERE origin_type = 'con'")
        .await;
    env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    let long = format!("app-{}", "x".repeat(600));
    let now = now_s();
    env.write_points(
        &env.container_db,
        &container(&long, 0, "long-0", "10.0.16.21", 28.5, 0.30, now),
    )
    .await;
    for _ in 0..2 {
        let out = env.run_once();
        assert!(out.status.success());
    }
    let rows: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT CAST(id AS SIGNED), CAST(alarm_cnt AS SIGNED), app_name FROM alarms WHERE origin_type = 'con'",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    assert_eq!(
        rows.len(),
        1,
        "one alarm for the app: {:?}",
        rows.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>()
    );
    assert_eq!(rows[0].1, 2, "alarm_cnt counts both ticks");
    assert_eq!(rows[0].2.chars().count(), 500);
    assert!(long.starts_with(&rows[0].2));
    env.cleanup().await;
}
