//! [`ClusterState::prepare`]: what a decision's snapshot borrows, read from the indexes
//! the state keeps up to date (pods by node with their requested room, unschedulable
//! pods; each node's claim and stable time copied into its entry), so that building it
//! walks the nodes once and the pods only where a decision needs each one (bound to a
//! node it may place pods on, or about to be evicted by a drain), never the whole pod
//! map. The pods by node are kept in node-name order and walked beside the nodes
//! ([`Beside`]): a hash look-up per node was most of a decision over 10,000 nodes.

use super::{
    launching, node_labels, ClusterState, DecisionInputs, Prepared, PreparedNode, Target,
    DISRUPTED_TAINT, TRANSIENT_TAINTS,
};
use crate::cluster::convert::{ClaimEntry, NodeClaimSide, NodeEntry, NodeKeys, ShortStr};
use crate::cluster::pod_index::NodePods;
use crate::core::instance::{CapacityType, Catalog};
use crate::core::labels::Labels;
use crate::core::resources::Resources;
use crate::core::taints::Taint;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::iter::Peekable;

/// A map's entries in key order, walked beside the nodes (also in name order): each
/// node's entry is found by stepping on, without a look-up.
struct Beside<'m, V, I: Iterator<Item = (&'m String, V)>> {
    rest: Peekable<I>,
}

impl<'m, V, I: Iterator<Item = (&'m String, V)>> Beside<'m, V, I> {
    fn new(entries: I) -> Self {
        Beside {
            rest: entries.peekable(),
        }
    }

    /// The entry of `key`. Keys must be asked in increasing order.
    fn at(&mut self, key: &str) -> Option<V> {
        while let Some((k, _)) = self.rest.peek() {
            match k.as_str().cmp(key) {
                Ordering::Less => _ = self.rest.next(),
                Ordering::Equal => return self.rest.next().map(|(_, v)| v),
                Ordering::Greater => return None,
            }
        }
        None
    }
}

/// What the state keeps about one node besides its entry.
struct Side<'s> {
    claim: Option<&'s NodeClaimSide>,
    pods: Option<&'s NodePods>,
}

type OverheadKey = (usize, usize, CapacityType);

/// Catalog look-ups every node of the same type repeats, made once per decision: a
/// catalog lookup by name scans every instance type, and a pool's DaemonSet overhead
/// scans the pool's types. The last answer is asked first: nodes of one type and pool
/// often come in runs, and comparing a name costs less than hashing it.
#[derive(Default)]
struct Lookups {
    types: HashMap<String, Option<usize>>,
    last_type: Option<(ShortStr, Option<usize>)>,
    overheads: HashMap<OverheadKey, Option<Resources>>,
    last_overhead: Option<(OverheadKey, Option<Resources>)>,
}

impl Lookups {
    /// The catalog index of instance type `name` (a node's type label).
    fn ty(&mut self, catalog: &Catalog, key: Option<&ShortStr>) -> Option<usize> {
        let key = key?;
        if let Some((last, t)) = &self.last_type {
            if last == key {
                return *t;
            }
        }
        let name = key.as_str();
        let t = match self.types.get(name) {
            Some(t) => *t,
            None => *self
                .types
                .entry(name.to_string())
                .or_insert_with(|| catalog.find(name)),
        };
        self.last_type = Some((key.clone(), t));
        t
    }

    /// [`overhead`], remembered per pool, type and capacity type.
    fn overhead(
        &mut self,
        inp: &DecisionInputs,
        pool: Option<usize>,
        keys: &NodeKeys,
    ) -> Option<Resources> {
        let key = (
            pool?,
            self.ty(inp.catalog, keys.instance_type.as_ref())?,
            keys.capacity_type,
        );
        if let Some((last, o)) = &self.last_overhead {
            if *last == key {
                return o.clone();
            }
        }
        let o = self
            .overheads
            .entry(key)
            .or_insert_with(|| overhead_of(inp, key.0, key.1, key.2))
            .clone();
        self.last_overhead = Some((key, o.clone()));
        o
    }
}

fn pool_index(inp: &DecisionInputs, keys: &NodeKeys) -> Option<usize> {
    let name = keys.pool.as_ref()?.as_str();
    inp.pools.iter().position(|x| x.name == name)
}

