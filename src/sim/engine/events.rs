//! The event queue and what each event does: the simulator's own events (nodes
//! becoming ready, pods finishing, scans, batch windows, Spot warnings and reclaims, a
//! change of the pools) and the trace's (pods and nodes added or deleted, capacity
//! shortages).

use super::state::{NodeState, PodState, Sim, SimNode, SimPod};
use crate::core::disruption;
use crate::core::labels;
use crate::core::pod::Pod;
use crate::core::shape_bound::bound_class;
use crate::sim::report::Mark;
use crate::sim::Mode;
use crate::trace::{EventKind, SpotTarget};
use std::cmp::Reverse;

#[derive(Clone, Debug)]
pub(super) enum Ev {
    NodeReady(usize),
    PodFinish(usize, u32),
    Scan,
    BatchCheck,
    SpotWarning { target: SpotTarget, reclaim_at: f64 },
    SpotReclaim(usize),
    PoolsChanged,
}

/// Event-queue key: non-negative finite seconds order like their bit patterns.
fn key(t: f64) -> u64 {
    t.max(0.0).to_bits()
}

impl<'c> Sim<'c> {
    pub(super) fn push(&mut self, t: f64, ev: Ev) {
        self.events.push(Some(ev));
        self.seq += 1;
        self.queue
            .push(Reverse((key(t), self.seq, self.events.len() - 1)));
    }

    pub(super) fn trace_event(&mut self, kind: &'c EventKind) {
        match kind {
            EventKind::PodAdded { pod, run_for_s } => self.pod_added(pod, *run_for_s),
            EventKind::PodDeleted { namespace, name } => {
                if let Some(&i) = self.pod_index.get(&(namespace.as_str(), name.as_str())) {
                    let i = self.replica_to_delete(i);
                    self.end_pod(i);
                }
            }
            EventKind::NodeAdded { node } => {
                let idx = self.nodes.len();
                self.nodes.push(SimNode {
                    name: node.name.clone(),
                    labels: node.labels.clone(),
                    zone: labels::zone(&node.labels).map(str::to_string),
                    taints: node.taints.clone(),
                    capacity: node.allocatable.clone(),
                    allocatable: node.allocatable.clone(),
                    ..SimNode::new(self.now, NodeState::Ready)
                });
                self.live.push(idx);
                self.node_changes += 1;
                self.sched_dirty = true;
                self.full_pass = true;
            }
            EventKind::CapacityUnavailable {
                instance_type,
                zone,
                capacity_type,
                for_s,
            } => self
                .cloud
                .add_shortage(instance_type, zone, capacity_type, self.now, *for_s),
            // Scheduled ahead as a warning (see `run`).
            EventKind::SpotInterruption(_) => {}
        }
    }

    fn pod_added(&mut self, pod: &'c Pod, run_for_s: Option<f64>) {
        if pod.is_daemonset() {
            // A DaemonSet pod is a template of per-node overhead; it replaces the
            // settings' DaemonSet of the same name.
            let owner = pod
                .owner
                .as_ref()
                .map(|o| o.name.clone())
                .unwrap_or_default();
            self.daemonsets.retain(|d| {
                !(d.namespace == pod.namespace && d.owner.as_ref().is_some_and(|o| o.name == owner))
            });
            self.daemonsets.push(pod.clone());
            self.model = None;
            self.fleet_model = None;
            return;
        }
        self.ensure_models();
        let class = self.classes.class_of(pod);
        let (infeasible, in_demand) = self.feasibility(pod, class);
        let idx = self.pods.len();
        self.pods.push(SimPod {
            pod,
            added_at: self.now,
            run_for_s,
            state: PodState::Pending,
            ever_bound: false,
            infeasible,
            in_demand,
            generation: 0,
            class,
            bound_group: 0,
        });
        self.pod_index.insert((&pod.namespace, &pod.name), idx);
        self.replica_added(idx);
        self.set_state(idx, PodState::Pending);
        if in_demand {
            self.demand.add(&pod.requests);
            *self
                .demand_classes
                .entry(bound_class(&pod.requests))
                .or_insert(0) += 1;
            let group = self.bound_group(pod, class);
            self.pods[idx].bound_group = group;
            *self
                .constrained_classes
                .entry((bound_class(&pod.requests), group))
                .or_insert(0) += 1;
            self.demand_dirty = true;
            if !disruption::runs_to_completion(pod) {
                self.service_demand.add(&pod.requests);
            }
        }
        self.sched_dirty = true;
        self.new_pending.push(idx);
        if self.pods[idx].infeasible.is_none() {
            self.open_batch();
        }
    }

