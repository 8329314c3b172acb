//! The in-memory indexes the decisions read: what the watches delivered, converted once
//! on arrival. Objects come in through plain `apply_*`/`delete_*` calls (the watch glue
//! in `cluster::watch` makes them; tests make them directly), so everything here is
//! synchronous and testable without an API server.

use super::convert::{self, ClaimEntry, NodeClaimSide, NodeEntry, PodEntry};
use super::crd::{self, NodeClaim, NodePool as NodePoolObject};
use super::pod_index::PodIndex;
use crate::config::{ConfigErrors, NodePoolExtras};
use crate::core::instance::{CapacityType, Catalog};
use crate::core::labels::{self, Labels};
use crate::core::model::SchedulingModel;
use crate::core::nodepool::NodePool;
use crate::core::pdb::PodDisruptionBudget;
use crate::core::pod::Pod;
use crate::core::resources::Resources;
use crate::core::snapshot::{ExistingNode, Snapshot};
use crate::core::taints::Taint;
use crate::trace::pod::FieldError;
use claim_index::ClaimIndex;
use prepare::overhead;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

mod claim_index;
mod prepare;

/// The taint a node gets when stevedore starts taking it away.
pub const DISRUPTED_TAINT: &str = "stevedore.dev/disrupted";

/// Taints the control plane puts on a node that is starting or unreachable. They say
/// nothing about where pods may go once the node is up, so the simulation ignores them,
/// as it ignores the pool's startup taints.
const TRANSIENT_TAINTS: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.cloudprovider.kubernetes.io/uninitialized",
];

#[derive(Default)]
pub struct ClusterState {
    schedulers: Vec<String>,
    /// Shared with `pod_index`, which holds each bound pod's entry under its node.
    pods: HashMap<String, Arc<PodEntry>>,
    /// The pods by node, the unschedulable ones and the service demand, kept up to date
    /// with `pods` so that a decision reads them without walking every pod.
    pod_index: PodIndex,
    nodes: BTreeMap<String, NodeEntry>,
    /// Node names by provider ID (a claim finds its node by it before the node's name is
    /// in the claim's status); a set, in case two nodes ever show the same ID.
    by_provider: HashMap<String, BTreeSet<String>>,
    /// Per node name, when a pod last arrived or left (consolidation waits
    /// `consolidateAfter`), for nodes not known yet too; a known node's entry holds a
    /// copy ([`NodeEntry::stable_since`]).
    stable_since: BTreeMap<String, f64>,
    /// Shared with `claim_index`, which files each claim under the node it became.
    claims: BTreeMap<String, Arc<ClaimEntry>>,
    claim_index: ClaimIndex,
    /// The newest resourceVersion seen per claim, from a watch or from our own write.
    claim_versions: HashMap<String, u64>,
    /// NodePool objects, compiled (or the validation errors, reported once).
    pools: BTreeMap<String, Result<(NodePool, NodePoolExtras), ConfigErrors>>,
    pdbs: BTreeMap<String, PodDisruptionBudget>,
    daemonsets: BTreeMap<String, Pod>,
    /// Bumped when pools or DaemonSets change: the scheduling model must be rebuilt.
    pub model_generation: u64,
    /// Bumped on every change a decision could see (an update that converts to the entry
    /// already held is none): a scan that finds it where it left it has nothing new to
    /// decide on.
    pub changes: u64,
}

/// Keeps an object's converted entry; an object that no longer converts drops the entry
/// it had (a decision must not read a stale version) and its error is returned.
fn upsert<V, E>(map: &mut BTreeMap<String, V>, name: String, entry: Result<V, E>) -> Result<(), E> {
    match entry {
        Ok(e) => {
            map.insert(name, e);
            Ok(())
        }
        Err(e) => {
            map.remove(&name);
            Err(e)
        }
    }
}

/// Where a snapshot node comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Node(String),
    /// A NodeClaim whose node has not registered yet.
    Claim(String),
}

