//! Behaviour of the Koofr importer against the emulator's request log: one listing request per
//! scan, identical rescans, one download per open, retries, resumes, the per-folder fallback,
//! files that change or vanish after listing, pathnames and location info.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use kloset_plugin::suites::{read_all, sample_tree, verify_pattern};
use kloset_plugin::{ConnectorErrorKind, FileInfo, Importer, LocationFlags, Record};
use koofr_core::plakar::CONNECTOR_TYPE;
use koofr_emulator::FaultRule;
use koofr_importer::testkit::{KoofrImporterSite, Transport, write_tree};
use koofr_importer::{ANCESTOR_TIME, DIR_MODE, FILE_MODE, KoofrImporter};
use koofr_testkit::{Site, count};

const BIN: &str = env!("CARGO_BIN_EXE_koofr-importer");

async fn scan_all(importer: &dyn Importer) -> Vec<Record> {
    let mut stream = importer.scan().await.expect("scan starts");
    let mut records = Vec::new();
    while let Some(record) = stream.next().await {
        records.push(record.expect("no fatal scan error"));
    }
    records
}

/// An emulator harness with the sample tree written at `/test/src`.
async fn with_sample_tree() -> Site {
    let h = Site::start_emulator().await.unwrap();
    write_tree(h.client(), &h.path("src").unwrap(), &sample_tree())
        .await
        .unwrap();
    h.take_requests();
    h
}

/// `importer` reads `pathname` as the pattern of `seed`, `len` bytes.
async fn assert_reads(importer: &dyn Importer, pathname: &str, seed: u64, len: u64) {
    let stream = importer.open(pathname).await.unwrap();
    verify_pattern(stream, seed, 0, len).await.unwrap();
}

/// `log` holds `n` requests, all to `endpoint`.
fn assert_only(log: &[koofr_emulator::RequestRecord], endpoint: &str, n: usize) {
    assert_eq!((log.len(), count(log, endpoint)), (n, n), "{log:?}");
}

fn new_importer(h: &Site, relative: &str) -> KoofrImporter {
    KoofrImporter::from_config_map(&h.plugin_config(&h.path(relative).unwrap())).unwrap()
}

fn by_path(records: &[Record]) -> BTreeMap<String, Option<FileInfo>> {
    records
        .iter()
        .map(|r| (r.pathname.clone(), r.file_info.clone()))
        .collect()
}

#[tokio::test]
async fn a_scan_is_one_listing_request_and_a_rescan_is_identical() {
    let h = with_sample_tree().await;
    let importer = new_importer(&h, "src");
    let first = scan_all(&importer).await;
    let log = h.take_requests();
    assert_eq!(log.len(), 1, "one request for the whole tree: {log:?}");
    assert_eq!(count(&log, "files/listrecursive"), 1);
    // Ancestors, root, and the 10 entries of the tree.
    assert_eq!(first.len(), 2 + 1 + sample_tree().len());
    let second = scan_all(&importer).await;
    assert_eq!(
        first, second,
        "an unchanged tree must give identical records"
    );
    let fresh = scan_all(&new_importer(&h, "src")).await;
    assert_eq!(
        first, fresh,
        "a new process must give identical records too"
    );
    assert_eq!(
        count(&h.take_requests(), "files/get"),
        0,
        "scanning never downloads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statistics_process_only_lists() {
    // Plakar's second importer process scans and acks, never opens: one listing, no download.
    let h = with_sample_tree().await;
    let site = KoofrImporterSite::new(
        h.client().clone(),
        h.path("src").unwrap(),
        h.plugin_config(&h.path("src").unwrap()),
        Transport::Binary(BIN.into()),
    );
    let importer = site.connect_with(&[]).await.unwrap();
    let records = scan_all(&*importer).await;
    assert_eq!(records.iter().filter(|r| r.has_reader).count(), 6);
    importer.close().await.unwrap();
    kloset_plugin::suites::ImporterFixture::release(&site, importer)
        .await
        .unwrap();
    assert_only(&h.take_requests(), "files/listrecursive", 1);
}

#[tokio::test]
async fn opening_one_file_is_one_request_and_content_is_streamed() {
    let h = with_sample_tree().await;
    let importer = new_importer(&h, "src");
    scan_all(&importer).await;
    h.take_requests();
    let stream = importer.open("/test/src/docs/a.txt").await.unwrap();
    assert!(
        h.take_requests().is_empty(),
        "open is lazy: nothing is requested before reading"
    );
    verify_pattern(stream, 3, 0, 4_321).await.unwrap();
    assert_only(&h.take_requests(), "files/get", 1);
    // Chunks of a large file arrive as they are downloaded (never one whole-file buffer).
    let mut stream = importer.open("/test/src/z-large.bin").await.unwrap();
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        assert!(chunk.unwrap().len() < 5 << 20);
        chunks += 1;
    }
    assert!(chunks > 1);
}

