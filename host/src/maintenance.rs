//! Maintenance from the platform: while the BOSH director runs a task that changes a
//! deployment's VMs (deploy, recreate, stop, start, restart), their alarms are recorded but not
//! notified, for the task and `alarms.maintenance_grace_minutes` after it was last seen. A
//! director that cannot answer changes nothing: what was recorded stands.

use crate::model::Timestamp;
use crate::plugin::{ChangeInProgress, InventorySnapshot};
use anyhow::Context as _;
use sqlx::{MySqlPool, QueryBuilder, Row};
use std::collections::{HashMap, HashSet};

/// Records the deployments a task is running on now.
pub async fn record_tasks(
    pool: &MySqlPool,
    tasks: &[ChangeInProgress],
    now: Timestamp,
) -> anyhow::Result<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::new(
        "INSERT INTO batch_maintenance (deployment, task_id, description, first_seen_at, last_seen_at) ",
    );
    q.push_values(tasks, |mut b, t| {
        b.push_bind(t.deployment.chars().take(200).collect::<String>())
            .push_bind(t.task_id)
            .push_bind(t.description.chars().take(500).collect::<String>())
            .push_bind(now)
            .push_bind(now);
    });
    q.push(
        " ON DUPLICATE KEY UPDATE task_id = VALUES(task_id), description = VALUES(description), \
         last_seen_at = VALUES(last_seen_at)",
    );
    q.build()
        .execute(pool)
        .await
        .context("recording BOSH tasks in batch_maintenance")?;
    Ok(())
}

/// The deployments under maintenance at `now` (a task seen within the grace); older rows are
/// deleted.
pub async fn active(
    pool: &MySqlPool,
    now: Timestamp,
    grace_minutes: u64,
) -> anyhow::Result<HashSet<String>> {
    // `last_seen_at` holds whole seconds (rounded or truncated by the server): a second of
    // slack, so a task seen in this very tick counts with a grace of 0.
    let since = now
        - chrono::Duration::minutes(grace_minutes.min(7 * 24 * 60) as i64)
        - chrono::Duration::seconds(1);
    sqlx::query("DELETE FROM batch_maintenance WHERE last_seen_at < ?")
        .bind(since)
        .execute(pool)
        .await
        .context("pruning batch_maintenance")?;
    let rows = sqlx::query("SELECT deployment FROM batch_maintenance")
        .fetch_all(pool)
        .await
        .context("reading batch_maintenance")?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("deployment").map_err(Into::into))
        .collect()
}

/// Remembers each VM's deployment from a complete inventory snapshot.
pub async fn record_vm_deployments(
    pool: &MySqlPool,
    snapshot: &InventorySnapshot,
) -> anyhow::Result<()> {
    let known: Vec<(&str, &str)> = snapshot
        .vms
        .iter()
        .filter(|v| !v.deployment.is_empty())
        .map(|v| (v.name.as_str(), v.deployment.as_str()))
        .collect();
    if known.is_empty() {
        return Ok(());
    }
    let mut tx = pool
        .begin()
        .await
        .context("starting the VM deployment update")?;
    sqlx::query("DELETE FROM batch_vm_deployment")
        .execute(&mut *tx)
        .await
        .context("clearing batch_vm_deployment")?;
    for chunk in known.chunks(500) {
        let mut q = QueryBuilder::new("INSERT INTO batch_vm_deployment (vm_name, deployment) ");
        q.push_values(chunk, |mut b, (name, deployment)| {
            b.push_bind(name.chars().take(200).collect::<String>())
                .push_bind(deployment.chars().take(200).collect::<String>());
        });
        q.push(" ON DUPLICATE KEY UPDATE deployment = VALUES(deployment)");
        q.build()
            .execute(&mut *tx)
            .await
            .context("writing batch_vm_deployment")?;
    }
    tx.commit()
        .await
        .context("committing batch_vm_deployment")?;
    Ok(())
}

/// VM name -> deployment, as last reported.
pub async fn vm_deployments(pool: &MySqlPool) -> anyhow::Result<HashMap<String, String>> {
    let rows = sqlx::query("SELECT vm_name, deployment FROM batch_vm_deployment")
        .fetch_all(pool)
        .await
        .context("reading batch_vm_deployment")?;
    rows.iter()
        .map(|r| Ok((r.try_get("vm_name")?, r.try_get("deployment")?)))
        .collect()
}
