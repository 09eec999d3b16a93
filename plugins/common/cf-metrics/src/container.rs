//! Container metrics (PaaS-TA cAdvisor, `container_metrics`): per-container CPU, memory and disk
//! usage over a window, in one InfluxDB query per series (three, sent at once) for all
//! containers. Shared by the container collector and autoscale.
//!
//! One statement reads every app container's `cpu_usage_total`, `memory_usage` and `disk_usage`,
//! cut into `bucket_seconds` buckets and grouped by the container's tags; the percentages are
//! computed here, so no value from the data is ever put back into a query (the original built
//! one query per container from tag values, unescaped: defects D17, D18).
//!
//! * CPU: `cpu_usage_total` is cumulative CPU seconds. The rate between two consecutive buckets
//!   that hold data is `(last_b - last_a) / (start_b - start_a) × 100`, percent of one core (it
//!   can exceed 100 on a multi-core app, as in the original). A decrease is a counter reset
//!   (restart): that interval is skipped, never read as negative. The window's mean is weighted
//!   by time (total increase / total elapsed), so a gap between flushes counts for its length.
//! * Memory and disk: `mean(value) / last(app_mem | app_disk) × 100` per bucket, then the mean of
//!   the bucket values. A limit that is missing or ≤ 0 (the 2020+ writer computes it in int32 and
//!   wraps at 2 GiB) makes that bucket unusable.
//!
//! A container whose newest point is older than [`active_horizon`] has stopped (crashed, moved,
//! scaled in): it is left out entirely, so an instance that is gone neither keeps an alarm alive
//! with its last values nor counts as a running instance.

use monit_host::influx::{InfluxClient, InfluxError, Series, ident};
use monit_host::model::{Resource, Timestamp};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `name` tag of the series read, as the PaaS-TA cAdvisor writes them.
pub const CPU_SERIES: &str = "cpu_usage_total";
pub const MEMORY_SERIES: &str = "memory_usage";
pub const DISK_SERIES: &str = "disk_usage";

/// Usage of one resource of one container over its window, in percent. For CPU, `peak` is the
/// highest rate between two buckets and `buckets` counts those intervals.
pub use crate::vm::Stats;

/// Where the container series are: the InfluxDB database and measurement, and the bucket width
/// the usage is cut into (`[influx] bucket_seconds`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSource {
    pub db: String,
    pub measurement: String,
    pub bucket_seconds: u64,
}

/// One app container seen in the window, with whatever usage its data allowed.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerUsage {
    pub cell_ip: String,
    /// `container_interface` tag: the container's key in the original
    pub container: String,
    /// `application_id` tag (the app guid); `None` when the writer left it out
    pub app_guid: Option<String>,
    pub app_name: String,
    /// `application_index` tag; 0 when it is not a number, as in the original
    pub app_index: i32,
    pub cpu: Option<Stats>,
    pub memory: Option<Stats>,
    pub disk: Option<Stats>,
}

impl ContainerUsage {
    pub fn stats(&self, resource: Resource) -> Option<Stats> {
        match resource {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
            Resource::Disk => self.disk,
        }
    }
}

/// The averaging window of each resource. One query covers the longest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageWindows {
    pub cpu: Duration,
    pub memory: Duration,
    pub disk: Duration,
}

impl UsageWindows {
    pub fn uniform(window: Duration) -> Self {
        Self {
            cpu: window,
            memory: window,
            disk: window,
        }
    }
    pub fn get(&self, resource: Resource) -> Duration {
        match resource {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
            Resource::Disk => self.disk,
        }
    }
    pub fn longest(&self) -> Duration {
        self.cpu.max(self.memory).max(self.disk)
    }
}

/// How recent a container's newest point must be for it to count as running. cAdvisor flushes
/// once per buffer period (60 s by default) and its points carry the server's receive time, so
/// 90 s (the original's discovery window) leaves half a period of slack; a wider bucket widens it.
pub fn active_horizon(bucket_seconds: u64) -> Duration {
    Duration::from_secs(90.max(bucket_seconds.max(1) * 3))
}

