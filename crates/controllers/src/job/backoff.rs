//! The delay before a Job replaces failed pods: 10s doubled for each failure since
//! the last success, capped (kube-controller-manager's `DefaultJobPodFailureBackOff`
//! and `MaxJobPodFailureBackOff`). Records live in memory, per Job, as upstream's do.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;

use super::pods::finished_time;

/// The first delay after a failure.
pub const DEFAULT_BACKOFF: SignedDuration = SignedDuration::from_secs(10);
/// The longest delay.
pub const MAX_BACKOFF: SignedDuration = SignedDuration::from_secs(600);

/// Consecutive failures of a Job since its last success.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub failures_after_last_success: i32,
    pub last_failure_time: Option<Timestamp>,
}

/// Backoff records by Job key.
#[derive(Default)]
pub struct Store {
    records: Mutex<HashMap<String, Record>>,
}

fn sort_by_finish(pods: &mut [&Pod]) {
    pods.sort_by_key(|p| finished_time(p));
}

impl Store {
    /// The record after counting newly finished pods: a success resets the count, and
    /// only failures after the last success count.
    pub fn next_record(&self, key: &str, new_succeeded: &[&Pod], new_failed: &[&Pod]) -> Record {
        let mut rec =
            self.records.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned().unwrap_or_default();
        let mut succeeded = new_succeeded.to_vec();
        let mut failed = new_failed.to_vec();
        sort_by_finish(&mut succeeded);
        sort_by_finish(&mut failed);
        match (succeeded.last(), failed.last()) {
            (None, None) => {}
            (None, Some(last)) => {
                rec.failures_after_last_success += failed.len() as i32;
                rec.last_failure_time = finished_time(last);
            }
            (Some(_), None) => rec = Record::default(),
            (Some(last_success), Some(_)) => {
                rec = Record::default();
                let success_at = finished_time(last_success);
                for p in failed.iter().rev() {
                    let at = finished_time(p);
                    if at <= success_at {
                        break;
                    }
                    if rec.last_failure_time.is_none() {
                        rec.last_failure_time = at;
                    }
                    rec.failures_after_last_success += 1;
                }
            }
        }
        rec
    }

    /// Keeps a record once the counts it reflects are in the Job's status.
    pub fn update(&self, key: &str, rec: Record) {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), rec);
    }

    /// Forgets a finished or deleted Job.
    pub fn remove(&self, key: &str) {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// The time left before pods may be created again after `failures` consecutive
/// failures, the last at `last_failure`.
pub fn remaining(now: Timestamp, failures: i32, last_failure: Option<Timestamp>) -> SignedDuration {
    if failures == 0 {
        return SignedDuration::ZERO;
    }
    let mut delay = DEFAULT_BACKOFF;
    for _ in 1..failures {
        delay = delay.saturating_mul(2);
        if delay >= MAX_BACKOFF {
            delay = MAX_BACKOFF;
            break;
        }
    }
    let elapsed = last_failure.map(|t| now.duration_since(t)).unwrap_or(SignedDuration::MAX);
    if delay < elapsed { SignedDuration::ZERO } else { delay - elapsed }
}

impl Record {
    pub fn remaining(&self, now: Timestamp) -> SignedDuration {
        remaining(now, self.failures_after_last_success, self.last_failure_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_delay_doubles_per_failure_and_is_capped() {
        let last = t("2024-05-01T00:00:00Z");
        let cases: &[(i32, &str, i64)] = &[
            (0, "2024-05-01T00:00:00Z", 0),
            (1, "2024-05-01T00:00:00Z", 10),
            (1, "2024-05-01T00:00:04Z", 6),
            (1, "2024-05-01T00:00:11Z", 0),
            (2, "2024-05-01T00:00:00Z", 20),
            (3, "2024-05-01T00:00:00Z", 40),
            (6, "2024-05-01T00:00:00Z", 320),
            (7, "2024-05-01T00:00:00Z", 600),
            (50, "2024-05-01T00:00:00Z", 600),
        ];
        for (failures, now, want) in cases {
            assert_eq!(
                remaining(t(now), *failures, Some(last)),
                SignedDuration::from_secs(*want),
                "{failures} at {now}"
            );
        }
    }
}
