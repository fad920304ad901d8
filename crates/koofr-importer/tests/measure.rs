//! Measurement (ignored by default): requests and the plugin's peak RSS for scanning a tree of
//! 10,000 files in 1,000 folders through the `koofr-importer` binary. Run it with
//! `cargo test -p koofr-importer --release --test measure -- --ignored --nocapture`
//! (set `MEASURE_FILES` for another size; folders are files / 10).

use futures::StreamExt;
use koofr_importer::testkit::{KoofrImporterSite, Transport};
use koofr_testkit::{Site, count};

const BIN: &str = env!("CARGO_BIN_EXE_koofr-importer");

fn vm_hwm_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run by hand with --ignored --nocapture"]
async fn scan_of_10k_files_in_1k_folders() {
    let files: usize = std::env::var("MEASURE_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let folders = (files / 10).max(1);
    let h = Site::start_emulator().await.unwrap();
    for i in 0..files {
        h.emulator().put_file(
            &format!("/test/tree/d{:04}/f{i:06}.bin", i % folders),
            vec![(i % 251) as u8; 16],
            1_700_000_000_000 + i as i64,
        );
    }
    let site = KoofrImporterSite::new(
        h.client().clone(),
        h.path("tree").unwrap(),
        h.plugin_config(&h.path("tree").unwrap()),
        Transport::Binary(BIN.into()),
    );
    let importer = site.connect_with(&[]).await.unwrap();
    let pid = site.live_plugins()[0]
        .plugin()
        .pid()
        .expect("a child process");
    let idle_kib = vm_hwm_kib(pid);
    h.take_requests();
    let mut stream = importer.scan().await.unwrap();
    let (mut records, mut with_content) = (0usize, 0usize);
    while let Some(record) = stream.next().await {
        let record = record.unwrap();
        records += 1;
        with_content += usize::from(record.has_reader);
    }
    let peak_kib = vm_hwm_kib(pid);
    let log = h.take_requests();
    importer.close().await.unwrap();
    kloset_plugin::suites::ImporterFixture::release(&site, importer)
        .await
        .unwrap();
    assert_eq!(with_content, files);
    assert_eq!(
        records,
        files + folders + 2 + 1,
        "files, folders, root and its 2 ancestors"
    );
    assert_eq!((log.len(), count(&log, "files/listrecursive")), (1, 1));
    eprintln!(
        "scan of {files} files in {folders} folders: {records} records, {} request(s) ({} listrecursive), \
         plugin VmHWM {idle_kib} KiB after Init, {peak_kib} KiB after the scan",
        log.len(),
        count(&log, "files/listrecursive")
    );
}
