//! The importer suite: records of a known tree, ping, content, concurrent opens, stable
//! FileInfo, and per-file errors as error records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use super::data::verify_pattern;
use super::{Case, CaseFailure, CaseResult, SuiteReport, run_cases};
use crate::Importer;
use crate::ensure_case;
use crate::error::Result;
use crate::types::Record;

/// What an entry of a test tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeKind {
    /// A directory.
    Dir,
    /// A file whose content is the pattern `seed` of `len` bytes.
    File {
        /// Pattern seed.
        seed: u64,
        /// Length in bytes.
        len: u64,
    },
}

/// One entry of a test tree; parents come before children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Path relative to the root, `/`-separated, e.g. `docs/a.txt`.
    pub path: String,
    /// Directory or file.
    pub kind: TreeKind,
    /// Modification time (whole milliseconds, which every remote keeps).
    pub mtime: SystemTime,
}

/// The tree the importer and exporter suites use.
pub fn sample_tree() -> Vec<TreeEntry> {
    let t = |ms: u64| UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms);
    let dir = |p: &str, ms| TreeEntry {
        path: p.to_owned(),
        kind: TreeKind::Dir,
        mtime: t(ms),
    };
    let file = |p: &str, seed, len, ms| TreeEntry {
        path: p.to_owned(),
        kind: TreeKind::File { seed, len },
        mtime: t(ms),
    };
    vec![
        file("empty.txt", 1, 0, 1_000),
        file("one.bin", 2, 1, 2_000),
        dir("docs", 3_000),
        file("docs/a.txt", 3, 4_321, 4_123),
        file("docs/chunk-edge.bin", 4, (1 << 20) + 1, 5_000),
        dir("docs/deep", 6_000),
        dir("docs/deep/er", 7_000),
        file("docs/deep/er/b c.txt", 5, 77, 8_000),
        dir("empty-dir", 9_000),
        file("z-large.bin", 6, 5 << 20, 10_000),
    ]
}

/// What an importer backend keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImporterCapabilities {
    /// File mtimes written by the fixture come back exactly.
    pub file_mtimes: bool,
    /// Directory mtimes written by the fixture come back exactly.
    pub dir_mtimes: bool,
}

impl Default for ImporterCapabilities {
    fn default() -> Self {
        Self {
            file_mtimes: true,
            dir_mtimes: true,
        }
    }
}

/// An importer backend under test.
#[async_trait]
pub trait ImporterFixture: Send + Sync {
    /// Replaces the source tree under the root with `tree`.
    async fn write_tree(&self, tree: &[TreeEntry]) -> Result<()>;
    /// A new connector after `Init` (a new process per call for plugin fixtures).
    async fn connect(&self) -> Result<Arc<dyn Importer>>;
    /// Ends a connector (plugin fixtures check exit status 0).
    async fn release(&self, importer: Arc<dyn Importer>) -> Result<()>;
    /// Makes the entry at `path` (relative to the root) unreadable; Ok(false) if unsupported.
    async fn break_entry(&self, path: &str) -> Result<bool>;
    /// Declared capabilities.
    fn capabilities(&self) -> ImporterCapabilities {
        ImporterCapabilities::default()
    }
}

/// Every case of the importer suite, in run order.
pub fn importer_cases() -> Vec<Case<dyn ImporterFixture>> {
    vec![
        Case::new("records of a known tree", records_of_tree),
        Case::new("ping answers", ping_answers),
        Case::new("content equals source", content_equals),
        Case::new("concurrent opens", concurrent_opens),
        Case::new("second scan identical", second_scan_identical),
        Case::new("unknown pathname not found", unknown_not_found),
        Case::new("per-file error is a record", per_file_error),
    ]
}

