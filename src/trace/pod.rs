//! Converts a Kubernetes `v1.Pod` (JSON, as the API returns it) into the core [`Pod`].
//!
//! What is read, and how:
//! - `metadata.name` (required), `metadata.namespace` (default `"default"`), `labels`,
//!   `annotations`; the owner is the first `ownerReferences` entry with
//!   `controller: true`, or the first entry when none is marked controller.
//! - Requests are counted as the scheduler counts them (Kubernetes 1.29+, sidecars
//!   included): see [`effective_requests`]. Limits stand in for missing requests per
//!   resource (API defaulting). `cpu` is millicores, `memory` and `ephemeral-storage`
//!   bytes, every other name is an extended resource count; a `pods` entry in a
//!   container is ignored, and the pod always counts `pods = 1`. Negative quantities are
//!   rejected. Pod-level `spec.resources` (an alpha/beta feature) is not read.
//! - `spec.nodeSelector`; required node affinity (`nodeSelectorTerms`, ORed; an empty
//!   term matches nothing, as in Kubernetes, and is represented by a requirement
//!   `kubernetes.io/hostname In []` that never matches); `matchFields` on
//!   `metadata.name` becomes a requirement on `kubernetes.io/hostname` (node name and
//!   hostname label are assumed equal). Preferred node affinity keeps its weight.
//! - Tolerations: operator `Equal` (default) or `Exists`; empty effect = all effects.
//! - Topology spread constraints and required pod (anti-)affinity terms, with
//!   `matchLabelKeys` (and `mismatchLabelKeys` for affinity terms) folded into the
//!   selector using this pod's labels. A missing `labelSelector` selects no pods, as in
//!   Kubernetes (represented as a `In []` expression). `namespaceSelector` and
//!   preferred pod (anti-)affinity are not represented and are ignored.
//! - Priority: `spec.priority` when present (the API server always fills it in);
//!   otherwise `spec.priorityClassName` `system-node-critical` → 2000001000,
//!   `system-cluster-critical` → 2000000000, anything else → 0 (custom priority classes
//!   are not known to a trace).

use super::json::{self, JPath};
use crate::core::labels::{self, Labels};
use crate::core::pod::{OwnerRef, PodAffinityTerm, TopologyKey, TopologySpread};
use crate::core::quantity;
use crate::core::requirements::{LabelSelector, Operator, Requirement};
use crate::core::resources::Resources;
use crate::core::taints::{TaintEffect, Toleration};
use serde_json::{Map, Value};

pub use crate::core::pod::Pod;

/// A bad field in a Kubernetes object: its JSON path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    /// e.g. `pod.spec.containers[0].resources.requests.cpu`
    pub path: String,
    pub message: String,
}

pub const SYSTEM_NODE_CRITICAL: i32 = 2_000_001_000;
pub const SYSTEM_CLUSTER_CRITICAL: i32 = 2_000_000_000;

/// Converts a `v1.Pod` JSON object. Error paths start with `pod.`.
pub fn pod_from_json(v: &Value) -> Result<Pod, FieldError> {
    pod_at(v, &JPath::root("pod"))
}

