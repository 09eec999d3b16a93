//! The paasta collector against the real InfluxDB: every folder under `tests/cases/` is one case
//! (the inventory, the points to write, the windows, the readings expected). A new behaviour is a
//! new folder.
//!
//! Points are written relative to the collector's `now`, one every `every` seconds; with `every`
//! a multiple of the 30 s bucket each point lands in its own bucket whatever the phase of `now`,
//! so the expected percentages are exact (the tolerance only absorbs rounding).

use chrono::Utc;
use monit_host::config::InfluxSettings;
use monit_host::metric_store::influx::InfluxClient;
use monit_host::model::{Measured, Origin, Reading, Resource, Vm};
use monit_host::plugin::Windows;
use monit_host::{CollectContext, Collector};
use monit_plugin_paasta::PaastaCollector;
use monit_testkit::{create_influx_db, drop_influx_db, influx_url, unique};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TOLERANCE: f64 = 1e-6;
const MEASUREMENT: &str = "cf_metrics";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[allow(dead_code)]
    description: String,
    /// seconds per resource (`cpu`, `memory`, `disk`); `default` for the others
    windows: HashMap<String, u64>,
    vms: Vec<CaseVm>,
    series: Vec<CaseSeries>,
    expected: Vec<Expected>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseVm {
    id: i64,
    name: String,
    ip: String,
}

/// Points of one metric of one VM: at `now + from`, `now + from + every`, … up to `now + to`,
/// the k-th point's value is `start + k × step`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSeries {
    ip: String,
    metricname: String,
    from: i64,
    to: i64,
    every: i64,
    start: f64,
    #[serde(default)]
    step: f64,
}

/// One reading: `resource` and `mean`/`peak` for usage, or `no_data: true`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Expected {
    vm: i64,
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default)]
    mean: Option<f64>,
    #[serde(default)]
    peak: Option<f64>,
    #[serde(default)]
    no_data: bool,
}

fn lines(case: &Case, now: i64) -> String {
    let mut out = String::new();
    for s in &case.series {
        let (mut t, mut k) = (s.from, 0.0);
        while t <= s.to {
            out.push_str(&format!(
                "{MEASUREMENT},ip={},metricname={} value={} {}\n",
                s.ip,
                s.metricname,
                s.start + k * s.step,
                now + t
            ));
            t += s.every;
            k += 1.0;
        }
    }
    out
}

fn windows(w: &HashMap<String, u64>) -> Windows {
    let by_key = Resource::ALL
        .iter()
        .filter_map(|r| {
            w.get(r.code())
                .map(|s| ((Origin::Pas, *r), Duration::from_secs(*s)))
        })
        .collect();
    Windows {
        by_key,
        default: Duration::from_secs(*w.get("default").unwrap_or(&300)),
    }
}

fn actual(readings: &[Reading]) -> Vec<Expected> {
    let mut out: Vec<Expected> = readings
        .iter()
        .map(|r| {
            assert_eq!(r.target.origin, Origin::Pas);
            match r.value {
                Measured::Usage {
                    resource,
                    mean,
                    peak,
                    ..
                } => Expected {
                    vm: r.target.origin_id,
                    resource: Some(resource),
                    mean: Some(mean),
                    peak: Some(peak),
                    no_data: false,
                },
                Measured::NoData => Expected {
                    vm: r.target.origin_id,
                    resource: None,
                    mean: None,
                    peak: None,
                    no_data: true,
                },
            }
        })
        .collect();
    sort(&mut out);
    out
}

fn sort(v: &mut [Expected]) {
    v.sort_by_key(|e| (e.vm, e.resource));
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < TOLERANCE,
        (None, None) => true,
        _ => false,
    }
}

fn matches(got: &[Expected], want: &[Expected]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            (g.vm, g.resource, g.no_data) == (w.vm, w.resource, w.no_data)
                && close(g.mean, w.mean)
                && close(g.peak, w.peak)
        })
}

