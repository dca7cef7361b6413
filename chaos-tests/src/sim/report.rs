//! The figures of a simulated run, printed as a table at the end.

use std::fmt;
use std::time::Duration;

/// One measured figure: samples in virtual time (or a rate), summarized.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Scenario.
    pub scenario: &'static str,
    /// What was measured.
    pub what: &'static str,
    /// Unit of the samples.
    pub unit: &'static str,
    /// The samples, sorted.
    pub samples: Vec<f64>,
    /// A remark printed beside it.
    pub note: String,
}

impl Figure {
    /// A figure over `samples`.
    pub fn of(
        scenario: &'static str,
        what: &'static str,
        unit: &'static str,
        mut samples: Vec<f64>,
    ) -> Figure {
        samples.sort_by(f64::total_cmp);
        Figure {
            scenario,
            what,
            unit,
            samples,
            note: String::new(),
        }
    }

    /// A figure of one sample.
    pub fn one(scenario: &'static str, what: &'static str, unit: &'static str, x: f64) -> Figure {
        Figure::of(scenario, what, unit, vec![x])
    }

    /// The `p`th percentile (nearest rank), if there are samples.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let n = self.samples.len();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        Some(self.samples[rank.clamp(1, n) - 1])
    }
}

/// A run's figures and what it took.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The seed the run took.
    pub seed: u64,
    /// Members, the relay included.
    pub members: usize,
    /// Figures in the order measured.
    pub figures: Vec<Figure>,
    /// Virtual time the run covered.
    pub virtual_time: Duration,
    /// Wall time it took.
    pub wall_time: Duration,
    /// Datagrams the network dropped (partitions, loss).
    pub dropped: u64,
}

impl Report {
    /// Adds a figure.
    pub fn add(&mut self, f: Figure) {
        self.figures.push(f);
    }

    /// The figure of `scenario` measuring `what`.
    pub fn figure(&self, scenario: &str, what: &str) -> Option<&Figure> {
        self.figures
            .iter()
            .find(|f| f.scenario == scenario && f.what == what)
    }
}

/// A Markdown table.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulated fleet: {} members (1 relay), seed {}, {:.0} s virtual in {:.1} s wall, \
             {} datagrams dropped by faults",
            self.members,
            self.seed,
            self.virtual_time.as_secs_f64(),
            self.wall_time.as_secs_f64(),
            self.dropped
        )?;
        writeln!(
            f,
            "| scenario | measured | unit | p50 | p99 | max | n | note |"
        )?;
        writeln!(f, "|---|---|---|---:|---:|---:|---:|---|")?;
        for x in &self.figures {
            let p = |q| x.percentile(q).map_or("-".into(), |v| format!("{v:.2}"));
            writeln!(
                f,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                x.scenario,
                x.what,
                x.unit,
                p(50.0),
                p(99.0),
                p(100.0),
                x.samples.len(),
                x.note
            )?;
        }
        Ok(())
    }
}
