//! The six bench scenarios of issue 9. Each drives the release plugin binaries through
//! kloset-plugin's host against the in-process emulator, then runs its baselines with plain
//! reqwest against the same emulator, and returns rows of the report.

use std::future::ready;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use kloset_plugin::host::{
    InitArgs, PluginHandle, RemoteExporter, RemoteImporter, RemoteStore, host_options,
};
use kloset_plugin::{
    ByteRange, ByteStream, Exporter, FileInfo, Importer, Mac, Resource, Store,
    time_from_unix_millis,
};
use koofr_core::KoofrPath;
use koofr_e2e::pipeline::spawn_plugin;
use koofr_e2e::summary::ProcessPeak;
use koofr_e2e::{EmulatorOptions, PluginBinaries, Site};
use koofr_emulator::{Emulator, RequestRecord};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use super::raw::RawKoofr;
use super::report::{Baseline, Check, Row};

/// The concurrency kloset-plugin's host uses in scenarios 1-6 (sent in `Init` options and used
/// for the importer's `Open` calls), as plakar with `-concurrency 8`. plakar's own default is
/// the number of CPUs minus one (1 on a 2-core machine): scenarios 7-9 measure that.
const PLAKAR_CONCURRENCY: usize = 8;
/// The connectors' default `concurrency` config key (koofr-core's default).
const PLUGIN_CONCURRENCY: usize = 8;
/// Size of the content chunks the bench generates (Plakar's chunk limit on the wire).
const CHUNK: usize = 1 << 20;
/// Peak RSS a plugin may reach while moving one large file.
const LARGE_FILE_RSS_LIMIT_KIB: u64 = 64 * 1024;
/// Modification time of every seeded file.
const SEED_MTIME_MS: i64 = 1_700_000_000_000;

/// Sizes of one bench run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Scenario 1: files and folders to scan.
    pub scan_files: usize,
    pub scan_folders: usize,
    /// Scenarios 2 and 3: small files and their size.
    pub small_files: usize,
    pub small_file_bytes: usize,
    /// Scenario 4: the large file.
    pub large_file_bytes: u64,
    /// Scenario 5: packfiles, their size, and ranged gets.
    pub packfiles: usize,
    pub packfile_bytes: u64,
    pub ranged_gets: usize,
    /// Scenario 6: cold starts per plugin.
    pub cold_starts: usize,
}

impl Sizes {
    /// The sizes.
    pub fn full() -> Sizes {
        Sizes {
            scan_files: 20_000,
            scan_folders: 2_000,
            small_files: 2_000,
            small_file_bytes: 16 << 10,
            large_file_bytes: 1 << 30,
            packfiles: 64,
            packfile_bytes: 16 << 20,
            ranged_gets: 1_000,
            cold_starts: 9,
        }
    }

    /// A CI-sized run (seconds instead of minutes).
    pub fn quick() -> Sizes {
        Sizes {
            scan_files: 2_000,
            scan_folders: 200,
            small_files: 200,
            small_file_bytes: 16 << 10,
            large_file_bytes: 64 << 20,
            packfiles: 8,
            packfile_bytes: 4 << 20,
            ranged_gets: 100,
            cold_starts: 5,
        }
    }
}

/// Everything a scenario needs.
#[derive(Debug)]
pub struct Bench {
    /// Release plugin binaries.
    pub binaries: PluginBinaries,
    /// Sizes of this run.
    pub sizes: Sizes,
    /// Latency the emulator adds to every request.
    pub latency: Duration,
}

fn emulator(site: &Site) -> anyhow::Result<&Emulator> {
    site.emulator()
        .context("the bench runs on the in-process emulator only")
}

fn raw_client(site: &Site) -> anyhow::Result<RawKoofr> {
    let emu = emulator(site)?;
    RawKoofr::new(&emu.endpoint(), emu.email(), emu.password())
}

async fn start_site(bench: &Bench, on_disk: bool) -> anyhow::Result<Site> {
    Site::start_emulator(EmulatorOptions {
        latency: bench.latency,
        on_disk,
    })
    .await
}

fn init_args(site: &Site, location: &KoofrPath) -> InitArgs {
    let mut args = InitArgs::new("koofr", site.plugin_config(location));
    args.options = host_options(PLAKAR_CONCURRENCY as i64);
    args
}

async fn start_importer(
    bench: &Bench,
    site: &Site,
    location: &KoofrPath,
) -> anyhow::Result<RemoteImporter> {
    let connection = spawn_plugin(&bench.binaries.importer).await?;
    RemoteImporter::init(connection, &init_args(site, location))
        .await
        .with_context(|| format!("importer Init at {location}"))
}

