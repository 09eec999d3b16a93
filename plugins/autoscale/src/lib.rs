//! `autoscale`: scales Cloud Foundry apps in and out from the Portal DB's `auto_scaling_config`,
//! on the mean CPU and memory of their instances (InfluxDB `container_metrics`), through the
//! PaaS-TA portal or the Cloud Controller v3 API. Every decision, acted or not, is returned to the
//! host, which records it in `batch_scaling_history` (the cooldown's source).
//!
//! The rules are in [`decide`] (pure), the row units in [`policy`], the platform calls in
//! [`actuator`], the config in [`config`].

pub mod actuator;
pub mod config;
pub mod decide;
pub mod policy;

use crate::actuator::{ActError, Actuator, RetryPolicy, ScaleRequest};
use crate::config::{ActuatorKind, AutoscaleConfig};
use crate::decide::{Cause, Inputs, InstanceUsage, Plan, Usage, Verdict};
use crate::policy::{InvalidPolicy, Policy};
use anyhow::Context as _;
use async_trait::async_trait;
use monit_cf_metrics::container::{
    ContainerSource, ContainerUsage, Narrow, UsageWindows, Wanted, read_container_usage_of,
};
use monit_host::metric_store::MetricStore;
use monit_host::model::Resource;
use monit_host::plugin::{
    PluginContext, PluginParts, ScaleAction, ScaleContext, ScaleDecision, ScaleEvidence,
    ScaleOutcome, Scaler,
};
use sqlx::MySqlPool;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use monit_host::plugin::{LegacyConfig, LegacyEnabled, LegacyKey, LegacyKind};

monit_host::inventory::submit! {
    monit_host::PluginRegistration {
        name: "autoscale",
        moved_keys: &[monit_host::plugin::MovedKey { old: "portal_db", new: "portal_db" }],
        legacy_ini: LegacyConfig {
            keys: &[
                LegacyKey { ini: "portal.db.type", field: Some("portal_db.db_type"), kind: LegacyKind::Str },
                LegacyKey { ini: "portal.db.dbname", field: Some("portal_db.dbname"), kind: LegacyKind::Str },
                LegacyKey { ini: "portal.db.username", field: Some("portal_db.username"), kind: LegacyKind::Str },
                LegacyKey { ini: "portal.db.password", field: Some("portal_db.password"), kind: LegacyKind::Str },
                LegacyKey { ini: "portal.db.host", field: Some("portal_db.host"), kind: LegacyKind::Str },
                LegacyKey { ini: "portal.db.port", field: Some("portal_db.port"), kind: LegacyKind::Int },
                LegacyKey { ini: "autoscale.portal.url", field: Some("portal_url"), kind: LegacyKind::Str },
                LegacyKey { ini: "cf.client.api_address", field: Some("cf_api_url"), kind: LegacyKind::Str },
                LegacyKey { ini: "cf.client.uaa_address", field: Some("uaa_url"), kind: LegacyKind::Str },
                LegacyKey { ini: "cf.client.username", field: Some("cf_username"), kind: LegacyKind::Str },
                LegacyKey { ini: "cf.client.password", field: Some("cf_password"), kind: LegacyKind::Str },
                LegacyKey { ini: "cf.client.clientid", field: Some("client_id"), kind: LegacyKind::Str },
                LegacyKey { ini: "cf.client.clientpassword", field: Some("client_secret"), kind: LegacyKind::Str },
            ],
            enabled: LegacyEnabled::IfAnySet(&["portal_url", "cf_api_url"]),
        },
        description: "scales apps in/out from the Portal DB's auto_scaling_config (PaaS-TA portal or Cloud Foundry v3 API)",
        sample: include_str!("../sample.toml"),
        show: monit_host::plugin::show_config::<AutoscaleConfig>,
        build: build_plugin,
    }
}

