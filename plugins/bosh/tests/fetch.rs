//! The inventory fetch against a fake BOSH director and UAA.

mod common;

use common::*;
use monit_host::config::secret::Secret;
use monit_host::plugin::{ReportedVm, VmSource};
use monit_plugin_bosh::{BoshVmSource, DirectorClient};
use std::sync::Arc;
use wiremock::matchers::{bearer_token, method, path};
use wiremock::{Mock, ResponseTemplate};

fn inventory(config: &monit_plugin_bosh::BoshConfig) -> BoshVmSource {
    BoshVmSource::new(config, Arc::new(DirectorClient::new(config).unwrap()))
}

fn rvm(name: &str, ip: &str, zone: &str, is_cell: bool) -> ReportedVm {
    ReportedVm {
        name: name.into(),
        ip: ip.into(),
        zone: zone.into(),
        is_cell,
        deployment: String::new(),
    }
}

fn of(deployment: &str, vms: Vec<ReportedVm>) -> Vec<ReportedVm> {
    vms.into_iter()
        .map(|v| ReportedVm {
            deployment: deployment.into(),
            ..v
        })
        .collect()
}

/// What the fixtures hold for deployments `paasta` (2.0 names, no AZ) and `cf` (AZs).
fn expected_paasta() -> Vec<ReportedVm> {
    of(
        "paasta",
        vec![
            rvm("cell_z1/0", "10.0.16.21", "z1", true),
            rvm("cell_z1/1", "10.0.16.22", "z1", true),
            rvm("router_z2/0", "10.0.17.5", "z2", false),
            // api_z1/0 has no IP: skipped; uaa has neither AZ nor a _zN suffix: the deployment's zone
            rvm("uaa/0", "10.0.16.30", "paasta", false),
        ],
    )
}

fn expected_cf() -> Vec<ReportedVm> {
    of(
        "cf",
        vec![
            rvm("diego-cell/0", "10.0.1.21", "z1", true),
            rvm("diego-cell/1", "10.0.2.21", "z2", true),
            rvm("diego-api/1e5b7c8d-cccc", "10.0.1.40", "z1", false),
        ],
    )
}

#[tokio::test]
async fn uaa_client_credentials_two_deployments_and_nothing_else() {
    let fake = FakeBosh::start().await;
    fake.info_uaa().await;
    fake.client_credentials_grant("cc-token", 43199)
        .expect(1)
        .mount(&fake.uaa)
        .await;
    fake.uaa_rejects_the_rest().await;
    let auth = Auth::Bearer("cc-token".into());
    fake.deployments(&["paasta", "cf", "concourse"], &auth)
        .await;
    fake.vms_task(&TaskScript::done("paasta", 42, PAASTA_VMS).polls(2), &auth)
        .await;
    fake.vms_task(&TaskScript::done("cf", 43, CF_VMS).inline().polls(1), &auth)
        .await;
    fake.never_list("concourse").await;

    let mut config = fake.config("paasta");
    config.diego_deployment = Some("cf".into());
    config.username = String::new();
    config.password = Secret::default();
    config.uaa_client_id = Some(CLIENT.into());
    config.uaa_client_secret = Some(Secret::new(CLIENT_SECRET));
    let snapshot = inventory(&config).fetch(&sync_ctx()).await.unwrap();
    let mut expected = expected_paasta();
    expected.extend(expected_cf());
    assert_eq!(snapshot.vms, expected);
    // the task was polled until done: 2 processing answers, then done
    let polls = fake
        .director
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/tasks/42")
        .count();
    assert_eq!(polls, 3);
}

#[tokio::test]
async fn uaa_password_grant_reuses_the_token_while_it_is_valid() {
    let fake = FakeBosh::start().await;
    fake.info_uaa().await;
    fake.password_grant("pw-token", 43199)
        .expect(1)
        .mount(&fake.uaa)
        .await;
    fake.uaa_rejects_the_rest().await;
    let auth = Auth::Bearer("pw-token".into());
    fake.deployments(&["paasta"], &auth).await;
    fake.vms_task(&TaskScript::done("paasta", 7, PAASTA_VMS), &auth)
        .await;

    let inv = inventory(&fake.config("paasta"));
    assert_eq!(inv.fetch(&sync_ctx()).await.unwrap().vms, expected_paasta());
    assert_eq!(inv.fetch(&sync_ctx()).await.unwrap().vms, expected_paasta());
    assert_eq!(fake.token_requests().await, 1);
}

