//! Exponential back-off per key, with client-go's `flowcontrol.Backoff` semantics, which
//! the kubelet uses for restarting crashed containers (CrashLoopBackOff) and for image
//! pulls (ImagePullBackOff): the first failure is retried at once, then after 10s, 20s,
//! 40s ... up to 5m; an entry whose last update is more than twice the maximum in the
//! past starts over (a container that ran for ten minutes is no longer crash-looping).

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// The kubelet's initial container and image back-off.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The kubelet's maximum container and image back-off (`MaxContainerBackOff`).
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: Timestamp,
}

/// Back-off state for many keys. Time is passed in, so callers use their injected clock.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(INITIAL, MAX)
    }
}

fn since(later: Timestamp, earlier: Timestamp) -> SignedDuration {
    later.duration_since(earlier)
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

impl Backoff {
    /// Back-off starting at `initial` and doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, entries: HashMap::new() }
    }

    /// Whether an entry last updated at `last_update` is stale at `event_time`: more
    /// than twice the maximum back-off passed in between.
    fn expired(&self, event_time: Timestamp, last_update: Timestamp) -> bool {
        since(event_time, last_update) > signed(self.max.saturating_mul(2))
    }

    /// The current back-off of `key` (zero when it has none).
    pub fn get(&self, key: &str) -> Duration {
        self.entries.get(key).map(|e| e.backoff).unwrap_or_default()
    }

    /// Records a failure of `key` that happened at `event_time`: a new or stale entry
    /// starts at the initial back-off, a live one doubles (up to the maximum). The
    /// entry's update time is `now`.
    pub fn next(&mut self, key: &str, event_time: Timestamp, now: Timestamp) {
        let backoff = match self.entries.get(key) {
            Some(e) if !self.expired(event_time, e.last_update) => e.backoff.saturating_mul(2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(key.to_owned(), Entry { backoff, last_update: now });
    }

    /// Whether `key` is still backing off from a failure at `event_time` (the container's
    /// finish time): less than its back-off has passed since then.
    pub fn is_in_backoff_since(&self, key: &str, event_time: Timestamp, now: Timestamp) -> bool {
        match self.entries.get(key) {
            Some(e) if !self.expired(event_time, e.last_update) => since(now, event_time) < signed(e.backoff),
            _ => false,
        }
    }

    /// Whether `key` is still backing off at `now`, counted from the last
    /// [`next`](Self::next) (image pulls).
    pub fn is_in_backoff_since_update(&self, key: &str, now: Timestamp) -> bool {
        match self.entries.get(key) {
            Some(e) if !self.expired(now, e.last_update) => since(now, e.last_update) < signed(e.backoff),
            _ => false,
        }
    }

    /// How long until `key`'s back-off from `from` ends; `None` when it is not backing off.
    pub fn remaining(&self, key: &str, from: Timestamp, now: Timestamp) -> Option<Duration> {
        let e = self.entries.get(key)?;
        if self.expired(from, e.last_update) {
            return None;
        }
        let left = signed(e.backoff) - since(now, from);
        (left > SignedDuration::ZERO).then(|| left.unsigned_abs())
    }

    /// Forgets entries not updated for twice the maximum back-off.
    pub fn gc(&mut self, now: Timestamp) {
        let max2 = signed(self.max.saturating_mul(2));
        self.entries.retain(|_, e| since(now, e.last_update) <= max2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn a_crash_loop_restarts_at_once_then_after_10s_20s_40s_and_caps_at_5m() {
        let mut b = Backoff::default();
        // First exit: no entry, so the container restarts at once.
        assert!(!b.is_in_backoff_since("c", at(0), at(0)));
        b.next("c", at(0), at(0));
        assert_eq!(b.get("c"), Duration::from_secs(10));
        // Second exit at t=1: backing off for 10s from the exit.
        assert!(b.is_in_backoff_since("c", at(1), at(5)));
        assert_eq!(b.remaining("c", at(1), at(5)), Some(Duration::from_secs(6)));
        assert!(!b.is_in_backoff_since("c", at(1), at(11)));
        b.next("c", at(1), at(11));
        assert_eq!(b.get("c"), Duration::from_secs(20));
        b.next("c", at(12), at(31));
        assert_eq!(b.get("c"), Duration::from_secs(40));
        for _ in 0..10 {
            b.next("c", at(40), at(41));
        }
        assert_eq!(b.get("c"), MAX);
    }

    #[test]
    fn a_container_that_ran_for_ten_minutes_starts_over() {
        let mut b = Backoff::default();
        b.next("c", at(0), at(0));
        b.next("c", at(1), at(11));
        assert_eq!(b.get("c"), Duration::from_secs(20));
        // It then runs for more than 10 minutes before exiting again.
        let exit = at(11 + 601);
        assert!(!b.is_in_backoff_since("c", exit, exit));
        b.next("c", exit, exit);
        assert_eq!(b.get("c"), INITIAL);
    }

    #[test]
    fn image_pull_backoff_counts_from_the_last_failure() {
        let mut b = Backoff::default();
        assert!(!b.is_in_backoff_since_update("img", at(0)));
        b.next("img", at(0), at(0));
        assert!(b.is_in_backoff_since_update("img", at(9)));
        assert!(!b.is_in_backoff_since_update("img", at(10)));
        b.gc(at(10_000));
        assert_eq!(b.get("img"), Duration::ZERO);
    }
}
