//! Criterion benchmarks of the decision core (`core::scheduler::solve`).
//!
//! * `scheduling_reference_mix`: the workload of Karpenter's scheduling benchmark
//!   (kubernetes-sigs/karpenter PR #1938): 400 synthetic instance types, one unconstrained
//!   node pool, no nodes, no DaemonSets, and a five-way pod mix (plain, zonal spread,
//!   hostname spread, zonal self-affinity, hostname anti-affinity).
//! * `scheduling_real_catalog`: the same pod mix against the embedded EC2 catalog, on an
//!   empty cluster and on one that already has 500 partly used nodes.
//!
//! Only `solve` is timed: the catalog, the `SchedulingModel` (built once per
//! configuration and reused by every decision in production) and the snapshot are built
//! beforehand. Everything is seeded, so every run sees the same inputs.
//!
//! See `benches/README.md` for the figures and how to reproduce them.

use criterion::{
    black_box, criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use std::time::{Duration, Instant};
use stevedore::catalog::{load_embedded, CatalogOptions};
use stevedore::core::instance::{CapacityType, Catalog, InstanceType, Offering};
use stevedore::core::labels::{self, Labels};
use stevedore::core::model::SchedulingModel;
use stevedore::core::nodepool::{NodePool, PoolLimits};
use stevedore::core::pod::{Pod, PodAffinityTerm, TopologyKey, TopologySpread};
use stevedore::core::requirements::LabelSelector;
use stevedore::core::resources::Resources;
use stevedore::core::rng::Rng;
use stevedore::core::scheduler::{solve, Decision, SolveEnv};
use stevedore::core::snapshot::{ExistingNode, Snapshot};
use stevedore::core::taints::Taint;
use stevedore::core::unavailable::UnavailableOfferings;

const MI: i64 = 1 << 20;
const GI: i64 = 1 << 30;
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const POD_SEED: u64 = 1938;
const NODE_SEED: u64 = 500;
/// Karpenter caps a NodeClaim at 60 instance types; the tests use the same.
const MAX_LAUNCH_OPTIONS: usize = 60;
/// Pod sizes of the reference mix. 10,000 and 20,000 are left out: see README.md.
const REFERENCE_SIZES: &[usize] = &[1_000, 5_000, 10_000, 20_000];
const REAL_CATALOG_PODS: usize = 1_000;
const EXISTING_NODES: usize = 500;
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
            let name = format!("node-{i:04}");
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
                    capacity: n.capacity.clone(),
                    allocatable: n.allocatable.clone(),
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
             first-option cost ${cost:.2}/h, one untimed solve {:.3} s",
            self.pods.len(),
            d.launches.len(),
            options as f64 / d.launches.len().max(1) as f64,
            took.as_secs_f64(),
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
    let empty = Case::new(catalog.clone(), pod_mix(REAL_CATALOG_PODS), 0);
    empty.report("scheduling_real_catalog/empty_cluster");
    empty.bench(
        c,
        "scheduling_real_catalog",
        BenchmarkId::new("empty_cluster", REAL_CATALOG_PODS),
    );
    let busy = Case::new(catalog, pod_mix(REAL_CATALOG_PODS), EXISTING_NODES);
    busy.report("scheduling_real_catalog/500_nodes");
    busy.bench(
        c,
        "scheduling_real_catalog",
        BenchmarkId::new("500_nodes", REAL_CATALOG_PODS),
    );
}

criterion_group!(benches, scheduling_reference_mix, scheduling_real_catalog);
criterion_main!(benches);
