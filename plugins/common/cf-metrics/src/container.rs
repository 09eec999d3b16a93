//! Container metrics (PaaS-TA cAdvisor, `container_metrics`): per-container CPU, memory and disk
//! usage over a window, for all containers in a few queries whose answers have ONE ROW PER
//! SERIES (the store aggregates the window). Shared by the container collector and autoscale.
//! Either store: InfluxQL for InfluxDB 1.x, PromQL for a Prometheus-API store.
//!
//! No value from the data is ever put back into a query (the original built one query per
//! container from tag values, unescaped: defects D17, D18).
//!
//! * CPU: `cpu_usage_total` is cumulative CPU seconds. The window's rate is the increase between
//!   its first and last point over the time between them, × 100: percent of one core (it can
//!   exceed 100 on a multi-core app, as in the original). A counter that fell (restart) is read
//!   from its lowest point on, never as negative. InfluxDB: `first`, `min` and `last` (selectors,
//!   so each carries its point's time); Prometheus API: `rate()`, which handles resets itself.
//!   The peak is the mean rate: one row per series holds no per-interval rates.
//! * Memory and disk: `mean(value) / last(app_mem | app_disk) × 100`, the peak from `max(value)`.
//!   A limit that is missing or ≤ 0 (the 2020+ writer computes it in int32 and wraps at 2 GiB)
//!   makes that resource unusable for the container.
//!
//! A container whose CPU counter has no point within [`active_horizon`] of `now` has stopped (crashed, moved,
//! scaled in): it is left out entirely, so an instance that is gone neither keeps an alarm alive
//! with its last values nor counts as a running instance.

use monit_host::metric_store::influx::{InfluxClient, InfluxError, Series, ident};
use monit_host::metric_store::prometheus::{self, PrometheusClient, Sample};
use monit_host::metric_store::stream::{GroupRef, StoredPoint, StreamSeries, Windows};
use monit_host::metric_store::{MetricStore, MetricStoreError};
use monit_host::model::{Name, Resource, Timestamp};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `name` tag of the series read, as the PaaS-TA cAdvisor writes them.
pub const CPU_SERIES: &str = "cpu_usage_total";
pub const MEMORY_SERIES: &str = "memory_usage";
pub const DISK_SERIES: &str = "disk_usage";

/// Usage of one resource of one container over its window, in percent. For CPU, `peak` is the
/// window's mean rate (the store keeps only the counter's ends) and `buckets` counts the
/// bucket_seconds intervals the counter's points span.
pub use crate::vm::Stats;

/// The `[plugins.<name>]` section that says where the cAdvisor container metrics are (`db`,
/// `measurement`): the container collector's, read by the autoscaler too, so that both always
/// read the same series.
pub const SECTION: &str = "container";
pub const DEFAULT_DB: &str = "container_metric_db";
pub const DEFAULT_MEASUREMENT: &str = "container_metrics";

/// `db` and `measurement` of `[plugins.container]`, defaults for the ones unset. A value that is
/// not a string is an error naming the key.
pub fn configured_location(
    settings: &monit_host::config::Settings,
) -> anyhow::Result<(String, String)> {
    let section = settings.plugins.get(SECTION);
    let get = |key: &str, default: &str| -> anyhow::Result<String> {
        match section.and_then(|s| s.get(key)) {
            None => Ok(default.to_string()),
            Some(v) => v.as_str().map(str::to_string).ok_or_else(|| {
                anyhow::anyhow!(
                    "invalid config in {}: plugins.{SECTION}.{key} must be a string, got {v}",
                    settings.source
                )
            }),
        }
    };
    Ok((
        get("db", DEFAULT_DB)?,
        get("measurement", DEFAULT_MEASUREMENT)?,
    ))
}

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
    pub cell_ip: Name,
    /// `container_interface` tag: the container's key in the original
    pub container: Name,
    /// `application_id` tag (the app guid); `None` when the writer left it out
    pub app_guid: Option<Name>,
    pub app_name: Name,
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

/// Reads the usage of every app container that reported within [`active_horizon`] of `now`,
/// from the configured store, in a fixed number of queries whatever the number of containers
/// (InfluxDB: five statements in three queries sent at once; Prometheus API: eleven one-rollup
/// queries, [`crate::vm::PROMETHEUS_IN_FLIGHT`] at a time). Each resource is averaged over its
/// own window ending at `now`.
pub async fn read_container_usage(
    store: &MetricStore,
    source: &ContainerSource,
    windows: &UsageWindows,
    now: Timestamp,
) -> Result<Vec<ContainerUsage>, MetricStoreError> {
    read_container_usage_of(store, source, windows, now, Wanted::default()).await
}

/// The cells' addresses a reader wants ([`Wanted::cells`]): looked up once per container of
/// the fleet, hence a cheap hash.
pub type CellSet<'a> = rustc_hash::FxHashSet<&'a str>;

/// Which containers a reader keeps. The others' series are dropped as the answer is decoded,
/// so memory follows the containers wanted, not the size of the answer.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wanted<'a> {
    /// only the containers on these cells (`cell_ip`: the inventory's cells)
    pub cells: Option<&'a CellSet<'a>>,
    /// only the containers of these apps (`application_id`, lowercase: the apps with a policy)
    pub app_guids: Option<&'a HashSet<String>>,
    /// the query itself reads only these containers (stream mode's confirmations): what the
    /// store reads follows their number, not the fleet's
    pub narrow: Option<Narrow<'a>>,
}

/// A query narrowed to the series whose `tag` has one of `values`.
#[derive(Clone, Copy, Debug)]
pub struct Narrow<'a> {
    /// one of the containers' tags ([`GROUP_TAGS`])
    pub tag: &'static str,
    pub values: &'a HashSet<&'a str>,
    /// compare ignoring case (`application_id`: app guids)
    pub ignore_case: bool,
}

impl Narrow<'_> {
    /// The regular expression of the values (unanchored; both stores' syntax is RE2's).
    fn regex(&self) -> String {
        let mut v: Vec<String> = self.values.iter().map(|s| regex::escape(s)).collect();
        v.sort();
        format!(
            "{}({})",
            if self.ignore_case { "(?i)" } else { "" },
            v.join("|")
        )
    }

    /// `AND tag =~ /^(...)$/`, for InfluxQL
    fn influxql(&self) -> String {
        format!(
            " AND {} =~ /^{}$/",
            ident(self.tag),
            self.regex().replace('/', r"\/")
        )
    }

    /// `, tag=~"..."`, for a PromQL selector (which anchors the expression itself)
    fn promql(&self) -> String {
        format!(", {}=~{}", self.tag, prometheus::string(&self.regex()))
    }
}

