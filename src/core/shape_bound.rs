//! The shape-aware lower bound on hourly cost (docs: `cost_usd.shape_bound` in the
//! simulation report spec), and the same linear programme as a guide for provisioning.
//!
//! Pods are grouped into classes `k` of equal requests `q_k`, `n_k` pods each. A
//! *pattern* is a fractional node of one offering `o`: a count `c_k >= 0` of class-k pods
//! per node with `sum_k c_k q_k <= a_o` (a class only where one of its pods fits `o`
//! alone). The bound is
//!
//! ```text
//!     minimise    sum_j x_j * price_{o(j)}
//!     subject to  sum_j x_j * c_{j,k} >= n_k   for every class k
//!                 x_j >= 0
//! ```
//!
//! over every pattern, which is the spec's programme with `y_o = sum_{j of o} x_j`.
//!
//! Method: revised primal simplex with column generation. The rows are the classes
//! present (few: a workload has a handful of pod shapes), so the basis inverse is a small
//! dense matrix. The start basis is one single-class pattern per class (always primal
//! feasible). A pattern enters when its offering's *pricing* programme (`max pi . c` over
//! that offering's patterns, a tiny LP with one row per resource) beats the offering's
//! price. At the optimum every offering prices out, so the duals `pi` are feasible for
//! the full programme whatever the demand is: optimal bases are cached per set of
//! classes, and a cached basis `B` answers a new demand `n` as soon as `B^-1 n >= 0`.
//! The value returned is always the dual bound `n . pi / theta`, where `theta >= 1`
//! scales `pi` into dual feasibility, so even a solve stopped early is a valid bound.
//!
//! Pure: no I/O, no clock.

use super::lower_bound::{FIXED_DIMS, SCALE};
use super::resources::{ResourceName, Resources};
use std::collections::HashMap;

/// Bases kept per set of classes.
const CACHE_PER_KEY: usize = 16;
/// Master pivots per solve before giving up with the (still valid) dual bound.
const MAX_PIVOTS: usize = 2_000;
/// Pivots of one pricing programme (a handful of rows: it never needs many).
const MAX_PRICING_PIVOTS: usize = 64;
const TOL: f64 = 1e-9;
/// Search nodes of one whole-pod pricing programme (an integer knapsack of a handful of
/// classes); past it the best pattern found so far enters, which only slows the
/// master's convergence a little, never makes a pattern that does not fit.
const MAX_KNAPSACK_NODES: usize = 1_024;
/// Nodes that hold at most this many pods of any one class get the exact knapsack; on
/// larger ones rounding the fractional pattern down loses at most a pod per class.
const SMALL_NODE_PODS: f64 = 32.0;

/// One purchasable option: its price and the room it has for pods.
#[derive(Clone, Debug)]
struct Offer {
    price: f64,
    room: Resources,
    /// `room` in scaled units, one entry per dimension.
    a: Vec<f64>,
    /// Index into the options the bound was built from (the cheapest of equal rooms).
    source: usize,
}

/// A pattern: `pods[k]` class-k pods (fractional) on one node of `offer`; `None` is the
/// surplus column of the row `surplus` (`-1` in it, cost 0).
#[derive(Clone, Debug)]
struct Column {
    offer: Option<usize>,
    pods: Vec<f64>,
}

#[derive(Clone, Debug)]
struct Basis {
    cols: Vec<Column>,
    /// Row-major `k x k` inverse of the basis matrix.
    inv: Vec<f64>,
    /// The duals, scaled into feasibility for every offering.
    duals: Vec<f64>,
}

/// A node of the optimal fractional mix: `nodes` of option `option`, each holding
/// `pods[k]` pods of the k-th class passed in.
#[derive(Clone, Debug, PartialEq)]
pub struct MixPart {
    pub option: usize,
    pub nodes: f64,
    pub pods: Vec<f64>,
}

/// The optimum of one solve.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mix {
    /// Dollars per hour: a lower bound on any placement of the classes.
    pub rate: f64,
    /// The optimal fractional nodes (empty when nothing needs a node).
    pub parts: Vec<MixPart>,
    /// Classes no option can hold (indices into the classes passed in).
    pub infeasible: Vec<usize>,
    /// Per class passed in, what one more of its pods adds to the rate at the optimum
    /// (the dual price; 0 for classes left out).
    pub duals: Vec<f64>,
}

