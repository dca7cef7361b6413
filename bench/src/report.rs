//! The results: rows grouped in sections (one per verb), printed as a
//! markdown table and written as JSON with the same content.

use crate::machine::Machine;
use anyhow::Context;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One line of the table: one variant of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What is measured.
    pub scenario: String,
    /// Who is measured.
    pub variant: String,
    /// Unit of `samples`, `median`, `min`, `max`, `p50`, `p99`.
    pub unit: String,
    /// Counted runs.
    pub samples: Vec<f64>,
    /// Median of the runs.
    pub median: Option<f64>,
    /// Smallest run.
    pub min: Option<f64>,
    /// Largest run.
    pub max: Option<f64>,
    /// Median over all events (latency rows).
    pub p50: Option<f64>,
    /// 99th percentile over all events (latency rows).
    pub p99: Option<f64>,
    /// Events behind `p50` and `p99`.
    pub count: Option<usize>,
    /// This row's figure over the scenario's baseline (p50 for latency
    /// rows, else median).
    pub ratio: Option<f64>,
    /// Which row `ratio` is against.
    pub ratio_to: Option<String>,
    /// This row's figure over the tmux row's, where there is one.
    pub ratio_tmux: Option<f64>,
    /// Whether every run was a valid measurement (no gaps).
    pub valid: bool,
    /// Median fraction of bytes delivered, for invalid throughput rows.
    pub delivered: Option<f64>,
    /// For invalid throughput rows, the fraction of bytes each run of
    /// `samples` delivered (1 for a run without gaps): `samples[i] *
    /// samples_delivered[i]` is the rate at which that run's client read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples_delivered: Vec<f64>,
    /// Notes: unavailable, invalid, details.
    pub note: String,
    /// Set when the variant failed.
    pub error: Option<String>,
}

impl Row {
    /// An empty row.
    pub fn new(scenario: &str, variant: &str, unit: &str) -> Row {
        Row {
            scenario: scenario.into(),
            variant: variant.into(),
            unit: unit.into(),
            samples: Vec::new(),
            median: None,
            min: None,
            max: None,
            p50: None,
            p99: None,
            count: None,
            ratio: None,
            ratio_to: None,
            ratio_tmux: None,
            valid: true,
            delivered: None,
            samples_delivered: Vec::new(),
            note: String::new(),
            error: None,
        }
    }

    /// A row with no figures, only a note (not yet, not applicable).
    pub fn note_only(scenario: &str, variant: &str, unit: &str, note: &str) -> Row {
        let mut r = Row::new(scenario, variant, unit);
        r.note = note.into();
        r
    }

    /// The figure ratios are taken of.
    pub fn key(&self) -> Option<f64> {
        self.p50.or(self.median)
    }

    /// Sets `ratio` against `base` and `ratio_tmux` against `tmux`.
    pub fn set_ratios(&mut self, base: Option<&Row>, tmux: Option<&Row>) {
        let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b != 0.0 => Some(a / b),
            _ => None,
        };
        if let Some(b) = base {
            self.ratio = div(self.key(), b.key());
            if self.ratio.is_some() {
                self.ratio_to = Some(b.variant.clone());
            }
        }
        if let Some(t) = tmux {
            self.ratio_tmux = div(self.key(), t.key());
        }
    }
}

/// The rows of one verb.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// The verb: throughput, replay, keystroke, sessions.
    pub verb: String,
    /// How to read it.
    pub about: String,
    /// The rows, baselines first within each scenario.
    pub rows: Vec<Row>,
}

/// Settings of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Counted runs per variant.
    pub runs: usize,
    /// Whether a warm-up round ran first.
    pub warmup: bool,
    /// Tiny sizes for CI.
    pub smoke: bool,
    /// The tether binary measured.
    pub tether: String,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where.
    pub machine: Machine,
    /// How.
    pub settings: Settings,
    /// What.
    pub sections: Vec<Section>,
    /// Wall time of the whole run, seconds.
    pub elapsed_s: f64,
    /// Load averages when the run ended.
    pub loadavg_end: String,
}

/// Formats a figure with three significant digits or so.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(num).unwrap_or_else(|| "–".into())
}

fn ratio(v: Option<f64>) -> String {
    v.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "–".into())
}

