//! Writes the platform's VM list (an [`InventorySnapshot`]) into `zones` and `vms`.

use crate::plugin::InventorySnapshot;
use sqlx::MySqlPool;

/// What one sync changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InventoryChanges {
    pub zones_added: u32,
    pub vms_added: u32,
    pub vms_updated: u32,
    pub vms_removed: u32,
}

/// Upserts the snapshot: a VM keeps its id across syncs (matched by name), VMs absent from the
/// snapshot are removed, all in one transaction.
pub async fn apply_snapshot(
    _pool: &MySqlPool,
    _snapshot: &InventorySnapshot,
) -> anyhow::Result<InventoryChanges> {
    anyhow::bail!("inventory sync is being written (issue 4)")
}
