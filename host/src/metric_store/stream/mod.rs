//! Stream mode (`[metrics] mode = "stream"`): the writers' points arrive on the batch's HTTP port
//! (an InfluxDB subscription's `POST /write`, vmagent's `POST /api/v1/write`) and are kept per
//! series for the longest window a reader needs ([`window`]); a tick's readers fold them as the
//! store would have ([`MetricStore::Stream`](crate::metric_store::MetricStore::Stream)).
//!
//! A room of the metric-store stage: the HTTP routes (`run/http.rs`) hand the bodies in here;
//! which series are kept is declared by the readers (`StreamSeries`, from the collectors).
//! Decoding is `monit-wire`'s.

pub mod window;

pub use window::{GroupRef, NameFilter, SeriesRef, StoredPoint, StreamSeries, Windows};

use crate::config::StreamSettings;
use crate::metric_store::MetricStore;
use monit_wire::line::{Lines, Precision};
use monit_wire::remote_write::{self, InfluxNaming};
use parking_lot::{RwLock, RwLockReadGuard};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq;
use window::Refused;

/// Points are kept this much longer than the longest window. What is dropped is older than an
/// arrival's wall clock minus the retention, and a tick reads back from its own later `now`:
/// any margin is safe; one writer period keeps a point more than any window reads, no more
/// (every point kept is memory times the fleet).
const RETENTION_MARGIN: Duration = Duration::from_secs(30);
/// Kept until the first tick says how long the policies' windows are: longer than any usual
/// `measure_time`, and the cost is bounded by `max_series` anyway.
const INITIAL_RETENTION: Duration = Duration::from_secs(3600);
/// Ingest bodies read or stored at once: one stored while the next is read.
const INGEST_SLOTS: usize = 2;
/// No timestamp of the first point yet.
const NONE: i64 = i64::MIN;

/// The credentials writers must send, compared in constant time.
pub struct Credentials {
    /// `username:password`, as basic auth carries it
    basic: Option<Vec<u8>>,
    token: Option<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(***)")
    }
}

impl Credentials {
    pub fn new(s: &StreamSettings) -> Self {
        Self {
            basic: (!s.username.is_empty() && !s.password.is_empty())
                .then(|| format!("{}:{}", s.username, s.password.expose()).into_bytes()),
            token: (!s.token.is_empty()).then(|| s.token.expose().as_bytes().to_vec()),
        }
    }

    /// True when the `Authorization` header carries the configured basic auth or token.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        use base64::Engine as _;
        let Some(h) = authorization else {
            return false;
        };
        let scheme = |name: &str| {
            h.get(..name.len())
                .filter(|p| p.eq_ignore_ascii_case(name.as_bytes()))
                .and_then(|_| h.get(name.len()..))
                .map(|rest| rest.trim_ascii())
        };
        if let (Some(want), Some(given)) = (&self.basic, scheme("basic ")) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(given)
                .unwrap_or_default();
            if bool::from(decoded.as_slice().ct_eq(want.as_slice())) {
                return true;
            }
        }
        if let (Some(want), Some(given)) = (&self.token, scheme("bearer ")) {
            return bool::from(given.ct_eq(want.as_slice()));
        }
        false
    }
}

/// What one body brought.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// points stored
    pub points: u64,
    /// lines or series refused as malformed
    pub malformed: u64,
    /// points of new series refused at `stream.max_series`
    pub over_max_series: u64,
}

/// The window state and what the ingest endpoints need.
pub struct StreamState {
    windows: RwLock<Windows>,
    retention_ns: AtomicI64,
    /// wall-clock time the first point of a measurement read arrived (ns), [`NONE`] before
    first_point_ns: AtomicI64,
    full_warned: AtomicBool,
    pub credentials: Credentials,
    /// largest body after decompression, and before (`stream.max_body_bytes`)
    pub max_body_bytes: usize,
    /// the longest look-back a reader has whatever the policies (their `min_span`)
    pub min_span: Duration,
    /// bodies being read or stored at once: the points are stored under one lock anyway, and
    /// each body waiting is memory (InfluxDB posts up to `write-concurrency` writes at once)
    pub ingest_slots: Arc<tokio::sync::Semaphore>,
    /// per database: when its points began arriving without a pause, and the newest arrival
    arrivals: Mutex<HashMap<String, Arrivals>>,
    /// a pause longer than this (ns) restarts a database's run (`influx.bucket_seconds`, set by
    /// the tick); none before the first tick
    quiet_ns: AtomicI64,
    /// InfluxDB's `subWriteDrop` at the last tick ([`NONE`] before the first read)
    sub_write_drop: AtomicI64,
    /// wall-clock time (ns) until which the stream is not trusted after a drop
    gap_until_ns: AtomicI64,
    /// ticks read from the stream, for `stream.reconcile_every`
    stream_ticks: AtomicU64,
    /// the longest span another reader asked to be kept (the scaler's check windows, ns)
    asked_span_ns: AtomicI64,
    /// wall-clock time (ns) the retention last grew: what is older may have been dropped
    retention_grew_ns: AtomicI64,
}