/// Reads the usage of every app container that reported within [`active_horizon`] of `now`:
/// three InfluxDB queries (one per series, sent at once), whatever the number of containers.
/// Each resource is averaged over its own window ending at `now`.
pub async fn read_container_usage(
    influx: &InfluxClient,
    source: &ContainerSource,
    windows: &UsageWindows,
    now: Timestamp,
) -> Result<Vec<ContainerUsage>, InfluxError> {
    let queries = usage_queries(source, windows, now);
    let answers =
        futures::future::join_all(queries.iter().map(|q| influx.query(&source.db, q))).await;
    let mut series = Vec::new();
    for a in answers {
        series.extend(a?);
    }
    usage_from_series(&series, source.bucket_seconds, windows, now).map_err(|message| {
        InfluxError::Decode {
            url: influx.url().to_string(),
            message: format!(
                "database {} measurement {}: {message}",
                source.db, source.measurement
            ),
        }
    })
}

/// Tags that identify one app container; a point without `application_name` is not an app's.
const GROUP_TAGS: [&str; 5] = [
    "cell_ip",
    "container_interface",
    "application_name",
    "application_index",
    "application_id",
];

/// The statements [`read_container_usage`] sends, one per series with only the aggregates that
/// series needs: InfluxDB 1.x's cost grows with aggregates x series, so one statement asking
/// every aggregate of all three series took 3.5 times as long as these three run side by side
/// (docs/benchmarks.md). They start one [`active_horizon`] before the longest window, so the
/// CPU rate of the window's first bucket has a predecessor.
pub fn usage_queries(
    source: &ContainerSource,
    windows: &UsageWindows,
    now: Timestamp,
) -> [String; 3] {
    let bucket = source.bucket_seconds.max(1);
    let span = effective(windows.longest(), bucket) + active_horizon(bucket).as_secs();
    let start = now.timestamp() - i64::try_from(span).unwrap_or(i64::MAX / 2);
    let group_by: Vec<String> = std::iter::once(ident("name"))
        .chain(GROUP_TAGS.iter().map(|t| ident(t)))
        .collect();
    let value = ident("value");
    let statement = |select: String, series: &str| {
        format!(
            "SELECT {select} FROM {measurement} \
             WHERE time > {start}s AND time <= {end}s \
             AND {value} > -{bound} AND {value} < {bound} AND {name} = '{series}' \
             AND {container_id} <> '/' AND {application_name} <> '' \
             GROUP BY time({bucket}s), {group_by} fill(none)",
            measurement = ident(&source.measurement),
            name = ident("name"),
            container_id = ident("container_id"),
            application_name = ident("application_name"),
            group_by = group_by.join(", "),
            end = now.timestamp(),
            bound = crate::vm::VALUE_BOUND,
        )
    };
    let with_limit = |limit: &str| {
        format!(
            "mean({value}) AS {}, last({}) AS {}",
            ident("mean"),
            ident(limit),
            ident(limit)
        )
    };
    [
        statement(format!("last({value}) AS {}", ident("last")), CPU_SERIES),
        statement(with_limit("app_mem"), MEMORY_SERIES),
        statement(with_limit("app_disk"), DISK_SERIES),
    ]
}

/// A window shorter than one bucket reads as one bucket.
fn effective(window: Duration, bucket: u64) -> u64 {
    window.as_secs().max(bucket)
}

#[derive(Default)]
struct Collected {
    /// (bucket start, last counter value)
    cpu: Vec<(i64, f64)>,
    /// (bucket start, percent)
    memory: Vec<(i64, f64)>,
    disk: Vec<(i64, f64)>,
    newest: i64,
}

static BAD_LIMIT_WARNED: AtomicBool = AtomicBool::new(false);

