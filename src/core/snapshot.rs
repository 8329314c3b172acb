//! The input of a decision: what the cluster looks like right now, as plain data.
//! The simulator builds it from its own state; the controller will build it from
//! reflector stores. Nothing here refers to an API type.

use super::labels::Labels;
use super::pod::Pod;
use super::resources::Resources;
use super::taints::Taint;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

#[derive(Clone, Debug)]
pub struct ExistingNode<'a> {
    pub name: &'a str,
    /// All node labels, including hostname, zone and capacity type.
    pub labels: &'a Labels,
    /// Its `topology.kubernetes.io/zone` label, looked up once by the caller: every
    /// decision reads it for every node, and a label lookup compares long keys.
    pub zone: Option<&'a str>,
    /// Raw capacity of the instance (counted against node pool limits).
    pub capacity: &'a Resources,
    pub allocatable: &'a Resources,
    /// Everything already requested on the node: bound and nominated pods and the
    /// DaemonSet overhead.
    pub requested: Resources,
    pub taints: &'a [Taint],
    /// Index into the node pools for autoscaler-managed nodes; `None` for static nodes.
    pub pool: Option<usize>,
    /// `false` while the instance is still booting (pods may be nominated to it).
    pub ready: bool,
    /// `false` when cordoned (draining, interrupted): never a placement target.
    pub schedulable: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot<'a> {
    pub nodes: Vec<ExistingNode<'a>>,
    /// Pods already bound or nominated, with the index of their node in `nodes`; they
    /// count for topology spread and (anti-)affinity.
    pub bound: Vec<(&'a Pod, usize)>,
    /// Pods waiting for a place.
    pub pending: Vec<&'a Pod>,
}

/// Pending pods a decision cannot tell apart, as the Cluster Autoscaler's pod
/// equivalence groups: same owner, namespace, labels (what other pods' selectors read),
/// priority, requests, node selector and affinity, tolerations, topology spread and pod
/// (anti-)affinity. Only their names differ, and a decision reads a name only to break
/// ties in the order it places pods in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodClasses {
    /// The class of each pod, numbered in order of first appearance.
    pub of: Vec<u32>,
    /// How many classes there are.
    pub count: usize,
}

impl PodClasses {
    pub fn of(pods: &[&Pod]) -> Self {
        let mut first: HashMap<ClassKey<'_>, u32, BuildHasherDefault<FxHasher>> =
            HashMap::with_capacity_and_hasher(pods.len(), Default::default());
        let of = pods
            .iter()
            .map(|&pod| {
                let next = first.len() as u32;
                *first.entry(ClassKey(pod)).or_insert(next)
            })
            .collect();
        PodClasses {
            of,
            count: first.len(),
        }
    }
}

impl PodClasses {
    /// Every pod a class of its own: each decided by itself.
    pub fn alone(pods: usize) -> Self {
        PodClasses {
            of: (0..pods as u32).collect(),
            count: pods,
        }
    }

    /// The classes of pods whose class ids the caller keeps (a [`ClassRegistry`]'s, or
    /// any numbering where equal ids mean one class), numbered densely for a decision.
    pub fn from_ids(ids: impl IntoIterator<Item = u32>) -> Self {
        let mut dense: HashMap<u32, u32, BuildHasherDefault<FxHasher>> = HashMap::default();
        let of = ids
            .into_iter()
            .map(|id| {
                let next = dense.len() as u32;
                *dense.entry(id).or_insert(next)
            })
            .collect();
        PodClasses {
            of,
            count: dense.len(),
        }
    }
}

/// Class ids that last beyond one decision: a caller that sees each pod many times (the
/// simulator, at every scan) finds its class once, when the pod appears.
#[derive(Clone, Debug, Default)]
pub struct ClassRegistry {
    /// One pod of each class, by id.
    representatives: Vec<Pod>,
    /// Class ids by the hash of their key.
    by_hash: HashMap<u64, Vec<u32>>,
}

impl ClassRegistry {
    /// The id of `pod`'s class, a new one for a pod unlike every other seen.
    pub fn class_of(&mut self, pod: &Pod) -> u32 {
        let mut h = FxHasher::default();
        ClassKey(pod).hash(&mut h);
        let ids = self.by_hash.entry(h.finish()).or_default();
        if let Some(&id) = ids
            .iter()
            .find(|&&id| same_class(&self.representatives[id as usize], pod))
        {
            return id;
        }
        let id = self.representatives.len() as u32;
        self.representatives.push(pod.clone());
        ids.push(id);
        id
    }
}

/// Do `a` and `b` belong to one class (see [`PodClasses`])?
pub fn same_class(a: &Pod, b: &Pod) -> bool {
    ClassKey(a) == ClassKey(b)
}

/// A pod as its class: compared and hashed by what a decision reads of it.
struct ClassKey<'a>(&'a Pod);

impl PartialEq for ClassKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0, other.0);
        a.priority == b.priority
            && a.requests == b.requests
            && a.namespace == b.namespace
            && a.owner == b.owner
            && a.labels == b.labels
            && a.node_selector == b.node_selector
            && a.required_node_terms == b.required_node_terms
            && a.preferred_node_terms == b.preferred_node_terms
            && a.tolerations == b.tolerations
            && a.spread == b.spread
            && a.affinity == b.affinity
            && a.anti_affinity == b.anti_affinity
    }
}

impl Eq for ClassKey<'_> {}

impl Hash for ClassKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // The fields most likely to differ between workloads; equality checks the rest.
        let pod = self.0;
        pod.priority.hash(h);
        pod.requests.hash(h);
        pod.namespace.hash(h);
        if let Some(owner) = &pod.owner {
            owner.kind.hash(h);
            owner.name.hash(h);
        }
        pod.labels.hash(h);
    }
}

/// Classes are found for every pending pod of every decision: a multiply-rotate hash
/// (as rustc's FxHash) instead of SipHash, whose resistance to chosen keys a pod's own
/// labels do not need.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn finish(&self) -> u64 {
        // The multiply leaves the low bits, which pick the bucket, depending only on
        // the inputs' low bits: fold the high ones down (murmur3's finaliser).
        let mut h = self.0;
        h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}
