//! Resource vectors: what a pod requests and what a node can hold.

use std::fmt;
use std::sync::Arc;

pub const GPU_NVIDIA: &str = "nvidia.com/gpu";

/// The name of an extended resource: shared, because resource vectors are copied far
/// more often than names are made (every node's room in every decision), and a copied
/// `String` was a heap allocation each time.
pub type ResourceName = Arc<str>;

/// A resource vector. Integers throughout so that fitting is exact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    pub cpu_milli: i64,
    /// Bytes.
    pub memory: i64,
    /// Bytes of ephemeral storage.
    pub ephemeral: i64,
    /// Number of pods.
    pub pods: i64,
    /// Extended resources (`nvidia.com/gpu`, `aws.amazon.com/neuron`, ...), sorted by
    /// name, never holding a zero. Empty for almost every pod, so it costs no allocation.
    pub extended: Vec<(ResourceName, i64)>,
}

impl Resources {
    pub fn new(cpu_milli: i64, memory: i64, pods: i64) -> Self {
        Resources {
            cpu_milli,
            memory,
            pods,
            ..Default::default()
        }
    }

    pub fn extended(&self, name: &str) -> i64 {
        self.extended
            .iter()
            .find(|(n, _)| &**n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Sets resource `name` as Kubernetes names it (`cpu` in millicores, `memory`,
    /// `ephemeral-storage`, `pods`, else an extended resource).
    pub fn set(&mut self, name: &str, value: i64) {
        match name {
            "cpu" => self.cpu_milli = value,
            "memory" => self.memory = value,
            "ephemeral-storage" => self.ephemeral = value,
            "pods" => self.pods = value,
            _ => self.set_extended(name, value),
        }
    }

    pub fn set_extended(&mut self, name: &str, value: i64) {
        self.set_named(name, value, || ResourceName::from(name));
    }

    /// Sets `name` to `value`, making the name with `make` only if it is new here.
    fn set_named(&mut self, name: &str, value: i64, make: impl FnOnce() -> ResourceName) {
        match self.extended.binary_search_by(|(n, _)| (**n).cmp(name)) {
            Ok(i) if value == 0 => {
                self.extended.remove(i);
            }
            Ok(i) => self.extended[i].1 = value,
            Err(_) if value == 0 => {}
            Err(i) => self.extended.insert(i, (make(), value)),
        }
    }

    // The arithmetic is inlined as `exceeds` is: a decision does it per node and per pod.
    #[inline]
    pub fn add(&mut self, other: &Resources) {
        self.cpu_milli += other.cpu_milli;
        self.memory += other.memory;
        self.ephemeral += other.ephemeral;
        self.pods += other.pods;
        for (n, v) in &other.extended {
            let cur = self.extended(n);
            self.set_named(n, cur + v, || n.clone());
        }
    }

    #[inline]
    pub fn sub(&mut self, other: &Resources) {
        self.cpu_milli -= other.cpu_milli;
        self.memory -= other.memory;
        self.ephemeral -= other.ephemeral;
        self.pods -= other.pods;
        for (n, v) in &other.extended {
            let cur = self.extended(n);
            self.set_named(n, cur - v, || n.clone());
        }
    }

    #[inline]
    pub fn plus(&self, other: &Resources) -> Resources {
        let mut r = self.clone();
        r.add(other);
        r
    }

    #[inline]
    pub fn minus(&self, other: &Resources) -> Resources {
        let mut r = self.clone();
        r.sub(other);
        r
    }

    /// Component-wise maximum (how Kubernetes combines init containers with the rest).
    pub fn max_with(&mut self, other: &Resources) {
        self.cpu_milli = self.cpu_milli.max(other.cpu_milli);
        self.memory = self.memory.max(other.memory);
        self.ephemeral = self.ephemeral.max(other.ephemeral);
        self.pods = self.pods.max(other.pods);
        for (n, v) in &other.extended {
            let cur = self.extended(n);
            self.set_named(n, cur.max(*v), || n.clone());
        }
    }

    /// The first resource of `self` that does not fit in `capacity`, if any.
    // Inlined: fitting is asked millions of times a replay (every type of every claim,
    // every node of every placement), mostly in loops that the call itself slowed.
    #[inline]
    pub fn exceeds(&self, capacity: &Resources) -> Option<&str> {
        if self.cpu_milli > capacity.cpu_milli {
            return Some("cpu");
        }
        if self.memory > capacity.memory {
            return Some("memory");
        }
        if self.ephemeral > capacity.ephemeral && self.ephemeral > 0 {
            return Some("ephemeral-storage");
        }
        if self.pods > capacity.pods {
            return Some("pods");
        }
        self.extended
            .iter()
            .find(|(n, v)| *v > capacity.extended(n))
            .map(|(n, _)| &**n)
    }

    #[inline]
    pub fn fits_in(&self, capacity: &Resources) -> bool {
        self.exceeds(capacity).is_none()
    }

    pub fn is_zero(&self) -> bool {
        self.cpu_milli == 0
            && self.memory == 0
            && self.ephemeral == 0
            && self.pods == 0
            && self.extended.is_empty()
    }

    /// Names of extended resources present here.
    pub fn extended_names(&self) -> impl Iterator<Item = &str> {
        self.extended.iter().map(|(n, _)| &**n)
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu={}m memory={}Mi pods={}",
            self.cpu_milli,
            self.memory >> 20,
            self.pods
        )?;
        for (n, v) in &self.extended {
            write!(f, " {n}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_keeps_extended_sorted_and_sparse() {
        let mut a = Resources::new(1000, 1 << 30, 1);
        a.set_extended(GPU_NVIDIA, 2);
        a.set_extended("aws.amazon.com/neuron", 1);
        assert_eq!(&*a.extended[0].0, "aws.amazon.com/neuron");
        let mut b = a.clone();
        b.sub(&a);
        assert!(b.is_zero());
        assert_eq!(
            a.exceeds(&Resources::new(2000, 2 << 30, 10)),
            Some("aws.amazon.com/neuron")
        );
    }
}
