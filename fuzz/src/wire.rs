//! Bodies of the `monit-wire` fuzz targets, as plain functions. `fuzz_targets/wire_*.rs` run
//! them under libFuzzer (nightly) and `wire/tests/fuzz_seeds.rs` runs them over `seeds/wire_*`
//! on stable. Kept apart from `lib.rs` so that the wire crate's test needs neither the host nor
//! its plugins.
//!
//! A panic here is a promise of the decoders broken on outside input: errors that do not say
//! where, values that are not finite, a point without fields, output past the caller's limit,
//! or the zero-copy remote write reader and prost disagreeing about a body.

use monit_wire::gzip::{self, GzipError};
use monit_wire::line::{FieldValue, Lines, Precision, Reason, Text};
use monit_wire::remote_write::{self, RemoteWriteError, proto};
use prost::Message;
use std::io::Read;

/// Line protocol body: the options come from the first byte (precision, line limit, a
/// measurement filter, numeric only), the rest is the body.
pub fn wire_line(data: &[u8]) {
    let (opts, body) = match data.split_first() {
        Some((o, b)) => (*o, b),
        None => (0, data),
    };
    let precision = [
        Precision::Nanoseconds,
        Precision::Microseconds,
        Precision::Milliseconds,
        Precision::Seconds,
        Precision::Minutes,
        Precision::Hours,
    ][usize::from(opts % 6)];
    let max_line = if opts & 0x08 != 0 { 40 } else { 1 << 16 };
    let numeric_only = opts & 0x10 != 0;
    let filter_on = opts & 0x20 != 0;
    let physical_lines = body.split(|&b| b == b'\n').count();
    let seen_filter = std::cell::Cell::new(0usize);
    let mut lines = Lines::new(body, 1_800_000_000_123_456_789)
        .precision(precision)
        .max_line_bytes(max_line)
        .numeric_only(numeric_only)
        .filter(|m: &Text<'_>| {
            seen_filter.set(seen_filter.get() + 1);
            check_text(m);
            !filter_on || m.raw().len() % 2 == 0
        });
    let mut last_line = 0;
    for item in lines.by_ref() {
        match item {
            Ok(p) => {
                assert!(
                    p.line() > last_line && p.line() <= physical_lines,
                    "{}",
                    p.line()
                );
                last_line = p.line();
                assert!(!p.measurement().raw().is_empty());
                check_text(&p.measurement());
                for t in p.tags() {
                    assert!(!t.key.raw().is_empty() && !t.value.raw().is_empty());
                    check_text(&t.key);
                    check_text(&t.value);
                    assert!(p.tag(&t.key.unescaped()).is_some());
                }
                assert!(
                    numeric_only || !p.fields().is_empty(),
                    "a point has a field"
                );
                for f in p.fields() {
                    check_text(&f.key);
                    match f.value {
                        FieldValue::Float(v) => assert!(v.is_finite()),
                        FieldValue::String(s) => {
                            assert!(!numeric_only);
                            check_text(&s);
                        }
                        FieldValue::Boolean(_) => assert!(!numeric_only),
                        FieldValue::Integer(_) | FieldValue::Unsigned(_) => {}
                    }
                    if let Some(v) = f.value.as_f64() {
                        assert!(v.is_finite());
                    }
                }
                let ts = p.timestamp_ns();
                assert!(ts > i64::MIN + 1 && ts < i64::MAX);
                let (s, n) = p.timestamp_secs_nanos();
                assert!(n < 1_000_000_000);
                assert_eq!(
                    i128::from(s) * 1_000_000_000 + i128::from(n),
                    i128::from(ts)
                );
            }
            Err(e) => {
                assert!(e.line > last_line && e.line <= physical_lines, "{e}");
                last_line = e.line;
                assert!(e.column >= 1, "{e}");
                assert!(Reason::ALL.contains(&e.reason));
                let msg = e.to_string();
                assert!(msg.contains(&format!("line {}", e.line)), "{msg}");
                assert!(msg.contains(e.reason.as_str()), "{msg}");
            }
        }
    }
    assert!(lines.filtered() <= seen_filter.get());
}

