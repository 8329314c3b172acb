//! Provisioning, pure: the indexes and the decision inputs in, NodeClaims to create and
//! what to tell each pod out. The same `core::scheduler::solve` the simulator calls, on
//! a snapshot built the way the simulator builds its own.

use crate::cloud::{LaunchRequest, Offering};
use crate::cluster::convert::taint_spec;
use crate::cluster::crd::{
    ClaimOption, ClaimResources, NodeClaim, NodeClaimSpec, RequirementSpec, POOL_HASH_ANNOTATION,
    REPLACES_ANNOTATION, TERMINATION_FINALIZER,
};
use crate::cluster::state::{ClusterState, DecisionInputs, Prepared, Target};
use crate::config::NodePoolExtras;
use crate::core::headroom;
use crate::core::instance::Catalog;
use crate::core::labels;
use crate::core::nodepool::NodePool;
use crate::core::pod::Pod as CorePod;
use crate::core::scheduler::{self, Decision, LaunchOption, LaunchPlan, SolveEnv};
use crate::core::unavailable::UnavailableOfferings;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// A NodeClaim to create and the launch to make for it.
#[derive(Clone, Debug)]
pub struct NewClaim {
    pub object: NodeClaim,
    pub request: LaunchRequest,
    /// (namespace, name) of the pods it is for.
    pub pods: Vec<(String, String)>,
}

impl NewClaim {
    pub fn name(&self) -> &str {
        &self.request.node_claim
    }

    /// "c7i.xlarge spot in us-east-1a" (the cheapest option).
    pub fn summary(&self) -> String {
        self.request.options.first().map_or_else(String::new, |o| {
            format!(
                "{} {} in {}",
                o.instance_type,
                o.capacity_type.as_str(),
                o.zone
            )
        })
    }
}

/// What one decision asks for.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub claims: Vec<NewClaim>,
    /// (namespace, name, message) per pod: nominated, or why it cannot be scheduled.
    pub pod_messages: Vec<(String, String, String, bool)>,
    /// Pods considered (the batch).
    pub pending: usize,
    /// Some pool's free room was short of its `spec.headroom` spare: a trigger of its own
    /// (metric reason `headroom`), even with no pod pending.
    pub headroom: bool,
}

/// Everything a decision is made with besides the indexes.
pub struct Decider<'a> {
    pub catalog: &'a Catalog,
    pub pools: &'a [NodePool],
    pub extras: &'a [NodePoolExtras],
    pub model: &'a crate::core::model::SchedulingModel,
    /// `template_hash` of each of `pools`.
    pub pool_hashes: &'a [u64],
    pub unavailable: &'a UnavailableOfferings,
    pub max_launch_options: usize,
    pub now: f64,
}

impl<'a> Decider<'a> {
    pub fn inputs(&self) -> DecisionInputs<'a> {
        DecisionInputs {
            group_of: None,
            catalog: self.catalog,
            pools: self.pools,
            model: self.model,
        }
    }

    pub fn env(&self) -> SolveEnv<'a> {
        SolveEnv {
            catalog: self.catalog,
            pools: self.pools,
            model: self.model,
            unavailable: self.unavailable,
            now: self.now,
            max_launch_options: self.max_launch_options,
            pool_filter: None,
            allow_new_nodes: true,
            use_launching_nodes: true,
            split_claims: true,
            exclude_node: None,
        }
    }
}

/// Runs the core on the indexes. `names` yields a fresh NodeClaim name per launch.
/// The pools' headroom placeholders join the pending pods, after them (lowest priority):
/// launches make room for them, and they never take room from a real pod. They exist only
/// in this decision, so nothing in the cluster ever waits on or is evicted for them.
pub fn plan(state: &ClusterState, d: &Decider, names: &mut dyn FnMut(&str) -> String) -> Plan {
    let mut prepared = state.prepare(&d.inputs());
    // Pods a drain is about to evict are decided as pending (see `Prepared::draining`).
    let draining = std::mem::take(&mut prepared.draining);
    prepared.pending.extend(draining);
    let (placeholders, short) = headroom_placeholders(&prepared, d);
    if prepared.pending.is_empty() && !short {
        return Plan::default();
    }
    let decision = {
        let mut snapshot = prepared.snapshot_taking_bound();
        snapshot.pending.extend(placeholders.iter());
        scheduler::solve(&d.env(), &snapshot)
    };
    Plan {
        headroom: short,
        ..plan_from(&prepared, &decision, d, names)
    }
}

