//! Consolidation: find nodes whose removal, or replacement by one cheaper node, keeps
//! every pod placed. Each candidate set is checked by running the same scheduler the
//! provisioner uses on the cluster without those nodes.
//!
//! Order: empty nodes first (`empty_nodes`), then one node at a time, then several nodes
//! at once (`find_action` tries the longest prefix of the candidates, most dollars per
//! pod first, by binary search, as Karpenter does). No trial moves pods onto an empty
//! node: the pools remove those by themselves.

use super::disruption::{
    node_blocks_disruption, pod_evictable, runs_to_completion, MinSavings, PoolDisruption,
};
use super::instance::CapacityType;
use super::labels::{self, Labels};
use super::pdb::PodDisruptionBudget;
use super::pod::Pod;
use super::resources::Resources;
use super::scheduler::{solve_reusing, LaunchPlan, NodeRooms, SolveEnv};
use super::snapshot::Snapshot;

/// Does this pod keep its node: annotated do-not-disrupt (stevedore's own, Karpenter's
/// or the Cluster Autoscaler's `safe-to-evict: "false"`), or holding local storage
/// without `safe-to-evict: "true"` (as the Cluster Autoscaler decides)?
pub fn blocks_disruption(pod: &Pod) -> bool {
    let ann = |k: &str| pod.annotations.get(k).map(String::as_str);
    let safe_to_evict = ann(SAFE_TO_EVICT);
    ann("stevedore.dev/do-not-disrupt") == Some("true")
        || ann("karpenter.sh/do-not-disrupt") == Some("true")
        || safe_to_evict == Some("false")
        || (pod.local_storage && safe_to_evict != Some("true"))
}

/// The Cluster Autoscaler's annotation: `"true"` lets a pod go even without a controller
/// or with local storage, `"false"` keeps it.
pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";

/// May this (non-DaemonSet) pod be moved off its node? It has a controller to recreate
/// it, or says `safe-to-evict: "true"` (the Cluster Autoscaler's override of the bare-pod
/// rule), and nothing in [`blocks_disruption`] keeps it.
pub fn movable_pod(pod: &Pod) -> bool {
    let safe = pod.annotations.get(SAFE_TO_EVICT).map(String::as_str) == Some("true");
    (pod.owner.is_some() || safe) && !blocks_disruption(pod)
}

/// Per-node facts consolidation needs besides the snapshot (same indices).
#[derive(Clone, Debug, Default)]
pub struct NodeCost {
    pub price_per_hour: f64,
    /// When a pod last arrived on or left the node (seconds, caller's clock).
    pub stable_since: f64,
    /// The node's annotations (`karpenter.sh/do-not-disrupt: "true"` keeps it).
    pub annotations: Labels,
}

/// Everything a consolidation decision reads besides the scheduling environment.
#[derive(Clone, Debug)]
pub struct Inputs<'c> {
    /// Same indices as the snapshot's nodes.
    pub nodes: &'c [NodeCost],
    /// Same indices as the node pools.
    pub pools: &'c [PoolDisruption],
    pub pdbs: &'c [PodDisruptionBudget],
    /// How many more nodes each pool may disrupt now for `Underutilized` (its budgets).
    pub budget_left: &'c [usize],
    /// Single-node trials per decision (each is one scheduling simulation).
    pub max_candidates: usize,
    /// Room for pods (cpu and memory) the cluster keeps: the caller's peak demand of pods
    /// that do not end by themselves over a recent window (Settings
    /// `consolidationWindow`). Like the Horizontal Pod
    /// Autoscaler's scale-down stabilization window, consolidation never takes capacity
    /// below it, so it does not remove nodes a demand just seen would need again (the
    /// churn of deleting and relaunching). Zero keeps nothing extra.
    pub keep: Resources,
    /// Savings must pay for the evictions they cause (`None`: any saving is enough).
    pub payback: Option<Payback<'c>>,
}

/// What an eviction costs, and how long the demand has stayed below a capacity: an
/// action pays when its savings over the time the remaining capacity has sufficed (the
/// best guess of how long it will go on sufficing) cover its evictions.
#[derive(Clone, Copy, Debug)]
pub struct Payback<'c> {
    pub history: &'c DemandHistory,
    /// Dollars per evicted pod.
    pub eviction_cost: f64,
}

/// One consolidation: take `nodes` away, after launching `replacement` if any.
#[derive(Clone, Debug)]
pub struct Action {
    pub nodes: Vec<usize>,
    pub replacement: Option<LaunchPlan>,
    /// Dollars per hour saved.
    pub savings: f64,
}

/// A Spot node is only replaced by Spot when at least this many cheaper Spot types are
/// on offer, so the replacement is not the one most-interrupted cheapest pool.
pub const MIN_CHEAPER_SPOT_TYPES: usize = 15;