#[tokio::test]
async fn a_token_is_renewed_before_it_expires() {
    let fake = FakeBosh::start().await;
    fake.info_uaa().await;
    fake.password_grant("short-token", 1).mount(&fake.uaa).await;
    let auth = Auth::Bearer("short-token".into());
    fake.deployments(&["paasta"], &auth).await;
    fake.vms_task(&TaskScript::done("paasta", 7, PAASTA_VMS), &auth)
        .await;

    let inv = inventory(&fake.config("paasta"));
    inv.fetch(&sync_ctx()).await.unwrap();
    assert_eq!(fake.token_requests().await, 1);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    inv.fetch(&sync_ctx()).await.unwrap();
    assert_eq!(fake.token_requests().await, 2);
}

#[tokio::test]
async fn basic_auth_director() {
    let fake = FakeBosh::start().await;
    fake.info_basic().await;
    let auth = Auth::Basic;
    fake.deployments(&["paasta"], &auth).await;
    fake.vms_task(
        &TaskScript::done("paasta", 9, PAASTA_VMS).inline().polls(1),
        &auth,
    )
    .await;

    let snapshot = inventory(&fake.config("paasta"))
        .fetch(&sync_ctx())
        .await
        .unwrap();
    assert_eq!(snapshot.vms, expected_paasta());
    assert_eq!(fake.token_requests().await, 0);
}

#[tokio::test]
async fn a_401_gets_a_fresh_token_and_one_retry() {
    let fake = FakeBosh::start().await;
    fake.info_uaa().await;
    fake.password_grant("old-token", 43199)
        .up_to_n_times(1)
        .mount(&fake.uaa)
        .await;
    fake.password_grant("new-token", 43199)
        .mount(&fake.uaa)
        .await;
    // The director has stopped accepting the old token (revoked, or the UAA key rotated).
    Mock::given(method("GET"))
        .and(bearer_token("old-token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            serde_json::json!({"code": 600000, "description": "Require one of the scopes: bosh.admin"}),
        ))
        .expect(1)
        .mount(&fake.director)
        .await;
    let auth = Auth::Bearer("new-token".into());
    fake.deployments(&["paasta"], &auth).await;
    fake.vms_task(&TaskScript::done("paasta", 7, PAASTA_VMS), &auth)
        .await;

    let snapshot = inventory(&fake.config("paasta"))
        .fetch(&sync_ctx())
        .await
        .unwrap();
    assert_eq!(snapshot.vms, expected_paasta());
    assert_eq!(fake.token_requests().await, 2);
}

#[tokio::test]
async fn a_401_with_a_fresh_token_too_is_an_error() {
    let fake = FakeBosh::start().await;
    fake.info_uaa().await;
    fake.password_grant("useless-token", 43199)
        .mount(&fake.uaa)
        .await;
    Mock::given(method("GET"))
        .and(path("/deployments"))
        .respond_with(ResponseTemplate::new(401))
        .expect(2)
        .mount(&fake.director)
        .await;

    let err = inventory(&fake.config("paasta"))
        .fetch(&sync_ctx())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("401") && msg.contains("fresh UAA token"),
        "{msg}"
    );
    assert!(
        !msg.contains("useless-token") && !msg.contains(PASSWORD),
        "{msg}"
    );
}

#[tokio::test]
async fn wrong_uaa_credentials_are_a_clear_error_without_the_secret() {
    let fake = FakeBosh::start().await;
    fake.info_uaa().await;
    fake.uaa_rejects_the_rest().await;
    let mut config = fake.config("paasta");
    config.password = Secret::new("wrong-password-789");
    let err = inventory(&config).fetch(&sync_ctx()).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("Bad credentials") && msg.contains("\"admin\""),
        "{msg}"
    );
    assert!(!msg.contains("wrong-password-789"), "{msg}");
}