fn build_plugin(ctx: &PluginContext) -> anyhow::Result<PluginParts> {
    let cfg: AutoscaleConfig = ctx.plugin_config()?;
    let src = &ctx.settings.source;
    let db = cfg.portal_db.clone().context(
        "[plugins.autoscale] is enabled but its portal_db is not configured ([plugins.autoscale.portal_db], \
         portal.db.* in config.ini): autoscale reads auto_scaling_config from the PaaS-TA Portal DB",
    )?;
    db.check("plugins.autoscale.portal_db")
        .map_err(|e| anyhow::anyhow!("invalid config in {src}: {e}"))?;
    let (metrics_db, metrics_measurement) =
        monit_cf_metrics::container::configured_location(&ctx.settings)?;
    let pool = monit_host::store::db::lazy_pool(&db);
    let scaler =
        AutoscaleScaler::new(cfg, pool)?.reading_metrics_from(metrics_db, metrics_measurement);
    tracing::info!(
        actuator = scaler.actuator.kind().code(),
        portal_db = %monit_host::store::db::describe(&db),
        "autoscale ready"
    );
    Ok(PluginParts {
        scaler: Some(Arc::new(scaler)),
        ..Default::default()
    })
}

/// Backoff between retries of a failed platform call.
pub const DEFAULT_RETRY_MIN_DELAY: Duration = Duration::from_millis(500);
pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(5);

/// Share of the host's step timeout this scaler plans to use: past it, no new platform call is
/// started, so the decisions already made are returned (and recorded) before the host gives up
/// on the step; a scaling done but never recorded would escape the cooldown.
const STEP_BUDGET_SHARE: f64 = 0.8;

pub struct AutoscaleScaler {
    config: AutoscaleConfig,
    portal_db: MySqlPool,
    /// InfluxDB database and measurement of the container metrics (`[plugins.container]`'s)
    metrics_db: String,
    metrics_measurement: String,
    actuator: Arc<dyn Actuator>,
    /// invalid rows already warned about: a bad row is logged at warn once, then at debug
    warned: Mutex<HashSet<String>>,
}

impl AutoscaleScaler {
    pub fn new(config: AutoscaleConfig, portal_db: MySqlPool) -> anyhow::Result<Self> {
        Self::with_retry_delays(
            config,
            portal_db,
            DEFAULT_RETRY_MIN_DELAY,
            DEFAULT_RETRY_MAX_DELAY,
        )
    }

    /// As [`AutoscaleScaler::new`], with other retry delays (tests use milliseconds).
    pub fn with_retry_delays(
        config: AutoscaleConfig,
        portal_db: MySqlPool,
        min_delay: Duration,
        max_delay: Duration,
    ) -> anyhow::Result<Self> {
        let retry = RetryPolicy {
            max_times: config.retry_max_times,
            min_delay,
            max_delay: max_delay.max(min_delay),
        };
        let actuator = actuator::build(&config, retry)?;
        Ok(Self {
            config,
            portal_db,
            metrics_db: monit_cf_metrics::container::DEFAULT_DB.into(),
            metrics_measurement: monit_cf_metrics::container::DEFAULT_MEASUREMENT.into(),
            actuator,
            warned: Mutex::new(HashSet::new()),
        })
    }

    /// Reads the container metrics from this InfluxDB database and measurement instead of the
    /// defaults (`[plugins.container] db`, `measurement`).
    pub fn reading_metrics_from(mut self, db: String, measurement: String) -> Self {
        self.metrics_db = db;
        self.metrics_measurement = measurement;
        self
    }

    fn cooldown(&self, p: &Policy) -> chrono::Duration {
        let secs = self.config.cooldown_seconds.unwrap_or(p.check_seconds);
        chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
    }

    fn warn_invalid(&self, bad: &InvalidPolicy) {
        let key = format!("{:?}|{}|{}", bad.no, bad.guid, bad);
        let first = self
            .warned
            .lock()
            .map(|mut w| w.insert(key))
            .unwrap_or(true);
        if first {
            tracing::warn!(no = ?bad.no, app = %bad.app, guid = %bad.guid, problems = %bad,
                "autoscale: auto_scaling_config row skipped (logged once per problem)");
        } else {
            tracing::debug!(no = ?bad.no, app = %bad.app, guid = %bad.guid, problems = %bad,
                "autoscale: auto_scaling_config row skipped");
        }
    }
}

