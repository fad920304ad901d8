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
//! * Those reads elsewhere often go *down*: plakar writes a snapshot's directory entries after
//!   the files they list (at the end of the packfile, or in a packfile of their own) and reads
//!   them last first, each a few hundred bytes to a few KiB below the previous one. Seen with
//!   the real binary restoring 1008 files in 72 folders backed up from a local tree: 2222
//!   `Get`s, about 190 of them such lone reads. The third `Get` in a row that ends about where
//!   the previous one starts (counting only `Get`s far from the forward windows, or all when
//!   there are none) starts a *descent*: one request from [`FIRST_WINDOW`] below it up to its
//!   end (a descent that starts again elsewhere keeps the length its windows had grown to); a
//!   `Get` inside it is served from it, and one in the lower half of the lowest window on
//!   the way down requests the next window below (twice as long, up to the configured window).
//!   Windows more than [`TRAIL`] above the reads are done with. The forward walk goes on beside
//!   it.
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

use futures::future::BoxFuture;
use kloset_plugin::{ByteStream, ObjectKey, Result};

mod window;

use window::{Window, serve};

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

/// A read of a descent ends at most this far below the start of the previous one.
const ADJACENT: u64 = 16 << 10;

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
    /// The walk down the object, if its reads also go that way.
    descent: Descent,
}

/// A walk down an object: plakar writes a snapshot's directory entries after the files they
/// list and reads them last first, each a little below the previous one, between the reads of
/// the forward walk (its packfile) or on their own (a packfile of entries).
#[derive(Default)]
struct Descent {
    /// Contiguous windows, ascending (the lowest first).
    windows: VecDeque<Arc<Window>>,
    /// The previous `Get` of the descent: the latest one far from the forward windows.
    last: Option<(u64, u64)>,
    /// Those `Get`s in a row each ending about where the previous one starts (within
    /// [`ADJACENT`]).
    streak: u32,
    /// Length of the next window.
    next_len: u64,
}

/// `[low, high)` of contiguous ascending windows.
fn span(windows: &VecDeque<Arc<Window>>) -> Option<(u64, u64)> {
    Some((windows.front()?.start, windows.back()?.end))
}

