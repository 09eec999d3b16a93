//! Settings from TOML, environment, and the original's config.ini; and the errors a bad config gets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const MINIMAL: &str =
    "[monitoring_db]\ndbname = \"monit\"\nusername = \"monit\"\npassword = \"s3cret-pw\"\n";

#[test]
fn sample_toml_loads_with_documented_defaults() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/monit-batch.toml");
    let s = monit_host::plugin::load_settings_with_env(Some(&root), env(&[])).unwrap();
    assert_eq!(s.batch.interval_seconds, 60);
    assert_eq!(s.plugins["paasta"]["db"], "cf_metric_db");
    assert!(s.plugin_enabled("paasta"));
    assert!(!s.plugin_enabled("email"));
    assert_eq!(s.alarms.language, "ko");
    assert_eq!(
        (
            s.alarms.digest_threshold,
            s.alarms.inhibit,
            s.alarms.maintenance_from_bosh,
            s.alarms.maintenance_grace_minutes,
            s.alarms.maintenance_max_hours
        ),
        (10, true, true, 10, 6)
    );
}

#[test]
fn environment_overrides_the_file_and_port_wins() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.toml",
        &format!("{MINIMAL}[batch]\ninterval_seconds = 60\n[plugins.paasta]\nenabled = false\n"),
    );
    let s = monit_host::plugin::load_settings_with_env(
        Some(&p),
        env(&[
            ("MONIT_BATCH__BATCH__INTERVAL_SECONDS", "5"),
            ("MONIT_BATCH__PLUGINS__PAASTA__ENABLED", "true"),
            ("MONIT_BATCH__MONITORING_DB__HOST", "db.internal"),
            ("PORT", "8080"),
        ]),
    )
    .unwrap();
    assert_eq!(s.batch.interval_seconds, 5);
    assert!(s.plugin_enabled("paasta"));
    assert_eq!(s.monitoring_db.host, "db.internal");
    assert_eq!(s.server.port, 8080);
}

#[test]
fn secrets_are_masked_in_the_effective_config_and_debug() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.toml",
        &format!(
            "{MINIMAL}[influx]\npassword = \"influx-pw\"\n[plugins.email]\nenabled = false\npassword = \"smtp-pw\"\n"
        ),
    );
    let s = monit_host::plugin::load_settings_with_env(Some(&p), env(&[])).unwrap();
    let shown = serde_json::to_string(&monit_host::plugin::masked_settings(&s)).unwrap();
    let debug = format!("{s:?}");
    for secret in ["s3cret-pw", "influx-pw", "smtp-pw"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
        assert!(!debug.contains(secret), "{secret} in Debug: {debug}");
    }
    assert!(shown.contains("***"));
}

#[test]
fn legacy_config_ini_is_accepted_unchanged() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/config.example.ini");
    let s = monit_host::plugin::load_settings_with_env(Some(&root), env(&[])).unwrap();
    assert_eq!(s.batch.interval_seconds, 60, "trailing ⇒ comment stripped");
    assert_eq!(s.monitoring_db.dbname, "monit");
    assert_eq!(s.monitoring_db.port, 3306);
    assert_eq!(s.monitoring_db.password.expose(), "monit");
    assert_eq!(
        s.alarms.resource_url.as_deref(),
        Some("https://monitoring.example")
    );
    // no plugin is compiled into this test: their keys are theirs (tests/plugin_db_keys.rs reads
    // the same file with every plugin)
    assert!(s.plugins.is_empty(), "{:?}", s.plugins);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("unknown config.ini key `bosh.api.url`")),
        "{:?}",
        s.warnings
    );
}

#[test]
fn legacy_values_keep_hashes_inside_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "config.ini",
        "monitoring.db.dbname=monit\nmonitoring.db.password=pa#ss;word  # the password\n",
    );
    let s = monit_host::plugin::load_settings_with_env(Some(&p), env(&[])).unwrap();
    assert_eq!(s.monitoring_db.password.expose(), "pa#ss;word");
}

fn error_of(text: &str, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), name, text);
    format!(
        "{:#}",
        monit_host::plugin::load_settings_with_env(Some(&p), env(&[])).unwrap_err()
    )
}

#[test]
fn missing_required_key_is_named() {
    let e = error_of("[monitoring_db]\nusername = \"monit\"\n", "m.toml");
    assert!(e.contains("dbname"), "{e}");
    assert!(e.contains("m.toml"), "{e}");
    let e = error_of("[batch]\ninterval_seconds = 5\n", "m.toml");
    assert!(e.contains("monitoring_db"), "{e}");
}