fn skipped(guid: &str, app: &str, evidence: ScaleEvidence, reason: String) -> ScaleDecision {
    ScaleDecision {
        evidence,
        blocked_on: None,
        app_guid: guid.to_string(),
        app_name: app.to_string(),
        action: ScaleAction::None,
        outcome: ScaleOutcome::Skipped,
        instances_before: None,
        instances_after: None,
        cpu_percent: None,
        memory_percent: None,
        reason,
    }
}

fn from_plan(
    p: &Policy,
    plan: &Plan,
    outcome: ScaleOutcome,
    after: Option<i64>,
    reason: String,
) -> ScaleDecision {
    ScaleDecision {
        evidence: plan.reason.evidence(),
        blocked_on: (outcome == ScaleOutcome::Blocked).then_some(match plan.cause {
            Cause::Cpu => Resource::Cpu,
            Cause::Memory => Resource::Memory,
        }),
        app_guid: p.guid.clone(),
        app_name: p.app.clone(),
        action: plan.action,
        outcome,
        instances_before: plan.instances_before,
        instances_after: after,
        cpu_percent: plan.cpu_percent,
        memory_percent: plan.memory_percent,
        reason,
    }
}

/// The usage of each app (by lowercased guid) for one window.
type UsageByApp = HashMap<String, Vec<InstanceUsage>>;

/// One window's usage, and where to confirm a decision taken on it (`Some`: it was read from
/// the stream, the store confirms before anything acts).
struct Read<'a> {
    usage: Result<UsageByApp, String>,
    confirm_in: Option<&'a MetricStore>,
}

fn group_by_app(containers: Vec<ContainerUsage>) -> UsageByApp {
    let mut by_app: UsageByApp = HashMap::new();
    let usage = |s: Option<monit_cf_metrics::container::Stats>| {
        s.map(|s| Usage {
            mean: s.mean,
            buckets: s.buckets,
        })
    };
    for c in containers {
        let Some(guid) = c.app_guid.as_deref().map(|g| g.trim().to_ascii_lowercase()) else {
            continue;
        };
        by_app.entry(guid).or_default().push(InstanceUsage {
            index: i64::from(c.app_index),
            cpu: usage(c.cpu),
            memory: usage(c.memory),
        });
    }
    by_app
}

/// Runs `fut` within what is left of the step budget.
async fn within<T>(
    deadline: Instant,
    fut: impl Future<Output = Result<T, ActError>>,
) -> Result<T, ActError> {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, fut).await.unwrap_or_else(|_| {
        Err(ActError::Transient(format!(
            "no answer within the step's time budget ({}s left)",
            left.as_secs()
        )))
    })
}

