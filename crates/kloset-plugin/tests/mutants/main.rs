//! The suites proven able to fail: mutant connectors wrap the reference ones and each breaks
//! exactly one behaviour; every mutant must fail the suite case guarding that behaviour, and the
//! faithful wrapper (no mutation) must pass every case, so the wrapping is not what fails.
//!
//! The mutants run in process (`Transport::Direct`): the suite sees the connector's own
//! output, not what the serve layer makes of it. One module per role; the checks and the
//! stream mutations they share are here.

mod exporter;
mod importer;
mod store;

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use kloset_plugin::suites::SuiteReport;
use kloset_plugin::{ByteStream, ConnectorError, ConnectorErrorKind, Result};

// ---------------------------------------------------------------- checking

/// A mutation of one role's connector, and the suite cases that must catch it.
trait Mutant: Copy + Debug + Send + Sync + 'static {
    /// Every mutant of the role.
    const ALL: &'static [Self];
    /// Names of the suite cases that must fail on this mutant.
    fn caught_by(self) -> &'static [&'static str];
}

/// Runs `suite` on every mutant at once (each on its own fresh fixture).
async fn run_each<M, F, Fut>(suite: F) -> Vec<(M, SuiteReport)>
where
    M: Mutant,
    F: Fn(M) -> Fut,
    Fut: Future<Output = SuiteReport> + Send + 'static,
{
    let runs: Vec<_> = M::ALL
        .iter()
        .map(|&m| (m, tokio::spawn(suite(m))))
        .collect();
    let mut reports = Vec::new();
    for (m, run) in runs {
        reports.push((m, run.await.expect("suite task")));
    }
    reports
}

/// Asserts that every mutant failed each case it names (cases that exist), and that the first
/// case to fail is one of them: later cases share the backend and may fail on what an
/// interrupted case left behind. Prints what each mutant failed, in case order.
fn assert_each_caught<M: Mutant>(cases: &[&'static str], reports: &[(M, SuiteReport)]) {
    let mut problems = Vec::new();
    for (mutant, report) in reports {
        let failed: Vec<&str> = report.failures().map(|o| o.name).collect();
        eprintln!("{mutant:?} fails {failed:?}");
        for case in mutant.caught_by() {
            if !cases.contains(case) {
                problems.push(format!(
                    "{mutant:?}: the {} suite has no case {case:?}",
                    report.suite
                ));
            } else if !failed.contains(case) {
                problems.push(format!(
                    "{mutant:?} is not caught by {case:?}; the report was:\n{report}"
                ));
            }
        }
        if let Some(first) = failed.first().filter(|f| !mutant.caught_by().contains(f)) {
            problems.push(format!(
                "{mutant:?} first fails {first:?}, not a case it is known to break; the report \
                 was:\n{report}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The connectors a wrapping fixture handed out, each with the wrapped one to release.
struct Handed<T: ?Sized>(Mutex<Vec<(Arc<T>, Arc<T>)>>);

impl<T: ?Sized> Default for Handed<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T: ?Sized> Handed<T> {
    fn keep(&self, outer: Arc<T>, inner: Arc<T>) -> Arc<T> {
        self.0.lock().unwrap().push((outer.clone(), inner));
        outer
    }

    fn take(&self, outer: &Arc<T>) -> Result<Arc<T>> {
        let mut handed = self.0.lock().unwrap();
        let at = handed
            .iter()
            .position(|(o, _)| Arc::ptr_eq(o, outer))
            .ok_or_else(|| ConnectorError::other("release of a connector not handed out here"))?;
        Ok(handed.swap_remove(at).1)
    }
}

// ---------------------------------------------------------------- stream mutations

/// The stream without its very last byte.
fn drop_last_byte(data: ByteStream) -> ByteStream {
    // Hold one chunk back; at the end, send it one byte short.
    futures::stream::unfold(
        (data, None::<Bytes>, false),
        |(mut data, mut held, done)| async move {
            if done {
                return None;
            }
            loop {
                match data.next().await {
                    Some(Ok(chunk)) if chunk.is_empty() => {}
                    Some(Ok(chunk)) => {
                        if let Some(previous) = held.replace(chunk) {
                            return Some((Ok(previous), (data, held, false)));
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), (data, None, true))),
                    None => {
                        let last = held?;
                        let short = last.slice(..last.len() - 1);
                        return Some((Ok(short), (data, None, true)));
                    }
                }
            }
        },
    )
    .boxed()
}

/// The stream with the lowest bit of its first byte flipped.
fn flip_first_byte(data: ByteStream) -> ByteStream {
    let mut flipped = false;
    data.map(move |chunk| {
        chunk.map(|chunk| {
            if flipped || chunk.is_empty() {
                return chunk;
            }
            flipped = true;
            let mut bytes = chunk.to_vec();
            bytes[0] ^= 1;
            Bytes::from(bytes)
        })
    })
    .boxed()
}

/// Everything the stream yields before it ends or breaks (test data, a few MiB), and the break.
async fn until_break(mut data: ByteStream) -> (Bytes, Option<ConnectorError>) {
    let mut good = BytesMut::new();
    while let Some(chunk) = data.next().await {
        match chunk {
            Ok(chunk) => good.extend_from_slice(&chunk),
            Err(e) => return (good.freeze(), Some(e)),
        }
    }
    (good.freeze(), None)
}

/// The stream's first `limit` bytes, then empty chunks until it ends.
fn cut_after(data: ByteStream, limit: u64) -> ByteStream {
    let mut left = limit;
    data.map(move |chunk| {
        chunk.map(|chunk| {
            let keep = left.min(chunk.len() as u64);
            left -= keep;
            chunk.slice(..keep as usize)
        })
    })
    .boxed()
}

fn one_chunk(bytes: Bytes) -> ByteStream {
    futures::stream::once(async move { Ok(bytes) }).boxed()
}

/// Adds the length of every chunk that passes to `seen`.
fn counted(data: ByteStream, seen: Arc<AtomicU64>) -> ByteStream {
    data.inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            seen.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    })
    .boxed()
}

/// The same error, of another kind.
fn rekind(err: &ConnectorError, kind: ConnectorErrorKind) -> ConnectorError {
    ConnectorError::new(kind, err.message())
}