pub(crate) fn pod_at(v: &Value, p: &JPath) -> Result<Pod, FieldError> {
    let obj = json::object(v, p)?;
    let empty = Map::new();
    let meta = json::opt_object(obj, "metadata", p)?.unwrap_or(&empty);
    let mp = p.key("metadata");
    let name = json::req_string(meta, "name", &mp)?;
    if name.is_empty() {
        return Err(mp.key("name").err("must not be empty"));
    }
    let namespace = match json::opt_string(meta, "namespace", &mp)? {
        Some(ns) if !ns.is_empty() => ns,
        _ => "default",
    };
    let labels = json::string_map(meta, "labels", &mp)?;
    let annotations = json::string_map(meta, "annotations", &mp)?;
    let owner = owner_ref(meta, &mp)?;

    let spec = json::opt_object(obj, "spec", p)?.unwrap_or(&empty);
    let sp = p.key("spec");
    let requests = effective_requests(spec, &sp)?;
    let node_selector = json::string_map(spec, "nodeSelector", &sp)?;

    let mut pod = Pod {
        namespace: namespace.to_string(),
        name: name.to_string(),
        labels,
        annotations,
        owner,
        requests,
        node_selector,
        ..Default::default()
    };

    if let Some(aff) = json::opt_object(spec, "affinity", &sp)? {
        let ap = sp.key("affinity");
        if let Some(na) = json::opt_object(aff, "nodeAffinity", &ap)? {
            node_affinity(na, &ap.key("nodeAffinity"), &mut pod)?;
        }
        if let Some(pa) = json::opt_object(aff, "podAffinity", &ap)? {
            pod.affinity = pod_affinity_terms(pa, &ap.key("podAffinity"), &pod.labels)?;
        }
        if let Some(pa) = json::opt_object(aff, "podAntiAffinity", &ap)? {
            pod.anti_affinity = pod_affinity_terms(pa, &ap.key("podAntiAffinity"), &pod.labels)?;
        }
    }

    let tp = sp.key("tolerations");
    for (i, t) in json::opt_array(spec, "tolerations", &sp)?
        .iter()
        .enumerate()
    {
        pod.tolerations.push(toleration(t, &tp.index(i))?);
    }

    let cp = sp.key("topologySpreadConstraints");
    for (i, c) in json::opt_array(spec, "topologySpreadConstraints", &sp)?
        .iter()
        .enumerate()
    {
        pod.spread
            .push(spread_constraint(c, &cp.index(i), &pod.labels)?);
    }

    pod.priority = match json::get(spec, "priority") {
        Some(v) => json::int32(v, &sp.key("priority"))?,
        None => match json::opt_string(spec, "priorityClassName", &sp)? {
            Some("system-node-critical") => SYSTEM_NODE_CRITICAL,
            Some("system-cluster-critical") => SYSTEM_CLUSTER_CRITICAL,
            _ => 0,
        },
    };
    pod.local_storage = local_storage(spec, &sp)?;
    Ok(pod)
}

