//! The demo's story through real plakar commands: Koofr entries in an isolated plakar home, a
//! kloset on Koofr, a backup of a seeded Koofr folder, `check`, a restore into Koofr, the
//! verification and an incremental rescan, with requests per phase and plugin peak memory.

use std::time::Instant;

use anyhow::{Context, bail, ensure};
use koofr_core::KoofrPath;

use crate::pipeline::{Locations, VerifyReport, compare_with_manifest, seed_phase};
use crate::plakar::{Plakar, PlakarHome, PlakarOutput, PlakarPackage, PluginWatch};
use crate::progress::Progress;
use crate::summary::{PhaseSummary, ProcessPeak, RunSummary};
use crate::tree::{Manifest, TreeSpec};
use koofr_testkit::Site;
use koofr_testkit::count_below;

/// The passphrase of the klosets the harness creates.
pub const PASSPHRASE: &str = "koofr-e2e passphrase";

/// The three kinds of Plakar entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `plakar store add` (a kloset).
    Store,
    /// `plakar source add` (a backup source).
    Source,
    /// `plakar destination add` (a restore target).
    Destination,
}

impl Entry {
    /// The plakar sub-command.
    pub fn command(self) -> &'static str {
        match self {
            Entry::Store => "store",
            Entry::Source => "source",
            Entry::Destination => "destination",
        }
    }
}

/// A plakar home on a site: named Koofr entries and the commands run on them.
#[derive(Debug)]
pub struct PlakarSite<'a> {
    /// Where the Koofr side lives.
    pub site: &'a Site,
    /// The isolated plakar home (with `PLAKAR_PASSPHRASE` set).
    pub home: PlakarHome,
}

impl<'a> PlakarSite<'a> {
    /// A fresh home with the package installed.
    pub async fn start(
        site: &'a Site,
        plakar: &Plakar,
        package: &PlakarPackage,
    ) -> anyhow::Result<PlakarSite<'a>> {
        let mut home = PlakarHome::new(plakar, package).await?;
        home.set_env("PLAKAR_PASSPHRASE", PASSPHRASE);
        Ok(PlakarSite { site, home })
    }

    /// `plakar <kind> add <name> koofr://<location> <account keys> <extra>`, the keys of the
    /// user guide: location, endpoint, username, password (and the retry settings).
    pub async fn add_entry(
        &self,
        kind: Entry,
        name: &str,
        location: &KoofrPath,
        extra: &[&str],
    ) -> anyhow::Result<()> {
        let mut args = vec![
            kind.command().to_owned(),
            "add".to_owned(),
            name.to_owned(),
            format!("koofr://{location}"),
        ];
        args.extend(self.site.entry_args());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        self.home.run_ok(&args).await?;
        Ok(())
    }

    /// Runs plakar and fails (with its output) unless it exits 0.
    pub async fn ok(&self, args: &[&str]) -> anyhow::Result<PlakarOutput> {
        self.home.run_ok(args).await
    }

    /// `plakar at <kloset> backup <what>`; the short id of the snapshot written. Fails unless
    /// plakar exits 0 and reports the backup "completed without errors".
    pub async fn backup(&self, kloset: &str, what: &str) -> anyhow::Result<String> {
        let output = self.ok(&["at", kloset, "backup", what]).await?;
        backup_id(&output)
    }

    /// The snapshot ids of `kloset` (`plakar at <kloset> ls`), newest first.
    pub async fn snapshots(&self, kloset: &str) -> anyhow::Result<Vec<String>> {
        let output = self.ok(&["at", kloset, "ls"]).await?;
        Ok(output
            .stdout_text()
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1).map(str::to_owned))
            .collect())
    }
}

/// The short snapshot id from a backup's output (`<id>: backup completed without errors …`;
/// plakar 1.0: `info: backup: created unsigned snapshot <id> of size …`, and a `KO ✘` line for
/// every error).
pub fn backup_id(output: &PlakarOutput) -> anyhow::Result<String> {
    let text = output.text();
    if let Some(created) = text
        .lines()
        .find_map(|l| l.split("backup: created ").nth(1))
    {
        let failed: Vec<&str> = text.lines().filter(|l| l.contains("KO ✘")).collect();
        ensure!(
            failed.is_empty(),
            "the backup had errors: {failed:?}\n{text}"
        );
        let id = created.split_whitespace().nth(2);
        return id
            .map(str::to_owned)
            .with_context(|| format!("no snapshot id in {created:?}"));
    }
    let line = text
        .lines()
        .find(|l| l.contains(": backup completed"))
        .with_context(|| format!("no `backup completed` line in:\n{text}"))?;
    ensure!(
        line.contains("without errors"),
        "the backup had errors: {line}\n{text}"
    );
    Ok(line.split(':').next().unwrap_or_default().trim().to_owned())
}

/// What the demo through plakar produced.
#[derive(Debug, Clone)]
pub struct PlakarDemoRun {
    /// The printed summary.
    pub summary: RunSummary,
    /// Where things went.
    pub locations: Locations,
    /// The seeded tree's expected state.
    pub manifest: Manifest,
    /// The first snapshot and the rescan's.
    pub snapshots: [String; 2],
    /// The verification.
    pub verify: VerifyReport,
}

