//! `[plugins.alertmanager]` as the host hands it over (TOML file and environment), the checks
//! the notifier makes before the first tick, and that no secret shows in Debug or check-config.

use monit_host::config::secret::Secret;
use monit_host::plugin::{PluginContext, find_plugin};
use monit_plugin_alertmanager::{AlertmanagerConfig, AlertmanagerNotifier};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn parse(toml: &str) -> anyhow::Result<AlertmanagerConfig> {
    Ok(config::Config::builder()
        .add_source(config::File::from_str(toml, config::FileFormat::Toml))
        .build()?
        .get::<AlertmanagerConfig>("plugins.alertmanager")?)
}

fn build(c: AlertmanagerConfig) -> anyhow::Result<AlertmanagerNotifier> {
    AlertmanagerNotifier::new(c, Duration::from_secs(300))
}

fn err(c: AlertmanagerConfig) -> String {
    format!("{:#}", build(c).unwrap_err())
}

const BASE: &str = "[plugins.alertmanager]\nurl = \"https://am.example:9093\"\n";

#[test]
fn the_sample_parses_and_documents_every_field() {
    let sample =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sample.toml")).unwrap();
    let c = parse(&sample).unwrap();
    assert!(c.enabled);
    assert_eq!(c.url, ["https://alertmanager.example:9093"]);
    assert_eq!((c.timeout_seconds, c.retry_max_times), (5, 2));
    for key in [
        "enabled",
        "url",
        "timeout_seconds",
        "retry_max_times",
        "user",
        "password",
        "bearer_token",
        "ca_file",
        "insecure_skip_verify",
    ] {
        assert!(
            sample.contains(&format!("\n{key} =")) || sample.contains(&format!("\n# {key} =")),
            "sample.toml does not document {key}"
        );
    }
    assert!(sample.contains("[plugins.alertmanager.headers]"));
    assert!(sample.contains("[plugins.alertmanager.labels]"));
    build(c).unwrap();
}

#[test]
fn defaults_and_one_url_or_several() {
    let c = parse(BASE).unwrap();
    assert!(!c.enabled);
    assert_eq!((c.timeout_seconds, c.retry_max_times), (5, 2));
    assert!(c.user.is_none() && c.password.is_empty() && c.bearer_token.is_empty());
    assert!(c.headers.is_empty() && c.labels.is_empty() && c.ca_file.is_none());
    assert!(!c.insecure_skip_verify);
    let c = parse(
        "[plugins.alertmanager]\nurl = [\"http://a.example:9093\", \"http://b.example:9093\"]\n",
    )
    .unwrap();
    let n = build(c).unwrap();
    assert_eq!(
        n.url_labels(),
        [
            "url[0] http://a.example:9093/…",
            "url[1] http://b.example:9093/…"
        ]
    );
}

