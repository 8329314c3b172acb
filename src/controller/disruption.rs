//! The disruption loop: every `scanInterval`, expiry, drift and consolidation, each
//! asking the core exactly as the simulator does, within the pools' budgets. It writes
//! only deletions of claims and their replacements (launched first); the drains that
//! follow belong to [`super::termination`], so a drain held by a PDB never holds this
//! loop. (Node repair is not implemented: an unhealthy node is left to its owner.)

use super::context::lock;
use super::context::Model;
use super::leader::Gate;
use super::provision::{self, Decider, NewClaim};
use super::{Controller, ControllerError};
use crate::cloud::CloudProvider;
use crate::cluster::state::{ClusterState, Prepared};
use crate::core::budget::{self, Reason};
use crate::core::consolidation::{self, NodeCost};
use crate::core::disruption::PoolDisruption;
use crate::core::resources::Resources;
use std::sync::Arc;

const LOOP: &str = "disruption";

/// Requests of the pods that do not end by themselves (DaemonSets' excluded), bound or
/// waiting: the demand consolidation keeps room for, as the simulator measures it. Kept
/// by the indexes as pods come and go: it is recorded every scan, settled or not.
fn service_demand(st: &ClusterState) -> Resources {
    st.service_demand().clone()
}

/// How many more nodes each pool may disrupt now for `reason`: its budgets over its
/// nodes, less the claims already being deleted (as the simulator counts them).
pub(crate) fn budget_left(
    prepared: &Prepared,
    pools: &[PoolDisruption],
    reason: Reason,
    now: f64,
) -> Vec<usize> {
    let mut total = vec![0usize; pools.len()];
    let mut disrupting = vec![0usize; pools.len()];
    for n in &prepared.nodes {
        if let Some(p) = n.pool {
            total[p] += 1;
            disrupting[p] += usize::from(!n.schedulable);
        }
    }
    pools
        .iter()
        .enumerate()
        .map(|(p, pool)| {
            budget::allowed(&pool.budgets, reason, total[p], disrupting[p], now as i64)
        })
        .collect()
}

impl<P: CloudProvider + 'static> Controller<P> {
    pub async fn disruption_loop(self: Arc<Self>, gate: Gate) {
        let every = self.config.settings.scan_interval;
        let bound = self.opts.cloud_timeout + self.opts.api_timeout;
        super::health::every(&self.liveness, LOOP, every, bound, || async {
            if gate.acting() {
                self.disruption_pass(self.now()).await;
            }
        })
        .await;
    }
}

impl<P: CloudProvider> Controller<P> {
    /// Expiry, drift and consolidation, in that order (as the simulator's scan).
    pub async fn disruption_pass(&self, now: f64) {
        self.expire(now).await;
        self.drift(now).await;
        if let Err(e) = self.consolidate(now).await {
            tracing::warn!(error = %e, "consolidation failed");
        }
    }

    /// One consolidation action when the cluster is settled: an empty node past its
    /// pool's `consolidateAfter`, else what `core::consolidation::find_action` finds.
    pub async fn consolidate(&self, now: f64) -> Result<(), ControllerError> {
        let Some((old, replacement, why)) = self.consolidation_action(now) else {
            return Ok(());
        };
        for claim in &old {
            self.event_claim(claim, "Normal", "Consolidating", &why)
                .await;
        }
        if self.opts.dry_run {
            return Ok(());
        }
        match replacement {
            // The replaced claims go once the replacement is ready (RetireReplaced).
            Some(replacement) => self.launch_new(&replacement, now).await?,
            None => {
                for claim in &old {
                    self.delete_claim(claim).await?;
                }
            }
        }
        Ok(())
    }

