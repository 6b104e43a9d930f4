//! A stingy, rate-limited workqueue keyed by arbitrary values (client-go's
//! `util/workqueue`): a key waiting in the queue is stored once however often it is added,
//! a key being processed is never handed to a second worker, and a key added while it is
//! processed is queued again when the worker calls [`WorkQueue::done`]. Failures requeue
//! with per-key exponential backoff. Used by controllers whose keys are not objects in a
//! typed cache (the garbage collector's uids; service keys that must be synced after the
//! Service is gone).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// First retry delay after a failure (client-go's default controller rate limiter).
pub const BASE_DELAY: Duration = Duration::from_millis(5);
/// Longest retry delay.
pub const MAX_DELAY: Duration = Duration::from_secs(1000);

struct State<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    failures: HashMap<K, u32>,
}

/// The queue; share it as `Arc<WorkQueue<K>>`.
pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
    base: Duration,
    max: Duration,
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> WorkQueue<K> {
    /// A queue with client-go's default backoff (5ms doubling up to 1000s).
    pub fn new() -> Arc<Self> {
        Self::with_backoff(BASE_DELAY, MAX_DELAY)
    }

    /// A queue whose failed keys come back after `base * 2^failures`, at most `max`.
    pub fn with_backoff(base: Duration, max: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            }),
            notify: Notify::new(),
            base,
            max,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `key` unless it already waits; a key being processed is queued again once done.
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if !s.dirty.insert(key.clone()) {
            return;
        }
        if s.processing.contains(&key) {
            return;
        }
        s.queue.push_back(key);
        drop(s);
        self.notify.notify_one();
    }

    /// Queues `key` after `delay`.
    pub fn add_after(self: &Arc<Self>, key: K, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let q = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(q) = q.upgrade() {
                q.add(key);
            }
        });
    }

    /// Queues `key` after its backoff, which doubles with every call until [`forget`](Self::forget).
    pub fn add_rate_limited(self: &Arc<Self>, key: K) {
        let delay = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            let exp = (*n).min(30);
            *n += 1;
            self.base.checked_mul(1u32 << exp).unwrap_or(self.max).min(self.max)
        };
        self.add_after(key, delay);
    }

    /// Clears the failure count of `key` (it succeeded, or was given up on).
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// How many times `key` was requeued after a failure since it was last forgotten.
    pub fn num_requeues(&self, key: &K) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Keys waiting (not counting those being processed).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no key waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn try_pop(&self) -> Option<K> {
        let mut s = self.lock();
        let key = s.queue.pop_front()?;
        s.dirty.remove(&key);
        s.processing.insert(key.clone());
        let more = !s.queue.is_empty();
        drop(s);
        if more {
            self.notify.notify_one();
        }
        Some(key)
    }

    /// Waits for the next key and marks it as being processed; call [`done`](Self::done) after.
    pub async fn get(&self) -> K {
        loop {
            let notified = self.notify.notified();
            if let Some(k) = self.try_pop() {
                return k;
            }
            notified.await;
        }
    }

    /// Ends processing of `key`; if it was added meanwhile it is queued again.
    pub fn done(&self, key: &K) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.clone());
            drop(s);
            self.notify.notify_one();
        }
    }
}

/// What a worker does with a key after processing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: clear its backoff.
    Forget,
    /// Failed: come back after the key's backoff.
    Requeue,
    /// Come back after this long, with no backoff growth.
    RequeueAfter(Duration),
}

/// Runs `workers` concurrent workers over `queue`, forever. Each key is handed to `sync`,
/// whose outcome decides whether it comes back.
pub async fn run_workers<K, F, Fut>(queue: Arc<WorkQueue<K>>, workers: usize, sync: F)
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    F: Fn(K) -> Fut + Clone,
    Fut: Future<Output = Outcome>,
{
    let loops = (0..workers.max(1)).map(|_| {
        let queue = queue.clone();
        let sync = sync.clone();
        async move {
            loop {
                let key = queue.get().await;
                let outcome = sync(key.clone()).await;
                queue.done(&key);
                match outcome {
                    Outcome::Forget => queue.forget(&key),
                    Outcome::Requeue => queue.add_rate_limited(key),
                    Outcome::RequeueAfter(d) => {
                        queue.forget(&key);
                        queue.add_after(key, d);
                    }
                }
            }
        }
    });
    futures::future::join_all(loops).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_added_twice_while_waiting_is_processed_once() {
        let q = WorkQueue::<String>::new();
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await, "a");
        assert_eq!(q.get().await, "b");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_added_while_processing_waits_until_done() {
        let q = WorkQueue::<String>::new();
        q.add("a".into());
        let k = q.get().await;
        q.add("a".into());
        assert!(q.is_empty(), "a key being processed is not handed out twice");
        q.done(&k);
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, "a");
    }

    #[tokio::test]
    async fn failures_back_off_exponentially_until_forgotten() {
        let q = WorkQueue::<String>::with_backoff(Duration::from_millis(20), Duration::from_millis(60));
        for _ in 0..4 {
            q.add_rate_limited("a".into());
        }
        assert_eq!(q.num_requeues(&"a".to_string()), 4);
        q.forget(&"a".to_string());
        assert_eq!(q.num_requeues(&"a".to_string()), 0);
        let q = WorkQueue::<String>::with_backoff(Duration::from_millis(20), Duration::from_millis(60));
        let start = tokio::time::Instant::now();
        q.add_rate_limited("b".into());
        assert_eq!(q.get().await, "b");
        let first = start.elapsed();
        assert!(first >= Duration::from_millis(20) && first < Duration::from_millis(40), "{first:?}");
        q.done(&"b".to_string());
        q.add_rate_limited("b".into());
        assert_eq!(q.get().await, "b");
        assert!(
            start.elapsed() - first >= Duration::from_millis(40),
            "the second failure waits twice as long"
        );
    }
}
