//! What a plugin is: the traits it may implement and the registration that names it.
//!
//! A plugin crate submits one [`PluginRegistration`] with `inventory::submit!`. The host builds the
//! plugins that are compiled in AND enabled in config (`[plugins.<name>] enabled = true`) and runs
//! the parts each one returns in the matching step of a tick.

use crate::config::Settings;
use crate::metric_store::MetricStore;
use crate::model::{AlarmType, Level, Measured, Origin, Reading, Resource, Target, Timestamp, Vm};
use anyhow::Context as _;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// One plugin, as its crate registers it.
pub struct PluginRegistration {
    /// Config section `[plugins.<name>]` and cargo feature name.
    pub name: &'static str,
    pub description: &'static str,
    /// The plugin's documented `[plugins.<name>]` block (its `sample.toml`, embedded with
    /// `include_str!`): what `monit-batch sample-config` prints for it.
    pub sample: &'static str,
    /// Keys of the host's sections this plugin took over (read for one release, with a
    /// deprecation warning): each is moved into `[plugins.<name>]` before the settings load.
    pub moved_keys: &'static [MovedKey],
    /// The keys of the original batch's `config.ini` that set this plugin's settings.
    pub legacy_ini: LegacyConfig,
    /// The plugin's section as `check-config` shows it: [`show_config`] with the plugin's typed
    /// config, whose `Secret` fields serialize masked.
    pub show: fn(&PluginContext) -> anyhow::Result<serde_json::Value>,
    pub build: fn(&PluginContext) -> anyhow::Result<PluginParts>,
}

/// The plugin's section read into its typed config `T` (defaults filled in) and serialized:
/// what is secret is masked by its type (`Secret`, or a field's own `serialize_with`).
pub fn show_config<T: DeserializeOwned + Serialize>(
    ctx: &PluginContext,
) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::to_value(ctx.plugin_config::<T>()?)?)
}

/// For a plugin without settings of its own beyond `enabled`.
pub fn show_nothing(_: &PluginContext) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::json!({}))
}

pub use crate::config::MovedKey;
pub use crate::config::legacy_ini::{LegacyConfig, LegacyEnabled, LegacyKey, LegacyKind};

inventory::collect!(PluginRegistration);

/// The plugin names of the project the binary is built from, compiled in or not (declared by
/// `src/main.rs`, so the host names no plugin). A `[plugins.<name>]` section naming one that is
/// not compiled in asks for its cargo feature; any other unregistered name is a typo.
static PROJECT_PLUGINS: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();

/// Declares the project's plugin names (once, at start-up; later calls are ignored).
pub fn declare_project_plugins(names: &'static [&'static str]) {
    let _ = PROJECT_PLUGINS.set(names);
}

/// The declared plugin names; empty when none were declared (the host used as a library).
pub fn project_plugins() -> &'static [&'static str] {
    PROJECT_PLUGINS.get().copied().unwrap_or(&[])
}

/// Every name a `[plugins.<name>]` section may use: the declared ones and the compiled ones.
pub fn known_plugin_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = project_plugins()
        .iter()
        .copied()
        .chain(compiled_plugins().iter().map(|p| p.name))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The plugins compiled into this binary, sorted by name.
pub fn compiled_plugins() -> Vec<&'static PluginRegistration> {
    let mut all: Vec<_> = inventory::iter::<PluginRegistration>.into_iter().collect();
    all.sort_by_key(|p| p.name);
    all
}

/// What configuration needs to know of each compiled plugin (its moved and config.ini keys),
/// handed to [`Settings::load_with_plugins`] as data: configuration knows no plugin.
pub fn plugin_keys() -> Vec<crate::config::PluginKeys> {
    compiled_plugins()
        .iter()
        .map(|p| crate::config::PluginKeys {
            name: p.name,
            moved_keys: p.moved_keys,
            legacy_ini: p.legacy_ini,
        })
        .collect()
}

/// Loads and validates the settings, the compiled plugins' keys included. Errors name the
/// file, the key and the reason.
pub fn load_settings(path: Option<&std::path::Path>) -> anyhow::Result<Settings> {
    load_settings_with_env(path, std::env::vars().collect())
}

/// [`load_settings`] with the environment given (tests).
pub fn load_settings_with_env(
    path: Option<&std::path::Path>,
    env: HashMap<String, String>,
) -> anyhow::Result<Settings> {
    Settings::load_with_plugins(path, env, &plugin_keys())
}

