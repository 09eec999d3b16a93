//! InfluxDB 1.x line protocol: `measurement[,tag=v...] field=v[,field2=v2...] [timestamp]`.
//!
//! [`Lines`] walks a `/write` body and yields one [`Point`] or [`LineError`] per line; a bad line
//! never stops the lines after it. Points borrow from the body: names and string values are
//! [`Text`]s, still escaped as written, unescaped only when asked (most names have no escapes, so
//! most never allocate). Up to 8 tags and 4 fields live inline in the point.
//!
//! The grammar is InfluxDB 1.x's own scanner (`models/points.go`), not just the 1.8 reference:
//! both agree on well-formed lines, and on the corners the reference leaves open (which escapes
//! each part resolves, a backslash before a newline, a newline inside a string, tabs, the time
//! range, duplicate tags, the reserved key `time`) `tests/influxdb_conformance.rs` holds this
//! parser to what a real InfluxDB 1.6 stores. Deliberate differences, each checked there too:
//!
//! * a trailing `\r` is dropped (CRLF bodies); InfluxDB refuses the line as a bad timestamp;
//! * `<n>u` (unsigned) is read; InfluxDB 1.x OSS refuses it unless built with uint support;
//! * a string value followed by anything but `,`, a space or the end (`s="x"y`) is refused;
//!   InfluxDB stores it mangled (`x"`);
//! * an unknown `precision` is refused by [`Precision::from_param`]; InfluxDB reads it as ns.

use smallvec::SmallVec;
use std::borrow::Cow;
use std::fmt;

/// Longest line accepted unless the caller says otherwise: far above any PaaS-TA metric line
/// (about 100-300 bytes) and small enough that a runaway line is refused cheaply.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// Why a line was refused: a short, fixed label for `monit_ingest_rejected_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The line is not `measurement[,tags] fields [timestamp]`: a missing measurement, a tag
    /// without `=` or value, a field without `=` or key, an unterminated string, trailing text.
    Syntax,
    /// The measurement (and tags) are there but no field set follows.
    NoFields,
    /// The timestamp is not an integer, or does not fit in i64 nanoseconds at its precision.
    BadTimestamp,
    /// A field value is not a float, `<int>i`, `<uint>u`, boolean or quoted string, overflows
    /// its type, or is not finite.
    BadValue,
    /// The line is longer than the caller's limit; it was not parsed at all.
    TooLong,
    /// The line is not UTF-8.
    NotUtf8,
}

impl Reason {
    /// Every reason, e.g. to register each counter label at zero.
    pub const ALL: [Reason; 6] = [
        Reason::Syntax,
        Reason::NoFields,
        Reason::BadTimestamp,
        Reason::BadValue,
        Reason::TooLong,
        Reason::NotUtf8,
    ];

    /// The label value: `syntax`, `no_fields`, `bad_timestamp`, `bad_value`, `too_long`,
    /// `not_utf8`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Syntax => "syntax",
            Reason::NoFields => "no_fields",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::BadValue => "bad_value",
            Reason::TooLong => "too_long",
            Reason::NotUtf8 => "not_utf8",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused line. It names the line (1-based, counting every `\n` of the body) and the byte in
/// it (1-based) but never quotes the line: a body may carry anything, and errors end up in logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line protocol, line {line}, byte {column}: {reason}: {detail}")]
pub struct LineError {
    pub line: usize,
    pub column: usize,
    pub reason: Reason,
    pub detail: &'static str,
}

/// The `precision` parameter of `/write`: the unit of the timestamps in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

/// A `precision` value that is none of `n`, `ns`, `u`, `us`, `µ`, `ms`, `s`, `m`, `h`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown precision {0:?} (the `precision` parameter of /write): use one of n, ns, u, us, ms, s, m, h"
)]
pub struct PrecisionError(pub String);

