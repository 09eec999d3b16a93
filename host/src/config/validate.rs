//! Validation: every value of the host's sections checked once loaded, every number in range
//! (so that no later sum, product or time conversion overflows), with the checks plugins use on
//! their own sections ([`check_range`], [`is_label_name`]) and the bounds other stages share.

use super::{DbSettings, MetricBackend, Settings, as_bool};
use anyhow::{Context as _, bail};

/// Upper bound of `batch.vm_removal_grace_minutes`.
pub const MAX_VM_REMOVAL_GRACE_MINUTES: u64 = 7 * 24 * 60;
/// Upper bound of `alarms.maintenance_max_hours`: a week.
pub const MAX_MAINTENANCE_HOURS: u64 = 7 * 24;

impl DbSettings {
    /// The type and numbers in range; errors name the section as `key` (`monitoring_db`, or a
    /// plugin's `plugins.<name>.<db>`).
    pub fn check(&self, key: &str) -> anyhow::Result<()> {
        if self.db_type != "mysql" {
            bail!(
                "{key}.db_type = {:?}: only \"mysql\" is supported",
                self.db_type
            );
        }
        check_range(&format!("{key}.port"), self.port, 1..=u16::MAX)?;
        check_range(
            &format!("{key}.max_connections"),
            self.max_connections,
            1..=1000,
        )
    }
}