impl ClusterState {
    /// Builds what a decision needs: nodes (and claims not yet registered, as launching
    /// nodes), the pods bound to them and the pending pods, as the simulator does.
    pub fn prepare<'s>(&'s self, inp: &DecisionInputs<'_>) -> Prepared<'s> {
        let mut memo = Lookups::default();
        let mut out = Prepared {
            nodes: Vec::with_capacity(self.nodes.len()),
            // At most every pod (pending ones are few): one allocation, not a growth
            // that copies and keeps half again as much.
            bound: Vec::with_capacity(self.pods.len()),
            pending: Vec::new(),
            draining: Vec::new(),
        };
        let mut pods = Beside::new(self.pod_index.by_node());
        for n in self.nodes.values() {
            let side = Side {
                claim: n.claim.as_ref(),
                pods: pods.at(&n.name),
            };
            let (node, draining) = self.prepared_node(inp, &mut memo, n, &side);
            out.nodes.push(node);
            add_pods_of(inp, &mut memo, &mut out, &n.keys, side.pods, draining);
        }
        out.pending = self.pending_pods();
        // Claims not registered yet, as launching nodes.
        for c in self
            .claim_index
            .unregistered()
            .filter(|c| c.deleting_since.is_none())
        {
            out.nodes.extend(launching_node(inp, c));
        }
        // Oldest pods first, as the simulator hands them (the core sorts them anyway;
        // this only makes ties reproducible).
        let by_name = |a: &&crate::core::pod::Pod, b: &&crate::core::pod::Pod| {
            (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
        };
        out.pending.sort_by(by_name);
        out.draining.sort_by(by_name);
        out
    }

    /// A node as a decision sees it (its requested room still empty: see
    /// [`add_pods_of`]), and whether it is being drained.
    fn prepared_node<'s>(
        &'s self,
        inp: &DecisionInputs,
        memo: &mut Lookups,
        n: &'s NodeEntry,
        side: &Side<'s>,
    ) -> (PreparedNode<'s>, bool) {
        let claim = side.claim;
        let by_group = inp.group_of.and_then(|g| g.get(n.provider_id.as_deref()?));
        let pool = by_group.copied().or_else(|| pool_index(inp, &n.keys));
        let (taints, disrupted) = decision_taints(n, claim.map_or(&[], |c| &c.startup_taints));
        let ty = memo.ty(inp.catalog, n.keys.instance_type.as_ref());
        let capacity = ty.map_or_else(
            || n.allocatable.clone(),
            |t| inp.catalog.types[t].capacity.clone(),
        );
        let draining = disrupted || claim.is_some_and(|c| c.deleting);
        let node = PreparedNode {
            target: Target::Node(n.name.clone()),
            name: &n.name,
            labels: Cow::Borrowed(&n.labels),
            zone: n.keys.zone.as_ref().map(ShortStr::as_str),
            taints,
            capacity,
            allocatable: n.allocatable.clone(),
            requested: Resources::default(),
            pool,
            ready: n.ready,
            schedulable: !n.unschedulable && !n.deleting && !draining,
            price_per_hour: claim
                .and_then(|c| c.launched_price)
                .or_else(|| node_price(inp.catalog, ty, &n.keys))
                .unwrap_or(0.0),
            stable_since: n.stable_since,
            claim: claim.map(|c| c.name.as_str()),
            annotations: &n.annotations,
        };
        (node, draining)
    }

    /// Unschedulable pods not bound to a known node (finished pods and DaemonSet pods
    /// without a node are no demand), unsorted.
    fn pending_pods(&self) -> Vec<&crate::core::pod::Pod> {
        self.unschedulable_pods()
            .filter(|p| !(p.terminal || p.pod.is_daemonset() && p.node.is_none()))
            .filter(|p| p.node.as_ref().is_none_or(|n| !self.nodes.contains_key(n)))
            .map(|p| &p.pod)
            .collect()
    }
}