/// Does the pod keep data on its node: an `emptyDir` on disk (not `medium: Memory`) or
/// a `hostPath` volume? (The Cluster Autoscaler's notion of local storage.)
fn local_storage(spec: &Map<String, Value>, sp: &JPath) -> Result<bool, FieldError> {
    let vp = sp.key("volumes");
    for (i, v) in json::opt_array(spec, "volumes", sp)?.iter().enumerate() {
        let p = vp.index(i);
        let volume = json::object(v, &p)?;
        if json::get(volume, "hostPath").is_some() {
            return Ok(true);
        }
        if let Some(dir) = json::opt_object(volume, "emptyDir", &p)? {
            if json::opt_string(dir, "medium", &p.key("emptyDir"))? != Some("Memory") {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn owner_ref(meta: &Map<String, Value>, mp: &JPath) -> Result<Option<OwnerRef>, FieldError> {
    let op = mp.key("ownerReferences");
    let refs = json::opt_array(meta, "ownerReferences", mp)?;
    let mut first = None;
    for (i, r) in refs.iter().enumerate() {
        let rp = op.index(i);
        let o = json::object(r, &rp)?;
        let owner = OwnerRef {
            kind: json::req_string(o, "kind", &rp)?.to_string(),
            name: json::req_string(o, "name", &rp)?.to_string(),
        };
        let controller = match json::get(o, "controller") {
            Some(c) => json::boolean(c, &rp.key("controller"))?,
            None => false,
        };
        if controller {
            return Ok(Some(owner));
        }
        if first.is_none() {
            first = Some(owner);
        }
    }
    Ok(first)
}

/// The pod's requests as the scheduler counts them (`PodRequests` in Kubernetes 1.29+):
///
/// ```text
/// total = sum(containers)
/// sidecars = 0; init = 0
/// for each init container c, in order:
///     if c.restartPolicy == Always:        # a sidecar keeps running
///         total += c; sidecars += c; init = max(init, sidecars)
///     else:                                # runs alongside the sidecars started so far
///         init = max(init, c + sidecars)
/// requests = max(total, init) + spec.overhead; pods = 1
/// ```
pub(crate) fn effective_requests(
    spec: &Map<String, Value>,
    sp: &JPath,
) -> Result<Resources, FieldError> {
    let overflow = || sp.err("total requests overflow");
    let mut total = Resources::default();
    let cp = sp.key("containers");
    for (i, c) in json::opt_array(spec, "containers", sp)?.iter().enumerate() {
        let r = container_requests(c, &cp.index(i))?;
        checked_add(&mut total, &r).ok_or_else(overflow)?;
    }
    let mut sidecars = Resources::default();
    let mut init = Resources::default();
    let ip = sp.key("initContainers");
    for (i, c) in json::opt_array(spec, "initContainers", sp)?
        .iter()
        .enumerate()
    {
        let cip = ip.index(i);
        let r = container_requests(c, &cip)?;
        let obj = json::object(c, &cip)?;
        let sidecar = json::opt_string(obj, "restartPolicy", &cip)? == Some("Always");
        if sidecar {
            checked_add(&mut total, &r).ok_or_else(overflow)?;
            checked_add(&mut sidecars, &r).ok_or_else(overflow)?;
            init.max_with(&sidecars);
        } else {
            let mut with_sidecars = r;
            checked_add(&mut with_sidecars, &sidecars).ok_or_else(overflow)?;
            init.max_with(&with_sidecars);
        }
    }
    total.max_with(&init);
    if let Some(oh) = json::opt_object(spec, "overhead", sp)? {
        let mut overhead = Resources::default();
        let op = sp.key("overhead");
        for (k, v) in oh {
            add_quantity(&mut overhead, k, v, &op.key(k))?;
        }
        checked_add(&mut total, &overhead).ok_or_else(overflow)?;
    }
    total.pods = 1;
    Ok(total)
}

/// One container's requests, with limits standing in for missing requests.
fn container_requests(c: &Value, p: &JPath) -> Result<Resources, FieldError> {
    let obj = json::object(c, p)?;
    let mut r = Resources::default();
    let Some(res) = json::opt_object(obj, "resources", p)? else {
        return Ok(r);
    };
    let rp = p.key("resources");
    let requests = json::opt_object(res, "requests", &rp)?;
    if let Some(reqs) = requests {
        let qp = rp.key("requests");
        for (k, v) in reqs {
            if !v.is_null() {
                add_quantity(&mut r, k, v, &qp.key(k))?;
            }
        }
    }
    if let Some(limits) = json::opt_object(res, "limits", &rp)? {
        let lp = rp.key("limits");
        for (k, v) in limits {
            let requested = requests.is_some_and(|m| json::get(m, k).is_some());
            if !requested && !v.is_null() {
                add_quantity(&mut r, k, v, &lp.key(k))?;
            }
        }
    }
    Ok(r)
}

/// Parses a quantity (a string, or a bare JSON number, which the API also accepts).
fn quantity_value(v: &Value, p: &JPath, cpu: bool) -> Result<i64, FieldError> {
    let owned;
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Number(n) => {
            owned = n.to_string();
            owned.as_str()
        }
        other => {
            return Err(p.err(format!(
                "expected a quantity string, found {}",
                json::show(other)
            )))
        }
    };
    let parsed = if cpu {
        quantity::parse_cpu_milli(s)
    } else {
        quantity::parse_units(s)
    };
    match parsed {
        Ok(n) if n < 0 => Err(p.err(format!("negative quantity {}", json::show(v)))),
        Ok(n) => Ok(n),
        Err(e) => Err(p.err(format!(
            "invalid quantity {}: {}",
            json::show(&Value::String(e.input)),
            e.reason
        ))),
    }
}

/// Sets resource `name` of `r` from a quantity (a container names each resource once).
fn add_quantity(r: &mut Resources, name: &str, v: &Value, p: &JPath) -> Result<(), FieldError> {
    match name {
        "cpu" => r.cpu_milli = quantity_value(v, p, true)?,
        "memory" => r.memory = quantity_value(v, p, false)?,
        "ephemeral-storage" => r.ephemeral = quantity_value(v, p, false)?,
        "pods" => {
            quantity_value(v, p, false)?;
        }
        _ => {
            let n = quantity_value(v, p, false)?;
            r.set_extended(name, n);
        }
    }
    Ok(())
}

/// `a += b` without overflow (all values here are non-negative).
fn checked_add(a: &mut Resources, b: &Resources) -> Option<()> {
    a.cpu_milli = a.cpu_milli.checked_add(b.cpu_milli)?;
    a.memory = a.memory.checked_add(b.memory)?;
    a.ephemeral = a.ephemeral.checked_add(b.ephemeral)?;
    a.pods = a.pods.checked_add(b.pods)?;
    for (n, v) in &b.extended {
        let cur = a.extended(n);
        a.set_extended(n, cur.checked_add(*v)?);
    }
    Some(())
}

/// A requirement that no label set satisfies (`In` with no values).
fn never_matches() -> Requirement {
    Requirement {
        key: labels::HOSTNAME.to_string(),
        operator: Operator::In,
        values: Vec::new(),
    }
}

fn node_affinity(na: &Map<String, Value>, p: &JPath, pod: &mut Pod) -> Result<(), FieldError> {
    let key = "requiredDuringSchedulingIgnoredDuringExecution";
    if let Some(req) = json::opt_object(na, key, p)? {
        let rp = p.key(key);
        let tp = rp.key("nodeSelectorTerms");
        let terms = match json::get(req, "nodeSelectorTerms") {
            None => return Err(tp.missing()),
            Some(v) => json::array(v, &tp)?,
        };
        let mut out = Vec::new();
        for (i, t) in terms.iter().enumerate() {
            let term = node_selector_term(t, &tp.index(i))?;
            // An empty term matches no node: it adds nothing to an OR.
            if !term.is_empty() {
                out.push(term);
            }
        }
        if out.is_empty() {
            out.push(vec![never_matches()]);
        }
        pod.required_node_terms = out;
    }
    let key = "preferredDuringSchedulingIgnoredDuringExecution";
    let pp = p.key(key);
    for (i, t) in json::opt_array(na, key, p)?.iter().enumerate() {
        let ip = pp.index(i);
        let o = json::object(t, &ip)?;
        let weight = match json::get(o, "weight") {
            None => return Err(ip.key("weight").missing()),
            Some(w) => json::int32(w, &ip.key("weight"))?,
        };
        let pref = match json::get(o, "preference") {
            None => return Err(ip.key("preference").missing()),
            Some(v) => node_selector_term(v, &ip.key("preference"))?,
        };
        pod.preferred_node_terms.push((weight, pref));
    }
    Ok(())
}

fn node_selector_term(t: &Value, p: &JPath) -> Result<Vec<Requirement>, FieldError> {
    let o = json::object(t, p)?;
    let mut out = Vec::new();
    let ep = p.key("matchExpressions");
    for (i, e) in json::opt_array(o, "matchExpressions", p)?
        .iter()
        .enumerate()
    {
        out.push(requirement(e, &ep.index(i))?);
    }
    let fp = p.key("matchFields");
    for (i, f) in json::opt_array(o, "matchFields", p)?.iter().enumerate() {
        let ip = fp.index(i);
        let mut r = requirement(f, &ip)?;
        if r.key != "metadata.name" {
            return Err(ip.key("key").err(format!(
                "unsupported field {:?} (only metadata.name)",
                r.key
            )));
        }
        r.key = labels::HOSTNAME.to_string();
        out.push(r);
    }
    Ok(out)
}

/// A `{key, operator, values}` expression, validated as the API server validates it.
fn requirement(e: &Value, p: &JPath) -> Result<Requirement, FieldError> {
    let o = json::object(e, p)?;
    let key = json::req_string(o, "key", p)?;
    let op_s = json::req_string(o, "operator", p)?;
    let operator = Operator::parse(op_s)
        .ok_or_else(|| p.key("operator").err(format!("unknown operator {op_s:?}")))?;
    let vp = p.key("values");
    let mut values = Vec::new();
    for (i, v) in json::opt_array(o, "values", p)?.iter().enumerate() {
        values.push(json::string(v, &vp.index(i))?.to_string());
    }
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            return Err(vp.err(format!("operator {op_s} needs at least one value")))
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            return Err(vp.err(format!("operator {op_s} takes no values")))
        }
        Operator::Gt | Operator::Lt if values.len() != 1 || values[0].parse::<i64>().is_err() => {
            return Err(vp.err(format!("operator {op_s} needs exactly one integer value")))
        }
        _ => {}
    }
    Ok(Requirement {
        key: key.to_string(),
        operator,
        values,
    })
}

/// A bare `metav1.LabelSelector` object (e.g. a PodDisruptionBudget's `spec.selector`);
/// `null` selects nothing. Error paths start with `selector.`.
pub fn label_selector_from_json(v: &Value) -> Result<LabelSelector, FieldError> {
    let mut wrapper = Map::new();
    if !v.is_null() {
        wrapper.insert("labelSelector".into(), v.clone());
    }
    label_selector(&wrapper, &JPath::root("selector"))
}

/// A `metav1.LabelSelector`. `None` (absent) selects nothing.
fn label_selector(o: &Map<String, Value>, p: &JPath) -> Result<LabelSelector, FieldError> {
    let Some(sel) = json::opt_object(o, "labelSelector", p)? else {
        return Ok(LabelSelector {
            match_expressions: vec![never_matches()],
            ..Default::default()
        });
    };
    let sp = p.key("labelSelector");
    let mut out = LabelSelector {
        match_labels: json::string_map(sel, "matchLabels", &sp)?,
        ..Default::default()
    };
    let ep = sp.key("matchExpressions");
    for (i, e) in json::opt_array(sel, "matchExpressions", &sp)?
        .iter()
        .enumerate()
    {
        let ip = ep.index(i);
        let r = requirement(e, &ip)?;
        if matches!(r.operator, Operator::Gt | Operator::Lt) {
            return Err(ip
                .key("operator")
                .err("Gt/Lt are not valid in a label selector"));
        }
        out.match_expressions.push(r);
    }
    Ok(out)
}

/// Folds `matchLabelKeys` (and, with `mismatch`, `mismatchLabelKeys`) into a selector:
/// each listed key present on the pod adds `key In [value]` (`NotIn` for mismatch).
fn fold_label_keys(
    o: &Map<String, Value>,
    field: &str,
    p: &JPath,
    pod_labels: &Labels,
    operator: Operator,
    sel: &mut LabelSelector,
) -> Result<(), FieldError> {
    let kp = p.key(field);
    for (i, k) in json::opt_array(o, field, p)?.iter().enumerate() {
        let key = json::string(k, &kp.index(i))?;
        if let Some(value) = pod_labels.get(key) {
            sel.match_expressions.push(Requirement {
                key: key.to_string(),
                operator,
                values: vec![value.clone()],
            });
        }
    }
    Ok(())
}

fn topology_kind(key: &str) -> TopologyKey {
    if key == labels::ZONE {
        TopologyKey::Zone
    } else if key == labels::HOSTNAME {
        TopologyKey::Hostname
    } else {
        TopologyKey::Other
    }
}

fn spread_constraint(
    c: &Value,
    p: &JPath,
    pod_labels: &Labels,
) -> Result<TopologySpread, FieldError> {
    let o = json::object(c, p)?;
    let max_skew = match json::get(o, "maxSkew") {
        None => return Err(p.key("maxSkew").missing()),
        Some(v) => json::int32(v, &p.key("maxSkew"))?,
    };
    if max_skew < 1 {
        return Err(p.key("maxSkew").err("must be at least 1"));
    }
    let topology_key = json::req_string(o, "topologyKey", p)?;
    let hard = match json::req_string(o, "whenUnsatisfiable", p)? {
        "DoNotSchedule" => true,
        "ScheduleAnyway" => false,
        other => {
            return Err(p
                .key("whenUnsatisfiable")
                .err(format!("unknown value {other:?}")))
        }
    };
    let min_domains = match json::get(o, "minDomains") {
        None => None,
        Some(v) => {
            let n = json::int32(v, &p.key("minDomains"))?;
            if n < 1 {
                return Err(p.key("minDomains").err("must be at least 1"));
            }
            Some(n)
        }
    };
    let mut selector = label_selector(o, p)?;
    fold_label_keys(
        o,
        "matchLabelKeys",
        p,
        pod_labels,
        Operator::In,
        &mut selector,
    )?;
    Ok(TopologySpread {
        max_skew,
        topology_key: topology_key.to_string(),
        kind: topology_kind(topology_key),
        hard,
        selector,
        min_domains,
    })
}

fn pod_affinity_terms(
    a: &Map<String, Value>,
    p: &JPath,
    pod_labels: &Labels,
) -> Result<Vec<PodAffinityTerm>, FieldError> {
    let key = "requiredDuringSchedulingIgnoredDuringExecution";
    let tp = p.key(key);
    let mut out = Vec::new();
    for (i, t) in json::opt_array(a, key, p)?.iter().enumerate() {
        let ip = tp.index(i);
        let o = json::object(t, &ip)?;
        let topology_key = json::req_string(o, "topologyKey", &ip)?;
        let mut selector = label_selector(o, &ip)?;
        fold_label_keys(
            o,
            "matchLabelKeys",
            &ip,
            pod_labels,
            Operator::In,
            &mut selector,
        )?;
        fold_label_keys(
            o,
            "mismatchLabelKeys",
            &ip,
            pod_labels,
            Operator::NotIn,
            &mut selector,
        )?;
        let np = ip.key("namespaces");
        let mut namespaces = Vec::new();
        for (j, n) in json::opt_array(o, "namespaces", &ip)?.iter().enumerate() {
            namespaces.push(json::string(n, &np.index(j))?.to_string());
        }
        out.push(PodAffinityTerm {
            selector,
            topology_key: topology_key.to_string(),
            kind: topology_kind(topology_key),
            namespaces,
        });
    }
    Ok(out)
}

fn toleration(t: &Value, p: &JPath) -> Result<Toleration, FieldError> {
    let o = json::object(t, p)?;
    let key = json::opt_string(o, "key", p)?.unwrap_or("");
    let exists = match json::opt_string(o, "operator", p)? {
        None | Some("") | Some("Equal") => false,
        Some("Exists") => true,
        Some(other) => return Err(p.key("operator").err(format!("unknown operator {other:?}"))),
    };
    let value = json::opt_string(o, "value", p)?.unwrap_or("");
    let effect = match json::opt_string(o, "effect", p)? {
        None | Some("") => None,
        Some(e) => Some(
            TaintEffect::parse(e)
                .ok_or_else(|| p.key("effect").err(format!("unknown effect {e:?}")))?,
        ),
    };
    Ok(Toleration {
        key: key.to_string(),
        exists,
        value: value.to_string(),
        effect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: Value) -> Result<Pod, FieldError> {
        pod_from_json(&json!({"metadata": {"name": "p"}, "spec": spec}))
    }

    #[test]
    fn minimal_pod_defaults() {
        let p = pod(json!({})).unwrap();
        assert_eq!(p.namespace, "default");
        assert_eq!(p.name, "p");
        assert_eq!(p.requests, Resources::new(0, 0, 1));
        assert_eq!(p.priority, 0);
        assert!(p.owner.is_none());
    }

    #[test]
    fn missing_name_is_an_error() {
        let e = pod_from_json(&json!({"metadata": {}})).unwrap_err();
        assert_eq!(e.path, "pod.metadata.name");
    }

    #[test]
    fn numbers_are_quantities() {
        let p =
            pod(json!({"containers": [{"resources": {"requests": {"cpu": 0.5, "memory": 1024}}}]}))
                .unwrap();
        assert_eq!(p.requests.cpu_milli, 500);
        assert_eq!(p.requests.memory, 1024);
    }

    #[test]
    fn negative_and_overflowing_requests_are_errors() {
        let e =
            pod(json!({"containers": [{"resources": {"requests": {"cpu": "-1"}}}]})).unwrap_err();
        assert_eq!(e.path, "pod.spec.containers[0].resources.requests.cpu");
        let big = "9000000000000000000";
        let e = pod(json!({"containers": [
            {"resources": {"requests": {"memory": big}}},
            {"resources": {"requests": {"memory": big}}}
        ]}))
        .unwrap_err();
        assert_eq!(e.path, "pod.spec");
    }

    #[test]
    fn priority_class_names() {
        let p = pod(json!({"priorityClassName": "system-node-critical"})).unwrap();
        assert_eq!(p.priority, SYSTEM_NODE_CRITICAL);
        let p = pod(json!({"priorityClassName": "system-cluster-critical"})).unwrap();
        assert_eq!(p.priority, SYSTEM_CLUSTER_CRITICAL);
        let p = pod(json!({"priorityClassName": "high", "priority": 1000})).unwrap();
        assert_eq!(p.priority, 1000);
        let p = pod(json!({"priorityClassName": "high"})).unwrap();
        assert_eq!(p.priority, 0);
    }
}
