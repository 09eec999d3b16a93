//! Stream mode's reconciliation (`stream.reconcile_every`): the streamed collectors read the
//! whole fleet from the store and from the stream, and the difference goes to `/metrics`
//! (`monit_stream_drift`) and to the next tick's summary (`stream.drift`).
//!
//! A full query of a large fleet takes the store a minute and its answers hundreds of MB (72 s
//! and 388 MB at 5,000 VMs and 100,000 containers on InfluxDB 1.6). So a reconciliation runs
//! beside the ticks, never in one (the tick that starts it is not delayed), reads the store in
//! the pauses between ticks (a part that would not end before the next tick waits for it to
//! end: the ticks do not share the store and the CPUs with it), and reads a part of the
//! inventory at a time ([`slices`]): each part is read from
//! the store in queries naming its VMs and cells, and from the stream at the same instant,
//! compared, and dropped before the next. Its memory follows the part, not the fleet; the
//! store's work is the same as one full query's, spread over the parts.
//!
//! The drift decides nothing: the stream's readings drive every tick, and the store confirms
//! each alarm before it is written or mailed (`truth::confirm`).

use crate::evaluate::truth::{self, Drift};
use crate::metric_store::MetricStore;
use crate::model::{Reading, Timestamp, Vm};
use crate::plugin::{CELLS_PER_PART, CollectContext, Collector, VMS_PER_PART, Windows, guarded};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A collector to reconcile.
pub type Streamed = (&'static str, Arc<dyn Collector>);

/// What a reconciliation needs, owned: it outlives the tick that starts it.
pub struct Job {
    pub collectors: Vec<Streamed>,
    /// the stream's windows
    pub stream: MetricStore,
    /// the store's query client, counting its queries apart from the ticks'
    pub query: MetricStore,
    pub vms: Vec<Vm>,
    pub windows: Windows,
    pub bucket_seconds: u64,
    /// per collector and side of each part
    pub timeout: Duration,
}

/// A finished reconciliation, for the next tick's summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub started_at: Option<Timestamp>,
    pub seconds: f64,
    /// parts of the inventory read (plus one for the collectors not read by VM)
    pub parts: usize,
    /// queries the store answered
    pub store_queries: u64,
    /// per origin (the summary's `stream.drift`); an origin whose collector failed on either
    /// side of a part is compared on the other parts
    #[serde(skip)]
    pub drift: BTreeMap<String, Drift>,
    pub errors: Vec<String>,
}

/// At most one reconciliation at a time: the one running and the last finished, not yet told.
#[derive(Clone)]
pub struct Reconciliation {
    slot: Arc<Mutex<Slot>>,
    ticks: Arc<tokio::sync::watch::Sender<Ticks>>,
}

impl Default for Reconciliation {
    fn default() -> Self {
        Self {
            slot: Arc::default(),
            ticks: Arc::new(tokio::sync::watch::Sender::new(Ticks::default())),
        }
    }
}

/// The ticks as a reconciliation sees them: it reads the store between them, not during one.
#[derive(Clone, Copy, Debug, Default)]
struct Ticks {
    running: bool,
    /// ticks ended so far
    ended: u64,
    /// when the next one is due
    next_at: Option<tokio::time::Instant>,
    /// the pause between two ticks' starts (`batch.interval_seconds`)
    interval: Duration,
}

#[derive(Default)]
struct Slot {
    running: bool,
    finished: Option<Report>,
}

impl Reconciliation {
    /// Starts `job` beside the ticks; false (and nothing started) while the last one runs: a
    /// store too slow to answer the fleet within `reconcile_every` ticks is not asked twice.
    pub fn start(&self, job: Job) -> bool {
        {
            let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            if slot.running {
                return false;
            }
            slot.running = true;
        }
        let me = self.clone();
        let ticks = self.ticks.subscribe();
        tokio::spawn(async move {
            let report = run(job, ticks).await;
            let mut slot = me.slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.running = false;
            slot.finished = Some(report);
        });
        true
    }

    /// The reconciliation finished since the last call, if any.
    pub fn take_finished(&self) -> Option<Report> {
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finished
            .take()
    }

    /// A tick starts: the parts not yet read wait until it ends.
    pub fn tick_started(&self) {
        self.ticks.send_modify(|t| t.running = true);
    }

    /// A tick ended; the next is due `interval` after this one started.
    pub fn tick_ended(&self, started: tokio::time::Instant, interval: Duration) {
        self.ticks.send_modify(|t| {
            t.running = false;
            t.ended += 1;
            t.next_at = Some(started + interval);
            t.interval = interval;
        });
    }
}

