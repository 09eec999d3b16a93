//! Bad input, in process: configs of the wrong type and Monitoring DB rows with codes nobody
//! knows. Nothing may panic; each gives an error that names its source or is skipped. (The fuzz
//! bodies, InfluxDB answers and non-percentages: `plugins/common/cf-metrics/tests/bad_input.rs`.)

use monit_host::config::Settings;
use monit_host::model::{AlarmType, Level};
use std::collections::HashMap;

// ---- configs of the wrong type -------------------------------------------------------------

const DB: &str = "[monitoring_db]\ndbname = \"monit\"\n";

fn load(name: &str, text: &str, env: &[(&str, &str)]) -> anyhow::Result<Settings> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    monit_host::plugin::load_settings_with_env(
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

/// The host's own keys; a plugin's (`mail.alarm.send`, `portal.db.port`) are checked with the
/// plugins compiled in, by the root `tests/bad_input.rs`.
#[test]
fn wrong_types_in_config_ini_name_file_line_and_key() {
    for (text, line, key) in [
        (
            "batch.interval.second = sixty\n",
            2,
            "batch.interval.second",
        ),
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
        monit_host::plugin::load_settings_with_env(Some(&p), HashMap::new()).unwrap_err()
    );
    assert!(e.contains(&p.display().to_string()), "{e}");
}

// ---- Monitoring DB rows with unknown codes -------------------------------------------------

/// A migrated Monitoring DB of the test's own.
async fn own_db(tag: &str) -> monit_testkit::TestDb {
    let db = monit_testkit::TestDb::create(tag).await;
    monit_host::store::db::MIGRATOR.run(&db.pool).await.unwrap();
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
