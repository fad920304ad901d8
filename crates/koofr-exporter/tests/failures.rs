//! Failures as plakar meets them, through the `koofr-exporter` binary: a wrong password or a
//! refused endpoint fails `Init` with one request and one error, and a full account ends the
//! export with one error (plakar then exits non-zero) instead of failing record by record.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use kloset_plugin::host::{InitArgs, PluginConnection, RemoteExporter};
use kloset_plugin::suites::pattern_stream;
use kloset_plugin::{ConnectorErrorKind, Exporter, FileInfo};
use koofr_testkit::Site;

const BIN: &str = env!("CARGO_BIN_EXE_koofr-exporter");

async fn spawn(config: HashMap<String, String>) -> kloset_plugin::Result<RemoteExporter> {
    let connection = PluginConnection::spawn(BIN, std::iter::empty::<&str>())
        .await
        .expect("spawn koofr-exporter");
    RemoteExporter::init(connection, &InitArgs::new("koofr", config)).await
}

fn file(i: usize) -> (String, FileInfo) {
    let name = format!("f{i}.bin");
    let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    (format!("/{name}"), FileInfo::file(&name, 100, 0o600, time))
}

/// Restores `files` records one after the other, as plakar's single worker does, and returns
/// each outcome and the outcome of closing the stream.
async fn restore(
    exporter: &RemoteExporter,
    files: usize,
) -> (Vec<kloset_plugin::Result<()>>, kloset_plugin::Result<()>) {
    let mut outcomes = Vec::new();
    for i in 0..files {
        let (pathname, info) = file(i);
        outcomes.push(
            exporter
                .store_file(&pathname, &info, pattern_stream(i as u64, 100))
                .await,
        );
    }
    (outcomes, exporter.close().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_init_after_one_refused_request() {
    let h = Site::start_emulator().await.unwrap();
    let config = h.wrong_password_config(&h.path("out").unwrap());
    h.take_requests();
    let err = spawn(config).await.unwrap_err();
    assert_eq!(err.kind(), ConnectorErrorKind::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains(
            "cannot restore to koofr:///test/out: koofr get mount: authentication failed"
        ),
        "{err}"
    );
    assert!(!err.message().contains("WRONG"), "{err}");
    let requests = h.take_requests();
    assert_eq!(requests.len(), 1, "one check, nothing else: {requests:?}");
    assert_eq!((requests[0].endpoint, requests[0].status), ("mount", 401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_account_ends_the_export() {
    let h = Site::start_emulator().await.unwrap();
    let exporter = spawn(h.plugin_config(&h.path("out").unwrap()))
        .await
        .unwrap();
    h.emulator().faults().set_quota(150);
    h.take_requests();
    let (outcomes, closed) = restore(&exporter, 5).await;
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    let full = outcomes[1].as_ref().unwrap_err();
    assert!(full.message().contains("Quota exceeded"), "{full}");
    assert!(outcomes[2..].iter().all(Result::is_err), "{outcomes:?}");
    assert!(closed.is_err());
    let puts = h
        .take_requests()
        .iter()
        .filter(|r| r.endpoint == "files/put")
        .count();
    assert_eq!(puts, 2, "no upload after the first refusal");
    assert_eq!(exporter.plugin().shutdown().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_endpoint_fails_init_naming_the_cause() {
    let h = Site::start_emulator().await.unwrap();
    let (config, gave_up) = h.refused_endpoint_config(&h.path("out").unwrap());
    let err = spawn(config).await.unwrap_err();
    assert_eq!(err.kind(), ConnectorErrorKind::Unavailable, "{err:?}");
    assert!(err.message().contains(&gave_up), "{err}");
}
