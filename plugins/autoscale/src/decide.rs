//! The decision about one app: a pure function of its policy, its instance count, the usage of
//! its instances, its last scaling and the time. No I/O here, so every rule is unit-tested.
//!
//! The rules, in order (the first that applies decides):
//! 1. The instance count comes from the platform when the actuator can read it; otherwise it is
//!    the number of instances reporting (indices 0..=highest reporting index). Nothing reporting
//!    and no platform count: `no_data`.
//! 2. Outside `instance_min_cnt..=instance_max_cnt`: set straight back to the nearest bound
//!    (needs the matching `auto_*_yn = Y`, and no cooldown). Load does not matter here.
//! 3. Any of the instances `0..count` without enough CPU and memory buckets in the window:
//!    `partial_data`, nothing is done (a missing instance would read as no load).
//! 4. Scale out by one when the mean CPU or the mean memory across instances is above its max
//!    (`auto_increase_yn = Y`); at `instance_max_cnt` that is `Blocked`.
//! 5. Scale in by one only when CPU **and** memory are both under their mins
//!    (`auto_decrease_yn = Y`, above `instance_min_cnt`): one busy resource is reason enough to
//!    keep the instance. Not when the same load on one instance fewer would cross a max
//!    (`would_exceed_max`): that scale-in would be undone by the next scale-out, which is how
//!    instances flap.
//! 6. Otherwise nothing (`within_thresholds`).
//!
//! A needed action inside the cooldown after the app's last acted scaling is held (`cooldown`):
//! the window must first see load measured after the change.

use crate::policy::Policy;
use chrono::{DateTime, Utc};
use monit_host::plugin::{ScaleAction, ScaleEvidence};
use std::collections::BTreeMap;
use std::fmt;

/// Mean usage of one instance over the window, in percent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    pub mean: f64,
    /// time buckets of the window that held data
    pub buckets: u32,
}

/// One container of the app as the metrics report it.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceUsage {
    pub index: i64,
    pub cpu: Option<Usage>,
    pub memory: Option<Usage>,
}

#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub policy: &'a Policy,
    /// what the platform says is running; `None` when the actuator cannot tell (portal, dry run)
    pub platform_instances: Option<i64>,
    /// every container of the app seen in the window
    pub usage: &'a [InstanceUsage],
    /// buckets each instance needs for CPU and for memory
    pub min_buckets: u32,
    pub cooldown: chrono::Duration,
    pub last_scaled: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

/// What tipped the decision; the portal's `cause` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Cpu,
    Memory,
}

impl Cause {
    pub fn portal_code(self) -> &'static str {
        match self {
            Cause::Cpu => "CPU",
            Cause::Memory => "MEM",
        }
    }
}

/// A reason: a stable code (for tests, dashboards and the host's alarm) and the detail.
#[derive(Clone, Debug, PartialEq)]
pub struct Reason {
    pub code: &'static str,
    pub detail: String,
}

