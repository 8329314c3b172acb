//! Utilization triggers and spare-capacity headroom: capacity a node pool keeps free
//! beyond what its pods request, so bursts land on running nodes instead of waiting for a
//! launch.
//!
//! A pool's [`HeadroomPolicy`] says "keep requested CPU under 80% of allocatable" and/or
//! "always keep 4 vCPU / 16 GiB spare". Both become one figure per resource, the spare
//! capacity to hold ([`target_spare`]): a utilization target `t` over requests `R` asks
//! for `R·(1−t)/t` spare (then `R / (R + spare) = t`), and the larger of that and the
//! absolute spare wins. [`plan`] compares it with the pool's free capacity and turns it
//! into placeholder pods: synthetic pods at the lowest priority that the scheduling
//! simulation places after every real pod. Those that fit into free room cost nothing;
//! the rest make the scheduler launch nodes. Placeholders are never created in the
//! cluster, so nothing is ever evicted to make room for them, and real pods always win
//! the room they hold.
//!
//! Pure functions: the caller passes the pool's current requests and allocatable.

use super::labels::{self, Labels};
use super::nodepool::NodePool;
use super::pod::Pod;
use super::resources::Resources;
use super::taints::{TaintEffect, Toleration};

/// Annotation that marks a placeholder pod, so every consumer can tell it from a real one.
pub const PLACEHOLDER_ANNOTATION: &str = "stevedore.dev/headroom-placeholder";
/// Namespace placeholder pods are named in (they never exist in the cluster).
pub const PLACEHOLDER_NAMESPACE: &str = "stevedore-headroom";
/// Placeholders are scheduled after every real pod and never preempt one.
pub const PLACEHOLDER_PRIORITY: i32 = i32::MIN;
/// Default largest placeholder: small enough to fit almost any instance type after
/// DaemonSet overhead, so a large spare target is never infeasible as one huge pod.
pub const DEFAULT_PLACEHOLDER_CPU_MILLI: i64 = 1000;
pub const DEFAULT_PLACEHOLDER_MEMORY: i64 = 4 << 30;

/// Upper bounds on requested / allocatable, each in `(0, 1]`. `None` = no bound.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UtilizationTargets {
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub pods: Option<f64>,
}

/// One pool's headroom configuration (`spec.headroom` of a NodePool).
#[derive(Clone, Debug, PartialEq)]
pub struct HeadroomPolicy {
    pub max_utilization: UtilizationTargets,
    /// Absolute capacity always kept free: CPU, memory, pod slots and extended resources
    /// such as `nvidia.com/gpu`.
    pub spare: Resources,
    /// The largest CPU (millicores) and memory (bytes) one placeholder requests.
    pub placeholder_cpu_milli: i64,
    pub placeholder_memory: i64,
}

impl Default for HeadroomPolicy {
    fn default() -> Self {
        HeadroomPolicy {
            max_utilization: UtilizationTargets::default(),
            spare: Resources::default(),
            placeholder_cpu_milli: DEFAULT_PLACEHOLDER_CPU_MILLI,
            placeholder_memory: DEFAULT_PLACEHOLDER_MEMORY,
        }
    }
}

/// What the pool's nodes hold now (Ready and launching nodes; the caller adds the
/// requests of pods already nominated to them, so pending demand is not counted twice).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolUsage {
    /// Sum of the requests of the pods on the pool's nodes; `pods` = their number.
    pub requested: Resources,
    /// Sum of the nodes' allocatable; `pods` = their max pods.
    pub allocatable: Resources,
}

/// The outcome of [`plan`] for one pool.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadroomPlan {
    /// The spare capacity the policy asks for.
    pub spare: Resources,
    /// How much of it the pool's free capacity lacks (zero per resource when covered).
    /// Free capacity is summed over nodes, so a zero deficit may still hide fragmentation;
    /// the placeholders settle that.
    pub deficit: Resources,
    /// Placeholder pods whose requests add up to at least `spare`, for the scheduling
    /// simulation. Empty when the policy asks for nothing.
    pub placeholders: Vec<Pod>,
}

impl HeadroomPlan {
    /// Does the pool lack capacity the policy asks for (a provisioning trigger)?
    pub fn needs_capacity(&self) -> bool {
        let d = &self.deficit;
        d.cpu_milli > 0 || d.memory > 0 || d.pods > 0 || d.extended.iter().any(|(_, v)| *v > 0)
    }
}

