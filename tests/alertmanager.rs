//! Alertmanager as a receiver, end to end: the binary's `run --once` against the real MariaDB
//! and InfluxDB and a real Alertmanager of each test's own (Debian's `prometheus-alertmanager`,
//! installed by scripts/services.sh, started on a free port by `monit_testkit::alertmanager`).
//! What Alertmanager's API reads back, its resolution, its silences, an Alertmanager that is
//! down, the plugin off, and credentials that never show.
#![cfg(feature = "alertmanager")]

mod common;

use common::{TestEnv, now_s, vm_points};
use monit_testkit::alertmanager::{Alertmanager, Options};
use monit_testkit::hook::HookReceiver;
use serde_json::Value;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `[plugins.paasta]` and `[plugins.alertmanager]` posting to `url`, with `extra` keys. Repeats
/// every 10 minutes (no repeat within a test), digests off (one POST per alarm).
async fn env_with(tag: &str, url: &str, extra: &str) -> TestEnv {
    env_enabled(tag, url, true, extra).await
}

async fn env_enabled(tag: &str, url: &str, enabled: bool, extra: &str) -> TestEnv {
    let env = TestEnv::new(
        tag,
        &format!(
            "digest_threshold = 0\n[plugins.paasta]\nenabled = true\n\
             [plugins.alertmanager]\nenabled = {enabled}\nurl = \"{url}\"\ntimeout_seconds = 2\nretry_max_times = 1\n{extra}\n"
        ),
    )
    .await;
    env.exec(
        "UPDATE alarm_policies SET measure_time = 300, warning_threshold = 85, critical_threshold = 90, \
         repeat_time = 10 WHERE origin_type = 'pas'",
    )
    .await;
    env
}

/// A VM whose CPU is `cpu` over the last 5 minutes (written again with the same `end`, the
/// points are replaced).
async fn vm_at(env: &TestEnv, name: &str, ip: &str, end: i64, cpu: f64) {
    if env
        .scalar_i64(&format!("SELECT COUNT(*) FROM vms WHERE ip = '{ip}'"))
        .await
        == 0
    {
        env.add_vm(name, ip, "vms").await;
    }
    env.write_points(&env.cf_db, &vm_points(ip, end, cpu)).await;
}

