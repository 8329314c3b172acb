//! The in-cluster controller: the same decisions the simulator makes, on the cluster the
//! watches mirror, acted on through the Kubernetes API and a [`CloudProvider`].
//!
//! Shape (after linkerd2's policy controller): watches apply objects to in-memory
//! indexes ([`ClusterState`], plain synchronous calls); decisions are pure functions of
//! those indexes ([`provision::plan`], [`lifecycle::step`], `core::consolidation`) that
//! return data; the `Controller` methods below carry that data out, and the loop calls
//! them only while this replica holds the leader Lease. A follower keeps its indexes
//! warm and takes over within one lease duration.

pub mod groups;
pub mod http;
pub mod lifecycle;
pub mod provision;
pub mod record;
pub mod stale;

use crate::cloud::{
    CloudError, CloudProvider, Instance, Interruption, InterruptionKind, InterruptionSource,
    LaunchRequest, NodeGroupProvider,
};
use crate::cluster::convert::{ClaimEntry, NodeEntry};
use crate::cluster::crd::{NodeClaim, NodeClaimStatus, TERMINATION_FINALIZER};
use crate::cluster::lease::LeaderElector;
use crate::cluster::state::Prepared;
use crate::cluster::state::{ClusterState, Target, DISRUPTED_TAINT};
use crate::cluster::watch::{Signal, WATCHED};
use crate::cluster::{rfc3339, wall_clock};
use crate::config::{Config, NodePoolExtras};
use crate::core::budget::{self, Reason};
use crate::core::consolidation::{self, DemandWindow, NodeCost};
use crate::core::disruption::{self, PoolDisruption};
use crate::core::instance::{CapacityType, Catalog};
use crate::core::model::SchedulingModel;
use crate::core::nodepool::NodePool;
use crate::core::pod::Pod as CorePod;
use crate::core::resources::Resources;
use crate::core::rng::Rng;
use crate::core::unavailable::UnavailableOfferings;
use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Node, ObjectReference, Pod};
use kube::api::{Api, DeleteParams, EvictParams, Patch, PatchParams, PostParams};
use provision::{Decider, NewClaim, Plan};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Immediate re-decisions after launches that found no capacity (as the simulator).
const MAX_LAUNCH_ROUNDS: usize = 64;
/// Nodes tried per consolidation pass (as the simulator).
const CONSOLIDATION_CANDIDATES: usize = 10;
/// Pod events posted concurrently.
const EVENTS_IN_FLIGHT: usize = 32;
/// Objects whose last event message is remembered (to not repeat it).
const MAX_REMEMBERED_EVENTS: usize = 200_000;
/// Eviction retry backoff: first and longest wait after a 429.
const EVICT_BACKOFF_MIN_S: f64 = 1.0;
const EVICT_BACKOFF_MAX_S: f64 = 60.0;

/// Where nodes come from: NodeClaims launched one by one from the pools' offerings, or
/// fixed groups scaled by count (the Cluster Autoscaler's way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Fleet,
    NodeGroups,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    pub cluster_name: String,
    /// Where the leader Lease and the controller's own events live.
    pub namespace: String,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
    pub lease_name: String,
    pub leader_elect: bool,
    pub lease_duration: Duration,
    pub renew_every: Duration,
    /// How often the lease is looked at (a follower notices a dead leader this fast).
    pub lease_poll: Duration,
    pub dry_run: bool,
    /// A launched instance must become a Node within this, or its claim is deleted.
    pub registration_timeout: Duration,
    /// An instance tagged for a NodeClaim that no longer exists is terminated after this.
    pub orphan_grace: Duration,
    /// Schedulers whose unschedulable pods stevedore provisions for.
    pub schedulers: Vec<String>,
    /// How often NodeClaims are moved along (launch, register, drain, terminate).
    pub lifecycle_every: Duration,
    pub gc_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Fleet,
            cluster_name: "stevedore".into(),
            namespace: "default".into(),
            identity: "stevedore-0".into(),
            lease_name: "stevedore-leader".into(),
            leader_elect: true,
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            lease_poll: Duration::from_secs(1),
            dry_run: false,
            registration_timeout: Duration::from_secs(15 * 60),
            orphan_grace: Duration::from_secs(5 * 60),
            schedulers: vec!["default-scheduler".into()],
            lifecycle_every: Duration::from_secs(2),
            gc_every: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cloud: {0}")]
    Cloud(#[from] CloudError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The pools and the scheduling model, rebuilt when NodePools or DaemonSets change.
pub struct Model {
    generation: u64,
    pub pools: Vec<NodePool>,
    pub extras: Vec<NodePoolExtras>,
    pub model: SchedulingModel,
}

/// What one provisioning call did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProvisionReport {
    pub pending: usize,
    pub claims_created: usize,
    pub launched: usize,
    pub launch_failures: usize,
    /// Wall-clock milliseconds of each decision (core solve plus snapshot building).
    pub decision_ms: Vec<f64>,
}

pub struct Controller<P> {
    client: kube::Client,
    cloud: P,
    config: Config,
    catalog: Arc<Catalog>,
    pub opts: Options,
    pub state: Arc<RwLock<ClusterState>>,
    unavailable: Mutex<UnavailableOfferings>,
    model: Mutex<Option<Arc<Model>>>,
    /// Per pod (ns/name): (next eviction attempt, current backoff), after a 429.
    backoff: Mutex<HashMap<String, (f64, f64)>>,
    /// Last event message per object, so a repeated decision does not repeat events.
    said: Mutex<HashMap<String, String>>,
    names: Mutex<Rng>,
    pub metrics: Arc<Metrics>,
    /// Recent peak demand consolidation keeps room for (`consolidationWindow`).
    demand: Mutex<DemandWindow>,
    /// The fluid lower bound over the current model's offerings, with that model's
    /// generation (rebuilt when the pools change; it caches its solutions).
    lower_bound: Mutex<Option<(u64, crate::core::lower_bound::LowerBound)>>,
    /// Node-groups mode: since when each node has been under the utilization threshold.
    unneeded: Mutex<HashMap<String, f64>>,
}

/// The object an Event about a pod points at.
fn pod_ref(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        ..Default::default()
    }
}

/// Requests of the pods that do not end by themselves (DaemonSets' excluded), bound or
/// waiting: the demand consolidation keeps room for, as the simulator measures it. Read
/// straight from the indexes: it is recorded every scan, settled or not.
fn service_demand(st: &ClusterState) -> Resources {
    let mut demand = Resources::default();
    for p in st.pods() {
        let holds_room = !p.terminal && (p.node.is_some() || p.unschedulable);
        if holds_room && !p.pod.is_daemonset() && !disruption::runs_to_completion(&p.pod) {
            demand.add(&p.pod.requests);
        }
    }
    demand
}

