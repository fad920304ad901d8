//! Scenarios 7–9: the release plugins driven by a real plakar v1.1.x, at its default
//! `-concurrency` (what users run) and at `-concurrency 16`, against baselines measured in the
//! same run: `rclone copy` through rclone's Koofr backend (the engine of Plakar's current Koofr
//! integration) and the same plakar commands on a local filesystem kloset.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use koofr_core::KoofrPath;
use koofr_e2e::plakar::{Plakar, PlakarOutput, PlakarPackage, PluginProcess};
use koofr_e2e::plakar_demo::{Entry, PlakarSite, backup_id};
use koofr_e2e::{EmulatorOptions, Site};
use koofr_emulator::{Emulator, RequestRecord};

use super::report::{Baseline, Check, Row};
use super::scenarios::{Bench, describe, pattern};

/// The `-concurrency` settings measured: plakar's default (CPUs − 1) and 16.
const CONCURRENCIES: [Option<u32>; 2] = [None, Some(16)];
/// Modification time of every seeded file.
const SEED_MTIME_MS: i64 = 1_700_000_000_000;

/// What the real-plakar scenarios share: the plakar, the package of the release plugins, and
/// rclone (when installed).
#[derive(Debug)]
pub struct PlakarBench {
    plakar: Plakar,
    package: PlakarPackage,
    rclone: Option<PathBuf>,
}

impl PlakarBench {
    /// Finds plakar (required) and rclone (its baselines are left out, with the reason printed,
    /// when it is missing) and builds the package.
    pub async fn prepare(bench: &Bench) -> anyhow::Result<PlakarBench> {
        let plakar = Plakar::find()?.context(
            "scenarios 7-9 need a plakar v1.1.x: set $PLAKAR or put one on PATH \
             (e.g. PATH=$PWD/../shared/tools/plakar:$PATH)",
        )?;
        let rclone = koofr_e2e::plakar::find_on_path("rclone");
        if rclone.is_none() {
            eprintln!(
                "rclone is not installed: the rclone baselines are left out \
                 (`apt-get install rclone` adds them)"
            );
        }
        let dir = koofr_e2e::binaries::target_directory()?.join("bench/plakar-package");
        let package = PlakarPackage::create(&plakar, &bench.binaries, &dir).await?;
        Ok(PlakarBench {
            plakar,
            package,
            rclone,
        })
    }
}

/// The global flags for one concurrency setting.
fn global(concurrency: Option<u32>) -> Vec<String> {
    concurrency
        .map(|n| vec!["-concurrency".to_owned(), n.to_string()])
        .unwrap_or_default()
}

fn setting(concurrency: Option<u32>) -> String {
    concurrency.map_or_else(
        || "default -concurrency".to_owned(),
        |n| format!("-concurrency {n}"),
    )
}

/// One plakar command timed, with the plugin processes it ran and the requests it made.
struct Measured {
    output: PlakarOutput,
    plugins: Vec<PluginProcess>,
    log: Vec<RequestRecord>,
}

impl Measured {
    fn time(&self) -> Duration {
        self.output.elapsed
    }

    /// The highest peak RSS among the plugin processes, KiB.
    fn peak_kib(&self) -> Option<u64> {
        self.plugins.iter().map(|p| p.peak_kib).max()
    }

    /// CPU time of every plugin process together.
    fn plugin_cpu(&self) -> Option<Duration> {
        (!self.plugins.is_empty()).then(|| self.plugins.iter().map(|p| p.cpu).sum())
    }
}

async fn measure(run: &PlakarSite<'_>, args: &[String]) -> anyhow::Result<Measured> {
    run.site.clear_requests();
    let watch = run.home.watch_plugins();
    let output = run.home.run_ok(args).await;
    let plugins = watch.finish();
    let log = run.site.requests();
    Ok(Measured {
        output: output?,
        plugins,
        log,
    })
}

fn args(global: &[String], rest: &[&str]) -> Vec<String> {
    global
        .iter()
        .cloned()
        .chain(rest.iter().map(|s| (*s).to_owned()))
        .collect()
}

fn emulator(site: &Site) -> anyhow::Result<&Emulator> {
    site.emulator()
        .context("the bench runs on the in-process emulator only")
}

/// Seeds `count` files of `size` bytes (in folders of 100) below `root` on the emulator.
fn seed_koofr(emu: &Emulator, root: &KoofrPath, count: usize, size: usize) {
    let base = pattern();
    for i in 0..count {
        let start = (i * 4099) % (base.len() - size);
        emu.put_file(
            &format!("{root}/d{:02}/f{i:05}.bin", i / 100),
            base.slice(start..start + size),
            SEED_MTIME_MS + i as i64,
        );
    }
}