/// The effective settings as `check-config` prints them: each compiled plugin shows its
/// section through its typed config ([`PluginRegistration::show`]), whose secrets are masked
/// by type; any other section has every value masked.
pub fn masked_settings(settings: &Settings) -> serde_json::Value {
    let shared = Arc::new(settings.clone());
    settings.masked_with(&|name: &str| {
        let reg = find_plugin(name)?;
        let ctx = PluginContext {
            name: reg.name,
            settings: shared.clone(),
        };
        (reg.show)(&ctx).ok()
    })
}

pub fn find_plugin(name: &str) -> Option<&'static PluginRegistration> {
    inventory::iter::<PluginRegistration>
        .into_iter()
        .find(|p| p.name == name)
}

/// The parts a plugin contributes to a tick; a plugin fills the ones it has.
#[derive(Default)]
pub struct PluginParts {
    pub vm_source: Option<Arc<dyn VmSource>>,
    pub collector: Option<Arc<dyn Collector>>,
    pub notifier: Option<Arc<dyn Notifier>>,
    pub scaler: Option<Arc<dyn Scaler>>,
}

/// What a plugin gets when it is built: the whole settings, its own section among them.
pub struct PluginContext {
    pub name: &'static str,
    pub settings: Arc<Settings>,
}

impl PluginContext {
    /// Deserializes the plugin's own `[plugins.<name>]` section; errors name the section and key.
    pub fn plugin_config<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        let key = format!("plugins.{}", self.name);
        let src = &self.settings.source;
        match &self.settings.raw {
            Some(raw) => raw
                .get::<T>(&key)
                .map_err(|e| anyhow::anyhow!("invalid config in {src}: [{key}]: {e}")),
            None => {
                let section = self
                    .settings
                    .plugins
                    .get(self.name)
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({}));
                serde_json::from_value(section)
                    .with_context(|| format!("invalid config in {src}: [{key}]"))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Inventory

/// A VM as the platform reports it (BOSH director), before it is written to `vms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedVm {
    /// `<job_name>/<index>` (or `<instance_group>/<uuid>`)
    pub name: String,
    pub ip: String,
    /// zone name: the BOSH AZ, else the job name's `_z<N>` suffix, else the deployment name;
    /// the host stores an empty one as zone `default`
    pub zone: String,
    pub is_cell: bool,
    /// the BOSH deployment the VM belongs to (silence key `deployment`, maintenance)
    #[serde(default)]
    pub deployment: String,
}

/// A complete answer from the platform: the host replaces the inventory with it. An error instead
/// of a snapshot leaves the inventory untouched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventorySnapshot {
    pub vms: Vec<ReportedVm>,
}

pub struct SyncContext {
    pub now: Timestamp,
}

#[async_trait]
pub trait VmSource: Send + Sync {
    /// Fetches the whole VM list. Must return an error, never a partial list, when any part of
    /// the answer is missing: the host removes VMs that stay absent from the snapshots for
    /// longer than `batch.vm_removal_grace_minutes`.
    async fn fetch(&self, ctx: &SyncContext) -> anyhow::Result<InventorySnapshot>;

    /// The platform's changes in progress (a BOSH deploy, recreate, stop, start, restart): their
    /// deployments' VMs are under maintenance. `None`: this inventory cannot tell.
    async fn changes_in_progress(
        &self,
        _ctx: &SyncContext,
    ) -> anyhow::Result<Option<Vec<ChangeInProgress>>> {
        Ok(None)
    }

    /// How long a synced snapshot stays good enough: the host calls [`VmSource::fetch`] again
    /// only once this has passed (and at the first tick of a process, at `run --once`, after a
    /// failed sync, and when the changes in progress change), while `changes_in_progress` still
    /// runs every tick. Zero, the default: every tick, for a source whose fetch is cheap.
    fn sync_interval(&self) -> Duration {
        Duration::ZERO
    }
}

/// A task the platform runs on a deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeInProgress {
    pub deployment: String,
    pub task_id: i64,
    /// what the platform calls it (`create deployment`, `recreate instances`, ...)
    pub description: String,
}

// ---------------------------------------------------------------------------------------------
// Collect

