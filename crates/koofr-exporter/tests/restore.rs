//! Restore behaviour of the Koofr exporter beyond the conformance suite: request counts, case
//! and Unicode collisions, records Koofr cannot store, upload verification, retries, truncated
//! content, and `Init`. Emulator-only checks use its request log and fault hooks.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use common::site;
use futures::StreamExt;
use kloset_plugin::host::RemoteExporter;
use kloset_plugin::suites::{ExporterFixture, pattern_bytes, pattern_stream};
use kloset_plugin::{
    ByteStream, ConnectorError, ExportPipeline, Exporter, FileInfo, FileMode, InitContext, Record,
};
use koofr_core::plakar::CONNECTOR_TYPE;
use koofr_core::{KoofrPath, UploadOptions};
use koofr_emulator::FaultRule;
use koofr_exporter::KoofrExporter;
use koofr_exporter::testkit::{KoofrExporterSite, Transport};
use koofr_testkit::{Site, collect, count};

fn t(ms: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
}

fn dir_info(name: &str) -> FileInfo {
    FileInfo::directory(name, 0o700, t(0))
}

fn file_info(name: &str, len: usize) -> FileInfo {
    FileInfo::file(name, len as i64, 0o600, t(len as u64))
}

fn bytes_stream(data: &'static [u8]) -> ByteStream {
    futures::stream::iter([Ok(Bytes::from_static(data))]).boxed()
}

/// A pipelined connector over gRPC plus a clean destination.
async fn remote(site: &KoofrExporterSite) -> Arc<RemoteExporter> {
    site.clear().await.expect("clear");
    let exporter = site.connect_remote().await.expect("connect");
    exporter
        .create_directory("/", &dir_info("snapshot-root"))
        .await
        .expect("root");
    exporter
}

async fn finish(site: &KoofrExporterSite, exporter: Arc<RemoteExporter>) {
    exporter.close().await.expect("close");
    site.release(exporter).await.expect("plugin exits 0");
}

