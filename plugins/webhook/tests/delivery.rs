//! The notifier against wiremock receivers: what they get, how failures are retried and named,
//! and that a URL the host recorded as done does not get it again.

use monit_host::config::secret::Secret;
use monit_host::plugin::{Delivery, Notification, NotificationKind, deliver_all};
use monit_plugin_webhook::{Format, WebhookConfig, WebhookNotifier};
use serde_json::Value;
use std::time::{Duration, Instant};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn notification(id: i64) -> Notification {
    let app = monit_host::testing::app_notification();
    Notification {
        id,
        value: Some(93.5),
        title: "shop CPU over 90%".into(),
        message: "shop의 cpu 임계치 [90]%를 초과했습니다. 현재 사용률 [93.5]% 입니다.".into(),
        event_at: app.raised_at + chrono::Duration::minutes(5),
        language: "ko".into(),
        ..app
    }
}

/// Fast retries: the delays are not what these tests are about.
fn notifier(config: WebhookConfig) -> WebhookNotifier {
    WebhookNotifier::new(config)
        .unwrap()
        .with_retry_delays(Duration::from_millis(10), Duration::from_millis(50))
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

async fn send(n: &WebhookNotifier, batch: &[Notification]) -> Vec<anyhow::Result<()>> {
    deliver_all(n, batch)
        .await
        .into_iter()
        .map(Delivery::into_result)
        .collect()
}

fn ok(results: Vec<anyhow::Result<()>>) {
    for r in results {
        r.unwrap();
    }
}

fn errors(results: Vec<anyhow::Result<()>>) -> Vec<String> {
    results
        .into_iter()
        .map(|r| format!("{:#}", r.unwrap_err()))
        .collect()
}

#[tokio::test]
async fn json_document_shape() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .and(header("content-type", "application/json"))
        .and(header("x-monit-notification-id", "42"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let n = notifier(WebhookConfig::new([format!("{}/hook", server.uri())]));
    ok(send(&n, &[notification(42)]).await);

    let body = bodies(&server).await.remove(0);
    assert_eq!(
        body,
        serde_json::json!({
            "notification_id": 42,
            "event": "opened",
            "event_at": "2024-05-01T09:35:00Z",
            "alarm": {
                "id": 7,
                "origin": "con",
                "type": "cpu",
                "title": "shop CPU over 90%",
                "message": "shop의 cpu 임계치 [90]%를 초과했습니다. 현재 사용률 [93.5]% 입니다.",
                "raised_at": "2024-05-01T09:30:00Z",
            },
            "level": "critical",
            "target": {
                "name": "shop",
                "ip": "10.0.1.5",
                "app_name": "shop",
                "app_index": 2,
                "cell_name": "diego-cell/0",
            },
            "value": 93.5,
            "threshold": 90.0,
            "links": [{ "title": "PaaS-TA Monitor", "url": "http://monitor.example.org" }],
            "source": "paasta-monitoring-batch",
        })
    );
}

#[tokio::test]
async fn slack_message_shape() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T0/B0/token"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(2)
        .mount(&server)
        .await;
    let mut c = WebhookConfig::new([format!("{}/services/T0/B0/token", server.uri())]);
    c.format = Format::Slack;
    let n = notifier(c);
    let mut recovered = notification(43);
    recovered.kind = NotificationKind::Recovered;
    recovered.resource_url = None;
    ok(send(&n, &[notification(42), recovered]).await);

    let got = bodies(&server).await;
    let opened = got
        .iter()
        .find(|b| b["blocks"].to_string().contains("notification 42"))
        .unwrap();
    let keys: Vec<_> = opened.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["blocks", "text"]);
    assert_eq!(
        opened["text"],
        "[ALARM] CRITICAL: shop[2]: shop CPU over 90%"
    );
    let blocks = opened["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    assert!(
        blocks[0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("shop CPU over 90%")
    );
    let fields = blocks[1]["fields"].to_string();
    assert!(
        fields.contains("*Value*\\n93.5%") && fields.contains("*Threshold*\\n90.0%"),
        "{fields}"
    );
    let button = blocks
        .iter()
        .find(|b| b["type"] == "actions")
        .map(|b| &b["elements"][0])
        .unwrap();
    assert_eq!(button["type"], "button");
    assert_eq!(button["url"], "http://monitor.example.org");

    let recovered = got
        .iter()
        .find(|b| b["blocks"].to_string().contains("notification 43"))
        .unwrap();
    assert!(
        recovered["text"]
            .as_str()
            .unwrap()
            .starts_with("[RECOVERED]")
    );
    assert!(
        !recovered["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["type"] == "actions"),
        "no link, no button"
    );
}

#[tokio::test]
async fn a_5xx_is_retried_until_accepted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let mut c = WebhookConfig::new([server.uri()]);
    c.retry_max_times = 2;
    ok(send(&notifier(c), &[notification(1)]).await);
}

#[tokio::test]
async fn a_5xx_past_the_retries_fails_naming_status_and_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502).set_body_string("upstream down"))
        .expect(3)
        .mount(&server)
        .await;
    let mut c = WebhookConfig::new([server.uri()]);
    c.retry_max_times = 2;
    let e = errors(send(&notifier(c), &[notification(1)]).await).remove(0);
    assert!(
        e.contains("urls[0]")
            && e.contains("HTTP 502 Bad Gateway: upstream down")
            && e.contains("3 attempts"),
        "{e}"
    );
}

