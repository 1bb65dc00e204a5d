//! A count that callers share, made again only as often as its own cost allows.
//!
//! Counting jobs per status scans every job kept, so its cost grows with the history
//! (`retention`): 175 ms for a million jobs on PostgreSQL here. `GET /api/v1/queue` and
//! `/metrics` answer with it, and whoever polls them (a dashboard, a script, Prometheus, a
//! benchmark asking whether a drain is over) made the database scan the table at their rate,
//! competing with the queue: a poll every 20 ms cost a 10,000-job PostgreSQL drain about 15% of
//! its speed. Here one count runs at a time per node, and its answer is reused while it is
//! younger than [`REUSE_FACTOR`] times what it took to make, at most [`MOST_REUSE`]: however
//! often callers ask, counting takes at most about a tenth of the database's time, and a count
//! that takes 2 ms is at most 20 ms old.

use std::future::Future;
use std::time::{Duration, Instant};

/// How many times its own cost a count is reused for.
pub const REUSE_FACTOR: u32 = 10;
/// Longest a count is reused, however long it took.
pub const MOST_REUSE: Duration = Duration::from_secs(5);

/// The last count, shared by every caller.
pub(crate) struct SharedCount<T> {
    last: tokio::sync::Mutex<Option<Counted<T>>>,
}

struct Counted<T> {
    /// When the count started.
    at: Instant,
    took: Duration,
    value: T,
}

impl<T> Default for SharedCount<T> {
    fn default() -> Self {
        SharedCount { last: tokio::sync::Mutex::new(None) }
    }
}

impl<T: Clone> SharedCount<T> {
    /// The last count while it is fresh enough (see the module), else a new one made with
    /// `count`. A caller that comes while a count runs waits for it and shares it. A failed count
    /// is not kept. `clock` is the time (injected by tests).
    pub(crate) async fn get<E, F>(
        &self,
        clock: impl Fn() -> Instant,
        count: impl FnOnce() -> F,
    ) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let mut last = self.last.lock().await;
        let now = clock();
        if let Some(counted) =
            last.as_ref().filter(|counted| now.saturating_duration_since(counted.at) < reuse(counted.took))
        {
            return Ok(counted.value.clone());
        }
        let value = count().await?;
        let took = clock().saturating_duration_since(now);
        *last = Some(Counted { at: now, took, value: value.clone() });
        Ok(value)
    }
}

/// How long a count that took `took` is reused.
fn reuse(took: Duration) -> Duration {
    took.saturating_mul(REUSE_FACTOR).min(MOST_REUSE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A clock tests move by hand, and a count that takes `took` on it.
    #[derive(Clone)]
    struct Fixture {
        now: Arc<Mutex<Instant>>,
        counts: Arc<AtomicUsize>,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture { now: Arc::new(Mutex::new(Instant::now())), counts: Arc::new(AtomicUsize::new(0)) }
        }

        fn clock(&self) -> impl Fn() -> Instant + use<> {
            let now = Arc::clone(&self.now);
            move || *now.lock().unwrap()
        }

        fn advance(&self, by: Duration) {
            *self.now.lock().unwrap() += by;
        }

        /// A count that takes `took` and answers how many counts were made.
        fn count(&self, took: Duration) -> impl Future<Output = Result<usize, String>> + use<> {
            let (fixture, made) = (self.clone(), self.counts.fetch_add(1, Ordering::SeqCst) + 1);
            async move {
                tokio::task::yield_now().await;
                fixture.advance(took);
                Ok(made)
            }
        }
    }

    #[tokio::test]
    async fn a_count_is_reused_for_ten_times_its_cost_then_made_again() {
        let (shared, fixture) = (SharedCount::default(), Fixture::new());
        let ms = Duration::from_millis;
        assert_eq!(shared.get(fixture.clock(), || fixture.count(ms(2))).await, Ok(1));
        fixture.advance(ms(15));
        assert_eq!(shared.get(fixture.clock(), || fixture.count(ms(2))).await, Ok(1), "17 ms old: reused");
        fixture.advance(ms(4));
        assert_eq!(
            shared.get(fixture.clock(), || fixture.count(ms(2))).await,
            Ok(2),
            "21 ms old: counted again"
        );
    }

    #[tokio::test]
    async fn a_slow_count_is_reused_for_at_most_five_seconds() {
        let (shared, fixture) = (SharedCount::default(), Fixture::new());
        assert_eq!(shared.get(fixture.clock(), || fixture.count(Duration::from_secs(2))).await, Ok(1));
        fixture.advance(Duration::from_millis(2_900));
        assert_eq!(shared.get(fixture.clock(), || fixture.count(Duration::ZERO)).await, Ok(1), "4.9 s old");
        fixture.advance(Duration::from_millis(200));
        assert_eq!(shared.get(fixture.clock(), || fixture.count(Duration::ZERO)).await, Ok(2), "5.1 s old");
    }

    #[tokio::test]
    async fn a_failed_count_is_not_kept() {
        let (shared, fixture) = (SharedCount::<usize>::default(), Fixture::new());
        let failed = shared.get(fixture.clock(), || async { Err("the database is down".to_owned()) }).await;
        assert_eq!(failed, Err("the database is down".to_owned()));
        assert_eq!(shared.get(fixture.clock(), || fixture.count(Duration::from_millis(1))).await, Ok(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_that_come_while_a_count_runs_share_it() {
        let (shared, fixture) = (Arc::new(SharedCount::default()), Fixture::new());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let (shared, fixture) = (Arc::clone(&shared), fixture.clone());
            tokio::spawn(async move {
                shared
                    .get(fixture.clock(), || async move {
                        released.await.map_err(|e| e.to_string())?;
                        fixture.count(Duration::from_millis(3)).await
                    })
                    .await
            })
        };
        // The second caller comes while the first count waits to be released.
        while shared.last.try_lock().is_ok() {
            tokio::task::yield_now().await;
        }
        let second = {
            let (shared, fixture) = (Arc::clone(&shared), fixture.clone());
            tokio::spawn(async move { shared.get(fixture.clock(), || fixture.count(Duration::ZERO)).await })
        };
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        assert_eq!(second.await.unwrap(), Ok(1), "the second caller shared the first count");
        assert_eq!(fixture.counts.load(Ordering::SeqCst), 1);
    }
}
