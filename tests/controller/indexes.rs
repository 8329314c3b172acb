//! The indexes kept up to date as objects come and go (pods by node with their requested
//! room, unschedulable pods, nodes by provider ID, claims by node, the service demand)
//! against a full recomputation from every pod and claim, after random sequences of
//! changes; and the provisioning loop's scan that finds nothing changed.

use super::{pending_json, pod, setup};
use proptest::prelude::*;
use serde_json::{json, Value};
use stevedore::cluster::state::{ClusterState, DecisionInputs, Target};
use stevedore::core::instance::{CapacityType, Catalog};
use stevedore::core::model::SchedulingModel;
use stevedore::core::nodepool::NodePool;
use stevedore::core::resources::Resources;

const NODES: [&str; 3] = ["n0", "n1", "n2"];

/// One change the watches could deliver, in any order, duplicated or not.
#[derive(Clone, Debug)]
enum Op {
    /// Pod `pod` (of a small set of names, so that it is re-applied and re-added), on
    /// node `node` (an index past `NODES` is an unbound pod), in phase `phase` (0
    /// running or pending, 1 unschedulable, 2 finished), a DaemonSet's when `ds`.
    Pod {
        pod: usize,
        node: usize,
        phase: u8,
        ds: bool,
        cpu: u32,
    },
    DeletePod(usize),
    MarkDeleting(usize),
    /// Node `node` with provider ID `provider` (of fewer IDs than nodes, so that two
    /// nodes may share one), cordoned when `cordoned`.
    Node {
        node: usize,
        provider: usize,
        cordoned: bool,
    },
    DeleteNode(usize),
    /// Claim `claim` naming node `node` in its status (none past `NODES`) and provider
    /// ID `provider` (none past the nodes' IDs), being deleted when `deleting`.
    Claim {
        claim: usize,
        node: usize,
        provider: usize,
        deleting: bool,
    },
    DeleteClaim(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..8usize, 0..5usize, 0..3u8, any::<bool>(), 1..4u32).prop_map(
            |(pod, node, phase, ds, cpu)| Op::Pod { pod, node, phase, ds, cpu }
        ),
        1 => (0..8usize).prop_map(Op::DeletePod),
        1 => (0..8usize).prop_map(Op::MarkDeleting),
        2 => (0..3usize, 0..2usize, any::<bool>()).prop_map(
            |(node, provider, cordoned)| Op::Node { node, provider, cordoned }
        ),
        1 => (0..3usize).prop_map(Op::DeleteNode),
        2 => (0..4usize, 0..4usize, 0..3usize, any::<bool>()).prop_map(
            |(claim, node, provider, deleting)| Op::Claim { claim, node, provider, deleting }
        ),
        1 => (0..4usize).prop_map(Op::DeleteClaim),
    ]
}

fn claim_json(i: usize, node: usize, provider: usize, deleting: bool) -> Value {
    let mut v = json!({
        "metadata": {"name": format!("general-{i}")},
        "spec": {"nodePool": "general", "options": [{"instanceType": "m5.large",
                 "zone": "us-east-1a", "capacityType": "spot", "pricePerHour": 0.03}]},
        "status": {}
    });
    if let Some(n) = NODES.get(node) {
        v["status"]["nodeName"] = json!(n);
    }
    if provider < 2 {
        v["status"]["providerID"] = json!(format!("aws:///us-east-1a/i-{provider}"));
    }
    if deleting {
        v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        v["metadata"]["finalizers"] = json!(["stevedore.dev/termination"]);
    }
    v
}

fn pod_json(i: usize, node: usize, phase: u8, ds: bool, cpu: u32) -> Value {
    let mut v = pending_json(
        &format!("ns{}", i % 2),
        &format!("p{i}"),
        &format!("{cpu}00m"),
        "256Mi",
    );
    if phase != 1 {
        v["status"] = json!({"phase": if phase == 2 { "Succeeded" } else { "Running" }});
    }
    if let Some(n) = NODES.get(node) {
        v["spec"]["nodeName"] = json!(n);
    }
    if ds {
        v["metadata"]["ownerReferences"] =
            json!([{"kind": "DaemonSet", "name": "agent", "controller": true}]);
    }
    v
}

