//! A validated node pool (built from a `kind: NodePool` document by `crate::config`).

use super::labels::Labels;
use super::requirements::Requirement;
use super::resources::Resources;
use super::taints::Taint;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct NodePool {
    pub name: String,
    /// Higher weight pools are tried first.
    pub weight: i32,
    /// Requirements on instance-type, zone and capacity-type labels.
    pub requirements: Vec<Requirement>,
    /// Labels added to every node of the pool.
    pub labels: Labels,
    pub taints: Vec<Taint>,
    /// Taints present while the node starts (removed by an agent); pods need not tolerate
    /// them to be scheduled on the node by the autoscaler's simulation.
    pub startup_taints: Vec<Taint>,
    /// Upper bounds on the total capacity of the pool's nodes. `None` = unlimited.
    pub limits: PoolLimits,
    /// An empty node is removed once it has been empty this long (Karpenter's
    /// `consolidateAfter` for `WhenEmpty`). `None` never removes empty nodes.
    pub empty_node_after: Option<Duration>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolLimits {
    pub cpu_milli: Option<i64>,
    pub memory: Option<i64>,
    /// Limits on extended resources such as `nvidia.com/gpu`.
    pub extended: Vec<(String, i64)>,
}

impl PoolLimits {
    /// Would adding `capacity` to `in_use` break a limit? Returns the resource name.
    pub fn exceeded_by(&self, in_use: &Resources, capacity: &Resources) -> Option<String> {
        if let Some(l) = self.cpu_milli {
            if in_use.cpu_milli + capacity.cpu_milli > l {
                return Some("cpu".into());
            }
        }
        if let Some(l) = self.memory {
            if in_use.memory + capacity.memory > l {
                return Some("memory".into());
            }
        }
        for (name, l) in &self.extended {
            if in_use.extended(name) + capacity.extended(name) > *l {
                return Some(name.clone());
            }
        }
        None
    }
}
