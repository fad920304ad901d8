//! The exporter suite: ping, a tree restored and read back, one result per record, per-file
//! failures that do not stop the export, content cut short that leaves no partial file, and
//! hostile paths that cannot escape the root.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

use super::data::{failing_stream, pattern_bytes, pattern_stream};
use super::importer::{TreeKind, sample_tree};
use super::{Case, CaseFailure, CaseResult, SuiteReport, run_cases};
use crate::ensure_case;
use crate::error::Result;
use crate::types::{FileInfo, FileMode, Record};
use crate::{ByteStream, Exporter, Protocol};

/// An entry read back from the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBackEntry {
    /// Path relative to the destination root, `/`-separated.
    pub path: String,
    /// Content for files, None for directories.
    pub content: Option<Bytes>,
    /// Modification time.
    pub mtime: SystemTime,
}

/// What an exporter backend keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExporterCapabilities {
    /// File mtimes are set from `FileInfo.mod_time`.
    pub file_mtimes: bool,
    /// Directory mtimes are set from `FileInfo.mod_time`.
    pub dir_mtimes: bool,
    /// Symlinks, devices and other special files get an error result (the target cannot store
    /// them) instead of being skipped with `Ok`.
    pub rejects_special_files: bool,
}

impl ExporterCapabilities {
    /// What is left of these capabilities when the connector is reached over `protocol` (None:
    /// called directly). Protocol v1 sends a file's metadata only after its content is stored
    /// (plakar 1.0's `SetPermissions`), so no file modification time can be restored with it.
    pub fn over(self, protocol: Option<Protocol>) -> Self {
        match protocol {
            Some(Protocol::V1) => Self {
                file_mtimes: false,
                ..self
            },
            _ => self,
        }
    }
}

impl Default for ExporterCapabilities {
    fn default() -> Self {
        Self {
            file_mtimes: true,
            dir_mtimes: false,
            rejects_special_files: false,
        }
    }
}

/// An exporter backend under test.
#[async_trait]
pub trait ExporterFixture: Send + Sync {
    /// Empties the destination (and everything around it the fixture watches).
    async fn clear(&self) -> Result<()>;
    /// A new connector after `Init` (a new process per call for plugin fixtures).
    async fn connect(&self) -> Result<Arc<dyn Exporter>>;
    /// Ends a connector (plugin fixtures check exit status 0).
    async fn release(&self, exporter: Arc<dyn Exporter>) -> Result<()>;
    /// Everything under the destination root, sorted by path, with file contents.
    async fn read_tree(&self) -> Result<Vec<ReadBackEntry>>;
    /// Paths of anything the fixture can see outside the destination root (must stay empty).
    async fn outside_root(&self) -> Result<Vec<String>>;
    /// Makes writing the file at `path` (relative) fail; Ok(false) if unsupported.
    async fn make_unwritable(&self, path: &str) -> Result<bool>;
    /// Declared capabilities.
    fn capabilities(&self) -> ExporterCapabilities {
        ExporterCapabilities::default()
    }
}

/// Every case of the exporter suite, in run order.
pub fn exporter_cases() -> Vec<Case<dyn ExporterFixture>> {
    vec![
        Case::new("ping answers", ping_answers),
        Case::new("tree round trip", tree_round_trip),
        Case::new("concurrent files", concurrent_files),
        Case::new("per-file failure does not stop", per_file_failure),
        Case::new(
            "cut-short content leaves no partial file",
            cut_short_content,
        ),
        Case::new("hostile paths stay inside", hostile_paths),
        Case::new("error and other records", error_and_other_records),
    ]
}

