//! The simulator's state: the `Sim` value with its nodes, pods, queues and counters,
//! and the bookkeeping every change of it goes through (pods ending, binding and
//! unbinding, pod state changes, node terminations), so the indexes (`pending`,
//! `stuck`), the change counters and the per-node sums stay in step wherever the
//! change comes from.

use super::events::Ev;
use super::headroom;
use super::in_flight::InFlight;
use super::live_view::LiveView;
use super::provisioning::ProvisionInputs;
use crate::config::Config;
use crate::core::constrained_bound::ConstrainedBound;
use crate::core::disruption::{self, PoolDisruption};
use crate::core::instance::{CapacityType, Catalog};
use crate::core::labels::Labels;
use crate::core::lower_bound::LowerBound;
use crate::core::model::SchedulingModel;
use crate::core::nodepool::NodePool;
use crate::core::pod::Pod;
use crate::core::resources::Resources;
use crate::core::rng::Rng;
use crate::core::shape_bound::{bound_class, ShapeBound};
use crate::core::snapshot::ClassRegistry;
use crate::core::taints::Taint;
use crate::core::unavailable::UnavailableOfferings;
use crate::sim::cloud::SimCloud;
use crate::sim::report::{Disruptions, Mark, NodeCounts, Sample};
use crate::sim::Mode;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PodState {
    Pending,
    Bound(usize),
    Done,
}

/// Figures summed over the live nodes: how many are managed, and the requests and
/// allocatable (cpu milli, memory bytes) of the managed ready ones. Kept up to date by
/// every change of them (launch, ready, bind, release, terminate) instead of a walk over
/// every node after each change: on a busy week that walk ran 180,000 times.
#[derive(Clone, Debug, Default)]
pub(super) struct FleetTotals {
    pub(super) managed: i64,
    pub(super) requested: (i64, i64),
    pub(super) allocatable: (i64, i64),
}

impl FleetTotals {
    /// A managed node's pod requests arriving (`sign` 1) or leaving (-1) on a ready node.
    pub(super) fn requests(&mut self, r: &Resources, sign: i64) {
        self.requested.0 += sign * r.cpu_milli;
        self.requested.1 += sign * r.memory;
    }

    /// A managed node becoming ready (`sign` 1) or a ready one going (-1).
    pub(super) fn ready_node(&mut self, node: &SimNode, sign: i64) {
        self.allocatable.0 += sign * node.allocatable.cpu_milli;
        self.allocatable.1 += sign * node.allocatable.memory;
        self.requests(&node.requested, sign);
    }
}

pub(super) struct SimPod<'c> {
    /// The trace's pod: borrowed, as a week of pods copied would double the replay's
    /// memory and its time spent allocating and freeing them.
    pub(super) pod: &'c Pod,
    pub(super) added_at: f64,
    pub(super) run_for_s: Option<f64>,
    pub(super) state: PodState,
    pub(super) ever_bound: bool,
    pub(super) infeasible: Option<String>,
    /// Feasible for the fleet node pools: counted in the lower bound's demand.
    pub(super) in_demand: bool,
    /// Bumped at each bind, so a finish event of an earlier run is ignored.
    pub(super) generation: u32,
    /// Its class in `Sim::classes`: pods of one class are decided alike.
    pub(super) class: u32,
    /// Its node-constraint group in `Sim::constrained_bound` (when `in_demand`).
    pub(super) bound_group: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NodeState {
    Launching,
    Ready,
    Terminated,
}

/// See `Sim::nodes_key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NodesKey {
    changes: u64,
    node_changes: u64,
}

