//! Prometheus remote write 1.0: bodies built with the prost messages decode to what was put in;
//! the zero-copy reader and prost agree on any bytes; snappy faults, unknown fields, malformed
//! series and broken framing; the VictoriaMetrics naming of InfluxDB lines.

use monit_wire::remote_write::{self, InfluxNaming, InfluxView, RemoteWriteError, proto};
use proptest::prelude::*;
use prost::Message;

const LIMIT: usize = 1 << 20;

fn label(name: &str, value: &str) -> proto::Label {
    proto::Label {
        name: name.into(),
        value: value.into(),
    }
}

fn series_of(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> proto::TimeSeries {
    proto::TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        samples: samples
            .iter()
            .map(|&(value, timestamp)| proto::Sample { value, timestamp })
            .collect(),
    }
}

/// Decodes a protobuf body (no snappy) into owned parts; `Err` with every error message.
type Owned = Vec<(Vec<(String, String)>, Vec<(u64, i64)>)>;

fn decode_ours(pb: &[u8]) -> Result<Owned, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
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
                out.push((labels, samples));
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    // the walk that reads the labels as it checks: the same series, labels and errors
    let (mut walk, mut labels, mut i, mut walk_errors) =
        (remote_write::series(pb), Vec::new(), 0, Vec::new());
    while let Some(s) = walk.next_with_labels(&mut labels) {
        match s {
            Ok(s) => {
                let got: Vec<_> = labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect();
                assert_eq!(
                    got, out[i].0,
                    "series {i}: labels read in the checking walk"
                );
                assert_eq!(labels.len(), s.label_count());
                i += 1;
            }
            Err(e) => walk_errors.push(e.to_string()),
        }
    }
    assert_eq!((i, &walk_errors), (out.len(), &errors));
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn owned_of(req: &proto::WriteRequest) -> Owned {
    req.timeseries
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
        .collect()
}

#[test]
fn a_body_decodes_to_its_series_labels_and_samples() {
    let req = proto::WriteRequest {
        timeseries: vec![
            series_of(
                &[
                    ("__name__", "cf_metrics_value"),
                    ("db", "cf_metric_db"),
                    ("ip", "10.0.16.11"),
                    ("metricname", "cpuStats.core.0"),
                ],
                &[(93.5, 1_700_000_000_000), (94.0, 1_700_000_010_000)],
            ),
            series_of(&[("__name__", "up")], &[(1.0, -5)]),
        ],
    };
    let body = remote_write::encode(&req);
    let pb = remote_write::decompress(&body, LIMIT).unwrap();
    let all: Vec<_> = remote_write::series(&pb).map(|s| s.unwrap()).collect();
    assert_eq!(all.len(), 2);
    let s = &all[0];
    assert_eq!(s.name(), Some("cf_metrics_value"));
    assert_eq!(s.label("ip"), Some("10.0.16.11"));
    assert_eq!(s.label("nope"), None);
    let samples: Vec<_> = s.samples().collect();
    assert_eq!(samples[1].value, 94.0);
    assert_eq!(samples[1].timestamp_ms, 1_700_000_010_000);
    assert_eq!(samples[1].timestamp_ns(), Some(1_700_000_010_000_000_000));
    // negative int64 (ten-byte varint) survives
    assert_eq!(all[1].samples().next().unwrap().timestamp_ms, -5);
    assert_eq!(decode_ours(&pb).unwrap(), owned_of(&req));
}

#[test]
fn an_empty_body_has_no_series() {
    let body = remote_write::encode(&proto::WriteRequest::default());
    let pb = remote_write::decompress(&body, LIMIT).unwrap();
    assert!(pb.is_empty());
    assert_eq!(remote_write::series(&pb).count(), 0);
}

#[test]
fn stale_markers_and_timestamps_out_of_range_are_told() {
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let req = proto::WriteRequest {
        timeseries: vec![series_of(
            &[("__name__", "x")],
            &[(stale, 1), (f64::NAN, 2), (1.0, i64::MAX)],
        )],
    };
    let pb = req.encode_to_vec();
    let s = remote_write::series(&pb).next().unwrap().unwrap();
    let v: Vec<_> = s.samples().collect();
    assert!(v[0].is_stale_marker());
    assert!(v[1].value.is_nan() && !v[1].is_stale_marker());
    assert!(!v[2].is_stale_marker());
    assert_eq!(v[2].timestamp_ns(), None);
}

