//! An InfluxDB `/query` answer body: `influx::decode`, then `vm_metrics::fold` and the engine.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    monit_fuzz::influx_decode(data);
});
