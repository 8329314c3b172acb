//! The NodeClaim lifecycle loop: launch (a claim whose launch did not finish),
//! registration (the pool's labels and taints onto its node), readiness, the
//! registration timeout, and retiring what a ready replacement replaces. What a claim
//! needs next is [`step`], pure. Claims being deleted belong to [`super::termination`].

use super::api::{claim_object, request_for};
use super::leader::Gate;
use super::{Controller, ControllerError};
use crate::cloud::CloudProvider;
use crate::cluster::convert::{ClaimEntry, NodeEntry};
use crate::cluster::rfc3339;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use std::sync::Arc;

const LOOP: &str = "lifecycle";

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// No instance recorded: launch (idempotent per claim, so after a restart this
    /// adopts the instance an interrupted launch created).
    Launch,
    /// The node with our provider ID appeared.
    Register {
        node: String,
    },
    /// The node is Ready.
    MarkReady,
    /// Launched long ago and no node came: give up on the offering.
    RegistrationTimeout,
    /// Being deleted and the node still runs pods: taint and evict.
    Drain {
        node: String,
    },
    /// Being deleted and drained (or no node): terminate, delete the node, release.
    Terminate,
    /// This replacement is ready: the claim it replaces can go.
    RetireReplaced {
        old: String,
    },
    Nothing,
}

/// The next step for `claim`, given the node it became (if any). `drained` says whether
/// the node has no pods left to evict.
pub fn step(
    claim: &ClaimEntry,
    node: Option<&NodeEntry>,
    drained: bool,
    now: f64,
    registration_timeout_s: f64,
) -> Step {
    if claim.deleting_since.is_some() {
        if !claim.has_finalizer {
            return Step::Nothing;
        }
        return match node {
            Some(n) if !drained => Step::Drain {
                node: n.name.clone(),
            },
            _ => Step::Terminate,
        };
    }
    if claim.provider_id.is_none() {
        return Step::Launch;
    }
    match node {
        None => {
            let since = claim.launched_at.unwrap_or(claim.created);
            if now - since >= registration_timeout_s {
                Step::RegistrationTimeout
            } else {
                Step::Nothing
            }
        }
        Some(n) if !claim.registered => Step::Register {
            node: n.name.clone(),
        },
        Some(n) if n.ready && !claim.ready => Step::MarkReady,
        Some(_) if claim.ready => match &claim.replaces {
            Some(old) => Step::RetireReplaced { old: old.clone() },
            None => Step::Nothing,
        },
        Some(_) => Step::Nothing,
    }
}

impl<P: CloudProvider + 'static> Controller<P> {
    pub async fn lifecycle_loop(self: Arc<Self>, gate: Gate) {
        let (every, bound) = (self.opts.lifecycle_every, self.opts.cloud_timeout);
        super::health::every(&self.liveness, LOOP, every, bound, || async {
            if gate.acting() {
                self.lifecycle_pass(self.now()).await;
            }
        })
        .await;
    }
}

impl<P: CloudProvider> Controller<P> {
    /// Moves every NodeClaim one step along: [`Self::lifecycle_pass`], then
    /// [`Self::termination_pass`] (what the loops do, in turn, for callers that step the
    /// controller by hand).
    pub async fn reconcile(&self, now: f64) {
        self.lifecycle_pass(now).await;
        self.termination_pass(now).await;
    }

    /// One step of every claim not being deleted (launch, register, ready, retire).
    pub async fn lifecycle_pass(&self, now: f64) {
        let work: Vec<(ClaimEntry, Option<NodeEntry>)> = {
            let st = self.read();
            st.claims()
                .filter(|c| c.deleting_since.is_none())
                .map(|c| (c.clone(), st.node_of(c).cloned()))
                .collect()
        };
        let timeout = self.opts.registration_timeout.as_secs_f64();
        for (claim, node) in work {
            let step = step(&claim, node.as_ref(), false, now, timeout);
            if step == Step::Nothing || self.opts.dry_run {
                continue;
            }
            // Provisioning launches the claims it creates itself.
            if step == Step::Launch && !self.needs_launch(&claim.name) {
                continue;
            }
            if let Err(e) = self.carry_out(&claim, &step, now).await {
                tracing::warn!(claim = %claim.name, ?step, error = %e, "NodeClaim step failed; retrying later");
            }
        }
    }

