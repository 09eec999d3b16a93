//! The autoscaler end to end: policies in a real MariaDB (a Portal DB of its own per test),
//! container metrics in a real InfluxDB (a database of its own per test), the PaaS-TA portal, the
//! Cloud Controller and UAA as wiremock fakes following their documented shapes.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use monit_host::config::Settings;
use monit_host::metric_store::influx::InfluxClient;
use monit_host::plugin::{ScaleAction, ScaleContext, ScaleDecision, ScaleOutcome, Scaler as _};
use monit_plugin_autoscale::AutoscaleScaler;
use monit_plugin_autoscale::config::AutoscaleConfig;
use monit_testkit::{TestDb, create_influx_db, drop_influx_db, influx_url, unique};
use serde_json::json;
use sqlx::MySqlPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use wiremock::matchers::{
    any, basic_auth, bearer_token, body_json, body_partial_json, body_string_contains, method, path,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GUID: &str = "6f3a0c1e-1111-4000-8000-00000000a001";
const APP: &str = "spring-music";
const GIB: f64 = 1_073_741_824.0;
/// CPU load of a busy app in the tests, percent of one core: far enough above the max (80) that
/// a window edge read a little low still crosses it.
const HOT: f64 = 120.0;

/// A policy row; `None` is stored as NULL.
#[derive(Clone)]
struct Row {
    no: i64,
    guid: &'static str,
    app: &'static str,
    min: Option<i64>,
    max: Option<i64>,
    cpu_min: Option<f64>,
    cpu_max: Option<f64>,
    mem_min: Option<i64>,
    mem_max: Option<i64>,
    check: i64,
    inc: &'static str,
    dec: &'static str,
}

fn row(min: i64, max: i64) -> Row {
    Row {
        no: 1,
        guid: GUID,
        app: APP,
        min: Some(min),
        max: Some(max),
        cpu_min: Some(20.0),
        cpu_max: Some(80.0),
        mem_min: Some(20),
        mem_max: Some(80),
        check: 120,
        inc: "Y",
        dec: "Y",
    }
}

/// The table as spec 1.1 describes it (float CPU thresholds, int memory thresholds).
const SPEC_TABLE: &str = "CREATE TABLE auto_scaling_config (
    no int NOT NULL, guid varchar(255) NOT NULL, org varchar(255), space varchar(255), app varchar(255),
    instance_min_cnt int, instance_max_cnt int, cpu_threshold_min_per float, cpu_threshold_max_per float,
    memory_min_size int, memory_max_size int, check_time_sec int NOT NULL,
    auto_increase_yn char(1) NOT NULL, auto_decrease_yn char(1) NOT NULL, PRIMARY KEY (no))";

/// The table as the PaaS-TA portal's own DDL creates it.
const PORTAL_TABLE: &str = "CREATE TABLE auto_scaling_config (
    no int(11) NOT NULL, guid varchar(255) NOT NULL, org varchar(255) DEFAULT NULL,
    space varchar(255) DEFAULT NULL, app varchar(255) DEFAULT NULL,
    instance_min_cnt int(11) NOT NULL, instance_max_cnt int(11) NOT NULL,
    cpu_threshold_min_per decimal(2,1) NOT NULL, cpu_threshold_max_per decimal(2,1) NOT NULL,
    memory_min_size int(11) DEFAULT NULL, memory_max_size int(11) DEFAULT NULL,
    check_time_sec int(11) NOT NULL, auto_increase_yn varchar(1) DEFAULT NULL,
    auto_decrease_yn varchar(1) DEFAULT NULL, PRIMARY KEY (no))";

struct Env {
    portal_db: TestDb,
    portal: MySqlPool,
    influx_db: String,
    influx: InfluxClient,
    settings: Settings,
    now: DateTime<Utc>,
}