/// A text unescapes to something it then compares equal to.
fn check_text(t: &Text<'_>) {
    let u = t.unescaped();
    assert!(u.len() <= t.raw().len());
    assert!(t.is(&u), "{:?} is its own unescaped form", t.raw());
    assert_eq!(t.to_string(), u);
}

/// Remote write: the bytes as a snappy body (limit 1 MiB), and as a protobuf, where this
/// reader and prost must agree: what prost decodes, the reader yields without error and with the
/// same labels and samples; what prost refuses, the reader reports at least one error for.
pub fn wire_remote_write(data: &[u8]) {
    match remote_write::decompress(data, 1 << 20) {
        Ok(pb) => {
            assert!(pb.len() <= 1 << 20);
            agree_with_prost(&pb);
        }
        Err(e @ RemoteWriteError::TooLarge { declared, limit }) => {
            assert!(declared > limit, "{e}");
            assert_eq!(e.reason(), "too_large");
        }
        Err(e) => assert_eq!(e.reason(), "bad_snappy", "{e}"),
    }
    agree_with_prost(data);
}

type Owned = Vec<(Vec<(String, String)>, Vec<(u64, i64)>)>;

fn agree_with_prost(pb: &[u8]) {
    let mut ours: Owned = Vec::new();
    let mut errors = 0;
    for s in remote_write::series(pb) {
        match s {
            Ok(s) => {
                let labels: Vec<_> = s
                    .labels()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect();
                let samples: Vec<_> = s
                    .samples()
                    .map(|x| (x.value.to_bits(), x.timestamp_ms))
                    .collect();
                assert_eq!(labels.len(), s.label_count());
                assert_eq!(samples.len(), s.sample_count());
                assert!(s.offset() <= pb.len());
                ours.push((labels, samples));
            }
            Err(e) => {
                errors += 1;
                match &e {
                    RemoteWriteError::Protobuf { offset, .. } => {
                        assert!(*offset <= pb.len(), "{e}")
                    }
                    other => panic!("a protobuf walk gave {other}"),
                }
                assert!(e.to_string().contains("byte "), "{e}");
            }
        }
    }
    match proto::WriteRequest::decode(pb) {
        Ok(req) => {
            assert_eq!(errors, 0, "prost decodes what the reader refused");
            let theirs: Owned = req
                .timeseries
                .iter()
                .map(|t| {
                    (
                        t.labels
                            .iter()
                            .map(|l| (l.name.clone(), l.value.clone()))
                            .collect(),
                        t.samples
                            .iter()
                            .map(|s| (s.value.to_bits(), s.timestamp))
                            .collect(),
                    )
                })
                .collect();
            assert_eq!(ours, theirs);
        }
        Err(_) => assert!(errors > 0, "the reader accepts what prost refuses"),
    }
}

/// Gzip with a 64 KiB limit: never more than the limit, and when flate2's own reader inflates
/// the body within the limit, the same bytes.
pub fn wire_gzip(data: &[u8]) {
    const LIMIT: usize = 64 << 10;
    let ours = gzip::decompress(data, LIMIT);
    let mut reference = Vec::new();
    let theirs = flate2::read::MultiGzDecoder::new(data)
        .take(LIMIT as u64 + 1)
        .read_to_end(&mut reference);
    match ours {
        Ok(out) => {
            assert!(out.len() <= LIMIT);
            assert!(theirs.is_ok());
            assert_eq!(out, reference);
        }
        Err(e @ GzipError::TooLarge { .. }) => {
            assert_eq!(e.reason(), "too_large");
            // the reference got past the limit before any error of its own, or stopped there
            assert!(reference.len() > LIMIT || theirs.is_err(), "{e}");
        }
        Err(e @ GzipError::Corrupt(_)) => {
            assert_eq!(e.reason(), "bad_gzip");
            assert!(theirs.is_err() || reference.len() > LIMIT, "{e}");
        }
    }
}
