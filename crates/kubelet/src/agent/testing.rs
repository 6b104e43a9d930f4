//! Test support for the agent: a clock tests move by hand (the fake API is `fakeapi`).

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

use super::Clock;

/// A clock that moves only when told to.
pub struct TestClock(Mutex<Timestamp>);

impl TestClock {
    pub fn new(at: Timestamp) -> Self {
        Self(Mutex::new(at))
    }

    pub fn advance(&self, secs: i64) {
        let mut t = self.0.lock().unwrap();
        *t += SignedDuration::from_secs(secs);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}
