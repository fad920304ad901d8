//! `cargo xtask`: the project's tasks (demo, conformance, bench, package) in one binary.

mod demo;
mod package;

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
    /// Interim demo: start the Koofr emulator in-process, seed a small tree, then list it and
    /// download a file over real HTTP, verifying the MD5.
    Demo,
    /// Build the three connector executables in release mode, stage them with manifest.yaml
    /// under target/package/koofr_<version>/ and print the plakar commands to package them.
    Package(package::PackageArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => tokio::runtime::Runtime::new()?.block_on(demo::run()),
        Command::Package(args) => package::run(args),
    }
}
