//! Exporter mutants: the reference exporter with one behaviour broken, against the exporter
//! suite.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use kloset_plugin::reference::fixtures::{ExporterSite, Transport};
use kloset_plugin::suites::{
    ExporterCapabilities, ExporterFixture, ReadBackEntry, SuiteReport, exporter_cases,
    run_exporter_suite,
};
use kloset_plugin::{ByteStream, ConnectorError, Exporter, FileInfo, LocationInfo, Record, Result};

use super::{Handed, Mutant, assert_each_caught, drop_last_byte, one_chunk, run_each, until_break};

/// One broken behaviour of an exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExporterMutant {
    /// `ping` fails.
    PingFails,
    /// `store_file` answers Ok and writes nothing.
    OkWithoutWriting,
    /// `store_file` writes the content one byte short.
    FileOneByteShort,
    /// `store_file` ignores `FileInfo.mod_time` (the file gets the time of the upload).
    IgnoresMtime,
    /// `create_directory` answers Ok and creates nothing.
    DirectoryDoesNothing,
    /// A failed `store_file` answers Ok.
    SwallowsFailure,
    /// After one failed file every later call fails.
    StopsAfterFailure,
    /// A content that breaks midway is stored as far as it came (and the error reported).
    PublishesCutContent,
    /// Pathnames are cleaned lexically (`..` dropped at the root, `//` merged) instead of refused.
    CleansHostilePaths,
    /// `store_file` takes its pathname from a slot of the connector: concurrent files land
    /// under one name.
    SharedSlot,
    /// A symlink record fails although the fixture declares that special files are skipped.
    RejectsSymlinks,
    /// An error record (a file the backup could not read) fails instead of being skipped.
    FailsErrorRecords,
}

impl Mutant for ExporterMutant {
    const ALL: &'static [Self] = &[
        Self::PingFails,
        Self::OkWithoutWriting,
        Self::FileOneByteShort,
        Self::IgnoresMtime,
        Self::DirectoryDoesNothing,
        Self::SwallowsFailure,
        Self::StopsAfterFailure,
        Self::PublishesCutContent,
        Self::CleansHostilePaths,
        Self::SharedSlot,
        Self::RejectsSymlinks,
        Self::FailsErrorRecords,
    ];

    fn caught_by(self) -> &'static [&'static str] {
        match self {
            Self::PingFails => &["ping answers"],
            Self::OkWithoutWriting => &["tree round trip", "concurrent files"],
            Self::FileOneByteShort => &["tree round trip", "concurrent files"],
            Self::IgnoresMtime => &["tree round trip"],
            Self::DirectoryDoesNothing => &["tree round trip"],
            Self::SwallowsFailure => &["per-file failure does not stop"],
            Self::StopsAfterFailure => &["per-file failure does not stop"],
            Self::PublishesCutContent => &["cut-short content leaves no partial file"],
            Self::CleansHostilePaths => &["hostile paths stay inside"],
            Self::SharedSlot => &["concurrent files"],
            Self::RejectsSymlinks => &["error and other records"],
            Self::FailsErrorRecords => &["error and other records"],
        }
    }
}

/// An exporter that forwards to `inner`, except for its mutation.
struct MutantExporter {
    inner: Arc<dyn Exporter>,
    mutant: Option<ExporterMutant>,
    /// A call failed ([`ExporterMutant::StopsAfterFailure`]).
    failed: AtomicBool,
    /// The pathname the next upload goes to ([`ExporterMutant::SharedSlot`]).
    slot: Mutex<Option<String>>,
}