/// Spare capacity for `t` over `requested`: the smallest `s` with `requested / (requested
/// + s) <= t`, rounded up to a whole unit.
fn spare_for_target(requested: i64, t: Option<f64>) -> i64 {
    match t {
        Some(t) if t > 0.0 && t < 1.0 && requested > 0 => {
            let s = requested as f64 * (1.0 - t) / t;
            // Float noise (e.g. 0.8 is not exact) must not add a unit: round to 1e-6 first.
            ((s * 1e6).round() / 1e6).ceil() as i64
        }
        _ => 0,
    }
}

/// The spare capacity `policy` asks for when the pool's pods request `requested`.
pub fn target_spare(policy: &HeadroomPolicy, requested: &Resources) -> Resources {
    let u = &policy.max_utilization;
    let mut s = Resources {
        cpu_milli: spare_for_target(requested.cpu_milli, u.cpu).max(policy.spare.cpu_milli),
        memory: spare_for_target(requested.memory, u.memory).max(policy.spare.memory),
        pods: spare_for_target(requested.pods, u.pods).max(policy.spare.pods),
        ephemeral: policy.spare.ephemeral,
        extended: Vec::new(),
    };
    for (name, v) in &policy.spare.extended {
        s.set_extended(name, *v);
    }
    s
}

/// `spare` minus the free capacity (allocatable − requested), per resource, never negative.
pub fn deficit(spare: &Resources, usage: &PoolUsage) -> Resources {
    let free = usage.allocatable.minus(&usage.requested);
    let lack = |want: i64, have: i64| (want - have.max(0)).max(0);
    let mut d = Resources {
        cpu_milli: lack(spare.cpu_milli, free.cpu_milli),
        memory: lack(spare.memory, free.memory),
        ephemeral: lack(spare.ephemeral, free.ephemeral),
        pods: lack(spare.pods, free.pods),
        extended: Vec::new(),
    };
    for (name, v) in &spare.extended {
        d.set_extended(name, lack(*v, free.extended(name)));
    }
    d
}

fn div_ceil(a: i64, b: i64) -> i64 {
    if b <= 0 {
        0
    } else {
        (a + b - 1) / b
    }
}

/// Splits `spare` into placeholder pods for `pool`: as few as possible with none above
/// the placeholder size, at least one per spare pod slot and per extended-resource unit
/// (devices cannot be split). CPU and memory are shared evenly (rounded up, so the sum
/// covers `spare`); extended units go one per placeholder.
pub fn placeholders(policy: &HeadroomPolicy, pool: &NodePool, spare: &Resources) -> Vec<Pod> {
    let extended_units: i64 = spare.extended.iter().map(|(_, v)| *v).sum();
    let n = div_ceil(spare.cpu_milli, policy.placeholder_cpu_milli)
        .max(div_ceil(spare.memory, policy.placeholder_memory))
        .max(spare.pods)
        .max(extended_units);
    if n <= 0 {
        return Vec::new();
    }
    let mut devices = spare
        .extended
        .iter()
        .flat_map(|(name, v)| std::iter::repeat_n(&**name, *v as usize));
    let mut node_selector = Labels::new();
    node_selector.insert(labels::NODEPOOL.to_string(), pool.name.clone());
    // Tolerate exactly the pool's own taints: a placeholder must land on this pool's nodes
    // and nowhere else.
    let tolerations: Vec<Toleration> = pool
        .taints
        .iter()
        .filter(|t| t.effect != TaintEffect::PreferNoSchedule)
        .map(|t| Toleration {
            key: t.key.clone(),
            exists: false,
            value: t.value.clone(),
            effect: Some(t.effect),
        })
        .collect();
    let mut annotations = Labels::new();
    annotations.insert(PLACEHOLDER_ANNOTATION.to_string(), "true".to_string());
    (0..n)
        .map(|i| {
            let mut requests =
                Resources::new(div_ceil(spare.cpu_milli, n), div_ceil(spare.memory, n), 1);
            requests.ephemeral = div_ceil(spare.ephemeral, n);
            if let Some(d) = devices.next() {
                requests.set_extended(d, 1);
            }
            Pod {
                namespace: PLACEHOLDER_NAMESPACE.to_string(),
                name: format!("{}-{i}", pool.name),
                annotations: annotations.clone(),
                requests,
                node_selector: node_selector.clone(),
                tolerations: tolerations.clone(),
                priority: PLACEHOLDER_PRIORITY,
                ..Default::default()
            }
        })
        .collect()
}