#[derive(Clone, Debug, Default)]
pub struct ShapeBoundStats {
    pub solves: u64,
    pub cache_hits: u64,
    pub pivots: u64,
}

/// How many pods of a class a pattern may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counts {
    /// Any non-negative amount: the bound of the report (the spec's programme).
    Fractional,
    /// Whole pods only (Gilmore and Gomory's cutting-stock patterns): a tighter
    /// relaxation whose optimal nodes can be bought as they are, for provisioning.
    Whole,
}

/// The shape-aware bound over a fixed set of options, with its basis cache.
pub struct ShapeBound {
    counts: Counts,
    extended: Vec<ResourceName>,
    offers: Vec<Offer>,
    cache: HashMap<Vec<Resources>, Vec<Basis>>,
    stats: ShapeBoundStats,
}

impl ShapeBound {
    /// `options` are (price per hour, room for pods). Options with no more room than a
    /// cheaper (or equal, earlier) one are dropped: the optimum is unchanged.
    pub fn new(options: Vec<(f64, Resources)>) -> Self {
        Self::with_counts(options, Counts::Fractional)
    }

    /// The same programme with whole pods per node: its optimum is a mix of real nodes
    /// (only their number is fractional), so rounding it up loses little. Its rate is
    /// not the report's bound (it is higher: every pattern here is one there too).
    pub fn whole_pods(options: Vec<(f64, Resources)>) -> Self {
        Self::with_counts(options, Counts::Whole)
    }

    fn with_counts(options: Vec<(f64, Resources)>, counts: Counts) -> Self {
        let mut extended: Vec<ResourceName> = Vec::new();
        for (_, r) in &options {
            for (name, _) in &r.extended {
                if !extended.contains(name) {
                    extended.push(name.clone());
                }
            }
        }
        extended.sort();
        let mut cheapest: HashMap<&Resources, usize> = HashMap::new();
        for (i, (price, room)) in options.iter().enumerate() {
            if !price.is_finite() || *price < 0.0 || room.pods <= 0 {
                continue;
            }
            let e = cheapest.entry(room).or_insert(i);
            if options[*e].0 > *price {
                *e = i;
            }
        }
        let mut unique: Vec<usize> = cheapest.into_values().collect();
        unique.sort_by(|&a, &b| options[a].0.total_cmp(&options[b].0).then(a.cmp(&b)));
        let mut kept: Vec<usize> = Vec::new();
        for &i in &unique {
            // Sorted by price: only an earlier (cheaper or equal) option can dominate.
            if !kept.iter().any(|&k| options[i].1.fits_in(&options[k].1)) {
                kept.push(i);
            }
        }
        let mut bound = ShapeBound {
            counts,
            extended,
            offers: Vec::new(),
            cache: HashMap::new(),
            stats: ShapeBoundStats::default(),
        };
        bound.offers = kept
            .into_iter()
            .map(|i| Offer {
                price: options[i].0,
                room: options[i].1.clone(),
                a: bound.vector(&options[i].1),
                source: i,
            })
            .collect();
        bound
    }

    pub fn stats(&self) -> ShapeBoundStats {
        self.stats.clone()
    }

    fn dims(&self) -> usize {
        FIXED_DIMS + self.extended.len()
    }

    fn vector(&self, r: &Resources) -> Vec<f64> {
        let mut v = vec![0.0; self.dims()];
        v[0] = r.cpu_milli as f64 * SCALE[0];
        v[1] = r.memory as f64 * SCALE[1];
        v[2] = r.ephemeral as f64 * SCALE[2];
        v[3] = r.pods as f64 * SCALE[3];
        for (i, name) in self.extended.iter().enumerate() {
            v[FIXED_DIMS + i] = r.extended(name) as f64;
        }
        v
    }

    /// The bound's hourly rate for pods of the given requests (equal requests may repeat;
    /// pods no option holds are left out, as the spec's "feasible pods").
    pub fn hourly_rate(&mut self, pods: &[(Resources, u64)]) -> f64 {
        let mut merged: Vec<(Resources, f64)> = Vec::new();
        for (r, n) in pods {
            match merged.iter_mut().find(|(m, _)| m == r) {
                Some(e) => e.1 += *n as f64,
                None => merged.push((r.clone(), *n as f64)),
            }
        }
        self.solve(&merged).rate
    }