/// How long a node's long-running pods wait, at most, for the nodes that only run Jobs
/// to empty before they are moved anyway (see `Trials::lands_on_transient`): where Jobs
/// run all the time, waiting for ever keeps half-empty service nodes up. When consolidation
/// tried the fewest-pods nodes first, the wait cut evictions by half (seed 1: 30 minutes
/// against none, week-100k 52% fewer for 2.0% more cost; batch-bursts 56% and batch-mixed
/// 41% fewer at the same cost). Trying the most dollars per pod first, with Jobs' pods
/// priced as held (`mix::held_factor`), seeds 1-3: 30 minutes, 300 s, 60 s and none put
/// week-100k at 1.218x, 1.199x, 1.192x and 1.188x of the shape bound with 0.145, 0.315,
/// 0.379 and 0.361 pods evicted per node-hour; batch-mixed $218.46-221.19 either way, at
/// 0.035-0.067 (0.212 when the trace was added). Where Jobs run all the time, a node with
/// services is almost never stable for 30 minutes: the wait kept them for good.
pub const TRANSIENT_DEFERRAL_S: f64 = 60.0;

/// Single-node trials a consolidation decision makes (the simulator's scans and the
/// controller's passes alike). Seeds 1-3 of the bundled traces, 5 against 10: week-100k
/// $1,928.14 -> $1,916.48 with pods evicted per node-hour 0.569 -> 0.336, batch-mixed
/// $218.12 -> $217.84 with 0.133 -> 0.045, mixed $189.17 -> $190.76 (+0.8%) with 0.029 ->
/// 0.021, daily-web and batch-bursts alike. The trials past the fifth mostly found
/// actions whose savings barely paid for their evictions, and the first action found is
/// the one taken; 20 and 40 evicted 3-7 times as many pods on week-100k for more cost.
pub const SINGLE_NODE_TRIALS: usize = 5;

/// Multi-node consolidation looks at most at this many candidates at once: the
/// simulation grows with the pods moved. Karpenter allows 100; on the bundled traces,
/// seeds 1-3, 20 takes the same actions (week-100k $1,841.50 against $1,841.53, the
/// others to the cent) in a sixth less search time, and 10 cost week-100k no more on
/// seed 1.
pub const MAX_MULTI_NODE: usize = 20;

/// Empty nodes that may be deleted now: ready, stable for the pool's `consolidateAfter`,
/// not annotated do-not-disrupt, within the pool's `Empty` budget (`empty_budget_left`).
/// `bound` pods other than DaemonSet pods make a node non-empty.
pub fn empty_nodes(
    snapshot: &Snapshot,
    nodes: &[NodeCost],
    pools: &[PoolDisruption],
    empty_budget_left: &[usize],
    now: f64,
) -> Vec<usize> {
    let mut busy = vec![false; snapshot.nodes.len()];
    for &(pod, n) in &snapshot.bound {
        busy[n] |= !pod.is_daemonset();
    }
    let mut left = empty_budget_left.to_vec();
    let mut out = Vec::new();
    for (n, node) in snapshot.nodes.iter().enumerate() {
        let Some(p) = node.pool else { continue };
        let stable = pools[p]
            .consolidate_after()
            .is_some_and(|a| now - nodes[n].stable_since >= a);
        if node.ready
            && node.schedulable
            && !busy[n]
            && stable
            && !node_blocks_disruption(&nodes[n].annotations)
            && left[p] > 0
        {
            left[p] -= 1;
            out.push(n);
        }
    }
    out
}

/// Looks for one consolidation of non-empty nodes: one candidate at a time (at most
/// `max_candidates` tried, most dollars per pod first) whose pods fit on the other nodes
/// and at most one new cheaper node; failing that, the largest such set of candidates
/// (up to `MAX_MULTI_NODE`). A node is a candidate when its pool consolidates
/// underutilized nodes and has budget left, it was stable for `consolidateAfter`, it is
/// not annotated do-not-disrupt, and each of its pods may be evicted (controller-owned,
/// no do-not-disrupt or local storage, not a Job's pod that will end by itself) with its PodDisruptionBudgets allowing at least
/// one eviction now (the snapshot's pending pods count as unavailable). The drain then
/// evicts one pod at a time within the budgets, so a budget of one still lets a node
/// with several of its pods go, slowly (as Karpenter).
pub fn find_action(env: &SolveEnv, snapshot: Snapshot, input: &Inputs) -> Option<Action> {
    search(env, snapshot, input).action
}

/// What one consolidation search found.
#[derive(Clone, Debug, Default)]
pub struct Search {
    pub action: Option<Action>,
    /// When the first action refused only because its savings did not yet pay for its
    /// evictions would pay, if the demand stays below what it leaves: nothing else
    /// changing, a search before then finds nothing new.
    pub pays_at: Option<f64>,
}

