//! The tick: inventory sync, collect, evaluate, notify, scale. Each plugin runs isolated: its
//! failure or timeout is logged and counted, and the others go on.

use crate::config::{KNOWN_PLUGINS, Settings};
use crate::engine::{self, Change, ChangeCounts, EngineOptions};
use crate::influx::InfluxClient;
use crate::model::{Origin, Reading, Timestamp};
use crate::plugin::{
    CollectContext, PluginContext, PluginParts, ScaleContext, ScaleDecision, SyncContext, Windows,
    find_plugin,
};
use crate::vm_inventory::InventoryChanges;
use crate::{scaling, store, vm_inventory};
use anyhow::{Context as _, bail};
use serde::Serialize;
use sqlx::MySqlPool;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct BuiltPlugin {
    pub name: &'static str,
    pub parts: PluginParts,
}

/// Builds every plugin enabled in config. One that is enabled but not compiled in is an error
/// naming the cargo feature to turn on.
pub fn build_plugins(settings: &Arc<Settings>) -> anyhow::Result<Vec<BuiltPlugin>> {
    let mut out = Vec::new();
    for name in settings.enabled_plugins() {
        let Some(reg) = find_plugin(&name) else {
            if KNOWN_PLUGINS.contains(&name.as_str()) {
                bail!(
                    "plugin `{name}` is enabled in {} ([plugins.{name}] enabled = true) but is not compiled into this binary; \
                     rebuild with the cargo feature `{name}` (cargo build --features {name})",
                    settings.source
                );
            }
            bail!("unknown plugin `{name}` in {}", settings.source);
        };
        let ctx = PluginContext {
            name: reg.name,
            settings: settings.clone(),
        };
        let parts = (reg.build)(&ctx).with_context(|| format!("starting plugin `{name}`"))?;
        out.push(BuiltPlugin {
            name: reg.name,
            parts,
        });
    }
    Ok(out)
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct NotifyCounts {
    pub sent: u32,
    pub failed: u32,
    pub pending: i64,
}

/// What one tick did: printed by `run --once`, stored in `batch_runs`, logged on one line.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TickSummary {
    pub started_at: Option<Timestamp>,
    pub duration_ms: u64,
    pub instance: String,
    pub dry_run: bool,
    pub inventory: BTreeMap<String, InventoryChanges>,
    pub readings: BTreeMap<String, usize>,
    pub alarms: ChangeCounts,
    pub notifications: NotifyCounts,
    pub scale: Vec<ScaleDecision>,
    /// wall time of each step of the tick, milliseconds
    pub steps_ms: BTreeMap<String, u64>,
    /// InfluxDB queries issued and result rows read in this tick
    pub influx_queries: u64,
    pub influx_rows: u64,
    /// in a dry run: what would have been written
    pub planned: Vec<String>,
    pub errors: Vec<String>,
}

/// Status shared with the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Status {
    pub last_tick: Option<Timestamp>,
    pub last_tick_ok: bool,
}

pub struct Scheduler {
    pub settings: Arc<Settings>,
    pub pool: MySqlPool,
    pub influx: InfluxClient,
    pub plugins: Vec<BuiltPlugin>,
    pub status: Arc<Mutex<Status>>,
}

