//! The replay's report: `--report-json` (per `docs/sim-report.md`) and the summary
//! printed on stdout.

use serde::Serialize;
use std::fmt::Write as _;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub version: u32,
    pub mode: String,
    pub seed: u64,
    pub trace: TraceInfo,
    pub pods: PodCounts,
    pub pending_s: Percentiles,
    pub cost_usd: Cost,
    pub nodes: NodeCounts,
    pub utilization: Utilization,
    pub disruptions: Disruptions,
    pub decision_ms: Percentiles,
    pub decisions: u64,
    pub wall_s: f64,
    /// Pods no offering could ever hold, with the reason (at most 20 listed).
    pub infeasible_pods: Vec<InfeasiblePod>,
    /// Nodes launched by instance type and capacity type, most first.
    pub launched_by_type: Vec<TypeCount>,
    /// What the pools' `spec.headroom` held and cost (zeros without headroom).
    pub headroom: Headroom,
    #[serde(skip)]
    pub series: Vec<Sample>,
    #[serde(skip)]
    pub marks: Vec<Mark>,
}

/// Headroom figures, time-weighted over the time some pool had a headroom policy.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Headroom {
    /// Node pools with `spec.headroom`.
    pub pools: u64,
    /// Mean spare CPU the policies asked for (cores, summed over the pools).
    pub spare_cpu_mean: f64,
    /// Mean free CPU on the headroom pools' nodes (cores).
    pub free_cpu_mean: f64,
    /// Lowest free CPU of a headroom pool at a settled scan (nothing pending, nothing
    /// launching); `null` when there was none.
    pub free_cpu_min_settled: Option<f64>,
    /// Cost of the capacity held free for headroom: each pool's hourly cost times the
    /// share of its allocatable (the larger of cpu and memory) that is free and within the
    /// spare asked for, integrated over time.
    pub cost_usd: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TraceInfo {
    pub name: String,
    pub events: usize,
    pub duration_s: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PodCounts {
    pub total: u64,
    pub placed: u64,
    pub never_placed: u64,
    pub infeasible: u64,
    pub daemonset_templates: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(values: &mut [f64]) -> Self {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((values.len() as f64 - 1.0) * q).round() as usize;
            round3(values[i])
        };
        Percentiles {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: round3(values[values.len() - 1]),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Cost {
    pub total: f64,
    pub spot: f64,
    pub on_demand: f64,
    pub lower_bound: f64,
    /// `total / lower_bound`.
    pub ratio_to_lower_bound: f64,
    /// The shape-aware bound: every pod whole (see `core::shape_bound`).
    pub shape_bound: f64,
    /// `total / shape_bound`.
    pub ratio_to_shape_bound: f64,
    /// The shape bound with each pod's node constraints (taints, node selector, required
    /// node affinity; see `core::constrained_bound`).
    pub constrained_bound: f64,
    /// `total / constrained_bound`.
    pub ratio_to_constrained_bound: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeCounts {
    pub launched: u64,
    pub terminated: u64,
    pub peak: u64,
    pub launch_failures: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Utilization {
    pub cpu: f64,
    pub memory: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Disruptions {
    /// Nodes removed to save cost: `empty + deleted + replaced + multi_node` (fleet), or
    /// empty and underutilized nodes (node-groups).
    pub consolidated: u64,
    /// Of `consolidated`, nodes that were empty (no pod evicted).
    pub empty: u64,
    /// Non-empty nodes deleted because their pods fit on the other nodes.
    pub deleted: u64,
    /// Nodes replaced by one cheaper node.
    pub replaced: u64,
    /// Nodes removed together by one multi-node consolidation.
    pub multi_node: u64,
    pub expired: u64,
    pub drifted: u64,
    /// NotReady nodes replaced (the simulator has no NotReady events: always 0 there).
    pub repaired: u64,
    pub interrupted: u64,
    pub pods_evicted: u64,
    /// Evictions that left a PodDisruptionBudget short, by an independent check at
    /// eviction time.
    pub pdb_violations: u64,
    /// Evictions of pods that forbid them (do-not-disrupt, safe-to-evict "false", no
    /// controller), by an independent check.
    pub do_not_disrupt_evicted: u64,
    /// Hours of autoscaler-managed nodes.
    pub node_hours: f64,
    /// Voluntary disruptions of non-empty nodes (deleted, replaced, multi-node, expired,
    /// drifted) per managed node-hour.
    pub disruptions_per_node_hour: f64,
    /// The shortest time a consolidated node had been stable (no pod arrived or left)
    /// when it was chosen; never below the pool's `consolidateAfter`.
    pub min_stable_s_at_consolidation: Option<f64>,
    /// Pods on interrupted Spot nodes, and from the warning until each ran again.
    pub interrupted_pods: u64,
    pub interruption_recovery_s: Percentiles,
}

/// A disruption on the chart's time line.
#[derive(Clone, Debug)]
pub struct Mark {
    pub t: f64,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct InfeasiblePod {
    pub pod: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct TypeCount {
    pub instance_type: String,
    pub capacity_type: String,
    pub count: u64,
}

/// One point of the chart's time series.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub t: f64,
    pub nodes: u32,
    pub cost_per_hour: f64,
    pub lower_bound_per_hour: f64,
    pub shape_bound_per_hour: f64,
    pub pending: u32,
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn hours(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.0} s", s)
    }
}

/// The readable summary: one column per run.
pub fn summary(reports: &[Report]) -> String {
    let mut out = String::new();
    let Some(first) = reports.first() else {
        return out;
    };
    let _ = writeln!(
        out,
        "trace {:?}: {} events over {} ({} pods)\n",
        first.trace.name,
        first.trace.events,
        hours(first.trace.duration_s),
        first.pods.total
    );
    type Row<'a> = (&'a str, Box<dyn Fn(&Report) -> String>);
    let rows: Vec<Row> = vec![
        ("mode", Box::new(|r| r.mode.clone())),
        (
            "total cost",
            Box::new(|r| format!("${:.2}", r.cost_usd.total)),
        ),
        (
            "  spot / on-demand",
            Box::new(|r| format!("${:.2} / ${:.2}", r.cost_usd.spot, r.cost_usd.on_demand)),
        ),
        (
            "shape bound / fluid bound",
            Box::new(|r| {
                format!(
                    "${:.2} / ${:.2}",
                    r.cost_usd.shape_bound, r.cost_usd.lower_bound
                )
            }),
        ),
        (
            "cost / shape bound",
            Box::new(|r| format!("{:.3}x", r.cost_usd.ratio_to_shape_bound)),
        ),
        (
            "constrained bound",
            Box::new(|r| {
                format!(
                    "${:.2} ({:.3}x)",
                    r.cost_usd.constrained_bound, r.cost_usd.ratio_to_constrained_bound
                )
            }),
        ),
        (
            "cost / fluid bound",
            Box::new(|r| format!("{:.3}x", r.cost_usd.ratio_to_lower_bound)),
        ),
        (
            "pods placed",
            Box::new(|r| format!("{} of {}", r.pods.placed, r.pods.total)),
        ),
        (
            "never placed (infeasible)",
            Box::new(|r| format!("{} ({})", r.pods.never_placed, r.pods.infeasible)),
        ),
        (
            "pending p50 / p99 / max",
            Box::new(|r| {
                format!(
                    "{:.0}s / {:.0}s / {:.0}s",
                    r.pending_s.p50, r.pending_s.p99, r.pending_s.max
                )
            }),
        ),
        (
            "nodes launched / peak",
            Box::new(|r| format!("{} / {}", r.nodes.launched, r.nodes.peak)),
        ),
        (
            "launch failures",
            Box::new(|r| r.nodes.launch_failures.to_string()),
        ),
        (
            "utilization cpu / mem",
            Box::new(|r| {
                format!(
                    "{:.0}% / {:.0}%",
                    r.utilization.cpu * 100.0,
                    r.utilization.memory * 100.0
                )
            }),
        ),
        (
            "removed (empty) / interrupted",
            Box::new(|r| {
                format!(
                    "{} ({}) / {}",
                    r.disruptions.consolidated, r.disruptions.empty, r.disruptions.interrupted
                )
            }),
        ),
        (
            "deleted / replaced / multi-node",
            Box::new(|r| {
                let d = &r.disruptions;
                format!("{} / {} / {}", d.deleted, d.replaced, d.multi_node)
            }),
        ),
        (
            "expired / drifted",
            Box::new(|r| format!("{} / {}", r.disruptions.expired, r.disruptions.drifted)),
        ),
        (
            "pods evicted",
            Box::new(|r| r.disruptions.pods_evicted.to_string()),
        ),
        (
            "disruptions / node-hour",
            Box::new(|r| format!("{:.3}", r.disruptions.disruptions_per_node_hour)),
        ),
        (
            "PDB violations",
            Box::new(|r| r.disruptions.pdb_violations.to_string()),
        ),
        (
            "headroom pools / cost",
            Box::new(|r| format!("{} / ${:.2}", r.headroom.pools, r.headroom.cost_usd)),
        ),
        (
            "decision p50 / p99 / max",
            Box::new(|r| {
                format!(
                    "{:.2} / {:.2} / {:.2} ms",
                    r.decision_ms.p50, r.decision_ms.p99, r.decision_ms.max
                )
            }),
        ),
        (
            "replay wall time",
            Box::new(|r| format!("{:.2} s", r.wall_s)),
        ),
    ];
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, f) in &rows {
        let _ = write!(out, "{name:<width$}");
        for r in reports {
            let _ = write!(out, "  {:>22}", f(r));
        }
        out.push('\n');
    }
    for r in reports {
        if !r.launched_by_type.is_empty() {
            let top: Vec<String> = r
                .launched_by_type
                .iter()
                .take(6)
                .map(|t| format!("{} {} x{}", t.instance_type, t.capacity_type, t.count))
                .collect();
            let _ = writeln!(out, "\n{}: most launched: {}", r.mode, top.join(", "));
        }
        if !r.infeasible_pods.is_empty() {
            let _ = writeln!(
                out,
                "\n{}: infeasible pods (no offering can ever hold them):",
                r.mode
            );
            for p in &r.infeasible_pods {
                let _ = writeln!(out, "  {}: {}", p.pod, p.reason);
            }
        }
    }
    if let [a, b] = reports {
        if a.cost_usd.total > 0.0 && b.cost_usd.total > 0.0 {
            let _ = writeln!(
                out,
                "\n{} costs {:.1}% {} than {}",
                a.mode,
                ((a.cost_usd.total - b.cost_usd.total) / b.cost_usd.total * 100.0).abs(),
                if a.cost_usd.total <= b.cost_usd.total {
                    "less"
                } else {
                    "more"
                },
                b.mode
            );
        }
    }
    out
}