/// [`find_action`], also saying when an action refused for its evictions would pay.
pub fn search<'a>(env: &SolveEnv, mut snapshot: Snapshot<'a>, input: &Inputs) -> Search {
    let pods_on = pods_by_node(&snapshot);
    let candidates = candidates(env, &snapshot, &pods_on, input);
    if candidates.is_empty() {
        // No trial to run (on a busy cluster, most scans: no node has been stable for
        // `consolidateAfter`): nothing else is worth building.
        return Search::default();
    }
    let anti_bound = snapshot
        .bound
        .iter()
        .copied()
        .filter(|(pod, _)| !pod.anti_affinity.is_empty())
        .collect();
    // Nodes that run only Job pods (they empty by themselves): the same for every trial.
    let transient: Vec<usize> = (0..snapshot.nodes.len())
        .filter(|&n| {
            snapshot.nodes[n].schedulable
                && !pods_on[n].is_empty()
                && pods_on[n].iter().all(|p| runs_to_completion(p))
        })
        .collect();
    // Empty nodes that emptiness will remove: no trial moves pods onto them.
    let emptying: Vec<usize> = (0..snapshot.nodes.len())
        .filter(|&n| {
            let node = &snapshot.nodes[n];
            node.ready
                && node.schedulable
                && pods_on[n].is_empty()
                && node
                    .pool
                    .is_some_and(|p| input.pools[p].consolidate_after().is_some())
                && !node_blocks_disruption(&input.nodes[n].annotations)
        })
        .collect();
    let room = Rooms::long_running(&snapshot, &pods_on, &transient);
    let free = Rooms::free(&snapshot, &emptying, &transient);
    let mut trials = Trials {
        env,
        anti_bound,
        transient,
        emptying,
        rooms: None,
        snapshot: &mut snapshot,
        pods_on: &pods_on,
        input,
        room,
        free,
        pays_at: None,
    };
    // One node at a time first: on the bundled traces trying several nodes first (as
    // Karpenter does) cost 5-16% more and disrupted twice as many nodes, because packing
    // the whole slack away at once is bought back as soon as demand rises again.
    let single = candidates
        .iter()
        .take(input.max_candidates)
        .find_map(|&n| trials.try_set(&[n]));
    let action = single.or_else(|| trials.multi_node(&candidates));
    Search {
        action,
        pays_at: trials.pays_at,
    }
}

fn pods_by_node<'a>(snapshot: &Snapshot<'a>) -> PodsOn<'a> {
    // One list for every node, in node order: a list per node was an allocation per
    // node at every search (a thousand nodes, every scan, of a busy week).
    let mut start = vec![0; snapshot.nodes.len() + 1];
    for &(pod, n) in &snapshot.bound {
        if !pod.is_daemonset() {
            start[n + 1] += 1;
        }
    }
    for n in 0..snapshot.nodes.len() {
        start[n + 1] += start[n];
    }
    let mut next = start.clone();
    let mut pods = vec![None; start[snapshot.nodes.len()]];
    for &(pod, n) in &snapshot.bound {
        if !pod.is_daemonset() {
            pods[next[n]] = Some(pod);
            next[n] += 1;
        }
    }
    PodsOn {
        start,
        pods: pods
            .into_iter()
            .map(|p| p.expect("every slot filled"))
            .collect(),
    }
}

/// The non-DaemonSet pods bound to each snapshot node (`pods_on[n]`), in one list.
struct PodsOn<'a> {
    /// Node `n`'s pods are `pods[start[n]..start[n + 1]]`.
    start: Vec<usize>,
    pods: Vec<&'a Pod>,
}

