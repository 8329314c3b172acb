//! The replay itself: `run` checks the trace, builds the `Sim` and drives the loop
//! that merges the trace's events with the simulator's own queue in time order, one
//! instant at a time, until the trace's last event.

use super::events::Ev;
use super::headroom;
use super::live_view::LiveView;
use super::state::{FleetTotals, Sim};
use super::{SimError, SimOptions};
use crate::config::Config;
use crate::core::disruption::{self, ConsolidationPolicy, PoolDisruption};
use crate::core::instance::Catalog;
use crate::core::nodepool::NodePool;
use crate::core::resources::Resources;
use crate::core::rng::Rng;
use crate::core::snapshot::ClassRegistry;
use crate::core::unavailable::UnavailableOfferings;
use crate::sim::cloud::SimCloud;
use crate::sim::report::{Disruptions, NodeCounts, Report};
use crate::sim::setup;
use crate::sim::Mode;
use crate::trace::{EventKind, Trace};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Seconds a Spot interruption warning comes before the reclaim (EC2's two minutes).
const SPOT_WARNING_S: f64 = 120.0;

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
        stale_hash_nodes: 0,
        anti_affinity_bound: 0,
        next_expiry: f64::INFINITY,
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
        constrained_bound: None,
        bound_group_by_class: HashMap::new(),
        unavailable: UnavailableOfferings::default(),
        cloud: SimCloud::default(),
        rng: Rng::new(opts.seed),
        now: 0.0,
        seq: 0,
        queue: BinaryHeap::new(),
        events: Vec::new(),
        pods: Vec::new(),
        pending: BTreeSet::new(),
        pending_changes: 0,
        live_view: LiveView::default(),
        idle_provision: None,
        stays: HashMap::new(),
        stuck: BTreeSet::new(),
        new_pending: Vec::new(),
        full_pass: false,
        pod_index: HashMap::new(),
        replicas: HashMap::new(),
        nodes: Vec::new(),
        live: Vec::new(),
        node_counter: 0,
        sched_dirty: false,
        batch_start: None,
        batch_last: 0.0,
        feasibility_cache: HashMap::new(),
        feasibility_by_class: HashMap::new(),
        classes: ClassRegistry::default(),
        demand: Resources::default(),
        service_demand: Resources::default(),
        demand_dirty: false,
        demand_classes: HashMap::new(),
        constrained_classes: HashMap::new(),
        lb_rate: 0.0,
        lb_cost: 0.0,
        shape_rate: 0.0,
        shape_cost: 0.0,
        constrained_rate: 0.0,
        constrained_cost: 0.0,
        cost_spot: 0.0,
        cost_on_demand: 0.0,
        fleet_totals: FleetTotals::default(),
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
        demand_window: Default::default(),
        long_demand: Default::default(),
        pays_at: None,
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
