//! The points of the series the collectors read, per series, for the longest window they need.
//! The readers (`plugins/common/cf-metrics`) fold them with the same rules as the store's
//! aggregates; this file only keeps points the way InfluxDB 1.x stores them: one point per
//! series and timestamp (a later write of the same timestamp replaces the fields it writes),
//! in time order whatever order they arrive in.
//!
//! Memory is what limits the fleet a batch can follow (docs/metric-stores.md): the series that
//! differ only in their naming tag (a container's CPU, memory and disk; a VM's metrics) share
//! one key, which holds only the tags their readers read, in one allocation with a hash of the
//! others (so that two series the store keeps apart stay apart), and a point costs 16 bytes (24
//! with a reader's extra field).

use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Which values of a series' naming tag a reader keeps: `None` for a series it does not read,
/// `Some(extra)` for one it reads, `extra` naming a second field kept beside `value` (a
/// container's limit, `app_mem` / `app_disk`).
pub type NameFilter = Arc<dyn Fn(&str) -> Option<Option<&'static str>> + Send + Sync>;

/// A set of series a collector reads, declared by its reader next to its queries, so that
/// query and stream modes read the same series.
#[derive(Clone)]
pub struct StreamSeries {
    /// InfluxDB database (`/write?db=`, or the `db` label of a remote-written series)
    pub db: String,
    pub measurement: String,
    /// the tag that names what a series holds (`metricname`, `name`)
    pub name_tag: &'static str,
    pub names: NameFilter,
    /// the other tags the reader reads (groups by, filters on); the rest are not kept
    pub tags: Vec<String>,
    /// series the reader's query leaves out: `(tag, value)`, a missing tag reading as `""`
    pub excluded: Vec<(&'static str, &'static str)>,
    /// a tag whose value must be an address in the VM inventory (a VM's `ip`, a container's
    /// `cell_ip`): the query path drops the others while decoding, the stream does not keep them
    pub inventory_tag: Option<&'static str>,
    /// how far back the reader looks whatever the policies say (a container's activity
    /// horizon): the warm-up and the retention cover it too
    pub min_span: std::time::Duration,
}

impl std::fmt::Debug for StreamSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSeries")
            .field("db", &self.db)
            .field("measurement", &self.measurement)
            .field("name_tag", &self.name_tag)
            .field("tags", &self.tags)
            .field("excluded", &self.excluded)
            .field("inventory_tag", &self.inventory_tag)
            .field("min_span", &self.min_span)
            .finish_non_exhaustive()
    }
}

/// One stored point: its time, `value`, and the reader's extra field (NaN: not written).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoredPoint {
    pub time_ns: i64,
    pub value: f64,
    pub extra: f64,
}

/// How a window stores its points: as narrow as the points it holds allow.
trait Encoded: Copy {
    /// `None` when the point does not fit this encoding
    fn encode(p: StoredPoint) -> Option<Self>;
    fn decode(self) -> StoredPoint;
    fn time(&self) -> i64;
}

/// A point without the extra field: 16 bytes.
impl Encoded for (i64, f64) {
    fn encode(p: StoredPoint) -> Option<Self> {
        p.extra.is_nan().then_some((p.time_ns, p.value))
    }
    fn decode(self) -> StoredPoint {
        StoredPoint {
            time_ns: self.0,
            value: self.1,
            extra: f64::NAN,
        }
    }
    fn time(&self) -> i64 {
        self.0
    }
}

/// A point whose extra field is exactly an `f32` (a container's limit: a whole number of
/// bytes, mostly of mebibytes, or not written): 20 bytes.
#[derive(Clone, Copy, Debug)]
#[repr(C, packed)]
struct NarrowExtra {
    time_ns: i64,
    value: f64,
    extra: f32,
}

impl Encoded for NarrowExtra {
    fn encode(p: StoredPoint) -> Option<Self> {
        let narrow = p.extra as f32;
        (p.extra.is_nan() || f64::from(narrow) == p.extra).then_some(NarrowExtra {
            time_ns: p.time_ns,
            value: p.value,
            extra: narrow,
        })
    }
    fn decode(self) -> StoredPoint {
        StoredPoint {
            time_ns: self.time_ns,
            value: self.value,
            extra: f64::from(self.extra),
        }
    }
    fn time(&self) -> i64 {
        self.time_ns
    }
}

/// Any point: 24 bytes.
impl Encoded for StoredPoint {
    fn encode(p: StoredPoint) -> Option<Self> {
        Some(p)
    }
    fn decode(self) -> StoredPoint {
        self
    }
    fn time(&self) -> i64 {
        self.time_ns
    }
}

/// One series' points in time order, in the narrowest encoding that holds each of them
/// exactly (widened, all points at once, when a point does not fit). The capacity grows by
/// halves, not by doubling: a series holds about the same number of points from one minute to
/// the next, and a doubling would leave up to half of every window empty (most of the memory of
/// a large fleet); by halves a third at most, with few reallocations while a window fills.
#[derive(Debug)]
enum SeriesWindow {
    Plain(VecDeque<(i64, f64)>),
    NarrowExtra(VecDeque<NarrowExtra>),
    Extra(VecDeque<StoredPoint>),
}

