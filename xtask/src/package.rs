//! `cargo xtask package`: builds the connector executables named in `manifest.yaml` in release
//! mode, stages them with the manifest under `target/package/<name>_<version>/`, and prints the
//! `plakar pkg create` and `plakar pkg add` commands that turn that folder into an installed
//! Plakar package (Plakar itself is not run: it may not be installed where this builds).
//!
//! With `--api v1.0.0` the package is for plakar v1.0.x instead: the folder is
//! `target/package/<name>_<version>_api-v1.0.0/`, and its `manifest.yaml` is derived from the
//! repository's (plakar 1.0's fields only, `version:` set, every connector started with
//! `--plakar-protocol v1`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

pub use koofr_e2e::manifest::{Manifest, parse_manifest, plakar_1_0_manifest};

/// Options of `cargo xtask package`.
#[derive(Debug, Clone, clap::Args)]
pub struct PackageArgs {
    /// Package version, semver with a leading `v` (e.g. v0.1.0); default: the workspace version.
    #[arg(long)]
    pub version: Option<String>,
    /// Rust target triple to build for (e.g. aarch64-unknown-linux-gnu); default: the host.
    #[arg(long)]
    pub target: Option<String>,
    /// Plugin API of the package: v1.1.0 for plakar v1.1.x, v1.0.0 for plakar v1.0.x.
    #[arg(long, value_enum, default_value = "v1.1.0")]
    pub api: Api,
}

/// The plugin API a package is made for: one per plakar line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// plakar v1.1.x: protocol v2; the repository's `manifest.yaml` as it is.
    #[value(name = "v1.1.0")]
    V1_1,
    /// plakar v1.0.x: protocol v1; a manifest derived with [`plakar_1_0_manifest`].
    #[value(name = "v1.0.0")]
    V1_0,
}

/// The connector types Plakar v1.1 loads from a manifest. `store` is NOT one of them: plakar
/// silently skips a connector declared with it.
pub const CONNECTOR_TYPES: [&str; 3] = ["importer", "exporter", "storage"];

/// The URL scheme every Koofr connector serves.
pub const PROTOCOL: &str = "koofr";

/// Everything in `manifest` that would make Plakar skip or misuse a connector, checked against
/// the workspace's binary targets (`binaries`: executable name → package). Empty when fine.
pub fn manifest_problems(manifest: &Manifest, binaries: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    if manifest.name.is_empty()
        || !manifest
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        problems.push(format!(
            "package name {:?} must be non-empty and use only [A-Za-z0-9-]",
            manifest.name
        ));
    }
    if manifest.top_level.contains_key("flags") {
        problems.push("top-level `flags` key: plakar does not read it".to_owned());
    }
    let mut kinds: Vec<&str> = manifest
        .connectors
        .iter()
        .map(|c| c.kind.as_str())
        .collect();
    kinds.sort_unstable();
    let mut expected = CONNECTOR_TYPES.to_vec();
    expected.sort_unstable();
    if kinds != expected {
        problems.push(format!(
            "connector types are {kinds:?}; expected exactly {expected:?} (the store type is `storage`, never `store`)"
        ));
    }
    for connector in &manifest.connectors {
        let at = format!("connector `{}`", connector.kind);
        if connector.keys.iter().any(|k| k == "flags") {
            problems.push(format!(
                "{at}: `flags` is not read by plakar; use `location_flags`"
            ));
        }
        if connector.protocols != [PROTOCOL] {
            problems.push(format!(
                "{at}: protocols are {:?}; expected [{PROTOCOL}]",
                connector.protocols
            ));
        }
        match &connector.location_flags {
            Some(flags) if flags.is_empty() => {}
            Some(flags) => problems.push(format!(
                "{at}: location_flags {flags:?}; the Koofr connectors report no flags, so it must be []"
            )),
            None => problems.push(format!("{at}: `location_flags: []` is missing")),
        }
        if connector.class != "file-storage" {
            problems.push(format!(
                "{at}: class {:?}; expected \"file-storage\"",
                connector.class
            ));
        }
        if connector.executable.is_empty() {
            problems.push(format!("{at}: no `executable`"));
        } else if !binaries.contains_key(&connector.executable) {
            problems.push(format!(
                "{at}: executable `{}` is not a binary target of any workspace crate (known: {:?})",
                connector.executable,
                binaries.keys().collect::<Vec<_>>()
            ));
        }
    }
    problems
}

