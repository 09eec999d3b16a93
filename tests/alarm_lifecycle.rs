//! The alarm lifecycle as operators see it in the management app, through the binary against
//! the real MariaDB, InfluxDB and SMTP sink: an alarm steps down when its threshold is raised,
//! and an alarm an operator has accepted stays theirs when its VM recovers.

mod common;

use common::{TestEnv, mails_with, now_s, unique, vm_points};
use mail_parser::MessageParser;

fn config(port: u16) -> String {
    format!(
        "[plugins.paasta]\nenabled = true\n[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\n\
         security = \"plain\"\nsender = \"PaaS-TA Monitor <monit@example.com>\"\n"
    )
}

/// An environment whose `[alarms]` section also holds `alarms` (TOML allows one section).
async fn env_with(tag: &str, alarms: &str) -> TestEnv {
    let env = TestEnv::new(tag, &config(2525)).await;
    if !alarms.is_empty() {
        let cfg = std::fs::read_to_string(&env.config)
            .unwrap()
            .replace("[alarms]\n", &format!("[alarms]\n{alarms}\n"));
        std::fs::write(&env.config, cfg).unwrap();
    }
    env
}

/// Recipients of every alarm: one unique address, so this test's mails are found in the sink.
async fn mail_to(env: &TestEnv, tag: &str) -> String {
    let ops = format!("{tag}@example.com");
    env.exec(&format!(
        "DELETE FROM alarm_targets; INSERT INTO alarm_targets (origin_type, mail_address, mail_send_yn) VALUES ('pas', '{ops}', 'Y'); \
         UPDATE alarm_policies SET measure_time = 300, warning_threshold = 85, critical_threshold = 90, repeat_time = 10 WHERE origin_type = 'pas';"
    ))
    .await;
    ops
}

#[derive(Debug, sqlx::FromRow, PartialEq)]
struct Row {
    level: String,
    resolve_status: String,
    alarm_cnt: i64,
    alarm_title: String,
    alarm_message: String,
    complete_user: Option<String>,
}

