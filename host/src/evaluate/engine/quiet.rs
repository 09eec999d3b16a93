//! Readings that cannot change anything this tick: a target without an open alarm whose usage
//! is under its policy's lowest threshold (or has no policy) leads [`super::evaluate`] to no
//! change. A large fleet's collector (100,000 containers: 300,000 readings a tick, a few
//! hundred of them over a threshold) leaves those out instead of building, evaluating and
//! freeing them, and counts them, so that the tick's reading counts and the pipeline-gap
//! checks stay what they were. As Prometheus evaluates `expr > threshold` and keeps only the
//! series that breach, with the difference that a target with an alarm keeps all its readings
//! (its recovery, its level, its count follow them).

use super::{KeyRef, OpenAlarm};
use crate::model::{AlarmType, Origin, Policy, Resource};
pub use crate::plugin::{QuietRule, Skipped};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What makes a usage reading quiet this tick: the policies and the open alarms' targets.
pub struct QuietReadings<'a> {
    policies: FxHashMap<(Origin, Resource), &'a Policy>,
    /// every target with an open alarm of any type (recovered-but-open ones too), keyed as
    /// its `fail` alarm
    alarmed: FxHashSet<KeyRef<'a>>,
    skipped: Mutex<BTreeMap<Origin, Skipped>>,
}

impl<'a> QuietReadings<'a> {
    pub fn new(policies: &'a [Policy], open: &'a [OpenAlarm]) -> Self {
        Self {
            policies: policies
                .iter()
                .map(|p| ((p.origin, p.resource), p))
                .collect(),
            alarmed: open
                .iter()
                .map(|a| KeyRef {
                    alarm_type: AlarmType::Fail,
                    ..KeyRef::of_alarm(a)
                })
                .collect(),
            skipped: Mutex::new(BTreeMap::new()),
        }
    }
}

