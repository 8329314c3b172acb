//! The in-memory indexes the decisions read: what the watches delivered, converted once
//! on arrival. Objects come in through plain `apply_*`/`delete_*` calls (the watch glue
//! in `cluster::watch` makes them; tests make them directly), so everything here is
//! synchronous and testable without an API server.

use super::convert::{self, ClaimEntry, NodeEntry, PodEntry};
use super::crd::{self, NodeClaim, NodePool as NodePoolObject};
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
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

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
    pods: HashMap<String, PodEntry>,
    nodes: BTreeMap<String, NodeEntry>,
    /// Per node, when a pod last arrived or left (consolidation waits `consolidateAfter`).
    stable_since: HashMap<String, f64>,
    claims: BTreeMap<String, ClaimEntry>,
    /// The newest resourceVersion seen per claim, from a watch or from our own write.
    claim_versions: HashMap<String, u64>,
    /// NodePool objects, compiled (or the validation errors, reported once).
    pools: BTreeMap<String, Result<(NodePool, NodePoolExtras), ConfigErrors>>,
    pdbs: BTreeMap<String, PodDisruptionBudget>,
    daemonsets: BTreeMap<String, Pod>,
    /// Bumped when pools or DaemonSets change: the scheduling model must be rebuilt.
    pub model_generation: u64,
    /// Bumped on every change a decision could see.
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
            nodes: self
                .nodes
                .iter()
                .map(|n| ExistingNode {
                    name: n.name,
                    labels: &n.labels,
                    zone: n.labels.get(labels::ZONE).map(String::as_str),
                    capacity: &n.capacity,
                    allocatable: &n.allocatable,
                    requested: n.requested.clone(),
                    taints: &n.taints,
                    pool: n.pool,
                    ready: n.ready,
                    schedulable: n.schedulable,
                })
                .collect(),
            bound: self.bound.clone(),
            pending: self.pending.clone(),
        }
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
        self.changes += 1;
        let entry = match convert::pod_entry(p, &self.schedulers) {
            Ok(e) => e,
            Err(e) => {
                if let Some(old) = self.pods.remove(&key) {
                    self.touch_node(old.node.as_ref(), now);
                }
                return Err(e);
            }
        };
        let newly_pending =
            entry.unschedulable && !self.pods.get(&key).is_some_and(|old| old.unschedulable);
        let old_node = self.pods.get(&key).and_then(|o| o.node.clone());
        if old_node != entry.node {
            self.touch_node(old_node.as_ref(), now);
            self.touch_node(entry.node.as_ref(), now);
        }
        self.pods.insert(key, entry);
        Ok(newly_pending)
    }

    /// Records that a pod's eviction or deletion was accepted (before the watch says so),
    /// so a drain does not evict it twice.
    pub fn mark_pod_deleting(&mut self, ns: &str, name: &str) {
        if let Some(p) = self.pods.get_mut(&pod_key(ns, name)) {
            p.deleting = true;
            self.changes += 1;
        }
    }

    pub fn delete_pod(&mut self, ns: &str, name: &str, now: f64) {
        if let Some(old) = self.pods.remove(&pod_key(ns, name)) {
            self.changes += 1;
            self.touch_node(old.node.as_ref(), now);
        }
    }

    pub fn apply_node(
        &mut self,
        n: &k8s_openapi::api::core::v1::Node,
        now: f64,
    ) -> Result<(), FieldError> {
        let name = n.metadata.name.clone().unwrap_or_default();
        self.changes += 1;
        let entry = convert::node_entry(n);
        if entry.is_ok() {
            self.stable_since.entry(name.clone()).or_insert(now);
        }
        upsert(&mut self.nodes, name, entry)
    }

    pub fn delete_node(&mut self, name: &str) {
        self.changes += 1;
        self.nodes.remove(name);
        self.stable_since.remove(name);
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
        self.changes += 1;
        upsert(&mut self.claims, name, convert::claim_entry(c))
    }

    pub fn delete_claim(&mut self, name: &str) {
        self.changes += 1;
        self.claims.remove(name);
        self.claim_versions.remove(name);
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
        self.changes += 1;
        upsert(&mut self.pdbs, key, convert::pdb_entry(p))
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
        self.pods.values()
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<&PodEntry> {
        self.pods.get(&pod_key(ns, name))
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeEntry> {
        self.nodes.values()
    }

    pub fn node(&self, name: &str) -> Option<&NodeEntry> {
        self.nodes.get(name)
    }

    pub fn claims(&self) -> impl Iterator<Item = &ClaimEntry> {
        self.claims.values()
    }

    pub fn claim(&self, name: &str) -> Option<&ClaimEntry> {
        self.claims.get(name)
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

    /// Pods bound to `node`, not finished.
    pub fn pods_on<'s>(&'s self, node: &'s str) -> impl Iterator<Item = &'s PodEntry> + 's {
        self.pods
            .values()
            .filter(move |p| p.node.as_deref() == Some(node) && !p.terminal)
    }

    /// The node a claim became, found by name or by provider ID.
    pub fn node_of(&self, claim: &ClaimEntry) -> Option<&NodeEntry> {
        claim
            .node_name
            .as_deref()
            .and_then(|n| self.nodes.get(n))
            .or_else(|| {
                let id = claim.provider_id.as_deref()?;
                self.nodes
                    .values()
                    .find(|n| n.provider_id.as_deref() == Some(id))
            })
    }

    /// Builds what a decision needs: nodes (and claims not yet registered, as launching
    /// nodes), the pods bound to them and the pending pods, as the simulator does.
    pub fn prepare<'s>(&'s self, inp: &DecisionInputs<'_>) -> Prepared<'s> {
        let pool_index = |labels: &Labels| {
            labels
                .get(labels::NODEPOOL)
                .or_else(|| labels.get(labels::KARPENTER_NODEPOOL))
                .and_then(|p| inp.pools.iter().position(|x| &x.name == p))
        };
        let claim_by_node: HashMap<&str, &ClaimEntry> = self
            .claims
            .values()
            .filter_map(|c| self.node_of(c).map(|n| (n.name.as_str(), c)))
            .collect();
        let mut nodes = Vec::new();
        let mut draining_node = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for n in self.nodes.values() {
            let claim = claim_by_node.get(n.name.as_str()).copied();
            let by_group = inp.group_of.and_then(|g| g.get(n.provider_id.as_deref()?));
            let pool = by_group.copied().or_else(|| pool_index(&n.labels));
            let startup: &[Taint] = claim.map_or(&[], |c| &c.startup_taints);
            let mut disrupted = false;
            let taints: Vec<Taint> = n
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
            let ty = n
                .labels
                .get(labels::INSTANCE_TYPE)
                .and_then(|t| inp.catalog.find(t));
            let capacity = ty.map_or_else(
                || n.allocatable.clone(),
                |t| inp.catalog.types[t].capacity.clone(),
            );
            index.insert(&n.name, nodes.len());
            draining_node.push(disrupted || claim.is_some_and(|c| c.deleting_since.is_some()));
            nodes.push(PreparedNode {
                target: Target::Node(n.name.clone()),
                name: &n.name,
                labels: Cow::Borrowed(&n.labels),
                taints,
                capacity,
                allocatable: n.allocatable.clone(),
                requested: Resources::default(),
                pool,
                ready: n.ready,
                schedulable: !n.unschedulable
                    && !n.deleting
                    && !disrupted
                    && claim.is_none_or(|c| c.deleting_since.is_none()),
                price_per_hour: claim
                    .and_then(claim_price)
                    .or_else(|| node_price(inp.catalog, &n.labels))
                    .unwrap_or(0.0),
                stable_since: self.stable_since.get(&n.name).copied().unwrap_or(n.created),
                claim: claim.map(|c| c.name.as_str()),
                annotations: &n.annotations,
            });
        }
        let mut bound = Vec::new();
        let mut pending = Vec::new();
        let mut draining = Vec::new();
        let mut has_ds_pods = vec![false; nodes.len()];
        for p in self.pods.values() {
            if p.terminal || p.pod.is_daemonset() && p.node.is_none() {
                continue;
            }
            match p.node.as_deref().and_then(|n| index.get(n)) {
                Some(&i) => {
                    nodes[i].requested.add(&p.pod.requests);
                    has_ds_pods[i] |= p.pod.is_daemonset();
                    if nodes[i].schedulable && !p.deleting {
                        bound.push((&p.pod, i));
                    } else if draining_node[i] && !p.deleting && !p.drain_exempt {
                        draining.push(&p.pod);
                    }
                }
                None if p.unschedulable => pending.push(&p.pod),
                None => {}
            }
        }
        // A managed node whose DaemonSet pods have not arrived yet keeps their room, as
        // a new node does.
        for (i, n) in nodes.iter_mut().enumerate() {
            if !has_ds_pods[i] {
                if let Some(o) = overhead(inp, n.pool, &n.labels) {
                    n.requested.add(&o);
                }
            }
        }
        for c in self.claims.values() {
            if c.deleting_since.is_none() && self.node_of(c).is_none() {
                if let Some(n) = launching_node(inp, c) {
                    nodes.push(n);
                }
            }
        }
        // Oldest pods first, as the simulator hands them (the core sorts them anyway;
        // this only makes ties reproducible).
        pending.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        draining.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Prepared {
            nodes,
            bound,
            pending,
            draining,
        }
    }
}

fn claim_price(c: &ClaimEntry) -> Option<f64> {
    c.options
        .iter()
        .find(|o| {
            Some(&o.instance_type) == c.instance_type.as_ref()
                && Some(&o.zone) == c.zone.as_ref()
                && Some(o.capacity_type) == c.capacity_type
        })
        .map(|o| o.price_per_hour)
}

fn node_price(catalog: &Catalog, l: &Labels) -> Option<f64> {
    let ty = catalog.find(l.get(labels::INSTANCE_TYPE)?)?;
    let zone = catalog.zone_index(l.get(labels::ZONE)?)?;
    let ct = l
        .get(labels::KARPENTER_CAPACITY_TYPE)
        .and_then(|c| CapacityType::parse(c))
        .unwrap_or(CapacityType::OnDemand);
    catalog.types[ty]
        .offerings
        .iter()
        .find(|o| o.zone == zone && o.capacity_type == ct)
        .map(|o| o.price_per_hour)
}

/// The DaemonSet room the model reserves on a node of this pool, type and capacity type.
fn overhead(inp: &DecisionInputs, pool: Option<usize>, l: &Labels) -> Option<Resources> {
    let pool = pool?;
    let ty = inp.catalog.find(l.get(labels::INSTANCE_TYPE)?)?;
    let ct = l
        .get(labels::KARPENTER_CAPACITY_TYPE)
        .and_then(|c| CapacityType::parse(c))
        .unwrap_or(CapacityType::OnDemand);
    inp.model
        .pools
        .get(pool)?
        .types
        .iter()
        .find(|t| t.ty == ty)
        .map(|t| t.daemon_overhead(ct).clone())
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
    let requested = overhead(inp, Some(pool), &labels).unwrap_or_default();
    let it = &inp.catalog.types[ty];
    Some(PreparedNode {
        target: Target::Claim(c.name.clone()),
        name: &c.name,
        taints: inp.pools[pool].taints.clone(),
        capacity: it.capacity.clone(),
        allocatable: it.allocatable.clone(),
        requested,
        pool: Some(pool),
        ready: false,
        schedulable: true,
        price_per_hour: claim_price(c)
            .or(first.map(|o| o.price_per_hour))
            .unwrap_or(0.0),
        stable_since: c.created,
        claim: Some(&c.name),
        labels: Cow::Owned(labels),
        annotations: &NO_ANNOTATIONS,
    })
}

/// A node a group will get (its desired size is above its registered nodes), as a
/// launching node of pool `pool` in `zone`, named `name`: pending pods count on it, so a
/// scale-up is not asked for twice while its instances boot.
pub fn upcoming_node<'s>(
    inp: &DecisionInputs,
    pool: usize,
    zone: &str,
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
    let requested = overhead(inp, Some(pool), &labels).unwrap_or_default();
    let it = &inp.catalog.types[ty];
    Some(PreparedNode {
        target: Target::Claim(name.to_string()),
        name,
        taints: p.taints.clone(),
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
        annotations: &NO_ANNOTATIONS,
    })
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
