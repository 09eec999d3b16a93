//! monit-batch: the host plus the plugins this build carries. A plugin crate that nothing names
//! is dropped by the linker with its registration, hence one `use` per enabled feature; the
//! names of every plugin of this repository, compiled in or not, go to the host so that enabling
//! an absent one asks for its cargo feature (the host itself names no plugin).

/// One line per plugin: its cargo feature and its crate.
macro_rules! plugins {
    ($($feature:literal => $krate:ident),* $(,)?) => {
        $(
            #[cfg(feature = $feature)]
            use $krate as _;
        )*
        /// Every plugin of this repository, compiled into this build or not.
        const PLUGINS: &[&str] = &[$($feature),*];
    };
}

plugins! {
    "alertmanager" => monit_plugin_alertmanager,
    "autoscale" => monit_plugin_autoscale,
    "bosh" => monit_plugin_bosh,
    "container" => monit_plugin_container,
    "email" => monit_plugin_email,
    "paasta" => monit_plugin_paasta,
    "webhook" => monit_plugin_webhook,
}

fn main() -> std::process::ExitCode {
    monit_host::run::cli::main(PLUGINS)
}
