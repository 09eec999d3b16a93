//! The vocabulary shared by the host and the plugins, with the Monitoring DB's codes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `origin_type` of `alarms`, `alarm_policies` and `alarm_targets`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// PaaS-TA (Cloud Foundry / Diego) VM
    Pas,
    /// BOSH director VM
    Bos,
    /// application container
    Con,
}

impl Origin {
    pub const ALL: [Origin; 3] = [Origin::Pas, Origin::Bos, Origin::Con];
    pub fn code(self) -> &'static str {
        match self {
            Origin::Pas => "pas",
            Origin::Bos => "bos",
            Origin::Con => "con",
        }
    }
}

impl FromStr for Origin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "pas" => Ok(Origin::Pas),
            "bos" => Ok(Origin::Bos),
            "con" => Ok(Origin::Con),
            other => Err(format!(
                "unknown origin_type code {other:?} (expected pas, bos or con)"
            )),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A measured resource: `alarm_type` of `alarm_policies`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Cpu,
    Memory,
    Disk,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Cpu, Resource::Memory, Resource::Disk];
    pub fn code(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Disk => "disk",
        }
    }
}

impl FromStr for Resource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "cpu" => Ok(Resource::Cpu),
            "memory" => Ok(Resource::Memory),
            "disk" => Ok(Resource::Disk),
            other => Err(format!(
                "unknown alarm_type code {other:?} (expected cpu, memory or disk)"
            )),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// `alarm_type` of `alarms`: a resource, or `fail` when a target reports no data at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmType {
    Cpu,
    Memory,
    Disk,
    Fail,
}

impl AlarmType {
    pub fn code(self) -> &'static str {
        match self {
            AlarmType::Cpu => "cpu",
            AlarmType::Memory => "memory",
            AlarmType::Disk => "disk",
            AlarmType::Fail => "fail",
        }
    }
}

impl From<Resource> for AlarmType {
    fn from(r: Resource) -> Self {
        match r {
            Resource::Cpu => AlarmType::Cpu,
            Resource::Memory => AlarmType::Memory,
            Resource::Disk => AlarmType::Disk,
        }
    }
}

impl FromStr for AlarmType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "fail" => Ok(AlarmType::Fail),
            // 4.0 stored its internal `rootdisk` as `disk`; accept both.
            "rootdisk" => Ok(AlarmType::Disk),
            other => other.parse::<Resource>().map(AlarmType::from),
        }
    }
}

impl fmt::Display for AlarmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// `level` of `alarms`. Ordered: a higher level is more severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Warning,
    Critical,
    Fail,
}

impl Level {
    pub fn code(self) -> &'static str {
        match self {
            Level::Warning => "warning",
            Level::Critical => "critical",
            Level::Fail => "fail",
        }
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "warning" => Ok(Level::Warning),
            "critical" => Ok(Level::Critical),
            "fail" => Ok(Level::Fail),
            other => Err(format!(
                "unknown level {other:?} (expected warning, critical or fail)"
            )),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A name a tick's readings share: the three readings of a container, the containers of a
/// cell (a large fleet's tick holds hundreds of thousands of readings).
pub type Name = std::sync::Arc<str>;

/// The app instance behind a container reading (origin `con`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppInstance {
    pub app_name: Name,
    pub app_index: i32,
    /// `container_interface` tag: the container's key in the original.
    pub container_name: Name,
    /// vms.name of the Diego cell the container runs on.
    pub cell_name: Name,
}

/// Who a reading is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub origin: Origin,
    /// `pas`: vms.id; `con`: vms.id of the cell; `bos`: 9999 as in the original.
    pub origin_id: i64,
    /// Display name: vms.name, `bosh.service.name`, or the app name.
    pub name: Name,
    pub ip: Name,
    pub app: Option<AppInstance>,
}

impl Target {
    /// The app instance's name and index, for a container's target (what its alarm key holds
    /// in place of `origin_id`).
    pub fn instance(&self) -> Option<(&str, i32)> {
        self.app.as_ref().map(|a| (&*a.app_name, a.app_index))
    }

    /// Who the alarm is about, as every text shows it: `app[index]` for an app instance (or an
    /// app, index -1), the display name otherwise. `Notification::server_name` says the same.
    pub fn label(&self) -> String {
        match &self.app {
            Some(a) => format!("{}[{}]", a.app_name, a.app_index),
            None => self.name.to_string(),
        }
    }
}

/// origin_id of BOSH director alarms in the original (DEFAULT_ORIGIN_ID).
pub const BOSH_ORIGIN_ID: i64 = 9999;

/// Width of `alarms.app_name` (varchar(500)): the row keeps this many characters of an app's
/// name, so the alarm key must compare the same prefix (else a longer name opens a new alarm
/// every tick).
pub const ALARM_APP_NAME_CHARS: usize = 500;

/// The first `max_chars` characters of `s`, never cut inside one: what a VARCHAR(n) column
/// keeps, and what an alarm key compares.
pub fn first_chars(s: &str, max_chars: usize) -> &str {
    // no more bytes than the limit: no more characters either (the common case, counted
    // without walking the characters)
    if s.len() <= max_chars {
        return s;
    }
    match s.char_indices().nth(max_chars) {
        Some((end, _)) => s.get(..end).unwrap_or(s),
        None => s,
    }
}

/// One collector's answer for one target and resource over the policy window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub target: Target,
    pub value: Measured,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Measured {
    /// Usage in percent over the window.
    Usage {
        resource: Resource,
        /// time-weighted mean over the window (mean of the bucket means)
        mean: f64,
        /// highest bucket mean in the window: under the warning threshold means every part of
        /// the window was, which is what recovery waits for
        peak: f64,
        /// buckets that held data
        buckets: u32,
    },
    /// The target is in the inventory but reported nothing in the window.
    NoData,
}

/// A `vms` row joined with its zone: the inventory collectors read.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, Serialize)]
pub struct Vm {
    pub id: i64,
    pub zone_id: i64,
    pub zone_name: Option<String>,
    pub name: String,
    pub ip: String,
    pub vm_type: String,
}

impl Vm {
    pub fn is_cell(&self) -> bool {
        self.vm_type.eq_ignore_ascii_case("cel")
    }
}

pub type Timestamp = DateTime<Utc>;

/// The offset of `hours` east of UTC, to the second; UTC when it is none (config load checks
/// the range, -14 to 14, so that does not happen from a loaded config).
pub fn offset_of_hours(hours: f64) -> chrono::FixedOffset {
    let secs = (hours * 3600.0).round();
    let utc = chrono::Offset::fix(&chrono::Utc);
    if !secs.is_finite() {
        return utc;
    }
    chrono::FixedOffset::east_opt(secs as i32).unwrap_or(utc)
}

/// An `alarm_policies` row, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub id: i64,
    pub origin: Origin,
    pub resource: Resource,
    pub warning: f64,
    pub critical: f64,
    /// minutes between notifications of a still-open alarm
    pub repeat_minutes: i64,
    /// averaging window, seconds (0 in the DB is replaced by the configured default)
    pub measure_seconds: u64,
}

impl Policy {
    /// The level a mean usage breaches, if any: critical wins over warning.
    pub fn level_for(&self, usage: f64) -> Option<Level> {
        if usage >= self.critical {
            Some(Level::Critical)
        } else if usage >= self.warning {
            Some(Level::Warning)
        } else {
            None
        }
    }

    pub fn threshold(&self, level: Level) -> Option<f64> {
        match level {
            Level::Warning => Some(self.warning),
            Level::Critical => Some(self.critical),
            Level::Fail => None,
        }
    }
}