fn node_json(i: usize, provider: usize, cordoned: bool) -> Value {
    json!({
        "metadata": {"name": NODES[i], "labels": {"node.kubernetes.io/instance-type": "m5.large",
            "topology.kubernetes.io/zone": "us-east-1a", "karpenter.sh/capacity-type": "spot",
            "stevedore.dev/nodepool": "general"}},
        "spec": {"providerID": format!("aws:///us-east-1a/i-{provider}"), "unschedulable": cordoned},
        "status": {"allocatable": {"cpu": "1930m", "memory": "7Gi", "pods": "29"},
                   "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn apply(st: &mut ClusterState, op: &Op, t: f64) {
    match *op {
        Op::Pod {
            pod: i,
            node,
            phase,
            ds,
            cpu,
        } => {
            st.apply_pod(&pod(pod_json(i, node, phase, ds, cpu)), t)
                .unwrap();
        }
        Op::DeletePod(i) => st.delete_pod(&format!("ns{}", i % 2), &format!("p{i}"), t),
        Op::MarkDeleting(i) => st.mark_pod_deleting(&format!("ns{}", i % 2), &format!("p{i}")),
        Op::Node {
            node,
            provider,
            cordoned,
        } => {
            let n = serde_json::from_value(node_json(node, provider, cordoned)).unwrap();
            st.apply_node(&n, t).unwrap();
        }
        Op::DeleteNode(i) => st.delete_node(NODES[i]),
        Op::Claim {
            claim,
            node,
            provider,
            deleting,
        } => {
            let c = serde_json::from_value(claim_json(claim, node, provider, deleting)).unwrap();
            st.apply_claim(&c).unwrap();
        }
        Op::DeleteClaim(i) => st.delete_claim(&format!("general-{i}")),
    }
}

/// Each prepared node's target and claim, computed the slow way: a node is the last
/// claim by name that resolves to it; a claim that resolves to none (and is not being
/// deleted) is a launching node, after the nodes.
fn expected_targets(st: &ClusterState) -> Vec<(Target, Option<String>)> {
    let mut out: Vec<(Target, Option<String>)> = st
        .nodes()
        .map(|n| {
            let claim = st
                .claims()
                .filter(|c| st.node_of(c).is_some_and(|m| m.name == n.name))
                .last();
            (Target::Node(n.name.clone()), claim.map(|c| c.name.clone()))
        })
        .collect();
    for c in st.claims() {
        if st.node_of(c).is_none() && c.deleting_since.is_none() {
            out.push((Target::Claim(c.name.clone()), Some(c.name.clone())));
        }
    }
    out
}

/// What a decision must see, computed the slow way from every pod: per node its
/// requested room (its unfinished pods', plus the model's DaemonSet room while it has no
/// DaemonSet pod); the pods that stay, by node; the pending pods; the pods a drain
/// would evict (those of a node whose claim is being deleted).
struct Expected {
    requested: Vec<(String, Resources)>,
    bound: Vec<(String, String)>,
    pending: Vec<String>,
    draining: Vec<String>,
    service: Resources,
}

fn expected(st: &ClusterState, inp: &DecisionInputs) -> Expected {
    let ty = inp.catalog.find("m5.large").unwrap();
    let general = inp.pools.iter().position(|p| p.name == "general").unwrap();
    let overhead = inp.model.pools[general]
        .types
        .iter()
        .find(|t| t.ty == ty)
        .map(|t| t.daemon_overhead(CapacityType::Spot).clone())
        .unwrap();
    let live = |n: &str| {
        let mut pods: Vec<_> = st
            .pods()
            .filter(|p| p.node.as_deref() == Some(n) && !p.terminal)
            .collect();
        pods.sort_by_key(|p| p.pod.key());
        pods
    };
    let mut out = Expected {
        requested: Vec::new(),
        bound: Vec::new(),
        pending: Vec::new(),
        draining: Vec::new(),
        service: Resources::default(),
    };
    let targets = expected_targets(st);
    for (i, n) in st.nodes().enumerate() {
        let claim = targets[i].1.as_deref().and_then(|c| st.claim(c));
        let draining = claim.is_some_and(|c| c.deleting_since.is_some());
        let mut requested = Resources::default();
        for p in live(&n.name) {
            requested.add(&p.pod.requests);
            if !n.unschedulable && !draining && !p.deleting {
                out.bound.push((p.pod.key(), n.name.clone()));
            }
            if draining && !p.deleting && !p.pod.is_daemonset() {
                out.draining.push(p.pod.key());
            }
        }
        if !live(&n.name).iter().any(|p| p.pod.is_daemonset()) {
            requested.add(&overhead);
        }
        out.requested.push((n.name.clone(), requested));
    }
    for p in st.pods() {
        let known = p.node.as_ref().is_some_and(|n| st.node(n).is_some());
        let ds_unbound = p.pod.is_daemonset() && p.node.is_none();
        if p.unschedulable && !p.terminal && !ds_unbound && !known {
            out.pending.push(p.pod.key());
        }
        let holds_room = !p.terminal && (p.node.is_some() || p.unschedulable);
        let ends = p.pod.owner.as_ref().is_some_and(|o| o.kind == "Job");
        if holds_room && !p.pod.is_daemonset() && !ends {
            out.service.add(&p.pod.requests);
        }
    }
    out.bound.sort();
    out.pending.sort();
    out.draining.sort();
    out
}

fn check(st: &ClusterState, inp: &DecisionInputs) {
    assert!(
        st.indexes_consistent(),
        "kept indexes differ from rebuilt ones"
    );
    let want = expected(st, inp);
    let got = st.prepare(inp);
    let targets: Vec<(Target, Option<String>)> = got
        .nodes
        .iter()
        .map(|n| (n.target.clone(), n.claim.map(str::to_string)))
        .collect();
    assert_eq!(targets, expected_targets(st));
    let requested: Vec<(String, Resources)> = got
        .nodes
        .iter()
        .filter(|n| matches!(n.target, Target::Node(_)))
        .map(|n| (n.name.to_string(), n.requested.clone()))
        .collect();
    assert_eq!(requested, want.requested);
    let mut bound: Vec<(String, String)> = got
        .bound
        .iter()
        .map(|(p, i)| (p.key(), got.nodes[*i].name.to_string()))
        .collect();
    bound.sort();
    assert_eq!(bound, want.bound);
    let mut pending: Vec<String> = got.pending.iter().map(|p| p.key()).collect();
    pending.sort();
    assert_eq!(pending, want.pending);
    let mut draining: Vec<String> = got.draining.iter().map(|p| p.key()).collect();
    draining.sort();
    assert_eq!(draining, want.draining);
    assert_eq!(st.service_demand(), &want.service);
    assert_eq!(st.any_unschedulable(), st.pods().any(|p| p.unschedulable));
    for n in st.nodes() {
        let mut on: Vec<String> = st.pods_on(&n.name).map(|p| p.pod.key()).collect();
        let mut all: Vec<String> = st
            .pods()
            .filter(|p| p.node.as_deref() == Some(&n.name) && !p.terminal)
            .map(|p| p.pod.key())
            .collect();
        on.sort();
        all.sort();
        assert_eq!(on, all, "pods on {}", n.name);
    }
}

fn bundled() -> (Catalog, Vec<NodePool>, SchedulingModel) {
    let config = stevedore::config::bundled();
    let catalog = stevedore::sim::setup::load_catalog(&config.settings).unwrap();
    let ds: Vec<_> = config
        .settings
        .daemon_sets
        .iter()
        .map(stevedore::sim::setup::daemonset_pod)
        .collect();
    let refs: Vec<_> = ds.iter().collect();
    let pools = config.node_pools.clone();
    let model = SchedulingModel::new(&catalog, &pools, &refs);
    (catalog, pools, model)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Out-of-order, duplicated, deleted-then-re-added objects: after every change the
    /// kept indexes equal a recomputation from scratch, and so does the snapshot.
    #[test]
    fn kept_indexes_equal_a_full_recomputation(ops in proptest::collection::vec(op(), 1..60)) {
        let (catalog, pools, model) = bundled();
        let inp = DecisionInputs { catalog: &catalog, pools: &pools, model: &model, group_of: None };
        let mut st = ClusterState::new(vec!["default-scheduler".into()]);
        for (t, op) in ops.iter().enumerate() {
            apply(&mut st, op, t as f64);
            check(&st, &inp);
        }
    }
}

#[test]
fn a_claim_finds_its_node_by_provider_id_through_the_index() {
    let (catalog, pools, model) = bundled();
    let inp = DecisionInputs {
        catalog: &catalog,
        pools: &pools,
        model: &model,
        group_of: None,
    };
    let mut st = ClusterState::new(vec!["default-scheduler".into()]);
    let claim = |provider: &str| -> stevedore::cluster::crd::NodeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "general-a"},
            "spec": {"nodePool": "general", "options": [{"instanceType": "m5.large",
                     "zone": "us-east-1a", "capacityType": "spot", "pricePerHour": 0.03}]},
            "status": {"providerID": provider}
        }))
        .unwrap()
    };
    st.apply_claim(&claim("aws:///us-east-1a/i-1")).unwrap();
    let targets = |st: &ClusterState| -> Vec<Target> {
        st.prepare(&inp)
            .nodes
            .into_iter()
            .map(|n| n.target)
            .collect()
    };
    assert_eq!(targets(&st), vec![Target::Claim("general-a".into())]);
    // Two nodes show the same ID: the first by name is the claim's, as before.
    for (i, provider) in [(2, 1), (1, 1)] {
        let n = serde_json::from_value(node_json(i, provider, false)).unwrap();
        st.apply_node(&n, 0.0).unwrap();
    }
    assert_eq!(
        st.node_of(st.claim("general-a").unwrap()).unwrap().name,
        "n1"
    );
    st.delete_node("n1");
    assert_eq!(
        st.node_of(st.claim("general-a").unwrap()).unwrap().name,
        "n2"
    );
    // The node's provider ID changes: the claim is launching again.
    let n = serde_json::from_value(node_json(2, 0, false)).unwrap();
    st.apply_node(&n, 0.0).unwrap();
    assert!(st.node_of(st.claim("general-a").unwrap()).is_none());
    assert!(st.indexes_consistent());
}

