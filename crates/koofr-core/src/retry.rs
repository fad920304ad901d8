//! Retry policy and loop: exponential backoff with full jitter, `Retry-After` honoured (capped),
//! bounded attempts and total time; errors become permanent once retries run out.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::error::Result;

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

/// Runs `attempt_fn(attempt)` until it succeeds, fails permanently, or the policy runs out.
/// `retryable = false` makes a single attempt (non-replayable or unsafe requests).
pub(crate) async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    retryable: bool,
    mut attempt_fn: F,
) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut attempt = 1u32;
    loop {
        match attempt_fn(attempt).await {
            Ok(value) => return Ok(value),
            Err(err) => {
                if !err.is_temporary() {
                    return Err(if attempt > 1 {
                        err.exhausted(attempt)
                    } else {
                        err
                    });
                }
                if !retryable {
                    // Not retried because it is unsafe here, not because retries ran out: the
                    // caller may still retry it in a way it knows to be safe.
                    return Err(err);
                }
                if attempt >= policy.max_attempts {
                    return Err(err.exhausted(attempt));
                }
                let wait = policy.delay(attempt, err.retry_after());
                if started.elapsed() + wait > policy.max_elapsed {
                    return Err(err.exhausted(attempt));
                }
                tracing::debug!(error = %err, attempt, wait_ms = wait.as_millis() as u64, "koofr: retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
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

    #[tokio::test]
    async fn retries_temporary_errors_then_gives_up_permanently() {
        let calls = AtomicU32::new(0);
        let err = retry(&RetryPolicy::fast_for_tests(3), true, |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::new(ErrorKind::Server, true, "info", "boom"))
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(err.attempts(), 3);
        assert!(!err.is_temporary());

        calls.store(0, Ordering::SeqCst);
        let err = retry(&RetryPolicy::fast_for_tests(3), true, |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::permanent(ErrorKind::NotFound, "info", "missing"))
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(err.kind(), ErrorKind::NotFound);

        calls.store(0, Ordering::SeqCst);
        let err = retry(&RetryPolicy::fast_for_tests(3), false, |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::new(ErrorKind::Server, true, "upload", "boom"))
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Not retried because unsafe, not because retries ran out: still temporary.
        assert!(err.is_temporary());
    }
}
