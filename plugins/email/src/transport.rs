//! The stream lettre talks SMTP over, opened here rather than by lettre.
//!
//! lettre 0.11 (through 0.11.23) leaves Nagle's algorithm on, and writes a mail's body and its
//! closing `\r\n.\r\n` as two writes: the small second write then waits for the server's delayed
//! ACK of the first, about 40 ms per mail. Opening the socket ourselves lets us set TCP_NODELAY,
//! and `AsyncSmtpConnection::connect_with_transport` takes the stream as it is. lettre can only
//! upgrade a stream after STARTTLS, so implicit TLS is done here, with tokio-rustls and the same
//! rustls set-up lettre uses (aws-lc-rs, TLS 1.2 and 1.3, the webpki roots plus `ca_file`).

use anyhow::anyhow;
use lettre::transport::smtp::client::AsyncTokioStream;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Connects to `host:port` (every resolved address in turn) and turns Nagle off. Returns whether
/// the socket reports TCP_NODELAY as set; failing to set it only costs speed, so it is not an
/// error.
pub(crate) async fn connect_nodelay(host: &str, port: u16) -> io::Result<(TcpStream, bool)> {
    let tcp = TcpStream::connect((host, port)).await?;
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::warn!(server = %format!("{host}:{port}"), error = %e,
            "cannot set TCP_NODELAY on the SMTP connection; every mail will wait for a delayed ACK");
    }
    let nodelay = tcp.nodelay().unwrap_or(false);
    Ok((tcp, nodelay))
}

/// Client side of implicit TLS (SMTPS) for one server name.
#[derive(Clone)]
pub(crate) struct ImplicitTls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl ImplicitTls {
    /// `host` is the name (or IP) the server's certificate must carry; `extra_roots` (from
    /// `plugins.email.ca_file`) are trusted besides the webpki roots.
    pub(crate) fn new(host: &str, extra_roots: &[CertificateDer<'static>]) -> anyhow::Result<Self> {
        let server_name = ServerName::try_from(host.to_string()).map_err(|_| {
            anyhow!(
                "plugins.email.smtp_host = {host:?} is not a valid DNS name or IP address for TLS"
            )
        })?;
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in extra_roots {
            roots
                .add(cert.clone())
                .map_err(|e| anyhow!("plugins.email.ca_file: cannot trust its certificate: {e}"))?;
        }
        // As lettre picks it: a process-wide provider if one was installed, else aws-lc-rs.
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| anyhow!("plugins.email: cannot set up TLS for {host}: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    pub(crate) async fn handshake(&self, tcp: TcpStream) -> io::Result<TlsTcpStream> {
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await?;
        Ok(TlsTcpStream(tls))
    }
}

impl fmt::Debug for ImplicitTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImplicitTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// A TLS session over TCP, in the shape lettre accepts as an existing stream.
#[derive(Debug)]
pub(crate) struct TlsTcpStream(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for TlsTcpStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for TlsTcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
