//! Garbage collection: instances tagged for a NodeClaim that no longer exists (a crash
//! between launch and claim, a claim deleted by hand) are terminated after a grace
//! period. Writes only cloud terminations.

use super::leader::Gate;
use super::{Controller, ControllerError};
use crate::cloud::{CloudError, CloudProvider, Instance};
use std::sync::Arc;

const LOOP: &str = "gc";

impl<P: CloudProvider + 'static> Controller<P> {
    pub async fn gc_loop(self: Arc<Self>, gate: Gate) {
        let (every, bound) = (self.opts.gc_every, self.opts.cloud_timeout * 2);
        super::health::every(&self.liveness, LOOP, every, bound, || async {
            // Only once the NodeClaim watch is current: a claim missing from the
            // indexes must not make its instance an orphan.
            if gate.acting() {
                if let Err(e) = self.collect_orphans(self.now()).await {
                    tracing::warn!(error = %e, "orphan collection failed");
                }
            }
        })
        .await;
    }
}

impl<P: CloudProvider> Controller<P> {
    /// Terminates instances tagged for a NodeClaim that no longer exists, once they are
    /// older than the grace period (a claim may be created just after its instance is
    /// listed). Call only once the NodeClaim watch has synced.
    pub async fn collect_orphans(&self, now: f64) -> Result<Vec<String>, ControllerError> {
        let instances = self.cloud_call("list", self.cloud.list()).await?;
        let grace = self.opts.orphan_grace.as_secs_f64();
        let orphans: Vec<Instance> = {
            let st = self.read();
            instances
                .into_iter()
                .filter(|i| i.node_claim.as_ref().is_some_and(|c| st.claim(c).is_none()))
                .filter(|i| now - i.launched_at >= grace)
                .collect()
        };
        let mut done = Vec::new();
        for i in orphans {
            if self.opts.dry_run {
                tracing::info!(instance = %i.provider_id, "dry run: would terminate an orphan");
                continue;
            }
            match self
                .cloud_call("terminate", self.cloud.terminate(&i.provider_id))
                .await
            {
                Ok(()) | Err(CloudError::NotFound { .. }) => {
                    tracing::info!(instance = %i.provider_id, claim = ?i.node_claim, "terminated an orphan instance");
                    done.push(i.provider_id);
                }
                Err(e) => {
                    tracing::warn!(instance = %i.provider_id, error = %e, "orphan termination failed")
                }
            }
        }
        Ok(done)
    }
}
