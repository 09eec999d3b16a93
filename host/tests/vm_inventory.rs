//! `apply_snapshot` against a real MariaDB: each test gets a fresh, migrated database.

use monit_host::plugin::{InventorySnapshot, ReportedVm};
use monit_host::store::vms::{InventoryChanges, Removal};
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
        monit_host::store::db::MIGRATOR.run(&db.pool).await.unwrap();
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
        deployment: "cf".into(),
    }
}

fn snap(vms: &[ReportedVm]) -> InventorySnapshot {
    InventorySnapshot { vms: vms.to_vec() }
}

/// A sync that removes a missing VM at once (grace 0), as every sync did before the grace.
async fn apply_snapshot(
    pool: &sqlx::MySqlPool,
    snapshot: &InventorySnapshot,
) -> anyhow::Result<InventoryChanges> {
    let removal = Removal::at_once(chrono::Utc::now());
    monit_host::store::vms::apply_snapshot(pool, snapshot, removal).await
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

// ---------------------------------------------------------------------------------------------
// Removal grace: a VM missing from a snapshot keeps its row, id and alarms for a while.

fn at(minutes: i64) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc.with_ymd_and_hms(2026, 11, 29, 6, 0, 0).unwrap()
        + chrono::Duration::minutes(minutes)
}

async fn sync_at(
    db: &InventoryDb,
    minutes: i64,
    grace_minutes: u64,
    vms: &[ReportedVm],
) -> InventoryChanges {
    monit_host::store::vms::apply_snapshot(
        &db.pool,
        &snap(vms),
        // notes state their times as the app shows the rows' dates (UTC+9)
        Removal::after_minutes(at(minutes), grace_minutes)
            .noting_times_at(chrono::FixedOffset::east_opt(9 * 3600).unwrap()),
    )
    .await
    .unwrap()
}

impl InventoryDb {
    /// An open (or given resolve_status) alarm of origin `origin` / `origin_id`; returns its id.
    async fn alarm(&self, origin: &str, origin_id: i64, alarm_type: &str, status: &str) -> i64 {
        let app_yn = if origin == "con" { "Y" } else { "N" };
        sqlx::query(
            "INSERT INTO alarms (origin_type, origin_id, alarm_type, level, ip, app_yn, app_name, \
             app_index, alarm_title, alarm_message, resolve_status, alarm_cnt) \
             VALUES (?, ?, ?, 'critical', '10.0.0.2', ?, IF(? = 'Y', 'web', ''), 0, 't', 'm', ?, 3)",
        )
        .bind(origin)
        .bind(origin_id)
        .bind(alarm_type)
        .bind(app_yn)
        .bind(app_yn)
        .bind(status)
        .execute(&self.pool)
        .await
        .unwrap()
        .last_insert_id() as i64
    }

