//! Measures the controller's README figures (not a test: timings depend on the machine).
//!
//! `cargo run --release --no-default-features --features controller --example controller_figures [NODES] [PODS_PER_NODE]`
//!
//! A cluster of NODES ready m5.2xlarge nodes (default 10,000), each launched by stevedore
//! (a ready NodeClaim per node) and holding PODS_PER_NODE bound pods (default 10: 100,000
//! pods, 7.5 CPU of the node's 7.9 requested), is put in the indexes of a controller
//! talking to a mocked API server and the simulated cloud. Then:
//!
//! 1. A provisioning scan with no change since the last one: the provisioning loop's
//!    scan body (`Controller::provision`), median and max over 50 scans. The same for
//!    the disruption loop's pass (expiry, drift, consolidation) and the observation
//!    loop's scan.
//! 2. A provisioning decision for 1,000 new pending pods: the time from the last pod of
//!    the batch entering the indexes to the cloud's launch call (the NodeClaim is created
//!    through the mocked API first), over 5 batches.
//! 3. Resident memory (VmRSS, and its peak VmHWM) with all of it indexed.

#[path = "../tests/support/fake_api.rs"]
mod fake_api;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use stevedore::cloud::simulated::SimulatedCloud;
use stevedore::cluster::crd::NodeClaim;
use stevedore::cluster::state::ClusterState;
use stevedore::controller::{Controller, Options};

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

fn node_name(i: usize) -> String {
    format!("ip-10-{}-{}-{}", i / 62_500, (i / 250) % 250, i % 250)
}

fn node(i: usize) -> Node {
    let name = node_name(i);
    let zone = ZONES[i % 3];
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "node.kubernetes.io/instance-type": "m5.2xlarge", "topology.kubernetes.io/zone": zone,
            "karpenter.sh/capacity-type": "spot", "stevedore.dev/nodepool": "general",
            "kubernetes.io/hostname": name, "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}},
        "spec": {"providerID": format!("simulated:///{zone}/i-{i:017x}")},
        "status": {"allocatable": {"cpu": "7910m", "memory": "29317Mi", "pods": "58"},
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .expect("node")
}

/// The ready NodeClaim stevedore made for node `i` at `created`, with the pool's
/// template hash (so it has not drifted) and a price below every offering's (so that
/// consolidation finds no cheaper replacement and every disruption pass runs to its end
/// instead of waiting on a replacement it launched).
fn claim(i: usize, pool_hash: u64, created: f64) -> NodeClaim {
    let zone = ZONES[i % 3];
    let ready = |t: &str| json!({"type": t, "status": "True"});
    serde_json::from_value(json!({
        "metadata": {"name": format!("general-{i:05}"), "uid": format!("uid-{i}"),
                     "creationTimestamp": stevedore::cluster::rfc3339(created),
                     "annotations": {"stevedore.dev/pool-hash": format!("{pool_hash:016x}")},
                     "finalizers": [stevedore::cluster::crd::TERMINATION_FINALIZER]},
        "spec": {"nodePool": "general", "options": [{"instanceType": "m5.2xlarge", "zone": zone,
                 "capacityType": "spot", "pricePerHour": 0.001}]},
        "status": {"providerID": format!("simulated:///{zone}/i-{i:017x}"), "nodeName": node_name(i),
                   "instanceType": "m5.2xlarge", "zone": zone, "capacityType": "spot",
                   "conditions": [ready("Launched"), ready("Registered"), ready("Ready")]}
    }))
    .expect("claim")
}

fn pod(ns: &str, name: &str, node: Option<&str>, cpu: &str, mem: &str, app: &str) -> Pod {
    let mut v: Value = json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app, "pod-template-hash": "7d9f8c6b5"},
                     "ownerReferences": [{"kind": "ReplicaSet", "name": format!("{app}-7d9f8c6b5"), "controller": true}]},
        "spec": {"containers": [{"name": "main", "image": "registry.example.com/app:1.2.3",
                                 "resources": {"requests": {"cpu": cpu, "memory": mem}}}]},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
    });
    if let Some(n) = node {
        v["spec"]["nodeName"] = json!(n);
        v["status"] =
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
    }
    serde_json::from_value(v).expect("pod")
}

