//! Launching: a NodeClaim created (with its finalizer) and the cloud called for it,
//! the instance recorded in its status. Provisioning, the lifecycle loop (a claim whose
//! launch did not finish) and disruption (replacements) all launch through here.

use super::provision::NewClaim;
use super::{Controller, ControllerError};
use crate::cloud::{CloudError, CloudProvider, Instance, LaunchRequest};
use crate::cluster::crd::NodeClaim;
use crate::cluster::rfc3339;
use crate::core::instance::CapacityType;
use kube::api::PostParams;
use std::collections::HashMap;
use std::sync::Mutex;

/// Claims whose launch is under way (counted: a new claim is held from before its
/// creation through its launch), so the lifecycle loop does not launch them a second
/// time meanwhile.
#[derive(Default)]
pub struct InFlight(Mutex<HashMap<String, usize>>);

/// Holds a claim in [`InFlight`] until dropped.
pub(crate) struct Held<'a> {
    set: &'a InFlight,
    name: String,
}

impl InFlight {
    fn hold(&self, name: &str) -> Held<'_> {
        *super::context::lock(&self.0)
            .entry(name.to_string())
            .or_default() += 1;
        Held {
            set: self,
            name: name.to_string(),
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut m = super::context::lock(&self.set.0);
        if let Some(n) = m.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.name);
            }
        }
    }
}

impl<P: CloudProvider> Controller<P> {
    /// A launch of claim `name` is under way.
    pub(crate) fn launching(&self, name: &str) -> bool {
        super::context::lock(&self.launches.0).contains_key(name)
    }

    /// Creates the NodeClaim (with its finalizer) first, then calls the cloud: a crash
    /// in between leaves a claim the next lifecycle step launches, idempotently.
    pub(crate) async fn launch_new(
        &self,
        claim: &NewClaim,
        now: f64,
    ) -> Result<(), ControllerError> {
        let _held = self.launches.hold(claim.name());
        let api = self.claims_api();
        let pp = PostParams::default();
        let created = self
            .api("create NodeClaim", api.create(&pp, &claim.object))
            .await?;
        self.apply_claim(&created);
        tracing::info!(
            claim = claim.name(),
            pods = claim.pods.len(),
            "launching {}",
            claim.summary()
        );
        self.launch(&created, &claim.request, now).await
    }

    /// Calls the cloud for a claim and records the instance in its status. On
    /// insufficient capacity the offerings are marked unavailable and the claim released.
    pub(crate) async fn launch(
        &self,
        claim: &NodeClaim,
        request: &LaunchRequest,
        now: f64,
    ) -> Result<(), ControllerError> {
        let name = request.node_claim.as_str();
        let _held = self.launches.hold(name);
        let result = self.cloud_call("launch", self.cloud.launch(request)).await;
        self.count_launch(request, &result);
        self.mark_fallback_failures(now);
        match result {
            Ok(instance) => {
                self.record_launch(claim, &instance, now).await?;
                self.event_claim(
                    name,
                    "Normal",
                    "Launched",
                    &format!(
                        "launched {} {} in {} ({})",
                        instance.instance_type,
                        instance.capacity_type.as_str(),
                        instance.zone,
                        instance.provider_id
                    ),
                )
                .await;
                Ok(())
            }
            Err(e @ CloudError::InsufficientCapacity { .. }) => {
                self.mark_unavailable(
                    &request
                        .options
                        .iter()
                        .map(|o| (o.instance_type.as_str(), o.zone.as_str(), o.capacity_type))
                        .collect::<Vec<_>>(),
                    now,
                );
                tracing::info!(claim = name, error = %e, "no capacity; deciding again without these offerings");
                self.release(claim).await?;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn count_launch(&self, request: &LaunchRequest, result: &Result<Instance, CloudError>) {
        use crate::metrics::{LaunchFailure, LaunchRecord};
        let first = request.options.first();
        let (ty, zone, ct) = match result {
            Ok(i) => (i.instance_type.as_str(), i.zone.as_str(), i.capacity_type),
            Err(_) => (
                first.map_or("", |o| o.instance_type.as_str()),
                first.map_or("", |o| o.zone.as_str()),
                first.map_or(CapacityType::OnDemand, |o| o.capacity_type),
            ),
        };
        let outcome = match result {
            Ok(_) => Ok(()),
            Err(CloudError::InsufficientCapacity { .. }) => {
                Err(LaunchFailure::InsufficientCapacity)
            }
            Err(CloudError::QuotaExceeded { .. }) => Err(LaunchFailure::Quota),
            Err(CloudError::Unauthorized { .. }) => Err(LaunchFailure::Unauthorized),
            Err(CloudError::Invalid { .. }) => Err(LaunchFailure::InvalidRequest),
            Err(_) => Err(LaunchFailure::Other),
        };
        self.metrics.record_launch(&LaunchRecord {
            nodepool: &request.node_pool,
            instance_type: ty,
            capacity_type: ct,
            zone,
            outcome,
        });
    }

    /// Offerings a successful launch found short on its way (a fleet's Spot-to-on-demand
    /// fallback): out for the TTL, like those of a failed launch, so the next decisions
    /// do not keep offering them first.
    fn mark_fallback_failures(&self, now: f64) {
        let failed = self.cloud.take_capacity_failures();
        if failed.is_empty() {
            return;
        }
        tracing::info!(
            offerings = failed.len(),
            "launch fell back from offerings without capacity; marking them unavailable"
        );
        let keys: Vec<(&str, &str, CapacityType)> = failed
            .iter()
            .map(|o| (o.instance_type.as_str(), o.zone.as_str(), o.capacity_type))
            .collect();
        self.mark_unavailable(&keys, now);
    }

    async fn record_launch(
        &self,
        claim: &NodeClaim,
        instance: &Instance,
        now: f64,
    ) -> Result<(), ControllerError> {
        let mut status = claim.status.clone().unwrap_or_default();
        status.provider_id = Some(instance.provider_id.clone());
        status.instance_type = Some(instance.instance_type.clone());
        status.zone = Some(instance.zone.clone());
        status.capacity_type = Some(instance.capacity_type.as_str().into());
        status.launched_at = Some(if instance.launched_at > 0.0 {
            instance.launched_at
        } else {
            now
        });
        status.set_true("Launched", "Launched", &rfc3339(now));
        self.patch_status(claim.metadata.name.as_deref().unwrap_or_default(), &status)
            .await
    }
}