    /// Claim `name` still has no instance and no launch is under way (read now: the
    /// pass's list may predate a launch provisioning just finished).
    fn needs_launch(&self, name: &str) -> bool {
        !self.launching(name)
            && self
                .read()
                .claim(name)
                .is_some_and(|c| c.provider_id.is_none() && c.deleting_since.is_none())
    }

    async fn carry_out(
        &self,
        claim: &ClaimEntry,
        step: &Step,
        now: f64,
    ) -> Result<(), ControllerError> {
        match step {
            Step::Launch => {
                self.launch(&claim_object(claim), &request_for(claim), now)
                    .await
            }
            Step::Register { node } => self.register(claim, node, now).await,
            Step::MarkReady => self.mark_ready(claim, now).await,
            Step::RegistrationTimeout => self.registration_timed_out(claim, now).await,
            Step::RetireReplaced { old } => self.retire_replaced(claim, old).await,
            Step::Drain { .. } | Step::Terminate | Step::Nothing => Ok(()),
        }
    }

    async fn mark_ready(&self, claim: &ClaimEntry, now: f64) -> Result<(), ControllerError> {
        let mut status = claim.status.clone();
        status.set_true("Ready", "NodeReady", &rfc3339(now));
        self.patch_status(&claim.name, &status).await?;
        let node = claim.node_name.clone().unwrap_or_default();
        let msg = format!("node {node} is ready");
        self.event_claim(&claim.name, "Normal", "Ready", &msg).await;
        Ok(())
    }

    async fn registration_timed_out(
        &self,
        claim: &ClaimEntry,
        now: f64,
    ) -> Result<(), ControllerError> {
        if let (Some(t), Some(z), Some(ct)) =
            (&claim.instance_type, &claim.zone, claim.capacity_type)
        {
            self.mark_unavailable(&[(t.as_str(), z.as_str(), ct)], now);
        }
        let msg = format!(
            "no node registered within {}; deleting",
            humantime::format_duration(self.opts.registration_timeout)
        );
        self.event_claim(&claim.name, "Warning", "RegistrationTimeout", &msg)
            .await;
        self.delete_claim(&claim.name).await
    }

    /// A multi-node replacement names every claim it replaces.
    async fn retire_replaced(&self, claim: &ClaimEntry, old: &str) -> Result<(), ControllerError> {
        for old in old.split(',').filter(|o| !o.is_empty()) {
            let live = self
                .read()
                .claim(old)
                .is_some_and(|c| c.deleting_since.is_none());
            if live {
                let why = format!("replaced by {}", claim.name);
                self.event_claim(old, "Normal", "Replaced", &why).await;
                self.delete_claim(old).await?;
            }
        }
        Ok(())
    }

    /// What a registering node lacks of its claim: the pool's labels, our claim label,
    /// the pool's taints and startup taints (as Karpenter applies them at registration).
    /// `None` when it has everything. Taints are sent whole (a merge patch replaces the
    /// list), the node's own first.
    fn registration_patch(&self, claim: &ClaimEntry, node: &str) -> Option<serde_json::Value> {
        let st = self.read();
        let n = st.node(node)?;
        let claim_label = crate::cloud::tags::NODE_CLAIM.to_string();
        let labels: std::collections::BTreeMap<&String, &String> = claim
            .labels
            .iter()
            .chain([(&claim_label, &claim.name)])
            .filter(|(k, v)| n.labels.get(*k) != Some(v))
            .collect();
        let missing_taints: Vec<&crate::core::taints::Taint> = claim
            .taints
            .iter()
            .chain(&claim.startup_taints)
            .filter(|t| {
                !n.taints
                    .iter()
                    .any(|h| h.key == t.key && h.effect == t.effect)
            })
            .collect();
        if labels.is_empty() && missing_taints.is_empty() {
            return None;
        }
        let mut patch = serde_json::json!({"metadata": {"labels": labels}});
        if !missing_taints.is_empty() {
            let taints: Vec<_> = n
                .taints
                .iter()
                .chain(missing_taints)
                .map(crate::cluster::convert::taint_spec)
                .collect();
            patch["spec"] = serde_json::json!({ "taints": taints });
        }
        Some(patch)
    }

