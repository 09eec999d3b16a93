//! `[plugins.bosh]` through the host's settings loader: TOML, legacy config.ini, environment.

use monit_host::config::Settings;
use monit_host::plugin::{PluginContext, find_plugin};
use monit_plugin_bosh::BoshConfig;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;

// Names the crate so its registration is linked into this test binary.
use monit_plugin_bosh as _;

fn file(suffix: &str, text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn context(settings: Settings) -> PluginContext {
    PluginContext {
        name: "bosh",
        settings: Arc::new(settings),
    }
}

const TOML_BASE: &str = "[monitoring_db]\ndbname = \"monit\"\n\n[plugins.bosh]\nenabled = true\n\
    api_url = \"https://director.example:25555\"\nusername = \"admin\"\npassword = \"pw\"\ncf_deployment = \"paasta\"\n";

#[test]
fn the_plugin_is_registered_and_builds_an_inventory_sync() {
    let reg = find_plugin("bosh").expect("bosh plugin registered");
    let f = file(".toml", TOML_BASE);
    let settings =
        monit_host::plugin::load_settings_with_env(Some(f.path()), HashMap::new()).unwrap();
    let parts = (reg.build)(&context(settings)).unwrap();
    assert!(parts.vm_source.is_some());
}

#[test]
fn legacy_config_ini_keys_fill_the_section() {
    let f = file(
        ".ini",
        "monitoring.db.dbname=monit\nbosh.api.url=director.example:25555\nbosh.admin=admin\nbosh.password=1234\n\
         bosh.cf.deployment.name=paasta-controller ⇒ CF deployment name\nbosh.diego.deployment.name=paasta-container\n\
         bosh.diego.cell.name.prefix=cell\nbosh.service.name=micro-bosh\n",
    );
    let settings =
        monit_host::plugin::load_settings_with_env(Some(f.path()), HashMap::new()).unwrap();
    let c: BoshConfig = context(settings).plugin_config().unwrap();
    assert_eq!(
        c.director_url().unwrap().as_str(),
        "https://director.example:25555/"
    );
    assert_eq!(
        c.deployments(),
        vec![
            "paasta-controller".to_string(),
            "paasta-container".to_string()
        ]
    );
    assert_eq!(c.cell_prefix, "cell");
    assert_eq!(c.password.expose(), "1234");
    c.validate().unwrap();
}

#[test]
fn environment_overrides_reach_typed_fields() {
    let f = file(".toml", TOML_BASE);
    let env = HashMap::from([
        (
            "MONIT_BATCH__PLUGINS__BOSH__TASK_TIMEOUT_SECONDS".to_string(),
            "7".to_string(),
        ),
        (
            "MONIT_BATCH__PLUGINS__BOSH__INSECURE_SKIP_VERIFY".to_string(),
            "false".to_string(),
        ),
    ]);
    let settings = monit_host::plugin::load_settings_with_env(Some(f.path()), env).unwrap();
    let c: BoshConfig = context(settings).plugin_config().unwrap();
    assert_eq!(c.task_timeout_seconds, 7);
}

#[test]
fn an_unknown_key_in_the_section_is_an_error() {
    let f = file(".toml", &format!("{TOML_BASE}cell_prefx = \"cell\"\n"));
    let settings =
        monit_host::plugin::load_settings_with_env(Some(f.path()), HashMap::new()).unwrap();
    let err = (find_plugin("bosh").unwrap().build)(&context(settings))
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("cell_prefx"), "{err:#}");
}

#[test]
fn a_section_without_the_deployment_is_an_error_naming_it() {
    let f = file(
        ".toml",
        &TOML_BASE.replace("cf_deployment = \"paasta\"\n", "cf_deployment = \" \"\n"),
    );
    let settings =
        monit_host::plugin::load_settings_with_env(Some(f.path()), HashMap::new()).unwrap();
    let err = (find_plugin("bosh").unwrap().build)(&context(settings))
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("plugins.bosh.cf_deployment"),
        "{err:#}"
    );
}

/// The registration's sample (its `sample.toml`) loads through the host's settings loader into
/// a config the plugin builds from, and documents every field of `BoshConfig`.
#[test]
fn the_sample_loads_and_documents_every_field() {
    let reg = find_plugin("bosh").expect("registered");
    let f = file(
        ".toml",
        &format!("[monitoring_db]\ndbname = \"monit\"\n\n{}", reg.sample),
    );
    let s = monit_host::plugin::load_settings_with_env(Some(f.path()), HashMap::new()).unwrap();
    let c: BoshConfig = context(s).plugin_config().unwrap();
    assert!(c.enabled);
    assert_eq!(c.service_name, "micro-bosh");
    for key in [
        "enabled",
        "api_url",
        "username",
        "password",
        "uaa_client_id",
        "uaa_client_secret",
        "cf_deployment",
        "diego_deployment",
        "cell_prefix",
        "service_name",
        "db",
        "measurement",
        "ca_cert",
        "insecure_skip_verify",
        "timeout_seconds",
        "task_timeout_seconds",
        "task_poll_millis",
        "max_answer_bytes",
    ] {
        assert!(
            reg.sample.contains(&format!("{key} =")),
            "sample.toml does not document {key}"
        );
    }
}
