//! Placement correctness of the decision core (`core::scheduler::solve`).
//!
//! The validator below is written from the Kubernetes rules (node selectors, node
//! affinity operators, taints/tolerations, topology spread, inter-pod (anti-)affinity,
//! resource fit) and deliberately does not call the core's own matching helpers, so a
//! bug there is caught. Every launch is materialised as a concrete node once per option
//! (the cloud may pick any of them), and every placement must be valid for every option.
//!
//! Then: property tests over random pods/pools/nodes, and targeted behaviour tests.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use stevedore::catalog::{load_embedded, CatalogOptions, SpotPriceOverride};
use stevedore::core::instance::{CapacityType, Catalog};
use stevedore::core::labels::{self, Labels};
use stevedore::core::mix;
use stevedore::core::model::SchedulingModel;
use stevedore::core::nodepool::{NodePool, PoolLimits};
use stevedore::core::pod::{Pod, PodAffinityTerm, TopologyKey, TopologySpread};
use stevedore::core::requirements::{LabelSelector, Operator, Requirement};
use stevedore::core::resources::{Resources, GPU_NVIDIA};
use stevedore::core::scheduler::{
    place_on_existing, place_on_existing_classified, solve, solve_launches, solve_reusing,
    solve_unclassified, Decision, NodeRooms, SolveEnv,
};
use stevedore::core::snapshot::{same_class, ClassRegistry, ExistingNode, PodClasses, Snapshot};
use stevedore::core::taints::{Taint, TaintEffect, Toleration};
use stevedore::core::unavailable::UnavailableOfferings;

const MI: i64 = 1 << 20;
const GI: i64 = 1 << 30;
const ZONE: &str = "topology.kubernetes.io/zone";
const HOSTNAME: &str = "kubernetes.io/hostname";
const CT: &str = "karpenter.sh/capacity-type";
const NODEPOOL: &str = "karpenter.sh/nodepool";
const ARCH: &str = "kubernetes.io/arch";
const CATEGORY: &str = "karpenter.k8s.aws/instance-category";
const INSTANCE_CPU: &str = "karpenter.k8s.aws/instance-cpu";
const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
const NOW: f64 = 100.0;

// ---------------------------------------------------------------------------------------
// Catalogs

fn full_catalog() -> &'static Catalog {
    static C: OnceLock<Catalog> = OnceLock::new();
    C.get_or_init(|| load_embedded(&CatalogOptions::default()).expect("embedded catalog"))
}

/// About 45 types of the real catalog (general purpose, compute, memory, burstable, GPU,
/// x86 and Graviton), three zones, with a few zone-specific Spot prices so zones differ.
fn small_catalog() -> &'static Catalog {
    static C: OnceLock<Catalog> = OnceLock::new();
    C.get_or_init(|| {
        let opts = CatalogOptions {
            spot_price_overrides: vec![
                SpotPriceOverride {
                    instance_type: "m5.large".into(),
                    zone: Some("us-east-1b".into()),
                    price_per_hour: 0.03,
                },
                SpotPriceOverride {
                    instance_type: "c6g.xlarge".into(),
                    zone: Some("us-east-1c".into()),
                    price_per_hour: 0.05,
                },
            ],
            ..CatalogOptions::default()
        };
        let full = load_embedded(&opts).expect("embedded catalog");
        let keep = [
            "t3.micro",
            "t3.small",
            "t3.medium",
            "t3.large",
            "t4g.medium",
            "t4g.large",
            "m5.large",
            "m5.xlarge",
            "m5.2xlarge",
            "m5.4xlarge",
            "m5.8xlarge",
            "m5.16xlarge",
            "m6g.large",
            "m6g.xlarge",
            "m6g.2xlarge",
            "m6g.4xlarge",
            "c5.large",
            "c5.xlarge",
            "c5.2xlarge",
            "c5.4xlarge",
            "c5.9xlarge",
            "c6g.large",
            "c6g.xlarge",
            "c6g.2xlarge",
            "c6g.4xlarge",
            "r5.large",
            "r5.xlarge",
            "r5.2xlarge",
            "r5.4xlarge",
            "r6g.large",
            "r6g.xlarge",
            "r6g.2xlarge",
            "g4dn.xlarge",
            "g4dn.2xlarge",
            "g4dn.12xlarge",
            "g5.xlarge",
            "g5.12xlarge",
            "g5g.xlarge",
            "p3.2xlarge",
        ];
        let types: Vec<_> = full
            .types
            .iter()
            .filter(|t| keep.contains(&t.name.as_str()) && !t.offerings.is_empty())
            .cloned()
            .collect();
        assert!(
            types.len() >= 30,
            "reduced catalog too small: {}",
            types.len()
        );
        Catalog {
            region: full.region.clone(),
            zones: full.zones.clone(),
            types,
        }
    })
}

// ---------------------------------------------------------------------------------------
// The world a decision is made in (owned; the snapshot borrows from it)

#[derive(Clone, Debug)]
struct NodeSpec {
    name: String,
    labels: Labels,
    capacity: Resources,
    allocatable: Resources,
    requested: Resources,
    taints: Vec<Taint>,
    pool: Option<usize>,
    ready: bool,
    schedulable: bool,
}

#[derive(Clone, Debug)]
struct World {
    catalog: &'static Catalog,
    pools: Vec<NodePool>,
    daemonsets: Vec<Pod>,
    nodes: Vec<NodeSpec>,
    bound: Vec<(Pod, usize)>,
    pending: Vec<Pod>,
    /// (type, zone, capacity type, until): unavailable while `NOW < until`.
    unavailable: Vec<(usize, usize, CapacityType, f64)>,
    max_launch_options: usize,
}

impl World {
    fn new(catalog: &'static Catalog, pools: Vec<NodePool>) -> Self {
        World {
            catalog,
            pools,
            daemonsets: Vec::new(),
            nodes: Vec::new(),
            bound: Vec::new(),
            pending: Vec::new(),
            unavailable: Vec::new(),
            max_launch_options: 60,
        }
    }

    fn solve(&self) -> Decision {
        self.with_inputs(|env, snapshot| solve(env, snapshot))
    }

    /// Calls `f` with the environment and snapshot of this world's decision.
    fn with_inputs<R>(&self, f: impl FnOnce(&SolveEnv, &mut Snapshot) -> R) -> R {
        let ds: Vec<&Pod> = self.daemonsets.iter().collect();
        let model = SchedulingModel::new(self.catalog, &self.pools, &ds);
        let mut unavailable = UnavailableOfferings::default();
        for &(ty, zone, ct, until) in &self.unavailable {
            // `mark` stores now + ttl; marking at time 0 keeps `until` as the expiry.
            unavailable.mark(ty, zone, ct, 0.0, until);
        }
        let env = SolveEnv {
            catalog: self.catalog,
            pools: &self.pools,
            model: &model,
            unavailable: &unavailable,
            now: NOW,
            max_launch_options: self.max_launch_options,
            pool_filter: None,
            allow_new_nodes: true,
            use_launching_nodes: true,
            split_claims: true,
            exclude_node: None,
        };
        let mut snapshot = Snapshot {
            nodes: self
                .nodes
                .iter()
                .map(|n| ExistingNode {
                    name: &n.name,
                    labels: &n.labels,
                    zone: labels::zone(&n.labels),
                    capacity: &n.capacity,
                    allocatable: &n.allocatable,
                    requested: n.requested.clone(),
                    taints: &n.taints,
                    pool: n.pool,
                    ready: n.ready,
                    schedulable: n.schedulable,
                })
                .collect(),
            bound: self.bound.iter().map(|(p, n)| (p, *n)).collect(),
            pending: self.pending.iter().collect(),
        };
        f(&env, &mut snapshot)
    }

    fn is_unavailable(&self, ty: usize, zone: usize, ct: CapacityType) -> bool {
        self.unavailable
            .iter()
            .any(|&(t, z, c, until)| t == ty && z == zone && c == ct && NOW < until)
    }

    /// The labels a node of `pool` launched as (type, zone, capacity type) carries.
    fn node_labels(
        &self,
        pool: usize,
        ty: usize,
        zone: usize,
        ct: CapacityType,
        host: &str,
    ) -> Labels {
        let p = &self.pools[pool];
        let mut l = self.catalog.types[ty].labels.clone();
        for (k, v) in &p.labels {
            l.insert(k.clone(), v.clone());
        }
        l.insert(ZONE.into(), self.catalog.zones[zone].clone());
        l.insert(CT.into(), ct_str(ct).into());
        l.insert("stevedore.dev/capacity-type".into(), ct_str(ct).into());
        l.insert(NODEPOOL.into(), p.name.clone());
        l.insert("stevedore.dev/nodepool".into(), p.name.clone());
        l.insert(HOSTNAME.into(), host.into());
        l
    }

    /// DaemonSet requests on a node with these labels and taints.
    fn daemon_overhead(&self, labels: &Labels, taints: &[Taint]) -> Resources {
        let mut r = Resources::default();
        for ds in &self.daemonsets {
            if node_affinity_ok(ds, labels) && tolerated(&ds.tolerations, taints) {
                r.add(&ds.requests);
            }
        }
        r
    }

    /// Adds an existing node of `pool` (labels, taints and DaemonSet overhead included)
    /// with `bound` pods on it; returns its index.
    fn add_node(
        &mut self,
        pool: Option<usize>,
        ty: usize,
        zone: usize,
        ct: CapacityType,
        ready: bool,
        bound: Vec<Pod>,
    ) -> usize {
        let idx = self.nodes.len();
        let name = format!("existing-{idx}");
        let (labels, taints) = match pool {
            Some(p) => (
                self.node_labels(p, ty, zone, ct, &name),
                self.pools[p].taints.clone(),
            ),
            None => {
                let mut l = self.catalog.types[ty].labels.clone();
                l.insert(ZONE.into(), self.catalog.zones[zone].clone());
                l.insert(CT.into(), ct_str(ct).into());
                l.insert(HOSTNAME.into(), name.clone());
                (l, Vec::new())
            }
        };
        let it = &self.catalog.types[ty];
        let mut requested = self.daemon_overhead(&labels, &taints);
        for p in &bound {
            requested.add(&p.requests);
        }
        self.nodes.push(NodeSpec {
            name,
            labels,
            capacity: it.capacity.clone(),
            allocatable: it.allocatable.clone(),
            requested,
            taints,
            pool,
            ready,
            schedulable: true,
        });
        for p in bound {
            self.bound.push((p, idx));
        }
        idx
    }
}

