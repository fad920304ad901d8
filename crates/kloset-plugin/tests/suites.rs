//! The conformance suites on the reference connectors: in-process, over a duplex pipe, and over
//! real stdin/stdout pipes of the reference plugin binary, in protocol v2 and v1.

mod common;

use common::{ExporterSite, ImporterSite, StoreSite, Transport, binary};
use kloset_plugin::Protocol;
use kloset_plugin::suites::{run_exporter_suite, run_importer_suite, run_store_suite};

async fn store_suite(target: &str, transport: Transport, protocol: Protocol) {
    let site = StoreSite::new(transport).unwrap().with_protocol(protocol);
    let report = run_store_suite(target, &site).await;
    eprintln!("{report}");
    report.assert_passed();
}

async fn importer_suite(target: &str, transport: Transport, protocol: Protocol) {
    let site = ImporterSite::new(transport)
        .unwrap()
        .with_protocol(protocol);
    let report = run_importer_suite(target, &site).await;
    eprintln!("{report}");
    report.assert_passed();
}

async fn exporter_suite(target: &str, transport: Transport, protocol: Protocol) {
    let site = ExporterSite::new(transport)
        .unwrap()
        .with_protocol(protocol);
    let report = run_exporter_suite(target, &site).await;
    eprintln!("{report}");
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_in_process() {
    store_suite("reference in-process", Transport::Direct, Protocol::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_over_duplex() {
    store_suite("reference over duplex", Transport::Duplex, Protocol::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_over_binary() {
    store_suite("reference plugin binary", binary(), Protocol::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_over_duplex_v1_protocol() {
    store_suite("reference over duplex, v1", Transport::Duplex, Protocol::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_over_binary_v1_protocol() {
    store_suite("reference plugin binary, v1", binary(), Protocol::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importer_suite_in_process() {
    importer_suite("reference in-process", Transport::Direct, Protocol::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importer_suite_over_duplex() {
    importer_suite("reference over duplex", Transport::Duplex, Protocol::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importer_suite_over_binary() {
    importer_suite("reference plugin binary", binary(), Protocol::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importer_suite_over_duplex_v1_protocol() {
    importer_suite("reference over duplex, v1", Transport::Duplex, Protocol::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importer_suite_over_binary_v1_protocol() {
    importer_suite("reference plugin binary, v1", binary(), Protocol::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_suite_in_process() {
    exporter_suite("reference in-process", Transport::Direct, Protocol::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_suite_over_duplex() {
    exporter_suite("reference over duplex", Transport::Duplex, Protocol::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_suite_over_binary() {
    exporter_suite("reference plugin binary", binary(), Protocol::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_suite_over_duplex_v1_protocol() {
    exporter_suite("reference over duplex, v1", Transport::Duplex, Protocol::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_suite_over_binary_v1_protocol() {
    exporter_suite("reference plugin binary, v1", binary(), Protocol::V1).await;
}
