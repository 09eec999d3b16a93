//! The remote write decoder against a real vmagent (Debian's victoria-metrics package, installed by
//! scripts/services.sh): InfluxDB lines written to vmagent's `/write?db=...` come back to this
//! test's remote write endpoint as snappy protobuf, and decode to the series named as
//! `InfluxNaming` says, with the line's tags, values and timestamps.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use monit_wire::remote_write::{self, InfluxNaming, InfluxView};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::sync::mpsc;

/// The vmagent child, stopped when the test ends however it ends.
struct Vmagent(Child);

impl Drop for Vmagent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

type Received = (HeaderMap, Bytes);

/// Metric name -> (labels but `__name__` and `db`, samples as (value, ms)).
type Series = BTreeMap<String, (Vec<(String, String)>, Vec<(f64, i64)>)>;

async fn receive(
    State(tx): State<mpsc::UnboundedSender<Received>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let _ = tx.send((headers, body));
    StatusCode::NO_CONTENT
}

#[tokio::test]
async fn vmagent_remote_writes_influx_lines_as_this_decoder_reads_them() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/api/v1/write", post(receive))
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let _vmagent = Vmagent(
        Command::new("/usr/bin/vmagent")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-remoteWrite.url=http://{sink}/api/v1/write"))
            .arg(format!("-remoteWrite.tmpDataPath={}", tmp.path().display()))
            .arg("-remoteWrite.flushInterval=100ms")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("vmagent runs (scripts/services.sh installs victoria-metrics)"),
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..120 {
        if http
            .get(format!("{base}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(up, "vmagent on {base} did not come up in 30 s");

    let t = 1_700_000_000i64;
    let lines = format!(
        "cf_metrics,ip=10.0.16.11,metricname=cpuStats.core.0 value=93.5 {t}\n\
         container_metrics,application_name=spring-music,application_index=0,name=memory_usage app_mem=1073741824,app_disk=2i,value=95 {t}\n\
         bosh_metrics,origin=micro-bosh,ip=10.0.1.6,metricname=memoryStats.UsedPercent value=40 {}\n",
        t + 10
    );
    let r = http
        .post(format!("{base}/write"))
        .query(&[("db", "cf_metric_db"), ("precision", "s")])
        .body(lines)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "vmagent /write: {}", r.status());

    let mut got = Series::new();
    let measurements = ["cf_metrics", "container_metrics", "bosh_metrics"];
    let naming = InfluxNaming::new(&measurements);
    let mut views = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 5 {
        let (headers, body) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("vmagent sent only {got:?} in 30 s"))
            .expect("the sink is up");
        assert_eq!(
            headers
                .get("content-encoding")
                .and_then(|v| v.to_str().ok()),
            Some("snappy")
        );
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/x-protobuf")
        );
        let pb = remote_write::decompress(&body, 16 << 20).unwrap();
        for s in remote_write::series(&pb) {
            let s = s.unwrap();
            let name = s.name().unwrap().to_string();
            let all_labels: Vec<_> = s.labels().collect();
            // every series reads back as measurement, field and database
            let view = naming
                .view(&all_labels)
                .unwrap_or_else(|| panic!("{name} fits no measurement"));
            assert_eq!(view.db, Some("cf_metric_db"), "{name}");
            let field = name
                .strip_prefix(view.measurement)
                .and_then(|f| f.strip_prefix('_'));
            assert_eq!(view.field, field, "{name}");
            assert!(
                matches!(
                    view,
                    InfluxView {
                        field: Some("value" | "app_mem" | "app_disk"),
                        ..
                    }
                ),
                "{name}"
            );
            views += 1;
            let labels = naming
                .tags(&all_labels)
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect();
            let samples = s.samples().map(|x| (x.value, x.timestamp_ms)).collect();
            got.insert(name, (labels, samples));
        }
    }

    let ms = t * 1000;
    let s = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let container_tags = s(&[
        ("application_index", "0"),
        ("application_name", "spring-music"),
        ("name", "memory_usage"),
    ]);
    let want = BTreeMap::from([
        (
            "cf_metrics_value".to_string(),
            (
                s(&[("ip", "10.0.16.11"), ("metricname", "cpuStats.core.0")]),
                vec![(93.5, ms)],
            ),
        ),
        (
            "container_metrics_app_mem".to_string(),
            (container_tags.clone(), vec![(1_073_741_824.0, ms)]),
        ),
        (
            "container_metrics_app_disk".to_string(),
            (container_tags.clone(), vec![(2.0, ms)]),
        ),
        (
            "container_metrics_value".to_string(),
            (container_tags, vec![(95.0, ms)]),
        ),
        (
            "bosh_metrics_value".to_string(),
            (
                s(&[
                    ("ip", "10.0.1.6"),
                    ("metricname", "memoryStats.UsedPercent"),
                    ("origin", "micro-bosh"),
                ]),
                vec![(40.0, ms + 10_000)],
            ),
        ),
    ]);
    // vmagent sorts labels by name; compare as sets
    let sorted = |m: &Series| {
        m.iter()
            .map(|(k, (l, v))| {
                let mut l = l.clone();
                l.sort();
                (k.clone(), (l, v.clone()))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(sorted(&got), sorted(&want));
    assert!(views >= 5);
}