impl QuietRule for QuietReadings<'_> {
    /// Quiet: the target has no open alarm, and its policy gives no level for `mean` (under
    /// the lowest threshold, not a number) or there is no policy for the resource.
    fn is_quiet(
        &self,
        origin: Origin,
        origin_id: i64,
        app: Option<(&str, i32)>,
        resource: Resource,
        mean: f64,
    ) -> bool {
        let alarmed =
            self.alarmed
                .contains(&KeyRef::of_parts(origin, origin_id, app, AlarmType::Fail));
        !alarmed
            && self
                .policies
                .get(&(origin, resource))
                .is_none_or(|p| !mean.is_finite() || p.level_for(mean).is_none())
    }

    fn count(&self, origin: Origin, skipped: Skipped) {
        if let Ok(mut all) = self.skipped.lock() {
            let s = all.entry(origin).or_default();
            s.readings += skipped.readings;
            s.targets += skipped.targets;
        }
    }

    fn take_skipped(&self, origin: Origin) -> Skipped {
        self.skipped
            .lock()
            .ok()
            .and_then(|mut all| all.remove(&origin))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::engine::{EngineOptions, evaluate};
    use crate::model::{Level, Measured, Reading, Target};
    use crate::testing::{
        container_target as container, open_alarm as alarm, policy, vm_target as vm,
    };

    /// Leaving the quiet readings out changes nothing the engine decides: thresholds (a
    /// critical under the warning too), a resource without a policy, values at and around each
    /// threshold and not a number, targets with an open alarm of each kind (one recovered but
    /// open, one never told) and without.
    #[test]
    fn the_engine_decides_the_same_without_the_quiet_readings() {
        let policies = [
            policy(1, Origin::Con, Resource::Cpu, 80.0, 90.0),
            policy(2, Origin::Con, Resource::Memory, 70.0, 60.0),
            policy(3, Origin::Pas, Resource::Cpu, 60.0, 95.0),
            policy(4, Origin::Pas, Resource::Disk, 75.0, 85.0),
        ];
        let targets = [
            container("a", 0),
            container("b", 0),
            container("b", 1),
            container("c", 1),
            vm(1),
            vm(2),
            vm(3),
        ];
        let mut open = vec![
            alarm(10, &targets[1], AlarmType::Cpu, Level::Warning),
            alarm(11, &targets[3], AlarmType::Fail, Level::Fail),
            alarm(12, &targets[5], AlarmType::Memory, Level::Critical),
            alarm(13, &targets[6], AlarmType::Fail, Level::Fail),
        ];
        open[2].recovered = true;
        open[3].last_sent = None;
        let opts = EngineOptions {
            auto_resolve: Default::default(),
            default_repeat_minutes: 30,
        };
        let values = [
            0.0,
            50.0,
            59.99,
            60.0,
            69.99,
            70.0,
            75.0,
            79.99,
            80.0,
            85.0,
            90.0,
            99.0,
            f64::NAN,
        ];
        let now = chrono::Utc::now();
        let mut quiet_seen = 0;
        for (step, _) in values.iter().enumerate() {
            let readings: Vec<Reading> = targets
                .iter()
                .enumerate()
                .flat_map(|(i, t)| {
                    Resource::ALL.iter().enumerate().map(move |(j, r)| Reading {
                        target: t.clone(),
                        value: Measured::Usage {
                            resource: *r,
                            mean: values[(step + i + j) % values.len()],
                            peak: values[(step + i + 2 * j) % values.len()],
                            buckets: 10,
                        },
                    })
                })
                .collect();
            let quiet = QuietReadings::new(&policies, &open);
            let kept: Vec<Reading> = readings
                .iter()
                .filter(|r| {
                    let Measured::Usage { resource, mean, .. } = r.value else {
                        return true;
                    };
                    let t = &r.target;
                    !quiet.is_quiet(t.origin, t.origin_id, t.instance(), resource, mean)
                })
                .cloned()
                .collect();
            quiet_seen += readings.len() - kept.len();
            let origins = [Origin::Con, Origin::Pas];
            assert_eq!(
                evaluate(&policies, &open, &kept, &origins, now, &opts),
                evaluate(&policies, &open, &readings, &origins, now, &opts),
                "step {step}"
            );
        }
        assert!(quiet_seen >= 50, "many readings are quiet: {quiet_seen}");
    }

    #[test]
    fn a_collectors_quiet_readings_are_left_out_and_counted_by_target() {
        let policies = [policy(1, Origin::Pas, Resource::Cpu, 80.0, 90.0)];
        let usage = |t: &Target, resource, mean| Reading {
            target: t.clone(),
            value: Measured::Usage {
                resource,
                mean,
                peak: mean,
                buckets: 10,
            },
        };
        let (calm, hot, silent, alarmed) = (vm(1), vm(2), vm(3), vm(4));
        let mut readings = vec![
            usage(&calm, Resource::Cpu, 10.0),
            usage(&calm, Resource::Memory, 99.0),
            usage(&hot, Resource::Cpu, 95.0),
            usage(&hot, Resource::Memory, 10.0),
            Reading {
                target: silent.clone(),
                value: Measured::NoData,
            },
            usage(&alarmed, Resource::Cpu, 10.0),
        ];
        let open = [alarm(1, &alarmed, AlarmType::Cpu, Level::Warning)];
        let quiet = QuietReadings::new(&policies, &open);
        quiet.retain_loud(Origin::Pas, &mut readings);
        let left: Vec<(i64, bool)> = readings
            .iter()
            .map(|r| (r.target.origin_id, r.value == Measured::NoData))
            .collect();
        assert_eq!(
            left,
            vec![(2, false), (3, true), (4, false)],
            "hot's cpu, silent's NoData, the alarmed VM's cpu"
        );
        assert_eq!(
            quiet.take_skipped(Origin::Pas),
            Skipped {
                readings: 3,
                targets: 1
            },
            "calm's two (no memory policy), hot's memory; only calm had none left"
        );
    }

    #[test]
    fn what_a_collector_left_out_is_taken_once() {
        let quiet = QuietReadings::new(&[], &[]);
        let one = Skipped {
            readings: 3,
            targets: 1,
        };
        quiet.count(Origin::Con, one);
        quiet.count(Origin::Con, one);
        assert_eq!(
            quiet.take_skipped(Origin::Con),
            Skipped {
                readings: 6,
                targets: 2
            }
        );
        assert_eq!(quiet.take_skipped(Origin::Con), Skipped::default());
        assert_eq!(quiet.take_skipped(Origin::Pas), Skipped::default());
    }
}