#[test]
fn unknown_keys_and_a_missing_url_are_rejected_by_name() {
    let e = parse(&format!("{BASE}resolve_timeout = 3\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("resolve_timeout"), "{e}");
    let e = parse("[plugins.alertmanager]\nenabled = true\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("url"), "{e}");
}

#[test]
fn the_notifier_checks_urls_numbers_labels_and_files() {
    let e = err(AlertmanagerConfig {
        url: vec![],
        ..AlertmanagerConfig::new("x")
    });
    assert!(e.contains("plugins.alertmanager.url is empty"), "{e}");

    let e = err(AlertmanagerConfig::new("alertmanager.example:9093"));
    assert!(e.contains("plugins.alertmanager.url[0]"), "{e}");

    let mut c = AlertmanagerConfig::new("http://am.example:9093");
    c.url.push("http://am.example:9093/api/v2/alerts".into());
    assert!(err(c).contains("url[1] repeats url[0]"));

    let mut c = AlertmanagerConfig::new("http://am.example:9093");
    c.timeout_seconds = 0;
    assert!(err(c).contains("plugins.alertmanager.timeout_seconds = 0 is out of range"));
    let mut c = AlertmanagerConfig::new("http://am.example:9093");
    c.retry_max_times = 21;
    assert!(err(c).contains("plugins.alertmanager.retry_max_times = 21 is out of range"));

    for (name, value, says) in [
        ("2fast", "x", "not a label name"),
        ("__meta", "x", "not a label name"),
        ("with-dash", "x", "not a label name"),
        ("level", "x", "sets this label from the alarm"),
        ("vm", "x", "sets this label from the alarm"),
        ("platform", " ", "is empty"),
    ] {
        let mut c = AlertmanagerConfig::new("http://am.example:9093");
        c.labels.insert(name.into(), value.into());
        let e = err(c);
        assert!(
            e.contains(&format!("plugins.alertmanager.labels.{name}")) && e.contains(says),
            "{name}: {e}"
        );
    }
    let mut c = AlertmanagerConfig::new("http://am.example:9093");
    for i in 0..21 {
        c.labels.insert(format!("l{i}"), "x".into());
    }
    assert!(err(c).contains("21 labels, at most 20"));

    let mut c = AlertmanagerConfig::new("https://am.example:9093");
    c.ca_file = Some("/nonexistent/ca.pem".into());
    let e = err(c);
    assert!(
        e.contains("plugins.alertmanager.ca_file: cannot read /nonexistent/ca.pem"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let mut c = AlertmanagerConfig::new("https://am.example:9093");
    c.ca_file = Some(not_pem);
    assert!(err(c).contains("holds no PEM certificate"));

    let mut c = AlertmanagerConfig::new("http://am.example:9093");
    c.bearer_token = Secret::new("tok-S3cret");
    c.headers
        .insert("Authorization".into(), Secret::new("Bearer hdr-S3cret"));
    let e = err(c);
    assert!(e.contains("headers.Authorization"), "{e}");
    assert!(!e.contains("S3cret"), "{e}");
}

#[test]
fn debug_shows_no_secret() {
    let c = parse(
        "[plugins.alertmanager]\nurl = \"https://ops:url-S3cret@am.example:9093\"\nuser = \"monit\"\n\
         password = \"pw-S3cret\"\nbearer_token = \"tok-S3cret\"\n\
         [plugins.alertmanager.headers]\nX-Scope-OrgID = \"hdr-S3cret\"\n",
    )
    .unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("S3cret"), "{debug}");
    assert!(debug.contains("https://ops:***@am.example:9093"), "{debug}");
    let n = build(c).unwrap();
    let debug = format!("{n:?}");
    assert!(!debug.contains("S3cret"), "{debug}");
    assert!(debug.contains("bearer"), "{debug}");
}

/// The registered plugin, built from settings as the host loads them: a TOML file, and the
/// environment supplying the URL and the password.
#[test]
fn the_registered_plugin_builds_from_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("monit.toml");
    std::fs::write(
        &file,
        "[monitoring_db]\ndbname = \"monit\"\n[batch]\ninterval_seconds = 120\n\
         [plugins.alertmanager]\nenabled = true\nurl = \"https://a.example:9093\"\nuser = \"monit\"\n\
         [plugins.alertmanager.labels]\nplatform = \"lab\"\n",
    )
    .unwrap();
    let env = HashMap::from([
        (
            "MONIT_BATCH__PLUGINS__ALERTMANAGER__URL".to_string(),
            "https://b.example:9093".to_string(),
        ),
        (
            "MONIT_BATCH__PLUGINS__ALERTMANAGER__PASSWORD".to_string(),
            "from-env".to_string(),
        ),
    ]);
    let settings = monit_host::plugin::load_settings_with_env(Some(&file), env).unwrap();
    let ctx = PluginContext {
        name: "alertmanager",
        settings: Arc::new(settings),
    };
    let c: AlertmanagerConfig = ctx.plugin_config().unwrap();
    assert!(c.enabled);
    assert_eq!(c.url, ["https://b.example:9093"]);
    assert_eq!(c.password.expose(), "from-env");
    assert_eq!(c.labels["platform"], "lab");

    let registration = find_plugin("alertmanager").expect("the plugin is registered");
    let parts = (registration.build)(&ctx).unwrap();
    let notifier = parts.notifier.expect("a notifier");
    assert!(notifier.restates_firing());
    assert!(parts.collector.is_none() && parts.scaler.is_none() && parts.vm_source.is_none());
}

/// check-config shows the section through `AlertmanagerConfig`: the password, the token and
/// header values masked, a password in the URL masked; the rest as configured.
#[test]
fn the_effective_config_masks_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.toml");
    std::fs::write(
        &p,
        "[monitoring_db]\ndbname = \"monit\"\n\
         [plugins.alertmanager]\nenabled = false\nurl = \"https://ops:Url-pw1@am.example:9093\"\n\
         user = \"monit\"\npassword = \"Pw-value1\"\nbearer_token = \"Tok-value1\"\n\
         [plugins.alertmanager.headers]\nX-Scope-OrgID = \"Hdr-value1\"\n",
    )
    .unwrap();
    let s = monit_host::plugin::load_settings_with_env(Some(&p), HashMap::new()).unwrap();
    let shown = monit_host::plugin::masked_settings(&s);
    let text = serde_json::to_string(&shown).unwrap();
    for secret in ["Url-pw1", "Pw-value1", "Tok-value1", "Hdr-value1"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let a = &shown["plugins"]["alertmanager"];
    assert_eq!(a["url"][0], "https://ops:***@am.example:9093");
    assert_eq!(a["user"], "monit");
    assert_eq!(a["password"], "***");
    assert_eq!(a["headers"]["X-Scope-OrgID"], "***");
    assert_eq!(a["timeout_seconds"], 5, "defaults filled in");
}