/// Turns the answers of [`usage_queries`] into per-container usage. Pure, for tests; the error
/// names what is wrong with the answer.
pub fn usage_from_series(
    series: &[Series],
    bucket_seconds: u64,
    windows: &UsageWindows,
    now: Timestamp,
) -> Result<Vec<ContainerUsage>, String> {
    let bucket = bucket_seconds.max(1);
    let width = i64::try_from(bucket).unwrap_or(i64::MAX / 4);
    let now_s = now.timestamp();
    let mut by_container: BTreeMap<[String; 5], Collected> = BTreeMap::new();
    let mut bad_limits = 0u32;
    for s in series {
        let col = |name: &str| {
            s.column(name)
                .ok_or_else(|| format!("series without column {name:?} (columns {:?})", s.columns))
        };
        // each statement asks only what its series needs
        let time = col("time")?;
        let (last, mean, app_mem, app_disk) = match s.tag("name") {
            Some(CPU_SERIES) => (Some(col("last")?), None, None, None),
            Some(MEMORY_SERIES) => (None, Some(col("mean")?), Some(col("app_mem")?), None),
            Some(DISK_SERIES) => (None, Some(col("mean")?), None, Some(col("app_disk")?)),
            _ => continue,
        };
        let key = GROUP_TAGS.map(|t| s.tag(t).unwrap_or_default().to_string());
        if key[2].is_empty() {
            continue;
        }
        let c = by_container.entry(key).or_default();
        for row in &s.values {
            let cell = |i: Option<usize>| i.and_then(|i| row.get(i)).and_then(|c| c.as_f64());
            let Some(start) = cell(Some(time)).map(|t| t as i64) else {
                continue;
            };
            let pct_of = |limit: Option<f64>, bad: &mut u32| -> Option<f64> {
                let used = cell(mean).filter(|v| *v >= 0.0)?;
                match limit {
                    Some(l) if l > 0.0 => {
                        Some(used / l * 100.0).filter(|p| crate::vm::PERCENT.contains(p))
                    }
                    _ => {
                        *bad += 1;
                        None
                    }
                }
            };
            let point = match s.tag("name") {
                Some(CPU_SERIES) => cell(last).map(|v| (&mut c.cpu, v)),
                Some(MEMORY_SERIES) => {
                    pct_of(cell(app_mem), &mut bad_limits).map(|v| (&mut c.memory, v))
                }
                Some(DISK_SERIES) => {
                    pct_of(cell(app_disk), &mut bad_limits).map(|v| (&mut c.disk, v))
                }
                _ => None,
            };
            c.newest = c.newest.max(start);
            if let Some((list, v)) = point {
                list.push((start, v));
            }
        }
    }
    if bad_limits > 0 {
        if !BAD_LIMIT_WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                buckets = bad_limits,
                "container metrics: app_mem/app_disk missing or <= 0 (the cAdvisor writer overflows int32 for limits of 2 GiB and more); those memory/disk values are skipped (logged once)"
            );
        } else {
            tracing::debug!(
                buckets = bad_limits,
                "container metrics: buckets skipped for a missing or non-positive app_mem/app_disk"
            );
        }
    }

    let horizon = i64::try_from(active_horizon(bucket).as_secs()).unwrap_or(i64::MAX / 4);
    let cutoff = |r: Resource| {
        let w = i64::try_from(effective(windows.get(r), bucket)).unwrap_or(i64::MAX / 4);
        // a bucket counts when any part of it lies in the window
        now_s.saturating_sub(w).saturating_sub(width)
    };
    let mut stale = 0u32;
    let mut out = Vec::new();
    for (key, mut c) in by_container {
        if c.newest + width <= now_s - horizon {
            stale += 1;
            continue;
        }
        for list in [&mut c.cpu, &mut c.memory, &mut c.disk] {
            list.sort_by_key(|(t, _)| *t);
        }
        // The newest bucket may still be filling: its last value sits earlier in it than in the
        // complete buckets, so a rate over bucket starts would read low. A rate ends in a
        // complete bucket only.
        if c.cpu.len() > 2 && c.cpu.last().is_some_and(|(t, _)| t + width > now_s) {
            c.cpu.pop();
        }
        let [cell_ip, container, app_name, app_index, app_guid] = key;
        let index = app_index.trim().parse::<i32>().unwrap_or_else(|_| {
            tracing::debug!(app = %app_name, container = %container, application_index = %app_index, "application_index is not a number: read as 0");
            0
        });
        out.push(ContainerUsage {
            cpu: counter_stats(&c.cpu, cutoff(Resource::Cpu)),
            memory: gauge_stats(&c.memory, cutoff(Resource::Memory)),
            disk: gauge_stats(&c.disk, cutoff(Resource::Disk)),
            cell_ip,
            container,
            app_guid: Some(app_guid).filter(|g| !g.is_empty()),
            app_name,
            app_index: index,
        });
    }
    tracing::debug!(containers = out.len(), stale, "container metrics read");
    Ok(out)
}