pub(super) struct SimNode {
    pub(super) name: String,
    pub(super) labels: Labels,
    /// The zone label's value (kept beside the labels: decisions read it per node).
    pub(super) zone: Option<String>,
    pub(super) taints: Vec<Taint>,
    pub(super) capacity: Resources,
    pub(super) allocatable: Resources,
    /// DaemonSet overhead reserved on the node.
    pub(super) overhead: Resources,
    /// Sum of the requests of bound pods.
    pub(super) requested: Resources,
    /// `requested` plus `overhead`, kept beside it: what every snapshot of the node
    /// counts as taken (adding the two for each node of each snapshot was a tenth of a
    /// large replay).
    pub(super) taken: Resources,
    pub(super) pods: Vec<usize>,
    pub(super) pool: Option<usize>,
    pub(super) capacity_type: Option<CapacityType>,
    pub(super) price: f64,
    pub(super) launched_at: f64,
    pub(super) state: NodeState,
    pub(super) cordoned: bool,
    /// Cordoned by a Spot interruption warning: its pods need a new home now.
    pub(super) interrupted: bool,
    /// Cordoned for a voluntary disruption (counts against the pool's budgets).
    pub(super) disrupting: bool,
    /// The pool template's hash at launch (drift compares it).
    pub(super) hash: u64,
    /// The node's annotations (from the pool template).
    pub(super) annotations: Labels,
    /// When a pod last arrived or left (consolidation waits `consolidateAfter`).
    pub(super) stable_since: f64,
    pub(super) empty_since: Option<f64>,
    pub(super) unneeded_since: Option<f64>,
}

impl SimNode {
    /// A node with no pods yet, appearing at `now`; callers fill in what it is.
    pub(super) fn new(now: f64, state: NodeState) -> Self {
        SimNode {
            name: String::new(),
            labels: Labels::new(),
            zone: None,
            taints: Vec::new(),
            capacity: Resources::default(),
            allocatable: Resources::default(),
            overhead: Resources::default(),
            requested: Resources::default(),
            taken: Resources::default(),
            pods: Vec::new(),
            pool: None,
            capacity_type: None,
            price: 0.0,
            launched_at: now,
            state,
            cordoned: false,
            interrupted: false,
            disrupting: false,
            hash: 0,
            annotations: Labels::new(),
            stable_since: now,
            empty_since: None,
            unneeded_since: None,
        }
    }

    pub(super) fn managed(&self) -> bool {
        self.pool.is_some()
    }
}

