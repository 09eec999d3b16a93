//! The InfluxDB client against real influxd instances with authentication and with TLS.

mod common;

use common::PrivateInflux;
use monit_host::config::InfluxSettings;
use monit_host::config::secret::Secret;
use monit_host::metric_store::influx::InfluxClient;

fn pki() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var("MONIT_PKI").unwrap_or_else(|_| "/var/tmp/ci-pki".into()),
    )
}

#[tokio::test]
async fn basic_auth_works_and_a_wrong_password_is_a_clear_error_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let influx =
        PrivateInflux::start_with(dir.path(), &[("INFLUXDB_HTTP_AUTH_ENABLED", "true".into())]);
    // the first admin user may be created without credentials
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/query", influx.url()))
        .form(&[(
            "q",
            "CREATE USER monit WITH PASSWORD 'Right-pw-1' WITH ALL PRIVILEGES",
        )])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let mut s = InfluxSettings {
        url: influx.url(),
        user: Some("monit".into()),
        password: Secret::new("Right-pw-1"),
        ..Default::default()
    };
    let c = InfluxClient::new(&s).unwrap();
    c.query("", "CREATE DATABASE authdb").await.unwrap();
    c.write("authdb", "m,ip=1.2.3.4 value=1 1700000000")
        .await
        .unwrap();
    let series = c.query("authdb", "SELECT value FROM m").await.unwrap();
    assert_eq!(series.len(), 1);

    s.password = Secret::new("Wrong-pw-2");
    let c = InfluxClient::new(&s).unwrap();
    let e = c
        .query("authdb", "SELECT value FROM m")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&influx.url()) && e.contains("401"), "{e}");
    assert!(
        !e.contains("Wrong-pw-2") && !format!("{c:?}").contains("Wrong-pw-2"),
        "{e}"
    );

    // credentials in the URL are the login, and no error shows them
    let port = url::Url::parse(&influx.url()).unwrap().port().unwrap();
    let in_url = |pw: &str| InfluxSettings {
        url: format!("http://monit:{pw}@127.0.0.1:{port}"),
        ..Default::default()
    };
    let c = InfluxClient::new(&in_url("Right-pw-1")).unwrap();
    assert_eq!(c.url(), influx.url());
    assert_eq!(
        c.query("authdb", "SELECT value FROM m")
            .await
            .unwrap()
            .len(),
        1
    );
    let c = InfluxClient::new(&in_url("Wrong-pw-3")).unwrap();
    let e = c
        .query("authdb", "SELECT value FROM m")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("401") && e.contains(&influx.url()), "{e}");
    assert!(
        !e.contains("Wrong-pw-3") && !format!("{c:?}").contains("Wrong-pw-3"),
        "{e}"
    );
}

#[tokio::test]
async fn an_answer_over_max_answer_bytes_is_an_error_naming_the_key() {
    let url = common::influx_url();
    let db = common::unique("limit");
    monit_testkit::create_influx_db(&url, &db).await;
    let mut s = InfluxSettings {
        url: url.clone(),
        ..Default::default()
    };
    let c = InfluxClient::new(&s).unwrap();
    let points: String = (0..2_000)
        .map(|i| format!("m,ip=127.0.0.{} value={i} {}\n", i % 250, 1_700_000_000 + i))
        .collect();
    c.write(&db, &points).await.unwrap();
    // within the default limit: the whole answer
    let rows: usize = c
        .query(&db, "SELECT value FROM m")
        .await
        .unwrap()
        .iter()
        .map(|s| s.values.len())
        .sum();
    assert_eq!(rows, 2_000);
    // over a limit of 4 KiB (InfluxDB streams this answer chunked, without a length)
    s.max_answer_bytes = 4096;
    let c = InfluxClient::new(&s).unwrap();
    let e = c
        .query(&db, "SELECT value FROM m")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("influx.max_answer_bytes = 4096") && e.contains(&format!("{url}/query")),
        "{e}"
    );
    let _ = monit_testkit::try_drop_influx_db(&url, &db).await;
}

#[tokio::test]
async fn tls_with_a_private_ca_file_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let influx = PrivateInflux::start_with(
        dir.path(),
        &[
            ("INFLUXDB_HTTP_HTTPS_ENABLED", "true".into()),
            (
                "INFLUXDB_HTTP_HTTPS_CERTIFICATE",
                pki().join("server.pem").display().to_string(),
            ),
            (
                "INFLUXDB_HTTP_HTTPS_PRIVATE_KEY",
                pki().join("server.key").display().to_string(),
            ),
        ],
    );
    let url = influx.url().replace("http://", "https://");
    let trusted = InfluxSettings {
        url: url.clone(),
        ca_file: Some(pki().join("ca.pem")),
        ..Default::default()
    };
    let c = InfluxClient::new(&trusted).unwrap();
    c.query("", "CREATE DATABASE tlsdb").await.unwrap();
    assert!(c.query("tlsdb", "SHOW MEASUREMENTS").await.is_ok());

    let untrusted = InfluxSettings {
        url: url.clone(),
        ..Default::default()
    };
    let e = InfluxClient::new(&untrusted)
        .unwrap()
        .query("tlsdb", "SHOW MEASUREMENTS")
        .await
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains(&url), "{msg}");

    let missing = InfluxSettings {
        url,
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..Default::default()
    };
    let e = InfluxClient::new(&missing).unwrap_err().to_string();
    assert!(
        e.contains("influx.ca_file") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );
}
