//! Consolidation: find one node whose removal or replacement by a cheaper node keeps
//! every pod placed. Each candidate is checked by running the same scheduler the
//! provisioner uses on the cluster without that node.

use super::instance::CapacityType;
use super::labels;
use super::pdb::{self, PodDisruptionBudget};
use super::pod::Pod;
use super::resources::Resources;
use super::scheduler::{solve, LaunchPlan, SolveEnv};
use super::snapshot::Snapshot;

/// Does this pod keep its node: annotated do-not-disrupt (stevedore's own, Karpenter's
/// or the Cluster Autoscaler's `safe-to-evict: "false"`), or holding local storage
/// without `safe-to-evict: "true"` (as the Cluster Autoscaler decides)?
pub fn blocks_disruption(pod: &Pod) -> bool {
    let ann = |k: &str| pod.annotations.get(k).map(String::as_str);
    let safe_to_evict = ann("cluster-autoscaler.kubernetes.io/safe-to-evict");
    ann("stevedore.dev/do-not-disrupt") == Some("true")
        || ann("karpenter.sh/do-not-disrupt") == Some("true")
        || safe_to_evict == Some("false")
        || (pod.local_storage && safe_to_evict != Some("true"))
}

/// Per-node facts consolidation needs besides the snapshot (same indices).
#[derive(Clone, Debug)]
pub struct NodeCost {
    pub price_per_hour: f64,
    /// When a pod last arrived on or left the node (seconds, caller's clock).
    pub stable_since: f64,
}

/// Per-pool consolidation settings (same indices as the pools).
#[derive(Clone, Debug)]
pub struct PoolConsolidation {
    /// `WhenEmptyOrUnderutilized`: non-empty nodes may be deleted or replaced.
    pub underutilized: bool,
    /// A node must have been stable this long (`consolidateAfter`).
    pub after_s: f64,
}

#[derive(Clone, Debug)]
pub enum Action {
    /// Delete the node: its pods fit on the other nodes.
    Delete { node: usize },
    /// Launch `plan` (for the node's pods), then delete the node.
    Replace { node: usize, plan: LaunchPlan },
}

/// A Spot node is only replaced by Spot when at least this many cheaper Spot types are
/// on offer, so the replacement is not the one most-interrupted cheapest pool.
pub const MIN_CHEAPER_SPOT_TYPES: usize = 15;

/// Is there any offering cheaper than `price` whose room holds all of `pods` at once?
/// (Necessary for a replacement; much cheaper to check than simulating one.)
fn cheaper_node_could_hold(env: &SolveEnv, pods: &[&Pod], price: f64) -> bool {
    let mut total = Resources::default();
    for p in pods {
        total.add(&p.requests);
    }
    env.model.pools.iter().any(|pm| {
        pm.types.iter().any(|pt| {
            total.fits_in(&pt.usable)
                && env.catalog.types[pt.ty].offerings.iter().any(|o| {
                    o.price_per_hour < price && total.fits_in(pt.usable_for(o.capacity_type))
                })
        })
    })
}

