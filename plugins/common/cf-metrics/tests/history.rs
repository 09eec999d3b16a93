//! The history of alarmed readings (the charts in alarm mails), read from both real stores
//! (InfluxDB 1.x and VictoriaMetrics' Prometheus API, `scripts/services.sh`) from the same
//! line protocol: the values per step are right, both stores agree step by step, one query
//! reads every key, and only the keys' series are read.

use monit_cf_metrics::container::ContainerSource;
use monit_cf_metrics::history::{ContainerHistory, VmHistory};
use monit_host::config::{InfluxSettings, PrometheusSettings};
use monit_host::metric_store::MetricStore;
use monit_host::metric_store::influx::InfluxClient;
use monit_host::metric_store::prometheus::PrometheusClient;
use monit_host::model::{Origin, Resource};
use monit_host::plugin::{HistoryContext, HistoryPoint, SeriesKey};
use monit_testkit::{
    create_influx_db, influx_url, try_drop_influx_db, unique, victoria_metrics_url,
    write_victoria_metrics,
};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

const BOSH: &str = "micro\"bosh";

/// 70 minutes of 30 s points, none on a minute's edge, ending before `now` (a whole minute):
/// VM 10.0.0.1 at 30 % CPU (two cores, 20 and 40) until half an hour ago, 90 % after (80 and
/// 100); memory 55 %; two mounts at 30 and 70 %. VM 10.0.0.2 at 99 % (not asked for). The
/// director's disk at 91 %. Container web[0] at 30 % of a core, memory 40 %; api[1] (not asked).
fn lines(now: i64) -> (String, String, String) {
    let times: Vec<i64> = (0..140).map(|k| now - 20 - 30 * k).collect();
    let half = now - 1800;
    let (mut cf, mut bosh, mut con) = (String::new(), String::new(), String::new());
    for &t in &times {
        let late = t > half;
        for (ip, metric, v) in [
            ("10.0.0.1", "cpuStats.0", if late { 80.0 } else { 20.0 }),
            ("10.0.0.1", "cpuStats.1", if late { 100.0 } else { 40.0 }),
            ("10.0.0.1", "memoryStats.UsedPercent", 55.0),
            ("10.0.0.1", "diskStats./.Usage", 30.0),
            ("10.0.0.1", "diskStats./var/vcap/data.Usage", 70.0),
            ("10.0.0.2", "cpuStats.0", 99.0),
            ("10.0.0.2", "memoryStats.UsedPercent", 99.0),
        ] {
            cf += &format!("cf_metrics,ip={ip},metricname={metric} value={v} {t}\n");
        }
        bosh +=
            &format!("bosh_metrics,metricname=diskStats.Usage,origin=micro\"bosh value=91 {t}\n");
        for (app, index, cpu_rate) in [("web", 0, 0.3), ("api", 1, 0.9)] {
            let tags = format!(
                "application_id=guid-{app},application_index={index},application_name={app},\
                 cell_ip=10.0.16.21,container_id=/garden/{app},container_interface={app}-{index}"
            );
            let counter = 1000.0 + cpu_rate * (t - times[139]) as f64;
            con += &format!(
                "container_metrics,{tags},name=cpu_usage_total value={counter},app_mem=1e9,app_disk=1e9 {t}\n"
            );
            con += &format!(
                "container_metrics,{tags},name=memory_usage value=4e8,app_mem=1e9,app_disk=1e9 {t}\n"
            );
        }
    }
    (cf, bosh, con)
}

struct Dbs {
    cf: String,
    bosh: String,
    con: String,
}

async fn seed(now: i64) -> (Dbs, InfluxClient, PrometheusClient) {
    let base = unique("history");
    let dbs = Dbs {
        cf: format!("{base}_cf"),
        bosh: format!("{base}_bosh"),
        con: format!("{base}_con"),
    };
    let influx = InfluxClient::new(&InfluxSettings {
        url: influx_url(),
        ..InfluxSettings::default()
    })
    .unwrap();
    let vm_url = victoria_metrics_url();
    let (cf, bosh, con) = lines(now);
    for (db, lp) in [(&dbs.cf, &cf), (&dbs.bosh, &bosh), (&dbs.con, &con)] {
        create_influx_db(&influx_url(), db).await;
        influx.write(db, lp).await.unwrap();
        write_victoria_metrics(&vm_url, db, lp).await;
    }
    let prom = PrometheusClient::new(&PrometheusSettings {
        url: vm_url,
        ..PrometheusSettings::default()
    })
    .unwrap();
    (dbs, influx, prom)
}