    /// The cheapest fractional mix of options holding `classes` (requests each counting
    /// one pod, and how many such pods), each pod whole.
    pub fn solve(&mut self, classes: &[(Resources, f64)]) -> Mix {
        self.stats.solves += 1;
        let mut infeasible = Vec::new();
        let mut rows: Vec<usize> = Vec::new();
        for (k, (q, n)) in classes.iter().enumerate() {
            if *n <= 0.0 {
                continue;
            }
            if self.offers.iter().any(|o| q.fits_in(&o.room)) {
                rows.push(k);
            } else {
                infeasible.push(k);
            }
        }
        // A canonical row order, so that equal class sets share their cache entry.
        rows.sort_by(|&a, &b| cmp_resources(&classes[a].0, &classes[b].0));
        if rows.is_empty() {
            return Mix {
                infeasible,
                duals: vec![0.0; classes.len()],
                ..Mix::default()
            };
        }
        let key: Vec<Resources> = rows.iter().map(|&k| classes[k].0.clone()).collect();
        let demand: Vec<f64> = rows.iter().map(|&k| classes[k].1).collect();
        let basis = match self.cached(&key, &demand) {
            Some(b) => {
                self.stats.cache_hits += 1;
                b
            }
            None => {
                let problem = Problem::new(self, &key);
                let (b, pivots) = problem.optimise(&demand);
                self.stats.pivots += pivots as u64;
                let entry = self.cache.entry(key).or_default();
                if entry.len() >= CACHE_PER_KEY {
                    entry.remove(0);
                }
                entry.push(b.clone());
                b
            }
        };
        let rate = dot(&basis.duals, &demand).max(0.0);
        let x = mat_vec(&basis.inv, &demand);
        let mut parts = Vec::new();
        for (col, &nodes) in basis.cols.iter().zip(&x) {
            let Some(o) = col.offer else { continue };
            if nodes <= TOL {
                continue;
            }
            let mut pods = vec![0.0; classes.len()];
            for (row, &k) in rows.iter().enumerate() {
                pods[k] = col.pods[row];
            }
            parts.push(MixPart {
                option: self.offers[o].source,
                nodes,
                pods,
            });
        }
        let mut duals = vec![0.0; classes.len()];
        for (row, &k) in rows.iter().enumerate() {
            duals[k] = basis.duals[row];
        }
        Mix {
            rate,
            parts,
            infeasible,
            duals,
        }
    }

    /// A cached optimal basis that stays primal feasible for `demand`, moved to the back.
    fn cached(&mut self, key: &[Resources], demand: &[f64]) -> Option<Basis> {
        let entry = self.cache.get_mut(key)?;
        let scale = demand.iter().fold(1.0f64, |m, d| m.max(d.abs()));
        let i = entry
            .iter()
            .rposition(|b| mat_vec(&b.inv, demand).iter().all(|&x| x >= -1e-9 * scale))?;
        let b = entry.remove(i);
        entry.push(b.clone());
        Some(b)
    }
}

/// A pod's class in the bounds: its requests as they count them (cpu, memory, extended
/// resources and the pod itself; ephemeral storage is left out, as the spec says).
pub fn bound_class(requests: &Resources) -> Resources {
    Resources {
        ephemeral: 0,
        ..requests.clone()
    }
}

/// Orders request vectors (a total order for canonical class keys).
pub(crate) fn cmp_resources(a: &Resources, b: &Resources) -> std::cmp::Ordering {
    (a.cpu_milli, a.memory, a.ephemeral, a.pods, &a.extended).cmp(&(
        b.cpu_milli,
        b.memory,
        b.ephemeral,
        b.pods,
        &b.extended,
    ))
}

/// One solve's classes in scaled units, and which offers each may use.
struct Problem<'b> {
    bound: &'b ShapeBound,
    /// Per row (class), its scaled request vector.
    q: Vec<Vec<f64>>,
    /// Per offer, the rows whose pods fit it alone.
    fits: Vec<Vec<usize>>,
}

