//! The same PaaS-TA metrics in every store, read by every collector's reader: identical line
//! protocol written to InfluxDB 1.x and to VictoriaMetrics (both real, `scripts/services.sh`),
//! and the same points as OpenMetrics turned into TSDB blocks by `promtool` for a real
//! Prometheus of the test's own. The readings must agree within rounding.
//!
//! Readers: the paasta collector's (VM metrics grouped by `ip`), the bosh collector's (director
//! metrics filtered on `origin`), the container collector's (a window per resource) and
//! autoscale's (one uniform window).

use monit_cf_metrics::container::{
    ContainerSource, ContainerUsage, UsageWindows, read_container_usage,
};
use monit_cf_metrics::vm::{Stats, VmQuery, VmUsage};
use monit_host::config::{InfluxSettings, PrometheusSettings};
use monit_host::metric_store::MetricStore;
use monit_host::metric_store::influx::InfluxClient;
use monit_host::metric_store::prometheus::PrometheusClient;
use monit_testkit::{
    create_influx_db, influx_url, try_drop_influx_db, unique, victoria_metrics_url,
    write_victoria_metrics,
};
use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One point: measurement, tags, fields, time (s).
struct Point {
    measurement: &'static str,
    tags: Vec<(&'static str, String)>,
    fields: Vec<(&'static str, f64)>,
    t: i64,
}

const BOSH_SERVICE: &str = "micro\"bosh";

/// 15 minutes of 30 s points ending 5 s before `now` (no point on a window's edge).
fn points(now: i64) -> Vec<Point> {
    let times: Vec<i64> = (0..30).rev().map(|k| now - 5 - 30 * k).collect();
    let mut out = Vec::new();
    let mut vm = |ip: &str, metric: &str, value: &dyn Fn(usize) -> f64| {
        for (i, t) in times.iter().enumerate() {
            out.push(Point {
                measurement: "cf_metrics",
                tags: vec![
                    ("ip", ip.to_string()),
                    ("job", "cell".into()),
                    ("metricname", metric.to_string()),
                ],
                fields: vec![("value", value(i))],
                t: *t,
            });
        }
    };
    // 2.0/3.0 writer
    vm("10.0.0.1", "cpuStats.0", &|i| 40.0 + (i % 7) as f64 * 5.0);
    vm("10.0.0.1", "cpuStats.1", &|i| 60.0 + (i % 3) as f64 * 10.0);
    vm("10.0.0.1", "memoryStats.UsedPercent", &|i| {
        50.0 + (i % 5) as f64
    });
    vm("10.0.0.1", "diskStats.Usage", &|_| 40.0);
    // newer agent: memory from Available/Total, two mounts
    vm("10.0.0.2", "cpuStats.core.0", &|i| 10.0 + i as f64);
    vm("10.0.0.2", "memoryStats.TotalMemory", &|_| 8.0e9);
    vm("10.0.0.2", "memoryStats.AvailableMemory", &|i| {
        2.0e9 + (i % 4) as f64 * 1.0e8
    });
    vm("10.0.0.2", "memoryStats.FreeMemory", &|_| 1.0e9);
    vm("10.0.0.2", "diskStats./.Usage", &|i| {
        30.0 + (i % 2) as f64 * 50.0
    });
    vm("10.0.0.2", "diskStats./var/vcap/data.Usage", &|_| 70.0);
    // the BOSH director
    for (i, t) in times.iter().enumerate() {
        for (metric, v) in [
            ("cpuStats.core.0", 20.0 + (i % 2) as f64 * 60.0),
            ("memoryStats.UsedPercent", 70.0),
            ("diskStats.Usage", 91.0),
        ] {
            out.push(Point {
                measurement: "bosh_metrics",
                tags: vec![
                    ("metricname", metric.to_string()),
                    ("origin", BOSH_SERVICE.to_string()),
                ],
                fields: vec![("value", v)],
                t: *t,
            });
        }
    }
    // app containers: a steady counter (30% of one core), one that restarts in the window (the
    // counter starts again from 0, 20% throughout), one stopped 10 minutes ago, one whose
    // memory limit wrapped (2020+ writer), and a system container (no application_name)
    let container = |app: &str, index: u32| {
        vec![
            ("application_id", format!("guid-{app}")),
            ("application_index", index.to_string()),
            ("application_name", app.to_string()),
            ("cell_ip", "10.0.16.21".to_string()),
            ("container_id", format!("/garden/{app}-{index}")),
            ("container_interface", format!("{app}-{index}")),
        ]
    };
    let mut series = |name: &'static str,
                      tags: Vec<(&'static str, String)>,
                      until: usize,
                      value: &dyn Fn(usize) -> f64,
                      limit: f64| {
        for (i, t) in times.iter().enumerate().take(until) {
            let mut tags = tags.clone();
            tags.push(("name", name.to_string()));
            out.push(Point {
                measurement: "container_metrics",
                tags,
                fields: vec![("value", value(i)), ("app_mem", limit), ("app_disk", limit)],
                t: *t,
            });
        }
    };
    let all = times.len();
    series(
        "cpu_usage_total",
        container("web", 0),
        all,
        &|i| 1000.0 + 9.0 * i as f64,
        1e9,
    );
    series(
        "memory_usage",
        container("web", 0),
        all,
        &|i| 4.0e8 + (i % 3) as f64 * 1.0e8,
        1e9,
    );
    series("disk_usage", container("web", 0), all, &|_| 2.5e8, 1e9);
    // restart after point 19 (5 min before now): from 0 again at the same rate
    series(
        "cpu_usage_total",
        container("api", 1),
        all,
        &|i| {
            if i <= 19 {
                500.0 + 6.0 * i as f64
            } else {
                6.0 * (i - 19) as f64
            }
        },
        1e9,
    );
    series("memory_usage", container("api", 1), all, &|_| 9.0e8, 1e9);
    // stopped 10 minutes ago
    series(
        "cpu_usage_total",
        container("gone", 0),
        10,
        &|i| 9.0 * i as f64,
        1e9,
    );
    series("memory_usage", container("gone", 0), 10, &|_| 9.9e8, 1e9);
    // wrapped limit: memory unusable, CPU fine
    series(
        "cpu_usage_total",
        container("big", 0),
        all,
        &|i| 3.0 * i as f64,
        -2.0e9,
    );
    series("memory_usage", container("big", 0), all, &|_| 3.0e9, -2.0e9);
    let mut system = container("sys", 0);
    system.retain(|(k, _)| *k != "application_name");
    series("memory_usage", system, all, &|_| 1.0e9, 1e9);
    out
}

fn escape_lp(s: &str) -> String {
    s.replace(',', "\\,")
        .replace('=', "\\=")
        .replace(' ', "\\ ")
}

fn line_protocol(points: &[Point], measurement: &str) -> String {
    let mut out = String::new();
    for p in points.iter().filter(|p| p.measurement == measurement) {
        out.push_str(p.measurement);
        for (k, v) in &p.tags {
            out.push_str(&format!(",{k}={}", escape_lp(v)));
        }
        let fields: Vec<String> = p.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(" {} {}\n", fields.join(","), p.t));
    }
    out
}

/// The points as OpenMetrics, named as VictoriaMetrics names line protocol
/// (`<measurement>_<field>{tags, db="<db>"}`), each family together, each series in time order.
fn open_metrics(points: &[Point], db_of: &dyn Fn(&str) -> String) -> String {
    let mut families: BTreeMap<String, BTreeMap<String, Vec<(i64, f64)>>> = BTreeMap::new();
    for p in points {
        for (field, v) in &p.fields {
            let mut labels: Vec<String> = p
                .tags
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            labels.push(format!("db=\"{}\"", db_of(p.measurement)));
            labels.sort();
            families
                .entry(format!("{}_{field}", p.measurement))
                .or_default()
                .entry(labels.join(","))
                .or_default()
                .push((p.t, *v));
        }
    }
    let mut out = String::new();
    for (name, series) in families {
        out.push_str(&format!("# TYPE {name} gauge\n"));
        for (labels, mut samples) in series {
            samples.sort_by_key(|s| s.0);
            for (t, v) in samples {
                out.push_str(&format!("{name}{{{labels}}} {v} {t}\n"));
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

struct Dbs {
    cf: String,
    bosh: String,
    con: String,
}

impl Dbs {
    fn new(tag: &str) -> Dbs {
        let base = unique(tag);
        Dbs {
            cf: format!("{base}_cf"),
            bosh: format!("{base}_bosh"),
            con: format!("{base}_con"),
        }
    }
    fn of(&self, measurement: &str) -> String {
        match measurement {
            "cf_metrics" => self.cf.clone(),
            "bosh_metrics" => self.bosh.clone(),
            _ => self.con.clone(),
        }
    }
}

/// What every reader read from one store.
#[derive(Debug)]
struct Readings {
    paasta: HashMap<String, VmUsage>,
    bosh: HashMap<String, VmUsage>,
    container: Vec<ContainerUsage>,
    autoscale: Vec<ContainerUsage>,
}

fn paasta_query(dbs: &Dbs, now: i64) -> VmQuery<'_> {
    VmQuery {
        db: &dbs.cf,
        measurement: "cf_metrics",
        filter: None,
        group_by: Some("ip"),
        windows: UsageWindows {
            cpu: Duration::from_secs(600),
            memory: Duration::from_secs(300),
            disk: Duration::from_secs(120),
        },
        bucket_seconds: 30,
        end_epoch: now,
    }
}

fn bosh_query<'a>(dbs: &'a Dbs, service: &'a str, now: i64) -> VmQuery<'a> {
    VmQuery {
        db: &dbs.bosh,
        measurement: "bosh_metrics",
        filter: Some(("origin", service)),
        group_by: None,
        windows: UsageWindows::uniform(Duration::from_secs(300)),
        bucket_seconds: 30,
        end_epoch: now,
    }
}

async fn read_all(store: &MetricStore, dbs: &Dbs, now: i64) -> Readings {
    let at = chrono::DateTime::from_timestamp(now, 0).unwrap();
    let source = ContainerSource {
        db: dbs.con.clone(),
        measurement: "container_metrics".into(),
        bucket_seconds: 30,
    };
    let per_resource = UsageWindows {
        cpu: Duration::from_secs(600),
        memory: Duration::from_secs(300),
        disk: Duration::from_secs(120),
    };
    let backend = store.backend().as_str();
    Readings {
        paasta: paasta_query(dbs, now)
            .read(store)
            .await
            .unwrap_or_else(|e| panic!("{backend} paasta: {e}")),
        bosh: bosh_query(dbs, BOSH_SERVICE, now)
            .read(store)
            .await
            .unwrap_or_else(|e| panic!("{backend} bosh: {e}")),
        container: read_container_usage(store, &source, &per_resource, at)
            .await
            .unwrap_or_else(|e| panic!("{backend} container: {e}")),
        autoscale: read_container_usage(
            store,
            &source,
            &UsageWindows::uniform(Duration::from_secs(300)),
            at,
        )
        .await
        .unwrap_or_else(|e| panic!("{backend} autoscale: {e}")),
    }
}

fn close_stats(what: &str, a: Option<Stats>, b: Option<Stats>) {
    match (a, b) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            let tol = |x: f64| 0.01 + x.abs() * 1e-6;
            assert!(
                (a.mean - b.mean).abs() <= tol(a.mean),
                "{what}: mean {} vs {}",
                a.mean,
                b.mean
            );
            assert!(
                (a.peak - b.peak).abs() <= tol(a.peak),
                "{what}: peak {} vs {}",
                a.peak,
                b.peak
            );
            assert!(
                a.buckets.abs_diff(b.buckets) <= 1,
                "{what}: buckets {} vs {}",
                a.buckets,
                b.buckets
            );
        }
        (a, b) => panic!("{what}: {a:?} vs {b:?}"),
    }
}

fn same_vms(what: &str, a: &HashMap<String, VmUsage>, b: &HashMap<String, VmUsage>) {
    let mut ka: Vec<_> = a.keys().collect();
    let mut kb: Vec<_> = b.keys().collect();
    ka.sort();
    kb.sort();
    assert_eq!(ka, kb, "{what}: the same VMs");
    for (k, ua) in a {
        let ub = &b[k];
        close_stats(&format!("{what} {k} cpu"), ua.cpu, ub.cpu);
        close_stats(&format!("{what} {k} memory"), ua.memory, ub.memory);
        close_stats(&format!("{what} {k} disk"), ua.disk, ub.disk);
    }
}

fn same_containers(what: &str, a: &[ContainerUsage], b: &[ContainerUsage]) {
    let key = |c: &ContainerUsage| (c.app_name.clone(), c.app_index, c.container.clone());
    let by = |v: &[ContainerUsage]| -> BTreeMap<_, ContainerUsage> {
        v.iter().map(|c| (key(c), c.clone())).collect()
    };
    let (a, b) = (by(a), by(b));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}: the same containers"
    );
    for (k, ca) in &a {
        let cb = &b[k];
        assert_eq!(
            (&ca.cell_ip, &ca.app_guid),
            (&cb.cell_ip, &cb.app_guid),
            "{what} {k:?}"
        );
        close_stats(&format!("{what} {k:?} cpu"), ca.cpu, cb.cpu);
        close_stats(&format!("{what} {k:?} memory"), ca.memory, cb.memory);
        close_stats(&format!("{what} {k:?} disk"), ca.disk, cb.disk);
    }
}

fn same(a: &Readings, b: &Readings) {
    same_vms("paasta", &a.paasta, &b.paasta);
    same_vms("bosh", &a.bosh, &b.bosh);
    same_containers("container", &a.container, &b.container);
    same_containers("autoscale", &a.autoscale, &b.autoscale);
}

/// The readings themselves are right (so agreeing stores are not agreeing on nonsense).
fn check_values(r: &Readings) {
    let a = &r.paasta["10.0.0.1"];
    assert!(
        a.cpu.is_some() && a.memory.is_some() && a.disk.is_some(),
        "{a:?}"
    );
    assert_eq!(a.disk.unwrap().mean, 40.0);
    let b = &r.paasta["10.0.0.2"];
    let disk = b.disk.unwrap();
    assert_eq!(disk.mean, 70.0, "the fullest mount by mean");
    assert_eq!(disk.peak, 80.0, "the highest point of any mount");
    let bosh = &r.bosh[""];
    assert_eq!(bosh.disk.unwrap().mean, 91.0, "{bosh:?}");
    let names: Vec<_> = r.container.iter().map(|c| &*c.app_name).collect();
    assert!(
        names.contains(&"web") && names.contains(&"api") && names.contains(&"big"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"gone"),
        "a stopped container is left out: {names:?}"
    );
    assert!(!names.contains(&"sys"), "not an app container: {names:?}");
    let web = r.container.iter().find(|c| *c.app_name == *"web").unwrap();
    assert!((web.cpu.unwrap().mean - 30.0).abs() < 0.01, "{web:?}");
    let api = r.container.iter().find(|c| *c.app_name == *"api").unwrap();
    assert!(
        (api.cpu.unwrap().mean - 20.0).abs() < 0.01,
        "a restart is no negative rate: {api:?}"
    );
    assert!((api.memory.unwrap().mean - 90.0).abs() < 0.01, "{api:?}");
    let big = r.container.iter().find(|c| *c.app_name == *"big").unwrap();
    assert!(big.memory.is_none() && big.cpu.is_some(), "{big:?}");
}

async fn write_influx(dbs: &Dbs, points: &[Point]) -> InfluxClient {
    let influx = InfluxClient::new(&InfluxSettings {
        url: influx_url(),
        ..InfluxSettings::default()
    })
    .unwrap();
    for (db, m) in [
        (&dbs.cf, "cf_metrics"),
        (&dbs.bosh, "bosh_metrics"),
        (&dbs.con, "container_metrics"),
    ] {
        create_influx_db(&influx_url(), db).await;
        influx.write(db, &line_protocol(points, m)).await.unwrap();
    }
    influx
}

async fn drop_influx(dbs: &Dbs) {
    for db in [&dbs.cf, &dbs.bosh, &dbs.con] {
        let _ = try_drop_influx_db(&influx_url(), db).await;
    }
}

fn prometheus_client(url: &str) -> PrometheusClient {
    PrometheusClient::new(&PrometheusSettings {
        url: url.to_string(),
        ..PrometheusSettings::default()
    })
    .unwrap()
}

#[tokio::test]
async fn influxdb_and_victoria_metrics_read_the_same_for_every_collector() {
    let now = chrono::Utc::now().timestamp();
    let dbs = Dbs::new("stores_diff");
    let points = points(now);
    let influx = write_influx(&dbs, &points).await;
    let vm_url = victoria_metrics_url();
    for (db, m) in [
        (&dbs.cf, "cf_metrics"),
        (&dbs.bosh, "bosh_metrics"),
        (&dbs.con, "container_metrics"),
    ] {
        write_victoria_metrics(&vm_url, db, &line_protocol(&points, m)).await;
    }
    let from_influx = read_all(&influx.clone().into(), &dbs, now).await;
    let vm = MetricStore::from(prometheus_client(&vm_url));
    let from_vm = read_all(&vm, &dbs, now).await;
    drop_influx(&dbs).await;
    check_values(&from_influx);
    same(&from_influx, &from_vm);
    // a fixed number of queries whatever the fleet, one per rollup (docs/benchmarks.md, issue
    // 20 item 7): a VM reader 4 per resource, a container reader 3 for CPU and 4 each for
    // memory and disk
    let q = vm
        .stats()
        .queries
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        q,
        12 + 12 + 11 + 11,
        "paasta 12, bosh 12, container 11, autoscale 11"
    );
}

