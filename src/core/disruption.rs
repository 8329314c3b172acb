//! Voluntary disruption: per-pool policy, what may be disrupted (expiry, drift, repair),
//! and the order of a disruption as data (a state machine that emits commands), so the
//! simulator and the controller execute the same steps. Consolidation itself (which
//! nodes to remove or replace) is in `consolidation.rs`.

use super::budget::NodeBudget;
use super::labels::Labels;
use super::nodepool::NodePool;
use super::pdb::PodDisruptionBudget;
use super::pod::Pod;
use super::scheduler::{solve, LaunchPlan, SolveEnv};
use super::snapshot::Snapshot;
use super::taints::Taint;

/// Karpenter's `spec.disruption.consolidationPolicy`, plus `Never` (no consolidation at
/// all, not even of empty nodes; `consolidateAfter: Never` means the same).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConsolidationPolicy {
    Never,
    /// Only empty nodes are removed (after `consolidateAfter`).
    WhenEmpty,
    /// Empty nodes are removed, and underutilized ones are deleted or replaced when their
    /// pods fit elsewhere more cheaply. Karpenter v1's default.
    #[default]
    WhenEmptyOrUnderutilized,
}

impl ConsolidationPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Never" => Some(Self::Never),
            "WhenEmpty" => Some(Self::WhenEmpty),
            "WhenEmptyOrUnderutilized" => Some(Self::WhenEmptyOrUnderutilized),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "Never",
            Self::WhenEmpty => "WhenEmpty",
            Self::WhenEmptyOrUnderutilized => "WhenEmptyOrUnderutilized",
        }
    }
}

/// What a replacement must save per hour to be worth its disruption (`minSavings`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum MinSavings {
    /// Any saving will do (Karpenter's behaviour).
    #[default]
    Off,
    /// At least this fraction of the old price (`"10%"` is 0.10).
    Fraction(f64),
    /// At least this many dollars per hour (`"$0.05/h"`).
    PerHour(f64),
}

impl MinSavings {
    /// Does going from `old` to `new` dollars per hour save enough?
    pub fn met(self, old: f64, new: f64) -> bool {
        let saved = old - new;
        saved > 0.0
            && match self {
                MinSavings::Off => true,
                MinSavings::Fraction(f) => saved >= f * old - 1e-12,
                MinSavings::PerHour(d) => saved >= d - 1e-12,
            }
    }
}

/// Default `expireAfter` (Karpenter v1's default, 30 days).
pub const DEFAULT_EXPIRE_AFTER_S: f64 = 720.0 * 3600.0;
/// Default `consolidateAfter`.
pub const DEFAULT_CONSOLIDATE_AFTER_S: f64 = 30.0;
/// A node NotReady this long is replaced (Karpenter's node repair toleration).
pub const DEFAULT_REPAIR_AFTER_S: f64 = 600.0;
/// Node repair stops while more than this share of a pool is unhealthy (Karpenter's
/// guard: a cluster-wide outage is not fixed by replacing every node).
pub const MAX_UNHEALTHY_FRACTION: f64 = 0.2;

/// One pool's disruption settings, as the core uses them.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolDisruption {
    pub policy: ConsolidationPolicy,
    /// `consolidateAfter` in seconds; `None` = `Never`.
    pub consolidate_after_s: Option<f64>,
    pub min_savings: MinSavings,
    pub budgets: Vec<NodeBudget>,
    /// `expireAfter` in seconds; `None` = `Never`.
    pub expire_after_s: Option<f64>,
    pub repair_after_s: f64,
}

impl Default for PoolDisruption {
    fn default() -> Self {
        PoolDisruption {
            policy: ConsolidationPolicy::default(),
            consolidate_after_s: Some(DEFAULT_CONSOLIDATE_AFTER_S),
            min_savings: MinSavings::Off,
            budgets: NodeBudget::default_budgets(),
            expire_after_s: Some(DEFAULT_EXPIRE_AFTER_S),
            repair_after_s: DEFAULT_REPAIR_AFTER_S,
        }
    }
}

impl PoolDisruption {
    /// Seconds a node must be stable before consolidation looks at it; `None` when the
    /// pool does not consolidate at all.
    pub fn consolidate_after(&self) -> Option<f64> {
        match self.policy {
            ConsolidationPolicy::Never => None,
            _ => self.consolidate_after_s,
        }
    }

