//! Streaming uploads (`files/put`, spec §7.9, §9.5): the body is hashed (MD5) and counted while it
//! is sent, checked against the returned File, and retried only when replayable and safe.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};

use crate::client::{Client, Family, JSON};
use crate::error::{Error, ErrorKind, Result};
use crate::path::{KoofrPath, encode_component, validate_name};
use crate::transport::{ByteStream, RequestContext, StallWatchdog};
use crate::types::FileInfo;

/// What an existing file of the same name means for an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverwritePolicy {
    /// Create or replace; never rename (`overwrite=true&autorename=false&overwriteIgnoreNonexisting=`).
    #[default]
    Overwrite,
    /// Fail with [`ErrorKind::Conflict`] (or `AlreadyExists`) if the name is taken.
    ErrorIfExists,
    /// Store under the first free name `name (1).ext`, … (never retried).
    Autorename,
}

/// Upload settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOptions {
    /// The file's modification time in ms since the epoch (default: the server's clock).
    pub modified_ms: Option<i64>,
    /// Behaviour when the name is taken.
    pub policy: OverwritePolicy,
    /// The exact size when known: sent as `Content-Length`, and a source that yields a different
    /// number of bytes aborts the upload (so nothing is stored).
    pub size_hint: Option<u64>,
}

/// A function that opens the same content again for each attempt.
pub type ReplayFn = Arc<dyn Fn() -> ByteStream + Send + Sync>;

/// The content of an upload.
pub enum UploadBody {
    /// In-memory content (cheap to resend).
    Bytes(Bytes),
    /// Content that can be produced again from the start (a file, a spool): retried.
    Replayable(ReplayFn),
    /// A one-shot stream: never retried.
    Stream(ByteStream),
}

impl std::fmt::Debug for UploadBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadBody::Bytes(b) => write!(f, "UploadBody::Bytes({} bytes)", b.len()),
            UploadBody::Replayable(_) => f.write_str("UploadBody::Replayable"),
            UploadBody::Stream(_) => f.write_str("UploadBody::Stream"),
        }
    }
}

impl From<Bytes> for UploadBody {
    fn from(b: Bytes) -> Self {
        UploadBody::Bytes(b)
    }
}

impl From<Vec<u8>> for UploadBody {
    fn from(v: Vec<u8>) -> Self {
        UploadBody::Bytes(Bytes::from(v))
    }
}

/// The upload source as seen by one request attempt.
enum Source {
    Bytes(Bytes),
    Replayable(ReplayFn),
    Stream(Mutex<Option<ByteStream>>),
}

impl Source {
    fn replayable(&self) -> bool {
        !matches!(self, Source::Stream(_))
    }

    fn open(&self, ctx: RequestContext<'_>) -> Result<ByteStream> {
        match self {
            Source::Bytes(b) => {
                // Chunked so that progress (and the stall watchdog) advance during big sends.
                let bytes = b.clone();
                let chunks = (0..bytes.len().div_ceil(CHUNK))
                    .map(move |i| Ok(bytes.slice(i * CHUNK..((i + 1) * CHUNK).min(bytes.len()))));
                Ok(futures::stream::iter(chunks.collect::<Vec<_>>()).boxed())
            }
            Source::Replayable(f) => Ok(f()),
            Source::Stream(s) => s
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .ok_or_else(|| {
                    ctx.error(
                        ErrorKind::InvalidInput,
                        false,
                        "a one-shot upload stream cannot be sent twice",
                    )
                }),
        }
    }
}

const CHUNK: usize = 256 * 1024;

/// What the body saw while it was sent.
#[derive(Default)]
struct Sent {
    md5: Option<Md5>,
    bytes: u64,
    /// The source's own error, or a size mismatch; reported instead of the transport error.
    failure: Option<Error>,
}

impl Client {
    /// Uploads `name` into the existing folder `dir` in ONE request, streaming `body`. The size
    /// and MD5 computed while sending are checked against the File Koofr returns.
    /// Retried only for [`OverwritePolicy::Overwrite`] with a replayable body.
    pub async fn upload(
        &self,
        dir: &KoofrPath,
        name: &str,
        body: UploadBody,
        opts: UploadOptions,
    ) -> Result<FileInfo> {
        let name = validate_name(name)?;
        let target = dir.child(&name)?;
        let mut query = format!("&filename={}&info=true", encode_component(&name));
        query.push_str(match opts.policy {
            OverwritePolicy::Overwrite => {
                "&overwrite=true&autorename=false&overwriteIgnoreNonexisting="
            }
            OverwritePolicy::ErrorIfExists => "&overwrite=false&autorename=false",
            OverwritePolicy::Autorename => "&autorename=true",
        });
        if let Some(ms) = opts.modified_ms {
            query.push_str(&format!("&modified={ms}"));
        }
        let url = self.files_url(Family::Content, "put", dir, &query).await?;
        let source = match body {
            UploadBody::Bytes(b) => Source::Bytes(b),
            UploadBody::Replayable(f) => Source::Replayable(f),
            UploadBody::Stream(s) => Source::Stream(Mutex::new(Some(s))),
        };
        let retryable = source.replayable() && opts.policy == OverwritePolicy::Overwrite;
        let ctx = RequestContext {
            op: "upload",
            path: Some(target.as_str()),
            exists_possible: false,
        };
        let (url, source) = (url.as_str(), &source);
        let uploaded = self
            .with_retry(retryable, |_| async move {
                self.upload_once(ctx, url, source, opts.size_hint).await
            })
            .await;
        let info = uploaded.inspect_err(|e| {
            // Uploads never create their folder, so a 404 means it is gone (removed by another
            // client): what this client remembers about it is stale.
            if e.is_not_found() {
                self.folders().forget_with_ancestors(dir);
            }
        })?;
        self.folders().remember(dir);
        Ok(info)
    }