impl Reason {
    /// Whether the decision saw the app's load: `no_data` and `partial_data` did not, so they
    /// neither raise nor resolve the host's "blocked at instance_max_cnt" alarm.
    pub fn evidence(&self) -> ScaleEvidence {
        match self.code {
            "no_data" | "partial_data" => ScaleEvidence::Unknown,
            _ => ScaleEvidence::Load,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// change the instance count to this
    Act {
        to: i64,
    },
    Skip,
    /// a scale-out is needed and instance_max_cnt forbids it
    Block,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub action: ScaleAction,
    pub verdict: Verdict,
    pub cause: Cause,
    pub instances_before: Option<i64>,
    /// mean across the instances that reported, percent
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub reason: Reason,
}

impl Plan {
    pub fn target(&self) -> Option<i64> {
        match self.verdict {
            Verdict::Act { to } => Some(to),
            _ => None,
        }
    }
}

/// Buckets an instance must have for a window: at least half of the window's buckets, and one.
/// Half, because the newest bucket is often still empty and the CPU derivative loses the first;
/// fewer than half means the instance was not there for most of the window (just started, or
/// gone), and its load says little about the app.
pub fn required_buckets(window_seconds: u64, bucket_seconds: u64) -> u32 {
    let expected = window_seconds / bucket_seconds.max(1);
    (expected.div_ceil(2)).clamp(1, u32::MAX as u64) as u32
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v)
}

struct Aggregate {
    cpu: Option<f64>,
    memory: Option<f64>,
    /// instance indices in 0..count without enough data
    missing: Vec<i64>,
}

/// Picks one container per index (two during an evacuation: the one with more CPU buckets, the
/// one that covered more of the window) and averages over the indices below `count`.
fn aggregate(usage: &[InstanceUsage], count: i64, min_buckets: u32) -> Aggregate {
    let mut by_index: BTreeMap<i64, &InstanceUsage> = BTreeMap::new();
    for u in usage {
        let buckets = |x: &InstanceUsage| x.cpu.map(|c| c.buckets).unwrap_or(0);
        by_index
            .entry(u.index)
            .and_modify(|cur| {
                if buckets(u) > buckets(cur) {
                    *cur = u;
                }
            })
            .or_insert(u);
    }
    let enough = |x: Option<Usage>| x.filter(|v| v.buckets >= min_buckets && v.mean.is_finite());
    let mut missing = Vec::new();
    let (mut cpu_sum, mut cpu_n, mut mem_sum, mut mem_n) = (0.0, 0u32, 0.0, 0u32);
    for index in 0..count.max(0) {
        let u = by_index.get(&index);
        let cpu = u.and_then(|u| enough(u.cpu));
        let mem = u.and_then(|u| enough(u.memory));
        if let Some(c) = cpu {
            cpu_sum += c.mean;
            cpu_n += 1;
        }
        if let Some(m) = mem {
            mem_sum += m.mean;
            mem_n += 1;
        }
        if cpu.is_none() || mem.is_none() {
            missing.push(index);
        }
    }
    Aggregate {
        cpu: (cpu_n > 0).then(|| cpu_sum / cpu_n as f64),
        memory: (mem_n > 0).then(|| mem_sum / mem_n as f64),
        missing,
    }
}

fn list(ix: &[i64]) -> String {
    const SHOWN: usize = 10;
    let mut s: Vec<String> = ix.iter().take(SHOWN).map(|i| i.to_string()).collect();
    if ix.len() > SHOWN {
        s.push(format!("… ({} in all)", ix.len()));
    }
    s.join(", ")
}

pub fn decide(inp: &Inputs<'_>) -> Plan {
    let p = inp.policy;
    let window = p.check_seconds;
    let mut plan = Plan {
        action: ScaleAction::None,
        verdict: Verdict::Skip,
        cause: Cause::Cpu,
        instances_before: inp.platform_instances,
        cpu_percent: None,
        memory_percent: None,
        reason: Reason {
            code: "",
            detail: String::new(),
        },
    };
    let reason = |code: &'static str, detail: String| Reason { code, detail };

    // 1. How many instances run.
    let count = match inp.platform_instances {
        Some(n) => n,
        None => match inp.usage.iter().map(|u| u.index).filter(|i| *i >= 0).max() {
            Some(highest) => highest + 1,
            None => {
                plan.reason = reason(
                    "no_data",
                    format!(
                        "no instance reported usage in the last {window}s and the platform count is not known"
                    ),
                );
                return plan;
            }
        },
    };
    plan.instances_before = Some(count);
    let agg = aggregate(inp.usage, count, inp.min_buckets);
    plan.cpu_percent = agg.cpu;
    plan.memory_percent = agg.memory;

    let cooldown_left = inp
        .last_scaled
        .map(|t| t + inp.cooldown - inp.now)
        .filter(|left| *left > chrono::Duration::zero());
    let held = |plan: &mut Plan, wanted: String| -> bool {
        match (cooldown_left, inp.last_scaled) {
            (Some(left), Some(at)) => {
                plan.reason = reason(
                    "cooldown",
                    format!(
                        "{wanted}, held: last scaled at {}, {}s of the {}s cooldown left",
                        at.format("%Y-%m-%d %H:%M:%S UTC"),
                        left.num_seconds().max(1),
                        inp.cooldown.num_seconds()
                    ),
                );
                true
            }
            _ => false,
        }
    };

    // 2. Outside the configured range: back to the nearest bound.
    if count > p.max_instances || count < p.min_instances {
        let (action, to, bound, yn) = if count > p.max_instances {
            (
                ScaleAction::In,
                p.max_instances,
                format!("above instance_max_cnt {}", p.max_instances),
                p.auto_decrease,
            )
        } else {
            (
                ScaleAction::Out,
                p.min_instances,
                format!("below instance_min_cnt {}", p.min_instances),
                p.auto_increase,
            )
        };
        plan.action = action;
        let wanted = format!("{count} instances running, {bound}: scaling to {to}");
        if !yn {
            let flag = if action == ScaleAction::In {
                "auto_decrease_yn"
            } else {
                "auto_increase_yn"
            };
            plan.reason = reason(
                "disabled",
                format!("{wanted} is needed but {flag} is not Y"),
            );
            return plan;
        }
        if held(&mut plan, wanted.clone()) {
            return plan;
        }
        plan.verdict = Verdict::Act { to };
        plan.reason = reason("out_of_range", wanted);
        return plan;
    }

    // 3. Every instance must have reported enough.
    if !agg.missing.is_empty() {
        plan.reason = reason(
            "partial_data",
            format!(
                "instance(s) {} of {count} reported less than {} bucket(s) of CPU and memory in the last {window}s",
                list(&agg.missing),
                inp.min_buckets
            ),
        );
        return plan;
    }
    let (Some(cpu), Some(mem)) = (agg.cpu, agg.memory) else {
        plan.reason = reason("no_data", format!("no usage in the last {window}s"));
        return plan;
    };
    let loads = format!(
        "mean CPU {} (min {}, max {}), memory {} (min {}, max {}) over {count} instance(s)",
        pct(cpu),
        pct(p.cpu_min),
        pct(p.cpu_max),
        pct(mem),
        pct(p.memory_min),
        pct(p.memory_max)
    );

    // 4. Scale out.
    let cpu_high = cpu > p.cpu_max;
    let mem_high = mem > p.memory_max;
    if cpu_high || mem_high {
        plan.action = ScaleAction::Out;
        plan.cause = if cpu_high { Cause::Cpu } else { Cause::Memory };
        let code = if cpu_high { "cpu_high" } else { "memory_high" };
        if !p.auto_increase {
            plan.reason = reason(
                "disabled",
                format!("{code}: {loads}; auto_increase_yn is not Y"),
            );
            return plan;
        }
        if count >= p.max_instances {
            plan.verdict = Verdict::Block;
            plan.reason = reason(
                "at_max",
                format!(
                    "{code}: {loads}; already at instance_max_cnt {}",
                    p.max_instances
                ),
            );
            return plan;
        }
        // the code is the reason's own prefix: the detail must not repeat it
        let detail = format!("{loads}; scaling out to {}", count + 1);
        if held(&mut plan, format!("{code}: {detail}")) {
            return plan;
        }
        plan.verdict = Verdict::Act { to: count + 1 };
        plan.reason = reason(code, detail);
        return plan;
    }

    // 5. Scale in.
    if cpu < p.cpu_min && mem < p.memory_min {
        plan.action = ScaleAction::In;
        plan.cause = Cause::Cpu;
        if !p.auto_decrease {
            plan.reason = reason(
                "disabled",
                format!("load_low: {loads}; auto_decrease_yn is not Y"),
            );
            return plan;
        }
        if count <= p.min_instances {
            plan.reason = reason(
                "at_min",
                format!(
                    "load_low: {loads}; already at instance_min_cnt {}",
                    p.min_instances
                ),
            );
            return plan;
        }
        let spread = count as f64 / (count - 1) as f64;
        let (cpu_after, mem_after) = (cpu * spread, mem * spread);
        if cpu_after > p.cpu_max || mem_after > p.memory_max {
            plan.reason = reason(
                "would_exceed_max",
                format!(
                    "load_low: {loads}; on {} instance(s) the same load would be CPU {}, memory {}, over a max",
                    count - 1,
                    pct(cpu_after),
                    pct(mem_after)
                ),
            );
            return plan;
        }
        let detail = format!("{loads}; scaling in to {}", count - 1);
        if held(&mut plan, format!("load_low: {detail}")) {
            return plan;
        }
        plan.verdict = Verdict::Act { to: count - 1 };
        plan.reason = reason("load_low", detail);
        return plan;
    }

    plan.reason = reason("within_thresholds", loads);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::good_row;
    use chrono::TimeZone;

    fn policy() -> Policy {
        // instances 1..=4, CPU 20..80, memory 20..80, window 120 s, both directions on
        good_row().check().unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn inst(index: i64, cpu: f64, mem: f64) -> InstanceUsage {
        InstanceUsage {
            index,
            cpu: Some(Usage {
                mean: cpu,
                buckets: 4,
            }),
            memory: Some(Usage {
                mean: mem,
                buckets: 4,
            }),
        }
    }

    fn run(p: &Policy, platform: Option<i64>, usage: &[InstanceUsage], last: Option<i64>) -> Plan {
        decide(&Inputs {
            policy: p,
            platform_instances: platform,
            usage,
            min_buckets: 2,
            cooldown: chrono::Duration::seconds(p.check_seconds as i64),
            last_scaled: last.map(|ago| now() - chrono::Duration::seconds(ago)),
            now: now(),
        })
    }

    #[test]
    fn required_buckets_is_half_the_window_and_at_least_one() {
        assert_eq!(required_buckets(120, 30), 2);
        assert_eq!(required_buckets(150, 30), 3);
        assert_eq!(required_buckets(10, 30), 1);
        assert_eq!(required_buckets(600, 0), 300);
    }

    #[test]
    fn mean_cpu_over_max_scales_out_by_one() {
        let p = policy();
        let plan = run(
            &p,
            Some(2),
            &[inst(0, 95.0, 30.0), inst(1, 85.0, 30.0)],
            None,
        );
        assert_eq!(plan.action, ScaleAction::Out);
        assert_eq!(plan.verdict, Verdict::Act { to: 3 });
        assert_eq!(plan.cause, Cause::Cpu);
        assert_eq!(plan.reason.code, "cpu_high");
        assert_eq!(plan.cpu_percent, Some(90.0));
        assert_eq!(plan.instances_before, Some(2));
    }

    #[test]
    fn no_reason_repeats_its_code() {
        // the history once read `cpu_high: cpu_high: mean CPU …`
        let p = policy();
        let cases = [
            (
                Some(2),
                vec![inst(0, 95.0, 30.0), inst(1, 85.0, 30.0)],
                None,
            ),
            (
                Some(2),
                vec![inst(0, 30.0, 95.0), inst(1, 30.0, 85.0)],
                None,
            ),
            (
                Some(3),
                vec![inst(0, 5.0, 5.0), inst(1, 5.0, 5.0), inst(2, 5.0, 5.0)],
                None,
            ),
            (
                Some(2),
                vec![inst(0, 95.0, 30.0), inst(1, 85.0, 30.0)],
                Some(10),
            ),
            (
                Some(4),
                vec![
                    inst(0, 95.0, 30.0),
                    inst(1, 95.0, 30.0),
                    inst(2, 95.0, 30.0),
                    inst(3, 95.0, 30.0),
                ],
                None,
            ),
            (
                Some(2),
                vec![inst(0, 50.0, 50.0), inst(1, 50.0, 50.0)],
                None,
            ),
        ];
        let mut codes = Vec::new();
        for (platform, usage, last) in cases {
            let plan = run(&p, platform, &usage, last);
            let text = plan.reason.to_string();
            let code = plan.reason.code;
            assert!(
                !plan.reason.detail.starts_with(&format!("{code}:")),
                "code repeated: {text}"
            );
            assert_eq!(text.matches(&format!("{code}: ")).count(), 1, "{text}");
            codes.push(code);
        }
        assert_eq!(
            codes,
            [
                "cpu_high",
                "memory_high",
                "load_low",
                "cooldown",
                "at_max",
                "within_thresholds"
            ]
        );
        let acted = run(
            &p,
            Some(2),
            &[inst(0, 95.0, 30.0), inst(1, 85.0, 30.0)],
            None,
        );
        assert!(
            acted
                .reason
                .to_string()
                .starts_with("cpu_high: mean CPU 90"),
            "{}",
            acted.reason
        );
    }

    #[test]
    fn one_hot_instance_does_not_decide_for_the_app() {
        // the original let a single container decide; the mean of 95 and 25 is 60
        let p = policy();
        let plan = run(
            &p,
            Some(2),
            &[inst(0, 95.0, 30.0), inst(1, 25.0, 30.0)],
            None,
        );
        assert_eq!(plan.verdict, Verdict::Skip);
        assert_eq!(plan.reason.code, "within_thresholds");
    }

    #[test]
    fn memory_over_max_scales_out_with_cause_mem() {
        let p = policy();
        let plan = run(&p, Some(1), &[inst(0, 30.0, 91.0)], None);
        assert_eq!(plan.verdict, Verdict::Act { to: 2 });
        assert_eq!(plan.cause.portal_code(), "MEM");
        assert_eq!(plan.reason.code, "memory_high");
    }

    #[test]
    fn exactly_at_a_threshold_does_nothing() {
        let p = policy();
        let plan = run(
            &p,
            Some(2),
            &[inst(0, 80.0, 80.0), inst(1, 80.0, 80.0)],
            None,
        );
        assert_eq!(plan.reason.code, "within_thresholds");
    }

    #[test]
    fn scale_in_needs_both_cpu_and_memory_low() {
        let p = policy();
        let low = run(
            &p,
            Some(3),
            &[inst(0, 5.0, 10.0), inst(1, 5.0, 10.0), inst(2, 5.0, 10.0)],
            None,
        );
        assert_eq!(low.action, ScaleAction::In);
        assert_eq!(low.verdict, Verdict::Act { to: 2 });
        assert_eq!(low.reason.code, "load_low");
        let mem_busy = run(
            &p,
            Some(3),
            &[inst(0, 5.0, 50.0), inst(1, 5.0, 50.0), inst(2, 5.0, 50.0)],
            None,
        );
        assert_eq!(mem_busy.verdict, Verdict::Skip);
        assert_eq!(mem_busy.reason.code, "within_thresholds");
    }

    #[test]
    fn at_max_a_needed_scale_out_is_blocked() {
        let p = policy();
        let usage: Vec<_> = (0..4).map(|i| inst(i, 95.0, 50.0)).collect();
        let plan = run(&p, Some(4), &usage, None);
        assert_eq!(plan.action, ScaleAction::Out);
        assert_eq!(plan.verdict, Verdict::Block);
        assert_eq!(plan.reason.code, "at_max");
        // blocked even inside the cooldown: the need is real either way
        let held = run(&p, Some(4), &usage, Some(10));
        assert_eq!(held.verdict, Verdict::Block);
    }

    #[test]
    fn at_min_nothing_is_removed() {
        let p = policy();
        let plan = run(&p, Some(1), &[inst(0, 1.0, 1.0)], None);
        assert_eq!(plan.action, ScaleAction::In);
        assert_eq!(plan.verdict, Verdict::Skip);
        assert_eq!(plan.reason.code, "at_min");
    }

    #[test]
    fn out_of_range_goes_back_to_the_nearest_bound_without_load_data() {
        let p = policy();
        let above = run(&p, Some(7), &[], None);
        assert_eq!(
            (above.action, above.verdict),
            (ScaleAction::In, Verdict::Act { to: 4 })
        );
        assert_eq!(above.reason.code, "out_of_range");
        let mut p2 = policy();
        p2.min_instances = 2;
        let below = run(&p2, Some(0), &[], None);
        assert_eq!(
            (below.action, below.verdict),
            (ScaleAction::Out, Verdict::Act { to: 2 })
        );
    }

    #[test]
    fn out_of_range_respects_the_direction_flags_and_the_cooldown() {
        let mut p = policy();
        p.auto_decrease = false;
        let off = run(&p, Some(7), &[], None);
        assert_eq!((off.verdict, off.reason.code), (Verdict::Skip, "disabled"));
        let held = run(&policy(), Some(7), &[], Some(30));
        assert_eq!(
            (held.verdict, held.reason.code),
            (Verdict::Skip, "cooldown")
        );
    }

    #[test]
    fn cooldown_holds_an_action_and_then_releases_it() {
        let p = policy();
        let hot = [inst(0, 95.0, 30.0)];
        let held = run(&p, Some(1), &hot, Some(119));
        assert_eq!(held.action, ScaleAction::Out);
        assert_eq!(held.verdict, Verdict::Skip);
        assert_eq!(held.reason.code, "cooldown");
        assert!(
            held.reason.detail.contains("1s of the 120s cooldown left"),
            "{}",
            held.reason
        );
        let free = run(&p, Some(1), &hot, Some(120));
        assert_eq!(free.verdict, Verdict::Act { to: 2 });
    }

    #[test]
    fn a_missing_instance_is_partial_data_not_low_load() {
        let p = policy();
        // the platform says 3, only 0 and 2 report: instance 1 would read as idle
        let plan = run(&p, Some(3), &[inst(0, 1.0, 1.0), inst(2, 1.0, 1.0)], None);
        assert_eq!(plan.verdict, Verdict::Skip);
        assert_eq!(plan.reason.code, "partial_data");
        assert!(
            plan.reason.detail.contains("instance(s) 1 of 3"),
            "{}",
            plan.reason
        );
    }

    #[test]
    fn too_few_buckets_is_partial_data() {
        let p = policy();
        let mut thin = inst(1, 99.0, 99.0);
        thin.cpu = Some(Usage {
            mean: 99.0,
            buckets: 1,
        });
        let plan = run(&p, Some(2), &[inst(0, 99.0, 99.0), thin], None);
        assert_eq!(plan.reason.code, "partial_data");
        let mut no_mem = inst(1, 99.0, 99.0);
        no_mem.memory = None;
        let plan = run(&p, Some(2), &[inst(0, 99.0, 99.0), no_mem], None);
        assert_eq!(plan.reason.code, "partial_data");
    }

    #[test]
    fn without_a_platform_count_the_reporting_indices_count_and_gaps_are_partial() {
        let p = policy();
        let plan = run(&p, None, &[inst(0, 95.0, 30.0), inst(1, 95.0, 30.0)], None);
        assert_eq!(plan.instances_before, Some(2));
        assert_eq!(plan.verdict, Verdict::Act { to: 3 });
        let gap = run(&p, None, &[inst(0, 95.0, 30.0), inst(2, 95.0, 30.0)], None);
        assert_eq!(gap.reason.code, "partial_data");
        let nothing = run(&p, None, &[], None);
        assert_eq!(
            (nothing.reason.code, nothing.instances_before),
            ("no_data", None)
        );
    }

    #[test]
    fn stopping_instances_above_the_platform_count_are_ignored() {
        let p = policy();
        let plan = run(
            &p,
            Some(1),
            &[inst(0, 50.0, 50.0), inst(1, 99.0, 99.0)],
            None,
        );
        assert_eq!(plan.reason.code, "within_thresholds");
        assert_eq!(plan.cpu_percent, Some(50.0));
    }

    #[test]
    fn an_evacuating_duplicate_keeps_the_container_that_covered_more() {
        let p = policy();
        let mut fresh = inst(0, 99.0, 99.0);
        fresh.cpu = Some(Usage {
            mean: 99.0,
            buckets: 1,
        });
        let plan = run(&p, Some(1), &[fresh, inst(0, 50.0, 50.0)], None);
        assert_eq!(plan.reason.code, "within_thresholds");
        assert_eq!(plan.cpu_percent, Some(50.0));
    }

    #[test]
    fn a_scale_in_that_would_cross_a_max_is_not_made() {
        // CPU 15 % on 2 instances is 30 % on one: fine with max 80, but with max 25 it would flap
        let mut p = policy();
        p.cpu_max = 25.0;
        let plan = run(
            &p,
            Some(2),
            &[inst(0, 15.0, 10.0), inst(1, 15.0, 10.0)],
            None,
        );
        assert_eq!(plan.action, ScaleAction::In);
        assert_eq!(
            (plan.verdict, plan.reason.code),
            (Verdict::Skip, "would_exceed_max")
        );
        let ok = run(
            &policy(),
            Some(2),
            &[inst(0, 15.0, 10.0), inst(1, 15.0, 10.0)],
            None,
        );
        assert_eq!(ok.verdict, Verdict::Act { to: 1 });
    }

    #[test]
    fn disabled_directions_are_skipped_with_the_flag_named() {
        let mut p = policy();
        p.auto_increase = false;
        p.auto_decrease = false;
        let out = run(
            &p,
            Some(2),
            &[inst(0, 99.0, 10.0), inst(1, 99.0, 10.0)],
            None,
        );
        assert_eq!((out.action, out.verdict), (ScaleAction::Out, Verdict::Skip));
        assert!(
            out.reason.detail.contains("auto_increase_yn"),
            "{}",
            out.reason
        );
        let inn = run(&p, Some(2), &[inst(0, 1.0, 1.0), inst(1, 1.0, 1.0)], None);
        assert!(
            inn.reason.detail.contains("auto_decrease_yn"),
            "{}",
            inn.reason
        );
    }

    #[test]
    fn load_that_flips_each_tick_does_not_flip_instances() {
        // tick 1 hot: scale out 2 -> 3; tick 2 (60 s later) cold: held by the cooldown;
        // tick 3 (after the cooldown) moderate on 3 instances: nothing
        let p = policy();
        let t1 = run(
            &p,
            Some(2),
            &[inst(0, 95.0, 30.0), inst(1, 95.0, 30.0)],
            None,
        );
        assert_eq!(t1.verdict, Verdict::Act { to: 3 });
        let cold: Vec<_> = (0..3).map(|i| inst(i, 5.0, 10.0)).collect();
        let t2 = run(&p, Some(3), &cold, Some(60));
        assert_eq!(
            (t2.action, t2.verdict, t2.reason.code),
            (ScaleAction::In, Verdict::Skip, "cooldown")
        );
        let moderate: Vec<_> = (0..3).map(|i| inst(i, 50.0, 30.0)).collect();
        let t3 = run(&p, Some(3), &moderate, Some(180));
        assert_eq!(t3.verdict, Verdict::Skip);
    }
}
