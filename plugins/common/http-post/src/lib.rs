//! What the notifiers that POST to HTTP receivers share (`webhook`, `alertmanager`): the
//! configured URLs checked and named without their secrets, the client (timeouts, TLS, no
//! redirects), the credentials, and one delivery: a body POSTed to every URL that has not taken
//! it yet, network errors, timeouts and 5xx retried with backoff, 4xx and 3xx refused at once,
//! one outcome per URL for the host's outbox.
//!
//! A notifier owns its config section and its body; this crate owns none of either.

use anyhow::{Context as _, bail};
use backon::{ExponentialBuilder, Retryable as _};
use monit_host::config::redact;
use monit_host::config::secret::Secret;
use monit_host::plugin::{Delivery, Refusal};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Header carrying the notification id (the outbox row id, the same on every attempt), for
/// receivers that deduplicate.
pub const NOTIFICATION_ID_HEADER: &str = "x-monit-notification-id";

/// Credentials sent with every POST, besides any configured header.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    Basic {
        user: String,
        password: Secret,
    },
    Bearer(Secret),
}

impl Auth {
    /// From the keys `user`, `password` and `bearer_token` (as `[prometheus]` names them): a
    /// bearer token wins over basic auth; no user and no token is no auth.
    pub fn from_keys(user: Option<&str>, password: &Secret, bearer_token: &Secret) -> Auth {
        if !bearer_token.is_empty() {
            Auth::Bearer(bearer_token.clone())
        } else if let Some(user) = user.filter(|u| !u.is_empty()) {
            Auth::Basic {
                user: user.to_string(),
                password: password.clone(),
            }
        } else {
            Auth::None
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Basic { .. } => "basic",
            Auth::Bearer(_) => "bearer",
        }
    }
}

/// What a notifier configured for its receivers. Errors name keys as `<section>.<key>`.
pub struct Settings<'a> {
    /// `plugins.<name>`
    pub section: &'a str,
    /// The key that lists the URLs (`urls`): a URL is named `<urls_key>[<index>] <origin>/…`.
    pub urls_key: &'a str,
    pub urls: &'a [String],
    /// Appended to each URL's path unless it already ends with it (`api/v2/alerts`); empty: the
    /// URLs as configured.
    pub path: &'a str,
    /// Each attempt at one URL: connecting, sending, reading the answer.
    pub timeout_seconds: u64,
    /// Retries after the first attempt, for network errors, timeouts and 5xx answers only.
    pub retry_max_times: usize,
    /// Extra request headers; every value is a secret.
    pub headers: &'a BTreeMap<String, Secret>,
    pub auth: Auth,
    /// PEM file of the CA(s) that signed the receivers' certificates, besides the system's.
    pub ca_file: Option<&'a Path>,
    /// Skip TLS verification (a lab only; logged at start).
    pub insecure_skip_verify: bool,
    pub user_agent: &'a str,
}

/// One configured URL.
#[derive(Clone)]
struct Endpoint {
    url: reqwest::Url,
    /// `urls[1] https://hooks.example.org/…`: how logs, errors and the outbox name it.
    label: String,
    /// user and password written into the URL's userinfo: taken out of the URL (which every
    /// error shows) and sent as basic auth, unless other credentials are configured
    userinfo: Option<(String, Secret)>,
}

/// The URLs a notifier POSTs to, and how.
pub struct Sink {
    /// the notifier's name, at the head of its delivery errors and log lines
    name: String,
    client: reqwest::Client,
    endpoints: Vec<Endpoint>,
    headers: HeaderMap,
    auth: Auth,
    /// every credential value sent, masked in an answer that echoes it
    secrets: Vec<(Option<String>, Secret)>,
    timeout: Duration,
    retry_max_times: usize,
    retry_min_delay: Duration,
    retry_max_delay: Duration,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink")
            .field("name", &self.name)
            .field("urls", &self.labels())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("auth", &self.auth.kind())
            .field("timeout", &self.timeout)
            .field("retry_max_times", &self.retry_max_times)
            .finish()
    }
}

