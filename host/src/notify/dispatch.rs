//! The outbox drained through the notifiers, once per tick: rows older than
//! `alarms.notification_max_age_hours` parked, then due rows claimed in queue order (small
//! chunks, so a crash strands few claims), each claim renewed and the leader lock checked
//! before a send, each outcome recorded per row and recipient as soon as the notifier reports,
//! all within `alarms.notify_budget_seconds`.

use crate::config::Settings;
use crate::model::Timestamp;
use crate::notify::history::HistoryReader;
use crate::plugin::{Delivery, Notifier, NotifySession};
use crate::store;
use crate::store::leader::Leader;
use crate::store::outbox;
use serde::Serialize;
use sqlx::MySqlPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default, Serialize)]
pub struct NotifyCounts {
    pub sent: u32,
    pub failed: u32,
    /// rejected by a notifier, or expired, this tick
    pub parked: u32,
    pub pending: i64,
    /// digests sent: several notifications as one message
    pub digests: u32,
    /// open alarms told again to a notifier whose receiver forgets what is not re-posted
    pub restated: u32,
    /// queries the metric store answered for the alarmed readings' history (the charts in
    /// mails), apart from the readings' own `influx_queries`
    pub history_queries: u64,
}

/// Rows claimed at a time: small, so a crash strands few claims.
const CLAIM_CHUNK: u32 = 20;
/// Rows claimed at a time by a notifier that sends digests: enough for one tick's burst to go
/// out as one message.
const DIGEST_CLAIM_CHUNK: u32 = 1000;
/// Open alarms restated at a time (one call of the notifier, e.g. one POST).
const RESTATE_CHUNK: u32 = 500;

/// Why a notifier's share of the notify step ended.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// nothing left that is due
    Done,
    /// the notify budget is spent
    Budget,
    /// the notifier's sink is down; others may go on
    Notifier,
    /// lease lost or the DB away: nothing more may be sent
    All,
}

/// What the notify step did: its counts and its errors (the tick summary takes both).
#[derive(Debug, Default)]
pub struct NotifyReport {
    pub notifications: NotifyCounts,
    pub errors: Vec<String>,
}

/// Who sends: this instance's pool, settings, leader lease and claim owner.
pub struct Dispatch {
    pub pool: MySqlPool,
    pub settings: Arc<Settings>,
    pub leader: Arc<Leader>,
    /// unique across instances and restarts (see `run::scheduler::claim_owner`)
    pub claim_owner: String,
    /// the bound of one send, and (doubled) of a claim
    pub step_timeout: Duration,
    /// where the alarmed readings' history is read for a notifier that shows it (None: no
    /// history, every notification goes without)
    pub history: Option<crate::notify::history::HistorySource>,
}

impl Dispatch {
    fn step_timeout(&self) -> Duration {
        self.step_timeout
    }

