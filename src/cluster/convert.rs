//! API objects → the entries of the in-memory indexes. Pods, Nodes and DaemonSet
//! templates go through the trace format's converters (`crate::trace`), so a pod means
//! the same thing to `simulate`, `record` and `run`. Every converter returns an error for
//! a bad object instead of panicking; the caller logs it and skips the object.

use super::crd::{
    NodeClaim, TaintSpec, POOL_HASH_ANNOTATION, REPLACES_ANNOTATION, TERMINATION_FINALIZER,
};
use crate::cloud::Offering;
use crate::core::disruption::NODE_DO_NOT_DISRUPT;
use crate::core::instance::CapacityType;
use crate::core::labels::Labels;
use crate::core::pdb::{Budget, IntOrPercent, PodDisruptionBudget};
use crate::core::pod::Pod;
use crate::core::quantity;
use crate::core::resources::Resources;
use crate::core::taints::{Taint, TaintEffect};
use crate::trace::pod::FieldError;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1 as core_v1;
use k8s_openapi::api::policy::v1 as policy_v1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// Annotations the decision core reads (disruption blockers) and the deletion cost the
/// controller keeps current (`controller::deletion_cost` writes only a value that
/// changed); the others are dropped so the index of 100,000 pods does not hold every
/// `last-applied-configuration`.
const KEPT_ANNOTATIONS: &[&str] = &[
    "cluster-autoscaler.kubernetes.io/safe-to-evict",
    "stevedore.dev/do-not-disrupt",
    "karpenter.sh/do-not-disrupt",
    crate::core::deletion_cost::ANNOTATION,
];

/// Static pods mirrored by the kubelet carry this; they cannot be evicted.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

fn err(path: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

fn to_json<T: serde::Serialize>(obj: &T, what: &str) -> Result<Value, FieldError> {
    serde_json::to_value(obj).map_err(|e| err(what, format!("cannot serialize: {e}")))
}

/// Seconds since the Unix epoch.
pub fn seconds(t: &Time) -> f64 {
    t.0.as_millisecond() as f64 / 1000.0
}

/// What the controller keeps of a pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodEntry {
    pub pod: Pod,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// Waiting for a node the scheduler cannot find: `PodScheduled=False` with reason
    /// `Unschedulable`, for one of our schedulers, not gated, not being deleted.
    pub unschedulable: bool,
    /// `Succeeded` or `Failed`: holds no room.
    pub terminal: bool,
    /// Has a deletion timestamp (evicted or deleted).
    pub deleting: bool,
    /// `Ready` condition true: counts as healthy for PodDisruptionBudgets.
    pub ready: bool,
    /// A mirror (static) pod or a DaemonSet pod: never evicted by a drain.
    pub drain_exempt: bool,
    /// Creation time, seconds since the Unix epoch (0 when unknown).
    pub created: f64,
}

pub fn pod_entry(p: &core_v1::Pod, schedulers: &[String]) -> Result<PodEntry, FieldError> {
    let mut pod = crate::trace::pod::pod_from_json(&to_json(p, "pod")?)?;
    let mirror = pod.annotations.contains_key(MIRROR_ANNOTATION);
    pod.annotations
        .retain(|k, _| KEPT_ANNOTATIONS.contains(&k.as_str()));
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let condition = |t: &str| {
        status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
    };
    let node = spec
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    let scheduler = spec
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or("default-scheduler");
    let gated = spec
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty());
    let deleting = p.metadata.deletion_timestamp.is_some();
    let unschedulable = node.is_none()
        && phase == "Pending"
        && !gated
        && !deleting
        && schedulers.iter().any(|s| s == scheduler)
        && condition("PodScheduled")
            .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"));
    Ok(PodEntry {
        drain_exempt: mirror || pod.is_daemonset(),
        pod,
        node,
        unschedulable,
        terminal: matches!(phase, "Succeeded" | "Failed"),
        deleting,
        ready: condition("Ready").is_some_and(|c| c.status == "True"),
        created: p.metadata.creation_timestamp.as_ref().map_or(0.0, seconds),
    })
}

