//! VM metrics as both generations of PaaS-TA metric writers store them (spec 9.1, 9.2), read for
//! all VMs in ONE InfluxDB query per measurement and turned into per-resource usage buckets.
//!
//! Metric names read (either generation, whichever a VM reports):
//! * cpu: `cpuStats.<n>` (2.0/3.0) or `cpuStats.core.<n>` (newer agent); load averages excluded
//!   (defect D14); a bucket's CPU is the mean over cores.
//! * memory: `memoryStats.UsedPercent` when present, else `100 × (1 − Available/Total)`, else
//!   `100 × (1 − Free/Total)` (Free excludes cache and overstates use, so it comes last).
//! * disk: `diskStats.Usage` or `diskStats.<mount>.Usage`; a bucket's disk is the fullest mount,
//!   so a full data disk is not hidden by an empty root disk (defect D11).

use monit_host::influx::{InfluxClient, InfluxError, Series, ident, string};
use monit_host::model::Resource;
use std::collections::{BTreeMap, HashMap};

/// Usage over a window, from per-bucket means.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// mean of the bucket means
    pub mean: f64,
    /// highest bucket mean
    pub peak: f64,
    /// buckets that held data
    pub buckets: u32,
}

/// Stats of the buckets at or after `since` (epoch seconds); `None` when none has data.
pub fn stats_since(buckets: &BTreeMap<i64, f64>, since: i64) -> Option<Stats> {
    let vals: Vec<f64> = buckets
        .range(since..)
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .collect();
    if vals.is_empty() {
        return None;
    }
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    let peak = vals.iter().copied().fold(f64::MIN, f64::max);
    Some(Stats {
        mean,
        peak,
        buckets: vals.len() as u32,
    })
}

/// Per-resource buckets (bucket start, epoch seconds → percent) of one VM.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VmBuckets {
    pub cpu: BTreeMap<i64, f64>,
    pub memory: BTreeMap<i64, f64>,
    pub disk: BTreeMap<i64, f64>,
}

impl VmBuckets {
    pub fn get(&self, r: Resource) -> &BTreeMap<i64, f64> {
        match r {
            Resource::Cpu => &self.cpu,
            Resource::Memory => &self.memory,
            Resource::Disk => &self.disk,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.cpu.is_empty() && self.memory.is_empty() && self.disk.is_empty()
    }
}

/// A usage percentage outside this range is a broken writer, not a load: dropped, never alarmed.
pub const PERCENT: std::ops::RangeInclusive<f64> = 0.0..=101.0;

/// Points beyond this magnitude are left out in the query itself: two of them in one bucket make
/// InfluxDB 1.x's mean +Inf, which it cannot encode, and the whole answer would fail.
pub const VALUE_BOUND: &str = "1000000000000000.0";

pub const METRIC_REGEX: &str = r"/^(cpuStats\.(core\.)?[0-9]+|memoryStats\.(UsedPercent|TotalMemory|FreeMemory|AvailableMemory)|diskStats\.(.+\.)?Usage)$/";

/// The one query for a measurement: bucket means per `group_by` tag (if any) and metric name,
/// over `(end - window, end]` in absolute time, so a past `end` replays history (backtest).
#[derive(Clone, Copy, Debug)]
pub struct VmQuery<'a> {
    pub measurement: &'a str,
    /// an equality filter on one tag, e.g. `origin` = the BOSH service name
    pub filter: Option<(&'a str, &'a str)>,
    /// the tag that identifies a VM (`ip`); `None` folds every series into one
    pub group_by: Option<&'a str>,
    pub window_seconds: u64,
    pub bucket_seconds: u64,
    pub end_epoch: i64,
}

