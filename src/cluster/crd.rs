//! The `stevedore.dev/v1` custom resources, generated from these Rust types:
//! - `NodePool`: the Karpenter v1 NodePool shape, plus stevedore's `spec.headroom`.
//!   A cluster's NodePools are compiled by
//!   the same validation as configuration files ([`compile_node_pool`]), so an object and
//!   a file with the same content give the same pool or the same errors.
//! - `NodeClaim`: one launch. Created (with a finalizer) before the cloud is called,
//!   carrying the options the decision chose; its status records the instance and the
//!   node it became.
//!
//! The YAML shipped in `charts/stevedore/crds/` must equal [`crds_yaml`] (a test checks
//! it; `stevedore crds` prints it).

use crate::config::{self, ConfigErrors, NodePoolExtras};
use crate::core::nodepool::NodePool as CorePool;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The finalizer every NodeClaim carries until its instance is terminated and its node
/// drained and deleted.
pub const TERMINATION_FINALIZER: &str = "stevedore.dev/termination";
/// Annotation on a consolidation replacement naming the claim it replaces.
pub const REPLACES_ANNOTATION: &str = "stevedore.dev/replaces";
/// Annotation recording `core::disruption::template_hash` of the claim's NodePool at
/// creation (hex): drift compares it with the pool's current hash.
pub const POOL_HASH_ANNOTATION: &str = "stevedore.dev/pool-hash";

/// Schema of a map of resource quantities: `1`, `"500m"`, `"4Gi"` (the upstream
/// `Quantity` schema carries a page of prose in every place it appears).
fn quantity_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {"x-kubernetes-int-or-string": true}
    })
}

/// Schema of one resource quantity (see [`quantity_map`]).
fn quantity(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"x-kubernetes-int-or-string": true})
}

/// Karpenter v1 `NodePool.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stevedore.dev",
    version = "v1",
    kind = "NodePool",
    plural = "nodepools",
    doc = "What stevedore may launch: instance requirements, labels, taints, limits and disruption settings (Karpenter v1 shape)",
    printcolumn(name = "Weight", type_ = "integer", json_path = ".spec.weight"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    /// Higher weight pools are tried first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    pub template: NodeClaimTemplate,
    /// Upper bounds on the pool's total capacity (cpu, memory, extended resources).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "quantity_map")]
    pub limits: BTreeMap<String, Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption: Option<Disruption>,
    /// Spare capacity to keep in the pool (a stevedore extension, see
    /// docs/configuration.md "spec.headroom").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<HeadroomSpec>,
}

/// `spec.headroom`: checked by the configuration loader (`config::headroom`), like the
/// rest of the spec, when the object is compiled.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeadroomSpec {
    /// Keep the pool's requested / allocatable at or under these ratios, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_utilization: Option<UtilizationSpec>,
    /// Absolute spare: cpu, memory, ephemeral-storage, pods and extended resources.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "quantity_map")]
    pub spare: BTreeMap<String, Quantity>,
    /// Largest placeholder pod the spare is split into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder_size: Option<PlaceholderSizeSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UtilizationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlaceholderSizeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "quantity")]
    pub cpu: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "quantity")]
    pub memory: Option<Quantity>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    pub spec: TemplateSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<RequirementSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<TaintSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<TaintSpec>,
    /// A duration (`720h`) or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_class_ref: Option<NodeClassRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequirementSpec {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_values: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaintSpec {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClassRef {
    pub group: String,
    pub kind: String,
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disruption {
    /// `WhenEmpty` or `WhenEmptyOrUnderutilized`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consolidation_policy: Option<String>,
    /// A duration (`30s`) or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consolidate_after: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpec {
    pub nodes: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// One launch: the options the decision chose, cheapest first, and what it is for.
// Several printer columns share `type_ = "string"`, which the lint reads as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stevedore.dev",
    version = "v1",
    kind = "NodeClaim",
    plural = "nodeclaims",
    status = "NodeClaimStatus",
    doc = "One node stevedore launched or is launching",
    printcolumn(name = "Type", type_ = "string", json_path = ".status.instanceType"),
    printcolumn(name = "Zone", type_ = "string", json_path = ".status.zone"),
    printcolumn(
        name = "Capacity",
        type_ = "string",
        json_path = ".status.capacityType"
    ),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.nodeName"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimSpec {
    pub node_pool: String,
    /// Instance types, zones and capacity types the launch may use (`In` requirements
    /// summarising `options`).
    #[serde(default)]
    pub requirements: Vec<RequirementSpec>,
    /// What the pods the claim was made for request, plus DaemonSet overhead.
    #[serde(default)]
    pub resources: ClaimResources,
    /// The offerings the decision chose, cheapest first.
    #[serde(default)]
    pub options: Vec<ClaimOption>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<TaintSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<TaintSpec>,
    /// How long a drain may wait for PodDisruptionBudgets before pods are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimResources {
    #[serde(default)]
    #[schemars(schema_with = "quantity_map")]
    pub requests: BTreeMap<String, Quantity>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimOption {
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: String,
    pub price_per_hour: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "providerID")]
    pub provider_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_type: Option<String>,
    /// Launch time, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ClaimCondition>,
}

