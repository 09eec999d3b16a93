//! TLS to the director: a private CA from `ca_cert` is trusted, an unknown one is refused, and
//! `insecure_skip_verify` skips the check. The director here is a tiny HTTPS server with the
//! test PKI of scripts/services.sh (wiremock speaks plain HTTP only).

mod common;

use common::{PASSWORD, USER, sync_ctx};
use monit_host::config::secret::Secret;
use monit_host::plugin::{ReportedVm, VmSource};
use monit_plugin_bosh::{BoshConfig, BoshVmSource, DirectorClient};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn pki() -> PathBuf {
    let dir =
        PathBuf::from(std::env::var("MONIT_TEST_PKI").unwrap_or_else(|_| "/var/tmp/ci-pki".into()));
    assert!(
        dir.join("server.pem").is_file(),
        "test PKI missing in {}: run scripts/services.sh",
        dir.display()
    );
    dir
}

fn route(target: &str) -> (u16, &'static str, String) {
    match target {
        "/info" => (
            200,
            "application/json",
            r#"{"name":"micro-bosh","version":"271.2.0","user_authentication":{"type":"basic","options":{}}}"#.into(),
        ),
        "/deployments" => (200, "application/json", r#"[{"name":"paasta","releases":[],"stemcells":[]}]"#.into()),
        "/deployments/paasta/vms?format=full" => (
            200,
            "application/json",
            r#"{"id":5,"state":"done","description":"retrieve vm-stats","result":""}"#.into(),
        ),
        "/tasks/5/output?type=result" => (
            200,
            "text/plain",
            "{\"job_name\":\"cell_z1\",\"index\":0,\"ips\":[\"10.0.16.21\"],\"az\":null}\n".into(),
        ),
        _ => (404, "text/plain", "not found".into()),
    }
}

/// Serves `route` over TLS on localhost; one request per connection.
async fn https_director() -> String {
    let dir = pki();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let authorized = head
                    .lines()
                    .any(|l| l.to_ascii_lowercase().starts_with("authorization: basic "));
                let (status, kind, body) = if target == "/info" || authorized {
                    route(&target)
                } else {
                    (401, "text/plain", "unauthorized".into())
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://localhost:{port}")
}

fn config(url: &str) -> BoshConfig {
    let mut c = BoshConfig::new(url, "paasta");
    c.username = USER.into();
    c.password = Secret::new(PASSWORD);
    c.timeout_seconds = 5;
    c.task_poll_millis = 20;
    c
}

async fn fetch(c: &BoshConfig) -> anyhow::Result<Vec<ReportedVm>> {
    let inv = BoshVmSource::new(c, Arc::new(DirectorClient::new(c)?));
    Ok(inv.fetch(&sync_ctx()).await?.vms)
}

#[tokio::test]
async fn the_configured_ca_is_trusted() {
    let url = https_director().await;
    let mut c = config(&url);
    c.ca_cert = Some(pki().join("ca.pem"));
    let vms = fetch(&c).await.unwrap();
    assert_eq!(vms.len(), 1);
    assert_eq!(vms[0].name, "cell_z1/0");
}

#[tokio::test]
async fn an_unknown_ca_is_refused() {
    let url = https_director().await;
    let err = fetch(&config(&url)).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("/info")
            && msg.contains("UnknownIssuer")
            && msg.contains("set plugins.bosh.ca_cert"),
        "{msg}"
    );
}

#[tokio::test]
async fn insecure_skip_verify_skips_the_check() {
    let url = https_director().await;
    let mut c = config(&url);
    c.insecure_skip_verify = true;
    assert_eq!(fetch(&c).await.unwrap().len(), 1);
}

#[test]
fn a_bad_ca_file_is_a_config_error() {
    let mut c = config("https://localhost:1");
    c.ca_cert = Some(PathBuf::from("/nonexistent/ca.pem"));
    let msg = format!("{:#}", DirectorClient::new(&c).err().unwrap());
    assert!(
        msg.contains("plugins.bosh.ca_cert") && msg.contains("/nonexistent/ca.pem"),
        "{msg}"
    );

    let dir = std::env::temp_dir().join(format!("monit-bosh-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    c.ca_cert = Some(not_pem);
    let msg = format!("{:#}", DirectorClient::new(&c).err().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(msg.contains("plugins.bosh.ca_cert"), "{msg}");
}
