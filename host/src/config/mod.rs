//! Settings: a documented TOML file (`config/monit-batch.toml`) or the original's `config.ini`,
//! then `MONIT_BATCH__SECTION__KEY` environment overrides, then `PORT` (Cloud Foundry).
//!
//! The first stage. In: the config file and the environment. Out: [`Settings`], with the
//! plugin sections as data (the registry reads them: this folder knows no plugin), secrets
//! that never print ([`secret`]), and what may be shown of any text that came from outside
//! ([`redact`] for URLs and credentials, [`visible`] for control characters).
//!
//! This file holds the settings types and their defaults; the work on them is in submodules:
//! [`load`] reads the sources (file, config.ini, environment, `VCAP_SERVICES`, `PORT`), moves
//! the keys plugins took over into their sections, names the key of a number too large and
//! takes credentials out of URLs; [`validate`] checks every value and range (with the bounds
//! other stages share); [`show`] gives the masked view that `check-config` and `Debug` print.

pub mod console;
pub mod legacy_ini;
pub mod load;
pub mod redact;
pub mod secret;
pub mod show;
pub mod stream;
pub use stream::StreamSettings;
pub mod validate;
pub mod visible;

pub use load::{ENV_PREFIX, MovedKey, PluginKeys, default_config_path, move_plugin_keys};
pub use validate::{
    MAX_MAINTENANCE_HOURS, MAX_VM_REMOVAL_GRACE_MINUTES, check_log_level, check_range,
    is_label_name,
};

use crate::config::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub batch: BatchSettings,
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub log: LogSettings,
    /// The Monitoring DB (MySQL / MariaDB): alarms, policies, inventory.
    pub monitoring_db: DbSettings,
    #[serde(default)]
    pub influx: InfluxSettings,
    /// Which metric store the collectors read: `[metrics] backend`.
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// A store that speaks the Prometheus HTTP API (VictoriaMetrics, Prometheus, Thanos, Mimir),
    /// read when `metrics.backend = "prometheus"`.
    #[serde(default)]
    pub prometheus: PrometheusSettings,
    #[serde(default)]
    pub alarms: AlarmSettings,
    /// `[stream]`: the points the writers send the batch, and the InfluxDB subscription it keeps.
    #[serde(default)]
    pub stream: stream::StreamSettings,
    /// `[console]`: the operator console on the HTTP port (`/ui/`), off by default.
    #[serde(default)]
    pub console: console::ConsoleSettings,
    /// `[plugins.<name>]` sections; each plugin reads its own. `enabled` is common to all.
    #[serde(default)]
    pub plugins: BTreeMap<String, serde_json::Value>,
    /// where these settings came from, for messages
    #[serde(skip)]
    pub source: String,
    /// the merged config, kept so a plugin's typed section errors name the full key
    #[serde(skip)]
    pub raw: Option<std::sync::Arc<config::Config>>,
    /// Problems found while loading that are not errors (an unknown config.ini key, a password
    /// taken out of a URL): logged once logging has started, and printed by check-config.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSettings {
    /// Seconds between two ticks (`batch.interval.second` in config.ini). Must be > 0.
    pub interval_seconds: u64,
    /// Longest time one plugin may take in one step before it is abandoned for this tick.
    pub step_timeout_seconds: u64,
    /// batch_runs rows and sent notifications older than this are deleted.
    pub ledger_retention_days: u64,
    /// Longest time the inventory step (BOSH director tasks) may take.
    pub inventory_timeout_seconds: u64,
    /// Name of this instance in logs and the ledger (defaults to the host name).
    pub instance_name: Option<String>,
    /// Several instances may run: only the holder of a MySQL named lock ticks.
    pub leader_election: bool,
    /// A VM missing from the BOSH inventory keeps its `vms` row (same id, open alarms) until it
    /// has been missing this long; then it is removed and its open alarms closed. 0 removes it
    /// in the first sync that misses it. At most 10080 (a week).
    pub vm_removal_grace_minutes: u64,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            interval_seconds: 60,
            step_timeout_seconds: 30,
            inventory_timeout_seconds: 120,
            ledger_retention_days: 30,
            instance_name: None,
            leader_election: true,
            vm_removal_grace_minutes: 30,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Serve /health, /ready and /metrics. `PORT` (Cloud Foundry) overrides `port`.
    pub enabled: bool,
    pub bind: String,
    pub port: u16,
    /// A client must send a request's headers within this time, else its connection is closed
    /// (also an idle keep-alive connection waiting for its next request).
    pub header_read_timeout_seconds: u64,
    /// Longest time one request may take; then it is answered 408.
    pub request_timeout_seconds: u64,
    /// Connections served at once. At the limit the oldest idle or slow one is closed to make
    /// room; when all are busy, [`crate::run::http::PROBE_RESERVE`] more are served `/health` and
    /// `/ready` only; beyond that clients wait in the listen backlog, so slow clients can
    /// neither use up the process's file descriptors nor keep the probes out.
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: "0.0.0.0".into(),
            port: 9999,
            header_read_timeout_seconds: 10,
            request_timeout_seconds: 30,
            max_connections: 64,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `plain` or `json`
    pub format: String,
    /// tracing filter, e.g. `info` or `monit_host=debug,info`; RUST_LOG overrides it
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: "plain".into(),
            level: "info".into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbSettings {
    /// Only `mysql` (MySQL or MariaDB) is supported, as in the original.
    #[serde(default = "default_db_type")]
    pub db_type: String,
    #[serde(default = "default_db_host")]
    pub host: String,
    #[serde(default = "default_db_port")]
    pub port: u16,
    pub dbname: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: Secret,
    /// CA file to verify the server's TLS certificate; TLS is used when the server offers it.
    #[serde(default)]
    pub ssl_ca: Option<PathBuf>,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_db_type() -> String {
    "mysql".into()
}
fn default_db_host() -> String {
    "127.0.0.1".into()
}
fn default_db_port() -> u16 {
    3306
}
fn default_max_connections() -> u32 {
    5
}

/// The metric store the collectors read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricBackend {
    /// InfluxDB 1.x (`[influx]`), as the original
    #[default]
    Influxdb,
    /// the Prometheus HTTP API (`[prometheus]`): VictoriaMetrics, Prometheus, Thanos, Mimir
    Prometheus,
}