/// `pathname` with `.`, empty and `..` segments resolved, `..` stopping at the root.
fn lexically_clean(pathname: &str) -> String {
    let mut segments = Vec::new();
    for segment in pathname.split(['/', '\\']) {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/"))
}

impl MutantExporter {
    fn is(&self, mutant: ExporterMutant) -> bool {
        self.mutant == Some(mutant)
    }

    fn path(&self, pathname: &str) -> String {
        if self.is(ExporterMutant::CleansHostilePaths) {
            lexically_clean(pathname)
        } else {
            pathname.to_owned()
        }
    }

    fn after<T>(&self, outcome: Result<T>) -> Result<T> {
        if outcome.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
        outcome
    }

    fn stopped(&self) -> Result<()> {
        if self.is(ExporterMutant::StopsAfterFailure) && self.failed.load(Ordering::SeqCst) {
            return Err(ConnectorError::other(
                "not restored: an earlier file failed",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Exporter for MutantExporter {
    fn location(&self) -> LocationInfo {
        self.inner.location()
    }

    async fn ping(&self) -> Result<()> {
        if self.is(ExporterMutant::PingFails) {
            return Err(ConnectorError::other("ping refused (mutant)"));
        }
        self.inner.ping().await
    }

    fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight()
    }

    async fn create_directory(&self, pathname: &str, info: &FileInfo) -> Result<()> {
        self.stopped()?;
        if self.is(ExporterMutant::DirectoryDoesNothing) {
            return Ok(());
        }
        let outcome = self
            .inner
            .create_directory(&self.path(pathname), info)
            .await;
        self.after(outcome)
    }

    async fn store_file(&self, pathname: &str, info: &FileInfo, content: ByteStream) -> Result<()> {
        self.stopped()?;
        let mut pathname = self.path(pathname);
        let mut info = info.clone();
        let mut content = content;
        match self.mutant {
            Some(ExporterMutant::OkWithoutWriting) => return Ok(()),
            Some(ExporterMutant::FileOneByteShort) => content = drop_last_byte(content),
            Some(ExporterMutant::IgnoresMtime) => info.mod_time = SystemTime::now(),
            Some(ExporterMutant::PublishesCutContent) => {
                let (good, broke) = until_break(content).await;
                self.inner
                    .store_file(&pathname, &info, one_chunk(good))
                    .await?;
                return broke.map_or(Ok(()), Err);
            }
            Some(ExporterMutant::SharedSlot) => {
                *self.slot.lock().unwrap() = Some(pathname.clone());
                // Another call may set the slot meanwhile: the upload goes wherever it says.
                tokio::task::yield_now().await;
                pathname = self.slot.lock().unwrap().clone().unwrap_or(pathname);
            }
            _ => {}
        }
        let outcome = self.inner.store_file(&pathname, &info, content).await;
        if self.is(ExporterMutant::SwallowsFailure) {
            return Ok(());
        }
        self.after(outcome)
    }

    async fn other(&self, record: &Record) -> Result<()> {
        self.stopped()?;
        if self.is(ExporterMutant::RejectsSymlinks)
            && record
                .file_info
                .as_ref()
                .is_some_and(|i| i.mode.is_symlink())
        {
            return Err(ConnectorError::invalid_input(format!(
                "{}: not restored: a symlink",
                record.pathname
            )));
        }
        if self.is(ExporterMutant::FailsErrorRecords) && record.is_error() {
            return Err(ConnectorError::other(format!(
                "{}: not restored: it was not backed up",
                record.pathname
            )));
        }
        let outcome = self.inner.other(record).await;
        self.after(outcome)
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

/// The reference exporter fixture, its connectors wrapped in a [`MutantExporter`].
struct MutantExporterSite {
    inner: ExporterSite,
    mutant: Option<ExporterMutant>,
    handed: Handed<dyn Exporter>,
}

#[async_trait]
impl ExporterFixture for MutantExporterSite {
    async fn clear(&self) -> Result<()> {
        self.inner.clear().await
    }

    async fn connect(&self) -> Result<Arc<dyn Exporter>> {
        let inner = self.inner.connect().await?;
        let outer = Arc::new(MutantExporter {
            inner: inner.clone(),
            mutant: self.mutant,
            failed: AtomicBool::new(false),
            slot: Mutex::default(),
        });
        Ok(self.handed.keep(outer, inner))
    }

    async fn release(&self, exporter: Arc<dyn Exporter>) -> Result<()> {
        self.inner.release(self.handed.take(&exporter)?).await
    }

    async fn read_tree(&self) -> Result<Vec<ReadBackEntry>> {
        self.inner.read_tree().await
    }

    async fn outside_root(&self) -> Result<Vec<String>> {
        self.inner.outside_root().await
    }

    async fn make_unwritable(&self, path: &str) -> Result<bool> {
        self.inner.make_unwritable(path).await
    }

    fn capabilities(&self) -> ExporterCapabilities {
        self.inner.capabilities()
    }
}

async fn exporter_suite(mutant: Option<ExporterMutant>) -> SuiteReport {
    let site = MutantExporterSite {
        inner: ExporterSite::new(Transport::Direct).expect("exporter fixture"),
        mutant,
        handed: Handed::default(),
    };
    run_exporter_suite(&format!("{mutant:?}"), &site).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_faithful_exporter_wrapper_passes_every_case() {
    let report = exporter_suite(None).await;
    assert_eq!(report.outcomes.len(), exporter_cases().len());
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_exporter_mutant_fails_the_case_it_breaks() {
    let reports = run_each(|m| exporter_suite(Some(m))).await;
    let cases: Vec<_> = exporter_cases().iter().map(|c| c.name).collect();
    assert_each_caught::<ExporterMutant>(&cases, &reports);
}
