//! The metric store the collectors read, chosen by `[metrics] backend`: one handle that the
//! readers of the metric schema match on to send InfluxQL or PromQL. The host builds it (and owns
//! both clients); the readers own the queries.
//!
//! The second stage. In: a client's own settings section and the queries of the readers
//! (which live with the schema in `plugins/common/cf-metrics`). Out: answers decoded as they
//! stream in ([`bounded`] caps every answer), folded by the reader, and counted for the tick
//! summary.

pub mod bounded;
pub mod influx;
pub mod prometheus;
pub mod stream;
pub mod subscription;

use crate::config::{InfluxSettings, MetricBackend, PrometheusSettings};
use crate::metric_store::influx::{InfluxClient, InfluxError, InfluxStats};
use crate::metric_store::prometheus::{PrometheusClient, PrometheusError};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub enum MetricStore {
    Influx(InfluxClient),
    Prometheus(PrometheusClient),
    /// Stream mode, warm: the readers fold the windows kept in memory (the query client of the
    /// backend stays inside for what the stream cannot answer).
    Stream(stream::StreamHandle),
}

/// An error of either store; the message names the store and its URL.
#[derive(Debug, thiserror::Error)]
pub enum MetricStoreError {
    #[error(transparent)]
    Influx(#[from] InfluxError),
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
}

impl MetricStore {
    /// The client of the configured backend (`[metrics] backend`), from its own section.
    pub fn new(
        backend: MetricBackend,
        influx: &InfluxSettings,
        prometheus: &PrometheusSettings,
    ) -> Result<Self, MetricStoreError> {
        Ok(match backend {
            MetricBackend::Influxdb => Self::Influx(InfluxClient::new(influx)?),
            MetricBackend::Prometheus => Self::Prometheus(PrometheusClient::new(prometheus)?),
        })
    }

    pub fn backend(&self) -> MetricBackend {
        match self {
            Self::Influx(_) => MetricBackend::Influxdb,
            Self::Prometheus(_) => MetricBackend::Prometheus,
            Self::Stream(h) => h.query.backend(),
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Self::Influx(c) => c.url(),
            Self::Prometheus(c) => c.url(),
            Self::Stream(h) => h.query.url(),
        }
    }

    /// The store's query client (in stream mode the one inside: the stream keeps minutes),
    /// counting its queries apart from the readings': the notify stage reads the charts'
    /// history with it, and the tick's `influx_queries` stay the readings' own.
    pub fn history_client(&self) -> MetricStore {
        match self {
            Self::Influx(c) => Self::Influx(c.with_own_stats()),
            Self::Prometheus(c) => Self::Prometheus(c.with_own_stats()),
            Self::Stream(h) => h.query.history_client(),
        }
    }

    /// Queries sent and rows (InfluxDB) or samples (Prometheus API) read so far.
    pub fn stats(&self) -> &Arc<InfluxStats> {
        match self {
            Self::Influx(c) => &c.stats,
            Self::Prometheus(c) => &c.stats,
            Self::Stream(h) => h.query.stats(),
        }
    }
}

impl From<InfluxClient> for MetricStore {
    fn from(c: InfluxClient) -> Self {
        Self::Influx(c)
    }
}

impl From<PrometheusClient> for MetricStore {
    fn from(c: PrometheusClient) -> Self {
        Self::Prometheus(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StreamSettings;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn the_history_client_is_the_query_client_with_counts_of_its_own() {
        let influx = InfluxClient::new(&InfluxSettings::default()).unwrap();
        influx.stats.queries.store(7, Relaxed);
        let stream = MetricStore::Stream(stream::StreamHandle {
            state: Arc::new(stream::StreamState::new(&StreamSettings::default(), &[])),
            query: Box::new(MetricStore::Influx(influx.clone())),
        });
        // in stream mode too: the store's client, never the stream's windows
        let history = stream.history_client();
        assert!(matches!(history, MetricStore::Influx(_)), "{history:?}");
        assert_eq!(history.url(), influx.url());
        assert_eq!(history.stats().queries.load(Relaxed), 0);
        history.stats().queries.store(1, Relaxed);
        assert_eq!(influx.stats.queries.load(Relaxed), 7, "the readings' count");
    }
}
