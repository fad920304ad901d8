//! Builds the three Koofr plugin executables with a nested `cargo build` and finds them in the
//! workspace's target directory (shared by the e2e tests and `cargo xtask`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The packages that own the plugin binaries, in `cargo build -p` order.
pub const PLUGIN_PACKAGES: [&str; 3] = ["koofr-importer", "koofr-exporter", "koofr-storage"];

/// Paths of the three plugin executables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginBinaries {
    /// `koofr-importer` (package koofr-importer).
    pub importer: PathBuf,
    /// `koofr-exporter` (package koofr-exporter).
    pub exporter: PathBuf,
    /// `koofr-storage` (package koofr-storage).
    pub storage: PathBuf,
}

/// The workspace root (this crate lives in `crates/koofr-e2e`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .unwrap_or(manifest_dir)
        .to_path_buf()
}

/// Whether `name` is a variable cargo sets for the crate it runs (a test, `cargo run`), not a
/// user setting. A nested build must not inherit those: build scripts (e.g. ring's) track
/// `CARGO_MANIFEST_DIR`, so inheriting it would rebuild them for every later build.
fn set_by_cargo_for_the_running_crate(name: &str) -> bool {
    const PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_BIN_", "CARGO_MANIFEST_"];
    const NAMES: &[&str] = &[
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p)) || NAMES.contains(&name)
}

/// A `cargo` command in the workspace root without the running crate's cargo variables.
fn cargo_command() -> Command {
    let mut command = Command::new(cargo_program());
    command.current_dir(workspace_root());
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(set_by_cargo_for_the_running_crate)
        {
            command.env_remove(name);
        }
    }
    command
}

fn cargo_program() -> String {
    // Inside `cargo test`/`cargo run`, CARGO names the cargo that is running us.
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The workspace's target directory, as `cargo metadata` reports it (honours
/// `CARGO_TARGET_DIR` and `.cargo/config.toml`).
pub fn target_directory() -> anyhow::Result<PathBuf> {
    let output = cargo_command()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running `cargo metadata`")?;
    if !output.status.success() {
        bail!(
            "`cargo metadata` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing `cargo metadata` output")?;
    let target = metadata["target_directory"]
        .as_str()
        .context("`cargo metadata` output has no target_directory")?;
    Ok(PathBuf::from(target))
}

/// Where the binaries of `profile` (`debug` or `release`) are, without building them.
pub fn locate_plugins(release: bool) -> anyhow::Result<PluginBinaries> {
    let dir = target_directory()?.join(if release { "release" } else { "debug" });
    let binary = |name: &str| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let binaries = PluginBinaries {
        importer: binary("koofr-importer"),
        exporter: binary("koofr-exporter"),
        storage: binary("koofr-storage"),
    };
    for path in [&binaries.importer, &binaries.exporter, &binaries.storage] {
        if !path.is_file() {
            bail!("plugin binary {} is missing", path.display());
        }
    }
    Ok(binaries)
}

/// Runs `cargo build -p koofr-importer -p koofr-exporter -p koofr-storage` (with `--release`
/// if asked) in the workspace and returns the binaries' paths. Cargo's output goes to stderr.
pub fn build_plugins(release: bool) -> anyhow::Result<PluginBinaries> {
    let mut command = cargo_command();
    command.arg("build");
    for package in PLUGIN_PACKAGES {
        command.args(["-p", package]);
    }
    if release {
        command.arg("--release");
    }
    let status = command
        .status()
        .context("running `cargo build` for the plugins")?;
    if !status.success() {
        bail!(
            "`cargo build -p {}` failed ({status})",
            PLUGIN_PACKAGES.join(" -p ")
        );
    }
    locate_plugins(release)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_running_crates_variables_are_dropped() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_BIN_EXE_x",
            "OUT_DIR",
        ] {
            assert!(set_by_cargo_for_the_running_crate(name), "{name}");
        }
        for name in [
            "CARGO_TARGET_DIR",
            "CARGO_HOME",
            "CARGO",
            "PATH",
            "RUSTFLAGS",
        ] {
            assert!(!set_by_cargo_for_the_running_crate(name), "{name}");
        }
    }
}
