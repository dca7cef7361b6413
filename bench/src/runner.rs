//! The A/B runner: every variant of a scenario runs once per round, in a
//! fixed order (A B C, A B C, ...), after one warm-up round that is not
//! counted, so that the noise of a shared machine falls on all of them
//! alike. Also the statistics (median, min, max, percentiles).

use crate::cleanup::INTERRUPTED;
use crate::report::Row;
use crate::Ctx;
use std::sync::atomic::Ordering;

/// The outcome of one run of one variant.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// The figure (MB/s, ms, sessions/s, KiB, ...).
    pub value: f64,
    /// Per-event latencies of this run (keystrokes), in the row's unit.
    pub latencies: Vec<f64>,
    /// False when the figure does not mean what it says (a throughput run
    /// in which the client missed bytes).
    pub valid: bool,
    /// What the reader should know about this run.
    pub note: Option<String>,
    /// Fraction of the bytes delivered, for throughput runs.
    pub delivered: Option<f64>,
}

impl Sample {
    /// A valid figure.
    pub fn of(value: f64) -> Sample {
        Sample {
            value,
            valid: true,
            ..Sample::default()
        }
    }

    /// A figure with a note.
    pub fn noted(value: f64, note: impl Into<String>) -> Sample {
        Sample {
            note: Some(note.into()),
            ..Sample::of(value)
        }
    }
}

/// One variant of a scenario.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Shown in the table.
    pub name: String,
    /// Why it cannot run here (tmux not found, ...): it is reported, not
    /// run.
    pub unavailable: Option<String>,
}

impl Spec {
    /// A variant that runs.
    pub fn new(name: impl Into<String>) -> Spec {
        Spec {
            name: name.into(),
            unavailable: None,
        }
    }

    /// A variant that runs only when `why` is `None`.
    pub fn unless(name: impl Into<String>, why: Option<String>) -> Spec {
        Spec {
            name: name.into(),
            unavailable: why,
        }
    }
}

/// The runs of one variant.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The variant.
    pub spec: Spec,
    /// Counted runs.
    pub samples: Vec<Sample>,
    /// The first error, after which the variant was not run again.
    pub error: Option<String>,
}

impl Measured {
    /// A variant measured elsewhere (several figures from one run): its
    /// values, each with `note`, and the error of the run that gave them.
    pub fn of(spec: &Spec, error: &Option<String>, values: Vec<f64>, note: Option<String>) -> Self {
        Measured {
            spec: spec.clone(),
            samples: values
                .into_iter()
                .map(|x| Sample {
                    note: note.clone(),
                    ..Sample::of(x)
                })
                .collect(),
            error: error.clone(),
        }
    }
}

/// Runs every variant `ctx.runs` times (plus one warm-up round), in
/// alternation. `run(i, round)` runs variant `i`; `round` 0 is the
/// warm-up when there is one. A variant that fails is reported with its
/// error and not run again; the others go on. A variant that `--only`
/// leaves out is reported as unavailable.
pub async fn alternate(
    ctx: &Ctx,
    scenario: &str,
    specs: &[Spec],
    mut run: impl AsyncFnMut(usize, usize) -> anyhow::Result<Sample>,
) -> Vec<Measured> {
    let mut out: Vec<Measured> = specs
        .iter()
        .map(|s| Measured {
            spec: Spec {
                name: s.name.clone(),
                unavailable: s.unavailable.clone().or_else(|| ctx.not_selected(&s.name)),
            },
            samples: Vec::new(),
            error: None,
        })
        .collect();
    let warm = usize::from(ctx.warmup);
    let rounds = ctx.runs + warm;
    for round in 0..rounds {
        for (i, spec) in specs.iter().enumerate() {
            if out[i].spec.unavailable.is_some() || out[i].error.is_some() {
                continue;
            }
            if INTERRUPTED.load(Ordering::SeqCst) {
                return out;
            }
            let label = if round < warm {
                "warm-up".to_string()
            } else {
                format!("run {}/{}", round + 1 - warm, ctx.runs)
            };
            crate::progress::set(&format!("{scenario}: {label}: {}", spec.name));
            match run(i, round).await {
                Ok(s) if round >= warm => out[i].samples.push(s),
                Ok(_) => {}
                Err(e) => {
                    crate::progress::clear();
                    eprintln!("bench: {scenario}: {}: {e:#}", spec.name);
                    out[i].error = Some(format!("{e:#}"));
                }
            }
        }
    }
    out
}

/// Turns the runs of a variant into a table row.
pub fn row(scenario: &str, unit: &str, m: &Measured) -> Row {
    let mut r = Row::new(scenario, &m.spec.name, unit);
    if let Some(why) = &m.spec.unavailable {
        r.note = why.clone();
        return r;
    }
    r.error = m.error.clone();
    let values: Vec<f64> = m.samples.iter().map(|s| s.value).collect();
    r.samples = values.clone();
    r.median = median(&values);
    r.min = values.iter().copied().reduce(f64::min);
    r.max = values.iter().copied().reduce(f64::max);
    let mut lat: Vec<f64> = m
        .samples
        .iter()
        .flat_map(|s| s.latencies.iter().copied())
        .collect();
    if !lat.is_empty() {
        lat.sort_by(f64::total_cmp);
        r.p50 = percentile(&lat, 50.0);
        r.p99 = percentile(&lat, 99.0);
        r.count = Some(lat.len());
    }
    let bad = m.samples.iter().filter(|s| !s.valid).count();
    r.valid = bad == 0;
    let mut notes: Vec<String> = Vec::new();
    if bad > 0 {
        let delivered: Vec<f64> = m.samples.iter().filter_map(|s| s.delivered).collect();
        let d = median(&delivered)
            .map(|d| format!("; median {:.1}% of bytes delivered", d * 100.0))
            .unwrap_or_default();
        notes.push(format!(
            "INVALID: gaps in {bad}/{} runs{d}",
            m.samples.len()
        ));
        r.delivered = median(&delivered);
        r.samples_delivered = m
            .samples
            .iter()
            .map(|s| s.delivered.unwrap_or(1.0))
            .collect();
    }
    // Notes that every run shares are said once.
    let mut seen: Vec<&str> = Vec::new();
    for s in &m.samples {
        if let Some(n) = &s.note {
            if !seen.contains(&n.as_str()) {
                seen.push(n);
            }
        }
    }
    if seen.len() <= 2 {
        notes.extend(seen.iter().map(|s| s.to_string()));
    } else {
        notes.push(format!("{} (run 1 of {})", seen[0], m.samples.len()));
    }
    if let Some(e) = &m.error {
        notes.push(format!("ERROR: {e}"));
    }
    r.note = notes.join("; ");
    r
}

/// The median (mean of the two middle values for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    }
}
