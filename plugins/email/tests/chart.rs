//! The chart renderer, by what its pixels say: the image's size, the thresholds' colours on
//! the rows of their values, the breach's shade over its share of the plot, the mean's colour
//! where the reading is, the same bytes for the same input, and golden images
//! (`tests/charts/*.png`, compared pixel by pixel).
//!
//! `MONIT_BLESS=1 cargo test -p monit-plugin-email --test chart` rewrites the golden images;
//! look at them before committing.

use chrono::{FixedOffset, TimeZone, Utc};
use monit_host::model::{Resource, Timestamp};
use monit_host::plugin::ReadingHistory;
use monit_plugin_email::chart::{
    BREACH_COLOUR, CRITICAL_COLOUR, Chart, Current, DIGEST_SIZE, MAIL_SIZE, MEAN_COLOUR,
    WARNING_COLOUR, draw,
};
use plotters::style::RGBColor;
use std::path::Path;

fn at(h: u32, m: u32) -> Timestamp {
    Utc.with_ymd_and_hms(2024, 5, 1, h, m, 0).single().unwrap()
}

/// 09:00 to 10:00 UTC, a point a minute: 40 % for half an hour, then 95 %; warning 80,
/// critical 90; breached from 09:30 on.
fn history() -> ReadingHistory {
    ReadingHistory {
        resource: Resource::Cpu,
        from: at(9, 0),
        to: at(10, 0),
        points: (1..=60)
            .map(|m| {
                let t = at(9, 0) + chrono::Duration::minutes(m);
                (t, if m <= 30 { 40.0 } else { 95.0 })
            })
            .collect(),
        warning: Some(80.0),
        critical: Some(90.0),
        breach: Some((at(9, 30), at(10, 0))),
    }
}

fn current() -> Option<Current> {
    Some(Current {
        value: 95.0,
        at: at(10, 0),
    })
}

fn kst() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).unwrap()
}

/// The decoded image: (width, height, RGB bytes).
fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

struct Pixels {
    width: u32,
    rgb: Vec<u8>,
}

impl Pixels {
    fn of(chart: &Chart) -> Self {
        let (width, height, rgb) = decode(&chart.png);
        assert_eq!((width, height), (chart.width, chart.height));
        Pixels { width, rgb }
    }
    fn is(&self, x: i32, y: i32, c: RGBColor) -> bool {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.rgb[i..i + 3] == [c.0, c.1, c.2]
    }
    /// Pixels of colour `c` in row `y` between columns `xs`.
    fn in_row(&self, y: i32, xs: std::ops::Range<i32>, c: RGBColor) -> usize {
        xs.filter(|x| self.is(*x, y, c)).count()
    }
    /// The row (of the plot) with the most pixels of colour `c`, and how many.
    fn busiest_row(&self, chart: &Chart, c: RGBColor) -> (i32, usize) {
        chart
            .plot_y
            .clone()
            .map(|y| (y, self.in_row(y, chart.plot_x.clone(), c)))
            .max_by_key(|(y, n)| (*n, -*y))
            .unwrap()
    }
}