fn ct_str(ct: CapacityType) -> &'static str {
    match ct {
        CapacityType::Spot => "spot",
        CapacityType::OnDemand => "on-demand",
    }
}

// ---------------------------------------------------------------------------------------
// Kubernetes rules, written out independently of the core

/// One node-selector requirement against a node's labels (Kubernetes semantics: NotIn
/// and DoesNotExist match an absent label; Gt/Lt need an integer label and bound).
fn requirement_ok(r: &Requirement, labels: &Labels) -> bool {
    let value = labels.get(&r.key);
    match r.operator {
        Operator::In => matches!(value, Some(v) if r.values.contains(v)),
        Operator::NotIn => !matches!(value, Some(v) if r.values.contains(v)),
        Operator::Exists => value.is_some(),
        Operator::DoesNotExist => value.is_none(),
        Operator::Gt | Operator::Lt => {
            let node: Option<i64> = value.and_then(|v| v.parse().ok());
            let bound: Option<i64> = r.values.first().and_then(|v| v.parse().ok());
            match (node, bound) {
                (Some(n), Some(b)) if r.operator == Operator::Gt => n > b,
                (Some(n), Some(b)) => n < b,
                _ => false,
            }
        }
    }
}

/// nodeSelector (every pair equal) AND required node affinity (terms ORed, the
/// expressions of a term ANDed; no terms = no constraint).
fn node_affinity_ok(pod: &Pod, labels: &Labels) -> bool {
    let selector = pod
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let affinity = pod.required_node_terms.is_empty()
        || pod
            .required_node_terms
            .iter()
            .any(|term| term.iter().all(|r| requirement_ok(r, labels)));
    selector && affinity
}

/// Every NoSchedule/NoExecute taint needs a matching toleration.
fn tolerated(tolerations: &[Toleration], taints: &[Taint]) -> bool {
    taints.iter().all(|t| {
        t.effect == TaintEffect::PreferNoSchedule
            || tolerations.iter().any(|tol| {
                let effect_ok = tol.effect.is_none_or(|e| e == t.effect);
                let key_ok = if tol.key.is_empty() {
                    tol.exists
                } else {
                    tol.key == t.key && (tol.exists || tol.value == t.value)
                };
                effect_ok && key_ok
            })
    })
}

fn selector_ok(sel: &LabelSelector, labels: &Labels) -> bool {
    sel.match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel
            .match_expressions
            .iter()
            .all(|r| requirement_ok(r, labels))
}

/// Does `owner`'s term select `other` (namespaces: the owner's own when none listed)?
fn term_selects(owner: &Pod, term: &PodAffinityTerm, other: &Pod) -> bool {
    let ns_ok = if term.namespaces.is_empty() {
        other.namespace == owner.namespace
    } else {
        term.namespaces.contains(&other.namespace)
    };
    ns_ok && selector_ok(&term.selector, &other.labels)
}

/// `used` + `extra` fits in `room` for every resource (extended ones included).
fn fits(used: &Resources, room: &Resources) -> Result<(), String> {
    let mut bad = Vec::new();
    if used.cpu_milli > room.cpu_milli {
        bad.push(format!("cpu {} > {}", used.cpu_milli, room.cpu_milli));
    }
    if used.memory > room.memory {
        bad.push(format!("memory {} > {}", used.memory, room.memory));
    }
    if used.pods > room.pods {
        bad.push(format!("pods {} > {}", used.pods, room.pods));
    }
    if used.ephemeral > 0 && used.ephemeral > room.ephemeral {
        bad.push(format!("ephemeral {} > {}", used.ephemeral, room.ephemeral));
    }
    for (name, v) in &used.extended {
        let have = room
            .extended
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, h)| *h);
        if *v > have {
            bad.push(format!("{name} {v} > {have}"));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join(", "))
    }
}

fn limits_ok(limits: &PoolLimits, usage: &Resources) -> Result<(), String> {
    if let Some(l) = limits.cpu_milli {
        if usage.cpu_milli > l {
            return Err(format!("cpu {} > limit {l}", usage.cpu_milli));
        }
    }
    if let Some(l) = limits.memory {
        if usage.memory > l {
            return Err(format!("memory {} > limit {l}", usage.memory));
        }
    }
    for (n, l) in &limits.extended {
        let u = usage
            .extended
            .iter()
            .find(|(k, _)| **k == **n)
            .map_or(0, |(_, v)| *v);
        if u > *l {
            return Err(format!("{n} {u} > limit {l}"));
        }
    }
    Ok(())
}

/// Zones (names) a pod's node selector and required affinity allow: the domains of its
/// zone spread.
fn eligible_zones(pod: &Pod, zones: &[String]) -> BTreeSet<String> {
    zones
        .iter()
        .filter(|z| {
            let mut l = Labels::new();
            l.insert(ZONE.into(), (*z).clone());
            let sel = pod.node_selector.get(ZONE).is_none_or(|v| v == *z);
            let aff = pod.required_node_terms.is_empty()
                || pod.required_node_terms.iter().any(|t| {
                    t.iter()
                        .filter(|r| r.key == ZONE)
                        .all(|r| requirement_ok(r, &l))
                });
            sel && aff
        })
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------
// The validator

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeRef {
    Existing(usize),
    Launch(usize),
}

struct Placed<'w> {
    pod: &'w Pod,
    node: NodeRef,
    /// `false` for pods bound before the decision.
    new: bool,
    /// Zones the pod's node may be in (one for existing nodes; the options' for launches).
    zones: BTreeSet<String>,
}

fn key_kind(key: &str) -> Option<TopologyKey> {
    match key {
        ZONE => Some(TopologyKey::Zone),
        HOSTNAME => Some(TopologyKey::Hostname),
        _ => None,
    }
}

fn certainly_same(a: &Placed, b: &Placed, key: &str) -> bool {
    a.node == b.node
        || (key_kind(key) == Some(TopologyKey::Zone) && a.zones.len() == 1 && a.zones == b.zones)
}

fn possibly_same(a: &Placed, b: &Placed, key: &str) -> bool {
    a.node == b.node || (key_kind(key) == Some(TopologyKey::Zone) && !a.zones.is_disjoint(&b.zones))
}

