//! Bodies of the fuzz targets, as plain functions. `fuzz_targets/*.rs` run them under libFuzzer
//! (nightly), and `host/tests/bad_input.rs` includes this file to run them over the seed corpus
//! on stable, so every `cargo test -p monit-host` checks them too.
//!
//! A body panics only where the host breaks a promise it makes about outside input (an error
//! that does not name its source, a secret in the effective config, a non-finite reading); any
//! other panic comes from the code under test and is a bug there.

use monit_cf_metrics::vm::{self as vm_metrics, VmUsage};
use monit_host::config::legacy_ini;
use monit_host::evaluate::engine::{self, Change, EngineOptions, OpenAlarm, OpenStatus, Policy};
use monit_host::metric_store::influx::{self, Series};
use monit_host::model::{AlarmType, Level, Origin, Resource, Target};
use std::collections::HashMap;
use std::path::Path;

/// The InfluxDB base URL the decoder is given: every decode error must name it.
pub const INFLUX_URL: &str = "http://influx.fuzz.invalid:8086";

/// The Prometheus API base URL the decoder is given: every decode error must name it.
pub const PROMETHEUS_URL: &str = "http://prometheus.fuzz.invalid:8428";

/// Evaluation time when the data gives none that is usable (2027-01-15).
const DEFAULT_NOW: i64 = 1_800_000_000;

/// config.ini keys holding a secret, and where `Settings::masked()` shows the translated value.
const SECRET_KEYS: &[(&str, &[&str])] = &[
    ("monitoring.db.password", &["monitoring_db", "password"]),
    (
        "portal.db.password",
        &["plugins", "autoscale", "portal_db", "password"],
    ),
    ("influx.pass", &["influx", "password"]),
    ("bosh.password", &["plugins", "bosh", "password"]),
    ("mail.sender.password", &["plugins", "email", "password"]),
    (
        "cf.client.password",
        &["plugins", "autoscale", "cf_password"],
    ),
    (
        "cf.client.clientpassword",
        &["plugins", "autoscale", "client_secret"],
    ),
];

/// `legacy_ini::parse` on the text, then the whole translation (`Settings::load_with_env` on a
/// `config.ini` written into `dir`). Parsing never fails; loading fails with a message naming
/// the file, or yields settings whose secrets are masked.
pub fn legacy_ini(data: &[u8], dir: &Path) {
    let text = std::str::from_utf8(data).ok();
    let entries = text.map(legacy_ini::parse).unwrap_or_default();
    if let Some(text) = text {
        check_entries(text, &entries);
    }
    let path = dir.join("config.ini");
    if let Err(e) = std::fs::write(&path, data) {
        // the fuzzing machine's problem, not the parser's
        panic!("cannot write {}: {e}", path.display());
    }
    match monit_host::plugin::load_settings_with_env(Some(&path), HashMap::new()) {
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(
                msg.contains(&path.display().to_string()),
                "a config error must name the file: {msg}"
            );
        }
        Ok(settings) => {
            assert!(settings.batch.interval_seconds > 0, "validated");
            let masked = monit_host::plugin::masked_settings(&settings);
            for (key, at) in SECRET_KEYS {
                // a plugin's key is read only when the plugin is compiled in
                if !legacy_ini::is_known_key(
                    key,
                    &legacy_ini::legacy_plugins(&monit_host::plugin::plugin_keys()),
                ) {
                    continue;
                }
                let Some(value) = entries.iter().rev().find(|e| e.key == *key) else {
                    continue;
                };
                if value.value.is_empty() {
                    continue;
                }
                let shown = at.iter().try_fold(&masked, |v, k| v.get(*k));
                assert_eq!(
                    shown.and_then(|v| v.as_str()),
                    Some("***"),
                    "{key} shown unmasked in the effective config"
                );
            }
        }
    }
}

fn check_entries(text: &str, entries: &[legacy_ini::Entry]) {
    let lines: Vec<&str> = text.lines().collect();
    let mut previous = 0;
    for e in entries {
        assert!(
            e.line > previous && e.line <= lines.len(),
            "line numbers increase and exist: {e:?}"
        );
        previous = e.line;
        assert!(!e.key.is_empty(), "{e:?}");
        assert_eq!(e.key, e.key.trim(), "keys are trimmed: {e:?}");
        assert!(!e.key.contains('='), "split at the first `=`: {e:?}");
        assert!(
            !e.key.starts_with('#') && !e.key.starts_with(';'),
            "comment lines are not entries: {e:?}"
        );
        assert_eq!(e.value, e.value.trim(), "values are trimmed: {e:?}");
        assert!(!e.value.contains('⇒'), "`⇒ comment` is stripped: {e:?}");
        assert!(
            lines[e.line - 1].contains(&e.key),
            "an entry comes from its line: {e:?}"
        );
    }
}

/// `influx::decode` on an answer body: an error names the InfluxDB URL; a decoded answer goes
/// through [`vm_fold`].
pub fn influx_decode(data: &[u8]) {
    match influx::decode(INFLUX_URL, "fuzz_db", data) {
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(INFLUX_URL),
                "a decode error must name InfluxDB: {msg}"
            );
        }
        Ok(series) => vm_fold(&series),
    }
}

