//! Read-ahead for ranged `Get`s: when plakar's reads walk forward through one object (a
//! packfile), one request fetches a growing window ahead of them, and the next window is fetched
//! while the current one is consumed.
//!
//! What plakar v1.1.4 does (seen with the real binary): `restore` and `check` read a packfile
//! with one small ranged `Get` per blob, one at a time at `-concurrency 1`: for each file its
//! object (~200 bytes), then its chunk, which lies just *before* the object, so the reads hop
//! back ~16 KiB and then forward ~33 KiB, always within a few tens of KiB of the previous read.
//! Ranges are padded at random by plakar (a few bytes to a few KiB), so consecutive reads overlap
//! or leave small gaps. At `-concurrency 16` the reads of one packfile stray over ~350 KiB.
//!
//! The rules, per object (resource and MAC):
//! * A `Get` is *near* the previous one when less than [`NEAR`] separates their ranges.
//!   After two near `Get`s in a row, the third starts a *walk*: ONE request for a window from
//!   the end of the previous range (or the start of this one, if lower) to at least
//!   [`FIRST_WINDOW`] past it; the `Get`s that fall inside are served from it as its bytes
//!   arrive. A lone `Get`, or two, costs one request of exactly its range, as without
//!   read-ahead.
//! * When a `Get` reaches the middle of the last window, the next one is requested (twice as
//!   long, up to the configured window, and never shorter than the `Get`s), so it arrives while
//!   the current one is consumed. A `Get` running past the last window extends them at once.
//!   Windows ending more than [`TRAIL`] behind the latest `Get` are done with.
//! * A `Get` far from every window of its object is fetched on its own and leaves the windows
//!   in place: at each folder plakar reads two blobs stored elsewhere (the directory's object
//!   and its pack, next to each other or with one of the folder's reads between them), then
//!   comes back. More than [`LOOKUPS`] such `Get`s in a row mean the reads moved elsewhere:
//!   the windows are dropped, and a walk starts there as one from nowhere would. A near `Get`
//!   behind the windows is fetched on its own.
//! * Memory: the bytes of every window count against one budget (a window that ended at the
//!   object's end counts what it received). Read-ahead past a `Get` is at most the configured
//!   window and half the object's fair share of the budget (it holds about two windows), and one
//!   object's windows stay within two windows' length (plus what the `Get` itself asks for). To
//!   make room, only windows no `Get` is reading are dropped: those behind the latest `Get` of
//!   their object, and those of objects no `Get` touched for [`IDLE_GETS`] `Get`s; when that is
//!   not enough, there is no read-ahead for this `Get`. A window's request is cancelled when no
//!   window list or `Get` holds it any more.
//! * Windows are requested as plain ranged `Get`s are (koofr-core's download, with its one retry
//!   budget per request, resumed within it). A window that fails serves what it holds; the rest
//!   of each `Get` is requested on its own, so errors are the ones a plain `Get` gives, mapped
//!   the same way. A fatal error (refused credentials, an unreachable endpoint) is given at
//!   once to the `Get`s waiting on the window instead: another request would fail the same way.
//!   A window that ends early marks the object's end: no window is requested past it, and a
//!   `Get` running past it ends there, as a plain one.
//!
//! plakar's reads name no packfile ahead of time: at `-concurrency 1` packfiles are read one
//! after another in the snapshot's path order, and nothing in the `Get`s tells which comes next,
//! so no packfile is fetched before it is read. At higher concurrency several walks run at once
//! (one per packfile being read), sharing the budget.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use kloset_plugin::{ByteStream, ConnectorError, ConnectorErrorKind, ObjectKey, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Two reads at most this far apart are *near*: part of one forward walk.
pub const NEAR: u64 = 1 << 20;

/// The first window of a walk reaches at least this far past its `Get`.
pub const FIRST_WINDOW: u64 = 256 << 10;

/// Windows ending this far behind the latest `Get` of their object are done with (at
/// `-concurrency 16` plakar's reads of one packfile stray over ~350 KiB).
pub const TRAIL: u64 = 512 << 10;

/// An object no `Get` touched for this many `Get`s (of any object) is no longer being read.
pub const IDLE_GETS: u64 = 256;

/// Reads far from a walk's windows tolerated in a row (lookups elsewhere) before the windows
/// are dropped.
pub const LOOKUPS: u32 = 2;

