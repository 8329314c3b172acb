//! The running workload's mix of pod shapes, by which provisioning values a new node's
//! spare room.
//!
//! A batch of pending pods is often of one shape: a Deployment's scale-up step, or the
//! surge of a rolling update. Packed alone, it goes on the type cheapest for that shape
//! (on daily-web, six 1-CPU / 2-GiB `api` pods per c6gd.2xlarge), while the workload as
//! a whole packs cheaper on another (`api` beside `web` on t3a.medium: 16% less per GiB
//! of memory, which these pods run out of first). Those nodes stay, and at night they
//! were a third of daily-web's cost above the shape bound.
//!
//! The spare room of a new node is not waste: the kube-scheduler gives it to the next
//! pods, and those come in the running workload's mix. So the provisioner also packs the
//! batch beside a sample of that mix (keeping only the nodes the batch's own pods need,
//! each bought as the cheapest type that holds them), and picks between its packings by
//! their price less what the mix would pay for their spare room.
//!
//! Jobs' pods are left out of the mix: they end by themselves, and a burst of them says
//! nothing of the pods that come next. DaemonSet pods are per-node overhead.
//!
//! Pure: no I/O, no clock.

use super::disruption::runs_to_completion;
use super::mix::copies_fitting;
use super::pod::Pod;
use super::resources::Resources;
use super::shape_bound::cmp_resources;
use std::collections::HashMap;

/// Pods of the running workload's mix packed beside each pod of a batch (at most the
/// whole workload). Seeds 1-3 of the bundled traces, with [`SPARE_ROOM_WEIGHT`] 0.8:
/// daily-web 1.137x -> 1.113x of the shape bound with 1 or 3 per pod (10 and 3 alike),
/// the other traces within 0.5% either way.
pub const SAMPLE_PER_POD: f64 = 10.0;

/// At most this many pods in a sample: the programme's work grows with the pods it
/// packs, and a few hundred carry the mix's shapes as well as thousands (a decision of
/// 1,000 pending pods among 100,000 running took 43 ms with samples of 10,000, against
/// the 50 ms it must stay under).
pub const MAX_SAMPLE: usize = 400;

/// At most this many running pods are counted for the mix (every k-th of a larger
/// cluster, in the snapshot's order): the shares, not the totals, are what is used.
const MAX_COUNTED: usize = 20_000;

/// The share of what the mix would pay for a node's spare room that a packing is
/// credited with: the room is only worth something once pods come to take it. On
/// daily-web, 0.5 changed nothing (the `api` surge still went on c6gd.2xlarge) and 0.8
/// to 1.5 all made the same choices.
pub const SPARE_ROOM_WEIGHT: f64 = 0.8;

/// The long-running pods' shapes and how many run of each.
#[derive(Clone, Debug, Default)]
pub struct WorkloadMix {
    /// (requests, pods), most pods first (ties in a fixed order of the requests).
    classes: Vec<(Resources, u64)>,
}

impl WorkloadMix {
    /// The mix of `bound`'s pods that do not end by themselves (DaemonSet pods and Jobs'
    /// pods left out).
    pub fn of(bound: &[(&Pod, usize)]) -> Self {
        let mut counts: HashMap<&Resources, u64> = HashMap::new();
        let stride = bound.len().div_ceil(MAX_COUNTED).max(1);
        for &(pod, _) in bound.iter().step_by(stride) {
            if !pod.is_daemonset() && !runs_to_completion(pod) {
                *counts.entry(&pod.requests).or_default() += 1;
            }
        }
        let mut classes: Vec<(Resources, u64)> =
            counts.into_iter().map(|(r, n)| (r.clone(), n)).collect();
        classes.sort_by(|(a, n), (b, m)| m.cmp(n).then_with(|| cmp_resources(a, b)));
        WorkloadMix { classes }
    }

    /// The mix restricted to the shapes `fits` admits (those a group's types can hold),
    /// with each shape's value per pod from `value`. `None` when no shape is left.
    pub fn valuation(
        &self,
        fits: impl Fn(&Resources) -> bool,
        value: impl Fn(&Resources) -> f64,
    ) -> Option<Valuation> {
        let kept: Vec<&(Resources, u64)> = self.classes.iter().filter(|(r, _)| fits(r)).collect();
        let total: u64 = kept.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return None;
        }
        Some(Valuation {
            classes: kept
                .into_iter()
                .map(|(r, n)| Class {
                    requests: r.clone(),
                    pods: *n,
                    share: *n as f64 / total as f64,
                    value: value(r),
                })
                .collect(),
            total,
        })
    }
}

#[derive(Clone, Debug)]
struct Class {
    requests: Resources,
    pods: u64,
    /// Of the pods of the shapes kept.
    share: f64,
    /// Dollars an hour one pod of this shape costs at its cheapest.
    value: f64,
}