/// The averaging window of each (origin, resource), from `alarm_policies.measure_time`.
#[derive(Clone, Debug, Default)]
pub struct Windows {
    pub by_key: HashMap<(Origin, Resource), Duration>,
    pub default: Duration,
}

impl Windows {
    /// Each policy's `measure_time`; `default` for resources without a policy.
    pub fn from_policies(policies: &[crate::model::Policy], default: Duration) -> Self {
        Windows {
            by_key: policies
                .iter()
                .map(|p| {
                    (
                        (p.origin, p.resource),
                        Duration::from_secs(p.measure_seconds),
                    )
                })
                .collect(),
            default,
        }
    }

    pub fn get(&self, origin: Origin, resource: Resource) -> Duration {
        self.by_key
            .get(&(origin, resource))
            .copied()
            .unwrap_or(self.default)
    }
    /// The longest window of an origin: one query covers all its resources.
    pub fn longest(&self, origin: Origin) -> Duration {
        Resource::ALL
            .iter()
            .map(|r| self.get(origin, *r))
            .max()
            .unwrap_or(self.default)
    }
}

/// Cells per part when the store's answers are held to a part of the inventory
/// ([`CollectContext::narrow_to_vms`], stream mode's reconciliation): a Diego cell runs up to
/// 250 containers (its default limit), so a part holds at most 25,000 containers.
pub const CELLS_PER_PART: usize = 100;
/// Other VMs per part: a few series each.
pub const VMS_PER_PART: usize = 500;

pub struct CollectContext<'a> {
    pub now: Timestamp,
    /// the writers' period (`[influx] bucket_seconds`)
    pub bucket_seconds: u64,
    /// the metric store of `[metrics] backend` (InfluxDB or a Prometheus-API store)
    pub metrics: &'a MetricStore,
    /// the `vms` inventory, zones joined
    pub vms: &'a [Vm],
    pub windows: &'a Windows,
    /// Only these targets (stream mode's confirmation of new alarms): a collector narrows its
    /// query to them, so the cost follows the alarms, not the fleet. None: every target.
    pub targets: Option<&'a [Target]>,
    /// Hold the store's answers to a part of `vms` at a time, the queries naming them: stream
    /// mode asks it when it reads the store (its warm-up, a quiet or gapped stream, a
    /// reconciliation's part of the inventory), where the windows hold most of the memory. A
    /// collector whose fold holds much per VM (containers) reads `vms` in parts; one whose fold
    /// is small may read many at once. False: one pass, the series of VMs not in `vms` dropped
    /// while the answer is decoded (the store walks its series once).
    pub narrow_to_vms: bool,
    /// The tick's rule for readings that cannot change anything ([`QuietRule`]): a collector
    /// of a large fleet may leave them out, counting them with [`QuietRule::count`]. None (a
    /// confirmation, a reconciliation, a backtest): every reading.
    pub quiet: Option<&'a dyn QuietRule>,
}

/// Readings a collector left out as quiet: how many, and how many targets had none left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    pub readings: usize,
    /// targets all of whose readings were quiet (the gap check counts them as reporting)
    pub targets: usize,
}

/// Which usage readings cannot change anything this tick, so that a collector of a large fleet
/// may leave them out (the host's engine decides: `evaluate::engine::QuietReadings`), and where
/// it counts what it left out, so that the tick's counts and gap checks stay whole.
pub trait QuietRule: Send + Sync {
    /// True when a usage reading (`mean` over the window) of the target would change
    /// nothing. `app`: an app instance's name and index (a container), else the VM's
    /// `origin_id` names the target.
    fn is_quiet(
        &self,
        origin: Origin,
        origin_id: i64,
        app: Option<(&str, i32)>,
        resource: Resource,
        mean: f64,
    ) -> bool;

    /// Counts what `origin`'s collector left out.
    fn count(&self, origin: Origin, skipped: Skipped);

    /// What `origin`'s collector left out since the last call (a tick may run a collector
    /// twice: the second run counts afresh).
    fn take_skipped(&self, origin: Origin) -> Skipped;

