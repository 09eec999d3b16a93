//! Collector `paasta`: CPU, memory and disk of every VM of the `vms` inventory (origin `pas`),
//! from the PaaS-TA metrics database, in one InfluxDB query for all VMs.

use monit_cf_metrics::vm as vm_metrics;
use monit_host::async_trait;
use monit_host::model::{Origin, Reading, Target};
use monit_host::plugin::{
    CollectContext, Collector, MovedKey, PluginContext, PluginParts, PluginRegistration,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `[plugins.paasta]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaastaConfig {
    /// Run this collector.
    #[serde(default)]
    pub enabled: bool,
    /// InfluxDB database of the PaaS-TA VM metrics (config.ini `influx.paasta.db_name`).
    #[serde(default = "default_db")]
    pub db: String,
    /// Measurement of the PaaS-TA VM metrics in `db`.
    #[serde(default = "default_measurement")]
    pub measurement: String,
}

fn default_db() -> String {
    "cf_metric_db".into()
}
fn default_measurement() -> String {
    "cf_metrics".into()
}

/// Reads `measurement` of the InfluxDB database `db`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaastaCollector {
    pub db: String,
    pub measurement: String,
}

impl Default for PaastaCollector {
    fn default() -> Self {
        Self {
            db: default_db(),
            measurement: default_measurement(),
        }
    }
}

#[async_trait]
impl Collector for PaastaCollector {
    fn origin(&self) -> Origin {
        Origin::Pas
    }

    fn stream_series(
        &self,
        _settings: &monit_host::config::Settings,
    ) -> Vec<monit_host::metric_store::stream::StreamSeries> {
        vec![vm_metrics::stream_series(
            &self.db,
            &self.measurement,
            &["ip"],
            Some("ip"),
        )]
    }

    async fn history(
        &self,
        ctx: &monit_host::plugin::HistoryContext<'_>,
        keys: &[monit_host::plugin::SeriesKey],
    ) -> anyhow::Result<
        std::collections::HashMap<
            monit_host::plugin::SeriesKey,
            Vec<monit_host::plugin::HistoryPoint>,
        >,
    > {
        Ok(monit_cf_metrics::history::VmHistory {
            db: &self.db,
            measurement: &self.measurement,
            filter: None,
            group_by: Some("ip"),
        }
        .read(ctx, keys)
        .await?)
    }

    fn reads_by_vm(&self) -> bool {
        true
    }

    async fn collect(&self, ctx: &CollectContext<'_>) -> anyhow::Result<Vec<Reading>> {
        // the other VMs' series are dropped as the answer is decoded: memory follows the
        // inventory, not what the store holds
        // confirmation (stream mode): only the VMs of the new alarms, in a query narrowed to them
        let vms: Vec<&monit_host::model::Vm> = match ctx.targets {
            Some(t) => ctx
                .vms
                .iter()
                .filter(|vm| t.iter().any(|t| t.origin == Origin::Pas && *t.ip == *vm.ip))
                .collect(),
            None => ctx.vms.iter().collect(),
        };
        let inventory: std::collections::HashSet<&str> =
            vms.iter().map(|vm| vm.ip.as_str()).collect();
        let query = vm_metrics::VmQuery {
            db: &self.db,
            measurement: &self.measurement,
            filter: None,
            group_by: Some("ip"),
            windows: vm_metrics::windows_of(ctx.windows, Origin::Pas),
            bucket_seconds: ctx.bucket_seconds,
            end_epoch: ctx.now.timestamp(),
        };
        // a part of the fleet (confirmation, a reconciliation's part): the query names it.
        // A VM's fold is small: many VMs are read in one pass, whatever the host asks
        let named = ctx.narrow_to_vms && vms.len() <= monit_host::plugin::VMS_PER_PART;
        let by_ip = if ctx.targets.is_some() || named {
            query.read_targets(ctx.metrics, &inventory).await?
        } else {
            query.read_only(ctx.metrics, &inventory).await?
        };
        let mut readings: Vec<Reading> = vms
            .into_iter()
            .flat_map(|vm| {
                let target = Target {
                    origin: Origin::Pas,
                    origin_id: vm.id,
                    name: vm.name.as_str().into(),
                    ip: vm.ip.as_str().into(),
                    app: None,
                };
                vm_metrics::readings_for(&target, by_ip.get(&vm.ip))
            })
            .collect();
        if let Some(quiet) = ctx.quiet {
            quiet.retain_loud(Origin::Pas, &mut readings);
        }
        Ok(readings)
    }
}

fn build(ctx: &PluginContext) -> anyhow::Result<PluginParts> {
    let config: PaastaConfig = ctx.plugin_config()?;
    Ok(PluginParts {
        collector: Some(Arc::new(PaastaCollector {
            db: config.db,
            measurement: config.measurement,
        })),
        ..Default::default()
    })
}

use monit_host::plugin::{LegacyConfig, LegacyEnabled, LegacyKey, LegacyKind};

monit_host::inventory::submit! {
    PluginRegistration {
        name: "paasta",
        description: "CPU, memory and disk of PaaS-TA VMs (origin pas) from InfluxDB",
        sample: include_str!("../sample.toml"),
        moved_keys: &[
            MovedKey { old: "influx.paasta_db", new: "db" },
            MovedKey { old: "influx.paasta_measurement", new: "measurement" },
        ],
        legacy_ini: LegacyConfig {
            keys: &[
                LegacyKey { ini: "influx.paasta.db_name", field: Some("db"), kind: LegacyKind::Str },
            ],
            enabled: LegacyEnabled::Always,
        },
        show: monit_host::plugin::show_config::<PaastaConfig>,
        build,
    }
}
