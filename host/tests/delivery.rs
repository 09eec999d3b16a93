//! Delivery from the outbox against the real MariaDB, with sinks of the test's own: every row
//! delivered once under a time budget, claims that keep two instances apart, a lost lease that
//! stops the sender, per-recipient outcomes, parked rows, and the queue order.

use monit_host::config::Settings;
use monit_host::metric_store::influx::InfluxClient;
use monit_host::model::Level;
use monit_host::plugin::{
    Delivery, Notification, NotificationKind, Notifier, NotifySession, PluginContext, PluginParts,
    PluginRegistration, Refusal,
};
use monit_host::run::scheduler::{Scheduler, build_plugins, claim_owner};
use monit_host::store::leader::Leader;
use monit_host::store::outbox;
use monit_host::{async_trait, store::db};
use monit_testkit::{TestDb, mysql_url};
use sqlx::MySqlPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the test sinks saw: notifier name -> delivered outbox ids, in order.
static SEEN: Mutex<Vec<(String, i64, Vec<String>)>> = Mutex::new(Vec::new());
/// Pool and lock name for the sink that kills the leader's lock connection.
static KILL: Mutex<Option<(MySqlPool, String, usize)>> = Mutex::new(None);

fn seen(sink: &str) -> Vec<i64> {
    SEEN.lock()
        .unwrap()
        .iter()
        .filter(|(s, _, _)| s == sink)
        .map(|(_, id, _)| *id)
        .collect()
}

/// What `t-restate` was told again, call by call: the outbox row ids.
static RESTATED: Mutex<Vec<Vec<i64>>> = Mutex::new(Vec::new());

/// A sink with a fixed behaviour per notifier name.
struct Sink(&'static str);

#[async_trait]
impl Notifier for Sink {
    fn session(&self) -> Box<dyn NotifySession + '_> {
        Box::new(SinkSession(self.0))
    }

    fn restates_firing(&self) -> bool {
        self.0 == "t-restate"
    }

    async fn restate_firing(&self, firing: &[Notification]) -> anyhow::Result<()> {
        RESTATED
            .lock()
            .unwrap()
            .push(firing.iter().map(|n| n.id).collect());
        Ok(())
    }
}

struct SinkSession(&'static str);

#[async_trait]
impl NotifySession for SinkSession {
    async fn deliver(&mut self, n: &Notification) -> Delivery {
        let name = self.0;
        let count = {
            let mut s = SEEN.lock().unwrap();
            s.push((name.to_string(), n.id, n.done_recipients.clone()));
            s.iter().filter(|(x, _, _)| x == name).count()
        };
        match name {
            // 50 ms a mail: a slow SMTP server
            "t-slow" | "t-slow2" | "t-old" => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Delivery::Sent {
                    rejected: Vec::new(),
                }
            }
            "t-reject" => Delivery::Reject {
                reason: "550 mailbox unknown".into(),
            },
            // first try: a@ accepts, b@ refuses for good, c@ defers; then c@ accepts
            "t-partial" if n.done_recipients.is_empty() => Delivery::Retry {
                reason: "c@example.org: 451 try later".into(),
                accepted: vec!["a@example.org".into()],
                rejected: vec![Refusal {
                    recipient: "b@example.org".into(),
                    reason: "550 user unknown".into(),
                }],
            },
            "t-partial" => Delivery::Sent {
                rejected: Vec::new(),
            },
            // after its third mail the lock connection of the leader is killed
            "t-lease" => {
                if count == 3 {
                    let kill = KILL.lock().unwrap().clone();
                    if let Some((pool, lock, _)) = kill {
                        let id: Option<i64> = sqlx::query_scalar("SELECT IS_USED_LOCK(?)")
                            .bind(&lock)
                            .fetch_one(&pool)
                            .await
                            .unwrap();
                        sqlx::query(sqlx::AssertSqlSafe(format!("KILL {}", id.unwrap())))
                            .execute(&pool)
                            .await
                            .unwrap();
                    }
                }
                Delivery::Sent {
                    rejected: Vec::new(),
                }
            }
            _ => Delivery::Sent {
                rejected: Vec::new(),
            },
        }
    }
    async fn close(self: Box<Self>) {}
}