/// When a database's points arrived (wall clock, ns).
#[derive(Clone, Copy, Debug)]
struct Arrivals {
    since: i64,
    last: i64,
}

/// Whether a database's stream can be read this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// points arriving, for at least the span
    Covered,
    /// nothing within two `influx.bucket_seconds`, or not for the span since a pause
    Quiet,
}

impl StreamState {
    pub fn new(settings: &StreamSettings, series: &[StreamSeries]) -> Self {
        for reason in monit_wire::Reason::ALL {
            metrics::counter!("monit_ingest_rejected_total", "reason" => reason.as_str())
                .absolute(0);
        }
        metrics::counter!("monit_ingest_rejected_total", "reason" => "max_series").absolute(0);
        Self {
            windows: RwLock::new(Windows::new(series, settings.max_series)),
            retention_ns: AtomicI64::new(nanos(INITIAL_RETENTION)),
            first_point_ns: AtomicI64::new(NONE),
            full_warned: AtomicBool::new(false),
            credentials: Credentials::new(settings),
            max_body_bytes: usize::try_from(settings.max_body_bytes).unwrap_or(usize::MAX),
            min_span: series.iter().map(|s| s.min_span).max().unwrap_or_default(),
            ingest_slots: Arc::new(tokio::sync::Semaphore::new(INGEST_SLOTS)),
            arrivals: Mutex::new(HashMap::new()),
            quiet_ns: AtomicI64::new(i64::MAX),
            sub_write_drop: AtomicI64::new(NONE),
            gap_until_ns: AtomicI64::new(NONE),
            stream_ticks: AtomicU64::new(0),
            asked_span_ns: AtomicI64::new(0),
            retention_grew_ns: AtomicI64::new(NONE),
        }
    }

    /// Points of `db` arrived now: a pause longer than the quiet limit starts a new run, which
    /// must cover the longest window again before the database is read from the stream.
    fn arrived(&self, db: &str, now_ns: i64) {
        let _ = self.first_point_ns.compare_exchange(
            NONE,
            now_ns,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        let quiet = self.quiet_ns.load(Ordering::Relaxed);
        let mut a = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        match a.get_mut(db) {
            Some(x) => {
                if now_ns.saturating_sub(x.last) > quiet {
                    x.since = now_ns;
                }
                x.last = x.last.max(now_ns);
            }
            None => {
                a.insert(
                    db.to_string(),
                    Arrivals {
                        since: now_ns,
                        last: now_ns,
                    },
                );
            }
        }
    }

    /// A pause in a database's points longer than `quiet` means points may be missing.
    pub fn set_quiet_after(&self, quiet: Duration) {
        self.quiet_ns.store(nanos(quiet).max(1), Ordering::Relaxed);
    }

    /// Whether `db`'s points have been arriving for `span` up to now, without a pause.
    pub fn freshness(&self, db: &str, span: Duration, now_ns: i64) -> Freshness {
        let quiet = self.quiet_ns.load(Ordering::Relaxed);
        let a = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        match a.get(db) {
            Some(x)
                if now_ns.saturating_sub(x.last) <= quiet
                    && now_ns.saturating_sub(x.since) >= nanos(span) =>
            {
                Freshness::Covered
            }
            _ => Freshness::Quiet,
        }
    }

    /// InfluxDB's count of subscription writes it dropped (`SHOW STATS`, `write`
    /// `subWriteDrop`), read this tick: any rise since the last read, or a fall (InfluxDB
    /// restarted, the subscription with it), leaves the stream untrusted for `span` from now,
    /// the time the lost points take to leave every window. True while untrusted.
    pub fn note_sub_write_drop(&self, count: i64, span: Duration, now_ns: i64) -> bool {
        let before = self.sub_write_drop.swap(count, Ordering::Relaxed);
        if before != NONE && before != count {
            self.gap_until_ns
                .store(now_ns.saturating_add(nanos(span)), Ordering::Relaxed);
        }
        self.dropping(now_ns)
    }

    /// True while the stream is untrusted after InfluxDB dropped subscription writes.
    pub fn dropping(&self, now_ns: i64) -> bool {
        let until = self.gap_until_ns.load(Ordering::Relaxed);
        until != NONE && now_ns < until
    }

    /// Counts a tick read from the stream; true when it is the `every`-th (reconciliation).
    pub fn reconcile_due(&self, every: u64) -> bool {
        let n = self.stream_ticks.fetch_add(1, Ordering::Relaxed) + 1;
        n.is_multiple_of(every.max(1))
    }

    /// The windows, for a reader (a tick).
    pub fn windows(&self) -> RwLockReadGuard<'_, Windows> {
        self.windows.read()
    }

