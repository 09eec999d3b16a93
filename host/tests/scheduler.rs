//! The scheduler isolates plugins: a failing or hanging plugin is logged and counted, the others
//! go on, and alarms of an origin whose collector failed are not touched.

use monit_host::config::Settings;
use monit_host::metric_store::MetricStore;
use monit_host::metric_store::influx::InfluxClient;
use monit_host::metric_store::stream::{StreamHandle, StreamState};
use monit_host::model::{Measured, Origin, Reading, Resource, Target};
use monit_host::plugin::{
    CollectContext, Collector, Delivery, Notification, Notifier, NotifySession, PluginContext,
    PluginParts, PluginRegistration,
};
use monit_host::run::scheduler::{Scheduler, build_plugins};
use monit_host::{async_trait, store::db};
use monit_testkit::{TestDb, mysql_url};
use std::sync::Arc;

struct Failing;
#[async_trait]
impl Collector for Failing {
    fn origin(&self) -> Origin {
        Origin::Bos
    }
    async fn collect(&self, _: &CollectContext<'_>) -> anyhow::Result<Vec<Reading>> {
        anyhow::bail!("InfluxDB http://x: boom")
    }
}

struct Hanging;
#[async_trait]
impl Collector for Hanging {
    fn origin(&self) -> Origin {
        Origin::Con
    }
    async fn collect(&self, _: &CollectContext<'_>) -> anyhow::Result<Vec<Reading>> {
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        Ok(vec![])
    }
}

/// Every VM of the inventory at 99% CPU.
struct Hot;

/// Per address of the first VM `Hot` read: whether it was asked to read the store in parts.
static ASKED_FOR_PARTS: std::sync::Mutex<Vec<(String, bool)>> = std::sync::Mutex::new(Vec::new());

/// Settings on the test database `db`, with `plugins` (TOML sections) enabled.
fn settings_with(dir: &tempfile::TempDir, db: &str, plugins: &str) -> Arc<Settings> {
    let url = url::Url::parse(&mysql_url()).unwrap();
    let cfg = dir.path().join("m.toml");
    std::fs::write(
        &cfg,
        format!(
            "[batch]\nstep_timeout_seconds = 1\n[monitoring_db]\nhost = \"{}\"\nport = {}\ndbname = \"{db}\"\nusername = \"{}\"\npassword = \"{}\"\n{plugins}",
            url.host_str().unwrap(),
            url.port().unwrap_or(3306),
            url.username(),
            url.password().unwrap_or("")
        ),
    )
    .unwrap();
    Arc::new(monit_host::plugin::load_settings_with_env(Some(&cfg), Default::default()).unwrap())
}

/// The test database migrated (by the scheduler's own pool, as the binary does), one VM in it.
async fn migrated_with_vm(settings: &Settings, name: &str, ip: &str) -> sqlx::MySqlPool {
    let pool = db::lazy_pool(&settings.monitoring_db);
    db::migrate(&pool, &settings.monitoring_db).await.unwrap();
    sqlx::query("INSERT INTO vms (zone_id, name, ip, vm_type) VALUES (0, ?, ?, 'vms')")
        .bind(name)
        .bind(ip)
        .execute(&pool)
        .await
        .unwrap();
    pool
}

fn scheduler(settings: &Arc<Settings>, pool: &sqlx::MySqlPool, metrics: MetricStore) -> Scheduler {
    Scheduler {
        settings: settings.clone(),
        pool: pool.clone(),
        metrics,
        plugins: build_plugins(settings).unwrap(),
        status: Default::default(),
        leader: Arc::new(monit_host::store::leader::Leader::new(None, "unused")),
        claim_owner: monit_host::run::scheduler::claim_owner(settings),
        inventory_clock: Default::default(),
        reconciliation: Default::default(),
    }
}
#[async_trait]
impl Collector for Hot {
    fn origin(&self) -> Origin {
        Origin::Pas
    }
    async fn collect(&self, ctx: &CollectContext<'_>) -> anyhow::Result<Vec<Reading>> {
        if let (Some(vm), Ok(mut asked)) = (ctx.vms.first(), ASKED_FOR_PARTS.lock()) {
            asked.push((vm.ip.clone(), ctx.narrow_to_vms));
        }
        Ok(ctx
            .vms
            .iter()
            .map(|vm| Reading {
                target: Target {
                    origin: Origin::Pas,
                    origin_id: vm.id,
                    name: vm.name.clone().into(),
                    ip: vm.ip.clone().into(),
                    app: None,
                },
                value: Measured::Usage {
                    resource: Resource::Cpu,
                    mean: 99.0,
                    peak: 99.0,
                    buckets: 10,
                },
            })
            .collect())
    }
}

/// A sink that answers every notification the same way.
struct Answering(fn() -> Delivery);
#[async_trait]
impl NotifySession for Answering {
    async fn deliver(&mut self, _: &Notification) -> Delivery {
        (self.0)()
    }
    async fn close(self: Box<Self>) {}
}

struct RefusingNotifier;
impl Notifier for RefusingNotifier {
    fn session(&self) -> Box<dyn NotifySession + '_> {
        Box::new(Answering(|| Delivery::Unavailable {
            reason: "sink down".into(),
        }))
    }
}

struct AcceptingNotifier;
impl Notifier for AcceptingNotifier {
    fn session(&self) -> Box<dyn NotifySession + '_> {
        Box::new(Answering(|| Delivery::Sent {
            rejected: Vec::new(),
        }))
    }
}

