//! Answers of the Cloud Controller and UAA are read with a byte limit: a huge one is an error,
//! not a process past its memory quota.

use monit_plugin_autoscale::actuator::{RetryPolicy, build};
use monit_plugin_autoscale::config::AutoscaleConfig;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn a_huge_cloud_controller_answer_is_an_error() {
    let cc = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"access_token": "t", "expires_in": 600})),
        )
        .mount(&cc)
        .await;
    let huge = format!("{{\"instances\": 2, \"pad\": \"{}\"}}", "x".repeat(6 << 20));
    Mock::given(method("GET"))
        .and(path("/v3/apps/g/processes/web"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(huge, "application/json"))
        .mount(&cc)
        .await;
    let cfg: AutoscaleConfig = serde_json::from_value(serde_json::json!({
        "cf_api_url": cc.uri(), "uaa_url": cc.uri(), "client_id": "c", "client_secret": "s",
        "retry_max_times": 0
    }))
    .unwrap();
    let retry = RetryPolicy {
        max_times: 0,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
    };
    let a = build(&cfg, retry).unwrap();
    let e = a.current_instances("g").await.unwrap_err().to_string();
    assert!(
        e.contains("larger than") && e.contains("/v3/apps/g/processes/web"),
        "{e}"
    );
}
