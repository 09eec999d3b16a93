//! Bad input, in process: the fuzz target bodies over their seed corpus (on stable), InfluxDB
//! answers that are not answers and values that are not percentages, through this crate's VM
//! schema reader and the host's engine. Nothing may panic; each gives an error that names its
//! source or is skipped. (Configs and Monitoring DB rows: `host/tests/bad_input.rs`.)

#[path = "../../../../fuzz/src/lib.rs"]
mod fuzz_bodies;

use monit_cf_metrics::vm as vm_metrics;
use monit_host::evaluate::engine::{self, EngineOptions, OpenAlarm, OpenStatus, Policy};
use monit_host::metric_store::influx::{self, Cell, InfluxError, Series};
use monit_host::model::{AlarmType, Level, Measured, Origin, Reading, Resource, Target};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const URL: &str = fuzz_bodies::INFLUX_URL;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../fuzz/seeds")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 5, "seed corpus {} is there", dir.display());
    out
}

// ---- the fuzz bodies on stable ----------------------------------------------------------

#[test]
fn fuzz_body_legacy_ini_over_its_seeds() {
    let dir = tempfile::tempdir().unwrap();
    for (path, data) in seeds("legacy_ini") {
        eprintln!("seed {}", path.display());
        fuzz_bodies::legacy_ini(&data, dir.path());
    }
}

#[test]
fn fuzz_body_prometheus_decode_over_its_seeds() {
    for (path, data) in seeds("prometheus_decode") {
        eprintln!("seed {}", path.display());
        fuzz_bodies::prometheus_decode(&data);
    }
}

#[test]
fn fuzz_body_influx_decode_over_its_seeds() {
    for (path, data) in seeds("influx_decode") {
        eprintln!("seed {}", path.display());
        fuzz_bodies::influx_decode(&data);
    }
}

fn series(ip: &str, metric: &str, rows: Vec<Vec<Cell>>) -> Series {
    Series {
        name: "cf_metrics".into(),
        tags: [("ip", ip), ("metricname", metric)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        columns: vec!["time".into(), "mean".into()],
        values: rows,
    }
}

fn at(t: i64, v: f64) -> Vec<Cell> {
    vec![Cell::Number(t as f64), Cell::Number(v)]
}

#[test]
fn fuzz_body_vm_fold_on_values_json_cannot_carry() {
    let t = 1_800_000_000;
    let s = vec![
        series(
            "10.0.0.1",
            "cpuStats.0",
            vec![
                at(t, f64::NAN),
                at(t - 30, f64::INFINITY),
                at(t - 60, f64::NEG_INFINITY),
                at(t - 90, -0.0),
                vec![Cell::Number(f64::NAN), Cell::Number(50.0)],
                vec![Cell::Number(f64::MAX), Cell::Number(50.0)],
                vec![Cell::Number(-f64::MAX), Cell::Number(50.0)],
                vec![Cell::Number(t as f64)],
                vec![],
                vec![Cell::Text, Cell::Bool(true), Cell::Null],
            ],
        ),
        series(
            "10.0.0.1",
            "memoryStats.TotalMemory",
            vec![at(t, 0.0), at(t - 30, f64::MIN_POSITIVE)],
        ),
        series(
            "10.0.0.1",
            "memoryStats.AvailableMemory",
            vec![at(t, 0.0), at(t - 30, 0.0)],
        ),
        series("10.0.0.1", "diskStats.Usage", vec![at(t, f64::NAN)]),
        Series {
            columns: vec!["mean".into()],
            ..series("10.0.0.2", "cpuStats.1", vec![at(t, 50.0)])
        },
        Series {
            tags: BTreeMap::new(),
            ..series("", "", vec![at(t, 99.0)])
        },
    ];
    fuzz_bodies::vm_fold(&s);
}

// ---- InfluxDB answers that are not answers ----------------------------------------------

#[test]
fn broken_answers_are_errors_that_name_influxdb() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, &[u8])> = vec![
        ("truncated", br#"{"results":[{"statement_id":0,"series":[{"name":"cf"#),
        ("html", b"<html><body>502 Bad Gateway</body></html>"),
        ("empty", b""),
        ("not utf-8", b"\xff\xfe{\"results\":[]}"),
        ("wrong shape", br#"{"results":[{"series":[{"columns":"time"}]}]}"#),
        ("results not a list", br#"{"results":{}}"#),
        ("number out of range", br#"{"results":[{"series":[{"columns":["time","mean"],"values":[[1,1e400]]}]}]}"#),
        ("marshal error of InfluxDB 1.6 on +Inf", b"json: error calling MarshalJSON for type httpd.Response: json: unsupported value: +Inf\n"),
        ("nested past the recursion limit", deep.as_bytes()),
    ];
    for (what, body) in cases {
        let e = influx::decode(URL, "cf_metric_db", body).unwrap_err();
        assert!(matches!(e, InfluxError::Decode { .. }), "{what}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains(URL) && msg.contains("malformed"),
            "{what}: {msg}"
        );
    }
    for (what, body) in [
        ("top-level error", &br#"{"error":"timeout"}"#[..]),
        (
            "statement error after a good one",
            br#"{"results":[{"statement_id":0,"series":[]},{"statement_id":1,"error":"database not found: cf_metric_db"}]}"#,
        ),
    ] {
        let e = influx::decode(URL, "cf_metric_db", body).unwrap_err();
        assert!(matches!(e, InfluxError::Query { .. }), "{what}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains(URL) && msg.contains("cf_metric_db"),
            "{what}: {msg}"
        );
    }
}

#[test]
fn strange_but_valid_cells_decode_and_are_not_readings() {
    let s = influx::decode(
        URL,
        "db",
        br#"{"results":[{"series":[{"name":"cf_metrics","tags":{"ip":"10.0.0.1","metricname":"cpuStats.0"},
            "columns":["time","mean"],"values":[[1800000000,"50"],[1800000030,true],[1800000060,null],[1800000090,{"a":1}]]}]}]}"#,
    );
    // an object in a cell is not a value InfluxDB sends: a decode error, not a panic
    let e = s.unwrap_err();
    assert!(e.to_string().contains(URL), "{e}");
    let s = influx::decode(
        URL,
        "db",
        br#"{"results":[{"series":[{"name":"cf_metrics","tags":{"ip":"10.0.0.1","metricname":"cpuStats.0"},
            "columns":["time","mean"],"values":[[1800000000,"50"],[1800000030,true],[1800000060,null],[1.8e9,-0.0]]}]}]}"#,
    )
    .unwrap();
    let f = vm_metrics::fold(&s, Some("ip"));
    let cpu = f["10.0.0.1"].cpu.unwrap();
    assert_eq!(
        (cpu.mean, cpu.buckets),
        (0.0, 1),
        "only the number is a reading"
    );
}

