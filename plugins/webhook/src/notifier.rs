//! POSTs each notification to every configured URL, with retries (the shared `monit-http-post`
//! sink). Each URL is a recipient of its own: the host records which URLs accepted (or refused
//! for good) a notification, so a retry goes only to the others.

use crate::config::{Format, WebhookConfig};
use crate::payload;
use monit_host::plugin::{Delivery, Notification, Notifier, NotifySession};
use monit_http_post::{Auth, Down, Settings, Sink};
use std::fmt;
use std::time::Duration;

/// Header carrying `notification_id`, in every format, for receivers that deduplicate.
pub const NOTIFICATION_ID_HEADER: &str = monit_http_post::NOTIFICATION_ID_HEADER;

/// The `webhook` notifier.
pub struct WebhookNotifier {
    sink: Sink,
    format: Format,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("sink", &self.sink)
            .field("format", &self.format)
            .finish()
    }
}

impl WebhookNotifier {
    /// Checks the config; errors name the key (`plugins.webhook.urls[1]`) and never show a header
    /// value or a URL's path. Opens no connection.
    pub fn new(config: WebhookConfig) -> anyhow::Result<Self> {
        let sink = Sink::new(
            "webhook",
            Settings {
                section: "plugins.webhook",
                urls_key: "urls",
                urls: &config.urls,
                path: "",
                timeout_seconds: config.timeout_seconds,
                retry_max_times: config.retry_max_times,
                headers: &config.headers,
                auth: Auth::None,
                ca_file: None,
                insecure_skip_verify: false,
                user_agent: concat!("monit-batch-webhook/", env!("CARGO_PKG_VERSION")),
            },
        )?;
        Ok(Self {
            sink,
            format: config.format,
        })
    }

    /// The delays between attempts (exponential with jitter from `min` up to `max`). Default
    /// 0.5 s to 4 s.
    pub fn with_retry_delays(mut self, min: Duration, max: Duration) -> Self {
        self.sink = self.sink.with_retry_delays(min, max);
        self
    }

    /// The longest one URL can take for one notification: every attempt timing out plus the
    /// longest delays between them. The host's `batch.step_timeout_seconds` should exceed it.
    pub fn worst_case(&self) -> Duration {
        self.sink.worst_case()
    }

    /// How logs and errors name the URLs, in config order.
    pub fn url_labels(&self) -> Vec<String> {
        self.sink.labels()
    }

    pub fn format(&self) -> Format {
        self.format
    }
}

impl Notifier for WebhookNotifier {
    fn session(&self) -> Box<dyn NotifySession + '_> {
        Box::new(WebhookSession {
            notifier: self,
            down: self.sink.none_down(),
        })
    }
}

/// A run of deliveries: remembers which URLs are down, so later notifications fail at once
/// instead of each waiting out the retries.
struct WebhookSession<'a> {
    notifier: &'a WebhookNotifier,
    down: Down,
}

#[async_trait::async_trait]
impl NotifySession for WebhookSession<'_> {
    async fn deliver(&mut self, n: &Notification) -> Delivery {
        let body = payload::body(n, self.notifier.format);
        self.notifier
            .sink
            .deliver(n.id, &n.done_recipients, &body, &mut self.down)
            .await
    }

    fn digests(&self) -> bool {
        true
    }

    /// Several notifications as one POST (a digest); the id sent is the first notification's.
    async fn deliver_digest(&mut self, batch: &[Notification]) -> Delivery {
        let Some(first) = batch.first() else {
            return Delivery::Reject {
                reason: "an empty digest".into(),
            };
        };
        let body = payload::digest_body(batch, self.notifier.format);
        self.notifier
            .sink
            .deliver(first.id, &first.done_recipients, &body, &mut self.down)
            .await
    }

    async fn close(self: Box<Self>) {}
}