impl Env {
    async fn new(table: &str, rows: &[Row]) -> Env {
        let portal_db = TestDb::create("as_portal").await;
        let portal = portal_db.pool.clone();
        sqlx::query(sqlx::AssertSqlSafe(table.to_string()))
            .execute(&portal)
            .await
            .unwrap();
        for r in rows {
            sqlx::query(
                "INSERT INTO auto_scaling_config VALUES (?, ?, 'org', 'space', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(r.no)
            .bind(r.guid)
            .bind(r.app)
            .bind(r.min)
            .bind(r.max)
            .bind(r.cpu_min)
            .bind(r.cpu_max)
            .bind(r.mem_min)
            .bind(r.mem_max)
            .bind(r.check)
            .bind(r.inc)
            .bind(r.dec)
            .execute(&portal)
            .await
            .unwrap();
        }
        let influx_db = unique("monit_test_as_metrics");
        let settings: Settings = serde_json::from_value(json!({
            "monitoring_db": {"dbname": "unused"},
            "influx": {"url": influx_url(), "bucket_seconds": 30},
        }))
        .unwrap();
        let influx = InfluxClient::new(&settings.influx).unwrap();
        create_influx_db(&influx_url(), &influx_db).await;
        Env {
            portal_db,
            portal,
            influx_db,
            influx,
            settings,
            now: Utc::now(),
        }
    }

    /// Points of one app instance every 10 s over the last 400 s: CPU at `cpu(t)` percent of a
    /// core (cumulative seconds), memory at `mem` percent of a 1 GiB limit.
    async fn instance(&self, index: i64, cpu: impl Fn(i64) -> f64, mem: f64) {
        let end = self.now.timestamp();
        let start = end - 400;
        let tags = format!(
            "application_id={GUID},application_index={index},application_name={APP},cell_ip=10.0.16.21,\
             container_id=/garden/c{index},container_interface=wggd{index}-0"
        );
        let mut lines = String::new();
        let mut cpu_seconds = 1000.0;
        for t in (start..=end).step_by(10) {
            cpu_seconds += cpu(t) / 100.0 * 10.0;
            let fields = |v: f64| format!("app_disk={GIB},app_mem={GIB},value={v}");
            lines.push_str(&format!(
                "container_metrics,{tags},name=cpu_usage_total {} {t}\n",
                fields(cpu_seconds)
            ));
            lines.push_str(&format!(
                "container_metrics,{tags},name=memory_usage {} {t}\n",
                fields(mem / 100.0 * GIB)
            ));
            lines.push_str(&format!(
                "container_metrics,{tags},name=load_average {} {t}\n",
                fields(0.5)
            ));
        }
        self.influx.write(&self.influx_db, &lines).await.unwrap();
    }

    /// `n` instances at a steady load.
    async fn load(&self, n: i64, cpu: f64, mem: f64) {
        for i in 0..n {
            self.instance(i, |_| cpu, mem).await;
        }
    }

    async fn run(
        &self,
        scaler: &AutoscaleScaler,
        dry_run: bool,
        last: &HashMap<String, DateTime<Utc>>,
    ) -> Vec<ScaleDecision> {
        self.run_at(scaler, dry_run, last, self.now).await
    }

    async fn run_at(
        &self,
        scaler: &AutoscaleScaler,
        dry_run: bool,
        last: &HashMap<String, DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Vec<ScaleDecision> {
        let ctx = ScaleContext {
            now,
            settings: &self.settings,
            metrics: &self.influx.clone().into(),
            vms: &[],
            dry_run,
            last_scaled: last,
        };
        scaler.scale(&ctx).await.unwrap()
    }

    async fn drop(self) {
        self.portal_db.drop().await;
        drop_influx_db(&influx_url(), &self.influx_db).await;
    }
}

fn config(v: serde_json::Value) -> AutoscaleConfig {
    serde_json::from_value(v).unwrap()
}

fn scaler(env: &Env, cfg: serde_json::Value) -> AutoscaleScaler {
    AutoscaleScaler::with_retry_delays(
        config(cfg),
        env.portal.clone(),
        Duration::from_millis(1),
        Duration::from_millis(5),
    )
    .unwrap()
    .reading_metrics_from(env.influx_db.clone(), "container_metrics".into())
}

fn portal_cfg(portal: &MockServer) -> serde_json::Value {
    json!({"enabled": true, "actuator": "portal", "portal_url": portal.uri(), "retry_max_times": 2, "timeout_seconds": 5})
}

/// A Cloud Controller whose root links to `uaa`, and a UAA that grants `tok-1` to the cf CLI
/// client for admin/pw.
async fn cf_and_uaa() -> (MockServer, MockServer) {
    let cc = MockServer::start().await;
    let uaa = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "links": {"self": {"href": cc.uri()}, "uaa": {"href": uaa.uri()}, "login": {"href": uaa.uri()}}
        })))
        .mount(&cc)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(basic_auth("cf", ""))
        .and(body_string_contains("grant_type=password"))
        .and(body_string_contains("username=admin"))
        .and(body_string_contains("password=pw"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "tok-1", "token_type": "bearer", "expires_in": 43199, "scope": "cloud_controller.admin", "jti": "j"
        })))
        .mount(&uaa)
        .await;
    (cc, uaa)
}