/// The readers keep only what their collector wants (the inventory's VMs and cells, the apps
/// with a policy), in both stores, and read those exactly as without the filter.
#[tokio::test]
async fn only_wanted_vms_and_containers_are_kept() {
    use monit_cf_metrics::container::{Wanted, read_container_usage_of};
    use std::collections::HashSet;
    let now = chrono::Utc::now().timestamp();
    let at = chrono::DateTime::from_timestamp(now, 0).unwrap();
    let dbs = Dbs::new("stores_wanted");
    let points = points(now);
    let influx = write_influx(&dbs, &points).await;
    let vm_url = victoria_metrics_url();
    for (db, m) in [(&dbs.cf, "cf_metrics"), (&dbs.con, "container_metrics")] {
        write_victoria_metrics(&vm_url, db, &line_protocol(&points, m)).await;
    }
    let source = ContainerSource {
        db: dbs.con.clone(),
        measurement: "container_metrics".into(),
        bucket_seconds: 30,
    };
    let w = UsageWindows::uniform(Duration::from_secs(300));
    for store in [
        MetricStore::from(influx.clone()),
        MetricStore::from(prometheus_client(&vm_url)),
    ] {
        let backend = store.backend().as_str();
        let all = paasta_query(&dbs, now).read(&store).await.unwrap();
        let inventory: HashSet<&str> = ["10.0.0.2", "10.9.9.9"].into();
        let only = paasta_query(&dbs, now)
            .read_only(&store, &inventory)
            .await
            .unwrap();
        assert_eq!(
            only.keys().collect::<Vec<_>>(),
            ["10.0.0.2"],
            "{backend}: the inventory VM with data, nothing else"
        );
        same_vms(
            backend,
            &only,
            &all.into_iter().filter(|(k, _)| k == "10.0.0.2").collect(),
        );

        let every = read_container_usage(&store, &source, &w, at).await.unwrap();
        let guids: HashSet<String> = ["guid-web".to_string()].into();
        let apps = Wanted {
            cells: None,
            app_guids: Some(&guids),
            narrow: None,
        };
        let web = read_container_usage_of(&store, &source, &w, at, apps)
            .await
            .unwrap();
        let expected: Vec<ContainerUsage> = every
            .iter()
            .filter(|c| *c.app_name == *"web")
            .cloned()
            .collect();
        assert_eq!(web.len(), 1, "{backend}: {web:?}");
        same_containers(backend, &web, &expected);
        let cells: monit_cf_metrics::container::CellSet = ["10.0.16.21"].into_iter().collect();
        let on_cell = Wanted {
            cells: Some(&cells),
            app_guids: None,
            narrow: None,
        };
        let kept = read_container_usage_of(&store, &source, &w, at, on_cell)
            .await
            .unwrap();
        same_containers(backend, &kept, &every);
        let elsewhere: monit_cf_metrics::container::CellSet = ["10.0.16.99"].into_iter().collect();
        let none = read_container_usage_of(
            &store,
            &source,
            &w,
            at,
            Wanted {
                cells: Some(&elsewhere),
                app_guids: None,
                narrow: None,
            },
        )
        .await
        .unwrap();
        assert!(none.is_empty(), "{backend}: {none:?}");
    }
    drop_influx(&dbs).await;
}