impl Wanted<'_> {
    fn wants(&self, cell_ip: &str, app_guid: &str) -> bool {
        self.cells.is_none_or(|c| c.contains(cell_ip))
            && self.app_guids.is_none_or(|g| {
                let guid = app_guid.trim();
                // a copy only for a guid written in capitals (the writers write lowercase)
                if guid.bytes().any(|b| b.is_ascii_uppercase()) {
                    g.contains(&guid.to_ascii_lowercase())
                } else {
                    g.contains(guid)
                }
            })
    }
}

/// [`read_container_usage`] of the `wanted` containers only.
pub async fn read_container_usage_of(
    store: &MetricStore,
    source: &ContainerSource,
    windows: &UsageWindows,
    now: Timestamp,
    wanted: Wanted<'_>,
) -> Result<Vec<ContainerUsage>, MetricStoreError> {
    if wanted.narrow.is_some_and(|n| n.values.is_empty()) {
        return Ok(Vec::new());
    }
    let mut fold = PartsFold {
        wanted,
        ..Default::default()
    };
    let narrow = wanted.narrow;
    match store {
        MetricStore::Influx(c) => read_influx(c, source, windows, now, narrow, &mut fold).await?,
        MetricStore::Prometheus(c) => {
            read_prometheus(c, source, windows, now, narrow, &mut fold).await?
        }
        MetricStore::Stream(h) => {
            let state = h.state.windows();
            let parts = read_stream(&state, source, windows, now, &mut fold);
            report_dropped(source, fold.dropped);
            return Ok(finish(parts, source.bucket_seconds, windows, now));
        }
    }
    report_dropped(source, fold.dropped);
    Ok(finish(fold.parts, source.bucket_seconds, windows, now))
}

fn report_dropped(source: &ContainerSource, dropped: u64) {
    if dropped > 0 {
        metrics::counter!("monit_metric_samples_dropped_total", "reader" => "container")
            .increment(dropped);
        tracing::debug!(
            measurement = %source.measurement,
            dropped,
            "series of containers not wanted (cell not in the inventory, app without a policy) dropped while decoding"
        );
    }
}

async fn read_influx(
    influx: &InfluxClient,
    source: &ContainerSource,
    windows: &UsageWindows,
    now: Timestamp,
    narrow: Option<Narrow<'_>>,
    fold: &mut PartsFold<'_>,
) -> Result<(), InfluxError> {
    let [last, first, min, memory, disk] = usage_queries(source, windows, now, narrow);
    // the three CPU statements go as one query (InfluxDB runs them in turn), memory and disk
    // beside it: three queries, run side by side into one fold
    let queries = [format!("{last}; {first}; {min}"), memory, disk];
    let shared = std::sync::Mutex::new(fold);
    let answers = futures::future::join_all(queries.iter().map(|q| {
        influx.query_fold(&source.db, q, |s| {
            if let Ok(mut f) = shared.lock() {
                f.add_series(&s);
            }
        })
    }))
    .await;
    let mut errors: Vec<InfluxError> = answers.into_iter().filter_map(Result::err).collect();
    // InfluxDB 1.6 answers a query of several statements on a missing database with nothing
    // but "not executed": a single-statement query's error says why
    if let Some(i) = errors
        .iter()
        .position(|e| !e.to_string().contains("not executed"))
        .or((!errors.is_empty()).then_some(0))
    {
        return Err(errors.swap_remove(i));
    }
    let fold = shared.into_inner().unwrap_or_else(|p| p.into_inner());
    match fold.failed.take() {
        Some(message) => Err(InfluxError::Decode {
            url: influx.url().to_string(),
            message: format!(
                "database {} measurement {}: {message}",
                source.db, source.measurement
            ),
        }),
        None => Ok(()),
    }
}

/// Tags that identify one app container; a point without `application_name` is not an app's.
const GROUP_TAGS: [&str; 5] = [
    "cell_ip",
    "container_interface",
    "application_name",
    "application_index",
    "application_id",
];

/// A window shorter than one bucket reads as one bucket.
fn effective(window: Duration, bucket: u64) -> i64 {
    i64::try_from(window.as_secs().max(bucket)).unwrap_or(i64::MAX / 4)
}

/// The statements [`read_container_usage`] sends to InfluxDB, each with only the aggregates it
/// needs and no time buckets: one row per series. InfluxDB 1.x's cost grows with aggregates x
/// series, so they run side by side rather than as one statement (docs/benchmarks.md):
///
/// 1. the CPU counter's newest point within the activity horizon (liveness, and the counter's
///    last point);
/// 2. the CPU counter's first point in the window;
/// 3. its lowest point (a restart);
/// 4. memory; 5. disk.
pub fn usage_queries(
    source: &ContainerSource,
    windows: &UsageWindows,
    now: Timestamp,
    narrow: Option<Narrow<'_>>,
) -> [String; 5] {
    let bucket = source.bucket_seconds.max(1);
    let end = now.timestamp();
    let horizon = i64::try_from(active_horizon(bucket).as_secs()).unwrap_or(i64::MAX / 4);
    let group_by: Vec<String> = std::iter::once(ident("name"))
        .chain(GROUP_TAGS.iter().map(|t| ident(t)))
        .collect();
    let value = ident("value");
    let statement = |select: String, series: &str, span: i64| {
        format!(
            "SELECT {select} FROM {measurement} \
             WHERE time > {start}s AND time <= {end}s \
             AND {value} > -{bound:.1} AND {value} < {bound:.1} AND {name} = '{series}' \
             AND {container_id} <> '/' AND {application_name} <> ''{narrow} \
             GROUP BY {group_by}",
            measurement = ident(&source.measurement),
            start = end.saturating_sub(span),
            name = ident("name"),
            container_id = ident("container_id"),
            application_name = ident("application_name"),
            group_by = group_by.join(", "),
            bound = crate::vm::VALUE_BOUND,
            narrow = narrow.map(|n| n.influxql()).unwrap_or_default(),
        )
    };
    let cpu_window = effective(windows.cpu, bucket);
    let gauge = |limit: &str| {
        format!(
            "mean({value}) AS \"mean\", max({value}) AS \"max\", last({}) AS \"limit\"",
            ident(limit)
        )
    };
    [
        statement(
            format!("last({value}) AS \"last\""),
            CPU_SERIES,
            // a running container's counter has a point this recent, and it is the counter's
            // last: three points per series to read instead of the whole window
            horizon,
        ),
        statement(
            format!("first({value}) AS \"first\""),
            CPU_SERIES,
            cpu_window,
        ),
        statement(format!("min({value}) AS \"min\""), CPU_SERIES, cpu_window),
        statement(
            gauge("app_mem"),
            MEMORY_SERIES,
            effective(windows.memory, bucket),
        ),
        statement(
            gauge("app_disk"),
            DISK_SERIES,
            effective(windows.disk, bucket),
        ),
    ]
}