    /// Leaves the quiet usage readings out of a collector's `readings` (all of `origin`, a
    /// target's one after the other, as collectors give them) and counts them: for a
    /// collector that builds its readings first.
    fn retain_loud(&self, origin: Origin, readings: &mut Vec<Reading>) {
        let quiet: Vec<bool> = readings
            .iter()
            .map(|r| match r.value {
                Measured::Usage { resource, mean, .. } => {
                    let t = &r.target;
                    self.is_quiet(t.origin, t.origin_id, t.instance(), resource, mean)
                }
                Measured::NoData => false,
            })
            .collect();
        let mut skipped = Skipped {
            readings: quiet.iter().filter(|q| **q).count(),
            targets: 0,
        };
        let mut at = 0;
        while at < readings.len() {
            let run = readings[at..]
                .iter()
                .take_while(|r| r.target == readings[at].target)
                .count()
                .max(1);
            if quiet
                .get(at..at + run)
                .is_some_and(|q| q.iter().all(|q| *q))
            {
                skipped.targets += 1;
            }
            at += run;
        }
        let mut flags = quiet.into_iter();
        readings.retain(|_| !flags.next().unwrap_or(false));
        self.count(origin, skipped);
    }
}

#[async_trait]
pub trait Collector: Send + Sync {
    /// The origin this collector's readings carry; the engine evaluates an origin only when its
    /// collector succeeded, so a failed query never reads as a recovery.
    fn origin(&self) -> Origin;
    async fn collect(&self, ctx: &CollectContext<'_>) -> anyhow::Result<Vec<Reading>>;
    /// Whether `collect`'s readings are those of `ctx.vms` (VMs, or the containers of the
    /// cells among them), so that the fleet can be read a part of the inventory at a time.
    /// False (the default): its readings do not follow the inventory (the BOSH director).
    fn reads_by_vm(&self) -> bool {
        false
    }
    /// The series `collect` reads, for stream mode (`[metrics] mode = "stream"`): declared by
    /// the reader of the schema next to its queries, so both modes read the same series, and
    /// `stream.subscribe` asks InfluxDB for the writes to exactly their databases. None: the
    /// collector reads no metric store.
    fn stream_series(
        &self,
        _settings: &Settings,
    ) -> Vec<crate::metric_store::stream::StreamSeries> {
        Vec::new()
    }
    /// The recent past of the readings in `keys` (all of this collector's origin), for the
    /// charts in alarm mails: each reading's mean per `ctx.step` over `ctx.span` ending at
    /// `ctx.now`, read in ONE store query for all of them, so the cost follows the alarms, not
    /// the fleet. `ctx.metrics` is the store's query client even in stream mode (the stream
    /// keeps minutes, a chart shows an hour). A key without data in the span is left out.
    /// The default: this collector reads no history (the mail goes without a chart).
    async fn history(
        &self,
        _ctx: &HistoryContext<'_>,
        _keys: &[SeriesKey],
    ) -> anyhow::Result<HashMap<SeriesKey, Vec<HistoryPoint>>> {
        anyhow::bail!("this collector reads no history")
    }
}

/// What [`Collector::history`] reads.
pub struct HistoryContext<'a> {
    /// the end of the span
    pub now: Timestamp,
    pub span: Duration,
    /// one point per step: the reading's mean over the step that ends at the point's time
    pub step: Duration,
    /// the writers' period (`[influx] bucket_seconds`)
    pub bucket_seconds: u64,
    /// the store's query client (never the stream's windows)
    pub metrics: &'a MetricStore,
}

/// One reading whose history is read: the collector of `origin` knows its series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    pub origin: Origin,
    pub resource: Resource,
    /// the VM's IP (`pas`), the director's (`bos`, whose one series is filtered by name), the
    /// cell's (`con`)
    pub ip: String,
    /// a container reading: the app's name and instance index
    pub app: Option<(String, i32)>,
}

impl SeriesKey {
    /// The reading a notification is about, or why it has none to chart.
    pub fn of(n: &Notification) -> Result<Self, String> {
        let resource = match n.alarm_type {
            AlarmType::Cpu => Resource::Cpu,
            AlarmType::Memory => Resource::Memory,
            AlarmType::Disk => Resource::Disk,
            AlarmType::Fail => return Err("a fail alarm has no reading (no data)".into()),
        };
        if n.level == Level::Fail {
            return Err("a fail alarm has no reading (no data)".into());
        }
        let app = match (&n.app_name, n.app_index) {
            (Some(app), Some(index)) if index >= 0 => Some((app.clone(), index)),
            (Some(_), _) => {
                return Err("an alarm about a whole app has no single reading to chart".into());
            }
            (None, _) => None,
        };
        Ok(SeriesKey {
            origin: n.origin,
            resource,
            ip: n.ip.clone(),
            app,
        })
    }
}

