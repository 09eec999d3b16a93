//! Sends a batch of notifications over one SMTP connection.

use crate::chart;
use crate::config::{EmailConfig, Security};
use crate::render::{self, header_safe};
use crate::transport::{self, ImplicitTls};
use anyhow::{Context as _, anyhow, bail};
use async_trait::async_trait;
use chrono::FixedOffset;
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::{Address, Message};
use monit_host::config::secret::Secret;
use monit_host::plugin::{
    Delivery, History, HistoryWish, Notification, Notifier, NotifySession, Refusal,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The `email` notifier: one SMTP connection per [`Notifier::send`] call, reopened only when a
/// failed mail broke it.
pub struct EmailNotifier {
    host: String,
    port: u16,
    security: Security,
    tls: TlsSetup,
    ca_file: Option<String>,
    username: String,
    password: Secret,
    from: Mailbox,
    timeout: Duration,
    display_offset: FixedOffset,
    /// `plugins.email.charts`: a chart of the alarmed reading in each mail
    charts: bool,
    hello: ClientId,
    connections_opened: AtomicU64,
    nodelay_connections: AtomicU64,
}

/// What `security` needs at connect time, built once from the config.
enum TlsSetup {
    Plain,
    /// Handed to lettre, which upgrades the stream after STARTTLS.
    Starttls(TlsParameters),
    /// Done here before lettre sees the stream: lettre cannot take an existing stream and start
    /// it with TLS.
    Implicit(ImplicitTls),
}

impl fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("server", &self.server())
            .field("security", &self.security)
            .field("ca_file", &self.ca_file)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .field("display_offset", &self.display_offset)
            .field("charts", &self.charts)
            .finish()
    }
}