impl VmQuery<'_> {
    pub fn to_influxql(&self) -> String {
        let start = self.end_epoch - self.window_seconds.max(1) as i64;
        let mut q = format!(
            "SELECT mean(\"value\") FROM {} WHERE time > {start}s AND time <= {}s \
             AND \"value\" > -{VALUE_BOUND} AND \"value\" < {VALUE_BOUND} AND \"metricname\" =~ {}",
            ident(self.measurement),
            self.end_epoch,
            METRIC_REGEX
        );
        if let Some((tag, value)) = self.filter {
            q.push_str(&format!(" AND {} = {}", ident(tag), string(value)));
        }
        q.push_str(&format!(
            " GROUP BY time({}s), ",
            self.bucket_seconds.max(1)
        ));
        if let Some(tag) = self.group_by {
            q.push_str(&ident(tag));
            q.push_str(", ");
        }
        q.push_str("\"metricname\" fill(none)");
        q
    }

    /// Runs the query and folds the series into per-VM buckets keyed by the `group_by` tag
    /// value (`""` without grouping).
    pub async fn read(
        &self,
        influx: &InfluxClient,
        db: &str,
    ) -> Result<HashMap<String, VmBuckets>, InfluxError> {
        let series = influx.query(db, &self.to_influxql()).await?;
        Ok(fold(&series, self.group_by))
    }
}

#[derive(Default)]
struct Raw {
    cpu_sum: BTreeMap<i64, (f64, u32)>,
    used_percent: BTreeMap<i64, f64>,
    total: BTreeMap<i64, f64>,
    available: BTreeMap<i64, f64>,
    free: BTreeMap<i64, f64>,
    disk: BTreeMap<i64, f64>,
}

pub fn fold(series: &[Series], group_by: Option<&str>) -> HashMap<String, VmBuckets> {
    let mut raw: HashMap<String, Raw> = HashMap::new();
    for s in series {
        let key = group_by
            .and_then(|t| s.tag(t))
            .unwrap_or_default()
            .to_string();
        let Some(metric) = s.tag("metricname") else {
            continue;
        };
        let (Some(ti), Some(vi)) = (s.column("time"), s.column("mean")) else {
            continue;
        };
        let r = raw.entry(key).or_default();
        for row in &s.values {
            let (Some(t), Some(v)) = (
                row.get(ti).and_then(|c| c.as_f64()),
                row.get(vi).and_then(|c| c.as_f64()),
            ) else {
                continue;
            };
            let t = t as i64;
            if metric.starts_with("cpuStats.") {
                if !PERCENT.contains(&v) {
                    continue;
                }
                let e = r.cpu_sum.entry(t).or_insert((0.0, 0));
                e.0 += v;
                e.1 += 1;
            } else if metric == "memoryStats.UsedPercent" {
                if PERCENT.contains(&v) {
                    r.used_percent.insert(t, v);
                }
            } else if metric == "memoryStats.TotalMemory" {
                r.total.insert(t, v);
            } else if metric == "memoryStats.AvailableMemory" {
                r.available.insert(t, v);
            } else if metric == "memoryStats.FreeMemory" {
                r.free.insert(t, v);
            } else if metric.starts_with("diskStats.") && PERCENT.contains(&v) {
                let e = r.disk.entry(t).or_insert(f64::MIN);
                *e = e.max(v);
            }
        }
    }
    raw.into_iter()
        .map(|(k, r)| {
            let cpu = r
                .cpu_sum
                .iter()
                .map(|(t, (sum, n))| (*t, sum / *n as f64))
                .collect();
            let memory = if !r.used_percent.is_empty() {
                r.used_percent
            } else {
                let spare = if r.available.is_empty() {
                    &r.free
                } else {
                    &r.available
                };
                r.total
                    .iter()
                    .filter(|(_, total)| **total > 0.0)
                    .filter_map(|(t, total)| {
                        spare
                            .get(t)
                            .filter(|s| **s >= 0.0 && **s <= *total)
                            .map(|s| (*t, 100.0 * (1.0 - s / total)))
                    })
                    .collect()
            };
            let disk = r.disk;
            (k, VmBuckets { cpu, memory, disk })
        })
        .collect()
}

