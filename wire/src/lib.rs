//! What metric writers send, decoded: InfluxDB 1.x line protocol ([`line`](mod@line)),
//! Prometheus remote write 1.0 ([`remote_write`]) and gzip bodies ([`gzip`]).
//!
//! Pure functions over byte slices: no I/O, no clock (the caller passes `now`), no logging. Every
//! input is outside input, so nothing here panics on any of it; errors are typed, say what is
//! wrong and where (line, byte), and never quote the input.

pub mod gzip;
pub mod line;
pub mod remote_write;

pub use gzip::GzipError;
pub use line::{LineError, Lines, Point, Precision, Reason};
pub use remote_write::RemoteWriteError;
