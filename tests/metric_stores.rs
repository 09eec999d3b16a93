//! `[metrics] backend = "prometheus"` end to end: the same line protocol written to InfluxDB and
//! to VictoriaMetrics (both real), `run --once` of the real binary against each, the same alarms.

mod common;

use common::{TestEnv, now_s};
use monit_testkit::{victoria_metrics_url, write_victoria_metrics};

fn vm_points(ip: &str, end: i64, cpu: f64, mem: f64) -> String {
    let mut out = String::new();
    let mut t = end - 300;
    while t <= end {
        for (metric, v) in [
            ("cpuStats.0", cpu),
            ("cpuStats.1", cpu),
            ("memoryStats.UsedPercent", mem),
            ("diskStats.Usage", 40.0),
        ] {
            out.push_str(&format!(
                "cf_metrics,eventtype=ValueMetric,index=0,ip={ip},job=cell,metricname={metric},origin=rep,zone=z1 delta=0,total=0,value={v} {t}\n"
            ));
        }
        t += 10;
    }
    out
}

/// cAdvisor points of one app instance over the last 300 s: `cpu_per_30s` CPU seconds per 30 s
/// (9 = 30% of a core), memory at `mem` of a 1 GiB limit.
fn container(app: &str, idx: u32, cell_ip: &str, cpu_per_30s: f64, mem: f64, until: i64) -> String {
    let mut out = String::new();
    let tags = format!(
        "application_id={app}-guid,application_index={idx},application_name={app},cell_ip={cell_ip},container_id=/garden/{app}-{idx},container_interface={app}-{idx},machine=cell"
    );
    let (mut t, mut cpu) = (until - 300, 1000.0);
    while t <= until {
        for (name, v) in [
            ("cpu_usage_total", cpu),
            ("memory_usage", mem * 1073741824.0),
            ("disk_usage", 0.1 * 1073741824.0),
        ] {
            out.push_str(&format!("container_metrics,{tags},name={name} app_mem=1073741824,app_disk=1073741824,value={v} {t}\n"));
        }
        cpu += cpu_per_30s;
        t += 30;
    }
    out
}

type AlarmKey = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
);

async fn alarms(env: &TestEnv) -> Vec<AlarmKey> {
    sqlx::query_as(
        "SELECT origin_type, alarm_type, level, ip, app_name, alarm_title FROM alarms \
         ORDER BY origin_type, alarm_type, ip, app_name",
    )
    .fetch_all(&env.db)
    .await
    .unwrap()
}

async fn seed(env: &TestEnv) {
    env.exec("UPDATE alarm_policies SET measure_time = 240 WHERE origin_type IN ('pas', 'con')")
        .await;
    env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    env.add_vm("api_z1/0", "10.0.0.1", "vms").await;
    env.add_vm("uaa_z1/0", "10.0.0.2", "vms").await;
    env.add_vm("silent_z1/0", "10.0.0.3", "vms").await;
}

#[tokio::test]
async fn run_once_with_victoria_metrics_opens_the_same_alarms_as_with_influxdb() {
    let plugins = "[plugins.paasta]\nenabled = true\n[plugins.container]\nenabled = true\n";
    let influx = TestEnv::new("store_influx", plugins).await;
    let vm_url = victoria_metrics_url();
    let vm = TestEnv::new(
        "store_vm",
        &format!(
            "{plugins}[metrics]\nbackend = \"prometheus\"\n[prometheus]\nurl = \"{vm_url}\"\n"
        ),
    )
    .await;
    let end = now_s();
    let cf = vm_points("10.0.0.1", end, 95.0, 40.0)
        + &vm_points("10.0.0.2", end, 10.0, 87.0)
        + &vm_points("10.0.16.21", end, 10.0, 40.0);
    let con = container("hot", 0, "10.0.16.21", 28.5, 0.30, end) // 95% of a core
        + &container("fat", 0, "10.0.16.21", 3.0, 0.87, end) // memory 87%
        + &container("calm", 0, "10.0.16.21", 3.0, 0.20, end)
        + &container("gone", 0, "10.0.16.21", 30.0, 0.99, end - 280); // stopped
    for env in [&influx, &vm] {
        seed(env).await;
    }
    influx.write_points(&influx.cf_db, &cf).await;
    influx.write_points(&influx.container_db, &con).await;
    write_victoria_metrics(&vm_url, &vm.cf_db, &cf).await;
    write_victoria_metrics(&vm_url, &vm.container_db, &con).await;

    let mut sums = Vec::new();
    for env in [&influx, &vm] {
        let out = env.run(&["run", "--once", "--json"]);
        assert!(out.status.success());
        sums.push(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap());
    }
    assert_eq!(sums[0]["metric_store"], "influxdb", "{}", sums[0]);
    assert_eq!(sums[1]["metric_store"], "prometheus", "{}", sums[1]);
    assert_eq!(
        sums[1]["influx_queries"], 23,
        "one PromQL query per rollup: 12 for the VMs, 11 for the containers: {}",
        sums[1]
    );
    assert_eq!(sums[0]["readings"], sums[1]["readings"]);

    let (a, b) = (alarms(&influx).await, alarms(&vm).await);
    let kinds: Vec<_> = a
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("con", "cpu", "critical"),
            ("con", "memory", "warning"),
            ("pas", "cpu", "critical"),
            ("pas", "fail", "fail"),
            ("pas", "memory", "warning"),
        ],
        "{a:#?}"
    );
    assert_eq!(a, b, "the same alarms from either store");
    influx.cleanup().await;
    vm.cleanup().await;
}
