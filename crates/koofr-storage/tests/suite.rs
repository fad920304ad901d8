//! The kloset-plugin store conformance suite against this connector: in-process, over an
//! in-process gRPC pipe and through the `koofr-storage` binary (protocol v2 and v1), on the
//! emulator (or real Koofr
//! when KOOFR_ENDPOINT/KOOFR_USERNAME/KOOFR_PASSWORD are set), and on the emulator while it
//! injects 5xx, 429 with Retry-After, dropped connections and truncated bodies.

use std::path::PathBuf;

use kloset_plugin::Protocol;
use kloset_plugin::suites::{StoreCapabilities, run_store_suite};
use koofr_emulator::{FaultRule, Faults};
use koofr_storage::testkit::{KoofrStoreSite, Transport};
use koofr_testkit::{Site, count_status};

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

/// The endpoints a store's operations use, most used first.
const TRANSFERS: [&str; 6] = [
    "files/put",
    "files/get",
    "files/listrecursive",
    "files/remove",
    "files/folder",
    "files/info",
];

/// Injects `rule(endpoint).skip(skip)` for every endpoint of `endpoints` and skip of `skips`.
fn inject_each(
    faults: &Faults,
    endpoints: &[&str],
    skips: &[u32],
    rule: impl Fn(&str) -> FaultRule,
) {
    for endpoint in endpoints {
        for &skip in skips {
            faults.inject(rule(endpoint).skip(skip));
        }
    }
}

/// Runs the suite ([`under_faults`]) on the emulator of `test` while it injects the faults
/// `inject` sets up; with `status`, asserts that at least ten requests were answered it (0: a
/// dropped connection), so that the faults did apply.
async fn run_suite_under(
    test: &str,
    label: &str,
    transport: Transport,
    inject: impl FnOnce(&Faults),
    status: Option<u16>,
) {
    let harness = Site::start_emulator_only(test).await.unwrap();
    inject(&harness.emulator().faults());
    run_suite(&harness, label, transport, under_faults()).await;
    if let Some(status) = status {
        let answered = count_status(&harness.requests(), status);
        assert!(
            answered >= 10,
            "only {answered} requests were answered {status}: the faults did not apply"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_with_random_server_errors() {
    // Seeded, so reproducible: one request in ten answers 503, on every endpoint.
    let inject = |faults: &Faults| faults.set_failure_rate(None, 0.1);
    run_suite_under(
        "store_suite_with_random_server_errors",
        "binary with 10% 503s",
        binary(),
        inject,
        Some(503),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_with_throttling() {
    let inject = |faults: &Faults| {
        let rule = |endpoint: &str| FaultRule::status(endpoint, 429).retry_after(1);
        inject_each(faults, &TRANSFERS[..5], &[0, 9, 31], rule);
    };
    run_suite_under(
        "store_suite_with_throttling",
        "in-process with 429 + Retry-After",
        Transport::Direct,
        inject,
        Some(429),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_with_dropped_connections() {
    let inject = |faults: &Faults| {
        inject_each(
            faults,
            &TRANSFERS,
            &[0, 4, 17, 40],
            FaultRule::drop_connection,
        );
        for (skip, after) in [(2, 0), (11, 100_000), (25, 1_500_000)] {
            faults.inject(FaultRule::abort_upload(after).skip(skip));
        }
    };
    run_suite_under(
        "store_suite_with_dropped_connections",
        "binary with dropped connections",
        binary(),
        inject,
        Some(0),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_with_truncated_bodies() {
    let inject = |faults: &Faults| {
        for (skip, after) in [(0, 0), (3, 10), (8, 70_000), (15, 1_200_000), (30, 5)] {
            faults.inject(FaultRule::truncate_body("files/get", after).skip(skip));
            faults
                .inject(FaultRule::truncate_body("files/listrecursive", after.min(300)).skip(skip));
        }
    };
    run_suite_under(
        "store_suite_with_truncated_bodies",
        "in-process with truncated bodies",
        Transport::Direct,
        inject,
        None,
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
