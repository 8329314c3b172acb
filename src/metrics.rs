//! Prometheus metrics for the controller, served on `/metrics`.
//!
//! The controller owns one [`Metrics`] and feeds it through typed methods: a
//! [`ClusterObservation`] built from each snapshot ([`Metrics::observe_cluster`]), and one
//! call per decision, launch, cloud call and Kubernetes API call. Every label value comes
//! either from a closed enum here or from the configuration and the instance catalog (node
//! pools, instance types, zones), so the number of series stays bounded. Every metric is
//! described in docs/metrics.md; the Grafana dashboard in `charts/stevedore/dashboards/`
//! uses these names.

use crate::core::instance::CapacityType;
use crate::core::resources::{Resources, GPU_NVIDIA};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// The prefix of every metric name.
pub const PREFIX: &str = "stevedore";

/// The resources utilization is reported for, as the `resource` label values. Units are
/// the base units: cores, bytes, devices, pods.
pub const RESOURCES: [&str; 4] = ["cpu", "memory", "gpu", "pods"];

/// A node's lifecycle state as the `state` label of `stevedore_nodes_by_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeState {
    /// Launched (a NodeClaim or a cloud instance exists) but not Ready yet.
    Launching,
    Ready,
    /// Cordoned/tainted by stevedore and being emptied before deletion.
    Draining,
    /// Was Ready, is not now (kubelet stopped reporting).
    NotReady,
}

impl NodeState {
    pub const ALL: [NodeState; 4] = [
        NodeState::Launching,
        NodeState::Ready,
        NodeState::Draining,
        NodeState::NotReady,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Launching => "launching",
            NodeState::Ready => "ready",
            NodeState::Draining => "draining",
            NodeState::NotReady => "not_ready",
        }
    }
}

/// One node as the controller sees it in a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeObservation {
    /// The stevedore node pool; `None` for nodes stevedore does not manage (they count in
    /// the cluster-wide figures only).
    pub nodepool: Option<String>,
    pub instance_type: String,
    pub capacity_type: CapacityType,
    pub zone: String,
    pub state: NodeState,
    /// Allocatable as the kubelet reports it (`pods` = max pods).
    pub allocatable: Resources,
    /// Sum of the requests of the pods bound to the node, `pods` = their number.
    pub requested: Resources,
    /// The offering's price in USD per hour, when the catalog knows it.
    pub price_per_hour: Option<f64>,
}

/// What one snapshot says, filled by the controller and passed to
/// [`Metrics::observe_cluster`]. Replaces everything the previous observation set, so
/// pools, types and zones that are gone stop being exported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterObservation {
    /// Pods the kube-scheduler marked unschedulable and stevedore considers.
    pub pending_pods: u64,
    /// Age of the oldest of them.
    pub oldest_pending: Option<Duration>,
    pub nodes: Vec<NodeObservation>,
    /// The fluid lower bound of the hourly cost of the current demand
    /// (`core::lower_bound`), when it was computed.
    pub lower_bound_per_hour: Option<f64>,
    /// The shape-aware bound (`core::shape_bound`: every pod whole), when computed.
    pub shape_bound_per_hour: Option<f64>,
    /// The shape bound with each pod kept to the offerings its node constraints allow
    /// (`core::constrained_bound`), when computed.
    pub constrained_bound_per_hour: Option<f64>,
    /// Offerings currently skipped after a capacity failure (`core::unavailable`).
    pub unavailable_offerings: u64,
}

/// Which loop made a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    Provisioning,
    Disruption,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Provisioning => "provisioning",
            DecisionKind::Disruption => "disruption",
        }
    }
}

/// What a decision did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecisionResult {
    /// Nodes launched (provisioning) or removed/replaced (disruption).
    Acted,
    /// Nothing needed doing.
    NoAction,
    /// Something should have been done but a limit stopped it: pool limits, a
    /// PodDisruptionBudget, a disruption budget, do-not-disrupt pods.
    Blocked,
    /// Some pods fit no offering any pool allows.
    Infeasible,
    /// The decision could not be carried out (cloud or API error).
    Failed,
    /// `--dry-run`: decided and logged, not carried out.
    DryRun,
}