fn cf_cfg(cc: &MockServer) -> serde_json::Value {
    json!({"enabled": true, "actuator": "cf", "cf_api_url": cc.uri(), "cf_username": "admin", "cf_password": "pw",
           "retry_max_times": 2, "timeout_seconds": 5})
}

async fn process(cc: &MockServer, instances: i64) {
    Mock::given(method("GET"))
        .and(path(format!("/v3/apps/{GUID}/processes/web")))
        .and(bearer_token("tok-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "guid": "p-1", "type": "web", "instances": instances, "memory_in_mb": 1024
        })))
        .mount(cc)
        .await;
}

fn scale_path() -> String {
    format!("/v3/apps/{GUID}/processes/web/actions/scale")
}

fn only(decisions: &[ScaleDecision]) -> &ScaleDecision {
    assert_eq!(decisions.len(), 1, "{decisions:#?}");
    &decisions[0]
}

fn code(d: &ScaleDecision) -> &str {
    d.reason.split(':').next().unwrap_or_default()
}

#[tokio::test]
async fn cpu_over_max_scales_out_through_the_cloud_controller() {
    let env = Env::new(SPEC_TABLE, &[row(1, 4)]).await;
    env.load(2, HOT, 50.0).await;
    let (cc, _uaa) = cf_and_uaa().await;
    process(&cc, 2).await;
    Mock::given(method("POST"))
        .and(path(scale_path()))
        .and(bearer_token("tok-1"))
        .and(body_json(json!({"instances": 3})))
        .respond_with(
            ResponseTemplate::new(202)
                .set_body_json(json!({"guid": "p-1", "type": "web", "instances": 3})),
        )
        .expect(1)
        .mount(&cc)
        .await;
    let s = scaler(&env, cf_cfg(&cc));
    let d = env.run(&s, false, &HashMap::new()).await;
    let d = only(&d);
    assert_eq!(
        (d.action, d.outcome),
        (ScaleAction::Out, ScaleOutcome::Acted),
        "{d:#?}"
    );
    assert_eq!((d.instances_before, d.instances_after), (Some(2), Some(3)));
    assert_eq!(code(d), "cpu_high");
    assert!(
        d.reason.starts_with("cpu_high: mean CPU"),
        "code said once: {}",
        d.reason
    );
    let cpu = d.cpu_percent.unwrap();
    assert!(cpu > 80.0 && cpu <= HOT + 0.5, "mean CPU {cpu}");
    assert!((d.memory_percent.unwrap() - 50.0).abs() < 0.5);
    assert_eq!(d.app_guid, GUID);
    assert_eq!(d.app_name, APP);
    cc.verify().await;
    env.drop().await;
}

#[tokio::test]
async fn low_cpu_and_memory_scale_in_through_the_portal() {
    let env = Env::new(SPEC_TABLE, &[row(1, 4)]).await;
    env.load(3, 5.0, 10.0).await;
    let portal = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/external/app/updateApp"))
        .and(body_partial_json(json!({
            "appName": APP, "appGuid": GUID, "action": "I", "instanceCnt": "3", "cause": "CPU",
            "memoryUsage": "10.0"
        })))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&portal)
        .await;
    let s = scaler(&env, portal_cfg(&portal));
    let d = env.run(&s, false, &HashMap::new()).await;
    let d = only(&d);
    assert_eq!(
        (d.action, d.outcome),
        (ScaleAction::In, ScaleOutcome::Acted),
        "{d:#?}"
    );
    assert_eq!((d.instances_before, d.instances_after), (Some(3), Some(2)));
    assert_eq!(code(d), "load_low");
    assert!(
        d.reason.starts_with("load_low: mean CPU"),
        "code said once: {}",
        d.reason
    );
    portal.verify().await;
    // every value of the body is a string, as the portal expects
    let body: serde_json::Value =
        serde_json::from_slice(&portal.received_requests().await.unwrap()[0].body).unwrap();
    assert!(
        body.as_object().unwrap().values().all(|v| v.is_string()),
        "{body}"
    );
    env.drop().await;
}

