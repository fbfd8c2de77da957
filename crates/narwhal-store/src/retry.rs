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

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The error will not go away: stop.
    Lasting,
    /// Try again after the backoff.
    Backoff,
    /// Try again after this wait (a server's `Retry-After`, at most [`MAX_WAIT`]).
    After(Duration),
}

/// The longest wait a server may ask for (`Retry-After`) before a retry.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

impl Retry {
    /// Runs `attempt` (given its number, from 1) until it succeeds, fails with an error that
    /// `transient` says will not go away, or the attempts are used up. Before each retry,
    /// `retrying(next attempt, error, delay)` is told why and how long until it.
    pub fn run<T, E>(
        self,
        transient: impl Fn(&E) -> bool,
        retrying: impl FnMut(u32, &E, Duration),
        attempt: impl FnMut(u32) -> Result<T, E>,
    ) -> Result<T, E> {
        self.run_waiting(|e| if transient(e) { Verdict::Backoff } else { Verdict::Lasting }, retrying, attempt)
    }

    /// [`Self::run`], where `verdict` may also say how long to wait before the next try (a
    /// server's `Retry-After`) instead of the backoff. The backoff doubles either way.
    pub fn run_waiting<T, E>(
        self,
        verdict: impl Fn(&E) -> Verdict,
        mut retrying: impl FnMut(u32, &E, Duration),
        mut attempt: impl FnMut(u32) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut delay = self.initial_backoff;
        let mut n = 0;
        loop {
            n += 1;
            match attempt(n) {
                Err(e) if n < self.attempts => {
                    let wait = match verdict(&e) {
                        Verdict::Lasting => return Err(e),
                        Verdict::Backoff => delay,
                        Verdict::After(asked) => asked.min(MAX_WAIT),
                    };
                    retrying(n + 1, &e, wait);
                    std::thread::sleep(wait);
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

    #[test]
    fn a_wait_the_server_asks_for_replaces_the_backoff() {
        let policy = Retry { attempts: 3, initial_backoff: Duration::from_millis(1) };
        let mut told = Vec::new();
        let asked = |e: &u32| match e {
            1 => Verdict::After(Duration::from_millis(5)),
            2 => Verdict::Backoff,
            _ => Verdict::Lasting,
        };
        let r: Result<(), u32> = policy.run_waiting(asked, |n, _, d| told.push((n, d)), Err);
        assert_eq!(r, Err(3));
        assert_eq!(told, vec![(2, Duration::from_millis(5)), (3, Duration::from_millis(2))]);
    }
}
