//! The InfluxDB subscription the batch keeps (`stream.subscribe`): InfluxDB copies every write
//! to each database the collectors read to `stream.advertise_url`.
//!
//! Kapacitor named its subscriptions at random per start, and every redeploy left one behind,
//! each a full copy of every write (kapacitor#870, #939). Ours has one name per instance
//! ([`subscription_name`]): at start the batch replaces its own stale one on the databases the
//! collectors read (same name, another destination, mode or retention policy) and never
//! touches a subscription of another name, nor its own name on another database. Later checks only re-create a missing one: two
//! instances configured with the same name would otherwise take turns replacing each other.

use crate::config::Settings;
use crate::config::secret::Secret;
use crate::config::stream::{MAX_SUBSCRIPTION_NAME, StreamSettings, is_subscription_name};
use crate::metric_store::influx::{InfluxClient, InfluxError, TextSeries, ident, string};
use anyhow::{Context as _, bail};
use std::collections::BTreeSet;

/// InfluxDB sends every write to every destination with mode ALL; ANY would spread them over
/// several, and an instance would see only a share of the points.
pub const MODE: &str = "ALL";

/// A subscription as `SHOW SUBSCRIPTIONS` lists it.
#[derive(Clone, PartialEq, Eq)]
pub struct Subscription {
    pub db: String,
    pub rp: String,
    pub name: String,
    pub mode: String,
    /// As InfluxDB keeps them: with the userinfo, so never shown as they are.
    pub destinations: Vec<String>,
}

impl Subscription {
    /// The destinations with any password masked.
    pub fn shown_destinations(&self) -> Vec<String> {
        self.destinations
            .iter()
            .map(|d| crate::config::redact::url(d))
            .collect()
    }
}

/// Debug masks the destinations: they hold the credentials InfluxDB sends.
impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("db", &self.db)
            .field("rp", &self.rp)
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("destinations", &self.shown_destinations())
            .finish()
    }
}

/// The name of this instance's subscription: `stream.subscription_name`, else
/// `monit_batch_<batch.instance_name>`, else one from the platform that stays the same across
/// restarts (Cloud Foundry's application name and instance index, then `HOSTNAME`).
/// `CF_INSTANCE_GUID` and the process id change on every start, which is how Kapacitor's
/// orphans came about, so they are never used. `env` reads an environment variable.
pub fn subscription_name(
    stream: &StreamSettings,
    instance_name: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    if let Some(name) = &stream.subscription_name {
        return Ok(name.clone());
    }
    let base = match instance_name.filter(|n| !n.trim().is_empty()) {
        Some(n) => n.to_string(),
        None => match (env("CF_INSTANCE_INDEX"), env("VCAP_APPLICATION")) {
            (Some(index), Some(vcap)) => {
                let app = serde_json::from_str::<serde_json::Value>(&vcap)
                    .ok()
                    .and_then(|v| v.get("application_name")?.as_str().map(str::to_string))
                    .unwrap_or_else(|| "cf".into());
                format!("{app}_{index}")
            }
            _ => match env("HOSTNAME").filter(|h| !h.trim().is_empty()) {
                Some(h) => h,
                None => bail!(
                    "stream.subscribe: no stable name for this instance's subscription: set \
                     batch.instance_name or stream.subscription_name (a name from the process \
                     id would change on each start and leave the old subscription behind)"
                ),
            },
        },
    };
    let mut name: String = format!("monit_batch_{base}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    name.truncate(MAX_SUBSCRIPTION_NAME);
    debug_assert!(is_subscription_name(&name));
    Ok(name)
}

/// `advertise_url` with the stream credentials as its userinfo: what InfluxDB is given. A
/// trailing `/` of an empty path is left out, as operators write the URL.
pub fn destination(stream: &StreamSettings) -> anyhow::Result<Secret> {
    let raw = stream
        .advertise_url
        .as_deref()
        .context("stream.advertise_url is not set")?;
    let mut u = url::Url::parse(raw.trim()).with_context(|| {
        format!(
            "stream.advertise_url = {:?}",
            crate::config::redact::url(raw)
        )
    })?;
    if let Some(user) = Some(stream.username.as_str()).filter(|u| !u.is_empty()) {
        // url percent-encodes what userinfo cannot hold; InfluxDB (Go's url.Parse) decodes it
        u.set_username(user)
            .ok()
            .context("stream.advertise_url cannot carry a user name")?;
        u.set_password(Some(stream.password.expose()))
            .ok()
            .context("stream.advertise_url cannot carry a password")?;
    }
    let mut s = u.to_string();
    if u.path() == "/" {
        s.pop();
    }
    Ok(Secret::new(s))
}

/// What one [`Keeper::ensure`] did, per `db.rp`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnsureReport {
    /// ours was already right
    pub kept: Vec<String>,
    pub created: Vec<String>,
    /// ours had another destination or mode: dropped and created again
    pub replaced: Vec<String>,
    /// ours on another retention policy of a database the collectors read (its default changed)
    pub dropped: Vec<String>,
    /// ours differs but was left (a later check never replaces: see the module doc)
    pub differs: Vec<String>,
    /// one line per database that failed; the others were still done
    pub errors: Vec<String>,
}

