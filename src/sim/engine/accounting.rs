//! What the report is made of: the cost, bound and utilization integrals over virtual
//! time (`advance`), the chart's samples at each scan, and the final `Report`.

use super::state::{FleetTotals, NodeState, Sim};
use crate::core::instance::CapacityType;
use crate::core::resources::Resources;
use crate::core::shape_bound::Mix;
use crate::sim::report::{
    round2, round3, Cost, Disruptions, InfeasiblePod, Percentiles, PodCounts, Report, Sample,
    TraceInfo, TypeCount, Utilization,
};
use crate::trace::Trace;
use std::time::Instant;

impl Sim<'_> {
    /// Integrates cost-rate figures over `[now, t]`.
    pub(super) fn advance(&mut self, t: f64) {
        let dt = t - self.now;
        if dt <= 0.0 {
            return;
        }
        if self.demand_dirty {
            self.ensure_models();
            let lb = self.lower_bound.as_mut().expect("models built");
            // The bound counts cpu, memory, pods and extended resources (sim-report.md).
            let demand = Resources {
                ephemeral: 0,
                ..self.demand.clone()
            };
            let rate = lb.hourly_rate(&demand);
            self.lb_rate = if rate.is_finite() { rate } else { 0.0 };
            let classes: Vec<(Resources, f64)> = self
                .demand_classes
                .iter()
                .map(|(r, &n)| (r.clone(), n as f64))
                .collect();
            let sb = self.shape_bound.as_mut().expect("models built");
            let mix = sb.solve(&classes);
            self.shape_rate = mix.rate;
            self.constrained_rate = self.constrained_rate(&classes, &mix);
            self.demand_dirty = false;
        }
        self.lb_cost += self.lb_rate * dt / 3600.0;
        self.shape_cost += self.shape_rate * dt / 3600.0;
        self.constrained_cost += self.constrained_rate * dt / 3600.0;
        self.account_headroom(dt);
        debug_assert_eq!(
            (
                self.fleet_totals.managed,
                self.fleet_totals.requested,
                self.fleet_totals.allocatable
            ),
            self.fleet_now(),
            "fleet totals kept up to date"
        );
        let f = &self.fleet_totals;
        self.node_seconds += f.managed as f64 * dt;
        self.util_req.0 += f.requested.0 as f64 * dt;
        self.util_req.1 += f.requested.1 as f64 * dt;
        self.util_alloc.0 += f.allocatable.0 as f64 * dt;
        self.util_alloc.1 += f.allocatable.1 as f64 * dt;
        self.now = t;
    }

    /// The constrained bound's rate for the demand now, beside the shape bound's
    /// optimum `mix` over `classes` (see `ConstrainedBound::rate_beside`).
    fn constrained_rate(&mut self, classes: &[(Resources, f64)], mix: &Mix) -> f64 {
        let cb = self.constrained_bound.as_mut().expect("models built");
        let pods: Vec<(&Resources, u32, u64)> = self
            .constrained_classes
            .iter()
            .map(|((r, g), &n)| (r, *g, n))
            .collect();
        cb.rate_beside(&pods, mix, classes)
    }

    /// The managed nodes now, and the requests and allocatable of the ready ones, by a
    /// walk over the live nodes: what `fleet_totals` must equal (checked in debug builds).
    fn fleet_now(&self) -> (i64, (i64, i64), (i64, i64)) {
        let mut f = FleetTotals::default();
        for &n in &self.live {
            let node = &self.nodes[n];
            if node.managed() {
                f.managed += 1;
                if node.state == NodeState::Ready {
                    f.ready_node(node, 1);
                }
            }
        }
        (f.managed, f.requested, f.allocatable)
    }

    pub(super) fn sample(&mut self) {
        let flags = self.live_flags();
        let (nodes, rate) = (flags.managed, flags.price_per_hour);
        let pending = self.pending.len() as u32;
        self.series.push(Sample {
            t: self.now,
            nodes,
            cost_per_hour: rate,
            lower_bound_per_hour: self.lb_rate,
            shape_bound_per_hour: self.shape_rate,
            pending,
        });
    }

    pub(super) fn finish(mut self, trace: &Trace, started: Instant) -> Report {
        self.sample();
        for n in self.live.clone() {
            let now = self.now;
            let node = &self.nodes[n];
            let cost = node.price * (now - node.launched_at) / 3600.0;
            match node.capacity_type {
                Some(CapacityType::Spot) => self.cost_spot += cost,
                Some(CapacityType::OnDemand) => self.cost_on_demand += cost,
                None => {}
            }
        }
        let total = self.cost_spot + self.cost_on_demand;
        let mut pods = PodCounts {
            total: self.pods.len() as u64,
            daemonset_templates: self.daemonsets.len() as u64,
            ..Default::default()
        };
        let mut infeasible_pods = Vec::new();
        for p in &self.pods {
            if p.ever_bound {
                pods.placed += 1;
            } else {
                pods.never_placed += 1;
                if let Some(reason) = &p.infeasible {
                    pods.infeasible += 1;
                    if infeasible_pods.len() < 20 {
                        infeasible_pods.push(InfeasiblePod {
                            pod: p.pod.key(),
                            reason: reason.clone(),
                        });
                    }
                }
            }
        }
        let mut by_type: Vec<TypeCount> = self
            .launched_by_type
            .iter()
            .map(|(&(ty, ct), &count)| TypeCount {
                instance_type: self.catalog.types[ty].name.clone(),
                capacity_type: ct.as_str().into(),
                count,
            })
            .collect();
        by_type.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.instance_type.cmp(&b.instance_type))
                .then_with(|| a.capacity_type.cmp(&b.capacity_type))
        });
        let ratio = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { 0.0 };
        Report {
            version: 1,
            mode: self.mode.as_str().into(),
            seed: 0,
            trace: TraceInfo {
                name: trace.header.name.clone(),
                events: trace.events.len(),
                duration_s: trace.events.last().map_or(0.0, |e| e.t),
            },
            pods,
            pending_s: Percentiles::of(&mut self.pending_s),
            cost_usd: Cost {
                total: round2(total),
                spot: round2(self.cost_spot),
                on_demand: round2(self.cost_on_demand),
                lower_bound: round2(self.lb_cost),
                ratio_to_lower_bound: ratio(total, self.lb_cost),
                shape_bound: round2(self.shape_cost),
                ratio_to_shape_bound: ratio(total, self.shape_cost),
                constrained_bound: round2(self.constrained_cost),
                ratio_to_constrained_bound: ratio(total, self.constrained_cost),
            },
            nodes: self.counts.clone(),
            utilization: Utilization {
                cpu: ratio(self.util_req.0, self.util_alloc.0),
                memory: ratio(self.util_req.1, self.util_alloc.1),
            },
            disruptions: self.disruption_totals(),
            decisions: self.decision_ms.len() as u64,
            decision_ms: Percentiles::of(&mut self.decision_ms),
            wall_s: round3(started.elapsed().as_secs_f64()),
            infeasible_pods,
            launched_by_type: by_type,
            headroom: self.headroom_report(),
            series: std::mem::take(&mut self.series),
            marks: std::mem::take(&mut self.marks),
        }
    }

    fn disruption_totals(&mut self) -> Disruptions {
        let mut d = self.disruptions.clone();
        d.node_hours = round2(self.node_seconds / 3600.0);
        let voluntary = d.deleted + d.replaced + d.multi_node + d.expired + d.drifted;
        d.disruptions_per_node_hour = if d.node_hours > 0.0 {
            round3(voluntary as f64 * 3600.0 / self.node_seconds)
        } else {
            0.0
        };
        d.interrupted_pods = (self.recovery_s.len() + self.interrupted_at.len()) as u64;
        d.interruption_recovery_s = Percentiles::of(&mut self.recovery_s);
        d
    }
}
