//! The scheduling simulation and bin-packing behind every provisioning decision.
//!
//! Reads top-down: [`solve`] orders the pending pods (priority, then size: first-fit
//! decreasing) and hands each to [`Solver::place`], which tries existing nodes, then
//! nodes already launching, then the new nodes of this decision, then a new node of the
//! highest-weight pool that can hold it. A new node ([`Claim`]) keeps every instance
//! type that still fits what was put on it, so the launch can carry many options.

use super::disruption::runs_to_completion;
use super::fit_index::FitIndex;
use super::instance::{CapacityType, Catalog, Offering};
use super::labels;
use super::mix::{self, copies_fitting, MixOption};
use super::model::{
    capacity_type_mask, selector_requirements, zone_mask, NodeLabels, PoolModel, PoolType,
    SchedulingModel,
};
use super::nodepool::NodePool;
use super::pod::Pod;
use super::pod::TopologyKey;
use super::requirements::Requirement;
use super::resources::Resources;
use super::shape_bound::ShapeBound;
use super::snapshot::{ExistingNode, PodClasses, Snapshot};
use super::taints::tolerates_all;
use super::topology::{Place, Strictness, Topology};
use super::unavailable::UnavailableOfferings;
use super::workload_mix::{Valuation, WorkloadMix, SPARE_ROOM_WEIGHT};
use std::rc::Rc;

/// Everything a decision depends on besides the snapshot.
#[derive(Clone, Copy)]
pub struct SolveEnv<'a> {
    pub catalog: &'a Catalog,
    pub pools: &'a [NodePool],
    pub model: &'a SchedulingModel,
    pub unavailable: &'a UnavailableOfferings,
    /// Seconds on the caller's clock (virtual in the simulator).
    pub now: f64,
    pub max_launch_options: usize,
    /// Which pools may get new nodes (all when `None`); node-group mode tries one at a time.
    pub pool_filter: Option<&'a [usize]>,
    /// `false` to only place pods on existing nodes (the simulated kube-scheduler).
    pub allow_new_nodes: bool,
    /// `false` to ignore nodes that are still launching (the kube-scheduler binds only to
    /// ready nodes; the autoscaler counts launching ones).
    pub use_launching_nodes: bool,
    /// Split a new node into several cheaper ones when that saves (off when the caller
    /// needs one node per claim, as a consolidation replacement does).
    pub split_claims: bool,
    /// A node to leave out as a target, as if it were gone (consolidation asks where
    /// its pods would go).
    pub exclude_node: Option<usize>,
}

/// One purchasable option of a launch, cheapest first in [`LaunchPlan::options`].
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchOption {
    pub instance_type: usize,
    pub zone: usize,
    pub capacity_type: CapacityType,
    pub price_per_hour: f64,
}

/// A new node to launch: the pool, the options the cloud may pick from, and the pods it
/// is for (indices into `Snapshot::pending`).
#[derive(Clone, Debug)]
pub struct LaunchPlan {
    pub pool: usize,
    pub options: Vec<LaunchOption>,
    pub pods: Vec<usize>,
    pub requested: Resources,
}

#[derive(Clone, Debug, Default)]
pub struct Decision {
    /// (pending index, node index): pods that fit on an existing or launching node.
    pub existing: Vec<(usize, usize)>,
    pub launches: Vec<LaunchPlan>,
    /// Pods that cannot be placed now but might later (limits, capacity, topology).
    pub unschedulable: Vec<(usize, String)>,
    /// Pods no offering of any pool can ever hold, with the reason.
    pub infeasible: Vec<(usize, String)>,
}

impl Claim {
    fn live_types(&self) -> &[u32] {
        &self.types[self.types_from..]
    }
}

/// A node this decision would launch.
#[derive(Clone, Debug)]
struct Claim {
    /// Index into `SchedulingModel::pools`.
    pool: usize,
    /// Indices into the pool model's `types` that may still fit: `types[types_from..]`
    /// starts with one that holds the claim, the rest are checked when options are
    /// built (requests only grow, so a type that stopped fitting is dropped for good).
    types: Vec<u32>,
    types_from: usize,
    /// Types every pod of the claim accepts, whatever their size: the candidates when
    /// the claim is split into cheaper, smaller nodes.
    compatible: Vec<u32>,
    zones: u32,
    capacity_types: u8,
    zone_pinned: Option<usize>,
    requested: Resources,
    /// Component-wise maximum of the usable room of `types` (a quick reject).
    max_usable: Resources,
    pods: Vec<usize>,
    name: String,
}

/// The existing nodes as a decision starts from them: the room left on each, the order
/// they are tried in, and each pool's capacity in use. [`solve`] builds it for one
/// decision; a consolidation pass builds it once ([`NodeRooms::for_trials`]) and lends it
/// to each of its trials ([`solve_reusing`]), which hand it back as they found it.
/// Rebuilding it per trial made a pass over every candidate quadratic in the nodes.
#[derive(Default)]
pub struct NodeRooms {
    /// Per snapshot node: allocatable less requested, less what this decision put there.
    rooms: Vec<Resources>,
    /// Component-wise maximum of the rooms of the nodes in `order`. Rooms only shrink
    /// during a decision, so it stays an upper bound (only ever a quick reject).
    max_room: Resources,
    /// Existing-node indices in the order they are tried: ready before launching.
    order: Vec<usize>,
    /// Per snapshot node, its position in `order` (`usize::MAX` when not in it).
    position: Vec<usize>,
    /// The rooms' CPU and memory by position in `order`: first fit without a scan. Never
    /// less than a room (exact for one decision; during a trial, the room the pass began
    /// with), so it only ever skips nodes that cannot hold a pod.
    fit: FitIndex,
    /// Capacity in use per pool (existing nodes), for limits.
    pool_usage: Vec<Resources>,
    /// (node, its room before) for every pod put on an existing node, when the rooms are
    /// to be handed back.
    journal: Option<Vec<(usize, Resources)>>,
}

impl NodeRooms {
    /// For one decision: the nodes it may use now.
    fn new(env: &SolveEnv, snapshot: &Snapshot) -> Self {
        Self::build(env, snapshot, |n| n.schedulable)
    }

    /// For many decisions over `snapshot`'s nodes that differ only in which nodes are
    /// schedulable (a consolidation trial closes the nodes it takes away): unschedulable
    /// nodes stay in the order and are skipped when met, so one build serves every trial.
    /// `env` must be the trials' (same `use_launching_nodes` and `exclude_node`).
    pub fn for_trials(env: &SolveEnv, snapshot: &Snapshot) -> Self {
        let mut rooms = Self::build(env, snapshot, |_| true);
        rooms.journal = Some(Vec::new());
        rooms
    }

    fn build(env: &SolveEnv, snapshot: &Snapshot, open: impl Fn(&ExistingNode) -> bool) -> Self {
        let rooms: Vec<Resources> = snapshot
            .nodes
            .iter()
            .map(|n| n.allocatable.minus(&n.requested))
            .collect();
        let mut order: Vec<usize> = (0..snapshot.nodes.len())
            .filter(|&i| {
                let n = &snapshot.nodes[i];
                open(n) && (n.ready || env.use_launching_nodes) && env.exclude_node != Some(i)
            })
            .collect();
        order.sort_by_key(|&i| !snapshot.nodes[i].ready);
        let mut max_room = Resources::default();
        for &i in &order {
            max_room.max_with(&rooms[i]);
        }
        let mut pool_usage = vec![Resources::default(); env.pools.len()];
        for n in &snapshot.nodes {
            if let Some(p) = n.pool {
                pool_usage[p].add(n.capacity);
            }
        }
        let mut position = vec![usize::MAX; rooms.len()];
        for (pos, &i) in order.iter().enumerate() {
            position[i] = pos;
        }
        let fit = FitIndex::new(order.iter().map(|&i| (rooms[i].cpu_milli, rooms[i].memory)));
        NodeRooms {
            rooms,
            max_room,
            order,
            position,
            fit,
            pool_usage,
            journal: None,
        }
    }

    fn take(&mut self, ni: usize, requests: &Resources) {
        match &mut self.journal {
            // A trial's few pods are given back at its end: the index keeps the rooms
            // the pass began with, which are never less than the rooms now (the caller
            // checks each node offered), and is never brought up to date and back.
            Some(journal) => {
                journal.push((ni, self.rooms[ni].clone()));
                self.rooms[ni].sub(requests);
            }
            None => {
                self.rooms[ni].sub(requests);
                self.refit(ni);
            }
        }
    }