fn failing(_: &PluginContext) -> anyhow::Result<PluginParts> {
    Ok(PluginParts {
        collector: Some(Arc::new(Failing)),
        notifier: Some(Arc::new(RefusingNotifier)),
        ..Default::default()
    })
}
fn hanging(_: &PluginContext) -> anyhow::Result<PluginParts> {
    Ok(PluginParts {
        collector: Some(Arc::new(Hanging)),
        ..Default::default()
    })
}
fn hot(_: &PluginContext) -> anyhow::Result<PluginParts> {
    Ok(PluginParts {
        collector: Some(Arc::new(Hot)),
        notifier: Some(Arc::new(AcceptingNotifier)),
        ..Default::default()
    })
}

monit_host::inventory::submit! { PluginRegistration { name: "test-failing", description: "fails", sample: "", moved_keys: &[], legacy_ini: monit_host::plugin::LegacyConfig::NONE, show: monit_host::plugin::show_nothing, build: failing } }
monit_host::inventory::submit! { PluginRegistration { name: "test-hanging", description: "hangs", sample: "", moved_keys: &[], legacy_ini: monit_host::plugin::LegacyConfig::NONE, show: monit_host::plugin::show_nothing, build: hanging } }
monit_host::inventory::submit! { PluginRegistration { name: "test-hot", description: "99% cpu", sample: "", moved_keys: &[], legacy_ini: monit_host::plugin::LegacyConfig::NONE, show: monit_host::plugin::show_nothing, build: hot } }

#[tokio::test]
async fn a_failing_or_hanging_plugin_does_not_stop_the_others() {
    // an empty database: the scheduler's own pool migrates it, as the binary does
    let test_db = TestDb::create("sched").await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_with(
        &dir,
        &test_db.name,
        "[plugins.test-failing]\nenabled = true\n[plugins.test-hanging]\nenabled = true\n[plugins.test-hot]\nenabled = true\n",
    );
    let pool = migrated_with_vm(&settings, "hot/0", "10.9.9.9").await;
    // an open bos alarm: its collector fails, so it must be neither counted nor resolved
    sqlx::query(
        "INSERT INTO alarms (origin_type, origin_id, alarm_type, level, ip, app_yn, alarm_title, alarm_message, resolve_status, alarm_send_date) \
         VALUES ('bos', 9999, 'cpu', 'warning', '10.0.1.6', 'N', 't', 'm', '1', UTC_TIMESTAMP())",
    )
    .execute(&pool)
    .await
    .unwrap();
    let scheduler = scheduler(
        &settings,
        &pool,
        InfluxClient::new(&settings.influx).unwrap().into(),
    );
    let started = std::time::Instant::now();
    let sum = scheduler.tick(false).await;
    assert!(
        started.elapsed().as_secs() < 10,
        "the hanging plugin was cut off by the step timeout"
    );
    assert!(
        sum.errors
            .iter()
            .any(|e| e.contains("collect/test-failing") && e.contains("boom")),
        "{:?}",
        sum.errors
    );
    assert!(
        sum.errors
            .iter()
            .any(|e| e.contains("collect/test-hanging") && e.contains("timed out")),
        "{:?}",
        sum.errors
    );
    assert_eq!(sum.readings.get("test-hot"), Some(&1));
    assert_eq!(
        sum.alarms.opened, 1,
        "the healthy collector's alarm is opened"
    );
    // each notifier has its own outbox row: one refused (pending), one sent
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT notifier, status FROM batch_notifications ORDER BY notifier")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![
            ("test-failing".into(), "pending".into()),
            ("test-hot".into(), "sent".into())
        ]
    );
    let (cnt, status): (i32, String) =
        sqlx::query_as("SELECT alarm_cnt, resolve_status FROM alarms WHERE origin_type = 'bos'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (cnt, status.as_str()),
        (1, "1"),
        "bos alarm untouched while its collector fails"
    );
    let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM batch_runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(runs, 1, "the tick is in the ledger");
    pool.close().await;
    test_db.drop().await;
}

#[tokio::test]
async fn stream_mode_reads_the_store_in_parts_and_query_mode_in_one_pass() {
    let test_db = TestDb::create("parts").await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_with(&dir, &test_db.name, "[plugins.test-hot]\nenabled = true\n");
    let pool = migrated_with_vm(&settings, "parts/0", "10.9.8.7").await;
    let asked = || -> Vec<bool> {
        ASKED_FOR_PARTS
            .lock()
            .unwrap()
            .iter()
            .filter(|(ip, _)| ip == "10.9.8.7")
            .map(|(_, parts)| *parts)
            .collect()
    };
    let influx = InfluxClient::new(&settings.influx).unwrap();
    scheduler(&settings, &pool, influx.clone().into())
        .tick(false)
        .await;
    assert_eq!(asked(), [false], "query mode: one pass");
    // stream mode before the stream covers a window: the warm-up reads the store, in parts
    let stream = MetricStore::Stream(StreamHandle {
        state: Arc::new(StreamState::new(&settings.stream, &[])),
        query: Box::new(influx.into()),
    });
    let sum = scheduler(&settings, &pool, stream).tick(false).await;
    assert_eq!(sum.metric_mode, "stream-warmup", "{sum:?}");
    assert_eq!(
        asked(),
        [false, true],
        "stream mode reading the store: parts"
    );
    pool.close().await;
    test_db.drop().await;
}