// ---- snappy ---------------------------------------------------------------------------------

#[test]
fn a_body_declaring_more_than_the_limit_is_refused_by_its_header() {
    let req = proto::WriteRequest {
        timeseries: vec![series_of(&[("__name__", &"x".repeat(5000))], &[(1.0, 1)])],
    };
    let body = remote_write::encode(&req);
    let e = remote_write::decompress(&body, 4096).unwrap_err();
    assert!(
        matches!(e, RemoteWriteError::TooLarge { limit: 4096, .. }),
        "{e}"
    );
    assert_eq!(e.reason(), "too_large");
    assert!(
        e.to_string().contains("over the limit of 4096 bytes"),
        "{e}"
    );
    // at the exact size it passes
    let size = req.encode_to_vec().len();
    assert_eq!(remote_write::decompress(&body, size).unwrap().len(), size);
}

#[test]
fn a_snappy_bomb_header_is_refused_without_reading_further() {
    // A header declaring 4 GiB - 1, then nothing: refused on the header alone.
    let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f];
    let e = remote_write::decompress(&bomb, LIMIT).unwrap_err();
    assert!(
        matches!(
            e,
            RemoteWriteError::TooLarge {
                declared: 0xffff_ffff,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn bodies_that_are_not_snappy_block_format_are_refused() {
    let pb = proto::WriteRequest {
        timeseries: vec![series_of(&[("__name__", "x")], &[(1.0, 1)])],
    }
    .encode_to_vec();
    // The framed format (what `snap::write::FrameEncoder` makes) is not what remote write uses.
    let mut framed = Vec::new();
    {
        use std::io::Write;
        let mut w = snap::write::FrameEncoder::new(&mut framed);
        w.write_all(&pb).unwrap();
    }
    let block = remote_write::encode(&proto::WriteRequest::default());
    let mut truncated = remote_write::encode(&proto::WriteRequest {
        timeseries: vec![series_of(&[("__name__", &"y".repeat(300))], &[(1.0, 1)])],
    });
    truncated.truncate(truncated.len() / 2);
    for (what, body) in [
        ("framed", framed),
        ("raw protobuf", pb.clone()),
        ("truncated", truncated),
        ("empty", vec![]),
        ("gzip", vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]),
    ] {
        match remote_write::decompress(&body, LIMIT) {
            Err(e) => {
                assert_eq!(e.reason(), "bad_snappy", "{what}: {e}");
                assert!(
                    e.to_string().starts_with("remote write body is not snappy"),
                    "{e}"
                );
            }
            // A few bytes can happen to be a valid block; then the protobuf must not be.
            Ok(out) => assert!(
                decode_ours(&out).is_err() || out.is_empty() || what == "raw protobuf",
                "{what} decoded"
            ),
        }
    }
    assert!(remote_write::decompress(&block, LIMIT).is_ok());
}

// ---- protobuf faults ------------------------------------------------------------------------

/// The messages with the fields remote write 1.0/1.1 added later, to check they are skipped.
mod extended {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<Metadata>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<monit_wire::remote_write::proto::Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub exemplars: Vec<Sample>,
        #[prost(bytes = "vec", repeated, tag = "4")]
        pub histograms: Vec<Vec<u8>>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
        #[prost(fixed32, tag = "7")]
        pub extra: u32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        #[prost(string, tag = "2")]
        pub metric_family_name: String,
        #[prost(string, tag = "4")]
        pub help: String,
    }
}

#[test]
fn fields_this_reader_does_not_use_are_skipped() {
    let req = extended::WriteRequest {
        timeseries: vec![extended::TimeSeries {
            labels: vec![label("__name__", "m")],
            samples: vec![extended::Sample {
                value: 2.5,
                timestamp: 7,
                extra: 9,
            }],
            exemplars: vec![extended::Sample {
                value: 1.0,
                timestamp: 1,
                extra: 0,
            }],
            histograms: vec![vec![1, 2, 3]],
        }],
        metadata: vec![extended::Metadata {
            metric_family_name: "m".into(),
            help: "a help text".into(),
        }],
    };
    let pb = req.encode_to_vec();
    let got = decode_ours(&pb).unwrap();
    assert_eq!(
        got,
        vec![(
            vec![("__name__".to_string(), "m".to_string())],
            vec![(2.5f64.to_bits(), 7)]
        )]
    );
}

/// `field 1, LEN` around `inner`.
fn wrap(tag: u8, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![(tag << 3) | 2, inner.len() as u8];
    v.extend_from_slice(inner);
    v
}

#[test]
fn a_malformed_series_is_an_error_and_the_next_series_is_read() {
    let good = proto::TimeSeries {
        labels: vec![label("__name__", "ok")],
        samples: vec![],
    }
    .encode_to_vec();
    let bad_utf8 = wrap(1, &wrap(1, &[0xff, 0xfe]));
    // a label whose name is a varint
    let bad_wire = wrap(1, &[1 << 3, 5]);
    let mut body = wrap(1, &good);
    body.extend(wrap(1, &bad_utf8));
    body.extend(wrap(1, &bad_wire));
    body.extend(wrap(1, &good));
    let items: Vec<_> = remote_write::series(&body).collect();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0].as_ref().unwrap().name(), Some("ok"));
    let e1 = items[1].as_ref().unwrap_err();
    assert!(e1.to_string().contains("not UTF-8"), "{e1}");
    assert_eq!(e1.reason(), "bad_protobuf");
    // the offset points into the body at the bad string
    let RemoteWriteError::Protobuf { offset, .. } = e1 else {
        panic!("{e1}")
    };
    assert_eq!(body[*offset], 0xff);
    let e2 = items[2].as_ref().unwrap_err();
    assert!(e2.to_string().contains("wrong wire type"), "{e2}");
    assert_eq!(items[3].as_ref().unwrap().name(), Some("ok"));
    // prost refuses the whole body
    assert!(proto::WriteRequest::decode(&body[..]).is_err());
}

