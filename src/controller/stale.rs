//! Drift: a NodeClaim whose node no longer matches its NodePool is replaced, replacement
//! first, within the pool's `Drifted` budget, asking the core exactly as the simulator
//! does (`core::disruption::drifted` against the template hash recorded at creation,
//! then `core::disruption::replacements` for where its pods go).

use super::provision::NewClaim;
use super::{budget_left, Controller, Model};
use crate::cloud::CloudProvider;
use crate::cluster::convert::ClaimEntry;
use crate::cluster::state::{ClusterState, Prepared};
use crate::core::budget::Reason;
use crate::core::disruption::{self, Drift, PoolDisruption};
use std::collections::HashSet;

/// One drifted claim and what to do about it.
pub struct DriftAction {
    pub claim: String,
    /// Why it drifted, for the event.
    pub why: String,
    /// Launched first; each names the old claim, which goes once one is ready. Empty
    /// when its pods fit on the other nodes: the claim is then deleted at once.
    pub replacements: Vec<NewClaim>,
}

fn describe(d: &Drift) -> String {
    match d {
        Drift::Requirement(k) => format!("the node no longer meets the pool's requirement on {k}"),
        Drift::Label(k) => format!("the node's label {k} differs from the pool's"),
        Drift::Taints => "the node's taints differ from the pool's".to_string(),
        Drift::Hash => "the pool's template changed since the node was launched".to_string(),
    }
}

/// Claims that a not yet finished replacement names: already on their way out.
fn being_replaced(st: &ClusterState) -> HashSet<String> {
    st.claims()
        .filter_map(|c| c.replaces.as_deref())
        .flat_map(|r| r.split(','))
        .map(str::to_string)
        .collect()
}

/// May prepared node `i` be disrupted at all (as the simulator's `due`): ready, not
/// cordoned, no do-not-disrupt annotation, every pod evictable.
fn disruptable(prepared: &Prepared, i: usize) -> bool {
    let n = &prepared.nodes[i];
    n.ready
        && n.schedulable
        && !disruption::node_blocks_disruption(n.annotations)
        && prepared
            .bound
            .iter()
            .filter(|(_, node)| *node == i)
            .all(|(p, _)| disruption::pod_evictable(p))
}

/// Why the claim on prepared node `i` drifted from pool `p`, if it did.
fn drift_of(
    m: &Model,
    prepared: &Prepared,
    i: usize,
    p: usize,
    claim: &ClaimEntry,
) -> Option<Drift> {
    let pool = &m.pools[p];
    let n = &prepared.nodes[i];
    let hash = disruption::template_hash(pool);
    disruption::drifted(pool, hash, &n.labels, &n.taints, claim.pool_hash)
}

impl<P: CloudProvider> Controller<P> {
    /// Replaces one drifted claim per call, on a settled cluster, within its pool's
    /// `Drifted` budget. One per scan: a second replacement decided on the same snapshot
    /// could count on room the first one takes; the replacement makes the cluster
    /// unsettled until it is ready and the old claim gone. Returns the claim acted on.
    pub async fn drift(&self, now: f64) -> Option<String> {
        let action = self.drift_action(now)?;
        let summary = match action.replacements.as_slice() {
            [] => "its pods fit on other nodes; deleting".to_string(),
            r => {
                let names: Vec<String> = r.iter().map(|c| c.summary()).collect();
                format!("replacing with {}", names.join(", "))
            }
        };
        let message = format!("Drifted: {}; {summary}", action.why);
        self.event_claim(&action.claim, "Normal", "Drifted", &message)
            .await;
        if self.opts.dry_run {
            return Some(action.claim);
        }
        let result = if action.replacements.is_empty() {
            self.delete_claim(&action.claim).await
        } else {
            self.launch_all(&action.replacements, now).await
        };
        if let Err(e) = result {
            tracing::warn!(claim = %action.claim, error = %e, "drift replacement failed");
        }
        Some(action.claim)
    }

    async fn launch_all(
        &self,
        claims: &[NewClaim],
        now: f64,
    ) -> Result<(), super::ControllerError> {
        for c in claims {
            self.launch_new(c, now).await?;
        }
        Ok(())
    }

    /// The first drifted claim (in node order) whose pool's budget allows it and whose
    /// pods have somewhere to go; `None` while the cluster is not settled.
    pub fn drift_action(&self, now: f64) -> Option<DriftAction> {
        let m = self.model();
        let st = self.read();
        let unsettled = st.claims().any(|c| !c.ready || c.deleting_since.is_some())
            || st.pods().any(|p| p.unschedulable);
        if unsettled {
            return None;
        }
        let unavailable = self.unavailable_now(now);
        let d = self.decider(&m, &unavailable, now);
        let prepared = st.prepare(&d.inputs());
        let pools: Vec<PoolDisruption> = m.extras.iter().map(|e| e.disruption.clone()).collect();
        let left = budget_left(&prepared, &pools, Reason::Drifted, now);
        let replaced = being_replaced(&st);
        let snapshot = prepared.snapshot();
        let env = d.env();
        for (i, n) in prepared.nodes.iter().enumerate() {
            let (Some(p), Some(claim)) = (n.pool, n.claim.and_then(|c| st.claim(c))) else {
                continue;
            };
            if left[p] == 0 || replaced.contains(&claim.name) || !disruptable(&prepared, i) {
                continue;
            }
            let Some(drift) = drift_of(&m, &prepared, i, p, claim) else {
                continue;
            };
            // `None`: some pod would find no place; the node waits.
            let Some(plans) = disruption::replacements(&env, &snapshot, &[i]) else {
                continue;
            };
            let replacements = plans
                .iter()
                .map(|plan| {
                    let name = self.next_name(&m.pools[plan.pool].name);
                    super::provision::new_claim(&d, plan, &name, Some(&claim.name))
                })
                .collect();
            return Some(DriftAction {
                claim: claim.name.clone(),
                why: describe(&drift),
                replacements,
            });
        }
        None
    }

    /// How many more claims each pool (by name) may disrupt for expiry now.
    pub(super) fn expiry_budget(&self, m: &Model, now: f64) -> Vec<(String, usize)> {
        let unavailable = self.unavailable_now(now);
        let d = self.decider(m, &unavailable, now);
        let st = self.read();
        let prepared = st.prepare(&d.inputs());
        let pools: Vec<PoolDisruption> = m.extras.iter().map(|e| e.disruption.clone()).collect();
        let left = budget_left(&prepared, &pools, Reason::Expired, now);
        m.pools.iter().map(|p| p.name.clone()).zip(left).collect()
    }
}