/// One point of a reading's history: the end of its step and the reading's mean over it.
pub type HistoryPoint = (Timestamp, f64);

// ---------------------------------------------------------------------------------------------
// Notify

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    Opened,
    Escalated,
    /// the alarm went down a level and is still open (threshold raised, or the value fell into
    /// the warning band)
    #[serde(rename = "stepped_down")]
    SteppedDown,
    Repeated,
    Recovered,
}

impl NotificationKind {
    pub fn code(self) -> &'static str {
        match self {
            NotificationKind::Opened => "opened",
            NotificationKind::Escalated => "escalated",
            NotificationKind::SteppedDown => "stepped_down",
            NotificationKind::Repeated => "repeated",
            NotificationKind::Recovered => "recovered",
        }
    }
}

/// One pending notification from the outbox, with everything a sink needs to render it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// outbox row id
    pub id: i64,
    pub alarm_id: i64,
    pub kind: NotificationKind,
    pub origin: Origin,
    pub alarm_type: AlarmType,
    pub level: Level,
    pub target_name: String,
    pub ip: String,
    pub app_name: Option<String>,
    pub app_index: Option<i32>,
    pub cell_name: Option<String>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// alarms.alarm_title, alarm_message as stored
    pub title: String,
    pub message: String,
    /// when the alarm was first raised
    pub raised_at: Timestamp,
    /// when this event happened
    pub event_at: Timestamp,
    /// `alarm_targets` addresses of the origin with mail_send_yn = 'Y'
    pub recipients: Vec<String>,
    /// recipients (addresses, webhook URL labels) that accepted or refused this notification
    /// for good on an earlier try: a notifier skips them
    #[serde(default)]
    pub done_recipients: Vec<String>,
    /// base URL of the monitoring web app (mail.resource.url)
    pub resource_url: Option<String>,
    pub language: String,
    /// base URL of the operator console (`console.public_url`, when the console is enabled),
    /// set when the notification is sent, not stored in the outbox
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
    /// The alarmed reading's recent past, filled in by the host just before a send through a
    /// notifier that shows it ([`NotifySession::history_wish`]); never stored in the outbox.
    /// None: not asked for, or the alarm has no reading (a `fail` alarm).
    #[serde(skip)]
    pub history: Option<History>,
}

/// What a notifier that shows the alarmed reading's past (a chart) gets with a notification.
#[derive(Clone, Debug, PartialEq)]
pub enum History {
    Read(Arc<ReadingHistory>),
    /// the history could not be read: why (the notifier sends without it and logs this)
    Unavailable(String),
}

/// The alarmed reading over the span a notifier asked for, with what a chart marks on it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadingHistory {
    pub resource: Resource,
    pub from: Timestamp,
    pub to: Timestamp,
    /// the reading's mean per step, in time order
    pub points: Vec<HistoryPoint>,
    /// the policy's thresholds, percent
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    /// when the reading breached: from the start of the window that opened the alarm to this
    /// event (a recovery: to the start of the window that found it back under the warning
    /// threshold), clipped to the span; None when that is outside the span
    pub breach: Option<(Timestamp, Timestamp)>,
}

/// What a notifier shows of each alarmed reading's past (a chart in a mail), asked of the host
/// by its session: the host reads it before each send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryWish {
    /// how far back (a chart of the last hour: one hour)
    pub span: Duration,
    /// at most this many notifications of a digest get one: the first in the digest's order
    /// (`notify::digest::sections`)
    pub per_digest: usize,
}

impl Notification {
    /// Who the alarm is about, as every notifier shows it: `app[idx]` for a container alarm,
    /// the app for an alarm about a whole app, the target's name otherwise.
    pub fn server_name(&self) -> String {
        match (&self.app_name, self.app_index) {
            (Some(app), Some(idx)) => format!("{app}[{idx}]"),
            (Some(app), None) => app.clone(),
            (None, _) => self.target_name.clone(),
        }
    }

