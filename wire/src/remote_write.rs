//! Prometheus remote write 1.0: a snappy *block* (not framed) of a protobuf
//! `prometheus.WriteRequest`, what vmagent (`-remoteWrite.url`) and Prometheus `remote_write` send.
//!
//! [`decompress`] checks the length the snappy header declares against the caller's limit before
//! it allocates anything; [`series`] then walks the protobuf without copying: a [`Series`] is a
//! view into the decompressed buffer, checked whole when it is yielded, whose labels and samples
//! are read on demand. So decoding allocates nothing per series or label, and a body of empty
//! messages (2 bytes on the wire, 48 as a decoded `Vec<Label>` entry) cannot blow up memory. The
//! [`proto`] messages (prost) are the same schema as owned structs, to build bodies
//! ([`encode`]) and to cross-check this reader in the tests.
//!
//! Fields this crate does not read (`metadata`, exemplars, histograms) are skipped as protobuf
//! says. A series whose own bytes are malformed is yielded as an error and the next series is
//! read; a broken outer framing ends the walk after one error.

use std::fmt;

/// A refused remote write body or series.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    #[error("remote write body is not snappy block format: {0}")]
    Snappy(#[from] snap::Error),
    #[error(
        "remote write body would decompress to {declared} bytes, over the limit of {limit} bytes"
    )]
    TooLarge { declared: usize, limit: usize },
    #[error("remote write protobuf (prometheus.WriteRequest), byte {offset}: {detail}")]
    Protobuf { offset: usize, detail: &'static str },
}

impl RemoteWriteError {
    /// A short, fixed label for `monit_ingest_rejected_total{reason}`: `bad_snappy`,
    /// `too_large` or `bad_protobuf`.
    pub fn reason(&self) -> &'static str {
        match self {
            RemoteWriteError::Snappy(_) => "bad_snappy",
            RemoteWriteError::TooLarge { .. } => "too_large",
            RemoteWriteError::Protobuf { .. } => "bad_protobuf",
        }
    }
}

/// Decompresses a snappy block body, refusing before any allocation a body whose header
/// declares more than `max_decompressed` bytes (a snappy bomb: a few KiB can declare 4 GiB).
pub fn decompress(body: &[u8], max_decompressed: usize) -> Result<Vec<u8>, RemoteWriteError> {
    let declared = snap::raw::decompress_len(body)?;
    if declared > max_decompressed {
        return Err(RemoteWriteError::TooLarge {
            declared,
            limit: max_decompressed,
        });
    }
    Ok(snap::raw::Decoder::new().decompress_vec(body)?)
}

/// The series of a decompressed `WriteRequest`, in order.
pub fn series(buf: &[u8]) -> SeriesIter<'_> {
    SeriesIter {
        r: Reader { buf, pos: 0 },
        done: false,
    }
}

/// One label of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// One sample: the value as sent (NaN included: see [`Sample::is_stale_marker`]) and its
/// timestamp in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub value: f64,
    pub timestamp_ms: i64,
}

/// The NaN Prometheus writes to say "this series ended" (`value.StaleNaN`).
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

impl Sample {
    /// True for Prometheus' staleness marker: the series is gone, not a reading.
    pub fn is_stale_marker(&self) -> bool {
        self.value.to_bits() == STALE_NAN_BITS
    }

    /// The timestamp in nanoseconds, `None` if it does not fit in i64.
    pub fn timestamp_ns(&self) -> Option<i64> {
        self.timestamp_ms.checked_mul(1_000_000)
    }
}

/// One `TimeSeries`, checked, borrowing from the decompressed body.
#[derive(Clone, Copy)]
pub struct Series<'a> {
    raw: &'a [u8],
    offset: usize,
    labels: usize,
    samples: usize,
}

impl<'a> Series<'a> {
    /// Labels in the order sent (Prometheus sends them sorted by name).
    pub fn labels(&self) -> Labels<'a> {
        Labels {
            r: Reader {
                buf: self.raw,
                pos: 0,
            },
        }
    }

    pub fn samples(&self) -> Samples<'a> {
        Samples {
            r: Reader {
                buf: self.raw,
                pos: 0,
            },
        }
    }

    /// The value of the first label called `name`.
    pub fn label(&self, name: &str) -> Option<&'a str> {
        self.labels().find(|l| l.name == name).map(|l| l.value)
    }

    /// The metric name (`__name__`).
    pub fn name(&self) -> Option<&'a str> {
        self.label("__name__")
    }

    pub fn label_count(&self) -> usize {
        self.labels
    }

    pub fn sample_count(&self) -> usize {
        self.samples
    }

    /// Where the series starts in the decompressed body (for error messages).
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Debug for Series<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Series")
            .field("labels", &self.labels().collect::<Vec<_>>())
            .field("samples", &self.samples().collect::<Vec<_>>())
            .finish()
    }
}

