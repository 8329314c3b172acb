//! Fleet-mode disruption in the simulator: it asks the core what to disrupt (empty
//! nodes, expiry, drift, consolidation), within the pools' budgets, and executes the
//! core's `Execution` commands: cordon, launch replacements, drain through evictions
//! that respect PodDisruptionBudgets (refused ones retried each scan), terminate.
//! Every eviction is checked again here, independently of the core, for PDB violations
//! and for pods that must not be disrupted.

use super::{NodeState, PodState, Sim};
use crate::core::budget::{self, Reason};
use crate::core::consolidation::{self, Inputs, NodeCost};
use crate::core::disruption::{self, Command, Event, Execution, Phase};
use crate::core::pdb::{Budget, IntOrPercent};
use crate::core::pod::Pod;
use crate::core::resources::Resources;
use crate::core::scheduler::LaunchPlan;
use crate::core::snapshot::Snapshot;
use crate::sim::report::Mark;
use std::time::Instant;

/// Single-node consolidation trials per decision.
const CONSOLIDATION_CANDIDATES: usize = 10;

/// What a disruption is for (report counters and chart marks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Empty,
    Delete,
    Replace,
    MultiNode,
    Expired,
    Drifted,
}

impl Kind {
    fn reason(self) -> Reason {
        match self {
            Kind::Empty => Reason::Empty,
            Kind::Delete | Kind::Replace | Kind::MultiNode => Reason::Underutilized,
            Kind::Expired => Reason::Expired,
            Kind::Drifted => Reason::Drifted,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Empty => "emptied",
            Kind::Delete => "consolidated",
            Kind::Replace => "replaced",
            Kind::MultiNode => "multi-node",
            Kind::Expired => "expired",
            Kind::Drifted => "drifted",
        }
    }
}

/// One disruption being carried out.
#[derive(Clone, Debug)]
pub(super) struct InFlight {
    pub exec: Execution,
    pub kind: Kind,
    /// The nodes going away.
    pub nodes: Vec<usize>,
    /// Their replacements (launched first).
    pub replacements: Vec<usize>,
}