/// The smallest window worth a request when the budget is short.
const MIN_WINDOW: u64 = 64 << 10;

/// The read-ahead limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAheadLimits {
    /// Bytes all windows may hold together; 0 turns read-ahead off.
    pub budget: u64,
    /// The longest window (one request).
    pub window: u64,
}

/// Fetches `len` bytes of the object from `offset`, as a plain ranged `Get` does.
pub(crate) type Fetch =
    Arc<dyn Fn(u64, u64) -> BoxFuture<'static, Result<ByteStream>> + Send + Sync>;

/// The read-ahead of one store.
pub(crate) struct ReadAhead {
    limits: ReadAheadLimits,
    state: Mutex<State>,
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("ReadAhead")
            .field("limits", &self.limits)
            .field("walks", &state.walks.len())
            .field("held", &state.held())
            .finish()
    }
}

#[derive(Default)]
struct State {
    walks: HashMap<ObjectKey, Walk>,
    /// Counts `Get`s, to find the objects no longer read.
    clock: u64,
}

struct Walk {
    /// Contiguous windows, ascending.
    windows: VecDeque<Arc<Window>>,
    /// The previous `Get`'s range.
    last: Option<(u64, u64)>,
    /// Near `Get`s in a row.
    streak: u32,
    /// `Get`s far from the windows in a row.
    away: u32,
    /// Start of the latest `Get` served from (or extending) the windows.
    position: u64,
    /// Length of the next window.
    next_len: u64,
    /// `clock` at the last `Get`.
    used: u64,
    /// The object's size, once a window ended short of its range.
    size: Option<u64>,
}