impl DecisionResult {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionResult::Acted => "acted",
            DecisionResult::NoAction => "no_action",
            DecisionResult::Blocked => "blocked",
            DecisionResult::Infeasible => "infeasible",
            DecisionResult::Failed => "failed",
            DecisionResult::DryRun => "dry_run",
        }
    }
}

/// Why a decision was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecisionReason {
    /// Unschedulable pods.
    PendingPods,
    /// Utilization thresholds or spare-capacity headroom (`core::headroom`).
    Headroom,
    /// An empty node.
    Empty,
    /// A node whose pods fit elsewhere or on a cheaper node.
    Underutilized,
    /// The node no longer matches its pool.
    Drifted,
    /// `expireAfter` passed.
    Expired,
    /// A Spot interruption or a scheduled event.
    Interrupted,
}

impl DecisionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionReason::PendingPods => "pending_pods",
            DecisionReason::Headroom => "headroom",
            DecisionReason::Empty => "empty",
            DecisionReason::Underutilized => "underutilized",
            DecisionReason::Drifted => "drifted",
            DecisionReason::Expired => "expired",
            DecisionReason::Interrupted => "interrupted",
        }
    }
}

/// One decision, for [`Metrics::record_decision`].
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionRecord {
    pub kind: DecisionKind,
    pub result: DecisionResult,
    pub reason: DecisionReason,
    /// Wall time the decision core took.
    pub duration: Duration,
    /// Pods nominated onto new or existing nodes, by node pool.
    pub nominated: Vec<(String, u64)>,
}

/// Why a launch failed, as the `reason` label of `stevedore_launch_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LaunchFailure {
    /// The cloud had no capacity for the offering (EC2 `InsufficientInstanceCapacity`,
    /// Spot `UnfulfillableCapacity`...).
    InsufficientCapacity,
    /// An account limit (vCPU quota, `MaxSpotInstanceCountExceeded`...).
    Quota,
    /// The node did not register or become Ready in time.
    Timeout,
    /// The cloud refused the credentials or the permission.
    Unauthorized,
    /// The request was invalid (bad launch template, subnet, AMI...).
    InvalidRequest,
    Other,
}

impl LaunchFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchFailure::InsufficientCapacity => "insufficient_capacity",
            LaunchFailure::Quota => "quota",
            LaunchFailure::Timeout => "timeout",
            LaunchFailure::Unauthorized => "unauthorized",
            LaunchFailure::InvalidRequest => "invalid_request",
            LaunchFailure::Other => "other",
        }
    }
}

/// One launch attempt of one offering, for [`Metrics::record_launch`].
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchRecord<'a> {
    pub nodepool: &'a str,
    pub instance_type: &'a str,
    pub capacity_type: CapacityType,
    pub zone: &'a str,
    /// `Ok(())` when an instance was created.
    pub outcome: Result<(), LaunchFailure>,
}

