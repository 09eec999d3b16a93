//! VM metrics as both generations of PaaS-TA metric writers store them (spec 9.1, 9.2), read for
//! all VMs in ONE query per measurement (three statements, one per resource, each over its own
//! policy window) that returns ONE ROW PER SERIES: the store computes each series' window mean,
//! maximum, minimum and point count; only the fold across series (cores, memory metrics, mounts)
//! happens here. Either store: InfluxQL for InfluxDB 1.x, PromQL for a Prometheus-API store
//! (`avg_over_time`, `max_over_time`, `min_over_time`, `count_over_time`, one query per resource).
//!
//! Metric names read (either generation, whichever a VM reports):
//! * cpu: `cpuStats.<n>` (2.0/3.0) or `cpuStats.core.<n>` (newer agent); load averages excluded
//!   (defect D14); the VM's CPU is the mean over cores of each core's window mean, its peak the
//!   mean over cores of each core's highest point (never below the highest mean-over-cores).
//! * memory: `memoryStats.UsedPercent` when present, else `100 × (1 − Available/Total)`, else
//!   `100 × (1 − Free/Total)` (Free excludes cache and overstates use, so it comes last); the
//!   peak from the lowest Available (Free) point.
//! * disk: `diskStats.Usage` or `diskStats.<mount>.Usage`; the fullest mount counts, so a full
//!   data disk is not hidden by an empty root disk (defect D11).
//!
//! The peak (which decides recovery: the whole window under the warning threshold) is the
//! window's highest POINT, no longer the highest 30 s bucket mean: one row per series carries no
//! buckets. It is never lower than the old peak, so a recovery can only come later, not earlier.

use crate::container::UsageWindows;
use monit_host::metric_store::influx::{InfluxClient, InfluxError, Series, ident, string};
use monit_host::metric_store::prometheus::{self, PrometheusClient, Sample};
use monit_host::metric_store::stream::{StreamHandle, StreamSeries};
use monit_host::metric_store::{MetricStore, MetricStoreError};
use monit_host::model::Resource;
use std::collections::{HashMap, HashSet};

/// Usage over a window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// window mean
    pub mean: f64,
    /// highest point of the window (see the module doc for CPU)
    pub peak: f64,
    /// points (or bucket_seconds slots) that held data, at most the window's number of buckets
    pub buckets: u32,
}

/// Per-resource usage of one VM over each resource's window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VmUsage {
    pub cpu: Option<Stats>,
    pub memory: Option<Stats>,
    pub disk: Option<Stats>,
}

impl VmUsage {
    pub fn get(&self, r: Resource) -> Option<Stats> {
        match r {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
            Resource::Disk => self.disk,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none() && self.disk.is_none()
    }
}

/// A usage percentage outside this range is a broken writer, not a load: dropped, never alarmed.
pub const PERCENT: std::ops::RangeInclusive<f64> = 0.0..=101.0;

/// Points beyond this magnitude are left out in the query itself: two of them in one window make
/// InfluxDB 1.x's mean +Inf, which it cannot encode, and the whole answer would fail.
/// Written with one decimal (`{VALUE_BOUND:.1}`) so InfluxQL reads it as a float.
pub const VALUE_BOUND: f64 = 1e15;

/// The metric names of each resource, as a regular expression (anchored in both languages).
pub fn metric_regex(r: Resource) -> &'static str {
    match r {
        Resource::Cpu => r"cpuStats\.(core\.)?[0-9]+",
        Resource::Memory => r"memoryStats\.(UsedPercent|TotalMemory|FreeMemory|AvailableMemory)",
        Resource::Disk => r"diskStats\.(.+\.)?Usage",
    }
}

/// The resource a metric name belongs to, by [`metric_regex`] (anchored, as the queries use it).
pub fn resource_of(metric: &str) -> Option<Resource> {
    static RES: std::sync::LazyLock<Vec<(Resource, Option<regex::Regex>)>> =
        std::sync::LazyLock::new(|| {
            Resource::ALL
                .iter()
                .map(|r| {
                    (
                        *r,
                        regex::Regex::new(&format!("^(?:{})$", metric_regex(*r))).ok(),
                    )
                })
                .collect()
        });
    RES.iter()
        .find(|(_, re)| re.as_ref().is_some_and(|re| re.is_match(metric)))
        .map(|(r, _)| *r)
}