#[test]
fn broken_framing_ends_the_walk_after_one_error() {
    let good = wrap(
        1,
        &proto::TimeSeries {
            labels: vec![label("__name__", "ok")],
            samples: vec![],
        }
        .encode_to_vec(),
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("length past the end", vec![(1 << 3) | 2, 50, 1, 2]),
        ("truncated varint", vec![(1 << 3) | 2, 0x80]),
        ("unknown wire type", vec![(1 << 3) | 7]),
        ("field number 0", vec![2, 0]),
        ("end group without start", vec![(5 << 3) | 4]),
        ("group left open", vec![(5 << 3) | 3]),
        (
            "varint of 11 bytes",
            vec![
                (9 << 3),
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                1,
            ],
        ),
    ];
    for (what, tail) in cases {
        let mut body = good.clone();
        body.extend(&tail);
        body.extend(&good);
        let items: Vec<_> = remote_write::series(&body).collect();
        assert_eq!(items.len(), 2, "{what}: {items:?}");
        assert!(items[0].is_ok(), "{what}");
        let e = items[1].as_ref().unwrap_err();
        assert!(e.to_string().contains("byte "), "{what}: {e}");
        assert!(proto::WriteRequest::decode(&body[..]).is_err(), "{what}");
    }
}

#[test]
fn groups_are_skipped_up_to_the_depth_prost_allows() {
    // field 5 as nested groups around nothing, at the top level
    let nested = |depth: usize| {
        let mut v = vec![(5u8 << 3) | 3; depth];
        v.extend(vec![(5u8 << 3) | 4; depth]);
        v
    };
    for depth in [1, 50, 99, 100, 101, 200] {
        let ours = decode_ours(&nested(depth)).is_ok();
        let prost = proto::WriteRequest::decode(&nested(depth)[..]).is_ok();
        assert_eq!(ours, prost, "depth {depth}");
    }
    assert!(decode_ours(&nested(99)).is_ok());
    assert!(decode_ours(&nested(101)).is_err());
}

// ---- VictoriaMetrics naming -----------------------------------------------------------------