async fn start_exporter(
    bench: &Bench,
    site: &Site,
    location: &KoofrPath,
) -> anyhow::Result<RemoteExporter> {
    let connection = spawn_plugin(&bench.binaries.exporter).await?;
    RemoteExporter::init(connection, &init_args(site, location))
        .await
        .with_context(|| format!("exporter Init at {location}"))
}

async fn start_store(
    bench: &Bench,
    site: &Site,
    location: &KoofrPath,
) -> anyhow::Result<RemoteStore> {
    let connection = spawn_plugin(&bench.binaries.storage).await?;
    RemoteStore::init(connection, &init_args(site, location))
        .await
        .with_context(|| format!("storage Init at {location}"))
}

/// What a plugin process cost, read just before its shutdown.
type ProcessCost = ProcessPeak;

/// Peak RSS and CPU time of the plugin (read now, before shutdown), then EOF on its input and a
/// clean exit.
async fn end_plugin(role: &str, plugin: &PluginHandle) -> anyhow::Result<ProcessCost> {
    koofr_e2e::pipeline::end_process(role, plugin).await
}

fn count(log: &[RequestRecord], endpoint: &str) -> usize {
    log.iter().filter(|r| r.endpoint == endpoint).count()
}

/// A compact "N total (endpoint ×n, …)" summary of a request log.
pub(super) fn describe(log: &[RequestRecord]) -> String {
    let by_endpoint = koofr_e2e::summary::requests_by_endpoint(log);
    let parts: Vec<String> = by_endpoint
        .iter()
        .map(|((endpoint, _method), n)| format!("{endpoint} ×{n}"))
        .collect();
    format!("{} ({})", log.len(), parts.join(", "))
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes % (1 << 30) == 0 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// A deterministic 1 MiB of random bytes; contents are windows of it.
pub(super) fn pattern() -> Bytes {
    let mut rng = SmallRng::seed_from_u64(9);
    let mut buffer = vec![0u8; CHUNK];
    rng.fill_bytes(&mut buffer);
    Bytes::from(buffer)
}

/// `size` bytes: the pattern repeated, in chunks of at most 1 MiB (zero-copy slices).
fn pattern_stream(base: &Bytes, size: u64) -> impl Stream<Item = Bytes> + Send + Sync + 'static {
    let base = base.clone();
    let chunks = size.div_ceil(CHUNK as u64);
    futures::stream::iter((0..chunks).map(move |i| {
        let start = i * CHUNK as u64;
        let length = (size - start).min(CHUNK as u64) as usize;
        base.slice(..length)
    }))
}

/// Checks that `chunk`, received at `offset` of a pattern stream, holds the pattern's bytes.
fn check_pattern(base: &[u8], mut offset: u64, mut chunk: &[u8]) -> anyhow::Result<()> {
    while !chunk.is_empty() {
        let at = (offset % CHUNK as u64) as usize;
        let take = chunk.len().min(CHUNK - at);
        ensure!(
            chunk[..take] == base[at..at + take],
            "wrong bytes at offset {offset}"
        );
        chunk = &chunk[take..];
        offset += take as u64;
    }
    Ok(())
}

/// Reads a plugin byte stream to its end; returns the byte and chunk counts.
async fn drain(mut stream: ByteStream, what: &str) -> anyhow::Result<(u64, u64)> {
    let (mut total, mut chunks) = (0u64, 0u64);
    while let Some(chunk) = stream.next().await {
        total += chunk.with_context(|| format!("reading {what}"))?.len() as u64;
        chunks += 1;
    }
    Ok((total, chunks))
}

fn speedup_check(target: &str, baseline: Duration, ours: Duration, at_least: f64) -> Check {
    let ratio = baseline.as_secs_f64() / ours.as_secs_f64().max(1e-9);
    Check {
        target: target.to_owned(),
        met: ratio >= at_least,
    }
}