/// The windows of `[start, end)`, when they hold its start (the rest, if they end first, is
/// requested on its own by [`serve`]).
fn covering(windows: &VecDeque<Arc<Window>>, start: u64, end: u64) -> Option<Vec<Arc<Window>>> {
    let windows: Vec<Arc<Window>> = windows
        .iter()
        .filter(|w| w.end > start && w.start < end)
        .cloned()
        .collect();
    windows
        .first()
        .is_some_and(|first| first.start <= start)
        .then_some(windows)
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
        let walking = state.walks.values().filter(|w| w.holds_windows()).count();
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
            state.walks.retain(|_, w| w.holds_windows());
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
            descent: Descent {
                next_len: first_len,
                ..Descent::default()
            },
        });
        walk.used = clock;
        walk.learn_size();
        let previous = walk.last.replace((start, end));
        // Windows are never shorter than the reads they serve (big chunks, merged ranges).
        walk.next_len = walk.next_len.max((end - start).min(self.limits.window));
        let near = previous.is_some_and(|last| distance(last, (start, end)) <= NEAR);
        walk.streak = if near { walk.streak + 1 } else { 0 };
        let mut zone = span(&walk.windows);
        let far = zone
            .is_some_and(|(low, high)| start > high + NEAR || (start < low && low - start > NEAR));
        // Inside the descent: its own, even when the forward windows have grown up to it.
        let in_descent =
            span(&walk.descent.windows).is_some_and(|(low, high)| start >= low && end <= high);
        if (far || zone.is_none() || in_descent)
            && let Some(windows) = self.descend(state, key, start, end, fetch)
        {
            return Plan::Windows(windows);
        }
        let walk = state.walks.get_mut(&key).expect("the walk is there");
        // Far from the windows: a lookup elsewhere (at each folder plakar reads a directory's
        // object and its pack, in either order), or, after more than `LOOKUPS` in a row, the
        // reads moved on. Then the windows are dropped and the streak, which counts from the
        // first read elsewhere, may start a walk there at once, as one from nowhere would.
        if far {
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
        covering(&state.walks[&key].windows, start, end).map_or(Plan::Exact, Plan::Windows)
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
            .filter(|(k, w)| **k == key || w.holds_windows())
            .count()
            .max(1) as u64;
        // Each object being read holds about two windows: the one consumed and the next.
        let share = (self.limits.budget / (2 * walking)).clamp(MIN_WINDOW, self.limits.window);
        let walk = state.walks.get_mut(&key).expect("the walk was just used");
        let own: u64 = walk.windows.iter().map(|w| w.held()).sum();
        let ahead = share.min((2 * self.limits.window).saturating_sub(own + needed));
        let mut len = (to - from).min(needed + ahead);
        self.make_room(state, len);
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

    /// Drops windows done with (behind their object's forward reads) or of objects no longer
    /// read, those read longest ago first, until `len` more bytes fit the budget or no window
    /// can go.
    fn make_room(&self, state: &mut State, len: u64) {
        let clock = state.clock;
        while state.held() + len > self.limits.budget {
            let victim = state
                .walks
                .iter()
                .filter(|(_, w)| w.evictable(clock) || (w.idle(clock) && w.holds_windows()))
                .min_by_key(|(_, w)| w.used)
                .map(|(k, _)| *k);
            let Some(victim) = victim else { break };
            let walk = state.walks.get_mut(&victim).expect("present");
            if walk.evictable(clock) {
                walk.windows.pop_front();
            } else {
                walk.descent.windows.pop_back();
            }
        }
    }

    /// A `Get` far from the forward windows of its object (or with none), or inside its
    /// descent: served from the descent, which starts at the third such `Get` in a row ending
    /// about where the previous one starts and is extended down as the reads go; `None` leaves
    /// the `Get` to the forward rules.
    fn descend(
        &self,
        state: &mut State,
        key: ObjectKey,
        start: u64,
        end: u64,
        fetch: &Fetch,
    ) -> Option<Vec<Arc<Window>>> {
        let descent = &mut state
            .walks
            .get_mut(&key)
            .expect("the walk is there")
            .descent;
        let previous = descent.last.replace((start, end));
        // Entries lie next to each other: each read ends about where the previous one starts
        // (ranges are padded by a few KiB), which reads straying at high concurrency rarely do
        // three times in a row.
        let down = previous.is_some_and(|(last_start, last_end)| {
            start < last_start && end <= last_end && end + ADJACENT >= last_start
        });
        descent.streak = if down { descent.streak + 1 } else { 0 };
        // Windows more than `TRAIL` above the reads are done with.
        while descent.windows.len() > 1
            && descent
                .windows
                .back()
                .is_some_and(|w| w.start > end + TRAIL)
        {
            descent.windows.pop_back();
        }
        let wanted = match span(&descent.windows) {
            Some((low, high)) if start >= low && end <= high => {
                // The next window below, once the reads reach the lower half of the lowest.
                let lowest = &descent.windows[0];
                (down && low > 0 && start < low + (lowest.end - low) / 2)
                    .then(|| (low.saturating_sub(descent.next_len), low))
            }
            // Just below the windows, on the way down: extend them down to this `Get`.
            Some((low, high)) if down && start < low && end <= high && low - start <= NEAR => {
                Some((start.min(low.saturating_sub(descent.next_len)), low))
            }
            _ if descent.streak < 2 => return None,
            // The third `Get` down in a row: a descent starts here.
            _ => {
                descent.windows.clear();
                Some((start.saturating_sub(descent.next_len), end))
            }
        };
        if let Some(wanted) = wanted {
            self.add_descent_window(state, key, wanted, start, fetch);
        }
        covering(&state.walks[&key].descent.windows, start, end)
    }

    /// Requests `[from, to)` of `key` as the lowest window of its descent, for a `Get` starting
    /// at `get_start`; shortened from below when the budget is short, nothing when it cannot
    /// hold the `Get`.
    fn add_descent_window(
        &self,
        state: &mut State,
        key: ObjectKey,
        (from, to): (u64, u64),
        get_start: u64,
        fetch: &Fetch,
    ) {
        self.make_room(state, to - from);
        let free = self.limits.budget.saturating_sub(state.held());
        let from = from.max(to.saturating_sub(free));
        if from > get_start || from >= to {
            return;
        }
        let descent = &mut state.walks.get_mut(&key).expect("present").descent;
        // Only contiguous windows: drop the others if this one does not lie just below them.
        if descent.windows.front().is_some_and(|w| w.start != to) {
            descent.windows.clear();
        }
        tracing::debug!(%key, offset = from, length = to - from, "koofr-storage: reading ahead, downwards");
        descent
            .windows
            .push_front(Arc::new(Window::start(from, to, fetch.clone())));
        descent.next_len = (descent.next_len * 2).min(self.limits.window);
    }
}

impl State {
    /// Bytes held by all windows.
    fn held(&self) -> u64 {
        self.walks
            .values()
            .flat_map(|w| w.windows.iter().chain(&w.descent.windows))
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
        self.idle(clock) || front.end <= self.position
    }

    fn idle(&self, clock: u64) -> bool {
        clock.saturating_sub(self.used) > IDLE_GETS
    }

    fn holds_windows(&self) -> bool {
        !self.windows.is_empty() || !self.descent.windows.is_empty()
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
    use bytes::Bytes;
    use futures::StreamExt;
    use kloset_plugin::{ConnectorError, Mac, Resource};
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