/// Keeps this instance's subscription on the databases the collectors read.
pub struct Keeper {
    pub client: InfluxClient,
    pub name: String,
    destination: Secret,
    pub databases: Vec<String>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("influx", &self.client.url())
            .field("name", &self.name)
            .field("destination", &self.shown_destination())
            .field("databases", &self.databases)
            .finish()
    }
}

impl Keeper {
    /// From the settings (`stream.subscribe` must be on, which validation checked needs
    /// everything below) and the databases the collectors read.
    pub fn new(settings: &Settings, databases: Vec<String>) -> anyhow::Result<Keeper> {
        let name = subscription_name(
            &settings.stream,
            settings.batch.instance_name.as_deref(),
            |k| std::env::var(k).ok(),
        )?;
        let client = InfluxClient::new(&settings.influx)?;
        let databases: BTreeSet<String> = databases.into_iter().collect();
        Ok(Keeper {
            client,
            name,
            destination: destination(&settings.stream)?,
            databases: databases.into_iter().collect(),
        })
    }

    /// The destination with its password masked, for logs.
    pub fn shown_destination(&self) -> String {
        crate::config::redact::url(self.destination.expose())
    }

    /// Ensures ours on each database's default retention policy. `at_start`: also replace our
    /// own stale ones there; later checks only create a missing one.
    pub async fn ensure(&self, at_start: bool) -> Result<EnsureReport, InfluxError> {
        let all = list(&self.client).await?;
        let ours: Vec<&Subscription> = all.iter().filter(|s| s.name == self.name).collect();
        // Ours on a database no collector reads is left alone: another deployment on the same
        // InfluxDB with the same instance name owns one there, and dropping it would silence
        // that deployment. `stream subscriptions --remove` is for a renamed database.
        let mut report = EnsureReport::default();
        for db in &self.databases {
            if let Err(e) = self.ensure_on(db, &ours, at_start, &mut report).await {
                report.errors.push(format!("{db}: {e}"));
            }
        }
        Ok(report)
    }

    async fn ensure_on(
        &self,
        db: &str,
        ours: &[&Subscription],
        at_start: bool,
        report: &mut EnsureReport,
    ) -> Result<(), InfluxError> {
        let rp = default_rp(&self.client, db).await?;
        let here: Vec<&&Subscription> = ours.iter().filter(|s| s.db == db).collect();
        let right = |s: &Subscription| {
            s.rp == rp
                && s.mode.eq_ignore_ascii_case(MODE)
                && s.destinations.len() == 1
                && s.destinations[0] == self.destination.expose()
        };
        let at = format!("{db}.{rp}");
        let kept = here.iter().any(|s| right(s));
        let mut replaced = false;
        for s in here.iter().filter(|s| !right(s)) {
            if !at_start {
                report.differs.push(format!("{}.{}", s.db, s.rp));
                continue;
            }
            remove(&self.client, s).await?;
            replaced |= s.rp == rp;
            if s.rp != rp {
                report.dropped.push(format!("{}.{}", s.db, s.rp));
            }
        }
        if kept {
            report.kept.push(at);
            return Ok(());
        }
        // a later check leaves ours alone when it differs on this retention policy (it would
        // be refused as existing anyway)
        if !at_start && here.iter().any(|s| s.rp == rp) {
            return Ok(());
        }
        let q = format!(
            "CREATE SUBSCRIPTION {} ON {}.{} DESTINATIONS {MODE} {}",
            ident(&self.name),
            ident(db),
            ident(&rp),
            string(self.destination.expose())
        );
        self.client
            .statement(Some(db), &q, Some(&self.destination))
            .await?;
        if replaced {
            report.replaced.push(at);
        } else {
            report.created.push(at);
        }
        Ok(())
    }
}

/// Every subscription on the InfluxDB, sorted by database, retention policy and name.
pub async fn list(client: &InfluxClient) -> Result<Vec<Subscription>, InfluxError> {
    let series = client.statement(None, "SHOW SUBSCRIPTIONS", None).await?;
    let mut out = parse_subscriptions(&series);
    out.sort_by(|a, b| (&a.db, &a.rp, &a.name).cmp(&(&b.db, &b.rp, &b.name)));
    Ok(out)
}

