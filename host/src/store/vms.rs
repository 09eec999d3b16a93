//! Writes the platform's VM list (an [`InventorySnapshot`]) into `zones` and `vms`.
//!
//! The original deleted and re-inserted rows, and wiped both tables on any BOSH error, so VMs
//! came back with new ids and open alarms lost their target (defects D9, D15). Here a sync is an
//! upsert in one transaction: a VM keeps its id as long as its name is reported, and nothing is
//! written unless the whole snapshot is sound.
//!
//! A VM missing from a snapshot is not deleted at once: it stays in `vms` with its id for a
//! grace period (`batch.vm_removal_grace_minutes`, tracked in `batch_vm_absence`), so one
//! incomplete director answer neither gives it a new id nor strands its open alarm. A VM removed
//! for good has its open alarms closed with an `alarm_actions` note saying why.

use crate::model::{BOSH_ORIGIN_ID, Timestamp, Vm};
use crate::plugin::{InventorySnapshot, ReportedVm};
use anyhow::{Context as _, bail};
use sqlx::{MySql, MySqlPool, QueryBuilder, Transaction};
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
    /// VMs missing from this snapshot but kept, within their removal grace
    pub vms_absent: u32,
    /// open alarms closed because their VM left the inventory
    pub alarms_closed: u32,
}

/// When a VM missing from the snapshot leaves `vms`.
#[derive(Clone, Copy, Debug)]
pub struct Removal {
    /// time of the sync: start of an absence, end of a grace, row dates
    pub now: Timestamp,
    /// how long a VM may be missing before it is removed; zero removes it at once
    pub grace: chrono::Duration,
    /// offset of the times in the `alarm_actions` notes it writes (`alarms.display_utc_offset_hours`)
    pub display_offset: chrono::FixedOffset,
}

impl Removal {
    /// Absent VMs are removed in the sync that misses them (the behaviour before the grace).
    pub fn at_once(now: Timestamp) -> Self {
        Self {
            now,
            grace: chrono::Duration::zero(),
            display_offset: chrono::Offset::fix(&chrono::Utc),
        }
    }

    /// Absent VMs are removed once missing for `minutes` (range-checked at config load;
    /// saturates rather than overflows).
    pub fn after_minutes(now: Timestamp, minutes: u64) -> Self {
        let grace = i64::try_from(minutes)
            .ok()
            .and_then(chrono::Duration::try_minutes)
            .unwrap_or(chrono::Duration::MAX);
        Self {
            now,
            grace,
            display_offset: chrono::Offset::fix(&chrono::Utc),
        }
    }

    /// Notes state their times at `offset` (UTC unless set).
    pub fn noting_times_at(self, offset: chrono::FixedOffset) -> Self {
        Self {
            display_offset: offset,
            ..self
        }
    }

    /// An absence that started at `since` has run out its grace.
    fn expired(&self, since: Timestamp) -> bool {
        self.now.signed_duration_since(since) >= self.grace
    }
}

#[derive(sqlx::FromRow)]
struct ZoneRow {
    id: i64,
    name: String,
}

