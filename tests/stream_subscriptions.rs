//! `stream.subscribe`: the InfluxDB subscription the batch keeps, through the binary, against
//! the real InfluxDB 1.6. Each test works on its own databases (TestEnv's), which it drops, and
//! looks only at the subscriptions on them: other tests share the server.

mod common;

use common::*;
use std::io::{BufRead as _, BufReader, Write as _};
use std::time::{Duration, Instant};

const PASSWORD: &str = "s3cret-Str3am-pw";

fn stream_section(advertise: &str) -> String {
    format!(
        "[plugins.paasta]\nenabled = true\n[plugins.container]\nenabled = true\n\
         [stream]\nsubscribe = true\nadvertise_url = \"{advertise}\"\nusername = \"influx\"\n\
         password = \"{PASSWORD}\"\n"
    )
}

/// (db, rp, name, mode, destinations) on the test's own databases, sorted.
type Sub = (String, String, String, String, Vec<String>);

async fn influx(env: &TestEnv, q: &str) -> serde_json::Value {
    let r = reqwest::Client::new()
        .post(format!("{}/query", env.influx))
        .form(&[("q", q)])
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["results"][0].get("error").is_none(),
        "{q}: {}",
        v["results"][0]
    );
    v
}

async fn subscriptions(env: &TestEnv) -> Vec<Sub> {
    let v = influx(env, "SHOW SUBSCRIPTIONS").await;
    let ours = [&env.cf_db, &env.bosh_db, &env.container_db];
    let mut out = Vec::new();
    for s in v["results"][0]["series"].as_array().into_iter().flatten() {
        let db = s["name"].as_str().unwrap().to_string();
        if !ours.contains(&&db) {
            continue;
        }
        for row in s["values"].as_array().unwrap() {
            out.push((
                db.clone(),
                row[0].as_str().unwrap().to_string(),
                row[1].as_str().unwrap().to_string(),
                row[2].as_str().unwrap().to_string(),
                row[3]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_str().unwrap().to_string())
                    .collect(),
            ));
        }
    }
    out.sort();
    out
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn expect_ok(out: &std::process::Output) -> String {
    let text = output_text(out);
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains(PASSWORD),
        "the stream password was printed:\n{text}"
    );
    text
}

fn set_config(env: &TestEnv, from: &str, to: &str) {
    let text = std::fs::read_to_string(&env.config).unwrap();
    assert!(text.contains(from), "{from} not in the config");
    std::fs::write(&env.config, text.replacen(from, to, 1)).unwrap();
}