/// CPU percent from a cumulative counter: `buckets` are (bucket start, last counter value in
/// that bucket), sorted; only intervals ending in a bucket that starts after `cutoff` count.
pub fn counter_stats(buckets: &[(i64, f64)], cutoff: i64) -> Option<Stats> {
    let (mut increase, mut elapsed, mut peak, mut n) = (0.0, 0i64, f64::NEG_INFINITY, 0u32);
    for pair in buckets.windows(2) {
        let ((t0, v0), (t1, v1)) = (pair[0], pair[1]);
        let dt = t1 - t0;
        if t1 <= cutoff || dt <= 0 || v1 < v0 {
            continue;
        }
        let rate = (v1 - v0) / dt as f64 * 100.0;
        if !rate.is_finite() {
            continue;
        }
        increase += v1 - v0;
        elapsed += dt;
        peak = peak.max(rate);
        n += 1;
    }
    let mean = increase / elapsed as f64 * 100.0;
    (n > 0 && mean.is_finite()).then_some(Stats {
        mean,
        peak,
        buckets: n,
    })
}

/// Mean and peak of per-bucket percentages in buckets that start after `cutoff`.
pub fn gauge_stats(buckets: &[(i64, f64)], cutoff: i64) -> Option<Stats> {
    let values: Vec<f64> = buckets
        .iter()
        .filter(|(t, v)| *t > cutoff && v.is_finite())
        .map(|(_, v)| *v)
        .collect();
    let n = u32::try_from(values.len()).ok().filter(|n| *n > 0)?;
    let mean = values.iter().sum::<f64>() / f64::from(n);
    let peak = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(Stats {
        mean,
        peak,
        buckets: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use monit_host::influx::Cell;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn steady_counter_reads_its_rate() {
        // +9 CPU seconds every 30 s = 30% of one core
        let b: Vec<_> = (0..5).map(|i| (i * 30, 100.0 + 9.0 * i as f64)).collect();
        let s = counter_stats(&b, -1).unwrap();
        assert!(close(s.mean, 30.0) && close(s.peak, 30.0), "{s:?}");
        assert_eq!(s.buckets, 4);
    }

    #[test]
    fn counter_reset_is_skipped_not_negative() {
        // restart between 60 and 90: the counter starts again from 2
        let b = [(0, 100.0), (30, 106.0), (60, 112.0), (90, 2.0), (120, 8.0)];
        let s = counter_stats(&b, -1).unwrap();
        assert_eq!(s.buckets, 3);
        assert!(close(s.mean, 20.0) && close(s.peak, 20.0), "{s:?}");
    }

    #[test]
    fn a_single_bucket_has_no_rate() {
        assert_eq!(counter_stats(&[(0, 5.0)], -1), None);
        assert_eq!(counter_stats(&[], -1), None);
    }

    #[test]
    fn a_gap_counts_for_its_length() {
        // flushes 60 s apart (every other 30 s bucket empty), then one 30 s step
        let b = [(0, 0.0), (60, 12.0), (120, 24.0), (150, 36.0)];
        let s = counter_stats(&b, -1).unwrap();
        // 36 s of CPU over 150 s, time-weighted; the 30 s step at 40% is the peak
        assert!(close(s.mean, 24.0), "{s:?}");
        assert!(close(s.peak, 40.0), "{s:?}");
        assert_eq!(s.buckets, 3);
    }

    #[test]
    fn counter_window_uses_the_bucket_before_it() {
        let b = [(0, 0.0), (30, 3.0), (60, 12.0), (90, 21.0)];
        // cutoff 30: intervals ending at 60 and 90 count (the one ending at 30 does not), and
        // the bucket at 30 is still the predecessor of the one at 60
        let s = counter_stats(&b, 30).unwrap();
        assert_eq!(s.buckets, 2);
        assert!(close(s.mean, 30.0), "{s:?}");
    }

    #[test]
    fn flat_counter_is_zero_percent() {
        let s = counter_stats(&[(0, 7.0), (30, 7.0)], -1).unwrap();
        assert!(close(s.mean, 0.0) && close(s.peak, 0.0));
    }

    #[test]
    fn gauge_window_mean_and_peak() {
        let b = [(0, 10.0), (30, 50.0), (60, 70.0), (90, f64::NAN)];
        let s = gauge_stats(&b, 0).unwrap();
        assert_eq!(s.buckets, 2);
        assert!(close(s.mean, 60.0) && close(s.peak, 70.0), "{s:?}");
        assert_eq!(gauge_stats(&b, 60), None);
    }

    fn row(t: i64, last: f64, mean: f64, mem: Option<f64>, disk: Option<f64>) -> Vec<Cell> {
        let n = |v: Option<f64>| v.map(Cell::Number).unwrap_or(Cell::Null);
        vec![
            Cell::Number(t as f64),
            Cell::Number(last),
            Cell::Number(mean),
            n(mem),
            n(disk),
        ]
    }

    fn series(name: &str, app: &str, iface: &str, rows: Vec<Vec<Cell>>) -> Series {
        Series {
            name: "container_metrics".into(),
            tags: [
                ("name", name),
                ("cell_ip", "10.0.16.21"),
                ("container_interface", iface),
                ("application_name", app),
                ("application_index", "1"),
                ("application_id", "guid-1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            columns: ["time", "last", "mean", "app_mem", "app_disk"]
                .map(String::from)
                .to_vec(),
            values: rows,
        }
    }

    #[test]
    fn answer_to_usage() {
        let now = chrono::Utc.timestamp_opt(1_000_020, 0).unwrap();
        let lim = Some(1000.0);
        let cpu = (0..6)
            .map(|i| row(999_870 + 30 * i, 9.0 * i as f64, 0.0, lim, lim))
            .collect();
        let mem = vec![
            row(999_990, 0.0, 250.0, lim, lim),
            row(1_000_020, 0.0, 750.0, lim, lim),
        ];
        // a negative (wrapped) limit makes the disk bucket unusable
        let disk = vec![row(1_000_020, 0.0, 10.0, lim, Some(-2_147_483_648.0))];
        let all = [
            series(CPU_SERIES, "web", "c1", cpu),
            series(MEMORY_SERIES, "web", "c1", mem),
            series(DISK_SERIES, "web", "c1", disk),
            // no application_name: not an app container
            series(
                MEMORY_SERIES,
                "",
                "c2",
                vec![row(1_000_020, 0.0, 1.0, lim, lim)],
            ),
            // newest point far older than the active horizon: stopped
            series(
                MEMORY_SERIES,
                "gone",
                "c3",
                vec![row(999_000, 0.0, 900.0, lim, lim)],
            ),
        ];
        let w = UsageWindows::uniform(Duration::from_secs(600));
        let u = usage_from_series(&all, 30, &w, now).unwrap();
        assert_eq!(u.len(), 1, "{u:?}");
        let c = &u[0];
        assert_eq!(
            (c.app_name.as_str(), c.app_index, c.container.as_str()),
            ("web", 1, "c1")
        );
        assert_eq!(c.app_guid.as_deref(), Some("guid-1"));
        assert!(close(c.cpu.unwrap().mean, 30.0));
        assert!(close(c.memory.unwrap().mean, 50.0) && close(c.memory.unwrap().peak, 75.0));
        assert_eq!(c.disk, None);
    }

    #[test]
    fn missing_column_is_an_error() {
        let mut s = series(DISK_SERIES, "web", "c1", vec![]);
        s.columns.pop();
        let w = UsageWindows::uniform(Duration::from_secs(60));
        let e = usage_from_series(&[s], 30, &w, chrono::Utc::now()).unwrap_err();
        assert!(e.contains("app_disk"), "{e}");
    }

    #[test]
    fn query_escapes_the_measurement_and_spans_the_longest_window() {
        let source = ContainerSource {
            db: "container_metric_db".into(),
            measurement: r#"container "m""#.into(),
            bucket_seconds: 30,
        };
        let w = UsageWindows {
            cpu: Duration::from_secs(60),
            memory: Duration::from_secs(600),
            disk: Duration::from_secs(120),
        };
        let now = chrono::Utc.timestamp_opt(10_000, 0).unwrap();
        for q in usage_queries(&source, &w, now) {
            assert!(q.contains(r#"FROM "container \"m\"""#), "{q}");
            assert!(q.contains("time > 9310s"), "{q}"); // 600 s window + 90 s horizon
            assert!(q.contains("GROUP BY time(30s)"), "{q}");
            assert_eq!(q.matches("SELECT").count(), 1);
        }
    }
}
