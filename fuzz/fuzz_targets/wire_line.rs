//! InfluxDB line protocol body: `monit_wire::line::Lines` under every option.
#![no_main]

use libfuzzer_sys::fuzz_target;

// each target calls one body of the shared module
#[allow(dead_code)]
#[path = "../src/wire.rs"]
mod wire;

fuzz_target!(|data: &[u8]| {
    wire::wire_line(data);
});