impl<'a> std::ops::Index<usize> for PodsOn<'a> {
    type Output = [&'a Pod];

    fn index(&self, n: usize) -> &[&'a Pod] {
        &self.pods[self.start[n]..self.start[n + 1]]
    }
}

/// The nodes consolidation may consider, most dollars an hour per pod first: as many as
/// a decision tries (its single-node trials, or the longest
/// multi-node prefix).
fn candidates(env: &SolveEnv, snapshot: &Snapshot, pods_on: &PodsOn, input: &Inputs) -> Vec<usize> {
    // Pods count as healthy for the budgets when they run on a ready node.
    let healthy: Vec<&Pod> = if input.pdbs.is_empty() {
        Vec::new()
    } else {
        snapshot
            .bound
            .iter()
            .filter(|&&(_, n)| snapshot.nodes[n].ready)
            .map(|&(pod, _)| pod)
            .collect()
    };
    // Evictions each PodDisruptionBudget allows now, counted once.
    let count = |pods: &[&Pod], b: &PodDisruptionBudget| {
        pods.iter().filter(|p| b.selects(p)).count() as i64
    };
    let allowed: Vec<i64> = input
        .pdbs
        .iter()
        .map(|b| {
            let (up, down) = (count(&healthy, b), count(&snapshot.pending, b));
            b.allowed(up, up + down)
        })
        .collect();
    let mut out: Vec<usize> = (0..snapshot.nodes.len())
        .filter(|&n| {
            let node = &snapshot.nodes[n];
            let Some(p) = node.pool else { return false };
            let pool = &input.pools[p];
            node.ready
                && node.schedulable
                && pool.underutilized()
                && input.budget_left[p] > 0
                && pool
                    .consolidate_after()
                    .is_some_and(|a| env.now - input.nodes[n].stable_since >= a)
                && !node_blocks_disruption(&input.nodes[n].annotations)
                && !pods_on[n].is_empty()
        })
        .collect();
    // The index breaks every tie, so an unstable sort gives the same order.
    // Most dollars per pod first: the savings each eviction buys can be no more than
    // that, and `Trials::pays` weighs exactly this. Fewest pods first (Karpenter's
    // order) left a large node with a dozen long-running pods behind every small node
    // holding one or two that could not move: on `batch-mixed` an r7g.16xlarge kept 7-19
    // web pods for 60 hours, never tried. Seeds 1-3: batch-mixed $235.22 -> $218.18,
    // mixed $193.60 -> $191.25, daily-web $83.56 -> $84.15, fewer evictions on each.
    // Each key found once (a division per comparison was a tenth of a search).
    let mut keyed: Vec<(f64, usize)> = out
        .iter()
        .map(|&n| (input.nodes[n].price_per_hour / pods_on[n].len() as f64, n))
        .collect();
    keyed.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    out.clear();
    out.extend(keyed.into_iter().map(|(_, n)| n));
    // The pods are checked last, and only until enough nodes pass: on a large cluster
    // that is a few hundred pods instead of every bound pod on every scan.
    let pods_allow = |n: &usize| {
        pods_on[*n]
            .iter()
            .all(|pod| pod_evictable(pod) && !runs_to_completion(pod))
            && pods_on[*n].iter().all(|pod| {
                (0..input.pdbs.len()).all(|b| !input.pdbs[b].selects(pod) || allowed[b] >= 1)
            })
    };
    out.into_iter()
        .filter(pods_allow)
        .take(input.max_candidates.max(MAX_MULTI_NODE))
        .collect()
}

/// The environment of a trial's first simulation: existing ready nodes only (launching
/// nodes are already promised to pending pods).
fn trial_env<'e>(env: &SolveEnv<'e>) -> SolveEnv<'e> {
    SolveEnv {
        use_launching_nodes: false,
        allow_new_nodes: false,
        exclude_node: None,
        ..*env
    }
}

/// Per node rooms (cpu, memory) on the ready, schedulable nodes, their total (less the
/// nodes left out), and the total on the nodes that only run Jobs: what is left after a
/// trial is then found from the trial's set alone.
struct Rooms {
    of: Vec<(i64, i64)>,
    total: (i64, i64),
    on_transient: (i64, i64),
}

impl Rooms {
    fn new(of: Vec<(i64, i64)>, left_out: &[usize], transient: &[usize]) -> Self {
        let sum = |nodes: &mut dyn Iterator<Item = &usize>| {
            nodes.fold((0, 0), |t, &n| (t.0 + of[n].0, t.1 + of[n].1))
        };
        let all = of.iter().fold((0, 0), |t, r| (t.0 + r.0, t.1 + r.1));
        let out = sum(&mut left_out.iter());
        let on_transient = sum(&mut transient.iter());
        Rooms {
            total: (all.0 - out.0, all.1 - out.1),
            on_transient,
            of,
        }
    }

    /// Free room: allocatable less what is requested (the most the nodes left after a
    /// trial could take of its pods), emptying nodes left out.
    fn free(snapshot: &Snapshot, emptying: &[usize], transient: &[usize]) -> Self {
        let of = snapshot
            .nodes
            .iter()
            .map(|node| {
                if !(node.ready && node.schedulable) {
                    return (0, 0);
                }
                (
                    (node.allocatable.cpu_milli - node.requested.cpu_milli).max(0),
                    (node.allocatable.memory - node.requested.memory).max(0),
                )
            })
            .collect();
        Rooms::new(of, emptying, transient)
    }

    /// Room for long-running pods: allocatable less the DaemonSet overhead and the Job
    /// pods a node runs (their room is taken until they end; `keep` and the demand
    /// history count long-running pods only).
    fn long_running(snapshot: &Snapshot, pods_on: &PodsOn, transient: &[usize]) -> Self {
        let of = snapshot
            .nodes
            .iter()
            .enumerate()
            .map(|(n, node)| {
                let pods = &pods_on[n];
                if !(node.ready && node.schedulable) {
                    return (0, 0);
                }
                let mut cpu = node.allocatable.cpu_milli - node.requested.cpu_milli;
                let mut memory = node.allocatable.memory - node.requested.memory;
                for p in pods.iter().filter(|p| !runs_to_completion(p)) {
                    cpu += p.requests.cpu_milli;
                    memory += p.requests.memory;
                }
                (cpu, memory)
            })
            .collect();
        Rooms::new(of, &[], transient)
    }

