//! What the checks made at every scan read of the live nodes, found once per change of
//! the nodes instead of at every scan. A month of a 7,000-node cluster has 270,000 scans
//! and most change nothing; each of them walked every live node several times (is one
//! launching, interrupted, empty, newly consolidatable; the chart's sample).

use super::state::{NodeState, NodesKey, Sim};

/// A summary of the live nodes, valid while `key` is the simulator's `nodes_key()`
/// (every change to which nodes are live, their states, pods and `stable_since` moves
/// it). Each part is made when first asked for under a key: in a busy replay the nodes
/// change between most checks, and a part made but not read would cost more than the
/// walk it saves.
#[derive(Default)]
pub(super) struct LiveView {
    key: Option<NodesKey>,
    flags: Option<LiveFlags>,
    /// Live nodes without pods, in `live` order.
    empty: Option<Vec<usize>>,
    /// (when it becomes consolidatable: `stable_since` plus its pool's
    /// `consolidateAfter`, node) for live nodes of pools that consolidate, by time;
    /// made at the second question under one key (the first walks the nodes, as a
    /// key asked once does not repay the sort).
    eligible_at: Option<Vec<(f64, usize)>>,
    eligible_asked: bool,
}

/// What one walk over the live nodes finds.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct LiveFlags {
    /// Some live node is still booting.
    pub(super) any_launching: bool,
    /// Some live node has been warned of a Spot interruption.
    pub(super) any_interrupted: bool,
    /// Some interrupted live node still holds pods.
    pub(super) interrupted_with_pods: bool,
    /// Managed live nodes, and their prices summed in `live` order.
    pub(super) managed: u32,
    pub(super) price_per_hour: f64,
}

/// Rounding allowance when looking nodes up by `eligible_at`: each candidate found is
/// checked with the scan's own arithmetic.
const SLACK_S: f64 = 1e-3;

impl Sim<'_> {
    /// The view, emptied when the nodes changed since it was made.
    fn fresh_view(&mut self) -> &mut LiveView {
        let key = Some(self.nodes_key());
        if self.live_view.key != key {
            self.live_view = LiveView {
                key,
                ..LiveView::default()
            };
        }
        &mut self.live_view
    }

    /// The live nodes' flags and counts.
    pub(super) fn live_flags(&mut self) -> LiveFlags {
        if let Some(flags) = self.fresh_view().flags {
            return flags;
        }
        let mut f = LiveFlags::default();
        for &n in &self.live {
            let node = &self.nodes[n];
            f.any_launching |= node.state == NodeState::Launching;
            f.any_interrupted |= node.interrupted;
            f.interrupted_with_pods |= node.interrupted && !node.pods.is_empty();
            if node.managed() {
                f.managed += 1;
                f.price_per_hour += node.price;
            }
        }
        self.live_view.flags = Some(f);
        f
    }

    /// Live nodes without pods, in `live` order.
    pub(super) fn empty_live(&mut self) -> Vec<usize> {
        if let Some(empty) = &self.fresh_view().empty {
            return empty.clone();
        }
        let empty: Vec<usize> = self
            .live
            .iter()
            .copied()
            .filter(|&n| self.nodes[n].pods.is_empty())
            .collect();
        self.live_view.empty = Some(empty.clone());
        empty
    }

    /// Has some live node become consolidatable in the last scan interval (its time
    /// since `stable_since` reached its pool's `consolidateAfter` less than one
    /// `scanInterval` ago)?
    pub(super) fn newly_eligible(&mut self) -> bool {
        let interval = self.settings().scan_interval.as_secs_f64();
        let now = self.now;
        let eligible_now = |sim: &Self, n: usize| {
            let node = &sim.nodes[n];
            let after = node
                .pool
                .and_then(|p| sim.pool_disruption[p].consolidate_after())
                .unwrap_or(f64::INFINITY);
            let age = now - node.stable_since;
            age >= after && age < after + interval
        };
        let view = self.fresh_view();
        if !view.eligible_asked {
            view.eligible_asked = true;
            return self.live.iter().any(|&n| eligible_now(self, n));
        }
        if self.live_view.eligible_at.is_none() {
            let mut at: Vec<(f64, usize)> = self
                .live
                .iter()
                .filter_map(|&n| {
                    let node = &self.nodes[n];
                    let after = node
                        .pool
                        .and_then(|p| self.pool_disruption[p].consolidate_after())?;
                    Some((node.stable_since + after, n))
                })
                .collect();
            at.sort_by(|a, b| a.0.total_cmp(&b.0));
            self.live_view.eligible_at = Some(at);
        }
        let at = self.live_view.eligible_at.as_deref().expect("made above");
        let from = at.partition_point(|&(t, _)| t < now - interval - SLACK_S);
        at[from..]
            .iter()
            .take_while(|&&(t, _)| t <= now + SLACK_S)
            .any(|&(_, n)| eligible_now(self, n))
    }
}