impl Precision {
    /// Reads the `precision` query parameter; empty means nanoseconds, as in InfluxDB.
    ///
    /// InfluxDB 1.x reads any value it does not know as nanoseconds, so a writer that says
    /// `precision=sec` gets its points stored in 1970; this refuses such a value instead.
    pub fn from_param(p: &str) -> Result<Self, PrecisionError> {
        Ok(match p {
            "" | "n" | "ns" => Precision::Nanoseconds,
            "u" | "us" | "µ" | "µs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            other => {
                // Bounded and printable: the value comes from a URL.
                let shown: String = other.chars().take(16).collect();
                return Err(PrecisionError(shown));
            }
        })
    }

    /// Nanoseconds per unit.
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = PrecisionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::from_param(s)
    }
}

/// Which escapes a piece of text resolves: what InfluxDB 1.x stores for each part, checked
/// against InfluxDB 1.6 (`tests/influxdb_conformance.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escapes {
    /// Measurement and field key: `\,`, `\=`, `\ ` and `\"`.
    Name,
    /// Tag key and tag value: `\,`, `\=` and `\ ` (a `\"` stays as written).
    Tag,
    /// String field value (between the quotes): `\"` and `\\`.
    Quoted,
}

impl Escapes {
    fn unescapes(self, c: u8) -> bool {
        match self {
            Escapes::Name => matches!(c, b',' | b'=' | b' ' | b'"'),
            Escapes::Tag => matches!(c, b',' | b'=' | b' '),
            Escapes::Quoted => c == b'"' || c == b'\\',
        }
    }
}

/// A name or string value as written in the body, unescaped on demand. A backslash before a
/// character its part does not escape stays, as in InfluxDB (`a\b` is `a\b`).
#[derive(Clone, Copy)]
pub struct Text<'a> {
    raw: &'a str,
    has_backslash: bool,
    escapes: Escapes,
}

impl<'a> Text<'a> {
    fn new(raw: &'a str, escapes: Escapes) -> Self {
        Text {
            raw,
            has_backslash: memchr::memchr(b'\\', raw.as_bytes()).is_some(),
            escapes,
        }
    }

    /// The text as written, escapes included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The text with its escapes resolved; borrows unless there was an escape.
    pub fn unescaped(&self) -> Cow<'a, str> {
        if !self.has_backslash {
            return Cow::Borrowed(self.raw);
        }
        let mut out = String::with_capacity(self.raw.len());
        self.for_each_char(|c| out.push(c));
        Cow::Owned(out)
    }

    /// True if the unescaped text is `s`, without allocating.
    pub fn is(&self, s: &str) -> bool {
        if !self.has_backslash {
            return self.raw == s;
        }
        let mut rest = s.chars();
        let mut same = true;
        self.for_each_char(|c| {
            if same && rest.next() != Some(c) {
                same = false;
            }
        });
        same && rest.next().is_none()
    }

    fn for_each_char(&self, mut f: impl FnMut(char)) {
        let mut chars = self.raw.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\'
                && let Some(&next) = chars.peek()
                && next.is_ascii()
                && self.escapes.unescapes(next as u8)
            {
                chars.next();
                f(next);
                continue;
            }
            f(c);
        }
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        self.is(other)
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.is(other)
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.unescaped())
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.unescaped(), f)
    }
}

/// The type a field value was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Float,
    Integer,
    Unsigned,
    Boolean,
    String,
}

/// A field value, typed as written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    String(Text<'a>),
}

impl PartialEq for Text<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.unescaped() == other.unescaped()
    }
}

impl FieldValue<'_> {
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldValue::Float(_) => FieldType::Float,
            FieldValue::Integer(_) => FieldType::Integer,
            FieldValue::Unsigned(_) => FieldType::Unsigned,
            FieldValue::Boolean(_) => FieldType::Boolean,
            FieldValue::String(_) => FieldType::String,
        }
    }

    /// The value as f64 for the numeric types (integers beyond 2^53 round); `None` for booleans
    /// and strings. Always finite.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            FieldValue::Float(v) => Some(v),
            FieldValue::Integer(v) => Some(v as f64),
            FieldValue::Unsigned(v) => Some(v as f64),
            FieldValue::Boolean(_) | FieldValue::String(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tag<'a> {
    pub key: Text<'a>,
    pub value: Text<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field<'a> {
    pub key: Text<'a>,
    pub value: FieldValue<'a>,
}

