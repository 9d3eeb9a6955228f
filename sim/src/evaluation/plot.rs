//! One picture per evaluated trace: each mode's rekey latency per membership event over time
//! (above), and the protocol the adaptive run used, beside the phase oracle's choice (below).

use std::path::Path;

use plotters::prelude::*;

use super::Evaluation;
use crate::trace::Trace;

/// Writes the evaluation's plot to `path` (SVG).
pub fn plot(trace: &Trace, e: &Evaluation, path: &Path) -> std::io::Result<()> {
    draw(trace, e, path).map_err(|err| std::io::Error::other(err.to_string()))
}

fn draw(trace: &Trace, e: &Evaluation, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let adaptive = e.adaptive();
    let end_s = adaptive.steps.last().map_or(1.0, |s| s.at_s) + trace.tail_s.max(1.0);
    let latencies = e.replays.iter().flat_map(|r| r.steps.iter().filter_map(|s| s.rekey_ms));
    let (low, high) =
        latencies.fold((f64::INFINITY, 1.0f64), |(lo, hi), ms| (lo.min(ms.max(0.01)), hi.max(ms)));
    let low = if low.is_finite() { low / 1.5 } else { 0.1 };
    let mut protocols: Vec<String> =
        e.fixed().iter().map(|r| r.mode.trim_start_matches("fixed:").to_owned()).collect();
    if !protocols.contains(&trace.start) {
        protocols.push(trace.start.clone());
    }
    let index = |p: &str| protocols.iter().position(|x| x == p).unwrap_or(0) as f64;

    let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(470);
    let mut chart = ChartBuilder::on(&upper)
        .caption(
            format!("trace {}: rekey latency per membership event", trace.name),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end_s, (low..high * 1.5).log_scale())?;
    chart.configure_mesh().x_desc("time, s").y_desc("ms (log scale)").draw()?;
    let palette = [RED, BLUE, GREEN, MAGENTA, CYAN, RGBColor(200, 120, 0)];
    for (i, r) in e.fixed().iter().enumerate() {
        let color = palette[i % palette.len()];
        let points: Vec<(f64, f64)> =
            r.steps.iter().filter_map(|s| s.rekey_ms.map(|ms| (s.at_s, ms.max(low)))).collect();
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?
            .label(r.mode.clone())
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
    }
    let points: Vec<(f64, f64)> =
        adaptive.steps.iter().filter_map(|s| s.rekey_ms.map(|ms| (s.at_s, ms.max(low)))).collect();
    chart
        .draw_series(points.iter().map(|&(x, y)| Cross::new((x, y), 6, BLACK.stroke_width(2))))?
        .label("adaptive")
        .legend(|(x, y)| Cross::new((x + 10, y), 6, BLACK.stroke_width(2)));
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;

    let top = protocols.len() as f64 - 0.5;
    let mut timeline = ChartBuilder::on(&lower)
        .caption(
            "protocol in use: adaptive (black), phase oracle (grey, dashed)",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end_s, -0.5f64..top)?;
    let names = protocols.clone();
    timeline
        .configure_mesh()
        .x_desc("time, s")
        .y_labels(protocols.len())
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 0.01 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()?;
    // The adaptive run's protocol: the start, then each completed switch.
    let mut current = index(&trace.start);
    let mut line = vec![(0.0, current)];
    for s in &adaptive.switches {
        line.push((s.at_s, current));
        current = index(&s.to);
        line.push((s.at_s, current));
    }
    line.push((end_s, current));
    let mut phase: Vec<(f64, f64)> = Vec::new();
    for (s, choice) in adaptive.steps.iter().zip(&e.phase_choice) {
        let y = index(choice) + 0.08;
        if let Some(&(_, last)) = phase.last() {
            phase.push((s.at_s, last));
        }
        phase.push((s.at_s, y));
    }
    if let Some(&(_, last)) = phase.last() {
        phase.push((end_s, last));
    }
    timeline.draw_series(DashedLineSeries::new(
        phase,
        6,
        4,
        RGBColor(150, 150, 150).stroke_width(3),
    ))?;
    timeline.draw_series(LineSeries::new(line, BLACK.stroke_width(2)))?;
    root.present()?;
    Ok(())
}
