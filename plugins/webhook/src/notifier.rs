//! POSTs each notification to every configured URL, with retries. Each URL is a recipient of
//! its own: the host records which URLs accepted (or refused for good) a notification, so a
//! retry goes only to the others.

use crate::config::{Format, WebhookConfig, redacted_url};
use crate::payload;
use anyhow::{Context as _, bail};
use backon::{ExponentialBuilder, Retryable as _};
use monit_host::plugin::{Delivery, Notification, Notifier, NotifySession, Refusal};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Header carrying `notification_id`, in every format, for receivers that deduplicate.
pub const NOTIFICATION_ID_HEADER: &str = "x-monit-notification-id";

/// One configured URL.
#[derive(Clone)]
struct Endpoint {
    url: reqwest::Url,
    /// `urls[1] https://hooks.example.org/…`: how logs and errors name it, token-free.
    label: String,
}

/// The `webhook` notifier.
pub struct WebhookNotifier {
    client: reqwest::Client,
    endpoints: Vec<Endpoint>,
    headers: HeaderMap,
    format: Format,
    timeout: Duration,
    retry_max_times: usize,
    retry_min_delay: Duration,
    retry_max_delay: Duration,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field(
                "urls",
                &self.endpoints.iter().map(|e| &e.label).collect::<Vec<_>>(),
            )
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("format", &self.format)
            .field("timeout", &self.timeout)
            .field("retry_max_times", &self.retry_max_times)
            .finish()
    }
}

/// Why one attempt at one URL failed, and whether another attempt may help.
#[derive(Debug)]
struct Failure {
    transient: bool,
    reason: String,
}