fn key(origin: Origin, resource: Resource, ip: &str, app: Option<(&str, i32)>) -> SeriesKey {
    SeriesKey {
        origin,
        resource,
        ip: ip.into(),
        app: app.map(|(a, i)| (a.to_string(), i)),
    }
}

type Read = HashMap<SeriesKey, Vec<HistoryPoint>>;

/// Every key's history from one store, and the queries and rows that took.
async fn read(store: &MetricStore, dbs: &Dbs, now: i64) -> (Read, Read, Read, u64, u64) {
    let ctx = HistoryContext {
        now: chrono::DateTime::from_timestamp(now, 0).unwrap(),
        span: Duration::from_secs(3600),
        step: Duration::from_secs(60),
        bucket_seconds: 30,
        metrics: store,
    };
    let backend = store.backend().as_str();
    let vms = VmHistory {
        db: &dbs.cf,
        measurement: "cf_metrics",
        filter: None,
        group_by: Some("ip"),
    }
    .read(
        &ctx,
        &[
            key(Origin::Pas, Resource::Cpu, "10.0.0.1", None),
            key(Origin::Pas, Resource::Memory, "10.0.0.1", None),
            key(Origin::Pas, Resource::Disk, "10.0.0.1", None),
            // no data at all: left out
            key(Origin::Pas, Resource::Cpu, "10.9.9.9", None),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{backend} VMs: {e}"));
    let (q, rows) = (
        store.stats().queries.load(Relaxed),
        store.stats().rows.load(Relaxed),
    );
    let bosh = VmHistory {
        db: &dbs.bosh,
        measurement: "bosh_metrics",
        filter: Some(("origin", BOSH)),
        group_by: None,
    }
    .read(&ctx, &[key(Origin::Bos, Resource::Disk, "10.0.0.6", None)])
    .await
    .unwrap_or_else(|e| panic!("{backend} bosh: {e}"));
    let source = ContainerSource {
        db: dbs.con.clone(),
        measurement: "container_metrics".into(),
        bucket_seconds: 30,
    };
    let containers = ContainerHistory { source: &source }
        .read(
            &ctx,
            &[
                key(Origin::Con, Resource::Cpu, "10.0.16.21", Some(("web", 0))),
                key(
                    Origin::Con,
                    Resource::Memory,
                    "10.0.16.21",
                    Some(("web", 0)),
                ),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("{backend} containers: {e}"));
    (vms, bosh, containers, q, rows)
}

fn values(r: &Read, k: &SeriesKey) -> Vec<(i64, f64)> {
    r.get(k)
        .unwrap_or_else(|| panic!("no history for {k:?}: {:?}", r.keys()))
        .iter()
        .map(|(t, v)| (t.timestamp(), *v))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.01
}

#[tokio::test]
async fn both_stores_read_the_alarmed_readings_history_alike_in_one_query() {
    let now = chrono::Utc::now().timestamp().div_euclid(60) * 60;
    let (dbs, influx, prom) = seed(now).await;
    let influx = MetricStore::from(influx).history_client();
    let prom = MetricStore::from(prom).history_client();
    let from_influx = read(&influx, &dbs, now).await;
    let from_vm = read(&prom, &dbs, now).await;
    // a time within a minute: the span ends with that minute, in both stores alike
    let (mid_influx, mid_vm) = (
        read(&influx.history_client(), &dbs, now - 90).await,
        read(&prom.history_client(), &dbs, now - 90).await,
    );
    for db in [&dbs.cf, &dbs.bosh, &dbs.con] {
        let _ = try_drop_influx_db(&influx_url(), db).await;
    }
    let cpu = key(Origin::Pas, Resource::Cpu, "10.0.0.1", None);
    let memory = key(Origin::Pas, Resource::Memory, "10.0.0.1", None);
    let disk = key(Origin::Pas, Resource::Disk, "10.0.0.1", None);
    let director = key(Origin::Bos, Resource::Disk, "10.0.0.6", None);
    let web_cpu = key(Origin::Con, Resource::Cpu, "10.0.16.21", Some(("web", 0)));
    let web_memory = key(
        Origin::Con,
        Resource::Memory,
        "10.0.16.21",
        Some(("web", 0)),
    );
    for (backend, (vms, bosh, con, queries, rows)) in
        [("influxdb", &from_influx), ("prometheus", &from_vm)]
    {
        assert_eq!(*queries, 1, "{backend}: one query for every VM key");
        // only 10.0.0.1's series: 5 metrics x 60 steps (InfluxDB rows; Prometheus API
        // samples after the store's fold: 5 series x 60)
        assert!(*rows <= 5 * 61, "{backend}: {rows} rows read");
        assert!(
            !vms.contains_key(&key(Origin::Pas, Resource::Cpu, "10.9.9.9", None)),
            "{backend}"
        );
        let c = values(vms, &cpu);
        assert_eq!(c.len(), 60, "{backend}: a point a minute: {c:?}");
        assert_eq!(c.last().unwrap().0, now, "{backend}");
        assert_eq!(c.first().unwrap().0, now - 3540, "{backend}");
        // the mean over the cores, before and after the step up half an hour ago
        for (t, v) in &c {
            let want = if *t <= now - 1800 { 30.0 } else { 90.0 };
            assert!(close(*v, want), "{backend}: cpu at {t}: {v}, want {want}");
        }
        assert!(
            values(vms, &memory).iter().all(|(_, v)| close(*v, 55.0)),
            "{backend}"
        );
        assert!(
            values(vms, &disk).iter().all(|(_, v)| close(*v, 70.0)),
            "{backend}: the fullest mount"
        );
        assert!(
            values(bosh, &director).iter().all(|(_, v)| close(*v, 91.0)),
            "{backend}: the director, whatever IP its alarm names"
        );
        let wc = values(con, &web_cpu);
        assert!(wc.len() >= 59, "{backend}: {wc:?}");
        assert!(
            wc.iter().all(|(_, v)| (v - 30.0).abs() < 0.5),
            "{backend}: 30 % of one core: {wc:?}"
        );
        assert!(
            values(con, &web_memory)
                .iter()
                .all(|(_, v)| close(*v, 40.0)),
            "{backend}"
        );
        assert_eq!(con.len(), 2, "{backend}: api[1] not asked for");
    }
    // step by step, the same
    assert_eq!(values(&from_influx.0, &cpu), values(&from_vm.0, &cpu));
    let mid = values(&mid_influx.0, &cpu);
    assert_eq!(mid.last().unwrap().0, now - 60, "{mid:?}");
    assert_eq!(mid, values(&mid_vm.0, &cpu));
    let (a, b) = (values(&mid_influx.2, &web_cpu), values(&mid_vm.2, &web_cpu));
    assert_eq!(
        a.iter().map(|p| p.0).collect::<Vec<_>>(),
        b.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    assert!(
        a.iter().zip(&b).all(|(x, y)| (x.1 - y.1).abs() < 0.5),
        "{a:?} {b:?}"
    );
}

#[tokio::test]
async fn an_unreachable_store_is_an_error_naming_it() {
    let store = MetricStore::from(
        InfluxClient::new(&InfluxSettings {
            url: "http://127.0.0.1:9".into(),
            ..InfluxSettings::default()
        })
        .unwrap(),
    );
    let ctx = HistoryContext {
        now: chrono::Utc::now(),
        span: Duration::from_secs(3600),
        step: Duration::from_secs(60),
        bucket_seconds: 30,
        metrics: &store,
    };
    let e = VmHistory {
        db: "cf_metric_db",
        measurement: "cf_metrics",
        filter: None,
        group_by: Some("ip"),
    }
    .read(&ctx, &[key(Origin::Pas, Resource::Cpu, "10.0.0.1", None)])
    .await
    .unwrap_err();
    assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
}
