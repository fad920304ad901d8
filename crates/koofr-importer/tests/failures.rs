//! Failures as plakar meets them, through the `koofr-importer` binary: a wrong password or a
//! refused endpoint fails the scan with one error naming the cause, and a wrong password costs
//! Koofr one refused request.

use std::collections::HashMap;

use futures::StreamExt;
use kloset_plugin::host::{InitArgs, PluginConnection, RemoteImporter};
use kloset_plugin::{ConnectorError, ConnectorErrorKind, Importer};
use koofr_testkit::{Site, count_status};

const BIN: &str = env!("CARGO_BIN_EXE_koofr-importer");

async fn spawn(config: HashMap<String, String>) -> RemoteImporter {
    let connection = PluginConnection::spawn(BIN, std::iter::empty::<&str>())
        .await
        .expect("spawn koofr-importer");
    RemoteImporter::init(connection, &InitArgs::new("koofr", config))
        .await
        .expect("Init makes no request, so it succeeds")
}

/// The error that ends a scan (at its start or as its last item).
async fn scan_error(importer: &RemoteImporter) -> ConnectorError {
    let mut records = match importer.scan().await {
        Ok(records) => records,
        Err(err) => return err,
    };
    while let Some(record) = records.next().await {
        if let Err(err) = record {
            return err;
        }
    }
    panic!("the scan succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_the_scan_after_one_refused_request() {
    let h = Site::start_emulator().await.unwrap();
    h.emulator().put_file("/test/src/a.txt", "a", 1);
    let importer = spawn(h.wrong_password_config(&h.path("src").unwrap())).await;
    h.take_requests();
    let err = scan_error(&importer).await;
    assert_eq!(err.kind(), ConnectorErrorKind::PermissionDenied, "{err:?}");
    assert!(err.message().contains("authentication failed"), "{err}");
    let requests = h.take_requests();
    assert_eq!(count_status(&requests, 401), 1, "{requests:?}");
    let _ = importer.close().await;
    assert_eq!(importer.plugin().shutdown().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_endpoint_fails_the_scan_after_three_attempts() {
    let h = Site::start_emulator().await.unwrap();
    let (config, gave_up) = h.refused_endpoint_config(&h.path("src").unwrap());
    let importer = spawn(config).await;
    let err = scan_error(&importer).await;
    assert_eq!(err.kind(), ConnectorErrorKind::Unavailable, "{err:?}");
    assert!(err.message().contains(&gave_up), "{err}");
    let _ = importer.close().await;
    assert_eq!(importer.plugin().shutdown().await.unwrap(), 0);
}
