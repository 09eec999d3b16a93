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
        write!(f, "{name}={}", self.value)
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
            MatchKey::Ip => self.value == t.ip,
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

pub async fn add(
    pool: &MySqlPool,
    matchers: &[Matcher],
    author: &str,
    comment: &str,
    now: Timestamp,
    ends_at: Timestamp,
) -> anyhow::Result<i64> {
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

/// Silences, the active ones (`ends_at` after `now`) or all; newest first.
pub async fn list(pool: &MySqlPool, now: Timestamp, all: bool) -> anyhow::Result<Vec<Silence>> {
    let rows = sqlx::query(
        "SELECT CAST(id AS SIGNED) AS id, matchers, author, comment, created_at, ends_at FROM batch_silences \
         WHERE ? OR ends_at > ? ORDER BY id DESC",
    )
    .bind(all)
    .bind(now)
    .fetch_all(pool)
    .await
    .context("reading batch_silences")?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let raw: String = row.try_get("matchers")?;
        let matchers: Vec<Matcher> = match serde_json::from_str(&raw) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(silence_id = id, "silence ignored: unreadable matchers: {e}");
                continue;
            }
        };
        out.push(Silence {
            id,
            matchers,
            author: row.try_get("author")?,
            comment: row.try_get("comment")?,
            created_at: row.try_get("created_at")?,
            ends_at: row.try_get("ends_at")?,
        });
    }
    Ok(out)
}

/// Ends a silence now. False when there is no active silence with that id.
pub async fn expire(pool: &MySqlPool, id: i64, now: Timestamp) -> anyhow::Result<bool> {
    let res = sqlx::query("UPDATE batch_silences SET ends_at = ? WHERE id = ? AND ends_at > ?")
        .bind(now)
        .bind(id)
        .bind(now)
        .execute(pool)
        .await
        .context("expiring a silence in batch_silences")?;
    Ok(res.rows_affected() > 0)
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
}
