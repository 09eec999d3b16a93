//! `vm_metrics::fold` on series that JSON cannot carry: NaN, infinities, mismatched columns,
//! rows shorter than the header. Structured input, so the fuzzer spends its time in the fold
//! rather than in the JSON syntax.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use monit_host::metric_store::influx::{Cell, Series};

const METRICS: &[&str] = &[
    "cpuStats.0",
    "cpuStats.1",
    "cpuStats.core.0",
    "cpuStats.LoadAvg1Stats",
    "memoryStats.UsedPercent",
    "memoryStats.TotalMemory",
    "memoryStats.AvailableMemory",
    "memoryStats.FreeMemory",
    "diskStats.Usage",
    "diskStats./.Usage",
    "diskStats./var/vcap/data.Usage",
];

#[derive(Arbitrary, Debug)]
enum Metric {
    Known(u8),
    Other(String),
    Missing,
}

#[derive(Arbitrary, Debug)]
enum Time {
    /// one of a few 30 s buckets before the evaluation time, so values collide and fall in
    /// the window
    Bucket(u8),
    Raw(f64),
    Other(In),
}

#[derive(Arbitrary, Debug)]
enum In {
    Number(f64),
    Text(String),
    Bool(bool),
    Null,
}

impl In {
    fn cell(self) -> Cell {
        match self {
            In::Number(n) => Cell::Number(n),
            In::Text(_) => Cell::Text,
            In::Bool(b) => Cell::Bool(b),
            In::Null => Cell::Null,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct S {
    ip: Option<u8>,
    metric: Metric,
    /// columns in the writer's order `[time, mean]`, or swapped, or one missing
    layout: u8,
    rows: Vec<(Time, In, bool)>,
}

fn series(s: S) -> Series {
    let mut tags = std::collections::BTreeMap::new();
    if let Some(ip) = s.ip {
        tags.insert("ip".to_string(), format!("10.0.0.{}", ip % 4));
    }
    match s.metric {
        Metric::Known(i) => {
            tags.insert(
                "metricname".to_string(),
                METRICS[i as usize % METRICS.len()].to_string(),
            );
        }
        Metric::Other(m) => {
            tags.insert("metricname".to_string(), m);
        }
        Metric::Missing => {}
    }
    let columns: Vec<String> = match s.layout % 4 {
        0 | 1 => vec!["time".into(), "mean".into()],
        2 => vec!["mean".into(), "time".into()],
        _ => vec!["time".into()],
    };
    let swapped = s.layout % 4 == 2;
    let values = s
        .rows
        .into_iter()
        .map(|(t, v, short)| {
            let t = match t {
                Time::Bucket(k) => Cell::Number((1_800_000_000 - 30 * i64::from(k % 24)) as f64),
                Time::Raw(f) => Cell::Number(f),
                Time::Other(c) => c.cell(),
            };
            let mut row = if swapped {
                vec![v.cell(), t]
            } else {
                vec![t, v.cell()]
            };
            if short {
                row.truncate(1);
            }
            row
        })
        .collect();
    Series {
        name: "cf_metrics".into(),
        tags,
        columns,
        values,
    }
}

fuzz_target!(|input: Vec<S>| {
    let series: Vec<Series> = input.into_iter().map(series).collect();
    monit_fuzz::vm_fold(&series);
});
