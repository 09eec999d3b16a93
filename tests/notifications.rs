//! Fewer, better notifications, end to end through the binary against the real MariaDB,
//! InfluxDB and SMTP sink (wiremock for the BOSH director): digests, inhibition, silences and
//! maintenance from director tasks. Each with its gate off too: then one mail per alarm, as
//! the original.

mod common;

use common::{
    TestEnv, bosh_section, director, mails_with, mount_director, now_s, router_and_director_report,
    unique, vm_points,
};
use mail_parser::MessageParser;
use monit_testkit::FaultSink;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn email_on(port: u16) -> String {
    format!(
        "[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\n\
         security = \"plain\"\nsender = \"PaaS-TA Monitor <monit@example.com>\"\ntimeout_seconds = 5\n"
    )
}

/// An environment with `plugins` and `alarms` lines added to `[alarms]`; every origin's mail
/// goes to one unique address, returned.
async fn env_with(tag: &str, plugins: &str, alarms: &str) -> (TestEnv, String) {
    env_on(tag, plugins, alarms, 2525).await
}

/// As `env_with`, mailing through the SMTP server on `port`.
async fn env_on(tag: &str, plugins: &str, alarms: &str, port: u16) -> (TestEnv, String) {
    let env = TestEnv::new(tag, &format!("{plugins}{}", email_on(port))).await;
    if !alarms.is_empty() {
        let cfg = std::fs::read_to_string(&env.config)
            .unwrap()
            .replace("[alarms]\n", &format!("[alarms]\n{alarms}\n"));
        std::fs::write(&env.config, cfg).unwrap();
    }
    let ops = format!("{}@example.com", unique(tag));
    env.exec(&format!(
        "DELETE FROM alarm_targets; INSERT INTO alarm_targets (origin_type, mail_address, mail_send_yn) VALUES \
         ('pas', '{ops}', 'Y'), ('con', '{ops}', 'Y'), ('bos', '{ops}', 'Y'); \
         UPDATE alarm_policies SET measure_time = 240, warning_threshold = 85, critical_threshold = 90, repeat_time = 10;"
    ))
    .await;
    (env, ops)
}

/// `container_metrics` of one app instance on the cell at `cell_ip`: 95% of a core.
fn hot_container(app: &str, idx: u32, cell_ip: &str, until: i64) -> String {
    let mut out = String::new();
    let tags = format!(
        "application_id={app}-guid,application_index={idx},application_name={app},cell_ip={cell_ip},container_id=/garden/{app}-{idx},container_interface={app}-{idx},machine=cell"
    );
    let (mut t, mut cpu) = (until - 300, 1000.0);
    while t <= until {
        for (name, v) in [
            ("cpu_usage_total", cpu),
            ("memory_usage", 0.3 * 1073741824.0),
            ("disk_usage", 0.1 * 1073741824.0),
            ("load_average", 0.0),
        ] {
            out.push_str(&format!("container_metrics,{tags},name={name} app_mem=1073741824,app_disk=1073741824,value={v} {t}\n"));
        }
        cpu += 28.5;
        t += 30;
    }
    out
}

