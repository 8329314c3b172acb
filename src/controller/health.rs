//! Liveness that means something: every loop reports each completed iteration here, and
//! `/healthz` fails once any loop has not completed one for longer than it should (a
//! hung call, a deadlock). The last completion of each loop is also a metric
//! (`stevedore_loop_last_completed_timestamp_seconds{loop}`).

use crate::metrics::Metrics;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How many periods a loop may miss before it counts as stuck.
const MISSED_PERIODS: u32 = 3;

struct Entry {
    last: Instant,
    /// Past this since `last`, the loop is stuck.
    stale_after: Duration,
}

/// When each loop last completed an iteration (tokio's clock, so paused-time tests see
/// it move).
pub struct Liveness {
    loops: Mutex<BTreeMap<&'static str, Entry>>,
    metrics: Arc<Metrics>,
}

impl Liveness {
    pub fn new(metrics: Arc<Metrics>) -> Liveness {
        Liveness {
            loops: Mutex::default(),
            metrics,
        }
    }

    /// A loop that should complete an iteration every `period`, whose calls may each
    /// take up to `call_bound`: stuck past `MISSED_PERIODS` periods plus one call bound.
    /// Registering counts as a completion (the loop just started).
    pub fn register(&self, name: &'static str, period: Duration, call_bound: Duration) {
        let stale_after = period * MISSED_PERIODS + call_bound;
        self.lock().insert(
            name,
            Entry {
                last: Instant::now(),
                stale_after,
            },
        );
        self.metrics.loop_completed(name);
    }

    pub fn completed(&self, name: &'static str) {
        if let Some(e) = self.lock().get_mut(name) {
            e.last = Instant::now();
        }
        self.metrics.loop_completed(name);
    }

    /// The loops stuck now, with how long since each completed.
    pub fn stuck(&self) -> Vec<(&'static str, Duration)> {
        let now = Instant::now();
        self.lock()
            .iter()
            .map(|(name, e)| (*name, now.duration_since(e.last), e.stale_after))
            .filter(|(_, since, limit)| since > limit)
            .map(|(name, since, _)| (name, since))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Entry>> {
        self.loops.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs `iteration` at once and then every `period` (a slow iteration delays the next
/// rather than bunching them up), reporting each completion as loop `name`.
pub async fn every<F, Fut>(
    liveness: &Liveness,
    name: &'static str,
    period: Duration,
    call_bound: Duration,
    mut iteration: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    // `interval` panics on zero; a zero setting means "as often as sensible".
    let period = period.max(Duration::from_millis(100));
    liveness.register(name, period, call_bound);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        iteration().await;
        liveness.completed(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_loop_is_stuck_only_past_its_missed_periods_and_call_bound() {
        let l = Liveness::new(Arc::new(Metrics::new()));
        l.register("gc", Duration::from_secs(10), Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(34)).await;
        assert!(l.stuck().is_empty(), "34 s is within 3 x 10 s + 5 s");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(l.stuck().len(), 1);
        assert_eq!(l.stuck()[0].0, "gc");
        l.completed("gc");
        assert!(l.stuck().is_empty(), "a completion makes it live again");
        assert!(l
            .metrics
            .render()
            .contains("stevedore_loop_last_completed_timestamp_seconds{loop=\"gc\"}"));
    }
}
