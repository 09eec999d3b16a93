//! Mail delivery through the binary against SMTP servers that misbehave (testkit's fault sink,
//! a real aiosmtpd): slow, hanging, refusing one recipient, and a kill -9 mid-batch. What must
//! hold: every notification reaches every accepted recipient, a duplicate only for the one mail
//! in flight at a crash, and a refused recipient never holds back the others.

mod common;

use common::{TestEnv, now_s, unique};
use monit_testkit::FaultSink;
#[cfg(feature = "webhook")]
use monit_testkit::hook::HookReceiver;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// `alarms` keys first (the harness's config ends in its [alarms] table), then the plugins.
/// Digests off: these tests count one mail per outbox row (tests/notifications.rs has digests).
fn email(port: u16, alarms: &str) -> String {
    format!(
        "{alarms}\ndigest_threshold = 0\n[plugins.paasta]\nenabled = true\n[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\n\
         security = \"plain\"\nsender = \"monit@example.com\"\ntimeout_seconds = 2\n"
    )
}

/// As [`email`], with digests on (more than 10 rows for the same recipients: one mail) and
/// English subjects, so a digest is told by its subject in the raw mail.
fn email_digests(port: u16, alarms: &str) -> String {
    format!(
        "{alarms}\ndigest_threshold = 10\nlanguage = \"en\"\n[plugins.paasta]\nenabled = true\n[plugins.email]\nenabled = true\n\
         smtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nsecurity = \"plain\"\nsender = \"monit@example.com\"\ntimeout_seconds = 5\n"
    )
}

fn set_step_timeout(env: &TestEnv, seconds: u64) {
    let text = std::fs::read_to_string(&env.config).unwrap();
    let text = text.replace(
        "step_timeout_seconds = 20",
        &format!("step_timeout_seconds = {seconds}"),
    );
    std::fs::write(&env.config, text).unwrap();
}

/// `n` VMs at 95 % CPU: `n` critical alarms, one mail each.
async fn hot_vms(env: &TestEnv, n: usize) {
    let end = now_s();
    let mut lines = String::new();
    for i in 0..n {
        let ip = format!("10.7.{}.{}", i / 200, i % 200 + 1);
        env.add_vm(&format!("hot/{i}"), &ip, "vms").await;
        let mut t = end - 300;
        while t <= end {
            for (metric, v) in [
                ("cpuStats.0", 95.0),
                ("memoryStats.UsedPercent", 10.0),
                ("diskStats.Usage", 10.0),
            ] {
                lines.push_str(&format!(
                    "cf_metrics,ip={ip},metricname={metric},origin=rep value={v} {t}\n"
                ));
            }
            t += 30;
        }
    }
    env.write_points(&env.cf_db, &lines).await;
}

async fn targets(env: &TestEnv, addrs: &[&str]) {
    env.exec("DELETE FROM alarm_targets").await;
    for a in addrs {
        env.exec(&format!(
            "INSERT INTO alarm_targets (origin_type, mail_address, mail_send_yn) VALUES ('pas', '{a}', 'Y')"
        ))
        .await;
    }
}

/// Mails per outbox row.
fn per_row(sink: &FaultSink) -> HashMap<i64, usize> {
    let mut out = HashMap::new();
    for m in sink.mails() {
        *out.entry(m.notification_id.expect("every mail names its row"))
            .or_default() += 1;
    }
    out
}

async fn count(env: &TestEnv, status: &str) -> i64 {
    env.scalar_i64(&format!(
        "SELECT COUNT(*) FROM batch_notifications WHERE status = '{status}'"
    ))
    .await
}

/// The trial that sent 294 mails for 98 notifications: a server taking 0.3 s per mail and more
/// mail than a step can send. Each tick sends within its budget; every notification arrives
/// exactly once, none is left behind.
#[tokio::test]
async fn a_slow_smtp_server_gets_every_mail_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FaultSink::start(dir.path(), &["--delay", "0.3"]);
    let env = TestEnv::new("slowsmtp", &email(sink.port, "notify_budget_seconds = 2")).await;
    set_step_timeout(&env, 3);
    targets(&env, &[&format!("{}@example.org", unique("ops"))]).await;
    hot_vms(&env, 20).await;
    let first = env.run_once();
    assert!(first.status.success());
    let after_first = sink.mails().len();
    assert!(
        (1..20).contains(&after_first),
        "the budget spreads 20 mails at 0.3 s over several ticks: {after_first}"
    );
    for _ in 0..10 {
        if count(&env, "pending").await == 0 {
            break;
        }
        env.run_once();
    }
    assert_eq!(count(&env, "sent").await, 20);
    let rows = per_row(&sink);
    assert_eq!(rows.len(), 20, "every notification arrived");
    assert!(rows.values().all(|n| *n == 1), "none twice: {rows:?}");
    env.cleanup().await;
}