    /// Sends from the outbox: claimed rows, fresh alarms first, each marked as soon as its
    /// notifier reports, the lease checked before each send, within the notify budget.
    pub async fn run(
        &self,
        notifiers: &[(&'static str, Arc<dyn Notifier>)],
        sum: &mut NotifyReport,
    ) {
        let a = &self.settings.alarms;
        let max_age = Duration::from_secs(a.notification_max_age_hours.saturating_mul(3600));
        match outbox::park_expired(&self.pool, max_age).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    parked = n,
                    max_age_hours = a.notification_max_age_hours,
                    "notifications not delivered in time parked (see `monit-batch outbox`)"
                );
                metrics::counter!("monit_notifications_parked_total", "notifier" => "all", "why" => "expired")
                    .increment(n);
                sum.notifications.parked += n as u32;
            }
            Err(e) => self.notify_error(sum, format!("notify: {e:#}")),
        }
        let recipients = match store::load_recipients(&self.pool).await {
            Ok(r) => r,
            Err(e) => {
                self.notify_error(sum, format!("notify: {e:#}"));
                return;
            }
        };
        let deadline = Instant::now() + self.settings.notify_budget();
        let mut history = self.history.as_ref().map(|source| {
            HistoryReader::new(
                source,
                self.pool.clone(),
                a.default_measure_seconds,
                self.settings.influx.bucket_seconds,
                self.step_timeout(),
            )
        });
        'notifiers: for (name, notifier) in notifiers {
            let mut session = notifier.session();
            let stop = self
                .notify_through(
                    name,
                    session.as_mut(),
                    &recipients,
                    history.as_mut(),
                    deadline,
                    sum,
                )
                .await;
            let _ = tokio::time::timeout(self.step_timeout(), session.close()).await;
            if stop == Stop::All {
                break 'notifiers;
            }
            if notifier.restates_firing() {
                if stop == Stop::Notifier {
                    // its sink is down: the restatement would only wait out the same timeouts
                    tracing::debug!(notifier = name, "sink down: open alarms not restated");
                } else if !self.restate(name, notifier.as_ref(), sum).await {
                    break 'notifiers;
                }
            }
        }
        if let Some(h) = &history {
            sum.notifications.history_queries = h.queries();
        }
        match outbox::counts(&self.pool).await {
            Ok(c) => {
                let pending = c.get("pending").copied().unwrap_or(0);
                let parked = c.get("parked").copied().unwrap_or(0);
                sum.notifications.pending = pending;
                metrics::gauge!("monit_notifications", "state" => "pending").set(pending as f64);
                metrics::gauge!("monit_notifications", "state" => "parked").set(parked as f64);
                metrics::gauge!("monit_notifications_pending").set(pending as f64);
            }
            Err(e) => self.notify_error(sum, format!("notify: {e:#}")),
        }
    }

    /// Tells a notifier whose receiver forgets again what it was last told of every open
    /// alarm, [`RESTATE_CHUNK`] alarms per call. Best effort: a chunk that fails is logged and
    /// counted, and told again next tick. False when the leader lock was lost or the DB is
    /// away: nothing more may be sent.
    async fn restate(
        &self,
        name: &'static str,
        notifier: &dyn Notifier,
        sum: &mut NotifyReport,
    ) -> bool {
        let mut after = 0;
        loop {
            let (firing, last) =
                match outbox::told_firing(&self.pool, name, after, RESTATE_CHUNK).await {
                    Ok(page) => page,
                    Err(e) => {
                        self.notify_error(sum, format!("notify/{name}: {e:#}"));
                        return false;
                    }
                };
            let Some(last) = last else {
                return true;
            };
            after = last;
            if firing.is_empty() {
                continue;
            }
            if !self.leader.holds().await {
                self.notify_error(
                    sum,
                    format!("notify/{name}: the leader lock was lost; sending stopped"),
                );
                return false;
            }
            let told = tokio::time::timeout(self.step_timeout(), notifier.restate_firing(&firing))
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!(
                        "no answer within batch.step_timeout_seconds = {}",
                        self.step_timeout().as_secs()
                    ))
                });
            let n = firing.len() as u64;
            match told {
                Ok(()) => {
                    sum.notifications.restated += n as u32;
                    metrics::counter!("monit_notifications_restated_total", "notifier" => name, "result" => "ok")
                        .increment(n);
                }
                Err(e) => {
                    // not a failed tick, as a sink that is down is not: next tick tells it again
                    metrics::counter!("monit_notifications_restated_total", "notifier" => name, "result" => "failed")
                        .increment(n);
                    tracing::warn!(
                        notifier = name,
                        alarms = n,
                        "open alarms not restated, told again next tick: {e:#}"
                    );
                    return true;
                }
            }
        }
    }

    fn notify_error(&self, sum: &mut NotifyReport, msg: String) {
        tracing::error!("{msg}");
        sum.errors.push(msg);
    }

    /// One notifier's share of the notify step. Returns why it stopped.
    async fn notify_through(
        &self,
        name: &'static str,
        session: &mut (dyn NotifySession + '_),
        recipients: &HashMap<String, Vec<String>>,
        mut history: Option<&mut HistoryReader<'_>>,
        deadline: Instant,
        sum: &mut NotifyReport,
    ) -> Stop {
        let a = &self.settings.alarms;
        let ttl = outbox::claim_ttl(self.step_timeout());
        // Rows due at the start of this run, each tried at most once in it.
        let started = chrono::Utc::now();
        let mut tried: Vec<i64> = Vec::new();
        loop {
            if Instant::now() >= deadline {
                return Stop::Budget;
            }
            let claimed = match outbox::claim(
                &self.pool,
                name,
                &self.claim_owner,
                self.leader.fence().map(|f| f.epoch),
                ttl,
                started,
                if session.digests() && a.digest_threshold > 0 {
                    DIGEST_CLAIM_CHUNK
                } else {
                    CLAIM_CHUNK
                },
                &tried,
            )
            .await
            {
                Ok(c) => c,
                Err(e) => {
                    self.notify_error(sum, format!("notify/{name}: {e:#}"));
                    return Stop::All;
                }
            };
            if claimed.is_empty() {
                return Stop::Done;
            }
            let mut unsent: Vec<i64> = claimed.iter().map(|c| c.id).collect();
            let console_url = self.settings.console.link_base();
            let claimed: Vec<outbox::Claimed> = claimed
                .into_iter()
                .map(|mut c| {
                    c.notification.recipients = recipients
                        .get(c.notification.origin.code())
                        .cloned()
                        .unwrap_or_default();
                    // the console as configured now, not when the row was queued
                    c.notification.console_url = console_url.clone();
                    c
                })
                .collect();
            let threshold = if session.digests() {
                a.digest_threshold
            } else {
                0
            };
            let mut units = crate::notify::digest::units(claimed, threshold, |c| &c.notification);
            // what the notifier shows of the alarmed readings' past, read for the whole batch
            if let (Some(wish), Some(reader)) = (session.history_wish(), history.as_deref_mut()) {
                reader
                    .fill(&mut units, |c| &mut c.notification, wish, deadline)
                    .await;
            }
            for unit in units {
                let stop = if Instant::now() >= deadline {
                    Some(Stop::Budget)
                } else if !self.leader.holds().await {
                    self.notify_error(
                        sum,
                        format!("notify/{name}: the leader lock was lost; sending stopped"),
                    );
                    Some(Stop::All)
                } else {
                    None
                };
                if let Some(stop) = stop {
                    if let Err(e) = outbox::release(&self.pool, &unsent, &self.claim_owner).await {
                        tracing::warn!("notify/{name}: {e:#}");
                    }
                    return stop;
                }
                let mut rows: Vec<outbox::Claimed> = Vec::with_capacity(unit.len());
                for c in unit {
                    unsent.retain(|id| *id != c.id);
                    tried.push(c.id);
                    match outbox::renew(&self.pool, c.id, &self.claim_owner, ttl).await {
                        Ok(true) => rows.push(c),
                        Ok(false) => {
                            tracing::warn!(
                                notifier = name,
                                notification_id = c.id,
                                "claim lapsed: left to the instance that holds it now"
                            );
                        }
                        Err(e) => {
                            self.notify_error(sum, format!("notify/{name}: {e:#}"));
                            let ids: Vec<i64> =
                                rows.iter().map(|r| r.id).chain(unsent.clone()).collect();
                            let _ = outbox::release(&self.pool, &ids, &self.claim_owner).await;
                            return Stop::All;
                        }
                    }
                }
                let batch: Vec<_> = rows.iter().map(|c| c.notification.clone()).collect();
                let started = Instant::now();
                let send = async {
                    match &batch[..] {
                        [] => None,
                        [one] => Some(session.deliver(one).await),
                        many => Some(session.deliver_digest(many).await),
                    }
                };
                let delivery = match tokio::time::timeout(self.step_timeout(), send).await {
                    Ok(None) => continue,
                    Ok(Some(d)) => d,
                    Err(_) => Delivery::retry(format!(
                        "no outcome within batch.step_timeout_seconds = {}",
                        self.step_timeout().as_secs()
                    )),
                };
                metrics::histogram!("monit_notification_send_seconds", "notifier" => name)
                    .record(started.elapsed().as_secs_f64());
                if rows.len() > 1 {
                    sum.notifications.digests += 1;
                    metrics::counter!("monit_digests_total", "notifier" => name).increment(1);
                    tracing::info!(
                        notifier = name,
                        notifications = rows.len(),
                        "digest: {} notifications as one message",
                        rows.len()
                    );
                }
                // A digest's rows share one retry time (its first row's), so a deferred
                // recipient's rows come due together and go out as a digest again, not strewn
                // over the ±20 % spread of single rows.
                let retry_at = outbox::next_attempt(
                    chrono::Utc::now(),
                    rows[0].id,
                    rows[0].attempts,
                    Duration::from_secs(a.retry_min_seconds),
                    Duration::from_secs(a.retry_max_seconds),
                );
                // One log line per message: a digest of 1,000 rows deferred for one recipient is
                // one warning, not 1,000.
                let logged = rows.len();
                for (i, c) in rows.iter().enumerate() {
                    let log = (i == 0).then_some(logged);
                    if let Err(stop) = self
                        .record_outcome(name, c, &delivery, retry_at, log, ttl, sum)
                        .await
                    {
                        let _ = outbox::release(&self.pool, &unsent, &self.claim_owner).await;
                        return stop;
                    }
                }
                if let Delivery::Unavailable { .. } = &delivery {
                    let _ = outbox::release(&self.pool, &unsent, &self.claim_owner).await;
                    return Stop::Notifier;
                }
            }
        }
    }

    /// Records what became of one row (of a single send or a digest), counts it, and logs it
    /// when `log` is Some (the number of rows the message carried).
    /// Err: sending stops (the outcome could not be recorded).
    #[allow(clippy::too_many_arguments)]
    async fn record_outcome(
        &self,
        name: &'static str,
        c: &outbox::Claimed,
        delivery: &Delivery,
        retry_at: Timestamp,
        log: Option<usize>,
        ttl: Duration,
        sum: &mut NotifyReport,
    ) -> Result<(), Stop> {
        let outcome = match delivery {
            Delivery::Sent { .. } => outbox::Outcome::Sent,
            Delivery::Reject { .. } => outbox::Outcome::Parked,
            Delivery::Retry { .. } | Delivery::Unavailable { .. } => {
                outbox::Outcome::RetryAt(retry_at)
            }
        };
        if let Err(e) = self.record_delivery(c.id, delivery, &outcome, ttl).await {
            // Nothing more goes out until the outcome is on record: the row stays
            // claimed, and is sent again only after its claim lapses.
            self.notify_error(
                sum,
                format!(
                    "notify/{name}: notification {} delivered but not recorded, sending stopped: {e:#}",
                    c.id
                ),
            );
            return Err(Stop::All);
        }
        let result = match (delivery, &outcome) {
            (Delivery::Sent { .. }, _) => {
                sum.notifications.sent += 1;
                "sent"
            }
            (_, outbox::Outcome::Parked) => {
                sum.notifications.parked += 1;
                "parked"
            }
            _ => {
                sum.notifications.failed += 1;
                "failed"
            }
        };
        metrics::counter!("monit_notifications_total", "notifier" => name, "result" => result)
            .increment(1);
        if let Delivery::Reject { .. } = delivery {
            metrics::counter!("monit_notifications_parked_total", "notifier" => name, "why" => "rejected")
                .increment(1);
        }
        let Some(rows) = log else {
            return Ok(());
        };
        match delivery {
            Delivery::Reject { reason } => {
                tracing::error!(
                    notifier = name,
                    notification_id = c.id,
                    notifications = rows,
                    "notification parked, it can never be sent: {reason}"
                );
            }
            Delivery::Retry { reason, .. } => tracing::warn!(
                notifier = name,
                notification_id = c.id,
                notifications = rows,
                "notification not delivered, retried later: {reason}"
            ),
            Delivery::Unavailable { reason } => {
                // A sink that is down is not a failed tick: the outbox keeps the mail.
                tracing::error!(
                    notifier = name,
                    notification_id = c.id,
                    notifications = rows,
                    "notifier unavailable, the rest waits for the next tick: {reason}"
                );
            }
            Delivery::Sent { .. } => {}
        }
        Ok(())
    }

    /// Records a delivery, retrying while the DB is away (for up to half the claim), since an
    /// outcome not on record means a second send later.
    async fn record_delivery(
        &self,
        id: i64,
        delivery: &Delivery,
        outcome: &outbox::Outcome,
        ttl: Duration,
    ) -> anyhow::Result<()> {
        use backon::Retryable as _;
        let owner = &self.claim_owner;
        let record = || async {
            outbox::record(&self.pool, id, owner, delivery, outcome, chrono::Utc::now()).await
        };
        let kept = record
            .retry(
                backon::ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_total_delay(Some(ttl / 2)),
            )
            .sleep(tokio::time::sleep)
            .notify(|e, d| tracing::warn!(notification_id = id, retry_in = ?d, "recording a delivery: {e:#}"))
            .await?;
        if !kept {
            tracing::warn!(
                notification_id = id,
                "the claim lapsed before the outcome was recorded"
            );
        }
        Ok(())
    }
}
