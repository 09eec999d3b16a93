//! Evaluation, the third stage. In: the policies, the open alarms and the tick's readings and
//! scale decisions. Out: the [`engine::Change`]s of the tick (open, escalate, step down,
//! count, repeat, recover), decided without I/O so the same rules run in the backtest:
//!
//! * [`engine`]: readings against thresholds, sustained over the policy window; the scale
//!   decisions that became alarms ([`engine::scale_changes`]);
//! * [`metrics_gap`]: a VM without data is `fail`, unless (nearly) every VM of its origin is
//!   silent: then it is one pipeline alarm;
//! * [`alarm_text`]: the titles and messages the management app shows.

pub mod alarm_text;
pub mod engine;
pub mod metrics_gap;
