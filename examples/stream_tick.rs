//! What a stream-mode tick costs the batch itself, without any server: the platform of
//! `scripts/bench` (the same series, tags and fields) is ingested as line protocol into the
//! window store for a 300 s window plus the retention margin, then the tick's collect and
//! evaluate stages run over it. Prints the ingest rate, each stage's wall time and the heap
//! (live bytes after ingest, the peak during a tick), counted by this example's allocator.
//!
//! ```sh
//! cargo run --release --example stream_tick -- 5000 100000 [TICKS] [all] [remote] [burst]
//! ```
//!
//! `all`: the collectors build every reading, the quiet ones too (as before the tick's
//! `QuietReadings`), to compare with. `remote`: the points arrive as vmagent remote-writes
//! them (one series per field, named `<measurement>_<field>{..., db}`, snappy-compressed), and
//! the ingest figure includes the decompression. `burst`: while the ticks run, a thread ingests
//! the last grid step's bodies over and over (a writer's burst landing on the tick).
//!
//! A figure to compare builds with, not a test: docs/benchmarks.md has the end-to-end runs.

// the two collectors read here register themselves when linked
use monit_plugin_container as _;
use monit_plugin_paasta as _;

use monit_host::evaluate::collect;
use monit_host::evaluate::engine::{EngineOptions, QuietReadings};
use monit_host::metric_store::MetricStore;
use monit_host::metric_store::stream::{IngestReport, StreamHandle, StreamState};
use monit_host::model::{Origin, Policy, Resource, Vm};
use monit_host::plugin::{CollectContext, Windows};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, counting bytes on the way
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Relaxed) + l.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const GRID: i64 = 30;
const WINDOW: u64 = 300;
const CF_DB: &str = "bench_cf";
const CON_DB: &str = "bench_con";

fn mb(b: usize) -> f64 {
    b as f64 / 1048576.0
}

struct Platform {
    vms: Vec<Vm>,
    cf: Vec<(String, f64)>,
    con: Vec<(String, f64, bool)>,
}

