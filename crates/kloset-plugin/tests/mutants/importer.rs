//! Importer mutants: the reference importer with one behaviour broken, against the importer
//! suite.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use kloset_plugin::reference::fixtures::{ImporterSite, Transport};
use kloset_plugin::suites::{
    ImporterCapabilities, ImporterFixture, SuiteReport, TreeEntry, importer_cases,
    run_importer_suite,
};
use kloset_plugin::{
    ByteStream, ConnectorError, ConnectorErrorKind, Importer, LocationInfo, Record, RecordStream,
    Result,
};

use super::{
    Handed, Mutant, assert_each_caught, drop_last_byte, flip_first_byte, rekind, run_each,
};

/// One broken behaviour of an importer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImporterMutant {
    /// `ping` fails.
    PingFails,
    /// The scan drops the record of every name with a space.
    DropsARecord,
    /// The scan sends the record of every file twice.
    DuplicatesRecords,
    /// The scan sends children before their parents (the whole listing reversed).
    ChildrenFirst,
    /// `FileInfo.name` is the full pathname, not the base name.
    NameIsFullPath,
    /// `FileInfo.ino` is numbered per scan: two scans of one tree differ.
    InodePerScan,
    /// An unreadable entry aborts the scan instead of being an error record.
    ErrorAbortsScan,
    /// Error records are dropped.
    ErrorRecordsDropped,
    /// `open` of an unannounced pathname answers `Other` instead of `NotFound`.
    MissingIsOther,
    /// `open` yields the content with one bit flipped.
    ReaderWrongBytes,
    /// `open` yields the content one byte short.
    ReaderOneByteShort,
    /// A second `open` fails while a first stream is still unread.
    OneOpenAtATime,
}

impl Mutant for ImporterMutant {
    const ALL: &'static [Self] = &[
        Self::PingFails,
        Self::DropsARecord,
        Self::DuplicatesRecords,
        Self::ChildrenFirst,
        Self::NameIsFullPath,
        Self::InodePerScan,
        Self::ErrorAbortsScan,
        Self::ErrorRecordsDropped,
        Self::MissingIsOther,
        Self::ReaderWrongBytes,
        Self::ReaderOneByteShort,
        Self::OneOpenAtATime,
    ];

    fn caught_by(self) -> &'static [&'static str] {
        match self {
            Self::PingFails => &["ping answers"],
            Self::DropsARecord => &["records of a known tree"],
            Self::DuplicatesRecords => &["records of a known tree"],
            Self::ChildrenFirst => &["records of a known tree"],
            Self::NameIsFullPath => &["records of a known tree"],
            Self::InodePerScan => &["second scan identical"],
            Self::ErrorAbortsScan => &["per-file error is a record"],
            Self::ErrorRecordsDropped => &["per-file error is a record"],
            Self::MissingIsOther => &["unknown pathname not found"],
            Self::ReaderWrongBytes => &["content equals source", "concurrent opens"],
            Self::ReaderOneByteShort => &["content equals source", "concurrent opens"],
            Self::OneOpenAtATime => &["concurrent opens"],
        }
    }
}

/// An importer that forwards to `inner`, except for its mutation.
struct MutantImporter {
    inner: Arc<dyn Importer>,
    mutant: Option<ImporterMutant>,
    /// Scans so far, over every connector of the fixture ([`ImporterMutant::InodePerScan`]).
    scans: Arc<AtomicU64>,
    /// Content streams not dropped yet ([`ImporterMutant::OneOpenAtATime`]).
    open_streams: Arc<AtomicUsize>,
}

