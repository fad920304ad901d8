//! Scenario 10: the same plugins under plakar v1.0.x (protocol v1), at its default
//! `-concurrency`: a backup of a Koofr folder (2000 × 16 KiB; baseline `rclone copy`) and a
//! restore from a kloset on Koofr (baseline the same restore from a local kloset), each also
//! run with the read-ahead off.

use std::path::Path;

use anyhow::ensure;
use koofr_e2e::plakar_demo::{Entry, PlakarSite, backup_id};

use super::{Bench, describe, emulator, seed_small_files, start_site};
use crate::bench::plakar::{
    Measured, PlakarBench, READ_AHEAD_OFF, args, local_size, measure, ratio_check, rclone_config,
    rclone_copy, read_ahead_off, scratch, seed_local, speedup,
};
use crate::bench::report::{Baseline, Row};

/// Runs scenario 10 with `tools` prepared for plakar v1.0.x.
pub async fn plakar_1_0(bench: &Bench, tools: &PlakarBench) -> anyhow::Result<Vec<Row>> {
    let (files, size) = (bench.sizes.small_files, bench.sizes.small_file_bytes);
    let version = tools.plakar.version().to_owned();
    eprintln!("[10] {version}: backup from Koofr, restore from a Koofr kloset");
    let site = start_site(bench, false).await?;
    let emu = emulator(&site)?;
    let local = scratch("plakar-1.0-")?;
    let run = PlakarSite::start(&site, &tools.plakar, &tools.package).await?;

    // Backup of a Koofr folder into a local kloset.
    let source = site.path("source")?;
    seed_small_files(emu, &source, files, size);
    let rclone_time = match &tools.rclone {
        Some(rclone) => {
            let config = rclone_config(rclone, emu, local.path())?;
            let target = local.path().join("rclone-copy");
            let target = target.display().to_string();
            Some(rclone_copy(rclone, &config, &format!("emu:{source}"), &target).await?)
        }
        None => None,
    };
    run.add_entry(Entry::Source, "docs", &source, &[]).await?;
    run.add_entry(Entry::Source, "docs-one-by-one", &source, &[READ_AHEAD_OFF])
        .await?;
    let mut backups = Vec::new();
    for entry in ["@docs", "@docs-one-by-one"] {
        let kloset = local.path().join(format!("kloset-{}", &entry[1..]));
        let kloset = kloset.display().to_string();
        run.ok(&["at", &kloset, "create", "-plaintext"]).await?;
        eprintln!("[10] plakar backup {entry}");
        let measured = measure(&run, &args(&[], &["at", &kloset, "backup", entry])).await?;
        backup_id(&measured.output)?;
        backups.push(measured);
    }
    let [backup, backup_off] = <[Measured; 2]>::try_from(backups)
        .ok()
        .expect("two backups");
    let gets = backup
        .log
        .iter()
        .filter(|r| r.endpoint == "files/get")
        .count();
    let mut rows = vec![Row {
        scenario: 10,
        operation: format!(
            "{version} (protocol v1) backup of {files} × {} KiB from Koofr, default -concurrency",
            size >> 10
        ),
        ours: backup.time(),
        naive: Some(read_ahead_off(backup_off.time())),
        limit: rclone_time.map(|time| Baseline {
            label: "rclone copy Koofr → local, its defaults".to_owned(),
            time,
        }),
        requests: format!(
            "{} ({:.2} files/get per file)",
            describe(&backup.log),
            gets as f64 / files as f64
        ),
        peak_rss_kib: backup.peak_kib(),
        plugin_cpu: backup.plugin_cpu(),
        checks: vec![
            ratio_check(
                "≥ 1.5x rclone copy",
                rclone_time.map(|t| speedup(t, backup.time())),
                1.5,
            ),
            backup.rss_check(),
        ],
    }];

    // Restore from a kloset on Koofr, and from the same backup in a local kloset.
    let large = bench.sizes.large_file_bytes.min(64 << 20);
    let tree = local.path().join("tree");
    let total = seed_local(&tree, files, size, large)?;
    let tree = tree.display().to_string();
    let expected = (files + usize::from(large > 0), total);
    let kloset = site.path("kloset")?;
    run.add_entry(Entry::Store, "kloset", &kloset, &[]).await?;
    run.add_entry(
        Entry::Store,
        "kloset-one-by-one",
        &kloset,
        &[READ_AHEAD_OFF],
    )
    .await?;
    let disk = local.path().join("local-kloset").display().to_string();
    let mut ids = Vec::new();
    for at in ["@kloset", disk.as_str()] {
        run.ok(&["at", at, "create", "-plaintext"]).await?;
        let backup = measure(&run, &args(&[], &["at", at, "backup", &tree])).await?;
        ids.push(backup_id(&backup.output)?);
    }
    let mut restores = Vec::new();
    for (at, id) in [
        ("@kloset", &ids[0]),
        ("@kloset-one-by-one", &ids[0]),
        (disk.as_str(), &ids[1]),
    ] {
        let out = local.path().join(format!("out-{}", restores.len()));
        let out = out.display().to_string();
        eprintln!("[10] plakar at {at} restore");
        let measured = measure(&run, &args(&[], &["at", at, "restore", "-to", &out, id])).await?;
        let restored = local_size(Path::new(&out))?;
        ensure!(
            restored == expected,
            "{at}: restored {restored:?}, expected {expected:?}"
        );
        restores.push(measured);
    }
    let [restore, restore_off, restore_disk] = <[Measured; 3]>::try_from(restores)
        .ok()
        .expect("three restores");
    let gets = restore
        .log
        .iter()
        .filter(|r| r.endpoint == "files/get")
        .count();
    rows.push(Row {
        scenario: 10,
        operation: format!(
            "{version} (protocol v1) restore from a Koofr kloset ({files} × {} KiB + {} MiB), \
             default -concurrency",
            size >> 10,
            large >> 20
        ),
        ours: restore.time(),
        naive: Some(read_ahead_off(restore_off.time())),
        limit: Some(Baseline::new(
            "the same on a local filesystem kloset",
            restore_disk.time(),
        )),
        requests: format!("{} ({gets} files/get)", describe(&restore.log)),
        peak_rss_kib: restore.peak_kib(),
        plugin_cpu: restore.plugin_cpu(),
        checks: vec![
            ratio_check(
                "≤ 1.5x the local kloset's time",
                Some(speedup(restore_disk.time(), restore.time())),
                1.0 / 1.5,
            ),
            restore.rss_check(),
        ],
    });
    Ok(rows)
}