/// One line of the body.
#[derive(Debug, Clone)]
pub struct Point<'a> {
    line: usize,
    measurement: Text<'a>,
    tags: SmallVec<[Tag<'a>; 8]>,
    fields: SmallVec<[Field<'a>; 4]>,
    timestamp_ns: i64,
    timestamp_given: bool,
}

impl<'a> Point<'a> {
    /// 1-based line number in the body.
    pub fn line(&self) -> usize {
        self.line
    }

    pub fn measurement(&self) -> Text<'a> {
        self.measurement
    }

    /// Tags in the order written (InfluxDB sorts them when it stores the point).
    pub fn tags(&self) -> &[Tag<'a>] {
        &self.tags
    }

    /// The value of the first tag named `key` (unescaped comparison).
    pub fn tag(&self, key: &str) -> Option<Text<'a>> {
        self.tags.iter().find(|t| t.key.is(key)).map(|t| t.value)
    }

    /// Fields in the order written; without strings and booleans if the reader was told
    /// [`Lines::numeric_only`].
    pub fn fields(&self) -> &[Field<'a>] {
        &self.fields
    }

    /// The value of the last field named `key` (InfluxDB keeps the last of repeated fields).
    pub fn field(&self, key: &str) -> Option<FieldValue<'a>> {
        self.fields
            .iter()
            .rev()
            .find(|f| f.key.is(key))
            .map(|f| f.value)
    }

    /// Numeric fields as `(key, value)`, in order.
    pub fn numeric_fields(&self) -> impl Iterator<Item = (Text<'a>, f64)> + '_ {
        self.fields
            .iter()
            .filter_map(|f| f.value.as_f64().map(|v| (f.key, v)))
    }

    /// Nanoseconds since the Unix epoch: the line's timestamp at the body's precision, or the
    /// caller's `now` if the line has none.
    pub fn timestamp_ns(&self) -> i64 {
        self.timestamp_ns
    }

    /// The timestamp as whole seconds and the nanoseconds within that second (floored, so
    /// before 1970 the nanoseconds stay positive).
    pub fn timestamp_secs_nanos(&self) -> (i64, u32) {
        (
            self.timestamp_ns.div_euclid(1_000_000_000),
            self.timestamp_ns.rem_euclid(1_000_000_000) as u32,
        )
    }

    /// False if the line had no timestamp and `now` stands in for it.
    pub fn timestamp_given(&self) -> bool {
        self.timestamp_given
    }
}

/// Decides from the measurement alone whether a line is parsed further; lines it refuses cost a
/// scan for their end and the measurement, nothing more, and are counted in
/// [`Lines::filtered`].
pub trait MeasurementFilter {
    fn accept(&mut self, measurement: &Text<'_>) -> bool;
}

impl<F: FnMut(&Text<'_>) -> bool> MeasurementFilter for F {
    fn accept(&mut self, measurement: &Text<'_>) -> bool {
        self(measurement)
    }
}

/// The filter of [`Lines::new`]: every measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl MeasurementFilter for AcceptAll {
    fn accept(&mut self, _: &Text<'_>) -> bool {
        true
    }
}

