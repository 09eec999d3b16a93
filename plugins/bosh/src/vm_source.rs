//! The VM inventory sync ("Bosh VmsUpdate"): the VMs of the configured deployments, as the host
//! writes them into `zones` and `vms`.

use crate::config::BoshConfig;
use crate::director::{DirectorClient, DirectorVm};
use anyhow::{Context as _, bail};
use monit_host::plugin::{ChangeInProgress, InventorySnapshot, ReportedVm, SyncContext, VmSource};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

/// Fetches the VMs of `cf_deployment` and `diego_deployment` from the director.
pub struct BoshVmSource {
    client: Arc<DirectorClient>,
    deployments: Vec<String>,
    cell_prefix: String,
    sync_interval: Duration,
}

impl BoshVmSource {
    pub fn new(config: &BoshConfig, client: Arc<DirectorClient>) -> Self {
        Self {
            client,
            deployments: config.deployments(),
            cell_prefix: config.cell_prefix.trim().to_string(),
            sync_interval: Duration::from_secs(config.sync_interval_seconds),
        }
    }

    /// The whole snapshot, or an error: never the VMs of only some deployments.
    pub async fn snapshot(&self) -> anyhow::Result<InventorySnapshot> {
        let on_director = self.client.deployments().await?;
        for wanted in &self.deployments {
            if !on_director.iter().any(|d| &d.name == wanted) {
                let names: Vec<&str> = on_director.iter().map(|d| d.name.as_str()).collect();
                bail!(
                    "deployment {wanted:?} (plugins.bosh.cf_deployment / diego_deployment) is not on the \
                     BOSH director {}; it has: {}",
                    self.client.base_url(),
                    if names.is_empty() {
                        "no deployments".to_string()
                    } else {
                        names.join(", ")
                    }
                );
            }
        }
        let mut vms = Vec::new();
        // One task at a time: at most two deployments, and the director queues tasks anyway.
        for deployment in &self.deployments {
            let listed = self
                .client
                .deployment_vms(deployment)
                .await
                .with_context(|| format!("listing the VMs of deployment {deployment:?}"))?;
            if listed.is_empty() {
                tracing::warn!(deployment = %deployment, "BOSH director reports no VMs for the deployment");
            }
            vms.extend(
                listed
                    .iter()
                    .filter_map(|vm| reported_vm(deployment, vm, &self.cell_prefix)),
            );
        }
        Ok(InventorySnapshot { vms })
    }
}

#[async_trait::async_trait]
impl VmSource for BoshVmSource {
    async fn fetch(&self, _ctx: &SyncContext) -> anyhow::Result<InventorySnapshot> {
        self.snapshot().await
    }

    fn sync_interval(&self) -> Duration {
        self.sync_interval
    }

    async fn changes_in_progress(
        &self,
        _ctx: &SyncContext,
    ) -> anyhow::Result<Option<Vec<ChangeInProgress>>> {
        let tasks = self
            .client
            .tasks_in_progress()
            .await
            .context("listing the BOSH director's tasks in progress")?;
        Ok(Some(
            tasks
                .into_iter()
                .filter_map(|t| {
                    let deployment = t.deployment.filter(|d| !d.trim().is_empty())?;
                    let description = t.description.unwrap_or_default();
                    changes_vms(&description).then(|| ChangeInProgress {
                        deployment,
                        task_id: i64::try_from(t.id).unwrap_or(i64::MAX),
                        description,
                    })
                })
                .collect(),
        ))
    }
}

/// Whether a director task, by its description, takes a deployment's VMs down or replaces them:
/// `bosh deploy` ("create deployment"), `recreate`, `stop`, `start`, `restart`, and deleting
/// the deployment. The batch's own `retrieve vm-stats` tasks, errands, snapshots, cloud checks
/// and the like do not.
pub fn changes_vms(description: &str) -> bool {
    let d = description.to_ascii_lowercase();
    [
        "create deployment",
        "delete deployment",
        "recreate",
        "restart",
        "stop",
        "start",
    ]
    .iter()
    .any(|w| d.contains(w))
}

/// A director VM as the inventory sees it, or `None` (logged) for a VM the `vms` table cannot
/// hold: no job name, no instance index or id, or no IPv4 address (`vms.ip` is varchar(15)).
///
/// - name: `<job_name>/<index>`, `<job_name>/<id>` when the index is null;
/// - ip: the first IPv4 address of `ips`;
/// - zone: `az`; without one, the job name's `_z<N>` suffix (`cell_z1` → `z1`, the 2.0
///   naming); without either, the deployment's name, so no VM is left without a zone (defect D15);
/// - cell: the job name starts with the cell prefix or, when `az` is set (modern names like
///   `diego-cell`), contains it.
pub fn reported_vm(deployment: &str, vm: &DirectorVm, cell_prefix: &str) -> Option<ReportedVm> {
    let Some(job) = vm
        .job_name
        .as_deref()
        .map(str::trim)
        .filter(|j| !j.is_empty())
    else {
        tracing::warn!(deployment, vm_cid = ?vm.vm_cid, "BOSH VM without a job name skipped");
        return None;
    };
    let name = match (vm.index, vm.id.as_deref().filter(|id| !id.is_empty())) {
        (Some(index), _) => format!("{job}/{index}"),
        (None, Some(id)) => format!("{job}/{id}"),
        (None, None) => {
            tracing::warn!(
                deployment,
                job,
                "BOSH VM without index or instance id skipped"
            );
            return None;
        }
    };
    let ips = vm.ips.as_deref().unwrap_or_default();
    let Some(ip) = ips.iter().find(|ip| ip.trim().parse::<Ipv4Addr>().is_ok()) else {
        tracing::warn!(deployment, vm = %name, ips = ?ips, "BOSH VM without an IPv4 address skipped");
        return None;
    };
    let az = vm.az.as_deref().map(str::trim).filter(|az| !az.is_empty());
    let zone = az
        .or_else(|| zone_suffix(job))
        .unwrap_or(deployment)
        .to_string();
    let is_cell = !cell_prefix.is_empty()
        && if az.is_some() {
            job.contains(cell_prefix)
        } else {
            job.starts_with(cell_prefix)
        };
    Some(ReportedVm {
        name,
        ip: ip.trim().to_string(),
        zone,
        is_cell,
        deployment: deployment.to_string(),
    })
}