    /// The total less the rooms of what `closed` takes away.
    fn after(&self, closed: &Closed) -> (i64, i64) {
        let (mut cpu, mut memory) = self.total;
        for &n in closed.set {
            cpu -= self.of[n].0;
            memory -= self.of[n].1;
        }
        if closed.transient {
            cpu -= self.on_transient.0;
            memory -= self.on_transient.1;
        }
        (cpu, memory)
    }
}

/// What a trial takes away: its set, and the nodes that only run Jobs when long-running
/// pods move (they do not count on those; see `Trials::try_set`). A set never holds such a
/// node: its pods may all be evicted, and Jobs' pods may not.
struct Closed<'s> {
    set: &'s [usize],
    transient: bool,
}

/// One trial's set (`closed.set`) and what it would move.
struct Trial<'s> {
    closed: Closed<'s>,
    /// Dollars per hour of the set.
    price: f64,
    min_savings: MinSavings,
    /// The requests of the pods moved, and how many.
    moved: Resources,
    pods: usize,
}

impl<'s> Trial<'s> {
    fn new(trials: &Trials, set: &'s [usize], pending: &[&Pod], lasting: bool) -> Self {
        let mut moved = Resources::default();
        for p in pending {
            moved.add(&p.requests);
        }
        let price = set
            .iter()
            .map(|&n| trials.input.nodes[n].price_per_hour)
            .sum();
        Trial {
            closed: Closed {
                set,
                transient: lasting,
            },
            price,
            min_savings: trials.min_savings(set, price),
            moved,
            pods: pending.len(),
        }
    }
}

/// Scheduling simulations of "these nodes gone" over one snapshot.
struct Trials<'t, 'a, 'e> {
    env: &'t SolveEnv<'e>,
    snapshot: &'t mut Snapshot<'a>,
    pods_on: &'t PodsOn<'a>,
    /// The bound pods with anti-affinity terms.
    anti_bound: Vec<(&'a Pod, usize)>,
    /// The schedulable nodes that run only Job pods.
    transient: Vec<usize>,
    /// The empty nodes the pools remove by themselves once stable. A trial never counts
    /// on their room: pods moved there keep a node that was going anyway, so the
    /// action's savings would be the set's price less that node's, not the set's price
    /// (on `mixed`, inference pods moved onto a 4-GPU node a training Job had just left
    /// kept it up for a day at 1.2-4.8x the price of their own small nodes).
    emptying: Vec<usize>,
    /// The nodes' rooms, built once and lent to every trial's simulation: a trial closes
    /// the nodes it takes away and hands the rooms back as it found them. Built at the
    /// first simulation: most searches refuse every trial before simulating one.
    rooms: Option<NodeRooms>,
    input: &'t Inputs<'t>,
    /// Each node's room for long-running pods, found once for every trial.
    room: Rooms,
    /// Each node's free room, found once for every trial.
    free: Rooms,
    /// The earliest time a trial refused for its evictions would pay.
    pays_at: Option<f64>,
}

