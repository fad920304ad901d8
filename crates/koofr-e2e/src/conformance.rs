//! The conformance matrix of `cargo xtask conformance`: kloset-plugin's store, importer and
//! exporter suites against the three plugin binaries over stdin/stdout, using the connector
//! crates' `testkit` fixtures, per backend (emulator, real Koofr) and with or without injected
//! faults (seeded 503s plus a few 429s with `Retry-After`, on the emulator).

use std::fmt;
use std::time::{Duration, Instant};

use kloset_plugin::suites::{SuiteReport, run_exporter_suite, run_importer_suite, run_store_suite};
use koofr_emulator::FaultRule;

use crate::binaries::PluginBinaries;
use koofr_testkit::{LiveCredentials, Site};

/// Share of requests answered 503 when faults are on.
pub const FAULT_FAILURE_RATE: f64 = 0.05;

/// Which suites to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Suite {
    /// koofr-storage.
    Store,
    /// koofr-importer.
    Importer,
    /// koofr-exporter.
    Exporter,
}

impl Suite {
    /// Every suite.
    pub const ALL: [Suite; 3] = [Suite::Store, Suite::Importer, Suite::Exporter];

    /// The suite's name.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Store => "store",
            Suite::Importer => "importer",
            Suite::Exporter => "exporter",
        }
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone)]
pub struct MatrixRow {
    /// The suite.
    pub suite: Suite,
    /// `emulator` or `koofr`.
    pub backend: &'static str,
    /// Faults injected.
    pub faults: bool,
    /// The suite's per-case report (None when the fixture could not be set up).
    pub report: Option<SuiteReport>,
    /// Why the fixture could not be set up.
    pub setup_error: Option<String>,
    /// Wall time.
    pub duration: Duration,
    /// Requests the emulator answered with a failure (injected faults seen), when known.
    pub injected: Option<usize>,
}

