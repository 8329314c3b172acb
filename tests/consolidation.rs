//! Consolidation decisions of the core on small hand-built clusters: what it deletes,
//! and what it must leave alone (PodDisruptionBudgets, do-not-disrupt, bare pods).

use std::collections::BTreeMap;
use stevedore::catalog::{load_embedded, CatalogOptions};
use stevedore::core::consolidation::{
    empty_nodes, find_action, search, Action, DemandHistory, Inputs, NodeCost, Payback,
    TRANSIENT_DEFERRAL_S,
};
use stevedore::core::disruption::{ConsolidationPolicy, MinSavings, PoolDisruption};
use stevedore::core::instance::Catalog;
use stevedore::core::labels::{self, Labels};
use stevedore::core::model::SchedulingModel;
use stevedore::core::nodepool::{NodePool, PoolLimits};
use stevedore::core::pdb::{Budget, IntOrPercent, PodDisruptionBudget};
use stevedore::core::pod::{OwnerRef, Pod};
use stevedore::core::requirements::LabelSelector;
use stevedore::core::resources::Resources;
use stevedore::core::scheduler::SolveEnv;
use stevedore::core::snapshot::{ExistingNode, Snapshot};
use stevedore::core::unavailable::UnavailableOfferings;

const GI: i64 = 1 << 30;

struct World {
    catalog: Catalog,
    pools: Vec<NodePool>,
    model: SchedulingModel,
    unavailable: UnavailableOfferings,
    node_labels: Vec<Labels>,
    names: Vec<String>,
}

impl World {
    fn new() -> Self {
        let catalog = load_embedded(&CatalogOptions::default()).unwrap();
        let pools = vec![NodePool {
            name: "general".into(),
            weight: 0,
            requirements: Vec::new(),
            labels: Labels::new(),
            taints: Vec::new(),
            startup_taints: Vec::new(),
            limits: PoolLimits::default(),
            empty_node_after: None,
        }];
        let model = SchedulingModel::new(&catalog, &pools, &[]);
        let it = &catalog.types[catalog.find("m5.xlarge").unwrap()];
        let mut node_labels = Vec::new();
        let mut names = Vec::new();
        for i in 0..3 {
            let name = format!("node-{i}");
            let mut l = it.labels.clone();
            l.insert(labels::ZONE.into(), "us-east-1a".into());
            l.insert(labels::KARPENTER_CAPACITY_TYPE.into(), "on-demand".into());
            l.insert(labels::KARPENTER_NODEPOOL.into(), "general".into());
            l.insert(labels::HOSTNAME.into(), name.clone());
            node_labels.push(l);
            names.push(name);
        }
        World {
            catalog,
            pools,
            model,
            unavailable: UnavailableOfferings::default(),
            node_labels,
            names,
        }
    }

    fn env(&self) -> SolveEnv<'_> {
        SolveEnv {
            catalog: &self.catalog,
            pools: &self.pools,
            model: &self.model,
            unavailable: &self.unavailable,
            now: 1000.0,
            max_launch_options: 60,
            pool_filter: None,
            allow_new_nodes: true,
            use_launching_nodes: true,
            split_claims: true,
            exclude_node: None,
        }
    }

    /// Node 0 runs `small` (1 pod, easily moved); node 1 runs `big` with room to spare.
    fn snapshot<'a>(&'a self, small: &'a Pod, big: &'a Pod) -> Snapshot<'a> {
        let it = &self.catalog.types[self.catalog.find("m5.xlarge").unwrap()];
        let nodes = (0..2)
            .map(|i| ExistingNode {
                name: &self.names[i],
                labels: &self.node_labels[i],
                zone: labels::zone(&self.node_labels[i]),
                capacity: &it.capacity,
                allocatable: &it.allocatable,
                requested: if i == 0 {
                    small.requests.clone()
                } else {
                    big.requests.clone()
                },
                taints: &[],
                pool: Some(0),
                ready: true,
                schedulable: true,
            })
            .collect();
        Snapshot {
            nodes,
            bound: vec![(small, 0), (big, 1)],
            pending: Vec::new(),
        }
    }
}

