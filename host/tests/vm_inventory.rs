//! `apply_snapshot` against a real MariaDB: each test gets a fresh, migrated database.

use monit_host::plugin::{InventorySnapshot, ReportedVm};
use monit_host::vm_inventory::{InventoryChanges, apply_snapshot};
use monit_testkit::TestDb;
use std::ops::Deref;

/// A migrated Monitoring DB of the test's own, with the queries the assertions read.
struct InventoryDb(TestDb);

impl Deref for InventoryDb {
    type Target = TestDb;
    fn deref(&self) -> &TestDb {
        &self.0
    }
}

impl InventoryDb {
    async fn new() -> Self {
        let db = TestDb::create("inv").await;
        monit_host::db::MIGRATOR.run(&db.pool).await.unwrap();
        Self(db)
    }

    async fn drop_db(self) {
        self.0.drop().await;
    }

    /// (id, name, ip, vm_type, zone name, modi_user) by name
    async fn vms(&self) -> Vec<(i64, String, String, String, Option<String>, Option<String>)> {
        sqlx::query_as(
            "SELECT CAST(v.id AS SIGNED), v.name, v.ip, v.vm_type, z.name, v.modi_user \
             FROM vms v LEFT JOIN zones z ON z.id = v.zone_id ORDER BY v.name",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    async fn zones(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT name FROM zones ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    async fn id_of(&self, name: &str) -> i64 {
        sqlx::query_scalar("SELECT CAST(id AS SIGNED) FROM vms WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

fn vm(name: &str, ip: &str, zone: &str, is_cell: bool) -> ReportedVm {
    ReportedVm {
        name: name.into(),
        ip: ip.into(),
        zone: zone.into(),
        is_cell,
    }
}

fn snap(vms: &[ReportedVm]) -> InventorySnapshot {
    InventorySnapshot { vms: vms.to_vec() }
}

#[tokio::test]
async fn first_sync_creates_zones_and_vms() {
    let db = InventoryDb::new().await;
    let changes = apply_snapshot(
        &db.pool,
        &snap(&[
            vm("cell_z1/0", "10.0.16.21", "z1", true),
            vm("router_z1/0", "10.0.16.5", "z1", false),
            vm("api_z2/0", "10.0.17.3", "z2", false),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(
        changes,
        InventoryChanges {
            zones_added: 2,
            vms_added: 3,
            ..Default::default()
        }
    );
    assert_eq!(db.zones().await, vec!["z1", "z2"]);
    let rows: Vec<_> = db
        .vms()
        .await
        .into_iter()
        .map(|(_, name, ip, t, zone, _)| (name, ip, t, zone.unwrap_or_default()))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "api_z2/0".into(),
                "10.0.17.3".into(),
                "vms".into(),
                "z2".into()
            ),
            (
                "cell_z1/0".into(),
                "10.0.16.21".into(),
                "cel".into(),
                "z1".into()
            ),
            (
                "router_z1/0".into(),
                "10.0.16.5".into(),
                "vms".into(),
                "z1".into()
            ),
        ]
    );
    // Same snapshot again: nothing to do.
    let again = apply_snapshot(
        &db.pool,
        &snap(&[
            vm("cell_z1/0", "10.0.16.21", "z1", true),
            vm("router_z1/0", "10.0.16.5", "z1", false),
            vm("api_z2/0", "10.0.17.3", "z2", false),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(again, InventoryChanges::default());
    db.drop_db().await;
}

#[tokio::test]
async fn a_vm_keeps_its_id_while_others_come_and_go() {
    let db = InventoryDb::new().await;
    apply_snapshot(
        &db.pool,
        &snap(&[
            vm("a/0", "10.0.0.1", "z1", false),
            vm("b/0", "10.0.0.2", "z1", false),
            vm("c/0", "10.0.0.3", "z2", true),
        ]),
    )
    .await
    .unwrap();
    let (a, c) = (db.id_of("a/0").await, db.id_of("c/0").await);

    // b gone, d new and taking b's IP in the same sync (delete before insert).
    let changes = apply_snapshot(
        &db.pool,
        &snap(&[
            vm("a/0", "10.0.0.1", "z1", false),
            vm("c/0", "10.0.0.3", "z2", true),
            vm("d/0", "10.0.0.2", "z3", false),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(
        changes,
        InventoryChanges {
            zones_added: 1,
            vms_added: 1,
            vms_removed: 1,
            ..Default::default()
        }
    );
    assert_eq!(db.id_of("a/0").await, a);
    assert_eq!(db.id_of("c/0").await, c);
    let names: Vec<String> = db.vms().await.into_iter().map(|r| r.1).collect();
    assert_eq!(names, vec!["a/0", "c/0", "d/0"]);
    assert_eq!(db.zones().await, vec!["z1", "z2", "z3"]);
    db.drop_db().await;
}

#[tokio::test]
async fn an_empty_snapshot_is_refused_and_nothing_changes() {
    let db = InventoryDb::new().await;
    apply_snapshot(&db.pool, &snap(&[vm("a/0", "10.0.0.1", "z1", false)]))
        .await
        .unwrap();
    let before = (db.vms().await, db.zones().await);
    let err = apply_snapshot(&db.pool, &snap(&[])).await.unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    assert_eq!((db.vms().await, db.zones().await), before);
    db.drop_db().await;
}

#[tokio::test]
async fn ip_zone_and_type_changes_update_in_place() {
    let db = InventoryDb::new().await;
    apply_snapshot(
        &db.pool,
        &snap(&[
            vm("a/0", "10.0.0.1", "z1", false),
            vm("b/0", "10.0.0.2", "z1", false),
            vm("c/0", "10.0.0.3", "z1", false),
        ]),
    )
    .await
    .unwrap();
    let ids = (
        db.id_of("a/0").await,
        db.id_of("b/0").await,
        db.id_of("c/0").await,
    );

    // a and b swap IPs (the unique ip index must not trip), c moves to z2 and becomes a cell.
    let changes = apply_snapshot(
        &db.pool,
        &snap(&[
            vm("a/0", "10.0.0.2", "z1", false),
            vm("b/0", "10.0.0.1", "z1", false),
            vm("c/0", "10.0.0.3", "z2", true),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(
        changes,
        InventoryChanges {
            zones_added: 1,
            vms_updated: 3,
            ..Default::default()
        }
    );
    assert_eq!(
        (
            db.id_of("a/0").await,
            db.id_of("b/0").await,
            db.id_of("c/0").await
        ),
        ids
    );
    let rows = db.vms().await;
    let row = |n: &str| rows.iter().find(|r| r.1 == n).unwrap().clone();
    assert_eq!(row("a/0").2, "10.0.0.2");
    assert_eq!(row("b/0").2, "10.0.0.1");
    assert_eq!(row("a/0").5.as_deref(), Some("batch"));
    assert_eq!(
        (row("c/0").3.as_str(), row("c/0").4.as_deref()),
        ("cel", Some("z2"))
    );
    // z1 is still used by a and b; nothing was left behind
    assert_eq!(db.zones().await, vec!["z1", "z2"]);

    // Everything leaves z1: the zone goes too.
    let changes = apply_snapshot(
        &db.pool,
        &snap(&[
            vm("a/0", "10.0.0.2", "z2", false),
            vm("b/0", "10.0.0.1", "z2", false),
            vm("c/0", "10.0.0.3", "z2", true),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(changes.zones_removed, 1);
    assert_eq!(db.zones().await, vec!["z2"]);
    db.drop_db().await;
}

#[tokio::test]
async fn rows_left_by_the_original_are_repaired() {
    let db = InventoryDb::new().await;
    // D15: zone_id 0; and a name twice (the original's races).
    sqlx::query(
        "INSERT INTO vms (id, zone_id, name, ip, vm_type) VALUES \
         (10, 0, 'cell/0', '10.0.0.10', 'cel'), (11, 0, 'cell/0', '10.0.0.11', 'cel')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO zones (id, name) VALUES (5, 'stale')")
        .execute(&db.pool)
        .await
        .unwrap();
    let changes = apply_snapshot(&db.pool, &snap(&[vm("cell/0", "10.0.0.11", "z1", true)]))
        .await
        .unwrap();
    assert_eq!(
        changes,
        InventoryChanges {
            zones_added: 1,
            zones_removed: 1,
            vms_updated: 1,
            vms_removed: 1,
            ..Default::default()
        }
    );
    let rows = db.vms().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].0, rows[0].2.as_str(), rows[0].4.as_deref()),
        (10, "10.0.0.11", Some("z1"))
    );
    assert_eq!(db.zones().await, vec!["z1"]);
    db.drop_db().await;
}

#[tokio::test]
async fn a_vm_with_no_zone_goes_to_the_default_zone() {
    let db = InventoryDb::new().await;
    apply_snapshot(&db.pool, &snap(&[vm("a/0", "10.0.0.1", "", false)]))
        .await
        .unwrap();
    assert_eq!(db.zones().await, vec!["default"]);
    db.drop_db().await;
}

#[tokio::test]
async fn a_failure_midway_rolls_the_whole_sync_back() {
    let db = InventoryDb::new().await;
    apply_snapshot(
        &db.pool,
        &snap(&[
            vm("a/0", "10.0.0.1", "z1", false),
            vm("b/0", "10.0.0.2", "z1", false),
        ]),
    )
    .await
    .unwrap();
    // The DB refuses one insert after the sync has deleted, updated and added a zone.
    sqlx::raw_sql(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON vms FOR EACH ROW \
         IF NEW.name = 'boom/0' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by test'; END IF",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let before = (db.vms().await, db.zones().await);
    let err = apply_snapshot(
        &db.pool,
        &snap(&[
            vm("b/0", "10.0.0.9", "z2", false),
            vm("boom/0", "10.0.0.1", "z3", false),
        ]),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("boom/0"), "{err:#}");
    assert_eq!((db.vms().await, db.zones().await), before);
    db.drop_db().await;
}
