//! The decision core: pure functions of a cluster snapshot, the catalog, the node pools
//! and a time passed in. No clock, no I/O, no global state; the simulator and the
//! controller call the same code.

pub mod budget;
pub mod consolidation;
pub mod constrained_bound;
pub mod cron;
pub mod deletion_cost;
pub mod disruption;
pub mod fit_index;
pub mod headroom;
pub mod instance;
pub mod labels;
pub mod lower_bound;
pub mod mix;
pub mod model;
pub mod node_groups;
pub mod nodepool;
pub mod pdb;
pub mod pod;
pub mod quantity;
pub mod requirements;
pub mod resources;
pub mod rng;
pub mod scheduler;
pub mod shape_bound;
pub mod snapshot;
pub mod taints;
pub mod topology;
pub mod unavailable;
pub mod workload_mix;
