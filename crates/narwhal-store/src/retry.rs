//! The one retry loop: every request to a cache (HTTP GETs and PUTs, Hydra), every request to an
//! OCI registry (narwhal-image) and every whole-path fetch retries through [`Retry::run`], with the
//! caller's rule for which errors are transient. S3 requests are the exception: object_store retries
//! them inside its client (`RetryConfig`, set in [`crate::s3`] from the same `HttpOptions` attempts
//! and initial backoff), since only it sees a request's parts.

use std::time::Duration;

/// How often to try and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts, the first included.
    pub attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub initial_backoff: Duration,
}

impl Retry {
    /// Runs `attempt` (given its number, from 1) until it succeeds, fails with an error that
    /// `transient` says will not go away, or the attempts are used up. Before each retry,
    /// `retrying(next attempt, error, delay)` is told why and how long until it.
    pub fn run<T, E>(
        self,
        transient: impl Fn(&E) -> bool,
        mut retrying: impl FnMut(u32, &E, Duration),
        mut attempt: impl FnMut(u32) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut delay = self.initial_backoff;
        let mut n = 0;
        loop {
            n += 1;
            match attempt(n) {
                Err(e) if transient(&e) && n < self.attempts => {
                    retrying(n + 1, &e, delay);
                    std::thread::sleep(delay);
                    delay = delay.saturating_mul(2);
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_transient_errors_only_and_stops_after_the_attempts() {
        let policy = Retry { attempts: 3, initial_backoff: Duration::from_millis(1) };
        let mut told = Vec::new();
        let r: Result<(), u32> = policy.run(|e| *e < 10, |n, e, d| told.push((n, *e, d)), Err);
        assert_eq!(r, Err(3));
        assert_eq!(told, vec![(2, 1, Duration::from_millis(1)), (3, 2, Duration::from_millis(2))]);
        let mut calls = 0;
        let r: Result<(), u32> = policy.run(
            |e| *e < 10,
            |_, _, _| {},
            |_| {
                calls += 1;
                Err(10)
            },
        );
        assert_eq!((r, calls), (Err(10), 1), "a lasting error is not retried");
        assert_eq!(policy.run(|_: &u32| true, |_, _, _| {}, |n| if n == 2 { Ok(n) } else { Err(n) }), Ok(2));
    }
}