/// Waits until a part that takes about `needed` can be read without a tick beside it: never
/// while a tick runs, at once when it ends before the next tick is due, else after the next
/// tick (the longest pause there is). A part longer than the pause between ticks goes at once
/// (waiting would not make it fit), and without ticks (this instance no longer leads) a part
/// waits at most twice the interval.
async fn room_between_ticks(ticks: &mut tokio::sync::watch::Receiver<Ticks>, needed: Duration) {
    let now = *ticks.borrow_and_update();
    let bound = (now.interval * 2).max(Duration::from_secs(1));
    if now.running {
        let _ = tokio::time::timeout(bound, ticks.wait_for(|t| !t.running)).await;
        return;
    }
    let fits_now = now
        .next_at
        .is_none_or(|next| tokio::time::Instant::now() + needed < next);
    if fits_now || needed >= now.interval {
        return;
    }
    let _ =
        tokio::time::timeout(bound, ticks.wait_for(|t| t.ended > now.ended && !t.running)).await;
}

/// The room before the next tick a part needs, from the last part's time: that time, and as
/// long again for the store to catch up before the tick (InfluxDB holds a subscription's writes
/// back while it answers a query, then forwards them at once, and the batch ingests that
/// backlog: a tick beside it shared the CPUs with both, 0.48-0.58 s against 0.38 s), and a margin.
fn room_for(part: Duration) -> Duration {
    part.mul_f64(2.0) + Duration::from_millis(500)
}

/// The inventory in parts: the cells [`CELLS_PER_PART`] at a time, then the other VMs
/// [`VMS_PER_PART`] at a time.
pub fn slices(vms: &[Vm]) -> Vec<Vec<Vm>> {
    let (cells, others): (Vec<&Vm>, Vec<&Vm>) = vms.iter().partition(|vm| vm.is_cell());
    let part = |list: &[&Vm]| list.iter().map(|vm| (*vm).clone()).collect::<Vec<Vm>>();
    cells
        .chunks(CELLS_PER_PART)
        .map(part)
        .chain(others.chunks(VMS_PER_PART).map(part))
        .collect()
}

/// Reads the fleet from both sides, a part at a time between ticks, and compares.
async fn run(job: Job, mut ticks: tokio::sync::watch::Receiver<Ticks>) -> Report {
    use std::sync::atomic::Ordering::Relaxed;
    let started = Instant::now();
    let mut report = Report {
        started_at: Some(chrono::Utc::now()),
        ..Default::default()
    };
    let queries_before = job.query.stats().queries.load(Relaxed);
    let (by_vm, whole): (Vec<Streamed>, Vec<Streamed>) = job
        .collectors
        .iter()
        .cloned()
        .partition(|(_, c)| c.reads_by_vm());
    let mut parts: Vec<(Vec<Vm>, &[Streamed], bool)> = Vec::new();
    if !whole.is_empty() {
        parts.push((job.vms.clone(), &whole, false));
    }
    if !by_vm.is_empty() {
        parts.extend(slices(&job.vms).into_iter().map(|s| (s, &by_vm[..], true)));
    }
    // what a part needs before the next tick
    let mut needed = Duration::ZERO;
    for (vms, collectors, narrow_to_vms) in &parts {
        room_between_ticks(&mut ticks, needed).await;
        let part_started = Instant::now();
        // both sides at the same instant: the same windows end at the same time
        let now = chrono::Utc::now();
        let ctx = |metrics| CollectContext {
            now,
            bucket_seconds: job.bucket_seconds,
            metrics,
            vms,
            windows: &job.windows,
            targets: None,
            narrow_to_vms: *narrow_to_vms,
            quiet: None,
        };
        let (stream_ctx, query_ctx) = (ctx(&job.stream), ctx(&job.query));
        for (name, c) in collectors.iter() {
            let (ours, theirs) = futures::future::join(
                guarded("reconcile", name, job.timeout, c.collect(&stream_ctx)),
                guarded("reconcile", name, job.timeout, c.collect(&query_ctx)),
            )
            .await;
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) => add_part(&mut report.drift, &ours, &theirs),
                (Err(e), _) | (_, Err(e)) => report.errors.push(e),
            }
        }
        // the parts are alike (100 cells, or 500 VMs)
        needed = room_for(part_started.elapsed());
    }
    report.parts = parts.len();
    report.store_queries = job.query.stats().queries.load(Relaxed) - queries_before;
    report.seconds = started.elapsed().as_secs_f64();
    truth::publish_drift(&report.drift);
    tracing::info!(
        parts = report.parts,
        store_queries = report.store_queries,
        seconds = report.seconds,
        drift = ?report.drift,
        errors = report.errors.len(),
        "stream reconciliation done"
    );
    report
}

