//! The conformance matrix (as `cargo xtask conformance` runs it) on the emulator with injected
//! faults: every suite passes against the plugin binaries, and faults were really injected.

use koofr_e2e::build_plugins;
use koofr_e2e::conformance::{MatrixOptions, MatrixTable, Suite, run_matrix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_suite_passes_on_the_emulator_with_faults() {
    let binaries = tokio::task::spawn_blocking(|| build_plugins(false))
        .await
        .unwrap()
        .expect("building the plugin binaries");
    let options = MatrixOptions {
        binaries,
        live: None,
        suites: Suite::ALL.to_vec(),
        faults: vec![true],
        seed: 5,
    };
    let rows = run_matrix(&options).await;
    let table = MatrixTable(&rows).to_string();
    println!("{table}");
    assert_eq!(rows.len(), 3, "{table}");
    for row in &rows {
        assert!(row.faults);
        assert_eq!(row.failed(), 0, "{table}");
        assert!(row.passed() >= 5, "{table}");
        assert!(
            row.injected.is_some_and(|n| n > 0),
            "no fault was injected:\n{table}"
        );
    }
}