/// Runs `fut` for one plugin in one step, bounded by the step timeout; records its duration and
/// failure, and turns any error into a line for the summary.
async fn guarded<T>(
    step: &'static str,
    plugin: &'static str,
    timeout: Duration,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> Result<T, String> {
    let started = Instant::now();
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

impl Scheduler {
    fn step_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.batch.step_timeout_seconds)
    }

    /// One tick. Never panics on outside input; every failure ends up in `errors`.
    pub async fn tick(&self, dry_run: bool) -> TickSummary {
        let started = Instant::now();
        let now = chrono::Utc::now();
        let mut sum = TickSummary {
            started_at: Some(now),
            instance: self.settings.instance_name(),
            dry_run,
            ..Default::default()
        };
        use std::sync::atomic::Ordering::Relaxed;
        let (q0, r0) = (
            self.influx.stats.queries.load(Relaxed),
            self.influx.stats.rows.load(Relaxed),
        );
        if let Err(e) = self.tick_steps(now, dry_run, &mut sum).await {
            let msg = format!("tick: {e:#}");
            tracing::error!("{msg}");
            sum.errors.push(msg);
        }
        sum.duration_ms = started.elapsed().as_millis() as u64;
        sum.influx_queries = self.influx.stats.queries.load(Relaxed) - q0;
        sum.influx_rows = self.influx.stats.rows.load(Relaxed) - r0;
        metrics::counter!("monit_ticks_total").increment(1);
        if !sum.errors.is_empty() {
            metrics::counter!("monit_tick_failures_total").increment(1);
        }
        metrics::histogram!("monit_tick_duration_seconds").record(started.elapsed().as_secs_f64());
        if !dry_run
            && let Err(e) = store::record_run(
                &self.pool,
                now,
                sum.duration_ms as i64,
                &sum.instance,
                dry_run,
                &serde_json::to_value(&sum).unwrap_or_default(),
                &sum.errors,
            )
            .await
        {
            tracing::warn!("ledger: {e:#}");
        }
        if !dry_run
            && let Err(e) =
                store::prune(&self.pool, now, self.settings.batch.ledger_retention_days).await
        {
            tracing::warn!("ledger: {e:#}");
        }
        if let Ok(mut st) = self.status.lock() {
            st.last_tick = Some(now);
            st.last_tick_ok = sum.errors.is_empty();
        }
        tracing::info!(
            duration_ms = sum.duration_ms,
            readings = ?sum.readings,
            opened = sum.alarms.opened,
            escalated = sum.alarms.escalated,
            recovered = sum.alarms.recovered,
            renotified = sum.alarms.renotified,
            sent = sum.notifications.sent,
            send_failed = sum.notifications.failed,
            pending = sum.notifications.pending,
            scale_decisions = sum.scale.len(),
            errors = sum.errors.len(),
            dry_run,
            "tick done"
        );
        sum
    }

    async fn tick_steps(
        &self,
        now: Timestamp,
        dry_run: bool,
        sum: &mut TickSummary,
    ) -> anyhow::Result<()> {
        let timeout = self.step_timeout();
        let mut phase = Instant::now();
        let mut lap = |sum: &mut TickSummary, name: &str| {
            sum.steps_ms
                .insert(name.to_string(), phase.elapsed().as_millis() as u64);
            phase = Instant::now();
        };
        // 1. inventory: director tasks take longer than a query, hence a bound of its own
        let inv_timeout = Duration::from_secs(self.settings.batch.inventory_timeout_seconds.max(1));
        for p in &self.plugins {
            let Some(inv) = &p.parts.inventory else {
                continue;
            };
            let ctx = SyncContext { now };
            let fetched = guarded("inventory", p.name, inv_timeout, inv.fetch(&ctx)).await;
            match fetched {
                Ok(snapshot) if dry_run => sum.planned.push(format!(
                    "inventory/{}: would sync {} VMs",
                    p.name,
                    snapshot.vms.len()
                )),
                Ok(snapshot) => {
                    match guarded(
                        "inventory",
                        p.name,
                        timeout,
                        vm_inventory::apply_snapshot(&self.pool, &snapshot),
                    )
                    .await
                    {
                        Ok(ch) => {
                            sum.inventory.insert(p.name.to_string(), ch);
                        }
                        Err(e) => sum.errors.push(e),
                    }
                }
                Err(e) => sum.errors.push(e),
            }
        }

        lap(sum, "1_inventory");
        // 2. what to compare against
        let a = &self.settings.alarms;
        let policies = store::load_policies(&self.pool, a.default_measure_seconds).await?;
        let vms = store::load_vms(&self.pool).await?;
        let open = store::load_open_alarms(&self.pool).await?;
        let windows =
            Windows::from_policies(&policies, Duration::from_secs(a.default_measure_seconds));

        lap(sum, "2_load");
        // 3. collect, all collectors at once
        let ctx = CollectContext {
            now,
            settings: &self.settings,
            influx: &self.influx,
            vms: &vms,
            windows: &windows,
        };
        let collectors: Vec<_> = self
            .plugins
            .iter()
            .filter_map(|p| p.parts.collector.as_ref().map(|c| (p.name, c)))
            .collect();
        let results = futures::future::join_all(
            collectors
                .iter()
                .map(|(name, c)| guarded("collect", name, timeout, c.collect(&ctx))),
        )
        .await;
        let mut readings: Vec<Reading> = Vec::new();
        let mut evaluated: Vec<Origin> = Vec::new();
        let mut failed: Vec<Origin> = Vec::new();
        for ((name, c), res) in collectors.iter().zip(results) {
            match res {
                Ok(r) => {
                    metrics::counter!("monit_readings_total", "collector" => *name)
                        .increment(r.len() as u64);
                    sum.readings.insert(name.to_string(), r.len());
                    evaluated.push(c.origin());
                    readings.extend(r);
                }
                Err(e) => {
                    failed.push(c.origin());
                    sum.errors.push(e);
                }
            }
        }
        evaluated.retain(|o| !failed.contains(o));

        lap(sum, "3_collect");
        // 4. evaluate and persist in one transaction, notifications queued with it
        let opts = EngineOptions {
            auto_resolve: a.auto_resolve,
            default_repeat_minutes: a.default_repeat_minutes as i64,
        };
        let changes = engine::evaluate(&policies, &open, &readings, &evaluated, now, &opts);
        sum.alarms = engine::count(&changes);
        for (k, v) in [
            ("opened", sum.alarms.opened),
            ("escalated", sum.alarms.escalated),
            ("stepped_down", sum.alarms.stepped_down),
            ("renotified", sum.alarms.renotified),
            ("recovered", sum.alarms.recovered),
        ] {
            metrics::counter!("monit_alarms_total", "event" => k).increment(v as u64);
        }
        let notifiers: Vec<String> = self
            .plugins
            .iter()
            .filter(|p| p.parts.notifier.is_some())
            .map(|p| p.name.to_string())
            .collect();
        if dry_run {
            sum.planned.extend(changes.iter().map(describe_change));
        } else {
            let outbox = store::Outbox {
                notifiers: &notifiers,
                language: &a.language,
                resource_url: a.resource_url.as_deref(),
            };
            store::apply_changes(&self.pool, &changes, &open, now, &outbox).await?;
        }

        lap(sum, "4_evaluate_persist");
        // 5. notify from the outbox (new and earlier failed ones)
        if !dry_run {
            self.notify(now, sum).await;
        }

        lap(sum, "5_notify");
        // 6. scale; a needed scale-out blocked by instance_max_cnt is an alarm of its own
        let decisions = self.scale(now, dry_run, &vms, sum).await;
        if !dry_run && !decisions.is_empty() {
            let repeat = policies
                .iter()
                .find(|p| p.origin == Origin::Con && p.resource == crate::model::Resource::Cpu)
                .map(|p| p.repeat_minutes)
                .unwrap_or(a.default_repeat_minutes as i64);
            let changes =
                crate::scale_alarms::changes(&decisions, &open, now, repeat, a.auto_resolve);
            if !changes.is_empty() {
                let c = engine::count(&changes);
                sum.alarms.opened += c.opened;
                sum.alarms.continued += c.continued;
                sum.alarms.renotified += c.renotified;
                sum.alarms.recovered += c.recovered;
                let outbox = store::Outbox {
                    notifiers: &notifiers,
                    language: &a.language,
                    resource_url: a.resource_url.as_deref(),
                };
                store::apply_changes(&self.pool, &changes, &open, now, &outbox).await?;
                if c.opened + c.renotified + c.recovered > 0 {
                    self.notify(now, sum).await;
                }
            }
        }
        lap(sum, "6_scale");
        Ok(())
    }

    async fn notify(&self, now: Timestamp, sum: &mut TickSummary) {
        let recipients = match store::load_recipients(&self.pool).await {
            Ok(r) => r,
            Err(e) => {
                sum.errors.push(format!("notify: {e:#}"));
                return;
            }
        };
        let a = &self.settings.alarms;
        for p in &self.plugins {
            let Some(n) = &p.parts.notifier else { continue };
            let due = match store::due_notifications(&self.pool, p.name, now, 500).await {
                Ok(d) => d,
                Err(e) => {
                    sum.errors.push(format!("notify/{}: {e:#}", p.name));
                    continue;
                }
            };
            if due.is_empty() {
                continue;
            }
            let batch: Vec<_> = due
                .iter()
                .map(|d| {
                    let mut n = d.notification.clone();
                    n.recipients = recipients.get(n.origin.code()).cloned().unwrap_or_default();
                    n
                })
                .collect();
            let results = match guarded("notify", p.name, self.step_timeout(), async {
                Ok(n.send(&batch).await)
            })
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    sum.errors.push(e.clone());
                    batch.iter().map(|_| Err(anyhow::anyhow!("{e}"))).collect()
                }
            };
            let mut sent = Vec::new();
            for (d, res) in due
                .iter()
                .zip(results.into_iter().chain(std::iter::repeat_with(|| {
                    Err(anyhow::anyhow!("notifier returned no result"))
                })))
            {
                match res {
                    Ok(()) => sent.push(d.id),
                    Err(e) => {
                        sum.notifications.failed += 1;
                        let backoff = a
                            .retry_min_seconds
                            .saturating_mul(1u64 << d.attempts.clamp(0, 20))
                            .min(a.retry_max_seconds);
                        let next = now + chrono::Duration::seconds(backoff as i64);
                        tracing::warn!(
                            notifier = p.name,
                            notification_id = d.id,
                            retry_in_s = backoff,
                            "send failed: {e:#}"
                        );
                        if let Err(e) =
                            store::mark_failed(&self.pool, d.id, next, &format!("{e:#}")).await
                        {
                            sum.errors.push(format!("notify/{}: {e:#}", p.name));
                        }
                    }
                }
            }
            sum.notifications.sent += sent.len() as u32;
            if let Err(e) = store::mark_sent(&self.pool, &sent, chrono::Utc::now()).await {
                sum.errors.push(format!("notify/{}: {e:#}", p.name));
            }
            metrics::counter!("monit_notifications_total", "notifier" => p.name, "result" => "sent").increment(sent.len() as u64);
            metrics::counter!("monit_notifications_total", "notifier" => p.name, "result" => "failed")
                .increment((due.len() - sent.len()) as u64);
        }
        match store::pending_count(&self.pool).await {
            Ok(n) => {
                sum.notifications.pending = n;
                metrics::gauge!("monit_notifications_pending").set(n as f64);
            }
            Err(e) => sum.errors.push(format!("notify: {e:#}")),
        }
    }

    async fn scale(
        &self,
        now: Timestamp,
        dry_run: bool,
        vms: &[crate::model::Vm],
        sum: &mut TickSummary,
    ) -> Vec<ScaleDecision> {
        let scalers: Vec<_> = self
            .plugins
            .iter()
            .filter_map(|p| p.parts.scaler.as_ref().map(|s| (p.name, s)))
            .collect();
        if scalers.is_empty() {
            return Vec::new();
        }
        let last_scaled: HashMap<String, Timestamp> = match scaling::last_acted(&self.pool).await {
            Ok(m) => m,
            Err(e) => {
                // Without the history the cooldown cannot be honoured: do not scale blind.
                sum.errors.push(format!("scale: {e:#}"));
                return Vec::new();
            }
        };
        let mut all = Vec::new();
        for (name, s) in scalers {
            let ctx = ScaleContext {
                now,
                settings: &self.settings,
                influx: &self.influx,
                monitoring_db: &self.pool,
                vms,
                dry_run,
                last_scaled: &last_scaled,
            };
            match guarded("scale", name, self.step_timeout(), s.scale(&ctx)).await {
                Ok(decisions) => {
                    for d in &decisions {
                        metrics::counter!("monit_scale_decisions_total", "outcome" => format!("{:?}", d.outcome)).increment(1);
                    }
                    if dry_run {
                        sum.planned.extend(decisions.iter().map(|d| {
                            format!(
                                "scale {} ({}): {:?} {:?}: {}",
                                d.app_name, d.app_guid, d.action, d.outcome, d.reason
                            )
                        }));
                    } else if let Err(e) =
                        scaling::record_decisions(&self.pool, &decisions, now).await
                    {
                        sum.errors
                            .push(format!("scale/{name}: recording decisions: {e:#}"));
                    }
                    all.extend(decisions.iter().cloned());
                    sum.scale.extend(decisions);
                }
                Err(e) => sum.errors.push(e),
            }
        }
        all
    }

    /// Ticks every `batch.interval_seconds` until `shutdown` turns true. A tick in flight when
    /// the signal comes is finished (its DB writes complete), then the loop ends. Ticks never
    /// overlap and a slow tick does not cause a burst of catch-up ticks.
    pub async fn run(
        &self,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        leader: &crate::leader::Leader,
    ) {
        let mut interval =
            tokio::time::interval(Duration::from_secs(self.settings.batch.interval_seconds));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            if leader.acquire().await {
                self.tick(false).await;
            }
            if *shutdown.borrow() {
                break;
            }
        }
        leader.release().await;
        tracing::info!("scheduler stopped");
    }
}