async fn read(h: &Site, path: &KoofrPath) -> Vec<u8> {
    collect(h.client().download(path).await.expect("download").stream)
        .await
        .expect("read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_into_an_existing_folder_costs_one_request() {
    let h = Site::start_emulator_only("a_file_into_an_existing_folder_costs_one_request")
        .await
        .unwrap();
    let site = site(&h, Transport::Duplex);
    let exporter = remote(&site).await;
    let dest = site.destination().clone();
    h.emulator()
        .create_folder_all(dest.join("existing").unwrap().as_str());
    exporter
        .create_directory("/existing", &dir_info("existing"))
        .await
        .unwrap();
    h.take_requests();
    let files = 20;
    let calls = (0..files).map(|i| {
        let exporter = exporter.clone();
        async move {
            let info = file_info(&format!("f{i}.txt"), 100 + i);
            exporter
                .store_file(
                    &format!("/existing/f{i}.txt"),
                    &info,
                    pattern_stream(i as u64, (100 + i) as u64),
                )
                .await
        }
    });
    for outcome in futures::future::join_all(calls).await {
        outcome.expect("store");
    }
    let requests = h.take_requests();
    assert_eq!(count(&requests, "files/put"), files, "{requests:?}");
    assert_eq!(
        requests.len(),
        files,
        "one request per file, nothing else: {requests:?}"
    );

    // A new folder is created once in the run, however many files go into it.
    exporter
        .create_directory("/new", &dir_info("new"))
        .await
        .unwrap();
    for i in 0..5 {
        exporter
            .store_file(
                &format!("/new/g{i}"),
                &file_info("g", 10),
                pattern_stream(i, 10),
            )
            .await
            .unwrap();
    }
    let requests = h.take_requests();
    assert_eq!(count(&requests, "files/folder"), 1, "{requests:?}");
    assert_eq!(count(&requests, "files/put"), 5, "{requests:?}");
    assert!(count(&requests, "files/info") <= 1, "{requests:?}");
    finish(&site, exporter).await;
    let stored = h
        .emulator()
        .stat(dest.join("existing/f7.txt").unwrap().as_str())
        .expect("restored");
    assert_eq!(stored.size, 107);
    assert_eq!(
        stored.modified_ms, 1_700_000_000_107,
        "uploaded with the snapshot's mtime"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_and_unicode_collisions_keep_the_first_restored() {
    let h = Site::start_live_or_emulator("exporter").await.unwrap();
    let site = site(&h, Transport::Duplex);
    let exporter = remote(&site).await;
    exporter
        .store_file("/Read.me", &file_info("Read.me", 5), bytes_stream(b"first"))
        .await
        .unwrap();
    let err = exporter
        .store_file(
            "/READ.ME",
            &file_info("READ.ME", 6),
            bytes_stream(b"second"),
        )
        .await
        .unwrap_err();
    assert!(err.message().contains("differs only in case"), "{err}");
    assert!(err.message().contains("\"Read.me\""), "{err}");

    let nfc = "caf\u{e9}.txt";
    let nfd = "cafe\u{301}.txt";
    exporter
        .store_file(&format!("/{nfc}"), &file_info(nfc, 3), bytes_stream(b"nfc"))
        .await
        .unwrap();
    let err = exporter
        .store_file(&format!("/{nfd}"), &file_info(nfd, 3), bytes_stream(b"nfd"))
        .await
        .unwrap_err();
    assert!(err.message().contains("Unicode"), "{err}");

    exporter
        .create_directory("/Dir", &dir_info("Dir"))
        .await
        .unwrap();
    exporter
        .store_file("/Dir/x", &file_info("x", 4), bytes_stream(b"keep"))
        .await
        .unwrap();
    assert!(
        exporter
            .create_directory("/DIR", &dir_info("DIR"))
            .await
            .is_err()
    );
    let err = exporter
        .store_file("/DIR/x", &file_info("x", 4), bytes_stream(b"lost"))
        .await
        .unwrap_err();
    assert!(err.message().contains("its folder \"DIR\""), "{err}");
    // The restore goes on after refusals.
    exporter
        .store_file(
            "/after.txt",
            &file_info("after.txt", 2),
            bytes_stream(b"ok"),
        )
        .await
        .unwrap();
    finish(&site, exporter).await;

    let dest = site.destination();
    let names: Vec<String> = h
        .client()
        .list(dest)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(read(&h, &dest.join("Read.me").unwrap()).await, b"first");
    assert_eq!(read(&h, &dest.join(nfc).unwrap()).await, b"nfc");
    assert_eq!(read(&h, &dest.join("Dir/x").unwrap()).await, b"keep");
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_koofr_cannot_store_get_explicit_errors() {
    let h = Site::start_live_or_emulator("exporter").await.unwrap();
    let site = site(&h, Transport::Duplex);
    let exporter = remote(&site).await;
    let special = |path: &str, mode: u32| {
        let name = path.trim_start_matches('/');
        Record::entry(
            path,
            FileInfo::with_mode(name, 0, FileMode(mode | 0o600), t(0)),
        )
    };
    let mut link = special("/link", FileMode::SYMLINK);
    link.target = "../elsewhere".to_owned();
    let cases = [
        (link, "symbolic links"),
        (special("/disk", FileMode::DEVICE), "devices"),
        (
            special("/tty", FileMode::DEVICE | FileMode::CHAR_DEVICE),
            "character devices",
        ),
        (special("/sock", FileMode::SOCKET), "sockets"),
        (special("/fifo", FileMode::NAMED_PIPE), "named pipes"),
    ];
    for (record, why) in cases {
        let err = exporter.other(&record).await.unwrap_err();
        assert!(
            err.message().contains(&format!("Koofr cannot store {why}")),
            "{}: {err}",
            record.pathname
        );
        assert!(err.message().starts_with(&record.pathname), "{err}");
    }
    let emoji = "/\u{1f402}.txt";
    let err = exporter
        .store_file(emoji, &file_info("\u{1f402}.txt", 2), bytes_stream(b"ox"))
        .await
        .unwrap_err();
    assert!(err.message().contains("Basic Multilingual Plane"), "{err}");
    let err = exporter
        .create_directory("/dir\u{1}x", &dir_info("dir\u{1}x"))
        .await
        .unwrap_err();
    assert!(err.message().contains("control characters"), "{err}");
    // Error records from Plakar are Ok, and the restore goes on.
    exporter
        .other(&Record::error("/unreadable", "permission denied"))
        .await
        .expect("error records are Ok");
    exporter
        .store_file(
            "/fine.txt",
            &file_info("fine.txt", 4),
            bytes_stream(b"fine"),
        )
        .await
        .unwrap();
    finish(&site, exporter).await;
    let names: Vec<String> = h
        .client()
        .list(site.destination())
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["fine.txt"]);
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_koofr_did_not_get_fails_that_record_only() {
    let h = Site::start_emulator_only("a_hash_koofr_did_not_get_fails_that_record_only")
        .await
        .unwrap();
    let site = site(&h, Transport::Duplex);
    let exporter = remote(&site).await;
    let bad = site.destination().join("bad").unwrap();
    // Koofr answers as if it stored other bytes of the same length, on every attempt.
    let lie = r#"{"name":"x.txt","type":"file","modified":1,"size":5,"contentType":"text/plain","hash":"00000000000000000000000000000000","tags":{}}"#;
    h.emulator().faults().inject(
        FaultRule::status("files/put", 200)
            .body(lie)
            .path_prefix(bad.as_str())
            .times(100),
    );
    exporter
        .create_directory("/bad", &dir_info("bad"))
        .await
        .unwrap();
    let err = exporter
        .store_file("/bad/x.txt", &file_info("x.txt", 5), bytes_stream(b"hello"))
        .await
        .unwrap_err();
    assert!(err.message().contains("MD5 mismatch"), "{err}");
    assert!(err.message().contains("/bad/x.txt"), "{err}");
    exporter
        .store_file(
            "/good.txt",
            &file_info("good.txt", 5),
            bytes_stream(b"hello"),
        )
        .await
        .unwrap();
    finish(&site, exporter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_faults_are_retried_and_a_persistent_one_fails_only_its_record() {
    let h = Site::start_emulator_only(
        "put_faults_are_retried_and_a_persistent_one_fails_only_its_record",
    )
    .await
    .unwrap();
    let mut config = h.plugin_config(h.base());
    config.insert("retries".to_owned(), "5".to_owned());
    let site = KoofrExporterSite::new(
        h.client().clone(),
        h.base().clone(),
        config,
        Transport::Duplex,
    );
    let exporter = remote(&site).await;
    let dest = site.destination().clone();
    exporter
        .create_directory("/bad", &dir_info("bad"))
        .await
        .unwrap();
    exporter
        .create_directory("/flaky", &dir_info("flaky"))
        .await
        .unwrap();
    let faults = h.emulator().faults();
    faults.inject(
        FaultRule::status("files/put", 503)
            .path_prefix(dest.join("bad").unwrap().as_str())
            .times(1000),
    );
    // Every rule counts every matching request, so the 429 window starts after the 502s.
    faults.inject(
        FaultRule::status("files/put", 502)
            .path_prefix(dest.join("flaky").unwrap().as_str())
            .times(2),
    );
    faults.inject(
        FaultRule::status("files/put", 429)
            .retry_after(0)
            .path_prefix(dest.join("flaky").unwrap().as_str())
            .skip(2)
            .times(1),
    );
    h.take_requests();
    let err = exporter
        .store_file(
            "/bad/a.bin",
            &file_info("a.bin", 1000),
            pattern_stream(1, 1000),
        )
        .await
        .unwrap_err();
    assert!(err.message().contains("503"), "{err}");
    let bad_attempts = count(&h.take_requests(), "files/put");
    assert_eq!(bad_attempts, 5, "the configured 5 attempts");
    exporter
        .store_file(
            "/flaky/b.bin",
            &file_info("b.bin", 3000),
            pattern_stream(2, 3000),
        )
        .await
        .expect("retried");
    assert_eq!(
        count(&h.take_requests(), "files/put"),
        4,
        "two 502s and a 429, then success"
    );
    exporter
        .store_file("/c.bin", &file_info("c.bin", 10), pattern_stream(3, 10))
        .await
        .expect("others go on");
    finish(&site, exporter).await;
    assert_eq!(
        h.emulator()
            .read_file(dest.join("flaky/b.bin").unwrap().as_str())
            .unwrap(),
        pattern_bytes(2, 0, 3000)
    );
    assert!(
        h.emulator()
            .stat(dest.join("bad/a.bin").unwrap().as_str())
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_content_never_replaces_the_previous_file() {
    let h = Site::start_live_or_emulator("exporter").await.unwrap();
    let site = site(&h, Transport::Direct);
    site.clear().await.unwrap();
    let dest = site.destination().clone();
    h.client().create_folder_all(&dest).await.unwrap();
    for (name, len) in [("small.bin", 64 * 1024), ("large.bin", 9 << 20)] {
        h.client()
            .upload(
                &dest,
                name,
                Bytes::from_static(b"previous").into(),
                UploadOptions::default(),
            )
            .await
            .unwrap();
        let exporter = KoofrExporter::from_config_map(
            &h.plugin_config(&h.path(KoofrExporterSite::relative_destination()).unwrap()),
        )
        .unwrap();
        let head = pattern_stream(5, (len / 2) as u64);
        let cut = futures::stream::iter([Err(ConnectorError::other("export stream ended early"))]);
        let content = head.chain(cut).boxed();
        let err = exporter
            .store_file(&format!("/{name}"), &file_info(name, len), content)
            .await
            .unwrap_err();
        assert!(err.message().contains("ended early"), "{name}: {err}");
        assert_eq!(
            read(&h, &dest.join(name).unwrap()).await,
            b"previous",
            "{name}"
        );
    }
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_parses_the_config_without_network_io() {
    let h = Site::start_emulator_only("init_parses_the_config_without_network_io")
        .await
        .unwrap();
    let mut config = h.plugin_config(&h.path("restore/here").unwrap());
    config.insert("concurrency".to_owned(), "3".to_owned());
    config.insert("colour".to_owned(), "blue".to_owned());
    h.take_requests();
    let ctx = InitContext {
        proto: "koofr".to_owned(),
        config: config.clone(),
        options: None,
    };
    let exporter = KoofrExporter::from_init(&ctx).expect("unknown keys are warnings");
    assert!(h.take_requests().is_empty(), "Init made requests");
    let location = exporter.location();
    assert_eq!(location.r#type, CONNECTOR_TYPE);
    assert_eq!(location.root, "/test/restore/here");
    assert_eq!(location.origin, exporter.client().config().plakar_origin());
    assert!(
        location.origin.ends_with(&h.emulator().addr().to_string()),
        "{}",
        location.origin
    );
    assert_eq!(location.flags, 0);
    assert_eq!(
        exporter.max_in_flight(),
        3,
        "in-flight count from the concurrency setting"
    );
    exporter.ping().await.expect("ping");
    assert!(
        !format!("{exporter:?}").contains(h.emulator().password()),
        "no password in Debug"
    );

    config.insert("concurrency".to_owned(), "many".to_owned());
    let err = KoofrExporter::from_config_map(&config).unwrap_err();
    assert!(err.message().contains("concurrency"), "{err}");
    assert!(!err.message().contains(h.emulator().password()), "{err}");
}

/// Restore throughput with many small files: the pipelined exporter against a one-at-a-time
/// baseline, same run, 20 ms per request. Slow (about a minute):
/// `cargo test -p koofr-exporter --test restore -- --ignored --nocapture small_file_throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn small_file_throughput() {
    const FILES: usize = 2000;
    const SIZE: usize = 16 * 1024;
    let h = Site::start_emulator_only("small_file_throughput")
        .await
        .unwrap();
    h.emulator().faults().set_latency(Duration::from_millis(20));
    let mut timings = Vec::new();
    for (label, limit) in [("pipelined", None), ("one at a time", Some(1))] {
        let pipeline = ExportPipeline {
            max_in_flight: limit,
            ..ExportPipeline::default()
        };
        let site = site(&h, Transport::Duplex).with_pipeline(pipeline);
        let exporter = remote(&site).await;
        exporter
            .create_directory("/many", &dir_info("many"))
            .await
            .unwrap();
        h.take_requests();
        let started = Instant::now();
        let outcomes: Vec<_> = futures::stream::iter(0..FILES)
            .map(|i| {
                let exporter = exporter.clone();
                async move {
                    exporter
                        .store_file(
                            &format!("/many/f{i:04}"),
                            &file_info("f", SIZE),
                            pattern_stream(i as u64, SIZE as u64),
                        )
                        .await
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let elapsed = started.elapsed();
        assert!(outcomes.iter().all(Result::is_ok));
        let puts = count(&h.take_requests(), "files/put");
        assert_eq!(puts, FILES);
        finish(&site, exporter).await;
        eprintln!("{label}: {FILES} files of {SIZE} B in {elapsed:?} ({puts} puts)");
        timings.push(elapsed);
    }
    eprintln!(
        "speed-up: {:.1}x",
        timings[1].as_secs_f64() / timings[0].as_secs_f64()
    );
}