/// Shapes of the new pending pods.
const SHAPES: [(&str, &str); 4] = [
    ("250m", "512Mi"),
    ("500m", "1Gi"),
    ("1", "2Gi"),
    ("2", "4Gi"),
];
/// Shapes of the bound pods, alternating: 7.5 CPU and 25 GiB per 10 pods.
const BOUND: [(&str, &str); 2] = [("500m", "1Gi"), ("1", "4Gi")];

/// (VmRSS, VmHWM) in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Fills the indexes: `nodes` nodes with their claims and `per_node` pods each.
fn fill(st: &mut ClusterState, nodes: usize, per_node: usize, pool_hash: u64) {
    for i in 0..nodes {
        st.apply_node(&node(i), 0.0).expect("node");
        // A day old: well within the pools' expireAfter.
        let created = stevedore::cluster::wall_clock() - 86_400.0;
        st.apply_claim(&claim(i, pool_hash, created))
            .expect("claim");
        let name = node_name(i);
        for j in 0..per_node {
            let (cpu, mem) = BOUND[j % BOUND.len()];
            let k = i * per_node + j;
            let app = format!("app{}", k % 500);
            let p = pod(
                &format!("ns{}", k % 50),
                &format!("{app}-{k}"),
                Some(&name),
                cpu,
                mem,
                &app,
            );
            st.apply_pod(&p, 0.0).expect("pod");
        }
    }
}

/// Median and max of `ms` (sorted in place) over that many scans.
fn summary(ms: &mut [f64]) -> String {
    summary_of(ms, 2, "scans")
}

/// Median and max of `ms` (sorted in place) with `digits` decimals, over that many `what`.
fn summary_of(ms: &mut [f64], digits: usize, what: &str) -> String {
    ms.sort_by(f64::total_cmp);
    format!(
        "median {:.digits$} ms, max {:.digits$} ms over {} {what}",
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        ms.len()
    )
}

type Ctl = Controller<SimulatedCloud>;

async fn no_change_scans(ctl: &Ctl, now: f64) {
    let mut ms = Vec::new();
    let mut decisions = 0;
    ctl.provision(now).await; // the first scan after the fill sees the fill
    for _ in 0..50 {
        let t = Instant::now();
        let report = ctl.provision(now).await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        decisions += report.decision_ms.len();
    }
    println!(
        "  provisioning scan, no change: {} ({decisions} decisions made)",
        summary(&mut ms)
    );
    let mut ms = Vec::new();
    let m = ctl.model();
    let inputs = stevedore::cluster::state::DecisionInputs {
        catalog: ctl.catalog(),
        pools: &m.pools,
        model: &m.model,
        group_of: None,
    };
    for _ in 0..20 {
        let st = ctl.state.read().unwrap();
        let t = Instant::now();
        let prepared = st.prepare(&inputs);
        let snapshot = prepared.snapshot();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(snapshot.bound.len(), st.pods().count());
        std::hint::black_box(&snapshot);
    }
    println!("  decision snapshot, built:     {}", summary(&mut ms));
    let mut ms = Vec::new();
    ctl.disruption_pass(now).await;
    for _ in 0..20 {
        let t = Instant::now();
        ctl.disruption_pass(now).await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // Nothing is due (no claim expired or drifted, every node 95% requested): a pass
    // that acted would show here, and would leave the next passes waiting on it.
    let (claims, deleting) = {
        let st = ctl.state.read().unwrap();
        let deleting = st.claims().filter(|c| c.deleting_since.is_some()).count();
        (st.claims().count(), deleting)
    };
    println!(
        "  disruption pass, no change:   {} ({claims} claims, {deleting} being deleted)",
        summary(&mut ms)
    );
    // Nothing annotated yet: each pass finds every steered pod to write and sends the
    // first `MAX_PATCHES_PER_PASS` of them to the mocked API server (which answers 404:
    // the pods are only in the indexes, so the next pass finds them all again).
    let mut ms = Vec::new();
    let mut left = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let pass = ctl.steer_deletions().await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        left = pass.deferred;
    }
    println!(
        "  deletion-cost pass:           {} ({} patches sent a pass, {left} pods left for later passes)",
        summary(&mut ms),
        stevedore::controller::deletion_cost::MAX_PATCHES_PER_PASS,
    );
    let mut ms = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        ctl.observe(now);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("  observation scan:             {}", summary(&mut ms));
}

