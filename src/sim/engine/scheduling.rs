//! The simulated kube-scheduler (the core placing only on ready nodes), and the
//! cluster as every decision sees it: the snapshot, each node as the core's
//! `ExistingNode`, the solve environment, and whether a pod is feasible at all.

use super::state::{NodeState, PodState, Sim};
use crate::core::pod::Pod;
use crate::core::scheduler::{self, Decision, SolveEnv};
use crate::core::shape_bound::bound_class;
use crate::core::snapshot::{ExistingNode, PodClasses, Snapshot};
use crate::core::unavailable::UnavailableOfferings;
use std::time::Instant;

impl Sim<'_> {
    /// The simulated kube-scheduler: binds pending pods to ready nodes.
    ///
    /// Only when room appeared (a node became ready, a pod left) can a pod that found no
    /// place before find one now; otherwise only the pods new since the last pass are
    /// tried, with those whose pod affinity a new neighbour may have satisfied.
    pub(super) fn schedule_pass(&mut self) {
        self.sched_dirty = false;
        let pending: Vec<usize> = if std::mem::take(&mut self.full_pass) {
            self.new_pending.clear();
            self.pending_pods()
        } else {
            let mut fresh: Vec<usize> = self
                .new_pending
                .drain(..)
                .chain(
                    self.pending
                        .iter()
                        .copied()
                        .filter(|&i| !self.pods[i].pod.affinity.is_empty()),
                )
                .filter(|i| self.pending.contains(i))
                .collect();
            fresh.sort_unstable();
            fresh.dedup();
            fresh
        };
        if pending.is_empty() {
            return;
        }
        self.ensure_models();
        let (snapshot, node_ids, pending_ids) =
            self.snapshot_with_room(&pending, false, false, self.room_needed(&pending));
        let classes = self.classes_of(&pending_ids, 0);
        let placed =
            scheduler::place_on_existing_classified(&self.env(None, false), &snapshot, classes);
        drop(snapshot);
        for (pi, ni) in placed {
            self.bind(pending[pi], node_ids[ni]);
        }
    }

    /// The least room (cpu, memory) a node needs to take any of `pending`, when the nodes
    /// with less can be left out of the simulated kube-scheduler's snapshot without
    /// changing where it binds: none of the pods has a spread or (anti-)affinity rule,
    /// and no bound pod has an anti-affinity term, so a node's other pods matter to
    /// none of them, and a node without that room takes none of them. Most nodes of a
    /// large cluster are full; building each of them for every pass was most of a replay.
    fn room_needed(&self, pending: &[usize]) -> Option<(i64, i64)> {
        if self.anti_affinity_bound > 0 {
            return None;
        }
        let mut least: Option<(i64, i64)> = None;
        for &i in pending {
            let pod = self.pods[i].pod;
            if !(pod.spread.is_empty() && pod.affinity.is_empty() && pod.anti_affinity.is_empty()) {
                return None;
            }
            let r = &pod.requests;
            least = Some(least.map_or((r.cpu_milli, r.memory), |(c, m)| {
                (c.min(r.cpu_milli), m.min(r.memory))
            }));
        }
        least
    }

    /// Runs the core over the current state. Returns the decision, the sim node index of
    /// each snapshot node, and the wall-clock milliseconds it took.
    pub(super) fn solve<'s>(
        &'s self,
        pending: &[usize],
        placeholders: &'s [Pod],
        new_nodes: bool,
        pool_filter: Option<&[usize]>,
        displaced: bool,
    ) -> (Decision, Vec<usize>, f64) {
        let (mut snapshot, node_ids, pending_ids) =
            self.snapshot_with_room(pending, new_nodes, displaced, None);
        // Headroom placeholders: the scheduler places them after every real pod (lowest
        // priority); the caller never binds them.
        snapshot.pending.extend(placeholders);
        let classes = self.classes_of(&pending_ids, placeholders.len());
        let env = self.env(pool_filter, new_nodes);
        let started = Instant::now();
        let decision = scheduler::solve_classified(&env, &snapshot, classes);
        (decision, node_ids, started.elapsed().as_secs_f64() * 1000.0)
    }

    /// The snapshot a decision sees, and the sim node index of each snapshot node:
    /// without `new_nodes`, only ready and uncordoned nodes (the kube-scheduler's view);
    /// with `displaced`, an interrupted node's pods are pending again.
    pub(super) fn snapshot(
        &self,
        pending: &[usize],
        new_nodes: bool,
        displaced: bool,
    ) -> (Snapshot<'_>, Vec<usize>) {
        let (snapshot, node_ids, _) = self.snapshot_with_room(pending, new_nodes, displaced, None);
        (snapshot, node_ids)
    }

    /// The classes of the sim pods `pending_ids`, then of `alone` more pods (headroom
    /// placeholders) each in a class of its own.
    pub(super) fn classes_of(&self, pending_ids: &[usize], alone: usize) -> PodClasses {
        let own = (0..alone as u32).map(|i| u32::MAX - i);
        PodClasses::from_ids(pending_ids.iter().map(|&i| self.pods[i].class).chain(own))
    }

    /// [`Self::snapshot`], leaving out the nodes without `room_for` (cpu, memory) left;
    /// with the sim pod index of each snapshot pod pending.
    pub(super) fn snapshot_with_room(
        &self,
        pending: &[usize],
        new_nodes: bool,
        displaced: bool,
        room_for: Option<(i64, i64)>,
    ) -> (Snapshot<'_>, Vec<usize>, Vec<usize>) {
        let mut node_ids = Vec::new();
        let mut nodes = Vec::new();
        for &n in &self.live {
            let node = &self.nodes[n];
            if !new_nodes && (node.state != NodeState::Ready || node.cordoned) {
                continue;
            }
            if let Some((cpu, memory)) = room_for {
                let (a, t) = (&node.allocatable, &node.taken);
                if a.cpu_milli - t.cpu_milli < cpu || a.memory - t.memory < memory {
                    continue;
                }
            }
            node_ids.push(n);
            nodes.push(self.existing(n));
        }
        // Sized once: growing it pod by pod copied it over and over on large clusters.
        let bound_len = node_ids.iter().map(|&n| self.nodes[n].pods.len()).sum();
        let mut bound = Vec::with_capacity(bound_len);
        let mut pending_ids = pending.to_vec();
        for (si, &n) in node_ids.iter().enumerate() {
            let node = &self.nodes[n];
            for &p in &node.pods {
                if node.interrupted && displaced {
                    // Pods of an interrupted node need a new home before it goes.
                    pending_ids.push(p);
                } else if !node.cordoned {
                    bound.push((self.pods[p].pod, si));
                }
            }
        }
        let snapshot = Snapshot {
            nodes,
            bound,
            pending: pending_ids.iter().map(|&i| self.pods[i].pod).collect(),
        };
        (snapshot, node_ids, pending_ids)
    }

    pub(super) fn existing(&self, n: usize) -> ExistingNode<'_> {
        let node = &self.nodes[n];
        // A replacement's room is taken by the pods of the node it replaces.
        let mut requested = node.taken.clone();
        if let Some(r) = self.reserved_on(n) {
            requested.add(&r);
        }
        ExistingNode {
            name: &node.name,
            labels: &node.labels,
            zone: node.zone.as_deref(),
            capacity: &node.capacity,
            allocatable: &node.allocatable,
            requested,
            taints: &node.taints,
            pool: node.pool,
            ready: node.state == NodeState::Ready,
            schedulable: !node.cordoned,
        }
    }

    pub(super) fn env<'s>(
        &'s self,
        pool_filter: Option<&'s [usize]>,
        new_nodes: bool,
    ) -> SolveEnv<'s> {
        SolveEnv {
            catalog: self.catalog,
            pools: &self.pools,
            model: self.model.as_ref().expect("models built"),
            unavailable: &self.unavailable,
            now: self.now,
            max_launch_options: self.settings().max_launch_options,
            pool_filter,
            allow_new_nodes: new_nodes,
            use_launching_nodes: new_nodes,
            split_claims: true,
            exclude_node: None,
        }
    }

    /// (Infeasible reason in this mode, feasible for the fleet pools.) Cached by the
    /// pod's scheduling shape: replicas of one workload are checked once.
    /// Pods of one class (`class`) share a shape: after the first, no shape is made.
    pub(super) fn feasibility(&mut self, pod: &Pod, class: u32) -> (Option<String>, bool) {
        if let Some(v) = self.feasibility_by_class.get(&class) {
            return v.clone();
        }
        let v = self.feasibility_of_shape(pod);
        self.feasibility_by_class.insert(class, v.clone());
        v
    }

    /// The environment of a question about one pod and the mode's pools (which offerings
    /// could ever hold it), with every offering available.
    fn question_env<'s>(&'s self, unavailable: &'s UnavailableOfferings) -> SolveEnv<'s> {
        SolveEnv {
            catalog: self.catalog,
            pools: &self.pools,
            model: self.model.as_ref().expect("models built"),
            unavailable,
            now: self.now,
            max_launch_options: 1,
            pool_filter: None,
            allow_new_nodes: true,
            use_launching_nodes: true,
            split_claims: true,
            exclude_node: None,
        }
    }

    /// The pod's node-constraint group in the constrained bound (found once per class).
    pub(super) fn bound_group(&mut self, pod: &Pod, class: u32) -> u32 {
        if let Some(&g) = self.bound_group_by_class.get(&class) {
            return g;
        }
        self.ensure_models();
        let unavailable = UnavailableOfferings::default();
        let env = SolveEnv {
            pools: self.fleet_pools,
            model: self.fleet_model.as_ref().expect("models built"),
            ..self.question_env(&unavailable)
        };
        let allowed = scheduler::offerings_allowing(&env, pod);
        let g = self
            .constrained_bound
            .as_mut()
            .expect("models built")
            .group(&allowed);
        self.bound_group_by_class.insert(class, g);
        g
    }

    /// The constrained bound's classes found again (its groups are per fleet model).
    pub(super) fn regroup_demand(&mut self) {
        self.bound_group_by_class.clear();
        self.constrained_classes.clear();
        for i in 0..self.pods.len() {
            let p = &self.pods[i];
            if !p.in_demand || p.state == PodState::Done {
                continue;
            }
            let (pod, class) = (p.pod, p.class);
            let group = self.bound_group(pod, class);
            self.pods[i].bound_group = group;
            *self
                .constrained_classes
                .entry((bound_class(&pod.requests), group))
                .or_insert(0) += 1;
        }
    }

    fn feasibility_of_shape(&mut self, pod: &Pod) -> (Option<String>, bool) {
        let shape = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}",
            pod.requests, pod.node_selector, pod.required_node_terms, pod.tolerations, pod.affinity
        );
        if let Some(v) = self.feasibility_cache.get(&shape) {
            return v.clone();
        }
        let unavailable = UnavailableOfferings::default();
        let mode_env = self.question_env(&unavailable);
        let mut reason = scheduler::infeasible_reason(&mode_env, pod);
        let fleet_env = SolveEnv {
            pools: self.fleet_pools,
            model: self.fleet_model.as_ref().expect("models built"),
            ..mode_env
        };
        let fleet_ok = scheduler::infeasible_reason(&fleet_env, pod).is_none();
        // A pod a static node could hold is not infeasible.
        if reason.is_some()
            && self.live.iter().any(|&n| {
                let node = &self.nodes[n];
                !node.managed()
                    && pod.requests.fits_in(&node.allocatable)
                    && pod.node_affinity_matches(&node.labels)
                    && crate::core::taints::tolerates_all(&pod.tolerations, &node.taints)
            })
        {
            reason = None;
        }
        let v = (reason, fleet_ok);
        self.feasibility_cache.insert(shape, v.clone());
        v
    }
}
