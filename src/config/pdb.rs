//! `kind: PodDisruptionBudget` documents (Kubernetes `policy/v1`), so the simulator (which
//! has no API server) knows the budgets its evictions must respect.

use super::walk::{self, index, join, Ctx};
use super::yaml::Node;
use crate::core::pdb::{Budget, IntOrPercent, PodDisruptionBudget};
use crate::core::requirements::{LabelSelector, Operator, Requirement};

/// The apiVersion a PodDisruptionBudget document carries.
pub const PDB_API_VERSION: &str = "policy/v1";

/// Parses a whole document (apiVersion and kind already checked); `None` on any error.
pub fn parse(ctx: &mut Ctx, root: &Node) -> Option<PodDisruptionBudget> {
    let before = ctx.errors.len();
    let f = walk::fields(
        ctx,
        root,
        "",
        &["apiVersion", "kind", "metadata", "spec", "status"],
    )?;
    let md = f.required(ctx, "", "metadata").and_then(|m| {
        walk::fields(
            ctx,
            m,
            "metadata",
            &["name", "namespace", "labels", "annotations"],
        )
    });
    let name = md
        .as_ref()
        .and_then(|m| m.required(ctx, "metadata", "name"))
        .and_then(|n| walk::string(ctx, n, "metadata.name"));
    let namespace = md
        .as_ref()
        .and_then(|m| m.get("namespace"))
        .and_then(|n| walk::string(ctx, n, "metadata.namespace"))
        .unwrap_or_else(|| "default".into());
    let spec = f.required(ctx, "", "spec").and_then(|s| {
        walk::fields(
            ctx,
            s,
            "spec",
            &[
                "selector",
                "minAvailable",
                "maxUnavailable",
                "unhealthyPodEvictionPolicy",
            ],
        )
    });
    let mut budget = None;
    let mut selector = None;
    if let Some(spec) = &spec {
        let (min_node, max_node) = (spec.get("minAvailable"), spec.get("maxUnavailable"));
        let min = min_node.and_then(|v| int_or_percent(ctx, v, "spec.minAvailable"));
        let max = max_node.and_then(|v| int_or_percent(ctx, v, "spec.maxUnavailable"));
        match (min_node.is_some(), max_node.is_some()) {
            (true, true) => ctx.err(
                spec.line,
                "spec",
                "minAvailable and maxUnavailable cannot both be set",
            ),
            (false, false) => ctx.err(
                spec.line,
                "spec",
                "one of minAvailable or maxUnavailable is required",
            ),
            _ => {}
        }
        budget = match (min, max) {
            (Some(m), None) => Some(Budget::MinAvailable(m)),
            (None, Some(m)) => Some(Budget::MaxUnavailable(m)),
            _ => None,
        };
        selector = spec
            .required(ctx, "spec", "selector")
            .and_then(|s| label_selector(ctx, s, "spec.selector"));
    }
    if ctx.errors.len() > before {
        return None;
    }
    Some(PodDisruptionBudget {
        namespace,
        name: name?,
        selector: selector?,
        budget: budget?,
    })
}

/// An integer (`2`, `"2"`) or a percentage (`"50%"`), never negative.
fn int_or_percent(ctx: &mut Ctx, node: &Node, path: &str) -> Option<IntOrPercent> {
    let text = walk::string(ctx, node, path)?;
    let parsed = match text.strip_suffix('%') {
        Some(p) => p
            .parse::<u32>()
            .ok()
            .filter(|&p| p <= 100)
            .map(IntOrPercent::Percent),
        None => text
            .parse::<u32>()
            .ok()
            .map(|n| IntOrPercent::Int(i64::from(n))),
    };
    if parsed.is_none() {
        ctx.err(
            node.line,
            path,
            format!("expected a non-negative integer or a percentage like \"50%\", got {text:?}"),
        );
    }
    parsed
}

fn label_selector(ctx: &mut Ctx, node: &Node, path: &str) -> Option<LabelSelector> {
    let f = walk::fields(ctx, node, path, &["matchLabels", "matchExpressions"])?;
    let mut sel = LabelSelector::default();
    if let Some(l) = f.get("matchLabels") {
        sel.match_labels = walk::labels(ctx, l, &join(path, "matchLabels"))
            .into_iter()
            .collect();
    }
    if let Some(e) = f.get("matchExpressions") {
        let ep = join(path, "matchExpressions");
        for (i, item) in walk::seq(ctx, e, &ep).iter().enumerate() {
            if let Some(r) = expression(ctx, item, &index(&ep, i)) {
                sel.match_expressions.push(r);
            }
        }
    }
    Some(sel)
}

fn expression(ctx: &mut Ctx, node: &Node, p: &str) -> Option<Requirement> {
    let f = walk::fields(ctx, node, p, &["key", "operator", "values"])?;
    let key = f
        .required(ctx, p, "key")
        .and_then(|k| walk::string(ctx, k, &join(p, "key")));
    let op_node = f.required(ctx, p, "operator");
    let op = op_node.and_then(|o| {
        let s = walk::string(ctx, o, &join(p, "operator"))?;
        // A label selector takes only these four (no Gt/Lt).
        let op = Operator::parse(&s).filter(|o| {
            matches!(
                o,
                Operator::In | Operator::NotIn | Operator::Exists | Operator::DoesNotExist
            )
        });
        if op.is_none() {
            ctx.err(
                o.line,
                &join(p, "operator"),
                format!("unknown operator {s:?} (expected In, NotIn, Exists, DoesNotExist)"),
            );
        }
        op
    });
    let values = f
        .get("values")
        .map_or_else(Vec::new, |v| walk::strings(ctx, v, &join(p, "values")));
    let op = op?;
    let needs_values = matches!(op, Operator::In | Operator::NotIn);
    if needs_values == values.is_empty() {
        let line = op_node.map_or(f.line, |n| n.line);
        let msg = if needs_values {
            "needs at least one value"
        } else {
            "takes no values"
        };
        ctx.err(line, &join(p, "values"), format!("{} {msg}", op.as_str()));
        return None;
    }
    Some(Requirement {
        key: key?,
        operator: op,
        values,
    })
}
