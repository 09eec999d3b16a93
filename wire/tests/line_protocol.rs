//! InfluxDB 1.x line protocol: every rule of the grammar, the escaping cases of the 1.8 line
//! protocol reference, every rejection reason, and a round trip of random points through a small
//! encoder written here from the reference (not from the parser).

use monit_wire::line::{FieldType, FieldValue, LineError, Lines, Point, Precision, Reason, Text};
use proptest::prelude::*;

const NOW: i64 = 1_800_000_000_123_456_789;

fn parse(body: &str) -> Vec<Result<Point<'_>, LineError>> {
    Lines::new(body.as_bytes(), NOW).collect()
}

fn one(body: &str) -> Point<'_> {
    let mut all = parse(body);
    assert_eq!(all.len(), 1, "{body:?} is one point: {all:?}");
    match all.remove(0) {
        Ok(p) => p,
        Err(e) => panic!("{body:?}: {e}"),
    }
}

fn refused(body: &str) -> LineError {
    let mut all = parse(body);
    assert_eq!(all.len(), 1, "{body:?} is one line: {all:?}");
    match all.remove(0) {
        Ok(p) => panic!("{body:?} was accepted: {p:?}"),
        Err(e) => e,
    }
}

fn tags(p: &Point<'_>) -> Vec<(String, String)> {
    p.tags()
        .iter()
        .map(|t| (t.key.to_string(), t.value.to_string()))
        .collect()
}

// ---- the shape of a line ----------------------------------------------------------------

#[test]
fn a_full_line_gives_measurement_tags_fields_and_timestamp() {
    let p =
        one("cf_metrics,ip=10.0.16.11,metricname=cpuStats.core.0 value=93.5 1700000000000000000");
    assert!(p.measurement().is("cf_metrics"));
    assert_eq!(
        tags(&p),
        [
            ("ip".into(), "10.0.16.11".into()),
            ("metricname".into(), "cpuStats.core.0".into())
        ]
    );
    assert_eq!(p.field("value"), Some(FieldValue::Float(93.5)));
    assert_eq!(p.timestamp_ns(), 1_700_000_000_000_000_000);
    assert!(p.timestamp_given());
    assert_eq!(p.line(), 1);
    assert_eq!(p.tag("metricname").unwrap().raw(), "cpuStats.core.0");
    assert!(p.tag("nope").is_none());
}

#[test]
fn tags_are_optional_and_kept_in_the_order_written() {
    let p = one("m value=1");
    assert!(p.tags().is_empty());
    let p = one("m,z=1,a=2 value=1");
    assert_eq!(
        tags(&p),
        [("z".into(), "1".into()), ("a".into(), "2".into())]
    );
}

#[test]
fn many_tags_and_fields_beyond_the_inline_room_are_all_kept() {
    let tags_s: Vec<String> = (0..20).map(|i| format!("t{i}=v{i}")).collect();
    let fields_s: Vec<String> = (0..10).map(|i| format!("f{i}={i}i")).collect();
    let line = format!("m,{} {} 5", tags_s.join(","), fields_s.join(","));
    let p = one(&line);
    assert_eq!(p.tags().len(), 20);
    assert_eq!(p.fields().len(), 10);
    assert!(p.tag("t19").unwrap().is("v19"));
    assert_eq!(p.field("f9"), Some(FieldValue::Integer(9)));
}

#[test]
fn a_line_without_a_timestamp_takes_the_callers_now() {
    let p = one("m value=1");
    assert_eq!(p.timestamp_ns(), NOW);
    assert!(!p.timestamp_given());
    // trailing blanks after the field set are not a timestamp
    assert_eq!(one("m value=1   ").timestamp_ns(), NOW);
}

#[test]
fn extra_blanks_between_sections_and_before_the_line_are_allowed() {
    let p = one("  \tm,a=b   value=1 \t 7  ");
    assert!(p.measurement().is("m"));
    assert_eq!(p.timestamp_ns(), 7);
}

#[test]
fn blank_lines_and_comments_are_skipped_and_still_counted() {
    let body = "# a comment\n\n   \n  # indented comment\nm value=1\n\nm value=2 3\n";
    let all = parse(body);
    assert_eq!(all.len(), 2);
    let lines: Vec<usize> = all.iter().map(|r| r.as_ref().unwrap().line()).collect();
    assert_eq!(lines, [5, 7]);
}