impl Default for SeriesWindow {
    fn default() -> Self {
        SeriesWindow::Plain(VecDeque::new())
    }
}

/// `$body` with `$q` bound to the window's deque, whatever its encoding.
macro_rules! each {
    ($w:expr, $q:ident => $body:expr) => {
        match $w {
            SeriesWindow::Plain($q) => $body,
            SeriesWindow::NarrowExtra($q) => $body,
            SeriesWindow::Extra($q) => $body,
        }
    };
}

/// Stores `p` in `q` if its encoding holds it (else false, nothing changed): a point at the
/// same time has the fields it writes replaced (as InfluxDB does), a late point goes to its
/// place.
fn put<T: Encoded>(q: &mut VecDeque<T>, p: StoredPoint) -> bool {
    let i = match q.back() {
        Some(last) if last.time() >= p.time_ns => q.partition_point(|x| x.time() < p.time_ns),
        _ => q.len(),
    };
    if let Some(x) = q.get_mut(i).filter(|x| x.time() == p.time_ns) {
        let old = x.decode();
        let keep = |old: f64, new: f64| if new.is_nan() { old } else { new };
        let merged = StoredPoint {
            time_ns: p.time_ns,
            value: keep(old.value, p.value),
            extra: keep(old.extra, p.extra),
        };
        return match T::encode(merged) {
            Some(e) => {
                *x = e;
                true
            }
            None => false,
        };
    }
    let Some(e) = T::encode(p) else {
        return false;
    };
    if q.len() == q.capacity() {
        q.reserve_exact((q.len() / 2).max(4));
    }
    q.insert(i, e);
    true
}

fn widen<T: Encoded, U: Encoded>(q: &VecDeque<T>) -> Option<VecDeque<U>> {
    let mut wide = VecDeque::with_capacity(q.len() + 1);
    for p in q {
        wide.push_back(U::encode(p.decode())?);
    }
    Some(wide)
}

impl SeriesWindow {
    fn len(&self) -> usize {
        each!(self, q => q.len())
    }

    fn time(&self, i: usize) -> Option<i64> {
        each!(self, q => q.get(i).map(Encoded::time))
    }

    fn get(&self, i: usize) -> Option<StoredPoint> {
        each!(self, q => q.get(i).map(|p| p.decode()))
    }

    /// The index of the first point with a time for which `before` is false.
    fn partition_point(&self, before: impl Fn(i64) -> bool) -> usize {
        each!(self, q => q.partition_point(|p| before(p.time())))
    }

    /// The index of the first point later than `t`. A window ends at the newest point and
    /// starts a few points before the oldest a reader reads (the retention's margin): both ends
    /// are looked at before a binary search.
    fn first_after(&self, t: i64) -> usize {
        let len = self.len();
        if self.time(len.wrapping_sub(1)).is_none_or(|last| last <= t) {
            return len;
        }
        for i in 0..len.min(4) {
            if self.time(i).is_some_and(|ti| ti > t) {
                return i;
            }
        }
        self.partition_point(|x| x <= t)
    }

    fn holding(p: StoredPoint) -> Self {
        let mut s = SeriesWindow::default();
        s.insert(p);
        s
    }

    /// Stores a point (see [`put`]), first widening the encoding if the point needs it.
    fn insert(&mut self, p: StoredPoint) {
        loop {
            if each!(self, q => put(q, p)) {
                return;
            }
            let wider = match self {
                SeriesWindow::Plain(q) => widen(q).map(SeriesWindow::NarrowExtra),
                SeriesWindow::NarrowExtra(q) => widen(q).map(SeriesWindow::Extra),
                // holds every point: `put` does not refuse one
                SeriesWindow::Extra(_) => return,
            };
            match wider {
                Some(w) => *self = w,
                None => return,
            }
        }
    }

    fn prune(&mut self, oldest_ns: i64) {
        each!(self, q => {
            while q.front().is_some_and(|p| p.time() < oldest_ns) {
                q.pop_front();
            }
        })
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A group's kept tags: a key of [`Measurement::key_into`] and the tags it holds.
#[derive(Clone, Copy)]
struct KeyView<'a> {
    key: &'a [u8],
    tag_keys: &'a [Box<str>],
}

/// A series key: 8 bytes of the hash of the tags not kept, then the kept tags' values (but the
/// naming tag's) in the order of the measurement's `tag_keys`, each ended by 0xFF (a byte
/// UTF-8 never holds).
const HASH_LEN: usize = 8;
const END: u8 = 0xFF;

impl<'a> KeyView<'a> {
    fn tag(&self, key: &str) -> Option<&'a str> {
        let i = self.tag_keys.binary_search_by(|k| (**k).cmp(key)).ok()?;
        let v = self.key.get(HASH_LEN..)?.split(|b| *b == END).nth(i)?;
        std::str::from_utf8(v).ok().filter(|v| !v.is_empty())
    }

