//! The observation loop: every `scanInterval`, what the indexes show (nodes by pool,
//! type, zone and state; pending pods; the lower bound) goes to the metrics. Followers
//! publish too: their indexes are as warm. Writes only metrics.

use super::context::{lock, Inputs, Model};
use super::leader::Gate;
use super::provision;
use super::Controller;
use crate::cloud::CloudProvider;
use crate::cluster::state::Target;
use crate::core::constrained_bound::ConstrainedBound;
use crate::core::instance::CapacityType;
use crate::core::lower_bound::LowerBound;
use crate::core::resources::Resources;
use crate::core::shape_bound::ShapeBound;
use crate::metrics::ClusterObservation;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LOOP: &str = "observe";

/// The fluid, shape-aware and constrained bounds over the current model's offerings,
/// with that model's generation (rebuilt when the pools change; they cache their
/// solutions).
#[derive(Default)]
pub struct LowerBoundCache(Mutex<Option<(u64, Bounds)>>);

pub struct Bounds {
    fluid: LowerBound,
    shape: ShapeBound,
    constrained: ConstrainedBound,
}

/// The bounds' hourly rates for one demand (`None` where not finite).
struct Rates {
    fluid: Option<f64>,
    shape: Option<f64>,
    constrained: Option<f64>,
}

/// The last observation with the inputs it was made on: on the same inputs only the
/// pending pods' age moves, so a scan with no change recomputes that alone.
#[derive(Default)]
pub struct ObservationCache(Mutex<Option<(Inputs, ClusterObservation)>>);

impl<P: CloudProvider + 'static> Controller<P> {
    pub async fn observe_loop(self: Arc<Self>, gate: Gate) {
        let every = self.config.settings.scan_interval;
        super::health::every(&self.liveness, LOOP, every, Duration::ZERO, || {
            // Asking publishes `stevedore_leader`, for followers too.
            gate.leading();
            if gate.synced() {
                self.observe(self.now());
            }
            std::future::ready(())
        })
        .await;
    }
}

impl<P: CloudProvider> Controller<P> {
    /// Publishes what the indexes show (nodes by pool, type, zone and state; pending
    /// pods; unavailable offerings) to the metrics.
    pub fn observe(&self, now: f64) {
        let inputs = self.inputs_at(now);
        let mut cached = lock(&self.observed.0);
        let mut obs = match cached.take() {
            Some((i, obs)) if i == inputs => obs,
            _ => self.observation(now),
        };
        obs.oldest_pending = self.oldest_pending(now);
        self.metrics.observe_cluster(&obs);
        *cached = Some((inputs, obs));
    }

    /// How long the oldest unschedulable pod has waited.
    fn oldest_pending(&self, now: f64) -> Option<Duration> {
        self.read()
            .unschedulable_pods()
            .filter(|p| p.created > 0.0)
            .map(|p| p.created)
            .min_by(f64::total_cmp)
            .map(|t| Duration::from_secs_f64((now - t).max(0.0)))
    }

    /// What the indexes show, from scratch.
    fn observation(&self, now: f64) -> ClusterObservation {
        use crate::metrics::{NodeObservation, NodeState};
        let m = self.model();
        let unavailable = self.unavailable_now(now);
        let d = self.decider(&m, &unavailable, now);
        let st = self.read();
        let prepared = st.prepare(&d.inputs());
        let label = |n: &crate::cluster::state::PreparedNode, k: &str| {
            n.labels.get(k).cloned().unwrap_or_default()
        };
        let nodes = prepared
            .nodes
            .iter()
            .map(|n| {
                let claim = n.claim.and_then(|c| st.claim(c));
                let state = match (&n.target, claim) {
                    (Target::Claim(_), _) => NodeState::Launching,
                    (_, Some(c)) if c.deleting_since.is_some() => NodeState::Draining,
                    (_, Some(c)) if !n.ready && !c.ready => NodeState::Launching,
                    _ if !n.ready => NodeState::NotReady,
                    _ => NodeState::Ready,
                };
                NodeObservation {
                    nodepool: n.pool.map(|p| m.pools[p].name.clone()),
                    instance_type: label(n, crate::core::labels::INSTANCE_TYPE),
                    capacity_type: CapacityType::parse(&label(
                        n,
                        crate::core::labels::KARPENTER_CAPACITY_TYPE,
                    ))
                    .unwrap_or(CapacityType::OnDemand),
                    zone: label(n, crate::core::labels::ZONE),
                    state,
                    allocatable: n.allocatable.clone(),
                    requested: n.requested.clone(),
                    price_per_hour: (n.price_per_hour > 0.0).then_some(n.price_per_hour),
                }
            })
            .collect();
        let demand = provision::bound_demand(&prepared, &d.env());
        let rates = self.bound_rates(&m, &demand);
        ClusterObservation {
            pending_pods: prepared.pending.len() as u64,
            oldest_pending: None,
            nodes,
            lower_bound_per_hour: rates.fluid,
            shape_bound_per_hour: rates.shape,
            constrained_bound_per_hour: rates.constrained,
            unavailable_offerings: unavailable.len() as u64,
        }
    }

    /// The fluid, shape-aware and constrained bounds' hourly rates for `demand` over
    /// `m`'s offerings; `None` where not finite (no offering provides some resource).
    fn bound_rates(&self, m: &Model, demand: &provision::BoundDemand) -> Rates {
        let mut cached = lock(&self.lower_bound.0);
        if cached.as_ref().is_none_or(|(g, _)| *g != m.generation) {
            let options = m.model.offering_options(&self.catalog);
            let bounds = Bounds {
                shape: ShapeBound::new(options.clone()),
                constrained: ConstrainedBound::new(options.clone()),
                fluid: LowerBound::new(options),
            };
            *cached = Some((m.generation, bounds));
        }
        let Some((_, b)) = cached.as_mut() else {
            return Rates {
                fluid: None,
                shape: None,
                constrained: None,
            };
        };
        let finite = |r: f64| Some(r).filter(|r| r.is_finite());
        let classes: Vec<(Resources, f64)> = demand
            .classes
            .iter()
            .map(|(r, n)| (r.clone(), *n as f64))
            .collect();
        let mix = b.shape.solve(&classes);
        // The groups of the constraints present, and the bound beside the shape
        // bound's optimum, as the simulator finds them.
        let groups: Vec<u32> = demand
            .allowed
            .iter()
            .map(|a| b.constrained.group(a))
            .collect();
        let pods: Vec<(&Resources, u32, u64)> = demand
            .constrained
            .iter()
            .map(|(r, i, n)| (r, groups[*i], *n))
            .collect();
        let constrained = b.constrained.rate_beside(&pods, &mix, &classes);
        Rates {
            fluid: finite(b.fluid.hourly_rate(&demand.total)),
            shape: finite(mix.rate),
            constrained: finite(constrained),
        }
    }
}
