//! Bad input end to end through the binary: broken InfluxDB answers, values that are not
//! percentages, unknown codes in Monitoring DB rows, an empty policy table, names with quotes and
//! unicode, configs of the wrong type. Each gives a clear error or is skipped with a log line;
//! nothing panics and nothing recorded is lost.

mod common;

use common::{TestEnv, mails_with, now_s, unique};
use std::process::Output;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Points of one VM every 30 s over the last 300 s (one per 30 s bucket). `ip` is written into
/// line protocol as it is, so the caller escapes space, comma and `=`.
fn vm_lines(ip: &str, end: i64, metrics: &[(&str, f64)]) -> String {
    let mut out = String::new();
    let mut t = end - 300;
    while t <= end {
        for (metric, v) in metrics {
            out.push_str(&format!(
                "cf_metrics,ip={ip},metricname={metric} value={v} {t}\n"
            ));
        }
        t += 30;
    }
    out
}

const HOT: &[(&str, f64)] = &[
    ("cpuStats.0", 95.0),
    ("cpuStats.1", 95.0),
    ("memoryStats.UsedPercent", 40.0),
    ("diskStats.Usage", 40.0),
];

/// `(origin_type, origin_id, alarm_type, level, resolve_status, alarm_cnt)` of every alarm row.
type AlarmRow = (String, i64, String, String, String, i64);

async fn alarms(env: &TestEnv) -> Vec<AlarmRow> {
    sqlx::query_as(
        "SELECT origin_type, CAST(origin_id AS SIGNED), alarm_type, level, resolve_status, CAST(alarm_cnt AS SIGNED) \
         FROM alarms ORDER BY id",
    )
    .fetch_all(&env.db)
    .await
    .unwrap()
}

