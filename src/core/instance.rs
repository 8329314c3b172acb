//! Instance types and their offerings, as the decision core sees them.

use super::labels::Labels;
use super::resources::Resources;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CapacityType {
    Spot,
    OnDemand,
}

impl CapacityType {
    pub fn as_str(self) -> &'static str {
        match self {
            CapacityType::Spot => "spot",
            CapacityType::OnDemand => "on-demand",
        }
    }

    pub fn parse(s: &str) -> Option<CapacityType> {
        match s {
            "spot" => Some(CapacityType::Spot),
            "on-demand" => Some(CapacityType::OnDemand),
            _ => None,
        }
    }

    pub fn bit(self) -> u8 {
        match self {
            CapacityType::Spot => 1,
            CapacityType::OnDemand => 2,
        }
    }
}

/// One purchasable (instance type, zone, capacity type) with its hourly price.
#[derive(Clone, Debug, PartialEq)]
pub struct Offering {
    /// Index into `Catalog::zones`.
    pub zone: usize,
    pub capacity_type: CapacityType,
    pub price_per_hour: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InstanceType {
    pub name: String,
    /// Instance-type labels (type, arch, os, family, category, generation, size, cpu,
    /// memory, GPU..., under the Kubernetes, Karpenter and stevedore keys). Zone, region,
    /// capacity type, node pool and hostname are added per node, not here.
    pub labels: Labels,
    /// Raw capacity (vCPU, memory, max pods, GPUs...).
    pub capacity: Resources,
    /// What pods may request: capacity minus kubelet/system reservations, eviction
    /// threshold and VM memory overhead. DaemonSet overhead is subtracted per node pool
    /// by the scheduler, not here.
    pub allocatable: Resources,
    pub offerings: Vec<Offering>,
}

impl InstanceType {
    pub fn cheapest_price(&self) -> Option<f64> {
        self.offerings
            .iter()
            .map(|o| o.price_per_hour)
            .min_by(f64::total_cmp)
    }
}

/// The instance catalog of one region: every type with its offerings.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub region: String,
    pub zones: Vec<String>,
    pub types: Vec<InstanceType>,
}

impl Catalog {
    pub fn find(&self, name: &str) -> Option<usize> {
        self.types.iter().position(|t| t.name == name)
    }

    pub fn zone_index(&self, zone: &str) -> Option<usize> {
        self.zones.iter().position(|z| z == zone)
    }
}
