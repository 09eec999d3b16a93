//! Fake director → fetch → `apply_snapshot` → `zones` / `vms` rows in a real MariaDB.

mod common;

use common::*;
use monit_host::plugin::VmSource;
use monit_host::store::vms::{Removal, apply_snapshot};
use monit_plugin_bosh::{BoshVmSource, DirectorClient};
use std::sync::Arc;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

/// The director's answer for `paasta` one sync later: cell_z1/1 is gone, cell_z1/2 is new and
/// took the IP of cell_z1/1, router_z2/0 got a new IP.
const PAASTA_VMS_LATER: &str = concat!(
    r#"{"vm_cid":"i-0a1","ips":["10.0.16.21"],"job_name":"cell_z1","index":0,"job_state":"running","az":null,"id":"6f0c1a2b-0001","vitals":null,"processes":[]}"#,
    "\n",
    r#"{"vm_cid":"i-0a3","ips":["10.0.16.22"],"job_name":"cell_z1","index":2,"job_state":"running","az":null,"id":"6f0c1a2b-0003","vitals":null,"processes":[]}"#,
    "\n",
    r#"{"vm_cid":"i-0b9","ips":["10.0.17.9"],"job_name":"router_z2","index":0,"job_state":"running","az":null,"id":"7a1d2c3b-0001","vitals":null,"processes":[]}"#,
    "\n",
    r#"{"vm_cid":"i-0c1","ips":["10.0.16.30"],"job_name":"uaa","index":0,"job_state":"running","az":null,"id":"9c3f4e5d-0001","vitals":null,"processes":[]}"#,
    "\n",
);

#[tokio::test]
async fn director_to_rows_then_a_failing_director_leaves_them() {
    let db = TestDb::new().await;
    let fake = FakeBosh::start().await;
    fake.info_uaa().await;
    fake.password_grant("e2e-token", 43199)
        .mount(&fake.uaa)
        .await;
    let auth = Auth::Bearer("e2e-token".into());
    fake.deployments(&["paasta"], &auth).await;
    fake.vms_task(&TaskScript::done("paasta", 100, PAASTA_VMS).polls(1), &auth)
        .await;
    let config = fake.config("paasta");
    let inventory = BoshVmSource::new(&config, Arc::new(DirectorClient::new(&config).unwrap()));

    // 1. first sync
    let snapshot = inventory.fetch(&sync_ctx()).await.unwrap();
    let changes = apply_snapshot(&db.pool, &snapshot, Removal::at_once(chrono::Utc::now()))
        .await
        .unwrap();
    assert_eq!((changes.zones_added, changes.vms_added), (3, 4));
    let first = db.vms().await;
    let rows: Vec<_> = first
        .iter()
        .map(|(_, n, ip, t, z)| {
            (
                n.as_str(),
                ip.as_str(),
                t.as_str(),
                z.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("cell_z1/0", "10.0.16.21", "cel", "z1"),
            ("cell_z1/1", "10.0.16.22", "cel", "z1"),
            ("router_z2/0", "10.0.17.5", "vms", "z2"),
            ("uaa/0", "10.0.16.30", "vms", "paasta"),
        ]
    );
    let id_of = |rows: &[(i64, String, String, String, Option<String>)], n: &str| {
        rows.iter().find(|r| r.1 == n).map(|r| r.0)
    };

    // 2. the director now reports a changed deployment
    fake.director.reset().await;
    fake.info_uaa().await;
    fake.deployments(&["paasta"], &auth).await;
    fake.vms_task(
        &TaskScript::done("paasta", 101, PAASTA_VMS_LATER).inline(),
        &auth,
    )
    .await;
    let snapshot = inventory.fetch(&sync_ctx()).await.unwrap();
    let changes = apply_snapshot(&db.pool, &snapshot, Removal::at_once(chrono::Utc::now()))
        .await
        .unwrap();
    assert_eq!(
        (changes.vms_added, changes.vms_updated, changes.vms_removed),
        (1, 1, 1)
    );
    let second = db.vms().await;
    for kept in ["cell_z1/0", "router_z2/0", "uaa/0"] {
        assert_eq!(
            id_of(&second, kept),
            id_of(&first, kept),
            "{kept} kept its id"
        );
    }
    assert_eq!(id_of(&second, "cell_z1/1"), None);
    let new = second.iter().find(|r| r.1 == "cell_z1/2").unwrap();
    assert_eq!(new.2, "10.0.16.22");
    assert_eq!(
        second.iter().find(|r| r.1 == "router_z2/0").unwrap().2,
        "10.0.17.9"
    );

    // 3. the director breaks mid-sync: an error, and the rows stay as they are
    fake.director.reset().await;
    fake.info_uaa().await;
    fake.deployments(&["paasta"], &auth).await;
    Mock::given(method("GET"))
        .and(path("/deployments/paasta/vms"))
        .respond_with(ResponseTemplate::new(500).set_body_string("Internal Server Error"))
        .mount(&fake.director)
        .await;
    let err = inventory.fetch(&sync_ctx()).await.unwrap_err();
    assert!(format!("{err:#}").contains("HTTP 500"), "{err:#}");
    assert_eq!(db.vms().await, second);

    // 4. the director answers with no VM at all: refused, rows stay
    fake.director.reset().await;
    fake.info_uaa().await;
    fake.deployments(&["paasta"], &auth).await;
    fake.vms_task(&TaskScript::done("paasta", 102, ""), &auth)
        .await;
    let snapshot = inventory.fetch(&sync_ctx()).await.unwrap();
    assert!(snapshot.vms.is_empty());
    let err = apply_snapshot(&db.pool, &snapshot, Removal::at_once(chrono::Utc::now()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    assert_eq!(db.vms().await, second);

    // 5. an answer over plugins.bosh.max_answer_bytes (here 64 KiB; the VMs of a huge
    //    deployment with their vitals): a clear error naming the key and URL, rows stay
    let mut small = config.clone();
    small.max_answer_bytes = 64 * 1024;
    let limited = BoshVmSource::new(&small, Arc::new(DirectorClient::new(&small).unwrap()));
    let vitals = "x".repeat(900);
    let huge: String = (0..2_000)
        .map(|i| {
            format!(
                "{{\"job_name\":\"cell_z1\",\"index\":{i},\"ips\":[\"10.0.{}.{}\"],\"vitals\":\"{vitals}\"}}\n",
                i / 250,
                i % 250
            )
        })
        .collect();
    assert!(huge.len() > 1_000_000);
    fake.director.reset().await;
    fake.info_uaa().await;
    fake.deployments(&["paasta"], &auth).await;
    fake.vms_task(&TaskScript::done("paasta", 103, &huge).inline(), &auth)
        .await;
    let err = format!("{:#}", limited.fetch(&sync_ctx()).await.unwrap_err());
    assert!(
        err.contains("plugins.bosh.max_answer_bytes = 65536") && err.contains("/tasks/103/output"),
        "{err}"
    );
    assert_eq!(db.vms().await, second);
    // the same answer within the default limit is read, line by line, in full
    let snapshot = inventory.fetch(&sync_ctx()).await.unwrap();
    assert_eq!(snapshot.vms.len(), 2_000);

    db.drop_db().await;
}