/// Counts one open content stream until dropped.
struct OpenStream(Arc<AtomicUsize>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Importer for MutantImporter {
    fn location(&self) -> LocationInfo {
        self.inner.location()
    }

    async fn ping(&self) -> Result<()> {
        if self.mutant == Some(ImporterMutant::PingFails) {
            return Err(ConnectorError::other("ping refused (mutant)"));
        }
        self.inner.ping().await
    }

    async fn scan(&self) -> Result<RecordStream> {
        let records = self.inner.scan().await?;
        let scan = self.scans.fetch_add(1, Ordering::SeqCst);
        Ok(match self.mutant {
            Some(ImporterMutant::DropsARecord) => records
                .filter(|r| std::future::ready(!r.as_ref().is_ok_and(|r| r.pathname.contains(' '))))
                .boxed(),
            Some(ImporterMutant::DuplicatesRecords) => records
                .flat_map(|r| {
                    let times = if r.as_ref().is_ok_and(|r| r.has_reader) {
                        2
                    } else {
                        1
                    };
                    futures::stream::iter(vec![r; times])
                })
                .boxed(),
            Some(ImporterMutant::ChildrenFirst) => {
                let mut all: Vec<_> = records.collect().await;
                all.reverse();
                futures::stream::iter(all).boxed()
            }
            Some(ImporterMutant::NameIsFullPath) => records
                .map(|r| {
                    r.map(|mut r| {
                        if let Some(info) = &mut r.file_info {
                            info.name = r.pathname.clone();
                        }
                        r
                    })
                })
                .boxed(),
            Some(ImporterMutant::InodePerScan) => records
                .map(move |r| {
                    r.map(|mut r| {
                        if let Some(info) = &mut r.file_info {
                            info.ino = scan + 1;
                        }
                        r
                    })
                })
                .boxed(),
            Some(ImporterMutant::ErrorAbortsScan) => records
                .map(|r| match r {
                    Ok(Record {
                        error: Some(why), ..
                    }) => Err(ConnectorError::other(why)),
                    other => other,
                })
                .boxed(),
            Some(ImporterMutant::ErrorRecordsDropped) => records
                .filter(|r| std::future::ready(!r.as_ref().is_ok_and(Record::is_error)))
                .boxed(),
            _ => records,
        })
    }

    async fn open(&self, pathname: &str) -> Result<ByteStream> {
        if self.mutant == Some(ImporterMutant::OneOpenAtATime)
            && self.open_streams.load(Ordering::SeqCst) > 0
        {
            return Err(ConnectorError::other(format!(
                "{pathname}: another file is being read"
            )));
        }
        let content = match self.inner.open(pathname).await {
            Err(e) if self.mutant == Some(ImporterMutant::MissingIsOther) => {
                return Err(if e.kind() == ConnectorErrorKind::NotFound {
                    rekind(&e, ConnectorErrorKind::Other)
                } else {
                    e
                });
            }
            other => other?,
        };
        Ok(match self.mutant {
            Some(ImporterMutant::ReaderWrongBytes) => flip_first_byte(content),
            Some(ImporterMutant::ReaderOneByteShort) => drop_last_byte(content),
            Some(ImporterMutant::OneOpenAtATime) => {
                self.open_streams.fetch_add(1, Ordering::SeqCst);
                let open = OpenStream(self.open_streams.clone());
                content
                    .map(move |chunk| {
                        let _open = &open;
                        chunk
                    })
                    .boxed()
            }
            _ => content,
        })
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

/// The reference importer fixture, its connectors wrapped in a [`MutantImporter`].
struct MutantImporterSite {
    inner: ImporterSite,
    mutant: Option<ImporterMutant>,
    scans: Arc<AtomicU64>,
    handed: Handed<dyn Importer>,
}

#[async_trait]
impl ImporterFixture for MutantImporterSite {
    async fn write_tree(&self, tree: &[TreeEntry]) -> Result<()> {
        self.inner.write_tree(tree).await
    }

    async fn connect(&self) -> Result<Arc<dyn Importer>> {
        let inner = self.inner.connect().await?;
        let outer = Arc::new(MutantImporter {
            inner: inner.clone(),
            mutant: self.mutant,
            scans: self.scans.clone(),
            open_streams: Arc::default(),
        });
        Ok(self.handed.keep(outer, inner))
    }

    async fn release(&self, importer: Arc<dyn Importer>) -> Result<()> {
        self.inner.release(self.handed.take(&importer)?).await
    }

    async fn break_entry(&self, path: &str) -> Result<bool> {
        self.inner.break_entry(path).await
    }

    fn capabilities(&self) -> ImporterCapabilities {
        self.inner.capabilities()
    }
}

async fn importer_suite(mutant: Option<ImporterMutant>) -> SuiteReport {
    let site = MutantImporterSite {
        inner: ImporterSite::new(Transport::Direct).expect("importer fixture"),
        mutant,
        scans: Arc::default(),
        handed: Handed::default(),
    };
    run_importer_suite(&format!("{mutant:?}"), &site).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_faithful_importer_wrapper_passes_every_case() {
    let report = importer_suite(None).await;
    assert_eq!(report.outcomes.len(), importer_cases().len());
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_importer_mutant_fails_the_case_it_breaks() {
    let reports = run_each(|m| importer_suite(Some(m))).await;
    let cases: Vec<_> = importer_cases().iter().map(|c| c.name).collect();
    assert_each_caught::<ImporterMutant>(&cases, &reports);
}
