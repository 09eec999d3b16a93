//! `[plugins.email]` as the host hands it over: TOML, environment and config.ini keys.

use monit_host::plugin::{PluginContext, find_plugin};
use monit_plugin_email::{EmailConfig, EmailNotifier, Security};
use std::collections::HashMap;
use std::sync::Arc;

fn section(toml: &str) -> config::Value {
    config::Config::builder()
        .add_source(config::File::from_str(toml, config::FileFormat::Toml))
        .build()
        .unwrap()
        .get::<config::Value>("plugins.email")
        .unwrap()
}

fn parse(toml: &str) -> anyhow::Result<EmailConfig> {
    Ok(section(toml).try_deserialize::<EmailConfig>()?)
}

#[test]
fn the_sample_parses_and_documents_every_field() {
    let sample =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sample.toml")).unwrap();
    let c = parse(&sample).unwrap();
    assert_eq!(c.security, Security::Tls);
    assert_eq!(c.port(), 465);
    assert_eq!(c.display_utc_offset_hours, 9.0);
    for key in [
        "enabled",
        "smtp_host",
        "smtp_port",
        "security",
        "username",
        "password",
        "sender",
        "ca_file",
        "timeout_seconds",
        "display_utc_offset_hours",
        "charts",
    ] {
        assert!(
            sample.contains(&format!("{key} =")),
            "sample.toml does not document {key}"
        );
    }
}

#[test]
fn defaults_follow_the_security_mode() {
    let base = "[plugins.email]\nsmtp_host = \"mail.example.org\"\nsender = \"ops@example.org\"\n";
    let c = parse(base).unwrap();
    assert_eq!(
        (c.security, c.port(), c.timeout_seconds),
        (Security::Tls, 465, 30)
    );
    assert!(c.password.is_empty() && c.username.is_none() && c.ca_file.is_none());
    assert!(c.charts, "charts are on by default");
    assert!(!parse(&format!("{base}charts = false\n")).unwrap().charts);
    let e = parse(&format!("{base}charts = \"sometimes\"\n")).unwrap_err();
    assert!(format!("{e:#}").contains("charts"), "{e:#}");
    let c = parse(&format!("{base}security = \"starttls\"\n")).unwrap();
    assert_eq!(c.port(), 587);
    let c = parse(&format!("{base}security = \"plain\"\n")).unwrap();
    assert_eq!(c.port(), 25);
    let c = parse(&format!("{base}security = \"plain\"\nsmtp_port = 2525\n")).unwrap();
    assert_eq!(c.port(), 2525);
}

#[test]
fn unknown_keys_and_bad_values_are_rejected_by_name() {
    let base = "[plugins.email]\nsmtp_host = \"mail.example.org\"\nsender = \"ops@example.org\"\n";
    let e = parse(&format!("{base}smtp_pasword = \"x\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("smtp_pasword"), "{e}");
    let e = parse(&format!("{base}security = \"ssl\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ssl") && e.contains("starttls"), "{e}");
    let e = parse("[plugins.email]\nsmtp_host = \"mail.example.org\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sender"), "{e}");

    let mut c = parse(base).unwrap();
    c.sender = "not an address".into();
    let e = EmailNotifier::new(c).unwrap_err().to_string();
    assert!(e.contains("plugins.email.sender"), "{e}");
    let mut c = parse(base).unwrap();
    c.display_utc_offset_hours = 25.0;
    let e = EmailNotifier::new(c).unwrap_err().to_string();
    assert!(e.contains("display_utc_offset_hours"), "{e}");
    let mut c = parse(base).unwrap();
    c.ca_file = Some("/nonexistent/ca.pem".into());
    let e = format!("{:#}", EmailNotifier::new(c).unwrap_err());
    assert!(
        e.contains("plugins.email.ca_file") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );
    let mut c = parse(base).unwrap();
    c.ca_file = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml").into());
    let e = format!("{:#}", EmailNotifier::new(c).unwrap_err());
    assert!(e.contains("no PEM certificate"), "{e}");
}

#[test]
fn the_password_never_shows_in_debug() {
    let c = parse(
        "[plugins.email]\nsmtp_host = \"mail.example.org\"\nsender = \"ops@example.org\"\npassword = \"hunter2-very-secret\"\n",
    )
    .unwrap();
    assert_eq!(c.password.expose(), "hunter2-very-secret");
    let debug = format!("{c:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("password: \"***\""), "{debug}");
    let notifier = EmailNotifier::new(c).unwrap();
    let debug = format!("{notifier:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("mail.example.org:465"), "{debug}");
}

/// The registered plugin, built from settings as the host loads them: a legacy config.ini with
/// the original's `mail.*` keys, where a digits-only password arrives as a number.
#[test]
fn the_registered_plugin_builds_from_a_legacy_config_ini() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("config.ini");
    std::fs::write(
        &ini,
        "monitoring.db.dbname = monit\nmail.smtp.host = 127.0.0.1\nmail.smtp.port = 2525\n\
         mail.sender = ops@example.org\nmail.sender.password = 123456\nmail.alarm.send = true\n\
         mail.tls.send = false\nmail.resource.url = http://monitor.example.org\n",
    )
    .unwrap();
    let settings = monit_host::plugin::load_settings_with_env(Some(&ini), HashMap::new()).unwrap();
    let ctx = PluginContext {
        name: "email",
        settings: Arc::new(settings),
    };
    let c: EmailConfig = ctx.plugin_config().unwrap();
    assert!(c.enabled);
    assert_eq!((c.security, c.port()), (Security::Plain, 2525));
    assert_eq!(c.password.expose(), "123456");

    let registration = find_plugin("email").expect("the email plugin is registered");
    let parts = (registration.build)(&ctx).unwrap();
    assert!(parts.notifier.is_some());
    assert!(parts.collector.is_none() && parts.scaler.is_none() && parts.vm_source.is_none());
}
