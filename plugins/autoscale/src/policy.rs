//! The Portal DB's `auto_scaling_config`: one row per app, read (never written) each tick.
//!
//! Units, settled here once:
//! * `cpu_threshold_min_per`, `cpu_threshold_max_per`: percent of one CPU core, the unit of the
//!   container CPU reading (the derivative of cumulative CPU seconds × 100). May exceed 100 for an
//!   app that uses more than one core.
//! * `memory_min_size`, `memory_max_size`: percent (0–100) of the app's memory limit, the unit of
//!   the container memory reading (`memory_usage / app_mem × 100`).
//!
//! Why percent for both: the original compared its (percent) readings with the min columns as
//! they are and with the max columns × 100, so one of its two rules was always wrong; the column
//! names say `_per`; the portal's own defaults (`code_detail` USER_AUTOSCAILE minCpu 20,
//! maxCpu 80) and the monitoring project's seed rows (80 / 20 for CPU and memory) are percent; and
//! percent is what the alarm policies of the same operators use. A fraction-era row (a CPU max of
//! 1 or less, e.g. 0.8 from a `decimal(2,1)` column) would mean "scale out above 1 % CPU" and push
//! every app to its maximum, so such a row is refused with a reason that says so instead of being
//! guessed at.

use anyhow::Context as _;
use sqlx::MySqlPool;

/// A row as stored. Every column is read as nullable and numeric columns are converted in SQL, so
/// a portal whose schema differs a little (decimal vs float, int vs bigint, NULLs where the spec
/// says NOT NULL) yields a row to check rather than a failed query.
#[derive(Clone, Debug, Default, PartialEq, sqlx::FromRow)]
pub struct PolicyRow {
    pub no: Option<i64>,
    pub guid: Option<String>,
    pub org: Option<String>,
    pub space: Option<String>,
    pub app: Option<String>,
    pub instance_min_cnt: Option<i64>,
    pub instance_max_cnt: Option<i64>,
    pub cpu_threshold_min_per: Option<f64>,
    pub cpu_threshold_max_per: Option<f64>,
    pub memory_min_size: Option<f64>,
    pub memory_max_size: Option<f64>,
    pub check_time_sec: Option<i64>,
    pub auto_increase_yn: Option<String>,
    pub auto_decrease_yn: Option<String>,
}

/// `x * 1e0` makes any numeric column a DOUBLE on every MySQL and MariaDB version (CAST AS DOUBLE
/// needs MySQL 8.0.17), and sqlx refuses to read DECIMAL as f64.
const SELECT_POLICIES: &str = "SELECT \
    CAST(`no` AS SIGNED) AS `no`, guid, org, space, app, \
    CAST(instance_min_cnt AS SIGNED) AS instance_min_cnt, \
    CAST(instance_max_cnt AS SIGNED) AS instance_max_cnt, \
    cpu_threshold_min_per * 1e0 AS cpu_threshold_min_per, \
    cpu_threshold_max_per * 1e0 AS cpu_threshold_max_per, \
    memory_min_size * 1e0 AS memory_min_size, \
    memory_max_size * 1e0 AS memory_max_size, \
    CAST(check_time_sec AS SIGNED) AS check_time_sec, \
    CAST(auto_increase_yn AS CHAR) AS auto_increase_yn, \
    CAST(auto_decrease_yn AS CHAR) AS auto_decrease_yn \
    FROM auto_scaling_config ORDER BY `no`";

pub async fn read_rows(pool: &MySqlPool) -> anyhow::Result<Vec<PolicyRow>> {
    sqlx::query_as::<_, PolicyRow>(SELECT_POLICIES)
        .fetch_all(pool)
        .await
        .context("reading auto_scaling_config from the Portal DB")
}

/// A checked row: every value present and consistent.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub no: i64,
    pub guid: String,
    pub app: String,
    pub min_instances: i64,
    pub max_instances: i64,
    /// percent of one core
    pub cpu_min: f64,
    pub cpu_max: f64,
    /// percent of the memory limit
    pub memory_min: f64,
    pub memory_max: f64,
    pub check_seconds: u64,
    pub auto_increase: bool,
    pub auto_decrease: bool,
}

