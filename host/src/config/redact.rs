//! The one redaction of URLs shown anywhere: logs, errors, `batch_runs`, outbox rows,
//! check-config.
//!
//! The first defence is at the source: a configured URL's userinfo (`http://user:pass@host`) is
//! taken out at load ([`split_userinfo`]) and sent as basic-auth credentials, so no client ever
//! holds a URL with a password and no error (reqwest's includes the URL) can carry it. [`url`]
//! and [`text`] are for what is still shown: a raw config value in an error, a URL from an answer.

use crate::config::secret::Secret;

/// A URL without its password (`user:***@`). Also for strings that do not parse as URLs: the
/// userinfo of anything that looks like `scheme://userinfo@host` is masked all the same.
pub fn url(s: &str) -> String {
    text(s)
}

/// `scheme://host:port`, then `/…` when the URL has a path or a query: for URLs whose path or
/// query is the secret (webhooks of Slack, Teams, Discord).
pub fn origin(u: &url::Url) -> String {
    let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or("?"));
    if let Some(port) = u.port() {
        s.push_str(&format!(":{port}"));
    }
    if u.path() != "/" || u.query().is_some() {
        s.push_str("/…");
    }
    s
}

/// Masks the userinfo password of every `scheme://user:pass@` in a free text (an error chain
/// whose parts name URLs), keeping the user name.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // the authority ends at the first of / ? # or whitespace / quote
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{user}:***")),
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Credentials that were written into a URL's userinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlCredentials {
    pub user: String,
    pub password: Secret,
}

/// Parses `raw` (the value of config key `key`) and takes its userinfo out: the URL without it,
/// and the percent-decoded user and password if there were any. Errors name the key and show the
/// value redacted.
pub fn split_userinfo(key: &str, raw: &str) -> anyhow::Result<(url::Url, Option<UrlCredentials>)> {
    let mut u = url::Url::parse(raw.trim())
        .map_err(|e| anyhow::anyhow!("{key} = {:?} is not a URL: {e}", url(raw)))?;
    if u.username().is_empty() && u.password().is_none() {
        return Ok((u, None));
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let creds = UrlCredentials {
        user: decode(u.username()),
        password: Secret::new(u.password().map(decode).unwrap_or_default()),
    };
    // set_* fail only for URLs that cannot have userinfo, which then had none
    let _ = u.set_password(None);
    let _ = u.set_username("");
    Ok((u, Some(creds)))
}

/// `text` from a server with every form of a credential the client sent masked (`***`): the
/// secret itself and the base64 of `user:secret` that basic auth puts in the header. A proxy
/// in front of a store may echo what it refused (vmauth 1.79 answers a wrong token with
/// `cannot find the provided auth token "Bearer <token>"`, a wrong password with the base64
/// form), and such a body ends up in an error, so in logs, the tick summary and batch_runs.
pub fn scrub_credentials(text: &str, user: Option<&str>, secret: &Secret) -> String {
    use base64::Engine as _;
    if secret.is_empty() {
        return text.to_string();
    }
    let mut out = text.to_string();
    if let Some(user) = user {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", secret.expose()));
        out = out.replace(&basic, "***");
    }
    out.replace(secret.expose(), "***")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_echoed_by_a_server_are_masked() {
        let tok = Secret::new("s3cr3t-tok");
        assert_eq!(
            scrub_credentials(
                r#"cannot find the provided auth token "Bearer s3cr3t-tok" in config"#,
                None,
                &tok
            ),
            r#"cannot find the provided auth token "Bearer ***" in config"#
        );
        // "reader:wrong" in base64, as basic auth sends it
        let pw = Secret::new("wrong");
        let t = scrub_credentials(
            r#"auth token "Basic cmVhZGVyOndyb25n" (wrong)"#,
            Some("reader"),
            &pw,
        );
        assert_eq!(t, r#"auth token "Basic ***" (***)"#);
        assert_eq!(
            scrub_credentials("nothing", Some("u"), &Secret::default()),
            "nothing"
        );
    }

    #[test]
    fn masks_passwords_in_urls_and_texts() {
        assert_eq!(url("http://u:p%40ss@h:1/x?y"), "http://u:***@h:1/x?y");
        assert_eq!(url("http://h:1/x"), "http://h:1/x");
        assert_eq!(url("not a url"), "not a url");
        assert_eq!(url("h:p@ss@host"), "h:p@ss@host", "no scheme, no authority");
        assert_eq!(
            text("InfluxDB http://a:b@h/query: error; UAA https://c:d@u/oauth/token"),
            "InfluxDB http://a:***@h/query: error; UAA https://c:***@u/oauth/token"
        );
        assert_eq!(
            text("\"mysql://x:y@db:3306/m\""),
            "\"mysql://x:***@db:3306/m\""
        );
        assert_eq!(text("a token@x:// b"), "a token@x:// b");
    }

    #[test]
    fn origin_hides_path_and_query() {
        let u = url::Url::parse("https://u:p@hooks.example/T0/B0/xyz?k=1").unwrap();
        assert_eq!(origin(&u), "https://hooks.example/…");
        let u = url::Url::parse("http://h.example:8080/").unwrap();
        assert_eq!(origin(&u), "http://h.example:8080");
    }

    #[test]
    fn userinfo_is_taken_out() {
        let (u, c) = split_userinfo("k", "http://ad%3Amin:p%40ss@h.example:8086/").unwrap();
        assert_eq!(u.as_str(), "http://h.example:8086/");
        let c = c.unwrap();
        assert_eq!(c.user, "ad:min");
        assert_eq!(c.password.expose(), "p@ss");
        let (u, c) = split_userinfo("k", "http://h.example").unwrap();
        assert_eq!((u.as_str(), c), ("http://h.example/", None));
        let e = split_userinfo("influx.url", "http://u:hunter2@[bad").unwrap_err();
        let e = e.to_string();
        assert!(e.contains("influx.url") && !e.contains("hunter2"), "{e}");
    }
}
