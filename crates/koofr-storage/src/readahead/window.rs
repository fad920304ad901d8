//! One window of the read-ahead: a ranged request whose bytes are kept as they arrive, and the
//! streams that serve `Get`s from windows.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use kloset_plugin::{ByteStream, ConnectorError, ConnectorErrorKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Fetch;

/// One window: a ranged request whose bytes are kept as they arrive.
pub(super) struct Window {
    pub(super) start: u64,
    pub(super) end: u64,
    data: Arc<WindowData>,
    task: JoinHandle<()>,
}

impl Drop for Window {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct WindowData {
    /// Received chunks with their absolute offsets, contiguous from the window's start.
    chunks: Mutex<Vec<(u64, Bytes)>>,
    progress: watch::Sender<Progress>,
    /// The request's error, when it was fatal (set before `progress` says it ended).
    fatal: Mutex<Option<ConnectorError>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// Absolute end of the bytes received.
    filled: u64,
    /// The request ended (completely, early at the object's end, or with an error).
    ended: bool,
    /// It ended without error: the object ends at `filled` if that is short of the window.
    clean: bool,
}

impl Window {
    /// Bytes the window counts against the budget: its range, or what it received if it ended
    /// at the object's end.
    pub(super) fn held(&self) -> u64 {
        self.short_end().unwrap_or(self.end) - self.start
    }

    /// Where the object ends, if this window ended (cleanly) short of its range.
    pub(super) fn short_end(&self) -> Option<u64> {
        let progress = *self.data.progress.borrow();
        (progress.ended && progress.clean && progress.filled < self.end).then_some(progress.filled)
    }

    pub(super) fn start(start: u64, end: u64, fetch: Fetch) -> Window {
        let (progress, _) = watch::channel(Progress {
            filled: start,
            ended: false,
            clean: false,
        });
        let data = Arc::new(WindowData {
            chunks: Mutex::new(Vec::new()),
            progress,
            fatal: Mutex::new(None),
        });
        let task = tokio::spawn(fill(data.clone(), start, end, fetch));
        Window {
            start,
            end,
            data,
            task,
        }
    }
}

/// Receives a window's bytes; an error ends it (readers then request the rest, unless the error
/// is fatal: they get it).
async fn fill(data: Arc<WindowData>, start: u64, end: u64, fetch: Fetch) {
    let mut filled = start;
    let mut clean = false;
    let keep_fatal = |e: ConnectorError| {
        if e.is_fatal() {
            *data.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
        }
    };
    match fetch(start, end - start).await {
        Ok(mut stream) => {
            clean = true;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(chunk) if !chunk.is_empty() => {
                        let len = chunk.len() as u64;
                        data.chunks
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((filled, chunk));
                        filled += len;
                        data.progress.send_modify(|p| p.filled = filled);
                        if filled >= end {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "koofr-storage: a read-ahead window broke off");
                        clean = false;
                        keep_fatal(e);
                        break;
                    }
                }
            }
        }
        // The window starts at or beyond the object's end: the object ends at `start`.
        Err(e) if e.kind() == ConnectorErrorKind::RangeNotSatisfiable => clean = true,
        Err(e) => {
            tracing::debug!(error = %e, "koofr-storage: a read-ahead window failed");
            keep_fatal(e);
        }
    }
    data.progress.send_modify(|p| {
        p.ended = true;
        p.clean = clean;
    });
}

impl WindowData {
    /// The bytes of `[from, to)` received so far (up to `to`), as slices of the chunks.
    fn slices(&self, from: u64, to: u64) -> Vec<Bytes> {
        let chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        let first = chunks.partition_point(|(offset, chunk)| offset + chunk.len() as u64 <= from);
        let mut out = Vec::new();
        for (offset, chunk) in &chunks[first..] {
            if *offset >= to {
                break;
            }
            let lo = from.saturating_sub(*offset) as usize;
            let hi = ((to - offset) as usize).min(chunk.len());
            out.push(chunk.slice(lo..hi));
        }
        out
    }
}

/// Streams `[start, end)` from `windows` as their bytes arrive; whatever they cannot give (a
/// window failed, or ended at the object's end) is requested on its own.
pub(super) fn serve(windows: Vec<Arc<Window>>, start: u64, end: u64, fetch: Fetch) -> ByteStream {
    struct Cursor {
        windows: VecDeque<Arc<Window>>,
        start: u64,
        pos: u64,
        end: u64,
        fetch: Fetch,
        rest: Option<ByteStream>,
    }
    let cursor = Cursor {
        windows: windows.into(),
        start,
        pos: start,
        end,
        fetch,
        rest: None,
    };
    futures::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(rest) = c.rest.as_mut() {
                return rest.next().await.map(|item| (item, c));
            }
            if c.pos >= c.end {
                return None;
            }
            let Some(window) = c.windows.front().cloned() else {
                c.rest = Some(match (c.fetch)(c.pos, c.end - c.pos).await {
                    Ok(stream) => stream,
                    // Bytes were served and the object ends here: the `Get` ends too.
                    Err(e)
                        if c.pos > c.start
                            && e.kind() == ConnectorErrorKind::RangeNotSatisfiable =>
                    {
                        return None;
                    }
                    Err(e) => return Some((Err(e), c)),
                });
                continue;
            };
            if window.end <= c.pos || window.start > c.pos {
                c.windows.pop_front();
                if window.start > c.pos {
                    // Not contiguous (cannot happen with contiguous windows): request the rest.
                    c.windows.clear();
                }
                continue;
            }
            let mut progress = window.data.progress.subscribe();
            let pos = c.pos;
            let seen = progress
                .wait_for(|p| p.filled > pos || p.ended)
                .await
                .map(|p| *p)
                .unwrap_or(Progress {
                    filled: pos,
                    ended: true,
                    clean: false,
                });
            if seen.filled > c.pos {
                let to = seen.filled.min(c.end).min(window.end);
                let slices = window.data.slices(c.pos, to);
                let bytes = concat(slices);
                c.pos += bytes.len() as u64;
                if bytes.is_empty() {
                    // Should not happen; fall back to a request rather than spin.
                    c.windows.clear();
                    continue;
                }
                return Some((Ok(bytes), c));
            }
            if seen.clean && seen.filled < window.end && c.pos > c.start {
                // The object ends here: so does the `Get` (as a plain ranged read would; one
                // starting at or past the end is requested on its own, for its error).
                return None;
            }
            // The window failed before `pos`: a fatal error is the `Get`'s (another request
            // would fail the same way); after any other, what follows is requested on its own.
            let fatal = window
                .data
                .fatal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(e) = fatal {
                c.pos = c.end;
                return Some((Err(e), c));
            }
            c.windows.clear();
        }
    })
    .boxed()
}

/// One chunk from several slices (a single slice is not copied).
fn concat(mut slices: Vec<Bytes>) -> Bytes {
    if slices.len() == 1 {
        return slices.pop().unwrap_or_default();
    }
    let mut out = bytes::BytesMut::with_capacity(slices.iter().map(Bytes::len).sum());
    for slice in slices {
        out.extend_from_slice(&slice);
    }
    out.freeze()
}