#[tokio::test]
async fn a_4xx_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("invalid_payload"))
        .expect(1)
        .mount(&server)
        .await;
    let mut c = WebhookConfig::new([server.uri()]);
    c.retry_max_times = 3;
    let e = errors(send(&notifier(c), &[notification(1)]).await).remove(0);
    assert!(
        e.contains("HTTP 400 Bad Request: invalid_payload") && e.contains("(1 attempt)"),
        "{e}"
    );
}

#[tokio::test]
async fn a_redirect_is_reported_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/old"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", format!("{}/new", server.uri())),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/new"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let e = errors(
        send(
            &notifier(WebhookConfig::new([format!("{}/old", server.uri())])),
            &[notification(1)],
        )
        .await,
    )
    .remove(0);
    assert!(e.contains("HTTP 302 Found"), "{e}");
}

#[tokio::test]
async fn a_timeout_fails_that_url_only_and_names_it() {
    let fast = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&fast)
        .await;
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .expect(1)
        .mount(&slow)
        .await;
    let mut c = WebhookConfig::new([
        format!("{}/a", fast.uri()),
        format!("{}/secret-path", slow.uri()),
    ]);
    c.timeout_seconds = 1;
    c.retry_max_times = 0;
    let started = Instant::now();
    let e = errors(send(&notifier(c), &[notification(1)]).await).remove(0);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let slow_origin = slow.uri();
    assert!(
        e.contains(&format!(
            "urls[1] {slow_origin}/…: no answer within 1s (1 attempt)"
        )),
        "{e}"
    );
    assert!(e.contains("accepted by 1 of 2 URLs"), "{e}");
    assert!(!e.contains("urls[0]") && !e.contains("secret-path"), "{e}");
}

#[tokio::test]
async fn every_url_gets_every_notification() {
    let a = MockServer::start().await;
    let b = MockServer::start().await;
    for s in [&a, &b] {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .expect(3)
            .mount(s)
            .await;
    }
    let n = notifier(WebhookConfig::new([a.uri(), b.uri()]));
    ok(send(&n, &[notification(1), notification(2), notification(3)]).await);
    for s in [&a, &b] {
        let mut ids: Vec<i64> = bodies(s)
            .await
            .iter()
            .map(|b| b["notification_id"].as_i64().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, [1, 2, 3]);
    }
}

