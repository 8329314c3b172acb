//! The in-cluster controller: the same decisions the simulator makes, on the cluster the
//! watches mirror, acted on through the Kubernetes API and a [`CloudProvider`].
//!
//! Shape (after linkerd2's policy controller): watches apply objects to in-memory
//! indexes ([`ClusterState`], plain synchronous calls); decisions are pure functions of
//! those indexes ([`provision::plan`], [`lifecycle::step`], `core::consolidation`) that
//! return data; small independent loops carry that data out, each a task of its own:
//! [`provisioning`], [`lifecycle`], [`termination`] (a task per claim), [`disruption`],
//! [`gc`], [`deletion_cost`], [`interruption`] and [`observe`]. No loop waits for
//! another: a call that hangs holds only the loop that made it, and every call is
//! bounded ([`api`]). They act only while this replica holds the leader Lease
//! ([`leader`]) and every watch is current; a follower keeps its indexes warm and takes
//! over within one lease duration. Each loop reports its completed iterations to
//! [`health`], which `/healthz` answers from.
//!
//! This file only holds the controller's parts together and starts the loops.

pub mod api;
pub mod context;
pub mod deletion_cost;
pub mod disruption;
pub mod events;
pub mod gc;
pub mod groups;
pub mod health;
pub mod http;
pub mod interruption;
pub mod launch;
pub mod leader;
pub mod lifecycle;
pub mod observe;
pub mod provision;
pub mod provisioning;
pub mod record;
pub mod simulated;
pub mod sources;
pub mod stale;
pub mod termination;

pub use context::Model;
pub use leader::{lead, Gate, LeaseTiming};
pub use provisioning::ProvisionReport;
pub use simulated::{keep_fake_nodes_alive, simulated_groups_with_nodes, simulated_with_nodes};
pub use sources::{NoGroups, NoInterruptions, Sources};

