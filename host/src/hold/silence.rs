//! Silences: an operator's "known, stop mailing" for the alarms matching every matcher, until an
//! end time. A silenced alarm is recorded as usual; its notifications are held back (see
//! `hold`), and when the silence ends what still breaches is notified.

use crate::model::{AlarmType, Origin, Target, Timestamp};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sqlx::{MySqlPool, Row};

/// What a matcher compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchKey {
    /// the VM's name (`diego-cell/0`, `*` globs); for a container, its cell too
    Vm,
    Ip,
    /// pas, bos or con
    Origin,
    /// cpu, memory, disk or fail
    Type,
    /// a container's app name (`*` globs)
    App,
    /// the VM's BOSH deployment (`*` globs)
    Deployment,
}

impl MatchKey {
    const ALL: [(&'static str, MatchKey); 6] = [
        ("vm", MatchKey::Vm),
        ("ip", MatchKey::Ip),
        ("origin", MatchKey::Origin),
        ("type", MatchKey::Type),
        ("app", MatchKey::App),
        ("deployment", MatchKey::Deployment),
    ];
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    pub key: MatchKey,
    pub value: String,
}

impl std::str::FromStr for Matcher {
    type Err = String;
    /// `KEY=VALUE`, e.g. `vm=diego-cell/*`, `type=fail`.
    fn from_str(s: &str) -> Result<Self, String> {
        let keys = || {
            MatchKey::ALL
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("matcher {s:?} is not KEY=VALUE (keys: {})", keys()))?;
        let key = MatchKey::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k.trim()))
            .map(|(_, key)| *key)
            .ok_or_else(|| format!("matcher {s:?}: unknown key {k:?} (keys: {})", keys()))?;
        let value = v.trim().to_string();
        if value.is_empty() {
            return Err(format!("matcher {s:?}: empty value"));
        }
        match key {
            MatchKey::Origin => {
                value.parse::<Origin>()?;
            }
            MatchKey::Type => {
                value.parse::<AlarmType>()?;
            }
            _ => {}
        }
        Ok(Matcher { key, value })
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = MatchKey::ALL
            .iter()
            .find(|(_, k)| *k == self.key)
            .map(|(n, _)| *n)
            .unwrap_or("?");
        // a value can hold anything a shell passes: shown on one line
        write!(f, "{name}={}", crate::config::visible::escape(&self.value))
    }
}

/// What a silence is matched against: one alarm, with the deployment of its VM if known.
#[derive(Clone, Copy, Debug)]
pub struct AlarmFacts<'a> {
    pub target: &'a Target,
    pub alarm_type: AlarmType,
    pub deployment: Option<&'a str>,
}

impl Matcher {
    pub fn matches(&self, f: &AlarmFacts<'_>) -> bool {
        let t = f.target;
        match self.key {
            MatchKey::Vm => {
                glob(&self.value, &t.name)
                    || t.app
                        .as_ref()
                        .is_some_and(|a| glob(&self.value, &a.cell_name))
            }
            MatchKey::Ip => *self.value == *t.ip,
            MatchKey::Origin => self.value == t.origin.code(),
            MatchKey::Type => self.value == f.alarm_type.code(),
            MatchKey::App => t
                .app
                .as_ref()
                .is_some_and(|a| glob(&self.value, &a.app_name)),
            MatchKey::Deployment => f.deployment.is_some_and(|d| glob(&self.value, d)),
        }
    }
}

/// `*` matches any run of characters (none too); everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // no `*`: the whole text
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Silence {
    pub id: i64,
    pub matchers: Vec<Matcher>,
    pub author: String,
    pub comment: String,
    pub created_at: Timestamp,
    pub ends_at: Timestamp,
}

impl Silence {
    /// Active at `now` and every matcher matches.
    pub fn silences(&self, f: &AlarmFacts<'_>, now: Timestamp) -> bool {
        now < self.ends_at
            && !self.matchers.is_empty()
            && self.matchers.iter().all(|m| m.matches(f))
    }
}

/// The longest silence. A silence is for known work, not a permanent mute (that is a policy
/// change), and a year keeps every end time far inside what a DATETIME column holds: MariaDB
/// turns a date past 9999 into `0000-00-00`, a silence that holds nothing and cannot be ended.
pub const MAX_SILENCE: chrono::TimeDelta = chrono::TimeDelta::days(365);

/// `30m`, `2h`, `1d`, `90s`, or combined `1h30m`.
pub fn parse_duration(s: &str) -> Result<chrono::Duration, String> {
    let bad = || format!("not a duration: {s:?} (e.g. 30m, 2h, 1d, 1h30m)");
    let mut total: i64 = 0;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit: i64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 7 * 86400,
            _ => return Err(bad()),
        };
        let n: i64 = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || total <= 0 {
        return Err(bad());
    }
    chrono::Duration::try_seconds(total).ok_or_else(bad)
}

