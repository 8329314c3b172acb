//! Criterion benchmarks of the decision core (`core::scheduler::solve`).
//!
//! * `scheduling_reference_mix`: the workload of Karpenter's scheduling benchmark
//!   (kubernetes-sigs/karpenter PR #1938): 400 synthetic instance types, one unconstrained
//!   node pool, no nodes, no DaemonSets, and a five-way pod mix (plain, zonal spread,
//!   hostname spread, zonal self-affinity, hostname anti-affinity).
//! * `scheduling_real_catalog`: the same pod mix against the embedded EC2 catalog: 1,000
//!   and 10,000 pods on an empty cluster, and 1,000 pods on clusters that already have 500
//!   and 2,000 partly used nodes.
//! * `consolidation`: one consolidation decision (`core::consolidation::find_action`)
//!   over 500, 2,000 and 5,000 full nodes of the real catalog with 20 bound pods each
//!   (2,000 nodes = 40,000 pods), trying 5 single-node candidates (`production`, one
//!   simulator scan) or every node (`all_candidates`, the full pass), then the multi-node
//!   binary search over the first 100 candidates. No action succeeds on these clusters,
//!   so every candidate and set tried is simulated: the worst case of one decision.
//!
//! Only the decision is timed: the catalog, the `SchedulingModel` (built once per
//! configuration and reused by every decision in production) and, for `solve`, the
//! snapshot are built beforehand. `find_action` takes its snapshot by value, so that one
//! is built in `iter_batched` setup (untimed); its drop is inside the timed call.
//! Everything is seeded, so every run sees the same inputs.
//!
//! See `benches/README.md` for the figures and how to reproduce them.

use criterion::{
    black_box, criterion_group, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use std::time::{Duration, Instant};
use stevedore::catalog::{load_embedded, CatalogOptions};
use stevedore::core::consolidation::{find_action, Action, Inputs, NodeCost};
use stevedore::core::disruption::PoolDisruption;
use stevedore::core::instance::{CapacityType, Catalog, InstanceType, Offering};
use stevedore::core::labels::{self, Labels};
use stevedore::core::model::SchedulingModel;
use stevedore::core::nodepool::{NodePool, PoolLimits};
use stevedore::core::pod::{OwnerRef, Pod, PodAffinityTerm, TopologyKey, TopologySpread};
use stevedore::core::requirements::LabelSelector;
use stevedore::core::resources::Resources;
use stevedore::core::rng::Rng;
use stevedore::core::scheduler::{
    place_on_existing, place_on_existing_classified, solve, Decision, SolveEnv,
};
use stevedore::core::snapshot::{ExistingNode, PodClasses, Snapshot};
use stevedore::core::taints::Taint;
use stevedore::core::unavailable::UnavailableOfferings;

const MI: i64 = 1 << 20;
const GI: i64 = 1 << 30;
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const POD_SEED: u64 = 1938;
const NODE_SEED: u64 = 500;
/// Karpenter caps a NodeClaim at 60 instance types; the tests use the same.
const MAX_LAUNCH_OPTIONS: usize = 60;
/// Pod counts of the reference mix.
const REFERENCE_SIZES: &[usize] = &[1_000, 5_000, 10_000, 20_000];
const REAL_CATALOG_PODS: usize = 1_000;
const REAL_CATALOG_PODS_LARGE: usize = 10_000;
/// Existing-node counts of the real-catalog cases with 1,000 pods.
const EXISTING_NODES: &[usize] = &[500, 2_000];
/// Cluster sizes of the consolidation group.
const CONSOLIDATION_NODES: &[usize] = &[500, 2_000, 5_000, 10_000];
const PODS_PER_NODE: usize = 20;
/// Candidates the simulator and the controller try per consolidation decision.
const PRODUCTION_CANDIDATES: usize = stevedore::core::consolidation::SINGLE_NODE_TRIALS;
/// Label values per constrained part (spread and affinity parts), like the small random
/// label set of Karpenter's benchmark; the anti-affinity part is a single group.
const GROUPS_PER_PART: usize = 4;
const GROUP_KEY: &str = "bench.stevedore.dev/group";

// ---------------------------------------------------------------------------------------
// Catalogs and pools

/// Karpenter's benchmark catalog: type `i` has `i+1` vCPU, `2(i+1)` GiB and `10(i+1)`
/// pods, used directly as allocatable; on-demand and Spot in three zones.
fn synthetic_catalog() -> Catalog {
    let types = (0..400i64)
        .map(|i| {
            let n = i + 1;
            let name = format!("fake-it-{n}");
            let mut labels = Labels::new();
            labels.insert(labels::INSTANCE_TYPE.into(), name.clone());
            labels.insert(labels::ARCH.into(), "amd64".into());
            labels.insert(labels::OS.into(), "linux".into());
            let resources = Resources::new(n * 1000, 2 * n * GI, 10 * n);
            let on_demand = 0.05 * n as f64;
            let offerings = (0..ZONES.len())
                .flat_map(|zone| {
                    [
                        Offering {
                            zone,
                            capacity_type: CapacityType::OnDemand,
                            price_per_hour: on_demand,
                        },
                        Offering {
                            zone,
                            capacity_type: CapacityType::Spot,
                            price_per_hour: 0.6 * on_demand,
                        },
                    ]
                })
                .collect();
            InstanceType {
                name,
                labels,
                capacity: resources.clone(),
                allocatable: resources,
                offerings,
            }
        })
        .collect();
    Catalog {
        region: "us-east-1".into(),
        zones: ZONES.iter().map(|z| z.to_string()).collect(),
        types,
    }
}

fn real_catalog() -> Catalog {
    load_embedded(&CatalogOptions::default()).expect("embedded catalog")
}

/// One pool with no requirements: every type, zone and capacity type.
fn open_pool() -> NodePool {
    NodePool {
        name: "default".into(),
        weight: 0,
        requirements: Vec::new(),
        labels: Labels::new(),
        taints: Vec::new(),
        startup_taints: Vec::new(),
        limits: PoolLimits::default(),
        empty_node_after: None,
    }
}

// ---------------------------------------------------------------------------------------
// Pods

fn group_selector(group: &str) -> LabelSelector {
    LabelSelector {
        match_labels: [(GROUP_KEY.to_string(), group.to_string())]
            .into_iter()
            .collect(),
        match_expressions: Vec::new(),
    }
}

fn spread(key: &str, kind: TopologyKey, group: &str) -> TopologySpread {
    TopologySpread {
        max_skew: 1,
        topology_key: key.into(),
        kind,
        hard: true,
        selector: group_selector(group),
        min_domains: None,
    }
}

fn term(key: &str, kind: TopologyKey, group: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        selector: group_selector(group),
        topology_key: key.into(),
        kind,
        namespaces: Vec::new(),
    }
}

