//! Node-groups mode (the Cluster Autoscaler's way): fixed groups of one instance type,
//! scaled by count. Pure decisions shared by the simulator and the controller, so the
//! two cannot decide differently: which group grows and by how much (least waste), how
//! busy a node is, and whether a node's pods may move and fit elsewhere.

use super::consolidation;
use super::instance::CapacityType;
use super::labels::{self, Labels};
use super::nodepool::{NodePool, PoolLimits};
use super::pod::Pod;
use super::requirements::{Operator, Requirement};
use super::resources::Resources;
use super::scheduler::{
    place_on_existing, place_on_existing_ordered, solve_launches_ordered, LaunchPlan, PendingOrder,
    SolveEnv,
};
use super::snapshot::{PodClasses, Snapshot};
use super::taints::Taint;

/// The node pool a group is to the scheduler: its one instance type and capacity type,
/// in its zones, with its nodes' labels and taints.
pub fn group_pool(
    name: &str,
    instance_type: &str,
    capacity_type: CapacityType,
    zones: &[String],
    node_labels: &Labels,
    taints: &[Taint],
) -> NodePool {
    let zones: Vec<&str> = zones.iter().map(String::as_str).collect();
    NodePool {
        name: name.to_string(),
        weight: 0,
        requirements: vec![
            Requirement::new(labels::INSTANCE_TYPE, Operator::In, &[instance_type]),
            Requirement::new(
                labels::KARPENTER_CAPACITY_TYPE,
                Operator::In,
                &[capacity_type.as_str()],
            ),
            Requirement::new(labels::ZONE, Operator::In, &zones),
        ],
        labels: node_labels.clone(),
        taints: taints.to_vec(),
        startup_taints: Vec::new(),
        limits: PoolLimits::default(),
        empty_node_after: None,
    }
}

/// One scale-up: `plans.len()` more nodes for group `group` (pool index).
#[derive(Clone, Debug)]
pub struct ScaleUp {
    pub group: usize,
    pub plans: Vec<LaunchPlan>,
    /// Unused fraction of CPU plus that of memory on the new nodes.
    pub waste: f64,
    /// Pods the new nodes take.
    pub helped: usize,
}

/// The least-waste expander: for each group with `room[g]` > 0 (pools are the groups,
/// in order), how many of its nodes the pending pods need; the group wasting the least
/// CPU and memory wins (ties: the one helping more pods). `None` when the pending pods
/// fit on existing or launching nodes, or no group helps.
pub fn scale_up(env: &SolveEnv, snapshot: &Snapshot, room: &[usize]) -> Option<ScaleUp> {
    let classes = PodClasses::of(&snapshot.pending);
    scale_up_ordered(
        env,
        snapshot,
        room,
        &PendingOrder::new(&snapshot.pending, classes),
    )
}

/// [`scale_up`] with the pending pods' classes and order made: the groups' trials share
/// them instead of each finding them again, which cost more than the trials when
/// thousands of pods wait for groups at their maximum size.
pub fn scale_up_ordered(
    env: &SolveEnv,
    snapshot: &Snapshot,
    room: &[usize],
    pending: &PendingOrder,
) -> Option<ScaleUp> {
    // No group may grow: nothing to decide (every trial below would find no room).
    if room.iter().all(|&r| r == 0) {
        return None;
    }
    // With no group to grow, a pod is placed on an existing or launching node or not at
    // all: every pod placed is the settled case.
    if place_on_existing_ordered(env, snapshot, pending).len() == snapshot.pending.len() {
        return None;
    }
    let mut best: Option<ScaleUp> = None;
    for (g, &room) in room.iter().enumerate() {
        let Some(candidate) = try_group(env, snapshot, g, room, pending) else {
            continue;
        };
        let better = best.as_ref().is_none_or(|b| {
            candidate.waste < b.waste - 1e-9
                || ((candidate.waste - b.waste).abs() <= 1e-9 && candidate.helped > b.helped)
        });
        if better {
            best = Some(candidate);
        }
    }
    best
}

