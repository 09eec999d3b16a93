//! Faults survived by the long-running process, against private instances of the real services
//! (started by the test on free ports, so stopping them does not disturb other tests):
//! InfluxDB stopped and back, MariaDB restarted, a tick slower than the interval.

mod common;

use common::{PrivateInflux, PrivateMariadb, TestEnv, free_port, now_s};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn_loop(env: &TestEnv) -> Child {
    Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(&env.config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop(mut child: Child) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn wait_for<F: AsyncFnMut() -> bool>(what: &str, mut cond: F, within: Duration) {
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn hot_vm(ip: &str) -> String {
    TestEnv::cf_series(ip, "cpuStats.0", 300, |_| 97.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn influxdb_stopped_during_a_run_fails_ticks_cleanly_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut influx = PrivateInflux::start(tmp.path());
    let env = TestEnv::on(
        "influxdown",
        "[plugins.paasta]\nenabled = true\n",
        &common::mysql_url(),
        &influx.url(),
    )
    .await;
    env.exec("UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'")
        .await;
    env.add_vm("router_z1/0", "10.0.16.11", "vms").await;
    env.write_points(&env.cf_db, &hot_vm("10.0.16.11")).await;
    let child = spawn_loop(&env);
    wait_for(
        "the alarm opens",
        async || env.scalar_i64("SELECT COUNT(*) FROM alarms").await == 1,
        Duration::from_secs(20),
    )
    .await;

    influx.down();
    let failed_before = env
        .scalar_i64("SELECT COUNT(*) FROM batch_runs WHERE errors LIKE '%collect/paasta%'")
        .await;
    wait_for(
        "ticks fail while InfluxDB is down",
        async || {
            env.scalar_i64("SELECT COUNT(*) FROM batch_runs WHERE errors LIKE '%collect/paasta%'")
                .await
                >= failed_before + 2
        },
        Duration::from_secs(20),
    )
    .await;
    let err: String = sqlx::query_scalar(
        "SELECT errors FROM batch_runs WHERE errors IS NOT NULL ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert!(
        err.contains(&influx.url()),
        "the error names InfluxDB: {err}"
    );
    let (status, cnt_down): (String, i64) =
        sqlx::query_as("SELECT resolve_status, CAST(alarm_cnt AS SIGNED) FROM alarms")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!(status, "1", "an outage is not a recovery");
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM alarms WHERE alarm_type = 'fail'")
            .await,
        0,
        "an outage is not 'no data'"
    );

    influx.up();
    wait_for(
        "ticks succeed again and the alarm is counted",
        async || {
            env.scalar_i64("SELECT CAST(alarm_cnt AS SIGNED) FROM alarms")
                .await
                > cnt_down
        },
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(stop(child), Some(0), "the process lived through the outage");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_restarted_the_pool_reconnects_and_pending_mail_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let mut db = PrivateMariadb::start(tmp.path());
    let dead_smtp = free_port();
    let extra = format!(
        "[plugins.paasta]\nenabled = true\n[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {dead_smtp}\nsecurity = \"plain\"\nsender = \"m@example.com\"\n"
    );
    let env = TestEnv::on("dbrestart", &extra, &db.url(), &common::influx_url()).await;
    env.exec("UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'")
        .await;
    env.add_vm("router_z1/0", "10.0.16.11", "vms").await;
    env.write_points(&env.cf_db, &hot_vm("10.0.16.11")).await;
    let child = spawn_loop(&env);
    wait_for(
        "the alarm is recorded with its mail pending",
        async || {
            env.scalar_i64("SELECT COUNT(*) FROM batch_notifications WHERE status = 'pending'")
                .await
                == 1
        },
        Duration::from_secs(20),
    )
    .await;
    let runs_before = env.scalar_i64("SELECT COUNT(*) FROM batch_runs").await;
    env.db.close().await;

    db.down();
    tokio::time::sleep(Duration::from_secs(3)).await; // a few ticks against a dead DB
    db.up();

    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{}/{}", db.url(), env.name))
        .await
        .unwrap();
    let count = async |sql: &str| -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let start = Instant::now();
    while count("SELECT COUNT(*) FROM batch_runs").await <= runs_before + 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "ticks did not resume after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        count("SELECT COUNT(*) FROM alarms").await,
        1,
        "no alarm lost or doubled"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM batch_notifications WHERE status = 'pending'").await,
        1,
        "pending mail kept"
    );
    assert!(
        count("SELECT CAST(attempts AS SIGNED) FROM batch_notifications").await >= 2,
        "and still retried"
    );
    assert_eq!(stop(child), Some(0));
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tick_slower_than_the_interval_neither_overlaps_nor_piles_up() {
    // A director that answers /info after 2.5 s makes every tick slower than the 1 s interval.
    let director = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/info"))
        .respond_with(wiremock::ResponseTemplate::new(500).set_delay(Duration::from_millis(2500)))
        .mount(&director)
        .await;
    let extra = format!(
        "[plugins.paasta]\nenabled = true\n[plugins.bosh]\nenabled = true\napi_url = \"{}\"\nusername = \"a\"\npassword = \"b\"\ncf_deployment = \"paasta\"\ntimeout_seconds = 10\n",
        director.uri()
    );
    let env = TestEnv::new("slow", &extra).await;
    env.add_vm("router_z1/0", "10.0.16.11", "vms").await;
    env.write_points(
        &env.cf_db,
        &TestEnv::cf_series("10.0.16.11", "cpuStats.0", 300, |_| 10.0),
    )
    .await;
    let child = spawn_loop(&env);
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(stop(child), Some(0));
    let runs: Vec<(chrono::DateTime<chrono::Utc>, i64)> =
        sqlx::query_as("SELECT started_at, duration_ms FROM batch_runs ORDER BY id")
            .fetch_all(&env.db)
            .await
            .unwrap();
    assert!(runs.len() >= 2, "{runs:?}");
    assert!(runs.len() <= 4, "no burst of catch-up ticks: {runs:?}");
    for w in runs.windows(2) {
        let gap = (w[1].0 - w[0].0).num_milliseconds();
        assert!(w[0].1 >= 2000, "the tick was slow: {runs:?}");
        assert!(
            gap >= w[0].1,
            "tick started before the previous one ended: {runs:?}"
        );
    }
    let _ = now_s();
    env.cleanup().await;
}

/// MariaDB goes away (longer than the pool's 10 s acquire timeout) while mail goes out: the mail
/// in flight is accepted by the server, its outcome is recorded once the DB is back, nothing more
/// is sent meanwhile, and no mail goes out twice.
#[tokio::test(flavor = "multi_thread")]
async fn mariadb_away_while_mail_goes_out_sends_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let mut db = PrivateMariadb::start(&tmp.path().join("db"));
    let sink = monit_testkit::FaultSink::start(&tmp.path().join("mail"), &["--delay", "0.5"]);
    let extra = format!(
        "[plugins.paasta]\nenabled = true\n[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nsecurity = \"plain\"\nsender = \"m@example.com\"\n",
        sink.port
    );
    let env = TestEnv::on("dbaway", &extra, &db.url(), &common::influx_url()).await;
    env.exec(
        "UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'; \
         DELETE FROM alarm_targets; INSERT INTO alarm_targets (origin_type, mail_address) VALUES ('pas', 'ops@example.org')",
    )
    .await;
    let mut points = String::new();
    for i in 1..=8 {
        let ip = format!("10.0.17.{i}");
        env.add_vm(&format!("hot/{i}"), &ip, "vms").await;
        points.push_str(&hot_vm(&ip));
    }
    env.write_points(&env.cf_db, &points).await;
    env.db.close().await;
    let child = spawn_loop(&env);
    let start = Instant::now();
    while sink.mails().len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no mail went out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    db.down();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let during = sink.mails().len();
    db.up();
    let start = Instant::now();
    while sink.mails().len() < 8 && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(stop(child), Some(0));
    let mut per_row: std::collections::HashMap<i64, usize> = Default::default();
    for m in sink.mails() {
        *per_row.entry(m.notification_id.unwrap()).or_default() += 1;
    }
    assert!(
        during <= 3,
        "nothing more was sent while outcomes could not be recorded: {during}"
    );
    assert_eq!(per_row.len(), 8, "every notification arrived: {per_row:?}");
    assert!(
        per_row.values().all(|n| *n == 1),
        "no mail twice: {per_row:?}"
    );
}
