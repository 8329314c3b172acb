//! The discrete-event replay. Time only moves forward through the event queue; every
//! decision is made by `crate::core` on a snapshot of the simulated cluster.

use super::cloud::SimCloud;
use super::report::{
    round2, round3, Cost, Disruptions, InfeasiblePod, Mark, NodeCounts, Percentiles, PodCounts,
    Report, Sample, TraceInfo, TypeCount, Utilization,
};
use super::setup::{self, SetupError};
use super::Mode;
use crate::config::Config;
use crate::core::disruption::{self, ConsolidationPolicy, PoolDisruption};
use crate::core::instance::{CapacityType, Catalog};
use crate::core::labels::{self, Labels};
use crate::core::lower_bound::LowerBound;
use crate::core::model::SchedulingModel;
use crate::core::node_groups;
use crate::core::nodepool::NodePool;
use crate::core::pod::Pod;
use crate::core::resources::Resources;
use crate::core::rng::Rng;
use crate::core::scheduler::{self, Decision, LaunchPlan, SolveEnv};
use crate::core::shape_bound::{bound_class, ShapeBound};
use crate::core::snapshot::{ExistingNode, Snapshot};
use crate::core::taints::Taint;
use crate::core::unavailable::UnavailableOfferings;
use crate::trace::{EventKind, SpotTarget, Trace};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::io::{IsTerminal, Write};
use std::time::Instant;
use thiserror::Error;

#[path = "disrupt.rs"]
mod disrupt;
#[path = "headroom.rs"]
mod headroom;

#[derive(Clone, Debug)]
pub struct SimOptions {
    pub mode: Mode,
    pub seed: u64,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// `false` turns consolidation off for every pool (as `consolidationPolicy: Never`:
    /// not even empty nodes are removed).
    pub consolidation: bool,
    /// Overrides every fleet pool's `consolidationPolicy` (e.g. `WhenEmpty` to measure
    /// what emptiness alone saves).
    pub policy: Option<ConsolidationPolicy>,
    /// At this time (seconds), the fleet pools become these (same names): nodes that
    /// no longer match drift and are replaced.
    pub pool_change: Option<(f64, Vec<NodePool>)>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            mode: Mode::Fleet,
            seed: 1,
            progress: false,
            consolidation: true,
            policy: None,
            pool_change: None,
        }
    }
}

/// Immediate re-decisions after launches that found no capacity.
const MAX_LAUNCH_ROUNDS: usize = 64;

#[derive(Debug, Error)]
pub enum SimError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("{file}:{line}: {message}")]
    Trace {
        file: String,
        line: usize,
        message: String,
    },
}

/// Seconds a Spot interruption warning comes before the reclaim (EC2's two minutes).
const SPOT_WARNING_S: f64 = 120.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PodState {
    Pending,
    Bound(usize),
    Done,
}

struct SimPod {
    pod: Pod,
    added_at: f64,
    run_for_s: Option<f64>,
    state: PodState,
    ever_bound: bool,
    infeasible: Option<String>,
    /// Feasible for the fleet node pools: counted in the lower bound's demand.
    in_demand: bool,
    /// Bumped at each bind, so a finish event of an earlier run is ignored.
    generation: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeState {
    Launching,
    Ready,
    Terminated,
}

/// See `Sim::nodes_key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NodesKey {
    changes: u64,
    node_changes: u64,
}

/// See `Sim::provision_inputs`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProvisionInputs {
    pending: Vec<usize>,
    /// The headroom's placeholder pods, and whether a pool is short of its spare.
    headroom: (Vec<Pod>, bool),
    nodes: NodesKey,
    unavailable: u64,
}

struct SimNode {
    name: String,
    labels: Labels,
    /// The zone label's value (kept beside the labels: decisions read it per node).
    zone: Option<String>,
    taints: Vec<Taint>,
    capacity: Resources,
    allocatable: Resources,
    /// DaemonSet overhead reserved on the node.
    overhead: Resources,
    /// Sum of the requests of bound pods.
    requested: Resources,
    pods: Vec<usize>,
    pool: Option<usize>,
    capacity_type: Option<CapacityType>,
    price: f64,
    launched_at: f64,
    state: NodeState,
    cordoned: bool,
    /// Cordoned by a Spot interruption warning: its pods need a new home now.
    interrupted: bool,
    /// Cordoned for a voluntary disruption (counts against the pool's budgets).
    disrupting: bool,
    /// The pool template's hash at launch (drift compares it).
    hash: u64,
    /// The node's annotations (from the pool template).
    annotations: Labels,
    /// When a pod last arrived or left (consolidation waits `consolidateAfter`).
    stable_since: f64,
    empty_since: Option<f64>,
    unneeded_since: Option<f64>,
}

