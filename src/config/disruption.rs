//! `spec.disruption` of a NodePool (Karpenter v1 shape, plus `minSavings` and the
//! `Never` policy), validated into `core::disruption::PoolDisruption`.

use super::walk::{self, index, join, Ctx};
use super::yaml::Node;
use crate::core::budget::{NodeBudget, Reason};
use crate::core::cron::Schedule;
use crate::core::disruption::{ConsolidationPolicy, MinSavings, PoolDisruption};
use crate::core::pdb::IntOrPercent;

const P: &str = "spec.disruption";

pub fn parse(ctx: &mut Ctx, node: &Node) -> PoolDisruption {
    let mut d = PoolDisruption::default();
    let allowed = [
        "consolidationPolicy",
        "consolidateAfter",
        "minSavings",
        "budgets",
    ];
    let Some(f) = walk::fields(ctx, node, P, &allowed) else {
        return d;
    };
    if let Some(n) = f.get("consolidationPolicy") {
        let fp = join(P, "consolidationPolicy");
        if let Some(s) = walk::string(ctx, n, &fp) {
            match ConsolidationPolicy::parse(&s) {
                Some(v) => d.policy = v,
                None => ctx.err(
                    n.line,
                    &fp,
                    format!(
                        "unknown consolidation policy {s:?} (expected WhenEmpty, \
                         WhenEmptyOrUnderutilized, Never)"
                    ),
                ),
            }
        }
    }
    if let Some(n) = f.get("consolidateAfter") {
        if let Some(after) = walk::duration_or_never(ctx, n, &join(P, "consolidateAfter")) {
            d.consolidate_after_s = after.map(|a| a.as_secs_f64());
        }
    }
    if let Some(n) = f.get("minSavings") {
        let fp = join(P, "minSavings");
        if let Some(s) = walk::string(ctx, n, &fp) {
            match min_savings(&s) {
                Some(m) => d.min_savings = m,
                None => ctx.err(
                    n.line,
                    &fp,
                    format!("expected a percentage like \"10%\" or dollars per hour like \"$0.05/h\", got {s:?}"),
                ),
            }
        }
    }
    if let Some(n) = f.get("budgets") {
        let bp = join(P, "budgets");
        d.budgets = walk::seq(ctx, n, &bp)
            .iter()
            .enumerate()
            .filter_map(|(i, item)| budget(ctx, item, &index(&bp, i)))
            .collect();
    }
    d
}

/// `"10%"` (of the old node's price) or `"$0.05/h"`.
fn min_savings(s: &str) -> Option<MinSavings> {
    let finite = |v: f64| v.is_finite() && v >= 0.0;
    if let Some(p) = s.strip_suffix('%') {
        let v: f64 = p.trim().parse().ok()?;
        return (finite(v) && v <= 100.0).then_some(MinSavings::Fraction(v / 100.0));
    }
    let dollars = s.strip_prefix('$')?.strip_suffix("/h")?;
    let v: f64 = dollars.trim().parse().ok()?;
    finite(v).then_some(MinSavings::PerHour(v))
}

fn budget(ctx: &mut Ctx, item: &Node, ip: &str) -> Option<NodeBudget> {
    let bf = walk::fields(ctx, item, ip, &["nodes", "schedule", "duration", "reasons"])?;
    let before = ctx.errors.len();
    let nodes = bf.required(ctx, ip, "nodes").and_then(|v| {
        let s = walk::string(ctx, v, &join(ip, "nodes"))?;
        let parsed = match s.strip_suffix('%') {
            Some(p) => p
                .parse::<u32>()
                .ok()
                .filter(|&p| p <= 100)
                .map(IntOrPercent::Percent),
            None => s
                .parse::<u32>()
                .ok()
                .map(|n| IntOrPercent::Int(i64::from(n))),
        };
        if parsed.is_none() {
            ctx.err(
                v.line,
                &join(ip, "nodes"),
                format!("expected a node count or a percentage like \"10%\", got {s:?}"),
            );
        }
        parsed
    });
    let schedule = bf.get("schedule").and_then(|v| {
        let sp = join(ip, "schedule");
        let s = walk::string(ctx, v, &sp)?;
        Schedule::parse(&s)
            .map_err(|e| ctx.err(v.line, &sp, format!("invalid cron schedule {s:?}: {e}")))
            .ok()
    });
    let duration = bf
        .get("duration")
        .and_then(|v| walk::duration(ctx, v, &join(ip, "duration")));
    if bf.get("schedule").is_some() != bf.get("duration").is_some() {
        ctx.err(bf.line, ip, "schedule and duration must be given together");
    }
    let reasons = bf.get("reasons").map_or_else(Vec::new, |v| {
        let rp = join(ip, "reasons");
        let mut out = Vec::new();
        for r in walk::strings(ctx, v, &rp) {
            match Reason::parse(&r) {
                Some(reason) => out.push(reason),
                None => ctx.err(
                    v.line,
                    &rp,
                    format!(
                        "unknown reason {r:?} (expected Empty, Drifted, Underutilized, Expired)"
                    ),
                ),
            }
        }
        out
    });
    if ctx.errors.len() > before {
        return None;
    }
    Some(NodeBudget {
        nodes: nodes?,
        schedule: schedule.zip(duration.map(|d| d.as_secs() as i64)),
        reasons,
    })
}