    /// May non-empty nodes be consolidated?
    pub fn underutilized(&self) -> bool {
        self.policy == ConsolidationPolicy::WhenEmptyOrUnderutilized
            && self.consolidate_after_s.is_some()
    }
}

/// Node annotations that forbid voluntary disruption of the whole node.
pub const NODE_DO_NOT_DISRUPT: [&str; 2] = [
    "stevedore.dev/do-not-disrupt",
    "karpenter.sh/do-not-disrupt",
];

/// Is the node annotated do-not-disrupt?
pub fn node_blocks_disruption(annotations: &Labels) -> bool {
    NODE_DO_NOT_DISRUPT
        .iter()
        .any(|k| annotations.get(*k).map(String::as_str) == Some("true"))
}

/// May this pod be evicted by a voluntary disruption? Not when annotated do-not-disrupt,
/// holding local storage without leave, or bare (no controller would recreate it);
/// DaemonSet pods are not evicted at all (they go with the node), so they never block.
pub fn pod_evictable(pod: &Pod) -> bool {
    pod.is_daemonset() || super::consolidation::movable_pod(pod)
}

/// Does this pod end by itself (a Job's pod)? Consolidation leaves its node alone: an
/// eviction throws its progress away and restarts it elsewhere, while the node empties
/// on its own when the Job is done and then goes as an empty node, disrupting nothing.
/// (Expiry and drift still replace such nodes.)
pub fn runs_to_completion(pod: &Pod) -> bool {
    pod.owner.as_ref().is_some_and(|o| o.kind == "Job")
}

/// Has the node outlived its pool's `expireAfter`?
pub fn expired(pool: &PoolDisruption, launched_at: f64, now: f64) -> bool {
    pool.expire_after_s.is_some_and(|e| now - launched_at >= e)
}

/// Should a node NotReady since `not_ready_since` be replaced now? `unhealthy` of the
/// pool's `total` nodes are NotReady (including this one).
pub fn needs_repair(
    pool: &PoolDisruption,
    not_ready_since: Option<f64>,
    now: f64,
    unhealthy: usize,
    total: usize,
) -> bool {
    let overdue = not_ready_since.is_some_and(|s| now - s >= pool.repair_after_s);
    overdue && (unhealthy as f64) <= MAX_UNHEALTHY_FRACTION * total as f64 + 1e-9
}

/// Why a node no longer matches its pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    /// A requirement of the pool the node's labels no longer meet (its key).
    Requirement(String),
    /// A template label the node lacks or has with another value.
    Label(String),
    /// The pool's taints differ from the node's.
    Taints,
    /// The template hash recorded on the node differs (node class, image, ...).
    Hash,
}