/// Series of a `WriteRequest`; see [`series`].
pub struct SeriesIter<'a> {
    r: Reader<'a>,
    done: bool,
}

impl<'a> SeriesIter<'a> {
    /// The next series, checked in the same walk that copies its labels into `labels` (cleared
    /// first): for a caller that reads every series' labels, half the work of [`Iterator::next`]
    /// and [`Series::labels`] (each walk reads every varint and checks every string's UTF-8).
    /// On an error `labels` holds what was read before it.
    pub fn next_with_labels(
        &mut self,
        labels: &mut Vec<Label<'a>>,
    ) -> Option<Result<Series<'a>, RemoteWriteError>> {
        labels.clear();
        self.next_into(|l| labels.push(l))
    }

    fn next_into(
        &mut self,
        mut sink: impl FnMut(Label<'a>),
    ) -> Option<Result<Series<'a>, RemoteWriteError>> {
        while !self.done && !self.r.at_end() {
            match self.field(&mut sink) {
                Ok(Some(item)) => return Some(item.map_err(Fault::into_error)),
                Ok(None) => continue,
                Err(fault) => {
                    self.done = true;
                    return Some(Err(fault.into_error()));
                }
            }
        }
        None
    }

    /// The next top-level field: `Err` if the framing broke, `Ok(None)` for a skipped field.
    #[allow(clippy::type_complexity)]
    fn field(
        &mut self,
        sink: impl FnMut(Label<'a>),
    ) -> Result<Option<Result<Series<'a>, Fault>>, Fault> {
        let at = self.r.pos;
        let (tag, wire) = self.r.key()?;
        if tag != 1 {
            self.r.skip(wire, tag, TOP_DEPTH)?;
            return Ok(None);
        }
        if wire != LEN {
            self.r.skip(wire, tag, TOP_DEPTH)?;
            let detail = "timeseries with a wrong wire type";
            return Ok(Some(Err(Fault { offset: at, detail })));
        }
        let raw = self.r.bytes()?;
        let offset = self.r.pos - raw.len();
        Ok(Some(check_series(raw, offset, sink)))
    }
}

impl<'a> Iterator for SeriesIter<'a> {
    type Item = Result<Series<'a>, RemoteWriteError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_into(|_| {})
    }
}

/// Labels of a [`Series`].
pub struct Labels<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for Labels<'a> {
    type Item = Label<'a>;

    fn next(&mut self) -> Option<Label<'a>> {
        // The series was checked whole when it was yielded, so nothing here can fail; a failure
        // would end the iteration rather than panic.
        while !self.r.at_end() {
            let (tag, wire) = self.r.key().ok()?;
            if tag == 1 && wire == LEN {
                return read_label(self.r.bytes().ok()?, 0).ok();
            }
            self.r.skip(wire, tag, SERIES_DEPTH).ok()?;
        }
        None
    }
}

/// Samples of a [`Series`].
pub struct Samples<'a> {
    r: Reader<'a>,
}

impl Iterator for Samples<'_> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        while !self.r.at_end() {
            let (tag, wire) = self.r.key().ok()?;
            if tag == 2 && wire == LEN {
                return read_sample(self.r.bytes().ok()?, 0).ok();
            }
            self.r.skip(wire, tag, SERIES_DEPTH).ok()?;
        }
        None
    }
}

// Wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const SGROUP: u8 = 3;
const EGROUP: u8 = 4;
const I32: u8 = 5;

// Nesting budget for skipped groups, as prost counts it (100 at the top, one less per message
// level), so this reader and prost accept the same bodies.
const TOP_DEPTH: u32 = 100;
const SERIES_DEPTH: u32 = 99;
const LEAF_DEPTH: u32 = 98;

/// A protobuf fault: where (offset in the slice being read, made absolute by the caller) and
/// what.
#[derive(Debug)]
struct Fault {
    offset: usize,
    detail: &'static str,
}

impl Fault {
    fn into_error(self) -> RemoteWriteError {
        RemoteWriteError::Protobuf {
            offset: self.offset,
            detail: self.detail,
        }
    }

    fn shift(self, by: usize) -> Fault {
        Fault {
            offset: self.offset + by,
            detail: self.detail,
        }
    }
}

