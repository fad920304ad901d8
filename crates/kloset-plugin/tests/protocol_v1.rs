//! Protocol v1 checks of the serve adapters through raw v1 clients: the cookie, `Init` first,
//! failures plakar 1.0.6 cannot take as statuses, re-rooted exporter pathnames, the argv switch.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use common::{BIN, Site};
use futures::StreamExt;
use kloset_plugin::host::v1::{RemoteExporter, RemoteImporter, RemoteStore};
use kloset_plugin::host::{InitArgs, PluginConnection};
use kloset_plugin::pb::plakar::connectors::Chunk;
use kloset_plugin::pb::v1::exporter as epb;
use kloset_plugin::pb::v1::exporter::store_file_request::Type as Packet;
use kloset_plugin::pb::v1::importer as ipb;
use kloset_plugin::pb::v1::session::{Cookie, PathnameRequest};
use kloset_plugin::pb::v1::store as spb;
use kloset_plugin::reference::{MemoryBackend, ReferenceStore};
use kloset_plugin::{
    ByteStream, ConnectorError, ExportPipeline, Exporter, FileInfo, Importer, LocationInfo, Record,
    RecordStream, Result, Store,
};

fn location(root: &str) -> LocationInfo {
    LocationInfo {
        origin: "test".into(),
        r#type: "test".into(),
        root: root.into(),
        flags: 0,
    }
}

fn args() -> InitArgs {
    InitArgs::new("test", [("location".to_owned(), "test:///dest".to_owned())])
}

async fn reference_store() -> RemoteStore {
    let backend = Arc::new(MemoryBackend::default());
    let conn = PluginConnection::in_process(|io| {
        kloset_plugin::serve_store_v1_on(io, move |_ctx| {
            let backend = backend.clone();
            async move { Ok(ReferenceStore::new(backend, "/klosets/main")) }
        })
    })
    .await
    .unwrap();
    RemoteStore::init(conn, &args()).await.unwrap()
}

