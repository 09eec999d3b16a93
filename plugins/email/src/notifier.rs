//! Sends a batch of notifications over one SMTP connection.

use crate::config::{EmailConfig, Security};
use crate::render::{self, header_safe};
use crate::transport::{self, ImplicitTls};
use anyhow::{Context as _, anyhow, bail};
use async_trait::async_trait;
use chrono::FixedOffset;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, Message};
use monit_host::plugin::{Notification, Notifier};
use monit_host::secret::Secret;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
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

    /// The complete message of one notification: envelope and RFC 5322 bytes.
    pub fn compose(&self, n: &Notification) -> anyhow::Result<Message> {
        let recipients = self.recipients(n)?;
        let mail = render::render(n, self.display_offset);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(header_safe(&mail.subject))
            .message_id(None);
        for to in recipients {
            builder = builder.to(Mailbox::new(None, to));
        }
        builder
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
            .with_context(|| format!("cannot build the mail of notification {}", n.id))
    }

    /// Every distinct valid address of the notification. Invalid ones are logged and skipped, so
    /// one bad `alarm_targets` row does not hold back the mail to the others.
    fn recipients(&self, n: &Notification) -> anyhow::Result<Vec<Address>> {
        let origin = n.origin.code();
        let mut out: Vec<Address> = Vec::new();
        let mut invalid = Vec::new();
        for raw in &n.recipients {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            match raw.parse::<Address>() {
                Ok(a) if !out.iter().any(|o| same_address(o, &a)) => out.push(a),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(notification = n.id, origin, address = %raw.escape_debug(), error = %e,
                        "alarm_targets.mail_address is not a valid e-mail address; skipped");
                    invalid.push(raw.escape_debug().to_string());
                }
            }
        }
        if out.is_empty() {
            if invalid.is_empty() {
                bail!(
                    "no mail recipients for origin {origin}: add alarm_targets rows for origin {origin} \
                     (origin_type = '{origin}', mail_address, mail_send_yn = 'Y')"
                );
            }
            bail!(
                "no valid mail recipient for origin {origin} (invalid: {}): fix the alarm_targets rows for origin {origin}",
                invalid.join(", ")
            );
        }
        Ok(out)
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

    /// Sends one mail on the open connection. A timeout drops the connection (closing the
    /// socket) rather than sending QUIT to a server that already stopped answering.
    async fn deliver(
        &self,
        slot: &mut Option<AsyncSmtpConnection>,
        message: &Message,
    ) -> anyhow::Result<()> {
        let Some(conn) = slot.as_mut() else {
            bail!("SMTP server {}: no open connection", self.server());
        };
        let bytes = message.formatted();
        match tokio::time::timeout(self.timeout, conn.send(message.envelope(), &bytes)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(anyhow!("SMTP server {}: mail not sent: {e}", self.server())),
            Err(_) => {
                *slot = None;
                Err(anyhow!(
                    "SMTP server {}: sending timed out after {} s (plugins.email.timeout_seconds)",
                    self.server(),
                    self.timeout.as_secs()
                ))
            }
        }
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    async fn send(&self, batch: &[Notification]) -> Vec<anyhow::Result<()>> {
        let mut results: Vec<anyhow::Result<()>> = Vec::with_capacity(batch.len());
        let mut conn: Option<AsyncSmtpConnection> = None;
        // Once the server cannot be reached, the rest of the batch gets the same error at once.
        let mut unreachable: Option<String> = None;
        for n in batch {
            let message = match self.compose(n) {
                Ok(m) => m,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            if let Some(why) = &unreachable {
                results.push(Err(anyhow!("{why}")));
                continue;
            }
            if conn.as_ref().is_none_or(|c| c.has_broken()) {
                match self.open().await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        let why = format!("{e:#}");
                        tracing::warn!(server = %self.server(), error = %why, "cannot open the SMTP connection");
                        unreachable = Some(why.clone());
                        results.push(Err(anyhow!(why)));
                        continue;
                    }
                }
            }
            let sent = self.deliver(&mut conn, &message).await;
            match &sent {
                Ok(()) => tracing::info!(
                    notification = n.id,
                    alarm = n.alarm_id,
                    kind = n.kind.code(),
                    recipients = message.envelope().to().len(),
                    "alarm mail sent"
                ),
                Err(e) => {
                    tracing::warn!(notification = n.id, alarm = n.alarm_id, error = %format!("{e:#}"), "alarm mail not sent")
                }
            }
            results.push(sent);
        }
        if let Some(mut c) = conn
            && !c.has_broken()
        {
            // Every mail is already accepted; a failed QUIT changes nothing.
            let _ = tokio::time::timeout(self.timeout, c.quit()).await;
        }
        results
    }
}

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