/// A Prometheus API `/api/v1/query` answer: decoded whole, and streamed through the `Splitter`
/// in pieces of every size from 1 to 7 bytes. Both agree; an error names the store's URL.
pub fn prometheus_decode(data: &[u8]) {
    use monit_host::metric_store::prometheus::{Splitter, decode_fold};
    let mut whole = Vec::new();
    let at_once = decode_fold(PROMETHEUS_URL, data, &mut |s| whole.push(s));
    if let Err(e) = &at_once {
        assert!(e.to_string().contains(PROMETHEUS_URL), "{e}");
    }
    for size in 1..=7 {
        let mut got = Vec::new();
        let mut sp = Splitter::new(1 << 20);
        let fed = data
            .chunks(size)
            .try_for_each(|c| sp.feed(c, &mut |s| got.push(s)));
        let streamed = fed
            .map_err(|_| ())
            .and_then(|_| sp.finish(PROMETHEUS_URL).map_err(|_| ()));
        if let (Ok(n), Ok(m)) = (&at_once, &streamed) {
            assert_eq!(n, m, "pieces of {size}");
            assert_eq!(got.len(), whole.len(), "pieces of {size}");
            for (a, b) in got.iter().zip(&whole) {
                assert_eq!(a.labels, b.labels, "pieces of {size}");
                assert!(a.value == b.value || (a.value.is_nan() && b.value.is_nan()));
            }
        }
    }
}

/// `vm_metrics::fold` (grouped by `ip` and ungrouped), then readings and the alarm engine: every
/// bucket is a finite percentage in its range, and no alarm carries a non-finite value.
pub fn vm_fold(series: &[Series]) {
    for group_by in [Some("ip"), None] {
        let folded = vm_metrics::fold(series, group_by);
        for (key, b) in &folded {
            check_buckets(key, b);
        }
        evaluate(&folded);
    }
}

fn check_buckets(key: &str, u: &VmUsage) {
    for (resource, stats) in [("cpu", u.cpu), ("memory", u.memory), ("disk", u.disk)] {
        if let Some(st) = stats {
            assert!(
                st.mean.is_finite() && st.peak.is_finite(),
                "{key} {resource}: {st:?}"
            );
            assert!(
                st.peak >= st.mean,
                "{key} {resource}: peak below mean {st:?}"
            );
            assert!(st.buckets >= 1, "{key} {resource}: {st:?}");
        }
    }
    if let Some(c) = u.cpu {
        assert!(
            (0.0..=101.0).contains(&c.mean),
            "{key} cpu: {} is not a percentage",
            c.mean
        );
    }
    if let Some(d) = u.disk {
        assert!(d.mean >= 0.0, "{key} disk: {}", d.mean);
    }
}

fn evaluate(folded: &HashMap<String, VmUsage>) {
    // the window is applied by the store: any clock will do
    let now = DEFAULT_NOW;
    let Some(now_ts) = chrono::DateTime::from_timestamp(now, 0) else {
        return;
    };
    let mut keys: Vec<&String> = folded.keys().collect();
    keys.sort();
    let mut readings = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let target = Target {
            origin: Origin::Pas,
            origin_id: i as i64 + 1,
            name: format!("vm/{key}").into(),
            ip: key.as_str().into(),
            app: None,
        };
        readings.extend(vm_metrics::readings_for(&target, folded.get(*key)));
    }
    // a VM in the inventory without data at all
    readings.extend(vm_metrics::readings_for(
        &Target {
            origin: Origin::Pas,
            origin_id: 0,
            name: "silent".into(),
            ip: "0.0.0.0".into(),
            app: None,
        },
        None,
    ));
    let policies: Vec<Policy> = Resource::ALL
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
        .collect();
    // an open warning of every kind on the first VM, so escalation and recovery run too
    let open: Vec<OpenAlarm> = [
        AlarmType::Cpu,
        AlarmType::Memory,
        AlarmType::Disk,
        AlarmType::Fail,
    ]
    .iter()
    .enumerate()
    .map(|(i, ty)| OpenAlarm {
        text_digest: None,
        id: i as i64 + 1,
        origin: Origin::Pas,
        origin_id: 1,
        alarm_type: *ty,
        level: if *ty == AlarmType::Fail {
            Level::Fail
        } else {
            Level::Warning
        },
        status: OpenStatus::Raised,
        raised_at: now_ts - chrono::Duration::hours(1),
        last_sent: None,
        app_name: None,
        app_index: None,
        recovered: false,
        notified_level: if *ty == AlarmType::Fail {
            Level::Fail
        } else {
            Level::Warning
        },
    })
    .collect();
    let opts = EngineOptions {
        auto_resolve: engine::AutoResolve::Unclaimed,
        default_repeat_minutes: 10,
    };
    let changes = engine::evaluate(&policies, &open, &readings, &[Origin::Pas], now_ts, &opts);
    for c in &changes {
        let value = match c {
            Change::Open { value, .. }
            | Change::Escalate { value, .. }
            | Change::StepDown { value, .. }
            | Change::Continue { value, .. }
            | Change::Rebreach { value, .. }
            | Change::Recover { value, .. } => value,
        };
        if let Some(v) = value {
            assert!(
                v.is_finite(),
                "an alarm change with a non-finite value: {c:?}"
            );
        }
    }
}