/// The platform of `scripts/bench` (its shapes; the values from a fixed arithmetic sequence).
fn platform(n_vms: usize, n_containers: usize) -> Platform {
    const JOBS: [&str; 6] = ["router", "api", "uaa", "doppler", "nats", "database"];
    let n_cells = (n_vms / 4).max(1);
    let mut vms = Vec::new();
    let mut cf = Vec::new();
    for i in 0..n_vms {
        let cell = i < n_cells;
        let zone = i % 3 + 1;
        let job = if cell {
            "diego-cell"
        } else {
            JOBS[i % JOBS.len()]
        };
        let ip = format!("10.{}.{}.{}", 16 + (i >> 16), (i >> 8) & 255, i & 255);
        vms.push(Vm {
            id: i as i64 + 1,
            zone_id: zone as i64,
            zone_name: Some(format!("z{zone}")),
            name: format!("{job}_z{zone}/{i}"),
            ip: ip.clone(),
            vm_type: if cell { "cel" } else { "vms" }.into(),
        });
        if i % 100 == 99 {
            continue; // silent
        }
        let origin = if cell { "rep" } else { job };
        let tags = format!(
            "cf_metrics,eventtype=ValueMetric,index=0,ip={ip},job={job},origin={origin},zone=z{zone},metricname="
        );
        let hot = i % 20 == 7;
        for c in 0..if cell { 4 } else { 2 } {
            let v = if hot { 93.0 } else { 5.0 + (i % 50) as f64 };
            cf.push((format!("{tags}cpuStats.{c} delta=0,total=0,value="), v));
        }
        cf.push((
            format!("{tags}memoryStats.UsedPercent delta=0,total=0,value="),
            20.0 + (i % 50) as f64,
        ));
        cf.push((
            format!("{tags}diskStats.Usage delta=0,total=0,value="),
            10.0 + (i % 60) as f64,
        ));
        cf.push((format!("{tags}numGoRoutines delta=0,total=0,value="), 120.0));
        cf.push((format!("{tags}loadavg1. delta=0,total=0,value="), 0.5));
    }
    let mut con = Vec::new();
    let (mut app, mut n) = (0usize, 0usize);
    while n < n_containers {
        let instances = [1, 1, 2, 2, 3, 4, 6][app % 7].min(n_containers - n);
        let guid = format!(
            "{:08x}-1111-4222-8333-{:012x}",
            app * 2654435761 % (1 << 32),
            app
        );
        let limit = [256u64, 512, 1024][app % 3] * 1048576;
        for index in 0..instances {
            let cell = &vms[n % n_cells];
            let iface = format!(
                "{:012x}-{index}",
                (n as u64).wrapping_mul(0x9E3779B97F4A7C15) >> 16
            );
            let tags = format!(
                "container_metrics,application_id={guid},application_index={index},application_name=app-{app:05},\
                 application_url=app-{app:05}.apps.example.io,cell_ip={},container_id=/garden/{:032x},\
                 container_interface={iface},machine={},name=",
                cell.ip,
                (n as u128).wrapping_mul(0x9E3779B97F4A7C15F39CC0605CEDC834),
                cell.name.replace('/', "-"),
            );
            let fields = format!(" app_disk=1073741824,app_mem={limit},value=");
            let hot = n % 20 == 3;
            con.push((
                format!("{tags}cpu_usage_total{fields}"),
                if hot { 0.95 } else { 0.2 },
                true,
            ));
            con.push((
                format!("{tags}memory_usage{fields}"),
                if hot { 0.92 } else { 0.4 } * limit as f64,
                false,
            ));
            con.push((
                format!("{tags}disk_usage{fields}"),
                0.3 * 1073741824.0,
                false,
            ));
            con.push((format!("{tags}load_average{fields}"), 0.3, false));
            n += 1;
        }
        app += 1;
    }
    Platform { vms, cf, con }
}

/// The lines of `body` as vmagent remote-writes them: a series per numeric field, named
/// `<measurement>_<field>`, its tags as labels in the line's order and the database last.
fn remote_write_body(db: &str, body: &str, now_ns: i64) -> Vec<u8> {
    use monit_wire::remote_write::proto;
    let label = |name: &str, value: &str| proto::Label {
        name: name.into(),
        value: value.into(),
    };
    let mut req = proto::WriteRequest::default();
    let lines = monit_wire::line::Lines::new(body.as_bytes(), now_ns)
        .precision(monit_wire::line::Precision::Seconds);
    for p in lines.flatten() {
        for (field, value) in p.numeric_fields() {
            let mut labels = vec![label(
                "__name__",
                &format!("{}_{}", p.measurement().unescaped(), field.unescaped()),
            )];
            labels.extend(
                p.tags()
                    .iter()
                    .map(|t| label(&t.key.unescaped(), &t.value.unescaped())),
            );
            labels.push(label("db", db));
            req.timeseries.push(proto::TimeSeries {
                labels,
                samples: vec![proto::Sample {
                    value,
                    timestamp: p.timestamp_ns() / 1_000_000,
                }],
            });
        }
    }
    monit_wire::remote_write::encode(&req)
}

/// A body of `lines` as the writer sends it: line protocol, or (`remote`) vmagent's remote write.
fn body_of(db: &str, lines: String, remote: bool, now_ns: i64) -> Vec<u8> {
    if remote {
        remote_write_body(db, &lines, now_ns)
    } else {
        lines.into_bytes()
    }
}

/// Stores a body of [`body_of`]; a remote write is decompressed first, as the endpoint does.
fn ingest_body(
    state: &StreamState,
    db: &str,
    body: &[u8],
    remote: bool,
    now_ns: i64,
) -> anyhow::Result<IngestReport> {
    Ok(if remote {
        let pb = monit_wire::remote_write::decompress(body, 64 << 20)?;
        state.ingest_remote_write(&pb, now_ns)
    } else {
        let precision = monit_wire::line::Precision::Seconds;
        state.ingest_lines(db, precision, body, now_ns)
    })
}

