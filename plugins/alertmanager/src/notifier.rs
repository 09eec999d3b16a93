//! Posts the alerts of each notification to every configured Alertmanager (the shared
//! `monit-http-post` sink: retries of network errors, timeouts and 5xx; a 4xx refused at once;
//! each URL a recipient of its own), and restates the open alarms every tick.

use crate::alerts::{self, Shape};
use crate::config::AlertmanagerConfig;
use monit_host::plugin::{Delivery, Notification, Notifier, NotifySession};
use monit_http_post::{Auth, Down, Settings, Sink};
use std::fmt;
use std::time::Duration;

/// Alertmanager's API for posting alerts, under its URL.
pub const ALERTS_PATH: &str = "api/v2/alerts";

/// The `alertmanager` notifier.
pub struct AlertmanagerNotifier {
    sink: Sink,
    shape: Shape,
    /// the operator console's public URL, for `generatorURL`; None: the monitoring web app's
    console: Option<String>,
}

impl fmt::Debug for AlertmanagerNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertmanagerNotifier")
            .field("sink", &self.sink)
            .field("hold", &self.shape.hold)
            .field("labels", &self.shape.extra_labels)
            .finish()
    }
}

impl AlertmanagerNotifier {
    /// Checks the config; errors name the key (`plugins.alertmanager.url[0]`) and never show a
    /// password, a token or a header value. Opens no connection. `hold`: how long a firing
    /// alert lasts without being posted again ([`alerts::hold_for`] the tick interval).
    pub fn new(config: AlertmanagerConfig, hold: Duration) -> anyhow::Result<Self> {
        config.check()?;
        let sink = Sink::new(
            "alertmanager",
            Settings {
                section: "plugins.alertmanager",
                urls_key: "url",
                urls: &config.url,
                path: ALERTS_PATH,
                timeout_seconds: config.timeout_seconds,
                retry_max_times: config.retry_max_times,
                headers: &config.headers,
                auth: Auth::from_keys(
                    config.user.as_deref(),
                    &config.password,
                    &config.bearer_token,
                ),
                ca_file: config.ca_file.as_deref(),
                insecure_skip_verify: config.insecure_skip_verify,
                user_agent: concat!("monit-batch-alertmanager/", env!("CARGO_PKG_VERSION")),
            },
        )?;
        Ok(Self {
            sink,
            shape: Shape {
                hold,
                extra_labels: config.labels,
            },
            console: None,
        })
    }

    /// Links the alerts to the operator console at this public URL.
    pub fn with_console(mut self, public_url: Option<String>) -> Self {
        self.console = public_url;
        self
    }

    /// The delays between attempts (exponential with jitter from `min` up to `max`). Default
    /// 0.5 s to 4 s.
    pub fn with_retry_delays(mut self, min: Duration, max: Duration) -> Self {
        self.sink = self.sink.with_retry_delays(min, max);
        self
    }

    /// The longest one URL can take for one POST, retries included.
    pub fn worst_case(&self) -> Duration {
        self.sink.worst_case()
    }

    /// How logs, errors and the outbox name the URLs, in config order.
    pub fn url_labels(&self) -> Vec<String> {
        self.sink.labels()
    }

    pub fn hold(&self) -> Duration {
        self.shape.hold
    }

    async fn deliver(&self, batch: &[Notification], down: &mut Down) -> Delivery {
        let Some(first) = batch.first() else {
            return Delivery::Reject {
                reason: "alertmanager: nothing to post".into(),
            };
        };
        let body = alerts::body(batch, &self.shape, self.console.as_deref());
        self.sink
            .deliver(first.id, &first.done_recipients, &body, down)
            .await
    }
}

#[async_trait::async_trait]
impl Notifier for AlertmanagerNotifier {
    fn session(&self) -> Box<dyn NotifySession + '_> {
        Box::new(AlertmanagerSession {
            notifier: self,
            down: self.sink.none_down(),
        })
    }

    fn restates_firing(&self) -> bool {
        true
    }

    /// Alertmanager resolves an alert once its `endsAt` passes: every open alarm it was told
    /// is posted again, ending a hold from now, in one POST per chunk.
    async fn restate_firing(&self, firing: &[Notification]) -> anyhow::Result<()> {
        let Some(first) = firing.first() else {
            return Ok(());
        };
        let body = alerts::restated_body(
            firing,
            chrono::Utc::now(),
            &self.shape,
            self.console.as_deref(),
        );
        let mut down = self.sink.none_down();
        self.sink
            .post_to_all(first.id, &body, &mut down)
            .await
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!(e))
    }
}

/// A run of deliveries: remembers which URLs are down, so later posts fail at once instead of
/// each waiting out the retries.
struct AlertmanagerSession<'a> {
    notifier: &'a AlertmanagerNotifier,
    down: Down,
}

#[async_trait::async_trait]
impl NotifySession for AlertmanagerSession<'_> {
    async fn deliver(&mut self, n: &Notification) -> Delivery {
        self.notifier
            .deliver(std::slice::from_ref(n), &mut self.down)
            .await
    }

    /// Alertmanager takes a list of alerts: a digest is one POST of all of them (it groups
    /// and routes them itself).
    fn digests(&self) -> bool {
        true
    }

    async fn deliver_digest(&mut self, batch: &[Notification]) -> Delivery {
        self.notifier.deliver(batch, &mut self.down).await
    }

    async fn close(self: Box<Self>) {}
}