#[tokio::test]
async fn at_max_a_needed_scale_out_is_blocked_and_nothing_is_sent() {
    let env = Env::new(SPEC_TABLE, &[row(1, 4)]).await;
    env.load(4, HOT, 50.0).await;
    let cc = MockServer::start().await;
    let uaa = MockServer::start().await;
    // client credentials and a configured uaa_url: no discovery call
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(basic_auth("monit-batch", "s3cr3t"))
        .and(body_string_contains("grant_type=client_credentials"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "tok-1", "token_type": "bearer", "expires_in": 600}),
        ))
        .expect(1)
        .mount(&uaa)
        .await;
    process(&cc, 4).await;
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&cc)
        .await;
    Mock::given(method("POST"))
        .and(path(scale_path()))
        .respond_with(ResponseTemplate::new(202))
        .expect(0)
        .mount(&cc)
        .await;
    let s = scaler(
        &env,
        json!({"actuator": "cf", "cf_api_url": cc.uri(), "uaa_url": uaa.uri(), "client_id": "monit-batch", "client_secret": "s3cr3t"}),
    );
    let d = env.run(&s, false, &HashMap::new()).await;
    let d = only(&d);
    assert_eq!(
        (d.action, d.outcome),
        (ScaleAction::Out, ScaleOutcome::Blocked),
        "{d:#?}"
    );
    assert_eq!((d.instances_before, d.instances_after), (Some(4), None));
    assert_eq!(code(d), "at_max");
    assert!(d.reason.contains("instance_max_cnt 4"), "{}", d.reason);
    cc.verify().await;
    uaa.verify().await;
    env.drop().await;
}

#[tokio::test]
async fn at_min_nothing_is_removed() {
    let env = Env::new(SPEC_TABLE, &[row(2, 4)]).await;
    env.load(2, 1.0, 1.0).await;
    let portal = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&portal)
        .await;
    let s = scaler(&env, portal_cfg(&portal));
    let d = env.run(&s, false, &HashMap::new()).await;
    let d = only(&d);
    assert_eq!(
        (d.action, d.outcome),
        (ScaleAction::In, ScaleOutcome::Skipped),
        "{d:#?}"
    );
    assert_eq!(code(d), "at_min");
    portal.verify().await;
    env.drop().await;
}

#[tokio::test]
async fn cooldown_from_the_recorded_history_holds_a_second_action() {
    let env = Env::new(SPEC_TABLE, &[row(1, 4)]).await;
    env.load(2, HOT, 50.0).await;
    // the host's side: a Monitoring DB with the scaling history
    let mon_db = TestDb::create("as_monitoring").await;
    let history = mon_db.pool.clone();
    monit_host::store::db::MIGRATOR.run(&history).await.unwrap();

    let portal = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/external/app/updateApp"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&portal)
        .await;
    let s = scaler(&env, portal_cfg(&portal));

    let first = env
        .run(
            &s,
            false,
            &monit_host::store::scaling_history::last_acted(&history)
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(only(&first).outcome, ScaleOutcome::Acted, "{first:#?}");
    monit_host::store::scaling_history::record_decisions(&history, &first, env.now)
        .await
        .unwrap();

    // next tick, 60 s later, the load is still high: the cooldown (check_time_sec, 120 s) holds it
    let last = monit_host::store::scaling_history::last_acted(&history)
        .await
        .unwrap();
    assert!(last.contains_key(GUID), "{last:?}");
    let second = env
        .run_at(&s, false, &last, env.now + ChronoDuration::seconds(60))
        .await;
    let d = only(&second);
    assert_eq!(
        (d.action, d.outcome),
        (ScaleAction::Out, ScaleOutcome::Skipped),
        "{d:#?}"
    );
    assert_eq!(code(d), "cooldown");
    portal.verify().await;

    mon_db.drop().await;
    env.drop().await;
}

#[tokio::test]
async fn load_that_flips_every_bucket_does_not_flip_instances() {
    let env = Env::new(SPEC_TABLE, &[row(1, 4)]).await;
    // 95 % and 15 % in alternate 30 s buckets: each bucket alone crosses a threshold, the window does not
    for i in 0..2 {
        env.instance(i, |t| if (t / 30) % 2 == 0 { 95.0 } else { 15.0 }, 15.0)
            .await;
    }
    let portal = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&portal)
        .await;
    let s = scaler(&env, portal_cfg(&portal));
    let d = env.run(&s, false, &HashMap::new()).await;
    let d = only(&d);
    assert_eq!(
        (d.action, d.outcome),
        (ScaleAction::None, ScaleOutcome::Skipped),
        "{d:#?}"
    );
    assert_eq!(code(d), "within_thresholds");
    let cpu = d.cpu_percent.unwrap();
    assert!(
        (40.0..=70.0).contains(&cpu),
        "the window's mean, not a bucket: {cpu}"
    );
    portal.verify().await;
    env.drop().await;
}