/// (subject, text body) of the mails to `ops`.
fn mails(ops: &str) -> Vec<(String, String)> {
    mails_with("plain", ops)
        .iter()
        .map(|raw| {
            let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
            (
                m.subject().unwrap_or_default().to_string(),
                m.body_text(0).unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn count(env: &TestEnv, sql_where: &str) -> i64 {
    env.scalar_i64(&format!("SELECT COUNT(*) FROM alarms WHERE {sql_where}"))
        .await
}

// ---------------------------------------------------------------------------------------------
// Digests

async fn breaching_vms(env: &TestEnv, n: usize) -> Vec<String> {
    let now = now_s();
    let mut lines = String::new();
    let mut names = Vec::new();
    for i in 0..n {
        let (name, ip) = (format!("router_z1/{i}"), format!("10.0.20.{}", i + 1));
        env.add_vm(&name, &ip, "vms").await;
        lines += &vm_points(&ip, now, 97.0);
        names.push(name);
    }
    env.write_points(&env.cf_db, &lines).await;
    names
}

#[tokio::test]
async fn thirty_vms_breaching_in_one_tick_give_one_digest_naming_all_30() {
    let (env, ops) = env_with("digest", "[plugins.paasta]\nenabled = true\n", "").await;
    let names = breaching_vms(&env, 30).await;
    assert!(env.run_once().status.success());
    assert_eq!(
        count(&env, "alarm_type = 'cpu' AND level = 'critical'").await,
        30
    );
    let got = mails(&ops);
    assert_eq!(
        got.len(),
        1,
        "one digest: {:?}",
        got.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    let (subject, body) = &got[0];
    assert_eq!(subject, "[요약] 알림 30건: critical 30");
    for name in &names {
        assert!(
            body.contains(&format!("- {name} cpu critical 97.00%")),
            "{name} in {body}"
        );
    }
    // one outbox row per alarm event, each recorded sent
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM batch_notifications WHERE status = 'sent'")
            .await,
        30
    );
    env.cleanup().await;
}

#[tokio::test]
async fn at_or_under_the_digest_threshold_each_alarm_is_its_own_mail() {
    let (env, ops) = env_with(
        "nodigest",
        "[plugins.paasta]\nenabled = true\n",
        "digest_threshold = 5",
    )
    .await;
    breaching_vms(&env, 5).await;
    assert!(env.run_once().status.success());
    let got = mails(&ops);
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|(s, _)| !s.contains("요약")), "{got:?}");
    env.cleanup().await;
}

#[tokio::test]
async fn digest_threshold_0_turns_digests_off() {
    let (env, ops) = env_with(
        "digestoff",
        "[plugins.paasta]\nenabled = true\n",
        "digest_threshold = 0",
    )
    .await;
    breaching_vms(&env, 12).await;
    assert!(env.run_once().status.success());
    assert_eq!(mails(&ops).len(), 12);
    env.cleanup().await;
}

#[tokio::test]
async fn a_digest_refused_by_one_recipient_is_recorded_on_every_row_and_the_others_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = format!("{}@example.org", unique("gone"));
    let sink = FaultSink::start(dir.path(), &["--refuse", &bad]);
    let (env, ops) = env_on(
        "digestrefused",
        "[plugins.paasta]\nenabled = true\n",
        "",
        sink.port,
    )
    .await;
    env.exec(&format!(
        "INSERT INTO alarm_targets (origin_type, mail_address, mail_send_yn) VALUES ('pas', '{bad}', 'Y')"
    ))
    .await;
    breaching_vms(&env, 12).await;
    assert!(env.run_once().status.success());
    let got = sink.mails();
    assert_eq!(got.len(), 1, "one digest");
    assert_eq!(got[0].rcpt, vec![ops.clone()]);
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM batch_notifications WHERE status = 'sent'")
            .await,
        12
    );
    // the refusal is on record for every row, so no retry ever offers them to `bad` again
    assert_eq!(
        env.scalar_i64(&format!(
            "SELECT COUNT(*) FROM batch_notification_recipients WHERE recipient = '{bad}' AND outcome = 'rejected'"
        ))
        .await,
        12
    );
    assert!(env.run_once().status.success());
    assert_eq!(sink.mails().len(), 1, "nothing sent twice");
    env.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Inhibition

/// A cell that reports nothing (down) with three hot app instances on it, and a router that
/// reports (so this is a down VM, not a metrics pipeline gap).
async fn down_cell(env: &TestEnv) {
    env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    env.add_vm("router_z1/0", "10.0.16.11", "vms").await;
    let now = now_s();
    env.write_points(&env.cf_db, &vm_points("10.0.16.11", now, 10.0))
        .await;
    let mut lines = String::new();
    for (app, idx) in [("web", 0), ("web", 1), ("api", 0)] {
        lines += &hot_container(app, idx, "10.0.16.21", now);
    }
    env.write_points(&env.container_db, &lines).await;
}

const PAS_AND_CON: &str = "[plugins.paasta]\nenabled = true\n[plugins.container]\nenabled = true\n";

#[tokio::test]
async fn a_down_cell_gives_one_mail_not_one_per_app_instance_and_its_recovery_tells_the_rest() {
    let (env, ops) = env_with("inhibit", PAS_AND_CON, "").await;
    down_cell(&env).await;
    let out = env.run_once();
    assert!(out.status.success());
    assert_eq!(
        count(&env, "origin_type = 'pas' AND alarm_type = 'fail'").await,
        1
    );
    assert_eq!(
        count(
            &env,
            "origin_type = 'con' AND alarm_type = 'cpu' AND id IN (SELECT alarm_id FROM batch_alarm_state WHERE held_since IS NOT NULL)"
        )
        .await,
        3,
        "the container alarms are recorded, never notified"
    );
    let got = mails(&ops);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].1.contains("cell_z1/0"), "{:?}", got[0]);
    let json = env.run(&["run", "--once", "--json"]);
    let summary: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("the summary is JSON");
    assert_eq!(
        summary["held"]["inhibited"], 0,
        "held once, not re-counted: {summary}"
    );

    // the cell comes back: its recovery, and the container alarms still breaching, as new
    env.write_points(&env.cf_db, &vm_points("10.0.16.21", now_s(), 10.0))
        .await;
    assert!(env.run_once().status.success());
    let got = mails(&ops);
    assert_eq!(
        got.len(),
        1 + 1 + 3,
        "{:?}",
        got.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    assert_eq!(
        got.iter().filter(|(s, _)| s.starts_with("[회복]")).count(),
        1
    );
    assert_eq!(
        count(
            &env,
            "origin_type = 'con' AND id NOT IN (SELECT alarm_id FROM batch_alarm_state WHERE held_since IS NOT NULL) AND resolve_status = '1'"
        )
        .await,
        3
    );
    env.cleanup().await;
}

