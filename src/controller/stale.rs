//! Drift and expiry: a NodeClaim whose node no longer matches its NodePool, or that is
//! older than the pool's `expireAfter`, is replaced, replacement first, within the pool's
//! `Drifted` or `Expired` budget, asking the core exactly as the simulator does
//! (`core::disruption::drifted` against the template hash recorded at creation, or
//! `core::disruption::expired`, then `core::disruption::replacements` for where its pods
//! go).

use super::disruption::budget_left;
use super::provision::NewClaim;
use super::{Controller, Model};
use crate::cloud::CloudProvider;
use crate::cluster::convert::ClaimEntry;
use crate::cluster::state::{ClusterState, Prepared};
use crate::core::budget::Reason;
use crate::core::disruption::{self, Drift, PoolDisruption};
use std::collections::HashSet;

/// One drifted or expired claim and what to do about it.
pub struct StaleAction {
    pub claim: String,
    /// `Drifted` or `Expired`: the budget it is counted against and the event's reason.
    pub reason: Reason,
    /// Why, for the event.
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

/// Per snapshot node: may it be disrupted at all (as the simulator's `due`): ready, not
/// cordoned, no do-not-disrupt annotation, every pod evictable? One pass over the bound pods for every
/// node, not one per node.
fn disruptable_nodes(prepared: &Prepared) -> Vec<bool> {
    let mut ok: Vec<bool> = prepared
        .nodes
        .iter()
        .map(|n| n.ready && n.schedulable && !disruption::node_blocks_disruption(n.annotations))
        .collect();
    for (p, i) in &prepared.bound {
        ok[*i] &= disruption::pod_evictable(p);
    }
    ok
}

/// Why the claim on prepared node `i` drifted from pool `p`, if it did (the pools'
/// template hashes come from the model, made once per model: formatting a pool's template
/// for every node was most of a pass over 10,000 nodes).
fn drift_of(
    m: &Model,
    prepared: &Prepared,
    i: usize,
    p: usize,
    claim: &ClaimEntry,
) -> Option<Drift> {
    let n = &prepared.nodes[i];
    disruption::drifted(
        &m.pools[p],
        m.pool_hashes[p],
        &n.labels,
        &n.taints,
        claim.pool_hash,
    )
}

impl<P: CloudProvider> Controller<P> {
    /// Replaces one drifted claim per call, on a settled cluster, within its pool's
    /// `Drifted` budget. One per scan: a second replacement decided on the same snapshot
    /// could count on room the first one takes; the replacement makes the cluster
    /// unsettled until it is ready and the old claim gone. Returns the claim acted on.
    pub async fn drift(&self, now: f64) -> Option<String> {
        let action = self.drift_action(now)?;
        Some(self.replace(action, now).await)
    }

    /// Replaces one claim older than its pool's `expireAfter` per call, the oldest first,
    /// within its pool's `Expired` budget, as drift does (one per scan, for the same
    /// reason). Unlike drift it does not wait for pending pods to be placed (as Karpenter
    /// v1: expiry is not held back by them), only for earlier launches, deletions and
    /// replacements to finish. Returns the claim acted on.
    pub async fn expire(&self, now: f64) -> Option<String> {
        let action = self.expiry_action(now)?;
        Some(self.replace(action, now).await)
    }

