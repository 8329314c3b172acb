//! `--chart FILE.svg`: nodes, hourly cost rate (with the lower bound) and pending pods
//! over simulated time, one panel each; several runs overlay in different colours.

use super::report::{Report, Sample};
use std::fmt::Write as _;

const WIDTH: f64 = 960.0;
const PANEL_H: f64 = 170.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 40.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
/// At most this many points per line: a week at 10 s scans is 60,000 samples.
const MAX_POINTS: usize = 1500;

fn downsample(series: &[Sample]) -> Vec<&Sample> {
    let step = series.len().div_ceil(MAX_POINTS).max(1);
    series.iter().step_by(step).collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Panel<'a> {
    title: &'a str,
    value: fn(&Sample) -> f64,
}

/// Renders the chart for one or more runs of the same trace.
pub fn render(reports: &[Report]) -> String {
    let panels = [
        Panel {
            title: "managed nodes",
            value: |s| s.nodes as f64,
        },
        Panel {
            title: "cost rate ($/h); dashed: lower bound",
            value: |s| s.cost_per_hour,
        },
        Panel {
            title: "pending pods",
            value: |s| s.pending as f64,
        },
    ];
    let height = TOP + panels.len() as f64 * (PANEL_H + GAP);
    let t_max = reports
        .iter()
        .flat_map(|r| r.series.last())
        .map(|s| s.t)
        .fold(1.0f64, f64::max);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = reports
        .first()
        .map_or(String::new(), |r| r.trace.name.clone());
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="15">stevedore simulate: {}"#,
        escape(&title)
    );
    for (i, r) in reports.iter().enumerate() {
        let _ = write!(
            svg,
            r#" <tspan fill="{}">■ {} (${:.2})</tspan>"#,
            COLOURS[i % COLOURS.len()],
            escape(&r.mode),
            r.cost_usd.total
        );
    }
    svg.push_str("</text>\n");
    let plot_w = WIDTH - LEFT - RIGHT;
    for (pi, panel) in panels.iter().enumerate() {
        let y0 = TOP + pi as f64 * (PANEL_H + GAP);
        let mut v_max = reports
            .iter()
            .flat_map(|r| r.series.iter())
            .map(|s| (panel.value)(s).max(if pi == 1 { s.lower_bound_per_hour } else { 0.0 }))
            .fold(0.0f64, f64::max);
        if v_max <= 0.0 {
            v_max = 1.0;
        }
        let x = |t: f64| LEFT + t / t_max * plot_w;
        let y = |v: f64| y0 + PANEL_H - v / v_max * PANEL_H;
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{y0}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#999"/><text x="{LEFT}" y="{}" >{}</text><text x="{}" y="{}" text-anchor="end">{}</text><text x="{}" y="{}" text-anchor="end">0</text>"##,
            y0 - 6.0,
            escape(panel.title),
            LEFT - 6.0,
            y0 + 10.0,
            format_value(v_max),
            LEFT - 6.0,
            y0 + PANEL_H
        );
        // Hour ticks every 6 h (or every hour on short traces).
        let tick = if t_max > 12.0 * 3600.0 {
            6.0 * 3600.0
        } else {
            3600.0
        };
        let mut t = 0.0;
        while t <= t_max {
            let _ = writeln!(
                svg,
                r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#eee"/><text x="{0:.1}" y="{3}" text-anchor="middle" fill="#666">{4}h</text>"##,
                x(t),
                y0,
                y0 + PANEL_H,
                y0 + PANEL_H + 14.0,
                (t / 3600.0).round()
            );
            t += tick;
        }
        for (ri, r) in reports.iter().enumerate() {
            let colour = COLOURS[ri % COLOURS.len()];
            let pts = downsample(&r.series);
            let line: Vec<String> = pts
                .iter()
                .map(|s| format!("{:.1},{:.1}", x(s.t), y((panel.value)(s))))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.2" points="{}"/>"#,
                line.join(" ")
            );
            if pi == 0 && ri == 0 {
                marks(&mut svg, r, &x, y0 + PANEL_H);
            }
            if pi == 1 && ri == 0 {
                let lb: Vec<String> = pts
                    .iter()
                    .map(|s| format!("{:.1},{:.1}", x(s.t), y(s.lower_bound_per_hour)))
                    .collect();
                let _ = writeln!(
                    svg,
                    r##"<polyline fill="none" stroke="#000" stroke-dasharray="4 3" stroke-width="1" points="{}"/>"##,
                    lb.join(" ")
                );
            }
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// Mark colours by disruption kind (`Mark::kind`).
const MARK_COLOURS: [(&str, &str); 7] = [
    ("emptied", "#bbbbbb"),
    ("consolidated", "#ff7f0e"),
    ("replaced", "#8c564b"),
    ("multi-node", "#e377c2"),
    ("expired", "#17becf"),
    ("drifted", "#bcbd22"),
    ("interrupted", "#d62728"),
];

/// Disruptions of the first run as short ticks along the bottom of the nodes panel,
/// with a legend of the kinds that occur.
fn marks(svg: &mut String, r: &Report, x: &dyn Fn(f64) -> f64, bottom: f64) {
    let colour = |kind: &str| {
        MARK_COLOURS
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or("#000", |(_, c)| c)
    };
    for m in &r.marks {
        let _ = writeln!(
            svg,
            r#"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="{3}" stroke-width="1"/>"#,
            x(m.t),
            bottom - 8.0,
            bottom,
            colour(m.kind)
        );
    }
    let mut legend_x = LEFT + 200.0;
    for (kind, c) in MARK_COLOURS {
        let n = r.marks.iter().filter(|m| m.kind == kind).count();
        if n > 0 {
            let _ = writeln!(
                svg,
                r#"<text x="{legend_x:.0}" y="{:.0}" fill="{c}">| {kind} ({n})</text>"#,
                bottom - PANEL_H - 6.0
            );
            legend_x += 110.0;
        }
    }
}

fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