    /// Node `ni`'s room changed: so does its place in the fit index.
    fn refit(&mut self, ni: usize) {
        let pos = self.position[ni];
        if pos != usize::MAX {
            let room = &self.rooms[ni];
            self.fit.set(pos, room.cpu_milli, room.memory);
        }
    }

    /// Gives back the room taken since the journal was last emptied (the fit index
    /// was left as it was, see `take`).
    fn undo(&mut self) {
        if let Some(journal) = &mut self.journal {
            while let Some((ni, room)) = journal.pop() {
                self.rooms[ni] = room;
            }
        }
    }

    /// The existing nodes in try order from position `from` whose CPU and memory room
    /// hold `requests` (the caller checks the rest).
    fn roomy_from(&self, from: usize, requests: &Resources) -> Option<(usize, usize)> {
        let pos = self
            .fit
            .first_fitting(from, requests.cpu_milli, requests.memory)?;
        Some((pos, self.order[pos]))
    }
}

struct Solver<'a, 'e> {
    env: &'e SolveEnv<'a>,
    snapshot: &'e Snapshot<'a>,
    nodes: NodeRooms,
    claims: Vec<Claim>,
    topology: Topology<'e>,
    zone_names: Vec<&'a str>,
    /// Per kind of hostname-constrained pod (see [`host_cursor_key`]), the number of
    /// leading claims known to refuse it for their host.
    host_cursors: std::collections::HashMap<u64, usize>,
    /// Per catalog type, the offerings purchasable now (see [`offer_mask`]); computed
    /// once per decision because claims ask it for every type on every pod.
    available: Vec<u64>,
    /// What this decision learnt of each class of pending pods.
    classes: ClassMemo<'a>,
    /// Whether reasons for pods not placed are wanted (formatting them costs more than
    /// placing when a caller only reads the placements).
    explain: bool,
}

/// What a decision learns once per class of pending pods (see [`PodClasses`]) and
/// reuses for the class's other pods.
#[derive(Default)]
struct ClassMemo<'a> {
    /// The class of each pending pod.
    of: Vec<u32>,
    /// Per class, its requirement sets in the relaxed and the strict pass.
    terms: Vec<[Option<Rc<Terms<'a>>>; 2]>,
    /// Per class, why its pods get no place, once one got none that lasts.
    failed: Vec<Option<String>>,
    /// Per class, its [`infeasible_reason`] once asked.
    infeasible: Vec<Option<Option<String>>>,
}

impl ClassMemo<'_> {
    fn new(classes: &PodClasses) -> Self {
        ClassMemo {
            terms: vec![[None, None]; classes.count],
            failed: vec![None; classes.count],
            infeasible: vec![None; classes.count],
            of: classes.of.clone(),
        }
    }
}

/// A pod's requirement sets (one per required node-affinity term) and the zones they
/// allow.
struct Terms<'a> {
    sets: Vec<Vec<Requirement>>,
    eligible: Vec<&'a str>,
}

/// Does a pod that found no place keep finding none for the rest of the decision?
/// Without spread or pod (anti-)affinity of its own, yes: each placement only takes
/// room, narrows a new node, adds to a pool's usage or adds another pod's
/// anti-affinity, and none of that opens a place; so the class's other pods, alike in
/// everything else, need not be tried. (Spread can loosen as other domains fill, and
/// affinity once a matching pod is placed.)
fn failure_lasts(pod: &Pod) -> bool {
    pod.spread.is_empty() && pod.affinity.is_empty() && pod.anti_affinity.is_empty()
}

/// Bit `2*zone` is Spot in that zone, bit `2*zone+1` on-demand.
fn offer_bit(zone: usize, ct: CapacityType) -> u64 {
    1 << (2 * zone + usize::from(ct == CapacityType::OnDemand))
}

fn offer_mask(zones: u32, cts: u8) -> u64 {
    let mut m = 0;
    let mut rest = zones;
    while rest != 0 {
        let z = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        for ct in [CapacityType::Spot, CapacityType::OnDemand] {
            if cts & ct.bit() != 0 {
                m |= offer_bit(z, ct);
            }
        }
    }
    m
}

/// Per catalog type, the offerings purchasable now (see [`offer_bit`]). With nothing
/// marked unavailable (almost always) no offering needs a lookup.
fn offer_masks(env: &SolveEnv) -> Vec<u64> {
    let none_unavailable = env.unavailable.is_empty();
    env.catalog
        .types
        .iter()
        .enumerate()
        .map(|(ty, it)| {
            it.offerings
                .iter()
                .filter(|o| {
                    o.zone < 32
                        && (none_unavailable
                            || !env.unavailable.is_unavailable(
                                ty,
                                o.zone,
                                o.capacity_type,
                                env.now,
                            ))
                })
                .fold(0u64, |m, o| m | offer_bit(o.zone, o.capacity_type))
        })
        .collect()
}

/// Computes a provisioning decision for `snapshot.pending`.
pub fn solve<'a>(env: &SolveEnv<'a>, snapshot: &Snapshot<'a>) -> Decision {
    solve_classified(env, snapshot, classes_of(snapshot))
}

/// [`solve`] with the pending pods' classes known (`classes.of[i]` of `pending[i]`; any
/// refinement of [`PodClasses::of`] decides the same).
pub fn solve_classified<'a>(
    env: &SolveEnv<'a>,
    snapshot: &Snapshot<'a>,
    classes: PodClasses,
) -> Decision {
    let pending = PendingOrder::new(&snapshot.pending, classes);
    solve_with(env, snapshot, NodeRooms::new(env, snapshot), true, &pending).0
}

/// What the kube-scheduler would bind now: (pending index, node index) for the pods of
/// `snapshot.pending` that [`solve`] puts on existing nodes when no new node may be
/// launched, the same placements. It does not work out why the others cannot go, which
/// costs more than placing them when most pods of a pass wait for nodes still booting.
pub fn place_on_existing<'a>(env: &SolveEnv<'a>, snapshot: &Snapshot<'a>) -> Vec<(usize, usize)> {
    place_on_existing_classified(env, snapshot, classes_of(snapshot))
}

/// [`place_on_existing`] with the pending pods' classes known (see [`solve_classified`]).
pub fn place_on_existing_classified<'a>(
    env: &SolveEnv<'a>,
    snapshot: &Snapshot<'a>,
    classes: PodClasses,
) -> Vec<(usize, usize)> {
    place_on_existing_ordered(
        env,
        snapshot,
        &PendingOrder::new(&snapshot.pending, classes),
    )
}

/// [`place_on_existing`] with the pending pods' classes and order made (see
/// [`PendingOrder`]).
pub fn place_on_existing_ordered<'a>(
    env: &SolveEnv<'a>,
    snapshot: &Snapshot<'a>,
    pending: &PendingOrder,
) -> Vec<(usize, usize)> {
    let env = SolveEnv {
        allow_new_nodes: false,
        ..*env
    };
    solve_with(
        &env,
        snapshot,
        NodeRooms::new(&env, snapshot),
        false,
        pending,
    )
    .0
    .existing
}

/// The launches of [`solve`], the same plans, without working out why the pods that get
/// no node do not (node-groups mode asks this of every group on every scan, and most
/// pods fit only some groups).
pub fn solve_launches<'a>(env: &SolveEnv<'a>, snapshot: &Snapshot<'a>) -> Vec<LaunchPlan> {
    solve_launches_ordered(
        env,
        snapshot,
        &PendingOrder::new(&snapshot.pending, classes_of(snapshot)),
    )
}

/// [`solve_launches`] with the pending pods' classes and order made (see
/// [`PendingOrder`]).
pub fn solve_launches_ordered<'a>(
    env: &SolveEnv<'a>,
    snapshot: &Snapshot<'a>,
    pending: &PendingOrder,
) -> Vec<LaunchPlan> {
    solve_with(env, snapshot, NodeRooms::new(env, snapshot), false, pending)
        .0
        .launches
}

/// [`solve`] starting from `rooms` (built by [`NodeRooms::for_trials`] over this
/// snapshot's nodes), which it hands back as it found them.
pub fn solve_reusing<'a>(
    env: &SolveEnv<'a>,
    snapshot: &Snapshot<'a>,
    rooms: &mut NodeRooms,
) -> Decision {
    // A consolidation trial decides a candidate node's few pods, thousands of trials a
    // pass: finding their classes would cost more than it saves.
    let pending = PendingOrder::new(&snapshot.pending, PodClasses::alone(snapshot.pending.len()));
    let (decision, mut back) = solve_with(env, snapshot, std::mem::take(rooms), true, &pending);
    back.undo();
    *rooms = back;
    decision
}