/// One node of a decision's snapshot, with what consolidation also needs.
pub struct PreparedNode<'a> {
    pub target: Target,
    pub name: &'a str,
    pub labels: Cow<'a, Labels>,
    /// Its zone label (see [`ExistingNode::zone`]), read when the node arrived.
    pub zone: Option<&'a str>,
    pub taints: Vec<Taint>,
    pub capacity: Resources,
    pub allocatable: Resources,
    pub requested: Resources,
    pub pool: Option<usize>,
    pub ready: bool,
    pub schedulable: bool,
    pub price_per_hour: f64,
    pub stable_since: f64,
    /// The NodeClaim behind it, if stevedore launched it.
    pub claim: Option<&'a str>,
    /// Do-not-disrupt annotations of the node.
    pub annotations: &'a Labels,
}

/// Everything a decision's [`Snapshot`] borrows.
pub struct Prepared<'a> {
    pub nodes: Vec<PreparedNode<'a>>,
    pub bound: Vec<(&'a Pod, usize)>,
    pub pending: Vec<&'a Pod>,
    /// Pods a drain will evict: on a node being drained (our disrupted taint, or its
    /// claim being deleted), not evicted yet. Provisioning counts them as pending, as
    /// Karpenter does, so replacement capacity launches while a PodDisruptionBudget
    /// paces the evictions; once evicted a pod leaves this list, so its replacement
    /// takes the room planned for it instead of a second one.
    pub draining: Vec<&'a Pod>,
}

impl Prepared<'_> {
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            nodes: self.existing_nodes(),
            bound: self.bound.clone(),
            pending: self.pending.clone(),
        }
    }

    /// [`Self::snapshot`] for a caller that reads `bound` no more: the bound pods (one
    /// per pod of the cluster) are moved into it, not copied, and `bound` is left empty.
    pub fn snapshot_taking_bound(&mut self) -> Snapshot<'_> {
        let bound = std::mem::take(&mut self.bound);
        let this = &*self;
        Snapshot {
            nodes: this.existing_nodes(),
            bound,
            pending: this.pending.clone(),
        }
    }

    fn existing_nodes(&self) -> Vec<ExistingNode<'_>> {
        self.nodes
            .iter()
            .map(|n| ExistingNode {
                name: n.name,
                labels: &n.labels,
                zone: n.zone,
                capacity: &n.capacity,
                allocatable: &n.allocatable,
                requested: n.requested.clone(),
                taints: &n.taints,
                pool: n.pool,
                ready: n.ready,
                schedulable: n.schedulable,
            })
            .collect()
    }
}

/// What a decision is made with besides the indexes.
pub struct DecisionInputs<'a> {
    pub catalog: &'a Catalog,
    pub pools: &'a [NodePool],
    pub model: &'a SchedulingModel,
    /// Node-groups mode: pool (group) index by node provider ID, for nodes that carry no
    /// NodePool label (an Auto Scaling group's). `None` in fleet mode.
    pub group_of: Option<&'a HashMap<String, usize>>,
}

