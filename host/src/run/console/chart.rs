//! The ticks page's chart: one stacked bar per tick (oldest on the left), a segment per step of
//! the tick (`steps_ms` of its summary), drawn as inline SVG on the server. Every text in it is
//! escaped here: the template inserts it as it is.

use super::views::TickView;
use std::collections::BTreeSet;
use std::fmt::Write as _;

const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 60.0;
const BOTTOM: f64 = 30.0;
const TOP: f64 = 10.0;

pub use crate::config::visible::html_escape as escape;

/// The chart of `ticks` (newest first, as listed) with its legend; empty without ticks.
pub fn steps_svg(ticks: &[TickView]) -> String {
    if ticks.is_empty() {
        return String::new();
    }
    let steps: Vec<&str> = ticks
        .iter()
        .flat_map(|t| t.steps.keys().map(String::as_str))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let color = |step: &str| {
        let i = steps.iter().position(|s| *s == step).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let total = |t: &TickView| {
        t.steps
            .values()
            .sum::<u64>()
            .max(t.duration_ms.max(0) as u64)
    };
    let max_ms = ticks.iter().map(total).max().unwrap_or(1).max(1) as f64;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - 10.0;
    let slot = plot_w / ticks.len() as f64;
    let bar_w = (slot * 0.7).max(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" role=\"img\" viewBox=\"0 0 {WIDTH} {}\" width=\"{WIDTH}\" height=\"{}\">\
         <title>duration of each step per tick, milliseconds</title>",
        HEIGHT + 20.0 * steps.len().div_ceil(5) as f64,
        HEIGHT + 20.0 * steps.len().div_ceil(5) as f64,
    );
    // axis and three gridlines, labelled in ms
    for i in 0..=3 {
        let v = max_ms * i as f64 / 3.0;
        let y = TOP + plot_h - plot_h * i as f64 / 3.0;
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#555\">{:.0} ms</text>",
            WIDTH - 10.0,
            LEFT - 4.0,
            y + 4.0,
            v
        );
    }
    for (i, t) in ticks.iter().rev().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut y = TOP + plot_h;
        for (step, ms) in &t.steps {
            let h = plot_h * *ms as f64 / max_ms;
            if h <= 0.0 {
                continue;
            }
            y -= h;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>tick {} {}: {} {ms} ms</title></rect>",
                color(step),
                t.id,
                escape(&t.started_at),
                escape(step),
            );
        }
        if !t.errors.is_empty() {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#d62728\">!<title>tick {}: {} error(s)</title></text>",
                x + bar_w / 2.0,
                (y - 3.0).max(TOP + 8.0),
                t.id,
                t.errors.len()
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"11\" fill=\"#555\">oldest</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#555\">newest</text>",
        HEIGHT - 12.0,
        WIDTH - 10.0,
        HEIGHT - 12.0
    );
    for (i, step) in steps.iter().enumerate() {
        let (col, row) = (i % 5, i / 5);
        let x = LEFT + col as f64 * 165.0;
        let y = HEIGHT + row as f64 * 20.0;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\" font-size=\"12\" fill=\"#333\">{}</text>",
            y - 10.0,
            color(step),
            x + 16.0,
            escape(step)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(id: i64, steps: &[(&str, u64)], errors: usize) -> TickView {
        TickView {
            id,
            started_at: "2026-12-01 00:00:00 UTC".into(),
            duration_ms: steps.iter().map(|(_, v)| *v as i64).sum(),
            instance: "i".into(),
            dry_run: false,
            metric_mode: "query".into(),
            steps: steps.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            alarms: String::new(),
            held: String::new(),
            errors: vec!["x".into(); errors],
        }
    }

    #[test]
    fn one_bar_per_tick_one_segment_per_step_heights_in_proportion() {
        let svg = steps_svg(&[
            tick(2, &[("collect", 300), ("notify", 100)], 1),
            tick(1, &[("collect", 100), ("<evil>", 100)], 0),
        ]);
        assert_eq!(
            svg.matches("<rect").count(),
            4 + 3,
            "4 segments + 3 legend boxes"
        );
        // the tallest segment is collect of tick 2: 300 of 400 ms of the plot's 220 px
        assert!(svg.contains("height=\"165.0\""), "{svg}");
        assert!(svg.contains("&lt;evil&gt;") && !svg.contains("<evil>"));
        assert_eq!(svg.matches("error(s)").count(), 1);
        assert_eq!(steps_svg(&[]), "");
    }
}