impl MetricBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricBackend::Influxdb => "influxdb",
            MetricBackend::Prometheus => "prometheus",
        }
    }
}

/// `[metrics]`
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// `"influxdb"` (default) or `"prometheus"`. With `"prometheus"` no `[influx]` section is
    /// needed: the database and measurement names still say which series to read (see
    /// docs/metric-stores.md for how they map to metric names).
    pub backend: MetricBackend,
    /// `"query"` (default): each tick queries the store. `"stream"`: the writers' points are
    /// received on the HTTP port (`/write`, `/api/v1/write`) and a tick reads the windows kept
    /// in memory, after a warm-up in query mode (docs/metric-stores.md).
    pub mode: MetricMode,
}

/// How a tick reads the metrics: `[metrics] mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricMode {
    #[default]
    Query,
    Stream,
}

impl MetricMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricMode::Query => "query",
            MetricMode::Stream => "stream",
        }
    }
}

/// `[prometheus]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusSettings {
    /// Base URL of the Prometheus HTTP API, e.g. `http://victoria-metrics.example:8428`
    /// (VictoriaMetrics single node), `http://vmselect.example:8481/select/0/prometheus`
    /// (cluster), `https://prometheus.example:9090`.
    pub url: String,
    /// Basic auth (or userinfo in the URL).
    pub user: Option<String>,
    pub password: Secret,
    /// Bearer token (wins over basic auth when set).
    pub bearer_token: Secret,
    pub timeout_seconds: u64,
    /// CA file for a store behind a private CA.
    pub ca_file: Option<PathBuf>,
    /// Skip TLS verification: only for a lab, and logged loudly.
    pub insecure_skip_verify: bool,
    /// Largest answer read, in bytes; a larger one is an error naming this key.
    pub max_answer_bytes: u64,
    /// The label that carries the InfluxDB database name (`/write?db=NAME` in VictoriaMetrics
    /// becomes `db="NAME"`). Empty: the series are not filtered on a database.
    pub db_label: String,
}

