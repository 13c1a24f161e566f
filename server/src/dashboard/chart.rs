//! Server-rendered SVG bar charts: one bar per day, a `<title>` on every bar, the chart itself
//! labelled for screen readers (the page also shows the same figures as a table).

use maud::{Markup, html};

/// One bar.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Axis label (e.g. the day of the month).
    pub label: String,
    pub value: f64,
    /// Tooltip / accessible name of the bar.
    pub title: String,
}

const BAR_W: f64 = 18.0;
const GAP: f64 = 4.0;
const LEFT: f64 = 56.0;
const TOP: f64 = 12.0;
const PLOT_H: f64 = 160.0;
const BOTTOM: f64 = 28.0;

/// The smallest "nice" number (1, 2, 2.5, 5 × 10^k) at or above `v`.
pub fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let exp = v.log10().floor();
    let base = 10f64.powf(exp);
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * base >= v * 0.999_999 {
            return m * base;
        }
    }
    10.0 * base
}

/// A bar chart. `id` must be unique on the page; `axis` formats axis values.
pub fn bar_chart(
    id: &str,
    title: &str,
    desc: &str,
    bars: &[Bar],
    axis: impl Fn(f64) -> String,
) -> Markup {
    let max = nice_ceiling(bars.iter().map(|b| b.value).fold(0.0, f64::max));
    let width = LEFT + bars.len() as f64 * (BAR_W + GAP) + GAP;
    let height = TOP + PLOT_H + BOTTOM;
    let y = |v: f64| TOP + PLOT_H - (v / max) * PLOT_H;
    let ticks = [0.0, max / 2.0, max];
    html! {
        svg class="chart" role="img" viewBox={ "0 0 " (width) " " (height) }
            width=(width) height=(height) aria-labelledby={ (id) "-title " (id) "-desc" }
            xmlns="http://www.w3.org/2000/svg" {
            title id={ (id) "-title" } { (title) }
            desc id={ (id) "-desc" } { (desc) }
            @for t in ticks {
                line class="grid" x1=(LEFT) x2=(width) y1=(y(t)) y2=(y(t)) {}
                text class="axis" x=(LEFT - 6.0) y=(y(t) + 4.0) text-anchor="end" { (axis(t)) }
            }
            @for (i, b) in bars.iter().enumerate() {
                @let x = LEFT + GAP + i as f64 * (BAR_W + GAP);
                @let top = y(b.value.max(0.0));
                g class="bar" {
                    title { (b.title) }
                    // A full-height transparent target, so empty days have a tooltip too.
                    rect class="hit" x=(x) y=(TOP) width=(BAR_W) height=(PLOT_H) {}
                    rect class="value" x=(x) y=(top) width=(BAR_W) height=((TOP + PLOT_H - top).max(0.0)) {}
                }
                @if i == 0 || (i + 1) % 5 == 0 {
                    text class="axis" x=(x + BAR_W / 2.0) y=(TOP + PLOT_H + 18.0) text-anchor="middle" { (b.label) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.2), 2.0);
        assert_eq!(nice_ceiling(2.2), 2.5);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(0.031), 0.05);
    }

    #[test]
    fn chart_has_titles() {
        let bars = vec![
            Bar {
                label: "1".into(),
                value: 1.5,
                title: "2025-02-01: 1h 30m 0s".into(),
            },
            Bar {
                label: "2".into(),
                value: 0.0,
                title: "2025-02-02: <none>".into(),
            },
        ];
        let svg =
            bar_chart("c", "Active hours", "per day", &bars, |v| format!("{v}")).into_string();
        assert!(
            svg.contains("<title>2025-02-01: 1h 30m 0s</title>"),
            "{svg}"
        );
        assert!(svg.contains("&lt;none&gt;"), "{svg}");
        assert!(svg.contains("aria-labelledby=\"c-title c-desc\""), "{svg}");
    }
}