impl EmailNotifier {
    /// Checks the whole config up front, so a bad key fails at start-up, not at the first alarm.
    pub fn new(config: EmailConfig) -> anyhow::Result<Self> {
        let host = config.smtp_host.trim().to_string();
        if host.is_empty() {
            bail!("plugins.email.smtp_host is empty: set the SMTP server's name or IP");
        }
        let port = config.port();
        if port == 0 {
            bail!("plugins.email.smtp_port must be between 1 and 65535");
        }
        let from: Mailbox = config.sender.trim().parse().map_err(|e| {
            anyhow!(
                "plugins.email.sender = {:?} is not an e-mail address ({e})",
                config.sender
            )
        })?;
        if config.timeout_seconds == 0 {
            bail!("plugins.email.timeout_seconds must be greater than 0");
        }
        let hours = config.display_utc_offset_hours;
        if !hours.is_finite() || !(-14.0..=14.0).contains(&hours) {
            bail!("plugins.email.display_utc_offset_hours = {hours} is out of range (-14 to 14)");
        }
        let display_offset =
            FixedOffset::east_opt((hours * 3600.0).round() as i32).with_context(|| {
                format!("plugins.email.display_utc_offset_hours = {hours} is not a valid offset")
            })?;

        let extra_roots = match (&config.ca_file, config.security) {
            (Some(_), Security::Plain) => {
                tracing::warn!("plugins.email.ca_file is ignored with security = \"plain\"");
                Vec::new()
            }
            (Some(path), _) => read_ca_file(path)?,
            (None, _) => Vec::new(),
        };
        let tls = match config.security {
            Security::Plain => TlsSetup::Plain,
            Security::Starttls => {
                let mut builder = TlsParameters::builder(host.clone());
                for der in &extra_roots {
                    let cert = Certificate::from_der(der.to_vec()).map_err(|e| {
                        anyhow!("plugins.email.ca_file: cannot use its certificate: {e}")
                    })?;
                    builder = builder.add_root_certificate(cert);
                }
                TlsSetup::Starttls(
                    builder
                        .build_rustls()
                        .map_err(|e| anyhow!("plugins.email: cannot set up TLS for {host}: {e}"))?,
                )
            }
            Security::Tls => TlsSetup::Implicit(ImplicitTls::new(&host, &extra_roots)?),
        };
        if config.security == Security::Plain && !config.password.is_empty() {
            tracing::warn!(
                server = %format!("{host}:{port}"),
                "plugins.email: security = \"plain\" with a password: the SMTP AUTH credentials cross the network unencrypted"
            );
        }
        let username = config
            .username
            .clone()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| from.email.to_string());
        Ok(Self {
            host,
            port,
            security: config.security,
            tls,
            ca_file: config.ca_file.as_ref().map(|p| p.display().to_string()),
            username,
            password: config.password,
            from,
            timeout: Duration::from_secs(config.timeout_seconds),
            display_offset,
            charts: config.charts,
            hello: ClientId::default(),
            connections_opened: AtomicU64::new(0),
            nodelay_connections: AtomicU64::new(0),
        })
    }

    /// `host:port`, as errors name the server.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// SMTP connections opened since this notifier was built (a gauge for tests and metrics).
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// Of [`connections_opened`](Self::connections_opened), those whose socket reported
    /// TCP_NODELAY set once connected (a check for tests: without it each mail waits ~40 ms).
    pub fn nodelay_connections(&self) -> u64 {
        self.nodelay_connections.load(Ordering::Relaxed)
    }

    /// The complete message of one notification. The `To:` header names every valid
    /// recipient; the envelope only those not done on an earlier try.
    pub fn compose(&self, n: &Notification) -> anyhow::Result<Composed> {
        let chart = self.chart(n, chart::MAIL_SIZE);
        let mail = render::render_with_chart(n, self.display_offset, chart.as_ref().map(|c| &c.1));
        self.compose_mail(n, mail, n.id.to_string(), chart.into_iter().collect())
    }

    /// Whether this notifier puts charts in its mails (`plugins.email.charts`).
    pub fn charts(&self) -> bool {
        self.charts
    }

    /// The chart of a notification's reading, drawn from the history the host read for it, or
    /// None: charts off, an alarm without a reading (`fail`), or a history that could not be
    /// read or drawn (a warning names the alarm and why; the mail goes without it).
    fn chart(&self, n: &Notification, size: (u32, u32)) -> Option<(Vec<u8>, render::ChartRef)> {
        if !self.charts {
            return None;
        }
        let history = match &n.history {
            None => {
                tracing::debug!(
                    notification = n.id,
                    alarm_id = n.alarm_id,
                    "alarm mail without a chart: no history for it (a fail alarm has no reading)"
                );
                return None;
            }
            Some(History::Unavailable(why)) => {
                tracing::warn!(
                    notification = n.id,
                    alarm_id = n.alarm_id,
                    reason = %why,
                    "alarm mail sent without its chart: its history could not be read"
                );
                return None;
            }
            Some(History::Read(h)) => h,
        };
        let current = n.value.map(|value| chart::Current {
            value,
            at: n.event_at,
        });
        match chart::draw(history, current, self.display_offset, size) {
            Ok(c) => Some((
                c.png,
                render::ChartRef {
                    content_id: format!("chart.{}.{}@monit-batch", n.id, n.alarm_id),
                    width: c.width,
                    height: c.height,
                    alt: format!(
                        "{} {} over the last {} min",
                        render::header_safe(&n.server_name()),
                        history.resource.code(),
                        (history.to - history.from).num_minutes()
                    ),
                },
            )),
            Err(why) => {
                tracing::warn!(
                    notification = n.id,
                    alarm_id = n.alarm_id,
                    reason = %why,
                    "alarm mail sent without its chart: it could not be drawn"
                );
                None
            }
        }
    }

    /// One mail for several notifications with the same recipients (a digest), addressed as
    /// the first; `X-Notification-Id` lists every notification.
    pub fn compose_digest(&self, batch: &[Notification]) -> anyhow::Result<Composed> {
        let first = batch
            .first()
            .ok_or_else(|| anyhow::anyhow!("an empty digest"))?;
        // a chart for each of the digest's first alarms (in its order) that has a history
        let mut charts: Vec<(Vec<u8>, render::ChartRef)> = Vec::new();
        let mut refs: HashMap<i64, render::ChartRef> = HashMap::new();
        let in_order = monit_host::notify::digest::sections(batch)
            .into_iter()
            .flat_map(|(_, list)| list);
        for n in in_order {
            if charts.len() >= chart::DIGEST_CHARTS {
                break;
            }
            if let Some((png, r)) = self.chart(n, chart::DIGEST_SIZE) {
                refs.insert(n.id, r.clone());
                charts.push((png, r));
            }
        }
        let mail = crate::digest::render_digest_with_charts(batch, self.display_offset, &refs);
        // Every row id, so a receiver (or the chaos soak) can tell which rows a digest carried
        // and drop a digest sent twice after a crash. ", " lets lettre fold the header at the
        // spaces: its lines stay under SMTP's 998 characters whatever the digest's size.
        let ids: Vec<String> = batch.iter().map(|n| n.id.to_string()).collect();
        self.compose_mail(first, mail, ids.join(", "), charts)
    }

    fn compose_mail(
        &self,
        n: &Notification,
        mail: render::RenderedMail,
        ids: String,
        charts: Vec<(Vec<u8>, render::ChartRef)>,
    ) -> anyhow::Result<Composed> {
        let recipients = self.recipients(n)?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(header_safe(&mail.subject))
            .header(NotificationId(ids))
            .message_id(None);
        for to in &recipients.valid {
            builder = builder.to(Mailbox::new(None, to.clone()));
        }
        if !recipients.remaining.is_empty() {
            let envelope =
                Envelope::new(Some(self.from.email.clone()), recipients.remaining.clone())
                    .with_context(|| format!("cannot address notification {}", n.id))?;
            builder = builder.envelope(envelope);
        }
        // with charts, the HTML part and its images go together (multipart/related), so a
        // client shows them in the HTML, not as attachments; the text part is the same
        let body = if charts.is_empty() {
            MultiPart::alternative_plain_html(mail.text, mail.html)
        } else {
            let png = ContentType::parse("image/png")
                .map_err(|e| anyhow!("the image/png content type: {e}"))?;
            let mut related = MultiPart::related().singlepart(SinglePart::html(mail.html));
            for (bytes, r) in charts {
                let name = format!("{}.png", r.content_id.split('@').next().unwrap_or("chart"));
                related = related.singlepart(
                    Attachment::new_inline_with_name(r.content_id, name).body(bytes, png.clone()),
                );
            }
            MultiPart::alternative()
                .singlepart(SinglePart::plain(mail.text))
                .multipart(related)
        };
        let message = builder
            .multipart(body)
            .with_context(|| format!("cannot build the mail of notification {}", n.id))?;
        Ok(Composed {
            message,
            remaining: recipients.remaining,
            invalid: recipients.invalid,
        })
    }

    /// Every distinct valid address of the notification, and those of them not done yet.
    /// Invalid ones are logged and reported as refused, so one bad `alarm_targets` row does not
    /// hold back the mail to the others.
    fn recipients(&self, n: &Notification) -> anyhow::Result<Recipients> {
        let origin = n.origin.code();
        let mut valid: Vec<Address> = Vec::new();
        let mut invalid = Vec::new();
        for raw in &n.recipients {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            match raw.parse::<Address>() {
                Ok(a) if !valid.iter().any(|o| same_address(o, &a)) => valid.push(a),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(notification = n.id, origin, address = %raw.escape_debug(), error = %e,
                        "alarm_targets.mail_address is not a valid e-mail address; skipped");
                    invalid.push(Refusal {
                        recipient: raw.escape_debug().to_string(),
                        reason: format!("not a valid e-mail address: {e}"),
                    });
                }
            }
        }
        if valid.is_empty() {
            if invalid.is_empty() {
                bail!(
                    "no mail recipients for origin {origin}: add alarm_targets rows for origin {origin} \
                     (origin_type = '{origin}', mail_address, mail_send_yn = 'Y')"
                );
            }
            bail!(
                "no valid mail recipient for origin {origin} (invalid: {}): fix the alarm_targets rows for origin {origin}",
                invalid
                    .iter()
                    .map(|r| r.recipient.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let done = |a: &Address| {
            n.done_recipients
                .iter()
                .any(|d| d.trim().eq_ignore_ascii_case(a.as_ref()))
        };
        let remaining = valid.iter().filter(|a| !done(a)).cloned().collect();
        invalid.retain(|r| !n.done_recipients.contains(&r.recipient));
        Ok(Recipients {
            valid,
            remaining,
            invalid,
        })
    }

    async fn with_timeout<T>(
        &self,
        what: &str,
        fut: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(anyhow!(
                    "SMTP server {}: {what} timed out after {} s (plugins.email.timeout_seconds)",
                    self.server(),
                    self.timeout.as_secs()
                ))
            })
    }

    /// TCP, TLS (implicit or STARTTLS), EHLO and AUTH.
    async fn open(&self) -> anyhow::Result<AsyncSmtpConnection> {
        self.with_timeout("connecting", self.open_inner()).await
    }

    async fn open_inner(&self) -> anyhow::Result<AsyncSmtpConnection> {
        let server = self.server();
        let hint = |e: &dyn fmt::Display| {
            let text = e.to_string();
            if text.contains("certificate") || text.contains("Certificate") {
                match &self.ca_file {
                    Some(ca) => format!(
                        "{text} (the server's certificate is not signed by plugins.email.ca_file {ca} or does not name {})",
                        self.host
                    ),
                    None => format!("{text} (a private CA needs plugins.email.ca_file)"),
                }
            } else {
                text
            }
        };
        let cannot_connect = |e: &dyn fmt::Display| {
            anyhow!(
                "cannot connect to SMTP server {server} (security = {}): {}",
                self.security,
                hint(e)
            )
        };
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        let (tcp, nodelay) = transport::connect_nodelay(&self.host, self.port)
            .await
            .map_err(|e| cannot_connect(&e))?;
        if nodelay {
            self.nodelay_connections.fetch_add(1, Ordering::Relaxed);
        }
        let stream: Box<dyn AsyncTokioStream> = match &self.tls {
            TlsSetup::Implicit(tls) => {
                Box::new(tls.handshake(tcp).await.map_err(|e| cannot_connect(&e))?)
            }
            TlsSetup::Plain | TlsSetup::Starttls(_) => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
            .await
            .map_err(|e| cannot_connect(&e))?;
        if let TlsSetup::Starttls(tls) = &self.tls {
            if !conn.can_starttls() {
                conn.abort().await;
                bail!(
                    "SMTP server {server} does not offer STARTTLS (security = \"starttls\"); use \"tls\" for implicit TLS or \"plain\""
                );
            }
            conn.starttls(tls.clone(), &self.hello)
                .await
                .map_err(|e| anyhow!("SMTP server {server}: STARTTLS failed: {}", hint(&e)))?;
            // lettre upgrades only a plain TCP stream it recognises; never go on in clear text.
            if !conn.is_encrypted() {
                conn.abort().await;
                bail!("SMTP server {server}: the connection is not encrypted after STARTTLS");
            }
        }
        if !self.password.is_empty() {
            let credentials =
                Credentials::new(self.username.clone(), self.password.expose().to_string());
            if let Err(e) = conn
                .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                .await
            {
                conn.abort().await;
                bail!(
                    "SMTP server {server}: AUTH as {:?} failed: {e}",
                    self.username
                );
            }
        }
        Ok(conn)
    }
}

