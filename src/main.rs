//! monit-batch: the host plus the plugins this build carries. A plugin crate that nothing names
//! is dropped by the linker with its registration, hence one `use` per enabled feature.

#[cfg(feature = "autoscale")]
use monit_plugin_autoscale as _;
#[cfg(feature = "bosh")]
use monit_plugin_bosh as _;
#[cfg(feature = "container")]
use monit_plugin_container as _;
#[cfg(feature = "email")]
use monit_plugin_email as _;
#[cfg(feature = "paasta")]
use monit_plugin_paasta as _;
#[cfg(feature = "webhook")]
use monit_plugin_webhook as _;

fn main() -> std::process::ExitCode {
    monit_host::cli::main()
}