fn run(env: &TestEnv, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_monit-batch"));
    c.arg("--config")
        .arg(&env.config)
        .args(args)
        .env_remove("PORT");
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = tokio::task::block_in_place(|| c.output().unwrap());
    eprintln!(
        "--- monit-batch {args:?} {vars:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The log as a file would hold it, without the colour codes the plain format writes.
fn log_text(b: &[u8]) -> String {
    let mut out = String::new();
    let mut chars = text(b).chars().collect::<Vec<_>>().into_iter();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn assert_no_panic(out: &Output) {
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "a panic exit");
}

// ---- InfluxDB answers that are not answers --------------------------------------------------

/// The real InfluxDB cannot be made to answer garbage, so a wiremock server stands in for a
/// broken proxy or InfluxDB in front of the collector's `/query`.
#[tokio::test(flavor = "multi_thread")]
async fn broken_influxdb_answers_fail_the_tick_and_leave_open_alarms_alone() {
    let env = TestEnv::new("badinflux", "[plugins.paasta]\nenabled = true\n").await;
    env.exec("UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'")
        .await;
    let vm = env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    env.exec(&format!(
        "INSERT INTO alarms (origin_type, origin_id, alarm_type, level, ip, app_yn, alarm_title, alarm_message, \
         resolve_status, alarm_cnt, alarm_send_date) VALUES ('pas', {vm}, 'cpu', 'critical', '10.0.16.21', 'N', \
         't', 'm', '1', 3, UTC_TIMESTAMP())"
    ))
    .await;
    let before = alarms(&env).await;
    // the VM has recovered in the real InfluxDB: only a tick that reads it may resolve the alarm
    env.write_points(
        &env.cf_db,
        &vm_lines("10.0.16.21", now_s(), &[("cpuStats.0", 10.0)]),
    )
    .await;

    let fake = MockServer::start().await;
    let uri = fake.uri();
    let cases: Vec<(&str, ResponseTemplate, &str)> = vec![
        (
            "truncated JSON",
            ResponseTemplate::new(200).set_body_raw(
                r#"{"results":[{"statement_id":0,"series":[{"name":"cf_metrics","tags":{"ip":"10.0"#,
                "application/json",
            ),
            "malformed answer",
        ),
        (
            "an error field",
            ResponseTemplate::new(200).set_body_raw(
                r#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#,
                "application/json",
            ),
            "query error",
        ),
        (
            "a top-level error",
            ResponseTemplate::new(200)
                .set_body_raw(r#"{"error":"error parsing query"}"#, "application/json"),
            "query error",
        ),
        (
            "an HTML page",
            ResponseTemplate::new(200).set_body_raw(
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
                "text/html",
            ),
            "malformed answer",
        ),
        (
            "a 500",
            ResponseTemplate::new(500).set_body_string("internal error"),
            "HTTP 500",
        ),
        (
            "an empty 200",
            ResponseTemplate::new(200),
            "malformed answer",
        ),
    ];
    for (what, answer, says) in cases {
        fake.reset().await;
        Mock::given(method("POST"))
            .and(path("/query"))
            .respond_with(answer)
            .mount(&fake)
            .await;
        let out = run(
            &env,
            &[("MONIT_BATCH__INFLUX__URL", &uri)],
            &["run", "--once"],
        );
        assert_no_panic(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: a failed tick exits 2");
        let stdout = text(&out.stdout);
        let error = stdout
            .lines()
            .find(|l| l.trim_start().starts_with("ERROR"))
            .unwrap_or_else(|| panic!("{what}: no ERROR line: {stdout}"));
        assert!(
            error.contains("paasta") && error.contains(&uri) && error.contains(says),
            "{what}: the error names the collector, the InfluxDB URL and the problem: {error}"
        );
        assert_eq!(
            alarms(&env).await,
            before,
            "{what}: no alarm opened, counted or resolved"
        );
        assert!(
            !fake.received_requests().await.unwrap().is_empty(),
            "{what}: the fake was asked"
        );
    }
    let errors: i64 = env
        .scalar_i64("SELECT COUNT(*) FROM batch_runs WHERE errors LIKE '%InfluxDB%'")
        .await;
    assert_eq!(
        errors, 6,
        "every failed tick is in the ledger with its error"
    );

    // the same tick against the real InfluxDB reads the recovery: the checks above could fail
    let out = env.run_once();
    assert!(out.status.success());
    assert_eq!(alarms(&env).await[0].4, "3", "resolved once really read");
    env.cleanup().await;
}

// ---- values that are not percentages --------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn negative_values_and_zero_total_memory_open_no_alarm() {
    let env = TestEnv::new("negative", "[plugins.paasta]\nenabled = true\n").await;
    env.exec("UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'")
        .await;
    let hot = env.add_vm("hot/0", "10.0.0.1", "vms").await;
    env.add_vm("negative/0", "10.0.0.2", "vms").await;
    env.add_vm("zero-memory/0", "10.0.0.3", "vms").await;
    let end = now_s();
    let mut lines = vm_lines("10.0.0.1", end, HOT);
    lines.push_str(&vm_lines(
        "10.0.0.2",
        end,
        &[
            ("cpuStats.0", -50.0),
            ("cpuStats.1", 20.0),
            ("memoryStats.UsedPercent", -10.0),
            ("diskStats.Usage", -5.0),
            ("diskStats./var/vcap/data.Usage", -1e308),
        ],
    ));
    // 0/0: a writer reporting a machine without memory (the newer agent's formula)
    lines.push_str(&vm_lines(
        "10.0.0.3",
        end,
        &[
            ("cpuStats.core.0", 20.0),
            ("memoryStats.TotalMemory", 0.0),
            ("memoryStats.AvailableMemory", 0.0),
            ("memoryStats.FreeMemory", 0.0),
        ],
    ));
    env.write_points(&env.cf_db, &lines).await;
    let out = env.run_once();
    assert_no_panic(&out);
    assert!(out.status.success());
    assert_eq!(
        alarms(&env).await,
        vec![(
            "pas".into(),
            hot,
            "cpu".into(),
            "critical".into(),
            "1".into(),
            1
        )],
        "only the hot VM alarms"
    );
    env.cleanup().await;
}

/// A memory or disk "percentage" of 1e308 or 250 is a writer's bug, not a full machine.
#[tokio::test(flavor = "multi_thread")]
async fn huge_values_open_no_alarm() {
    let env = TestEnv::new("huge", "[plugins.paasta]\nenabled = true\n").await;
    env.exec("UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'")
        .await;
    let hot = env.add_vm("hot/0", "10.0.0.1", "vms").await;
    env.add_vm("huge/0", "10.0.0.2", "vms").await;
    let end = now_s();
    let mut lines = vm_lines("10.0.0.1", end, HOT);
    lines.push_str(&vm_lines(
        "10.0.0.2",
        end,
        &[
            ("cpuStats.0", 1e308),
            ("cpuStats.1", 20.0),
            ("memoryStats.UsedPercent", 1e308),
            ("diskStats.Usage", 250.0),
        ],
    ));
    env.write_points(&env.cf_db, &lines).await;
    let out = env.run_once();
    assert_no_panic(&out);
    assert!(out.status.success());
    let a = alarms(&env).await;
    assert_eq!(
        a.iter().map(|r| (r.1, r.2.as_str())).collect::<Vec<_>>(),
        vec![(hot, "cpu")],
        "{a:?}"
    );
    env.cleanup().await;
}

/// Two 1e308 points in one bucket make InfluxDB's mean +Inf, which InfluxDB 1.6 cannot put in
/// JSON: it answers `200` with a Go marshalling error instead of the series of every VM.
#[tokio::test(flavor = "multi_thread")]
async fn an_overflowing_vm_is_a_clear_error_or_is_dropped() {
    let env = TestEnv::new("overflow", "[plugins.paasta]\nenabled = true\n").await;
    env.exec("UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'")
        .await;
    let hot = env.add_vm("hot/0", "10.0.0.1", "vms").await;
    env.add_vm("overflow/0", "10.0.0.2", "vms").await;
    let end = now_s();
    let bucket = end - end % 30 - 60;
    let mut lines = vm_lines("10.0.0.1", end, HOT);
    lines.push_str(&vm_lines("10.0.0.2", end, &[("cpuStats.1", 20.0)]));
    lines.push_str(&format!(
        "cf_metrics,ip=10.0.0.2,metricname=diskStats.Usage value=1e308 {bucket}\n\
         cf_metrics,ip=10.0.0.2,metricname=diskStats.Usage value=1e308 {}\n",
        bucket + 1
    ));
    env.write_points(&env.cf_db, &lines).await;
    let out = env.run_once();
    assert_no_panic(&out);
    let a = alarms(&env).await;
    if out.status.success() {
        // the query keeps absurd values out of InfluxDB's mean: the others are evaluated
        assert_eq!(
            a.iter().map(|r| (r.1, r.2.as_str())).collect::<Vec<_>>(),
            vec![(hot, "cpu")],
            "{a:?}"
        );
    } else {
        // today: the whole paasta step fails, clearly, and nothing is written from it
        assert_eq!(out.status.code(), Some(2));
        let stdout = text(&out.stdout);
        assert!(
            stdout.lines().any(|l| l.contains("ERROR")
                && l.contains("paasta")
                && l.contains(&env.influx)
                && l.contains("malformed answer")),
            "{stdout}"
        );
        assert!(a.is_empty(), "{a:?}");
    }
    env.cleanup().await;
}

// ---- Monitoring DB rows with unknown codes ----------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn unknown_codes_in_db_rows_are_skipped_with_a_log_line() {
    let env = TestEnv::new("codes", "[plugins.paasta]\nenabled = true\n").await;
    env.exec(
        "UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'; \
         INSERT INTO alarm_policies (id, origin_type, alarm_type, warning_threshold, critical_threshold, repeat_time, measure_time) \
         VALUES (100, 'xyz', 'cpu', 1, 2, 10, 300), (101, 'pas', 'gpu', 1, 2, 10, 300), (102, 'pas', 'memory', 1, 2, 10, 300); \
         INSERT INTO alarms (id, origin_type, origin_id, alarm_type, level, app_yn, alarm_title, alarm_message, resolve_status) VALUES \
         (900, 'zzz', 999, 'cpu', 'warning', 'N', 'odd origin', 'm', '1'), \
         (901, 'pas', 999, 'gpu', 'warning', 'N', 'odd type', 'm', '1'), \
         (902, 'pas', 999, 'cpu', 'urgent', 'N', 'odd level', 'm', '1');",
    )
    .await;
    let hot = env.add_vm("hot/0", "10.0.0.1", "vms").await;
    env.write_points(&env.cf_db, &vm_lines("10.0.0.1", now_s(), HOT))
        .await;
    let out = env.run_once();
    assert_no_panic(&out);
    assert!(out.status.success(), "bad rows do not fail the tick");
    let log = log_text(&out.stderr);
    for needle in [
        "policy_id=100",
        "unknown origin_type code \"xyz\"",
        "policy_id=101",
        "unknown alarm_type code \"gpu\"",
        "policy_id=102",
        "same origin_type and alarm_type",
        "alarm_id=900",
        "alarm_id=901",
        "alarm_id=902",
        "unknown level \"urgent\"",
    ] {
        assert!(log.contains(needle), "no log line with {needle}: {log}");
    }
    let a = alarms(&env).await;
    assert_eq!(
        a,
        vec![
            (
                "zzz".into(),
                999,
                "cpu".into(),
                "warning".into(),
                "1".into(),
                1
            ),
            (
                "pas".into(),
                999,
                "gpu".into(),
                "warning".into(),
                "1".into(),
                1
            ),
            (
                "pas".into(),
                999,
                "cpu".into(),
                "urgent".into(),
                "1".into(),
                1
            ),
            // the seed policies still work; the duplicate pas/memory row (1 %) is not used
            (
                "pas".into(),
                hot,
                "cpu".into(),
                "critical".into(),
                "1".into(),
                1
            ),
        ],
        "the odd rows are left as they are, the others evaluated"
    );
    env.cleanup().await;
}

/// A Monitoring DB created by the original may allow NULL in alarm_policies: a row with a NULL
/// threshold is skipped with a warning naming the policy and the column, a NULL repeat_time
/// takes the default, and every other policy still runs (the tick used to fail for every origin).
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_row_with_a_null_threshold_is_skipped_and_the_others_run() {
    let env = TestEnv::new("nullpolicy", "[plugins.paasta]\nenabled = true\n").await;
    env.exec(
        "ALTER TABLE alarm_policies MODIFY warning_threshold int NULL, MODIFY critical_threshold int NULL, \
         MODIFY repeat_time int NULL, MODIFY measure_time int NULL; \
         UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'; \
         UPDATE alarm_policies SET warning_threshold = NULL WHERE origin_type = 'pas' AND alarm_type = 'memory'; \
         UPDATE alarm_policies SET critical_threshold = NULL WHERE origin_type = 'bos' AND alarm_type = 'cpu'; \
         UPDATE alarm_policies SET repeat_time = NULL, measure_time = NULL WHERE origin_type = 'pas' AND alarm_type = 'disk';",
    )
    .await;
    let memory_id = env
        .scalar_i64("SELECT CAST(id AS SIGNED) FROM alarm_policies WHERE origin_type = 'pas' AND alarm_type = 'memory'")
        .await;
    let bos_cpu_id = env
        .scalar_i64("SELECT CAST(id AS SIGNED) FROM alarm_policies WHERE origin_type = 'bos' AND alarm_type = 'cpu'")
        .await;
    let hot = env.add_vm("hot/0", "10.0.0.1", "vms").await;
    env.write_points(&env.cf_db, &vm_lines("10.0.0.1", now_s(), HOT))
        .await;
    let out = env.run_once();
    assert_no_panic(&out);
    assert!(out.status.success(), "one bad row does not fail the tick");
    let log = log_text(&out.stderr);
    for needle in [
        format!("policy_id={memory_id}"),
        "column=\"warning_threshold\"".to_string(),
        format!("policy_id={bos_cpu_id}"),
        "column=\"critical_threshold\"".to_string(),
    ] {
        assert!(log.contains(&needle), "no log line with {needle}: {log}");
    }
    assert_eq!(
        alarms(&env).await,
        vec![(
            "pas".into(),
            hot,
            "cpu".into(),
            "critical".into(),
            "1".into(),
            1
        )],
        "the pas cpu policy still runs"
    );
    env.cleanup().await;
}

// ---- an empty policy table ------------------------------------------------------------------------

/// Without policies no usage can breach, but a VM of the inventory that reports nothing is still
/// down: its `fail` alarm opens and repeats every `alarms.default_repeat_minutes`. Emptying the
/// table silences thresholds, not outages (the original panicked here, defect D6).
#[tokio::test(flavor = "multi_thread")]
async fn empty_policy_table_opens_only_fail_alarms() {
    let env = TestEnv::new(
        "nopolicy",
        "[plugins.paasta]\nenabled = true\n[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\n\
         smtp_port = 2525\nsecurity = \"plain\"\nsender = \"monit@example.com\"\n",
    )
    .await;
    let tag = unique("nopolicy");
    env.exec(&format!(
        "DELETE FROM alarm_policies; DELETE FROM alarm_targets; \
         INSERT INTO alarm_targets (origin_type, mail_address) VALUES ('pas', '{tag}@example.com');"
    ))
    .await;
    env.add_vm("hot/0", "10.0.0.1", "vms").await;
    let silent = env.add_vm("silent/0", "10.0.0.2", "vms").await;
    env.write_points(
        &env.cf_db,
        &vm_lines(
            "10.0.0.1",
            now_s(),
            &[
                ("cpuStats.0", 99.0),
                ("memoryStats.UsedPercent", 99.0),
                ("diskStats.Usage", 99.0),
            ],
        ),
    )
    .await;
    let fail = |cnt| {
        (
            "pas".into(),
            silent,
            "fail".into(),
            "fail".into(),
            "1".into(),
            cnt,
        )
    };

    let out = env.run_once();
    assert_no_panic(&out);
    assert!(out.status.success());
    assert_eq!(alarms(&env).await, vec![fail(1)]);
    assert_eq!(mails_with("plain", &tag).len(), 1);

    // still down, within the default repeat time: counted, not re-sent
    assert!(env.run_once().status.success());
    assert_eq!(alarms(&env).await, vec![fail(2)]);
    assert_eq!(mails_with("plain", &tag).len(), 1);

    // past alarms.default_repeat_minutes (10): re-sent
    env.exec("UPDATE alarms SET alarm_send_date = UTC_TIMESTAMP() - INTERVAL 11 MINUTE")
        .await;
    assert!(env.run_once().status.success());
    assert_eq!(alarms(&env).await, vec![fail(3)]);
    assert_eq!(mails_with("plain", &tag).len(), 2);
    env.cleanup().await;
}

// ---- names and tag values with quotes and unicode ----------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn names_and_tag_values_with_quotes_and_unicode_are_kept() {
    let env = TestEnv::new(
        "unicode",
        "[plugins.paasta]\nenabled = true\n[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\n\
         smtp_port = 2525\nsecurity = \"plain\"\nsender = \"monit@example.com\"\n",
    )
    .await;
    let tag = unique("unicode");
    env.exec(&format!(
        "UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'; DELETE FROM alarm_targets; \
         INSERT INTO alarm_targets (origin_type, mail_address) VALUES ('pas', '{tag}@example.com');"
    ))
    .await;
    let name = r#"cell'"\z1/0 한글"#;
    // vms.ip is varchar(15): quotes, a backslash, Hangul, a space, a comma and `=` fit
    let ip = r#"9'"\한 ,=x"#;
    let ip_in_line_protocol = r#"9'"\한\ \,\=x"#;
    let vm = env.add_vm(name, ip, "cel").await;
    let emoji = env.add_vm("🔥 cell/1", "10.0.0.77", "cel").await;
    let end = now_s();
    let mut lines = vm_lines(ip_in_line_protocol, end, HOT);
    lines.push_str(&vm_lines("10.0.0.77", end, HOT));
    env.write_points(&env.cf_db, &lines).await;

    let out = env.run_once();
    assert_no_panic(&out);
    assert!(out.status.success());
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT CAST(origin_id AS SIGNED), ip, alarm_title FROM alarms WHERE alarm_type = 'cpu' ORDER BY origin_id",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                vm,
                ip.to_string(),
                format!("[{name}]의 cpu 상태 [critical]")
            ),
            (
                emoji,
                "10.0.0.77".to_string(),
                "[🔥 cell/1]의 cpu 상태 [critical]".to_string()
            ),
        ],
        "the tag value matched its VM, and names are recorded as they are"
    );
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM alarms WHERE alarm_type = 'fail'")
            .await,
        0,
        "both VMs' data was found under their tag values"
    );
    let subjects: Vec<String> = mails_with("plain", &tag)
        .iter()
        .filter_map(|m| {
            mail_parser::MessageParser::default()
                .parse(m.as_bytes())
                .and_then(|p| p.subject().map(str::to_string))
        })
        .collect();
    assert!(
        subjects.iter().any(|s| s.contains(name)),
        "the mail subject carries the name intact: {subjects:?}"
    );
    env.cleanup().await;
}

