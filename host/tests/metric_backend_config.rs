//! `[metrics] backend` and `[prometheus]`: the switch on and off, what each needs, and the
//! errors and masking of the Prometheus settings.

use monit_host::config::{MetricBackend, Settings};
use monit_host::metric_store::MetricStore;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("m.toml");
    std::fs::write(&p, text).unwrap();
    p
}

const MINIMAL: &str = "[monitoring_db]\ndbname = \"monit\"\nusername = \"monit\"\n";

fn load(text: &str, env: &[(&str, &str)]) -> anyhow::Result<Settings> {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), &format!("{MINIMAL}{text}"));
    monit_host::plugin::load_settings_with_env(
        Some(&p),
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    )
}

#[test]
fn influxdb_is_the_default_backend() {
    let s = load("", &[]).unwrap();
    assert_eq!(s.metrics.backend, MetricBackend::Influxdb);
    let store = MetricStore::new(s.metrics.backend, &s.influx, &s.prometheus).unwrap();
    assert!(matches!(store, MetricStore::Influx(_)), "{store:?}");
    assert_eq!(store.url(), "http://127.0.0.1:8086");
}

#[test]
fn prometheus_backend_needs_no_influx_section() {
    let s = load(
        "[metrics]\nbackend = \"prometheus\"\n[prometheus]\nurl = \"http://vm.example:8428/\"\ntimeout_seconds = 5\n",
        &[],
    )
    .unwrap();
    assert_eq!(s.metrics.backend, MetricBackend::Prometheus);
    let store = MetricStore::new(s.metrics.backend, &s.influx, &s.prometheus).unwrap();
    assert!(matches!(store, MetricStore::Prometheus(_)), "{store:?}");
    assert_eq!(store.url(), "http://vm.example:8428");
    // the schema's names (database, measurement) are the collectors' own ([plugins.<name>] db,
    // measurement): none is set here, so none is in the host's settings
    assert!(s.plugins.is_empty(), "{:?}", s.plugins);
}

#[test]
fn a_broken_influx_url_matters_only_with_the_influxdb_backend() {
    let bad = [("MONIT_BATCH__INFLUX__URL", "not a url")];
    let e = load("", &bad).unwrap_err();
    assert!(format!("{e:#}").contains("influx.url"), "{e:#}");
    let s = load("[metrics]\nbackend = \"prometheus\"\n", &bad).unwrap();
    assert_eq!(s.metrics.backend, MetricBackend::Prometheus);
    // and the other way round
    let bad = [("MONIT_BATCH__PROMETHEUS__URL", "not a url")];
    load("", &bad).unwrap();
    let e = load("[metrics]\nbackend = \"prometheus\"\n", &bad).unwrap_err();
    assert!(format!("{e:#}").contains("prometheus.url"), "{e:#}");
}

#[test]
fn bad_prometheus_settings_name_their_key() {
    for (text, key) in [
        ("[metrics]\nbackend = \"graphite\"\n", "graphite"),
        (
            "[metrics]\nbackend = \"prometheus\"\n[prometheus]\nurl = \"ftp://vm.example\"\n",
            "prometheus.url",
        ),
        (
            "[metrics]\nbackend = \"prometheus\"\n[prometheus]\ndb_label = \"db-name\"\n",
            "prometheus.db_label",
        ),
        (
            "[metrics]\nbackend = \"prometheus\"\n[prometheus]\nmax_answer_bytes = 10\n",
            "prometheus.max_answer_bytes",
        ),
        ("[prometheus]\nurll = \"http://x.example\"\n", "urll"),
    ] {
        let e = load(text, &[]).unwrap_err();
        assert!(format!("{e:#}").contains(key), "{text}: {e:#}");
    }
    let s = load(
        "[metrics]\nbackend = \"prometheus\"\n[prometheus]\nca_file = \"/nonexistent/ca.pem\"\n",
        &[],
    )
    .unwrap();
    let e = MetricStore::new(s.metrics.backend, &s.influx, &s.prometheus).unwrap_err();
    assert!(e.to_string().contains("prometheus.ca_file"), "{e}");
}

#[test]
fn prometheus_secrets_are_masked_everywhere() {
    let s = load(
        "[metrics]\nbackend = \"prometheus\"\n[prometheus]\nurl = \"https://reader:url-pw-1@vm.example\"\nbearer_token = \"tok-secret-2\"\nuser = \"u\"\npassword = \"pw-secret-3\"\n",
        &[],
    )
    .unwrap();
    let masked = serde_json::to_string(&monit_host::plugin::masked_settings(&s)).unwrap();
    let store = MetricStore::new(s.metrics.backend, &s.influx, &s.prometheus).unwrap();
    for shown in [
        masked,
        format!("{s:?}"),
        format!("{store:?}"),
        store.url().to_string(),
    ] {
        for secret in ["url-pw-1", "tok-secret-2", "pw-secret-3"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
    assert_eq!(store.url(), "https://vm.example");
}
