//! Fleet-mode disruption in the simulator: it asks the core what to disrupt (empty
//! nodes, expiry, drift, consolidation), within the pools' budgets, once per scan, and
//! hands each disruption it starts to `in_flight`. Node groups scale down by the Cluster
//! Autoscaler's rule instead (`node_groups_mode`).

use super::state::{NodeState, Sim};
use crate::core::budget::{self, Reason};
use crate::core::consolidation::{self, Inputs, NodeCost};
use crate::core::disruption;
use crate::core::snapshot::Snapshot;
use crate::sim::Mode;
use std::time::Instant;

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

    pub(super) fn label(self) -> &'static str {
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

impl Sim<'_> {
    /// Removes or replaces nodes: the fleet's disruption pass (`disrupt`, below), or the
    /// Cluster Autoscaler's unneeded rule (node groups).
    pub(super) fn scale_down(&mut self) {
        match self.mode {
            Mode::Fleet => self.disrupt(),
            Mode::NodeGroups => {
                self.drain();
                self.scale_down_node_groups();
            }
        }
    }

    /// The fleet's disruption pass, once per scan.
    pub(super) fn disrupt(&mut self) {
        self.record_demand();
        self.drain();
        self.delete_empty();
        // Decide on a settled cluster only: pending pods and launching nodes first.
        let unsettled = !self.pending.is_empty() || self.live_flags().any_launching;
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
        self.disruption_view_of(self.live.clone())
    }

    /// The disruption view of the nodes `ids` only.
    fn disruption_view_of(&self, ids: Vec<usize>) -> (Vec<usize>, Vec<NodeCost>) {
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
            bound: {
                let len = ids.iter().map(|&n| self.nodes[n].pods.len()).sum();
                let mut bound = Vec::with_capacity(len);
                bound.extend(
                    ids.iter()
                        .enumerate()
                        .flat_map(|(si, &n)| self.nodes[n].pods.iter().map(move |&p| (p, si)))
                        .map(|(p, si)| (self.pods[p].pod, si)),
                );
                bound
            },
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
        // Only nodes with no pods can be empty (DaemonSet pods are templates here, never
        // bound): the view is built of those alone, not of every node and pod at every
        // scan. The core answers the same, as it takes each node by itself, in order,
        // within the budgets.
        let maybe_empty = self.empty_live();
        if maybe_empty.is_empty() {
            return;
        }
        let left = self.budget_left(Reason::Empty);
        let (ids, costs) = self.disruption_view_of(maybe_empty);
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
            // Nothing can be due (see `stale_hash_nodes` and `next_expiry`; the margin
            // keeps rounding from skipping a node `due` would take).
            let none_due = match kind {
                Kind::Drifted => self.stale_hash_nodes == 0,
                _ => self.now < self.next_expiry - 1e-6,
            };
            if none_due {
                continue;
            }
            if kind == Kind::Expired {
                self.next_expiry = self.earliest_expiry();
            }
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

    /// The earliest time a live node expires.
    fn earliest_expiry(&self) -> f64 {
        self.live
            .iter()
            .filter_map(|&n| {
                let node = &self.nodes[n];
                let e = self.pool_disruption[node.pool?].expire_after_s?;
                Some(node.launched_at + e)
            })
            .fold(f64::INFINITY, f64::min)
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
                .all(|&i| disruption::pod_evictable(self.pods[i].pod))
    }

    /// One consolidation decision (multi-node first, then single-node), when something
    /// changed since the last fruitless search.
    fn consolidate(&mut self) {
        if !self.pool_disruption.iter().any(|p| p.underutilized())
            || self.in_flight.iter().any(|f| f.kind != Kind::Empty)
        {
            return;
        }
        let newly_eligible = self.newly_eligible();
        // The capacity kept falls as old peaks leave the window: that may allow an action,
        // as may the time passing until an action refused for its evictions pays.
        // Consolidation never takes the pools' headroom spare away either.
        let keep = self.demand_window.peak().plus(&self.headroom_keep());
        let same_keep = self.keep_at_last_search.as_ref() == Some(&keep);
        if self.changes == self.changes_at_last_search
            && !newly_eligible
            && same_keep
            && self.pays_at.is_none_or(|t| t > self.now)
        {
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
                max_candidates: consolidation::SINGLE_NODE_TRIALS,
                keep,
                payback: self.payback(),
            };
            let started = Instant::now();
            let search = consolidation::search(&env, snapshot, &input);
            self.pays_at = search.pays_at;
            (search.action, started.elapsed().as_secs_f64() * 1000.0)
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
        self.demand_window
            .record(self.now, window, self.service_demand.clone());
        self.long_demand.record(self.now, &self.service_demand);
    }

    /// What evictions cost consolidation (Settings `evictionCost`; zero: nothing).
    fn payback(&self) -> Option<consolidation::Payback<'_>> {
        let cost = self.settings().eviction_cost;
        (cost > 0.0).then_some(consolidation::Payback {
            history: &self.long_demand,
            eviction_cost: cost,
        })
    }
}