/// `Launched`, `Registered` or `Ready`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl NodeClaimStatus {
    pub fn condition(&self, type_: &str) -> bool {
        self.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    }

    /// Sets a condition to `True` (keeping its transition time when it already was).
    pub fn set_true(&mut self, type_: &str, reason: &str, now_rfc3339: &str) {
        if self.condition(type_) {
            return;
        }
        self.conditions.retain(|c| c.type_ != type_);
        self.conditions.push(ClaimCondition {
            type_: type_.to_string(),
            status: "True".into(),
            reason: Some(reason.to_string()),
            message: None,
            last_transition_time: Some(now_rfc3339.to_string()),
        });
    }
}

/// Both CRDs as one multi-document YAML stream, as shipped in the chart.
pub fn crds_yaml() -> String {
    let mut out = String::from(
        "# Generated by `stevedore crds` from src/cluster/crd.rs; do not edit by hand.\n",
    );
    for crd in [NodePool::crd(), NodeClaim::crd()] {
        out.push_str("---\n");
        // Serializing a CRD value cannot fail: it is plain data with string keys.
        let mut value = serde_json::to_value(&crd).unwrap_or_default();
        kubernetes_formats(&mut value);
        out.push_str(&serde_yaml::to_string(&value).unwrap_or_default());
    }
    out
}

/// Integer formats the Kubernetes OpenAPI schema knows (`int32`, `int64`) in place of
/// the ones schemars writes for Rust's other integers: `kubectl apply` warns
/// `unrecognized format "uint32"` on every apply otherwise. Each becomes the smallest
/// known format that holds its range (`minimum: 0` stays for the unsigned ones).
fn kubernetes_formats(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(f)) = map.get_mut("format") {
                let known = match f.as_str() {
                    "int8" | "int16" | "uint8" | "uint16" => Some("int32"),
                    "uint32" | "uint64" | "uint" | "int" => Some("int64"),
                    _ => None,
                };
                if let Some(k) = known {
                    *f = k.to_string();
                }
            }
            map.values_mut().for_each(kubernetes_formats);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(kubernetes_formats),
        _ => {}
    }
}

