//! The store and the engine's in-memory `engine::apply` (which the backtest replays history
//! through) must agree on what every change does to the open alarms: the same changes are
//! written to a real MariaDB and applied in memory, and the open alarms read back are compared.

use chrono::{SubsecRound, Utc};
use monit_host::evaluate::engine::{self, AutoResolve, Change, EngineOptions, OpenAlarm, Policy};
use monit_host::model::{Measured, Origin, Reading, Resource, Timestamp};
use monit_host::store;
use monit_testkit::TestDb;

use monit_host::testing::vm_target as vm;

fn cpu(id: i64, mean: f64, peak: f64) -> Reading {
    Reading {
        target: vm(id),
        value: Measured::Usage {
            resource: Resource::Cpu,
            mean,
            peak,
            buckets: 20,
        },
    }
}

/// What both sides must agree on, per alarm (ids of opened alarms differ: the DB numbers them).
fn projection(open: &[OpenAlarm]) -> Vec<String> {
    let mut v: Vec<String> = open
        .iter()
        .map(|a| {
            format!(
                "{} {} {} {:?} {:?} recovered={} notified={} sent={:?}",
                a.origin,
                a.origin_id,
                a.alarm_type,
                a.level,
                a.status,
                a.recovered,
                a.notified_level,
                a.last_sent
            )
        })
        .collect();
    v.sort();
    v
}

async fn write(db: &TestDb, changes: &[Change], open: &[OpenAlarm], now: Timestamp) {
    let outbox = store::Outbox {
        notifiers: &[],
        language: "en",
        resource_url: None,
        holds: &Default::default(),
        display_offset: chrono::Offset::fix(&chrono::Utc),
    };
    store::apply_changes(&db.pool, changes, &[], open, now, &outbox, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn every_change_leaves_the_same_open_alarms_in_the_db_and_in_memory() {
    let db = TestDb::create("store_vs_engine").await;
    monit_host::store::db::MIGRATOR.run(&db.pool).await.unwrap();
    let policies = [Policy {
        id: 1,
        origin: Origin::Pas,
        resource: Resource::Cpu,
        warning: 85.0,
        critical: 90.0,
        repeat_minutes: 10,
        measure_seconds: 600,
    }];
    let opts = EngineOptions {
        auto_resolve: AutoResolve::Unclaimed,
        default_repeat_minutes: 10,
    };
    let t0 = Utc::now().trunc_subsecs(0) - chrono::Duration::hours(1);
    // each tick: the readings, minutes after t0
    let ticks: [(i64, Vec<Reading>); 5] = [
        // opens a warning (vm 1), a critical (vm 2), a fail (vm 3)
        (
            0,
            vec![
                cpu(1, 86.0, 87.0),
                cpu(2, 95.0, 95.0),
                Reading {
                    target: vm(3),
                    value: Measured::NoData,
                },
            ],
        ),
        // escalates vm 1, steps vm 2 down silently, vm 3 still silent (no repeat yet)
        (
            1,
            vec![
                cpu(1, 95.0, 96.0),
                cpu(2, 87.0, 89.0),
                Reading {
                    target: vm(3),
                    value: Measured::NoData,
                },
            ],
        ),
        // vm 2 still in the warning band after repeat_time: a repeat, telling the new level
        (
            12,
            vec![cpu(1, 95.0, 96.0), cpu(2, 87.0, 89.0), cpu(3, 10.0, 10.0)],
        ),
        // vm 1 recovers and closes, vm 2 holds
        (13, vec![cpu(1, 10.0, 10.0), cpu(2, 86.0, 88.0)]),
        // vm 2 recovers
        (14, vec![cpu(2, 10.0, 10.0)]),
    ];
    let mut next_id = 0;
    let mut memory: Vec<OpenAlarm> = Vec::new();
    let mut kinds = Vec::new();
    for (minute, readings) in ticks {
        let now = t0 + chrono::Duration::minutes(minute);
        let before = store::load_open_alarms(&db.pool).await.unwrap();
        assert_eq!(
            projection(&before),
            projection(&memory),
            "before minute {minute}"
        );
        // the engine decides on the DB's alarms, so both sides apply the same ids
        memory = before.clone();
        let changes = engine::evaluate(&policies, &before, &readings, &Origin::ALL, now, &opts);
        kinds.extend(changes.iter().map(|c| {
            format!("{c:?}")
                .split([' ', '{'])
                .next()
                .unwrap_or_default()
                .to_string()
        }));
        write(&db, &changes, &before, now).await;
        for c in &changes {
            engine::apply(&mut memory, c, now, &mut next_id);
        }
        let after = store::load_open_alarms(&db.pool).await.unwrap();
        assert_eq!(
            projection(&after),
            projection(&memory),
            "after minute {minute}: {changes:?}"
        );
    }
    for k in ["Open", "Escalate", "StepDown", "Continue", "Recover"] {
        assert!(
            kinds.iter().any(|x| x == k),
            "the ticks exercise {k}: {kinds:?}"
        );
    }
    assert!(store::load_open_alarms(&db.pool).await.unwrap().is_empty());
}
