//! Collector `container` (origin `con`): CPU, memory and disk of every app container on the
//! Diego cells of the inventory, from the PaaS-TA cAdvisor metrics in InfluxDB.
//!
//! The reading itself lives in the shared schema crate ([`monit_cf_metrics::container`]) because
//! autoscale reads the same data; this crate maps containers to inventory cells and to readings.

use anyhow::Context as _;
use monit_cf_metrics::container::{
    self as container_metrics, ContainerSource, ContainerUsage, Narrow, UsageWindows, Wanted,
    read_container_usage_of,
};
use monit_host::metric_store::MetricStore;
use monit_host::model::{AppInstance, Measured, Name, Origin, Reading, Resource, Target, Vm};
use monit_host::plugin::{MovedKey, QuietRule, Skipped};
use monit_host::{CollectContext, Collector, PluginContext, PluginParts, PluginRegistration};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use monit_host::plugin::{LegacyConfig, LegacyEnabled, LegacyKey, LegacyKind};

monit_host::inventory::submit! {
    PluginRegistration {
        name: "container",
        description: "collector of app container CPU, memory and disk (origin con) from cAdvisor metrics in InfluxDB",
        sample: include_str!("../sample.toml"),
        moved_keys: &[
            MovedKey { old: "influx.container_db", new: "db" },
            MovedKey { old: "influx.container_measurement", new: "measurement" },
        ],
        legacy_ini: LegacyConfig {
            keys: &[
                LegacyKey { ini: "influx.container.db_name", field: Some("db"), kind: LegacyKind::Str },
            ],
            enabled: LegacyEnabled::Always,
        },
        show: monit_host::plugin::show_config::<ContainerConfig>,
        build,
    }
}

/// `[plugins.container]`. The bucket width is `[influx] bucket_seconds`; the windows are the
/// `con` alarm policies'. The autoscaler reads `db` and `measurement` of this section too.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    /// Run the collector.
    #[serde(default)]
    pub enabled: bool,
    /// InfluxDB database of the cAdvisor metrics (config.ini `influx.container.db_name`).
    #[serde(default = "default_db")]
    pub db: String,
    /// Measurement of the cAdvisor metrics in `db`.
    #[serde(default = "default_measurement")]
    pub measurement: String,
}

fn default_db() -> String {
    container_metrics::DEFAULT_DB.into()
}
fn default_measurement() -> String {
    container_metrics::DEFAULT_MEASUREMENT.into()
}

fn build(ctx: &PluginContext) -> anyhow::Result<PluginParts> {
    let config: ContainerConfig = ctx.plugin_config()?;
    Ok(PluginParts {
        collector: Some(Arc::new(ContainerCollector {
            db: config.db,
            measurement: config.measurement,
        })),
        ..PluginParts::default()
    })
}

/// Reads `measurement` of the InfluxDB database `db`; the rest arrives with each tick's
/// [`CollectContext`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerCollector {
    pub db: String,
    pub measurement: String,
}

impl Default for ContainerCollector {
    fn default() -> Self {
        Self {
            db: default_db(),
            measurement: default_measurement(),
        }
    }
}

#[async_trait::async_trait]
impl Collector for ContainerCollector {
    fn origin(&self) -> Origin {
        Origin::Con
    }

    fn stream_series(
        &self,
        settings: &monit_host::config::Settings,
    ) -> Vec<monit_host::metric_store::stream::StreamSeries> {
        vec![monit_cf_metrics::container::stream_series(
            &ContainerSource {
                db: self.db.clone(),
                measurement: self.measurement.clone(),
                bucket_seconds: settings.influx.bucket_seconds,
            },
        )]
    }

    async fn history(
        &self,
        ctx: &monit_host::plugin::HistoryContext<'_>,
        keys: &[monit_host::plugin::SeriesKey],
    ) -> anyhow::Result<HashMap<monit_host::plugin::SeriesKey, Vec<monit_host::plugin::HistoryPoint>>>
    {
        let source = ContainerSource {
            db: self.db.clone(),
            measurement: self.measurement.clone(),
            bucket_seconds: ctx.bucket_seconds,
        };
        Ok(
            monit_cf_metrics::history::ContainerHistory { source: &source }
                .read(ctx, keys)
                .await?,
        )
    }

    fn reads_by_vm(&self) -> bool {
        true
    }

