//! Collector `bos`: CPU, memory and disk of the BOSH director VM from `bosh_metrics`, in one
//! query, filtered on `origin` = `service_name` as the 2.0 batch did (4.0 dropped the filter and
//! averaged every series of the measurement, defect D14). No data at all opens a `fail` alarm,
//! as the original's "BOSH is down" rule did.

use monit_cf_metrics::vm as vm_metrics;
use monit_host::async_trait;
use monit_host::model::{BOSH_ORIGIN_ID, Origin, Reading, Target};
use monit_host::plugin::{CollectContext, Collector, HistoryContext, HistoryPoint, SeriesKey};
use std::collections::HashMap;

pub struct BoshCollector {
    /// `origin` tag of the director's metrics and its display name (`bosh.service.name`)
    pub service_name: String,
    /// host part of the director URL, as the original stored it in `alarms.ip`
    pub director_ip: String,
    /// InfluxDB database and measurement of the director's metrics
    pub db: String,
    pub measurement: String,
}

/// `https://127.0.0.6:25555` or `127.0.0.6:25555` → `127.0.0.6`
pub fn host_of(api_url: &str) -> String {
    let rest = api_url.split_once("://").map(|(_, r)| r).unwrap_or(api_url);
    let authority = rest.split('/').next().unwrap_or_default();
    // never the userinfo: `user:pass@host` is not a host
    let authority = authority.rsplit('@').next().unwrap_or_default();
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default().to_string();
    }
    authority.split(':').next().unwrap_or_default().to_string()
}

#[async_trait]
impl Collector for BoshCollector {
    fn origin(&self) -> Origin {
        Origin::Bos
    }

    fn stream_series(
        &self,
        _settings: &monit_host::config::Settings,
    ) -> Vec<monit_host::metric_store::stream::StreamSeries> {
        vec![vm_metrics::stream_series(
            &self.db,
            &self.measurement,
            &["origin"],
            None,
        )]
    }

    async fn history(
        &self,
        ctx: &HistoryContext<'_>,
        keys: &[SeriesKey],
    ) -> anyhow::Result<HashMap<SeriesKey, Vec<HistoryPoint>>> {
        // the director's one series, whatever IP the alarm names
        Ok(monit_cf_metrics::history::VmHistory {
            db: &self.db,
            measurement: &self.measurement,
            filter: Some(("origin", &self.service_name)),
            group_by: None,
        }
        .read(ctx, keys)
        .await?)
    }

    async fn collect(&self, ctx: &CollectContext<'_>) -> anyhow::Result<Vec<Reading>> {
        let by_key = vm_metrics::VmQuery {
            db: &self.db,
            measurement: &self.measurement,
            filter: Some(("origin", &self.service_name)),
            group_by: None,
            windows: vm_metrics::windows_of(ctx.windows, Origin::Bos),
            bucket_seconds: ctx.bucket_seconds,
            end_epoch: ctx.now.timestamp(),
        }
        .read(ctx.metrics)
        .await?;
        let target = Target {
            origin: Origin::Bos,
            origin_id: BOSH_ORIGIN_ID,
            name: self.service_name.as_str().into(),
            ip: self.director_ip.as_str().into(),
            app: None,
        };
        Ok(vm_metrics::readings_for(&target, by_key.get("")))
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn director_ip_is_the_host_part_of_the_url() {
        assert_eq!(host_of("127.0.0.6:25555"), "127.0.0.6");
        assert_eq!(host_of("https://127.0.0.6:25555/"), "127.0.0.6");
        assert_eq!(host_of("https://[fd00::6]:25555"), "fd00::6");
        assert_eq!(host_of("director.example"), "director.example");
    }
}
