//! Termination: a NodeClaim being deleted is drained (the disrupted taint, then an
//! eviction per pod, paced by PodDisruptionBudgets) and then terminated (instance, Node,
//! finalizer). Each claim gets a task of its own, so a drain a PDB holds for an hour, or
//! an eviction that never answers, holds that claim only. The loop here only starts and
//! reaps those tasks; it owns the eviction backoff.

use super::api::{claim_object, gone_is_fine};
use super::context::lock;
use super::leader::Gate;
use super::lifecycle::{self, Step};
use super::{Controller, ControllerError, Tasks};
use crate::cloud::{CloudError, CloudProvider};
use crate::cluster::convert::{ClaimEntry, NodeEntry};
use crate::cluster::state::{ClusterState, DISRUPTED_TAINT};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, EvictParams, Patch, PatchParams};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Eviction retry backoff: first and longest wait after a refusal.
const EVICT_BACKOFF_MIN_S: f64 = 1.0;
const EVICT_BACKOFF_MAX_S: f64 = 60.0;
const LOOP: &str = "termination";

/// Per pod (ns/name): (next eviction attempt, current backoff), after a refusal.
#[derive(Default)]
pub struct Evictions(Mutex<HashMap<String, (f64, f64)>>);

impl Evictions {
    fn waiting(&self, key: &str, now: f64) -> bool {
        lock(&self.0).get(key).is_some_and(|(next, _)| *next > now)
    }

    fn succeeded(&self, key: &str) {
        lock(&self.0).remove(key);
    }

    /// Records a refusal; returns the wait before the next attempt.
    fn refused(&self, key: String, now: f64) -> f64 {
        let mut b = lock(&self.0);
        let delay = b.get(&key).map_or(EVICT_BACKOFF_MIN_S, |(_, d)| {
            (d * 2.0).min(EVICT_BACKOFF_MAX_S)
        });
        b.insert(key, (now + delay, delay));
        delay
    }
}

/// Pods on nodes being drained (a deleting claim's, or carrying the disrupted taint)
/// that no eviction has taken yet.
pub fn drain_waiting(st: &ClusterState) -> usize {
    let draining: Vec<&str> = st
        .nodes()
        .filter(|n| {
            n.taints.iter().any(|t| t.key == DISRUPTED_TAINT)
                || st.claims().any(|c| {
                    c.deleting_since.is_some() && st.node_of(c).is_some_and(|x| x.name == n.name)
                })
        })
        .map(|n| n.name.as_str())
        .collect();
    draining
        .iter()
        .map(|n| {
            st.pods_on(n)
                .filter(|p| !p.drain_exempt && !p.deleting)
                .count()
        })
        .sum()
}

impl<P: CloudProvider + 'static> Controller<P> {
    /// Starts a task per deleting claim (while acting) and reaps the finished ones.
    pub async fn termination_loop(self: Arc<Self>, gate: Gate) {
        let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        // The claims' tasks end with this loop.
        let mut owned = Tasks::default();
        let (every, bound) = (self.opts.lifecycle_every, self.opts.api_timeout);
        super::health::every(&self.liveness, LOOP, every, bound, || {
            running.retain(|_, t| !t.is_finished());
            self.metrics.set_drain_waiting(drain_waiting(&self.read()));
            if gate.acting() && !self.opts.dry_run {
                for name in self.deleting_claims() {
                    if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(name) {
                        let name = slot.key().clone();
                        let t = tokio::spawn(self.clone().terminate_claim(name, gate.clone()));
                        owned.add(t.abort_handle());
                        slot.insert(t);
                    }
                }
            }
            std::future::ready(())
        })
        .await;
    }

    /// One claim's drain and termination, a step every `lifecycle_every`, until it is
    /// gone or this replica stops acting (the next leader starts its own).
    async fn terminate_claim(self: Arc<Self>, name: String, gate: Gate) {
        let mut ticker =
            tokio::time::interval(self.opts.lifecycle_every.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if !gate.acting() || self.termination_step(&name, self.now()).await {
                return;
            }
        }
    }
}

impl<P: CloudProvider> Controller<P> {
    fn deleting_claims(&self) -> Vec<String> {
        self.read()
            .claims()
            .filter(|c| c.deleting_since.is_some() && c.has_finalizer)
            .map(|c| c.name.clone())
            .collect()
    }

    /// One step of every deleting claim, in turn (what the tasks do, for callers that
    /// step the controller by hand).
    pub async fn termination_pass(&self, now: f64) {
        if self.opts.dry_run {
            return;
        }
        for name in self.deleting_claims() {
            self.termination_step(&name, now).await;
        }
    }

    /// Drains or terminates claim `name`; true once it needs nothing more.
    async fn termination_step(&self, name: &str, now: f64) -> bool {
        let Some((claim, node, drained)) = self.drain_view(name) else {
            return true;
        };
        let timeout = self.opts.registration_timeout.as_secs_f64();
        let result = match lifecycle::step(&claim, node.as_ref(), drained, now, timeout) {
            Step::Drain { .. } => match &node {
                Some(n) => self.drain(&claim, n, now).await,
                None => Ok(()),
            },
            Step::Terminate => match self.terminate(&claim, node.as_ref()).await {
                Ok(()) => return true,
                Err(e) => Err(e),
            },
            _ => return true,
        };
        if let Err(e) = result {
            tracing::warn!(claim = %claim.name, error = %e, "termination step failed; retrying");
        }
        false
    }

