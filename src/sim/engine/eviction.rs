//! Evictions: what the PodDisruptionBudgets allow (the core decides), and every eviction
//! checked again here, independently of the core, for PDB violations and for pods that
//! must not be disrupted (counted in the report, never prevented here).

use super::state::{NodeState, PodState, Sim};
use crate::core::disruption;
use crate::core::pdb::{Budget, IntOrPercent};
use crate::core::pod::Pod;

impl Sim<'_> {
    /// Evicts what the PodDisruptionBudgets allow of `pods`, in order.
    pub(super) fn evict(&mut self, pods: &[usize]) {
        if pods.is_empty() {
            return;
        }
        let chosen = if self.config.pdbs.is_empty() {
            (0..pods.len()).collect()
        } else {
            // Every pod that exists but is not running counts as unavailable, also
            // those no node could ever hold.
            let healthy: Vec<&Pod> = self.healthy_pods().collect();
            let pending: Vec<&Pod> = self
                .pending
                .iter()
                .chain(&self.stuck)
                .map(|&i| self.pods[i].pod)
                .collect();
            let candidates: Vec<&Pod> = pods.iter().map(|&i| self.pods[i].pod).collect();
            disruption::evictable(&self.config.pdbs, &healthy, &pending, &candidates)
        };
        for i in chosen {
            let p = pods[i];
            self.check_eviction(p);
            let PodState::Bound(n) = self.pods[p].state else {
                continue;
            };
            self.disruptions.pods_evicted += 1;
            self.unbind(p, n);
        }
    }

    fn healthy_pods(&self) -> impl Iterator<Item = &Pod> {
        self.live
            .iter()
            .filter(|&&n| self.nodes[n].state == NodeState::Ready)
            .flat_map(|&n| self.nodes[n].pods.iter().map(|&p| self.pods[p].pod))
    }

    /// The independent check of one eviction, before it happens: would it leave a PDB's
    /// selected pods below what it demands, or does the pod forbid disruption? Counted,
    /// never prevented here (the core is what prevents it).
    fn check_eviction(&mut self, p: usize) {
        let pod = self.pods[p].pod;
        let ann = |k: &str| pod.annotations.get(k).map(String::as_str);
        let safe_to_evict = ann("cluster-autoscaler.kubernetes.io/safe-to-evict");
        let forbidden = ann("karpenter.sh/do-not-disrupt") == Some("true")
            || ann("stevedore.dev/do-not-disrupt") == Some("true")
            || safe_to_evict == Some("false")
            || (pod.owner.is_none() && safe_to_evict != Some("true"));
        if forbidden {
            self.disruptions.do_not_disrupt_evicted += 1;
        }
        for pdb in &self.config.pdbs {
            if pdb.namespace != pod.namespace || !pdb.selector.matches(&pod.labels) {
                continue;
            }
            let selected =
                |q: &Pod| q.namespace == pdb.namespace && pdb.selector.matches(&q.labels);
            // Every pod that exists is on a live node or waiting; it is healthy when its
            // node is ready.
            let (mut expected, mut healthy) = (0i64, 0i64);
            for &n in &self.live {
                let ready = self.nodes[n].state == NodeState::Ready;
                for &q in &self.nodes[n].pods {
                    if selected(self.pods[q].pod) {
                        expected += 1;
                        healthy += i64::from(ready);
                    }
                }
            }
            for &q in self.pending.iter().chain(&self.stuck) {
                expected += i64::from(selected(self.pods[q].pod));
            }
            let ceil_pct = |v: u32| (i64::from(v) * expected + 99) / 100;
            let must_stay = match pdb.budget {
                Budget::MinAvailable(IntOrPercent::Int(v)) => v,
                Budget::MinAvailable(IntOrPercent::Percent(v)) => ceil_pct(v),
                Budget::MaxUnavailable(IntOrPercent::Int(v)) => expected - v,
                Budget::MaxUnavailable(IntOrPercent::Percent(v)) => expected - ceil_pct(v),
            };
            if healthy - 1 < must_stay {
                self.disruptions.pdb_violations += 1;
            }
        }
    }
}