/// One window: a ranged request whose bytes are kept as they arrive.
struct Window {
    start: u64,
    end: u64,
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

/// How a `Get` is answered.
enum Plan {
    /// One request of exactly the range.
    Exact,
    /// From these windows (covering the range, possibly only up to the object's end).
    Windows(Vec<Arc<Window>>),
}

impl ReadAhead {
    pub(crate) fn new(limits: ReadAheadLimits) -> ReadAhead {
        ReadAhead {
            limits,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes held by windows, and the number of objects with windows (for tests).
    pub(crate) fn held(&self) -> (u64, usize) {
        let state = self.lock();
        let walking = state
            .walks
            .values()
            .filter(|w| !w.windows.is_empty())
            .count();
        (state.held(), walking)
    }

    /// A ranged `Get` of `len > 0` bytes at `offset` of the object `key`; `fetch` makes plain
    /// ranged requests of it.
    pub(crate) fn get(
        &self,
        key: ObjectKey,
        offset: u64,
        len: u64,
        fetch: Fetch,
    ) -> BoxFuture<'static, Result<ByteStream>> {
        let plan = if self.limits.budget == 0 {
            Plan::Exact
        } else {
            self.plan(key, offset, offset.saturating_add(len), &fetch)
        };
        match plan {
            Plan::Exact => fetch(offset, len),
            Plan::Windows(windows) => {
                Box::pin(async move { Ok(serve(windows, offset, offset + len, fetch)) })
            }
        }
    }

    fn plan(&self, key: ObjectKey, start: u64, end: u64, fetch: &Fetch) -> Plan {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.clock += 1;
        let clock = state.clock;
        if state.walks.len() >= 1024 {
            // Forget objects read once or twice, so that the map stays small.
            state.walks.retain(|_, w| !w.windows.is_empty());
        }
        let first_len = FIRST_WINDOW.min(self.limits.window);
        let walk = state.walks.entry(key).or_insert_with(|| Walk {
            windows: VecDeque::new(),
            last: None,
            streak: 0,
            away: 0,
            position: 0,
            next_len: first_len,
            used: clock,
            size: None,
        });
        walk.used = clock;
        walk.learn_size();
        let previous = walk.last.replace((start, end));
        // Windows are never shorter than the reads they serve (big chunks, merged ranges).
        walk.next_len = walk.next_len.max((end - start).min(self.limits.window));
        let near = previous.is_some_and(|last| distance(last, (start, end)) <= NEAR);
        walk.streak = if near { walk.streak + 1 } else { 0 };
        let mut zone = walk
            .windows
            .front()
            .zip(walk.windows.back())
            .map(|(front, back)| (front.start, back.end));
        // Far from the windows: a lookup elsewhere (at each folder plakar reads a directory's
        // object and its pack, in either order), or, after more than `LOOKUPS` in a row, the
        // reads moved on. Then the windows are dropped and the streak, which counts from the
        // first read elsewhere, may start a walk there at once, as one from nowhere would.
        if let Some((low, high)) = zone
            && (start > high + NEAR || (start < low && low - start > NEAR))
        {
            walk.away += 1;
            if walk.away <= LOOKUPS {
                return Plan::Exact;
            }
            walk.windows.clear();
            walk.next_len = first_len;
            zone = None;
        }

        let mut wanted = match zone {
            Some((low, high)) if start >= low && end <= high => None,
            // Ahead of the windows, or running past their end: extend them.
            Some((low, high)) if start >= low => Some((high, end.max(high + walk.next_len))),
            // Just behind them (a straggler at high concurrency): on its own.
            Some(_) => return Plan::Exact,
            None if walk.streak >= 2 => {
                // From the end of the previous read when this one steps forward: plakar reads
                // a chunk just before the object it read last.
                let from = match previous {
                    Some((_, last_end)) if last_end <= start => {
                        last_end.max(start.saturating_sub(FIRST_WINDOW))
                    }
                    _ => start,
                };
                Some((from, end.max(start + walk.next_len)))
            }
            None => return Plan::Exact,
        };
        walk.away = 0;
        walk.position = start;
        walk.drop_done(start);
        // The next window, once the reads reach the middle of the last one.
        if wanted.is_none()
            && let Some(back) = walk.windows.back()
            && end > back.start + (back.end - back.start) / 2
        {
            wanted = Some((back.end, back.end + walk.next_len));
        }
        // Never past the object's end.
        let wanted = wanted
            .map(|(from, to)| (from, walk.size.map_or(to, |size| to.min(size))))
            .filter(|(from, to)| from < to);
        if let Some(wanted) = wanted {
            self.add_window(state, key, wanted, end, fetch);
        }
        let windows: Vec<Arc<Window>> = state.walks[&key]
            .windows
            .iter()
            .filter(|w| w.end > start && w.start < end)
            .cloned()
            .collect();
        match windows.first() {
            Some(first) if first.start <= start => Plan::Windows(windows),
            _ => Plan::Exact,
        }
    }

    /// Requests `[from, to)` of `key` as its next window, for a `Get` ending at `get_end`: the
    /// part past the `Get` within the limits (see the module's rules), or nothing when the budget
    /// cannot hold it.
    fn add_window(
        &self,
        state: &mut State,
        key: ObjectKey,
        (from, to): (u64, u64),
        get_end: u64,
        fetch: &Fetch,
    ) {
        let needed = get_end.saturating_sub(from).min(to - from);
        let walking = state
            .walks
            .iter()
            .filter(|(k, w)| **k == key || !w.windows.is_empty())
            .count()
            .max(1) as u64;
        // Each object being read holds about two windows: the one consumed and the next.
        let share = (self.limits.budget / (2 * walking)).clamp(MIN_WINDOW, self.limits.window);
        let walk = state.walks.get_mut(&key).expect("the walk was just used");
        let own: u64 = walk.windows.iter().map(|w| w.held()).sum();
        let ahead = share.min((2 * self.limits.window).saturating_sub(own + needed));
        let mut len = (to - from).min(needed + ahead);
        // Room: windows done with (behind their object's reads) or of objects no longer read,
        // those read longest ago first.
        let clock = state.clock;
        while state.held() + len > self.limits.budget {
            let victim = state
                .walks
                .iter()
                .filter(|(_, w)| w.evictable(clock))
                .min_by_key(|(_, w)| w.used)
                .map(|(k, _)| *k);
            let Some(victim) = victim else { break };
            state
                .walks
                .get_mut(&victim)
                .expect("present")
                .windows
                .pop_front();
        }
        let free = self.limits.budget.saturating_sub(state.held());
        if len > free {
            if free < needed.max(MIN_WINDOW.min(to - from)) {
                return;
            }
            len = free;
        }
        let walk = state.walks.get_mut(&key).expect("present");
        // Only contiguous windows: drop the others if this one does not follow them.
        if walk.windows.back().is_some_and(|b| b.end != from) {
            walk.windows.clear();
        }
        tracing::debug!(%key, offset = from, length = len, "koofr-storage: reading ahead");
        walk.windows
            .push_back(Arc::new(Window::start(from, from + len, fetch.clone())));
        walk.next_len = (walk.next_len * 2).min(self.limits.window);
    }
}

impl State {
    /// Bytes held by all windows.
    fn held(&self) -> u64 {
        self.walks
            .values()
            .flat_map(|w| w.windows.iter())
            .map(|w| w.held())
            .sum()
    }
}

impl Walk {
    /// A window that ended short of its range (cleanly) marks the object's end.
    fn learn_size(&mut self) {
        if self.size.is_none()
            && let Some(end) = self.windows.iter().find_map(|w| w.short_end())
        {
            self.size = Some(end);
        }
    }

