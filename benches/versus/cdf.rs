//! A latency CDF as a small SVG: one line per target, logarithmic time axis
//! so that both the body and the tail are visible. Polylines and a few
//! labels are all it takes, so no plotting library.

use std::fmt::Write as _;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 3] = ["#c0392b", "#2471a3", "#229954"];
/// Points per line: quantiles 0, 1/N, … 1.
const POINTS: usize = 400;

/// `series`: (name, latencies in µs); `what`: what the latencies measure.
pub fn svg(title: &str, what: &str, series: &[(&str, &[u64])]) -> String {
    let sorted: Vec<(&str, Vec<u64>)> = series
        .iter()
        .map(|(name, samples)| {
            let mut s = samples.to_vec();
            s.sort_unstable();
            (*name, s)
        })
        .collect();
    let lowest = sorted
        .iter()
        .filter_map(|(_, s)| s.first())
        .min()
        .copied()
        .unwrap_or(1);
    let highest = sorted
        .iter()
        .filter_map(|(_, s)| s.last())
        .max()
        .copied()
        .unwrap_or(10);
    // Whole decades of milliseconds around the data.
    let lo = (lowest.max(1) as f64 / 1e3).log10().floor();
    let hi = (highest.max(2) as f64 / 1e3).log10().ceil().max(lo + 1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |micros: u64| {
        let ms = (micros.max(1) as f64 / 1e3).log10();
        LEFT + (ms - lo) / (hi - lo) * plot_w
    };
    let y = |q: f64| TOP + (1.0 - q) * plot_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{} — CDF of {}</text>"#,
        WIDTH / 2.0,
        escape(title),
        escape(what)
    );
    // Grid: every decade on x, every 10 % on y, and the p99 line.
    let mut decade = lo;
    while decade <= hi {
        let px = LEFT + (decade - lo) / (hi - lo) * plot_w;
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            format_ms(10f64.powf(decade))
        );
        decade += 1.0;
    }
    for tenth in 0..=10 {
        let q = tenth as f64 / 10.0;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}%</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y(q) + 4.0,
            tenth * 10,
            py = y(q),
        );
    }
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#999" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#666">p99</text>"##,
        LEFT + plot_w,
        LEFT + plot_w - 4.0,
        y(0.99) - 4.0,
        py = y(0.99),
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">latency (ms, log scale)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 14.0
    );
    for (i, (name, samples)) in sorted.iter().enumerate() {
        if samples.is_empty() {
            continue;
        }
        let colour = COLOURS[i % COLOURS.len()];
        let mut points = String::new();
        for step in 0..=POINTS {
            let q = step as f64 / POINTS as f64;
            let index = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            let _ = write!(points, "{:.1},{:.1} ", x(samples[index]), y(q));
        }
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.trim_end()
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" fill="{colour}">{} ({} samples)</text>"#,
            LEFT + 10.0,
            TOP + 16.0 + 16.0 * i as f64,
            escape(name),
            samples.len()
        );
    }
    out.push_str("</svg>\n");
    out
}

fn format_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
