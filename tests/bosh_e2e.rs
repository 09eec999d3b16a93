//! BOSH end to end through the binary: a fake director (wiremock, the documented API shapes:
//! /info, /deployments, the task flow, NDJSON result) feeds the inventory; the director's own
//! metrics in the real InfluxDB raise a `bos` alarm; inventory VMs without metrics raise `fail`.

mod common;

use common::{TestEnv, now_s};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The VMs the fake director reports for deployment `paasta`: (job, index, ip, az).
type DirectorVms<'a> = &'a [(&'a str, u32, &'a str, &'a str)];

const THREE_VMS: DirectorVms<'static> = &[
    ("diego-cell", 0, "10.0.16.21", "z1"),
    ("diego-cell", 1, "10.0.16.22", "z2"),
    ("router", 0, "10.0.16.11", "z1"),
];

async fn fake_director() -> MockServer {
    let s = MockServer::start().await;
    mount_director(&s, THREE_VMS).await;
    s
}

/// Mounts the director's API on `s`, reporting `vms`; `s.reset()` first to change the answer.
async fn mount_director(s: &MockServer, vms: DirectorVms<'_>) {
    Mock::given(method("GET")).and(path("/info"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "name": "micro-bosh", "uuid": "7c1f", "version": "271.2.0", "user": null, "cpi": "openstack_cpi",
            "user_authentication": {"type": "basic", "options": {}}
        })))
        .mount(s).await;
    Mock::given(method("GET")).and(path("/deployments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
            {"name": "paasta", "releases": [{"name": "cf", "version": "1.0"}], "stemcells": [], "cloud_config": "latest"},
            {"name": "other", "releases": [], "stemcells": [], "cloud_config": "latest"}
        ])))
        .mount(s).await;
    Mock::given(method("GET")).and(path("/deployments/paasta/vms")).and(query_param("format", "full"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!(
            {"id": 42, "state": "queued", "description": "retrieve vm-stats", "timestamp": 1700000000, "result": "", "user": "admin"})))
        .mount(s).await;
    Mock::given(method("GET")).and(path("/tasks/42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!(
            {"id": 42, "state": "done", "description": "retrieve vm-stats", "timestamp": 1700000000, "result": "", "user": "admin"})))
        .mount(s).await;
    let vm = |job: &str, idx: u32, ip: &str, az: &str| {
        serde_json::json!({"vm_cid": format!("i-{ip}"), "ips": [ip], "dns": [], "agent_id": "a", "job_name": job, "index": idx,
            "job_state": "running", "state": "started", "vm_type": "small", "az": az, "id": format!("id-{ip}"),
            "bootstrap": idx == 0, "ignore": false, "resurrection_paused": false, "processes": []})
        .to_string()
    };
    let ndjson = vms
        .iter()
        .map(|(job, idx, ip, az)| vm(job, *idx, ip, az))
        .collect::<Vec<_>>()
        .join("\n");
    Mock::given(method("GET"))
        .and(path("/tasks/42/output"))
        .and(query_param("type", "result"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/plain")
                .set_body_string(ndjson + "\n"),
        )
        .mount(s)
        .await;
}