fn pod(name: &str, cpu_milli: i64, memory: i64) -> Pod {
    let mut labels = Labels::new();
    labels.insert("app".into(), name.into());
    Pod {
        namespace: "shop".into(),
        name: name.into(),
        labels,
        owner: Some(OwnerRef {
            kind: "ReplicaSet".into(),
            name: format!("{name}-rs"),
        }),
        requests: Resources::new(cpu_milli, memory, 1),
        ..Default::default()
    }
}

fn costs(prices: &[f64]) -> Vec<NodeCost> {
    prices
        .iter()
        .map(|&price_per_hour| NodeCost {
            price_per_hour,
            ..Default::default()
        })
        .collect()
}

fn inputs<'c>(
    nodes: &'c [NodeCost],
    pools: &'c [PoolDisruption],
    pdbs: &'c [PodDisruptionBudget],
    budget_left: &'c [usize],
) -> Inputs<'c> {
    Inputs {
        nodes,
        pools,
        pdbs,
        budget_left,
        max_candidates: 10,
        keep: Resources::default(),
        payback: None,
    }
}

fn decide(world: &World, small: &Pod, big: &Pod, pdbs: &[PodDisruptionBudget]) -> Option<Action> {
    let costs = costs(&[0.192, 0.192]);
    let pools = [PoolDisruption::default()];
    let input = inputs(&costs, &pools, pdbs, &[10]);
    find_action(&world.env(), world.snapshot(small, big), &input)
}

fn budget_for(app: &str, budget: Budget) -> PodDisruptionBudget {
    PodDisruptionBudget {
        namespace: "shop".into(),
        name: app.into(),
        selector: LabelSelector {
            match_labels: BTreeMap::from([("app".to_string(), app.to_string())]),
            match_expressions: Vec::new(),
        },
        budget,
    }
}

#[test]
fn a_node_whose_pods_fit_elsewhere_is_deleted() {
    let world = World::new();
    let (small, big) = (pod("small", 500, GI), pod("big", 1000, 2 * GI));
    match decide(&world, &small, &big, &[]) {
        Some(Action {
            nodes,
            replacement: None,
            savings,
        }) => {
            // The most dollars per pod goes first; both nodes are equal here.
            assert_eq!(nodes.len(), 1);
            assert!((savings - 0.192).abs() < 1e-9);
        }
        other => panic!("expected a delete, got {other:?}"),
    }
}

/// Demand of 100 CPUs (more than either node holds) `ago` seconds before the clock's
/// 1000 s, then 1 CPU at every minute since.
fn history_exceeded(ago: f64) -> DemandHistory {
    let mut h = DemandHistory::default();
    let cpu = |m: i64| Resources {
        cpu_milli: m,
        ..Default::default()
    };
    h.record(1000.0 - ago, &cpu(100_000));
    let mut t = 1000.0 - ago + 60.0;
    while t <= 1000.0 {
        h.record(t, &cpu(1000));
        t += 60.0;
    }
    h
}

#[test]
fn a_deletion_waits_until_its_savings_pay_for_its_evictions() {
    let world = World::new();
    let (small, big) = (pod("small", 500, GI), pod("big", 1000, 2 * GI));
    let costs = costs(&[0.192, 0.192]);
    let pools = [PoolDisruption::default()];
    // Deleting either node evicts one pod and saves $0.192/h: at $0.096 an eviction it
    // pays once the demand has stayed below what is left for half an hour.
    let decide = |history: &DemandHistory, eviction_cost: f64| {
        let input = Inputs {
            payback: Some(Payback {
                history,
                eviction_cost,
            }),
            ..inputs(&costs, &pools, &[], &[10])
        };
        search(&world.env(), world.snapshot(&small, &big), &input)
    };
    // Exceeded 10 minutes ago (its minute ended 9 minutes ago): 21 minutes to go.
    let recent = history_exceeded(600.0);
    let refused = decide(&recent, 0.096);
    assert!(refused.action.is_none(), "{:?}", refused.action);
    let pays_at = refused.pays_at.expect("when it would pay");
    assert!(
        (pays_at - (1000.0 + 1800.0 - 540.0)).abs() < 1e-6,
        "{pays_at}"
    );
    // The same demand an hour ago: it pays now.
    let old = history_exceeded(3600.0);
    assert_eq!(decide(&old, 0.096).action.map(|a| a.nodes.len()), Some(1));
    // Evictions that cost nothing let it act at once, as without a payback rule.
    let free = decide(&recent, 0.0);
    assert_eq!(free.action.map(|a| a.nodes.len()), Some(1));
    assert_eq!(free.pays_at, None);
}