#[tokio::test]
async fn v1_protocol_cookie_is_answered_and_a_wrong_one_refused() {
    let store = reference_store().await;
    assert_eq!(
        store.cookie().len(),
        32,
        "a random cookie: {:?}",
        store.cookie()
    );
    assert_eq!(store.location().root, "/klosets/main");
    let mut client = store.client();
    let mode = |cookie: &str| Cookie {
        cookie: cookie.to_owned(),
    };
    assert_eq!(
        client
            .get_mode(mode(store.cookie()))
            .await
            .unwrap()
            .into_inner()
            .mode,
        6
    );
    // Hosts before integration-grpc v1.0.18 send none.
    assert!(client.get_mode(mode("")).await.is_ok());
    let status = client.get_mode(mode("not-the-cookie")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    let status = client
        .get_states(Cookie { cookie: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    let location = client
        .get_location(Cookie {
            cookie: store.cookie().to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .location;
    assert_eq!(location, "reference:///klosets/main");
    assert_eq!(store.location().r#type, "reference");
    assert_eq!(store.plugin().shutdown().await.unwrap(), 0);
}

#[tokio::test]
async fn v1_protocol_calls_before_init_fail_with_failed_precondition() {
    let conn = PluginConnection::spawn(BIN, ["store", "--plakar-protocol", "v1"])
        .await
        .unwrap();
    let mut client = spb::store_client::StoreClient::new(conn.channel());
    let status = client.get_packfiles(Cookie::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    drop(client);
    assert_eq!(conn.handle().shutdown().await.unwrap(), 0);

    let conn = PluginConnection::spawn(BIN, ["exporter", "--plakar-protocol=v1"])
        .await
        .unwrap();
    let status = epb::exporter_client::ExporterClient::new(conn.channel())
        .root(Cookie::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert_eq!(conn.handle().shutdown().await.unwrap(), 0);
}

#[tokio::test]
async fn v1_protocol_unknown_arguments_exit_2_with_a_usage_line() {
    for args in [
        vec!["store", "--plakar-protocol", "v3"],
        vec!["importer", "--verbose"],
    ] {
        let output = tokio::process::Command::new(BIN)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(args[2.min(args.len() - 1)]) && stderr.contains("usage:"),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "nothing but gRPC on stdout");
    }
}

/// An importer whose remote is down, or whose scan breaks after one record.
struct BrokenImporter {
    reachable: bool,
}

#[async_trait]
impl Importer for BrokenImporter {
    fn location(&self) -> LocationInfo {
        location("/src")
    }
    async fn ping(&self) -> Result<()> {
        if self.reachable {
            Ok(())
        } else {
            Err(ConnectorError::new(
                kloset_plugin::ConnectorErrorKind::PermissionDenied,
                "authentication failed",
            ))
        }
    }
    async fn scan(&self) -> Result<RecordStream> {
        let root = Record::directory(
            "/src",
            FileInfo::directory("src", 0o700, std::time::UNIX_EPOCH),
        );
        Ok(futures::stream::iter([
            Ok(root),
            Err(ConnectorError::other("listing broke off")),
            Ok(Record::error("/src/never", "not sent")),
        ])
        .boxed())
    }
    async fn open(&self, pathname: &str) -> Result<ByteStream> {
        Err(ConnectorError::not_found(pathname.to_owned()))
    }
}

async fn broken_importer(reachable: bool) -> Result<RemoteImporter> {
    let conn = PluginConnection::in_process(move |io| {
        kloset_plugin::serve_importer_v1_on(io, move |_ctx| async move {
            Ok(BrokenImporter { reachable })
        })
    })
    .await
    .unwrap();
    RemoteImporter::init(conn, &args()).await
}

#[tokio::test]
async fn v1_protocol_init_checks_the_remote_so_a_doomed_backup_fails_at_once() {
    let err = broken_importer(false).await.unwrap_err();
    assert!(err.message().contains("authentication failed"), "{err:?}");
}

#[tokio::test]
async fn v1_protocol_broken_scan_ends_cleanly_with_an_error_record_for_the_root() {
    let importer = broken_importer(true).await.unwrap();
    let mut client = importer.client();
    let mut responses = client
        .scan(Cookie {
            cookie: importer.cookie().to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut received = Vec::new();
    while let Some(item) = responses.next().await {
        // plakar 1.0.6 would read a failed stream forever: it must end with OK.
        received.push(item.expect("no error status on a v1 Scan stream"));
    }
    assert_eq!(received.len(), 2, "{received:?}");
    assert!(matches!(
        received[0].result,
        Some(ipb::scan_response::Result::Record(_))
    ));
    assert_eq!(received[1].pathname, "/src");
    match &received[1].result {
        Some(ipb::scan_response::Result::Error(error)) => {
            assert!(error.message.contains("listing broke off"), "{error:?}");
        }
        other => panic!("not an error record: {other:?}"),
    }
    // Through the host, it is an error record, then the end.
    let records: Vec<Record> = importer
        .scan()
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert!(records[1].is_error() && records.len() == 2, "{records:?}");
    assert_eq!(importer.plugin().shutdown().await.unwrap(), 0);
}

/// An exporter that records its calls and how each file's content ended.
#[derive(Default)]
struct RecordingExporter {
    calls: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Exporter for RecordingExporter {
    fn location(&self) -> LocationInfo {
        location("/dest")
    }
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
    async fn create_directory(&self, pathname: &str, _info: &FileInfo) -> Result<()> {
        self.calls.lock().unwrap().push(format!("mkdir {pathname}"));
        Ok(())
    }
    async fn store_file(&self, path: &str, info: &FileInfo, mut content: ByteStream) -> Result<()> {
        let mut total = 0;
        while let Some(chunk) = content.next().await {
            match chunk {
                Ok(chunk) => total += chunk.len(),
                Err(err) => {
                    let call = format!("store {path} broken after {total}: {}", err.message());
                    self.calls.lock().unwrap().push(call);
                    return Err(err);
                }
            }
        }
        let call = format!("store {path} {total} of {}", info.size);
        self.calls.lock().unwrap().push(call);
        Ok(())
    }
    async fn other(&self, record: &Record) -> Result<()> {
        let call = format!("other {} -> {}", record.pathname, record.target);
        self.calls.lock().unwrap().push(call);
        Ok(())
    }
}

fn data(chunk: &'static [u8], cookie: &str) -> epb::StoreFileRequest {
    epb::StoreFileRequest {
        r#type: Some(Packet::Data(Chunk {
            chunk: Bytes::from_static(chunk),
        })),
        cookie: cookie.to_owned(),
    }
}

fn header(pathname: &str, size: u64, cookie: &str) -> epb::StoreFileRequest {
    epb::StoreFileRequest {
        r#type: Some(Packet::Header(epb::Header {
            pathname: pathname.to_owned(),
            size,
        })),
        cookie: cookie.to_owned(),
    }
}

#[tokio::test]
async fn v1_protocol_exporter_reroots_checks_sizes_and_refuses_hard_links() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let conn = PluginConnection::in_process(move |io| {
        kloset_plugin::serve_exporter_v1_on(io, ExportPipeline::default(), move |_ctx| {
            let calls = seen.clone();
            async move { Ok(RecordingExporter { calls }) }
        })
    })
    .await
    .unwrap();
    let exporter = RemoteExporter::init(conn, &args()).await.unwrap();
    assert_eq!(exporter.location().root, "/dest");
    let cookie = exporter.cookie().to_owned();
    let mut client = exporter.client();
    let mkdir = |pathname: &str| PathnameRequest {
        pathname: pathname.to_owned(),
        cookie: cookie.clone(),
    };
    client.create_directory(mkdir("/dest")).await.unwrap();
    client.create_directory(mkdir("/dest/a")).await.unwrap();
    for outside in ["/destination", "/etc", "dest/a"] {
        let status = client.create_directory(mkdir(outside)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{outside}");
    }
    // Whole, short and long contents.
    let file = |messages: Vec<epb::StoreFileRequest>| {
        let mut client = client.clone();
        async move { client.store_file(futures::stream::iter(messages)).await }
    };
    file(vec![
        header("/dest/a/f", 5, &cookie),
        data(b"abc", &cookie),
        data(b"de", &cookie),
    ])
    .await
    .unwrap();
    let status = file(vec![
        header("/dest/a/short", 5, &cookie),
        data(b"abc", &cookie),
    ])
    .await
    .unwrap_err();
    assert!(status.message().contains("3 of 5 bytes"), "{status:?}");
    let status = file(vec![
        header("/dest/a/long", 2, &cookie),
        data(b"abc", &cookie),
    ])
    .await
    .unwrap_err();
    assert!(status.message().contains("more content"), "{status:?}");
    let status = file(vec![data(b"abc", &cookie)]).await.unwrap_err();
    assert!(status.message().contains("header"), "{status:?}");
    // SetPermissions has nothing to do; links.
    client
        .set_permissions(epb::SetPermissionsRequest {
            pathname: "/dest/a/f".into(),
            file_info: None,
            cookie: cookie.clone(),
        })
        .await
        .unwrap();
    let link = |ltype: u32| epb::CreateLinkRequest {
        oldname: "/dest/a/f".into(),
        newname: "/dest/a/l".into(),
        ltype,
        cookie: cookie.clone(),
    };
    client.create_link(link(1)).await.unwrap();
    let status = client.create_link(link(0)).await.unwrap_err();
    assert!(status.message().contains("hard link"), "{status:?}");
    exporter.close().await.unwrap();
    assert_eq!(exporter.plugin().shutdown().await.unwrap(), 0);
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [
            "mkdir /",
            "mkdir /a",
            "store /a/f 5 of 5",
            "store /a/short broken after 3: /dest/a/short: content ended after 3 of 5 bytes",
            "store /a/long broken after 0: /dest/a/long: more content than the 2 bytes announced",
            "other /a/l -> /dest/a/f",
        ]
    );
}

#[tokio::test]
async fn v1_protocol_plugin_exits_0_at_eof() {
    // plakar 1.0 never closes stdin itself, but its exit does (or it kills the plugin).
    let site = Site::new(&common::binary()).unwrap();
    let conn = PluginConnection::spawn(BIN, ["store", "--plakar-protocol", "v1"])
        .await
        .unwrap();
    let store = RemoteStore::init(conn, &site.args("/k", &[]))
        .await
        .unwrap();
    store.create(Bytes::from_static(b"config")).await.unwrap();
    assert_eq!(store.open().await.unwrap(), Bytes::from_static(b"config"));
    assert_eq!(store.plugin().shutdown().await.unwrap(), 0);
}