/// Runs the importer suite.
pub async fn run_importer_suite(
    target: &str,
    fixture: &(dyn ImporterFixture + 'static),
) -> SuiteReport {
    run_cases("importer", target, fixture, &importer_cases()).await
}

fn full_path(root: &str, rel: &str) -> String {
    if root == "/" {
        format!("/{rel}")
    } else {
        format!("{root}/{rel}")
    }
}

async fn scan_all(importer: &dyn Importer) -> Result<Vec<Record>, CaseFailure> {
    let mut stream = importer.scan().await?;
    let mut records = Vec::new();
    while let Some(record) = stream.next().await {
        records.push(record?);
    }
    Ok(records)
}

async fn with_importer<'b, F>(fixture: &dyn ImporterFixture, body: F) -> CaseResult
where
    F: FnOnce(Arc<dyn Importer>) -> BoxFuture<'b, CaseResult>,
{
    let importer = fixture.connect().await?;
    let outcome = body(importer.clone()).await;
    let closed = importer.close().await;
    let released = fixture.release(importer).await;
    outcome?;
    closed?;
    released?;
    Ok(())
}

fn records_of_tree(f: &dyn ImporterFixture) -> BoxFuture<'_, CaseResult> {
    async move {
        let tree = sample_tree();
        f.write_tree(&tree).await?;
        let caps = f.capabilities();
        with_importer(f, |importer| {
            async move {
                let root = importer.location().root;
                let records = scan_all(&*importer).await?;
                let mut seen: BTreeMap<String, usize> = BTreeMap::new();
                for (i, r) in records.iter().enumerate() {
                    r.validate()?;
                    ensure_case!(
                        r.error.is_none(),
                        "unexpected error record {}: {:?}",
                        r.pathname,
                        r.error
                    );
                    ensure_case!(
                        seen.insert(r.pathname.clone(), i).is_none(),
                        "{} listed twice",
                        r.pathname
                    );
                    crate::safe_relative_path(&r.pathname)
                        .map_err(|e| CaseFailure(e.to_string()))?;
                    let under = r.pathname == root || r.pathname.starts_with(&full_path(&root, ""));
                    let ancestor = root == r.pathname
                        || root.starts_with(&format!("{}/", r.pathname.trim_end_matches('/')))
                        || r.pathname == "/";
                    ensure_case!(
                        under || ancestor,
                        "{} is neither under the root {root} nor an ancestor",
                        r.pathname
                    );
                    let info = r
                        .file_info
                        .as_ref()
                        .ok_or_else(|| CaseFailure(format!("{} has no fileinfo", r.pathname)))?;
                    let base = if r.pathname == "/" {
                        "/"
                    } else {
                        r.pathname.rsplit('/').next().unwrap_or_default()
                    };
                    ensure_case!(
                        info.name == base,
                        "{}: name {:?} is not the base name",
                        r.pathname,
                        info.name
                    );
                }
                // A parent listed at all must come before its children (looked up once every
                // record is indexed: a parent listed after its child is not seen before it).
                for (i, r) in records.iter().enumerate() {
                    if let Some(idx) = r.pathname.rfind('/').filter(|_| r.pathname != "/") {
                        let parent = if idx == 0 { "/" } else { &r.pathname[..idx] };
                        if let Some(&p) = seen.get(parent) {
                            ensure_case!(p < i, "{} listed before its parent {parent}", r.pathname);
                        }
                    }
                }
                let root_record = records.iter().find(|r| r.pathname == root);
                ensure_case!(
                    root_record
                        .is_some_and(|r| r.file_info.as_ref().is_some_and(|i| i.mode.is_dir())),
                    "no directory record for the root {root}"
                );
                let under_root = records
                    .iter()
                    .filter(|r| r.pathname.starts_with(&full_path(&root, "")))
                    .count();
                ensure_case!(
                    under_root == tree.len(),
                    "{under_root} records under the root, expected {}",
                    tree.len()
                );
                for entry in &tree {
                    let path = full_path(&root, &entry.path);
                    let r = records
                        .iter()
                        .find(|r| r.pathname == path)
                        .ok_or_else(|| CaseFailure(format!("{path} missing")))?;
                    let info = r
                        .file_info
                        .as_ref()
                        .ok_or_else(|| CaseFailure(format!("{path} without info")))?;
                    match entry.kind {
                        TreeKind::Dir => {
                            ensure_case!(
                                info.mode.is_dir() && !r.has_reader,
                                "{path}: not a content-less directory ({:?})",
                                info.mode
                            );
                            ensure_case!(info.size == 0, "{path}: directory size {}", info.size);
                            if caps.dir_mtimes {
                                ensure_case!(
                                    info.mod_time == entry.mtime,
                                    "{path}: mtime {:?}, expected {:?}",
                                    info.mod_time,
                                    entry.mtime
                                );
                            }
                        }
                        TreeKind::File { len, .. } => {
                            ensure_case!(
                                info.mode.is_regular() && r.has_reader,
                                "{path}: not a regular file with content ({:?})",
                                info.mode
                            );
                            ensure_case!(
                                info.size == len as i64,
                                "{path}: size {}, expected {len}",
                                info.size
                            );
                            if caps.file_mtimes {
                                ensure_case!(
                                    info.mod_time == entry.mtime,
                                    "{path}: mtime {:?}, expected {:?}",
                                    info.mod_time,
                                    entry.mtime
                                );
                            }
                        }
                    }
                    ensure_case!(
                        r.target.is_empty() && r.extended_attributes.is_empty(),
                        "{path}: symlink target or xattrs set"
                    );
                }
                Ok(())
            }
            .boxed()
        })
        .await
    }
    .boxed()
}

fn ping_answers(f: &dyn ImporterFixture) -> BoxFuture<'_, CaseResult> {
    with_importer(f, |importer| {
        async move { Ok(importer.ping().await?) }.boxed()
    })
    .boxed()
}

