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

/// A stream tick builds and frees a fleet's readings each interval: hundreds of thousands of
/// small names and lists. glibc's malloc spent about a fifth of such a tick in the slow paths of
/// its free lists; mimalloc's per-thread pages serve the same in a fraction of the time and
/// return freed pages to the OS on their own (docs/benchmarks.md, issue 20, fourth round).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    monit_host::run::cli::main(PLUGINS)
}