impl Notifier for EmailNotifier {
    fn session(&self) -> Box<dyn NotifySession + '_> {
        Box::new(EmailSession {
            notifier: self,
            conn: None,
            in_flight: false,
            broke: false,
            unreachable: None,
        })
    }
}

/// A notification's mail, ready for the envelope's recipients.
pub struct Composed {
    pub message: Message,
    /// the envelope: valid recipients not done yet
    pub remaining: Vec<Address>,
    /// `alarm_targets` addresses that are not e-mail addresses, reported as refused
    pub invalid: Vec<Refusal>,
}

struct Recipients {
    valid: Vec<Address>,
    remaining: Vec<Address>,
    invalid: Vec<Refusal>,
}

/// `X-Monit-Notification-Id`: the outbox row, for receivers and audits that match mails to rows.
#[derive(Clone)]
struct NotificationId(String);

impl Header for NotificationId {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Monit-Notification-Id")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// One SMTP connection for a run of mails, opened at the first and reopened only when broken.
/// Each recipient is offered on its own (`RCPT TO`), so one refused address does not fail the
/// mail for the others.
pub struct EmailSession<'a> {
    notifier: &'a EmailNotifier,
    conn: Option<AsyncSmtpConnection>,
    /// set while a mail is on the wire: if the host gave up on a delivery (its own timeout),
    /// the connection is mid-command and must not be reused
    in_flight: bool,
    /// the connection broke (timeout, network) during the last mail: if it breaks again on a
    /// fresh one, the server is not answering and the rest of the run waits
    broke: bool,
    /// the server could not be reached in this run: later mails fail at once, not each after
    /// its own connect timeout
    unreachable: Option<String>,
}