fn describe_change(c: &Change) -> String {
    let s = c.subject();
    let who = match &s.target.app {
        Some(a) => format!(
            "{} {}[{}] on {}",
            s.target.origin, a.app_name, a.app_index, a.cell_name
        ),
        None => format!("{} {} ({})", s.target.origin, s.target.name, s.target.ip),
    };
    let v = s
        .value
        .map(|v| format!("{v:.2}%"))
        .unwrap_or_else(|| "no data".into());
    let (ty, level) = (s.alarm_type, s.level);
    match c {
        Change::Open { .. } => format!("open {ty} {level} alarm for {who} at {v}, notify"),
        Change::Escalate {
            alarm_id,
            from,
            notify,
            ..
        } => format!(
            "escalate alarm {alarm_id} ({ty}) of {who} {from} -> {level} at {v}{}",
            if *notify { ", notify" } else { "" }
        ),
        Change::StepDown {
            alarm_id,
            from,
            notify,
            ..
        } => format!(
            "step down alarm {alarm_id} ({ty}) of {who} {from} -> {level} at {v}{}",
            if *notify { ", notify" } else { "" }
        ),
        Change::Rebreach { alarm_id, .. } => {
            format!("re-open alarm {alarm_id} ({ty} {level}) of {who} at {v}, notify")
        }
        Change::Continue {
            alarm_id, renotify, ..
        } => format!(
            "count alarm {alarm_id} ({ty}) of {who} at {v}{}",
            if *renotify {
                ", repeat notification"
            } else {
                ""
            }
        ),
        Change::Recover {
            alarm_ids,
            close_ids,
            ..
        } => format!(
            "alarm(s) {alarm_ids:?} ({ty}) of {who} recovered at {v}: resolve {close_ids:?}, leave the others open with a note, notify recovery"
        ),
    }
}