/// `silence add --for`: a duration of at most `MAX_SILENCE`.
pub fn parse_silence_duration(s: &str) -> Result<chrono::Duration, String> {
    let d = parse_duration(s)?;
    if d > MAX_SILENCE {
        // clap names the flag and the value; this says the bound
        return Err(format!(
            "a silence lasts at most {}d (one year); for anything longer change the alarm policy",
            MAX_SILENCE.num_days()
        ));
    }
    Ok(d)
}

pub async fn add(
    pool: &MySqlPool,
    matchers: &[Matcher],
    author: &str,
    comment: &str,
    now: Timestamp,
    ends_at: Timestamp,
) -> anyhow::Result<i64> {
    // the CLI bounds --for already; this guards every other caller (a minute of slack for the
    // time between parsing and writing)
    if ends_at <= now || ends_at - now > MAX_SILENCE + chrono::TimeDelta::minutes(1) {
        anyhow::bail!(
            "a silence must end within {} days: {} is out of range",
            MAX_SILENCE.num_days(),
            ends_at.format("%Y-%m-%dT%H:%M:%SZ")
        );
    }
    if matchers.is_empty() {
        anyhow::bail!("a silence needs at least one matcher");
    }
    let res = sqlx::query(
        "INSERT INTO batch_silences (matchers, author, comment, created_at, ends_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(serde_json::to_string(matchers)?)
    .bind(author.chars().take(100).collect::<String>())
    .bind(comment.chars().take(1000).collect::<String>())
    .bind(now)
    .bind(ends_at)
    .execute(pool)
    .await
    .context("adding a silence to batch_silences")?;
    Ok(res.last_insert_id() as i64)
}

/// A row of `batch_silences` as it is, whatever is in it: a row written by hand or by an older
/// binary may hold a zero date (`0000-00-00`), a NULL or matchers that are not ours. Such a row
/// holds nothing; it is listed with its `problems` and can still be expired.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SilenceRow {
    pub id: i64,
    /// the readable ones; empty when the column could not be read
    pub matchers: Vec<Matcher>,
    pub author: String,
    pub comment: String,
    /// None when the column holds no valid time
    pub created_at: Option<Timestamp>,
    /// None when the column holds no valid time (see `problems`)
    pub ends_at: Option<Timestamp>,
    /// false: the row holds nothing; `problems` says why
    pub valid: bool,
    pub problems: Vec<String>,
}

impl SilenceRow {
    /// The silence this row is, when it is valid.
    pub fn silence(&self) -> Option<Silence> {
        if !self.valid {
            return None;
        }
        Some(Silence {
            id: self.id,
            matchers: self.matchers.clone(),
            author: self.author.clone(),
            comment: self.comment.clone(),
            created_at: self.created_at.or(self.ends_at)?,
            ends_at: self.ends_at?,
        })
    }

    fn from_row(row: &sqlx::mysql::MySqlRow) -> SilenceRow {
        let mut problems = Vec::new();
        // every column read on its own: one unreadable value flags the row, never the listing
        let mut text = |col: &str| match row.try_get::<Option<String>, _>(col) {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                problems.push(format!("{col} is NULL"));
                None
            }
            Err(e) => {
                problems.push(format!("{col} unreadable: {e}"));
                None
            }
        };
        let author = text("author").unwrap_or_default();
        let comment = text("comment").unwrap_or_default();
        let raw_matchers = text("matchers");
        let ends_raw = text("ends_at");
        let created_raw = row
            .try_get::<Option<String>, _>("created_at")
            .ok()
            .flatten();
        // when it was made is for the reader only: a bad one does not stop it holding
        let created_at = created_raw.as_deref().and_then(parse_db_time);
        let ends_at = ends_raw
            .as_deref()
            .and_then(|v| time_or_problem("ends_at", v, &mut problems));
        let matchers = raw_matchers
            .as_deref()
            .map(|raw| matchers_or_problems(raw, &mut problems))
            .unwrap_or_default();
        SilenceRow {
            id: row.try_get("id").unwrap_or_default(),
            matchers,
            author,
            comment,
            created_at,
            ends_at,
            valid: problems.is_empty(),
            problems,
        }
    }
}

/// A DATETIME as MariaDB prints it (UTC, as the batch writes it); a zero or invalid date is a
/// problem of the row, not an error.
fn time_or_problem(col: &str, raw: &str, problems: &mut Vec<String>) -> Option<Timestamp> {
    let t = parse_db_time(raw);
    if t.is_none() {
        problems.push(format!("{col} '{raw}' is not a valid time"));
    }
    t
}

