//! How long the store's transactions take, by noun (the engine's file that ran them:
//! `instances`, `services`, ...) and kind (read or write), for the server's `/metrics`.
//! Kept process-wide: one store per server process.

use std::collections::BTreeMap;
use std::panic::Location;
use std::sync::Mutex;
use std::time::Instant;

/// Upper bounds of the histogram's buckets, in seconds.
pub const BUCKETS: [f64; 11] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
];

/// One (noun, kind)'s transactions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpTimes {
    /// Per bucket, not cumulative.
    pub buckets: [u64; BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

static TIMES: Mutex<BTreeMap<(&'static str, &'static str), OpTimes>> = Mutex::new(BTreeMap::new());

/// Times a transaction until dropped.
pub(crate) struct Timer {
    noun: &'static str,
    kind: &'static str,
    start: Instant,
}

/// Starts timing a transaction of `kind`, named after the file of the first caller not
/// marked `#[track_caller]` (the noun's file of an engine).
#[track_caller]
pub(crate) fn start(kind: &'static str) -> Timer {
    let file = Location::caller().file();
    let noun = file
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(file)
        .trim_end_matches(".rs");
    Timer {
        noun,
        kind,
        start: Instant::now(),
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let s = self.start.elapsed().as_secs_f64();
        let mut t = TIMES.lock().unwrap_or_else(|p| p.into_inner());
        let e = t.entry((self.noun, self.kind)).or_default();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            e.buckets[i] += 1;
        }
        e.count += 1;
        e.sum += s;
    }
}

/// Every (noun, kind) timed so far.
pub fn snapshot() -> Vec<((&'static str, &'static str), OpTimes)> {
    let t = TIMES.lock().unwrap_or_else(|p| p.into_inner());
    t.iter().map(|(k, v)| (*k, v.clone())).collect()
}
