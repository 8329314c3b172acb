//! The discrete-event replay. Time only moves forward through the event queue; every
//! decision is made by `crate::core` on a snapshot of the simulated cluster.
//!
//! This module is the replay's face to the rest of the crate (`run`, `SimOptions`,
//! `SimError`). The simulator itself is one `Sim` value; its behaviour is split by
//! concern, one file each:
//!
//! - `state`: the `Sim`, its nodes and pods, and the bookkeeping every change goes
//!   through (bind, unbind, pod states, terminations, the change counters).
//! - `replay`: `run`, which checks the trace, builds the `Sim` and drives the loop.
//! - `events`: the event queue and what each queued event and trace event does.
//! - `scheduling`: the simulated kube-scheduler and the snapshot every decision sees.
//! - `provisioning`: the autoscaler's provisioning passes and node launches.
//! - `node_groups_mode`: the Cluster Autoscaler's scale-up and scale-down (node groups).
//! - `disruption_pass`: what the fleet disrupts at each scan (empty nodes, expiry,
//!   drift, consolidation), within the pools' budgets.
//! - `in_flight`: disruptions being carried out (cordon, replacements, drain, terminate).
//! - `replica_sets`: which replica a ReplicaSet's scale-down removes (the pods'
//!   deletion cost, `podDeletionCost`).
//! - `eviction`: evictions within PodDisruptionBudgets, and their independent check.
//! - `interruption`: Spot interruption warnings, and moving the doomed nodes' pods.
//! - `live_view`: what the checks made at every scan read of the live nodes, kept
//!   until the nodes change.
//! - `headroom`: the pools' spare capacity (`spec.headroom`) and its report figures.
//! - `accounting`: cost and utilization integrals, samples, and the final `Report`.

use super::setup::SetupError;
use super::Mode;
use crate::core::disruption::ConsolidationPolicy;
use crate::core::nodepool::NodePool;
use thiserror::Error;

mod accounting;
mod disruption_pass;
mod events;
mod eviction;
mod headroom;
mod in_flight;
mod interruption;
mod live_view;
mod node_groups_mode;
mod provisioning;
mod replay;
mod replica_sets;
mod scheduling;
mod state;

pub use replay::run;

#[derive(Clone, Debug)]
pub struct SimOptions {
    pub mode: Mode,
    pub seed: u64,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// `false` turns consolidation off for every pool (as `consolidationPolicy: Never`:
    /// not even empty nodes are removed).
    pub consolidation: bool,
    /// Overrides every fleet pool's `consolidationPolicy` (e.g. `WhenEmpty` to measure
    /// what emptiness alone saves).
    pub policy: Option<ConsolidationPolicy>,
    /// At this time (seconds), the fleet pools become these (same names): nodes that
    /// no longer match drift and are replaced.
    pub pool_change: Option<(f64, Vec<NodePool>)>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            mode: Mode::Fleet,
            seed: 1,
            progress: false,
            consolidation: true,
            policy: None,
            pool_change: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum SimError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("{file}:{line}: {message}")]
    Trace {
        file: String,
        line: usize,
        message: String,
    },
}
