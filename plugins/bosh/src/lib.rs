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
    };
    Ok(PluginParts {
        vm_source: Some(Arc::new(vm_source)),
        collector: Some(Arc::new(collector)),
        ..Default::default()
    })
}

monit_host::inventory::submit! {
    PluginRegistration {
        name: "bosh",
        description: "BOSH director: VM inventory sync (zones, vms) and director metrics (bos)",
        sample: include_str!("../sample.toml"),
        build,
    }
}
