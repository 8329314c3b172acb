//! The autoscaler's provisioning: when a pass runs (and when it is skipped because
//! nothing it reads changed), the fleet's decide-launch-retry rounds, and launching a
//! node (for both modes and for disruption replacements).

use super::events::Ev;
use super::state::{NodeState, NodesKey, Sim, SimNode};
use crate::core::labels;
use crate::core::pod::Pod;
use crate::core::scheduler::LaunchPlan;
use crate::sim::Mode;

/// Immediate re-decisions after launches that found no capacity.
const MAX_LAUNCH_ROUNDS: usize = 64;

/// See `Sim::provision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ProvisionInputs {
    pending: Vec<usize>,
    /// `Sim::pending_changes` when `pending` was taken: while it is the same, so is
    /// `pending`, and the thousands of pods that wait for weeks are not walked per scan.
    pending_changes: u64,
    /// The headroom's placeholder pods, and whether a pool is short of its spare.
    headroom: (Vec<Pod>, bool),
    nodes: NodesKey,
    unavailable: u64,
}

impl Sim<'_> {
    /// The autoscaler's provisioning decision for pending (and displaced) pods.
    pub(super) fn provision(&mut self) {
        self.batch_start = None;
        // Lapsed entries answer "available" already; dropping them now makes their
        // lapse a change of the inputs (a pass between scans would miss it).
        self.unavailable.expire(self.now);
        // Everything a pass reads that can change between scans (the clock moves only
        // the unavailable offerings and the headroom's schedules, both in here).
        let headroom = self.headroom_placeholders();
        let nodes = self.nodes_key();
        let unavailable = self.unavailable.generation();
        if let Some(idle) = &mut self.idle_provision {
            let same = idle.headroom == headroom
                && idle.nodes == nodes
                && idle.unavailable == unavailable
                && (idle.pending_changes == self.pending_changes
                    || idle.pending.iter().eq(self.pending.iter()));
            if same {
                idle.pending_changes = self.pending_changes;
                return;
            }
        }
        let inputs = ProvisionInputs {
            pending: self.pending_pods(),
            pending_changes: self.pending_changes,
            headroom,
            nodes,
            unavailable,
        };
        let launched = self.counts.launched + self.counts.launch_failures;
        self.provision_now(&inputs.pending, &inputs.headroom);
        let idle = self.counts.launched + self.counts.launch_failures == launched;
        self.idle_provision = idle.then_some(inputs);
    }

    /// One provisioning pass for `pending` and the headroom's placeholders (and whether
    /// a pool is short of its headroom).
    fn provision_now(&mut self, pending: &[usize], headroom: &(Vec<Pod>, bool)) {
        let (placeholders, short) = headroom;
        let displaced = self.live_flags().interrupted_with_pods;
        // A pool short of its headroom provisions even with nothing pending.
        if pending.is_empty() && !displaced && !short {
            return;
        }
        self.ensure_models();
        match self.mode {
            Mode::Fleet => {
                // A launch that finds no capacity marks its offerings unavailable; the
                // controller decides again at once with what is left (e.g. on-demand).
                for _ in 0..MAX_LAUNCH_ROUNDS {
                    let (decision, _, ms) = self.solve(pending, placeholders, true, None, true);
                    self.decision_ms.push(ms);
                    let mut failed = false;
                    for plan in &decision.launches {
                        failed |= self.launch(plan, false).is_none();
                    }
                    if !failed {
                        break;
                    }
                }
            }
            Mode::NodeGroups => self.provision_node_groups(pending, displaced),
        }
    }

    /// Launches one node for `plan`; `None` when the cloud had no capacity for any option.
    pub(super) fn launch(&mut self, plan: &LaunchPlan, balance_zones: bool) -> Option<usize> {
        let mut options = plan.options.clone();
        if balance_zones {
            // An Auto Scaling group spreads its instances over its zones.
            let per_zone = |z: usize| {
                self.live
                    .iter()
                    .filter(|&&n| {
                        self.nodes[n].pool == Some(plan.pool)
                            && self.nodes[n].labels.get(labels::ZONE)
                                == Some(&self.catalog.zones[z])
                    })
                    .count()
            };
            options.sort_by_key(|o| (per_zone(o.zone), o.zone));
        }
        let Some(chosen) = self.cloud.launch(self.catalog, &options, self.now) else {
            self.counts.launch_failures += 1;
            let ttl = self.settings().unavailable_offering_ttl.as_secs_f64();
            for o in &options {
                self.unavailable
                    .mark(o.instance_type, o.zone, o.capacity_type, self.now, ttl);
            }
            return None;
        };
        let o = options[chosen].clone();
        let it = &self.catalog.types[o.instance_type];
        let pool = &self.pools[plan.pool];
        let overhead = self
            .model
            .as_ref()
            .and_then(|m| {
                m.pools[plan.pool]
                    .types
                    .iter()
                    .find(|t| t.ty == o.instance_type)
            })
            .map(|t| t.daemon_overhead(o.capacity_type).clone())
            .unwrap_or_default();
        self.node_counter += 1;
        let name = format!("{}-{:05}", pool.name, self.node_counter);
        let mut node_labels = it.labels.clone();
        node_labels.extend(pool.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let zone = self.catalog.zones[o.zone].clone();
        for (k, v) in [
            (labels::ZONE, zone.as_str()),
            (labels::ZONE_BETA, zone.as_str()),
            (labels::REGION, self.catalog.region.as_str()),
            (labels::KARPENTER_CAPACITY_TYPE, o.capacity_type.as_str()),
            (labels::CAPACITY_TYPE, o.capacity_type.as_str()),
            (labels::KARPENTER_NODEPOOL, pool.name.as_str()),
            (labels::NODEPOOL, pool.name.as_str()),
            (labels::HOSTNAME, name.as_str()),
        ] {
            node_labels.insert(k.to_string(), v.to_string());
        }
        let boot = &self.settings().boot_delay;
        let delay = self
            .rng
            .range_f64(boot.min.as_secs_f64(), boot.max.as_secs_f64());
        let idx = self.nodes.len();
        self.nodes.push(SimNode {
            name,
            zone: labels::zone(&node_labels).map(str::to_string),
            labels: node_labels,
            taints: pool.taints.clone(),
            capacity: it.capacity.clone(),
            allocatable: it.allocatable.clone(),
            taken: overhead.clone(),
            overhead,
            pool: Some(plan.pool),
            capacity_type: Some(o.capacity_type),
            price: o.price_per_hour,
            hash: self.pool_hashes[plan.pool],
            annotations: self
                .config
                .extras(&pool.name)
                .map(|e| e.annotations.clone())
                .unwrap_or_default(),
            ..SimNode::new(self.now, NodeState::Launching)
        });
        self.live.push(idx);
        self.fleet_totals.managed += 1;
        if let Some(e) = self.pool_disruption[plan.pool].expire_after_s {
            self.next_expiry = self.next_expiry.min(self.now + e);
        }
        self.node_changes += 1;
        self.counts.launched += 1;
        let managed_live = self
            .live
            .iter()
            .filter(|&&n| self.nodes[n].managed())
            .count() as u64;
        self.counts.peak = self.counts.peak.max(managed_live);
        *self
            .launched_by_type
            .entry((o.instance_type, o.capacity_type))
            .or_default() += 1;
        self.push(self.now + delay, Ev::NodeReady(idx));
        Some(idx)
    }
}