#[derive(Clone)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn fault(&self, detail: &'static str) -> Fault {
        Fault {
            offset: self.pos,
            detail,
        }
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, Fault> {
        // most varints of a body (keys, string lengths) are one byte
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.long_varint()
    }

    #[cold]
    fn long_varint(&mut self) -> Result<u64, Fault> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.fault("truncated varint"));
            };
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && b > 1 {
                return Err(self.fault("varint overflows 64 bits"));
            }
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.fault("varint overflows 64 bits"))
    }

    fn key(&mut self) -> Result<(u32, u8), Fault> {
        let at = self.pos;
        let key = self.varint()?;
        let fault = |detail| Fault { offset: at, detail };
        if key > u64::from(u32::MAX) {
            return Err(fault("field key out of range"));
        }
        let wire = (key & 7) as u8;
        if wire > I32 {
            return Err(fault("unknown wire type"));
        }
        let tag = (key >> 3) as u32;
        if tag == 0 {
            return Err(fault("field number 0"));
        }
        Ok((tag, wire))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Fault> {
        let rest = self.buf.len() - self.pos;
        if n > rest as u64 {
            return Err(self.fault("length runs past the end of its message"));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<&'a [u8], Fault> {
        let n = self.varint()?;
        self.take(n)
    }

    /// Skips an unknown field (groups included, nested at most `depth` deep).
    fn skip(&mut self, wire: u8, tag: u32, depth: u32) -> Result<(), Fault> {
        if depth == 0 {
            return Err(self.fault("groups nested too deep"));
        }
        match wire {
            VARINT => self.varint().map(drop),
            I64 => self.take(8).map(drop),
            I32 => self.take(4).map(drop),
            LEN => self.bytes().map(drop),
            SGROUP => loop {
                let (inner, w) = self.key()?;
                if w == EGROUP {
                    if inner != tag {
                        return Err(self.fault("group ends with another field number"));
                    }
                    return Ok(());
                }
                self.skip(w, inner, depth - 1)?;
            },
            _ => Err(self.fault("end of a group that was not started")),
        }
    }
}

/// Checks one `TimeSeries` whole (labels UTF-8, samples well typed) and counts its parts,
/// handing each label to `sink` as it is read.
fn check_series<'a>(
    raw: &'a [u8],
    offset: usize,
    mut sink: impl FnMut(Label<'a>),
) -> Result<Series<'a>, Fault> {
    let mut r = Reader { buf: raw, pos: 0 };
    let (mut labels, mut samples) = (0, 0);
    while !r.at_end() {
        let (tag, wire) = r.key().map_err(|f| f.shift(offset))?;
        match (tag, wire) {
            (1, LEN) => {
                let b = r.bytes().map_err(|f| f.shift(offset))?;
                sink(read_label(b, offset + r.pos - b.len())?);
                labels += 1;
            }
            (2, LEN) => {
                let b = r.bytes().map_err(|f| f.shift(offset))?;
                read_sample(b, offset + r.pos - b.len())?;
                samples += 1;
            }
            (1 | 2, _) => {
                return Err(r
                    .fault("label or sample with a wrong wire type")
                    .shift(offset));
            }
            _ => r
                .skip(wire, tag, SERIES_DEPTH)
                .map_err(|f| f.shift(offset))?,
        }
    }
    Ok(Series {
        raw,
        offset,
        labels,
        samples,
    })
}

/// Reads a `Label` (the last `name` and `value` win, as protobuf merges repeated scalars).
/// `base`: its offset in the body, for faults.
fn read_label(raw: &[u8], base: usize) -> Result<Label<'_>, Fault> {
    // what every writer sends: the name, then the value, each under 128 bytes
    if let [0x0a, n, rest @ ..] = raw
        && let Some((name, rest)) = rest.split_at_checked(usize::from(*n))
        && let [0x12, v, value @ ..] = rest
        && value.len() == usize::from(*v)
        && *n < 0x80
        && *v < 0x80
        && let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value))
    {
        return Ok(Label { name, value });
    }
    let mut r = Reader { buf: raw, pos: 0 };
    let (mut name, mut value) = ("", "");
    while !r.at_end() {
        let (tag, wire) = r.key().map_err(|f| f.shift(base))?;
        match (tag, wire) {
            (1 | 2, LEN) => {
                let b = r.bytes().map_err(|f| f.shift(base))?;
                let s = std::str::from_utf8(b).map_err(|_| Fault {
                    offset: base + r.pos - b.len(),
                    detail: "label name or value is not UTF-8",
                })?;
                if tag == 1 {
                    name = s;
                } else {
                    value = s;
                }
            }
            (1 | 2, _) => {
                return Err(r
                    .fault("label name or value with a wrong wire type")
                    .shift(base));
            }
            _ => r.skip(wire, tag, LEAF_DEPTH).map_err(|f| f.shift(base))?,
        }
    }
    Ok(Label { name, value })
}