/// Which URLs failed in a run of deliveries (index = the URL's), and why: later deliveries of
/// the run fail at once for them instead of each waiting out the retries.
pub type Down = Vec<Option<String>>;

/// Why one attempt at one URL failed, and whether another attempt may help.
#[derive(Debug)]
struct Failure {
    transient: bool,
    reason: String,
}

impl Sink {
    /// Checks the settings; errors name the key (`plugins.webhook.urls[1]`) and never show a
    /// header value, a password or a URL's path. Opens no connection.
    pub fn new(name: &str, s: Settings<'_>) -> anyhow::Result<Self> {
        let (section, key) = (s.section, s.urls_key);
        if s.urls.is_empty() {
            bail!("{section}.{key} is empty: list at least one URL to POST to");
        }
        if s.timeout_seconds == 0 {
            bail!("{section}.timeout_seconds must be greater than 0");
        }
        let mut endpoints: Vec<Endpoint> = Vec::with_capacity(s.urls.len());
        for (i, raw) in s.urls.iter().enumerate() {
            let url = reqwest::Url::parse(raw.trim())
                .with_context(|| format!("{section}.{key}[{i}] is not a valid URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                bail!(
                    "{section}.{key}[{i}] must be an http:// or https:// URL with a host, got scheme {:?}",
                    url.scheme()
                );
            }
            let (mut url, userinfo) =
                redact::split_userinfo(&format!("{section}.{key}[{i}]"), raw)?;
            let userinfo = userinfo.map(|c| (c.user, c.password));
            let path = s.path.trim_matches('/');
            if !path.is_empty() && !url.path().trim_end_matches('/').ends_with(path) {
                let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
                url.set_path(&joined);
            }
            if let Some(j) = endpoints.iter().position(|e| e.url == url) {
                bail!(
                    "{section}.{key}[{i}] repeats {key}[{j}]: each notification would be posted twice"
                );
            }
            endpoints.push(Endpoint {
                label: format!("{key}[{i}] {}", redact::origin(&url)),
                url,
                userinfo,
            });
        }
        let mut headers = HeaderMap::new();
        let mut secrets: Vec<(Option<String>, Secret)> = Vec::new();
        for (name, value) in s.headers {
            let header = HeaderName::from_bytes(name.trim().as_bytes()).with_context(|| {
                format!("{section}.headers: {name:?} is not a valid HTTP header name")
            })?;
            let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
                anyhow::anyhow!(
                    "{section}.headers.{name}: the value is not a valid HTTP header value (not shown: it may be a secret)"
                )
            })?;
            v.set_sensitive(true);
            headers.insert(header, v);
            secrets.push((None, value.clone()));
        }
        match &s.auth {
            Auth::None => {}
            Auth::Basic { user, password } => secrets.push((Some(user.clone()), password.clone())),
            Auth::Bearer(token) => secrets.push((None, token.clone())),
        }
        if !matches!(s.auth, Auth::None) && headers.contains_key(AUTHORIZATION) {
            bail!(
                "{section}: credentials (user/password or bearer_token) and headers.Authorization are both set; keep one"
            );
        }
        for ep in &endpoints {
            if let Some((user, password)) = &ep.userinfo {
                secrets.push((Some(user.clone()), password.clone()));
            }
        }
        let timeout = Duration::from_secs(s.timeout_seconds);
        let mut builder = reqwest::Client::builder()
            // A POST redirected becomes a GET, and the Authorization header could follow it
            // elsewhere: a 3xx is reported instead, for the operator to fix the URL.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .user_agent(s.user_agent);
        if let Some(path) = s.ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("{section}.ca_file: cannot read {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!(
                    "{section}.ca_file: {} is not a PEM certificate file",
                    path.display()
                )
            })?;
            if certs.is_empty() {
                bail!(
                    "{section}.ca_file: {} holds no PEM certificate",
                    path.display()
                );
            }
            builder = builder.tls_certs_merge(certs);
        }
        if s.insecure_skip_verify {
            tracing::warn!(
                "{section}.insecure_skip_verify = true: TLS certificates of the receivers are NOT \
                 verified; anyone on the network path can read what is sent and the credentials. \
                 Set ca_file instead."
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .with_context(|| format!("{section}: cannot set up the HTTP client"))?;
        Ok(Self {
            name: name.to_string(),
            client,
            endpoints,
            headers,
            auth: s.auth,
            secrets,
            timeout,
            retry_max_times: s.retry_max_times,
            retry_min_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(4),
        })
    }

    /// The delays between attempts (exponential with jitter from `min` up to `max`). Default
    /// 0.5 s to 4 s.
    pub fn with_retry_delays(mut self, min: Duration, max: Duration) -> Self {
        self.retry_min_delay = min;
        self.retry_max_delay = max.max(min);
        self
    }

    /// The longest one URL can take for one body: every attempt timing out plus the longest
    /// delays between them. The host's `batch.step_timeout_seconds` should exceed it.
    pub fn worst_case(&self) -> Duration {
        let attempts = self.retry_max_times as u32 + 1;
        self.timeout * attempts + self.retry_max_delay * self.retry_max_times as u32
    }

    /// How logs, errors and the outbox name the URLs, in config order.
    pub fn labels(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.label.clone()).collect()
    }

    /// No URL down yet: the start of a run of deliveries.
    pub fn none_down(&self) -> Down {
        vec![None; self.endpoints.len()]
    }

    /// One body to every URL that has not taken it (or refused it for good) yet, as
    /// `done_recipients` says. A URL found down earlier in the run is not tried again in it.
    pub async fn deliver(
        &self,
        id: i64,
        done_recipients: &[String],
        body: &[u8],
        down: &mut Down,
    ) -> Delivery {
        let todo: Vec<(usize, &Endpoint)> = self
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, ep)| !done_recipients.contains(&ep.label))
            .collect();
        if todo.is_empty() {
            return Delivery::Sent {
                rejected: Vec::new(),
            };
        }
        let results = self.post_each(&todo, id, body, down).await;
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        let mut deferred = Vec::new();
        for ((i, ep), res) in todo.iter().zip(results) {
            match res {
                Ok(()) => accepted.push(ep.label.clone()),
                Err(f) if f.transient => {
                    down[*i].get_or_insert_with(|| f.reason.clone());
                    deferred.push(format!("{}: {}", ep.label, f.reason));
                }
                Err(f) => rejected.push(Refusal {
                    recipient: ep.label.clone(),
                    reason: f.reason,
                }),
            }
        }
        let name = &self.name;
        match (
            accepted.is_empty(),
            deferred.is_empty(),
            rejected.is_empty(),
        ) {
            (_, true, _) if !accepted.is_empty() => Delivery::Sent { rejected },
            (true, true, _) => Delivery::Reject {
                reason: format!(
                    "{name}: every URL refused it: {}",
                    rejected
                        .iter()
                        .map(|r| format!("{}: {}", r.recipient, r.reason))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            },
            (true, false, true) => Delivery::Unavailable {
                reason: format!("{name}: not delivered: {}", deferred.join("; ")),
            },
            _ => Delivery::Retry {
                reason: format!(
                    "{name}: accepted by {} of {} URLs, retried later only to the others: {}",
                    accepted.len(),
                    todo.len(),
                    deferred.join("; ")
                ),
                accepted,
                rejected,
            },
        }
    }

    /// One body to every URL, outside the outbox (a restatement the receiver needs again and
    /// again, not a notification of its own): Ok with the number of URLs, or why not every
    /// URL took it. A URL down earlier in the run is not tried.
    pub async fn post_to_all(
        &self,
        id: i64,
        body: &[u8],
        down: &mut Down,
    ) -> Result<usize, String> {
        let all: Vec<(usize, &Endpoint)> = self.endpoints.iter().enumerate().collect();
        let results = self.post_each(&all, id, body, down).await;
        let mut failed = Vec::new();
        for ((i, ep), res) in all.iter().zip(results) {
            if let Err(f) = res {
                if f.transient {
                    down[*i].get_or_insert_with(|| f.reason.clone());
                }
                failed.push(format!("{}: {}", ep.label, f.reason));
            }
        }
        if failed.is_empty() {
            Ok(all.len())
        } else {
            Err(format!(
                "{}: not taken by {} of {} URLs: {}",
                self.name,
                failed.len(),
                all.len(),
                failed.join("; ")
            ))
        }
    }

    /// The body to each of `todo` at once; a URL known down fails without a try.
    async fn post_each(
        &self,
        todo: &[(usize, &Endpoint)],
        id: i64,
        body: &[u8],
        down: &[Option<String>],
    ) -> Vec<Result<(), Failure>> {
        futures::future::join_all(todo.iter().map(|(i, ep)| {
            let known_down = down.get(*i).cloned().flatten();
            async move {
                match known_down {
                    Some(reason) => Err(Failure {
                        transient: true,
                        reason: format!("not tried, it failed earlier in this run: {reason}"),
                    }),
                    None => self.post(ep, id, body).await,
                }
            }
        }))
        .await
    }

    /// POSTs the body to one URL, retrying transient failures.
    async fn post(&self, ep: &Endpoint, id: i64, body: &[u8]) -> Result<(), Failure> {
        let attempts = AtomicUsize::new(0);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry_min_delay)
            .with_max_delay(self.retry_max_delay)
            .with_max_times(self.retry_max_times)
            .with_jitter();
        let attempt = || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.attempt(ep, id, body).await
        };
        attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|f: &Failure| f.transient)
            .notify(|f: &Failure, delay| {
                tracing::warn!(url = %ep.label, notification_id = id, retry_in = ?delay, "{}: {}; retrying", self.name, f.reason)
            })
            .await
            .map_err(|mut f| {
                let n = attempts.load(Ordering::Relaxed);
                f.reason = format!(
                    "{} ({n} attempt{})",
                    f.reason,
                    if n == 1 { "" } else { "s" }
                );
                f
            })
    }

    async fn attempt(&self, ep: &Endpoint, id: i64, body: &[u8]) -> Result<(), Failure> {
        let mut request = self
            .client
            .post(ep.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(NOTIFICATION_ID_HEADER, id)
            .timeout(self.timeout)
            .body(body.to_vec());
        request = match (&self.auth, &ep.userinfo) {
            (Auth::Basic { user, password }, _) => {
                request.basic_auth(user, Some(password.expose()))
            }
            (Auth::Bearer(token), _) => request.bearer_auth(token.expose()),
            (Auth::None, Some((user, password))) if !self.headers.contains_key(AUTHORIZATION) => {
                request.basic_auth(user, Some(password.expose()))
            }
            (Auth::None, _) => request,
        };
        let response = request.send().await.map_err(|e| self.network_failure(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // The receiver's own words help (Slack answers `invalid_payload`), within reason; a
        // proxy in front of it may echo the credentials it refused, so those are masked.
        let text = tokio::time::timeout(self.timeout, response.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let text = self.scrub(&text);
        let snippet: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(200)
            .collect();
        let snippet = snippet.trim();
        Err(Failure {
            transient: status.is_server_error(),
            reason: if snippet.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {snippet}")
            },
        })
    }

    /// `text` with every credential this sink sends masked, in each form it is sent in.
    fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |t, (user, s)| {
            redact::scrub_credentials(&t, user.as_deref(), s)
        })
    }

    /// A failure before any answer: always worth another attempt. The error's URL is dropped
    /// (it may hold a token); the endpoint's label names it instead.
    fn network_failure(&self, e: reqwest::Error) -> Failure {
        let reason = if e.is_timeout() {
            format!("no answer within {}s", self.timeout.as_secs())
        } else {
            let e = e.without_url();
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            self.scrub(&text)
        };
        Failure {
            transient: true,
            reason,
        }
    }
}

