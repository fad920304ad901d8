//! The kloset-plugin importer conformance suite on the Koofr importer: in-process, and through
//! the `koofr-importer` binary over stdin/stdout in protocol v2 and v1 (live Koofr when KOOFR_*
//! is set, else the emulator), plus a run through the binary with injected faults (emulator
//! only).

use kloset_plugin::Protocol;
use kloset_plugin::suites::run_importer_suite;
use koofr_emulator::FaultRule;
use koofr_importer::testkit::{KoofrImporterSite, Transport};
use koofr_testkit::Site;

const BIN: &str = env!("CARGO_BIN_EXE_koofr-importer");

fn site(h: &Site, transport: Transport) -> KoofrImporterSite {
    KoofrImporterSite::new(
        h.client().clone(),
        h.path("src").unwrap(),
        h.plugin_config(&h.path("src").unwrap()),
        transport,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importer_suite_in_process() {
    let h = Site::start_live_or_emulator("importer").await.unwrap();
    let report = run_importer_suite("koofr in-process", &site(&h, Transport::Direct)).await;
    eprintln!("{report}");
    h.finish().await.unwrap();
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importer_suite_over_the_plugin_binary() {
    let h = Site::start_live_or_emulator("importer").await.unwrap();
    let report = run_importer_suite(
        "koofr-importer binary",
        &site(&h, Transport::Binary(BIN.into())),
    )
    .await;
    eprintln!("{report}");
    h.finish().await.unwrap();
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importer_suite_over_the_plugin_binary_v1_protocol() {
    let h = Site::start_live_or_emulator("importer").await.unwrap();
    let site = site(&h, Transport::Binary(BIN.into())).with_protocol(Protocol::V1);
    let report = run_importer_suite("koofr-importer binary, protocol v1", &site).await;
    eprintln!("{report}");
    h.finish().await.unwrap();
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importer_suite_over_the_plugin_binary_with_faults() {
    let h = Site::start_emulator().await.unwrap();
    let root = h.path("src").unwrap();
    let faults = h.emulator().faults();
    // Before streaming: 5xx and 429 on the listing; on downloads 429, 5xx and a cut body.
    faults.inject(FaultRule::status("files/listrecursive", 503).times(2));
    faults.inject(FaultRule::status("files/listrecursive", 429).skip(2));
    faults.inject(FaultRule::status("files/get", 429));
    faults.inject(FaultRule::status("files/get", 502).skip(1));
    faults.inject(
        FaultRule::truncate_body("files/get", 1_000_000)
            .path_prefix(&format!("{root}/z-large.bin")),
    );
    let report = run_importer_suite(
        "koofr-importer binary with faults",
        &site(&h, Transport::Binary(BIN.into())),
    )
    .await;
    eprintln!("{report}");
    report.assert_passed();
    let log = h.emulator().requests();
    let statuses = |endpoint: &str| -> Vec<u16> {
        log.iter()
            .filter(|r| r.endpoint == endpoint)
            .map(|r| r.status)
            .collect()
    };
    let listings = statuses("files/listrecursive");
    assert!(
        listings.contains(&503) && listings.contains(&429),
        "faults not hit: {listings:?}"
    );
    let gets = statuses("files/get");
    assert!(
        gets.contains(&429) && gets.contains(&502),
        "faults not hit: {gets:?}"
    );
    let large = log
        .iter()
        .filter(|r| {
            r.endpoint == "files/get" && r.path.as_deref() == Some(&format!("{root}/z-large.bin"))
        })
        .count();
    // Read twice by the suite (content, concurrent opens) plus one resumed request.
    assert_eq!(large, 3, "the cut download must be resumed once");
}