// Decisions take microseconds to a second (a 20,000-pod decision is ~0.25 s).
const DECISION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
// Cloud and API calls: milliseconds to tens of seconds (CreateFleet can take seconds).
const CALL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The controller's metrics registry.
pub struct Metrics {
    pub registry: Registry,
    // Held while an observation replaces the gauges and while rendering, so a scrape never
    // sees the half-reset state between two observations.
    observe: Mutex<()>,
    pending_pods: IntGauge,
    oldest_pending: prometheus::Gauge,
    nodepool_requested: GaugeVec,
    nodepool_allocatable: GaugeVec,
    nodepool_utilization: GaugeVec,
    cluster_requested: GaugeVec,
    cluster_allocatable: GaugeVec,
    cluster_utilization: GaugeVec,
    nodepool_pods_per_node: GaugeVec,
    nodes: IntGaugeVec,
    nodes_by_state: IntGaugeVec,
    nodes_cost: GaugeVec,
    lower_bound_cost: prometheus::Gauge,
    shape_bound_cost: prometheus::Gauge,
    constrained_bound_cost: prometheus::Gauge,
    offerings_unavailable: IntGauge,
    decisions: IntCounterVec,
    decision_duration: HistogramVec,
    pods_nominated: IntCounterVec,
    launches: IntCounterVec,
    launch_failures: IntCounterVec,
    offerings_marked_unavailable: IntCounterVec,
    cloud_duration: HistogramVec,
    cloud_errors: IntCounterVec,
    api_duration: HistogramVec,
    api_errors: IntCounterVec,
    leader: IntGauge,
    build_info: IntGaugeVec,
    loop_last_completed: GaugeVec,
    drain_waiting_pods: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn name(n: &str) -> String {
    format!("{PREFIX}_{n}")
}

impl Metrics {
    /// Every metric registered, gauges at zero, `stevedore_build_info` set.
    pub fn new() -> Metrics {
        // Registration only fails on a duplicate or malformed name: a programming error
        // that the unit tests catch, not a runtime condition.
        Self::try_new().expect("metric definitions are valid and unique")
    }