/// The series a VM reader reads in `db`.`measurement`, for stream mode: those whose
/// `metricname` one of the queries selects. `tags`: the tags the reader filters or groups on
/// ([`VmQuery::filter`], [`VmQuery::group_by`]); `inventory_tag`: the tag holding a VM's
/// address when the reader reads only the inventory's VMs.
pub fn stream_series(
    db: &str,
    measurement: &str,
    tags: &[&str],
    inventory_tag: Option<&'static str>,
) -> StreamSeries {
    StreamSeries {
        db: db.to_string(),
        measurement: measurement.to_string(),
        name_tag: "metricname",
        names: std::sync::Arc::new(|name: &str| resource_of(name).map(|_| None)),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        excluded: Vec::new(),
        inventory_tag,
        min_span: std::time::Duration::ZERO,
    }
}

/// The point filter of the queries (`VALUE_BOUND`, and percentages for cpu and disk).
fn point_counts(r: Resource, v: f64) -> bool {
    v > -VALUE_BOUND && v < VALUE_BOUND && (r == Resource::Memory || (0.0..=101.0).contains(&v))
}

/// The one query for a measurement: per `group_by` tag (if any) and metric name, each
/// resource's aggregates over `(end - window, end]` in absolute time, so a past `end` replays
/// history (backtest).
#[derive(Clone, Copy, Debug)]
pub struct VmQuery<'a> {
    /// InfluxDB database (a `db` label in a Prometheus-API store fed by `/write?db=`)
    pub db: &'a str,
    pub measurement: &'a str,
    /// an equality filter on one tag, e.g. `origin` = the BOSH service name
    pub filter: Option<(&'a str, &'a str)>,
    /// the tag that identifies a VM (`ip`); `None` folds every series into one
    pub group_by: Option<&'a str>,
    pub windows: UsageWindows,
    pub bucket_seconds: u64,
    pub end_epoch: i64,
}

/// A series' aggregates over its window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeriesAgg {
    pub mean: f64,
    pub max: f64,
    pub min: f64,
    pub count: f64,
}

impl SeriesAgg {
    /// Nothing read yet: the Prometheus API sends the four aggregates as separate samples.
    const UNSET: SeriesAgg = SeriesAgg {
        mean: f64::NAN,
        max: f64::NAN,
        min: f64::NAN,
        count: f64::NAN,
    };

    /// Folds another row of the same series in (a store that splits an answer in chunks, or a
    /// row per bucket): count-weighted mean, extremes of both.
    fn merge(&mut self, o: SeriesAgg) {
        let n = self.count + o.count;
        if n > 0.0 {
            self.mean = (self.mean * self.count + o.mean * o.count) / n;
        }
        self.max = self.max.max(o.max);
        self.min = self.min.min(o.min);
        self.count = n;
    }
}

/// Strings seen in an answer, each kept once and named by a number.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
        self.ids.insert(s.to_string(), id);
        id
    }
    /// The strings, indexed by id.
    fn into_vec(self) -> Vec<String> {
        let mut out = vec![String::new(); self.ids.len()];
        for (s, id) in self.ids {
            if let Some(slot) = out.get_mut(id as usize) {
                *slot = s;
            }
        }
        out
    }
}

/// The per-series aggregates of an answer, folded in as each sample (Prometheus API) or series
/// (InfluxDB) is decoded. A series of a VM the reader does not want (`wanted`: the inventory)
/// is dropped there and then, so what is kept follows the wanted VMs, never the size of the
/// answer: VM keys and metric names are kept once each, a series costs its numbers.
pub struct AggregateFold<'w> {
    group_by: Option<&'w str>,
    wanted: Option<&'w HashSet<&'w str>>,
    keys: Interner,
    metrics: Interner,
    series: HashMap<(u32, u32), SeriesAgg>,
    /// samples (or rows) of VMs not wanted
    pub dropped: u64,
}

impl<'w> AggregateFold<'w> {
    /// Keyed by the `group_by` tag (`""` without grouping); only the keys in `wanted` when given.
    pub fn new(group_by: Option<&'w str>, wanted: Option<&'w HashSet<&'w str>>) -> Self {
        Self {
            group_by,
            wanted,
            keys: Interner::default(),
            metrics: Interner::default(),
            series: HashMap::new(),
            dropped: 0,
        }
    }

