//! Migrations against the real MariaDB: an empty database, a database the original batch (2.0
//! and 4.0) created and filled, and a second run that changes nothing.

use monit_host::db::MIGRATOR;
use monit_testkit::TestDb;
use sqlx::{MySqlPool, Row};

async fn count(pool: &MySqlPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn columns(pool: &MySqlPool, table: &str) -> Vec<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT CAST(column_name AS CHAR) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn empty_database_gets_reference_tables_and_seeds_once() {
    let db = TestDb::create("mig_empty").await;
    let pool = db.pool.clone();
    MIGRATOR.run(&pool).await.unwrap();
    for t in [
        "zones",
        "vms",
        "alarm_policies",
        "alarm_targets",
        "alarms",
        "alarm_actions",
        "batch_notifications",
        "batch_runs",
        "batch_scaling_history",
    ] {
        assert!(!columns(&pool, t).await.is_empty(), "table {t} missing");
    }
    assert_eq!(
        columns(&pool, "alarms").await,
        [
            "id",
            "origin_type",
            "origin_id",
            "alarm_type",
            "level",
            "ip",
            "app_yn",
            "app_name",
            "app_index",
            "container_name",
            "alarm_title",
            "alarm_message",
            "resolve_status",
            "alarm_cnt",
            "reg_date",
            "reg_user",
            "modi_date",
            "modi_user",
            "alarm_send_date",
            "complete_date",
            "complete_user"
        ]
    );
    assert_eq!(count(&pool, "alarm_policies").await, 9);
    assert_eq!(count(&pool, "alarm_targets").await, 3);
    let row = sqlx::query("SELECT origin_type, alarm_type, warning_threshold, critical_threshold, repeat_time, measure_time FROM alarm_policies WHERE id = 3")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>(0), "pas");
    assert_eq!(row.get::<String, _>(1), "disk");
    assert_eq!(
        (
            row.get::<i32, _>(2),
            row.get::<i32, _>(3),
            row.get::<i32, _>(4),
            row.get::<i32, _>(5)
        ),
        (85, 90, 10, 600)
    );
    // a second run: nothing to do, nothing duplicated
    MIGRATOR.run(&pool).await.unwrap();
    assert_eq!(count(&pool, "alarm_policies").await, 9);
    assert_eq!(count(&pool, "alarm_targets").await, 3);
    db.drop().await;
}

/// The tables as the 2.0 batch's GORM AutoMigrate created them (no measure_time, no mail_send_yn).
const ORIGINAL_2_0: &str = r#"
CREATE TABLE `zones` (`id` int unsigned AUTO_INCREMENT,`name` varchar(200) NOT NULL,`reg_date` datetime NOT NULL DEFAULT current_timestamp,`reg_user` varchar(36) NOT NULL DEFAULT 'system',`modi_date` datetime NULL DEFAULT current_timestamp,`modi_user` varchar(36) NULL DEFAULT 'system' , PRIMARY KEY (`id`));
CREATE TABLE `vms` (`id` int unsigned AUTO_INCREMENT,`zone_id` integer NOT NULL,`name` varchar(200) NOT NULL,`ip` varchar(15) NOT NULL,`vm_type` varchar(3) NOT NULL,`reg_date` datetime NOT NULL DEFAULT current_timestamp,`reg_user` varchar(36) NOT NULL DEFAULT 'system',`modi_date` datetime NULL DEFAULT current_timestamp,`modi_user` varchar(36) NULL DEFAULT 'system' , PRIMARY KEY (`id`,`zone_id`));
CREATE UNIQUE INDEX uix_vms_ip ON `vms`(ip);
CREATE TABLE `alarm_policies` (`id` int unsigned AUTO_INCREMENT,`origin_type` varchar(3) NOT NULL,`alarm_type` varchar(6) NOT NULL,`warning_threshold` integer NOT NULL,`critical_threshold` integer NOT NULL,`repeat_time` integer NOT NULL,`comment` varchar(5000),`reg_date` datetime NOT NULL DEFAULT current_timestamp,`reg_user` varchar(36) NOT NULL DEFAULT 'system',`modi_date` datetime NULL DEFAULT current_timestamp,`modi_user` varchar(36) NULL DEFAULT 'system' , PRIMARY KEY (`id`));
CREATE TABLE `alarm_targets` (`id` int unsigned AUTO_INCREMENT,`origin_type` varchar(3) NOT NULL,`mail_address` varchar(100) NOT NULL,`reg_date` datetime NOT NULL DEFAULT current_timestamp,`reg_user` varchar(36) NOT NULL DEFAULT 'system',`modi_date` datetime NULL DEFAULT current_timestamp,`modi_user` varchar(36) NULL DEFAULT 'system' , PRIMARY KEY (`id`));
CREATE TABLE `alarms` (`id` int unsigned AUTO_INCREMENT,`origin_type` varchar(3) NOT NULL,`origin_id` integer NOT NULL,`alarm_type` varchar(6) NOT NULL,`level` varchar(8) NOT NULL,`ip` varchar(15),`app_yn` varchar(1) NOT NULL,`app_name` varchar(500),`app_index` integer,`container_name` varchar(40),`alarm_title` varchar(5000) NOT NULL,`alarm_message` text NOT NULL,`resolve_status` varchar(1) NOT NULL,`alarm_cnt` integer NOT NULL DEFAULT 1,`reg_date` datetime NOT NULL DEFAULT current_timestamp,`reg_user` varchar(36) NOT NULL DEFAULT 'system',`modi_date` datetime NULL DEFAULT current_timestamp,`modi_user` varchar(36) NULL DEFAULT 'system',`alarm_send_date` datetime NULL DEFAULT NULL,`complete_date` datetime,`complete_user` varchar(36) , PRIMARY KEY (`id`));
CREATE TABLE `alarm_actions` (`id` int unsigned AUTO_INCREMENT,`alarm_id` integer NOT NULL,`alarm_action_desc` text,`reg_date` datetime NOT NULL DEFAULT current_timestamp,`reg_user` varchar(36) NOT NULL DEFAULT 'system',`modi_date` datetime NULL DEFAULT current_timestamp,`modi_user` varchar(36) NULL DEFAULT 'system' , PRIMARY KEY (`id`));
INSERT INTO alarm_policies (id, origin_type, alarm_type, warning_threshold, critical_threshold, repeat_time, comment) VALUES
 (1,'pas','cpu',70,95,30,'edited by operator'),(2,'pas','memory',85,90,10,'Initial Data'),(3,'pas','disk',85,90,1,'Initial Data'),
 (4,'bos','cpu',85,90,10,'Initial Data'),(5,'bos','memory',85,90,10,'Initial Data'),(6,'bos','disk',85,90,10,'Initial Data'),
 (7,'con','cpu',85,90,10,'Initial Data'),(8,'con','memory',85,90,10,'Initial Data');
