//! Plugin host of the monitoring batch: the traits plugins implement, the registry they join,
//! configuration, the scheduler, the alarm engine and the Monitoring DB stores.

pub mod alarm_text;
pub mod backtest;
pub mod bounded;
pub mod cli;
pub mod config;
pub mod db;
pub mod digest;
pub mod engine;
pub mod hold;
pub mod http;
pub mod influx;
pub mod inhibit;
pub mod maintenance;

pub mod leader;
pub mod legacy_ini;
pub mod metric_store;
pub mod metrics_gap;
pub mod model;
pub mod plugin;
pub mod prometheus;
pub mod redact;
pub mod scheduler;
pub mod secret;
pub mod silence;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod visible;

pub use async_trait::async_trait;
pub use inventory;
pub use plugin::{
    CollectContext, Collector, Notifier, PluginContext, PluginParts, PluginRegistration,
    ScaleContext, Scaler, SyncContext, VmSource,
};
