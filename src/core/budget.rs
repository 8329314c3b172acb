//! Node disruption budgets (Karpenter v1 `spec.disruption.budgets`): how many of a pool's
//! nodes may be voluntarily disrupted at once, for which reasons, and when. Pure: the
//! time is passed in as seconds since the Unix epoch.

use super::cron::Schedule;
use super::pdb::IntOrPercent;

/// Why a node is voluntarily disrupted (what a budget's `reasons` name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Empty,
    Underutilized,
    Drifted,
    Expired,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::Empty,
        Reason::Underutilized,
        Reason::Drifted,
        Reason::Expired,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Empty => "Empty",
            Reason::Underutilized => "Underutilized",
            Reason::Drifted => "Drifted",
            Reason::Expired => "Expired",
        }
    }
}

/// One budget: at most `nodes` of the pool's nodes disrupted at once, for `reasons` (all
/// when empty), while its schedule's window is open (always when there is none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeBudget {
    pub nodes: IntOrPercent,
    /// A cron schedule and how long (seconds) each firing keeps the budget active.
    pub schedule: Option<(Schedule, i64)>,
    pub reasons: Vec<Reason>,
}

impl NodeBudget {
    /// Karpenter's default when a pool lists no budgets: `nodes: 10%`.
    pub fn default_budgets() -> Vec<NodeBudget> {
        vec![NodeBudget {
            nodes: IntOrPercent::Percent(10),
            schedule: None,
            reasons: Vec::new(),
        }]
    }

    fn applies(&self, reason: Reason, epoch_s: i64) -> bool {
        let for_reason = self.reasons.is_empty() || self.reasons.contains(&reason);
        let in_window = self
            .schedule
            .as_ref()
            .is_none_or(|(s, duration)| s.active(epoch_s, *duration));
        for_reason && in_window
    }
}

/// How many more of a pool's `total` nodes may be disrupted for `reason` at `epoch_s`,
/// given that `disrupting` of them already are. The most restrictive active budget wins;
/// percentages round up (as Karpenter scales them). No active budget: no limit.
pub fn allowed(
    budgets: &[NodeBudget],
    reason: Reason,
    total: usize,
    disrupting: usize,
    epoch_s: i64,
) -> usize {
    budgets
        .iter()
        .filter(|b| b.applies(reason, epoch_s))
        .map(|b| b.nodes.scaled(total as i64).max(0) as usize)
        .min()
        .map_or(usize::MAX, |limit| limit.saturating_sub(disrupting))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(
        nodes: IntOrPercent,
        reasons: &[Reason],
        schedule: Option<(&str, i64)>,
    ) -> NodeBudget {
        NodeBudget {
            nodes,
            schedule: schedule.map(|(s, d)| (Schedule::parse(s).unwrap(), d)),
            reasons: reasons.to_vec(),
        }
    }

    #[test]
    fn percentages_round_up_and_in_flight_disruptions_count() {
        let b = NodeBudget::default_budgets();
        assert_eq!(allowed(&b, Reason::Underutilized, 25, 0, 0), 3);
        assert_eq!(allowed(&b, Reason::Underutilized, 25, 2, 0), 1);
        assert_eq!(allowed(&b, Reason::Underutilized, 25, 5, 0), 0);
        // One node in a small pool may still go.
        assert_eq!(allowed(&b, Reason::Empty, 1, 0, 0), 1);
        assert_eq!(allowed(&[], Reason::Empty, 3, 2, 0), usize::MAX);
    }

    #[test]
    fn the_most_restrictive_budget_for_the_reason_wins() {
        let b = [
            budget(IntOrPercent::Percent(50), &[], None),
            budget(IntOrPercent::Int(0), &[Reason::Drifted], None),
            budget(
                IntOrPercent::Int(2),
                &[Reason::Empty, Reason::Expired],
                None,
            ),
        ];
        assert_eq!(allowed(&b, Reason::Underutilized, 10, 0, 0), 5);
        assert_eq!(allowed(&b, Reason::Drifted, 10, 0, 0), 0);
        assert_eq!(allowed(&b, Reason::Empty, 10, 1, 0), 1);
    }

    #[test]
    fn a_scheduled_budget_applies_only_in_its_window() {
        // No underutilized consolidation on weekdays 09:00-17:00 UTC.
        let b = [
            budget(IntOrPercent::Percent(10), &[], None),
            budget(
                IntOrPercent::Int(0),
                &[Reason::Underutilized],
                Some(("0 9 * * mon-fri", 8 * 3600)),
            ),
        ];
        let monday = 1_793_577_600; // 2026-11-02T00:00:00Z
        assert_eq!(
            allowed(&b, Reason::Underutilized, 20, 0, monday + 10 * 3600),
            0
        );
        assert_eq!(allowed(&b, Reason::Empty, 20, 0, monday + 10 * 3600), 2);
        assert_eq!(
            allowed(&b, Reason::Underutilized, 20, 0, monday + 18 * 3600),
            2
        );
    }

    #[test]
    fn reasons_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Reason::parse("Bored"), None);
    }
}