    pub(super) fn open_batch(&mut self) {
        let idle = self.settings().batch_idle.as_secs_f64();
        self.batch_start.get_or_insert(self.now);
        self.batch_last = self.now;
        self.push(self.now + idle, Ev::BatchCheck);
    }

    pub(super) fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::NodeReady(n) => {
                if self.nodes[n].state == NodeState::Launching {
                    self.nodes[n].state = NodeState::Ready;
                    if self.nodes[n].managed() {
                        self.fleet_totals.ready_node(&self.nodes[n], 1);
                    }
                    self.nodes[n].stable_since = self.now;
                    self.node_changes += 1;
                    if self.nodes[n].pods.is_empty() {
                        self.nodes[n].empty_since = Some(self.now);
                    }
                    self.sched_dirty = true;
                    self.full_pass = true;
                    self.replacement_ready(n);
                    if self.mode == Mode::Fleet {
                        // Room appeared: interrupted nodes' pods may move now, not at
                        // the next scan.
                        self.drain_interrupted();
                    }
                }
            }
            Ev::PodFinish(i, generation) => {
                if self.pods[i].generation == generation
                    && matches!(self.pods[i].state, PodState::Bound(_))
                {
                    self.end_pod(i);
                }
            }
            Ev::Scan => {
                self.cloud.expire(self.now);
                self.unavailable.expire(self.now);
                if self.sched_dirty {
                    self.schedule_pass();
                }
                self.provision();
                self.scale_down();
                self.sample();
                self.sample_headroom();
                let next = self.now + self.settings().scan_interval.as_secs_f64();
                self.push(next, Ev::Scan);
            }
            Ev::BatchCheck => {
                let Some(start) = self.batch_start else {
                    return;
                };
                let s = self.settings();
                let idle_done = self.now + 1e-9 >= self.batch_last + s.batch_idle.as_secs_f64();
                let max_done = self.now + 1e-9 >= start + s.batch_max.as_secs_f64();
                if idle_done || max_done {
                    if self.sched_dirty {
                        self.schedule_pass();
                    }
                    self.provision();
                }
            }
            Ev::SpotWarning { target, reclaim_at } => self.spot_warning(&target, reclaim_at),
            Ev::SpotReclaim(n) => {
                if self.nodes[n].state != NodeState::Terminated {
                    let evicted = self.nodes[n].pods.len() as u64;
                    self.disruptions.interrupted += 1;
                    self.disruptions.pods_evicted += evicted;
                    self.marks.push(Mark {
                        t: self.now,
                        kind: "interrupted",
                    });
                    self.terminate(n);
                }
            }
            Ev::PoolsChanged => {
                if let (Mode::Fleet, Some(pools)) = (self.mode, self.pool_change.take()) {
                    self.pool_hashes = pools.iter().map(disruption::template_hash).collect();
                    self.stale_hash_nodes = self
                        .live
                        .iter()
                        .filter(|&&n| {
                            let node = &self.nodes[n];
                            node.pool.is_some_and(|p| node.hash != self.pool_hashes[p])
                        })
                        .count();
                    self.pools = pools;
                    self.model = None;
                    self.changes += 1;
                }
            }
        }
    }
}
