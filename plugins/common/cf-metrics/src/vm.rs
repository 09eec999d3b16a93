//! VM metrics as both generations of PaaS-TA metric writers store them (spec 9.1, 9.2), read for
//! all VMs in a fixed number of queries per measurement whatever the fleet (InfluxDB: one per
//! resource; Prometheus API: one per resource and aggregate), each resource over its own policy
//! window. Each series' window mean, maximum, minimum and point count are folded here across
//! series (cores, memory metrics, mounts). The statement shape per store
//! is the cheaper one measured (docs/benchmarks.md, "Issue 20 item 7"):
//! * InfluxDB 1.x: the window's points, raw (`SELECT "value" ... GROUP BY ip, metricname`),
//!   summed here as they are decoded, exactly as stream mode sums them. InfluxDB 1.6 walks the
//!   points once per aggregate call, so the four aggregates cost four walks (1.2 s at 1,000
//!   VMs against 0.5 s for the points, and 0.7 s for 6b92468's bucketed means);
//! * a Prometheus-API store: one query per aggregate (`avg_over_time`, `max_over_time`,
//!   `min_over_time`, `count_over_time`), two in flight per reader: the same rollups joined by
//!   `or` (told apart by `label_replace`) cost VictoriaMetrics about half as much CPU again
//!   for matching the label sets of every side.
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
//! window's highest POINT, no longer the highest 30 s bucket mean: no shape reads buckets any
//! more. It is never lower than the old peak, so a recovery can only come later, not earlier.

use crate::container::UsageWindows;
use futures::StreamExt;
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

/// The aggregates of a series that the PromQL of [`VmQuery::to_promql`] asks for, in order
/// (each `<aggregate>_over_time`).
pub const PROMQL_AGGREGATES: [&str; 4] = ["avg", "max", "min", "count"];

/// Queries a reader keeps in flight at once on a Prometheus-API store. The store parallelises
/// each query itself; more at once only adds contention (measured: 2.2-2.5 s of
/// VictoriaMetrics CPU with two per reader, 2.3-3.2 s with four), and VictoriaMetrics queues
/// requests beyond `-search.maxConcurrentRequests` (4 on 2 CPUs) for at most
/// `-search.maxQueueDuration` (10 s) before it refuses them: two per reader keep the tick's
/// total near the six queries it sent when each resource was one `or`-joined query.
pub const PROMETHEUS_IN_FLIGHT: usize = 2;

/// The aggregates of a series' points in the window, summed in time order as they arrive (raw
/// InfluxDB points, or stream mode's windows): the same sums either way.
#[derive(Clone, Copy, Debug)]
struct PointAcc {
    sum: f64,
    count: u64,
    max: f64,
    min: f64,
}

impl Default for PointAcc {
    fn default() -> Self {
        Self {
            sum: 0.0,
            count: 0,
            max: f64::NEG_INFINITY,
            min: f64::INFINITY,
        }
    }
}