/// One PromQL query per aggregate, each named by the resource it reads (`None`: CPU) and the
/// aggregate: CPU `rate`, `count` (`count_over_time`) and `live` (`count_over_time` over the
/// activity horizon), memory and disk `mean`, `max`, `count` (`avg_over_time`,
/// `max_over_time`, `count_over_time` of the value) and `limit` (`last_over_time` of the limit
/// field). A store fed by `/write?db=` names the line-protocol field `<measurement>_<field>`.
///
/// One rollup per query, sent [`crate::vm::PROMETHEUS_IN_FLIGHT`] at a time: the same rollups
/// joined by `or` need `label_replace` to tell them apart, and VictoriaMetrics then matches
/// the label sets of every side against each other; at 10,000 containers that cost it more
/// than the rollups themselves (docs/benchmarks.md, "Issue 20 item 7").
pub fn usage_promql(
    source: &ContainerSource,
    windows: &UsageWindows,
    db_label: &str,
    narrow: Option<Narrow<'_>>,
) -> Vec<(Option<Resource>, &'static str, String)> {
    let bucket = source.bucket_seconds.max(1);
    let horizon = active_horizon(bucket).as_secs();
    let selector = |field: &str, name_matcher: String| {
        let mut s = format!(
            "{{__name__={}, name{name_matcher}, container_id!=\"/\", application_name!=\"\"",
            prometheus::string(&format!("{}_{field}", source.measurement)),
        );
        if !db_label.is_empty() {
            s.push_str(&format!(", {db_label}={}", prometheus::string(&source.db)));
        }
        if let Some(n) = narrow {
            s.push_str(&n.promql());
        }
        s.push('}');
        s
    };
    // only the container's tags come back (`max by`: one sample per container, no measurement
    // name and writer tags repeated in every sample: a third of the answer)
    let by = GROUP_TAGS.join(", ");
    let max_by = |expr: String| format!("max by ({by}) ({expr})");
    let cpu = selector("value", format!("={}", prometheus::string(CPU_SERIES)));
    let w = effective(windows.cpu, bucket);
    let mut queries = vec![
        (None, "rate", max_by(format!("rate({cpu}[{w}s])"))),
        (
            None,
            "count",
            max_by(format!("count_over_time({cpu}[{w}s])")),
        ),
        (
            None,
            "live",
            max_by(format!("count_over_time({cpu}[{horizon}s])")),
        ),
    ];
    for (r, series, limit, window) in [
        (Resource::Memory, MEMORY_SERIES, "app_mem", windows.memory),
        (Resource::Disk, DISK_SERIES, "app_disk", windows.disk),
    ] {
        let v = selector("value", format!("={}", prometheus::string(series)));
        let l = selector(limit, format!("={}", prometheus::string(series)));
        let w = effective(window, bucket);
        queries.extend([
            (Some(r), "mean", max_by(format!("avg_over_time({v}[{w}s])"))),
            (Some(r), "max", max_by(format!("max_over_time({v}[{w}s])"))),
            (
                Some(r),
                "count",
                max_by(format!("count_over_time({v}[{w}s])")),
            ),
            (
                Some(r),
                "limit",
                max_by(format!("last_over_time({l}[{w}s])")),
            ),
        ]);
    }
    queries
}

async fn read_prometheus(
    c: &PrometheusClient,
    source: &ContainerSource,
    windows: &UsageWindows,
    now: Timestamp,
    narrow: Option<Narrow<'_>>,
    fold: &mut PartsFold<'_>,
) -> Result<(), MetricStoreError> {
    use futures::StreamExt;
    let queries = usage_promql(source, windows, c.db_label(), narrow);
    let shared = std::sync::Mutex::new(fold);
    let at = now.timestamp();
    // collected first: a lazy `map` in the stream would make the future not `Send` (its
    // closure's lifetimes are not general enough for the async trait)
    let reads: Vec<_> = queries
        .iter()
        .map(|(r, agg, q)| {
            let shared = &shared;
            c.query_fold(q, at, move |s: Sample| {
                if let Ok(mut f) = shared.lock() {
                    f.add_sample(*r, agg, &s);
                }
            })
        })
        .collect();
    let mut answers =
        futures::stream::iter(reads).buffer_unordered(crate::vm::PROMETHEUS_IN_FLIGHT);
    while let Some(a) = answers.next().await {
        a?;
    }
    Ok(())
}

/// The container series a reader of `source` reads, for stream mode: the three `name`s, with
/// the limit field kept beside the memory and disk values.
pub fn stream_series(source: &ContainerSource) -> StreamSeries {
    StreamSeries {
        db: source.db.clone(),
        measurement: source.measurement.clone(),
        name_tag: "name",
        names: std::sync::Arc::new(|name: &str| match name {
            CPU_SERIES => Some(None),
            MEMORY_SERIES => Some(Some("app_mem")),
            DISK_SERIES => Some(Some("app_disk")),
            _ => None,
        }),
        tags: GROUP_TAGS.iter().map(|t| t.to_string()).collect(),
        // the queries' `container_id <> '/'` (the cell's own cgroup) and
        // `application_name <> ''` (not an app's container)
        excluded: vec![("container_id", "/"), ("application_name", "")],
        inventory_tag: Some("cell_ip"),
        min_span: active_horizon(source.bucket_seconds),
    }
}

/// A container's tags ([`GROUP_TAGS`]) and what its points gave.
type Folded<'w> = (KeyOrder<'w>, StreamAcc);

/// A container's tags with the first 16 bytes of its cell address and of its interface packed
/// into integers: sorting and merging a fleet compare those, beside each other in the parts'
/// lists, instead of strings spread over the windows' keys. The order is the tags' own (the
/// query path's `BTreeMap`'s).
#[derive(Clone, Copy, Debug)]
struct KeyOrder<'w> {
    cell: u128,
    interface: u128,
    key: [&'w str; 5],
}

impl<'w> KeyOrder<'w> {
    fn new(key: [&'w str; 5]) -> Self {
        // big-endian, zero-padded: a string that ends first orders first, as a prefix does (a
        // tag value holds no NUL byte)
        let pack = |s: &str| {
            let mut b = [0u8; 16];
            let n = s.len().min(16);
            b[..n].copy_from_slice(&s.as_bytes()[..n]);
            u128::from_be_bytes(b)
        };
        KeyOrder {
            cell: pack(key[0]),
            interface: pack(key[1]),
            key,
        }
    }

    /// The cell address and the interface are at most 16 bytes: equal packed values are
    /// equal strings.
    fn packed_whole(&self) -> bool {
        self.key[0].len() <= 16 && self.key[1].len() <= 16
    }
}

impl Ord for KeyOrder<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering::Equal;
        match self.cell.cmp(&other.cell) {
            Equal if self.packed_whole() && other.packed_whole() => {
                match self.interface.cmp(&other.interface) {
                    Equal => self.key[2..].cmp(&other.key[2..]),
                    o => o,
                }
            }
            // the first 16 bytes alike, a longer string: the whole tags decide
            Equal => self.key.cmp(&other.key),
            o => o,
        }
    }
}