#[test]
fn an_update_that_changes_nothing_is_no_change() {
    let mut st = ClusterState::new(vec!["default-scheduler".into()]);
    let p = pod(pending_json("shop", "web-0", "1", "1Gi"));
    st.apply_pod(&p, 0.0).unwrap();
    let n = serde_json::from_value(node_json(0, 0, false)).unwrap();
    st.apply_node(&n, 0.0).unwrap();
    let before = st.changes;
    // A relist delivers both again.
    st.apply_pod(&p, 5.0).unwrap();
    st.apply_node(&n, 5.0).unwrap();
    st.mark_pod_deleting("shop", "web-0");
    assert_eq!(st.changes, before + 1, "only the mark is a change");
    st.mark_pod_deleting("shop", "web-0");
    assert_eq!(st.changes, before + 1, "marked once");
}

/// A scan that finds nothing changed since a decision that asked for nothing makes no
/// decision; any change, or a decision that asked for a claim, makes the next one.
#[tokio::test]
async fn a_scan_with_no_change_does_not_decide_again() {
    let (ctl, _store, _) = setup();
    // Nothing can hold it: the decision asks for nothing.
    let huge = pod(pending_json("shop", "huge", "100000", "1Gi"));
    ctl.state.write().unwrap().apply_pod(&huge, 0.0).unwrap();
    let first = ctl.provision(0.0).await;
    assert!(!first.unchanged);
    assert_eq!(first.pending, 1);
    assert_eq!(ctl.provisioning_decisions(), 1);
    for _ in 0..3 {
        let again = ctl.provision(1.0).await;
        assert!(again.unchanged);
        assert!(again.decision_ms.is_empty());
    }
    assert_eq!(
        ctl.provisioning_decisions(),
        1,
        "no decision on unchanged inputs"
    );
    // A new pod that fits: decided at once, and a claim is launched for it.
    let small = pod(pending_json("shop", "small", "1", "1Gi"));
    ctl.state.write().unwrap().apply_pod(&small, 2.0).unwrap();
    let next = ctl.provision(2.0).await;
    assert!(!next.unchanged);
    assert_eq!(next.launched, 1);
    // The launch's claim is a change: the next scan decides (the pod now fits on the
    // launching claim, so it asks for nothing), and the one after does not.
    assert!(!ctl.provision(3.0).await.unchanged);
    assert!(ctl.provision(4.0).await.unchanged);
}

