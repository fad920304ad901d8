//! Failures as plakar meets them, through the `koofr-storage` binary: refused credentials cost
//! one refused request per process and one clear error, a refused endpoint fails after a few
//! attempts naming the cause, and a `Delete` still running when plakar closes the plugin's
//! input finishes (the object is gone) before the plugin exits 0.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kloset_plugin::host::{InitArgs, PluginConnection, RemoteStore};
use kloset_plugin::suites::pattern_stream;
use kloset_plugin::{Mac, Resource, Store};
use koofr_emulator::FaultRule;
use koofr_storage::layout::Layout;
use koofr_testkit::{Site, count_status};

const BIN: &str = env!("CARGO_BIN_EXE_koofr-storage");

async fn spawn(config: HashMap<String, String>) -> RemoteStore {
    let connection = PluginConnection::spawn(BIN, std::iter::empty::<&str>())
        .await
        .expect("spawn koofr-storage");
    RemoteStore::init(connection, &InitArgs::new("koofr", config))
        .await
        .expect("Init makes no request, so it succeeds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_one_refused_request_and_one_clear_error() {
    let h = Site::start_emulator().await.unwrap();
    let store = spawn(h.wrong_password_config(&h.path("kloset").unwrap())).await;
    h.take_requests();
    let err = store.open().await.unwrap_err();
    assert!(
        err.message().contains("authentication failed") && err.message().contains("koofr:///"),
        "{err}"
    );
    // What plakar may still ask of the same process is refused without a request.
    let mac = Mac([7; 32]);
    for err in [
        store.list(Resource::Packfile).await.map(drop).unwrap_err(),
        store
            .get(Resource::State.key(mac), None)
            .await
            .map(drop)
            .unwrap_err(),
        store.delete(Resource::Lock.key(mac)).await.unwrap_err(),
    ] {
        assert!(err.message().contains("authentication failed"), "{err}");
    }
    let requests = h.requests();
    assert_eq!(count_status(&requests, 401), 1, "{requests:?}");
    assert!(!err.message().contains("WRONG"), "{err}");
    assert_eq!(store.plugin().shutdown().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_endpoint_fails_after_three_attempts_naming_the_cause() {
    let h = Site::start_emulator().await.unwrap();
    let (config, gave_up) = h.refused_endpoint_config(&h.path("kloset").unwrap());
    let store = spawn(config).await;
    let err = store.open().await.unwrap_err();
    assert!(err.message().contains(&gave_up), "{err}");
    assert_eq!(
        err.kind(),
        kloset_plugin::ConnectorErrorKind::Unavailable,
        "{err:?}"
    );
    assert_eq!(store.plugin().shutdown().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_delete_cut_by_the_end_of_input_still_completes() {
    let h = Site::start_emulator().await.unwrap();
    let mut config = h.plugin_config(&h.path("kloset").unwrap());
    // Backoffs long enough that the input closes while the Delete waits to retry.
    config.insert("retry_delay_ms".to_owned(), "300".to_owned());
    let store = spawn(config).await;
    store
        .create(Bytes::from_static(b"kloset config"))
        .await
        .unwrap();
    let lock = Mac([0x5a; 32]);
    store
        .put(Resource::Lock.key(lock), pattern_stream(1, 300))
        .await
        .unwrap();
    let layout = Layout::new(h.path("kloset").unwrap());
    let flat = layout.flat(Resource::Lock.key(lock));
    assert!(h.emulator().stat(flat.as_str()).is_some());

    h.emulator()
        .faults()
        .inject(FaultRule::status("files/remove", 503).times(4));
    h.take_requests();
    let store = Arc::new(store);
    let delete = tokio::spawn({
        let store = store.clone();
        async move { store.delete(Resource::Lock.key(lock)).await }
    });
    // Wait until the Delete met its first 503, then close the input as plakar does.
    let mut waited = Duration::ZERO;
    while !h.emulator().requests().iter().any(|r| r.status == 503) {
        assert!(waited < Duration::from_secs(10), "the Delete never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
        waited += Duration::from_millis(5);
    }
    assert_eq!(store.plugin().shutdown().await.unwrap(), 0, "exit status");
    assert!(
        h.emulator().stat(flat.as_str()).is_none(),
        "the lock is still there: {:?}",
        h.emulator().requests()
    );
    let removes = h
        .emulator()
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "files/remove")
        .count();
    assert!(
        removes > 4,
        "the retries ran after the input closed: {removes}"
    );
    // Its answer could not reach the host any more.
    let _ = delete.await;
}
