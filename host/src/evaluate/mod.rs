//! Evaluation, the third stage. In: the policies, the open alarms and the tick's readings and
//! scale decisions. Out: the [`engine::Change`]s of the tick (open, escalate, step down,
//! count, repeat, recover), decided without I/O so the same rules run in the backtest:
//!
//! * [`collect`]: the collectors' readings, screened for pipeline gaps;
//! * [`engine`]: readings against thresholds, sustained over the policy window; the scale
//!   decisions that became alarms ([`engine::scale_changes`]);
//! * [`metrics_gap`]: a VM without data is `fail`, unless (nearly) every VM of its origin is
//!   silent: then it is one pipeline alarm;
//! * [`alarm_text`]: the titles and messages the management app shows;
//! * [`truth`]: stream mode's confirmation of changes by the store, and its drift;
//! * [`reconcile`]: the fleet from both the stream and the store, beside the ticks.

pub mod alarm_text;
pub mod collect;
pub mod engine;
pub mod metrics_gap;
pub mod reconcile;
pub mod truth;

use crate::model::{Policy, Timestamp};
use crate::plugin::ScaleDecision;
use collect::Collected;
use engine::{Change, EngineOptions, OpenAlarm};

/// The changes of a tick: the readings against the policies, one pipeline alarm per origin
/// whose answer was a gap, and a needed scale-out blocked by `instance_max_cnt` as an alarm of
/// its own.
pub fn tick_changes(
    policies: &[Policy],
    open: &[OpenAlarm],
    collected: &Collected,
    decisions: &[ScaleDecision],
    now: Timestamp,
    opts: &EngineOptions,
) -> Vec<Change> {
    let mut changes = engine::evaluate(
        policies,
        open,
        &collected.readings,
        &collected.evaluated,
        now,
        opts,
    );
    changes.extend(metrics_gap::pipeline_changes(
        &collected.gap_checks,
        policies,
        open,
        now,
        opts,
    ));
    changes.extend(engine::scale_changes(decisions, policies, open, now, opts));
    changes
}