pub(super) struct Sim<'c> {
    pub(super) mode: Mode,
    /// Disruptions being carried out.
    pub(super) in_flight: Vec<InFlight>,
    /// Nodes whose replacement failed: not disrupted again before this time.
    pub(super) backoff: HashMap<usize, f64>,
    /// Each pool's disruption settings (same indices as `pools`).
    pub(super) pool_disruption: Vec<PoolDisruption>,
    /// Epoch seconds of virtual time 0 (the trace's `start`, else the Unix epoch): what
    /// budget schedules are evaluated against.
    pub(super) epoch: i64,
    pub(super) pool_change: Option<Vec<NodePool>>,
    /// Bound pods with anti-affinity terms (see `Sim::room_needed`).
    pub(super) anti_affinity_bound: usize,
    /// `disruption::template_hash` of each pool (drift compares nodes against it).
    pub(super) pool_hashes: Vec<u64>,
    /// Live managed nodes launched from a pool template that has changed since (`hash`
    /// not the pool's): only those can have drifted, so with none the drift check of
    /// every node at every scan is skipped.
    pub(super) stale_hash_nodes: usize,
    /// No live node expires before this time (the earliest `launched_at + expireAfter`
    /// when last looked at; nodes launched later expire later): until then the expiry
    /// check of every node at every scan is skipped.
    pub(super) next_expiry: f64,
    /// Bumped whenever a pod or node comes or goes (consolidation skips unchanged states).
    pub(super) changes: u64,
    /// Bumped when a node is launched or added, becomes ready, or is cordoned or
    /// uncordoned: with `changes`, equal counts mean the same nodes in the same states.
    pub(super) node_changes: u64,
    pub(super) changes_at_last_search: u64,
    /// The capacity consolidation kept at its last fruitless search.
    pub(super) keep_at_last_search: Option<Resources>,
    pub(super) config: &'c Config,
    pub(super) catalog: &'c Catalog,
    pub(super) pools: Vec<NodePool>,
    /// Fleet pools, for the lower bound and demand feasibility in both modes.
    pub(super) fleet_pools: &'c [NodePool],
    pub(super) daemonsets: Vec<Pod>,
    pub(super) model: Option<SchedulingModel>,
    pub(super) fleet_model: Option<SchedulingModel>,
    pub(super) lower_bound: Option<LowerBound>,
    pub(super) shape_bound: Option<ShapeBound>,
    /// The shape bound with the pods' node constraints, and each pod class's group in it
    /// (found once per class; both dropped with the fleet model).
    pub(super) constrained_bound: Option<ConstrainedBound>,
    pub(super) bound_group_by_class: HashMap<u32, u32>,
    pub(super) unavailable: UnavailableOfferings,
    pub(super) cloud: SimCloud,
    pub(super) rng: Rng,
    pub(super) now: f64,
    pub(super) seq: u64,
    pub(super) queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    pub(super) events: Vec<Option<Ev>>,
    pub(super) pods: Vec<SimPod<'c>>,
    /// Pods waiting for a node that some offering could hold.
    pub(super) pending: BTreeSet<usize>,
    /// Changes to `pending` so far: while it stands still, `pending` has not changed.
    pub(super) pending_changes: u64,
    /// What the last provisioning pass that launched nothing saw: while it is unchanged,
    /// the same pass would launch nothing again (pods nothing can hold stay pending for
    /// weeks in large traces, and were re-solved every scan).
    pub(super) idle_provision: Option<ProvisionInputs>,
    /// What the scans' checks read of the live nodes, as of its key (see `live_view`).
    pub(super) live_view: LiveView,
    /// Node-groups scale-down: nodes whose pods did not fit elsewhere, with the state
    /// that answer was found in (asked again only once it changed).
    pub(super) stays: HashMap<usize, NodesKey>,
    /// Pods waiting that no offering could hold (they still count for their budgets).
    pub(super) stuck: BTreeSet<usize>,
    /// Pods added since the last scheduling pass.
    pub(super) new_pending: Vec<usize>,
    /// Room appeared since the last scheduling pass: every pending pod gets a try.
    pub(super) full_pass: bool,
    pub(super) pod_index: HashMap<(&'c str, &'c str), usize>,
    /// The live replicas whose deletion order `podDeletionCost` steers.
    pub(super) replicas: super::replica_sets::Replicas<'c>,
    pub(super) nodes: Vec<SimNode>,
    pub(super) live: Vec<usize>,
    pub(super) node_counter: u64,
    pub(super) sched_dirty: bool,
    pub(super) batch_start: Option<f64>,
    pub(super) batch_last: f64,
    pub(super) feasibility_cache: HashMap<String, (Option<String>, bool)>,
    /// `feasibility_cache`'s answers by pod class.
    pub(super) feasibility_by_class: HashMap<u32, (Option<String>, bool)>,
    /// The class of every pod added, found once per pod.
    pub(super) classes: ClassRegistry,
    // Accounting.
    pub(super) demand: Resources,
    /// The part of `demand` of pods that do not end by themselves (consolidation keeps
    /// room for its recent peak).
    pub(super) service_demand: Resources,
    /// `demand` by pod requests (cpu, memory, extended, 1 pod): the shape bound's classes.
    pub(super) demand_classes: HashMap<Resources, u64>,
    /// `demand_classes` split by node-constraint group: the constrained bound's classes.
    pub(super) constrained_classes: HashMap<(Resources, u32), u64>,
    pub(super) demand_dirty: bool,
    pub(super) lb_rate: f64,
    pub(super) lb_cost: f64,
    pub(super) shape_rate: f64,
    pub(super) shape_cost: f64,
    pub(super) constrained_rate: f64,
    pub(super) constrained_cost: f64,
    pub(super) cost_spot: f64,
    pub(super) cost_on_demand: f64,
    /// `fleet_now` as of the `(changes, node_changes)` it was taken at: the integrals
    /// move on by it between changes instead of by a walk over every node per event.
    pub(super) fleet_totals: FleetTotals,
    pub(super) util_req: (f64, f64),
    pub(super) util_alloc: (f64, f64),
    pub(super) pending_s: Vec<f64>,
    pub(super) decision_ms: Vec<f64>,
    pub(super) counts: NodeCounts,
    pub(super) disruptions: Disruptions,
    pub(super) launched_by_type: HashMap<(usize, CapacityType), u64>,
    pub(super) series: Vec<Sample>,
    pub(super) marks: Vec<Mark>,
    /// Pods on a node at its Spot warning, with the warning's time.
    pub(super) interrupted_at: HashMap<usize, f64>,
    pub(super) recovery_s: Vec<f64>,
    /// The demand at each scan over the last `consolidationWindow`.
    pub(super) demand_window: crate::core::consolidation::DemandWindow,
    /// The demand of long-running pods over the last day, for `evictionCost`.
    pub(super) long_demand: crate::core::consolidation::DemandHistory,
    /// When the last search's first action refused for its evictions would pay.
    pub(super) pays_at: Option<f64>,
    /// Managed node-seconds (for disruptions per node-hour).
    pub(super) node_seconds: f64,
    /// The report's headroom figures (`headroom.rs`).
    pub(super) headroom_acc: headroom::Acc,
}

