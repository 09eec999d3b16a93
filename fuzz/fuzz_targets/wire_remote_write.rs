//! Remote write body: snappy, then the zero-copy protobuf reader against prost.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/wire.rs"]
mod wire;

fuzz_target!(|data: &[u8]| {
    wire::wire_remote_write(data);
});
