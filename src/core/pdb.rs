//! PodDisruptionBudgets, evaluated as the Kubernetes disruption controller does: how many
//! of the pods a budget selects may be evicted right now.

use super::pod::Pod;
use super::requirements::LabelSelector;

/// An integer or a percentage (`"30%"`), as `minAvailable`/`maxUnavailable` take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntOrPercent {
    Int(i64),
    Percent(u32),
}

impl IntOrPercent {
    /// The value against `total`, percentages rounded up (as the disruption controller
    /// does for both fields).
    pub fn scaled(self, total: i64) -> i64 {
        match self {
            IntOrPercent::Int(n) => n,
            IntOrPercent::Percent(p) => (i64::from(p) * total + 99) / 100,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    MinAvailable(IntOrPercent),
    MaxUnavailable(IntOrPercent),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodDisruptionBudget {
    pub namespace: String,
    pub name: String,
    pub selector: LabelSelector,
    pub budget: Budget,
}

impl PodDisruptionBudget {
    pub fn selects(&self, pod: &Pod) -> bool {
        pod.namespace == self.namespace && self.selector.matches(&pod.labels)
    }

    /// Evictions allowed now, given how many selected pods are healthy (running) and how
    /// many are expected (all the selected pods that exist). Never negative.
    pub fn allowed(&self, healthy: i64, expected: i64) -> i64 {
        let allowed = match self.budget {
            Budget::MinAvailable(v) => healthy - v.scaled(expected),
            Budget::MaxUnavailable(v) => v.scaled(expected) - (expected - healthy),
        };
        allowed.max(0)
    }
}

/// Would evicting `evict` (all at once) stay within every budget? `healthy` are the
/// running pods and `pending` the selected pods not running (they count as expected but
/// unavailable). Returns the first budget that would be broken.
pub fn breaks<'p>(
    budgets: &'p [PodDisruptionBudget],
    healthy: &[&Pod],
    pending: &[&Pod],
    evict: &[&Pod],
) -> Option<&'p PodDisruptionBudget> {
    budgets.iter().find(|b| {
        let wanted = evict.iter().filter(|p| b.selects(p)).count() as i64;
        if wanted == 0 {
            return false;
        }
        let up = healthy.iter().filter(|p| b.selects(p)).count() as i64;
        let down = pending.iter().filter(|p| b.selects(p)).count() as i64;
        wanted > b.allowed(up, up + down)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::labels::Labels;

    fn pod(ns: &str, app: &str) -> Pod {
        let mut labels = Labels::new();
        labels.insert("app".into(), app.into());
        Pod {
            namespace: ns.into(),
            name: format!("{app}-x"),
            labels,
            ..Default::default()
        }
    }

    fn pdb(budget: Budget) -> PodDisruptionBudget {
        let mut selector = LabelSelector::default();
        selector.match_labels.insert("app".into(), "web".into());
        PodDisruptionBudget {
            namespace: "shop".into(),
            name: "web".into(),
            selector,
            budget,
        }
    }

    #[test]
    fn allowed_follows_the_disruption_controller() {
        use Budget::*;
        use IntOrPercent::*;
        // 10 expected, 9 healthy.
        assert_eq!(pdb(MinAvailable(Int(8))).allowed(9, 10), 1);
        assert_eq!(pdb(MinAvailable(Int(10))).allowed(9, 10), 0);
        // 50% of 10 rounds to 5.
        assert_eq!(pdb(MinAvailable(Percent(50))).allowed(9, 10), 4);
        // 25% of 10 rounds up to 3.
        assert_eq!(pdb(MinAvailable(Percent(25))).allowed(9, 10), 6);
        assert_eq!(pdb(MaxUnavailable(Int(2))).allowed(9, 10), 1);
        assert_eq!(pdb(MaxUnavailable(Int(1))).allowed(9, 10), 0);
        // 15% of 10 rounds up to 2; one is already down.
        assert_eq!(pdb(MaxUnavailable(Percent(15))).allowed(9, 10), 1);
        assert_eq!(pdb(MaxUnavailable(Percent(0))).allowed(10, 10), 0);
        // Never negative.
        assert_eq!(pdb(MinAvailable(Int(20))).allowed(9, 10), 0);
    }

    #[test]
    fn breaks_counts_only_selected_pods() {
        let web: Vec<Pod> = (0..4).map(|_| pod("shop", "web")).collect();
        let other = pod("shop", "api");
        let elsewhere = pod("blog", "web");
        let healthy: Vec<&Pod> = web.iter().chain([&other, &elsewhere]).collect();
        let budgets = [pdb(Budget::MaxUnavailable(IntOrPercent::Int(1)))];
        assert!(breaks(&budgets, &healthy, &[], &[&web[0]]).is_none());
        assert!(breaks(&budgets, &healthy, &[], &[&web[0], &web[1]]).is_some());
        assert!(breaks(&budgets, &healthy, &[], &[&other, &elsewhere]).is_none());
        // One selected pod already down uses the whole budget.
        assert!(breaks(&budgets, &healthy[1..], &[&web[0]], &[&web[1]]).is_some());
    }
}
