//! Scenario 1: scan a tree of many files in many folders with the importer: one listing
//! request, against a folder-by-folder walk and one raw recursive listing.

use std::time::Instant;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use futures::StreamExt;
use kloset_plugin::Importer;

use crate::bench::report::{Baseline, Check, Row};

use super::{
    Bench, SEED_MTIME_MS, count, describe, emulator, end_plugin, raw_client, speedup_check,
    start_importer, start_site,
};

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
        naive: Some(Baseline::new(
            format!("files/list walk, 1 at a time, {walk_requests} requests"),
            walk,
        )),
        limit: Some(Baseline::new("one raw files/listrecursive", limit)),
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
