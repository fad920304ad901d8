//! Read-ahead for `Open`: while plakar opens files in scan order, the next files' contents are
//! downloaded ahead of its calls, a few at once, within a byte budget.
//!
//! What plakar v1.1.4 does (seen with the real binary): its backup workers take records in scan
//! order and call `Open` only for files whose `FileInfo` differs from the parent snapshot; at
//! `-concurrency 1` the Opens follow the scan order exactly, at 16 they stray by up to about a
//! dozen places. Records reach plakar long before their `Open` (hundreds ahead). The importer
//! never sees plakar's acks, so all it knows is the order of the records it sent and the
//! `Open`s it gets.
//!
//! The rules:
//! * Nothing is fetched until two `Open`s in a row hit files next to each other in scan order
//!   ("next to" = within plakar's concurrency of the highest file opened so far). An incremental
//!   backup that opens one changed file therefore downloads exactly that one file.
//! * Each such `Open` doubles how many files ahead are fetched (up to [`MAX_AHEAD_PER_SLOT`] ×
//!   the number of simultaneous fetches); an `Open` elsewhere (plakar skipped files) sets it
//!   back to nothing, and files left behind are dropped, their downloads cancelled.
//! * Only files up to `max_file` bytes are fetched ahead, whole, in memory; the sizes the scan
//!   listed are reserved against the budget before a fetch starts and released when the content
//!   served to `Open` has been consumed (or dropped), so the memory held never exceeds the
//!   budget. Larger files are streamed when opened, as without read-ahead.
//! * Fetches run at most `concurrency` at a time, sharing the client's transfer slots with the
//!   `Open`s of files not fetched ahead (which wait at most for one fetch to end). The fetch
//!   rate is then `concurrency` files per round trip: at 20 ms and the default 8, one small
//!   file every ~3 ms, while plakar alone needs ~1.2 ms per file, so a higher `concurrency`
//!   still speeds up backups of many small files. Fetches use the same verified download as
//!   `Open` (koofr-core's, with its one retry budget per download): the size, time and MD5 the
//!   scan listed. A fetch that failed (the file changed or vanished after the listing, a
//!   network error) is forgotten and `Open` downloads the file itself, exactly as without
//!   read-ahead, except that a fatal error (refused credentials, an unreachable endpoint) is
//!   `Open`'s error at once; content fetched ahead is the version the scan listed, which is
//!   what the record sent to plakar describes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::TryStreamExt;
use kloset_plugin::Result;
use koofr_core::{Client, KoofrPath};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::index::Listed;

/// Files announced by the scan and not yet opened or passed that are remembered in scan order.
/// plakar keeps at most a few thousand records between the scan and its `Open`s; a file beyond
/// this is simply never fetched ahead.
const MAX_UPCOMING: usize = 4096;

/// How many files may be fetched ahead per simultaneous fetch (finished or not).
pub const MAX_AHEAD_PER_SLOT: usize = 8;

/// The read-ahead limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAheadLimits {
    /// Bytes of file content that may be held ahead of `Open`; 0 turns read-ahead off.
    pub budget: u64,
    /// Largest file fetched ahead; larger files are streamed when opened.
    pub max_file: u64,
}

/// The read-ahead of one importer; shared by the scan (which announces files) and `Open`.
#[derive(Debug)]
pub struct ReadAhead {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    client: Client,
    limits: ReadAheadLimits,
    /// Files fetched ahead at most at once.
    slots: Arc<Semaphore>,
    /// Files that may be fetched ahead, finished or not.
    max_ahead: usize,
    /// How far from the highest file opened an `Open` still counts as "next to it": plakar's
    /// concurrency (its workers take records in order, but finish in any order).
    tolerance: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Announced files not yet opened, in scan order (ascending `seq`).
    upcoming: VecDeque<Upcoming>,
    next_seq: u64,
    /// The highest `seq` opened.
    cursor: Option<u64>,
    /// `Open`s in a row next to the cursor.
    streak: u32,
    /// Fetches by `seq`.
    fetches: BTreeMap<u64, Fetch>,
    /// Bytes reserved by `fetches` and by the content they gave to `Open`s still being read.
    reserved: u64,
}