#[tokio::test]
async fn a_failed_task_is_an_error() {
    let fake = FakeBosh::start().await;
    fake.info_basic().await;
    let auth = Auth::Basic;
    fake.deployments(&["paasta"], &auth).await;
    fake.vms_task(
        &TaskScript::done("paasta", 11, "").polls(1).ends(
            "error",
            "Timed out sending 'get_state' to agent a-01 after 45 seconds",
        ),
        &auth,
    )
    .await;
    let err = inventory(&fake.config("paasta"))
        .fetch(&sync_ctx())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("task 11") && msg.contains("\"error\"") && msg.contains("get_state"),
        "{msg}"
    );
    assert!(msg.contains("paasta"), "{msg}");
}

#[tokio::test]
async fn a_task_that_never_finishes_times_out() {
    let fake = FakeBosh::start().await;
    fake.info_basic().await;
    let auth = Auth::Basic;
    fake.deployments(&["paasta"], &auth).await;
    fake.vms_task(
        &TaskScript::done("paasta", 12, PAASTA_VMS).polls(1_000_000),
        &auth,
    )
    .await;
    let mut config = fake.config("paasta");
    config.task_timeout_seconds = 1;
    config.task_poll_millis = 100;
    let started = std::time::Instant::now();
    let err = inventory(&config).fetch(&sync_ctx()).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("task 12") && msg.contains("did not finish within 1 s"),
        "{msg}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test]
async fn a_malformed_task_output_is_an_error_naming_the_line() {
    let fake = FakeBosh::start().await;
    fake.info_basic().await;
    let auth = Auth::Basic;
    fake.deployments(&["paasta"], &auth).await;
    let broken = format!(
        "{}{{\"job_name\": \"cell_z1\", \"index\": 2, \"ips\": [\"10.0.16.23\"\n",
        PAASTA_VMS
    );
    fake.vms_task(&TaskScript::done("paasta", 13, &broken), &auth)
        .await;
    let err = inventory(&fake.config("paasta"))
        .fetch(&sync_ctx())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("line 6") && msg.contains("/tasks/13/output"),
        "{msg}"
    );
}

#[tokio::test]
async fn malformed_json_from_the_director_is_an_error() {
    let fake = FakeBosh::start().await;
    fake.info_basic().await;
    Mock::given(method("GET"))
        .and(path("/deployments"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("<html>502 Bad Gateway</html>", "text/html"),
        )
        .mount(&fake.director)
        .await;
    let err = inventory(&fake.config("paasta"))
        .fetch(&sync_ctx())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("/deployments") && msg.contains("unexpected answer"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_malformed_token_answer_is_an_error_that_does_not_echo_it() {
    let fake = FakeBosh::start().await;
    fake.info_uaa().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            "{\"access_token\": \"leaky-token\", \"expires_in\": \"soon\"}",
            "application/json",
        ))
        .mount(&fake.uaa)
        .await;
    let err = inventory(&fake.config("paasta"))
        .fetch(&sync_ctx())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("not a token response"), "{msg}");
    assert!(
        !msg.contains("leaky-token") && !msg.contains("soon"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_configured_deployment_missing_on_the_director_is_an_error() {
    let fake = FakeBosh::start().await;
    fake.info_basic().await;
    fake.deployments(&["paasta", "concourse"], &Auth::Basic)
        .await;
    fake.never_list("paasta").await;
    let mut config = fake.config("paasta");
    config.diego_deployment = Some("paasta-diego".into());
    let err = inventory(&config).fetch(&sync_ctx()).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("\"paasta-diego\"") && msg.contains("paasta, concourse"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_unreachable_director_is_an_error_naming_it() {
    let mut config = monit_plugin_bosh::BoshConfig::new("127.0.0.1:1", "paasta");
    config.username = USER.into();
    config.timeout_seconds = 2;
    let err = inventory(&config).fetch(&sync_ctx()).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("https://127.0.0.1:1/info"), "{msg}");
}
