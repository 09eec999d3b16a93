//! BOSH plugin: the VM inventory sync from the BOSH director (zones / vms), and the `bos`
//! collector of the director's own metrics.
//!
//! The director client lives in [`director`], the inventory rules in [`vm_source`], the config
//! section `[plugins.bosh]` in [`config`].

pub mod collector;
pub mod config;
pub mod director;
pub mod vm_source;

pub use config::BoshConfig;
pub use director::DirectorClient;
pub use vm_source::BoshVmSource;

use monit_host::plugin::MovedKey;
use monit_host::{PluginContext, PluginParts, PluginRegistration};
use std::sync::Arc;

/// Builds the plugin's parts from `[plugins.bosh]`.
pub fn build(ctx: &PluginContext) -> anyhow::Result<PluginParts> {
    let config: BoshConfig = ctx.plugin_config()?;
    let client = Arc::new(DirectorClient::new(&config)?);
    let vm_source = BoshVmSource::new(&config, client);
    let collector = collector::BoshCollector {
        service_name: config.service_name.clone(),
        director_ip: collector::host_of(&config.api_url),
        db: config.db.clone(),
        measurement: config.measurement.clone(),
    };
    Ok(PluginParts {
        vm_source: Some(Arc::new(vm_source)),
        collector: Some(Arc::new(collector)),
        ..Default::default()
    })
}

use monit_host::plugin::{LegacyConfig, LegacyEnabled, LegacyKey, LegacyKind};

monit_host::inventory::submit! {
    PluginRegistration {
        name: "bosh",
        description: "BOSH director: VM inventory sync (zones, vms) and director metrics (bos)",
        sample: include_str!("../sample.toml"),
        moved_keys: &[
            MovedKey { old: "influx.bosh_db", new: "db" },
            MovedKey { old: "influx.bosh_measurement", new: "measurement" },
        ],
        legacy_ini: LegacyConfig {
            keys: &[
                LegacyKey { ini: "influx.bosh.db_name", field: Some("db"), kind: LegacyKind::Str },
                LegacyKey { ini: "bosh.api.url", field: Some("api_url"), kind: LegacyKind::Str },
                LegacyKey { ini: "bosh.ip", field: None, kind: LegacyKind::Str },
                LegacyKey { ini: "bosh.admin", field: Some("username"), kind: LegacyKind::Str },
                LegacyKey { ini: "bosh.password", field: Some("password"), kind: LegacyKind::Str },
                LegacyKey { ini: "bosh.cf.deployment.name", field: Some("cf_deployment"), kind: LegacyKind::Str },
                LegacyKey { ini: "bosh.diego.deployment.name", field: Some("diego_deployment"), kind: LegacyKind::Str },
                LegacyKey { ini: "bosh.diego.cell.name.prefix", field: Some("cell_prefix"), kind: LegacyKind::Str },
                LegacyKey { ini: "bosh.cell.name.prefix", field: Some("cell_prefix"), kind: LegacyKind::Str },
                LegacyKey { ini: "bosh.service.name", field: Some("service_name"), kind: LegacyKind::Str },
            ],
            enabled: LegacyEnabled::IfAnySet(&["api_url"]),
        },
        show: monit_host::plugin::show_config::<BoshConfig>,
        build,
    }
}