    /// The slot of (key, metric), or `None` when the key is not wanted.
    fn slot(&mut self, key: &str, metric: &str) -> Option<&mut SeriesAgg> {
        if self.wanted.is_some_and(|w| !w.contains(key)) {
            self.dropped += 1;
            return None;
        }
        let k = self.keys.id(key);
        let m = self.metrics.id(metric);
        Some(self.series.entry((k, m)).or_insert(SeriesAgg::UNSET))
    }

    /// One sample of the PromQL of [`VmQuery::to_promql`]: one aggregate of one series, named
    /// by its `monit_agg` label.
    pub fn add_sample(&mut self, s: &Sample) {
        let agg = s.label("monit_agg");
        if !matches!(agg, "avg" | "max" | "min" | "count") {
            return;
        }
        let key = self.group_by.map(|t| s.label(t)).unwrap_or_default();
        let Some(slot) = self.slot(key, s.label("metricname")) else {
            return;
        };
        match agg {
            "avg" => slot.mean = s.value,
            "max" => slot.max = s.value,
            "min" => slot.min = s.value,
            _ => slot.count = s.value,
        }
    }

    /// One series of an InfluxDB answer of [`VmQuery::to_influxql`]. Rows without a usable
    /// `mean` are skipped; a missing `max`/`min` reads as the mean and a missing `count` as 1,
    /// so an answer with a row per bucket folds to the same window figures.
    pub fn add_series(&mut self, s: &Series) {
        let Some(metric) = s.tag("metricname") else {
            return;
        };
        let Some(mi) = s.column("mean") else {
            return;
        };
        let key = self.group_by.and_then(|t| s.tag(t)).unwrap_or_default();
        if self.wanted.is_some_and(|w| !w.contains(key)) {
            self.dropped += s.values.len() as u64;
            return;
        }
        let (max_i, min_i, count_i) = (s.column("max"), s.column("min"), s.column("count"));
        for row in &s.values {
            let Some(mean) = row.get(mi).and_then(|c| c.as_f64()) else {
                continue;
            };
            let col = |i: Option<usize>| i.and_then(|i| row.get(i)).and_then(|c| c.as_f64());
            let agg = SeriesAgg {
                mean,
                max: col(max_i).unwrap_or(mean).max(mean),
                min: col(min_i).unwrap_or(mean).min(mean),
                count: col(count_i).filter(|c| *c >= 1.0).unwrap_or(1.0),
            };
            let Some(slot) = self.slot(key, metric) else {
                return;
            };
            if slot.count.is_nan() {
                *slot = agg;
            } else {
                slot.merge(agg);
            }
        }
    }

    /// The aggregates of one (key, metric), computed elsewhere (stream mode).
    pub fn add_agg(&mut self, key: &str, metric: &str, agg: SeriesAgg) {
        let Some(slot) = self.slot(key, metric) else {
            return;
        };
        if slot.count.is_nan() {
            *slot = agg;
        } else {
            slot.merge(agg);
        }
    }

    /// Per-VM usage: the fold across cores, memory metrics and mounts.
    pub fn usage(self, bucket_seconds: u64, windows: &UsageWindows) -> HashMap<String, VmUsage> {
        let keys = self.keys.into_vec();
        let metrics = self.metrics.into_vec();
        let mut raw: Vec<Raw> = Vec::new();
        raw.resize_with(keys.len(), Raw::default);
        for ((k, m), a) in self.series {
            let (Some(r), Some(metric)) = (raw.get_mut(k as usize), metrics.get(m as usize)) else {
                continue;
            };
            r.add(metric, &a);
        }
        keys.into_iter()
            .zip(raw)
            .map(|(k, r)| (k, r.usage(bucket_seconds, windows)))
            .collect()
    }
}