#[tokio::test]
async fn a_cut_download_is_resumed_and_verified() {
    let h = with_sample_tree().await;
    let importer = new_importer(&h, "src");
    scan_all(&importer).await;
    h.emulator()
        .faults()
        .inject(FaultRule::truncate_body("files/get", 1_500_000));
    h.emulator()
        .faults()
        .inject(FaultRule::status("files/get", 503).skip(1));
    h.take_requests();
    assert_reads(&importer, "/test/src/z-large.bin", 6, 5 << 20).await;
    let log = h.take_requests();
    let gets: Vec<u16> = log
        .iter()
        .filter(|r| r.endpoint == "files/get")
        .map(|r| r.status)
        .collect();
    // The cut response, the resume answered 503, the resume that succeeds.
    assert_eq!(gets.len(), 3, "{gets:?}");
    assert_eq!(gets[1], 503);
}

#[tokio::test]
async fn listing_errors_before_streaming_are_retried() {
    let h = with_sample_tree().await;
    let faults = h.emulator().faults();
    faults.inject(FaultRule::status("files/listrecursive", 500));
    faults.inject(
        FaultRule::status("files/listrecursive", 429)
            .skip(1)
            .times(2),
    );
    let importer = new_importer(&h, "src");
    let records = scan_all(&importer).await;
    assert_eq!(records.len(), 13);
    assert_only(&h.take_requests(), "files/listrecursive", 4);
}

#[tokio::test]
async fn a_listing_cut_mid_stream_is_restarted_without_duplicates() {
    let h = with_sample_tree().await;
    let reference = scan_all(&new_importer(&h, "src")).await;
    h.take_requests();
    // Cut after the first few lines (the root and some entries were already sent).
    h.emulator()
        .faults()
        .inject(FaultRule::truncate_body("files/listrecursive", 700));
    let importer = new_importer(&h, "src");
    let records = scan_all(&importer).await;
    assert_eq!(by_path(&records), by_path(&reference));
    assert_eq!(records.len(), reference.len(), "no record sent twice");
    assert_only(&h.take_requests(), "files/listrecursive", 2);
    assert_reads(&importer, "/test/src/z-large.bin", 6, 5 << 20).await;
    // A listing that keeps breaking ends the scan with a fatal, named error.
    h.emulator()
        .faults()
        .inject(FaultRule::truncate_body("files/listrecursive", 700).times(20));
    let mut stream = new_importer(&h, "src").scan().await.unwrap();
    let mut last = None;
    while let Some(item) = stream.next().await {
        last = Some(item);
    }
    let err = last.unwrap().unwrap_err();
    assert!(
        err.message().contains("listing broke off") && err.message().contains("/test/src"),
        "{err}"
    );
}

