//! The first pass of a tick: each VM source's snapshot (the BOSH director's VMs) synced into
//! `vms`, a VM missing from it kept for `batch.vm_removal_grace_minutes`, and the deployments
//! the director is changing recorded as under maintenance. A source that cannot answer changes
//! nothing; every write is fenced by the leader's lease.
//!
//! A source's snapshot can be expensive (each BOSH `vms?format=full` is a director task), so
//! it is fetched on the source's own cadence ([`VmSource::sync_interval`]) and the ticks between
//! use the `vms` rows of the last sync. The changes in progress (cheap) are asked every tick, and
//! a change in them (a deploy starting or ending) makes the inventory due at once: the VMs are
//! what such a task changes.

use crate::config::Settings;
use crate::hold::maintenance;
use crate::model::Timestamp;
use crate::plugin::{ChangeInProgress, SyncContext, VmSource, guarded};
use crate::store::leader::Fence;
use crate::store::vms::{self, InventoryChanges};
use serde::Serialize;
use sqlx::MySqlPool;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the inventory pass did, for the tick summary.
#[derive(Debug, Default)]
pub struct InventoryReport {
    /// per VM source
    pub synced: BTreeMap<String, InventoryChanges>,
    /// per VM source: fetched this tick or the last snapshot reused, and its age
    pub cadence: BTreeMap<String, SyncOutcome>,
    /// in a dry run: what would have been written
    pub planned: Vec<String>,
    pub errors: Vec<String>,
}

/// Whether a source's inventory was fetched this tick, and how old the one the tick uses is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncOutcome {
    /// the source was asked for its snapshot this tick (it may have failed: see `errors`)
    pub fetched: bool,
    /// why it was asked, or why not
    pub reason: SyncReason,
    /// seconds since the last successful sync of this process; none: not synced yet
    pub age_seconds: Option<u64>,
    /// the source's cadence, seconds (0: every tick)
    pub interval_seconds: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncReason {
    /// the source syncs every tick (`sync_interval` zero)
    #[default]
    EveryTick,
    /// nothing synced yet in this process (or since it became leader, or the last try failed)
    FirstSync,
    /// `run --once`: the operator wants the platform as it is now
    Requested,
    /// the interval has passed since the last sync
    IntervalPassed,
    /// the platform's changes in progress changed since the last tick
    ChangesInProgress,
    /// within the interval: the last synced inventory is used
    Reused,
}

impl SyncReason {
    pub fn describe(self) -> &'static str {
        match self {
            SyncReason::EveryTick => "every tick",
            SyncReason::FirstSync => "first sync of this process",
            SyncReason::Requested => "run --once syncs always",
            SyncReason::IntervalPassed => "sync interval passed",
            SyncReason::ChangesInProgress => "the director's tasks changed",
            SyncReason::Reused => "within the sync interval",
        }
    }
}

/// When each VM source last synced, in this process's memory: a new process, and an instance
/// that has just become leader (the other may have synced since), sync at their first tick, so
/// no `fail` decision is taken on `vms` rows this process has not refreshed.
#[derive(Debug, Default)]
pub struct SyncClock {
    always: bool,
    sources: Mutex<HashMap<&'static str, SourceClock>>,
}

#[derive(Clone, Debug, Default)]
struct SourceClock {
    synced_at: Option<Instant>,
    /// the changes in progress seen at the last tick that could ask (task ids)
    changes: Option<BTreeSet<(String, i64)>>,
}

impl SyncClock {
    /// Fetches every source at every tick, whatever its interval (`run --once`).
    pub fn always() -> Self {
        SyncClock {
            always: true,
            ..Default::default()
        }
    }

    /// Forgets every sync: the next tick fetches (after losing the leader lock).
    pub fn forget(&self) {
        if let Ok(mut m) = self.sources.lock() {
            m.clear();
        }
    }

