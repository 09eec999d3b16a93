//! Stream mode (issue 20, core): the ingest endpoints of `monit-batch run` with
//! `[metrics] mode = "stream"` (credentials, bounded bodies and gzip bombs, malformed lines and
//! protobuf, the series ceiling, the warm-up), and the differential check that the readers give
//! exactly the same readings from the stream's windows as from InfluxDB 1.6 for the same points,
//! fed by a real InfluxDB subscription.

mod common;

use common::{TestEnv, free_port, now_s, unique, wait_port};
use monit_cf_metrics::container::{ContainerSource, UsageWindows, read_container_usage};
use monit_cf_metrics::vm::VmQuery;
use monit_host::metric_store::MetricStore;
use monit_host::metric_store::stream::{StreamHandle, StreamState};
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USER: &str = "writer";
const PASSWORD: &str = "s3cret-ingest";

/// `monit-batch run`, stopped by pid when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `monit-batch run` on `port` with the paasta collector, in stream mode unless `query`.
fn start(env: &TestEnv, port: u16, stream: bool, vars: &[(&str, &str)]) -> Running {
    let log = std::fs::File::create(env.dir.path().join("batch.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_monit-batch"));
    cmd.arg("--config")
        .arg(&env.config)
        .arg("run")
        .env_remove("PORT")
        .env("MONIT_BATCH__SERVER__ENABLED", "true")
        .env("MONIT_BATCH__SERVER__BIND", "127.0.0.1")
        .env("MONIT_BATCH__SERVER__PORT", port.to_string())
        .env(
            "MONIT_BATCH__METRICS__MODE",
            if stream { "stream" } else { "query" },
        )
        .env("MONIT_BATCH__STREAM__USERNAME", USER)
        .env("MONIT_BATCH__STREAM__PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(log);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let child = Running(cmd.spawn().unwrap());
    wait_port(port, true);
    child
}

fn log_of(env: &TestEnv) -> String {
    std::fs::read_to_string(env.dir.path().join("batch.log")).unwrap_or_default()
}

async fn post(
    port: u16,
    path: &str,
    auth: Option<(&str, &str)>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let mut r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .body(body);
    if let Some((u, p)) = auth {
        r = r.basic_auth(u, Some(p));
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let a = r.send().await.unwrap();
    (a.status().as_u16(), a.text().await.unwrap_or_default())
}

/// The value of one line of /metrics (`name{labels}`), 0 when absent.
async fn metric(port: u16, series: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

async fn health(port: u16) -> u16 {
    reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn line(ip: &str, metric: &str, v: f64, t: i64) -> String {
    format!("cf_metrics,ip={ip},metricname={metric},origin=rep value={v} {t}\n")
}

const PAASTA: &str = "[plugins.paasta]\nenabled = true\n";

/// VMs in the inventory: the stream keeps only their series, as the query path reads only
/// theirs.
async fn inventory(env: &TestEnv, ips: impl IntoIterator<Item = String>) {
    for (i, ip) in ips.into_iter().enumerate() {
        env.add_vm(&format!("vm/{i}"), &ip, "vms").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_needs_the_configured_credentials_and_only_in_stream_mode() {
    let env = TestEnv::new("stream_auth", PAASTA).await;
    inventory(&env, ["10.0.0.1".to_string()]).await;
    let db = format!("/write?db={}&precision=s", env.cf_db);
    let body = || line("10.0.0.1", "cpuStats.0", 10.0, now_s()).into_bytes();
    {
        let port = free_port();
        let _batch = start(&env, port, true, &[]);
        for auth in [None, Some((USER, "wrong")), Some(("other", PASSWORD))] {
            let (code, text) = post(port, &db, auth, &[], body()).await;
            assert_eq!(code, 401, "{auth:?}: {text}");
            assert!(!text.contains(PASSWORD), "{text}");
        }
        let (code, _) = post(port, &db, None, &[("authorization", "Bearer nope")], body()).await;
        assert_eq!(code, 401, "a wrong bearer token");
        assert_eq!(metric(port, "monit_ingest_points_total").await, 0.0);
        let (code, text) = post(port, &db, Some((USER, PASSWORD)), &[], body()).await;
        assert_eq!(code, 204, "{text}");
        assert_eq!(metric(port, "monit_ingest_points_total").await, 1.0);
        assert_eq!(health(port).await, 200);
        assert!(
            !log_of(&env).contains(PASSWORD),
            "the password is never logged"
        );
    }
    // mode "query" (the default): no ingest endpoint at all
    let port = free_port();
    let _batch = start(&env, port, false, &[]);
    let (code, _) = post(port, &db, Some((USER, PASSWORD)), &[], body()).await;
    assert_eq!(code, 404, "query mode serves no /write");
    env.cleanup().await;
}

/// Peak resident memory of a process, from /proc (kB).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_and_gzip_bombs_are_refused_with_413() {
    let env = TestEnv::new("stream_413", PAASTA).await;
    inventory(&env, ["10.0.0.1".to_string()]).await;
    let port = free_port();
    let batch = start(
        &env,
        port,
        true,
        &[("MONIT_BATCH__STREAM__MAX_BODY_BYTES", "1048576")],
    );
    let auth = Some((USER, PASSWORD));
    let path = format!("/write?db={}", env.cf_db);
    // a plain body over the limit
    let (code, text) = post(port, &path, auth, &[], vec![b'#'; 2 << 20]).await;
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("stream.max_body_bytes"), "{text}");
    // a gzip bomb: 64 members of 8 MiB of newlines each, 512 MiB inflated from ~0.5 MiB
    let member = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![b'\n'; 8 << 20]).unwrap();
        e.finish().unwrap()
    };
    let bomb: Vec<u8> = member.repeat(64);
    assert!(bomb.len() < 1 << 20, "the bomb itself fits the limit");
    let (code, text) = post(port, &path, auth, &[("content-encoding", "gzip")], bomb).await;
    assert_eq!(code, 413, "{text}");
    // snappy: a header declaring 1 GiB
    let mut snappy_bomb = vec![0x80, 0x80, 0x80, 0x80, 0x04];
    snappy_bomb.extend_from_slice(&[0u8; 16]);
    let (code, text) = post(port, "/api/v1/write", auth, &[], snappy_bomb).await;
    assert_eq!(code, 413, "{text}");
    assert_eq!(
        metric(port, "monit_ingest_rejected_total{reason=\"too_large\"}").await,
        3.0
    );
    let peak_mb = peak_rss_kb(batch.0.id()) / 1024;
    assert!(
        peak_mb < 200,
        "a 512 MiB gzip bomb must not be inflated past the limit: peak RSS {peak_mb} MB"
    );
    assert_eq!(health(port).await, 200);
    // a gzip body within the limits is read
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(line("10.0.0.1", "cpuStats.0", 5.0, now_s()).as_bytes())
        .unwrap();
    let path_s = format!("{path}&precision=s");
    let (code, text) = post(
        port,
        &path_s,
        auth,
        &[("content-encoding", "gzip")],
        e.finish().unwrap(),
    )
    .await;
    assert_eq!(code, 204, "{text}");
    assert_eq!(metric(port, "monit_ingest_points_total").await, 1.0);
    drop(batch);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_lines_and_protobuf_are_counted_and_skipped() {
    let env = TestEnv::new("stream_bad", PAASTA).await;
    inventory(&env, ["10.0.0.1", "10.0.0.2", "10.0.0.3"].map(String::from)).await;
    let port = free_port();
    let _batch = start(&env, port, true, &[]);
    let auth = Some((USER, PASSWORD));
    let t = now_s();
    let body = format!(
        "{}cf_metrics,ip=10.0.0.2,metricname=cpuStats.0 value=1 notatime\ncf_metrics,ip=10.0.0.2\n\
         cf_metrics,ip=10.0.0.2,metricname=cpuStats.0 value=1e999 {t}\ncf_metrics,ip=x=y value=1 {t}\n{}",
        line("10.0.0.1", "cpuStats.0", 10.0, t),
        line("10.0.0.1", "cpuStats.1", 20.0, t),
    );
    let path = format!("/write?db={}&precision=s", env.cf_db);
    let (code, text) = post(port, &path, auth, &[], body.into_bytes()).await;
    assert_eq!(code, 400, "InfluxDB's partial write: {text}");
    assert!(text.contains("partial write"), "{text}");
    assert_eq!(metric(port, "monit_ingest_points_total").await, 2.0);
    let rejected = |r: &'static str| {
        let s = format!("monit_ingest_rejected_total{{reason=\"{r}\"}}");
        async move { metric(port, &s).await }
    };
    assert_eq!(rejected("bad_timestamp").await, 1.0);
    assert_eq!(rejected("no_fields").await, 1.0);
    assert_eq!(rejected("bad_value").await, 1.0);
    assert_eq!(rejected("syntax").await, 1.0);
    // an unknown precision is refused whole
    let (code, _) = post(
        port,
        &format!("/write?db={}&precision=fortnight", env.cf_db),
        auth,
        &[],
        line("10.0.0.1", "cpuStats.0", 1.0, t).into_bytes(),
    )
    .await;
    assert_eq!(code, 400);

    // remote write: not snappy, then snappy around a broken protobuf
    let (code, _) = post(port, "/api/v1/write", auth, &[], vec![0xff; 40]).await;
    assert_eq!(code, 400);
    let broken = snap::raw::Encoder::new()
        .compress_vec(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01])
        .unwrap();
    let (code, text) = post(port, "/api/v1/write", auth, &[], broken).await;
    assert_eq!(code, 400, "{text}");
    assert_eq!(rejected("bad_snappy").await, 1.0);
    assert_eq!(rejected("bad_protobuf").await, 1.0);
    // a good remote write as vmagent names an InfluxDB line
    use monit_wire::remote_write::proto;
    let label = |n: &str, v: &str| proto::Label {
        name: n.into(),
        value: v.into(),
    };
    let req = proto::WriteRequest {
        timeseries: vec![proto::TimeSeries {
            labels: vec![
                label("__name__", "cf_metrics_value"),
                label("db", &env.cf_db),
                label("ip", "10.0.0.3"),
                label("metricname", "cpuStats.0"),
            ],
            samples: vec![proto::Sample {
                value: 42.0,
                timestamp: t * 1000,
            }],
        }],
    };
    let (code, text) = post(
        port,
        "/api/v1/write",
        auth,
        &[],
        monit_wire::remote_write::encode(&req),
    )
    .await;
    assert_eq!(code, 204, "{text}");
    assert_eq!(metric(port, "monit_ingest_points_total").await, 3.0);
    assert_eq!(health(port).await, 200, "still alive");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn new_series_beyond_max_series_are_refused_counted_and_logged_once() {
    let env = TestEnv::new("stream_max", PAASTA).await;
    inventory(
        &env,
        (0..2).flat_map(|r| (0..50).map(move |i| format!("10.9.{r}.{i}"))),
    )
    .await;
    let port = free_port();
    let _batch = start(
        &env,
        port,
        true,
        &[("MONIT_BATCH__STREAM__MAX_SERIES", "10")],
    );
    let auth = Some((USER, PASSWORD));
    let path = format!("/write?db={}&precision=s", env.cf_db);
    let t = now_s();
    for round in 0..2 {
        let body: String = (0..50)
            .map(|i| line(&format!("10.9.{round}.{i}"), "cpuStats.0", 1.0, t))
            .collect();
        let (code, text) = post(port, &path, auth, &[], body.into_bytes()).await;
        assert_eq!(code, 204, "{text}");
    }
    assert_eq!(metric(port, "monit_stream_series").await, 10.0);
    assert_eq!(metric(port, "monit_ingest_points_total").await, 10.0);
    assert_eq!(
        metric(port, "monit_ingest_rejected_total{reason=\"max_series\"}").await,
        90.0
    );
    // a known series still takes points
    let (code, _) = post(
        port,
        &path,
        auth,
        &[],
        line("10.9.0.0", "cpuStats.0", 2.0, t + 1).into_bytes(),
    )
    .await;
    assert_eq!(code, 204);
    assert_eq!(metric(port, "monit_ingest_points_total").await, 11.0);
    let log = log_of(&env);
    assert_eq!(
        log.matches("stream.max_series reached").count(),
        1,
        "one WARN line: {log}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn series_of_vms_outside_the_inventory_are_not_kept_but_show_the_delivery_works() {
    let env = TestEnv::new("stream_inventory", PAASTA).await;
    inventory(&env, ["10.0.0.1".to_string()]).await;
    let port = free_port();
    let _batch = start(&env, port, true, &[]);
    // the first tick loads the inventory
    first_tick_mode(&env).await;
    let t = now_s();
    let body: String = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        .iter()
        .flat_map(|ip| {
            [
                line(ip, "cpuStats.0", 1.0, t),
                line(ip, "memoryStats.UsedPercent", 1.0, t),
            ]
        })
        .collect();
    let path = format!("/write?db={}&precision=s", env.cf_db);
    let (code, text) = post(port, &path, Some((USER, PASSWORD)), &[], body.into_bytes()).await;
    assert_eq!(code, 204, "{text}");
    assert_eq!(
        metric(port, "monit_stream_series").await,
        2.0,
        "only the inventory's VM: its cpu and memory series"
    );
    assert_eq!(metric(port, "monit_ingest_points_total").await, 2.0);
    assert_eq!(
        metric(port, "monit_ingest_writes_total{format=\"line\"}").await,
        1.0,
        "the write counts as a delivery"
    );
    env.cleanup().await;
}

/// The `metric_mode` of the first `batch_runs` row.
async fn first_tick_mode(env: &TestEnv) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row: Option<String> =
            sqlx::query_scalar("SELECT CAST(summary AS CHAR) FROM batch_runs ORDER BY id LIMIT 1")
                .fetch_optional(&env.db)
                .await
                .unwrap();
        if let Some(s) = row {
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            return v["metric_mode"].as_str().unwrap_or_default().to_string();
        }
        assert!(Instant::now() < deadline, "no tick recorded within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_tick_after_start_reads_in_query_mode() {
    let env = TestEnv::new("stream_warm", PAASTA).await;
    env.add_vm("router/0", "10.0.16.11", "rtr").await;
    env.write_points(&env.cf_db, &common::vm_points("10.0.16.11", now_s(), 10.0))
        .await;
    {
        let _batch = start(&env, free_port(), true, &[]);
        assert_eq!(first_tick_mode(&env).await, "stream-warmup");
    }
    let queries: i64 = sqlx::query_scalar(
        "SELECT CAST(JSON_EXTRACT(summary, '$.influx_queries') AS SIGNED) FROM batch_runs ORDER BY id LIMIT 1",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert!(queries > 0, "the warm-up tick queried InfluxDB");
    env.exec("DELETE FROM batch_runs").await;
    let _batch = start(&env, free_port(), false, &[]);
    assert_eq!(first_tick_mode(&env).await, "query");
    env.cleanup().await;
}

/// cAdvisor points of one container every 10 s over `(from, to]`, CPU counter from `cpu0`
/// growing `per_10s`, memory and disk as fractions of 1 GiB.
#[allow(clippy::too_many_arguments)]
fn container(
    app: &str,
    idx: u32,
    cell: &str,
    cid: &str,
    from: i64,
    to: i64,
    cpu0: f64,
    per_10s: f64,
    mem: f64,
    limits: bool,
) -> String {
    let tags = format!(
        "application_id={app}-guid,application_index={idx},application_name={app},cell_ip={cell},container_id={cid},container_interface={app}-{idx},machine=cell"
    );
    let mut out = String::new();
    let (mut t, mut cpu) = (from, cpu0);
    while t <= to {
        let lim = if limits {
            "app_mem=1073741824,app_disk=1073741824,"
        } else {
            ""
        };
        let wobble = ((t % 7) as f64) * 0.013;
        for (name, v) in [
            ("cpu_usage_total", cpu),
            ("memory_usage", (mem + wobble) * 1073741824.0 / 3.0),
            ("disk_usage", (0.1 + wobble) * 1073741824.0 / 7.0),
            ("load_average", 0.0),
        ] {
            out.push_str(&format!(
                "container_metrics,{tags},name={name} {lim}value={v} {t}\n"
            ));
        }
        cpu += per_10s;
        t += 10;
    }
    out
}

/// Both VM writer generations, odd values (so that a different summation order would show),
/// out-of-range points the statements leave out.
fn vms(now: i64) -> String {
    let mut out = String::new();
    let mut t = now - 400;
    while t <= now {
        let k = (t % 13) as f64;
        for (ip, m, v) in [
            ("10.0.16.11", "cpuStats.0", 37.123_456_789 + k * 3.3),
            ("10.0.16.11", "cpuStats.1", 91.7 - k / 3.0),
            ("10.0.16.11", "memoryStats.UsedPercent", 40.1 + k * 0.7),
            ("10.0.16.11", "diskStats.Usage", 55.5 + k / 7.0),
            ("10.0.16.11", "cpuStats.load1", 300.0),
            ("10.0.16.12", "cpuStats.core.0", 12.0 + k * 1.1),
            (
                "10.0.16.12",
                "cpuStats.core.1",
                if k > 11.0 { 150.0 } else { 8.0 },
            ),
            ("10.0.16.12", "memoryStats.TotalMemory", 8.0e9),
            (
                "10.0.16.12",
                "memoryStats.AvailableMemory",
                3.1e9 + k * 1.0e8,
            ),
            ("10.0.16.12", "memoryStats.FreeMemory", 1.0e9),
            ("10.0.16.12", "diskStats./.Usage", 30.0 + k),
            (
                "10.0.16.12",
                "diskStats./var/vcap/data.Usage",
                87.0 - k / 9.0,
            ),
            ("10.0.16.12", "diskStats./var/vcap/store.Usage", -5.0),
        ] {
            out.push_str(&line(ip, m, v, t));
        }
        t += 10;
    }
    out
}

fn bosh(now: i64) -> String {
    let mut out = String::new();
    let mut t = now - 400;
    while t <= now {
        let k = (t % 11) as f64;
        for (origin, m, v) in [
            ("micro-bosh", "cpuStats.core.0", 21.0 + k * 0.37),
            ("micro-bosh", "memoryStats.UsedPercent", 66.6 + k / 10.0),
            ("micro-bosh", "diskStats.Usage", 12.5),
            ("other", "cpuStats.core.0", 99.0),
        ] {
            out.push_str(&format!(
                "bosh_metrics,ip=10.0.1.6,metricname={m},origin={origin} value={v} {t}\n"
            ));
        }
        t += 15;
    }
    out
}

async fn influxql(url: &str, q: &str) {
    let r = reqwest::Client::new()
        .post(format!("{url}/query"))
        .form(&[("q", q)])
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(!text.contains("\"error\""), "{q}: {text}");
}

/// Drops the subscriptions when the test ends, passed or not.
struct Subscriptions {
    url: String,
    drops: Vec<String>,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        let (url, drops) = (self.url.clone(), std::mem::take(&mut self.drops));
        // a fresh runtime: the test's may be shutting down
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for q in drops {
                    let _ = reqwest::Client::new()
                        .post(format!("{url}/query"))
                        .form(&[("q", q)])
                        .send()
                        .await;
                }
            });
        })
        .join();
    }
}

