//! What a tick compares against, read once at its start: the policies, the VMs, the open
//! alarms, and what holds notifications back (silences, deployments, maintenance). The
//! policies, VMs and open alarms are required: without them the tick stops. What holds is not:
//! unreadable (a dry run on a database without the migration), the tick goes on without holds
//! and says so.

use crate::config::AlarmSettings;
use crate::evaluate::engine::OpenAlarm;
use crate::hold::maintenance::{self, Hold};
use crate::hold::silence::{self, Silence};
use crate::model::{Policy, Timestamp, Vm};
use crate::store::{self, vms};
use sqlx::MySqlPool;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Default)]
pub struct TickInputs {
    pub policies: Vec<Policy>,
    pub vms: Vec<Vm>,
    pub open: Vec<OpenAlarm>,
    /// VMs missing from the BOSH inventory (within their removal grace): silent, not down
    pub absent: HashSet<i64>,
    pub silences: Vec<Silence>,
    /// VM name -> BOSH deployment, as the director last reported them
    pub deployments: HashMap<String, String>,
    /// maintenance holds, before `alarms.maintenance_max_hours` cuts any short
    pub maintenance: Vec<Hold>,
    /// what could not be read (the tick went on without it)
    pub errors: Vec<String>,
}

impl TickInputs {
    pub async fn load(
        pool: &MySqlPool,
        a: &AlarmSettings,
        now: Timestamp,
    ) -> anyhow::Result<TickInputs> {
        let mut errors = Vec::new();
        // side by side, each on a connection of its own: the tick waits for the slowest read
        // instead of the sum of them
        let (required, (silences, deployments, maintenance, absent)) = futures::future::join(
            futures::future::try_join3(
                store::load_policies(pool, a.default_measure_seconds),
                store::load_vms(pool),
                store::load_open_alarms(pool),
            ),
            futures::future::join4(
                silence::active(pool, now),
                maintenance::vm_deployments(pool),
                maintenance::active(pool, now, a.maintenance_grace_minutes),
                vms::absent_vm_ids(pool),
            ),
        )
        .await;
        let (policies, vms, open) = required?;
        let mut or_none = |what: &str, e: anyhow::Error| {
            errors.push(format!("load: {what}: {e:#}"));
        };
        let silences = silences.unwrap_or_else(|e| {
            or_none("silences", e);
            Vec::new()
        });
        let deployments = deployments.unwrap_or_else(|e| {
            or_none("VM deployments", e);
            Default::default()
        });
        let maintenance = maintenance.unwrap_or_else(|e| {
            or_none("maintenance", e);
            Default::default()
        });
        let absent = absent.unwrap_or_else(|e| {
            errors.push(format!("collect: {e:#}"));
            Default::default()
        });
        Ok(TickInputs {
            policies,
            vms,
            open,
            absent,
            silences,
            deployments,
            maintenance,
            errors,
        })
    }
}