    /// Carries `action` out: an event on the claim, then (unless dry-run) its
    /// replacements launched, or the claim deleted when its pods fit on other nodes.
    async fn replace(&self, action: StaleAction, now: f64) -> String {
        let summary = match action.replacements.as_slice() {
            [] => "its pods fit on other nodes; deleting".to_string(),
            r => {
                let names: Vec<String> = r.iter().map(|c| c.summary()).collect();
                format!("replacing with {}", names.join(", "))
            }
        };
        let reason = action.reason.as_str();
        let message = format!("{reason}: {}; {summary}", action.why);
        self.event_claim(&action.claim, "Normal", reason, &message)
            .await;
        if self.opts.dry_run {
            return action.claim;
        }
        let result = if action.replacements.is_empty() {
            self.delete_claim(&action.claim).await
        } else {
            self.launch_all(&action.replacements, now).await
        };
        if let Err(e) = result {
            tracing::warn!(claim = %action.claim, %reason, error = %e, "replacement failed");
        }
        action.claim
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
    pub fn drift_action(&self, now: f64) -> Option<StaleAction> {
        self.stale_action(now, Reason::Drifted)
    }

    /// The oldest expired claim whose pool's budget allows it and whose pods have
    /// somewhere to go; `None` while a claim is launching, being deleted or replaced.
    pub fn expiry_action(&self, now: f64) -> Option<StaleAction> {
        self.stale_action(now, Reason::Expired)
    }

    /// The first claim due for `reason` (`Drifted`: in node order; `Expired`: oldest
    /// first) on a node that may be disrupted, within its pool's budget for `reason`
    /// (claims being replaced count as disrupted), whose pods have somewhere to go.
    fn stale_action(&self, now: f64, reason: Reason) -> Option<StaleAction> {
        let m = self.model();
        let st = self.read();
        let busy = st.claims().any(|c| !c.ready || c.deleting_since.is_some());
        let pending = reason == Reason::Drifted && st.any_unschedulable();
        if busy || pending {
            return None;
        }
        let unavailable = self.unavailable_now(now);
        let d = self.decider(&m, &unavailable, now);
        let prepared = st.prepare(&d.inputs());
        let pools: Vec<PoolDisruption> = m.extras.iter().map(|e| e.disruption.clone()).collect();
        let mut left = budget_left(&prepared, &pools, reason, now);
        let replaced = being_replaced(&st);
        // A claim being replaced is still schedulable until its replacement is ready and
        // it is deleted; it counts against the budget all the same.
        for n in &prepared.nodes {
            let old = n.claim.and_then(|c| st.claim(c));
            if let (Some(p), Some(c)) = (n.pool, old) {
                if n.schedulable && replaced.contains(&c.name) {
                    left[p] = left[p].saturating_sub(1);
                }
            }
        }
        let disruptable = disruptable_nodes(&prepared);
        let mut due: Vec<(usize, &ClaimEntry, String)> = prepared
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let (p, claim) = (n.pool?, st.claim(n.claim?)?);
                if left[p] == 0 || replaced.contains(&claim.name) || !disruptable[i] {
                    return None;
                }
                let why = match reason {
                    Reason::Expired => expiry_of(&pools[p], claim, now)?,
                    _ => describe(&drift_of(&m, &prepared, i, p, claim)?),
                };
                Some((i, claim, why))
            })
            .collect();
        if reason == Reason::Expired {
            due.sort_by(|a, b| a.1.created.total_cmp(&b.1.created));
        }
        let snapshot = prepared.snapshot();
        let env = d.env();
        due.into_iter().find_map(|(i, claim, why)| {
            // `None`: some pod would find no place; the node waits.
            let plans = disruption::replacements(&env, &snapshot, &[i])?;
            let replacements = plans
                .iter()
                .map(|plan| {
                    let name = self.next_name(&m.pools[plan.pool].name);
                    super::provision::new_claim(&d, plan, &name, Some(&claim.name))
                })
                .collect();
            Some(StaleAction {
                claim: claim.name.clone(),
                reason,
                why,
                replacements,
            })
        })
    }
}

/// Why `claim` of a pool with `pool`'s disruption settings expired, if it did.
fn expiry_of(pool: &PoolDisruption, claim: &ClaimEntry, now: f64) -> Option<String> {
    let after = pool.expire_after_s?;
    (claim.created > 0.0 && disruption::expired(pool, claim.created, now)).then(|| {
        let after = std::time::Duration::from_secs_f64(after);
        format!(
            "older than expireAfter {}",
            humantime::format_duration(after)
        )
    })
}