fn parse_db_time(raw: &str) -> Option<Timestamp> {
    chrono::NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

fn matchers_or_problems(raw: &str, problems: &mut Vec<String>) -> Vec<Matcher> {
    let parsed: Vec<Matcher> = match serde_json::from_str(raw) {
        Ok(m) => m,
        Err(e) => {
            let shown: String = raw.chars().take(200).collect();
            problems.push(format!("matchers unreadable ({e}): '{shown}'"));
            return Vec::new();
        }
    };
    if parsed.is_empty() {
        problems.push("no matchers: it would silence nothing".into());
    }
    // what `silence add` would refuse (an unknown origin or type, an empty value) never matches
    for m in &parsed {
        let name = MatchKey::ALL
            .iter()
            .find(|(_, k)| *k == m.key)
            .map(|(n, _)| *n)
            .unwrap_or("?");
        if let Err(e) = format!("{name}={}", m.value).parse::<Matcher>() {
            problems.push(e);
        }
    }
    parsed
}

/// Every column as text: a zero date or a NULL is then a value to flag, not a decode error.
macro_rules! select_rows {
    () => {
        "SELECT CAST(id AS SIGNED) AS id, matchers, author, comment, \
         CAST(created_at AS CHAR) AS created_at, CAST(ends_at AS CHAR) AS ends_at FROM batch_silences"
    };
}

/// Rows of `batch_silences`, newest first: all of them, or the active ones (ending after `now`)
/// and those whose end time is no time at all (a zero date, NULL), which an operator must see
/// to expire them.
pub async fn list(pool: &MySqlPool, now: Timestamp, all: bool) -> anyhow::Result<Vec<SilenceRow>> {
    let rows = sqlx::query(concat!(
        select_rows!(),
        " WHERE ? OR ends_at > ? OR ends_at IS NULL OR ends_at < '1000-01-01' ORDER BY id DESC"
    ))
    .bind(all)
    .bind(now)
    .fetch_all(pool)
    .await
    .context("reading batch_silences")?;
    Ok(rows.iter().map(SilenceRow::from_row).collect())
}

/// The silences that hold alarms at `now`, for a tick. A row that holds nothing (unreadable
/// matchers, ...) is skipped with a warning, never failing the tick.
pub async fn active(pool: &MySqlPool, now: Timestamp) -> anyhow::Result<Vec<Silence>> {
    let rows = sqlx::query(concat!(
        select_rows!(),
        " WHERE ends_at > ? ORDER BY id DESC"
    ))
    .bind(now)
    .fetch_all(pool)
    .await
    .context("reading batch_silences")?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows.iter().map(SilenceRow::from_row) {
        match row.silence() {
            Some(s) => out.push(s),
            None => tracing::warn!(
                silence_id = row.id,
                "silence ignored, it holds nothing: {} (`monit-batch silence expire {}` ends it)",
                crate::config::visible::escape(&row.problems.join("; ")),
                row.id
            ),
        }
    }
    Ok(out)
}

/// Ends a silence now: an active one, or one whose end time is no valid time. False when there
/// is no such silence (unknown id, or ended already).
pub async fn expire(pool: &MySqlPool, id: i64, now: Timestamp) -> anyhow::Result<bool> {
    let mut tx = pool
        .begin()
        .await
        .context("expiring a silence in batch_silences")?;
    let row = sqlx::query(concat!(select_rows!(), " WHERE id = ? FOR UPDATE"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .context("reading the silence to expire")?
        .map(|r| SilenceRow::from_row(&r));
    let Some(row) = row else {
        return Ok(false);
    };
    if row.ends_at.is_some_and(|t| t <= now) {
        return Ok(false);
    }
    sqlx::query("UPDATE batch_silences SET ends_at = ? WHERE id = ?")
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .context("expiring a silence in batch_silences")?;
    tx.commit()
        .await
        .context("expiring a silence in batch_silences")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AppInstance;

    fn vm(name: &str, ip: &str) -> Target {
        Target {
            origin: Origin::Pas,
            origin_id: 1,
            name: name.into(),
            ip: ip.into(),
            app: None,
        }
    }
    fn facts<'a>(t: &'a Target, ty: AlarmType, d: Option<&'a str>) -> AlarmFacts<'a> {
        AlarmFacts {
            target: t,
            alarm_type: ty,
            deployment: d,
        }
    }
    fn m(s: &str) -> Matcher {
        s.parse().unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob("diego-cell/*", "diego-cell/0"));
        assert!(glob("*", ""));
        assert!(glob("*cell*", "diego-cell/3"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(!glob("diego-cell/*", "router/0"));
        assert!(glob("router/0", "router/0"));
        assert!(!glob("router/0", "router/01"));
        assert!(!glob("ab*ba", "aba"), "prefix and suffix must not overlap");
    }

    #[test]
    fn matchers_parse_and_name_the_problem() {
        assert_eq!(
            m("vm=diego-cell/*"),
            Matcher {
                key: MatchKey::Vm,
                value: "diego-cell/*".into()
            }
        );
        assert_eq!(m("TYPE=fail").key, MatchKey::Type);
        let e = "color=red".parse::<Matcher>().unwrap_err();
        assert!(
            e.contains("unknown key \"color\"") && e.contains("deployment"),
            "{e}"
        );
        assert!("vm".parse::<Matcher>().unwrap_err().contains("KEY=VALUE"));
        assert!("vm=".parse::<Matcher>().unwrap_err().contains("empty"));
        assert!(
            "origin=xyz"
                .parse::<Matcher>()
                .unwrap_err()
                .contains("origin_type")
        );
        assert!("type=gpu".parse::<Matcher>().is_err());
        assert_eq!(m("app=web").to_string(), "app=web");
    }

    #[test]
    fn every_key_matches_its_field() {
        let t = vm("diego-cell/0", "10.0.0.5");
        let f = facts(&t, AlarmType::Cpu, Some("cf"));
        for yes in [
            "vm=diego-cell/*",
            "ip=10.0.0.5",
            "origin=pas",
            "type=cpu",
            "deployment=cf",
            "deployment=c*",
        ] {
            assert!(m(yes).matches(&f), "{yes}");
        }
        for no in [
            "vm=router/*",
            "ip=10.0.0.50",
            "origin=con",
            "type=fail",
            "deployment=diego",
            "app=web",
        ] {
            assert!(!m(no).matches(&f), "{no}");
        }
        // no deployment known: a deployment matcher does not match
        assert!(!m("deployment=*").matches(&facts(&t, AlarmType::Cpu, None)));
    }

    #[test]
    fn a_container_matches_its_app_and_its_cell() {
        let t = Target {
            origin: Origin::Con,
            origin_id: 0,
            name: "web-guid-0".into(),
            ip: "10.0.16.21".into(),
            app: Some(AppInstance {
                app_name: "web".into(),
                app_index: 0,
                container_name: "abcd-0".into(),
                cell_name: "cell_z1/0".into(),
            }),
        };
        let f = facts(&t, AlarmType::Memory, None);
        assert!(m("app=web").matches(&f));
        assert!(m("app=w*").matches(&f));
        assert!(m("vm=cell_z1/0").matches(&f));
        assert!(!m("app=webapp").matches(&f));
    }

    #[test]
    fn a_silence_needs_every_matcher_and_ends() {
        let now = chrono::Utc::now();
        let s = Silence {
            id: 1,
            matchers: vec![m("vm=router/*"), m("type=fail")],
            author: "ops".into(),
            comment: "replacing NIC".into(),
            created_at: now,
            ends_at: now + chrono::Duration::hours(1),
        };
        let t = vm("router/0", "10.0.0.9");
        assert!(s.silences(&facts(&t, AlarmType::Fail, None), now));
        assert!(!s.silences(&facts(&t, AlarmType::Cpu, None), now));
        assert!(!s.silences(
            &facts(&t, AlarmType::Fail, None),
            now + chrono::Duration::hours(1)
        ));
        let empty = Silence {
            matchers: vec![],
            ..s
        };
        assert!(!empty.silences(&facts(&t, AlarmType::Fail, None), now));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m").unwrap().num_seconds(), 1800);
        assert_eq!(parse_duration("1h30m").unwrap().num_seconds(), 5400);
        assert_eq!(parse_duration("2d").unwrap().num_seconds(), 172800);
        for bad in ["", "0m", "30", "m", "1x", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_silence_lasts_at_most_a_year() {
        assert_eq!(parse_silence_duration("365d").unwrap(), MAX_SILENCE);
        assert_eq!(parse_silence_duration("52w").unwrap().num_days(), 364);
        for long in ["366d", "53w", "500000w", "8761h"] {
            let e = parse_silence_duration(long).unwrap_err();
            assert!(e.contains("at most 365d"), "{long}: {e}");
        }
        assert!(
            parse_silence_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
    }

    #[test]
    fn a_matcher_value_is_shown_on_one_line() {
        let m = Matcher {
            key: MatchKey::Vm,
            value: "a\nb\u{1b}".into(),
        };
        assert_eq!(m.to_string(), "vm=a\\nb\\u{1b}");
    }
}
