use super::*;
use crate::core::lower_bound::LowerBound;
use crate::core::resources::GPU_NVIDIA;
use crate::core::rng::Rng;

const GIB: i64 = 1 << 30;

fn res(cpu_milli: i64, mem_gib: i64, pods: i64, gpu: i64) -> Resources {
    let mut r = Resources::new(cpu_milli, mem_gib * GIB, pods);
    r.set_extended(GPU_NVIDIA, gpu);
    r
}

fn random_options(rng: &mut Rng, n: usize) -> Vec<(f64, Resources)> {
    (0..n)
        .map(|_| {
            let gpu = if rng.next_f64() < 0.2 { 1 } else { 0 };
            let r = res(
                1000 * (1 + rng.below(8) as i64),
                1 + rng.below(32) as i64,
                2 + rng.below(6) as i64,
                gpu,
            );
            (rng.range_f64(0.05, 2.0), r)
        })
        .collect()
}

fn random_classes(rng: &mut Rng, k: usize, max_n: usize) -> Vec<(Resources, f64)> {
    (0..k)
        .map(|_| {
            let gpu = i64::from(rng.next_f64() < 0.1);
            (
                res(
                    250 * (1 + rng.below(12) as i64),
                    1 + rng.below(12) as i64,
                    1,
                    gpu,
                ),
                (1 + rng.below(max_n)) as f64,
            )
        })
        .collect()
}

/// A case small enough for `integer_optimum`: 1-4 options, 1-3 classes of up to
/// `max_n` pods.
/// Options (price, room) and classes (requests, pods).
type Case = (Vec<(f64, Resources)>, Vec<(Resources, f64)>);

fn small_case(rng: &mut Rng, max_n: usize) -> Case {
    let n = 1 + rng.below(4);
    let options = random_options(rng, n);
    let k = 1 + rng.below(3);
    (options, random_classes(rng, k, max_n))
}

/// The cheapest placement with whole nodes and whole pods, by exhaustive search: each
/// pod (in order) joins a node already opened or opens one of any option.
fn integer_optimum(options: &[(f64, Resources)], classes: &[(Resources, f64)]) -> f64 {
    let pods: Vec<(&Resources, usize)> = classes
        .iter()
        .flat_map(|(q, n)| std::iter::repeat_n((q, 0), *n as usize))
        .collect();
    integer_optimum_where(options, &pods, |_, _| true)
}

/// The cheapest placement with whole nodes and whole pods, by exhaustive search, each pod
/// (requests, group) only on an option `allowed(group, option)`; pods no allowed option
/// holds are left out (the bounds' feasible pods). Each pod (in order) joins a node
/// already opened or opens one of any option.
pub(crate) fn integer_optimum_where(
    options: &[(f64, Resources)],
    pods: &[(&Resources, usize)],
    allowed: impl Fn(usize, usize) -> bool,
) -> f64 {
    let pods: Vec<(&Resources, usize)> = pods
        .iter()
        .copied()
        .filter(|&(q, g)| (0..options.len()).any(|o| allowed(g, o) && q.fits_in(&options[o].1)))
        .collect();
    struct Search<'p, F> {
        pods: &'p [(&'p Resources, usize)],
        options: &'p [(f64, Resources)],
        allowed: F,
        open: Vec<(usize, Resources)>,
        best: f64,
    }
    impl<F: Fn(usize, usize) -> bool> Search<'_, F> {
        fn go(&mut self, i: usize, cost: f64) {
            if cost >= self.best {
                return;
            }
            let Some(&(pod, group)) = self.pods.get(i) else {
                self.best = cost;
                return;
            };
            for n in 0..self.open.len() {
                let o = self.open[n].0;
                let used = self.open[n].1.plus(pod);
                if (self.allowed)(group, o) && used.fits_in(&self.options[o].1) {
                    let before = std::mem::replace(&mut self.open[n].1, used);
                    self.go(i + 1, cost);
                    self.open[n].1 = before;
                }
            }
            for (o, (price, room)) in self.options.iter().enumerate() {
                if (self.allowed)(group, o) && pod.fits_in(room) {
                    self.open.push((o, pod.clone()));
                    self.go(i + 1, cost + price);
                    self.open.pop();
                }
            }
        }
    }
    if pods.is_empty() {
        return 0.0;
    }
    let mut search = Search {
        pods: &pods,
        options,
        allowed,
        open: Vec::new(),
        best: f64::INFINITY,
    };
    search.go(0, 0.0);
    search.best
}

