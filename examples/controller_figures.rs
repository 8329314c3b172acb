//! Measures the controller's README figures (not a test: timings depend on the machine).
//!
//! `cargo run --release --no-default-features --features controller --example controller_figures`
//!
//! 1. Decision latency: 500 ready nodes, then a batch of 1,000 pending pods; the time from
//!    the last pod of the batch entering the indexes to the cloud's launch call, through
//!    the mocked API server (the NodeClaim is created before the launch).
//! 2. Resident memory with the indexes holding 5,000 nodes and 100,000 pods.

#[path = "../tests/support/fake_api.rs"]
mod fake_api;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use stevedore::cloud::simulated::SimulatedCloud;
use stevedore::cluster::state::ClusterState;
use stevedore::controller::{Controller, Options};

fn node(i: usize) -> Node {
    let name = format!("ip-10-0-{}-{}", i / 250, i % 250);
    let zone = ["us-east-1a", "us-east-1b", "us-east-1c"][i % 3];
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "node.kubernetes.io/instance-type": "m5.xlarge", "topology.kubernetes.io/zone": zone,
            "karpenter.sh/capacity-type": "spot", "stevedore.dev/nodepool": "general",
            "kubernetes.io/hostname": name, "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}},
        "spec": {"providerID": format!("simulated:///{zone}/i-{i:017x}")},
        "status": {"allocatable": {"cpu": "3920m", "memory": "14Gi", "pods": "58"},
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .expect("node")
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

const SHAPES: [(&str, &str); 4] = [
    ("250m", "512Mi"),
    ("500m", "1Gi"),
    ("1", "2Gi"),
    ("2", "4Gi"),
];

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

async fn decision_latency(runs: usize) -> Vec<f64> {
    let config = stevedore::config::bundled();
    let catalog = Arc::new(stevedore::sim::setup::load_catalog(&config.settings).expect("catalog"));
    let mut out = Vec::new();
    for _ in 0..runs {
        let (client, _store) = fake_api::client();
        let first_launch: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let fl = first_launch.clone();
        let cloud = SimulatedCloud::new(catalog.clone()).with_hook(Box::new(move |_, _| {
            fl.lock().unwrap().get_or_insert_with(Instant::now);
        }));
        let ctl = Controller::new(
            client,
            cloud,
            config.clone(),
            catalog.clone(),
            Options::default(),
        );
        {
            let mut st = ctl.state.write().unwrap();
            for i in 0..500 {
                let n = node(i);
                st.apply_node(&n, 0.0).unwrap();
                // Half full: two 1-CPU pods per node.
                let name = n.metadata.name.clone().unwrap();
                for j in 0..2 {
                    st.apply_pod(
                        &pod(
                            "bound",
                            &format!("{name}-{j}"),
                            Some(&name),
                            "1",
                            "2Gi",
                            "api",
                        ),
                        0.0,
                    )
                    .unwrap();
                }
            }
        }
        // A running controller has built its scheduling model long before a batch.
        ctl.model();
        for i in 0..1000 {
            let (cpu, mem) = SHAPES[i % SHAPES.len()];
            let p = pod(
                "shop",
                &format!("web-{i}"),
                None,
                cpu,
                mem,
                &format!("app{}", i % 20),
            );
            ctl.state.write().unwrap().apply_pod(&p, 1.0).unwrap();
        }
        let batch_closed = Instant::now();
        let report = ctl.provision(1.0).await;
        let launched = first_launch.lock().unwrap().expect("a launch");
        let ms = launched.duration_since(batch_closed).as_secs_f64() * 1000.0;
        eprintln!(
            "  run: {ms:.1} ms to the first launch; decision {:.1} ms; {} claims for {} pending",
            report.decision_ms[0], report.claims_created, report.pending
        );
        out.push(ms);
    }
    out
}

fn memory() -> (u64, u64) {
    let before = vm_rss_kib();
    let mut st = ClusterState::new(vec!["default-scheduler".into()]);
    for i in 0..5_000 {
        st.apply_node(&node(i), 0.0).unwrap();
    }
    for i in 0..100_000 {
        let (cpu, mem) = SHAPES[i % SHAPES.len()];
        let n = format!("ip-10-0-{}-{}", (i % 5_000) / 250, (i % 5_000) % 250);
        let p = pod(
            &format!("ns{}", i % 50),
            &format!("app{}-{i}", i % 500),
            Some(&n),
            cpu,
            mem,
            &format!("app{}", i % 500),
        );
        st.apply_pod(&p, 0.0).unwrap();
    }
    let after = vm_rss_kib();
    assert_eq!(st.pods().count(), 100_000);
    (before, after)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("decision latency, 1,000 pending pods on 500 nodes (mocked API, simulated cloud):");
    let mut runs = decision_latency(5).await;
    runs.sort_by(f64::total_cmp);
    println!(
        "  median {:.1} ms, max {:.1} ms over {} runs",
        runs[runs.len() / 2],
        runs[runs.len() - 1],
        runs.len()
    );
    let (before, after) = memory();
    println!(
        "resident memory with 5,000 nodes and 100,000 pods indexed: {:.1} MiB (process before filling: {:.1} MiB)",
        after as f64 / 1024.0,
        before as f64 / 1024.0
    );
}