/// Pool `p`'s headroom policy, if it has one.
fn headroom_policy<'a>(d: &Decider<'a>, p: usize) -> Option<&'a headroom::HeadroomPolicy> {
    let name = &d.pools[p].name;
    d.extras.iter().find(|e| &e.name == name)?.headroom.as_ref()
}

/// Pool `p`'s usage over its nodes and launching claims that stay (not being disrupted,
/// nor in `leaving`); requests include DaemonSet pods, as the nodes' free room does.
fn pool_usage(prepared: &Prepared, p: usize, leaving: &[usize]) -> headroom::PoolUsage {
    let mut usage = headroom::PoolUsage::default();
    for (i, n) in prepared.nodes.iter().enumerate() {
        if n.pool == Some(p) && n.schedulable && !leaving.contains(&i) {
            usage.allocatable.add(&n.allocatable);
            usage.requested.add(&n.requested);
        }
    }
    usage
}

/// Every headroom pool's plan over its current usage.
fn headroom_plans(prepared: &Prepared, d: &Decider) -> Vec<headroom::HeadroomPlan> {
    (0..d.pools.len())
        .filter_map(|p| {
            let policy = headroom_policy(d, p)?;
            Some(headroom::plan(
                policy,
                &d.pools[p],
                &pool_usage(prepared, p, &[]),
            ))
        })
        .collect()
}

/// Every headroom pool's placeholders, and whether some pool's free room is short of its
/// spare.
pub fn headroom_placeholders(prepared: &Prepared, d: &Decider) -> (Vec<CorePod>, bool) {
    let plans = headroom_plans(prepared, d);
    let short = plans.iter().any(headroom::HeadroomPlan::needs_capacity);
    (
        plans.into_iter().flat_map(|p| p.placeholders).collect(),
        short,
    )
}

/// Room consolidation keeps for the pools' spare, on top of the recent peak demand (as
/// the simulator; cluster-wide like `keep` itself).
pub fn headroom_keep(prepared: &Prepared, d: &Decider) -> crate::core::resources::Resources {
    let mut keep = crate::core::resources::Resources::default();
    for plan in headroom_plans(prepared, d) {
        keep.cpu_milli += plan.spare.cpu_milli;
        keep.memory += plan.spare.memory;
    }
    keep
}

/// The empty nodes (snapshot indices) that may go without leaving their pool short of
/// its headroom spare: in order, each goes if its pool still holds the spare without it
/// and those going before it.
pub fn keep_headroom(prepared: &Prepared, d: &Decider, empty: Vec<usize>) -> Vec<usize> {
    let mut leaving = Vec::new();
    for n in empty {
        let Some(p) = prepared.nodes[n].pool else {
            leaving.push(n);
            continue;
        };
        let Some(policy) = headroom_policy(d, p) else {
            leaving.push(n);
            continue;
        };
        let mut without = leaving.clone();
        without.push(n);
        let usage = pool_usage(prepared, p, &without);
        if !headroom::plan(policy, &d.pools[p], &usage).needs_capacity() {
            leaving = without;
        }
    }
    leaving
}

fn plan_from(
    prepared: &Prepared,
    decision: &Decision,
    d: &Decider,
    names: &mut dyn FnMut(&str) -> String,
) -> Plan {
    // Indices past the real pending pods are headroom placeholders: no pod to tell, none
    // to name in a claim.
    let n_real = prepared.pending.len();
    let real = |i: &usize| *i < n_real;
    let pod_id = |i: usize| {
        let p = prepared.pending[i];
        (p.namespace.clone(), p.name.clone())
    };
    let mut out = Plan {
        pending: prepared.pending.len(),
        ..Default::default()
    };
    for plan in &decision.launches {
        let name = names(&d.pools[plan.pool].name);
        let claim = new_claim(d, plan, &name, None);
        let summary = claim.summary();
        for &i in plan.pods.iter().filter(|i| real(i)) {
            let (ns, n) = pod_id(i);
            out.pod_messages.push((
                ns,
                n,
                format!("nominated for new {summary} (NodeClaim {name})"),
                true,
            ));
        }
        out.claims.push(NewClaim {
            pods: plan
                .pods
                .iter()
                .filter(|i| real(i))
                .map(|&i| pod_id(i))
                .collect(),
            ..claim
        });
    }
    for &(i, node) in decision.existing.iter().filter(|(i, _)| real(i)) {
        let (ns, n) = pod_id(i);
        let target = match &prepared.nodes[node].target {
            Target::Node(name) => format!("node {name}"),
            Target::Claim(name) => format!("launching NodeClaim {name}"),
        };
        out.pod_messages
            .push((ns, n, format!("fits on {target}"), true));
    }
    for (i, why) in decision.infeasible.iter().chain(&decision.unschedulable) {
        if !real(i) {
            continue;
        }
        let (ns, n) = pod_id(*i);
        out.pod_messages
            .push((ns, n, format!("cannot schedule: {why}"), false));
    }
    out
}