/// A section for a plugin that is neither compiled in nor one of the project's (declared by the
/// binary, here by the test) is a typo: building the plugins names it and lists the known ones;
/// one of the project's that is not compiled in asks for its cargo feature.
#[test]
fn unknown_plugin_is_named() {
    monit_host::plugin::declare_project_plugins(&["paasta"]);
    let build_error = |text: &str| {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "m.toml", text);
        let s = monit_host::plugin::load_settings_with_env(Some(&p), env(&[])).unwrap();
        match monit_host::run::scheduler::build_plugins(&std::sync::Arc::new(s)) {
            Ok(_) => panic!("built: {text}"),
            Err(e) => format!("{e:#}"),
        }
    };
    let e = build_error(&format!("{MINIMAL}[plugins.pasta]\nenabled = true\n"));
    assert!(e.contains("unknown plugin [plugins.pasta]"), "{e}");
    assert!(e.contains("paasta"), "lists the known ones: {e}");
    let e = build_error(&format!("{MINIMAL}[plugins.paasta]\nenabled = true\n"));
    assert!(e.contains("cargo feature `paasta`"), "{e}");
}

#[test]
fn non_numeric_interval_is_named() {
    let e = error_of(
        &format!("{MINIMAL}[batch]\ninterval_seconds = \"sixty\"\n"),
        "m.toml",
    );
    assert!(e.contains("interval_seconds"), "{e}");
    assert!(e.contains("m.toml"), "{e}");
    let e = error_of(
        &format!("{MINIMAL}[batch]\ninterval_seconds = 0\n"),
        "m.toml",
    );
    assert!(
        e.contains("batch.interval_seconds = 0 is out of range: expected 1 to"),
        "{e}"
    );
    let e = error_of(
        "monitoring.db.dbname=x\nbatch.interval.second = 6O\n",
        "config.ini",
    );
    assert!(
        e.contains("config.ini:2") && e.contains("batch.interval.second"),
        "{e}"
    );
}

#[test]
fn misspelled_key_is_an_error_not_ignored() {
    let e = error_of(
        &format!("{MINIMAL}[batch]\ninterval_second = 5\n"),
        "m.toml",
    );
    assert!(e.contains("interval_second"), "{e}");
}

#[test]
fn wrong_db_type_is_refused() {
    let e = error_of(
        "monitoring.db.type=postgres\nmonitoring.db.dbname=x\n",
        "config.ini",
    );
    assert!(e.contains("monitoring_db.db_type"), "{e}");
}

#[test]
fn cloud_foundry_mysql_binding_supplies_the_monitoring_db() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.toml",
        "[monitoring_db]\ndbname = \"local\"\nhost = \"127.0.0.1\"\n",
    );
    let vcap = r#"{"p.mysql":[{"name":"monit-db","label":"p.mysql","tags":["mysql"],
        "credentials":{"hostname":"mysql.example","port":3306,"name":"service_instance_db","username":"u1","password":"p@ss:w/rd",
        "uri":"mysql://u1:p%40ss%3Aw%2Frd@mysql.example:3306/service_instance_db?reconnect=true"}}],
        "p.redis":[{"name":"cache","label":"p.redis","tags":["redis"],"credentials":{"host":"10.0.9.9"}}]}"#;
    let s = monit_host::plugin::load_settings_with_env(Some(&p), env(&[("VCAP_SERVICES", vcap)]))
        .unwrap();
    assert_eq!(s.monitoring_db.host, "mysql.example");
    assert_eq!(s.monitoring_db.dbname, "service_instance_db");
    assert_eq!(s.monitoring_db.username, "u1");
    assert_eq!(s.monitoring_db.password.expose(), "p@ss:w/rd");
    // an explicit environment override still wins
    let s = monit_host::plugin::load_settings_with_env(
        Some(&p),
        env(&[
            ("VCAP_SERVICES", vcap),
            ("MONIT_BATCH__MONITORING_DB__HOST", "db.override"),
        ]),
    )
    .unwrap();
    assert_eq!(s.monitoring_db.host, "db.override");
    // only a uri
    let vcap = r#"{"user-provided":[{"name":"mysql-monit","label":"user-provided","tags":[],"credentials":{"uri":"mysql://a:b@h.example:3307/mon"}}]}"#;
    let s = monit_host::plugin::load_settings_with_env(Some(&p), env(&[("VCAP_SERVICES", vcap)]))
        .unwrap();
    assert_eq!(
        (
            s.monitoring_db.host.as_str(),
            s.monitoring_db.port,
            s.monitoring_db.dbname.as_str()
        ),
        ("h.example", 3307, "mon")
    );
    // garbage is an error naming the variable
    let e = monit_host::plugin::load_settings_with_env(
        Some(&p),
        env(&[("VCAP_SERVICES", "{not json")]),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("VCAP_SERVICES"));
}

