//! Inhibition: what is already said by a bigger alarm is not said again.
//! * a VM that is down (`fail`) inhibits its own cpu/memory/disk alarms and, for a cell, every
//!   alarm of the containers on it;
//! * an app-level autoscale alarm (app_index -1) inhibits its instances' alarms of the same type.
//!
//! Pure: which changes of a tick are inhibited, from the open alarms, the tick's changes and the
//! inventory. The alarms are recorded all the same; only their notifications are held.

use crate::evaluate::engine::APP_LEVEL_INDEX;
use crate::evaluate::engine::{AlarmKey, Change, OpenAlarm};
use crate::model::{AlarmType, Origin, Target, Vm};
use std::collections::HashSet;

/// The alarms that inhibit others this tick.
#[derive(Debug, Default)]
pub struct Inhibitors {
    /// (origin, origin_id) of VMs that are down after this tick's changes
    down_vms: HashSet<(Origin, i64)>,
    /// names and IPs of the cells among them
    down_cells: HashSet<String>,
    /// (app, type) of open app-level alarms
    apps: HashSet<(String, AlarmType)>,
}

impl Inhibitors {
    pub fn new(open: &[OpenAlarm], changes: &[Change], vms: &[Vm]) -> Inhibitors {
        let is_vm_fail =
            |origin: Origin, ty: AlarmType| origin != Origin::Con && ty == AlarmType::Fail;
        let mut down_vms: HashSet<(Origin, i64)> = open
            .iter()
            .filter(|a| is_vm_fail(a.origin, a.alarm_type) && !a.recovered)
            .map(|a| (a.origin, a.origin_id))
            .collect();
        for ch in changes {
            let s = ch.subject();
            if !is_vm_fail(s.target.origin, s.alarm_type) {
                continue;
            }
            let vm = (s.target.origin, s.target.origin_id);
            match ch {
                Change::Recover { .. } => {
                    down_vms.remove(&vm);
                }
                _ => {
                    down_vms.insert(vm);
                }
            }
        }
        let down_cells = vms
            .iter()
            .filter(|v| v.is_cell() && down_vms.contains(&(Origin::Pas, v.id)))
            .flat_map(|v| [v.name.clone(), v.ip.clone()])
            .filter(|s| !s.is_empty())
            .collect();
        let apps = open
            .iter()
            .filter(|a| {
                a.origin == Origin::Con && a.app_index == Some(APP_LEVEL_INDEX) && !a.recovered
            })
            .filter_map(|a| Some((a.app_name.clone()?, a.alarm_type)))
            .collect();
        Inhibitors {
            down_vms,
            down_cells,
            apps,
        }
    }

