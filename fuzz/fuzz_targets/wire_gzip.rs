//! Gzip body: the bounded inflater against flate2's own reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/wire.rs"]
mod wire;

fuzz_target!(|data: &[u8]| {
    wire::wire_gzip(data);
});