#[test]
fn header_values_url_passwords_and_webhook_paths_are_masked() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.toml",
        &format!(
            "{MINIMAL}[influx]\nurl = \"http://reader:Url-pw-9@influx.example:8086\"\n\
             [plugins.webhook]\nenabled = false\nurls = [\"https://hooks.example.com/services/T00/B00/Tok3n\"]\n\
             [plugins.webhook.headers]\nAuthorization = \"Bearer Hdr-t0ken\"\nX-Api-Key = \"K3y-value\"\n"
        ),
    );
    let s = monit_host::plugin::load_settings_with_env(Some(&p), env(&[])).unwrap();
    let shown = serde_json::to_string(&monit_host::plugin::masked_settings(&s)).unwrap();
    for secret in ["Url-pw-9", "Tok3n", "Hdr-t0ken", "K3y-value"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // no plugin is compiled into this test: a section no plugin's type describes shows every
    // value masked (plugins/webhook/tests/config.rs shows the webhook's own masking)
    assert!(shown.contains("influx.example"), "{shown}");
    assert_eq!(
        monit_host::plugin::masked_settings(&s)["plugins"]["webhook"]["urls"][0],
        "***"
    );
    assert_eq!(
        monit_host::plugin::masked_settings(&s)["plugins"]["webhook"]["enabled"],
        false
    );
}

#[test]
fn influx_url_userinfo_becomes_the_login_and_leaves_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.toml",
        &format!(
            "{MINIMAL}[influx]\nurl = \"http://reader:p%40ss-in-url@influx.example:8086\"\n\
             [alarms]\nresource_url = \"https://ui:ui-pw@monitoring.example/\"\n"
        ),
    );
    let s = monit_host::plugin::load_settings_with_env(Some(&p), env(&[])).unwrap();
    assert_eq!(s.influx.url, "http://influx.example:8086/");
    assert_eq!(s.influx.user.as_deref(), Some("reader"));
    assert_eq!(s.influx.password.expose(), "p@ss-in-url");
    assert_eq!(
        s.alarms.resource_url.as_deref(),
        Some("https://monitoring.example/")
    );
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    let shown = format!("{s:?} {}", monit_host::plugin::masked_settings(&s));
    assert!(
        !shown.contains("p%40ss-in-url") && !shown.contains("ui-pw"),
        "{shown}"
    );
    // influx.user set: it wins, and the URL still loses its password
    let p = write(
        dir.path(),
        "n.toml",
        &format!(
            "{MINIMAL}[influx]\nurl = \"http://reader:other@influx.example:8086\"\nuser = \"monit\"\npassword = \"pw\"\n"
        ),
    );
    let s = monit_host::plugin::load_settings_with_env(Some(&p), env(&[])).unwrap();
    assert_eq!(s.influx.url, "http://influx.example:8086/");
    assert_eq!(s.influx.user.as_deref(), Some("monit"));
    assert_eq!(s.influx.password.expose(), "pw");
    assert!(s.warnings[0].contains("influx.url"), "{:?}", s.warnings);
}

#[test]
fn every_number_is_range_checked_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (section, key, value) in [
        ("batch", "interval_seconds", "0"),
        ("batch", "step_timeout_seconds", "100000"),
        ("batch", "inventory_timeout_seconds", "0"),
        ("batch", "ledger_retention_days", "0"),
        ("server", "header_read_timeout_seconds", "0"),
        ("server", "request_timeout_seconds", "0"),
        ("server", "max_connections", "100000"),
        ("influx", "timeout_seconds", "0"),
        ("influx", "bucket_seconds", "0"),
        ("influx", "max_answer_bytes", "10"),
        ("alarms", "default_measure_seconds", "0"),
        ("alarms", "default_repeat_minutes", "9999999999"),
        ("alarms", "gmt_time_hour_gap", "-100"),
        ("alarms", "display_utc_offset_hours", "-14.5"),
        ("alarms", "retry_min_seconds", "9999999999"),
        ("alarms", "retry_max_seconds", "9999999999"),
        ("alarms", "notify_budget_seconds", "0"),
        ("alarms", "notification_max_age_hours", "0"),
        ("alarms", "digest_threshold", "1000000"),
        ("alarms", "maintenance_grace_minutes", "99999"),
        ("alarms", "maintenance_max_hours", "0"),
        ("alarms", "maintenance_max_hours", "169"),
        ("batch", "vm_removal_grace_minutes", "99999"),
    ] {
        let p = write(
            dir.path(),
            "m.toml",
            &format!("{MINIMAL}max_connections = 5\n[{section}]\n{key} = {value}\n"),
        );
        let e = monit_host::plugin::load_settings_with_env(Some(&p), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("{section}.{key} = {value} is out of range")),
            "{section}.{key}: {e}"
        );
    }
    let p = write(
        dir.path(),
        "m.toml",
        "[monitoring_db]\ndbname = \"m\"\nmax_connections = 0\n",
    );
    let e = monit_host::plugin::load_settings_with_env(Some(&p), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("monitoring_db.max_connections"), "{e}");
}