#[tokio::test]
async fn a_refused_recursive_listing_falls_back_to_a_folder_walk() {
    let h = with_sample_tree().await;
    let reference = by_path(&scan_all(&new_importer(&h, "src")).await);
    h.take_requests();
    for status in [400, 405, 501] {
        h.emulator()
            .faults()
            .inject(FaultRule::status("files/listrecursive", status).times(5));
        let importer = new_importer(&h, "src");
        let records = scan_all(&importer).await;
        assert_eq!(
            by_path(&records),
            reference,
            "the walk must give the same records (after {status})"
        );
        for (i, r) in records.iter().enumerate() {
            if let Some(cut) = r.pathname.rfind('/').filter(|_| r.pathname != "/") {
                let parent = if cut == 0 { "/" } else { &r.pathname[..cut] };
                let p = records.iter().position(|x| x.pathname == parent).unwrap();
                assert!(p < i, "{} before its parent", r.pathname);
            }
        }
        let log = h.take_requests();
        // The refused listing (never retried: a refusal is permanent), one info of the root,
        // one list per folder.
        assert_eq!(count(&log, "files/listrecursive"), 1, "{status}: {log:?}");
        assert_eq!(count(&log, "files/info"), 1);
        assert_eq!(
            count(&log, "files/list"),
            5,
            "root, docs, docs/deep, docs/deep/er, empty-dir"
        );
        assert_reads(&importer, "/test/src/docs/deep/er/b c.txt", 5, 77).await;
        h.emulator().faults().clear();
    }
}

#[tokio::test]
async fn files_that_change_or_vanish_after_listing_fail_alone() {
    let h = with_sample_tree().await;
    let importer = new_importer(&h, "src");
    scan_all(&importer).await;
    h.emulator()
        .put_file("/test/src/docs/a.txt", vec![1u8; 4_321], 1_700_000_009_999);
    assert!(h.emulator().remove("/test/src/one.bin"));
    let err = read_all(importer.open("/test/src/docs/a.txt").await.unwrap())
        .await
        .unwrap_err();
    assert!(
        err.message().contains("/test/src/docs/a.txt") && err.message().contains("changed"),
        "{err}"
    );
    let err = read_all(importer.open("/test/src/one.bin").await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ConnectorErrorKind::NotFound);
    assert!(
        err.message().contains("/test/src/one.bin") && err.message().contains("no longer exists"),
        "{err}"
    );
    // The others still read; pathnames never announced are not found.
    assert_reads(&importer, "/test/src/docs/deep/er/b c.txt", 5, 77).await;
    for never in ["/test/src/docs", "/test/src/nope", "/test/src/Docs/a.txt"] {
        let err = importer.open(never).await.map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ConnectorErrorKind::NotFound, "{never}: {err}");
    }
}

