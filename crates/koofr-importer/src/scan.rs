//! Producing a scan's records: the streamed recursive listing, or the per-folder walk fallback.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use kloset_plugin::{ConnectorError, Record, Result};
use koofr_core::{Client, ErrorKind, KoofrPath, ListEntry};
use tokio::sync::mpsc;

use crate::importer::connector_error;
use crate::index::{FileIndex, Listed};
use crate::records::{ancestor_records, entry_record, listing_error_record, root_record};

/// How the tree will be read, decided by the first request (so fatal errors come from `scan`).
pub(crate) enum Listing {
    /// The open `files/listrecursive` response, parsed line by line.
    Recursive(BoxStream<'static, koofr_core::Result<ListEntry>>),
    /// Koofr refused the recursive listing: walk with `files/list`; holds the root's info.
    Walk(koofr_core::FileInfo),
}

fn not_a_folder(root: &KoofrPath) -> ConnectorError {
    ConnectorError::invalid_input(format!("the Koofr location {root} is a file, not a folder"))
}

/// Sends the first request of a scan.
pub(crate) async fn start(client: &Client, root: &KoofrPath) -> Result<Listing> {
    match client.list_recursive(root).await {
        Ok(entries) => Ok(Listing::Recursive(entries)),
        Err(e) if e.kind() == ErrorKind::NotADirectory => Err(not_a_folder(root)),
        // Some connected external mounts refuse the recursive listing before streaming.
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            tracing::warn!(error = %e, "koofr: the recursive listing was refused; listing folder by folder");
            let info = client
                .info(root)
                .await
                .map_err(|e| connector_error(e).context("cannot scan"))?;
            if !info.is_dir() {
                return Err(not_a_folder(root));
            }
            Ok(Listing::Walk(info))
        }
        Err(e) => Err(connector_error(e).context("cannot scan")),
    }
}

/// Produces every record of the scan into `tx` (bounded: the listing is read only as fast as
/// Plakar takes records). Stops quietly when the receiver is gone.
pub(crate) async fn produce(
    client: Client,
    root: KoofrPath,
    listing: Listing,
    index: Arc<FileIndex>,
    tx: mpsc::Sender<Result<Record>>,
) {
    for record in ancestor_records(&root) {
        if tx.send(Ok(record)).await.is_err() {
            return;
        }
    }
    match listing {
        Listing::Recursive(entries) => listing_to_records(&root, entries, &index, &tx).await,
        Listing::Walk(root_info) => walk(&client, &root, root_info, &index, &tx).await,
    }
}

/// Pumps the recursive listing (koofr-core resumes a broken connection itself); an error
/// that survives that ends the scan with a fatal error.
async fn listing_to_records(
    root: &KoofrPath,
    entries: BoxStream<'static, koofr_core::Result<ListEntry>>,
    index: &FileIndex,
    tx: &mpsc::Sender<Result<Record>>,
) {
    if let Some(broken) = pump_listing(root, entries, index, tx).await {
        let _ = tx
            .send(Err(
                connector_error(broken).context("the Koofr listing broke off")
            ))
            .await;
    }
}

/// Turns listing items into records as they arrive. Files are indexed before they are sent, so
/// an `Open` racing ahead of the next item always finds them. A path is never sent twice.
/// Returns the error that broke the listing off, if any.
pub(crate) async fn pump_listing(
    root: &KoofrPath,
    mut entries: BoxStream<'static, koofr_core::Result<ListEntry>>,
    index: &FileIndex,
    tx: &mpsc::Sender<Result<Record>>,
) -> Option<koofr_core::Error> {
    while let Some(item) = entries.next().await {
        let record = match item {
            Ok(ListEntry::File { path, info }) if path == *root => {
                if !info.is_dir() {
                    let _ = tx.send(Err(not_a_folder(root))).await;
                    return None;
                }
                if !index.mark_sent(root.as_str()) {
                    continue;
                }
                root_record(root, &info)
            }
            Ok(ListEntry::File { path, info }) => {
                let record = entry_record(&path, &info);
                if record.has_reader {
                    if index.get(&record.pathname).is_some() {
                        continue;
                    }
                    index.insert(&record.pathname, Listed::of(&info));
                } else if !index.mark_sent(&record.pathname) {
                    continue;
                }
                record
            }
            Ok(ListEntry::Error {
                path,
                code,
                message,
            }) => listing_error_record(root, path.as_ref(), &code, &message),
            Err(e) => return Some(e),
        };
        if tx.send(Ok(record)).await.is_err() {
            return None;
        }
    }
    None
}

