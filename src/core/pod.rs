//! The scheduling-relevant view of a pod. Built from a `v1.Pod` by `crate::trace::pod`
//! (and later by the cluster shell); the core never sees API types.

use super::labels::Labels;
use super::requirements::{LabelSelector, Requirement};
use super::resources::Resources;
use super::taints::Toleration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TopologyKey {
    Zone,
    Hostname,
    /// Any other label key (e.g. capacity type); counted over node label values.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopologySpread {
    pub max_skew: i32,
    pub topology_key: String,
    pub kind: TopologyKey,
    /// `false` for `whenUnsatisfiable: ScheduleAnyway` (a preference only).
    pub hard: bool,
    pub selector: LabelSelector,
    pub min_domains: Option<i32>,
}

/// A required pod (anti-)affinity term.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodAffinityTerm {
    pub selector: LabelSelector,
    pub topology_key: String,
    pub kind: TopologyKey,
    /// Namespaces the selector applies to; empty = the pod's own namespace.
    pub namespaces: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub annotations: Labels,
    pub owner: Option<OwnerRef>,
    /// Effective requests as the scheduler counts them: max(sum of containers, each init
    /// container) + overhead, with `pods = 1`.
    pub requests: Resources,
    pub node_selector: Labels,
    /// Required node affinity: the terms are ORed, the requirements inside one are ANDed.
    /// Empty means no required node affinity.
    pub required_node_terms: Vec<Vec<Requirement>>,
    /// Preferred node affinity: (weight, requirements).
    pub preferred_node_terms: Vec<(i32, Vec<Requirement>)>,
    pub tolerations: Vec<Toleration>,
    pub spread: Vec<TopologySpread>,
    pub affinity: Vec<PodAffinityTerm>,
    pub anti_affinity: Vec<PodAffinityTerm>,
    pub priority: i32,
    /// Keeps data on its node (`emptyDir` on disk, `hostPath`): evicting it loses that.
    pub local_storage: bool,
}

impl Pod {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn is_daemonset(&self) -> bool {
        self.owner.as_ref().is_some_and(|o| o.kind == "DaemonSet")
    }

    /// Does this pod's node selector and required node affinity accept a node with these
    /// labels?
    pub fn node_affinity_matches(&self, labels: &Labels) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && (self.required_node_terms.is_empty()
                || self
                    .required_node_terms
                    .iter()
                    .any(|term| super::requirements::all_match(term, labels)))
    }

    /// Does a term's selector select `other` (respecting the term's namespaces)?
    pub fn term_selects(&self, term: &PodAffinityTerm, other: &Pod) -> bool {
        let ns_ok = if term.namespaces.is_empty() {
            other.namespace == self.namespace
        } else {
            term.namespaces.contains(&other.namespace)
        };
        ns_ok && term.selector.matches(&other.labels)
    }
}
