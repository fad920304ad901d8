//! The bench scenarios, one file each: 1-6 drive the release plugin binaries through
//! kloset-plugin's host against the in-process emulator, then run their baselines with plain
//! reqwest against the same emulator; 7-9 drive them through a real plakar v1.1, 10 through
//! plakar v1.0. This module holds
//! what they share: sizes, plugin start and end, request-log summaries, generated content.

pub mod backup;
pub mod backup_from_koofr;
pub mod cold_start;
pub mod kloset_on_koofr;
pub mod large_file;
pub mod plakar_1_0;
pub mod restore;
pub mod restore_into_koofr;
pub mod scan;
pub mod storage;

use std::time::Duration;

use anyhow::{Context, ensure};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use kloset_plugin::ByteStream;
use kloset_plugin::host::{
    InitArgs, PluginHandle, RemoteExporter, RemoteImporter, RemoteStore, host_options,
};
use koofr_core::KoofrPath;
use koofr_e2e::PluginBinaries;
use koofr_e2e::pipeline::spawn_plugin;
use koofr_e2e::summary::ProcessPeak;
use koofr_emulator::{Emulator, EmulatorConfig, RequestRecord};
use koofr_testkit::{EmulatorOptions, Site};

use crate::bench::raw::RawKoofr;
use crate::bench::report::Check;

/// The concurrency kloset-plugin's host uses in scenarios 1-6 (sent in `Init` options and used
/// for the importer's `Open` calls), as plakar with `-concurrency 8`. plakar's own default is
/// the number of CPUs minus one (1 on a 2-core machine): scenarios 7-9 measure that.
pub(crate) const PLAKAR_CONCURRENCY: usize = 8;
/// The connectors' default `concurrency` config key (koofr-core's default).
pub(crate) const PLUGIN_CONCURRENCY: usize = 8;
/// Size of the content chunks the bench generates (Plakar's chunk limit on the wire).
pub(crate) const CHUNK: usize = 1 << 20;
/// Peak RSS a plugin may reach while moving one large file.
pub(crate) const LARGE_FILE_RSS_LIMIT_KIB: u64 = 64 * 1024;
/// Modification time of every seeded file.
pub(crate) const SEED_MTIME_MS: i64 = 1_700_000_000_000;

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

pub(crate) fn emulator(site: &Site) -> anyhow::Result<&Emulator> {
    ensure!(
        !site.is_live(),
        "the bench runs on the in-process emulator only"
    );
    Ok(site.emulator())
}

pub(crate) fn raw_client(site: &Site) -> anyhow::Result<RawKoofr> {
    let emu = emulator(site)?;
    RawKoofr::new(&emu.endpoint(), emu.email(), emu.password())
}

pub(crate) async fn start_site(bench: &Bench, on_disk: bool) -> anyhow::Result<Site> {
    let mut config = EmulatorConfig::default();
    config.latency = bench.latency;
    Site::start_emulator_with(EmulatorOptions { config, on_disk }).await
}

pub(crate) fn init_args(site: &Site, location: &KoofrPath) -> InitArgs {
    let mut args = InitArgs::new("koofr", site.plugin_config(location));
    args.options = host_options(PLAKAR_CONCURRENCY as i64);
    args
}

pub(crate) async fn start_importer(
    bench: &Bench,
    site: &Site,
    location: &KoofrPath,
) -> anyhow::Result<RemoteImporter> {
    let connection = spawn_plugin(&bench.binaries.importer).await?;
    RemoteImporter::init(connection, &init_args(site, location))
        .await
        .with_context(|| format!("importer Init at {location}"))
}

pub(crate) async fn start_exporter(
    bench: &Bench,
    site: &Site,
    location: &KoofrPath,
) -> anyhow::Result<RemoteExporter> {
    let connection = spawn_plugin(&bench.binaries.exporter).await?;
    RemoteExporter::init(connection, &init_args(site, location))
        .await
        .with_context(|| format!("exporter Init at {location}"))
}

pub(crate) async fn start_store(
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
pub(crate) type ProcessCost = ProcessPeak;

/// Peak RSS and CPU time of the plugin (read now, before shutdown), then EOF on its input and a
/// clean exit.
pub(crate) async fn end_plugin(role: &str, plugin: &PluginHandle) -> anyhow::Result<ProcessCost> {
    koofr_e2e::pipeline::end_process(role, plugin).await
}

pub(crate) fn count(log: &[RequestRecord], endpoint: &str) -> usize {
    log.iter().filter(|r| r.endpoint == endpoint).count()
}

/// A compact "N total (endpoint ×n, …)" summary of a request log.
pub(crate) fn describe(log: &[RequestRecord]) -> String {
    let by_endpoint = koofr_e2e::summary::requests_by_endpoint(log);
    let parts: Vec<String> = by_endpoint
        .iter()
        .map(|((endpoint, _method), n)| format!("{endpoint} ×{n}"))
        .collect();
    format!("{} ({})", log.len(), parts.join(", "))
}

pub(crate) fn mib(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes % (1 << 30) == 0 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// A deterministic 1 MiB of the shared test pattern; contents are windows of it (zero-copy).
pub(crate) fn pattern() -> Bytes {
    koofr_testkit::content(9, CHUNK)
}

/// `size` bytes: the pattern repeated, in chunks of at most 1 MiB (zero-copy slices).
pub(crate) fn pattern_stream(
    base: &Bytes,
    size: u64,
) -> impl Stream<Item = Bytes> + Send + Sync + 'static {
    let base = base.clone();
    let chunks = size.div_ceil(CHUNK as u64);
    futures::stream::iter((0..chunks).map(move |i| {
        let start = i * CHUNK as u64;
        let length = (size - start).min(CHUNK as u64) as usize;
        base.slice(..length)
    }))
}

/// Checks that `chunk`, received at `offset` of a pattern stream, holds the pattern's bytes.
pub(crate) fn check_pattern(base: &[u8], mut offset: u64, mut chunk: &[u8]) -> anyhow::Result<()> {
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
pub(crate) async fn drain(mut stream: ByteStream, what: &str) -> anyhow::Result<(u64, u64)> {
    let (mut total, mut chunks) = (0u64, 0u64);
    while let Some(chunk) = stream.next().await {
        total += chunk.with_context(|| format!("reading {what}"))?.len() as u64;
        chunks += 1;
    }
    Ok((total, chunks))
}

pub(crate) fn speedup_check(
    target: &str,
    baseline: Duration,
    ours: Duration,
    at_least: f64,
) -> Check {
    let ratio = baseline.as_secs_f64() / ours.as_secs_f64().max(1e-9);
    Check {
        target: target.to_owned(),
        met: ratio >= at_least,
    }
}

/// Seeds `count` files of `size` bytes in folders of 100 below `root`; returns their paths
/// relative to `root`.
pub(crate) fn seed_small_files(
    emu: &Emulator,
    root: &KoofrPath,
    count: usize,
    size: usize,
) -> Vec<String> {
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

pub(crate) fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures::StreamExt;
    use std::time::Duration;

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