#[test]
fn crlf_line_ends_are_tolerated() {
    let body = "m value=1 10\r\nm value=2\r\n\r\n# c\r\nm value=3 30\r\n";
    let ts: Vec<i64> = parse(body)
        .into_iter()
        .map(|r| r.unwrap().timestamp_ns())
        .collect();
    assert_eq!(ts, [10, NOW, 30]);
}

#[test]
fn a_body_without_a_final_newline_gives_its_last_line() {
    assert_eq!(parse("m value=1\nm value=2").len(), 2);
    assert!(parse("").is_empty());
    assert!(parse("\n\n").is_empty());
}

// ---- field types ------------------------------------------------------------------------

#[test]
fn field_types_float_integer_unsigned_boolean_string() {
    let p = one(r#"m f=-1.5e3,i=-42i,u=42u,b=true,s="x y",g=1,h=.5,e=1E-2,d=1."#);
    assert_eq!(p.field("f"), Some(FieldValue::Float(-1500.0)));
    assert_eq!(p.field("i"), Some(FieldValue::Integer(-42)));
    assert_eq!(p.field("u"), Some(FieldValue::Unsigned(42)));
    assert_eq!(p.field("b"), Some(FieldValue::Boolean(true)));
    assert_eq!(p.field("g"), Some(FieldValue::Float(1.0)));
    assert_eq!(p.field("h"), Some(FieldValue::Float(0.5)));
    assert_eq!(p.field("e"), Some(FieldValue::Float(0.01)));
    assert_eq!(p.field("d"), Some(FieldValue::Float(1.0)));
    let Some(FieldValue::String(s)) = p.field("s") else {
        panic!("s is a string")
    };
    assert!(s.is("x y"));
    let types: Vec<FieldType> = p.fields().iter().map(|f| f.value.field_type()).collect();
    assert_eq!(
        types,
        [
            FieldType::Float,
            FieldType::Integer,
            FieldType::Unsigned,
            FieldType::Boolean,
            FieldType::String,
            FieldType::Float,
            FieldType::Float,
            FieldType::Float,
            FieldType::Float
        ]
    );
}

#[test]
fn every_boolean_spelling_of_the_reference() {
    for t in ["t", "T", "true", "True", "TRUE"] {
        assert_eq!(
            one(&format!("m b={t}")).field("b"),
            Some(FieldValue::Boolean(true)),
            "{t}"
        );
    }
    for f in ["f", "F", "false", "False", "FALSE"] {
        assert_eq!(
            one(&format!("m b={f}")).field("b"),
            Some(FieldValue::Boolean(false)),
            "{f}"
        );
    }
    assert_eq!(refused("m b=tRUE").reason, Reason::BadValue);
    assert_eq!(refused("m b=yes").reason, Reason::BadValue);
}

#[test]
fn numeric_values_as_f64_and_non_numeric_as_none() {
    let p = one(r#"m a=1i,b=2u,c=3.5,d=t,e="4""#);
    let got: Vec<(String, f64)> = p
        .numeric_fields()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(
        got,
        [("a".into(), 1.0), ("b".into(), 2.0), ("c".into(), 3.5)]
    );
    assert_eq!(p.field("d").unwrap().as_f64(), None);
    assert_eq!(p.field("e").unwrap().as_f64(), None);
}

#[test]
fn numeric_only_drops_strings_and_booleans_but_still_checks_them() {
    let body = "m a=1,s=\"x\",b=t,c=2i\nm a=1,s=\"unterminated\n";
    let all: Vec<_> = Lines::new(body.as_bytes(), NOW)
        .numeric_only(true)
        .collect();
    let p = all[0].as_ref().unwrap();
    let keys: Vec<String> = p.fields().iter().map(|f| f.key.to_string()).collect();
    assert_eq!(keys, ["a", "c"]);
    assert_eq!(all[1].as_ref().unwrap_err().reason, Reason::Syntax);
}

#[test]
fn a_repeated_field_reads_as_its_last_value() {
    assert_eq!(one("m a=1,a=2").field("a"), Some(FieldValue::Float(2.0)));
}

#[test]
fn integer_limits_are_exact_and_overflow_is_refused() {
    let p = one("m a=9223372036854775807i,b=-9223372036854775808i,c=18446744073709551615u");
    assert_eq!(p.field("a"), Some(FieldValue::Integer(i64::MAX)));
    assert_eq!(p.field("b"), Some(FieldValue::Integer(i64::MIN)));
    assert_eq!(p.field("c"), Some(FieldValue::Unsigned(u64::MAX)));
    for bad in [
        "m a=9223372036854775808i",
        "m a=18446744073709551616u",
        "m a=-1u",
        "m a=1.5i",
        "m a=i",
        "m a=u",
        "m a=0x10i",
    ] {
        let e = refused(bad);
        assert_eq!(e.reason, Reason::BadValue, "{bad}: {e}");
        assert_eq!(e.column, 5, "{bad}: {e}");
    }
}

#[test]
fn non_numbers_and_non_finite_floats_are_bad_values() {
    for bad in [
        "m a=NaN",
        "m a=inf",
        "m a=-Infinity",
        "m a=+1",
        "m a=1e",
        "m a=1e+",
        "m a=1.2.3",
        "m a=1e999",
        "m a=-",
        "m a=.",
        "m a=12abc",
        "m a=1_000",
    ] {
        assert_eq!(refused(bad).reason, Reason::BadValue, "{bad}");
    }
}

// ---- escaping, as in the 1.8 line protocol reference -------------------------------------

#[test]
fn reference_escaping_examples() {
    // "Special characters" of the InfluxDB 1.8 line protocol reference, one per element.
    let p = one(r#"weather,location=us\,midwest temperature=82 1465839830100400200"#);
    assert!(p.tag("location").unwrap().is("us,midwest"));
    assert_eq!(p.tag("location").unwrap().raw(), r"us\,midwest");

    let p = one(r#"weather,location=us-midwest temp\=rature=82 1465839830100400200"#);
    assert_eq!(p.field("temp=rature"), Some(FieldValue::Float(82.0)));

    let p = one(r#"weather,location\ place=us-midwest temperature=82 1465839830100400200"#);
    assert!(p.tag("location place").unwrap().is("us-midwest"));

    let p = one(r#"wea\,ther,location=us-midwest temperature=82 1465839830100400200"#);
    assert!(p.measurement().is("wea,ther"));

    let p = one(r#"wea\ ther,location=us-midwest temperature=82 1465839830100400200"#);
    assert!(p.measurement().is("wea ther"));

    let p = one(r#"weather,location=us-midwest temperature="too\"hot\"" 1465839830100400200"#);
    let Some(FieldValue::String(s)) = p.field("temperature") else {
        panic!("a string")
    };
    assert!(s.is(r#"too"hot""#));
    assert_eq!(s.unescaped(), r#"too"hot""#);
}

#[test]
fn reference_example_with_quotes_spaces_commas_and_emoji_everywhere() {
    let line = r#""measurement\ with\ quo⚡es\ and\ emoji",tag\ key\ with\ sp🚀ces=tag\,value\,with"commas" field_k\ey="string field value, only \" need be esc🍭ped""#;
    let p = one(line);
    // Quotes are ordinary characters in a measurement and in tags.
    assert!(
        p.measurement()
            .is(r#""measurement with quo⚡es and emoji""#)
    );
    assert_eq!(
        tags(&p),
        [(
            "tag key with sp🚀ces".into(),
            r#"tag,value,with"commas""#.into()
        )]
    );
    // A backslash before a character that needs no escape stays.
    let f = &p.fields()[0];
    assert!(f.key.is(r"field_k\ey"));
    let FieldValue::String(s) = f.value else {
        panic!("a string")
    };
    assert!(s.is(r#"string field value, only " need be esc🍭ped"#));
}

#[test]
fn an_equals_sign_needs_no_escape_in_a_measurement() {
    assert!(one("m=1 value=1").measurement().is("m=1"));
}

#[test]
fn backslashes_in_string_values() {
    let p = one(r#"m a="C:\\dir\\",b="\d",c="\\\"""#);
    let s = |k| match p.field(k) {
        Some(FieldValue::String(s)) => s.to_string(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(s("a"), r"C:\dir\");
    assert_eq!(s("b"), r"\d");
    assert_eq!(s("c"), r#"\""#);
}

#[test]
fn commas_spaces_and_equals_inside_a_string_value_are_text() {
    let p = one(r#"m s="a=1, b=2 c",v=3 9"#);
    let Some(FieldValue::String(s)) = p.field("s") else {
        panic!("a string")
    };
    assert!(s.is("a=1, b=2 c"));
    assert_eq!(p.field("v"), Some(FieldValue::Float(3.0)));
    assert_eq!(p.timestamp_ns(), 9);
}

#[test]
fn a_newline_inside_a_string_value_does_not_split_the_line() {
    // InfluxDB's scanner keeps it in the value: split there, the rest of the string would be
    // read as a point of its own (here a fake cf_metrics reading).
    let body = "log,host=a msg=\"hello\ncf_metrics,ip=1 value=99 5\",n=1 7\nm value=2 8\n";
    let all = parse(body);
    assert_eq!(all.len(), 2, "{all:?}");
    let p = all[0].as_ref().unwrap();
    assert!(p.measurement().is("log"));
    let Some(FieldValue::String(s)) = p.field("msg") else {
        panic!("a string")
    };
    assert!(s.is("hello\ncf_metrics,ip=1 value=99 5"));
    assert_eq!(p.timestamp_ns(), 7);
    // the next point keeps its own line number
    assert_eq!(all[1].as_ref().unwrap().line(), 3);
}

#[test]
fn a_backslash_before_a_newline_joins_the_lines_as_influxdb_does() {
    let all = parse("m,a=x\\\ny value=1 2\nm value=3 4");
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[0].as_ref().unwrap().tag("a").unwrap().raw() == "x\\\ny");
    assert_eq!(all[1].as_ref().unwrap().line(), 3);
}

#[test]
fn unescaped_text_borrows_when_there_is_no_escape() {
    let p = one(r"m,a=plain,b=x\ y value=1");
    assert!(matches!(
        p.tag("a").unwrap().unescaped(),
        std::borrow::Cow::Borrowed("plain")
    ));
    assert!(matches!(
        p.tag("b").unwrap().unescaped(),
        std::borrow::Cow::Owned(_)
    ));
    assert!(p.tag("b").unwrap().is("x y"));
    assert!(!p.tag("b").unwrap().is("x y "));
    assert!(!p.tag("b").unwrap().is("x"));
}

// ---- precision --------------------------------------------------------------------------

#[test]
fn every_precision_converts_to_nanoseconds() {
    let cases = [
        ("", 1),
        ("n", 1),
        ("ns", 1),
        ("u", 1_000),
        ("us", 1_000),
        ("µ", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    for (param, factor) in cases {
        let prec = Precision::from_param(param).unwrap();
        let p = Lines::new(b"m v=1 -3\nm v=1 400000", NOW)
            .precision(prec)
            .map(|r| r.unwrap().timestamp_ns())
            .collect::<Vec<_>>();
        assert_eq!(p, [-3 * factor, 400_000 * factor], "precision {param:?}");
    }
}

#[test]
fn an_unknown_precision_is_refused_by_name() {
    let e = Precision::from_param("sec").unwrap_err();
    assert!(e.to_string().contains("\"sec\""), "{e}");
    assert!(e.to_string().contains("precision"), "{e}");
    assert!("rfc3339".parse::<Precision>().is_err());
}

#[test]
fn the_time_range_is_influxdbs() {
    assert_eq!(
        one("m v=1 9223372036854775806").timestamp_ns(),
        i64::MAX - 1
    );
    assert_eq!(
        one("m v=1 -9223372036854775806").timestamp_ns(),
        i64::MIN + 2
    );
}

#[test]
fn now_is_truncated_to_the_precision_as_influxdb_does() {
    let p = |prec| {
        Lines::new(b"m v=1", NOW)
            .precision(prec)
            .next()
            .unwrap()
            .unwrap()
            .timestamp_ns()
    };
    assert_eq!(p(Precision::Nanoseconds), NOW);
    assert_eq!(p(Precision::Milliseconds), 1_800_000_000_123_000_000);
    assert_eq!(p(Precision::Seconds), 1_800_000_000_000_000_000);
    assert_eq!(
        p(Precision::Hours),
        1_800_000_000 / 3600 * 3600 * 1_000_000_000
    );
}

#[test]
fn timestamps_split_into_seconds_and_nanoseconds() {
    let p = one("m v=1 1465839830100400200");
    assert_eq!(p.timestamp_secs_nanos(), (1_465_839_830, 100_400_200));
    let p = one("m v=1 -1");
    assert_eq!(p.timestamp_secs_nanos(), (-1, 999_999_999));
}

#[test]
fn bad_timestamps_are_refused() {
    for bad in [
        "m v=1 12a",
        "m v=1 1.5",
        "m v=1 -",
        "m v=1 9223372036854775808",
        "m v=1 +5",
        "m v=1 5\t",
        // InfluxDB keeps the two ends of i64 as sentinels
        "m v=1 9223372036854775807",
        "m v=1 -9223372036854775808",
        "m v=1 -9223372036854775807",
    ] {
        let e = refused(bad);
        assert_eq!(e.reason, Reason::BadTimestamp, "{bad}: {e}");
        assert_eq!(e.column, 7, "{bad}: {e}");
    }
    // fits in i64 as hours, not as nanoseconds
    let e = Lines::new(b"m v=1 9223372036854", NOW)
        .precision(Precision::Hours)
        .next()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.reason, Reason::BadTimestamp);
    assert!(e.to_string().contains("out of range"), "{e}");
}

// ---- refused lines ----------------------------------------------------------------------

#[test]
fn syntax_errors_name_the_line_and_byte_and_the_rest_goes_on() {
    let body = "m value=1 1\n,a=b value=1\nm value=2 2\n";
    let all = parse(body);
    assert_eq!(all.len(), 3);
    let e = all[1].as_ref().unwrap_err();
    assert_eq!((e.line, e.column, e.reason), (2, 1, Reason::Syntax));
    assert_eq!(e.detail, "missing measurement");
    assert_eq!(
        e.to_string(),
        "line protocol, line 2, byte 1: syntax: missing measurement"
    );
    assert_eq!(all[2].as_ref().unwrap().timestamp_ns(), 2);
}

#[test]
fn every_syntax_rule() {
    let cases = [
        ("m,=b value=1", "missing tag key"),
        ("m,a value=1", "tag without '='"),
        ("m,a= value=1", "missing tag value"),
        ("m,a=b=c value=1", "unescaped '=' in tag value"),
        ("m,a=b, value=1", "missing tag key"),
        ("m =1", "missing field key"),
        ("m value", "field without '='"),
        ("m value=", "missing field value"),
        ("m value=1,", "missing field key"),
        ("m value=1, b=2", "missing field key"),
        ("m s=\"open", "unterminated string value"),
        ("m s=\"x\"y", "text after a string value"),
        ("m value=1 5 6", "text after the timestamp"),
    ];
    for (line, detail) in cases {
        let e = refused(line);
        assert_eq!(
            (e.reason, e.detail),
            (Reason::Syntax, detail),
            "{line}: {e}"
        );
    }
}

#[test]
fn only_spaces_separate_sections_and_blanks_after_a_space_are_skipped() {
    // A tab does not end a name or a value (InfluxDB: `m\tv=1` has no field set) ...
    assert_eq!(refused("m\tv=1").reason, Reason::NoFields);
    assert!(one("m,a=b\tc v=1").tag("a").unwrap().is("b\tc"));
    assert_eq!(refused("m v=1\t").reason, Reason::BadValue);
    // ... but after a space, tabs and NULs are skipped like spaces, and lead a line too.
    assert_eq!(one("m \tv=1 \t5").timestamp_ns(), 5);
    assert!(one("\0\tm v=1").measurement().is("m"));
    // after the timestamp only spaces
    assert_eq!(one("m v=1 5   ").timestamp_ns(), 5);
    assert_eq!(refused("m v=1 5 \t").reason, Reason::Syntax);
}

#[test]
fn duplicate_tag_keys_and_the_reserved_key_time_are_refused() {
    for (line, detail) in [
        ("m,a=1,a=2 v=1", "duplicate tag key"),
        ("m,b=1,a=2,b=3 v=1", "duplicate tag key"),
        ("m,time=1 v=1", "tag key \"time\" is not allowed"),
        ("m time=1", "field key \"time\" is not allowed"),
        ("m v=1,time=1", "field key \"time\" is not allowed"),
    ] {
        let e = refused(line);
        assert_eq!((e.reason, e.detail), (Reason::Syntax, detail), "{line}");
    }
    // repeated fields are fine (the last wins)
    assert_eq!(one("m v=1,v=2").fields().len(), 2);
}

#[test]
fn a_series_key_over_influxdbs_limit_is_too_long() {
    let tag = "x".repeat(65_520);
    let body = format!("m,a={tag} value=1\nm,a={tag} v=1\n");
    let all: Vec<_> = Lines::new(body.as_bytes(), NOW)
        .max_line_bytes(1 << 20)
        .collect();
    // 1 + 1 + 1 + 1 + 65520 = 65524 key bytes, + 4 + "value" = 65533: fits; + "value" of 9
    // letters would not
    assert!(all[0].is_ok(), "{:?}", all[0]);
    let long = format!("m,a={tag} valuevalue=1");
    let e = Lines::new(long.as_bytes(), NOW)
        .max_line_bytes(1 << 20)
        .next()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        (e.reason, e.detail),
        (Reason::TooLong, "series key longer than 65535 bytes")
    );
}

#[test]
fn a_backslash_escapes_by_look_behind_in_the_key_and_by_skipping_in_the_fields() {
    // InfluxDB's key scanner asks "is the byte before a backslash?": `\\,` is an escaped comma.
    let p = one(r"m,a=b\\,c v=1");
    assert_eq!(p.tags().len(), 1);
    assert!(p.tag("a").unwrap().is(r"b\,c"));
    // Its field scanner skips the byte after a backslash: `\\,` is a backslash and a comma.
    let e = refused(r"m a\\,b=1");
    assert_eq!((e.reason, e.detail), (Reason::Syntax, "field without '='"));
    // and InfluxDB then looks back again for the `=`, so a field key cannot end in a backslash
    let e = refused(r"m a\\=1");
    assert_eq!(
        (e.reason, e.detail),
        (Reason::Syntax, "field key ends with a backslash")
    );
    assert!(one(r"m a\\b=1").field(r"a\\b").is_some());
}

#[test]
fn each_part_unescapes_what_influxdb_unescapes() {
    let p = one(r#"m\=x\"y,t\"k=v\"w,t2=a\=b f\"k=1,f\=k=2"#);
    assert!(p.measurement().is(r#"m=x"y"#));
    // in tags a backslash-quote stays as written
    assert!(p.tag(r#"t\"k"#).unwrap().is(r#"v\"w"#));
    assert!(p.tag("t2").unwrap().is("a=b"));
    assert!(p.field(r#"f"k"#).is_some());
    assert!(p.field("f=k").is_some());
}

#[test]
fn a_line_without_fields_is_no_fields() {
    for line in ["m", "m,a=b", "m,a=b   ", "  m  ", r"m\ v=1"] {
        assert_eq!(refused(line).reason, Reason::NoFields, "{line:?}");
    }
}

#[test]
fn a_line_over_the_limit_is_too_long_and_the_next_is_read() {
    let long = format!("m,a={} value=1", "x".repeat(200));
    let body = format!("{long}\nm value=2 5\n");
    let all: Vec<_> = Lines::new(body.as_bytes(), NOW)
        .max_line_bytes(100)
        .collect();
    let e = all[0].as_ref().unwrap_err();
    assert_eq!((e.reason, e.line), (Reason::TooLong, 1));
    assert_eq!(all[1].as_ref().unwrap().timestamp_ns(), 5);
    // at the limit exactly is fine
    let fits = format!("m,a={} value=1", "x".repeat(100 - 12));
    assert_eq!(fits.len(), 100);
    assert!(
        Lines::new(fits.as_bytes(), NOW)
            .max_line_bytes(100)
            .next()
            .unwrap()
            .is_ok()
    );
}

#[test]
fn a_line_that_is_not_utf8_is_refused_alone() {
    let body = b"m,a=\xff\xfe value=1\nm value=2 5\n";
    let all: Vec<_> = Lines::new(body, NOW).collect();
    assert_eq!(all[0].as_ref().unwrap_err().reason, Reason::NotUtf8);
    assert_eq!(all[1].as_ref().unwrap().timestamp_ns(), 5);
}

#[test]
fn errors_never_quote_the_line() {
    let secret = "hunter2hunter2";
    for line in [
        format!("m,{secret} value=1"),
        format!("m value={secret}"),
        format!("m value=1 {secret}"),
        format!("m s=\"{secret}"),
    ] {
        let e = refused(&line);
        assert!(!e.to_string().contains(secret), "{e}");
        assert!(!format!("{e:?}").contains(secret), "{e:?}");
    }
}

#[test]
fn reason_labels_are_fixed() {
    let labels: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        labels,
        [
            "syntax",
            "no_fields",
            "bad_timestamp",
            "bad_value",
            "too_long",
            "not_utf8"
        ]
    );
}

// ---- the measurement filter -------------------------------------------------------------

#[test]
fn the_filter_sees_the_measurement_first_and_refused_lines_are_not_parsed() {
    // The line the filter refuses is broken after its measurement: it is skipped, not an error.
    let body = "cpu,host=a value=1 1\nmem,broken value=oops\ncpu value=2 2\nmem value=3 3\n";
    let seen = std::cell::RefCell::new(Vec::new());
    let mut lines = Lines::new(body.as_bytes(), NOW).filter(|m: &Text<'_>| {
        seen.borrow_mut().push(m.to_string());
        m.is("cpu")
    });
    let ts: Vec<i64> = lines.by_ref().map(|r| r.unwrap().timestamp_ns()).collect();
    assert_eq!(ts, [1, 2]);
    assert_eq!(lines.filtered(), 2);
    assert_eq!(*seen.borrow(), ["cpu", "mem", "cpu", "mem"]);
}

#[test]
fn the_filter_compares_unescaped_names() {
    let body = "cf\\ metrics value=1\ncf_metrics value=2\n";
    let n = Lines::new(body.as_bytes(), NOW)
        .filter(|m: &Text<'_>| m.is("cf metrics"))
        .count();
    assert_eq!(n, 1);
}

// ---- round trip of random points ----------------------------------------------------------

#[derive(Debug, Clone)]
enum V {
    F(f64),
    I(i64),
    U(u64),
    B(bool),
    S(String),
}

#[derive(Debug, Clone)]
struct Pt {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, V)>,
    ts: Option<i64>,
}

/// The reference's escaping rules, applied by hand.
fn esc(s: &str, specials: &[char]) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if specials.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn encode(p: &Pt) -> String {
    let mut line = esc(&p.measurement, &[',', ' ']);
    for (k, v) in &p.tags {
        line += &format!(",{}={}", esc(k, &[',', '=', ' ']), esc(v, &[',', '=', ' ']));
    }
    line.push(' ');
    let fields: Vec<String> = p
        .fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                V::F(x) => format!("{x:?}"),
                V::I(x) => format!("{x}i"),
                V::U(x) => format!("{x}u"),
                V::B(x) => format!("{x}"),
                V::S(x) => format!("\"{}\"", esc(x, &['"', '\\'])),
            };
            format!("{}={v}", esc(k, &[',', '=', ' ']))
        })
        .collect();
    line += &fields.join(",");
    if let Some(ts) = p.ts {
        line += &format!(" {ts}");
    }
    line
}

/// Names with the characters that need escaping, a backslash that does not, and non-ASCII; never
/// empty, never a leading `#` or blank (a comment or nothing). A literal backslash is followed by
/// a letter: before a special character or at the end, the reference's escaping is ambiguous
/// (`a\` then `\,` reads as an escaped backslash and a delimiter, in InfluxDB too).
fn name() -> impl Strategy<Value = String> {
    let chars = prop::sample::select(vec![
        'a', 'z', 'Q', '0', '9', '_', '.', '-', '/', ',', ' ', '=', '"', 'é', '🚀', '\\',
    ]);
    prop::collection::vec(chars, 1..12)
        .prop_map(|v| v.into_iter().collect::<String>())
        .prop_filter("usable name", |s| {
            let b: Vec<char> = s.chars().collect();
            !s.starts_with(['#', ' '])
                && s != "time"
                && b.iter()
                    .enumerate()
                    .all(|(i, &c)| c != '\\' || b.get(i + 1).is_some_and(|n| n.is_alphabetic()))
        })
}

fn value() -> impl Strategy<Value = V> {
    let text = prop::collection::vec(
        prop::sample::select(vec!['a', ' ', ',', '=', '"', '\\', '\n', 'ü']),
        0..10,
    )
    .prop_map(|v| v.into_iter().collect::<String>());
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(V::F),
        any::<i64>().prop_map(V::I),
        any::<u64>().prop_map(V::U),
        any::<bool>().prop_map(V::B),
        text.prop_map(V::S),
    ]
}

fn point() -> impl Strategy<Value = Pt> {
    (
        name(),
        // distinct keys: InfluxDB refuses a repeated tag key
        prop::collection::btree_map(name(), name(), 0..10)
            .prop_map(|m| m.into_iter().collect::<Vec<_>>()),
        prop::collection::vec((name(), value()), 1..6),
        // InfluxDB's time range: i64 less its two sentinels at each end
        prop::option::of(i64::MIN + 2..=i64::MAX - 1),
    )
        .prop_map(|(measurement, tags, fields, ts)| Pt {
            measurement,
            tags,
            fields,
            ts,
        })
}

fn same_value(got: &FieldValue<'_>, want: &V) -> bool {
    match (got, want) {
        (FieldValue::Float(a), V::F(b)) => a.to_bits() == b.to_bits() || (*a == 0.0 && *b == 0.0),
        (FieldValue::Integer(a), V::I(b)) => a == b,
        (FieldValue::Unsigned(a), V::U(b)) => a == b,
        (FieldValue::Boolean(a), V::B(b)) => a == b,
        (FieldValue::String(a), V::S(b)) => a.is(b) && a.unescaped() == b.as_str(),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn encoded_points_parse_back_to_themselves(pts in prop::collection::vec(point(), 1..8)) {
        let body: String = pts.iter().map(|p| encode(p) + "\n").collect();
        let got: Vec<_> = Lines::new(body.as_bytes(), NOW).collect();
        prop_assert_eq!(got.len(), pts.len(), "body {:?}", body);
        let mut line = 1;
        for (want, got) in pts.iter().zip(&got) {
            let p = match got {
                Ok(p) => p,
                Err(e) => return Err(TestCaseError::fail(format!("{e} in {body:?}"))),
            };
            prop_assert_eq!(p.line(), line);
            line += 1 + encode(want).matches('\n').count();
            prop_assert!(p.measurement().is(&want.measurement), "{:?} vs {:?}", p.measurement(), want.measurement);
            prop_assert_eq!(tags(p), want.tags.clone());
            prop_assert_eq!(p.fields().len(), want.fields.len());
            for (f, (k, v)) in p.fields().iter().zip(&want.fields) {
                prop_assert!(f.key.is(k), "{:?} vs {:?}", f.key, k);
                prop_assert!(same_value(&f.value, v), "{:?} vs {:?}", f.value, v);
            }
            prop_assert_eq!(p.timestamp_ns(), want.ts.unwrap_or(NOW));
        }
    }

    #[test]
    fn any_bytes_never_panic_and_every_error_is_located(body in prop::collection::vec(any::<u8>(), 0..400)) {
        let lines = body.split(|&b| b == b'\n').count();
        for r in Lines::new(&body, NOW).precision(Precision::Seconds).max_line_bytes(200) {
            match r {
                Ok(p) => {
                    prop_assert!(p.line() >= 1 && p.line() <= lines);
                    prop_assert!(!p.fields().is_empty());
                    for (_, v) in p.numeric_fields() {
                        prop_assert!(v.is_finite());
                    }
                }
                Err(e) => prop_assert!(e.line >= 1 && e.line <= lines && e.column >= 1),
            }
        }
    }
}