fn build(ctx: &PluginContext) -> anyhow::Result<PluginParts> {
    let name: &'static str = ctx.name;
    Ok(PluginParts {
        notifier: Some(Arc::new(Sink(name))),
        ..Default::default()
    })
}

monit_host::inventory::submit! { PluginRegistration { name: "t-slow", description: "slow", sample: "", moved_keys: &[], legacy_ini: monit_host::plugin::LegacyConfig::NONE, show: monit_host::plugin::show_nothing, build } }
monit_host::inventory::submit! { PluginRegistration { name: "t-slow2", description: "slow", sample: "", moved_keys: &[], legacy_ini: monit_host::plugin::LegacyConfig::NONE, show: monit_host::plugin::show_nothing, build } }
monit_host::inventory::submit! { PluginRegistration { name: "t-old", description: "slow", sample: "", moved_keys: &[], legacy_ini: monit_host::plugin::LegacyConfig::NONE, show: monit_host::plugin::show_nothing, build } }
monit_host::inventory::submit! { PluginRegistration { name: "t-reject", description: "rejects", sample: "", moved_keys: &[], legacy_ini: monit_host::plugin::LegacyConfig::NONE, show: monit_host::plugin::show_nothing, build } }
monit_host::inventory::submit! { PluginRegistration { name: "t-partial", description: "per recipient", sample: "", moved_keys: &[], legacy_ini: monit_host::plugin::LegacyConfig::NONE, show: monit_host::plugin::show_nothing, build } }
monit_host::inventory::submit! { PluginRegistration { name: "t-plain", description: "accepts", sample: "", moved_keys: &[], legacy_ini: monit_host::plugin::LegacyConfig::NONE, show: monit_host::plugin::show_nothing, build } }
monit_host::inventory::submit! { PluginRegistration { name: "t-restate", description: "restates", sample: "", moved_keys: &[], legacy_ini: monit_host::plugin::LegacyConfig::NONE, show: monit_host::plugin::show_nothing, build } }
monit_host::inventory::submit! { PluginRegistration { name: "t-lease", description: "kills the lock", sample: "", moved_keys: &[], legacy_ini: monit_host::plugin::LegacyConfig::NONE, show: monit_host::plugin::show_nothing, build } }

struct Env {
    test_db: TestDb,
    settings: Arc<Settings>,
    pool: MySqlPool,
    _dir: tempfile::TempDir,
}