/// The pool template's hash, as recorded on a node at launch (`stevedore.dev/nodepool-hash`):
/// what static drift compares. FNV-1a over the template's fields, stable across runs.
pub fn template_hash(pool: &NodePool) -> u64 {
    let text = format!(
        "{:?}|{:?}|{:?}|{:?}",
        pool.requirements, pool.labels, pool.taints, pool.startup_taints
    );
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Has the node drifted from `pool`? `pool_hash` is `template_hash(pool)` (callers keep
/// it: it changes only with the pool) and `node_hash` the hash recorded at launch. A node
/// launched from the current template cannot have drifted, so that is checked first.
pub fn drifted(
    pool: &NodePool,
    pool_hash: u64,
    labels: &Labels,
    taints: &[Taint],
    node_hash: Option<u64>,
) -> Option<Drift> {
    if node_hash == Some(pool_hash) {
        return None;
    }
    if let Some(r) = pool.requirements.iter().find(|r| !r.matches(labels)) {
        return Some(Drift::Requirement(r.key.clone()));
    }
    if let Some((k, _)) = pool.labels.iter().find(|(k, v)| labels.get(*k) != Some(*v)) {
        return Some(Drift::Label(k.clone()));
    }
    let same_taints =
        pool.taints.len() == taints.len() && pool.taints.iter().all(|t| taints.contains(t));
    if !same_taints {
        return Some(Drift::Taints);
    }
    node_hash.map(|_| Drift::Hash)
}

/// Where the pods of `set` go when those nodes are disrupted for expiry, drift or repair:
/// the new nodes to launch first (none when the pods fit on the other ready nodes).
/// `None` when some pod would find no place: the disruption waits.
pub fn replacements(env: &SolveEnv, snapshot: &Snapshot, set: &[usize]) -> Option<Vec<LaunchPlan>> {
    let mut nodes = snapshot.nodes.clone();
    for &n in set {
        nodes[n].schedulable = false;
    }
    let (moving, staying): (Vec<_>, Vec<_>) = snapshot
        .bound
        .iter()
        .copied()
        .filter(|(p, _)| !p.is_daemonset())
        .partition(|(_, n)| set.contains(n));
    let without = Snapshot {
        nodes,
        bound: staying,
        pending: moving.into_iter().map(|(p, _)| p).collect(),
    };
    let settled = SolveEnv {
        use_launching_nodes: false,
        allow_new_nodes: true,
        exclude_node: None,
        ..*env
    };
    let decision = solve(&settled, &without);
    let stuck = !decision.unschedulable.is_empty() || !decision.infeasible.is_empty();
    (!stuck).then_some(decision.launches)
}

/// Which of `candidates` (in order) may be evicted now, one after another, without
/// breaking a PodDisruptionBudget. `healthy` are the running pods (the candidates among
/// them) and `pending` the ones not running; each eviction takes one healthy pod away.
pub fn evictable(
    pdbs: &[PodDisruptionBudget],
    healthy: &[&Pod],
    pending: &[&Pod],
    candidates: &[&Pod],
) -> Vec<usize> {
    // Healthy and unavailable pods per budget, counted once and kept up to date.
    let count = |pods: &[&Pod], b: &PodDisruptionBudget| {
        pods.iter().filter(|p| b.selects(p)).count() as i64
    };
    let mut counts: Vec<(i64, i64)> = pdbs
        .iter()
        .map(|b| (count(healthy, b), count(pending, b)))
        .collect();
    let mut out = Vec::new();
    for (i, pod) in candidates.iter().enumerate() {
        let selecting: Vec<usize> = (0..pdbs.len()).filter(|&b| pdbs[b].selects(pod)).collect();
        let allowed = selecting.iter().all(|&b| {
            let (up, down) = counts[b];
            pdbs[b].allowed(up, up + down) >= 1
        });
        if allowed {
            out.push(i);
            for b in selecting {
                counts[b].0 -= 1;
                counts[b].1 += 1;
            }
        }
    }
    out
}

/// What the executor (simulator or controller) does next for a disruption.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Taint the nodes `karpenter.sh/disrupted:NoSchedule` (cordon): nothing new lands.
    Cordon,
    /// Launch the replacement nodes and report when they are ready (or failed).
    LaunchReplacements,
    /// Evict the nodes' pods through the eviction API (PodDisruptionBudgets respected;
    /// a refused eviction is retried), and report when the nodes are empty.
    Drain,
    /// Terminate the (empty) nodes.
    Terminate,
    /// Remove the taint again: the disruption was abandoned and the nodes serve on.
    Uncordon,
    /// Try no disruption of these nodes before this time (caller's clock).
    BackOff { until: f64 },
}

/// What the executor reports back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    ReplacementsReady,
    ReplacementFailed,
    Drained,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Launching,
    Draining,
    Done,
    Abandoned,
}

/// Seconds to wait before disrupting a node again after its replacement failed.
pub const REPLACEMENT_BACKOFF_S: f64 = 300.0;

/// The order of one disruption: cordon; launch the replacements and wait until they
/// are ready; drain respecting PodDisruptionBudgets; terminate. If a replacement fails,
/// un-cordon and back off: the old nodes keep running their pods, nothing is lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execution {
    pub phase: Phase,
}

impl Execution {
    /// Starts a disruption that needs `replacements` new nodes first.
    pub fn start(replacements: usize) -> (Self, Vec<Command>) {
        if replacements == 0 {
            let e = Execution {
                phase: Phase::Draining,
            };
            (e, vec![Command::Cordon, Command::Drain])
        } else {
            let e = Execution {
                phase: Phase::Launching,
            };
            (e, vec![Command::Cordon, Command::LaunchReplacements])
        }
    }

