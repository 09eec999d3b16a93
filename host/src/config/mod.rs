//! Settings: a documented TOML file (`config/monit-batch.toml`) or the original's `config.ini`,
//! then `MONIT_BATCH__SECTION__KEY` environment overrides, then `PORT` (Cloud Foundry).
//!
//! The first stage. In: the config file and the environment. Out: [`Settings`], with the
//! plugin sections as data (the registry reads them: this folder knows no plugin), secrets
//! that never print ([`secret`]), and what may be shown of any text that came from outside
//! ([`redact`] for URLs and credentials, [`visible`] for control characters).

pub mod legacy_ini;
pub mod redact;
pub mod secret;
pub mod visible;

use crate::config::legacy_ini::LegacyIni;
use crate::config::secret::Secret;
use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const ENV_PREFIX: &str = "MONIT_BATCH";

/// Upper bound of `batch.vm_removal_grace_minutes`.
pub const MAX_VM_REMOVAL_GRACE_MINUTES: u64 = 7 * 24 * 60;
/// Upper bound of `alarms.maintenance_max_hours`: a week.
pub const MAX_MAINTENANCE_HOURS: u64 = 7 * 24;

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

impl DbSettings {
    /// The type and numbers in range; errors name the section as `key` (`monitoring_db`, or a
    /// plugin's `plugins.<name>.<db>`).
    pub fn check(&self, key: &str) -> anyhow::Result<()> {
        if self.db_type != "mysql" {
            bail!(
                "{key}.db_type = {:?}: only \"mysql\" is supported",
                self.db_type
            );
        }
        check_range(&format!("{key}.port"), self.port, 1..=u16::MAX)?;
        check_range(
            &format!("{key}.max_connections"),
            self.max_connections,
            1..=1000,
        )
    }
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

/// Debug shows the masked form: the raw config and plugin sections hold secrets in clear.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Settings({}) {}",
            self.source,
            self.masked_with(&|_| None)
        )
    }
}