/// An `In` requirement on `key` for `values`, sorted and without repeats.
fn in_requirement(key: &str, mut values: Vec<&str>) -> RequirementSpec {
    values.sort_unstable();
    values.dedup();
    RequirementSpec {
        key: key.into(),
        operator: "In".into(),
        values: values.into_iter().map(str::to_string).collect(),
        min_values: None,
    }
}

/// The distinct values of `of` over a plan's options, as catalog indices: a claim's 60
/// options name a handful of zones and capacity types, and indices compare without
/// reading the names.
fn distinct(options: &[LaunchOption], of: fn(&LaunchOption) -> usize) -> Vec<usize> {
    let mut v: Vec<usize> = options.iter().map(of).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// `In` requirements summarising a claim's options: their types, zones, capacity types.
fn option_requirements(catalog: &Catalog, options: &[LaunchOption]) -> Vec<RequirementSpec> {
    let types = distinct(options, |o| o.instance_type);
    let zones = distinct(options, |o| o.zone);
    let capacity_types: Vec<&str> = options.iter().map(|o| o.capacity_type.as_str()).collect();
    vec![
        in_requirement(
            labels::INSTANCE_TYPE,
            types
                .into_iter()
                .map(|t| catalog.types[t].name.as_str())
                .collect(),
        ),
        in_requirement(
            labels::ZONE,
            zones
                .into_iter()
                .map(|z| catalog.zones[z].as_str())
                .collect(),
        ),
        in_requirement(labels::KARPENTER_CAPACITY_TYPE, capacity_types),
    ]
}

/// A new claim's name, pool label, annotations (the pool's template hash, so a later
/// change of the pool shows as drift; what it replaces) and our finalizer. `hash` is
/// the pool's `template_hash`.
fn claim_metadata(pool: &NodePool, hash: u64, name: &str, replaces: Option<&str>) -> ObjectMeta {
    let mut meta_labels = BTreeMap::new();
    meta_labels.insert(labels::NODEPOOL.to_string(), pool.name.clone());
    let mut annotations = BTreeMap::new();
    annotations.insert(POOL_HASH_ANNOTATION.to_string(), format!("{hash:016x}"));
    if let Some(r) = replaces {
        annotations.insert(REPLACES_ANNOTATION.to_string(), r.to_string());
    }
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(meta_labels),
        annotations: Some(annotations),
        finalizers: Some(vec![TERMINATION_FINALIZER.to_string()]),
        ..Default::default()
    }
}