fn add_part(total: &mut BTreeMap<String, Drift>, ours: &[Reading], theirs: &[Reading]) {
    for (origin, d) in truth::drift(ours, theirs) {
        total.entry(origin).or_default().add(&d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(i: usize, vm_type: &str) -> Vm {
        Vm {
            id: i as i64,
            zone_id: 1,
            zone_name: None,
            name: format!("vm-{i}"),
            ip: format!("10.1.{}.{}", i / 250, i % 250),
            vm_type: vm_type.into(),
        }
    }

    async fn within(ms: u64, f: impl std::future::Future<Output = ()>) -> bool {
        tokio::time::timeout(Duration::from_millis(ms), f)
            .await
            .is_ok()
    }

    fn waiting(r: &Reconciliation, needed: Duration) -> tokio::task::JoinHandle<()> {
        let mut rx = r.ticks.subscribe();
        tokio::spawn(async move { room_between_ticks(&mut rx, needed).await })
    }

    #[test]
    fn a_part_leaves_the_store_as_long_again_to_catch_up_before_a_tick() {
        assert_eq!(
            room_for(Duration::from_secs(5)),
            Duration::from_millis(10_500)
        );
        assert_eq!(room_for(Duration::ZERO), Duration::from_millis(500));
    }

    #[tokio::test]
    async fn a_part_waits_for_the_running_tick_and_for_room_before_the_next() {
        let r = Reconciliation::default();
        let mut rx = r.ticks.subscribe();
        assert!(
            within(500, room_between_ticks(&mut rx, Duration::from_secs(5))).await,
            "no tick yet: at once"
        );
        r.tick_started();
        let part = waiting(&r, Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!part.is_finished(), "a part read while a tick runs");
        let minute = Duration::from_secs(60);
        // the tick started 30 s ago: the next is due in 30 s
        let started = tokio::time::Instant::now()
            .checked_sub(Duration::from_secs(30))
            .unwrap();
        r.tick_ended(started, minute);
        assert!(within(2000, async { part.await.unwrap() }).await);
        // a 5 s part goes at once, and one longer than the pause between ticks too
        assert!(within(500, room_between_ticks(&mut rx, Duration::from_secs(5))).await);
        assert!(within(500, room_between_ticks(&mut rx, Duration::from_secs(70))).await);
        // a 40 s part after the next tick
        let long = waiting(&r, Duration::from_secs(40));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !long.is_finished(),
            "a part that would overlap the next tick"
        );
        r.tick_started();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!long.is_finished(), "a part read while a tick runs");
        r.tick_ended(tokio::time::Instant::now(), minute);
        assert!(within(2000, async { long.await.unwrap() }).await);
    }

    #[tokio::test]
    async fn without_ticks_a_part_waits_at_most_twice_the_interval() {
        let r = Reconciliation::default();
        r.tick_started();
        let started = tokio::time::Instant::now()
            .checked_sub(Duration::from_millis(500))
            .unwrap();
        r.tick_ended(started, Duration::from_secs(1));
        // no room before the next tick, and no tick comes (this instance stopped leading)
        let started = Instant::now();
        let part = waiting(&r, Duration::from_millis(900));
        assert!(within(5000, async { part.await.unwrap() }).await);
        assert!(started.elapsed() >= Duration::from_millis(1500));
    }

    #[test]
    fn the_inventory_is_read_in_parts_that_hold_every_vm_once() {
        let vms: Vec<Vm> = (0..1234)
            .map(|i| vm(i, if i % 4 == 0 { "cel" } else { "vms" }))
            .collect();
        let parts = slices(&vms);
        // 309 cells in 4 parts, 925 others in 2
        assert_eq!(
            parts.iter().map(Vec::len).collect::<Vec<_>>(),
            [100, 100, 100, 9, 500, 425]
        );
        assert!(parts[..4].iter().flatten().all(Vm::is_cell));
        assert!(!parts[4..].iter().flatten().any(Vm::is_cell));
        let mut ids: Vec<i64> = parts.iter().flatten().map(|vm| vm.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..1234).collect::<Vec<i64>>());
        assert!(slices(&[]).is_empty());
    }
}
