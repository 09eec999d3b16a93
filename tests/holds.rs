//! Holds that end and silences that cannot break a listing, end to end through the binary
//! against the real MariaDB, InfluxDB and SMTP sink (wiremock for the BOSH director): a
//! maintenance hold bounded by `alarms.maintenance_max_hours`, silences bounded to a year,
//! rows no silence command wrote, and control characters in what operators type.

mod common;

use common::{
    TestEnv, bosh_section, director, free_port, mails_with, now_s, router_and_director_report,
    unique, vm_points,
};
use mail_parser::MessageParser;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An environment with `plugins` and `alarms` lines added to `[alarms]`; every origin's mail
/// goes to one unique address, returned.
async fn env_with(tag: &str, plugins: &str, alarms: &str) -> (TestEnv, String) {
    let email = "[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\nsmtp_port = 2525\n\
                 security = \"plain\"\nsender = \"PaaS-TA Monitor <monit@example.com>\"\ntimeout_seconds = 5\n";
    let env = TestEnv::new(tag, &format!("{plugins}{email}")).await;
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

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Maintenance holds that end

/// Task 77 recreating `paasta`, stuck in `processing`.
fn stuck_recreate() -> serde_json::Value {
    serde_json::json!([
        {"id": 77, "state": "processing", "description": "recreate instances", "timestamp": 1700000000,
         "result": null, "user": "admin", "deployment": "paasta", "context_id": ""}
    ])
}

/// `run --once --json` from a multi-threaded test (the director answers on this runtime).
fn tick_json(env: &TestEnv) -> (serde_json::Value, String) {
    let out = tokio::task::block_in_place(|| env.run(&["run", "--once", "--json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    (serde_json::from_slice(&out.stdout).unwrap(), stderr(&out))
}

/// Moves the start of the deployment's hold `hours` back, as if the task had been seen since.
async fn hold_began_hours_ago(env: &TestEnv, hours: u32) {
    env.exec(&format!(
        "UPDATE batch_maintenance SET first_seen_at = UTC_TIMESTAMP() - INTERVAL {hours} HOUR"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_task_holds_until_maintenance_max_hours_then_the_alarms_are_mailed_saying_why() {
    let fake = director(stuck_recreate()).await;
    let (env, ops) = env_with("maxhold", &bosh_section(&fake), "maintenance_max_hours = 3").await;
    router_and_director_report(&env).await;

    // the task is new: both cells' fail alarms are recorded and held
    let (summary, _) = tick_json(&env);
    assert_eq!(
        summary["maintenance"],
        serde_json::json!(["paasta"]),
        "{summary}"
    );
    assert_eq!(summary["held"]["maintenance"], 2, "{summary}");
    assert_eq!(summary["maintenance_cut_short"], serde_json::json!([]));
    assert!(mails(&ops).is_empty());

    // two hours into a three-hour bound: still held, and the gauge's age says how long
    hold_began_hours_ago(&env, 2).await;
    let (summary, log) = tick_json(&env);
    assert_eq!(
        summary["maintenance"],
        serde_json::json!(["paasta"]),
        "{summary}"
    );
    let age = summary["maintenance_oldest_seconds"].as_i64().unwrap();
    assert!((2 * 3600..3 * 3600).contains(&age), "{summary}");
    assert!(!log.contains("cut short"), "{log}");
    assert!(mails(&ops).is_empty(), "{:?}", mails(&ops));

    // four hours, the task still `processing`: the hold is cut short, both alarms are mailed
    // with the line that says why, and the log warns
    hold_began_hours_ago(&env, 4).await;
    let (summary, log) = tick_json(&env);
    assert_eq!(summary["maintenance"], serde_json::json!([]), "{summary}");
    let cut = &summary["maintenance_cut_short"][0];
    assert_eq!(
        (&cut["deployment"], &cut["task_id"]),
        (&serde_json::json!("paasta"), &serde_json::json!(77)),
        "{summary}"
    );
    assert!(summary["maintenance_oldest_seconds"].as_i64().unwrap() >= 4 * 3600);
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("maintenance hold cut short")
            && l.contains("paasta")),
        "{log}"
    );
    let got = mails(&ops);
    assert_eq!(got.len(), 2, "{got:?}");
    for (subject, body) in &got {
        assert!(subject.contains("cell/"), "{subject}");
        let line = body
            .lines()
            .find(|l| l.starts_with("[점검 보류 중단]"))
            .unwrap_or_else(|| panic!("no cut-short line in {body}"));
        for part in [
            "paasta",
            "77",
            "recreate instances",
            "alarms.maintenance_max_hours(3시간)",
        ] {
            assert!(line.contains(part), "{part} in {line}");
        }
    }
    assert_eq!(
        env.scalar_i64(
            "SELECT COUNT(*) FROM alarms WHERE alarm_type = 'fail' AND id NOT IN (SELECT alarm_id FROM batch_alarm_state WHERE held_since IS NOT NULL)"
        )
        .await,
        2
    );

    // the gauge, on /metrics of the long-running process
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(&env.config)
        .arg("run")
        .env("PORT", port.to_string())
        .env("MONIT_BATCH__SERVER__ENABLED", "true")
        .env("MONIT_BATCH__SERVER__BIND", "127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let start = Instant::now();
    let gauge = loop {
        let text = match http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("monit_maintenance_hold_oldest_seconds "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if let Some(v) = value.filter(|v| *v > 0.0) {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no gauge on /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(gauge >= 4.0 * 3600.0, "{gauge}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_digest_of_alarms_whose_hold_was_cut_short_says_why_once() {
    let fake = director(stuck_recreate()).await;
    let (env, ops) = env_with(
        "maxholddigest",
        &bosh_section(&fake),
        // the default bound (6 h) against the task, stuck for 30 days
        "digest_threshold = 1\nlanguage = \"en\"",
    )
    .await;
    router_and_director_report(&env).await;
    tick_json(&env);
    assert!(mails(&ops).is_empty());
    hold_began_hours_ago(&env, 30 * 24).await;
    tick_json(&env);
    let got = mails(&ops);
    assert_eq!(got.len(), 1, "one digest: {got:?}");
    let (subject, body) = &got[0];
    assert!(subject.starts_with("[DIGEST] 2 alarms"), "{subject}");
    assert_eq!(
        body.matches("[maintenance hold cut short]").count(),
        1,
        "{body}"
    );
    assert!(
        body.contains("BOSH task 77 (recreate instances) on deployment paasta")
            && body.contains("alarms.maintenance_max_hours (6 h)"),
        "{body}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_bad_maintenance_max_hours_is_refused_naming_the_key_and_the_range() {
    let dir = tempfile::tempdir().unwrap();
    for (value, says) in [
        (
            "0",
            "alarms.maintenance_max_hours = 0 is out of range: expected 1 to 168",
        ),
        (
            "169",
            "alarms.maintenance_max_hours = 169 is out of range: expected 1 to 168",
        ),
        ("-1", "maintenance_max_hours"),
        ("\"six\"", "maintenance_max_hours"),
    ] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(
            &cfg,
            format!(
                "[monitoring_db]\ndbname = \"monit\"\nusername = \"monit\"\npassword = \"pw\"\n\
                 [alarms]\nmaintenance_max_hours = {value}\n"
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_monit-batch"))
            .arg("--config")
            .arg(&cfg)
            .arg("check-config")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "{value} accepted");
        assert!(
            err.contains(says) && err.contains("bad.toml"),
            "{value}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Silences: bounded, and any row survives

fn silence_rows_json(env: &TestEnv, all: bool) -> Vec<serde_json::Value> {
    let mut args = vec!["silence", "list", "--json"];
    if all {
        args.push("--all");
    }
    let out = env.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

#[tokio::test]
async fn a_silence_longer_than_a_year_is_refused_naming_the_flag_and_the_maximum() {
    let (env, _) = env_with("silencelong", "", "").await;
    for long in ["500000w", "366d", "53w"] {
        let out = env.run(&[
            "silence",
            "add",
            "--match",
            "vm=router/*",
            "--for",
            long,
            "--comment",
            "long",
        ]);
        assert!(!out.status.success(), "{long} accepted: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains("--for") && err.contains("365d"),
            "{long}: {err}"
        );
    }
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM batch_silences").await,
        0,
        "nothing written"
    );
    // a year is allowed, and what is stored is that year, not a zero date
    let out = env.run(&[
        "silence",
        "add",
        "--match",
        "vm=router/*",
        "--for",
        "365d",
        "--comment",
        "a year",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        env.scalar_i64(
            "SELECT COUNT(*) FROM batch_silences WHERE ends_at BETWEEN UTC_TIMESTAMP() + INTERVAL 364 DAY \
             AND UTC_TIMESTAMP() + INTERVAL 366 DAY"
        )
        .await,
        1
    );
    let rows = silence_rows_json(&env, false);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["valid"], true);
    env.cleanup().await;
}

/// Rows no silence command wrote, as MariaDB keeps them with a lax sql_mode: a zero end date,
/// matchers that are not JSON (their ids are returned), and a zero start on a silence that is
/// otherwise fine (id 52, of a VM that does not exist).
async fn insert_broken_silences(env: &TestEnv) -> (i64, i64) {
    env.exec(
        "SET @mode = @@SESSION.sql_mode; SET SESSION sql_mode = ''; \
         INSERT INTO batch_silences (id, matchers, author, comment, created_at, ends_at) VALUES \
         (50, '[{\"key\":\"vm\",\"value\":\"router_z1/*\"}]', 'kim', 'for 500000w', '0000-00-00 00:00:00', '0000-00-00 00:00:00'), \
         (51, '{not json', 'lee', 'garbage', UTC_TIMESTAMP(), UTC_TIMESTAMP() + INTERVAL 1 DAY), \
         (52, '[{\"key\":\"vm\",\"value\":\"nowhere/*\"}]', 'choi', 'no start', '0000-00-00', UTC_TIMESTAMP() + INTERVAL 1 DAY); \
         SET SESSION sql_mode = @mode;",
    )
    .await;
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM batch_silences WHERE CAST(ends_at AS CHAR) = '0000-00-00 00:00:00'")
            .await,
        1,
        "the zero date is stored as such"
    );
    (50, 51)
}

#[tokio::test]
async fn a_zero_date_or_garbage_silence_row_is_listed_as_invalid_the_tick_runs_and_it_expires() {
    let (env, ops) = env_with("silencezero", "[plugins.paasta]\nenabled = true\n", "").await;
    env.add_vm("router_z1/0", "10.0.16.11", "vms").await;
    env.write_points(&env.cf_db, &vm_points("10.0.16.11", now_s(), 97.0))
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
        "park",
    ]);
    assert!(add.status.success(), "{}", stderr(&add));
    let (zero, garbage) = insert_broken_silences(&env).await;

    // the listings work and flag both rows
    for args in [&["silence", "list", "--all"][..], &["silence", "list"][..]] {
        let out = env.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        let line = |id: i64| {
            text.lines()
                .find(|l| l.trim_start().starts_with(&format!("{id} ")))
                .unwrap_or_else(|| panic!("row {id} not listed by {args:?}:\n{text}"))
                .to_string()
        };
        let z = line(zero);
        assert!(z.contains("invalid") && z.contains("0000-00-00"), "{z}");
        let g = line(garbage);
        assert!(
            g.contains("invalid") && g.contains("matchers unreadable"),
            "{g}"
        );
        assert!(line(1).contains("active"), "{text}");
        assert!(
            line(52).contains("active"),
            "a bad start alone holds on: {text}"
        );
        assert!(stderr(&out).contains("hold nothing"), "{}", stderr(&out));
    }
    let rows = silence_rows_json(&env, true);
    let row = |id: i64| rows.iter().find(|r| r["id"] == id).unwrap().clone();
    let z = row(zero);
    assert_eq!(z["valid"], false, "{z}");
    assert_eq!(z["ends_at"], serde_json::Value::Null, "{z}");
    assert!(
        z["problems"]
            .to_string()
            .contains("ends_at '0000-00-00 00:00:00' is not a valid time"),
        "{z}"
    );
    assert_eq!(row(garbage)["valid"], false);
    assert_eq!(row(1)["valid"], true);
    assert_eq!(row(52)["valid"], true);
    assert_eq!(row(52)["created_at"], serde_json::Value::Null);

    // the tick runs: the valid silence holds, the garbage row is skipped with a warning
    let tick = env.run_once();
    assert!(tick.status.success(), "{}", stderr(&tick));
    assert!(
        stdout(&tick).contains("held      silenced 1"),
        "{}",
        stdout(&tick)
    );
    assert!(
        stderr(&tick).contains("silence ignored")
            && stderr(&tick).contains(&format!("expire {garbage}")),
        "{}",
        stderr(&tick)
    );
    assert!(mails(&ops).is_empty());

    // both can be expired; the zero date becomes a real end time
    for id in [zero, garbage] {
        let out = env.run(&["silence", "expire", &id.to_string()]);
        assert!(out.status.success(), "expire {id}: {}", stderr(&out));
    }
    let rows = silence_rows_json(&env, true);
    let z = rows.iter().find(|r| r["id"] == zero).unwrap();
    assert_eq!(z["valid"], true, "{z}");
    assert!(z["ends_at"].is_string(), "{z}");
    let active: Vec<i64> = silence_rows_json(&env, false)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        active,
        vec![52, 1],
        "only the valid silences are still listed"
    );
    let again = env.run(&["silence", "expire", &zero.to_string()]);
    assert!(!again.status.success());
    env.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Control characters

#[tokio::test]
async fn control_characters_in_a_silence_stay_on_its_line_and_round_trip_in_json() {
    let (env, _) = env_with("silencectl", "[plugins.paasta]\nenabled = true\n", "").await;
    let author = "kim\nroot";
    // a comment that tries to forge a second, active silence line and recolour the terminal
    let comment = "swap\r\n    9 active  until 2099-01-01T00:00:00Z root         vm=* (all)\u{1b}[31m\u{1b}[2J";
    let matcher = "vm=router\n*";
    let add = env.run(&[
        "silence",
        "add",
        "--match",
        matcher,
        "--for",
        "2h",
        "--comment",
        comment,
        "--author",
        author,
    ]);
    assert!(add.status.success(), "{}", stderr(&add));
    assert_eq!(stdout(&add).lines().count(), 1, "{}", stdout(&add));
    assert!(stdout(&add).contains("by kim\\nroot"), "{}", stdout(&add));

    let list = env.run(&["silence", "list"]);
    assert!(list.status.success());
    let text = stdout(&list);
    assert_eq!(text.lines().count(), 1, "one line per silence:\n{text}");
    assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
    for shown in [
        "kim\\nroot",
        "swap\\r\\n    9 active",
        "\\u{1b}[31m",
        "vm=router\\n*",
    ] {
        assert!(text.contains(shown), "{shown} in {text}");
    }

    let rows = silence_rows_json(&env, false);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["author"], author);
    assert_eq!(rows[0]["comment"], comment);
    assert_eq!(rows[0]["matchers"][0]["value"], "router\n*");

    // the tick's warning about a row that holds nothing is one line too
    sqlx::query(
        "INSERT INTO batch_silences (matchers, author, comment, created_at, ends_at) \
         VALUES (?, 'a', 'b', UTC_TIMESTAMP(), UTC_TIMESTAMP() + INTERVAL 1 HOUR)",
    )
    .bind("{not json\n\u{1b}[2Jforged")
    .execute(&env.db)
    .await
    .unwrap();
    let tick = env.run_once();
    assert!(tick.status.success(), "{}", stderr(&tick));
    let log = stderr(&tick);
    let warn: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("silence ignored"))
        .collect();
    assert_eq!(warn.len(), 1, "{log}");
    assert!(!log.contains('\u{1b}'), "{log:?}");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("forged") || l.contains("\u{1b}[2Jforged")),
        "{log}"
    );
    env.cleanup().await;
}
