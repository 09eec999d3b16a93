//! Autoscale end to end through the binary: Portal DB rows in the real MariaDB, container
//! metrics in the real InfluxDB, a wiremock Cloud Controller + UAA (documented v3 shapes).

mod common;

use common::{TestEnv, autoscale_section, cloud_controller, now_s, portal_db};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, ResponseTemplate};

fn app_points(app: &str, guid: &str, idx: u32, cell_ip: &str, until: i64) -> String {
    let tags = format!(
        "application_id={guid},application_index={idx},application_name={app},cell_ip={cell_ip},container_id=/garden/{app}-{idx},container_interface={app}-{idx},machine=cell"
    );
    let mut out = String::new();
    let (mut t, mut cpu) = (until - 300, 500.0);
    while t <= until {
        for (name, v) in [
            ("cpu_usage_total", cpu),
            ("memory_usage", 0.3 * 1073741824.0),
            ("disk_usage", 1e8),
            ("load_average", 0.0),
        ] {
            out.push_str(&format!("container_metrics,{tags},name={name} app_mem=1073741824,app_disk=1073741824,value={v} {t}\n"));
        }
        cpu += 28.5; // 95% of a core
        t += 30;
    }
    out
}

/// app_name, action, outcome, instances_before, instances_after
type HistoryRow = (String, String, String, Option<i32>, Option<i32>);

#[tokio::test(flavor = "multi_thread")]
async fn scale_out_blocked_at_max_alarms_and_cooldown_holds() {
    let portal = portal_db(
        "e2e_portal",
        "(1, 'guid-full', 'org', 'space', 'full', 1, 2, 20, 80, 10, 90, 120, 'Y', 'Y'), \
         (2, 'guid-room', 'org', 'space', 'room', 1, 4, 20, 80, 10, 90, 120, 'Y', 'Y')",
    )
    .await;
    let cc = cloud_controller().await;
    for (guid, n) in [("guid-full", 2), ("guid-room", 2)] {
        Mock::given(method("GET")).and(path(format!("/v3/apps/{guid}/processes/web")))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"guid": "p", "type": "web", "instances": n, "memory_in_mb": 1024})))
            .mount(&cc).await;
    }
    Mock::given(method("POST"))
        .and(path("/v3/apps/guid-room/processes/web/actions/scale"))
        .and(body_json(serde_json::json!({"instances": 3})))
        .respond_with(
            ResponseTemplate::new(202)
                .set_body_json(serde_json::json!({"guid": "p", "type": "web", "instances": 3})),
        )
        .expect(1)
        .mount(&cc)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/apps/guid-full/processes/web/actions/scale"))
        .respond_with(ResponseTemplate::new(202))
        .expect(0)
        .mount(&cc)
        .await;

    let extra = autoscale_section(&cc, &portal, "cooldown_seconds = 600\n");
    let env = TestEnv::new("autoscale", &extra).await;
    env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    env.add_vm("cell_z1/1", "10.0.16.22", "cel").await;
    let now = now_s();
    let mut lines = String::new();
    for (app, guid) in [("full", "guid-full"), ("room", "guid-room")] {
        lines += &app_points(app, guid, 0, "10.0.16.21", now);
        lines += &app_points(app, guid, 1, "10.0.16.22", now);
    }
    env.write_points(&env.container_db, &lines).await;

    let e = &env;
    let out = tokio::task::block_in_place(|| e.run_once());
    assert!(out.status.success());
    let history: Vec<HistoryRow> = sqlx::query_as(
        "SELECT app_name, action, outcome, instances_before, instances_after FROM batch_scaling_history ORDER BY app_name",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    assert_eq!(
        history,
        vec![
            ("full".into(), "out".into(), "blocked".into(), Some(2), None),
            (
                "room".into(),
                "out".into(),
                "acted".into(),
                Some(2),
                Some(3)
            ),
        ]
    );
    let alarm: (String, String, String, i32, String) = sqlx::query_as(
        "SELECT origin_type, alarm_type, level, app_index, alarm_title FROM alarms WHERE app_name = 'full'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(
        alarm,
        (
            "con".into(),
            "cpu".into(),
            "critical".into(),
            -1,
            "[full] 오토스케일 최대 인스턴스 도달".into()
        )
    );

    // next tick: room is in cooldown, full still blocked (counted, not duplicated)
    let out = tokio::task::block_in_place(|| e.run_once());
    assert!(out.status.success());
    let room: (String, String) = sqlx::query_as(
        "SELECT outcome, reason FROM batch_scaling_history WHERE app_name = 'room' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(room.0, "skipped");
    assert!(room.1.starts_with("cooldown"), "{}", room.1);
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM alarms WHERE app_name = 'full'")
            .await,
        1
    );
    assert_eq!(
        env.scalar_i64("SELECT CAST(alarm_cnt AS SIGNED) FROM alarms WHERE app_name = 'full'")
            .await,
        2
    );
    cc.verify().await;

    // --dry-run: nothing recorded, nothing called
    let before = env
        .scalar_i64("SELECT COUNT(*) FROM batch_scaling_history")
        .await;
    let out = tokio::task::block_in_place(|| e.run(&["run", "--once", "--dry-run"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("would     scale full"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM batch_scaling_history")
            .await,
        before
    );

    env.cleanup().await;
    portal.drop().await;
}