fn bosh_section(director: &MockServer) -> String {
    format!(
        "[plugins.paasta]\nenabled = true\n[plugins.bosh]\nenabled = true\napi_url = \"{}\"\nusername = \"admin\"\npassword = \"pw\"\n\
         cf_deployment = \"paasta\"\ncell_prefix = \"cell\"\nservice_name = \"micro-bosh\"\ntask_poll_millis = 50\n",
        director.uri()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn director_inventory_and_director_metrics_raise_the_right_alarms() {
    let director = fake_director().await;
    let env = TestEnv::new("bosh", &bosh_section(&director)).await;
    env.exec("UPDATE alarm_policies SET measure_time = 300 WHERE origin_type IN ('pas', 'bos')")
        .await;
    let now = now_s();
    let mut lines = String::new();
    let mut t = now - 300;
    while t <= now {
        for (metric, v) in [
            ("cpuStats.core.0", 97.0),
            ("cpuStats.core.1", 93.0),
            ("memoryStats.UsedPercent", 42.0),
            ("diskStats.Usage", 55.3),
        ] {
            lines.push_str(&format!(
                "bosh_metrics,ip=10.0.1.6,metricname={metric},origin=micro-bosh value={v} {t}\n"
            ));
            // another director's series must not be averaged in (defect D14)
            lines.push_str(&format!(
                "bosh_metrics,ip=10.0.9.9,metricname={metric},origin=other-bosh value=1 {t}\n"
            ));
        }
        t += 30;
    }
    env.write_points(&env.bosh_db, &lines).await;
    // one of the inventory VMs reports
    env.write_points(
        &env.cf_db,
        &TestEnv::cf_series("10.0.16.21", "cpuStats.0", 300, |_| 10.0),
    )
    .await;

    let env_ref = &env;
    let out = tokio::task::block_in_place(|| env_ref.run_once());
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("inventory bosh: +2 zones, +3 vms"),
        "{stdout}"
    );
    let vms: Vec<(String, String, String)> =
        sqlx::query_as("SELECT name, ip, vm_type FROM vms ORDER BY ip")
            .fetch_all(&env.db)
            .await
            .unwrap();
    assert_eq!(
        vms,
        vec![
            ("router/0".into(), "10.0.16.11".into(), "vms".into()),
            ("diego-cell/0".into(), "10.0.16.21".into(), "cel".into()),
            ("diego-cell/1".into(), "10.0.16.22".into(), "cel".into()),
        ]
    );
    let alarms: Vec<(String, i64, String, String, String)> = sqlx::query_as(
        "SELECT origin_type, CAST(origin_id AS SIGNED), alarm_type, level, ip FROM alarms ORDER BY origin_type, ip",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    assert_eq!(alarms.len(), 3, "{alarms:?}");
    assert_eq!(
        alarms[0],
        (
            "bos".into(),
            9999,
            "cpu".into(),
            "critical".into(),
            "127.0.0.1".into()
        ),
        "mean 95% over the director's cores"
    );
    assert_eq!(
        (
            alarms[1].0.as_str(),
            alarms[1].2.as_str(),
            alarms[1].4.as_str()
        ),
        ("pas", "fail", "10.0.16.11")
    );
    assert_eq!(
        (
            alarms[2].0.as_str(),
            alarms[2].2.as_str(),
            alarms[2].4.as_str()
        ),
        ("pas", "fail", "10.0.16.22")
    );
    let title: String =
        sqlx::query_scalar("SELECT alarm_title FROM alarms WHERE origin_type = 'bos'")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!(title, "[micro-bosh]의 cpu 상태 [critical]");
    env.cleanup().await;
}

/// A VM missing from one director answer keeps its id and its open alarm (no second alarm when
/// it is back); missing beyond `batch.vm_removal_grace_minutes` it is removed and its alarm
/// closed with a note.
#[tokio::test(flavor = "multi_thread")]
async fn a_vm_missing_from_one_director_answer_keeps_its_id_and_its_alarm() {
    let director = fake_director().await;
    let env = TestEnv::new("churn", &bosh_section(&director)).await;
    env.exec("UPDATE alarm_policies SET measure_time = 300 WHERE origin_type IN ('pas', 'bos')")
        .await;
    // diego-cell/1 (10.0.16.22) is silent while the two others report: it is down
    for ip in ["10.0.16.21", "10.0.16.11"] {
        env.write_points(
            &env.cf_db,
            &TestEnv::cf_series(ip, "cpuStats.0", 300, |_| 10.0),
        )
        .await;
    }
    let run = || {
        let out = tokio::task::block_in_place(|| env.run_once());
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let cell1 = "SELECT CAST(id AS SIGNED) FROM vms WHERE name = 'diego-cell/1'";
    let fail_alarms = "SELECT CAST(id AS SIGNED), CAST(origin_id AS SIGNED), resolve_status, CAST(alarm_cnt AS SIGNED) \
                       FROM alarms WHERE origin_type = 'pas' AND alarm_type = 'fail' ORDER BY id";
    let alarms = || async {
        sqlx::query_as::<_, (i64, i64, String, i64)>(fail_alarms)
            .fetch_all(&env.db)
            .await
            .unwrap()
    };

    run();
    let id = env.scalar_i64(cell1).await;
    let a = alarms().await;
    assert_eq!(a.len(), 1, "{a:?}");
    let alarm = a[0].0;
    assert_eq!((a[0].1, a[0].2.as_str(), a[0].3), (id, "1", 1));

    // One answer without diego-cell/1: kept with its id, its alarm untouched.
    director.reset().await;
    mount_director(&director, &[THREE_VMS[0], THREE_VMS[2]]).await;
    let stdout = run();
    assert!(stdout.contains("-0 removed, 1 missing (kept)"), "{stdout}");
    assert_eq!(env.scalar_i64(cell1).await, id);
    assert_eq!(alarms().await, vec![(alarm, id, "1".into(), 1)]);

    // Back in the next answer: the same id, the same alarm counted, no second alarm.
    director.reset().await;
    mount_director(&director, THREE_VMS).await;
    run();
    assert_eq!(env.scalar_i64(cell1).await, id);
    assert_eq!(alarms().await, vec![(alarm, id, "1".into(), 2)]);

    // Missing again, now for longer than the grace (30 minutes by default; the clock of the
    // absence is moved back instead of waiting): removed, its alarm closed with a note.
    director.reset().await;
    mount_director(&director, &[THREE_VMS[0], THREE_VMS[2]]).await;
    run();
    env.exec(
        "UPDATE batch_vm_absence SET first_missing_at = first_missing_at - INTERVAL 31 MINUTE",
    )
    .await;
    let stdout = run();
    assert!(
        stdout.contains("-1 removed, 0 missing (kept), 1 alarms closed"),
        "{stdout}"
    );
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM vms WHERE name = 'diego-cell/1'")
            .await,
        0
    );
    let a = alarms().await;
    assert_eq!((a.len(), a[0].2.as_str()), (1, "3"), "{a:?}");
    let note: String =
        sqlx::query_scalar("SELECT alarm_action_desc FROM alarm_actions WHERE alarm_id = ?")
            .bind(alarm)
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert!(
        note.contains("VM diego-cell/1 removed from the BOSH inventory"),
        "{note}"
    );
    env.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// The inventory on its own cadence (plugins.bosh.sync_interval_seconds)

/// Requests the fake director received on `path` (exact, without the query).
async fn requests_to(director: &MockServer, path: &str) -> usize {
    director
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == path)
        .count()
}

const VM_LISTING: &str = "/deployments/paasta/vms";

/// `GET /tasks`: nothing in progress (mounted after any task the test answers first).
async fn mount_no_tasks(director: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/tasks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .with_priority(10)
        .mount(director)
        .await;
}

/// Runs the long-running `run` (a tick a second, /metrics on a free port) until `ticks` ticks
/// are recorded, stops it with SIGTERM (the tick in flight finishes), and returns the ticks
/// recorded and the `/metrics` text read before the stop.
async fn run_loop_for(env: &TestEnv, ticks: i64) -> (i64, String) {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let port = common::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(&env.config)
        .arg("run")
        .env("PORT", port.to_string())
        .env("MONIT_BATCH__SERVER__ENABLED", "true")
        .env("MONIT_BATCH__SERVER__BIND", "127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while env.scalar_i64("SELECT COUNT(*) FROM batch_runs").await < ticks {
        if start.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("{ticks} ticks not recorded within 60 s (or the process ended)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopped = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if stopped.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the batch did not stop on SIGTERM within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (
        env.scalar_i64("SELECT COUNT(*) FROM batch_runs").await,
        metrics,
    )
}

/// The `inventory_sync` of each recorded tick's summary, oldest first.
async fn recorded_syncs(env: &TestEnv) -> Vec<serde_json::Value> {
    let rows: Vec<String> = sqlx::query_scalar("SELECT summary FROM batch_runs ORDER BY id")
        .fetch_all(&env.db)
        .await
        .unwrap();
    rows.iter()
        .map(|s| {
            serde_json::from_str::<serde_json::Value>(s).unwrap()["inventory_sync"]["bosh"].clone()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_run_loop_lists_the_vms_once_per_interval_and_the_tasks_every_tick() {
    let director = fake_director().await;
    mount_no_tasks(&director).await;
    let env = TestEnv::new(
        "bosync",
        &format!("{}sync_interval_seconds = 3600\n", bosh_section(&director)),
    )
    .await;
    env.exec("UPDATE alarm_policies SET measure_time = 300 WHERE origin_type IN ('pas', 'bos')")
        .await;
    for (_, _, ip, _) in THREE_VMS {
        env.write_points(
            &env.cf_db,
            &TestEnv::cf_series(ip, "cpuStats.0", 300, |_| 10.0),
        )
        .await;
    }
    // a stale row from long ago, silent while the director's VMs report: the first tick must
    // sync (and so learn it is gone) before any `fail` decision
    env.add_vm("router/9", "10.9.9.9", "vms").await;
    let (ticks, metrics) = run_loop_for(&env, 3).await;
    assert!(ticks >= 3);
    assert_eq!(requests_to(&director, VM_LISTING).await, 1, "one sync");
    assert_eq!(
        requests_to(&director, "/tasks").await as i64,
        ticks,
        "the director's tasks every tick"
    );
    let syncs = recorded_syncs(&env).await;
    assert_eq!(syncs[0]["fetched"], true, "{syncs:?}");
    assert_eq!(syncs[0]["reason"], "first_sync", "{syncs:?}");
    for s in &syncs[1..] {
        assert_eq!(s["fetched"], false, "{syncs:?}");
        assert_eq!(s["reason"], "reused", "{syncs:?}");
        assert!(s["age_seconds"].as_u64().is_some(), "{syncs:?}");
    }
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM vms WHERE name = 'router/0'")
            .await,
        1,
        "the first tick synced"
    );
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM alarms WHERE alarm_type = 'fail' AND ip = '10.9.9.9'")
            .await,
        0,
        "a VM the director does not have is not counted as silent"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("monit_inventory_age_seconds{source=\"bosh\"}")),
        "{metrics}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_interval_zero_lists_the_vms_every_tick() {
    let director = fake_director().await;
    mount_no_tasks(&director).await;
    let env = TestEnv::new(
        "bosync0",
        &format!("{}sync_interval_seconds = 0\n", bosh_section(&director)),
    )
    .await;
    let (ticks, _) = run_loop_for(&env, 2).await;
    assert!(ticks >= 2);
    assert_eq!(requests_to(&director, VM_LISTING).await as i64, ticks);
    let syncs = recorded_syncs(&env).await;
    assert!(
        syncs[1..]
            .iter()
            .all(|s| s["fetched"] == true && s["reason"] == "every_tick"),
        "{syncs:?}"
    );
    env.cleanup().await;
}

/// A deploy starting or ending changes the VMs: the inventory is synced at once, not at the
/// end of the interval.
#[tokio::test(flavor = "multi_thread")]
async fn a_director_task_ending_syncs_the_inventory_at_once() {
    let director = fake_director().await;
    // two answers with a deploy in progress, then none
    Mock::given(method("GET"))
        .and(path("/tasks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
            {"id": 77, "state": "processing", "description": "create deployment", "timestamp": 1700000000,
             "result": null, "user": "admin", "deployment": "paasta"}
        ])))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&director)
        .await;
    mount_no_tasks(&director).await;
    let env = TestEnv::new(
        "bosynctask",
        &format!("{}sync_interval_seconds = 3600\n", bosh_section(&director)),
    )
    .await;
    let (ticks, _) = run_loop_for(&env, 4).await;
    assert!(ticks >= 4);
    let syncs = recorded_syncs(&env).await;
    let reasons: Vec<&str> = syncs.iter().filter_map(|s| s["reason"].as_str()).collect();
    assert_eq!(
        reasons[..4],
        ["first_sync", "reused", "changes_in_progress", "reused"],
        "{syncs:?}"
    );
    assert_eq!(requests_to(&director, VM_LISTING).await, 2);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_once_always_lists_the_vms() {
    let director = fake_director().await;
    mount_no_tasks(&director).await;
    let env = TestEnv::new(
        "bosynconce",
        &format!("{}sync_interval_seconds = 3600\n", bosh_section(&director)),
    )
    .await;
    for n in 1..=2 {
        let out = tokio::task::block_in_place(|| env.run_once());
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("inventory bosh: synced (run --once syncs always)"),
            "{stdout}"
        );
        assert_eq!(requests_to(&director, VM_LISTING).await, n);
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_interval_out_of_range_is_refused_naming_the_key() {
    let director = fake_director().await;
    let env = TestEnv::new(
        "bosyncbad",
        &format!("{}sync_interval_seconds = 86401\n", bosh_section(&director)),
    )
    .await;
    let out = tokio::task::block_in_place(|| env.run_once());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plugins.bosh.sync_interval_seconds = 86401 is out of range"),
        "{stderr}"
    );
    assert_eq!(requests_to(&director, VM_LISTING).await, 0);
    env.cleanup().await;
}
