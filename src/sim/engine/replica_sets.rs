//! The simulated ReplicaSet controller's choice of which replica a scale-down removes.
//!
//! A trace records which pod its cluster's ReplicaSet deleted (youngest first, in the
//! bundled generator). With `podDeletionCost` on, the controller annotates each steered
//! pod (`core::deletion_cost`) and the ReplicaSet deletes the lowest cost first, so in
//! fleet mode a recorded deletion removes, among the live replicas of the same
//! ReplicaSet, an unscheduled one if any, else the one on the node with the lowest
//! cost. Replicas of one ReplicaSet share one template, so the two pods only trade
//! names in the trace's index: its later events about either name then reach the pod
//! that goes on running.
//! Node-groups mode stands for the Cluster Autoscaler, which sets no deletion cost.
//!
//! A trace does not say why a pod went: a pod deleted by hand (whose ReplicaSet then
//! makes a new one) is replayed as a scale-down too, and so may remove another replica
//! than the one named. The replica count, and so the demand, stay as recorded.

use super::state::{PodState, Sim};
use crate::core::deletion_cost;
use crate::core::pod::Pod;
use crate::sim::Mode;

/// The live steered replicas of each ReplicaSet, by (namespace, owner name).
pub(super) type Replicas<'c> = std::collections::HashMap<(&'c str, &'c str), Vec<usize>>;

impl<'c> Sim<'c> {
    fn steers(&self, pod: &Pod) -> bool {
        self.mode == Mode::Fleet && self.settings().pod_deletion_cost && deletion_cost::steers(pod)
    }

    fn replica_set_key(pod: &'c Pod) -> Option<(&'c str, &'c str)> {
        let owner = pod.owner.as_ref()?;
        Some((&pod.namespace, &owner.name))
    }

    /// Pod `i` was just added: it is one of its ReplicaSet's replicas when steered.
    pub(super) fn replica_added(&mut self, i: usize) {
        let pod = self.pods[i].pod;
        if !self.steers(pod) {
            return;
        }
        if let Some(key) = Self::replica_set_key(pod) {
            self.replicas.entry(key).or_default().push(i);
        }
    }

    /// The trace deletes pod `i`: the pod the ReplicaSet would delete instead, which
    /// takes `i`'s name (and `i` its name), or `i` itself.
    pub(super) fn replica_to_delete(&mut self, i: usize) -> usize {
        let pod = self.pods[i].pod;
        if !self.steers(pod) {
            return i;
        }
        let Some(key) = Self::replica_set_key(pod) else {
            return i;
        };
        let Some(live) = self.replicas.get_mut(&key) else {
            return i;
        };
        live.retain(|&j| self.pods[j].state != PodState::Done);
        // Lowest (unscheduled, cost) first; among equals the trace's own pod, then the
        // newest (the ReplicaSet's own tie-break).
        let rank = |j: usize| -> (bool, i32, bool, std::cmp::Reverse<usize>) {
            let (bound, cost) = match self.pods[j].state {
                PodState::Bound(n) => {
                    let node = &self.nodes[n];
                    // Pods on nodes stevedore does not manage, or whose price it does not
                    // know, carry no annotation (the controller's `managed`): the
                    // ReplicaSet counts them as 0.
                    let cost = if node.pool.is_some() && node.price > 0.0 {
                        let room = node.allocatable.minus(&node.overhead);
                        let used = deletion_cost::used_share(&node.requested, &room);
                        deletion_cost::cost(node.price, used)
                    } else {
                        0
                    };
                    (true, cost)
                }
                _ => (false, 0),
            };
            (bound, cost, j != i, std::cmp::Reverse(j))
        };
        let victim = live.iter().copied().min_by_key(|&j| rank(j)).unwrap_or(i);
        live.retain(|&j| j != victim);
        if victim != i {
            // The two replicas trade names in the trace's index only: a pod keeps its own
            // name everywhere else (it is the same template either way).
            let ns = key.0;
            let name_v = self.pods[victim].pod.name.as_str();
            self.pod_index.insert((ns, pod.name.as_str()), victim);
            self.pod_index.insert((ns, name_v), i);
        }
        victim
    }
}
