//! The fluid lower bound on hourly cost (docs: `cost_usd.lower_bound` in the simulation
//! report spec).
//!
//! For a demand vector `D` it solves the linear programme
//!
//! ```text
//!     minimise    sum_o x_o * price_o
//!     subject to  sum_o x_o * alloc_{o,r} >= D_r   for every resource r with D_r > 0
//!                 x_o >= 0   (fractional)
//! ```
//!
//! Method: a dual simplex on the standard form `[A | -I] (x, s) = D` with an explicit
//! `m x m` basis inverse, where `m` is the number of resources with positive demand
//! (cpu, memory, ephemeral-storage, pods and every extended resource). Prices are
//! non-negative, so the all-surplus basis is dual feasible: no phase 1 is needed, and
//! every basis the method ever visits stays dual feasible *whatever the demand is*. So
//! optimal bases are cached per set of active resources; for a new `D` a cached basis `B`
//! is optimal as soon as `B^-1 D >= 0`, which costs `O(m^2)` to check. Only when no cached
//! basis fits does the dual simplex run, warm-started from the most recently used one.
//!
//! Pure: no I/O, no clock.

use super::resources::{ResourceName, Resources};

/// Fixed resource dimensions; extended resources follow.
const CPU: usize = 0;
const MEMORY: usize = 1;
const EPHEMERAL: usize = 2;
const PODS: usize = 3;
pub(crate) const FIXED_DIMS: usize = 4;

/// Scale factors to well-conditioned units: cpu in cores, memory and storage in GiB,
/// pods and extended resources as counts (shared with `core::shape_bound`).
pub(crate) const SCALE: [f64; FIXED_DIMS] = [
    1e-3,
    1.0 / (1u64 << 30) as f64,
    1.0 / (1u64 << 30) as f64,
    1.0,
];

/// Bases kept per set of active resources.
const CACHE_PER_KEY: usize = 32;
/// After this many pivots in one solve, switch to Bland's rule (guaranteed termination).
const BLAND_AFTER: usize = 64;
/// Hard stop; the dual objective of the current (dual-feasible) basis is still a valid
/// lower bound, so that is what is returned then.
const MAX_PIVOTS: usize = 20_000;

const FEAS_TOL: f64 = 1e-9;
const PIVOT_TOL: f64 = 1e-9;

/// A dual-feasible basis for one set of active rows.
#[derive(Clone, Debug)]
struct Basis {
    /// Column ids: `< n` an option, `n + k` the surplus of local row `k`.
    cols: Vec<usize>,
    /// Row-major `m x m` inverse of the basis matrix.
    binv: Vec<f64>,
    /// Prices of the basic columns.
    cb: Vec<f64>,
}

#[derive(Clone, Debug)]
struct CacheEntry {
    /// Active global dimensions, ascending.
    rows: Vec<usize>,
    /// Most recently used first.
    bases: Vec<Basis>,
}

/// Counters, for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LowerBoundStats {
    /// Calls answered by a cached basis.
    pub cache_hits: u64,
    /// Calls that ran the simplex.
    pub solves: u64,
    /// Total simplex pivots.
    pub pivots: u64,
}

#[derive(Clone, Debug)]
pub struct LowerBound {
    /// Number of resource dimensions (4 fixed + extended).
    dims: usize,
    /// Names of the extended dimensions, in dimension order `FIXED_DIMS..`.
    extended: Vec<ResourceName>,
    /// Kept options: scaled allocatable, row-major `n x dims`.
    alloc: Vec<f64>,
    /// Max-norm of each kept option's scaled allocatable.
    norm: Vec<f64>,
    prices: Vec<f64>,
    /// Per dimension: does any kept option provide it?
    provided: Vec<bool>,
    cache: Vec<CacheEntry>,
    stats: LowerBoundStats,
    // Scratch buffers for `hourly_rate`, kept to avoid allocating per call.
    rows: Vec<usize>,
    demand: Vec<f64>,
}

