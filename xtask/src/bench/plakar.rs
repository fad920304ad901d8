//! What the real-plakar scenarios (7-10) share: the plakar, the package of the release
//! plugins, rclone (the engine of Plakar's current Koofr integration) and its config, timed
//! plakar commands with the plugin processes they ran, and local trees.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use koofr_e2e::plakar::{Line, Plakar, PlakarOutput, PlakarPackage, PluginProcess};
use koofr_e2e::plakar_demo::PlakarSite;
use koofr_emulator::{Emulator, RequestRecord};

use crate::bench::report::{Baseline, Check};
use crate::bench::scenarios::{Bench, pattern};

/// The `-concurrency` settings measured: plakar's default (CPUs − 1) and 16.
pub(crate) const CONCURRENCIES: [Option<u32>; 2] = [None, Some(16)];

/// What the real-plakar scenarios share: the plakar, the package of the release plugins, and
/// rclone (when installed).
#[derive(Debug)]
pub(crate) struct PlakarBench {
    pub(crate) plakar: Plakar,
    pub(crate) package: PlakarPackage,
    pub(crate) rclone: Option<PathBuf>,
}

impl PlakarBench {
    /// Finds a plakar of `line` (required) and rclone (its baselines are left out, with the
    /// reason printed, when it is missing) and builds the package for that line.
    pub(crate) async fn prepare(bench: &Bench, line: Line) -> anyhow::Result<PlakarBench> {
        let plakar = Plakar::find_line(line)?.with_context(|| match line {
            Line::V1_1 => {
                "scenarios 7-9 need a plakar v1.1.x: set $PLAKAR or put one on PATH \
                           (e.g. PATH=$PWD/../shared/tools/plakar:$PATH)"
            }
            Line::V1_0 => {
                "scenario 10 needs a plakar v1.0.x: set $PLAKAR_1_0 or put one on \
                           PATH as plakar-1.0 (e.g. PATH=$PWD/../shared/tools/plakar-1.0:$PATH)"
            }
        })?;
        let rclone = koofr_e2e::plakar::find_on_path("rclone");
        if rclone.is_none() {
            eprintln!(
                "rclone is not installed: the rclone baselines are left out \
                 (`apt-get install rclone` adds them)"
            );
        }
        let dir = koofr_e2e::binaries::target_directory()?.join(match line {
            Line::V1_1 => "bench/plakar-package",
            Line::V1_0 => "bench/plakar-1.0-package",
        });
        let package = PlakarPackage::create(&plakar, &bench.binaries, &dir).await?;
        Ok(PlakarBench {
            plakar,
            package,
            rclone,
        })
    }
}

/// The global flags for one concurrency setting.
pub(crate) fn global(concurrency: Option<u32>) -> Vec<String> {
    concurrency
        .map(|n| vec!["-concurrency".to_owned(), n.to_string()])
        .unwrap_or_default()
}

pub(crate) fn setting(concurrency: Option<u32>) -> String {
    concurrency.map_or_else(
        || "default -concurrency".to_owned(),
        |n| format!("-concurrency {n}"),
    )
}

/// One plakar command timed, with the plugin processes it ran and the requests it made.
pub(crate) struct Measured {
    pub(crate) output: PlakarOutput,
    pub(crate) plugins: Vec<PluginProcess>,
    pub(crate) log: Vec<RequestRecord>,
}

impl Measured {
    pub(crate) fn time(&self) -> Duration {
        self.output.elapsed
    }

    /// The highest peak RSS among the plugin processes, KiB.
    pub(crate) fn peak_kib(&self) -> Option<u64> {
        self.plugins.iter().map(|p| p.peak_kib).max()
    }

    /// The memory target of every real-plakar row: the highest plugin peak within 64 MiB.
    pub(crate) fn rss_check(&self) -> Check {
        Check {
            target: "peak RSS ≤ 64 MiB".to_owned(),
            met: self.peak_kib().is_some_and(|k| k <= 64 * 1024),
        }
    }

    /// CPU time of every plugin process together.
    pub(crate) fn plugin_cpu(&self) -> Option<Duration> {
        (!self.plugins.is_empty()).then(|| self.plugins.iter().map(|p| p.cpu).sum())
    }
}

pub(crate) async fn measure(run: &PlakarSite<'_>, args: &[String]) -> anyhow::Result<Measured> {
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

pub(crate) fn args(global: &[String], rest: &[&str]) -> Vec<String> {
    global
        .iter()
        .cloned()
        .chain(rest.iter().map(|s| (*s).to_owned()))
        .collect()
}

/// Writes the same files below the local folder `root`, plus one large file if asked.
pub(crate) fn seed_local(
    root: &Path,
    count: usize,
    size: usize,
    large: u64,
) -> anyhow::Result<u64> {
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
pub(crate) fn local_size(root: &Path) -> anyhow::Result<(usize, u64)> {
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
pub(crate) fn rclone_config(rclone: &Path, emu: &Emulator, dir: &Path) -> anyhow::Result<PathBuf> {
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
pub(crate) async fn rclone_copy(
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

/// The config key that turns both read-aheads off (the importer's and the storage's).
pub(crate) const READ_AHEAD_OFF: &str = "readahead_mib=0";

/// The same plakar command with the plugins' read-ahead off: what each `Open` or `Get` costs
/// alone, one round trip at a time.
pub(crate) fn read_ahead_off(time: Duration) -> Baseline {
    Baseline {
        label: format!("read-ahead off ({READ_AHEAD_OFF})"),
        time,
    }
}

pub(crate) fn ratio_check(target: &str, ratio: Option<f64>, at_least: f64) -> Check {
    Check {
        target: target.to_owned(),
        met: ratio.is_some_and(|r| r >= at_least),
    }
}

pub(crate) fn speedup(baseline: Duration, ours: Duration) -> f64 {
    baseline.as_secs_f64() / ours.as_secs_f64().max(1e-9)
}

pub(crate) fn scratch(name: &str) -> anyhow::Result<tempfile::TempDir> {
    let root = koofr_e2e::binaries::target_directory()?.join("bench/scratch");
    std::fs::create_dir_all(&root)?;
    Ok(tempfile::Builder::new().prefix(name).tempdir_in(root)?)
}
