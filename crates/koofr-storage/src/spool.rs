//! Turns the incoming `Put` stream into a replayable upload body without holding big objects in
//! memory: up to [`MEMORY_LIMIT`] bytes stay in memory, anything larger is spooled to an
//! temporary file deleted when the upload is done. The whole stream is received before the upload starts, so
//! a broken gRPC stream means no upload is attempted at all, and every retry resends the same
//! bytes.

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use kloset_plugin::{ByteStream, ConnectorError, Result};
use koofr_core::{ReplayFn, UploadBody, error::ErrorKind};
use tokio::io::AsyncWriteExt;

/// Objects up to this size are buffered in memory.
pub const MEMORY_LIMIT: usize = 1024 * 1024;

/// Read size when replaying a spool file.
const READ_CHUNK: usize = 256 * 1024;

/// A fully received object, ready to upload (any number of times).
#[derive(Debug)]
pub struct Spooled {
    content: Content,
    /// Its exact length.
    pub len: u64,
}

enum Content {
    Memory(Bytes),
    /// Opens the spool file again; holds the file's `TempPath`, which deletes it when dropped.
    File(ReplayFn),
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Memory(b) => write!(f, "Memory({} bytes)", b.len()),
            Content::File(_) => f.write_str("File"),
        }
    }
}

impl Spooled {
    /// A replayable upload body of the content (cheap: shares the buffer or the spool file).
    pub fn body(&self) -> UploadBody {
        match &self.content {
            Content::Memory(bytes) => UploadBody::Bytes(bytes.clone()),
            Content::File(replay) => UploadBody::Replayable(replay.clone()),
        }
    }

    /// Whether the content is held in memory (not spooled to a file).
    pub fn in_memory(&self) -> bool {
        matches!(self.content, Content::Memory(_))
    }
}

/// Receives `data` completely, spooling to the system's temporary directory. An error in `data`
/// is returned as is (and the spool file, if any, is removed); `what` names the object in error
/// messages.
pub async fn receive(data: ByteStream, what: &str) -> Result<Spooled> {
    receive_in(data, what, &std::env::temp_dir()).await
}

/// [`receive`] with the spool file in `dir`.
pub async fn receive_in(mut data: ByteStream, what: &str, dir: &Path) -> Result<Spooled> {
    let mut buffer = BytesMut::new();
    while let Some(chunk) = data.next().await {
        let chunk = chunk?;
        if buffer.len() + chunk.len() > MEMORY_LIMIT {
            return spool_to_file(buffer.freeze(), chunk, data, what, dir).await;
        }
        buffer.extend_from_slice(&chunk);
    }
    let len = buffer.len() as u64;
    Ok(Spooled {
        content: Content::Memory(buffer.freeze()),
        len,
    })
}

async fn spool_to_file(
    head: Bytes,
    next: Bytes,
    mut rest: ByteStream,
    what: &str,
    dir: &Path,
) -> Result<Spooled> {
    let io_error = |e: std::io::Error| {
        ConnectorError::other(format!("cannot spool {what} to a temporary file: {e}"))
    };
    let named = tempfile::Builder::new()
        .prefix("koofr-storage-")
        .tempfile_in(dir)
        .map_err(io_error)?;
    let (std_file, path) = named.into_parts();
    let mut file = tokio::fs::File::from_std(std_file);
    let mut len = 0u64;
    for chunk in [head, next] {
        file.write_all(&chunk).await.map_err(io_error)?;
        len += chunk.len() as u64;
    }
    while let Some(chunk) = rest.next().await {
        // On a stream error `path` is dropped here, which deletes the spool file.
        let chunk = chunk?;
        file.write_all(&chunk).await.map_err(io_error)?;
        len += chunk.len() as u64;
    }
    file.flush().await.map_err(io_error)?;
    drop(file);
    let path = Arc::new(path);
    let replay = move || -> koofr_core::ByteStream {
        // Each attempt opens its own handle; the file is deleted once the last replay closure
        // (held by the upload) is dropped.
        let path = path.clone();
        futures::stream::once(async move {
            match tokio::fs::File::open(&*path).await {
                Ok(file) => tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK)
                    .map(move |item| {
                        item.map_err(|e| {
                            koofr_core::Error::permanent(
                                ErrorKind::Unexpected,
                                "read spool file",
                                e.to_string(),
                            )
                        })
                    })
                    .boxed(),
                Err(e) => futures::stream::once(async move {
                    Err(koofr_core::Error::permanent(
                        ErrorKind::Unexpected,
                        "open spool file",
                        e.to_string(),
                    ))
                })
                .boxed(),
            }
        })
        .flatten()
        .boxed()
    };
    Ok(Spooled {
        content: Content::File(Arc::new(replay)),
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(total: usize, chunk: usize) -> ByteStream {
        let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let pieces: Vec<Result<Bytes>> = data
            .chunks(chunk.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(pieces).boxed()
    }

    async fn replay_bytes(body: UploadBody) -> Vec<u8> {
        match body {
            UploadBody::Bytes(b) => b.to_vec(),
            UploadBody::Replayable(f) => {
                let mut out = Vec::new();
                let mut s = f();
                while let Some(c) = s.next().await {
                    out.extend_from_slice(&c.unwrap());
                }
                out
            }
            UploadBody::Stream(_) => panic!("a one-shot stream is not replayable"),
        }
    }

    fn files_in(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[tokio::test]
    async fn small_objects_stay_in_memory_and_large_ones_replay_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        for (total, in_memory) in [(0, true), (MEMORY_LIMIT, true), (MEMORY_LIMIT + 1, false)] {
            let spooled = receive_in(chunks(total, 300_000), "object", dir.path())
                .await
                .unwrap();
            assert_eq!(files_in(dir.path()), usize::from(!in_memory));
            assert_eq!(spooled.len, total as u64);
            assert_eq!(spooled.in_memory(), in_memory, "{total}");
            let expected: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
            // Twice: a retry must resend the same bytes.
            assert_eq!(replay_bytes(spooled.body()).await, expected);
            assert_eq!(replay_bytes(spooled.body()).await, expected);
            drop(spooled);
            assert_eq!(
                files_in(dir.path()),
                0,
                "spool file left after {total} bytes"
            );
        }
    }

    #[tokio::test]
    async fn a_broken_stream_fails_and_leaves_no_spool_file() {
        let broken = chunks(3 * MEMORY_LIMIT, 100_000)
            .chain(futures::stream::once(async {
                Err(ConnectorError::other("stream broke"))
            }))
            .boxed();
        let dir = tempfile::tempdir().unwrap();
        let err = receive_in(broken, "object", dir.path()).await.unwrap_err();
        assert_eq!(err.message(), "stream broke");
        assert_eq!(files_in(dir.path()), 0, "a spool file was left behind");
    }
}
