//! The simulated cloud: launches succeed unless a `capacity_unavailable` window of the
//! trace covers the offering, as EC2 answers InsufficientInstanceCapacity.

use crate::core::instance::{CapacityType, Catalog};
use crate::core::scheduler::LaunchOption;

#[derive(Clone, Debug)]
struct Shortage {
    instance_type: String,
    zone: String,
    capacity_type: String,
    from: f64,
    until: f64,
}

#[derive(Clone, Debug, Default)]
pub struct SimCloud {
    shortages: Vec<Shortage>,
}

fn matches(pattern: &str, value: &str) -> bool {
    pattern == "*" || pattern == value
}

impl SimCloud {
    pub fn add_shortage(
        &mut self,
        instance_type: &str,
        zone: &str,
        capacity_type: &str,
        from: f64,
        for_s: f64,
    ) {
        self.shortages.push(Shortage {
            instance_type: instance_type.into(),
            zone: zone.into(),
            capacity_type: capacity_type.into(),
            from,
            until: from + for_s,
        });
    }

    /// Drops windows that are over.
    pub fn expire(&mut self, now: f64) {
        self.shortages.retain(|s| s.until > now);
    }

    pub fn has_capacity(
        &self,
        catalog: &Catalog,
        ty: usize,
        zone: usize,
        ct: CapacityType,
        now: f64,
    ) -> bool {
        let name = &catalog.types[ty].name;
        let zone = &catalog.zones[zone];
        !self.shortages.iter().any(|s| {
            s.from <= now
                && now < s.until
                && matches(&s.instance_type, name)
                && matches(&s.zone, zone)
                && matches(&s.capacity_type, ct.as_str())
        })
    }

    /// A fleet-style launch: the first option (they come cheapest first, as
    /// price-capacity-optimized mostly picks) that has capacity. `None` when every option
    /// is short: the caller marks them all unavailable.
    pub fn launch(&self, catalog: &Catalog, options: &[LaunchOption], now: f64) -> Option<usize> {
        options
            .iter()
            .position(|o| self.has_capacity(catalog, o.instance_type, o.zone, o.capacity_type, now))
    }
}
