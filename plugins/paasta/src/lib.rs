//! Collector `paasta`: CPU, memory and disk of every VM of the `vms` inventory (origin `pas`),
//! from the PaaS-TA metrics database, in one InfluxDB query for all VMs.

use monit_cf_metrics::vm as vm_metrics;
use monit_host::async_trait;
use monit_host::model::{Origin, Reading, Target};
use monit_host::plugin::{
    CollectContext, Collector, PluginContext, PluginParts, PluginRegistration,
};
use serde::Deserialize;
use std::sync::Arc;

/// `[plugins.paasta]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaastaConfig {
    /// Run this collector.
    #[serde(default)]
    pub enabled: bool,
}

pub struct PaastaCollector;

#[async_trait]
impl Collector for PaastaCollector {
    fn origin(&self) -> Origin {
        Origin::Pas
    }

    async fn collect(&self, ctx: &CollectContext<'_>) -> anyhow::Result<Vec<Reading>> {
        let s = &ctx.settings.influx;
        let by_ip = vm_metrics::VmQuery {
            db: &s.paasta_db,
            measurement: &s.paasta_measurement,
            filter: None,
            group_by: Some("ip"),
            windows: vm_metrics::windows_of(ctx.windows, Origin::Pas),
            bucket_seconds: s.bucket_seconds,
            end_epoch: ctx.now.timestamp(),
        }
        .read(ctx.metrics)
        .await?;
        Ok(ctx
            .vms
            .iter()
            .flat_map(|vm| {
                let target = Target {
                    origin: Origin::Pas,
                    origin_id: vm.id,
                    name: vm.name.clone(),
                    ip: vm.ip.clone(),
                    app: None,
                };
                vm_metrics::readings_for(&target, by_ip.get(&vm.ip))
            })
            .collect())
    }
}

fn build(ctx: &PluginContext) -> anyhow::Result<PluginParts> {
    let _config: PaastaConfig = ctx.plugin_config()?;
    Ok(PluginParts {
        collector: Some(Arc::new(PaastaCollector)),
        ..Default::default()
    })
}

monit_host::inventory::submit! {
    PluginRegistration {
        name: "paasta",
        description: "CPU, memory and disk of PaaS-TA VMs (origin pas) from InfluxDB",
        sample: include_str!("../sample.toml"),
        build,
    }
}
