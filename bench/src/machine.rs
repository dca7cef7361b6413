//! The machine a run was measured on: cores, CPU model, memory, kernel,
//! date, and the versions of the programs compared.

use serde::Serialize;
use std::path::Path;
use std::process::Command;

/// What the report states at its top.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores usable by this process (`nproc`).
    pub cores: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// Total memory in MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// When the run started, UTC.
    pub date: String,
    /// `tether --version`.
    pub tether: String,
    /// `tmux -V`, or "tmux not found".
    pub tmux: String,
    /// Load averages (1, 5, 15 min) when the run started: other work on
    /// the machine makes every figure noisier.
    pub loadavg: String,
    /// `git describe --always --dirty` of the workspace, if there is one.
    pub commit: Option<String>,
}

impl Machine {
    /// Reads the machine's figures.
    pub fn probe(tether: &Path, tmux: Option<&str>) -> Machine {
        let cores = cmd_out("nproc", &[])
            .and_then(|s| s.trim().parse().ok())
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(0);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map(|kb| kb / 1024)
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let tether = cmd_out(&tether.to_string_lossy(), &["--version"])
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let loadavg = crate::loadavg();
        let commit = cmd_out("git", &["describe", "--always", "--dirty"])
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        Machine {
            loadavg,
            commit,
            cores,
            cpu,
            memory_mib,
            kernel,
            date: utc_now(),
            tether,
            tmux: tmux.unwrap_or("tmux not found").to_string(),
        }
    }

    /// One line for the top of the table.
    pub fn line(&self) -> String {
        format!(
            "Machine: {} cores, {}, {} MiB, Linux {}, load average {} at the start; {}; {}{}; {}",
            self.cores,
            self.cpu,
            self.memory_mib,
            self.kernel,
            self.loadavg,
            self.date,
            self.tether,
            self.commit
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            self.tmux
        )
    }
}

fn cmd_out(prog: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(prog).args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
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
    use super::civil_from_days;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