    /// (claims to remove, replacement to launch first, why): empty nodes first, then
    /// what `core::consolidation::find_action` finds, within the pools' budgets, exactly
    /// as the simulator asks the core.
    fn consolidation_action(&self, now: f64) -> Option<(Vec<String>, Option<NewClaim>, String)> {
        let m = self.model();
        let st = self.read();
        let window = self.config.settings.consolidation_window.as_secs_f64();
        let demand = service_demand(&st);
        lock(&self.demand_history).record(now, &demand);
        lock(&self.demand).record(now, window, demand);
        let unsettled =
            st.claims().any(|c| !c.ready || c.deleting_since.is_some()) || st.any_unschedulable();
        if unsettled {
            return None;
        }
        let unavailable = self.unavailable_now(now);
        let d = self.decider(&m, &unavailable, now);
        let prepared = st.prepare(&d.inputs());
        let pools: Vec<PoolDisruption> = m.extras.iter().map(|e| e.disruption.clone()).collect();
        let costs: Vec<NodeCost> = prepared
            .nodes
            .iter()
            .map(|n| NodeCost {
                price_per_hour: n.price_per_hour,
                stable_since: n.stable_since,
                annotations: n.annotations.clone(),
            })
            .collect();
        let snapshot = prepared.snapshot();
        let budget_left = |reason| budget_left(&prepared, &pools, reason, now);
        let empty =
            consolidation::empty_nodes(&snapshot, &costs, &pools, &budget_left(Reason::Empty), now);
        let managed = |n: usize| prepared.nodes[n].claim.map(str::to_string);
        // An empty node that holds a pool's headroom spare stays.
        let empty = provision::keep_headroom(&prepared, &d, empty);
        let empty: Vec<String> = empty.into_iter().filter_map(managed).collect();
        if !empty.is_empty() {
            let why = format!("{} empty node(s)", empty.len());
            return Some((empty, None, why));
        }
        if !pools.iter().any(PoolDisruption::underutilized) {
            return None;
        }
        let keep = lock(&self.demand)
            .peak()
            .plus(&provision::headroom_keep(&prepared, &d));
        let pdbs = st.pdbs();
        // Held for the search: only this loop records into it.
        let history = lock(&self.demand_history);
        let eviction_cost = self.config.settings.eviction_cost;
        let input = consolidation::Inputs {
            nodes: &costs,
            pools: &pools,
            pdbs: &pdbs,
            budget_left: &budget_left(Reason::Underutilized),
            max_candidates: consolidation::SINGLE_NODE_TRIALS,
            keep,
            payback: (eviction_cost > 0.0).then_some(consolidation::Payback {
                history: &history,
                eviction_cost,
            }),
        };
        let action = consolidation::find_action(&d.env(), snapshot, &input)?;
        self.action_claims(&m, &d, &prepared, action)
    }

    /// The claims a consolidation action removes, its replacement and why; `None` when
    /// it would touch a node stevedore did not launch (only those are disrupted).
    fn action_claims(
        &self,
        m: &Model,
        d: &Decider,
        prepared: &Prepared,
        action: consolidation::Action,
    ) -> Option<(Vec<String>, Option<NewClaim>, String)> {
        let claims: Vec<String> = action
            .nodes
            .iter()
            .filter_map(|&n| prepared.nodes[n].claim.map(str::to_string))
            .collect();
        if claims.len() != action.nodes.len() {
            return None;
        }
        let names: Vec<&str> = action
            .nodes
            .iter()
            .map(|&n| prepared.nodes[n].name)
            .collect();
        let names = names.join(", ");
        match action.replacement {
            None => Some((
                claims,
                None,
                format!("node(s) {names}: pods fit on other nodes"),
            )),
            Some(plan) => {
                let pool = m.pools[plan.pool].name.clone();
                let replaces = claims.join(",");
                let new = provision::new_claim(d, &plan, &self.next_name(&pool), Some(&replaces));
                let why = format!(
                    "node(s) {names} replaced by a cheaper {} (saves ${:.4}/h)",
                    new.summary(),
                    action.savings
                );
                Some((claims, Some(new), why))
            }
        }
    }
}