fn content_equals(f: &dyn ImporterFixture) -> BoxFuture<'_, CaseResult> {
    with_importer(f, |importer| {
        async move {
            let root = importer.location().root;
            let _records = scan_all(&*importer).await?;
            for entry in sample_tree() {
                if let TreeKind::File { seed, len } = entry.kind {
                    let path = full_path(&root, &entry.path);
                    let stream = importer.open(&path).await?;
                    verify_pattern(stream, seed, 0, len)
                        .await
                        .map_err(|e| CaseFailure(format!("{path}: {e}")))?;
                }
            }
            Ok(())
        }
        .boxed()
    })
    .boxed()
}

fn concurrent_opens(f: &dyn ImporterFixture) -> BoxFuture<'_, CaseResult> {
    with_importer(f, |importer| {
        async move {
            let root = importer.location().root;
            let _records = scan_all(&*importer).await?;
            let files: Vec<(String, u64, u64)> = sample_tree()
                .into_iter()
                .filter_map(|e| match e.kind {
                    TreeKind::File { seed, len } => Some((full_path(&root, &e.path), seed, len)),
                    TreeKind::Dir => None,
                })
                .collect();
            // Open everything first, then read all streams at once.
            let mut streams = Vec::new();
            for (path, seed, len) in &files {
                streams.push((path.clone(), importer.open(path).await?, *seed, *len));
            }
            let reads = streams
                .into_iter()
                .map(|(path, stream, seed, len)| async move {
                    verify_pattern(stream, seed, 0, len)
                        .await
                        .map_err(|e| CaseFailure(format!("{path}: {e}")))
                });
            for outcome in futures::future::join_all(reads).await {
                outcome?;
            }
            Ok(())
        }
        .boxed()
    })
    .boxed()
}

fn second_scan_identical(f: &dyn ImporterFixture) -> BoxFuture<'_, CaseResult> {
    async move {
        let mut scans = Vec::new();
        for _ in 0..2 {
            let mut got = Vec::new();
            with_importer(f, |importer| {
                let got = &mut got;
                async move {
                    *got = scan_all(&*importer).await?;
                    Ok(())
                }
                .boxed()
            })
            .await?;
            scans.push(got);
        }
        let index = |records: &[Record]| -> BTreeMap<String, Record> {
            records
                .iter()
                .map(|r| (r.pathname.clone(), r.clone()))
                .collect()
        };
        let (a, b) = (index(&scans[0]), index(&scans[1]));
        ensure_case!(
            a.len() == b.len(),
            "scans listed {} and {} records",
            a.len(),
            b.len()
        );
        for (path, record) in &a {
            let other = b
                .get(path)
                .ok_or_else(|| CaseFailure(format!("{path} missing from the second scan")))?;
            ensure_case!(
                record.file_info == other.file_info,
                "{path}: FileInfo differs between scans"
            );
        }
        Ok(())
    }
    .boxed()
}

fn unknown_not_found(f: &dyn ImporterFixture) -> BoxFuture<'_, CaseResult> {
    with_importer(f, |importer| {
        async move {
            let root = importer.location().root;
            let _records = scan_all(&*importer).await?;
            for path in [full_path(&root, "no-such-file"), "/elsewhere/x".to_owned()] {
                let outcome = match importer.open(&path).await {
                    Ok(stream) => super::data::read_all(stream).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(()) => {
                        return Err(CaseFailure(format!("open of unannounced {path} succeeded")));
                    }
                    Err(e) => ensure_case!(
                        e.kind() == crate::ConnectorErrorKind::NotFound,
                        "open {path}: {e:?}, expected not found"
                    ),
                }
            }
            Ok(())
        }
        .boxed()
    })
    .boxed()
}

fn per_file_error(f: &dyn ImporterFixture) -> BoxFuture<'_, CaseResult> {
    async move {
        let broken = "docs/a.txt";
        if !f.break_entry(broken).await? {
            return Ok(());
        }
        let outcome = with_importer(f, |importer| {
            async move {
                let root = importer.location().root;
                let records = scan_all(&*importer).await?;
                let path = full_path(&root, broken);
                let r = records
                    .iter()
                    .find(|r| r.pathname == path)
                    .ok_or_else(|| CaseFailure(format!("{path} not reported")))?;
                ensure_case!(
                    r.is_error() && r.file_info.is_none() && !r.has_reader,
                    "{path} is not an error record: {r:?}"
                );
                let others = records
                    .iter()
                    .filter(|r| r.pathname.starts_with(&full_path(&root, "")))
                    .count();
                ensure_case!(
                    others == sample_tree().len(),
                    "the scan did not go on after the error ({others} records)"
                );
                Ok(())
            }
            .boxed()
        })
        .await;
        // Restore the tree for any later use.
        f.write_tree(&sample_tree()).await?;
        outcome
    }
    .boxed()
}
