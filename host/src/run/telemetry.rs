//! The batch's own metrics, by Prometheus convention: every family described (`# HELP`),
//! durations as histograms (not summaries), `monit_build_info`, and the timestamp of the last
//! successful tick, the one to alert on when the batch stops ticking
//! (`docs/alerting-on-the-batch.md`).

use metrics::{describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds (seconds) of every `*_seconds` histogram: a mail (ms) to a slow tick (minutes).
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Every metric family: name, type, help.
pub const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        "monit_build_info",
        Kind::Gauge,
        "Always 1; the version of this binary in the label.",
    ),
    (
        "monit_ticks_total",
        Kind::Counter,
        "Ticks run by this instance.",
    ),
    (
        "monit_tick_failures_total",
        Kind::Counter,
        "Ticks in which at least one step failed.",
    ),
    (
        "monit_tick_duration_seconds",
        Kind::Histogram,
        "Wall time of a whole tick.",
    ),
    (
        "monit_last_successful_tick_timestamp_seconds",
        Kind::Gauge,
        "Unix time at which the last tick without any failed step started.",
    ),
    (
        "monit_leader",
        Kind::Gauge,
        "1 while this instance holds the leader lock (or leader election is off), else 0.",
    ),
    (
        "monit_plugin_duration_seconds",
        Kind::Histogram,
        "Wall time of one plugin in one step of a tick.",
    ),
    (
        "monit_plugin_failures_total",
        Kind::Counter,
        "Failures or timeouts of a plugin in a step.",
    ),
    (
        "monit_readings_total",
        Kind::Counter,
        "Readings each collector read, those left out as quiet included.",
    ),
    (
        "monit_readings_quiet_total",
        Kind::Counter,
        "Readings a collector left out because they could change nothing (no open alarm, under the policy's thresholds).",
    ),
    (
        "monit_metric_gaps_total",
        Kind::Counter,
        "Ticks in which (nearly) every VM of an origin had no metric: a gap in the metrics pipeline.",
    ),
    (
        "monit_influx_queries_total",
        Kind::Counter,
        "Queries sent to the metric store.",
    ),
    (
        "monit_influx_rows_total",
        Kind::Counter,
        "Result rows read from the metric store.",
    ),
    (
        "monit_history_reads_total",
        Kind::Counter,
        "Reads of the alarmed readings' history for the charts in notifications, by origin and result (ok, failed).",
    ),
    (
        "monit_container_skipped_total",
        Kind::Counter,
        "Container series skipped as unusable (no limit, overflowed limit).",
    ),
    (
        "monit_metric_samples_dropped_total",
        Kind::Counter,
        "Samples (InfluxDB: rows) of series no collector wants (VM or cell not in the inventory, app without a policy), dropped as the answer is decoded.",
    ),
    (
        "monit_console_logins_total",
        Kind::Counter,
        "Console logins by outcome: ok, refused (a wrong name or password), locked_out.",
    ),
    (
        "monit_http_connections_shed_total",
        Kind::Counter,
        "HTTP connections closed at server.max_connections to make room (the oldest idle or slow one).",
    ),
    (
        "monit_alarms_total",
        Kind::Counter,
        "Alarm events by kind: opened, escalated, stepped_down, renotified, recovered.",
    ),
    (
        "monit_notifications",
        Kind::Gauge,
        "Outbox rows by state: pending, parked.",
    ),
    (
        "monit_notifications_pending",
        Kind::Gauge,
        "Outbox rows waiting to be sent (also monit_notifications{state=\"pending\"}).",
    ),
    (
        "monit_notifications_total",
        Kind::Counter,
        "Delivery attempts by notifier and result: sent, failed, parked.",
    ),
    (
        "monit_notifications_parked_total",
        Kind::Counter,
        "Notifications parked because they can never be sent (rejected) or came too late (expired).",
    ),
    (
        "monit_notification_send_seconds",
        Kind::Histogram,
        "Time to deliver one notification through its notifier.",
    ),
    (
        "monit_notifications_restated_total",
        Kind::Counter,
        "Open alarms told again, every tick, to a notifier whose receiver forgets what is not re-posted, by notifier and result: ok, failed.",
    ),
    (
        "monit_digests_total",
        Kind::Counter,
        "Digests sent by notifier: several notifications for the same recipients as one message.",
    ),
    (
        "monit_notifications_held_total",
        Kind::Counter,
        "Notifications held back when their alarm was recorded, by reason: silenced, maintenance, inhibited.",
    ),
    (
        "monit_maintenance_hold_oldest_seconds",
        Kind::Gauge,
        "Age of the oldest maintenance hold (a BOSH task on a deployment), including one cut short by alarms.maintenance_max_hours; 0 when none.",
    ),
    (
        "monit_metric_mode",
        Kind::Gauge,
        "How the last tick read its metrics: 1 for the mode it used (query, stream, stream-warmup), 0 for the others.",
    ),
    (
        "monit_collector_metric_mode",
        Kind::Gauge,
        "How each collector read its metrics in the last tick: 1 for its mode (query, stream, stream-warmup, stream-gap, stream-quiet), 0 for the others.",
    ),
    (
        "monit_stream_unconfirmed_total",
        Kind::Counter,
        "Alarm changes decided from the stream that the store did not confirm, by origin: dropped for that tick.",
    ),
    (
        "monit_stream_drift",
        Kind::Gauge,
        "Difference between the stream's readings and the store's at the last reconciliation, by origin and stat (max_mean_difference, differing, missing).",
    ),
    (
        "monit_ingest_points_total",
        Kind::Counter,
        "Points received on /write and /api/v1/write (stream mode) and kept for a collector's series.",
    ),
    (
        "monit_ingest_writes_total",
        Kind::Counter,
        "Bodies accepted on /write (format line) and /api/v1/write (format remote_write), whether or not a collector keeps their points: the writers' delivery works.",
    ),
    (
        "monit_ingest_rejected_total",
        Kind::Counter,
        "Points or lines refused by the stream ingest, by reason (syntax, bad_value, max_series, ...).",
    ),
    (
        "monit_stream_series",
        Kind::Gauge,
        "Series kept in the stream's window state (at most stream.max_series).",
    ),
    (
        "monit_stream_subscription_errors_total",
        Kind::Counter,
        "Failed attempts to ensure the InfluxDB subscription (stream.subscribe); retried every tick until one succeeds.",
    ),
    (
        "monit_prometheus_queries_total",
        Kind::Counter,
        "Queries sent to the Prometheus-API metric store.",
    ),
    (
        "monit_prometheus_samples_total",
        Kind::Counter,
        "Samples read from the Prometheus-API metric store's answers.",
    ),
    (
        "monit_inventory_age_seconds",
        Kind::Gauge,
        "Age of the VM inventory the tick uses, by source: seconds since its last successful sync (a source may sync less often than every tick: its own sync_interval_seconds).",
    ),
    (
        "monit_scale_decisions_total",
        Kind::Counter,
        "Autoscale decisions by outcome.",
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Installs the process-wide recorder and describes every family. None (with a warning) when a
/// recorder is already installed.
pub fn install() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.install_recorder())
        .map_err(|e| tracing::warn!("metrics recorder not installed: {e}"))
        .ok()?;
    for (name, kind, help) in FAMILIES {
        match kind {
            Kind::Counter => describe_counter!(*name, *help),
            Kind::Gauge => describe_gauge!(*name, *help),
            Kind::Histogram => describe_histogram!(*name, *help),
        }
    }
    metrics::gauge!("monit_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Some(handle)
}

/// Marks a tick without failed steps (the liveness signal to alert on).
pub fn tick_succeeded(started: crate::model::Timestamp) {
    metrics::gauge!("monit_last_successful_tick_timestamp_seconds")
        .set(started.timestamp_millis() as f64 / 1000.0);
}

/// The tick's alarm events after holds, as `monit_alarms_total{event}`.
pub fn count_alarms(c: &crate::evaluate::engine::ChangeCounts) {
    for (k, v) in [
        ("opened", c.opened),
        ("escalated", c.escalated),
        ("stepped_down", c.stepped_down),
        ("renotified", c.renotified),
        ("recovered", c.recovered),
    ] {
        metrics::counter!("monit_alarms_total", "event" => k).increment(v as u64);
    }
}
