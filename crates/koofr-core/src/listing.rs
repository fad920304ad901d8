//! Listings: a folder's direct children, and the streamed recursive listing (NDJSON split
//! into lines by tokio-util's `LinesCodec`), resumed after a broken connection without
//! repeating entries.

use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::header::ACCEPT;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::io::StreamReader;

use crate::client::{Client, Family};
use crate::error::{Error, ErrorKind, Result};
use crate::path::KoofrPath;
use crate::retry::Retry;
use crate::transport::{ByteStream, RequestContext, body_stream};
use crate::types::{FileInfo, FileList, ListEntry, RecursiveItem};

/// Longest accepted line of a recursive listing.
const MAX_LISTING_LINE: usize = 4 * 1024 * 1024;

impl Client {
    /// The direct children of a folder (no pagination: one response).
    pub async fn list(&self, dir: &KoofrPath) -> Result<Vec<FileInfo>> {
        let url = self.files_url(Family::Api, "list", dir, "").await?;
        let list: FileList = self.get_json("list", Some(dir), &url).await?;
        self.folders().remember(dir);
        Ok(list.files)
    }

    /// Streams the whole tree below `dir` (`dir` itself first, parents before children), parsed
    /// line by line as it arrives. A server error line becomes a [`ListEntry::Error`] item and
    /// ends the stream. A connection that breaks mid-listing is resumed: the listing
    /// is requested again and the entries already yielded are skipped (checked by the path of
    /// the last one, so a listing that changed order fails instead of skipping wrongly). The
    /// first request and every resume share ONE retry state, so the whole listing sends at most
    /// the policy's attempts. A mount that refuses recursive listings gives
    /// [`ErrorKind::Unsupported`] before any entry.
    pub async fn list_recursive(
        &self,
        dir: &KoofrPath,
    ) -> Result<BoxStream<'static, Result<ListEntry>>> {
        let mut retry = self.new_retry();
        let first = self.open_listing(dir, &mut retry).await?;
        Ok(resuming_listing(self.clone(), dir.clone(), first, retry))
    }

    /// One `files/listrecursive` request (retried until its response starts).
    async fn open_listing(
        &self,
        dir: &KoofrPath,
        retry: &mut Retry,
    ) -> Result<BoxStream<'static, Result<ListEntry>>> {
        let url = self
            .files_url(Family::Content, "listrecursive", dir, "")
            .await?;
        let ctx = RequestContext {
            op: "list recursively",
            path: Some(dir.as_str()),
            exists_possible: false,
        };
        let url = url.as_str();
        let response = retry
            .run(true, |_| async move {
                self.transport()
                    .send(ctx, None, move |http| {
                        Ok(http.get(url).header(ACCEPT, "application/x-ndjson"))
                    })
                    .await
                    .map_err(|e| {
                        // Some connected external mounts refuse the listing itself with a bare 400.
                        if e.kind() == ErrorKind::InvalidInput && e.code() != Some("InvalidPath") {
                            e.with_kind(ErrorKind::Unsupported)
                        } else {
                            e
                        }
                    })
            })
            .await?;
        let body = body_stream(
            response,
            ctx.op,
            Some(dir.to_string()),
            self.transport().stall(),
        );
        Ok(ndjson_entries(body, dir.clone()))
    }
}