/// The delivery rule: sent = every URL accepted it; the retry of a partly delivered
/// notification goes only to the URLs that did not.
#[tokio::test]
async fn a_retry_skips_the_urls_that_already_accepted() {
    let a = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&a)
        .await;
    let b = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&b)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&b)
        .await;
    let mut c = WebhookConfig::new([a.uri(), b.uri()]);
    c.retry_max_times = 0;
    let n = notifier(c);

    let first = deliver_all(&n, &[notification(9)]).await.remove(0);
    let Delivery::Retry {
        reason, accepted, ..
    } = first
    else {
        panic!("{first:?}")
    };
    assert!(
        reason.contains("accepted by 1 of 2 URLs") && reason.contains("urls[1]"),
        "{reason}"
    );
    assert_eq!(accepted.len(), 1);
    assert!(accepted[0].starts_with("urls[0] "), "{accepted:?}");
    // the host's retry on a later tick skips what the host recorded as done
    let mut again = notification(9);
    again.done_recipients = accepted;
    let second = deliver_all(&n, std::slice::from_ref(&again))
        .await
        .remove(0);
    let Delivery::Sent { rejected } = &second else {
        panic!("{second:?}")
    };
    assert!(rejected.is_empty());
    // and once more with every URL done: nothing is re-sent
    again.done_recipients = n.url_labels();
    ok(send(&n, &[again]).await);
    a.verify().await;
    b.verify().await;
}

#[tokio::test]
async fn a_url_that_is_down_is_not_retried_for_every_notification_of_the_batch() {
    let up = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(12)
        .mount(&up)
        .await;
    let down = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&down)
        .await;
    let mut c = WebhookConfig::new([up.uri(), down.uri()]);
    c.retry_max_times = 1;
    let batch: Vec<_> = (1..=12).map(notification).collect();
    let errs = errors(send(&notifier(c), &batch).await);
    assert_eq!(errs.len(), 12);
    assert!(errs.iter().all(|e| e.contains("urls[1]")), "{errs:?}");
    assert!(
        errs.last()
            .unwrap()
            .contains("not tried, it failed earlier in this run: HTTP 503"),
        "{errs:?}"
    );
    let tried = down.received_requests().await.unwrap().len();
    // without the short cut: 12 notifications × 2 attempts
    assert!(tried < 24, "{tried} requests to a URL that is down");
}

#[tokio::test]
async fn configured_headers_are_sent_and_never_shown() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer s3cr3t-token"))
        .and(header("x-tenant", "ops"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let mut c = WebhookConfig::new([format!("{}/hook/tokentoken?key=querysecret", server.uri())]);
    c.headers
        .insert("Authorization".into(), Secret::new("Bearer s3cr3t-token"));
    c.headers.insert("X-Tenant".into(), Secret::new("ops"));
    let n = notifier(c.clone());
    ok(send(&n, &[notification(1)]).await);
    let debug = format!("{c:?} {n:?}");
    assert!(
        !debug.contains("s3cr3t")
            && !debug.contains("tokentoken")
            && !debug.contains("querysecret"),
        "{debug}"
    );

    // A refusal and an unreachable URL: neither error shows the header, the path or the query.
    let mut wrong = c.clone();
    wrong
        .headers
        .insert("Authorization".into(), Secret::new("Bearer wrong-s3cr3t"));
    let e = errors(send(&notifier(wrong), &[notification(2)]).await).remove(0);
    assert!(e.contains("HTTP 401"), "{e}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut unreachable = c.clone();
    unreachable.urls = vec![format!(
        "http://127.0.0.1:{port}/hook/tokentoken?key=querysecret"
    )];
    unreachable.retry_max_times = 0;
    let e2 = errors(send(&notifier(unreachable), &[notification(3)]).await).remove(0);
    assert!(
        e2.contains(&format!("urls[0] http://127.0.0.1:{port}/…")),
        "{e2}"
    );
    for e in [&e, &e2] {
        assert!(
            !e.contains("s3cr3t") && !e.contains("tokentoken") && !e.contains("querysecret"),
            "{e}"
        );
    }
}

#[tokio::test]
async fn a_digest_is_one_call_listing_every_notification() {
    use monit_host::plugin::Notifier as _;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let n = notifier(WebhookConfig::new([format!("{}/hook", server.uri())]));
    let batch: Vec<Notification> = (1..=12).map(notification).collect();
    let mut session = n.session();
    assert!(session.digests());
    let d = session.deliver_digest(&batch).await;
    session.close().await;
    assert_eq!(d, Delivery::Sent { rejected: vec![] });
    let body = bodies(&server).await.remove(0);
    assert_eq!(body["digest"], true);
    assert_eq!(body["count"], 12);
    assert_eq!(body["alarms"].as_array().unwrap().len(), 12);
    assert_eq!(body["notification_ids"][0], 1);
}
