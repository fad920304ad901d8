//! The `koofr` package for a plakar line, built with `plakar pkg create`.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};

use super::{COMMAND_TIMEOUT, Line, PACKAGE_VERSION, Plakar, PlakarHome};
use crate::binaries::{PluginBinaries, workspace_root};

/// The `koofr` package (`.ptar`) built with `plakar pkg create` from the repository's
/// `manifest.yaml` (for plakar 1.0: the manifest derived from it) and the given plugin binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlakarPackage {
    ptar: PathBuf,
}

impl PlakarPackage {
    /// Stages `manifest.yaml` and the three executables in `dir` (emptied first) and runs
    /// `plakar pkg create ./manifest.yaml <version>` there (in a scratch home); for plakar 1.0,
    /// the derived manifest, with the version in it, and `plakar pkg create ./manifest.yaml`.
    pub async fn create(
        plakar: &Plakar,
        binaries: &PluginBinaries,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let manifest = workspace_root().join("manifest.yaml");
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let (text, create) = match plakar.line() {
            Line::V1_1 => (
                text,
                vec!["pkg", "create", "./manifest.yaml", PACKAGE_VERSION],
            ),
            Line::V1_0 => {
                let parsed = crate::manifest::parse_manifest(&text)?;
                let derived = crate::manifest::plakar_1_0_manifest(&parsed, PACKAGE_VERSION);
                (derived, vec!["pkg", "create", "./manifest.yaml"])
            }
        };
        std::fs::write(dir.join("manifest.yaml"), text)
            .with_context(|| format!("writing the manifest into {}", dir.display()))?;
        for executable in [&binaries.importer, &binaries.exporter, &binaries.storage] {
            let name = executable.file_name().context("executable name")?;
            let staged = dir.join(name);
            // A hard link costs nothing; a copy where the target is on another filesystem.
            if std::fs::hard_link(executable, &staged).is_err() {
                std::fs::copy(executable, &staged)
                    .with_context(|| format!("copying {}", executable.display()))?;
            }
        }
        let home = PlakarHome::bare(plakar).await?;
        let mut command = home.command(create);
        command.current_dir(dir);
        home.finish(command, COMMAND_TIMEOUT)
            .await?
            .success("plakar pkg create")?;
        let ptar = dir.join(format!(
            "koofr_{PACKAGE_VERSION}_{}_{}.ptar",
            std::env::consts::OS,
            go_arch()
        ));
        ensure!(
            ptar.is_file(),
            "plakar pkg create did not write {}",
            ptar.display()
        );
        Ok(PlakarPackage { ptar })
    }

    /// The package file.
    pub fn path(&self) -> &Path {
        &self.ptar
    }
}

/// Go's name for this machine's architecture (as in package file names).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}
