//! Conformance suites: written once, run against any connector (in-process or over the wire).
//!
//! A backend provides a fixture (constructors plus hooks into its storage) and declares its
//! capabilities; each suite is a list of named cases; [`run_cases`] returns a per-case report,
//! and [`SuiteReport::assert_passed`] panics with every failure (for `#[test]`s).

mod data;
mod exporter;
mod importer;
mod store;
mod transport;

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

pub use data::{pattern_bytes, pattern_stream, read_all, verify_pattern};
pub use exporter::{
    ExporterCapabilities, ExporterFixture, ReadBackEntry, exporter_cases, run_exporter_suite,
};
pub use importer::{
    ImporterCapabilities, ImporterFixture, TreeEntry, TreeKind, importer_cases, run_importer_suite,
    sample_tree,
};
pub use store::{StoreCapabilities, StoreFixture, run_store_suite, store_cases};
pub use transport::{Connections, RemotePlugin, Transport};

/// Why a case failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFailure(pub String);

impl fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<crate::ConnectorError> for CaseFailure {
    fn from(err: crate::ConnectorError) -> Self {
        Self(format!("{:?}: {}", err.kind(), err.message()))
    }
}

impl From<std::io::Error> for CaseFailure {
    fn from(err: std::io::Error) -> Self {
        Self(format!("I/O: {err}"))
    }
}

impl From<String> for CaseFailure {
    fn from(message: String) -> Self {
        Self(message)
    }
}

/// The outcome of one case.
pub type CaseResult = Result<(), CaseFailure>;

/// Fails the case with a formatted message unless the condition holds.
#[macro_export]
#[doc(hidden)]
macro_rules! ensure_case {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::suites::CaseFailure(format!($($arg)+)));
        }
    };
}

/// A named case of a suite over fixture type `F`.
pub struct Case<F: ?Sized> {
    /// Short name shown in reports.
    pub name: &'static str,
    /// The case body.
    pub run: for<'a> fn(&'a F) -> BoxFuture<'a, CaseResult>,
}

impl<F: ?Sized> Case<F> {
    /// The case `name`, run by `run`.
    pub const fn new(
        name: &'static str,
        run: for<'a> fn(&'a F) -> BoxFuture<'a, CaseResult>,
    ) -> Self {
        Self { name, run }
    }
}

impl<F: ?Sized> fmt::Debug for Case<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// One line of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    /// Case name.
    pub name: &'static str,
    /// Pass, or the failure.
    pub result: CaseResult,
}

/// A suite's per-case results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteReport {
    /// Suite name (`store`, `importer`, `exporter`).
    pub suite: &'static str,
    /// What ran (e.g. `reference in-process`).
    pub target: String,
    /// Results in case order.
    pub outcomes: Vec<CaseOutcome>,
}

impl SuiteReport {
    /// Failed cases.
    pub fn failures(&self) -> impl Iterator<Item = &CaseOutcome> {
        self.outcomes.iter().filter(|o| o.result.is_err())
    }
    /// Number of passed cases.
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_ok()).count()
    }
    /// Panics listing every failed case.
    pub fn assert_passed(&self) {
        let failures: Vec<String> = self
            .failures()
            .map(|o| {
                format!(
                    "  {}: {}",
                    o.name,
                    o.result.as_ref().err().map(|e| e.0.as_str()).unwrap_or("")
                )
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{} suite on {}: {} of {} cases failed:\n{}",
            self.suite,
            self.target,
            failures.len(),
            self.outcomes.len(),
            failures.join("\n")
        );
    }
}

impl fmt::Display for SuiteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} suite on {}: {}/{} passed",
            self.suite,
            self.target,
            self.passed(),
            self.outcomes.len()
        )?;
        for o in &self.outcomes {
            match &o.result {
                Ok(()) => writeln!(f, "  PASS  {}", o.name)?,
                Err(e) => writeln!(f, "  FAIL  {}: {}", o.name, e)?,
            }
        }
        Ok(())
    }
}

/// Longest time one case may take before it counts as failed (hung).
const CASE_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs cases in order (they share the fixture's backend), catching panics and hangs.
pub async fn run_cases<F: ?Sized + Sync>(
    suite: &'static str,
    target: &str,
    fixture: &F,
    cases: &[Case<F>],
) -> SuiteReport {
    let mut outcomes = Vec::with_capacity(cases.len());
    for case in cases {
        let run = AssertUnwindSafe((case.run)(fixture)).catch_unwind();
        let result = match tokio::time::timeout(CASE_TIMEOUT, run).await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panic".to_owned());
                Err(CaseFailure(format!("panicked: {message}")))
            }
            Err(_) => Err(CaseFailure(format!("timed out after {CASE_TIMEOUT:?}"))),
        };
        if let Err(e) = &result {
            tracing::warn!(suite, case = case.name, error = %e, "case failed");
        }
        outcomes.push(CaseOutcome {
            name: case.name,
            result,
        });
    }
    SuiteReport {
        suite,
        target: target.to_owned(),
        outcomes,
    }
}