/// Compiles a NodePool object with the configuration loader's own validation: the spec
/// is written out as a `kind: NodePool` document and loaded, so the errors (and the
/// defaults) are exactly those of a configuration file. Errors name `NodePool/<name>`.
pub fn compile_node_pool(np: &NodePool) -> Result<(CorePool, NodePoolExtras), ConfigErrors> {
    let name = np.metadata.name.clone().unwrap_or_default();
    let doc = serde_json::json!({
        "apiVersion": config::API_VERSION,
        "kind": "NodePool",
        "metadata": {"name": name},
        "spec": np.spec,
    });
    let text = serde_yaml::to_string(&doc).unwrap_or_default();
    let source = format!("cluster NodePool/{name}");
    let mut cfg = config::load_str(&text, &source)?;
    match (cfg.node_pools.pop(), cfg.pool_extras.pop()) {
        (Some(pool), Some(extras)) => Ok((pool, extras)),
        // load_str succeeded on a NodePool document, so it produced exactly one pool.
        _ => Err(ConfigErrors { errors: Vec::new() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(yaml_spec: &str) -> NodePool {
        let spec: NodePoolSpec = serde_yaml::from_str(yaml_spec).expect("spec parses");
        NodePool::new("general", spec)
    }

    #[test]
    fn a_valid_pool_compiles_like_a_config_file() {
        let np = pool(
            "weight: 10\n\
             template:\n  metadata: {labels: {team: web}}\n  spec:\n    requirements:\n      \
             - {key: karpenter.sh/capacity-type, operator: In, values: [spot]}\n    \
             taints: [{key: dedicated, value: web, effect: NoSchedule}]\n\
             limits: {cpu: \"100\"}\n\
             disruption: {consolidationPolicy: WhenEmpty, consolidateAfter: 1m}\n",
        );
        let (core, extras) = compile_node_pool(&np).expect("valid");
        assert_eq!(core.name, "general");
        assert_eq!(core.weight, 10);
        assert_eq!(core.labels["team"], "web");
        assert_eq!(core.limits.cpu_milli, Some(100_000));
        assert_eq!(core.taints.len(), 1);
        assert_eq!(
            core.empty_node_after,
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(
            extras.disruption.policy,
            crate::config::ConsolidationPolicy::WhenEmpty
        );
    }

    #[test]
    fn an_invalid_pool_reports_the_config_loaders_errors() {
        let np = pool(
            "template:\n  spec:\n    requirements:\n      \
             - {key: karpenter.sh/capacity-type, operator: Near, values: [spot]}\n",
        );
        let err = compile_node_pool(&np).expect_err("bad operator");
        let text = err.to_string();
        assert!(text.contains("NodePool/general"), "{text}");
        assert!(text.contains("operator"), "{text}");
        // The same document as a config file fails with the same message.
        let file = "apiVersion: stevedore.dev/v1\nkind: NodePool\nmetadata: {name: general}\n\
                    spec:\n  template:\n    spec:\n      requirements:\n        \
                    - {key: karpenter.sh/capacity-type, operator: Near, values: [spot]}\n";
        let file_err = crate::config::load_str(file, "f.yaml").expect_err("bad operator");
        assert_eq!(err.errors[0].message, file_err.errors[0].message);
        assert_eq!(err.errors[0].path, file_err.errors[0].path);
    }

    #[test]
    fn a_pools_headroom_compiles_into_its_extras() {
        use crate::core::headroom::{HeadroomPolicy, UtilizationTargets};
        use crate::core::resources::{Resources, GPU_NVIDIA};
        // Integers as the API server returns int-or-string values, strings as written.
        let np = pool(
            "template: {spec: {}}\n\
             headroom:\n  maxUtilization: {cpu: 0.8, memory: 0.85, pods: 1}\n  \
             spare: {cpu: \"4\", memory: 16Gi, pods: 10, nvidia.com/gpu: 1}\n  \
             placeholderSize: {cpu: 500m, memory: 2Gi}\n",
        );
        let (_, extras) = compile_node_pool(&np).expect("valid");
        let mut spare = Resources::new(4000, 16 << 30, 10);
        spare.set_extended(GPU_NVIDIA, 1);
        assert_eq!(
            extras.headroom,
            Some(HeadroomPolicy {
                max_utilization: UtilizationTargets {
                    cpu: Some(0.8),
                    memory: Some(0.85),
                    pods: Some(1.0),
                },
                spare,
                placeholder_cpu_milli: 500,
                placeholder_memory: 2 << 30,
            })
        );
        // The object round-trips through the API server's JSON unchanged.
        let json = serde_json::to_string(&np.spec).expect("serializes");
        let back: NodePoolSpec = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, np.spec);
        let (_, none) = compile_node_pool(&pool("template: {spec: {}}\n")).expect("valid");
        assert_eq!(none.headroom, None);
    }

    #[test]
    fn a_bad_headroom_reports_the_config_loaders_errors() {
        let np = pool(
            "template: {spec: {}}\n\
             headroom: {maxUtilization: {cpu: 1.5}, spare: {pods: 1Mi}}\n",
        );
        let err = compile_node_pool(&np).expect_err("bad headroom");
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.headroom.maxUtilization.cpu",
                "spec.headroom.spare.pods"
            ],
            "{err}"
        );
        assert!(err.to_string().contains("NodePool/general"), "{err}");
        assert!(err.errors[0].message.contains("ratio"), "{err}");
        // An empty block is refused, as in a file.
        let empty = compile_node_pool(&pool("template: {spec: {}}\nheadroom: {}\n"))
            .expect_err("empty headroom");
        assert_eq!(empty.errors[0].path, "spec.headroom", "{empty}");
    }

    #[test]
    fn crds_carry_printer_columns_and_status() {
        let yaml = crds_yaml();
        assert!(yaml.contains("name: nodeclaims.stevedore.dev"));
        assert!(yaml.contains("name: nodepools.stevedore.dev"));
        for col in ["Type", "Zone", "Capacity", "Node", "Ready", "Age"] {
            assert!(yaml.contains(&format!("name: {col}")), "column {col}");
        }
        assert!(yaml.contains("status: {}"), "status subresource");
    }

    #[test]
    fn the_crds_use_only_formats_kubernetes_knows() {
        let yaml = crds_yaml();
        let formats: std::collections::BTreeSet<&str> = yaml
            .lines()
            .filter_map(|l| l.trim().strip_prefix("format: "))
            .collect();
        assert!(!formats.is_empty(), "the schema has integer formats");
        // The formats of the Kubernetes OpenAPI schema that apply to these fields.
        for f in &formats {
            assert!(
                ["int32", "int64", "double", "float", "date-time"].contains(f),
                "format {f}"
            );
        }
    }
}
