//! The metric-against-bits plot, one line per method (mean over seeds) with a
//! min..max band over seeds, and the fp32 baseline; drawn as SVG and PNG from
//! the summary alone.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::summary::{SettingStats, Summary};
use crate::error::{Error, Result};

/// DejaVu Sans (Bitstream Vera license, src/report/fonts/LICENSE), embedded so
/// PNG text renders on machines without fonts.
static FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            panic!("the embedded font does not parse");
        }
    });
}

/// Tableau-10 colours, one per method in a fixed order.
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

/// The lines of the plot: settings of one granularity and scope, by method.
fn series<'a>(summary: &'a Summary, granularity: &str, scope: &str) -> Vec<(String, Vec<&'a SettingStats>)> {
    let mut methods: Vec<String> = Vec::new();
    for s in &summary.settings {
        if !methods.contains(&s.method) {
            methods.push(s.method.clone());
        }
    }
    methods
        .into_iter()
        .map(|m| {
            let mut pts: Vec<&SettingStats> =
                summary.settings.iter().filter(|s| s.method == m && s.granularity == granularity && s.scope == scope).collect();
            pts.sort_by_key(|s| s.bits);
            (m, pts)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect()
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, summary: &Summary, granularity: &str, scope: &str) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let lines = series(summary, granularity, scope);
    let all: Vec<&SettingStats> = lines.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let (bmin, bmax) = all.iter().fold((u32::MAX, 0), |(a, b), s| (a.min(s.bits), b.max(s.bits)));
    // the fp32 line, and in a --qat run the start's fp32 line, stay in view
    let (flo, fhi) = (summary.fp32_value.min(summary.reference()), summary.fp32_value.max(summary.reference()));
    let mut ylo = all.iter().map(|s| s.min).fold(flo, f64::min);
    let mut yhi = all.iter().map(|s| s.max).fold(fhi, f64::max);
    let mut y_desc = summary.metric.clone();
    if !summary.higher_is_better {
        // regression errors explode at low bits: cut the axis at 20x the fp32
        // error so the useful range stays readable; means above it are drawn
        // hollow on the top edge, and the axis says so
        let cut = fhi * 20.0;
        if all.iter().any(|s| s.max > cut) {
            yhi = cut;
            y_desc = format!("{} (axis cut at 20x fp32; hollow points lie above)", summary.metric);
        }
        ylo = ylo.min(flo * 0.9);
    }
    let pad = ((yhi - ylo) * 0.05).max(1e-9);
    let title = format!(
        "{} on {}: {} against bits ({} granularity, scope {})",
        summary.model, summary.dataset, summary.metric, granularity, scope
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((bmin as f64 - 0.3)..(bmax as f64 + 0.3), (ylo - pad)..(yhi + pad))
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc(if crate::sweep::grid::Scope::held_in_name(scope).is_some() { "bits per weight of the layers not held" } else { "bits per weight" })
        .y_desc(y_desc)
        .x_labels((bmax - bmin + 1).min(16) as usize)
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .draw()
        .map_err(|x| e(&x))?;
    let clip = |v: f64| v.clamp(ylo - pad, yhi + pad);
    for (i, (method, pts)) in lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        if pts.iter().any(|s| s.n > 1) {
            let mut band: Vec<(f64, f64)> = pts.iter().map(|s| (s.bits as f64, clip(s.max))).collect();
            band.extend(pts.iter().rev().map(|s| (s.bits as f64, clip(s.min))));
            chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.15).filled()))).map_err(|x| e(&x))?;
        }
        chart
            .draw_series(LineSeries::new(pts.iter().map(|s| (s.bits as f64, clip(s.mean))), color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(method.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|s| {
                let style = if s.mean > yhi + pad { color.stroke_width(1) } else { color.filled() };
                Circle::new((s.bits as f64, clip(s.mean)), 3, style)
            }))
            .map_err(|x| e(&x))?;
    }
    let fp32 = summary.fp32_value;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(bmin as f64 - 0.3, fp32), (bmax as f64 + 0.3, fp32)],
            8,
            5,
            BLACK.stroke_width(1),
        ))
        .map_err(|x| e(&x))?
        .label(format!("fp32 ({fp32:.4})"))
        .legend(|(x, y)| dashed_sample((x, y), BLACK.stroke_width(1)));
    if let Some(start) = summary.reference_value {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(DashedLineSeries::new(vec![(bmin as f64 - 0.3, start), (bmax as f64 + 0.3, start)], 3, 4, grey.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(format!("the start's fp32 ({start:.4})"))
            .legend(move |(x, y)| dashed_sample((x, y), grey.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(if summary.higher_is_better { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight })
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// Writes `<stem>.svg` and `<stem>.png` into `dir`.
pub fn metric_vs_bits(dir: &Path, stem: &str, summary: &Summary, granularity: &str, scope: &str) -> Result<()> {
    register_font();
    let size = (960, 600);
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    let err = |path: &Path, m: String| Error::Results { path: path.to_path_buf(), message: format!("cannot draw the plot: {m}") };
    draw(SVGBackend::new(&svg, size).into_drawing_area(), summary, granularity, scope).map_err(|m| err(&svg, m))?;
    draw(BitMapBackend::new(&png, size).into_drawing_area(), summary, granularity, scope).map_err(|m| err(&png, m))?;
    Ok(())
}

/// A viridis-like colour for t in [0, 1] (dark = low, yellow = high).
fn colormap(t: f64) -> RGBColor {
    const STOPS: [(f64, (u8, u8, u8)); 5] =
        [(0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)), (1.0, (253, 231, 37))];
    let t = t.clamp(0.0, 1.0);
    let i = STOPS.iter().position(|(s, _)| *s >= t).unwrap_or(4).max(1);
    let ((s0, c0), (s1, c1)) = (STOPS[i - 1], STOPS[i]);
    let f = (t - s0) / (s1 - s0);
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    RGBColor(mix(c0.0, c1.0), mix(c0.1, c1.1), mix(c0.2, c1.2))
}

/// Pixels under the heatmap's panels for its colour bar and its label.
const COLOUR_BAR_HEIGHT: u32 = 70;

fn draw_heatmap<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, summary: &Summary, granularity: &str) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let cells: Vec<&SettingStats> = summary.settings.iter().filter(|s| s.granularity == granularity && s.scope.starts_with("layer=")).collect();
    let mut layers: Vec<String> = Vec::new();
    let mut methods: Vec<String> = Vec::new();
    let mut bits: Vec<u32> = Vec::new();
    for c in &cells {
        if !layers.contains(&c.scope) {
            layers.push(c.scope.clone());
        }
        if !methods.contains(&c.method) {
            methods.push(c.method.clone());
        }
        if !bits.contains(&c.bits) {
            bits.push(c.bits);
        }
    }
    bits.sort();
    // colour: the metric's loss against fp32, relative, 0 (no loss) to the worst cell
    let loss = |v: f64| if summary.higher_is_better { summary.fp32_value - v } else { v - summary.fp32_value } / summary.fp32_value.abs().max(1e-12);
    let worst = cells.iter().map(|c| loss(c.mean)).fold(1e-12, f64::max).min(1.0);
    let (title, body) = root.split_vertically(40);
    title
        .draw(&Text::new(
            format!(
                "{} on {}: per-layer sensitivity ({granularity}), relative {} loss vs fp32 (yellow = none, dark = {:.0} % or worse)",
                summary.model,
                summary.dataset,
                summary.metric,
                worst * 100.0
            ),
            (10, 12),
            ("sans-serif", 16),
        ))
        .map_err(|x| e(&x))?;
    // a colour bar under the panels: the relative loss each colour stands for
    let (body, bar) = body.split_vertically(body.dim_in_pixel().1.saturating_sub(COLOUR_BAR_HEIGHT));
    let mut key = ChartBuilder::on(&bar)
        .margin_left(100)
        .margin_right(100)
        .margin_bottom(6)
        .x_label_area_size(30)
        .build_cartesian_2d(0.0..worst * 100.0, 0.0..1.0)
        .map_err(|x| e(&x))?;
    key.configure_mesh()
        .disable_mesh()
        .disable_y_axis()
        .x_desc(format!("relative {} loss against fp32, % (each cell: that layer alone quantized, mean over seeds)", summary.metric))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .draw()
        .map_err(|x| e(&x))?;
    const STEPS: usize = 200;
    let step = worst * 100.0 / STEPS as f64;
    key.draw_series((0..STEPS).map(|i| {
        let x = i as f64 * step;
        Rectangle::new([(x, 0.0), (x + step, 1.0)], colormap(1.0 - (i as f64 + 0.5) / STEPS as f64).filled())
    }))
    .map_err(|x| e(&x))?;
    let cols = 2usize.min(methods.len()).max(1);
    let rows = methods.len().div_ceil(cols);
    let panels = body.split_evenly((rows, cols));
    for (panel, method) in panels.iter().zip(&methods) {
        let mut chart = ChartBuilder::on(panel)
            .caption(method.as_str(), ("sans-serif", 14))
            .margin(6)
            .x_label_area_size(24)
            .y_label_area_size(90)
            .build_cartesian_2d(-0.5..bits.len() as f64 - 0.5, -0.5..layers.len() as f64 - 0.5)
            .map_err(|x| e(&x))?;
        // cells centred on integer coordinates, so each label sits under its cell
        let label = |v: f64, names: &dyn Fn(usize) -> Option<String>| {
            if (v - v.round()).abs() < 1e-6 && v >= 0.0 { names(v.round() as usize).unwrap_or_default() } else { String::new() }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(2 * bits.len() + 1)
            .y_labels(2 * layers.len() + 1)
            .x_label_formatter(&|v| label(*v, &|i| bits.get(i).map(|b| b.to_string())))
            .y_label_formatter(&|v| label(*v, &|i| layers.get(i).map(|l| l.trim_start_matches("layer=").to_string())))
            .draw()
            .map_err(|x| e(&x))?;
        let rects = cells.iter().filter(|c| &c.method == method).map(|c| {
            let x = bits.iter().position(|b| *b == c.bits).unwrap_or(0) as f64;
            let y = layers.iter().position(|l| *l == c.scope).unwrap_or(0) as f64;
            let t = 1.0 - (loss(c.mean).max(0.0) / worst).min(1.0);
            Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], colormap(t).filled())
        });
        chart.draw_series(rects).map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// Writes `<stem>.svg` and `<stem>.png`: for each method, layer x bits, coloured
/// by the loss against fp32 when only that layer is quantized.
pub fn layer_heatmap(dir: &Path, stem: &str, summary: &Summary, granularity: &str) -> Result<()> {
    register_font();
    let methods = summary.settings.iter().map(|s| &s.method).collect::<std::collections::BTreeSet<_>>().len();
    let size = (1100, 140 + COLOUR_BAR_HEIGHT + 190 * methods.div_ceil(2) as u32);
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    let err = |path: &Path, m: String| Error::Results { path: path.to_path_buf(), message: format!("cannot draw the heatmap: {m}") };
    draw_heatmap(SVGBackend::new(&svg, size).into_drawing_area(), summary, granularity).map_err(|m| err(&svg, m))?;
    draw_heatmap(BitMapBackend::new(&png, size).into_drawing_area(), summary, granularity).map_err(|m| err(&png, m))?;
    Ok(())
}

/// A legend's 20-pixel sample of a dashed line: two dashes, as the plotted
/// line is drawn (a solid sample read as another series).
fn dashed_sample<'a, DB: DrawingBackend + 'a>((x, y): (i32, i32), style: ShapeStyle) -> impl IntoDynElement<'a, DB, (i32, i32)> + use<'a, DB> {
    EmptyElement::at((x, y)) + PathElement::new(vec![(0, 0), (8, 0)], style) + PathElement::new(vec![(12, 0), (20, 0)], style)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(bits: u32, mean: f64) -> SettingStats {
        SettingStats {
            method: "uniform-nearest".into(),
            bits,
            granularity: "layer".into(),
            scope: "all".into(),
            n: 1,
            mean,
            std: 0.0,
            min: mean,
            max: mean,
            ci95_low: mean,
            ci95_high: mean,
            value2_mean: None,
            weight_mse_mean: 0.0,
            sqnr_db_mean: 0.0,
            weight_gain_mean: None,
            size_bytes: 0,
        }
    }

    fn regression(means: &[f64]) -> Summary {
        Summary {
            model: "mlp-simple".into(),
            dataset: "mv".into(),
            metric: "mse".into(),
            metric2: None,
            higher_is_better: false,
            fp32_value: 1.0,
            fp32_value2: None,
            fp32_size_bytes: 0,
            adapter: "test".into(),
            device: "cpu".into(),
            variants: means.len(),
            settings: means.iter().enumerate().map(|(i, &m)| setting(i as u32 + 1, m)).collect(),
            smallest_bits_within_1pct: Default::default(),
            smallest_models_within_1pct: Vec::new(),
            reference_value: None,
        }
    }

    /// Circles drawn without fill.
    fn hollow_circles(svg: &str) -> usize {
        svg.split("<circle").skip(1).filter(|c| c[..c.find("/>").unwrap()].contains(r#"fill="none""#)).count()
    }

    fn svg_of(summary: &Summary) -> String {
        let dir = tempfile::tempdir().unwrap();
        metric_vs_bits(dir.path(), "p", summary, "layer", "all").unwrap();
        std::fs::read_to_string(dir.path().join("p.svg")).unwrap()
    }

    #[test]
    fn a_cut_axis_says_so_and_draws_the_means_above_it_hollow() {
        // 1 and 2 bits lie far above 20x fp32
        let svg = svg_of(&regression(&[500.0, 80.0, 3.0, 1.1, 1.0]));
        assert!(svg.contains("axis cut at 20x fp32"), "the axis label must say it is cut");
        // the means of 1 and 2 bits (the legend has no circles)
        assert_eq!(hollow_circles(&svg), 2, "{svg}");
        let whole = svg_of(&regression(&[15.0, 3.0, 1.1, 1.0]));
        assert!(!whole.contains("axis cut"));
        assert_eq!(hollow_circles(&whole), 0);
        assert!(whole.matches("<circle").count() >= 4);
    }
}