/// Splits a byte stream into NDJSON items without ever holding more than one line. The first
/// error (a broken body, an over-long or unparsable line) or a server error line ends it.
fn ndjson_entries(body: ByteStream, dir: KoofrPath) -> BoxStream<'static, Result<ListEntry>> {
    // The body's own errors travel through `io::Error` and come out as they went in.
    let reader = StreamReader::new(body.map(|chunk| chunk.map_err(std::io::Error::other)));
    let lines = FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LISTING_LINE));
    futures::stream::unfold(Some((lines, dir)), |state| async move {
        let (mut lines, dir) = state?;
        loop {
            let line = match lines.next().await? {
                Ok(line) => line,
                Err(e) => return Some((Err(line_error(e, &dir)), None)),
            };
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            match parse_recursive_line(text, &dir) {
                Ok(Some((entry, last))) => {
                    return Some((Ok(entry), (!last).then_some((lines, dir))));
                }
                Ok(None) => continue,
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
    .boxed()
}

/// The body's own error back out of the codec's `io::Error`, or the codec's complaint.
fn line_error(e: LinesCodecError, dir: &KoofrPath) -> Error {
    let message = match e {
        LinesCodecError::MaxLineLengthExceeded => {
            format!("a listing line exceeds {MAX_LISTING_LINE} bytes")
        }
        LinesCodecError::Io(io) => {
            let text = io.to_string();
            match io.into_inner().map(|inner| inner.downcast::<Error>()) {
                Some(Ok(body_error)) => return *body_error,
                _ => format!("unreadable listing line ({text})"),
            }
        }
    };
    Error::permanent(ErrorKind::Unexpected, "list recursively", message).with_path(dir)
}

/// Where a resumed listing stands.
struct Resume {
    client: Client,
    dir: KoofrPath,
    entries: Option<BoxStream<'static, Result<ListEntry>>>,
    /// Entries handed to the caller so far.
    yielded: u64,
    /// The key of the last entry handed out (checked when skipping after a restart).
    last: Option<String>,
    /// Entries of a restarted listing still to skip.
    skip: u64,
    /// The listing's one retry state, shared by the first request and every resume.
    retry: Retry,
}

fn entry_key(entry: &ListEntry) -> String {
    match entry {
        ListEntry::File { path, .. } => path.as_str().to_owned(),
        ListEntry::Error { message, .. } => format!("error: {message}"),
    }
}

fn resuming_listing(
    client: Client,
    dir: KoofrPath,
    first: BoxStream<'static, Result<ListEntry>>,
    retry: Retry,
) -> BoxStream<'static, Result<ListEntry>> {
    let state = Resume {
        client,
        dir,
        entries: Some(first),
        yielded: 0,
        last: None,
        skip: 0,
        retry,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            let item = st.entries.as_mut()?.next().await;
            match item {
                None => return None,
                Some(Ok(entry)) if st.skip > 0 => {
                    st.skip -= 1;
                    if st.skip == 0 && st.last.as_deref() != Some(entry_key(&entry).as_str()) {
                        st.entries = None;
                        let e = Error::permanent(
                            ErrorKind::Unexpected,
                            "list recursively",
                            "the listing changed order while it was resumed after a broken connection",
                        )
                        .with_path(&st.dir);
                        return Some((Err(e), st));
                    }
                }
                Some(Ok(entry)) => {
                    st.yielded += 1;
                    st.last = Some(entry_key(&entry));
                    st.retry.progressed();
                    return Some((Ok(entry), st));
                }
                Some(Err(e)) => {
                    st.entries = None;
                    if let Err(e) = st.retry.failed(e, true).await {
                        return Some((Err(e), st));
                    }
                    tracing::debug!(attempt = st.retry.attempts() + 1, "koofr: resuming a broken listing");
                    let (client, dir) = (st.client.clone(), st.dir.clone());
                    match client.open_listing(&dir, &mut st.retry).await {
                        Ok(entries) => {
                            st.entries = Some(entries);
                            st.skip = st.yielded;
                        }
                        Err(e) => return Some((Err(e), st)),
                    }
                }
            }
        }
    })
    .boxed()
}