impl AutoscaleScaler {
    async fn decide_app(
        &self,
        ctx: &ScaleContext<'_>,
        p: &Policy,
        read: &Read<'_>,
        source: &ContainerSource,
        deadline: Instant,
    ) -> ScaleDecision {
        let usage = match &read.usage {
            Ok(by_app) => by_app
                .get(&p.guid.to_ascii_lowercase())
                .map(Vec::as_slice)
                .unwrap_or(&[]),
            Err(e) => {
                return skipped(
                    &p.guid,
                    &p.app,
                    ScaleEvidence::Unknown,
                    format!("no_data: container metrics unavailable: {e}"),
                );
            }
        };
        let dry_run = ctx.dry_run || self.config.dry_run;
        if !dry_run && Instant::now() >= deadline {
            return skipped(
                &p.guid,
                &p.app,
                ScaleEvidence::Unknown,
                "deadline: the step's time budget was used up before this app; it is decided next tick".into(),
            );
        }
        // A dry run calls nothing, not even the read: the count then comes from the metrics.
        let platform_instances = if dry_run {
            None
        } else {
            match within(deadline, self.actuator.current_instances(&p.guid)).await {
                Ok(n) => n,
                Err(e) => {
                    let mut d = skipped(
                        &p.guid,
                        &p.app,
                        ScaleEvidence::Unknown,
                        format!("platform_error: reading the instance count: {e}"),
                    );
                    d.outcome = ScaleOutcome::Failed;
                    return d;
                }
            }
        };
        let plan_on = |usage: &[InstanceUsage]| {
            decide::decide(&Inputs {
                policy: p,
                platform_instances,
                usage,
                min_buckets: decide::required_buckets(
                    p.check_seconds,
                    ctx.settings.influx.bucket_seconds,
                ),
                cooldown: self.cooldown(p),
                last_scaled: ctx.last_scaled.get(&p.guid).copied(),
                now: ctx.now,
            })
        };
        let mut plan = plan_on(usage);
        if let (Some(store), Verdict::Act { .. } | Verdict::Block) = (read.confirm_in, plan.verdict)
        {
            // a point the stream lost must not scale an app: the store's reading of this app
            // alone decides (one query per acting app, not per fleet)
            match self.app_usage(store, source, p, ctx).await {
                Ok(confirmed) => plan = plan_on(&confirmed),
                Err(e) => {
                    return skipped(
                        &p.guid,
                        &p.app,
                        ScaleEvidence::Unknown,
                        format!("no_data: confirming the stream's reading in the store: {e}"),
                    );
                }
            }
        }
        let reason = plan.reason.to_string();
        let Verdict::Act { to } = plan.verdict else {
            let outcome = if plan.verdict == Verdict::Block {
                ScaleOutcome::Blocked
            } else {
                ScaleOutcome::Skipped
            };
            return from_plan(p, &plan, outcome, None, reason);
        };
        let from = plan.instances_before.unwrap_or_default();
        // the portal moves one instance per call, whatever the distance to the target
        let expected = match self.actuator.kind() {
            ActuatorKind::Portal => from + (to - from).signum(),
            ActuatorKind::Cf => to,
        };
        let note = if expected != to {
            format!(" (one step to {expected}: the portal moves one instance per call)")
        } else {
            String::new()
        };
        if dry_run {
            return from_plan(
                p,
                &plan,
                ScaleOutcome::DryRun,
                Some(expected),
                format!("{reason}{note}; dry run: not sent"),
            );
        }
        let req = ScaleRequest {
            app_guid: &p.guid,
            app_name: &p.app,
            from,
            to,
            cpu_percent: plan.cpu_percent,
            memory_percent: plan.memory_percent,
            cause: plan.cause,
        };
        match within(deadline, self.actuator.scale(&req)).await {
            Ok(after) => from_plan(
                p,
                &plan,
                ScaleOutcome::Acted,
                Some(after),
                format!("{reason}{note}"),
            ),
            Err(e) => from_plan(
                p,
                &plan,
                ScaleOutcome::Failed,
                None,
                format!("api_error: {e}; wanted {reason}"),
            ),
        }
    }
}

impl AutoscaleScaler {
    /// One app's usage over its window, from the store, in a query narrowed to the app.
    async fn app_usage(
        &self,
        store: &MetricStore,
        source: &ContainerSource,
        p: &Policy,
        ctx: &ScaleContext<'_>,
    ) -> anyhow::Result<Vec<InstanceUsage>> {
        let guid = p.guid.trim().to_ascii_lowercase();
        let guids: HashSet<String> = [guid.clone()].into();
        let values: HashSet<&str> = [guid.as_str()].into();
        let wanted = Wanted {
            cells: None,
            app_guids: Some(&guids),
            narrow: Some(Narrow {
                tag: "application_id",
                values: &values,
                ignore_case: true,
            }),
        };
        let windows = UsageWindows::uniform(Duration::from_secs(p.check_seconds));
        let read = read_container_usage_of(store, source, &windows, ctx.now, wanted).await?;
        Ok(group_by_app(read).remove(&guid).unwrap_or_default())
    }
}