/// Runs the exporter suite.
pub async fn run_exporter_suite(
    target: &str,
    fixture: &(dyn ExporterFixture + 'static),
) -> SuiteReport {
    run_cases("exporter", target, fixture, &exporter_cases()).await
}

async fn with_exporter<'b, F>(fixture: &dyn ExporterFixture, body: F) -> CaseResult
where
    F: FnOnce(Arc<dyn Exporter>) -> BoxFuture<'b, CaseResult>,
{
    fixture.clear().await?;
    let exporter = fixture.connect().await?;
    let outcome = body(exporter.clone()).await;
    let closed = exporter.close().await;
    let released = fixture.release(exporter).await;
    outcome?;
    closed?;
    released?;
    Ok(())
}

fn root_info() -> FileInfo {
    FileInfo::directory(
        "src",
        0o755,
        UNIX_EPOCH + Duration::from_secs(1_600_000_000),
    )
}

/// Restores the sample tree; returns one outcome per record.
async fn export_sample(exporter: &dyn Exporter) -> Vec<(String, Result<()>)> {
    let mut outcomes = vec![(
        "/".to_owned(),
        exporter.create_directory("/", &root_info()).await,
    )];
    for entry in sample_tree() {
        let path = format!("/{}", entry.path);
        let name = entry.path.rsplit('/').next().unwrap_or_default().to_owned();
        let outcome = match entry.kind {
            TreeKind::Dir => {
                exporter
                    .create_directory(&path, &FileInfo::directory(name, 0o700, entry.mtime))
                    .await
            }
            TreeKind::File { seed, len } => {
                let info = FileInfo::file(name, len as i64, 0o600, entry.mtime);
                exporter
                    .store_file(&path, &info, pattern_stream(seed, len))
                    .await
            }
        };
        outcomes.push((path, outcome));
    }
    outcomes
}

fn check_read_back(
    tree: &[ReadBackEntry],
    caps: ExporterCapabilities,
    skip: Option<&str>,
) -> CaseResult {
    let expected: Vec<_> = sample_tree()
        .into_iter()
        .filter(|e| Some(e.path.as_str()) != skip)
        .collect();
    ensure_case!(
        tree.len() == expected.len(),
        "read back {} entries, expected {}: {:?}",
        tree.len(),
        expected.len(),
        tree.iter().map(|e| &e.path).collect::<Vec<_>>()
    );
    for entry in expected {
        let got = tree
            .iter()
            .find(|e| e.path == entry.path)
            .ok_or_else(|| CaseFailure(format!("{} missing after export", entry.path)))?;
        // Whether this kind of entry keeps its time.
        let keeps_mtime = match entry.kind {
            TreeKind::Dir => {
                ensure_case!(got.content.is_none(), "{} is not a directory", entry.path);
                caps.dir_mtimes
            }
            TreeKind::File { seed, len } => {
                let content = got
                    .content
                    .as_ref()
                    .ok_or_else(|| CaseFailure(format!("{} is not a file", entry.path)))?;
                ensure_case!(
                    content.len() as u64 == len,
                    "{}: {} bytes, expected {len}",
                    entry.path,
                    content.len()
                );
                ensure_case!(
                    *content == pattern_bytes(seed, 0, len as usize),
                    "{}: content differs",
                    entry.path
                );
                caps.file_mtimes
            }
        };
        if keeps_mtime {
            ensure_case!(
                got.mtime == entry.mtime,
                "{}: mtime {:?}, expected {:?}",
                entry.path,
                got.mtime,
                entry.mtime
            );
        }
    }
    Ok(())
}

fn ping_answers(f: &dyn ExporterFixture) -> BoxFuture<'_, CaseResult> {
    with_exporter(f, |exporter| {
        async move { Ok(exporter.ping().await?) }.boxed()
    })
    .boxed()
}

fn tree_round_trip(f: &dyn ExporterFixture) -> BoxFuture<'_, CaseResult> {
    async move {
        with_exporter(f, |exporter| {
            async move {
                let outcomes = export_sample(&*exporter).await;
                ensure_case!(
                    outcomes.len() == sample_tree().len() + 1,
                    "{} results",
                    outcomes.len()
                );
                for (path, outcome) in outcomes {
                    outcome.map_err(|e| CaseFailure(format!("{path}: {e}")))?;
                }
                Ok(())
            }
            .boxed()
        })
        .await?;
        check_read_back(&f.read_tree().await?, f.capabilities(), None)?;
        let outside = f.outside_root().await?;
        ensure_case!(outside.is_empty(), "entries outside the root: {outside:?}");
        Ok(())
    }
    .boxed()
}

