//! The alarmed readings' recent past, for a notifier that shows it (a chart in an alarm mail):
//! read just before a send, with ONE store query per origin for a whole claimed batch, so the
//! cost follows the alarms, not the fleet. Each origin's collector knows its series
//! ([`Collector::history`]); the host reads through the store's query client, in stream mode
//! too (the stream keeps minutes, a chart shows an hour). What cannot be read leaves the
//! notification with the reason instead, and the send goes on as it would without a chart.

use crate::metric_store::MetricStore;
use crate::model::{Level, Origin, Policy, Timestamp};
use crate::plugin::{
    Collector, History, HistoryContext, HistoryPoint, HistoryWish, Notification, NotificationKind,
    ReadingHistory, SeriesKey,
};
use sqlx::MySqlPool;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the history is read: the enabled collectors (each knows its origin's series) and the
/// store's query client (`MetricStore::history_client`).
pub struct HistorySource {
    pub collectors: Vec<(&'static str, Arc<dyn Collector>)>,
    pub metrics: MetricStore,
}

/// The shortest step of a history: a point a minute (an hour is 60 points), or the writers'
/// period when that is longer.
const MIN_STEP: Duration = Duration::from_secs(60);

/// The longest a history read may take: a chart is worth a few seconds of a mail's time, not
/// the step timeout (a store that hangs costs this once per run, see `failed`).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One notify run's reader: the policies (the chart's thresholds) read once, and an origin
/// whose read failed not asked again in the run, so a store that is down costs one timeout.
pub struct HistoryReader<'a> {
    source: &'a HistorySource,
    pool: MySqlPool,
    default_measure_seconds: u64,
    bucket_seconds: u64,
    /// the bound of one read: the step timeout, at most [`READ_TIMEOUT`]
    timeout: Duration,
    policies: Option<Vec<Policy>>,
    failed: HashMap<Origin, String>,
}

impl<'a> HistoryReader<'a> {
    pub fn new(
        source: &'a HistorySource,
        pool: MySqlPool,
        default_measure_seconds: u64,
        bucket_seconds: u64,
        timeout: Duration,
    ) -> Self {
        Self {
            source,
            pool,
            default_measure_seconds,
            bucket_seconds,
            timeout: timeout.min(READ_TIMEOUT),
            policies: None,
            failed: HashMap::new(),
        }
    }

    /// Queries the store answered for this run's histories.
    pub fn queries(&self) -> u64 {
        self.source
            .metrics
            .stats()
            .queries
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fills [`Notification::history`] of the notifications in `units` (each unit one message)
    /// that `wish` covers: every single one, and the first `wish.per_digest` of a digest in
    /// its order. `deadline`: the notify budget, which a read never runs past.
    pub async fn fill<T>(
        &mut self,
        units: &mut [Vec<T>],
        notification: impl Fn(&mut T) -> &mut Notification,
        wish: HistoryWish,
        deadline: Instant,
    ) {
        // the notifications to fill, by (unit, row)
        let mut chosen: Vec<(usize, usize)> = Vec::new();
        for (u, unit) in units.iter_mut().enumerate() {
            if unit.len() == 1 {
                chosen.push((u, 0));
                continue;
            }
            let batch: Vec<Notification> =
                unit.iter_mut().map(|r| notification(r).clone()).collect();
            let mut order: Vec<usize> = Vec::new();
            for (_, list) in crate::notify::digest::sections(&batch) {
                for n in list {
                    if let Some(i) = batch.iter().position(|b| std::ptr::eq(b, n)) {
                        order.push(i);
                    }
                }
            }
            chosen.extend(order.into_iter().take(wish.per_digest).map(|i| (u, i)));
        }
        let mut wanted: BTreeMap<Origin, Vec<SeriesKey>> = BTreeMap::new();
        let mut keyed: Vec<(usize, usize, SeriesKey)> = Vec::new();
        for (u, i) in chosen {
            let n = notification(&mut units[u][i]);
            match SeriesKey::of(n) {
                Ok(key) => {
                    let keys = wanted.entry(key.origin).or_default();
                    if !keys.contains(&key) {
                        keys.push(key.clone());
                    }
                    keyed.push((u, i, key));
                }
                Err(why) => {
                    tracing::debug!(alarm_id = n.alarm_id, "no history to show: {why}");
                }
            }
        }
        if keyed.is_empty() {
            return;
        }
        let now = chrono::Utc::now();
        let step = MIN_STEP.max(Duration::from_secs(self.bucket_seconds));
        let span = wish.span.max(step);
        let mut read: HashMap<Origin, Result<HashMap<SeriesKey, Vec<HistoryPoint>>, String>> =
            HashMap::new();
        for (origin, keys) in &wanted {
            let answer = self
                .read_origin(*origin, keys, now, span, step, deadline)
                .await;
            read.insert(*origin, answer);
        }
        self.load_policies().await;
        for (u, i, key) in keyed {
            let n = notification(&mut units[u][i]);
            let history = match read.get(&key.origin) {
                Some(Ok(series)) => match series.get(&key).filter(|p| !p.is_empty()) {
                    Some(points) => History::Read(Arc::new(self.chart_of(
                        n,
                        &key,
                        points.clone(),
                        (
                            now - chrono::Duration::from_std(span).unwrap_or_default(),
                            now,
                        ),
                    ))),
                    None => History::Unavailable(format!(
                        "no data for this reading in the last {} min",
                        span.as_secs() / 60
                    )),
                },
                Some(Err(why)) => History::Unavailable(why.clone()),
                None => History::Unavailable("not read".into()),
            };
            n.history = Some(history);
        }
    }

    /// One origin's keys through its collector, bounded by the read timeout and the deadline.
    async fn read_origin(
        &mut self,
        origin: Origin,
        keys: &[SeriesKey],
        now: Timestamp,
        span: Duration,
        step: Duration,
        deadline: Instant,
    ) -> Result<HashMap<SeriesKey, Vec<HistoryPoint>>, String> {
        if let Some(why) = self.failed.get(&origin) {
            return Err(format!("{why} (an earlier read in this run)"));
        }
        let Some((name, collector)) = self
            .source
            .collectors
            .iter()
            .find(|(_, c)| c.origin() == origin)
        else {
            return Err(format!(
                "no enabled collector reads origin {origin} (its history cannot be read)"
            ));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let bound = self.timeout.min(left);
        let ctx = HistoryContext {
            now,
            span,
            step,
            bucket_seconds: self.bucket_seconds,
            metrics: &self.source.metrics,
        };
        let store = format!(
            "{} {}",
            self.source.metrics.backend().as_str(),
            self.source.metrics.url()
        );
        let result = match tokio::time::timeout(bound, collector.history(&ctx, keys)).await {
            Ok(Ok(series)) => Ok(series),
            Ok(Err(e)) => Err(format!(
                "reading the history from the metric store ({store}) through collector {name}: {e:#}"
            )),
            Err(_) => Err(format!(
                "reading the history from the metric store ({store}) through collector {name}: no answer within {} s",
                bound.as_secs_f64().ceil()
            )),
        };
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        metrics::counter!("monit_history_reads_total", "origin" => origin.code(), "result" => outcome)
            .increment(1);
        if let Err(why) = &result {
            self.failed.insert(origin, why.clone());
        }
        result
    }

    /// The policies, read once per run; a failed read leaves each chart the threshold its
    /// notification states.
    async fn load_policies(&mut self) {
        if self.policies.is_some() {
            return;
        }
        self.policies = Some(
            match crate::store::load_policies(&self.pool, self.default_measure_seconds).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(
                        "charts: alarm_policies could not be read, each chart shows only the threshold its alarm states: {e:#}"
                    );
                    Vec::new()
                }
            },
        );
    }

    fn chart_of(
        &self,
        n: &Notification,
        key: &SeriesKey,
        points: Vec<HistoryPoint>,
        (from, to): (Timestamp, Timestamp),
    ) -> ReadingHistory {
        let policy = self
            .policies
            .iter()
            .flatten()
            .find(|p| p.origin == key.origin && p.resource == key.resource);
        let (mut warning, mut critical) = (policy.map(|p| p.warning), policy.map(|p| p.critical));
        if policy.is_none() {
            match n.level {
                Level::Warning => warning = n.threshold,
                Level::Critical => critical = n.threshold,
                Level::Fail => {}
            }
        }
        let window = policy
            .map(|p| p.measure_seconds)
            .unwrap_or(self.default_measure_seconds);
        ReadingHistory {
            resource: key.resource,
            from,
            to,
            points,
            warning,
            critical,
            breach: breach(n, window, from, to),
        }
    }
}

/// When the reading breached, as the chart shades it: from the start of the window whose mean
/// opened the alarm to this event; a recovery ends at the start of the window that was all
/// under the warning threshold. Clipped to `from..to`; None when it lies outside.
pub fn breach(
    n: &Notification,
    window_seconds: u64,
    from: Timestamp,
    to: Timestamp,
) -> Option<(Timestamp, Timestamp)> {
    let window = chrono::Duration::seconds(i64::try_from(window_seconds).unwrap_or(i64::MAX / 4));
    let start = n.raised_at - window;
    let end = match n.kind {
        NotificationKind::Recovered => n.event_at - window,
        _ => n.event_at,
    }
    .max(start);
    let (start, end) = (start.max(from), end.min(to));
    (start < end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2024, 5, 1, h, m, 0)
            .single()
            .unwrap()
    }

    #[test]
    fn the_breach_starts_a_window_before_the_alarm_and_ends_at_the_event() {
        let mut n = crate::testing::vm_notification();
        n.raised_at = at(9, 30);
        n.event_at = at(9, 40);
        let (from, to) = (at(9, 0), at(10, 0));
        assert_eq!(breach(&n, 300, from, to), Some((at(9, 25), at(9, 40))));
        // a recovery ends where the window that recovered begins
        n.kind = NotificationKind::Recovered;
        assert_eq!(breach(&n, 300, from, to), Some((at(9, 25), at(9, 35))));
        // clipped to the span, and none when outside it
        n.kind = NotificationKind::Repeated;
        n.raised_at = at(7, 0);
        assert_eq!(breach(&n, 300, from, to), Some((at(9, 0), at(9, 40))));
        n.event_at = at(8, 0);
        assert_eq!(breach(&n, 300, from, to), None);
    }
}