impl PartialOrd for KeyOrder<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for KeyOrder<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for KeyOrder<'_> {}

/// From this many containers on, the stream's windows are folded on every core.
const PARALLEL_FROM_CONTAINERS: usize = 20_000;

/// A point as InfluxDB's selectors compare them: (time ns, value).
type Pt = (i64, f64);

/// What [`usage_queries`]' statements select, from the stream's points, per container.
#[derive(Default)]
struct StreamAcc {
    last: Option<Pt>,
    first: Option<Pt>,
    min: Option<Pt>,
    memory: Option<GaugeAcc>,
    disk: Option<GaugeAcc>,
}

struct GaugeAcc {
    sum: f64,
    count: u64,
    max: f64,
    /// the newest point carrying the limit field
    limit: Option<Pt>,
}

/// InfluxDB 1.x's selectors over points of several series: `last` the newest (a tie: the larger
/// value), `first` the oldest (a tie: the larger value), `min` the lowest (a tie: the oldest).
fn pick(cur: &mut Option<Pt>, p: Pt, better: fn(Pt, Pt) -> bool) {
    if cur.is_none_or(|c| better(p, c)) {
        *cur = Some(p);
    }
}

fn newest(n: Pt, c: Pt) -> bool {
    n.0 > c.0 || (n.0 == c.0 && n.1 > c.1)
}

fn oldest(n: Pt, c: Pt) -> bool {
    n.0 < c.0 || (n.0 == c.0 && n.1 > c.1)
}

fn lowest(n: Pt, c: Pt) -> bool {
    n.1 < c.1 || (n.1 == c.1 && n.0 < c.0)
}

impl GaugeAcc {
    fn new() -> Self {
        GaugeAcc {
            sum: 0.0,
            count: 0,
            max: f64::NEG_INFINITY,
            limit: None,
        }
    }

    fn add(&mut self, p: StoredPoint) {
        self.sum += p.value;
        self.count += 1;
        self.max = self.max.max(p.value);
        if !p.extra.is_nan() {
            pick(&mut self.limit, (p.time_ns, p.extra), newest);
        }
    }

    fn merge(&mut self, o: GaugeAcc) {
        self.sum += o.sum;
        self.count += o.count;
        self.max = self.max.max(o.max);
        if let Some(l) = o.limit {
            pick(&mut self.limit, l, newest);
        }
    }
}

impl StreamAcc {
    /// A CPU counter's points: `last` reads those after `horizon_from` (the activity
    /// horizon), `first` and `min` those after `window_from`.
    fn add_cpu(
        &mut self,
        points: impl Iterator<Item = StoredPoint>,
        horizon_from: i64,
        window_from: i64,
    ) {
        for p in points {
            let pt = (p.time_ns, p.value);
            if p.time_ns > horizon_from {
                pick(&mut self.last, pt, newest);
            }
            if p.time_ns > window_from {
                pick(&mut self.first, pt, oldest);
                pick(&mut self.min, pt, lowest);
            }
        }
    }

    /// The selectors over the points of both (another series of the same container).
    fn merge(&mut self, o: StreamAcc) {
        for (mine, theirs, better) in [
            (&mut self.last, o.last, newest as fn(Pt, Pt) -> bool),
            (&mut self.first, o.first, oldest),
            (&mut self.min, o.min, lowest),
        ] {
            if let Some(p) = theirs {
                pick(mine, p, better);
            }
        }
        for (mine, theirs) in [(&mut self.memory, o.memory), (&mut self.disk, o.disk)] {
            match (mine.as_mut(), theirs) {
                (Some(m), Some(t)) => m.merge(t),
                (None, t) => *mine = t,
                (Some(_), None) => {}
            }
        }
    }
}

