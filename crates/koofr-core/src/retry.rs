//! Retry policy and the one retry state of an operation: exponential backoff with full jitter,
//! `Retry-After` honoured (capped), bounded attempts and time without progress, a short budget
//! for an unreachable endpoint; errors become permanent once retries run out.
//!
//! The loop is hand-written rather than built on `backon`: the state must outlive one call (a
//! resumed download or listing continues its count), a connection failure gets a smaller
//! budget than a server error, and a retry may need the operation-wide attempt number (to
//! recognise an answer lost by an earlier attempt). That is a small struct here, where with
//! `backon` it would be the same struct around a backoff iterator.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::error::{Error, ErrorKind, Result};

/// How failed requests are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Maximum attempts per operation, including the first (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time (with full jitter).
    pub base_delay: Duration,
    /// Upper bound of one backoff.
    pub max_delay: Duration,
    /// No new attempt starts once this much time has passed since the first.
    pub max_elapsed: Duration,
    /// Upper bound applied to a server's `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(180),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy with the given number of attempts and otherwise default values.
    pub fn with_attempts(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            ..RetryPolicy::default()
        }
    }

    /// Millisecond backoffs for tests (base 1 ms, at most 20 ms; `Retry-After` capped at 2 s).
    pub fn fast_for_tests(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
            max_elapsed: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(2),
        }
    }

    /// Sets the cap on `Retry-After`.
    pub fn with_max_retry_after(mut self, cap: Duration) -> RetryPolicy {
        self.max_retry_after = cap;
        self
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 1).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(server_wait) = retry_after {
            return server_wait.min(self.max_retry_after);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let ceiling = exp.min(self.max_delay);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        // Full jitter, but never less than half the base, so bursts still spread out.
        let floor = u64::try_from(self.base_delay.as_nanos() / 2)
            .unwrap_or(0)
            .min(nanos);
        Duration::from_nanos(rand::rng().random_range(floor..=nanos))
    }
}

/// At most this many attempts when the endpoint cannot be reached (refused, unresolved, TLS).
pub const UNREACHABLE_ATTEMPTS: u32 = 3;
/// No new attempt starts after this long once the endpoint could not be reached.
pub const UNREACHABLE_ELAPSED: Duration = Duration::from_secs(5);

/// The retry state of ONE operation: how many requests it has sent and how long it has gone
/// without progress. It travels with the operation through its resumes (a broken download or
/// listing opens the request again with the same state), so the policy bounds the whole
/// operation: `max_attempts` counts every request it sends, and `max_elapsed` bounds each
/// stretch without progress (a transfer that keeps delivering data is never cut by time).
#[derive(Debug, Clone)]
pub struct Retry {
    policy: RetryPolicy,
    /// Requests started so far.
    attempts: u32,
    /// The start of the operation, or its last progress.
    since: Instant,
}

impl Retry {
    /// A fresh state under `policy`.
    pub fn new(policy: &RetryPolicy) -> Retry {
        Retry {
            policy: policy.clone(),
            attempts: 0,
            since: Instant::now(),
        }
    }

    /// Requests started so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The operation made progress (data or entries arrived): the time limit starts over.
    pub fn progressed(&mut self) {
        self.since = Instant::now();
    }

