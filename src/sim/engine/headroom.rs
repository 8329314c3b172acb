//! Headroom in the simulator (`spec.headroom`, see `core::headroom`): each provisioning
//! decision adds the pools' placeholder pods to the scheduling input, after every real pod
//! (lowest priority), so launches make room for them. Placeholders are recomputed at
//! every decision and never bound: the simulated kube-scheduler only sees real pods, so a
//! real pod always takes the room a placeholder stood for. Disruption keeps the spare:
//! consolidation's `keep` grows by it and an empty node is only removed when the pool's
//! free room stays above it.
//!
//! The report's `headroom` figures are accounted here (docs/sim-report.md).

use super::state::Sim;
use crate::core::headroom::{self, HeadroomPlan, HeadroomPolicy, PoolUsage};
use crate::core::pod::Pod;
use crate::core::resources::Resources;
use crate::sim::report::{round2, round3, Headroom};
use crate::sim::Mode;

/// Time integrals behind the report's `headroom` figures.
#[derive(Clone, Debug, Default)]
pub(super) struct Acc {
    /// Seconds with at least one headroom pool.
    seconds: f64,
    /// ∫ spare CPU asked for (millicores · s), summed over the pools.
    spare_cpu: f64,
    /// ∫ free CPU on the pools' nodes (millicores · s).
    free_cpu: f64,
    /// Dollars of node time held free for headroom.
    cost: f64,
    /// Lowest free CPU (millicores) of a headroom pool at a settled scan.
    free_cpu_min_settled: Option<i64>,
}