fn ours(env: &TestEnv, name: &str, destination: &str) -> Vec<Sub> {
    let mut v: Vec<Sub> = [&env.cf_db, &env.container_db]
        .into_iter()
        .map(|db| {
            (
                db.clone(),
                "autogen".into(),
                name.into(),
                "ALL".into(),
                vec![destination.into()],
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn run_creates_exactly_our_subscription_only_when_asked() {
    let port = free_port();
    let env = TestEnv::new(
        "subs_create",
        &stream_section(&format!("http://127.0.0.1:{port}")),
    )
    .await;
    // off: nothing on InfluxDB
    set_config(&env, "subscribe = true", "subscribe = false");
    expect_ok(&env.run_once());
    assert_eq!(subscriptions(&env).await, vec![]);

    set_config(&env, "subscribe = false", "subscribe = true");
    expect_ok(&env.run_once());
    let want = ours(
        &env,
        "monit_batch_e2e",
        &format!("http://influx:{PASSWORD}@127.0.0.1:{port}"),
    );
    assert_eq!(subscriptions(&env).await, want);
    // idempotent: a second start keeps it as it is
    expect_ok(&env.run_once());
    assert_eq!(subscriptions(&env).await, want);

    // the long-running `run` does the same at start
    influx(
        &env,
        &format!(
            "DROP SUBSCRIPTION \"monit_batch_e2e\" ON \"{}\".\"autogen\"",
            env.cf_db
        ),
    )
    .await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(&env.config)
        .arg("run")
        .env_remove("PORT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while subscriptions(&env).await != want && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(text.contains("InfluxDB subscription created"), "{text}");
    assert_eq!(subscriptions(&env).await, want);
    env.cleanup().await;
}

#[tokio::test]
async fn a_restart_replaces_our_stale_subscription_and_leaves_foreign_ones() {
    let env = TestEnv::new("subs_replace", &stream_section("http://127.0.0.1:1111")).await;
    let foreign = "http://kapacitor:k-secret@127.0.0.1:9092";
    influx(
        &env,
        &format!(
            "CREATE SUBSCRIPTION \"kapacitor_1\" ON \"{}\".\"autogen\" DESTINATIONS ANY '{foreign}'",
            env.cf_db
        ),
    )
    .await;
    // our name on a database no collector of ours reads: another deployment's (the bosh
    // plugin is off here), never ours to drop
    let elsewhere = "http://other:o-secret@127.0.0.1:7777";
    influx(
        &env,
        &format!(
            "CREATE SUBSCRIPTION \"monit_batch_e2e\" ON \"{}\".\"autogen\" DESTINATIONS ALL '{elsewhere}'",
            env.bosh_db
        ),
    )
    .await;
    expect_ok(&env.run_once());
    set_config(&env, "127.0.0.1:1111", "127.0.0.1:2222/batch");
    let text = expect_ok(&env.run_once());
    assert!(text.contains("InfluxDB subscription replaced"), "{text}");
    let mut want = ours(
        &env,
        "monit_batch_e2e",
        &format!("http://influx:{PASSWORD}@127.0.0.1:2222/batch"),
    );
    want.push((
        env.cf_db.clone(),
        "autogen".into(),
        "kapacitor_1".into(),
        "ANY".into(),
        vec![foreign.into()],
    ));
    want.push((
        env.bosh_db.clone(),
        "autogen".into(),
        "monit_batch_e2e".into(),
        "ALL".into(),
        vec![elsewhere.into()],
    ));
    want.sort();
    assert_eq!(subscriptions(&env).await, want);
    env.cleanup().await;
}

#[tokio::test]
async fn two_instances_each_keep_their_own() {
    let env = TestEnv::new("subs_two", &stream_section("http://127.0.0.1:1111")).await;
    expect_ok(&env.run_once());
    // the second instance: another name and endpoint, same config otherwise
    set_config(
        &env,
        "instance_name = \"e2e\"",
        "instance_name = \"e2e-B.dc1\"",
    );
    set_config(&env, "127.0.0.1:1111", "127.0.0.1:2222");
    expect_ok(&env.run_once());
    // the first starts again: the second's stays
    set_config(
        &env,
        "instance_name = \"e2e-B.dc1\"",
        "instance_name = \"e2e\"",
    );
    set_config(&env, "127.0.0.1:2222", "127.0.0.1:1111");
    expect_ok(&env.run_once());
    let mut want = ours(
        &env,
        "monit_batch_e2e",
        &format!("http://influx:{PASSWORD}@127.0.0.1:1111"),
    );
    want.extend(ours(
        &env,
        "monit_batch_e2e_b_dc1",
        &format!("http://influx:{PASSWORD}@127.0.0.1:2222"),
    ));
    want.sort();
    assert_eq!(subscriptions(&env).await, want);
    env.cleanup().await;
}

#[tokio::test]
async fn the_cli_lists_masked_and_removes() {
    let env = TestEnv::new("subs_cli", &stream_section("http://127.0.0.1:1111")).await;
    influx(
        &env,
        &format!(
            "CREATE SUBSCRIPTION \"kapacitor_1\" ON \"{}\".\"autogen\" DESTINATIONS ANY 'http://kapacitor:k-secret@127.0.0.1:9092'",
            env.cf_db
        ),
    )
    .await;
    expect_ok(&env.run_once());
    let text = expect_ok(&env.run(&["stream", "subscriptions"]));
    assert!(!text.contains("k-secret"), "{text}");
    let line = |name: &str, db: &str| {
        text.lines()
            .find(|l| l.contains(name) && l.contains(db))
            .unwrap_or_else(|| panic!("no line for {name} on {db}:\n{text}"))
            .to_string()
    };
    let mine = line("monit_batch_e2e", &env.cf_db);
    assert!(mine.starts_with("ours"), "{mine}");
    assert!(mine.contains("http://influx:***@127.0.0.1:1111"), "{mine}");
    let theirs = line("kapacitor_1", &env.cf_db);
    assert!(!theirs.starts_with("ours"), "{theirs}");
    assert!(
        theirs.contains("http://kapacitor:***@127.0.0.1:9092"),
        "{theirs}"
    );
    let json = expect_ok(&env.run(&["stream", "subscriptions", "--json"]));
    assert!(!json.contains("k-secret"), "{json}");

    // removing a name that is not there is an error naming it
    let out = env.run(&["stream", "subscriptions", "--remove", "no_such_sub"]);
    assert!(!out.status.success());
    assert!(output_text(&out).contains("no_such_sub"));

    expect_ok(&env.run(&["stream", "subscriptions", "--remove-ours"]));
    let left = subscriptions(&env).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].2, "kapacitor_1");
    // --db: the same name on the other tests' databases stays
    expect_ok(&env.run(&[
        "stream",
        "subscriptions",
        "--remove",
        "kapacitor_1",
        "--db",
        &env.cf_db,
    ]));
    assert_eq!(subscriptions(&env).await, vec![]);
    env.cleanup().await;
}

#[tokio::test]
async fn subscribe_without_advertise_url_is_a_clear_error() {
    let env = TestEnv::new(
        "subs_nourl",
        "[plugins.paasta]\nenabled = true\n[stream]\nsubscribe = true\nusername = \"influx\"\n\
         password = \"pw\"\n",
    )
    .await;
    for args in [&["run", "--once"][..], &["check-config"][..]] {
        let out = env.run(args);
        assert!(!out.status.success(), "{args:?}");
        let text = output_text(&out);
        assert!(text.contains("stream.advertise_url"), "{args:?}: {text}");
        assert!(!text.contains("panicked"), "{text}");
    }
    // userinfo in the URL is refused, and not shown
    set_config(
        &env,
        "subscribe = true",
        "subscribe = true\nadvertise_url = \"http://u:hunter2@127.0.0.1:1\"",
    );
    let out = env.run(&["run", "--once"]);
    let text = output_text(&out);
    assert!(!out.status.success());
    assert!(
        text.contains("stream.username") && !text.contains("hunter2"),
        "{text}"
    );
    assert_eq!(subscriptions(&env).await, vec![]);
    env.cleanup().await;
}

/// One HTTP request as the listener saw it: the request line and the Authorization header.
fn accept_one(listener: std::net::TcpListener, within: Duration) -> Option<(String, String)> {
    listener.set_nonblocking(true).unwrap();
    let start = Instant::now();
    while start.elapsed() < within {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                let mut auth = String::new();
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                    if k.eq_ignore_ascii_case("authorization") {
                        auth = v.trim().to_string();
                    }
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                let mut s = stream;
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
                return Some((request.trim().to_string(), auth));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    None
}

#[tokio::test]
async fn influxdb_posts_the_writes_to_the_advertised_url() {
    use base64::Engine as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let env = TestEnv::new(
        "subs_post",
        &stream_section(&format!("http://127.0.0.1:{port}")),
    )
    .await;
    expect_ok(&env.run_once());
    let got = std::thread::spawn(move || accept_one(listener, Duration::from_secs(30)));
    // InfluxDB picks a new subscription up on its next metadata change: write until it posts
    let start = Instant::now();
    while !got.is_finished() && start.elapsed() < Duration::from_secs(30) {
        env.write_points(
            &env.cf_db,
            &TestEnv::cf_series("10.0.0.9", "cpu", 0, |_| 1.0),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (request, auth) = got
        .join()
        .unwrap()
        .expect("InfluxDB posted no write to the advertised URL");
    assert!(request.starts_with("POST /write?"), "{request}");
    assert!(request.contains(&format!("db={}", env.cf_db)), "{request}");
    assert!(request.contains("rp=autogen"), "{request}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("influx:{PASSWORD}"));
    assert_eq!(auth, format!("Basic {basic}"));
    env.cleanup().await;
}
