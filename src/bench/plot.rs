//! `--plot FILE.svg`: throughput, latency (p50, p99) and per-shard load share
//! per second of the run, one panel each, with rebalance events drawn as
//! vertical lines across all three (plotters' SVG backend).

use super::report::{Event, Point, Report, Summary};
use plotters::prelude::*;
use std::path::Path;

type Panel<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Draws `r` into an SVG file at `path`.
pub fn plot(r: &Report, path: &Path) -> Result<(), String> {
    draw(r, path).map_err(|e| format!("--plot {}: {e}", path.display()))
}

fn draw(r: &Report, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 960)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((3, 1));
    let xmax = (r.result.series.len().max(1)) as f64;
    let mut runs: Vec<&Summary> = vec![&r.result];
    if let Some(c) = &r.compare {
        runs.push(&c.result);
    }

    // Throughput.
    let ymax = runs
        .iter()
        .flat_map(|s| s.series.iter().map(|p| p.ops as f64))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&panels[0])
        .caption("Throughput", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("operations / s")
        .draw()?;
    for (i, s) in runs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.series.iter().map(|p| (p.t as f64 + 0.5, p.ops as f64)),
                color.stroke_width(2),
            ))?
            .label(s.target.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    events(&mut chart, &r.events, ymax, true)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    // Latency.
    let ymax = runs
        .iter()
        .flat_map(|s| s.series.iter().map(|p| p.p99_us as f64 / 1000.0))
        .fold(0.1, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&panels[1])
        .caption("Latency", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("ms")
        .draw()?;
    for (i, s) in runs.iter().enumerate() {
        let p50: fn(&Point) -> u64 = |p| p.p50_us;
        let p99: fn(&Point) -> u64 = |p| p.p99_us;
        for (j, (name, pick)) in [("p50", p50), ("p99", p99)].into_iter().enumerate() {
            let color = Palette99::pick(i * 2 + j + 2).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    s.series
                        .iter()
                        .map(|p| (p.t as f64 + 0.5, pick(p) as f64 / 1000.0)),
                    color.stroke_width(2),
                ))?
                .label(format!("{name} {}", s.target))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    events(&mut chart, &r.events, ymax, false)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    // Per-shard load share.
    shard_panel(&panels[2], &r.result, &r.events, xmax)?;
    root.present()?;
    Ok(())
}

fn shard_panel(
    area: &Panel<'_>,
    s: &Summary,
    evs: &[Event],
    xmax: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Per-shard load (share of statements, from the admin console)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..100f64)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("% of statements")
        .draw()?;
    let mut names: Vec<String> = Vec::new();
    for p in &s.series {
        for (n, _) in &p.shard_share {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    for (i, name) in names.iter().enumerate() {
        let color = Palette99::pick(i + 6).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.series.iter().filter_map(|p| {
                    p.shard_share
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, share)| (p.t as f64 + 0.5, share * 100.0))
                }),
                color.stroke_width(2),
            ))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    if names.is_empty() {
        chart.draw_series(std::iter::once(Text::new(
            "not measured: give --admin-url",
            (xmax * 0.05, 50.0),
            ("sans-serif", 16),
        )))?;
    }
    events(&mut chart, evs, 100.0, false)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Vertical lines at the events (with their labels when `labelled`).
fn events<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    evs: &[Event],
    ymax: f64,
    labelled: bool,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    for (i, e) in evs.iter().enumerate() {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(e.t, 0.0), (e.t, ymax)],
            RED.stroke_width(1),
        )))?;
        if labelled {
            let y = ymax * (0.95 - 0.07 * (i % 5) as f64);
            chart.draw_series(std::iter::once(Text::new(
                e.label.clone(),
                (e.t, y),
                ("sans-serif", 12).into_font().color(&RED),
            )))?;
        }
    }
    Ok(())
}