    /// The claim, its node and whether the node has no pods left to evict.
    fn drain_view(&self, name: &str) -> Option<(ClaimEntry, Option<NodeEntry>, bool)> {
        let st = self.read();
        let claim = st.claim(name)?.clone();
        let node = st.node_of(&claim).cloned();
        let drained = node
            .as_ref()
            .is_none_or(|n| st.pods_on(&n.name).all(|p| p.drain_exempt || p.deleting));
        Some((claim, node, drained))
    }

    /// One drain pass: the disrupted taint, then an eviction per pod (a refusal, a PDB's
    /// 429 above all, is retried with backoff and said in an Event on the claim). Past
    /// the claim's terminationGracePeriod, pods are deleted instead.
    pub(crate) async fn drain(
        &self,
        claim: &ClaimEntry,
        node: &NodeEntry,
        now: f64,
    ) -> Result<(), ControllerError> {
        if !node.taints.iter().any(|t| t.key == DISRUPTED_TAINT) {
            self.taint_disrupted(node, now).await?;
        }
        let pods: Vec<(String, String)> = self
            .read()
            .pods_on(&node.name)
            .filter(|p| !p.drain_exempt && !p.deleting)
            .map(|p| (p.pod.namespace.clone(), p.pod.name.clone()))
            .collect();
        let past_grace = match (claim.termination_grace_s, claim.deleting_since) {
            (Some(g), Some(since)) => now - since >= g,
            _ => false,
        };
        for (ns, name) in pods {
            let key = format!("{ns}/{name}");
            if self.evictions.waiting(&key, now) {
                continue;
            }
            match self.evict(&ns, &name, past_grace).await {
                Ok(()) => {
                    self.evictions.succeeded(&key);
                    self.write().mark_pod_deleting(&ns, &name);
                }
                Err(e) if e.is_code(404) => self.write().delete_pod(&ns, &name, now),
                Err(e) => {
                    let delay = self.evictions.refused(key.clone(), now);
                    self.eviction_refused(claim, &key, &e, delay).await;
                }
            }
        }
        Ok(())
    }

    async fn evict(&self, ns: &str, name: &str, delete: bool) -> Result<(), ControllerError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        if delete {
            let dp = DeleteParams::default();
            self.api("delete pod", api.delete(name, &dp))
                .await
                .map(|_| ())
        } else {
            let ep = EvictParams::default();
            self.api("evict pod", api.evict(name, &ep))
                .await
                .map(|_| ())
        }
    }

    /// Says why a pod stays: in the log and, for a claim, in an Event on it.
    async fn eviction_refused(
        &self,
        claim: &ClaimEntry,
        pod: &str,
        e: &ControllerError,
        delay: f64,
    ) {
        let why = if e.is_code(429) {
            tracing::info!(
                pod,
                retry_in_s = delay,
                "eviction blocked by a PodDisruptionBudget"
            );
            format!("eviction of pod {pod} refused by a PodDisruptionBudget (429); the node waits and retries")
        } else {
            tracing::warn!(pod, error = %e, "eviction failed");
            format!("eviction of pod {pod} failed ({e}); the node waits and retries")
        };
        if !claim.name.is_empty() {
            self.event_claim(&claim.name, "Warning", "EvictionBlocked", &why)
                .await;
        }
    }

    async fn taint_disrupted(&self, node: &NodeEntry, now: f64) -> Result<(), ControllerError> {
        let mut taints: Vec<serde_json::Value> = node
            .taints
            .iter()
            .map(|t| serde_json::json!({"key": t.key, "value": t.value, "effect": format!("{:?}", t.effect)}))
            .collect();
        taints.push(serde_json::json!({"key": DISRUPTED_TAINT, "effect": "NoSchedule"}));
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = serde_json::json!({"spec": {"taints": taints}});
        let pp = PatchParams::default();
        let updated = self
            .api(
                "taint Node",
                nodes.patch(&node.name, &pp, &Patch::Merge(&patch)),
            )
            .await?;
        let _ = self.write().apply_node(&updated, now);
        Ok(())
    }

    /// The end of a claim: instance terminated, node deleted, finalizer released.
    async fn terminate(
        &self,
        claim: &ClaimEntry,
        node: Option<&NodeEntry>,
    ) -> Result<(), ControllerError> {
        if let Some(id) = &claim.provider_id {
            match self.cloud_call("terminate", self.cloud.terminate(id)).await {
                Ok(()) | Err(CloudError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(n) = node {
            self.delete_node(&n.name).await?;
        }
        self.remove_finalizer(&claim_object(claim)).await?;
        self.write().delete_claim(&claim.name);
        tracing::info!(claim = %claim.name, "terminated");
        Ok(())
    }

    /// Deletes a Node object (404: already gone) and drops it from the indexes.
    pub(crate) async fn delete_node(&self, name: &str) -> Result<(), ControllerError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let dp = DeleteParams::default();
        gone_is_fine(self.api("delete Node", nodes.delete(name, &dp)).await)?;
        self.write().delete_node(name);
        Ok(())
    }
}