fn tick(env: &TestEnv) -> (Value, String) {
    let out = env.run(&["run", "--once", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    (
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        text(&out),
    )
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn alerts_of(am: &Alertmanager, vm: &str) -> Vec<Value> {
    am.alerts()
        .await
        .into_iter()
        .filter(|a| a["labels"]["vm"] == vm)
        .collect()
}

/// The outbox rows of the alertmanager notifier: (kind, status, last_error).
async fn rows(env: &TestEnv) -> Vec<(String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT kind, status, last_error FROM batch_notifications WHERE notifier = 'alertmanager' ORDER BY id",
    )
    .fetch_all(&env.db)
    .await
    .unwrap()
}

/// What Alertmanager posted to its own receiver with `status` about `vm`, within 30 s.
async fn notified(hook: &HookReceiver, status: &str, vm: &str) -> Option<Value> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(r) = hook.requests().into_iter().find(|r| {
            r.body["status"] == status
                && r.body["alerts"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["labels"]["vm"] == vm))
        }) {
            return Some(r.body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

fn ts(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

/// A critical CPU alarm reaches Alertmanager with its labels and the stored title and message;
/// the next tick restates it (its end moves ahead, no new notification); the recovery resolves
/// it, and Alertmanager tells its own receiver so.
#[tokio::test]
async fn an_alarm_reads_back_from_alertmanager_is_restated_and_its_recovery_resolves_it() {
    let hook = HookReceiver::start();
    let am = Alertmanager::start(Some(&hook.url("am")));
    let env = env_with(
        "amlife",
        &am.url(),
        "[plugins.alertmanager.labels]\nplatform = \"e2e\"",
    )
    .await;
    let end = now_s();
    vm_at(&env, "router_z1/0", "10.0.16.11", end, 97.0).await;

    let (sum, _) = tick(&env);
    assert_eq!(sum["notifications"]["sent"], 1, "{sum}");
    let got = alerts_of(&am, "router_z1/0").await;
    assert_eq!(got.len(), 1, "{got:?}");
    let a = &got[0];
    assert_eq!(
        a["labels"],
        serde_json::json!({"alertname": "paasta_cpu", "origin": "pas", "vm": "router_z1/0",
                           "resource": "cpu", "level": "critical", "platform": "e2e"})
    );
    let (id, title, message, raised): (i64, String, String, chrono::NaiveDateTime) =
        sqlx::query_as(
            "SELECT CAST(id AS SIGNED), alarm_title, alarm_message, reg_date FROM alarms WHERE ip = '10.0.16.11'",
        )
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(a["annotations"]["title"], title);
    assert_eq!(a["annotations"]["message"], message);
    assert_eq!(a["annotations"]["alarm_id"], id.to_string());
    // the tick's time; reg_date holds whole seconds
    let lag = ts(&a["startsAt"]) - raised.and_utc();
    assert!(lag.num_milliseconds().abs() < 1000, "{lag}");
    assert_eq!(a["generatorURL"], "https://monitor.example.com");
    assert_eq!(a["status"]["state"], "active");
    assert!(notified(&hook, "firing", "router_z1/0").await.is_some());
    let first_end = ts(&a["endsAt"]);

    // still breaching, no repeat due: no notification, the alert restated
    std::thread::sleep(Duration::from_millis(1100));
    let (sum, _) = tick(&env);
    assert_eq!(sum["notifications"]["sent"], 0, "{sum}");
    assert_eq!(sum["notifications"]["restated"], 1, "{sum}");
    let again = alerts_of(&am, "router_z1/0").await;
    assert!(ts(&again[0]["endsAt"]) > first_end, "{again:?}");

    vm_at(&env, "router_z1/0", "10.0.16.11", end, 10.0).await;
    let (sum, _) = tick(&env);
    assert_eq!(sum["alarms"]["recovered"], 1, "{sum}");
    assert_eq!(sum["notifications"]["restated"], 0, "{sum}");
    assert!(alerts_of(&am, "router_z1/0").await.is_empty());
    let resolved = notified(&hook, "resolved", "router_z1/0")
        .await
        .expect("Alertmanager notifies the resolution");
    assert_eq!(resolved["alerts"][0]["labels"]["level"], "critical");
    let kinds: Vec<(String, String)> = rows(&env)
        .await
        .into_iter()
        .map(|(k, s, _)| (k, s))
        .collect();
    assert_eq!(
        kinds,
        [
            ("opened".to_string(), "sent".to_string()),
            ("recovered".to_string(), "sent".to_string())
        ]
    );
    env.cleanup().await;
}

/// An Alertmanager silence matching our labels holds our alert there: the API shows it
/// suppressed, its receiver hears nothing of it, while an alarm it does not match is notified;
/// the restatement keeps it (suppressed, not gone).
#[tokio::test]
async fn an_alertmanager_silence_matching_our_labels_suppresses_the_alert() {
    let hook = HookReceiver::start();
    let am = Alertmanager::start(Some(&hook.url("am")));
    let env = env_with("amsilence", &am.url(), "").await;
    let silence = am
        .silence(&[("vm", "cell_z1/7"), ("resource", "cpu")], 60)
        .await;
    let end = now_s();
    vm_at(&env, "cell_z1/7", "10.0.16.27", end, 97.0).await;
    vm_at(&env, "cell_z1/8", "10.0.16.28", end, 97.0).await;
    let (sum, _) = tick(&env);
    assert_eq!(sum["notifications"]["sent"], 2, "{sum}");

    let silenced = alerts_of(&am, "cell_z1/7").await;
    assert_eq!(silenced.len(), 1, "{silenced:?}");
    assert_eq!(silenced[0]["status"]["state"], "suppressed");
    assert_eq!(
        silenced[0]["status"]["silencedBy"],
        serde_json::json!([silence])
    );
    assert_eq!(
        alerts_of(&am, "cell_z1/8").await[0]["status"]["state"],
        "active"
    );
    // the other alarm is notified by Alertmanager; by then the silenced one would have been
    assert!(notified(&hook, "firing", "cell_z1/8").await.is_some());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leaked: Vec<_> = hook
        .requests()
        .into_iter()
        .filter(|r| r.body.to_string().contains("cell_z1/7"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");

    let (sum, _) = tick(&env);
    assert_eq!(sum["notifications"]["restated"], 2, "{sum}");
    assert_eq!(
        alerts_of(&am, "cell_z1/7").await[0]["status"]["state"],
        "suppressed"
    );
    env.cleanup().await;
}

/// Alertmanager down: the tick succeeds, the notification stays pending with the reason (the
/// URL named, no alarm lost); back up, the next tick delivers it.
#[tokio::test]
async fn a_down_alertmanager_leaves_the_notification_pending_until_it_is_back() {
    let mut am = Alertmanager::start(None);
    let env = env_with("amdown", &am.url(), "").await;
    am.down();
    vm_at(&env, "router_z1/5", "10.0.16.15", now_s(), 97.0).await;
    let (sum, log) = tick(&env);
    assert_eq!(sum["notifications"]["sent"], 0, "{sum}");
    assert_eq!(sum["notifications"]["pending"], 1, "{sum}");
    let r = rows(&env).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1, "pending");
    let reason = r[0].2.clone().unwrap_or_default();
    assert!(
        reason.contains(&format!("url[0] http://127.0.0.1:{}/…", am.port)),
        "{reason}"
    );
    assert!(log.contains("notifier unavailable"), "{log}");

    am.up();
    let (sum, _) = tick(&env);
    assert_eq!(sum["notifications"]["sent"], 1, "{sum}");
    assert_eq!(rows(&env).await[0].1, "sent");
    assert_eq!(alerts_of(&am, "router_z1/5").await.len(), 1);
    env.cleanup().await;
}

/// An alarm an operator closed in the management app (status 3, no recovery notice) is no
/// longer restated, so Alertmanager lets it end; one held by the batch's own silence was never
/// told and is not posted at all.
#[tokio::test]
async fn only_alarms_told_and_still_open_are_restated() {
    let am = Alertmanager::start(None);
    let env = env_with("amrestate", &am.url(), "").await;
    let end = now_s();
    vm_at(&env, "router_z1/1", "10.0.16.31", end, 97.0).await;
    let out = env.run(&[
        "silence",
        "add",
        "--match",
        "vm=router_z1/2",
        "--for",
        "1h",
        "--comment",
        "e2e",
        "--author",
        "test",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    vm_at(&env, "router_z1/2", "10.0.16.32", end, 97.0).await;
    let (sum, _) = tick(&env);
    assert_eq!(sum["notifications"]["sent"], 1, "{sum}");
    assert!(alerts_of(&am, "router_z1/2").await.is_empty());

    let (sum, _) = tick(&env);
    assert_eq!(sum["notifications"]["restated"], 1, "{sum}");
    // closed by an operator while its VM calms down: no recovery notice goes out for a closed
    // alarm, and nothing is opened again
    env.exec(
        "UPDATE alarms SET resolve_status = '3', complete_user = 'kim' WHERE ip = '10.0.16.31'",
    )
    .await;
    vm_at(&env, "router_z1/1", "10.0.16.31", end, 10.0).await;
    let (sum, _) = tick(&env);
    assert_eq!(sum["notifications"]["sent"], 0, "{sum}");
    assert_eq!(sum["notifications"]["restated"], 0, "{sum}");
    env.cleanup().await;
}

/// `enabled = false`: the alarm is recorded and nothing reaches Alertmanager, no outbox row.
#[tokio::test]
async fn the_plugin_disabled_posts_nothing() {
    let am = Alertmanager::start(None);
    let env = env_enabled("amoff", &am.url(), false, "").await;
    vm_at(&env, "router_z1/3", "10.0.16.13", now_s(), 97.0).await;
    let (sum, _) = tick(&env);
    assert_eq!(sum["alarms"]["opened"], 1, "{sum}");
    assert!(rows(&env).await.is_empty());
    assert!(am.alerts().await.is_empty());

    // the same config enabled: the control, so the test above can fail
    let cfg = std::fs::read_to_string(&env.config).unwrap().replace(
        "[plugins.alertmanager]\nenabled = false",
        "[plugins.alertmanager]\nenabled = true",
    );
    std::fs::write(&env.config, cfg).unwrap();
    vm_at(&env, "router_z1/4", "10.0.16.14", now_s(), 97.0).await;
    tick(&env);
    assert_eq!(alerts_of(&am, "router_z1/4").await.len(), 1);
    env.cleanup().await;
}

/// A wrong password (Alertmanager's own basic auth: 401) and a wrong bearer token (vmauth in
/// front of another one, which answers 400 quoting the token it refuses) are refused: the row is
/// parked, and neither secret shows in the log, the outbox, the tick ledger or check-config.
/// With the right token from the environment and `outbox retry`, the alarm goes through.
#[tokio::test]
async fn credentials_never_show_in_logs_errors_or_rows() {
    let hash = bcrypt_hash("right-pw");
    let am = Alertmanager::start_with(Options {
        web_config: Some(format!("basic_auth_users:\n  monit: {hash}\n")),
        basic_auth: Some(("monit".into(), "right-pw".into())),
        ..Options::default()
    });
    let env = env_with(
        "amsecret",
        &am.url(),
        "user = \"monit\"\npassword = \"Pw-S3cret-42\"",
    )
    .await;
    vm_at(&env, "router_z1/6", "10.0.16.16", now_s(), 97.0).await;
    let (_, log) = tick(&env);
    let r = rows(&env).await;
    assert_eq!(r[0].1, "parked", "{r:?}");
    assert!(
        r[0].2.as_deref().unwrap_or("").contains("HTTP 401"),
        "{r:?}"
    );

    // vmauth in front of another Alertmanager: the right token passes, a wrong one is refused
    // with the token quoted in the answer
    let behind = Alertmanager::start(None);
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    std::fs::write(
        dir.path().join("auth.yml"),
        format!(
            "users:\n  - bearer_token: \"Right-T0ken-77\"\n    url_prefix: \"{}\"\n",
            behind.url()
        ),
    )
    .unwrap();
    let _vmauth = Child(
        Command::new("vmauth")
            .arg(format!(
                "-auth.config={}",
                dir.path().join("auth.yml").display()
            ))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("vmauth (scripts/services.sh installs victoria-metrics)"),
    );
    common::wait_port(port, true);
    let cfg = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(&am.url(), &format!("http://127.0.0.1:{port}"))
        .replace(
            "user = \"monit\"\npassword = \"Pw-S3cret-42\"",
            "bearer_token = \"Wrong-T0ken-S3cret\"",
        );
    std::fs::write(&env.config, cfg).unwrap();
    vm_at(&env, "router_z1/7", "10.0.16.17", now_s(), 97.0).await;
    let (_, log2) = tick(&env);
    let r = rows(&env).await;
    assert_eq!(r[1].1, "parked", "{r:?}");
    let refused = r[1].2.clone().unwrap_or_default();
    assert!(
        refused.contains("cannot find the provided auth token \"Bearer ***\""),
        "the echoed token is masked: {refused}"
    );

    let check = env.run(&["check-config"]);
    let ledger: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT summary, errors FROM batch_runs")
            .fetch_all(&env.db)
            .await
            .unwrap();
    let outbox: Vec<(Option<String>,)> =
        sqlx::query_as("SELECT last_error FROM batch_notifications")
            .fetch_all(&env.db)
            .await
            .unwrap();
    let everything = format!("{log}\n{log2}\n{}\n{ledger:?}\n{outbox:?}", text(&check));
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("monit:Pw-S3cret-42");
    for secret in ["Pw-S3cret-42", "Wrong-T0ken-S3cret", basic.as_str()] {
        assert!(
            !everything.contains(secret),
            "{secret} shown:\n{everything}"
        );
    }

    // the right token from the environment, and the operator retries the parked rows
    let retry = env.run(&["outbox", "retry", "--all-parked"]);
    assert!(retry.status.success(), "{}", text(&retry));
    let out = Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(&env.config)
        .args(["run", "--once"])
        .env_remove("PORT")
        .env(
            "MONIT_BATCH__PLUGINS__ALERTMANAGER__BEARER_TOKEN",
            "Right-T0ken-77",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("Right-T0ken-77"));
    let statuses: Vec<String> = rows(&env).await.into_iter().map(|r| r.1).collect();
    assert_eq!(statuses, ["sent", "sent"]);
    assert_eq!(alerts_of(&behind, "router_z1/6").await.len(), 1);
    assert_eq!(alerts_of(&behind, "router_z1/7").await.len(), 1);
    assert!(am.alerts().await.is_empty());
    env.cleanup().await;
}

/// A child process killed when the test ends, passed or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}
