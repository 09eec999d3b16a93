//! The line protocol parser against a real InfluxDB 1.6 (`MONIT_TEST_INFLUX_URL`, started by
//! scripts/services.sh): each line is written to a database of its own and what InfluxDB stored
//! (measurement, tags, field keys, types and values, time) must be what the parser read; a line
//! InfluxDB refuses must be refused. The documented differences are checked to still be there.

use monit_testkit::{create_influx_db, drop_influx_db, influx_url, unique};
use monit_wire::line::{FieldValue, Lines, Point, Precision};
use serde_json::Value;
use std::collections::BTreeMap;

const NOW: i64 = 1_800_000_000_000_000_000;

/// What InfluxDB keeps of one point.
#[derive(Debug, PartialEq)]
struct Stored {
    measurement: String,
    tags: BTreeMap<String, String>,
    /// key -> (type, value as JSON)
    fields: BTreeMap<String, (String, Value)>,
    time: i64,
}

async fn query(http: &reqwest::Client, db: &str, q: &str) -> Value {
    let url = format!("{}/query", influx_url());
    let r = http
        .post(&url)
        .form(&[("db", db), ("q", q), ("epoch", "ns")])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e} (is scripts/services.sh run?)"));
    r.json::<Value>()
        .await
        .unwrap_or_else(|e| panic!("{url} {q}: {e}"))
}

