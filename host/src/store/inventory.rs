//! The first pass of a tick: each VM source's snapshot (the BOSH director's VMs) synced into
//! `vms`, a VM missing from it kept for `batch.vm_removal_grace_minutes`, and the deployments
//! the director is changing recorded as under maintenance. A source that cannot answer changes
//! nothing; every write is fenced by the leader's lease.

use crate::config::Settings;
use crate::hold::maintenance;
use crate::model::Timestamp;
use crate::plugin::{SyncContext, VmSource, guarded};
use crate::store::leader::Fence;
use crate::store::vms::{self, InventoryChanges};
use sqlx::MySqlPool;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What the inventory pass did, for the tick summary.
#[derive(Debug, Default)]
pub struct InventoryReport {
    /// per VM source
    pub synced: BTreeMap<String, InventoryChanges>,
    /// in a dry run: what would have been written
    pub planned: Vec<String>,
    pub errors: Vec<String>,
}

/// Syncs every source; `fence` is the lease a write must hold (an error once it is lost).
pub async fn sync(
    pool: &MySqlPool,
    settings: &Settings,
    sources: &[(&'static str, Arc<dyn VmSource>)],
    now: Timestamp,
    dry_run: bool,
    step_timeout: Duration,
    fence: &(dyn Fn() -> anyhow::Result<Option<Fence>> + Sync),
) -> InventoryReport {
    let mut report = InventoryReport::default();
    let inv_timeout = Duration::from_secs(settings.batch.inventory_timeout_seconds.max(1));
    for (name, inv) in sources {
        let ctx = SyncContext { now };
        let fetched = guarded("inventory", name, inv_timeout, inv.fetch(&ctx)).await;
        match fetched {
            Ok(snapshot) if dry_run => report.planned.push(format!(
                "inventory/{}: would sync {} VMs",
                name,
                snapshot.vms.len()
            )),
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
                    }
                    Err(e) => report.errors.push(e),
                }
            }
            Err(e) => report.errors.push(e),
        }
        if settings.alarms.maintenance_from_bosh {
            record_changes_in_progress(pool, name, inv.as_ref(), &ctx, now, dry_run, inv_timeout)
                .await;
        }
    }
    report
}

/// Asks the platform what it is changing (BOSH tasks) and records the deployments under
/// maintenance. A platform that cannot answer changes nothing: logged, not a tick error.
async fn record_changes_in_progress(
    pool: &MySqlPool,
    name: &'static str,
    inv: &dyn crate::plugin::VmSource,
    ctx: &SyncContext,
    now: Timestamp,
    dry_run: bool,
    timeout: Duration,
) {
    match guarded("maintenance", name, timeout, inv.changes_in_progress(ctx)).await {
        Ok(None) => {}
        Ok(Some(tasks)) if dry_run => {
            for t in tasks {
                tracing::info!(deployment = %crate::config::visible::escape(&t.deployment), task = t.task_id, "would hold back alarms: director task in progress");
            }
        }
        Ok(Some(tasks)) => {
            for t in &tasks {
                tracing::info!(deployment = %crate::config::visible::escape(&t.deployment), task = t.task_id, description = %crate::config::visible::escape(&t.description), "director task in progress: the deployment is under maintenance (alarms held up to alarms.maintenance_max_hours)");
            }
            if let Err(e) = maintenance::record_tasks(pool, &tasks, now).await {
                tracing::warn!("maintenance/{name}: {e:#}");
            }
        }
        Err(e) => tracing::warn!(
            "maintenance/{name}: the director's tasks are unknown this tick, maintenance unchanged: {e}"
        ),
    }
}
