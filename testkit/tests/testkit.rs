//! The throwaway databases exist while the test holds them and are gone after `drop`.

use monit_testkit::{
    TestDb, create_influx_db, drop_influx_db, influx_url, try_drop_influx_db, unique,
};

#[test]
fn unique_names_differ_and_keep_the_tag() {
    let (a, b) = (unique("t"), unique("t"));
    assert_ne!(a, b);
    assert!(a.starts_with("t_") && b.starts_with("t_"), "{a} {b}");
}

async fn schema_charset(db: &TestDb, name: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT CAST(default_character_set_name AS CHAR) FROM information_schema.schemata WHERE schema_name = ?",
    )
    .bind(name)
    .fetch_optional(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_mariadb_database_lives_until_dropped() {
    let db = TestDb::create("kit").await;
    let other = TestDb::create("kit").await;
    assert_ne!(db.name, other.name);
    let current: String = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(current, db.name);
    assert_eq!(
        schema_charset(&other, &db.name).await.as_deref(),
        Some("utf8mb4")
    );
    let name = db.name.clone();
    db.drop().await;
    assert_eq!(schema_charset(&other, &name).await, None);
    other.drop().await;
}

async fn influx_databases(url: &str) -> String {
    reqwest::Client::new()
        .get(format!("{url}/query"))
        .query(&[("q", "SHOW DATABASES")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_influx_database_lives_until_dropped() {
    let url = influx_url();
    let name = unique("monit_test_kit");
    create_influx_db(&url, &name).await;
    assert!(
        influx_databases(&url)
            .await
            .contains(&format!("\"{name}\""))
    );
    drop_influx_db(&url, &name).await;
    assert!(
        !influx_databases(&url)
            .await
            .contains(&format!("\"{name}\""))
    );
}

#[tokio::test]
async fn a_cleanup_against_a_dead_server_reports_instead_of_panicking() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = try_drop_influx_db(&format!("http://127.0.0.1:{port}"), "x")
        .await
        .unwrap_err();
    assert!(err.contains(&port.to_string()), "{err}");
}