/// The lines of one `/write` body, parsed one at a time.
///
/// ```
/// use monit_wire::line::{Lines, Precision};
/// let body = b"cf_metrics,ip=10.0.16.11,metricname=cpuStats.0 value=93 1700000000\n\
///              other x=1\n";
/// let now = 1_800_000_000_000_000_000;
/// let mut lines = Lines::new(body, now)
///     .precision(Precision::Seconds)
///     .filter(|m: &monit_wire::line::Text<'_>| m.is("cf_metrics"));
/// let p = lines.next().unwrap().unwrap();
/// assert_eq!(p.tag("ip").unwrap().raw(), "10.0.16.11");
/// assert_eq!(p.field("value").unwrap().as_f64(), Some(93.0));
/// assert_eq!(p.timestamp_ns(), 1_700_000_000_000_000_000);
/// assert!(lines.next().is_none());
/// assert_eq!(lines.filtered(), 1);
/// ```
pub struct Lines<'a, F = AcceptAll> {
    body: &'a [u8],
    pos: usize,
    next_line: usize,
    now_ns: i64,
    precision: Precision,
    max_line_bytes: usize,
    numeric_only: bool,
    filter: F,
    filtered: usize,
}

impl<'a> Lines<'a, AcceptAll> {
    /// `now_ns`: the timestamp (Unix nanoseconds) of lines that carry none.
    pub fn new(body: &'a [u8], now_ns: i64) -> Self {
        Lines {
            body,
            pos: 0,
            next_line: 1,
            now_ns,
            precision: Precision::Nanoseconds,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            numeric_only: false,
            filter: AcceptAll,
            filtered: 0,
        }
    }
}

impl<'a, F: MeasurementFilter> Lines<'a, F> {
    /// Unit of the timestamps in the body (the `precision` parameter).
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Lines longer than this (bytes, without the newline) are refused as `too_long` unparsed.
    pub fn max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = max;
        self
    }

    /// Drops string and boolean fields from the points (they are still checked).
    pub fn numeric_only(mut self, yes: bool) -> Self {
        self.numeric_only = yes;
        self
    }

    /// Parses only the lines whose measurement `filter` accepts.
    pub fn filter<G: MeasurementFilter>(self, filter: G) -> Lines<'a, G> {
        Lines {
            body: self.body,
            pos: self.pos,
            next_line: self.next_line,
            now_ns: self.now_ns,
            precision: self.precision,
            max_line_bytes: self.max_line_bytes,
            numeric_only: self.numeric_only,
            filter,
            filtered: self.filtered,
        }
    }

    /// Lines the filter refused so far.
    pub fn filtered(&self) -> usize {
        self.filtered
    }

    /// Finds where the line starting at `start` ends (index of its `\n`, or the body's end) and
    /// how many `\n` lie inside it. A newline inside a quoted string value, or escaped by a
    /// backslash, does not end the line: InfluxDB's scanner (`scanLine`) reads it so, and
    /// splitting there would turn the rest of a string into a line of its own.
    fn line_end(&self, start: usize) -> (usize, usize) {
        let rest = &self.body[start..];
        let nl = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let seg = &rest[..nl];
        if memchr::memchr(b'"', seg).is_none() && seg.last() != Some(&b'\\') {
            return (start + nl, 0);
        }
        // Rare path, a port of scanLine: quotes count only inside the field set, where a value
        // is expected (more `=` than `,` seen), and a backslash hides the next byte.
        let (mut quoted, mut in_fields) = (false, false);
        let (mut equals, mut commas, mut newlines) = (0usize, 0usize, 0usize);
        let mut i = 0;
        while i < rest.len() {
            let c = rest[i];
            if c == b'\\' && i + 2 < rest.len() {
                if rest[i + 1] == b'\n' {
                    newlines += 1;
                }
                i += 2;
                continue;
            }
            if c == b' ' {
                in_fields = true;
            }
            if in_fields {
                if !quoted && c == b'=' {
                    equals += 1;
                } else if !quoted && c == b',' {
                    commas += 1;
                } else if c == b'"' && equals > commas {
                    quoted = !quoted;
                }
            }
            if c == b'\n' {
                if !quoted {
                    break;
                }
                newlines += 1;
            }
            i += 1;
        }
        (start + i.min(rest.len()), newlines)
    }
}

