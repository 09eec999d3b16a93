//! Writes the platform's VM list (an [`InventorySnapshot`]) into `zones` and `vms`.
//!
//! The original deleted and re-inserted rows, and wiped both tables on any BOSH error, so VMs
//! came back with new ids and open alarms lost their target (defects D9, D15). Here a sync is an
//! upsert in one transaction: a VM keeps its id as long as its name is reported, and nothing is
//! written unless the whole snapshot is sound.

use crate::plugin::{InventorySnapshot, ReportedVm};
use anyhow::{Context as _, bail};
use sqlx::{MySql, MySqlPool, Transaction};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

/// Zone of a VM whose snapshot entry names none.
pub const DEFAULT_ZONE: &str = "default";

/// What one sync changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InventoryChanges {
    pub zones_added: u32,
    pub zones_removed: u32,
    pub vms_added: u32,
    pub vms_updated: u32,
    pub vms_removed: u32,
}

#[derive(sqlx::FromRow)]
struct ZoneRow {
    id: i64,
    name: String,
}

#[derive(sqlx::FromRow)]
struct VmRow {
    id: i64,
    zone_id: i64,
    name: String,
    ip: String,
    vm_type: String,
}

fn vm_type(vm: &ReportedVm) -> &'static str {
    if vm.is_cell { "cel" } else { "vms" }
}

fn zone_of(vm: &ReportedVm) -> &str {
    let zone = vm.zone.trim();
    if zone.is_empty() { DEFAULT_ZONE } else { zone }
}

/// Refuses a snapshot the tables cannot hold, or one that would wipe the inventory.
fn validate(snapshot: &InventorySnapshot) -> anyhow::Result<()> {
    if snapshot.vms.is_empty() {
        // An answer with no VM at all is far likelier a broken director or a wrong deployment
        // name than a platform without VMs; applying it would delete every vms row and detach
        // every open alarm.
        bail!(
            "refusing an empty VM inventory: the platform reported no VM for the configured \
             deployments; zones and vms are left unchanged"
        );
    }
    let mut names = HashSet::new();
    let mut ips = HashMap::new();
    for vm in &snapshot.vms {
        if vm.name.trim().is_empty() || vm.name.chars().count() > 200 {
            bail!(
                "VM inventory: VM name {:?} is empty or longer than 200 characters (vms.name)",
                vm.name
            );
        }
        if zone_of(vm).chars().count() > 200 {
            bail!(
                "VM inventory: zone {:?} of VM {} is longer than 200 characters (zones.name)",
                vm.zone,
                vm.name
            );
        }
        if vm.ip.parse::<Ipv4Addr>().is_err() {
            bail!(
                "VM inventory: VM {} has IP {:?}, not an IPv4 address (vms.ip holds IPv4 only)",
                vm.name,
                vm.ip
            );
        }
        if !names.insert(vm.name.as_str()) {
            bail!("VM inventory: VM name {} is reported twice", vm.name);
        }
        if let Some(other) = ips.insert(vm.ip.as_str(), vm.name.as_str()) {
            bail!(
                "VM inventory: VMs {other} and {} both report IP {} (vms.ip is unique)",
                vm.name,
                vm.ip
            );
        }
    }
    Ok(())
}

/// Upserts the snapshot: a VM keeps its id across syncs (matched by name), VMs absent from the
/// snapshot are removed, zones no VM references any more are removed, all in one transaction.
///
/// - A missing zone is inserted; a VM with an empty zone goes to zone [`DEFAULT_ZONE`].
/// - A known VM whose ip, zone or type changed is updated in place (`modi_user = 'batch'`,
///   `modi_date` = now, UTC).
/// - Rows sharing a name (left by the original's races) collapse to the lowest id.
/// - An empty snapshot is refused (an error, nothing written): see [`validate`].
/// - Any error rolls the whole sync back.
pub async fn apply_snapshot(
    pool: &MySqlPool,
    snapshot: &InventorySnapshot,
) -> anyhow::Result<InventoryChanges> {
    validate(snapshot)?;
    let mut tx = pool
        .begin()
        .await
        .context("VM inventory: starting a Monitoring DB transaction")?;
    let changes = apply_in(&mut tx, snapshot).await?;
    tx.commit()
        .await
        .context("VM inventory: committing the sync to the Monitoring DB")?;
    Ok(changes)
}