/// Scaled vectors as the bound sees them (cpu cores, memory GiB, pods, GPUs).
fn scaled(r: &Resources) -> [f64; 4] {
    [
        r.cpu_milli as f64 / 1000.0,
        r.memory as f64 / GIB as f64,
        r.pods as f64,
        r.extended(GPU_NVIDIA) as f64,
    ]
}

/// Every vertex of `{c >= 0 : sum_k c_k q_k <= a}` by brute force: choose which of the
/// `k + 4` constraints are tight (k of them), solve, keep feasible points.
fn pattern_vertices(q: &[[f64; 4]], a: &[f64; 4]) -> Vec<Vec<f64>> {
    let k = q.len();
    let total = k + 4;
    let mut out = Vec::new();
    for mask in 0u32..(1 << total) {
        if mask.count_ones() as usize != k {
            continue;
        }
        // Rows of the system M c = b.
        let mut m: Vec<Vec<f64>> = Vec::new();
        for t in 0..total {
            if mask & (1 << t) == 0 {
                continue;
            }
            let mut row = vec![0.0; k + 1];
            if t < k {
                row[t] = 1.0;
            } else {
                let d = t - k;
                for j in 0..k {
                    row[j] = q[j][d];
                }
                row[k] = a[d];
            }
            m.push(row);
        }
        if let Some(c) = gauss(m, k) {
            let ok = c.iter().all(|&v| v >= -1e-9)
                && (0..4).all(|d| (0..k).map(|j| c[j] * q[j][d]).sum::<f64>() <= a[d] + 1e-9);
            if ok {
                out.push(c);
            }
        }
    }
    out
}

fn gauss(mut m: Vec<Vec<f64>>, k: usize) -> Option<Vec<f64>> {
    for col in 0..k {
        let p = (col..k).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[p][col].abs() < 1e-12 {
            return None;
        }
        m.swap(col, p);
        for r in 0..k {
            if r != col {
                let f = m[r][col] / m[col][col];
                let pivot_row = m[col].clone();
                for (v, p) in m[r][col..=k].iter_mut().zip(&pivot_row[col..=k]) {
                    *v -= f * p;
                }
            }
        }
    }
    Some((0..k).map(|i| m[i][k] / m[i][i]).collect())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-3)
}

/// The mix is a placement: its parts are feasible (fractional) nodes that hold every
/// pod, and they cost exactly the rate.
#[test]
fn mix_is_a_feasible_placement_costing_the_rate() {
    let mut rng = Rng::new(11);
    for _ in 0..300 {
        let options = {
            let n = 1 + rng.below(8);
            random_options(&mut rng, n)
        };
        let classes = {
            let k = 1 + rng.below(4);
            random_classes(&mut rng, k, 20)
        };
        let mut bound = ShapeBound::new(options.clone());
        let mix = bound.solve(&classes);
        let mut held = vec![0.0; classes.len()];
        let mut cost = 0.0;
        for part in &mix.parts {
            let (price, room) = &options[part.option];
            cost += part.nodes * price;
            let mut used = [0.0; 4];
            for (k, &c) in part.pods.iter().enumerate() {
                held[k] += c * part.nodes;
                if c > 1e-9 {
                    assert!(classes[k].0.fits_in(room), "a class where it cannot fit");
                }
                for (u, v) in used.iter_mut().zip(scaled(&classes[k].0)) {
                    *u += c * v;
                }
            }
            for (u, a) in used.iter().zip(scaled(room)) {
                assert!(*u <= a + 1e-6, "an over-full node: {used:?} > {room}");
            }
        }
        for (k, (q, n)) in classes.iter().enumerate() {
            if mix.infeasible.contains(&k) {
                assert!(!options.iter().any(|(_, room)| q.fits_in(room)));
            } else {
                assert!(held[k] >= n - 1e-6, "class {k}: {} of {n} held", held[k]);
            }
        }
        assert!(
            close(cost, mix.rate),
            "parts cost {cost}, rate {}",
            mix.rate
        );
    }
}