/// What the controller keeps of a node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeEntry {
    pub name: String,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    pub provider_id: Option<String>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// Cordoned (`spec.unschedulable`).
    pub unschedulable: bool,
    pub deleting: bool,
    /// Creation time, seconds since the Unix epoch (0 when unknown).
    pub created: f64,
    /// The node's do-not-disrupt annotations (only those: the rest are not read).
    pub annotations: Labels,
    /// What every decision reads of `labels` for every node, read once on arrival.
    pub keys: NodeKeys,
    /// When a pod last arrived or left (consolidation waits `consolidateAfter`): the
    /// state's per-node record, copied here by the state whenever it changes, so that a
    /// decision reads it with the node instead of walking another map beside them.
    pub stable_since: f64,
    /// What a decision reads of the claim this node is (the claim index's), copied here
    /// by the state whenever it changes: reading it through the index took a walk of
    /// another map beside the nodes and a claim entry's scattered fields per node.
    pub claim: Option<NodeClaimSide>,
}

/// See [`NodeEntry::claim`].
#[derive(Clone, Debug, PartialEq)]
pub struct NodeClaimSide {
    pub name: String,
    /// The claim is being deleted.
    pub deleting: bool,
    /// [`ClaimEntry::launched_price`].
    pub launched_price: Option<f64>,
    pub startup_taints: Vec<Taint>,
}

impl NodeClaimSide {
    pub fn of(c: &ClaimEntry) -> Self {
        NodeClaimSide {
            name: c.name.clone(),
            deleting: c.deleting_since.is_some(),
            launched_price: c.launched_price,
            startup_taints: c.startup_taints.clone(),
        }
    }
}

/// The labels a decision reads of every node (zone, instance type, pool, capacity type),
/// read off them once when the node arrives and held in the entry itself: each label
/// lookup compared the wanted key with the node's keys, every one a string of its own
/// on the heap (a cache miss each), and the lookups were most of building a decision's
/// snapshot of 10,000 nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeKeys {
    /// `topology.kubernetes.io/zone`.
    pub zone: Option<ShortStr>,
    /// `node.kubernetes.io/instance-type`.
    pub instance_type: Option<ShortStr>,
    /// `stevedore.dev/nodepool`, else `karpenter.sh/nodepool`.
    pub pool: Option<ShortStr>,
    /// `karpenter.sh/capacity-type`; on-demand when it has none.
    pub capacity_type: CapacityType,
}

impl Default for NodeKeys {
    fn default() -> Self {
        NodeKeys::of(&Labels::new())
    }
}

impl NodeKeys {
    pub fn of(l: &Labels) -> Self {
        use crate::core::labels as keys;
        let short = |k: &str| l.get(k).map(|v| ShortStr::new(v));
        NodeKeys {
            zone: short(keys::ZONE),
            instance_type: short(keys::INSTANCE_TYPE),
            pool: l
                .get(keys::NODEPOOL)
                .or_else(|| l.get(keys::KARPENTER_NODEPOOL))
                .map(|v| ShortStr::new(v)),
            capacity_type: l
                .get(keys::KARPENTER_CAPACITY_TYPE)
                .and_then(|c| CapacityType::parse(c))
                .unwrap_or(CapacityType::OnDemand),
        }
    }
}

/// How many bytes a [`ShortStr`] holds in place: as large as a `String` with it.
const SHORT: usize = 22;

/// A string held in place when short (every zone and instance type name, most pool
/// names), so that reading it follows no pointer; a longer one is on the heap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShortStr {
    Inline(u8, [u8; SHORT]),
    Heap(Box<str>),
}

impl ShortStr {
    pub fn new(s: &str) -> Self {
        if s.len() <= SHORT {
            let mut bytes = [0; SHORT];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            ShortStr::Inline(s.len() as u8, bytes)
        } else {
            ShortStr::Heap(s.into())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Copied from a `str` whole: valid UTF-8 (checked again, cheaply: short).
            ShortStr::Inline(len, bytes) => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            ShortStr::Heap(s) => s,
        }
    }
}