/// The last node of `out`: its requested room (its pods' `on` it, or the DaemonSet room
/// the model reserves while its DaemonSet pods have not arrived, as on a new node), its
/// pods that stay (if it takes pods) or that its drain will evict.
fn add_pods_of<'s>(
    inp: &DecisionInputs,
    memo: &mut Lookups,
    out: &mut Prepared<'s>,
    keys: &NodeKeys,
    on: Option<&'s NodePods>,
    draining: bool,
) {
    let i = out.nodes.len() - 1;
    let n = &mut out.nodes[i];
    if let Some(on) = on {
        n.requested = on.requested.clone();
    }
    if on.is_none_or(|on| on.daemonset_pods == 0) {
        if let Some(o) = memo.overhead(inp, n.pool, keys) {
            n.requested.add(&o);
        }
    }
    let schedulable = n.schedulable;
    let Some(on) = on.filter(|_| schedulable || draining) else {
        return;
    };
    if schedulable && on.deleting == 0 {
        // Every pod stays: only their addresses are read, not their entries (a cache
        // miss each, 100,000 a decision).
        out.bound.extend(on.pods.values().map(|p| (&p.pod, i)));
        return;
    }
    for p in on.pods.values() {
        if schedulable && !p.deleting {
            out.bound.push((&p.pod, i));
        } else if draining && !p.deleting && !p.drain_exempt {
            out.draining.push(&p.pod);
        }
    }
}

/// The node's taints a decision honours (the transient ones, our disrupted taint and
/// its claim's startup taints left out), and whether it carries our disrupted taint.
fn decision_taints(n: &NodeEntry, startup: &[Taint]) -> (Vec<Taint>, bool) {
    let mut disrupted = false;
    let taints = n
        .taints
        .iter()
        .filter(|t| {
            disrupted |= t.key == DISRUPTED_TAINT;
            !TRANSIENT_TAINTS.contains(&t.key.as_str())
                && t.key != DISRUPTED_TAINT
                && !startup
                    .iter()
                    .any(|s| s.key == t.key && s.effect == t.effect)
        })
        .cloned()
        .collect();
    (taints, disrupted)
}

/// The catalog price of a node of type `ty` (already looked up from its labels).
fn node_price(catalog: &Catalog, ty: Option<usize>, keys: &NodeKeys) -> Option<f64> {
    let zone = catalog.zone_index(keys.zone.as_ref()?.as_str())?;
    let ct = keys.capacity_type;
    catalog.types[ty?]
        .offerings
        .iter()
        .find(|o| o.zone == zone && o.capacity_type == ct)
        .map(|o| o.price_per_hour)
}

/// The DaemonSet room the model reserves on a node of this pool, type and capacity type.
pub(super) fn overhead(inp: &DecisionInputs, pool: Option<usize>, l: &Labels) -> Option<Resources> {
    let keys = NodeKeys::of(l);
    let ty = inp.catalog.find(keys.instance_type.as_ref()?.as_str())?;
    overhead_of(inp, pool?, ty, keys.capacity_type)
}

fn overhead_of(
    inp: &DecisionInputs,
    pool: usize,
    ty: usize,
    ct: CapacityType,
) -> Option<Resources> {
    inp.model
        .pools
        .get(pool)?
        .types
        .iter()
        .find(|t| t.ty == ty)
        .map(|t| t.daemon_overhead(ct).clone())
}

/// A claim not registered yet, as the launching node it will be: the launched instance
/// when known, else the cheapest option.
fn launching_node<'s>(inp: &DecisionInputs, c: &'s ClaimEntry) -> Option<PreparedNode<'s>> {
    let first = c.options.first();
    let ty_name = c
        .instance_type
        .as_ref()
        .or(first.map(|o| &o.instance_type))?;
    let zone = c.zone.as_ref().or(first.map(|o| &o.zone))?;
    let ct = c.capacity_type.or(first.map(|o| o.capacity_type))?;
    let ty = inp.catalog.find(ty_name)?;
    let pool = inp.pools.iter().position(|p| p.name == c.pool)?;
    let labels = node_labels(inp.catalog, &inp.pools[pool], ty, zone, ct, &c.name);
    Some(PreparedNode {
        price_per_hour: c
            .launched_price
            .or(first.map(|o| o.price_per_hour))
            .unwrap_or(0.0),
        stable_since: c.created,
        claim: Some(&c.name),
        ..launching(inp, pool, ty, labels, zone, &c.name)
    })
}