#[tokio::test]
async fn a_decision_that_asked_for_claims_is_made_again() {
    let (client, _store) = super::fake_api::client();
    let cat = super::catalog();
    let ctl = stevedore::controller::Controller::new(
        client,
        stevedore::cloud::simulated::SimulatedCloud::new(cat.clone()),
        stevedore::config::bundled(),
        cat,
        stevedore::controller::Options {
            dry_run: true,
            ..Default::default()
        },
    );
    let p = pod(pending_json("shop", "web-0", "1", "1Gi"));
    ctl.state.write().unwrap().apply_pod(&p, 0.0).unwrap();
    // A dry run launches nothing, so nothing changes; every scan still decides (and
    // says what it would launch), as a failed launch must be tried again.
    for _ in 0..3 {
        assert!(!ctl.provision(0.0).await.unchanged);
    }
    assert_eq!(ctl.provisioning_decisions(), 3);
}

/// The clock moves one input of a decision: an offering's unavailability running out.
/// A scan after that decides again, though nothing else changed.
#[tokio::test]
async fn an_unavailable_offering_running_out_is_a_change() {
    let (ctl, _store, _) = setup();
    let now = 3_000.0;
    ctl.cloud().set_now(now);
    // The pod may run on one type only, out of capacity everywhere: the first launch
    // fails and marks all of its offerings, and the decision then asks for nothing.
    for capacity in ["spot", "on-demand"] {
        ctl.cloud()
            .add_shortage("m5.large", "*", capacity, 36_000.0);
    }
    let mut p = pending_json("shop", "web-0", "1", "1Gi");
    p["spec"]["nodeSelector"] = json!({"node.kubernetes.io/instance-type": "m5.large"});
    ctl.state.write().unwrap().apply_pod(&pod(p), now).unwrap();
    let first = ctl.provision(now).await;
    assert!(first.launch_failures >= 1, "{first:?}");
    assert_eq!(first.launched, 0);
    // The marks are a change; once decided on, the same inputs make no decision.
    assert!(!ctl.provision(now + 1.0).await.unchanged);
    assert!(ctl.provision(now + 2.0).await.unchanged);
    let ttl = stevedore::config::bundled()
        .settings
        .unavailable_offering_ttl
        .as_secs_f64();
    let later = ctl.provision(now + ttl + 1.0).await;
    assert!(
        !later.unchanged,
        "the offerings are available again: decided"
    );
    assert!(later.launch_failures >= 1, "{later:?}");
}