#[derive(sqlx::FromRow)]
struct AbsenceRow {
    vm_id: i64,
    first_missing_at: chrono::NaiveDateTime,
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
/// snapshot are removed once their grace has run out, zones no VM references any more are
/// removed, all in one transaction.
///
/// - A VM missing from the snapshot keeps its row (and id) until it has been missing for
///   `removal.grace`; reported again within it, it is simply kept. It is removed at once when
///   the grace is zero or when the snapshot gives its IP to another VM (the address was reused,
///   so that VM is gone).
/// - A removed VM's open `pas` alarms (and `bos` ones naming its id) are closed (resolve_status
///   3, `system`) with an `alarm_actions` note; so are open ones whose VM is no longer in `vms`
///   at all (left by older runs or deleted by hand).
/// - A missing zone is inserted; a VM with an empty zone goes to zone [`DEFAULT_ZONE`].
/// - A known VM whose ip, zone or type changed is updated in place (`modi_user = 'batch'`,
///   `modi_date` = now, UTC).
/// - Rows sharing a name (left by the original's races) collapse to the lowest id.
/// - An empty snapshot is refused (an error, nothing written): see [`validate`].
/// - Any error rolls the whole sync back.
pub async fn apply_snapshot(
    pool: &MySqlPool,
    snapshot: &InventorySnapshot,
    removal: Removal,
) -> anyhow::Result<InventoryChanges> {
    apply_snapshot_fenced(pool, snapshot, removal, None).await
}

/// [`apply_snapshot`], refused when `fence` says another instance took the leader lock.
pub async fn apply_snapshot_fenced(
    pool: &MySqlPool,
    snapshot: &InventorySnapshot,
    removal: Removal,
    fence: Option<&crate::store::leader::Fence>,
) -> anyhow::Result<InventoryChanges> {
    validate(snapshot)?;
    let mut tx = pool
        .begin()
        .await
        .context("VM inventory: starting a Monitoring DB transaction")?;
    if let Some(fence) = fence {
        fence.check(&mut tx).await?;
    }
    let changes = apply_in(&mut tx, snapshot, removal).await?;
    tx.commit()
        .await
        .context("VM inventory: committing the sync to the Monitoring DB")?;
    Ok(changes)
}

async fn apply_in(
    tx: &mut Transaction<'static, MySql>,
    snapshot: &InventorySnapshot,
    removal: Removal,
) -> anyhow::Result<InventoryChanges> {
    let now = removal.now.naive_utc();
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
    let absent_since: HashMap<i64, Timestamp> = sqlx::query_as::<_, AbsenceRow>(
        "SELECT CAST(vm_id AS SIGNED) AS vm_id, first_missing_at FROM batch_vm_absence FOR UPDATE",
    )
    .fetch_all(&mut **tx)
    .await
    .context("VM inventory: reading batch_vm_absence")?
    .into_iter()
    .map(|a| (a.vm_id, a.first_missing_at.and_utc()))
    .collect();

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
    let reported_ips: HashSet<&str> = snapshot.vms.iter().map(|vm| vm.ip.as_str()).collect();
    let mut kept: HashMap<&str, &VmRow> = HashMap::new();
    let mut gone: Vec<(&VmRow, String)> = Vec::new();
    let mut absent: Vec<&VmRow> = Vec::new();
    for row in &rows {
        let name = row.name.as_str();
        if wanted.contains_key(name) {
            if kept.contains_key(name) {
                gone.push((
                    row,
                    format!(
                        "VM {name} (id {}) removed from the inventory: a duplicate row of a VM \
                         that keeps id {}; alarm closed by the batch",
                        row.id, kept[name].id
                    ),
                ));
            } else {
                kept.insert(name, row);
            }
            continue;
        }
        let since = absent_since.get(&row.id).copied().unwrap_or(removal.now);
        let why = if removal.grace.is_zero() {
            Some("no longer in the BOSH inventory".to_string())
        } else if reported_ips.contains(row.ip.as_str()) {
            Some(format!(
                "no longer in the BOSH inventory, its IP {} now belongs to another VM",
                row.ip
            ))
        } else if removal.expired(since) {
            Some(format!(
                "missing from the BOSH inventory since {} (longer than the removal grace)",
                crate::evaluate::alarm_text::display_time(since, removal.display_offset)
            ))
        } else {
            None
        };
        match why {
            Some(why) => gone.push((
                row,
                format!(
                    "VM {name} removed from the BOSH inventory: {why}; alarm closed by the batch"
                ),
            )),
            None => absent.push(row),
        }
    }

    // Deletes first: the IP of a removed VM may belong to a new or moved one in this snapshot.
    for (row, note) in &gone {
        sqlx::query("DELETE FROM vms WHERE id = ?")
            .bind(row.id)
            .execute(&mut **tx)
            .await
            .with_context(|| format!("VM inventory: deleting VM {} (id {})", row.name, row.id))?;
        changes.vms_removed += 1;
        changes.alarms_closed += close_alarms_of(tx, row.id, note, removal.now).await?;
    }

    // Absences: a VM missing within its grace is kept and its absence recorded once (the first
    // sync that missed it starts the clock); every other absence row (the VM is reported again,
    // or was removed) is cleared.
    let mut q = QueryBuilder::<MySql>::new("DELETE FROM batch_vm_absence");
    if !absent.is_empty() {
        q.push(" WHERE vm_id NOT IN (");
        let mut sep = q.separated(", ");
        for row in &absent {
            sep.push_bind(row.id);
        }
        q.push(")");
    }
    q.build()
        .execute(&mut **tx)
        .await
        .context("VM inventory: clearing batch_vm_absence")?;
    for row in &absent {
        sqlx::query(
            "INSERT IGNORE INTO batch_vm_absence (vm_id, name, first_missing_at) VALUES (?, ?, ?)",
        )
        .bind(row.id)
        .bind(&row.name)
        .bind(now)
        .execute(&mut **tx)
        .await
        .with_context(|| {
            format!(
                "VM inventory: recording the absence of VM {} (id {})",
                row.name, row.id
            )
        })?;
        match absent_since.get(&row.id) {
            Some(since) => tracing::debug!(
                vm = %row.name,
                vm_id = row.id,
                missing_since = %since,
                "VM still missing from the BOSH inventory, within its removal grace"
            ),
            None => tracing::warn!(
                vm = %row.name,
                vm_id = row.id,
                "VM missing from the BOSH inventory; kept (same id, alarms untouched) until it \
                 has been missing for batch.vm_removal_grace_minutes"
            ),
        }
    }
    changes.vms_absent = u32::try_from(absent.len()).unwrap_or(u32::MAX);

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

    changes.alarms_closed += close_orphaned_alarms(tx, removal.now).await?;
    Ok(changes)
}

/// Open alarms whose `origin_id` names a VM: `pas` ones, and `bos` ones unless they carry the
/// director's constant id. `origin_id` 0 is the metrics-pipeline alarm, which names no VM.
const VM_ALARMS: &str = "resolve_status IN ('1', '2') AND origin_id <> 0 \
     AND (origin_type = 'pas' OR (origin_type = 'bos' AND origin_id <> ?))";

/// Closes the open alarms of VM `vm_id` with `note` in `alarm_actions`; returns how many.
async fn close_alarms_of(
    tx: &mut Transaction<'static, MySql>,
    vm_id: i64,
    note: &str,
    now: Timestamp,
) -> anyhow::Result<u32> {
    let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(id AS SIGNED) FROM alarms WHERE {VM_ALARMS} AND origin_id = ? FOR UPDATE"
    )))
    .bind(BOSH_ORIGIN_ID)
    .bind(vm_id)
    .fetch_all(&mut **tx)
    .await
    .with_context(|| format!("VM inventory: reading the open alarms of VM id {vm_id}"))?;
    close_alarms(
        tx,
        &ids.iter().map(|id| (*id, note)).collect::<Vec<_>>(),
        now,
    )
    .await
}