/// A server that accepts 3 mails and then stops answering: the 3 are recorded as sent at once,
/// the rest stays pending, and nothing is sent twice when a healthy server is back.
#[tokio::test]
async fn a_server_that_hangs_after_three_mails_causes_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = FaultSink::start(dir.path(), &["--hang-after", "3"]);
    let env = TestEnv::new("hangsmtp", &email(sink.port, "")).await;
    targets(&env, &[&format!("{}@example.org", unique("ops"))]).await;
    hot_vms(&env, 8).await;
    let started = Instant::now();
    let out = env.run_once();
    assert!(out.status.success());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(sink.mails().len(), 3);
    assert_eq!(
        count(&env, "sent").await,
        3,
        "each accepted mail is on record"
    );
    assert_eq!(count(&env, "pending").await, 5);
    let port = sink.port;
    sink.stop();
    let healthy = FaultSink::start_on(port, dir.path(), &[]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for _ in 0..5 {
        if count(&env, "pending").await == 0 {
            break;
        }
        env.run_once();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(count(&env, "sent").await, 8);
    let rows = per_row(&healthy);
    assert_eq!(rows.len(), 8);
    assert!(rows.values().all(|n| *n == 1), "none twice: {rows:?}");
    env.cleanup().await;
}

/// One address refused at RCPT (550, a typo in a real domain): the others get the mail, the
/// refusal is recorded for that address, and it is not retried.
#[tokio::test]
async fn one_refused_recipient_does_not_block_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let good = format!("{}@example.org", unique("good"));
    let bad = format!("{}@example.org", unique("typo"));
    let late = format!("{}@example.org", unique("late"));
    let sink = FaultSink::start(dir.path(), &["--refuse", &bad]);
    let env = TestEnv::new("refused", &email(sink.port, "")).await;
    targets(&env, &[&good, &bad]).await;
    hot_vms(&env, 1).await;
    assert!(env.run_once().status.success());
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt, vec![good.clone()]);
    assert_eq!(count(&env, "sent").await, 1);
    let outcomes: Vec<(String, String)> = sqlx::query_as(
        "SELECT recipient, outcome FROM batch_notification_recipients ORDER BY recipient",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    assert_eq!(outcomes, vec![(bad.clone(), "rejected".to_string())]);
    let err: String = sqlx::query_scalar("SELECT last_error FROM batch_notifications")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert!(err.contains(&bad) && err.contains("550"), "{err}");
    // a recipient added later does not make the sent mail go out again
    targets(&env, &[&good, &bad, &late]).await;
    env.run_once();
    assert_eq!(sink.mails().len(), 1);
    env.cleanup().await;
}

/// Every recipient refused: the notification is parked, not retried forever; the outbox
/// command lists it and queues it again.
#[tokio::test]
async fn a_notification_every_recipient_refuses_is_parked_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let bad = format!("{}@example.org", unique("gone"));
    let sink = FaultSink::start(dir.path(), &["--refuse", &bad]);
    let env = TestEnv::new("parked", &email(sink.port, "")).await;
    targets(&env, &[&bad]).await;
    hot_vms(&env, 1).await;
    assert!(env.run_once().status.success());
    assert_eq!(count(&env, "parked").await, 1);
    let listed = env.run(&["outbox", "list", "--status", "parked"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("parked") && text.contains("every recipient was refused"),
        "{text}"
    );
    let id = env
        .scalar_i64("SELECT CAST(id AS SIGNED) FROM batch_notifications")
        .await;
    let retry = env.run(&["outbox", "retry", &id.to_string()]);
    assert!(String::from_utf8_lossy(&retry.stdout).contains("1 notification(s) queued again"));
    assert_eq!(count(&env, "pending").await, 1);
    let dropped = env.run(&["outbox", "drop", &id.to_string()]);
    assert!(dropped.status.success());
    assert_eq!(count(&env, "dropped").await, 1);
    assert!(sink.mails().is_empty());
    env.cleanup().await;
}