/// `cell_z1` → `z1`; `diego_cell` → None (only `z` + digits is a zone).
fn zone_suffix(job: &str) -> Option<&str> {
    let (_, suffix) = job.rsplit_once('_')?;
    let digits = suffix.strip_prefix('z')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(suffix)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tasks_that_change_vms_by_description() {
        for yes in [
            "create deployment",
            "Recreate instances",
            "stop instance",
            "start instances",
            "restart instance",
            "delete deployment cf",
        ] {
            assert!(super::changes_vms(yes), "{yes}");
        }
        for no in [
            "retrieve vm-stats",
            "run errand smoke-tests",
            "scan and fix",
            "snapshot deployment",
            "",
        ] {
            assert!(!super::changes_vms(no), "{no}");
        }
    }

    use super::*;

    fn vm(job: &str, index: Option<i64>, ips: &[&str], az: Option<&str>) -> DirectorVm {
        DirectorVm {
            job_name: Some(job.into()),
            index,
            id: Some("6f0c2d1e-uuid".into()),
            ips: Some(ips.iter().map(|s| s.to_string()).collect()),
            az: az.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn legacy_names_take_the_zone_from_the_job_suffix() {
        let r = reported_vm(
            "paasta",
            &vm("cell_z1", Some(0), &["10.0.16.21"], None),
            "cell",
        )
        .unwrap();
        assert_eq!(
            r,
            ReportedVm {
                name: "cell_z1/0".into(),
                ip: "10.0.16.21".into(),
                zone: "z1".into(),
                is_cell: true,
                deployment: "paasta".into(),
            }
        );
        let r = reported_vm(
            "paasta",
            &vm("router_z2", Some(1), &["10.0.16.5"], None),
            "cell",
        )
        .unwrap();
        assert_eq!((r.zone.as_str(), r.is_cell), ("z2", false));
    }

    #[test]
    fn modern_names_use_az_and_contains() {
        let r = reported_vm(
            "cf",
            &vm("diego-cell", Some(3), &["10.0.1.9"], Some("z3")),
            "cell",
        )
        .unwrap();
        assert_eq!(
            (r.name.as_str(), r.zone.as_str(), r.is_cell),
            ("diego-cell/3", "z3", true)
        );
        // without az, "contains" does not apply
        let r = reported_vm(
            "cf",
            &vm("diego-cell", Some(3), &["10.0.1.9"], None),
            "cell",
        )
        .unwrap();
        assert_eq!((r.zone.as_str(), r.is_cell), ("cf", false));
    }

    #[test]
    fn without_az_or_suffix_the_zone_is_the_deployment() {
        let r = reported_vm(
            "paasta",
            &vm("diego_cell", Some(0), &["10.0.0.3"], Some("")),
            "cell",
        )
        .unwrap();
        assert_eq!(r.zone, "paasta");
        assert!(!r.is_cell);
        let r = reported_vm(
            "paasta",
            &vm("uaa_zone1", Some(0), &["10.0.0.4"], None),
            "cell",
        )
        .unwrap();
        assert_eq!(r.zone, "paasta");
    }

    #[test]
    fn null_index_uses_the_instance_id() {
        let r = reported_vm("cf", &vm("router", None, &["10.0.0.2"], Some("z1")), "cell").unwrap();
        assert_eq!(r.name, "router/6f0c2d1e-uuid");
        let mut v = vm("router", None, &["10.0.0.2"], Some("z1"));
        v.id = None;
        assert_eq!(reported_vm("cf", &v, "cell"), None);
    }

    #[test]
    fn first_ipv4_is_used_and_vms_without_one_are_skipped() {
        let r = reported_vm(
            "cf",
            &vm("api", Some(0), &["fd00::1", "10.0.0.7", "10.0.0.8"], None),
            "cell",
        )
        .unwrap();
        assert_eq!(r.ip, "10.0.0.7");
        assert_eq!(
            reported_vm("cf", &vm("api", Some(0), &[], None), "cell"),
            None
        );
        let mut v = vm("api", Some(0), &[], None);
        v.ips = None;
        assert_eq!(reported_vm("cf", &v, "cell"), None);
        v.job_name = None;
        assert_eq!(reported_vm("cf", &v, "cell"), None);
    }

    #[test]
    fn an_empty_prefix_marks_no_cell() {
        let r = reported_vm("cf", &vm("cell_z1", Some(0), &["10.0.0.1"], None), "").unwrap();
        assert!(!r.is_cell);
    }
}
