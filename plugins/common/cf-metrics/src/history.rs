//! The recent past of given readings, for the charts in alarm mails ([`Collector::history`]):
//! each reading's mean per step over a span (an hour, a point a minute), for the alarmed
//! readings only, in ONE store query per measurement whatever their number: the query is
//! narrowed to their VMs (`ip`) or containers (cell, app, index), so what the store reads
//! follows the alarms, not the fleet. Always from the store (InfluxQL `GROUP BY time(step)`,
//! or a Prometheus-API range query), never from the stream's windows, which keep minutes.
//!
//! A step's value is folded as the collectors fold a window: a VM's CPU is the mean over its
//! cores, its memory `UsedPercent` or `100 × (1 − Available/Total)`, its disk the fullest
//! mount; a container's CPU the counter's increase over the step × 100 (percent of one core),
//! its memory and disk the step's mean over the limit.
//!
//! [`Collector::history`]: monit_host::plugin::Collector::history

use crate::container::{CPU_SERIES, ContainerSource, DISK_SERIES, MEMORY_SERIES, UsageWindows};
use crate::vm::{Raw, SeriesAgg, VALUE_BOUND, metric_regex};
use monit_host::metric_store::influx::{Series, ident, string};
use monit_host::metric_store::prometheus;
use monit_host::metric_store::{MetricStore, MetricStoreError};
use monit_host::model::{Origin, Resource, Timestamp};
use monit_host::plugin::{HistoryContext, HistoryPoint, SeriesKey};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The span read, in epoch seconds: a point at the end of each `step` of `[start, end)`
/// (InfluxDB's time buckets; a Prometheus-API range query's windows end at the same times).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Span {
    /// The span of a history read: `ctx.span` up to `ctx.now`, a point every `ctx.step`, on
    /// whole steps (so both stores cut the same steps): its end is the end of the step `now` is
    /// in, whose point holds what has arrived of it (the breach of a short window is there).
    pub fn of(ctx: &HistoryContext<'_>) -> Self {
        let step = i64::try_from(ctx.step.as_secs().max(1)).unwrap_or(60);
        let span = i64::try_from(ctx.span.as_secs()).unwrap_or(3600).max(step);
        let end = ctx
            .now
            .timestamp()
            .saturating_add(step - 1)
            .div_euclid(step)
            * step;
        Span {
            start: end - span,
            end,
            step,
        }
    }

    /// The time a bucket starting at `t` is shown at: its end, never past the span's.
    fn label(&self, bucket_start: i64) -> i64 {
        (bucket_start + self.step).min(self.end)
    }

    fn within(&self, t: i64) -> bool {
        t > self.start && t <= self.end
    }
}

/// The store's query client: a stream handle's inside (the stream keeps minutes).
fn query_store(store: &MetricStore) -> &MetricStore {
    match store {
        MetricStore::Stream(h) => query_store(&h.query),
        s => s,
    }
}

fn timestamp(t: i64) -> Option<Timestamp> {
    chrono::DateTime::from_timestamp(t, 0)
}

/// `a|b|c` of the values, each escaped so it matches only itself (sorted: one query text per
/// set).
fn alternation<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let set: BTreeSet<String> = values.into_iter().map(regex::escape).collect();
    set.into_iter().collect::<Vec<_>>().join("|")
}

/// The distinct resources of `keys`, in a fixed order.
fn resources(keys: &[SeriesKey]) -> Vec<Resource> {
    Resource::ALL
        .into_iter()
        .filter(|r| keys.iter().any(|k| k.resource == *r))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// VMs

/// Where a VM reader's series are (as [`crate::vm::VmQuery`] says it): a measurement, an
/// optional tag filter (the BOSH director's `origin`), the tag that tells VMs apart (`ip`;
/// `None`: every series is the one VM's).
#[derive(Clone, Copy, Debug)]
pub struct VmHistory<'a> {
    pub db: &'a str,
    pub measurement: &'a str,
    pub filter: Option<(&'a str, &'a str)>,
    pub group_by: Option<&'a str>,
}

