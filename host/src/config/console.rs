//! `[console]`: the operator console on the HTTP port (`/ui/`), off unless enabled, and who may
//! log in to it (`[[console.users]]`, each with an Argon2 password hash and a role).

use super::secret::Secret;
use anyhow::bail;
use serde::{Deserialize, Serialize};

/// What a console user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Role {
    /// reads every page, changes nothing
    Viewer,
    /// may also add and expire silences, retry and drop outbox rows
    Operator,
}

impl TryFrom<String> for Role {
    type Error = String;
    fn try_from(s: String) -> Result<Role, String> {
        match s.as_str() {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            other => Err(format!(
                "role {other:?}: expected \"viewer\" (reads) or \"operator\" (may change silences and the outbox)"
            )),
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// `[[console.users]]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleUser {
    /// the login name: letters, digits and `._@-`, 1 to [`MAX_USER_NAME`] characters
    pub name: String,
    /// an Argon2 PHC string (`$argon2id$v=19$...`) from `monit-batch console hash-password`;
    /// never shown (masked like a password)
    pub password_hash: Secret,
    /// `viewer` or `operator`
    pub role: Role,
}

/// `[console]`
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// Serve the console under `/ui/` on the HTTP port (`[server]`). Off by default.
    pub enabled: bool,
    /// The console's address as an operator's browser reaches it (`https://batch.example:9999`),
    /// for the links in alarm mails ("silence this for 2 h"). Unset: mails carry no link.
    pub public_url: Option<String>,
    /// Who may log in. At least one when the console is enabled.
    pub users: Vec<ConsoleUser>,
}

/// The longest user name.
pub const MAX_USER_NAME: usize = 64;
/// The most users: a config file, not a user database.
pub const MAX_USERS: usize = 1000;

impl ConsoleSettings {
    /// The console's base URL for links in notifications: only when it is enabled and
    /// `public_url` is set. No trailing slash.
    pub fn link_base(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let url = self.public_url.as_deref()?.trim();
        (!url.is_empty()).then(|| url.trim_end_matches('/').to_string())
    }

    /// The keys in range and consistent; `server_enabled`: the HTTP port is served.
    pub fn check(&self, server_enabled: bool) -> anyhow::Result<()> {
        if let Some(raw) = &self.public_url {
            check_public_url(raw)?;
        }
        if self.users.len() > MAX_USERS {
            bail!(
                "console.users: {} users, at most {MAX_USERS}",
                self.users.len()
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("console.users[{i}]");
            if u.name.is_empty()
                || u.name.chars().count() > MAX_USER_NAME
                || !u
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
            {
                bail!(
                    "{key}.name = {:?}: letters, digits and . _ @ - only, 1 to {MAX_USER_NAME} characters",
                    crate::config::visible::escape(&u.name)
                );
            }
            if !seen.insert(u.name.as_str()) {
                bail!("{key}.name = {:?}: named twice in console.users", u.name);
            }
            check_password_hash(u.password_hash.expose()).map_err(|e| {
                anyhow::anyhow!(
                    "{key}.password_hash (user {:?}): {e}; make one with `monit-batch console hash-password`",
                    u.name
                )
            })?;
        }
        if !self.enabled {
            return Ok(());
        }
        if !server_enabled {
            bail!(
                "console.enabled = true serves the console on the HTTP port: server.enabled must be true"
            );
        }
        if self.users.is_empty() {
            bail!(
                "console.enabled = true needs at least one [[console.users]] (name, password_hash, role): \
                 every page asks for a login"
            );
        }
        Ok(())
    }
}

fn check_public_url(raw: &str) -> anyhow::Result<()> {
    let shown = crate::config::redact::url(raw);
    let u = url::Url::parse(raw.trim())
        .map_err(|e| anyhow::anyhow!("console.public_url = {shown:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        bail!(
            "console.public_url = {shown:?}: scheme {:?}, expected http or https",
            u.scheme()
        );
    }
    if u.host_str().is_none_or(str::is_empty) {
        bail!("console.public_url = {shown:?}: no host");
    }
    if !u.username().is_empty() || u.password().is_some() {
        bail!("console.public_url = {shown:?}: no credentials in a link that goes out in mails");
    }
    if u.query().is_some() || u.fragment().is_some() {
        bail!("console.public_url = {shown:?}: a base URL, without ? or #");
    }
    Ok(())
}

/// An Argon2 PHC string the console can verify with.
pub fn check_password_hash(hash: &str) -> anyhow::Result<()> {
    use argon2::password_hash::phc::PasswordHash;
    if hash.trim().is_empty() {
        bail!("empty");
    }
    let parsed = PasswordHash::new(hash.trim())
        .map_err(|e| anyhow::anyhow!("not a PHC hash string ({e})"))?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        bail!(
            "algorithm {:?}: expected argon2id (or argon2i, argon2d)",
            parsed.algorithm.as_str()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$5Sq7xW2mJ5jwVSsS3NlzuJkN9VYmT7CRsDkcnGMsl3U";

    fn user(name: &str) -> ConsoleUser {
        ConsoleUser {
            name: name.into(),
            password_hash: Secret::new(HASH),
            role: Role::Operator,
        }
    }

    #[test]
    fn off_by_default_and_an_enabled_console_needs_users_and_the_server() {
        let c = ConsoleSettings::default();
        c.check(true).unwrap();
        assert_eq!(c.link_base(), None);
        let on = ConsoleSettings {
            enabled: true,
            ..Default::default()
        };
        let e = on.check(true).unwrap_err().to_string();
        assert!(e.contains("[[console.users]]"), "{e}");
        let on = ConsoleSettings {
            enabled: true,
            users: vec![user("kim")],
            public_url: Some("https://batch.example:9999/".into()),
        };
        on.check(true).unwrap();
        let e = on.check(false).unwrap_err().to_string();
        assert!(e.contains("server.enabled"), "{e}");
        assert_eq!(
            on.link_base().as_deref(),
            Some("https://batch.example:9999")
        );
    }

    #[test]
    fn bad_keys_are_named() {
        let bad = |c: ConsoleSettings, want: &str| {
            let e = c.check(true).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should name {want}");
        };
        let base = ConsoleSettings {
            enabled: true,
            users: vec![user("kim")],
            public_url: None,
        };
        bad(
            ConsoleSettings {
                public_url: Some("ftp://batch.example".into()),
                ..base.clone()
            },
            "console.public_url",
        );
        bad(
            ConsoleSettings {
                public_url: Some("https://u:pw@batch.example".into()),
                ..base.clone()
            },
            "no credentials",
        );
        bad(
            ConsoleSettings {
                users: vec![user("kim"), user("kim")],
                ..base.clone()
            },
            "named twice",
        );
        bad(
            ConsoleSettings {
                users: vec![user("a b")],
                ..base.clone()
            },
            "console.users[0].name",
        );
        let mut plain = user("lee");
        plain.password_hash = Secret::new("hunter2");
        let c = ConsoleSettings {
            users: vec![user("kim"), plain],
            ..base.clone()
        };
        let e = c.check(true).unwrap_err().to_string();
        assert!(e.contains("console.users[1].password_hash"), "{e}");
        assert!(!e.contains("hunter2"), "the value is never shown: {e}");
    }
}