/// Go's `GOOS` and `GOARCH` for a Rust target triple, as Plakar names packages
/// (`<name>_<version>_<GOOS>_<GOARCH>.ptar`); None for a target Plakar has no build for.
pub fn go_os_arch(target: &str) -> Option<(&'static str, &'static str)> {
    let mut parts = target.split('-');
    let arch = parts.next()?;
    let rest: Vec<&str> = parts.collect();
    let has = |name: &str| rest.contains(&name);
    // Android triples also say `linux`, so test it first.
    let os = if has("android") || has("androideabi") {
        "android"
    } else if has("linux") {
        "linux"
    } else if has("darwin") {
        "darwin"
    } else if has("windows") {
        "windows"
    } else if has("freebsd") {
        "freebsd"
    } else if has("openbsd") {
        "openbsd"
    } else if has("netbsd") {
        "netbsd"
    } else {
        return None;
    };
    let go_arch = match arch {
        "x86_64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "i686" | "i586" | "i386" => "386",
        a if a.starts_with("armv7") || a == "arm" || a.starts_with("armv6") => "arm",
        "riscv64gc" | "riscv64" => "riscv64",
        "powerpc64le" => "ppc64le",
        "s390x" => "s390x",
        "loongarch64" => "loong64",
        _ => return None,
    };
    Some((os, go_arch))
}

/// True for a Plakar package version: `v` followed by semver (`v1.2.3`, `v1.2.3-rc.1+b5`).
pub fn is_plakar_version(version: &str) -> bool {
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let (rest, build) = match rest.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (rest, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let numeric = |n: &&str| {
        !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit())
            && (n.len() == 1 || !n.starts_with('0'))
    };
    let identifiers = |s: &str| {
        s.split('.')
            .all(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    };
    numbers.len() == 3
        && numbers.iter().all(numeric)
        && pre.is_none_or(identifiers)
        && build.is_none_or(identifiers)
}

/// The workspace as `cargo metadata` describes it: its root, its target directory and every
/// binary target of its crates (executable name → package name).
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The workspace root (where `manifest.yaml` lives).
    pub root: PathBuf,
    /// Cargo's target directory.
    pub target_dir: PathBuf,
    /// Binary target name → the package that defines it.
    pub binaries: BTreeMap<String, String>,
}

/// The cargo executable to run: the one running us, if any.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Reads the workspace layout with `cargo metadata --no-deps` (no build, no network).
pub fn workspace() -> Result<Workspace> {
    let output = Command::new(cargo())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .output()
        .context("running `cargo metadata`")?;
    ensure!(
        output.status.success(),
        "`cargo metadata` failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing `cargo metadata` output")?;
    let text = |key: &str| {
        metadata[key]
            .as_str()
            .map(PathBuf::from)
            .with_context(|| format!("`cargo metadata` output has no `{key}`"))
    };
    let mut binaries = BTreeMap::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let package_name = package["name"].as_str().unwrap_or_default();
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bin = target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"));
            if let (true, Some(name)) = (is_bin, target["name"].as_str()) {
                binaries.insert(name.to_owned(), package_name.to_owned());
            }
        }
    }
    Ok(Workspace {
        root: text("workspace_root")?,
        target_dir: text("target_directory")?,
        binaries,
    })
}

/// The host's target triple, from `rustc -vV`.
fn host_target() -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(&rustc)
        .arg("-vV")
        .output()
        .with_context(|| format!("running `{rustc} -vV`"))?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_owned())
        .with_context(|| format!("`{rustc} -vV` printed no `host:` line"))
}