impl<'a, F: MeasurementFilter> Iterator for Lines<'a, F> {
    type Item = Result<Point<'a>, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.pos >= self.body.len() {
                return None;
            }
            let start = self.pos;
            let (end, inner_newlines) = self.line_end(start);
            let line_no = self.next_line;
            self.next_line += 1 + inner_newlines;
            self.pos = end + 1;

            let mut seg = &self.body[start..end];
            if let [head @ .., b'\r'] = seg {
                seg = head;
            }
            let lead = seg.iter().position(|&c| !is_blank(c)).unwrap_or(seg.len());
            let seg = &seg[lead..];
            if seg.is_empty() || seg[0] == b'#' {
                continue;
            }
            let err = |reason, detail| LineError {
                line: line_no,
                column: lead + 1,
                reason,
                detail,
            };
            if seg.len() > self.max_line_bytes {
                return Some(Err(err(Reason::TooLong, "longer than the line limit")));
            }
            let Ok(text) = std::str::from_utf8(seg) else {
                return Some(Err(err(Reason::NotUtf8, "not UTF-8")));
            };
            let mut parser = Parser {
                s: text,
                b: text.as_bytes(),
                i: 0,
            };
            match parser.point(self, line_no) {
                Ok(Some(p)) => return Some(Ok(p)),
                Ok(None) => {
                    self.filtered += 1;
                    continue;
                }
                Err((at, reason, detail)) => {
                    return Some(Err(LineError {
                        line: line_no,
                        column: lead + at + 1,
                        reason,
                        detail,
                    }));
                }
            }
        }
    }
}

