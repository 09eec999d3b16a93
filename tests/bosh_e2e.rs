//! BOSH end to end through the binary: a fake director (wiremock, the documented API shapes:
//! /info, /deployments, the task flow, NDJSON result) feeds the inventory; the director's own
//! metrics in the real InfluxDB raise a `bos` alarm; inventory VMs without metrics raise `fail`.

mod common;

use common::{TestEnv, now_s};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn fake_director() -> MockServer {
    let s = MockServer::start().await;
    Mock::given(method("GET")).and(path("/info"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "name": "micro-bosh", "uuid": "7c1f", "version": "271.2.0", "user": null, "cpi": "openstack_cpi",
            "user_authentication": {"type": "basic", "options": {}}
        })))
        .mount(&s).await;
    Mock::given(method("GET")).and(path("/deployments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
            {"name": "paasta", "releases": [{"name": "cf", "version": "1.0"}], "stemcells": [], "cloud_config": "latest"},
            {"name": "other", "releases": [], "stemcells": [], "cloud_config": "latest"}
        ])))
        .mount(&s).await;
    Mock::given(method("GET")).and(path("/deployments/paasta/vms")).and(query_param("format", "full"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!(
            {"id": 42, "state": "queued", "description": "retrieve vm-stats", "timestamp": 1700000000, "result": "", "user": "admin"})))
        .mount(&s).await;
    Mock::given(method("GET")).and(path("/tasks/42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!(
            {"id": 42, "state": "done", "description": "retrieve vm-stats", "timestamp": 1700000000, "result": "", "user": "admin"})))
        .mount(&s).await;
    let vm = |job: &str, idx: u32, ip: &str, az: &str| {
        serde_json::json!({"vm_cid": format!("i-{ip}"), "ips": [ip], "dns": [], "agent_id": "a", "job_name": job, "index": idx,
            "job_state": "running", "state": "started", "vm_type": "small", "az": az, "id": format!("id-{ip}"),
            "bootstrap": idx == 0, "ignore": false, "resurrection_paused": false, "processes": []})
        .to_string()
    };
    let ndjson = [
        vm("diego-cell", 0, "10.0.16.21", "z1"),
        vm("diego-cell", 1, "10.0.16.22", "z2"),
        vm("router", 0, "10.0.16.11", "z1"),
    ]
    .join("\n");
    Mock::given(method("GET"))
        .and(path("/tasks/42/output"))
        .and(query_param("type", "result"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/plain")
                .set_body_string(ndjson + "\n"),
        )
        .mount(&s)
        .await;
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn director_inventory_and_director_metrics_raise_the_right_alarms() {
    let director = fake_director().await;
    let env = TestEnv::new(
        "bosh",
        &format!(
            "[plugins.paasta]\nenabled = true\n[plugins.bosh]\nenabled = true\napi_url = \"{}\"\nusername = \"admin\"\npassword = \"pw\"\n\
             cf_deployment = \"paasta\"\ncell_prefix = \"cell\"\nservice_name = \"micro-bosh\"\ntask_poll_millis = 50\n",
            director.uri()
        ),
    )
    .await;
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