async fn run_case(dir: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(dir.join("case.json")).map_err(|e| e.to_string())?;
    let case: Case = serde_json::from_str(&text).map_err(|e| format!("case.json: {e}"))?;
    let db = unique(&format!(
        "monit_test_paasta_{}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("case")
    ));
    let influx = InfluxClient::new(&InfluxSettings {
        url: influx_url(),
        ..InfluxSettings::default()
    })
    .map_err(|e| e.to_string())?;
    create_influx_db(&influx_url(), &db).await;
    let now = Utc::now();
    let written = influx.write(&db, &lines(&case, now.timestamp())).await;
    let vms: Vec<Vm> = case
        .vms
        .iter()
        .map(|v| Vm {
            id: v.id,
            zone_id: 1,
            zone_name: Some("z1".into()),
            name: v.name.clone(),
            ip: v.ip.clone(),
            vm_type: "vm".into(),
        })
        .collect();
    let windows = windows(&case.windows);
    let ctx = CollectContext {
        now,
        bucket_seconds: 30,
        metrics: &influx.clone().into(),
        vms: &vms,
        windows: &windows,
        targets: None,
        narrow_to_vms: false,
        quiet: None,
    };
    let collector = PaastaCollector {
        db: db.clone(),
        measurement: MEASUREMENT.into(),
    };
    let result = collector.collect(&ctx).await;
    // the query naming the VMs (a reconciliation's part of the inventory) reads the same
    let narrowed = collector
        .collect(&CollectContext {
            narrow_to_vms: true,
            quiet: None,
            ..ctx
        })
        .await;
    drop_influx_db(&influx_url(), &db).await;
    written.map_err(|e| format!("writing the points: {e}"))?;
    let got = actual(&result.map_err(|e| format!("collect failed: {e:#}"))?);
    let narrowed = actual(&narrowed.map_err(|e| format!("narrowed collect failed: {e:#}"))?);
    if narrowed != got {
        return Err(format!(
            "the query naming the VMs read otherwise: {narrowed:#?}\nthe whole: {got:#?}"
        ));
    }
    let mut want = case.expected.clone();
    sort(&mut want);
    if matches(&got, &want) {
        Ok(())
    } else {
        Err(format!("got {got:#?}\nwant {want:#?}"))
    }
}

#[tokio::test]
async fn cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 3, "cases under {}", root.display());
    let mut failed = Vec::new();
    for d in &dirs {
        if let Err(e) = run_case(d).await {
            failed.push(format!("{}: {e}", d.display()));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// An InfluxDB database that does not exist fails the step, naming the database.
#[tokio::test]
async fn a_missing_database_is_an_error_naming_it() {
    let influx = InfluxClient::new(&InfluxSettings {
        url: influx_url(),
        ..InfluxSettings::default()
    })
    .unwrap();
    let db = unique("monit_test_paasta_missing");
    let vms = vec![Vm {
        id: 1,
        zone_id: 1,
        zone_name: None,
        name: "router/0".into(),
        ip: "10.0.0.1".into(),
        vm_type: "vm".into(),
    }];
    let windows = windows(&HashMap::new());
    let ctx = CollectContext {
        now: Utc::now(),
        bucket_seconds: 30,
        metrics: &influx.clone().into(),
        vms: &vms,
        windows: &windows,
        targets: None,
        narrow_to_vms: false,
        quiet: None,
    };
    let collector = PaastaCollector {
        db: db.clone(),
        ..PaastaCollector::default()
    };
    let e = collector.collect(&ctx).await.unwrap_err();
    assert!(format!("{e:#}").contains(&db), "{e:#}");
}

/// The sample is the registration's, parses, and documents every field of the config.
#[test]
fn the_sample_documents_every_field() {
    let sample = include_str!("../sample.toml");
    let c: monit_plugin_paasta::PaastaConfig = toml_section(sample);
    assert!(c.enabled);
    assert_eq!(
        (c.db.as_str(), c.measurement.as_str()),
        ("cf_metric_db", "cf_metrics")
    );
    for key in ["enabled", "db", "measurement"] {
        assert!(sample.contains(&format!("\n{key} =")), "{key}");
    }
}

fn toml_section(sample: &str) -> monit_plugin_paasta::PaastaConfig {
    let v: serde_json::Value = serde_json::to_value(
        config_value(sample)
            .get("plugins")
            .and_then(|p| p.get("paasta"))
            .cloned()
            .unwrap_or_default(),
    )
    .unwrap();
    serde_json::from_value(v).unwrap()
}

fn config_value(text: &str) -> serde_json::Value {
    let c = ::config::Config::builder()
        .add_source(::config::File::from_str(text, ::config::FileFormat::Toml))
        .build()
        .unwrap();
    c.try_deserialize().unwrap()
}