/// How many more nodes each pool may disrupt now for `reason`: its budgets over its
/// nodes, less the claims already being deleted (as the simulator counts them).
fn budget_left(
    prepared: &Prepared,
    pools: &[PoolDisruption],
    reason: Reason,
    now: f64,
) -> Vec<usize> {
    let mut total = vec![0usize; pools.len()];
    let mut disrupting = vec![0usize; pools.len()];
    for n in &prepared.nodes {
        if let Some(p) = n.pool {
            total[p] += 1;
            disrupting[p] += usize::from(!n.schedulable);
        }
    }
    pools
        .iter()
        .enumerate()
        .map(|(p, pool)| {
            budget::allowed(&pool.budgets, reason, total[p], disrupting[p], now as i64)
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// JSON merge patch removing our finalizer (keeping any others).
fn finalizer_patch(claim: &NodeClaim) -> serde_json::Value {
    let rest: Vec<String> = claim
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != TERMINATION_FINALIZER)
        .cloned()
        .collect();
    serde_json::json!({"metadata": {"finalizers": rest}})
}

impl<P: CloudProvider> Controller<P> {
    pub fn new(
        client: kube::Client,
        cloud: P,
        config: Config,
        catalog: Arc<Catalog>,
        opts: Options,
    ) -> Self {
        let seed = wall_clock().to_bits() ^ u64::from(std::process::id());
        let metrics = Arc::new(Metrics::new());
        Controller {
            state: Arc::new(RwLock::new(ClusterState::new(opts.schedulers.clone()))),
            // One choke point times and counts every API call this controller makes.
            client: crate::cluster::metered::client(client, metrics.clone()),
            cloud,
            config,
            catalog,
            opts,
            unavailable: Mutex::new(UnavailableOfferings::default()),
            model: Mutex::new(None),
            backoff: Mutex::new(HashMap::new()),
            said: Mutex::new(HashMap::new()),
            names: Mutex::new(Rng::new(seed)),
            metrics,
            demand: Mutex::new(DemandWindow::default()),
            lower_bound: Mutex::new(None),
            unneeded: Mutex::new(HashMap::new()),
        }
    }

    pub fn cloud(&self) -> &P {
        &self.cloud
    }

    /// Times one cloud provider call into the metrics. `NotFound` is not an error of the
    /// call: terminating what is already gone is the outcome the caller wanted.
    async fn cloud_call<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, CloudError>>,
    ) -> Result<T, CloudError> {
        let started = Instant::now();
        let result = call.await;
        let ok = matches!(&result, Ok(_) | Err(CloudError::NotFound { .. }));
        self.metrics
            .record_cloud_call(operation, started.elapsed().as_secs_f64(), ok);
        result
    }

    /// The controller's API client (its calls are recorded in the metrics).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ClusterState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ClusterState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn claims_api(&self) -> Api<NodeClaim> {
        Api::all(self.client.clone())
    }

    /// The pools (configuration's, overridden by NodePool objects of the same name) and
    /// the model for them and the cluster's DaemonSets (the configuration's when the
    /// cluster shows none).
    pub fn model(&self) -> Arc<Model> {
        let (generation, crd_pools, daemonsets) = {
            let st = self.read();
            (st.model_generation, st.valid_pools(), st.daemonsets())
        };
        let mut cached = lock(&self.model);
        if let Some(m) = cached.as_ref().filter(|m| m.generation == generation) {
            return m.clone();
        }
        let mut pools: Vec<(NodePool, NodePoolExtras)> = self
            .config
            .node_pools
            .iter()
            .cloned()
            .zip(self.config.pool_extras.iter().cloned())
            .filter(|(p, _)| !crd_pools.iter().any(|(c, _)| c.name == p.name))
            .collect();
        pools.extend(crd_pools);
        pools.sort_by(|(a, _), (b, _)| b.weight.cmp(&a.weight).then_with(|| a.name.cmp(&b.name)));
        let ds = self.daemonsets_or_configured(daemonsets);
        let ds_refs: Vec<&CorePod> = ds.iter().collect();
        let (pools, extras): (Vec<_>, Vec<_>) = pools.into_iter().unzip();
        let model = SchedulingModel::new(&self.catalog, &pools, &ds_refs);
        let m = Arc::new(Model {
            generation,
            pools,
            extras,
            model,
        });
        *cached = Some(m.clone());
        m
    }

    /// The cluster's DaemonSets as pods, or the configuration's when it shows none.
    fn daemonsets_or_configured(&self, daemonsets: Vec<CorePod>) -> Vec<CorePod> {
        if !daemonsets.is_empty() {
            return daemonsets;
        }
        self.config
            .settings
            .daemon_sets
            .iter()
            .map(crate::sim::setup::daemonset_pod)
            .collect()
    }

    /// What DaemonSets take on a new node (see [`Self::daemonsets_or_configured`]).
    pub(crate) fn daemonset_pods(&self) -> Vec<CorePod> {
        let ds = self.read().daemonsets();
        self.daemonsets_or_configured(ds)
    }

    fn next_name(&self, pool: &str) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = lock(&self.names);
        let suffix: String = (0..5)
            .map(|_| ALPHABET[rng.below(ALPHABET.len())] as char)
            .collect();
        format!("{pool}-{suffix}")
    }

    /// The offerings out of capacity now (expired entries dropped).
    fn unavailable_now(&self, now: f64) -> UnavailableOfferings {
        let mut u = lock(&self.unavailable);
        u.expire(now);
        u.clone()
    }

    fn decider<'a>(
        &'a self,
        m: &'a Model,
        unavailable: &'a UnavailableOfferings,
        now: f64,
    ) -> Decider<'a> {
        Decider {
            catalog: &self.catalog,
            pools: &m.pools,
            extras: &m.extras,
            model: &m.model,
            unavailable,
            max_launch_options: self.config.settings.max_launch_options,
            now,
        }
    }

    /// One provisioning decision on the current indexes (no I/O).
    pub fn decide(&self, now: f64) -> (Plan, f64) {
        let m = self.model();
        let started = Instant::now();
        let unavailable = self.unavailable_now(now);
        let d = self.decider(&m, &unavailable, now);
        let st = self.read();
        let plan = provision::plan(&st, &d, &mut |pool| self.next_name(pool));
        (plan, started.elapsed().as_secs_f64() * 1000.0)
    }

    /// Decides and launches for the pending pods; a launch that finds no capacity marks
    /// its offerings unavailable and the pods are decided again at once.
    pub async fn provision(&self, now: f64) -> ProvisionReport {
        let mut report = ProvisionReport::default();
        let mut last = None;
        for _ in 0..MAX_LAUNCH_ROUNDS {
            let (plan, ms) = self.decide(now);
            report.decision_ms.push(ms);
            report.pending = report.pending.max(plan.pending);
            if plan.pending > 0 || plan.headroom {
                self.metrics
                    .record_decision(&provisioning_record(&plan, ms, self.opts.dry_run));
            }
            let mut failed = false;
            for claim in &plan.claims {
                if self.opts.dry_run {
                    tracing::info!(
                        claim = claim.name(),
                        pods = claim.pods.len(),
                        "dry run: would launch {}",
                        claim.summary()
                    );
                    continue;
                }
                match self.launch_new(claim, now).await {
                    Ok(()) => {
                        report.claims_created += 1;
                        report.launched += 1;
                    }
                    Err(ControllerError::Cloud(CloudError::InsufficientCapacity { .. })) => {
                        report.claims_created += 1;
                        report.launch_failures += 1;
                        failed = true;
                    }
                    Err(e) => {
                        report.launch_failures += 1;
                        tracing::warn!(claim = claim.name(), error = %e, "launch failed");
                    }
                }
            }
            last = Some(plan);
            if !failed || self.opts.dry_run {
                break;
            }
        }
        // Pods hear the outcome once, not once per round of a capacity shortage.
        if let Some(plan) = last {
            self.tell_pods(&plan).await;
        }
        report
    }

    /// Creates the NodeClaim (with its finalizer) first, then calls the cloud: a crash
    /// in between leaves a claim the next lifecycle step launches, idempotently.
    async fn launch_new(&self, claim: &NewClaim, now: f64) -> Result<(), ControllerError> {
        let created = self
            .claims_api()
            .create(&PostParams::default(), &claim.object)
            .await?;
        self.apply_claim(&created);
        tracing::info!(
            claim = claim.name(),
            pods = claim.pods.len(),
            "launching {}",
            claim.summary()
        );
        self.launch(&created, &claim.request, now).await
    }

    fn apply_claim(&self, c: &NodeClaim) {
        if let Err(e) = self.write().apply_claim(c) {
            tracing::warn!(error = %e, "NodeClaim does not convert");
        }
    }

    /// Calls the cloud for a claim and records the instance in its status. On
    /// insufficient capacity the offerings are marked unavailable and the claim released.
    async fn launch(
        &self,
        claim: &NodeClaim,
        request: &LaunchRequest,
        now: f64,
    ) -> Result<(), ControllerError> {
        let name = request.node_claim.as_str();
        let result = self.cloud_call("launch", self.cloud.launch(request)).await;
        self.count_launch(request, &result);
        self.mark_fallback_failures(now);
        match result {
            Ok(instance) => {
                self.record_launch(claim, &instance, now).await?;
                self.event_claim(
                    name,
                    "Normal",
                    "Launched",
                    &format!(
                        "launched {} {} in {} ({})",
                        instance.instance_type,
                        instance.capacity_type.as_str(),
                        instance.zone,
                        instance.provider_id
                    ),
                )
                .await;
                Ok(())
            }
            Err(e @ CloudError::InsufficientCapacity { .. }) => {
                self.mark_unavailable(
                    &request
                        .options
                        .iter()
                        .map(|o| (o.instance_type.as_str(), o.zone.as_str(), o.capacity_type))
                        .collect::<Vec<_>>(),
                    now,
                );
                tracing::info!(claim = name, error = %e, "no capacity; deciding again without these offerings");
                self.release(claim).await?;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn count_launch(&self, request: &LaunchRequest, result: &Result<Instance, CloudError>) {
        use crate::metrics::{LaunchFailure, LaunchRecord};
        let first = request.options.first();
        let (ty, zone, ct) = match result {
            Ok(i) => (i.instance_type.as_str(), i.zone.as_str(), i.capacity_type),
            Err(_) => (
                first.map_or("", |o| o.instance_type.as_str()),
                first.map_or("", |o| o.zone.as_str()),
                first.map_or(CapacityType::OnDemand, |o| o.capacity_type),
            ),
        };
        let outcome = match result {
            Ok(_) => Ok(()),
            Err(CloudError::InsufficientCapacity { .. }) => {
                Err(LaunchFailure::InsufficientCapacity)
            }
            Err(CloudError::QuotaExceeded { .. }) => Err(LaunchFailure::Quota),
            Err(CloudError::Unauthorized { .. }) => Err(LaunchFailure::Unauthorized),
            Err(CloudError::Invalid { .. }) => Err(LaunchFailure::InvalidRequest),
            Err(_) => Err(LaunchFailure::Other),
        };
        self.metrics.record_launch(&LaunchRecord {
            nodepool: &request.node_pool,
            instance_type: ty,
            capacity_type: ct,
            zone,
            outcome,
        });
    }

    /// Offerings a successful launch found short on its way (a fleet's Spot-to-on-demand
    /// fallback): out for the TTL, like those of a failed launch, so the next decisions
    /// do not keep offering them first.
    fn mark_fallback_failures(&self, now: f64) {
        let failed = self.cloud.take_capacity_failures();
        if failed.is_empty() {
            return;
        }
        tracing::info!(
            offerings = failed.len(),
            "launch fell back from offerings without capacity; marking them unavailable"
        );
        let keys: Vec<(&str, &str, CapacityType)> = failed
            .iter()
            .map(|o| (o.instance_type.as_str(), o.zone.as_str(), o.capacity_type))
            .collect();
        self.mark_unavailable(&keys, now);
    }

    fn mark_unavailable(&self, offerings: &[(&str, &str, CapacityType)], now: f64) {
        let ttl = self.config.settings.unavailable_offering_ttl.as_secs_f64();
        let mut u = lock(&self.unavailable);
        for (ty, zone, ct) in offerings {
            if let (Some(t), Some(z)) = (self.catalog.find(ty), self.catalog.zone_index(zone)) {
                u.mark(t, z, *ct, now, ttl);
            }
        }
    }

    async fn record_launch(
        &self,
        claim: &NodeClaim,
        instance: &Instance,
        now: f64,
    ) -> Result<(), ControllerError> {
        let mut status = claim.status.clone().unwrap_or_default();
        status.provider_id = Some(instance.provider_id.clone());
        status.instance_type = Some(instance.instance_type.clone());
        status.zone = Some(instance.zone.clone());
        status.capacity_type = Some(instance.capacity_type.as_str().into());
        status.launched_at = Some(if instance.launched_at > 0.0 {
            instance.launched_at
        } else {
            now
        });
        status.set_true("Launched", "Launched", &rfc3339(now));
        self.patch_status(claim.metadata.name.as_deref().unwrap_or_default(), &status)
            .await
    }

    async fn patch_status(
        &self,
        name: &str,
        status: &NodeClaimStatus,
    ) -> Result<(), ControllerError> {
        let patch = serde_json::json!({"status": status});
        let updated = self
            .claims_api()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.apply_claim(&updated);
        Ok(())
    }

    /// Drops a claim that has no instance: finalizer off, then delete.
    async fn release(&self, claim: &NodeClaim) -> Result<(), ControllerError> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let api = self.claims_api();
        match api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&finalizer_patch(claim)),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_code(&e, 404) => {}
            Err(e) => return Err(e.into()),
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_code(&e, 404) => {}
            Err(e) => return Err(e.into()),
        }
        self.write().delete_claim(&name);
        Ok(())
    }

    /// Events on the pods of a decision, each said once until it changes.
    async fn tell_pods(&self, plan: &Plan) {
        use futures::StreamExt;
        // Many at a time: a batch of 1,000 pods should not hold the loop for 1,000
        // round trips.
        futures::stream::iter(&plan.pod_messages)
            .for_each_concurrent(EVENTS_IN_FLIGHT, |(ns, name, message, normal)| async move {
                let (kind, reason) = if *normal {
                    ("Normal", "Nominated")
                } else {
                    ("Warning", "FailedProvisioning")
                };
                let prefix = if self.opts.dry_run { "dry run: " } else { "" };
                let target = pod_ref(ns, name);
                self.event(target, kind, reason, &format!("{prefix}{message}"))
                    .await;
            })
            .await;
    }

    async fn event_claim(&self, claim: &str, kind: &str, reason: &str, message: &str) {
        let uid = self.read().claim(claim).map(|c| c.uid.clone());
        self.event(
            ObjectReference {
                api_version: Some("stevedore.dev/v1".into()),
                kind: Some("NodeClaim".into()),
                name: Some(claim.to_string()),
                uid,
                ..Default::default()
            },
            kind,
            reason,
            message,
        )
        .await;
    }

    /// Posts a core/v1 Event (best effort: a failure is logged, never fatal).
    async fn event(&self, target: ObjectReference, kind: &str, reason: &str, message: &str) {
        let key = format!(
            "{}/{}/{}",
            target.kind.as_deref().unwrap_or_default(),
            target.namespace.as_deref().unwrap_or_default(),
            target.name.as_deref().unwrap_or_default()
        );
        {
            let mut said = lock(&self.said);
            if said.get(&key).is_some_and(|m| m == message) {
                return;
            }
            // Bounded: objects come and go; forgetting only means an event said again.
            if said.len() >= MAX_REMEMBERED_EVENTS {
                said.clear();
            }
            said.insert(key, message.to_string());
        }
        tracing::info!(object = %format!("{}/{}", target.kind.as_deref().unwrap_or_default(), target.name.as_deref().unwrap_or_default()), reason, "{message}");
        // Cluster-scoped objects (NodeClaims) get their events in our own namespace.
        let ns = target
            .namespace
            .clone()
            .unwrap_or_else(|| self.opts.namespace.clone());
        let now = k8s_openapi::jiff::Timestamp::now();
        let n = lock(&self.names).next_u64();
        let ev = CoreEvent {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(format!(
                    "{}.{n:016x}",
                    target.name.as_deref().unwrap_or("object")
                )),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: target,
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(kind.into()),
            first_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
            last_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
            count: Some(1),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some("stevedore".into()),
                host: None,
            }),
            reporting_component: Some("stevedore.dev/controller".into()),
            reporting_instance: Some(self.opts.identity.clone()),
            ..Default::default()
        };
        let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &ev).await {
            tracing::debug!(error = %e, "event not recorded");
        }
    }

    /// Moves every NodeClaim one step along (launch, register, ready, drain, terminate).
    pub async fn reconcile(&self, now: f64) {
        let work: Vec<(ClaimEntry, Option<NodeEntry>, bool)> = {
            let st = self.read();
            st.claims()
                .map(|c| {
                    let node = st.node_of(c).cloned();
                    let drained = node
                        .as_ref()
                        .is_none_or(|n| st.pods_on(&n.name).all(|p| p.drain_exempt || p.deleting));
                    (c.clone(), node, drained)
                })
                .collect()
        };
        let timeout = self.opts.registration_timeout.as_secs_f64();
        for (claim, node, drained) in work {
            let step = lifecycle::step(&claim, node.as_ref(), drained, now, timeout);
            if step == lifecycle::Step::Nothing || self.opts.dry_run {
                continue;
            }
            if let Err(e) = self.carry_out(&claim, node.as_ref(), &step, now).await {
                tracing::warn!(claim = %claim.name, ?step, error = %e, "NodeClaim step failed; retrying later");
            }
        }
    }

    fn request_for(claim: &ClaimEntry) -> LaunchRequest {
        LaunchRequest {
            node_claim: claim.name.clone(),
            node_pool: claim.pool.clone(),
            options: claim.options.clone(),
            labels: claim.labels.clone(),
            taints: claim.taints.clone(),
            startup_taints: claim.startup_taints.clone(),
        }
    }

    fn claim_object(claim: &ClaimEntry) -> NodeClaim {
        let mut obj = NodeClaim::new(&claim.name, Default::default());
        obj.metadata.finalizers = claim
            .has_finalizer
            .then(|| vec![TERMINATION_FINALIZER.to_string()]);
        obj.status = Some(claim.status.clone());
        obj
    }

    async fn carry_out(
        &self,
        claim: &ClaimEntry,
        node: Option<&NodeEntry>,
        step: &lifecycle::Step,
        now: f64,
    ) -> Result<(), ControllerError> {
        use lifecycle::Step;
        let obj = Self::claim_object(claim);
        match step {
            Step::Launch => self.launch(&obj, &Self::request_for(claim), now).await,
            Step::Register { node } => self.register(claim, node, now).await,
            Step::MarkReady => {
                let mut status = claim.status.clone();
                status.set_true("Ready", "NodeReady", &rfc3339(now));
                self.patch_status(&claim.name, &status).await?;
                let node = claim.node_name.clone().unwrap_or_default();
                self.event_claim(
                    &claim.name,
                    "Normal",
                    "Ready",
                    &format!("node {node} is ready"),
                )
                .await;
                Ok(())
            }
            Step::RegistrationTimeout => {
                if let (Some(t), Some(z), Some(ct)) =
                    (&claim.instance_type, &claim.zone, claim.capacity_type)
                {
                    self.mark_unavailable(&[(t.as_str(), z.as_str(), ct)], now);
                }
                let msg = format!(
                    "no node registered within {}; deleting",
                    humantime::format_duration(self.opts.registration_timeout)
                );
                self.event_claim(&claim.name, "Warning", "RegistrationTimeout", &msg)
                    .await;
                self.delete_claim(&claim.name).await
            }
            Step::Drain { .. } => match node {
                Some(n) => self.drain(claim, n, now).await,
                None => Ok(()),
            },
            Step::Terminate => self.terminate(claim, node).await,
            Step::RetireReplaced { old } => {
                // A multi-node replacement names every claim it replaces.
                for old in old.split(',').filter(|o| !o.is_empty()) {
                    let live = self
                        .read()
                        .claim(old)
                        .is_some_and(|c| c.deleting_since.is_none());
                    if live {
                        let why = format!("replaced by {}", claim.name);
                        self.event_claim(old, "Normal", "Replaced", &why).await;
                        self.delete_claim(old).await?;
                    }
                }
                Ok(())
            }
            Step::Nothing => Ok(()),
        }
    }

    /// Deletes a claim; its finalizer keeps it until drained and terminated.
    pub async fn delete_claim(&self, name: &str) -> Result<(), ControllerError> {
        match self
            .claims_api()
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(either) => {
                if let Some(obj) = either.left() {
                    self.apply_claim(&obj);
                }
                Ok(())
            }
            Err(e) if is_code(&e, 404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// What a registering node lacks of its claim: the pool's labels, our claim label,
    /// the pool's taints and startup taints (as Karpenter applies them at registration).
    /// `None` when it has everything. Taints are sent whole (a merge patch replaces the
    /// list), the node's own first.
    fn registration_patch(&self, claim: &ClaimEntry, node: &str) -> Option<serde_json::Value> {
        let st = self.read();
        let n = st.node(node)?;
        let claim_label = crate::cloud::tags::NODE_CLAIM.to_string();
        let labels: std::collections::BTreeMap<&String, &String> = claim
            .labels
            .iter()
            .chain([(&claim_label, &claim.name)])
            .filter(|(k, v)| n.labels.get(*k) != Some(v))
            .collect();
        let missing_taints: Vec<&crate::core::taints::Taint> = claim
            .taints
            .iter()
            .chain(&claim.startup_taints)
            .filter(|t| {
                !n.taints
                    .iter()
                    .any(|h| h.key == t.key && h.effect == t.effect)
            })
            .collect();
        if labels.is_empty() && missing_taints.is_empty() {
            return None;
        }
        let mut patch = serde_json::json!({"metadata": {"labels": labels}});
        if !missing_taints.is_empty() {
            let taints: Vec<_> = n
                .taints
                .iter()
                .chain(missing_taints)
                .map(crate::cluster::convert::taint_spec)
                .collect();
            patch["spec"] = serde_json::json!({ "taints": taints });
        }
        Some(patch)
    }

    async fn register(
        &self,
        claim: &ClaimEntry,
        node: &str,
        now: f64,
    ) -> Result<(), ControllerError> {
        if let Some(patch) = self.registration_patch(claim, node) {
            let nodes: Api<Node> = Api::all(self.client.clone());
            let updated = nodes
                .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            let _ = self.write().apply_node(&updated, now);
        }
        let mut status = claim.status.clone();
        status.node_name = Some(node.to_string());
        status.set_true("Registered", "NodeRegistered", &rfc3339(now));
        self.patch_status(&claim.name, &status).await?;
        self.event_claim(
            &claim.name,
            "Normal",
            "Registered",
            &format!("registered as node {node}"),
        )
        .await;
        Ok(())
    }

    /// One drain pass: the disrupted taint, then an eviction per pod (PDBs answer 429:
    /// that pod is retried with backoff). Past the claim's terminationGracePeriod, pods
    /// are deleted instead.
    async fn drain(
        &self,
        claim: &ClaimEntry,
        node: &NodeEntry,
        now: f64,
    ) -> Result<(), ControllerError> {
        if !node.taints.iter().any(|t| t.key == DISRUPTED_TAINT) {
            let mut taints: Vec<serde_json::Value> = node
                .taints
                .iter()
                .map(|t| serde_json::json!({"key": t.key, "value": t.value, "effect": format!("{:?}", t.effect)}))
                .collect();
            taints.push(serde_json::json!({"key": DISRUPTED_TAINT, "effect": "NoSchedule"}));
            let nodes: Api<Node> = Api::all(self.client.clone());
            let patch = serde_json::json!({"spec": {"taints": taints}});
            let updated = nodes
                .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            let _ = self.write().apply_node(&updated, now);
        }
        let pods: Vec<(String, String)> = self
            .read()
            .pods_on(&node.name)
            .filter(|p| !p.drain_exempt && !p.deleting)
            .map(|p| (p.pod.namespace.clone(), p.pod.name.clone()))
            .collect();
        let past_grace = match (claim.termination_grace_s, claim.deleting_since) {
            (Some(g), Some(since)) => now - since >= g,
            _ => false,
        };
        for (ns, name) in pods {
            let key = format!("{ns}/{name}");
            if lock(&self.backoff)
                .get(&key)
                .is_some_and(|(next, _)| *next > now)
            {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let result = if past_grace {
                api.delete(&name, &DeleteParams::default())
                    .await
                    .map(|_| ())
            } else {
                api.evict(&name, &EvictParams::default()).await.map(|_| ())
            };
            match result {
                Ok(()) => {
                    lock(&self.backoff).remove(&key);
                    self.write().mark_pod_deleting(&ns, &name);
                }
                Err(e) if is_code(&e, 404) => {
                    self.write().delete_pod(&ns, &name, now);
                }
                Err(e) => {
                    let mut b = lock(&self.backoff);
                    let delay = b.get(&key).map_or(EVICT_BACKOFF_MIN_S, |(_, d)| {
                        (d * 2.0).min(EVICT_BACKOFF_MAX_S)
                    });
                    b.insert(key, (now + delay, delay));
                    if is_code(&e, 429) {
                        tracing::info!(pod = %format!("{ns}/{name}"), retry_in_s = delay, "eviction blocked by a PodDisruptionBudget");
                    } else {
                        tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "eviction failed");
                    }
                }
            }
        }
        Ok(())
    }

    /// The end of a claim: instance terminated, node deleted, finalizer released.
    async fn terminate(
        &self,
        claim: &ClaimEntry,
        node: Option<&NodeEntry>,
    ) -> Result<(), ControllerError> {
        if let Some(id) = &claim.provider_id {
            match self.cloud_call("terminate", self.cloud.terminate(id)).await {
                Ok(()) | Err(CloudError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(n) = node {
            let nodes: Api<Node> = Api::all(self.client.clone());
            match nodes.delete(&n.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_code(&e, 404) => {}
                Err(e) => return Err(e.into()),
            }
            self.write().delete_node(&n.name);
        }
        let obj = Self::claim_object(claim);
        match self
            .claims_api()
            .patch(
                &claim.name,
                &PatchParams::default(),
                &Patch::Merge(&finalizer_patch(&obj)),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_code(&e, 404) => {}
            Err(e) => return Err(e.into()),
        }
        self.write().delete_claim(&claim.name);
        tracing::info!(claim = %claim.name, "terminated");
        Ok(())
    }

    /// Publishes what the indexes show (nodes by pool, type, zone and state; pending
    /// pods; unavailable offerings) to the metrics.
    pub fn observe(&self, now: f64) {
        use crate::metrics::{ClusterObservation, NodeObservation, NodeState};
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
        let oldest = st
            .pods()
            .filter(|p| p.unschedulable && p.created > 0.0)
            .map(|p| p.created)
            .min_by(f64::total_cmp);
        let demand = provision::lower_bound_demand(&prepared, &d.env());
        self.metrics.observe_cluster(&ClusterObservation {
            pending_pods: prepared.pending.len() as u64,
            oldest_pending: oldest.map(|t| Duration::from_secs_f64((now - t).max(0.0))),
            nodes,
            lower_bound_per_hour: self.lower_bound_rate(&m, &demand),
            unavailable_offerings: unavailable.len() as u64,
        });
    }

    /// The fluid lower bound's hourly rate for `demand` over `m`'s offerings; `None` when
    /// it is not finite (no offering provides some resource).
    fn lower_bound_rate(&self, m: &Model, demand: &Resources) -> Option<f64> {
        let mut cached = lock(&self.lower_bound);
        if cached.as_ref().is_none_or(|(g, _)| *g != m.generation) {
            let options = m.model.offering_options(&self.catalog);
            *cached = Some((
                m.generation,
                crate::core::lower_bound::LowerBound::new(options),
            ));
        }
        let (_, lb) = cached.as_mut()?;
        Some(lb.hourly_rate(demand)).filter(|r| r.is_finite())
    }

    /// One consolidation action when the cluster is settled: an empty node past its
    /// pool's `consolidateAfter`, else what `core::consolidation::find_action` finds.
    pub async fn consolidate(&self, now: f64) -> Result<(), ControllerError> {
        let Some((old, replacement, why)) = self.consolidation_action(now) else {
            return Ok(());
        };
        for claim in &old {
            self.event_claim(claim, "Normal", "Consolidating", &why)
                .await;
        }
        if self.opts.dry_run {
            return Ok(());
        }
        match replacement {
            // The replaced claims go once the replacement is ready (RetireReplaced).
            Some(replacement) => self.launch_new(&replacement, now).await?,
            None => {
                for claim in &old {
                    self.delete_claim(claim).await?;
                }
            }
        }
        Ok(())
    }

    /// (claims to remove, replacement to launch first, why): empty nodes first, then
    /// what `core::consolidation::find_action` finds, within the pools' budgets, exactly
    /// as the simulator asks the core.
    fn consolidation_action(&self, now: f64) -> Option<(Vec<String>, Option<NewClaim>, String)> {
        let m = self.model();
        let st = self.read();
        let window = self.config.settings.consolidation_window.as_secs_f64();
        lock(&self.demand).record(now, window, service_demand(&st));
        let unsettled = st.claims().any(|c| !c.ready || c.deleting_since.is_some())
            || st.pods().any(|p| p.unschedulable);
        if unsettled {
            return None;
        }
        let unavailable = self.unavailable_now(now);
        let d = self.decider(&m, &unavailable, now);
        let prepared = st.prepare(&d.inputs());
        let pools: Vec<PoolDisruption> = m.extras.iter().map(|e| e.disruption.clone()).collect();
        let costs: Vec<NodeCost> = prepared
            .nodes
            .iter()
            .map(|n| NodeCost {
                price_per_hour: n.price_per_hour,
                stable_since: n.stable_since,
                annotations: n.annotations.clone(),
            })
            .collect();
        let snapshot = prepared.snapshot();
        let budget_left = |reason| budget_left(&prepared, &pools, reason, now);
        let empty =
            consolidation::empty_nodes(&snapshot, &costs, &pools, &budget_left(Reason::Empty), now);
        let managed = |n: usize| prepared.nodes[n].claim.map(str::to_string);
        // An empty node that holds a pool's headroom spare stays.
        let empty = provision::keep_headroom(&prepared, &d, empty);
        let empty: Vec<String> = empty.into_iter().filter_map(managed).collect();
        if !empty.is_empty() {
            let why = format!("{} empty node(s)", empty.len());
            return Some((empty, None, why));
        }
        if !pools.iter().any(PoolDisruption::underutilized) {
            return None;
        }
        let keep = lock(&self.demand)
            .peak()
            .plus(&provision::headroom_keep(&prepared, &d));
        let pdbs = st.pdbs();
        let input = consolidation::Inputs {
            nodes: &costs,
            pools: &pools,
            pdbs: &pdbs,
            budget_left: &budget_left(Reason::Underutilized),
            max_candidates: CONSOLIDATION_CANDIDATES,
            keep,
        };
        let action = consolidation::find_action(&d.env(), snapshot, &input)?;
        let claims: Vec<String> = action.nodes.iter().filter_map(|&n| managed(n)).collect();
        if claims.len() != action.nodes.len() {
            return None; // only nodes stevedore launched are disrupted
        }
        let names: Vec<&str> = action
            .nodes
            .iter()
            .map(|&n| prepared.nodes[n].name)
            .collect();
        let names = names.join(", ");
        match action.replacement {
            None => Some((
                claims,
                None,
                format!("node(s) {names}: pods fit on other nodes"),
            )),
            Some(plan) => {
                let pool = m.pools[plan.pool].name.clone();
                let replaces = claims.join(",");
                let new = provision::new_claim(&d, &plan, &self.next_name(&pool), Some(&replaces));
                let why = format!(
                    "node(s) {names} replaced by a cheaper {} (saves ${:.4}/h)",
                    new.summary(),
                    action.savings
                );
                Some((claims, Some(new), why))
            }
        }
    }

    /// Terminates instances tagged for a NodeClaim that no longer exists, once they are
    /// older than the grace period (a claim may be created just after its instance is
    /// listed). Call only once the NodeClaim watch has synced.
    pub async fn collect_orphans(&self, now: f64) -> Result<Vec<String>, ControllerError> {
        let instances = self.cloud_call("list", self.cloud.list()).await?;
        let grace = self.opts.orphan_grace.as_secs_f64();
        let orphans: Vec<Instance> = {
            let st = self.read();
            instances
                .into_iter()
                .filter(|i| i.node_claim.as_ref().is_some_and(|c| st.claim(c).is_none()))
                .filter(|i| now - i.launched_at >= grace)
                .collect()
        };
        let mut done = Vec::new();
        for i in orphans {
            if self.opts.dry_run {
                tracing::info!(instance = %i.provider_id, "dry run: would terminate an orphan");
                continue;
            }
            match self
                .cloud_call("terminate", self.cloud.terminate(&i.provider_id))
                .await
            {
                Ok(()) | Err(CloudError::NotFound { .. }) => {
                    tracing::info!(instance = %i.provider_id, claim = ?i.node_claim, "terminated an orphan instance");
                    done.push(i.provider_id);
                }
                Err(e) => {
                    tracing::warn!(instance = %i.provider_id, error = %e, "orphan termination failed")
                }
            }
        }
        Ok(done)
    }

    /// Acts on the cloud's interruption notices: the node's claim is deleted (drained,
    /// then terminated) and, for a Spot interruption, the offering is marked unavailable
    /// so the replacement comes from another (as the simulator does). Rebalance
    /// recommendations are only logged. Returns the claims deleted.
    pub async fn interrupted(&self, notices: &[Interruption], now: f64) -> Vec<String> {
        let mut deleted = Vec::new();
        for n in notices {
            let claim = self
                .read()
                .claims()
                .find(|c| c.provider_id.as_deref() == Some(n.provider_id.as_str()))
                .cloned();
            let Some(claim) = claim.filter(|c| c.deleting_since.is_none()) else {
                continue;
            };
            let why = match &n.kind {
                InterruptionKind::RebalanceRecommendation => {
                    tracing::info!(claim = %claim.name, "Spot rebalance recommendation (not acted on)");
                    continue;
                }
                InterruptionKind::SpotInterruption => "Spot interruption warning".to_string(),
                InterruptionKind::ScheduledChange => "scheduled maintenance event".to_string(),
                InterruptionKind::StateChange { state } => format!("instance is {state}"),
            };
            if n.kind == InterruptionKind::SpotInterruption {
                if let (Some(t), Some(z)) = (&claim.instance_type, &claim.zone) {
                    self.mark_unavailable(&[(t.as_str(), z.as_str(), CapacityType::Spot)], now);
                }
            }
            self.event_claim(
                &claim.name,
                "Warning",
                "Interrupted",
                &format!("{why}: draining"),
            )
            .await;
            if self.opts.dry_run {
                continue;
            }
            match self.delete_claim(&claim.name).await {
                Ok(()) => deleted.push(claim.name.clone()),
                Err(e) => {
                    tracing::warn!(claim = %claim.name, error = %e, "could not delete an interrupted claim")
                }
            }
        }
        deleted
    }

    /// The loop: batches of pending pods (idle `batchIdle`, at most `batchMax`), a scan
    /// every `scanInterval`, NodeClaim steps and orphan collection; all acting only while
    /// `leader` says so and after every watch listed once.
    pub async fn run(
        self: Arc<Self>,
        mut signals: mpsc::UnboundedReceiver<Signal>,
        mut leader: watch::Receiver<bool>,
        ready: Arc<AtomicBool>,
    ) {
        let s = &self.config.settings;
        let (idle, max) = (s.batch_idle, s.batch_max);
        // `interval` panics on zero; a zero setting means "as often as sensible".
        let every = |d: Duration| tokio::time::interval(d.max(Duration::from_millis(100)));
        let mut scan = every(s.scan_interval);
        let mut steps = every(self.opts.lifecycle_every);
        let mut gc = every(self.opts.gc_every);
        let mut batch: Option<(tokio::time::Instant, tokio::time::Instant)> = None;
        let mut synced: HashSet<&'static str> = HashSet::new();
        // In node-groups mode the groups task decides; NodeClaims are neither made nor
        // disrupted (any left from fleet mode are still moved along to their end).
        let fleet = self.opts.mode == Mode::Fleet;
        loop {
            let deadline = batch.map(|(start, last)| (last + idle).min(start + max));
            let leading = *leader.borrow();
            self.metrics.set_leader(leading);
            let acting = leading && ready.load(Ordering::Relaxed);
            tokio::select! {
                sig = signals.recv() => match sig {
                    Some(Signal::PodPending) => {
                        let now = tokio::time::Instant::now();
                        batch = Some(batch.map_or((now, now), |(s, _)| (s, now)));
                    }
                    Some(Signal::Synced(kind)) => {
                        synced.insert(kind);
                        let was_ready = ready.load(Ordering::Relaxed);
                        if WATCHED.iter().all(|k| synced.contains(k)) {
                            ready.store(true, Ordering::Relaxed);
                            // Pods pending from before the start need no new event.
                            if !was_ready && leading && fleet {
                                self.provision(wall_clock()).await;
                            }
                        }
                    }
                    Some(Signal::Changed) => {}
                    None => return,
                },
                changed = leader.changed() => {
                    if changed.is_err() {
                        // The election ended (shutdown): act no more.
                        return;
                    }
                    // A new leader acts at once on what its warm indexes show, rather
                    // than at the next scan.
                    if *leader.borrow() && ready.load(Ordering::Relaxed) {
                        if fleet {
                            self.provision(wall_clock()).await;
                        }
                        self.reconcile(wall_clock()).await;
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                    batch = None;
                    if acting && fleet {
                        self.provision(wall_clock()).await;
                    }
                }
                _ = scan.tick() => if ready.load(Ordering::Relaxed) {
                    // Followers publish what they see too: their indexes are as warm.
                    self.observe(wall_clock());
                    if !acting || !fleet {
                        continue;
                    }
                    self.provision(wall_clock()).await;
                    self.expire(wall_clock()).await;
                    self.drift(wall_clock()).await;
                    if let Err(e) = self.consolidate(wall_clock()).await {
                        tracing::warn!(error = %e, "consolidation failed");
                    }
                },
                _ = steps.tick() => if acting {
                    self.reconcile(wall_clock()).await;
                },
                _ = gc.tick() => if acting && fleet {
                    if let Err(e) = self.collect_orphans(wall_clock()).await {
                        tracing::warn!(error = %e, "orphan collection failed");
                    }
                },
            }
        }
    }
}

/// The metrics record of one provisioning decision.
fn provisioning_record(plan: &Plan, ms: f64, dry_run: bool) -> crate::metrics::DecisionRecord {
    use crate::metrics::{DecisionKind, DecisionReason, DecisionRecord, DecisionResult};
    let mut nominated: std::collections::BTreeMap<String, u64> = Default::default();
    for c in &plan.claims {
        *nominated.entry(c.request.node_pool.clone()).or_default() += c.pods.len() as u64;
    }
    let cannot = plan.pod_messages.iter().any(|m| !m.3);
    let result = if dry_run {
        DecisionResult::DryRun
    } else if !plan.claims.is_empty() {
        DecisionResult::Acted
    } else if cannot {
        DecisionResult::Infeasible
    } else {
        DecisionResult::NoAction
    };
    DecisionRecord {
        kind: DecisionKind::Provisioning,
        result,
        // Pending pods are the first reason; headroom alone launches with none pending.
        reason: if plan.pending == 0 && plan.headroom {
            DecisionReason::Headroom
        } else {
            DecisionReason::PendingPods
        },
        duration: Duration::from_secs_f64(ms / 1000.0),
        nominated: nominated.into_iter().collect(),
    }
}

/// Keeps `tx` saying whether this replica holds the lease. Looks every `poll`; the
/// holder writes a renewal every `renew_every`; a holder that cannot renew for two
/// thirds of the lease duration (client-go's renew deadline) stops acting before a
/// follower may take over.
pub async fn lead(
    mut elector: LeaderElector,
    timing: LeaseTiming,
    tx: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let start = Instant::now();
    let mut last_ok = Instant::now();
    let mut last_write: Option<Instant> = None;
    let deadline = timing.duration.mul_f64(2.0 / 3.0);
    let mut ticker = tokio::time::interval(timing.poll.max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => {
                let _ = tx.send(false);
                if let Err(e) = elector.release().await {
                    tracing::warn!(error = %e, "could not release the lease");
                }
                return;
            }
        }
        let leading = *tx.borrow();
        if leading && last_write.is_some_and(|w| w.elapsed() < timing.renew_every) {
            continue;
        }
        match elector.step(start.elapsed().as_secs_f64()).await {
            Ok(held) => {
                last_ok = Instant::now();
                if held {
                    last_write = Some(Instant::now());
                }
                if leading != held {
                    tracing::info!(
                        identity = elector.identity(),
                        leader = held,
                        "leadership changed"
                    );
                }
                let _ = tx.send(held);
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                if last_ok.elapsed() >= deadline {
                    let _ = tx.send(false);
                }
            }
        }
    }
}

/// Lease timings: 15 s duration, renewed every 5 s, looked at every second.
#[derive(Clone, Copy, Debug)]
pub struct LeaseTiming {
    pub duration: Duration,
    pub renew_every: Duration,
    pub poll: Duration,
}

/// Runs the controller until Ctrl-C/SIGTERM: watches, leader election, the metrics
/// server and the loop. The metrics address is bound first, so a bad one fails at once.
pub async fn start<P: CloudProvider + 'static, I: InterruptionSource + 'static>(
    client: kube::Client,
    cloud: P,
    interruptions: Option<I>,
    config: Config,
    catalog: Arc<Catalog>,
    opts: Options,
    metrics_addr: std::net::SocketAddr,
) -> Result<(), ControllerError> {
    let sources = Sources {
        cloud,
        interruptions,
        groups: None::<NoGroups>,
    };
    start_with(client, sources, config, catalog, opts, metrics_addr).await
}

/// What the controller acts through: the fleet cloud, an optional interruption feed and,
/// in node-groups mode, the groups.
pub struct Sources<P, I, G> {
    pub cloud: P,
    pub interruptions: Option<I>,
    pub groups: Option<G>,
}

/// [`start`] with node groups: with `opts.mode` `NodeGroups`, every scan scales
/// `sources.groups` instead of launching NodeClaims.
pub async fn start_with<
    P: CloudProvider + 'static,
    I: InterruptionSource + 'static,
    G: NodeGroupProvider + 'static,
>(
    client: kube::Client,
    sources: Sources<P, I, G>,
    config: Config,
    catalog: Arc<Catalog>,
    opts: Options,
    metrics_addr: std::net::SocketAddr,
) -> Result<(), ControllerError> {
    let listener = tokio::net::TcpListener::bind(metrics_addr).await?;
    // Boxed: the nested future's type is otherwise too deep for the compiler's layout.
    Box::pin(start_on(client, sources, config, catalog, opts, listener)).await
}

/// [`start_with`] with the metrics server on a listener already bound (a test binds
/// port 0 and reads the port before starting).
pub async fn start_on<
    P: CloudProvider + 'static,
    I: InterruptionSource + 'static,
    G: NodeGroupProvider + 'static,
>(
    client: kube::Client,
    sources: Sources<P, I, G>,
    config: Config,
    catalog: Arc<Catalog>,
    opts: Options,
    listener: tokio::net::TcpListener,
) -> Result<(), ControllerError> {
    let Sources {
        cloud,
        interruptions,
        groups,
    } = sources;
    let ctl = Arc::new(Controller::new(
        client,
        cloud,
        config,
        catalog,
        opts.clone(),
    ));
    let (tx, rx) = mpsc::unbounded_channel();
    // Everything spawned here stops when `start` returns or its future is dropped.
    let mut tasks = Tasks::default();
    // The controller's client: watches and the leader Lease are metered too.
    let client = ctl.client();
    for w in crate::cluster::watch::spawn_all(&client, &ctl.state, &tx) {
        tasks.add(w.abort_handle());
    }
    let ready = Arc::new(AtomicBool::new(false));
    let (leader_tx, leader_rx) = watch::channel(!opts.leader_elect);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut lead_task = None;
    if opts.leader_elect {
        let api = Api::namespaced(client.clone(), &opts.namespace);
        let elector =
            LeaderElector::new(api, &opts.lease_name, &opts.identity, opts.lease_duration)
                .with_poll(opts.lease_poll);
        let timing = LeaseTiming {
            duration: opts.lease_duration,
            renew_every: opts.renew_every,
            poll: opts.lease_poll,
        };
        let t = tokio::spawn(lead(elector, timing, leader_tx, stop_rx));
        tasks.add(t.abort_handle());
        lead_task = Some(t);
    }
    tracing::info!(
        provider = ctl.cloud().name(),
        cluster = %opts.cluster_name,
        dry_run = opts.dry_run,
        leader_elect = opts.leader_elect,
        mode = ?opts.mode,
        "stevedore controller starting"
    );
    if let Some(source) = interruptions {
        let t = tokio::spawn(follow_interruptions(ctl.clone(), source, leader_rx.clone()));
        tasks.add(t.abort_handle());
    }
    if let Some(groups) = groups.filter(|_| opts.mode == Mode::NodeGroups) {
        let t = tokio::spawn(follow_groups(
            ctl.clone(),
            groups,
            leader_rx.clone(),
            ready.clone(),
        ));
        tasks.add(t.abort_handle());
    }
    let http = tokio::spawn(http::serve_on(listener, ctl.metrics.clone(), ready.clone()));
    tasks.add(http.abort_handle());
    let result = tokio::select! {
        _ = ctl.clone().run(rx, leader_rx, ready) => Ok(()),
        r = http => match r {
            Ok(Err(e)) => Err(e.into()),
            _ => Ok(()),
        },
        _ = shutdown_signal() => Ok(()),
    };
    // Hand the lease over now rather than after it expires (a rolling update).
    let _ = stop_tx.send(true);
    if let Some(t) = lead_task {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    result
}

/// Tasks aborted on drop: a dropped or finished `start` leaves nothing running (a
/// replica that stops acting stops renewing its lease too).
#[derive(Default)]
struct Tasks(Vec<tokio::task::AbortHandle>);

impl Tasks {
    fn add(&mut self, h: tokio::task::AbortHandle) {
        self.0.push(h);
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Polls the interruption feed; notices are acted on while leader (a follower leaves
/// them on the queue for the leader).
async fn follow_interruptions<P: CloudProvider, I: InterruptionSource>(
    ctl: Arc<Controller<P>>,
    source: I,
    leader: watch::Receiver<bool>,
) {
    loop {
        if !*leader.borrow() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        match source.poll().await {
            Ok(notices) if !notices.is_empty() => {
                ctl.interrupted(&notices, wall_clock()).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "interruption feed failed");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Node-groups mode: a groups scan every `scanInterval` while leader and synced.
async fn follow_groups<P: CloudProvider, G: NodeGroupProvider>(
    ctl: Arc<Controller<P>>,
    groups: G,
    leader: watch::Receiver<bool>,
    ready: Arc<AtomicBool>,
) {
    let every = ctl.config.settings.scan_interval;
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        ticker.tick().await;
        if !*leader.borrow() || !ready.load(Ordering::Relaxed) {
            continue;
        }
        if let Err(e) = ctl.scale_groups(&groups, wall_clock()).await {
            tracing::warn!(error = %e, "node-groups scan failed");
        }
    }
}

/// For `start` without node groups.
pub struct NoGroups;

impl NodeGroupProvider for NoGroups {
    fn name(&self) -> &'static str {
        "none"
    }

    async fn groups(&self) -> Result<Vec<crate::cloud::NodeGroup>, CloudError> {
        Ok(Vec::new())
    }

    async fn set_desired(&self, group: &str, _: u32) -> Result<(), CloudError> {
        Err(CloudError::Invalid {
            operation: "set_desired".into(),
            message: format!("no node groups (group {group})"),
        })
    }

    async fn terminate_instance(&self, provider_id: &str) -> Result<(), CloudError> {
        Err(CloudError::NotFound {
            provider_id: provider_id.to_string(),
        })
    }
}

/// For providers without an interruption feed.
pub struct NoInterruptions;

impl InterruptionSource for NoInterruptions {
    async fn poll(&self) -> Result<Vec<Interruption>, CloudError> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(Vec::new())
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Keeps the fake provider's nodes Ready (heartbeats and node Leases every 10 s).
pub async fn keep_fake_nodes_alive(fake: Arc<crate::cloud::fake::FakeCloud>) {
    let mut ticker = tokio::time::interval(crate::cloud::fake::HEARTBEAT_EVERY);
    loop {
        ticker.tick().await;
        if let Err(e) = fake.heartbeat().await {
            tracing::warn!(error = %e, "fake node heartbeat failed");
        }
    }
}

/// A simulated cloud whose instances become Node objects (built as the fake provider
/// builds them), for `run --provider simulated` against a real API server.
pub fn simulated_with_nodes(
    client: kube::Client,
    catalog: Arc<Catalog>,
    cluster: &str,
) -> (
    crate::cloud::simulated::SimulatedCloud,
    Arc<crate::cloud::fake::FakeCloud>,
) {
    let builder = Arc::new(crate::cloud::fake::FakeCloud::new(
        client.clone(),
        catalog.clone(),
        cluster,
    ));
    let b = builder.clone();
    let handle = tokio::runtime::Handle::current();
    let hook: crate::cloud::simulated::LaunchHook =
        Box::new(move |inst: &Instance, req: &LaunchRequest| {
            let mut req = req.clone();
            // The node is built from its first option: put the one the cloud chose first.
            req.options.retain(|o| {
                o.instance_type == inst.instance_type
                    && o.zone == inst.zone
                    && o.capacity_type == inst.capacity_type
            });
            let Ok(mut node) = b.node_object(&req) else {
                return;
            };
            if let Some(spec) = node.spec.as_mut() {
                spec.provider_id = Some(inst.provider_id.clone());
            }
            let nodes: Api<Node> = Api::all(client.clone());
            handle.spawn(async move {
                if let Err(e) = nodes.create(&PostParams::default(), &node).await {
                    tracing::warn!(error = %e, "simulated instance's node not created");
                }
            });
        });
    (
        crate::cloud::simulated::SimulatedCloud::new(catalog).with_hook(hook),
        builder,
    )
}

/// The settings' node groups, simulated, whose new instances become Node objects (built
/// as the fake provider builds them), for `run --mode node-groups --provider simulated`.
pub fn simulated_groups_with_nodes(
    client: kube::Client,
    groups: &[crate::config::NodeGroup],
    builder: Arc<crate::cloud::fake::FakeCloud>,
) -> crate::cloud::simulated::SimulatedGroups {
    let handle = tokio::runtime::Handle::current();
    let hook: crate::cloud::simulated::GroupHook =
        Box::new(move |group: &crate::cloud::NodeGroup, provider_id: &str| {
            // The zone is in the provider ID (`simulated:///<zone>/i-...`).
            let zone = provider_id.trim_start_matches("simulated:///");
            let zone = zone.split('/').next().unwrap_or_default();
            let request = LaunchRequest {
                node_claim: crate::cloud::instance_id(provider_id).to_string(),
                node_pool: group.name.clone(),
                options: vec![crate::cloud::Offering {
                    instance_type: group.instance_type.clone(),
                    zone: zone.to_string(),
                    capacity_type: group.capacity_type,
                    price_per_hour: 0.0,
                }],
                labels: group.labels.clone(),
                taints: group.taints.clone(),
                startup_taints: Vec::new(),
            };
            let Ok(mut node) = builder.node_object(&request) else {
                return;
            };
            if let Some(spec) = node.spec.as_mut() {
                spec.provider_id = Some(provider_id.to_string());
            }
            let nodes: Api<Node> = Api::all(client.clone());
            handle.spawn(async move {
                if let Err(e) = nodes.create(&PostParams::default(), &node).await {
                    tracing::warn!(error = %e, "simulated group instance's node not created");
                }
            });
        });
    let groups = crate::cloud::simulated::SimulatedGroups::from_settings(groups).with_hook(hook);
    groups.fill_to_min();
    groups
}