impl<'b> Problem<'b> {
    fn new(bound: &'b ShapeBound, classes: &[Resources]) -> Self {
        let q = classes.iter().map(|r| bound.vector(r)).collect();
        let fits = bound
            .offers
            .iter()
            .map(|o| {
                (0..classes.len())
                    .filter(|&k| classes[k].fits_in(&o.room))
                    .collect()
            })
            .collect();
        Problem { bound, q, fits }
    }

    fn rows(&self) -> usize {
        self.q.len()
    }

    /// Pods of the row's class that one node of `offer` holds (fractional, or whole
    /// under `Counts::Whole`; at least one, as the class fits the offer alone).
    fn capacity(&self, offer: usize, row: usize) -> f64 {
        let n = room_for(&self.q[row], &self.bound.offers[offer].a);
        match self.bound.counts {
            Counts::Fractional => n,
            Counts::Whole => whole(n).max(1.0),
        }
    }

    /// The start: each class alone on the offer cheapest per pod of it.
    fn start(&self, demand: &[f64]) -> (Vec<Column>, Vec<f64>, Vec<f64>) {
        let k = self.rows();
        let mut cols = Vec::with_capacity(k);
        let mut inv = vec![0.0; k * k];
        let mut x = vec![0.0; k];
        for row in 0..k {
            let (offer, per_node) = (0..self.bound.offers.len())
                .filter(|&o| self.fits[o].contains(&row))
                .map(|o| (o, self.capacity(o, row)))
                .min_by(|a, b| {
                    let pa = self.bound.offers[a.0].price / a.1;
                    let pb = self.bound.offers[b.0].price / b.1;
                    pa.total_cmp(&pb).then(a.0.cmp(&b.0))
                })
                .expect("rows hold only classes some offer fits");
            let mut pods = vec![0.0; k];
            pods[row] = per_node;
            cols.push(Column {
                offer: Some(offer),
                pods,
            });
            inv[row * k + row] = 1.0 / per_node;
            x[row] = demand[row] / per_node;
        }
        (cols, inv, x)
    }

    fn cost(&self, col: &Column) -> f64 {
        col.offer.map_or(0.0, |o| self.bound.offers[o].price)
    }

    /// Runs the simplex to optimality from the start basis.
    fn optimise(&self, demand: &[f64]) -> (Basis, usize) {
        let k = self.rows();
        let (mut cols, mut inv, mut x) = self.start(demand);
        let mut pivots = 0;
        loop {
            let duals = self.duals(&cols, &inv);
            let entering = if pivots < MAX_PIVOTS {
                self.entering(&duals)
            } else {
                None
            };
            let Some(col) = entering else {
                let theta = self.infeasibility(&duals);
                let duals = duals.iter().map(|d| d.max(0.0) / theta).collect();
                return (Basis { cols, inv, duals }, pivots);
            };
            let d = mat_vec(&inv, &col.pods);
            // Ratio test; ties to the lowest row, which with the entering rule below is
            // enough on these small programmes (and MAX_PIVOTS bounds the rest).
            let leave = (0..k)
                .filter(|&i| d[i] > TOL)
                .min_by(|&a, &b| (x[a] / d[a]).total_cmp(&(x[b] / d[b])).then(a.cmp(&b)));
            let Some(r) = leave else {
                // Unbounded direction: only a surplus column could give it, and a
                // surplus enters only with a negative dual; stop with the dual bound.
                pivots = MAX_PIVOTS;
                continue;
            };
            pivot(&mut inv, &mut x, &d, r, k);
            cols[r] = col;
            pivots += 1;
        }
    }

    /// `pi = c_B B^-1`.
    fn duals(&self, cols: &[Column], inv: &[f64]) -> Vec<f64> {
        let k = self.rows();
        let mut pi = vec![0.0; k];
        for (j, col) in cols.iter().enumerate() {
            let c = self.cost(col);
            if c != 0.0 {
                for (i, p) in pi.iter_mut().enumerate() {
                    *p += c * inv[j * k + i];
                }
            }
        }
        pi
    }