#[tokio::test]
async fn dry_run_decides_and_calls_nothing() {
    let env = Env::new(SPEC_TABLE, &[row(1, 4)]).await;
    env.load(2, HOT, 50.0).await;
    let cc = MockServer::start().await;
    let uaa = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&cc)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&uaa)
        .await;
    let mut cfg = cf_cfg(&cc);
    cfg["uaa_url"] = json!(uaa.uri());
    let s = scaler(&env, cfg);
    let d = env.run(&s, true, &HashMap::new()).await;
    let d = only(&d);
    assert_eq!(
        (d.action, d.outcome),
        (ScaleAction::Out, ScaleOutcome::DryRun),
        "{d:#?}"
    );
    assert_eq!((d.instances_before, d.instances_after), (Some(2), Some(3)));
    assert!(
        d.reason.starts_with("cpu_high") && d.reason.contains("dry run"),
        "{}",
        d.reason
    );
    cc.verify().await;
    uaa.verify().await;
    env.drop().await;
}

#[tokio::test]
async fn dry_run_from_config_decides_and_calls_nothing_on_a_real_tick() {
    let env = Env::new(SPEC_TABLE, &[row(1, 4)]).await;
    env.load(2, HOT, 50.0).await;
    let cc = MockServer::start().await;
    let uaa = MockServer::start().await;
    for server in [&cc, &uaa] {
        Mock::given(any())
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .mount(server)
            .await;
    }
    let mut cfg = cf_cfg(&cc);
    cfg["uaa_url"] = json!(uaa.uri());
    cfg["dry_run"] = json!(true);
    let s = scaler(&env, cfg);
    // not a --dry-run tick: the config alone keeps it from acting
    let d = env.run(&s, false, &HashMap::new()).await;
    let d = only(&d);
    assert_eq!(
        (d.action, d.outcome),
        (ScaleAction::Out, ScaleOutcome::DryRun),
        "{d:#?}"
    );
    cc.verify().await;
    uaa.verify().await;
    env.drop().await;
}

#[tokio::test]
async fn a_5xx_is_retried_then_recorded_as_failed() {
    let env = Env::new(SPEC_TABLE, &[row(1, 4)]).await;
    env.load(2, HOT, 50.0).await;
    let portal = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/external/app/updateApp"))
        .respond_with(ResponseTemplate::new(503).set_body_string("portal restarting"))
        .expect(3) // the first try and retry_max_times = 2 retries
        .mount(&portal)
        .await;
    let s = scaler(&env, portal_cfg(&portal));
    let d = env.run(&s, false, &HashMap::new()).await;
    let d = only(&d);
    assert_eq!(
        (d.action, d.outcome),
        (ScaleAction::Out, ScaleOutcome::Failed),
        "{d:#?}"
    );
    assert_eq!(d.instances_after, None);
    assert!(
        d.reason.starts_with("api_error") && d.reason.contains("HTTP 503"),
        "{}",
        d.reason
    );
    assert!(d.reason.contains("portal restarting"), "{}", d.reason);
    portal.verify().await;
    env.drop().await;
}

#[tokio::test]
async fn a_portal_that_does_not_answer_times_out_is_retried_and_recorded_as_failed() {
    let env = Env::new(SPEC_TABLE, &[row(1, 4)]).await;
    env.load(2, HOT, 50.0).await;
    let portal = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/external/app/updateApp"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(3)))
        .expect(3) // a timeout is retried like a network error
        .mount(&portal)
        .await;
    let mut cfg = portal_cfg(&portal);
    cfg["timeout_seconds"] = json!(1);
    let s = scaler(&env, cfg);
    let d = env.run(&s, false, &HashMap::new()).await;
    let d = only(&d);
    assert_eq!(
        (d.action, d.outcome),
        (ScaleAction::Out, ScaleOutcome::Failed),
        "{d:#?}"
    );
    assert_eq!(d.instances_after, None);
    assert!(
        d.reason.to_lowercase().contains("time"),
        "the reason says it timed out: {}",
        d.reason
    );
    portal.verify().await;
    env.drop().await;
}