fn pod_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl ClusterState {
    /// `schedulers`: the `schedulerName`s whose unschedulable pods stevedore provisions for.
    pub fn new(schedulers: Vec<String>) -> Self {
        ClusterState {
            schedulers,
            ..Default::default()
        }
    }

    fn touch_node(&mut self, node: Option<&String>, now: f64) {
        if let Some(n) = node {
            self.stable_since.insert(n.clone(), now);
            if let Some(e) = self.nodes.get_mut(n) {
                e.stable_since = now;
            }
        }
    }

    /// Applies a pod. `Ok(true)` when it is a newly unschedulable pod (a batch opens).
    /// A pod that does not convert is dropped from the index and its error returned.
    pub fn apply_pod(
        &mut self,
        p: &k8s_openapi::api::core::v1::Pod,
        now: f64,
    ) -> Result<bool, FieldError> {
        let ns = p.metadata.namespace.as_deref().unwrap_or("default");
        let key = pod_key(ns, p.metadata.name.as_deref().unwrap_or_default());
        let entry = match convert::pod_entry(p, &self.schedulers) {
            Ok(e) => e,
            Err(e) => {
                self.remove_pod(&key, now);
                return Err(e);
            }
        };
        let old = self.pods.get(&key);
        if old.is_some_and(|o| **o == entry) {
            return Ok(false);
        }
        self.changes += 1;
        let newly_pending = entry.unschedulable && !old.is_some_and(|old| old.unschedulable);
        let old_node = old.and_then(|o| o.node.clone());
        if let Some(old) = old {
            self.pod_index.remove(&key, old);
        }
        if old_node != entry.node {
            self.touch_node(old_node.as_ref(), now);
            self.touch_node(entry.node.as_ref(), now);
        }
        let entry = Arc::new(entry);
        self.pod_index.insert(&key, &entry);
        self.pods.insert(key, entry);
        Ok(newly_pending)
    }

    /// Drops a pod's entry and what it adds to the indexes.
    fn remove_pod(&mut self, key: &str, now: f64) {
        if let Some(old) = self.pods.remove(key) {
            self.changes += 1;
            self.pod_index.remove(key, &old);
            self.touch_node(old.node.as_ref(), now);
        }
    }

    /// Records that a pod's eviction or deletion was accepted (before the watch says so),
    /// so a drain does not evict it twice.
    pub fn mark_pod_deleting(&mut self, ns: &str, name: &str) {
        let key = pod_key(ns, name);
        let Some(old) = self.pods.get(&key).filter(|p| !p.deleting).cloned() else {
            return;
        };
        // A new entry, in the pod map and the index alike (they share it).
        let mut new = (*old).clone();
        new.deleting = true;
        let new = Arc::new(new);
        self.pod_index.remove(&key, &old);
        self.pod_index.insert(&key, &new);
        self.pods.insert(key, new);
        self.changes += 1;
    }

    pub fn delete_pod(&mut self, ns: &str, name: &str, now: f64) {
        self.remove_pod(&pod_key(ns, name), now);
    }

    pub fn apply_node(
        &mut self,
        n: &k8s_openapi::api::core::v1::Node,
        now: f64,
    ) -> Result<(), FieldError> {
        let name = n.metadata.name.clone().unwrap_or_default();
        let mut entry = convert::node_entry(n);
        if let Ok(e) = &mut entry {
            e.stable_since = *self.stable_since.entry(name.clone()).or_insert(now);
            // The claim it is stays while nothing else changes (set again below).
            e.claim = self.nodes.get(&name).and_then(|o| o.claim.clone());
            if self.nodes.get(&name) == Some(e) {
                return Ok(());
            }
        }
        self.changes += 1;
        let new_id = entry.as_ref().ok().and_then(|e| e.provider_id.as_deref());
        let concerned = self.claims_concerned(&name, new_id);
        self.unindex_provider(&name);
        if let Ok(Some(id)) = entry.as_ref().map(|e| e.provider_id.clone()) {
            self.by_provider.entry(id).or_default().insert(name.clone());
        }
        let result = upsert(&mut self.nodes, name.clone(), entry);
        self.refile(concerned);
        self.copy_claim_side(&name);
        result
    }

    /// Copies into node `node`'s entry (if known) what a decision reads of its claim.
    fn copy_claim_side(&mut self, node: &str) {
        if let Some(e) = self.nodes.get_mut(node) {
            e.claim = self.claim_index.of_node(node).map(NodeClaimSide::of);
        }
    }

    /// The claims whose node may change with node `name` (now carrying provider ID
    /// `new_id`), each with the node it is filed under now.
    fn claims_concerned(
        &self,
        name: &str,
        new_id: Option<&str>,
    ) -> Vec<(Arc<ClaimEntry>, Option<String>)> {
        let old_id = self.nodes.get(name).and_then(|n| n.provider_id.as_deref());
        let mut names: Vec<&String> = [Some(name), old_id, new_id]
            .into_iter()
            .flatten()
            .flat_map(|key| self.claim_index.naming(key))
            .collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|c| self.claims.get(c))
            .map(|c| (c.clone(), self.node_of(c).map(|n| n.name.clone())))
            .collect()
    }

    /// Files each claim of [`Self::claims_concerned`] under the node it is now.
    fn refile(&mut self, concerned: Vec<(Arc<ClaimEntry>, Option<String>)>) {
        for (c, from) in concerned {
            let to = self.node_of(&c).map(|n| n.name.clone());
            self.claim_index.refile(&c, from.as_deref(), to.as_deref());
            for n in [from, to].into_iter().flatten() {
                self.copy_claim_side(&n);
            }
        }
    }

    /// Forgets the provider ID node `name` had, if any.
    fn unindex_provider(&mut self, name: &str) {
        let Some(id) = self.nodes.get(name).and_then(|n| n.provider_id.clone()) else {
            return;
        };
        if let Some(names) = self.by_provider.get_mut(&id) {
            names.remove(name);
            if names.is_empty() {
                self.by_provider.remove(&id);
            }
        }
    }

    pub fn delete_node(&mut self, name: &str) {
        self.changes += 1;
        let concerned = self.claims_concerned(name, None);
        self.unindex_provider(name);
        self.nodes.remove(name);
        self.stable_since.remove(name);
        self.refile(concerned);
    }

    pub fn apply_claim(&mut self, c: &NodeClaim) -> Result<(), FieldError> {
        let name = c.metadata.name.clone().unwrap_or_default();
        // The controller applies what its own writes return (a launch's status patch)
        // at once; the watch may deliver an older version afterwards. Taking that one
        // would forget the provider ID and launch the claim again. resourceVersions are
        // opaque by contract but etcd revisions in every API server, so they compare.
        let version = c
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok());
        if let (Some(new), Some(&seen)) = (version, self.claim_versions.get(&name)) {
            if new < seen {
                return Ok(());
            }
        }
        if let Some(v) = version {
            self.claim_versions.insert(name.clone(), v);
        }
        let entry = convert::claim_entry(c);
        if entry
            .as_ref()
            .is_ok_and(|e| self.claims.get(&name).map(|c| &**c) == Some(e))
        {
            return Ok(());
        }
        self.changes += 1;
        self.unindex_claim(&name);
        let result = upsert(&mut self.claims, name.clone(), entry.map(Arc::new));
        self.index_claim(&name);
        result
    }

    pub fn delete_claim(&mut self, name: &str) {
        self.changes += 1;
        self.unindex_claim(name);
        self.claims.remove(name);
        self.claim_versions.remove(name);
    }

    /// Files claim `name` (if held) in the claim index under the node it is.
    fn index_claim(&mut self, name: &str) {
        let Some(c) = self.claims.get(name) else {
            return;
        };
        let node = self.node_of(c).map(|n| n.name.clone());
        self.claim_index.insert(&c.clone(), node.as_deref());
        if let Some(n) = node {
            self.copy_claim_side(&n);
        }
    }

    /// Takes claim `name` (if held) out of the claim index.
    fn unindex_claim(&mut self, name: &str) {
        let Some(c) = self.claims.get(name) else {
            return;
        };
        let node = self.node_of(c).map(|n| n.name.clone());
        self.claim_index.remove(&c.clone(), node.as_deref());
        if let Some(n) = node {
            self.copy_claim_side(&n);
        }
    }

    /// Applies a NodePool object. An invalid one is kept as its errors (so the loop can
    /// report them) and launches nothing.
    pub fn apply_pool(&mut self, np: &NodePoolObject) -> Result<(), ConfigErrors> {
        let name = np.metadata.name.clone().unwrap_or_default();
        let compiled = crd::compile_node_pool(np);
        let result = compiled.as_ref().map(|_| ()).map_err(Clone::clone);
        // Status-only updates compile to the same pool: the model stays.
        if self.pools.get(&name) != Some(&compiled) {
            self.pools.insert(name, compiled);
            self.model_generation += 1;
            self.changes += 1;
        }
        result
    }

    pub fn delete_pool(&mut self, name: &str) {
        self.pools.remove(name);
        self.model_generation += 1;
        self.changes += 1;
    }

    pub fn apply_pdb(
        &mut self,
        p: &k8s_openapi::api::policy::v1::PodDisruptionBudget,
    ) -> Result<(), FieldError> {
        let key = pod_key(
            p.metadata.namespace.as_deref().unwrap_or_default(),
            p.metadata.name.as_deref().unwrap_or_default(),
        );
        let entry = convert::pdb_entry(p);
        if entry.as_ref().is_ok_and(|e| self.pdbs.get(&key) == Some(e)) {
            return Ok(());
        }
        self.changes += 1;
        upsert(&mut self.pdbs, key, entry)
    }

    pub fn delete_pdb(&mut self, ns: &str, name: &str) {
        self.changes += 1;
        self.pdbs.remove(&pod_key(ns, name));
    }

    pub fn apply_daemonset(
        &mut self,
        ds: &k8s_openapi::api::apps::v1::DaemonSet,
    ) -> Result<(), FieldError> {
        let key = pod_key(
            ds.metadata.namespace.as_deref().unwrap_or_default(),
            ds.metadata.name.as_deref().unwrap_or_default(),
        );
        match convert::daemonset_pod(ds) {
            Ok(p) => {
                // DaemonSet status changes all the time; only a new pod template
                // changes the overhead the model reserves.
                if self.daemonsets.get(&key) != Some(&p) {
                    self.daemonsets.insert(key, p);
                    self.model_generation += 1;
                }
                Ok(())
            }
            Err(e) => {
                if self.daemonsets.remove(&key).is_some() {
                    self.model_generation += 1;
                }
                Err(e)
            }
        }
    }

    pub fn delete_daemonset(&mut self, ns: &str, name: &str) {
        self.model_generation += 1;
        self.daemonsets.remove(&pod_key(ns, name));
    }

    pub fn pool_names(&self) -> Vec<String> {
        self.pools.keys().cloned().collect()
    }

    pub fn pdb_keys(&self) -> Vec<(String, String)> {
        self.pdbs
            .values()
            .map(|b| (b.namespace.clone(), b.name.clone()))
            .collect()
    }

    pub fn daemonset_keys(&self) -> Vec<(String, String)> {
        self.daemonsets
            .values()
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .collect()
    }

    pub fn pods(&self) -> impl Iterator<Item = &PodEntry> {
        self.pods.values().map(|p| &**p)
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<&PodEntry> {
        self.pods.get(&pod_key(ns, name)).map(|p| &**p)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeEntry> {
        self.nodes.values()
    }

    pub fn node(&self, name: &str) -> Option<&NodeEntry> {
        self.nodes.get(name)
    }

    pub fn claims(&self) -> impl Iterator<Item = &ClaimEntry> {
        self.claims.values().map(|c| &**c)
    }

    pub fn claim(&self, name: &str) -> Option<&ClaimEntry> {
        self.claims.get(name).map(|c| &**c)
    }

    pub fn pdbs(&self) -> Vec<PodDisruptionBudget> {
        self.pdbs.values().cloned().collect()
    }

    /// DaemonSet pod templates seen in the cluster.
    pub fn daemonsets(&self) -> Vec<Pod> {
        self.daemonsets.values().cloned().collect()
    }

    /// The NodePool objects that compiled.
    pub fn valid_pools(&self) -> Vec<(NodePool, NodePoolExtras)> {
        self.pools
            .values()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect()
    }

    /// Pods bound to `node`, not finished, in key order.
    pub fn pods_on<'s>(&'s self, node: &'s str) -> impl Iterator<Item = &'s PodEntry> + 's {
        self.pod_index
            .on(node)
            .into_iter()
            .flat_map(|on| on.pods.values())
            .map(|p| &**p)
    }

    /// Pods waiting for a node the scheduler cannot find (finished ones included, as
    /// the flag says), in key order.
    pub fn unschedulable_pods(&self) -> impl Iterator<Item = &PodEntry> {
        self.pod_index
            .unschedulable()
            .filter_map(|k| self.pods.get(k))
            .map(|p| &**p)
    }

    /// Is any pod unschedulable (see [`Self::unschedulable_pods`])?
    pub fn any_unschedulable(&self) -> bool {
        self.pod_index.any_unschedulable()
    }

    /// Requests of the pods that hold room and do not end by themselves (bound or
    /// waiting; DaemonSet pods and Jobs' pods excluded): the demand consolidation keeps
    /// room for.
    pub fn service_demand(&self) -> &Resources {
        self.pod_index.service_demand()
    }

    /// The kept pod index equals one built from scratch, every node holds its stable
    /// time and its claim's side, the provider ID index names exactly the nodes that carry each ID, and the
    /// claim index files every claim under the node it is (what the tests check after
    /// any sequence of changes).
    pub fn indexes_consistent(&self) -> bool {
        let mut providers: HashMap<String, BTreeSet<String>> = HashMap::new();
        for n in self.nodes.values() {
            if let Some(id) = &n.provider_id {
                providers
                    .entry(id.clone())
                    .or_default()
                    .insert(n.name.clone());
            }
        }
        let mut claims = ClaimIndex::default();
        for c in self.claims.values() {
            claims.insert(c, self.node_of(c).map(|n| n.name.as_str()));
        }
        let copies = self.nodes.values().all(|n| {
            self.stable_since.get(&n.name) == Some(&n.stable_since)
                && n.claim == self.claim_index.of_node(&n.name).map(NodeClaimSide::of)
        });
        self.pod_index == PodIndex::rebuilt(&self.pods)
            && copies
            && self.by_provider == providers
            && self.claim_index == claims
    }

    /// The node a claim became, found by name or by provider ID.
    pub fn node_of(&self, claim: &ClaimEntry) -> Option<&NodeEntry> {
        claim
            .node_name
            .as_deref()
            .and_then(|n| self.nodes.get(n))
            .or_else(|| {
                // The first by name, as a scan of the nodes in order would find.
                let id = claim.provider_id.as_deref()?;
                let name = self.by_provider.get(id)?.first()?;
                self.nodes.get(name)
            })
    }
}
/// The labels a node launched for `claim` as `(type, zone, capacity type)` will carry.
pub fn node_labels(
    catalog: &Catalog,
    pool: &NodePool,
    ty: usize,
    zone: &str,
    ct: CapacityType,
    hostname: &str,
) -> Labels {
    let mut l = catalog.types[ty].labels.clone();
    l.extend(pool.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (k, v) in [
        (labels::ZONE, zone),
        (labels::ZONE_BETA, zone),
        (labels::REGION, catalog.region.as_str()),
        (labels::KARPENTER_CAPACITY_TYPE, ct.as_str()),
        (labels::CAPACITY_TYPE, ct.as_str()),
        (labels::KARPENTER_NODEPOOL, pool.name.as_str()),
        (labels::NODEPOOL, pool.name.as_str()),
        (labels::HOSTNAME, hostname),
    ] {
        l.insert(k.to_string(), v.to_string());
    }
    l
}

/// A node a group will get (its desired size is above its registered nodes), as a
/// launching node of pool `pool` in `zone`, named `name`: pending pods count on it, so a
/// scale-up is not asked for twice while its instances boot.
pub fn upcoming_node<'s>(
    inp: &DecisionInputs,
    pool: usize,
    zone: &'s str,
    name: &'s str,
) -> Option<PreparedNode<'s>> {
    let p = inp.pools.get(pool)?;
    let ty_name = p
        .requirements
        .iter()
        .find(|r| r.key == labels::INSTANCE_TYPE)?;
    let ty = inp.catalog.find(ty_name.values.first()?)?;
    let ct = p
        .requirements
        .iter()
        .find(|r| r.key == labels::KARPENTER_CAPACITY_TYPE)
        .and_then(|r| CapacityType::parse(r.values.first()?))
        .unwrap_or(CapacityType::OnDemand);
    let labels = node_labels(inp.catalog, p, ty, zone, ct, name);
    Some(launching(inp, pool, ty, labels, zone, name))
}