/// 1. Scan a tree of many files in many folders with the importer.
pub async fn scan(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let (files, folders) = (bench.sizes.scan_files, bench.sizes.scan_folders);
    eprintln!("[1] scan: seeding {files} files in {folders} folders");
    let site = start_site(bench, false).await?;
    let emu = emulator(&site)?;
    let root = site.path("scan")?;
    for i in 0..files {
        emu.put_file(
            &format!("{root}/d{:04}/f{i:06}.bin", i % folders),
            Bytes::from(format!("file number {i}\n")),
            SEED_MTIME_MS + i as i64,
        );
    }

    eprintln!("[1] scan: koofr-importer");
    let importer = start_importer(bench, &site, &root).await?;
    site.clear_requests();
    let started = Instant::now();
    let mut records = importer.scan().await.context("importer Scan")?;
    let (mut seen_files, mut seen_dirs) = (0usize, 0usize);
    while let Some(record) = records.next().await {
        let record = record.context("importer Scan")?;
        if record.is_error() {
            bail!("scan: error record for {}", record.pathname);
        }
        match &record.file_info {
            Some(info) if info.mode.is_dir() => seen_dirs += 1,
            Some(_) => seen_files += 1,
            None => {}
        }
    }
    let ours = started.elapsed();
    let log = site.requests();
    importer.close().await.context("importer Close")?;
    let peak = end_plugin("importer", importer.plugin()).await?;
    ensure!(
        seen_files == files && seen_dirs >= folders,
        "scan found {seen_files} files and {seen_dirs} folders, expected {files} and ≥ {folders}"
    );
    let listings = count(&log, "files/listrecursive") + count(&log, "files/list");

    eprintln!("[1] scan: baselines");
    let raw = raw_client(&site)?;
    site.clear_requests();
    let started = Instant::now();
    let walked = raw.walk_sequential(root.as_str()).await?;
    let walk = started.elapsed();
    let walk_requests = site.requests().len();
    ensure!(walked == (files, folders), "the walk found {walked:?}");
    let started = Instant::now();
    let listed = raw.list_recursive(root.as_str()).await?;
    let limit = started.elapsed();
    ensure!(listed == (files, folders), "listrecursive found {listed:?}");

    Ok(vec![Row {
        scenario: 1,
        operation: format!("scan {files} files in {folders} folders (importer Import)"),
        ours,
        naive: Some(Baseline {
            label: format!("files/list walk, 1 at a time, {walk_requests} requests"),
            time: walk,
        }),
        limit: Some(Baseline {
            label: "one raw files/listrecursive".to_owned(),
            time: limit,
        }),
        requests: describe(&log),
        peak_rss_kib: peak.peak_kib,
        plugin_cpu: peak.cpu,
        checks: vec![
            speedup_check("≥ 20x walk", walk, ours, 20.0),
            Check {
                target: "1 listing request".to_owned(),
                met: listings == 1 && log.len() == 1,
            },
        ],
    }])
}

/// Seeds `count` files of `size` bytes in folders of 100 below `root`; returns their paths
/// relative to `root`.
fn seed_small_files(emu: &Emulator, root: &KoofrPath, count: usize, size: usize) -> Vec<String> {
    let base = pattern();
    (0..count)
        .map(|i| {
            let relative = format!("d{:02}/f{i:05}.bin", i / 100);
            let start = (i * 4099) % (CHUNK - size);
            emu.put_file(
                &format!("{root}/{relative}"),
                base.slice(start..start + size),
                SEED_MTIME_MS + i as i64,
            );
            relative
        })
        .collect()
}

/// 2. Back up small files: scan, then `Open` every file at Plakar's concurrency.
pub async fn backup(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let (files, size) = (bench.sizes.small_files, bench.sizes.small_file_bytes);
    eprintln!("[2] backup: seeding {files} files of {} KiB", size >> 10);
    let site = start_site(bench, false).await?;
    let emu = emulator(&site)?;
    let root = site.path("backup")?;
    let paths = seed_small_files(emu, &root, files, size);
    let expected_bytes = (files * size) as u64;

    eprintln!("[2] backup: koofr-importer, Open ×{PLAKAR_CONCURRENCY}");
    let importer = start_importer(bench, &site, &root).await?;
    site.clear_requests();
    let started = Instant::now();
    let records = importer.scan().await.context("importer Scan")?;
    let importer_ref = &importer;
    let read: u64 = records
        .filter_map(|record| {
            ready(match record {
                Ok(r) if r.is_error() => Some(Err(anyhow::anyhow!(
                    "backup: error record for {}",
                    r.pathname
                ))),
                Ok(r) if r.has_reader => Some(Ok(r.pathname)),
                Ok(_) => None,
                Err(e) => Some(Err(anyhow::Error::from(e).context("importer Scan"))),
            })
        })
        .map(|pathname| async move {
            let pathname = pathname?;
            let stream = importer_ref
                .open(&pathname)
                .await
                .with_context(|| format!("importer Open {pathname}"))?;
            Ok::<_, anyhow::Error>(drain(stream, &pathname).await?.0)
        })
        .buffer_unordered(PLAKAR_CONCURRENCY)
        .try_fold(0u64, |sum, n| ready(Ok(sum + n)))
        .await?;
    let ours = started.elapsed();
    let log = site.requests();
    importer.close().await.context("importer Close")?;
    let peak = end_plugin("importer", importer.plugin()).await?;
    ensure!(
        read == expected_bytes,
        "backup read {read} bytes, expected {expected_bytes}"
    );
    let gets = count(&log, "files/get");

    eprintln!("[2] backup: baselines");
    let raw = raw_client(&site)?;
    let absolute: Vec<String> = paths.iter().map(|p| format!("{root}/{p}")).collect();
    let download_all = |concurrency: usize| {
        let raw = raw.clone();
        let absolute = absolute.clone();
        async move {
            let started = Instant::now();
            let total: u64 = futures::stream::iter(absolute)
                .map(|path| {
                    let raw = raw.clone();
                    async move { raw.get(&path, None, |_, _| Ok(())).await }
                })
                .buffer_unordered(concurrency)
                .try_fold(0u64, |sum, n| ready(Ok(sum + n)))
                .await?;
            ensure!(total == expected_bytes, "baseline read {total} bytes");
            Ok::<_, anyhow::Error>(started.elapsed())
        }
    };
    let limit = download_all(PLAKAR_CONCURRENCY).await?;
    let naive = download_all(1).await?;

    Ok(vec![Row {
        scenario: 2,
        operation: format!(
            "back up {files} files of {} KiB (Import + Open ×{PLAKAR_CONCURRENCY})",
            size >> 10
        ),
        ours,
        naive: Some(Baseline {
            label: "files/get 1 at a time".to_owned(),
            time: naive,
        }),
        limit: Some(Baseline {
            label: format!("files/get ×{PLAKAR_CONCURRENCY}, paths known"),
            time: limit,
        }),
        requests: format!(
            "{} ({:.2} files/get per file)",
            describe(&log),
            gets as f64 / files as f64
        ),
        peak_rss_kib: peak.peak_kib,
        plugin_cpu: peak.cpu,
        checks: vec![speedup_check("≥ 0.8x limit", limit, ours, 0.8)],
    }])
}

