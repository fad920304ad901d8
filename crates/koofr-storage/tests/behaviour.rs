//! Connector behaviour beyond the shared suite: request counts from the emulator's log (put = 1,
//! ranged get = 1, list = 1, mode = 0), Init without I/O, messages, racing creators, klosets
//! made by other tools (flat rclone layout, bucket layout, missing folders), failed incoming
//! streams, two plugin processes on one kloset, and (ignored) the plugin's peak RSS.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use kloset_plugin::suites::{pattern_bytes, pattern_stream, verify_pattern};
use kloset_plugin::{
    ByteRange, ConnectorError, ConnectorErrorKind, Mac, ObjectKey, Resource, Store, StoreMode,
};
use koofr_core::{KoofrPath, UploadOptions};
use koofr_emulator::RequestRecord;
use koofr_storage::KoofrStore;
use koofr_storage::testkit::{KoofrStoreSite, Transport};
use koofr_testkit::{Site, count};

const CONFIG: &[u8] = b"kloset config \x00\xff";

fn mac(seed: u8) -> Mac {
    let mut raw = [0u8; 32];
    for (i, b) in raw.iter_mut().enumerate() {
        *b = seed
            .wrapping_mul(37)
            .wrapping_add((i as u8).wrapping_mul(11));
    }
    Mac(raw)
}

/// The store fixture of `harness`'s kloset folder through `transport`.
fn fixture(harness: &Site, transport: Transport) -> KoofrStoreSite {
    KoofrStoreSite::new(
        harness.client().clone(),
        harness.plugin_config(&kloset(harness)),
        transport,
    )
    .expect("fixture")
}

fn store(harness: &Site) -> KoofrStore {
    let site = fixture(harness, Transport::Direct);
    KoofrStore::from_init(&site.init_context()).expect("init")
}

fn kloset(harness: &Site) -> KoofrPath {
    harness.path("kloset").unwrap()
}

/// Endpoints of the logged requests, for assertion messages.
fn endpoints(requests: &[RequestRecord]) -> Vec<String> {
    requests
        .iter()
        .map(|r| format!("{} {} {:?} -> {}", r.method, r.endpoint, r.path, r.status))
        .collect()
}

/// A get of `key` (`range` of it, or all) from `store` answers `len` bytes of the pattern of
/// `seed`, from the range's offset.
async fn assert_get(
    store: &impl Store,
    key: ObjectKey,
    range: Option<ByteRange>,
    seed: u64,
    len: u64,
) {
    let stream = store.get(key, range).await.unwrap();
    let offset = range.map_or(0, |range| range.offset);
    verify_pattern(stream, seed, offset, len).await.unwrap();
}

/// Puts `len` bytes of the pattern of `seed` as `key` into `store`; what it stored.
async fn put_pattern(store: &impl Store, key: ObjectKey, seed: u64, len: u64) -> u64 {
    store.put(key, pattern_stream(seed, len)).await.unwrap()
}

/// `requests` are one request, to `endpoint`.
fn assert_one_request(requests: &[RequestRecord], endpoint: &str, what: &str) {
    assert_eq!(requests.len(), 1, "{what}: {:?}", endpoints(requests));
    assert_eq!(count(requests, endpoint), 1, "{what}");
}