#[test]
fn a_mail_chart_is_a_png_of_the_mail_size() {
    let chart = draw(&history(), current(), kst(), MAIL_SIZE).unwrap();
    assert_eq!(&chart.png[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h, _) = decode(&chart.png);
    assert_eq!((w, h), (600, 240));
    assert!(
        chart.png.len() < 40_000,
        "a small PNG: {} bytes",
        chart.png.len()
    );
    let small = draw(&history(), current(), kst(), DIGEST_SIZE).unwrap();
    let (w, h, _) = decode(&small.png);
    assert_eq!((w, h), (400, 160));
    assert!(small.png.len() < chart.png.len());
}

#[test]
fn the_thresholds_are_lines_of_their_colours_at_their_values() {
    let chart = draw(&history(), current(), kst(), MAIL_SIZE).unwrap();
    let px = Pixels::of(&chart);
    let plot_width = chart.plot_x.len();
    for (value, colour) in [(80.0, WARNING_COLOUR), (90.0, CRITICAL_COLOUR)] {
        let (row, n) = px.busiest_row(&chart, colour);
        assert!(
            (row - chart.row_of(value)).abs() <= 1,
            "the {value} line is at row {row}, expected {}",
            chart.row_of(value)
        );
        // across the plot (the label and the mean's line cross it in places)
        assert!(
            n * 10 >= plot_width * 8,
            "{n} of {plot_width} pixels of row {row}"
        );
    }
    // none drawn when the policy has none
    let mut h = history();
    h.critical = None;
    let chart = draw(&h, current(), kst(), MAIL_SIZE).unwrap();
    let px = Pixels::of(&chart);
    assert!(px.busiest_row(&chart, CRITICAL_COLOUR).1 < 5);
}

#[test]
fn the_breach_is_shaded_over_its_share_of_the_plot() {
    let chart = draw(&history(), current(), kst(), MAIL_SIZE).unwrap();
    let px = Pixels::of(&chart);
    let mut shaded = 0usize;
    let (mut left, mut right) = (0usize, 0usize);
    let mid = chart.plot_x.start + chart.plot_x.len() as i32 / 2;
    for y in chart.plot_y.clone() {
        for x in chart.plot_x.clone() {
            if px.is(x, y, BREACH_COLOUR) {
                shaded += 1;
                if x < mid - 2 {
                    left += 1;
                } else if x > mid + 2 {
                    right += 1;
                }
            }
        }
    }
    let area = chart.plot_x.len() * chart.plot_y.len();
    let share = shaded as f64 / area as f64;
    // half the span, less what the lines and labels draw over it
    assert!((0.38..=0.5).contains(&share), "shaded share {share:.3}");
    assert_eq!(left, 0, "nothing shaded before the breach");
    assert!(right > 0);
    // no breach in the span: no shade
    let mut h = history();
    h.breach = None;
    let chart = draw(&h, current(), kst(), MAIL_SIZE).unwrap();
    let px = Pixels::of(&chart);
    let none = chart
        .plot_y
        .clone()
        .map(|y| px.in_row(y, chart.plot_x.clone(), BREACH_COLOUR))
        .sum::<usize>();
    assert_eq!(none, 0);
}

#[test]
fn the_mean_is_drawn_where_the_reading_is() {
    let chart = draw(&history(), current(), kst(), MAIL_SIZE).unwrap();
    let px = Pixels::of(&chart);
    let mid = chart.plot_x.start + chart.plot_x.len() as i32 / 2;
    let quarter = chart.plot_x.len() as i32 / 4;
    // first half at 40, second half at 95
    let row40 = chart.row_of(40.0);
    let row95 = chart.row_of(95.0);
    let near = |row: i32, xs: std::ops::Range<i32>| {
        (row - 1..=row + 1)
            .map(|y| px.in_row(y, xs.clone(), MEAN_COLOUR))
            .sum::<usize>()
    };
    let first = chart.plot_x.start + 2..mid - 4;
    let second = mid + 4..chart.plot_x.end - quarter;
    assert!(near(row40, first.clone()) as i32 >= first.len() as i32 * 9 / 10);
    assert!(near(row95, second.clone()) as i32 >= second.len() as i32 * 9 / 10);
    assert_eq!(near(row95, first.clone()), 0);
    assert_eq!(near(row40, second), 0);
}

#[test]
fn the_same_input_draws_the_same_bytes() {
    let a = draw(&history(), current(), kst(), MAIL_SIZE).unwrap();
    let b = draw(&history(), current(), kst(), MAIL_SIZE).unwrap();
    assert_eq!(a.png, b.png);
    let c = draw(&history(), None, kst(), MAIL_SIZE).unwrap();
    assert_ne!(a.png, c.png, "the value's label changes the image");
}

#[test]
fn what_cannot_be_drawn_is_an_error_not_a_panic() {
    let mut h = history();
    h.to = h.from;
    assert!(draw(&h, current(), kst(), MAIL_SIZE).is_err());
    let mut h = history();
    for p in &mut h.points {
        p.1 = f64::NAN;
    }
    assert!(draw(&h, current(), kst(), MAIL_SIZE).is_err());
    // out-of-range values are drawn clipped, not refused; a tiny image is refused or drawn
    let mut h = history();
    h.points[3].1 = 1e300;
    h.points[4].1 = -5.0;
    h.warning = Some(f64::INFINITY);
    assert!(draw(&h, current(), kst(), MAIL_SIZE).is_ok());
    let _ = draw(&history(), current(), kst(), (8, 8));
}

/// Golden images, compared pixel by pixel: a change of the drawing shows up as a change of
/// these files (review them as pictures).
#[test]
fn charts_draw_as_their_golden_images() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/charts");
    let mut gappy = history();
    gappy.points.retain(|p| p.0 < at(9, 20) || p.0 > at(9, 35));
    gappy.resource = Resource::Memory;
    gappy.breach = Some((at(9, 40), at(9, 50)));
    let cases = [
        ("mail_cpu_breach.png", history(), current(), MAIL_SIZE),
        ("digest_cpu_breach.png", history(), current(), DIGEST_SIZE),
        (
            "mail_memory_gap_recovered.png",
            gappy,
            Some(Current {
                value: 42.5,
                at: at(9, 55),
            }),
            MAIL_SIZE,
        ),
    ];
    let bless = std::env::var_os("MONIT_BLESS").is_some();
    let mut failed = Vec::new();
    for (file, h, cur, size) in cases {
        let chart = draw(&h, cur, kst(), size).unwrap();
        let path = dir.join(file);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &chart.png).unwrap();
            continue;
        }
        let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (got_px, want_px) = (decode(&chart.png), decode(&want));
        if got_px != want_px {
            let differ = got_px
                .2
                .chunks(3)
                .zip(want_px.2.chunks(3))
                .filter(|(a, b)| a != b)
                .count();
            failed.push(format!("{file}: {differ} pixels differ"));
        }
    }
    assert!(failed.is_empty(), "{failed:?}");
}
