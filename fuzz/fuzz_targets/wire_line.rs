//! InfluxDB line protocol body: `monit_wire::line::Lines` under every option.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/wire.rs"]
mod wire;

fuzz_target!(|data: &[u8]| {
    wire::wire_line(data);
});
