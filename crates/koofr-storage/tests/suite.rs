//! The kloset-plugin store conformance suite against this connector: in-process, over an
//! in-process gRPC pipe and through the `koofr-storage` binary (protocol v2 and v1), on the
//! emulator (or real Koofr
//! when KOOFR_ENDPOINT/KOOFR_USERNAME/KOOFR_PASSWORD are set), and on the emulator while it
//! injects 5xx, 429 with Retry-After, dropped connections and truncated bodies.

use std::path::PathBuf;

use kloset_plugin::Protocol;
use kloset_plugin::suites::{StoreCapabilities, run_store_suite};
use koofr_emulator::FaultRule;
use koofr_storage::testkit::{KoofrStoreSite, Transport};
use koofr_testkit::Site;

fn binary() -> Transport {
    Transport::Binary(PathBuf::from(env!("CARGO_BIN_EXE_koofr-storage")))
}

/// Runs the whole suite on a fresh kloset folder of `harness` and asserts every case passed.
async fn run_suite(
    harness: &Site,
    label: &str,
    transport: Transport,
    capabilities: StoreCapabilities,
) {
    run_suite_over(harness, label, transport, Protocol::V2, capabilities).await;
}

/// [`run_suite`] in `protocol`.
async fn run_suite_over(
    harness: &Site,
    label: &str,
    transport: Transport,
    protocol: Protocol,
    capabilities: StoreCapabilities,
) {
    let site = KoofrStoreSite::new(
        harness.client().clone(),
        harness.plugin_config(&harness.path("kloset").unwrap()),
        transport,
    )
    .expect("fixture")
    .with_protocol(protocol)
    .with_capabilities(capabilities);
    let target = format!(
        "koofr-storage {label} on {}",
        if harness.is_live() {
            "live Koofr"
        } else {
            "the emulator"
        }
    );
    let report = run_store_suite(&target, &site).await;
    eprintln!("{report}");
    report.assert_passed();
}

/// Smaller "large object" for the fault runs, which repeat the suite several times.
fn under_faults() -> StoreCapabilities {
    StoreCapabilities {
        large_object_bytes: 6 << 20,
        ..StoreCapabilities::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_in_process() {
    let harness = Site::start_live_or_emulator("storage").await.unwrap();
    run_suite(
        &harness,
        "in-process",
        Transport::Direct,
        StoreCapabilities::default(),
    )
    .await;
    harness.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_over_grpc_pipe() {
    let harness = Site::start_live_or_emulator("storage").await.unwrap();
    run_suite(
        &harness,
        "over an in-process gRPC pipe",
        Transport::Duplex,
        under_faults(),
    )
    .await;
    harness.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_through_the_binary() {
    let harness = Site::start_live_or_emulator("storage").await.unwrap();
    run_suite(&harness, "binary", binary(), StoreCapabilities::default()).await;
    harness.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_through_the_binary_v1_protocol() {
    let harness = Site::start_live_or_emulator("storage").await.unwrap();
    run_suite_over(
        &harness,
        "binary, protocol v1",
        binary(),
        Protocol::V1,
        StoreCapabilities::default(),
    )
    .await;
    harness.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_with_random_server_errors() {
    let harness = Site::start_emulator_only("store_suite_with_random_server_errors")
        .await
        .unwrap();
    // Seeded, so reproducible: one request in ten answers 503, on every endpoint.
    harness.emulator().faults().set_failure_rate(None, 0.1);
    run_suite(&harness, "binary with 10% 503s", binary(), under_faults()).await;
    let failed = harness
        .emulator()
        .requests()
        .iter()
        .filter(|r| r.status == 503)
        .count();
    assert!(
        failed >= 10,
        "only {failed} requests got a 503: the faults did not apply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_with_throttling() {
    let harness = Site::start_emulator_only("store_suite_with_throttling")
        .await
        .unwrap();
    let faults = harness.emulator().faults();
    for endpoint in [
        "files/put",
        "files/get",
        "files/listrecursive",
        "files/remove",
        "files/folder",
    ] {
        for skip in [0, 9, 31] {
            faults.inject(FaultRule::status(endpoint, 429).retry_after(1).skip(skip));
        }
    }
    run_suite(
        &harness,
        "in-process with 429 + Retry-After",
        Transport::Direct,
        under_faults(),
    )
    .await;
    let throttled = harness
        .emulator()
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert!(
        throttled >= 10,
        "only {throttled} requests were throttled: the faults did not apply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_with_dropped_connections() {
    let harness = Site::start_emulator_only("store_suite_with_dropped_connections")
        .await
        .unwrap();
    let faults = harness.emulator().faults();
    for endpoint in [
        "files/put",
        "files/get",
        "files/listrecursive",
        "files/remove",
        "files/folder",
        "files/info",
    ] {
        for skip in [0, 4, 17, 40] {
            faults.inject(FaultRule::drop_connection(endpoint).skip(skip));
        }
    }
    for (skip, after) in [(2, 0), (11, 100_000), (25, 1_500_000)] {
        faults.inject(FaultRule::abort_upload(after).skip(skip));
    }
    run_suite(
        &harness,
        "binary with dropped connections",
        binary(),
        under_faults(),
    )
    .await;
    let dropped = harness
        .emulator()
        .requests()
        .iter()
        .filter(|r| r.status == 0)
        .count();
    assert!(
        dropped >= 10,
        "only {dropped} connections were dropped: the faults did not apply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_with_truncated_bodies() {
    let harness = Site::start_emulator_only("store_suite_with_truncated_bodies")
        .await
        .unwrap();
    let faults = harness.emulator().faults();
    for (skip, after) in [(0, 0), (3, 10), (8, 70_000), (15, 1_200_000), (30, 5)] {
        faults.inject(FaultRule::truncate_body("files/get", after).skip(skip));
        faults.inject(FaultRule::truncate_body("files/listrecursive", after.min(300)).skip(skip));
    }
    run_suite(
        &harness,
        "in-process with truncated bodies",
        Transport::Direct,
        under_faults(),
    )
    .await;
}

/// The protocol comes from argv (the package manifest's `args`); anything else is refused.
#[tokio::test]
async fn binary_refuses_unknown_arguments_with_status_2() {
    for args in [&["--bogus"][..], &["--plakar-protocol", "v9"][..]] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_koofr-storage"))
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("run koofr-storage");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        let last = args[args.len() - 1];
        assert!(
            stderr.contains(last) && stderr.contains("usage: ") && stderr.contains("v1|v2"),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty());
    }
}