#[tokio::test]
async fn with_inhibition_off_a_down_cell_mails_every_instance() {
    let (env, ops) = env_with("noinhibit", PAS_AND_CON, "inhibit = false").await;
    down_cell(&env).await;
    assert!(env.run_once().status.success());
    assert_eq!(mails(&ops).len(), 4);
    env.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Silences

#[tokio::test]
async fn a_silence_stops_the_mail_not_the_row_and_its_expiry_brings_the_mail() {
    let (env, ops) = env_with("silence", "[plugins.paasta]\nenabled = true\n", "").await;
    env.add_vm("router_z1/0", "10.0.16.11", "vms").await;
    env.add_vm("router_z1/1", "10.0.16.12", "vms").await;
    let now = now_s();
    env.write_points(&env.cf_db, &vm_points("10.0.16.11", now, 97.0))
        .await;
    env.write_points(&env.cf_db, &vm_points("10.0.16.12", now, 10.0))
        .await;

    let add = env.run(&[
        "silence",
        "add",
        "--match",
        "vm=router_z1/*",
        "--match",
        "type=cpu",
        "--for",
        "2h",
        "--comment",
        "NIC swap",
        "--author",
        "kim",
    ]);
    assert!(add.status.success());
    assert!(
        String::from_utf8_lossy(&add.stdout)
            .starts_with("silence 1 added: vm=router_z1/* type=cpu until ")
    );
    let list = env.run(&["silence", "list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("kim") && listed.contains("NIC swap") && listed.contains("active"),
        "{listed}"
    );

    let first = env.run_once();
    assert!(first.status.success());
    assert!(
        String::from_utf8_lossy(&first.stdout)
            .contains("held      silenced 1, maintenance 0, inhibited 0"),
        "the summary says what was held"
    );
    let second = env.run_once();
    assert!(second.status.success());
    assert!(
        !String::from_utf8_lossy(&second.stdout).contains("held "),
        "held once, when it opened: not counted again"
    );
    assert_eq!(
        count(
            &env,
            "alarm_type = 'cpu' AND id IN (SELECT alarm_id FROM batch_alarm_state WHERE held_since IS NOT NULL) AND resolve_status = '1'"
        )
        .await,
        1
    );
    assert_eq!(
        env.scalar_i64("SELECT CAST(alarm_cnt AS SIGNED) FROM alarms")
            .await,
        2,
        "counted each tick"
    );
    assert!(mails(&ops).is_empty());

    let expire = env.run(&["silence", "expire", "1"]);
    assert!(expire.status.success());
    let again = env.run(&["silence", "expire", "1"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no active silence with id 1"));

    assert!(env.run_once().status.success());
    let got = mails(&ops);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].0.contains("router_z1/0") && got[0].0.ends_with('!'),
        "notified as new: {:?}",
        got[0].0
    );
    assert_eq!(
        count(
            &env,
            "id NOT IN (SELECT alarm_id FROM batch_alarm_state WHERE held_since IS NOT NULL)"
        )
        .await,
        1
    );
    env.cleanup().await;
}

#[tokio::test]
async fn bad_silence_input_names_the_problem() {
    let (env, _) = env_with("silencebad", "", "").await;
    for (args, says) in [
        (
            vec!["--match", "color=red", "--for", "1h", "--comment", "x"],
            "unknown key \"color\"",
        ),
        (
            vec!["--match", "vm=a", "--for", "soon", "--comment", "x"],
            "not a duration",
        ),
        (
            vec!["--match", "vm=a", "--for", "1h", "--comment", " "],
            "--comment must say why",
        ),
    ] {
        let out = env.run(&[&["silence", "add"][..], &args[..]].concat());
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{says} in {err}");
    }
    env.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Maintenance from BOSH tasks

fn deploying() -> serde_json::Value {
    serde_json::json!([
        {"id": 77, "state": "processing", "description": "create deployment", "timestamp": 1700000000,
         "result": null, "user": "admin", "deployment": "paasta", "context_id": ""},
        // the batch's own inventory task is no maintenance
        {"id": 78, "state": "queued", "description": "retrieve vm-stats", "timestamp": 1700000000,
         "result": null, "user": "admin", "deployment": "other", "context_id": ""}
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_task_holds_back_its_vms_fail_mails_and_a_recovery_after_it_sends_nothing() {
    let fake = director(deploying()).await;
    let (env, ops) = env_with("maint", &bosh_section(&fake), "").await;
    // the router reports; both cells are being recreated and report nothing
    router_and_director_report(&env).await;
    let env_ref = &env;
    let out = tokio::task::block_in_place(|| env_ref.run(&["run", "--once", "--json"]));
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["maintenance"],
        serde_json::json!(["paasta"]),
        "{summary}"
    );
    assert_eq!(summary["held"]["maintenance"], 2, "{summary}");
    assert_eq!(
        count(&env, "alarm_type = 'fail' AND id IN (SELECT alarm_id FROM batch_alarm_state WHERE held_since IS NOT NULL)").await,
        2
    );
    assert!(mails(&ops).is_empty());

    // the task is over; cell 0 is back, cell 1 still down: within the grace nothing is told,
    // and cell 0's recovery is never told (its down was not)
    fake.reset().await;
    mount_director(&fake, serde_json::json!([])).await;
    env.write_points(&env.cf_db, &vm_points("10.0.16.21", now_s(), 10.0))
        .await;
    let out = tokio::task::block_in_place(|| env_ref.run(&["run", "--once", "--json"]));
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["maintenance"],
        serde_json::json!(["paasta"]),
        "{summary}"
    );
    assert_eq!(
        count(&env, "alarm_type = 'fail' AND resolve_status = '3'").await,
        1
    );
    assert!(mails(&ops).is_empty(), "{:?}", mails(&ops));

    // the grace (10 minutes) has run out since the task was last seen: cell 1 is still down
    env.exec("UPDATE batch_maintenance SET last_seen_at = last_seen_at - INTERVAL 11 MINUTE")
        .await;
    assert!(
        tokio::task::block_in_place(|| env_ref.run_once())
            .status
            .success()
    );
    let got = mails(&ops);
    assert_eq!(got.len(), 1, "the fail of cell 1 only: {got:?}");
    assert!(got[0].0.contains("cell/1"), "{:?}", got[0]);
    assert!(!got[0].0.starts_with("[회복]"));
    assert_eq!(
        count(&env, "alarm_type = 'fail' AND resolve_status = '3'").await,
        1
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_off_or_a_director_that_cannot_answer_holds_nothing() {
    let fake = director(deploying()).await;
    let (env, ops) = env_with(
        "nomaint",
        &bosh_section(&fake),
        "maintenance_from_bosh = false",
    )
    .await;
    router_and_director_report(&env).await;
    let env_ref = &env;
    assert!(
        tokio::task::block_in_place(|| env_ref.run_once())
            .status
            .success()
    );
    assert_eq!(mails(&ops).len(), 2);
    env.cleanup().await;

    // on, but the director's /tasks fails: nothing held, and the tick is not an error
    let fake = MockServer::start().await;
    mount_director_without_tasks(&fake).await;
    let (env, ops) = env_with("maintdown", &bosh_section(&fake), "").await;
    router_and_director_report(&env).await;
    let env_ref = &env;
    let out = tokio::task::block_in_place(|| env_ref.run_once());
    assert!(
        out.status.success(),
        "a director without task answers is no tick error"
    );
    assert_eq!(mails(&ops).len(), 2);
    env.cleanup().await;
}

async fn mount_director_without_tasks(s: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/tasks"))
        .respond_with(ResponseTemplate::new(500).set_body_string("director busy"))
        .mount(s)
        .await;
    mount_director(s, serde_json::json!([])).await;
}