    async fn collect(&self, ctx: &CollectContext<'_>) -> anyhow::Result<Vec<Reading>> {
        // confirmation (stream mode): only the cells of the new alarms' containers
        let cells: Vec<&Vm> = ctx
            .vms
            .iter()
            .filter(|vm| vm.is_cell())
            .filter(|vm| {
                ctx.targets
                    .is_none_or(|t| t.iter().any(|t| t.origin == Origin::Con && *t.ip == *vm.ip))
            })
            .collect();
        if cells.is_empty() {
            tracing::debug!(
                "container collector: no cells (vm_type cel) in the inventory; nothing to read"
            );
            return Ok(Vec::new());
        }
        // confirmation: the query reads the new alarms' containers only (O(alarms))
        let interfaces: Option<HashSet<&str>> = ctx.targets.map(|t| {
            t.iter()
                .filter(|t| t.origin == Origin::Con)
                .filter_map(|t| t.app.as_ref().map(|a| &*a.container_name))
                .collect()
        });
        if let Some(values) = &interfaces {
            let narrow = Narrow {
                tag: "container_interface",
                values,
                ignore_case: false,
            };
            let usage = self.usage(ctx, &cells, Some(narrow)).await?;
            return Ok(readings(&usage, &cells, ctx.quiet));
        }
        if ctx.narrow_to_vms && !matches!(ctx.metrics, MetricStore::Stream(_)) {
            // the store's answers are folded a part of the cells at a time, each part's query
            // naming its cells: the fold holds a part's containers, not the fleet's (about
            // 500 bytes each until the readings are built). InfluxDB 1.6 reads the same
            // series but takes longer (a query walks the measurement's series: 4.1 s against
            // 3.6 s at 250 cells), so only when the host asks
            let mut usage = Vec::new();
            for part in cells.chunks(monit_host::plugin::CELLS_PER_PART) {
                let values: HashSet<&str> = part.iter().map(|vm| vm.ip.as_str()).collect();
                let narrow = Narrow {
                    tag: "cell_ip",
                    values: &values,
                    ignore_case: false,
                };
                usage.extend(self.usage(ctx, part, Some(narrow)).await?);
            }
            return Ok(readings(&usage, &cells, ctx.quiet));
        }
        let usage = self.usage(ctx, &cells, None).await?;
        Ok(readings(&usage, &cells, ctx.quiet))
    }
}

impl ContainerCollector {
    /// The usage of the containers on `cells`, the query narrowed by `narrow`.
    async fn usage(
        &self,
        ctx: &CollectContext<'_>,
        cells: &[&Vm],
        narrow: Option<Narrow<'_>>,
    ) -> anyhow::Result<Vec<ContainerUsage>> {
        let windows = UsageWindows {
            cpu: ctx.windows.get(Origin::Con, Resource::Cpu),
            memory: ctx.windows.get(Origin::Con, Resource::Memory),
            disk: ctx.windows.get(Origin::Con, Resource::Disk),
        };
        let source = ContainerSource {
            db: self.db.clone(),
            measurement: self.measurement.clone(),
            bucket_seconds: ctx.bucket_seconds,
        };
        // containers on other cells are dropped as the answer is decoded: memory follows the
        // inventory's cells, not what the store holds
        let cell_ips: container_metrics::CellSet = cells.iter().map(|vm| vm.ip.as_str()).collect();
        let wanted = Wanted {
            cells: Some(&cell_ips),
            app_guids: None,
            narrow,
        };
        read_container_usage_of(ctx.metrics, &source, &windows, ctx.now, wanted)
            .await
            .with_context(|| {
                format!(
                    "container collector: reading measurement {} of database {} ({}) failed",
                    source.measurement,
                    source.db,
                    ctx.metrics.backend().as_str()
                )
            })
    }
}