/// [`solve`] deciding every pod by itself, as if no two were alike: what deciding by
/// class must agree with (the tests compare the two).
#[doc(hidden)]
pub fn solve_unclassified<'a>(env: &SolveEnv<'a>, snapshot: &Snapshot<'a>) -> Decision {
    solve_classified(env, snapshot, PodClasses::alone(snapshot.pending.len()))
}

fn classes_of(snapshot: &Snapshot) -> PodClasses {
    PodClasses::of(&snapshot.pending)
}

/// `explain`: say why each pod that is not placed is not (`unschedulable`, `infeasible`).
/// `classes`: of `snapshot.pending` (see [`ClassMemo`]).
fn solve_with<'a>(
    env: &SolveEnv<'a>,
    snapshot: &Snapshot<'a>,
    rooms: NodeRooms,
    explain: bool,
    pending: &PendingOrder,
) -> (Decision, NodeRooms) {
    debug_assert_eq!(pending.order.len(), snapshot.pending.len());
    let mut solver = Solver::new(env, snapshot, rooms, &pending.order, explain);
    solver.classes = ClassMemo::new(&pending.classes);
    let mut decision = Decision::default();
    for &i in &pending.order {
        match solver.place(i) {
            Ok(Target::Existing(n)) => decision.existing.push((i, n)),
            Ok(Target::Claim) => {}
            Err(_) if !explain => {}
            Err(reason) => match solver.infeasible_reason(i) {
                Some(why) => decision.infeasible.push((i, why)),
                None => decision.unschedulable.push((i, reason)),
            },
        }
    }
    decision.launches = solver.finish();
    (decision, solver.nodes)
}

/// A snapshot's pending pods as a decision takes them: their classes and the order they
/// are placed in. A caller deciding over one snapshot many times (node-groups mode tries
/// every group with the same pods) makes it once: with thousands of pods waiting, the
/// sort by name cost more than the trials.
#[derive(Clone, Debug)]
pub struct PendingOrder {
    classes: PodClasses,
    order: Vec<usize>,
}

impl PendingOrder {
    /// `classes` of `pending` (see [`solve_classified`]).
    pub fn new(pending: &[&Pod], classes: PodClasses) -> Self {
        debug_assert_eq!(classes.of.len(), pending.len());
        PendingOrder {
            classes,
            order: placement_order(pending),
        }
    }
}

/// The order pods are placed in: priority, then extended resources, cpu and memory,
/// largest first (first-fit decreasing); ties by namespace and name, then position. The
/// keys are gathered first: comparing through the pods chased pointers on every step.
fn placement_order(pending: &[&Pod]) -> Vec<usize> {
    let mut keyed: Vec<_> = pending
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let r = &p.requests;
            let size = (p.priority, r.extended.len(), r.cpu_milli, r.memory);
            (
                std::cmp::Reverse(size),
                p.namespace.as_str(),
                p.name.as_str(),
                i,
            )
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|k| k.3).collect()
}

fn node_place<'n>(n: &ExistingNode<'n>) -> Place<'n> {
    Place {
        zone: n.zone,
        host: n.name,
        labels: Some(n.labels),
    }
}

/// `Some(reason)` when no pool could ever hold the pod, even on an empty node with
/// every offering available and no limits.
pub fn infeasible_reason(env: &SolveEnv, pod: &Pod) -> Option<String> {
    let sets = requirement_sets(pod, Strictness::Relaxed);
    let mut reasons = Vec::new();
    let mut any_pool = false;
    for pm in &env.model.pools {
        if env.pool_filter.is_some_and(|f| !f.contains(&pm.pool)) {
            continue;
        }
        any_pool = true;
        let pool = &env.pools[pm.pool];
        if !tolerates_all(&pod.tolerations, &pool.taints) {
            reasons.push(format!("{}: taints not tolerated", pool.name));
            continue;
        }
        let fits = sets.iter().any(|reqs| {
            let zones = pm.zones & zone_mask(reqs, &env.catalog.zones);
            let cts = pm.capacity_types & capacity_type_mask(reqs);
            zones != 0
                && cts != 0
                && pm.types.iter().any(|pt| {
                    let it = &env.catalog.types[pt.ty];
                    pod.requests.fits_in(&pt.usable)
                        && NodeLabels {
                            pool_labels: &pool.labels,
                            pool_name: &pool.name,
                            type_labels: &it.labels,
                        }
                        .matches(reqs)
                        && it.offerings.iter().any(|o| {
                            zones & (1 << o.zone) != 0
                                && cts & o.capacity_type.bit() != 0
                                && pod.requests.fits_in(pt.usable_for(o.capacity_type))
                        })
                })
        });
        if fits {
            return None;
        }
        reasons.push(format!(
            "{}: no instance type in allowed zones and capacity types holds {} with the pod's node requirements",
            pool.name, pod.requests
        ));
    }
    if !any_pool {
        return Some("no node pool".into());
    }
    Some(reasons.join("; "))
}

/// Which of the pools' offerings (in [`SchedulingModel::offering_options`]'s order) a
/// node for `pod` could be: its pool's taints tolerated, and its node selector and a
/// required node-affinity term met by the node's labels, zone and capacity type. Whether
/// the pod fits is not asked (the bounds check that per offering).
pub fn offerings_allowing(env: &SolveEnv, pod: &Pod) -> Vec<bool> {
    let sets = requirement_sets(pod, Strictness::Relaxed);
    let tolerated: Vec<bool> = env
        .pools
        .iter()
        .map(|pool| tolerates_all(&pod.tolerations, &pool.taints))
        .collect();
    // Per (pool model, type): the requirement sets its labels meet, as zone and
    // capacity-type masks (found once per type, not per offering).
    let mut masks_of: Option<(usize, usize)> = None;
    let mut masks: Vec<(u32, u8)> = Vec::new();
    env.model.offerings_where(env.catalog, |pm, pt, o| {
        if !tolerated[pm.pool] {
            return false;
        }
        if masks_of != Some((pm.pool, pt.ty)) {
            let pool = &env.pools[pm.pool];
            let labels = NodeLabels {
                pool_labels: &pool.labels,
                pool_name: &pool.name,
                type_labels: &env.catalog.types[pt.ty].labels,
            };
            masks = sets
                .iter()
                .filter(|reqs| labels.matches(reqs))
                .map(|reqs| {
                    (
                        zone_mask(reqs, &env.catalog.zones),
                        capacity_type_mask(reqs),
                    )
                })
                .collect();
            masks_of = Some((pm.pool, pt.ty));
        }
        masks
            .iter()
            .any(|&(z, c)| z & (1 << o.zone) != 0 && c & o.capacity_type.bit() != 0)
    })
}

/// Pods that share this key get the same answer from a claim's hostname rules: same
/// namespace and labels (what other pods' anti-affinity selects), same constraints.
/// `None` when the pod has no hostname rule, or one that can loosen (hostname
/// affinity: a co-located pod may arrive).
fn host_cursor_key(pod: &Pod, strictness: Strictness) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let host_spread = pod.spread.iter().any(|s| s.kind == TopologyKey::Hostname);
    let host_anti = pod
        .anti_affinity
        .iter()
        .any(|t| t.kind == TopologyKey::Hostname);
    if !(host_spread || host_anti) || has_hostname_affinity(pod) {
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (strictness == Strictness::Strict).hash(&mut h);
    pod.namespace.hash(&mut h);
    pod.labels.hash(&mut h);
    pod.spread.hash(&mut h);
    pod.affinity.hash(&mut h);
    pod.anti_affinity.hash(&mut h);
    Some(h.finish())
}

/// The fast path's answer for one pod and claim.
enum Fast {
    /// The pod fits: the first holding type is at `from`; `pin` is the zone to pin.
    Fits { from: usize, pin: Option<usize> },
    /// The pod does not fit this claim.
    Full,
}

enum Target {
    Existing(usize),
    Claim,
}

