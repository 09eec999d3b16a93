//! What a large Prometheus-API answer costs (issue 18, item 7): `run --once` of the real binary
//! against a local server that answers every `/api/v1/query` with one big valid instant vector,
//! most of whose VMs are not in the inventory. Their series are dropped as the answer is
//! decoded, so the process's peak memory does not follow the answer's size; the answer limit
//! still fails the step with an error naming the key.
//!
//! The store is a canned answer rather than VictoriaMetrics: a store answer of 64 MB takes
//! millions of series to build, and the point is what the batch does with the bytes.

mod common;

use common::TestEnv;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MB: usize = 1024 * 1024;
/// VMs of the answer that are in the inventory
const INVENTORY: usize = 100;

fn ip_of(n: usize) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// A valid answer of about `bytes` to any of the paasta reader's queries (one rollup each): per
/// VM two CPU cores, memory and disk, one sample each, all 20 (nothing breaches; as a point
/// count, 20 points). Returns it and the number of VMs in it (`10.0.0.1`, `10.0.0.2`, ...).
fn answer(bytes: usize) -> (Vec<u8>, usize) {
    let mut out = String::with_capacity(bytes + 4096);
    out.push_str(r#"{"status":"success","data":{"resultType":"vector","result":["#);
    let mut vms = 0;
    while out.len() < bytes {
        vms += 1;
        let ip = ip_of(vms);
        for metric in [
            "cpuStats.0",
            "cpuStats.1",
            "memoryStats.UsedPercent",
            "diskStats.Usage",
        ] {
            if !out.ends_with('[') {
                out.push(',');
            }
            out.push_str(&format!(
                r#"{{"metric":{{"ip":"{ip}","metricname":"{metric}"}},"value":[1800000000,"20"]}}"#
            ));
        }
    }
    out.push_str("]}}");
    (out.into_bytes(), vms)
}

/// Answers every request with `body`, one thread per connection, until dropped.
struct CannedStore {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl CannedStore {
    fn start(body: Vec<u8>) -> CannedStore {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let body = Arc::new(body);
        let halt = stop.clone();
        std::thread::spawn(move || {
            // bounded: the test stops it, and it gives up on its own after 10 minutes
            let started = Instant::now();
            while !halt.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(600) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let body = body.clone();
                        std::thread::spawn(move || serve(stream, &body));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        CannedStore { port, stop }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for CannedStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One request (head and form body read), then the answer and close.
fn serve(stream: std::net::TcpStream, body: &[u8]) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(&stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut form = vec![0u8; length];
    if reader.read_exact(&mut form).is_err() {
        return;
    }
    let mut w = &stream;
    let _ = write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = w.write_all(body);
}

struct Run {
    code: Option<i32>,
    peak_rss_kb: i64,
    summary: serde_json::Value,
    stderr: String,
}

/// `run --once --json` with the prometheus backend at `url`; its exit code and peak RSS.
///
/// The peak comes from `/usr/bin/time`, which forks the batch from its own small process: the
/// rusage of a child this test spawned itself would start from the test's own high-water mark
/// (Linux keeps it across the exec of a `posix_spawn`ed child), answer bodies included.
fn run_once(env: &TestEnv, url: &str, max_answer_bytes: usize) -> Run {
    let rss_file = env.dir.path().join("peak_rss_kb");
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(&env.config)
        .args(["run", "--once", "--json"])
        .env_remove("PORT")
        .env("MONIT_BATCH__METRICS__BACKEND", "prometheus")
        .env("MONIT_BATCH__PROMETHEUS__URL", url)
        .env("MONIT_BATCH__PROMETHEUS__TIMEOUT_SECONDS", "300")
        .env(
            "MONIT_BATCH__PROMETHEUS__MAX_ANSWER_BYTES",
            max_answer_bytes.to_string(),
        )
        .env("MONIT_BATCH__BATCH__STEP_TIMEOUT_SECONDS", "300")
        .env("MONIT_BATCH__LOG__LEVEL", "warn")
        .output()
        .unwrap_or_else(|e| panic!("/usr/bin/time: {e} (scripts/services.sh installs it)"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rss = std::fs::read_to_string(&rss_file).unwrap_or_default();
    // `time` writes "Command exited with non-zero status N" before the figure
    let peak_rss_kb = rss
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time: {rss:?}"));
    eprintln!(
        "--- run --once: {}, peak RSS {} MB\n{stdout}\n{stderr}",
        out.status,
        peak_rss_kb / 1024
    );
    Run {
        code: out.status.code(),
        peak_rss_kb,
        summary: serde_json::from_str(&stdout).unwrap_or_default(),
        stderr,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn series_of_vms_outside_the_inventory_cost_no_memory() {
    let env = TestEnv::new("prom_mem", "[plugins.paasta]\nenabled = true\n").await;
    for n in 1..=INVENTORY {
        env.add_vm(&format!("vm_{n}"), &ip_of(n), "vms").await;
    }
    let mut peaks = Vec::new();
    for size in [8 * MB, 64 * MB] {
        let (body, vms) = answer(size);
        let store = CannedStore::start(body);
        let run = tokio::task::block_in_place(|| run_once(&env, &store.url(), 256 * MB));
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(
            run.summary["readings"]["paasta"],
            3 * INVENTORY,
            "cpu, memory and disk of each inventory VM, however many VMs the answer holds"
        );
        assert_eq!(
            run.summary["influx_rows"],
            12 * 4 * vms,
            "every sample of the twelve answers (3 resources x 4 rollups) was read: {}",
            run.summary
        );
        peaks.push(run.peak_rss_kb);
    }
    // 56 MB more answer (×12 queries, 2 in flight); before issue 18 the process grew by 2.6 bytes per byte
    let grown_mb = (peaks[1] - peaks[0]) / 1024;
    assert!(
        grown_mb < 14,
        "peak RSS grew by {grown_mb} MB from an 8 MB to a 64 MB answer (peaks {peaks:?} kB)"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_inventory_vm_of_a_large_answer_is_read() {
    let (body, vms) = answer(8 * MB);
    let env = TestEnv::new("prom_mem_all", "[plugins.paasta]\nenabled = true\n").await;
    // the whole answer in the inventory, in one statement per 1,000 VMs
    env.exec("INSERT IGNORE INTO zones (id, name) VALUES (1, 'z1')")
        .await;
    let rows: Vec<String> = (1..=vms)
        .map(|n| format!("(1, 'vm_{n}', '{}', 'vms')", ip_of(n)))
        .collect();
    for chunk in rows.chunks(1000) {
        env.exec(&format!(
            "INSERT INTO vms (zone_id, name, ip, vm_type) VALUES {}",
            chunk.join(",")
        ))
        .await;
    }
    let store = CannedStore::start(body);
    let run = tokio::task::block_in_place(|| run_once(&env, &store.url(), 256 * MB));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.summary["readings"]["paasta"], 3 * vms);
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM alarms").await,
        0,
        "every value is 20 %: no alarm, and no VM without data"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_over_the_limit_fails_the_step_naming_the_key() {
    let (body, _) = answer(8 * MB);
    let env = TestEnv::new("prom_mem_limit", "[plugins.paasta]\nenabled = true\n").await;
    env.add_vm("vm_1", &ip_of(1), "vms").await;
    let store = CannedStore::start(body);
    let run = tokio::task::block_in_place(|| run_once(&env, &store.url(), MB));
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let errors = run.summary["errors"].to_string();
    assert!(
        errors.contains("prometheus.max_answer_bytes = 1048576")
            && errors.contains(&format!("{}/api/v1/query", store.url())),
        "{errors}"
    );
    assert_eq!(
        env.scalar_i64("SELECT COUNT(*) FROM alarms").await,
        0,
        "a failed read is neither a reading nor \"no data\""
    );
    env.cleanup().await;
}