/// One listing line as an entry, and whether the server ends the listing with it (an error
/// line is always the last one).
fn parse_recursive_line(line: &str, dir: &KoofrPath) -> Result<Option<(ListEntry, bool)>> {
    let bad = |message: String| {
        Error::permanent(ErrorKind::Unexpected, "list recursively", message).with_path(dir)
    };
    let item: RecursiveItem = serde_json::from_str(line)
        .map_err(|e| bad(format!("unparsable listing line ({e}): {:.120}", line)))?;
    let join = |rel: &str| {
        dir.join(rel)
            .map_err(|e| bad(format!("invalid path in listing: {e}")))
    };
    match item.item_type.as_str() {
        "file" => {
            let rel = item
                .path
                .ok_or_else(|| bad("a listing item has no path".to_owned()))?;
            let info = item
                .file
                .ok_or_else(|| bad(format!("listing item {rel:?} has no file")))?;
            // One odd name must not abort a whole listing: it becomes an error item for the
            // caller to report, and the listing goes on.
            Ok(Some((
                match join(&rel) {
                    Ok(path) => ListEntry::File { path, info },
                    Err(e) => ListEntry::Error {
                        path: None,
                        code: "InvalidPath".to_owned(),
                        message: format!(
                            "listing item {rel:?} has an unusable path: {}",
                            e.message()
                        ),
                    },
                },
                false,
            )))
        }
        "error" => {
            let detail = item.error;
            Ok(Some((
                ListEntry::Error {
                    path: item.path.and_then(|rel| join(&rel).ok()),
                    code: detail
                        .as_ref()
                        .and_then(|d| d.code.clone())
                        .unwrap_or_default(),
                    message: detail.and_then(|d| d.message).unwrap_or_default(),
                },
                true,
            )))
        }
        other => {
            tracing::debug!(
                item_type = other,
                "koofr: skipping an unknown listing item type"
            );
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[tokio::test]
    async fn ndjson_transport_error_mid_stream_ends_the_listing() {
        let line = r#"{"type":"file","path":"/","file":{"name":"d","type":"dir"}}"#;
        let chunks: Vec<Result<Bytes>> = vec![
            Ok(Bytes::from(format!("{line}\n{{\"type\":\"fi"))),
            Err(Error::new(
                ErrorKind::Transport,
                true,
                "list recursively",
                "the response body broke off",
            )),
            Ok(Bytes::from_static(b"never read\n")),
        ];
        let dir = KoofrPath::parse("/d").unwrap();
        let entries: Vec<_> = ndjson_entries(futures::stream::iter(chunks).boxed(), dir)
            .collect()
            .await;
        assert_eq!(entries.len(), 2);
        assert!(matches!(entries[0], Ok(ListEntry::File { .. })));
        assert_eq!(
            entries[1].as_ref().unwrap_err().kind(),
            ErrorKind::Transport
        );
    }

    #[tokio::test]
    async fn an_unusable_item_path_is_an_error_item_and_the_listing_goes_on() {
        let lines = concat!(
            r#"{"type":"file","path":"/a/../b","file":{"name":"..","type":"file","modified":1,"size":0,"contentType":""}}"#,
            "\n",
            r#"{"type":"file","path":"/ok","file":{"name":"ok","type":"file","modified":2,"size":1,"contentType":""}}"#,
            "\n",
        );
        let body = futures::stream::iter([Ok(Bytes::from_static(lines.as_bytes()))]).boxed();
        let entries: Vec<_> = ndjson_entries(body, KoofrPath::parse("/r").unwrap())
            .collect()
            .await;
        assert_eq!(entries.len(), 2, "{entries:?}");
        match &entries[0] {
            Ok(ListEntry::Error {
                path,
                code,
                message,
            }) => {
                assert!(path.is_none());
                assert_eq!(code, "InvalidPath");
                assert!(message.contains("/a/../b"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&entries[1], Ok(ListEntry::File { path, .. }) if path.as_str() == "/r/ok")
        );
    }

    #[tokio::test]
    async fn ndjson_is_split_across_chunks() {
        let lines = concat!(
            r#"{"type":"file","path":"/","file":{"name":"backup","type":"dir","modified":1,"size":0,"contentType":""}}"#,
            "\n",
            r#"{"type":"file","path":"/a b.bin","file":{"name":"a b.bin","type":"file","modified":2,"size":3,"contentType":"","hash":"abc"}}"#,
            "\n",
            r#"{"type":"error","path":"/sub","error":{"code":"Other","message":"boom"}}"#,
            "\n",
            r#"{"type":"file","path":"/never","file":{"name":"never","type":"file"}}"#,
        );
        let chunks: Vec<Result<Bytes>> = lines
            .as_bytes()
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let dir = KoofrPath::parse("/backup").unwrap();
        let entries: Vec<_> = ndjson_entries(futures::stream::iter(chunks).boxed(), dir)
            .collect()
            .await;
        assert_eq!(entries.len(), 3);
        match &entries[1] {
            Ok(ListEntry::File { path, info }) => {
                assert_eq!(path.as_str(), "/backup/a b.bin");
                assert_eq!(info.size, 3);
            }
            other => panic!("{other:?}"),
        }
        match &entries[0] {
            Ok(ListEntry::File { path, .. }) => assert_eq!(path.as_str(), "/backup"),
            other => panic!("{other:?}"),
        }
        match &entries[2] {
            Ok(ListEntry::Error {
                path,
                code,
                message,
            }) => {
                assert_eq!(path.as_ref().unwrap().as_str(), "/backup/sub");
                assert_eq!((code.as_str(), message.as_str()), ("Other", "boom"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_over_long_line_is_a_clear_error_that_ends_the_listing() {
        let first = r#"{"type":"file","path":"/","file":{"name":"d","type":"dir"}}"#;
        let chunks: Vec<Result<Bytes>> = std::iter::once(Ok(Bytes::from(format!("{first}\n"))))
            .chain((0..=MAX_LISTING_LINE / 65_536).map(|_| Ok(Bytes::from(vec![b'x'; 65_536]))))
            .chain(std::iter::once(Ok(Bytes::from_static(b"\n"))))
            .chain(std::iter::once(Ok(Bytes::from(format!("{first}\n")))))
            .collect();
        let dir = KoofrPath::parse("/d").unwrap();
        let entries: Vec<_> = ndjson_entries(futures::stream::iter(chunks).boxed(), dir)
            .collect()
            .await;
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert!(matches!(entries[0], Ok(ListEntry::File { .. })));
        let e = entries[1].as_ref().unwrap_err();
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unexpected, false));
        assert_eq!(e.path(), Some("/d"));
        assert!(e.message().contains("exceeds"), "{e}");
    }

    #[tokio::test]
    async fn a_line_that_is_not_utf8_is_a_clear_error() {
        let body = futures::stream::iter([Ok(Bytes::from_static(b"{\"type\":\"fi\xffle\"}\n"))]);
        let entries: Vec<_> = ndjson_entries(body.boxed(), KoofrPath::parse("/d").unwrap())
            .collect()
            .await;
        assert_eq!(entries.len(), 1, "{entries:?}");
        let e = entries[0].as_ref().unwrap_err();
        assert_eq!((e.kind(), e.path()), (ErrorKind::Unexpected, Some("/d")));
        assert!(e.message().contains("UTF8"), "{e}");
    }
}
