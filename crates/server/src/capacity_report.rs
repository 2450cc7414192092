//! The HTML report of `admin capacity run`: one self-contained page (inline SVG, no scripts,
//! nothing fetched) with latency and throughput against callers, and the per-request stage
//! breakdown over time, as the reference's report drew it.

use std::fmt::Write;

use crate::capacity::{CapacityRun, STEP_HEADINGS};

/// The colour of each series, shared by the charts and their legends.
pub(crate) const P50_COLOUR: &str = "#1f77b4";
pub(crate) const P95_COLOUR: &str = "#ff7f0e";
pub(crate) const P99_COLOUR: &str = "#d62728";
pub(crate) const THROUGHPUT_COLOUR: &str = "#9467bd";
const STAGE_COLOURS: [(&str, &str); 5] = [
    ("total", "#333333"),
    ("queue", "#17becf"),
    ("load", "#bcbd22"),
    ("execute", "#2ca02c"),
    ("hop", "#e377c2"),
];

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 45.0;

/// A series to draw: its name, colour and points.
struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    points: Vec<(f64, f64)>,
}

/// The report page.
pub(crate) fn html(run: &CapacityRun) -> String {
    let mut page = String::with_capacity(256 * 1024);
    let title = format!("Capacity of {}/{}", run.service, run.version);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse}}\
         td,th{{padding:4px 10px;text-align:right;border-bottom:1px solid #ddd}}\
         .legend span{{margin-right:16px}}.swatch{{display:inline-block;width:12px;height:12px;margin-right:4px}}</style>\
         </head><body><h1>{title}</h1><p>Server {server}; strategy {strategy:?}, latency limit {limit} ms; \
         network overhead {overhead:.1} ms; stopped because {stopped}.</p>",
        title = escape(&title),
        server = escape(&run.server),
        strategy = run.strategy,
        limit = run.latency_limit_ms,
        overhead = run.network_overhead_ms,
        stopped = escape(&run.stopped_because),
    );

    let by_callers = |value: fn(&crate::capacity::Step) -> f64| {
        run.steps
            .iter()
            .map(|step| (step.callers as f64, value(step)))
            .collect::<Vec<_>>()
    };
    page.push_str("<h2>Latency against callers</h2>");
    chart(
        &mut page,
        "callers",
        "latency (ms)",
        &[
            Series {
                name: "p50",
                colour: P50_COLOUR,
                points: by_callers(|step| step.p50_ms),
            },
            Series {
                name: "p95",
                colour: P95_COLOUR,
                points: by_callers(|step| step.p95_ms),
            },
            Series {
                name: "p99",
                colour: P99_COLOUR,
                points: by_callers(|step| step.p99_ms),
            },
        ],
        true,
    );
    page.push_str("<h2>Throughput against callers</h2>");
    chart(
        &mut page,
        "callers",
        "requests per second",
        &[Series {
            name: "throughput",
            colour: THROUGHPUT_COLOUR,
            points: by_callers(|step| step.throughput_per_s),
        }],
        true,
    );

    page.push_str(
        "<h2>Where the time went, request by request</h2><p>Each point is one request: its \
         total, the time it waited for a worker (queue, including starting one), loading the \
         service into the worker (load: snapshot and initCode), running it (execute) and the \
         rest, between the web node and the compute node (hop).</p>",
    );
    let stages: Vec<Series> = STAGE_COLOURS
        .iter()
        .map(|(stage, colour)| Series {
            name: stage,
            colour,
            points: run
                .steps
                .iter()
                .flat_map(|step| &step.samples)
                .filter_map(|sample| {
                    sample
                        .stages
                        .iter()
                        .find(|(name, _)| name == stage)
                        .map(|(_, ms)| (sample.at_ms, *ms))
                })
                .collect(),
        })
        .collect();
    chart(
        &mut page,
        "time since the start (ms)",
        "duration (ms)",
        &stages,
        false,
    );

    page.push_str("<h2>Steps</h2><table><tr>");
    for heading in STEP_HEADINGS {
        let _ = write!(page, "<th>{heading}</th>");
    }
    page.push_str("<th>stage means (ms)</th></tr>");
    for step in &run.steps {
        page.push_str("<tr>");
        for cell in step.cells() {
            let _ = write!(page, "<td>{cell}</td>");
        }
        let stages = step
            .stage_means_ms
            .iter()
            .map(|(name, ms)| format!("{} {ms:.2}", escape(name)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(page, "<td>{stages}</td></tr>");
    }
    page.push_str(
        "</table><p>The callers are a closed loop: each waits for its answer before sending \
         the next request, so under overload the latencies here understate what an open stream \
         of requests would meet.</p></body></html>\n",
    );
    page
}

/// Draws one chart: lines through the points (`lines`) or a point per value.
fn chart(page: &mut String, x_label: &str, y_label: &str, series: &[Series], lines: bool) {
    let points = series.iter().flat_map(|series| &series.points);
    let x_max = points.clone().map(|(x, _)| *x).fold(0.0, f64::max).max(1.0);
    let x_min = if lines {
        points.clone().map(|(x, _)| *x).fold(x_max, f64::min)
    } else {
        0.0
    };
    let x_span = if x_max > x_min { x_max - x_min } else { 1.0 };
    let y_max = nice_ceiling(points.map(|(_, y)| *y).fold(0.0, f64::max));
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let x_at = |x: f64| LEFT + (x - x_min) / x_span * plot_width;
    let y_at = |y: f64| TOP + plot_height - y / y_max * plot_height;

    let _ = write!(
        page,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\">\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_width}\" height=\"{plot_height}\" fill=\"#fafafa\" stroke=\"#999\"/>"
    );
    for tick in 0..=4 {
        let value = y_max * f64::from(tick) / 4.0;
        let y = y_at(value);
        let _ = write!(
            page,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e0e0e0\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            format_tick(value)
        );
        let x_value = x_min + x_span * f64::from(tick) / 4.0;
        let _ = write!(
            page,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            x_at(x_value),
            TOP + plot_height + 16.0,
            format_tick(x_value)
        );
    }
    let _ = write!(
        page,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\
         <text x=\"14\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{}</text>",
        LEFT + plot_width / 2.0,
        HEIGHT - 8.0,
        escape(x_label),
        TOP + plot_height / 2.0,
        TOP + plot_height / 2.0,
        escape(y_label)
    );
    for series in series {
        if lines {
            let path: Vec<String> = series
                .points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", x_at(*x), y_at(*y)))
                .collect();
            let _ = write!(
                page,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"3\" points=\"{}\"/>",
                series.colour,
                path.join(" ")
            );
        }
        let radius = if lines { 5.0 } else { 2.5 };
        for (x, y) in &series.points {
            let _ = write!(
                page,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{radius}\" fill=\"{}\"/>",
                x_at(*x),
                y_at(*y),
                series.colour
            );
        }
    }
    page.push_str("</svg><div class=\"legend\">");
    for series in series {
        let _ = write!(
            page,
            "<span><span class=\"swatch\" style=\"background:{}\"></span>{}</span>",
            series.colour,
            escape(series.name)
        );
    }
    page.push_str("</div>");
}

/// A round number at or above `value`, for the top of an axis.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

fn format_tick(value: f64) -> String {
    if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// Text made safe for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::{Sample, Step, Strategy};

    fn step(callers: usize, p50: f64) -> Step {
        Step {
            callers,
            requests: 100,
            errors: 0,
            throughput_per_s: 50.0 * callers as f64,
            mean_ms: p50,
            p50_ms: p50,
            p95_ms: p50 * 2.0,
            p99_ms: p50 * 3.0,
            stage_means_ms: vec![("execute".to_owned(), 1.0)],
            pool_busy_max: 2,
            pool_max_size: 20,
            pool_waiting_max: 0,
            samples: vec![Sample {
                at_ms: 10.0,
                latency_ms: p50,
                ok: true,
                stages: vec![("total".to_owned(), p50), ("execute".to_owned(), 1.0)],
            }],
        }
    }

    #[test]
    fn the_report_draws_every_series_and_escapes_names() {
        let run = CapacityRun {
            server: "http://127.0.0.1:1".to_owned(),
            service: "a<b".to_owned(),
            version: "v1".to_owned(),
            strategy: Strategy::Latency,
            latency_limit_ms: 250.0,
            network_overhead_ms: 0.4,
            steps: vec![step(10, 3.0), step(20, 6.0)],
            stopped_because: "the callers reached --max-thread (20)".to_owned(),
        };
        let page = html(&run);
        assert!(page.contains("a&lt;b") && !page.contains("a<b"));
        assert_eq!(page.matches("<svg").count(), 3);
        for colour in [
            P50_COLOUR,
            P95_COLOUR,
            P99_COLOUR,
            THROUGHPUT_COLOUR,
            "#2ca02c",
        ] {
            assert!(page.contains(&format!("fill=\"{colour}\"")), "{colour}");
        }
        assert!(
            !page.contains("<script"),
            "the report must not run anything"
        );
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(180.0), 200.0);
        assert_eq!(nice_ceiling(2.2), 2.5);
    }
}