    /// Advances on `event` at `now`; events that do not fit the phase change nothing.
    pub fn on(&mut self, event: Event, now: f64) -> Vec<Command> {
        match (self.phase, event) {
            (Phase::Launching, Event::ReplacementsReady) => {
                self.phase = Phase::Draining;
                vec![Command::Drain]
            }
            (Phase::Launching, Event::ReplacementFailed) => {
                self.phase = Phase::Abandoned;
                vec![
                    Command::Uncordon,
                    Command::BackOff {
                        until: now + REPLACEMENT_BACKOFF_S,
                    },
                ]
            }
            (Phase::Draining, Event::Drained) => {
                self.phase = Phase::Done;
                vec![Command::Terminate]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pdb::{Budget, IntOrPercent};
    use crate::core::pod::OwnerRef;
    use crate::core::requirements::{LabelSelector, Operator, Requirement};
    use crate::core::taints::TaintEffect;

    fn owned(name: &str) -> Pod {
        let mut p = Pod {
            namespace: "shop".into(),
            name: name.into(),
            owner: Some(OwnerRef {
                kind: "ReplicaSet".into(),
                name: "rs".into(),
            }),
            ..Default::default()
        };
        p.labels.insert("app".into(), "web".into());
        p
    }

    #[test]
    fn a_replacement_comes_first_and_a_failure_loses_nothing() {
        let (mut e, cmds) = Execution::start(1);
        assert_eq!(cmds, [Command::Cordon, Command::LaunchReplacements]);
        // Draining before the replacement is ready is not a step of this machine.
        assert!(e.on(Event::Drained, 5.0).is_empty());
        assert_eq!(e.on(Event::ReplacementsReady, 60.0), [Command::Drain]);
        assert_eq!(e.on(Event::Drained, 70.0), [Command::Terminate]);
        assert_eq!(e.phase, Phase::Done);

        let (mut failed, _) = Execution::start(2);
        let cmds = failed.on(Event::ReplacementFailed, 10.0);
        assert_eq!(
            cmds,
            [
                Command::Uncordon,
                Command::BackOff {
                    until: 10.0 + REPLACEMENT_BACKOFF_S
                }
            ]
        );
        assert_eq!(failed.phase, Phase::Abandoned);
        assert!(failed.on(Event::ReplacementsReady, 20.0).is_empty());

        let (e, cmds) = Execution::start(0);
        assert_eq!(cmds, [Command::Cordon, Command::Drain]);
        assert_eq!(e.phase, Phase::Draining);
    }

    #[test]
    fn evictions_stop_at_the_budget_and_count_earlier_ones() {
        let pods: Vec<Pod> = (0..4).map(|i| owned(&format!("web-{i}"))).collect();
        let healthy: Vec<&Pod> = pods.iter().collect();
        let mut selector = LabelSelector::default();
        selector.match_labels.insert("app".into(), "web".into());
        let pdbs = [PodDisruptionBudget {
            namespace: "shop".into(),
            name: "web".into(),
            selector,
            budget: Budget::MaxUnavailable(IntOrPercent::Int(2)),
        }];
        let all: Vec<&Pod> = pods.iter().collect();
        assert_eq!(evictable(&pdbs, &healthy, &[], &all), [0, 1]);
        // One already down: one more may go.
        assert_eq!(evictable(&pdbs, &healthy[1..], &all[..1], &all[1..]), [0]);
        assert_eq!(evictable(&[], &healthy, &[], &all), [0, 1, 2, 3]);
    }

    #[test]
    fn pods_that_may_not_be_evicted() {
        assert!(pod_evictable(&owned("a")));
        let mut bare = owned("b");
        bare.owner = None;
        assert!(!pod_evictable(&bare));
        // The Cluster Autoscaler's override: a bare pod that says it is safe to evict.
        bare.annotations.insert(
            "cluster-autoscaler.kubernetes.io/safe-to-evict".into(),
            "true".into(),
        );
        assert!(pod_evictable(&bare));
        let mut ds = owned("c");
        ds.owner = Some(OwnerRef {
            kind: "DaemonSet".into(),
            name: "agent".into(),
        });
        ds.annotations
            .insert("karpenter.sh/do-not-disrupt".into(), "true".into());
        assert!(pod_evictable(&ds));
        let mut keep = owned("d");
        keep.annotations
            .insert("stevedore.dev/do-not-disrupt".into(), "true".into());
        assert!(!pod_evictable(&keep));

        let mut ann = Labels::new();
        assert!(!node_blocks_disruption(&ann));
        ann.insert("karpenter.sh/do-not-disrupt".into(), "true".into());
        assert!(node_blocks_disruption(&ann));
        ann.clear();
        ann.insert("stevedore.dev/do-not-disrupt".into(), "false".into());
        assert!(!node_blocks_disruption(&ann));
    }

    fn pool() -> NodePool {
        let mut labels = Labels::new();
        labels.insert("team".into(), "web".into());
        NodePool {
            name: "general".into(),
            weight: 0,
            requirements: vec![Requirement {
                key: "karpenter.sh/capacity-type".into(),
                operator: Operator::In,
                values: vec!["spot".into()],
            }],
            labels,
            taints: Vec::new(),
            startup_taints: Vec::new(),
            limits: Default::default(),
            empty_node_after: None,
        }
    }

    #[test]
    fn drift_is_found_from_requirements_labels_taints_and_hash() {
        let p = pool();
        let mut node = Labels::new();
        node.insert("karpenter.sh/capacity-type".into(), "spot".into());
        node.insert("team".into(), "web".into());
        let h = Some(template_hash(&p));
        let check =
            |pool: &NodePool, node: &Labels, h| drifted(pool, template_hash(pool), node, &[], h);
        assert_eq!(check(&p, &node, h), None);
        assert_eq!(check(&p, &node, None), None);

        let mut on_demand_only = p.clone();
        on_demand_only.requirements[0].values = vec!["on-demand".into()];
        assert_eq!(
            check(&on_demand_only, &node, h),
            Some(Drift::Requirement("karpenter.sh/capacity-type".into()))
        );
        let mut relabelled = p.clone();
        relabelled.labels.insert("team".into(), "api".into());
        assert_eq!(
            check(&relabelled, &node, h),
            Some(Drift::Label("team".into()))
        );
        let mut tainted = p.clone();
        tainted.taints.push(Taint {
            key: "dedicated".into(),
            value: "web".into(),
            effect: TaintEffect::NoSchedule,
        });
        assert_eq!(check(&tainted, &node, h), Some(Drift::Taints));
        let mut restarted = p.clone();
        restarted.startup_taints = tainted.taints.clone();
        assert_eq!(check(&restarted, &node, h), Some(Drift::Hash));
    }

    #[test]
    fn expiry_and_repair() {
        let mut p = PoolDisruption::default();
        assert!(!expired(&p, 0.0, DEFAULT_EXPIRE_AFTER_S - 1.0));
        assert!(expired(&p, 0.0, DEFAULT_EXPIRE_AFTER_S));
        p.expire_after_s = None;
        assert!(!expired(&p, 0.0, 1e12));

        assert!(!needs_repair(&p, None, 1e6, 0, 10));
        assert!(!needs_repair(&p, Some(0.0), 599.0, 1, 10));
        assert!(needs_repair(&p, Some(0.0), 600.0, 1, 10));
        // Three of ten NotReady: a wider outage, no repairs.
        assert!(!needs_repair(&p, Some(0.0), 600.0, 3, 10));
    }

    #[test]
    fn policies_and_savings() {
        let mut p = PoolDisruption::default();
        assert_eq!(p.consolidate_after(), Some(30.0));
        assert!(p.underutilized());
        p.policy = ConsolidationPolicy::WhenEmpty;
        assert!(!p.underutilized());
        p.policy = ConsolidationPolicy::Never;
        assert_eq!(p.consolidate_after(), None);
        for s in ["Never", "WhenEmpty", "WhenEmptyOrUnderutilized"] {
            assert_eq!(ConsolidationPolicy::parse(s).unwrap().as_str(), s);
        }

        assert!(MinSavings::Off.met(1.0, 0.99));
        assert!(!MinSavings::Off.met(1.0, 1.0));
        assert!(MinSavings::Fraction(0.1).met(1.0, 0.9));
        assert!(!MinSavings::Fraction(0.1).met(1.0, 0.91));
        assert!(MinSavings::PerHour(0.05).met(0.2, 0.15));
        assert!(!MinSavings::PerHour(0.05).met(0.2, 0.16));
    }
}