/// A BOSH service name with a quote, a backslash or a line break (config values reach the
/// query) is matched literally in both languages: never a syntax error, never other series.
#[tokio::test]
async fn label_values_are_escaped_no_injection() {
    let now = chrono::Utc::now().timestamp();
    let dbs = Dbs::new("stores_esc");
    let points = points(now);
    let influx = write_influx(&dbs, &points).await;
    let vm_url = victoria_metrics_url();
    write_victoria_metrics(&vm_url, &dbs.bosh, &line_protocol(&points, "bosh_metrics")).await;
    let stores = [
        MetricStore::from(influx),
        MetricStore::from(prometheus_client(&vm_url)),
    ];
    for store in &stores {
        let backend = store.backend().as_str();
        let found = bosh_query(&dbs, BOSH_SERVICE, now)
            .read(store)
            .await
            .unwrap();
        assert!(
            found.get("").is_some_and(|u| u.disk.is_some()),
            "{backend}: the service name with a quote matches its own series: {found:?}"
        );
        for hostile in [
            "micro\"} or vector(1) or {a=\"",
            "micro\" or \"origin\" =~ /.*/ --",
            "micro' OR 'a'='a",
            "micro\\",
            "micro\\\"bosh",
            "micro\nbosh",
            ".*",
        ] {
            let got = bosh_query(&dbs, hostile, now)
                .read(store)
                .await
                .unwrap_or_else(|e| panic!("{backend} {hostile:?}: {e}"));
            assert!(got.is_empty(), "{backend} {hostile:?}: {got:?}");
        }
    }
    drop_influx(&dbs).await;
}

