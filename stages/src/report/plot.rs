//! Draws a [`Figure`] as SVG and PNG with plotters, in one layout: the chart on the left, the
//! legend in its own column on the right so that it never hides a line.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::figure::{Figure, FigureKind};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 480;
const LEGEND_WIDTH: u32 = 250;

/// Tableau's ten colours: distinct, and readable in print.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const LINE_COLOURS: [RGBColor; 3] = [RGBColor(0, 0, 0), RGBColor(90, 90, 90), RGBColor(160, 160, 160)];

#[derive(Debug, thiserror::Error)]
#[error("drawing figure `{figure}`: {what}")]
pub struct PlotError {
    figure: String,
    what: String,
}

/// Text sizes are measured with a font shipped in the binary (DejaVu Sans), so a machine
/// without fonts lays out and rasterises the same figure.
fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Registering a valid built-in font cannot fail.
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

pub fn svg(figure: &Figure) -> Result<String, PlotError> {
    fonts();
    let mut out = String::new();
    draw(
        figure,
        SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area(),
    )?;
    Ok(out)
}

pub fn png(figure: &Figure) -> Result<Vec<u8>, PlotError> {
    fonts();
    let err = |what: String| PlotError {
        figure: figure.title.clone(),
        what,
    };
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    draw(
        figure,
        BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area(),
    )?;
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| err(e.to_string()))?;
    writer.write_image_data(&rgb).map_err(|e| err(e.to_string()))?;
    writer.finish().map_err(|e| err(e.to_string()))?;
    Ok(bytes)
}

