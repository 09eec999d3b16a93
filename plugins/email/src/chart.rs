//! The chart in an alarm mail: the alarmed reading over the last hour as a small PNG, drawn in
//! memory (plotters' bitmap backend, DejaVu Sans embedded by the `dejavu` crate: no system
//! fonts), with the reading's mean per step, the policy's thresholds as lines, the breach shaded
//! and the alarm's value labelled. Every label is ASCII (digits, `:`, `%`, the resource's
//! code), so no font beyond Latin is needed. The same input draws the same bytes.

use chrono::FixedOffset;
use monit_host::model::Timestamp;
use monit_host::plugin::ReadingHistory;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;

/// A single alarm mail's chart, in pixels.
pub const MAIL_SIZE: (u32, u32) = (600, 240);
/// Each chart of a digest: smaller, and at most [`DIGEST_CHARTS`] of them.
pub const DIGEST_SIZE: (u32, u32) = (400, 160);
/// At most this many charts in one digest (its first alarms, critical first): the mail's size
/// stays bounded whatever the digest's.
pub const DIGEST_CHARTS: usize = 10;

/// The reading's mean per step.
pub const MEAN_COLOUR: RGBColor = RGBColor(31, 119, 180);
pub const WARNING_COLOUR: RGBColor = RGBColor(255, 153, 0);
pub const CRITICAL_COLOUR: RGBColor = RGBColor(214, 39, 40);
/// The breach window's shade (opaque, drawn under the lines).
pub const BREACH_COLOUR: RGBColor = RGBColor(252, 222, 222);
/// The alarm's value: a dot and its label.
pub const VALUE_COLOUR: RGBColor = RGBColor(20, 20, 20);
const GRID_COLOUR: RGBColor = RGBColor(232, 232, 232);
const TEXT_COLOUR: RGBColor = RGBColor(80, 80, 80);

const FONT: &str = "sans-serif";

/// A drawn chart: the PNG and where its plot area is, so tests can find a value's row.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// the plot area's pixel columns and rows
    pub plot_x: Range<i32>,
    pub plot_y: Range<i32>,
    /// the top of the value axis (its bottom is 0)
    pub y_max: f64,
}

impl Chart {
    /// The pixel row of a value on the value axis.
    pub fn row_of(&self, value: f64) -> i32 {
        let (top, bottom) = (self.plot_y.start as f64, (self.plot_y.end - 1) as f64);
        (bottom - value / self.y_max * (bottom - top)).round() as i32
    }
}

/// What is marked besides the history: the alarm's value and when it was taken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Current {
    pub value: f64,
    pub at: Timestamp,
}

/// The embedded font, registered with plotters once for the process.
fn font_ready() -> Result<(), String> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| "the embedded DejaVu Sans font could not be read".to_string())
        })
        .clone()
}

/// The top of the value axis: 100 %, or above the highest value shown (a container's CPU can
/// pass 100 % of one core), rounded up to a multiple of 20.
fn y_max(h: &ReadingHistory, current: Option<Current>) -> f64 {
    let highest = h
        .points
        .iter()
        .map(|p| p.1)
        .chain(current.map(|c| c.value))
        .chain(h.warning)
        .chain(h.critical)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    if highest <= 100.0 {
        return 100.0;
    }
    ((highest * 1.05 / 20.0).ceil() * 20.0).min(1e6)
}

/// The time axis' labels: every 10 minutes (every 5 on a span under half an hour), on the
/// minute of the display time, as seconds from the span's start.
fn time_key_points(h: &ReadingHistory, offset: FixedOffset, span: i64) -> Vec<i64> {
    let every: i64 = if span < 1800 { 300 } else { 600 };
    let local = h
        .from
        .with_timezone(&offset)
        .naive_local()
        .and_utc()
        .timestamp();
    let first = (local.div_euclid(every) + 1) * every - local;
    (0..)
        .map(|i| first + i * every)
        .take_while(|x| *x <= span)
        .take(24)
        .collect()
}