/// Is `pod` a headroom placeholder (and so never to be created, evicted or counted as
/// demand)?
pub fn is_placeholder(pod: &Pod) -> bool {
    pod.namespace == PLACEHOLDER_NAMESPACE
        && pod
            .annotations
            .get(PLACEHOLDER_ANNOTATION)
            .map(String::as_str)
            == Some("true")
}

/// The headroom of one pool: the spare it asks for, what is missing, and the
/// placeholders the scheduling simulation should make room for.
pub fn plan(policy: &HeadroomPolicy, pool: &NodePool, usage: &PoolUsage) -> HeadroomPlan {
    let spare = target_spare(policy, &usage.requested);
    HeadroomPlan {
        deficit: deficit(&spare, usage),
        placeholders: placeholders(policy, pool, &spare),
        spare,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::nodepool::PoolLimits;
    use crate::core::resources::GPU_NVIDIA;
    use crate::core::taints::{tolerates_all, Taint};

    const GI: i64 = 1 << 30;

    fn pool(taints: Vec<Taint>) -> NodePool {
        NodePool {
            name: "general".into(),
            weight: 0,
            requirements: vec![],
            labels: Labels::new(),
            taints,
            startup_taints: vec![],
            limits: PoolLimits::default(),
            empty_node_after: None,
        }
    }

    fn usage(req: Resources, alloc: Resources) -> PoolUsage {
        PoolUsage {
            requested: req,
            allocatable: alloc,
        }
    }

    fn total(pods: &[Pod]) -> Resources {
        let mut t = Resources::default();
        for p in pods {
            t.add(&p.requests);
        }
        t
    }

    #[test]
    fn cpu_target_asks_for_enough_spare_that_requests_stay_under_it() {
        let policy = HeadroomPolicy {
            max_utilization: UtilizationTargets {
                cpu: Some(0.8),
                ..Default::default()
            },
            ..Default::default()
        };
        // 8 cores requested under an 80% target: 10 cores needed, so 2 spare.
        let s = target_spare(&policy, &Resources::new(8000, 10 * GI, 20));
        assert_eq!(s.cpu_milli, 2000);
        assert_eq!(s.memory, 0, "no memory target, no memory spare");
        assert_eq!(s.pods, 0);
        // With 9 cores allocatable, 1 core is missing; with 10, none.
        let d = deficit(
            &s,
            &usage(Resources::new(8000, 0, 20), Resources::new(9000, 0, 20)),
        );
        assert_eq!(d.cpu_milli, 1000);
        let d = deficit(
            &s,
            &usage(Resources::new(8000, 0, 20), Resources::new(10_000, 0, 20)),
        );
        assert_eq!(d.cpu_milli, 0);
    }

    #[test]
    fn the_larger_of_target_and_absolute_spare_wins_per_resource() {
        let mut spare = Resources::new(4000, 16 * GI, 0);
        spare.set_extended(GPU_NVIDIA, 1);
        let policy = HeadroomPolicy {
            max_utilization: UtilizationTargets {
                cpu: Some(0.5),
                memory: Some(0.9),
                pods: Some(0.75),
            },
            spare,
            ..Default::default()
        };
        // cpu: 10 cores at 50% -> 10 spare beats 4; memory: 9 GiB at 90% -> 1 GiB, the
        // absolute 16 GiB wins; pods: 30 at 75% -> 10.
        let s = target_spare(&policy, &Resources::new(10_000, 9 * GI, 30));
        assert_eq!(s.cpu_milli, 10_000);
        assert_eq!(s.memory, 16 * GI);
        assert_eq!(s.pods, 10);
        assert_eq!(s.extended(GPU_NVIDIA), 1);
    }

    #[test]
    fn an_empty_pool_asks_only_for_absolute_spare() {
        let policy = HeadroomPolicy {
            max_utilization: UtilizationTargets {
                cpu: Some(0.8),
                memory: Some(0.8),
                pods: Some(0.8),
            },
            ..Default::default()
        };
        let p = plan(&policy, &pool(vec![]), &PoolUsage::default());
        assert!(p.spare.is_zero());
        assert!(p.placeholders.is_empty());
        assert!(!p.needs_capacity());
    }

    #[test]
    fn deficit_counts_free_capacity_and_overcommit_does_not_help() {
        let spare = Resources::new(4000, 16 * GI, 5);
        // Free: 3 cores, 20 GiB, 2 pod slots.
        let d = deficit(
            &spare,
            &usage(
                Resources::new(5000, 12 * GI, 27),
                Resources::new(8000, 32 * GI, 29),
            ),
        );
        assert_eq!((d.cpu_milli, d.memory, d.pods), (1000, 0, 3));
        // Requests above allocatable (pods bound before a resize) count as no free room,
        // not as a negative deficit elsewhere.
        let d = deficit(
            &spare,
            &usage(Resources::new(9000, 0, 0), Resources::new(8000, 0, 0)),
        );
        assert_eq!(d.cpu_milli, 4000);
    }

    #[test]
    fn placeholders_cover_the_spare_without_exceeding_their_size() {
        let mut spare = Resources::new(4500, 10 * GI, 0);
        spare.set_extended(GPU_NVIDIA, 2);
        let policy = HeadroomPolicy {
            spare: spare.clone(),
            ..Default::default()
        };
        let pods = placeholders(&policy, &pool(vec![]), &spare);
        // ceil(4.5 cores / 1 core) = 5 beats ceil(10 GiB / 4 GiB) = 3 and 2 GPUs.
        assert_eq!(pods.len(), 5);
        let t = total(&pods);
        assert!(t.cpu_milli >= 4500 && t.memory >= 10 * GI, "{t}");
        assert_eq!(t.extended(GPU_NVIDIA), 2, "one device per placeholder");
        assert_eq!(t.pods, 5);
        for p in &pods {
            assert!(p.requests.cpu_milli <= DEFAULT_PLACEHOLDER_CPU_MILLI);
            assert!(p.requests.memory <= DEFAULT_PLACEHOLDER_MEMORY);
            assert_eq!(p.priority, i32::MIN);
            assert!(is_placeholder(p));
            assert_eq!(
                p.node_selector.get(labels::NODEPOOL).map(String::as_str),
                Some("general")
            );
        }
        // Names are unique.
        let mut names: Vec<_> = pods.iter().map(Pod::key).collect();
        names.dedup();
        assert_eq!(names.len(), 5);
    }

    #[test]
    fn spare_pod_slots_give_one_placeholder_each() {
        let spare = Resources::new(1000, GI, 6);
        let pods = placeholders(&HeadroomPolicy::default(), &pool(vec![]), &spare);
        assert_eq!(pods.len(), 6);
        assert!(total(&pods).cpu_milli >= 1000);
    }

    #[test]
    fn placeholders_tolerate_exactly_the_pool_taints() {
        let gpu_taint = Taint {
            key: "nvidia.com/gpu".into(),
            value: "true".into(),
            effect: TaintEffect::NoSchedule,
        };
        let other = Taint {
            key: "dedicated".into(),
            value: "batch".into(),
            effect: TaintEffect::NoSchedule,
        };
        let spare = Resources::new(2000, 0, 0);
        let pods = placeholders(
            &HeadroomPolicy::default(),
            &pool(vec![gpu_taint.clone()]),
            &spare,
        );
        assert!(tolerates_all(&pods[0].tolerations, &[gpu_taint]));
        assert!(!tolerates_all(&pods[0].tolerations, &[other]));
    }

    #[test]
    fn real_pods_are_not_placeholders() {
        let mut p = Pod {
            namespace: "default".into(),
            name: "web".into(),
            ..Default::default()
        };
        assert!(!is_placeholder(&p));
        p.annotations
            .insert(PLACEHOLDER_ANNOTATION.into(), "true".into());
        assert!(
            !is_placeholder(&p),
            "the annotation alone in a real namespace"
        );
    }

    #[test]
    fn plan_reports_a_trigger_only_when_free_room_is_short() {
        let policy = HeadroomPolicy {
            spare: Resources::new(4000, 16 * GI, 0),
            ..Default::default()
        };
        let short = plan(
            &policy,
            &pool(vec![]),
            &usage(
                Resources::new(6000, 8 * GI, 10),
                Resources::new(8000, 32 * GI, 58),
            ),
        );
        assert!(short.needs_capacity());
        assert_eq!(short.deficit.cpu_milli, 2000);
        assert_eq!(short.deficit.memory, 0);
        let enough = plan(
            &policy,
            &pool(vec![]),
            &usage(
                Resources::new(4000, 8 * GI, 10),
                Resources::new(8000, 32 * GI, 58),
            ),
        );
        assert!(!enough.needs_capacity());
        // The placeholders still stand for the whole spare: they fit into the free room.
        assert_eq!(enough.placeholders.len(), 4);
    }
}