    /// Keeps `span` (the longest window read, at least) from now on: a point older than that
    /// is no longer stored, and [`StreamState::prune`] drops those already stored.
    pub fn set_span(&self, span: Duration, now_ns: i64) {
        let keep = nanos(span + RETENTION_MARGIN).max(
            self.asked_span_ns
                .load(Ordering::Relaxed)
                .saturating_add(nanos(RETENTION_MARGIN)),
        );
        if self.retention_ns.swap(keep, Ordering::Relaxed) < keep {
            self.retention_grew_ns.store(now_ns, Ordering::Relaxed);
        }
    }

    /// Drops the points older than the span kept, the series left without any, and the series
    /// outside the inventory. It walks every series kept with the ingest locked out (a tenth
    /// of a second at 100,000 containers), so it runs after a tick, not in it: the readers
    /// read only their windows' points and only the inventory's VMs, stale series or not, and
    /// a series that still receives points drops its old ones as they come.
    pub fn prune(&self, now_ns: i64) {
        let keep = self.retention_ns.load(Ordering::Relaxed);
        let mut w = self.windows.write();
        w.prune(now_ns.saturating_sub(keep));
        metrics::gauge!("monit_stream_series").set(w.series_count() as f64);
    }

    /// The VM inventory's addresses (each tick): the series of readers that read only
    /// inventory addresses (`StreamSeries::inventory_tag`) are kept for these only; the others
    /// are dropped at the next [`StreamState::prune`].
    pub fn set_inventory<'a>(&self, addresses: impl IntoIterator<Item = &'a str>) {
        let set = addresses.into_iter().map(Box::from).collect();
        let mut w = self.windows.write();
        w.set_inventory(set);
    }

    /// Asks for `span` to be kept from the next tick on, beside the policies' windows (a
    /// reader with its own windows: the scaler's `check_time_sec`).
    pub fn keep_at_least(&self, span: Duration) {
        self.asked_span_ns.fetch_max(nanos(span), Ordering::Relaxed);
    }

    /// True when a window of `span` ending now holds every point the store holds: points have
    /// been arriving for that long, and kept that long since the retention last grew.
    pub fn holds(&self, span: Duration, now_ns: i64) -> bool {
        let grew = self.retention_grew_ns.load(Ordering::Relaxed);
        self.covers(span, now_ns)
            && self.retention_ns.load(Ordering::Relaxed) >= nanos(span)
            && (grew == NONE || now_ns.saturating_sub(grew) >= nanos(span))
    }

    /// True once points have been arriving for `span`: a window that long ending now holds
    /// everything the store holds (the subscription sends only what is written after it).
    pub fn covers(&self, span: Duration, now_ns: i64) -> bool {
        let first = self.first_point_ns.load(Ordering::Relaxed);
        first != NONE && now_ns.saturating_sub(first) >= nanos(span)
    }

    /// A `POST /write` body (line protocol of database `db`). Lines of measurements nobody reads
    /// are skipped unparsed; malformed ones are counted and skipped.
    pub fn ingest_lines(
        &self,
        db: &str,
        precision: Precision,
        body: &[u8],
        now_ns: i64,
    ) -> IngestReport {
        let mut report = IngestReport::default();
        let mut w = self.windows.write();
        let names: Vec<String> = w
            .by_measurement
            .iter()
            .filter(|((d, _), _)| d == db)
            .map(|((_, m), _)| m.clone())
            .collect();
        if names.is_empty() {
            return report;
        }
        let oldest = now_ns.saturating_sub(self.retention_ns.load(Ordering::Relaxed));
        // any point of a measurement read proves the delivery works, kept or not (a VM outside
        // the inventory): the database's stream is not quiet
        let mut delivered = false;
        let lines = Lines::new(body, now_ns)
            .precision(precision)
            .numeric_only(true)
            .filter(|m: &monit_wire::line::Text<'_>| names.iter().any(|n| m.is(n)));
        for item in lines {
            let p = match item {
                Ok(p) => p,
                Err(e) => {
                    report.malformed += 1;
                    metrics::counter!("monit_ingest_rejected_total", "reason" => e.reason.as_str())
                        .increment(1);
                    continue;
                }
            };
            let measurement = p.measurement().unescaped();
            let Some((at, m)) = w.find(db, &measurement) else {
                continue;
            };
            delivered = true;
            // most lines of a shared database are series nobody reads: no tag is copied for them
            if !p.tag(m.name_tag).is_some_and(|n| m.reads(&n.unescaped())) {
                continue;
            }
            let mut tags: Vec<(Cow<'_, str>, Cow<'_, str>)> = p
                .tags()
                .iter()
                .map(|t| (t.key.unescaped(), t.value.unescaped()))
                .collect();
            tags.sort();
            let Some(extra_field) = w.keeps_at(at, &tags) else {
                continue;
            };
            let value = p.field("value").and_then(|v| v.as_f64());
            let extra = extra_field
                .and_then(|f| p.field(f))
                .and_then(|v| v.as_f64());
            if value.is_none() && extra.is_none() {
                continue;
            }
            let point = StoredPoint {
                time_ns: p.timestamp_ns(),
                value: value.unwrap_or(f64::NAN),
                extra: extra.unwrap_or(f64::NAN),
            };
            let stored = w.insert_at(at, &tags, point, oldest);
            self.count(stored, &mut report);
        }
        let series = w.series_count();
        drop(w);
        if delivered {
            self.arrived(db, now_ns);
        }
        self.finish("line", report, series)
    }

    /// A decompressed `POST /api/v1/write` body (Prometheus remote write 1.0), its series named
    /// as VictoriaMetrics names InfluxDB lines (`<measurement>_<field>{db=...}`).
    pub fn ingest_remote_write(&self, pb: &[u8], now_ns: i64) -> IngestReport {
        let mut report = IngestReport::default();
        let mut w = self.windows.write();
        let owned: Vec<String> = w
            .by_measurement
            .iter()
            .map(|((_, m), _)| m.clone())
            .collect();
        let measurements: Vec<&str> = owned.iter().map(String::as_str).collect();
        let naming = InfluxNaming::new(&measurements);
        let oldest = now_ns.saturating_sub(self.retention_ns.load(Ordering::Relaxed));
        let mut dbs: Vec<String> = Vec::new();
        // a series' labels are read in the walk that checks it (each walk reads every varint
        // and checks every string's UTF-8 again), into buffers kept from one series to the next
        let mut labels: Vec<remote_write::Label<'_>> = Vec::new();
        let mut tags: Vec<(&str, &str)> = Vec::new();
        let mut walk = remote_write::series(pb);
        while let Some(s) = walk.next_with_labels(&mut labels) {
            let s = match s {
                Ok(s) => s,
                Err(e) => {
                    report.malformed += 1;
                    metrics::counter!("monit_ingest_rejected_total", "reason" => e.reason())
                        .increment(1);
                    // the rest of the body cannot be framed once one series is not
                    break;
                }
            };
            let Some(view) = naming.view(&labels) else {
                continue;
            };
            let (db, Some(field)) = (view.db.unwrap_or_default(), view.field) else {
                continue;
            };
            let Some((at, m)) = w.find(db, view.measurement) else {
                continue;
            };
            if !dbs.iter().any(|d| d == db) {
                dbs.push(db.to_string());
            }
            let name = labels.iter().find(|l| l.name == m.name_tag);
            if !name.is_some_and(|n| m.reads_field(n.value, field)) {
                continue;
            }
            tags.clear();
            tags.extend(naming.tags(&labels).map(|l| (l.name, l.value)));
            tags.sort_unstable();
            let Some(extra_field) = w.keeps_at(at, &tags) else {
                continue;
            };
            let is_value = field == "value";
            if !is_value && extra_field != Some(field) {
                continue;
            }
            for sample in s.samples() {
                let (Some(t), true) = (sample.timestamp_ns(), sample.value.is_finite()) else {
                    continue;
                };
                let point = StoredPoint {
                    time_ns: t,
                    value: if is_value { sample.value } else { f64::NAN },
                    extra: if is_value { f64::NAN } else { sample.value },
                };
                let stored = w.insert_at(at, &tags, point, oldest);
                self.count(stored, &mut report);
            }
        }
        let series = w.series_count();
        drop(w);
        for db in &dbs {
            self.arrived(db, now_ns);
        }
        self.finish("remote_write", report, series)
    }

    fn count(&self, stored: Result<(), Refused>, report: &mut IngestReport) {
        match stored {
            Ok(()) => report.points += 1,
            Err(Refused::MaxSeries) => report.over_max_series += 1,
            // no window reads it: not an error of the writer's
            Err(Refused::TooOld) => {}
        }
    }

    fn finish(&self, format: &'static str, report: IngestReport, series: u64) -> IngestReport {
        metrics::counter!("monit_ingest_writes_total", "format" => format).increment(1);
        metrics::counter!("monit_ingest_points_total").increment(report.points);
        metrics::gauge!("monit_stream_series").set(series as f64);
        if report.over_max_series > 0 {
            metrics::counter!("monit_ingest_rejected_total", "reason" => "max_series")
                .increment(report.over_max_series);
            if !self.full_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    series,
                    "stream: stream.max_series reached: points of new series are refused \
                     (monit_ingest_rejected_total{{reason=\"max_series\"}}); logged once"
                );
            }
        }
        report
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// What a tick reads in stream mode: the windows, and the query client for what the stream
/// cannot answer (the warm-up, and later confirmations and reconciliation).
#[derive(Clone)]
pub struct StreamHandle {
    pub state: Arc<StreamState>,
    pub query: Box<MetricStore>,
}