/// A label name is `[a-zA-Z_][a-zA-Z0-9_]*`; anything else from config is refused by the
/// readers before it reaches a query.
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Settings {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        let src = &self.source;
        self.check_numbers()
            .map_err(|e| anyhow::anyhow!("invalid config in {src}: {e}"))?;
        check_log_level(&self.log.level)
            .map_err(|e| anyhow::anyhow!("invalid config in {src}: {e}"))?;
        self.monitoring_db
            .check("monitoring_db")
            .map_err(|e| anyhow::anyhow!("invalid config in {src}: {e}"))?;
        let ratio = self.alarms.pipeline_gap_ratio;
        if !(ratio > 0.0 && ratio <= 1.0) {
            bail!(
                "invalid config in {src}: alarms.pipeline_gap_ratio = {ratio}: must be greater \
                 than 0 and at most 1 (the share of VMs without data that means the metrics \
                 pipeline is down)"
            );
        }
        if !matches!(self.log.format.as_str(), "plain" | "json") {
            bail!(
                "invalid config in {src}: log.format must be \"plain\" or \"json\", got {:?}",
                self.log.format
            );
        }
        if !matches!(self.alarms.language.as_str(), "ko" | "en") {
            bail!(
                "invalid config in {src}: alarms.language must be \"ko\" or \"en\", got {:?}",
                self.alarms.language
            );
        }
        match self.metrics.backend {
            MetricBackend::Influxdb => {
                url::Url::parse(&self.influx.url).with_context(|| {
                    format!("invalid config in {src}: influx.url {:?}", self.influx.url)
                })?;
            }
            MetricBackend::Prometheus => {
                let p = &self.prometheus;
                let url = url::Url::parse(&p.url).with_context(|| {
                    format!("invalid config in {src}: prometheus.url {:?}", p.url)
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    bail!(
                        "invalid config in {src}: prometheus.url: scheme {:?}, expected http or https",
                        url.scheme()
                    );
                }
                if p.max_answer_bytes < 1024 {
                    bail!(
                        "invalid config in {src}: prometheus.max_answer_bytes = {}: at least 1024",
                        p.max_answer_bytes
                    );
                }
                if !p.db_label.is_empty() && !is_label_name(&p.db_label) {
                    bail!(
                        "invalid config in {src}: prometheus.db_label = {:?} is not a label name \
                         ([a-zA-Z_][a-zA-Z0-9_]*)",
                        p.db_label
                    );
                }
            }
        }
        self.stream
            .check(self.metrics.backend == MetricBackend::Influxdb)
            .map_err(|e| anyhow::anyhow!("invalid config in {src}: {e}"))?;
        if self.metrics.mode == super::MetricMode::Stream {
            let st = &self.stream;
            if st.token.is_empty() && (st.username.is_empty() || st.password.is_empty()) {
                bail!(
                    "invalid config in {src}: metrics.mode = \"stream\" needs the writers' \
                     credentials: stream.username and stream.password, or stream.token"
                );
            }
            if !self.server.enabled {
                bail!(
                    "invalid config in {src}: metrics.mode = \"stream\" receives the points on \
                     the HTTP port: server.enabled must be true"
                );
            }
        }
        self.console
            .check(self.server.enabled)
            .map_err(|e| anyhow::anyhow!("invalid config in {src}: {e}"))?;
        for (name, section) in &self.plugins {
            if !section.is_object() {
                bail!("invalid config in {src}: plugins.{name} must be a table");
            }
            if let Some(enabled) = section.get("enabled")
                && as_bool(enabled).is_none()
            {
                bail!(
                    "invalid config in {src}: plugins.{name}.enabled must be true or false, got {enabled}"
                );
            }
        }
        Ok(())
    }

    /// Every number in range, so that no later sum, product or time conversion overflows.
    fn check_numbers(&self) -> anyhow::Result<()> {
        const DAY: u64 = 86_400;
        let (b, srv, i, a) = (&self.batch, &self.server, &self.influx, &self.alarms);
        check_range("batch.interval_seconds", b.interval_seconds, 1..=DAY)?;
        check_range(
            "batch.step_timeout_seconds",
            b.step_timeout_seconds,
            1..=DAY,
        )?;
        check_range(
            "batch.inventory_timeout_seconds",
            b.inventory_timeout_seconds,
            1..=DAY,
        )?;
        check_range(
            "batch.ledger_retention_days",
            b.ledger_retention_days,
            1..=36_500,
        )?;
        check_range(
            "server.header_read_timeout_seconds",
            srv.header_read_timeout_seconds,
            1..=3600,
        )?;
        check_range(
            "server.request_timeout_seconds",
            srv.request_timeout_seconds,
            1..=3600,
        )?;
        check_range("server.max_connections", srv.max_connections, 1..=10_000)?;
        check_range("influx.timeout_seconds", i.timeout_seconds, 1..=3600)?;
        check_range("influx.bucket_seconds", i.bucket_seconds, 1..=DAY)?;
        check_range(
            "influx.max_answer_bytes",
            i.max_answer_bytes,
            1024..=4 << 30,
        )?;
        check_range(
            "alarms.default_measure_seconds",
            a.default_measure_seconds,
            1..=7 * DAY,
        )?;
        check_range(
            "alarms.default_repeat_minutes",
            a.default_repeat_minutes,
            0..=525_600,
        )?;
        check_range("alarms.gmt_time_hour_gap", a.gmt_time_hour_gap, -24..=24)?;
        let st = &self.stream;
        check_range("stream.max_series", st.max_series, 1..=100_000_000)?;
        check_range(
            "stream.max_body_bytes",
            st.max_body_bytes,
            64 * 1024..=1 << 30,
        )?;
        check_range("stream.reconcile_every", st.reconcile_every, 1..=10_000)?;
        check_range(
            "alarms.display_utc_offset_hours",
            a.display_utc_offset_hours,
            -14.0..=14.0,
        )?;
        check_range("alarms.retry_min_seconds", a.retry_min_seconds, 0..=DAY)?;
        check_range("alarms.retry_max_seconds", a.retry_max_seconds, 0..=7 * DAY)?;
        check_range(
            "alarms.notify_budget_seconds",
            a.notify_budget_seconds,
            1..=DAY,
        )?;
        check_range(
            "alarms.notification_max_age_hours",
            a.notification_max_age_hours,
            1..=24 * 365,
        )?;
        check_range("alarms.digest_threshold", a.digest_threshold, 0..=100_000)?;
        check_range(
            "alarms.maintenance_grace_minutes",
            a.maintenance_grace_minutes,
            0..=7 * 24 * 60,
        )?;
        // 0 would hold nothing (that is maintenance_from_bosh = false); a task running for more
        // than a week is stuck, not maintenance
        check_range(
            "alarms.maintenance_max_hours",
            a.maintenance_max_hours,
            1..=MAX_MAINTENANCE_HOURS,
        )?;
        // 0 removes a missing VM at once; at most a week
        check_range(
            "batch.vm_removal_grace_minutes",
            b.vm_removal_grace_minutes,
            0..=MAX_VM_REMOVAL_GRACE_MINUTES,
        )?;
        Ok(())
    }
}

/// A config number outside `range` is an error naming its key, the value and the range. Plugins
/// check their own sections with it.
pub fn check_range<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> anyhow::Result<()> {
    if !range.contains(&value) {
        bail!(
            "{key} = {value} is out of range: expected {} to {}",
            range.start(),
            range.end()
        );
    }
    Ok(())
}

/// `log.level` is a tracing filter: comma-separated `level` or `target=level` directives. A
/// bare word that is not a level would silently become a target name that matches nothing, so
/// it is refused.
pub fn check_log_level(filter: &str) -> anyhow::Result<()> {
    use tracing_subscriber::filter::LevelFilter;
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if level.trim().parse::<LevelFilter>().is_err() {
            bail!(
                "log.level = {filter:?}: {directive:?} is not a level (off, error, warn, info, debug, trace) or target=level"
            );
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("log.level = {filter:?}: {e}"))?;
    Ok(())
}
