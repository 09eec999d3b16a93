//! A Prometheus API `/api/v1/query` answer body: decoded whole and streamed in pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    monit_fuzz::prometheus_decode(data);
});