fn concurrent_files(f: &dyn ExporterFixture) -> BoxFuture<'_, CaseResult> {
    async move {
        with_exporter(f, |exporter| {
            async move {
                exporter.create_directory("/", &root_info()).await?;
                let t = UNIX_EPOCH + Duration::from_secs(1_650_000_000);
                exporter
                    .create_directory("/many", &FileInfo::directory("many", 0o700, t))
                    .await?;
                let calls = (0..24u64).map(|i| {
                    let exporter = exporter.clone();
                    async move {
                        let info = FileInfo::file(format!("f{i}"), (i * 1000) as i64, 0o600, t);
                        exporter
                            .store_file(&format!("/many/f{i}"), &info, pattern_stream(i, i * 1000))
                            .await
                    }
                });
                for outcome in futures::future::join_all(calls).await {
                    outcome?;
                }
                Ok(())
            }
            .boxed()
        })
        .await?;
        let tree = f.read_tree().await?;
        for i in 0..24u64 {
            let path = format!("many/f{i}");
            let got = tree
                .iter()
                .find(|e| e.path == path)
                .ok_or_else(|| CaseFailure(format!("{path} missing")))?;
            ensure_case!(
                got.content.as_ref() == Some(&pattern_bytes(i, 0, (i * 1000) as usize)),
                "{path}: wrong content"
            );
        }
        Ok(())
    }
    .boxed()
}

fn per_file_failure(f: &dyn ExporterFixture) -> BoxFuture<'_, CaseResult> {
    async move {
        let victim = "docs/a.txt";
        f.clear().await?;
        if !f.make_unwritable(victim).await? {
            return Ok(());
        }
        let exporter = f.connect().await?;
        let outcomes = export_sample(&*exporter).await;
        let closed = exporter.close().await;
        f.release(exporter).await?;
        closed?;
        for (path, outcome) in &outcomes {
            if path == &format!("/{victim}") {
                ensure_case!(
                    outcome.is_err(),
                    "{path}: the store succeeded although the target is unwritable"
                );
            } else {
                ensure_case!(
                    outcome.is_ok(),
                    "{path}: {:?} (after one failed file)",
                    outcome.as_ref().err()
                );
            }
        }
        // Everything else arrived; the victim's squatter is whatever the fixture put there.
        let tree: Vec<_> = f
            .read_tree()
            .await?
            .into_iter()
            .filter(|e| !e.path.starts_with(victim))
            .collect();
        check_read_back(&tree, f.capabilities(), Some(victim))
    }
    .boxed()
}

/// Declared size of a cut-short file: above the serve layer's default small-file threshold
/// (4 MiB), so that over the wire too the connector itself sees its content break.
const CUT_DECLARED: u64 = 6 << 20;
/// Bytes of a cut-short file that arrive before its content breaks.
const CUT_AFTER: u64 = (1 << 20) + 3;

/// Stores one file on a connection of its own (over the wire a broken content ends the export
/// stream, as an interrupted plakar does); the outcome of `store_file`.
async fn store_alone(
    f: &dyn ExporterFixture,
    path: &str,
    declared: u64,
    content: ByteStream,
) -> Result<Result<()>, CaseFailure> {
    let exporter = f.connect().await?;
    let t = UNIX_EPOCH + Duration::from_secs(1_650_000_000);
    let info = FileInfo::file(path.trim_start_matches('/'), declared as i64, 0o600, t);
    let outcome = async {
        exporter
            .create_directory("/", &root_info())
            .await
            .map_err(|e| CaseFailure(format!("/: {e}")))?;
        Ok(exporter.store_file(path, &info, content).await)
    }
    .await;
    let closed = exporter.close().await;
    f.release(exporter).await?;
    closed?;
    outcome
}