    /// The monitoring web app's URL, only when it is http(s): anything else (a `javascript:`
    /// URL) is never made a link.
    pub fn monitor_link(&self) -> Option<&str> {
        let url = self.resource_url.as_deref()?.trim();
        let lower = url.to_ascii_lowercase();
        (lower.starts_with("http://") || lower.starts_with("https://")).then_some(url)
    }

    /// The console's "silence this for 2 h" page for this alarm: the silence form filled in with
    /// matchers for this VM (or app) and alarm type. Only with `console_url` (http or https).
    pub fn silence_link(&self) -> Option<String> {
        let base = self.console_url.as_deref()?.trim().trim_end_matches('/');
        let lower = base.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return None;
        }
        let who = match &self.app_name {
            Some(app) => format!("app={app}"),
            None => format!("vm={}", self.target_name),
        };
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("match", &who)
            .append_pair("match", &format!("type={}", self.alarm_type.code()))
            .append_pair("for", "2h")
            .append_pair(
                "comment",
                &format!("silenced from the mail of alarm {}", self.alarm_id),
            )
            .finish();
        Some(format!("{base}/ui/silences/new?{query}"))
    }

    /// A host that is down (no data at all), rather than a resource over its threshold.
    pub fn is_down(&self) -> bool {
        self.level == Level::Fail || self.alarm_type == AlarmType::Fail
    }
}

/// A recipient refused for good (SMTP 5xx at RCPT, a webhook URL answering 4xx): recorded for
/// the notification and never tried again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub recipient: String,
    pub reason: String,
}

/// What became of one notification, as its notifier reports it. This is the retry flag of
/// Alertmanager's notifiers, with per-recipient detail: the host marks the outbox row at once,
/// records every recipient that is done, and retries only the ones that are not.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// Accepted for every remaining recipient except the ones in `rejected`.
    Sent { rejected: Vec<Refusal> },
    /// Not delivered to every recipient, worth another try later: `accepted` and `rejected`
    /// are done; the other recipients are retried.
    Retry {
        reason: String,
        accepted: Vec<String>,
        rejected: Vec<Refusal>,
    },
    /// Can never be delivered (no valid recipient, every recipient refused, a message the
    /// server refuses for good): the row is parked for an operator.
    Reject { reason: String },
    /// The sink itself cannot be reached now; nothing of this notification was delivered. The
    /// host retries it later and stops sending through this notifier for the tick.
    Unavailable { reason: String },
}

impl Delivery {
    pub fn retry(reason: impl Into<String>) -> Self {
        Delivery::Retry {
            reason: reason.into(),
            accepted: Vec::new(),
            rejected: Vec::new(),
        }
    }

    /// Ok when sent (to every recipient not refused for good), else why not.
    pub fn into_result(self) -> anyhow::Result<()> {
        match self {
            Delivery::Sent { .. } => Ok(()),
            Delivery::Retry { reason, .. }
            | Delivery::Reject { reason }
            | Delivery::Unavailable { reason } => Err(anyhow::anyhow!(reason)),
        }
    }
}

/// Sends each notification through one session, in order, and closes it: for tests and
/// one-shot tools (the scheduler drives sessions itself, recording each outcome at once).
pub async fn deliver_all(notifier: &dyn Notifier, batch: &[Notification]) -> Vec<Delivery> {
    let mut session = notifier.session();
    let mut out = Vec::with_capacity(batch.len());
    for n in batch {
        out.push(session.deliver(n).await);
    }
    session.close().await;
    out
}

/// A run of deliveries through one notifier (one SMTP connection for the whole run). The host
/// calls [`deliver`](NotifySession::deliver) once per notification, checking its lease and
/// its time budget before each, and records each result before the next call.
#[async_trait]
pub trait NotifySession: Send {
    async fn deliver(&mut self, n: &Notification) -> Delivery;
    /// Whether [`deliver_digest`](NotifySession::deliver_digest) works: the host groups
    /// notifications into digests only for a notifier that says so.
    fn digests(&self) -> bool {
        false
    }
    /// Several notifications for the same recipients as one message (a digest listing every
    /// alarm); the one outcome is recorded on each of them.
    async fn deliver_digest(&mut self, batch: &[Notification]) -> Delivery {
        Delivery::Reject {
            reason: format!(
                "this notifier sends no digests ({} notifications)",
                batch.len()
            ),
        }
    }
    /// Whether this session shows the alarmed readings' past (a chart), and how much: the host
    /// then reads it (one store query per origin and claimed batch) and hands it over in
    /// [`Notification::history`]. None, the default: it shows none and nothing is read.
    fn history_wish(&self) -> Option<HistoryWish> {
        None
    }
    /// Ends the run politely (SMTP QUIT); every delivery is already recorded.
    async fn close(self: Box<Self>);
}

