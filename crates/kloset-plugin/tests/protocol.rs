//! Protocol-level checks of the serve layer and transport, through raw gRPC clients.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use common::{BIN, Site, binary};
use futures::StreamExt;
use kloset_plugin::host::{InitArgs, PluginConnection, RemoteImporter, RemoteStore};
use kloset_plugin::pb::importer::importer_client::ImporterClient;
use kloset_plugin::pb::plakar::connectors as pbc;
use kloset_plugin::pb::plakar::exporter::export_request::Packet;
use kloset_plugin::pb::plakar::exporter::exporter_client::ExporterClient;
use kloset_plugin::pb::store::store_client::StoreClient;
use kloset_plugin::pb::{importer as ipb, plakar::exporter as epb, store as spb};
use kloset_plugin::suites::{ImporterFixture, pattern_stream, sample_tree};
use kloset_plugin::{
    ByteRange, ByteStream, ConnectorError, ExportPipeline, Exporter, FileInfo, Importer,
    LocationInfo, Mac, ObjectKey, Record, Resource, Result, Store,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn loc() -> LocationInfo {
    LocationInfo {
        origin: "test".into(),
        r#type: "test".into(),
        root: "/".into(),
        flags: 0,
    }
}

#[tokio::test]
async fn rpcs_before_init_fail_with_failed_precondition_and_exit_is_zero() {
    let conn = PluginConnection::spawn(BIN, ["store"]).await.unwrap();
    assert!(conn.handle().pid().is_some());
    let mut client = StoreClient::new(conn.channel());
    let status = client
        .list(spb::ListRequest {
            r#type: 1,
            flags: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    let status = client.mode(()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    drop(client);
    let (channel, handle) = conn.into_parts();
    drop(channel);
    assert_eq!(handle.shutdown().await.unwrap(), 0);

    let conn = PluginConnection::spawn(BIN, ["importer"]).await.unwrap();
    let status = ImporterClient::new(conn.channel())
        .ping(())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(conn.handle().shutdown().await.unwrap(), 0);

    let conn = PluginConnection::spawn(BIN, ["exporter"]).await.unwrap();
    let status = ExporterClient::new(conn.channel())
        .close(())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(conn.handle().shutdown().await.unwrap(), 0);
}

#[tokio::test]
async fn construction_error_reaches_the_host_as_a_readable_message() {
    let conn = PluginConnection::spawn(BIN, ["store"]).await.unwrap();
    let args = InitArgs::new(
        "ref",
        [
            ("backend_dir".to_owned(), "/definitely/not/here".to_owned()),
            ("location".to_owned(), "ref:///x".to_owned()),
        ],
    );
    let err = RemoteStore::init(conn, &args).await.unwrap_err();
    assert!(
        err.message().contains("backend_dir") && err.message().contains("/definitely/not/here"),
        "{err:?}"
    );

    let conn = PluginConnection::spawn(BIN, ["exporter"]).await.unwrap();
    let site = Site::new(&binary()).unwrap();
    let args = site.args("/d", &[("concurrency", "zero")]);
    let err = kloset_plugin::host::RemoteExporter::init(conn, &args)
        .await
        .unwrap_err();
    assert!(
        err.message().contains("concurrency") && err.message().contains("zero"),
        "{err:?}"
    );
}

#[tokio::test]
async fn broken_output_pipe_exits_1_with_one_line() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut child = tokio::process::Command::new(BIN)
        .arg("store")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // plakar vanished: writes now fail with EPIPE
    let mut stdin = child.stdin.take().unwrap();
    // HTTP/2 client preface and an empty SETTINGS frame, so the server answers.
    stdin
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    drop(stdin);
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "stderr: {stderr}");
}

#[tokio::test]
async fn import_stays_open_after_finished_until_half_close() {
    let fixture = common::ImporterSite::new(binary()).unwrap();
    fixture.write_tree(&sample_tree()).await.unwrap();
    let conn = PluginConnection::spawn(BIN, ["importer"]).await.unwrap();
    let remote = RemoteImporter::init(conn, &fixture.args()).await.unwrap();
    let mut client = remote.client();
    let (ack_tx, ack_rx) = mpsc::channel::<ipb::ImportRequest>(1024);
    let mut responses = client
        .import(ReceiverStream::new(ack_rx))
        .await
        .unwrap()
        .into_inner();
    let mut records = Vec::new();
    loop {
        let msg = responses
            .message()
            .await
            .unwrap()
            .expect("stream ended before finished");
        if msg.finished {
            break;
        }
        records.push(msg.record.unwrap());
    }
    assert!(records.len() > sample_tree().len());
    // After `finished`, the call must stay open while acks are due.
    let early = tokio::time::timeout(Duration::from_millis(300), responses.message()).await;
    assert!(
        early.is_err(),
        "Import ended before plakar half-closed: {early:?}"
    );
    // Open works after finished; an empty file is a stream with no messages.
    let empty = records
        .iter()
        .find(|r| r.pathname.ends_with("/empty.txt"))
        .unwrap()
        .clone();
    let opened = client
        .open(ipb::OpenRequest {
            record: Some(pbc::Record {
                pathname: empty.pathname.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    assert_eq!(opened.into_inner().count().await, 0);
    let big = records
        .iter()
        .find(|r| r.pathname.ends_with("/z-large.bin"))
        .unwrap()
        .clone();
    let mut chunks = client
        .open(ipb::OpenRequest {
            record: Some(pbc::Record {
                pathname: big.pathname.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let mut total = 0;
    while let Some(msg) = chunks.message().await.unwrap() {
        assert!(
            !msg.chunk.is_empty() && msg.chunk.len() <= 1 << 20,
            "chunk of {} bytes",
            msg.chunk.len()
        );
        total += msg.chunk.len();
    }
    assert_eq!(total, 5 << 20);
    // Not announced → NOT_FOUND.
    let status = client
        .open(ipb::OpenRequest {
            record: Some(pbc::Record {
                pathname: "/data/src/nope".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    for record in records {
        ack_tx
            .send(ipb::ImportRequest {
                result: Some(pbc::Result {
                    header: Some(record),
                    error: String::new(),
                }),
            })
            .await
            .unwrap();
    }
    // Acked files can no longer be opened.
    let status = client
        .open(ipb::OpenRequest {
            record: Some(pbc::Record {
                pathname: big.pathname.clone(),
                ..Default::default()
            }),
        })
        .await;
    drop(ack_tx);
    assert!(
        responses.message().await.unwrap().is_none(),
        "Import must end OK after the half-close"
    );
    if let Ok(resp) = status {
        // The ack may still be in flight when Open arrived; then the content is served.
        let _ = resp.into_inner().count().await;
    }
    remote.close().await.unwrap();
    assert_eq!(remote.plugin().shutdown().await.unwrap(), 0);
}

/// A store with canned answers, to reach protocol limits.
struct CannedStore {
    list_len: usize,
}

#[async_trait]
impl Store for CannedStore {
    fn location(&self) -> LocationInfo {
        loc()
    }
    async fn create(&self, _config: Bytes) -> Result<()> {
        Ok(())
    }
    async fn open(&self) -> Result<Bytes> {
        Ok(Bytes::from_static(b"cfg"))
    }
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
    async fn list(&self, _resource: Resource) -> Result<Vec<Mac>> {
        Ok((0..self.list_len)
            .map(|i| {
                let mut raw = [0u8; 32];
                raw[..8].copy_from_slice(&(i as u64).to_le_bytes());
                Mac(raw)
            })
            .collect())
    }
    async fn put(&self, _key: ObjectKey, mut data: ByteStream) -> Result<u64> {
        let mut n = 0;
        while let Some(chunk) = data.next().await {
            n += chunk?.len() as u64;
        }
        Ok(n)
    }
    async fn get(&self, _key: ObjectKey, _range: Option<ByteRange>) -> Result<ByteStream> {
        // One oversized chunk and an empty one: the serve layer must re-chunk and drop empties.
        Ok(
            futures::stream::iter([Ok(Bytes::from(vec![7u8; (2 << 20) + 5])), Ok(Bytes::new())])
                .boxed(),
        )
    }
    async fn delete(&self, _key: ObjectKey) -> Result<()> {
        Ok(())
    }
}

async fn canned_store(list_len: usize) -> RemoteStore {
    let conn = PluginConnection::in_process(move |io| {
        kloset_plugin::serve_store_on(io, move |_ctx| async move { Ok(CannedStore { list_len }) })
    })
    .await
    .unwrap();
    RemoteStore::init(conn, &InitArgs::new("canned", []))
        .await
        .unwrap()
}

#[tokio::test]
async fn store_serve_layer_limits() {
    let store = canned_store(120_001).await;
    let err = store.list(Resource::Packfile).await.unwrap_err();
    assert!(
        err.message().contains("too many") && err.message().contains("120001"),
        "{err:?}"
    );
    let mut client = store.client();
    // Unsupported resource.
    let status = client
        .list(spb::ListRequest {
            r#type: 4,
            flags: 0,
        })
        .await
        .unwrap_err();
    assert!(
        status.message().contains("unsupported resource"),
        "{status:?}"
    );
    // A chunk in the first Put message is data.
    let first = spb::PutRequest {
        mac: Bytes::from(vec![1u8; 32]),
        r#type: 1,
        chunk: Bytes::from_static(b"abc"),
        flags: 1,
    };
    let second = spb::PutRequest {
        mac: Bytes::new(),
        r#type: 0,
        chunk: Bytes::from_static(b"de"),
        flags: 0,
    };
    let written = client
        .put(futures::stream::iter([first, second]))
        .await
        .unwrap()
        .into_inner()
        .bytes_written;
    assert_eq!(written, 5);
    // A bad MAC names the problem.
    let bad = spb::PutRequest {
        mac: Bytes::from(vec![1u8; 31]),
        r#type: 1,
        chunk: Bytes::new(),
        flags: 0,
    };
    let status = client.put(futures::stream::iter([bad])).await.unwrap_err();
    assert!(status.message().contains("32 bytes"), "{status:?}");
    // Zero-length range: nothing; ranged reads are cut to the length; chunks ≤ 1 MiB, non-empty.
    let get = |range| spb::GetRequest {
        mac: Bytes::from(vec![1u8; 32]),
        r#type: 1,
        range,
        flags: 0,
    };
    let zero = client
        .get(get(Some(spb::get_request::Range {
            offset: 0,
            length: 0,
        })))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(zero.count().await, 0);
    let mut ranged = client
        .get(get(Some(spb::get_request::Range {
            offset: 0,
            length: 1_500_000,
        })))
        .await
        .unwrap()
        .into_inner();
    let mut sizes = Vec::new();
    while let Some(msg) = ranged.message().await.unwrap() {
        sizes.push(msg.chunk.len());
    }
    assert_eq!(sizes, [1 << 20, 1_500_000 - (1 << 20)]);
    let mut whole = client.get(get(None)).await.unwrap().into_inner();
    let mut sizes = Vec::new();
    while let Some(msg) = whole.message().await.unwrap() {
        sizes.push(msg.chunk.len());
    }
    assert_eq!(sizes, [1 << 20, 1 << 20, 5]);
    assert_eq!(store.mode().0, 6);
    assert_eq!(store.plugin().shutdown().await.unwrap(), 0);
}

/// An exporter that records call order and concurrency, slowly.
#[derive(Default)]
struct ProbeState {
    in_flight: AtomicUsize,
    max_seen: AtomicUsize,
    log: Mutex<Vec<String>>,
    saw_truncation: AtomicBool,
}

struct Probe(Arc<ProbeState>);

#[async_trait]
impl Exporter for Probe {
    fn location(&self) -> LocationInfo {
        loc()
    }
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
    fn max_in_flight(&self) -> usize {
        4
    }
    async fn create_directory(&self, pathname: &str, _info: &FileInfo) -> Result<()> {
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.0
            .log
            .lock()
            .unwrap()
            .push(format!("dir-done {pathname}"));
        Ok(())
    }
    async fn store_file(
        &self,
        pathname: &str,
        info: &FileInfo,
        mut content: ByteStream,
    ) -> Result<()> {
        self.0
            .log
            .lock()
            .unwrap()
            .push(format!("file-start {pathname}"));
        let now = self.0.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.max_seen.fetch_max(now, Ordering::SeqCst);
        let mut n = 0i64;
        let mut outcome = Ok(());
        while let Some(chunk) = content.next().await {
            match chunk {
                Ok(c) => n += c.len() as i64,
                Err(e) => {
                    self.0.saw_truncation.store(true, Ordering::SeqCst);
                    outcome = Err(e);
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        outcome?;
        if n != info.size {
            return Err(ConnectorError::other(format!(
                "{pathname}: got {n} bytes, expected {}",
                info.size
            )));
        }
        Ok(())
    }
}

async fn probe_client(
    probe: Arc<ProbeState>,
    pipeline: ExportPipeline,
) -> (
    ExporterClient<tonic::transport::Channel>,
    kloset_plugin::host::PluginHandle,
) {
    let conn = PluginConnection::in_process(move |io| {
        kloset_plugin::serve_exporter_on(io, pipeline, move |_ctx| {
            let probe = probe.clone();
            async move { Ok(Probe(probe)) }
        })
    })
    .await
    .unwrap();
    let (channel, handle) = conn.into_parts();
    let mut client = ExporterClient::new(channel);
    client
        .init(pbc::InitRequest {
            options: None,
            proto: "probe".into(),
            config: HashMap::new(),
        })
        .await
        .unwrap();
    (client, handle)
}

/// Sends `messages` on one `Export` stream and returns each result's error by pathname.
async fn export_errors(
    client: &mut ExporterClient<tonic::transport::Channel>,
    messages: Vec<epb::ExportRequest>,
) -> HashMap<String, String> {
    let mut results = client
        .export(futures::stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    let mut errors = HashMap::new();
    while let Some(msg) = results.message().await.unwrap() {
        let r = msg.result.unwrap();
        errors.insert(r.header.unwrap().pathname, r.error);
    }
    errors
}

fn record(path: &str, info: FileInfo, has_reader: bool) -> pbc::Record {
    let mut r = if has_reader {
        Record::file(path, info)
    } else {
        Record::directory(path, info)
    };
    r.has_reader = has_reader;
    r.to_proto()
}

#[tokio::test]
async fn exporter_pipelines_within_limits_and_keeps_parents_first() {
    let probe = Arc::new(ProbeState::default());
    let (mut client, handle) = probe_client(probe.clone(), ExportPipeline::default()).await;
    let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut messages = Vec::new();
    let mut sent = Vec::new();
    let mut push_record = |r: pbc::Record, messages: &mut Vec<epb::ExportRequest>| {
        sent.push(r.clone());
        messages.push(epb::ExportRequest {
            packet: Some(Packet::Record(r)),
        });
    };
    push_record(
        record("/", FileInfo::directory("src", 0o700, t), false),
        &mut messages,
    );
    push_record(
        record("/d", FileInfo::directory("d", 0o700, t), false),
        &mut messages,
    );
    for i in 0..12 {
        let size = 1000 + i * 10;
        push_record(
            record(
                &format!("/d/f{i}"),
                FileInfo::file(format!("f{i}"), size as i64, 0o600, t),
                true,
            ),
            &mut messages,
        );
        messages.push(epb::ExportRequest {
            packet: Some(Packet::Chunk(kloset_plugin::suites::pattern_bytes(
                i,
                0,
                size as usize,
            ))),
        });
        messages.push(epb::ExportRequest {
            packet: Some(Packet::Chunk(Bytes::new())),
        });
    }
    // A large file streams; an error record gets an Ok result without a call.
    push_record(
        record("/d/big", FileInfo::file("big", 6 << 20, 0o600, t), true),
        &mut messages,
    );
    let mut big = pattern_stream(3, 6 << 20);
    while let Some(chunk) = big.next().await {
        let chunk = chunk.unwrap();
        for piece in chunk.chunks(1 << 20) {
            messages.push(epb::ExportRequest {
                packet: Some(Packet::Chunk(Bytes::copy_from_slice(piece))),
            });
        }
    }
    messages.push(epb::ExportRequest {
        packet: Some(Packet::Chunk(Bytes::new())),
    });
    push_record(
        Record::error("/d/bad", "unreadable").to_proto(),
        &mut messages,
    );
    let mut no_info = Record::file("/d/noinfo", FileInfo::file("noinfo", 0, 0o600, t)).to_proto();
    no_info.file_info = None;
    no_info.has_reader = false;
    push_record(no_info, &mut messages);

    let mut results = client
        .export(futures::stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    let mut got: HashMap<String, pbc::Result> = HashMap::new();
    while let Some(msg) = results.message().await.unwrap() {
        let result = msg.result.unwrap();
        let header = result.header.clone().unwrap();
        assert!(
            got.insert(header.pathname.clone(), result).is_none(),
            "two results for {}",
            header.pathname
        );
    }
    assert_eq!(got.len(), sent.len(), "one result per record");
    for r in &sent {
        let result = &got[&r.pathname];
        assert_eq!(
            result.header.as_ref(),
            Some(r),
            "result header is a full echo"
        );
        match r.pathname.as_str() {
            "/d/noinfo" => assert!(result.error.contains("missing fileinfo"), "{result:?}"),
            _ => assert_eq!(result.error, "", "{}: {}", r.pathname, result.error),
        }
    }
    let max = probe.max_seen.load(Ordering::SeqCst);
    assert!(max > 1 && max <= 4, "max store_file calls in flight: {max}");
    let log = probe.log.lock().unwrap().clone();
    let dir_done = log.iter().position(|l| l == "dir-done /d").unwrap();
    let first_file = log
        .iter()
        .position(|l| l.starts_with("file-start /d/"))
        .unwrap();
    assert!(
        dir_done < first_file,
        "a file under /d started before /d was created: {log:?}"
    );
    drop(client);
    assert_eq!(handle.shutdown().await.unwrap(), 0);
}

#[tokio::test]
async fn exporter_truncated_file_gets_an_error_reader_and_result() {
    for small in [true, false] {
        let probe = Arc::new(ProbeState::default());
        let (mut client, handle) = probe_client(probe.clone(), ExportPipeline::default()).await;
        let t = UNIX_EPOCH;
        let size: usize = if small { 3000 } else { 8 << 20 };
        let file = record("/cut", FileInfo::file("cut", size as i64, 0o600, t), true);
        let messages = vec![
            epb::ExportRequest {
                packet: Some(Packet::Record(record(
                    "/",
                    FileInfo::directory("/", 0o700, t),
                    false,
                ))),
            },
            epb::ExportRequest {
                packet: Some(Packet::Record(file.clone())),
            },
            epb::ExportRequest {
                packet: Some(Packet::Chunk(Bytes::from(vec![1u8; 1000]))),
            },
        ];
        let errors = export_errors(&mut client, messages).await;
        assert!(
            errors["/cut"].contains("ended before the end"),
            "small={small}: {errors:?}"
        );
        assert_eq!(errors["/"], "");
        // Small files are never handed over incomplete; streamed ones see an error.
        assert_eq!(
            probe.saw_truncation.load(Ordering::SeqCst),
            !small,
            "small={small}"
        );
        drop(client);
        assert_eq!(handle.shutdown().await.unwrap(), 0);
    }
}

#[tokio::test]
async fn exporter_small_budget_and_undersized_declarations_still_deliver_every_byte() {
    let probe = Arc::new(ProbeState::default());
    let pipeline = ExportPipeline {
        small_file_threshold: 4096,
        memory_budget: 8192,
        max_in_flight: Some(2),
    };
    let (mut client, handle) = probe_client(probe.clone(), pipeline).await;
    let t = UNIX_EPOCH;
    let mut messages = vec![epb::ExportRequest {
        packet: Some(Packet::Record(record(
            "/",
            FileInfo::directory("/", 0o700, t),
            false,
        ))),
    }];
    // Declared 100 bytes, sends 5000: the layer switches from buffering to streaming.
    messages.push(epb::ExportRequest {
        packet: Some(Packet::Record(record(
            "/liar",
            FileInfo::file("liar", 100, 0o600, t),
            true,
        ))),
    });
    for _ in 0..5 {
        messages.push(epb::ExportRequest {
            packet: Some(Packet::Chunk(Bytes::from(vec![2u8; 1000]))),
        });
    }
    messages.push(epb::ExportRequest {
        packet: Some(Packet::Chunk(Bytes::new())),
    });
    for i in 0..10 {
        messages.push(epb::ExportRequest {
            packet: Some(Packet::Record(record(
                &format!("/s{i}"),
                FileInfo::file(format!("s{i}"), 3000, 0o600, t),
                true,
            ))),
        });
        messages.push(epb::ExportRequest {
            packet: Some(Packet::Chunk(Bytes::from(vec![3u8; 3000]))),
        });
        messages.push(epb::ExportRequest {
            packet: Some(Packet::Chunk(Bytes::new())),
        });
    }
    let errors = export_errors(&mut client, messages).await;
    assert_eq!(errors.len(), 12);
    assert!(
        errors["/liar"].contains("got 5000 bytes, expected 100"),
        "{errors:?}"
    );
    for i in 0..10 {
        assert_eq!(errors[&format!("/s{i}")], "");
    }
    let max = probe.max_seen.load(Ordering::SeqCst);
    assert!(max <= 2, "max in flight {max} above the configured 2");
    drop(client);
    assert_eq!(handle.shutdown().await.unwrap(), 0);
}