/// Node 0 runs a small service pod (stable since `stable_since`, the clock is at 1000 s),
/// node 1 a bigger one with room for it, node 2 only `job`.
fn with_a_job_node(
    world: &World,
    small: &Pod,
    big: &Pod,
    job: &Pod,
    stable_since: f64,
) -> Option<Action> {
    let it = &world.catalog.types[world.catalog.find("m5.xlarge").unwrap()];
    let mut snapshot = world.snapshot(small, big);
    snapshot.nodes.push(ExistingNode {
        name: &world.names[2],
        labels: &world.node_labels[2],
        zone: labels::zone(&world.node_labels[2]),
        capacity: &it.capacity,
        allocatable: &it.allocatable,
        requested: job.requests.clone(),
        taints: &[],
        pool: Some(0),
        ready: true,
        schedulable: true,
    });
    snapshot.bound.push((job, 2));
    // The two service nodes (0 and 1) have been stable since `stable_since`.
    let mut costs = costs(&[0.192, 0.192, 0.192]);
    costs[0].stable_since = stable_since;
    costs[1].stable_since = stable_since;
    let pools = [PoolDisruption::default()];
    let input = inputs(&costs, &pools, &[], &[10]);
    find_action(&world.env(), snapshot, &input)
}

fn job_pod(cpu_milli: i64) -> Pod {
    Pod {
        owner: Some(OwnerRef {
            kind: "Job".into(),
            name: "report".into(),
        }),
        ..pod("report-x7k2p", cpu_milli, GI)
    }
}

#[test]
fn a_service_pod_is_not_moved_while_a_job_only_node_could_take_it() {
    let world = World::new();
    let (small, big) = (pod("small", 500, GI), pod("big", 1000, 2 * GI));
    // The scheduler could put `small` beside the Job: once the Job ends, that node would
    // hold only `small` and be consolidated again, moving the same pod a second time.
    let roomy = job_pod(1000);
    // The service nodes have been stable for less than the wait (the clock is at 1000 s).
    let recent = 1000.0 - TRANSIENT_DEFERRAL_S + 1.0;
    let deferred = with_a_job_node(&world, &small, &big, &roomy, recent);
    assert!(deferred.is_none(), "expected no action, got {deferred:?}");
    let deletes_node_0 = |action: Option<Action>| match action {
        Some(Action {
            nodes,
            replacement: None,
            ..
        }) => assert_eq!(nodes, vec![0]),
        other => panic!("expected node 0 deleted, got {other:?}"),
    };
    // A Job node with no room for it changes nothing: node 0 goes, its pod to node 1.
    let full = job_pod(3500);
    deletes_node_0(with_a_job_node(&world, &small, &big, &full, 0.0));
    // Nor does it once node 0 has waited its time: where Jobs never stop, waiting for
    // ever would keep it.
    let waited = 1000.0 - TRANSIENT_DEFERRAL_S;
    deletes_node_0(with_a_job_node(&world, &small, &big, &roomy, waited));
}

#[test]
fn a_pod_disruption_budget_that_allows_nothing_blocks_it() {
    let world = World::new();
    let (small, big) = (pod("small", 500, GI), pod("big", 1000, 2 * GI));
    let pdbs = [
        budget_for("small", Budget::MaxUnavailable(IntOrPercent::Int(0))),
        budget_for("big", Budget::MinAvailable(IntOrPercent::Percent(100))),
    ];
    assert!(decide(&world, &small, &big, &pdbs).is_none());
    // A budget with room lets it through.
    let roomy = [budget_for(
        "small",
        Budget::MaxUnavailable(IntOrPercent::Int(1)),
    )];
    assert!(decide(&world, &small, &big, &roomy).is_some());
}

