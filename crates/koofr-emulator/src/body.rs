//! HTTP body plumbing: the boxed response body, a wrapper that counts (and optionally cuts)
//! response bytes, and a request-body stream that counts (and optionally aborts) uploads.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Incoming;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type RespBody = UnsyncBoxBody<Bytes, BoxError>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> RespBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn empty() -> RespBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A streamed body of unknown length.
pub(crate) fn streamed<S>(stream: S) -> RespBody
where
    S: Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
{
    use futures::TryStreamExt;
    StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync()
}

/// The error a cut response body or aborted upload ends with; hyper then closes the connection.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct InjectedCut(pub(crate) &'static str);

/// Counts the response bytes as they are sent, and cuts the body after `limit` bytes.
pub(crate) struct CountingBody {
    pub(crate) inner: RespBody,
    pub(crate) counter: Arc<AtomicU64>,
    pub(crate) limit: Option<u64>,
    pub(crate) sent: u64,
    /// Before failing a cut body, wait briefly so hyper flushes the bytes already written
    /// (otherwise the client may not even see the headers).
    pub(crate) cut_delay: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl CountingBody {
    pub(crate) fn new(
        inner: RespBody,
        counter: Arc<AtomicU64>,
        limit: Option<u64>,
    ) -> CountingBody {
        CountingBody {
            inner,
            counter,
            limit,
            sent: 0,
            cut_delay: None,
        }
    }
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(limit) = self.limit
            && self.sent >= limit
        {
            let delay = self.cut_delay.get_or_insert_with(|| {
                Box::pin(tokio::time::sleep(std::time::Duration::from_millis(20)))
            });
            if delay.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            return Poll::Ready(Some(Err(Box::new(InjectedCut(
                "response body truncated by fault",
            )))));
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                if let Some(limit) = self.limit {
                    let room = (limit - self.sent) as usize;
                    if data.len() > room {
                        data.truncate(room);
                    }
                }
                self.sent += data.len() as u64;
                self.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                Frame::data(data)
            }
            Err(frame) => frame,
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.limit.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body as a byte stream: counts bytes and can abort after N bytes.
pub(crate) struct UploadStream {
    pub(crate) incoming: Incoming,
    pub(crate) counter: Arc<AtomicU64>,
    pub(crate) abort_after: Option<u64>,
    pub(crate) read: u64,
}

impl Stream for UploadStream {
    type Item = Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(limit) = self.abort_after
                && self.read >= limit
            {
                return Poll::Ready(Some(Err(Box::new(InjectedCut("upload aborted by fault")))));
            }
            let frame = match Pin::new(&mut self.incoming).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Box::new(e)))),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let Ok(mut data) = frame.into_data() else {
                continue; // trailers
            };
            if let Some(limit) = self.abort_after {
                let room = (limit - self.read) as usize;
                if data.len() > room {
                    data.truncate(room);
                }
            }
            self.read += data.len() as u64;
            self.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            if data.is_empty() {
                continue;
            }
            return Poll::Ready(Some(Ok(data)));
        }
    }
}
