//! The points of the series the collectors read, per series, for the longest window they need.
//! The readers (`plugins/common/cf-metrics`) fold them with the same rules as the store's
//! aggregates; this file only keeps points the way InfluxDB 1.x stores them: one point per
//! series and timestamp (a later write of the same timestamp replaces the value), in time order
//! whatever order they arrive in.

use std::collections::{HashMap, VecDeque};
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

/// One series: its tags (sorted by key, as InfluxDB's series key) and its points in time order.
#[derive(Debug)]
pub struct SeriesWindow {
    tags: Box<[(Box<str>, Box<str>)]>,
    points: VecDeque<StoredPoint>,
}

impl SeriesWindow {
    /// The tag's value; a tag the series does not carry reads as `None` (InfluxQL compares it
    /// as the empty string).
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .and_then(|i| self.tags.get(i))
            .map(|(_, v)| &**v)
    }

    /// The points with `start_ns < time <= end_ns`, oldest first (InfluxQL's
    /// `time > start AND time <= end`).
    pub fn points(&self, start_ns: i64, end_ns: i64) -> impl Iterator<Item = &StoredPoint> {
        let from = self.points.partition_point(|p| p.time_ns <= start_ns);
        let to = self.points.partition_point(|p| p.time_ns <= end_ns);
        self.points.range(from..to.max(from))
    }

    /// Stores a point: a point at the same time replaces the value (and the extra field, when
    /// written), as InfluxDB does; a late point goes to its place.
    fn insert(&mut self, p: StoredPoint) {
        match self.points.back() {
            None => self.points.push_back(p),
            Some(last) if last.time_ns < p.time_ns => self.points.push_back(p),
            _ => {
                let i = self.points.partition_point(|q| q.time_ns < p.time_ns);
                match self.points.get_mut(i) {
                    Some(q) if q.time_ns == p.time_ns => {
                        q.value = p.value;
                        if !p.extra.is_nan() {
                            q.extra = p.extra;
                        }
                    }
                    _ => self.points.insert(i, p),
                }
            }
        }
    }

    fn prune(&mut self, oldest_ns: i64) {
        while self.points.front().is_some_and(|p| p.time_ns < oldest_ns) {
            self.points.pop_front();
        }
    }
}

/// The series of one (database, measurement), with the filters of every reader of it.
pub(super) struct Measurement {
    pub(super) name_tag: &'static str,
    pub(super) filters: Vec<NameFilter>,
    pub(super) series: HashMap<Box<str>, SeriesWindow>,
}

impl Measurement {
    /// `None` when no reader keeps the series named `name`, else its extra field.
    pub(super) fn wants(&self, name: &str) -> Option<Option<&'static str>> {
        let mut kept = None;
        for f in &self.filters {
            match f(name) {
                Some(Some(extra)) => return Some(Some(extra)),
                Some(None) => kept = Some(None),
                None => {}
            }
        }
        kept
    }
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
    pub(super) by_measurement: HashMap<(String, String), Measurement>,
    pub(super) series: u64,
    pub(super) max_series: u64,
}

impl Windows {
    pub fn new(specs: &[StreamSeries], max_series: u64) -> Self {
        let mut by_measurement: HashMap<(String, String), Measurement> = HashMap::new();
        for s in specs {
            let m = by_measurement
                .entry((s.db.clone(), s.measurement.clone()))
                .or_insert_with(|| Measurement {
                    name_tag: s.name_tag,
                    filters: Vec::new(),
                    series: HashMap::new(),
                });
            m.filters.push(s.names.clone());
        }
        Self {
            by_measurement,
            series: 0,
            max_series,
        }
    }

    pub(super) fn measurement(&self, db: &str, measurement: &str) -> Option<&Measurement> {
        // a borrowed two-part key without allocating: there are only a handful of measurements
        self.by_measurement
            .iter()
            .find(|((d, m), _)| d == db && m == measurement)
            .map(|(_, m)| m)
    }