#[test]
fn do_not_disrupt_and_bare_pods_are_left_alone() {
    let world = World::new();
    let mut small = pod("small", 500, GI);
    let mut big = pod("big", 1000, 2 * GI);
    for (p, key, value) in [
        (&mut small, "karpenter.sh/do-not-disrupt", "true"),
        (
            &mut big,
            "cluster-autoscaler.kubernetes.io/safe-to-evict",
            "false",
        ),
    ] {
        p.annotations.insert(key.into(), value.into());
    }
    assert!(decide(&world, &small, &big, &[]).is_none());
    let (mut small, mut big) = (pod("small", 500, GI), pod("big", 1000, 2 * GI));
    small.owner = None;
    big.annotations
        .insert("stevedore.dev/do-not-disrupt".into(), "true".into());
    assert!(decide(&world, &small, &big, &[]).is_none());
}

/// The Cluster Autoscaler lets `safe-to-evict: "true"` override the no-controller rule:
/// a bare pod that says so does not keep its node.
#[test]
fn a_bare_pod_marked_safe_to_evict_does_not_block_consolidation() {
    let world = World::new();
    let (mut small, mut big) = (pod("small", 500, GI), pod("big", 1000, 2 * GI));
    small.owner = None;
    big.owner = None;
    assert!(decide(&world, &small, &big, &[]).is_none());
    for p in [&mut small, &mut big] {
        p.annotations.insert(
            "cluster-autoscaler.kubernetes.io/safe-to-evict".into(),
            "true".into(),
        );
    }
    assert!(decide(&world, &small, &big, &[]).is_some());
}

#[test]
fn local_storage_keeps_a_node_unless_safe_to_evict() {
    use stevedore::trace::pod_from_json;
    let world = World::new();
    let with_volume = |name: &str, volume: serde_json::Value, annotations: serde_json::Value| {
        pod_from_json(&serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": name},
                         "annotations": annotations,
                         "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "controller": true}]},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}],
                     "volumes": [volume]}
        }))
        .unwrap()
    };
    let disk = serde_json::json!({"name": "scratch", "emptyDir": {}});
    let memory = serde_json::json!({"name": "scratch", "emptyDir": {"medium": "Memory"}});
    let host = serde_json::json!({"name": "logs", "hostPath": {"path": "/var/log"}});
    let none = serde_json::json!({});
    let big_disk = |name: &str| {
        let mut p = with_volume(name, disk.clone(), none.clone());
        p.requests = Resources::new(1000, 2 * GI, 1);
        p
    };

    assert!(with_volume("a", disk.clone(), none.clone()).local_storage);
    assert!(with_volume("b", host.clone(), none.clone()).local_storage);
    assert!(!with_volume("c", memory.clone(), none.clone()).local_storage);

    // Both nodes hold disk-backed scratch space: neither is consolidated.
    let small = with_volume("small", disk.clone(), none.clone());
    assert!(decide(&world, &small, &big_disk("big"), &[]).is_none());
    // Memory-backed scratch is no local storage; `safe-to-evict: "true"` allows it.
    let small = with_volume("small", memory, none.clone());
    assert!(decide(&world, &small, &big_disk("big"), &[]).is_some());
    let safe = serde_json::json!({"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"});
    let small = with_volume("small", disk.clone(), safe);
    assert!(decide(&world, &small, &big_disk("big"), &[]).is_some());
}

// ---------------------------------------------------------------------------------------
// Disruption settings, multi-node consolidation and empty nodes

/// `n` on-demand nodes of `ty` in one pool limited to the m5 family on-demand, each
/// running one pod of `cpu_milli`.
struct Fleet {
    catalog: Catalog,
    pools: Vec<NodePool>,
    model: SchedulingModel,
    unavailable: UnavailableOfferings,
    labels: Vec<Labels>,
    names: Vec<String>,
    pods: Vec<Pod>,
    ty: usize,
}

