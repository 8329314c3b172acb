//! The `stevedore` command: a thin shell over the library.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use stevedore::core::disruption::ConsolidationPolicy;
use stevedore::sim::{self, Mode, SimOptions};
use stevedore::{config, trace};

/// The build without the controller only replays traces, and a replay makes and frees
/// millions of small vectors: mimalloc spends a fifth less user time on week-100k than
/// the system allocator (and more system time: it gives memory back to the OS sooner).
/// The controller keeps the system allocator, which its memory figures were measured with.
#[cfg(not(feature = "controller"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The bundled trace replayed when `simulate` is given none.
const BUNDLED_TRACE: &[u8] = include_bytes!("../config/traces/daily-web.jsonl.gz");
const BUNDLED_TRACE_NAME: &str = "config/traces/daily-web.jsonl.gz (bundled)";

#[derive(Parser)]
#[command(
    name = "stevedore",
    version,
    about = "A Kubernetes node autoscaler for EC2, with a trace simulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a recorded trace on a simulated EC2 and report cost, latency and nodes.
    Simulate(SimulateArgs),
    /// Run the controller in (or against) a cluster.
    #[cfg(feature = "controller")]
    Run(controller_cli::RunArgs),
    /// Record the cluster's pod arrivals and departures as a trace.
    #[cfg(feature = "controller")]
    Record(controller_cli::RecordArgs),
    /// Print the NodePool and NodeClaim CustomResourceDefinitions.
    #[cfg(feature = "controller")]
    Crds,
}

#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "verbatim")]
enum PolicyArg {
    Never,
    WhenEmpty,
    WhenEmptyOrUnderutilized,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Fleet,
    NodeGroups,
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// Trace file (.jsonl or .jsonl.gz); the bundled daily web trace when omitted.
    trace: Option<PathBuf>,
    /// Config file or directory (Settings and NodePool documents); bundled defaults when omitted.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Provisioning mode.
    #[arg(long, value_enum, default_value = "fleet")]
    mode: ModeArg,
    /// Run every mode on the same trace and print them side by side.
    #[arg(long)]
    compare: bool,
    /// Seed for boot delays and Spot interruption choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the report as JSON (docs/sim-report.md).
    #[arg(long, value_name = "FILE")]
    report_json: Option<PathBuf>,
    /// Write an SVG chart of nodes, cost rate and pending pods over time.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Turn consolidation off (as `consolidationPolicy: Never`: not even empty nodes are
    /// removed): measure what consolidation saves.
    #[arg(long)]
    no_consolidation: bool,
    /// Override every pool's consolidationPolicy (e.g. WhenEmpty).
    #[arg(long, value_enum)]
    consolidation_policy: Option<PolicyArg>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Simulate(args) => simulate(args),
        #[cfg(feature = "controller")]
        Command::Run(args) => controller_cli::run(args),
        #[cfg(feature = "controller")]
        Command::Record(args) => controller_cli::record(args),
        #[cfg(feature = "controller")]
        Command::Crds => {
            print!("{}", stevedore::cluster::crd::crds_yaml());
            Ok(())
        }
    }
}

#[cfg(feature = "controller")]
mod controller_cli;

fn simulate(args: SimulateArgs) -> Result<()> {
    // Everything is read and validated before the replay starts: a bad input replays
    // nothing.
    let config = match &args.config {
        Some(p) => config::load_path(p).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => config::bundled(),
    };
    let (trace, trace_name) = match &args.trace {
        Some(p) => (trace::read_path(p)?, p.display().to_string()),
        None => (
            trace::read_from(
                std::io::BufReader::new(flate2::read::GzDecoder::new(BUNDLED_TRACE)),
                BUNDLED_TRACE_NAME,
            )?,
            BUNDLED_TRACE_NAME.to_string(),
        ),
    };
    let catalog = sim::setup::load_catalog(&config.settings)?;
    let modes: Vec<Mode> = if args.compare {
        vec![Mode::Fleet, Mode::NodeGroups]
    } else {
        vec![match args.mode {
            ModeArg::Fleet => Mode::Fleet,
            ModeArg::NodeGroups => Mode::NodeGroups,
        }]
    };
    let mut reports = Vec::new();
    for mode in modes {
        let opts = SimOptions {
            mode,
            seed: args.seed,
            progress: !args.quiet,
            consolidation: !args.no_consolidation,
            policy: args.consolidation_policy.map(|p| match p {
                PolicyArg::Never => ConsolidationPolicy::Never,
                PolicyArg::WhenEmpty => ConsolidationPolicy::WhenEmpty,
                PolicyArg::WhenEmptyOrUnderutilized => {
                    ConsolidationPolicy::WhenEmptyOrUnderutilized
                }
            }),
            pool_change: None,
        };
        let mut report = sim::run(&trace, &trace_name, &config, &catalog, &opts)
            .with_context(|| format!("simulating {trace_name} in {} mode", mode.as_str()))?;
        report.seed = args.seed;
        reports.push(report);
    }
    print!("{}", sim::report::summary(&reports));
    if let Some(path) = &args.report_json {
        let json = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])?
        } else {
            serde_json::to_string_pretty(&serde_json::json!({ "runs": reports }))?
        };
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.chart {
        if path.extension().and_then(|e| e.to_str()) != Some("svg") {
            bail!("--chart wants a .svg file name, got {}", path.display());
        }
        std::fs::write(path, sim::chart::render(&reports))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