impl Sim<'_> {
    /// The fleet's disruption pass, once per scan.
    pub(super) fn disrupt(&mut self) {
        self.record_demand();
        self.drain();
        self.delete_empty();
        // Decide on a settled cluster only: pending pods and launching nodes first.
        let unsettled = self
            .live
            .iter()
            .any(|&n| self.nodes[n].state == NodeState::Launching)
            || !self.pending.is_empty();
        if unsettled {
            return;
        }
        self.expire_and_drift();
        self.consolidate();
    }

    /// Nodes of each pool (index) and how many of them are being disrupted.
    fn pool_counts(&self) -> (Vec<usize>, Vec<usize>) {
        let mut total = vec![0; self.pools.len()];
        let mut disrupting = vec![0; self.pools.len()];
        for &n in &self.live {
            if let Some(p) = self.nodes[n].pool {
                total[p] += 1;
                disrupting[p] += usize::from(self.nodes[n].disrupting);
            }
        }
        (total, disrupting)
    }

    /// How many more nodes each pool may disrupt for `reason` now.
    fn budget_left(&self, reason: Reason) -> Vec<usize> {
        let (total, disrupting) = self.pool_counts();
        let epoch = self.epoch + self.now as i64;
        (0..self.pools.len())
            .map(|p| {
                let budgets = &self.pool_disruption[p].budgets;
                budget::allowed(budgets, reason, total[p], disrupting[p], epoch)
            })
            .collect()
    }

    /// The snapshot consolidation sees: every live node (`ids[i]` is snapshot node `i`).
    fn disruption_view(&self) -> (Vec<usize>, Vec<NodeCost>) {
        let ids: Vec<usize> = self.live.clone();
        let costs = ids
            .iter()
            .map(|&n| {
                let node = &self.nodes[n];
                let backing_off = self.backoff.get(&n).is_some_and(|&t| t > self.now);
                let mut annotations = node.annotations.clone();
                if backing_off {
                    // A failed replacement: leave the node alone for a while.
                    annotations.insert("stevedore.dev/do-not-disrupt".into(), "true".into());
                }
                NodeCost {
                    price_per_hour: node.price,
                    stable_since: node.stable_since,
                    annotations,
                }
            })
            .collect();
        (ids, costs)
    }

    fn snapshot_of(&self, ids: &[usize]) -> Snapshot<'_> {
        Snapshot {
            nodes: ids.iter().map(|&n| self.existing(n)).collect(),
            bound: ids
                .iter()
                .enumerate()
                .flat_map(|(si, &n)| self.nodes[n].pods.iter().map(move |&p| (p, si)))
                .map(|(p, si)| (&self.pods[p].pod, si))
                .collect(),
            pending: Vec::new(),
        }
    }

    fn delete_empty(&mut self) {
        if !self
            .pool_disruption
            .iter()
            .any(|p| p.consolidate_after().is_some())
        {
            return;
        }
        let left = self.budget_left(Reason::Empty);
        let (ids, costs) = self.disruption_view();
        let empty = {
            let snapshot = self.snapshot_of(&ids);
            consolidation::empty_nodes(&snapshot, &costs, &self.pool_disruption, &left, self.now)
        };
        for i in empty {
            if self.nodes[ids[i]].disrupting || !self.headroom_allows_removal(ids[i]) {
                continue;
            }
            self.start(Kind::Empty, vec![ids[i]], Vec::new());
        }
    }

    /// Expired and drifted nodes are replaced, replacement first, within their budgets.
    fn expire_and_drift(&mut self) {
        self.ensure_models();
        for kind in [Kind::Drifted, Kind::Expired] {
            let mut left = self.budget_left(kind.reason());
            let due: Vec<usize> = self
                .live
                .iter()
                .copied()
                .filter(|&n| !self.nodes[n].disrupting && self.due(n, kind))
                .collect();
            for n in due {
                let p = self.nodes[n].pool.expect("managed");
                if left[p] == 0 || self.backoff.get(&n).is_some_and(|&t| t > self.now) {
                    continue;
                }
                let ids = self.live.clone();
                let i = ids.iter().position(|&x| x == n).expect("live");
                let plans = {
                    let env = self.env(None, true);
                    disruption::replacements(&env, &self.snapshot_of(&ids), &[i])
                };
                if let Some(plans) = plans {
                    left[p] -= 1;
                    self.start(kind, vec![n], plans);
                }
            }
        }
    }

    /// Is managed node `n` due for disruption of this kind?
    fn due(&self, n: usize, kind: Kind) -> bool {
        let node = &self.nodes[n];
        let Some(p) = node.pool else { return false };
        if node.state != NodeState::Ready || node.cordoned {
            return false;
        }
        // Whether it is due comes first: it is cheap, and rarely true, while the pods'
        // evictability reads every pod's annotations.
        let due = match kind {
            Kind::Expired => {
                disruption::expired(&self.pool_disruption[p], node.launched_at, self.now)
            }
            Kind::Drifted => {
                let pool = &self.pools[p];
                let hash = self.pool_hashes[p];
                disruption::drifted(pool, hash, &node.labels, &node.taints, Some(node.hash))
                    .is_some()
            }
            _ => false,
        };
        due && !disruption::node_blocks_disruption(&node.annotations)
            && node
                .pods
                .iter()
                .all(|&i| disruption::pod_evictable(&self.pods[i].pod))
    }

    /// One consolidation decision (multi-node first, then single-node), when something
    /// changed since the last fruitless search.
    fn consolidate(&mut self) {
        if !self.pool_disruption.iter().any(|p| p.underutilized())
            || self.in_flight.iter().any(|f| f.kind != Kind::Empty)
        {
            return;
        }
        let newly_eligible = self.live.iter().any(|&n| {
            let after = self.nodes[n]
                .pool
                .and_then(|p| self.pool_disruption[p].consolidate_after())
                .unwrap_or(f64::INFINITY);
            let age = self.now - self.nodes[n].stable_since;
            age >= after && age < after + self.settings().scan_interval.as_secs_f64()
        });
        // The capacity kept falls as old peaks leave the window: that may allow an action.
        // Consolidation never takes the pools' headroom spare away either.
        let keep = self.recent_peak_demand().plus(&self.headroom_keep());
        let same_keep = self.keep_at_last_search.as_ref() == Some(&keep);
        if self.changes == self.changes_at_last_search && !newly_eligible && same_keep {
            return;
        }
        self.changes_at_last_search = self.changes;
        self.keep_at_last_search = Some(keep.clone());
        self.ensure_models();
        let left = self.budget_left(Reason::Underutilized);
        let (ids, costs) = self.disruption_view();
        let (action, ms) = {
            let snapshot = self.snapshot_of(&ids);
            let env = self.env(None, true);
            let input = Inputs {
                nodes: &costs,
                pools: &self.pool_disruption,
                pdbs: &self.config.pdbs,
                budget_left: &left,
                max_candidates: CONSOLIDATION_CANDIDATES,
                keep,
            };
            let started = Instant::now();
            let action = consolidation::find_action(&env, snapshot, &input);
            (action, started.elapsed().as_secs_f64() * 1000.0)
        };
        self.decision_ms.push(ms);
        let Some(action) = action else { return };
        let nodes: Vec<usize> = action.nodes.iter().map(|&i| ids[i]).collect();
        for &n in &nodes {
            let stable = self.now - self.nodes[n].stable_since;
            let d = &mut self.disruptions;
            d.min_stable_s_at_consolidation = Some(
                d.min_stable_s_at_consolidation
                    .map_or(stable, |m: f64| m.min(stable)),
            );
        }
        let kind = match (&action.replacement, nodes.len()) {
            (_, 2..) => Kind::MultiNode,
            (Some(_), _) => Kind::Replace,
            (None, _) => Kind::Delete,
        };
        self.start(kind, nodes, action.replacement.into_iter().collect());
    }

    /// Records the demand now (cpu and memory of every feasible pod, placed or not, that
    /// does not end by itself), keeping the Settings' `consolidationWindow` of history.
    /// Jobs' pods are left out: their capacity goes as empty nodes when they end, and a
    /// burst of them would otherwise hold half-empty nodes for the whole window.
    pub(super) fn record_demand(&mut self) {
        let window = self.settings().consolidation_window.as_secs_f64();
        while self
            .demand_history
            .front()
            .is_some_and(|(t, _)| *t < self.now - window)
        {
            self.demand_history.pop_front();
        }
        self.demand_history
            .push_back((self.now, self.service_demand.clone()));
    }

    fn recent_peak_demand(&self) -> Resources {
        let mut peak = Resources::default();
        for (_, d) in &self.demand_history {
            peak.cpu_milli = peak.cpu_milli.max(d.cpu_milli);
            peak.memory = peak.memory.max(d.memory);
        }
        peak
    }

    /// Starts a disruption: the core's execution says what to do first.
    pub(super) fn start(&mut self, kind: Kind, nodes: Vec<usize>, plans: Vec<LaunchPlan>) {
        let (exec, commands) = Execution::start(plans.len());
        let mut replacements = Vec::new();
        for plan in &plans {
            match self.launch(plan, false) {
                Some(n) => replacements.push(n),
                // No capacity: give up now, before anything was cordoned.
                None => return self.back_off(&nodes, &replacements),
            }
        }
        let mut flight = InFlight {
            exec,
            kind,
            nodes,
            replacements,
        };
        self.run_commands(&mut flight, commands);
        self.in_flight.push(flight);
    }

    fn back_off(&mut self, nodes: &[usize], launched: &[usize]) {
        for &n in launched {
            self.terminate(n);
        }
        let until = self.now + disruption::REPLACEMENT_BACKOFF_S;
        for &n in nodes {
            self.backoff.insert(n, until);
        }
    }

    fn run_commands(&mut self, flight: &mut InFlight, commands: Vec<Command>) {
        for c in commands {
            match c {
                Command::Cordon => {
                    for &n in &flight.nodes {
                        self.nodes[n].cordoned = true;
                        self.nodes[n].disrupting = true;
                    }
                    self.node_changes += 1;
                }
                // Launched in `start`, so a launch failure can abandon before cordoning.
                Command::LaunchReplacements => {}
                Command::Drain => self.drain_flight(flight),
                Command::Terminate => {
                    for n in flight.nodes.clone() {
                        self.count(flight.kind);
                        self.terminate(n);
                    }
                }
                Command::Uncordon => {
                    for &n in &flight.nodes {
                        self.nodes[n].cordoned = false;
                        self.nodes[n].disrupting = false;
                    }
                    self.node_changes += 1;
                }
                Command::BackOff { until } => {
                    for &n in &flight.nodes {
                        self.backoff.insert(n, until);
                    }
                }
            }
        }
    }

    fn count(&mut self, kind: Kind) {
        let d = &mut self.disruptions;
        match kind {
            Kind::Empty => d.empty += 1,
            Kind::Delete => d.deleted += 1,
            Kind::Replace => d.replaced += 1,
            Kind::MultiNode => d.multi_node += 1,
            Kind::Expired => d.expired += 1,
            Kind::Drifted => d.drifted += 1,
        }
        if matches!(
            kind,
            Kind::Empty | Kind::Delete | Kind::Replace | Kind::MultiNode
        ) {
            d.consolidated += 1;
        }
        self.marks.push(Mark {
            t: self.now,
            kind: kind.label(),
        });
    }

    /// Drains every disruption in its draining phase (each scan: refused evictions are
    /// retried), and the pods of interrupted Spot nodes that have somewhere to go.
    pub(super) fn drain(&mut self) {
        let mut flights = std::mem::take(&mut self.in_flight);
        for f in &mut flights {
            if f.exec.phase == Phase::Draining {
                self.drain_flight(f);
            }
        }
        flights.retain(|f| matches!(f.exec.phase, Phase::Launching | Phase::Draining));
        // Disruptions started while draining (none today) are kept.
        flights.append(&mut self.in_flight);
        self.in_flight = flights;
        self.drain_interrupted();
    }

    fn drain_flight(&mut self, flight: &mut InFlight) {
        let pods: Vec<usize> = flight
            .nodes
            .iter()
            .flat_map(|&n| self.nodes[n].pods.clone())
            .collect();
        self.evict(&pods);
        if flight.nodes.iter().all(|&n| self.nodes[n].pods.is_empty()) {
            let commands = flight.exec.on(Event::Drained, self.now);
            self.run_commands(flight, commands);
        }
    }

    /// An interrupted node's pods are evicted (within their budgets) as soon as the
    /// ready nodes can hold them: they run again before the reclaim, not after.
    pub(super) fn drain_interrupted(&mut self) {
        let pods: Vec<usize> = self
            .live
            .iter()
            .filter(|&&n| self.nodes[n].interrupted)
            .flat_map(|&n| self.nodes[n].pods.clone())
            // Pods that forbid disruption stay until the reclaim takes them.
            .filter(|&p| disruption::pod_evictable(&self.pods[p].pod))
            .collect();
        if pods.is_empty() {
            return;
        }
        let (decision, _, _) = self.solve(&pods, &[], false, None, false);
        let movable: Vec<usize> = decision.existing.iter().map(|&(i, _)| pods[i]).collect();
        self.evict(&movable);
    }

    /// Evicts what the PodDisruptionBudgets allow of `pods`, in order.
    fn evict(&mut self, pods: &[usize]) {
        if pods.is_empty() {
            return;
        }
        let chosen = if self.config.pdbs.is_empty() {
            (0..pods.len()).collect()
        } else {
            // Every pod that exists but is not running counts as unavailable, also
            // those no node could ever hold.
            let healthy: Vec<&Pod> = self.healthy_pods().collect();
            let pending: Vec<&Pod> = self
                .pending
                .iter()
                .chain(&self.stuck)
                .map(|&i| &self.pods[i].pod)
                .collect();
            let candidates: Vec<&Pod> = pods.iter().map(|&i| &self.pods[i].pod).collect();
            disruption::evictable(&self.config.pdbs, &healthy, &pending, &candidates)
        };
        for i in chosen {
            let p = pods[i];
            self.check_eviction(p);
            let PodState::Bound(n) = self.pods[p].state else {
                continue;
            };
            self.disruptions.pods_evicted += 1;
            self.unbind(p, n);
        }
    }

    fn healthy_pods(&self) -> impl Iterator<Item = &Pod> {
        self.live
            .iter()
            .filter(|&&n| self.nodes[n].state == NodeState::Ready)
            .flat_map(|&n| self.nodes[n].pods.iter().map(|&p| &self.pods[p].pod))
    }

    /// The independent check of one eviction, before it happens: would it leave a PDB's
    /// selected pods below what it demands, or does the pod forbid disruption? Counted,
    /// never prevented here (the core is what prevents it).
    fn check_eviction(&mut self, p: usize) {
        let pod = &self.pods[p].pod;
        let ann = |k: &str| pod.annotations.get(k).map(String::as_str);
        let safe_to_evict = ann("cluster-autoscaler.kubernetes.io/safe-to-evict");
        let forbidden = ann("karpenter.sh/do-not-disrupt") == Some("true")
            || ann("stevedore.dev/do-not-disrupt") == Some("true")
            || safe_to_evict == Some("false")
            || (pod.owner.is_none() && safe_to_evict != Some("true"));
        if forbidden {
            self.disruptions.do_not_disrupt_evicted += 1;
        }
        for pdb in &self.config.pdbs {
            if pdb.namespace != pod.namespace || !pdb.selector.matches(&pod.labels) {
                continue;
            }
            let selected =
                |q: &Pod| q.namespace == pdb.namespace && pdb.selector.matches(&q.labels);
            // Every pod that exists is on a live node or waiting; it is healthy when its
            // node is ready.
            let (mut expected, mut healthy) = (0i64, 0i64);
            for &n in &self.live {
                let ready = self.nodes[n].state == NodeState::Ready;
                for &q in &self.nodes[n].pods {
                    if selected(&self.pods[q].pod) {
                        expected += 1;
                        healthy += i64::from(ready);
                    }
                }
            }
            for &q in self.pending.iter().chain(&self.stuck) {
                expected += i64::from(selected(&self.pods[q].pod));
            }
            let ceil_pct = |v: u32| (i64::from(v) * expected + 99) / 100;
            let must_stay = match pdb.budget {
                Budget::MinAvailable(IntOrPercent::Int(v)) => v,
                Budget::MinAvailable(IntOrPercent::Percent(v)) => ceil_pct(v),
                Budget::MaxUnavailable(IntOrPercent::Int(v)) => expected - v,
                Budget::MaxUnavailable(IntOrPercent::Percent(v)) => expected - ceil_pct(v),
            };
            if healthy - 1 < must_stay {
                self.disruptions.pdb_violations += 1;
            }
        }
    }

    /// A node became ready: the disruption waiting for it may drain.
    pub(super) fn replacement_ready(&mut self, n: usize) {
        let mut flights = std::mem::take(&mut self.in_flight);
        for f in flights.iter_mut().filter(|f| f.replacements.contains(&n)) {
            let ready = f
                .replacements
                .iter()
                .all(|&r| self.nodes[r].state == NodeState::Ready);
            if ready {
                let commands = f.exec.on(Event::ReplacementsReady, self.now);
                self.run_commands(f, commands);
            }
        }
        flights.retain(|f| matches!(f.exec.phase, Phase::Launching | Phase::Draining));
        flights.append(&mut self.in_flight);
        self.in_flight = flights;
    }

    /// Node `n` is going away outside a disruption's own plan (a Spot reclaim, a lost
    /// launch): a replacement lost before it was ready abandons its disruption (the old
    /// nodes serve on); a disrupted node that vanished is simply no longer waited for.
    pub(super) fn node_lost(&mut self, n: usize) {
        let mut flights = std::mem::take(&mut self.in_flight);
        for f in &mut flights {
            if f.exec.phase == Phase::Launching && f.replacements.contains(&n) {
                // Replacements already up stay as ordinary nodes (empty ones go when
                // their pool's consolidateAfter has passed).
                f.replacements.retain(|&r| r != n);
                let commands = f.exec.on(Event::ReplacementFailed, self.now);
                self.run_commands(f, commands);
            }
            f.nodes.retain(|&m| m != n);
        }
        flights.retain(|f| {
            !f.nodes.is_empty() && matches!(f.exec.phase, Phase::Launching | Phase::Draining)
        });
        flights.append(&mut self.in_flight);
        self.in_flight = flights;
    }

    /// The room a replacement keeps for the pods of the nodes it replaces.
    pub(super) fn reserved_on(&self, n: usize) -> Option<Resources> {
        let f = self
            .in_flight
            .iter()
            .find(|f| f.replacements.contains(&n))?;
        let mut r = Resources::default();
        for &old in &f.nodes {
            r.add(&self.nodes[old].requested);
        }
        Some(r)
    }
}