#[test]
fn log_level_must_be_levels_or_target_level_pairs() {
    for ok in ["info", "debug,sqlx=warn", "monit_host=trace,info", "OFF"] {
        monit_host::config::check_log_level(ok).unwrap();
    }
    for bad in ["verbose", "monit_host=loud", "info,chatty"] {
        let e = monit_host::config::check_log_level(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.level"), "{e}");
    }
}

#[test]
fn auto_resolve_takes_a_mode_or_the_old_boolean_from_the_file_and_the_environment() {
    use monit_host::evaluate::engine::AutoResolve;
    let dir = tempfile::tempdir().unwrap();
    let load = |toml: &str, vars: &[(&str, &str)]| {
        let p = write(dir.path(), "m.toml", &format!("{MINIMAL}{toml}"));
        monit_host::plugin::load_settings_with_env(Some(&p), env(vars))
            .map(|s| s.alarms.auto_resolve)
    };
    assert_eq!(load("", &[]).unwrap(), AutoResolve::Unclaimed, "default");
    for (value, mode) in [
        ("\"all\"", AutoResolve::All),
        ("\"none\"", AutoResolve::None),
        ("\"unclaimed\"", AutoResolve::Unclaimed),
        ("true", AutoResolve::Unclaimed),
        ("false", AutoResolve::None),
    ] {
        assert_eq!(
            load(&format!("[alarms]\nauto_resolve = {value}\n"), &[]).unwrap(),
            mode,
            "{value}"
        );
    }
    for (value, mode) in [("all", AutoResolve::All), ("false", AutoResolve::None)] {
        assert_eq!(
            load("", &[("MONIT_BATCH__ALARMS__AUTO_RESOLVE", value)]).unwrap(),
            mode,
            "env {value}"
        );
    }
    let e = format!(
        "{:#}",
        load("[alarms]\nauto_resolve = \"some\"\n", &[]).unwrap_err()
    );
    assert!(
        e.contains("auto_resolve") && e.contains("unclaimed") && e.contains("m.toml"),
        "{e}"
    );
}

#[test]
fn the_console_is_off_by_default_and_its_keys_are_checked_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let hash = monit_host::run::console::auth::hash_password("pw").unwrap();
    let load = |extra: &str, vars: &[(&str, &str)]| {
        let p = write(dir.path(), "m.toml", &format!("{MINIMAL}{extra}"));
        monit_host::plugin::load_settings_with_env(Some(&p), env(vars))
    };
    let off = load("", &[]).unwrap();
    assert!(!off.console.enabled && off.console.link_base().is_none());
    let user = |role: &str| {
        format!(
            "[[console.users]]\nname = \"kim\"\npassword_hash = \"{hash}\"\nrole = \"{role}\"\n"
        )
    };
    let on = load(
        &format!(
            "[console]\npublic_url = \"https://batch.example/\"\n{}",
            user("viewer")
        ),
        &[("MONIT_BATCH__CONSOLE__ENABLED", "true")],
    )
    .unwrap();
    assert!(on.console.enabled, "the environment turns it on");
    assert_eq!(
        on.console.link_base().as_deref(),
        Some("https://batch.example")
    );
    let shown = serde_json::to_string(&monit_host::plugin::masked_settings(&on)).unwrap();
    assert!(
        !shown.contains(&hash) && !format!("{on:?}").contains(&hash),
        "{shown}"
    );
    for (extra, names) in [
        (
            format!("[console]\nenabled = true\n{}", user("admin")),
            "role \"admin\"",
        ),
        (
            "[console]\nenabled = true\n".to_string(),
            "[[console.users]]",
        ),
        (
            format!(
                "[console]\nenabled = true\npublic_url = \"ftp://x.example\"\n{}",
                user("viewer")
            ),
            "console.public_url",
        ),
        (
            format!(
                "[server]\nenabled = false\n[console]\nenabled = true\n{}",
                user("viewer")
            ),
            "server.enabled",
        ),
    ] {
        let e = format!("{:#}", load(&extra, &[]).unwrap_err());
        assert!(
            e.contains(names) && e.contains("m.toml"),
            "{e} should name {names}"
        );
    }
}