fn policies() -> Vec<Policy> {
    let mut out = Vec::new();
    for (i, origin) in [Origin::Pas, Origin::Bos, Origin::Con]
        .into_iter()
        .enumerate()
    {
        for (j, resource) in Resource::ALL.into_iter().enumerate() {
            out.push(Policy {
                id: (i * 3 + j) as i64 + 1,
                origin,
                resource,
                warning: 80.0,
                critical: 90.0,
                repeat_minutes: 10,
                measure_seconds: WINDOW,
            });
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n_vms: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let n_con: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10000);
    let ticks: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let flags: Vec<String> = args.collect();
    let all_readings = flags.iter().any(|a| a == "all");
    let remote = flags.iter().any(|a| a == "remote");
    let burst = flags.iter().any(|a| a == "burst");
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("monit-batch.toml");
    std::fs::write(
        &config,
        format!(
            "[monitoring_db]\nhost = \"127.0.0.1\"\ndbname = \"monit\"\nusername = \"monit\"\npassword = \"monit\"\n\
             [metrics]\nmode = \"stream\"\n[stream]\nusername = \"u\"\npassword = \"p\"\nmax_series = 2000000\n\
             [influx]\nurl = \"http://127.0.0.1:9\"\nbucket_seconds = 30\n\
             [plugins.paasta]\nenabled = true\ndb = \"{CF_DB}\"\n[plugins.container]\nenabled = true\ndb = \"{CON_DB}\"\n"
        ),
    )?;
    let settings = Arc::new(monit_host::plugin::load_settings(Some(&config))?);
    let plugins = monit_host::run::scheduler::build_plugins(&settings)?;
    let collectors: Vec<_> = plugins
        .iter()
        .filter_map(|p| p.parts.collector.clone().map(|c| (p.name, c)))
        .collect();
    let series: Vec<_> = collectors
        .iter()
        .flat_map(|(_, c)| c.stream_series(&settings))
        .collect();
    let state = Arc::new(StreamState::new(&settings.stream, &series));
    let plat = platform(n_vms, n_con);
    let now_s = chrono::Utc::now().timestamp() / GRID * GRID;
    let ns = |s: i64| s * 1_000_000_000;
    state.set_inventory(plat.vms.iter().map(|v| v.ip.as_str()));
    state.set_span(Duration::from_secs(WINDOW), ns(now_s));
    state.prune(ns(now_s));
    let before = LIVE.load(Relaxed);

    // ingest: 15 grid points (the window and the retention margin), 5,000 lines per body
    let grid: Vec<i64> = (0..15).rev().map(|k| now_s - k * GRID).collect();
    let (mut points, mut ingest) = (0usize, Duration::ZERO);
    let mut last_step: Vec<(&str, Vec<u8>)> = Vec::new();
    for (k, t) in grid.iter().enumerate() {
        for (db, lines) in [
            (
                CF_DB,
                plat.cf
                    .iter()
                    .enumerate()
                    .map(|(i, (p, v))| format!("{p}{:.2} {t}", v + ((i + k) % 5) as f64 * 0.1))
                    .collect::<Vec<_>>(),
            ),
            (
                CON_DB,
                plat.con
                    .iter()
                    .map(|(p, v, counter)| {
                        let v = if *counter {
                            1000.0 + v * (GRID * (k as i64 + 100)) as f64
                        } else {
                            *v
                        };
                        format!("{p}{v:.2} {t}")
                    })
                    .collect(),
            ),
        ] {
            for chunk in lines.chunks(5000) {
                let body = body_of(db, chunk.join("\n"), remote, ns(*t));
                let t0 = Instant::now();
                let r = ingest_body(&state, db, &body, remote, ns(*t))?;
                ingest += t0.elapsed();
                points += r.points as usize;
                if burst && k + 1 == grid.len() {
                    last_step.push((db, body));
                }
            }
        }
    }
    // the bodies kept for the burst are not the windows'
    let kept: usize = last_step.iter().map(|(_, b)| b.capacity()).sum();
    let windows_bytes = LIVE.load(Relaxed).saturating_sub(before + kept);
    println!(
        "{n_vms} VMs, {n_con} containers: {} series kept, {points} points stored in {:.2} s ({:.0} points/s of one core); windows {:.1} MB ({:.0} B per series)",
        state.windows().series_count(),
        ingest.as_secs_f64(),
        points as f64 / ingest.as_secs_f64(),
        mb(windows_bytes),
        windows_bytes as f64 / state.windows().series_count().max(1) as f64,
    );

    let query = MetricStore::new(
        settings.metrics.backend,
        &settings.influx,
        &settings.prometheus,
    )?;
    let store = MetricStore::Stream(StreamHandle {
        state: state.clone(),
        query: Box::new(query),
    });
    let policies = policies();
    let windows = Windows::from_policies(&policies, Duration::from_secs(WINDOW));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let now = chrono::DateTime::from_timestamp(now_s + 5, 0).unwrap_or_default();
    // no alarm is open: the readings under the thresholds are quiet
    let quiet = QuietReadings::new(&policies, &[]);
    let ctx = CollectContext {
        now,
        bucket_seconds: 30,
        metrics: &store,
        vms: &plat.vms,
        windows: &windows,
        targets: None,
        narrow_to_vms: false,
        quiet: (!all_readings).then_some(&quiet),
    };
    let readers: Vec<collect::Reader<'_, '_>> = collectors
        .iter()
        .map(|(name, c)| (*name, c.clone(), &ctx))
        .collect();
    let opts = EngineOptions {
        auto_resolve: monit_host::config::AutoResolve::Unclaimed,
        default_repeat_minutes: 10,
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = burst.then(|| {
        let (state, stop, t) = (state.clone(), stop.clone(), ns(now_s));
        std::thread::spawn(move || {
            let mut bodies = 0usize;
            while !stop.load(Relaxed) {
                for (db, body) in &last_step {
                    // the same bodies stored already: nothing can fail that did not before
                    let _ = ingest_body(&state, db, body, remote, t);
                    bodies += 1;
                }
            }
            bodies
        })
    });
    for round in 1..=ticks {
        let base = LIVE.load(Relaxed);
        PEAK.store(base, Relaxed);
        let t0 = Instant::now();
        let collected = rt.block_on(collect::readings(
            &readers,
            Duration::from_secs(300),
            0.5,
            &Default::default(),
        ));
        let t_collect = t0.elapsed();
        let (collect_peak, readings_bytes) = (PEAK.load(Relaxed), LIVE.load(Relaxed));
        let t1 = Instant::now();
        let changes =
            monit_host::evaluate::tick_changes(&policies, &[], &collected, &[], now, &opts);
        let t_eval = t1.elapsed();
        println!(
            "tick {round}: collect {:.3} s ({:?}), evaluate {:.3} s ({} changes); heap peak +{:.1} MB over the windows (collecting +{:.1} MB, the readings {:.1} MB)",
            t_collect.as_secs_f64(),
            collected.counts,
            t_eval.as_secs_f64(),
            changes.len(),
            mb(PEAK.load(Relaxed).saturating_sub(base)),
            mb(collect_peak.saturating_sub(base)),
            mb(readings_bytes.saturating_sub(base)),
        );
        anyhow::ensure!(collected.errors.is_empty(), "{:?}", collected.errors);
    }
    stop.store(true, Relaxed);
    if let Some(w) = writer {
        let bodies = w.join().unwrap_or_default();
        println!("burst: {bodies} bodies ingested beside the ticks");
    }
    Ok(())
}