impl Reply {
    /// Why the exchange failed; None when the server said yes.
    fn failure(&self) -> Option<&str> {
        match self {
            Reply::Ok => None,
            Reply::Permanent(why) | Reply::Transient(why) | Reply::Broken(why) => Some(why),
        }
    }
}

/// What goes to the server in one exchange.
enum Exchange<'m> {
    Command(String),
    Message(&'m [u8]),
}

/// What one SMTP reply means for a delivery.
enum Reply {
    Ok,
    /// 5xx: refused for good
    Permanent(String),
    /// 4xx: try again later
    Transient(String),
    /// no usable reply (network error, timeout): the connection is gone
    Broken(String),
}

/// Waits for one SMTP exchange within the notifier's timeout and says what its reply means.
async fn smtp_reply<F>(notifier: &EmailNotifier, what: &str, fut: F) -> Reply
where
    F: Future<
        Output = Result<
            lettre::transport::smtp::response::Response,
            lettre::transport::smtp::Error,
        >,
    >,
{
    match tokio::time::timeout(notifier.timeout, fut).await {
        Ok(Ok(_)) => Reply::Ok,
        Ok(Err(e)) if e.is_permanent() => Reply::Permanent(format!("{what}: {e}")),
        Ok(Err(e)) if e.is_transient() => Reply::Transient(format!("{what}: {e}")),
        Ok(Err(e)) => Reply::Broken(format!("SMTP server {}: {what}: {e}", notifier.server())),
        Err(_) => Reply::Broken(format!(
            "SMTP server {}: {what} timed out after {} s (plugins.email.timeout_seconds)",
            notifier.server(),
            notifier.timeout.as_secs()
        )),
    }
}