    /// Stores one point of the series `key` (the tags sorted, `k=v` joined) with `tags`.
    pub(super) fn insert(
        &mut self,
        db: &str,
        measurement: &str,
        key: &str,
        tags: impl FnOnce() -> Box<[(Box<str>, Box<str>)]>,
        point: StoredPoint,
        oldest_ns: i64,
    ) -> Result<(), Refused> {
        if point.time_ns < oldest_ns {
            return Err(Refused::TooOld);
        }
        let (count, max) = (self.series, self.max_series);
        let Some(m) = self
            .by_measurement
            .iter_mut()
            .find(|((d, m), _)| d == db && m == measurement)
            .map(|(_, m)| m)
        else {
            return Ok(());
        };
        if let Some(s) = m.series.get_mut(key) {
            s.insert(point);
            s.prune(oldest_ns);
            return Ok(());
        }
        if count >= max {
            return Err(Refused::MaxSeries);
        }
        let mut s = SeriesWindow {
            tags: tags(),
            points: VecDeque::new(),
        };
        s.insert(point);
        m.series.insert(key.into(), s);
        self.series += 1;
        Ok(())
    }

    /// Drops the points older than `oldest_ns`, and the series left without any.
    pub(super) fn prune(&mut self, oldest_ns: i64) {
        let mut left = 0u64;
        for m in self.by_measurement.values_mut() {
            m.series.retain(|_, s| {
                s.prune(oldest_ns);
                !s.points.is_empty()
            });
            left += m.series.len() as u64;
        }
        self.series = left;
    }

    /// Every series of (`db`, `measurement`).
    pub fn series_of<'a>(
        &'a self,
        db: &str,
        measurement: &str,
    ) -> impl Iterator<Item = &'a SeriesWindow> + 'a {
        self.measurement(db, measurement)
            .into_iter()
            .flat_map(|m| m.series.values())
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
            names: Arc::new(|n: &str| (n == "cpu").then_some(None)),
            min_span: std::time::Duration::ZERO,
        }
    }

    fn values(w: &Windows) -> Vec<(i64, f64)> {
        w.series_of("d", "m")
            .flat_map(|s| s.points(i64::MIN, i64::MAX))
            .map(|p| (p.time_ns, p.value))
            .collect()
    }

    #[test]
    fn same_time_replaces_late_points_go_in_order() {
        let mut w = Windows::new(&[spec()], 10);
        let tags = || -> Box<[(Box<str>, Box<str>)]> { Box::new([]) };
        for (t, v) in [(10, 1.0), (30, 3.0), (20, 2.0), (30, 4.0), (5, 0.5)] {
            w.insert("d", "m", "k", tags, pt(t, v), 0).unwrap();
        }
        assert_eq!(values(&w), vec![(5, 0.5), (10, 1.0), (20, 2.0), (30, 4.0)]);
        let s = w.series_of("d", "m").next().unwrap();
        let window: Vec<i64> = s.points(10, 30).map(|p| p.time_ns).collect();
        assert_eq!(window, vec![20, 30], "(start, end]");
    }

    #[test]
    fn max_series_refuses_new_series_only() {
        let mut w = Windows::new(&[spec()], 1);
        let tags = || -> Box<[(Box<str>, Box<str>)]> { Box::new([]) };
        w.insert("d", "m", "a", tags, pt(1, 1.0), 0).unwrap();
        assert_eq!(
            w.insert("d", "m", "b", tags, pt(1, 1.0), 0),
            Err(Refused::MaxSeries)
        );
        w.insert("d", "m", "a", tags, pt(2, 1.0), 0).unwrap();
        assert_eq!(w.series_count(), 1);
        w.prune(10);
        assert_eq!(w.series_count(), 0, "a series without points is dropped");
        w.insert("d", "m", "b", tags, pt(11, 1.0), 10).unwrap();
    }
}
