//! Where each collector's metrics are is its own config (`[plugins.<name>] db`, `measurement`),
//! and the host's former keys (`[influx] paasta_db` …, `[portal_db]`) are still read for one
//! release, moved into the plugin's section with a deprecation warning. The e2e harness
//! (`common::TestEnv`) writes the old keys, so every other e2e test runs through that path too.

mod common;

use common::TestEnv;

/// The harness's config with the collectors' databases in their own sections, not in [influx].
fn with_new_keys(env: &TestEnv, paasta_db: &str) {
    let text = std::fs::read_to_string(&env.config).unwrap();
    let mut out: String = text
        .lines()
        .filter(|l| {
            !["paasta_db", "bosh_db", "container_db"]
                .iter()
                .any(|k| l.trim_start().starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    out = out
        .replace(
            "[plugins.paasta]\n",
            &format!("[plugins.paasta]\ndb = \"{paasta_db}\"\nmeasurement = \"cf_metrics\"\n"),
        )
        .replace(
            "[plugins.container]\n",
            &format!("[plugins.container]\ndb = \"{}\"\n", env.container_db),
        );
    std::fs::write(&env.config, out).unwrap();
}

#[tokio::test]
async fn the_collectors_read_their_own_db_keys() {
    let env = TestEnv::new(
        "newkeys",
        "[plugins.paasta]\nenabled = true\n[plugins.container]\nenabled = true\n",
    )
    .await;
    with_new_keys(&env, &env.cf_db);
    let check = env.run(&["check-config"]);
    assert!(check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!stderr.contains("deprecated"), "{stderr}");
    let effective: serde_json::Value = effective_config(&check.stdout);
    assert_eq!(effective["plugins"]["paasta"]["db"], env.cf_db.as_str());
    assert_eq!(
        effective["plugins"]["container"]["db"],
        env.container_db.as_str()
    );

    // the paasta collector reads the database its section names (not the default one)
    let vm = env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    env.exec("UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'")
        .await;
    let lines = TestEnv::cf_series("10.0.16.21", "cpuStats.core.0", 300, |_| 97.0);
    env.write_points(&env.cf_db, &lines).await;
    assert!(env.run_once().status.success());
    let cpu = env
        .scalar_i64(&format!(
            "SELECT COUNT(*) FROM alarms WHERE origin_type = 'pas' AND origin_id = {vm} \
             AND alarm_type = 'cpu' AND level = 'critical'"
        ))
        .await;
    assert_eq!(cpu, 1, "a critical cpu alarm from the configured database");

    // and a database that does not exist fails the step, naming it
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        &format!("db = \"{}\"", env.cf_db),
        "db = \"no_such_db_for_new_keys\"",
    );
    std::fs::write(&env.config, text).unwrap();
    let out = env.run_once();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ERROR     collect/paasta") && stdout.contains("database not found"),
        "{stdout}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn the_old_influx_and_portal_db_keys_still_work_with_a_warning() {
    let env = TestEnv::new(
        "oldkeys",
        "[portal_db]\ndbname = \"portaldb\"\nport = 3307\n[plugins.paasta]\nenabled = true\n",
    )
    .await;
    let check = env.run(&["check-config"]);
    assert!(check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    for (old, section) in [
        ("influx.paasta_db", "[plugins.paasta]"),
        ("influx.bosh_db", "[plugins.bosh]"),
        ("influx.container_db", "[plugins.container]"),
        ("portal_db", "[plugins.autoscale]"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("warning: {old} is deprecated"))
                    && l.contains(section)),
            "{old}: {stderr}"
        );
    }
    let effective = effective_config(&check.stdout);
    assert_eq!(effective["plugins"]["paasta"]["db"], env.cf_db.as_str());
    // bosh's section holds only the moved db (no api_url): not a config its type can read, so
    // check-config shows its values masked
    assert_eq!(effective["plugins"]["bosh"]["db"], "***");
    assert_eq!(
        effective["plugins"]["autoscale"]["portal_db"]["port"],
        serde_json::json!(3307)
    );
    assert!(
        effective["influx"].get("paasta_db").is_none(),
        "{effective}"
    );
    assert!(effective.get("portal_db").is_none(), "{effective}");

    // the run reads the moved key: a hot VM in the harness's database opens its alarm
    let vm = env.add_vm("cell_z1/0", "10.0.16.21", "cel").await;
    env.exec("UPDATE alarm_policies SET measure_time = 300 WHERE origin_type = 'pas'")
        .await;
    let lines = TestEnv::cf_series("10.0.16.21", "cpuStats.core.0", 300, |_| 97.0);
    env.write_points(&env.cf_db, &lines).await;
    assert!(env.run_once().status.success());
    let cpu = env
        .scalar_i64(&format!(
            "SELECT COUNT(*) FROM alarms WHERE origin_type = 'pas' AND origin_id = {vm} AND alarm_type = 'cpu'"
        ))
        .await;
    assert_eq!(cpu, 1);
    env.cleanup().await;
}

/// check-config's stdout: a `#` comment line, then the effective config as JSON.
fn effective_config(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let json: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// config.ini keys are declared by the plugin that reads them (its registration's `legacy_ini`):
/// the example file reaches every plugin's section, and the implicit enabling of the original
/// (collectors always, BOSH with a director URL, mail only with `mail.alarm.send`) holds.
#[test]
fn the_example_config_ini_reaches_every_plugin() {
    let ini = concat!(env!("CARGO_MANIFEST_DIR"), "/config/config.example.ini");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .args(["--config", ini, "check-config"])
        .env_remove("PORT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // bosh is enabled by its URL and checks its config: the example's director is fine
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("unknown config.ini key"), "{stderr}");
    let s = effective_config(&out.stdout);
    let p = &s["plugins"];
    assert_eq!(p["paasta"]["db"], "cf_metric_db");
    assert_eq!(p["container"]["db"], "container_metric_db");
    assert_eq!(p["bosh"]["db"], "bosh_metric_db");
    assert_eq!(
        p["bosh"]["cf_deployment"], "paasta-controller",
        "trailing ⇒ comment stripped"
    );
    assert_eq!(p["bosh"]["api_url"], "director.example:25555");
    assert_eq!(p["bosh"]["cell_prefix"], "cell");
    assert_eq!(p["email"]["smtp_port"], 465);
    assert_eq!(
        p["email"]["enabled"], false,
        "mail.alarm.send = false # comment"
    );
    for (name, on) in [("paasta", true), ("container", true), ("bosh", true)] {
        assert_eq!(p[name]["enabled"], on, "{name}");
    }
}

/// Every plugin credential of a config.ini is masked in check-config's output, and no secret
/// reaches stdout or stderr.
#[test]
fn config_ini_plugin_secrets_are_masked() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("config.ini");
    let secrets = [
        ("bosh.password", "Bosh-pw-1", &["bosh", "password"][..]),
        (
            "mail.sender.password",
            "Mail-pw-2",
            &["email", "password"][..],
        ),
        (
            "cf.client.password",
            "Cf-pw-3",
            &["autoscale", "cf_password"][..],
        ),
        (
            "cf.client.clientpassword",
            "Client-pw-4",
            &["autoscale", "client_secret"][..],
        ),
        (
            "portal.db.password",
            "Portal-pw-5",
            &["autoscale", "portal_db", "password"][..],
        ),
    ];
    let mut text = String::from(
        "monitoring.db.dbname = monit\nbosh.api.url = director.example:25555\n\
         bosh.admin = admin\nbosh.cf.deployment.name = paasta\nportal.db.dbname = portal\n\
         cf.client.api_address = https://api.sys.example\ncf.client.username = admin\n\
         cf.client.clientid = monit\nmail.alarm.send = false\n",
    );
    for (key, secret, _) in &secrets {
        text.push_str(&format!("{key} = {secret}\n"));
    }
    std::fs::write(&ini, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_monit-batch"))
        .arg("--config")
        .arg(&ini)
        .arg("check-config")
        .env_remove("PORT")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    let s = effective_config(&out.stdout);
    for (key, secret, at) in &secrets {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{key} shown"
        );
        let shown = at.iter().try_fold(&s["plugins"], |v, k| v.get(*k));
        assert_eq!(shown.and_then(|v| v.as_str()), Some("***"), "{key} in {s}");
    }
}