    /// The column with the most negative reduced cost relative to its price, if any.
    fn entering(&self, duals: &[f64]) -> Option<Column> {
        let k = self.rows();
        if let Some(row) = (0..k).find(|&i| duals[i] < -TOL) {
            let mut pods = vec![0.0; k];
            pods[row] = -1.0;
            return Some(Column { offer: None, pods });
        }
        // Per resource that every class with a positive dual requests, the most any of
        // them pays per unit of it: a node's patterns are worth at most its room in that
        // resource at that rate (a cheap filter that spares most offers their pricing
        // programme; pods count 1 each, so there is always such a resource).
        let dims = self.bound.dims();
        let mut rate = vec![0.0f64; dims];
        let mut covers = vec![true; dims];
        for (row, q) in self.q.iter().enumerate() {
            if duals[row] <= TOL {
                continue;
            }
            for d in 0..dims {
                if q[d] > 0.0 {
                    rate[d] = rate[d].max(duals[row] / q[d]);
                } else {
                    covers[d] = false;
                }
            }
        }
        let mut best: Option<(f64, Column)> = None;
        let mut whole_candidates: Vec<(f64, usize, Vec<f64>)> = Vec::new();
        for o in 0..self.bound.offers.len() {
            let price = self.bound.offers[o].price;
            let a = &self.bound.offers[o].a;
            let ceiling = (0..dims)
                .filter(|&d| covers[d] && rate[d] > 0.0)
                .map(|d| a[d] * rate[d])
                .fold(f64::INFINITY, f64::min);
            if ceiling <= price * (1.0 + 1e-9) + TOL {
                continue;
            }
            let (value, pods) = self.price_out_fractional(o, duals);
            if !prices_in(value, price) {
                continue;
            }
            let gain = value / price.max(TOL);
            if self.bound.counts == Counts::Whole {
                whole_candidates.push((gain, o, pods));
            } else if best.as_ref().is_none_or(|(g, _)| gain > *g) {
                best = Some((
                    gain,
                    Column {
                        offer: Some(o),
                        pods,
                    },
                ));
            }
        }
        // A whole pattern is worth at most the fractional one: offers are tried best
        // fractional gain first, and the rest are dropped once none of them can beat
        // the best whole pattern found (most offers never run the knapsack).
        whole_candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (ceiling, o, frac) in whole_candidates {
            if best.as_ref().is_some_and(|(g, _)| ceiling <= *g) {
                break;
            }
            let price = self.bound.offers[o].price;
            let (value, pods) = self.price_out_whole(o, duals, &frac);
            let gain = value / price.max(TOL);
            if prices_in(value, price) && best.as_ref().is_none_or(|(g, _)| gain > *g) {
                best = Some((
                    gain,
                    Column {
                        offer: Some(o),
                        pods,
                    },
                ));
            }
        }
        best.map(|(_, c)| c)
    }

    /// `theta = max(1, max_o value_o(pi) / price_o)`: `pi / theta` is dual feasible.
    fn infeasibility(&self, duals: &[f64]) -> f64 {
        let duals: Vec<f64> = duals.iter().map(|d| d.max(0.0)).collect();
        (0..self.bound.offers.len())
            .map(|o| self.price_out_fractional(o, &duals).0 / self.bound.offers[o].price.max(TOL))
            .fold(1.0, f64::max)
    }