/// The NodeClaim (with its launch request) for a plan of the core.
pub fn new_claim(d: &Decider, plan: &LaunchPlan, name: &str, replaces: Option<&str>) -> NewClaim {
    let pool = &d.pools[plan.pool];
    let extras = d.extras.iter().find(|e| e.name == pool.name);
    let options: Vec<Offering> = plan
        .options
        .iter()
        .map(|o| Offering {
            instance_type: d.catalog.types[o.instance_type].name.clone(),
            zone: d.catalog.zones[o.zone].clone(),
            capacity_type: o.capacity_type,
            price_per_hour: o.price_per_hour,
        })
        .collect();
    let mut node_labels = pool.labels.clone();
    node_labels.insert(labels::NODEPOOL.into(), pool.name.clone());
    node_labels.insert(labels::KARPENTER_NODEPOOL.into(), pool.name.clone());
    let spec = NodeClaimSpec {
        node_pool: pool.name.clone(),
        requirements: option_requirements(d.catalog, &plan.options),
        resources: ClaimResources {
            requests: crate::cluster::convert::quantities(&plan.requested),
        },
        options: options
            .iter()
            .map(|o| ClaimOption {
                instance_type: o.instance_type.clone(),
                zone: o.zone.clone(),
                capacity_type: o.capacity_type.as_str().into(),
                price_per_hour: o.price_per_hour,
            })
            .collect(),
        labels: node_labels.clone(),
        taints: pool.taints.iter().map(taint_spec).collect(),
        startup_taints: pool.startup_taints.iter().map(taint_spec).collect(),
        termination_grace_period: extras
            .and_then(|e| e.termination_grace_period)
            .map(|g| humantime::format_duration(g).to_string()),
    };
    let object = NodeClaim {
        metadata: claim_metadata(pool, d.pool_hashes[plan.pool], name, replaces),
        spec,
        status: None,
    };
    NewClaim {
        request: LaunchRequest {
            node_claim: name.to_string(),
            node_pool: pool.name.clone(),
            options,
            labels: node_labels,
            taints: pool.taints.clone(),
            startup_taints: pool.startup_taints.clone(),
        },
        object,
        pods: Vec::new(),
    }
}

/// What the bounds are computed on, as the simulator computes it: the requests
/// (ephemeral storage left out) of every pod, bound or pending, that some pool could
/// hold; DaemonSet pods are per-node overhead, not demand.
#[derive(Clone, Debug, Default)]
pub struct BoundDemand {
    /// Their sum (the fluid bound's demand).
    pub total: crate::core::resources::Resources,
    /// Their requests with how many pods request exactly that (the shape bound's classes).
    pub classes: Vec<(crate::core::resources::Resources, u64)>,
    /// The same split by node constraints: (requests, index into `allowed`, pods).
    pub constrained: Vec<(crate::core::resources::Resources, usize, u64)>,
    /// Per distinct node constraints (tolerations, node selector, required node
    /// affinity), the offerings they allow (`scheduler::offerings_allowing`).
    pub allowed: Vec<Vec<bool>>,
}

/// The [`BoundDemand`] of the cluster. Feasibility is checked once per scheduling shape,
/// since replicas share one.
pub fn bound_demand(prepared: &Prepared, env: &SolveEnv) -> BoundDemand {
    use crate::core::resources::Resources;
    // Keyed by the fields feasibility reads, borrowed: no key is built per pod.
    let mut feasible: std::collections::HashMap<_, bool> = Default::default();
    let mut classes: std::collections::HashMap<Resources, u64> = Default::default();
    // Node constraints, borrowed, to their index in `allowed`.
    let mut constraint: std::collections::HashMap<_, usize> = Default::default();
    let mut allowed: Vec<Vec<bool>> = Vec::new();
    let mut constrained: std::collections::HashMap<(Resources, usize), u64> = Default::default();
    let mut total = Resources::default();
    let pods = prepared.bound.iter().map(|(p, _)| *p);
    for pod in pods.chain(prepared.pending.iter().copied()) {
        if pod.is_daemonset() {
            continue;
        }
        let shape = (
            &pod.requests,
            &pod.node_selector,
            &pod.required_node_terms,
            &pod.tolerations,
            &pod.affinity,
        );
        let ok = *feasible
            .entry(shape)
            .or_insert_with(|| scheduler::infeasible_reason(env, pod).is_none());
        if ok {
            let class = crate::core::shape_bound::bound_class(&pod.requests);
            total.add(&class);
            let key = (
                &pod.tolerations,
                &pod.node_selector,
                &pod.required_node_terms,
            );
            let group = *constraint.entry(key).or_insert_with(|| {
                allowed.push(scheduler::offerings_allowing(env, pod));
                allowed.len() - 1
            });
            *constrained.entry((class.clone(), group)).or_insert(0) += 1;
            *classes.entry(class).or_insert(0) += 1;
        }
    }
    BoundDemand {
        total,
        classes: classes.into_iter().collect(),
        constrained: constrained
            .into_iter()
            .map(|((r, g), n)| (r, g, n))
            .collect(),
        allowed,
    }
}