impl LowerBound {
    /// options: (hourly price, allocatable) for every offering the node pools allow.
    ///
    /// Options with a non-finite or negative price, or nothing allocatable, are ignored;
    /// negative allocatable components count as 0. Duplicates and dominated options (no
    /// more of any resource than another option that costs no less) are dropped.
    pub fn new(options: Vec<(f64, Resources)>) -> Self {
        let mut extended: Vec<ResourceName> = Vec::new();
        for (_, r) in &options {
            for (name, _) in &r.extended {
                if let Err(i) = extended.binary_search(name) {
                    extended.insert(i, name.clone());
                }
            }
        }
        let dims = FIXED_DIMS + extended.len();

        // Integer vectors for exact duplicate/dominance tests.
        let mut cands: Vec<(f64, Vec<i64>)> = options
            .iter()
            .filter(|(p, _)| p.is_finite() && *p >= 0.0)
            .map(|(p, r)| {
                let mut v = vec![0i64; dims];
                v[CPU] = r.cpu_milli;
                v[MEMORY] = r.memory;
                v[EPHEMERAL] = r.ephemeral;
                v[PODS] = r.pods;
                for (name, q) in &r.extended {
                    let i = extended.binary_search(name).expect("collected above");
                    v[FIXED_DIMS + i] = *q;
                }
                for x in &mut v {
                    *x = (*x).max(0);
                }
                (*p, v)
            })
            .filter(|(_, v)| v.iter().any(|&x| x > 0))
            .collect();
        // Cheapest first; among equal prices, larger vectors first so that duplicates and
        // dominated equal-price options come after what dominates them.
        cands.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(&a.1)));
        let mut kept: Vec<(f64, Vec<i64>)> = Vec::new();
        for (p, v) in cands {
            let dominated = kept
                .iter()
                .any(|(_, k)| k.iter().zip(&v).all(|(a, b)| a >= b));
            if !dominated {
                kept.push((p, v));
            }
        }

        let n = kept.len();
        let mut alloc = Vec::with_capacity(n * dims);
        let mut norm = Vec::with_capacity(n);
        let mut prices = Vec::with_capacity(n);
        let mut provided = vec![false; dims];
        for (p, v) in &kept {
            let mut mx = 0.0f64;
            for (d, &q) in v.iter().enumerate() {
                let s = q as f64 * scale(d);
                mx = mx.max(s);
                provided[d] |= q > 0;
                alloc.push(s);
            }
            norm.push(mx);
            prices.push(*p);
        }
        LowerBound {
            dims,
            extended,
            alloc,
            norm,
            prices,
            provided,
            cache: Vec::new(),
            stats: LowerBoundStats::default(),
            rows: Vec::new(),
            demand: Vec::new(),
        }
    }

    /// Options left after dropping duplicates and dominated ones.
    pub fn kept_options(&self) -> usize {
        self.prices.len()
    }

    pub fn stats(&self) -> LowerBoundStats {
        self.stats
    }

    /// Optimal hourly rate for this demand; f64::INFINITY if infeasible (some resource no
    /// option provides); 0 for zero demand. Every positive component of `demand` counts,
    /// ephemeral-storage included; zero or negative components are ignored.
    pub fn hourly_rate(&mut self, demand: &Resources) -> f64 {
        let mut rows = std::mem::take(&mut self.rows);
        let mut d = std::mem::take(&mut self.demand);
        rows.clear();
        d.clear();
        let mut feasible = true;
        let fixed = [
            demand.cpu_milli,
            demand.memory,
            demand.ephemeral,
            demand.pods,
        ];
        for (dim, &q) in fixed.iter().enumerate() {
            if q > 0 {
                rows.push(dim);
                d.push(q as f64 * scale(dim));
            }
        }
        for (name, q) in &demand.extended {
            if *q <= 0 {
                continue;
            }
            match self.extended.binary_search(name) {
                Ok(i) => {
                    rows.push(FIXED_DIMS + i);
                    d.push(*q as f64);
                }
                Err(_) => feasible = false,
            }
        }
        feasible &= rows.iter().all(|&r| self.provided[r]);
        let rate = if !feasible {
            f64::INFINITY
        } else if rows.is_empty() {
            0.0
        } else {
            self.solve(&rows, &d)
        };
        self.rows = rows;
        self.demand = d;
        rate
    }

    fn solve(&mut self, rows: &[usize], d: &[f64]) -> f64 {
        let m = rows.len();
        let key = match self.cache.iter().position(|e| e.rows == rows) {
            Some(k) => k,
            None => {
                self.cache.push(CacheEntry {
                    rows: rows.to_vec(),
                    bases: Vec::new(),
                });
                self.cache.len() - 1
            }
        };

        // Cached bases: optimal iff primal feasible for this demand.
        let mut x = vec![0.0; m];
        for bi in 0..self.cache[key].bases.len() {
            let b = &self.cache[key].bases[bi];
            mat_vec(&b.binv, d, &mut x);
            if primal_feasible(&x) {
                let cost = dot(&b.cb, &x).max(0.0);
                self.cache[key].bases[..=bi].rotate_right(1);
                self.stats.cache_hits += 1;
                return cost;
            }
        }

        self.stats.solves += 1;
        let n = self.prices.len();
        let start = match self.cache[key].bases.first() {
            Some(b) => b.cols.clone(),
            None => (0..m).map(|k| n + k).collect(),
        };
        let (basis, cost) = self.dual_simplex(rows, d, start);
        let bases = &mut self.cache[key].bases;
        bases.insert(0, basis);
        bases.truncate(CACHE_PER_KEY);
        cost
    }

    /// Column `j` restricted to the active rows, into `out`.
    fn column(&self, rows: &[usize], j: usize, out: &mut [f64]) {
        let n = self.prices.len();
        if j < n {
            let a = &self.alloc[j * self.dims..(j + 1) * self.dims];
            for (o, &r) in out.iter_mut().zip(rows) {
                *o = a[r];
            }
        } else {
            out.fill(0.0);
            out[j - n] = -1.0;
        }
    }

    fn price(&self, j: usize) -> f64 {
        self.prices.get(j).copied().unwrap_or(0.0)
    }

    fn make_basis(&self, rows: &[usize], cols: Vec<usize>) -> Option<Basis> {
        let m = rows.len();
        let mut b = vec![0.0; m * m];
        let mut col = vec![0.0; m];
        for (k, &j) in cols.iter().enumerate() {
            self.column(rows, j, &mut col);
            for i in 0..m {
                b[i * m + k] = col[i];
            }
        }
        let binv = invert(&b, m)?;
        let cb = cols.iter().map(|&j| self.price(j)).collect();
        Some(Basis { cols, binv, cb })
    }

    /// Dual simplex from a dual-feasible starting basis. Returns the final basis and the
    /// optimal cost.
    fn dual_simplex(&mut self, rows: &[usize], d: &[f64], start: Vec<usize>) -> (Basis, f64) {
        let m = rows.len();
        let n = self.prices.len();
        let slack = || (0..m).map(|k| n + k).collect::<Vec<_>>();
        let mut basis = self
            .make_basis(rows, start)
            .unwrap_or_else(|| self.make_basis(rows, slack()).expect("-I is invertible"));
        let mut x = vec![0.0; m];
        let mut y = vec![0.0; m];
        let mut in_basis = vec![false; n + m];
        for pivots in 0.. {
            mat_vec(&basis.binv, d, &mut x);
            // y = cb^T B^-1: the dual prices of the active resources.
            for (r, yr) in y.iter_mut().enumerate() {
                *yr = (0..m).map(|i| basis.cb[i] * basis.binv[i * m + r]).sum();
            }
            let tol = FEAS_TOL * x.iter().fold(1.0f64, |a, v| a.max(v.abs()));
            let bland = pivots >= BLAND_AFTER;
            // Leaving row: most infeasible, or (Bland) the one with the smallest column id.
            let mut leave: Option<usize> = None;
            for i in 0..m {
                if x[i] >= -tol {
                    continue;
                }
                leave = match leave {
                    None => Some(i),
                    Some(p) if !bland && x[i] < x[p] => Some(i),
                    Some(p) if bland && basis.cols[i] < basis.cols[p] => Some(i),
                    keep => keep,
                };
            }
            let Some(p) = leave else {
                let cost = dot(&basis.cb, &x).max(0.0);
                return (basis, cost);
            };
            if pivots >= MAX_PIVOTS {
                // Give up: y is dual feasible, so y.D is still a lower bound on the optimum.
                let cost = dot(&y, d).max(0.0);
                return (basis, cost);
            }

            // Ratio test over nonbasic columns with a negative entry in row p of B^-1 A.
            let rho = &basis.binv[p * m..(p + 1) * m];
            let rho_norm = rho.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            in_basis.fill(false);
            for &j in &basis.cols {
                in_basis[j] = true;
            }
            let mut best: Option<(usize, f64, f64)> = None; // (col, ratio, |alpha|)
            for (j, _) in in_basis.iter().enumerate().filter(|(_, &b)| !b) {
                let (alpha, reduced, col_norm) = if j < n {
                    let a = &self.alloc[j * self.dims..(j + 1) * self.dims];
                    let mut alpha = 0.0;
                    let mut ya = 0.0;
                    for (k, &r) in rows.iter().enumerate() {
                        alpha += rho[k] * a[r];
                        ya += y[k] * a[r];
                    }
                    (alpha, self.prices[j] - ya, self.norm[j])
                } else {
                    let k = j - n;
                    (-rho[k], y[k], 1.0)
                };
                if alpha >= -PIVOT_TOL * rho_norm * col_norm.max(1e-12) {
                    continue;
                }
                let ratio = reduced.max(0.0) / -alpha;
                let better = match best {
                    None => true,
                    Some((bj, br, ba)) => {
                        if bland {
                            ratio < br || (ratio == br && j < bj)
                        } else {
                            ratio < br || (ratio == br && -alpha > ba)
                        }
                    }
                };
                if better {
                    best = Some((j, ratio, -alpha));
                }
            }
            let Some((q, _, _)) = best else {
                // Primal infeasible (cannot happen once every active resource is provided
                // by some option, short of numerical trouble): report the dual bound.
                let cost = dot(&y, d).max(0.0);
                return (basis, cost);
            };
            self.stats.pivots += 1;
            let mut cols = basis.cols.clone();
            cols[p] = q;
            match self.make_basis(rows, cols) {
                Some(b) => basis = b,
                None => {
                    // Numerically singular: restart from the all-surplus basis.
                    basis = self.make_basis(rows, slack()).expect("-I is invertible");
                }
            }
        }
        unreachable!("the pivot loop returns")
    }
}