impl<'c> Sim<'c> {
    pub(super) fn settings(&self) -> &'c crate::config::Settings {
        &self.config.settings
    }

    fn ds_refs(&self) -> Vec<&Pod> {
        self.daemonsets.iter().collect()
    }

    pub(super) fn ensure_models(&mut self) {
        if self.model.is_none() {
            let ds = self.ds_refs();
            self.model = Some(SchedulingModel::new(self.catalog, &self.pools, &ds));
        }
        if self.fleet_model.is_none() {
            let ds = self.ds_refs();
            let fm = SchedulingModel::new(self.catalog, self.fleet_pools, &ds);
            let options = fm.offering_options(self.catalog);
            self.shape_bound = Some(ShapeBound::new(options.clone()));
            self.constrained_bound = Some(ConstrainedBound::new(options.clone()));
            self.regroup_demand();
            self.lower_bound = Some(LowerBound::new(options));
            self.fleet_model = Some(fm);
            self.demand_dirty = true;
        }
    }

    pub(super) fn end_pod(&mut self, i: usize) {
        match self.pods[i].state {
            PodState::Done => return,
            PodState::Bound(n) => self.unbind(i, n),
            PodState::Pending => {}
        }
        self.set_state(i, PodState::Done);
        // It ended before running again: not a recovery to measure.
        self.interrupted_at.remove(&i);
        if self.pods[i].in_demand {
            let r = self.pods[i].pod.requests.clone();
            self.demand.sub(&r);
            let class = bound_class(&self.pods[i].pod.requests);
            let key = (class, self.pods[i].bound_group);
            if let Some(n) = self.constrained_classes.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.constrained_classes.remove(&key);
                }
            }
            let class = key.0;
            if let Some(n) = self.demand_classes.get_mut(&class) {
                *n -= 1;
                if *n == 0 {
                    self.demand_classes.remove(&class);
                }
            }
            self.demand_dirty = true;
            if !disruption::runs_to_completion(self.pods[i].pod) {
                self.service_demand.sub(&r);
            }
        }
    }

    pub(super) fn bind(&mut self, i: usize, n: usize) {
        let now = self.now;
        let p = &mut self.pods[i];
        if !p.ever_bound {
            p.ever_bound = true;
            self.pending_s.push(now - p.added_at);
        }
        if let Some(warned) = self.interrupted_at.remove(&i) {
            self.recovery_s.push(now - warned);
        }
        p.generation += 1;
        self.set_state(i, PodState::Bound(n));
        let p = &mut self.pods[i];
        let node = &mut self.nodes[n];
        node.requested.add(&p.pod.requests);
        node.taken.add(&p.pod.requests);
        if node.managed() && node.state == NodeState::Ready {
            self.fleet_totals.requests(&p.pod.requests, 1);
        }
        node.pods.push(i);
        self.anti_affinity_bound += usize::from(!p.pod.anti_affinity.is_empty());
        self.changes += 1;
        node.empty_since = None;
        node.stable_since = now;
        if let Some(run) = p.run_for_s {
            let generation = p.generation;
            self.push(now + run, Ev::PodFinish(i, generation));
        }
    }

    pub(super) fn unbind(&mut self, i: usize, n: usize) {
        self.release(i, n);
        let node = &mut self.nodes[n];
        node.pods.retain(|&p| p != i);
        self.changes += 1;
        node.stable_since = self.now;
        if node.pods.is_empty() {
            node.empty_since = Some(self.now);
        }
        self.set_state(i, PodState::Pending);
        self.sched_dirty = true;
        self.full_pass = true;
    }

    /// Gives back on node `n` what bound pod `i` held: the undoing of `bind`'s counts.
    fn release(&mut self, i: usize, n: usize) {
        let pod = self.pods[i].pod;
        let node = &mut self.nodes[n];
        node.requested.sub(&pod.requests);
        node.taken.sub(&pod.requests);
        if node.managed() && node.state == NodeState::Ready {
            self.fleet_totals.requests(&pod.requests, -1);
        }
        self.anti_affinity_bound -= usize::from(!pod.anti_affinity.is_empty());
    }

    pub(super) fn terminate(&mut self, n: usize) {
        self.node_lost(n);
        self.backoff.remove(&n);
        self.stays.remove(&n);
        let pods = std::mem::take(&mut self.nodes[n].pods);
        for i in pods {
            self.set_state(i, PodState::Pending);
            self.release(i, n);
            if self.pods[i].infeasible.is_none() {
                self.open_batch();
            }
        }
        if self.nodes[n]
            .pool
            .is_some_and(|p| self.nodes[n].hash != self.pool_hashes[p])
        {
            self.stale_hash_nodes = self.stale_hash_nodes.saturating_sub(1);
        }
        let now = self.now;
        let node = &mut self.nodes[n];
        if node.managed() {
            self.fleet_totals.managed -= 1;
            if node.state == NodeState::Ready {
                self.fleet_totals.ready_node(node, -1);
            }
        }
        node.state = NodeState::Terminated;
        // Nothing reads a terminated node's labels, taints or annotations again: a week
        // launches tens of thousands of nodes, and their label maps were most of a
        // replay's memory.
        node.labels = Labels::new();
        node.annotations = Labels::new();
        node.taints = Vec::new();
        let cost = node.price * (now - node.launched_at) / 3600.0;
        match node.capacity_type {
            Some(CapacityType::Spot) => self.cost_spot += cost,
            Some(CapacityType::OnDemand) => self.cost_on_demand += cost,
            None => {}
        }
        if node.managed() {
            self.counts.terminated += 1;
        }
        self.live.retain(|&x| x != n);
        self.changes += 1;
        self.sched_dirty = true;
        self.full_pass = true;
    }

    /// Pending pods that some offering could hold, oldest first.
    pub(super) fn pending_pods(&self) -> Vec<usize> {
        self.pending.iter().copied().collect()
    }

    /// Every pod state change goes through here, keeping `pending` in step.
    pub(super) fn set_state(&mut self, i: usize, state: PodState) {
        self.pods[i].state = state;
        let waiting = state == PodState::Pending;
        let feasible = self.pods[i].infeasible.is_none();
        let changed = if waiting && feasible {
            self.pending.insert(i)
        } else {
            self.pending.remove(&i)
        };
        self.pending_changes += u64::from(changed);
        if waiting && !feasible {
            self.stuck.insert(i);
        } else {
            self.stuck.remove(&i);
        }
    }

    /// Bindings and terminations, launches, readiness and cordons: equal keys mean the
    /// same nodes in the same states with the same pods.
    pub(super) fn nodes_key(&self) -> NodesKey {
        NodesKey {
            changes: self.changes,
            node_changes: self.node_changes,
        }
    }
}
