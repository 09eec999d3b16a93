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
    let threshold = percent_after(text, "사용량이");
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
        n[1].1.contains("(UTC+09:00)]") && n[1].1.contains("[20.00]%") && n[1].1.contains("회복"),
        "the note says when (at the display offset) and the value, in Korean: {n:?}"
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

// ---------------------------------------------------------------------------------------------
// What the management app shows (issue 18, item 9), run on rows this batch wrote.

/// The row the app shows follows the value and the threshold on every tick at the same level,
/// not only when a mail goes out or the level changes: the app and the mail never disagree.
#[tokio::test]
async fn a_still_breaching_alarm_shows_the_current_value_and_threshold_in_the_app() {
    let env = env_with("rowtext", "").await;
    let tag = unique("rowtext");
    let ops = mail_to(&env, &tag).await;
    env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    // every write covers the same points: a later one overwrites the values
    let end = now_s();
    env.write_points(&env.cf_db, &vm_points("10.0.16.21", end, 97.31))
        .await;

    // 1. critical at 97.31 % (critical threshold 90)
    assert!(env.run_once().status.success());
    let r = row(&env, "10.0.16.21").await;
    assert_eq!(
        r.alarm_message,
        "[cell_z1/0] 의 cpu 상태 [critical]\ncpu 임계치 90% 초과.\n현재 사용률 [97.31]%"
    );

    // 2. the operator raises critical to 99 in the app and the value climbs to 99.72: still
    //    critical, no repeat due, no mail; the row says 99 % and 99.72 %
    env.exec("UPDATE alarm_policies SET critical_threshold = 99 WHERE origin_type = 'pas' AND alarm_type = 'cpu'")
        .await;
    env.write_points(&env.cf_db, &vm_points("10.0.16.21", end, 99.72))
        .await;
    assert!(env.run_once().status.success());
    let r = row(&env, "10.0.16.21").await;
    assert_eq!((r.level.as_str(), r.alarm_cnt), ("critical", 2), "{r:?}");
    assert_eq!(r.alarm_title, "[cell_z1/0]의 cpu 상태 [critical]");
    assert_eq!(
        r.alarm_message,
        "[cell_z1/0] 의 cpu 상태 [critical]\ncpu 임계치 99% 초과.\n현재 사용률 [99.72]%"
    );
    assert_eq!(
        mails_with("plain", &ops).len(),
        1,
        "no repeat before repeat_time"
    );

    // 3. repeat_time passed at 99.5 %: the reminder and the row state the same numbers
    env.exec("UPDATE alarms SET alarm_send_date = UTC_TIMESTAMP() - INTERVAL 11 MINUTE")
        .await;
    env.write_points(&env.cf_db, &vm_points("10.0.16.21", end, 99.5))
        .await;
    assert!(env.run_once().status.success());
    let r = row(&env, "10.0.16.21").await;
    assert_eq!(r.alarm_cnt, 3);
    assert!(
        r.alarm_message.contains("임계치 99% 초과") && r.alarm_message.ends_with("[99.50]%"),
        "{r:?}"
    );
    let mails = mail_texts(&ops);
    let (_, reminder) = mails
        .iter()
        .find(|(_, t)| t.contains("재알림"))
        .unwrap_or_else(|| panic!("a reminder: {mails:#?}"));
    assert_eq!(percent_after(reminder, "사용량이"), 99.0, "{reminder}");
    assert_eq!(percent_after(reminder, "현재 사용률"), 99.5, "{reminder}");
    env.cleanup().await;
}

/// The mail body is the original's, word for word where the spec gives it: "사용량이" (2.0;
/// 4.0 wrote "임계치"), and the elapsed time as `0(분)`.
#[tokio::test]
async fn the_mail_body_keeps_the_originals_wording_and_the_minutes_suffix() {
    let env = env_with("wording", "").await;
    let tag = unique("wording");
    let ops = mail_to(&env, &tag).await;
    env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    // every write covers the same points: a later one overwrites the values
    let end = now_s();
    env.write_points(&env.cf_db, &vm_points("10.0.16.21", end, 97.31))
        .await;
    assert!(env.run_once().status.success());
    let raw = mails_with("plain", &ops);
    assert_eq!(raw.len(), 1);
    let m = MessageParser::default().parse(raw[0].as_bytes()).unwrap();
    let text = m.body_text(0).unwrap_or_default().replace("\r\n", "\n");
    let html = m.body_html(0).unwrap_or_default().to_string();
    assert!(
        text.starts_with(
            "critical : cell_z1/0의 cpu 사용량이 [90]%를 초과했습니다. 현재 사용률 [97.31]% 입니다.\n"
        ),
        "{text}"
    );
    assert!(text.contains("경과 시간(분): 0(분)\n"), "{text}");
    assert!(
        html.contains("cell_z1/0의 cpu 사용량이 [90]%를 초과했습니다.")
            && html.contains(">0(분)</td>"),
        "{html}"
    );
    env.cleanup().await;
}

