//! The trace simulator: a discrete-event loop with a virtual clock around the decision
//! core, a simulated cloud and a simulated kube-scheduler (the same core, placing only
//! on ready nodes).

pub mod chart;
pub mod cloud;
mod engine;
pub mod report;
pub mod setup;

pub use engine::{run, SimOptions};

/// How new capacity is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Flexible instance types per decision, Spot and on-demand (direct EC2 fleet).
    Fleet,
    /// Fixed groups of one instance type, scaled by count (Auto Scaling groups, as the
    /// Cluster Autoscaler drives them).
    NodeGroups,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Fleet => "fleet",
            Mode::NodeGroups => "node-groups",
        }
    }
}