#[async_trait]
pub trait Notifier: Send + Sync {
    /// Starts a run; a session opens its connection lazily, at its first delivery.
    fn session(&self) -> Box<dyn NotifySession + '_>;

    /// For a sink that forgets what it is not told again (Alertmanager resolves an alert that
    /// is not re-posted before its `endsAt`): true makes the host call
    /// [`restate_firing`](Notifier::restate_firing) after every notify step.
    fn restates_firing(&self) -> bool {
        false
    }

    /// What this notifier was last told of each alarm that is still open, when that was not a
    /// recovery: the last notification of the alarm it accepted, in chunks, every tick. Best
    /// effort and outside the outbox (nothing is recorded): a chunk that fails is told again
    /// the next tick.
    async fn restate_firing(&self, _firing: &[Notification]) -> anyhow::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Scale

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleAction {
    Out,
    In,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleOutcome {
    /// the platform API accepted the change
    Acted,
    /// decided, not sent: --dry-run
    DryRun,
    /// nothing to do or not allowed now (reason says why)
    Skipped,
    /// a scale-out was needed but instance_max_cnt forbids it
    Blocked,
    /// the platform API refused or could not be reached
    Failed,
}

/// What a decision rests on. The alarm engine reads it (never the reason's text): only a
/// decision that saw the app's load may resolve the app's "blocked at instance_max_cnt" alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleEvidence {
    /// decided on the app's measured load (including "nothing to do" and "not allowed now")
    Load,
    /// no or too little usage data, the platform could not be read, or no time was left: the
    /// decision says nothing about the load
    Unknown,
}

/// One decision about one app, as the host records it in the scaling history and feeds it to
/// the alarm engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleDecision {
    pub app_guid: String,
    pub app_name: String,
    pub action: ScaleAction,
    pub outcome: ScaleOutcome,
    pub instances_before: Option<i64>,
    pub instances_after: Option<i64>,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    /// `code: detail`, for people (the history's `reason` column)
    pub reason: String,
    pub evidence: ScaleEvidence,
    /// With [`ScaleOutcome::Blocked`]: the resource whose load needed the scale-out that
    /// instance_max_cnt forbids (the alarm's type).
    pub blocked_on: Option<Resource>,
}

pub struct ScaleContext<'a> {
    pub now: Timestamp,
    pub settings: &'a Settings,
    pub metrics: &'a MetricStore,
    pub vms: &'a [Vm],
    pub dry_run: bool,
    /// last acted scaling per app guid, from the history: for the cooldown
    pub last_scaled: &'a HashMap<String, Timestamp>,
}

#[async_trait]
pub trait Scaler: Send + Sync {
    async fn scale(&self, ctx: &ScaleContext<'_>) -> anyhow::Result<Vec<ScaleDecision>>;
    /// The series `scale` reads, for stream mode (see [`Collector::stream_series`]).
    fn stream_series(
        &self,
        _settings: &Settings,
    ) -> Vec<crate::metric_store::stream::StreamSeries> {
        Vec::new()
    }
}

/// Runs `fut` for one plugin in one step, bounded by the step timeout; records its duration and
/// failure, and turns any error into a line for the summary.
pub async fn guarded<T>(
    step: &'static str,
    plugin: &'static str,
    timeout: Duration,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> Result<T, String> {
    let started = std::time::Instant::now();
    let res = tokio::time::timeout(timeout, fut).await;
    metrics::histogram!("monit_plugin_duration_seconds", "step" => step, "plugin" => plugin)
        .record(started.elapsed().as_secs_f64());
    let err = match res {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(e)) => format!("{step}/{plugin}: {e:#}"),
        Err(_) => format!("{step}/{plugin}: timed out after {}s", timeout.as_secs()),
    };
    metrics::counter!("monit_plugin_failures_total", "step" => step, "plugin" => plugin)
        .increment(1);
    tracing::error!(step, plugin, "{err}");
    Err(err)
}