impl EmailSession<'_> {
    /// Sends one command (or the message) on the open connection; a broken reply drops the
    /// connection, so the next mail opens a new one.
    async fn step(&mut self, what: &str, send: Exchange<'_>) -> Reply {
        let notifier = self.notifier;
        let Some(conn) = self.conn.as_mut() else {
            return Reply::Broken(format!(
                "SMTP server {}: connection lost",
                notifier.server()
            ));
        };
        let reply = match send {
            Exchange::Command(cmd) => smtp_reply(notifier, what, conn.command(cmd)).await,
            Exchange::Message(bytes) => smtp_reply(notifier, what, conn.message(bytes)).await,
        };
        if matches!(reply, Reply::Broken(_)) {
            self.conn = None;
            self.broke = true;
        }
        reply
    }

    /// Back to a clean state after a refused transaction; a failed RSET drops the connection.
    async fn reset(&mut self) {
        if let Some(conn) = self.conn.as_mut()
            && !matches!(
                tokio::time::timeout(self.notifier.timeout, conn.command(Rset)).await,
                Ok(Ok(_))
            )
        {
            self.conn = None;
        }
    }

    async fn transact(&mut self, composed: &Composed) -> Delivery {
        let bytes = composed.message.formatted();
        let mut rejected = composed.invalid.clone();
        let Some(conn) = self.conn.as_mut() else {
            return Delivery::Unavailable {
                reason: format!("SMTP server {}: no open connection", self.notifier.server()),
            };
        };
        let mut params = Vec::new();
        if !bytes.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let mail = Mail::new(Some(self.notifier.from.email.clone()), params).to_string();
        match self.step("MAIL FROM", Exchange::Command(mail)).await {
            Reply::Ok => {}
            // The sender refused: that holds for every mail of the run, not for this one.
            Reply::Permanent(why) | Reply::Transient(why) => {
                self.reset().await;
                return Delivery::Unavailable {
                    reason: format!("SMTP server {}: {why}", self.notifier.server()),
                };
            }
            Reply::Broken(why) => return Delivery::Unavailable { reason: why },
        }
        let mut accepted: Vec<&Address> = Vec::new();
        let mut deferred: Vec<String> = Vec::new();
        for to in &composed.remaining {
            let rcpt = Rcpt::new(to.clone(), Vec::new()).to_string();
            match self.step("RCPT TO", Exchange::Command(rcpt)).await {
                Reply::Ok => accepted.push(to),
                Reply::Permanent(why) => {
                    tracing::warn!(recipient = %to, "alarm mail refused for this recipient: {why}");
                    rejected.push(Refusal {
                        recipient: to.to_string(),
                        reason: why,
                    });
                }
                Reply::Transient(why) => deferred.push(format!("{to}: {why}")),
                Reply::Broken(why) => {
                    return Delivery::Retry {
                        reason: why,
                        accepted: Vec::new(),
                        rejected,
                    };
                }
            }
        }
        if accepted.is_empty() {
            self.reset().await;
            if deferred.is_empty() {
                return Delivery::Reject {
                    reason: format!(
                        "every recipient was refused: {}",
                        rejected
                            .iter()
                            .map(|r| format!("{} ({})", r.recipient, r.reason))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                };
            }
            return Delivery::Retry {
                reason: format!("recipients deferred: {}", deferred.join("; ")),
                accepted: Vec::new(),
                rejected,
            };
        }
        let data = self.step("DATA", Exchange::Command(Data.to_string())).await;
        if let Some(why) = data.failure() {
            if !matches!(data, Reply::Broken(_)) {
                self.reset().await;
            }
            return Delivery::Retry {
                reason: why.to_string(),
                accepted: Vec::new(),
                rejected,
            };
        }
        match self.step("message", Exchange::Message(&bytes)).await {
            Reply::Ok => {}
            Reply::Permanent(why) => {
                return Delivery::Reject {
                    reason: format!("the server refused the message for good: {why}"),
                };
            }
            Reply::Transient(why) => {
                return Delivery::Retry {
                    reason: why,
                    accepted: Vec::new(),
                    rejected,
                };
            }
            // The server may or may not have taken it: the one mail a retry may double.
            Reply::Broken(why) => {
                return Delivery::Retry {
                    reason: format!("{why} (the server may have accepted it)"),
                    accepted: Vec::new(),
                    rejected,
                };
            }
        }
        if deferred.is_empty() {
            Delivery::Sent { rejected }
        } else {
            Delivery::Retry {
                reason: format!("recipients deferred: {}", deferred.join("; ")),
                accepted: accepted.iter().map(|a| a.to_string()).collect(),
                rejected,
            }
        }
    }
}