impl Fleet {
    fn new(n: usize, ty: &str, cpu_milli: i64) -> Self {
        use stevedore::core::requirements::{Operator, Requirement};
        let catalog = load_embedded(&CatalogOptions::default()).unwrap();
        let pools = vec![NodePool {
            name: "m5".into(),
            weight: 0,
            requirements: vec![
                Requirement::new(
                    labels::INSTANCE_TYPE,
                    Operator::In,
                    &["m5.large", "m5.xlarge", "m5.2xlarge"],
                ),
                Requirement::new(
                    labels::KARPENTER_CAPACITY_TYPE,
                    Operator::In,
                    &["on-demand"],
                ),
                Requirement::new(labels::ZONE, Operator::In, &["us-east-1a"]),
            ],
            labels: Labels::new(),
            taints: Vec::new(),
            startup_taints: Vec::new(),
            limits: PoolLimits::default(),
            empty_node_after: None,
        }];
        let model = SchedulingModel::new(&catalog, &pools, &[]);
        let ty = catalog.find(ty).unwrap();
        let mut labels_out = Vec::new();
        let mut names = Vec::new();
        for i in 0..n {
            let name = format!("m5-{i}");
            let mut l = catalog.types[ty].labels.clone();
            l.insert(labels::ZONE.into(), "us-east-1a".into());
            l.insert(labels::KARPENTER_CAPACITY_TYPE.into(), "on-demand".into());
            l.insert(labels::KARPENTER_NODEPOOL.into(), "m5".into());
            l.insert(labels::HOSTNAME.into(), name.clone());
            labels_out.push(l);
            names.push(name);
        }
        let pods = (0..n)
            .map(|i| pod(&format!("p{i}"), cpu_milli, GI))
            .collect();
        Fleet {
            catalog,
            pools,
            model,
            unavailable: UnavailableOfferings::default(),
            labels: labels_out,
            names,
            pods,
            ty,
        }
    }

    fn env(&self) -> SolveEnv<'_> {
        SolveEnv {
            catalog: &self.catalog,
            pools: &self.pools,
            model: &self.model,
            unavailable: &self.unavailable,
            now: 1000.0,
            max_launch_options: 60,
            pool_filter: None,
            allow_new_nodes: true,
            use_launching_nodes: true,
            split_claims: true,
            exclude_node: None,
        }
    }

    fn price(&self) -> f64 {
        self.catalog.types[self.ty]
            .offerings
            .iter()
            .find(|o| o.capacity_type == stevedore::core::instance::CapacityType::OnDemand)
            .unwrap()
            .price_per_hour
    }

    /// Node `i` holds pod `i`; nodes listed in `empty` hold nothing.
    fn snapshot(&self, empty: &[usize]) -> Snapshot<'_> {
        let it = &self.catalog.types[self.ty];
        let nodes = (0..self.names.len())
            .map(|i| ExistingNode {
                name: &self.names[i],
                labels: &self.labels[i],
                zone: labels::zone(&self.labels[i]),
                capacity: &it.capacity,
                allocatable: &it.allocatable,
                requested: if empty.contains(&i) {
                    Resources::default()
                } else {
                    self.pods[i].requests.clone()
                },
                taints: &[],
                pool: Some(0),
                ready: true,
                schedulable: true,
            })
            .collect();
        Snapshot {
            nodes,
            bound: (0..self.names.len())
                .filter(|i| !empty.contains(i))
                .map(|i| (&self.pods[i], i))
                .collect(),
            pending: Vec::new(),
        }
    }

    fn decide(
        &self,
        pools: &[PoolDisruption],
        budget_left: usize,
        keep: Resources,
    ) -> Option<Action> {
        let costs = costs(&vec![self.price(); self.names.len()]);
        let left = [budget_left];
        let input = Inputs {
            keep,
            ..inputs(&costs, pools, &[], &left)
        };
        find_action(&self.env(), self.snapshot(&[]), &input)
    }
}

