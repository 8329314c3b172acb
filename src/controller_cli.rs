//! The `run` and `record` commands (part of the binary: argument parsing, logging
//! setup, wiring; everything else is in the library).

use anyhow::{bail, Context, Result};
use clap::{ArgAction, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use stevedore::config;
use stevedore::controller::{self, Mode, NoInterruptions, Options, Sources};

#[derive(Clone, Copy, ValueEnum)]
pub enum ProviderArg {
    Aws,
    Fake,
    Simulated,
}

/// How nodes are provisioned.
#[derive(Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// NodeClaims launched from the NodePools' offerings (EC2 Fleet).
    Fleet,
    /// Fixed node groups scaled by count (Auto Scaling groups), Cluster Autoscaler style.
    NodeGroups,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Config file or directory (Settings and NodePool documents); bundled defaults when omitted.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where nodes come from.
    #[arg(long, value_enum)]
    provider: ProviderArg,
    /// `node-groups` scales the Auto Scaling groups (aws) or the settings' nodeGroups
    /// (simulated) instead of launching NodeClaims.
    #[arg(long, value_enum, default_value = "fleet")]
    mode: ModeArg,
    /// Tags every instance, so a restart finds its own and orphans are collected.
    #[arg(long)]
    cluster_name: String,
    /// Namespace of the leader Lease and of events on NodeClaims (default: $POD_NAMESPACE, else "default").
    #[arg(long)]
    namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Elect a leader among replicas through a Lease (`--leader-elect false` for one replica).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "stevedore-leader")]
    lease_name: String,
    /// Decide, log, emit metrics and events; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// A launched instance that has not become a Node by then is given up.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    registration_timeout: Duration,
    /// Instances tagged for a NodeClaim that no longer exists are terminated after this.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    orphan_grace: Duration,
    /// Schedulers whose unschedulable pods get nodes (repeat for several).
    #[arg(long = "scheduler", default_value = "default-scheduler")]
    schedulers: Vec<String>,
}

#[derive(clap::Args)]
pub struct RecordArgs {
    /// The trace file to write (.jsonl).
    #[arg(long)]
    out: PathBuf,
    /// Stop after this long (default: at Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: in a file or a pipe the escape codes are
    // noise (the subscriber writes to stdout).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The API client `stevedore run` acts through. kube-rs's default client retries a 429
/// (and 503, 504) up to 15 times inside one call, backing off from 5 ms to 1000 s: an
/// eviction a PodDisruptionBudget refuses then does not return for minutes (4m42s on a
/// real cluster), and whatever awaits it stops. The controller retries refusals itself,
/// on its own schedule, so the client must answer each call as the server did.
async fn api_client() -> Result<kube::Client> {
    let mut config = kube::Config::infer()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or kubeconfig)")?;
    config.default_retry = false;
    kube::Client::try_from(config).context("building the Kubernetes API client")
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(args: RunArgs) -> Result<()> {
    init_logging(args.log_format);
    let config = match &args.config {
        Some(p) => config::load_path(p).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => config::bundled(),
    };
    let catalog = Arc::new(stevedore::sim::setup::load_catalog(&config.settings)?);
    let namespace = args
        .namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("stevedore-{}", std::process::id()));
    let mode = match args.mode {
        ModeArg::Fleet => Mode::Fleet,
        ModeArg::NodeGroups => Mode::NodeGroups,
    };
    if mode == Mode::NodeGroups && matches!(args.provider, ProviderArg::Fake) {
        bail!("--mode node-groups needs --provider aws or simulated");
    }
    let simulated = matches!(args.provider, ProviderArg::Simulated);
    if mode == Mode::NodeGroups && simulated && config.settings.node_groups.is_empty() {
        bail!("--mode node-groups --provider simulated needs `nodeGroups` in the Settings");
    }
    let opts = Options {
        mode,
        cluster_name: args.cluster_name.clone(),
        namespace,
        identity,
        lease_name: args.lease_name.clone(),
        leader_elect: args.leader_elect,
        dry_run: args.dry_run,
        registration_timeout: args.registration_timeout,
        orphan_grace: args.orphan_grace,
        schedulers: args.schedulers.clone(),
        ..Options::default()
    };
    runtime()?.block_on(async move {
        let client = api_client().await?;
        let addr = args.metrics_addr;
        match args.provider {
            ProviderArg::Fake => {
                let fake = stevedore::cloud::fake::FakeCloud::new(
                    client.clone(),
                    catalog.clone(),
                    &args.cluster_name,
                );
                let alive = Arc::new(stevedore::cloud::fake::FakeCloud::new(
                    client.clone(),
                    catalog.clone(),
                    &args.cluster_name,
                ));
                tokio::spawn(controller::keep_fake_nodes_alive(alive));
                controller::start(
                    client,
                    fake,
                    None::<NoInterruptions>,
                    config,
                    catalog,
                    opts,
                    addr,
                )
                .await?;
            }
            ProviderArg::Simulated => {
                let (sim, nodes) = controller::simulated_with_nodes(
                    client.clone(),
                    catalog.clone(),
                    &args.cluster_name,
                );
                tokio::spawn(controller::keep_fake_nodes_alive(nodes.clone()));
                let groups = (opts.mode == Mode::NodeGroups).then(|| {
                    controller::simulated_groups_with_nodes(
                        client.clone(),
                        &config.settings.node_groups,
                        nodes,
                    )
                });
                let sources = Sources {
                    cloud: sim,
                    interruptions: None::<NoInterruptions>,
                    groups,
                };
                controller::start_with(client, sources, config, catalog, opts, addr).await?;
            }
            ProviderArg::Aws => {
                run_aws(client, config, catalog, opts, addr, &args.cluster_name).await?
            }
        }
        Ok(())
    })
}