#[async_trait]
impl NotifySession for EmailSession<'_> {
    async fn deliver(&mut self, n: &Notification) -> Delivery {
        let composed = self.notifier.compose(n);
        let delivery = self.send(composed).await;
        match &delivery {
            Delivery::Sent { rejected } => tracing::info!(
                notification = n.id,
                alarm = n.alarm_id,
                kind = n.kind.code(),
                refused = rejected.len(),
                "alarm mail sent"
            ),
            Delivery::Retry { reason, .. }
            | Delivery::Reject { reason }
            | Delivery::Unavailable { reason } => {
                tracing::warn!(notification = n.id, alarm = n.alarm_id, error = %reason, "alarm mail not sent")
            }
        }
        delivery
    }

    fn digests(&self) -> bool {
        true
    }

    /// With `plugins.email.charts`: the last hour of each alarmed reading (the first
    /// [`chart::DIGEST_CHARTS`] of a digest).
    fn history_wish(&self) -> Option<HistoryWish> {
        self.notifier.charts.then_some(HistoryWish {
            span: CHART_SPAN,
            per_digest: chart::DIGEST_CHARTS,
        })
    }

    async fn deliver_digest(&mut self, batch: &[Notification]) -> Delivery {
        let composed = self.notifier.compose_digest(batch);
        let delivery = self.send(composed).await;
        match &delivery {
            Delivery::Sent { rejected } => tracing::info!(
                notifications = batch.len(),
                refused = rejected.len(),
                "digest mail sent"
            ),
            Delivery::Retry { reason, .. }
            | Delivery::Reject { reason }
            | Delivery::Unavailable { reason } => {
                tracing::warn!(notifications = batch.len(), error = %reason, "digest mail not sent")
            }
        }
        delivery
    }

    async fn close(self: Box<Self>) {
        if let Some(mut c) = self.conn
            && !self.in_flight
            && !c.has_broken()
        {
            // Every mail is already recorded; a failed QUIT changes nothing.
            let _ = tokio::time::timeout(self.notifier.timeout, c.quit()).await;
        }
    }
}

