//! The conformance suites on the reference connectors: in-process, over a duplex pipe, and over
//! real stdin/stdout pipes of the reference plugin binary.

mod common;

use common::{ExporterSite, ImporterSite, StoreSite, Transport, binary};
use kloset_plugin::suites::{run_exporter_suite, run_importer_suite, run_store_suite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_in_process() {
    run_store_suite(
        "reference in-process",
        &StoreSite::new(Transport::Direct).unwrap(),
    )
    .await
    .assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_over_duplex() {
    run_store_suite(
        "reference over duplex",
        &StoreSite::new(Transport::Duplex).unwrap(),
    )
    .await
    .assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_over_binary() {
    let report = run_store_suite(
        "reference plugin binary",
        &StoreSite::new(binary()).unwrap(),
    )
    .await;
    eprintln!("{report}");
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importer_suite_in_process() {
    run_importer_suite(
        "reference in-process",
        &ImporterSite::new(Transport::Direct).unwrap(),
    )
    .await
    .assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importer_suite_over_duplex() {
    run_importer_suite(
        "reference over duplex",
        &ImporterSite::new(Transport::Duplex).unwrap(),
    )
    .await
    .assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importer_suite_over_binary() {
    let report = run_importer_suite(
        "reference plugin binary",
        &ImporterSite::new(binary()).unwrap(),
    )
    .await;
    eprintln!("{report}");
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_suite_in_process() {
    run_exporter_suite(
        "reference in-process",
        &ExporterSite::new(Transport::Direct).unwrap(),
    )
    .await
    .assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_suite_over_duplex() {
    run_exporter_suite(
        "reference over duplex",
        &ExporterSite::new(Transport::Duplex).unwrap(),
    )
    .await
    .assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_suite_over_binary() {
    let report = run_exporter_suite(
        "reference plugin binary",
        &ExporterSite::new(binary()).unwrap(),
    )
    .await;
    eprintln!("{report}");
    report.assert_passed();
}
