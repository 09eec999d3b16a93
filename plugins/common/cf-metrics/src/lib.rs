//! The PaaS-TA metric schema as it sits in InfluxDB 1.x, shared by several plugins (Telegraf's
//! `plugins/common`): which series hold a VM's or an app container's CPU, memory and disk, the
//! InfluxQL that reads all of them in a few statements, and the fold of the answers into
//! per-VM buckets, per-container usage and alarm readings. The host keeps only the InfluxDB
//! client (it counts queries for the tick summary); the schema lives here.
//!
//! * [`vm`]: PaaS-TA and BOSH VM metrics (`cf_metrics`, `bosh_metrics`), used by the paasta and
//!   bosh collectors.
//! * [`container`]: cAdvisor `container_metrics`, used by the container collector and autoscale.
//! * [`history`]: the recent past of given VM and container readings, for the charts in alarm
//!   mails.

pub mod container;
pub mod history;
pub mod vm;