async fn row(env: &TestEnv, ip: &str) -> Row {
    sqlx::query_as(
        "SELECT level, resolve_status, CAST(alarm_cnt AS SIGNED) alarm_cnt, alarm_title, alarm_message, complete_user \
         FROM alarms WHERE ip = ? AND alarm_type = 'cpu'",
    )
    .bind(ip)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

async fn alarm_id(env: &TestEnv, ip: &str) -> i64 {
    env.scalar_i64(&format!(
        "SELECT CAST(id AS SIGNED) FROM alarms WHERE ip = '{ip}' AND alarm_type = 'cpu'"
    ))
    .await
}

/// (subject, text body) of the mails to `marker`, in a stable order.
fn mail_texts(marker: &str) -> Vec<(String, String)> {
    let mut mails: Vec<(String, String)> = mails_with("plain", marker)
        .iter()
        .map(|raw| {
            let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
            (
                m.subject().unwrap_or_default().to_string(),
                m.body_text(0).unwrap_or_default().to_string(),
            )
        })
        .collect();
    mails.sort_by(|a, b| a.1.cmp(&b.1));
    mails
}

/// The number between `[` and `]%` after `label` in `text`.
fn percent_after(text: &str, label: &str) -> f64 {
    let rest = &text[text
        .find(label)
        .unwrap_or_else(|| panic!("{label} in {text}"))
        + label.len()..];
    let open = rest.find('[').unwrap() + 1;
    let close = rest.find("]%").unwrap();
    rest[open..close].trim().parse().unwrap()
}

#[tokio::test]
async fn raising_the_thresholds_under_a_critical_alarm_steps_it_down_and_the_mail_tells_the_truth()
{
    let env = env_with("stepdown", "").await;
    let tag = unique("stepdown");
    let ops = mail_to(&env, &tag).await;
    env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    env.write_points(&env.cf_db, &vm_points("10.0.16.21", now_s(), 97.03))
        .await;

    // 1. critical at 97 %
    assert!(env.run_once().status.success());
    let r = row(&env, "10.0.16.21").await;
    assert_eq!((r.level.as_str(), r.alarm_cnt), ("critical", 1));
    assert_eq!(mails_with("plain", &ops).len(), 1);

    // 2. the operator raises the thresholds to 95/99 in the app; the repeat is not due yet:
    //    the row steps down in place, nothing is sent
    env.exec("UPDATE alarm_policies SET warning_threshold = 95, critical_threshold = 99 WHERE origin_type = 'pas' AND alarm_type = 'cpu'")
        .await;
    assert!(env.run_once().status.success());
    let r = row(&env, "10.0.16.21").await;
    assert_eq!(
        (r.level.as_str(), r.resolve_status.as_str(), r.alarm_cnt),
        ("warning", "1", 2),
        "{r:?}"
    );
    assert_eq!(r.alarm_title, "[cell_z1/0]의 cpu 상태 [warning]");
    assert!(
        r.alarm_message.contains("임계치 95% 초과") && !r.alarm_message.contains("99"),
        "{r:?}"
    );
    assert_eq!(
        mails_with("plain", &ops).len(),
        1,
        "a step-down waits for repeat_time"
    );

    // 3. repeat_time passed: the step-down is mailed, with a threshold the value exceeds
    env.exec("UPDATE alarms SET alarm_send_date = UTC_TIMESTAMP() - INTERVAL 11 MINUTE")
        .await;
    assert!(env.run_once().status.success());
    let mails = mail_texts(&ops);
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let (subject, text) = mails
        .iter()
        .find(|(_, t)| t.contains("하향"))
        .unwrap_or_else(|| panic!("a step-down mail: {mails:#?}"));
    assert_eq!(subject, "[cell_z1/0]의 cpu 상태 [warning]!");
    let threshold = percent_after(text, "임계치");
    let usage = percent_after(text, "현재 사용률");
    assert_eq!(threshold, 95.0, "{text}");
    assert!(
        usage >= threshold && (usage - 97.03).abs() < 0.01,
        "{usage} vs {threshold}: {text}"
    );
    assert!(text.starts_with("warning : "), "{text}");
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM batch_notifications WHERE kind = 'stepped_down' AND status = 'sent'")
            .await,
        1
    );

    // 4. still at 97 %: counted, no mail before the next repeat
    assert!(env.run_once().status.success());
    let r = row(&env, "10.0.16.21").await;
    assert_eq!((r.level.as_str(), r.alarm_cnt), ("warning", 4));
    assert_eq!(mails_with("plain", &ops).len(), 2);
    env.cleanup().await;
}

/// What the management app does when an operator accepts an alarm: status 2 and a note.
async fn accept(env: &TestEnv, alarm_id: i64) {
    env.exec(&format!(
        "UPDATE alarms SET resolve_status = '2', modi_user = 'admin' WHERE id = {alarm_id}; \
         INSERT INTO alarm_actions (alarm_id, alarm_action_desc, reg_user, modi_user) VALUES ({alarm_id}, 'looking into it', 'admin', 'admin');"
    ))
    .await;
}