/// The requirement sets a pod accepts: one per required node-affinity term (ORed), each
/// with the node selector; in the strict pass, with the preferred terms added.
fn requirement_sets(pod: &Pod, strictness: Strictness) -> Vec<Vec<Requirement>> {
    let mut base = selector_requirements(&pod.node_selector);
    if strictness == Strictness::Strict {
        let mut prefs: Vec<&(i32, Vec<Requirement>)> = pod.preferred_node_terms.iter().collect();
        prefs.sort_by_key(|p| std::cmp::Reverse(p.0));
        for (_, reqs) in prefs {
            base.extend(reqs.iter().cloned());
        }
    }
    if pod.required_node_terms.is_empty() {
        return vec![base];
    }
    pod.required_node_terms
        .iter()
        .map(|term| base.iter().chain(term).cloned().collect())
        .collect()
}

fn has_preferences(pod: &Pod) -> bool {
    !pod.preferred_node_terms.is_empty() || pod.spread.iter().any(|s| !s.hard)
}

impl<'a, 'e> Solver<'a, 'e> {
    /// `order`: the pending pods in the order they will be placed.
    fn new(
        env: &'e SolveEnv<'a>,
        snapshot: &'e Snapshot<'a>,
        nodes: NodeRooms,
        order: &[usize],
        explain: bool,
    ) -> Self {
        let topology = Topology::new(
            snapshot
                .bound
                .iter()
                .map(|&(pod, ni)| (pod, node_place(&snapshot.nodes[ni]))),
            order.iter().map(|&i| snapshot.pending[i]),
        );
        let available = if env.allow_new_nodes {
            offer_masks(env)
        } else {
            Vec::new()
        };
        Solver {
            env,
            snapshot,
            available,
            host_cursors: std::collections::HashMap::new(),
            classes: ClassMemo::default(),
            nodes,
            claims: Vec::new(),
            topology,
            explain,
            zone_names: env.catalog.zones.iter().map(String::as_str).collect(),
        }
    }

    /// A reason, made only when the caller wants reasons.
    fn reason(&self, make: impl FnOnce() -> String) -> String {
        if self.explain {
            make()
        } else {
            String::new()
        }
    }

    /// Places pod `pi`, unless a pod of its class already found no place that it would
    /// not find either (see [`failure_lasts`]).
    fn place(&mut self, pi: usize) -> Result<Target, String> {
        let class = self.classes.of[pi] as usize;
        if let Some(reason) = &self.classes.failed[class] {
            return Err(reason.clone());
        }
        let placed = self.place_pod(pi);
        if let Err(reason) = &placed {
            if failure_lasts(self.snapshot.pending[pi]) {
                self.classes.failed[class] = Some(reason.clone());
            }
        }
        placed
    }

    /// [`infeasible_reason`] of pod `pi`, found once per class.
    fn infeasible_reason(&mut self, pi: usize) -> Option<String> {
        let class = self.classes.of[pi] as usize;
        let (env, pod) = (self.env, self.snapshot.pending[pi]);
        self.classes.infeasible[class]
            .get_or_insert_with(|| infeasible_reason(env, pod))
            .clone()
    }

