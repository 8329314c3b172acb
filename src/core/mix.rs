//! Cost-optimal packing of a group of pods onto new nodes: the cheapest mix of a pool's
//! instance types that holds every pod whole.
//!
//! The shape-aware programme with whole pods per node ([`ShapeBound::whole_pods`], the
//! cutting-stock relaxation) says which node patterns the cheapest mix uses: how many
//! pods of each shape a node of each type holds, with only the number of nodes
//! fractional. (Fractional patterns, as in the report's bound, round badly: a type that
//! holds 1.7 pods is a type that holds one.) [`cheapest_bins`] rounds that mix: every
//! whole node of the optimum is opened as the optimum fills it, the pods left over go
//! into the room those nodes have spare, and what is still left is solved again, so each
//! round commits whole nodes of a fresh optimum for the remainder. A round with no whole
//! node opens the node that buys the most of what is left per dollar at the optimum's
//! dual prices (a third of a large node is not something a few pods can buy). Every
//! round opens at least one node, so this ends; every node is then bought as the
//! cheapest type that holds what it got.
//!
//! At equal price per unit the programme prefers smaller types (see [`SIZE_TIE_BREAK`]):
//! pods that end release a small node sooner, and whole small nodes round better.
//!
//! Pure: no I/O, no clock.

use super::resources::Resources;
use super::shape_bound::{Mix, ShapeBound};

/// How far a Job's pods' run times spread around their mean (±40%), for pricing the nodes
/// a batch of Jobs' pods gets by how long they hold it (see [`held_factor`]). No launch
/// knows how long a Job's pods run, only that they end at different times. On the
/// bundled traces, seeds 1-3 (with `TRANSIENT_DEFERRAL_S` at 60 s), spreads of 0 (price
/// by the hour), 0.2, 0.3, 0.4, 0.6 and 1.0 put week-100k at $1,868.44, $1,855.64,
/// $1,850.05, $1,841.53, $1,844.60 and $1,845.58; batch-mixed at $218.39, $219.72,
/// $218.50, $218.26, $221.19 and $221.47; batch-bursts at $47.09-47.30 from 0.2 up
/// ($47.37 by the hour); mixed and daily-web within 0.2%.
pub const JOB_RUN_SPREAD: f64 = 0.4;

/// A node taken by `pods` pods of Jobs is paid until the last of them ends: with run
/// times spread evenly over ±[`JOB_RUN_SPREAD`] of their mean, that is this many times the
/// mean (the expected maximum of `pods` such times). One pod holds its node for exactly
/// its own run; forty hold a large node about 1.38 times as long as their mean run. At
/// equal price per pod, this prefers the smaller nodes, which release their capacity as
/// their pods end.
pub fn held_factor(pods: usize) -> f64 {
    let k = pods.max(1) as f64;
    1.0 + JOB_RUN_SPREAD * (k - 1.0) / (k + 1.0)
}

/// Relative price added per vCPU of a type inside the programme only: breaks ties
/// between sizes of one family (same price per vCPU) towards the smaller ones, and is far
/// too small to prefer a dearer mix (0.01% on a 100-vCPU type).
const SIZE_TIE_BREAK: f64 = 1e-6;
/// Rounds before the rest goes one pod per round (a safety net; never reached on the
/// bundled workloads, where a handful of rounds place everything).
const MAX_ROUNDS: usize = 256;
const EPS: f64 = 1e-9;

/// A type the pods may go on: its price and its room for pods.
#[derive(Clone, Debug)]
pub struct MixOption {
    pub price: f64,
    pub usable: Resources,
}

/// A node of the result: the option it was opened as, the cheapest option that holds
/// what it got, the pods (indices into the pods passed in) and their requests.
#[derive(Clone, Debug, PartialEq)]
pub struct Bin {
    pub option: usize,
    pub members: Vec<usize>,
    pub requested: Resources,
}

/// The programme over `options` that [`cheapest_bins`] solves. Built once and reused for
/// every group of pods with the same options (it keeps its optimal bases).
pub fn programme(options: &[MixOption]) -> ShapeBound {
    ShapeBound::whole_pods(
        options
            .iter()
            .map(|o| {
                let cores = o.usable.cpu_milli as f64 / 1000.0;
                (o.price * (1.0 + SIZE_TIE_BREAK * cores), o.usable.clone())
            })
            .collect(),
    )
}