INSERT INTO alarm_targets (id, origin_type, mail_address) VALUES (1,'bos','ops@example.com'),(2,'pas','ops@example.com'),(3,'con','ops@example.com'),(4,'pas','oncall@example.com');
INSERT INTO zones (id, name) VALUES (1, 'z1');
INSERT INTO vms (id, zone_id, name, ip, vm_type) VALUES (1, 1, 'cell_z1/0', '10.0.16.21', 'cel');
INSERT INTO alarms (origin_type, origin_id, alarm_type, level, ip, app_yn, app_name, app_index, container_name, alarm_title, alarm_message, resolve_status, reg_user, modi_user, alarm_send_date)
 VALUES ('pas', 1, 'cpu', 'warning', '10.0.16.21', 'N', '', 0, '', '[cell_z1/0]의 cpu 상태 [warning]', 'msg', '1', 'Bat', 'bat', NOW());
"#;

#[tokio::test]
async fn database_created_by_the_original_keeps_its_rows() {
    let db = TestDb::create("mig_orig20").await;
    let pool = db.pool.clone();
    sqlx::raw_sql(ORIGINAL_2_0).execute(&pool).await.unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    // 4.0 columns added, existing rows kept as the operator left them
    assert!(
        columns(&pool, "alarm_policies")
            .await
            .contains(&"measure_time".to_string())
    );
    assert!(
        columns(&pool, "alarm_targets")
            .await
            .contains(&"mail_send_yn".to_string())
    );
    let (w, c, r, m): (i32, i32, i32, i32) = sqlx::query_as("SELECT warning_threshold, critical_threshold, repeat_time, measure_time FROM alarm_policies WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((w, c, r), (70, 95, 30), "operator edit kept");
    assert_eq!(
        m, 600,
        "measure_time of upgraded rows is usable, not 0 (defect D16)"
    );
    // the seed filled only the missing id (9), no duplicates
    assert_eq!(count(&pool, "alarm_policies").await, 9);
    let n9: String = sqlx::query_scalar("SELECT alarm_type FROM alarm_policies WHERE id = 9")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n9, "disk");
    assert_eq!(count(&pool, "alarm_targets").await, 4);
    let addr: String = sqlx::query_scalar("SELECT mail_address FROM alarm_targets WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(addr, "ops@example.com");
    let yn: String = sqlx::query_scalar("SELECT mail_send_yn FROM alarm_targets WHERE id = 4")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(yn, "Y");
    assert_eq!(count(&pool, "alarms").await, 1);
    assert_eq!(count(&pool, "vms").await, 1);
    // idempotent
    MIGRATOR.run(&pool).await.unwrap();
    assert_eq!(count(&pool, "alarm_policies").await, 9);
    assert_eq!(count(&pool, "alarm_targets").await, 4);
    db.drop().await;
}

#[tokio::test]
async fn database_created_by_the_4_0_batch_migrates_too() {
    let db = TestDb::create("mig_orig40").await;
    let pool = db.pool.clone();
    sqlx::raw_sql(ORIGINAL_2_0).execute(&pool).await.unwrap();
    // what 4.0's AutoMigrate did to it: columns added with implicit 0
    sqlx::raw_sql(
        "ALTER TABLE alarm_policies ADD COLUMN measure_time integer NOT NULL; \
         ALTER TABLE alarm_targets ADD COLUMN mail_send_yn varchar(1) NOT NULL DEFAULT 'Y'; \
         UPDATE alarm_targets SET mail_send_yn = 'N' WHERE id = 4;",
    )
    .execute(&pool)
    .await
    .unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    let m: i32 = sqlx::query_scalar("SELECT measure_time FROM alarm_policies WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        m, 0,
        "existing column left alone; the engine reads 0 as the configured default"
    );
    let yn: String = sqlx::query_scalar("SELECT mail_send_yn FROM alarm_targets WHERE id = 4")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(yn, "N");
    assert_eq!(count(&pool, "alarm_policies").await, 9);
    let policies = monit_host::store::load_policies(&pool, 120).await.unwrap();
    assert_eq!(
        policies.iter().find(|p| p.id == 1).unwrap().measure_seconds,
        120
    );
    db.drop().await;
}