#[async_trait]
impl Scaler for AutoscaleScaler {
    async fn scale(&self, ctx: &ScaleContext<'_>) -> anyhow::Result<Vec<ScaleDecision>> {
        let budget =
            Duration::from_secs(ctx.settings.batch.step_timeout_seconds).mul_f64(STEP_BUDGET_SHARE);
        let deadline = Instant::now() + budget;
        let rows = policy::read_rows(&self.portal_db).await?;

        let mut decisions = Vec::new();
        let mut policies: Vec<Policy> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for row in rows {
            match row.check() {
                Ok(p) if !seen.insert(p.guid.to_ascii_lowercase()) => {
                    let reason = format!(
                        "invalid_policy: a second auto_scaling_config row (no {}) for this app; only the first is used",
                        p.no
                    );
                    tracing::warn!(no = p.no, app = %p.app, guid = %p.guid, "autoscale: duplicate auto_scaling_config row skipped");
                    decisions.push(skipped(&p.guid, &p.app, ScaleEvidence::Load, reason));
                }
                Ok(p) => policies.push(p),
                Err(bad) => {
                    self.warn_invalid(&bad);
                    decisions.push(skipped(
                        &bad.guid,
                        &bad.app,
                        ScaleEvidence::Load,
                        format!("invalid_policy: {bad}"),
                    ));
                }
            }
        }

        // One query per distinct window: apps usually share one, and each app's mean must
        // cover its own check_time_sec.
        let mut usage: BTreeMap<u64, Read<'_>> = BTreeMap::new();
        let source = ContainerSource {
            db: self.metrics_db.clone(),
            measurement: self.metrics_measurement.clone(),
            bucket_seconds: ctx.settings.influx.bucket_seconds,
        };
        // only the apps with a policy: the other containers are dropped as the answer is decoded
        let guids: HashSet<String> = policies
            .iter()
            .map(|p| p.guid.trim().to_ascii_lowercase())
            .collect();
        let wanted = Wanted {
            cells: None,
            app_guids: Some(&guids),
            narrow: None,
        };
        // In stream mode the stream keeps the apps' windows too; until it holds a window (after
        // a start, or when the window grew) that window's apps are read from the store. A
        // decision taken on the stream's reading is confirmed in the store before it acts.
        let now_ns = ctx.now.timestamp_nanos_opt().unwrap_or(i64::MAX);
        let windows: HashSet<u64> = policies.iter().map(|p| p.check_seconds).collect();
        let store_for = |w: u64| match ctx.metrics {
            MetricStore::Stream(h) => {
                h.state.keep_at_least(Duration::from_secs(w));
                if h.state.holds(Duration::from_secs(w), now_ns) {
                    (ctx.metrics, Some(&*h.query))
                } else {
                    (&*h.query, None)
                }
            }
            other => (other, None),
        };
        for w in windows {
            let (store, confirm_in) = store_for(w);
            let usage_windows = UsageWindows::uniform(Duration::from_secs(w));
            let read = read_container_usage_of(store, &source, &usage_windows, ctx.now, wanted)
                .await
                .map(group_by_app)
                .map_err(|e| e.to_string());
            if let Err(e) = &read {
                tracing::warn!(window_seconds = w, error = %e, "autoscale: container metrics unavailable; apps with this window are skipped");
            }
            usage.insert(
                w,
                Read {
                    usage: read,
                    confirm_in,
                },
            );
        }

        for p in &policies {
            let not_read = Read {
                usage: Err("not read".to_string()),
                confirm_in: None,
            };
            let u = usage.get(&p.check_seconds).unwrap_or(&not_read);
            let d = self.decide_app(ctx, p, u, &source, deadline).await;
            match d.outcome {
                ScaleOutcome::Acted | ScaleOutcome::DryRun => {
                    tracing::info!(app = %d.app_name, guid = %d.app_guid,
                    outcome = ?d.outcome, before = ?d.instances_before, after = ?d.instances_after, reason = %d.reason, "autoscale")
                }
                ScaleOutcome::Failed | ScaleOutcome::Blocked => {
                    tracing::warn!(app = %d.app_name, guid = %d.app_guid,
                    outcome = ?d.outcome, instances = ?d.instances_before, reason = %d.reason, "autoscale")
                }
                ScaleOutcome::Skipped => {
                    tracing::debug!(app = %d.app_name, guid = %d.app_guid, reason = %d.reason, "autoscale: no action")
                }
            }
            decisions.push(d);
        }
        Ok(decisions)
    }
}
