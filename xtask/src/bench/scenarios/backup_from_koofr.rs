//! Scenario 7: plakar backs up a Koofr folder (2000 × 16 KiB) into a local kloset, at its
//! default `-concurrency` and at 16; the baselines are `rclone copy` of the same folder and, at
//! the default, the same backup with the importer's read-ahead off.

use anyhow::ensure;
use koofr_e2e::plakar_demo::{Entry, PlakarSite, backup_id};

use super::{Bench, describe, emulator, seed_small_files, start_site};
use crate::bench::report::{Baseline, Row};

use crate::bench::plakar::{
    CONCURRENCIES, PlakarBench, READ_AHEAD_OFF, args, global, local_size, measure, ratio_check,
    rclone_config, rclone_copy, read_ahead_off, scratch, setting, speedup,
};

/// Runs scenario 7 and returns its rows (one per concurrency setting).
pub async fn backup_from_koofr(bench: &Bench, tools: &PlakarBench) -> anyhow::Result<Vec<Row>> {
    let (files, size) = (bench.sizes.small_files, bench.sizes.small_file_bytes);
    eprintln!("[7] backup from Koofr: {files} files of {} KiB", size >> 10);
    let site = start_site(bench, false).await?;
    let emu = emulator(&site)?;
    let source = site.path("source")?;
    seed_small_files(emu, &source, files, size);
    let local = scratch("backup-")?;
    let rclone_time = match &tools.rclone {
        Some(rclone) => {
            let config = rclone_config(rclone, emu, local.path())?;
            let target = local.path().join("rclone-copy");
            let time = rclone_copy(
                rclone,
                &config,
                &format!("emu:{source}"),
                &target.display().to_string(),
            )
            .await?;
            ensure!(
                local_size(&target)?.0 == files,
                "rclone copied a partial tree"
            );
            Some(time)
        }
        None => None,
    };
    let run = PlakarSite::start(&site, &tools.plakar, &tools.package).await?;
    run.add_entry(Entry::Source, "docs", &source, &[]).await?;
    run.add_entry(Entry::Source, "docs-one-by-one", &source, &[READ_AHEAD_OFF])
        .await?;
    let mut rows = Vec::new();
    for concurrency in CONCURRENCIES {
        let kloset = local
            .path()
            .join(format!("kloset-{}", setting(concurrency)));
        let kloset = kloset.display().to_string();
        run.ok(&["at", &kloset, "create", "-plaintext"]).await?;
        let g = global(concurrency);
        eprintln!("[7] plakar backup @docs, {}", setting(concurrency));
        let measured = measure(&run, &args(&g, &["at", &kloset, "backup", "@docs"])).await?;
        backup_id(&measured.output)?;
        let naive = match concurrency {
            None => {
                let kloset = local.path().join("kloset-read-ahead-off");
                let kloset = kloset.display().to_string();
                run.ok(&["at", &kloset, "create", "-plaintext"]).await?;
                eprintln!("[7] plakar backup @docs-one-by-one (read-ahead off)");
                let off = measure(
                    &run,
                    &args(&g, &["at", &kloset, "backup", "@docs-one-by-one"]),
                )
                .await?;
                backup_id(&off.output)?;
                Some(read_ahead_off(off.time()))
            }
            Some(_) => None,
        };
        let gets = measured
            .log
            .iter()
            .filter(|r| r.endpoint == "files/get")
            .count();
        let ratio = rclone_time.map(|t| speedup(t, measured.time()));
        let mut checks = Vec::new();
        if concurrency.is_none() {
            checks.push(ratio_check("≥ 1.5x rclone copy", ratio, 1.5));
        }
        checks.push(measured.rss_check());
        rows.push(Row {
            scenario: 7,
            operation: format!(
                "plakar backup of {files} × {} KiB from Koofr, {}",
                size >> 10,
                setting(concurrency)
            ),
            ours: measured.time(),
            naive,
            limit: rclone_time.map(|time| Baseline {
                label: "rclone copy Koofr → local, its defaults".to_owned(),
                time,
            }),
            requests: format!(
                "{} ({:.2} files/get per file)",
                describe(&measured.log),
                gets as f64 / files as f64
            ),
            peak_rss_kib: measured.peak_kib(),
            plugin_cpu: measured.plugin_cpu(),
            checks,
        });
    }
    Ok(rows)
}
