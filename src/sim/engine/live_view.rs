//! What the checks made at every scan read of the live nodes, found once per change of
//! the nodes instead of at every scan. A month of a 7,000-node cluster has 270,000 scans
//! and most change nothing; each of them walked every live node several times (is one
//! launching, interrupted, empty, newly consolidatable; the chart's sample).

use super::state::{NodeState, NodesKey, Sim};

/// A summary of the live nodes, valid while `key` is the simulator's `nodes_key()`
/// (every change to which nodes are live, their states, pods and `stable_since` moves
/// it).
pub(super) struct LiveView {
    key: NodesKey,
    /// Some live node is still booting.
    pub(super) any_launching: bool,
    /// Some live node has been warned of a Spot interruption.
    pub(super) any_interrupted: bool,
    /// Some interrupted live node still holds pods.
    pub(super) interrupted_with_pods: bool,
    /// Live nodes without pods, in `live` order.
    pub(super) empty: Vec<usize>,
    /// Managed live nodes, and their prices summed in `live` order.
    pub(super) managed: u32,
    pub(super) price_per_hour: f64,
    /// (when it becomes consolidatable: `stable_since` plus its pool's
    /// `consolidateAfter`, node) for live nodes of pools that consolidate, by time.
    eligible_at: Vec<(f64, usize)>,
}

/// Rounding allowance when looking nodes up by `eligible_at`: each candidate found is
/// checked with the scan's own arithmetic.
const SLACK_S: f64 = 1e-3;

impl Sim<'_> {
    /// The live nodes' summary, made again only when the nodes changed.
    pub(super) fn live_view(&mut self) -> &LiveView {
        let key = self.nodes_key();
        if self.live_view.as_ref().is_none_or(|v| v.key != key) {
            self.live_view = Some(self.summarise_live(key));
        }
        self.live_view.as_ref().expect("just made")
    }

    fn summarise_live(&self, key: NodesKey) -> LiveView {
        let mut view = LiveView {
            key,
            any_launching: false,
            any_interrupted: false,
            interrupted_with_pods: false,
            empty: Vec::new(),
            managed: 0,
            price_per_hour: 0.0,
            eligible_at: Vec::new(),
        };
        for &n in &self.live {
            let node = &self.nodes[n];
            view.any_launching |= node.state == NodeState::Launching;
            view.any_interrupted |= node.interrupted;
            view.interrupted_with_pods |= node.interrupted && !node.pods.is_empty();
            if node.pods.is_empty() {
                view.empty.push(n);
            }
            if node.managed() {
                view.managed += 1;
                view.price_per_hour += node.price;
            }
            let after = node
                .pool
                .and_then(|p| self.pool_disruption[p].consolidate_after());
            if let Some(after) = after {
                view.eligible_at.push((node.stable_since + after, n));
            }
        }
        view.eligible_at.sort_by(|a, b| a.0.total_cmp(&b.0));
        view
    }

    /// Has some live node become consolidatable in the last scan interval (its time
    /// since `stable_since` reached its pool's `consolidateAfter` less than one
    /// `scanInterval` ago)?
    pub(super) fn newly_eligible(&mut self) -> bool {
        let interval = self.settings().scan_interval.as_secs_f64();
        let now = self.now;
        self.live_view();
        let view = self.live_view.as_ref().expect("made above");
        let from = view
            .eligible_at
            .partition_point(|&(t, _)| t < now - interval - SLACK_S);
        view.eligible_at[from..]
            .iter()
            .take_while(|&&(t, _)| t <= now + SLACK_S)
            .any(|&(_, n)| {
                let node = &self.nodes[n];
                let after = node
                    .pool
                    .and_then(|p| self.pool_disruption[p].consolidate_after())
                    .unwrap_or(f64::INFINITY);
                let age = now - node.stable_since;
                age >= after && age < after + interval
            })
    }
}
