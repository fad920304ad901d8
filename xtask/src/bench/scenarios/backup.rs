//! Scenario 2: back up small files through the importer (scan, then `Open` every file at the
//! host's concurrency), against raw downloads one at a time and at the same concurrency.

use std::future::ready;
use std::time::Instant;

use anyhow::{Context, ensure};
use futures::{StreamExt, TryStreamExt};
use kloset_plugin::Importer;

use crate::bench::report::{Baseline, Row};

use super::{
    Bench, PLAKAR_CONCURRENCY, count, describe, drain, emulator, end_plugin, raw_client,
    seed_small_files, speedup_check, start_importer, start_site,
};

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
        naive: Some(Baseline::new("files/get 1 at a time", naive)),
        limit: Some(Baseline::new(
            format!("files/get ×{PLAKAR_CONCURRENCY}, paths known"),
            limit,
        )),
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