/// Writes the same files below the local folder `root`, plus one large file if asked.
fn seed_local(root: &Path, count: usize, size: usize, large: u64) -> anyhow::Result<u64> {
    let base = pattern();
    let mut total = 0;
    for i in 0..count {
        let dir = root.join(format!("d{:02}", i / 100));
        std::fs::create_dir_all(&dir)?;
        let start = (i * 4099) % (base.len() - size);
        std::fs::write(dir.join(format!("f{i:05}.bin")), &base[start..start + size])?;
        total += size as u64;
    }
    if large > 0 {
        use std::io::Write;
        let mut file = std::fs::File::create(root.join("large.bin"))?;
        let mut left = large;
        while left > 0 {
            let take = left.min(base.len() as u64) as usize;
            file.write_all(&base[..take])?;
            left -= take as u64;
        }
        total += large;
    }
    Ok(total)
}

/// Files and bytes below a local folder.
fn local_size(root: &Path) -> anyhow::Result<(usize, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    Ok((files, bytes))
}

/// An rclone config with one Koofr remote, `emu`, on the emulator (`provider = other`).
fn rclone_config(rclone: &Path, emu: &Emulator, dir: &Path) -> anyhow::Result<PathBuf> {
    let obscured = std::process::Command::new(rclone)
        .args(["obscure", emu.password()])
        .output()
        .context("running `rclone obscure`")?;
    ensure!(obscured.status.success(), "`rclone obscure` failed");
    let config = dir.join("rclone.conf");
    std::fs::write(
        &config,
        format!(
            "[emu]\ntype = koofr\nprovider = other\nendpoint = {}\nuser = {}\npassword = {}\n",
            emu.endpoint(),
            emu.email(),
            String::from_utf8_lossy(&obscured.stdout).trim()
        ),
    )?;
    Ok(config)
}