/// A Prometheus of the test's own on a free port, serving TSDB blocks made by promtool.
struct OwnPrometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl OwnPrometheus {
    fn start(open_metrics: &str) -> OwnPrometheus {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.om");
        std::fs::write(&data, open_metrics).unwrap();
        let tsdb = dir.path().join("tsdb");
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&data)
            .arg(&tsdb)
            .output()
            .expect("promtool (Debian package prometheus; scripts/services.sh installs it)");
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1d")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus)");
        OwnPrometheus {
            child,
            port,
            _dir: dir,
        }
    }

    async fn ready(&self) {
        let url = format!("http://127.0.0.1:{}/-/ready", self.port);
        for _ in 0..300 {
            if reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("prometheus on port {} not ready in 30 s", self.port);
    }
}

impl Drop for OwnPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The PromQL runs unchanged on Prometheus itself (the API Thanos and Mimir serve too): the
/// same points, as TSDB blocks, read the same as from InfluxDB.
#[tokio::test]
async fn prometheus_with_promtool_blocks_reads_the_same_as_influxdb() {
    let now = chrono::Utc::now().timestamp();
    let dbs = Dbs::new("stores_prom");
    let points = points(now);
    let influx = write_influx(&dbs, &points).await;
    let prom = OwnPrometheus::start(&open_metrics(&points, &|m| dbs.of(m)));
    prom.ready().await;
    let store = MetricStore::from(prometheus_client(&format!(
        "http://127.0.0.1:{}",
        prom.port
    )));
    let from_prom = read_all(&store, &dbs, now).await;
    let from_influx = read_all(&influx.into(), &dbs, now).await;
    drop_influx(&dbs).await;
    check_values(&from_prom);
    same(&from_influx, &from_prom);
}