impl Trials<'_, '_, '_> {
    /// Karpenter's search: the longest valid prefix of `candidates`, by binary search
    /// (validity is not monotone, so this is a heuristic that needs log2(n) trials).
    fn multi_node(&mut self, candidates: &[usize]) -> Option<Action> {
        let limit = self.multi_node_limit(candidates);
        let (mut lo, mut hi) = (2, limit);
        let mut best = None;
        while lo <= hi {
            let mid = (lo + hi) / 2;
            match self.try_set(&candidates[..mid]) {
                Some(a) => {
                    best = Some(a);
                    lo = mid + 1;
                }
                None => hi = mid - 1,
            }
        }
        best
    }

    /// How long a prefix may be: no more than `MAX_MULTI_NODE`, and no more nodes of a
    /// pool than its budget allows.
    fn multi_node_limit(&self, candidates: &[usize]) -> usize {
        let mut left = self.input.budget_left.to_vec();
        let mut k = 0;
        for &n in candidates.iter().take(MAX_MULTI_NODE) {
            let Some(p) = self.snapshot.nodes[n].pool else {
                break;
            };
            if left[p] == 0 {
                break;
            }
            left[p] -= 1;
            k += 1;
        }
        k
    }

    /// Would removing `set` (replacing it by at most one cheaper node) keep every pod
    /// placed and save enough? The node list is lent to the trial and handed back.
    fn try_set(&mut self, set: &[usize]) -> Option<Action> {
        let pending: Vec<&Pod> = set
            .iter()
            .flat_map(|&n| self.pods_on[n].iter().copied())
            .collect();
        // Long-running pods do not count on nodes that will empty by themselves (only
        // Job pods on them): moved there, they would pin the node and be moved again
        // when the Jobs end.
        let lasting = pending.iter().any(|p| !runs_to_completion(p));
        if lasting {
            let recent = set
                .iter()
                .any(|&n| self.env.now - self.input.nodes[n].stable_since < TRANSIENT_DEFERRAL_S);
            if recent && self.lands_on_transient(&pending) {
                return None;
            }
        }
        let trial = Trial::new(self, set, &pending, lasting);
        // No action can save more than the set's price, nor leave more room than the
        // pods it moves take: when even that does not pay, nothing is simulated.
        if !self.pays(&trial.closed, trial.pods, &trial.moved, trial.price) {
            return None;
        }
        // When the nodes left have less free room in all than the pods take, some must
        // go on a new node, which costs at least the cheapest that holds the shortfall.
        // (On week-100k, 96% of the 52,000 simulations of 24,000 searches found nothing.)
        let short = self.shortfall(&trial.closed, &trial.moved);
        if (short.cpu_milli > 0 || short.memory > 0) && !self.could_replace(&trial, &short) {
            return None;
        }
        let in_set = |n: usize| set.contains(&n);
        let constrained = pending
            .iter()
            .any(|p| !p.spread.is_empty() || !p.affinity.is_empty() || !p.anti_affinity.is_empty());
        // Pods whose anti-affinity others must respect are all the topology a set of
        // unconstrained pods needs (most are): a much smaller `bound`, found once.
        let all = if constrained {
            &self.snapshot.bound
        } else {
            &self.anti_bound
        };
        let bound = all.iter().copied().filter(|&(_, m)| !in_set(m)).collect();
        let mut without = Snapshot {
            nodes: std::mem::take(&mut self.snapshot.nodes),
            bound,
            pending,
        };
        // The emptying nodes are shut to the trial's pods but are not what the action
        // takes away: they go whatever it does.
        let shut = self.shut(&trial.closed);
        for &n in &shut {
            without.nodes[n].schedulable = false;
        }
        let action = self.place(&without, &trial);
        for &n in &shut {
            without.nodes[n].schedulable = true;
        }
        self.snapshot.nodes = without.nodes;
        action
    }

    /// The nodes a trial's pods may not go to: the set, the nodes that only run Jobs
    /// when long-running pods move, and the emptying nodes.
    fn shut(&self, closed: &Closed) -> Vec<usize> {
        let transient: &[usize] = if closed.transient {
            &self.transient
        } else {
            &[]
        };
        closed
            .set
            .iter()
            .chain(transient)
            .chain(&self.emptying)
            .copied()
            .collect()
    }

    /// Could the scheduler put one of the long-running pods being moved on a node that
    /// will empty by itself (only Job pods on it)? It picks by its own scores, not by our
    /// plan (the default scores prefer the emptiest node, which such a node often is):
    /// there, the pod would be moved again once the Jobs end, and again from the next
    /// such node (a chain of evictions of the same pods after every burst).
    fn lands_on_transient(&self, pending: &[&Pod]) -> bool {
        pending
            .iter()
            .filter(|p| !runs_to_completion(p))
            .any(|pod| {
                self.transient.iter().any(|&n| {
                    let node = &self.snapshot.nodes[n];
                    node.ready
                        && pod
                            .requests
                            .fits_in(&node.allocatable.minus(&node.requested))
                        && pod.node_affinity_matches(node.labels)
                        && crate::core::taints::tolerates_all(&pod.tolerations, node.taints)
                })
            })
    }

    /// Room for pods left on the ready, schedulable nodes outside `set`, plus `extra`:
    /// does it still cover `Inputs::keep`?
    fn keeps_capacity(&self, closed: &Closed, extra: &Resources) -> bool {
        let room = self.room_after(closed, extra);
        let keep = &self.input.keep;
        room.cpu_milli >= keep.cpu_milli && room.memory >= keep.memory
    }

    /// Does saving `savings` an hour pay for evicting the pods of `set`? When not yet,
    /// `pays_at` learns when it would.
    fn pays(&mut self, closed: &Closed, pods: usize, extra: &Resources, savings: f64) -> bool {
        let Some(pb) = self.input.payback else {
            return true;
        };
        let room = self.room_after(closed, extra);
        let below_s = pb.history.below_for(self.env.now, &room);
        let needed_s = 3600.0 * pb.eviction_cost * pods as f64 / savings;
        if below_s >= needed_s {
            return true;
        }
        let at = self.env.now + needed_s - below_s;
        self.pays_at = Some(self.pays_at.map_or(at, |t: f64| t.min(at)));
        false
    }

    /// Room (cpu and memory) for long-running pods on the ready, schedulable nodes
    /// outside `closed`, plus `extra`.
    fn room_after(&self, closed: &Closed, extra: &Resources) -> Resources {
        let (cpu, memory) = self.room.after(closed);
        Resources {
            cpu_milli: cpu + extra.cpu_milli,
            memory: memory + extra.memory,
            ..Default::default()
        }
    }

    /// What of `moved` (cpu and memory) the free room of the nodes outside `closed` (and
    /// not emptying) cannot hold, whatever the packing.
    fn shortfall(&self, closed: &Closed, moved: &Resources) -> Resources {
        let (cpu, memory) = self.free.after(closed);
        Resources {
            cpu_milli: (moved.cpu_milli - cpu).max(0),
            memory: (moved.memory - memory).max(0),
            ..Default::default()
        }
    }

    /// Could a new node taking at least `least` (and the pods moved) save enough and pay
    /// for the evictions? It costs no less than the cheapest offering that holds `least`.
    fn could_replace(&mut self, trial: &Trial, least: &Resources) -> bool {
        let Some(floor) = self.env.model.cheapest_holding(least) else {
            return false;
        };
        trial.min_savings.met(trial.price, floor)
            && self.pays(&trial.closed, trial.pods, &trial.moved, trial.price - floor)
    }

    /// Where would the pods of the trial's set (`without.pending`) go with the set gone?
    fn place(&mut self, without: &Snapshot, trial: &Trial) -> Option<Action> {
        let closed = &trial.closed;
        let (set, price, pods) = (closed.set, trial.price, trial.pods);
        let min_savings = trial.min_savings;
        // Launching nodes are already promised to pending pods: a consolidation decision
        // counts only on ready ones. Deleting is tried first, on existing nodes alone
        // (cheap); a replacement only when some type could be cheaper.
        let existing_only = trial_env(self.env);
        let decision = solve_reusing(&existing_only, without, self.rooms(without));
        if decision.existing.len() == without.pending.len() {
            let none = Resources::default();
            let worth = min_savings.met(price, 0.0)
                && self.keeps_capacity(closed, &none)
                && self.pays(closed, pods, &none, price);
            return worth.then(|| Action {
                nodes: set.to_vec(),
                replacement: None,
                savings: price,
            });
        }
        let mut placed = vec![false; without.pending.len()];
        for &(i, _) in &decision.existing {
            placed[i] = true;
        }
        // The cheapest node that could take what is left bounds the savings from above:
        // when even that does not save enough or pay for the evictions, nothing more is
        // simulated.
        let mut left = Resources::default();
        for (pod, _) in without.pending.iter().zip(&placed).filter(|(_, &p)| !p) {
            left.add(&pod.requests);
        }
        if !self.could_replace(trial, &left) {
            return None;
        }
        let settled = SolveEnv {
            allow_new_nodes: true,
            split_claims: false,
            ..existing_only
        };
        let decision = solve_reusing(&settled, without, self.rooms(without));
        if !decision.unschedulable.is_empty() || !decision.infeasible.is_empty() {
            return None;
        }
        let [plan] = decision.launches.as_slice() else {
            return None;
        };
        let best = plan.options.first()?;
        if !min_savings.met(price, best.price_per_hour)
            || !self.spot_ok(without, set, plan, price)
            || !self.keeps_capacity(closed, &plan.requested)
            || !self.pays(closed, pods, &plan.requested, price - best.price_per_hour)
        {
            return None;
        }
        Some(Action {
            nodes: set.to_vec(),
            replacement: Some(plan.clone()),
            savings: price - best.price_per_hour,
        })
    }

    /// The shared rooms, built on first use. A trial's closed nodes do not matter: the
    /// rooms of trials keep every node and skip the unschedulable ones when met.
    fn rooms(&mut self, without: &Snapshot) -> &mut NodeRooms {
        let env = trial_env(self.env);
        self.rooms
            .get_or_insert_with(|| NodeRooms::for_trials(&env, without))
    }

    /// The strictest `minSavings` of the pools of `set`, which costs `price` an hour.
    fn min_savings(&self, set: &[usize], price: f64) -> MinSavings {
        let strictness = |m: &MinSavings, price: f64| match *m {
            MinSavings::Off => 0.0,
            MinSavings::Fraction(f) => f * price,
            MinSavings::PerHour(d) => d,
        };
        set.iter()
            .filter_map(|&n| self.snapshot.nodes[n].pool)
            .map(|p| self.input.pools[p].min_savings)
            .max_by(|a, b| strictness(a, price).total_cmp(&strictness(b, price)))
            .unwrap_or_default()
    }

    /// Spot is replaced by Spot only with enough cheaper Spot types to choose from.
    fn spot_ok(&self, without: &Snapshot, set: &[usize], plan: &LaunchPlan, price: f64) -> bool {
        let any_spot = set.iter().any(|&n| {
            without.nodes[n]
                .labels
                .get(labels::KARPENTER_CAPACITY_TYPE)
                .map(String::as_str)
                == Some(CapacityType::Spot.as_str())
        });
        let to_spot = plan
            .options
            .first()
            .is_some_and(|o| o.capacity_type == CapacityType::Spot);
        if !(any_spot && to_spot) {
            return true;
        }
        let mut cheaper: Vec<usize> = plan
            .options
            .iter()
            .filter(|o| o.price_per_hour < price)
            .map(|o| o.instance_type)
            .collect();
        cheaper.sort_unstable();
        cheaper.dedup();
        cheaper.len() >= MIN_CHEAPER_SPOT_TYPES
    }
}

