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
use crate::core::instance::Catalog;
use crate::core::labels;
use crate::core::nodepool::NodePool;
use crate::core::scheduler::{self, Decision, LaunchPlan, SolveEnv};
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
}

/// Everything a decision is made with besides the indexes.
pub struct Decider<'a> {
    pub catalog: &'a Catalog,
    pub pools: &'a [NodePool],
    pub extras: &'a [NodePoolExtras],
    pub model: &'a crate::core::model::SchedulingModel,
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
pub fn plan(state: &ClusterState, d: &Decider, names: &mut dyn FnMut(&str) -> String) -> Plan {
    let prepared = state.prepare(&d.inputs());
    if prepared.pending.is_empty() {
        return Plan::default();
    }
    let decision = scheduler::solve(&d.env(), &prepared.snapshot());
    plan_from(&prepared, &decision, d, names)
}

fn plan_from(
    prepared: &Prepared,
    decision: &Decision,
    d: &Decider,
    names: &mut dyn FnMut(&str) -> String,
) -> Plan {
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
        for &i in &plan.pods {
            let (ns, n) = pod_id(i);
            out.pod_messages.push((
                ns,
                n,
                format!("nominated for new {summary} (NodeClaim {name})"),
                true,
            ));
        }
        out.claims.push(NewClaim {
            pods: plan.pods.iter().map(|&i| pod_id(i)).collect(),
            ..claim
        });
    }
    for &(i, node) in &decision.existing {
        let (ns, n) = pod_id(i);
        let target = match &prepared.nodes[node].target {
            Target::Node(name) => format!("node {name}"),
            Target::Claim(name) => format!("launching NodeClaim {name}"),
        };
        out.pod_messages
            .push((ns, n, format!("fits on {target}"), true));
    }
    for (i, why) in decision.infeasible.iter().chain(&decision.unschedulable) {
        let (ns, n) = pod_id(*i);
        out.pod_messages
            .push((ns, n, format!("cannot schedule: {why}"), false));
    }
    out
}

fn in_requirement(key: &str, mut values: Vec<String>) -> RequirementSpec {
    values.sort();
    values.dedup();
    RequirementSpec {
        key: key.into(),
        operator: "In".into(),
        values,
        min_values: None,
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
        requirements: vec![
            in_requirement(
                labels::INSTANCE_TYPE,
                options.iter().map(|o| o.instance_type.clone()).collect(),
            ),
            in_requirement(
                labels::ZONE,
                options.iter().map(|o| o.zone.clone()).collect(),
            ),
            in_requirement(
                labels::KARPENTER_CAPACITY_TYPE,
                options
                    .iter()
                    .map(|o| o.capacity_type.as_str().to_string())
                    .collect(),
            ),
        ],
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
    let mut meta_labels = BTreeMap::new();
    meta_labels.insert(labels::NODEPOOL.to_string(), pool.name.clone());
    let mut annotations = BTreeMap::new();
    // Recorded so that a later change of the pool shows as drift.
    let hash = crate::core::disruption::template_hash(pool);
    annotations.insert(POOL_HASH_ANNOTATION.to_string(), format!("{hash:016x}"));
    if let Some(r) = replaces {
        annotations.insert(REPLACES_ANNOTATION.to_string(), r.to_string());
    }
    let object = NodeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(meta_labels),
            annotations: Some(annotations),
            finalizers: Some(vec![TERMINATION_FINALIZER.to_string()]),
            ..Default::default()
        },
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