#[tokio::test]
async fn a_4xx_is_reported_at_once_not_retried() {
    let env = Env::new(SPEC_TABLE, &[row(1, 4)]).await;
    env.load(2, HOT, 50.0).await;
    let (cc, _uaa) = cf_and_uaa().await;
    process(&cc, 2).await;
    Mock::given(method("POST"))
        .and(path(scale_path()))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "errors": [{"code": 10008, "title": "CF-UnprocessableEntity", "detail": "memory quota exceeded for the space"}]
        })))
        .expect(1)
        .mount(&cc)
        .await;
    let s = scaler(&env, cf_cfg(&cc));
    let d = env.run(&s, false, &HashMap::new()).await;
    let d = only(&d);
    assert_eq!(d.outcome, ScaleOutcome::Failed, "{d:#?}");
    assert!(
        d.reason.contains("HTTP 422") && d.reason.contains("memory quota exceeded"),
        "{}",
        d.reason
    );
    cc.verify().await;
    env.drop().await;
}

#[tokio::test]
async fn an_expired_token_is_renewed_once() {
    let env = Env::new(SPEC_TABLE, &[row(1, 4)]).await;
    env.load(2, 50.0, 50.0).await;
    let cc = MockServer::start().await;
    let uaa = MockServer::start().await;
    let tokens = AtomicU32::new(0);
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(move |_: &wiremock::Request| {
            let n = tokens.fetch_add(1, Ordering::SeqCst) + 1;
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": format!("tok-{n}"), "expires_in": 600}))
        })
        .expect(2)
        .mount(&uaa)
        .await;
    // the first token is refused, as a revoked one would be
    Mock::given(method("GET"))
        .and(path(format!("/v3/apps/{GUID}/processes/web")))
        .and(bearer_token("tok-1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"errors": [{"code": 1000, "title": "CF-InvalidAuthToken", "detail": "Invalid Auth Token"}]})))
        .expect(1)
        .mount(&cc)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v3/apps/{GUID}/processes/web")))
        .and(bearer_token("tok-2"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"type": "web", "instances": 2})),
        )
        .expect(1)
        .mount(&cc)
        .await;
    let mut cfg = cf_cfg(&cc);
    cfg["uaa_url"] = json!(uaa.uri());
    let s = scaler(&env, cfg);
    let d = env.run(&s, false, &HashMap::new()).await;
    let d = only(&d);
    assert_eq!(
        (d.outcome, code(d)),
        (ScaleOutcome::Skipped, "within_thresholds"),
        "{d:#?}"
    );
    assert_eq!(d.instances_before, Some(2));
    cc.verify().await;
    uaa.verify().await;
    env.drop().await;
}

#[tokio::test]
async fn fewer_instances_reporting_than_running_is_no_action() {
    let env = Env::new(SPEC_TABLE, &[row(1, 4)]).await;
    env.load(2, 1.0, 1.0).await; // instances 0 and 1 report, the platform runs 3
    let (cc, _uaa) = cf_and_uaa().await;
    process(&cc, 3).await;
    Mock::given(method("POST"))
        .and(path(scale_path()))
        .respond_with(ResponseTemplate::new(202))
        .expect(0)
        .mount(&cc)
        .await;
    let s = scaler(&env, cf_cfg(&cc));
    let d = env.run(&s, false, &HashMap::new()).await;
    let d = only(&d);
    assert_eq!(
        (d.action, d.outcome),
        (ScaleAction::None, ScaleOutcome::Skipped),
        "{d:#?}"
    );
    assert_eq!(code(d), "partial_data");
    assert!(d.reason.contains("instance(s) 2 of 3"), "{}", d.reason);
    cc.verify().await;
    env.drop().await;
}

#[tokio::test]
async fn bad_rows_are_skipped_with_a_reason_and_good_rows_go_on() {
    let mut max_below_min = row(5, 2);
    max_below_min.no = 1;
    max_below_min.guid = "bad-range";
    max_below_min.app = "bad-range-app";
    let mut null_cpu = row(1, 4);
    null_cpu.no = 2;
    null_cpu.guid = "null-cpu";
    null_cpu.app = "null-cpu-app";
    null_cpu.cpu_max = None;
    let mut good = row(1, 4);
    good.no = 3;
    let env = Env::new(SPEC_TABLE, &[max_below_min, null_cpu, good]).await;
    env.load(2, 50.0, 50.0).await;
    let portal = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&portal)
        .await;
    let s = scaler(&env, portal_cfg(&portal));
    let ds = env.run(&s, false, &HashMap::new()).await;
    assert_eq!(ds.len(), 3, "{ds:#?}");
    let by_app: HashMap<_, _> = ds.iter().map(|d| (d.app_name.as_str(), d)).collect();
    let range = by_app["bad-range-app"];
    assert_eq!(
        (range.outcome, code(range)),
        (ScaleOutcome::Skipped, "invalid_policy")
    );
    assert!(
        range
            .reason
            .contains("instance_max_cnt = 2 is below instance_min_cnt = 5"),
        "{}",
        range.reason
    );
    assert_eq!(range.app_guid, "bad-range");
    let null = by_app["null-cpu-app"];
    assert_eq!(
        (null.outcome, code(null)),
        (ScaleOutcome::Skipped, "invalid_policy")
    );
    assert!(
        null.reason.contains("cpu_threshold_max_per is NULL"),
        "{}",
        null.reason
    );
    assert_eq!(code(by_app[APP]), "within_thresholds");
    portal.verify().await;
    env.drop().await;
}