/// The demand (cpu and memory) of pods that do not end by themselves over the last
/// `HISTORY_S`, as the largest demand of each minute.
#[derive(Clone, Debug, Default)]
pub struct DemandHistory {
    minutes: std::collections::VecDeque<(f64, Resources)>,
}

/// How far back [`DemandHistory`] looks.
pub const HISTORY_S: f64 = 24.0 * 3600.0;
const BUCKET_S: f64 = 60.0;

impl DemandHistory {
    pub fn record(&mut self, now: f64, demand: &Resources) {
        while self
            .minutes
            .front()
            .is_some_and(|(t, _)| *t < now - HISTORY_S)
        {
            self.minutes.pop_front();
        }
        match self.minutes.back_mut() {
            Some((t, d)) if now - *t < BUCKET_S => {
                d.cpu_milli = d.cpu_milli.max(demand.cpu_milli);
                d.memory = d.memory.max(demand.memory);
            }
            _ => self.minutes.push_back((now, demand.clone())),
        }
    }

    /// Seconds since the demand last exceeded `room` in cpu or memory (the whole history
    /// when it never did).
    pub fn below_for(&self, now: f64, room: &Resources) -> f64 {
        let exceeded = |d: &Resources| d.cpu_milli > room.cpu_milli || d.memory > room.memory;
        let mut since = self.minutes.front().map_or(now, |(t, _)| *t);
        for (t, d) in self.minutes.iter().rev() {
            if exceeded(d) {
                since = *t + BUCKET_S;
                break;
            }
        }
        (now - since).max(0.0)
    }
}