/// 3. Restore small files through the exporter.
pub async fn restore(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let (files, size) = (bench.sizes.small_files, bench.sizes.small_file_bytes);
    let folders = files.div_ceil(100);
    eprintln!(
        "[3] restore: {files} files of {} KiB in {folders} folders",
        size >> 10
    );
    let site = start_site(bench, false).await?;
    let emu = emulator(&site)?;
    let base = pattern();
    let content = |i: usize| {
        let start = (i * 4099) % (CHUNK - size);
        base.slice(start..start + size)
    };
    let relative = |i: usize| format!("d{:02}/f{i:05}.bin", i / 100);

    eprintln!("[3] restore: koofr-exporter");
    let root = site.path("restore-ours")?;
    let exporter = start_exporter(bench, &site, &root).await?;
    let mtime = time_from_unix_millis(SEED_MTIME_MS);
    site.clear_requests();
    let started = Instant::now();
    exporter
        .create_directory("/", &FileInfo::directory("/", 0o755, mtime))
        .await
        .context("exporter: directory /")?;
    for d in 0..folders {
        let name = format!("d{d:02}");
        exporter
            .create_directory(
                &format!("/{name}"),
                &FileInfo::directory(&name, 0o755, mtime),
            )
            .await
            .with_context(|| format!("exporter: directory /{name}"))?;
    }
    let exporter_ref = &exporter;
    futures::stream::iter(0..files)
        .map(|i| {
            let pathname = format!("/{}", relative(i));
            let data = content(i);
            async move {
                let name = pathname.rsplit('/').next().unwrap_or_default().to_owned();
                let info = FileInfo::file(name, data.len() as i64, 0o644, mtime);
                let stream: ByteStream = futures::stream::once(ready(Ok(data))).boxed();
                exporter_ref
                    .store_file(&pathname, &info, stream)
                    .await
                    .with_context(|| format!("exporter: file {pathname}"))
            }
        })
        .buffer_unordered(exporter.max_in_flight())
        .try_collect::<Vec<()>>()
        .await?;
    exporter.close().await.context("exporter Close")?;
    let ours = started.elapsed();
    let log = site.requests();
    let peak = end_plugin("exporter", exporter.plugin()).await?;
    let restored = emu
        .walk(root.as_str())
        .iter()
        .filter(|(_, info)| !info.is_dir && info.size == size as u64)
        .count();
    ensure!(
        restored == files,
        "restore stored {restored} of {files} files"
    );
    let puts = count(&log, "files/put");

    eprintln!("[3] restore: baselines");
    let raw = raw_client(&site)?;
    let upload_all = |folder: &'static str, concurrency: usize| {
        let raw = raw.clone();
        let parent = site.base().to_string();
        let content = &content;
        let relative = &relative;
        async move {
            raw.create_folder(&parent, folder).await?;
            let root = format!("{parent}/{folder}");
            let started = Instant::now();
            futures::stream::iter(0..folders)
                .map(|d| {
                    let (raw, root) = (&raw, &root);
                    async move { raw.create_folder(root, &format!("d{d:02}")).await }
                })
                .buffer_unordered(concurrency)
                .try_collect::<Vec<()>>()
                .await?;
            futures::stream::iter(0..files)
                .map(|i| {
                    let (dir, name) = relative(i)
                        .split_once('/')
                        .map(|(d, n)| (format!("{root}/{d}"), n.to_owned()))
                        .unwrap_or_default();
                    let body = futures::stream::once(ready(content(i)));
                    let raw = raw.clone();
                    async move { raw.put(&dir, &name, body).await }
                })
                .buffer_unordered(concurrency)
                .try_collect::<Vec<()>>()
                .await?;
            Ok::<_, anyhow::Error>(started.elapsed())
        }
    };
    let limit = upload_all("restore-limit", PLUGIN_CONCURRENCY).await?;
    let naive = upload_all("restore-naive", 1).await?;

    Ok(vec![Row {
        scenario: 3,
        operation: format!(
            "restore {files} files of {} KiB in {folders} folders (Export)",
            size >> 10
        ),
        ours,
        naive: Some(Baseline {
            label: "files/put 1 at a time".to_owned(),
            time: naive,
        }),
        limit: Some(Baseline {
            label: format!("files/put ×{PLUGIN_CONCURRENCY}"),
            time: limit,
        }),
        requests: format!(
            "{} ({:.2} files/put per file)",
            describe(&log),
            puts as f64 / files as f64
        ),
        peak_rss_kib: peak.peak_kib,
        plugin_cpu: peak.cpu,
        checks: vec![
            speedup_check("≥ 5x naive", naive, ours, 5.0),
            speedup_check("≥ 0.7x limit", limit, ours, 0.7),
        ],
    }])
}

