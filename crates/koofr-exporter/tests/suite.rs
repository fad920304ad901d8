//! The kloset-plugin exporter conformance suite on the Koofr exporter: in-process, over an
//! in-process gRPC pipe, through the `koofr-exporter` binary (protocol v2 and v1), and with
//! injected put faults.
//! Runs on the emulator, or on real Koofr when KOOFR_ENDPOINT/USERNAME/PASSWORD are set.

mod common;

use common::site;
use kloset_plugin::Protocol;
use kloset_plugin::suites::{SuiteReport, run_exporter_suite};
use koofr_emulator::FaultRule;
use koofr_exporter::testkit::Transport;
use koofr_testkit::Site;

const BIN: &str = env!("CARGO_BIN_EXE_koofr-exporter");

/// Every case must pass.
fn assert_conformant(report: &SuiteReport) {
    eprintln!("{report}");
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_suite_in_process() {
    let h = Site::start_live_or_emulator("exporter").await.unwrap();
    let report = run_exporter_suite("koofr in-process", &site(&h, Transport::Direct)).await;
    assert_conformant(&report);
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_suite_over_grpc_pipe() {
    let h = Site::start_live_or_emulator("exporter").await.unwrap();
    let report = run_exporter_suite("koofr over duplex", &site(&h, Transport::Duplex)).await;
    assert_conformant(&report);
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_suite_through_the_plugin_binary() {
    let h = Site::start_live_or_emulator("exporter").await.unwrap();
    let report = run_exporter_suite(
        "koofr-exporter binary",
        &site(&h, Transport::Binary(BIN.into())),
    )
    .await;
    assert_conformant(&report);
    h.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_suite_through_the_plugin_binary_v1_protocol() {
    let h = Site::start_live_or_emulator("exporter").await.unwrap();
    let site = site(&h, Transport::Binary(BIN.into())).with_protocol(Protocol::V1);
    let report = run_exporter_suite("koofr-exporter binary, protocol v1", &site).await;
    assert_conformant(&report);
    h.finish().await.unwrap();
}

/// 5xx and 429 answers to uploads are retried (small bodies are replayable), so the suite
/// still passes; the request log proves the faults were hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_suite_with_put_faults_through_the_binary() {
    let h = Site::start_emulator_only("exporter_suite_with_put_faults_through_the_binary")
        .await
        .unwrap();
    let site = site(&h, Transport::Binary(BIN.into()));
    let faults = h.emulator().faults();
    // Faults go to folders holding only small (replayable) files; large files stream once and
    // are not retried. Every rule counts every matching put, hence the skip windows. No file
    // can meet more than 4 of a folder's faults, within the 8 configured attempts.
    let folder = |name: &str| site.destination().join(name).unwrap().to_string();
    let too_many = || FaultRule::status("files/put", 429).retry_after(0);
    for rule in [
        FaultRule::status("files/put", 503)
            .path_prefix(&folder("docs"))
            .times(2),
        too_many().path_prefix(&folder("docs")).skip(2).times(1),
        FaultRule::status("files/put", 503)
            .path_prefix(&folder("docs"))
            .skip(5)
            .times(1),
        FaultRule::status("files/put", 503)
            .path_prefix(&folder("many"))
            .times(2),
        too_many().path_prefix(&folder("many")).skip(4).times(1),
        FaultRule::status("files/put", 500)
            .path_prefix(&folder("many"))
            .skip(10)
            .times(1),
    ] {
        faults.inject(rule);
    }
    let report = run_exporter_suite("koofr-exporter binary with put faults", &site).await;
    assert_conformant(&report);
    let failed_puts = h
        .emulator()
        .requests()
        .iter()
        .filter(|r| r.endpoint == "files/put" && (r.status == 429 || r.status >= 500))
        .count();
    assert_eq!(
        failed_puts, 8,
        "every injected put failure was hit, and retried"
    );
}
