//! `Content-Encoding: gzip` bodies, decompressed up to a caller-given size.
//!
//! The output grows in steps as data comes out and never beyond the limit, so a gzip bomb (a few
//! KiB that inflate to gigabytes) costs at most `max_decompressed` bytes of memory and the time to
//! inflate that much, then is refused.

use flate2::read::MultiGzDecoder;
use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum GzipError {
    #[error("gzip body decompresses to more than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("gzip body is corrupt: {0}")]
    Corrupt(#[source] std::io::Error),
}

impl GzipError {
    /// A short, fixed label for `monit_ingest_rejected_total{reason}`: `too_large` or `bad_gzip`.
    pub fn reason(&self) -> &'static str {
        match self {
            GzipError::TooLarge { .. } => "too_large",
            GzipError::Corrupt(_) => "bad_gzip",
        }
    }
}

/// First capacity of the output: enough for a typical metric body in one step.
const FIRST_STEP: usize = 64 * 1024;

/// Inflates a gzip body (several concatenated members are one body, as `gzip -c a b` makes and
/// Go's reader accepts). Refuses it as soon as the output would pass `max_decompressed` bytes.
pub fn decompress(body: &[u8], max_decompressed: usize) -> Result<Vec<u8>, GzipError> {
    let mut dec = MultiGzDecoder::new(body);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match dec.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(GzipError::Corrupt(e)),
        };
        let need = out.len() + n;
        if need > max_decompressed {
            return Err(GzipError::TooLarge {
                limit: max_decompressed,
            });
        }
        if need > out.capacity() {
            // Doubling as Vec would, but capped at the limit, so capacity never passes it.
            let cap = (out.capacity() * 2).max(FIRST_STEP).max(need);
            out.reserve_exact(cap.min(max_decompressed) - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}
