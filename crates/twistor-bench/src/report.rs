//! Output: aligned text tables for the terminal, Markdown for `bench/results/`, an SVG chart,
//! and a line saying when and on what the figures were taken.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use plotters::prelude::*;

/// A table of strings with a header row.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Column titles.
    pub headers: Vec<String>,
    /// Rows, each as long as `headers`.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles and no rows.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Columns padded to their widest cell, first column left-aligned, the rest right-aligned.
    pub fn to_text(&self) -> String {
        let widths = self.widths();
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            for (i, cell) in cells.iter().enumerate() {
                let w = widths[i];
                if i == 0 {
                    let _ = write!(out, "{cell:<w$}");
                } else {
                    let _ = write!(out, "  {cell:>w$}");
                }
            }
            out.push('\n');
        };
        line(&self.headers);
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        line(&rule);
        for row in &self.rows {
            line(row);
        }
        out
    }

    /// A GitHub-flavoured Markdown table, numbers right-aligned.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let row = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&row(&self.headers));
        let align: Vec<String> = (0..self.headers.len())
            .map(|i| if i == 0 { ":--".into() } else { "--:".into() })
            .collect();
        out.push_str(&row(&align));
        for r in &self.rows {
            out.push_str(&row(r));
        }
        out
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(cell.chars().count());
                }
            }
        }
        widths
    }
}

/// Formats a number with about three significant digits and a thousands separator, e.g.
/// `123,456`, `1,234`, `12.3`, `0.123`.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if a >= 1000.0 {
        let digits = format!("{:.0}", a);
        let mut grouped = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        if x < 0.0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// Formats a ratio as `1.23×`, or `–` when unknown.
pub fn fmt_ratio(x: Option<f64>) -> String {
    match x {
        Some(r) if r.is_finite() => format!("{r:.2}×"),
        _ => "–".into(),
    }
}

/// Formats nanoseconds as microseconds, e.g. `12.3 µs`.
pub fn fmt_us(ns: u32) -> String {
    format!("{} µs", fmt_num(f64::from(ns) / 1000.0))
}

/// One group of bars in a chart panel: a scenario, and each server's value in it.
#[derive(Debug, Clone)]
pub struct BarGroup {
    /// The scenario's name, written under the group.
    pub label: String,
    /// `(server, value)`; a missing server leaves a gap.
    pub bars: Vec<(String, f64)>,
}

/// One panel of the chart: groups of bars on a log scale.
#[derive(Debug, Clone)]
pub struct Panel {
    /// The panel's title.
    pub title: String,
    /// The groups, left to right.
    pub groups: Vec<BarGroup>,
}

/// Draws `panels` side by side as grouped bar charts on log scales into an SVG at `path`;
/// `series` names the servers in legend order.
pub fn write_svg(
    path: &Path,
    title: &str,
    series: &[String],
    panels: &[Panel],
) -> Result<(), Box<dyn std::error::Error>> {
    const COLORS: [RGBColor; 6] = [
        RGBColor(0xd6, 0x27, 0x28), // twistor
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0x6b, 0xae, 0xd6),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x94, 0x67, 0xbd),
    ];
    let width = 520 * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let values = panel
            .groups
            .iter()
            .flat_map(|g| g.bars.iter().map(|b| b.1))
            .filter(|v| v.is_finite() && *v > 0.0);
        let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        // Headroom above the tallest bar keeps the legend clear of the bars.
        let (lo, hi) = if lo <= hi {
            (lo / 1.5, hi * 4.0)
        } else {
            (0.1, 10.0)
        };
        let n = panel.groups.len().max(1);
        let names: Vec<String> = panel.groups.iter().map(|g| g.label.clone()).collect();
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_labels(12)
            .y_label_formatter(&|y| fmt_num(*y))
            .draw()?;
        let slot = 0.8 / series.len().max(1) as f64;
        for (s, name) in series.iter().enumerate() {
            let color = COLORS[s % COLORS.len()];
            let bars: Vec<Rectangle<(f64, f64)>> = panel
                .groups
                .iter()
                .enumerate()
                .filter_map(|(g, group)| {
                    let value = group.bars.iter().find(|b| &b.0 == name)?.1;
                    if !(value.is_finite() && value > 0.0) {
                        return None;
                    }
                    let x0 = g as f64 - 0.4 + s as f64 * slot;
                    Some(Rectangle::new(
                        [(x0, lo), (x0 + slot * 0.9, value)],
                        color.filled(),
                    ))
                })
                .collect();
            chart
                .draw_series(bars)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Writes a one-table report to `dir/{name}.md` (creating `dir`): the `# {title}` heading,
/// the machine line, `what` the table shows, and the table; says where on standard error.
pub fn write_table_report(
    dir: &Path,
    name: &str,
    title: &str,
    what: &str,
    table: &Table,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let md = format!(
        "# {title}\n\n{}\n\n{what}\n\n{}",
        machine_line(),
        table.to_markdown()
    );
    let path = dir.join(format!("{name}.md"));
    std::fs::write(&path, md)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// A line naming the date, the CPU, the CPU count and the kernel.
pub fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "{} · {cpu} × {} CPUs · Linux {kernel}",
        today(),
        crate::server::cpu_count()
    )
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_table_aligns() {
        let mut t = Table::new(&["scenario", "rtt/s"]);
        t.push(vec!["1x64".into(), "12,345".into()]);
        t.push(vec!["1000x64".into(), "9".into()]);
        let text = t.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "scenario   rtt/s");
        assert_eq!(lines[1], "--------  ------");
        assert_eq!(lines[2], "1x64      12,345");
        assert_eq!(lines[3], "1000x64        9");
    }

    #[test]
    fn markdown_table() {
        let mut t = Table::new(&["a", "b"]);
        t.push(vec!["x".into(), "1".into()]);
        assert_eq!(t.to_markdown(), "| a | b |\n| :-- | --: |\n| x | 1 |\n");
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(123_456.7), "123,457");
        assert_eq!(fmt_num(1_000.0), "1,000");
        assert_eq!(fmt_num(999.4), "999");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(1.234), "1.23");
        assert_eq!(fmt_num(0.1234), "0.123");
        assert_eq!(fmt_num(-2_500.0), "-2,500");
        assert_eq!(fmt_num(f64::NAN), "–");
        assert_eq!(fmt_ratio(Some(0.5)), "0.50×");
        assert_eq!(fmt_ratio(None), "–");
        assert_eq!(fmt_us(12_345), "12.3 µs");
    }

    #[test]
    fn svg_chart_is_written() {
        let path =
            std::env::temp_dir().join(format!("twistor-bench-test-{}.svg", std::process::id()));
        let series = vec!["twistor".to_owned(), "tokio-ct".to_owned()];
        let panel = Panel {
            title: "cost".into(),
            groups: vec![BarGroup {
                label: "50x64".into(),
                bars: vec![("twistor".into(), 1.0), ("tokio-ct".into(), 1.2)],
            }],
        };
        write_svg(&path, "test", &series, &[panel.clone(), panel]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("50x64") && svg.contains("tokio-ct"));
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }
}
