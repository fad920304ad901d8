//! `cargo xtask`: the project's tasks (demo, conformance, bench, package) in one binary.

use xtask::{bench, conformance, demo, package};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Project tasks for the Koofr connectors for Plakar"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the three plugins, seed a realistic tree on the in-process emulator (or real Koofr
    /// with credentials), back it up and restore it through the plugins as Plakar drives them,
    /// verify, and print a summary.
    Demo(demo::DemoArgs),
    /// Run the store, importer and exporter conformance suites against the plugin binaries
    /// (emulator with and without faults; real Koofr with credentials); print a pass/fail table.
    Conformance(conformance::ConformanceArgs),
    /// Build the three connector executables in release mode, stage them with manifest.yaml
    /// under target/package/koofr_<version>/ (for plakar 1.1.x; `--api v1.0.0`: for plakar
    /// 1.0.x) and print the plakar commands to package them.
    Package(package::PackageArgs),
    /// Measure the release plugins on the emulator with injected latency against baselines
    /// run in the same process; print the table and write target/bench/report.md.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Conformance(args) => conformance::run(args),
        Command::Package(args) => package::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