pub fn node_entry(n: &core_v1::Node) -> Result<NodeEntry, FieldError> {
    let s = crate::trace::node::node_from_json(&to_json(n, "node")?)?;
    let ready = n
        .status
        .as_ref()
        .and_then(|st| st.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    let spec = n.spec.as_ref();
    Ok(NodeEntry {
        name: s.name,
        keys: NodeKeys::of(&s.labels),
        stable_since: 0.0,
        claim: None,
        labels: s.labels,
        taints: s.taints,
        allocatable: s.allocatable,
        provider_id: spec.and_then(|s| s.provider_id.clone()),
        ready,
        unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        deleting: n.metadata.deletion_timestamp.is_some(),
        created: n.metadata.creation_timestamp.as_ref().map_or(0.0, seconds),
        annotations: n
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| NODE_DO_NOT_DISRUPT.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

/// A DaemonSet as the pod template the core reserves room for on new nodes.
pub fn daemonset_pod(ds: &DaemonSet) -> Result<Pod, FieldError> {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let template = ds.spec.as_ref().map(|s| &s.template);
    let spec = match template.and_then(|t| t.spec.as_ref()) {
        Some(s) => to_json(s, "daemonset.spec.template.spec")?,
        None => return Err(err("daemonset.spec.template.spec", "missing")),
    };
    let labels = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let pod = serde_json::json!({
        "metadata": {
            "name": name,
            "namespace": ds.metadata.namespace.clone().unwrap_or_default(),
            "labels": labels,
            "ownerReferences": [{"kind": "DaemonSet", "name": name, "controller": true}],
        },
        "spec": spec,
    });
    crate::trace::pod::pod_from_json(&pod)
}

pub fn pdb_entry(p: &policy_v1::PodDisruptionBudget) -> Result<PodDisruptionBudget, FieldError> {
    let spec = p.spec.as_ref().ok_or_else(|| err("pdb.spec", "missing"))?;
    let value = |v: &IntOrString, path: &str| -> Result<IntOrPercent, FieldError> {
        match v {
            IntOrString::Int(n) if *n >= 0 => Ok(IntOrPercent::Int(i64::from(*n))),
            IntOrString::String(s) => s
                .strip_suffix('%')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n <= 100)
                .map(IntOrPercent::Percent)
                .ok_or_else(|| err(path, format!("invalid value {s:?}"))),
            IntOrString::Int(n) => Err(err(path, format!("negative value {n}"))),
        }
    };
    let budget = match (&spec.min_available, &spec.max_unavailable) {
        (Some(v), _) => Budget::MinAvailable(value(v, "pdb.spec.minAvailable")?),
        (None, Some(v)) => Budget::MaxUnavailable(value(v, "pdb.spec.maxUnavailable")?),
        (None, None) => return Err(err("pdb.spec", "neither minAvailable nor maxUnavailable")),
    };
    let selector = match &spec.selector {
        Some(sel) => {
            crate::trace::pod::label_selector_from_json(&to_json(sel, "pdb.spec.selector")?)?
        }
        // A PDB without a selector selects no pods (policy/v1).
        None => crate::trace::pod::label_selector_from_json(&Value::Null)?,
    };
    Ok(PodDisruptionBudget {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        selector,
        budget,
    })
}

/// What the controller keeps of a NodeClaim.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClaimEntry {
    pub name: String,
    /// The price of the option it launched as (its status's type, zone and capacity
    /// type), found once on arrival: a decision reads it for every node.
    pub launched_price: Option<f64>,
    pub uid: String,
    pub pool: String,
    /// Cheapest first, as the decision ordered them.
    pub options: Vec<Offering>,
    pub requested: Resources,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub startup_taints: Vec<Taint>,
    pub provider_id: Option<String>,
    pub node_name: Option<String>,
    pub instance_type: Option<String>,
    pub zone: Option<String>,
    pub capacity_type: Option<CapacityType>,
    pub launched_at: Option<f64>,
    pub launched: bool,
    pub registered: bool,
    pub ready: bool,
    pub created: f64,
    /// When deletion was requested (seconds), if it was.
    pub deleting_since: Option<f64>,
    pub has_finalizer: bool,
    /// The claim this one replaces (consolidation); that one goes once this is ready.
    pub replaces: Option<String>,
    /// Drain waits for PodDisruptionBudgets at most this long, then deletes pods.
    pub termination_grace_s: Option<f64>,
    /// The pool's template hash at creation; `None` for claims made before it was
    /// recorded (or with an unreadable value: drift then compares labels and taints).
    pub pool_hash: Option<u64>,
    /// The status as last read, so a patch keeps the other conditions' times.
    pub status: super::crd::NodeClaimStatus,
}

pub fn taint(t: &TaintSpec, path: &str) -> Result<Taint, FieldError> {
    let effect = TaintEffect::parse(&t.effect)
        .ok_or_else(|| err(path, format!("unknown taint effect {:?}", t.effect)))?;
    Ok(Taint {
        key: t.key.clone(),
        value: t.value.clone().unwrap_or_default(),
        effect,
    })
}

pub fn taint_spec(t: &Taint) -> TaintSpec {
    TaintSpec {
        key: t.key.clone(),
        value: (!t.value.is_empty()).then(|| t.value.clone()),
        effect: format!("{:?}", t.effect),
    }
}

/// Resources as a Kubernetes quantity map (a node's `capacity`, a claim's requests).
pub fn quantities(
    r: &Resources,
) -> std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let mut m = std::collections::BTreeMap::new();
    m.insert("cpu".into(), Quantity(format!("{}m", r.cpu_milli)));
    m.insert("memory".into(), Quantity(r.memory.to_string()));
    m.insert("pods".into(), Quantity(r.pods.to_string()));
    if r.ephemeral > 0 {
        m.insert(
            "ephemeral-storage".into(),
            Quantity(r.ephemeral.to_string()),
        );
    }
    for (k, v) in &r.extended {
        m.insert(k.to_string(), Quantity(v.to_string()));
    }
    m
}

fn requests(
    map: &std::collections::BTreeMap<
        String,
        k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    >,
) -> Result<Resources, FieldError> {
    let mut r = Resources::default();
    for (k, q) in map {
        let path = format!("nodeclaim.spec.resources.requests.{k}");
        let n = quantity::parse_resource(k, &q.0).map_err(|e| {
            err(
                &path,
                format!("invalid quantity {:?}: {}", e.input, e.reason),
            )
        })?;
        r.set(k, n);
    }
    Ok(r)
}

pub fn claim_entry(c: &NodeClaim) -> Result<ClaimEntry, FieldError> {
    let name = c.metadata.name.clone().unwrap_or_default();
    let mut options = Vec::new();
    for (i, o) in c.spec.options.iter().enumerate() {
        let capacity_type = CapacityType::parse(&o.capacity_type).ok_or_else(|| {
            err(
                &format!("nodeclaim.spec.options[{i}].capacityType"),
                format!("unknown capacity type {:?}", o.capacity_type),
            )
        })?;
        options.push(Offering {
            instance_type: o.instance_type.clone(),
            zone: o.zone.clone(),
            capacity_type,
            price_per_hour: o.price_per_hour,
        });
    }
    let taints = c
        .spec
        .taints
        .iter()
        .map(|t| taint(t, "nodeclaim.spec.taints"))
        .collect::<Result<_, _>>()?;
    let startup_taints = c
        .spec
        .startup_taints
        .iter()
        .map(|t| taint(t, "nodeclaim.spec.startupTaints"))
        .collect::<Result<_, _>>()?;
    let status = c.status.clone().unwrap_or_default();
    let raw_status = status.clone();
    let grace = c
        .spec
        .termination_grace_period
        .as_deref()
        .map(|g| {
            humantime::parse_duration(g)
                .map(|d| d.as_secs_f64())
                .map_err(|e| err("nodeclaim.spec.terminationGracePeriod", e.to_string()))
        })
        .transpose()?;
    let mut entry = ClaimEntry {
        launched_price: None,
        uid: c.metadata.uid.clone().unwrap_or_default(),
        pool: c.spec.node_pool.clone(),
        options,
        requested: requests(&c.spec.resources.requests)?,
        labels: c.spec.labels.clone(),
        taints,
        startup_taints,
        launched: status.condition("Launched"),
        registered: status.condition("Registered"),
        ready: status.condition("Ready"),
        provider_id: status.provider_id,
        node_name: status.node_name,
        instance_type: status.instance_type,
        zone: status.zone,
        capacity_type: status
            .capacity_type
            .as_deref()
            .and_then(CapacityType::parse),
        launched_at: status.launched_at,
        created: c.metadata.creation_timestamp.as_ref().map_or(0.0, seconds),
        deleting_since: c.metadata.deletion_timestamp.as_ref().map(seconds),
        has_finalizer: c
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == TERMINATION_FINALIZER)),
        replaces: c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REPLACES_ANNOTATION).cloned()),
        termination_grace_s: grace,
        pool_hash: c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(POOL_HASH_ANNOTATION))
            .and_then(|h| u64::from_str_radix(h, 16).ok()),
        status: raw_status,
        name,
    };
    entry.launched_price = launched_price(&entry);
    Ok(entry)
}