async fn env(tag: &str, sinks: &[&str], extra: &str) -> Env {
    let test_db = TestDb::create(tag).await;
    let url = url::Url::parse(&mysql_url()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    let plugins: String = sinks
        .iter()
        .map(|s| format!("[plugins.{s}]\nenabled = true\n"))
        .collect();
    std::fs::write(
        &cfg,
        format!(
            "[batch]\nstep_timeout_seconds = 5\n[monitoring_db]\nhost = \"{}\"\nport = {}\ndbname = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\n\
             [alarms]\nretry_min_seconds = 0\n{extra}\n{plugins}",
            url.host_str().unwrap(),
            url.port().unwrap_or(3306),
            test_db.name,
            url.username(),
            url.password().unwrap_or("")
        ),
    )
    .unwrap();
    let settings = Arc::new(
        monit_host::plugin::load_settings_with_env(Some(&cfg), Default::default()).unwrap(),
    );
    let pool = db::lazy_pool(&settings.monitoring_db);
    db::migrate(&pool, &settings.monitoring_db).await.unwrap();
    Env {
        test_db,
        settings,
        pool,
        _dir: dir,
    }
}

impl Env {
    fn scheduler(&self, leader: Leader) -> Scheduler {
        Scheduler {
            settings: self.settings.clone(),
            pool: self.pool.clone(),
            metrics: InfluxClient::new(&self.settings.influx).unwrap().into(),
            plugins: build_plugins(&self.settings).unwrap(),
            status: Default::default(),
            leader: Arc::new(leader),
            claim_owner: format!("{}-{}", claim_owner(&self.settings), rand_tag()),
            inventory_clock: Default::default(),
            reconciliation: Default::default(),
        }
    }

    /// Queues `n` notifications for `notifier` as the alarm transaction does.
    async fn queue(
        &self,
        notifier: &str,
        n: usize,
        kind: NotificationKind,
        level: Level,
    ) -> Vec<i64> {
        let mut ids = Vec::new();
        for i in 0..n {
            let payload = serde_json::to_string(&notification(i as i64, kind, level)).unwrap();
            let res = sqlx::query(
                "INSERT INTO batch_notifications (alarm_id, notifier, kind, payload, status, attempts, next_attempt_at, created_at, priority) \
                 VALUES (?, ?, ?, ?, 'pending', 0, UTC_TIMESTAMP(), UTC_TIMESTAMP(), ?)",
            )
            .bind(i as i64 + 1)
            .bind(notifier)
            .bind(kind.code())
            .bind(payload)
            .bind(outbox::priority(kind, level))
            .execute(&self.pool)
            .await
            .unwrap();
            ids.push(res.last_insert_id() as i64);
        }
        ids
    }

    async fn statuses(&self, notifier: &str) -> HashMap<i64, (String, i64)> {
        sqlx::query_as::<_, (i64, String, i64)>(
            "SELECT CAST(id AS SIGNED), status, CAST(attempts AS SIGNED) FROM batch_notifications WHERE notifier = ?",
        )
        .bind(notifier)
        .fetch_all(&self.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, s, a)| (id, (s, a)))
        .collect()
    }

    async fn done(self) {
        self.pool.close().await;
        self.test_db.drop().await;
    }
}

fn rand_tag() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn notification(alarm: i64, kind: NotificationKind, level: Level) -> Notification {
    let now = chrono::Utc::now();
    Notification {
        id: 0,
        alarm_id: alarm + 1,
        kind,
        level,
        target_name: format!("vm/{alarm}"),
        raised_at: now,
        event_at: now,
        recipients: Vec::new(),
        resource_url: None,
        language: "en".into(),
        history: None,
        ..monit_host::testing::vm_notification()
    }
}

/// The slow-server trial: with a budget, each tick sends what fits and leaves the rest pending
/// and untried (no attempt counted, no backoff); over a few ticks every row goes out once.
#[tokio::test]
async fn a_slow_sink_within_a_budget_delivers_every_row_exactly_once() {
    let e = env("dlv_slow", &["t-slow"], "notify_budget_seconds = 1").await;
    let ids = e
        .queue("t-slow", 60, NotificationKind::Opened, Level::Critical)
        .await;
    let s = e.scheduler(Leader::new(None, "x"));
    let first = s.tick(false).await;
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let sent_first = first.notifications.sent;
    assert!(
        sent_first > 0 && sent_first < 60,
        "the budget of 1 s holds a tick to part of 60 mails at 50 ms: {sent_first}"
    );
    let st = e.statuses("t-slow").await;
    let untried = st
        .values()
        .filter(|(s, a)| s == "pending" && *a == 0)
        .count();
    assert_eq!(
        untried,
        60 - sent_first as usize,
        "rows the budget left are neither failed nor delayed"
    );
    for _ in 0..10 {
        if e.statuses("t-slow")
            .await
            .values()
            .all(|(s, _)| s == "sent")
        {
            break;
        }
        s.tick(false).await;
    }
    let st = e.statuses("t-slow").await;
    assert!(st.values().all(|(s, a)| s == "sent" && *a == 1), "{st:?}");
    let mut got = seen("t-slow");
    got.sort();
    assert_eq!(got, ids, "every row delivered, none twice");
    e.done().await;
}