#[tokio::test]
async fn the_portal_schema_is_read_and_fraction_thresholds_are_refused() {
    // the portal's own DDL: decimal(2,1) CPU columns, which can only hold fractions such as 0.8
    let mut fraction = row(1, 4);
    fraction.cpu_min = Some(0.2);
    fraction.cpu_max = Some(0.8);
    let env = Env::new(PORTAL_TABLE, &[fraction]).await;
    env.load(2, HOT, 50.0).await;
    let portal = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&portal)
        .await;
    let s = scaler(&env, portal_cfg(&portal));
    let d = env.run(&s, false, &HashMap::new()).await;
    let d = only(&d);
    assert_eq!(
        (d.outcome, code(d)),
        (ScaleOutcome::Skipped, "invalid_policy"),
        "{d:#?}"
    );
    assert!(d.reason.contains("looks like a fraction"), "{}", d.reason);
    portal.verify().await;
    env.drop().await;
}

#[tokio::test]
async fn influxdb_down_skips_every_app_instead_of_failing_the_step() {
    let mut env = Env::new(SPEC_TABLE, &[row(1, 4)]).await;
    let portal = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&portal)
        .await;
    let s = scaler(&env, portal_cfg(&portal));
    let good_influx = env.influx.clone();
    env.influx = InfluxClient::new(
        &serde_json::from_value(json!({"url": "http://127.0.0.1:9", "timeout_seconds": 2}))
            .unwrap(),
    )
    .unwrap();
    let d = env.run(&s, false, &HashMap::new()).await;
    let d = only(&d);
    assert_eq!(
        (d.outcome, code(d)),
        (ScaleOutcome::Skipped, "no_data"),
        "{d:#?}"
    );
    assert!(
        d.reason.contains("container metrics unavailable"),
        "{}",
        d.reason
    );
    portal.verify().await;
    env.influx = good_influx;
    env.drop().await;
}

#[tokio::test]
async fn registered_and_needs_the_portal_db() {
    let reg =
        monit_host::plugin::find_plugin("autoscale").expect("the autoscale plugin is registered");
    let context = |v: serde_json::Value| monit_host::PluginContext {
        name: "autoscale",
        settings: std::sync::Arc::new(serde_json::from_value::<Settings>(v).unwrap()),
    };
    let section = json!({"enabled": true, "portal_url": "http://portal:2225"});
    let with_db = json!({"enabled": true, "portal_url": "http://portal:2225", "portal_db": {"dbname": "portal"}});
    let without =
        context(json!({"monitoring_db": {"dbname": "m"}, "plugins": {"autoscale": section}}));
    let err = (reg.build)(&without)
        .err()
        .expect("no portal_db is an error")
        .to_string();
    assert!(err.contains("portal_db"), "{err}");

    let with =
        context(json!({"monitoring_db": {"dbname": "m"}, "plugins": {"autoscale": with_db}}));
    let parts = (reg.build)(&with).unwrap();
    assert!(parts.scaler.is_some() && parts.collector.is_none() && parts.notifier.is_none());

    let typo = context(json!({"monitoring_db": {"dbname": "m"},
                              "plugins": {"autoscale": {"enabled": true, "portal_uri": "x", "portal_db": {"dbname": "portal"}}}}));
    let err = format!("{:#}", (reg.build)(&typo).err().expect("unknown key"));
    assert!(err.contains("portal_uri"), "{err}");
}

