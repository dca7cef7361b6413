//! The drills' summary table: one row per drill, printed after each drill
//! with every row so far (the tests of a binary run one at a time, so the
//! last table printed has them all).

use std::sync::Mutex;
use std::time::Duration;

/// One drill's outcome.
#[derive(Debug, Clone)]
pub struct Row {
    /// The scenario.
    pub scenario: String,
    /// The faults it injected.
    pub faults: String,
    /// Sessions under test.
    pub sessions: usize,
    /// Bytes checked against the known stream, over every watcher.
    pub verified: u64,
    /// Each measured recovery.
    pub recoveries: Vec<(String, Duration)>,
    /// Bytes announced lost by gap notices (a client more than a ring
    /// behind); never lost silently.
    pub lost: u64,
    /// Figures and remarks.
    pub notes: Vec<String>,
}

static ROWS: Mutex<Vec<Row>> = Mutex::new(Vec::new());

/// Adds `row` and prints the table so far to stderr.
pub fn record(row: Row) {
    let mut rows = ROWS.lock().unwrap_or_else(|e| e.into_inner());
    rows.push(row);
    eprintln!("{}", table(&rows));
}

/// The table of `rows`, as Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "\n| scenario | faults | sessions | bytes verified | recovery (worst) | lost bytes |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let worst = r
            .recoveries
            .iter()
            .max_by_key(|(_, d)| *d)
            .map_or("-".to_string(), |(what, d)| {
                format!("{:.2} s ({what})", d.as_secs_f64())
            });
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.scenario, r.faults, r.sessions, r.verified, worst, r.lost
        ));
    }
    for r in rows {
        s.push_str(&format!("\n{}:\n", r.scenario));
        for (what, d) in &r.recoveries {
            s.push_str(&format!("  - {what}: {:.3} s\n", d.as_secs_f64()));
        }
        for n in &r.notes {
            s.push_str(&format!("  - {n}\n"));
        }
    }
    s
}