/// Two instances at once (as when the lock moved mid-tick): claims keep them apart.
#[tokio::test]
async fn two_instances_sending_at_once_never_send_the_same_row() {
    let e = env("dlv_two", &["t-slow2"], "notify_budget_seconds = 4").await;
    let ids = e
        .queue("t-slow2", 40, NotificationKind::Repeated, Level::Warning)
        .await;
    let a = e.scheduler(Leader::new(None, "x"));
    let b = e.scheduler(Leader::new(None, "x"));
    let (sa, sb) = tokio::join!(a.tick(false), b.tick(false));
    assert!(sa.errors.is_empty() && sb.errors.is_empty());
    assert!(
        sa.notifications.sent > 0 && sb.notifications.sent > 0,
        "both sent a share: {} + {}",
        sa.notifications.sent,
        sb.notifications.sent
    );
    let mut got = seen("t-slow2");
    got.sort();
    assert_eq!(got, ids, "each row exactly once across both instances");
    e.done().await;
}

/// The lock connection killed mid-batch: the sender finds out before the next mail and stops;
/// the unsent rows go back to the queue for the new leader, and the old leader's writes are
/// fenced off.
#[tokio::test]
async fn losing_the_lock_mid_batch_stops_the_sender_and_fences_its_writes() {
    let e = env("dlv_lease", &["t-lease"], "notify_budget_seconds = 4").await;
    let lock = format!("monit-batch:{}", e.test_db.name);
    *KILL.lock().unwrap() = Some((e.pool.clone(), lock.clone(), 3));
    let ids = e
        .queue("t-lease", 10, NotificationKind::Opened, Level::Critical)
        .await;
    let opts = db::connect_options(&e.settings.monitoring_db);
    let old = e.scheduler(Leader::new(Some(opts.clone()), lock.clone()));
    assert!(old.leader.acquire().await);
    let old_fence = old.leader.fence().expect("a fence while leading");
    let sum = old.tick(false).await;
    assert_eq!(
        seen("t-lease").len(),
        3,
        "nothing sent after the lock was lost: {:?}",
        sum.errors
    );
    assert!(
        sum.errors
            .iter()
            .any(|e| e.contains("leader lock was lost")),
        "{:?}",
        sum.errors
    );
    let claimed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM batch_notifications WHERE status = 'pending' AND claimed_by IS NOT NULL",
    )
    .fetch_one(&e.pool)
    .await
    .unwrap();
    assert_eq!(claimed, 0, "the unsent rows were released at once");

    // the standby takes over: a new epoch; the old leader's transaction is refused
    *KILL.lock().unwrap() = None;
    let new = e.scheduler(Leader::new(Some(opts), lock.clone()));
    assert!(new.leader.acquire().await);
    let mut tx = e.pool.begin().await.unwrap();
    let err = old_fence.check(&mut tx).await.unwrap_err().to_string();
    assert!(err.contains("lost the leader lock"), "{err}");
    drop(tx);
    new.tick(false).await;
    let mut got = seen("t-lease");
    got.sort();
    assert_eq!(got, ids, "every row once, across both leaders");
    e.done().await;
}