/// The fallback: one `files/list` per folder, depth first, parents before children. A folder
/// that cannot be listed becomes an error record and the walk goes on. Pending folders are kept
/// as paths only (at most the not-yet-visited siblings along the current branch).
async fn walk(
    client: &Client,
    root: &KoofrPath,
    root_info: koofr_core::FileInfo,
    index: &FileIndex,
    tx: &mpsc::Sender<Result<Record>>,
) {
    if tx.send(Ok(root_record(root, &root_info))).await.is_err() {
        return;
    }
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        let children = match client.list(&dir).await {
            Ok(children) => children,
            Err(e) => {
                let record = listing_error_record(
                    root,
                    Some(&dir),
                    e.code().unwrap_or_default(),
                    &e.to_string(),
                );
                if tx.send(Ok(record)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let mut subfolders = Vec::new();
        for info in children {
            let record = match dir.join(&info.name) {
                Ok(path) if path != dir => {
                    let record = entry_record(&path, &info);
                    if record.has_reader {
                        index.insert(&record.pathname, Listed::of(&info));
                    } else if !record.is_error() {
                        subfolders.push(path);
                    }
                    record
                }
                // `.`, `..`, empty names, backslashes: no pathname can be built for them.
                _ => Record::error(
                    dir.as_str(),
                    format!(
                        "Koofr name {:?} in {} cannot be backed up: not a valid name",
                        info.name, dir
                    ),
                ),
            };
            if tx.send(Ok(record)).await.is_err() {
                return;
            }
        }
        // Reversed so that popping visits folders in listing order.
        pending.extend(subfolders.into_iter().rev());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use koofr_core::FileKind;

    fn item(path: &str, name: &str, kind: FileKind) -> koofr_core::Result<ListEntry> {
        Ok(ListEntry::File {
            path: KoofrPath::parse(path).unwrap(),
            info: koofr_core::FileInfo {
                name: name.to_owned(),
                kind,
                modified: 1_700_000_000_123,
                size: 5,
                content_type: String::new(),
                hash: Some("900150983cd24fb0d6963f7d28e17f72".to_owned()),
            },
        })
    }

    async fn run(
        items: Vec<koofr_core::Result<ListEntry>>,
    ) -> (Vec<Result<Record>>, FileIndex, Option<koofr_core::Error>) {
        let root = KoofrPath::parse("/r").unwrap();
        let index = FileIndex::default();
        let (tx, mut rx) = mpsc::channel(4);
        let entries = futures::stream::iter(items).boxed();
        let collect = async {
            let mut out = Vec::new();
            while let Some(r) = rx.recv().await {
                out.push(r);
            }
            out
        };
        let pump = async {
            let broken = pump_listing(&root, entries, &index, &tx).await;
            drop(tx);
            broken
        };
        let (broken, out) = tokio::join!(pump, collect);
        (out, index, broken)
    }

    #[tokio::test]
    async fn listing_items_become_records_and_errors_become_error_records() {
        let (records, index, broken) = run(vec![
            item("/r", "r", FileKind::Dir),
            item("/r/a.txt", "a.txt", FileKind::File),
            item("/r/x", "x/y", FileKind::File),
            Ok(ListEntry::Error {
                path: Some(KoofrPath::parse("/r/sub").unwrap()),
                code: "Other".to_owned(),
                message: "boom".to_owned(),
            }),
        ])
        .await;
        assert!(broken.is_none());
        let records: Vec<Record> = records.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(records.len(), 4);
        assert_eq!(records[0].pathname, "/r");
        assert!(records[1].has_reader && records[1].file_info.as_ref().unwrap().size == 5);
        assert!(records[2].is_error() && records[2].error.as_ref().unwrap().contains("\"x/y\""));
        assert_eq!(records[3].pathname, "/r/sub");
        assert!(records[3].error.as_ref().unwrap().contains("boom"));
        assert!(index.get("/r/a.txt").is_some());
        assert!(
            index.get("/r/x").is_none(),
            "an error record is never openable"
        );
        assert_eq!(index.len(), 1);
    }

    #[tokio::test]
    async fn a_broken_listing_is_handed_back_and_a_file_root_is_refused() {
        let broken = koofr_core::Error::new(
            ErrorKind::Transport,
            true,
            "list recursively",
            "the body broke off",
        );
        let (records, _, broken) = run(vec![item("/r", "r", FileKind::Dir), Err(broken)]).await;
        assert_eq!(records.len(), 1);
        assert!(broken.unwrap().message().contains("broke off"));
        let (records, _, _) = run(vec![item("/r", "r", FileKind::File)]).await;
        assert!(
            records[0]
                .as_ref()
                .unwrap_err()
                .message()
                .contains("not a folder")
        );
    }

    #[tokio::test]
    async fn items_already_sent_are_skipped_when_the_listing_restarts() {
        let root = KoofrPath::parse("/r").unwrap();
        let index = FileIndex::default();
        let (tx, mut rx) = mpsc::channel(16);
        let first = vec![
            item("/r", "r", FileKind::Dir),
            item("/r/d", "d", FileKind::Dir),
            item("/r/d/a", "a", FileKind::File),
        ];
        let second = vec![
            item("/r", "r", FileKind::Dir),
            item("/r/d", "d", FileKind::Dir),
            item("/r/d/a", "a", FileKind::File),
            item("/r/d/b", "b", FileKind::File),
        ];
        assert!(
            pump_listing(&root, futures::stream::iter(first).boxed(), &index, &tx)
                .await
                .is_none()
        );
        assert!(
            pump_listing(&root, futures::stream::iter(second).boxed(), &index, &tx)
                .await
                .is_none()
        );
        drop(tx);
        let mut paths = Vec::new();
        while let Some(r) = rx.recv().await {
            paths.push(r.unwrap().pathname);
        }
        assert_eq!(paths, ["/r", "/r/d", "/r/d/a", "/r/d/b"]);
    }
}