/// Optimality by duality, checked independently of the solver's own pricing: the duals
/// reproduce the rate, and at them no vertex of any option's pattern polytope (found by
/// brute force) is worth more than its price. With the feasible mix of the test above,
/// that certifies the optimum.
#[test]
fn no_node_pattern_beats_its_price_at_the_duals() {
    let mut rng = Rng::new(5);
    for _ in 0..150 {
        let options = {
            let n = 1 + rng.below(6);
            random_options(&mut rng, n)
        };
        let classes = {
            let k = 1 + rng.below(3);
            random_classes(&mut rng, k, 30)
        };
        let mut bound = ShapeBound::new(options.clone());
        let mix = bound.solve(&classes);
        let dual_value: f64 = classes
            .iter()
            .zip(&mix.duals)
            .map(|((_, n), d)| n * d)
            .sum();
        assert!(
            close(dual_value, mix.rate),
            "duals give {dual_value}, rate {}",
            mix.rate
        );
        assert!(mix.duals.iter().all(|&d| d >= 0.0));
        let q: Vec<[f64; 4]> = classes.iter().map(|(r, _)| scaled(r)).collect();
        for (price, room) in &options {
            let fit: Vec<usize> = (0..classes.len())
                .filter(|&k| classes[k].0.fits_in(room))
                .collect();
            let qf: Vec<[f64; 4]> = fit.iter().map(|&k| q[k]).collect();
            for c in pattern_vertices(&qf, &scaled(room)) {
                let value: f64 = fit.iter().zip(&c).map(|(&k, v)| mix.duals[k] * v).sum();
                assert!(
                    value <= price * (1.0 + 1e-7) + 1e-9,
                    "pattern {c:?} of {room} worth {value} > {price}"
                );
            }
        }
    }
}

#[test]
fn never_above_an_integer_placement_nor_below_the_fluid_bound() {
    let mut rng = Rng::new(3);
    let mut strictly_above_fluid = 0;
    for _ in 0..200 {
        let (options, classes) = small_case(&mut rng, 3);
        let mut bound = ShapeBound::new(options.clone());
        let mix = bound.solve(&classes);
        let integer = integer_optimum(&options, &classes);
        assert!(
            mix.rate <= integer + 1e-9,
            "bound {} above integer {integer}",
            mix.rate
        );
        let mut demand = Resources::default();
        for (k, (q, n)) in classes.iter().enumerate() {
            if !mix.infeasible.contains(&k) {
                for _ in 0..*n as usize {
                    demand.add(&Resources {
                        extended: q.extended.clone(),
                        ..Resources::new(q.cpu_milli, q.memory, q.pods)
                    });
                }
            }
        }
        let fluid = LowerBound::new(options.clone()).hourly_rate(&demand);
        if fluid.is_finite() {
            assert!(
                mix.rate >= fluid - 1e-9,
                "bound {} below fluid {fluid}",
                mix.rate
            );
            if mix.rate > fluid * 1.001 {
                strictly_above_fluid += 1;
            }
        }
    }
    // The point of the bound: whole pods make it tighter than the fluid one.
    assert!(
        strictly_above_fluid > 20,
        "only {strictly_above_fluid} cases tighter"
    );
}

/// The case the fluid bound gets wrong: a CPU-only pod and a memory-only pod cannot
/// share one pod's requests across two cheap types.
#[test]
fn whole_pods_cannot_be_split_across_types() {
    let options = vec![
        (1.0, res(4000, 1, 100, 0)),  // cheap CPU
        (1.0, res(1000, 16, 100, 0)), // cheap memory
        (3.0, res(4000, 16, 100, 0)), // both
    ];
    // 4 pods of 1 CPU / 4 GiB: the fluid bound buys 0.76 of the CPU node and 0.95 of
    // the memory node ($1.71); whole pods need the $3 node (or 4 memory nodes, $4).
    let classes = vec![(res(1000, 4, 1, 0), 4.0)];
    let mut bound = ShapeBound::new(options.clone());
    assert!(close(bound.solve(&classes).rate, 3.0));
    let mut d = Resources::new(4000, 16 * GIB, 4);
    d.extended.clear();
    let fluid = LowerBound::new(options).hourly_rate(&d);
    assert!(close(fluid, 108.0 / 63.0), "fluid {fluid}");
}

