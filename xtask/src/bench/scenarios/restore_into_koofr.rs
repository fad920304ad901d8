//! Scenario 8: plakar restores 2000 × 16 KiB from a local kloset into Koofr, at its default
//! `-concurrency` and at 16; the baseline is `rclone copy` of the same local folder up to Koofr.

use anyhow::ensure;
use koofr_e2e::plakar_demo::{Entry, PlakarSite, backup_id};

use super::{Bench, describe, emulator, start_site};
use crate::bench::report::{Baseline, Row};

use crate::bench::plakar::{
    CONCURRENCIES, PlakarBench, args, global, measure, rclone_config, rclone_copy, scratch,
    seed_local, setting,
};

/// Runs scenario 8 and returns its rows (one per concurrency setting).
pub async fn restore_into_koofr(bench: &Bench, tools: &PlakarBench) -> anyhow::Result<Vec<Row>> {
    let (files, size) = (bench.sizes.small_files, bench.sizes.small_file_bytes);
    eprintln!(
        "[8] restore into Koofr: {files} files of {} KiB",
        size >> 10
    );
    let site = start_site(bench, false).await?;
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
            checks: vec![measured.rss_check()],
        });
    }
    Ok(rows)
}