    /// Decides what follows the failure `err` of the last request: `Ok` after the backoff when
    /// another attempt may run, else the final error. `retryable = false` never retries (an
    /// unsafe or non-replayable request); the error then stays as it was, so that a caller that
    /// knows a safe way to repeat the request may still do so.
    pub async fn failed(&mut self, err: Error, retryable: bool) -> Result<()> {
        let attempts = self.attempts.max(1);
        if !err.is_temporary() {
            return Err(if attempts > 1 {
                err.exhausted(attempts)
            } else {
                err
            });
        }
        if !retryable {
            return Err(err);
        }
        let (max_attempts, max_elapsed) = if err.kind() == ErrorKind::Unreachable {
            (
                self.policy.max_attempts.min(UNREACHABLE_ATTEMPTS),
                self.policy.max_elapsed.min(UNREACHABLE_ELAPSED),
            )
        } else {
            (self.policy.max_attempts, self.policy.max_elapsed)
        };
        if attempts >= max_attempts {
            return Err(err.exhausted(attempts));
        }
        let wait = self.policy.delay(attempts, err.retry_after());
        if self.since.elapsed() + wait > max_elapsed {
            return Err(err.exhausted(attempts));
        }
        tracing::debug!(error = %err, attempts, wait_ms = wait.as_millis() as u64, "koofr: retrying");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Runs `attempt_fn(attempt)` until it succeeds, fails permanently, or the policy runs out;
    /// `attempt` counts the operation's requests from 1, across resumes.
    pub async fn run<T, F, Fut>(&mut self, retryable: bool, mut attempt_fn: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        loop {
            self.attempts += 1;
            match attempt_fn(self.attempts).await {
                Ok(value) => return Ok(value),
                Err(err) => self.failed(err, retryable).await?,
            }
        }
    }
}

/// Parses `Retry-After` in its delay-seconds form (the HTTP-date form is rare and ignored).
pub(crate) fn parse_retry_after(value: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorKind};
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_grow_and_are_capped() {
        let policy = RetryPolicy::default();
        for attempt in 1..12 {
            let d = policy.delay(attempt, None);
            assert!(d <= policy.max_delay, "{d:?}");
            assert!(d >= policy.base_delay / 2, "{d:?}");
        }
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(500))),
            Duration::from_secs(30)
        );
    }

    async fn run(policy: RetryPolicy, retryable: bool, err: fn() -> Error) -> (u32, Error) {
        let calls = AtomicU32::new(0);
        let e = Retry::new(&policy)
            .run(retryable, |_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(err())
            })
            .await
            .unwrap_err();
        (calls.load(Ordering::SeqCst), e)
    }

    #[tokio::test]
    async fn retries_temporary_errors_then_gives_up_permanently() {
        let (calls, err) = run(RetryPolicy::fast_for_tests(3), true, || {
            Error::new(ErrorKind::Server, true, "info", "boom")
        })
        .await;
        assert_eq!(calls, 3);
        assert_eq!(err.attempts(), 3);
        assert!(!err.is_temporary());

        let (calls, err) = run(RetryPolicy::fast_for_tests(3), true, || {
            Error::permanent(ErrorKind::NotFound, "info", "missing")
        })
        .await;
        assert_eq!(calls, 1);
        assert_eq!(err.kind(), ErrorKind::NotFound);

        let (calls, err) = run(RetryPolicy::fast_for_tests(3), false, || {
            Error::new(ErrorKind::Server, true, "upload", "boom")
        })
        .await;
        assert_eq!(calls, 1);
        // Not retried because unsafe, not because retries ran out: still temporary.
        assert!(err.is_temporary());
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_gets_a_short_budget() {
        let (calls, err) = run(RetryPolicy::fast_for_tests(10), true, || {
            Error::new(ErrorKind::Unreachable, true, "info", "connection refused")
        })
        .await;
        assert_eq!(calls, UNREACHABLE_ATTEMPTS);
        assert_eq!(err.attempts(), UNREACHABLE_ATTEMPTS);
        let (calls, _) = run(RetryPolicy::fast_for_tests(2), true, || {
            Error::new(ErrorKind::Unreachable, true, "info", "connection refused")
        })
        .await;
        assert_eq!(calls, 2, "never more than the policy's own attempts");
    }

    #[tokio::test]
    async fn one_state_counts_the_requests_of_every_resume() {
        let mut retry = Retry::new(&RetryPolicy::fast_for_tests(3));
        retry.run(true, |_| async { Ok(()) }).await.unwrap();
        // The transfer breaks after the first request succeeded: two more requests at most.
        let broken = || Error::new(ErrorKind::Transport, true, "download", "broke off");
        retry
            .failed(broken(), true)
            .await
            .expect("second request allowed");
        let attempt = retry.run(true, |n| async move { Ok(n) }).await.unwrap();
        assert_eq!(attempt, 2, "the resume continues the count");
        retry
            .failed(broken(), true)
            .await
            .expect("third request allowed");
        retry.run(true, |_| async { Ok(()) }).await.unwrap();
        let err = retry.failed(broken(), true).await.unwrap_err();
        assert_eq!((retry.attempts(), err.attempts()), (3, 3));
    }
}