    /// (resolve_status, complete_user, complete_date) of an alarm
    async fn alarm_state(
        &self,
        id: i64,
    ) -> (String, Option<String>, Option<chrono::NaiveDateTime>) {
        sqlx::query_as(
            "SELECT resolve_status, complete_user, complete_date FROM alarms WHERE id = ?",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    async fn actions(&self, alarm_id: i64) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT alarm_action_desc FROM alarm_actions WHERE alarm_id = ? AND reg_user = 'system'",
        )
        .bind(alarm_id)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    async fn absences(&self) -> Vec<(i64, String, chrono::NaiveDateTime)> {
        sqlx::query_as(
            "SELECT CAST(vm_id AS SIGNED), name, first_missing_at FROM batch_vm_absence ORDER BY vm_id",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}

fn abc() -> Vec<ReportedVm> {
    vec![
        vm("a/0", "10.0.0.1", "z1", false),
        vm("b/0", "10.0.0.2", "z1", false),
        vm("c/0", "10.0.0.3", "z2", false),
    ]
}

#[tokio::test]
async fn a_vm_missing_from_one_snapshot_keeps_its_id_and_its_open_alarm() {
    let db = InventoryDb::new().await;
    sync_at(&db, 0, 30, &abc()).await;
    let b = db.id_of("b/0").await;
    let alarm = db.alarm("pas", b, "fail", "1").await;

    // One answer without b/0.
    let changes = sync_at(&db, 1, 30, &[abc()[0].clone(), abc()[2].clone()]).await;
    assert_eq!(
        changes,
        InventoryChanges {
            vms_absent: 1,
            ..Default::default()
        }
    );
    assert_eq!(db.id_of("b/0").await, b, "kept with its id");
    assert_eq!(db.alarm_state(alarm).await.0, "1", "its alarm stays open");
    assert!(db.actions(alarm).await.is_empty());
    assert_eq!(
        db.absences().await,
        vec![(b, "b/0".to_string(), at(1).naive_utc())]
    );
    // Still missing a minute later: the clock runs from the first miss.
    sync_at(&db, 2, 30, &[abc()[0].clone(), abc()[2].clone()]).await;
    assert_eq!(db.absences().await[0].2, at(1).naive_utc());

    // Reported again: the same row, nothing added, the absence forgotten.
    let changes = sync_at(&db, 3, 30, &abc()).await;
    assert_eq!(changes, InventoryChanges::default());
    assert_eq!(db.id_of("b/0").await, b);
    assert_eq!(db.vms().await.len(), 3);
    assert!(db.absences().await.is_empty());
    assert_eq!(db.alarm_state(alarm).await.0, "1");
    assert_eq!(db.zones().await, vec!["z1", "z2"]);
    db.drop_db().await;
}

#[tokio::test]
async fn a_vm_missing_beyond_the_grace_is_removed_and_its_open_alarms_closed_with_a_note() {
    let db = InventoryDb::new().await;
    sync_at(&db, 0, 30, &abc()).await;
    let b = db.id_of("b/0").await;
    let raised = db.alarm("pas", b, "cpu", "1").await;
    let in_hand = db.alarm("pas", b, "fail", "2").await;
    let closed = db.alarm("pas", b, "memory", "3").await;
    let container = db.alarm("con", b, "memory", "1").await; // an app on cell b: keyed by app
    let other = db.alarm("pas", db.id_of("a/0").await, "cpu", "1").await;
    let without_b = [abc()[0].clone(), abc()[2].clone()];

    sync_at(&db, 10, 30, &without_b).await;
    let changes = sync_at(&db, 39, 30, &without_b).await;
    assert_eq!((changes.vms_absent, changes.vms_removed), (1, 0));
    assert_eq!(
        db.id_of("b/0").await,
        b,
        "29 minutes missing: still within the grace"
    );

    let changes = sync_at(&db, 40, 30, &without_b).await;
    assert_eq!(
        changes,
        InventoryChanges {
            vms_removed: 1,
            alarms_closed: 2,
            ..Default::default()
        }
    );
    let names: Vec<String> = db.vms().await.into_iter().map(|r| r.1).collect();
    assert_eq!(names, vec!["a/0", "c/0"]);
    assert!(db.absences().await.is_empty());
    for id in [raised, in_hand] {
        assert_eq!(
            db.alarm_state(id).await,
            ("3".into(), Some("system".into()), Some(at(40).naive_utc()))
        );
        let notes = db.actions(id).await;
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("VM b/0 removed from the BOSH inventory"),
            "{notes:?}"
        );
        // missing since minute 10 (06:10 UTC), stated at the display offset
        assert!(
            notes[0]
                .contains("missing from the BOSH inventory since 2026-11-29 15:10:00 (UTC+09:00)"),
            "{notes:?}"
        );
    }
    // Already closed, a container's, another VM's: untouched, no note.
    assert_eq!(db.alarm_state(closed).await.0, "3");
    assert_eq!(db.alarm_state(container).await.0, "1");
    assert_eq!(db.alarm_state(other).await.0, "1");
    for id in [closed, container, other] {
        assert!(db.actions(id).await.is_empty());
    }

    // b/0 comes back later: a new VM, a new id; the old alarms stay closed.
    sync_at(&db, 50, 30, &abc()).await;
    assert_ne!(db.id_of("b/0").await, b);
    assert_eq!(db.alarm_state(raised).await.0, "3");
    db.drop_db().await;
}

#[tokio::test]
async fn grace_zero_removes_a_missing_vm_at_once_and_closes_its_alarms() {
    let db = InventoryDb::new().await;
    sync_at(&db, 0, 0, &abc()).await;
    let b = db.id_of("b/0").await;
    let alarm = db.alarm("pas", b, "fail", "1").await;
    let changes = sync_at(&db, 1, 0, &[abc()[0].clone(), abc()[2].clone()]).await;
    assert_eq!(
        changes,
        InventoryChanges {
            vms_removed: 1,
            alarms_closed: 1,
            ..Default::default()
        }
    );
    assert_eq!(db.vms().await.len(), 2);
    assert!(db.absences().await.is_empty(), "no absence is recorded");
    assert_eq!(db.alarm_state(alarm).await.0, "3");
    assert!(db.actions(alarm).await[0].contains("VM b/0 removed from the BOSH inventory"));
    db.drop_db().await;
}

#[tokio::test]
async fn a_missing_vm_whose_ip_another_vm_now_reports_is_removed_within_the_grace() {
    let db = InventoryDb::new().await;
    sync_at(&db, 0, 30, &abc()).await;
    let b = db.id_of("b/0").await;
    let alarm = db.alarm("pas", b, "cpu", "1").await;
    // b/0 gone and d/0 new on b's address: b cannot keep the address (vms.ip is unique) and
    // is clearly replaced, so it goes at once.
    let changes = sync_at(
        &db,
        1,
        30,
        &[
            vm("a/0", "10.0.0.1", "z1", false),
            vm("c/0", "10.0.0.3", "z2", false),
            vm("d/0", "10.0.0.2", "z1", false),
        ],
    )
    .await;
    assert_eq!(
        (
            changes.vms_added,
            changes.vms_removed,
            changes.vms_absent,
            changes.alarms_closed
        ),
        (1, 1, 0, 1)
    );
    let names: Vec<String> = db.vms().await.into_iter().map(|r| r.1).collect();
    assert_eq!(names, vec!["a/0", "c/0", "d/0"]);
    let notes = db.actions(alarm).await;
    assert!(notes[0].contains("now belongs to another VM"), "{notes:?}");
    db.drop_db().await;
}

#[tokio::test]
async fn open_alarms_of_vms_no_longer_in_vms_are_closed_by_the_next_sync() {
    let db = InventoryDb::new().await;
    sync_at(&db, 0, 30, &abc()).await;
    let a = db.id_of("a/0").await;
    // left by an older run: the VM row went, its alarms stayed open
    let stranded = db.alarm("pas", 9_000, "fail", "1").await;
    let stranded_bos = db.alarm("bos", 9_001, "cpu", "2").await;
    // not VM alarms: the BOSH director (9999), the metrics pipeline (0), a container
    let director = db.alarm("bos", 9999, "fail", "1").await;
    let pipeline = db.alarm("pas", 0, "fail", "1").await;
    let container = db.alarm("con", 9_000, "cpu", "1").await;
    let live = db.alarm("pas", a, "cpu", "1").await;

    let changes = sync_at(&db, 1, 30, &abc()).await;
    assert_eq!(
        changes,
        InventoryChanges {
            alarms_closed: 2,
            ..Default::default()
        }
    );
    for id in [stranded, stranded_bos] {
        assert_eq!(db.alarm_state(id).await.0, "3");
        let notes = db.actions(id).await;
        assert!(
            notes[0].contains("is no longer in the inventory"),
            "{notes:?}"
        );
    }
    for id in [director, pipeline, container, live] {
        assert_eq!(db.alarm_state(id).await.0, "1", "alarm {id}");
    }
    // Said once: the next sync finds nothing more to close.
    assert_eq!(
        sync_at(&db, 2, 30, &abc()).await,
        InventoryChanges::default()
    );
    db.drop_db().await;
}
