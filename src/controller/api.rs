//! Bounded calls: every Kubernetes API call the loops make goes through
//! [`Controller::api`], which gives it `api_timeout` and names it in its error. (The
//! API client itself must not retry: kube-rs's default client retries a 429 fifteen
//! times with a backoff growing to minutes, which is how one eviction refused by a
//! PodDisruptionBudget once held the whole controller for 4m42s. `stevedore run` builds
//! its client without that retry, see `controller_cli`.) Also the NodeClaim writes the
//! loops share.

use super::{Controller, ControllerError};
use crate::cloud::{CloudProvider, LaunchRequest};
use crate::cluster::convert::ClaimEntry;
use crate::cluster::crd::{NodeClaim, NodeClaimStatus, TERMINATION_FINALIZER};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use std::future::Future;

/// JSON merge patch removing our finalizer (keeping any others).
pub(crate) fn finalizer_patch(claim: &NodeClaim) -> serde_json::Value {
    let rest: Vec<String> = claim
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != TERMINATION_FINALIZER)
        .cloned()
        .collect();
    serde_json::json!({"metadata": {"finalizers": rest}})
}

/// The NodeClaim object of an index entry, as far as our writes need it.
pub(crate) fn claim_object(claim: &ClaimEntry) -> NodeClaim {
    let mut obj = NodeClaim::new(&claim.name, Default::default());
    obj.metadata.finalizers = claim
        .has_finalizer
        .then(|| vec![TERMINATION_FINALIZER.to_string()]);
    obj.status = Some(claim.status.clone());
    obj
}

pub(crate) fn request_for(claim: &ClaimEntry) -> LaunchRequest {
    LaunchRequest {
        node_claim: claim.name.clone(),
        node_pool: claim.pool.clone(),
        options: claim.options.clone(),
        labels: claim.labels.clone(),
        taints: claim.taints.clone(),
        startup_taints: claim.startup_taints.clone(),
    }
}

/// A 404 is what a delete or finalizer removal wanted: the object is gone.
pub(crate) fn gone_is_fine<T>(r: Result<T, ControllerError>) -> Result<(), ControllerError> {
    match r {
        Err(e) if e.is_code(404) => Ok(()),
        other => other.map(|_| ()),
    }
}

impl<P: CloudProvider> Controller<P> {
    /// One API call, bounded by `api_timeout`; `call` names it in the error.
    pub(crate) async fn api<T>(
        &self,
        call: &'static str,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ControllerError> {
        let after = self.opts.api_timeout;
        match tokio::time::timeout(after, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(ControllerError::Api { call, source }),
            Err(_) => Err(ControllerError::ApiTimeout { call, after }),
        }
    }

    pub(crate) fn claims_api(&self) -> Api<NodeClaim> {
        Api::all(self.client.clone())
    }

    pub(crate) fn apply_claim(&self, c: &NodeClaim) {
        if let Err(e) = self.write().apply_claim(c) {
            tracing::warn!(error = %e, "NodeClaim does not convert");
        }
    }

    pub(crate) async fn patch_status(
        &self,
        name: &str,
        status: &NodeClaimStatus,
    ) -> Result<(), ControllerError> {
        let patch = serde_json::json!({"status": status});
        let api = self.claims_api();
        let pp = PatchParams::default();
        let updated = self
            .api(
                "patch NodeClaim status",
                api.patch_status(name, &pp, &Patch::Merge(&patch)),
            )
            .await?;
        self.apply_claim(&updated);
        Ok(())
    }

    /// Takes our finalizer off a claim (404: already gone).
    pub(crate) async fn remove_finalizer(&self, claim: &NodeClaim) -> Result<(), ControllerError> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let api = self.claims_api();
        let patch = finalizer_patch(claim);
        let pp = PatchParams::default();
        let result = self
            .api(
                "remove NodeClaim finalizer",
                api.patch(&name, &pp, &Patch::Merge(&patch)),
            )
            .await;
        gone_is_fine(result)
    }

    /// Drops a claim that has no instance: finalizer off, then delete.
    pub(crate) async fn release(&self, claim: &NodeClaim) -> Result<(), ControllerError> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        self.remove_finalizer(claim).await?;
        let api = self.claims_api();
        let dp = DeleteParams::default();
        gone_is_fine(self.api("delete NodeClaim", api.delete(&name, &dp)).await)?;
        self.write().delete_claim(&name);
        Ok(())
    }

    /// Deletes a claim; its finalizer keeps it until drained and terminated.
    pub async fn delete_claim(&self, name: &str) -> Result<(), ControllerError> {
        let api = self.claims_api();
        let dp = DeleteParams::default();
        match self.api("delete NodeClaim", api.delete(name, &dp)).await {
            Ok(either) => {
                if let Some(obj) = either.left() {
                    self.apply_claim(&obj);
                }
                Ok(())
            }
            Err(e) if e.is_code(404) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