impl SimNode {
    /// A node with no pods yet, appearing at `now`; callers fill in what it is.
    fn new(now: f64, state: NodeState) -> Self {
        SimNode {
            name: String::new(),
            labels: Labels::new(),
            zone: None,
            taints: Vec::new(),
            capacity: Resources::default(),
            allocatable: Resources::default(),
            overhead: Resources::default(),
            requested: Resources::default(),
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

    fn managed(&self) -> bool {
        self.pool.is_some()
    }
}

#[derive(Clone, Debug)]
enum Ev {
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

struct Sim<'c> {
    mode: Mode,
    /// Disruptions being carried out.
    in_flight: Vec<disrupt::InFlight>,
    /// Nodes whose replacement failed: not disrupted again before this time.
    backoff: HashMap<usize, f64>,
    /// Each pool's disruption settings (same indices as `pools`).
    pool_disruption: Vec<PoolDisruption>,
    /// Epoch seconds of virtual time 0 (the trace's `start`, else the Unix epoch): what
    /// budget schedules are evaluated against.
    epoch: i64,
    pool_change: Option<Vec<NodePool>>,
    /// `disruption::template_hash` of each pool (drift compares nodes against it).
    pool_hashes: Vec<u64>,
    /// Bumped whenever a pod or node comes or goes (consolidation skips unchanged states).
    changes: u64,
    /// Bumped when a node is launched or added, becomes ready, or is cordoned or
    /// uncordoned: with `changes`, equal counts mean the same nodes in the same states.
    node_changes: u64,
    changes_at_last_search: u64,
    /// The capacity consolidation kept at its last fruitless search.
    keep_at_last_search: Option<Resources>,
    config: &'c Config,
    catalog: &'c Catalog,
    pools: Vec<NodePool>,
    /// Fleet pools, for the lower bound and demand feasibility in both modes.
    fleet_pools: &'c [NodePool],
    daemonsets: Vec<Pod>,
    model: Option<SchedulingModel>,
    fleet_model: Option<SchedulingModel>,
    lower_bound: Option<LowerBound>,
    shape_bound: Option<ShapeBound>,
    unavailable: UnavailableOfferings,
    cloud: SimCloud,
    rng: Rng,
    now: f64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<Option<Ev>>,
    pods: Vec<SimPod>,
    /// Pods waiting for a node that some offering could hold.
    pending: BTreeSet<usize>,
    /// What the last provisioning pass that launched nothing saw: while it is unchanged,
    /// the same pass would launch nothing again (pods nothing can hold stay pending for
    /// weeks in large traces, and were re-solved every scan).
    idle_provision: Option<ProvisionInputs>,
    /// Node-groups scale-down: nodes whose pods did not fit elsewhere, with the state
    /// that answer was found in (asked again only once it changed).
    stays: HashMap<usize, NodesKey>,
    /// Pods waiting that no offering could hold (they still count for their budgets).
    stuck: BTreeSet<usize>,
    /// Pods added since the last scheduling pass.
    new_pending: Vec<usize>,
    /// Room appeared since the last scheduling pass: every pending pod gets a try.
    full_pass: bool,
    pod_index: HashMap<(String, String), usize>,
    nodes: Vec<SimNode>,
    live: Vec<usize>,
    node_counter: u64,
    sched_dirty: bool,
    batch_start: Option<f64>,
    batch_last: f64,
    feasibility_cache: HashMap<String, (Option<String>, bool)>,
    // Accounting.
    demand: Resources,
    /// The part of `demand` of pods that do not end by themselves (consolidation keeps
    /// room for its recent peak).
    service_demand: Resources,
    /// `demand` by pod requests (cpu, memory, extended, 1 pod): the shape bound's classes.
    demand_classes: HashMap<Resources, u64>,
    demand_dirty: bool,
    lb_rate: f64,
    lb_cost: f64,
    shape_rate: f64,
    shape_cost: f64,
    cost_spot: f64,
    cost_on_demand: f64,
    util_req: (f64, f64),
    util_alloc: (f64, f64),
    pending_s: Vec<f64>,
    decision_ms: Vec<f64>,
    counts: NodeCounts,
    disruptions: Disruptions,
    launched_by_type: HashMap<(usize, CapacityType), u64>,
    series: Vec<Sample>,
    marks: Vec<Mark>,
    /// Pods on a node at its Spot warning, with the warning's time.
    interrupted_at: HashMap<usize, f64>,
    recovery_s: Vec<f64>,
    /// (time, demand) at each scan over the last `consolidationWindow`.
    demand_history: std::collections::VecDeque<(f64, Resources)>,
    /// Managed node-seconds (for disruptions per node-hour).
    node_seconds: f64,
    /// The report's headroom figures (`headroom.rs`).
    headroom_acc: headroom::Acc,
}

/// Replays `trace` under `config` and returns the report.
pub fn run(
    trace: &Trace,
    trace_file: &str,
    config: &Config,
    catalog: &Catalog,
    opts: &SimOptions,
) -> Result<Report, SimError> {
    let started = Instant::now();
    check_references(trace, trace_file)?;
    let pools = match opts.mode {
        Mode::Fleet => config.node_pools.clone(),
        Mode::NodeGroups => setup::node_group_pools(config, catalog)?,
    };
    let pool_disruption = pool_disruption(config, &pools, opts);
    let mut sim = Sim {
        mode: opts.mode,
        changes: 0,
        node_changes: 0,
        in_flight: Vec::new(),
        backoff: HashMap::new(),
        pool_disruption,
        pool_hashes: pools.iter().map(disruption::template_hash).collect(),
        epoch: trace_epoch(trace),
        pool_change: opts.pool_change.as_ref().map(|(_, p)| p.clone()),
        changes_at_last_search: u64::MAX,
        keep_at_last_search: None,
        config,
        catalog,
        pools,
        fleet_pools: &config.node_pools,
        daemonsets: config
            .settings
            .daemon_sets
            .iter()
            .map(setup::daemonset_pod)
            .collect(),
        model: None,
        fleet_model: None,
        lower_bound: None,
        shape_bound: None,
        unavailable: UnavailableOfferings::default(),
        cloud: SimCloud::default(),
        rng: Rng::new(opts.seed),
        now: 0.0,
        seq: 0,
        queue: BinaryHeap::new(),
        events: Vec::new(),
        pods: Vec::new(),
        pending: BTreeSet::new(),
        idle_provision: None,
        stays: HashMap::new(),
        stuck: BTreeSet::new(),
        new_pending: Vec::new(),
        full_pass: false,
        pod_index: HashMap::new(),
        nodes: Vec::new(),
        live: Vec::new(),
        node_counter: 0,
        sched_dirty: false,
        batch_start: None,
        batch_last: 0.0,
        feasibility_cache: HashMap::new(),
        demand: Resources::default(),
        service_demand: Resources::default(),
        demand_dirty: false,
        demand_classes: HashMap::new(),
        lb_rate: 0.0,
        lb_cost: 0.0,
        shape_rate: 0.0,
        shape_cost: 0.0,
        cost_spot: 0.0,
        cost_on_demand: 0.0,
        util_req: (0.0, 0.0),
        util_alloc: (0.0, 0.0),
        pending_s: Vec::new(),
        decision_ms: Vec::new(),
        counts: NodeCounts::default(),
        disruptions: Disruptions::default(),
        launched_by_type: HashMap::new(),
        series: Vec::new(),
        marks: Vec::new(),
        interrupted_at: HashMap::new(),
        recovery_s: Vec::new(),
        node_seconds: 0.0,
        demand_history: Default::default(),
        headroom_acc: headroom::Acc::default(),
    };
    if let Some((t, _)) = &opts.pool_change {
        sim.push(*t, Ev::PoolsChanged);
    }
    let end = trace.events.last().map_or(0.0, |e| e.t);
    for e in &trace.events {
        if let EventKind::SpotInterruption(target) = &e.kind {
            sim.push(
                (e.t - SPOT_WARNING_S).max(0.0),
                Ev::SpotWarning {
                    target: target.clone(),
                    reclaim_at: e.t,
                },
            );
        }
    }
    sim.push(0.0, Ev::Scan);
    let progress = opts.progress && std::io::stderr().is_terminal();
    let mut next_trace = 0;
    let mut last_progress = 0;
    loop {
        let t_trace = trace.events.get(next_trace).map(|e| e.t);
        let t_queue = sim
            .queue
            .peek()
            .map(|Reverse((k, _, _))| f64::from_bits(*k));
        let t = match (t_trace, t_queue) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => break,
        };
        if t > end {
            break;
        }
        sim.advance(t);
        while let Some(e) = trace.events.get(next_trace).filter(|e| e.t <= t) {
            sim.trace_event(&e.kind);
            next_trace += 1;
        }
        while let Some(Reverse((k, _, _))) = sim.queue.peek() {
            if f64::from_bits(*k) > t {
                break;
            }
            let Some(Reverse((_, _, id))) = sim.queue.pop() else {
                break;
            };
            if let Some(ev) = sim.events[id].take() {
                sim.handle(ev);
            }
        }
        if sim.sched_dirty {
            sim.schedule_pass();
        }
        if progress && next_trace * 50 / trace.events.len().max(1) > last_progress {
            last_progress = next_trace * 50 / trace.events.len().max(1);
            eprint!(
                "\r[{:<50}] {:>3}% of {} ({})",
                "#".repeat(last_progress),
                last_progress * 2,
                trace.header.name,
                opts.mode.as_str()
            );
            let _ = std::io::stderr().flush();
        }
    }
    if progress {
        eprint!("\r{:80}\r", "");
    }
    sim.advance(end);
    Ok(sim.finish(trace, started))
}

/// Each pool's disruption settings, with the run's overrides. Node groups (the Cluster
/// Autoscaler's rule, not these) get the defaults, unused.
fn pool_disruption(config: &Config, pools: &[NodePool], opts: &SimOptions) -> Vec<PoolDisruption> {
    pools
        .iter()
        .map(|p| {
            let mut d = config
                .extras(&p.name)
                .map(|e| e.disruption.clone())
                .unwrap_or_default();
            if let Some(policy) = opts.policy {
                d.policy = policy;
            }
            if !opts.consolidation {
                d.policy = ConsolidationPolicy::Never;
            }
            d
        })
        .collect()
}

/// Epoch seconds of the trace's `start` (RFC 3339), or 0.
fn trace_epoch(trace: &Trace) -> i64 {
    trace
        .header
        .start
        .as_deref()
        .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// Every `pod_deleted` must name a pod that exists then; every pod name is unique while
/// it lives. Checked before the replay so a bad trace replays nothing.
fn check_references(trace: &Trace, file: &str) -> Result<(), SimError> {
    let mut alive: HashMap<(&str, &str), bool> = HashMap::new();
    for e in &trace.events {
        match &e.kind {
            EventKind::PodAdded { pod, .. }
                if alive.insert((&pod.namespace, &pod.name), true) == Some(true) =>
            {
                return Err(SimError::Trace {
                    file: file.into(),
                    line: e.line,
                    message: format!("pod: {}/{} is added twice", pod.namespace, pod.name),
                });
            }
            EventKind::PodDeleted { namespace, name }
                if alive.insert((namespace, name), false) != Some(true) =>
            {
                return Err(SimError::Trace {
                        file: file.into(),
                        line: e.line,
                        message: format!("name: pod {namespace}/{name} is deleted but was never added (or already deleted)"),
                    });
            }
            _ => {}
        }
    }
    Ok(())
}

impl<'c> Sim<'c> {
    fn push(&mut self, t: f64, ev: Ev) {
        self.events.push(Some(ev));
        self.seq += 1;
        self.queue
            .push(Reverse((key(t), self.seq, self.events.len() - 1)));
    }

    fn settings(&self) -> &'c crate::config::Settings {
        &self.config.settings
    }

    fn ds_refs(&self) -> Vec<&Pod> {
        self.daemonsets.iter().collect()
    }

    fn ensure_models(&mut self) {
        if self.model.is_none() {
            let ds = self.ds_refs();
            self.model = Some(SchedulingModel::new(self.catalog, &self.pools, &ds));
        }
        if self.fleet_model.is_none() {
            let ds = self.ds_refs();
            let fm = SchedulingModel::new(self.catalog, self.fleet_pools, &ds);
            let options = fm.offering_options(self.catalog);
            self.shape_bound = Some(ShapeBound::new(options.clone()));
            self.lower_bound = Some(LowerBound::new(options));
            self.fleet_model = Some(fm);
            self.demand_dirty = true;
        }
    }

    /// Integrates cost-rate figures over `[now, t]`.
    fn advance(&mut self, t: f64) {
        let dt = t - self.now;
        if dt <= 0.0 {
            return;
        }
        if self.demand_dirty {
            self.ensure_models();
            let lb = self.lower_bound.as_mut().expect("models built");
            // The bound counts cpu, memory, pods and extended resources (sim-report.md).
            let demand = Resources {
                ephemeral: 0,
                ..self.demand.clone()
            };
            let rate = lb.hourly_rate(&demand);
            self.lb_rate = if rate.is_finite() { rate } else { 0.0 };
            let classes: Vec<(Resources, u64)> = self
                .demand_classes
                .iter()
                .map(|(r, &n)| (r.clone(), n))
                .collect();
            let sb = self.shape_bound.as_mut().expect("models built");
            self.shape_rate = sb.hourly_rate(&classes);
            self.demand_dirty = false;
        }
        self.lb_cost += self.lb_rate * dt / 3600.0;
        self.shape_cost += self.shape_rate * dt / 3600.0;
        self.account_headroom(dt);
        for &n in &self.live {
            let node = &self.nodes[n];
            if node.managed() {
                self.node_seconds += dt;
            }
            if node.managed() && node.state == NodeState::Ready {
                self.util_req.0 += node.requested.cpu_milli as f64 * dt;
                self.util_req.1 += node.requested.memory as f64 * dt;
                self.util_alloc.0 += node.allocatable.cpu_milli as f64 * dt;
                self.util_alloc.1 += node.allocatable.memory as f64 * dt;
            }
        }
        self.now = t;
    }

    fn trace_event(&mut self, kind: &EventKind) {
        match kind {
            EventKind::PodAdded { pod, run_for_s } => self.pod_added(pod, *run_for_s),
            EventKind::PodDeleted { namespace, name } => {
                if let Some(&i) = self.pod_index.get(&(namespace.clone(), name.clone())) {
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

    fn pod_added(&mut self, pod: &Pod, run_for_s: Option<f64>) {
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
        let (infeasible, in_demand) = self.feasibility(pod);
        let idx = self.pods.len();
        self.pods.push(SimPod {
            pod: pod.clone(),
            added_at: self.now,
            run_for_s,
            state: PodState::Pending,
            ever_bound: false,
            infeasible,
            in_demand,
            generation: 0,
        });
        self.pod_index
            .insert((pod.namespace.clone(), pod.name.clone()), idx);
        self.set_state(idx, PodState::Pending);
        if in_demand {
            self.demand.add(&pod.requests);
            *self
                .demand_classes
                .entry(bound_class(&pod.requests))
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

    /// (Infeasible reason in this mode, feasible for the fleet pools.) Cached by the
    /// pod's scheduling shape: replicas of one workload are checked once.
    fn feasibility(&mut self, pod: &Pod) -> (Option<String>, bool) {
        let shape = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}",
            pod.requests, pod.node_selector, pod.required_node_terms, pod.tolerations, pod.affinity
        );
        if let Some(v) = self.feasibility_cache.get(&shape) {
            return v.clone();
        }
        let unavailable = UnavailableOfferings::default();
        let mode_env = SolveEnv {
            catalog: self.catalog,
            pools: &self.pools,
            model: self.model.as_ref().expect("models built"),
            unavailable: &unavailable,
            now: self.now,
            max_launch_options: 1,
            pool_filter: None,
            allow_new_nodes: true,
            use_launching_nodes: true,
            split_claims: true,
            exclude_node: None,
        };
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

    fn open_batch(&mut self) {
        let idle = self.settings().batch_idle.as_secs_f64();
        self.batch_start.get_or_insert(self.now);
        self.batch_last = self.now;
        self.push(self.now + idle, Ev::BatchCheck);
    }

    fn end_pod(&mut self, i: usize) {
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
            if let Some(n) = self.demand_classes.get_mut(&class) {
                *n -= 1;
                if *n == 0 {
                    self.demand_classes.remove(&class);
                }
            }
            self.demand_dirty = true;
            if !disruption::runs_to_completion(&self.pods[i].pod) {
                self.service_demand.sub(&r);
            }
        }
    }

    fn bind(&mut self, i: usize, n: usize) {
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
        node.pods.push(i);
        self.changes += 1;
        node.empty_since = None;
        node.stable_since = now;
        if let Some(run) = p.run_for_s {
            let generation = p.generation;
            self.push(now + run, Ev::PodFinish(i, generation));
        }
    }

    fn unbind(&mut self, i: usize, n: usize) {
        let node = &mut self.nodes[n];
        node.requested.sub(&self.pods[i].pod.requests);
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

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::NodeReady(n) => {
                if self.nodes[n].state == NodeState::Launching {
                    self.nodes[n].state = NodeState::Ready;
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
                    self.pools = pools;
                    self.model = None;
                    self.changes += 1;
                }
            }
        }
    }

    fn spot_warning(&mut self, target: &SpotTarget, reclaim_at: f64) {
        let mut spot: Vec<usize> = self
            .live
            .iter()
            .copied()
            .filter(|&n| {
                let node = &self.nodes[n];
                node.capacity_type == Some(CapacityType::Spot) && !node.cordoned
            })
            .collect();
        let chosen: Vec<usize> = match target {
            SpotTarget::Node(name) => spot
                .into_iter()
                .filter(|&n| self.nodes[n].name == *name)
                .collect(),
            SpotTarget::Fraction(f) => {
                let k = ((spot.len() as f64) * f).round() as usize;
                // Partial Fisher-Yates from the replay seed.
                for i in 0..k.min(spot.len()) {
                    let j = i + self.rng.below(spot.len() - i);
                    spot.swap(i, j);
                }
                spot.truncate(k);
                spot
            }
        };
        let ttl = self.settings().unavailable_offering_ttl.as_secs_f64();
        for n in chosen {
            self.nodes[n].cordoned = true;
            self.nodes[n].interrupted = true;
            self.node_changes += 1;
            for &p in &self.nodes[n].pods {
                self.interrupted_at.insert(p, self.now);
            }
            self.push(reclaim_at, Ev::SpotReclaim(n));
            // EC2 is taking this Spot pool back: the replacement comes from another
            // offering (as Karpenter marks an interrupted offering unavailable).
            let labels = &self.nodes[n].labels;
            let ty = labels
                .get(labels::INSTANCE_TYPE)
                .and_then(|t| self.catalog.find(t));
            let zone = labels
                .get(labels::ZONE)
                .and_then(|z| self.catalog.zone_index(z));
            if let (Some(ty), Some(zone)) = (ty, zone) {
                self.unavailable
                    .mark(ty, zone, CapacityType::Spot, self.now, ttl);
            }
        }
        // Replacements are launched now, while the doomed nodes still run their pods.
        self.provision();
    }

    fn terminate(&mut self, n: usize) {
        self.node_lost(n);
        self.backoff.remove(&n);
        self.stays.remove(&n);
        let pods = std::mem::take(&mut self.nodes[n].pods);
        for i in pods {
            self.set_state(i, PodState::Pending);
            self.nodes[n].requested.sub(&self.pods[i].pod.requests);
            if self.pods[i].infeasible.is_none() {
                self.open_batch();
            }
        }
        let now = self.now;
        let node = &mut self.nodes[n];
        node.state = NodeState::Terminated;
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
    fn pending_pods(&self) -> Vec<usize> {
        self.pending.iter().copied().collect()
    }

    /// Every pod state change goes through here, keeping `pending` in step.
    fn set_state(&mut self, i: usize, state: PodState) {
        self.pods[i].state = state;
        let waiting = state == PodState::Pending;
        let feasible = self.pods[i].infeasible.is_none();
        for (set, member) in [
            (&mut self.pending, waiting && feasible),
            (&mut self.stuck, waiting && !feasible),
        ] {
            if member {
                set.insert(i);
            } else {
                set.remove(&i);
            }
        }
    }

    /// The simulated kube-scheduler: binds pending pods to ready nodes.
    ///
    /// Only when room appeared (a node became ready, a pod left) can a pod that found no
    /// place before find one now; otherwise only the pods new since the last pass are
    /// tried, with those whose pod affinity a new neighbour may have satisfied.
    fn schedule_pass(&mut self) {
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
        let (decision, node_ids, _) = self.solve(&pending, &[], false, None, false);
        for (pi, ni) in decision.existing {
            self.bind(pending[pi], node_ids[ni]);
        }
    }

    /// Runs the core over the current state. Returns the decision, the sim node index of
    /// each snapshot node, and the wall-clock milliseconds it took.
    fn solve<'s>(
        &'s self,
        pending: &[usize],
        placeholders: &'s [Pod],
        new_nodes: bool,
        pool_filter: Option<&[usize]>,
        displaced: bool,
    ) -> (Decision, Vec<usize>, f64) {
        let (mut snapshot, node_ids) = self.snapshot(pending, new_nodes, displaced);
        // Headroom placeholders: the scheduler places them after every real pod (lowest
        // priority); the caller never binds them.
        snapshot.pending.extend(placeholders);
        let env = self.env(pool_filter, new_nodes);
        let started = Instant::now();
        let decision = scheduler::solve(&env, &snapshot);
        (decision, node_ids, started.elapsed().as_secs_f64() * 1000.0)
    }

    /// The snapshot a decision sees, and the sim node index of each snapshot node:
    /// without `new_nodes`, only ready and uncordoned nodes (the kube-scheduler's view);
    /// with `displaced`, an interrupted node's pods are pending again.
    fn snapshot(
        &self,
        pending: &[usize],
        new_nodes: bool,
        displaced: bool,
    ) -> (Snapshot<'_>, Vec<usize>) {
        let mut node_ids = Vec::new();
        let mut nodes = Vec::new();
        for &n in &self.live {
            let node = &self.nodes[n];
            if !new_nodes && (node.state != NodeState::Ready || node.cordoned) {
                continue;
            }
            node_ids.push(n);
            nodes.push(self.existing(n));
        }
        let mut bound = Vec::new();
        let mut pending_pods: Vec<&Pod> = pending.iter().map(|&i| &self.pods[i].pod).collect();
        for (si, &n) in node_ids.iter().enumerate() {
            let node = &self.nodes[n];
            for &p in &node.pods {
                if node.interrupted && displaced {
                    // Pods of an interrupted node need a new home before it goes.
                    pending_pods.push(&self.pods[p].pod);
                } else if !node.cordoned {
                    bound.push((&self.pods[p].pod, si));
                }
            }
        }
        let snapshot = Snapshot {
            nodes,
            bound,
            pending: pending_pods,
        };
        (snapshot, node_ids)
    }

    fn existing(&self, n: usize) -> ExistingNode<'_> {
        let node = &self.nodes[n];
        // A replacement's room is taken by the pods of the node it replaces.
        let mut requested = node.requested.plus(&node.overhead);
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

    fn env<'s>(&'s self, pool_filter: Option<&'s [usize]>, new_nodes: bool) -> SolveEnv<'s> {
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

    /// The autoscaler's provisioning decision for pending (and displaced) pods.
    fn provision(&mut self) {
        self.batch_start = None;
        // Lapsed entries answer "available" already; dropping them now makes their
        // lapse a change of the inputs (a pass between scans would miss it).
        self.unavailable.expire(self.now);
        // Everything a pass reads that can change between scans (the clock moves only
        // the unavailable offerings and the headroom's schedules, both in here).
        let inputs = ProvisionInputs {
            pending: self.pending_pods(),
            headroom: self.headroom_placeholders(),
            nodes: self.nodes_key(),
            unavailable: self.unavailable.generation(),
        };
        if self.idle_provision.as_ref() == Some(&inputs) {
            return;
        }
        let launched = self.counts.launched + self.counts.launch_failures;
        self.provision_now(&inputs.pending, &inputs.headroom);
        let idle = self.counts.launched + self.counts.launch_failures == launched;
        self.idle_provision = idle.then_some(inputs);
    }

    /// Bindings and terminations, launches, readiness and cordons: equal keys mean the
    /// same nodes in the same states with the same pods.
    fn nodes_key(&self) -> NodesKey {
        NodesKey {
            changes: self.changes,
            node_changes: self.node_changes,
        }
    }

    /// One provisioning pass for `pending` and the headroom's placeholders (and whether
    /// a pool is short of its headroom).
    fn provision_now(&mut self, pending: &[usize], headroom: &(Vec<Pod>, bool)) {
        let (placeholders, short) = headroom;
        let displaced = self
            .live
            .iter()
            .any(|&n| self.nodes[n].interrupted && !self.nodes[n].pods.is_empty());
        // A pool short of its headroom provisions even with nothing pending.
        if pending.is_empty() && !displaced && !short {
            return;
        }
        self.ensure_models();
        match self.mode {
            Mode::Fleet => {
                // A launch that finds no capacity marks its offerings unavailable; the
                // controller decides again at once with what is left (e.g. on-demand).
                for _ in 0..MAX_LAUNCH_ROUNDS {
                    let (decision, _, ms) = self.solve(pending, placeholders, true, None, true);
                    self.decision_ms.push(ms);
                    let mut failed = false;
                    for plan in &decision.launches {
                        failed |= self.launch(plan, false).is_none();
                    }
                    if !failed {
                        break;
                    }
                }
            }
            Mode::NodeGroups => self.provision_node_groups(pending, displaced),
        }
    }

    /// Cluster Autoscaler style: for each group, how many nodes of its one type the
    /// pending pods need; the least-waste group is scaled (one group per loop). The
    /// decision is `core::node_groups::scale_up`, as the controller's.
    fn provision_node_groups(&mut self, pending: &[usize], displaced: bool) {
        let started = Instant::now();
        let room = self.group_room();
        let best = {
            let (snapshot, _) = self.snapshot(pending, true, displaced);
            node_groups::scale_up(&self.env(None, true), &snapshot, &room)
        };
        self.decision_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        if let Some(up) = best {
            for plan in &up.plans {
                self.launch(plan, true);
            }
        }
    }

    /// How many more nodes each group may get (its max size less its live nodes).
    fn group_room(&self) -> Vec<usize> {
        self.settings()
            .node_groups
            .iter()
            .enumerate()
            .map(|(g, group)| {
                let current = self
                    .live
                    .iter()
                    .filter(|&&n| self.nodes[n].pool == Some(g))
                    .count();
                (group.max_size as usize).saturating_sub(current)
            })
            .collect()
    }

    /// Launches one node for `plan`; `None` when the cloud had no capacity for any option.
    fn launch(&mut self, plan: &LaunchPlan, balance_zones: bool) -> Option<usize> {
        let mut options = plan.options.clone();
        if balance_zones {
            // An Auto Scaling group spreads its instances over its zones.
            let per_zone = |z: usize| {
                self.live
                    .iter()
                    .filter(|&&n| {
                        self.nodes[n].pool == Some(plan.pool)
                            && self.nodes[n].labels.get(labels::ZONE)
                                == Some(&self.catalog.zones[z])
                    })
                    .count()
            };
            options.sort_by_key(|o| (per_zone(o.zone), o.zone));
        }
        let Some(chosen) = self.cloud.launch(self.catalog, &options, self.now) else {
            self.counts.launch_failures += 1;
            let ttl = self.settings().unavailable_offering_ttl.as_secs_f64();
            for o in &options {
                self.unavailable
                    .mark(o.instance_type, o.zone, o.capacity_type, self.now, ttl);
            }
            return None;
        };
        let o = options[chosen].clone();
        let it = &self.catalog.types[o.instance_type];
        let pool = &self.pools[plan.pool];
        let overhead = self
            .model
            .as_ref()
            .and_then(|m| {
                m.pools[plan.pool]
                    .types
                    .iter()
                    .find(|t| t.ty == o.instance_type)
            })
            .map(|t| t.daemon_overhead(o.capacity_type).clone())
            .unwrap_or_default();
        self.node_counter += 1;
        let name = format!("{}-{:05}", pool.name, self.node_counter);
        let mut node_labels = it.labels.clone();
        node_labels.extend(pool.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let zone = self.catalog.zones[o.zone].clone();
        for (k, v) in [
            (labels::ZONE, zone.as_str()),
            (labels::ZONE_BETA, zone.as_str()),
            (labels::REGION, self.catalog.region.as_str()),
            (labels::KARPENTER_CAPACITY_TYPE, o.capacity_type.as_str()),
            (labels::CAPACITY_TYPE, o.capacity_type.as_str()),
            (labels::KARPENTER_NODEPOOL, pool.name.as_str()),
            (labels::NODEPOOL, pool.name.as_str()),
            (labels::HOSTNAME, name.as_str()),
        ] {
            node_labels.insert(k.to_string(), v.to_string());
        }
        let boot = &self.settings().boot_delay;
        let delay = self
            .rng
            .range_f64(boot.min.as_secs_f64(), boot.max.as_secs_f64());
        let idx = self.nodes.len();
        self.nodes.push(SimNode {
            name,
            zone: labels::zone(&node_labels).map(str::to_string),
            labels: node_labels,
            taints: pool.taints.clone(),
            capacity: it.capacity.clone(),
            allocatable: it.allocatable.clone(),
            overhead,
            pool: Some(plan.pool),
            capacity_type: Some(o.capacity_type),
            price: o.price_per_hour,
            hash: self.pool_hashes[plan.pool],
            annotations: self
                .config
                .extras(&pool.name)
                .map(|e| e.annotations.clone())
                .unwrap_or_default(),
            ..SimNode::new(self.now, NodeState::Launching)
        });
        self.live.push(idx);
        self.node_changes += 1;
        self.counts.launched += 1;
        let managed_live = self
            .live
            .iter()
            .filter(|&&n| self.nodes[n].managed())
            .count() as u64;
        self.counts.peak = self.counts.peak.max(managed_live);
        *self
            .launched_by_type
            .entry((o.instance_type, o.capacity_type))
            .or_default() += 1;
        self.push(self.now + delay, Ev::NodeReady(idx));
        Some(idx)
    }

    /// Removes or replaces nodes: the fleet's disruption pass (`disrupt.rs`), or the
    /// Cluster Autoscaler's unneeded rule (node groups).
    fn scale_down(&mut self) {
        match self.mode {
            Mode::Fleet => self.disrupt(),
            Mode::NodeGroups => {
                self.drain();
                self.scale_down_node_groups();
            }
        }
    }

    fn scale_down_node_groups(&mut self) {
        let rule = self.settings().node_group_scale_down.clone();
        let unneeded_s = rule.unneeded_time.as_secs_f64();
        let mut candidates = Vec::new();
        for &n in &self.live {
            let node = &mut self.nodes[n];
            if !node.managed() || node.state != NodeState::Ready || node.cordoned {
                continue;
            }
            let u = node_groups::utilization(&node.requested, &node.allocatable);
            if u < rule.utilization_threshold {
                let since = *node.unneeded_since.get_or_insert(self.now);
                if self.now - since >= unneeded_s {
                    candidates.push(n);
                }
            } else {
                node.unneeded_since = None;
            }
        }
        let mut drained_one = false;
        let key = self.nodes_key();
        for n in candidates {
            let g = self.nodes[n].pool.expect("managed");
            let group_size = self
                .live
                .iter()
                .filter(|&&x| self.nodes[x].pool == Some(g))
                .count();
            if group_size <= self.settings().node_groups[g].min_size as usize {
                continue;
            }
            if self.nodes[n].pods.is_empty() {
                self.disruptions.consolidated += 1;
                self.disruptions.empty += 1;
                self.terminate(n);
                continue;
            }
            // The Cluster Autoscaler keeps nodes whose pods it may not move: no
            // controller, do-not-disrupt / safe-to-evict "false", local storage.
            let pods: Vec<&Pod> = self.nodes[n]
                .pods
                .iter()
                .map(|&p| &self.pods[p].pod)
                .collect();
            let movable = node_groups::movable(&pods);
            if drained_one || !movable || self.stays.get(&n) == Some(&key) {
                continue;
            }
            // Only if every pod fits on the other ready nodes.
            let pods = self.nodes[n].pods.clone();
            self.nodes[n].cordoned = true;
            let started = Instant::now();
            let fits = {
                let (snapshot, _) = self.snapshot(&pods, false, false);
                node_groups::fits_elsewhere(&self.env(None, false), &snapshot)
            };
            self.decision_ms
                .push(started.elapsed().as_secs_f64() * 1000.0);
            if fits {
                // Drained like every voluntary disruption: evictions within the
                // PodDisruptionBudgets, then termination.
                self.start(disrupt::Kind::Delete, vec![n], Vec::new());
                drained_one = true;
            } else {
                self.nodes[n].cordoned = false;
                self.stays.insert(n, key);
            }
        }
    }

    fn sample(&mut self) {
        let mut nodes = 0;
        let mut rate = 0.0;
        for &n in &self.live {
            let node = &self.nodes[n];
            if node.managed() {
                nodes += 1;
                rate += node.price;
            }
        }
        let pending = self.pending.len() as u32;
        self.series.push(Sample {
            t: self.now,
            nodes,
            cost_per_hour: rate,
            lower_bound_per_hour: self.lb_rate,
            shape_bound_per_hour: self.shape_rate,
            pending,
        });
    }

    fn finish(mut self, trace: &Trace, started: Instant) -> Report {
        self.sample();
        for n in self.live.clone() {
            let now = self.now;
            let node = &self.nodes[n];
            let cost = node.price * (now - node.launched_at) / 3600.0;
            match node.capacity_type {
                Some(CapacityType::Spot) => self.cost_spot += cost,
                Some(CapacityType::OnDemand) => self.cost_on_demand += cost,
                None => {}
            }
        }
        let total = self.cost_spot + self.cost_on_demand;
        let mut pods = PodCounts {
            total: self.pods.len() as u64,
            daemonset_templates: self.daemonsets.len() as u64,
            ..Default::default()
        };
        let mut infeasible_pods = Vec::new();
        for p in &self.pods {
            if p.ever_bound {
                pods.placed += 1;
            } else {
                pods.never_placed += 1;
                if let Some(reason) = &p.infeasible {
                    pods.infeasible += 1;
                    if infeasible_pods.len() < 20 {
                        infeasible_pods.push(InfeasiblePod {
                            pod: p.pod.key(),
                            reason: reason.clone(),
                        });
                    }
                }
            }
        }
        let mut by_type: Vec<TypeCount> = self
            .launched_by_type
            .iter()
            .map(|(&(ty, ct), &count)| TypeCount {
                instance_type: self.catalog.types[ty].name.clone(),
                capacity_type: ct.as_str().into(),
                count,
            })
            .collect();
        by_type.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.instance_type.cmp(&b.instance_type))
                .then_with(|| a.capacity_type.cmp(&b.capacity_type))
        });
        let ratio = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { 0.0 };
        Report {
            version: 1,
            mode: self.mode.as_str().into(),
            seed: 0,
            trace: TraceInfo {
                name: trace.header.name.clone(),
                events: trace.events.len(),
                duration_s: trace.events.last().map_or(0.0, |e| e.t),
            },
            pods,
            pending_s: Percentiles::of(&mut self.pending_s),
            cost_usd: Cost {
                total: round2(total),
                spot: round2(self.cost_spot),
                on_demand: round2(self.cost_on_demand),
                lower_bound: round2(self.lb_cost),
                ratio_to_lower_bound: ratio(total, self.lb_cost),
                shape_bound: round2(self.shape_cost),
                ratio_to_shape_bound: ratio(total, self.shape_cost),
            },
            nodes: self.counts.clone(),
            utilization: Utilization {
                cpu: ratio(self.util_req.0, self.util_alloc.0),
                memory: ratio(self.util_req.1, self.util_alloc.1),
            },
            disruptions: self.disruption_totals(),
            decisions: self.decision_ms.len() as u64,
            decision_ms: Percentiles::of(&mut self.decision_ms),
            wall_s: round3(started.elapsed().as_secs_f64()),
            infeasible_pods,
            launched_by_type: by_type,
            headroom: self.headroom_report(),
            series: std::mem::take(&mut self.series),
            marks: std::mem::take(&mut self.marks),
        }
    }

    fn disruption_totals(&mut self) -> Disruptions {
        let mut d = self.disruptions.clone();
        d.node_hours = round2(self.node_seconds / 3600.0);
        let voluntary = d.deleted + d.replaced + d.multi_node + d.expired + d.drifted;
        d.disruptions_per_node_hour = if d.node_hours > 0.0 {
            round3(voluntary as f64 * 3600.0 / self.node_seconds)
        } else {
            0.0
        };
        d.interrupted_pods = (self.recovery_s.len() + self.interrupted_at.len()) as u64;
        d.interruption_recovery_s = Percentiles::of(&mut self.recovery_s);
        d
    }
}
