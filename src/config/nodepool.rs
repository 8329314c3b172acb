//! `kind: NodePool` documents: the Karpenter v1 NodePool shape, validated and turned into
//! `core::nodepool::NodePool` plus the fields the core type does not (yet) carry.

use super::walk::{self, index, join, Ctx, Fields};
use super::yaml::{Node, Value};
use crate::core::disruption::PoolDisruption;
use crate::core::labels::{self, Labels};
use crate::core::nodepool::{NodePool, PoolLimits};
use crate::core::requirements::{Operator, Requirement};
use std::time::Duration;

pub use crate::core::disruption::ConsolidationPolicy;

/// Default `consolidateAfter`.
pub const DEFAULT_CONSOLIDATE_AFTER: Duration = Duration::from_secs(30);
/// Default `expireAfter` (Karpenter v1's default, 30 days).
pub const DEFAULT_EXPIRE_AFTER: Duration = Duration::from_secs(720 * 3600);

/// What a `kind: NodePool` document says beyond `core::nodepool::NodePool`.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePoolExtras {
    pub name: String,
    /// `spec.disruption` and `spec.template.spec.expireAfter`, validated for the core.
    pub disruption: PoolDisruption,
    /// `spec.template.spec.terminationGracePeriod`. Stored, not yet acted on.
    pub termination_grace_period: Option<Duration>,
    /// `minValues` of requirements, by requirement key. Stored, not yet enforced.
    pub min_values: Vec<(String, u32)>,
    /// `spec.template.metadata.annotations`.
    pub annotations: Labels,
    /// `spec.headroom` (a stevedore extension): utilization targets and spare capacity.
    /// `None` when the pool has no such block. Parsed by `config::headroom`.
    pub headroom: Option<crate::core::headroom::HeadroomPolicy>,
    /// Where the pool is defined: file and line of `metadata.name`.
    pub file: String,
    pub line: usize,
}

const OPERATORS: &str = "In, NotIn, Exists, DoesNotExist, Gt, Lt";

/// Keys any requirement may use, besides the pool's template labels.
pub fn is_well_known_key(key: &str) -> bool {
    const FIXED: &[&str] = &[
        labels::INSTANCE_TYPE,
        labels::INSTANCE_TYPE_BETA,
        labels::ZONE,
        labels::ZONE_BETA,
        labels::REGION,
        labels::ARCH,
        labels::OS,
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        labels::KARPENTER_CAPACITY_TYPE,
        labels::KARPENTER_NODEPOOL,
        labels::CAPACITY_TYPE,
        labels::NODEPOOL,
    ];
    if FIXED.contains(&key) {
        return true;
    }
    let attr = key
        .strip_prefix(labels::KARPENTER_AWS_PREFIX)
        .or_else(|| key.strip_prefix(labels::STEVEDORE_PREFIX));
    attr.is_some_and(|a| labels::INSTANCE_ATTRIBUTES.contains(&a))
}

/// Allowed values for keys with a closed set of values.
fn closed_values(key: &str) -> Option<&'static [&'static str]> {
    if labels::is_capacity_type_key(key) {
        Some(&["spot", "on-demand"])
    } else if key == labels::ARCH || key == "beta.kubernetes.io/arch" {
        Some(&["amd64", "arm64"])
    } else if key == labels::OS || key == "beta.kubernetes.io/os" {
        Some(&["linux", "windows"])
    } else {
        None
    }
}

/// Parses `metadata`, returning the name and its line.
fn metadata_name(ctx: &mut Ctx, root: &Fields) -> Option<(String, usize)> {
    let md = root.required(ctx, "", "metadata")?;
    let f = walk::fields(
        ctx,
        md,
        "metadata",
        &[
            "name",
            "labels",
            "annotations",
            // Written by the API server: tolerated so `kubectl get -o yaml` output loads.
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
            "finalizers",
        ],
    )?;
    let n = f.required(ctx, "metadata", "name")?;
    let name = walk::string(ctx, n, "metadata.name")?;
    if !walk::is_dns1123_subdomain(&name) || name.len() > 63 {
        ctx.err(
            n.line,
            "metadata.name",
            format!(
                "invalid name {name:?}: must be a DNS-1123 subdomain (lowercase letters, digits, \
                 '-' and '.', starting and ending alphanumeric) of at most 63 characters, as it \
                 becomes a label value"
            ),
        );
    }
    if let Some(l) = f.get("labels") {
        walk::labels(ctx, l, "metadata.labels");
    }
    if let Some(a) = f.get("annotations") {
        walk::entries(ctx, a, "metadata.annotations");
    }
    Some((name, n.line))
}