/// Looks for one consolidation action, trying at most `max_candidates` nodes, cheapest
/// to disrupt first (fewest pods, then most expensive). A node is a candidate only when
/// evicting all its pods at once stays within every PodDisruptionBudget (`pdbs`; the
/// snapshot's pending pods count as unavailable).
pub fn find_action<'a>(
    env: &SolveEnv,
    mut snapshot: Snapshot<'a>,
    costs: &[NodeCost],
    pools: &[PoolConsolidation],
    pdbs: &[PodDisruptionBudget],
    max_candidates: usize,
) -> Option<Action> {
    let mut pods_on: Vec<Vec<&'a Pod>> = vec![Vec::new(); snapshot.nodes.len()];
    for &(pod, n) in &snapshot.bound {
        pods_on[n].push(pod);
    }
    // Pods count as healthy for the budgets when they run on a ready node.
    let healthy: Vec<&Pod> = snapshot
        .bound
        .iter()
        .filter(|&&(_, n)| snapshot.nodes[n].ready)
        .map(|&(pod, _)| pod)
        .collect();
    let mut candidates: Vec<usize> = (0..snapshot.nodes.len())
        .filter(|&n| {
            let node = &snapshot.nodes[n];
            let Some(p) = node.pool else { return false };
            node.ready
                && node.schedulable
                && pools[p].underutilized
                && env.now - costs[n].stable_since >= pools[p].after_s
                && !pods_on[n].is_empty()
                && pods_on[n]
                    .iter()
                    .all(|pod| pod.owner.is_some() && !blocks_disruption(pod))
                && pdb::breaks(pdbs, &healthy, &snapshot.pending, &pods_on[n]).is_none()
        })
        .collect();
    candidates.sort_by(|&a, &b| {
        pods_on[a]
            .len()
            .cmp(&pods_on[b].len())
            .then(costs[b].price_per_hour.total_cmp(&costs[a].price_per_hour))
            .then(a.cmp(&b))
    });
    // Pods whose anti-affinity other pods must respect: all the topology a candidate
    // without constraints of its own needs (most are), found once per pass.
    let anti_bound: Vec<(&'a Pod, usize)> = snapshot
        .bound
        .iter()
        .copied()
        .filter(|(pod, _)| !pod.anti_affinity.is_empty())
        .collect();
    for &n in candidates.iter().take(max_candidates) {
        let constrained = pods_on[n]
            .iter()
            .any(|p| !p.spread.is_empty() || !p.affinity.is_empty() || !p.anti_affinity.is_empty());
        let bound = if constrained {
            &snapshot.bound
        } else {
            &anti_bound
        };
        // The node list is lent to each trial and handed back, not copied.
        let without = Snapshot {
            nodes: std::mem::take(&mut snapshot.nodes),
            bound: bound.iter().copied().filter(|&(_, m)| m != n).collect(),
            pending: pods_on[n].clone(),
        };
        let action = trial(env, &without, n, costs[n].price_per_hour);
        snapshot.nodes = without.nodes;
        if action.is_some() {
            return action;
        }
    }
    None
}

/// Where would node `n`'s pods (`without.pending`) go if it were gone? `price` is what
/// the node costs per hour.
fn trial(env: &SolveEnv, without: &Snapshot, n: usize, price: f64) -> Option<Action> {
    // Launching nodes are already promised to pending pods: a consolidation
    // decision counts only on ready ones. Deleting is tried first, on existing
    // nodes alone (cheap); a replacement only when some type could be cheaper.
    let existing_only = SolveEnv {
        use_launching_nodes: false,
        allow_new_nodes: false,
        exclude_node: Some(n),
        ..*env
    };
    let decision = solve(&existing_only, without);
    if decision.existing.len() == without.pending.len() {
        return Some(Action::Delete { node: n });
    }
    // The pods the other nodes could not take must fit one cheaper node.
    let mut placed = vec![false; without.pending.len()];
    for &(i, _) in &decision.existing {
        placed[i] = true;
    }
    let leftover: Vec<&Pod> = without
        .pending
        .iter()
        .zip(&placed)
        .filter(|(_, &p)| !p)
        .map(|(pod, _)| *pod)
        .collect();
    if !cheaper_node_could_hold(env, &leftover, price) {
        return None;
    }
    let settled = SolveEnv {
        allow_new_nodes: true,
        split_claims: false,
        ..existing_only
    };
    let decision = solve(&settled, without);
    if !decision.unschedulable.is_empty() || !decision.infeasible.is_empty() {
        return None;
    }
    match decision.launches.as_slice() {
        [] => Some(Action::Delete { node: n }),
        [plan] => {
            let best = plan.options.first()?;
            if best.price_per_hour >= price {
                return None;
            }
            let was_spot = without.nodes[n]
                .labels
                .get(labels::KARPENTER_CAPACITY_TYPE)
                .map(String::as_str)
                == Some(CapacityType::Spot.as_str());
            if was_spot && best.capacity_type == CapacityType::Spot {
                let mut cheaper: Vec<usize> = plan
                    .options
                    .iter()
                    .filter(|o| o.price_per_hour < price)
                    .map(|o| o.instance_type)
                    .collect();
                cheaper.sort_unstable();
                cheaper.dedup();
                if cheaper.len() < MIN_CHEAPER_SPOT_TYPES {
                    return None;
                }
            }
            Some(Action::Replace {
                node: n,
                plan: plan.clone(),
            })
        }
        _ => None,
    }
}