    /// The requirement sets of pod `pi` in this pass and the zones they allow, made once
    /// per class.
    fn terms(&mut self, pi: usize, strictness: Strictness) -> Rc<Terms<'a>> {
        let class = self.classes.of[pi] as usize;
        let slot = usize::from(strictness == Strictness::Strict);
        if let Some(t) = &self.classes.terms[class][slot] {
            return t.clone();
        }
        let sets = requirement_sets(self.snapshot.pending[pi], strictness);
        let eligible = self.eligible_zones(&sets);
        let t = Rc::new(Terms { sets, eligible });
        self.classes.terms[class][slot] = Some(t.clone());
        t
    }

    fn place_pod(&mut self, pi: usize) -> Result<Target, String> {
        let pod = self.snapshot.pending[pi];
        let passes: &[Strictness] = if has_preferences(pod) {
            &[Strictness::Strict, Strictness::Relaxed]
        } else {
            &[Strictness::Relaxed]
        };
        let mut last_reason = String::from("no node pool can launch a node for it");
        for &strictness in passes {
            let terms = self.terms(pi, strictness);
            let (sets, eligible) = (&terms.sets, &terms.eligible);
            if let Some(n) = self.try_existing(pod, sets, eligible, strictness) {
                self.commit_existing(pi, n);
                return Ok(Target::Existing(n));
            }
            if !self.env.allow_new_nodes {
                last_reason = "no ready node has room".into();
                continue;
            }
            // Hostname rules only tighten as a decision fills its new nodes, so a claim
            // that refused a pod of this kind for its host refuses the next one too:
            // start after the refusing prefix.
            let cursor_key = host_cursor_key(pod, strictness);
            let start = cursor_key
                .and_then(|k| self.host_cursors.get(&k).copied())
                .unwrap_or(0);
            let mut contiguous = true;
            for c in start..self.claims.len() {
                // Too large for every type the claim has left: no need to ask topology.
                let claim = &self.claims[c];
                if claim
                    .requested
                    .plus(&pod.requests)
                    .exceeds(&claim.max_usable)
                    .is_some()
                {
                    continue;
                }
                if let Some(k) = cursor_key {
                    let place = Place {
                        zone: None,
                        host: &self.claims[c].name,
                        labels: None,
                    };
                    if self
                        .topology
                        .allows(pod, &place, eligible, strictness)
                        .is_err()
                    {
                        if contiguous {
                            self.host_cursors.insert(k, c + 1);
                        }
                        continue;
                    }
                    contiguous = false;
                }
                if self.try_claim(c, pi, sets, eligible, strictness).is_ok() {
                    return Ok(Target::Claim);
                }
            }
            let order = self.env.model.pool_order.clone();
            for pm in order {
                if self.env.pool_filter.is_some_and(|f| !f.contains(&pm)) {
                    continue;
                }
                let c = self.open_claim(pm);
                match self.try_claim(c, pi, sets, eligible, strictness) {
                    Ok(()) => return Ok(Target::Claim),
                    Err(reason) => {
                        last_reason = self
                            .reason(|| format!("node pool {}: {reason}", self.env.pools[pm].name));
                        self.claims.pop();
                    }
                }
            }
        }
        Err(last_reason)
    }

    /// Zones the pod may be placed in (domains of its zone spread).
    fn eligible_zones(&self, sets: &[Vec<Requirement>]) -> Vec<&'a str> {
        let mask = sets
            .iter()
            .fold(0u32, |m, reqs| m | zone_mask(reqs, &self.env.catalog.zones));
        self.zone_names
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, z)| *z)
            .collect()
    }

    fn try_existing(
        &self,
        pod: &Pod,
        sets: &[Vec<Requirement>],
        eligible: &[&str],
        strictness: Strictness,
    ) -> Option<usize> {
        // Larger than the most room any node has: no need to look at each.
        if pod.requests.exceeds(&self.nodes.max_room).is_some() {
            return None;
        }
        // The first node in order that holds the pod: the index skips those without the
        // CPU or memory, the rest are checked here.
        let mut from = 0;
        while let Some((pos, ni)) = self.nodes.roomy_from(from, &pod.requests) {
            let n = &self.snapshot.nodes[ni];
            // (Always true unless the rooms serve several trials, see `for_trials`.)
            let holds = n.schedulable
                && pod.requests.fits_in(&self.nodes.rooms[ni])
                && tolerates_all(&pod.tolerations, n.taints)
                && sets
                    .iter()
                    .any(|reqs| super::requirements::all_match(reqs, n.labels))
                && self
                    .topology
                    .allows(pod, &node_place(n), eligible, strictness)
                    .is_ok();
            if holds {
                return Some(ni);
            }
            from = pos + 1;
        }
        None
    }

    fn commit_existing(&mut self, pi: usize, ni: usize) {
        let pod = self.snapshot.pending[pi];
        let n = &self.snapshot.nodes[ni];
        self.nodes.take(ni, &pod.requests);
        self.topology.place(pod, &node_place(n));
    }

    fn open_claim(&mut self, pm: usize) -> usize {
        let model = &self.env.model.pools[pm];
        let max_usable = model.max_usable.clone();
        self.claims.push(Claim {
            pool: pm,
            types: (0..model.types.len() as u32).collect(),
            types_from: 0,
            compatible: (0..model.types.len() as u32).collect(),
            zones: model.zones,
            capacity_types: model.capacity_types,
            zone_pinned: None,
            requested: Resources::default(),
            max_usable,
            pods: Vec::new(),
            name: format!("new-node-{}", self.claims.len()),
        });
        self.claims.len() - 1
    }

    /// Is the offering (type, zone, capacity type) purchasable now?
    fn offering_ok(&self, ty: usize, zone_mask: u32, cts: u8) -> bool {
        self.available[ty] & offer_mask(zone_mask, cts) != 0
    }

    /// The common case: the pod narrows nothing (no label requirements, every zone and
    /// capacity type of the claim allowed, no pool limits). Then only capacity and the
    /// zone can stop it: the answer is the first type, from where the claim's list
    /// starts, that holds the new total (in the zone the pod's topology picks, when the
    /// claim has none yet). `None` when the general path must decide.
    fn fast_path(
        &self,
        c: usize,
        pod: &Pod,
        sets: &[Vec<Requirement>],
        requested: &Resources,
        eligible: &[&str],
        strictness: Strictness,
    ) -> Option<Fast> {
        let claim = &self.claims[c];
        let [reqs] = sets else { return None };
        let zones = claim.zones & zone_mask(reqs, &self.env.catalog.zones);
        let cts = claim.capacity_types & capacity_type_mask(reqs);
        let simple = zones == claim.zones
            && cts == claim.capacity_types
            && reqs
                .iter()
                .all(|r| labels::is_zone_key(&r.key) || labels::is_capacity_type_key(&r.key))
            && self.env.pools[claim.pool].limits == Default::default();
        if !simple {
            return None;
        }
        let model = &self.env.model.pools[claim.pool];
        let first_holder = |zones: u32| {
            claim.types[claim.types_from..]
                .iter()
                .position(|&t| self.holds(&model.types[t as usize], requested, zones, cts))
                .map(|p| claim.types_from + p)
        };
        if claim.zone_pinned.is_some() || !self.topology.zone_matters(pod) {
            return Some(match first_holder(zones) {
                Some(from) => Fast::Fits { from, pin: None },
                None => Fast::Full,
            });
        }
        let mut candidates: Vec<usize> = (0..self.zone_names.len())
            .filter(|z| zones & (1 << z) != 0)
            .collect();
        candidates.sort_by_key(|&z| (self.topology.zone_count(pod, self.zone_names[z]), z));
        for z in candidates {
            let place = Place {
                zone: Some(self.zone_names[z]),
                host: &claim.name,
                labels: None,
            };
            if self
                .topology
                .allows(pod, &place, eligible, strictness)
                .is_err()
            {
                continue;
            }
            if let Some(from) = first_holder(1 << z) {
                return Some(Fast::Fits { from, pin: Some(z) });
            }
        }
        Some(Fast::Full)
    }

    /// Counts `pod` in the topology at claim `c` (its host, and its zone once pinned).
    fn record_on_claim(&mut self, c: usize, pod: &'e Pod) {
        let claim = &self.claims[c];
        let zone = claim.zone_pinned.map(|z| self.zone_names[z]);
        // `Topology::place` copies the strings it keeps.
        let host = claim.name.clone();
        self.topology.place(
            pod,
            &Place {
                zone,
                host: &host,
                labels: None,
            },
        );
    }

    /// Does some purchasable offering of `pt` (in `zones`, `cts`) hold `requested`,
    /// counting the DaemonSets of that offering's capacity type?
    fn holds(&self, pt: &PoolType, requested: &Resources, zones: u32, cts: u8) -> bool {
        requested.fits_in(&pt.usable)
            && [CapacityType::Spot, CapacityType::OnDemand]
                .into_iter()
                .any(|ct| {
                    cts & ct.bit() != 0
                        && requested.fits_in(pt.usable_for(ct))
                        && self.offering_ok(pt.ty, zones, ct.bit())
                })
    }

    /// Tries to add pending pod `pi` to claim `c`; narrows the claim on success.
    fn try_claim(
        &mut self,
        c: usize,
        pi: usize,
        sets: &[Vec<Requirement>],
        eligible: &[&str],
        strictness: Strictness,
    ) -> Result<(), String> {
        let pod = self.snapshot.pending[pi];
        let claim = &self.claims[c];
        let pool = &self.env.pools[claim.pool];
        if !tolerates_all(&pod.tolerations, &pool.taints) {
            return Err("the pod does not tolerate the pool's taints".into());
        }
        let requested = claim.requested.plus(&pod.requests);
        if let Some(r) = requested.exceeds(&claim.max_usable) {
            return Err(self.reason(|| format!("no instance type has enough {r}")));
        }
        // Topology first: it is cheap, and a pod the claim's host (or pinned zone)
        // rejects need not pay for filtering every instance type.
        let place = Place {
            zone: claim.zone_pinned.map(|z| self.zone_names[z]),
            host: &claim.name,
            labels: None,
        };
        if let Err(e) = self.topology.allows(pod, &place, eligible, strictness) {
            return Err(e.to_string());
        }
        let model = &self.env.model.pools[claim.pool];
        if let Some(found) = self.fast_path(c, pod, sets, &requested, eligible, strictness) {
            let Fast::Fits { from: k, pin } = found else {
                // Make the quick reject exact for the types left, so the next pods too
                // large for this claim are turned away without a scan.
                let mut m = Resources::default();
                for &t in self.claims[c].live_types() {
                    m.max_with(&model.types[t as usize].usable);
                }
                self.claims[c].max_usable = m;
                return Err(self.reason(|| {
                    format!("no instance type with an available offering fits {requested}")
                }));
            };
            let claim = &mut self.claims[c];
            claim.types_from = k;
            if let Some(z) = pin {
                claim.zones = 1 << z;
                claim.zone_pinned = Some(z);
            }
            claim.requested = requested;
            claim.pods.push(pi);
            self.record_on_claim(c, pod);
            return Ok(());
        }
        let mut last = String::from("no instance type matches the pod's node requirements");
        for reqs in sets {
            let zones = claim.zones & zone_mask(reqs, &self.env.catalog.zones);
            let cts = claim.capacity_types & capacity_type_mask(reqs);
            if zones == 0 || cts == 0 {
                last = "no allowed zone or capacity type matches the pod".into();
                continue;
            }
            let label_reqs: Vec<&Requirement> = reqs
                .iter()
                .filter(|r| !labels::is_zone_key(&r.key) && !labels::is_capacity_type_key(&r.key))
                .collect();
            let limits_apply = pool.limits != Default::default();
            // Nothing narrows: the claim's compatible set stands as it is.
            let unchanged = label_reqs.is_empty()
                && zones == claim.zones
                && cts == claim.capacity_types
                && !limits_apply;
            let compatible: Vec<u32> = if unchanged {
                claim.compatible.clone()
            } else {
                claim
                    .compatible
                    .iter()
                    .copied()
                    .filter(|&t| {
                        let pt = &model.types[t as usize];
                        let it = &self.env.catalog.types[pt.ty];
                        (label_reqs.is_empty() || {
                            let view = NodeLabels {
                                pool_labels: &pool.labels,
                                pool_name: &pool.name,
                                type_labels: &it.labels,
                            };
                            label_reqs.iter().all(|r| r.matches_value(view.get(&r.key)))
                        }) && (!limits_apply
                            || pool
                                .limits
                                .exceeded_by(
                                    &self.pool_usage_with_claims(claim.pool, c),
                                    &it.capacity,
                                )
                                .is_none())
                            && self.offering_ok(pt.ty, zones, cts)
                    })
                    .collect()
            };
            let source = if unchanged {
                claim.live_types()
            } else {
                &compatible
            };
            let types: Vec<u32> = source
                .iter()
                .copied()
                .filter(|&t| self.holds(&model.types[t as usize], &requested, zones, cts))
                .collect();
            if types.is_empty() {
                last = self.reason(|| {
                    format!("no instance type with an available offering fits {requested}")
                });
                continue;
            }
            // Pin the zone when the pod's topology depends on it.
            let mut zones = zones;
            let mut pinned = self.claims[c].zone_pinned;
            let mut types = types;
            let mut compatible = compatible;
            if pinned.is_none() && self.topology.zone_matters(pod) {
                let mut candidates: Vec<usize> = (0..self.zone_names.len())
                    .filter(|z| zones & (1 << z) != 0)
                    .collect();
                candidates.sort_by_key(|&z| (self.topology.zone_count(pod, self.zone_names[z]), z));
                let host = self.claims[c].name.clone();
                let chosen = candidates.into_iter().find(|&z| {
                    let place = Place {
                        zone: Some(self.zone_names[z]),
                        host: &host,
                        labels: None,
                    };
                    self.topology
                        .allows(pod, &place, eligible, strictness)
                        .is_ok()
                        && types
                            .iter()
                            .any(|&t| self.holds(&model.types[t as usize], &requested, 1 << z, cts))
                });
                let Some(z) = chosen else {
                    last = "no zone satisfies the pod's topology constraints".into();
                    continue;
                };
                pinned = Some(z);
                zones = 1 << z;
                types.retain(|&t| self.holds(&model.types[t as usize], &requested, zones, cts));
                compatible.retain(|&t| self.offering_ok(model.types[t as usize].ty, zones, cts));
            } else {
                let place = Place {
                    zone: pinned.map(|z| self.zone_names[z]),
                    host: &self.claims[c].name,
                    labels: None,
                };
                if let Err(e) = self.topology.allows(pod, &place, eligible, strictness) {
                    last = e.to_string();
                    continue;
                }
            }
            // The old maximum still bounds the narrower set; recompute it only when the
            // set shrank a lot, so quick rejects stay sharp without a pass per pod.
            let claim = &self.claims[c];
            let max_usable = if types.len() * 10 < claim.live_types().len() * 9 || types.len() <= 16
            {
                let mut m = Resources::default();
                for &t in &types {
                    m.max_with(&model.types[t as usize].usable);
                }
                m
            } else {
                claim.max_usable.clone()
            };
            let claim = &mut self.claims[c];
            claim.types = types;
            claim.types_from = 0;
            claim.compatible = compatible;
            claim.zones = zones;
            claim.capacity_types = cts;
            claim.zone_pinned = pinned;
            claim.requested = requested;
            claim.max_usable = max_usable;
            claim.pods.push(pi);
            self.record_on_claim(c, pod);
            return Ok(());
        }
        Err(last)
    }

    /// Pool capacity in use, counting the other claims of this decision at the
    /// capacity of their cheapest remaining type.
    fn pool_usage_with_claims(&self, pool: usize, except: usize) -> Resources {
        let mut usage = self.nodes.pool_usage[pool].clone();
        let model = &self.env.model.pools[pool];
        for (i, c) in self.claims.iter().enumerate() {
            if i == except || c.pool != pool || c.pods.is_empty() {
                continue;
            }
            // Counted at the type it will buy: its cheapest option.
            if let Some(o) = launch_options(
                self.env,
                model,
                c.live_types(),
                &c.requested,
                c.zones,
                c.capacity_types,
            )
            .first()
            {
                usage.add(&self.env.catalog.types[o.instance_type].capacity);
            }
        }
        usage
    }

    /// Turns the claims into launch plans with their options, cheapest first. Claims
    /// whose pods may share nodes freely are pooled and repacked onto the cheapest mix
    /// of types (see [`repack`]).
    fn finish(&self) -> Vec<LaunchPlan> {
        let env = self.env;
        let singles: Vec<LaunchPlan> = self
            .claims
            .iter()
            .filter(|c| !c.pods.is_empty())
            .map(|c| LaunchPlan {
                pool: c.pool,
                options: launch_options(
                    env,
                    &env.model.pools[c.pool],
                    c.live_types(),
                    &c.requested,
                    c.zones,
                    c.capacity_types,
                ),
                pods: c.pods.clone(),
                requested: c.requested.clone(),
            })
            .collect();
        if !env.split_claims {
            return singles;
        }
        let claims: Vec<&Claim> = self.claims.iter().filter(|c| !c.pods.is_empty()).collect();
        // Pool capacity counted against limits: what exists plus every claim as one node
        // of its cheapest type (as the claims were admitted); a repacked group swaps its
        // claims' share for its own.
        let mut usage = self.nodes.pool_usage.clone();
        for plan in &singles {
            if let Some(o) = plan.options.first() {
                usage[plan.pool].add(&env.catalog.types[o.instance_type].capacity);
            }
        }
        let mut plans = Vec::new();
        let mut programmes = Programmes::default();
        // The running workload's mix, found at the first group with a long-running pod.
        let mut workload: Option<WorkloadMix> = None;
        for group in pool_groups(&claims, self.snapshot) {
            let group_singles: Vec<&LaunchPlan> = group.iter().map(|&c| &singles[c]).collect();
            let pool = claims[group[0]].pool;
            let members: Vec<&Claim> = group.iter().map(|&c| claims[c]).collect();
            let lasting = members.iter().any(|c| {
                c.pods
                    .iter()
                    .any(|&p| !runs_to_completion(self.snapshot.pending[p]))
            });
            let spare = lasting.then(|| {
                let mix = workload.get_or_insert_with(|| WorkloadMix::of(&self.snapshot.bound));
                (&*mix, group_singles.as_slice())
            });
            // A group of Jobs' pods is priced as held (see `mix::held_factor`).
            let worth_below = if lasting {
                price_of(&group_singles)
            } else {
                held_price_of(&group_singles)
            } * 0.98;
            let repacked = repack(
                env,
                &members,
                self.snapshot,
                &mut programmes,
                worth_below,
                spare,
            )
            .filter(|r| r.valued || r.cost < worth_below)
            .and_then(|r| {
                // Within the pool's limits once the group's claims give back their share.
                let mut after = usage[pool].clone();
                after.sub(&capacity_of(env, &group_singles));
                after.add(&capacity_of(env, &r.plans.iter().collect::<Vec<_>>()));
                env.pools[pool]
                    .limits
                    .exceeded_by(&after, &Resources::default())
                    .is_none()
                    .then(|| {
                        usage[pool] = after;
                        r
                    })
            });
            match repacked {
                Some(r) => plans.extend(r.plans),
                None => plans.extend(group_singles.into_iter().cloned()),
            }
        }
        plans
    }
}

