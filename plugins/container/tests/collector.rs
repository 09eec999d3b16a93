//! The container collector against the real InfluxDB: every folder under `tests/cases/` is one
//! case (points to write, the inventory, the windows, the readings expected); the tests below
//! it cover what a case file cannot say (query count, errors).
//!
//! Case points are written relative to the collector's `now`, one point every `every` seconds
//! as cAdvisor flushes them, so with `every` a multiple of the bucket width every point lands
//! in its own bucket whatever the phase of `now`: the expected percentages are exact, and the
//! comparison tolerance (1e-6) only absorbs floating-point rounding.

use chrono::Utc;
use monit_host::config::InfluxSettings;
use monit_host::metric_store::influx::InfluxClient;
use monit_host::model::{Measured, Origin, Reading, Resource, Vm};
use monit_host::plugin::Windows;
use monit_host::{CollectContext, Collector};
use monit_plugin_container::ContainerCollector;
use monit_testkit::{create_influx_db, drop_influx_db, influx_url, unique};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TOLERANCE: f64 = 1e-6;

fn unique_db(tag: &str) -> String {
    unique(&format!("monit_test_container_{tag}"))
}

fn collector(db: &str, measurement: &str) -> ContainerCollector {
    ContainerCollector {
        db: db.to_string(),
        measurement: measurement.to_string(),
    }
}

fn client() -> InfluxClient {
    InfluxClient::new(&InfluxSettings {
        url: influx_url(),
        ..InfluxSettings::default()
    })
    .unwrap()
}

/// Line-protocol escaping of a measurement name.
fn lp_measurement(m: &str) -> String {
    m.replace(',', "\\,").replace(' ', "\\ ")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[allow(dead_code)]
    description: String,
    #[serde(default = "default_measurement")]
    measurement: String,
    /// seconds; `default` applies to a resource without its own
    windows: HashMap<String, u64>,
    cells: Vec<CaseVm>,
    #[serde(default)]
    series: Vec<CaseSeries>,
    expected: Vec<Expected>,
}