/// `SHOW SUBSCRIPTIONS` answers one series per database (its name), one row per subscription.
pub fn parse_subscriptions(series: &[TextSeries]) -> Vec<Subscription> {
    fn text(v: Option<&serde_json::Value>) -> &str {
        v.and_then(|v| v.as_str()).unwrap_or_default()
    }
    let mut out = Vec::new();
    for s in series {
        for row in &s.values {
            out.push(Subscription {
                db: s.name.clone(),
                rp: text(s.cell(row, "retention_policy")).to_string(),
                name: text(s.cell(row, "name")).to_string(),
                mode: text(s.cell(row, "mode")).to_string(),
                destinations: s
                    .cell(row, "destinations")
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|d| d.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    out
}

/// The database's default retention policy: where InfluxDB writes a point sent without `rp`,
/// so where the writers' points are.
pub async fn default_rp(client: &InfluxClient, db: &str) -> Result<String, InfluxError> {
    let q = format!("SHOW RETENTION POLICIES ON {}", ident(db));
    let series = client.statement(Some(db), &q, None).await?;
    series
        .iter()
        .flat_map(|s| s.values.iter().map(move |row| (s, row)))
        .find(|(s, row)| s.cell(row, "default").and_then(|v| v.as_bool()) == Some(true))
        .and_then(|(s, row)| s.cell(row, "name")?.as_str().map(str::to_string))
        .ok_or_else(|| InfluxError::Query {
            url: client.url().to_string(),
            db: db.to_string(),
            message: "the database has no default retention policy".into(),
        })
}

/// Drops one subscription.
pub async fn remove(client: &InfluxClient, s: &Subscription) -> Result<(), InfluxError> {
    let q = format!(
        "DROP SUBSCRIPTION {} ON {}.{}",
        ident(&s.name),
        ident(&s.db),
        ident(&s.rp)
    );
    client.statement(Some(&s.db), &q, None).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(name: Option<&str>) -> StreamSettings {
        StreamSettings {
            subscribe: true,
            advertise_url: Some("http://batch-0.example:8080".into()),
            subscription_name: name.map(str::to_string),
            username: "in flux".into(),
            password: Secret::new("p@ss:w/rd"),
            ..StreamSettings::default()
        }
    }

    #[test]
    fn names_are_stable_and_sanitised() {
        let none = |_: &str| None;
        assert_eq!(
            subscription_name(&stream(None), Some("Batch-0.dc1"), none).unwrap(),
            "monit_batch_batch_0_dc1"
        );
        assert_eq!(
            subscription_name(&stream(Some("mine")), Some("x"), none).unwrap(),
            "mine"
        );
        let cf = |k: &str| match k {
            "CF_INSTANCE_INDEX" => Some("1".to_string()),
            "VCAP_APPLICATION" => Some(r#"{"application_name":"monit-batch"}"#.to_string()),
            "CF_INSTANCE_GUID" => Some("changes-every-start".to_string()),
            _ => None,
        };
        assert_eq!(
            subscription_name(&stream(None), None, cf).unwrap(),
            "monit_batch_monit_batch_1"
        );
        let e = subscription_name(&stream(None), None, none).unwrap_err();
        assert!(e.to_string().contains("batch.instance_name"), "{e}");
        let long = "x".repeat(400);
        let n = subscription_name(&stream(None), Some(&long), none).unwrap();
        assert!(is_subscription_name(&n), "{n}");
    }

    #[test]
    fn destination_carries_encoded_credentials() {
        let d = destination(&stream(None)).unwrap();
        assert_eq!(
            d.expose(),
            "http://in%20flux:p%40ss%3Aw%2Frd@batch-0.example:8080"
        );
        assert_eq!(
            crate::config::redact::url(d.expose()),
            "http://in%20flux:***@batch-0.example:8080"
        );
    }

    #[test]
    fn parses_show_subscriptions() {
        let series: Vec<TextSeries> = serde_json::from_str(
            r#"[{"name":"cf","columns":["retention_policy","name","mode","destinations"],
                 "values":[["autogen","kapacitor-1","ANY",["http://k:secret@k:9092"]]]}]"#,
        )
        .unwrap();
        let s = parse_subscriptions(&series);
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].db.as_str(), s[0].rp.as_str(), s[0].name.as_str()),
            ("cf", "autogen", "kapacitor-1")
        );
        assert_eq!(s[0].shown_destinations(), ["http://k:***@k:9092"]);
        assert!(!format!("{s:?}").contains("secret"));
    }
}