/// Where settings come from: a file (TOML, or `.ini` for the legacy format) plus the environment.
pub fn default_config_path() -> Option<PathBuf> {
    ["monit-batch.toml", "config/monit-batch.toml", "config.ini"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn is_legacy(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ini"))
}

/// What configuration needs to know of one plugin, handed in as data by the registry
/// (`plugin::plugin_keys`): configuration reads the plugin sections, it does not know plugins.
#[derive(Clone, Copy, Debug)]
pub struct PluginKeys {
    pub name: &'static str,
    /// host keys this plugin took over, moved into `[plugins.<name>]` before the settings load
    pub moved_keys: &'static [MovedKey],
    /// the original's config.ini keys that set this plugin's settings
    pub legacy_ini: crate::config::legacy_ini::LegacyConfig,
}

/// A setting that moved from a host section into the plugin's own: `old` is its former dotted
/// path (a key such as `influx.<plugin>_db`, or a whole host section), `new` its key in
/// `[plugins.<name>]`.
#[derive(Clone, Copy, Debug)]
pub struct MovedKey {
    pub old: &'static str,
    pub new: &'static str,
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

/// A label name is `[a-zA-Z_][a-zA-Z0-9_]*`; anything else from config is refused by the
/// readers before it reaches a query.
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
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

    /// Loads and validates the host's settings; `plugins` (what the registry knows of each
    /// compiled plugin, see `plugin::load_settings`) say which config.ini keys and which moved
    /// host keys belong to which `[plugins.<name>]` section, whose contents stay data here.
    /// Errors name the file, the key and the reason.
    pub fn load_with_plugins(
        path: Option<&Path>,
        env: std::collections::HashMap<String, String>,
        plugins: &[PluginKeys],
    ) -> anyhow::Result<Settings> {
        let mut builder = config::Config::builder();
        let source = match path {
            Some(p) if !p.is_file() => bail!("config file {} not found", p.display()),
            Some(p) if is_legacy(p) => {
                builder = builder.add_source(LegacyIni::new(
                    p,
                    crate::config::legacy_ini::legacy_plugins(plugins),
                ));
                p.display().to_string()
            }
            Some(p) => {
                builder = builder.add_source(
                    config::File::from(p.to_path_buf()).format(config::FileFormat::Toml),
                );
                p.display().to_string()
            }
            None => "environment".to_string(),
        };
        if let Some(vcap) = env.get("VCAP_SERVICES")
            && let Some(db) = vcap_mysql(vcap)?
        {
            builder = builder.add_source(config::File::from_str(
                &serde_json::json!({ "monitoring_db": db }).to_string(),
                config::FileFormat::Json,
            ));
        }
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(false)
                .source(Some(env.clone().into_iter().collect())),
        );
        if let Some(port) = env.get("PORT") {
            let port: u16 = port.parse().with_context(|| {
                format!("environment variable PORT: not a port number: {port:?}")
            })?;
            builder = builder.set_override("server.port", port as i64)?;
        }
        let raw = builder.build().map_err(|e| {
            // the TOML reader's "number too large to fit in target type" names neither key nor line
            let toml_text = path
                .filter(|p| !is_legacy(p))
                .and_then(|p| std::fs::read_to_string(p).ok());
            match toml_text.and_then(|t| huge_integer_in_toml(&t)) {
                Some((line, key)) => anyhow::anyhow!(
                    "invalid config in {source}: line {line}: {key}: the number is too large for any setting"
                ),
                None => anyhow::anyhow!("invalid config in {source}: {e}"),
            }
        })?;
        if let Some(key) = number_too_large(&raw) {
            bail!("invalid config in {source}: {key}: the number is too large for any setting");
        }
        let mut raw = raw;
        let moved = move_plugin_keys(&mut raw.cache, plugins);
        let mut settings: Settings = raw
            .clone()
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("invalid config in {source}: {e}"))?;
        if let Some(p) = path.filter(|p| is_legacy(p)) {
            settings
                .warnings
                .extend(crate::config::legacy_ini::unknown_key_warnings(
                    p,
                    &crate::config::legacy_ini::legacy_plugins(plugins),
                ));
        }
        settings.warnings.extend(moved);
        settings.source = source;
        settings.raw = Some(std::sync::Arc::new(raw));
        settings.take_url_credentials()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Takes userinfo out of the host's URL keys, so that no client, log line or error ever
    /// holds a URL with a password: `influx.url`'s becomes the InfluxDB credentials (unless
    /// `influx.user` is set), `alarms.resource_url`'s is dropped (it is a link in mails).
    fn take_url_credentials(&mut self) -> anyhow::Result<()> {
        let src = self.source.clone();
        // the URL of the store not in use may be anything: it is never read
        let backend = self.metrics.backend;
        for (key, url, user, password, in_use) in [
            (
                "influx",
                &mut self.influx.url,
                &mut self.influx.user,
                &mut self.influx.password,
                backend == MetricBackend::Influxdb,
            ),
            (
                "prometheus",
                &mut self.prometheus.url,
                &mut self.prometheus.user,
                &mut self.prometheus.password,
                backend == MetricBackend::Prometheus,
            ),
        ] {
            let (parsed, creds) =
                match crate::config::redact::split_userinfo(&format!("{key}.url"), url) {
                    Ok(x) => x,
                    Err(e) if in_use => bail!("invalid config in {src}: {e}"),
                    Err(_) => continue,
                };
            if let Some(c) = creds {
                if user.as_deref().is_none_or(str::is_empty) {
                    *user = Some(c.user);
                    *password = c.password;
                } else {
                    self.warnings.push(format!(
                        "{key}.url has a user and password; {key}.user and {key}.password are used instead"
                    ));
                }
                *url = parsed.to_string();
            }
        }
        if let Some(raw) = self.alarms.resource_url.clone()
            && let Ok((url, Some(_))) =
                crate::config::redact::split_userinfo("alarms.resource_url", &raw)
        {
            self.warnings.push(
                "alarms.resource_url has a user and password: dropped, the link is shown in every notification"
                    .into(),
            );
            self.alarms.resource_url = Some(url.to_string());
        }
        Ok(())
    }

    fn validate(&self) -> anyhow::Result<()> {
        let src = &self.source;
        self.check_numbers()
            .map_err(|e| anyhow::anyhow!("invalid config in {src}: {e}"))?;
        check_log_level(&self.log.level)
            .map_err(|e| anyhow::anyhow!("invalid config in {src}: {e}"))?;
        self.monitoring_db
            .check("monitoring_db")
            .map_err(|e| anyhow::anyhow!("invalid config in {src}: {e}"))?;
        let ratio = self.alarms.pipeline_gap_ratio;
        if !(ratio > 0.0 && ratio <= 1.0) {
            bail!(
                "invalid config in {src}: alarms.pipeline_gap_ratio = {ratio}: must be greater \
                 than 0 and at most 1 (the share of VMs without data that means the metrics \
                 pipeline is down)"
            );
        }
        if !matches!(self.log.format.as_str(), "plain" | "json") {
            bail!(
                "invalid config in {src}: log.format must be \"plain\" or \"json\", got {:?}",
                self.log.format
            );
        }
        if !matches!(self.alarms.language.as_str(), "ko" | "en") {
            bail!(
                "invalid config in {src}: alarms.language must be \"ko\" or \"en\", got {:?}",
                self.alarms.language
            );
        }
        match self.metrics.backend {
            MetricBackend::Influxdb => {
                url::Url::parse(&self.influx.url).with_context(|| {
                    format!("invalid config in {src}: influx.url {:?}", self.influx.url)
                })?;
            }
            MetricBackend::Prometheus => {
                let p = &self.prometheus;
                let url = url::Url::parse(&p.url).with_context(|| {
                    format!("invalid config in {src}: prometheus.url {:?}", p.url)
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    bail!(
                        "invalid config in {src}: prometheus.url: scheme {:?}, expected http or https",
                        url.scheme()
                    );
                }
                if p.max_answer_bytes < 1024 {
                    bail!(
                        "invalid config in {src}: prometheus.max_answer_bytes = {}: at least 1024",
                        p.max_answer_bytes
                    );
                }
                if !p.db_label.is_empty() && !is_label_name(&p.db_label) {
                    bail!(
                        "invalid config in {src}: prometheus.db_label = {:?} is not a label name \
                         ([a-zA-Z_][a-zA-Z0-9_]*)",
                        p.db_label
                    );
                }
            }
        }
        for (name, section) in &self.plugins {
            if !section.is_object() {
                bail!("invalid config in {src}: plugins.{name} must be a table");
            }
            if let Some(enabled) = section.get("enabled")
                && as_bool(enabled).is_none()
            {
                bail!(
                    "invalid config in {src}: plugins.{name}.enabled must be true or false, got {enabled}"
                );
            }
        }
        Ok(())
    }

    /// Every number in range, so that no later sum, product or time conversion overflows.
    fn check_numbers(&self) -> anyhow::Result<()> {
        const DAY: u64 = 86_400;
        let (b, srv, i, a) = (&self.batch, &self.server, &self.influx, &self.alarms);
        check_range("batch.interval_seconds", b.interval_seconds, 1..=DAY)?;
        check_range(
            "batch.step_timeout_seconds",
            b.step_timeout_seconds,
            1..=DAY,
        )?;
        check_range(
            "batch.inventory_timeout_seconds",
            b.inventory_timeout_seconds,
            1..=DAY,
        )?;
        check_range(
            "batch.ledger_retention_days",
            b.ledger_retention_days,
            1..=36_500,
        )?;
        check_range(
            "server.header_read_timeout_seconds",
            srv.header_read_timeout_seconds,
            1..=3600,
        )?;
        check_range(
            "server.request_timeout_seconds",
            srv.request_timeout_seconds,
            1..=3600,
        )?;
        check_range("server.max_connections", srv.max_connections, 1..=10_000)?;
        check_range("influx.timeout_seconds", i.timeout_seconds, 1..=3600)?;
        check_range("influx.bucket_seconds", i.bucket_seconds, 1..=DAY)?;
        check_range(
            "influx.max_answer_bytes",
            i.max_answer_bytes,
            1024..=4 << 30,
        )?;
        check_range(
            "alarms.default_measure_seconds",
            a.default_measure_seconds,
            1..=7 * DAY,
        )?;
        check_range(
            "alarms.default_repeat_minutes",
            a.default_repeat_minutes,
            0..=525_600,
        )?;
        check_range("alarms.gmt_time_hour_gap", a.gmt_time_hour_gap, -24..=24)?;
        check_range(
            "alarms.display_utc_offset_hours",
            a.display_utc_offset_hours,
            -14.0..=14.0,
        )?;
        check_range("alarms.retry_min_seconds", a.retry_min_seconds, 0..=DAY)?;
        check_range("alarms.retry_max_seconds", a.retry_max_seconds, 0..=7 * DAY)?;
        check_range(
            "alarms.notify_budget_seconds",
            a.notify_budget_seconds,
            1..=DAY,
        )?;
        check_range(
            "alarms.notification_max_age_hours",
            a.notification_max_age_hours,
            1..=24 * 365,
        )?;
        check_range("alarms.digest_threshold", a.digest_threshold, 0..=100_000)?;
        check_range(
            "alarms.maintenance_grace_minutes",
            a.maintenance_grace_minutes,
            0..=7 * 24 * 60,
        )?;
        // 0 would hold nothing (that is maintenance_from_bosh = false); a task running for more
        // than a week is stuck, not maintenance
        check_range(
            "alarms.maintenance_max_hours",
            a.maintenance_max_hours,
            1..=MAX_MAINTENANCE_HOURS,
        )?;
        // 0 removes a missing VM at once; at most a week
        check_range(
            "batch.vm_removal_grace_minutes",
            b.vm_removal_grace_minutes,
            0..=MAX_VM_REMOVAL_GRACE_MINUTES,
        )?;
        Ok(())
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

    /// The effective settings as JSON, every secret masked by its type: the host's sections
    /// serialize their `Secret`s as `***`, and each compiled plugin shows its section through its
    /// typed config (`PluginRegistration::show`). A section no compiled plugin reads (or one its
    /// plugin cannot read) shows its keys with every value masked. The userinfo of any URL left
    /// in a plugin section is masked too.
    ///
    /// `show` gives a plugin section's typed view (the registry's, see
    /// `plugin::masked_settings`); `None` masks every value of that section.
    pub fn masked_with(
        &self,
        show: &dyn Fn(&str) -> Option<serde_json::Value>,
    ) -> serde_json::Value {
        use serde_json::Value;
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(Value::Object(plugins)) = v.get_mut("plugins") {
            for (name, section) in plugins.iter_mut() {
                let shown = show(name);
                let enabled = section.get("enabled").cloned();
                *section = match shown {
                    Some(Value::Object(mut typed)) => {
                        if let Some(on) = enabled {
                            typed.entry("enabled").or_insert(on);
                        }
                        Value::Object(typed)
                    }
                    _ => {
                        mask_every_value(section);
                        if let (Some(on), Value::Object(m)) = (enabled, &mut *section) {
                            m.insert("enabled".into(), on);
                        }
                        section.take()
                    }
                };
                redact_url_userinfo(section);
            }
        }
        v
    }

    pub fn instance_name(&self) -> String {
        self.batch.instance_name.clone().unwrap_or_else(|| {
            std::env::var("CF_INSTANCE_GUID")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| format!("pid-{}", std::process::id()))
        })
    }
}

/// Moves the keys the compiled plugins took over from host sections (`influx.<plugin>_db`,
/// `portal_db`) into their `[plugins.<name>]` sections, and returns one deprecation warning per
/// key found. A key set in both places keeps the new one.
pub fn move_plugin_keys(tree: &mut config::Value, plugins: &[PluginKeys]) -> Vec<String> {
    let mut warnings = Vec::new();
    for reg in plugins {
        for m in reg.moved_keys {
            let Some(value) = take_path(tree, m.old) else {
                continue;
            };
            let new = format!("plugins.{}.{}", reg.name, m.new);
            if get_path(tree, &new).is_some() {
                warnings.push(format!(
                    "{} is deprecated and ignored: {new} is set (the old key is read until the next release)",
                    m.old
                ));
            } else {
                warnings.push(format!(
                    "{} is deprecated: write it as `{}` in [plugins.{}] (the old key is read until the next release)",
                    m.old, m.new, reg.name
                ));
                set_path(tree, &new, value);
            }
        }
    }
    warnings
}

fn get_path<'a>(tree: &'a config::Value, path: &str) -> Option<&'a config::Value> {
    path.split('.').try_fold(tree, |v, k| match &v.kind {
        config::ValueKind::Table(t) => t.get(k),
        _ => None,
    })
}