    async fn upload_once(
        &self,
        ctx: RequestContext<'_>,
        url: &str,
        source: &Source,
        size_hint: Option<u64>,
    ) -> Result<FileInfo> {
        let watchdog = StallWatchdog::new();
        let mut sent_state: Option<Arc<Mutex<Sent>>> = None;
        let response = self
            .transport()
            .send(ctx, Some(watchdog.clone()), |http| {
                let stream = source.open(ctx)?;
                let sent = Arc::new(Mutex::new(Sent {
                    md5: Some(Md5::new()),
                    ..Sent::default()
                }));
                sent_state = Some(sent.clone());
                let body = counting_body(stream, sent, watchdog.clone(), size_hint, ctx);
                let mut request = http
                    .post(url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(ACCEPT, JSON)
                    .body(reqwest::Body::wrap_stream(body));
                if let Some(size) = size_hint {
                    request = request.header(CONTENT_LENGTH, size);
                }
                Ok(request)
            })
            .await;
        let take_failure = |state: &Option<Arc<Mutex<Sent>>>| {
            state
                .as_ref()
                .and_then(|s| s.lock().unwrap_or_else(|e| e.into_inner()).failure.take())
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return Err(take_failure(&sent_state).unwrap_or(e)),
        };
        let stall = self.transport().stall();
        let bytes = {
            let mut stream =
                crate::transport::body_stream(response, ctx.op, ctx.path.map(str::to_owned), stall);
            let mut out = Vec::new();
            while let Some(chunk) = stream.next().await {
                out.extend_from_slice(&chunk?);
            }
            out
        };
        if let Some(failure) = take_failure(&sent_state) {
            return Err(failure);
        }
        let info: FileInfo = serde_json::from_slice(&bytes).map_err(|e| {
            ctx.error(
                ErrorKind::Unexpected,
                false,
                format!("unexpected upload response ({e}); is info=true supported?"),
            )
        })?;
        let (sent_bytes, md5) = {
            let state = sent_state.as_ref().expect("the request was built");
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            (
                state.bytes,
                state.md5.take().map(|m| hex::encode(m.finalize())),
            )
        };
        if info.size != sent_bytes {
            return Err(ctx.error(
                ErrorKind::Integrity,
                true,
                format!("sent {sent_bytes} bytes but Koofr stored {}", info.size),
            ));
        }
        if let (Some(remote), Some(local)) = (&info.hash, &md5)
            && remote != local
        {
            return Err(ctx.error(
                ErrorKind::Integrity,
                true,
                format!("MD5 mismatch: sent {local}, Koofr stored {remote}"),
            ));
        }
        Ok(info)
    }
}

/// Wraps the source: counts and hashes bytes, touches the stall watchdog, enforces `size_hint`,
/// and records the first failure so the caller can report it rather than the resulting broken
/// request.
fn counting_body(
    source: ByteStream,
    sent: Arc<Mutex<Sent>>,
    watchdog: StallWatchdog,
    size_hint: Option<u64>,
    ctx: RequestContext<'_>,
) -> ByteStream {
    let op = ctx.op;
    let path = ctx.path.map(str::to_owned);
    let fail = move |sent: &Arc<Mutex<Sent>>, message: String| {
        let error = Error::permanent(ErrorKind::InvalidInput, op, message);
        let error = match &path {
            Some(p) => error.with_path(p),
            None => error,
        };
        sent.lock().unwrap_or_else(|e| e.into_inner()).failure = Some(error);
        Error::permanent(ErrorKind::InvalidInput, op, "upload aborted")
    };
    futures::stream::unfold(
        (source, sent, false),
        move |(mut source, sent, finished)| {
            let fail = fail.clone();
            let watchdog = watchdog.clone();
            async move {
                if finished {
                    return None;
                }
                match source.next().await {
                    Some(Ok(chunk)) => {
                        watchdog.touch();
                        let total = {
                            let mut state = sent.lock().unwrap_or_else(|e| e.into_inner());
                            state.bytes += chunk.len() as u64;
                            if let Some(md5) = state.md5.as_mut() {
                                md5.update(&chunk);
                            }
                            state.bytes
                        };
                        if let Some(hint) = size_hint
                            && total > hint
                        {
                            let e = fail(
                                &sent,
                                format!("the source gave more than the announced {hint} bytes"),
                            );
                            return Some((Err(e), (source, sent, true)));
                        }
                        Some((Ok(chunk), (source, sent, false)))
                    }
                    Some(Err(e)) => {
                        let reported =
                            Error::new(e.kind(), e.is_temporary(), e.op(), "upload source failed");
                        sent.lock().unwrap_or_else(|p| p.into_inner()).failure = Some(e);
                        Some((Err(reported), (source, sent, true)))
                    }
                    None => {
                        let total = sent.lock().unwrap_or_else(|e| e.into_inner()).bytes;
                        match size_hint {
                            Some(hint) if total != hint => {
                                let e = fail(
                                    &sent,
                                    format!(
                                        "the source gave {total} bytes, not the announced {hint}"
                                    ),
                                );
                                Some((Err(e), (source, sent, true)))
                            }
                            _ => None,
                        }
                    }
                }
            }
        },
    )
    .boxed()
}