// ---- values that are not percentages -----------------------------------------------------

fn policies() -> Vec<Policy> {
    Resource::ALL
        .iter()
        .enumerate()
        .map(|(i, r)| Policy {
            id: i as i64 + 1,
            origin: Origin::Pas,
            resource: *r,
            warning: 85.0,
            critical: 90.0,
            repeat_minutes: 10,
            measure_seconds: 600,
        })
        .collect()
}

fn target(id: i64, ip: &str) -> Target {
    Target {
        origin: Origin::Pas,
        origin_id: id,
        name: format!("vm/{id}").into(),
        ip: ip.into(),
        app: None,
    }
}

fn opts() -> EngineOptions {
    EngineOptions {
        auto_resolve: monit_host::evaluate::engine::AutoResolve::Unclaimed,
        default_repeat_minutes: 10,
    }
}

#[test]
fn negative_values_and_zero_total_memory_open_no_alarm() {
    let t = 1_800_000_000;
    let s = vec![
        series(
            "10.0.0.1",
            "cpuStats.0",
            vec![at(t, -50.0), at(t - 30, -1e308)],
        ),
        series("10.0.0.1", "diskStats.Usage", vec![at(t, -5.0)]),
        // 0/0 = NaN: a writer that reports no memory at all
        series("10.0.0.1", "memoryStats.TotalMemory", vec![at(t, 0.0)]),
        series("10.0.0.1", "memoryStats.AvailableMemory", vec![at(t, 0.0)]),
        // Available above Total: 1 - a/t < 0
        series("10.0.0.2", "memoryStats.TotalMemory", vec![at(t, 100.0)]),
        series(
            "10.0.0.2",
            "memoryStats.AvailableMemory",
            vec![at(t, 1e308)],
        ),
        series("10.0.0.2", "cpuStats.core.0", vec![at(t, 1e308)]),
    ];
    let f = vm_metrics::fold(&s, Some("ip"));
    let mut readings = Vec::new();
    for (i, ip) in ["10.0.0.1", "10.0.0.2"].iter().enumerate() {
        let b = f.get(*ip);
        assert!(b.is_none_or(|b| b.is_empty()), "{ip}: {b:?}");
        readings.extend(vm_metrics::readings_for(&target(i as i64 + 1, ip), b));
    }
    let now = chrono::DateTime::from_timestamp(t, 0).unwrap();
    let changes = engine::evaluate(&policies(), &[], &readings, &[Origin::Pas], now, &opts());
    assert!(
        changes.iter().all(|c| matches!(
            c,
            engine::Change::Open {
                alarm_type: AlarmType::Fail,
                ..
            }
        )),
        "nonsense reads as no data, never as a usage alarm: {changes:?}"
    );
}

