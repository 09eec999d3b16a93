//! Plugin host of the monitoring batch. The folders are the stages of a tick, in the order it
//! runs them; data flows down the list, and nothing in a stage uses a later one
//! (`tests/stages.rs` checks it):
//!
//! 1. [`config`]: the settings (TOML or the original's `config.ini`, environment overrides),
//!    secrets and what may be shown of them. The plugin sections stay data here.
//! 2. [`metric_store`]: the clients of the metric stores (InfluxDB 1.x, a Prometheus-API store)
//!    with bounded answers; the collectors' readers send their queries through them.
//! 3. [`evaluate`]: readings against policies: the alarm engine, no-data and pipeline gaps,
//!    scale decisions as alarms, the alarm text.
//! 4. [`hold`]: which notifications wait: silences, maintenance, inhibition.
//! 5. [`store`]: the Monitoring DB: policies, VMs and open alarms in; alarm changes with their
//!    outbox rows out, in one transaction; the leader lock that fences every write.
//! 6. [`notify`]: the outbox drained through the notifiers: claims, digests, outcomes.
//! 7. [`run`]: the tick that calls the stages in turn, the schedule and leader election, the
//!    HTTP endpoint, telemetry, the CLI and the backtest.
//!
//! Beside them: [`model`] (what every stage speaks: targets, readings, levels) and [`plugin`]
//! (the contract a plugin implements and the registry it joins).

pub mod config;
pub mod evaluate;
pub mod hold;
pub mod metric_store;
pub mod notify;
pub mod run;
pub mod store;

pub mod model;
pub mod plugin;
#[cfg(feature = "testing")]
pub mod testing;

pub use async_trait::async_trait;
pub use inventory;
pub use plugin::{
    CollectContext, Collector, Notifier, PluginContext, PluginParts, PluginRegistration,
    ScaleContext, Scaler, SyncContext, VmSource,
};
