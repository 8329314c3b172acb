//! The shape bound with the pods' node constraints (the report's
//! `cost_usd.constrained_bound`): the same programme as [`ShapeBound`], where a pod may
//! also only use the offerings its node constraints allow: its pool's taints tolerated,
//! its node selector and required node affinity met (zone, capacity type, architecture,
//! instance type...). The shape bound lets every pod use every offering, so on a workload
//! with GPU inference, Spot-only Jobs or on-demand-only services it sits far below what
//! any placement can cost: web pods ride free on the spare CPU of tainted GPU nodes, and
//! on-demand-only pods are priced at Spot. This bound is still a floor (every real
//! placement puts each pod on an offering it allows), and the gap to it is what an
//! autoscaler could still win: whole nodes, boot and scale-down delays, and the rules it
//! leaves out (topology spread, pod affinity and anti-affinity).
//!
//! A constraint *group* is a set of allowed offerings. The programme is the shape bound's
//! over the same offerings, with one extra resource per group that some offerings do not
//! allow: a pod of the group requests one unit of it, and an offering that allows the
//! group has as many units as it has pod slots (so the unit never binds beyond the pod
//! count), one that does not has none. A pod of a group that every offering allows
//! requests nothing extra, so a workload without constraints gets the shape bound itself.
//!
//! Pure: no I/O, no clock.

use super::resources::{ResourceName, Resources};
use super::shape_bound::{Mix, ShapeBound};
use std::collections::HashMap;

/// The shape bound over `options`, for pods in constraint groups.
pub struct ConstrainedBound {
    options: Vec<(f64, Resources)>,
    /// Per group, which options (same indices) its pods may use.
    groups: Vec<Vec<bool>>,
    /// Per group, the resource its pods request (`None`: every option allows it).
    tokens: Vec<Option<ResourceName>>,
    /// Built at the first solve after a group was added.
    bound: Option<ShapeBound>,
}

impl ConstrainedBound {
    /// `options` are (price per hour, room for pods), as for [`ShapeBound::new`].
    pub fn new(options: Vec<(f64, Resources)>) -> Self {
        ConstrainedBound {
            options,
            groups: Vec::new(),
            tokens: Vec::new(),
            bound: None,
        }
    }

    /// The group of pods that may use the options where `allowed` is true (same indices
    /// as the options), added when new.
    pub fn group(&mut self, allowed: &[bool]) -> u32 {
        debug_assert_eq!(allowed.len(), self.options.len());
        if let Some(g) = self.groups.iter().position(|a| a == allowed) {
            return g as u32;
        }
        let g = self.groups.len();
        let token = (!allowed.iter().all(|&a| a))
            .then(|| ResourceName::from(format!("stevedore.dev/constraint-group-{g}")));
        self.groups.push(allowed.to_vec());
        self.tokens.push(token);
        if self.tokens[g].is_some() {
            // The options' rooms gain a resource: the programme is built again.
            self.bound = None;
        }
        g as u32
    }

    /// Does every option allow the pods of group `g` (so they add no constraint)?
    pub fn unconstrained(&self, g: u32) -> bool {
        self.tokens[g as usize].is_none()
    }

    /// The bound's hourly rate for `pods` (requests, group, how many), given the shape
    /// bound's optimum `shape` over the same pods by requests (`shape_classes`, in the
    /// order it was solved over). When that optimum puts every pod where its group may
    /// go, it is this bound's optimum too: its rate, with no programme to solve (on a
    /// week of batch, at every change). Otherwise the programme's, and never below the
    /// shape bound's: both are floors, and a solve stopped early gives the lower one.
    /// What the simulator and the controller both report.
    pub fn rate_beside(
        &mut self,
        pods: &[(&Resources, u32, u64)],
        shape: &Mix,
        shape_classes: &[(Resources, f64)],
    ) -> f64 {
        let mut present: Vec<u32> = pods
            .iter()
            .map(|&(_, g, _)| g)
            .filter(|&g| !self.unconstrained(g))
            .collect();
        present.sort_unstable();
        present.dedup();
        // Every offering the optimum uses allowed to every group present: the common
        // case, found without grouping the classes.
        if self.allows(shape, |_| present.as_slice()) {
            return shape.rate;
        }
        let mut groups: HashMap<&Resources, Vec<u32>> = HashMap::new();
        for &(r, g, _) in pods {
            groups.entry(r).or_default().push(g);
        }
        if self.allows(shape, |k| {
            groups.get(&shape_classes[k].0).map_or(&[], Vec::as_slice)
        }) {
            return shape.rate;
        }
        let owned: Vec<(Resources, u32, u64)> =
            pods.iter().map(|&(r, g, n)| (r.clone(), g, n)).collect();
        let rate = self.hourly_rate(&owned);
        if rate.is_finite() {
            rate.max(shape.rate)
        } else {
            shape.rate
        }
    }

