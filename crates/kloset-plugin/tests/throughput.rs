//! Throughput of the stdio transport through the reference plugin binary (in-memory backend).
//! Slow and informative only: run with
//! `cargo test -p kloset-plugin --release --test throughput -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::BIN;
use kloset_plugin::host::{InitArgs, PluginConnection, RemoteStore};
use kloset_plugin::suites::{pattern_stream, verify_pattern};
use kloset_plugin::{Mac, Resource, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "moves 512 MiB; run explicitly to measure"]
async fn store_put_get_throughput_over_stdio() {
    let conn = PluginConnection::spawn(BIN, ["store"]).await.unwrap();
    let args = InitArgs::new("ref", [("location".to_owned(), "ref:///k".to_owned())]);
    let store = RemoteStore::init(conn, &args).await.unwrap();
    store
        .create(bytes::Bytes::from_static(b"cfg"))
        .await
        .unwrap();
    let len: u64 = 64 << 20;
    let rounds = 4u64;
    let started = Instant::now();
    for i in 0..rounds {
        store
            .put(
                Resource::Packfile.key(Mac([i as u8; 32])),
                pattern_stream(i, len),
            )
            .await
            .unwrap();
    }
    let put_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for i in 0..rounds {
        let stream = store
            .get(Resource::Packfile.key(Mac([i as u8; 32])), None)
            .await
            .unwrap();
        verify_pattern(stream, i, 0, len).await.unwrap();
    }
    let get_secs = started.elapsed().as_secs_f64();
    let mib = (len * rounds) as f64 / (1 << 20) as f64;
    eprintln!(
        "put {:.0} MiB/s, get {:.0} MiB/s (incl. pattern generation/verification)",
        mib / put_secs,
        mib / get_secs
    );
    assert_eq!(store.plugin().shutdown().await.unwrap(), 0);
}