/// See [`ClaimEntry::launched_price`].
fn launched_price(c: &ClaimEntry) -> Option<f64> {
    c.options
        .iter()
        .find(|o| {
            Some(&o.instance_type) == c.instance_type.as_ref()
                && Some(&o.zone) == c.zone.as_ref()
                && Some(o.capacity_type) == c.capacity_type
        })
        .map(|o| o.price_per_hour)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nodes_keys_are_its_labels() {
        let long = "a-pool-name-longer-than-fits-in-place";
        let l: Labels = [
            ("topology.kubernetes.io/zone", "us-east-1a"),
            ("node.kubernetes.io/instance-type", "m5.2xlarge"),
            ("karpenter.sh/nodepool", long),
            ("karpenter.sh/capacity-type", "spot"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let k = NodeKeys::of(&l);
        assert_eq!(k.zone.as_ref().map(ShortStr::as_str), Some("us-east-1a"));
        assert_eq!(
            k.instance_type.as_ref().map(ShortStr::as_str),
            Some("m5.2xlarge")
        );
        assert_eq!(k.pool.as_ref().map(ShortStr::as_str), Some(long));
        assert_eq!(k.capacity_type, CapacityType::Spot);
        assert_eq!(NodeKeys::default().capacity_type, CapacityType::OnDemand);
        assert_eq!(NodeKeys::default().pool, None);
        assert_eq!(std::mem::size_of::<Option<ShortStr>>(), 24);
        assert_eq!(ShortStr::new("").as_str(), "");
    }

    #[test]
    fn a_claims_pool_hash_is_read_and_a_bad_one_ignored() {
        let claim = |hash: &str| -> NodeClaim {
            serde_json::from_value(json!({
                "apiVersion": "stevedore.dev/v1", "kind": "NodeClaim",
                "metadata": {"name": "general-a", "annotations": {"stevedore.dev/pool-hash": hash}},
                "spec": {"nodePool": "general"}
            }))
            .expect("a NodeClaim")
        };
        let e = claim_entry(&claim("00000000000000ff")).expect("converts");
        assert_eq!(e.pool_hash, Some(255));
        // Unreadable: no hash (drift then compares labels and taints), not an error.
        let e = claim_entry(&claim("not-hex")).expect("converts");
        assert_eq!(e.pool_hash, None);
    }

    fn pod(v: Value) -> core_v1::Pod {
        serde_json::from_value(v).expect("a v1.Pod")
    }

    fn schedulers() -> Vec<String> {
        vec!["default-scheduler".into()]
    }

    fn pending(extra_spec: Value) -> Value {
        let mut spec = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
            s.extend(e.clone());
        }
        json!({
            "metadata": {"name": "web-1", "namespace": "shop", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
            "spec": spec,
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
        })
    }

    #[test]
    fn an_unschedulable_pod_is_pending_for_our_scheduler_only() {
        let e = pod_entry(&pod(pending(json!({}))), &schedulers()).unwrap();
        assert!(e.unschedulable);
        assert_eq!(e.pod.requests.cpu_milli, 500);
        assert!(e.pod.annotations.is_empty(), "unread annotations dropped");
        let other = pod(pending(json!({"schedulerName": "volcano"})));
        assert!(!pod_entry(&other, &schedulers()).unwrap().unschedulable);
        let gated = pod(pending(json!({"schedulingGates": [{"name": "wait"}]})));
        assert!(!pod_entry(&gated, &schedulers()).unwrap().unschedulable);
    }

    #[test]
    fn bad_quantities_are_errors_not_panics() {
        for q in ["lots", "-1", "99999999999999999999999999999Ei", "1e400"] {
            let mut v = pending(json!({}));
            v["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!(q);
            // An unparsable quantity fails already at deserializing into the typed Pod
            // only when it is not a string; strings reach the converter.
            let p = pod(v);
            let e = pod_entry(&p, &schedulers());
            assert!(e.is_err(), "{q} accepted: {e:?}");
        }
    }

    #[test]
    fn a_pdb_converts_counts_and_percentages() {
        let p: policy_v1::PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"maxUnavailable": "25%", "selector": {"matchLabels": {"app": "web"}}}
        }))
        .unwrap();
        let b = pdb_entry(&p).unwrap();
        assert_eq!(b.budget, Budget::MaxUnavailable(IntOrPercent::Percent(25)));
        assert_eq!(b.selector.match_labels["app"], "web");
        let bad: policy_v1::PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"minAvailable": "lots"}
        }))
        .unwrap();
        assert!(pdb_entry(&bad).is_err());
    }
}
