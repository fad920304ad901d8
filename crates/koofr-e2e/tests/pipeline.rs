//! End-to-end through the real plugin binaries (built by a nested `cargo build` if needed):
//! the demo pipeline on a small tree, and the incremental property of a second scan.

use std::sync::OnceLock;

use bytes::Bytes;
use koofr_core::{UploadBody, UploadOptions};
use koofr_e2e::pipeline::{
    Locations, PipelineOptions, backup, create_kloset, kloset_config, run_demo,
};
use koofr_e2e::tree::{generate, seed};
use koofr_e2e::{PluginBinaries, Progress, TreeSpec, build_plugins};
use koofr_testkit::{Site, count_below};

fn binaries() -> PluginBinaries {
    static BINARIES: OnceLock<PluginBinaries> = OnceLock::new();
    BINARIES
        .get_or_init(|| build_plugins(false).expect("building the plugin binaries"))
        .clone()
}

async fn options() -> PipelineOptions {
    let binaries = tokio::task::spawn_blocking(binaries).await.unwrap();
    PipelineOptions::new(binaries, Progress::hidden())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_tree_round_trips_through_the_real_plugins() {
    let mut options = options().await;
    // Small packfiles, so files span packfiles and the restore needs several ranged gets.
    options.packfile_bytes = 2 << 20;
    let site = Site::start_emulator().await.unwrap();
    let spec = TreeSpec::small();
    let run = run_demo(&site, &spec, &options)
        .await
        .expect("demo pipeline");
    println!("{}", run.summary);
    let folders = run.manifest.folders.len() as u64;

    // Backup: every record acked and read once, nothing failed.
    let backup = &run.backup;
    assert!(backup.failures.is_empty(), "{:?}", backup.failures);
    assert_eq!(backup.files, 60);
    assert_eq!(backup.opened, 60);
    assert_eq!(backup.records, backup.files + backup.dirs);
    // The tree's folders, the root, and its ancestors `/` and `/e2e`.
    assert_eq!(backup.dirs, folders + 3);
    assert_eq!(backup.bytes_read, run.manifest.total_bytes());
    assert!(backup.packfiles >= 3, "{} packfiles", backup.packfiles);

    // Restore: one result per record, all Ok, and the tree is equal (checked by verify).
    let restore = &run.restore;
    assert!(restore.failures.is_empty(), "{:?}", restore.failures);
    assert_eq!(restore.results_ok, restore.records);
    assert_eq!(restore.files, 60);
    assert_eq!(restore.dirs, folders + 1);
    assert!(
        restore.ranged_gets > restore.files - 10,
        "{} gets",
        restore.ranged_gets
    );
    assert_eq!(run.verify.files, 60);

    // Request counts, phase by phase.
    let phase = |name: &str| {
        &run.summary
            .phases
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("phase {name}"))
            .requests
    };
    let source = run.locations.source.as_str();
    let kloset = run.locations.kloset.as_str();
    let restored = run.locations.restore.as_str();
    let log = phase("backup");
    assert_eq!(
        count_below(log, "files/listrecursive", source),
        1,
        "one listing per scan"
    );
    assert_eq!(
        count_below(log, "files/get", source),
        60,
        "one download per Open"
    );
    assert_eq!(
        count_below(log, "files/put", kloset) as u64,
        backup.puts,
        "one request per Put"
    );
    // The lock's Delete: koofr-storage removes the flat and the 2-hex-bucket name (§9).
    let removes = count_below(log, "files/remove", kloset) as u64;
    assert!(
        (backup.deletes..=2 * backup.deletes).contains(&removes),
        "{removes} removes for {} Delete",
        backup.deletes
    );
    let log = phase("restore");
    let packfiles = format!("{kloset}/packfiles");
    // The store reads ahead while the Gets walk forward through a packfile: several Gets share
    // one request, and none takes more than one.
    let packfile_gets = count_below(log, "files/get", &packfiles) as u64;
    assert!(
        (1..=restore.ranged_gets).contains(&packfile_gets),
        "{packfile_gets} requests for {} ranged Gets",
        restore.ranged_gets
    );
    assert_eq!(
        count_below(log, "files/put", restored),
        60,
        "one upload per file"
    );
    assert_eq!(count_below(log, "files/get", source), 0);

    // The rescan of the unchanged tree opens nothing and downloads nothing.
    let rescan = &run.rescan;
    assert_eq!(rescan.opened, 0);
    assert_eq!(rescan.reused, 60);
    assert_eq!(rescan.packfiles, 0);
    assert_eq!(rescan.snapshot.entries, backup.snapshot.entries);
    let log = phase("rescan");
    assert_eq!(count_below(log, "files/listrecursive", source), 1);
    assert_eq!(count_below(log, "files/get", source), 0, "no download");

    // Every plugin process exited cleanly and reported its peak memory.
    assert_eq!(run.summary.processes.len(), 7);
    for process in &run.summary.processes {
        assert_eq!(process.exit_code, Some(0), "{process:?}");
        assert!(process.peak_kib.is_some_and(|k| k > 0), "{process:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_scan_opens_only_the_changed_file() {
    let options = options().await;
    let site = Site::start_emulator().await.unwrap();
    let locations = Locations::under(&site).unwrap();
    let spec = TreeSpec {
        files: 20,
        max_file_bytes: 256 << 10,
        seed: 99,
    };
    let manifest = seed(
        &site,
        &locations.source,
        &generate(&spec),
        &Progress::hidden(),
    )
    .await
    .unwrap();
    let config = kloset_config(options.packfile_bytes);
    create_kloset(&site, &options, &locations.kloset, &config)
        .await
        .unwrap();
    let first = backup(&site, &options, &locations, &config, None, 0)
        .await
        .unwrap();
    assert_eq!(first.opened, 20);

    // Rewrite one file with other content and a new mtime.
    let (changed, _) = manifest.files.iter().nth(5).unwrap();
    let path = locations.source.join(changed).unwrap();
    let (parent, name) = path.split().unwrap();
    let options_upload = UploadOptions {
        modified_ms: Some(1_800_000_000_000),
        ..UploadOptions::default()
    };
    site.client()
        .upload(
            &parent,
            name,
            UploadBody::Bytes(Bytes::from_static(b"changed")),
            options_upload,
        )
        .await
        .unwrap();

    site.clear_requests();
    let second = backup(
        &site,
        &options,
        &locations,
        &config,
        Some(&first.snapshot),
        0,
    )
    .await
    .unwrap();
    assert!(second.failures.is_empty(), "{:?}", second.failures);
    assert_eq!(second.opened, 1, "only the changed file is opened");
    assert_eq!(second.reused, 19);
    let log = site.requests();
    assert_eq!(count_below(&log, "files/get", locations.source.as_str()), 1);
    let entry = second
        .snapshot
        .entries
        .iter()
        .find(|e| e.pathname == path.as_str())
        .unwrap();
    assert_eq!(entry.info.size, 7);
    use md5::Digest;
    let expected = hex::encode(md5::Md5::digest(b"changed"));
    assert_eq!(entry.md5.as_deref(), Some(expected.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_fails_the_backup_naming_phase_and_file() {
    let options = options().await;
    let site = Site::start_emulator().await.unwrap();
    let spec = TreeSpec {
        files: 12,
        max_file_bytes: 64 << 10,
        seed: 3,
    };
    let tree = generate(&spec);
    let victim = tree.files.iter().find(|f| f.size > 0).unwrap().path.clone();
    let victim_path = format!("{}/{victim}", site.path("source").unwrap());
    // Every download of that one file is refused; the others go through.
    site.emulator().faults().inject(
        koofr_emulator::FaultRule::status("files/get", 403)
            .path_prefix(&victim_path)
            .times(1000),
    );
    let err = run_demo(&site, &spec, &options)
        .await
        .expect_err("the backup must fail");
    let message = format!("{err:#}");
    assert!(message.contains("phase backup"), "{message}");
    assert!(message.contains(&victim_path), "{message}");
    assert!(message.contains("1 record(s) failed"), "{message}");
}
