//! The phases of a backup and restore through the real plugin binaries, driven as Plakar does:
//! create the kloset (`Init` → `Create`), back up (importer `Import` + up to N concurrent `Open`s,
//! packing into packfiles put through a second storage process with a lock and a state),
//! restore (ranged `Get`s through a third storage process, one `Export` stream to the exporter),
//! verify, and the whole demo with its summary.

mod backup;
mod restore;
mod verify;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use kloset_plugin::Store;
use kloset_plugin::host::{InitArgs, PluginConnection, PluginHandle, RemoteStore};
use koofr_core::KoofrPath;

use crate::binaries::PluginBinaries;
use crate::pack::DEFAULT_PACKFILE_BYTES;
use crate::progress::Progress;
use crate::summary::{PhaseSummary, ProcessPeak, RunSummary, peak_rss_kib};
use crate::tree::{Manifest, TreeSpec, generate, seed};
use koofr_testkit::Site;

pub use backup::{BackupReport, backup};
pub use restore::{RestoreReport, reroot, restore};
pub use verify::{VerifyReport, compare_with_manifest, verify};

/// How the host drives the plugins.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// The plugin executables.
    pub binaries: PluginBinaries,
    /// Packfile target size.
    pub packfile_bytes: u64,
    /// Concurrent importer `Open`s (and packers).
    pub open_concurrency: usize,
    /// Export records whose results may be outstanding at once.
    pub export_in_flight: usize,
    /// Progress bars.
    pub progress: Progress,
}

impl PipelineOptions {
    /// Defaults: 16 MiB packfiles, 8 concurrent Opens, 16 export records in flight.
    pub fn new(binaries: PluginBinaries, progress: Progress) -> PipelineOptions {
        PipelineOptions {
            binaries,
            packfile_bytes: DEFAULT_PACKFILE_BYTES,
            open_concurrency: 8,
            export_in_flight: 16,
            progress,
        }
    }
}

/// The three folders of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    /// The backed-up tree.
    pub source: KoofrPath,
    /// The kloset.
    pub kloset: KoofrPath,
    /// Where the restore goes.
    pub restore: KoofrPath,
}