#[derive(Debug)]
struct Upcoming {
    seq: u64,
    pathname: Arc<str>,
    listed: Listed,
}

/// One file being (or already) fetched ahead; dropping it cancels the download.
#[derive(Debug)]
struct Fetch {
    size: u64,
    task: JoinHandle<Result<Vec<Bytes>>>,
}

impl Drop for Fetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A file read ahead, taken by its `Open`; its bytes stay reserved until it is dropped.
#[derive(Debug)]
pub struct Prefetched {
    fetch: Fetch,
    reservation: Reservation,
}

/// Bytes of the budget held by content served to an `Open`; released (and the next fetches
/// started) when dropped.
#[derive(Debug)]
pub struct Reservation {
    shared: Arc<Shared>,
    size: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.reserved = state.reserved.saturating_sub(self.size);
        self.shared.top_up(&mut state);
    }
}

impl ReadAhead {
    /// A read-ahead on `client`, fetching up to `client.concurrency()` files at once;
    /// `plakar_concurrency` is plakar's `-concurrency` (the `Init` options' hint).
    pub fn new(client: Client, limits: ReadAheadLimits, plakar_concurrency: i64) -> ReadAhead {
        let slots = client.config().concurrency().max(1);
        ReadAhead {
            shared: Arc::new(Shared {
                client,
                limits,
                slots: Arc::new(Semaphore::new(slots)),
                max_ahead: slots * MAX_AHEAD_PER_SLOT,
                tolerance: u64::try_from(plakar_concurrency.max(1)).unwrap_or(1),
                state: Mutex::default(),
            }),
        }
    }

    /// Whether read-ahead is on.
    pub fn enabled(&self) -> bool {
        self.shared.limits.budget > 0
    }

    /// Forgets everything and cancels every fetch (a new scan starts); content already served
    /// keeps its reservation until it is consumed.
    pub fn reset(&self) {
        let mut state = self.shared.lock();
        let fetches = std::mem::take(&mut state.fetches);
        let cancelled: u64 = fetches.values().map(|f| f.size).sum();
        let reserved = state.reserved.saturating_sub(cancelled);
        *state = State {
            reserved,
            ..State::default()
        };
        drop(state);
        drop(fetches);
    }

    /// The scan sent the record of a file with content.
    pub fn announce(&self, pathname: &str, listed: Listed) {
        if !self.enabled() {
            return;
        }
        let mut state = self.shared.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        tracing::trace!(pathname, seq, "koofr: announced");
        if state.upcoming.len() == MAX_UPCOMING
            && let Some(oldest) = state.upcoming.pop_front()
        {
            state.cancel(oldest.seq);
        }
        state.upcoming.push_back(Upcoming {
            seq,
            pathname: pathname.into(),
            listed,
        });
        // A file announced while plakar is opening files in order may be one to fetch now.
        self.shared.top_up(&mut state);
    }

    /// plakar opens `pathname`: its fetch, if it was read ahead (`None`: download it as
    /// usual). Updates the speculation and starts the next fetches.
    pub fn open(&self, pathname: &str) -> Option<Prefetched> {
        if !self.enabled() {
            return None;
        }
        let mut state = self.shared.lock();
        let taken = state.opened(pathname, self.shared.tolerance);
        self.shared.top_up(&mut state);
        drop(state);
        taken.map(|fetch| Prefetched {
            reservation: Reservation {
                shared: self.shared.clone(),
                size: fetch.size,
            },
            fetch,
        })
    }

    /// Files fetched ahead and not yet opened, and the bytes reserved by them and by content
    /// served but not yet consumed (for tests).
    pub fn held(&self) -> (usize, u64) {
        let state = self.shared.lock();
        (state.fetches.len(), state.reserved)
    }
}

