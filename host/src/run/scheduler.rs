//! The tick, one straight pass down the stages ([`Scheduler::tick_steps`] reads as the list):
//! inventory sync (`store::inventory`), load (`store::inputs`), collect and decide side by side
//! (`evaluate::collect` and the scalers), evaluate (`evaluate::tick_changes`), hold (`hold`),
//! persist in one transaction (`store::apply_changes`), notify (`notify::dispatch`). Each
//! plugin runs isolated: its failure or timeout is logged and counted, and the others go on.

use crate::config::Settings;
use crate::evaluate;
use crate::evaluate::collect::{self, Collected};
use crate::evaluate::engine::{
    self, Change, ChangeCounts, EngineOptions, OpenAlarm, QuietReadings,
};
use crate::evaluate::{reconcile, truth};
use crate::hold::maintenance;
use crate::hold::{HoldInputs, Holds};
use crate::metric_store::MetricStore;
use crate::metric_store::stream::{self, TickMode};
use crate::model::Timestamp;
use crate::notify::dispatch::{Dispatch, NotifyReport};
use crate::plugin::{
    CollectContext, PluginContext, PluginParts, ScaleContext, ScaleDecision, Windows, find_plugin,
    guarded, known_plugin_names, project_plugins,
};
use crate::run::telemetry;
use crate::store::inputs::TickInputs;
use crate::store::leader::Leader;
use crate::store::vms::InventoryChanges;
use crate::store::{self, inventory, scaling_history};
use anyhow::{Context as _, bail};
use serde::Serialize;
use sqlx::MySqlPool;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct BuiltPlugin {
    pub name: &'static str,
    pub parts: PluginParts,
}