/// Total price per hour of plans at their cheapest options (infinite if one has none).
fn price_of(plans: &[&LaunchPlan]) -> f64 {
    plans
        .iter()
        .map(|p| {
            p.options
                .first()
                .map_or(f64::INFINITY, |o| o.price_per_hour)
        })
        .sum()
}

/// Total price of plans of Jobs' pods at their cheapest options, each node priced as long
/// as its pods hold it ([`mix::held_factor`]).
fn held_price_of(plans: &[&LaunchPlan]) -> f64 {
    plans
        .iter()
        .map(|p| price_of(&[p]) * mix::held_factor(p.pods.len()))
        .sum()
}

/// Total capacity of plans at their cheapest options.
fn capacity_of(env: &SolveEnv, plans: &[&LaunchPlan]) -> Resources {
    let mut total = Resources::default();
    for p in plans {
        if let Some(o) = p.options.first() {
            total.add(&env.catalog.types[o.instance_type].capacity);
        }
    }
    total
}

/// Groups of claims (indices into `claims`) that may be repacked together: same pool,
/// zones and capacity types, and pods whose only topology rules are per zone (a
/// hostname rule is kept by the claim that satisfied it, so such a claim stays alone).
fn pool_groups(claims: &[&Claim], snapshot: &Snapshot) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut keys: Vec<(usize, u32, u8, Option<usize>)> = Vec::new();
    for (i, c) in claims.iter().enumerate() {
        let free = c
            .pods
            .iter()
            .all(|&p| !has_host_scoped_rules(snapshot.pending[p]));
        if !free {
            groups.push(vec![i]);
            keys.push((usize::MAX, 0, 0, None));
            continue;
        }
        let key = (c.pool, c.zones, c.capacity_types, c.zone_pinned);
        match keys.iter().position(|k| *k == key) {
            Some(g) => groups[g].push(i),
            None => {
                keys.push(key);
                groups.push(vec![i]);
            }
        }
    }
    groups
}

/// A group's pods on the cheapest mix of the types every one of its claims allows.
struct Repacked {
    cost: f64,
    plans: Vec<LaunchPlan>,
    /// Chosen over the claims as they were by price less the value of the spare room
    /// (see `workload_mix`), not by price alone.
    valued: bool,
}

/// The mix programmes of one decision, by (pool, zones, capacity types, types): groups
/// that share options share one programme and its cached bases.
#[derive(Default)]
struct Programmes {
    built: Vec<(ProgrammeKey, Priced)>,
}

/// (pool, zones, capacity types, the types allowed, and for Jobs' pods the typical pod
/// the types are priced as held by).
type ProgrammeKey = (usize, u32, u8, Vec<u32>, Option<Resources>);