/// 4. One large file up through the exporter and down through the importer (disk backend).
pub async fn large_file(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let size = bench.sizes.large_file_bytes;
    eprintln!("[4] large file: {} up and down", mib(size));
    let site = start_site(bench, true).await?;
    let emu = emulator(&site)?;
    let raw = raw_client(&site)?;
    let base = pattern();
    let mtime = time_from_unix_millis(SEED_MTIME_MS);
    let ours_root = site.path("large-ours")?;

    eprintln!("[4] large file: koofr-exporter");
    let exporter = start_exporter(bench, &site, &ours_root).await?;
    exporter
        .create_directory("/", &FileInfo::directory("/", 0o755, mtime))
        .await
        .context("exporter: directory /")?;
    site.clear_requests();
    let started = Instant::now();
    let info = FileInfo::file("large.bin", size as i64, 0o644, mtime);
    let stream: ByteStream = pattern_stream(&base, size).map(Ok).boxed();
    exporter
        .store_file("/large.bin", &info, stream)
        .await
        .context("exporter: file /large.bin")?;
    let up = started.elapsed();
    let up_log = site.requests();
    exporter.close().await.context("exporter Close")?;
    let up_peak = end_plugin("exporter", exporter.plugin()).await?;

    eprintln!("[4] large file: raw upload");
    raw.create_folder(site.base().as_str(), "large-raw").await?;
    let raw_dir = format!("{}/large-raw", site.base());
    let started = Instant::now();
    raw.put(&raw_dir, "large.bin", pattern_stream(&base, size))
        .await?;
    let raw_up = started.elapsed();
    let ours_stat = emu
        .stat(&format!("{ours_root}/large.bin"))
        .context("the exporter's upload is missing")?;
    let raw_stat = emu
        .stat(&format!("{raw_dir}/large.bin"))
        .context("the raw upload is missing")?;
    ensure!(
        ours_stat.size == size && ours_stat.hash == raw_stat.hash,
        "the exporter stored {} bytes with MD5 {:?}; the raw upload has MD5 {:?}",
        ours_stat.size,
        ours_stat.hash,
        raw_stat.hash
    );

    eprintln!("[4] large file: koofr-importer");
    let importer = start_importer(bench, &site, &ours_root).await?;
    let records: Vec<_> = importer
        .scan()
        .await
        .context("importer Scan")?
        .try_collect()
        .await
        .context("importer Scan")?;
    ensure!(
        records.iter().any(|r| r.pathname.ends_with("/large.bin")),
        "the scan did not list large.bin"
    );
    let pathname = records
        .iter()
        .find(|r| r.pathname.ends_with("/large.bin"))
        .map(|r| r.pathname.clone())
        .unwrap_or_default();
    site.clear_requests();
    let started = Instant::now();
    let stream = importer
        .open(&pathname)
        .await
        .with_context(|| format!("importer Open {pathname}"))?;
    let (read, chunks) = drain(stream, &pathname).await?;
    let down = started.elapsed();
    let down_log = site.requests();
    importer.close().await.context("importer Close")?;
    let down_peak = end_plugin("importer", importer.plugin()).await?;
    ensure!(read == size, "the importer read {read} of {size} bytes");

    eprintln!("[4] large file: raw download");
    let started = Instant::now();
    let raw_read = raw
        .get(&format!("{raw_dir}/large.bin"), None, |offset, chunk| {
            check_pattern(&base, offset, chunk)
        })
        .await?;
    let raw_down = started.elapsed();
    ensure!(raw_read == size, "the raw download read {raw_read} bytes");

    // Profiling: the same download when Koofr reports no MD5, so nothing is verified; the
    // difference is the cost of the verification the importer owes its users.
    eprintln!("[4] large file: koofr-importer, MD5 omitted by the emulator (profiling)");
    emu.faults().omit_hash(ours_root.as_str());
    let importer = start_importer(bench, &site, &ours_root).await?;
    let _records: Vec<_> = importer
        .scan()
        .await
        .context("importer Scan")?
        .try_collect()
        .await
        .context("importer Scan")?;
    let started = Instant::now();
    let stream = importer
        .open(&pathname)
        .await
        .with_context(|| format!("importer Open {pathname}"))?;
    let (unverified_read, _) = drain(stream, &pathname).await?;
    let down_unverified = started.elapsed();
    importer.close().await.context("importer Close")?;
    let unverified_cost = end_plugin("importer", importer.plugin()).await?;
    ensure!(
        unverified_read == size,
        "the importer read {unverified_read} of {size} bytes"
    );

    let rss_check = |peak: Option<u64>| Check {
        target: "peak RSS < 64 MiB".to_owned(),
        met: peak.is_some_and(|k| k < LARGE_FILE_RSS_LIMIT_KIB),
    };
    Ok(vec![
        Row {
            scenario: 4,
            operation: format!("{} file up (Export)", mib(size)),
            ours: up,
            naive: None,
            limit: Some(Baseline {
                label: "one raw files/put stream".to_owned(),
                time: raw_up,
            }),
            requests: describe(&up_log),
            peak_rss_kib: up_peak.peak_kib,
            plugin_cpu: up_peak.cpu,
            checks: vec![
                speedup_check("≥ 0.8x raw", raw_up, up, 0.8),
                rss_check(up_peak.peak_kib),
            ],
        },
        Row {
            scenario: 4,
            operation: format!("{} file down (Open)", mib(size)),
            ours: down,
            naive: None,
            limit: Some(Baseline {
                label: "one raw files/get stream".to_owned(),
                time: raw_down,
            }),
            requests: format!(
                "{}; {chunks} chunks of {:.0} KiB on average to the host",
                describe(&down_log),
                read as f64 / chunks.max(1) as f64 / 1024.0
            ),
            peak_rss_kib: down_peak.peak_kib,
            plugin_cpu: down_peak.cpu,
            checks: vec![
                speedup_check("≥ 0.8x raw", raw_down, down, 0.8),
                rss_check(down_peak.peak_kib),
            ],
        },
        Row {
            scenario: 4,
            operation: format!(
                "{} file down (Open), no MD5 to verify (profiling only)",
                mib(size)
            ),
            ours: down_unverified,
            naive: None,
            limit: Some(Baseline {
                label: "one raw files/get stream".to_owned(),
                time: raw_down,
            }),
            requests: "1 (files/get ×1)".to_owned(),
            peak_rss_kib: unverified_cost.peak_kib,
            plugin_cpu: unverified_cost.cpu,
            checks: Vec::new(),
        },
    ])
}