    /// Drops the windows ending more than [`TRAIL`] behind `start` (keeping the last one).
    fn drop_done(&mut self, start: u64) {
        while self.windows.len() > 1 && self.windows.front().is_some_and(|w| w.end + TRAIL <= start)
        {
            self.windows.pop_front();
        }
    }

    /// Whether the front window can be dropped to make room: the walk's reads are past it, or
    /// nothing read this object for a while.
    fn evictable(&self, clock: u64) -> bool {
        let Some(front) = self.windows.front() else {
            return false;
        };
        clock.saturating_sub(self.used) > IDLE_GETS || front.end <= self.position
    }
}

/// Bytes between two ranges (0 when they touch or overlap).
fn distance(a: (u64, u64), b: (u64, u64)) -> u64 {
    if b.0 >= a.1 {
        b.0 - a.1
    } else {
        a.0.saturating_sub(b.1)
    }
}

impl Window {
    /// Bytes the window counts against the budget: its range, or what it received if it ended
    /// at the object's end.
    fn held(&self) -> u64 {
        self.short_end().unwrap_or(self.end) - self.start
    }

    /// Where the object ends, if this window ended (cleanly) short of its range.
    fn short_end(&self) -> Option<u64> {
        let progress = *self.data.progress.borrow();
        (progress.ended && progress.clean && progress.filled < self.end).then_some(progress.filled)
    }

    fn start(start: u64, end: u64, fetch: Fetch) -> Window {
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
fn serve(windows: Vec<Arc<Window>>, start: u64, end: u64, fetch: Fetch) -> ByteStream {
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

/// Boxes a fetch closure.
pub(crate) fn fetch_fn<F, Fut>(f: F) -> Fetch
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ByteStream>> + Send + 'static,
{
    Arc::new(move |offset, len| Box::pin(f(offset, len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kloset_plugin::{Mac, Resource};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fatal error of a window reaches the `Get` waiting on it without another request; any
    /// other error is followed by a plain request of the rest. (Against the emulator, Koofr's
    /// refusals cost no second request either way: the client remembers them; an unreachable
    /// endpoint would cost a second round of attempts.)
    #[tokio::test]
    async fn a_fatal_window_error_is_the_gets_and_another_is_followed_by_a_plain_request() {
        for fatal in [true, false] {
            let calls = Arc::new(AtomicU32::new(0));
            let fetch = fetch_fn({
                let calls = calls.clone();
                move |_offset, len| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if len >= FIRST_WINDOW {
                            let e = ConnectorError::other("unreachable");
                            return Err(if fatal { e.fatal() } else { e });
                        }
                        let bytes = Bytes::from(vec![7u8; len as usize]);
                        Ok(futures::stream::iter([Ok(bytes)]).boxed())
                    }
                }
            });
            let readahead = ReadAhead::new(ReadAheadLimits {
                budget: 16 << 20,
                window: 4 << 20,
            });
            let key = Resource::Packfile.key(Mac([1; 32]));
            let mut outcomes = Vec::new();
            for offset in [0, 20_000, 40_000] {
                let stream = readahead
                    .get(key, offset, 1_000, fetch.clone())
                    .await
                    .unwrap();
                let items: Vec<Result<Bytes>> = stream.collect().await;
                outcomes.push(items.iter().all(|i| i.is_ok()));
            }
            // Two exact Gets, then a walk: its window fails.
            let calls = calls.load(Ordering::SeqCst);
            if fatal {
                assert_eq!((outcomes, calls), (vec![true, true, false], 3));
            } else {
                assert_eq!((outcomes, calls), (vec![true, true, true], 4));
            }
        }
    }
}