    /// `name` for the naming tag, else the key's value of the tag: the key read once.
    fn tags<const N: usize>(&self, keys: [&str; N], name: (&str, &'a str)) -> [Option<&'a str>; N] {
        let mut values: [&[u8]; 16] = [&[]; 16];
        let mut n = 0;
        for (slot, v) in values.iter_mut().zip(
            self.key
                .get(HASH_LEN..)
                .unwrap_or_default()
                .split(|b| *b == END),
        ) {
            *slot = v;
            n += 1;
        }
        keys.map(|k| {
            if k == name.0 {
                return Some(name.1).filter(|v| !v.is_empty());
            }
            let i = self.tag_keys.binary_search_by(|kk| (**kk).cmp(k)).ok()?;
            if i >= n {
                // more tags than the array holds: the slow path
                return self.tag(k);
            }
            let v = values.get(i)?;
            std::str::from_utf8(v).ok().filter(|v| !v.is_empty())
        })
    }
}

/// A kept series as a reader sees it: the tags its readers read, and its points.
#[derive(Clone, Copy)]
pub struct SeriesRef<'a> {
    group: KeyView<'a>,
    /// the naming tag and this series' value of it
    name: (&'a str, &'a str),
    window: &'a SeriesWindow,
}

impl<'a> SeriesRef<'a> {
    /// The tag's value, if it is one the readers read and the series carries it (InfluxQL
    /// compares a missing tag as the empty string).
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        if key == self.name.0 {
            return Some(self.name.1).filter(|v| !v.is_empty());
        }
        self.group.tag(key)
    }

    /// The values of several tags at once ([`SeriesRef::tag`] of each), the key read once.
    pub fn tags<const N: usize>(&self, keys: [&str; N]) -> [Option<&'a str>; N] {
        self.group.tags(keys, self.name)
    }

    /// The value of the naming tag (`metricname`, `name`).
    pub fn name(&self) -> &'a str {
        self.name.1
    }

    /// The points with `start_ns < time <= end_ns`, oldest first (InfluxQL's
    /// `time > start AND time <= end`).
    pub fn points(self, start_ns: i64, end_ns: i64) -> impl Iterator<Item = StoredPoint> + 'a {
        let w = self.window;
        let from = w.first_after(start_ns);
        let to = w.first_after(end_ns).max(from);
        (from..to).filter_map(move |i| w.get(i))
    }
}

/// The series that differ only in their naming tag (a container's CPU, memory and disk; a VM's
/// metrics), kept under one key: a reader decodes their tags once, and the key is stored once.
#[derive(Clone, Copy)]
pub struct GroupRef<'a> {
    group: KeyView<'a>,
    name_tag: &'a str,
    names: &'a [Box<str>],
    series: &'a [(u32, SeriesWindow)],
}

impl<'a> GroupRef<'a> {
    /// The values of the group's tags (the naming tag reads as missing).
    pub fn tags<const N: usize>(&self, keys: [&str; N]) -> [Option<&'a str>; N] {
        self.group.tags(keys, (self.name_tag, ""))
    }

    pub fn series(self) -> impl Iterator<Item = SeriesRef<'a>> + 'a {
        self.series.iter().map(move |(id, window)| SeriesRef {
            group: self.group,
            name: (
                self.name_tag,
                self.names.get(*id as usize).map_or("", |n| &**n),
            ),
            window,
        })
    }
}

/// What one reader keeps of a measurement.
struct Reader {
    names: NameFilter,
    excluded: Vec<(&'static str, &'static str)>,
    inventory_tag: Option<&'static str>,
}

/// The series of one (database, measurement), with the filters of every reader of it.
pub(super) struct Measurement {
    pub(super) name_tag: &'static str,
    readers: Vec<Reader>,
    /// every tag a reader reads but the naming tag, sorted
    tag_keys: Vec<Box<str>>,
    /// the naming tag's values kept, by their place (a group's series name theirs by it)
    names: Vec<Box<str>>,
    name_ids: FxHashMap<Box<str>, u32>,
    groups: HashMap<Box<[u8]>, Vec<(u32, SeriesWindow)>, rustc_hash::FxBuildHasher>,
}