/// A VictoriaMetrics of the test's own with basic auth: the login from `prometheus.user` /
/// `password` or from the URL's userinfo is sent; without it the store's 401 is an error that
/// names the URL and never the password.
#[tokio::test]
async fn basic_auth_reaches_a_store_that_requires_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("victoria-metrics")
        .arg(format!("-storageDataPath={}", dir.path().display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .args([
            "-httpAuth.username=reader",
            "-httpAuth.password=pw-secret-9",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("victoria-metrics (Debian package; scripts/services.sh installs it)");
    // the server is stopped (by its pid) whatever the assertions say
    let _server = StopOnDrop(child);
    let url = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..300 {
        if reqwest::get(format!("{url}/health")).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = |url: String, user: Option<&str>, password: &str| {
        PrometheusClient::new(&PrometheusSettings {
            url,
            user: user.map(str::to_string),
            password: monit_host::config::secret::Secret::new(password),
            ..PrometheusSettings::default()
        })
        .unwrap()
    };
    {
        assert!(up, "victoria-metrics on port {port} did not come up");
        let none = client(url.clone(), None, "")
            .query("vector(1)", 1_800_000_000)
            .await;
        let e = none.expect_err("no login: refused");
        let text = e.to_string();
        assert!(text.contains(&url) && text.contains("401"), "{text}");
        let wrong = client(url.clone(), Some("reader"), "nope")
            .query("vector(1)", 1_800_000_000)
            .await
            .expect_err("wrong password: refused");
        assert!(!wrong.to_string().contains("nope"), "{wrong}");
        let ok = client(url.clone(), Some("reader"), "pw-secret-9")
            .query("vector(1)", 1_800_000_000)
            .await
            .unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].value, 1.0);
        let in_url = client(
            format!("http://reader:pw-secret-9@127.0.0.1:{port}"),
            None,
            "",
        );
        assert!(!format!("{in_url:?}").contains("pw-secret-9"));
        assert_eq!(in_url.url(), url, "userinfo taken out of the URL");
        assert_eq!(
            in_url
                .query("vector(1)", 1_800_000_000)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

struct StopOnDrop(Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