/// Closes open VM alarms whose VM is no longer in `vms` at all: left by older runs (which
/// deleted VMs without closing their alarms) or by a row deleted by hand.
async fn close_orphaned_alarms(
    tx: &mut Transaction<'static, MySql>,
    now: Timestamp,
) -> anyhow::Result<u32> {
    let orphans: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(id AS SIGNED), CAST(origin_id AS SIGNED) FROM alarms WHERE {VM_ALARMS} \
         AND NOT EXISTS (SELECT 1 FROM vms WHERE vms.id = alarms.origin_id) FOR UPDATE"
    )))
    .bind(BOSH_ORIGIN_ID)
    .fetch_all(&mut **tx)
    .await
    .context("VM inventory: reading open alarms of VMs no longer in vms")?;
    let notes: Vec<(i64, String)> = orphans
        .iter()
        .map(|(id, vm_id)| {
            (
                *id,
                format!(
                    "VM id {vm_id} is no longer in the inventory (removed from the BOSH \
                     inventory); alarm closed by the batch"
                ),
            )
        })
        .collect();
    let notes: Vec<(i64, &str)> = notes.iter().map(|(id, n)| (*id, n.as_str())).collect();
    close_alarms(tx, &notes, now).await
}

/// resolve_status 3 by `system`, and one `alarm_actions` row per alarm saying why.
async fn close_alarms(
    tx: &mut Transaction<'static, MySql>,
    alarms: &[(i64, &str)],
    now: Timestamp,
) -> anyhow::Result<u32> {
    if alarms.is_empty() {
        return Ok(0);
    }
    super::alarms::close_by_system(tx, alarms, now)
        .await
        .context("VM inventory: closing the alarms of removed VMs")?;
    for (id, note) in alarms {
        tracing::info!(alarm_id = id, "{note}");
    }
    Ok(u32::try_from(alarms.len()).unwrap_or(u32::MAX))
}

/// Ids of the VMs kept in `vms` while missing from the BOSH inventory (within their grace).
pub async fn absent_vm_ids(pool: &MySqlPool) -> anyhow::Result<HashSet<i64>> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT CAST(vm_id AS SIGNED) FROM batch_vm_absence")
        .fetch_all(pool)
        .await
        .context("reading batch_vm_absence")?;
    Ok(ids.into_iter().collect())
}

/// The `vms` inventory with zone names. LEFT JOIN: a VM whose zone is missing is still
/// monitored (the original's INNER JOIN dropped every cell after a zone_id of 0, defect D15).
pub async fn load_vms(pool: &MySqlPool) -> anyhow::Result<Vec<Vm>> {
    sqlx::query_as::<_, Vm>(
        "SELECT CAST(v.id AS SIGNED) AS id, CAST(v.zone_id AS SIGNED) AS zone_id, z.name AS zone_name, \
         v.name, v.ip, v.vm_type FROM vms v LEFT JOIN zones z ON z.id = v.zone_id ORDER BY v.id",
    )
    .fetch_all(pool)
    .await
    .context("reading vms")
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
            deployment: "cf".into(),
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
