//! Which replica a ReplicaSet removes when it scales down: stevedore steers it with the
//! `controller.kubernetes.io/pod-deletion-cost` annotation, so that scale-downs empty
//! whole nodes (which then go as empty nodes, evicting nothing) instead of thinning
//! every node a little.
//!
//! The ReplicaSet controller deletes, among its running pods, the ones with the lowest
//! deletion cost first (after unscheduled and not-ready pods; ties fall to its own
//! order, newest first). stevedore gives a pod a low cost when its node is dear for the
//! little of it its pods use: such a node empties soonest, and saves the most when it
//! does. On daily-web's evening fall, nodes that hold one or two survivors of the
//! morning's rise each were most of the cost above the shape bound; steering the
//! deletions there is the one saving that needs no eviction.
//!
//! The simulator's ReplicaSet controller ranks by [`cost`] of the pods' nodes as they
//! are at the deletion; the controller writes [`cost`] into the annotation of each pod
//! whose value changed (the value moves in coarse steps, so a pod arriving on or leaving
//! a node of more than a few pods rarely rewrites its neighbours).

use super::pod::Pod;
use super::resources::Resources;

/// The annotation the ReplicaSet controller reads (beta since Kubernetes 1.22, on by
/// default).
pub const ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Steps of [`cost`] per doubling of a node's used share / price: a node used 41% more,
/// or 41% cheaper, ranks apart, while a pod arriving on or leaving a node it shares with
/// many others mostly leaves their annotations as they are. Every write is a pod update
/// the API server sends to every watcher of pods. With the earlier pods² / price score,
/// counted in the simulator over week-100k (each pod whose value changes at a bind or an
/// unbind, before the controller's passes merge them): 2.01 million writes with 16
/// steps, 0.84 million with 4, 0.49 million with 2, at costs within 0.3%. With the used
/// share, 2, 4 and 8 steps cost alike on daily-web (seeds 1-3: $80.41, $80.39, $80.44).
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

/// The deletion cost of a pod on a node that costs `price_per_hour` and whose pods use
/// `used` of its room (see [`used_share`]): lower is deleted first. It grows with the
/// share used (a node little used empties soonest, and the pods left there hold the
/// least) and falls with the price (a dear node saves more when it goes), on a log scale
/// in steps (`STEPS_PER_DOUBLING`).
///
/// Seeds 1-3 of the bundled traces, against the pods² / price of the release before:
/// daily-web $82.39 -> $80.41 (1.113x -> 1.087x of the shape bound), week-100k $1,982.98
/// -> $1,929.40, mixed $190.93 -> $189.17, with fewer pods evicted per node-hour on each.
/// The count of pods ranked nodes of one type alike whatever their pods' sizes: a node
/// left with one 2 GiB pod outranked one left with two 0.5 GiB pods, and kept the larger
/// share of the room. Pods² times the share scored $82.21 on daily-web, and the share
/// squared $81.49.
pub fn cost(price_per_hour: f64, used: f64) -> i32 {
    // A node without a price (unmanaged, or not known) is never worth emptying.
    if price_per_hour.is_nan() || price_per_hour <= 0.0 {
        return i32::MAX;
    }
    let value = used.max(1e-9) / price_per_hour;
    let steps = (STEPS_PER_DOUBLING * value.log2()).round();
    steps.clamp(i32::MIN as f64 + 1.0, i32::MAX as f64 - 1.0) as i32
}

/// The share of a node's room for pods (`room`: its allocatable less its DaemonSet pods'
/// requests) that `pods` (the sum of its other pods' requests) take: the largest of the
/// shares of cpu, memory, pod slots and each extended resource.
pub fn used_share(pods: &Resources, room: &Resources) -> f64 {
    let share = |used: i64, have: i64| {
        if used <= 0 {
            0.0
        } else if have <= 0 {
            1.0
        } else {
            used as f64 / have as f64
        }
    };
    let mut s = share(pods.cpu_milli, room.cpu_milli)
        .max(share(pods.memory, room.memory))
        .max(share(pods.pods, room.pods));
    for (name, v) in &pods.extended {
        s = s.max(share(*v, room.extended(name)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pod::{OwnerRef, TopologyKey, TopologySpread};

    const GIB: i64 = 1 << 30;

    #[test]
    fn a_dear_node_little_used_loses_its_pods_first() {
        // A quarter used goes before half used, on the same type.
        assert!(cost(0.012, 0.25) < cost(0.012, 0.5));
        // A little-used GPU node goes before a little-used small node.
        assert!(cost(0.25, 0.25) < cost(0.012, 0.25));
        // Half of a node twice as dear goes with a quarter of the cheaper one: the same
        // dollars per share used.
        assert_eq!(cost(0.024, 0.5), cost(0.012, 0.25));
        // An unpriced node is never chosen over a priced one.
        assert_eq!(cost(0.0, 0.1), i32::MAX);
        assert!(cost(100.0, 1.0) < i32::MAX);
    }

    #[test]
    fn the_share_is_the_fullest_resource() {
        let room = Resources::new(1750, 3 * GIB, 14);
        // One 1-CPU / 2-GiB pod takes two thirds of the memory: that is the share.
        let api = Resources::new(1000, 2 * GIB, 1);
        assert!((used_share(&api, &room) - 2.0 / 3.0).abs() < 1e-12);
        // Two 0.5-CPU / 1-GiB pods take as much: they rank alike (by count, the node
        // with one pod went first).
        let webs = Resources::new(1000, 2 * GIB, 2);
        assert_eq!(
            cost(0.012, used_share(&webs, &room)),
            cost(0.012, used_share(&api, &room))
        );
        // Pod slots count: fourteen tiny pods fill the node.
        let tiny = Resources::new(140, 14 << 20, 14);
        assert_eq!(used_share(&tiny, &room), 1.0);
        // An extended resource counts too, and one the node lacks fills it.
        let mut gpu = Resources::new(100, GIB, 1);
        gpu.set("nvidia.com/gpu", 1);
        let mut gpu_room = room.clone();
        gpu_room.set("nvidia.com/gpu", 4);
        assert!((used_share(&gpu, &gpu_room) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(used_share(&gpu, &room), 1.0);
        assert_eq!(used_share(&Resources::default(), &room), 0.0);
    }

    #[test]
    fn the_cost_moves_in_steps() {
        // 30 and 31 pods of one size on a large node: their neighbours need no rewrite.
        assert_eq!(cost(1.0, 0.30), cost(1.0, 0.31));
        // A share 41% higher, or a price 41% higher, ranks apart.
        assert_ne!(cost(1.0, 0.25), cost(1.0, 0.36));
        assert!(cost(1.42, 0.5) < cost(1.0, 0.5));
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
