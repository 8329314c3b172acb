//! Spot interruptions: a warning cordons the chosen Spot nodes, marks their offering
//! unavailable and provisions replacements at once; their pods are evicted (within their
//! budgets) as soon as ready nodes can hold them, before the reclaim takes the node.

use super::events::Ev;
use super::state::Sim;
use crate::core::disruption;
use crate::core::instance::CapacityType;
use crate::core::labels;
use crate::trace::SpotTarget;

impl Sim<'_> {
    pub(super) fn spot_warning(&mut self, target: &SpotTarget, reclaim_at: f64) {
        let mut spot: Vec<usize> = self
            .live
            .iter()
            .copied()
            .filter(|&n| {
                let node = &self.nodes[n];
                node.capacity_type == Some(CapacityType::Spot) && !node.cordoned
            })
            .collect();
        let chosen: Vec<usize> = match target {
            SpotTarget::Node(name) => spot
                .into_iter()
                .filter(|&n| self.nodes[n].name == *name)
                .collect(),
            SpotTarget::Fraction(f) => {
                let k = ((spot.len() as f64) * f).round() as usize;
                // Partial Fisher-Yates from the replay seed.
                for i in 0..k.min(spot.len()) {
                    let j = i + self.rng.below(spot.len() - i);
                    spot.swap(i, j);
                }
                spot.truncate(k);
                spot
            }
        };
        let ttl = self.settings().unavailable_offering_ttl.as_secs_f64();
        for n in chosen {
            self.nodes[n].cordoned = true;
            self.nodes[n].interrupted = true;
            self.node_changes += 1;
            for &p in &self.nodes[n].pods {
                self.interrupted_at.insert(p, self.now);
            }
            self.push(reclaim_at, Ev::SpotReclaim(n));
            // EC2 is taking this Spot pool back: the replacement comes from another
            // offering (as Karpenter marks an interrupted offering unavailable).
            let labels = &self.nodes[n].labels;
            let ty = labels
                .get(labels::INSTANCE_TYPE)
                .and_then(|t| self.catalog.find(t));
            let zone = labels
                .get(labels::ZONE)
                .and_then(|z| self.catalog.zone_index(z));
            if let (Some(ty), Some(zone)) = (ty, zone) {
                self.unavailable
                    .mark(ty, zone, CapacityType::Spot, self.now, ttl);
            }
        }
        // Replacements are launched now, while the doomed nodes still run their pods.
        self.provision();
    }

    /// An interrupted node's pods are evicted (within their budgets) as soon as the
    /// ready nodes can hold them: they run again before the reclaim, not after.
    pub(super) fn drain_interrupted(&mut self) {
        if !self.live_flags().any_interrupted {
            return;
        }
        let pods: Vec<usize> = self
            .live
            .iter()
            .filter(|&&n| self.nodes[n].interrupted)
            .flat_map(|&n| self.nodes[n].pods.clone())
            // Pods that forbid disruption stay until the reclaim takes them.
            .filter(|&p| disruption::pod_evictable(self.pods[p].pod))
            .collect();
        if pods.is_empty() {
            return;
        }
        let (decision, _, _) = self.solve(&pods, &[], false, None, false);
        let movable: Vec<usize> = decision.existing.iter().map(|&(i, _)| pods[i]).collect();
        self.evict(&movable);
    }
}