fn take_path(tree: &mut config::Value, path: &str) -> Option<config::Value> {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (
            p.split('.').try_fold(tree, |v, k| match &mut v.kind {
                config::ValueKind::Table(t) => t.get_mut(k),
                _ => None,
            })?,
            l,
        ),
        None => (tree, path),
    };
    match &mut parent.kind {
        config::ValueKind::Table(t) => t.remove(last),
        _ => None,
    }
}

fn set_path(tree: &mut config::Value, path: &str, value: config::Value) {
    let mut node = tree;
    for key in path.split('.') {
        if !matches!(node.kind, config::ValueKind::Table(_)) {
            node.kind = config::ValueKind::Table(Default::default());
        }
        let config::ValueKind::Table(t) = &mut node.kind else {
            return;
        };
        node = t.entry(key.to_string()).or_insert_with(|| {
            config::Value::new(None, config::ValueKind::Table(Default::default()))
        });
    }
    *node = value;
}

/// `(line, section.key)` of the first integer in a TOML text that does not fit 64 bits.
fn huge_integer_in_toml(text: &str) -> Option<(usize, String)> {
    let mut section = String::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if let Some(h) = line.strip_prefix('[') {
            section = h.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let digits = value.trim().trim_start_matches(['+', '-']).replace('_', "");
        if !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
            && value.trim().replace('_', "").parse::<i64>().is_err()
        {
            let key = key.trim();
            let full = if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            };
            return Some((i + 1, full));
        }
    }
    None
}