    async fn register(
        &self,
        claim: &ClaimEntry,
        node: &str,
        now: f64,
    ) -> Result<(), ControllerError> {
        if let Some(patch) = self.registration_patch(claim, node) {
            let nodes: Api<Node> = Api::all(self.client.clone());
            let pp = PatchParams::default();
            let updated = self
                .api(
                    "register Node",
                    nodes.patch(node, &pp, &Patch::Merge(&patch)),
                )
                .await?;
            let _ = self.write().apply_node(&updated, now);
        }
        let mut status = claim.status.clone();
        status.node_name = Some(node.to_string());
        status.set_true("Registered", "NodeRegistered", &rfc3339(now));
        self.patch_status(&claim.name, &status).await?;
        self.event_claim(
            &claim.name,
            "Normal",
            "Registered",
            &format!("registered as node {node}"),
        )
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> ClaimEntry {
        ClaimEntry {
            name: "general-a".into(),
            has_finalizer: true,
            created: 100.0,
            ..Default::default()
        }
    }

    fn node(ready: bool) -> NodeEntry {
        NodeEntry {
            name: "n1".into(),
            labels: Default::default(),
            taints: vec![],
            allocatable: Default::default(),
            provider_id: Some("simulated:///z/i-1".into()),
            ready,
            unschedulable: false,
            deleting: false,
            created: 0.0,
            annotations: Default::default(),
            keys: Default::default(),
            stable_since: 0.0,
            claim: None,
        }
    }

    #[test]
    fn a_claim_walks_launch_register_ready() {
        let mut c = claim();
        assert_eq!(step(&c, None, true, 100.0, 900.0), Step::Launch);
        c.provider_id = Some("simulated:///z/i-1".into());
        c.launched_at = Some(100.0);
        assert_eq!(step(&c, None, true, 200.0, 900.0), Step::Nothing);
        assert_eq!(
            step(&c, Some(&node(false)), true, 200.0, 900.0),
            Step::Register { node: "n1".into() }
        );
        c.registered = true;
        assert_eq!(
            step(&c, Some(&node(false)), true, 200.0, 900.0),
            Step::Nothing
        );
        assert_eq!(
            step(&c, Some(&node(true)), true, 200.0, 900.0),
            Step::MarkReady
        );
    }

    #[test]
    fn no_node_within_the_timeout_gives_up() {
        let mut c = claim();
        c.provider_id = Some("p".into());
        c.launched_at = Some(100.0);
        assert_eq!(step(&c, None, true, 999.0, 900.0), Step::Nothing);
        assert_eq!(
            step(&c, None, true, 1000.0, 900.0),
            Step::RegistrationTimeout
        );
    }

    #[test]
    fn deletion_drains_then_terminates() {
        let mut c = claim();
        c.provider_id = Some("p".into());
        c.deleting_since = Some(500.0);
        assert_eq!(
            step(&c, Some(&node(true)), false, 500.0, 900.0),
            Step::Drain { node: "n1".into() }
        );
        assert_eq!(
            step(&c, Some(&node(true)), true, 500.0, 900.0),
            Step::Terminate
        );
        assert_eq!(step(&c, None, false, 500.0, 900.0), Step::Terminate);
        c.has_finalizer = false;
        assert_eq!(step(&c, None, false, 500.0, 900.0), Step::Nothing);
    }

    #[test]
    fn a_ready_replacement_retires_the_old_claim() {
        let mut c = claim();
        c.provider_id = Some("p".into());
        c.registered = true;
        c.ready = true;
        c.replaces = Some("general-old".into());
        assert_eq!(
            step(&c, Some(&node(true)), true, 500.0, 900.0),
            Step::RetireReplaced {
                old: "general-old".into()
            }
        );
    }
}