/// Builds every plugin enabled in config. One that is enabled but not compiled in is an error
/// naming the cargo feature to turn on.
pub fn build_plugins(settings: &Arc<Settings>) -> anyhow::Result<Vec<BuiltPlugin>> {
    for name in settings.plugins.keys() {
        if find_plugin(name).is_none() && !project_plugins().contains(&name.as_str()) {
            bail!(
                "invalid config in {}: unknown plugin [plugins.{name}]; known plugins: {}",
                settings.source,
                known_plugin_names().join(", ")
            );
        }
    }
    let mut out = Vec::new();
    for name in settings.enabled_plugins() {
        let Some(reg) = find_plugin(&name) else {
            if project_plugins().contains(&name.as_str()) {
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

/// What one tick did: printed by `run --once`, stored in `batch_runs`, logged on one line.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TickSummary {
    pub started_at: Option<Timestamp>,
    pub duration_ms: u64,
    pub instance: String,
    pub dry_run: bool,
    pub inventory: BTreeMap<String, InventoryChanges>,
    /// per VM source: synced this tick or the last inventory reused, and its age
    pub inventory_sync: BTreeMap<String, inventory::SyncOutcome>,
    pub readings: BTreeMap<String, usize>,
    /// collectors whose answer was a gap in the metrics pipeline (see metrics_gap)
    pub metric_gaps: Vec<crate::evaluate::metrics_gap::GapCheck>,
    pub alarms: ChangeCounts,
    /// notifications held back this tick: silenced, maintenance, inhibited
    pub held: crate::hold::HeldCounts,
    /// BOSH deployments under maintenance this tick (a director task, or its grace)
    pub maintenance: Vec<String>,
    /// deployments whose maintenance hold ran past `alarms.maintenance_max_hours` (a task that
    /// does not end): their alarms are notified again
    pub maintenance_cut_short: Vec<maintenance::Hold>,
    /// age of the oldest maintenance hold, cut short or not (none: nothing under maintenance)
    pub maintenance_oldest_seconds: Option<i64>,
    pub notifications: crate::notify::dispatch::NotifyCounts,
    pub scale: Vec<ScaleDecision>,
    /// wall time of each step of the tick, milliseconds
    pub steps_ms: BTreeMap<String, u64>,
    /// the metric store read: `influxdb` or `prometheus`
    pub metric_store: String,
    /// how the collectors read it: `query`, `stream`, or `stream-warmup` (stream mode
    /// configured, read in query mode until the stream covers the longest window)
    pub metric_mode: String,
    /// stream mode only: each collector's mode, InfluxDB's `subWriteDrop`, the confirmation of
    /// the tick's changes by the store, and the drift when the tick reconciled
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<crate::evaluate::truth::StreamTick>,
    /// queries sent to the metric store and rows (InfluxDB) or samples (Prometheus API) read in
    /// this tick (the names stay for the JSON summary's readers)
    pub influx_queries: u64,
    pub influx_rows: u64,
    /// in a dry run: what would have been written
    pub planned: Vec<String>,
    pub errors: Vec<String>,
}

/// The stores a tick reads: the stream (in stream mode) and the store's query client, and which
/// one each collector reads.
struct TickStores {
    stream: MetricStore,
    query: MetricStore,
    modes: Vec<(&'static str, TickMode)>,
    overall: TickMode,
}

impl TickStores {
    fn mode_of(&self, collector: &str) -> TickMode {
        self.modes
            .iter()
            .find(|(n, _)| *n == collector)
            .map(|(_, m)| *m)
            .unwrap_or(TickMode::Query)
    }
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
    /// the metric store of `[metrics] backend`
    pub metrics: MetricStore,
    pub plugins: Vec<BuiltPlugin>,
    pub status: Arc<Mutex<Status>>,
    pub leader: Arc<Leader>,
    /// who claims outbox rows: this process, unique across instances and restarts
    pub claim_owner: String,
    /// when each VM source last synced: its inventory is fetched on its own cadence
    pub inventory_clock: inventory::SyncClock,
    /// stream mode: the reconciliation running beside the ticks, or ended and not yet told
    pub reconciliation: reconcile::Reconciliation,
}

/// A claim owner for this process: the instance name, the pid and the start time.
pub fn claim_owner(settings: &Settings) -> String {
    let name: String = settings.instance_name().chars().take(120).collect();
    format!(
        "{name}/{}/{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    )
}

impl Scheduler {
    /// The lease a write must hold; an error when leader election is on and the lock is gone.
    fn fence(&self) -> anyhow::Result<Option<crate::store::leader::Fence>> {
        match self.leader.fence() {
            Some(f) => Ok(Some(f)),
            None if self.leader.elected() => {
                bail!("this instance no longer holds the leader lock: nothing written")
            }
            None => Ok(None),
        }
    }

    fn step_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.batch.step_timeout_seconds)
    }

    /// One tick. Never panics on outside input; every failure ends up in `errors`.
    pub async fn tick(&self, dry_run: bool) -> TickSummary {
        let started = Instant::now();
        self.reconciliation.tick_started();
        let now = chrono::Utc::now();
        let mut sum = TickSummary {
            started_at: Some(now),
            instance: self.settings.instance_name(),
            dry_run,
            ..Default::default()
        };
        use std::sync::atomic::Ordering::Relaxed;
        let (q0, r0) = (
            self.metrics.stats().queries.load(Relaxed),
            self.metrics.stats().rows.load(Relaxed),
        );
        if let Err(e) = self.tick_steps(now, dry_run, &mut sum).await {
            let msg = format!("tick: {e:#}");
            tracing::error!("{msg}");
            sum.errors.push(msg);
        }
        sum.duration_ms = started.elapsed().as_millis() as u64;
        self.reconciliation.tick_ended(
            started.into(),
            Duration::from_secs(self.settings.batch.interval_seconds),
        );
        sum.metric_store = self.metrics.backend().as_str().to_string();
        sum.influx_queries = self.metrics.stats().queries.load(Relaxed) - q0;
        sum.influx_rows = self.metrics.stats().rows.load(Relaxed) - r0;
        metrics::counter!("monit_ticks_total").increment(1);
        if sum.errors.is_empty() {
            crate::run::telemetry::tick_succeeded(now);
        } else {
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
        // the windows' stale points and series go after the tick, not in it
        if let MetricStore::Stream(h) = &self.metrics {
            h.state
                .prune(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX));
        }
        // the tick's readings, answers and folds are freed: give the pages back
        crate::run::heap::release_freed();
        if let Ok(mut st) = self.status.lock() {
            st.last_tick = Some(now);
            st.last_tick_ok = sum.errors.is_empty();
        }
        tracing::info!(
            duration_ms = sum.duration_ms,
            readings = ?sum.readings,
            metric_mode = %sum.metric_mode,
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

    /// The stages of a tick, in order; each step's wall time goes into `steps_ms`.
    async fn tick_steps(
        &self,
        now: Timestamp,
        dry_run: bool,
        sum: &mut TickSummary,
    ) -> anyhow::Result<()> {
        let a = &self.settings.alarms;
        let mut lap = Lap::start();
        // 1. the platform as it is: BOSH VMs into `vms`, deployments under maintenance
        self.sync_inventory(now, dry_run, sum).await;
        lap.done(sum, "1_inventory");

        // 2. what to compare against, and what holds notifications back
        let inputs = TickInputs::load(&self.pool, a, now).await?;
        sum.errors.extend(inputs.errors.iter().cloned());
        let maintenance = maintenance::bound(
            &inputs.maintenance,
            now,
            a.maintenance_max_hours,
            &a.language,
        );
        sum.maintenance = maintenance.held.iter().cloned().collect();
        sum.maintenance.sort();
        sum.maintenance_cut_short = maintenance.cut_short.clone();
        sum.maintenance_oldest_seconds = maintenance.oldest_seconds;
        // the cooldown of each app, for the scalers; without the history they do not run (a
        // scaler must not scale blind)
        let last_scaled = self.last_scaled(sum).await;
        lap.done(sum, "2_load");

        // 3. readings and scale decisions, side by side (all of them only read, then a scaler
        // acts on what it decided)
        let stores = self
            .tick_stores(now, &inputs.policies, &inputs.vms, sum)
            .await;
        sum.metric_mode = stores.overall.as_str().to_string();
        let windows = Windows::from_policies(
            &inputs.policies,
            Duration::from_secs(a.default_measure_seconds),
        );
        // the readings that cannot change anything this tick, which a large fleet's collector
        // leaves out (counted)
        let quiet = QuietReadings::new(&inputs.policies, &inputs.open);
        let ctx_of = |metrics, narrow_to_vms| CollectContext {
            now,
            bucket_seconds: self.settings.influx.bucket_seconds,
            metrics,
            vms: &inputs.vms,
            windows: &windows,
            targets: None,
            narrow_to_vms,
            quiet: Some(&quiet),
        };
        // stream mode reading the store: the windows hold most of the memory, the answers are
        // held to a part of the fleet at a time
        let in_stream_mode = matches!(self.metrics, MetricStore::Stream(_));
        let (stream_ctx, query_ctx) = (
            ctx_of(&stores.stream, false),
            ctx_of(&stores.query, in_stream_mode),
        );
        let collectors = self.collectors();
        let mut streamed: Vec<_> = collectors
            .iter()
            .filter(|(name, _)| stores.mode_of(name) == TickMode::Stream)
            .cloned()
            .collect();
        let readers_of = |streamed: &[(&'static str, Arc<dyn crate::plugin::Collector>)]| {
            collectors
                .iter()
                .map(|(name, c)| {
                    let ctx = if streamed.iter().any(|(n, _)| n == name) {
                        &stream_ctx
                    } else {
                        &query_ctx
                    };
                    (*name, c.clone(), ctx)
                })
                .collect::<Vec<collect::Reader<'_, '_>>>()
        };
        let readers = readers_of(&streamed);
        let scale_store = if stores.overall == TickMode::Stream {
            &stores.stream
        } else {
            &stores.query
        };
        let (mut collected, decisions) = futures::future::join(
            self.collect(&readers, &inputs),
            self.scale(
                now,
                dry_run,
                scale_store,
                &inputs.vms,
                last_scaled.as_ref(),
                sum,
            ),
        )
        .await;
        // An origin silent in the stream (a pipeline gap: most of its targets without a point)
        // is no proof of silence: a delivery that stopped looks the same. It reads the store.
        let silent: Vec<_> = collected
            .gaps()
            .iter()
            .map(|g| g.origin)
            .filter(|o| streamed.iter().any(|(_, c)| c.origin() == *o))
            .collect();
        if !silent.is_empty() {
            let (quiet, kept): (Vec<_>, Vec<_>) = streamed
                .into_iter()
                .partition(|(_, c)| silent.contains(&c.origin()));
            streamed = kept;
            if let Some(st) = sum.stream.as_mut() {
                for (name, _) in &quiet {
                    st.modes
                        .insert(name.to_string(), TickMode::StreamQuiet.as_str().into());
                }
            }
            if sum.metric_mode == TickMode::Stream.as_str() {
                sum.metric_mode = TickMode::StreamQuiet.as_str().into();
            }
            let modes: Vec<(&str, TickMode)> = stores
                .modes
                .iter()
                .map(|(name, m)| {
                    let quieted = quiet.iter().any(|(q, _)| q == name);
                    (*name, if quieted { TickMode::StreamQuiet } else { *m })
                })
                .collect();
            publish_modes(mixed_mode(&modes), &modes);
            collected = self.collect(&readers_of(&streamed), &inputs).await;
        }
        sum.readings = collected.counts.clone();
        sum.metric_gaps = collected.gaps();
        sum.errors.extend(collected.errors.iter().cloned());
        if let (MetricStore::Stream(h), false) = (&self.metrics, streamed.is_empty())
            && h.state.reconcile_due(self.settings.stream.reconcile_every)
        {
            self.start_reconciliation(&streamed, &inputs, &windows, sum);
        }
        lap.done(sum, "3_collect");

        // 4. evaluate, hold, and persist in one transaction with the notifications queued
        let opts = EngineOptions {
            auto_resolve: a.auto_resolve,
            default_repeat_minutes: a.default_repeat_minutes as i64,
        };
        let mut changes = evaluate::tick_changes(
            &inputs.policies,
            &inputs.open,
            &collected,
            &decisions,
            now,
            &opts,
        );
        let hold_inputs = HoldInputs {
            open: &inputs.open,
            vms: &inputs.vms,
            inhibit: a.inhibit,
            silences: &inputs.silences,
            deployments: &inputs.deployments,
            maintenance: &maintenance.held,
            cut_short: &maintenance.cut,
            now,
        };
        if !streamed.is_empty() {
            // an alarm that stays held (opened on the store's word, never told) notifies
            // nobody this tick: nothing to confirm
            let held_now = Holds::decide(&changes, &hold_inputs);
            let still_held = |c: &Change| held_now.still_held(c, &inputs.open);
            // a point the stream lost must not page anyone: the store confirms first
            let inp = truth::ConfirmInputs {
                streamed: &streamed,
                readings: &collected.readings,
                query: &query_ctx,
                policies: &inputs.policies,
                open: &inputs.open,
                now,
                opts: &opts,
                timeout: self.step_timeout(),
                still_held: &still_held,
            };
            let mut report = truth::Confirmation::default();
            let (kept, errors) = truth::confirm(changes, &inp, &mut report).await;
            changes = kept;
            sum.errors.extend(errors);
            if let Some(st) = sum.stream.as_mut() {
                st.confirmation = report;
            }
        }
        sum.alarms = engine::count(&changes);
        let (holds, held) = Holds::for_tick(&changes, &hold_inputs, &mut sum.alarms);
        sum.held = held;
        telemetry::count_alarms(&sum.alarms);
        self.persist(
            &changes,
            &holds,
            &decisions,
            &inputs.open,
            now,
            dry_run,
            sum,
        )
        .await?;
        lap.done(sum, "4_evaluate_persist");

        // 5. notify from the outbox (new and earlier failed ones)
        if !dry_run {
            self.notify(sum).await;
        }
        lap.done(sum, "5_notify");
        // what a fleet's tick leaves (hundreds of thousands of readings and their names) is
        // freed beside the ticks: nothing waits for it
        crate::run::heap::free_beside((collected, changes, holds, inputs));
        Ok(())
    }

    /// The stores this tick reads and the mode of each collector. In stream mode a collector
    /// reads the windows once the stream covers the longest policy window (and what a reader
    /// always looks back), InfluxDB dropped no subscription write within that span, and its
    /// databases' points kept arriving (no pause longer than two `influx.bucket_seconds` within
    /// the span); otherwise it reads the store.
    async fn tick_stores(
        &self,
        now: Timestamp,
        policies: &[crate::model::Policy],
        vms: &[crate::model::Vm],
        sum: &mut TickSummary,
    ) -> TickStores {
        let collectors = self.collectors();
        let mut modes = Vec::new();
        let overall = match &self.metrics {
            MetricStore::Stream(h) => {
                let now_ns = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
                let span = self.keep_stream(h, policies, vms, now_ns);
                let mut st = truth::StreamTick::default();
                let dropping = match &*h.query {
                    MetricStore::Influx(c) => match c.sub_write_drop().await {
                        Ok(n) => {
                            st.sub_write_drop = Some(n);
                            h.state.note_sub_write_drop(n, span, now_ns)
                        }
                        Err(e) => {
                            // unknown: keep what the last reads said; a drop meanwhile shows
                            // as a rise at the next read
                            sum.errors
                                .push(format!("stream: reading InfluxDB's subWriteDrop: {e}"));
                            h.state.dropping(now_ns)
                        }
                    },
                    // vmagent queues and retries on its side: no drop counter to read
                    _ => false,
                };
                let covered = h.state.covers(span, now_ns);
                for (name, c) in &collectors {
                    let mode = if !covered {
                        TickMode::StreamWarmup
                    } else if dropping {
                        TickMode::StreamGap
                    } else if c.stream_series(&self.settings).iter().any(|s| {
                        h.state.freshness(&s.db, span, now_ns) != stream::Freshness::Covered
                    }) {
                        TickMode::StreamQuiet
                    } else {
                        TickMode::Stream
                    };
                    modes.push((*name, mode));
                }
                let overall = if !covered {
                    TickMode::StreamWarmup
                } else if dropping {
                    TickMode::StreamGap
                } else {
                    mixed_mode(&modes)
                };
                st.modes = modes
                    .iter()
                    .map(|(n, m)| (n.to_string(), m.as_str().to_string()))
                    .collect();
                if let Some(mut r) = self.reconciliation.take_finished() {
                    st.drift = Some(std::mem::take(&mut r.drift));
                    sum.errors.extend(
                        r.errors
                            .iter()
                            .map(|e| format!("stream reconciliation: {e}")),
                    );
                    st.reconciliation = Some(r);
                }
                sum.stream = Some(st);
                overall
            }
            _ => {
                modes = collectors
                    .iter()
                    .map(|(n, _)| (*n, TickMode::Query))
                    .collect();
                TickMode::Query
            }
        };
        publish_modes(overall, &modes);
        let query = match &self.metrics {
            MetricStore::Stream(h) => (*h.query).clone(),
            s => s.clone(),
        };
        TickStores {
            stream: self.metrics.clone(),
            query,
            modes,
            overall,
        }
    }

    /// Keeps the stream's windows for the longest window read (the policies', what a reader
    /// always looks back, a bucket) and for the inventory's VMs; returns that span.
    fn keep_stream(
        &self,
        h: &stream::StreamHandle,
        policies: &[crate::model::Policy],
        vms: &[crate::model::Vm],
        now_ns: i64,
    ) -> Duration {
        let windows = Windows::from_policies(
            policies,
            Duration::from_secs(self.settings.alarms.default_measure_seconds),
        );
        let bucket = Duration::from_secs(self.settings.influx.bucket_seconds);
        let span = windows
            .by_key
            .values()
            .copied()
            .chain([windows.default, h.state.min_span, bucket])
            .max()
            .unwrap_or_default();
        h.state.set_inventory(vms.iter().map(|vm| vm.ip.as_str()));
        h.state.set_span(span, now_ns);
        // writers write once a bucket: a pause of one bucket plus their jitter is their
        // rhythm, not an outage; two buckets without a point are
        h.state.set_quiet_after(bucket * 2);
        span
    }

    /// A standby keeps its stream as the leader would (the policies' windows, the inventory),
    /// so that it ticks from the stream at once when it takes over.
    async fn keep_stream_warm(&self) {
        let MetricStore::Stream(h) = &self.metrics else {
            return;
        };
        let policies =
            store::load_policies(&self.pool, self.settings.alarms.default_measure_seconds).await;
        let vms = store::load_vms(&self.pool).await;
        match (policies, vms) {
            (Ok(policies), Ok(vms)) => {
                let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
                self.keep_stream(h, &policies, &vms, now_ns);
                h.state.prune(now_ns);
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "standby: the stream's windows not updated (policies or VMs unreadable); retried next interval");
            }
        }
    }

    fn collectors(&self) -> Vec<(&'static str, Arc<dyn crate::plugin::Collector>)> {
        self.plugins
            .iter()
            .filter_map(|p| p.parts.collector.clone().map(|c| (p.name, c)))
            .collect()
    }

    /// The collectors' readings, each in its context (the stream's, or the store's).
    async fn collect(&self, readers: &[collect::Reader<'_, '_>], inputs: &TickInputs) -> Collected {
        collect::readings(
            readers,
            self.step_timeout(),
            self.settings.alarms.pipeline_gap_ratio,
            &inputs.absent,
        )
        .await
    }

    /// Every `stream.reconcile_every` stream ticks: a reconciliation of the streamed collectors
    /// starts beside the ticks (`evaluate::reconcile`), unless the last one still runs; its
    /// drift goes to the summary of the first tick after it ends.
    fn start_reconciliation(
        &self,
        streamed: &[reconcile::Streamed],
        inputs: &TickInputs,
        windows: &Windows,
        sum: &mut TickSummary,
    ) {
        let started = self.reconciliation.start(reconcile::Job {
            collectors: streamed.to_vec(),
            stream: self.metrics.clone(),
            // the store's client with counts of its own: the ticks' `influx_queries` stay theirs
            query: self.metrics.history_client(),
            vms: inputs.vms.clone(),
            windows: windows.clone(),
            bucket_seconds: self.settings.influx.bucket_seconds,
            timeout: self.step_timeout(),
        });
        if !started {
            tracing::info!(
                "stream reconciliation due, but the last one still runs: this one is skipped"
            );
        }
        if let Some(st) = sum.stream.as_mut() {
            st.reconcile_started = started;
        }
    }

    /// The store stage: the changes and decisions in one transaction, fenced by the lease, the
    /// notifications of what is not held queued with them. A dry run writes nothing and says
    /// what it would have written.
    #[allow(clippy::too_many_arguments)]
    async fn persist(
        &self,
        changes: &[Change],
        holds: &Holds,
        decisions: &[ScaleDecision],
        open: &[OpenAlarm],
        now: Timestamp,
        dry_run: bool,
        sum: &mut TickSummary,
    ) -> anyhow::Result<()> {
        if dry_run {
            sum.planned.extend(changes.iter().map(|c| {
                let s = c.subject();
                match holds.reason(s.target, s.alarm_type) {
                    Some(r) => format!("{} (held: {})", describe_change(c), r.code()),
                    None => describe_change(c),
                }
            }));
            return Ok(());
        }
        let a = &self.settings.alarms;
        let notifiers: Vec<String> = self
            .plugins
            .iter()
            .filter(|p| p.parts.notifier.is_some())
            .map(|p| p.name.to_string())
            .collect();
        let outbox = store::Outbox {
            notifiers: &notifiers,
            language: &a.language,
            resource_url: a.resource_url.as_deref(),
            holds,
            display_offset: a.display_offset(),
        };
        store::apply_changes(
            &self.pool,
            changes,
            decisions,
            open,
            now,
            &outbox,
            self.fence()?.as_ref(),
        )
        .await
    }

    /// The last acted scaling per app, for the scalers' cooldown: None when no scaler runs or
    /// the history cannot be read (then no scaler runs: it must not scale blind).
    /// The inventory stage: every VM source's snapshot into `vms` (fenced by the lease), and
    /// the deployments under maintenance.
    async fn sync_inventory(&self, now: Timestamp, dry_run: bool, sum: &mut TickSummary) {
        let sources: Vec<_> = self
            .plugins
            .iter()
            .filter_map(|p| p.parts.vm_source.clone().map(|s| (p.name, s)))
            .collect();
        let report = inventory::sync(
            &self.pool,
            &self.settings,
            &sources,
            &self.inventory_clock,
            now,
            dry_run,
            self.step_timeout(),
            &|| self.fence(),
        )
        .await;
        sum.inventory.extend(report.synced);
        for (name, s) in &report.cadence {
            if let Some(age) = s.age_seconds {
                metrics::gauge!("monit_inventory_age_seconds", "source" => name.clone())
                    .set(age as f64);
            }
        }
        sum.inventory_sync.extend(report.cadence);
        sum.planned.extend(report.planned);
        sum.errors.extend(report.errors);
    }

    /// The notify stage: the outbox through every notifier, its counts and errors into `sum`.
    async fn notify(&self, sum: &mut TickSummary) {
        let dispatch = Dispatch {
            pool: self.pool.clone(),
            settings: self.settings.clone(),
            leader: self.leader.clone(),
            claim_owner: self.claim_owner.clone(),
            step_timeout: self.step_timeout(),
            history: Some(crate::notify::history::HistorySource {
                collectors: self.collectors(),
                metrics: self.metrics.history_client(),
            }),
        };
        let notifiers: Vec<_> = self
            .plugins
            .iter()
            .filter_map(|p| p.parts.notifier.clone().map(|n| (p.name, n)))
            .collect();
        let mut report = NotifyReport::default();
        dispatch.run(&notifiers, &mut report).await;
        sum.notifications = report.notifications;
        sum.errors.extend(report.errors);
    }

    async fn last_scaled(&self, sum: &mut TickSummary) -> Option<HashMap<String, Timestamp>> {
        if !self.plugins.iter().any(|p| p.parts.scaler.is_some()) {
            return None;
        }
        match scaling_history::last_acted(&self.pool).await {
            Ok(m) => Some(m),
            Err(e) => {
                sum.errors.push(format!("scale: {e:#}"));
                None
            }
        }
    }

    /// Runs every scaler (decide, then act unless a dry run) and returns their decisions, for
    /// the engine and the tick's one write.
    async fn scale(
        &self,
        now: Timestamp,
        dry_run: bool,
        store: &MetricStore,
        vms: &[crate::model::Vm],
        last_scaled: Option<&HashMap<String, Timestamp>>,
        sum: &mut TickSummary,
    ) -> Vec<ScaleDecision> {
        let Some(last_scaled) = last_scaled else {
            return Vec::new();
        };
        let scalers: Vec<_> = self
            .plugins
            .iter()
            .filter_map(|p| p.parts.scaler.as_ref().map(|s| (p.name, s)))
            .collect();
        let mut all = Vec::new();
        for (name, s) in scalers {
            let ctx = ScaleContext {
                now,
                settings: &self.settings,
                metrics: store,
                vms,
                dry_run,
                last_scaled,
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
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
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
            if self.leader.acquire().await {
                self.tick(false).await;
            } else {
                // the leader syncs while this one waits: ours is stale once we lead again
                self.inventory_clock.forget();
                self.keep_stream_warm().await;
            }
            if *shutdown.borrow() {
                break;
            }
        }
        self.leader.release().await;
        tracing::info!("scheduler stopped");
    }
}

/// The tick's mode when its collectors' modes differ: the first that is not `stream` (a tick
/// reads from the stream only when every collector does).
fn mixed_mode(modes: &[(&str, TickMode)]) -> TickMode {
    modes
        .iter()
        .map(|(_, m)| *m)
        .find(|m| *m != TickMode::Stream)
        .unwrap_or(TickMode::Stream)
}

/// The mode of the tick and of each collector, on `/metrics`.
fn publish_modes(overall: TickMode, modes: &[(&str, TickMode)]) {
    for m in TickMode::ALL {
        metrics::gauge!("monit_metric_mode", "mode" => m.as_str()).set(if m == overall {
            1.0
        } else {
            0.0
        });
        for (name, mode) in modes {
            metrics::gauge!("monit_collector_metric_mode", "collector" => name.to_string(), "mode" => m.as_str())
                .set(if m == *mode { 1.0 } else { 0.0 });
        }
    }
}

/// The wall time of each step of a tick.
struct Lap(Instant);

impl Lap {
    fn start() -> Self {
        Lap(Instant::now())
    }

    fn done(&mut self, sum: &mut TickSummary, step: &str) {
        sum.steps_ms
            .insert(step.to_string(), self.0.elapsed().as_millis() as u64);
        self.0 = Instant::now();
    }
}

fn describe_change(c: &Change) -> String {
    let s = c.subject();
    let who = match &s.target.app {
        Some(a) => format!(
            "{} {} on {}",
            s.target.origin,
            s.target.label(),
            a.cell_name
        ),
        None => format!("{} {} ({})", s.target.origin, s.target.label(), s.target.ip),
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