/// The packing of `pods` (their requests) that the rounded optimum gives, with its
/// price per hour; `None` when some pod fits no option. `lp` is [`programme`] of
/// `options`.
pub fn cheapest_bins(
    options: &[MixOption],
    lp: &mut ShapeBound,
    pods: &[&Resources],
) -> Option<(f64, Vec<Bin>)> {
    if pods.is_empty() {
        return Some((0.0, Vec::new()));
    }
    let mut packing = Packing::new(options, pods);
    for _ in 0..MAX_ROUNDS {
        if packing.done() {
            break;
        }
        let mix = lp.solve(&packing.classes());
        if !mix.infeasible.is_empty() {
            return None;
        }
        let opened = packing.open_whole_nodes(&mix);
        if !opened && packing.open_best_value(&mix).is_none() {
            packing.open_for_largest_pod()?;
        }
        packing.fill_spare_room();
    }
    while !packing.done() {
        packing.open_for_largest_pod()?;
        packing.fill_spare_room();
    }
    Some(packing.finish())
}

/// [`cheapest_bins`] of `pods` and `beside` together, keeping only the nodes that hold
/// some of `pods` and only those pods on them, each node bought as the cheapest option
/// that holds what it keeps: the types the cheapest mix of both would use, for `pods`
/// alone (see `workload_mix`).
pub fn cheapest_bins_beside(
    options: &[MixOption],
    lp: &mut ShapeBound,
    pods: &[&Resources],
    beside: &[&Resources],
) -> Option<(f64, Vec<Bin>)> {
    let all: Vec<&Resources> = pods.iter().chain(beside).copied().collect();
    let (_, bins) = cheapest_bins(options, lp, &all)?;
    let mut total = 0.0;
    let mut kept = Vec::new();
    for mut bin in bins {
        bin.members.retain(|&m| m < pods.len());
        if bin.members.is_empty() {
            continue;
        }
        bin.requested = Resources::default();
        for &m in &bin.members {
            bin.requested.add(pods[m]);
        }
        bin.option = cheapest_holding(options, &bin.requested).unwrap_or(bin.option);
        total += options[bin.option].price;
        kept.push(bin);
    }
    Some((total, kept))
}

/// The cheapest option whose room holds `requested` (the lowest index on a tie).
fn cheapest_holding(options: &[MixOption], requested: &Resources) -> Option<usize> {
    (0..options.len())
        .filter(|&o| requested.fits_in(&options[o].usable))
        .min_by(|&a, &b| {
            options[a]
                .price
                .total_cmp(&options[b].price)
                .then(a.cmp(&b))
        })
}

/// Pods grouped by requests (a group has few shapes), with the nodes opened so far.
struct Packing<'o> {
    options: &'o [MixOption],
    /// (requests, pods of exactly those requests not yet placed), largest first.
    shapes: Vec<(Resources, Vec<usize>)>,
    bins: Vec<Bin>,
}

impl<'o> Packing<'o> {
    fn new(options: &'o [MixOption], pods: &[&Resources]) -> Self {
        let mut shapes: Vec<(Resources, Vec<usize>)> = Vec::new();
        for (i, r) in pods.iter().enumerate() {
            match shapes.iter_mut().find(|(s, _)| s == *r) {
                Some((_, members)) => members.push(i),
                None => shapes.push(((*r).clone(), vec![i])),
            }
        }
        shapes.sort_by(|(a, _), (b, _)| {
            (b.extended.len(), b.cpu_milli, b.memory).cmp(&(
                a.extended.len(),
                a.cpu_milli,
                a.memory,
            ))
        });
        // Pop from the back: the lowest pod index goes first (deterministic, and pods
        // keep their decision order inside a node).
        for (_, members) in &mut shapes {
            members.reverse();
        }
        Packing {
            options,
            shapes,
            bins: Vec::new(),
        }
    }

    fn done(&self) -> bool {
        self.shapes.iter().all(|(_, m)| m.is_empty())
    }

    fn classes(&self) -> Vec<(Resources, f64)> {
        self.shapes
            .iter()
            .map(|(r, m)| (r.clone(), m.len() as f64))
            .collect()
    }

    /// Opens every whole node of the optimum, filled as the optimum fills it (rounded
    /// down). `false` when that places nothing.
    fn open_whole_nodes(&mut self, mix: &Mix) -> bool {
        let mut parts: Vec<_> = mix.parts.iter().filter(|p| p.nodes >= 1.0 - EPS).collect();
        parts.sort_by(|a, b| b.nodes.total_cmp(&a.nodes).then(a.option.cmp(&b.option)));
        let mut placed = false;
        for part in parts {
            let whole = (part.nodes + EPS).floor() as usize;
            for _ in 0..whole {
                let quota: Vec<usize> = part
                    .pods
                    .iter()
                    .map(|c| (c + EPS).floor() as usize)
                    .collect();
                if self.open(part.option, &quota) {
                    placed = true;
                } else {
                    break;
                }
            }
        }
        placed
    }