fn default_measurement() -> String {
    "container_metrics".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseVm {
    id: i64,
    name: String,
    ip: String,
    vm_type: String,
}

/// One run of points of one series: at `now + from`, `now + from + every`, … up to `now + to`,
/// the k-th point's value is `start + k × step`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSeries {
    /// line-protocol tag set (escaped as line protocol wants), without `name`
    tags: String,
    name: String,
    /// extra line-protocol fields, e.g. `app_mem=1073741824,app_disk=1073741824`
    #[serde(default)]
    fields: String,
    from: i64,
    to: i64,
    every: i64,
    start: f64,
    #[serde(default)]
    step: f64,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Expected {
    app_name: String,
    app_index: i32,
    container: String,
    cell_id: i64,
    cell_name: String,
    ip: String,
    resource: Resource,
    mean: f64,
    peak: f64,
}

fn lines(case: &Case, now: i64) -> String {
    let m = lp_measurement(&case.measurement);
    let mut out = String::new();
    for s in &case.series {
        let mut t = s.from;
        let mut k = 0.0;
        while t <= s.to {
            let fields = if s.fields.is_empty() {
                String::new()
            } else {
                format!("{},", s.fields)
            };
            let v = s.start + k * s.step;
            out.push_str(&format!(
                "{m},{},name={} {fields}value={v} {}\n",
                s.tags,
                s.name,
                now + t
            ));
            t += s.every;
            k += 1.0;
        }
    }
    out
}

fn windows(w: &HashMap<String, u64>) -> Windows {
    let mut by_key = HashMap::new();
    for r in Resource::ALL {
        if let Some(s) = w.get(r.code()) {
            by_key.insert((Origin::Con, r), Duration::from_secs(*s));
        }
    }
    Windows {
        by_key,
        default: Duration::from_secs(*w.get("default").unwrap_or(&600)),
    }
}

fn vms(cells: &[CaseVm]) -> Vec<Vm> {
    cells
        .iter()
        .map(|c| Vm {
            id: c.id,
            zone_id: 1,
            zone_name: Some("z1".into()),
            name: c.name.clone(),
            ip: c.ip.clone(),
            vm_type: c.vm_type.clone(),
        })
        .collect()
}

fn actual(readings: &[Reading]) -> Vec<Expected> {
    let mut out: Vec<Expected> = readings
        .iter()
        .map(|r| {
            let Measured::Usage {
                resource,
                mean,
                peak,
                ..
            } = r.value
            else {
                panic!("container readings must never be NoData: {r:?}");
            };
            assert_eq!(r.target.origin, Origin::Con);
            let app = r
                .target
                .app
                .as_ref()
                .expect("a container reading carries its app");
            assert_eq!(r.target.name, app.app_name);
            Expected {
                app_name: app.app_name.to_string(),
                app_index: app.app_index,
                container: app.container_name.to_string(),
                cell_id: r.target.origin_id,
                cell_name: app.cell_name.to_string(),
                ip: r.target.ip.to_string(),
                resource,
                mean,
                peak,
            }
        })
        .collect();
    sort(&mut out);
    out
}

fn sort(v: &mut [Expected]) {
    v.sort_by(|a, b| {
        (&a.app_name, a.app_index, a.resource).cmp(&(&b.app_name, b.app_index, b.resource))
    });
}

fn matches(a: &[Expected], e: &[Expected]) -> bool {
    a.len() == e.len()
        && a.iter().zip(e).all(|(a, e)| {
            (
                &a.app_name,
                a.app_index,
                &a.container,
                a.cell_id,
                &a.cell_name,
                &a.ip,
                a.resource,
            ) == (
                &e.app_name,
                e.app_index,
                &e.container,
                e.cell_id,
                &e.cell_name,
                &e.ip,
                e.resource,
            ) && (a.mean - e.mean).abs() < TOLERANCE
                && (a.peak - e.peak).abs() < TOLERANCE
        })
}

async fn run_case(dir: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(dir.join("case.json")).unwrap();
    let case: Case = serde_json::from_str(&text).map_err(|e| format!("case.json: {e}"))?;
    let db = unique_db(dir.file_name().unwrap().to_str().unwrap());
    let influx = client();
    create_influx_db(&influx_url(), &db).await;
    let now = Utc::now();
    let points = lines(&case, now.timestamp());
    let written = influx.write(&db, &points).await;
    let collector = collector(&db, &case.measurement);
    let cells = vms(&case.cells);
    let windows = windows(&case.windows);
    let ctx = CollectContext {
        now,
        bucket_seconds: 30,
        metrics: &influx.clone().into(),
        vms: &cells,
        windows: &windows,
        targets: None,
        narrow_to_vms: false,
        quiet: None,
    };
    let result = collector.collect(&ctx).await;
    drop_influx_db(&influx_url(), &db).await;
    written.map_err(|e| format!("writing the points: {e}"))?;
    let readings = result.map_err(|e| format!("collect failed: {e:#}"))?;
    let got = actual(&readings);
    let mut want = case.expected.clone();
    sort(&mut want);
    if matches(&got, &want) {
        Ok(())
    } else {
        Err(format!(
            "readings differ\n  got:  {got:#?}\n  want: {want:#?}"
        ))
    }
}

#[tokio::test]
async fn cases() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 5,
        "expected the case folders under {}",
        root.display()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        if let Err(e) = run_case(dir).await {
            failures.push(format!(
                "case {}: {e}",
                dir.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn cell(id: i64, ip: &str) -> Vm {
    Vm {
        id,
        zone_id: 1,
        zone_name: Some("z1".into()),
        name: format!("diego-cell/{id}"),
        ip: ip.into(),
        vm_type: "cel".into(),
    }
}

/// Container `id` on `cell_ip` over the 5 minutes before `now`, a point every 30 s: a CPU counter
/// rising by 3 a point (10 % of a core), memory and disk (when given) against limits of 1000.
fn container_lines(
    id: usize,
    cell_ip: &str,
    now: chrono::DateTime<Utc>,
    memory: usize,
    disk: Option<usize>,
) -> String {
    let tags = format!(
        "application_id=guid-{id},application_index=0,application_name=app-{id},cell_ip={cell_ip},container_id=/garden/{id},container_interface=if-{id}"
    );
    let f = "app_mem=1000,app_disk=1000";
    let mut out = String::new();
    for k in 0..=10i64 {
        let t = now.timestamp() - 300 + k * 30;
        out.push_str(&format!(
            "container_metrics,{tags},name=cpu_usage_total {f},value={} {t}\n",
            3 * k
        ));
        out.push_str(&format!(
            "container_metrics,{tags},name=memory_usage {f},value={memory} {t}\n"
        ));
        if let Some(disk) = disk {
            out.push_str(&format!(
                "container_metrics,{tags},name=disk_usage {f},value={disk} {t}\n"
            ));
        }
    }
    out
}

/// `monit_influx_queries_total` as counted while `f` runs on this thread.
fn count_queries<T>(
    rt: &tokio::runtime::Runtime,
    f: impl std::future::Future<Output = T>,
) -> (T, u64) {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let out = metrics::with_local_recorder(&recorder, || rt.block_on(f));
    let queries = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == "monit_influx_queries_total")
        .map(|(.., v)| match v {
            DebugValue::Counter(n) => n,
            other => panic!("monit_influx_queries_total is not a counter: {other:?}"),
        })
        .sum();
    (out, queries)
}

#[test]
fn one_query_for_many_containers_on_many_cells() {
    // current-thread runtime: the futures run on this thread, where the local recorder is set
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = unique_db("count");
    let influx = client();
    let now = Utc::now();
    let cells: Vec<Vm> = (0..4)
        .map(|i| cell(100 + i, &format!("10.0.17.{i}")))
        .collect();
    let points: String = (0..40)
        .map(|c| container_lines(c, &format!("10.0.17.{}", c % 4), now, 100, Some(200)))
        .collect();
    rt.block_on(async {
        create_influx_db(&influx_url(), &db).await;
        influx.write(&db, &points).await.unwrap();
    });
    let collector = collector(&db, "container_metrics");
    let windows = Windows {
        by_key: HashMap::new(),
        default: Duration::from_secs(300),
    };
    let ctx = CollectContext {
        now,
        bucket_seconds: 30,
        metrics: &influx.clone().into(),
        vms: &cells,
        windows: &windows,
        targets: None,
        narrow_to_vms: false,
        quiet: None,
    };
    use std::sync::atomic::Ordering::Relaxed;
    let rows_read = |f: std::pin::Pin<
        Box<
            dyn std::future::Future<Output = anyhow::Result<Vec<monit_host::model::Reading>>>
                + Send
                + '_,
        >,
    >| {
        let before = influx.stats.rows.load(Relaxed);
        let readings = rt.block_on(f).unwrap();
        (readings, influx.stats.rows.load(Relaxed) - before)
    };
    let (result, queries) = count_queries(&rt, collector.collect(&ctx));
    let all_rows = influx.stats.rows.load(Relaxed);
    // a reconciliation's part of the inventory (one cell of four): the query names its cell,
    // and the store answers a quarter of the rows
    let one_cell = [cells[1].clone()];
    let part = CollectContext {
        vms: &one_cell,
        narrow_to_vms: true,
        quiet: None,
        ..ctx
    };
    let (narrowed, narrowed_rows) = rows_read(collector.collect(&part));
    // without narrowing, the same readings from every cell's rows, dropped while decoded
    let (dropped, dropped_rows) = rows_read(collector.collect(&CollectContext {
        narrow_to_vms: false,
        quiet: None,
        ..part
    }));
    rt.block_on(drop_influx_db(&influx_url(), &db));
    let readings = result.unwrap();
    assert_eq!(
        queries, 3,
        "one InfluxDB query per series (cpu, memory, disk) for 40 containers on 4 cells"
    );
    assert_eq!(readings.len(), 40 * 3);
    assert_eq!(narrowed.len(), 10 * 3, "{narrowed:?}");
    assert!(narrowed.iter().all(|r| &*r.target.ip == "10.0.17.1"));
    assert_eq!(narrowed, dropped);
    assert_eq!(dropped_rows, all_rows, "the whole measurement is read");
    assert!(
        narrowed_rows * 4 <= all_rows && narrowed_rows > 0,
        "{narrowed_rows} rows of {all_rows}"
    );
    for r in &readings {
        let Measured::Usage { resource, mean, .. } = r.value else {
            panic!("{r:?}")
        };
        let want = match resource {
            Resource::Cpu => 10.0,
            Resource::Memory => 10.0,
            Resource::Disk => 20.0,
        };
        assert!((mean - want).abs() < TOLERANCE, "{r:?}");
    }

    // and none at all when the inventory has no cell
    let no_cells = [Vm {
        vm_type: "pas".into(),
        ..cell(1, "10.0.17.0")
    }];
    let ctx = CollectContext {
        vms: &no_cells,
        ..ctx
    };
    let (result, queries) = count_queries(&rt, collector.collect(&ctx));
    assert_eq!(result.unwrap(), Vec::new());
    assert_eq!(queries, 0);
}

#[test]
fn asked_for_parts_a_store_is_read_a_hundred_cells_at_a_time() {
    // current-thread runtime: the futures run on this thread, where the local recorder is set
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = unique_db("parts");
    let influx = client();
    let now = Utc::now();
    // 250 cells: three parts (100, 100, 50), two containers each
    let cells: Vec<Vm> = (0..250)
        .map(|i| cell(1000 + i, &format!("10.0.{}.{}", 20 + i / 200, i % 200)))
        .collect();
    let points: String = cells
        .iter()
        .enumerate()
        .flat_map(|(n, c)| {
            (0..2).map(move |k| container_lines(n * 2 + k, &c.ip, now, n % 90, None))
        })
        .collect();
    rt.block_on(async {
        create_influx_db(&influx_url(), &db).await;
        influx.write(&db, &points).await.unwrap();
    });
    let collector = collector(&db, "container_metrics");
    let windows = Windows {
        by_key: HashMap::new(),
        default: Duration::from_secs(300),
    };
    let ctx = CollectContext {
        now,
        bucket_seconds: 30,
        metrics: &influx.clone().into(),
        vms: &cells,
        windows: &windows,
        targets: None,
        narrow_to_vms: true,
        quiet: None,
    };
    let (result, queries) = count_queries(&rt, collector.collect(&ctx));
    // not asked: one pass
    let (whole, whole_queries) = count_queries(
        &rt,
        collector.collect(&CollectContext {
            narrow_to_vms: false,
            quiet: None,
            ..ctx
        }),
    );
    rt.block_on(drop_influx_db(&influx_url(), &db));
    let readings = result.unwrap();
    assert_eq!(queries, 3 * 3, "three queries for each part of the cells");
    assert_eq!(whole_queries, 3);
    // the same readings, in another order (the parts follow the inventory)
    let sorted = |r: &[Reading]| {
        let mut v: Vec<String> = r.iter().map(|r| format!("{r:?}")).collect();
        v.sort();
        v
    };
    assert!(
        sorted(&readings) == sorted(&whole.unwrap()),
        "the parts read otherwise than one pass"
    );
    assert_eq!(readings.len(), 500 * 2, "CPU and memory of every container");
    for r in &readings {
        let (Measured::Usage { resource, mean, .. }, Some(app)) = (&r.value, &r.target.app) else {
            panic!("{r:?}")
        };
        let n = cells.iter().position(|c| *c.ip == *r.target.ip).unwrap();
        assert_eq!(&*app.cell_name, cells[n].name.as_str());
        let want = match resource {
            Resource::Cpu => 10.0,
            _ => (n % 90) as f64 / 10.0,
        };
        assert!((mean - want).abs() < TOLERANCE, "{r:?}");
    }
}

#[tokio::test]
async fn a_missing_database_fails_the_step_with_a_clear_error() {
    let db = unique_db("missing");
    let influx = client();
    let collector = collector(&db, "container_metrics");
    let cells = [cell(1, "10.0.16.21")];
    let windows = Windows {
        by_key: HashMap::new(),
        default: Duration::from_secs(120),
    };
    let ctx = CollectContext {
        now: Utc::now(),
        bucket_seconds: 30,
        metrics: &influx.clone().into(),
        vms: &cells,
        windows: &windows,
        targets: None,
        narrow_to_vms: false,
        quiet: None,
    };
    let err = collector.collect(&ctx).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("database not found"), "{text}");
    assert!(
        text.contains(&db) && text.contains("container_metrics"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreachable_influxdb_fails_the_step() {
    // a port nothing listens on: bind, take the port, close
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let influx = InfluxClient::new(&InfluxSettings {
        url: url.clone(),
        timeout_seconds: 2,
        ..InfluxSettings::default()
    })
    .unwrap();
    let collector = collector("container_metric_db", "container_metrics");
    let cells = [cell(1, "10.0.16.21")];
    let windows = Windows {
        by_key: HashMap::new(),
        default: Duration::from_secs(120),
    };
    let ctx = CollectContext {
        now: Utc::now(),
        bucket_seconds: 30,
        metrics: &influx.clone().into(),
        vms: &cells,
        windows: &windows,
        targets: None,
        narrow_to_vms: false,
        quiet: None,
    };
    let err = collector.collect(&ctx).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(&url) && text.contains("container collector"),
        "{text}"
    );
}

/// The registration's sample documents the collector's one field.
#[test]
fn the_sample_documents_every_field() {
    let reg = monit_host::plugin::find_plugin("container").expect("registered");
    assert!(reg.sample.contains("[plugins.container]"));
    for key in ["enabled", "db", "measurement"] {
        assert!(reg.sample.contains(&format!("\n{key} =")), "{key}");
    }
}