/// Complementary shapes share a node: the mix uses one option for both classes.
#[test]
fn complementary_classes_share_nodes() {
    let options = vec![(1.0, res(8000, 32, 100, 0)), (0.9, res(8000, 8, 100, 0))];
    let classes = vec![(res(3000, 1, 1, 0), 2.0), (res(1000, 14, 1, 0), 2.0)];
    let mut bound = ShapeBound::new(options);
    let mix = bound.solve(&classes);
    // One big node holds all four ($1); the LP does slightly better by moving a part of
    // the CPU pods to the cheaper CPU-heavy node, but it never pays for memory twice.
    assert!(
        mix.rate <= 1.0 + 1e-9 && mix.rate > 0.95,
        "rate {}",
        mix.rate
    );
    let shared = mix
        .parts
        .iter()
        .find(|p| p.option == 0)
        .expect("the big node");
    assert!(shared.pods[0] > 0.0 && shared.pods[1] > 0.0, "{shared:?}");
}

#[test]
fn cached_bases_answer_like_cold_solves_and_scale_linearly() {
    let mut rng = Rng::new(19);
    let options = random_options(&mut rng, 12);
    let mut warm = ShapeBound::new(options.clone());
    for _ in 0..200 {
        let classes = {
            let k = 1 + rng.below(2);
            random_classes(&mut rng, k, 50)
        };
        let w = warm.solve(&classes).rate;
        let cold = ShapeBound::new(options.clone()).solve(&classes).rate;
        assert!(close(w, cold), "warm {w} cold {cold}");
        let doubled: Vec<(Resources, f64)> =
            classes.iter().map(|(q, n)| (q.clone(), n * 2.0)).collect();
        assert!(close(warm.solve(&doubled).rate, 2.0 * w));
    }
    assert!(warm.stats().cache_hits > 0);
}

#[test]
fn infeasible_classes_are_left_out_and_nothing_costs_nothing() {
    let mut bound = ShapeBound::new(vec![(1.0, res(2000, 4, 10, 0))]);
    let mix = bound.solve(&[(res(1000, 1, 1, 1), 3.0), (res(1000, 1, 1, 0), 4.0)]);
    assert_eq!(mix.infeasible, vec![0]);
    assert!(close(mix.rate, 2.0));
    assert_eq!(bound.solve(&[]).rate, 0.0);
    assert_eq!(bound.hourly_rate(&[(res(1000, 1, 1, 0), 0)]), 0.0);
}

/// Whole-pod patterns give a programme between the report's bound and the best integer
/// placement, tighter than the bound on many cases, and its optimum is made of real
/// nodes: whole pods per node, each node's pods within the offer's room.
#[test]
fn whole_pod_patterns_lie_between_the_bound_and_an_integer_placement() {
    let mut rng = Rng::new(41);
    let mut tighter = 0;
    for _ in 0..200 {
        let (options, classes) = small_case(&mut rng, 4);
        let fractional = ShapeBound::new(options.clone()).solve(&classes);
        let mix = ShapeBound::whole_pods(options.clone()).solve(&classes);
        let integer = integer_optimum(&options, &classes);
        assert_eq!(mix.infeasible, fractional.infeasible);
        // The value is the dual bound `pi . n / theta`: a valid floor of its programme.
        let value: f64 = mix
            .parts
            .iter()
            .map(|p| p.nodes * options[p.option].0)
            .sum();
        assert!(
            mix.rate <= value + 1e-6,
            "dual {} above primal {value}",
            mix.rate
        );
        assert!(
            value >= fractional.rate - 1e-6,
            "{value} below the bound {}",
            fractional.rate
        );
        assert!(
            value <= integer + 1e-6,
            "{value} above the integer optimum {integer}"
        );
        if value > fractional.rate * 1.001 {
            tighter += 1;
        }
        for part in &mix.parts {
            let mut used = Resources::default();
            for (k, &c) in part.pods.iter().enumerate() {
                assert_eq!(c, c.round(), "a fractional pod count {c}");
                for _ in 0..c as usize {
                    used.add(&classes[k].0);
                }
            }
            assert!(used.fits_in(&options[part.option].1), "{used:?} overfills");
        }
    }
    assert!(tighter > 20, "only {tighter} cases tighter than the bound");
}