/// One reading per (app, index, resource) of the containers on known cells.
///
/// The alarm key of a container is its app name and index, not the container, so two containers
/// with the same name and index (an instance being replaced, or same-named apps in two spaces)
/// would open two alarms on one key: the highest usage speaks for both, so neither hides a breach.
/// Containers get no NoData reading: they come and go, and a gone one is simply not reported.
///
/// With `quiet` (the tick's), a reading that cannot change anything (no alarm on the app
/// instance, under its policy's thresholds) is counted there instead of built: at a large fleet
/// nearly all of them.
pub fn readings(
    usage: &[ContainerUsage],
    cells: &[&Vm],
    quiet: Option<&dyn QuietRule>,
) -> Vec<Reading> {
    /// no container speaks for the (app, index, resource) yet
    const NONE: u32 = u32::MAX;
    let by_ip: FxHashMap<&str, &Vm> = cells.iter().map(|vm| (vm.ip.as_str(), *vm)).collect();
    // the containers of a cell come one after the other and share its address: the cell is
    // looked up once per run of them
    let mut last_cell: Option<(&Name, Option<&Vm>)> = None;
    let mut unknown_cell = 0u64;
    let mut duplicates = 0u64;
    // first the container that speaks for each (app, index), per resource (in the order of
    // Resource::ALL), then one Reading per winner: its strings are built once. `slot_of`: each
    // container's (app, index) entry of `slots`, so that the second pass hashes nothing
    let mut slot_index: FxHashMap<(&str, i32), u32> = FxHashMap::default();
    slot_index.reserve(usage.len());
    let mut slots: Vec<[u32; 3]> = Vec::with_capacity(usage.len());
    let mut slot_of: Vec<(Option<&Vm>, u32)> = Vec::with_capacity(usage.len());
    let mut winners = 0usize;
    for (at, c) in usage.iter().enumerate() {
        let Ok(at) = u32::try_from(at) else {
            break;
        };
        let cell = match last_cell {
            Some((ip, vm)) if Name::ptr_eq(ip, &c.cell_ip) => vm,
            _ => {
                let vm = by_ip.get(&*c.cell_ip).copied();
                last_cell = Some((&c.cell_ip, vm));
                vm
            }
        };
        let Some(cell) = cell else {
            tracing::debug!(cell_ip = %c.cell_ip, app = %c.app_name, index = c.app_index, container = %c.container, "container on a cell that is not in the inventory: skipped");
            unknown_cell += 1;
            slot_of.push((None, NONE));
            continue;
        };
        let next = u32::try_from(slots.len()).unwrap_or(NONE);
        let index = *slot_index
            .entry((&*c.app_name, c.app_index))
            .or_insert_with(|| {
                slots.push([NONE; 3]);
                next
            });
        slot_of.push((Some(cell), index));
        let Some(held_slots) = slots.get_mut(index as usize) else {
            continue;
        };
        for (slot, resource) in held_slots.iter_mut().zip(Resource::ALL) {
            let Some(stats) = c.stats(resource) else {
                continue;
            };
            let held = usage.get(*slot as usize).and_then(|o| o.stats(resource));
            match held {
                None => {
                    *slot = at;
                    winners += 1;
                }
                Some(old) => {
                    duplicates += 1;
                    if stats.mean > old.mean {
                        *slot = at;
                    }
                }
            }
        }
    }
    // the table's memory goes before the readings are built
    drop(slot_index);
    if unknown_cell > 0 {
        tracing::debug!(
            containers = unknown_cell,
            "container collector: containers on cells outside the inventory skipped"
        );
        metrics::counter!("monit_container_skipped_total", "reason" => "cell_not_in_inventory")
            .increment(unknown_cell);
    }
    if duplicates > 0 {
        tracing::debug!(
            readings = duplicates,
            "container collector: several containers share an app name and index; the highest usage kept"
        );
        metrics::counter!("monit_container_skipped_total", "reason" => "duplicate_app_instance")
            .increment(duplicates);
    }
    // the names each reading carries are shared: a container's three readings hold its
    // names, a cell's containers their cell's (its address is the usage's, shared already)
    let mut cell_names: FxHashMap<i64, Name> = FxHashMap::default();
    let mut skipped = Skipped::default();
    let mut out = Vec::with_capacity(if quiet.is_some() { 0 } else { winners });
    for ((at, c), (cell, index)) in usage.iter().enumerate().zip(slot_of) {
        let (Some(cell), Some(won)) = (cell, slots.get(index as usize)) else {
            continue;
        };
        let (mut won_here, mut quiet_here) = (0, 0);
        for (slot, resource) in won.iter().zip(Resource::ALL) {
            let (true, Some(stats)) = (*slot as usize == at, c.stats(resource)) else {
                continue;
            };
            won_here += 1;
            let instance = Some((&*c.app_name, c.app_index));
            if quiet
                .is_some_and(|q| q.is_quiet(Origin::Con, cell.id, instance, resource, stats.mean))
            {
                quiet_here += 1;
                continue;
            }
            let cell_name = cell_names
                .entry(cell.id)
                .or_insert_with(|| cell.name.as_str().into())
                .clone();
            out.push(Reading {
                target: Target {
                    origin: Origin::Con,
                    origin_id: cell.id,
                    name: c.app_name.clone(),
                    ip: c.cell_ip.clone(),
                    app: Some(AppInstance {
                        app_name: c.app_name.clone(),
                        app_index: c.app_index,
                        container_name: c.container.clone(),
                        cell_name,
                    }),
                },
                value: Measured::Usage {
                    resource,
                    mean: stats.mean,
                    peak: stats.peak,
                    buckets: stats.buckets,
                },
            });
        }
        skipped.readings += quiet_here;
        if won_here > 0 && quiet_here == won_here {
            skipped.targets += 1;
        }
    }
    if let Some(q) = quiet {
        q.count(Origin::Con, skipped);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use monit_cf_metrics::container::Stats;

    fn cell(id: i64, ip: &str, vm_type: &str) -> Vm {
        Vm {
            id,
            zone_id: 1,
            zone_name: Some("z1".into()),
            name: format!("diego-cell/{id}"),
            ip: ip.into(),
            vm_type: vm_type.into(),
        }
    }

    fn usage(ip: &str, app: &str, index: i32, container: &str, cpu: f64) -> ContainerUsage {
        ContainerUsage {
            cell_ip: ip.into(),
            container: container.into(),
            app_guid: None,
            app_name: app.into(),
            app_index: index,
            cpu: Some(Stats {
                mean: cpu,
                peak: cpu,
                buckets: 3,
            }),
            memory: None,
            disk: None,
        }
    }

    #[test]
    fn unknown_cells_are_skipped_and_targets_carry_the_cell() {
        let c1 = cell(7, "10.0.16.21", "cel");
        let r = readings(
            &[
                usage("10.0.16.21", "web", 0, "c1", 40.0),
                usage("10.9.9.9", "web", 1, "c2", 99.0),
            ],
            &[&c1],
            None,
        );
        assert_eq!(r.len(), 1);
        let t = &r[0].target;
        assert_eq!(
            (t.origin, t.origin_id, &*t.name, &*t.ip),
            (Origin::Con, 7, "web", "10.0.16.21")
        );
        let app = t.app.as_ref().unwrap();
        assert_eq!(
            (app.app_index, &*app.container_name, &*app.cell_name),
            (0, "c1", "diego-cell/7")
        );
    }

    #[test]
    fn one_reading_per_app_instance_the_highest_wins() {
        let c1 = cell(7, "10.0.16.21", "cel");
        let c2 = cell(8, "10.0.16.22", "CEL");
        let r = readings(
            &[
                usage("10.0.16.21", "web", 0, "old", 20.0),
                usage("10.0.16.22", "web", 0, "new", 95.0),
            ],
            &[&c1, &c2],
            None,
        );
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].target.app.as_ref().unwrap().container_name,
            "new".into()
        );
        assert_eq!(r[0].target.origin_id, 8);
    }

    #[test]
    fn quiet_readings_are_counted_not_built() {
        use monit_host::evaluate::engine::QuietReadings;
        use monit_host::model::{AlarmType, Level};
        use monit_host::testing::{container_target, open_alarm, policy};
        let c1 = cell(7, "10.0.16.21", "cel");
        let policies = [policy(1, Origin::Con, Resource::Cpu, 80.0, 90.0)];
        let open = [open_alarm(
            1,
            &container_target("db", 0),
            AlarmType::Cpu,
            Level::Warning,
        )];
        let mut cold = usage("10.0.16.21", "cold", 1, "c6", 10.0);
        cold.memory = cold.cpu;
        let usage = [
            usage("10.0.16.21", "web", 0, "c1", 40.0),
            usage("10.0.16.21", "hot", 0, "c2", 95.0),
            usage("10.0.16.21", "db", 0, "c3", 10.0),
            usage("10.0.16.21", "dup", 0, "c4", 20.0),
            usage("10.0.16.21", "dup", 0, "c5", 30.0),
            cold,
        ];
        let quiet = QuietReadings::new(&policies, &open);
        let kept = readings(&usage, &[&c1], Some(&quiet));
        let names: Vec<&str> = kept.iter().map(|r| &*r.target.name).collect();
        assert_eq!(
            names,
            vec!["hot", "db"],
            "over a threshold, or with an alarm"
        );
        assert_eq!(
            quiet.take_skipped(Origin::Con),
            Skipped {
                readings: 4,
                targets: 3
            },
            "web, dup's winner, cold's cpu and memory (no memory policy)"
        );
        assert_eq!(readings(&usage, &[&c1], None).len(), 6, "without: all");
    }

    fn context(toml: &str) -> PluginContext {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monit-batch.toml");
        std::fs::write(
            &path,
            format!("[monitoring_db]\ndbname = \"unused\"\n{toml}"),
        )
        .unwrap();
        let settings =
            monit_host::plugin::load_settings_with_env(Some(&path), HashMap::new()).unwrap();
        PluginContext {
            name: "container",
            settings: Arc::new(settings),
        }
    }

    #[test]
    fn config_takes_enabled_and_rejects_unknown_keys() {
        let parts = build(&context("[plugins.container]\nenabled = true\n")).unwrap();
        assert!(parts.collector.is_some() && parts.notifier.is_none() && parts.scaler.is_none());
        let err = build(&context(
            "[plugins.container]\nenabled = true\nwindow = 60\n",
        ))
        .err()
        .unwrap();
        let text = format!("{err:#}");
        assert!(
            text.contains("plugins.container") && text.contains("window"),
            "{text}"
        );
    }
}