impl VmQuery<'_> {
    fn window(&self, r: Resource) -> i64 {
        i64::try_from(self.windows.get(r).as_secs().max(1)).unwrap_or(i64::MAX / 4)
    }

    /// Three InfluxQL statements (cpu, memory, disk), sent as one query.
    pub fn to_influxql(&self) -> String {
        self.to_influxql_of(None)
    }

    /// [`VmQuery::to_influxql`] narrowed to the `group_by` values in `only` (a regular
    /// expression of the escaped values), so the store reads just those VMs' series.
    pub fn to_influxql_of(&self, only: Option<&HashSet<&str>>) -> String {
        Resource::ALL
            .iter()
            .map(|r| self.influxql_statement(*r, only))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn influxql_statement(&self, r: Resource, only: Option<&HashSet<&str>>) -> String {
        let start = self.end_epoch - self.window(r);
        let value = ident("value");
        let mut q = format!(
            "SELECT mean({value}) AS \"mean\", max({value}) AS \"max\", min({value}) AS \"min\", \
             count({value}) AS \"count\" FROM {} WHERE time > {start}s AND time <= {}s \
             AND {value} > -{VALUE_BOUND:.1} AND {value} < {VALUE_BOUND:.1} AND \"metricname\" =~ /^{}$/",
            ident(self.measurement),
            self.end_epoch,
            metric_regex(r).replace('/', r"\/"),
        );
        // percentages are checked per point where the store can (not memory: its series hold bytes)
        if r != Resource::Memory {
            q.push_str(&format!(" AND {value} >= 0 AND {value} <= 101"));
        }
        if let Some((tag, v)) = self.filter {
            q.push_str(&format!(" AND {} = {}", ident(tag), string(v)));
        }
        if let (Some(tag), Some(only)) = (self.group_by, only) {
            q.push_str(&format!(
                " AND {} =~ /^({})$/",
                ident(tag),
                alternation(only).replace('/', r"\/")
            ));
        }
        q.push_str(" GROUP BY ");
        if let Some(tag) = self.group_by {
            q.push_str(&ident(tag));
            q.push_str(", ");
        }
        q.push_str("\"metricname\"");
        q
    }

    /// One PromQL query per resource: the four aggregates of every series, told apart by a
    /// `monit_agg` label. `db_label` names the label holding the InfluxDB database (empty: none).
    pub fn to_promql(&self, r: Resource, db_label: &str) -> String {
        self.to_promql_of(r, db_label, None)
    }

    /// [`VmQuery::to_promql`] narrowed to the `group_by` values in `only`.
    pub fn to_promql_of(
        &self,
        r: Resource,
        db_label: &str,
        only: Option<&HashSet<&str>>,
    ) -> String {
        let mut sel = format!(
            "{{__name__={}, metricname=~{}",
            prometheus::string(&format!("{}_value", self.measurement)),
            prometheus::string(metric_regex(r)),
        );
        if !db_label.is_empty() {
            sel.push_str(&format!(", {db_label}={}", prometheus::string(self.db)));
        }
        if let Some((tag, v)) = self.filter {
            sel.push_str(&format!(", {tag}={}", prometheus::string(v)));
        }
        if let (Some(tag), Some(only)) = (self.group_by, only) {
            // PromQL anchors label regular expressions itself
            sel.push_str(&format!(
                ", {tag}=~{}",
                prometheus::string(&alternation(only))
            ));
        }
        sel.push('}');
        let w = self.window(r);
        // only the labels the fold needs come back: one sample per (VM, metric name)
        let by = match self.group_by {
            Some(tag) => format!("{tag}, metricname"),
            None => "metricname".to_string(),
        };
        ["avg", "max", "min", "count"]
            .iter()
            .map(|f| {
                format!(
                    "label_replace(max by ({by}) ({f}_over_time({sel}[{w}s])), \"monit_agg\", \"{f}\", \"\", \"\")"
                )
            })
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// Reads every VM's usage from the configured store, keyed by the `group_by` tag value
    /// (`""` without grouping).
    pub async fn read(
        &self,
        store: &MetricStore,
    ) -> Result<HashMap<String, VmUsage>, MetricStoreError> {
        self.read_folded(store, None, false).await
    }

    /// [`VmQuery::read`] for the `group_by` values in `wanted` only (the inventory's IPs): the
    /// other VMs' series are dropped while the answer is decoded.
    pub async fn read_only(
        &self,
        store: &MetricStore,
        wanted: &HashSet<&str>,
    ) -> Result<HashMap<String, VmUsage>, MetricStoreError> {
        self.read_folded(store, Some(wanted), false).await
    }

    /// [`VmQuery::read_only`] with the query itself narrowed to the `wanted` VMs: what the store
    /// reads follows their number, not the fleet's (stream mode's confirmation of new alarms).
    pub async fn read_targets(
        &self,
        store: &MetricStore,
        wanted: &HashSet<&str>,
    ) -> Result<HashMap<String, VmUsage>, MetricStoreError> {
        if wanted.is_empty() {
            return Ok(HashMap::new());
        }
        self.read_folded(store, Some(wanted), true).await
    }

    async fn read_folded(
        &self,
        store: &MetricStore,
        wanted: Option<&HashSet<&str>>,
        narrow: bool,
    ) -> Result<HashMap<String, VmUsage>, MetricStoreError> {
        let mut fold = AggregateFold::new(self.group_by, wanted);
        let only = wanted.filter(|_| narrow);
        match store {
            MetricStore::Influx(c) => self.read_influx(c, &mut fold, only).await?,
            MetricStore::Prometheus(c) => self.read_prometheus(c, &mut fold, only).await?,
            MetricStore::Stream(h) => self.read_stream(h, &mut fold),
        }
        if fold.dropped > 0 {
            metrics::counter!("monit_metric_samples_dropped_total", "reader" => "vm")
                .increment(fold.dropped);
            tracing::debug!(
                measurement = self.measurement,
                dropped = fold.dropped,
                "series of VMs not in the inventory dropped while decoding"
            );
        }
        Ok(fold.usage(self.bucket_seconds, &self.windows))
    }

    /// The statements' aggregates from the stream's windows: the same points (time range,
    /// metric names, tag filter, value bounds) summed in time order, as InfluxDB does.
    fn read_stream(&self, h: &StreamHandle, fold: &mut AggregateFold<'_>) {
        #[derive(Default)]
        struct Acc {
            sum: f64,
            count: u64,
            max: f64,
            min: f64,
        }
        let end_ns = self.end_epoch.saturating_mul(1_000_000_000);
        let windows = h.state.windows();
        let mut acc: rustc_hash::FxHashMap<(&str, &str), Acc> = Default::default();
        for s in windows.series_of(self.db, self.measurement) {
            let Some(metric) = s.tag("metricname") else {
                continue;
            };
            let Some(r) = resource_of(metric) else {
                continue;
            };
            if let Some((tag, want)) = self.filter
                && s.tag(tag).unwrap_or_default() != want
            {
                continue;
            }
            let key = self.group_by.and_then(|t| s.tag(t)).unwrap_or_default();
            let start_ns = end_ns.saturating_sub(self.window(r).saturating_mul(1_000_000_000));
            for p in s.points(start_ns, end_ns) {
                if !point_counts(r, p.value) {
                    continue;
                }
                let a = acc.entry((key, metric)).or_insert(Acc {
                    max: f64::NEG_INFINITY,
                    min: f64::INFINITY,
                    ..Default::default()
                });
                a.sum += p.value;
                a.count += 1;
                a.max = a.max.max(p.value);
                a.min = a.min.min(p.value);
            }
        }
        for ((key, metric), a) in acc {
            let count = a.count as f64;
            fold.add_agg(
                key,
                metric,
                SeriesAgg {
                    mean: a.sum / count,
                    max: a.max,
                    min: a.min,
                    count,
                },
            );
        }
    }

    async fn read_influx(
        &self,
        influx: &InfluxClient,
        fold: &mut AggregateFold<'_>,
        only: Option<&HashSet<&str>>,
    ) -> Result<(), InfluxError> {
        influx
            .query_fold(self.db, &self.to_influxql_of(only), |s| fold.add_series(&s))
            .await?;
        Ok(())
    }

    async fn read_prometheus(
        &self,
        c: &PrometheusClient,
        fold: &mut AggregateFold<'_>,
        only: Option<&HashSet<&str>>,
    ) -> Result<(), MetricStoreError> {
        for tag in self.filter.map(|f| f.0).into_iter().chain(self.group_by) {
            if !prometheus::is_label_name(tag) {
                return Err(prometheus::PrometheusError::Setup(format!(
                    "{tag:?} is not a Prometheus label name"
                ))
                .into());
            }
        }
        let queries: Vec<String> = Resource::ALL
            .iter()
            .map(|r| self.to_promql_of(*r, c.db_label(), only))
            .collect();
        // the three answers arrive side by side into one fold (the lock is never contended
        // for long: one sample at a time)
        let shared = std::sync::Mutex::new(fold);
        let answers = futures::future::join_all(queries.iter().map(|q| {
            c.query_fold(q, self.end_epoch, |s: Sample| {
                if let Ok(mut f) = shared.lock() {
                    f.add_sample(&s);
                }
            })
        }))
        .await;
        for a in answers {
            a?;
        }
        Ok(())
    }
}

/// `a|b|c` of the values, each escaped so it matches only itself (sorted: one query text per set).
fn alternation(values: &HashSet<&str>) -> String {
    let mut v: Vec<String> = values.iter().map(|s| regex::escape(s)).collect();
    v.sort();
    v.join("|")
}

/// InfluxDB answer → per-VM usage (tests and the fuzz target).
pub fn fold(series: &[Series], group_by: Option<&str>) -> HashMap<String, VmUsage> {
    let mut f = AggregateFold::new(group_by, None);
    for s in series {
        f.add_series(s);
    }
    f.usage(
        30,
        &UsageWindows::uniform(std::time::Duration::from_secs(600)),
    )
}

#[derive(Default)]
pub(crate) struct Raw {
    /// per core: (mean, max, count)
    cpu: Vec<SeriesAgg>,
    used_percent: Option<SeriesAgg>,
    total: Option<SeriesAgg>,
    available: Option<SeriesAgg>,
    free: Option<SeriesAgg>,
    /// per mount
    disk: Vec<SeriesAgg>,
}

fn finite(a: &SeriesAgg) -> bool {
    a.mean.is_finite() && a.max.is_finite() && a.min.is_finite() && a.count.is_finite()
}

impl Raw {
    pub(crate) fn add(&mut self, metric: &str, a: &SeriesAgg) {
        if !finite(a) || a.count < 1.0 {
            return;
        }
        if metric.starts_with("cpuStats.") {
            if PERCENT.contains(&a.mean) {
                self.cpu.push(SeriesAgg {
                    max: a.max.clamp(a.mean, *PERCENT.end()),
                    ..*a
                });
            }
        } else if metric == "memoryStats.UsedPercent" {
            if PERCENT.contains(&a.mean) {
                self.used_percent = Some(*a);
            }
        } else if metric == "memoryStats.TotalMemory" {
            self.total = Some(*a);
        } else if metric == "memoryStats.AvailableMemory" {
            self.available = Some(*a);
        } else if metric == "memoryStats.FreeMemory" {
            self.free = Some(*a);
        } else if metric.starts_with("diskStats.") && PERCENT.contains(&a.mean) {
            self.disk.push(*a);
        }
    }

    pub(crate) fn usage(self, bucket_seconds: u64, windows: &UsageWindows) -> VmUsage {
        let r = self;
        let bucket = bucket_seconds.max(1);
        // "buckets": points, at most the number of bucket_seconds slots in the window
        let slots = |res: Resource, count: f64| -> u32 {
            let most = (windows.get(res).as_secs() / bucket).max(1);
            (count.max(0.0) as u64)
                .clamp(1, most)
                .try_into()
                .unwrap_or(u32::MAX)
        };
        let cpu = (!r.cpu.is_empty()).then(|| {
            let n = r.cpu.len() as f64;
            Stats {
                mean: r.cpu.iter().map(|a| a.mean).sum::<f64>() / n,
                peak: r.cpu.iter().map(|a| a.max).sum::<f64>() / n,
                buckets: slots(
                    Resource::Cpu,
                    r.cpu.iter().map(|a| a.count).fold(0.0, f64::max),
                ),
            }
        });
        let memory = if let Some(u) = r.used_percent {
            Some(Stats {
                mean: u.mean,
                peak: u.max.clamp(u.mean, *PERCENT.end()),
                buckets: slots(Resource::Memory, u.count),
            })
        } else {
            let spare = r.available.or(r.free);
            match (r.total, spare) {
                (Some(t), Some(s)) if t.mean > 0.0 && s.mean >= 0.0 && s.mean <= t.mean => {
                    let mean = 100.0 * (1.0 - s.mean / t.mean);
                    let lowest = s.min.clamp(0.0, s.mean);
                    Some(Stats {
                        mean,
                        peak: 100.0 * (1.0 - lowest / t.mean),
                        buckets: slots(Resource::Memory, s.count.min(t.count)),
                    })
                }
                _ => None,
            }
        };
        let disk = r
            .disk
            .iter()
            .max_by(|a, b| a.mean.total_cmp(&b.mean))
            .map(|fullest| Stats {
                mean: fullest.mean,
                peak: r
                    .disk
                    .iter()
                    .map(|a| a.max.min(*PERCENT.end()))
                    .fold(fullest.mean, f64::max),
                buckets: slots(Resource::Disk, fullest.count),
            });
        VmUsage { cpu, memory, disk }
    }
}

/// The `origin`'s windows per resource (its alarm policies' `measure_time`).
pub fn windows_of(
    w: &monit_host::plugin::Windows,
    origin: monit_host::model::Origin,
) -> UsageWindows {
    UsageWindows {
        cpu: w.get(origin, Resource::Cpu),
        memory: w.get(origin, Resource::Memory),
        disk: w.get(origin, Resource::Disk),
    }
}

/// Readings of one target: a usage per resource with data in its window, or `NoData` when the
/// target reported nothing at all.
pub fn readings_for(
    target: &monit_host::model::Target,
    usage: Option<&VmUsage>,
) -> Vec<monit_host::model::Reading> {
    use monit_host::model::{Measured, Reading};
    let Some(u) = usage.filter(|u| !u.is_empty()) else {
        return vec![Reading {
            target: target.clone(),
            value: Measured::NoData,
        }];
    };
    Resource::ALL
        .iter()
        .filter_map(|r| {
            u.get(*r).map(|s| Reading {
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
    use monit_host::metric_store::influx::Cell;
    use std::time::Duration;

    fn series(ip: &str, metric: &str, mean: f64, max: f64, min: f64, count: f64) -> Series {
        Series {
            name: "cf_metrics".into(),
            tags: [
                ("ip".to_string(), ip.to_string()),
                ("metricname".to_string(), metric.to_string()),
            ]
            .into_iter()
            .collect(),
            columns: ["time", "mean", "max", "min", "count"]
                .map(String::from)
                .to_vec(),
            values: vec![[0.0, mean, max, min, count].map(Cell::Number).to_vec()],
        }
    }

    #[test]
    fn both_writer_generations_fold_to_the_same_resources() {
        let s = vec![
            // 2.0/3.0 writer
            series("10.0.0.1", "cpuStats.0", 85.0, 90.0, 80.0, 20.0),
            series("10.0.0.1", "cpuStats.1", 100.0, 100.0, 100.0, 20.0),
            series(
                "10.0.0.1",
                "memoryStats.UsedPercent",
                50.0,
                60.0,
                40.0,
                20.0,
            ),
            series("10.0.0.1", "diskStats.Usage", 40.0, 40.0, 40.0, 20.0),
            // newer agent
            series("10.0.0.2", "cpuStats.core.0", 10.0, 10.0, 10.0, 20.0),
            series(
                "10.0.0.2",
                "memoryStats.TotalMemory",
                1000.0,
                1000.0,
                1000.0,
                20.0,
            ),
            series(
                "10.0.0.2",
                "memoryStats.FreeMemory",
                100.0,
                100.0,
                100.0,
                20.0,
            ),
            series(
                "10.0.0.2",
                "memoryStats.AvailableMemory",
                250.0,
                300.0,
                150.0,
                20.0,
            ),
            series("10.0.0.2", "diskStats./.Usage", 30.0, 95.0, 10.0, 20.0),
            series(
                "10.0.0.2",
                "diskStats./var/vcap/data.Usage",
                87.0,
                88.0,
                86.0,
                20.0,
            ),
        ];
        let f = fold(&s, Some("ip"));
        let a = &f["10.0.0.1"];
        let cpu = a.cpu.unwrap();
        assert_eq!((cpu.mean, cpu.peak, cpu.buckets), (92.5, 95.0, 20));
        assert_eq!(a.memory.unwrap().mean, 50.0);
        assert_eq!(a.memory.unwrap().peak, 60.0);
        assert_eq!(a.disk.unwrap().mean, 40.0);
        let b = &f["10.0.0.2"];
        assert_eq!(b.cpu.unwrap().mean, 10.0);
        assert_eq!(
            b.memory.unwrap().mean,
            75.0,
            "Available is preferred over Free"
        );
        assert_eq!(
            b.memory.unwrap().peak,
            85.0,
            "the lowest Available is the peak"
        );
        let disk = b.disk.unwrap();
        assert_eq!(disk.mean, 87.0, "the fullest mount counts");
        assert_eq!(
            disk.peak, 95.0,
            "the highest point of any mount is the peak"
        );
    }

    #[test]
    fn rows_per_bucket_fold_to_window_figures() {
        // an answer with a row per bucket (older statements, or a split answer)
        let mut s = series("10.0.0.1", "cpuStats.0", 10.0, 10.0, 10.0, 1.0);
        s.values
            .push([30.0, 20.0, 20.0, 20.0, 1.0].map(Cell::Number).to_vec());
        s.values
            .push([60.0, 90.0, 90.0, 90.0, 1.0].map(Cell::Number).to_vec());
        let cpu = fold(&[s], Some("ip"))["10.0.0.1"].cpu.unwrap();
        assert_eq!((cpu.mean, cpu.peak, cpu.buckets), (40.0, 90.0, 3));
    }

    fn query() -> VmQuery<'static> {
        VmQuery {
            db: "cf_metric_db",
            measurement: "cf\"m",
            filter: Some(("origin", "micro'bosh\"}")),
            group_by: Some("ip"),
            windows: UsageWindows {
                cpu: Duration::from_secs(600),
                memory: Duration::from_secs(300),
                disk: Duration::from_secs(60),
            },
            bucket_seconds: 30,
            end_epoch: 1_000_000,
        }
    }

    #[test]
    fn influxql_is_one_row_per_series_and_escapes_config_values() {
        let q = query().to_influxql();
        assert_eq!(q.matches("SELECT").count(), 3, "{q}");
        assert!(q.contains("time > 999400s AND time <= 1000000s"), "{q}");
        assert!(q.contains("time > 999700s AND time <= 1000000s"), "{q}");
        assert!(q.contains("time > 999940s AND time <= 1000000s"), "{q}");
        assert!(q.contains(r#"FROM "cf\"m""#), "{q}");
        assert!(q.contains(r#""origin" = 'micro\'bosh"}'"#), "{q}");
        assert!(q.contains("GROUP BY \"ip\", \"metricname\""), "{q}");
        assert!(
            !q.contains("time(") && !q.contains("fill("),
            "no time buckets: {q}"
        );
    }

    #[test]
    fn a_narrowed_query_matches_exactly_the_escaped_values() {
        let only: HashSet<&str> = ["10.0.0.1", "a/b|c"].into_iter().collect();
        let q = query().to_influxql_of(Some(&only));
        assert_eq!(
            q.matches(r#""ip" =~ /^(10\.0\.0\.1|a\/b\|c)$/"#).count(),
            3,
            "{q}"
        );
        let p = query().to_promql_of(Resource::Cpu, "db", Some(&only));
        assert!(p.contains(r#"ip=~"10\\.0\\.0\\.1|a/b\\|c""#), "{p}");
        assert!(
            !query().to_influxql().contains("=~ /^(10"),
            "not narrowed by default"
        );
    }

    #[test]
    fn promql_escapes_label_values() {
        let q = query().to_promql(Resource::Cpu, "db");
        assert!(q.contains(r#"origin="micro'bosh\"}""#), "{q}");
        assert!(q.contains(r#"__name__="cf\"m_value""#), "{q}");
        assert!(q.contains(r#"db="cf_metric_db""#), "{q}");
        assert!(q.contains("[600s]"), "{q}");
        assert_eq!(q.matches("_over_time(").count(), 4, "{q}");
        let no_db = query().to_promql(Resource::Disk, "");
        assert!(!no_db.contains("db=") && no_db.contains("[60s]"), "{no_db}");
    }
}