// ---- configs of the wrong type ------------------------------------------------------------------

fn check_config(dir: &std::path::Path, file: &str, body: &str) -> Output {
    let p = dir.join(file);
    std::fs::write(&p, body).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(&p)
        .arg("check-config")
        .env_remove("PORT")
        .env_remove("MONIT_BATCH_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn wrong_types_in_config_exit_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = "[monitoring_db]\ndbname = \"monit\"\n";
    let ok = check_config(dir.path(), "ok.toml", db);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    for (file, body, key) in [
        (
            "interval.toml",
            format!("{db}[batch]\ninterval_seconds = \"sixty\"\n"),
            "batch.interval_seconds",
        ),
        (
            "port.toml",
            format!("{db}[server]\nport = -1\n"),
            "server.port",
        ),
        (
            "enabled.toml",
            format!("{db}[plugins.paasta]\nenabled = \"maybe\"\n"),
            "plugins.paasta.enabled",
        ),
        (
            "config.ini",
            "monitoring.db.dbname = monit\nbatch.interval.second = sixty\n".to_string(),
            "batch.interval.second",
        ),
        (
            "config.ini",
            "monitoring.db.dbname = monit\nserver.port = -1\n".to_string(),
            "server.port",
        ),
        (
            "config.ini",
            "monitoring.db.dbname = monit\nmail.alarm.send = maybe\n".to_string(),
            "mail.alarm.send",
        ),
        // numbers that used to pass and then overflow a time computation (exit 101)
        (
            "retry.toml",
            format!("{db}[alarms]\nretry_max_seconds = 9223372036854775807\n"),
            "alarms.retry_max_seconds",
        ),
        (
            "repeat.toml",
            format!("{db}[alarms]\ndefault_repeat_minutes = 9223372036854775807\n"),
            "alarms.default_repeat_minutes",
        ),
        (
            "ledger.toml",
            format!("{db}[batch]\nledger_retention_days = 9223372036854775807\n"),
            "batch.ledger_retention_days",
        ),
        (
            "bucket.toml",
            format!("{db}[influx]\nbucket_seconds = 0\n"),
            "influx.bucket_seconds",
        ),
        (
            "bosh.toml",
            format!(
                "{db}[plugins.bosh]\nenabled = true\napi_url = \"https://director.example\"\nusername = \"a\"\n\
                 cf_deployment = \"cf\"\ntask_timeout_seconds = 9223372036854775807\n"
            ),
            "plugins.bosh.task_timeout_seconds",
        ),
        // integers too large for their type name the key (and the line when TOML cannot hold them)
        (
            "big.toml",
            format!("{db}[batch]\ninterval_seconds = 99999999999999999999\n"),
            "batch.interval_seconds",
        ),
        (
            "u16.toml",
            format!("{db}[server]\nport = 70000\n"),
            "server.port",
        ),
        (
            "config.ini",
            "monitoring.db.dbname = monit\nbatch.interval.second = 99999999999999999999\n"
                .to_string(),
            "batch.interval.second",
        ),
        // a log level that is not one used to become `info` silently
        (
            "level.toml",
            format!("{db}[log]\nlevel = \"verbose\"\n"),
            "log.level",
        ),
    ] {
        let out = check_config(dir.path(), file, &body);
        assert_no_panic(&out);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{file} accepted:\n{body}");
        // a plugin checks its section when it starts, after the file was read: the key suffices
        assert!(
            err.contains(key) && (err.contains(file) || key.starts_with("plugins.")),
            "{file}: the error names {key} and the file: {err}"
        );
        assert!(out.stdout.is_empty(), "no effective config printed");
    }
}

/// A mistyped config.ini key was reported before logging started, so nowhere: check-config
/// prints it, and `run` logs it once logging has started.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_config_ini_keys_are_reported_by_check_config_and_in_the_log() {
    let env = TestEnv::new("inikeys", "").await;
    let url = url::Url::parse(&env.mysql).unwrap();
    let ini = env.dir.path().join("config.ini");
    std::fs::write(
        &ini,
        format!(
            "monitoring.db.dbname = {}\nmonitoring.db.username = {}\nmonitoring.db.password = {}\n\
             monitoring.db.host = 127.0.0.1\nmonitoring.db.port = {}\ninflux.url = {}\n\
             batch.intervall.second = 30\nserver.port = {}\n",
            env.name,
            url.username(),
            url.password().unwrap_or(""),
            url.port().unwrap_or(3306),
            env.influx,
            common::free_port(),
        ),
    )
    .unwrap();
    let warning = "config.ini:7: unknown config.ini key `batch.intervall.second` ignored";
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(&ini)
        .arg("check-config")
        .env_remove("PORT")
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        text(&check.stderr).contains(warning),
        "{}",
        text(&check.stderr)
    );
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(&ini)
        .args(["run", "--once", "--dry-run"])
        .env_remove("PORT")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let log = log_text(&run.stderr);
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains(warning)),
        "{log}"
    );
    env.cleanup().await;
}