use crate::cloud::{CloudError, CloudProvider, InterruptionSource, NodeGroupProvider};
use crate::cluster::lease::LeaderElector;
use crate::cluster::state::ClusterState;
use crate::cluster::watch::WatchSync;
use crate::config::Config;
use crate::core::instance::Catalog;
use crate::core::rng::Rng;
use crate::metrics::Metrics;
use kube::api::Api;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;

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
    /// The longest any one Kubernetes API call may take (watches excepted: they are
    /// bounded by `watch_stall`).
    pub api_timeout: Duration,
    /// The longest any one cloud call may take (a fleet launch included).
    pub cloud_timeout: Duration,
    /// A watch silent this long is dropped and listed again.
    pub watch_stall: Duration,
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
            api_timeout: Duration::from_secs(30),
            cloud_timeout: Duration::from_secs(90),
            watch_stall: crate::cluster::watch::DEFAULT_STALL,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A Kubernetes API call answered with an error (`call` names it, e.g. `evict pod`).
    #[error("Kubernetes API, {call}: {source}")]
    Api {
        call: &'static str,
        #[source]
        source: kube::Error,
    },
    /// A Kubernetes API call gave no answer within the API timeout.
    #[error("Kubernetes API, {call}: no answer within {after:?}")]
    ApiTimeout { call: &'static str, after: Duration },
    #[error("cloud: {0}")]
    Cloud(#[from] CloudError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ControllerError {
    /// The API answered with this HTTP status.
    pub fn is_code(&self, code: u16) -> bool {
        matches!(self, ControllerError::Api { source: kube::Error::Api(s), .. } if s.code == code)
    }
}

pub struct Controller<P> {
    client: kube::Client,
    cloud: P,
    config: Config,
    catalog: Arc<Catalog>,
    pub opts: Options,
    pub state: Arc<RwLock<ClusterState>>,
    pub metrics: Arc<Metrics>,
    /// Offerings found out of capacity (launches, lifecycle and interruptions mark them;
    /// every decision reads them).
    unavailable: Mutex<crate::core::unavailable::UnavailableOfferings>,
    model: Mutex<Option<Arc<Model>>>,
    names: Mutex<Rng>,
    /// Events already said, so a repeated decision does not repeat them.
    said: Mutex<events::Said>,
    /// Launches under way (provisioning's and the lifecycle loop's).
    launches: launch::InFlight,
    /// `now()`'s origin: the wall clock and tokio's clock at creation.
    epoch: (f64, tokio::time::Instant),
    /// The termination loop's own: per-pod eviction backoff.
    evictions: termination::Evictions,
    /// The disruption loop's own: the recent peak demand consolidation keeps room for.
    demand: Mutex<crate::core::consolidation::DemandWindow>,
    /// The disruption loop's own: the last day's demand, which `evictionCost` weighs.
    demand_history: Mutex<crate::core::consolidation::DemandHistory>,
    /// The provisioning loop's own: what its last decision that asked for nothing was
    /// made on, and how many decisions it has made (see [`provisioning`]).
    provisioning: provisioning::Idle,
    /// The observation loop's own: the fluid lower bound of the current model.
    lower_bound: observe::LowerBoundCache,
    /// The observation loop's own: its last observation.
    observed: observe::ObservationCache,
    /// The node-groups scan's own: since when each node has been under the threshold.
    unneeded: Mutex<std::collections::HashMap<String, f64>>,
    /// When each loop last completed an iteration (`/healthz`).
    pub liveness: Arc<health::Liveness>,
}

impl<P: CloudProvider> Controller<P> {
    pub fn new(
        client: kube::Client,
        cloud: P,
        config: Config,
        catalog: Arc<Catalog>,
        opts: Options,
    ) -> Self {
        let seed = crate::cluster::wall_clock().to_bits() ^ u64::from(std::process::id());
        let metrics = Arc::new(Metrics::new());
        Controller {
            state: Arc::new(RwLock::new(ClusterState::new(opts.schedulers.clone()))),
            // One choke point times and counts every API call this controller makes.
            client: crate::cluster::metered::client(client, metrics.clone()),
            liveness: Arc::new(health::Liveness::new(metrics.clone())),
            cloud,
            config,
            catalog,
            opts,
            metrics,
            unavailable: Mutex::default(),
            model: Mutex::new(None),
            names: Mutex::new(Rng::new(seed)),
            said: Mutex::default(),
            evictions: termination::Evictions::default(),
            launches: launch::InFlight::default(),
            epoch: (crate::cluster::wall_clock(), tokio::time::Instant::now()),
            demand: Mutex::default(),
            demand_history: Mutex::default(),
            provisioning: provisioning::Idle::default(),
            lower_bound: observe::LowerBoundCache::default(),
            observed: observe::ObservationCache::default(),
            unneeded: Mutex::default(),
        }
    }

    pub fn cloud(&self) -> &P {
        &self.cloud
    }

    /// The controller's API client (its calls are recorded in the metrics).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Starts every loop of this mode; they run until the returned tasks are dropped.
    pub fn spawn_loops(
        self: &Arc<Self>,
        signals: tokio::sync::mpsc::UnboundedReceiver<crate::cluster::watch::Signal>,
        gate: Gate,
    ) -> Tasks
    where
        P: 'static,
    {
        let mut tasks = Tasks::default();
        let mut add = |f: Loop| tasks.add(tokio::spawn(f).abort_handle());
        add(Box::pin(self.clone().lifecycle_loop(gate.clone())));
        add(Box::pin(self.clone().termination_loop(gate.clone())));
        add(Box::pin(self.clone().observe_loop(gate.clone())));
        // In node-groups mode the groups task decides; NodeClaims are neither made nor
        // disrupted (any left from fleet mode are still moved along to their end), and
        // deletions are not steered (only the groups task knows which nodes are the
        // groups').
        if self.opts.mode == Mode::Fleet {
            add(Box::pin(
                self.clone().provisioning_loop(signals, gate.clone()),
            ));
            add(Box::pin(self.clone().disruption_loop(gate.clone())));
            add(Box::pin(self.clone().deletion_cost_loop(gate.clone())));
            add(Box::pin(self.clone().gc_loop(gate)));
        }
        tasks
    }
}

/// A loop as spawned: boxed, so loops of different types share one spawner.
type Loop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs the controller until Ctrl-C/SIGTERM: watches, leader election, the metrics
/// server and the loops. The metrics address is bound first, so a bad one fails at once.
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
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // Everything spawned here stops when `start` returns or its future is dropped.
    let mut tasks = Tasks::default();
    // The controller's client: watches and the leader Lease are metered too.
    let client = ctl.client();
    let sync = Arc::new(WatchSync::default());
    for w in crate::cluster::watch::spawn_all(&client, &ctl.state, &tx, &sync, opts.watch_stall) {
        tasks.add(w.abort_handle());
    }
    let (leader_tx, leader_rx) = watch::channel(!opts.leader_elect);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Without an election the sender stays here: a closed channel tells the loops that
    // the election ended (shutdown).
    let (lead_task, _always_leader) = if opts.leader_elect {
        let t = spawn_election(&client, &opts, leader_tx, stop_rx);
        (Some(t), None)
    } else {
        (None, Some(leader_tx))
    };
    if let Some(t) = &lead_task {
        tasks.add(t.abort_handle());
    }
    tracing::info!(
        provider = ctl.cloud().name(),
        cluster = %opts.cluster_name,
        dry_run = opts.dry_run,
        leader_elect = opts.leader_elect,
        mode = ?opts.mode,
        "stevedore controller starting"
    );
    let gate = Gate::new(leader_rx, sync.clone(), ctl.metrics.clone());
    if let Some(source) = interruptions {
        let t = tokio::spawn(ctl.clone().interruption_loop(source, gate.clone()));
        tasks.add(t.abort_handle());
    }
    if let Some(groups) = groups.filter(|_| opts.mode == Mode::NodeGroups) {
        let t = tokio::spawn(ctl.clone().groups_loop(groups, gate.clone()));
        tasks.add(t.abort_handle());
    }
    let loops = ctl.spawn_loops(rx, gate);
    let health = http::Health {
        sync,
        liveness: ctl.liveness.clone(),
    };
    let result = tokio::select! {
        r = http::serve_on(listener, ctl.metrics.clone(), health) => r.map_err(Into::into),
        _ = sources::shutdown_signal() => Ok(()),
    };
    drop(loops);
    // Hand the lease over now rather than after it expires (a rolling update).
    let _ = stop_tx.send(true);
    if let Some(t) = lead_task {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    result
}

/// The leader election on the Lease `opts.lease_name`, telling `leader_tx`.
fn spawn_election(
    client: &kube::Client,
    opts: &Options,
    leader_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let api = Api::namespaced(client.clone(), &opts.namespace);
    let elector = LeaderElector::new(api, &opts.lease_name, &opts.identity, opts.lease_duration)
        .with_poll(opts.lease_poll);
    let timing = LeaseTiming {
        duration: opts.lease_duration,
        renew_every: opts.renew_every,
        poll: opts.lease_poll,
        call_timeout: opts.api_timeout,
    };
    tokio::spawn(lead(elector, timing, leader_tx, stop_rx))
}

/// Tasks aborted on drop: a dropped or finished `start` leaves nothing running (a
/// replica that stops acting stops renewing its lease too).
#[derive(Default)]
pub struct Tasks(Vec<tokio::task::AbortHandle>);

impl Tasks {
    pub fn add(&mut self, h: tokio::task::AbortHandle) {
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