/// One batch of 1,000 pending pods: milliseconds from the last pod entering the indexes
/// to the first launch. The batch's pods and claims are removed afterwards, so every
/// batch meets the same cluster.
async fn one_batch(
    ctl: &Ctl,
    store: &Mutex<fake_api::Store>,
    run: usize,
    first_launch: &Mutex<Option<Instant>>,
    now: f64,
) -> f64 {
    *first_launch.lock().unwrap() = None;
    let names: Vec<String> = (0..1000).map(|i| format!("web-{run}-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let (cpu, mem) = SHAPES[i % SHAPES.len()];
        let p = pod("shop", name, None, cpu, mem, &format!("web{}", i % 20));
        ctl.state.write().unwrap().apply_pod(&p, now).unwrap();
    }
    let batch_closed = Instant::now();
    let report = ctl.provision(now).await;
    let launched = first_launch.lock().unwrap().expect("a launch");
    let ms = launched.duration_since(batch_closed).as_secs_f64() * 1000.0;
    eprintln!(
        "  run: {ms:.1} ms to the first launch; decision {:.1} ms; {} claims for {} pending",
        report.decision_ms[0], report.claims_created, report.pending
    );
    let mut st = ctl.state.write().unwrap();
    for name in &names {
        st.delete_pod("shop", name, now);
    }
    let new: Vec<String> = st
        .claims()
        .filter(|c| c.node_name.is_none())
        .map(|c| c.name.clone())
        .collect();
    for c in new {
        st.delete_claim(&c);
    }
    // The mock API server keeps every object and watch event it was sent (claims,
    // status patches, events): not the controller's memory.
    store.lock().unwrap().forget_all();
    ms
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (nodes, per_node) = (arg(1, 10_000), arg(2, 10));
    let config = stevedore::config::bundled();
    let catalog = Arc::new(stevedore::sim::setup::load_catalog(&config.settings).expect("catalog"));
    let pool_hash = stevedore::core::disruption::template_hash(&config.node_pools[0]);
    let (client, store) = fake_api::client();
    let first_launch: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let fl = first_launch.clone();
    let cloud = SimulatedCloud::new(catalog.clone()).with_hook(Box::new(move |_, _| {
        fl.lock().unwrap().get_or_insert_with(Instant::now);
    }));
    let ctl = Controller::new(client, cloud, config, catalog, Options::default());
    let (before, _) = memory_kib();
    let t = Instant::now();
    fill(&mut ctl.state.write().unwrap(), nodes, per_node, pool_hash);
    let fill_s = t.elapsed().as_secs_f64();
    let (filled, _) = memory_kib();
    // A running controller has built its scheduling model long before a batch.
    ctl.model();
    let now = stevedore::cluster::wall_clock();
    println!(
        "controller at {nodes} nodes (with their NodeClaims) and {} bound pods (mocked API, simulated cloud; filled in {fill_s:.1} s):",
        nodes * per_node
    );
    println!(
        "  resident memory once filled: VmRSS {:.1} MiB (process before filling: {:.1} MiB)",
        mib(filled),
        mib(before)
    );
    no_change_scans(&ctl, now).await;
    let mut runs = Vec::new();
    for run in 0..5 {
        runs.push(one_batch(&ctl, &store, run, &first_launch, now).await);
    }
    println!(
        "  decision for 1,000 new pending pods, last pod indexed to first launch: {}",
        summary_of(&mut runs, 1, "batches")
    );
    let (rss, hwm) = memory_kib();
    println!(
        "  resident memory at the end: VmRSS {:.1} MiB, peak VmHWM {:.1} MiB",
        mib(rss),
        mib(hwm)
    );
}
