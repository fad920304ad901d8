//! `cargo xtask conformance`: runs kloset-plugin's store, importer and exporter suites against
//! the three Koofr plugin binaries over stdin/stdout, on the emulator (with and without injected
//! faults) and on real Koofr when credentials are given; prints a pass/fail table.

use anyhow::{Context, bail};
use koofr_e2e::build_plugins;
use koofr_e2e::conformance::{MatrixOptions, MatrixTable, Suite, run_matrix};

use crate::demo::{LiveArgs, live_credentials};

/// Which fault settings to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultSetting {
    /// Without faults only.
    Off,
    /// With injected faults only (emulator).
    On,
    /// Both.
    Both,
}

/// A suite name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SuiteArg {
    /// koofr-storage.
    Store,
    /// koofr-importer.
    Importer,
    /// koofr-exporter.
    Exporter,
}

/// Options of `cargo xtask conformance`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConformanceArgs {
    /// Suites to run (repeatable; default: all three).
    #[arg(long = "suite", value_enum)]
    pub suites: Vec<SuiteArg>,
    /// Fault settings: off, on (5% seeded 503s plus 429s with Retry-After), or both.
    #[arg(long, value_enum, default_value_t = FaultSetting::Both)]
    pub faults: FaultSetting,
    /// Seed of the injected faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Build and run the plugins in release mode.
    #[arg(long)]
    pub release: bool,
    /// Where to run: the emulator, or real Koofr too.
    #[command(flatten)]
    pub live: LiveArgs,
}

/// Runs the matrix; fails when any case failed.
pub fn run(args: ConformanceArgs) -> anyhow::Result<()> {
    let live = live_credentials(&args.live)?;
    eprintln!("Building the plugin binaries…");
    let binaries = build_plugins(args.release).context("building the plugins")?;
    let suites = if args.suites.is_empty() {
        Suite::ALL.to_vec()
    } else {
        let mut suites: Vec<Suite> = args
            .suites
            .iter()
            .map(|s| match s {
                SuiteArg::Store => Suite::Store,
                SuiteArg::Importer => Suite::Importer,
                SuiteArg::Exporter => Suite::Exporter,
            })
            .collect();
        suites.sort();
        suites.dedup();
        suites
    };
    let faults = match args.faults {
        FaultSetting::Off => vec![false],
        FaultSetting::On => vec![true],
        FaultSetting::Both => vec![false, true],
    };
    let options = MatrixOptions {
        binaries,
        live,
        suites,
        faults,
        seed: args.seed,
    };
    let rows = tokio::runtime::Runtime::new()?.block_on(run_matrix(&options));
    println!("{}", MatrixTable(&rows));
    let failed: usize = rows.iter().map(|r| r.failed()).sum();
    let passed: usize = rows.iter().map(|r| r.passed()).sum();
    if failed > 0 {
        bail!("conformance: {failed} case(s) failed, {passed} passed");
    }
    println!("conformance: all {passed} cases passed");
    Ok(())
}