fn rows(v: &Value) -> Vec<Value> {
    v["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Writes `body` to a fresh database: InfluxDB's answer (`Err` with its message if it refused
/// any line) and the points it stored (the good lines of a partial write too).
async fn influx_stores(
    http: &reqwest::Client,
    precision: &str,
    body: &[u8],
) -> (Result<(), String>, Vec<Stored>) {
    let url = influx_url();
    let db = unique("wire_lp");
    create_influx_db(&url, &db).await;
    let mut params = vec![("db", db.as_str())];
    if !precision.is_empty() {
        params.push(("precision", precision));
    }
    let r = http
        .post(format!("{url}/write"))
        .query(&params)
        .body(body.to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}/write: {e}"));
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    let answer = if status.as_u16() == 204 {
        Ok(())
    } else {
        Err(format!("{status} {text}"))
    };
    let mut out = Vec::new();
    {
        let tags = query(http, &db, "SHOW TAG VALUES WITH KEY =~ /.*/").await;
        let keys = query(http, &db, "SHOW FIELD KEYS").await;
        let points = query(http, &db, "SELECT * FROM /.*/").await;
        for series in rows(&points) {
            let m = series["name"].as_str().unwrap_or_default().to_string();
            let cols: Vec<String> = series["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap_or_default().to_string())
                .collect();
            let tag_keys: Vec<String> = rows(&tags)
                .iter()
                .filter(|s| s["name"] == m.as_str())
                .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
                .map(|kv| kv[0].as_str().unwrap_or_default().to_string())
                .collect();
            let field_types: BTreeMap<String, String> = rows(&keys)
                .iter()
                .filter(|s| s["name"] == m.as_str())
                .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
                .map(|kv| {
                    (
                        kv[0].as_str().unwrap_or_default().to_string(),
                        kv[1].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            for row in series["values"].as_array().unwrap() {
                let cell = |name: &str| {
                    cols.iter()
                        .position(|c| c == name)
                        .map(|i| row[i].clone())
                        .unwrap_or(Value::Null)
                };
                let mut p = Stored {
                    measurement: m.clone(),
                    tags: BTreeMap::new(),
                    fields: BTreeMap::new(),
                    time: row[0].as_i64().unwrap(),
                };
                for k in &tag_keys {
                    if let Some(v) = cell(k).as_str() {
                        p.tags.insert(k.clone(), v.to_string());
                    }
                }
                for (k, t) in &field_types {
                    let v = cell(k);
                    if !v.is_null() {
                        p.fields.insert(k.clone(), (t.clone(), v));
                    }
                }
                out.push(p);
            }
        }
    }
    drop_influx_db(&url, &db).await;
    out.sort_by(|a, b| (&a.measurement, a.time).cmp(&(&b.measurement, b.time)));
    (answer, out)
}

/// The parser's reading of `body`: `Err` with the messages of the lines it refused, and the
/// points of the others.
fn ours(precision: &str, body: &[u8]) -> (Result<(), String>, Vec<Stored>) {
    let prec = match Precision::from_param(precision) {
        Ok(p) => p,
        Err(e) => return (Err(e.to_string()), vec![]),
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in Lines::new(body, NOW).precision(prec) {
        match p {
            Ok(p) => out.push(stored_of(&p)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    out.sort_by(|a, b| (&a.measurement, a.time).cmp(&(&b.measurement, b.time)));
    let answer = if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    };
    (answer, out)
}

fn stored_of(p: &Point<'_>) -> Stored {
    let mut fields = BTreeMap::new();
    for f in p.fields() {
        let (t, v) = match f.value {
            FieldValue::Float(x) => ("float", serde_json::json!(x)),
            FieldValue::Integer(x) => ("integer", serde_json::json!(x)),
            FieldValue::Unsigned(x) => ("unsigned", serde_json::json!(x)),
            FieldValue::Boolean(x) => ("boolean", serde_json::json!(x)),
            FieldValue::String(s) => ("string", serde_json::json!(s.unescaped())),
        };
        fields.insert(f.key.to_string(), (t.to_string(), v));
    }
    Stored {
        measurement: p.measurement().to_string(),
        tags: p
            .tags()
            .iter()
            .map(|t| (t.key.to_string(), t.value.to_string()))
            .collect(),
        fields,
        time: p.timestamp_ns(),
    }
}

/// Float cells compare as numbers (InfluxDB's JSON writes `-0` and `1e-05` its own way).
fn same(a: &Stored, b: &Stored, time_given: bool) -> bool {
    let num = |v: &Value| v.as_f64();
    a.measurement == b.measurement
        && a.tags == b.tags
        && a.fields.len() == b.fields.len()
        && a.fields
            .iter()
            .zip(&b.fields)
            .all(|((ka, (ta, va)), (kb, (tb, vb)))| {
                ka == kb
                    && ta == tb
                    && (va == vb || (ta == "float" && num(va).is_some() && num(va) == num(vb)))
            })
        && (!time_given || a.time == b.time)
}

/// Lines both read the same: (precision, body).
const AGREE: &[(&str, &str)] = &[
    (
        "",
        "cf_metrics,ip=10.0.16.11,metricname=cpuStats.core.0 value=93.5 1700000000000000000",
    ),
    (
        "",
        "container_metrics,application_id=g,application_index=0,application_name=spring-music,cell_ip=10.0.16.21,container_id=/garden/x,container_interface=x,machine=cell,name=cpu_usage_total app_mem=1073741824,app_disk=1073741824,value=95 1700000000000000000",
    ),
    (
        "",
        r#"weather,location=us\,midwest temperature=82 1465839830100400200"#,
    ),
    (
        "",
        r#"weather,location=us-midwest temp\=rature=82 1465839830100400200"#,
    ),
    (
        "",
        r#"weather,location\ place=us-midwest temperature=82 1465839830100400200"#,
    ),
    (
        "",
        r#"wea\,ther,location=us-midwest temperature=82 1465839830100400200"#,
    ),
    (
        "",
        r#"wea\ ther,location=us-midwest temperature=82 1465839830100400200"#,
    ),
    (
        "",
        r#"weather,location=us-midwest temperature="too\"hot\"" 1465839830100400200"#,
    ),
    (
        "",
        r#""measurement\ with\ quo⚡es\ and\ emoji",tag\ key\ with\ sp🚀ces=tag\,value\,with"commas" field_k\ey="string field value, only \" need be esc🍭ped" 5"#,
    ),
    ("", "m,z=1,a=2 value=1 5"),
    (
        "",
        "m f=-1.5e3,i=-42i,b=true,s=\"x y\",g=1,h=.5,e=1E-2,d=1.,z=01,n=-0i,k=5.e5 5",
    ),
    (
        "",
        "m a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE 5",
    ),
    ("", "m a=9223372036854775807i,b=-9223372036854775808i 5"),
    ("", "m a=1e-400,b=-0.0,c=1.7976931348623157e308 5"),
    ("", r#"m a="C:\\dir\\",b="\d",c="\\\"" 5"#),
    ("", r#"m s="a=1, b=2 c",v=3 9"#),
    (
        "",
        "log,host=a msg=\"hello\ncf_metrics,ip=1 value=99 5\",n=1 7",
    ),
    ("", "m,a=x\\\ny value=1 2"),
    ("", r"m,a=b\\,c v=1 5"),
    (
        "",
        r#"m\=x\"y,t\"k=v\"w,t2=a\=b f\"k=1,f\=k=2,f\ k=3,f\,k=4,g\\h=5,i\x=6 5"#,
    ),
    ("", "m \tv=1 \t5"),
    ("", "\0\tm v=1 5"),
    ("", "m,a=b\tc v=1 5"),
    ("", "m v=1 5   "),
    ("", "m=1 value=1 5"),
    ("", "\"m v=1 5"),
    ("", "m v=1 9223372036854775806"),
    ("", "m v=1 -9223372036854775806"),
    ("", "m v=1 005"),
    ("", "m v=1"),
    ("", "# comment\n\n  \t\nm v=1 5\n  # indented\n"),
    ("n", "m v=1 1465839830100400200"),
    ("u", "m v=1 1465839830100400"),
    ("ms", "m v=1 1465839830100"),
    ("s", "m v=1 1465839830"),
    ("m", "m v=1 24430663"),
    ("h", "m v=1 407177"),
    ("s", "m v=1 -5"),
    // several lines, some of them bad: InfluxDB keeps the good ones (a partial write)
    ("", "m v=1 1\nm v=oops 2\nm v=3 3\nm,a v=4 4\nn w=5i 5\n"),
];

/// Lines both refuse.
const REFUSE: &[&str] = &[
    ",a=b value=1",
    "m,=b value=1",
    "m,a value=1",
    "m,a= value=1",
    "m,a=b=c value=1",
    "m,a=b, value=1",
    "m =1",
    "m value",
    "m value=",
    "m value=1,",
    "m value=1, b=2",
    "m s=\"open",
    "m value=1 5 6",
    "m",
    "m,a=b",
    "m,a=b   ",
    r"m\ v=1",
    "m\tv=1",
    "m v=1\t",
    "m v=1 5\t",
    "m v=1 5 \t",
    "m,a=1,a=2 v=1",
    "m,time=1 v=1",
    "m time=1",
    r"m a\\,b=1",
    r"m a\\=1",
    r"m,a=b\\ v=1",
    "m a=NaN",
    "m a=nan",
    "m a=inf",
    "m a=+1",
    "m a=1e",
    "m a=1.2.3",
    "m a=1e999",
    "m a=-",
    "m a=.",
    "m a=12abc",
    "m a=1_000",
    "m a=9223372036854775808i",
    "m a=1.5i",
    "m a=0x10i",
    "m b=tRUE",
    "m b=yes",
    "m v=1 12a",
    "m v=1 1.5",
    "m v=1 -",
    "m v=1 +5",
    "m v=1 9223372036854775807",
    "m v=1 -9223372036854775808",
];

/// InfluxDB and the parser agree on `body`: both accept every line or both refuse some, and the
/// points InfluxDB stored are the points the parser yields.
async fn agree(http: &reqwest::Client, precision: &str, body: &str) -> Option<String> {
    let (their_answer, theirs) = influx_stores(http, precision, body.as_bytes()).await;
    let (my_answer, mine) = ours(precision, body.as_bytes());
    let time_given = !mine.iter().any(|p| p.time == NOW);
    let same_points = theirs.len() == mine.len()
        && theirs
            .iter()
            .zip(&mine)
            .all(|(t, o)| same(t, o, time_given));
    (their_answer.is_ok() != my_answer.is_ok() || !same_points).then(|| {
        format!(
            "{body:?} (precision {precision:?}):\n  InfluxDB {their_answer:?} {theirs:?}\n  parser   {my_answer:?} {mine:?}"
        )
    })
}

#[tokio::test]
async fn the_parser_reads_what_influxdb_stores() {
    let http = reqwest::Client::new();
    let mut wrong = Vec::new();
    for (precision, body) in AGREE {
        wrong.extend(agree(&http, precision, body).await);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn what_influxdb_refuses_the_parser_refuses() {
    let http = reqwest::Client::new();
    let mut wrong = Vec::new();
    for body in REFUSE {
        let (answer, _) = ours("", body.as_bytes());
        if answer.is_ok() {
            wrong.push(format!("{body:?}: the parser accepts it"));
        }
        wrong.extend(agree(&http, "", body).await);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn the_documented_differences_are_still_the_only_ones() {
    let http = reqwest::Client::new();
    // unsigned: InfluxDB 1.x OSS refuses it, the parser reads it
    assert!(influx_stores(&http, "", b"m a=1u 5").await.0.is_err());
    assert_eq!(ours("", b"m a=1u 5").1[0].fields["a"].0, "unsigned");
    // a string value with text after its closing quote: InfluxDB mangles it, the parser refuses
    let (answer, t) = influx_stores(&http, "", br#"m s="x"y 5"#).await;
    assert!(answer.is_ok());
    assert_eq!(t[0].fields["s"].1, "x\"");
    assert!(ours("", br#"m s="x"y 5"#).0.is_err());
    // CRLF: InfluxDB refuses the line, the parser drops the \r
    assert!(influx_stores(&http, "", b"m v=1 5\r\n").await.0.is_err());
    assert_eq!(ours("", b"m v=1 5\r\n").1[0].time, 5);
    // an unknown precision: InfluxDB reads nanoseconds, the parser refuses the parameter
    let (answer, t) = influx_stores(&http, "sec", b"m v=1 5").await;
    assert!(answer.is_ok());
    assert_eq!(t[0].time, 5);
    assert!(ours("sec", b"m v=1 5").0.is_err());
}
