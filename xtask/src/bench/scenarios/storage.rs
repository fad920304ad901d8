//! Scenario 5: packfiles put through the storage plugin, then random ranged gets, against raw
//! requests at the same concurrency.

use std::future::ready;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use kloset_plugin::{ByteRange, ByteStream, Mac, Resource, Store};
use koofr_emulator::RequestRecord;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::bench::report::{Baseline, Check, Row};

use super::{
    Bench, PLUGIN_CONCURRENCY, check_pattern, count, describe, end_plugin, mib, pattern,
    pattern_stream, raw_client, speedup_check, start_site, start_store,
};

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
                    .put(Resource::Packfile.key(mac), data)
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
                    .get(Resource::Packfile.key(mac), Some(range))
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
            limit: Some(Baseline::new(
                format!("raw files/put ×{PLUGIN_CONCURRENCY}"),
                raw_put,
            )),
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
            limit: Some(Baseline::new(
                format!("raw ranged files/get ×{PLUGIN_CONCURRENCY}"),
                raw_get,
            )),
            requests: describe(&get_log),
            peak_rss_kib: peak.peak_kib,
            // The same process did the puts: count only what it spent since.
            plugin_cpu: peak
                .cpu
                .zip(put_cpu)
                .map(|(all, put)| all.saturating_sub(put)),
            checks: vec![
                speedup_check("≥ 0.8x raw", raw_get, ours_get, 0.8),
                // The storage's read-ahead may serve two neighbouring ranges with one request.
                Check {
                    target: "≤ 1 request per get".to_owned(),
                    met: get_log.len() <= gets && count(&get_log, "files/get") == get_log.len(),
                },
            ],
        },
    ])
}
