//! Bad input, in process: the fuzz target bodies over their seed corpus (on stable), InfluxDB
//! answers that are not answers, values that are not percentages, configs of the wrong type,
//! and Monitoring DB rows with codes nobody knows. Nothing may panic; each gives an error that
//! names its source or is skipped.

#[path = "../../fuzz/src/lib.rs"]
mod fuzz_bodies;

use monit_host::config::Settings;
use monit_host::engine::{self, EngineOptions, OpenAlarm, OpenStatus, Policy};
use monit_host::influx::{self, Cell, InfluxError, Series};
use monit_host::model::{AlarmType, Level, Measured, Origin, Reading, Resource, Target};
use monit_host::vm_metrics;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

const URL: &str = fuzz_bodies::INFLUX_URL;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
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
    assert_eq!(
        f["10.0.0.1"].cpu.values().copied().collect::<Vec<_>>(),
        vec![0.0],
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
        name: format!("vm/{id}"),
        ip: ip.into(),
        app: None,
    }
}

fn windows() -> monit_host::plugin::Windows {
    monit_host::plugin::Windows {
        by_key: HashMap::new(),
        default: std::time::Duration::from_secs(600),
    }
}

fn opts() -> EngineOptions {
    EngineOptions {
        auto_resolve: monit_host::engine::AutoResolve::Unclaimed,
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
        readings.extend(vm_metrics::readings_for(
            &target(i as i64 + 1, ip),
            b,
            &windows(),
            t,
        ));
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
        .flat_map(|(i, ip)| {
            vm_metrics::readings_for(&target(i as i64 + 1, ip), f.get(*ip), &windows(), t)
        })
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

// ---- configs of the wrong type -------------------------------------------------------------

const DB: &str = "[monitoring_db]\ndbname = \"monit\"\n";

fn load(name: &str, text: &str, env: &[(&str, &str)]) -> anyhow::Result<Settings> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    Settings::load_with_env(
        Some(&p),
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn load_err(name: &str, text: &str, env: &[(&str, &str)]) -> String {
    match load(name, text, env) {
        Ok(s) => panic!("{name} loaded: {s:?}\n{text}"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn wrong_types_in_toml_name_the_key() {
    for (text, key) in [
        (
            format!("{DB}[batch]\ninterval_seconds = \"sixty\"\n"),
            "interval_seconds",
        ),
        (
            format!("{DB}[batch]\ninterval_seconds = -5\n"),
            "interval_seconds",
        ),
        (
            format!("{DB}[batch]\ninterval_seconds = 1.5e400\n"),
            "m.toml",
        ),
        (format!("{DB}[server]\nport = -1\n"), "port"),
        (format!("{DB}[server]\nport = 70000\n"), "port"),
        (
            format!("{DB}[plugins.paasta]\nenabled = \"maybe\"\n"),
            "plugins.paasta.enabled",
        ),
        (format!("{DB}[plugins]\npaasta = 1\n"), "plugins.paasta"),
        (
            format!("{DB}[alarms]\nauto_resolve = \"maybe\"\n"),
            "auto_resolve",
        ),
        (format!("{DB}[influx]\nurl = 8086\n"), "influx.url"),
        (
            format!("{DB}[batch]\nintervall_seconds = 5\n"),
            "intervall_seconds",
        ),
        ("[monitoring_db]\ndbname = [1, 2]\n".to_string(), "dbname"),
        ("monitoring_db = \"x\"\n".to_string(), "monitoring_db"),
    ] {
        let e = load_err("m.toml", &text, &[]);
        assert!(e.contains(key), "{key} not named in: {e}\n{text}");
        assert!(e.contains("m.toml"), "the file is named: {e}");
    }
}

#[test]
fn a_numeric_string_is_a_number_as_from_the_environment() {
    // TOML `"60"` is what an operator gets from `MONIT_BATCH__BATCH__INTERVAL_SECONDS=60`, so it
    // is read the same way; text that is not a number is an error (above).
    let s = load(
        "m.toml",
        &format!("{DB}[batch]\ninterval_seconds = \"60\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(s.batch.interval_seconds, 60);
}

#[test]
fn wrong_types_from_the_environment_name_the_key() {
    for (var, value, key) in [
        (
            "MONIT_BATCH__BATCH__INTERVAL_SECONDS",
            "sixty",
            "interval_seconds",
        ),
        ("MONIT_BATCH__SERVER__PORT", "-1", "port"),
        (
            "MONIT_BATCH__PLUGINS__PAASTA__ENABLED",
            "maybe",
            "plugins.paasta.enabled",
        ),
        ("PORT", "http", "PORT"),
        ("VCAP_SERVICES", "{not json", "VCAP_SERVICES"),
    ] {
        let e = load_err("m.toml", DB, &[(var, value)]);
        assert!(e.contains(key), "{var}={value}: {key} not named in: {e}");
    }
}

/// `try_parsing` reads `007` as the integer 7 before the field's type is known, so a password
/// or user name of digits loses its leading zeros.
#[test]
fn digit_strings_from_the_environment_keep_their_leading_zeros() {
    let s = load(
        "m.toml",
        DB,
        &[
            ("MONIT_BATCH__MONITORING_DB__PASSWORD", "007"),
            ("MONIT_BATCH__MONITORING_DB__USERNAME", "0123"),
        ],
    )
    .unwrap();
    assert_eq!(s.monitoring_db.username, "0123");
    assert_eq!(s.monitoring_db.password.expose(), "007");
}

#[test]
fn wrong_types_in_config_ini_name_file_line_and_key() {
    for (text, line, key) in [
        (
            "batch.interval.second = sixty\n",
            2,
            "batch.interval.second",
        ),
        ("mail.alarm.send = maybe\n", 2, "mail.alarm.send"),
        ("mail.tls.send = sometimes\n", 2, "mail.tls.send"),
        ("server.port = 1.5\n", 2, "server.port"),
        (
            "monitoring.db.port = 99999999999999999999\n",
            2,
            "monitoring.db.port",
        ),
    ] {
        let text = format!("monitoring.db.dbname = monit\n{text}");
        let e = load_err("config.ini", &text, &[]);
        assert!(
            e.contains(&format!("config.ini:{line}")) && e.contains(key),
            "{key} at line {line} not named in: {e}"
        );
    }
    // in range for i64, out of range for the setting: the translated key is named
    for (text, key) in [
        ("server.port = -1\n", "server.port"),
        ("monitoring.db.port = 99999\n", "monitoring_db.port"),
        ("batch.interval.second = -60\n", "interval_seconds"),
        ("batch.interval.second = 0\n", "interval_seconds"),
        ("monitoring.db.type = postgres\n", "db_type"),
    ] {
        let text = format!("monitoring.db.dbname = monit\n{text}");
        let e = load_err("config.ini", &text, &[]);
        assert!(e.contains(key), "{key} not named in: {e}");
        assert!(e.contains("config.ini"), "{e}");
    }
}

#[test]
fn an_ini_that_is_not_text_is_an_error_naming_the_file() {
    // NUL and a stray BOM are text: the value is taken as written, the BOM line ignored
    let s = load(
        "config.ini",
        "monitoring.db.dbname = \u{0}\n\u{feff}\n",
        &[],
    )
    .unwrap();
    assert_eq!(s.monitoring_db.dbname, "\u{0}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.ini");
    std::fs::write(&p, b"monitoring.db.dbname = \xff\xfe\n").unwrap();
    let e = format!(
        "{:#}",
        Settings::load_with_env(Some(&p), HashMap::new()).unwrap_err()
    );
    assert!(e.contains(&p.display().to_string()), "{e}");
}

// ---- Monitoring DB rows with unknown codes -------------------------------------------------

/// A migrated Monitoring DB of the test's own.
async fn own_db(tag: &str) -> monit_testkit::TestDb {
    let db = monit_testkit::TestDb::create(tag).await;
    monit_host::db::MIGRATOR.run(&db.pool).await.unwrap();
    db
}

#[tokio::test]
async fn policy_and_alarm_rows_with_unknown_codes_are_skipped_the_rest_kept() {
    let db = own_db("codes").await;
    let pool = db.pool.clone();
    sqlx::raw_sql(
        "INSERT INTO alarm_policies (id, origin_type, alarm_type, warning_threshold, critical_threshold, repeat_time, measure_time) VALUES \
         (100, 'xyz', 'cpu', 80, 90, 10, 600), (101, 'pas', 'gpu', 80, 90, 10, 600), (102, '', '', 80, 90, 10, 600), \
         (103, 'bos', 'disk', 95, 10, 10, 600), (104, 'pas', 'cpu', 1, 2, 3, 4); \
         INSERT INTO alarms (id, origin_type, origin_id, alarm_type, level, app_yn, alarm_title, alarm_message, resolve_status) VALUES \
         (1, 'zzz', 1, 'cpu', 'warning', 'N', 't', 'm', '1'), (2, 'pas', 1, 'gpu', 'warning', 'N', 't', 'm', '1'), \
         (3, 'pas', 1, 'cpu', 'panic', 'N', 't', 'm', '1'), (4, 'pas', 1, 'cpu', 'critical', 'N', 't', 'm', '1'), \
         (5, 'pas', 1, 'rootdi', 'WARNING', 'N', 't', 'm', '2'), (6, 'pas', 1, 'memory', 'warning', 'N', 't', 'm', '9');",
    )
    .execute(&pool)
    .await
    .unwrap();
    let p = monit_host::store::load_policies(&pool, 120).await.unwrap();
    let ids: Vec<i64> = p.iter().map(|p| p.id).collect();
    assert_eq!(
        ids,
        (1..=9).collect::<Vec<_>>(),
        "only the seed rows are usable: unknown codes, critical < warning and a second pas/cpu row are skipped"
    );
    let open = monit_host::store::load_open_alarms(&pool).await.unwrap();
    let ids: Vec<(i64, AlarmType, Level)> =
        open.iter().map(|a| (a.id, a.alarm_type, a.level)).collect();
    // row 5: `rootdi` (4.0's `rootdisk` cut to varchar(6)) is not a known code
    assert_eq!(ids, vec![(4, AlarmType::Cpu, Level::Critical)], "{open:?}");
    // nothing was changed or deleted: the operator's rows stay for the operator
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alarms")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 6);
    db.drop().await;
}