impl VmHistory<'_> {
    /// One InfluxQL statement per resource (sent as one query): each metric's mean per step of
    /// the VMs in `ips` (all of the measurement's when `group_by` is `None`).
    pub fn to_influxql(&self, resources: &[Resource], ips: &BTreeSet<&str>, span: Span) -> String {
        let value = ident("value");
        resources
            .iter()
            .map(|r| {
                let mut q = format!(
                    "SELECT mean({value}) AS \"mean\" FROM {} WHERE time >= {}s AND time < {}s \
                     AND {value} > -{VALUE_BOUND:.1} AND {value} < {VALUE_BOUND:.1} \
                     AND \"metricname\" =~ /^{}$/",
                    ident(self.measurement),
                    span.start,
                    span.end,
                    metric_regex(*r).replace('/', r"\/"),
                );
                if *r != Resource::Memory {
                    q.push_str(&format!(" AND {value} >= 0 AND {value} <= 101"));
                }
                if let Some((tag, v)) = self.filter {
                    q.push_str(&format!(" AND {} = {}", ident(tag), string(v)));
                }
                if let Some(tag) = self.group_by {
                    q.push_str(&format!(
                        " AND {} =~ /^({})$/",
                        ident(tag),
                        alternation(ips.iter().copied()).replace('/', r"\/")
                    ));
                }
                q.push_str(&format!(" GROUP BY time({}s), ", span.step));
                if let Some(tag) = self.group_by {
                    q.push_str(&ident(tag));
                    q.push_str(", ");
                }
                q.push_str("\"metricname\" fill(none)");
                q
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One PromQL range query for every resource: each metric's mean per step of the VMs in
    /// `ips`. `db_label` names the label holding the InfluxDB database (empty: none).
    pub fn to_promql(
        &self,
        resources: &[Resource],
        ips: &BTreeSet<&str>,
        db_label: &str,
        span: Span,
    ) -> String {
        let names: Vec<String> = resources
            .iter()
            .map(|r| format!("(?:{})", metric_regex(*r)))
            .collect();
        let mut sel = format!(
            "{{__name__={}, metricname=~{}",
            prometheus::string(&format!("{}_value", self.measurement)),
            prometheus::string(&names.join("|")),
        );
        if !db_label.is_empty() {
            sel.push_str(&format!(", {db_label}={}", prometheus::string(self.db)));
        }
        if let Some((tag, v)) = self.filter {
            sel.push_str(&format!(", {tag}={}", prometheus::string(v)));
        }
        if let Some(tag) = self.group_by {
            sel.push_str(&format!(
                ", {tag}=~{}",
                prometheus::string(&alternation(ips.iter().copied()))
            ));
        }
        sel.push('}');
        let by = match self.group_by {
            Some(tag) => format!("{tag}, metricname"),
            None => "metricname".to_string(),
        };
        format!("max by ({by}) (avg_over_time({sel}[{}s]))", span.step)
    }

    /// The history of `keys` (VM readings of this measurement): ONE query.
    pub async fn read(
        &self,
        ctx: &HistoryContext<'_>,
        keys: &[SeriesKey],
    ) -> Result<HashMap<SeriesKey, Vec<HistoryPoint>>, MetricStoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        for tag in self.filter.map(|f| f.0).into_iter().chain(self.group_by) {
            if !prometheus::is_label_name(tag) {
                return Err(prometheus::PrometheusError::Setup(format!(
                    "{tag:?} is not a Prometheus label name"
                ))
                .into());
            }
        }
        let span = Span::of(ctx);
        let wanted = resources(keys);
        let ips: BTreeSet<&str> = keys.iter().map(|k| k.ip.as_str()).collect();
        // (VM, bucket end) → the metrics' means, folded as a window is
        let mut fold: BTreeMap<(String, i64), Raw> = BTreeMap::new();
        let mut add = |vm: &str, metric: &str, t: i64, mean: f64| {
            if !span.within(t) || !mean.is_finite() {
                return;
            }
            let agg = SeriesAgg {
                mean,
                max: mean,
                min: mean,
                count: 1.0,
            };
            fold.entry((vm.to_string(), t))
                .or_default()
                .add(metric, &agg);
        };
        match query_store(ctx.metrics) {
            MetricStore::Prometheus(c) => {
                let q = self.to_promql(&wanted, &ips, c.db_label(), span);
                for s in c
                    .query_range(&q, span.start + span.step, span.end, span.step as u64)
                    .await?
                {
                    let vm = self.group_by.map(|t| s.label(t)).unwrap_or_default();
                    for (t, v) in &s.points {
                        add(vm, s.label("metricname"), *t, *v);
                    }
                }
            }
            MetricStore::Influx(c) => {
                let q = self.to_influxql(&wanted, &ips, span);
                c.query_fold(self.db, &q, |s: Series| {
                    let (Some(metric), Some(mi), Some(ti)) =
                        (s.tag("metricname"), s.column("mean"), s.column("time"))
                    else {
                        return;
                    };
                    let vm = self.group_by.and_then(|t| s.tag(t)).unwrap_or_default();
                    for row in &s.values {
                        let cell = |i: usize| row.get(i).and_then(|c| c.as_f64());
                        if let (Some(t), Some(mean)) = (cell(ti), cell(mi)) {
                            add(vm, metric, span.label(t as i64), mean);
                        }
                    }
                })
                .await?;
            }
            // query_store never answers the stream
            MetricStore::Stream(_) => {}
        }
        let windows = UsageWindows::uniform(std::time::Duration::from_secs(span.step as u64));
        let mut by_vm: HashMap<(String, Resource), Vec<HistoryPoint>> = HashMap::new();
        for ((vm, t), raw) in fold {
            let usage = raw.usage(span.step as u64, &windows);
            let Some(at) = timestamp(t) else { continue };
            for r in &wanted {
                if let Some(s) = usage.get(*r) {
                    by_vm
                        .entry((vm.clone(), *r))
                        .or_default()
                        .push((at, s.mean));
                }
            }
        }
        Ok(keys
            .iter()
            .filter_map(|k| {
                let vm = if self.group_by.is_some() {
                    k.ip.clone()
                } else {
                    String::new()
                };
                by_vm
                    .get(&(vm, k.resource))
                    .map(|points| (k.clone(), points.clone()))
            })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Containers

/// The tags that tell app containers apart in the history: the cell, the app and its index,
/// and the container (two containers of one instance: the higher usage speaks, as in the
/// collector).
const CONTAINER_TAGS: [&str; 4] = [
    "cell_ip",
    "application_name",
    "application_index",
    "container_interface",
];

/// A container key of `keys`: (cell IP, app name, instance index).
type Instance = (String, String, i32);

fn instances(keys: &[SeriesKey]) -> BTreeSet<Instance> {
    keys.iter()
        .filter(|k| k.origin == Origin::Con)
        .filter_map(|k| {
            k.app
                .as_ref()
                .map(|(app, i)| (k.ip.clone(), app.clone(), *i))
        })
        .collect()
}

fn series_name(r: Resource) -> &'static str {
    match r {
        Resource::Cpu => CPU_SERIES,
        Resource::Memory => MEMORY_SERIES,
        Resource::Disk => DISK_SERIES,
    }
}

fn limit_field(r: Resource) -> &'static str {
    match r {
        Resource::Disk => "app_disk",
        _ => "app_mem",
    }
}

fn resource_of_series(name: &str) -> Option<Resource> {
    match name {
        CPU_SERIES => Some(Resource::Cpu),
        MEMORY_SERIES => Some(Resource::Memory),
        DISK_SERIES => Some(Resource::Disk),
        _ => None,
    }
}

/// The history of app containers' readings in `source` ([`crate::container`]'s series).
#[derive(Clone, Copy, Debug)]
pub struct ContainerHistory<'a> {
    pub source: &'a ContainerSource,
}

impl ContainerHistory<'_> {
    /// One InfluxQL statement per resource (sent as one query), narrowed to the instances:
    /// the CPU counter's highest point per step (one step more, for the first increase), the
    /// memory and disk mean per step with the step's last limit.
    pub fn to_influxql(
        &self,
        resources: &[Resource],
        instances: &BTreeSet<Instance>,
        span: Span,
    ) -> String {
        let value = ident("value");
        let matcher = instances
            .iter()
            .map(|(cell, app, index)| {
                format!(
                    "({} = {} AND {} = {} AND {} = {})",
                    ident("cell_ip"),
                    string(cell),
                    ident("application_name"),
                    string(app),
                    ident("application_index"),
                    string(&index.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        // `name` too: its tag tells the fold which resource a series is
        let group_by: Vec<String> = std::iter::once("name")
            .chain(CONTAINER_TAGS)
            .map(ident)
            .collect();
        resources
            .iter()
            .map(|r| {
                let (select, start) = match r {
                    Resource::Cpu => (
                        format!("max({value}) AS \"counter\""),
                        span.start - span.step,
                    ),
                    _ => (
                        format!(
                            "mean({value}) AS \"mean\", last({}) AS \"limit\"",
                            ident(limit_field(*r))
                        ),
                        span.start,
                    ),
                };
                format!(
                    "SELECT {select} FROM {} WHERE time >= {start}s AND time < {}s \
                     AND {value} > -{VALUE_BOUND:.1} AND {value} < {VALUE_BOUND:.1} \
                     AND {} = {} AND {} <> '/' AND {} <> '' AND ({matcher}) \
                     GROUP BY time({}s), {} fill(none)",
                    ident(&self.source.measurement),
                    span.end,
                    ident("name"),
                    string(series_name(*r)),
                    ident("container_id"),
                    ident("application_name"),
                    span.step,
                    group_by.join(", "),
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One PromQL range query for every resource, narrowed to the instances' cells, apps and
    /// indexes (a superset when several are asked for: the fold keeps only theirs).
    pub fn to_promql(
        &self,
        resources: &[Resource],
        instances: &BTreeSet<Instance>,
        db_label: &str,
        span: Span,
    ) -> String {
        let m = &self.source.measurement;
        let selector = |field: &str, r: Resource| {
            let mut s = format!(
                "{{__name__={}, name={}, container_id!=\"/\", application_name!=\"\"",
                prometheus::string(&format!("{m}_{field}")),
                prometheus::string(series_name(r)),
            );
            if !db_label.is_empty() {
                s.push_str(&format!(
                    ", {db_label}={}",
                    prometheus::string(&self.source.db)
                ));
            }
            s.push_str(&format!(
                ", cell_ip=~{}, application_name=~{}, application_index=~{}}}",
                prometheus::string(&alternation(instances.iter().map(|i| i.0.as_str()))),
                prometheus::string(&alternation(instances.iter().map(|i| i.1.as_str()))),
                prometheus::string(&alternation(
                    instances
                        .iter()
                        .map(|i| i.2.to_string())
                        .collect::<Vec<_>>()
                        .iter()
                        .map(String::as_str)
                )),
            ));
            s
        };
        let each = CONTAINER_TAGS.join(", ") + ", name";
        let by = "cell_ip, application_name, application_index, name";
        let step = span.step;
        resources
            .iter()
            .map(|r| match r {
                // the counter's rate over two steps: at least two points of a writer that
                // flushes once a step
                Resource::Cpu => format!(
                    "max by ({by}) (100 * rate({}[{}s]))",
                    selector("value", *r),
                    2 * step
                ),
                _ => format!(
                    "max by ({by}) (100 * max by ({each}) (avg_over_time({}[{step}s])) \
                     / max by ({each}) (last_over_time({}[{step}s]) > 0))",
                    selector("value", *r),
                    selector(limit_field(*r), *r),
                ),
            })
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// The history of `keys` (container readings): ONE query.
    pub async fn read(
        &self,
        ctx: &HistoryContext<'_>,
        keys: &[SeriesKey],
    ) -> Result<HashMap<SeriesKey, Vec<HistoryPoint>>, MetricStoreError> {
        let wanted_instances = instances(keys);
        if wanted_instances.is_empty() {
            return Ok(HashMap::new());
        }
        let span = Span::of(ctx);
        let wanted = resources(keys);
        // (instance, resource) → bucket end → the highest usage of its containers
        let mut fold: HashMap<(Instance, Resource), BTreeMap<i64, f64>> = HashMap::new();
        let mut add = |instance: Instance, r: Resource, t: i64, usage: f64| {
            if !span.within(t) || !usage.is_finite() || !wanted_instances.contains(&instance) {
                return;
            }
            let slot = fold
                .entry((instance, r))
                .or_default()
                .entry(t)
                .or_insert(usage);
            *slot = slot.max(usage);
        };
        let index_of = |s: &str| s.trim().parse::<i32>().unwrap_or(0);
        match query_store(ctx.metrics) {
            MetricStore::Prometheus(c) => {
                let q = self.to_promql(&wanted, &wanted_instances, c.db_label(), span);
                for s in c
                    .query_range(&q, span.start + span.step, span.end, span.step as u64)
                    .await?
                {
                    let Some(r) = resource_of_series(s.label("name")) else {
                        continue;
                    };
                    let instance = (
                        s.label("cell_ip").to_string(),
                        s.label("application_name").to_string(),
                        index_of(s.label("application_index")),
                    );
                    for (t, v) in &s.points {
                        add(instance.clone(), r, *t, *v);
                    }
                }
            }
            MetricStore::Influx(c) => {
                let q = self.to_influxql(&wanted, &wanted_instances, span);
                c.query_fold(&self.source.db, &q, |s: Series| {
                    let Some(r) = s.tag("name").and_then(resource_of_series) else {
                        return;
                    };
                    let Some(ti) = s.column("time") else { return };
                    let instance = (
                        s.tag("cell_ip").unwrap_or_default().to_string(),
                        s.tag("application_name").unwrap_or_default().to_string(),
                        index_of(s.tag("application_index").unwrap_or_default()),
                    );
                    let cell = |row: &[monit_host::metric_store::influx::Cell],
                                i: Option<usize>| {
                        i.and_then(|i| row.get(i)).and_then(|c| c.as_f64())
                    };
                    if r == Resource::Cpu {
                        let ci = s.column("counter");
                        let mut rows: Vec<(i64, f64)> = s
                            .values
                            .iter()
                            .filter_map(|row| Some((cell(row, Some(ti))? as i64, cell(row, ci)?)))
                            .collect();
                        rows.sort_by_key(|p| p.0);
                        for w in rows.windows(2) {
                            let ((t0, c0), (t1, c1)) = (w[0], w[1]);
                            // a counter that fell restarted: no rate for that step
                            if t1 > t0 && c1 >= c0 {
                                let rate = (c1 - c0) / (t1 - t0) as f64 * 100.0;
                                add(instance.clone(), r, span.label(t1), rate);
                            }
                        }
                        return;
                    }
                    let (mi, li) = (s.column("mean"), s.column("limit"));
                    for row in &s.values {
                        if let (Some(t), Some(mean), Some(limit)) =
                            (cell(row, Some(ti)), cell(row, mi), cell(row, li))
                            && limit > 0.0
                        {
                            add(
                                instance.clone(),
                                r,
                                span.label(t as i64),
                                mean / limit * 100.0,
                            );
                        }
                    }
                })
                .await?;
            }
            MetricStore::Stream(_) => {}
        }
        Ok(keys
            .iter()
            .filter_map(|k| {
                let (app, index) = k.app.clone()?;
                let points = fold.get(&((k.ip.clone(), app, index), k.resource))?;
                let points: Vec<HistoryPoint> = points
                    .iter()
                    .filter_map(|(t, v)| Some((timestamp(*t)?, *v)))
                    .collect();
                Some((k.clone(), points))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span() -> Span {
        Span {
            start: 996_400,
            end: 1_000_000,
            step: 60,
        }
    }

    #[test]
    fn the_span_ends_with_the_step_now_is_in() {
        let store = MetricStore::from(
            monit_host::metric_store::influx::InfluxClient::new(&Default::default()).unwrap(),
        );
        let at = |t: i64| HistoryContext {
            now: chrono::DateTime::from_timestamp(t, 0).unwrap(),
            span: std::time::Duration::from_secs(3600),
            step: std::time::Duration::from_secs(60),
            bucket_seconds: 30,
            metrics: &store,
        };
        let s = Span::of(&at(1_000_030));
        assert_eq!((s.start, s.end, s.step), (996_480, 1_000_080, 60));
        assert_eq!(s.end - s.start, 3600);
        // on a whole minute: that minute is the end
        let s = Span::of(&at(1_000_020));
        assert_eq!((s.start, s.end), (996_420, 1_000_020));
    }

    #[test]
    fn vm_influxql_is_one_statement_per_resource_narrowed_to_the_vms() {
        let h = VmHistory {
            db: "cf_metric_db",
            measurement: "cf_metrics",
            filter: None,
            group_by: Some("ip"),
        };
        let ips: BTreeSet<&str> = ["10.0.0.1", "a/b|c"].into_iter().collect();
        let q = h.to_influxql(&[Resource::Cpu, Resource::Memory], &ips, span());
        assert_eq!(q.matches("SELECT").count(), 2, "{q}");
        assert_eq!(
            q.matches(r#""ip" =~ /^(10\.0\.0\.1|a\/b\|c)$/"#).count(),
            2,
            "{q}"
        );
        assert_eq!(
            q.matches("GROUP BY time(60s), \"ip\", \"metricname\" fill(none)")
                .count(),
            2,
            "{q}"
        );
        assert!(q.contains("time >= 996400s AND time < 1000000s"), "{q}");
        // percentages checked per point where the series are percentages
        assert_eq!(q.matches("\"value\" <= 101").count(), 1, "{q}");
    }

    #[test]
    fn vm_promql_is_one_range_query_for_every_resource() {
        let h = VmHistory {
            db: "bosh_metric_db",
            measurement: "bosh_metrics",
            filter: Some(("origin", "micro\"bosh")),
            group_by: None,
        };
        let q = h.to_promql(
            &[Resource::Cpu, Resource::Disk],
            &BTreeSet::new(),
            "db",
            span(),
        );
        assert!(q.starts_with("max by (metricname) (avg_over_time("), "{q}");
        assert!(q.contains(r#"origin="micro\"bosh""#), "{q}");
        assert!(q.contains(r#"db="bosh_metric_db""#), "{q}");
        assert!(q.contains("[60s]"), "{q}");
        assert!(!q.contains("memoryStats"), "{q}");
    }

    #[test]
    fn container_queries_match_exactly_the_instances() {
        let source = ContainerSource {
            db: "container_metric_db".into(),
            measurement: "container_metrics".into(),
            bucket_seconds: 30,
        };
        let h = ContainerHistory { source: &source };
        let inst: BTreeSet<Instance> = [("10.0.16.21".to_string(), "sh'op".to_string(), 2)]
            .into_iter()
            .collect();
        let q = h.to_influxql(&[Resource::Cpu, Resource::Memory], &inst, span());
        assert_eq!(q.matches("SELECT").count(), 2, "{q}");
        assert!(
            q.contains(r#"("cell_ip" = '10.0.16.21' AND "application_name" = 'sh\'op' AND "application_index" = '2')"#),
            "{q}"
        );
        // one step before the span, for the counter's first increase
        assert!(
            q.contains(
                "max(\"value\") AS \"counter\" FROM \"container_metrics\" WHERE time >= 996340s"
            ),
            "{q}"
        );
        assert!(q.contains("last(\"app_mem\") AS \"limit\""), "{q}");
        let p = h.to_promql(&[Resource::Cpu, Resource::Disk], &inst, "", span());
        assert_eq!(p.matches(" or ").count(), 1, "{p}");
        assert!(p.contains("rate("), "{p}");
        assert!(p.contains("container_metrics_app_disk"), "{p}");
        assert!(p.contains(r#"application_name=~"sh'op""#), "{p}");
    }
}
