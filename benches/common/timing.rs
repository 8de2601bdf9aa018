//! Time per call, for the benches that report it: batches of about 20 ms, the median of 15.

use std::time::{Duration, Instant};

/// The median time of one call of `run`.
pub fn median_time<R>(mut run: impl FnMut() -> R) -> Duration {
    let start = Instant::now();
    drop(std::hint::black_box(run()));
    let once = start.elapsed().max(Duration::from_nanos(100));
    let per_batch =
        (Duration::from_millis(20).as_nanos() / once.as_nanos()).clamp(1, 100_000) as u32;
    let mut batches: Vec<Duration> = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_batch {
                drop(std::hint::black_box(run()));
            }
            start.elapsed() / per_batch
        })
        .collect();
    batches.sort();
    batches[batches.len() / 2]
}