/// Seeds `spec` on the site, then with real plakar commands: create a kloset on Koofr, back the
/// seeded Koofr folder up, check, restore into Koofr, verify, and back up again (the unchanged
/// tree must be read with zero downloads); times each phase, records its requests and the
/// plugin processes' peak memory.
pub async fn run_plakar_demo(
    site: &Site,
    spec: &TreeSpec,
    plakar: &Plakar,
    package: &PlakarPackage,
    progress: &Progress,
) -> anyhow::Result<PlakarDemoRun> {
    let started = Instant::now();
    let locations = Locations::under(site)?;
    let mut log = PhaseLog::default();
    let (manifest, seeded) = seed_phase(site, &locations, spec, progress).await?;
    let (files, bytes) = (seeded.files, seeded.bytes);
    log.phases.push(seeded);

    let run = PlakarSite::start(site, plakar, package)
        .await
        .context("phase install (plakar pkg add)")?;
    run.add_entry(Entry::Store, "kloset", &locations.kloset, &[])
        .await?;
    run.add_entry(Entry::Source, "tree", &locations.source, &[])
        .await?;
    run.add_entry(Entry::Destination, "restored", &locations.restore, &[])
        .await?;
    site.clear_requests();

    log.step(&run, "create", &["at", "@kloset", "create"], 0, 0)
        .await?;
    let backup = ["at", "@kloset", "backup", "@tree"];
    let first = backup_id(&log.step(&run, "backup", &backup, files, bytes).await?)?;
    log.step(&run, "check", &["at", "@kloset", "check"], files, bytes)
        .await?;
    let restore = [
        "at",
        "@kloset",
        "restore",
        "-to",
        "@restored",
        first.as_str(),
    ];
    log.step(&run, "restore", &restore, files, bytes).await?;

    let t = Instant::now();
    let verify = verify_restore(site, &locations, &manifest)
        .await
        .context("phase verify")?;
    let verified = PhaseSummary::ended(site, "verify", verify.files, verify.bytes, t);
    log.phases.push(verified);

    let rescan = backup_id(&log.step(&run, "rescan", &backup, 0, 0).await?)?;
    let downloads = log.phases.last().map_or(0, |p| {
        count_below(&p.requests, "files/get", locations.source.as_str())
    });
    if !site.is_live() && downloads != 0 {
        bail!("phase rescan: the unchanged tree cost {downloads} downloads instead of 0");
    }

    let facts = vec![
        (
            "host".to_owned(),
            format!(
                "plakar {} ({})",
                plakar.version(),
                plakar.program().display()
            ),
        ),
        ("tree".to_owned(), manifest.describe(spec.seed)),
        (
            "snapshots".to_owned(),
            format!("{first} (backup), {rescan} (rescan)"),
        ),
        (
            "verify".to_owned(),
            format!(
                "restored tree equals the original: {} files, {} folders (names, sizes, MD5, mtimes)",
                verify.files, verify.folders
            ),
        ),
        (
            "rescan".to_owned(),
            format!("unchanged tree backed up again with {downloads} downloads"),
        ),
    ];
    let summary = RunSummary {
        backend: site.backend_name(),
        phases: log.phases,
        processes: log.processes,
        facts,
        total: started.elapsed(),
    };
    Ok(PlakarDemoRun {
        summary,
        locations,
        manifest,
        snapshots: [first, rescan],
        verify,
    })
}

/// The phases of a run and the plugin processes each ran.
#[derive(Debug, Default)]
struct PhaseLog {
    phases: Vec<PhaseSummary>,
    processes: Vec<ProcessPeak>,
}

impl PhaseLog {
    /// Runs one plakar command as the phase `name`, watching its plugins.
    async fn step(
        &mut self,
        run: &PlakarSite<'_>,
        name: &'static str,
        args: &[&str],
        files: u64,
        bytes: u64,
    ) -> anyhow::Result<PlakarOutput> {
        let t = Instant::now();
        let watch = run.home.watch_plugins();
        let output = run.ok(args).await.with_context(|| format!("phase {name}"));
        self.processes.extend(peaks(name, watch));
        self.phases
            .push(PhaseSummary::ended(run.site, name, files, bytes, t));
        output
    }
}

/// The plugin processes a phase ran, as summary rows.
fn peaks(phase: &str, watch: PluginWatch) -> Vec<ProcessPeak> {
    watch
        .finish()
        .into_iter()
        .map(|p| ProcessPeak {
            role: format!("{} ({phase})", p.executable),
            pid: Some(p.pid),
            peak_kib: Some(p.peak_kib),
            cpu: Some(p.cpu),
            exit_code: None,
        })
        .collect()
}

/// Checks that the source and the restored folder both equal the manifest.
pub async fn verify_restore(
    site: &Site,
    locations: &Locations,
    manifest: &Manifest,
) -> anyhow::Result<VerifyReport> {
    for (what, dir) in [
        ("source", &locations.source),
        ("restored tree", &locations.restore),
    ] {
        let problems = compare_with_manifest(&site.walk(dir).await?, manifest);
        ensure!(
            problems.is_empty(),
            "{what} differs from the seeded tree in {} place(s), first: {}",
            problems.len(),
            problems
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(VerifyReport {
        files: manifest.files.len() as u64,
        folders: manifest.folders.len() as u64,
        bytes: manifest.total_bytes(),
    })
}