fn draw<DB: DrawingBackend>(figure: &Figure, root: DrawingArea<DB, Shift>) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError {
        figure: figure.title.clone(),
        what: e.to_string(),
    };
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root.titled(&figure.title, ("sans-serif", 18)).map_err(|e| err(&e))?;
    let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
    let (x_lo, x_hi) = x_span(figure);
    let (y_lo, y_hi) = figure.y_range;
    let mut chart = ChartBuilder::on(&plot)
        .margin(10)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
        .map_err(|e| err(&e))?;
    let categories = &figure.categories;
    let category = |x: &f64| -> String {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            categories.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(figure.x_title.as_str())
        .y_desc(figure.y_title.as_str())
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", 13));
    if !categories.is_empty() {
        mesh.x_labels(categories.len()).x_label_formatter(&category);
    }
    mesh.draw().map_err(|e| err(&e))?;
    let colour = |i: usize| PALETTE[i % PALETTE.len()];
    let n = figure.series.len().max(1) as f64;
    for (i, s) in figure.series.iter().enumerate() {
        let c = colour(i);
        match figure.kind {
            FigureKind::Line => {
                chart
                    .draw_series(LineSeries::new(s.points.iter().map(|p| (p.x, p.y)), c.stroke_width(2)))
                    .map_err(|e| err(&e))?;
                chart
                    .draw_series(s.points.iter().map(|p| Circle::new((p.x, p.y), 3, c.filled())))
                    .map_err(|e| err(&e))?;
            }
            FigureKind::Bars => {
                // Bars of one category share 80% of its width, side by side in series order.
                let width = 0.8 / n;
                chart
                    .draw_series(s.points.iter().map(|p| {
                        let left = p.x - 0.4 + width * i as f64;
                        Rectangle::new([(left, y_lo.max(0.0)), (left + width, p.y)], c.filled())
                    }))
                    .map_err(|e| err(&e))?;
            }
            FigureKind::Scatter => {
                // Each point with its label just above and to the right of it.
                chart
                    .draw_series(s.points.iter().map(|p| {
                        EmptyElement::at((p.x, p.y))
                            + Circle::new((0, 0), 4, c.filled())
                            + Text::new(
                                p.label.clone().unwrap_or_default(),
                                (6, -14),
                                ("sans-serif", 11).into_font(),
                            )
                    }))
                    .map_err(|e| err(&e))?;
            }
        }
    }
    // Error bars, black over every series, at each point's (or bar's) centre.
    for (i, s) in figure.series.iter().enumerate() {
        let centre = |x: f64| match figure.kind {
            FigureKind::Bars => x - 0.4 + 0.8 / n * (i as f64 + 0.5),
            _ => x,
        };
        chart
            .draw_series(s.points.iter().filter_map(|p| {
                // A point interval (every draw agreed) has no bar to show.
                let (lo, hi) = p.interval.filter(|(lo, hi)| hi > lo)?;
                Some(ErrorBar::new_vertical(
                    centre(p.x),
                    lo,
                    p.y,
                    hi,
                    BLACK.stroke_width(1),
                    8,
                ))
            }))
            .map_err(|e| err(&e))?;
    }
    for (i, (_, y)) in figure.lines.iter().enumerate() {
        let c = LINE_COLOURS[i % LINE_COLOURS.len()];
        chart
            .draw_series(DashedLineSeries::new([(x_lo, *y), (x_hi, *y)], 8, 5, c.stroke_width(2)))
            .map_err(|e| err(&e))?;
    }
    // The legend: a swatch and a name per series, then the horizontal lines.
    let entries = figure
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), colour(i), false))
        .chain(
            figure
                .lines
                .iter()
                .enumerate()
                .map(|(i, (name, _))| (name.as_str(), LINE_COLOURS[i % LINE_COLOURS.len()], true)),
        );
    for (row, (name, c, dashed)) in entries.enumerate() {
        let y = 20 + 22 * row as i32;
        if dashed {
            legend
                .draw(&PathElement::new(vec![(8, y), (16, y)], c.stroke_width(2)))
                .map_err(|e| err(&e))?;
            legend
                .draw(&PathElement::new(vec![(22, y), (30, y)], c.stroke_width(2)))
                .map_err(|e| err(&e))?;
        } else if figure.kind == FigureKind::Line {
            legend
                .draw(&PathElement::new(vec![(8, y), (30, y)], c.stroke_width(2)))
                .map_err(|e| err(&e))?;
        } else {
            legend
                .draw(&Rectangle::new([(12, y - 6), (26, y + 6)], c.filled()))
                .map_err(|e| err(&e))?;
        }
        legend
            .draw(&Text::new(
                name.to_string(),
                (38, y - 7),
                ("sans-serif", 13).into_font().color(&BLACK),
            ))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// The x axis's span: the categories with half a slot either side, or the numbers with a margin.
fn x_span(figure: &Figure) -> (f64, f64) {
    if !figure.categories.is_empty() {
        return (-0.5, figure.categories.len() as f64 - 0.5);
    }
    let xs = figure.series.iter().flat_map(|s| s.points.iter().map(|p| p.x));
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    // Rates against rates: the whole unit square, with room for the labels at the right.
    if figure.kind == FigureKind::Scatter && lo >= 0.0 && hi <= 1.0 {
        return (0.0, 1.1);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 0.5 };
    (lo - pad, hi + pad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::figure::{figure, FigureSpec};
    use crate::report::rows::objects as pool;
    use serde_json::{json, Value};

    /// What an SVG shows, without coordinates: its texts in order, and how many of each shape
    /// it draws in each colour.
    fn structure(svg: &str) -> Value {
        let mut texts = Vec::new();
        let mut shapes: std::collections::BTreeMap<String, usize> = Default::default();
        let mut in_text = false;
        for line in svg.lines() {
            let line = line.trim();
            if line.starts_with("<text") {
                in_text = true;
            } else if line.starts_with("</text>") {
                in_text = false;
            } else if in_text {
                texts.push(line.to_string());
            } else if let Some(tag) = line.strip_prefix('<').and_then(|l| l.split(' ').next()) {
                if ["polyline", "circle", "rect", "line", "path"].contains(&tag) {
                    let colour = ["stroke=\"", "fill=\""]
                        .iter()
                        .filter_map(|a| line.split(a).nth(1).and_then(|r| r.split('"').next()))
                        .find(|c| *c != "none")
                        .unwrap_or("none");
                    *shapes.entry(format!("{tag} {colour}")).or_default() += 1;
                }
            }
        }
        json!({"texts": texts, "shapes": shapes})
    }

    fn drawn(spec: Value, rows: Value) -> (String, Vec<u8>) {
        let spec: FigureSpec = serde_json::from_value(spec).unwrap();
        let f = figure(&spec, &pool(rows)).unwrap();
        (svg(&f).unwrap(), png(&f).unwrap())
    }

    /// The PNG decodes at the figure's size, and `colour` is among its pixels.
    fn shows(png_bytes: &[u8], colour: RGBColor) -> bool {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        buf.chunks(3).any(|p| p == [colour.0, colour.1, colour.2])
    }

    #[test]
    fn a_sweep_is_drawn_as_one_line_per_operator_with_the_baselines_dashed() {
        let (svg, png) = drawn(
            json!({"title": "sec-pass@1 over θ", "kind": "line", "filter": {"weights": "W_steered"}, "x": "theta",
                   "y": "sec-pass@1", "series": ["operator"],
                   "lines": [{"label": "W_base", "filter": {"weights": "W_base"}},
                             {"label": "W_sec", "filter": {"weights": "W_sec"}}]}),
            json!([
                {"weights": "W_base", "sec-pass@1": 0.3}, {"weights": "W_sec", "sec-pass@1": 0.45},
                {"weights": "W_steered", "operator": "negation", "theta": 0.5, "sec-pass@1": 0.4},
                {"weights": "W_steered", "operator": "negation", "theta": 1.5, "sec-pass@1": 0.5},
                {"weights": "W_steered", "operator": "contrast", "theta": 0.5, "sec-pass@1": 0.35},
                {"weights": "W_steered", "operator": "contrast", "theta": 1.5, "sec-pass@1": 0.6}
            ]),
        );
        insta::assert_json_snapshot!("line", structure(&svg));
        assert!(
            shows(&png, PALETTE[0]) && shows(&png, PALETTE[1]),
            "both series are painted"
        );
    }

    #[test]
    fn grouped_bars_have_one_bar_per_series_in_each_category() {
        let (svg, png) = drawn(
            json!({"title": "By temperature", "kind": "bars", "x": "temperature", "y": ["pass@1", "sec-pass@1"]}),
            json!([
                {"temperature": 0.8, "pass@1": 0.5, "sec-pass@1": 0.25},
                {"temperature": 0.2, "pass@1": 0.75, "sec-pass@1": 0.5},
                {"temperature": 0.4, "pass@1": 0.6, "sec-pass@1": 0.4}
            ]),
        );
        insta::assert_json_snapshot!("bars", structure(&svg));
        assert!(shows(&png, PALETTE[1]));
    }

    #[test]
    fn bars_with_intervals_carry_error_bars_and_bars_without_none() {
        let spec = json!({"title": "sec-pass@1", "kind": "bars", "x": "scenario", "y": "sec-pass@1"});
        let with = json!([
            {"scenario": "a", "sec-pass@1": 0.5, "sec-pass@1_lo": 0.25, "sec-pass@1_hi": 1.25},
            {"scenario": "b", "sec-pass@1": 0.25, "sec-pass@1_lo": 0.0, "sec-pass@1_hi": 0.5}
        ]);
        let parsed: FigureSpec = serde_json::from_value(spec.clone()).unwrap();
        let f = figure(&parsed, &pool(with.clone())).unwrap();
        assert_eq!(f.series[0].points[0].interval, Some((0.25, 1.25)));
        assert!(f.y_range.1 >= 1.25, "the axis holds the bars: {:?}", f.y_range);
        let lines = |svg: &str| structure(svg)["shapes"]["line #000000"].as_u64().unwrap_or(0);
        let (with_bars, _) = drawn(spec.clone(), with);
        let (without, _) = drawn(
            spec,
            json!([{"scenario": "a", "sec-pass@1": 0.5}, {"scenario": "b", "sec-pass@1": 0.25}]),
        );
        assert!(lines(&with_bars) > lines(&without), "{}", structure(&with_bars));
    }

    #[test]
    fn a_scatter_labels_each_point() {
        let (svg, png) = drawn(
            json!({"title": "Functional against secure", "kind": "scatter", "x": "pass@1", "y": "secure_rate",
                   "label": "scenario", "series": ["language"]}),
            json!([
                {"scenario": "cwe-078/0-py", "language": "py", "pass@1": 0.5, "secure_rate": 0.9},
                {"scenario": "cwe-079/1-py", "language": "py", "pass@1": 0.2, "secure_rate": 0.4},
                {"scenario": "cwe-476/0-c", "language": "c", "pass@1": 0.7, "secure_rate": 0.1}
            ]),
        );
        insta::assert_json_snapshot!("scatter", structure(&svg));
        assert!(shows(&png, PALETTE[0]) && shows(&png, PALETTE[1]));
    }
}
