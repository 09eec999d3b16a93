//! The long-running process: HTTP endpoint, SIGTERM, and two instances sharing one DB.

mod common;

use common::TestEnv;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(env: &TestEnv, extra_env: &[(&str, String)]) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_monit-batch"));
    c.arg("--config")
        .arg(&env.config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            start.elapsed() < within,
            "process did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn wait_for<F: AsyncFnMut() -> bool>(mut cond: F, within: Duration) {
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < within,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn serves_health_ready_metrics_and_exits_0_on_sigterm() {
    let env = TestEnv::new("life", "[plugins.paasta]\nenabled = true\n").await;
    let port = free_port();
    let mut child = spawn(
        &env,
        &[
            ("PORT", port.to_string()),
            ("MONIT_BATCH__SERVER__ENABLED", "true".into()),
            ("MONIT_BATCH__SERVER__BIND", "127.0.0.1".into()),
        ],
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_for(
        async || {
            http.get(format!("{base}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
        Duration::from_secs(20),
    )
    .await;
    wait_for(
        async || env.scalar_i64("SELECT COUNT(*) FROM batch_runs").await >= 2,
        Duration::from_secs(20),
    )
    .await;
    let ready: serde_json::Value = http
        .get(format!("{base}/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["database"], "ok");
    assert!(ready["last_tick"].is_string(), "{ready}");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "monit_ticks_total",
        "monit_plugin_duration_seconds",
        "monit_readings_total",
        "monit_influx_queries_total",
        "monit_tick_duration_seconds_bucket{le=",
        "monit_build_info{version=",
        "monit_last_successful_tick_timestamp_seconds ",
        "monit_leader 1",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    // by convention: every family has its HELP, and no duration is a summary
    for line in metrics.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split_whitespace().skip(2);
        let (family, kind) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(
            metrics.contains(&format!("# HELP {family} ")),
            "no HELP for {family}:\n{metrics}"
        );
        assert_ne!(kind, "summary", "{family} is a summary, not a histogram");
    }
    signal(&child, "-TERM");
    let st = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(st.code(), Some(0), "SIGTERM ends the process with exit 0");
    env.cleanup().await;
}

#[tokio::test]
async fn two_instances_tick_one_at_a_time_and_the_standby_takes_over() {
    let env = TestEnv::new("leader", "[plugins.paasta]\nenabled = true\n").await;
    let on = ("MONIT_BATCH__BATCH__LEADER_ELECTION", "true".to_string());
    let mut a = spawn(
        &env,
        &[
            on.clone(),
            ("MONIT_BATCH__BATCH__INSTANCE_NAME", "a".into()),
        ],
    );
    // let `a` take the lock first, then start the standby
    wait_for(
        async || env.scalar_i64("SELECT COUNT(*) FROM batch_runs").await >= 1,
        Duration::from_secs(20),
    )
    .await;
    let mut b = spawn(
        &env,
        &[on, ("MONIT_BATCH__BATCH__INSTANCE_NAME", "b".into())],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let by_b = env
        .scalar_i64("SELECT COUNT(*) FROM batch_runs WHERE instance = 'b'")
        .await;
    assert_eq!(by_b, 0, "the standby does not tick while the leader lives");
    // overlapping ticks would show as two runs in the same second window from different instances
    signal(&a, "-KILL");
    let _ = a.wait();
    wait_for(
        async || {
            env.scalar_i64("SELECT COUNT(*) FROM batch_runs WHERE instance = 'b'")
                .await
                >= 1
        },
        Duration::from_secs(10),
    )
    .await;
    signal(&b, "-TERM");
    assert_eq!(wait_exit(&mut b, Duration::from_secs(20)).code(), Some(0));
    env.cleanup().await;
}