#[test]
fn metric_names_split_into_measurement_and_field() {
    let ms = ["cf_metrics", "container_metrics", "bosh_metrics", "cf"];
    let n = InfluxNaming::new(&ms);
    assert_eq!(
        n.split("cf_metrics_value"),
        Some(("cf_metrics", Some("value")))
    );
    assert_eq!(
        n.split("container_metrics_app_mem"),
        Some(("container_metrics", Some("app_mem")))
    );
    // the longest measurement that fits wins over "cf"
    assert_eq!(n.split("cf_metrics_x"), Some(("cf_metrics", Some("x"))));
    assert_eq!(n.split("cf_other"), Some(("cf", Some("other"))));
    // -influxSkipSingleField: the measurement alone
    assert_eq!(n.split("bosh_metrics"), Some(("bosh_metrics", None)));
    let strict = InfluxNaming::new(&ms[..3]);
    for none in ["cf_metrics_", "cf_metricsvalue", "node_cpu", "", "_value"] {
        assert_eq!(strict.split(none), None, "{none}");
    }
    let dotted = InfluxNaming {
        separator: ".",
        ..InfluxNaming::new(&ms)
    };
    assert_eq!(
        dotted.split("cf_metrics.value"),
        Some(("cf_metrics", Some("value")))
    );
    assert_eq!(dotted.split("cf_metrics_value"), None);
}

#[test]
fn a_series_reads_as_its_influxdb_point() {
    let req = proto::WriteRequest {
        timeseries: vec![
            series_of(
                &[
                    ("__name__", "container_metrics_value"),
                    ("application_name", "spring-music"),
                    ("db", "container_metric_db"),
                    ("name", "cpu_usage_total"),
                ],
                &[(95.0, 1)],
            ),
            series_of(&[("__name__", "go_goroutines")], &[(9.0, 1)]),
            series_of(&[("db", "x")], &[(9.0, 1)]),
        ],
    };
    let pb = req.encode_to_vec();
    let ms = ["container_metrics"];
    let n = InfluxNaming::new(&ms);
    let all: Vec<Vec<_>> = remote_write::series(&pb)
        .map(|s| s.unwrap().labels().collect())
        .collect();
    assert_eq!(
        n.view(&all[0]),
        Some(InfluxView {
            measurement: "container_metrics",
            field: Some("value"),
            db: Some("container_metric_db"),
        })
    );
    let tags: Vec<_> = n.tags(&all[0]).map(|l| (l.name, l.value)).collect();
    assert_eq!(
        tags,
        [
            ("application_name", "spring-music"),
            ("name", "cpu_usage_total")
        ]
    );
    assert_eq!(n.view(&all[1]), None);
    assert_eq!(n.view(&all[2]), None);
}

// ---- differential against prost ------------------------------------------------------------

fn any_request() -> impl Strategy<Value = proto::WriteRequest> {
    // up to 40 chars: names and values past 127 bytes (a two-byte length) and under it
    let text =
        prop::collection::vec(any::<char>(), 0..40).prop_map(|v| v.into_iter().collect::<String>());
    let lbl = (text.clone(), text).prop_map(|(name, value)| proto::Label { name, value });
    let smp = (any::<u64>(), any::<i64>()).prop_map(|(bits, timestamp)| proto::Sample {
        value: f64::from_bits(bits),
        timestamp,
    });
    let ts = (
        prop::collection::vec(lbl, 0..8),
        prop::collection::vec(smp, 0..4),
    )
        .prop_map(|(labels, samples)| proto::TimeSeries { labels, samples });
    prop::collection::vec(ts, 0..6).prop_map(|timeseries| proto::WriteRequest { timeseries })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn what_prost_encodes_decodes_to_the_same_series(req in any_request()) {
        let body = remote_write::encode(&req);
        let pb = remote_write::decompress(&body, LIMIT).unwrap();
        prop_assert_eq!(decode_ours(&pb).unwrap(), owned_of(&req));
    }

    #[test]
    fn on_any_bytes_this_reader_and_prost_agree(
        req in any_request(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        // a valid body with a few bytes changed, or plain junk
        let mut pb = req.encode_to_vec();
        for (at, b) in &flips {
            if !pb.is_empty() {
                let i = at.index(pb.len());
                pb[i] = *b;
            }
        }
        for body in [pb, junk] {
            match (proto::WriteRequest::decode(&body[..]), decode_ours(&body)) {
                (Ok(req), Ok(ours)) => prop_assert_eq!(ours, owned_of(&req)),
                (Err(_), Err(_)) => {}
                (p, o) => prop_assert!(false, "prost {:?} vs ours {:?} on {:?}", p.is_ok(), o, body),
            }
        }
    }
}
