//! Pre-existing capacity from a `v1.Node` (`node_added` events).

use super::json::{self, JPath};
use super::pod::FieldError;
use crate::core::labels::Labels;
use crate::core::quantity;
use crate::core::resources::Resources;
use crate::core::taints::{Taint, TaintEffect};
use serde_json::{Map, Value};

/// A node the autoscaler does not manage (e.g. a static node group).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaticNode {
    pub name: String,
    pub labels: Labels,
    /// `status.allocatable`: `cpu` in millicores, `memory`/`ephemeral-storage` in bytes,
    /// `pods` (default [`DEFAULT_MAX_PODS`]), and every other name as an extended resource.
    pub allocatable: Resources,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
}

/// The kubelet's default `--max-pods`, used when `status.allocatable` has no `pods`.
pub const DEFAULT_MAX_PODS: i64 = 110;

/// Converts a `v1.Node` JSON object. Error paths start with `node.`.
pub fn node_from_json(v: &Value) -> Result<StaticNode, FieldError> {
    node_at(v, &JPath::root("node"))
}

pub(crate) fn node_at(v: &Value, p: &JPath) -> Result<StaticNode, FieldError> {
    let obj = json::object(v, p)?;
    let empty = Map::new();
    let meta = json::opt_object(obj, "metadata", p)?.unwrap_or(&empty);
    let mp = p.key("metadata");
    let name = json::req_string(meta, "name", &mp)?;
    if name.is_empty() {
        return Err(mp.key("name").err("must not be empty"));
    }
    let labels = json::string_map(meta, "labels", &mp)?;

    let status = json::opt_object(obj, "status", p)?.unwrap_or(&empty);
    let stp = p.key("status");
    let ap = stp.key("allocatable");
    let alloc = match json::get(status, "allocatable") {
        None => return Err(ap.missing()),
        Some(v) => json::object(v, &ap)?,
    };
    // A node that does not report `pods` gets the kubelet's default `--max-pods`.
    let mut allocatable = Resources {
        pods: DEFAULT_MAX_PODS,
        ..Default::default()
    };
    for (k, v) in alloc {
        let qp = ap.key(k);
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Null => continue,
            other => {
                return Err(qp.err(format!(
                    "expected a quantity string, found {}",
                    json::show(other)
                )))
            }
        };
        let n = quantity::parse_resource(k, &s).map_err(|e| {
            qp.err(format!(
                "invalid quantity {}: {}",
                json::show(&Value::String(e.input)),
                e.reason
            ))
        })?;
        if n < 0 {
            return Err(qp.err(format!("negative quantity {s:?}")));
        }
        allocatable.set(k, n);
    }

    let spec = json::opt_object(obj, "spec", p)?.unwrap_or(&empty);
    let sp = p.key("spec");
    let tp = sp.key("taints");
    let mut taints = Vec::new();
    for (i, t) in json::opt_array(spec, "taints", &sp)?.iter().enumerate() {
        let ip = tp.index(i);
        let o = json::object(t, &ip)?;
        let key = json::req_string(o, "key", &ip)?;
        let value = json::opt_string(o, "value", &ip)?.unwrap_or("");
        let e = json::req_string(o, "effect", &ip)?;
        let effect = TaintEffect::parse(e)
            .ok_or_else(|| ip.key("effect").err(format!("unknown effect {e:?}")))?;
        taints.push(Taint {
            key: key.to_string(),
            value: value.to_string(),
            effect,
        });
    }
    Ok(StaticNode {
        name: name.to_string(),
        labels,
        allocatable,
        taints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_node() {
        let n = node_from_json(&json!({
            "metadata": {"name": "static-1", "labels": {"topology.kubernetes.io/zone": "us-east-1a"}},
            "spec": {"taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "3920m", "memory": "15Gi", "pods": "58",
                "ephemeral-storage": "95G", "hugepages-2Mi": "0", "nvidia.com/gpu": "1"}}
        }))
        .unwrap();
        assert_eq!(n.name, "static-1");
        assert_eq!(n.allocatable.cpu_milli, 3920);
        assert_eq!(n.allocatable.memory, 15 << 30);
        assert_eq!(n.allocatable.pods, 58);
        assert_eq!(n.allocatable.ephemeral, 95_000_000_000);
        assert_eq!(n.allocatable.extended, vec![("nvidia.com/gpu".into(), 1)]);
        assert_eq!(n.taints[0].effect, TaintEffect::NoSchedule);
        assert_eq!(n.labels["topology.kubernetes.io/zone"], "us-east-1a");
    }

    #[test]
    fn allocatable_is_required() {
        let e = node_from_json(&json!({"metadata": {"name": "n"}})).unwrap_err();
        assert_eq!(e.path, "node.status.allocatable");
        let e = node_from_json(&json!({"metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": "lots"}}}))
        .unwrap_err();
        assert_eq!(e.path, "node.status.allocatable.cpu");
        let n = node_from_json(&json!({"metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": "1"}}}))
        .unwrap();
        assert_eq!(n.allocatable.pods, DEFAULT_MAX_PODS);
    }
}