#[tokio::test]
async fn a_notification_that_can_never_be_sent_is_parked_and_can_be_queued_again() {
    let e = env("dlv_park", &["t-reject"], "").await;
    let ids = e
        .queue("t-reject", 2, NotificationKind::Opened, Level::Warning)
        .await;
    let s = e.scheduler(Leader::new(None, "x"));
    let sum = s.tick(false).await;
    assert_eq!(sum.notifications.parked, 2);
    s.tick(false).await;
    assert_eq!(seen("t-reject").len(), 2, "a parked row is not retried");
    let (status, err): (String, String) =
        sqlx::query_as("SELECT status, last_error FROM batch_notifications WHERE id = ?")
            .bind(ids[0])
            .fetch_one(&e.pool)
            .await
            .unwrap();
    assert_eq!(status, "parked");
    assert!(err.contains("550 mailbox unknown"), "{err}");
    assert_eq!(
        outbox::requeue(&e.pool, &ids[..1], chrono::Utc::now())
            .await
            .unwrap(),
        1
    );
    s.tick(false).await;
    assert_eq!(seen("t-reject").len(), 3, "queued again: tried once more");
    assert_eq!(outbox::drop_rows(&e.pool, &ids[1..]).await.unwrap(), 1);
    let listed = outbox::list(&e.pool, Some("dropped"), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    e.done().await;
}

#[tokio::test]
async fn a_pending_notification_older_than_the_max_age_is_parked() {
    let e = env("dlv_old", &["t-old"], "notification_max_age_hours = 1").await;
    let ids = e
        .queue("t-old", 1, NotificationKind::Opened, Level::Warning)
        .await;
    sqlx::query("UPDATE batch_notifications SET created_at = UTC_TIMESTAMP() - INTERVAL 2 HOUR")
        .execute(&e.pool)
        .await
        .unwrap();
    let sum = e.scheduler(Leader::new(None, "x")).tick(false).await;
    assert_eq!(sum.notifications.parked, 1);
    let err: String = sqlx::query_scalar("SELECT last_error FROM batch_notifications WHERE id = ?")
        .bind(ids[0])
        .fetch_one(&e.pool)
        .await
        .unwrap();
    assert!(err.starts_with("expired"), "{err}");
    assert!(seen("t-old").is_empty());
    e.done().await;
}

/// One recipient deferred, one refused for good: the retry goes only to the deferred one.
#[tokio::test]
async fn a_retry_goes_only_to_the_recipients_not_done() {
    let e = env("dlv_rcpt", &["t-partial"], "").await;
    let ids = e
        .queue("t-partial", 1, NotificationKind::Opened, Level::Critical)
        .await;
    let s = e.scheduler(Leader::new(None, "x"));
    let first = s.tick(false).await;
    assert_eq!(first.notifications.failed, 1, "tried once per tick");
    let second = s.tick(false).await;
    assert_eq!(second.notifications.sent, 1);
    let calls: Vec<Vec<String>> = SEEN
        .lock()
        .unwrap()
        .iter()
        .filter(|(s, id, _)| s == "t-partial" && *id == ids[0])
        .map(|(_, _, done)| {
            let mut d = done.clone();
            d.sort();
            d
        })
        .collect();
    assert_eq!(
        calls,
        vec![
            vec![],
            vec!["a@example.org".to_string(), "b@example.org".to_string()]
        ]
    );
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT recipient, outcome FROM batch_notification_recipients WHERE notification_id = ? ORDER BY recipient",
    )
    .bind(ids[0])
    .fetch_all(&e.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("a@example.org".into(), "accepted".into()),
            ("b@example.org".into(), "rejected".into())
        ]
    );
    e.done().await;
}

/// A backlog of repeats and recoveries never holds back a fresh critical alarm.
#[tokio::test]
async fn fresh_critical_alarms_are_claimed_before_a_backlog() {
    let e = env("dlv_prio", &[], "").await;
    e.queue("q", 300, NotificationKind::Repeated, Level::Critical)
        .await;
    e.queue("q", 100, NotificationKind::Recovered, Level::Warning)
        .await;
    let warn = e
        .queue("q", 1, NotificationKind::Opened, Level::Warning)
        .await;
    let crit = e
        .queue("q", 1, NotificationKind::Escalated, Level::Critical)
        .await;
    let got = outbox::claim(
        &e.pool,
        "q",
        "me",
        None,
        Duration::from_secs(60),
        chrono::Utc::now(),
        2,
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        got.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![crit[0], warn[0]]
    );
    // another owner cannot take what is claimed
    let other = outbox::claim(
        &e.pool,
        "q",
        "other",
        None,
        Duration::from_secs(60),
        chrono::Utc::now(),
        500,
        &[],
    )
    .await
    .unwrap();
    assert!(other.iter().all(|c| c.id != crit[0] && c.id != warn[0]));
    assert_eq!(other.len(), 400);
    e.done().await;
}

