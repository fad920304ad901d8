//! Scenario 6: cold start of each plugin (spawn, `Init`, `Ping`) on an emulator without added
//! latency.

use std::time::{Duration, Instant};

use anyhow::Context;
use kloset_plugin::{Exporter, Importer, Store};
use koofr_testkit::Site;

use crate::bench::report::{Check, Row};

use super::{
    Bench, ProcessCost, describe, emulator, end_plugin, median, start_exporter, start_importer,
    start_store,
};

/// 6. Cold start: spawn → Init → Ping, per plugin, on an emulator without added latency.
pub async fn cold_start(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let runs = bench.sizes.cold_starts;
    eprintln!("[6] cold start: {runs} runs per plugin");
    // "Locally": the start-up cost itself, not the injected network latency.
    let site = Site::start_emulator().await?;
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