impl Prefetched {
    /// The verified content and its reservation (to drop once the content is consumed), or
    /// `None` if the fetch failed (the caller then downloads the file itself, which reports the
    /// failure as `Open` always did). A fatal error (refused credentials, an unreachable
    /// endpoint) is returned as it is: another download would only fail the same way.
    pub async fn content(mut self) -> Result<Option<(Vec<Bytes>, Reservation)>> {
        match (&mut self.fetch.task).await {
            Ok(Ok(content)) => Ok(Some((content, self.reservation))),
            Ok(Err(e)) if e.is_fatal() => Err(e),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "koofr: a read-ahead fetch failed; downloading again");
                Ok(None)
            }
            Err(_) => Ok(None),
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts fetches for the files just after the cursor, as far as the streak, the budget and
    /// the size limit allow.
    fn top_up(self: &Arc<Self>, state: &mut State) {
        let Some(cursor) = state.cursor else { return };
        if state.streak == 0 {
            return;
        }
        let depth = (1usize << state.streak.min(16)).min(self.max_ahead) as u64;
        let mut start = Vec::new();
        let mut reserved = state.reserved;
        for upcoming in &state.upcoming {
            if upcoming.seq <= cursor || state.fetches.contains_key(&upcoming.seq) {
                continue;
            }
            if upcoming.seq > cursor + depth || state.fetches.len() + start.len() >= self.max_ahead
            {
                break;
            }
            if upcoming.listed.size > self.limits.max_file {
                continue;
            }
            if reserved + upcoming.listed.size > self.limits.budget {
                break;
            }
            reserved += upcoming.listed.size;
            start.push((upcoming.seq, upcoming.pathname.clone(), upcoming.listed));
        }
        for (seq, pathname, listed) in start {
            let Some(path) = KoofrPath::parse(&pathname)
                .ok()
                .filter(|p| p.as_str() == &*pathname)
            else {
                continue;
            };
            let client = self.client.clone();
            let slots = self.slots.clone();
            let task = tokio::spawn(async move {
                let _slot = slots.acquire_owned().await;
                tracing::debug!(pathname = %path, "koofr: reading ahead");
                let content = crate::importer::open_listed(client, path, listed).await?;
                content.try_collect::<Vec<Bytes>>().await
            });
            state.reserved += listed.size;
            state.fetches.insert(
                seq,
                Fetch {
                    size: listed.size,
                    task,
                },
            );
        }
    }
}

impl State {
    /// Records the `Open` of `pathname` and takes its fetch, if any (its bytes stay reserved).
    fn opened(&mut self, pathname: &str, tolerance: u64) -> Option<Fetch> {
        let Some(index) = self.upcoming.iter().position(|u| &*u.pathname == pathname) else {
            // Not announced (or forgotten): nothing to learn from it.
            self.streak = 0;
            return None;
        };
        let opened = self.upcoming.remove(index)?;
        let near = self
            .cursor
            .is_some_and(|c| opened.seq + tolerance >= c && opened.seq <= c + tolerance);
        self.streak = if near { self.streak + 1 } else { 0 };
        let cursor = self.cursor.map_or(opened.seq, |c| c.max(opened.seq));
        self.cursor = Some(cursor);
        let taken = self.take(opened.seq);
        // Files left more than `tolerance` behind were skipped: forget them.
        while let Some(front) = self.upcoming.front()
            && front.seq + tolerance < cursor
        {
            let seq = front.seq;
            self.upcoming.pop_front();
            self.cancel(seq);
        }
        if !near {
            // plakar jumped: every fetch behind the file it opened was wasted.
            let behind: Vec<u64> = self.fetches.range(..opened.seq).map(|(s, _)| *s).collect();
            for seq in behind {
                self.cancel(seq);
            }
        }
        taken
    }

    fn take(&mut self, seq: u64) -> Option<Fetch> {
        self.fetches.remove(&seq)
    }

    fn cancel(&mut self, seq: u64) {
        if let Some(fetch) = self.fetches.remove(&seq) {
            self.reserved -= fetch.size;
            tracing::debug!(seq, "koofr: dropping a file read ahead but not opened");
        }
    }
}
