//! Scenario 3: restore small files through the exporter, against raw uploads one at a time and
//! at the exporter's concurrency.

use std::future::ready;
use std::time::Instant;

use anyhow::{Context, ensure};
use futures::{StreamExt, TryStreamExt};
use kloset_plugin::{ByteStream, Exporter, FileInfo, time_from_unix_millis};

use crate::bench::report::{Baseline, Row};

use super::{
    Bench, CHUNK, PLUGIN_CONCURRENCY, SEED_MTIME_MS, count, describe, emulator, end_plugin,
    pattern, raw_client, speedup_check, start_exporter, start_site,
};

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
        naive: Some(Baseline::new("files/put 1 at a time", naive)),
        limit: Some(Baseline::new(
            format!("files/put ×{PLUGIN_CONCURRENCY}"),
            limit,
        )),
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