/// Readings of one target: a usage per resource with data in its window, or `NoData` when the
/// target reported nothing at all.
pub fn readings_for(
    target: &monit_host::model::Target,
    buckets: Option<&VmBuckets>,
    windows: &monit_host::plugin::Windows,
    now_epoch: i64,
) -> Vec<monit_host::model::Reading> {
    use monit_host::model::{Measured, Reading};
    let Some(b) = buckets.filter(|b| !b.is_empty()) else {
        return vec![Reading {
            target: target.clone(),
            value: Measured::NoData,
        }];
    };
    Resource::ALL
        .iter()
        .filter_map(|r| {
            let since = now_epoch - windows.get(target.origin, *r).as_secs() as i64;
            stats_since(b.get(*r), since).map(|s| Reading {
                target: target.clone(),
                value: Measured::Usage {
                    resource: *r,
                    mean: s.mean,
                    peak: s.peak,
                    buckets: s.buckets,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use monit_host::influx::Cell;

    fn series(ip: &str, metric: &str, points: &[(i64, f64)]) -> Series {
        Series {
            name: "cf_metrics".into(),
            tags: [
                ("ip".to_string(), ip.to_string()),
                ("metricname".to_string(), metric.to_string()),
            ]
            .into_iter()
            .collect(),
            columns: vec!["time".into(), "mean".into()],
            values: points
                .iter()
                .map(|(t, v)| vec![Cell::Number(*t as f64), Cell::Number(*v)])
                .collect(),
        }
    }

    #[test]
    fn both_writer_generations_fold_to_the_same_resources() {
        let s = vec![
            // 2.0/3.0 writer
            series("10.0.0.1", "cpuStats.0", &[(0, 80.0), (30, 90.0)]),
            series("10.0.0.1", "cpuStats.1", &[(0, 100.0), (30, 100.0)]),
            series("10.0.0.1", "memoryStats.UsedPercent", &[(0, 50.0)]),
            series("10.0.0.1", "diskStats.Usage", &[(0, 40.0)]),
            // newer agent
            series("10.0.0.2", "cpuStats.core.0", &[(0, 10.0)]),
            series("10.0.0.2", "memoryStats.TotalMemory", &[(0, 1000.0)]),
            series("10.0.0.2", "memoryStats.FreeMemory", &[(0, 100.0)]),
            series("10.0.0.2", "memoryStats.AvailableMemory", &[(0, 250.0)]),
            series("10.0.0.2", "diskStats./.Usage", &[(0, 30.0)]),
            series("10.0.0.2", "diskStats./var/vcap/data.Usage", &[(0, 87.0)]),
        ];
        let f = fold(&s, Some("ip"));
        let a = &f["10.0.0.1"];
        assert_eq!(a.cpu.get(&0), Some(&90.0));
        assert_eq!(a.cpu.get(&30), Some(&95.0));
        assert_eq!(a.memory.get(&0), Some(&50.0));
        assert_eq!(a.disk.get(&0), Some(&40.0));
        let b = &f["10.0.0.2"];
        assert_eq!(b.cpu.get(&0), Some(&10.0));
        assert_eq!(
            b.memory.get(&0),
            Some(&75.0),
            "Available is preferred over Free"
        );
        assert_eq!(b.disk.get(&0), Some(&87.0), "the fullest mount counts");
    }

    #[test]
    fn stats_are_time_weighted_and_windowed() {
        let b: BTreeMap<i64, f64> = [(0, 10.0), (30, 20.0), (60, 90.0)].into_iter().collect();
        let s = stats_since(&b, 0).unwrap();
        assert_eq!(s.mean, 40.0);
        assert_eq!(s.peak, 90.0);
        assert_eq!(s.buckets, 3);
        assert_eq!(stats_since(&b, 60).unwrap().mean, 90.0);
        assert!(stats_since(&b, 61).is_none());
    }

    #[test]
    fn query_escapes_config_values() {
        let q = VmQuery {
            measurement: "cf\"m",
            filter: Some(("origin", "micro'bosh")),
            group_by: Some("ip"),
            window_seconds: 600,
            bucket_seconds: 30,
            end_epoch: 1_000_000,
        }
        .to_influxql();
        assert!(q.contains("time > 999400s AND time <= 1000000s"), "{q}");
        assert!(q.contains(r#"FROM "cf\"m""#), "{q}");
        assert!(q.contains(r#""origin" = 'micro\'bosh'"#), "{q}");
        assert!(
            q.contains("GROUP BY time(30s), \"ip\", \"metricname\" fill(none)"),
            "{q}"
        );
    }
}