impl PointAcc {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.count += 1;
        self.max = self.max.max(v);
        self.min = self.min.min(v);
    }

    /// `None` without points.
    fn agg(&self) -> Option<SeriesAgg> {
        (self.count > 0).then(|| {
            let count = self.count as f64;
            SeriesAgg {
                mean: self.sum / count,
                max: self.max,
                min: self.min,
                count,
            }
        })
    }
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
    /// raw points (InfluxDB), summed until [`AggregateFold::usage`]
    points: HashMap<(u32, u32), PointAcc>,
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
            points: HashMap::new(),
            dropped: 0,
        }
    }

    /// The ids of (key, metric), or `None` when the key is not wanted.
    fn ids(&mut self, key: &str, metric: &str) -> Option<(u32, u32)> {
        if self.wanted.is_some_and(|w| !w.contains(key)) {
            self.dropped += 1;
            return None;
        }
        Some((self.keys.id(key), self.metrics.id(metric)))
    }

    /// The slot of (key, metric), or `None` when the key is not wanted.
    fn slot(&mut self, key: &str, metric: &str) -> Option<&mut SeriesAgg> {
        let ids = self.ids(key, metric)?;
        Some(self.series.entry(ids).or_insert(SeriesAgg::UNSET))
    }

    /// One sample of a query of [`VmQuery::to_promql`]: the aggregate `agg` (one of
    /// [`PROMQL_AGGREGATES`], the query's) of one series.
    pub fn add_sample(&mut self, agg: &str, s: &Sample) {
        if !PROMQL_AGGREGATES.contains(&agg) {
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

    /// One series of an InfluxDB answer: raw points (a `value` column: [`VmQuery::to_influxql`],
    /// a series may come in several chunks) or aggregate rows (`mean`, `max`, `min`, `count`).
    /// Aggregate rows without a usable `mean` are skipped; a missing `max`/`min` reads as the
    /// mean and a missing `count` as 1, so an answer with a row per bucket folds to the same
    /// window figures.
    pub fn add_series(&mut self, s: &Series) {
        let Some(metric) = s.tag("metricname") else {
            return;
        };
        let key = self.group_by.and_then(|t| s.tag(t)).unwrap_or_default();
        if self.wanted.is_some_and(|w| !w.contains(key)) {
            self.dropped += s.values.len() as u64;
            return;
        }
        if let Some(vi) = s.column("value") {
            let Some(ids) = self.ids(key, metric) else {
                return;
            };
            let acc = self.points.entry(ids).or_default();
            for v in s.values.iter().filter_map(|row| row.get(vi)?.as_f64()) {
                acc.add(v);
            }
            return;
        }
        let Some(mi) = s.column("mean") else {
            return;
        };
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
    pub fn usage(
        mut self,
        bucket_seconds: u64,
        windows: &UsageWindows,
    ) -> HashMap<String, VmUsage> {
        for (ids, acc) in std::mem::take(&mut self.points) {
            let Some(agg) = acc.agg() else {
                continue;
            };
            let slot = self.series.entry(ids).or_insert(SeriesAgg::UNSET);
            if slot.count.is_nan() {
                *slot = agg;
            } else {
                slot.merge(agg);
            }
        }
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

    /// The three InfluxQL statements (cpu, memory, disk), as the text of one query; the reader
    /// sends each as its own query ([`VmQuery::influxql_statements`]).
    pub fn to_influxql(&self) -> String {
        self.to_influxql_of(None)
    }

    /// [`VmQuery::to_influxql`] narrowed to the `group_by` values in `only` (a regular
    /// expression of the escaped values), so the store reads just those VMs' series.
    pub fn to_influxql_of(&self, only: Option<&HashSet<&str>>) -> String {
        self.influxql_statements(only).join("; ")
    }

    /// One statement per resource, each the window's points of every selected series, raw:
    /// InfluxDB 1.x walks a series' points once per aggregate call, so four aggregates cost four
    /// walks where the points cost one walk and their encoding (measured at 1,000 VMs, 300 s
    /// windows: 0.43-0.50 s against 1.19-1.24 s, and 0.67-0.76 s for 6b92468's one bucketed
    /// mean). The answer grows with the points (one row each, about 36 bytes), not the
    /// series: each statement goes as its own query, bounded on its own by
    /// `influx.max_answer_bytes`, and is folded as it is decoded.
    pub fn influxql_statements(&self, only: Option<&HashSet<&str>>) -> [String; 3] {
        Resource::ALL.map(|r| self.influxql_statement(r, only))
    }

    fn influxql_statement(&self, r: Resource, only: Option<&HashSet<&str>>) -> String {
        let start = self.end_epoch - self.window(r);
        let value = ident("value");
        let mut q = format!(
            "SELECT {value} FROM {} WHERE time > {start}s AND time <= {}s \
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

    /// The PromQL queries of a resource, one per aggregate of [`PROMQL_AGGREGATES`] (in that
    /// order), each answering one sample per series. `db_label` names the label holding the
    /// InfluxDB database (empty: none).
    ///
    /// One rollup per query: the same four joined by `or` need `label_replace` to tell them
    /// apart, and VictoriaMetrics then matches the label sets of every side against each
    /// other, which cost it more than the rollups (docs/benchmarks.md, "Issue 20 item 7").
    pub fn to_promql(&self, r: Resource, db_label: &str) -> [String; 4] {
        self.to_promql_of(r, db_label, None)
    }

    /// [`VmQuery::to_promql`] narrowed to the `group_by` values in `only`.
    pub fn to_promql_of(
        &self,
        r: Resource,
        db_label: &str,
        only: Option<&HashSet<&str>>,
    ) -> [String; 4] {
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
        PROMQL_AGGREGATES.map(|f| format!("max by ({by}) ({f}_over_time({sel}[{w}s]))"))
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
        let end_ns = self.end_epoch.saturating_mul(1_000_000_000);
        let windows = h.state.windows();
        let mut acc: rustc_hash::FxHashMap<(&str, &str), PointAcc> = Default::default();
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
                acc.entry((key, metric)).or_default().add(p.value);
            }
        }
        for ((key, metric), a) in acc {
            if let Some(agg) = a.agg() {
                fold.add_agg(key, metric, agg);
            }
        }
    }

    async fn read_influx(
        &self,
        influx: &InfluxClient,
        fold: &mut AggregateFold<'_>,
        only: Option<&HashSet<&str>>,
    ) -> Result<(), InfluxError> {
        // the three answers arrive side by side into one fold (the lock is never contended
        // for long: one series at a time)
        let shared = std::sync::Mutex::new(fold);
        let statements = self.influxql_statements(only);
        let answers = futures::future::join_all(statements.iter().map(|q| {
            influx.query_fold(self.db, q, |s| {
                if let Ok(mut f) = shared.lock() {
                    f.add_series(&s);
                }
            })
        }))
        .await;
        for a in answers {
            a?;
        }
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
        let queries: Vec<(&str, String)> = Resource::ALL
            .iter()
            .flat_map(|r| {
                PROMQL_AGGREGATES
                    .into_iter()
                    .zip(self.to_promql_of(*r, c.db_label(), only))
            })
            .collect();
        // the answers arrive side by side into one fold (the lock is never contended for
        // long: one sample at a time)
        let shared = std::sync::Mutex::new(fold);
        // collected first: a lazy `map` in the stream would make the future not `Send` (its
        // closure's lifetimes are not general enough for the async trait)
        let reads: Vec<_> = queries
            .iter()
            .map(|(agg, q)| {
                let shared = &shared;
                c.query_fold(q, self.end_epoch, move |s: Sample| {
                    if let Ok(mut f) = shared.lock() {
                        f.add_sample(agg, &s);
                    }
                })
            })
            .collect();
        let mut answers = futures::stream::iter(reads).buffer_unordered(PROMETHEUS_IN_FLIGHT);
        while let Some(a) = answers.next().await {
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
    fn influxql_reads_the_points_and_escapes_config_values() {
        let q = query().to_influxql();
        assert_eq!(q.matches(r#"SELECT "value" FROM"#).count(), 3, "{q}");
        assert!(
            !q.contains("mean(") && !q.contains("count("),
            "raw points: {q}"
        );
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
    fn raw_points_fold_like_the_stream_and_across_chunks() {
        let raw = |ip: &str, metric: &str, values: &[f64]| Series {
            name: "cf_metrics".into(),
            tags: [("ip", ip), ("metricname", metric)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            columns: vec!["time".into(), "value".into()],
            values: values
                .iter()
                .enumerate()
                .map(|(i, v)| vec![Cell::Number(i as f64 * 30.0), Cell::Number(*v)])
                .collect(),
        };
        // one series split over two chunks, as `chunked=true` may deliver it
        let answer = [
            raw("10.0.0.1", "cpuStats.0", &[10.0, 30.0]),
            raw("10.0.0.1", "cpuStats.0", &[20.0]),
            raw("10.0.0.1", "memoryStats.TotalMemory", &[1000.0, 1000.0]),
            raw("10.0.0.1", "memoryStats.AvailableMemory", &[400.0, 200.0]),
        ];
        let u = fold(&answer, Some("ip"))["10.0.0.1"];
        let cpu = u.cpu.unwrap();
        assert_eq!((cpu.mean, cpu.peak, cpu.buckets), (20.0, 30.0, 3));
        let mem = u.memory.unwrap();
        assert_eq!((mem.mean, mem.peak, mem.buckets), (70.0, 80.0, 2));
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
        for p in query().to_promql_of(Resource::Cpu, "db", Some(&only)) {
            assert!(p.contains(r#"ip=~"10\\.0\\.0\\.1|a/b\\|c""#), "{p}");
        }
        assert!(
            !query().to_influxql().contains("=~ /^(10"),
            "not narrowed by default"
        );
    }

    #[test]
    fn promql_is_one_rollup_per_query_and_escapes_label_values() {
        let queries = query().to_promql(Resource::Cpu, "db");
        for (f, q) in PROMQL_AGGREGATES.iter().zip(&queries) {
            assert!(q.contains(r#"origin="micro'bosh\"}""#), "{q}");
            assert!(q.contains(r#"__name__="cf\"m_value""#), "{q}");
            assert!(q.contains(r#"db="cf_metric_db""#), "{q}");
            assert!(q.contains("[600s]"), "{q}");
            assert_eq!(q.matches("_over_time(").count(), 1, "{q}");
            let head = format!("max by (ip, metricname) ({f}_over_time(");
            assert!(q.starts_with(&head), "{q}");
        }
        for no_db in query().to_promql(Resource::Disk, "") {
            assert!(!no_db.contains("db=") && no_db.contains("[60s]"), "{no_db}");
        }
    }
}