#[tokio::test]
async fn pathnames_names_modes_and_times_follow_plakar_rules() {
    let h = Site::start_emulator().await.unwrap();
    h.emulator()
        .put_file("/test/Photos/2024/a.jpg", vec![7u8; 10], 1_591_868_314_156);
    let importer = new_importer(&h, "Photos");
    let records = scan_all(&importer).await;
    let summary: Vec<(&str, &str, u32, i64)> = records
        .iter()
        .map(|r| {
            let info = r.file_info.as_ref().unwrap();
            (
                r.pathname.as_str(),
                info.name.as_str(),
                info.mode.0,
                info.size,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("/", "/", DIR_MODE.0, 0),
            ("/test", "test", DIR_MODE.0, 0),
            ("/test/Photos", "Photos", DIR_MODE.0, 0),
            ("/test/Photos/2024", "2024", DIR_MODE.0, 0),
            ("/test/Photos/2024/a.jpg", "a.jpg", FILE_MODE.0, 10),
        ]
    );
    assert_eq!(
        records[0].file_info.as_ref().unwrap().mod_time,
        ANCESTOR_TIME
    );
    assert_eq!(
        records[1].file_info.as_ref().unwrap().mod_time,
        ANCESTOR_TIME
    );
    let ts =
        kloset_plugin::system_time_to_timestamp(records[4].file_info.as_ref().unwrap().mod_time);
    assert_eq!((ts.seconds, ts.nanos), (1_591_868_314, 156_000_000));
    let photos = h.emulator().stat("/test/Photos").unwrap();
    assert_eq!(
        kloset_plugin::unix_millis(records[2].file_info.as_ref().unwrap().mod_time),
        photos.modified_ms,
        "a folder takes Koofr's own time"
    );
    for r in &records {
        assert!(r.target.is_empty() && r.extended_attributes.is_empty() && r.file_attributes == 0);
        let info = r.file_info.as_ref().unwrap();
        assert_eq!(
            (info.dev, info.ino, info.uid, info.gid, info.nlink),
            (0, 0, 0, 0, 0)
        );
    }

    // The mount root: `/` named `/`, no ancestors.
    let mut config = h.plugin_config(h.base());
    config.insert("location".to_owned(), "koofr:///".to_owned());
    let records = scan_all(&KoofrImporter::from_config_map(&config).unwrap()).await;
    assert_eq!(
        (
            records[0].pathname.as_str(),
            records[0].file_info.as_ref().unwrap().name.as_str()
        ),
        ("/", "/")
    );
    assert!(
        records
            .iter()
            .any(|r| r.pathname == "/test/Photos/2024/a.jpg")
    );

    // A location that is a file is a fatal, named error.
    let mut config = h.plugin_config(h.base());
    config.insert(
        "location".to_owned(),
        "koofr:///test/Photos/2024/a.jpg".to_owned(),
    );
    let err = KoofrImporter::from_config_map(&config)
        .unwrap()
        .scan()
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.message().contains("/test/Photos/2024/a.jpg") && err.message().contains("not a folder"),
        "{err}"
    );
    // A missing one too.
    let err = new_importer(&h, "missing")
        .scan()
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), ConnectorErrorKind::NotFound, "{err}");
    assert!(err.message().contains("/test/missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_reports_origin_type_root_and_the_optional_stream_flag() {
    let h = Site::start_emulator().await.unwrap();
    h.emulator().create_folder_all("/test/Photos");
    let site = KoofrImporterSite::new(
        h.client().clone(),
        h.path("Photos").unwrap(),
        h.plugin_config(&h.path("Photos").unwrap()),
        Transport::Binary(BIN.into()),
    );
    let expected_origin = h.client().config().plakar_origin();
    for (extra, flags) in [
        (vec![], 0),
        (vec![("stream", "true")], LocationFlags::STREAM),
    ] {
        let importer: Arc<dyn Importer> = site.connect_with(&extra).await.unwrap();
        let location = importer.location();
        assert_eq!(location.r#type, CONNECTOR_TYPE);
        assert_eq!(location.origin, expected_origin);
        assert!(location.origin.contains("127.0.0.1"), "{}", location.origin);
        assert_eq!(location.root, "/test/Photos");
        assert_eq!(location.flags, flags);
        importer.ping().await.unwrap();
        importer.close().await.unwrap();
        kloset_plugin::suites::ImporterFixture::release(&site, importer)
            .await
            .unwrap();
    }
    // Init errors name the key and never hold the password.
    let err = site
        .connect_with(&[("stream", "sometimes")])
        .await
        .map(|_| ())
        .unwrap_err();
    let password = h.secret();
    assert!(
        err.message().contains("stream") && !err.message().contains(password),
        "{err}"
    );
}

#[tokio::test]
async fn records_stream_while_the_listing_arrives() {
    // A consumer that reads a few records and stops must not wait for (or hold) the whole tree.
    let h = Site::start_emulator().await.unwrap();
    for i in 0..3_000 {
        h.emulator()
            .put_file(&format!("/test/big/d{}/f{i}.bin", i % 30), vec![1u8; 1], 1);
    }
    let importer = new_importer(&h, "big");
    let mut stream = importer.scan().await.unwrap();
    let mut first = Vec::new();
    for _ in 0..10 {
        first.push(stream.next().await.unwrap().unwrap());
    }
    assert!(
        importer.indexed_files() < 3_000,
        "the scan ran ahead of its consumer: {}",
        importer.indexed_files()
    );
    drop(stream);
    assert!(first.iter().any(|r| r.has_reader));
}
