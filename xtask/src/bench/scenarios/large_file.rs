//! Scenario 4: one large file up through the exporter and down through the importer (disk
//! backend), against one raw stream each way; peak memory stays bounded.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures::{StreamExt, TryStreamExt};
use kloset_plugin::{ByteStream, Exporter, FileInfo, Importer, Record, time_from_unix_millis};

use crate::bench::report::{Baseline, Check, Row};

use super::{
    Bench, LARGE_FILE_RSS_LIMIT_KIB, SEED_MTIME_MS, check_pattern, describe, drain, emulator,
    end_plugin, mib, pattern, pattern_stream, raw_client, speedup_check, start_exporter,
    start_importer, start_site,
};

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
    let records = scan(&importer).await?;
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
    let (read, chunks, down) = timed_read(&importer, &pathname).await?;
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
    scan(&importer).await?;
    let (unverified_read, _, down_unverified) = timed_read(&importer, &pathname).await?;
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
            limit: Some(Baseline::new("one raw files/put stream", raw_up)),
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
            limit: Some(Baseline::new("one raw files/get stream", raw_down)),
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
            limit: Some(Baseline::new("one raw files/get stream", raw_down)),
            requests: "1 (files/get ×1)".to_owned(),
            peak_rss_kib: unverified_cost.peak_kib,
            plugin_cpu: unverified_cost.cpu,
            checks: Vec::new(),
        },
    ])
}

/// The records of a whole scan of `importer`.
async fn scan(importer: &impl Importer) -> anyhow::Result<Vec<Record>> {
    let records = importer.scan().await.context("importer Scan")?;
    records.try_collect().await.context("importer Scan")
}

/// Opens and reads `pathname` through `importer`: the bytes and chunks read, and how long that
/// took.
async fn timed_read(
    importer: &impl Importer,
    pathname: &str,
) -> anyhow::Result<(u64, u64, Duration)> {
    let started = Instant::now();
    let stream = importer
        .open(pathname)
        .await
        .with_context(|| format!("importer Open {pathname}"))?;
    let (read, chunks) = drain(stream, pathname).await?;
    Ok((read, chunks, started.elapsed()))
}