impl Measurement {
    /// `None` when no reader keeps the series named `name` with these tags (sorted by key),
    /// else the extra field kept beside `value`. `inventory`: the VM inventory's addresses,
    /// `None` before the first tick loaded it.
    fn keeps<K: AsRef<str>, V: AsRef<str>>(
        &self,
        name: &str,
        tags: &[(K, V)],
        inventory: Option<&FxHashSet<Box<str>>>,
    ) -> Option<Option<&'static str>> {
        let value = |key: &str| tag_value(tags, key).unwrap_or_default();
        let mut kept = None;
        for r in &self.readers {
            let Some(extra) = (r.names)(name) else {
                continue;
            };
            if r.excluded.iter().any(|(k, v)| value(k) == *v) {
                continue;
            }
            if let (Some(tag), Some(inv)) = (r.inventory_tag, inventory)
                && !inv.contains(value(tag))
            {
                continue;
            }
            if extra.is_some() {
                return Some(extra);
            }
            kept = Some(None);
        }
        kept
    }

    /// True when a reader reads series named `name` (before their other tags are looked at).
    pub(super) fn reads(&self, name: &str) -> bool {
        self.readers.iter().any(|r| (r.names)(name).is_some())
    }

    /// True when a reader reads `field` of the series named `name`: `value`, or the extra field
    /// it keeps beside (a remote-written series carries one field: most are skipped here,
    /// before their tags are looked at).
    pub(super) fn reads_field(&self, name: &str, field: &str) -> bool {
        self.readers
            .iter()
            .any(|r| (r.names)(name).is_some_and(|extra| field == "value" || extra == Some(field)))
    }

    /// The key of the group of the series with these tags (sorted by key), into `buf`: one
    /// walk of the tags beside the (sorted) kept keys.
    fn key_into<K: AsRef<str>, V: AsRef<str>>(&self, tags: &[(K, V)], buf: &mut Vec<u8>) {
        let mut rest = FxHasher::default();
        buf.clear();
        buf.extend_from_slice(&[0; HASH_LEN]);
        let mut kept = self.tag_keys.iter().peekable();
        for (k, v) in tags {
            let (k, v) = (k.as_ref(), v.as_ref());
            if k == self.name_tag {
                continue;
            }
            // kept keys the series does not carry read as ""
            while kept.next_if(|kk| &***kk < k).is_some() {
                buf.push(END);
            }
            if kept.next_if(|kk| &***kk == k).is_some() {
                buf.extend_from_slice(v.as_bytes());
                buf.push(END);
            } else {
                (k, v).hash(&mut rest);
            }
        }
        for _ in kept {
            buf.push(END);
        }
        buf[..HASH_LEN].copy_from_slice(&rest.finish().to_le_bytes());
    }
}

/// The place of the naming tag's value `name` among a measurement's `names`, kept from now on.
fn intern(names: &mut Vec<Box<str>>, ids: &mut FxHashMap<Box<str>, u32>, name: &str) -> u32 {
    if let Some(id) = ids.get(name) {
        return *id;
    }
    let id = u32::try_from(names.len()).unwrap_or(u32::MAX);
    names.push(name.into());
    ids.insert(name.into(), id);
    id
}

/// The value of tag `key` among `tags` (sorted by key).
fn tag_value<'t, K: AsRef<str>, V: AsRef<str>>(tags: &'t [(K, V)], key: &str) -> Option<&'t str> {
    let i = tags.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok()?;
    tags.get(i).map(|(_, v)| v.as_ref())
}

/// Whether a kept group still passes its readers' inventory filters.
fn in_inventory(readers: &[Reader], group: KeyView<'_>, inventory: &FxHashSet<Box<str>>) -> bool {
    readers.iter().any(|r| {
        r.inventory_tag
            .is_none_or(|t| inventory.contains(group.tag(t).unwrap_or_default()))
    })
}

/// Why a point was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// a new series while `max_series` are kept
    MaxSeries,
    /// older than the retention: no window can still contain it
    TooOld,
}

/// Every kept series, by database and measurement.
pub struct Windows {
    /// a handful: found by a walk, by the place [`Windows::find`] gives
    pub(super) by_measurement: Vec<((String, String), Measurement)>,
    pub(super) series: u64,
    pub(super) max_series: u64,
    /// the VM inventory's addresses (for the readers' `inventory_tag`); `None`: not loaded yet,
    /// every address is kept
    inventory: Option<FxHashSet<Box<str>>>,
    key: Vec<u8>,
}

impl Windows {
    pub fn new(specs: &[StreamSeries], max_series: u64) -> Self {
        let mut by_measurement: Vec<((String, String), Measurement)> = Vec::new();
        for s in specs {
            let at = match by_measurement
                .iter()
                .position(|((d, m), _)| *d == s.db && *m == s.measurement)
            {
                Some(at) => at,
                None => {
                    let m = Measurement {
                        name_tag: s.name_tag,
                        readers: Vec::new(),
                        tag_keys: Vec::new(),
                        names: Vec::new(),
                        name_ids: FxHashMap::default(),
                        groups: HashMap::default(),
                    };
                    by_measurement.push(((s.db.clone(), s.measurement.clone()), m));
                    by_measurement.len() - 1
                }
            };
            let m = &mut by_measurement[at].1;
            m.readers.push(Reader {
                names: s.names.clone(),
                excluded: s.excluded.clone(),
                inventory_tag: s.inventory_tag,
            });
            let keys = s.tags.iter().map(String::as_str).chain(s.inventory_tag);
            for k in keys.filter(|k| *k != s.name_tag) {
                if !m.tag_keys.iter().any(|kk| &**kk == k) {
                    m.tag_keys.push(k.into());
                }
            }
            m.tag_keys.sort();
        }
        Self {
            by_measurement,
            series: 0,
            max_series,
            inventory: None,
            key: Vec::new(),
        }
    }