/// The key of a number beyond 64-bit range: serde's error for it ("number too large to fit in
/// target type") names no key, so it is found here first.
fn number_too_large(raw: &config::Config) -> Option<String> {
    use config::{Value, ValueKind};
    fn walk(prefix: &str, v: &Value) -> Option<String> {
        match &v.kind {
            ValueKind::U64(n) if *n > i64::MAX as u64 => Some(format!("{prefix} = {n}")),
            ValueKind::I128(n) => Some(format!("{prefix} = {n}")),
            ValueKind::U128(n) => Some(format!("{prefix} = {n}")),
            ValueKind::Table(t) => t.iter().find_map(|(k, v)| {
                walk(
                    &if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    },
                    v,
                )
            }),
            ValueKind::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(&format!("{prefix}[{i}]"), v)),
            _ => None,
        }
    }
    walk("", &raw.cache)
}

/// A config number outside `range` is an error naming its key, the value and the range. Plugins
/// check their own sections with it.
pub fn check_range<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> anyhow::Result<()> {
    if !range.contains(&value) {
        bail!(
            "{key} = {value} is out of range: expected {} to {}",
            range.start(),
            range.end()
        );
    }
    Ok(())
}

/// `log.level` is a tracing filter: comma-separated `level` or `target=level` directives. A
/// bare word that is not a level would silently become a target name that matches nothing, so
/// it is refused.
pub fn check_log_level(filter: &str) -> anyhow::Result<()> {
    use tracing_subscriber::filter::LevelFilter;
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if level.trim().parse::<LevelFilter>().is_err() {
            bail!(
                "log.level = {filter:?}: {directive:?} is not a level (off, error, warn, info, debug, trace) or target=level"
            );
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("log.level = {filter:?}: {e}"))?;
    Ok(())
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

/// The Monitoring DB credentials of a MySQL service bound on Cloud Foundry (`VCAP_SERVICES`):
/// the first service whose label, tags or name mention mysql or mariadb. Its `uri`
/// (`mysql://user:pass@host:port/db`) or its hostname/port/name/username/password fields.
fn vcap_mysql(vcap: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let services: BTreeMap<String, Vec<serde_json::Value>> = serde_json::from_str(vcap)
        .context("environment variable VCAP_SERVICES is not the JSON Cloud Foundry writes")?;
    let is_mysql = |s: &serde_json::Value, label: &str| {
        let text = format!("{label} {} {}", s["name"], s["tags"]).to_ascii_lowercase();
        text.contains("mysql") || text.contains("mariadb")
    };
    let Some(svc) = services
        .iter()
        .flat_map(|(label, list)| list.iter().map(move |s| (label, s)))
        .find(|(label, s)| is_mysql(s, label))
        .map(|(_, s)| s)
    else {
        return Ok(None);
    };
    let c = &svc["credentials"];
    let name = svc["name"].as_str().unwrap_or("?");
    let mut db = serde_json::Map::new();
    if let Some(uri) = c["uri"].as_str().or(c["jdbcUrl"].as_str()) {
        let u = url::Url::parse(uri.trim_start_matches("jdbc:")).with_context(|| {
            format!("VCAP_SERVICES service {name:?}: credentials.uri is not a URL")
        })?;
        if let Some(h) = u.host_str() {
            db.insert("host".into(), h.into());
        }
        if let Some(p) = u.port() {
            db.insert("port".into(), p.into());
        }
        let dbname = u.path().trim_start_matches('/');
        if !dbname.is_empty() {
            db.insert("dbname".into(), dbname.into());
        }
        if !u.username().is_empty() {
            db.insert("username".into(), u.username().into());
        }
        if let Some(p) = u.password() {
            let p = percent_encoding::percent_decode_str(p).decode_utf8_lossy();
            db.insert("password".into(), p.into());
        }
    }
    for (from, to) in [
        ("hostname", "host"),
        ("host", "host"),
        ("name", "dbname"),
        ("database", "dbname"),
        ("username", "username"),
        ("user", "username"),
        ("password", "password"),
    ] {
        if let Some(v) = c[from].as_str() {
            db.insert(to.into(), v.into());
        }
    }
    if let Some(p) = c["port"]
        .as_u64()
        .or_else(|| c["port"].as_str().and_then(|p| p.parse().ok()))
    {
        db.insert("port".into(), p.into());
    }
    tracing::info!(
        service = name,
        "Monitoring DB credentials from VCAP_SERVICES"
    );
    Ok(Some(serde_json::Value::Object(db)))
}

/// Every string and number of a section no plugin's type describes, masked: which of them is a
/// secret is not known.
fn mask_every_value(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => map.values_mut().for_each(mask_every_value),
        Value::Array(a) => a.iter_mut().for_each(mask_every_value),
        Value::String(_) | Value::Number(_) => *v = Value::String("***".into()),
        Value::Bool(_) | Value::Null => {}
    }
}

