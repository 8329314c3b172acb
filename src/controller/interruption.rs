//! Interruption handling: the cloud's notices (Spot interruption warnings, scheduled
//! maintenance, instance state changes) delete the claim, whose drain then belongs to
//! the termination loop. Writes only claim deletions and unavailable offerings.

use super::leader::Gate;
use super::Controller;
use crate::cloud::{CloudProvider, Interruption, InterruptionKind, InterruptionSource};
use crate::core::instance::CapacityType;
use std::sync::Arc;
use std::time::Duration;

const LOOP: &str = "interruption";
/// How often a follower looks whether it leads now.
const FOLLOWER_POLL: Duration = Duration::from_secs(1);
/// A feed that failed is polled again after this.
const FAILED_FEED_WAIT: Duration = Duration::from_secs(5);

impl<P: CloudProvider + 'static> Controller<P> {
    /// Polls the feed while leader (a follower leaves notices on the queue for the
    /// leader); each poll is bounded by `cloud_timeout`.
    pub async fn interruption_loop<I: InterruptionSource>(self: Arc<Self>, source: I, gate: Gate) {
        self.liveness.register(
            LOOP,
            FOLLOWER_POLL,
            self.opts.cloud_timeout + self.opts.api_timeout,
        );
        loop {
            if !gate.leading() {
                tokio::time::sleep(FOLLOWER_POLL).await;
            } else {
                match self.cloud_call("poll interruptions", source.poll()).await {
                    Ok(notices) if !notices.is_empty() => {
                        self.interrupted(&notices, self.now()).await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "interruption feed failed");
                        tokio::time::sleep(FAILED_FEED_WAIT).await;
                    }
                }
            }
            self.liveness.completed(LOOP);
        }
    }
}

impl<P: CloudProvider> Controller<P> {
    /// Acts on the cloud's interruption notices: the node's claim is deleted (drained,
    /// then terminated) and, for a Spot interruption, the offering is marked unavailable
    /// so the replacement comes from another (as the simulator does). Rebalance
    /// recommendations are only logged. Returns the claims deleted.
    pub async fn interrupted(&self, notices: &[Interruption], now: f64) -> Vec<String> {
        let mut deleted = Vec::new();
        for n in notices {
            let claim = self
                .read()
                .claims()
                .find(|c| c.provider_id.as_deref() == Some(n.provider_id.as_str()))
                .cloned();
            let Some(claim) = claim.filter(|c| c.deleting_since.is_none()) else {
                continue;
            };
            let why = match &n.kind {
                InterruptionKind::RebalanceRecommendation => {
                    tracing::info!(claim = %claim.name, "Spot rebalance recommendation (not acted on)");
                    continue;
                }
                InterruptionKind::SpotInterruption => "Spot interruption warning".to_string(),
                InterruptionKind::ScheduledChange => "scheduled maintenance event".to_string(),
                InterruptionKind::StateChange { state } => format!("instance is {state}"),
            };
            if n.kind == InterruptionKind::SpotInterruption {
                if let (Some(t), Some(z)) = (&claim.instance_type, &claim.zone) {
                    self.mark_unavailable(&[(t.as_str(), z.as_str(), CapacityType::Spot)], now);
                }
            }
            self.event_claim(
                &claim.name,
                "Warning",
                "Interrupted",
                &format!("{why}: draining"),
            )
            .await;
            if self.opts.dry_run {
                continue;
            }
            match self.delete_claim(&claim.name).await {
                Ok(()) => deleted.push(claim.name.clone()),
                Err(e) => {
                    tracing::warn!(claim = %claim.name, error = %e, "could not delete an interrupted claim")
                }
            }
        }
        deleted
    }
}