/// A workload mix as one group of pending pods sees it: the shapes its types can hold.
#[derive(Clone, Debug)]
pub struct Valuation {
    classes: Vec<Class>,
    total: u64,
}

impl Valuation {
    /// A sample of the mix to pack beside `pods` pending pods: [`SAMPLE_PER_POD`] per
    /// pod, at most [`MAX_SAMPLE`] and the whole mix, each shape in its share (rounded).
    pub fn sample(&self, pods: usize) -> Vec<&Resources> {
        let size = (SAMPLE_PER_POD * pods as f64).min(MAX_SAMPLE as f64);
        let scale = (size / self.total as f64).min(1.0);
        let mut out = Vec::new();
        for c in &self.classes {
            let n = (c.pods as f64 * scale).round() as usize;
            out.extend(std::iter::repeat_n(&c.requests, n));
        }
        out
    }

    /// What the mix would pay for `room` an hour: over its shapes in their shares, the
    /// pods of that shape the room holds times their value.
    pub fn room_value(&self, room: &Resources) -> f64 {
        self.classes
            .iter()
            .map(|c| c.share * copies_fitting(&c.requests, room) as f64 * c.value)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pod::OwnerRef;

    const GIB: i64 = 1 << 30;

    fn pod(kind: &str, cpu_milli: i64, memory: i64) -> Pod {
        Pod {
            name: format!("{kind}-x"),
            owner: Some(OwnerRef {
                kind: kind.into(),
                name: "owner".into(),
            }),
            requests: Resources::new(cpu_milli, memory, 1),
            ..Default::default()
        }
    }

    #[test]
    fn the_mix_counts_long_running_pods_only() {
        let web = pod("ReplicaSet", 500, GIB);
        let api = pod("ReplicaSet", 1000, 2 * GIB);
        let job = pod("Job", 1000, 2 * GIB);
        let ds = pod("DaemonSet", 100, 0);
        let bound = [(&web, 0), (&web, 1), (&api, 1), (&job, 2), (&ds, 0)];
        let mix = WorkloadMix::of(&bound);
        let v = mix.valuation(|_| true, |r| r.cpu_milli as f64).unwrap();
        // Two web, one api: the Job's and the DaemonSet's pods are not in it.
        assert_eq!(v.total, 3);
        assert_eq!(v.classes[0].requests, web.requests);
        assert!((v.classes[0].share - 2.0 / 3.0).abs() < 1e-12);
        // No shape left: no valuation.
        assert!(mix.valuation(|_| false, |_| 1.0).is_none());
    }

    #[test]
    fn the_sample_keeps_the_shares_and_never_exceeds_the_mix() {
        let web = pod("ReplicaSet", 500, GIB);
        let api = pod("ReplicaSet", 1000, 2 * GIB);
        let mut bound = vec![(&api, 0); 100];
        bound.extend(vec![(&web, 0); 300]);
        let v = WorkloadMix::of(&bound)
            .valuation(|_| true, |_| 1.0)
            .unwrap();
        let sample = v.sample(4);
        let webs = sample.iter().filter(|r| ***r == web.requests).count();
        assert_eq!((sample.len(), webs), (40, 30));
        // Never more than the mix, nor than MAX_SAMPLE.
        assert_eq!(v.sample(20).len(), 200);
        assert_eq!(v.sample(1000).len(), 400);
        let mut many = vec![(&api, 0); 1000];
        many.extend(vec![(&web, 0); 3000]);
        let v = WorkloadMix::of(&many).valuation(|_| true, |_| 1.0).unwrap();
        assert_eq!(v.sample(1000).len(), MAX_SAMPLE);
    }

    #[test]
    fn spare_room_is_worth_the_pods_of_the_mix_it_holds() {
        let web = pod("ReplicaSet", 500, GIB);
        let api = pod("ReplicaSet", 1000, 2 * GIB);
        let bound = [(&web, 0), (&api, 0)];
        // Values: a web pod $0.004 an hour, an api pod $0.008.
        let v = WorkloadMix::of(&bound)
            .valuation(|_| true, |r| 0.004 * (r.memory / GIB) as f64)
            .unwrap();
        // 1 GiB and 0.75 CPU: one web pod (half the mix), no api pod.
        let room = Resources::new(750, GIB, 10);
        assert!((v.room_value(&room) - 0.5 * 0.004).abs() < 1e-12);
        // 2 GiB and 2 CPUs: two web pods or one api pod.
        let room = Resources::new(2000, 2 * GIB, 10);
        assert!((v.room_value(&room) - (0.5 * 2.0 * 0.004 + 0.5 * 0.008)).abs() < 1e-12);
        assert_eq!(v.room_value(&Resources::default()), 0.0);
    }
}