/// The types a group may use with their prices, and the programme over them.
struct Priced {
    /// Pool-model type indices, and (same positions) their prices and rooms.
    types: Vec<u32>,
    options: Vec<MixOption>,
    lp: ShapeBound,
    /// The lowest price per millicore, byte of memory and pod slot of any option.
    unit_price: [f64; 3],
}

impl Priced {
    /// The fractional shape programme's optimum for `n` pods of requests `q`: `n` times
    /// the lowest price per (fractional) pod of any option that holds one. The launch
    /// mix's programme counts whole pods, so its optimum is never below this.
    fn one_shape_optimum(&self, q: &Resources, n: usize) -> f64 {
        let per_node = |room: &Resources| {
            let ratio = |need: i64, have: i64| {
                if need > 0 {
                    have as f64 / need as f64
                } else {
                    f64::INFINITY
                }
            };
            let mut pods = ratio(q.cpu_milli, room.cpu_milli)
                .min(ratio(q.memory, room.memory))
                .min(ratio(q.pods, room.pods));
            for (name, v) in &q.extended {
                pods = pods.min(ratio(*v, room.extended(name)));
            }
            pods
        };
        self.options
            .iter()
            .filter(|o| q.fits_in(&o.usable))
            .map(|o| o.price / per_node(&o.usable))
            .fold(f64::INFINITY, f64::min)
            * n as f64
    }

    /// A floor on any packing of `total` onto these options: the dearest of its cpu,
    /// memory and pod slots bought at the lowest unit price each (the fluid bound, per
    /// resource).
    fn floor(&self, total: &Resources) -> f64 {
        let amounts = [total.cpu_milli, total.memory, total.pods];
        amounts
            .iter()
            .zip(self.unit_price)
            .map(|(&a, u)| a as f64 * u)
            .fold(0.0, f64::max)
    }
}

impl Programmes {
    fn get(
        &mut self,
        env: &SolveEnv,
        pool: usize,
        zones: u32,
        cts: u8,
        types: Vec<u32>,
        held: Option<&Resources>,
    ) -> &mut Priced {
        let key = (pool, zones, cts, types, held.cloned());
        if let Some(i) = self.built.iter().position(|(k, _)| *k == key) {
            return &mut self.built[i].1;
        }
        let model = &env.model.pools[pool];
        // Launches prefer Spot where the claim allows it: price the types the same way.
        let mut types = Vec::new();
        let mut options = Vec::new();
        for &t in &key.3 {
            let pt = &model.types[t as usize];
            let price = best_price(env, pt.ty, zones, cts & CapacityType::Spot.bit())
                .or_else(|| best_price(env, pt.ty, zones, cts));
            if let Some(price) = price {
                // Priced as held by as many of the Jobs' typical pod as it holds.
                let held = held.map_or(1.0, |q| mix::held_factor(copies_fitting(q, &pt.usable)));
                types.push(t);
                options.push(MixOption {
                    price: price * held,
                    usable: pt.usable.clone(),
                });
            }
        }
        let mut unit_price = [f64::INFINITY; 3];
        for o in &options {
            let room = [o.usable.cpu_milli, o.usable.memory, o.usable.pods];
            for (u, r) in unit_price.iter_mut().zip(room) {
                if r > 0 {
                    *u = u.min(o.price / r as f64);
                }
            }
        }
        let p = Priced {
            lp: mix::programme(&options),
            types,
            options,
            unit_price,
        };
        self.built.push((key, p));
        &mut self.built.last_mut().expect("just pushed").1
    }
}

/// The group's pods repacked onto the cheapest mix of its types ([`mix::cheapest_bins`]),
/// when that costs less than `worth_below` (what the claims as they are cost, less a
/// margin). Without `spare` the group is Jobs' pods only, and nodes are priced as held
/// ([`mix::held_factor`]): in the programme by how many of the group's most common pod a
/// type holds, and in the result by the pods each node gets. With `spare` (the running
/// workload's mix, and the claims as they are), the group holds long-running pods and the
/// choice weighs spare room too: among the claims, that packing and the cheapest packing
/// beside a sample of the mix, the one whose price less [`SPARE_ROOM_WEIGHT`] times what
/// the mix would pay for its spare room is lowest.
fn repack(
    env: &SolveEnv,
    group: &[&Claim],
    snapshot: &Snapshot,
    programmes: &mut Programmes,
    worth_below: f64,
    spare: Option<(&WorkloadMix, &[&LaunchPlan])>,
) -> Option<Repacked> {
    let first = group[0];
    let pod_ids: Vec<usize> = group.iter().flat_map(|c| c.pods.iter().copied()).collect();
    if pod_ids.len() < 2 && group.len() < 2 {
        return None;
    }
    if pod_ids
        .iter()
        .any(|&p| has_hostname_affinity(snapshot.pending[p]))
    {
        return None;
    }
    let model = &env.model.pools[first.pool];
    let (zones, cts) = (first.zones, first.capacity_types);
    let types: Vec<u32> = first
        .compatible
        .iter()
        .copied()
        .filter(|t| group.iter().all(|c| c.compatible.contains(t)))
        .collect();
    let requests: Vec<&Resources> = pod_ids
        .iter()
        .map(|&p| &snapshot.pending[p].requests)
        .collect();
    let held = spare.is_none().then(|| most_common(&requests));
    let priced = programmes.get(env, first.pool, zones, cts, types, held);
    let valuation = spare.and_then(|(mix, _)| {
        mix.valuation(
            |r| priced.options.iter().any(|o| r.fits_in(&o.usable)),
            |r| priced.one_shape_optimum(r, 1),
        )
    });
    let (bins, valued) = match (valuation, spare) {
        (Some(valuation), Some((_, singles))) => (
            valued_packing(priced, model, &requests, &valuation, singles)?,
            true,
        ),
        _ => (cheapest_packing(priced, &requests, worth_below)?, false),
    };
    let mut plans = Vec::with_capacity(bins.len());
    // Bins holding the same requests have the same options (a large batch makes many
    // such nodes): each set is found once.
    let mut options_for: std::collections::HashMap<Resources, Vec<LaunchOption>> =
        std::collections::HashMap::new();
    for bin in bins {
        let options = options_for
            .entry(bin.requested.clone())
            .or_insert_with(|| {
                let holders: Vec<u32> = priced
                    .types
                    .iter()
                    .zip(&priced.options)
                    .filter(|(_, o)| bin.requested.fits_in(&o.usable))
                    .map(|(&t, _)| t)
                    .collect();
                launch_options(env, model, &holders, &bin.requested, zones, cts)
            })
            .clone();
        if options.is_empty() {
            // Packed against a type's best-case room, which no offering gives exactly.
            return None;
        }
        plans.push(LaunchPlan {
            pool: first.pool,
            options,
            pods: bin.members.iter().map(|&m| pod_ids[m]).collect(),
            requested: bin.requested,
        });
    }
    let all: Vec<&LaunchPlan> = plans.iter().collect();
    let cost = if held.is_some() {
        held_price_of(&all)
    } else {
        price_of(&all)
    };
    Some(Repacked {
        cost,
        plans,
        valued,
    })
}

/// The most common of `requests` (the first of the most common, in their order).
fn most_common<'r>(requests: &[&'r Resources]) -> &'r Resources {
    let mut counts: Vec<(&Resources, usize)> = Vec::new();
    for &r in requests {
        match counts.iter_mut().find(|(c, _)| *c == r) {
            Some(e) => e.1 += 1,
            None => counts.push((r, 1)),
        }
    }
    let most = counts.iter().map(|&(_, n)| n).max().unwrap_or(0);
    counts
        .into_iter()
        .find(|&(_, n)| n == most)
        .map_or(requests[0], |(r, _)| r)
}

/// The cheapest packing of `requests`, when it could cost less than `worth_below`.
fn cheapest_packing(
    priced: &mut Priced,
    requests: &[&Resources],
    worth_below: f64,
) -> Option<Vec<mix::Bin>> {
    // Most claims of a large decision are already about as cheap as their pods can be:
    // skip the programme when even its floor is no cheaper than what must be beaten.
    let mut total = Resources::default();
    for r in requests {
        total.add(r);
    }
    if priced.floor(&total) >= worth_below {
        return None;
    }
    // Pods all of one shape: a floor under the programme's optimum is plain arithmetic
    // (the option cheapest per pod of that shape, fractionally), known before solving.
    if requests.iter().all(|r| *r == requests[0])
        && priced.one_shape_optimum(requests[0], requests.len()) >= worth_below
    {
        return None;
    }
    let (estimate, bins) = mix::cheapest_bins(&priced.options, &mut priced.lp, requests)?;
    // The estimate prices each node at its type's best offering, which its launch
    // options cannot undercut: a packing that does not save by it is dropped before
    // paying for those options.
    (estimate < worth_below).then_some(bins)
}