/// `system` notes state their time at `alarms.display_utc_offset_hours`, the offset the app
/// shows the rows' DATETIME columns at (9 by default), not in UTC.
#[tokio::test]
async fn system_notes_state_their_time_at_the_display_offset() {
    for (cfg, zone, offset_secs) in [
        ("", "UTC+09:00", 9 * 3600),
        (
            "display_utc_offset_hours = -3.5",
            "UTC-03:30",
            -(3 * 3600 + 1800),
        ),
    ] {
        let env = env_with("noteoffset", cfg).await;
        let tag = unique("noteoffset");
        mail_to(&env, &tag).await;
        env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
        let end = now_s();
        env.write_points(&env.cf_db, &vm_points("10.0.16.21", end, 87.0))
            .await;
        assert!(env.run_once().status.success());
        let id = alarm_id(&env, "10.0.16.21").await;
        accept(&env, id).await;
        env.write_points(&env.cf_db, &vm_points("10.0.16.21", end, 20.0))
            .await;
        assert!(env.run_once().status.success());
        let (at, note): (chrono::NaiveDateTime, String) = sqlx::query_as(
            "SELECT reg_date, alarm_action_desc FROM alarm_actions WHERE alarm_id = ? AND reg_user = 'system'",
        )
        .bind(id)
        .fetch_one(&env.db)
        .await
        .unwrap();
        let shown = at + chrono::Duration::seconds(offset_secs);
        let want = format!("[{} ({zone})] ", shown.format("%Y-%m-%d %H:%M:%S"));
        assert!(note.starts_with(&want), "{want} in {note}");
        assert!(!note.contains(" UTC]"), "{note}");
        env.cleanup().await;
    }
}

/// A new alarm whose mail a silence holds: the app shows when it occurred as its send date
/// (not 0001-01-01 00:00:00) and a `system` note saying no mail went out; the first mail, once
/// the silence ends, sets the send date to its own time.
#[tokio::test]
async fn a_held_alarm_shows_when_it_occurred_and_a_note_that_no_mail_went_out() {
    let env = env_with("heldview", "").await;
    let tag = unique("heldview");
    let ops = mail_to(&env, &tag).await;
    env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    env.write_points(&env.cf_db, &vm_points("10.0.16.21", now_s(), 97.0))
        .await;
    let add = env.run(&[
        "silence",
        "add",
        "--match",
        "vm=cell_z1/*",
        "--for",
        "2h",
        "--comment",
        "disk swap",
        "--author",
        "kim",
    ]);
    assert!(add.status.success());

    let sent_and_reg = |env: &TestEnv| {
        let db = env.db.clone();
        async move {
            sqlx::query_as::<_, (Option<chrono::NaiveDateTime>, chrono::NaiveDateTime)>(
                "SELECT alarm_send_date, reg_date FROM alarms WHERE alarm_type = 'cpu'",
            )
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    for tick in 1..=2 {
        assert!(env.run_once().status.success());
        let (sent, reg) = sent_and_reg(&env).await;
        assert_eq!(
            sent,
            Some(reg),
            "tick {tick}: the occurrence time, not NULL"
        );
        let id = alarm_id(&env, "10.0.16.21").await;
        let n = notes(&env, id).await;
        assert_eq!(n.len(), 1, "one note, when it opened: {n:?}");
        assert_eq!(n[0].0, "system");
        assert!(
            n[0].1.contains("알림 보류(사일런스 적용)")
                && n[0].1.contains("메일을 보내지 않았습니다"),
            "{n:?}"
        );
        assert!(
            n[0].1.starts_with('[') && n[0].1.contains("(UTC+09:00)]"),
            "{n:?}"
        );
    }
    assert!(mails_with("plain", &ops).is_empty());

    // an hour later the silence is expired: the alarm still breaches and is mailed as new
    env.exec(
        "UPDATE alarms SET reg_date = reg_date - INTERVAL 1 HOUR, alarm_send_date = alarm_send_date - INTERVAL 1 HOUR",
    )
    .await;
    assert!(env.run(&["silence", "expire", "1"]).status.success());
    assert!(env.run_once().status.success());
    let mails = mail_texts(&ops);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0].0, "[cell_z1/0]의 cpu 상태 [critical]!");
    let (sent, reg) = sent_and_reg(&env).await;
    let sent = sent.expect("a send date");
    assert!(
        sent - reg >= chrono::Duration::minutes(59),
        "the mail's time: {sent} vs {reg}"
    );
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM batch_alarm_state WHERE held_since IS NOT NULL")
            .await,
        0
    );
    // told now: the next tick is a count, no second mail
    assert!(env.run_once().status.success());
    assert_eq!(mails_with("plain", &ops).len(), 1);
    env.cleanup().await;
}