/// 5. Storage: packfiles put with concurrency 8, then random ranged gets.
pub async fn storage(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let sizes = bench.sizes;
    let (packs, pack_bytes, gets) = (sizes.packfiles, sizes.packfile_bytes, sizes.ranged_gets);
    eprintln!(
        "[5] storage: {packs} packfiles of {}, {gets} ranged gets",
        mib(pack_bytes)
    );
    let site = start_site(bench, false).await?;
    let raw = raw_client(&site)?;
    let base = pattern();
    let mut rng = SmallRng::seed_from_u64(5);
    let macs: Vec<Mac> = (0..packs)
        .map(|_| {
            let mut raw_mac = [0u8; 32];
            rng.fill_bytes(&mut raw_mac);
            Mac(raw_mac)
        })
        .collect();
    let ranges: Vec<(usize, u64, u32)> = (0..gets)
        .map(|_| {
            let length = rng.random_range(4096..=(1u64 << 20).min(pack_bytes));
            let offset = rng.random_range(0..=pack_bytes - length);
            (rng.random_range(0..packs), offset, length as u32)
        })
        .collect();
    let range_bytes: u64 = ranges.iter().map(|r| u64::from(r.2)).sum();

    eprintln!("[5] storage: koofr-storage");
    let kloset = site.path("kloset")?;
    let store = Arc::new(start_store(bench, &site, &kloset).await?);
    store
        .create(Bytes::from(koofr_e2e::pipeline::kloset_config(pack_bytes)))
        .await
        .context("storage Create")?;
    site.clear_requests();
    let started = Instant::now();
    futures::stream::iter(macs.iter().copied())
        .map(|mac| {
            let store = store.clone();
            let data: ByteStream = pattern_stream(&base, pack_bytes).map(Ok).boxed();
            async move {
                let stored = store
                    .put(Resource::Packfile, mac, data)
                    .await
                    .with_context(|| format!("storage Put {mac}"))?;
                ensure!(stored == pack_bytes, "Put {mac} stored {stored} bytes");
                Ok(())
            }
        })
        .buffer_unordered(PLUGIN_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let ours_put = started.elapsed();
    let put_log = site.requests();
    let put_cpu = store.plugin().pid().and_then(koofr_e2e::summary::cpu_time);
    site.clear_requests();
    let started = Instant::now();
    futures::stream::iter(ranges.iter().copied())
        .map(|(pack, offset, length)| {
            let store = store.clone();
            let mac = macs[pack];
            let base = &base;
            async move {
                let range = ByteRange { offset, length };
                let mut stream = store
                    .get(Resource::Packfile, mac, Some(range))
                    .await
                    .with_context(|| format!("storage Get {mac} {offset}+{length}"))?;
                let mut at = offset;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.with_context(|| format!("storage Get {mac}"))?;
                    check_pattern(base, at, &chunk)?;
                    at += chunk.len() as u64;
                }
                ensure!(
                    at - offset == u64::from(length),
                    "Get {mac} {offset}+{length} returned {} bytes",
                    at - offset
                );
                Ok(())
            }
        })
        .buffer_unordered(PLUGIN_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let ours_get = started.elapsed();
    let get_log = site.requests();
    store.close().await.context("storage Close")?;
    let peak = end_plugin("storage", store.plugin()).await?;

    eprintln!("[5] storage: raw baselines");
    let raw_dir = format!("{}/raw-packs", site.base());
    raw.create_folder(site.base().as_str(), "raw-packs").await?;
    let put_all = |concurrency: usize| {
        let raw = raw.clone();
        let (macs, base, raw_dir) = (&macs, &base, &raw_dir);
        async move {
            let started = Instant::now();
            futures::stream::iter(macs.iter())
                .map(|mac| {
                    let raw = &raw;
                    async move {
                        raw.put(raw_dir, &mac.to_hex(), pattern_stream(base, pack_bytes))
                            .await
                    }
                })
                .buffer_unordered(concurrency)
                .try_collect::<Vec<()>>()
                .await?;
            Ok::<_, anyhow::Error>(started.elapsed())
        }
    };
    let get_all = |concurrency: usize| {
        let raw = raw.clone();
        let (macs, base, raw_dir, ranges) = (&macs, &base, &raw_dir, &ranges);
        async move {
            let started = Instant::now();
            let total: u64 = futures::stream::iter(ranges.iter().copied())
                .map(|(pack, offset, length)| {
                    let path = format!("{raw_dir}/{}", macs[pack].to_hex());
                    let raw = raw.clone();
                    async move {
                        raw.get(&path, Some((offset, u64::from(length))), |at, chunk| {
                            check_pattern(base, offset + at, chunk)
                        })
                        .await
                    }
                })
                .buffer_unordered(concurrency)
                .try_fold(0u64, |sum, n| ready(Ok(sum + n)))
                .await?;
            ensure!(total == range_bytes, "raw ranged gets read {total} bytes");
            Ok::<_, anyhow::Error>(started.elapsed())
        }
    };
    let raw_put = put_all(PLUGIN_CONCURRENCY).await?;
    let raw_get = get_all(PLUGIN_CONCURRENCY).await?;

    let one_each = |log: &[RequestRecord], endpoint: &str, n: usize| Check {
        target: format!("1 request per {}", endpoint.trim_start_matches("files/")),
        met: log.len() == n && count(log, endpoint) == n,
    };
    Ok(vec![
        Row {
            scenario: 5,
            operation: format!(
                "put {packs} packfiles of {} ×{PLUGIN_CONCURRENCY}",
                mib(pack_bytes)
            ),
            ours: ours_put,
            naive: None,
            limit: Some(Baseline {
                label: format!("raw files/put ×{PLUGIN_CONCURRENCY}"),
                time: raw_put,
            }),
            requests: describe(&put_log),
            peak_rss_kib: None,
            plugin_cpu: put_cpu,
            checks: vec![
                speedup_check("≥ 0.8x raw", raw_put, ours_put, 0.8),
                one_each(&put_log, "files/put", packs),
            ],
        },
        Row {
            scenario: 5,
            operation: format!(
                "{gets} ranged gets of 4 KiB–1 MiB ({} in all) ×{PLUGIN_CONCURRENCY}",
                mib(range_bytes)
            ),
            ours: ours_get,
            naive: None,
            limit: Some(Baseline {
                label: format!("raw ranged files/get ×{PLUGIN_CONCURRENCY}"),
                time: raw_get,
            }),
            requests: describe(&get_log),
            peak_rss_kib: peak.peak_kib,
            // The same process did the puts: count only what it spent since.
            plugin_cpu: peak
                .cpu
                .zip(put_cpu)
                .map(|(all, put)| all.saturating_sub(put)),
            checks: vec![
                speedup_check("≥ 0.8x raw", raw_get, ours_get, 0.8),
                one_each(&get_log, "files/get", gets),
            ],
        },
    ])
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// 6. Cold start: spawn → Init → Ping, per plugin, on an emulator without added latency.
pub async fn cold_start(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let runs = bench.sizes.cold_starts;
    eprintln!("[6] cold start: {runs} runs per plugin");
    // "Locally": the start-up cost itself, not the injected network latency.
    let site = Site::start_emulator(EmulatorOptions::default()).await?;
    let emu = emulator(&site)?;
    let root = site.path("cold")?;
    emu.create_folder_all(root.as_str());
    let mut rows = Vec::new();
    for kind in ["importer", "exporter", "storage"] {
        let mut samples = Vec::with_capacity(runs);
        let mut peak = ProcessCost::default();
        site.clear_requests();
        for _ in 0..runs {
            let started = Instant::now();
            let plugin = match kind {
                "importer" => {
                    let p = start_importer(bench, &site, &root).await?;
                    p.ping().await.context("importer Ping")?;
                    samples.push(started.elapsed());
                    p.close().await.context("importer Close")?;
                    end_plugin(kind, p.plugin()).await?
                }
                "exporter" => {
                    let p = start_exporter(bench, &site, &root).await?;
                    p.ping().await.context("exporter Ping")?;
                    samples.push(started.elapsed());
                    p.close().await.context("exporter Close")?;
                    end_plugin(kind, p.plugin()).await?
                }
                _ => {
                    let p = start_store(bench, &site, &root).await?;
                    p.ping().await.context("storage Ping")?;
                    samples.push(started.elapsed());
                    end_plugin(kind, p.plugin()).await?
                }
            };
            peak = ProcessCost {
                peak_kib: peak.peak_kib.max(plugin.peak_kib),
                cpu: peak.cpu.max(plugin.cpu),
                ..ProcessCost::default()
            };
        }
        let requests = site.requests();
        let time = median(samples);
        rows.push(Row {
            scenario: 6,
            operation: format!("cold start koofr-{kind}: spawn → Init → Ping (median of {runs})"),
            ours: time,
            naive: None,
            limit: None,
            requests: format!(
                "{:.1} per start: {}",
                requests.len() as f64 / runs as f64,
                describe(&requests)
            ),
            peak_rss_kib: peak.peak_kib,
            plugin_cpu: peak.cpu,
            checks: vec![Check {
                target: "< 50 ms".to_owned(),
                met: time < Duration::from_millis(50),
            }],
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pattern_streams_check_against_their_base() {
        let base = pattern();
        let chunks: Vec<Bytes> = pattern_stream(&base, 2 * CHUNK as u64 + 10).collect().await;
        assert_eq!(
            chunks.iter().map(Bytes::len).collect::<Vec<_>>(),
            [CHUNK, CHUNK, 10]
        );
        let whole: Vec<u8> = chunks.concat();
        check_pattern(&base, 0, &whole).expect("the stream is the pattern");
        check_pattern(&base, 777, &whole[777..CHUNK + 900]).expect("a window of it");
        let mut corrupt = whole[100..200].to_vec();
        corrupt[5] ^= 1;
        assert!(check_pattern(&base, 100, &corrupt).is_err());
    }

    #[test]
    fn median_is_the_middle_sample() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(9), ms(1), ms(5)]), ms(5));
        assert_eq!(median(Vec::new()), Duration::ZERO);
    }

    #[test]
    fn quick_sizes_are_smaller() {
        let (quick, full) = (Sizes::quick(), Sizes::full());
        assert!(quick.scan_files < full.scan_files);
        assert!(quick.large_file_bytes < full.large_file_bytes);
        assert_eq!(full.scan_files, 20_000);
        assert_eq!(full.packfiles, 64);
    }
}