async fn notes(env: &TestEnv, alarm_id: i64) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT reg_user, alarm_action_desc FROM alarm_actions WHERE alarm_id = ? ORDER BY id",
    )
    .bind(alarm_id)
    .fetch_all(&env.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_accepted_alarm_that_recovers_stays_the_operators_with_a_note_and_one_notice() {
    let env = env_with("accepted", "").await; // default: auto_resolve = "unclaimed"
    let tag = unique("accepted");
    let ops = mail_to(&env, &tag).await;
    env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    env.add_vm("router_z1/0", "10.0.16.22", "vms").await;
    let end = now_s();
    for ip in ["10.0.16.21", "10.0.16.22"] {
        env.write_points(&env.cf_db, &vm_points(ip, end, 87.0))
            .await;
    }
    assert!(env.run_once().status.success());
    let (taken, unclaimed) = (
        alarm_id(&env, "10.0.16.21").await,
        alarm_id(&env, "10.0.16.22").await,
    );
    accept(&env, taken).await;
    assert_eq!(mails_with("plain", &ops).len(), 2);

    // both VMs recover for the whole window
    for ip in ["10.0.16.21", "10.0.16.22"] {
        env.write_points(&env.cf_db, &vm_points(ip, end, 20.0))
            .await;
    }
    assert!(env.run_once().status.success());
    let r = row(&env, "10.0.16.21").await;
    assert_eq!(
        (r.resolve_status.as_str(), r.complete_user.as_deref()),
        ("2", None),
        "the operator's alarm keeps its status: {r:?}"
    );
    let n = notes(&env, taken).await;
    assert_eq!(n.len(), 2, "{n:?}");
    assert_eq!(n[0], ("admin".into(), "looking into it".into()));
    assert_eq!(n[1].0, "system");
    assert!(
        n[1].1.contains("UTC]") && n[1].1.contains("[20.00]%") && n[1].1.contains("회복"),
        "the note says when and the value, in Korean: {n:?}"
    );
    // the unclaimed one is closed as before
    let r = row(&env, "10.0.16.22").await;
    assert_eq!(
        (r.resolve_status.as_str(), r.complete_user.as_deref()),
        ("3", Some("system"))
    );
    assert_eq!(notes(&env, unclaimed).await.len(), 1);
    let mails = mail_texts(&ops);
    let recovered: Vec<&(String, String)> = mails
        .iter()
        .filter(|(s, _)| s.starts_with("[회복]"))
        .collect();
    assert_eq!(recovered.len(), 2, "a recovery notice for each: {mails:#?}");
    for (subject, _) in &recovered {
        assert_eq!(
            subject.matches("회복").count(),
            1,
            "a recovery subject says it once: {subject}"
        );
        assert!(!subject.contains("RECOVERED"), "{subject}");
    }
    assert!(
        recovered
            .iter()
            .any(|(s, t)| s.contains("cell_z1/0") && t.contains("담당자")),
        "the operator's notice says it stays open: {recovered:#?}"
    );

    // the next ticks: no second note, no second notice, still the operator's
    assert!(env.run_once().status.success());
    assert_eq!(notes(&env, taken).await.len(), 2);
    assert_eq!(mails_with("plain", &ops).len(), 4);
    assert_eq!(row(&env, "10.0.16.21").await.resolve_status, "2");
    env.cleanup().await;
}

/// One alarm per mode: raised, optionally accepted, then recovered.
async fn recover_under(mode: &str, accepted: bool) -> (Row, usize, usize) {
    let env = env_with(
        &format!("ar_{}", mode.replace('"', "")),
        &format!("auto_resolve = {mode}"),
    )
    .await;
    let tag = unique("autoresolve");
    let ops = mail_to(&env, &tag).await;
    env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    let end = now_s();
    env.write_points(&env.cf_db, &vm_points("10.0.16.21", end, 87.0))
        .await;
    assert!(env.run_once().status.success());
    let id = alarm_id(&env, "10.0.16.21").await;
    if accepted {
        accept(&env, id).await;
    }
    env.write_points(&env.cf_db, &vm_points("10.0.16.21", end, 20.0))
        .await;
    assert!(env.run_once().status.success());
    assert!(env.run_once().status.success());
    let system_notes = notes(&env, id)
        .await
        .iter()
        .filter(|(who, _)| who == "system")
        .count();
    let out = (
        row(&env, "10.0.16.21").await,
        system_notes,
        mails_with("plain", &ops).len(),
    );
    env.cleanup().await;
    out
}

#[tokio::test]
async fn auto_resolve_all_closes_an_operators_alarm_and_none_closes_nothing() {
    // "all": the accepted alarm is closed by the system, as before this setting existed
    let (r, system_notes, mails) = recover_under("\"all\"", true).await;
    assert_eq!(
        (r.resolve_status.as_str(), r.complete_user.as_deref()),
        ("3", Some("system")),
        "{r:?}"
    );
    assert_eq!((system_notes, mails), (1, 2));
    // "none": even an unclaimed alarm stays open, with the note and one notice
    let (r, system_notes, mails) = recover_under("\"none\"", false).await;
    assert_eq!(
        (r.resolve_status.as_str(), r.complete_user.as_deref()),
        ("1", None),
        "{r:?}"
    );
    assert_eq!((system_notes, mails), (1, 2), "one note, one notice");
    // the old boolean `false` still means "leave it open"
    let (r, _, mails) = recover_under("false", false).await;
    assert_eq!((r.resolve_status.as_str(), mails), ("1", 2), "{r:?}");
    // and `true` closes only what nobody has taken
    let (r, _, _) = recover_under("true", true).await;
    assert_eq!(r.resolve_status, "2", "{r:?}");
}
