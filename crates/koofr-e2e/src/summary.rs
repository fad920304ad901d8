//! What a pipeline run measured: per-phase files, bytes, wall time and throughput, HTTP
//! requests by endpoint (from the emulator's log), and each plugin process's peak memory.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use koofr_emulator::RequestRecord;
use koofr_testkit::Site;

/// Peak resident memory (VmHWM, KiB) of a process, from `/proc/<pid>/status`.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may hold spaces); utime and stime are
    // the 14th and 15th fields of the line, counted in clock ticks (USER_HZ, 100 on Linux).
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// One plugin process of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessPeak {
    /// What it did, e.g. `storage (backup)`.
    pub role: String,
    /// Its pid.
    pub pid: Option<u32>,
    /// VmHWM read just before shutdown, KiB.
    pub peak_kib: Option<u64>,
    /// CPU time used, read just before shutdown.
    pub cpu: Option<Duration>,
    /// Exit status after EOF on its input (`None` when plakar, not this host, ended it).
    pub exit_code: Option<i32>,
}

/// Requests counted by `(endpoint, method)`.
pub fn requests_by_endpoint(requests: &[RequestRecord]) -> BTreeMap<(&'static str, String), usize> {
    let mut counts = BTreeMap::new();
    for r in requests {
        *counts.entry((r.endpoint, r.method.clone())).or_insert(0) += 1;
    }
    counts
}

/// One phase of the run.
#[derive(Debug, Clone)]
pub struct PhaseSummary {
    /// `seed`, `create`, `backup`, `restore`, `verify`, `backup again`.
    pub name: &'static str,
    /// Files handled.
    pub files: u64,
    /// Content bytes handled.
    pub bytes: u64,
    /// Wall time.
    pub duration: Duration,
    /// Whether `bytes` were transferred (else they were only compared, e.g. by hash).
    pub transferred: bool,
    /// Requests the emulator logged during the phase (empty when live).
    pub requests: Vec<RequestRecord>,
}

impl PhaseSummary {
    /// The phase `name`, begun at `since`, that handled `files` files of `bytes` bytes, with the
    /// requests `site` logged since they were last cleared (cleared again for the next phase).
    pub fn ended(
        site: &Site,
        name: &'static str,
        files: u64,
        bytes: u64,
        since: Instant,
    ) -> PhaseSummary {
        let requests = site.requests();
        site.clear_requests();
        PhaseSummary {
            name,
            files,
            bytes,
            duration: since.elapsed(),
            // Verification compares Koofr's MD5s and metadata; it moves no content.
            transferred: name != "verify",
            requests,
        }
    }

    /// MiB/s over the wall time.
    pub fn mib_per_sec(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs <= 0.0 {
            0.0
        } else {
            self.bytes as f64 / (1024.0 * 1024.0) / secs
        }
    }
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// `emulator` or `koofr`.
    pub backend: &'static str,
    /// Phases in order.
    pub phases: Vec<PhaseSummary>,
    /// Plugin processes in start order.
    pub processes: Vec<ProcessPeak>,
    /// Free-form facts (packfiles, records, results, ...), in order.
    pub facts: Vec<(String, String)>,
    /// Total wall time.
    pub total: Duration,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Summary ({} backend)", self.backend)?;
        writeln!(
            f,
            "  {:<14} {:>7} {:>12} {:>10} {:>11}",
            "phase", "files", "bytes", "wall", "throughput"
        )?;
        for p in &self.phases {
            let throughput = if p.transferred && p.bytes > 0 {
                format!("{:.1} MiB/s", p.mib_per_sec())
            } else {
                "-".to_owned()
            };
            writeln!(
                f,
                "  {:<14} {:>7} {:>12} {:>9.2}s {:>11}",
                p.name,
                p.files,
                mib(p.bytes),
                p.duration.as_secs_f64(),
                throughput
            )?;
        }
        writeln!(f, "  total wall time {:.2}s", self.total.as_secs_f64())?;
        for (key, value) in &self.facts {
            writeln!(f, "  {key}: {value}")?;
        }
        if self.phases.iter().any(|p| !p.requests.is_empty()) {
            let mut endpoints: BTreeMap<(&'static str, String), Vec<usize>> = BTreeMap::new();
            for (i, phase) in self.phases.iter().enumerate() {
                for (key, count) in requests_by_endpoint(&phase.requests) {
                    endpoints
                        .entry(key)
                        .or_insert_with(|| vec![0; self.phases.len()])[i] = count;
                }
            }
            writeln!(f, "HTTP requests by endpoint and phase (emulator log)")?;
            write!(f, "  {:<28}", "endpoint")?;
            for p in &self.phases {
                write!(f, " {:>12}", p.name)?;
            }
            writeln!(f)?;
            for ((endpoint, method), counts) in &endpoints {
                write!(f, "  {:<28}", format!("{method} {endpoint}"))?;
                for c in counts {
                    write!(f, " {c:>12}")?;
                }
                writeln!(f)?;
            }
            let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
            for r in self.phases.iter().flat_map(|p| &p.requests) {
                if r.status >= 400 || r.status == 0 {
                    *statuses.entry(r.status).or_insert(0) += 1;
                }
            }
            let statuses: Vec<String> = statuses
                .iter()
                .map(|(status, count)| format!("{count} × {status}"))
                .collect();
            writeln!(
                f,
                "  non-2xx responses: {} (404s are existence checks; 0 = connection dropped)",
                if statuses.is_empty() {
                    "none".to_owned()
                } else {
                    statuses.join(", ")
                }
            )?;
        } else {
            writeln!(f, "HTTP requests: not available on real Koofr")?;
        }
        writeln!(f, "Plugin processes (peak memory = VmHWM before shutdown)")?;
        for p in &self.processes {
            let peak = p
                .peak_kib
                .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "n/a".to_owned());
            let pid = p.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            let exit = p
                .exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "by plakar".to_owned());
            writeln!(
                f,
                "  {:<26} pid {:>7}  peak {:>10}  exit {exit}",
                p.role, pid, peak
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_peak_memory_is_readable() {
        let kib = peak_rss_kib(std::process::id()).expect("VmHWM of this process");
        assert!(kib > 100, "peak {kib} KiB");
        assert_eq!(peak_rss_kib(u32::MAX), None);
    }

    #[test]
    fn counts_requests_by_endpoint_and_method() {
        use koofr_testkit::requests::record;
        let log = vec![
            record("files/get", "/test/kloset/packfiles/ab"),
            record("files/get", "/test/kloset"),
            record("files/put", "/test/kloset/states"),
        ];
        let counts = requests_by_endpoint(&log);
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[&("files/get", "GET".to_owned())], 2);
    }
}
