//! Which replica a ReplicaSet removes when it scales down: stevedore steers it with the
//! `controller.kubernetes.io/pod-deletion-cost` annotation, so that scale-downs empty
//! whole nodes (which then go as empty nodes, evicting nothing) instead of thinning
//! every node a little.
//!
//! The ReplicaSet controller deletes, among its running pods, the ones with the lowest
//! deletion cost first (after unscheduled and not-ready pods; ties fall to its own
//! order, newest first). stevedore gives a pod a low cost when its node is dear for the
//! few pods it still holds: such a node empties soonest, and saves the most when it does.
//! On daily-web's evening fall, nodes that hold one or two survivors of the morning's
//! rise each were most of the cost above the shape bound; steering the deletions there
//! is the one saving that needs no eviction.
//!
//! The simulator's ReplicaSet controller ranks by [`cost`] of the pods' nodes as they
//! are at the deletion; the controller writes [`cost`] into the annotation of each pod
//! whose value changed (the value moves in coarse steps, so a pod arriving on or leaving
//! a node of more than a few pods rarely rewrites its neighbours).

use super::pod::Pod;

/// The annotation the ReplicaSet controller reads (beta since Kubernetes 1.22, on by
/// default).
pub const ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Steps of [`cost`] per doubling of a node's pods² / price: a node with one pod more, or
/// a price 41% higher, ranks apart, while a pod arriving on or leaving a node of more than
/// five pods mostly leaves its neighbours' annotations as they are. Every write is a pod
/// update the API server sends to every watcher of pods. Counted in the simulator over
/// week-100k (each pod whose value changes at a bind or an unbind, before the
/// controller's passes merge them): 2.01 million writes with 16 steps, 0.84 million with
/// 4, 0.49 million with 2; cost $2,058.99, $2,065.90 and $2,062.49, and daily-web (seeds
/// 1-3) alike to within $0.05.
const STEPS_PER_DOUBLING: f64 = 2.0;

/// Whether stevedore sets this pod's deletion cost: a ReplicaSet's pod (the Deployment's
/// scale-downs and rollouts remove them) with no topology spread constraint. The
/// ReplicaSet controller ignores spread when it deletes, so steering the deletions of
/// spread pods into a few nodes skews their zones, and the next scale-up must launch in
/// the zone left short while the others still have room. Measured on the bundled traces
/// (seed 1, with price per pod as the score): steering them too cost 1.5% more on
/// `mixed` and 1.1% more on `batch-mixed` than leaving them alone, and steering them
/// only within the zones holding the most of their replicas 4.7% more on `batch-mixed`.
pub fn steers(pod: &Pod) -> bool {
    pod.owner.as_ref().is_some_and(|o| o.kind == "ReplicaSet") && pod.spread.is_empty()
}

/// The deletion cost of a pod on a node that costs `price_per_hour` and runs `pods`
/// pods (DaemonSet pods not counted): lower is deleted first. It grows with the square
/// of the pods (a node with one pod left empties at the next deletion, one with two needs
/// two) and falls with the price (a dear node saves more when it goes), on a log scale
/// in steps (`STEPS_PER_DOUBLING`). Seed 1 of daily-web, against $86.75 for the trace's
/// youngest-first (measured before the steps): pods per node alone $84.25, price per pod
/// $84.23, price per pod² $83.79 (and the fewest evictions).
pub fn cost(price_per_hour: f64, pods: usize) -> i32 {
    let pods = pods.max(1) as f64;
    // A node without a price (unmanaged, or not known) is never worth emptying.
    if price_per_hour.is_nan() || price_per_hour <= 0.0 {
        return i32::MAX;
    }
    let value = pods * pods / price_per_hour;
    let steps = (STEPS_PER_DOUBLING * value.log2()).round();
    steps.clamp(i32::MIN as f64 + 1.0, i32::MAX as f64 - 1.0) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pod::{OwnerRef, TopologyKey, TopologySpread};

    #[test]
    fn a_dear_node_with_few_pods_loses_its_pods_first() {
        // One pod on a $0.012/h node goes before one of two on the same type.
        assert!(cost(0.012, 1) < cost(0.012, 2));
        // One pod on a GPU node goes before one pod on a small node.
        assert!(cost(0.25, 1) < cost(0.012, 1));
        // Two pods on a node twice as dear as a one-pod node: the one-pod node first
        // (it empties at the next deletion).
        assert!(cost(0.012, 1) < cost(0.024, 2));
        // An unpriced node is never chosen over a priced one.
        assert_eq!(cost(0.0, 1), i32::MAX);
        assert!(cost(100.0, 250) < i32::MAX);
    }

    #[test]
    fn the_cost_moves_in_steps() {
        // 30 and 31 pods on one node: the neighbours' annotations need no rewrite.
        assert_eq!(cost(1.0, 30), cost(1.0, 31));
        // One pod more on a small node, or a price 41% higher, ranks apart.
        assert_ne!(cost(1.0, 1), cost(1.0, 2));
        assert_ne!(cost(1.0, 3), cost(1.0, 4));
        assert!(cost(1.42, 3) < cost(1.0, 3));
    }

    #[test]
    fn only_replica_set_pods_without_spread_are_steered() {
        let mut pod = Pod {
            owner: Some(OwnerRef {
                kind: "ReplicaSet".into(),
                name: "web-abc".into(),
            }),
            ..Default::default()
        };
        assert!(steers(&pod));
        pod.spread.push(TopologySpread {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".into(),
            kind: TopologyKey::Zone,
            hard: true,
            selector: Default::default(),
            min_domains: None,
        });
        assert!(!steers(&pod), "spread pods keep the ReplicaSet's own order");
        pod.spread.clear();
        pod.owner.as_mut().unwrap().kind = "StatefulSet".into();
        assert!(!steers(&pod), "a StatefulSet removes its highest ordinal");
        pod.owner = None;
        assert!(!steers(&pod));
    }
}