/// Checks a decision against the world; returns every violation found.
fn validate(w: &World, d: &Decision) -> Result<(), String> {
    let mut errs: Vec<String> = Vec::new();
    let cat = w.catalog;
    let pname = |i: usize| {
        w.pending
            .get(i)
            .map_or("<out of range>".into(), |p| p.key())
    };

    // Every pending pod exactly once.
    let mut seen = vec![0usize; w.pending.len()];
    let mut note = |i: usize, what: &str, errs: &mut Vec<String>| {
        if i >= seen.len() {
            errs.push(format!("{what}: pending index {i} out of range"));
        } else {
            seen[i] += 1;
        }
    };
    for &(i, _) in &d.existing {
        note(i, "existing", &mut errs);
    }
    for l in &d.launches {
        for &i in &l.pods {
            note(i, "launch", &mut errs);
        }
    }
    for (i, _) in &d.unschedulable {
        note(*i, "unschedulable", &mut errs);
    }
    for (i, _) in &d.infeasible {
        note(*i, "infeasible", &mut errs);
    }
    for (i, n) in seen.iter().enumerate() {
        if *n != 1 {
            errs.push(format!(
                "pod {} appears {n} times in the decision",
                pname(i)
            ));
        }
    }
    if !errs.is_empty() {
        return Err(errs.join("\n"));
    }

    // Existing-node placements.
    let mut on_node: Vec<Vec<usize>> = vec![Vec::new(); w.nodes.len()];
    for &(i, n) in &d.existing {
        let pod = &w.pending[i];
        let Some(node) = w.nodes.get(n) else {
            errs.push(format!("{}: node index {n} out of range", pod.key()));
            continue;
        };
        on_node[n].push(i);
        if !node.schedulable {
            errs.push(format!(
                "{} placed on cordoned node {}",
                pod.key(),
                node.name
            ));
        }
        if !node_affinity_ok(pod, &node.labels) {
            errs.push(format!(
                "{}: node selector/affinity rejects {}",
                pod.key(),
                node.name
            ));
        }
        if !tolerated(&pod.tolerations, &node.taints) {
            errs.push(format!(
                "{}: taints of {} not tolerated",
                pod.key(),
                node.name
            ));
        }
    }
    for (n, pods) in on_node.iter().enumerate() {
        let node = &w.nodes[n];
        let mut used = node.requested.clone();
        for &i in pods {
            used.add(&w.pending[i].requests);
        }
        if !pods.is_empty() {
            if let Err(e) = fits(&used, &node.allocatable) {
                errs.push(format!("{} overcommitted: {e}", node.name));
            }
        }
    }

    // Launches, each option in turn.
    for (li, l) in d.launches.iter().enumerate() {
        let Some(pool) = w.pools.get(l.pool) else {
            errs.push(format!("launch {li}: pool {} out of range", l.pool));
            continue;
        };
        if l.pods.is_empty() {
            errs.push(format!("launch {li} has no pods"));
        }
        if l.options.is_empty() {
            errs.push(format!("launch {li} has no options"));
        }
        if l.options.len() > w.max_launch_options.max(1) {
            errs.push(format!(
                "launch {li}: {} options > {}",
                l.options.len(),
                w.max_launch_options
            ));
        }
        let mut sum = Resources::default();
        for &i in &l.pods {
            sum.add(&w.pending[i].requests);
        }
        if sum != l.requested {
            errs.push(format!(
                "launch {li}: requested {} != sum of its pods {}",
                l.requested, sum
            ));
        }
        let mut distinct = BTreeSet::new();
        for (oi, o) in l.options.iter().enumerate() {
            if oi > 0 && l.options[oi - 1].price_per_hour > o.price_per_hour {
                errs.push(format!("launch {li}: options not sorted by price at {oi}"));
            }
            if !distinct.insert((o.instance_type, o.zone, o.capacity_type)) {
                errs.push(format!("launch {li}: duplicate option {o:?}"));
            }
            let Some(it) = cat.types.get(o.instance_type) else {
                errs.push(format!(
                    "launch {li}: type {} out of range",
                    o.instance_type
                ));
                continue;
            };
            let offered = it.offerings.iter().any(|off| {
                off.zone == o.zone
                    && off.capacity_type == o.capacity_type
                    && off.price_per_hour == o.price_per_hour
            });
            if !offered {
                errs.push(format!(
                    "launch {li}: {} {o:?} is not a catalog offering",
                    it.name
                ));
            }
            if w.is_unavailable(o.instance_type, o.zone, o.capacity_type) {
                errs.push(format!(
                    "launch {li}: option {} {o:?} is marked unavailable",
                    it.name
                ));
            }
            let host = format!("launch-{li}");
            let labels = w.node_labels(l.pool, o.instance_type, o.zone, o.capacity_type, &host);
            for r in &pool.requirements {
                if !requirement_ok(r, &labels) {
                    errs.push(format!(
                        "launch {li}: option {} {o:?} breaks pool requirement {r:?}",
                        it.name
                    ));
                }
            }
            let mut used = w.daemon_overhead(&labels, &pool.taints);
            used.add(&sum);
            if let Err(e) = fits(&used, &it.allocatable) {
                errs.push(format!(
                    "launch {li}: option {} cannot hold its pods + DaemonSets: {e}",
                    it.name
                ));
            }
            for &i in &l.pods {
                let pod = &w.pending[i];
                if !node_affinity_ok(pod, &labels) {
                    errs.push(format!(
                        "{}: node selector/affinity rejects launch {li} option {} {} {}",
                        pod.key(),
                        it.name,
                        cat.zones[o.zone],
                        ct_str(o.capacity_type)
                    ));
                }
            }
        }
        for &i in &l.pods {
            let pod = &w.pending[i];
            if !tolerated(&pod.tolerations, &pool.taints) {
                errs.push(format!(
                    "{}: taints of pool {} not tolerated",
                    pod.key(),
                    pool.name
                ));
            }
        }
    }

    // Pool limits: existing nodes of the pool + the first option of each launch.
    for (pi, pool) in w.pools.iter().enumerate() {
        let launches: Vec<usize> = (0..d.launches.len())
            .filter(|&l| d.launches[l].pool == pi && !d.launches[l].options.is_empty())
            .collect();
        if launches.is_empty() {
            continue;
        }
        let mut usage = Resources::default();
        for n in w.nodes.iter().filter(|n| n.pool == Some(pi)) {
            usage.add(&n.capacity);
        }
        for &l in &launches {
            let opts = &d.launches[l].options;
            usage.add(&cat.types[opts[0].instance_type].capacity);
        }
        if let Err(e) = limits_ok(&pool.limits, &usage) {
            errs.push(format!("pool {} over its limits: {e}", pool.name));
        }
    }

    // Topology: everything placed, with the zones each may end up in.
    let mut placed: Vec<Placed> = Vec::new();
    for (p, n) in &w.bound {
        let zones = w.nodes[*n].labels.get(ZONE).into_iter().cloned().collect();
        placed.push(Placed {
            pod: p,
            node: NodeRef::Existing(*n),
            new: false,
            zones,
        });
    }
    for &(i, n) in &d.existing {
        let zones = w.nodes[n].labels.get(ZONE).into_iter().cloned().collect();
        placed.push(Placed {
            pod: &w.pending[i],
            node: NodeRef::Existing(n),
            new: true,
            zones,
        });
    }
    for (li, l) in d.launches.iter().enumerate() {
        let zones: BTreeSet<String> = l
            .options
            .iter()
            .map(|o| cat.zones[o.zone].clone())
            .collect();
        for &i in &l.pods {
            placed.push(Placed {
                pod: &w.pending[i],
                node: NodeRef::Launch(li),
                new: true,
                zones: zones.clone(),
            });
        }
    }
    // A launch without options (known bug, tolerated) has no zone: its pods' topology
    // cannot be judged, nor that of the pods counted with them.
    if d.launches.iter().all(|l| !l.options.is_empty()) {
        check_anti_affinity(&placed, &mut errs);
        check_affinity(&placed, &mut errs);
        check_spread(w, &placed, &mut errs);
    }

    // Infeasible pods really fit nowhere; simple unschedulable pods really cannot launch.
    for (i, reason) in &d.infeasible {
        if reason.is_empty() {
            errs.push(format!("{}: infeasible without a reason", pname(*i)));
        }
        if let Some(o) = any_offering_holds(w, &w.pending[*i], false) {
            errs.push(format!(
                "{} marked infeasible but {o} could hold it",
                pname(*i)
            ));
        }
    }
    let no_limits = w.pools.iter().all(|p| p.limits == PoolLimits::default());
    for (i, reason) in &d.unschedulable {
        let pod = &w.pending[*i];
        let constrained = pod.spread.iter().any(|s| s.hard)
            || !pod.affinity.is_empty()
            || !pod.anti_affinity.is_empty()
            || placed.iter().any(|q| {
                q.pod
                    .anti_affinity
                    .iter()
                    .any(|t| term_selects(q.pod, t, pod))
            });
        if no_limits && !constrained {
            if let Some(o) = any_offering_holds(w, pod, true) {
                errs.push(format!(
                    "{} left unschedulable ({reason}) but a new {o} could hold it alone",
                    pod.key()
                ));
            }
        }
    }

    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

/// An offering of some pool that could hold `pod` alone on an empty node.
fn any_offering_holds(w: &World, pod: &Pod, only_available: bool) -> Option<String> {
    for (pi, pool) in w.pools.iter().enumerate() {
        if !tolerated(&pod.tolerations, &pool.taints) {
            continue;
        }
        for (ti, it) in w.catalog.types.iter().enumerate() {
            for o in &it.offerings {
                if only_available && w.is_unavailable(ti, o.zone, o.capacity_type) {
                    continue;
                }
                let labels = w.node_labels(pi, ti, o.zone, o.capacity_type, "probe");
                if !pool.requirements.iter().all(|r| requirement_ok(r, &labels))
                    || !node_affinity_ok(pod, &labels)
                {
                    continue;
                }
                let mut used = w.daemon_overhead(&labels, &pool.taints);
                used.add(&pod.requests);
                if fits(&used, &it.allocatable).is_ok() {
                    return Some(format!(
                        "{} {} {} of pool {}",
                        it.name,
                        w.catalog.zones[o.zone],
                        ct_str(o.capacity_type),
                        pool.name
                    ));
                }
            }
        }
    }
    None
}

/// Required anti-affinity, both directions: no pod with a term may share the term's
/// domain with a pod it selects (pairs of pods bound before the decision excepted).
fn check_anti_affinity(placed: &[Placed], errs: &mut Vec<String>) {
    for (a, pa) in placed.iter().enumerate() {
        for t in &pa.pod.anti_affinity {
            for (b, pb) in placed.iter().enumerate() {
                if a == b || (!pa.new && !pb.new) || !term_selects(pa.pod, t, pb.pod) {
                    continue;
                }
                if possibly_same(pa, pb, &t.topology_key) {
                    errs.push(format!(
                        "anti-affinity ({}) of {} broken by {} ({:?} {:?} / {:?} {:?})",
                        t.topology_key,
                        pa.pod.key(),
                        pb.pod.key(),
                        pa.node,
                        pa.zones,
                        pb.node,
                        pb.zones
                    ));
                }
            }
        }
    }
}

/// Required affinity: a selected pod in the same domain, or (the first of its kind) the
/// pod selects itself and no other selected pod exists. When every new selected pod
/// carries the same term, placing them one by one can only ever fill domains that already
/// had a selected pod, which the final state must show.
fn check_affinity(placed: &[Placed], errs: &mut Vec<String>) {
    for (a, pa) in placed.iter().enumerate() {
        if !pa.new {
            continue;
        }
        for t in &pa.pod.affinity {
            let others: Vec<usize> = (0..placed.len())
                .filter(|&b| b != a && term_selects(pa.pod, t, placed[b].pod))
                .collect();
            let homogeneous = others.iter().filter(|&&b| placed[b].new).all(|&b| {
                placed[b].pod.affinity.contains(t) && placed[b].pod.namespace == pa.pod.namespace
            });
            let bound: Vec<usize> = others.iter().copied().filter(|&b| !placed[b].new).collect();
            let ok = if others.is_empty() {
                term_selects(pa.pod, t, pa.pod)
            } else if homogeneous && !bound.is_empty() {
                bound
                    .iter()
                    .any(|&b| certainly_same(pa, &placed[b], &t.topology_key))
            } else if homogeneous {
                others
                    .iter()
                    .all(|&b| certainly_same(pa, &placed[b], &t.topology_key))
            } else {
                others
                    .iter()
                    .any(|&b| certainly_same(pa, &placed[b], &t.topology_key))
            };
            if !ok {
                errs.push(format!(
                    "affinity ({}) of {} not satisfied at {:?} {:?}",
                    t.topology_key,
                    pa.pod.key(),
                    pa.node,
                    pa.zones
                ));
            }
        }
    }
}

/// Hard topology spread on zone and hostname. Checked on the final state where every
/// new selected pod carries the same constraint (the generator's groups): then the last
/// pod put in a domain saw `count - 1` there and a minimum no higher than the final one,
/// so `count(domain) - min ≤ maxSkew` must hold for every domain that got a new pod.
/// Hostname domains have minimum 0 (a new node can always open one); zone domains are
/// the zones the pod's node requirements allow.
fn check_spread(w: &World, placed: &[Placed], errs: &mut Vec<String>) {
    for pa in placed.iter().filter(|p| p.new) {
        for s in pa.pod.spread.iter().filter(|s| s.hard) {
            let Some(kind) = key_kind(&s.topology_key) else {
                continue;
            };
            let group: Vec<&Placed> = placed
                .iter()
                .filter(|q| {
                    q.pod.namespace == pa.pod.namespace && selector_ok(&s.selector, &q.pod.labels)
                })
                .collect();
            let homogeneous = group.iter().filter(|q| q.new).all(|q| {
                q.pod.spread.contains(s)
                    && eligible_zones(q.pod, &w.catalog.zones)
                        == eligible_zones(pa.pod, &w.catalog.zones)
            });
            if !homogeneous {
                continue;
            }
            match kind {
                TopologyKey::Hostname => {
                    let count = group.iter().filter(|q| q.node == pa.node).count() as i32;
                    if count > s.max_skew {
                        errs.push(format!(
                            "hostname spread of {}: {count} selected pods on {:?} > maxSkew {}",
                            pa.pod.key(),
                            pa.node,
                            s.max_skew
                        ));
                    }
                }
                _ => {
                    if let Some(q) = group.iter().find(|q| q.new && q.zones.len() != 1) {
                        errs.push(format!(
                            "zone spread of {}: selected pod {} may land in any of {:?}",
                            pa.pod.key(),
                            q.pod.key(),
                            q.zones
                        ));
                        continue;
                    }
                    let mut counts: BTreeMap<&str, i32> = BTreeMap::new();
                    for q in &group {
                        if let Some(z) = q.zones.iter().next() {
                            *counts.entry(z.as_str()).or_default() += 1;
                        }
                    }
                    let eligible = eligible_zones(pa.pod, &w.catalog.zones);
                    let min = eligible
                        .iter()
                        .map(|z| counts.get(z.as_str()).copied().unwrap_or(0))
                        .min()
                        .unwrap_or(0);
                    let z = pa.zones.iter().next().expect("checked above");
                    let here = counts.get(z.as_str()).copied().unwrap_or(0);
                    if here - min > s.max_skew {
                        errs.push(format!(
                            "zone spread of {}: {here} in {z}, min {min} over {eligible:?} > maxSkew {} (counts {counts:?})",
                            pa.pod.key(),
                            s.max_skew
                        ));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Builders

fn req(key: &str, op: Operator, values: &[&str]) -> Requirement {
    Requirement::new(key, op, values)
}

fn pool(name: &str, requirements: Vec<Requirement>) -> NodePool {
    NodePool {
        name: name.into(),
        weight: 0,
        requirements,
        labels: Labels::new(),
        taints: Vec::new(),
        startup_taints: Vec::new(),
        limits: PoolLimits::default(),
        empty_node_after: None,
    }
}

fn pod(name: &str, cpu_milli: i64, memory: i64) -> Pod {
    Pod {
        namespace: "default".into(),
        name: name.into(),
        requests: Resources::new(cpu_milli, memory, 1),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn app_selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: [("app".to_string(), app.to_string())].into_iter().collect(),
        match_expressions: Vec::new(),
    }
}

fn kind_of(key: &str) -> TopologyKey {
    key_kind(key).unwrap_or(TopologyKey::Other)
}

fn spread(key: &str, max_skew: i32, app: &str, hard: bool) -> TopologySpread {
    TopologySpread {
        max_skew,
        topology_key: key.into(),
        kind: kind_of(key),
        hard,
        selector: app_selector(app),
        min_domains: None,
    }
}

fn term(key: &str, app: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        selector: app_selector(app),
        topology_key: key.into(),
        kind: kind_of(key),
        namespaces: Vec::new(),
    }
}

fn gpu_taint() -> Taint {
    Taint {
        key: GPU_NVIDIA.into(),
        value: "true".into(),
        effect: TaintEffect::NoSchedule,
    }
}

fn tol_exists(key: &str, effect: Option<TaintEffect>) -> Toleration {
    Toleration {
        key: key.into(),
        exists: true,
        value: String::new(),
        effect,
    }
}

fn type_index(c: &Catalog, name: &str) -> usize {
    c.types
        .iter()
        .position(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} not in catalog"))
}

fn assert_valid(w: &World, d: &Decision) {
    if let Err(e) = validate(w, d) {
        panic!("invalid decision:\n{e}\ndecision: {d:#?}");
    }
}

// ---------------------------------------------------------------------------------------
// Random worlds

const SELECTOR_CHOICES: &[(&str, &str)] = &[
    (ARCH, "amd64"),
    (ARCH, "arm64"),
    (CT, "spot"),
    (CT, "on-demand"),
    (ZONE, "us-east-1a"),
    (ZONE, "us-east-1b"),
    (ZONE, "us-east-1c"),
    (CATEGORY, "c"),
    (CATEGORY, "m"),
    (CATEGORY, "r"),
    (CATEGORY, "g"),
];

/// (key, candidate values) for random node-affinity expressions.
const AFFINITY_KEYS: &[(&str, &[&str])] = &[
    (INSTANCE_CPU, &["2", "4", "8", "16", "32"]),
    (
        "karpenter.k8s.aws/instance-memory",
        &["4096", "8192", "16384", "65536"],
    ),
    (
        "karpenter.k8s.aws/instance-generation",
        &["3", "4", "5", "6"],
    ),
    ("karpenter.k8s.aws/instance-gpu-count", &["0", "1", "4"]),
    (CATEGORY, &["c", "m", "r", "t", "g"]),
    (ARCH, &["amd64", "arm64"]),
    (ZONE, &["us-east-1a", "us-east-1b", "us-east-1c"]),
    (CT, &["spot", "on-demand"]),
    ("example.com/absent", &["x"]),
];

const OPERATORS: &[Operator] = &[
    Operator::In,
    Operator::NotIn,
    Operator::Exists,
    Operator::DoesNotExist,
    Operator::Gt,
    Operator::Lt,
];

fn requirement_strategy() -> impl Strategy<Value = Requirement> {
    (
        0..AFFINITY_KEYS.len(),
        0..OPERATORS.len(),
        proptest::collection::vec(0usize..5, 1..3),
    )
        .prop_map(|(k, o, picks)| {
            let (key, cands) = AFFINITY_KEYS[k];
            let op = OPERATORS[o];
            let values: Vec<String> = match op {
                Operator::Exists | Operator::DoesNotExist => Vec::new(),
                Operator::Gt | Operator::Lt => vec![cands[picks[0] % cands.len()].to_string()],
                _ => {
                    let mut v: Vec<String> = picks
                        .iter()
                        .map(|&p| cands[p % cands.len()].to_string())
                        .collect();
                    v.dedup();
                    v
                }
            };
            Requirement {
                key: key.into(),
                operator: op,
                values,
            }
        })
}

#[derive(Clone, Debug)]
struct PodGen {
    cpu: i64,
    mem_mi: i64,
    gpu: i64,
    selector: Vec<usize>,
    terms: Vec<Vec<Requirement>>,
    preferred: Vec<Requirement>,
    tolerations: u8,
    priority: i32,
    group: Option<usize>,
    web: bool,
}

fn pod_gen() -> impl Strategy<Value = PodGen> {
    (
        (50i64..=8000, 64i64..=32 * 1024, prop_oneof![6 => Just(0i64), 1 => 1i64..=4]),
        proptest::collection::vec(0..SELECTOR_CHOICES.len(), 0..3),
        prop_oneof![
            3 => Just(Vec::new()),
            2 => proptest::collection::vec(proptest::collection::vec(requirement_strategy(), 1..3), 1..3),
        ],
        proptest::collection::vec(requirement_strategy(), 0..2),
        (any::<u8>(), 0i32..4, prop_oneof![1 => Just(None), 1 => (0usize..4).prop_map(Some)], any::<bool>()),
    )
        .prop_map(|((cpu, mem_mi, gpu), selector, terms, preferred, (tolerations, prio, group, web))| PodGen {
            cpu,
            mem_mi,
            gpu,
            selector,
            terms,
            preferred,
            tolerations,
            priority: prio * 100,
            group,
            web,
        })
}

/// A group of pods sharing a label, namespace, node selector and topology constraint.
#[derive(Clone, Debug)]
struct GroupGen {
    kind: u8,
    max_skew: i32,
    other_namespace: bool,
    selector: Option<usize>,
}

fn group_gen() -> impl Strategy<Value = GroupGen> {
    (
        0u8..8,
        1i32..3,
        prop::bool::weighted(0.2),
        prop::option::weighted(0.3, 0..SELECTOR_CHOICES.len()),
    )
        .prop_map(|(kind, max_skew, other_namespace, selector)| GroupGen {
            kind,
            max_skew,
            other_namespace,
            selector,
        })
}

#[derive(Clone, Debug)]
struct PoolGen {
    arch: u8,
    ct: u8,
    zones: u8,
    category: u8,
    cpu_cap: bool,
    taint: u8,
    label: bool,
    limit: u8,
    limit_amount: i64,
    weight: i32,
}

fn pool_gen() -> impl Strategy<Value = PoolGen> {
    (
        (0u8..3, 0u8..3, 1u8..8, 0u8..4),
        (any::<bool>(), 0u8..3, any::<bool>()),
        (prop_oneof![2 => Just(0u8), 1 => 1u8..4], 1i64..9, 0i32..4),
    )
        .prop_map(
            |(
                (arch, ct, zones, category),
                (cpu_cap, taint, label),
                (limit, limit_amount, weight),
            )| PoolGen {
                arch,
                ct,
                zones,
                category,
                cpu_cap,
                taint,
                label,
                limit,
                limit_amount,
                weight,
            },
        )
}

#[derive(Clone, Debug)]
struct NodeGen {
    pool: usize,
    static_node: bool,
    ty: usize,
    zone: usize,
    spot: bool,
    ready: bool,
    schedulable: bool,
    bound: Vec<(i64, i64, u8, bool, u8)>,
}

fn node_gen() -> impl Strategy<Value = NodeGen> {
    (
        (
            0usize..3,
            prop::bool::weighted(0.15),
            0usize..64,
            0usize..3,
            any::<bool>(),
        ),
        (prop::bool::weighted(0.7), prop::bool::weighted(0.9)),
        proptest::collection::vec(
            (
                50i64..1000,
                64i64..2048,
                0u8..6,
                prop::bool::weighted(0.2),
                0u8..4,
            ),
            0..4,
        ),
    )
        .prop_map(
            |((pool, static_node, ty, zone, spot), (ready, schedulable), bound)| NodeGen {
                pool,
                static_node,
                ty,
                zone,
                spot,
                ready,
                schedulable,
                bound,
            },
        )
}

#[derive(Clone, Debug)]
struct WorldGen {
    pools: Vec<PoolGen>,
    groups: Vec<GroupGen>,
    daemonsets: Vec<bool>,
    nodes: Vec<NodeGen>,
    pods: Vec<PodGen>,
    unavailable: Vec<(usize, usize, bool, bool)>,
    max_launch_options: usize,
}

fn world_gen(max_pods: usize) -> impl Strategy<Value = WorldGen> {
    (
        proptest::collection::vec(pool_gen(), 1..4),
        proptest::collection::vec(group_gen(), 4),
        proptest::collection::vec(any::<bool>(), 4),
        proptest::collection::vec(node_gen(), 0..5),
        proptest::collection::vec(pod_gen(), 1..max_pods),
        proptest::collection::vec(
            (
                0usize..64,
                0usize..3,
                any::<bool>(),
                prop::bool::weighted(0.8),
            ),
            0..25,
        ),
        prop_oneof![1 => 1usize..4, 3 => 4usize..=60],
    )
        .prop_map(
            |(pools, groups, daemonsets, nodes, pods, unavailable, max_launch_options)| WorldGen {
                pools,
                groups,
                daemonsets,
                nodes,
                pods,
                unavailable,
                max_launch_options,
            },
        )
}

fn build_pool(i: usize, g: &PoolGen, zones: &[String]) -> NodePool {
    let mut reqs = Vec::new();
    match g.arch {
        1 => reqs.push(req(ARCH, Operator::In, &["amd64"])),
        2 => reqs.push(req(ARCH, Operator::In, &["arm64"])),
        _ => {}
    }
    match g.ct {
        1 => reqs.push(req(CT, Operator::In, &["spot"])),
        2 => reqs.push(req(CT, Operator::In, &["on-demand"])),
        _ => reqs.push(req(CT, Operator::In, &["spot", "on-demand"])),
    }
    if g.zones != 7 {
        let z: Vec<&str> = (0..3)
            .filter(|b| g.zones & (1 << b) != 0)
            .map(|b| zones[b].as_str())
            .collect();
        reqs.push(req(ZONE, Operator::In, &z));
    }
    let mut taints = Vec::new();
    match g.category {
        1 => reqs.push(req(CATEGORY, Operator::In, &["c", "m", "r"])),
        2 => {
            reqs.push(req(CATEGORY, Operator::In, &["g"]));
            taints.push(gpu_taint());
        }
        3 => reqs.push(req(CATEGORY, Operator::NotIn, &["g"])),
        _ => {}
    }
    if g.cpu_cap {
        reqs.push(req(INSTANCE_CPU, Operator::Lt, &["33"]));
    }
    match g.taint {
        1 => taints.push(Taint {
            key: "dedicated".into(),
            value: "batch".into(),
            effect: TaintEffect::NoExecute,
        }),
        2 => taints.push(Taint {
            key: "soft".into(),
            value: "x".into(),
            effect: TaintEffect::PreferNoSchedule,
        }),
        _ => {}
    }
    let mut limits = PoolLimits::default();
    match g.limit {
        1 => limits.cpu_milli = Some(g.limit_amount * 8000),
        2 => limits.memory = Some(g.limit_amount * 32 * GI),
        3 => limits.extended = vec![(GPU_NVIDIA.to_string(), g.limit_amount)],
        _ => {}
    }
    NodePool {
        name: format!("pool-{i}"),
        weight: g.weight,
        requirements: reqs,
        labels: if g.label {
            labels(&[("team", "a")])
        } else {
            Labels::new()
        },
        taints,
        startup_taints: Vec::new(),
        limits,
        empty_node_after: None,
    }
}

fn daemonset(i: usize) -> Pod {
    let mut p = Pod {
        namespace: "kube-system".into(),
        name: format!("ds-{i}"),
        ..Default::default()
    };
    match i {
        0 => {
            p.requests = Resources::new(100, 128 * MI, 1);
            p.tolerations = vec![tol_exists("", None)];
        }
        1 => {
            p.requests = Resources::new(200, 256 * MI, 1);
            p.node_selector = labels(&[(ARCH, "amd64")]);
        }
        2 => {
            // A DaemonSet selecting Spot nodes: capacity type varies per offering.
            p.requests = Resources::new(150, 100 * MI, 1);
            p.node_selector = labels(&[("karpenter.sh/capacity-type", "spot")]);
            p.tolerations = vec![tol_exists("", None)];
        }
        _ => {
            p.requests = Resources::new(300, 512 * MI, 1);
            p.required_node_terms = vec![vec![req(
                "karpenter.k8s.aws/instance-gpu-count",
                Operator::Exists,
                &[],
            )]];
            p.tolerations = vec![tol_exists(GPU_NVIDIA, Some(TaintEffect::NoSchedule))];
        }
    }
    p
}

fn tolerations_from(bits: u8) -> Vec<Toleration> {
    let mut t = Vec::new();
    if bits & 1 != 0 {
        t.push(tol_exists(GPU_NVIDIA, None));
    }
    if bits & 2 != 0 {
        t.push(Toleration {
            key: "dedicated".into(),
            exists: false,
            value: "batch".into(),
            effect: Some(TaintEffect::NoExecute),
        });
    }
    if bits & 4 != 0 {
        // Wrong value: tolerates nothing.
        t.push(Toleration {
            key: "dedicated".into(),
            exists: false,
            value: "web".into(),
            effect: None,
        });
    }
    if bits & 0x38 == 0x38 {
        t.push(tol_exists("", None));
    }
    t
}

fn group_namespace(g: &GroupGen) -> &'static str {
    if g.other_namespace {
        "team-b"
    } else {
        "default"
    }
}

/// Applies group `gi`'s label, namespace, selector and constraint to `p`.
fn apply_group(p: &mut Pod, gi: usize, g: &GroupGen) {
    let app = format!("g{gi}");
    p.namespace = group_namespace(g).into();
    p.labels = labels(&[("app", &app)]);
    p.node_selector = g
        .selector
        .map(|s| labels(&[SELECTOR_CHOICES[s]]))
        .unwrap_or_default();
    p.required_node_terms.clear();
    p.preferred_node_terms.clear();
    match g.kind {
        1 => p.spread = vec![spread(ZONE, g.max_skew, &app, true)],
        2 => p.spread = vec![spread(HOSTNAME, g.max_skew, &app, true)],
        3 => p.anti_affinity = vec![term(HOSTNAME, &app)],
        4 => p.affinity = vec![term(ZONE, &app)],
        5 => p.anti_affinity = vec![term(ZONE, &app)],
        6 => p.spread = vec![spread(ZONE, g.max_skew, &app, false)],
        7 => p.affinity = vec![term(HOSTNAME, &app)],
        _ => {}
    }
}

fn build_world(g: &WorldGen) -> World {
    let cat = small_catalog();
    let pools: Vec<NodePool> = g
        .pools
        .iter()
        .enumerate()
        .map(|(i, p)| build_pool(i, p, &cat.zones))
        .collect();
    let mut w = World::new(cat, pools);
    w.max_launch_options = g.max_launch_options;
    w.daemonsets = (0..4).filter(|&i| g.daemonsets[i]).map(daemonset).collect();
    for &(ty, zone, spot, live) in &g.unavailable {
        let ct = if spot {
            CapacityType::Spot
        } else {
            CapacityType::OnDemand
        };
        // Expired entries (until <= NOW) must be ignored. One entry per offering: the
        // core keeps the last mark, so duplicates would make the two views differ.
        if w.unavailable
            .iter()
            .any(|&(t, z, c, _)| t == ty % cat.types.len() && z == zone && c == ct)
        {
            continue;
        }
        w.unavailable.push((
            ty % cat.types.len(),
            zone,
            ct,
            if live { 1000.0 } else { 50.0 },
        ));
    }
    for (ni, n) in g.nodes.iter().enumerate() {
        let bound: Vec<Pod> = n
            .bound
            .iter()
            .enumerate()
            .map(|(bi, &(cpu, mem, app, other_ns, anti))| {
                let mut p = pod(&format!("bound-{ni}-{bi}"), cpu, mem * MI);
                let name = match app {
                    4 => "web".to_string(),
                    5 => "solo".to_string(),
                    a => format!("g{a}"),
                };
                p.labels = labels(&[("app", &name)]);
                if app < 4 {
                    p.namespace = group_namespace(&g.groups[app as usize]).into();
                }
                if other_ns {
                    p.namespace = "elsewhere".into();
                }
                // Bound pods whose anti-affinity repels pending pods (the symmetric rule).
                // Zone-keyed ones repelling pods without zone constraints of their own
                // are left out: see `symmetric_zone_anti_affinity_of_bound_pod`.
                match anti {
                    1 => p.anti_affinity = vec![term(HOSTNAME, "web")],
                    2 => p.anti_affinity = vec![term(HOSTNAME, "g0")],
                    _ => {}
                }
                p
            })
            .collect();
        let ct = if n.spot {
            CapacityType::Spot
        } else {
            CapacityType::OnDemand
        };
        let pool = (!n.static_node).then_some(n.pool % w.pools.len());
        let idx = w.add_node(pool, n.ty % cat.types.len(), n.zone, ct, n.ready, bound);
        w.nodes[idx].schedulable = n.schedulable;
    }
    for (i, pg) in g.pods.iter().enumerate() {
        let mut p = pod(&format!("p{i:02}"), pg.cpu, pg.mem_mi * MI);
        if pg.gpu > 0 {
            p.requests.set_extended(GPU_NVIDIA, pg.gpu);
        }
        p.priority = pg.priority;
        p.tolerations = tolerations_from(pg.tolerations);
        p.node_selector = pg
            .selector
            .iter()
            .map(|&s| SELECTOR_CHOICES[s])
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        p.required_node_terms = pg.terms.clone();
        if !pg.preferred.is_empty() {
            p.preferred_node_terms = vec![(50, pg.preferred.clone())];
        }
        match pg.group {
            Some(gi) => apply_group(&mut p, gi, &g.groups[gi]),
            None => p.labels = labels(&[("app", if pg.web { "web" } else { "solo" })]),
        }
        w.pending.push(p);
    }
    w
}

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config(300))]

    /// Random pods, pools, existing nodes, DaemonSets and unavailable offerings: every
    /// decision passes the validator.
    #[test]
    fn random_decisions_are_valid(g in world_gen(25)) {
        let w = build_world(&g);
        let d = w.solve();
        if let Err(e) = validate(&w, &d) {
            return Err(TestCaseError::fail(format!("{e}\ndecision: {d:#?}")));
        }
    }
}

proptest! {
    #![proptest_config(proptest_config(200))]

    /// Topology-heavy: every pod in a group, small pods, no GPUs, so spread and
    /// (anti-)affinity decide most placements.
    #[test]
    fn random_topology_decisions_are_valid(mut g in world_gen(30)) {
        for (i, p) in g.pods.iter_mut().enumerate() {
            p.group = Some(p.group.unwrap_or(i % 4));
            p.gpu = 0;
            p.cpu = p.cpu / 8 + 50;
            p.mem_mi = p.mem_mi / 8 + 64;
        }
        let w = build_world(&g);
        let d = w.solve();
        if let Err(e) = validate(&w, &d) {
            return Err(TestCaseError::fail(format!("{e}\ndecision: {d:#?}")));
        }
    }
}

proptest! {
    #![proptest_config(proptest_config(200))]

    /// Consolidation's trials share one `NodeRooms` instead of rebuilding it: each trial
    /// closes some nodes and solves over the same nodes. Every decision must be the one
    /// a fresh `solve` makes, which also needs the rooms handed back exactly as they were
    /// (a later trial would see less room otherwise).
    #[test]
    fn decisions_reusing_rooms_equal_fresh_ones(
        g in world_gen(25),
        trials in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 5), 1..6),
        launching in any::<bool>(),
    ) {
        let w = build_world(&g);
        w.with_inputs(|env, snapshot| {
            let env = SolveEnv { use_launching_nodes: launching, ..*env };
            let mut rooms = NodeRooms::for_trials(&env, snapshot);
            let open: Vec<bool> = snapshot.nodes.iter().map(|n| n.schedulable).collect();
            for closed in &trials {
                for (node, &c) in snapshot.nodes.iter_mut().zip(closed) {
                    node.schedulable &= !c;
                }
                let fresh = solve(&env, snapshot);
                let reused = solve_reusing(&env, snapshot, &mut rooms);
                prop_assert_eq!(format!("{fresh:?}"), format!("{reused:?}"));
                for (node, &o) in snapshot.nodes.iter_mut().zip(&open) {
                    node.schedulable = o;
                }
            }
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(proptest_config(200))]

    /// The entry points that skip the reasons for pods left unplaced (the simulated
    /// kube-scheduler's, node-groups mode's) decide exactly what `solve` does.
    #[test]
    fn decisions_without_reasons_equal_solve(g in world_gen(25)) {
        let w = build_world(&g);
        w.with_inputs(|env, snapshot| {
            let launches = format!("{:?}", solve(env, snapshot).launches);
            prop_assert_eq!(launches, format!("{:?}", solve_launches(env, snapshot)));
            let existing_only = SolveEnv { allow_new_nodes: false, ..*env };
            prop_assert_eq!(
                solve(&existing_only, snapshot).existing,
                place_on_existing(env, snapshot)
            );
            Ok(())
        })?;
    }
}

/// `g`'s pods, each repeated `copies` times (replicas: alike but for their names).
fn with_replicas(g: &mut WorldGen, copies: &[usize]) {
    g.pods = g
        .pods
        .iter()
        .zip(copies.iter().cycle())
        .flat_map(|(p, &n)| std::iter::repeat_n(p.clone(), n))
        .collect();
}

/// Which pods a decision leaves unplaced: (index, reason) of the infeasible ones, and
/// the indices of the unschedulable ones (whose reason is the first of their class's).
fn unplaced(d: &Decision) -> (Vec<(usize, String)>, Vec<usize>) {
    let mut infeasible = d.infeasible.clone();
    infeasible.sort();
    let mut unschedulable: Vec<usize> = d.unschedulable.iter().map(|u| u.0).collect();
    unschedulable.sort();
    (infeasible, unschedulable)
}

proptest! {
    #![proptest_config(proptest_config(200))]

    /// Deciding pending pods by equivalence class (replicas share their requirement sets,
    /// and once one finds no place its class is not tried again) decides what deciding
    /// every pod by itself does: the same placements, launches and pods left unplaced.
    #[test]
    fn decisions_by_class_equal_decisions_pod_by_pod(
        mut g in world_gen(10),
        copies in proptest::collection::vec(1usize..6, 10),
        topology in any::<bool>(),
    ) {
        if topology {
            for (i, p) in g.pods.iter_mut().enumerate() {
                p.group = Some(p.group.unwrap_or(i % 4));
            }
        }
        with_replicas(&mut g, &copies);
        let w = build_world(&g);
        w.with_inputs(|env, snapshot| {
            let by_class = solve(env, snapshot);
            let alone = solve_unclassified(env, snapshot);
            prop_assert_eq!(&by_class.existing, &alone.existing);
            prop_assert_eq!(format!("{:?}", by_class.launches), format!("{:?}", alone.launches));
            prop_assert_eq!(unplaced(&by_class), unplaced(&alone));
            let singles = PodClasses::alone(snapshot.pending.len());
            prop_assert_eq!(
                place_on_existing(env, snapshot),
                place_on_existing_classified(env, snapshot, singles)
            );
            Ok(())
        })?;
    }
}

/// Replicas (same owner, labels, requests and constraints, other names) share a class;
/// a pod differing in its labels (what others' selectors read), its requests or its
/// tolerations does not; a registry gives one id per class however often it is asked.
#[test]
fn replicas_share_a_class_and_any_difference_a_decision_reads_splits_it() {
    let replica = |name: &str| {
        let mut p = pod(name, 500, 512 * MI);
        p.labels.insert("app".into(), "web".into());
        p
    };
    let (a, b) = (replica("web-1"), replica("web-2"));
    assert!(same_class(&a, &b));
    let mut relabelled = replica("web-3");
    relabelled.labels.insert("tier".into(), "front".into());
    let bigger = Pod {
        requests: Resources::new(1000, 512 * MI, 1),
        ..replica("web-4")
    };
    let mut tolerant = replica("web-5");
    tolerant.tolerations = tolerations_from(1);
    for other in [&relabelled, &bigger, &tolerant] {
        assert!(!same_class(&a, other), "{other:?}");
    }
    let pending = [&a, &relabelled, &b, &bigger];
    assert_eq!(PodClasses::of(&pending).of, vec![0, 1, 0, 2]);
    let mut registry = ClassRegistry::default();
    let ids: Vec<u32> = [&a, &bigger, &b, &a]
        .iter()
        .map(|p| registry.class_of(p))
        .collect();
    assert_eq!(ids, vec![0, 1, 0, 0]);
    assert_eq!(PodClasses::from_ids([7, 3, 7]).of, vec![0, 1, 0]);
}

/// Ten replicas that only a pool at its limit could take: the first gets the pool's one
/// node, the other nine are unschedulable (one tried, the rest of the class told the
/// same), and a smaller pod after them still gets a node of the other pool: a class's
/// failure says nothing of other classes.
#[test]
fn a_class_without_a_place_is_refused_whole_and_other_classes_still_placed() {
    let cat = full_catalog();
    let big_pool = one_node_of_four_cpus();
    let small_pool = pool(
        "two-cpu",
        vec![req(INSTANCE_TYPE, Operator::In, &["t3.medium"])],
    );
    let mut w = World::new(cat, vec![big_pool, small_pool]);
    for i in 0..10 {
        w.pending.push(pod(&format!("big-{i}"), 3500, GI));
    }
    w.pending.push(pod("small", 500, GI));
    let d = w.solve();
    assert_valid(&w, &d);
    assert_eq!(unplaced(&d).1, (1..10).collect::<Vec<_>>(), "{d:#?}");
    let launched: Vec<(usize, Vec<usize>)> = d
        .launches
        .iter()
        .map(|l| (l.pool, l.pods.clone()))
        .collect();
    assert_eq!(launched, vec![(0, vec![0]), (1, vec![10])]);
    assert_eq!(
        format!("{d:?}"),
        format!("{:?}", w.with_inputs(|e, s| solve_unclassified(e, s)))
    );
}

// ---------------------------------------------------------------------------------------
// Core bugs found by the validator (minimal reproductions)

/// A DaemonSet that selects Spot nodes runs on every Spot node the pool launches, so its
/// requests must be reserved there. The core's `daemon_overhead` looks the capacity-type
/// key up in pool and instance-type labels only, finds nothing, and reserves nothing:
/// here it launches an m5.xlarge Spot node (3920m allocatable) for a 3800m pod although
/// the 500m DaemonSet also lands on it.
#[test]
fn daemonset_selecting_capacity_type_is_reserved() {
    let cat = small_catalog();
    let mut w = World::new(
        cat,
        vec![pool(
            "spot",
            vec![
                req(INSTANCE_TYPE, Operator::In, &["m5.xlarge"]),
                req(CT, Operator::In, &["spot"]),
            ],
        )],
    );
    let mut ds = pod("spot-agent", 500, 64 * MI);
    ds.node_selector = labels(&[(CT, "spot")]);
    w.daemonsets.push(ds);
    w.pending.push(pod("big", 3800, GI));
    let d = w.solve();
    assert_valid(&w, &d);
    assert!(d.launches.is_empty(), "{d:#?}");
}

/// Kubernetes' symmetric rule: a pod may not land in a zone where an already placed pod
/// has a zone anti-affinity term selecting it. The core only pins a new node's zone when
/// the pending pod itself has a zone constraint, so the `web` pod below (no constraint
/// of its own) gets a launch whose options include us-east-1b, the repelling pod's zone.
#[test]
fn symmetric_zone_anti_affinity_of_bound_pod() {
    let cat = small_catalog();
    let mut w = World::new(cat, vec![pool("default", Vec::new())]);
    let mut db = pod("db", 100, 64 * MI);
    db.labels = labels(&[("app", "db")]);
    db.anti_affinity = vec![term(ZONE, "web")];
    w.add_node(
        Some(0),
        type_index(cat, "m5.large"),
        1,
        CapacityType::OnDemand,
        true,
        vec![db],
    );
    let mut web = pod("web", 4000, GI);
    web.labels = labels(&[("app", "web")]);
    w.pending.push(web);
    let d = w.solve();
    assert_valid(&w, &d);
    assert!(
        d.launches
            .iter()
            .all(|l| l.options.iter().all(|o| o.zone != 1)),
        "{d:#?}"
    );
}

/// `finish` decides "Spot only" from every type compatible with the claim's pods
/// (`Claim::compatible`, small ones included) but builds the options from the types big
/// enough for them (`Claim::types`). When the Spot offerings of the big-enough types are
/// unavailable and a too-small type still has Spot, every on-demand option is filtered out
/// and the launch has no options at all. Expected: on-demand r6g.2xlarge options.
#[test]
fn launch_has_options_when_spot_of_fitting_types_is_unavailable() {
    let cat = small_catalog();
    let mut w = World::new(
        cat,
        vec![pool(
            "graviton",
            vec![req(
                INSTANCE_TYPE,
                Operator::In,
                &["r6g.large", "r6g.2xlarge"],
            )],
        )],
    );
    let big = type_index(cat, "r6g.2xlarge");
    for z in 0..cat.zones.len() {
        w.unavailable.push((big, z, CapacityType::Spot, 1000.0));
    }
    w.pending.push(pod("p", 4000, GI));
    let d = w.solve();
    assert_eq!(d.launches.len(), 1, "{d:#?}");
    assert!(!d.launches[0].options.is_empty(), "{d:#?}");
    assert!(d.launches[0]
        .options
        .iter()
        .all(|o| o.capacity_type == CapacityType::OnDemand && o.instance_type == big));
    assert_valid(&w, &d);
}

/// Pool limits count the other new nodes of the decision at the capacity of the first
/// type left in their claim (`pool_usage_with_claims` uses `types.first()`, catalog
/// order), not at the type their launch will actually buy. Here c5.2xlarge Spot is
/// unavailable, so both launches buy m5.2xlarge Spot (32Gi each), but the second claim
/// counted the first one as a c5.2xlarge (16Gi): 64Gi of memory for a 48Gi limit.
#[test]
fn pool_limit_counts_launches_at_their_first_option() {
    let cat = small_catalog();
    let mut p = pool(
        "limited",
        vec![req(
            INSTANCE_TYPE,
            Operator::In,
            &["c5.2xlarge", "m5.2xlarge"],
        )],
    );
    p.limits.memory = Some(48 * GI);
    let mut w = World::new(cat, vec![p]);
    let c5 = type_index(cat, "c5.2xlarge");
    for z in 0..cat.zones.len() {
        w.unavailable.push((c5, z, CapacityType::Spot, 1000.0));
    }
    w.pending.push(pod("a", 4500, GI));
    w.pending.push(pod("b", 4500, GI));
    let d = w.solve();
    assert_valid(&w, &d);
}

/// The issue's case: a pool with limits (almost every production pool has them) still
/// gets the cheapest mix. Ten 1 CPU / 1 GiB pods over the nine on-demand types of the
/// real-cluster run go on a c5.2xlarge and a c5.xlarge ($0.51/h), not one m5.4xlarge
/// ($0.768/h).
#[test]
fn a_pool_with_limits_still_gets_the_cheapest_mix() {
    let cat = full_catalog();
    let types = [
        "m5.large",
        "m5.xlarge",
        "m5.2xlarge",
        "m5.4xlarge",
        "c5.xlarge",
        "c5.2xlarge",
        "r5.large",
        "r5.xlarge",
        "r5.2xlarge",
    ];
    let mut p = pool(
        "limited",
        vec![
            req(INSTANCE_TYPE, Operator::In, &types),
            req(CT, Operator::In, &["on-demand"]),
            req(ZONE, Operator::In, &["us-east-1a"]),
        ],
    );
    p.limits.cpu_milli = Some(1_000_000);
    let mut w = World::new(cat, vec![p]);
    for i in 0..10 {
        w.pending.push(pod(&format!("p{i}"), 1000, GI));
    }
    let d = w.solve();
    assert_valid(&w, &d);
    let mut bought: Vec<&str> = d
        .launches
        .iter()
        .map(|l| cat.types[l.options[0].instance_type].name.as_str())
        .collect();
    bought.sort();
    let cost: f64 = d.launches.iter().map(|l| l.options[0].price_per_hour).sum();
    assert_eq!(bought, ["c5.2xlarge", "c5.xlarge"], "${cost:.3}/h");
    assert!((cost - 0.51).abs() < 1e-6, "${cost}/h");
    // Each launch still carries its fallbacks, cheapest first.
    assert!(d.launches.iter().all(|l| l.options.len() > 1));
}

/// A new node's spare room is worth what the running workload would pay for it
/// (`core::workload_mix`). Twelve pending 1 CPU / 2 GiB pods alone go six to a
/// c6gd.2xlarge, the cheapest for that shape. Beside a workload of 0.5 CPU / 1 GiB pods,
/// they go one to a t3a.medium: 12% dearer now, but each node keeps room for one of the
/// workload's pods, where a c6gd.2xlarge keeps room for one in six. Jobs' pods end by
/// themselves, so a batch of them is packed alone either way, with each node priced for
/// as long as its pods hold it (`mix::held_factor`): one to a t3a.medium too, but for
/// that reason (a c6gd.2xlarge would be kept until the last of its six ends), and the
/// same beside the workload or not.
/// A Spot pool of `types` in us-east-1a only.
fn one_zone_spot_pool(types: &[&str]) -> NodePool {
    pool(
        "spot",
        vec![
            req(INSTANCE_TYPE, Operator::In, types),
            req(CT, Operator::In, &["spot"]),
            req(ZONE, Operator::In, &["us-east-1a"]),
        ],
    )
}

/// The types a decision for `w` launches (each launch's first option), sorted.
fn launched_types(w: &World) -> Vec<&'static str> {
    let d = w.solve();
    assert_valid(w, &d);
    let mut names: Vec<&str> = d
        .launches
        .iter()
        .map(|l| w.catalog.types[l.options[0].instance_type].name.as_str())
        .collect();
    names.sort();
    names
}

#[test]
fn a_batch_is_packed_for_the_room_the_running_workload_will_take() {
    let cat = full_catalog();
    let spot_pool = || one_zone_spot_pool(&["t3a.medium", "c6gd.2xlarge"]);
    let bought = |w: &World| {
        let mut names = launched_types(w);
        let launches = names.len();
        names.dedup();
        (names, launches)
    };
    let api = |i: usize| pod(&format!("api-{i}"), 1000, 2 * GI);
    let mut alone = World::new(cat, vec![spot_pool()]);
    alone.pending.extend((0..12).map(api));
    assert_eq!(bought(&alone), (vec!["c6gd.2xlarge"], 2));

    let mut beside = World::new(cat, vec![spot_pool()]);
    let t3a = type_index(cat, "t3a.medium");
    for n in 0..4 {
        let web = (0..3)
            .map(|i| pod(&format!("web-{n}-{i}"), 500, GI))
            .collect();
        beside.add_node(Some(0), t3a, 0, CapacityType::Spot, true, web);
    }
    beside.pending.extend((0..12).map(api));
    assert_eq!(bought(&beside), (vec!["t3a.medium"], 12));

    let mut jobs = beside.clone();
    for p in &mut jobs.pending {
        p.owner = Some(stevedore::core::pod::OwnerRef {
            kind: "Job".into(),
            name: "render".into(),
        });
    }
    assert_eq!(bought(&jobs), (vec!["t3a.medium"], 12));
    let mut jobs_alone = alone.clone();
    jobs_alone.pending = jobs.pending.clone();
    assert_eq!(bought(&jobs_alone), (vec!["t3a.medium"], 12));
}

/// The limit is still a limit: a repack that would need more capacity than the pool has
/// left keeps the decision within it.
#[test]
fn a_repack_never_takes_a_pool_over_its_limits() {
    let cat = full_catalog();
    let mut p = pool(
        "limited",
        vec![
            req(
                INSTANCE_TYPE,
                Operator::In,
                &["c5.xlarge", "c5.2xlarge", "m5.4xlarge"],
            ),
            req(CT, Operator::In, &["on-demand"]),
        ],
    );
    p.limits.cpu_milli = Some(16_000);
    let mut w = World::new(cat, vec![p]);
    for i in 0..10 {
        w.pending.push(pod(&format!("p{i}"), 1000, GI));
    }
    let d = w.solve();
    assert_valid(&w, &d);
    let cpu: i64 = d
        .launches
        .iter()
        .map(|l| cat.types[l.options[0].instance_type].capacity.cpu_milli)
        .sum();
    assert!(cpu <= 16_000, "{cpu}m launched");
}

// ---------------------------------------------------------------------------------------
// Targeted behaviour

fn general_pool() -> NodePool {
    pool("general", vec![req(CATEGORY, Operator::NotIn, &["g", "p"])])
}

fn zone_of(w: &World, l: &stevedore::core::scheduler::LaunchPlan) -> BTreeSet<String> {
    l.options
        .iter()
        .map(|o| w.catalog.zones[o.zone].clone())
        .collect()
}

#[test]
fn existing_node_with_room_is_used_before_a_new_one() {
    let cat = full_catalog();
    let mut w = World::new(cat, vec![general_pool()]);
    w.add_node(
        Some(0),
        type_index(cat, "m5.xlarge"),
        0,
        CapacityType::OnDemand,
        true,
        vec![pod("old", 500, GI)],
    );
    w.pending.push(pod("new", 1000, 2 * GI));
    let d = w.solve();
    assert_valid(&w, &d);
    assert_eq!(d.existing, vec![(0, 0)]);
    assert!(d.launches.is_empty());
}

#[test]
fn pod_fitting_a_launching_node_causes_no_second_launch() {
    let cat = full_catalog();
    let mut w = World::new(cat, vec![general_pool()]);
    w.add_node(
        Some(0),
        type_index(cat, "m5.2xlarge"),
        1,
        CapacityType::Spot,
        false,
        vec![pod("nominated", 2000, 4 * GI)],
    );
    w.pending.push(pod("next", 3000, 4 * GI));
    let d = w.solve();
    assert_valid(&w, &d);
    assert_eq!(d.existing, vec![(0, 0)]);
    assert!(d.launches.is_empty());
}

/// A pool of m5.xlarge nodes whose cpu limit allows one.
fn one_node_of_four_cpus() -> NodePool {
    let mut p = pool(
        "four-cpu",
        vec![req(INSTANCE_TYPE, Operator::In, &["m5.xlarge"])],
    );
    p.limits.cpu_milli = Some(4000);
    p
}

#[test]
fn higher_priority_pods_win_when_the_pool_limit_is_short() {
    let cat = full_catalog();
    let mut w = World::new(cat, vec![one_node_of_four_cpus()]);
    // The low-priority pod is bigger and listed first: size order alone would pick it.
    w.pending.push(pod("low", 3500, GI));
    let mut high = pod("high", 3000, GI);
    high.priority = 1000;
    w.pending.push(high);
    let d = w.solve();
    assert_valid(&w, &d);
    assert_eq!(d.launches.len(), 1, "{d:#?}");
    assert_eq!(d.launches[0].pods, vec![1]);
    assert_eq!(
        d.unschedulable.iter().map(|u| u.0).collect::<Vec<_>>(),
        vec![0]
    );
}

#[test]
fn highest_weight_pool_that_fits_wins() {
    let cat = full_catalog();
    let mut memory = pool(
        "memory",
        vec![
            req(CATEGORY, Operator::In, &["r"]),
            req(ARCH, Operator::In, &["amd64"]),
        ],
    );
    memory.weight = 10;
    let mut w = World::new(cat, vec![general_pool(), memory]);
    w.pending.push(pod("a", 1000, GI));
    let mut arm = pod("arm", 1000, GI);
    arm.node_selector = labels(&[(ARCH, "arm64")]);
    w.pending.push(arm);
    let d = w.solve();
    assert_valid(&w, &d);
    let pool_of = |i: usize| {
        d.launches
            .iter()
            .find(|l| l.pods.contains(&i))
            .map(|l| l.pool)
    };
    assert_eq!(
        pool_of(0),
        Some(1),
        "the weight-10 pool takes the pod it can hold"
    );
    assert_eq!(
        pool_of(1),
        Some(0),
        "an arm64 pod falls back to the general pool"
    );
}

#[test]
fn gpu_pods_land_only_on_the_gpu_pool_and_plain_pods_never_do() {
    let cat = full_catalog();
    let mut gpu = pool("gpu", vec![req(CATEGORY, Operator::In, &["g"])]);
    gpu.taints = vec![gpu_taint()];
    gpu.weight = 50;
    let mut w = World::new(cat, vec![general_pool(), gpu]);
    let mut train = pod("train", 2000, 8 * GI);
    train.requests.set_extended(GPU_NVIDIA, 2);
    train.tolerations = vec![tol_exists(GPU_NVIDIA, Some(TaintEffect::NoSchedule))];
    w.pending.push(train);
    w.pending.push(pod("web", 1000, GI));
    let d = w.solve();
    assert_valid(&w, &d);
    for l in &d.launches {
        if l.pods.contains(&0) {
            assert_eq!(l.pool, 1);
            assert!(l
                .options
                .iter()
                .all(|o| cat.types[o.instance_type].allocatable.extended(GPU_NVIDIA) >= 2));
        }
        if l.pods.contains(&1) {
            assert_eq!(l.pool, 0);
        }
    }
    assert_eq!(d.launches.iter().map(|l| l.pods.len()).sum::<usize>(), 2);
}

#[test]
fn a_pod_needing_ten_thousand_cpus_is_infeasible_with_a_reason() {
    let cat = full_catalog();
    let mut w = World::new(cat, vec![general_pool()]);
    w.pending.push(pod("huge", 10_000_000, GI));
    let d = w.solve();
    assert_valid(&w, &d);
    assert_eq!(d.infeasible.len(), 1);
    assert_eq!(d.infeasible[0].0, 0);
    assert!(d.infeasible[0].1.contains("general"), "{:?}", d.infeasible);
    assert!(d.launches.is_empty());
}

#[test]
fn hostname_anti_affinity_gives_one_node_per_replica() {
    let cat = full_catalog();
    let mut w = World::new(cat, vec![general_pool()]);
    for i in 0..5 {
        let mut p = pod(&format!("r{i}"), 200, 256 * MI);
        p.labels = labels(&[("app", "db")]);
        p.anti_affinity = vec![term(HOSTNAME, "db")];
        w.pending.push(p);
    }
    let d = w.solve();
    assert_valid(&w, &d);
    assert_eq!(d.launches.len(), 5, "{d:#?}");
    assert!(d.launches.iter().all(|l| l.pods.len() == 1));
}

#[test]
fn zone_spread_puts_two_of_six_replicas_in_each_zone() {
    let cat = full_catalog();
    let mut w = World::new(cat, vec![general_pool()]);
    for i in 0..6 {
        let mut p = pod(&format!("r{i}"), 500, GI);
        p.labels = labels(&[("app", "web")]);
        p.spread = vec![spread(ZONE, 1, "web", true)];
        w.pending.push(p);
    }
    let d = w.solve();
    assert_valid(&w, &d);
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for l in &d.launches {
        let zones = zone_of(&w, l);
        assert_eq!(
            zones.len(),
            1,
            "a spread pod's node must be pinned to one zone"
        );
        *per_zone
            .entry(zones.into_iter().next().unwrap())
            .or_default() += l.pods.len();
    }
    assert_eq!(per_zone.len(), 3, "{per_zone:?}");
    assert!(per_zone.values().all(|&n| n == 2), "{per_zone:?}");
}

#[test]
fn spot_is_chosen_when_allowed_and_on_demand_when_spot_is_unavailable() {
    let cat = full_catalog();
    let mut w = World::new(cat, vec![general_pool()]);
    w.pending.push(pod("p", 1000, 2 * GI));
    let d = w.solve();
    assert_valid(&w, &d);
    assert_eq!(d.launches.len(), 1);
    assert!(d.launches[0]
        .options
        .iter()
        .all(|o| o.capacity_type == CapacityType::Spot));

    for (ti, t) in cat.types.iter().enumerate() {
        for o in t
            .offerings
            .iter()
            .filter(|o| o.capacity_type == CapacityType::Spot)
        {
            w.unavailable.push((ti, o.zone, CapacityType::Spot, 1000.0));
        }
    }
    let d = w.solve();
    assert_valid(&w, &d);
    assert_eq!(d.launches.len(), 1);
    assert!(!d.launches[0].options.is_empty());
    assert!(d.launches[0]
        .options
        .iter()
        .all(|o| o.capacity_type == CapacityType::OnDemand));
}

#[test]
fn launch_options_are_capped_at_sixty_and_cheapest_first() {
    let cat = full_catalog();
    let mut w = World::new(cat, vec![pool("any", Vec::new())]);
    w.pending.push(pod("small", 100, 128 * MI));
    let d = w.solve();
    assert_valid(&w, &d);
    let opts = &d.launches[0].options;
    assert!(opts.len() > 1 && opts.len() <= 60, "{}", opts.len());
    // Nothing outside the list is cheaper than its last entry (with the same capacity type).
    let last = opts.last().unwrap().price_per_hour;
    let ct = opts[0].capacity_type;
    let cheaper_elsewhere = cat.types.iter().enumerate().any(|(ti, t)| {
        t.offerings.iter().any(|o| {
            o.capacity_type == ct
                && o.price_per_hour < last
                && !opts
                    .iter()
                    .any(|x| x.instance_type == ti && x.zone == o.zone)
                && fits(&pod("small", 100, 128 * MI).requests, &t.allocatable).is_ok()
        })
    });
    assert!(!cheaper_elsewhere);
}

#[test]
fn preferred_node_affinity_is_honoured_when_possible_and_relaxed_when_not() {
    let cat = full_catalog();
    let mut w = World::new(cat, vec![general_pool()]);
    let mut p = pod("likes-arm", 1000, GI);
    p.preferred_node_terms = vec![(50, vec![req(ARCH, Operator::In, &["arm64"])])];
    w.pending.push(p.clone());
    let d = w.solve();
    assert_valid(&w, &d);
    assert!(d.launches[0]
        .options
        .iter()
        .all(|o| cat.types[o.instance_type]
            .labels
            .get(ARCH)
            .map(String::as_str)
            == Some("arm64")));

    let mut w = World::new(
        cat,
        vec![pool("x86", vec![req(ARCH, Operator::In, &["amd64"])])],
    );
    w.pending.push(p);
    let d = w.solve();
    assert_valid(&w, &d);
    assert_eq!(
        d.launches.len(),
        1,
        "the preference is dropped when nothing honours it"
    );
    assert!(d.launches[0]
        .options
        .iter()
        .all(|o| cat.types[o.instance_type]
            .labels
            .get(ARCH)
            .map(String::as_str)
            == Some("amd64")));
}

#[test]
fn daemonset_overhead_is_reserved_on_new_nodes() {
    let cat = full_catalog();
    let small = type_index(cat, "m5.large");
    let mut w = World::new(
        cat,
        vec![pool(
            "two",
            vec![req(INSTANCE_TYPE, Operator::In, &["m5.large", "m5.xlarge"])],
        )],
    );
    let mut ds = pod("agent", 200, 128 * MI);
    ds.tolerations = vec![tol_exists("", None)];
    w.daemonsets.push(ds);
    // Fits m5.large's allocatable, but not once the DaemonSet is reserved.
    let alloc = cat.types[small].allocatable.cpu_milli;
    w.pending.push(pod("tight", alloc - 100, GI));
    let d = w.solve();
    assert_valid(&w, &d);
    assert_eq!(d.launches.len(), 1);
    assert!(!d.launches[0].options.is_empty());
    assert!(
        d.launches[0]
            .options
            .iter()
            .all(|o| o.instance_type != small),
        "{:?}",
        d.launches[0].options
    );
}

/// A node is paid until the last of its pods ends, and Jobs' pods end at different
/// times: two pods of a Job go on two c6gd.large, each released when its pod ends, rather
/// than on one c6gd.xlarge, 8% cheaper by the hour but kept until the later pod ends
/// (`mix::held_factor`: 13% longer than their mean run). The same pods of a
/// StatefulSet, which do not end, share the one node.
#[test]
fn jobs_pods_go_on_nodes_that_release_capacity_as_they_end() {
    let cat = full_catalog();
    let p = one_zone_spot_pool(&["c6gd.large", "c6gd.xlarge"]);
    let price = |name: &str| {
        cat.types[type_index(cat, name)]
            .offerings
            .iter()
            .filter(|o| o.capacity_type == CapacityType::Spot && cat.zones[o.zone] == "us-east-1a")
            .map(|o| o.price_per_hour)
            .fold(f64::INFINITY, f64::min)
    };
    // By the hour, one large node is the cheaper, by less than its pods' spread.
    let (large, xlarge) = (price("c6gd.large"), price("c6gd.xlarge"));
    assert!(
        2.0 * large > xlarge && 2.0 * large < xlarge * mix::held_factor(2),
        "{large} {xlarge}"
    );
    let bought = |kind: &str| {
        let mut w = World::new(cat, vec![p.clone()]);
        w.pending.extend((0..2).map(|i| Pod {
            owner: Some(stevedore::core::pod::OwnerRef {
                kind: kind.into(),
                name: "batch".into(),
            }),
            ..pod(&format!("batch-{i}"), 1000, 2 * GI)
        }));
        launched_types(&w)
    };
    assert_eq!(bought("StatefulSet"), vec!["c6gd.xlarge"]);
    assert_eq!(bought("Job"), vec!["c6gd.large", "c6gd.large"]);
}
