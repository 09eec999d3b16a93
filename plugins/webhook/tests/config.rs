//! `[plugins.webhook]` as the host hands it over (TOML file and environment), and the checks the
//! notifier makes before the first tick.

use monit_host::plugin::{PluginContext, find_plugin};
use monit_plugin_webhook::{Format, WebhookConfig, WebhookNotifier};
use std::collections::HashMap;
use std::sync::Arc;

fn parse(toml: &str) -> anyhow::Result<WebhookConfig> {
    Ok(config::Config::builder()
        .add_source(config::File::from_str(toml, config::FileFormat::Toml))
        .build()?
        .get::<WebhookConfig>("plugins.webhook")?)
}

const BASE: &str = "[plugins.webhook]\nurls = [\"https://alerts.example.org/hooks/monit\"]\n";

#[test]
fn the_sample_parses_and_documents_every_field() {
    let sample =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sample.toml")).unwrap();
    let c = parse(&sample).unwrap();
    assert!(c.enabled);
    assert_eq!(c.format, Format::Json);
    assert_eq!((c.timeout_seconds, c.retry_max_times), (5, 2));
    assert_eq!(c.urls, ["https://alerts.example/hooks/monit"]);
    for key in [
        "enabled",
        "urls",
        "format",
        "timeout_seconds",
        "retry_max_times",
    ] {
        assert!(
            sample.contains(&format!("\n{key} =")),
            "sample.toml does not document {key}"
        );
    }
    assert!(sample.contains("[plugins.webhook.headers]"));
    WebhookNotifier::new(c).unwrap();
}

#[test]
fn defaults() {
    let c = parse(BASE).unwrap();
    assert!(!c.enabled);
    assert_eq!(c.format, Format::Json);
    assert_eq!((c.timeout_seconds, c.retry_max_times), (5, 2));
    assert!(c.headers.is_empty());
    let c = parse(&format!("{BASE}format = \"Slack\"\n")).unwrap();
    assert_eq!(c.format, Format::Slack);
}