fn cut_short_content(f: &dyn ExporterFixture) -> BoxFuture<'_, CaseResult> {
    async move {
        f.clear().await?;
        store_alone(f, "/kept.bin", 3000, pattern_stream(13, 3000))
            .await?
            .map_err(|e| CaseFailure(format!("/kept.bin: {e}")))?;
        let replaced =
            store_alone(f, "/kept.bin", CUT_DECLARED, failing_stream(14, CUT_AFTER)).await?;
        ensure_case!(
            replaced.is_err(),
            "/kept.bin: storing a cut-short content over it succeeded"
        );
        let created =
            store_alone(f, "/fresh.bin", CUT_DECLARED, failing_stream(15, CUT_AFTER)).await?;
        ensure_case!(
            created.is_err(),
            "/fresh.bin: storing a cut-short content succeeded"
        );
        let tree = f.read_tree().await?;
        ensure_case!(
            tree.iter().map(|e| e.path.as_str()).collect::<Vec<_>>() == ["kept.bin"],
            "after two cut-short files the destination holds {:?}, expected only kept.bin",
            tree.iter().map(|e| &e.path).collect::<Vec<_>>()
        );
        ensure_case!(
            tree[0].content.as_ref() == Some(&pattern_bytes(13, 0, 3000)),
            "kept.bin: the previous content was not kept ({:?} bytes now)",
            tree[0].content.as_ref().map(Bytes::len)
        );
        let outside = f.outside_root().await?;
        ensure_case!(outside.is_empty(), "entries outside the root: {outside:?}");
        Ok(())
    }
    .boxed()
}

const HOSTILE: [&str; 9] = [
    "/../escape.txt",
    "/docs/../../escape.txt",
    "/..",
    "/a\\..\\..\\escape.txt",
    "relative.txt",
    "/./dot.txt",
    "/a//b.txt",
    "/nul\0.txt",
    "/trailing/",
];

fn hostile_paths(f: &dyn ExporterFixture) -> BoxFuture<'_, CaseResult> {
    async move {
        with_exporter(f, |exporter| {
            async move {
                exporter.create_directory("/", &root_info()).await?;
                let t = UNIX_EPOCH + Duration::from_secs(1_650_000_000);
                for path in HOSTILE {
                    let name = path.rsplit('/').next().unwrap_or_default();
                    let info = FileInfo::file(name, 3, 0o600, t);
                    let outcome = exporter.store_file(path, &info, pattern_stream(9, 3)).await;
                    ensure_case!(outcome.is_err(), "store_file({path:?}) succeeded");
                    let outcome = exporter
                        .create_directory(path, &FileInfo::directory(name, 0o700, t))
                        .await;
                    ensure_case!(outcome.is_err(), "create_directory({path:?}) succeeded");
                }
                Ok(())
            }
            .boxed()
        })
        .await?;
        let outside = f.outside_root().await?;
        ensure_case!(
            outside.is_empty(),
            "hostile paths wrote outside the root: {outside:?}"
        );
        let inside = f.read_tree().await?;
        ensure_case!(
            inside.is_empty(),
            "hostile paths wrote inside the root: {:?}",
            inside.iter().map(|e| &e.path).collect::<Vec<_>>()
        );
        Ok(())
    }
    .boxed()
}

fn error_and_other_records(f: &dyn ExporterFixture) -> BoxFuture<'_, CaseResult> {
    let rejects = f.capabilities().rejects_special_files;
    with_exporter(f, move |exporter| {
        async move {
            exporter.create_directory("/", &root_info()).await?;
            let t = UNIX_EPOCH + Duration::from_secs(1_650_000_000);
            let mut link = Record::entry(
                "/link",
                FileInfo::with_mode("link", 0, FileMode::symlink(0o777), t),
            );
            link.target = "/somewhere".to_owned();
            let outcome = exporter.other(&link).await;
            ensure_case!(
                outcome.is_err() == rejects,
                "a symlink record gave {outcome:?}; the fixture declares rejects_special_files = {rejects}"
            );
            if let Err(e) = outcome {
                ensure_case!(
                    !e.message().is_empty(),
                    "the error for a rejected symlink has no message"
                );
            }
            // An error record (the file could not be backed up) is Ok by rule (§6.4).
            let broken = Record::error("/broken.txt", "permission denied (test)");
            let outcome = exporter.other(&broken).await;
            ensure_case!(outcome.is_ok(), "an error record gave {outcome:?}");
            Ok(())
        }
        .boxed()
    })
    .boxed()
}
