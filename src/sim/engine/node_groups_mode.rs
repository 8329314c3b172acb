//! Node-groups mode: groups of one instance type scaled by count, as the Cluster
//! Autoscaler drives Auto Scaling groups. Scale-up and the unneeded-node scale-down
//! are `core::node_groups`'s decisions, as in the controller.

use super::disruption_pass::Kind;
use super::state::{NodeState, Sim};
use crate::core::node_groups;
use crate::core::pod::Pod;
use crate::core::scheduler::PendingOrder;
use std::time::Instant;

impl Sim<'_> {
    /// Cluster Autoscaler style: for each group, how many nodes of its one type the
    /// pending pods need; the least-waste group is scaled (one group per loop). The
    /// decision is `core::node_groups::scale_up`, as the controller's.
    pub(super) fn provision_node_groups(&mut self, pending: &[usize], displaced: bool) {
        let started = Instant::now();
        let room = self.group_room();
        let best = {
            let (snapshot, _, pending_ids) =
                self.snapshot_with_room(pending, true, displaced, None);
            let order = PendingOrder::new(&snapshot.pending, self.classes_of(&pending_ids, 0));
            node_groups::scale_up_ordered(&self.env(None, true), &snapshot, &room, &order)
        };
        self.decision_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        if let Some(up) = best {
            for plan in &up.plans {
                self.launch(plan, true);
            }
        }
    }

    /// How many more nodes each group may get (its max size less its live nodes).
    fn group_room(&self) -> Vec<usize> {
        self.settings()
            .node_groups
            .iter()
            .enumerate()
            .map(|(g, group)| {
                let current = self
                    .live
                    .iter()
                    .filter(|&&n| self.nodes[n].pool == Some(g))
                    .count();
                (group.max_size as usize).saturating_sub(current)
            })
            .collect()
    }

    pub(super) fn scale_down_node_groups(&mut self) {
        let rule = self.settings().node_group_scale_down.clone();
        let unneeded_s = rule.unneeded_time.as_secs_f64();
        let mut candidates = Vec::new();
        for &n in &self.live {
            let node = &mut self.nodes[n];
            if !node.managed() || node.state != NodeState::Ready || node.cordoned {
                continue;
            }
            let u = node_groups::utilization(&node.requested, &node.allocatable);
            if u < rule.utilization_threshold {
                let since = *node.unneeded_since.get_or_insert(self.now);
                if self.now - since >= unneeded_s {
                    candidates.push(n);
                }
            } else {
                node.unneeded_since = None;
            }
        }
        let mut drained_one = false;
        let key = self.nodes_key();
        for n in candidates {
            let g = self.nodes[n].pool.expect("managed");
            let group_size = self
                .live
                .iter()
                .filter(|&&x| self.nodes[x].pool == Some(g))
                .count();
            if group_size <= self.settings().node_groups[g].min_size as usize {
                continue;
            }
            if self.nodes[n].pods.is_empty() {
                self.disruptions.consolidated += 1;
                self.disruptions.empty += 1;
                self.terminate(n);
                continue;
            }
            // The Cluster Autoscaler keeps nodes whose pods it may not move: no
            // controller, do-not-disrupt / safe-to-evict "false", local storage.
            let pods: Vec<&Pod> = self.nodes[n]
                .pods
                .iter()
                .map(|&p| self.pods[p].pod)
                .collect();
            let movable = node_groups::movable(&pods);
            if drained_one || !movable || self.stays.get(&n) == Some(&key) {
                continue;
            }
            // Only if every pod fits on the other ready nodes.
            let pods = self.nodes[n].pods.clone();
            self.nodes[n].cordoned = true;
            let started = Instant::now();
            let fits = {
                let (snapshot, _) = self.snapshot(&pods, false, false);
                node_groups::fits_elsewhere(&self.env(None, false), &snapshot)
            };
            self.decision_ms
                .push(started.elapsed().as_secs_f64() * 1000.0);
            if fits {
                // Drained like every voluntary disruption: evictions within the
                // PodDisruptionBudgets, then termination.
                self.start(Kind::Delete, vec![n], Vec::new());
                drained_one = true;
            } else {
                self.nodes[n].cordoned = false;
                self.stays.insert(n, key);
            }
        }
    }
}