/// What growing group `g` alone (by at most `room` nodes) would do.
fn try_group(
    env: &SolveEnv,
    snapshot: &Snapshot,
    g: usize,
    room: usize,
    pending: &PendingOrder,
) -> Option<ScaleUp> {
    if room == 0 {
        return None;
    }
    let only = [g];
    let env = SolveEnv {
        pool_filter: Some(&only),
        ..*env
    };
    let mut plans = solve_launches_ordered(&env, snapshot, pending);
    plans.truncate(room);
    if plans.is_empty() {
        return None;
    }
    let (mut alloc, mut req) = (Resources::default(), Resources::default());
    for p in &plans {
        let Some(o) = p.options.first() else { continue };
        let pool = env.model.pools.get(g);
        if let Some(pt) = pool.and_then(|m| m.types.iter().find(|t| t.ty == o.instance_type)) {
            alloc.add(&pt.usable);
        }
        req.add(&p.requested);
    }
    let frac = |a: i64, r: i64| {
        if a > 0 {
            (a - r) as f64 / a as f64
        } else {
            1.0
        }
    };
    let waste = frac(alloc.cpu_milli, req.cpu_milli) + frac(alloc.memory, req.memory);
    let helped = plans.iter().map(|p| p.pods.len()).sum();
    Some(ScaleUp {
        group: g,
        plans,
        waste,
        helped,
    })
}

/// How busy a node is: the larger of its CPU and memory requested fractions (a node
/// without allocatable counts as full).
pub fn utilization(requested: &Resources, allocatable: &Resources) -> f64 {
    let util = |r: i64, a: i64| if a > 0 { r as f64 / a as f64 } else { 1.0 };
    util(requested.cpu_milli, allocatable.cpu_milli).max(util(requested.memory, allocatable.memory))
}

/// May these pods be moved? The Cluster Autoscaler keeps nodes with a pod that has no
/// controller (unless it says safe-to-evict "true"), says do-not-disrupt / safe-to-evict
/// "false", or uses local storage.
pub fn movable(pods: &[&Pod]) -> bool {
    pods.iter().all(|p| consolidation::movable_pod(p))
}

/// Do `snapshot.pending` (the pods of a node to remove, left out of `snapshot`'s nodes
/// or unschedulable there) all fit on the ready nodes, without new ones?
pub fn fits_elsewhere(env: &SolveEnv, snapshot: &Snapshot) -> bool {
    let env = SolveEnv {
        allow_new_nodes: false,
        use_launching_nodes: false,
        ..*env
    };
    place_on_existing(&env, snapshot).len() == snapshot.pending.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pod::OwnerRef;

    fn res(cpu_milli: i64, memory: i64) -> Resources {
        Resources {
            cpu_milli,
            memory,
            ..Default::default()
        }
    }

    #[test]
    fn utilization_is_the_busier_of_cpu_and_memory() {
        assert_eq!(utilization(&res(500, 1), &res(2000, 100)), 0.25);
        assert_eq!(utilization(&res(100, 80), &res(2000, 100)), 0.8);
        // Nothing allocatable: counted as full, never removed for being idle.
        assert_eq!(utilization(&res(0, 0), &Resources::default()), 1.0);
    }

    #[test]
    fn only_pods_with_a_controller_that_may_be_disrupted_move() {
        let owned = Pod {
            owner: Some(OwnerRef {
                kind: "ReplicaSet".into(),
                name: "web-7d9f".into(),
            }),
            ..Default::default()
        };
        assert!(movable(&[&owned]));
        assert!(movable(&[]));
        let bare = Pod::default();
        assert!(!movable(&[&owned, &bare]));
        let mut pinned = owned.clone();
        pinned
            .annotations
            .insert("karpenter.sh/do-not-disrupt".into(), "true".into());
        assert!(!movable(&[&pinned]));
    }

    #[test]
    fn a_group_pool_pins_its_type_capacity_type_and_zones() {
        let zones = vec!["us-east-1a".to_string(), "us-east-1b".to_string()];
        let p = group_pool(
            "g",
            "m5.large",
            CapacityType::Spot,
            &zones,
            &Labels::new(),
            &[],
        );
        let mut l = Labels::new();
        l.insert(labels::INSTANCE_TYPE.into(), "m5.large".into());
        l.insert(labels::KARPENTER_CAPACITY_TYPE.into(), "spot".into());
        l.insert(labels::ZONE.into(), "us-east-1b".into());
        assert!(p.requirements.iter().all(|r| r.matches(&l)));
        l.insert(labels::ZONE.into(), "us-east-1c".into());
        assert!(!p.requirements.iter().all(|r| r.matches(&l)));
    }
}