impl Default for PrometheusSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8428".into(),
            user: None,
            password: Secret::default(),
            bearer_token: Secret::default(),
            timeout_seconds: 20,
            ca_file: None,
            insecure_skip_verify: false,
            max_answer_bytes: 256 * 1024 * 1024,
            db_label: "db".into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxSettings {
    /// InfluxDB 1.x HTTP base URL.
    pub url: String,
    pub user: Option<String>,
    pub password: Secret,
    pub timeout_seconds: u64,
    /// CA file for an InfluxDB behind a private CA.
    pub ca_file: Option<PathBuf>,
    /// Skip TLS verification: only for a lab, and logged loudly.
    pub insecure_skip_verify: bool,
    /// Width of the time buckets the window is cut into (mean per bucket, then over buckets).
    pub bucket_seconds: u64,
    /// Largest answer read from InfluxDB, in bytes; a larger one is an error naming this key.
    /// The default keeps the process well inside the 256M of manifest.yml: an answer is about
    /// 3.3 MB per 1,000 containers (docs/benchmarks.md), so 48 MiB covers ~14,000 containers.
    pub max_answer_bytes: u64,
}

impl Default for InfluxSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8086".into(),
            user: None,
            password: Secret::default(),
            timeout_seconds: 20,
            ca_file: None,
            insecure_skip_verify: false,
            bucket_seconds: 30,
            max_answer_bytes: 48 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmSettings {
    /// Which recovered alarms are closed (resolve_status 3, complete_user `system`): `unclaimed`
    /// (status 1 only), `all` or `none`; true/false are read as unclaimed/none.
    pub auto_resolve: AutoResolve,
    /// `ko` keeps the original's Korean titles and messages; `en` writes English.
    pub language: String,
    /// Window for a policy whose measure_time is 0 or missing (a 2.0 database upgraded in place).
    pub default_measure_seconds: u64,
    /// repeat_time (minutes) for `fail` (no data) alarms of an origin without policies.
    pub default_repeat_minutes: u64,
    /// Base URL of the monitoring web app (`mail.resource.url`), linked from notifications.
    pub resource_url: Option<String>,
    /// Accepted for config.ini compatibility and ignored: all times are UTC, no gap is needed.
    pub gmt_time_hour_gap: i64,
    /// Offset from UTC, in hours, of the times the batch writes as text into rows the
    /// management app shows (the `system` notes in `alarm_actions`). The app adds its own
    /// `gmt.time.hour.gap` (9 in PaaS-TA) to the DATETIME columns, so a note in UTC would read
    /// 9 hours off next to them. -14 to 14.
    pub display_utc_offset_hours: f64,
    /// First retry delay of a failed notification; doubles per attempt up to the maximum.
    pub retry_min_seconds: u64,
    pub retry_max_seconds: u64,
    /// Each tick sends for at most this long (fresh alarms first), then leaves the rest for the
    /// next tick: a step never times out halfway through a batch. At most
    /// batch.step_timeout_seconds (the smaller of the two applies).
    pub notify_budget_seconds: u64,
    /// A notification not delivered within this many hours is parked (`monit-batch outbox`).
    pub notification_max_age_hours: u64,
    /// When at least this share of an origin's VMs (of two or more) has no data in the window,
    /// the metrics pipeline is down, not the VMs: one pipeline alarm instead of a `fail` alarm
    /// per VM. Greater than 0, at most 1 (1 = only when every VM is silent).
    pub pipeline_gap_ratio: f64,
    /// More notifications than this for the same recipients in one send go out as one digest
    /// (one mail, one webhook call) listing every alarm; at or under it, one per alarm. 0 turns
    /// digests off.
    pub digest_threshold: u64,
    /// A VM that is down holds back the notifications of its own cpu/memory/disk alarms and, for
    /// a cell, of the containers on it; an app's autoscale alarm those of its instances. The
    /// alarms are still recorded.
    pub inhibit: bool,
    /// While the BOSH director runs a task (deploy, recreate, stop, start, restart) on a
    /// deployment, its VMs' alarms are recorded but not notified, for the task and this many
    /// minutes after it was last seen running.
    pub maintenance_grace_minutes: u64,
    /// A maintenance hold ends this many hours after the batch first saw a task on the
    /// deployment, even while the director still reports one (a task stuck in `processing`):
    /// the held alarms are then notified, saying the hold was cut short. 1 to 168.
    pub maintenance_max_hours: u64,
    /// Ask the director for running tasks each tick (maintenance); needs the bosh plugin.
    pub maintenance_from_bosh: bool,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        Self {
            auto_resolve: AutoResolve::Unclaimed,
            language: "ko".into(),
            default_measure_seconds: 120,
            default_repeat_minutes: 10,
            resource_url: None,
            gmt_time_hour_gap: 0,
            display_utc_offset_hours: 9.0,
            retry_min_seconds: 30,
            retry_max_seconds: 3600,
            notify_budget_seconds: 20,
            notification_max_age_hours: 24,
            pipeline_gap_ratio: 0.9,
            digest_threshold: 10,
            inhibit: true,
            maintenance_grace_minutes: 10,
            maintenance_max_hours: 6,
            maintenance_from_bosh: true,
        }
    }
}