impl Locations {
    /// `source`, `kloset` and `restore` below the site's base folder.
    pub fn under(site: &Site) -> anyhow::Result<Locations> {
        Ok(Locations {
            source: site.path("source")?,
            kloset: site.path("kloset")?,
            restore: site.path("restore")?,
        })
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The opaque kloset configuration the host stores with `Create`.
pub fn kloset_config(packfile_bytes: u64) -> Vec<u8> {
    serde_json::json!({
        "kloset": "koofr-e2e",
        "version": 1,
        "hashing": "SHA256",
        "packfile_bytes": packfile_bytes,
        "created_ms": now_ms(),
    })
    .to_string()
    .into_bytes()
}

/// Starts a plugin binary with no arguments, as Plakar does.
pub async fn spawn_plugin(program: &std::path::Path) -> anyhow::Result<PluginConnection> {
    PluginConnection::spawn(program, std::iter::empty::<&str>())
        .await
        .with_context(|| format!("starting {}", program.display()))
}

pub(crate) async fn start_store(
    site: &Site,
    options: &PipelineOptions,
    kloset: &KoofrPath,
) -> anyhow::Result<RemoteStore> {
    let connection = spawn_plugin(&options.binaries.storage).await?;
    RemoteStore::init(
        connection,
        &InitArgs::new("koofr", site.plugin_config(kloset)),
    )
    .await
    .context("storage Init")
}

/// Reads the plugin's peak memory and CPU time, closes its input and checks it exits with
/// status 0.
pub async fn end_process(role: &str, plugin: &PluginHandle) -> anyhow::Result<ProcessPeak> {
    let pid = plugin.pid();
    let peak_kib = pid.and_then(peak_rss_kib);
    let cpu = pid.and_then(crate::summary::cpu_time);
    let exit_code = plugin
        .shutdown()
        .await
        .with_context(|| format!("{role}: shutting the plugin down"))?;
    ensure!(
        exit_code == 0,
        "{role}: plugin exited with status {exit_code} after EOF"
    );
    Ok(ProcessPeak {
        role: role.to_owned(),
        pid,
        peak_kib,
        cpu,
        exit_code: Some(exit_code),
    })
}

/// `Init` → `Create(config)` in one storage process, no `Close` (as `plakar create`).
pub async fn create_kloset(
    site: &Site,
    options: &PipelineOptions,
    kloset: &KoofrPath,
    config: &[u8],
) -> anyhow::Result<ProcessPeak> {
    let store = start_store(site, options, kloset).await?;
    store
        .create(bytes::Bytes::copy_from_slice(config))
        .await
        .with_context(|| format!("storage Create at {kloset}"))?;
    end_process("storage (create)", store.plugin()).await
}

/// Everything a demo run produced.
#[derive(Debug, Clone)]
pub struct DemoRun {
    /// The printed summary.
    pub summary: RunSummary,
    /// Where things went.
    pub locations: Locations,
    /// The seeded tree's expected state.
    pub manifest: Manifest,
    /// The first backup.
    pub backup: BackupReport,
    /// The restore.
    pub restore: RestoreReport,
    /// The verification.
    pub verify: VerifyReport,
    /// The second backup of the unchanged tree (incremental).
    pub rescan: BackupReport,
}

fn fail_on_records(phase: &str, failures: &[(String, String)]) -> anyhow::Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = failures
        .iter()
        .take(10)
        .map(|(path, err)| format!("{path}: {err}"))
        .collect();
    bail!(
        "{phase}: {} record(s) failed: {}",
        failures.len(),
        shown.join("; ")
    )
}

/// The phase `seed`: `spec`'s tree generated and written into the source folder; its manifest.
pub(crate) async fn seed_phase(
    site: &Site,
    locations: &Locations,
    spec: &TreeSpec,
    progress: &Progress,
) -> anyhow::Result<(Manifest, PhaseSummary)> {
    let tree = generate(spec);
    site.clear_requests();
    let t = Instant::now();
    let manifest = seed(site, &locations.source, &tree, progress)
        .await
        .context("phase seed")?;
    let (files, bytes) = (manifest.files.len() as u64, manifest.total_bytes());
    let phase = PhaseSummary::ended(site, "seed", files, bytes, t);
    Ok((manifest, phase))
}

/// Seeds `spec` on the site, then create → backup → restore → verify → backup again, timing
/// each phase and recording its requests; fails (naming the phase and the file) on any problem.
pub async fn run_demo(
    site: &Site,
    spec: &TreeSpec,
    options: &PipelineOptions,
) -> anyhow::Result<DemoRun> {
    let started = Instant::now();
    let locations = Locations::under(site)?;
    let mut phases = Vec::new();
    let mut processes = Vec::new();
    let phase = |name, files, bytes, since| PhaseSummary::ended(site, name, files, bytes, since);

    let (manifest, seeded) = seed_phase(site, &locations, spec, &options.progress).await?;
    phases.push(seeded);

    let t = Instant::now();
    let config = kloset_config(options.packfile_bytes);
    processes.push(
        create_kloset(site, options, &locations.kloset, &config)
            .await
            .context("phase create")?,
    );
    phases.push(phase("create", 0, 0, t));

    let t = Instant::now();
    let backup = backup(
        site,
        options,
        &locations,
        &config,
        None,
        manifest.total_bytes(),
    )
    .await
    .context("phase backup")?;
    fail_on_records("phase backup", &backup.failures)?;
    processes.extend(backup.processes.iter().cloned());
    phases.push(phase("backup", backup.opened, backup.bytes_read, t));

    let t = Instant::now();
    let restored = restore(site, options, &locations, &config, backup.state_mac)
        .await
        .context("phase restore")?;
    fail_on_records("phase restore", &restored.failures)?;
    processes.extend(restored.processes.iter().cloned());
    phases.push(phase("restore", restored.files, restored.bytes, t));

    let t = Instant::now();
    let verified = verify(site, &locations, &manifest, &backup.snapshot)
        .await
        .context("phase verify")?;
    phases.push(phase("verify", verified.files, verified.bytes, t));

    let t = Instant::now();
    let rescan = self::backup(
        site,
        options,
        &locations,
        &config,
        Some(&backup.snapshot),
        manifest.total_bytes(),
    )
    .await
    .context("phase rescan (incremental backup)")?;
    fail_on_records("phase rescan", &rescan.failures)?;
    processes.extend(rescan.processes.iter().map(|p| ProcessPeak {
        role: format!("{} (rescan)", p.role.replace(" (backup)", "")),
        ..p.clone()
    }));
    phases.push(phase("rescan", rescan.opened, rescan.bytes_read, t));

    let facts = vec![
        ("tree".to_owned(), manifest.describe(spec.seed)),
        (
            "backup".to_owned(),
            format!(
                "{} records ({} files, {} dirs), {} opened, {} packfiles ({:.1} MiB), {} puts, 0 failed",
                backup.records,
                backup.files,
                backup.dirs,
                backup.opened,
                backup.packfiles,
                backup.packfile_bytes as f64 / 1048576.0,
                backup.puts
            ),
        ),
        (
            "restore".to_owned(),
            format!(
                "{} records, {} results ok, {} failed, {} ranged gets",
                restored.records,
                restored.results_ok,
                restored.failures.len(),
                restored.ranged_gets
            ),
        ),
        (
            "verify".to_owned(),
            format!(
                "restored tree equals the original: {} files, {} folders (names, sizes, MD5, mtimes)",
                verified.files, verified.folders
            ),
        ),
        (
            "rescan".to_owned(),
            format!(
                "{} records, {} files unchanged and not opened, {} opened",
                rescan.records, rescan.reused, rescan.opened
            ),
        ),
    ];
    let summary = RunSummary {
        backend: site.backend_name(),
        phases,
        processes,
        facts,
        total: started.elapsed(),
    };
    Ok(DemoRun {
        summary,
        locations,
        manifest,
        backup,
        restore: restored,
        verify: verified,
        rescan,
    })
}
