//! The importer's read-ahead against the emulator's request log: `Open`s in scan order are
//! served from files fetched ahead (each file still downloaded exactly once), skipped files stop
//! the speculation (one changed file = one download), a file changed between its fetch and its
//! `Open` is served as listed and verified, and the byte budget and size limit hold.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use kloset_plugin::suites::{pattern_bytes, read_all, verify_pattern};
use kloset_plugin::{Importer, Record};
use koofr_emulator::RequestRecord;
use koofr_importer::readahead::ReadAheadLimits;
use koofr_importer::testkit::{KoofrImporterSite, Transport};
use koofr_importer::{KoofrImporter, SourceConfig};
use koofr_testkit::{Site, count};

const BIN: &str = env!("CARGO_BIN_EXE_koofr-importer");

/// `n` files of `size` bytes at `/test/src/fNNNN.bin` (seed = index), written directly into the
/// emulator; returns the harness with an empty request log.
async fn with_files(n: usize, size: usize) -> Site {
    let h = Site::start_emulator().await.unwrap();
    for i in 0..n {
        h.emulator().put_file(
            &format!("/test/src/f{i:04}.bin"),
            pattern_bytes(i as u64, 0, size),
            1_700_000_000_000 + i as i64,
        );
    }
    h.take_requests();
    h
}

fn importer(h: &Site, limits: Option<ReadAheadLimits>, plakar_concurrency: i64) -> KoofrImporter {
    let (mut config, _) =
        SourceConfig::from_map(&h.plugin_config(&h.path("src").unwrap())).unwrap();
    if let Some(limits) = limits {
        config.readahead = limits;
    }
    KoofrImporter::with_plakar_concurrency(config, plakar_concurrency).unwrap()
}

/// The pathnames of the files the scan announced, in scan order.
async fn scan_files(importer: &dyn Importer) -> Vec<String> {
    let mut stream = importer.scan().await.unwrap();
    let mut files = Vec::new();
    while let Some(record) = stream.next().await {
        let record: Record = record.unwrap();
        if record.has_reader {
            files.push(record.pathname);
        }
    }
    files
}

fn seed_of(pathname: &str) -> u64 {
    pathname[pathname.len() - 8..pathname.len() - 4]
        .parse()
        .unwrap()
}

/// Downloads per path in the log.
fn gets_by_path(log: &[RequestRecord]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in log.iter().filter(|r| r.endpoint == "files/get") {
        *out.entry(r.path.clone().unwrap_or_default()).or_default() += 1;
    }
    out
}

async fn open_and_verify(importer: &dyn Importer, pathname: &str, size: u64) {
    let stream = importer.open(pathname).await.unwrap();
    verify_pattern(stream, seed_of(pathname), 0, size)
        .await
        .unwrap_or_else(|e| panic!("{pathname}: {e}"));
}

/// Waits (up to 10 s) until the emulator has answered a download of `path` in full.
async fn wait_for_download(h: &Site, path: &str, size: u64) -> Vec<RequestRecord> {
    wait_for_downloads(h, &[path], size).await
}