/// The peak demand (cpu and memory) of pods that do not end by themselves over a recent
/// window (Settings `consolidationWindow`): what [`Inputs::keep`] holds room for. The
/// simulator and the controller record it at every scan with their own clocks.
#[derive(Clone, Debug, Default)]
pub struct DemandWindow {
    history: std::collections::VecDeque<(f64, Resources)>,
}

impl DemandWindow {
    /// Records `demand` at `now` and forgets what is older than `window_s`.
    pub fn record(&mut self, now: f64, window_s: f64, demand: Resources) {
        while self
            .history
            .front()
            .is_some_and(|(t, _)| *t < now - window_s)
        {
            self.history.pop_front();
        }
        self.history.push_back((now, demand));
    }

    /// The largest cpu and the largest memory recorded in the window.
    pub fn peak(&self) -> Resources {
        let mut peak = Resources::default();
        for (_, d) in &self.history {
            peak.cpu_milli = peak.cpu_milli.max(d.cpu_milli);
            peak.memory = peak.memory.max(d.memory);
        }
        peak
    }
}

#[cfg(test)]
mod demand_window_tests {
    use super::*;

    #[test]
    fn the_history_says_how_long_the_demand_stayed_below_a_room() {
        let mut h = DemandHistory::default();
        h.record(0.0, &cpu(1000));
        h.record(30.0, &cpu(5000)); // the same minute: its peak is 5 CPUs
        h.record(60.0, &cpu(2000));
        h.record(600.0, &cpu(1000));
        // 5 CPUs was last seen in the minute ending at 60 s.
        assert_eq!(h.below_for(900.0, &cpu(4000)), 840.0);
        // 2 CPUs until the minute ending at 120 s.
        assert_eq!(h.below_for(900.0, &cpu(1500)), 780.0);
        // Never exceeded: the whole history.
        assert_eq!(h.below_for(900.0, &cpu(8000)), 900.0);
        // A day later the old minutes are gone.
        h.record(HISTORY_S + 100.0, &cpu(1000));
        assert_eq!(
            h.below_for(HISTORY_S + 100.0, &cpu(4000)),
            HISTORY_S - 500.0
        );
    }

    fn cpu(m: i64) -> Resources {
        Resources {
            cpu_milli: m,
            ..Default::default()
        }
    }

    #[test]
    fn the_peak_covers_only_the_window() {
        let mut w = DemandWindow::default();
        w.record(0.0, 100.0, cpu(4000));
        w.record(50.0, 100.0, cpu(1000));
        assert_eq!(w.peak().cpu_milli, 4000);
        w.record(101.0, 100.0, cpu(2000));
        assert_eq!(
            w.peak().cpu_milli,
            2000,
            "the sample at t=0 left the window"
        );
    }
}
