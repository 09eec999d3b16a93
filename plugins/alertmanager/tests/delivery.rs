//! The notifier against a real Alertmanager (Debian's `prometheus-alertmanager`, one per test on
//! a free port, from `monit_testkit::alertmanager`): what its API reads back, its resolution
//! (and the "resolved" it notifies its own receiver), a level change, a restatement, an
//! Alertmanager that is down or refuses, and TLS with basic auth.

use chrono::Utc;
use monit_host::model::Level;
use monit_host::plugin::{Delivery, Notification, NotificationKind, Notifier as _, deliver_all};
use monit_plugin_alertmanager::{AlertmanagerConfig, AlertmanagerNotifier};
use monit_testkit::alertmanager::{Alertmanager, Options};
use monit_testkit::hook::HookReceiver;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A CPU warning of `vm`, raised 5 minutes ago, notified now.
fn opened(id: i64, vm: &str) -> Notification {
    let now = Utc::now();
    Notification {
        id,
        alarm_id: id,
        target_name: vm.into(),
        raised_at: now - chrono::Duration::minutes(5),
        event_at: now,
        title: format!("[{vm}] cpu warning"),
        message: format!("{vm}: cpu 91.2% over 85%"),
        resource_url: Some("https://monitor.example".into()),
        ..monit_host::testing::vm_notification()
    }
}

fn notifier(url: &str) -> AlertmanagerNotifier {
    notifier_with(AlertmanagerConfig::new(url))
}

fn notifier_with(c: AlertmanagerConfig) -> AlertmanagerNotifier {
    AlertmanagerNotifier::new(c, Duration::from_secs(600))
        .unwrap()
        .with_retry_delays(Duration::from_millis(10), Duration::from_millis(50))
}

async fn send(n: &AlertmanagerNotifier, batch: &[Notification]) -> Vec<Delivery> {
    deliver_all(n, batch).await
}

fn sent(d: &Delivery) -> bool {
    matches!(d, Delivery::Sent { rejected } if rejected.is_empty())
}

/// The alerts Alertmanager lists for `vm`.
async fn alerts_of(am: &Alertmanager, vm: &str) -> Vec<Value> {
    am.alerts()
        .await
        .into_iter()
        .filter(|a| a["labels"]["vm"] == vm)
        .collect()
}

fn ts(v: &Value) -> chrono::DateTime<Utc> {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

#[tokio::test]
async fn an_alarm_reads_back_with_its_labels_annotations_and_times() {
    let am = Alertmanager::start(None);
    let mut config = AlertmanagerConfig::new(am.url());
    config.labels.insert("platform".into(), "paasta-lab".into());
    let n = notifier_with(config);
    let alarm = opened(1, "router_z1/0");
    assert!(sent(&send(&n, std::slice::from_ref(&alarm)).await[0]));

    let got = alerts_of(&am, "router_z1/0").await;
    assert_eq!(got.len(), 1, "{got:?}");
    let a = &got[0];
    assert_eq!(
        a["labels"],
        serde_json::json!({
            "alertname": "paasta_cpu", "origin": "pas", "vm": "router_z1/0",
            "resource": "cpu", "level": "warning", "platform": "paasta-lab"
        })
    );
    assert_eq!(a["annotations"]["title"], alarm.title);
    assert_eq!(a["annotations"]["message"], alarm.message);
    assert_eq!(a["annotations"]["alarm_id"], "1");
    assert_eq!(a["annotations"]["ip"], "10.0.0.5");
    assert_eq!(a["generatorURL"], "https://monitor.example");
    assert_eq!(a["status"]["state"], "active");
    // Alertmanager keeps milliseconds
    let ms = |t: chrono::DateTime<Utc>| t.timestamp_millis();
    assert_eq!(ms(ts(&a["startsAt"])), ms(alarm.raised_at));
    assert_eq!(
        ms(ts(&a["endsAt"])),
        ms(alarm.event_at + chrono::Duration::minutes(10))
    );
}

#[tokio::test]
async fn a_container_alarm_is_labelled_by_app_and_index() {
    let am = Alertmanager::start(None);
    let n = notifier(&am.url());
    let now = Utc::now();
    let alarm = Notification {
        raised_at: now,
        event_at: now,
        ..monit_host::testing::app_notification()
    };
    assert!(sent(&send(&n, &[alarm]).await[0]));
    let got = am.alerts().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["labels"]["app"], "shop");
    assert_eq!(got[0]["labels"]["index"], "2");
    assert_eq!(got[0]["labels"]["origin"], "con");
    assert_eq!(got[0]["labels"]["level"], "critical");
    assert_eq!(got[0]["annotations"]["cell"], "diego-cell/0");
    assert!(got[0]["labels"].get("vm").is_none());
}

