//! Instances by tag: rebuilding state (`list`), finding a claim's instance (idempotent
//! launch), termination and garbage collection of orphans.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, InstanceLifecycleType, InstanceStateName};

use super::errors;
use super::ops;
use crate::cloud::{aws_provider_id, instance_id, tags, CloudError, Instance, InstanceState};
use crate::core::instance::CapacityType;

/// States of an instance that still exists (or is on its way out).
const LIVE_STATES: &[&str] = &["pending", "running", "stopping", "stopped", "shutting-down"];

/// The most instance IDs one TerminateInstances call takes.
const TERMINATE_BATCH: usize = 1000;

fn filter(name: &str, values: &[&str]) -> Filter {
    let mut f = Filter::builder().name(name);
    for v in values {
        f = f.values(*v);
    }
    f.build()
}

/// Converts an EC2 instance; `None` when it lacks an ID or zone (never for real ones).
pub fn to_instance(i: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
    let id = i.instance_id()?;
    let zone = i.placement()?.availability_zone()?;
    let tag = |key: &str| {
        i.tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    let state = match i.state().and_then(|s| s.name()) {
        Some(InstanceStateName::Pending) => InstanceState::Pending,
        Some(InstanceStateName::Running) => InstanceState::Running,
        Some(InstanceStateName::Terminated) => InstanceState::Terminated,
        _ => InstanceState::ShuttingDown,
    };
    let capacity_type = match i.instance_lifecycle() {
        Some(InstanceLifecycleType::Spot) => CapacityType::Spot,
        _ => CapacityType::OnDemand,
    };
    Some(Instance {
        provider_id: aws_provider_id(zone, id),
        instance_type: i.instance_type().map_or("", |t| t.as_str()).to_string(),
        zone: zone.to_string(),
        capacity_type,
        state,
        node_claim: tag(tags::NODE_CLAIM),
        node_pool: tag(tags::NODE_POOL),
        launched_at: i.launch_time().map_or(0.0, |t| t.as_secs_f64()),
    })
}

/// Every live instance carrying the cluster tag (and the NodeClaim tag when given).
/// Pages of 1000: the API's maximum, so 1,000 nodes cost one call.
pub async fn describe(
    ec2: &aws_sdk_ec2::Client,
    cluster: &str,
    claim: Option<&str>,
) -> Result<Vec<Instance>, CloudError> {
    let mut req = ec2
        .describe_instances()
        .filters(filter(&format!("tag:{}", tags::CLUSTER), &[cluster]))
        .filters(filter("instance-state-name", LIVE_STATES));
    if let Some(c) = claim {
        req = req.filters(filter(&format!("tag:{}", tags::NODE_CLAIM), &[c]));
    }
    let mut pages = req.max_results(1000).into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| errors::map(ops::DESCRIBE_INSTANCES, e))?;
        for r in page.reservations() {
            out.extend(r.instances().iter().filter_map(to_instance));
        }
    }
    Ok(out)
}

/// Terminates instances by provider ID, in batches. An ID already gone is not an error
/// for a batch; a single missing instance gives `NotFound`.
pub async fn terminate(
    ec2: &aws_sdk_ec2::Client,
    provider_ids: &[String],
) -> Result<(), CloudError> {
    for batch in provider_ids.chunks(TERMINATE_BATCH) {
        let ids: Vec<String> = batch.iter().map(|p| instance_id(p).to_string()).collect();
        let res = ec2
            .terminate_instances()
            .set_instance_ids(Some(ids))
            .send()
            .await;
        match res {
            Ok(_) => {}
            Err(e) if errors::code_of(&e) == Some("InvalidInstanceID.NotFound") => {
                if let [one] = batch {
                    return Err(CloudError::NotFound {
                        provider_id: one.clone(),
                    });
                }
                // Some of the batch are gone: EC2 rejects the whole call, so retry one
                // by one and ignore the missing ones.
                for p in batch {
                    match Box::pin(terminate(ec2, std::slice::from_ref(p))).await {
                        Ok(()) | Err(CloudError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(errors::map(ops::TERMINATE_INSTANCES, e)),
        }
    }
    Ok(())
}

/// Instances to garbage-collect: launched by us (they carry the cluster tag) more than
/// `grace` ago, not terminated, and not backed by a live NodeClaim (no claim tag, or a
/// claim that no longer exists). The grace period covers a launch whose NodeClaim
/// status has not been written yet.
pub fn orphans(
    instances: &[Instance],
    live_claims: &HashSet<String>,
    now: f64,
    grace: Duration,
) -> Vec<String> {
    instances
        .iter()
        .filter(|i| i.state != InstanceState::Terminated)
        .filter(|i| now - i.launched_at >= grace.as_secs_f64())
        .filter(|i| {
            !i.node_claim
                .as_ref()
                .is_some_and(|c| live_claims.contains(c))
        })
        .map(|i| i.provider_id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, claim: Option<&str>, at: f64, state: InstanceState) -> Instance {
        Instance {
            provider_id: aws_provider_id("us-east-1a", id),
            instance_type: "m5.large".into(),
            zone: "us-east-1a".into(),
            capacity_type: CapacityType::Spot,
            state,
            node_claim: claim.map(str::to_string),
            node_pool: Some("general".into()),
            launched_at: at,
        }
    }

    #[test]
    fn orphans_are_old_unclaimed_and_alive() {
        let live = HashSet::from(["claim-a".to_string()]);
        let all = [
            inst("i-live", Some("claim-a"), 0.0, InstanceState::Running),
            inst("i-gone-claim", Some("claim-b"), 0.0, InstanceState::Running),
            inst("i-no-claim", None, 0.0, InstanceState::Pending),
            inst("i-young", Some("claim-c"), 590.0, InstanceState::Pending),
            inst("i-dead", Some("claim-d"), 0.0, InstanceState::Terminated),
        ];
        let got = orphans(&all, &live, 600.0, Duration::from_secs(30));
        assert_eq!(
            got,
            [
                aws_provider_id("us-east-1a", "i-gone-claim"),
                aws_provider_id("us-east-1a", "i-no-claim")
            ]
        );
        // A longer grace spares everything launched within it.
        assert!(orphans(&all, &live, 600.0, Duration::from_secs(601)).is_empty());
    }
}
