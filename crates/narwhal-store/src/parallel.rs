//! The one worker pool: scoped threads taking items in order, for every job that runs the same
//! call over many paths (closure walks, fetches, cache lookups, uploads, scans).
//!
//! Items are taken in slice order (callers sort the most important first: fetch and push put the
//! largest paths first), at most `jobs` at once. A failure stops the pool from starting more items;
//! those in flight finish. Results come back in item order, whichever thread ran them, and
//! only for items that ran, so a caller can tell the first error in its own order. [`join`] runs
//! two different calls side by side.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Runs `f(index, item)` for the items of `items` on up to `jobs` threads (at least one).
/// Once `f` fails, or `stop` is set (by the caller, from anywhere), no further item starts.
/// Returns `(index, result)` for every item that ran, in index order.
pub fn run<T: Sync, R: Send, E: Send>(
    items: &[T],
    jobs: usize,
    stop: &AtomicBool,
    f: impl Fn(usize, &T) -> Result<R, E> + Sync,
) -> Vec<(usize, Result<R, E>)> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<R, E>)>> = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(i, item);
                    if r.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    // A poisoned lock only means another worker panicked; its panic ends the scope.
                    results.lock().unwrap_or_else(PoisonError::into_inner).push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(PoisonError::into_inner);
    results.sort_unstable_by_key(|(i, _)| *i);
    results
}

/// [`run`] for calls that must all succeed: every result in item order, or the first error (in
/// item order among those that ran).
pub fn try_map<T: Sync, R: Send, E: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let stop = AtomicBool::new(false);
    run(items, jobs, &stop, |_, item| f(item)).into_iter().map(|(_, r)| r).collect()
}

/// Runs `a` on a thread of its own while `b` runs on this one, for two different jobs over the
/// same files; both results. A panic in `a` goes on in the caller, as one in `b` does.
pub fn join<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|scope| {
        let first = scope.spawn(a);
        let second = b();
        (first.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), second)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_item_order_and_a_failure_stops_new_items() {
        let items: Vec<u32> = (0..200).collect();
        let doubled = try_map(&items, 4, |x| Ok::<_, ()>(x * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|x| x * 2).collect::<Vec<_>>());

        let started = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let ran = run(&items, 1, &stop, |i, _| {
            started.fetch_add(1, Ordering::Relaxed);
            if i == 10 {
                Err(i)
            } else {
                Ok(i)
            }
        });
        // One worker: items 0 to 10 ran, then nothing more started.
        assert_eq!(started.load(Ordering::Relaxed), 11);
        assert_eq!(ran.last().map(|(i, r)| (*i, r.is_err())), Some((10, true)));
        assert_eq!(try_map(&items, 3, |x| if *x == 7 { Err(*x) } else { Ok(*x) }), Err(7));
        assert_eq!(try_map(&[] as &[u32], 3, |x| Ok::<_, ()>(*x)), Ok(vec![]));
    }

    #[test]
    fn join_runs_both_at_once_and_a_panic_goes_on_in_the_caller() {
        // Each side waits for the other to have started: this ends only if they overlap.
        let (a_started, b_started) = (AtomicBool::new(false), AtomicBool::new(false));
        let wait_for = |flag: &AtomicBool| {
            for _ in 0..10_000 {
                if flag.load(Ordering::SeqCst) {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            false
        };
        let (a, b) = join(
            || {
                a_started.store(true, Ordering::SeqCst);
                wait_for(&b_started).then_some("a")
            },
            || {
                b_started.store(true, Ordering::SeqCst);
                wait_for(&a_started).then_some(2)
            },
        );
        assert_eq!((a, b), (Some("a"), Some(2)));
        let caught = std::panic::catch_unwind(|| join(|| panic!("in a"), || 1));
        assert_eq!(caught.err().and_then(|p| p.downcast_ref::<&str>().copied()), Some("in a"));
    }
}
