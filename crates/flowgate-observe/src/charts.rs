//! Line charts as inline SVG, drawn by the plotters library: the demo report and the broker's
//! live dashboard draw every chart through this one function.

use plotters::prelude::*;

const WIDTH: u32 = 900;
const HEIGHT: u32 = 300;

/// A colour per series, in order.
const COLOURS: [RGBColor; 4] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Why a chart could not be drawn (the drawing backend's words).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct ChartError(String);

fn drawing<E: std::fmt::Display>(e: E) -> ChartError {
    ChartError(e.to_string())
}

/// One named series of (x, y) points.
pub struct Series<'a> {
    /// The legend's name for it.
    pub name: &'a str,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
    /// A vertical marker at this x with this label (a crash), drawn in the series' colour.
    pub marker: Option<(f64, String)>,
}

/// Draws `series` as one line chart and returns the SVG text.
pub fn line_chart(
    title: &str,
    x_desc: &str,
    unit: &str,
    series: &[Series<'_>],
) -> Result<String, ChartError> {
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let x_min = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(x_max, f64::min)
        .min(0.0);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let mut ctx = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(x_min..x_max, 0.0..y_max)
            .map_err(drawing)?;
        ctx.configure_mesh()
            .x_desc(x_desc)
            .y_desc(unit)
            .draw()
            .map_err(drawing)?;
        for (i, s) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            ctx.draw_series(LineSeries::new(
                s.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(drawing)?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
            if let Some((at, label)) = &s.marker {
                ctx.draw_series(LineSeries::new(
                    vec![(*at, 0.0), (*at, y_max)],
                    colour.stroke_width(1),
                ))
                .map_err(drawing)?;
                ctx.draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (*at, y_max * 0.95),
                    ("sans-serif", 14).into_font().color(&colour),
                )))
                .map_err(drawing)?;
            }
        }
        ctx.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(drawing)?;
        root.present().map_err(drawing)?;
    }
    Ok(out)
}

/// Text made safe inside HTML, for the pages the charts go in.
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
