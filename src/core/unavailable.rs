//! Offerings that recently failed to launch (insufficient capacity), skipped until
//! their entry expires. Time is passed in; the core never reads a clock.

use super::instance::CapacityType;
use std::collections::HashMap;

#[derive(Clone, Debug, Default)]
pub struct UnavailableOfferings {
    /// (instance type index, zone index, capacity type) -> expiry time in seconds.
    until: HashMap<(usize, usize, CapacityType), f64>,
    /// Counts the changes to the set (marks and expiries): equal generations mean equal
    /// answers, so a caller may keep a decision made with it.
    generation: u64,
}

impl UnavailableOfferings {
    pub fn mark(&mut self, ty: usize, zone: usize, ct: CapacityType, now: f64, ttl_s: f64) {
        self.until.insert((ty, zone, ct), now + ttl_s);
        self.generation += 1;
    }

    pub fn is_unavailable(&self, ty: usize, zone: usize, ct: CapacityType, now: f64) -> bool {
        self.until
            .get(&(ty, zone, ct))
            .is_some_and(|&until| now < until)
    }

    /// Drops expired entries so the map stays small over long runs.
    pub fn expire(&mut self, now: f64) {
        let before = self.until.len();
        self.until.retain(|_, until| now < *until);
        if self.until.len() != before {
            self.generation += 1;
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}