#[test]
fn several_nodes_are_replaced_by_one_when_no_single_node_action_exists() {
    // Four m5.large each running 1.2 vCPU: no node has room for another's pod and no
    // type is cheaper than m5.large, so no single-node action exists; three pods fit
    // one m5.xlarge, which costs less than three m5.large.
    let fleet = Fleet::new(4, "m5.large", 1200);
    let pools = [PoolDisruption::default()];
    let action = fleet
        .decide(&pools, 10, Resources::default())
        .expect("a multi-node action");
    assert_eq!(action.nodes.len(), 3, "{action:?}");
    let plan = action.replacement.as_ref().expect("a replacement");
    let best = &fleet.catalog.types[plan.options[0].instance_type];
    assert_eq!(best.name, "m5.xlarge");
    assert!((action.savings - (3.0 * fleet.price() - plan.options[0].price_per_hour)).abs() < 1e-9);
    // The pool's budget caps the set: two nodes at most, and two m5.large cost as much
    // as one m5.xlarge, so nothing is worth doing.
    assert!(fleet.decide(&pools, 2, Resources::default()).is_none());
    // minSavings above what the best set saves blocks it.
    let strict = [PoolDisruption {
        min_savings: MinSavings::Fraction(0.5),
        ..PoolDisruption::default()
    }];
    assert!(fleet.decide(&strict, 10, Resources::default()).is_none());
    // Keeping more capacity than the replacement leaves blocks it too.
    let mut room = Resources::default();
    for _ in 0..4 {
        room.add(&fleet.catalog.types[fleet.ty].allocatable);
    }
    assert!(fleet.decide(&pools, 10, room).is_none());
}

#[test]
fn empty_nodes_go_within_budget_and_policy() {
    let fleet = Fleet::new(4, "m5.large", 1200);
    let snapshot = fleet.snapshot(&[1, 2, 3]);
    let mut costs = costs(&[fleet.price(); 4]);
    let pools = [PoolDisruption::default()];
    assert_eq!(
        empty_nodes(&snapshot, &costs, &pools, &[10], 1000.0),
        [1, 2, 3]
    );
    assert_eq!(empty_nodes(&snapshot, &costs, &pools, &[2], 1000.0), [1, 2]);
    // Not stable long enough.
    costs[1].stable_since = 990.0;
    // Annotated do-not-disrupt.
    costs[2]
        .annotations
        .insert("karpenter.sh/do-not-disrupt".into(), "true".into());
    assert_eq!(empty_nodes(&snapshot, &costs, &pools, &[10], 1000.0), [3]);
    let never = [PoolDisruption {
        policy: ConsolidationPolicy::Never,
        ..PoolDisruption::default()
    }];
    assert!(empty_nodes(&snapshot, &costs, &never, &[10], 1000.0).is_empty());
}

#[test]
fn policy_budget_and_node_annotation_stop_consolidation() {
    let world = World::new();
    let (small, big) = (pod("small", 500, GI), pod("big", 1000, 2 * GI));
    let env = world.env();
    let when_empty = [PoolDisruption {
        policy: ConsolidationPolicy::WhenEmpty,
        ..PoolDisruption::default()
    }];
    let default = [PoolDisruption::default()];
    let mut annotated = costs(&[0.192, 0.192]);
    for c in &mut annotated {
        c.annotations
            .insert("stevedore.dev/do-not-disrupt".into(), "true".into());
    }
    let plain = costs(&[0.192, 0.192]);
    let cases: [(&[NodeCost], &[PoolDisruption], usize, bool); 4] = [
        (&plain, &default, 1, true),
        (&plain, &when_empty, 1, false),
        (&plain, &default, 0, false),
        (&annotated, &default, 1, false),
    ];
    for (nodes, pools, left, expect) in cases {
        let left = [left];
        let input = inputs(nodes, pools, &[], &left);
        let got = find_action(&env, world.snapshot(&small, &big), &input);
        assert_eq!(got.is_some(), expect, "{pools:?} budget {left:?}");
    }
}

