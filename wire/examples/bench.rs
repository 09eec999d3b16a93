//! Throughput of the decoders on a realistic PaaS-TA body: 10,000 lines, half `cf_metrics` (tags
//! `ip`, `metricname`, one field), half `container_metrics` (8 tags, fields `app_mem`,
//! `app_disk`, `value`), as the writers send them; and the same points as a remote write body.
//!
//! `cargo run --release -p monit-wire --example bench` (a report, not a test: it asserts nothing
//! about speed). Each figure is the best of several rounds of at least 0.3 s.

use monit_wire::gzip;
use monit_wire::line::{Lines, Precision, Text};
use monit_wire::remote_write::{self, InfluxNaming, proto};
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

const LINES: usize = 10_000;
const T: i64 = 1_700_000_000;

fn body() -> String {
    let mut s = String::new();
    let metrics = [
        "cpuStats.core.0",
        "cpuStats.core.1",
        "memoryStats.UsedPercent",
        "memoryStats.TotalMemory",
        "diskStats./var/vcap/data.Usage",
    ];
    for i in 0..LINES / 2 {
        s += &format!(
            "cf_metrics,ip=10.0.{}.{},metricname={} value={}.{} {T}\n",
            16 + i / 250,
            i % 250,
            metrics[i % metrics.len()],
            i % 100,
            i % 7
        );
    }
    let names = [
        "cpu_usage_total",
        "memory_usage",
        "disk_usage",
        "load_average",
    ];
    for i in 0..LINES / 2 {
        let app = i / 8;
        s += &format!(
            "container_metrics,application_id={app:08x}-7e5d-4c1b-9c37-2a1f3b0d9e{:02x},\
             application_index={},application_name=app-{app},cell_ip=10.0.32.{},\
             container_id=/garden/{i:08x}-4d2c,container_interface={i:08x}-4d2c,machine=cell,\
             name={} app_mem=1073741824,app_disk=1073741824,value={} {T}\n",
            app % 256,
            i % 2,
            i % 200,
            names[i % names.len()],
            (i * 7919) % 1_000_000_000
        );
    }
    s
}

/// Best time per round of `f`, running rounds of at least `min` each.
fn best(min: Duration, mut f: impl FnMut()) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < min {
            f();
            n += 1;
        }
        best = best.min(start.elapsed() / n);
    }
    best
}

fn report(what: &str, items: usize, bytes: usize, per_round: Duration) {
    let s = per_round.as_secs_f64();
    println!(
        "{what:<52} {:>12.0} /s  {:>7.0} ns each  {:>7.1} MB/s",
        items as f64 / s,
        s * 1e9 / items as f64,
        bytes as f64 / s / 1e6
    );
}

fn main() {
    let body = body();
    let bytes = body.len();
    let min = Duration::from_millis(300);
    println!(
        "body: {LINES} lines, {bytes} bytes ({} bytes a line)",
        bytes / LINES
    );

    let t = best(min, || {
        let mut sum = 0.0;
        for p in Lines::new(body.as_bytes(), 0).precision(Precision::Seconds) {
            let p = p.unwrap();
            sum += p.fields()[0].value.as_f64().unwrap_or(0.0);
        }
        black_box(sum);
    });
    report("line protocol, every point parsed", LINES, bytes, t);

    let t = best(min, || {
        let mut sum = 0.0;
        let lines = Lines::new(body.as_bytes(), 0)
            .precision(Precision::Seconds)
            .numeric_only(true)
            .filter(|m: &Text<'_>| m.is("cf_metrics"));
        for p in lines {
            let p = p.unwrap();
            if p.tag("metricname").is_some_and(|m| m.is("cpuStats.core.0")) {
                sum += p.field("value").and_then(|v| v.as_f64()).unwrap_or(0.0);
            }
        }
        black_box(sum);
    });
    report("line protocol, cf_metrics only (filter)", LINES, bytes, t);

    let t = best(min, || {
        let mut sum = 0.0;
        let lines = Lines::new(body.as_bytes(), 0)
            .precision(Precision::Seconds)
            .filter(|m: &Text<'_>| m.is("container_metrics"));
        for p in lines {
            let p = p.unwrap();
            let app = p.tag("application_id").map(|t| t.raw().len()).unwrap_or(0);
            sum += app as f64 + p.field("value").and_then(|v| v.as_f64()).unwrap_or(0.0);
        }
        black_box(sum);
    });
    report(
        "line protocol, container_metrics only (filter)",
        LINES,
        bytes,
        t,
    );

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let t = best(min, || {
        black_box(gzip::decompress(&gz, 64 << 20).unwrap());
    });
    report(
        &format!("gzip inflate ({} bytes compressed)", gz.len()),
        LINES,
        bytes,
        t,
    );

    // The same points as vmagent remote-writes them: one series per field.
    let mut req = proto::WriteRequest::default();
    for p in Lines::new(body.as_bytes(), 0).precision(Precision::Seconds) {
        let p = p.unwrap();
        for f in p.fields() {
            let mut labels = vec![
                proto::Label {
                    name: "__name__".into(),
                    value: format!("{}_{}", p.measurement(), f.key),
                },
                proto::Label {
                    name: "db".into(),
                    value: "cf_metric_db".into(),
                },
            ];
            labels.extend(p.tags().iter().map(|t| proto::Label {
                name: t.key.to_string(),
                value: t.value.to_string(),
            }));
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            req.timeseries.push(proto::TimeSeries {
                labels,
                samples: vec![proto::Sample {
                    value: f.value.as_f64().unwrap_or(0.0),
                    timestamp: p.timestamp_ns() / 1_000_000,
                }],
            });
        }
    }
    let series = req.timeseries.len();
    let rw = remote_write::encode(&req);
    let pb_len = remote_write::decompress(&rw, 64 << 20).unwrap().len();
    println!(
        "remote write body: {series} series, {} bytes snappy, {pb_len} bytes protobuf",
        rw.len()
    );
    let measurements = ["cf_metrics", "container_metrics"];
    let naming = InfluxNaming::new(&measurements);
    let t = best(min, || {
        let pb = remote_write::decompress(&rw, 64 << 20).unwrap();
        let mut sum = 0.0;
        for s in remote_write::series(&pb) {
            let s = s.unwrap();
            let labels: Vec<_> = s.labels().collect();
            if let Some(v) = naming.view(&labels) {
                sum += v.measurement.len() as f64;
                sum += s.samples().map(|x| x.value).sum::<f64>();
            }
        }
        black_box(sum);
    });
    report(
        "remote write, snappy + every series read",
        series,
        pb_len,
        t,
    );

    let t = best(min, || {
        use prost::Message;
        let pb = remote_write::decompress(&rw, 64 << 20).unwrap();
        let req = proto::WriteRequest::decode(&pb[..]).unwrap();
        black_box(req.timeseries.len());
    });
    report(
        "  for comparison: prost into owned structs",
        series,
        pb_len,
        t,
    );
}
