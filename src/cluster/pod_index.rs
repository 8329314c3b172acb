//! What the decisions read of the pods, kept up to date as each pod is applied or
//! deleted, so that no scan walks every pod of the cluster: the pods bound to each node
//! with the room they request, the unschedulable pods, and the demand consolidation
//! keeps room for. [`ClusterState`](super::state::ClusterState) is the only writer: it
//! takes a pod's old entry out and puts the new one in on every change.

use super::convert::PodEntry;
use crate::core::disruption::runs_to_completion;
use crate::core::resources::Resources;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The pods bound to one node name (the node may not be known yet: a pod's binding can
/// arrive before its node), unfinished ones only: finished pods hold no room.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodePods {
    /// Their entries (shared with the state's pod map) by key ("namespace/name"), in key
    /// order so that a decision sees them in the same order on every run. Held here so
    /// that a decision reads a node's pods without a hash lookup per pod.
    pub pods: BTreeMap<String, Arc<PodEntry>>,
    /// The sum of their requests (DaemonSet pods and pods being deleted included: they
    /// hold their room until they are gone).
    pub requested: Resources,
    /// How many of them are DaemonSet pods.
    pub daemonset_pods: usize,
    /// How many of them are being deleted (with none, a decision takes them all as
    /// they are without reading their entries).
    pub deleting: usize,
}

/// The indexes over the pods (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodIndex {
    /// In node-name order: a decision walks it beside the nodes instead of looking each
    /// node up.
    by_node: BTreeMap<String, NodePods>,
    /// Keys of the pods marked unschedulable, finished or not (a decision filters).
    unschedulable: BTreeSet<String>,
    /// Requests of the pods that hold room and do not end by themselves (bound or
    /// waiting; DaemonSet pods and Jobs' pods excluded).
    service_demand: Resources,
}

/// Does the pod count in the service demand (see [`PodIndex::service_demand`])?
fn is_service(p: &PodEntry) -> bool {
    let holds_room = !p.terminal && (p.node.is_some() || p.unschedulable);
    holds_room && !p.pod.is_daemonset() && !runs_to_completion(&p.pod)
}

impl PodIndex {
    /// Adds what the entry `p` of pod `key` contributes.
    pub fn insert(&mut self, key: &str, p: &Arc<PodEntry>) {
        if let (Some(node), false) = (&p.node, p.terminal) {
            let on = self.by_node.entry(node.clone()).or_default();
            on.pods.insert(key.to_string(), p.clone());
            on.requested.add(&p.pod.requests);
            on.daemonset_pods += usize::from(p.pod.is_daemonset());
            on.deleting += usize::from(p.deleting);
        }
        if p.unschedulable {
            self.unschedulable.insert(key.to_string());
        }
        if is_service(p) {
            self.service_demand.add(&p.pod.requests);
        }
    }

    /// Takes out what [`Self::insert`] added for the same entry.
    pub fn remove(&mut self, key: &str, p: &PodEntry) {
        if let (Some(node), false) = (&p.node, p.terminal) {
            if let Some(on) = self.by_node.get_mut(node) {
                on.pods.remove(key);
                on.requested.sub(&p.pod.requests);
                on.daemonset_pods -= usize::from(p.pod.is_daemonset());
                on.deleting -= usize::from(p.deleting);
                // A node's entry goes with its last pod, so the map does not keep every
                // node name ever seen.
                if on.pods.is_empty() {
                    self.by_node.remove(node);
                }
            }
        }
        if p.unschedulable {
            self.unschedulable.remove(key);
        }
        if is_service(p) {
            self.service_demand.sub(&p.pod.requests);
        }
    }

    /// The unfinished pods bound to `node`, if any.
    pub fn on(&self, node: &str) -> Option<&NodePods> {
        self.by_node.get(node)
    }

    /// The unfinished pods bound to each node name, in name order.
    pub fn by_node(&self) -> impl Iterator<Item = (&String, &NodePods)> {
        self.by_node.iter()
    }

    /// Keys of the unschedulable pods, in key order.
    pub fn unschedulable(&self) -> impl Iterator<Item = &str> {
        self.unschedulable.iter().map(String::as_str)
    }

    pub fn any_unschedulable(&self) -> bool {
        !self.unschedulable.is_empty()
    }

    pub fn service_demand(&self) -> &Resources {
        &self.service_demand
    }

    /// The index of `pods` built from scratch: what the kept one must equal.
    pub fn rebuilt<'a>(pods: impl IntoIterator<Item = (&'a String, &'a Arc<PodEntry>)>) -> Self {
        let mut index = PodIndex::default();
        for (key, p) in pods {
            index.insert(key, p);
        }
        index
    }
}
