//! Memory, measured by a counting allocator: snappy and gzip bombs are refused without
//! allocating more than the caller's limit, and decoding typical bodies allocates nothing per
//! point or series. Plus the gzip helper's faults.

use monit_wire::gzip::{self, GzipError};
use monit_wire::line::Lines;
use monit_wire::remote_write::{self, RemoteWriteError, proto};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

/// Counts this thread's live heap bytes and their peak; tests run on threads of their own, so
/// each sees only its own allocations.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grew(n: usize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get() + n;
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

fn shrank(n: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(n)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result and the most heap it held at once beyond what was live
/// before.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

fn gzip_of(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn the_counter_sees_allocations() {
    let (v, peak) = peak_of(|| vec![1u8; 10_000]);
    assert_eq!(v.len(), 10_000);
    assert!(peak >= 10_000, "peak {peak}");
}

// ---- bombs ----------------------------------------------------------------------------------

#[test]
fn a_gzip_bomb_is_refused_holding_no_more_than_the_limit() {
    // 1 MiB of zeros is about 1 KiB of gzip; 1024 members of it inflate to 1 GiB.
    let member = gzip_of(&vec![0u8; 1 << 20]);
    let bomb: Vec<u8> = member.repeat(1024);
    assert!(bomb.len() < 2 << 20, "{}", bomb.len());
    let limit = 4 << 20;
    let (r, peak) = peak_of(|| gzip::decompress(&bomb, limit));
    let e = r.unwrap_err();
    assert!(
        matches!(e, GzipError::TooLarge { limit: l } if l == limit),
        "{e}"
    );
    assert_eq!(e.reason(), "too_large");
    assert_eq!(
        e.to_string(),
        "gzip body decompresses to more than the limit of 4194304 bytes"
    );
    // the output never passed the limit; the rest is the inflater's own state
    eprintln!(
        "gzip bomb of {} bytes, limit {limit}: peak heap {peak}",
        bomb.len()
    );
    assert!(
        peak >= limit / 2,
        "the output grew toward the limit: {peak}"
    );
    assert!(peak <= limit + (256 << 10), "peak {peak}");
}

#[test]
fn a_snappy_bomb_is_refused_before_any_allocation() {
    // A real bomb: 64 MiB of zeros compress to about 3 MiB.
    let zeros = vec![0u8; 64 << 20];
    let bomb = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
    drop(zeros);
    let (r, peak) = peak_of(|| remote_write::decompress(&bomb, 1 << 20));
    assert!(
        matches!(r, Err(RemoteWriteError::TooLarge { declared, .. }) if declared == 64 << 20),
        "{r:?}"
    );
    assert_eq!(peak, 0);
}

#[test]
fn a_body_within_the_limit_allocates_its_size_once() {
    let pb_len = 3 << 20;
    let data: Vec<u8> = (0..pb_len).map(|i| (i % 251) as u8).collect();
    let body = snap::raw::Encoder::new().compress_vec(&data).unwrap();
    let (r, peak) = peak_of(|| remote_write::decompress(&body, pb_len));
    assert_eq!(r.unwrap().len(), pb_len);
    assert!(peak <= pb_len + 4096, "peak {peak}");

    let gz = gzip_of(&data);
    let (r, peak) = peak_of(|| gzip::decompress(&gz, pb_len));
    assert_eq!(r.unwrap(), data);
    assert!(peak <= pb_len + (256 << 10), "peak {peak}");
}

// ---- no allocation per point ----------------------------------------------------------------

#[test]
fn parsing_paasta_lines_allocates_nothing() {
    let mut body = String::new();
    for i in 0..2000 {
        body += &format!(
            "cf_metrics,ip=10.0.{}.{},metricname=cpuStats.core.0,origin=cf value={}.5 1700000000{:09}\n",
            i / 250,
            i % 250,
            i % 100,
            i
        );
        body += &format!(
            "container_metrics,application_id=guid-{i},application_index=0,application_name=app-{i},\
             cell_ip=10.0.16.21,container_id=/garden/c-{i},container_interface=c-{i},machine=cell,\
             name=cpu_usage_total app_mem=1073741824,app_disk=1073741824,value={i} 1700000000\n"
        );
    }
    let (sum, peak) = peak_of(|| {
        let mut sum = 0.0;
        for p in Lines::new(body.as_bytes(), 0) {
            let p = p.unwrap();
            sum += p.numeric_fields().map(|(_, v)| v).sum::<f64>();
            assert!(p.tag("ip").is_some() || p.tag("application_name").is_some());
        }
        sum
    });
    assert!(sum > 0.0);
    assert_eq!(peak, 0, "heap held while parsing 4000 points");
}

#[test]
fn reading_remote_write_series_allocates_nothing() {
    let req = proto::WriteRequest {
        timeseries: (0..1000)
            .map(|i| proto::TimeSeries {
                labels: [
                    ("__name__", "cf_metrics_value".to_string()),
                    ("db", "cf_metric_db".to_string()),
                    ("ip", format!("10.0.0.{i}")),
                    ("metricname", "cpuStats.core.0".to_string()),
                ]
                .into_iter()
                .map(|(n, v)| proto::Label {
                    name: n.into(),
                    value: v,
                })
                .collect(),
                samples: vec![proto::Sample {
                    value: i as f64,
                    timestamp: 1_700_000_000_000,
                }],
            })
            .collect(),
    };
    let pb = remote_write::decompress(&remote_write::encode(&req), 1 << 20).unwrap();
    let (n, peak) = peak_of(|| {
        let mut n = 0;
        for s in remote_write::series(&pb) {
            let s = s.unwrap();
            assert_eq!(s.name(), Some("cf_metrics_value"));
            n += s.samples().count() + s.labels().count();
        }
        n
    });
    assert_eq!(n, 5000);
    assert_eq!(peak, 0);
}

// ---- gzip faults ----------------------------------------------------------------------------

#[test]
fn gzip_round_trips_and_concatenated_members_are_one_body() {
    let a = gzip_of(b"m value=1 1\n");
    let b = gzip_of(b"m value=2 2\n");
    let mut both = a.clone();
    both.extend(&b);
    assert_eq!(
        gzip::decompress(&both, 1024).unwrap(),
        b"m value=1 1\nm value=2 2\n"
    );
    // exactly at the limit passes, one byte under fails
    assert_eq!(gzip::decompress(&a, 12).unwrap().len(), 12);
    assert!(matches!(
        gzip::decompress(&a, 11),
        Err(GzipError::TooLarge { limit: 11 })
    ));
}

#[test]
fn corrupt_gzip_bodies_are_refused_as_corrupt() {
    let good = gzip_of(b"cf_metrics,ip=1 value=1 1\n");
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    let mut garbage_after = good.clone();
    garbage_after.extend(b"not gzip");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("plain text", b"cf_metrics value=1".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("bad crc", bad_crc),
        ("garbage after the member", garbage_after),
        ("header only", good[..10].to_vec()),
        ("empty", vec![]),
    ];
    for (what, body) in cases {
        let e = gzip::decompress(&body, 1 << 20).unwrap_err();
        assert!(matches!(e, GzipError::Corrupt(_)), "{what}: {e}");
        assert_eq!(e.reason(), "bad_gzip");
        assert!(e.to_string().starts_with("gzip body is corrupt: "), "{e}");
    }
}