    fn get(&self, name: &'static str) -> SourceClock {
        self.sources
            .lock()
            .map(|m| m.get(name).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    fn update(&self, name: &'static str, f: impl FnOnce(&mut SourceClock)) {
        if let Ok(mut m) = self.sources.lock() {
            f(m.entry(name).or_default());
        }
    }
}

/// Whether a source's snapshot is fetched this tick, and why.
fn due(
    always: bool,
    clock: &SourceClock,
    interval: Duration,
    changed: bool,
    now: Instant,
) -> SyncReason {
    let Some(at) = clock.synced_at else {
        return if always {
            SyncReason::Requested
        } else {
            SyncReason::FirstSync
        };
    };
    if always {
        SyncReason::Requested
    } else if interval.is_zero() {
        SyncReason::EveryTick
    } else if changed {
        SyncReason::ChangesInProgress
    } else if now.saturating_duration_since(at) >= interval {
        SyncReason::IntervalPassed
    } else {
        SyncReason::Reused
    }
}

/// Syncs every source that is due (see [`SyncClock`]); `fence` is the lease a write must hold
/// (an error once it is lost).
#[allow(clippy::too_many_arguments)]
pub async fn sync(
    pool: &MySqlPool,
    settings: &Settings,
    sources: &[(&'static str, Arc<dyn VmSource>)],
    clock: &SyncClock,
    now: Timestamp,
    dry_run: bool,
    step_timeout: Duration,
    fence: &(dyn Fn() -> anyhow::Result<Option<Fence>> + Sync),
) -> InventoryReport {
    let mut report = InventoryReport::default();
    let inv_timeout = Duration::from_secs(settings.batch.inventory_timeout_seconds.max(1));
    for (name, inv) in sources {
        let ctx = SyncContext { now };
        // the changes first: one that started or ended makes the inventory due
        let mut changed = false;
        if settings.alarms.maintenance_from_bosh
            && let Some(tasks) = record_changes_in_progress(
                pool,
                name,
                inv.as_ref(),
                &ctx,
                now,
                dry_run,
                inv_timeout,
            )
            .await
        {
            let seen: BTreeSet<(String, i64)> = tasks
                .iter()
                .map(|t| (t.deployment.clone(), t.task_id))
                .collect();
            clock.update(name, |c| {
                changed = c.changes.as_ref().is_some_and(|before| *before != seen);
                c.changes = Some(seen);
            });
        }
        let interval = inv.sync_interval();
        let before = clock.get(name);
        let reason = due(clock.always, &before, interval, changed, Instant::now());
        let mut outcome = SyncOutcome {
            fetched: reason != SyncReason::Reused,
            reason,
            age_seconds: before.synced_at.map(|t| t.elapsed().as_secs()),
            interval_seconds: interval.as_secs(),
        };
        if !outcome.fetched {
            report.cadence.insert(name.to_string(), outcome);
            continue;
        }
        let fetched_at = Instant::now();
        let fetched = guarded("inventory", name, inv_timeout, inv.fetch(&ctx)).await;
        let ok = match fetched {
            Ok(snapshot) if dry_run => {
                report.planned.push(format!(
                    "inventory/{}: would sync {} VMs",
                    name,
                    snapshot.vms.len()
                ));
                true
            }
            Ok(snapshot) => {
                match guarded("inventory", name, step_timeout, async {
                    vms::apply_snapshot_fenced(
                        pool,
                        &snapshot,
                        vms::Removal::after_minutes(now, settings.batch.vm_removal_grace_minutes)
                            .noting_times_at(settings.alarms.display_offset()),
                        fence()?.as_ref(),
                    )
                    .await
                })
                .await
                {
                    Ok(ch) => {
                        report.synced.insert(name.to_string(), ch);
                        if let Err(e) = maintenance::record_vm_deployments(pool, &snapshot).await {
                            report.errors.push(format!("inventory/{}: {e:#}", *name));
                        }
                        true
                    }
                    Err(e) => {
                        report.errors.push(e);
                        false
                    }
                }
            }
            Err(e) => {
                report.errors.push(e);
                false
            }
        };
        // only a sync that landed restarts the interval: a failed one is tried again next tick
        if ok {
            clock.update(name, |c| c.synced_at = Some(fetched_at));
            outcome.age_seconds = Some(0);
        }
        report.cadence.insert(name.to_string(), outcome);
    }
    report
}

/// Asks the platform what it is changing (BOSH tasks) and records the deployments under
/// maintenance. A platform that cannot answer changes nothing: logged, not a tick error.
async fn record_changes_in_progress(
    pool: &MySqlPool,
    name: &'static str,
    inv: &dyn VmSource,
    ctx: &SyncContext,
    now: Timestamp,
    dry_run: bool,
    timeout: Duration,
) -> Option<Vec<ChangeInProgress>> {
    match guarded("maintenance", name, timeout, inv.changes_in_progress(ctx)).await {
        Ok(None) => None,
        Ok(Some(tasks)) if dry_run => {
            for t in &tasks {
                tracing::info!(deployment = %crate::config::visible::escape(&t.deployment), task = t.task_id, "would hold back alarms: director task in progress");
            }
            Some(tasks)
        }
        Ok(Some(tasks)) => {
            for t in &tasks {
                tracing::info!(deployment = %crate::config::visible::escape(&t.deployment), task = t.task_id, description = %crate::config::visible::escape(&t.description), "director task in progress: the deployment is under maintenance (alarms held up to alarms.maintenance_max_hours)");
            }
            if let Err(e) = maintenance::record_tasks(pool, &tasks, now).await {
                tracing::warn!("maintenance/{name}: {e:#}");
            }
            Some(tasks)
        }
        Err(e) => {
            tracing::warn!(
                "maintenance/{name}: the director's tasks are unknown this tick, maintenance unchanged: {e}"
            );
            None
        }
    }
}