    /// With no whole node left in the optimum, opens the one node that buys the most of
    /// what is left per dollar, valuing each pod at its class's dual price (what it adds
    /// to the optimum): a fractional share of a large node is not what a few pods can
    /// buy, so the optimum's own fractions are a poor guide here.
    fn open_best_value(&mut self, mix: &Mix) -> Option<()> {
        let mut best: Option<(f64, usize, Vec<usize>)> = None;
        for option in 0..self.options.len() {
            let (value, quota) = self.fill(option, &mix.duals);
            let ratio = value / self.options[option].price.max(EPS);
            if value > EPS
                && best
                    .as_ref()
                    .is_none_or(|(r, _, _)| ratio > *r * (1.0 + 1e-9))
            {
                best = Some((ratio, option, quota));
            }
        }
        let (_, option, quota) = best?;
        self.open(option, &quota).then_some(())
    }

    /// The pods left that a node of `option` takes, largest shapes first, and their
    /// value at `duals` (per shape).
    fn fill(&self, option: usize, duals: &[f64]) -> (f64, Vec<usize>) {
        let mut room = self.options[option].usable.clone();
        let mut value = 0.0;
        let quota = self
            .shapes
            .iter()
            .zip(duals)
            .map(|((req, members), dual)| {
                let n = copies_fitting(req, &room).min(members.len());
                take_copies(&mut room, req, n);
                value += dual * n as f64;
                n
            })
            .collect();
        (value, quota)
    }

    /// The last resort: the largest pod left, alone on the cheapest option holding it.
    fn open_for_largest_pod(&mut self) -> Option<()> {
        let s = self.shapes.iter().position(|(_, m)| !m.is_empty())?;
        let req = &self.shapes[s].0;
        let option = (0..self.options.len())
            .filter(|&o| req.fits_in(&self.options[o].usable))
            .min_by(|&a, &b| self.options[a].price.total_cmp(&self.options[b].price))?;
        let mut quota = vec![0; self.shapes.len()];
        quota[s] = 1;
        self.open(option, &quota).then_some(())
    }

    /// Opens a node of `option` with up to `quota[k]` pods of shape k that fit.
    fn open(&mut self, option: usize, quota: &[usize]) -> bool {
        let usable = &self.options[option].usable;
        let mut bin = Bin {
            option,
            members: Vec::new(),
            requested: Resources::default(),
        };
        for (k, &q) in quota.iter().enumerate() {
            let (req, members) = &mut self.shapes[k];
            for _ in 0..q {
                if members.is_empty() || !bin.requested.plus(req).fits_in(usable) {
                    break;
                }
                bin.members.push(members.pop().expect("not empty"));
                bin.requested.add(req);
            }
        }
        if bin.members.is_empty() {
            return false;
        }
        self.bins.push(bin);
        true
    }

    /// First fit, largest shapes first, of the pods left into the nodes' spare room.
    fn fill_spare_room(&mut self) {
        for (req, members) in &mut self.shapes {
            // Nodes before `from` cannot take another pod of this shape.
            let mut from = 0;
            while let Some(&pod) = members.last() {
                let slot = self.bins[from..].iter().position(|b| {
                    b.requested
                        .plus(req)
                        .fits_in(&self.options[b.option].usable)
                });
                let Some(p) = slot else { break };
                from += p;
                let bin = &mut self.bins[from];
                bin.members.push(pod);
                bin.requested.add(req);
                members.pop();
            }
        }
    }

    /// Each node bought as the cheapest option holding what it got; the total price.
    fn finish(mut self) -> (f64, Vec<Bin>) {
        let mut total = 0.0;
        for bin in &mut self.bins {
            let best = cheapest_holding(self.options, &bin.requested).unwrap_or(bin.option);
            bin.option = best;
            total += self.options[best].price;
        }
        (total, self.bins)
    }
}

/// How many pods of requests `req` fit in `room` side by side.
pub fn copies_fitting(req: &Resources, room: &Resources) -> usize {
    let per = |need: i64, have: i64| {
        if need > 0 {
            (have.max(0) / need) as usize
        } else {
            usize::MAX
        }
    };
    let mut n = per(req.cpu_milli, room.cpu_milli)
        .min(per(req.memory, room.memory))
        .min(per(req.ephemeral, room.ephemeral))
        .min(per(req.pods, room.pods));
    for (name, v) in &req.extended {
        n = n.min(per(*v, room.extended(name)));
    }
    n
}