/// Draws `h` as a PNG of `size` pixels; the times on the axis at `offset`.
pub fn draw(
    h: &ReadingHistory,
    current: Option<Current>,
    offset: FixedOffset,
    size: (u32, u32),
) -> Result<Chart, String> {
    font_ready()?;
    let span = (h.to - h.from).num_seconds();
    if span <= 0 {
        return Err(format!("an empty time span ({} to {})", h.from, h.to));
    }
    if h.points.iter().all(|p| !p.1.is_finite()) {
        return Err("no finite value to draw".into());
    }
    // plotters panics on some inputs it cannot lay out; a chart is never worth a panic
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        draw_inner(h, current, offset, size, span)
    }))
    .unwrap_or_else(|_| Err("the chart library gave up drawing it".into()))
}

fn draw_inner(
    h: &ReadingHistory,
    current: Option<Current>,
    offset: FixedOffset,
    (width, height): (u32, u32),
    span: i64,
) -> Result<Chart, String> {
    let err = |e: &dyn std::fmt::Display| format!("drawing the chart: {e}");
    let small = height < 200;
    let label_px = if small { 10 } else { 12 };
    let x_of = |t: Timestamp| (t - h.from).num_seconds().clamp(0, span);
    let top = y_max(h, current);
    let mut buf = vec![0u8; width as usize * height as usize * 3];
    let (plot_x, plot_y) = {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let title = format!(
            "{} % over the last {} min (UTC{})",
            h.resource.code(),
            span / 60,
            utc_suffix(offset)
        );
        let mut chart = ChartBuilder::on(&root)
            .margin(6)
            .margin_right(if small { 10 } else { 14 })
            .caption(title, (FONT, label_px + 1).into_font().color(&TEXT_COLOUR))
            .x_label_area_size(if small { 18 } else { 22 })
            .y_label_area_size(if small { 30 } else { 36 })
            .build_cartesian_2d(
                (0..span).with_key_points(time_key_points(h, offset, span)),
                0.0..top,
            )
            .map_err(|e| err(&e))?;
        let from = h.from;
        let time_label = move |x: &i64| {
            let t = from + chrono::Duration::seconds(*x);
            t.with_timezone(&offset).format("%H:%M").to_string()
        };
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID_COLOUR)
            .axis_style(TEXT_COLOUR)
            .y_labels(6)
            .x_label_formatter(&time_label)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style((FONT, label_px).into_font().color(&TEXT_COLOUR))
            .draw()
            .map_err(|e| err(&e))?;
        if let Some((start, end)) = h.breach {
            let (x0, x1) = (x_of(start), x_of(end));
            if x1 > x0 {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, top), (x1, 0.0)],
                        BREACH_COLOUR.filled(),
                    )))
                    .map_err(|e| err(&e))?;
            }
        }
        let mut labels: Vec<(String, f64, RGBColor, bool)> = Vec::new();
        for (threshold, colour, name) in [
            (h.warning, WARNING_COLOUR, "warning"),
            (h.critical, CRITICAL_COLOUR, "critical"),
        ] {
            let Some(v) = threshold.filter(|v| v.is_finite() && *v >= 0.0 && *v <= top) else {
                continue;
            };
            chart
                .draw_series(LineSeries::new([(0, v), (span, v)], colour.stroke_width(2)))
                .map_err(|e| err(&e))?;
            // the warning's label goes below its line when the critical line is too close
            // above it for both
            let below = name == "warning"
                && h.critical.is_some_and(|c| {
                    let rows = chart.backend_coord(&(0, v)).1 - chart.backend_coord(&(0, c)).1;
                    (0..label_px + 4).contains(&rows)
                });
            labels.push((format!("{name} {v:.0}"), v, colour, below));
        }
        // the mean per step, broken where steps are missing (no line across a gap)
        let points: Vec<(i64, f64)> = h
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|p| (x_of(p.0), p.1.clamp(0.0, top)))
            .collect();
        let gap = 2.5 * typical_step(&points);
        let mut segment: Vec<(i64, f64)> = Vec::new();
        let mut segments: Vec<Vec<(i64, f64)>> = Vec::new();
        for p in points {
            if segment.last().is_some_and(|l| (p.0 - l.0) as f64 > gap) {
                segments.push(std::mem::take(&mut segment));
            }
            segment.push(p);
        }
        segments.push(segment);
        for s in segments.into_iter().filter(|s| !s.is_empty()) {
            if s.len() == 1 {
                chart
                    .draw_series(s.iter().map(|p| Circle::new(*p, 2, MEAN_COLOUR.filled())))
                    .map_err(|e| err(&e))?;
            } else {
                chart
                    .draw_series(LineSeries::new(s, MEAN_COLOUR.stroke_width(2)))
                    .map_err(|e| err(&e))?;
            }
        }
        // each threshold's name and value at its line's left end, in a white box over the mean
        for (text, v, colour, below) in labels {
            let font = (FONT, label_px).into_font().color(&colour);
            let (w, th) = root.estimate_text_size(&text, &font).map_err(|e| err(&e))?;
            let (w, th) = (w as i32 + 4, th as i32 + 1);
            let dy = if below { 2 } else { -2 - th };
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((span / 100, v))
                        + Rectangle::new([(-2, dy), (w - 2, dy + th)], WHITE.filled())
                        + Text::new(text, (0, dy), font.pos(Pos::new(HPos::Left, VPos::Top))),
                ))
                .map_err(|e| err(&e))?;
        }
        if let Some(c) = current.filter(|c| c.value.is_finite()) {
            let p = (x_of(c.at), c.value.clamp(0.0, top));
            let font = (FONT, label_px + 1).into_font().color(&VALUE_COLOUR);
            let text = format!("{:.1}%", c.value);
            let (w, th) = root.estimate_text_size(&text, &font).map_err(|e| err(&e))?;
            let (w, th) = (w as i32 + 6, th as i32 + 2);
            // the label in a white box beside the dot, on the side with room for it: left of
            // it near the right edge, below it near the top
            let (px, py) = chart.backend_coord(&p);
            let (plot_x, plot_y) = chart.plotting_area().get_pixel_range();
            let dx = if px + 8 + w > plot_x.end { -8 - w } else { 8 };
            let dy = if py - 4 - th < plot_y.start {
                4
            } else {
                -4 - th
            };
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at(p)
                        + Circle::new((0, 0), 3, VALUE_COLOUR.filled())
                        + Rectangle::new([(dx, dy), (dx + w, dy + th)], WHITE.filled())
                        + Text::new(
                            text,
                            (dx + 3, dy + 1),
                            font.pos(Pos::new(HPos::Left, VPos::Top)),
                        ),
                ))
                .map_err(|e| err(&e))?;
        }
        let (px, py) = chart.plotting_area().get_pixel_range();
        root.present().map_err(|e| err(&e))?;
        (px, py)
    };
    Ok(Chart {
        png: encode_png(&buf, width, height)?,
        width,
        height,
        plot_x,
        plot_y,
        y_max: top,
    })
}

/// The usual distance between points (their median gap), for telling a missing step.
fn typical_step(points: &[(i64, f64)]) -> f64 {
    let mut gaps: Vec<i64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    if gaps.is_empty() {
        return 60.0;
    }
    gaps.sort_unstable();
    gaps[gaps.len() / 2].max(1) as f64
}

/// `+09:00`, or empty for UTC.
fn utc_suffix(offset: FixedOffset) -> String {
    let secs = offset.local_minus_utc();
    if secs == 0 {
        return String::new();
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let secs = secs.abs();
    format!("{sign}{:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder
        .write_header()
        .map_err(|e| format!("encoding the chart as PNG: {e}"))?;
    writer
        .write_image_data(rgb)
        .map_err(|e| format!("encoding the chart as PNG: {e}"))?;
    writer
        .finish()
        .map_err(|e| format!("encoding the chart as PNG: {e}"))?;
    Ok(out)
}