impl<'c> Sim<'c> {
    /// The headroom policy of pool `p`, fleet mode only (node groups are the Cluster
    /// Autoscaler's, which has no such setting).
    fn headroom_policy(&self, p: usize) -> Option<&'c HeadroomPolicy> {
        if self.mode != Mode::Fleet {
            return None;
        }
        let config: &'c crate::config::Config = self.config;
        config.extras(&self.pools[p].name)?.headroom.as_ref()
    }

    fn has_headroom(&self) -> bool {
        (0..self.pools.len()).any(|p| self.headroom_policy(p).is_some())
    }

    /// What pool `p`'s nodes that stay hold: launching and ready nodes, not those cordoned
    /// or being disrupted (their room is going away). Allocatable is net of DaemonSet
    /// overhead; room reserved for a replacement's pods counts as requested.
    fn pool_usage(&self, p: usize) -> PoolUsage {
        let mut u = PoolUsage::default();
        for &n in &self.live {
            let node = &self.nodes[n];
            if node.pool != Some(p) || node.cordoned || node.disrupting {
                continue;
            }
            u.allocatable.add(&node.allocatable.minus(&node.overhead));
            u.requested.add(&node.requested);
            if let Some(r) = self.reserved_on(n) {
                u.requested.add(&r);
            }
        }
        u
    }

    /// Every headroom pool's plan, with its pool index.
    pub(super) fn headroom_plans(&self) -> Vec<(usize, HeadroomPlan)> {
        (0..self.pools.len())
            .filter_map(|p| {
                let policy = self.headroom_policy(p)?;
                Some((
                    p,
                    headroom::plan(policy, &self.pools[p], &self.pool_usage(p)),
                ))
            })
            .collect()
    }

    /// The placeholders to add to a provisioning decision, and whether some pool's free
    /// room is short of its spare (a trigger even with no pending pod).
    pub(super) fn headroom_placeholders(&self) -> (Vec<Pod>, bool) {
        let plans = self.headroom_plans();
        let short = plans.iter().any(|(_, plan)| plan.needs_capacity());
        let pods = plans
            .into_iter()
            .flat_map(|(_, p)| p.placeholders)
            .collect();
        (pods, short)
    }

    /// Room consolidation must keep on top of the recent peak demand: every pool's spare.
    /// `keep` is cluster-wide, so a pool's spare may be held by another pool's free room;
    /// with one pool per workload (the usual headroom set-up) it is exact.
    pub(super) fn headroom_keep(&self) -> Resources {
        let mut keep = Resources::default();
        for (_, plan) in self.headroom_plans() {
            keep.cpu_milli += plan.spare.cpu_milli;
            keep.memory += plan.spare.memory;
        }
        keep
    }

    /// May empty node `n` go without leaving its pool short of its spare?
    pub(super) fn headroom_allows_removal(&self, n: usize) -> bool {
        let node = &self.nodes[n];
        let Some(p) = node.pool else { return true };
        let Some(policy) = self.headroom_policy(p) else {
            return true;
        };
        let mut usage = self.pool_usage(p);
        if !(node.cordoned || node.disrupting) {
            usage
                .allocatable
                .sub(&node.allocatable.minus(&node.overhead));
            usage.requested.sub(&node.requested);
        }
        !headroom::plan(policy, &self.pools[p], &usage).needs_capacity()
    }

    /// Integrates the headroom figures over the next `dt` seconds (state as it is now).
    pub(super) fn account_headroom(&mut self, dt: f64) {
        let mut any = false;
        for p in 0..self.pools.len() {
            let Some(policy) = self.headroom_policy(p) else {
                continue;
            };
            any = true;
            let usage = self.pool_usage(p);
            let spare = headroom::target_spare(policy, &usage.requested);
            let free = usage.allocatable.minus(&usage.requested);
            let (free_cpu, free_mem) = (free.cpu_milli.max(0), free.memory.max(0));
            // The share of the pool's capacity held free for headroom (the larger of the
            // cpu and memory shares) is the share of its cost headroom is charged with.
            let share = |held: i64, alloc: i64| {
                if alloc > 0 {
                    held as f64 / alloc as f64
                } else {
                    0.0
                }
            };
            let a = &usage.allocatable;
            let held = share(spare.cpu_milli.min(free_cpu), a.cpu_milli)
                .max(share(spare.memory.min(free_mem), a.memory));
            self.headroom_acc.cost += self.pool_rate(p) * held.min(1.0) * dt / 3600.0;
            self.headroom_acc.spare_cpu += spare.cpu_milli as f64 * dt;
            self.headroom_acc.free_cpu += free_cpu as f64 * dt;
        }
        if any {
            self.headroom_acc.seconds += dt;
        }
    }

    /// Dollars per hour of pool `p`'s nodes that stay.
    fn pool_rate(&self, p: usize) -> f64 {
        self.live
            .iter()
            .map(|&n| &self.nodes[n])
            .filter(|n| n.pool == Some(p) && !n.cordoned && !n.disrupting)
            .map(|n| n.price)
            .sum()
    }

    /// At a scan with nothing pending and nothing launching, records each headroom pool's
    /// free CPU (pools with no node yet have held nothing to measure).
    pub(super) fn sample_headroom(&mut self) {
        if !self.pending.is_empty() || !self.has_headroom() || self.live_flags().any_launching {
            return;
        }
        for p in 0..self.pools.len() {
            if self.headroom_policy(p).is_none() {
                continue;
            }
            let usage = self.pool_usage(p);
            if usage.allocatable.cpu_milli == 0 {
                continue;
            }
            let free = usage.allocatable.cpu_milli - usage.requested.cpu_milli;
            let m = &mut self.headroom_acc.free_cpu_min_settled;
            *m = Some(m.map_or(free, |m| m.min(free)));
        }
    }

    pub(super) fn headroom_report(&self) -> Headroom {
        let a = &self.headroom_acc;
        let mean = |x: f64| {
            if a.seconds > 0.0 {
                round3(x / a.seconds / 1000.0)
            } else {
                0.0
            }
        };
        Headroom {
            pools: (0..self.pools.len())
                .filter(|&p| self.headroom_policy(p).is_some())
                .count() as u64,
            spare_cpu_mean: mean(a.spare_cpu),
            free_cpu_mean: mean(a.free_cpu),
            free_cpu_min_settled: a.free_cpu_min_settled.map(|m| round3(m as f64 / 1000.0)),
            cost_usd: round2(a.cost),
        }
    }
}