/// `room` less `n` pods of requests `req` (which fit: see [`copies_fitting`]).
fn take_copies(room: &mut Resources, req: &Resources, n: usize) {
    let n = n as i64;
    room.cpu_milli -= req.cpu_milli * n;
    room.memory -= req.memory * n;
    room.ephemeral -= req.ephemeral * n;
    room.pods -= req.pods * n;
    for (name, v) in &req.extended {
        if let Some(e) = room.extended.iter_mut().find(|(r, _)| r == name) {
            e.1 -= v * n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: i64 = 1 << 30;

    #[test]
    fn a_node_is_held_longer_the_more_jobs_pods_it_waits_for() {
        // One pod holds its node for its own run; more wait for the last of them.
        assert_eq!(held_factor(1), 1.0);
        assert_eq!(held_factor(0), 1.0);
        let factors: Vec<f64> = (1..=64).map(held_factor).collect();
        assert!(factors.windows(2).all(|w| w[0] < w[1]), "{factors:?}");
        // Never beyond the latest end of the spread, and near it for many pods.
        assert!(factors.iter().all(|&f| f < 1.0 + JOB_RUN_SPREAD));
        assert!(held_factor(64) > 1.0 + 0.95 * JOB_RUN_SPREAD);
        // Uniform over ±s: the expected maximum of 3 is s/2 above the mean.
        assert!((held_factor(3) - (1.0 + JOB_RUN_SPREAD / 2.0)).abs() < 1e-12);
    }

    fn opt(price: f64, cpu: i64, mem_gib: i64) -> MixOption {
        MixOption {
            price,
            usable: Resources::new(cpu * 1000, mem_gib * GIB, 110),
        }
    }

    fn pod(cpu_milli: i64, mem_gib: i64) -> Resources {
        Resources::new(cpu_milli, mem_gib * GIB, 1)
    }

    /// The case: ten 1 CPU / 1 GiB pods go on a c5.2xlarge and a c5.xlarge
    /// ($0.51/h), not on one m5.4xlarge ($0.768/h).
    #[test]
    fn ten_small_pods_take_the_cheap_mix_not_the_big_node() {
        let options = vec![
            opt(0.768, 15, 60), // m5.4xlarge, after overhead
            opt(0.34, 7, 14),   // c5.2xlarge
            opt(0.17, 3, 6),    // c5.xlarge
            opt(0.096, 1, 7),   // m5.large (1.9 CPU usable rounds to 1 here)
        ];
        let p = pod(1000, 1);
        let pods: Vec<&Resources> = std::iter::repeat_n(&p, 10).collect();
        let (cost, bins) = cheapest_bins(&options, &mut programme(&options), &pods).expect("fits");
        assert!((cost - 0.51).abs() < 1e-9, "cost {cost}: {bins:?}");
        let mut seen: Vec<usize> = bins.iter().flat_map(|b| b.members.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        for b in &bins {
            assert!(b.requested.fits_in(&options[b.option].usable));
        }
    }

    /// A type that holds 1.7 pods of a shape by the fractional programme holds one: the
    /// whole-pod patterns buy the type that holds seven instead of seven that hold one.
    #[test]
    fn patterns_count_whole_pods() {
        let options = vec![
            opt(0.0645, 7, 13),  // c6gd.2xlarge-like: one 4 CPU / 8 GiB pod (1.6 by fractions)
            opt(0.3132, 31, 56), // c7g.8xlarge-like: seven of them
        ];
        let p = pod(4000, 8);
        let pods: Vec<&Resources> = std::iter::repeat_n(&p, 7).collect();
        let (cost, bins) = cheapest_bins(&options, &mut programme(&options), &pods).expect("fits");
        assert!((cost - 0.3132).abs() < 1e-9, "cost {cost}: {bins:?}");
    }

    /// Too few pods for a whole node of the optimum: they buy the nodes that are cheapest
    /// for them, not a part-filled share of the type that would be cheapest when full.
    #[test]
    fn a_few_pods_buy_small_nodes_not_a_share_of_a_large_one() {
        let options = vec![
            opt(0.012, 1, 3),   // t3a.medium-like: one 1 CPU / 2 GiB pod
            opt(0.0645, 7, 13), // six of them, cheaper per pod when full
        ];
        let p = pod(1000, 2);
        let pods: Vec<&Resources> = std::iter::repeat_n(&p, 4).collect();
        let (cost, bins) = cheapest_bins(&options, &mut programme(&options), &pods).expect("fits");
        assert!((cost - 0.048).abs() < 1e-9, "cost {cost}: {bins:?}");
        let six: Vec<&Resources> = std::iter::repeat_n(&p, 6).collect();
        let (cost, _) = cheapest_bins(&options, &mut programme(&options), &six).expect("fits");
        assert!(
            (cost - 0.0645).abs() < 1e-9,
            "six pods fill the large node: {cost}"
        );
    }

    /// Complementary pods share nodes instead of each shape buying its own.
    #[test]
    fn cpu_and_memory_heavy_pods_share_nodes() {
        let options = vec![opt(1.0, 8, 32), opt(0.9, 8, 8), opt(0.9, 2, 32)];
        let (a, b) = (pod(3000, 1), pod(1000, 14));
        let pods = vec![&a, &a, &b, &b, &a, &a, &b, &b];
        let (cost, bins) = cheapest_bins(&options, &mut programme(&options), &pods).expect("fits");
        assert!((cost - 2.0).abs() < 1e-9, "cost {cost}: {bins:?}");
    }

    #[test]
    fn same_price_per_unit_prefers_the_smaller_sizes() {
        // One family: 2, 4 and 8 vCPU at the same price per vCPU.
        let options = vec![opt(0.4, 8, 32), opt(0.2, 4, 16), opt(0.1, 2, 8)];
        let p = pod(2000, 8);
        let pods: Vec<&Resources> = std::iter::repeat_n(&p, 3).collect();
        let (cost, bins) = cheapest_bins(&options, &mut programme(&options), &pods).expect("fits");
        assert!((cost - 0.3).abs() < 1e-9, "cost {cost}");
        assert!(bins.iter().all(|b| b.option == 2), "{bins:?}");
    }

    #[test]
    fn a_pod_no_option_holds_gives_none() {
        let options = vec![opt(0.1, 2, 8)];
        let big = pod(4000, 1);
        assert!(cheapest_bins(&options, &mut programme(&options), &[&big]).is_none());
    }

    /// Every pod is placed exactly once, no node is over-full, and the rounded packing
    /// never costs less than the fractional optimum (it is a real placement).
    #[test]
    fn random_groups_are_packed_whole_and_within_room() {
        let mut rng = crate::core::rng::Rng::new(23);
        for _ in 0..300 {
            let options: Vec<MixOption> = (0..1 + rng.below(6))
                .map(|_| {
                    opt(
                        rng.range_f64(0.05, 2.0),
                        1 + rng.below(16) as i64,
                        1 + rng.below(64) as i64,
                    )
                })
                .collect();
            let mut shapes: Vec<Resources> = (0..1 + rng.below(4))
                .map(|_| pod(250 * (1 + rng.below(8) as i64), 1 + rng.below(8) as i64))
                .collect();
            shapes.sort_by_key(|s| (s.cpu_milli, s.memory));
            shapes.dedup();
            let pods: Vec<&Resources> = (0..1 + rng.below(40))
                .map(|_| &shapes[rng.below(shapes.len())])
                .collect();
            let feasible = pods
                .iter()
                .all(|p| options.iter().any(|o| p.fits_in(&o.usable)));
            let Some((cost, bins)) = cheapest_bins(&options, &mut programme(&options), &pods)
            else {
                assert!(!feasible);
                continue;
            };
            let mut seen: Vec<usize> = bins.iter().flat_map(|b| b.members.clone()).collect();
            seen.sort();
            assert_eq!(seen, (0..pods.len()).collect::<Vec<_>>());
            let mut total = 0.0;
            for b in &bins {
                let mut sum = Resources::default();
                for &m in &b.members {
                    sum.add(pods[m]);
                }
                assert_eq!(sum, b.requested);
                assert!(b.requested.fits_in(&options[b.option].usable));
                total += options[b.option].price;
            }
            assert!((total - cost).abs() < 1e-9);
            let classes: Vec<(Resources, f64)> = shapes
                .iter()
                .map(|s| (s.clone(), pods.iter().filter(|p| **p == s).count() as f64))
                .collect();
            let bound = ShapeBound::new(
                options
                    .iter()
                    .map(|o| (o.price, o.usable.clone()))
                    .collect(),
            )
            .solve(&classes)
            .rate;
            assert!(cost >= bound - 1e-9, "{cost} below the bound {bound}");
        }
    }
}