impl MatrixRow {
    /// Passed cases.
    pub fn passed(&self) -> usize {
        self.report.as_ref().map_or(0, SuiteReport::passed)
    }
    /// Failed cases (a setup failure counts as one).
    pub fn failed(&self) -> usize {
        match &self.report {
            Some(report) => report.outcomes.len() - report.passed(),
            None => 1,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct MatrixOptions {
    /// The plugin executables.
    pub binaries: PluginBinaries,
    /// Real Koofr too, when given.
    pub live: Option<LiveCredentials>,
    /// Suites to run.
    pub suites: Vec<Suite>,
    /// Fault settings to run (false = none, true = injected; the latter on the emulator only).
    pub faults: Vec<bool>,
    /// Seed of the emulator's random failures.
    pub seed: u64,
}

/// Turns faults on: seeded 503s on every endpoint and a few 429s with `Retry-After: 1`.
fn inject_faults(site: &Site, seed: u64) {
    if site.is_live() {
        return;
    }
    let faults = site.emulator().faults();
    faults.set_failure_rate(None, FAULT_FAILURE_RATE);
    // Spread over the endpoints each suite uses; `seed` shifts which requests are hit.
    let skip = (seed % 7) as u32;
    for endpoint in [
        "files/get",
        "files/put",
        "files/list",
        "files/listrecursive",
    ] {
        faults.inject(
            FaultRule::status(endpoint, 429)
                .retry_after(1)
                .skip(skip + 2)
                .times(1),
        );
    }
}

async fn run_one(
    site: &Site,
    suite: Suite,
    binaries: &PluginBinaries,
    target: &str,
) -> anyhow::Result<SuiteReport> {
    let client = site.client().clone();
    match suite {
        Suite::Store => {
            let location = site.path("store/kloset")?;
            let fixture = koofr_storage::testkit::KoofrStoreSite::new(
                client,
                site.plugin_config(&location),
                koofr_storage::testkit::Transport::Binary(binaries.storage.clone()),
            )
            .map_err(|e| anyhow::anyhow!("store fixture: {e}"))?;
            Ok(run_store_suite(target, &fixture).await)
        }
        Suite::Importer => {
            let root = site.path("importer/source")?;
            let fixture = koofr_importer::testkit::KoofrImporterSite::new(
                client,
                root.clone(),
                site.plugin_config(&root),
                koofr_importer::testkit::Transport::Binary(binaries.importer.clone()),
            );
            Ok(run_importer_suite(target, &fixture).await)
        }
        Suite::Exporter => {
            let base = site.path("exporter")?;
            let fixture = koofr_exporter::testkit::KoofrExporterSite::new(
                client,
                base.clone(),
                site.plugin_config(&base),
                koofr_exporter::testkit::Transport::Binary(binaries.exporter.clone()),
            );
            Ok(run_exporter_suite(target, &fixture).await)
        }
    }
}

/// Runs every (backend × faults × suite) cell, each suite on a fresh site.
pub async fn run_matrix(options: &MatrixOptions) -> Vec<MatrixRow> {
    let mut backends: Vec<Option<&LiveCredentials>> = vec![None];
    if let Some(live) = &options.live {
        backends.push(Some(live));
    }
    let mut rows = Vec::new();
    for backend in backends {
        for &faults in &options.faults {
            if faults && backend.is_some() {
                continue; // Faults are injected by the emulator only.
            }
            for &suite in &options.suites {
                let started = Instant::now();
                let backend_name = if backend.is_some() {
                    "koofr"
                } else {
                    "emulator"
                };
                let site = match backend {
                    None => Site::start_emulator().await,
                    Some(live) => Site::start_live(live, "conformance").await,
                };
                let site = match site {
                    Ok(site) => site,
                    Err(err) => {
                        rows.push(MatrixRow {
                            suite,
                            backend: backend_name,
                            faults,
                            report: None,
                            setup_error: Some(format!("{err:#}")),
                            duration: started.elapsed(),
                            injected: None,
                        });
                        continue;
                    }
                };
                if faults {
                    inject_faults(&site, options.seed);
                }
                let target = format!("{backend_name}{}", if faults { " with faults" } else { "" });
                let outcome = run_one(&site, suite, &options.binaries, &target).await;
                let injected = (!site.is_live()).then(|| {
                    site.requests()
                        .iter()
                        .filter(|r| r.status == 503 || r.status == 429)
                        .count()
                });
                let cleanup = site.finish().await;
                let (report, mut setup_error) = match outcome {
                    Ok(report) => (Some(report), None),
                    Err(err) => (None, Some(format!("{err:#}"))),
                };
                if let Err(err) = cleanup {
                    setup_error = Some(format!("cleanup: {err:#}"));
                }
                rows.push(MatrixRow {
                    suite,
                    backend: backend_name,
                    faults,
                    report,
                    setup_error,
                    duration: started.elapsed(),
                    injected,
                });
            }
        }
    }
    rows
}

/// The pass/fail table, then every failure.
#[derive(Debug)]
pub struct MatrixTable<'a>(pub &'a [MatrixRow]);

impl fmt::Display for MatrixTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10} {:<9} {:<7} {:>6} {:>6} {:>9} {:>8}  result",
            "suite", "backend", "faults", "passed", "failed", "injected", "wall"
        )?;
        for row in self.0 {
            writeln!(
                f,
                "{:<10} {:<9} {:<7} {:>6} {:>6} {:>9} {:>7.1}s  {}",
                row.suite.name(),
                row.backend,
                if row.faults { "on" } else { "off" },
                row.passed(),
                row.failed(),
                row.injected
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                row.duration.as_secs_f64(),
                if row.failed() == 0 { "PASS" } else { "FAIL" }
            )?;
        }
        for row in self.0 {
            let cell = format!(
                "{} / {} / faults {}",
                row.suite.name(),
                row.backend,
                if row.faults { "on" } else { "off" }
            );
            if let Some(err) = &row.setup_error {
                writeln!(f, "{cell}: setup failed: {err}")?;
            }
            if let Some(report) = &row.report {
                for failure in report.failures() {
                    if let Err(e) = &failure.result {
                        writeln!(f, "{cell}: {}: {e}", failure.name)?;
                    }
                }
            }
        }
        Ok(())
    }
}