/// A memory or disk "percentage" far above 100 is not a usage, as for CPU.
#[test]
fn huge_percentages_open_no_alarm() {
    let t = 1_800_000_000;
    let s = vec![
        series("10.0.0.3", "memoryStats.UsedPercent", vec![at(t, 1e308)]),
        series("10.0.0.3", "diskStats.Usage", vec![at(t, 1e308)]),
        series("10.0.0.4", "memoryStats.UsedPercent", vec![at(t, 250.0)]),
        series(
            "10.0.0.4",
            "diskStats./var/vcap/data.Usage",
            vec![at(t, 1e12)],
        ),
    ];
    let f = vm_metrics::fold(&s, Some("ip"));
    let readings: Vec<Reading> = ["10.0.0.3", "10.0.0.4"]
        .iter()
        .enumerate()
        .flat_map(|(i, ip)| vm_metrics::readings_for(&target(i as i64 + 1, ip), f.get(*ip)))
        .collect();
    let now = chrono::DateTime::from_timestamp(t, 0).unwrap();
    let changes = engine::evaluate(&policies(), &[], &readings, &[Origin::Pas], now, &opts());
    let usage_alarms: Vec<_> = changes
        .iter()
        .filter(|c| {
            !matches!(
                c,
                engine::Change::Open {
                    alarm_type: AlarmType::Fail,
                    ..
                }
            )
        })
        .collect();
    assert!(usage_alarms.is_empty(), "{usage_alarms:?}");
}

#[test]
fn a_nan_reading_neither_opens_nor_resolves() {
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let open = OpenAlarm {
        text_digest: None,
        id: 7,
        origin: Origin::Pas,
        origin_id: 1,
        alarm_type: AlarmType::Cpu,
        level: Level::Critical,
        status: OpenStatus::Raised,
        raised_at: now - chrono::Duration::hours(1),
        last_sent: Some(now),
        app_name: None,
        app_index: None,
        recovered: false,
        notified_level: Level::Critical,
    };
    let readings: Vec<Reading> = [(1, f64::NAN), (2, f64::INFINITY), (3, f64::NAN)]
        .iter()
        .map(|(id, v)| Reading {
            target: target(*id, "10.0.0.9"),
            value: Measured::Usage {
                resource: Resource::Cpu,
                mean: *v,
                peak: *v,
                buckets: 1,
            },
        })
        .collect();
    let changes = engine::evaluate(
        &policies(),
        &[open],
        &readings,
        &[Origin::Pas],
        now,
        &opts(),
    );
    assert!(changes.is_empty(), "{changes:?}");
    // the same alarm with a real low reading does resolve: the check above can fail
    let low = Reading {
        target: target(1, "10.0.0.9"),
        value: Measured::Usage {
            resource: Resource::Cpu,
            mean: 10.0,
            peak: 10.0,
            buckets: 1,
        },
    };
    let open = OpenAlarm {
        text_digest: None,
        id: 7,
        origin: Origin::Pas,
        origin_id: 1,
        alarm_type: AlarmType::Cpu,
        level: Level::Critical,
        status: OpenStatus::Raised,
        raised_at: now,
        last_sent: Some(now),
        app_name: None,
        app_index: None,
        recovered: false,
        notified_level: Level::Critical,
    };
    let changes = engine::evaluate(&policies(), &[open], &[low], &[Origin::Pas], now, &opts());
    assert!(matches!(
        changes.as_slice(),
        [engine::Change::Recover { .. }]
    ));
}