/// Settings from a file, as the binary loads them.
fn settings_from(file_name: &str, text: &str) -> Settings {
    let dir = std::env::temp_dir().join(unique("cfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(file_name);
    std::fs::write(&file, text).unwrap();
    let settings = monit_host::plugin::load_settings_with_env(Some(&file), HashMap::new()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    settings
}

#[tokio::test]
async fn the_sample_config_is_a_valid_section() {
    let sample = include_str!("../sample.toml");
    let settings = settings_from(
        "monit-batch.toml",
        &format!("[monitoring_db]\ndbname = \"m\"\n\n{sample}"),
    );
    assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
    let ctx = monit_host::PluginContext {
        name: "autoscale",
        settings: std::sync::Arc::new(settings),
    };
    let cfg: AutoscaleConfig = ctx.plugin_config().unwrap();
    assert!(cfg.enabled);
    assert_eq!(
        cfg.actuator_kind().unwrap(),
        monit_plugin_autoscale::config::ActuatorKind::Cf
    );
    assert_eq!(cfg.portal_db.map(|d| d.dbname).as_deref(), Some("portaldb"));
    let reg = monit_host::plugin::find_plugin("autoscale").unwrap();
    assert!((reg.build)(&ctx).unwrap().scaler.is_some());
}

/// The host's former `[portal_db]` section still reaches the plugin for one release, with a
/// deprecation warning; without any portal DB the plugin does not build, naming the key.
#[tokio::test]
async fn the_old_portal_db_section_is_read_with_a_deprecation_warning() {
    let plugin = "[plugins.autoscale]\nenabled = true\nportal_url = \"http://portal.example\"\n";
    let old = settings_from(
        "monit-batch.toml",
        &format!(
            "[monitoring_db]\ndbname = \"m\"\n\n[portal_db]\ndbname = \"p\"\nport = 3307\n\n{plugin}"
        ),
    );
    assert!(
        old.warnings
            .iter()
            .any(|w| w.contains("portal_db is deprecated") && w.contains("[plugins.autoscale]")),
        "{:?}",
        old.warnings
    );
    let ctx = monit_host::PluginContext {
        name: "autoscale",
        settings: std::sync::Arc::new(old),
    };
    let cfg: AutoscaleConfig = ctx.plugin_config().unwrap();
    let db = cfg.portal_db.unwrap();
    assert_eq!((db.dbname.as_str(), db.port), ("p", 3307));

    let none = settings_from(
        "monit-batch.toml",
        &format!("[monitoring_db]\ndbname = \"m\"\n\n{plugin}"),
    );
    let ctx = monit_host::PluginContext {
        name: "autoscale",
        settings: std::sync::Arc::new(none),
    };
    let reg = monit_host::plugin::find_plugin("autoscale").unwrap();
    let err = (reg.build)(&ctx).err().unwrap().to_string();
    assert!(err.contains("portal_db"), "{err}");
}

#[tokio::test]
async fn legacy_config_ini_keys_reach_the_plugin() {
    let common = "monitoring.db.dbname = m\nportal.db.type = mysql\nportal.db.dbname = portaldb\n\
                  portal.db.host = 127.0.0.1\nportal.db.port = 3306\n";
    // 2.0: only the portal
    let v2 = settings_from(
        "config.ini",
        &format!("{common}autoscale.portal.url = http://portal-api.example:2225\n"),
    );
    let ctx = monit_host::PluginContext {
        name: "autoscale",
        settings: std::sync::Arc::new(v2),
    };
    let cfg: AutoscaleConfig = ctx.plugin_config().unwrap();
    assert_eq!(
        cfg.actuator_kind().unwrap(),
        monit_plugin_autoscale::config::ActuatorKind::Portal
    );
    assert_eq!(
        cfg.portal_url.as_deref(),
        Some("http://portal-api.example:2225")
    );
    assert!((monit_host::plugin::find_plugin("autoscale").unwrap().build)(&ctx).is_ok());
    // 4.0: the CF client keys
    let v4 = settings_from(
        "config.ini",
        &format!(
            "{common}cf.client.api_address = https://api.sys.example\ncf.client.username = admin\n\
             cf.client.password = 12345\ncf.client.clientid = \ncf.client.clientpassword = \n"
        ),
    );
    let ctx = monit_host::PluginContext {
        name: "autoscale",
        settings: std::sync::Arc::new(v4),
    };
    let cfg: AutoscaleConfig = ctx.plugin_config().unwrap();
    assert_eq!(
        cfg.actuator_kind().unwrap(),
        monit_plugin_autoscale::config::ActuatorKind::Cf
    );
    assert_eq!(
        cfg.cf_password.expose(),
        "12345",
        "a numeric password is still a password"
    );
    assert!((monit_host::plugin::find_plugin("autoscale").unwrap().build)(&ctx).is_ok());
}