impl EmailSession<'_> {
    /// One composed mail over the session's connection (opened on first use).
    async fn send(&mut self, composed: anyhow::Result<Composed>) -> Delivery {
        if self.in_flight {
            self.conn = None;
        }
        let composed = match composed {
            Ok(c) => c,
            Err(e) => {
                return Delivery::Reject {
                    reason: format!("{e:#}"),
                };
            }
        };
        if composed.remaining.is_empty() {
            // every recipient took it (or refused it) on an earlier try
            return Delivery::Sent {
                rejected: composed.invalid,
            };
        }
        if let Some(reason) = &self.unreachable {
            return Delivery::Unavailable {
                reason: reason.clone(),
            };
        }
        if self.conn.as_ref().is_none_or(|c| c.has_broken()) {
            match self.notifier.open().await {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    let reason = format!("{e:#}");
                    tracing::warn!(server = %self.notifier.server(), error = %reason, "cannot open the SMTP connection");
                    self.unreachable = Some(reason.clone());
                    return Delivery::Unavailable { reason };
                }
            }
        }
        let broke_before = std::mem::take(&mut self.broke);
        self.in_flight = true;
        let mut delivery = self.transact(&composed).await;
        self.in_flight = false;
        if broke_before
            && self.broke
            && let Delivery::Retry { reason, .. } = &delivery
        {
            delivery = Delivery::Unavailable {
                reason: format!("{reason} (twice in a row: the server is not answering)"),
            };
        }
        delivery
    }
}

/// What a chart shows: the last hour.
const CHART_SPAN: Duration = Duration::from_secs(3600);

/// The same mailbox, whatever the case (a duplicate `alarm_targets` row in other capitals).
fn same_address(a: &Address, b: &Address) -> bool {
    AsRef::<str>::as_ref(a).eq_ignore_ascii_case(b.as_ref())
}

/// Every certificate of the PEM file `plugins.email.ca_file`.
fn read_ca_file(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("plugins.email.ca_file: cannot read {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow!(
                "plugins.email.ca_file: {} is not a valid PEM certificate: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        bail!(
            "plugins.email.ca_file: {} holds no PEM certificate",
            path.display()
        );
    }
    Ok(certs)
}