#[test]
fn expiry_replacements_come_from_the_scheduler() {
    use stevedore::core::disruption::replacements;
    // Four full m5.large: an expiring one needs a new node for its pod.
    let fleet = Fleet::new(4, "m5.large", 1200);
    let plans = replacements(&fleet.env(), &fleet.snapshot(&[]), &[0]).expect("placeable");
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].pods.len(), 1);
    // With an empty node next to it, the pod moves there: nothing to launch.
    let plans = replacements(&fleet.env(), &fleet.snapshot(&[3]), &[0]).expect("placeable");
    assert!(plans.is_empty());
}

#[test]
fn pods_are_not_moved_onto_a_node_that_empties_by_itself() {
    // Two m5.xlarge: node 0 runs one 1-CPU pod, node 1 is empty. Moving the pod onto
    // node 1 would "save" node 0 only by keeping node 1, which step 1 (empty nodes) is
    // about to remove: the cheaper move is a replacement by an m5.large.
    let fleet = Fleet::new(2, "m5.xlarge", 1000);
    let snapshot = fleet.snapshot(&[1]);
    let costs = costs(&[fleet.price(); 2]);
    let pools = [PoolDisruption::default()];
    assert_eq!(
        empty_nodes(&snapshot, &costs, &pools, &[10], 1000.0),
        [1],
        "the empty node goes by itself"
    );
    let input = inputs(&costs, &pools, &[], &[10]);
    let action = find_action(&fleet.env(), snapshot, &input).expect("a replacement");
    assert_eq!(action.nodes, [0]);
    let plan = action
        .replacement
        .as_ref()
        .expect("not a delete onto the empty node");
    let best = &fleet.catalog.types[plan.options[0].instance_type];
    assert_eq!(best.name, "m5.large");
    assert!((action.savings - (fleet.price() - plan.options[0].price_per_hour)).abs() < 1e-9);

    // A node kept empty on purpose (do-not-disrupt) is not going: it takes the pod.
    let mut kept = costs.clone();
    kept[1]
        .annotations
        .insert("karpenter.sh/do-not-disrupt".into(), "true".into());
    let input = inputs(&kept, &pools, &[], &[10]);
    let action = find_action(&fleet.env(), fleet.snapshot(&[1]), &input).expect("a delete");
    assert_eq!(action.nodes, [0]);
    assert!(action.replacement.is_none());
}

#[test]
fn the_node_with_the_most_dollars_per_pod_is_tried_first() {
    // Three m5.xlarge with room to spare: node 0 holds one pod and costs $0.05/h, node 1
    // holds three and costs $0.192/h ($0.064 a pod), node 2 holds one and costs $0.02/h.
    // With one trial, the node that saves most per evicted pod is the one tried (fewest
    // pods first would try node 0).
    let fleet = Fleet::new(5, "m5.xlarge", 300);
    let it = &fleet.catalog.types[fleet.ty];
    let on = [0, 1, 1, 1, 2];
    let nodes = (0..3)
        .map(|n| {
            let mut requested = Resources::default();
            for (p, _) in on.iter().enumerate().filter(|&(_, &m)| m == n) {
                requested.add(&fleet.pods[p].requests);
            }
            ExistingNode {
                name: &fleet.names[n],
                labels: &fleet.labels[n],
                zone: labels::zone(&fleet.labels[n]),
                capacity: &it.capacity,
                allocatable: &it.allocatable,
                requested,
                taints: &[],
                pool: Some(0),
                ready: true,
                schedulable: true,
            }
        })
        .collect();
    let snapshot = Snapshot {
        nodes,
        bound: on
            .iter()
            .enumerate()
            .map(|(p, &n)| (&fleet.pods[p], n))
            .collect(),
        pending: Vec::new(),
    };
    let costs = costs(&[0.05, 0.192, 0.02]);
    let pools = [PoolDisruption::default()];
    let input = Inputs {
        max_candidates: 1,
        ..inputs(&costs, &pools, &[], &[10])
    };
    let action = find_action(&fleet.env(), snapshot, &input).expect("a delete");
    assert_eq!(action.nodes, [1]);
    assert!(action.replacement.is_none());
    assert!((action.savings - 0.192).abs() < 1e-9);
}
