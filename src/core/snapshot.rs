//! The input of a decision: what the cluster looks like right now, as plain data.
//! The simulator builds it from its own state; the controller will build it from
//! reflector stores. Nothing here refers to an API type.

use super::labels::Labels;
use super::pod::Pod;
use super::resources::Resources;
use super::taints::Taint;

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