/// The statements of [`usage_queries`], answered from the stream's windows: the same points
/// (time ranges, `name`, `container_id`, `application_name`, value bounds), the same selectors,
/// the times in whole seconds as `epoch=s` gives them.
fn read_stream<'w>(
    state: &'w Windows,
    source: &ContainerSource,
    windows: &UsageWindows,
    now: Timestamp,
    fold: &mut PartsFold<'_>,
) -> impl Iterator<Item = ([&'w str; 5], Parts)> + use<'w> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    read_stream_on(
        state,
        (source, windows, now),
        fold,
        (PARALLEL_FROM_CONTAINERS, cores),
    )
}

/// [`read_stream`] on `threads` threads from `parallel_from` containers on.
fn read_stream_on<'w>(
    state: &'w Windows,
    (source, windows, now): (&ContainerSource, &UsageWindows, Timestamp),
    fold: &mut PartsFold<'_>,
    (parallel_from, cores): (usize, usize),
) -> impl Iterator<Item = ([&'w str; 5], Parts)> + use<'w> {
    const NS: i64 = 1_000_000_000;
    let bound = crate::vm::VALUE_BOUND;
    let bucket = source.bucket_seconds.max(1);
    let end = now.timestamp().saturating_mul(NS);
    let horizon = i64::try_from(active_horizon(bucket).as_secs()).unwrap_or(i64::MAX / 4);
    let since = |span: i64| end.saturating_sub(span.saturating_mul(NS));
    let counts = |v: f64| v > -bound && v < bound;
    let wanted = fold.wanted;
    // a container's three series are one group of the windows: its tags are read once.
    // `Err(())`: a container not wanted
    let fold_group = |g: &GroupRef<'w>| -> Result<Option<Folded<'w>>, ()> {
        // `container_id <> '/'` and `application_name <> ''` hold: the other series are not
        // kept (`stream_series`)
        let key = g.tags(GROUP_TAGS).map(Option::unwrap_or_default);
        // `PartsFold::entry`'s filters, before any point is read
        if key[2].is_empty() {
            return Ok(None);
        }
        if !wanted.wants(key[0], key[4]) {
            return Err(());
        }
        let mut a = StreamAcc::default();
        for s in g.series() {
            let resource = match s.name() {
                CPU_SERIES => Resource::Cpu,
                MEMORY_SERIES => Resource::Memory,
                DISK_SERIES => Resource::Disk,
                _ => continue,
            };
            if resource == Resource::Cpu {
                let (horizon_from, window_from) =
                    (since(horizon), since(effective(windows.cpu, bucket)));
                a.add_cpu(
                    s.points(horizon_from.min(window_from), end)
                        .filter(|p| counts(p.value)),
                    horizon_from,
                    window_from,
                );
                continue;
            }
            let from = since(effective(windows.get(resource), bucket));
            let g = match resource {
                Resource::Disk => &mut a.disk,
                _ => &mut a.memory,
            };
            for p in s.points(from, end).filter(|p| counts(p.value)) {
                g.get_or_insert_with(GaugeAcc::new).add(p);
            }
        }
        // no statement would have answered a row for it
        let answered =
            a.last.is_some() || a.first.is_some() || a.memory.is_some() || a.disk.is_some();
        Ok(answered.then(|| (KeyOrder::new(key), a)))
    };
    // a part of the containers, folded and sorted (the query path's order, its BTreeMap's)
    let fold_part = |part: &[GroupRef<'w>]| {
        let mut out = Vec::with_capacity(part.len());
        let mut dropped = 0u64;
        for g in part {
            match fold_group(g) {
                Ok(Some(c)) => out.push(c),
                Ok(None) => {}
                Err(()) => dropped += 1,
            }
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        (out, dropped)
    };
    let groups: Vec<GroupRef<'w>> = state.groups_of(&source.db, &source.measurement).collect();
    // a large fleet is folded on every core (the points are only read: the windows stay
    // locked for reading, ingest waits either way)
    let threads = if groups.len() >= parallel_from {
        cores
    } else {
        1
    };
    let parts: Vec<(Vec<Folded<'w>>, u64)> = if threads <= 1 {
        vec![fold_part(&groups)]
    } else {
        let fold_part = &fold_part;
        std::thread::scope(|scope| {
            let running: Vec<_> = groups
                .chunks(groups.len().div_ceil(threads))
                .map(|part| scope.spawn(move || fold_part(part)))
                .collect();
            running
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    };
    drop(groups);
    let mut sorted = Vec::with_capacity(parts.len());
    for (part, dropped) in parts {
        fold.dropped += dropped;
        sorted.push(part.into_iter().peekable());
    }
    // the parts merged in order; series the store keeps apart (another tag differs) but the
    // statements group together are folded into one container
    let acc = std::iter::from_fn(move || {
        let first = sorted
            .iter_mut()
            .filter_map(|p| p.peek().map(|c| c.0))
            .min()?;
        let mut acc: Option<Folded<'w>> = None;
        for part in &mut sorted {
            while let Some(c) = part.next_if(|c| c.0 == first) {
                match acc.as_mut() {
                    Some(a) => a.1.merge(c.1),
                    None => acc = Some(c),
                }
            }
        }
        acc
    });
    let secs = |p: Pt| (p.0 / NS, p.1);
    let gauge = |g: GaugeAcc| GaugeAgg {
        mean: Some(g.sum / g.count as f64),
        max: Some(g.max),
        // the InfluxDB statements do not count gauge points either
        count: None,
        limit: g.limit.map(|l| l.1),
    };
    acc.map(move |(order, a)| {
        let key = order.key;
        let mut p = Parts::default();
        if let Some(last) = a.last {
            p.newest = Some(last.0 / NS);
            p.cpu_last = Some(secs(last));
        }
        p.cpu_first = a.first.map(secs);
        p.cpu_min = a.min.map(secs);
        p.memory = a.memory.map(gauge);
        p.disk = a.disk.map(gauge);
        (key, p)
    })
}

/// A gauge's aggregates over its window, with the container's limit.
#[derive(Clone, Copy, Debug, Default)]
struct GaugeAgg {
    mean: Option<f64>,
    max: Option<f64>,
    count: Option<f64>,
    limit: Option<f64>,
}

/// What the store said about one container, before it becomes usage.
#[derive(Debug, Default)]
struct Parts {
    /// InfluxDB: time of the newest point of any series; Prometheus API: `live`
    newest: Option<i64>,
    live: bool,
    /// InfluxDB: (time, value) of the counter's last, first and lowest points in the window
    cpu_last: Option<(i64, f64)>,
    cpu_first: Option<(i64, f64)>,
    cpu_min: Option<(i64, f64)>,
    /// Prometheus API: per-second rate and points in the window
    cpu_rate: Option<f64>,
    cpu_points: Option<f64>,
    memory: Option<GaugeAgg>,
    disk: Option<GaugeAgg>,
}

impl Parts {
    fn gauge(&mut self, r: Resource) -> &mut GaugeAgg {
        match r {
            Resource::Disk => self.disk.get_or_insert_default(),
            _ => self.memory.get_or_insert_default(),
        }
    }
}

/// What the store said of each wanted container, folded in sample by sample (Prometheus API)
/// or series by series (InfluxDB) as the answers are decoded.
#[derive(Default)]
struct PartsFold<'w> {
    wanted: Wanted<'w>,
    parts: BTreeMap<[String; 5], Parts>,
    /// samples (or series) of containers not wanted
    dropped: u64,
    /// the first InfluxDB series that does not fit the statements (the error names it)
    failed: Option<String>,
}

impl PartsFold<'_> {
    /// The container's entry, or `None` when it is not an app's or not wanted.
    fn entry<'s>(&mut self, tag: impl Fn(&str) -> Option<&'s str>) -> Option<&mut Parts> {
        let get = |t: &str| tag(t).unwrap_or_default();
        if get(GROUP_TAGS[2]).is_empty() {
            return None;
        }
        if !self.wanted.wants(get(GROUP_TAGS[0]), get(GROUP_TAGS[4])) {
            self.dropped += 1;
            return None;
        }
        let key = GROUP_TAGS.map(|t| get(t).to_string());
        Some(self.parts.entry(key).or_default())
    }

    /// One sample of a query of [`usage_promql`], named by its resource (`None`: CPU) and
    /// aggregate.
    fn add_sample(&mut self, r: Option<Resource>, agg: &str, s: &Sample) {
        let Some(p) = self.entry(|t| Some(s.label(t))) else {
            return;
        };
        let v = Some(s.value).filter(|v| v.is_finite());
        match (r, agg) {
            (None, "rate") => p.cpu_rate = v,
            (None, "count") => p.cpu_points = v,
            (None, "live") => p.live |= v.is_some_and(|n| n > 0.0),
            (Some(r), agg) => {
                let g = p.gauge(r);
                match agg {
                    "mean" => g.mean = v,
                    "max" => g.max = v,
                    "count" => g.count = v,
                    "limit" => g.limit = v,
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// One series of [`usage_queries`]' answers; the first that does not fit is kept in
    /// `failed`.
    fn add_series(&mut self, s: &Series) {
        if self.failed.is_none()
            && let Err(e) = self.try_add_series(s)
        {
            self.failed = Some(e);
        }
    }

    fn try_add_series(&mut self, s: &Series) -> Result<(), String> {
        let col = |name: &str| {
            s.column(name)
                .ok_or_else(|| format!("series without column {name:?} (columns {:?})", s.columns))
        };
        let resource = match s.tag("name") {
            Some(CPU_SERIES) => Resource::Cpu,
            Some(MEMORY_SERIES) => Resource::Memory,
            Some(DISK_SERIES) => Resource::Disk,
            _ => return Ok(()),
        };
        // not an app's, or not wanted: nothing to check either
        let Some(p) = self.entry(|t| s.tag(t)) else {
            return Ok(());
        };
        let time = col("time")?;
        // which statement this series answers, by its columns
        let (last, first, min) = (s.column("last"), s.column("first"), s.column("min"));
        let gauge_cols = if last.is_none() && first.is_none() && min.is_none() {
            if resource == Resource::Cpu {
                return Err(format!(
                    "CPU series without last/first/min (columns {:?})",
                    s.columns
                ));
            }
            Some([col("mean")?, col("max")?, col("limit")?])
        } else {
            None
        };
        for row in &s.values {
            let cell = |i: usize| row.get(i).and_then(|c| c.as_f64());
            let Some(t) = cell(time).map(|t| t as i64) else {
                continue;
            };
            if let Some(i) = last {
                // statement 1: every series' newest point
                p.newest = p.newest.max(Some(t));
                if resource == Resource::Cpu
                    && let Some(v) = cell(i)
                {
                    p.cpu_last = Some((t, v));
                }
            } else if let Some(i) = first {
                p.cpu_first = cell(i).map(|v| (t, v));
            } else if let Some(i) = min {
                p.cpu_min = cell(i).map(|v| (t, v));
            } else if let Some([mean, max, limit]) = gauge_cols {
                *p.gauge(resource) = GaugeAgg {
                    mean: cell(mean),
                    max: cell(max),
                    count: s.column("count").and_then(cell),
                    limit: cell(limit),
                };
            }
        }
        Ok(())
    }
}

/// The series of the answers of [`usage_queries`], per container. The error names what is
/// wrong with the answer.
fn parts_from_series(series: &[Series]) -> Result<BTreeMap<[String; 5], Parts>, String> {
    let mut fold = PartsFold::default();
    for s in series {
        fold.try_add_series(s)?;
    }
    Ok(fold.parts)
}

static BAD_LIMIT_WARNED: AtomicBool = AtomicBool::new(false);

/// Parts of every container → usage of the running ones.
fn finish<K: AsRef<str>>(
    parts: impl IntoIterator<Item = ([K; 5], Parts)>,
    bucket_seconds: u64,
    windows: &UsageWindows,
    now: Timestamp,
) -> Vec<ContainerUsage> {
    let bucket = bucket_seconds.max(1);
    let now_s = now.timestamp();
    let horizon = i64::try_from(active_horizon(bucket).as_secs()).unwrap_or(i64::MAX / 4);
    let slots = |r: Resource| (effective(windows.get(r), bucket) as u64 / bucket).max(1);
    let mut bad_limits = 0u32;
    let mut stale = 0u32;
    let parts = parts.into_iter();
    // exact: a doubling would leave up to half a fleet's list empty
    let mut out = Vec::with_capacity(parts.size_hint().0);
    // the containers of a cell come one after the other: they share its address
    let mut cell: Option<Name> = None;
    for (key, p) in parts {
        let live = p.live || p.newest.is_some_and(|t| t > now_s - horizon);
        if !live {
            stale += 1;
            continue;
        }
        let cpu = match (p.cpu_rate, p.cpu_first, p.cpu_last) {
            (Some(rate), _, _) => {
                let intervals = (p.cpu_points.unwrap_or(0.0) - 1.0).max(0.0) as u64;
                (rate >= 0.0 && intervals > 0).then(|| Stats {
                    mean: rate * 100.0,
                    peak: rate * 100.0,
                    buckets: u32::try_from(intervals.min(slots(Resource::Cpu))).unwrap_or(1),
                })
            }
            (None, Some(first), Some(last)) if last.0 > now_s - effective(windows.cpu, bucket) => {
                counter_stats(first, last, p.cpu_min, bucket, slots(Resource::Cpu))
            }
            _ => None,
        };
        // InfluxDB does not count gauge points (an aggregate costs as much as the statement):
        // the counter's points stand for them, cAdvisor writes all three series together
        let cpu_points = p
            .cpu_points
            .or_else(|| cpu.map(|c| f64::from(c.buckets) + 1.0));
        let mut gauge = |g: Option<GaugeAgg>, r: Resource| -> Option<Stats> {
            let g = g?;
            let (mean, max) = (g.mean.filter(|m| *m >= 0.0)?, g.max?);
            let Some(limit) = g.limit.filter(|l| *l > 0.0) else {
                bad_limits += 1;
                return None;
            };
            let pct = mean / limit * 100.0;
            PERCENT.contains(&pct).then(|| Stats {
                mean: pct,
                peak: (max / limit * 100.0).clamp(pct, *PERCENT.end()),
                buckets: u32::try_from(
                    (g.count.or(cpu_points).unwrap_or(1.0).max(1.0) as u64).min(slots(r)),
                )
                .unwrap_or(1),
            })
        };
        let memory = gauge(p.memory, Resource::Memory);
        let disk = gauge(p.disk, Resource::Disk);
        let [cell_ip, container, app_name, app_index, app_guid] = key;
        let index = app_index.as_ref().trim().parse::<i32>().unwrap_or_else(|_| {
            tracing::debug!(app = %app_name.as_ref(), container = %container.as_ref(), application_index = %app_index.as_ref(), "application_index is not a number: read as 0");
            0
        });
        let cell_ip = match &cell {
            Some(c) if **c == *cell_ip.as_ref() => c.clone(),
            _ => cell.insert(cell_ip.as_ref().into()).clone(),
        };
        let app_guid = app_guid.as_ref();
        out.push(ContainerUsage {
            cpu,
            memory,
            disk,
            cell_ip,
            container: container.as_ref().into(),
            app_guid: (!app_guid.is_empty()).then(|| app_guid.into()),
            app_name: app_name.as_ref().into(),
            app_index: index,
        });
    }
    if bad_limits > 0 {
        if !BAD_LIMIT_WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                containers = bad_limits,
                "container metrics: app_mem/app_disk missing or <= 0 (the cAdvisor writer overflows int32 for limits of 2 GiB and more); those memory/disk values are skipped (logged once)"
            );
        } else {
            tracing::debug!(
                containers = bad_limits,
                "container metrics: usage skipped for a missing or non-positive app_mem/app_disk"
            );
        }
    }
    tracing::debug!(containers = out.len(), stale, "container metrics read");
    out
}

use crate::vm::PERCENT;

/// CPU percent of one core from a cumulative counter's first, last and lowest points (time,
/// value) in the window. A lowest point below the first is a restart: the rate is read from
/// it on. `buckets`: the bucket_seconds intervals the points span, at most `most`.
pub fn counter_stats(
    first: (i64, f64),
    last: (i64, f64),
    lowest: Option<(i64, f64)>,
    bucket_seconds: u64,
    most: u64,
) -> Option<Stats> {
    let from = match lowest {
        Some(l) if l.1 < first.1 && l.0 < last.0 => l,
        _ => first,
    };
    let dt = last.0 - from.0;
    let increase = last.1 - from.1;
    if dt <= 0 || increase < 0.0 {
        return None;
    }
    let rate = increase / dt as f64 * 100.0;
    // the points span the window from the first on, a restart or not (as a store's rate() does)
    let span = (last.0 - first.0).max(dt);
    let intervals =
        ((span as f64 / bucket_seconds.max(1) as f64).round() as u64).clamp(1, most.max(1));
    rate.is_finite().then(|| Stats {
        mean: rate,
        peak: rate,
        buckets: u32::try_from(intervals).unwrap_or(u32::MAX),
    })
}

/// Turns InfluxDB answers of [`usage_queries`] into per-container usage. Pure, for tests; the
/// error names what is wrong with the answer.
pub fn usage_from_series(
    series: &[Series],
    bucket_seconds: u64,
    windows: &UsageWindows,
    now: Timestamp,
) -> Result<Vec<ContainerUsage>, String> {
    Ok(finish(
        parts_from_series(series)?,
        bucket_seconds,
        windows,
        now,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use monit_host::metric_store::influx::Cell;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn steady_counter_reads_its_rate() {
        // +9 CPU seconds every 30 s = 30% of one core
        let s = counter_stats((0, 100.0), (120, 136.0), Some((0, 100.0)), 30, 20).unwrap();
        assert!(close(s.mean, 30.0) && close(s.peak, 30.0), "{s:?}");
        assert_eq!(s.buckets, 4);
    }

    #[test]
    fn counter_reset_is_read_from_the_lowest_point() {
        // restart between 60 and 90: the counter starts again from 2, +6 per 30 s
        let s = counter_stats((0, 100.0), (120, 8.0), Some((90, 2.0)), 30, 20).unwrap();
        assert!(close(s.mean, 20.0), "{s:?}");
        assert_eq!(s.buckets, 4, "the points span four intervals");
    }

    #[test]
    fn a_single_point_has_no_rate() {
        assert_eq!(counter_stats((0, 5.0), (0, 5.0), None, 30, 20), None);
    }

    #[test]
    fn flat_counter_is_zero_percent() {
        let s = counter_stats((0, 7.0), (30, 7.0), None, 30, 20).unwrap();
        assert!(close(s.mean, 0.0) && close(s.peak, 0.0));
    }

    fn series(name: &str, app: &str, iface: &str, columns: &[&str], rows: Vec<Vec<f64>>) -> Series {
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
            columns: columns.iter().map(|c| c.to_string()).collect(),
            values: rows
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|v| {
                            if v.is_nan() {
                                Cell::Null
                            } else {
                                Cell::Number(v)
                            }
                        })
                        .collect()
                })
                .collect(),
        }
    }

    #[test]
    fn answer_to_usage() {
        let now = chrono::Utc.timestamp_opt(1_000_020, 0).unwrap();
        let gauge = ["time", "mean", "max", "count", "limit"];
        let all = [
            series(
                CPU_SERIES,
                "web",
                "c1",
                &["time", "last"],
                vec![vec![1_000_010.0, 45.0]],
            ),
            series(
                CPU_SERIES,
                "web",
                "c1",
                &["time", "first"],
                vec![vec![999_860.0, 0.0]],
            ),
            series(
                CPU_SERIES,
                "web",
                "c1",
                &["time", "min"],
                vec![vec![999_860.0, 0.0]],
            ),
            series(
                MEMORY_SERIES,
                "web",
                "c1",
                &gauge,
                vec![vec![999_420.0, 500.0, 750.0, 20.0, 1000.0]],
            ),
            // a negative (wrapped) limit makes disk unusable
            series(
                DISK_SERIES,
                "web",
                "c1",
                &gauge,
                vec![vec![999_420.0, 10.0, 10.0, 20.0, -2_147_483_648.0]],
            ),
            // no application_name: not an app container
            series(
                MEMORY_SERIES,
                "",
                "c2",
                &["time", "last"],
                vec![vec![1_000_010.0, 1.0]],
            ),
            // newest point far older than the active horizon: stopped
            series(
                MEMORY_SERIES,
                "gone",
                "c3",
                &["time", "last"],
                vec![vec![999_000.0, 900.0]],
            ),
            series(
                MEMORY_SERIES,
                "gone",
                "c3",
                &gauge,
                vec![vec![999_420.0, 900.0, 900.0, 2.0, 1000.0]],
            ),
        ];
        let w = UsageWindows::uniform(Duration::from_secs(600));
        let u = usage_from_series(&all, 30, &w, now).unwrap();
        assert_eq!(u.len(), 1, "{u:?}");
        let c = &u[0];
        assert_eq!((&*c.app_name, c.app_index, &*c.container), ("web", 1, "c1"));
        assert_eq!(c.app_guid.as_deref(), Some("guid-1"));
        assert!(close(c.cpu.unwrap().mean, 30.0), "{:?}", c.cpu);
        assert_eq!(c.cpu.unwrap().buckets, 5);
        let m = c.memory.unwrap();
        assert!(close(m.mean, 50.0) && close(m.peak, 75.0), "{m:?}");
        assert_eq!(m.buckets, 20);
        assert_eq!(c.disk, None);
    }

    #[test]
    fn missing_column_is_an_error() {
        let s = series(
            DISK_SERIES,
            "web",
            "c1",
            &["time", "mean", "max", "count"],
            vec![],
        );
        let w = UsageWindows::uniform(Duration::from_secs(60));
        let e = usage_from_series(&[s], 30, &w, chrono::Utc::now()).unwrap_err();
        assert!(e.contains("limit"), "{e}");
    }

    #[test]
    fn an_app_filter_compares_guids_trimmed_and_ignoring_case() {
        let guids: HashSet<String> = ["abc-1".to_string()].into_iter().collect();
        let wanted = Wanted {
            app_guids: Some(&guids),
            ..Default::default()
        };
        assert!(wanted.wants("10.0.0.1", "abc-1"));
        assert!(wanted.wants("10.0.0.1", " ABC-1 "), "written in capitals");
        assert!(!wanted.wants("10.0.0.1", "abc-2"));
        assert!(!wanted.wants("10.0.0.1", "ABC-2"));
    }

    /// The packed order is the tags' own: cells and interfaces that end first, that differ
    /// after 16 bytes, or that are alike in them, and containers told apart by later tags only.
    #[test]
    fn the_packed_key_order_is_the_order_of_the_tags() {
        let cells = [
            "10.0.0.1",
            "10.0.0.10",
            "10.0.0.2",
            "",
            "cell-with-a-long-name-a",
            "cell-with-a-long-name-b",
            "cell-with-a-long-name",
        ];
        let interfaces = [
            "abc-0",
            "abc-1",
            "abc",
            "0123456789abcdef",
            "0123456789abcdef-1",
            "0123456789abcdef-0",
            "",
        ];
        let mut keys = Vec::new();
        for c in cells {
            for i in interfaces {
                for app in ["app-b", "app-a"] {
                    keys.push([c, i, app, "0", "guid"]);
                }
            }
        }
        let mut by_tags = keys.clone();
        by_tags.sort();
        let mut packed: Vec<KeyOrder<'_>> = keys.into_iter().rev().map(KeyOrder::new).collect();
        packed.sort();
        let packed: Vec<[&str; 5]> = packed.into_iter().map(|k| k.key).collect();
        assert_eq!(packed, by_tags);
        for (a, b) in by_tags.iter().zip(by_tags.iter().skip(1)) {
            assert_ne!(KeyOrder::new(*a), KeyOrder::new(*b), "{a:?} {b:?}");
        }
        assert_eq!(KeyOrder::new(by_tags[3]), KeyOrder::new(by_tags[3]));
    }

    #[test]
    fn the_stream_folds_the_same_on_several_threads_as_on_one() {
        let source = source("container_metrics");
        let settings = monit_host::config::StreamSettings::default();
        let state = monit_host::metric_store::stream::StreamState::new(
            &settings,
            &[stream_series(&source)],
        );
        let now = 1_700_000_000i64;
        let mut lines = String::new();
        for c in 0..400 {
            let tags = format!(
                "application_id=guid-{c},application_index={},application_name=app{},cell_ip=10.0.{}.{},container_id=/garden/{c},container_interface=if-{c}",
                c % 3,
                c / 3,
                c % 5,
                c % 7
            );
            // every fourth container's series written twice, under another tag the
            // statements do not group by: its two groups land in different parts
            let machines: &[&str] = if c % 4 == 0 { &["a", "b"] } else { &["a"] };
            for (m, machine) in machines.iter().enumerate() {
                for k in 0..12i64 {
                    let t = now - 330 + k * 30 + m as i64 * 7;
                    let cpu = 1000.0 + (c as f64) * 3.0 * k as f64 + m as f64;
                    let mem = 100.0 + ((c * 7 + k as usize * 13) % 50) as f64;
                    for (name, v) in [
                        ("cpu_usage_total", cpu),
                        ("memory_usage", mem),
                        ("disk_usage", mem / 2.0),
                    ] {
                        lines += &format!(
                            "container_metrics,{tags},machine={machine},name={name} app_mem=1024,app_disk=2048,value={v} {t}\n"
                        );
                    }
                }
            }
        }
        let r = state.ingest_lines(
            &source.db,
            monit_wire::line::Precision::Seconds,
            lines.as_bytes(),
            now * 1_000_000_000,
        );
        assert_eq!(r.malformed, 0);
        let windows = UsageWindows::uniform(Duration::from_secs(300));
        let at = chrono::DateTime::from_timestamp(now, 0).unwrap();
        let w = state.windows();
        let read = |parallel_from, cores| {
            let mut fold = PartsFold::default();
            let out: Vec<String> = read_stream_on(
                &w,
                (&source, &windows, at),
                &mut fold,
                (parallel_from, cores),
            )
            .map(|(k, p)| format!("{k:?} {p:?}"))
            .collect();
            out
        };
        let one = read(usize::MAX, 1);
        assert_eq!(one.len(), 400, "one entry per container, split ones merged");
        assert_eq!(read(0, 3), one, "three threads");
        assert_eq!(read(0, 2), one, "two threads");
    }

    fn source(measurement: &str) -> ContainerSource {
        ContainerSource {
            db: "container_metric_db".into(),
            measurement: measurement.into(),
            bucket_seconds: 30,
        }
    }

    #[test]
    fn query_escapes_the_measurement_and_has_no_time_buckets() {
        let w = UsageWindows {
            cpu: Duration::from_secs(60),
            memory: Duration::from_secs(600),
            disk: Duration::from_secs(120),
        };
        let now = chrono::Utc.timestamp_opt(10_000, 0).unwrap();
        let q = usage_queries(&source(r#"container "m""#), &w, now, None);
        for q in &q {
            assert!(q.contains(r#"FROM "container \"m\"""#), "{q}");
            assert!(!q.contains("time(") && !q.contains("fill("), "{q}");
            assert_eq!(q.matches("SELECT").count(), 1);
        }
        assert!(q[0].contains("time > 9910s"), "90 s horizon: {}", q[0]);
        assert!(q[1].contains("time > 9940s"), "{}", q[1]);
        assert!(q[3].contains("time > 9400s"), "{}", q[3]);
        assert!(q[4].contains("time > 9880s"), "{}", q[4]);
    }

    #[test]
    fn promql_escapes_the_measurement_and_db() {
        let w = UsageWindows::uniform(Duration::from_secs(300));
        let mut s = source("c\"m\n");
        s.db = "x\"} or vector(1) or {a=\"".into();
        let queries = usage_promql(&s, &w, "db", None);
        assert_eq!(queries.len(), 11, "one query per rollup: {queries:?}");
        for (r, agg, q) in queries {
            assert!(q.contains(r#"__name__="c\"m\n_"#), "{q}");
            assert!(q.contains(r#"db="x\"} or vector(1) or {a=\"""#), "{q}");
            let window = if agg == "live" { "[90s]" } else { "[300s]" };
            assert!(q.contains(window), "{r:?} {agg}: {q}");
            let rollups = q.matches("_over_time(").count() + q.matches("rate(").count();
            assert_eq!(rollups, 1, "{q}");
            assert!(!q.contains("label_replace"), "{q}");
        }
    }

    #[test]
    fn a_narrowed_query_reads_only_the_named_containers() {
        let w = UsageWindows::uniform(Duration::from_secs(300));
        let now = chrono::Utc.timestamp_opt(10_000, 0).unwrap();
        let values: HashSet<&str> = ["a/b", "c.d"].into();
        let narrow = Narrow {
            tag: "container_interface",
            values: &values,
            ignore_case: false,
        };
        for q in usage_queries(&source("m"), &w, now, Some(narrow)) {
            assert!(
                q.contains(r#"AND "container_interface" =~ /^(a\/b|c\.d)$/"#),
                "{q}"
            );
        }
        let apps = Narrow {
            tag: "application_id",
            ignore_case: true,
            ..narrow
        };
        for (_, _, q) in usage_promql(&source("m"), &w, "db", Some(apps)) {
            assert!(q.contains(r#"application_id=~"(?i)(a/b|c\\.d)""#), "{q}");
        }
        for q in usage_queries(&source("m"), &w, now, None) {
            assert!(!q.contains("=~"), "{q}");
        }
    }
}
