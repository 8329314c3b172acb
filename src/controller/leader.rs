//! Who may act: the leader Lease ([`lead`]) and the [`Gate`] every loop asks before it
//! acts (leader, and every watch current).

use crate::cluster::lease::LeaderElector;
use crate::cluster::watch::WatchSync;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What every loop asks before acting. Cheap to clone: one per loop.
#[derive(Clone)]
pub struct Gate {
    leader: watch::Receiver<bool>,
    sync: Arc<WatchSync>,
    metrics: Arc<Metrics>,
}

impl Gate {
    pub fn new(leader: watch::Receiver<bool>, sync: Arc<WatchSync>, metrics: Arc<Metrics>) -> Gate {
        Gate {
            leader,
            sync,
            metrics,
        }
    }

    /// This replica holds the lease (published as `stevedore_leader`).
    pub fn leading(&self) -> bool {
        let leading = *self.leader.borrow();
        self.metrics.set_leader(leading);
        leading
    }

    /// Every watch holds a complete, current list.
    pub fn synced(&self) -> bool {
        self.sync.current()
    }

    /// Leader with current indexes: the loops may act.
    pub fn acting(&self) -> bool {
        self.leading() && self.synced()
    }

    /// Waits for the leadership to change; `false` once the election has ended.
    pub async fn leader_changed(&mut self) -> bool {
        self.leader.changed().await.is_ok()
    }
}

/// Lease timings: 15 s duration, renewed every 5 s, looked at every second.
#[derive(Clone, Copy, Debug)]
pub struct LeaseTiming {
    pub duration: Duration,
    pub renew_every: Duration,
    pub poll: Duration,
    /// The longest one Lease read or write may take.
    pub call_timeout: Duration,
}

/// Keeps `tx` saying whether this replica holds the lease. Looks every `poll`; the
/// holder writes a renewal every `renew_every`; a holder that cannot renew for two
/// thirds of the lease duration (client-go's renew deadline) stops acting before a
/// follower may take over. A Lease call that does not answer counts as a failed one.
pub async fn lead(
    mut elector: LeaderElector,
    timing: LeaseTiming,
    tx: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let start = Instant::now();
    let mut last_ok = Instant::now();
    let mut last_write: Option<Instant> = None;
    let deadline = timing.duration.mul_f64(2.0 / 3.0);
    let mut ticker = tokio::time::interval(timing.poll.max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => {
                let _ = tx.send(false);
                match tokio::time::timeout(timing.call_timeout, elector.release()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not release the lease"),
                    Err(_) => tracing::warn!("releasing the lease: no answer"),
                }
                return;
            }
        }
        let leading = *tx.borrow();
        if leading && last_write.is_some_and(|w| w.elapsed() < timing.renew_every) {
            continue;
        }
        let step = elector.step(start.elapsed().as_secs_f64());
        match tokio::time::timeout(timing.call_timeout, step).await {
            Ok(Ok(held)) => {
                last_ok = Instant::now();
                if held {
                    last_write = Some(Instant::now());
                }
                if leading != held {
                    tracing::info!(
                        identity = elector.identity(),
                        leader = held,
                        "leadership changed"
                    );
                }
                let _ = tx.send(held);
            }
            result => {
                match result {
                    Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
                    _ => tracing::warn!(after = ?timing.call_timeout, "lease renewal: no answer"),
                }
                if last_ok.elapsed() >= deadline {
                    let _ = tx.send(false);
                }
            }
        }
    }
}
