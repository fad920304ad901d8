//! Scenario 9: a kloset on Koofr. plakar backs up 2000 × 16 KiB and one large file into it,
//! restores from it and checks it, at its default `-concurrency` and at 16; the baseline is the
//! same commands on a local filesystem kloset and, for the restore at the default, the same
//! restore with the storage's read-ahead off.

use std::path::Path;

use anyhow::ensure;
use koofr_e2e::plakar_demo::{Entry, PlakarSite, backup_id};

use super::{Bench, describe, start_site};
use crate::bench::report::{Baseline, Row};

use crate::bench::plakar::{
    CONCURRENCIES, PlakarBench, READ_AHEAD_OFF, args, global, local_size, measure, ratio_check,
    read_ahead_off, scratch, seed_local, setting, speedup,
};

/// Runs scenario 9 and returns its rows (backup, restore, check per concurrency setting).
pub async fn kloset_on_koofr(bench: &Bench, tools: &PlakarBench) -> anyhow::Result<Vec<Row>> {
    let (files, size) = (bench.sizes.small_files, bench.sizes.small_file_bytes);
    let large = bench.sizes.large_file_bytes.min(64 << 20);
    eprintln!(
        "[9] kloset on Koofr: {files} files of {} KiB and one of {} MiB",
        size >> 10,
        large >> 20
    );
    let site = start_site(bench, false).await?;
    let local = scratch("kloset-")?;
    let tree = local.path().join("tree");
    let total = seed_local(&tree, files, size, large)?;
    let tree = tree.display().to_string();
    let run = PlakarSite::start(&site, &tools.plakar, &tools.package).await?;
    let mut rows = Vec::new();
    for concurrency in CONCURRENCIES {
        let g = global(concurrency);
        let n = concurrency.unwrap_or(0);
        let name = format!("kloset{n}");
        run.add_entry(Entry::Store, &name, &site.path(&name)?, &[])
            .await?;
        let koofr = format!("@{name}");
        let disk = local
            .path()
            .join(format!("local-kloset-{n}"))
            .display()
            .to_string();
        let mut times = Vec::new();
        let mut restore_off = None;
        for kloset in [koofr.as_str(), disk.as_str()] {
            run.ok(&["at", kloset, "create", "-plaintext"]).await?;
            eprintln!(
                "[9] {kloset}: backup, restore, check, {}",
                setting(concurrency)
            );
            let backup = measure(&run, &args(&g, &["at", kloset, "backup", &tree])).await?;
            let id = backup_id(&backup.output)?;
            let out = local.path().join(format!("out-{n}-{}", times.len()));
            let out = out.display().to_string();
            let restore = measure(
                &run,
                &args(&g, &["at", kloset, "restore", "-to", &out, &id]),
            )
            .await?;
            let restored = local_size(Path::new(&out))?;
            ensure!(
                restored == (files + usize::from(large > 0), total),
                "{kloset}: restored {restored:?}, expected {} files and {total} bytes",
                files + usize::from(large > 0)
            );
            if concurrency.is_none() && kloset == koofr {
                // The same kloset through an entry with the read-ahead off.
                let plain = format!("{name}-one-by-one");
                run.add_entry(Entry::Store, &plain, &site.path(&name)?, &[READ_AHEAD_OFF])
                    .await?;
                let out = local.path().join(format!("out-{n}-read-ahead-off"));
                let out = out.display().to_string();
                let off = measure(
                    &run,
                    &args(
                        &g,
                        &["at", &format!("@{plain}"), "restore", "-to", &out, &id],
                    ),
                )
                .await?;
                ensure!(
                    local_size(Path::new(&out))? == restored,
                    "@{plain}: restored a different tree"
                );
                restore_off = Some(read_ahead_off(off.time()));
            }
            let check = measure(&run, &args(&g, &["at", kloset, "check"])).await?;
            times.push([backup, restore, check]);
        }
        let [koofr_ops, disk_ops] = [&times[0], &times[1]];
        for (index, (operation, target)) in [
            ("backup into", None),
            (
                "restore from",
                Some(("≤ 1.5x the local kloset's time", 1.0 / 1.5)),
            ),
            ("check of", Some(("≤ 2x the local kloset's time", 0.5))),
        ]
        .into_iter()
        .enumerate()
        {
            let (ours, base) = (&koofr_ops[index], &disk_ops[index]);
            let ratio = Some(speedup(base.time(), ours.time()));
            let mut checks = Vec::new();
            if let Some((label, at_least)) = target.filter(|_| concurrency.is_none()) {
                checks.push(ratio_check(label, ratio, at_least));
            }
            checks.push(ours.rss_check());
            let gets = ours
                .log
                .iter()
                .filter(|r| r.endpoint == "files/get")
                .count();
            rows.push(Row {
                scenario: 9,
                operation: format!(
                    "plakar {operation} a Koofr kloset ({files} × {} KiB + {} MiB), {}",
                    size >> 10,
                    large >> 20,
                    setting(concurrency)
                ),
                ours: ours.time(),
                naive: if index == 1 { restore_off.take() } else { None },
                limit: Some(Baseline::new(
                    "the same on a local filesystem kloset",
                    base.time(),
                )),
                requests: if gets > 0 {
                    format!("{} ({gets} files/get)", describe(&ours.log))
                } else {
                    describe(&ours.log)
                },
                peak_rss_kib: ours.peak_kib(),
                plugin_cpu: ours.plugin_cpu(),
                checks,
            });
        }
    }
    Ok(rows)
}
