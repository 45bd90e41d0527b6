//! Exponential backoff with full jitter, for transient failures only.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::error::Result;

/// How to retry.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay ceiling.
    pub initial: Duration,
    /// Largest delay ceiling.
    pub max: Duration,
    /// Give up once this much time has passed since the first attempt (`None`: never).
    pub give_up_after: Option<Duration>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            give_up_after: Some(Duration::from_secs(120)),
        }
    }
}

impl Backoff {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            give_up_after: Some(Duration::ZERO),
        }
    }

    /// The delay before retry number `attempt` (0-based): uniform in `[0, min(max, initial·2^n)]`
    /// ("full jitter"), so many devices coming back online do not retry in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        if ceiling.is_zero() {
            return ceiling;
        }
        rand::rng().random_range(Duration::ZERO..=ceiling)
    }

    /// Runs `op` until it succeeds, fails with a non-retryable error, or the time is up.
    ///
    /// # Errors
    /// The last error.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() => {
                    let wait = self.delay(attempt);
                    let out_of_time = self
                        .give_up_after
                        .is_some_and(|limit| start.elapsed() + wait > limit);
                    if out_of_time {
                        return Err(e);
                    }
                    tracing::info!(what, attempt, wait_ms = wait.as_millis() as u64, error = %e, "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn delays_grow_but_stay_under_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            give_up_after: None,
        };
        for attempt in 0..40 {
            let ceiling = Duration::from_millis(100 * (1u64 << attempt.min(20))).min(b.max);
            assert!(b.delay(attempt) <= ceiling);
        }
    }

    #[tokio::test]
    async fn an_auth_failure_is_not_retried() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let r: Result<()> = Backoff::default()
            .retry("test", || async {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(Error::Auth {
                    endpoint: "x".into(),
                    detail: "401".into(),
                })
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_until_it_passes() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let b = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(5),
            give_up_after: Some(Duration::from_secs(5)),
        };
        let r = b
            .retry("test", || async {
                if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3 {
                    Err(Error::Offline {
                        endpoint: "x".into(),
                        detail: "refused".into(),
                    })
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(r.ok(), Some(7));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
    }
}