impl WebhookNotifier {
    /// Checks the config; errors name the key (`plugins.webhook.urls[1]`) and never show a header
    /// value or a URL's path. Opens no connection.
    pub fn new(config: WebhookConfig) -> anyhow::Result<Self> {
        if config.urls.is_empty() {
            bail!("plugins.webhook.urls is empty: list at least one URL to POST to");
        }
        if config.timeout_seconds == 0 {
            bail!("plugins.webhook.timeout_seconds must be greater than 0");
        }
        let mut endpoints: Vec<Endpoint> = Vec::with_capacity(config.urls.len());
        for (i, raw) in config.urls.iter().enumerate() {
            let url = reqwest::Url::parse(raw.trim())
                .with_context(|| format!("plugins.webhook.urls[{i}] is not a valid URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                bail!(
                    "plugins.webhook.urls[{i}] must be an http:// or https:// URL with a host, got scheme {:?}",
                    url.scheme()
                );
            }
            if let Some(j) = endpoints.iter().position(|e| e.url == url) {
                bail!(
                    "plugins.webhook.urls[{i}] repeats urls[{j}]: each notification would be posted twice"
                );
            }
            endpoints.push(Endpoint {
                label: format!("urls[{i}] {}", redacted_url(&url)),
                url,
            });
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let header = HeaderName::from_bytes(name.trim().as_bytes()).with_context(|| {
                format!("plugins.webhook.headers: {name:?} is not a valid HTTP header name")
            })?;
            let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
                anyhow::anyhow!(
                    "plugins.webhook.headers.{name}: the value is not a valid HTTP header value (not shown: it may be a secret)"
                )
            })?;
            v.set_sensitive(true);
            headers.insert(header, v);
        }
        let timeout = Duration::from_secs(config.timeout_seconds);
        let client = reqwest::Client::builder()
            // A POST redirected becomes a GET, and the Authorization header would follow it
            // elsewhere: a 3xx is reported instead, for the operator to fix the URL.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .user_agent(concat!("monit-batch-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("plugins.webhook: cannot set up the HTTP client")?;
        Ok(Self {
            client,
            endpoints,
            headers,
            format: config.format,
            timeout,
            retry_max_times: config.retry_max_times,
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

    /// The longest one URL can take for one notification: every attempt timing out plus the
    /// longest delays between them. The host's `batch.step_timeout_seconds` should exceed it.
    pub fn worst_case(&self) -> Duration {
        let attempts = self.retry_max_times as u32 + 1;
        self.timeout * attempts + self.retry_max_delay * self.retry_max_times as u32
    }

    /// How logs and errors name the URLs, in config order.
    pub fn url_labels(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.label.clone()).collect()
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// One notification to every URL that has not taken it (or refused it for good) yet. A
    /// URL found down earlier in the session is not tried again in it.
    async fn deliver(&self, n: &Notification, down: &mut [Option<String>]) -> Delivery {
        let body = payload::body(n, self.format);
        self.deliver_body(n.id, &n.done_recipients, &body, down)
            .await
    }

    /// Several notifications as one POST (a digest); the id sent is the first notification's.
    async fn deliver_digest(
        &self,
        batch: &[Notification],
        down: &mut [Option<String>],
    ) -> Delivery {
        let Some(first) = batch.first() else {
            return Delivery::Reject {
                reason: "an empty digest".into(),
            };
        };
        let body = payload::digest_body(batch, self.format);
        self.deliver_body(first.id, &first.done_recipients, &body, down)
            .await
    }

    async fn deliver_body(
        &self,
        id: i64,
        done_recipients: &[String],
        body: &[u8],
        down: &mut [Option<String>],
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
        let results = futures::future::join_all(todo.iter().map(|(i, ep)| {
            let known_down = down[*i].clone();
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
        .await;
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
        match (
            accepted.is_empty(),
            deferred.is_empty(),
            rejected.is_empty(),
        ) {
            (_, true, _) if !accepted.is_empty() => Delivery::Sent { rejected },
            (true, true, _) => Delivery::Reject {
                reason: format!(
                    "webhook: every URL refused it: {}",
                    rejected
                        .iter()
                        .map(|r| format!("{}: {}", r.recipient, r.reason))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            },
            (true, false, true) => Delivery::Unavailable {
                reason: format!("webhook: not delivered: {}", deferred.join("; ")),
            },
            _ => Delivery::Retry {
                reason: format!(
                    "webhook: accepted by {} of {} URLs, retried later only to the others: {}",
                    accepted.len(),
                    todo.len(),
                    deferred.join("; ")
                ),
                accepted,
                rejected,
            },
        }
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
                tracing::warn!(url = %ep.label, notification_id = id, retry_in = ?delay, "webhook: {}; retrying", f.reason)
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
        let response = self
            .client
            .post(ep.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(NOTIFICATION_ID_HEADER, id)
            .timeout(self.timeout)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| self.network_failure(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // The receiver's own words help (Slack answers `invalid_payload`), within reason.
        let text = tokio::time::timeout(self.timeout, response.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
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

    /// A failure before any answer: always worth another attempt. The error's URL is dropped, as
    /// it may hold a token; the endpoint's label names it instead.
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
            text
        };
        Failure {
            transient: true,
            reason,
        }
    }
}

impl Notifier for WebhookNotifier {
    fn session(&self) -> Box<dyn NotifySession + '_> {
        Box::new(WebhookSession {
            notifier: self,
            down: vec![None; self.endpoints.len()],
        })
    }
}

/// A run of deliveries: remembers which URLs are down, so later notifications fail at once
/// instead of each waiting out the retries.
struct WebhookSession<'a> {
    notifier: &'a WebhookNotifier,
    down: Vec<Option<String>>,
}

#[async_trait::async_trait]
impl NotifySession for WebhookSession<'_> {
    async fn deliver(&mut self, n: &Notification) -> Delivery {
        self.notifier.deliver(n, &mut self.down).await
    }

    fn digests(&self) -> bool {
        true
    }

    async fn deliver_digest(&mut self, batch: &[Notification]) -> Delivery {
        self.notifier.deliver_digest(batch, &mut self.down).await
    }

    async fn close(self: Box<Self>) {}
}