/// Why a row cannot be used; the text names the columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidPolicy {
    pub no: Option<i64>,
    pub guid: String,
    pub app: String,
    pub problems: Vec<String>,
}

impl std::fmt::Display for InvalidPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.problems.join("; "))
    }
}

fn yn(v: &Option<String>) -> bool {
    v.as_deref()
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("y"))
}

/// FLOAT columns arrive as 79.9999… once widened to DOUBLE; six decimals keep what was typed.
fn tidy(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

impl PolicyRow {
    pub fn check(&self) -> Result<Policy, InvalidPolicy> {
        let mut problems = Vec::new();
        let guid = self
            .guid
            .as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .to_string();
        let app = self
            .app
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .unwrap_or(&guid)
            .to_string();
        if guid.is_empty() {
            problems.push("guid is empty".to_string());
        }
        let mut need_i = |name: &str, v: Option<i64>| -> i64 {
            v.unwrap_or_else(|| {
                problems.push(format!("{name} is NULL"));
                0
            })
        };
        let min_n = need_i("instance_min_cnt", self.instance_min_cnt);
        let max_n = need_i("instance_max_cnt", self.instance_max_cnt);
        let check = need_i("check_time_sec", self.check_time_sec);
        let mut need_f = |name: &str, v: Option<f64>| -> f64 {
            match v {
                Some(x) if x.is_finite() => tidy(x),
                Some(_) => {
                    problems.push(format!("{name} is not a number"));
                    0.0
                }
                None => {
                    problems.push(format!("{name} is NULL"));
                    0.0
                }
            }
        };
        let cpu_min = need_f("cpu_threshold_min_per", self.cpu_threshold_min_per);
        let cpu_max = need_f("cpu_threshold_max_per", self.cpu_threshold_max_per);
        let mem_min = need_f("memory_min_size", self.memory_min_size);
        let mem_max = need_f("memory_max_size", self.memory_max_size);

        let all_present = problems.is_empty();
        if self.instance_min_cnt.is_some() && min_n < 1 {
            // With no instance running there is no load to read, so scaling out again would
            // never happen: scale-to-zero is not this scaler's job.
            problems.push(format!("instance_min_cnt = {min_n}: must be at least 1"));
        }
        if self.instance_min_cnt.is_some() && self.instance_max_cnt.is_some() && max_n < min_n {
            problems.push(format!(
                "instance_max_cnt = {max_n} is below instance_min_cnt = {min_n}"
            ));
        }
        if self.check_time_sec.is_some() && check < 1 {
            problems.push(format!("check_time_sec = {check}: must be at least 1"));
        }
        if all_present {
            if cpu_min < 0.0 || cpu_max <= 0.0 {
                problems.push(format!(
                    "CPU thresholds {cpu_min} / {cpu_max}: must be positive percentages"
                ));
            } else if cpu_max <= 1.0 {
                problems.push(format!(
                    "cpu_threshold_max_per = {cpu_max} looks like a fraction; thresholds are percent \
                     (0-100), e.g. 80 for 80 %"
                ));
            }
            if cpu_max < cpu_min {
                problems.push(format!(
                    "cpu_threshold_max_per = {cpu_max} is below cpu_threshold_min_per = {cpu_min}"
                ));
            }
            if !(0.0..=100.0).contains(&mem_min) || !(0.0..=100.0).contains(&mem_max) {
                problems.push(format!(
                    "memory thresholds {mem_min} / {mem_max}: must be percent of the memory limit (0-100)"
                ));
            }
            if mem_max < mem_min {
                problems.push(format!(
                    "memory_max_size = {mem_max} is below memory_min_size = {mem_min}"
                ));
            }
        }
        if !problems.is_empty() {
            return Err(InvalidPolicy {
                no: self.no,
                guid,
                app,
                problems,
            });
        }
        Ok(Policy {
            no: self.no.unwrap_or_default(),
            guid,
            app,
            min_instances: min_n,
            max_instances: max_n,
            cpu_min,
            cpu_max,
            memory_min: mem_min,
            memory_max: mem_max,
            check_seconds: check as u64,
            auto_increase: yn(&self.auto_increase_yn),
            auto_decrease: yn(&self.auto_decrease_yn),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn good_row() -> PolicyRow {
        PolicyRow {
            no: Some(1),
            guid: Some("6f3a0c1e-0000-4000-8000-000000000001".into()),
            org: Some("org".into()),
            space: Some("space".into()),
            app: Some("spring-music".into()),
            instance_min_cnt: Some(1),
            instance_max_cnt: Some(4),
            cpu_threshold_min_per: Some(20.0),
            cpu_threshold_max_per: Some(80.0),
            memory_min_size: Some(20.0),
            memory_max_size: Some(80.0),
            check_time_sec: Some(120),
            auto_increase_yn: Some("Y".into()),
            auto_decrease_yn: Some("y".into()),
        }
    }

    #[test]
    fn a_complete_row_is_a_policy_in_percent() {
        let p = good_row().check().unwrap();
        assert_eq!(
            (p.cpu_min, p.cpu_max, p.memory_min, p.memory_max),
            (20.0, 80.0, 20.0, 80.0)
        );
        assert_eq!(
            (p.min_instances, p.max_instances, p.check_seconds),
            (1, 4, 120)
        );
        assert!(p.auto_increase && p.auto_decrease, "Y and y both enable");
    }

    #[test]
    fn float_noise_is_tidied() {
        let mut r = good_row();
        r.cpu_threshold_max_per = Some(80.0_f32 as f64 + 0.000_000_01);
        r.cpu_threshold_min_per = Some(0.3_f32 as f64 * 100.0);
        let p = r.check().unwrap();
        assert_eq!(p.cpu_max, 80.0);
        assert_eq!(p.cpu_min, 30.000001);
    }

    #[test]
    fn null_thresholds_are_named() {
        let mut r = good_row();
        r.cpu_threshold_max_per = None;
        r.memory_min_size = None;
        let e = r.check().unwrap_err();
        assert!(
            e.to_string().contains("cpu_threshold_max_per is NULL"),
            "{e}"
        );
        assert!(e.to_string().contains("memory_min_size is NULL"), "{e}");
        assert_eq!(e.app, "spring-music");
    }

    #[test]
    fn max_below_min_is_refused() {
        let mut r = good_row();
        r.instance_min_cnt = Some(5);
        r.instance_max_cnt = Some(2);
        r.memory_min_size = Some(90.0);
        let e = r.check().unwrap_err().to_string();
        assert!(
            e.contains("instance_max_cnt = 2 is below instance_min_cnt = 5"),
            "{e}"
        );
        assert!(
            e.contains("memory_max_size = 80 is below memory_min_size = 90"),
            "{e}"
        );
    }

    #[test]
    fn fraction_era_cpu_thresholds_are_refused_not_guessed() {
        let mut r = good_row();
        r.cpu_threshold_min_per = Some(0.2);
        r.cpu_threshold_max_per = Some(0.8);
        let e = r.check().unwrap_err().to_string();
        assert!(e.contains("looks like a fraction"), "{e}");
    }

    #[test]
    fn memory_thresholds_beyond_100_percent_are_refused() {
        let mut r = good_row();
        r.memory_max_size = Some(512.0);
        let e = r.check().unwrap_err().to_string();
        assert!(e.contains("percent of the memory limit"), "{e}");
    }

    #[test]
    fn zero_minimum_and_window_are_refused() {
        let mut r = good_row();
        r.instance_min_cnt = Some(0);
        r.check_time_sec = Some(0);
        let e = r.check().unwrap_err().to_string();
        assert!(e.contains("instance_min_cnt = 0"), "{e}");
        assert!(e.contains("check_time_sec = 0"), "{e}");
    }

    #[test]
    fn missing_yn_disables_that_direction() {
        let mut r = good_row();
        r.auto_increase_yn = None;
        r.auto_decrease_yn = Some("N".into());
        let p = r.check().unwrap();
        assert!(!p.auto_increase && !p.auto_decrease);
    }

    #[test]
    fn no_app_name_falls_back_to_the_guid() {
        let mut r = good_row();
        r.app = None;
        let p = r.check().unwrap();
        assert_eq!(p.app, p.guid);
    }
}