fn scale(dim: usize) -> f64 {
    SCALE.get(dim).copied().unwrap_or(1.0)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn mat_vec(a: &[f64], v: &[f64], out: &mut [f64]) {
    let m = v.len();
    for (i, o) in out.iter_mut().enumerate() {
        *o = dot(&a[i * m..(i + 1) * m], v);
    }
}

fn primal_feasible(x: &[f64]) -> bool {
    let tol = FEAS_TOL * x.iter().fold(1.0f64, |a, v| a.max(v.abs()));
    x.iter().all(|&v| v >= -tol)
}

/// Inverse of a row-major `m x m` matrix by Gauss-Jordan with partial pivoting; `None`
/// if (numerically) singular.
fn invert(a: &[f64], m: usize) -> Option<Vec<f64>> {
    let w = 2 * m;
    let mut t = vec![0.0; m * w];
    for i in 0..m {
        t[i * w..i * w + m].copy_from_slice(&a[i * m..(i + 1) * m]);
        t[i * w + m + i] = 1.0;
    }
    let scale = a.iter().fold(0.0f64, |acc, v| acc.max(v.abs())).max(1e-300);
    for c in 0..m {
        let piv = (c..m).max_by(|&i, &j| t[i * w + c].abs().total_cmp(&t[j * w + c].abs()))?;
        if t[piv * w + c].abs() <= 1e-13 * scale {
            return None;
        }
        if piv != c {
            for k in 0..w {
                t.swap(c * w + k, piv * w + k);
            }
        }
        let inv = 1.0 / t[c * w + c];
        for k in 0..w {
            t[c * w + k] *= inv;
        }
        for i in 0..m {
            if i == c {
                continue;
            }
            let f = t[i * w + c];
            if f != 0.0 {
                for k in 0..w {
                    t[i * w + k] -= f * t[c * w + k];
                }
            }
        }
    }
    let mut out = vec![0.0; m * m];
    for i in 0..m {
        out[i * m..(i + 1) * m].copy_from_slice(&t[i * w + m..(i + 1) * w]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::resources::GPU_NVIDIA;
    use crate::core::rng::Rng;

    const GIB: i64 = 1 << 30;

    fn res(cpu_milli: i64, mem_gib: i64, pods: i64, gpu: i64) -> Resources {
        let mut r = Resources::new(cpu_milli, mem_gib * GIB, pods);
        r.set_extended(GPU_NVIDIA, gpu);
        r
    }

    fn vector(r: &Resources, names: &[String]) -> Vec<f64> {
        let mut v = vec![
            r.cpu_milli as f64,
            r.memory as f64,
            r.ephemeral as f64,
            r.pods as f64,
        ];
        v.extend(names.iter().map(|n| r.extended(n) as f64));
        v
    }

    /// Vertex enumeration of the standard form `[A | -I](x, s) = D`: the optimum of a
    /// feasible LP with non-negative costs is at a basic feasible solution.
    fn brute_force(options: &[(f64, Resources)], demand: &Resources) -> f64 {
        let mut names: Vec<String> = options
            .iter()
            .flat_map(|(_, r)| r.extended_names().map(str::to_string))
            .chain(demand.extended_names().map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        let dv = vector(demand, &names);
        let rows: Vec<usize> = (0..dv.len()).filter(|&i| dv[i] > 0.0).collect();
        if rows.is_empty() {
            return 0.0;
        }
        let m = rows.len();
        // Row scaling (does not change the LP) keeps the elimination well-conditioned.
        let mut row_scale = vec![1.0f64; m];
        for (k, &r) in rows.iter().enumerate() {
            let mx = options
                .iter()
                .map(|(_, o)| vector(o, &names)[r])
                .fold(dv[r], f64::max);
            row_scale[k] = 1.0 / mx;
        }
        let n = options.len();
        let column = |j: usize| -> Vec<f64> {
            if j < n {
                let v = vector(&options[j].1, &names);
                rows.iter()
                    .enumerate()
                    .map(|(k, &r)| v[r].max(0.0) * row_scale[k])
                    .collect()
            } else {
                (0..m)
                    .map(|k| if k == j - n { -1.0 } else { 0.0 })
                    .collect()
            }
        };
        let d: Vec<f64> = rows
            .iter()
            .enumerate()
            .map(|(k, &r)| dv[r] * row_scale[k])
            .collect();
        let mut best = f64::INFINITY;
        let mut subset: Vec<usize> = (0..m).collect();
        loop {
            let mut b = vec![0.0; m * m];
            for (k, &j) in subset.iter().enumerate() {
                for (i, v) in column(j).into_iter().enumerate() {
                    b[i * m + k] = v;
                }
            }
            if let Some(binv) = invert(&b, m) {
                let mut x = vec![0.0; m];
                mat_vec(&binv, &d, &mut x);
                if x.iter().all(|&v| v >= -1e-9) {
                    let cost: f64 = subset
                        .iter()
                        .zip(&x)
                        .map(|(&j, &v)| if j < n { options[j].0 * v } else { 0.0 })
                        .sum();
                    best = best.min(cost);
                }
            }
            // Next m-subset of 0..n+m in lexicographic order.
            let total = n + m;
            let mut i = m;
            loop {
                if i == 0 {
                    return best;
                }
                i -= 1;
                if subset[i] < total - m + i {
                    break;
                }
            }
            subset[i] += 1;
            for k in i + 1..m {
                subset[k] = subset[k - 1] + 1;
            }
        }
    }

    fn random_options(rng: &mut Rng, n: usize, gpus: bool) -> Vec<(f64, Resources)> {
        (0..n)
            .map(|_| {
                let gpu = if gpus && rng.next_f64() < 0.4 {
                    1 + rng.below(8) as i64
                } else {
                    0
                };
                let mut r = res(
                    1000 * (1 + rng.below(16) as i64) - rng.below(200) as i64,
                    1 + rng.below(64) as i64,
                    4 + rng.below(120) as i64,
                    gpu,
                );
                if rng.next_f64() < 0.2 {
                    r.ephemeral = (1 + rng.below(100) as i64) * GIB;
                }
                (rng.range_f64(0.01, 5.0), r)
            })
            .collect()
    }

    fn random_demand(rng: &mut Rng, gpus: bool) -> Resources {
        let pick = |rng: &mut Rng, hi: usize| {
            if rng.next_f64() < 0.2 {
                0
            } else {
                rng.below(hi) as i64
            }
        };
        let mut d = Resources::new(
            pick(rng, 60_000),
            pick(rng, 300) * GIB + pick(rng, 1000) * (1 << 20),
            pick(rng, 400),
        );
        if gpus {
            d.set_extended(GPU_NVIDIA, pick(rng, 12));
        }
        if rng.next_f64() < 0.1 {
            d.ephemeral = pick(rng, 200) * GIB;
        }
        d
    }

    fn close(a: f64, b: f64) -> bool {
        if a.is_infinite() || b.is_infinite() {
            return a == b;
        }
        (a - b).abs() <= 1e-7 * a.abs().max(b.abs()).max(1e-6)
    }

    #[test]
    fn matches_brute_force_on_random_instances() {
        let mut rng = Rng::new(7);
        let mut finite = 0;
        for case in 0..600 {
            let gpus = case % 2 == 0;
            let n = 1 + rng.below(7);
            let options = random_options(&mut rng, n, gpus);
            let mut lb = LowerBound::new(options.clone());
            for _ in 0..4 {
                let d = random_demand(&mut rng, gpus);
                let got = lb.hourly_rate(&d);
                let want = brute_force(&options, &d);
                assert!(
                    close(got, want),
                    "case {case}: got {got}, brute force {want}\n{d}\n{options:?}"
                );
                finite += want.is_finite() as usize;
            }
        }
        assert!(finite > 1000, "too few feasible cases: {finite}");
    }

    #[test]
    fn one_resource_is_best_ratio_times_demand() {
        let options = vec![
            (0.10, res(2000, 8, 29, 0)),
            (0.17, res(4000, 8, 58, 0)), // best cpu ratio: 0.0425 per core
            (0.40, res(8000, 64, 58, 0)),
        ];
        let mut lb = LowerBound::new(options);
        let d = Resources::new(10_500, 0, 0);
        let want = 10.5 * 0.17 / 4.0;
        assert!(close(lb.hourly_rate(&d), want));
        // Memory only: 0.40 / 64 GiB beats 0.10 / 8.
        let d = Resources::new(0, 100 * GIB, 0);
        assert!(close(lb.hourly_rate(&d), 100.0 * 0.40 / 64.0));
    }

    #[test]
    fn infeasible_and_zero() {
        let mut lb = LowerBound::new(vec![
            (0.1, res(2000, 8, 29, 0)),
            (3.0, res(8000, 32, 58, 1)),
        ]);
        assert_eq!(lb.hourly_rate(&Resources::default()), 0.0);
        let mut d = Resources::new(1000, GIB, 1);
        d.set_extended("aws.amazon.com/neuron", 1);
        assert_eq!(lb.hourly_rate(&d), f64::INFINITY);
        let mut lb = LowerBound::new(vec![(0.1, res(2000, 8, 29, 0))]);
        assert_eq!(lb.hourly_rate(&res(1000, 1, 1, 1)), f64::INFINITY);
        let mut none = LowerBound::new(Vec::new());
        assert_eq!(none.hourly_rate(&Resources::new(1, 0, 0)), f64::INFINITY);
        assert_eq!(none.hourly_rate(&Resources::default()), 0.0);
    }

    #[test]
    fn drops_duplicates_and_dominated_options() {
        let a = res(2000, 8, 29, 0);
        let options = vec![
            (0.10, a.clone()),
            (0.10, a.clone()),
            (0.12, a.clone()),
            (0.03, a.clone()),            // the cheapest copy is kept
            (0.05, res(1000, 4, 29, 0)),  // dominated by the 0.03 copy
            (0.05, res(1000, 16, 29, 0)), // more memory: kept
            (f64::NAN, a.clone()),
            (0.01, Resources::default()),
        ];
        let lb = LowerBound::new(options);
        assert_eq!(lb.kept_options(), 2);
    }

    #[test]
    fn cached_bases_give_the_same_results_as_cold_solves() {
        let mut rng = Rng::new(42);
        let options = random_options(&mut rng, 20, true);
        let mut warm = LowerBound::new(options.clone());
        let mut d = res(20_000, 80, 100, 2);
        for step in 0..3000 {
            // A slowly changing demand, now and then dropping or adding a resource.
            d.cpu_milli = (d.cpu_milli + rng.below(2001) as i64 - 1000).max(0);
            d.memory = (d.memory + (rng.below(9) as i64 - 4) * GIB / 2).max(0);
            d.pods = (d.pods + rng.below(11) as i64 - 5).max(0);
            if step % 97 == 0 {
                let g = d.extended(GPU_NVIDIA);
                d.set_extended(GPU_NVIDIA, if g == 0 { 1 + rng.below(6) as i64 } else { 0 });
            }
            let w = warm.hourly_rate(&d);
            let c = LowerBound::new(options.clone()).hourly_rate(&d);
            assert!(close(w, c), "step {step}: warm {w} cold {c} for {d}");
            if step % 150 == 0 {
                assert!(close(w, brute_force(&options, &d)), "step {step}");
            }
        }
        let s = warm.stats();
        assert!(s.cache_hits > 1500, "{s:?}");
        assert_eq!(s.cache_hits + s.solves, 3000);
    }

    #[test]
    fn whole_catalog_replay_speed() {
        // The simulator's shape: every offering of the embedded catalog, slowly changing D.
        let catalog = crate::catalog::load_embedded(&crate::catalog::CatalogOptions::default())
            .expect("catalog");
        let options: Vec<(f64, Resources)> = catalog
            .types
            .iter()
            .flat_map(|t| {
                t.offerings
                    .iter()
                    .map(|o| (o.price_per_hour, t.allocatable.clone()))
            })
            .collect();
        let total = options.len();
        let start = std::time::Instant::now();
        let mut lb = LowerBound::new(options.clone());
        let build_ms = start.elapsed().as_secs_f64() * 1e3;
        let mut rng = Rng::new(3);
        let mut d = res(50_000, 200, 150, 0);
        let calls = 20_000;
        let start = std::time::Instant::now();
        let mut checks = Vec::new();
        for step in 0..calls {
            d.cpu_milli = (d.cpu_milli + rng.below(4001) as i64 - 2000).max(0);
            d.memory = (d.memory + (rng.below(17) as i64 - 8) * GIB / 2).max(0);
            d.pods = (d.pods + rng.below(21) as i64 - 10).max(0);
            if step % 1000 == 500 {
                d.set_extended(GPU_NVIDIA, 1 + rng.below(8) as i64);
            } else if step % 1000 == 700 {
                d.set_extended(GPU_NVIDIA, 0);
            }
            let r = lb.hourly_rate(&d);
            assert!(r.is_finite());
            if step % 500 == 0 {
                checks.push((d.clone(), r));
            }
        }
        let per_call_us = start.elapsed().as_secs_f64() * 1e6 / calls as f64;
        println!(
            "lower bound: {total} options -> {} kept in {build_ms:.1} ms; {per_call_us:.2} us per call; {:?}",
            lb.kept_options(),
            lb.stats()
        );
        for (d, r) in checks {
            let cold = LowerBound::new(options.clone()).hourly_rate(&d);
            assert!(close(r, cold), "{d}: warm {r} cold {cold}");
        }
    }
}