/// Runs `cargo xtask package`.
pub fn run(args: PackageArgs) -> Result<()> {
    let workspace = workspace()?;
    let manifest_path = workspace.root.join("manifest.yaml");
    let manifest_text = fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest = parse_manifest(&manifest_text)?;
    let problems = manifest_problems(&manifest, &workspace.binaries);
    if !problems.is_empty() {
        bail!(
            "{} is not valid for this workspace:\n  {}",
            manifest_path.display(),
            problems.join("\n  ")
        );
    }

    let version = args
        .version
        .unwrap_or_else(|| format!("v{}", env!("CARGO_PKG_VERSION")));
    ensure!(
        is_plakar_version(&version),
        "--version {version:?} must be semver with a leading `v`, e.g. v0.1.0"
    );
    let target = match &args.target {
        Some(target) => target.clone(),
        None => host_target()?,
    };
    let (goos, goarch) = go_os_arch(&target).with_context(|| {
        format!("no Go OS/arch name known for the Rust target {target:?}; Plakar cannot name the package")
    })?;
    let exe_suffix = if goos == "windows" { ".exe" } else { "" };

    let executables: Vec<&str> = manifest
        .connectors
        .iter()
        .map(|c| c.executable.as_str())
        .collect();
    let mut build = Command::new(cargo());
    build
        .current_dir(&workspace.root)
        .args(["build", "--release"]);
    for executable in &executables {
        build.args(["--bin", executable]);
    }
    if let Some(target) = &args.target {
        build.args(["--target", target]);
    }
    eprintln!("== building {} for {target}", executables.join(", "));
    let status = build.status().context("running `cargo build`")?;
    ensure!(
        status.success(),
        "`cargo build --release` failed ({status})"
    );

    let release_dir = match &args.target {
        Some(target) => workspace.target_dir.join(target).join("release"),
        None => workspace.target_dir.join("release"),
    };
    let (folder, manifest_out) = match args.api {
        Api::V1_1 => (
            format!("{}_{version}", manifest.name),
            manifest_text.clone(),
        ),
        Api::V1_0 => (
            format!("{}_{version}_api-v1.0.0", manifest.name),
            plakar_1_0_manifest(&manifest, &version),
        ),
    };
    let stage = workspace.target_dir.join("package").join(folder);
    stage_package(
        &stage,
        &manifest_out,
        &release_dir,
        &executables,
        exe_suffix,
    )?;

    let ptar = format!("{}_{version}_{goos}_{goarch}.ptar", manifest.name);
    println!(
        "Staged {} with manifest.yaml and {}.",
        stage.display(),
        executables.join(", ")
    );
    println!();
    match args.api {
        Api::V1_1 => {
            println!(
                "This task does not run plakar. With plakar v1.1.x installed, create the package:"
            );
            println!();
            println!("    cd {}", stage.display());
            println!("    GOOS={goos} GOARCH={goarch} plakar pkg create ./manifest.yaml {version}");
            println!();
            println!("which writes {ptar} in that folder. Then install it:");
            println!();
            println!("    plakar pkg add ./{ptar}");
            println!();
            println!(
                "(`plakar pkg add -u ./{ptar}` upgrades an installed version; `plakar pkg rm {}` removes it.)",
                manifest.name
            );
        }
        Api::V1_0 => {
            println!(
                "This task does not run plakar. With plakar v1.0.x installed, create the package \
                 (the version comes from the manifest's `version: {version}`):"
            );
            println!();
            println!("    cd {}", stage.display());
            println!("    GOOS={goos} GOARCH={goarch} plakar pkg create ./manifest.yaml");
            println!();
            println!(
                "which writes {ptar} in that folder. Then install it (keep the `./`: plakar 1.0 \
                 looks any other name up online):"
            );
            println!();
            println!("    plakar pkg add ./{ptar}");
            println!();
            println!(
                "(plakar 1.0 installs one version of a package: `plakar pkg rm {}` before adding another.)",
                manifest.name
            );
        }
    }
    Ok(())
}

/// Recreates `stage` holding `manifest.yaml` (with `manifest` as its text) and the
/// executables, copied from `release_dir`.
fn stage_package(
    stage: &Path,
    manifest: &str,
    release_dir: &Path,
    executables: &[&str],
    exe_suffix: &str,
) -> Result<()> {
    if stage.exists() {
        fs::remove_dir_all(stage).with_context(|| format!("removing old {}", stage.display()))?;
    }
    fs::create_dir_all(stage).with_context(|| format!("creating {}", stage.display()))?;
    let manifest_path = stage.join("manifest.yaml");
    fs::write(&manifest_path, manifest)
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    for executable in executables {
        let file = format!("{executable}{exe_suffix}");
        let from = release_dir.join(&file);
        let to = stage.join(&file);
        fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        make_executable(&to)?;
    }
    Ok(())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<()> {
    Ok(())
}
