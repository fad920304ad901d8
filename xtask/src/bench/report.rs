//! The bench's results: one row per measured operation (ours, the baselines, ratios, requests,
//! peak memory, targets), the machine it ran on, and their rendering as a Markdown table.

use std::fmt::Write as _;
use std::time::Duration;

/// A baseline measured in the same run.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// What it does, e.g. `files/list walk, 1 at a time`.
    pub label: String,
    /// Its wall time.
    pub time: Duration,
}

impl Baseline {
    /// The baseline `label` that took `time`.
    pub fn new(label: impl Into<String>, time: Duration) -> Baseline {
        Baseline {
            label: label.into(),
            time,
        }
    }
}

/// A target of the issue, checked on the row's numbers.
#[derive(Debug, Clone)]
pub struct Check {
    /// The target, e.g. `≥ 20x walk`.
    pub target: String,
    /// Whether this run met it.
    pub met: bool,
}

/// One measured operation.
#[derive(Debug, Clone)]
pub struct Row {
    /// Scenario number (1–6).
    pub scenario: u8,
    /// What was measured, with its size.
    pub operation: String,
    /// Our plugins' wall time.
    pub ours: Duration,
    /// The naive baseline (one at a time, folder by folder), if measured.
    pub naive: Option<Baseline>,
    /// The limit (same bytes, ideal concurrency, no protocol overhead), if measured.
    pub limit: Option<Baseline>,
    /// HTTP requests per operation, from the emulator's log.
    pub requests: String,
    /// Peak RSS (VmHWM) of the plugin process(es), KiB.
    pub peak_rss_kib: Option<u64>,
    /// CPU time (user + system) of the plugin process over its life.
    pub plugin_cpu: Option<Duration>,
    /// The targets of the issue for this row.
    pub checks: Vec<Check>,
}

impl Row {
    /// `baseline time / our time`: above 1 means we are faster.
    pub fn speedup(&self, baseline: Option<&Baseline>) -> Option<f64> {
        let baseline = baseline?;
        let ours = self.ours.as_secs_f64();
        (ours > 0.0).then(|| baseline.time.as_secs_f64() / ours)
    }

    /// Whether every target was met.
    pub fn met(&self) -> bool {
        self.checks.iter().all(|c| c.met)
    }

    fn result(&self) -> String {
        let missed: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| !c.met)
            .map(|c| c.target.as_str())
            .collect();
        if self.checks.is_empty() {
            "info (no target)".to_owned()
        } else if missed.is_empty() {
            "met".to_owned()
        } else {
            format!("**MISSED** ({})", missed.join("; "))
        }
    }
}

/// The machine the bench ran on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Logical CPUs.
    pub nproc: usize,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// CPU model name.
    pub cpu: String,
    /// UTC date and time of the run.
    pub date: String,
    /// The 1-minute load average when the bench started (other work on the machine skews
    /// the numbers).
    pub load_at_start: String,
}

impl Machine {
    /// Reads /proc/cpuinfo and /proc/meminfo, and asks `date` for the time.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, model)| model.trim().to_owned())
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kib| kib / 1024);
        let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let load_at_start = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());
        Machine {
            nproc,
            memory_mib,
            cpu,
            date,
            load_at_start,
        }
    }
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

fn baseline_cell(baseline: Option<&Baseline>) -> String {
    baseline.map_or_else(
        || "–".to_owned(),
        |b| format!("{} ({})", seconds(b.time), b.label),
    )
}

/// CPU time is counted in clock ticks of 10 ms: zero means "under one tick".
fn cpu_cell(cpu: Option<Duration>) -> String {
    match cpu {
        None => "–".to_owned(),
        Some(d) if d.is_zero() => "< 10 ms".to_owned(),
        Some(d) => seconds(d),
    }
}

fn ratio_cell(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}x"))
}

/// The results as a Markdown table (ratios are baseline time / our time).
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| # | Operation | Ours | Naive baseline | Limit or reference baseline | vs naive | vs limit/ref | HTTP requests | Plugin peak RSS | Plugin CPU | Target | Result |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        let rss = row.peak_rss_kib.map_or_else(
            || "–".to_owned(),
            |k| format!("{:.1} MiB", k as f64 / 1024.0),
        );
        let targets: Vec<&str> = row.checks.iter().map(|c| c.target.as_str()).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.operation,
            seconds(row.ours),
            baseline_cell(row.naive.as_ref()),
            baseline_cell(row.limit.as_ref()),
            ratio_cell(row.speedup(row.naive.as_ref())),
            ratio_cell(row.speedup(row.limit.as_ref())),
            row.requests,
            rss,
            cpu_cell(row.plugin_cpu),
            targets.join("; "),
            row.result(),
        );
    }
    out
}

/// The whole report: settings, machine, table and notes.
pub fn markdown_report(
    rows: &[Row],
    machine: &Machine,
    settings: &str,
    notes: &[String],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# `cargo xtask bench` report\n");
    let _ = writeln!(
        out,
        "Machine: {} CPUs ({}), {} MiB memory; run {}, load average {} at the start.\n",
        machine.nproc, machine.cpu, machine.memory_mib, machine.date, machine.load_at_start
    );
    let _ = writeln!(out, "Settings: {settings}.\n");
    out.push_str(&markdown_table(rows));
    if !notes.is_empty() {
        out.push('\n');
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ours_ms: u64, naive_ms: u64, met: bool) -> Row {
        Row {
            scenario: 1,
            operation: "scan".into(),
            ours: Duration::from_millis(ours_ms),
            naive: Some(Baseline {
                label: "walk".into(),
                time: Duration::from_millis(naive_ms),
            }),
            limit: None,
            requests: "1".into(),
            peak_rss_kib: Some(2048),
            plugin_cpu: Some(Duration::from_millis(40)),
            checks: vec![Check {
                target: "≥ 20x walk".into(),
                met,
            }],
        }
    }

    #[test]
    fn ratios_are_baseline_over_ours() {
        let r = row(100, 2500, true);
        let speedup = r.speedup(r.naive.as_ref()).expect("a ratio");
        assert!((speedup - 25.0).abs() < 1e-9);
        assert_eq!(r.speedup(None), None);
    }

    #[test]
    fn missed_targets_are_shown_not_hidden() {
        let table = markdown_table(&[row(100, 2500, true), row(100, 500, false)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[2].ends_with("| met |"), "{}", lines[2]);
        assert!(lines[3].contains("**MISSED** (≥ 20x walk)"), "{}", lines[3]);
        assert!(lines[2].contains("2.0 MiB") && lines[2].contains("25.00x"));
        assert!(lines[2].contains("| 40.0 ms |"), "{}", lines[2]);
    }

    #[test]
    fn machine_is_described() {
        let machine = Machine::detect();
        assert!(machine.nproc >= 1);
        assert!(machine.memory_mib > 0);
        assert!(!machine.cpu.is_empty());
    }
}