    /// The pricing programme of `offer`, `max pi . c` over its fractional patterns, by
    /// a dense tableau simplex (one row per resource the candidate classes request).
    /// Under `Counts::Whole` it is the ceiling of the whole patterns' value, and what
    /// `theta` is taken from: `pi / theta` is then feasible for either programme.
    fn price_out_fractional(&self, offer: usize, duals: &[f64]) -> (f64, Vec<f64>) {
        let k = self.rows();
        let a = &self.bound.offers[offer].a;
        let vars: Vec<usize> = self.fits[offer]
            .iter()
            .copied()
            .filter(|&r| duals[r] > TOL)
            .collect();
        let mut pods = vec![0.0; k];
        if vars.is_empty() {
            return (0.0, pods);
        }
        let dims: Vec<usize> = (0..a.len())
            .filter(|&d| vars.iter().any(|&r| self.q[r][d] > 0.0))
            .collect();
        let (m, n) = (dims.len(), vars.len());
        // Tableau rows: m constraints over n variables and m slacks, then the rhs.
        let width = n + m + 1;
        let mut t = vec![0.0; m * width];
        for (i, &d) in dims.iter().enumerate() {
            for (j, &r) in vars.iter().enumerate() {
                t[i * width + j] = self.q[r][d];
            }
            t[i * width + n + i] = 1.0;
            t[i * width + n + m] = a[d];
        }
        let mut reduced: Vec<f64> = vars.iter().map(|&r| -duals[r]).collect();
        reduced.resize(n + m, 0.0);
        let mut basic: Vec<usize> = (n..n + m).collect();
        let mut value = 0.0;
        for _ in 0..MAX_PRICING_PIVOTS {
            // Bland's rule: the first improving column, then the lowest basic index.
            let Some(e) = (0..n + m).find(|&j| reduced[j] < -TOL) else {
                break;
            };
            let leave = (0..m).filter(|&i| t[i * width + e] > TOL).min_by(|&x, &y| {
                let rx = t[x * width + n + m] / t[x * width + e];
                let ry = t[y * width + n + m] / t[y * width + e];
                rx.total_cmp(&ry).then(basic[x].cmp(&basic[y]))
            });
            let Some(r) = leave else { break };
            let p = t[r * width + e];
            for v in &mut t[r * width..(r + 1) * width] {
                *v /= p;
            }
            for i in (0..m).filter(|&i| i != r) {
                let f = t[i * width + e];
                if f != 0.0 {
                    for j in 0..width {
                        t[i * width + j] -= f * t[r * width + j];
                    }
                }
            }
            let f = reduced[e];
            for j in 0..n + m {
                reduced[j] -= f * t[r * width + j];
            }
            value -= f * t[r * width + n + m];
            basic[r] = e;
        }
        for (i, &b) in basic.iter().enumerate() {
            if b < n {
                pods[vars[b]] = t[i * width + n + m].max(0.0);
            }
        }
        (value.max(0.0), pods)
    }
}

impl Problem<'_> {
    /// Whole patterns: the fractional optimum `frac` rounded down and topped up, most
    /// valuable per share of the node first; on nodes that hold few pods (where that
    /// rounding can lose a large part of the node) improved by a depth-first branch and
    /// bound over the counts of each class, pruned by a per-resource ceiling.
    fn price_out_whole(&self, offer: usize, duals: &[f64], frac: &[f64]) -> (f64, Vec<f64>) {
        let a = &self.bound.offers[offer].a;
        let mut vars: Vec<usize> = self.fits[offer]
            .iter()
            .copied()
            .filter(|&r| duals[r] > TOL)
            .collect();
        let mut pods = vec![0.0; self.rows()];
        if vars.is_empty() {
            return (0.0, pods);
        }
        let share = |r: usize| {
            duals[r]
                / self.q[r]
                    .iter()
                    .zip(a)
                    .map(|(q, a)| q / a)
                    .fold(0.0, f64::max)
        };
        vars.sort_by(|&x, &y| share(y).total_cmp(&share(x)).then(x.cmp(&y)));
        let mut search = Knapsack::new(&vars, &self.q, duals, a);
        search.round_down(frac);
        let most = vars
            .iter()
            .map(|&r| whole(room_for(&self.q[r], a)))
            .fold(0.0, f64::max);
        if most <= SMALL_NODE_PODS {
            let mut room = a.clone();
            search.descend(0, &mut room, 0.0);
        }
        for (i, &r) in vars.iter().enumerate() {
            pods[r] = search.best[i] as f64;
        }
        (search.best_value, pods)
    }
}

/// The integer knapsack of one offer's whole-pod pricing programme.
struct Knapsack<'p> {
    vars: &'p [usize],
    a: &'p [f64],
    q: &'p [Vec<f64>],
    duals: &'p [f64],
    /// `ceiling[i][d]`: the most any class from `vars[i..]` pays per unit of resource
    /// `d` (infinite where one of them does not request it: that resource bounds nothing).
    ceiling: Vec<Vec<f64>>,
    counts: Vec<u32>,
    best: Vec<u32>,
    best_value: f64,
    nodes: usize,
}