    pub fn try_new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m;
                registry.register(Box::new(m.clone()))?;
                m
            }};
        }
        let opts = |n: &str, help: &str| Opts::new(name(n), help);
        let hist = |n: &str, help: &str, buckets: &[f64]| {
            HistogramOpts::new(name(n), help).buckets(buckets.to_vec())
        };
        let m = Metrics {
            observe: Mutex::new(()),
            pending_pods: reg!(IntGauge::with_opts(opts(
                "pending_pods",
                "Unschedulable pods stevedore is trying to place."
            ))?),
            oldest_pending: reg!(prometheus::Gauge::with_opts(opts(
                "pending_pods_oldest_age_seconds",
                "Age of the oldest unschedulable pod (0 when none)."
            ))?),
            nodepool_requested: reg!(GaugeVec::new(
                opts(
                    "nodepool_requested",
                    "Resources requested by pods on the pool's nodes (cores, bytes, devices, pods)."
                ),
                &["nodepool", "resource"]
            )?),
            nodepool_allocatable: reg!(GaugeVec::new(
                opts(
                    "nodepool_allocatable",
                    "Allocatable resources of the pool's nodes (cores, bytes, devices, pods)."
                ),
                &["nodepool", "resource"]
            )?),
            nodepool_utilization: reg!(GaugeVec::new(
                opts(
                    "nodepool_utilization_ratio",
                    "Requested / allocatable of the pool's nodes (absent when allocatable is 0)."
                ),
                &["nodepool", "resource"]
            )?),
            cluster_requested: reg!(GaugeVec::new(
                opts(
                    "cluster_requested",
                    "Resources requested by pods on all nodes, managed or not."
                ),
                &["resource"]
            )?),
            cluster_allocatable: reg!(GaugeVec::new(
                opts(
                    "cluster_allocatable",
                    "Allocatable resources of all nodes, managed or not."
                ),
                &["resource"]
            )?),
            cluster_utilization: reg!(GaugeVec::new(
                opts(
                    "cluster_utilization_ratio",
                    "Requested / allocatable over all nodes (absent when allocatable is 0)."
                ),
                &["resource"]
            )?),
            nodepool_pods_per_node: reg!(GaugeVec::new(
                opts(
                    "nodepool_pods_per_node",
                    "Pods bound per node of the pool: stat=\"avg\" or \"max\"."
                ),
                &["nodepool", "stat"]
            )?),
            nodes: reg!(IntGaugeVec::new(
                opts("nodes", "Nodes stevedore manages."),
                &["nodepool", "instance_type", "capacity_type", "zone"]
            )?),
            nodes_by_state: reg!(IntGaugeVec::new(
                opts(
                    "nodes_by_state",
                    "Nodes stevedore manages by lifecycle state (launching, ready, draining, not_ready)."
                ),
                &["nodepool", "state"]
            )?),
            nodes_cost: reg!(GaugeVec::new(
                opts(
                    "nodes_hourly_cost_dollars",
                    "Estimated cost per hour of the managed nodes, in USD, at catalog prices."
                ),
                &["nodepool", "capacity_type"]
            )?),
            lower_bound_cost: reg!(prometheus::Gauge::with_opts(opts(
                "lower_bound_hourly_cost_dollars",
                "Fluid lower bound of the hourly cost of the current demand, in USD."
            ))?),
            shape_bound_cost: reg!(prometheus::Gauge::with_opts(opts(
                "shape_bound_hourly_cost_dollars",
                "Shape-aware lower bound (every pod whole) of the hourly cost of the current demand, in USD."
            ))?),
            constrained_bound_cost: reg!(prometheus::Gauge::with_opts(opts(
                "constrained_bound_hourly_cost_dollars",
                "Shape-aware lower bound with each pod on the offerings its taints, node selector and node affinity allow, of the hourly cost of the current demand, in USD."
            ))?),
            offerings_unavailable: reg!(IntGauge::with_opts(opts(
                "offerings_unavailable",
                "Offerings (type, zone, capacity type) currently skipped after a capacity failure."
            ))?),
            decisions: reg!(IntCounterVec::new(
                opts(
                    "decisions_total",
                    "Provisioning and disruption decisions by result and reason."
                ),
                &["kind", "result", "reason"]
            )?),
            decision_duration: reg!(HistogramVec::new(
                hist(
                    "decision_duration_seconds",
                    "Wall time of one decision of the core.",
                    DECISION_BUCKETS
                ),
                &["kind"]
            )?),
            pods_nominated: reg!(IntCounterVec::new(
                opts(
                    "pods_nominated_total",
                    "Pods nominated onto a new or existing node, by node pool."
                ),
                &["nodepool"]
            )?),
            launches: reg!(IntCounterVec::new(
                opts("launches_total", "Instances launched."),
                &["nodepool", "instance_type", "capacity_type", "zone"]
            )?),
            launch_failures: reg!(IntCounterVec::new(
                opts("launch_failures_total", "Launch attempts that failed, by reason."),
                &["nodepool", "capacity_type", "reason"]
            )?),
            offerings_marked_unavailable: reg!(IntCounterVec::new(
                opts(
                    "offerings_marked_unavailable_total",
                    "Times an offering was marked unavailable after a capacity failure."
                ),
                &["instance_type", "capacity_type", "zone"]
            )?),
            cloud_duration: reg!(HistogramVec::new(
                hist(
                    "cloud_request_duration_seconds",
                    "Duration of cloud provider calls, errors included.",
                    CALL_BUCKETS
                ),
                &["operation"]
            )?),
            cloud_errors: reg!(IntCounterVec::new(
                opts("cloud_request_errors_total", "Cloud provider calls that failed."),
                &["operation"]
            )?),
            api_duration: reg!(HistogramVec::new(
                hist(
                    "kube_request_duration_seconds",
                    "Duration of Kubernetes API calls, errors included.",
                    CALL_BUCKETS
                ),
                &["verb", "resource"]
            )?),
            api_errors: reg!(IntCounterVec::new(
                opts("kube_request_errors_total", "Kubernetes API calls that failed."),
                &["verb", "resource"]
            )?),
            leader: reg!(IntGauge::with_opts(opts(
                "leader",
                "1 when this replica holds the leader Lease and acts, 0 when it stands by."
            ))?),
            build_info: reg!(IntGaugeVec::new(
                opts("build_info", "Always 1; the labels say which build runs."),
                &["version"]
            )?),
            loop_last_completed: reg!(GaugeVec::new(
                opts(
                    "loop_last_completed_timestamp_seconds",
                    "When each controller loop last completed an iteration (Unix time)."
                ),
                &["loop"]
            )?),
            drain_waiting_pods: reg!(IntGauge::with_opts(opts(
                "drain_waiting_pods",
                "Pods on nodes being drained that are not evicted yet (a PodDisruptionBudget or a pending eviction holds them)."
            ))?),
            registry,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(m)
    }

    /// Everything registered, in the Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let _guard = self.observe.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for I/O reasons; a metric family that cannot
        // be encoded is dropped rather than failing the scrape.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Replaces every snapshot-derived gauge with what `obs` says.
    pub fn observe_cluster(&self, obs: &ClusterObservation) {
        let _guard = self.observe.lock().unwrap_or_else(|p| p.into_inner());
        self.pending_pods.set(clamp_i64(obs.pending_pods));
        self.oldest_pending
            .set(obs.oldest_pending.map_or(0.0, |d| d.as_secs_f64()));
        self.lower_bound_cost
            .set(obs.lower_bound_per_hour.unwrap_or(0.0));
        self.shape_bound_cost
            .set(obs.shape_bound_per_hour.unwrap_or(0.0));
        self.constrained_bound_cost
            .set(obs.constrained_bound_per_hour.unwrap_or(0.0));
        self.offerings_unavailable
            .set(clamp_i64(obs.unavailable_offerings));

        for v in [
            &self.nodepool_requested,
            &self.nodepool_allocatable,
            &self.nodepool_utilization,
            &self.cluster_requested,
            &self.cluster_allocatable,
            &self.cluster_utilization,
            &self.nodepool_pods_per_node,
            &self.nodes_cost,
        ] {
            v.reset();
        }
        self.nodes.reset();
        self.nodes_by_state.reset();

        let mut cluster = Usage::default();
        let mut pools: BTreeMap<&str, Usage> = BTreeMap::new();
        let mut cost: BTreeMap<(&str, &str), f64> = BTreeMap::new();
        for n in &obs.nodes {
            cluster.add(n);
            let Some(pool) = n.nodepool.as_deref() else {
                continue;
            };
            pools.entry(pool).or_default().add(n);
            self.nodes
                .with_label_values(&[pool, &n.instance_type, n.capacity_type.as_str(), &n.zone])
                .inc();
            self.nodes_by_state
                .with_label_values(&[pool, n.state.as_str()])
                .inc();
            if let Some(p) = n.price_per_hour {
                *cost.entry((pool, n.capacity_type.as_str())).or_default() += p;
            }
        }
        for (i, r) in RESOURCES.iter().enumerate() {
            self.cluster_requested
                .with_label_values(&[*r])
                .set(cluster.requested[i]);
            self.cluster_allocatable
                .with_label_values(&[*r])
                .set(cluster.allocatable[i]);
            if let Some(u) = cluster.ratio(i) {
                self.cluster_utilization.with_label_values(&[*r]).set(u);
            }
        }
        for (pool, u) in &pools {
            for (i, r) in RESOURCES.iter().enumerate() {
                self.nodepool_requested
                    .with_label_values(&[*pool, *r])
                    .set(u.requested[i]);
                self.nodepool_allocatable
                    .with_label_values(&[*pool, *r])
                    .set(u.allocatable[i]);
                if let Some(ratio) = u.ratio(i) {
                    self.nodepool_utilization
                        .with_label_values(&[*pool, *r])
                        .set(ratio);
                }
            }
            // Every state is exported, zeros included, so a dashboard's stacked series
            // do not appear and vanish.
            for s in NodeState::ALL {
                self.nodes_by_state.with_label_values(&[*pool, s.as_str()]);
            }
            self.nodepool_pods_per_node
                .with_label_values(&[*pool, "avg"])
                .set(u.requested[3] / u.nodes as f64);
            self.nodepool_pods_per_node
                .with_label_values(&[*pool, "max"])
                .set(u.max_pods);
        }
        for ((pool, ct), c) in cost {
            self.nodes_cost.with_label_values(&[pool, ct]).set(c);
        }
    }

    /// Counts one decision of the provisioning or disruption loop.
    pub fn record_decision(&self, d: &DecisionRecord) {
        self.decisions
            .with_label_values(&[d.kind.as_str(), d.result.as_str(), d.reason.as_str()])
            .inc();
        self.decision_duration
            .with_label_values(&[d.kind.as_str()])
            .observe(d.duration.as_secs_f64());
        for (pool, n) in &d.nominated {
            self.pods_nominated
                .with_label_values(&[pool.as_str()])
                .inc_by(*n);
        }
    }

    /// Counts one launch attempt; a capacity failure also counts the offering as marked
    /// unavailable, as `core::unavailable` then skips it.
    pub fn record_launch(&self, l: &LaunchRecord) {
        let ct = l.capacity_type.as_str();
        match l.outcome {
            Ok(()) => self
                .launches
                .with_label_values(&[l.nodepool, l.instance_type, ct, l.zone])
                .inc(),
            Err(reason) => {
                self.launch_failures
                    .with_label_values(&[l.nodepool, ct, reason.as_str()])
                    .inc();
                if reason == LaunchFailure::InsufficientCapacity {
                    self.record_offering_unavailable(l.instance_type, l.capacity_type, l.zone);
                }
            }
        }
    }

    /// Counts an offering marked unavailable for a reason other than a failed launch of
    /// ours (a Spot interruption warning, a capacity-rebalance notice).
    pub fn record_offering_unavailable(
        &self,
        instance_type: &str,
        capacity_type: CapacityType,
        zone: &str,
    ) {
        self.offerings_marked_unavailable
            .with_label_values(&[instance_type, capacity_type.as_str(), zone])
            .inc();
    }

    /// One cloud provider call. `operation` is a fixed name such as `"CreateFleet"`
    /// (`&'static str` keeps the label set bounded).
    pub fn record_cloud_call(&self, operation: &'static str, seconds: f64, ok: bool) {
        self.cloud_duration
            .with_label_values(&[operation])
            .observe(seconds);
        if !ok {
            self.cloud_errors.with_label_values(&[operation]).inc();
        }
    }

    /// One Kubernetes API call, e.g. (`"create"`, `"pods/eviction"`).
    pub fn record_api_call(
        &self,
        verb: &'static str,
        resource: &'static str,
        seconds: f64,
        ok: bool,
    ) {
        self.api_duration
            .with_label_values(&[verb, resource])
            .observe(seconds);
        if !ok {
            self.api_errors.with_label_values(&[verb, resource]).inc();
        }
    }

    /// Whether this replica holds the leader Lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Controller loop `name` completed an iteration now.
    pub fn loop_completed(&self, name: &str) {
        self.loop_last_completed
            .with_label_values(&[name])
            .set(crate::cluster::wall_clock());
    }

    /// Pods on draining nodes still waiting for their eviction.
    pub fn set_drain_waiting(&self, pods: usize) {
        self.drain_waiting_pods.set(clamp_i64(pods as u64));
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Sums over a set of nodes, in the order of [`RESOURCES`].
#[derive(Default)]
struct Usage {
    requested: [f64; 4],
    allocatable: [f64; 4],
    nodes: u64,
    max_pods: f64,
}

impl Usage {
    fn add(&mut self, n: &NodeObservation) {
        let req = base_units(&n.requested);
        let alloc = base_units(&n.allocatable);
        for i in 0..4 {
            self.requested[i] += req[i];
            self.allocatable[i] += alloc[i];
        }
        self.nodes += 1;
        self.max_pods = self.max_pods.max(req[3]);
    }

    fn ratio(&self, i: usize) -> Option<f64> {
        (self.allocatable[i] > 0.0).then(|| self.requested[i] / self.allocatable[i])
    }
}

/// cpu in cores, memory in bytes, NVIDIA GPUs, pods.
fn base_units(r: &Resources) -> [f64; 4] {
    [
        r.cpu_milli as f64 / 1000.0,
        r.memory as f64,
        r.extended(GPU_NVIDIA) as f64,
        r.pods as f64,
    ]
}

#[cfg(test)]
mod tests;