/// Issue 18, item 8, the rule itself: a leader (epoch 5) takes at once the live claims another
/// owner made under an older epoch; never a claim made under its own or a newer epoch, nor one
/// made without leader election (NULL epoch: nothing proves that owner gone), nor anything when
/// it claims without an epoch itself.
#[tokio::test]
async fn a_leader_takes_live_claims_of_older_epochs_only() {
    let e = env("dlv_epoch", &[], "").await;
    let ids = e
        .queue("q", 4, NotificationKind::Opened, Level::Critical)
        .await;
    for (id, owner, epoch) in [
        (ids[0], "dead/1/1", Some(4)),
        (ids[1], "standby/2/2", Some(5)),
        (ids[2], "newer/3/3", Some(6)),
        (ids[3], "once/4/4", None),
    ] {
        sqlx::query(
            "UPDATE batch_notifications SET claimed_by = ?, claim_epoch = ?, \
             claim_until = UTC_TIMESTAMP(3) + INTERVAL 60 SECOND WHERE id = ?",
        )
        .bind(owner)
        .bind(epoch)
        .bind(id)
        .execute(&e.pool)
        .await
        .unwrap();
    }
    let claim = |epoch: Option<i64>| {
        outbox::claim(
            &e.pool,
            "q",
            "leader/9/9",
            epoch,
            Duration::from_secs(60),
            chrono::Utc::now(),
            100,
            &[],
        )
    };
    assert!(
        claim(None).await.unwrap().is_empty(),
        "without an epoch, only lapsed claims"
    );
    let got: Vec<i64> = claim(Some(5)).await.unwrap().iter().map(|c| c.id).collect();
    assert_eq!(got, vec![ids[0]], "only the claim of an older epoch");
    let (owner, epoch): (String, Option<i64>) =
        sqlx::query_as("SELECT claimed_by, claim_epoch FROM batch_notifications WHERE id = ?")
            .bind(ids[0])
            .fetch_one(&e.pool)
            .await
            .unwrap();
    assert_eq!((owner.as_str(), epoch), ("leader/9/9", Some(5)));
    // the dead owner can neither renew nor record it any more
    assert!(
        !outbox::renew(&e.pool, ids[0], "dead/1/1", Duration::from_secs(60))
            .await
            .unwrap()
    );
    e.done().await;
}

/// An `alarms` row with this id and resolve_status.
async fn alarm_row(pool: &MySqlPool, id: i64, status: &str) {
    sqlx::query(
        "INSERT INTO alarms (id, origin_type, origin_id, alarm_type, level, app_yn, alarm_title, alarm_message, resolve_status) \
         VALUES (?, 'pas', 1, 'cpu', 'warning', 'N', 't', 'm', ?)",
    )
    .bind(id)
    .bind(status)
    .execute(pool)
    .await
    .unwrap();
}

/// An outbox row of `notifier` for `alarm`: (kind, level, status). Returns its id.
async fn row(
    pool: &MySqlPool,
    notifier: &str,
    alarm: i64,
    kind: NotificationKind,
    level: Level,
    status: &str,
) -> i64 {
    let payload = serde_json::to_string(&notification(alarm - 1, kind, level)).unwrap();
    let res = sqlx::query(
        "INSERT INTO batch_notifications (alarm_id, notifier, kind, payload, status, attempts, next_attempt_at, created_at, priority) \
         VALUES (?, ?, ?, ?, ?, 1, UTC_TIMESTAMP(), UTC_TIMESTAMP(), 2)",
    )
    .bind(alarm)
    .bind(notifier)
    .bind(kind.code())
    .bind(payload)
    .bind(status)
    .execute(pool)
    .await
    .unwrap();
    res.last_insert_id() as i64
}