/// The document's name, for error messages, read without reporting anything.
pub fn peek_name(root: &Node) -> Option<String> {
    let md = lookup(root, "metadata")?;
    match &lookup(md, "name")?.value {
        Value::Scalar { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// A mapping's value for `key`, read without reporting anything.
pub fn lookup<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    let Value::Map(pairs) = &node.value else {
        return None;
    };
    pairs.iter().find(|(k, _)| key_is(k, key)).map(|(_, v)| v)
}

fn key_is(n: &Node, key: &str) -> bool {
    matches!(&n.value, Value::Scalar { text, .. } if text == key)
}

/// Parses a whole `kind: NodePool` document (apiVersion and kind already checked).
/// Returns `None` when any error was found.
pub fn parse(ctx: &mut Ctx, root: &Node) -> Option<(NodePool, NodePoolExtras)> {
    let before = ctx.errors.len();
    let f = walk::fields(
        ctx,
        root,
        "",
        &["apiVersion", "kind", "metadata", "spec", "status"],
    )?;
    let name = metadata_name(ctx, &f);
    let spec = f.required(ctx, "", "spec");
    let spec = spec.and_then(|s| {
        walk::fields(
            ctx,
            s,
            "spec",
            &["weight", "template", "limits", "disruption", "headroom"],
        )
    });
    let mut weight = 0;
    let mut limits = PoolLimits::default();
    let mut disruption = PoolDisruption::default();
    let mut tmpl = Template::default();
    let mut headroom = None;
    if let Some(spec) = &spec {
        if let Some(h) = spec.get("headroom") {
            headroom = super::headroom::parse(ctx, h);
        }
        if let Some(w) = spec.get("weight") {
            weight = walk::int_in(ctx, w, "spec.weight", 0, 100).unwrap_or(0) as i32;
        }
        match spec.get("template") {
            Some(t) => tmpl = template(ctx, t),
            None => ctx.err(spec.line, "spec", "missing required field \"template\""),
        }
        if let Some(l) = spec.get("limits") {
            limits = pool_limits(ctx, l);
        }
        if let Some(d) = spec.get("disruption") {
            disruption = super::disruption::parse(ctx, d);
        }
    }
    if ctx.errors.len() > before {
        return None;
    }
    let (name, name_line) = name?;
    disruption.expire_after_s = tmpl.expire_after.map(|d| d.as_secs_f64());
    // An empty node goes after `consolidateAfter`, unless the pool never consolidates.
    let empty_after = disruption.consolidate_after().map(Duration::from_secs_f64);
    let pool = NodePool {
        name: name.clone(),
        weight,
        requirements: tmpl.requirements,
        labels: tmpl.labels,
        taints: tmpl.taints,
        startup_taints: tmpl.startup_taints,
        limits,
        empty_node_after: empty_after,
    };
    let extras = NodePoolExtras {
        name,
        disruption,
        termination_grace_period: tmpl.termination_grace_period,
        min_values: tmpl.min_values,
        annotations: tmpl.annotations,
        headroom,
        file: ctx.file.to_string(),
        line: name_line,
    };
    Some((pool, extras))
}

struct Template {
    requirements: Vec<Requirement>,
    labels: Labels,
    annotations: Labels,
    taints: Vec<crate::core::taints::Taint>,
    startup_taints: Vec<crate::core::taints::Taint>,
    expire_after: Option<Duration>,
    termination_grace_period: Option<Duration>,
    min_values: Vec<(String, u32)>,
}

impl Default for Template {
    fn default() -> Self {
        Template {
            requirements: Vec::new(),
            labels: Labels::new(),
            annotations: Labels::new(),
            taints: Vec::new(),
            startup_taints: Vec::new(),
            expire_after: Some(DEFAULT_EXPIRE_AFTER),
            termination_grace_period: None,
            min_values: Vec::new(),
        }
    }
}

fn template(ctx: &mut Ctx, node: &Node) -> Template {
    let mut t = Template::default();
    let p = "spec.template";
    let Some(f) = walk::fields(ctx, node, p, &["metadata", "spec"]) else {
        return t;
    };
    if let Some(md) = f.get("metadata") {
        let mp = "spec.template.metadata";
        if let Some(mf) = walk::fields(ctx, md, mp, &["labels", "annotations"]) {
            if let Some(l) = mf.get("labels") {
                t.labels = walk::labels(ctx, l, &join(mp, "labels"));
            }
            if let Some(a) = mf.get("annotations") {
                for (k, _, v) in walk::entries(ctx, a, &join(mp, "annotations")) {
                    if let Some(s) = walk::string(ctx, v, &join(mp, &format!("annotations.{k}"))) {
                        t.annotations.insert(k.to_string(), s);
                    }
                }
            }
        }
    }
    let sp = "spec.template.spec";
    let Some(s) = f.required(ctx, p, "spec") else {
        return t;
    };
    let Some(sf) = walk::fields(
        ctx,
        s,
        sp,
        &[
            "requirements",
            "taints",
            "startupTaints",
            "expireAfter",
            "terminationGracePeriod",
            "nodeClassRef",
        ],
    ) else {
        return t;
    };
    if let Some(ts) = sf.get("taints") {
        t.taints = walk::taints(ctx, ts, &join(sp, "taints"));
    }
    if let Some(ts) = sf.get("startupTaints") {
        t.startup_taints = walk::taints(ctx, ts, &join(sp, "startupTaints"));
    }
    if let Some(e) = sf.get("expireAfter") {
        if let Some(d) = walk::duration_or_never(ctx, e, &join(sp, "expireAfter")) {
            t.expire_after = d;
        }
    }
    if let Some(e) = sf.get("terminationGracePeriod") {
        t.termination_grace_period = walk::duration(ctx, e, &join(sp, "terminationGracePeriod"));
    }
    if let Some(r) = sf.get("nodeClassRef") {
        // Karpenter needs it; stevedore has no node classes yet, so it is only checked.
        walk::fields(
            ctx,
            r,
            &join(sp, "nodeClassRef"),
            &["group", "kind", "name"],
        );
    }
    if let Some(r) = sf.get("requirements") {
        let rp = join(sp, "requirements");
        for (i, item) in walk::seq(ctx, r, &rp).iter().enumerate() {
            if let Some((req, min)) = requirement(ctx, item, &index(&rp, i), &t.labels) {
                if let Some(m) = min {
                    t.min_values.push((req.key.clone(), m));
                }
                t.requirements.push(req);
            }
        }
    }
    t
}

fn requirement(
    ctx: &mut Ctx,
    node: &Node,
    p: &str,
    template_labels: &Labels,
) -> Option<(Requirement, Option<u32>)> {
    let f = walk::fields(ctx, node, p, &["key", "operator", "values", "minValues"])?;
    let before = ctx.errors.len();
    let key = f.required(ctx, p, "key").and_then(|n| {
        let k = walk::string(ctx, n, &join(p, "key"))?;
        if labels::is_hostname_key(&k) {
            ctx.err(
                n.line,
                &join(p, "key"),
                format!("{k:?} cannot be a node pool requirement (every node has its own)"),
            );
        } else if !is_well_known_key(&k) && !template_labels.contains_key(&k) {
            ctx.err(
                n.line,
                &join(p, "key"),
                format!(
                    "unknown requirement key {k:?}: use a well-known label (kubernetes.io/arch, \
                     topology.kubernetes.io/zone, karpenter.sh/capacity-type, \
                     karpenter.k8s.aws/instance-*, ...) or a label defined in \
                     spec.template.metadata.labels"
                ),
            );
        }
        Some(k)
    });
    let op = f.required(ctx, p, "operator").and_then(|n| {
        let s = walk::string(ctx, n, &join(p, "operator"))?;
        let op = Operator::parse(&s);
        if op.is_none() {
            ctx.err(
                n.line,
                &join(p, "operator"),
                format!("unknown operator {s:?} (expected {OPERATORS})"),
            );
        }
        op
    });
    let values_node = f.get("values");
    let values = values_node.map_or_else(Vec::new, |n| walk::strings(ctx, n, &join(p, "values")));
    let vline = values_node.map_or(f.line, |n| n.line);
    let vp = join(p, "values");
    if let Some(op) = op {
        match op {
            Operator::In | Operator::NotIn if values.is_empty() => {
                ctx.err(
                    vline,
                    &vp,
                    format!("{} needs at least one value", op.as_str()),
                );
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                ctx.err(vline, &vp, format!("{} takes no values", op.as_str()));
            }
            Operator::Gt | Operator::Lt => {
                if values.len() != 1 {
                    ctx.err(
                        vline,
                        &vp,
                        format!(
                            "{} needs exactly one integer value, got {}",
                            op.as_str(),
                            values.len()
                        ),
                    );
                } else if values[0].parse::<i64>().is_err() {
                    ctx.err(
                        vline,
                        &vp,
                        format!(
                            "{} needs an integer value, got {:?}",
                            op.as_str(),
                            values[0]
                        ),
                    );
                }
            }
            _ => {}
        }
        if let (Some(k), Operator::In | Operator::NotIn) = (&key, op) {
            if let Some(allowed) = closed_values(k) {
                for v in &values {
                    if !allowed.contains(&v.as_str()) {
                        ctx.err(
                            vline,
                            &vp,
                            format!(
                                "{v:?} is not a value of {k} (expected {})",
                                allowed.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }
    let min = f
        .get("minValues")
        .and_then(|n| walk::int_in(ctx, n, &join(p, "minValues"), 1, 50).map(|v| v as u32));
    if ctx.errors.len() > before {
        return None;
    }
    Some((
        Requirement {
            key: key?,
            operator: op?,
            values,
        },
        min,
    ))
}

fn pool_limits(ctx: &mut Ctx, node: &Node) -> PoolLimits {
    let mut l = PoolLimits::default();
    let p = "spec.limits";
    for (name, line, v) in walk::entries(ctx, node, p) {
        let fp = join(p, name);
        match name {
            "cpu" => l.cpu_milli = walk::cpu(ctx, v, &fp),
            "memory" => l.memory = walk::units(ctx, v, &fp),
            _ if name.contains('/') && walk::is_qualified_name(name) => {
                if let Some(q) = walk::units(ctx, v, &fp) {
                    l.extended.push((name.to_string(), q));
                }
            }
            _ => ctx.err(
                line,
                &fp,
                format!(
                    "unsupported limit {name:?} (expected cpu, memory or an extended resource \
                     such as nvidia.com/gpu)"
                ),
            ),
        }
    }
    l.extended.sort();
    l
}