/// A config value that lists URLs: a list, or one URL as a plain string (what an environment
/// variable gives). For `#[serde(deserialize_with = "monit_http_post::one_or_many")]`.
pub fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Urls;
    impl<'de> serde::de::Visitor<'de> for Urls {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of URLs or one URL")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(u) = seq.next_element::<String>()? {
                out.push(u);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings<'a>(urls: &'a [String], headers: &'a BTreeMap<String, Secret>) -> Settings<'a> {
        Settings {
            section: "plugins.test",
            urls_key: "url",
            urls,
            path: "api/v2/alerts",
            timeout_seconds: 5,
            retry_max_times: 0,
            headers,
            auth: Auth::None,
            ca_file: None,
            insecure_skip_verify: false,
            user_agent: "test",
        }
    }

    #[test]
    fn the_path_is_appended_once_and_userinfo_taken_out() {
        let urls = vec![
            "http://am.example:9093".to_string(),
            "https://am2.example/prefix/api/v2/alerts/".to_string(),
            "http://ops:p%40ss@am3.example:9093/".to_string(),
        ];
        let h = BTreeMap::new();
        let sink = Sink::new("test", settings(&urls, &h)).unwrap();
        let got: Vec<String> = sink.endpoints.iter().map(|e| e.url.to_string()).collect();
        assert_eq!(
            got,
            [
                "http://am.example:9093/api/v2/alerts",
                "https://am2.example/prefix/api/v2/alerts/",
                "http://am3.example:9093/api/v2/alerts",
            ]
        );
        let (user, pw) = sink.endpoints[2].userinfo.clone().unwrap();
        assert_eq!((user.as_str(), pw.expose()), ("ops", "p@ss"));
        assert_eq!(sink.labels()[2], "url[2] http://am3.example:9093/…");
        assert!(!format!("{sink:?}").contains("p@ss"));
    }

    #[test]
    fn a_repeated_url_after_the_path_is_added_is_an_error() {
        let urls = vec![
            "http://am.example:9093".to_string(),
            "http://am.example:9093/api/v2/alerts".to_string(),
        ];
        let h = BTreeMap::new();
        let e = Sink::new("test", settings(&urls, &h)).unwrap_err();
        assert!(
            e.to_string().contains("plugins.test.url[1] repeats url[0]"),
            "{e}"
        );
    }

    #[test]
    fn credentials_and_an_authorization_header_are_one_too_many() {
        let urls = vec!["http://am.example:9093".to_string()];
        let h = BTreeMap::from([("Authorization".to_string(), Secret::new("Bearer x"))]);
        let mut s = settings(&urls, &h);
        s.auth = Auth::Bearer(Secret::new("y"));
        let e = Sink::new("test", s).unwrap_err().to_string();
        assert!(e.contains("headers.Authorization"), "{e}");
    }

    #[test]
    fn scrub_masks_every_form_of_every_credential() {
        let urls = vec!["http://am.example:9093".to_string()];
        let h = BTreeMap::from([("X-Key".to_string(), Secret::new("hdr-s3cret"))]);
        let mut s = settings(&urls, &h);
        s.auth = Auth::Basic {
            user: "ops".into(),
            password: Secret::new("pw-s3cret"),
        };
        let sink = Sink::new("test", s).unwrap();
        // "ops:pw-s3cret" in base64, as basic auth sends it
        let echoed = "refused: hdr-s3cret, pw-s3cret, Basic b3BzOnB3LXMzY3JldA==";
        assert_eq!(sink.scrub(echoed), "refused: ***, ***, Basic ***");
    }

    #[test]
    fn auth_from_keys_prefers_the_token() {
        let pw = Secret::new("pw");
        assert!(matches!(
            Auth::from_keys(Some("u"), &pw, &Secret::new("t")),
            Auth::Bearer(_)
        ));
        assert!(matches!(
            Auth::from_keys(Some("u"), &pw, &Secret::default()),
            Auth::Basic { .. }
        ));
        assert!(matches!(
            Auth::from_keys(Some(""), &pw, &Secret::default()),
            Auth::None
        ));
    }
}