/// `n` pods in five equal parts: plain, zonal topology spread, hostname topology spread,
/// zonal self-affinity, hostname anti-affinity (one group). CPU and memory are drawn from
/// the benchmark's sets with a fixed seed.
fn pod_mix(n: usize) -> Vec<Pod> {
    const CPU_MILLI: [i64; 5] = [100, 250, 500, 1000, 1500];
    const MEMORY_MI: [i64; 6] = [100, 256, 512, 1024, 2048, 4096];
    let mut rng = Rng::new(POD_SEED);
    let part = n / 5;
    (0..n)
        .map(|i| {
            let cpu = CPU_MILLI[rng.below(CPU_MILLI.len())];
            let mem = MEMORY_MI[rng.below(MEMORY_MI.len())] * MI;
            let kind = (i / part.max(1)).min(4);
            let mut pod = Pod {
                namespace: "default".into(),
                name: format!("pod-{i:05}"),
                requests: Resources::new(cpu, mem, 1),
                ..Default::default()
            };
            let group = match kind {
                0 => format!("plain-{}", i % GROUPS_PER_PART),
                1 => format!("zone-spread-{}", i % GROUPS_PER_PART),
                2 => format!("host-spread-{}", i % GROUPS_PER_PART),
                3 => format!("zone-affinity-{}", i % GROUPS_PER_PART),
                _ => "host-anti-affinity".to_string(),
            };
            pod.labels.insert(GROUP_KEY.into(), group.clone());
            match kind {
                0 => {}
                1 => pod
                    .spread
                    .push(spread(labels::ZONE, TopologyKey::Zone, &group)),
                2 => pod
                    .spread
                    .push(spread(labels::HOSTNAME, TopologyKey::Hostname, &group)),
                3 => pod
                    .affinity
                    .push(term(labels::ZONE, TopologyKey::Zone, &group)),
                _ => pod
                    .anti_affinity
                    .push(term(labels::HOSTNAME, TopologyKey::Hostname, &group)),
            }
            pod
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Existing nodes (real catalog)

/// Owned data behind an `ExistingNode`.
struct NodeSpec {
    name: String,
    labels: Labels,
    capacity: Resources,
    allocatable: Resources,
    requested: Resources,
}

/// `count` ready nodes of common real types, round-robin over zones, alternating Spot and
/// on-demand, each 75-98 % used in CPU and memory (seeded).
fn existing_nodes(catalog: &Catalog, pool: &NodePool, count: usize) -> Vec<NodeSpec> {
    const TYPES: [&str; 8] = [
        "m5.xlarge",
        "m5.2xlarge",
        "c5.2xlarge",
        "r5.xlarge",
        "m6g.2xlarge",
        "c6g.4xlarge",
        "m5.4xlarge",
        "r6g.2xlarge",
    ];
    let mut rng = Rng::new(NODE_SEED);
    (0..count)
        .map(|i| {
            let ty = catalog
                .find(TYPES[i % TYPES.len()])
                .expect("type in the embedded catalog");
            let it = &catalog.types[ty];
            let zone = ZONES[i % ZONES.len()];
            let ct = if i % 2 == 0 {
                CapacityType::Spot
            } else {
                CapacityType::OnDemand
            };
            let name = format!("node-{i:05}");
            let mut l = it.labels.clone();
            l.insert(labels::ZONE.into(), zone.into());
            l.insert(labels::REGION.into(), catalog.region.clone());
            l.insert(labels::HOSTNAME.into(), name.clone());
            l.insert(labels::KARPENTER_CAPACITY_TYPE.into(), ct.as_str().into());
            l.insert(labels::CAPACITY_TYPE.into(), ct.as_str().into());
            l.insert(labels::KARPENTER_NODEPOOL.into(), pool.name.clone());
            l.insert(labels::NODEPOOL.into(), pool.name.clone());
            let a = &it.allocatable;
            let used = |v: i64, rng: &mut Rng| (v as f64 * rng.range_f64(0.75, 0.98)) as i64;
            let requested = Resources::new(
                used(a.cpu_milli, &mut rng),
                used(a.memory, &mut rng),
                used(a.pods, &mut rng).max(1),
            );
            NodeSpec {
                name,
                labels: l,
                capacity: it.capacity.clone(),
                allocatable: a.clone(),
                requested,
            }
        })
        .collect()
}

/// The process's peak resident set so far (`VmHWM`, Linux), for the decision summaries.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

// ---------------------------------------------------------------------------------------
// One benchmark case

struct Case {
    catalog: Catalog,
    pools: Vec<NodePool>,
    model: SchedulingModel,
    unavailable: UnavailableOfferings,
    nodes: Vec<NodeSpec>,
    pods: Vec<Pod>,
}

const NO_TAINTS: &[Taint] = &[];

impl Case {
    fn new(catalog: Catalog, pods: Vec<Pod>, nodes: usize) -> Self {
        let pools = vec![open_pool()];
        let model = SchedulingModel::new(&catalog, &pools, &[]);
        let nodes = existing_nodes(&catalog, &pools[0], nodes);
        Case {
            catalog,
            pools,
            model,
            unavailable: UnavailableOfferings::default(),
            nodes,
            pods,
        }
    }

    fn env(&self) -> SolveEnv<'_> {
        SolveEnv {
            catalog: &self.catalog,
            pools: &self.pools,
            model: &self.model,
            unavailable: &self.unavailable,
            now: 0.0,
            max_launch_options: MAX_LAUNCH_OPTIONS,
            pool_filter: None,
            allow_new_nodes: true,
            use_launching_nodes: true,
            split_claims: true,
            exclude_node: None,
        }
    }

    fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            nodes: self
                .nodes
                .iter()
                .map(|n| ExistingNode {
                    name: &n.name,
                    labels: &n.labels,
                    zone: labels::zone(&n.labels),
                    capacity: &n.capacity,
                    allocatable: &n.allocatable,
                    requested: n.requested.clone(),
                    taints: NO_TAINTS,
                    pool: Some(0),
                    ready: true,
                    schedulable: true,
                })
                .collect(),
            bound: Vec::new(),
            pending: self.pods.iter().collect(),
        }
    }

    /// Runs `solve` once outside the timed loop and prints what the decision does.
    fn report(&self, label: &str) {
        let start = Instant::now();
        let d: Decision = solve(&self.env(), &self.snapshot());
        let took = start.elapsed();
        let unplaced = d.unschedulable.len() + d.infeasible.len();
        let on_existing = d.existing.len();
        let options: usize = d.launches.iter().map(|l| l.options.len()).sum();
        let cost: f64 = d
            .launches
            .iter()
            .filter_map(|l| l.options.first())
            .map(|o| o.price_per_hour)
            .sum();
        println!(
            "[{label}] pods {}: nodes created {}, pods on existing nodes {on_existing}, \
             pods unplaced {unplaced}, mean options per launch {:.1}, \
             first-option cost ${cost:.2}/h, one untimed solve {:.3} s, peak RSS so far {}",
            self.pods.len(),
            d.launches.len(),
            options as f64 / d.launches.len().max(1) as f64,
            took.as_secs_f64(),
            peak_rss(),
        );
        if let Some((i, why)) = d.unschedulable.first().or(d.infeasible.first()) {
            println!("[{label}]   e.g. {}: {why}", self.pods[*i].name);
        }
    }

    fn bench(&self, c: &mut Criterion, group: &str, id: BenchmarkId) {
        let env = self.env();
        let snapshot = self.snapshot();
        let mut g = c.benchmark_group(group);
        // Flat sampling: ten samples of equal iteration counts. The default linear mode
        // needs at least 55 iterations, minutes for the 5,000-pod case.
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(15))
            .throughput(Throughput::Elements(self.pods.len() as u64));
        g.bench_function(id, |b| {
            b.iter(|| solve(black_box(&env), black_box(&snapshot)))
        });
        g.finish();
    }
}