impl<'p> Knapsack<'p> {
    fn new(vars: &'p [usize], q: &'p [Vec<f64>], duals: &'p [f64], a: &'p [f64]) -> Self {
        let mut ceiling = vec![vec![0.0f64; a.len()]; vars.len() + 1];
        for i in (0..vars.len()).rev() {
            let r = vars[i];
            for d in 0..a.len() {
                let rate = if q[r][d] > 0.0 {
                    duals[r] / q[r][d]
                } else {
                    f64::INFINITY
                };
                ceiling[i][d] = ceiling[i + 1][d].max(rate);
            }
        }
        Knapsack {
            vars,
            a,
            q,
            duals,
            ceiling,
            counts: vec![0; vars.len()],
            best: vec![0; vars.len()],
            best_value: 0.0,
            nodes: 0,
        }
    }

    /// Starts from `frac` (fractional counts by row) rounded down, then tops each class
    /// up in order while it fits: a whole pattern as good as the rounding gives.
    fn round_down(&mut self, frac: &[f64]) {
        let mut room: Vec<f64> = self.a.to_vec();
        let mut value = 0.0;
        for pass in 0..2 {
            for (i, &r) in self.vars.iter().enumerate() {
                let q = &self.q[r];
                let fits = whole(room_for(q, &room));
                let n = if pass == 0 {
                    whole(frac[r]).min(fits)
                } else {
                    fits
                };
                for (x, qd) in room.iter_mut().zip(q) {
                    *x -= qd * n;
                }
                self.best[i] += n as u32;
                value += self.duals[r] * n;
            }
        }
        self.best_value = value;
    }

    fn descend(&mut self, i: usize, room: &mut [f64], value: f64) {
        self.nodes += 1;
        if value > self.best_value + TOL {
            self.best_value = value;
            self.best.clone_from(&self.counts);
        }
        if i == self.vars.len() || self.nodes > MAX_KNAPSACK_NODES {
            return;
        }
        let ceiling = room
            .iter()
            .zip(&self.ceiling[i])
            .map(|(r, c)| r * c)
            .fold(f64::INFINITY, f64::min);
        if value + ceiling <= self.best_value + TOL {
            return;
        }
        let r = self.vars[i];
        let q = &self.q[r];
        let most = whole(room_for(q, room)) as u32;
        for c in (0..=most).rev() {
            for (x, qd) in room.iter_mut().zip(q) {
                *x -= qd * c as f64;
            }
            self.counts[i] = c;
            self.descend(i + 1, room, value + self.duals[r] * c as f64);
            for (x, qd) in room.iter_mut().zip(q) {
                *x += qd * c as f64;
            }
            if self.nodes > MAX_KNAPSACK_NODES {
                break;
            }
        }
        self.counts[i] = 0;
    }
}

/// A pattern worth `value` at the duals improves on its offer's `price`.
fn prices_in(value: f64, price: f64) -> bool {
    value > price * (1.0 + 1e-9) + TOL
}

/// How many of `q` fit `room` (fractional; infinite when `q` requests nothing).
fn room_for(q: &[f64], room: &[f64]) -> f64 {
    q.iter()
        .zip(room)
        .filter(|(q, _)| **q > 0.0)
        .map(|(q, a)| a / q)
        .fold(f64::INFINITY, f64::min)
}

/// `n` rounded down, forgiving the rounding error of the scaled units.
fn whole(n: f64) -> f64 {
    (n * (1.0 + 1e-9) + 1e-9).floor().max(0.0)
}

/// Replaces basis row `r` by the entering column with `d = B^-1 a`.
fn pivot(inv: &mut [f64], x: &mut [f64], d: &[f64], r: usize, k: usize) {
    let dr = d[r];
    for j in 0..k {
        inv[r * k + j] /= dr;
    }
    x[r] /= dr;
    for i in (0..k).filter(|&i| i != r) {
        let f = d[i];
        if f != 0.0 {
            for j in 0..k {
                inv[i * k + j] -= f * inv[r * k + j];
            }
            x[i] -= f * x[r];
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn mat_vec(a: &[f64], v: &[f64]) -> Vec<f64> {
    let k = v.len();
    (0..k).map(|i| dot(&a[i * k..(i + 1) * k], v)).collect()
}

#[cfg(test)]
pub(crate) mod tests;