/// Uploads `body` as `dir/name` (creating `dir`) behind the connector's back, as another tool
/// would.
async fn upload(harness: &Site, dir: &KoofrPath, name: &str, body: Bytes) {
    let client = harness.client();
    client.create_folder_all(dir).await.unwrap();
    client
        .upload(dir, name, body.into(), UploadOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn init_makes_no_request_and_reports_the_location() {
    let harness = Site::start_emulator().await.unwrap();
    harness.take_requests();
    let store = store(&harness);
    assert_eq!(store.mode(), StoreMode::READ_WRITE);
    let location = store.location();
    assert_eq!(location.r#type, "koofr");
    assert_eq!(location.root, "/test/kloset");
    assert_eq!(location.origin, harness.client().config().plakar_origin());
    assert_eq!(location.flags, 0);
    let requests = harness.take_requests();
    assert!(
        requests.is_empty(),
        "Init/Mode made requests: {:?}",
        endpoints(&requests)
    );
}

#[tokio::test]
async fn init_rejects_a_bad_config_naming_the_key() {
    let harness = Site::start_emulator().await.unwrap();
    let mut config = harness.plugin_config(&harness.path("kloset").unwrap());
    config.insert("retries".to_owned(), "many".to_owned());
    let ctx = kloset_plugin::InitContext {
        proto: "koofr".to_owned(),
        config,
        options: None,
    };
    let err = KoofrStore::from_init(&ctx).unwrap_err();
    assert_eq!(err.kind(), ConnectorErrorKind::InvalidInput);
    assert!(err.message().contains("retries"), "{err}");
    let password = harness.secret();
    assert!(!err.message().contains(password), "secret in {err}");
}

#[tokio::test]
async fn each_operation_costs_the_documented_number_of_requests() {
    let harness = Site::start_emulator().await.unwrap();
    let store = store(&harness);
    store.create(Bytes::from_static(CONFIG)).await.unwrap();
    harness.take_requests();

    for (seed, len) in [(1u8, 10u64), (2, 3 << 20)] {
        let written = put_pattern(
            &store,
            Resource::Packfile.key(mac(seed)),
            u64::from(seed),
            len,
        )
        .await;
        assert_eq!(written, len);
        let what = format!("put of {len} bytes");
        assert_one_request(&harness.take_requests(), "files/put", &what);
    }

    let range = ByteRange {
        offset: 1_000_000,
        length: 70_000,
    };
    assert_get(
        &store,
        Resource::Packfile.key(mac(2)),
        Some(range),
        2,
        70_000,
    )
    .await;
    assert_one_request(&harness.take_requests(), "files/get", "ranged get");

    let zero = ByteRange {
        offset: 5,
        length: 0,
    };
    assert_get(&store, Resource::Packfile.key(mac(2)), Some(zero), 2, 0).await;
    assert_get(&store, Resource::Packfile.key(mac(1)), None, 1, 10).await;
    let what = "zero-length + whole get";
    assert_one_request(&harness.take_requests(), "files/get", what);

    let listed = store.list(Resource::Packfile).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_one_request(&harness.take_requests(), "files/listrecursive", "list");

    let size = store.size().await.unwrap();
    assert_eq!(size, (CONFIG.len() + 10 + (3 << 20)) as i64);
    assert_eq!(harness.take_requests().len(), 1, "size is one listing");

    assert_eq!(store.mode(), StoreMode::READ_WRITE);
    assert!(harness.take_requests().is_empty(), "mode made a request");
}

#[tokio::test]
async fn create_and_open_messages_name_the_location() {
    let harness = Site::start_live_or_emulator("storage").await.unwrap();
    let store = store(&harness);
    assert_eq!(store.size().await.unwrap(), 0, "no kloset folder yet");
    let missing = store.open().await.unwrap_err();
    assert_eq!(missing.kind(), ConnectorErrorKind::NotFound);
    assert!(
        missing.message().contains("no kloset found at koofr:///"),
        "{missing}"
    );
    assert!(missing.message().ends_with("/kloset"), "{missing}");
    store.create(Bytes::from_static(CONFIG)).await.unwrap();
    assert_eq!(store.open().await.unwrap(), Bytes::from_static(CONFIG));
    let again = store
        .create(Bytes::from_static(b"other"))
        .await
        .unwrap_err();
    assert!(
        again
            .message()
            .contains("kloset already initialized at koofr:///"),
        "{again}"
    );
    assert_eq!(store.open().await.unwrap(), Bytes::from_static(CONFIG));
    for resource in Resource::ALL {
        let folder = kloset(&harness).child(resource.folder()).unwrap();
        assert!(
            harness.client().info(&folder).await.unwrap().is_dir(),
            "{folder}"
        );
    }
    harness.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_racing_creators_exactly_one_wins() {
    let harness = Site::start_live_or_emulator("storage").await.unwrap();
    let stores: Vec<KoofrStore> = (0..4).map(|_| store(&harness)).collect();
    let creates = stores.iter().enumerate().map(|(i, s)| {
        let config = Bytes::from(format!("config of creator {i}"));
        async move { (config.clone(), s.create(config).await) }
    });
    let outcomes = futures::future::join_all(creates).await;
    let winners: Vec<&Bytes> = outcomes
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(c, _)| c)
        .collect();
    assert_eq!(winners.len(), 1, "outcomes: {outcomes:?}");
    for (_, outcome) in &outcomes {
        if let Err(e) = outcome {
            assert!(e.message().contains("already initialized"), "{e}");
        }
    }
    assert_eq!(&stores[0].open().await.unwrap(), winners[0]);
    harness.finish().await.unwrap();
}

#[tokio::test]
async fn create_retries_the_config_upload_after_a_server_error() {
    let harness = Site::start_emulator().await.unwrap();
    let faults = harness.emulator().faults();
    faults.inject(koofr_emulator::FaultRule::status("files/put", 503).times(2));
    let store = store(&harness);
    store.create(Bytes::from_static(CONFIG)).await.unwrap();
    assert_eq!(store.open().await.unwrap(), Bytes::from_static(CONFIG));
}

#[tokio::test]
async fn a_kloset_made_by_rclone_or_a_bucket_layout_is_read_and_written() {
    let harness = Site::start_live_or_emulator("storage").await.unwrap();
    let client = harness.client();
    let root = kloset(&harness);
    // What Plakar's rclone integration leaves: CONFIG and flat packfiles, no other folders.
    let packfiles = root.child("packfiles").unwrap();
    upload(&harness, &root, "CONFIG", Bytes::from_static(CONFIG)).await;
    let (flat, bucketed, misplaced) = (mac(10), mac(11), mac(12));
    // A flat packfile as rclone writes it, a bucket-layout one, and a MAC in the wrong bucket.
    for (mac, folder, body) in [
        (flat, None, pattern_bytes(10, 0, 5000)),
        (
            bucketed,
            Some(&bucketed.to_hex()[..2]),
            pattern_bytes(11, 0, 3000),
        ),
        (misplaced, Some("zz"), Bytes::from_static(b"x")),
    ] {
        let dir = match folder {
            Some(bucket) => packfiles.child(bucket).unwrap(),
            None => packfiles.clone(),
        };
        upload(&harness, &dir, &mac.to_hex(), body).await;
    }

    let store = store(&harness);
    assert_eq!(store.open().await.unwrap(), Bytes::from_static(CONFIG));
    let create = store.create(Bytes::from_static(b"new")).await.unwrap_err();
    assert!(create.message().contains("already initialized"), "{create}");
    let mut listed = store.list(Resource::Packfile).await.unwrap();
    listed.sort();
    let mut expected = vec![flat, bucketed];
    expected.sort();
    assert_eq!(listed, expected);
    assert_get(&store, Resource::Packfile.key(bucketed), None, 11, 3000).await;
    let range = ByteRange {
        offset: 100,
        length: 50,
    };
    assert_get(
        &store,
        Resource::Packfile.key(bucketed),
        Some(range),
        11,
        50,
    )
    .await;

    // The states folder is missing: the first put creates it.
    let state = mac(13);
    assert_eq!(
        put_pattern(&store, Resource::State.key(state), 13, 700).await,
        700
    );
    assert_eq!(store.list(Resource::State).await.unwrap(), vec![state]);
    let written = client
        .info(&root.join(&format!("states/{}", state.to_hex())).unwrap())
        .await
        .unwrap();
    assert_eq!(written.size, 700, "written flat, as rclone does");

    store
        .delete(Resource::Packfile.key(bucketed))
        .await
        .unwrap();
    store
        .delete(Resource::Packfile.key(bucketed))
        .await
        .unwrap();
    assert_eq!(store.list(Resource::Packfile).await.unwrap(), vec![flat]);
    let gone = store
        .get(Resource::Packfile.key(bucketed), None)
        .await
        .err();
    assert_eq!(gone.map(|e| e.kind()), Some(ConnectorErrorKind::NotFound));
    harness.finish().await.unwrap();
}

#[tokio::test]
async fn a_broken_incoming_stream_stores_nothing_new() {
    let harness = Site::start_emulator().await.unwrap();
    let store = store(&harness);
    store.create(Bytes::from_static(CONFIG)).await.unwrap();
    // An old version of each object, which a broken overwrite must leave intact.
    for seed in [20u8, 21] {
        put_pattern(
            &store,
            Resource::Packfile.key(mac(seed)),
            100 + u64::from(seed),
            3000,
        )
        .await;
    }
    harness.take_requests();
    for (seed, good) in [(20u8, 1000u64), (21, 5 << 20)] {
        let data = pattern_stream(1, good)
            .chain(futures::stream::once(async {
                Err(ConnectorError::other("plakar went away"))
            }))
            .boxed();
        let err = store
            .put(Resource::Packfile.key(mac(seed)), data)
            .await
            .unwrap_err();
        assert!(err.message().contains("plakar went away"), "{err}");
        // The whole object is received before any upload starts: the break is seen first.
        let attempted = endpoints(&harness.take_requests());
        assert!(
            attempted.is_empty(),
            "uploads were attempted: {attempted:?}"
        );
        // Nothing new is readable: the old version stays.
        assert_get(
            &store,
            Resource::Packfile.key(mac(seed)),
            None,
            100 + u64::from(seed),
            3000,
        )
        .await;
        harness.take_requests();
    }
}

#[tokio::test]
async fn a_large_put_that_fails_mid_upload_is_resent_from_the_spool() {
    let harness = Site::start_emulator().await.unwrap();
    let store = store(&harness);
    store.create(Bytes::from_static(CONFIG)).await.unwrap();
    let len = 6u64 << 20;
    let faults = [
        koofr_emulator::FaultRule::abort_upload(2 << 20).times(1),
        koofr_emulator::FaultRule::status("files/put", 503).times(1),
    ];
    for (seed, fault) in (40u8..).zip(faults) {
        harness.take_requests();
        harness.emulator().faults().inject(fault);
        let stored = put_pattern(
            &store,
            Resource::Packfile.key(mac(seed)),
            u64::from(seed),
            len,
        )
        .await;
        assert_eq!(stored, len);
        let requests = harness.take_requests();
        assert_eq!(
            count(&requests, "files/put"),
            2,
            "one failed attempt and one replay from the spool: {:?}",
            endpoints(&requests)
        );
        assert_get(
            &store,
            Resource::Packfile.key(mac(seed)),
            None,
            u64::from(seed),
            len,
        )
        .await;
    }

    // A missing resource folder: the first attempt is refused, the folder created and the
    // object sent again from the spool.
    harness
        .client()
        .remove(&store.layout().folder(Resource::Lock))
        .await
        .unwrap();
    harness.take_requests();
    let stored = put_pattern(&store, Resource::Lock.key(mac(45)), 45, len).await;
    assert_eq!(stored, len);
    let requests = harness.take_requests();
    // The 404 is answered before the 6 MiB body is read; depending on timing the client sees
    // it, or a connection closed mid-body, which it retries once before seeing the 404.
    assert!(
        (2..=3).contains(&count(&requests, "files/put")),
        "{:?}",
        endpoints(&requests)
    );
    assert_eq!(
        count(&requests, "files/folder"),
        1,
        "{:?}",
        endpoints(&requests)
    );
    assert_get(&store, Resource::Lock.key(mac(45)), None, 45, len).await;
}

#[tokio::test]
async fn an_upload_cut_off_by_the_network_leaves_the_old_object() {
    let harness = Site::start_emulator().await.unwrap();
    let store = store(&harness);
    store.create(Bytes::from_static(CONFIG)).await.unwrap();
    put_pattern(&store, Resource::Lock.key(mac(30)), 30, 2000).await;
    // Every attempt of the overwrite is cut off: it fails, and the old lock stays intact.
    harness
        .emulator()
        .faults()
        .inject(koofr_emulator::FaultRule::abort_upload(1 << 20).times(10));
    let err = store
        .put(Resource::Lock.key(mac(30)), pattern_stream(31, 3 << 20))
        .await
        .unwrap_err();
    assert!(err.message().contains(&mac(30).to_hex()), "{err}");
    assert_get(&store, Resource::Lock.key(mac(30)), None, 30, 2000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_plugin_processes_share_one_kloset() {
    let harness = Site::start_live_or_emulator("storage").await.unwrap();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_koofr-storage"));
    let site = fixture(&harness, Transport::Binary(binary));
    let first = Arc::new(site.connect_remote().await.unwrap());
    let second = Arc::new(site.connect_remote().await.unwrap());
    first.create(Bytes::from_static(CONFIG)).await.unwrap();
    let work = |store: Arc<kloset_plugin::host::RemoteStore>, base: u8| async move {
        for i in 0..6u8 {
            let m = mac(base + i);
            let len = 1000 + u64::from(i) * 400_000;
            store
                .put(
                    Resource::Packfile.key(m),
                    pattern_stream(u64::from(base + i), len),
                )
                .await?;
            // Both processes rewrite the same lock, as Plakar's cache process and command do.
            store
                .put(Resource::Lock.key(mac(99)), pattern_stream(99, 4096))
                .await?;
            store.list(Resource::Packfile).await?;
        }
        Ok::<(), ConnectorError>(())
    };
    let (a, b) = tokio::join!(work(first.clone(), 40), work(second.clone(), 60));
    a.unwrap();
    b.unwrap();
    let listed = second.list(Resource::Packfile).await.unwrap();
    assert_eq!(listed.len(), 12);
    for base in [40u8, 60] {
        for i in 0..6u8 {
            let len = 1000 + u64::from(i) * 400_000;
            let stream = first
                .get(Resource::Packfile.key(mac(base + i)), None)
                .await
                .unwrap();
            verify_pattern(stream, u64::from(base + i), 0, len)
                .await
                .unwrap();
        }
    }
    assert_get(&*second, Resource::Lock.key(mac(99)), None, 99, 4096).await;
    for store in [first, second] {
        assert_eq!(store.plugin().shutdown().await.unwrap(), 0);
    }
    harness.finish().await.unwrap();
}

/// Peak RSS of the plugin process while a 256 MiB object goes through it.
/// Run with `cargo test -p koofr-storage --test behaviour -- --ignored --nocapture peak_rss`.
#[ignore]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_rss_while_putting_256_mib_through_the_binary() {
    const LEN: u64 = 256 << 20;
    let harness = Site::start_emulator().await.unwrap();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_koofr-storage"));
    let site = fixture(&harness, Transport::Binary(binary));
    let remote = site.connect_remote().await.unwrap();
    let pid = remote.plugin().pid().expect("a child process");
    remote.create(Bytes::from_static(CONFIG)).await.unwrap();
    let vm_hwm = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
            .unwrap()
    };
    let before = vm_hwm();
    let written = put_pattern(&remote, Resource::Packfile.key(mac(1)), 7, LEN).await;
    assert_eq!(written, LEN);
    let after_put = vm_hwm();
    let stream = remote
        .get(Resource::Packfile.key(mac(1)), None)
        .await
        .unwrap();
    verify_pattern(stream, 7, 0, LEN).await.unwrap();
    let after_get = vm_hwm();
    eprintln!(
        "koofr-storage VmHWM: {before} KiB after Init, {after_put} KiB after a 256 MiB put, {after_get} KiB after reading it back"
    );
    assert!(
        after_get < 128 * 1024,
        "peak RSS {after_get} KiB: the object was held in memory"
    );
    assert_eq!(remote.plugin().shutdown().await.unwrap(), 0);
}