/// Waits (up to 10 s) until the emulator has answered a download of each of `paths` in full;
/// then takes the log. (It peeks until then: a request taken from the log while it is being
/// answered would stay unanswered in the copy.)
async fn wait_for_downloads<S: AsRef<str>>(h: &Site, paths: &[S], size: u64) -> Vec<RequestRecord> {
    let done = |log: &[RequestRecord], path: &str| {
        log.iter().any(|r| {
            r.endpoint == "files/get" && r.path.as_deref() == Some(path) && r.bytes_out == size
        })
    };
    for _ in 0..1000 {
        let log = h.emulator().requests();
        if paths.iter().all(|p| done(&log, p.as_ref())) {
            return h.take_requests();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let paths: Vec<&str> = paths.iter().map(AsRef::as_ref).collect();
    panic!(
        "{paths:?} were never all read ahead: {:?}",
        h.take_requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_opens_are_read_ahead_and_each_file_is_downloaded_once() {
    const SIZE: usize = 3_000;
    let h = with_files(60, SIZE).await;
    let importer = importer(&h, None, 1);
    let files = scan_files(&importer).await;
    assert_eq!(files.len(), 60);
    h.take_requests();
    // The first Open alone speculates nothing.
    open_and_verify(&importer, &files[0], SIZE as u64).await;
    assert_eq!(importer.readahead().held(), (0, 0));
    // The second, next to it in scan order, starts fetching the files after it.
    let second = importer.open(&files[1]).await.unwrap();
    let (fetching, reserved) = importer.readahead().held();
    assert!(
        fetching >= 1,
        "nothing is read ahead after two Opens in order"
    );
    assert_eq!(reserved, fetching as u64 * SIZE as u64);
    verify_pattern(second, 1, 0, SIZE as u64).await.unwrap();
    // The next file arrives before it is opened.
    let mut log = wait_for_download(&h, &files[2], SIZE as u64).await;
    for file in &files[2..] {
        open_and_verify(&importer, file, SIZE as u64).await;
    }
    assert_eq!(
        importer.readahead().held(),
        (0, 0),
        "everything fetched was taken"
    );
    log.extend(h.take_requests());
    let by_path = gets_by_path(&log);
    assert_eq!(count(&log, "files/get"), 60, "{by_path:?}");
    for file in &files {
        assert_eq!(by_path.get(file), Some(&1), "{file} downloaded once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_files_stop_the_speculation() {
    // An incremental backup: plakar acks unchanged records without opening them.
    let h = with_files(200, 1_000).await;
    let importer = importer(&h, None, 1);
    let files = scan_files(&importer).await;
    h.take_requests();
    open_and_verify(&importer, &files[120], 1_000).await;
    assert_eq!(importer.readahead().held(), (0, 0));
    let log = h.take_requests();
    assert_eq!(
        (log.len(), count(&log, "files/get")),
        (1, 1),
        "one changed file of 200 = one download: {log:?}"
    );
    // Files changed here and there: one download each, nothing speculated.
    for i in [20, 90, 160] {
        open_and_verify(&importer, &files[i], 1_000).await;
        assert_eq!(importer.readahead().held(), (0, 0), "after {}", files[i]);
    }
    assert_eq!(count(&h.take_requests(), "files/get"), 3);
    // A run of Opens in order speculates; a jump away drops what it fetched behind.
    for file in &files[165..169] {
        open_and_verify(&importer, file, 1_000).await;
    }
    assert!(importer.readahead().held().0 > 0);
    open_and_verify(&importer, &files[190], 1_000).await;
    assert_eq!(
        importer.readahead().held(),
        (0, 0),
        "a jump ends the speculation and drops the files left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_after_its_fetch_is_served_as_listed_and_one_changed_before_fails() {
    const SIZE: usize = 5_000;
    let h = with_files(12, SIZE).await;
    let importer = importer(&h, None, 1);
    let files = scan_files(&importer).await;
    // Changed after the listing, before anything is fetched.
    let later = &files[11];
    h.emulator()
        .put_file(later, vec![7u8; SIZE], 1_700_000_009_999);
    open_and_verify(&importer, &files[0], SIZE as u64).await;
    open_and_verify(&importer, &files[1], SIZE as u64).await;
    wait_for_download(&h, &files[3], SIZE as u64).await;
    // Changed on Koofr after it was read ahead, before plakar opens it: the version the scan
    // listed (what the record told plakar) is served, verified, without another download.
    h.emulator()
        .put_file(&files[3], vec![7u8; SIZE + 1], 1_700_000_009_999);
    h.take_requests();
    open_and_verify(&importer, &files[2], SIZE as u64).await;
    open_and_verify(&importer, &files[3], SIZE as u64).await;
    assert_eq!(gets_by_path(&h.take_requests()).get(&files[3]), None);
    // Changed before its fetch: the fetch fails, and Open downloads again and fails as without
    // read-ahead.
    for file in &files[4..11] {
        open_and_verify(&importer, file, SIZE as u64).await;
    }
    let err = read_all(importer.open(later).await.unwrap())
        .await
        .unwrap_err();
    assert!(
        err.message().contains(later.as_str()) && err.message().contains("changed"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_and_the_size_limit_hold() {
    const SIZE: usize = 300 << 10;
    let h = with_files(24, SIZE).await;
    let limits = ReadAheadLimits {
        budget: 1 << 20,
        max_file: 1 << 20,
    };
    let limited = importer(&h, Some(limits), 1);
    let files = scan_files(&limited).await;
    for file in &files[..12] {
        open_and_verify(&limited, file, SIZE as u64).await;
        let (fetching, reserved) = limited.readahead().held();
        assert!(
            reserved <= limits.budget && fetching <= 3,
            "{fetching} files, {reserved} bytes ahead"
        );
    }
    // Content served but not yet read still counts: three unread files fill the budget, so
    // nothing more is fetched until they are consumed or dropped. (Wait until all three have
    // arrived: dropping an unread `Open` whose fetch is still running cancels the download.)
    let mut log = wait_for_downloads(&h, &files[12..15], SIZE as u64).await;
    let mut unread = Vec::new();
    for file in &files[12..15] {
        unread.push(limited.open(file).await.unwrap());
    }
    assert_eq!(limited.readahead().held(), (0, 3 * SIZE as u64));
    drop(unread);
    assert!(limited.readahead().held().0 > 0, "fetching resumes");
    for file in &files[15..] {
        open_and_verify(&limited, file, SIZE as u64).await;
    }
    log.extend(h.take_requests());
    assert_eq!(count(&log, "files/get"), 24, "{:?}", gets_by_path(&log));
    // Files above the size limit are never read ahead.
    let small = ReadAheadLimits {
        budget: 16 << 20,
        max_file: (SIZE - 1) as u64,
    };
    let streamed = importer(&h, Some(small), 1);
    let files = scan_files(&streamed).await;
    h.take_requests();
    for file in &files[..6] {
        open_and_verify(&streamed, file, SIZE as u64).await;
        assert_eq!(streamed.readahead().held(), (0, 0));
    }
    assert_eq!(count(&h.take_requests(), "files/get"), 6);
    // And `readahead_mib = 0` turns it off.
    let mut map = h.plugin_config(&h.path("src").unwrap());
    map.insert("readahead_mib".to_owned(), "0".to_owned());
    assert!(
        !KoofrImporter::from_config_map(&map)
            .unwrap()
            .readahead()
            .enabled()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_binary_opens_in_order_make_one_download_per_file_and_skips_make_none() {
    const SIZE: usize = 2_000;
    let h = with_files(200, SIZE).await;
    let site = KoofrImporterSite::new(
        h.client().clone(),
        h.path("src").unwrap(),
        h.plugin_config(&h.path("src").unwrap()),
        Transport::Binary(BIN.into()),
    );
    // An incremental backup: one file of 200 opened.
    let remote = site.connect_with(&[]).await.unwrap();
    let files = scan_files(&*remote).await;
    assert_eq!(files.len(), 200);
    h.take_requests();
    open_and_verify(&*remote, &files[77], SIZE as u64).await;
    remote.close().await.unwrap();
    kloset_plugin::suites::ImporterFixture::release(&site, remote)
        .await
        .unwrap();
    let log = h.take_requests();
    assert_eq!(count(&log, "files/get"), 1, "{log:?}");
    // A full backup: every file opened in order, each downloaded once, the later ones before
    // their Open.
    let remote = site.connect_with(&[]).await.unwrap();
    let files = scan_files(&*remote).await;
    h.take_requests();
    for file in &files[..3] {
        open_and_verify(&*remote, file, SIZE as u64).await;
    }
    let mut log = wait_for_download(&h, &files[3], SIZE as u64).await;
    for file in &files[3..] {
        open_and_verify(&*remote, file, SIZE as u64).await;
    }
    remote.close().await.unwrap();
    kloset_plugin::suites::ImporterFixture::release(&site, remote)
        .await
        .unwrap();
    log.extend(h.take_requests());
    let by_path = gets_by_path(&log);
    assert_eq!(by_path.len(), 200);
    assert!(by_path.values().all(|n| *n == 1), "{by_path:?}");
}