/// The userinfo of every URL in a value, masked (`https://user:***@host`).
fn redact_url_userinfo(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => map.values_mut().for_each(redact_url_userinfo),
        Value::Array(a) => a.iter_mut().for_each(redact_url_userinfo),
        Value::String(s) if s.contains("://") => *s = crate::config::redact::url(s),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLLECTOR: PluginKeys = PluginKeys {
        name: "metrics",
        moved_keys: &[
            MovedKey {
                old: "influx.metrics_db",
                new: "db",
            },
            MovedKey {
                old: "metrics_source",
                new: "source",
            },
        ],
        legacy_ini: crate::config::legacy_ini::LegacyConfig::NONE,
    };

    fn tree(toml: &str) -> config::Value {
        config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()
            .unwrap()
            .cache
    }

    fn get(tree: &config::Value, path: &str) -> Option<String> {
        get_path(tree, path).map(|v| v.to_string())
    }

    #[test]
    fn moved_keys_land_in_the_plugin_section_with_a_warning() {
        let mut t = tree(
            "[influx]\nurl = \"http://i.example\"\nmetrics_db = \"old\"\n\
             [metrics_source]\nhost = \"h.example\"\nport = 1\n",
        );
        let warnings = move_plugin_keys(&mut t, &[COLLECTOR]);
        assert_eq!(get(&t, "plugins.metrics.db").as_deref(), Some("old"));
        assert_eq!(
            get(&t, "plugins.metrics.source.host").as_deref(),
            Some("h.example")
        );
        assert_eq!(get(&t, "influx.metrics_db"), None, "taken out of [influx]");
        assert_eq!(get(&t, "metrics_source"), None);
        assert_eq!(
            get(&t, "influx.url").as_deref(),
            Some("http://i.example"),
            "the rest of [influx] stays"
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("influx.metrics_db is deprecated")
                && warnings[0].contains("[plugins.metrics]"),
            "{warnings:?}"
        );
    }

    #[test]
    fn the_new_key_wins_over_the_old_one_and_no_key_no_warning() {
        let mut t = tree("[influx]\nmetrics_db = \"old\"\n[plugins.metrics]\ndb = \"new\"\n");
        let warnings = move_plugin_keys(&mut t, &[COLLECTOR]);
        assert_eq!(get(&t, "plugins.metrics.db").as_deref(), Some("new"));
        assert_eq!(get(&t, "influx.metrics_db"), None);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("ignored"), "{warnings:?}");

        let mut t = tree("[plugins.metrics]\ndb = \"new\"\n");
        assert!(move_plugin_keys(&mut t, &[COLLECTOR]).is_empty());
        assert_eq!(get(&t, "plugins.metrics.db").as_deref(), Some("new"));
    }
}