type Fail = (usize, Reason, &'static str);

/// InfluxDB's time range: i64 nanoseconds less the two values it keeps as sentinels
/// (`models.MinNanoTime`, `models.MaxNanoTime`).
const MIN_NANO_TIME: i64 = i64::MIN + 2;
const MAX_NANO_TIME: i64 = i64::MAX - 1;

/// InfluxDB refuses a point whose series key (measurement and tags as written), plus 4, plus a
/// field key, is longer than this (`models.MaxKeyLength`).
const MAX_KEY_LENGTH: usize = 65535;

/// Blanks skipped at the start of a line and after a section's space (`skipWhitespace`).
fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t' || c == 0
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn fail<T>(&self, reason: Reason, detail: &'static str) -> Result<T, Fail> {
        Err((self.i, reason, detail))
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Measurement, tag key or tag value: runs to the first byte of `stops` whose previous byte
    /// is not a backslash. InfluxDB's key scanner looks back one byte, so `a\\,b` is one name
    /// (`a\,b` unescaped), unlike the field set below.
    fn key_name(&mut self, stops: &[u8]) -> &'a str {
        let from = self.i;
        // memchr over the stops rather than a byte loop: names are most of a line's bytes
        let next_stop = |rest: &[u8]| match *stops {
            [a, b] => memchr::memchr2(a, b, rest),
            [a, b, c] => memchr::memchr3(a, b, c, rest),
            _ => rest.iter().position(|c| stops.contains(c)),
        };
        loop {
            let Some(k) = self.b.get(self.i..).and_then(next_stop) else {
                self.i = self.b.len();
                break;
            };
            let at = self.i + k;
            if at == from || self.b.get(at - 1) != Some(&b'\\') {
                self.i = at;
                break;
            }
            self.i = at + 1;
        }
        // Stops are ASCII, so the slice ends on a character boundary.
        &self.s[from..self.i]
    }

    /// Field key: a backslash takes the next byte with it (InfluxDB's field scanner).
    fn field_key(&mut self) -> &'a str {
        let from = self.i;
        while let Some(c) = self.peek() {
            if c == b'\\' && self.i + 1 < self.b.len() {
                self.i += 2;
                continue;
            }
            if matches!(c, b',' | b'=' | b' ') {
                break;
            }
            self.i += 1;
        }
        // A backslash before a multi-byte character leaves `i` inside it for a moment, but the
        // scan only stops on an ASCII byte or at the end, both character boundaries.
        &self.s[from..self.i]
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.i += 1;
        }
    }

    fn point<F: MeasurementFilter>(
        &mut self,
        opts: &mut Lines<'a, F>,
        line: usize,
    ) -> Result<Option<Point<'a>>, Fail> {
        let m = self.key_name(b", ");
        if m.is_empty() {
            return self.fail(Reason::Syntax, "missing measurement");
        }
        let measurement = Text::new(m, Escapes::Name);
        if !opts.filter.accept(&measurement) {
            return Ok(None);
        }

        let mut tags: SmallVec<[Tag<'a>; 8]> = SmallVec::new();
        while self.peek() == Some(b',') {
            self.i += 1;
            let k = self.key_name(b",= ");
            if k.is_empty() {
                return self.fail(Reason::Syntax, "missing tag key");
            }
            if self.peek() != Some(b'=') {
                return self.fail(Reason::Syntax, "tag without '='");
            }
            self.i += 1;
            let v = self.key_name(b",= ");
            if v.is_empty() {
                return self.fail(Reason::Syntax, "missing tag value");
            }
            if self.peek() == Some(b'=') {
                return self.fail(Reason::Syntax, "unescaped '=' in tag value");
            }
            // As written, like InfluxDB: `a\ b` and `a\\ b` are different keys to it too.
            if tags.iter().any(|t| t.key.raw() == k) {
                return self.fail(Reason::Syntax, "duplicate tag key");
            }
            if k == "time" {
                return self.fail(Reason::Syntax, "tag key \"time\" is not allowed");
            }
            tags.push(Tag {
                key: Text::new(k, Escapes::Tag),
                value: Text::new(v, Escapes::Tag),
            });
        }
        let series_key_len = self.i;

        self.skip_blanks();
        if self.peek().is_none() {
            return self.fail(Reason::NoFields, "no field set");
        }

        let mut fields = SmallVec::new();
        loop {
            let k = self.field_key();
            if k.is_empty() {
                return self.fail(Reason::Syntax, "missing field key");
            }
            if self.peek() != Some(b'=') {
                return self.fail(Reason::Syntax, "field without '='");
            }
            // InfluxDB finds the end of a field key again by looking back one byte, so for it
            // `a\\=1` has no `=` at all; refuse what it refuses.
            if k.ends_with('\\') {
                return self.fail(Reason::Syntax, "field key ends with a backslash");
            }
            if series_key_len + 4 + k.len() > MAX_KEY_LENGTH {
                return self.fail(Reason::TooLong, "series key longer than 65535 bytes");
            }
            if k == "time" {
                return self.fail(Reason::Syntax, "field key \"time\" is not allowed");
            }
            self.i += 1;
            let value = self.field_value()?;
            let keep = !opts.numeric_only
                || !matches!(value, FieldValue::String(_) | FieldValue::Boolean(_));
            if keep {
                fields.push(Field {
                    key: Text::new(k, Escapes::Name),
                    value,
                });
            }
            match self.peek() {
                Some(b',') => self.i += 1,
                _ => break,
            }
        }

        self.skip_blanks();
        let (timestamp_ns, timestamp_given) = if self.peek().is_none() {
            // InfluxDB truncates its clock to the precision for such a line (`SetPrecision`).
            let unit = opts.precision.nanos();
            (opts.now_ns - opts.now_ns.rem_euclid(unit), false)
        } else {
            let from = self.i;
            while matches!(self.peek(), Some(c) if c != b' ') {
                self.i += 1;
            }
            let tok = &self.s[from..self.i];
            // Only spaces may follow the timestamp (a tab there is an error in InfluxDB too).
            while self.peek() == Some(b' ') {
                self.i += 1;
            }
            if self.peek().is_some() {
                return self.fail(Reason::Syntax, "text after the timestamp");
            }
            self.i = from;
            (self.timestamp(tok, opts.precision)?, true)
        };

        Ok(Some(Point {
            line,
            measurement,
            tags,
            fields,
            timestamp_ns,
            timestamp_given,
        }))
    }

    fn timestamp(&self, tok: &str, precision: Precision) -> Result<i64, Fail> {
        if !is_int(tok, true) {
            return self.fail(Reason::BadTimestamp, "timestamp is not an integer");
        }
        let ns = tok
            .parse::<i64>()
            .ok()
            .and_then(|t| t.checked_mul(precision.nanos()))
            .filter(|ns| (MIN_NANO_TIME..=MAX_NANO_TIME).contains(ns));
        match ns {
            Some(ns) => Ok(ns),
            None => self.fail(
                Reason::BadTimestamp,
                "timestamp out of range at this precision",
            ),
        }
    }

    fn field_value(&mut self) -> Result<FieldValue<'a>, Fail> {
        if self.peek() == Some(b'"') {
            self.i += 1;
            let from = self.i;
            loop {
                match self.peek() {
                    None => return self.fail(Reason::Syntax, "unterminated string value"),
                    Some(b'\\') => self.i = (self.i + 2).min(self.b.len()),
                    Some(b'"') => break,
                    Some(_) => self.i += 1,
                }
            }
            let to = self.i;
            self.i += 1;
            // InfluxDB keeps reading to the next comma or space and then drops the first and
            // last byte, so `"x"y` is stored as `x"`; refusing it is the honest reading.
            if !matches!(self.peek(), None | Some(b',' | b' ')) {
                return self.fail(Reason::Syntax, "text after a string value");
            }
            return Ok(FieldValue::String(Text::new(
                &self.s[from..to],
                Escapes::Quoted,
            )));
        }
        let from = self.i;
        while matches!(self.peek(), Some(c) if c != b',' && c != b' ') {
            self.i += 1;
        }
        let tok = &self.s[from..self.i];
        let at = from;
        let bad = |detail| Err((at, Reason::BadValue, detail));
        if tok.is_empty() {
            return Err((at, Reason::Syntax, "missing field value"));
        }
        match tok.as_bytes()[tok.len() - 1] {
            b'i' => {
                let n = &tok[..tok.len() - 1];
                if !is_int(n, true) {
                    return bad("not an integer before 'i'");
                }
                n.parse()
                    .map(FieldValue::Integer)
                    .or_else(|_| bad("integer out of range"))
            }
            b'u' => {
                let n = &tok[..tok.len() - 1];
                if !is_int(n, false) {
                    return bad("not an unsigned integer before 'u'");
                }
                n.parse()
                    .map(FieldValue::Unsigned)
                    .or_else(|_| bad("unsigned integer out of range"))
            }
            _ => match tok {
                "t" | "T" | "true" | "True" | "TRUE" => Ok(FieldValue::Boolean(true)),
                "f" | "F" | "false" | "False" | "FALSE" => Ok(FieldValue::Boolean(false)),
                _ => {
                    if !is_float(tok) {
                        return bad("not a number, boolean or quoted string");
                    }
                    match tok.parse::<f64>() {
                        Ok(v) if v.is_finite() => Ok(FieldValue::Float(v)),
                        _ => bad("float out of range"),
                    }
                }
            },
        }
    }
}

/// `-?[0-9]+` (the sign only where allowed).
fn is_int(s: &str, signed: bool) -> bool {
    let d = if signed {
        s.strip_prefix('-').unwrap_or(s)
    } else {
        s
    };
    !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit())
}

/// The float syntax InfluxDB accepts: `-?(d+(.d*)?|.d+)([eE][+-]?d+)?`. Rust's parser also takes
/// `inf`, `NaN` and a leading `+`; InfluxDB does not.
fn is_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let from = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - from
    };
    let int = digits(&mut i);
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac = digits(&mut i);
    }
    if int + frac == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}