// ---------------------------------------------------------------------------------------
// Groups

fn scheduling_reference_mix(c: &mut Criterion) {
    for &n in REFERENCE_SIZES {
        let case = Case::new(synthetic_catalog(), pod_mix(n), 0);
        case.report(&format!("scheduling_reference_mix/{n}"));
        case.bench(
            c,
            "scheduling_reference_mix",
            BenchmarkId::from_parameter(n),
        );
    }
}

fn scheduling_real_catalog(c: &mut Criterion) {
    let catalog = real_catalog();
    for pods in [REAL_CATALOG_PODS, REAL_CATALOG_PODS_LARGE] {
        let empty = Case::new(catalog.clone(), pod_mix(pods), 0);
        empty.report(&format!("scheduling_real_catalog/empty_cluster/{pods}"));
        empty.bench(
            c,
            "scheduling_real_catalog",
            BenchmarkId::new("empty_cluster", pods),
        );
    }
    for &nodes in EXISTING_NODES {
        let busy = Case::new(catalog.clone(), pod_mix(REAL_CATALOG_PODS), nodes);
        let label = format!("{nodes}_nodes");
        busy.report(&format!(
            "scheduling_real_catalog/{label}/{REAL_CATALOG_PODS}"
        ));
        busy.bench(
            c,
            "scheduling_real_catalog",
            BenchmarkId::new(label, REAL_CATALOG_PODS),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Pod classes

/// `copies` replicas of each of `workloads` pods of the mix: alike but for their names.
fn replicas(workloads: usize, copies: usize) -> Vec<Pod> {
    pod_mix(workloads)
        .into_iter()
        .flat_map(|p| {
            (0..copies).map(move |i| Pod {
                name: format!("{}-{i}", p.name),
                ..p.clone()
            })
        })
        .collect()
}

/// The simulated kube-scheduler's pass over 2,000 pending replicas (20 workloads) and
/// 500 nodes, by class and pod by pod: the replicas select a label no ready node has
/// (they wait for nodes still booting), and by class only the first of each workload
/// looks at every node.
fn pod_classes(c: &mut Criterion) {
    let mut pods = replicas(20, 100);
    for p in &mut pods {
        p.node_selector
            .insert("example.com/booting".into(), "true".into());
    }
    let case = Case::new(real_catalog(), pods, 500);
    let env = SolveEnv {
        allow_new_nodes: false,
        ..case.env()
    };
    let snapshot = case.snapshot();
    let mut g = c.benchmark_group("pod_classes");
    g.sample_size(10)
        .throughput(Throughput::Elements(case.pods.len() as u64));
    g.bench_function("place_on_existing/by_class", |b| {
        b.iter(|| place_on_existing(black_box(&env), black_box(&snapshot)))
    });
    g.bench_function("place_on_existing/pod_by_pod", |b| {
        b.iter(|| {
            let alone = PodClasses::alone(snapshot.pending.len());
            place_on_existing_classified(black_box(&env), black_box(&snapshot), alone)
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------
// Consolidation

/// A cluster on which no consolidation action succeeds: every node is of the type (and
/// priced at the offering) that is cheapest among all types able to hold its 20 pods, and
/// the pods fill 97 % of its CPU, so no pod fits in the 3 % another node has left and no
/// cheaper node could take them all.
struct FullCluster {
    case: Case,
    /// `PODS_PER_NODE` pods per node, node `i` holding `pods[i*20..(i+1)*20]`.
    pods: Vec<Pod>,
    costs: Vec<NodeCost>,
    pools: Vec<PoolDisruption>,
}

/// The cheapest offering (price, type, offering index) of any type whose allocatable
/// holds `total`.
fn cheapest_holder(catalog: &Catalog, total: &Resources) -> (f64, usize, usize) {
    let mut best = (f64::INFINITY, usize::MAX, usize::MAX);
    for (t, it) in catalog.types.iter().enumerate() {
        if !total.fits_in(&it.allocatable) {
            continue;
        }
        for (o, off) in it.offerings.iter().enumerate() {
            if off.price_per_hour < best.0 {
                best = (off.price_per_hour, t, o);
            }
        }
    }
    best
}

/// Requests of one of the 20 pods that fill 97 % of the CPU and 80 % of the memory of
/// `it`'s allocatable.
fn filling_pod(it: &InstanceType) -> Resources {
    let a = &it.allocatable;
    let per = PODS_PER_NODE as i64;
    Resources::new(a.cpu_milli * 97 / 100 / per, a.memory * 80 / 100 / per, 1)
}

impl FullCluster {
    fn new(catalog: Catalog, count: usize) -> Self {
        // Start from m5.xlarge and move to the cheapest holder of its pods until that is
        // the type itself.
        let mut ty = catalog
            .find("m5.xlarge")
            .expect("type in the embedded catalog");
        let mut holder = (0.0, ty, 0);
        for _ in 0..10 {
            let mut total = Resources::default();
            let pod = filling_pod(&catalog.types[ty]);
            for _ in 0..PODS_PER_NODE {
                total.add(&pod);
            }
            holder = cheapest_holder(&catalog, &total);
            if holder.1 == ty {
                break;
            }
            ty = holder.1;
        }
        assert_eq!(holder.1, ty, "no stable cheapest holder");
        let (price, _, offering) = holder;
        let it = &catalog.types[ty];
        let ct = it.offerings[offering].capacity_type;
        let request = filling_pod(it);
        let mut total = Resources::default();
        for _ in 0..PODS_PER_NODE {
            total.add(&request);
        }
        let pool = open_pool();
        let nodes = (0..count)
            .map(|i| {
                let zone = ZONES[i % ZONES.len()];
                let name = format!("node-{i:05}");
                let mut l = it.labels.clone();
                l.insert(labels::ZONE.into(), zone.into());
                l.insert(labels::REGION.into(), catalog.region.clone());
                l.insert(labels::HOSTNAME.into(), name.clone());
                l.insert(labels::KARPENTER_CAPACITY_TYPE.into(), ct.as_str().into());
                l.insert(labels::CAPACITY_TYPE.into(), ct.as_str().into());
                l.insert(labels::KARPENTER_NODEPOOL.into(), pool.name.clone());
                l.insert(labels::NODEPOOL.into(), pool.name.clone());
                NodeSpec {
                    name,
                    labels: l,
                    capacity: it.capacity.clone(),
                    allocatable: it.allocatable.clone(),
                    requested: total.clone(),
                }
            })
            .collect();
        let pods = (0..count * PODS_PER_NODE)
            .map(|i| {
                let app = format!("app-{}", i % 50);
                let mut pod = Pod {
                    namespace: "default".into(),
                    name: format!("pod-{i:06}"),
                    requests: request.clone(),
                    owner: Some(OwnerRef {
                        kind: "ReplicaSet".into(),
                        name: app.clone(),
                    }),
                    ..Default::default()
                };
                pod.labels.insert("app".into(), app);
                pod
            })
            .collect();
        let pools = vec![pool];
        let model = SchedulingModel::new(&catalog, &pools, &[]);
        FullCluster {
            case: Case {
                catalog,
                pools,
                model,
                unavailable: UnavailableOfferings::default(),
                nodes,
                pods: Vec::new(),
            },
            pods,
            costs: vec![
                NodeCost {
                    price_per_hour: price,
                    ..NodeCost::default()
                };
                count
            ],
            pools: vec![PoolDisruption {
                consolidate_after_s: Some(0.0),
                // Every node may go: the search is as wide as it can be.
                budgets: Vec::new(),
                ..PoolDisruption::default()
            }],
        }
    }

    fn env(&self) -> SolveEnv<'_> {
        SolveEnv {
            now: 100.0,
            ..self.case.env()
        }
    }

    fn snapshot(&self) -> Snapshot<'_> {
        let mut s = self.case.snapshot();
        s.bound = self
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| (p, i / PODS_PER_NODE))
            .collect();
        s
    }

    fn inputs(&self, max_candidates: usize) -> Inputs<'_> {
        Inputs {
            nodes: &self.costs,
            pools: &self.pools,
            pdbs: &[],
            budget_left: &[usize::MAX],
            max_candidates,
            keep: Resources::default(),
            payback: None,
        }
    }

    fn decide(&self, max_candidates: usize) -> Option<Action> {
        find_action(&self.env(), self.snapshot(), &self.inputs(max_candidates))
    }

    /// One untimed pass over every candidate: it must find nothing.
    fn report(&self, label: &str) {
        let start = Instant::now();
        let action = self.decide(usize::MAX);
        let took = start.elapsed();
        let ty = &self.case.nodes[0].labels[labels::INSTANCE_TYPE];
        println!(
            "[{label}] nodes {} of {ty} at ${:.4}/h, bound pods {}: action {action:?}, \
             one untimed full pass {:.3} s",
            self.case.nodes.len(),
            self.costs[0].price_per_hour,
            self.pods.len(),
            took.as_secs_f64(),
        );
        assert!(action.is_none(), "the full cluster must admit no action");
    }
}

fn consolidation(c: &mut Criterion) {
    let catalog = real_catalog();
    for &nodes in CONSOLIDATION_NODES {
        let cluster = FullCluster::new(catalog.clone(), nodes);
        cluster.report(&format!("consolidation/{nodes}"));
        let mut g = c.benchmark_group("consolidation");
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(10));
        for (name, max) in [
            ("production", PRODUCTION_CANDIDATES),
            ("all_candidates", usize::MAX),
        ] {
            // Throughput in candidates tried (each is one trial), as no action succeeds.
            g.throughput(Throughput::Elements(max.min(nodes) as u64));
            g.bench_function(BenchmarkId::new(name, nodes), |b| {
                b.iter_batched(
                    || cluster.snapshot(),
                    |snapshot| {
                        find_action(
                            black_box(&cluster.env()),
                            black_box(snapshot),
                            &cluster.inputs(max),
                        )
                    },
                    BatchSize::LargeInput,
                )
            });
        }
        g.finish();
    }
}

criterion_group!(
    benches,
    scheduling_reference_mix,
    scheduling_real_catalog,
    pod_classes,
    consolidation
);
/// `STEVEDORE_PEAK_MEMORY_PODS=20000 <bench binary>` builds the reference mix of that
/// size, solves it once and exits, so `/usr/bin/time -v` reports the peak memory of one
/// scheduling run and nothing else (Criterion, other cases).
fn main() {
    if let Ok(n) = std::env::var("STEVEDORE_PEAK_MEMORY_PODS") {
        let n: usize = n
            .parse()
            .expect("STEVEDORE_PEAK_MEMORY_PODS is a pod count");
        let case = Case::new(synthetic_catalog(), pod_mix(n), 0);
        case.report(&format!("peak_memory/{n}"));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