/// What a notifier is told again each tick: per open alarm, the last notification it accepted,
/// unless a recovery (sent, pending or given up) came after it.
#[tokio::test]
async fn told_firing_is_what_each_open_alarm_was_last_told() {
    use NotificationKind::*;
    let e = env("dlv_told", &[], "").await;
    let p = &e.pool;
    let n = "am";
    // 1: told, open -> in
    alarm_row(p, 1, "1").await;
    let one = row(p, n, 1, Opened, Level::Warning, "sent").await;
    // 2: told, then a recovery on its way -> out
    alarm_row(p, 2, "2").await;
    row(p, n, 2, Opened, Level::Warning, "sent").await;
    row(p, n, 2, Recovered, Level::Warning, "pending").await;
    // 3: its only notification still pending -> out
    alarm_row(p, 3, "1").await;
    row(p, n, 3, Opened, Level::Warning, "pending").await;
    // 4: told, but closed (by an operator) -> out
    alarm_row(p, 4, "3").await;
    row(p, n, 4, Opened, Level::Warning, "sent").await;
    // 5: accepted by an operator, escalated since -> in, at the escalation
    alarm_row(p, 5, "2").await;
    row(p, n, 5, Opened, Level::Warning, "sent").await;
    let five = row(p, n, 5, Escalated, Level::Critical, "sent").await;
    // 6: recovered, then breaching again -> in, at the new opening
    alarm_row(p, 6, "1").await;
    row(p, n, 6, Opened, Level::Warning, "sent").await;
    row(p, n, 6, Recovered, Level::Warning, "sent").await;
    let six = row(p, n, 6, Opened, Level::Critical, "sent").await;
    // 7: told another notifier only -> out
    alarm_row(p, 7, "1").await;
    row(p, "mail", 7, Opened, Level::Warning, "sent").await;
    // 8: a repeat given up (parked) after the opening -> in, at the opening
    alarm_row(p, 8, "1").await;
    let eight = row(p, n, 8, Opened, Level::Warning, "sent").await;
    row(p, n, 8, Repeated, Level::Warning, "parked").await;

    let (all, last) = outbox::told_firing(p, n, 0, 100).await.unwrap();
    let got: Vec<(i64, i64, Level)> = all.iter().map(|x| (x.alarm_id, x.id, x.level)).collect();
    assert_eq!(
        got,
        [
            (1, one, Level::Warning),
            (5, five, Level::Critical),
            (6, six, Level::Critical),
            (8, eight, Level::Warning)
        ]
    );
    assert_eq!(last, Some(8));
    // paging: two at a time, each page after the last alarm id read
    let (page, last) = outbox::told_firing(p, n, 0, 2).await.unwrap();
    assert_eq!(page.iter().map(|x| x.alarm_id).collect::<Vec<_>>(), [1, 5]);
    let (page, last) = outbox::told_firing(p, n, last.unwrap(), 2).await.unwrap();
    assert_eq!(page.iter().map(|x| x.alarm_id).collect::<Vec<_>>(), [6, 8]);
    let (page, last) = outbox::told_firing(p, n, last.unwrap(), 2).await.unwrap();
    assert!(page.is_empty() && last.is_none());
    e.done().await;
}

/// The notify step restates, after its deliveries, what a notifier that asks for it was told,
/// every tick, and stops for an alarm that is closed; other notifiers are never asked.
#[tokio::test]
async fn a_notifier_that_restates_is_told_the_open_alarms_every_tick() {
    let e = env("dlv_restate", &["t-restate", "t-plain"], "").await;
    let ids = e
        .queue("t-restate", 3, NotificationKind::Opened, Level::Critical)
        .await;
    e.queue("t-plain", 3, NotificationKind::Opened, Level::Critical)
        .await;
    for alarm in 1..=3 {
        alarm_row(&e.pool, alarm, "1").await;
    }
    let s = e.scheduler(Leader::new(None, "x"));
    let sum = s.tick(false).await;
    assert!(sum.errors.is_empty(), "{:?}", sum.errors);
    assert_eq!(sum.notifications.restated, 3);
    let mut told: Vec<i64> = RESTATED.lock().unwrap().concat();
    told.sort();
    assert_eq!(told, ids, "the rows just sent, by their ids");

    sqlx::query("UPDATE alarms SET resolve_status = '3' WHERE id = 2")
        .execute(&e.pool)
        .await
        .unwrap();
    RESTATED.lock().unwrap().clear();
    let sum = s.tick(false).await;
    assert_eq!(sum.notifications.sent, 0);
    assert_eq!(sum.notifications.restated, 2);
    let told: Vec<i64> = RESTATED.lock().unwrap().concat();
    assert_eq!(told, [ids[0], ids[2]]);
    e.done().await;
}