impl Report {
    /// The report as markdown: the machine, then one table per section.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.machine.line());
        let _ = writeln!(
            s,
            "Runs: {} counted per variant{}, alternating A B A B; whole run {:.0} s, load \
             average {} at the end{}.",
            self.settings.runs,
            if self.settings.warmup {
                " after 1 warm-up"
            } else {
                ", no warm-up"
            },
            self.elapsed_s,
            self.loadavg_end,
            if self.settings.smoke {
                "; SMOKE sizes, figures mean nothing"
            } else {
                ""
            }
        );
        for sec in &self.sections {
            let _ = writeln!(s, "\n### {}\n{}\n", sec.verb, sec.about);
            let _ = writeln!(
                s,
                "| scenario | variant | median | min | max | unit | × baseline | × tmux | p50 | p99 | note |"
            );
            let _ = writeln!(s, "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|");
            for r in &sec.rows {
                let star = if r.valid { "" } else { "*" };
                let _ = writeln!(
                    s,
                    "| {} | {} | {}{star} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.scenario,
                    r.variant,
                    opt(r.median),
                    opt(r.min),
                    opt(r.max),
                    r.unit,
                    ratio(r.ratio),
                    ratio(r.ratio_tmux),
                    opt(r.p50),
                    opt(r.p99),
                    r.note.replace('|', "/"),
                );
            }
        }
        if self
            .sections
            .iter()
            .any(|s| s.rows.iter().any(|r| !r.valid))
        {
            let _ = writeln!(
                s,
                "\n\\* not a valid figure: the client missed bytes (gaps), so it did not read \
                 everything the session wrote."
            );
        }
        s
    }

    /// Writes the JSON to `path` and the markdown next to it (`.md`).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
        let md = path.with_extension("md");
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("writing {}", md.display()))?;
        Ok(())
    }
}

/// Sets the ratios of every row of `rows` in `scenario` against the row
/// named `base` (and `tmux`, if given) of the same or another scenario.
pub fn ratios(rows: &mut [Row], scenario: &str, base: (&str, &str), tmux: Option<(&str, &str)>) {
    let find = |rows: &[Row], (sc, v): (&str, &str)| {
        rows.iter()
            .find(|r| r.scenario == sc && r.variant == v)
            .cloned()
    };
    let b = find(rows, base);
    let t = tmux.and_then(|t| find(rows, t));
    for r in rows.iter_mut().filter(|r| r.scenario == scenario) {
        r.set_ratios(b.as_ref(), t.as_ref());
    }
}

/// Adds "relay/direct = R×" (of the key figures: p50, else median) to
/// the note of the row `relay`, against the row `direct`; and, for a
/// latency row, the p50 the relay adds.
pub fn relay_note(rows: &mut [Row], relay: (&str, &str), direct: (&str, &str)) {
    let find = |rows: &[Row], (sc, v): (&str, &str)| {
        rows.iter().position(|r| r.scenario == sc && r.variant == v)
    };
    let (Some(ri), Some(di)) = (find(rows, relay), find(rows, direct)) else {
        return;
    };
    let (Some(r), Some(d)) = (rows[ri].key(), rows[di].key()) else {
        return;
    };
    if d == 0.0 {
        return;
    }
    let mut note = format!("relay/direct = {:.2}×", r / d);
    if rows[ri].p50.is_some() {
        note.push_str(&format!(
            "; the relay adds {} {} at p50",
            num(r - d),
            rows[ri].unit
        ));
    }
    let row = &mut rows[ri];
    row.note = if row.note.is_empty() {
        note
    } else {
        format!("{note}; {}", row.note)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(num(1234.5), "1234");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(1.2345), "1.23");
        assert_eq!(num(0.01234), "0.012");
    }

    #[test]
    fn relay_note_says_the_ratio_and_the_added_latency() {
        let mut rows = vec![Row::new("s", "direct", "µs"), Row::new("s", "relay", "µs")];
        rows[0].p50 = Some(200.0);
        rows[1].p50 = Some(300.0);
        rows[1].note = "x".into();
        relay_note(&mut rows, ("s", "relay"), ("s", "direct"));
        assert_eq!(
            rows[1].note,
            "relay/direct = 1.50×; the relay adds 100 µs at p50; x"
        );
        assert!(rows[0].note.is_empty());
    }

    #[test]
    fn ratio_against_baseline_and_tmux() {
        let mut rows = vec![
            Row::new("s", "base", "MB/s"),
            Row::new("s", "tmux", "MB/s"),
            Row::new("s", "x", "MB/s"),
        ];
        rows[0].median = Some(100.0);
        rows[1].median = Some(50.0);
        rows[2].median = Some(80.0);
        ratios(&mut rows, "s", ("s", "base"), Some(("s", "tmux")));
        assert_eq!(rows[2].ratio, Some(0.8));
        assert_eq!(rows[2].ratio_tmux, Some(1.6));
        assert_eq!(rows[0].ratio, Some(1.0));
    }
}