impl std::fmt::Debug for StreamHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHandle")
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

/// The mode a tick read its metrics in (`metric_mode` in the tick summary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickMode {
    Query,
    Stream,
    /// stream mode configured, the stream not yet covering the longest window: query mode
    StreamWarmup,
    /// InfluxDB dropped subscription writes (`subWriteDrop` rose) within the longest window:
    /// query mode until the lost points are out of every window
    StreamGap,
    /// the collector's databases sent nothing for longer than two `influx.bucket_seconds`, or not
    /// yet for the longest window since such a pause: query mode
    StreamQuiet,
}

impl TickMode {
    pub const ALL: [TickMode; 5] = [
        TickMode::Query,
        TickMode::Stream,
        TickMode::StreamWarmup,
        TickMode::StreamGap,
        TickMode::StreamQuiet,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            TickMode::Query => "query",
            TickMode::Stream => "stream",
            TickMode::StreamWarmup => "stream-warmup",
            TickMode::StreamGap => "stream-gap",
            TickMode::StreamQuiet => "stream-quiet",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secret::Secret;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_quiet_database_is_read_from_the_store_until_it_covers_the_span_again() {
        let st = StreamState::new(&StreamSettings::default(), &[]);
        st.set_quiet_after(Duration::from_secs(30));
        let span = Duration::from_secs(60);
        assert_eq!(
            st.freshness("db", span, 100 * S),
            Freshness::Quiet,
            "nothing yet"
        );
        for t in (0..=100).step_by(10) {
            st.arrived("db", t * S);
        }
        assert_eq!(st.freshness("db", span, 100 * S), Freshness::Covered);
        assert_eq!(
            st.freshness("db", span, 131 * S),
            Freshness::Quiet,
            "30 s quiet"
        );
        st.arrived("db", 140 * S);
        assert_eq!(
            st.freshness("db", span, 141 * S),
            Freshness::Quiet,
            "points again, not yet for the span"
        );
        for t in (150..=200).step_by(10) {
            st.arrived("db", t * S);
        }
        assert_eq!(st.freshness("db", span, 200 * S), Freshness::Covered);
        assert_eq!(st.freshness("other", span, 200 * S), Freshness::Quiet);
    }

    /// A writer that never pauses (a burst, or a flood of ingests) must not keep a tick from
    /// its windows: std's RwLock on Linux lets a writer that unlocks take the lock again before
    /// the waiting reader wakes, and a tick waited for the whole flood (18-60 s in
    /// `examples/stream_tick.rs ... burst`). Liveness, not speed: each read waits for at most
    /// the body being ingested, and the bound is far above that even in a debug build.
    #[test]
    fn a_flood_of_writes_does_not_starve_a_tick_of_its_windows() {
        use std::sync::atomic::AtomicBool;
        let spec = StreamSeries {
            db: "d".into(),
            measurement: "m".into(),
            name_tag: "metricname",
            names: Arc::new(|_: &str| Some(None)),
            tags: vec!["ip".into()],
            excluded: Vec::new(),
            inventory_tag: None,
            min_span: Duration::ZERO,
        };
        let st = Arc::new(StreamState::new(&StreamSettings::default(), &[spec]));
        let body: String = (0..2000)
            .map(|i| {
                format!(
                    "m,ip=10.0.{}.{},metricname=cpu value={i} 100\n",
                    i / 250,
                    i % 250
                )
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let (st, stop, body) = (st.clone(), stop.clone(), body.clone());
                std::thread::spawn(move || {
                    // bounded: stops when the reader is done, or after 60 s whatever happens
                    let start = std::time::Instant::now();
                    while !stop.load(Ordering::Relaxed) && start.elapsed().as_secs() < 60 {
                        st.ingest_lines("d", Precision::Seconds, body.as_bytes(), 100 * S);
                    }
                })
            })
            .collect();
        // the writers are under way (a first body stored)
        while !st.covers(Duration::ZERO, 100 * S) {
            std::thread::yield_now();
        }
        let start = std::time::Instant::now();
        let mut reads = 0;
        while reads < 20 && start.elapsed() < Duration::from_secs(20) {
            let w = st.windows();
            assert_eq!(w.series_count(), 2000);
            drop(w);
            reads += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        assert!(
            reads == 20 && took < Duration::from_secs(20),
            "a tick got its windows {reads} times in {took:?}"
        );
    }

    #[test]
    fn a_change_of_sub_write_drop_distrusts_the_stream_for_the_span() {
        let st = StreamState::new(&StreamSettings::default(), &[]);
        let span = Duration::from_secs(60);
        assert!(
            !st.note_sub_write_drop(5, span, 0),
            "the first read is the baseline"
        );
        assert!(!st.note_sub_write_drop(5, span, 10 * S));
        assert!(st.note_sub_write_drop(7, span, 20 * S), "dropped");
        assert!(st.note_sub_write_drop(7, span, 79 * S), "within the span");
        assert!(!st.note_sub_write_drop(7, span, 80 * S), "covered again");
        assert!(
            st.note_sub_write_drop(0, span, 90 * S),
            "InfluxDB restarted"
        );
    }

    #[test]
    fn reconciliation_is_due_every_nth_stream_tick() {
        let st = StreamState::new(&StreamSettings::default(), &[]);
        let due: Vec<bool> = (0..6).map(|_| st.reconcile_due(3)).collect();
        assert_eq!(due, [false, false, true, false, false, true]);
    }

    #[test]
    fn credentials_need_the_exact_basic_auth_or_token() {
        use base64::Engine as _;
        let c = Credentials::new(&StreamSettings {
            username: "u".into(),
            password: Secret::new("p:w"),
            token: Secret::new("tok"),
            ..Default::default()
        });
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(c.allows(Some(basic("u:p:w").as_bytes())));
        assert!(c.allows(Some(b"Bearer tok")));
        assert!(!c.allows(Some(basic("u:p").as_bytes())));
        assert!(!c.allows(Some(b"Bearer to")));
        assert!(!c.allows(Some(b"Basic !!!")));
        assert!(!c.allows(None));
        assert_eq!(format!("{c:?}"), "Credentials(***)");
    }
}