async fn apply_in(
    tx: &mut Transaction<'static, MySql>,
    snapshot: &InventorySnapshot,
) -> anyhow::Result<InventoryChanges> {
    let now = chrono::Utc::now().naive_utc();
    let mut changes = InventoryChanges::default();

    // FOR UPDATE: a second instance syncing at the same moment waits instead of interleaving.
    let zones: Vec<ZoneRow> =
        sqlx::query_as("SELECT CAST(id AS SIGNED) AS id, name FROM zones ORDER BY id FOR UPDATE")
            .fetch_all(&mut **tx)
            .await
            .context("VM inventory: reading zones")?;
    let rows: Vec<VmRow> = sqlx::query_as(
        "SELECT CAST(id AS SIGNED) AS id, CAST(zone_id AS SIGNED) AS zone_id, name, ip, vm_type \
         FROM vms ORDER BY id FOR UPDATE",
    )
    .fetch_all(&mut **tx)
    .await
    .context("VM inventory: reading vms")?;

    let mut zone_ids: HashMap<String, i64> = HashMap::new();
    for z in zones {
        zone_ids.entry(z.name).or_insert(z.id);
    }
    for vm in &snapshot.vms {
        let zone = zone_of(vm);
        if zone_ids.contains_key(zone) {
            continue;
        }
        let done = sqlx::query("INSERT INTO zones (name, reg_date, modi_date) VALUES (?, ?, ?)")
            .bind(zone)
            .bind(now)
            .bind(now)
            .execute(&mut **tx)
            .await
            .with_context(|| format!("VM inventory: inserting zone {zone:?}"))?;
        let id = i64::try_from(done.last_insert_id())
            .with_context(|| format!("VM inventory: id of the new zone {zone:?}"))?;
        zone_ids.insert(zone.to_string(), id);
        changes.zones_added += 1;
    }

    let wanted: HashMap<&str, &ReportedVm> = snapshot
        .vms
        .iter()
        .map(|vm| (vm.name.as_str(), vm))
        .collect();
    let mut kept: HashMap<&str, &VmRow> = HashMap::new();
    let mut gone: Vec<&VmRow> = Vec::new();
    for row in &rows {
        if wanted.contains_key(row.name.as_str()) && !kept.contains_key(row.name.as_str()) {
            kept.insert(row.name.as_str(), row);
        } else {
            gone.push(row);
        }
    }

    // Deletes first: the IP of a removed VM may belong to a new or moved one in this snapshot.
    for row in &gone {
        sqlx::query("DELETE FROM vms WHERE id = ?")
            .bind(row.id)
            .execute(&mut **tx)
            .await
            .with_context(|| format!("VM inventory: deleting VM {} (id {})", row.name, row.id))?;
        changes.vms_removed += 1;
    }

    // Two kept VMs may swap IPs, which the unique ip index forbids one row at a time: park every
    // changing IP on a placeholder (`#<id>`, never an IPv4 address) before setting the new ones.
    let moving: Vec<&VmRow> = kept
        .values()
        .filter(|row| row.ip != wanted[row.name.as_str()].ip)
        .copied()
        .collect();
    for row in &moving {
        sqlx::query("UPDATE vms SET ip = ? WHERE id = ?")
            .bind(format!("#{}", row.id))
            .bind(row.id)
            .execute(&mut **tx)
            .await
            .with_context(|| format!("VM inventory: releasing the old IP of VM {}", row.name))?;
    }

    let mut kept_rows: Vec<&VmRow> = kept.values().copied().collect();
    kept_rows.sort_by_key(|row| row.id);
    for row in kept_rows {
        let vm = wanted[row.name.as_str()];
        let zone_id = zone_ids[zone_of(vm)];
        if row.ip == vm.ip && row.zone_id == zone_id && row.vm_type == vm_type(vm) {
            continue;
        }
        sqlx::query(
            "UPDATE vms SET ip = ?, zone_id = ?, vm_type = ?, modi_date = ?, modi_user = 'batch' \
             WHERE id = ?",
        )
        .bind(&vm.ip)
        .bind(zone_id)
        .bind(vm_type(vm))
        .bind(now)
        .bind(row.id)
        .execute(&mut **tx)
        .await
        .with_context(|| format!("VM inventory: updating VM {} (id {})", row.name, row.id))?;
        changes.vms_updated += 1;
    }

    for vm in &snapshot.vms {
        if kept.contains_key(vm.name.as_str()) {
            continue;
        }
        sqlx::query(
            "INSERT INTO vms (zone_id, name, ip, vm_type, reg_date, modi_date) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(zone_ids[zone_of(vm)])
        .bind(&vm.name)
        .bind(&vm.ip)
        .bind(vm_type(vm))
        .bind(now)
        .bind(now)
        .execute(&mut **tx)
        .await
        .with_context(|| format!("VM inventory: inserting VM {} ({})", vm.name, vm.ip))?;
        changes.vms_added += 1;
    }

    let done = sqlx::query(
        "DELETE FROM zones WHERE NOT EXISTS (SELECT 1 FROM vms WHERE vms.zone_id = zones.id)",
    )
    .execute(&mut **tx)
    .await
    .context("VM inventory: deleting zones without VMs")?;
    changes.zones_removed = u32::try_from(done.rows_affected()).unwrap_or(u32::MAX);

    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, ip: &str) -> ReportedVm {
        ReportedVm {
            name: name.into(),
            ip: ip.into(),
            zone: "z1".into(),
            is_cell: false,
        }
    }

    #[test]
    fn validation_refuses_what_the_tables_cannot_hold() {
        let snap = |vms: Vec<ReportedVm>| InventorySnapshot { vms };
        assert!(
            validate(&snap(vec![]))
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        assert!(
            validate(&snap(vec![vm("a/0", "10.0.0.1"), vm("a/0", "10.0.0.2")]))
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(
            validate(&snap(vec![vm("a/0", "10.0.0.1"), vm("b/0", "10.0.0.1")]))
                .unwrap_err()
                .to_string()
                .contains("both report IP")
        );
        assert!(
            validate(&snap(vec![vm("a/0", "fd00::1")]))
                .unwrap_err()
                .to_string()
                .contains("IPv4")
        );
        validate(&snap(vec![vm("a/0", "10.0.0.1"), vm("b/0", "10.0.0.2")])).unwrap();
    }

    #[test]
    fn an_empty_zone_is_the_default_zone() {
        let mut v = vm("a/0", "10.0.0.1");
        v.zone = " ".into();
        assert_eq!(zone_of(&v), DEFAULT_ZONE);
    }
}