/// kill -9 in the middle of a batch: what was accepted before is on record; after the claim
/// of the dead process lapses the rest goes out, and at most the one mail in flight is doubled.
#[tokio::test]
async fn a_kill_mid_batch_doubles_at_most_the_mail_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FaultSink::start(dir.path(), &["--delay", "0.2"]);
    let env = TestEnv::new("killmid", &email(sink.port, "notify_budget_seconds = 60")).await;
    set_step_timeout(&env, 2);
    targets(&env, &[&format!("{}@example.org", unique("ops"))]).await;
    hot_vms(&env, 20).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(&env.config)
        .args(["run", "--once"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.mails().len() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    let before = sink.mails().len();
    assert!((5..20).contains(&before), "killed mid-batch: {before}");
    let sent = count(&env, "sent").await;
    assert!(
        sent as usize >= before - 1,
        "every accepted mail but the one in flight is on record: {sent} of {before}"
    );
    // claim ttl = 2 x step timeout + 5 s
    tokio::time::sleep(Duration::from_secs(10)).await;
    for _ in 0..5 {
        if count(&env, "pending").await == 0 {
            break;
        }
        env.run_once();
    }
    assert_eq!(count(&env, "sent").await, 20);
    let rows = per_row(&sink);
    assert_eq!(rows.len(), 20, "nothing lost");
    let doubled = rows.values().filter(|n| **n > 1).count();
    assert!(doubled <= 1, "at most the mail in flight twice: {rows:?}");
    env.cleanup().await;
}

/// The row ids of a digest's `X-Monit-Notification-Id` header, unfolded.
fn digest_ids(raw: &str) -> Vec<i64> {
    let mut value = String::new();
    let mut inside = false;
    for line in raw.lines().take_while(|l| !l.is_empty()) {
        if let Some(v) = line.strip_prefix("X-Monit-Notification-Id:") {
            value.push_str(v);
            inside = true;
        } else if inside && line.starts_with([' ', '\t']) {
            value.push_str(line);
        } else {
            inside = false;
        }
    }
    value
        .split(',')
        .filter_map(|id| id.trim().parse().ok())
        .collect()
}

/// Issue 18, item 1: 1,000 alarms, two recipients, and a server that greylists one of them
/// (450 at RCPT TO) for one tick. The other gets one digest at once; the deferred one gets its
/// backlog as ONE digest on the next tick, not 1,000 single mails; nobody gets a row twice and
/// each row records both recipients.
#[tokio::test]
async fn a_recipient_deferred_for_one_tick_gets_its_backlog_as_one_digest() {
    const ALARMS: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let ops = format!("{}@example.org", unique("ops"));
    let grey = format!("{}@example.org", unique("grey"));
    let mut sink = FaultSink::start(dir.path(), &["--tempfail", &grey, "--tempfail-code", "450"]);
    let env = TestEnv::new("greylist", &email_digests(sink.port, "")).await;
    targets(&env, &[&ops, &grey]).await;
    hot_vms(&env, ALARMS).await;
    let out = env.run_once();
    assert!(out.status.success());
    // one warning for the deferred digest, not one per row
    let warned = String::from_utf8_lossy(&out.stderr)
        .matches("not delivered, retried later")
        .count();
    assert_eq!(warned, 1);
    let digest = format!("[DIGEST] {ALARMS} alarms: critical {ALARMS}");
    let first = sink.mails();
    assert_eq!(first.len(), 1, "one digest on the first tick");
    assert_eq!(
        first[0].rcpt,
        vec![ops.clone()],
        "greylisted: only ops took it"
    );
    assert!(first[0].raw.contains(&digest), "{}", &first[0].raw[..500]);
    assert_eq!(count(&env, "pending").await, ALARMS as i64);
    // the greylisting is over
    let port = sink.port;
    sink.stop();
    let healthy = FaultSink::start_on(port, dir.path(), &[]);
    assert!(env.run_once().status.success());
    let mails = healthy.mails();
    let to = |who: &str| -> Vec<_> {
        mails
            .iter()
            .filter(|m| m.rcpt.iter().any(|r| r == who))
            .collect()
    };
    let (to_ops, to_grey) = (to(&ops), to(&grey));
    assert_eq!(
        to_grey.len(),
        1,
        "the deferred recipient gets one digest, not {} mails",
        to_grey.len()
    );
    assert_eq!(
        to_grey[0].rcpt,
        vec![grey.clone()],
        "ops is not sent it again"
    );
    assert!(to_grey[0].raw.contains(&digest));
    // the digest names every row it carries, in a header folded under SMTP's line limit
    let mut named = digest_ids(&to_grey[0].raw);
    named.sort();
    let rows: Vec<i64> =
        sqlx::query_scalar("SELECT CAST(id AS SIGNED) FROM batch_notifications ORDER BY id")
            .fetch_all(&env.db)
            .await
            .unwrap();
    assert_eq!(named, rows);
    assert!(to_grey[0].raw.lines().all(|l| l.len() <= 998));
    assert_eq!(to_ops.len(), 1, "ops got exactly one digest");
    assert_eq!(count(&env, "sent").await, ALARMS as i64);
    // ops is on record as done for every row (so no retry offers it again); the rows are sent
    assert_eq!(
        env.scalar_i64(&format!(
            "SELECT COUNT(*) FROM batch_notification_recipients WHERE outcome = 'accepted' AND recipient = '{ops}'"
        ))
        .await,
        ALARMS as i64
    );
    env.cleanup().await;
}

/// The same for a webhook: of two URLs, one answers 503 once (no retry inside the delivery);
/// the next tick it gets the 30 notifications still owed to it as one digest call, and the
/// other URL is not called again.
#[cfg(feature = "webhook")]
#[tokio::test]
async fn a_webhook_url_down_for_one_tick_gets_its_backlog_as_one_digest() {
    let hooks = HookReceiver::start();
    hooks.fail_next("down-once", 1);
    let config = format!(
        "digest_threshold = 10\n[plugins.paasta]\nenabled = true\n[plugins.webhook]\nenabled = true\n\
         urls = [\"{}\", \"{}\"]\nretry_max_times = 0\ntimeout_seconds = 2\n",
        hooks.url("up"),
        hooks.url("down-once")
    );
    let env = TestEnv::new("hookdefer", &config).await;
    hot_vms(&env, 30).await;
    env.run_once();
    let calls = |path: &str| -> Vec<_> {
        hooks
            .requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    };
    let up = calls("up");
    assert_eq!(up.len(), 1, "one digest call: {up:?}");
    assert_eq!(up[0].body["digest"], true);
    assert_eq!(up[0].body["count"], 30);
    assert_eq!(calls("down-once").len(), 1);
    assert_eq!(calls("down-once")[0].status, 503);
    assert_eq!(count(&env, "pending").await, 30);
    env.run_once();
    let down = calls("down-once");
    assert_eq!(
        down.len(),
        2,
        "one more call, a digest, not one per notification: {} calls",
        down.len()
    );
    assert_eq!(down[1].status, 204);
    assert_eq!(down[1].body["digest"], true);
    assert_eq!(down[1].body["count"], 30);
    assert_eq!(
        calls("up").len(),
        1,
        "the URL that took it is not called again"
    );
    assert_eq!(count(&env, "sent").await, 30);
    env.cleanup().await;
}

/// A binary the test started, killed if the test ends early (a failed assertion must not leave
/// an instance running).
struct Instance(std::process::Child);

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What an operator command must leave alone, as the DB has it.
async fn row_state(env: &TestEnv, id: i64) -> (String, Option<String>, Option<String>, String) {
    sqlx::query_as(
        "SELECT status, claimed_by, CAST(claim_until AS CHAR), CAST(next_attempt_at AS CHAR) \
         FROM batch_notifications WHERE id = ?",
    )
    .bind(id)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Issue 18, item 2, with a claim set as the leader sets it (owner instance/pid/start, expiry
/// in DB time): `outbox retry` and `outbox drop` refuse it, naming the holder and when the
/// claim lapses, exit non-zero and leave the row as it was; `--wait` waits for the claim to
/// lapse and then queues it; a delivered row is never dropped; no mail is doubled.
#[tokio::test]
async fn outbox_retry_and_drop_never_break_a_live_claim() {
    let dir = tempfile::tempdir().unwrap();
    let ops = format!("{}@example.org", unique("ops"));
    let mut sink = FaultSink::start(dir.path(), &["--tempfail", &ops]);
    let env = TestEnv::new("opclaim", &email(sink.port, "")).await;
    targets(&env, &[&ops]).await;
    hot_vms(&env, 2).await;
    env.run_once();
    assert_eq!(count(&env, "pending").await, 2, "deferred, so pending");
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT CAST(id AS SIGNED) FROM batch_notifications ORDER BY id")
            .fetch_all(&env.db)
            .await
            .unwrap();
    let (held, free) = (ids[0].to_string(), ids[1].to_string());
    let holder = "monit-a/4242/1764876000000000";
    env.exec(&format!(
        "UPDATE batch_notifications SET claimed_by = '{holder}', \
         claim_until = UTC_TIMESTAMP(3) + INTERVAL 8 SECOND WHERE id = {held}"
    ))
    .await;
    let before = row_state(&env, ids[0]).await;
    let until = before.2.clone().unwrap();

    let out = env.run(&["outbox", "retry", &held, &free]);
    assert!(!out.status.success(), "refused: non-zero exit");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "notification {held} is being sent: claimed by {holder} until {}",
            &until[..10]
        )) && err.contains("--wait"),
        "names the holder and when the claim lapses: {err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 notification(s) queued again"));
    assert_eq!(
        row_state(&env, ids[0]).await,
        before,
        "the claimed row is unchanged"
    );

    let out = env.run(&["outbox", "drop", &held]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(holder), "{}", stderr(&out));
    assert_eq!(row_state(&env, ids[0]).await, before);
    // a wait shorter than the claim: still refused when it runs out
    let out = env.run(&["outbox", "drop", "--wait=1", &held]);
    assert!(!out.status.success());
    assert_eq!(row_state(&env, ids[0]).await, before);

    // a wait longer than any claim is a wrong number, said so
    let out = env.run(&["outbox", "retry", "--wait=4000", &held]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("at most 3600 seconds"),
        "{}",
        stderr(&out)
    );
    assert_eq!(row_state(&env, ids[0]).await, before);

    // the claim lapses within the wait: queued again, the claim gone
    let out = env.run(&["outbox", "retry", "--wait", &held]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = row_state(&env, ids[0]).await;
    assert_eq!((after.0.as_str(), after.1), ("pending", None));

    // delivered: drop and retry refuse, the row stays sent
    let port = sink.port;
    sink.stop();
    let healthy = FaultSink::start_on(port, dir.path(), &[]);
    env.run_once();
    assert_eq!(count(&env, "sent").await, 2);
    for cmd in ["drop", "retry"] {
        let out = env.run(&["outbox", cmd, &held]);
        assert!(!out.status.success(), "{cmd} of a sent row");
        assert!(
            stderr(&out).contains(&format!("notification {held} was already sent")),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(count(&env, "sent").await, 2);
    env.run_once();
    let rows = per_row(&healthy);
    assert_eq!(rows.len(), 2);
    assert!(rows.values().all(|n| *n == 1), "no mail doubled: {rows:?}");
    env.cleanup().await;
}

/// Issue 18, item 2, against a leader really in the middle of a batch (a server taking 1.5 s
/// per mail): the row it is about to send is refused to `retry` and `drop`, naming that
/// process; `drop --wait` waits for the send and then refuses, as the mail went out. Each row
/// reaches the server once.
#[tokio::test]
async fn outbox_commands_on_a_row_the_leader_is_sending_double_no_mail() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FaultSink::start(dir.path(), &["--delay", "1.5"]);
    let env = TestEnv::new("opmidsend", &email(sink.port, "notify_budget_seconds = 60")).await;
    targets(&env, &[&format!("{}@example.org", unique("ops"))]).await;
    // 8 rows at 1.5 s: the last one is sent some 10 s after the first, time for the commands
    hot_vms(&env, 8).await;
    let mut child = Instance(
        std::process::Command::new(env!("CARGO_BIN_EXE_monit-batch"))
            .arg("--config")
            .arg(&env.config)
            .args(["run", "--once"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.mails().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // newest first: the lowest id is sent last
    let last = env
        .scalar_i64(
            "SELECT CAST(MIN(id) AS SIGNED) FROM batch_notifications \
             WHERE status = 'pending' AND claim_until > UTC_TIMESTAMP(3)",
        )
        .await
        .to_string();
    let leader = format!("e2e/{}/", child.0.id());
    for cmd in ["retry", "drop"] {
        let out = env.run(&["outbox", cmd, &last]);
        assert!(!out.status.success(), "{cmd} refused");
        assert!(stderr(&out).contains(&leader), "{cmd}: {}", stderr(&out));
    }
    let out = env.run(&["outbox", "drop", "--wait", &last]);
    assert!(!out.status.success(), "sent meanwhile: not dropped");
    assert!(
        stderr(&out).contains("was already sent"),
        "{}",
        stderr(&out)
    );
    assert!(child.0.wait().unwrap().success());
    assert_eq!(count(&env, "sent").await, 8);
    env.run_once();
    let rows = per_row(&sink);
    assert_eq!(rows.len(), 8);
    assert!(rows.values().all(|n| *n == 1), "no mail doubled: {rows:?}");
    env.cleanup().await;
}

/// Issue 18, item 8: leader election on, the leader killed with SIGKILL in the middle of a
/// batch. The next instance takes the lock (bumping the epoch) and, on its first tick, the
/// rows the dead leader had claimed, without waiting for those claims to lapse
/// (2 x step timeout + 5 s = 45 s here); at most the one mail in flight goes out twice.
#[tokio::test]
async fn a_new_leader_takes_the_claims_of_a_killed_leader_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FaultSink::start(dir.path(), &["--delay", "0.2"]);
    let env = TestEnv::new("takeover", &email(sink.port, "notify_budget_seconds = 60")).await;
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        text.replace("leader_election = false", "leader_election = true"),
    )
    .unwrap();
    targets(&env, &[&format!("{}@example.org", unique("ops"))]).await;
    hot_vms(&env, 20).await;
    let instance = |name: &str| {
        Instance(
            std::process::Command::new(env!("CARGO_BIN_EXE_monit-batch"))
                .arg("--config")
                .arg(&env.config)
                .arg("run")
                .env("MONIT_BATCH__BATCH__INSTANCE_NAME", name)
                .env_remove("PORT")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut old = instance("old");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.mails().len() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    old.0.kill().unwrap();
    let _ = old.0.wait();
    let before = sink.mails().len();
    assert!((5..20).contains(&before), "killed mid-batch: {before}");
    // the dead leader's claims, still live for a good while
    let (held, lapse): (i64, Option<String>) = sqlx::query_as(
        "SELECT COUNT(*), CAST(MIN(claim_until) AS CHAR) FROM batch_notifications \
         WHERE status = 'pending' AND claimed_by LIKE 'old/%' \
         AND claim_until > UTC_TIMESTAMP(3) + INTERVAL 20 SECOND",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert!(held > 0, "rows in flight under the dead leader's claim");
    let lapse = lapse.unwrap();
    let mut new = instance("new");
    loop {
        if count(&env, "pending").await == 0 {
            break;
        }
        let lapsed: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(UTC_TIMESTAMP(3) >= '{lapse}' - INTERVAL 5 SECOND AS SIGNED)"
        )))
        .fetch_one(&env.db)
        .await
        .unwrap();
        assert_eq!(
            lapsed, 0,
            "the rows in flight waited for the dead leader's claims to lapse"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &new.0.id().to_string()])
        .status();
    assert!(new.0.wait().unwrap().success());
    assert_eq!(count(&env, "sent").await, 20);
    let taker: i64 = env
        .scalar_i64("SELECT COUNT(*) FROM batch_notifications WHERE claimed_by IS NOT NULL")
        .await;
    assert_eq!(taker, 0, "no claim left behind");
    let rows = per_row(&sink);
    assert_eq!(rows.len(), 20, "nothing lost");
    let doubled = rows.values().filter(|n| **n > 1).count();
    assert!(doubled <= 1, "at most the mail in flight twice: {rows:?}");
    env.cleanup().await;
}