#[test]
fn unknown_keys_and_bad_values_are_rejected_by_name() {
    let e = parse(&format!("{BASE}timeout = 3\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("timeout"), "{e}");
    let e = parse(&format!("{BASE}format = \"xml\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("xml") && e.contains("slack"), "{e}");
    let e = parse("[plugins.webhook]\nenabled = true\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("urls"), "{e}");
    let e = parse("[plugins.webhook]\nurls = 5\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("list of URLs"), "{e}");
}

#[test]
fn the_notifier_checks_urls_timeout_and_headers() {
    let err = |c: WebhookConfig| format!("{:#}", WebhookNotifier::new(c).unwrap_err());

    let e = err(WebhookConfig::new(Vec::<String>::new()));
    assert!(e.contains("plugins.webhook.urls is empty"), "{e}");

    let e = err(WebhookConfig::new([
        "https://a.example.org/x",
        "hooks.example.org/x",
    ]));
    assert!(
        e.contains("plugins.webhook.urls[1] is not a valid URL"),
        "{e}"
    );

    let e = err(WebhookConfig::new(["ftp://files.example.org/in"]));
    assert!(
        e.contains("plugins.webhook.urls[0]") && e.contains("\"ftp\""),
        "{e}"
    );

    let e = err(WebhookConfig::new([
        "https://a.example.org/x",
        "https://b.example.org/",
        "https://a.example.org/x",
    ]));
    assert!(e.contains("urls[2] repeats urls[0]"), "{e}");

    let mut c = WebhookConfig::new(["https://a.example.org/x"]);
    c.timeout_seconds = 0;
    assert!(err(c).contains("plugins.webhook.timeout_seconds"));

    let mut c = WebhookConfig::new(["https://a.example.org/x"]);
    c.headers.insert(
        "Bad Name".into(),
        monit_host::config::secret::Secret::new("v"),
    );
    let e = err(c);
    assert!(
        e.contains("\"Bad Name\" is not a valid HTTP header name"),
        "{e}"
    );

    let mut c = WebhookConfig::new(["https://a.example.org/x"]);
    c.headers.insert(
        "Authorization".into(),
        monit_host::config::secret::Secret::new("Bearer s3cr3t\nInjected: yes"),
    );
    let e = err(c);
    assert!(e.contains("plugins.webhook.headers.Authorization"), "{e}");
    assert!(!e.contains("s3cr3t"), "{e}");
}

#[test]
fn debug_shows_neither_header_values_nor_url_paths() {
    let c = parse(
        "[plugins.webhook]\nurls = [\"https://hooks.slack.com/services/T000/B000/tokentoken\", \"http://127.0.0.1:9/\"]\n\
         [plugins.webhook.headers]\nAuthorization = \"Bearer s3cr3t-value\"\n",
    )
    .unwrap();
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("s3cr3t") && !debug.contains("tokentoken"),
        "{debug}"
    );
    assert!(debug.contains("https://hooks.slack.com/…"), "{debug}");
    assert!(debug.contains("http://127.0.0.1:9\""), "{debug}");
    let n = WebhookNotifier::new(c).unwrap();
    let debug = format!("{n:?}");
    assert!(
        !debug.contains("s3cr3t") && !debug.contains("tokentoken"),
        "{debug}"
    );
    assert!(
        debug.contains("urls[0] https://hooks.slack.com/…"),
        "{debug}"
    );
    assert!(debug.contains("authorization"), "{debug}");
}

/// The registered plugin, built from settings as the host loads them: a TOML file, and the
/// environment overriding a URL and supplying the secret header.
#[test]
fn the_registered_plugin_builds_from_file_and_environment() {
    let dir = std::env::temp_dir().join(format!("monit-webhook-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("monit.toml");
    std::fs::write(
        &file,
        "[monitoring_db]\ndbname = \"monit\"\n[plugins.webhook]\nenabled = true\nformat = \"slack\"\n\
         urls = [\"https://a.example.org/x\"]\n",
    )
    .unwrap();
    let env = HashMap::from([
        (
            "MONIT_BATCH__PLUGINS__WEBHOOK__URLS".to_string(),
            "https://b.example.org/from-env".to_string(),
        ),
        (
            "MONIT_BATCH__PLUGINS__WEBHOOK__HEADERS__AUTHORIZATION".to_string(),
            "Bearer from-env".to_string(),
        ),
        (
            "MONIT_BATCH__PLUGINS__WEBHOOK__TIMEOUT_SECONDS".to_string(),
            "3".to_string(),
        ),
    ]);
    let settings = monit_host::plugin::load_settings_with_env(Some(&file), env).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let ctx = PluginContext {
        name: "webhook",
        settings: Arc::new(settings),
    };
    let c: WebhookConfig = ctx.plugin_config().unwrap();
    assert!(c.enabled);
    assert_eq!(c.format, Format::Slack);
    assert_eq!(c.urls, ["https://b.example.org/from-env"]);
    assert_eq!(c.timeout_seconds, 3);
    // The environment gives lower-case keys; HTTP header names are case-insensitive anyway.
    let auth = c.headers.get("authorization").map(|v| v.expose());
    assert_eq!(auth, Some("Bearer from-env"), "{:?}", c.headers.keys());

    let registration = find_plugin("webhook").expect("the webhook plugin is registered");
    let parts = (registration.build)(&ctx).unwrap();
    assert!(parts.notifier.is_some());
    assert!(parts.collector.is_none() && parts.scaler.is_none() && parts.vm_source.is_none());
}

#[test]
fn a_bad_section_fails_the_build_naming_it() {
    let dir = std::env::temp_dir().join(format!("monit-webhook-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("monit.toml");
    std::fs::write(
        &file,
        "[monitoring_db]\ndbname = \"monit\"\n[plugins.webhook]\nenabled = true\nurls = [\"https://a.example.org/x\"]\nretries = 3\n",
    )
    .unwrap();
    let settings = monit_host::plugin::load_settings_with_env(Some(&file), HashMap::new()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let ctx = PluginContext {
        name: "webhook",
        settings: Arc::new(settings),
    };
    let registration = find_plugin("webhook").unwrap();
    let e = format!("{:#}", (registration.build)(&ctx).err().unwrap());
    assert!(
        e.contains("[plugins.webhook]") && e.contains("retries"),
        "{e}"
    );
}

/// check-config shows the section through `WebhookConfig`: each URL as its origin (the path or
/// query is the token), header values as `Secret`s; the rest as configured.
#[test]
fn the_effective_config_masks_url_paths_and_header_values() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.toml");
    std::fs::write(
        &p,
        "[monitoring_db]\ndbname = \"monit\"\n\
         [plugins.webhook]\nenabled = false\nurls = [\"https://hooks.example.com/services/T00/B00/Tok3n\"]\n\
         format = \"slack\"\n[plugins.webhook.headers]\nAuthorization = \"Bearer Hdr-t0ken\"\nX-Api-Key = \"K3y-value\"\n",
    )
    .unwrap();
    let s = monit_host::plugin::load_settings_with_env(Some(&p), HashMap::new()).unwrap();
    let shown = monit_host::plugin::masked_settings(&s);
    let text = serde_json::to_string(&shown).unwrap();
    for secret in ["Tok3n", "Hdr-t0ken", "K3y-value", "services"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let w = &shown["plugins"]["webhook"];
    assert_eq!(w["urls"][0], "https://hooks.example.com/…");
    assert_eq!(w["headers"]["X-Api-Key"], "***");
    assert_eq!(w["format"], "slack");
    assert_eq!(w["timeout_seconds"], 5, "defaults filled in");
}