/// A node of pool `pool` and type `ty` that has not registered yet, named `name` (a
/// claim's or a group's upcoming node) in `zone`: the type's room, the pool's taints,
/// the model's DaemonSet room already taken; no price, no claim (the caller sets those
/// it knows).
fn launching<'s>(
    inp: &DecisionInputs,
    pool: usize,
    ty: usize,
    labels: Labels,
    zone: &'s str,
    name: &'s str,
) -> PreparedNode<'s> {
    let requested = overhead(inp, Some(pool), &labels).unwrap_or_default();
    let it = &inp.catalog.types[ty];
    PreparedNode {
        target: Target::Claim(name.to_string()),
        name,
        taints: inp.pools[pool].taints.clone(),
        capacity: it.capacity.clone(),
        allocatable: it.allocatable.clone(),
        requested,
        pool: Some(pool),
        ready: false,
        schedulable: true,
        price_per_hour: 0.0,
        stable_since: 0.0,
        claim: None,
        labels: Cow::Owned(labels),
        zone: Some(zone),
        annotations: &NO_ANNOTATIONS,
    }
}

/// A launching node has no annotations yet.
static NO_ANNOTATIONS: Labels = Labels::new();

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        crate::sim::setup::load_catalog(&crate::config::bundled().settings).expect("catalog")
    }

    fn pool() -> NodePool {
        let mut p = crate::config::bundled().node_pools[0].clone();
        p.startup_taints = vec![Taint {
            key: "agent-not-ready".into(),
            value: String::new(),
            effect: crate::core::taints::TaintEffect::NoSchedule,
        }];
        p
    }

    fn node(
        name: &str,
        taints: serde_json::Value,
        provider: &str,
    ) -> k8s_openapi::api::core::v1::Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"node.kubernetes.io/instance-type": "m5.large",
                "topology.kubernetes.io/zone": "us-east-1a", "stevedore.dev/nodepool": pool().name}},
            "spec": {"providerID": provider, "taints": taints},
            "status": {"allocatable": {"cpu": "1930m", "memory": "7Gi", "pods": "29"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap()
    }

    fn claim(name: &str, provider: Option<&str>) -> NodeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodePool": pool().name, "options": [{"instanceType": "m5.large", "zone": "us-east-1a",
                     "capacityType": "spot", "pricePerHour": 0.03}],
                     "startupTaints": [{"key": "agent-not-ready", "effect": "NoSchedule"}]},
            "status": {"providerID": provider}
        }))
        .unwrap()
    }

    #[test]
    fn a_watch_event_older_than_our_own_write_is_ignored() {
        let versioned = |provider: Option<&str>, rv: &str| {
            let mut c = claim("general-a", provider);
            c.metadata.resource_version = Some(rv.into());
            c
        };
        let mut st = ClusterState::default();
        // The launch's status patch answered version 7 ...
        st.apply_claim(&versioned(Some("aws:///us-east-1a/i-1"), "7"))
            .unwrap();
        // ... then the watch delivers the claim as created (version 6).
        st.apply_claim(&versioned(None, "6")).unwrap();
        let provider = |st: &ClusterState| st.claim("general-a").unwrap().provider_id.clone();
        assert_eq!(provider(&st).as_deref(), Some("aws:///us-east-1a/i-1"));
        // A newer version is taken, and after a delete any version is.
        st.apply_claim(&versioned(None, "8")).unwrap();
        assert_eq!(provider(&st), None);
        st.delete_claim("general-a");
        st.apply_claim(&versioned(Some("aws:///us-east-1a/i-2"), "3"))
            .unwrap();
        assert_eq!(provider(&st).as_deref(), Some("aws:///us-east-1a/i-2"));
    }

    fn prepared_targets(st: &ClusterState) -> Vec<(Target, bool, usize)> {
        let cat = catalog();
        let pools = vec![pool()];
        let model = SchedulingModel::new(&cat, &pools, &[]);
        let inp = DecisionInputs {
            group_of: None,
            catalog: &cat,
            pools: &pools,
            model: &model,
        };
        let p = st.prepare(&inp);
        p.nodes
            .iter()
            .map(|n| (n.target.clone(), n.schedulable, n.taints.len()))
            .collect()
    }

    #[test]
    fn a_claim_counts_as_a_launching_node_until_its_node_registers() {
        let mut st = ClusterState::new(vec!["default-scheduler".into()]);
        st.apply_claim(&claim("c1", Some("simulated:///us-east-1a/i-1")))
            .unwrap();
        assert_eq!(
            prepared_targets(&st),
            vec![(Target::Claim("c1".into()), true, 0)]
        );
        // The node arrives (found by provider ID): the claim is not counted twice, and
        // the startup and not-ready taints do not keep pods away in the simulation.
        let taints = json!([{"key": "agent-not-ready", "effect": "NoSchedule"},
                            {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
                            {"key": "dedicated", "value": "x", "effect": "NoSchedule"}]);
        st.apply_node(&node("n1", taints, "simulated:///us-east-1a/i-1"), 0.0)
            .unwrap();
        assert_eq!(
            prepared_targets(&st),
            vec![(Target::Node("n1".into()), true, 1)]
        );
    }

    #[test]
    fn a_disrupted_node_is_no_target_and_its_pods_are_not_counted_as_staying() {
        let mut st = ClusterState::new(vec!["default-scheduler".into()]);
        let taints = json!([{"key": DISRUPTED_TAINT, "effect": "NoSchedule"}]);
        st.apply_node(&node("n1", taints, "p"), 0.0).unwrap();
        assert_eq!(
            prepared_targets(&st),
            vec![(Target::Node("n1".into()), false, 0)]
        );
    }

    #[test]
    fn only_a_new_daemonset_template_rebuilds_the_model() {
        let mut st = ClusterState::default();
        let ds = |cpu: &str, ready: i32| -> k8s_openapi::api::apps::v1::DaemonSet {
            serde_json::from_value(json!({
                "metadata": {"name": "agent", "namespace": "kube-system"},
                "spec": {"selector": {}, "template": {"spec": {"containers": [
                    {"name": "a", "resources": {"requests": {"cpu": cpu}}}]}}},
                "status": {"numberReady": ready, "currentNumberScheduled": 0,
                           "desiredNumberScheduled": 0, "numberMisscheduled": 0}
            }))
            .unwrap()
        };
        st.apply_daemonset(&ds("50m", 1)).unwrap();
        let g = st.model_generation;
        st.apply_daemonset(&ds("50m", 7)).unwrap();
        assert_eq!(st.model_generation, g, "a status update");
        st.apply_daemonset(&ds("100m", 7)).unwrap();
        assert_eq!(st.model_generation, g + 1);
        assert_eq!(st.daemonsets()[0].requests.cpu_milli, 100);
    }

    #[test]
    fn pods_move_the_nodes_stable_time() {
        let mut st = ClusterState::new(vec!["default-scheduler".into()]);
        st.apply_node(&node("n1", json!([]), "p"), 10.0).unwrap();
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "x"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running"}
        }))
        .unwrap();
        st.apply_pod(&pod, 50.0).unwrap();
        assert_eq!(st.stable_since["n1"], 50.0);
        st.apply_pod(&pod, 60.0).unwrap();
        assert_eq!(st.stable_since["n1"], 50.0, "an update in place is no move");
        st.delete_pod("x", "a", 70.0);
        assert_eq!(st.stable_since["n1"], 70.0);
    }
}