    /// Does the shape bound's optimum `mix` (over the same options) put pods only where
    /// they may go: each of its nodes holds pods only of classes whose groups all allow
    /// its offering (`groups_of(k)`: the groups of the mix's class `k`)?
    fn allows<'g>(&self, mix: &Mix, groups_of: impl Fn(usize) -> &'g [u32]) -> bool {
        mix.parts.iter().all(|part| {
            part.pods.iter().enumerate().all(|(k, &pods)| {
                pods <= 1e-9
                    || groups_of(k)
                        .iter()
                        .all(|&g| self.groups[g as usize][part.option])
            })
        })
    }

    /// The bound's hourly rate for `pods`: (requests, group, how many). Pods no allowed
    /// option holds are left out, as the spec's feasible pods.
    pub fn hourly_rate(&mut self, pods: &[(Resources, u32, u64)]) -> f64 {
        let classes: Vec<(Resources, u64)> = pods
            .iter()
            .filter(|&&(_, _, n)| n > 0)
            .map(|(r, g, n)| {
                let mut q = r.clone();
                if let Some(t) = &self.tokens[*g as usize] {
                    q.set_extended(t, 1);
                }
                (q, *n)
            })
            .collect();
        self.programme().hourly_rate(&classes)
    }

    fn programme(&mut self) -> &mut ShapeBound {
        if self.bound.is_none() {
            let options = self
                .options
                .iter()
                .enumerate()
                .map(|(o, (price, room))| {
                    let mut room = room.clone();
                    let slots = room.pods.max(1);
                    for (allowed, token) in self.groups.iter().zip(&self.tokens) {
                        if let (true, Some(t)) = (allowed[o], token) {
                            room.set_extended(t, slots);
                        }
                    }
                    (*price, room)
                })
                .collect();
            self.bound = Some(ShapeBound::new(options));
        }
        self.bound.as_mut().expect("just built")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::Rng;
    use crate::core::shape_bound::tests::integer_optimum_where;

    const GIB: i64 = 1 << 30;

    fn room(cpu: i64, gib: i64, pods: i64) -> Resources {
        Resources::new(cpu * 1000, gib * GIB, pods)
    }

    #[test]
    fn without_constraints_it_is_the_shape_bound() {
        let options = vec![(0.10, room(2, 4, 10)), (0.30, room(8, 32, 30))];
        let pods = [(room(1, 2, 1), 7u64), (room(2, 8, 1), 3)];
        let mut shape = ShapeBound::new(options.clone());
        let expected = shape.hourly_rate(&pods);
        let mut cb = ConstrainedBound::new(options);
        let g = cb.group(&[true, true]);
        assert!(cb.unconstrained(g));
        let got = cb.hourly_rate(&[(pods[0].0.clone(), g, 7), (pods[1].0.clone(), g, 3)]);
        assert!((got - expected).abs() < 1e-9, "{got} against {expected}");
    }

    #[test]
    fn a_pod_kept_off_the_cheap_offering_pays_for_the_one_it_may_use() {
        // The cheap option stands for a tainted GPU node's spare room, or Spot for an
        // on-demand-only pod: the shape bound prices the web pods there.
        let options = vec![(0.10, room(4, 16, 20)), (0.40, room(4, 16, 20))];
        let web = room(1, 2, 1);
        let mut shape = ShapeBound::new(options.clone());
        assert!((shape.hourly_rate(&[(web.clone(), 8)]) - 0.20).abs() < 1e-9);
        let mut cb = ConstrainedBound::new(options);
        let only_dear = cb.group(&[false, true]);
        let any = cb.group(&[true, true]);
        assert!(!cb.unconstrained(only_dear));
        // 8 pods of 1 CPU on 4-CPU nodes: 2 nodes' worth at 0.40.
        let rate = cb.hourly_rate(&[(web.clone(), only_dear, 8)]);
        assert!((rate - 0.80).abs() < 1e-9, "{rate}");
        // Beside 4 pods that may go anywhere, those take the cheap node.
        let rate = cb.hourly_rate(&[(web.clone(), only_dear, 8), (web.clone(), any, 4)]);
        assert!((rate - 0.90).abs() < 1e-9, "{rate}");

        // Beside the shape bound's optimum (all 12 on the cheap node): the same rates,
        // and the shape bound's where its optimum already respects the groups.
        let classes = [(web.clone(), 12.0)];
        let mix = shape.solve(&classes);
        let beside = cb.rate_beside(&[(&web, only_dear, 8), (&web, any, 4)], &mix, &classes);
        assert!((beside - 0.90).abs() < 1e-9, "{beside}");
        let beside = cb.rate_beside(&[(&web, any, 12)], &mix, &classes);
        assert!((beside - mix.rate).abs() < 1e-12 && (mix.rate - 0.30).abs() < 1e-9);
        let beside = cb.rate_beside(&[(&web, only_dear, 12)], &mix, &classes);
        assert!((beside - 1.20).abs() < 1e-9, "{beside}");
    }

    #[test]
    fn it_is_between_the_shape_bound_and_the_integer_optimum() {
        let mut rng = Rng::new(11);
        let (mut checked, mut bites) = (0, 0);
        for case in 0..150 {
            let n_opts = 1 + rng.below(3);
            let options: Vec<(f64, Resources)> = (0..n_opts)
                .map(|_| {
                    let r = room(1 + rng.below(6) as i64, 1 + rng.below(16) as i64, 8);
                    (rng.range_f64(0.05, 1.0), r)
                })
                .collect();
            let n_groups = 1 + rng.below(2);
            let groups: Vec<Vec<bool>> = (0..n_groups)
                .map(|_| {
                    let mut a: Vec<bool> = (0..n_opts).map(|_| rng.next_f64() < 0.6).collect();
                    let keep = rng.below(n_opts);
                    a[keep] = true;
                    a
                })
                .collect();
            let mut pods: Vec<(Resources, usize)> = Vec::new();
            for _ in 0..(1 + rng.below(5)) {
                let q = Resources::new(
                    250 * (1 + rng.below(8) as i64),
                    GIB * (1 + rng.below(4) as i64),
                    1,
                );
                pods.push((q, rng.below(n_groups)));
            }
            // Pods some allowed option holds: the bound's feasible pods.
            pods.retain(|(q, g)| (0..n_opts).any(|o| groups[*g][o] && q.fits_in(&options[o].1)));
            if pods.is_empty() {
                continue;
            }
            let mut cb = ConstrainedBound::new(options.clone());
            let ids: Vec<u32> = groups.iter().map(|a| cb.group(a)).collect();
            let classes: Vec<(Resources, u32, u64)> =
                pods.iter().map(|(q, g)| (q.clone(), ids[*g], 1)).collect();
            let bound = cb.hourly_rate(&classes);
            let mut shape = ShapeBound::new(options.clone());
            let plain: Vec<(Resources, u64)> = pods.iter().map(|(q, _)| (q.clone(), 1)).collect();
            let shape_rate = shape.hourly_rate(&plain);
            let placed: Vec<(&Resources, usize)> = pods.iter().map(|(q, g)| (q, *g)).collect();
            let best = integer_optimum_where(&options, &placed, |g, o| groups[g][o]);
            assert!(
                bound >= shape_rate - 1e-9,
                "case {case}: constrained {bound} below the shape bound {shape_rate}"
            );
            assert!(
                bound <= best + 1e-9,
                "case {case}: constrained {bound} above the integer optimum {best}"
            );
            checked += 1;
            bites += usize::from(bound > shape_rate + 1e-6);
        }
        // The cases test something: most were checked, and in many the constraints
        // raised the bound.
        assert!(
            checked >= 100 && bites >= 20,
            "{checked} checked, {bites} raised"
        );
    }
}