/// EC2 fleet launches (and the interruption queue when the settings name one).
#[cfg(feature = "aws")]
async fn run_aws(
    client: kube::Client,
    config: config::Config,
    catalog: Arc<stevedore::core::instance::Catalog>,
    opts: Options,
    addr: std::net::SocketAddr,
    cluster_name: &str,
) -> Result<()> {
    use stevedore::cloud::aws;
    let Some(mut settings) = config.settings.aws.clone() else {
        bail!("--provider aws needs an `aws:` block in the Settings document (docs/aws.md)");
    };
    if settings.cluster_name.is_empty() {
        settings.cluster_name = cluster_name.to_string();
    }
    let sdk = aws::load_config(&config.settings.region, settings.api_max_attempts).await;
    let clients = aws::Clients::from_config(&sdk);
    let queue = settings
        .interruption_queue
        .as_deref()
        .map(|q| aws::InterruptionQueue::new(clients.sqs.clone(), clients.ec2.clone(), q));
    let groups = (opts.mode == Mode::NodeGroups).then(|| {
        aws::AwsNodeGroups::new(
            clients.autoscaling.clone(),
            clients.ec2.clone(),
            settings.clone(),
        )
    });
    let fleet = aws::AwsFleet::new(clients.ec2.clone(), settings, (*catalog).clone());
    let sources = Sources {
        cloud: fleet,
        interruptions: queue,
        groups,
    };
    controller::start_with(client, sources, config, catalog, opts, addr).await?;
    Ok(())
}

#[cfg(not(feature = "aws"))]
async fn run_aws(
    _: kube::Client,
    _: config::Config,
    _: Arc<stevedore::core::instance::Catalog>,
    _: Options,
    _: std::net::SocketAddr,
    _: &str,
) -> Result<()> {
    bail!("this stevedore was built without the `aws` feature; use --provider fake or simulated")
}

pub fn record(args: RecordArgs) -> Result<()> {
    init_logging(args.log_format);
    runtime()?.block_on(async move {
        let client = api_client().await?;
        let n = controller::record::record(client, &args.out, args.duration)
            .await
            .with_context(|| format!("recording to {}", args.out.display()))?;
        eprintln!("wrote {n} events to {}", args.out.display());
        Ok(())
    })
}