/// `rclone copy FROM TO` with its defaults (4 transfers, 8 checkers); its wall time.
async fn rclone_copy(
    rclone: &Path,
    config: &Path,
    from: &str,
    to: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = tokio::process::Command::new(rclone)
        .arg("--config")
        .arg(config)
        .args(["copy", from, to])
        .stdin(Stdio::null())
        .output()
        .await
        .context("running rclone")?;
    ensure!(
        output.status.success(),
        "rclone copy {from} {to} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(started.elapsed())
}

fn ratio_check(target: &str, ratio: Option<f64>, at_least: f64) -> Check {
    Check {
        target: target.to_owned(),
        met: ratio.is_some_and(|r| r >= at_least),
    }
}

fn speedup(baseline: Duration, ours: Duration) -> f64 {
    baseline.as_secs_f64() / ours.as_secs_f64().max(1e-9)
}

async fn start_site(bench: &Bench) -> anyhow::Result<Site> {
    Site::start_emulator(EmulatorOptions {
        latency: bench.latency,
        on_disk: false,
    })
    .await
}

fn scratch(name: &str) -> anyhow::Result<tempfile::TempDir> {
    let root = koofr_e2e::binaries::target_directory()?.join("bench/scratch");
    std::fs::create_dir_all(&root)?;
    Ok(tempfile::Builder::new().prefix(name).tempdir_in(root)?)
}

/// Scenario 7: back up a Koofr folder (2000 × 16 KiB) into a local kloset; baseline `rclone copy` of
/// the same folder to a local folder.
pub async fn backup_from_koofr(bench: &Bench, tools: &PlakarBench) -> anyhow::Result<Vec<Row>> {
    let (files, size) = (bench.sizes.small_files, bench.sizes.small_file_bytes);
    eprintln!("[7] backup from Koofr: {files} files of {} KiB", size >> 10);
    let site = start_site(bench).await?;
    let emu = emulator(&site)?;
    let source = site.path("source")?;
    seed_koofr(emu, &source, files, size);
    let local = scratch("backup-")?;
    let rclone_time = match &tools.rclone {
        Some(rclone) => {
            let config = rclone_config(rclone, emu, local.path())?;
            let target = local.path().join("rclone-copy");
            let time = rclone_copy(
                rclone,
                &config,
                &format!("emu:{source}"),
                &target.display().to_string(),
            )
            .await?;
            ensure!(
                local_size(&target)?.0 == files,
                "rclone copied a partial tree"
            );
            Some(time)
        }
        None => None,
    };
    let run = PlakarSite::start(&site, &tools.plakar, &tools.package).await?;
    run.add_entry(Entry::Source, "docs", &source, &[]).await?;
    let mut rows = Vec::new();
    for concurrency in CONCURRENCIES {
        let kloset = local
            .path()
            .join(format!("kloset-{}", setting(concurrency)));
        let kloset = kloset.display().to_string();
        run.ok(&["at", &kloset, "create", "-plaintext"]).await?;
        let g = global(concurrency);
        eprintln!("[7] plakar backup @docs, {}", setting(concurrency));
        let measured = measure(&run, &args(&g, &["at", &kloset, "backup", "@docs"])).await?;
        backup_id(&measured.output)?;
        let gets = measured
            .log
            .iter()
            .filter(|r| r.endpoint == "files/get")
            .count();
        let ratio = rclone_time.map(|t| speedup(t, measured.time()));
        let mut checks = Vec::new();
        if concurrency.is_none() {
            checks.push(ratio_check("≥ 1.5x rclone copy", ratio, 1.5));
        }
        checks.push(Check {
            target: "peak RSS ≤ 64 MiB".to_owned(),
            met: measured.peak_kib().is_some_and(|k| k <= 64 * 1024),
        });
        rows.push(Row {
            scenario: 7,
            operation: format!(
                "plakar backup of {files} × {} KiB from Koofr, {}",
                size >> 10,
                setting(concurrency)
            ),
            ours: measured.time(),
            naive: None,
            limit: rclone_time.map(|time| Baseline {
                label: "rclone copy Koofr → local, its defaults".to_owned(),
                time,
            }),
            requests: format!(
                "{} ({:.2} files/get per file)",
                describe(&measured.log),
                gets as f64 / files as f64
            ),
            peak_rss_kib: measured.peak_kib(),
            plugin_cpu: measured.plugin_cpu(),
            checks,
        });
    }
    Ok(rows)
}

/// Scenario 8: restore 2000 × 16 KiB from a local kloset into Koofr; baseline `rclone copy` of the same
/// local folder up to Koofr.
pub async fn restore_into_koofr(bench: &Bench, tools: &PlakarBench) -> anyhow::Result<Vec<Row>> {
    let (files, size) = (bench.sizes.small_files, bench.sizes.small_file_bytes);
    eprintln!(
        "[8] restore into Koofr: {files} files of {} KiB",
        size >> 10
    );
    let site = start_site(bench).await?;
    let emu = emulator(&site)?;
    let local = scratch("restore-")?;
    let tree = local.path().join("tree");
    seed_local(&tree, files, size, 0)?;
    let rclone_time = match &tools.rclone {
        Some(rclone) => {
            let config = rclone_config(rclone, emu, local.path())?;
            let target = site.path("rclone-up")?;
            let time = rclone_copy(
                rclone,
                &config,
                &tree.display().to_string(),
                &format!("emu:{target}"),
            )
            .await?;
            let copied = emu
                .walk(target.as_str())
                .iter()
                .filter(|(_, i)| !i.is_dir)
                .count();
            ensure!(copied == files, "rclone copied {copied} of {files} files");
            Some(time)
        }
        None => None,
    };
    let run = PlakarSite::start(&site, &tools.plakar, &tools.package).await?;
    let kloset = local.path().join("kloset").display().to_string();
    run.ok(&["at", &kloset, "create", "-plaintext"]).await?;
    let id = backup_id(
        &run.ok(&["at", &kloset, "backup", &tree.display().to_string()])
            .await?,
    )?;
    let mut rows = Vec::new();
    for concurrency in CONCURRENCIES {
        let target = site.path(&format!("restored-{}", concurrency.unwrap_or(0)))?;
        let name = format!("out{}", concurrency.unwrap_or(0));
        run.add_entry(Entry::Destination, &name, &target, &[])
            .await?;
        let g = global(concurrency);
        eprintln!("[8] plakar restore -to @{name}, {}", setting(concurrency));
        let to = format!("@{name}");
        let measured = measure(
            &run,
            &args(&g, &["at", &kloset, "restore", "-to", &to, &id]),
        )
        .await?;
        let restored = emu
            .walk(target.as_str())
            .iter()
            .filter(|(_, i)| !i.is_dir)
            .count();
        ensure!(
            restored == files,
            "plakar restored {restored} of {files} files"
        );
        let puts = measured
            .log
            .iter()
            .filter(|r| r.endpoint == "files/put")
            .count();
        rows.push(Row {
            scenario: 8,
            operation: format!(
                "plakar restore of {files} × {} KiB into Koofr, {}",
                size >> 10,
                setting(concurrency)
            ),
            ours: measured.time(),
            naive: None,
            limit: rclone_time.map(|time| Baseline {
                label: "rclone copy local → Koofr, its defaults".to_owned(),
                time,
            }),
            requests: format!(
                "{} ({:.2} files/put per file)",
                describe(&measured.log),
                puts as f64 / files as f64
            ),
            peak_rss_kib: measured.peak_kib(),
            plugin_cpu: measured.plugin_cpu(),
            checks: vec![Check {
                target: "peak RSS ≤ 64 MiB".to_owned(),
                met: measured.peak_kib().is_some_and(|k| k <= 64 * 1024),
            }],
        });
    }
    Ok(rows)
}

/// Scenario 9, a kloset on Koofr: back up 2000 × 16 KiB + one large file into it, restore from it and
/// `check` it; baseline the same commands on a local filesystem kloset.
pub async fn kloset_on_koofr(bench: &Bench, tools: &PlakarBench) -> anyhow::Result<Vec<Row>> {
    let (files, size) = (bench.sizes.small_files, bench.sizes.small_file_bytes);
    let large = bench.sizes.large_file_bytes.min(64 << 20);
    eprintln!(
        "[9] kloset on Koofr: {files} files of {} KiB and one of {} MiB",
        size >> 10,
        large >> 20
    );
    let site = start_site(bench).await?;
    let local = scratch("kloset-")?;
    let tree = local.path().join("tree");
    let total = seed_local(&tree, files, size, large)?;
    let tree = tree.display().to_string();
    let run = PlakarSite::start(&site, &tools.plakar, &tools.package).await?;
    let mut rows = Vec::new();
    for concurrency in CONCURRENCIES {
        let g = global(concurrency);
        let n = concurrency.unwrap_or(0);
        let name = format!("kloset{n}");
        run.add_entry(Entry::Store, &name, &site.path(&name)?, &[])
            .await?;
        let koofr = format!("@{name}");
        let disk = local
            .path()
            .join(format!("local-kloset-{n}"))
            .display()
            .to_string();
        let mut times = Vec::new();
        for kloset in [koofr.as_str(), disk.as_str()] {
            run.ok(&["at", kloset, "create", "-plaintext"]).await?;
            eprintln!(
                "[9] {kloset}: backup, restore, check, {}",
                setting(concurrency)
            );
            let backup = measure(&run, &args(&g, &["at", kloset, "backup", &tree])).await?;
            let id = backup_id(&backup.output)?;
            let out = local.path().join(format!("out-{n}-{}", times.len()));
            let out = out.display().to_string();
            let restore = measure(
                &run,
                &args(&g, &["at", kloset, "restore", "-to", &out, &id]),
            )
            .await?;
            let restored = local_size(Path::new(&out))?;
            ensure!(
                restored == (files + usize::from(large > 0), total),
                "{kloset}: restored {restored:?}, expected {} files and {total} bytes",
                files + usize::from(large > 0)
            );
            let check = measure(&run, &args(&g, &["at", kloset, "check"])).await?;
            times.push([backup, restore, check]);
        }
        let [koofr_ops, disk_ops] = [&times[0], &times[1]];
        for (index, (operation, target)) in [
            ("backup into", None),
            (
                "restore from",
                Some(("≤ 1.5x the local kloset's time", 1.0 / 1.5)),
            ),
            ("check of", Some(("≤ 2x the local kloset's time", 0.5))),
        ]
        .into_iter()
        .enumerate()
        {
            let (ours, base) = (&koofr_ops[index], &disk_ops[index]);
            let ratio = Some(speedup(base.time(), ours.time()));
            let mut checks = Vec::new();
            if let Some((label, at_least)) = target.filter(|_| concurrency.is_none()) {
                checks.push(ratio_check(label, ratio, at_least));
            }
            checks.push(Check {
                target: "peak RSS ≤ 64 MiB".to_owned(),
                met: ours.peak_kib().is_some_and(|k| k <= 64 * 1024),
            });
            let gets = ours
                .log
                .iter()
                .filter(|r| r.endpoint == "files/get")
                .count();
            rows.push(Row {
                scenario: 9,
                operation: format!(
                    "plakar {operation} a Koofr kloset ({files} × {} KiB + {} MiB), {}",
                    size >> 10,
                    large >> 20,
                    setting(concurrency)
                ),
                ours: ours.time(),
                naive: None,
                limit: Some(Baseline {
                    label: "the same on a local filesystem kloset".to_owned(),
                    time: base.time(),
                }),
                requests: if gets > 0 {
                    format!("{} ({gets} files/get)", describe(&ours.log))
                } else {
                    describe(&ours.log)
                },
                peak_rss_kib: ours.peak_kib(),
                plugin_cpu: ours.plugin_cpu(),
                checks,
            });
        }
    }
    Ok(rows)
}