impl AlarmSettings {
    /// `display_utc_offset_hours` as an offset (range-checked at load; UTC if it is not one).
    pub fn display_offset(&self) -> chrono::FixedOffset {
        crate::model::offset_of_hours(self.display_utc_offset_hours)
    }
}

/// Which recovered alarms the batch closes (`alarms.auto_resolve`). Accepts the old booleans:
/// `true` is `unclaimed`, `false` is `none`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoResolve {
    /// Only alarms nobody has taken (resolve_status 1). An operator's alarm (2) stays theirs: it
    /// gets a note in alarm_actions and the recovery notice, and keeps its status.
    #[default]
    Unclaimed,
    /// Every recovered alarm, an operator's too (status 3 by `system`).
    All,
    /// None: every recovered alarm gets the note and the notice and stays open.
    None,
}

impl std::str::FromStr for AutoResolve {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "unclaimed" | "true" => Ok(AutoResolve::Unclaimed),
            "all" => Ok(AutoResolve::All),
            "none" | "false" => Ok(AutoResolve::None),
            other => Err(format!(
                "invalid auto_resolve {other:?}: expected \"unclaimed\", \"all\" or \"none\" (or true = unclaimed, false = none)"
            )),
        }
    }
}

impl<'de> serde::Deserialize<'de> for AutoResolve {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = AutoResolve;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"unclaimed\", \"all\", \"none\", true or false")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<AutoResolve, E> {
                Ok(if v {
                    AutoResolve::Unclaimed
                } else {
                    AutoResolve::None
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AutoResolve, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Settings {
    /// How long one tick may spend sending notifications.
    pub fn notify_budget(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.alarms
                .notify_budget_seconds
                .min(self.batch.step_timeout_seconds)
                .max(1),
        )
    }

    pub fn plugin_enabled(&self, name: &str) -> bool {
        self.plugins
            .get(name)
            .and_then(|s| s.get("enabled"))
            .and_then(as_bool)
            .unwrap_or(false)
    }

    /// Names of the plugins enabled in config, sorted.
    pub fn enabled_plugins(&self) -> Vec<String> {
        self.plugins
            .keys()
            .filter(|n| self.plugin_enabled(n))
            .cloned()
            .collect()
    }

    pub fn instance_name(&self) -> String {
        self.batch.instance_name.clone().unwrap_or_else(|| {
            std::env::var("CF_INSTANCE_GUID")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| format!("pid-{}", std::process::id()))
        })
    }
}

/// `true`/`false`, as TOML writes them or as the environment does (strings: environment values
/// are not guessed at, so a password `007` stays `007`).
fn as_bool(v: &serde_json::Value) -> Option<bool> {
    match v {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}