/// The batch's HTTP endpoint with the stream's routes, in this process, keeping `series`.
async fn serve_stream(
    series: &[monit_host::metric_store::stream::StreamSeries],
) -> (u16, Arc<StreamState>) {
    let settings = monit_host::config::StreamSettings {
        username: USER.into(),
        password: monit_host::config::secret::Secret::new(PASSWORD),
        ..Default::default()
    };
    let state = Arc::new(StreamState::new(&settings, series));
    let port = free_port();
    let server = monit_host::config::ServerSettings {
        bind: "127.0.0.1".into(),
        port,
        ..Default::default()
    };
    let db = monit_host::config::DbSettings {
        db_type: "mysql".into(),
        host: "127.0.0.1".into(),
        port: 1,
        dbname: "none".into(),
        username: "none".into(),
        password: Default::default(),
        ssl_ca: None,
        max_connections: 1,
    };
    monit_host::run::http::serve(
        &server,
        monit_host::run::http::HttpState {
            pool: monit_host::store::db::lazy_pool(&db),
            status: Default::default(),
            metrics: None,
            stream: Some(state.clone()),
            console: None,
        },
    )
    .await
    .unwrap();
    wait_port(port, true);
    (port, state)
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_and_query_give_the_same_readings_from_a_real_subscription() {
    let env = TestEnv::new("stream_diff", "").await;
    let source = ContainerSource {
        db: env.container_db.clone(),
        measurement: "container_metrics".into(),
        bucket_seconds: 10,
    };
    let series = vec![
        monit_cf_metrics::vm::stream_series(&env.cf_db, "cf_metrics", &["ip"], Some("ip")),
        monit_cf_metrics::vm::stream_series(&env.bosh_db, "bosh_metrics", &["origin"], None),
        monit_cf_metrics::container::stream_series(&source),
    ];
    let (port, state) = serve_stream(&series).await;

    let name = unique("t_sub");
    let mut subs = Subscriptions {
        url: env.influx.clone(),
        drops: Vec::new(),
    };
    for d in [&env.cf_db, &env.bosh_db, &env.container_db] {
        influxql(
            &env.influx,
            &format!(
                "CREATE SUBSCRIPTION \"{name}\" ON \"{d}\".\"autogen\" DESTINATIONS ALL 'http://{USER}:{PASSWORD}@127.0.0.1:{port}'"
            ),
        )
        .await;
        subs.drops.push(format!(
            "DROP SUBSCRIPTION \"{name}\" ON \"{d}\".\"autogen\""
        ));
    }
    // InfluxDB starts forwarding once its subscriber has seen the new subscription: probe
    let probe_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        env.write_points(&env.cf_db, &line("10.0.99.1", "cpuStats.0", 1.0, now_s()))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if state.windows().series_of(&env.cf_db, "cf_metrics").count() > 0 {
            break;
        }
        assert!(
            Instant::now() < probe_deadline,
            "the subscription delivered nothing within 30 s"
        );
    }

    let now = now_s();
    env.write_points(&env.cf_db, &vms(now)).await;
    env.write_points(&env.bosh_db, &bosh(now)).await;
    let mut con = String::new();
    // a steady app, one without limits on its points, one whose counter restarted, one that
    // stopped two minutes ago, the cell's own cgroup (container_id "/")
    con += &container(
        "web",
        0,
        "10.0.16.21",
        "/garden/a",
        now - 400,
        now,
        1000.0,
        3.1,
        0.31,
        true,
    );
    con += &container(
        "web",
        1,
        "10.0.16.22",
        "/garden/b",
        now - 400,
        now,
        5.0,
        1.7,
        0.77,
        false,
    );
    con += &container(
        "api",
        0,
        "10.0.16.21",
        "/garden/c",
        now - 400,
        now - 150,
        9000.0,
        9.9,
        0.5,
        true,
    );
    con += &container(
        "api",
        0,
        "10.0.16.21",
        "/garden/c",
        now - 140,
        now,
        3.0,
        2.2,
        0.5,
        true,
    );
    // the same container's series written a second time under another tag the statements do
    // not group by: the store keeps two series, the statements fold both into one container
    con += &container(
        "web",
        0,
        "10.0.16.21",
        "/garden/a",
        now - 395,
        now - 5,
        1007.0,
        3.3,
        0.35,
        true,
    )
    .replace("machine=cell", "machine=cell-b");
    con += &container(
        "gone",
        0,
        "10.0.16.22",
        "/garden/d",
        now - 400,
        now - 120,
        1.0,
        1.0,
        0.2,
        true,
    );
    con += &container(
        "cell",
        0,
        "10.0.16.21",
        "/",
        now - 400,
        now,
        1.0,
        50.0,
        0.9,
        true,
    );
    env.write_points(&env.container_db, &con).await;
    // a rewrite of points already written (same series and time: the value is replaced) and
    // late points, once the first writes have reached the stream (InfluxDB forwards each write
    // on its own, possibly side by side)
    let settle = Instant::now() + Duration::from_secs(30);
    while state.windows().series_count() < 20 {
        assert!(Instant::now() < settle, "the first writes never arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut again = String::new();
    for t in [now - 60, now - 50] {
        again += &line("10.0.16.11", "cpuStats.0", 99.5, t);
    }
    again += &line("10.0.16.11", "cpuStats.0", 1.25, now - 55);
    env.write_points(&env.cf_db, &again).await;

    let influx = MetricStore::new(
        monit_host::config::MetricBackend::Influxdb,
        &monit_host::config::InfluxSettings {
            url: env.influx.clone(),
            ..Default::default()
        },
        &Default::default(),
    )
    .unwrap();
    let stream = MetricStore::Stream(StreamHandle {
        state: state.clone(),
        query: Box::new(influx.clone()),
    });
    let at = chrono::DateTime::from_timestamp(now + 1, 0).unwrap();
    let vm_windows = UsageWindows {
        cpu: Duration::from_secs(300),
        memory: Duration::from_secs(120),
        disk: Duration::from_secs(60),
    };
    let con_windows = UsageWindows {
        cpu: Duration::from_secs(120),
        memory: Duration::from_secs(300),
        disk: Duration::from_secs(30),
    };
    let pas = VmQuery {
        db: &env.cf_db,
        measurement: "cf_metrics",
        filter: None,
        group_by: Some("ip"),
        windows: vm_windows,
        bucket_seconds: 10,
        end_epoch: now + 1,
    };
    let bos = VmQuery {
        db: &env.bosh_db,
        measurement: "bosh_metrics",
        filter: Some(("origin", "micro-bosh")),
        group_by: None,
        ..pas
    };
    // the subscription delivers asynchronously: compare until both agree, within a bound
    let (a, b) = read_until_equal(async || {
        (
            (
                pas.read(&influx).await.unwrap(),
                bos.read(&influx).await.unwrap(),
                read_container_usage(&influx, &source, &con_windows, at)
                    .await
                    .unwrap(),
            ),
            (
                pas.read(&stream).await.unwrap(),
                bos.read(&stream).await.unwrap(),
                read_container_usage(&stream, &source, &con_windows, at)
                    .await
                    .unwrap(),
            ),
        )
    })
    .await;
    assert_eq!(a.0, b.0, "paasta VMs, both writer generations");
    assert_eq!(a.1, b.1, "the BOSH director");
    assert_eq!(a.2, b.2, "containers");
    // the comparison covers what it should
    assert!(a.0["10.0.16.11"].cpu.is_some() && a.0["10.0.16.12"].memory.is_some());
    assert!(a.1[""].cpu.is_some());
    let apps: Vec<&str> = a.2.iter().map(|c| &*c.app_name).collect();
    assert!(apps.contains(&"web") && apps.contains(&"api"), "{apps:?}");
    assert!(
        !apps.contains(&"gone") && !apps.contains(&"cell"),
        "{apps:?}"
    );
    assert!(
        a.2.iter().any(|c| c.memory.is_none()),
        "a container without limits"
    );
    drop(subs);
    env.cleanup().await;
}

/// The alarms a tick left, as the management UI lists them.
async fn alarm_rows(
    env: &TestEnv,
) -> Vec<(String, String, String, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT origin_type, alarm_type, level, ip, app_name FROM alarms \
         ORDER BY origin_type, alarm_type, ip, app_name",
    )
    .fetch_all(&env.db)
    .await
    .unwrap()
}

/// The summary of the newest tick, once one started at or after `since` (epoch s) in `mode`.
async fn tick_after(env: &TestEnv, since: i64, mode: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(summary AS CHAR) FROM batch_runs WHERE started_at >= FROM_UNIXTIME(?) ORDER BY id DESC LIMIT 1",
        )
        .bind(since)
        .fetch_all(&env.db)
        .await
        .unwrap();
        if let Some(v) = rows
            .first()
            .map(|s| serde_json::from_str::<serde_json::Value>(s).unwrap())
            .filter(|v| v["metric_mode"] == mode)
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no {mode} tick since {since} within 180 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What both sides get: VMs of both writer generations (a critical and a warning CPU), a cell
/// with a hot container, over the last 15 s.
fn platform(now: i64) -> (String, String) {
    let mut vm = String::new();
    let mut con = String::new();
    for (i, t) in [now - 15, now - 10, now - 5, now].into_iter().enumerate() {
        for (ip, m, v) in [
            ("10.0.16.11", "cpuStats.0", 95.5),
            ("10.0.16.11", "memoryStats.UsedPercent", 40.0),
            ("10.0.16.11", "diskStats.Usage", 40.0),
            ("10.0.16.12", "cpuStats.core.0", 87.25),
            ("10.0.16.12", "memoryStats.TotalMemory", 8.0e9),
            ("10.0.16.12", "memoryStats.AvailableMemory", 4.0e9),
            ("10.0.16.12", "diskStats./.Usage", 30.0),
            ("10.0.16.21", "cpuStats.0", 10.0),
            ("10.0.16.21", "memoryStats.UsedPercent", 20.0),
            ("10.0.16.21", "diskStats.Usage", 20.0),
        ] {
            vm.push_str(&line(ip, m, v, t));
        }
        let tags = "application_id=hot-guid,application_index=0,application_name=hot,cell_ip=10.0.16.21,container_id=/garden/h,container_interface=hot-0";
        for (name, v) in [
            ("cpu_usage_total", 100.0 + 4.75 * i as f64),
            ("memory_usage", 0.93 * 1073741824.0),
            ("disk_usage", 0.1 * 1073741824.0),
        ] {
            con.push_str(&format!(
                "container_metrics,{tags},name={name} app_mem=1073741824,app_disk=1073741824,value={v} {t}\n"
            ));
        }
    }
    (vm, con)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_tick_opens_the_same_alarms_as_a_query_tick() {
    let plugins = "[plugins.paasta]\nenabled = true\n[plugins.container]\nenabled = true\n";
    let streamed = TestEnv::new("stream_alarms_s", plugins).await;
    let queried = TestEnv::new("stream_alarms_q", plugins).await;
    for env in [&streamed, &queried] {
        env.exec("UPDATE alarm_policies SET measure_time = 30")
            .await;
    }
    let port = free_port();
    let _batch = start(
        &streamed,
        port,
        true,
        &[
            ("MONIT_BATCH__PLUGINS__CONTAINER__ENABLED", "true"),
            ("MONIT_BATCH__ALARMS__DEFAULT_MEASURE_SECONDS", "30"),
        ],
    );
    let name = unique("t_sub");
    let mut subs = Subscriptions {
        url: streamed.influx.clone(),
        drops: Vec::new(),
    };
    for d in [&streamed.cf_db, &streamed.container_db] {
        influxql(
            &streamed.influx,
            &format!(
                "CREATE SUBSCRIPTION \"{name}\" ON \"{d}\".\"autogen\" DESTINATIONS ALL 'http://{USER}:{PASSWORD}@127.0.0.1:{port}'"
            ),
        )
        .await;
        subs.drops.push(format!(
            "DROP SUBSCRIPTION \"{name}\" ON \"{d}\".\"autogen\""
        ));
    }
    // the stream starts with the first point it receives and stays trusted while points keep
    // arriving (a VM and a cell not in the inventory, as a live platform writes)
    let _beat = (
        Writer::start(&streamed.influx, &streamed.cf_db, &[("10.0.99.1", 1.0)]),
        Writer::lines(&streamed.influx, &streamed.container_db, |t| {
            format!(
                "container_metrics,application_id=b-guid,application_index=0,application_name=b,cell_ip=10.0.99.9,container_id=/garden/z,container_interface=b-0,name=cpu_usage_total value={} {t}\n",
                t as f64
            )
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(port, "monit_ingest_writes_total{format=\"line\"}").await < 1.0 {
        assert!(Instant::now() < deadline, "nothing delivered within 30 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // warm-up: the container's activity horizon (90 s) is the longest look-back
    tick_after(&streamed, now_s(), "stream").await;
    // the VMs join the inventory before their points are written: the stream keeps only the
    // inventory's VMs (and cells), the query reads only theirs
    for env in [&streamed, &queried] {
        env.add_vm("router/0", "10.0.16.11", "rtr").await;
        env.add_vm("api/0", "10.0.16.12", "api").await;
        env.add_vm("cell/0", "10.0.16.21", "cel").await;
    }
    // a tick after the VMs were added has loaded them (it reads the store: they have no points
    // yet, a gap in the stream's eyes)
    tick_where(&streamed, now_s() + 1, "a tick with the VMs", |_| true).await;
    // the query side ticks at that moment too: both see the VMs without a point (the platform's
    // metrics `fail`, on both sides)
    assert!(queried.run_once().status.success());

    let now = now_s();
    let (vm, con) = platform(now);
    let before = metric(port, "monit_ingest_points_total").await;
    for env in [&streamed, &queried] {
        env.write_points(&env.cf_db, &vm).await;
        env.write_points(&env.container_db, &con).await;
    }
    // (and the heartbeat's points meanwhile)
    let expected = before + 4.0 * 10.0 + 4.0 * 3.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(port, "monit_ingest_points_total").await < expected {
        assert!(Instant::now() < deadline, "the points never all arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let from = now_s() + 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    while alarm_rows(&streamed).await.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            alarm_rows(&streamed).await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // the new alarms a stream tick opened were confirmed by the store, one targeted query per
    // origin and tick. A tick that ran while the subscription was still delivering the points
    // saw the VMs silent, read the store (`stream-quiet`) and opened from its answer: nothing
    // to confirm (seen once under a loaded machine); `a_breach_only_the_stream_saw_...` tests
    // confirmation on its own.
    let confirmed: i64 = streamed
        .scalar_i64(
            "SELECT CAST(COALESCE(SUM(JSON_EXTRACT(summary, '$.stream.confirmation.confirmed')), 0) AS SIGNED) FROM batch_runs",
        )
        .await;
    let opened_streaming: i64 = streamed
        .scalar_i64(
            "SELECT CAST(COALESCE(SUM(JSON_EXTRACT(summary, '$.alarms.opened')), 0) AS SIGNED) FROM batch_runs \
             WHERE JSON_UNQUOTE(JSON_EXTRACT(summary, '$.metric_mode')) = 'stream'",
        )
        .await;
    assert!(
        confirmed >= opened_streaming,
        "{confirmed} confirmed, {opened_streaming} opened by stream ticks"
    );
    // a later tick, with nothing new, queries nothing
    let stream_tick = tick_where(&streamed, now_s() + 1, "a steady stream tick", |v| {
        v["metric_mode"] == "stream" && v["alarms"]["opened"] == 0
    })
    .await;
    assert_eq!(
        stream_tick["influx_queries"], 0,
        "a warm stream tick without new alarms sends no query"
    );
    drop(_batch);
    let out = queried.run_once();
    assert!(out.status.success());
    let query_tick = tick_after(&queried, from, "query").await;
    assert_eq!(query_tick["readings"], stream_tick["readings"]);
    let (s, q) = (alarm_rows(&streamed).await, alarm_rows(&queried).await);
    assert_eq!(s, q, "the same alarms");
    let kinds: Vec<(&str, &str, &str)> = q
        .iter()
        .map(|a| (a.0.as_str(), a.1.as_str(), a.2.as_str()))
        .collect();
    assert!(kinds.contains(&("pas", "cpu", "critical")), "{kinds:?}");
    assert!(kinds.contains(&("pas", "cpu", "warning")), "{kinds:?}");
    assert!(kinds.iter().any(|k| k.0 == "con"), "{kinds:?}");
    drop(subs);
    streamed.cleanup().await;
    queried.cleanup().await;
}

/// vmagent, stopped when dropped.
struct Vmagent(Child);

impl Drop for Vmagent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn vmagent_remote_write_gives_the_same_readings_as_influxdb() {
    let env = TestEnv::new("stream_vmagent", "").await;
    let source = ContainerSource {
        db: env.container_db.clone(),
        measurement: "container_metrics".into(),
        bucket_seconds: 10,
    };
    let (port, state) = serve_stream(&[
        monit_cf_metrics::vm::stream_series(&env.cf_db, "cf_metrics", &["ip"], Some("ip")),
        monit_cf_metrics::container::stream_series(&source),
    ])
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let agent_port = free_port();
    let _vmagent = Vmagent(
        Command::new("/usr/bin/vmagent")
            .arg(format!("-httpListenAddr=127.0.0.1:{agent_port}"))
            .arg(format!(
                "-remoteWrite.url=http://127.0.0.1:{port}/api/v1/write"
            ))
            .arg(format!("-remoteWrite.basicAuth.username={USER}"))
            .arg(format!("-remoteWrite.basicAuth.password={PASSWORD}"))
            .arg(format!("-remoteWrite.tmpDataPath={}", tmp.path().display()))
            .arg("-remoteWrite.flushInterval=100ms")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("vmagent runs (scripts/services.sh installs victoria-metrics)"),
    );
    wait_port(agent_port, true);
    let now = now_s();
    let mut con = String::new();
    con += &container(
        "web",
        0,
        "10.0.16.21",
        "/garden/a",
        now - 300,
        now,
        1000.0,
        3.1,
        0.31,
        true,
    );
    con += &container(
        "api",
        0,
        "10.0.16.22",
        "/garden/c",
        now - 300,
        now,
        3.0,
        2.2,
        0.5,
        true,
    );
    // the same points to the store and, through vmagent, to the batch
    let http = reqwest::Client::new();
    for (db, body) in [(&env.cf_db, vms(now)), (&env.container_db, con)] {
        env.write_points(db, &body).await;
        let r = http
            .post(format!("http://127.0.0.1:{agent_port}/write"))
            .query(&[("db", db.as_str()), ("precision", "s")])
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "vmagent /write: {}", r.status());
    }
    let influx = MetricStore::new(
        monit_host::config::MetricBackend::Influxdb,
        &monit_host::config::InfluxSettings {
            url: env.influx.clone(),
            ..Default::default()
        },
        &Default::default(),
    )
    .unwrap();
    let stream = MetricStore::Stream(StreamHandle {
        state: state.clone(),
        query: Box::new(influx.clone()),
    });
    let windows = UsageWindows {
        cpu: Duration::from_secs(120),
        memory: Duration::from_secs(300),
        disk: Duration::from_secs(60),
    };
    let pas = VmQuery {
        db: &env.cf_db,
        measurement: "cf_metrics",
        filter: None,
        group_by: Some("ip"),
        windows,
        bucket_seconds: 10,
        end_epoch: now + 1,
    };
    let at = chrono::DateTime::from_timestamp(now + 1, 0).unwrap();
    let (a, b) = read_until_equal(async || {
        (
            (
                pas.read(&influx).await.unwrap(),
                read_container_usage(&influx, &source, &windows, at)
                    .await
                    .unwrap(),
            ),
            (
                pas.read(&stream).await.unwrap(),
                read_container_usage(&stream, &source, &windows, at)
                    .await
                    .unwrap(),
            ),
        )
    })
    .await;
    assert_eq!(a.0, b.0, "VMs through vmagent");
    assert_eq!(
        a.1, b.1,
        "containers through vmagent (limits as their own series)"
    );
    assert_eq!(a.0.len(), 2);
    assert!(
        a.1.iter().all(|c| c.memory.is_some() && c.cpu.is_some()),
        "{:?}",
        a.1
    );
    env.cleanup().await;
}

#[test]
fn stream_settings_are_range_checked_and_need_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("monit-batch.toml");
    let check = |extra: &str| {
        std::fs::write(
            &config,
            format!("[monitoring_db]\ndbname = \"x\"\n[metrics]\nmode = \"stream\"\n{extra}"),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_monit-batch"))
            .arg("--config")
            .arg(&config)
            .arg("check-config")
            .env_remove("PORT")
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = check("");
    assert!(!ok && text.contains("stream.username"), "{text}");
    let creds = "[stream]\nusername = \"w\"\npassword = \"pw-secret-1\"\n";
    let (ok, text) = check(&format!("{creds}max_series = 0\n"));
    assert!(!ok && text.contains("stream.max_series = 0"), "{text}");
    let (ok, text) = check(&format!("{creds}max_body_bytes = 10\n"));
    assert!(!ok && text.contains("stream.max_body_bytes"), "{text}");
    let (ok, text) = check(&format!("{creds}reconcile_every = 0\n"));
    assert!(!ok && text.contains("stream.reconcile_every"), "{text}");
    let (ok, text) = check("[stream]\ntoken = \"tok-secret-2\"\n");
    assert!(ok, "a token is enough: {text}");
    assert!(!text.contains("tok-secret-2"), "{text}");
    let (ok, text) = check(creds);
    assert!(ok, "{text}");
    assert!(
        !text.contains("pw-secret-1"),
        "the password is never shown: {text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Truth for stream mode: confirmation by the store, gaps, drift (issue 20 item 3).

/// Points of VMs written to InfluxDB every 2 s (its subscription copies them to the batch), as
/// a live platform writes: `(ip, cpu)`, changed while it runs. Stops when dropped.
struct Writer {
    vms: Arc<std::sync::Mutex<Vec<(String, f64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(influx: &str, db: &str, vms: &[(&str, f64)]) -> Writer {
        let list: Vec<(String, f64)> = vms.iter().map(|(ip, c)| (ip.to_string(), *c)).collect();
        let vms = Arc::new(std::sync::Mutex::new(list));
        let shared = vms.clone();
        let task = Self::spawn(influx, db, move |t| {
            shared
                .lock()
                .unwrap()
                .iter()
                .map(|(ip, cpu)| {
                    line(ip, "cpuStats.0", *cpu, t)
                        + &line(ip, "memoryStats.UsedPercent", 40.0, t)
                        + &line(ip, "diskStats.Usage", 40.0, t)
                })
                .collect()
        });
        Writer { vms, task }
    }

    /// Any lines, `lines(now)` every 2 s.
    fn lines(influx: &str, db: &str, lines: impl Fn(i64) -> String + Send + 'static) -> Writer {
        Writer {
            vms: Default::default(),
            task: Self::spawn(influx, db, lines),
        }
    }

    fn spawn(
        influx: &str,
        db: &str,
        lines: impl Fn(i64) -> String + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let (url, db) = (format!("{influx}/write"), db.to_string());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            // bounded: ten minutes at most, far beyond any test here
            for _ in 0..300 {
                let body = lines(now_s());
                let _ = http
                    .post(&url)
                    .query(&[("db", db.as_str()), ("precision", "s")])
                    .body(body)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    }

    fn set(&self, ip: &str, cpu: f64) {
        for v in self.vms.lock().unwrap().iter_mut() {
            if v.0 == ip {
                v.1 = cpu;
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A subscription of InfluxDB on `dbs` to the batch on `port`, dropped when the test ends.
async fn subscribe(env: &TestEnv, port: u16, dbs: &[&String]) -> Subscriptions {
    let name = unique("t_sub");
    let mut subs = Subscriptions {
        url: env.influx.clone(),
        drops: Vec::new(),
    };
    for d in dbs {
        influxql(
            &env.influx,
            &format!(
                "CREATE SUBSCRIPTION \"{name}\" ON \"{d}\".\"autogen\" DESTINATIONS ALL 'http://{USER}:{PASSWORD}@127.0.0.1:{port}'"
            ),
        )
        .await;
        subs.drops.push(format!(
            "DROP SUBSCRIPTION \"{name}\" ON \"{d}\".\"autogen\""
        ));
    }
    subs
}

/// The newest tick summary started at or after `since` that `pred` accepts, within 120 s.
async fn tick_where(
    env: &TestEnv,
    since: i64,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(summary AS CHAR) FROM batch_runs WHERE started_at >= FROM_UNIXTIME(?) ORDER BY id DESC LIMIT 1",
        )
        .bind(since)
        .fetch_all(&env.db)
        .await
        .unwrap();
        if let Some(v) = rows
            .first()
            .map(|s| serde_json::from_str::<serde_json::Value>(s).unwrap())
            .filter(|v| pred(v))
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no tick since {since} within 120 s: {what}; last: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn alarm_ips(env: &TestEnv) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT CONCAT(origin_type, ' ', COALESCE(ip, ''), ' ', alarm_type) FROM alarms ORDER BY ip, alarm_type",
    )
    .fetch_all(&env.db)
    .await
    .unwrap()
}

/// paasta and email (to the SMTP sink), 30 s windows, two VMs in the inventory.
async fn truth_env(tag: &str) -> TestEnv {
    let env = TestEnv::new(
        tag,
        "[plugins.paasta]\nenabled = true\n[plugins.email]\nenabled = true\nsmtp_host = \"127.0.0.1\"\nsmtp_port = 2525\nsecurity = \"plain\"\nsender = \"PaaS-TA Monitor <monit@example.com>\"\n",
    )
    .await;
    env.exec("UPDATE alarm_policies SET measure_time = 30")
        .await;
    // named after the test's database: its mails are told from other tests' by the name
    env.add_vm(&format!("{}-router", env.name), "10.0.16.11", "rtr")
        .await;
    env.add_vm(&format!("{}-api", env.name), "10.0.16.12", "api")
        .await;
    env
}

const THIRTY: (&str, &str) = ("MONIT_BATCH__ALARMS__DEFAULT_MEASURE_SECONDS", "30");

/// `(instance, metric_mode)` of the ticks recorded since `since` (epoch s), oldest first.
async fn ticks_since(env: &TestEnv, since: i64) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT instance, JSON_UNQUOTE(JSON_EXTRACT(summary, '$.metric_mode')) FROM batch_runs \
         WHERE started_at >= FROM_UNIXTIME(?) ORDER BY id",
    )
    .bind(since)
    .fetch_all(&env.db)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_keeps_its_stream_warm_and_ticks_from_it_at_once_when_it_takes_over() {
    let env = truth_env("stream_failover").await;
    let _writer = Writer::start(
        &env.influx,
        &env.cf_db,
        &[
            ("10.0.16.11", 10.0),
            ("10.0.16.12", 10.0),
            ("10.0.99.1", 10.0),
        ],
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let instance = |name: &'static str| {
        [
            THIRTY,
            ("MONIT_BATCH__BATCH__LEADER_ELECTION", "true"),
            ("MONIT_BATCH__BATCH__INSTANCE_NAME", name),
        ]
    };
    let (pa, pb) = (free_port(), free_port());
    let a = start(&env, pa, true, &instance("a"));
    // a leads (it started first), then b starts; both get every write (two subscriptions)
    let started = now_s();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ticks_since(&env, started).await.is_empty() {
        assert!(Instant::now() < deadline, "a never ticked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b = start(&env, pb, true, &instance("b"));
    let _subs = (
        subscribe(&env, pa, &[&env.cf_db]).await,
        subscribe(&env, pb, &[&env.cf_db]).await,
    );
    tick_where(&env, now_s(), "a stream tick of the leader", |v| {
        v["metric_mode"] == "stream"
    })
    .await;
    let ticks = ticks_since(&env, started).await;
    assert!(
        ticks.iter().all(|(i, _)| i == "a"),
        "b is a standby: {ticks:?}"
    );
    // the standby's windows: the inventory's two VMs (cpu, memory, disk), not the third VM
    assert_eq!(metric(pb, "monit_stream_series").await, 6.0);
    assert!(metric(pb, "monit_ingest_points_total").await > 0.0);

    drop(a);
    let failover = now_s();
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        if let Some(t) = ticks_since(&env, failover)
            .await
            .into_iter()
            .find(|(i, _)| i == "b")
        {
            break t;
        }
        assert!(Instant::now() < deadline, "b never took over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        first.1, "stream",
        "the new leader's first tick reads its warm stream, no warm-up"
    );
    drop(b);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_breach_only_the_stream_saw_is_not_confirmed_and_a_real_one_opens() {
    let env = truth_env("truth_confirm").await;
    let writer = Writer::start(
        &env.influx,
        &env.cf_db,
        &[("10.0.16.11", 10.0), ("10.0.16.12", 10.0)],
    );
    // the store has the VMs' points before the first tick (a warm-up tick queries it)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let port = free_port();
    let _batch = start(&env, port, true, &[THIRTY]);
    let _subs = subscribe(&env, port, &[&env.cf_db]).await;
    tick_where(&env, now_s(), "a stream tick", |v| {
        v["metric_mode"] == "stream"
    })
    .await;
    assert_eq!(
        alarm_ips(&env).await,
        Vec::<String>::new(),
        "nothing breaches yet"
    );

    // 10.0.16.11 at 100 % for the whole window, but only in the stream: posted to the batch,
    // never to InfluxDB (as if InfluxDB had lost the writes the stream got)
    let t = now_s();
    let fake: String = (0..300)
        .map(|i| {
            format!(
                "cf_metrics,ip=10.0.16.11,metricname=cpuStats.0,origin=rep value=100 {}\n",
                (t - 29) * 1_000_000_000 + i * 97_000_000
            )
        })
        .collect();
    let (code, text) = post(
        port,
        &format!("/write?db={}&precision=ns", env.cf_db),
        Some((USER, PASSWORD)),
        &[],
        fake.into_bytes(),
    )
    .await;
    assert_eq!(code, 204, "{text}");
    let since = now_s() + 1;
    let tick = tick_where(
        &env,
        since,
        "a stream tick after the stream-only breach",
        |v| v["metric_mode"] == "stream",
    )
    .await;
    // a few more ticks: none of them may open it
    tick_where(&env, since + 3, "three ticks later", |v| {
        v["metric_mode"] == "stream"
    })
    .await;
    assert_eq!(
        alarm_ips(&env).await,
        Vec::<String>::new(),
        "a breach the store does not confirm opens nothing: {tick}"
    );
    assert!(
        metric(port, "monit_stream_unconfirmed_total{origin=\"pas\"}").await >= 1.0,
        "counted"
    );
    let unconfirmed = tick_where(&env, since, "unconfirmed in the summary", |v| {
        v["stream"]["confirmation"]["unconfirmed"]["pas"].as_u64() >= Some(1)
    })
    .await;
    assert!(unconfirmed["stream"]["confirmation"]["queries"].as_u64() >= Some(1));

    // a real breach, in the store and (through the subscription) in the stream
    writer.set("10.0.16.12", 97.0);
    let opened = tick_where(&env, now_s(), "the real breach opened", |v| {
        v["alarms"]["opened"].as_u64() >= Some(1)
    })
    .await;
    assert!(
        opened["stream"]["confirmation"]["confirmed"].as_u64() >= Some(1),
        "{opened}"
    );
    assert_eq!(
        alarm_ips(&env).await,
        vec!["pas 10.0.16.12 cpu".to_string()],
        "only the confirmed one"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let api = format!("{}-api", env.name);
    while common::mails_with("plain", &api).is_empty() {
        assert!(Instant::now() < deadline, "no mail for the real breach");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        common::mails_with("plain", &format!("{}-router", env.name)).is_empty(),
        "no mail for the stream-only breach"
    );
    drop(writer);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_went_quiet_reads_in_query_mode_without_a_false_fail() {
    let env = truth_env("truth_gap").await;
    let writer = Writer::start(
        &env.influx,
        &env.cf_db,
        &[("10.0.16.11", 10.0), ("10.0.16.12", 10.0)],
    );
    // the store has the VMs' points before the first tick (a warm-up tick queries it)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let port = free_port();
    let _batch = start(&env, port, true, &[THIRTY]);
    let subs = subscribe(&env, port, &[&env.cf_db]).await;
    tick_where(&env, now_s(), "a stream tick", |v| {
        v["metric_mode"] == "stream"
    })
    .await;
    // the delivery stops (subscription dropped) while the writers go on writing to InfluxDB,
    // for longer than the window (30 s); the tick 40 s in finds every VM silent in the stream (a
    // pipeline gap, before the quiet limit of two influx.bucket_seconds) and reads the store
    drop(subs);
    let stopped = now_s();
    let quiet = tick_where(&env, stopped + 40, "a tick 40 s into the gap", |v| {
        v["stream"].is_object()
    })
    .await;
    assert_eq!(quiet["metric_mode"], "stream-quiet", "{quiet}");
    assert_eq!(
        quiet["stream"]["modes"]["paasta"], "stream-quiet",
        "{quiet}"
    );
    assert_eq!(
        quiet["readings"]["paasta"], 6,
        "read from InfluxDB: {quiet}"
    );
    assert!(quiet["influx_queries"].as_u64() >= Some(1), "{quiet}");
    assert_eq!(alarm_ips(&env).await, Vec::<String>::new(), "no false fail");
    assert_eq!(
        metric(
            port,
            "monit_collector_metric_mode{collector=\"paasta\",mode=\"stream-quiet\"}"
        )
        .await,
        1.0
    );
    drop(writer);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reconciliation_reports_no_drift_when_both_agree_and_drift_when_they_differ() {
    let env = truth_env("truth_drift").await;
    let writer = Writer::start(
        &env.influx,
        &env.cf_db,
        &[("10.0.16.11", 10.0), ("10.0.16.12", 20.0)],
    );
    // the store has the VMs' points before the first tick (a warm-up tick queries it)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let port = free_port();
    let _batch = start(
        &env,
        port,
        true,
        &[THIRTY, ("MONIT_BATCH__STREAM__RECONCILE_EVERY", "1")],
    );
    let _subs = subscribe(&env, port, &[&env.cf_db]).await;
    // a write can be in InfluxDB a moment before its copy reaches the batch: some tick agrees
    let agree = tick_where(&env, now_s(), "a reconciled tick without drift", |v| {
        v["metric_mode"] == "stream" && v["stream"]["drift"]["pas"]["differing"] == 0
    })
    .await;
    let d = &agree["stream"]["drift"]["pas"];
    assert_eq!(d["compared"], 6, "{agree}");
    assert_eq!(d["max_mean_difference"], 0.0, "{agree}");
    // it ran beside the ticks, reading the store in queries of its own
    let r = &agree["stream"]["reconciliation"];
    assert_eq!(r["parts"], 1, "{agree}");
    assert!(r["store_queries"].as_u64() >= Some(1), "{agree}");
    // a point only the stream has, far from the others
    let t = now_s();
    let (code, _) = post(
        port,
        &format!("/write?db={}&precision=ns", env.cf_db),
        Some((USER, PASSWORD)),
        &[],
        format!(
            "cf_metrics,ip=10.0.16.11,metricname=cpuStats.0,origin=rep value=70 {}\n",
            t * 1_000_000_000 - 1_500_000_000
        )
        .into_bytes(),
    )
    .await;
    assert_eq!(code, 204);
    let drift = tick_where(&env, t + 1, "a reconciled tick with drift", |v| {
        v["stream"]["drift"]["pas"]["max_mean_difference"].as_f64() > Some(0.5)
    })
    .await;
    assert!(
        drift["stream"]["drift"]["pas"]["differing"].as_u64() >= Some(1),
        "{drift}"
    );
    assert_eq!(
        drift["metric_mode"], "stream",
        "the stream still drives the tick"
    );
    assert!(
        metric(
            port,
            "monit_stream_drift{origin=\"pas\",stat=\"max_mean_difference\"}"
        )
        .await
            > 0.0
    );
    drop(writer);
    env.cleanup().await;
}

#[tokio::test]
async fn influxdb_tells_its_subscription_write_drops() {
    let influx =
        monit_host::metric_store::influx::InfluxClient::new(&monit_host::config::InfluxSettings {
            url: common::influx_url(),
            ..Default::default()
        })
        .unwrap();
    let n = influx.sub_write_drop().await.unwrap();
    assert!(n >= 0, "{n}");
    // not a reading query: the tick's influx_queries stay 0 in a steady stream tick
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(influx.stats.queries.load(Relaxed), 0);
}

/// Reads the store's answer and the stream's until they agree or 30 s pass: the subscription
/// (or vmagent) delivers a moment after the store has the points. The caller asserts equality.
async fn read_until_equal<T: PartialEq>(mut read_both: impl AsyncFnMut() -> (T, T)) -> (T, T) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (a, b) = read_both().await;
        if a == b || Instant::now() > deadline {
            return (a, b);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Container lines of one app instance at time `t` (s): its CPU counter at `cores` of a core
/// since `t0`, memory at 30 % of its limit.
fn container_lines(app: &str, index: u32, cores: f64, t0: i64, t: i64) -> String {
    let tags = format!(
        "application_id=guid-{app},application_index={index},application_name={app},cell_ip=10.0.16.21,container_id=/garden/{app}-{index},container_interface={app}-{index},machine=cell"
    );
    let counter = 1000.0 + cores * (t - t0) as f64;
    [
        ("cpu_usage_total", counter),
        ("memory_usage", 0.3 * 1073741824.0),
        ("disk_usage", 1e8),
    ]
    .iter()
    .map(|(name, v)| {
        format!("container_metrics,{tags},name={name} app_mem=1073741824,app_disk=1073741824,value={v} {t}\n")
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scaler_reads_the_stream_and_acts_only_on_what_the_store_confirms() {
    use wiremock::matchers::{method, path_regex};
    use wiremock::{Mock, ResponseTemplate};
    let portal = common::portal_db(
        "stream_portal",
        "(1, 'guid-calm', 'org', 'space', 'calm', 1, 4, 5, 80, 10, 90, 60, 'Y', 'N'), \
         (2, 'guid-ghost', 'org', 'space', 'ghost', 1, 4, 5, 80, 10, 90, 60, 'Y', 'N')",
    )
    .await;
    // one instance each; no scale call
    let cc = common::cloud_controller().await;
    Mock::given(method("GET"))
        .and(path_regex("^/v3/apps/guid-[a-z]+/processes/web$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"guid": "p", "type": "web", "instances": 1, "memory_in_mb": 1024}),
        ))
        .mount(&cc)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("/actions/scale$"))
        .respond_with(ResponseTemplate::new(202))
        .expect(0)
        .mount(&cc)
        .await;
    let extra = format!(
        "[plugins.container]\nenabled = true\n{}",
        common::autoscale_section(&cc, &portal, "")
    );
    let env = TestEnv::new("stream_scale", &extra).await;
    env.exec("UPDATE alarm_policies SET measure_time = 30")
        .await;
    env.add_vm("cell/0", "10.0.16.21", "cel").await;
    let t0 = now_s() - 600;
    // calm at 10 % of a core, in the store (and so in the stream)
    let _calm = Writer::lines(&env.influx, &env.container_db, move |t| {
        container_lines("calm", 0, 0.1, t0, t)
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let port = free_port();
    let _batch = start(&env, port, true, &[THIRTY]);
    let _subs = subscribe(&env, port, &[&env.container_db]).await;
    // a stream tick, then one that decided on the stream (the scaler's window held)
    // after the containers' 90 s activity horizon
    tick_after(&env, now_s(), "stream").await;
    let steady = tick_where(&env, now_s() + 1, "a steady stream tick", |v| {
        v["metric_mode"] == "stream"
    })
    .await;
    assert_eq!(
        steady["influx_queries"], 0,
        "the scaler read calm's usage from the stream: {steady}"
    );
    let calm: String = sqlx::query_scalar(
        "SELECT reason FROM batch_scaling_history WHERE app_name = 'calm' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert!(!calm.starts_with("no_data"), "calm was measured: {calm}");

    // ghost at 95 % of a core, but only in the stream: posted to the batch, never to InfluxDB
    // (as if the stream had points the store lost): the store must confirm before a scale
    let container_db = env.container_db.clone();
    let http = reqwest::Client::new();
    let feed = tokio::spawn({
        let container_db = container_db.clone();
        async move {
            for _ in 0..150 {
                let t = now_s();
                let body: String = (t - 60..=t)
                    .step_by(2)
                    .map(|s| container_lines("ghost", 0, 0.95, t0, s))
                    .collect();
                let _ = http
                    .post(format!("http://127.0.0.1:{port}/write"))
                    .query(&[("db", container_db.as_str()), ("precision", "s")])
                    .basic_auth(USER, Some(PASSWORD))
                    .body(body)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let since = now_s() + 1;
    let deadline = Instant::now() + Duration::from_secs(90);
    let ghost_row: (String, String) = loop {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT outcome, reason FROM batch_scaling_history WHERE app_name = 'ghost' \
             AND decided_at >= FROM_UNIXTIME(?) AND reason NOT LIKE 'no_data: not enough%' ORDER BY id DESC LIMIT 1",
        )
        .bind(since + 4)
        .fetch_optional(&env.db)
        .await
        .unwrap();
        if let Some(r) = row {
            break r;
        }
        assert!(Instant::now() < deadline, "no decision about ghost");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    feed.abort();
    assert_ne!(ghost_row.0, "acted", "{ghost_row:?}");
    let confirmed = tick_where(&env, since, "a tick that confirmed in the store", |v| {
        v["metric_mode"] == "stream" && v["influx_queries"].as_u64().unwrap_or(0) > 0
    })
    .await;
    assert!(confirmed["influx_queries"].as_u64().unwrap() > 0);
    // the Cloud Controller was never asked to scale (expect(0))
    cc.verify().await;
    env.cleanup().await;
    portal.drop().await;
}