/// A recovery ends the alert: the API no longer lists it, and Alertmanager tells its own
/// receiver (a webhook with `send_resolved`) that it is resolved.
#[tokio::test]
async fn a_recovery_resolves_the_alert_and_alertmanager_notifies_resolved() {
    let hook = HookReceiver::start();
    let am = Alertmanager::start(Some(&hook.url("am")));
    let n = notifier(&am.url());
    let alarm = opened(7, "cell_z1/3");
    assert!(sent(&send(&n, std::slice::from_ref(&alarm)).await[0]));
    assert_eq!(alerts_of(&am, "cell_z1/3").await.len(), 1);
    let firing = wait_for(&hook, "firing").await;
    assert_eq!(firing["alerts"][0]["labels"]["vm"], "cell_z1/3");

    let recovered = Notification {
        id: 8,
        kind: NotificationKind::Recovered,
        event_at: Utc::now(),
        ..alarm
    };
    assert!(sent(&send(&n, &[recovered]).await[0]));
    assert!(alerts_of(&am, "cell_z1/3").await.is_empty());
    let resolved = wait_for(&hook, "resolved").await;
    assert_eq!(resolved["alerts"][0]["labels"]["vm"], "cell_z1/3");
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
}

/// What Alertmanager posted to its receiver with `status`, waiting up to 30 s (its group_wait
/// and group_interval are 1 s).
async fn wait_for(hook: &HookReceiver, status: &str) -> Value {
    let start = Instant::now();
    loop {
        if let Some(r) = hook
            .requests()
            .into_iter()
            .find(|r| r.body["status"] == status)
        {
            return r.body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Alertmanager sent no {status:?} notification: {:?}",
            hook.requests()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_escalation_fires_critical_and_ends_the_warning() {
    let am = Alertmanager::start(None);
    let n = notifier(&am.url());
    let alarm = opened(3, "router_z1/1");
    send(&n, std::slice::from_ref(&alarm)).await;
    let escalated = Notification {
        id: 4,
        kind: NotificationKind::Escalated,
        level: Level::Critical,
        event_at: Utc::now(),
        ..alarm
    };
    assert!(sent(&send(&n, &[escalated]).await[0]));
    let levels: Vec<Value> = alerts_of(&am, "router_z1/1")
        .await
        .iter()
        .map(|a| a["labels"]["level"].clone())
        .collect();
    assert_eq!(levels, ["critical"]);
}

/// A digest is one POST of every alert; two events of one alarm in it end as the later says.
#[tokio::test]
async fn a_digest_posts_every_alert_and_keeps_their_order() {
    let am = Alertmanager::start(None);
    let n = notifier(&am.url());
    let a = opened(20, "vm/a");
    let b = opened(21, "vm/b");
    let a_recovered = Notification {
        id: 22,
        kind: NotificationKind::Recovered,
        ..a.clone()
    };
    let mut session = n.session();
    let d = session.deliver_digest(&[a_recovered, a, b]).await;
    session.close().await;
    assert!(sent(&d), "{d:?}");
    let vms: Vec<Value> = am
        .alerts()
        .await
        .iter()
        .map(|x| x["labels"]["vm"].clone())
        .collect();
    assert_eq!(vms, ["vm/b"]);
}

/// The restatement moves `endsAt` a hold ahead of now: an alarm notified long ago stays
/// active for as long as the batch restates it.
#[tokio::test]
async fn a_restatement_keeps_the_alert_firing() {
    let am = Alertmanager::start(None);
    let n = notifier(&am.url());
    let mut alarm = opened(5, "router_z1/2");
    // notified 8 minutes ago: it holds 2 more minutes
    alarm.event_at = Utc::now() - chrono::Duration::minutes(8);
    send(&n, std::slice::from_ref(&alarm)).await;
    let before = ts(&alerts_of(&am, "router_z1/2").await[0]["endsAt"]);
    assert!(before < Utc::now() + chrono::Duration::minutes(3));
    n.restate_firing(std::slice::from_ref(&alarm))
        .await
        .unwrap();
    let after = ts(&alerts_of(&am, "router_z1/2").await[0]["endsAt"]);
    assert!(
        after > Utc::now() + chrono::Duration::minutes(9),
        "{before} -> {after}"
    );
}

/// Down: nothing delivered, worth another try (the host keeps the row pending), the URL named;
/// back up, the same notification goes through.
#[tokio::test]
async fn a_down_alertmanager_is_retried_later_not_lost() {
    let mut am = Alertmanager::start(None);
    let n = notifier(&am.url());
    am.down();
    let alarm = opened(9, "router_z1/9");
    let d = send(&n, std::slice::from_ref(&alarm)).await.remove(0);
    match &d {
        Delivery::Unavailable { reason } => {
            assert!(
                reason.contains(&format!("url[0] http://127.0.0.1:{}/…", am.port)),
                "{reason}"
            );
            assert!(reason.contains("3 attempts"), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        n.restate_firing(std::slice::from_ref(&alarm))
            .await
            .is_err()
    );
    am.up();
    assert!(sent(&send(&n, &[alarm]).await[0]));
    assert_eq!(alerts_of(&am, "router_z1/9").await.len(), 1);
}

/// A 4xx (here a wrong path: Alertmanager answers 404) is refused for good, not retried.
#[tokio::test]
async fn a_4xx_is_refused_at_once() {
    let am = Alertmanager::start(None);
    let n = notifier(&format!("{}/no-such-prefix", am.url()));
    let d = send(&n, &[opened(1, "vm/x")]).await.remove(0);
    match &d {
        Delivery::Reject { reason } => {
            assert!(reason.contains("HTTP 404"), "{reason}");
            assert!(reason.contains("(1 attempt)"), "{reason}");
        }
        other => panic!("expected Reject, got {other:?}"),
    }
}

/// Every replica of a cluster gets every alert.
#[tokio::test]
async fn every_url_gets_every_alert() {
    let (one, two) = (Alertmanager::start(None), Alertmanager::start(None));
    let mut config = AlertmanagerConfig::new(one.url());
    config.url.push(two.url());
    let n = notifier_with(config);
    assert!(sent(&send(&n, &[opened(1, "vm/ha")]).await[0]));
    assert_eq!(alerts_of(&one, "vm/ha").await.len(), 1);
    assert_eq!(alerts_of(&two, "vm/ha").await.len(), 1);
}

const PKI: &str = "/var/tmp/ci-pki";

/// Alertmanager over https (the test CA of scripts/services.sh) with basic auth: the right
/// password gets through; a wrong one, or a bearer token it does not take, is refused (401)
/// and neither secret shows in the error.
#[tokio::test]
async fn tls_and_basic_auth_against_alertmanager_itself() {
    let ca = std::path::Path::new(PKI).join("ca.pem");
    assert!(ca.exists(), "{} (run scripts/services.sh)", ca.display());
    let hash = bcrypt::hash("am-pw-S3cret", 4).unwrap();
    let am = Alertmanager::start_with(Options {
        web_config: Some(format!(
            "tls_server_config:\n  cert_file: {PKI}/server.pem\n  key_file: {PKI}/server.key\n\
             basic_auth_users:\n  monit: {hash}\n"
        )),
        ca_file: Some(ca.clone()),
        basic_auth: Some(("monit".into(), "am-pw-S3cret".into())),
        ..Options::default()
    });
    assert!(am.url().starts_with("https://"));
    let mut config = AlertmanagerConfig::new(am.url());
    config.ca_file = Some(ca.clone());
    config.user = Some("monit".into());
    config.password = monit_host::config::secret::Secret::new("am-pw-S3cret");
    assert!(sent(
        &send(&notifier_with(config.clone()), &[opened(1, "vm/tls")]).await[0]
    ));
    assert_eq!(alerts_of(&am, "vm/tls").await.len(), 1);

    let mut wrong = config.clone();
    wrong.password = monit_host::config::secret::Secret::new("wrong-pw-S3cret");
    let mut token = config.clone();
    token.user = None;
    token.bearer_token = monit_host::config::secret::Secret::new("tok-S3cret-value");
    for c in [wrong, token] {
        let d = send(&notifier_with(c), &[opened(2, "vm/tls2")])
            .await
            .remove(0);
        let Delivery::Reject { reason } = &d else {
            panic!("expected Reject, got {d:?}")
        };
        assert!(reason.contains("HTTP 401"), "{reason}");
        assert!(
            !reason.contains("S3cret") && !format!("{d:?}").contains("S3cret"),
            "{reason}"
        );
    }
    assert!(alerts_of(&am, "vm/tls2").await.is_empty());

    // without the CA the certificate is not trusted: a network error, retried later
    let mut no_ca = config;
    no_ca.ca_file = None;
    no_ca.retry_max_times = 0;
    let d = send(&notifier_with(no_ca), &[opened(3, "vm/tls3")])
        .await
        .remove(0);
    assert!(matches!(d, Delivery::Unavailable { .. }), "{d:?}");
}