    /// Whether the alarm of `target` and `alarm_type` is inhibited.
    pub fn inhibits(&self, target: &Target, alarm_type: AlarmType) -> bool {
        match &target.app {
            None => {
                alarm_type != AlarmType::Fail
                    && self.down_vms.contains(&(target.origin, target.origin_id))
            }
            Some(app) => {
                (app.app_index != APP_LEVEL_INDEX
                    && self
                        .apps
                        .contains(&(AlarmKey::of_target(target, alarm_type).app_name, alarm_type)))
                    || self.down_cells.contains(&*app.cell_name)
                    || (!target.ip.is_empty() && self.down_cells.contains(&*target.ip))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::engine::OpenStatus;
    use crate::model::{AppInstance, Level};

    fn vm(id: i64, name: &str, ip: &str, vm_type: &str) -> Vm {
        Vm {
            id,
            zone_id: 1,
            zone_name: None,
            name: name.into(),
            ip: ip.into(),
            vm_type: vm_type.into(),
        }
    }
    fn target(id: i64, name: &str) -> Target {
        Target {
            origin: Origin::Pas,
            origin_id: id,
            name: name.into(),
            ip: format!("10.0.0.{id}").into(),
            app: None,
        }
    }
    fn container(app: &str, index: i32, cell: &str, ip: &str) -> Target {
        Target {
            origin: Origin::Con,
            origin_id: 0,
            name: format!("{app}-{index}").into(),
            ip: ip.into(),
            app: Some(AppInstance {
                app_name: app.into(),
                app_index: index,
                container_name: format!("c-{index}").into(),
                cell_name: cell.into(),
            }),
        }
    }
    fn open(id: i64, t: &Target, ty: AlarmType) -> OpenAlarm {
        OpenAlarm {
            text_digest: None,
            id,
            origin: t.origin,
            origin_id: t.origin_id,
            alarm_type: ty,
            level: Level::Critical,
            status: OpenStatus::Raised,
            raised_at: chrono::Utc::now(),
            last_sent: Some(chrono::Utc::now()),
            app_name: t.app.as_ref().map(|a| a.app_name.to_string()),
            app_index: t.app.as_ref().map(|a| a.app_index),
            recovered: false,
            notified_level: Level::Critical,
        }
    }
    fn opened(t: &Target, ty: AlarmType) -> Change {
        Change::Open {
            target: t.clone(),
            alarm_type: ty,
            level: Level::Fail,
            value: None,
            threshold: None,
        }
    }

    #[test]
    fn a_down_vm_inhibits_its_resource_alarms_not_its_fail_nor_other_vms() {
        let (a, b) = (target(1, "router/0"), target(2, "router/1"));
        let inh = Inhibitors::new(&[], &[opened(&a, AlarmType::Fail)], &[]);
        assert!(inh.inhibits(&a, AlarmType::Cpu));
        assert!(inh.inhibits(&a, AlarmType::Disk));
        assert!(!inh.inhibits(&a, AlarmType::Fail));
        assert!(!inh.inhibits(&b, AlarmType::Cpu));
        // open from an earlier tick inhibits too
        let inh = Inhibitors::new(&[open(9, &b, AlarmType::Fail)], &[], &[]);
        assert!(inh.inhibits(&b, AlarmType::Memory));
    }

    #[test]
    fn a_vm_that_recovers_this_tick_inhibits_nothing() {
        let a = target(1, "router/0");
        let recover = Change::Recover {
            alarm_ids: vec![9],
            close_ids: vec![9],
            target: a.clone(),
            alarm_type: AlarmType::Fail,
            level: Level::Fail,
            value: None,
        };
        let inh = Inhibitors::new(&[open(9, &a, AlarmType::Fail)], &[recover], &[]);
        assert!(!inh.inhibits(&a, AlarmType::Cpu));
        // nor does a recovered-but-open fail alarm
        let mut kept = open(9, &a, AlarmType::Fail);
        kept.recovered = true;
        assert!(!Inhibitors::new(&[kept], &[], &[]).inhibits(&a, AlarmType::Cpu));
    }

    #[test]
    fn a_down_cell_inhibits_the_containers_on_it_only() {
        let cell = target(5, "diego-cell/0");
        let vms = [
            vm(5, "diego-cell/0", "10.0.0.5", "cel"),
            vm(6, "diego-cell/1", "10.0.0.6", "cel"),
        ];
        let inh = Inhibitors::new(&[], &[opened(&cell, AlarmType::Fail)], &vms);
        assert!(inh.inhibits(&container("web", 0, "diego-cell/0", ""), AlarmType::Cpu));
        assert!(inh.inhibits(&container("api", 3, "", "10.0.0.5"), AlarmType::Fail));
        assert!(!inh.inhibits(
            &container("web", 1, "diego-cell/1", "10.0.0.6"),
            AlarmType::Cpu
        ));
        // a down VM that is not a cell inhibits no container
        let vms = [vm(5, "diego-cell/0", "10.0.0.5", "vms")];
        let inh = Inhibitors::new(&[], &[opened(&cell, AlarmType::Fail)], &vms);
        assert!(!inh.inhibits(&container("web", 0, "diego-cell/0", ""), AlarmType::Cpu));
    }

    #[test]
    fn an_app_level_alarm_inhibits_its_instances_of_the_same_type() {
        let app = container("web", APP_LEVEL_INDEX, "", "");
        let inh = Inhibitors::new(&[open(3, &app, AlarmType::Cpu)], &[], &[]);
        assert!(inh.inhibits(&container("web", 0, "c/0", ""), AlarmType::Cpu));
        assert!(!inh.inhibits(&container("web", 0, "c/0", ""), AlarmType::Memory));
        assert!(!inh.inhibits(&container("api", 0, "c/0", ""), AlarmType::Cpu));
        assert!(!inh.inhibits(&app, AlarmType::Cpu), "not itself");
    }
}