    /// (`db`, `measurement`) and its place, for [`Windows::keeps_at`] and
    /// [`Windows::insert_at`]: an ingest looks it up once per series.
    pub(super) fn find(&self, db: &str, measurement: &str) -> Option<(usize, &Measurement)> {
        self.by_measurement
            .iter()
            .enumerate()
            .find(|(_, ((d, m), _))| d == db && m == measurement)
            .map(|(at, (_, m))| (at, m))
    }

    pub(super) fn measurement(&self, db: &str, measurement: &str) -> Option<&Measurement> {
        self.find(db, measurement).map(|(_, m)| m)
    }

    /// The extra field to keep beside `value` when a reader keeps the series of `db`.
    /// `measurement` with these tags (sorted by key), else `None`.
    #[cfg(test)]
    pub(super) fn keeps<K: AsRef<str>, V: AsRef<str>>(
        &self,
        db: &str,
        measurement: &str,
        tags: &[(K, V)],
    ) -> Option<Option<&'static str>> {
        self.keeps_at(self.find(db, measurement)?.0, tags)
    }

    /// [`Windows::keeps`] of the measurement at `at` ([`Windows::find`]).
    pub(super) fn keeps_at<K: AsRef<str>, V: AsRef<str>>(
        &self,
        at: usize,
        tags: &[(K, V)],
    ) -> Option<Option<&'static str>> {
        let (_, m) = self.by_measurement.get(at)?;
        let name = tag_value(tags, m.name_tag)?;
        m.keeps(name, tags, self.inventory.as_ref())
    }

    /// Stores one point of the series with `tags` (sorted by key), which a reader keeps
    /// ([`Windows::keeps`]).
    #[cfg(test)]
    pub(super) fn insert<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        db: &str,
        measurement: &str,
        tags: &[(K, V)],
        point: StoredPoint,
        oldest_ns: i64,
    ) -> Result<(), Refused> {
        match self.find(db, measurement) {
            Some((at, _)) => self.insert_at(at, tags, point, oldest_ns),
            None => Ok(()),
        }
    }

    /// [`Windows::insert`] into the measurement at `at` ([`Windows::find`]).
    pub(super) fn insert_at<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        at: usize,
        tags: &[(K, V)],
        point: StoredPoint,
        oldest_ns: i64,
    ) -> Result<(), Refused> {
        if point.time_ns < oldest_ns {
            return Err(Refused::TooOld);
        }
        let (count, max) = (self.series, self.max_series);
        let Some((_, m)) = self.by_measurement.get_mut(at) else {
            return Ok(());
        };
        m.key_into(tags, &mut self.key);
        let name = tag_value(tags, m.name_tag).unwrap_or_default();
        let Measurement {
            groups,
            names,
            name_ids,
            ..
        } = m;
        let Some(group) = groups.get_mut(&self.key[..]) else {
            if count >= max {
                return Err(Refused::MaxSeries);
            }
            let series = (intern(names, name_ids, name), SeriesWindow::holding(point));
            groups.insert(self.key.as_slice().into(), vec![series]);
            self.series += 1;
            return Ok(());
        };
        if let Some((_, s)) = group
            .iter_mut()
            .find(|(id, _)| names.get(*id as usize).is_some_and(|n| **n == *name))
        {
            s.insert(point);
            s.prune(oldest_ns);
            return Ok(());
        }
        if count >= max {
            return Err(Refused::MaxSeries);
        }
        // a group holds a few series: grown one at a time, not doubled
        group.reserve_exact(1);
        group.push((intern(names, name_ids, name), SeriesWindow::holding(point)));
        self.series += 1;
        Ok(())
    }

    /// The VM inventory's addresses: series whose readers want only inventory addresses and
    /// carry another are dropped (at the next [`Windows::prune`]) and no longer stored.
    pub fn set_inventory(&mut self, addresses: FxHashSet<Box<str>>) {
        self.inventory = Some(addresses);
    }

    /// Drops the points older than `oldest_ns`, the series left without any, and the series
    /// outside the inventory.
    pub(super) fn prune(&mut self, oldest_ns: i64) {
        let mut left = 0u64;
        let inventory = self.inventory.as_ref();
        for (_, m) in &mut self.by_measurement {
            let (readers, tag_keys) = (&m.readers, &m.tag_keys[..]);
            m.groups.retain(|key, group| {
                if inventory
                    .is_some_and(|inv| !in_inventory(readers, KeyView { key, tag_keys }, inv))
                {
                    return false;
                }
                group.retain_mut(|(_, s)| {
                    s.prune(oldest_ns);
                    !s.is_empty()
                });
                left += group.len() as u64;
                !group.is_empty()
            });
        }
        self.series = left;
    }

    /// Every series of (`db`, `measurement`).
    pub fn series_of<'a>(
        &'a self,
        db: &str,
        measurement: &str,
    ) -> impl Iterator<Item = SeriesRef<'a>> + 'a {
        self.groups_of(db, measurement).flat_map(GroupRef::series)
    }

    /// Every group of series of (`db`, `measurement`) that differ only in their naming tag.
    pub fn groups_of<'a>(
        &'a self,
        db: &str,
        measurement: &str,
    ) -> impl Iterator<Item = GroupRef<'a>> + 'a {
        self.measurement(db, measurement).into_iter().flat_map(|m| {
            m.groups.iter().map(|(key, series)| GroupRef {
                group: KeyView {
                    key,
                    tag_keys: &m.tag_keys,
                },
                name_tag: m.name_tag,
                names: &m.names,
                series,
            })
        })
    }

    pub fn series_count(&self) -> u64 {
        self.series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(t: i64, v: f64) -> StoredPoint {
        StoredPoint {
            time_ns: t,
            value: v,
            extra: f64::NAN,
        }
    }

    fn spec() -> StreamSeries {
        StreamSeries {
            db: "d".into(),
            measurement: "m".into(),
            name_tag: "metricname",
            names: Arc::new(|n: &str| match n {
                "cpu" => Some(None),
                "mem" => Some(Some("limit")),
                _ => None,
            }),
            tags: vec!["ip".into()],
            excluded: vec![("job", "skip")],
            inventory_tag: Some("ip"),
            min_span: std::time::Duration::ZERO,
        }
    }

    const CPU: &[(&str, &str)] = &[("ip", "10.0.0.1"), ("metricname", "cpu")];

    fn values(w: &Windows) -> Vec<(i64, f64)> {
        w.series_of("d", "m")
            .flat_map(|s| s.points(i64::MIN, i64::MAX))
            .map(|p| (p.time_ns, p.value))
            .collect()
    }

    #[test]
    fn same_time_replaces_late_points_go_in_order() {
        let mut w = Windows::new(&[spec()], 10);
        for (t, v) in [(10, 1.0), (30, 3.0), (20, 2.0), (30, 4.0), (5, 0.5)] {
            w.insert("d", "m", CPU, pt(t, v), 0).unwrap();
        }
        assert_eq!(values(&w), vec![(5, 0.5), (10, 1.0), (20, 2.0), (30, 4.0)]);
        let s = w.series_of("d", "m").next().unwrap();
        let window: Vec<i64> = s.points(10, 30).map(|p| p.time_ns).collect();
        assert_eq!(window, vec![20, 30], "(start, end]");
    }

    #[test]
    fn a_range_reads_the_same_points_as_a_filter_at_every_bound() {
        let mut w = Windows::new(&[spec()], 10);
        let times: Vec<i64> = (0..12).map(|i| i * 10).collect();
        for t in &times {
            w.insert("d", "m", CPU, pt(*t, *t as f64), 0).unwrap();
        }
        let s = w.series_of("d", "m").next().unwrap();
        for start in -5..=125 {
            for end in [start, start + 7, start + 35, start + 200, 115, 110] {
                let got: Vec<i64> = s.points(start, end).map(|p| p.time_ns).collect();
                let want: Vec<i64> = times
                    .iter()
                    .copied()
                    .filter(|t| *t > start && *t <= end)
                    .collect();
                assert_eq!(got, want, "({start}, {end}]");
            }
        }
    }

    #[test]
    fn a_write_replaces_only_the_fields_it_brings() {
        let mem = &[("ip", "10.0.0.1"), ("metricname", "mem")];
        let mut w = Windows::new(&[spec()], 10);
        w.insert("d", "m", mem, pt(10, 1.0), 0).unwrap();
        let extra = |t, e| StoredPoint {
            time_ns: t,
            value: f64::NAN,
            extra: e,
        };
        // the limit as its own sample (remote write), at the same and at a later time
        w.insert("d", "m", mem, extra(10, 512.0), 0).unwrap();
        w.insert("d", "m", mem, extra(20, 1024.0), 0).unwrap();
        w.insert("d", "m", mem, pt(20, 2.0), 0).unwrap();
        let s = w.series_of("d", "m").next().unwrap();
        let got: Vec<(i64, f64, f64)> = s
            .points(0, 100)
            .map(|p| (p.time_ns, p.value, p.extra))
            .collect();
        assert_eq!(got, vec![(10, 1.0, 512.0), (20, 2.0, 1024.0)]);
    }

    #[test]
    fn limits_are_stored_narrow_while_exact_and_widened_when_not() {
        assert_eq!(std::mem::size_of::<NarrowExtra>(), 20);
        let mem = &[("ip", "10.0.0.1"), ("metricname", "mem")];
        let mut w = Windows::new(&[spec()], 10);
        let at = |t, v, e| StoredPoint {
            time_ns: t,
            value: v,
            extra: e,
        };
        w.insert("d", "m", mem, at(10, 0.1, 1073741824.0), 0)
            .unwrap();
        w.insert("d", "m", mem, at(20, 0.2, f64::NAN), 0).unwrap();
        let encoding = |w: &Windows| {
            let m = w.measurement("d", "m").unwrap();
            let g = m.groups.values().next().unwrap();
            match &g[0].1 {
                SeriesWindow::Plain(_) => "plain",
                SeriesWindow::NarrowExtra(_) => "narrow",
                SeriesWindow::Extra(_) => "wide",
            }
        };
        assert_eq!(encoding(&w), "narrow");
        // a limit an f32 cannot hold: every point is widened, none changes
        w.insert("d", "m", mem, at(30, 0.3, 1073741824.1), 0)
            .unwrap();
        assert_eq!(encoding(&w), "wide");
        let got: Vec<(i64, f64, f64)> = w
            .series_of("d", "m")
            .next()
            .unwrap()
            .points(0, 100)
            .map(|p| (p.time_ns, p.value, p.extra))
            .collect();
        assert_eq!(got[0], (10, 0.1, 1073741824.0));
        assert_eq!((got[1].0, got[1].1, got[1].2.is_nan()), (20, 0.2, true));
        assert_eq!(got[2], (30, 0.3, 1073741824.1));
    }

    #[test]
    fn only_the_read_tags_are_kept_and_series_apart_in_the_store_stay_apart() {
        let mut w = Windows::new(&[spec()], 10);
        let a = [("ip", "10.0.0.1"), ("job", "api"), ("metricname", "cpu")];
        let b = [("ip", "10.0.0.1"), ("job", "uaa"), ("metricname", "cpu")];
        w.insert("d", "m", &a, pt(10, 1.0), 0).unwrap();
        w.insert("d", "m", &b, pt(10, 2.0), 0).unwrap();
        assert_eq!(
            w.series_count(),
            2,
            "job differs: two series, as in the store"
        );
        let mut seen: Vec<f64> = values(&w).into_iter().map(|(_, v)| v).collect();
        seen.sort_by(f64::total_cmp);
        assert_eq!(seen, vec![1.0, 2.0], "neither point replaced the other");
        for s in w.series_of("d", "m") {
            assert_eq!(
                s.tags(["metricname", "job", "ip"]),
                [Some("cpu"), None, Some("10.0.0.1")]
            );
            assert_eq!(s.tag("ip"), Some("10.0.0.1"));
            assert_eq!(s.tag("metricname"), Some("cpu"));
            assert_eq!(s.tag("job"), None, "a tag no reader reads is not kept");
        }
    }

    #[test]
    fn a_key_holds_each_kept_tag_in_its_place_whichever_tags_are_missing() {
        let spec = StreamSeries {
            tags: vec!["cell".into(), "ip".into(), "zone".into()],
            inventory_tag: None,
            ..spec()
        };
        let mut w = Windows::new(&[spec], 10);
        // unread tags before, between and after the kept ones; kept ones missing at each end
        let series: [&[(&str, &str)]; 4] = [
            &[
                ("a", "1"),
                ("cell", "c1"),
                ("ip", "x"),
                ("metricname", "cpu"),
                ("zone", "z1"),
            ],
            &[("ip", "x"), ("job", "api"), ("metricname", "cpu")],
            &[("cell", "c2"), ("metricname", "cpu"), ("zz", "9")],
            &[("metricname", "cpu")],
        ];
        for (i, tags) in series.iter().enumerate() {
            w.insert("d", "m", tags, pt(10, i as f64), 0).unwrap();
        }
        let mut seen: Vec<_> = w
            .series_of("d", "m")
            .map(|s| {
                let v = s.points(0, 100).next().map(|p| p.value as usize);
                (v, s.tags(["cell", "ip", "zone", "metricname"]))
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (Some(0), [Some("c1"), Some("x"), Some("z1"), Some("cpu")]),
                (Some(1), [None, Some("x"), None, Some("cpu")]),
                (Some(2), [Some("c2"), None, None, Some("cpu")]),
                (Some(3), [None, None, None, Some("cpu")]),
            ]
        );
        // the unread tags still keep series apart, wherever they sort
        for (i, tags) in [
            [
                ("cell", "c1"),
                ("ip", "x"),
                ("metricname", "cpu"),
                ("zz", "1"),
            ],
            [
                ("cell", "c1"),
                ("ip", "x"),
                ("metricname", "cpu"),
                ("zz", "2"),
            ],
            [
                ("a", "1"),
                ("cell", "c1"),
                ("ip", "x"),
                ("metricname", "cpu"),
            ],
            [
                ("a", "2"),
                ("cell", "c1"),
                ("ip", "x"),
                ("metricname", "cpu"),
            ],
        ]
        .iter()
        .enumerate()
        {
            w.insert("d", "m", tags, pt(20, i as f64), 0).unwrap();
        }
        assert_eq!(w.series_count(), 8);
    }

    #[test]
    fn a_field_is_read_when_it_is_value_or_the_extra_of_its_name() {
        let w = Windows::new(&[spec()], 10);
        let m = w.measurement("d", "m").unwrap();
        assert!(m.reads_field("cpu", "value"));
        assert!(!m.reads_field("cpu", "limit"), "cpu keeps no extra field");
        assert!(m.reads_field("mem", "value"));
        assert!(m.reads_field("mem", "limit"));
        assert!(!m.reads_field("mem", "total"));
        assert!(!m.reads_field("io", "value"), "a name no reader reads");
    }

    #[test]
    fn readers_filters_names_exclusions_and_the_inventory() {
        let mut w = Windows::new(&[spec()], 10);
        assert_eq!(w.keeps("d", "m", CPU), Some(None));
        assert_eq!(
            w.keeps("d", "m", &[("ip", "x"), ("metricname", "mem")]),
            Some(Some("limit"))
        );
        assert_eq!(
            w.keeps("d", "m", &[("ip", "x"), ("metricname", "io")]),
            None
        );
        assert_eq!(
            w.keeps(
                "d",
                "m",
                &[("ip", "x"), ("job", "skip"), ("metricname", "cpu")]
            ),
            None,
            "excluded"
        );
        assert_eq!(w.keeps("d", "other", CPU), None);
        w.insert("d", "m", CPU, pt(10, 1.0), 0).unwrap();
        let other = [("ip", "10.0.0.2"), ("metricname", "cpu")];
        w.insert("d", "m", &other, pt(10, 1.0), 0).unwrap();
        w.set_inventory(["10.0.0.2".into()].into_iter().collect());
        assert_eq!(w.keeps("d", "m", CPU), None, "not in the inventory");
        assert_eq!(w.keeps("d", "m", &other), Some(None));
        w.prune(0);
        assert_eq!(
            w.series_count(),
            1,
            "the series outside the inventory is dropped"
        );
        assert_eq!(
            w.series_of("d", "m").next().unwrap().tag("ip"),
            Some("10.0.0.2")
        );
    }

    #[test]
    fn series_that_differ_only_in_their_name_share_one_group() {
        let mut w = Windows::new(&[spec()], 10);
        let mem = [("ip", "10.0.0.1"), ("metricname", "mem")];
        let other = [("ip", "10.0.0.2"), ("metricname", "cpu")];
        w.insert("d", "m", CPU, pt(10, 1.0), 0).unwrap();
        w.insert("d", "m", &mem, pt(10, 2.0), 0).unwrap();
        w.insert("d", "m", &other, pt(10, 3.0), 0).unwrap();
        assert_eq!(w.series_count(), 3, "max_series counts series, not groups");
        type Group<'a> = (Option<&'a str>, Vec<(&'a str, f64)>);
        let mut groups: Vec<Group<'_>> = w
            .groups_of("d", "m")
            .map(|g| {
                let [ip, name] = g.tags(["ip", "metricname"]);
                assert_eq!(name, None, "a group has no name of its own");
                let series = g
                    .series()
                    .map(|s| (s.name(), s.points(0, 100).map(|p| p.value).sum()))
                    .collect();
                (ip, series)
            })
            .collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            groups,
            vec![
                (Some("10.0.0.1"), vec![("cpu", 1.0), ("mem", 2.0)]),
                (Some("10.0.0.2"), vec![("cpu", 3.0)]),
            ]
        );
        // a series of a group that has no points left goes, the group stays while one has
        w.insert("d", "m", &mem, pt(20, 2.0), 0).unwrap();
        w.prune(15);
        assert_eq!(w.series_count(), 1);
        let names: Vec<&str> = w.series_of("d", "m").map(|s| s.name()).collect();
        assert_eq!(names, vec!["mem"]);
    }

    #[test]
    fn max_series_refuses_new_series_only() {
        let mut w = Windows::new(&[spec()], 1);
        let b = [("ip", "10.0.0.2"), ("metricname", "cpu")];
        w.insert("d", "m", CPU, pt(1, 1.0), 0).unwrap();
        assert_eq!(
            w.insert("d", "m", &b, pt(1, 1.0), 0),
            Err(Refused::MaxSeries)
        );
        w.insert("d", "m", CPU, pt(2, 1.0), 0).unwrap();
        assert_eq!(w.series_count(), 1);
        w.prune(10);
        assert_eq!(w.series_count(), 0, "a series without points is dropped");
        w.insert("d", "m", &b, pt(11, 1.0), 10).unwrap();
    }
}