/// Of the claims as they are (`singles`), the cheapest packing of `requests` and the
/// cheapest beside a sample of the workload's mix, the one whose price less
/// [`SPARE_ROOM_WEIGHT`] times the value of its spare room is lowest; `None` when that is
/// the claims as they are.
fn valued_packing(
    priced: &mut Priced,
    model: &PoolModel,
    requests: &[&Resources],
    valuation: &Valuation,
    singles: &[&LaunchPlan],
) -> Option<Vec<mix::Bin>> {
    let options = &priced.options;
    let net = |price: f64, usable: &Resources, requested: &Resources| {
        price - SPARE_ROOM_WEIGHT * valuation.room_value(&usable.minus(requested))
    };
    let net_of = |bins: &[mix::Bin]| -> f64 {
        bins.iter()
            .map(|b| {
                net(
                    options[b.option].price,
                    &options[b.option].usable,
                    &b.requested,
                )
            })
            .sum()
    };
    let as_they_are: f64 = singles
        .iter()
        .map(|p| {
            let Some(o) = p.options.first() else {
                return f64::INFINITY;
            };
            // Any of the pool's types: a claim may have bought one the group's other
            // claims do not allow.
            let room = model
                .types
                .iter()
                .find(|pt| pt.ty == o.instance_type)
                .map_or_else(Resources::default, |pt| pt.usable.clone());
            net(o.price_per_hour, &room, &p.requested)
        })
        .sum();
    let alone = mix::cheapest_bins(options, &mut priced.lp, requests)?;
    let sample = valuation.sample(requests.len());
    let beside = mix::cheapest_bins_beside(options, &mut priced.lp, requests, &sample)?;
    let (net_alone, net_beside) = (net_of(&alone.1), net_of(&beside.1));
    if as_they_are <= net_alone.min(net_beside) {
        return None;
    }
    Some(if net_beside < net_alone {
        beside.1
    } else {
        alone.1
    })
}

/// The offerings of catalog type `ty` in `zones` and `cts` that are purchasable now.
fn available_offerings<'e>(
    env: &'e SolveEnv,
    ty: usize,
    zones: u32,
    cts: u8,
) -> impl Iterator<Item = &'e Offering> + 'e {
    env.catalog.types[ty].offerings.iter().filter(move |o| {
        zones & (1 << o.zone) != 0
            && cts & o.capacity_type.bit() != 0
            && !env
                .unavailable
                .is_unavailable(ty, o.zone, o.capacity_type, env.now)
    })
}

/// The cheapest available price of type `ty` in the zones and capacity types allowed.
fn best_price(env: &SolveEnv, ty: usize, zones: u32, cts: u8) -> Option<f64> {
    available_offerings(env, ty, zones, cts)
        .map(|o| o.price_per_hour)
        .min_by(f64::total_cmp)
}

/// Spot first where the pool allows it: on-demand is the fallback once the Spot
/// offerings are marked unavailable (as Karpenter does).
fn has_spot(
    env: &SolveEnv,
    model: &PoolModel,
    types: &[u32],
    requested: &Resources,
    zones: u32,
    cts: u8,
) -> bool {
    cts & CapacityType::Spot.bit() != 0
        && types.iter().any(|&t| {
            let pt = &model.types[t as usize];
            requested.fits_in(pt.usable_for(CapacityType::Spot))
                && best_price(env, pt.ty, zones, CapacityType::Spot.bit()).is_some()
        })
}

/// Every available offering of `types` that holds `requested`, cheapest first, at most
/// `max_launch_options`; only Spot ones when there are any (see [`has_spot`]).
fn launch_options(
    env: &SolveEnv,
    model: &PoolModel,
    types: &[u32],
    requested: &Resources,
    zones: u32,
    cts: u8,
) -> Vec<LaunchOption> {
    let spot_only = has_spot(env, model, types, requested, zones, cts);
    let order = |a: &LaunchOption, b: &LaunchOption| {
        a.price_per_hour
            .total_cmp(&b.price_per_hour)
            .then(a.instance_type.cmp(&b.instance_type))
            .then(a.zone.cmp(&b.zone))
    };
    let keep = env.max_launch_options.max(1);
    // The cheapest `keep` of thousands of offerings, gathered in a buffer of twice that
    // which is cut back to the cheapest `keep` whenever it fills: the offerings are all
    // of one capacity type (see `spot_only`), so the order has no ties and the options
    // kept are those a sort of all of them would keep.
    let mut options = Vec::with_capacity(2 * keep);
    // After a cut, the dearest option kept: an offering that comes after it in the order
    // can never be among the cheapest `keep`, so it is passed over before the fit check.
    let mut bar: Option<LaunchOption> = None;
    for &t in types {
        let pt = &model.types[t as usize];
        let ty = pt.ty;
        for o in available_offerings(env, ty, zones, cts) {
            let option = LaunchOption {
                instance_type: ty,
                zone: o.zone,
                capacity_type: o.capacity_type,
                price_per_hour: o.price_per_hour,
            };
            if bar.as_ref().is_some_and(|b| order(&option, b).is_gt()) {
                continue;
            }
            if requested.fits_in(pt.usable_for(o.capacity_type))
                && (!spot_only || o.capacity_type == CapacityType::Spot)
            {
                options.push(option);
                if options.len() == 2 * keep {
                    options.select_nth_unstable_by(keep - 1, order);
                    options.truncate(keep);
                    bar = Some(options[keep - 1].clone());
                }
            }
        }
    }
    if options.len() > keep {
        options.select_nth_unstable_by(keep - 1, order);
        options.truncate(keep);
    }
    options.sort_unstable_by(order);
    options.shrink_to_fit();
    options
}

/// Required affinity per hostname ties a pod to its node-mates.
fn has_hostname_affinity(pod: &Pod) -> bool {
    pod.affinity.iter().any(|t| t.kind == TopologyKey::Hostname)
}

/// Rules counted per node (or per a label other than the zone): the claim that admitted
/// such a pod is what keeps them, so it is not pooled with others.
fn has_host_scoped_rules(pod: &Pod) -> bool {
    let scoped = |k: TopologyKey| k != TopologyKey::Zone;
    pod.affinity.iter().any(|t| scoped(t.kind))
        || pod.anti_affinity.iter().any(|t| scoped(t.kind))
        || pod.spread.iter().any(|s| scoped(s.kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut for one-shape groups is the fractional programme's optimum, a floor
    /// under the whole-pod one, so skipping the programme with it never changes a decision.
    #[test]
    fn one_shape_optimum_equals_the_programme() {
        let mut rng = super::super::rng::Rng::new(31);
        for _ in 0..200 {
            let options: Vec<MixOption> = (0..1 + rng.below(8))
                .map(|_| MixOption {
                    price: rng.range_f64(0.01, 3.0),
                    usable: Resources::new(
                        500 * (1 + rng.below(64) as i64),
                        (1 + rng.below(256) as i64) << 30,
                        4 + rng.below(100) as i64,
                    ),
                })
                .collect();
            let q = Resources::new(
                250 * (1 + rng.below(16) as i64),
                (1 + rng.below(16) as i64) << 29,
                1,
            );
            let n = 1 + rng.below(50);
            let priced = Priced {
                types: Vec::new(),
                lp: mix::programme(&options),
                options: options.clone(),
                unit_price: [0.0; 3],
            };
            let shortcut = priced.one_shape_optimum(&q, n);
            let mut lp = ShapeBound::new(
                options
                    .iter()
                    .map(|o| (o.price, o.usable.clone()))
                    .collect(),
            );
            let mix = lp.solve(&[(q.clone(), n as f64)]);
            if mix.infeasible.is_empty() {
                let rel = (shortcut - mix.rate).abs() / mix.rate.max(1e-9);
                assert!(rel < 1e-9, "shortcut {shortcut}, programme {}", mix.rate);
            } else {
                assert!(shortcut.is_infinite());
            }
        }
    }
}