fn read_sample(raw: &[u8], base: usize) -> Result<Sample, Fault> {
    let mut r = Reader { buf: raw, pos: 0 };
    let mut s = Sample {
        value: 0.0,
        timestamp_ms: 0,
    };
    while !r.at_end() {
        let (tag, wire) = r.key().map_err(|f| f.shift(base))?;
        match (tag, wire) {
            (1, I64) => {
                let b = r.take(8).map_err(|f| f.shift(base))?;
                let mut le = [0u8; 8];
                le.copy_from_slice(b);
                s.value = f64::from_le_bytes(le);
            }
            // int64 is two's complement in a varint: a negative timestamp takes ten bytes.
            (2, VARINT) => s.timestamp_ms = r.varint().map_err(|f| f.shift(base))? as i64,
            (1 | 2, _) => {
                return Err(r
                    .fault("sample value or timestamp with a wrong wire type")
                    .shift(base));
            }
            _ => r.skip(wire, tag, LEAF_DEPTH).map_err(|f| f.shift(base))?,
        }
    }
    Ok(s)
}

/// The remote write 1.0 messages as owned structs (prost), for building bodies.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

/// A remote write body for `req`: protobuf, then snappy block format.
pub fn encode(req: &proto::WriteRequest) -> Vec<u8> {
    use prost::Message;
    let pb = req.encode_to_vec();
    // Infallible for inputs under snap's 4 GiB block limit, which a Vec built in memory here
    // never reaches; an empty body stands for the impossible case rather than a panic.
    snap::raw::Encoder::new()
        .compress_vec(&pb)
        .unwrap_or_default()
}

/// How VictoriaMetrics and vmagent name an InfluxDB line they received: the line
/// `measurement,tag=v field=x` written with `?db=NAME` becomes the series
/// `measurement<separator>field{tag="v", <db_label>="NAME"}` (flags `-influxMeasurementFieldSeparator`,
/// default `_`, and `-influxDBLabel`, default `db`). With `-influxSkipSingleField` a line of one
/// field is named `measurement` alone.
///
/// Underscores are common in measurement names, so the name is split against the measurements
/// the caller reads (the longest that fits wins); which of them matter stays the caller's choice.
#[derive(Debug, Clone, Copy)]
pub struct InfluxNaming<'m> {
    pub measurements: &'m [&'m str],
    pub separator: &'m str,
    pub db_label: &'m str,
}

/// A remote-written series seen as the InfluxDB point it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfluxView<'a> {
    pub measurement: &'a str,
    /// `None` for a series named by the measurement alone (`-influxSkipSingleField`).
    pub field: Option<&'a str>,
    pub db: Option<&'a str>,
}

impl<'m> InfluxNaming<'m> {
    /// VictoriaMetrics' defaults: separator `_`, database label `db`.
    pub fn new(measurements: &'m [&'m str]) -> Self {
        InfluxNaming {
            measurements,
            separator: "_",
            db_label: "db",
        }
    }

    /// Splits a metric name into measurement and field; `None` if no measurement fits.
    pub fn split<'a>(&self, metric: &'a str) -> Option<(&'a str, Option<&'a str>)> {
        let mut best: Option<(&'a str, Option<&'a str>)> = None;
        for m in self.measurements {
            let Some(rest) = metric.strip_prefix(m) else {
                continue;
            };
            let found = if rest.is_empty() {
                (&metric[..m.len()], None)
            } else if let Some(field) = rest.strip_prefix(self.separator)
                && !field.is_empty()
            {
                (&metric[..m.len()], Some(field))
            } else {
                continue;
            };
            if best.is_none_or(|(b, _)| b.len() < m.len()) {
                best = Some(found);
            }
        }
        best
    }

    /// A series, by its labels ([`Series::labels`], read once: each walk of a series reads its
    /// varints and checks its strings again), as measurement, field and database; `None` if
    /// its name fits no measurement.
    pub fn view<'a>(&self, labels: &[Label<'a>]) -> Option<InfluxView<'a>> {
        let value = |name: &str| labels.iter().find(|l| l.name == name).map(|l| l.value);
        let (measurement, field) = self.split(value("__name__")?)?;
        Some(InfluxView {
            measurement,
            field,
            db: value(self.db_label),
        })
    }

    /// The labels of a series that were the line's tags: all but `__name__` and the database
    /// label.
    pub fn tags<'a, 'l>(
        &self,
        labels: &'l [Label<'a>],
    ) -> impl Iterator<Item = Label<'a>> + use<'a, 'l, 'm> {
        let db_label = self.db_label;
        labels
            .iter()
            .copied()
            .filter(move |l| l.name != "__name__" && l.name != db_label)
    }
}
