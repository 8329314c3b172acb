//! The controller against a mocked API server (tower-test) and the simulated cloud.
#![cfg(feature = "controller")]

#[path = "support/fake_api.rs"]
mod fake_api;
#[path = "support/prom.rs"]
mod prom;

/// The loops on their own: hung calls, refusals, lost watches, a paced drain.
#[path = "controller/loops.rs"]
mod loops;

/// The indexes kept up to date against a full recomputation; the no-change scan.
#[path = "controller/indexes.rs"]
mod indexes;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use stevedore::cloud::simulated::SimulatedCloud;
use stevedore::cloud::{CloudProvider, Instance, InstanceState};
use stevedore::cluster::crd::{NodeClaim, TERMINATION_FINALIZER};
use stevedore::cluster::lease::LeaderElector;
use stevedore::cluster::state::DISRUPTED_TAINT;
use stevedore::controller::{Controller, Options};
use stevedore::core::instance::{CapacityType, Catalog};
use stevedore::trace::{RawEvent, RawEventKind};

const CLAIMS: &str = "/apis/stevedore.dev/v1/nodeclaims";
const NODES: &str = "/api/v1/nodes";
const LIMIT: Duration = Duration::from_secs(30);

fn catalog() -> Arc<Catalog> {
    let config = stevedore::config::bundled();
    Arc::new(stevedore::sim::setup::load_catalog(&config.settings).expect("bundled catalog"))
}

fn controller(client: kube::Client, catalog: Arc<Catalog>) -> Controller<SimulatedCloud> {
    let cloud = SimulatedCloud::new(catalog.clone());
    Controller::new(
        client,
        cloud,
        stevedore::config::bundled(),
        catalog,
        Options::default(),
    )
}

/// A controller over the simulated cloud, talking to a fresh fake API server.
fn setup() -> (
    Controller<SimulatedCloud>,
    Arc<std::sync::Mutex<fake_api::Store>>,
    Arc<Catalog>,
) {
    let (client, store) = fake_api::client();
    let cat = catalog();
    (controller(client, cat.clone()), store, cat)
}

fn pending_json(ns: &str, name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
    })
}

/// A pod created at `t` (seconds since the Unix epoch).
fn aged(mut v: Value, t: f64) -> Value {
    v["metadata"]["creationTimestamp"] = json!(stevedore::cluster::rfc3339(t));
    v
}

fn pod(v: Value) -> Pod {
    serde_json::from_value(v).expect("a v1.Pod")
}

/// The same pending pod to the controller's indexes and, as `pod_added` at t = 0, to a
/// trace for `simulate` (the two paths must decide alike).
fn add_to_both(ctl: &Controller<SimulatedCloud>, events: &mut Vec<RawEvent>, p: Value) {
    ctl.state
        .write()
        .unwrap()
        .apply_pod(&pod(p.clone()), 0.0)
        .unwrap();
    let mut trace_pod = p;
    trace_pod.as_object_mut().unwrap().remove("status");
    events.push(RawEvent {
        t: 0.0,
        kind: RawEventKind::PodAdded {
            pod: trace_pod,
            run_for_s: None,
        },
    });
}

/// A Node for an instance, as a kubelet would register it.
fn node_json(name: &str, instance: &Instance, catalog: &Catalog, ready: bool) -> Value {
    let ty = &catalog.types[catalog
        .find(&instance.instance_type)
        .expect("type in catalog")];
    json!({
        "metadata": {"name": name, "labels": {
            "node.kubernetes.io/instance-type": instance.instance_type,
            "topology.kubernetes.io/zone": instance.zone,
            "karpenter.sh/capacity-type": instance.capacity_type.as_str(),
            "stevedore.dev/nodepool": instance.node_pool.clone().unwrap_or_default(),
            "kubernetes.io/hostname": name}},
        "spec": {"providerID": instance.provider_id},
        "status": {
            "allocatable": {"cpu": format!("{}m", ty.allocatable.cpu_milli), "memory": ty.allocatable.memory.to_string(), "pods": ty.allocatable.pods.to_string()},
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
        }
    })
}

fn claim_of(store: &fake_api::Store, name: &str) -> NodeClaim {
    serde_json::from_value(store.get(CLAIMS, name).expect("claim stored").clone())
        .expect("a NodeClaim")
}

fn assert_all_granted(store: &fake_api::Store) {
    assert!(
        store.ungranted.is_empty(),
        "calls missing from API_CALLS: {:?}",
        store.ungranted
    );
}

#[tokio::test]
async fn a_pending_pod_gets_a_claim_a_launch_a_node_and_a_ready_claim() {
    let (ctl, store, cat) = setup();
    let now = 1_000.0;
    ctl.state
        .write()
        .unwrap()
        .apply_pod(
            &pod(aged(pending_json("shop", "web-1", "1", "2Gi"), now - 42.0)),
            now,
        )
        .unwrap();

    let report = tokio::time::timeout(LIMIT, ctl.provision(now))
        .await
        .expect("in time");
    assert_eq!(
        (report.claims_created, report.launched),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(ctl.cloud().launches(), 1);
    let name = {
        let s = store.lock().unwrap();
        let keys: Vec<&String> = s.objects.keys().filter(|k| k.starts_with(CLAIMS)).collect();
        assert_eq!(keys.len(), 1);
        let claim = claim_of(&s, keys[0].rsplit('/').next().unwrap());
        // Created with the finalizer before the cloud was called, then the status.
        assert_eq!(
            claim.metadata.finalizers.as_deref(),
            Some(&[TERMINATION_FINALIZER.to_string()][..])
        );
        let create = s
            .calls
            .iter()
            .position(|c| c == &format!("POST {CLAIMS}"))
            .expect("created");
        let status = s
            .calls
            .iter()
            .position(|c| c.starts_with("PATCH") && c.ends_with("/status"))
            .expect("status patched");
        assert!(create < status);
        let st = claim.status.clone().expect("status");
        assert!(st
            .provider_id
            .as_deref()
            .is_some_and(|p| p.starts_with("simulated:///")));
        assert!(st.condition("Launched"));
        assert!(!claim.spec.options.is_empty());
        // The pod was told where it goes.
        assert!(s.calls_to("POST", "/namespaces/shop/events") >= 1);
        claim.metadata.name.clone().unwrap()
    };

    // The metrics see one pending pod and one launching node of the pool.
    ctl.observe(now);
    let text = ctl.metrics.render();
    assert!(text.contains("stevedore_pending_pods 1"), "{text}");
    assert!(
        text.contains("stevedore_pending_pods_oldest_age_seconds 42"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("stevedore_nodes_by_state{")
                && l.contains("state=\"launching\"")
                && l.ends_with(" 1")),
        "{text}"
    );

    // The pod still pending must not get a second node: it fits on the launching claim.
    let again = tokio::time::timeout(LIMIT, ctl.provision(now + 5.0))
        .await
        .expect("in time");
    assert_eq!(again.claims_created, 0, "{again:?}");
    assert_eq!(ctl.cloud().launches(), 1);

    // The instance registers as a Node (not ready yet), then becomes Ready.
    let instance = ctl.cloud().list().await.unwrap().remove(0);
    let n = node_json("ip-10-0-0-1", &instance, &cat, false);
    store.lock().unwrap().put(NODES, n.clone());
    ctl.state
        .write()
        .unwrap()
        .apply_node(&serde_json::from_value::<Node>(n).unwrap(), now)
        .unwrap();
    tokio::time::timeout(LIMIT, ctl.reconcile(now + 30.0))
        .await
        .expect("in time");
    {
        let s = store.lock().unwrap();
        let claim = claim_of(&s, &name);
        let st = claim.status.unwrap();
        assert_eq!(st.node_name.as_deref(), Some("ip-10-0-0-1"));
        assert!(st.condition("Registered"));
        assert!(!st.conditions.iter().any(|c| c.type_ == "Ready"));
        // Pool labels synced onto the node.
        let node = s.get(NODES, "ip-10-0-0-1").unwrap();
        assert_eq!(
            node["metadata"]["labels"]["stevedore.dev/nodeclaim"],
            json!(name)
        );
    }
    let ready = node_json("ip-10-0-0-1", &instance, &cat, true);
    ctl.state
        .write()
        .unwrap()
        .apply_node(&serde_json::from_value::<Node>(ready).unwrap(), now)
        .unwrap();
    tokio::time::timeout(LIMIT, ctl.reconcile(now + 40.0))
        .await
        .expect("in time");
    let s = store.lock().unwrap();
    let st = claim_of(&s, &name).status.unwrap();
    assert!(st.condition("Ready"));
    assert_all_granted(&s);
}

/// A ready claim with its node and two web pods on it, in the API store and the
/// indexes; the next `evict_429` evictions are refused.
fn ready_claim_with_pods(
    ctl: &Controller<SimulatedCloud>,
    store: &mut fake_api::Store,
    cat: &Catalog,
    now: f64,
    evict_429: u32,
) {
    ready_claim(
        ctl,
        store,
        cat,
        now,
        ("general-drain", "n1", 1),
        &["web-a", "web-b"],
    );
    store.evict_429 = evict_429;
}

/// A ready m5.large on-demand claim `(claim, node, instance number)` launched 10 minutes
/// before `now`, with `pods` (100m, 128Mi each, owned by a ReplicaSet) running on its
/// node: the instance, the claim, the node and the pods.
fn claim_fixture(
    cat: &Catalog,
    now: f64,
    (claim_name, node_name, n): (&str, &str, u32),
    pods: &[&str],
) -> (Instance, Value, Value, Vec<Value>) {
    let instance = Instance {
        provider_id: format!("simulated:///us-east-1a/i-{n:017x}"),
        instance_type: "m5.large".into(),
        zone: "us-east-1a".into(),
        capacity_type: CapacityType::OnDemand,
        state: InstanceState::Running,
        node_claim: Some(claim_name.into()),
        node_pool: Some("general".into()),
        launched_at: now - 600.0,
    };
    let claim = json!({
        "apiVersion": "stevedore.dev/v1", "kind": "NodeClaim",
        "metadata": {"name": claim_name, "finalizers": [TERMINATION_FINALIZER], "resourceVersion": "1", "uid": format!("uid-{claim_name}")},
        "spec": {"nodePool": "general", "options": [{"instanceType": "m5.large", "zone": "us-east-1a", "capacityType": "on-demand", "pricePerHour": 0.096}],
                 "terminationGracePeriod": "10m"},
        "status": {"providerID": instance.provider_id, "nodeName": node_name, "instanceType": "m5.large", "zone": "us-east-1a",
                   "capacityType": "on-demand", "launchedAt": now - 600.0,
                   "conditions": [{"type": "Launched", "status": "True"}, {"type": "Registered", "status": "True"}, {"type": "Ready", "status": "True"}]}
    });
    let node = node_json(node_name, &instance, cat, true);
    let pods = pods
        .iter()
        .map(|name| {
            let mut p = pending_json("shop", name, "100m", "128Mi");
            p["spec"]["nodeName"] = json!(node_name);
            // Owned pods: a bare pod would keep its node from consolidation.
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-7d9f", "uid": "rs-uid", "controller": true}]);
            p["status"] =
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
            p
        })
        .collect();
    (instance, claim, node, pods)
}

/// [`claim_fixture`] in the simulated cloud, the API store and the indexes.
fn ready_claim(
    ctl: &Controller<SimulatedCloud>,
    store: &mut fake_api::Store,
    cat: &Catalog,
    now: f64,
    names: (&str, &str, u32),
    pods: &[&str],
) {
    let (instance, claim, node, pods) = claim_fixture(cat, now, names, pods);
    ctl.cloud().insert(instance);
    let mut st = ctl.state.write().unwrap();
    st.apply_claim(&serde_json::from_value(claim.clone()).unwrap())
        .unwrap();
    st.apply_node(&serde_json::from_value(node.clone()).unwrap(), now - 600.0)
        .unwrap();
    store.put(CLAIMS, claim);
    store.put(NODES, node);
    for p in pods {
        st.apply_pod(&pod(p.clone()), now - 600.0).unwrap();
        store.put("/api/v1/namespaces/shop/pods", p);
    }
}

#[tokio::test]
async fn deleting_a_claim_drains_with_evictions_retries_a_pdb_429_then_terminates() {
    let (ctl, store, cat) = setup();
    let now = 5_000.0;
    ready_claim_with_pods(&ctl, &mut store.lock().unwrap(), &cat, now, 1);

    tokio::time::timeout(LIMIT, ctl.delete_claim("general-drain"))
        .await
        .unwrap()
        .unwrap();
    assert!(ctl
        .state
        .read()
        .unwrap()
        .claim("general-drain")
        .unwrap()
        .deleting_since
        .is_some());

    // First pass: taint, one eviction refused (429), the other accepted.
    tokio::time::timeout(LIMIT, ctl.reconcile(now))
        .await
        .unwrap();
    {
        let s = store.lock().unwrap();
        let taints = &s.get(NODES, "n1").unwrap()["spec"]["taints"];
        assert!(
            taints
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == DISRUPTED_TAINT && t["effect"] == "NoSchedule"),
            "{taints}"
        );
        assert_eq!(s.calls_to("POST", "/eviction"), 2);
    }
    let deleting = |ctl: &Controller<SimulatedCloud>| {
        let st = ctl.state.read().unwrap();
        ["web-a", "web-b"]
            .iter()
            .filter(|n| st.pod("shop", n).unwrap().deleting)
            .count()
    };
    assert_eq!(deleting(&ctl), 1);
    assert!(
        ctl.cloud().list().await.unwrap().len() == 1,
        "not terminated while pods remain"
    );

    // Within the backoff nothing is retried; after it, the refused pod is evicted.
    tokio::time::timeout(LIMIT, ctl.reconcile(now + 0.5))
        .await
        .unwrap();
    assert_eq!(store.lock().unwrap().calls_to("POST", "/eviction"), 2);
    tokio::time::timeout(LIMIT, ctl.reconcile(now + 1.5))
        .await
        .unwrap();
    assert_eq!(store.lock().unwrap().calls_to("POST", "/eviction"), 3);
    assert_eq!(deleting(&ctl), 2);

    // Drained: instance terminated, node deleted, finalizer released.
    tokio::time::timeout(LIMIT, ctl.reconcile(now + 2.0))
        .await
        .unwrap();
    assert!(ctl.cloud().list().await.unwrap().is_empty());
    let s = store.lock().unwrap();
    assert!(s.get(NODES, "n1").is_none());
    assert!(
        s.get(CLAIMS, "general-drain").is_none(),
        "finalizer released, claim gone"
    );
    assert!(ctl.state.read().unwrap().claim("general-drain").is_none());
    assert_all_granted(&s);
}

#[tokio::test]
async fn past_the_termination_grace_period_pods_are_deleted_not_evicted() {
    let (ctl, store, cat) = setup();
    let now = 5_000.0;
    ready_claim_with_pods(&ctl, &mut store.lock().unwrap(), &cat, now, 100);
    tokio::time::timeout(LIMIT, ctl.delete_claim("general-drain"))
        .await
        .unwrap()
        .unwrap();
    let since = ctl
        .state
        .read()
        .unwrap()
        .claim("general-drain")
        .unwrap()
        .deleting_since
        .unwrap();
    tokio::time::timeout(LIMIT, ctl.reconcile(since + 1.0))
        .await
        .unwrap();
    assert_eq!(store.lock().unwrap().calls_to("DELETE", "/pods/"), 0);
    // terminationGracePeriod is 10m.
    tokio::time::timeout(LIMIT, ctl.reconcile(since + 601.0))
        .await
        .unwrap();
    assert_eq!(store.lock().unwrap().calls_to("DELETE", "/pods/"), 2);
}

async fn step(e: &mut LeaderElector, t: f64) -> bool {
    tokio::time::timeout(LIMIT, e.step(t))
        .await
        .expect("in time")
        .expect("api ok")
}

#[tokio::test]
async fn leader_hand_over_through_the_lease_api() {
    let (client, store) = fake_api::client();
    let api = || kube::Api::namespaced(client.clone(), "stevedore");
    let d = Duration::from_secs(15);
    let mut a = LeaderElector::new(api(), "stevedore-leader", "pod-a", d);
    let mut b = LeaderElector::new(api(), "stevedore-leader", "pod-b", d);
    assert!(step(&mut a, 0.0).await, "a creates the lease");
    assert!(!step(&mut b, 0.0).await, "b follows");
    // `renewTime` has a microsecond resolution; make sure the next renewal differs.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(step(&mut a, 5.0).await, "a renews");
    assert!(!step(&mut b, 5.0).await);
    // a stops renewing. b waits a whole lease duration from the last renewal it saw.
    assert!(!step(&mut b, 19.0).await);
    assert!(
        step(&mut b, 20.0).await,
        "b takes over 15 s after a's last renewal"
    );
    assert!(!step(&mut a, 21.0).await, "a, back, follows b");
    // b shuts down and releases: a takes over at once, not after 15 s.
    tokio::time::timeout(LIMIT, b.release())
        .await
        .unwrap()
        .unwrap();
    assert!(step(&mut a, 21.5).await, "a takes a released lease at once");
    let s = store.lock().unwrap();
    let lease = s
        .get(
            "/apis/coordination.k8s.io/v1/namespaces/stevedore/leases",
            "stevedore-leader",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "pod-a");
    assert_eq!(lease["spec"]["leaseTransitions"], 2);
    assert_all_granted(&s);
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_launch_adopts_the_instance_and_launches_no_duplicate() {
    let (client, store) = fake_api::client();
    let cat = catalog();
    let now = 2_000.0;
    // Before the crash: the claim was created and the cloud launched, but the status
    // was never written.
    let first = controller(client.clone(), cat.clone());
    first
        .state
        .write()
        .unwrap()
        .apply_pod(&pod(pending_json("shop", "web-1", "1", "2Gi")), now)
        .unwrap();
    let (plan, _) = first.decide(now);
    assert_eq!(plan.claims.len(), 1);
    let new = &plan.claims[0];
    let created: Value = {
        let mut obj = serde_json::to_value(&new.object).unwrap();
        obj["metadata"]["uid"] = json!("uid-x");
        obj["metadata"]["resourceVersion"] = json!("1");
        obj
    };
    store.lock().unwrap().put(CLAIMS, created.clone());
    let cloud = SimulatedCloud::new(cat.clone());
    let launched = cloud.launch(&new.request).await.unwrap();
    assert_eq!(cloud.launches(), 1);

    // After the restart: a fresh controller over the same cloud rebuilds from the API.
    let ctl = Controller::new(
        client,
        cloud,
        stevedore::config::bundled(),
        cat,
        Options::default(),
    );
    {
        let mut st = ctl.state.write().unwrap();
        st.apply_claim(&serde_json::from_value(created).unwrap())
            .unwrap();
        st.apply_pod(&pod(pending_json("shop", "web-1", "1", "2Gi")), now)
            .unwrap();
    }
    let report = tokio::time::timeout(LIMIT, ctl.provision(now + 1.0))
        .await
        .unwrap();
    assert_eq!(
        report.claims_created, 0,
        "the pod fits on the claim in flight"
    );
    tokio::time::timeout(LIMIT, ctl.reconcile(now + 2.0))
        .await
        .unwrap();
    assert_eq!(ctl.cloud().launches(), 1, "no second instance");
    let s = store.lock().unwrap();
    let claim = claim_of(&s, new.name());
    assert_eq!(
        claim.status.unwrap().provider_id.as_deref(),
        Some(launched.provider_id.as_str())
    );
    assert_all_granted(&s);
}

#[tokio::test]
async fn orphans_are_terminated_after_the_grace_period_only() {
    let (client, _store) = fake_api::client();
    let cat = catalog();
    let ctl = controller(client, cat);
    let now = 10_000.0;
    let orphan = |id: &str, claim: &str, at: f64| Instance {
        provider_id: format!("simulated:///us-east-1a/{id}"),
        instance_type: "m5.large".into(),
        zone: "us-east-1a".into(),
        capacity_type: CapacityType::Spot,
        state: InstanceState::Running,
        node_claim: Some(claim.into()),
        node_pool: Some("general".into()),
        launched_at: at,
    };
    ctl.cloud().insert(orphan("i-old", "gone-old", now - 600.0));
    ctl.cloud().insert(orphan("i-new", "gone-new", now - 10.0));
    let done = tokio::time::timeout(LIMIT, ctl.collect_orphans(now))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done, vec!["simulated:///us-east-1a/i-old".to_string()]);
    let left: Vec<String> = ctl
        .cloud()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.provider_id)
        .collect();
    assert_eq!(left, vec!["simulated:///us-east-1a/i-new".to_string()]);
}

#[tokio::test]
async fn insufficient_capacity_marks_offerings_unavailable_and_decides_again() {
    let (client, store) = fake_api::client();
    let cat = catalog();
    let ctl = controller(client, cat);
    let now = 3_000.0;
    ctl.cloud().set_now(now);
    // No Spot anywhere: launches fail (each takes up to 60 Spot offerings out for the
    // TTL) until the decision turns to on-demand, as in the simulator.
    ctl.cloud().add_shortage("*", "*", "spot", 3600.0);
    ctl.state
        .write()
        .unwrap()
        .apply_pod(&pod(pending_json("shop", "web-1", "1", "2Gi")), now)
        .unwrap();
    let report = tokio::time::timeout(LIMIT, ctl.provision(now))
        .await
        .unwrap();
    assert!(report.launch_failures >= 1, "{report:?}");
    assert_eq!(report.launched, 1, "{report:?}");
    let instances = ctl.cloud().list().await.unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].capacity_type, CapacityType::OnDemand);
    let s = store.lock().unwrap();
    assert_eq!(
        s.objects.keys().filter(|k| k.starts_with(CLAIMS)).count(),
        1,
        "the failed claim was released"
    );
    assert_eq!(
        s.calls_to("POST", "/namespaces/shop/events"),
        1,
        "the pod hears the outcome once, not once per round"
    );
    assert_all_granted(&s);
}

#[tokio::test]
async fn bad_objects_are_skipped_and_never_stop_a_decision() {
    use stevedore::cluster::watch::{self, Signal};
    let (client, _store) = fake_api::client();
    let cat = catalog();
    let ctl = controller(client, cat);
    let now = 1_000.0;
    let mut bad = Vec::new();
    for (i, (cpu, mem)) in [
        ("lots", "1Gi"),
        ("1", "-5Gi"),
        ("99999999999999999999999", "1Gi"),
        ("1", "9999999999999Ei"),
        ("1e400", "1Gi"),
    ]
    .iter()
    .enumerate()
    {
        bad.push(pending_json("shop", &format!("bad-{i}"), cpu, mem));
    }
    // Missing metadata name and missing spec altogether.
    bad.push(json!({"metadata": {"namespace": "shop"}, "spec": {"containers": []}}));
    let kind = watch::pods();
    let mut relist = None;
    for b in &bad {
        let sig = watch::handle(
            &ctl.state,
            &kind,
            kube::runtime::watcher::Event::Apply(pod(b.clone())),
            &mut relist,
        );
        assert_eq!(sig, Some(Signal::Changed), "a bad pod opens no batch: {b}");
    }
    // Huge but valid requests are infeasible, not a crash.
    let huge = pending_json("shop", "huge", "100000", "100Ti");
    ctl.state
        .write()
        .unwrap()
        .apply_pod(&pod(huge), now)
        .unwrap();
    // Bad nodes (no allocatable, unknown quantity) are skipped too.
    for n in [
        json!({"metadata": {"name": "x"}}),
        json!({"metadata": {"name": "y"}, "status": {"allocatable": {"cpu": "many"}}}),
    ] {
        let node: Node = serde_json::from_value(n).unwrap();
        assert!(ctl.state.write().unwrap().apply_node(&node, now).is_err());
    }
    ctl.state
        .write()
        .unwrap()
        .apply_pod(&pod(pending_json("shop", "good", "1", "1Gi")), now)
        .unwrap();
    let st = ctl.state.read().unwrap();
    assert!(
        st.pods().all(|p| !p.pod.name.starts_with("bad-")),
        "bad pods not indexed"
    );
    assert_eq!(st.nodes().count(), 0);
    drop(st);
    let (plan, _) = ctl.decide(now);
    assert_eq!(plan.claims.len(), 1, "the good pod gets a node");
    assert!(
        plan.pod_messages
            .iter()
            .any(|(_, n, m, ok)| n == "huge" && !ok && m.starts_with("cannot schedule")),
        "{:?}",
        plan.pod_messages
    );
}

#[tokio::test]
async fn dry_run_decides_and_tells_but_creates_nothing() {
    let (client, store) = fake_api::client();
    let cat = catalog();
    let cloud = SimulatedCloud::new(cat.clone());
    let opts = Options {
        dry_run: true,
        ..Options::default()
    };
    let ctl = Controller::new(client, cloud, stevedore::config::bundled(), cat, opts);
    ctl.state
        .write()
        .unwrap()
        .apply_pod(&pod(pending_json("shop", "web-1", "1", "2Gi")), 1.0)
        .unwrap();
    let report = tokio::time::timeout(LIMIT, ctl.provision(1.0))
        .await
        .unwrap();
    assert_eq!(report.claims_created, 0);
    assert_eq!(ctl.cloud().launches(), 0);
    let s = store.lock().unwrap();
    assert_eq!(s.calls_to("POST", "nodeclaims"), 0);
    assert_eq!(s.calls_to("POST", "/events"), 1);
    let ev = s
        .objects
        .iter()
        .find(|(k, _)| k.contains("/events/"))
        .unwrap()
        .1;
    assert!(
        ev["message"]
            .as_str()
            .unwrap()
            .starts_with("dry run: nominated for new "),
        "{ev}"
    );
}

/// The same pods, decided through the controller path (simulated cloud) and replayed by
/// `simulate`: the same instance types, capacity types and number of nodes.
#[tokio::test]
async fn the_controller_and_the_simulator_decide_alike() {
    use stevedore::trace::TraceHeader;
    let (client, _store) = fake_api::client();
    let cat = catalog();
    let ctl = controller(client, cat.clone());
    let mut events = Vec::new();
    let shapes = [
        ("250m", "512Mi", 12),
        ("1", "2Gi", 9),
        ("2", "8Gi", 4),
        ("500m", "4Gi", 6),
    ];
    for (s, (cpu, mem, n)) in shapes.iter().enumerate() {
        for i in 0..*n {
            let mut p = pending_json("shop", &format!("w{s}-{i}"), cpu, mem);
            // Constraints the two paths must read alike: a zone spread on one
            // workload, arm64 only on another.
            if s == 1 {
                p["metadata"]["labels"]["app"] = json!("spread");
                p["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": "spread"}}}]);
            }
            if s == 3 {
                p["spec"]["nodeSelector"] = json!({"kubernetes.io/arch": "arm64"});
            }
            add_to_both(&ctl, &mut events, p);
        }
    }
    let mut buf = Vec::new();
    stevedore::trace::write_to(&mut buf, &TraceHeader::new("same"), &events).unwrap();
    let trace =
        stevedore::trace::read_from(std::io::BufReader::new(&buf[..]), "same.jsonl").unwrap();
    let config = stevedore::config::bundled();
    let opts = stevedore::sim::SimOptions {
        mode: stevedore::sim::Mode::Fleet,
        seed: 1,
        progress: false,
        ..Default::default()
    };
    let report = stevedore::sim::run(&trace, "same.jsonl", &config, &cat, &opts).unwrap();
    let mut sim: Vec<(String, String, u64)> = report
        .launched_by_type
        .iter()
        .map(|t| (t.instance_type.clone(), t.capacity_type.clone(), t.count))
        .collect();
    sim.sort();

    tokio::time::timeout(LIMIT, ctl.provision(0.0))
        .await
        .unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for i in ctl.cloud().list().await.unwrap() {
        *counts
            .entry((i.instance_type, i.capacity_type.as_str().to_string()))
            .or_insert(0u64) += 1;
    }
    let ours: Vec<(String, String, u64)> =
        counts.into_iter().map(|((t, c), n)| (t, c, n)).collect();
    assert!(!ours.is_empty());
    assert_eq!(ours, sim);
}

#[test]
fn the_shipped_crds_are_the_generated_ones() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/stevedore/crds/stevedore.dev.yaml"
    );
    let shipped = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        shipped,
        stevedore::cluster::crd::crds_yaml(),
        "charts/stevedore/crds/stevedore.dev.yaml is stale: regenerate with `stevedore crds > {path}`"
    );
}

/// The loop acts only while leader: a follower's batch decides nothing; once leader, a
/// batch closes after `batchIdle` (1 s) and launches, before the next scan.
#[tokio::test(start_paused = true)]
async fn only_the_leader_acts_and_a_batch_closes_after_the_idle_time() {
    use stevedore::cluster::watch::{Signal, WatchSync};
    let (client, store) = fake_api::client();
    let ctl = Arc::new(controller(client, catalog()));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (leader_tx, leader_rx) = tokio::sync::watch::channel(false);
    let sync = Arc::new(WatchSync::all_synced());
    let gate = stevedore::controller::Gate::new(leader_rx, sync, ctl.metrics.clone());
    let loops = ctl.spawn_loops(rx, gate);
    let now = stevedore::cluster::wall_clock();
    // A pod becomes unschedulable, as the pod watch would report it.
    let pending = |name: &str, cpu: &str, mem: &str| {
        let p = pod(pending_json("shop", name, cpu, mem));
        ctl.state.write().unwrap().apply_pod(&p, now).unwrap();
        tx.send(Signal::PodPending).unwrap();
    };
    let claims = || store.lock().unwrap().calls_to("POST", "nodeclaims");
    pending("web-1", "1", "2Gi");
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(claims(), 0, "a follower launches nothing");

    leader_tx.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        claims(),
        1,
        "a new leader acts at once on what it saw as a follower"
    );
    // A pod too big for that claim: the batch waits for 1 s without a new pod.
    pending("big", "30", "100Gi");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(claims(), 1, "the batch is still open");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(claims(), 2, "the batch closed after 1 s idle");
    assert_eq!(ctl.cloud().launches(), 2);
    drop(loops);
}

#[tokio::test]
async fn a_spot_interruption_drains_the_claim_and_takes_the_offering_out() {
    use stevedore::cloud::{Interruption, InterruptionKind};
    let (ctl, store, cat) = setup();
    let now = 5_000.0;
    ready_claim_with_pods(&ctl, &mut store.lock().unwrap(), &cat, now, 0);
    let notice = |kind| Interruption {
        provider_id: "simulated:///us-east-1a/i-00000000000000001".into(),
        kind,
        at: now,
    };
    let none = ctl
        .interrupted(&[notice(InterruptionKind::RebalanceRecommendation)], now)
        .await;
    assert!(none.is_empty(), "a rebalance recommendation is only logged");
    let deleted = tokio::time::timeout(
        LIMIT,
        ctl.interrupted(&[notice(InterruptionKind::SpotInterruption)], now),
    )
    .await
    .unwrap();
    assert_eq!(deleted, vec!["general-drain".to_string()]);
    assert!(ctl
        .state
        .read()
        .unwrap()
        .claim("general-drain")
        .unwrap()
        .deleting_since
        .is_some());
    // The interrupted offering (m5.large in us-east-1a; it was on-demand, so Spot there
    // is out) is skipped: a pod that fits m5.large goes elsewhere.
    ctl.state
        .write()
        .unwrap()
        .apply_pod(&pod(pending_json("shop", "new", "1", "2Gi")), now)
        .unwrap();
    let (plan, _) = ctl.decide(now);
    let opts = &plan.claims[0].request.options;
    assert!(!opts.iter().any(|o| o.instance_type == "m5.large"
        && o.zone == "us-east-1a"
        && o.capacity_type == CapacityType::Spot));
}

/// The fake provider: a launch is a Node object (idempotent per claim), kept alive by
/// heartbeats and a node Lease; a restart finds it with `list`; terminate deletes it.
#[tokio::test]
async fn the_fake_provider_creates_keeps_alive_and_deletes_nodes() {
    use stevedore::cloud::fake::FakeCloud;
    use stevedore::cloud::{CloudError, LaunchRequest, Offering};
    let (client, store) = fake_api::client();
    let cat = catalog();
    let fake = FakeCloud::new(client.clone(), cat.clone(), "demo");
    let request = LaunchRequest {
        node_claim: "general-abcde".into(),
        node_pool: "general".into(),
        options: vec![Offering {
            instance_type: "c7i.xlarge".into(),
            zone: "us-east-1b".into(),
            capacity_type: CapacityType::Spot,
            price_per_hour: 0.07,
        }],
        labels: [("team".to_string(), "web".to_string())].into(),
        taints: vec![],
        startup_taints: vec![],
    };
    let a = tokio::time::timeout(LIMIT, fake.launch(&request))
        .await
        .unwrap()
        .unwrap();
    let b = tokio::time::timeout(LIMIT, fake.launch(&request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.provider_id, "fake:///us-east-1b/general-abcde");
    assert_eq!(a, b, "a repeated launch returns the same node");
    {
        let s = store.lock().unwrap();
        let node = s.get(NODES, "general-abcde").expect("node created");
        assert_eq!(node["metadata"]["labels"]["team"], "web");
        assert_eq!(
            node["metadata"]["labels"]["node.kubernetes.io/instance-type"],
            "c7i.xlarge"
        );
        assert_eq!(node["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(node["status"]["conditions"][0]["status"], "True");
        let alloc_cpu = node["status"]["allocatable"]["cpu"].as_str().unwrap();
        let ty = &cat.types[cat.find("c7i.xlarge").unwrap()];
        assert_eq!(alloc_cpu, format!("{}m", ty.allocatable.cpu_milli));
    }
    // The node converts like any other, and is Ready.
    let obj: Node = serde_json::from_value(
        store
            .lock()
            .unwrap()
            .get(NODES, "general-abcde")
            .unwrap()
            .clone(),
    )
    .unwrap();
    let entry = stevedore::cluster::convert::node_entry(&obj).unwrap();
    assert!(entry.ready);

    assert_eq!(
        tokio::time::timeout(LIMIT, fake.heartbeat())
            .await
            .unwrap()
            .unwrap(),
        1
    );
    assert_eq!(
        tokio::time::timeout(LIMIT, fake.heartbeat())
            .await
            .unwrap()
            .unwrap(),
        1
    );
    {
        let s = store.lock().unwrap();
        let lease = s
            .get(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                "general-abcde",
            )
            .expect("node lease");
        assert_eq!(lease["spec"]["holderIdentity"], "general-abcde");
        assert_eq!(s.calls_to("PATCH", "/nodes/general-abcde/status"), 2);
        assert_all_granted(&s);
    }
    let listed = fake.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].node_claim.as_deref(), Some("general-abcde"));
    fake.terminate(&a.provider_id).await.unwrap();
    assert!(store.lock().unwrap().get(NODES, "general-abcde").is_none());
    assert!(matches!(
        fake.terminate(&a.provider_id).await,
        Err(CloudError::NotFound { .. })
    ));
}

#[tokio::test]
async fn the_http_server_answers_on_localhost() {
    use stevedore::cluster::watch::{WatchSync, WATCHED};
    use stevedore::controller::health::Liveness;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(stevedore::metrics::Metrics::new());
    let health = stevedore::controller::http::Health {
        sync: Arc::new(WatchSync::default()),
        liveness: Arc::new(Liveness::new(metrics.clone())),
    };
    let server = tokio::spawn(stevedore::controller::http::serve_on(
        listener,
        metrics,
        health.clone(),
    ));
    // A plain blocking client on another thread: the server runs on this runtime.
    let get = |path: &'static str| {
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let req =
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
    };
    let not_ready = tokio::time::timeout(LIMIT, get("/readyz"))
        .await
        .unwrap()
        .unwrap();
    assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
    for k in WATCHED {
        health.sync.set(k, true);
    }
    let is_ready = tokio::time::timeout(LIMIT, get("/readyz"))
        .await
        .unwrap()
        .unwrap();
    assert!(is_ready.starts_with("HTTP/1.1 200"), "{is_ready}");
    let metrics = tokio::time::timeout(LIMIT, get("/metrics"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        metrics.starts_with("HTTP/1.1 200") && metrics.contains("# TYPE"),
        "{metrics}"
    );
    server.abort();
}

#[tokio::test]
async fn consolidation_removes_an_empty_node_and_one_whose_pods_fit_elsewhere() {
    let (ctl, store, cat) = setup();
    let now = 50_000.0;
    let claims: [(&str, &str, u32, &[&str]); 3] = [
        ("general-empty", "n-empty", 1, &[][..]),
        ("general-a", "n-a", 2, &["a-1", "a-2"][..]),
        ("general-b", "n-b", 3, &["b-1"][..]),
    ];
    for (claim, node, i, pods) in claims {
        ready_claim(
            &ctl,
            &mut store.lock().unwrap(),
            &cat,
            now,
            (claim, node, i),
            pods,
        );
    }
    // Empty nodes go first.
    tokio::time::timeout(LIMIT, ctl.consolidate(now))
        .await
        .unwrap()
        .unwrap();
    let deleting = |ctl: &Controller<SimulatedCloud>| -> Vec<String> {
        ctl.state
            .read()
            .unwrap()
            .claims()
            .filter(|c| c.deleting_since.is_some())
            .map(|c| c.name.clone())
            .collect()
    };
    assert_eq!(deleting(&ctl), vec!["general-empty".to_string()]);
    // Nothing more while a claim is being deleted (the cluster is not settled).
    tokio::time::timeout(LIMIT, ctl.consolidate(now + 10.0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleting(&ctl).len(), 1);
    // Once it is gone, one of the two underused nodes may go (its pods fit on the other),
    // but not yet: the demand has been this low only since the first pass (30 s), too
    // short for its savings to pay the bundled evictionCost ($0.05 a pod).
    tokio::time::timeout(LIMIT, ctl.reconcile(now + 20.0))
        .await
        .unwrap();
    assert!(ctl.state.read().unwrap().claim("general-empty").is_none());
    tokio::time::timeout(LIMIT, ctl.consolidate(now + 30.0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleting(&ctl), Vec::<String>::new());
    // Four hours of low demand later it pays, and one goes.
    tokio::time::timeout(LIMIT, ctl.consolidate(now + 4.0 * 3600.0))
        .await
        .unwrap()
        .unwrap();
    let d = deleting(&ctl);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0] == "general-a" || d[0] == "general-b");
    let s = store.lock().unwrap();
    assert!(s
        .objects
        .iter()
        .any(|(k, v)| k.contains("/events/") && v["reason"] == "Consolidating"));
    assert_all_granted(&s);
}

/// Sets claim `name`'s creation time (the fixture's claims carry none) and the claim it
/// replaces (none: no annotations), through the API object and the indexes.
fn set_created(
    ctl: &Controller<SimulatedCloud>,
    store: &Arc<std::sync::Mutex<fake_api::Store>>,
    name: &str,
    t: f64,
    replaces: Option<&str>,
) {
    let mut v = store.lock().unwrap().get(CLAIMS, name).unwrap().clone();
    v["metadata"]["creationTimestamp"] = json!(stevedore::cluster::rfc3339(t));
    v["metadata"]["annotations"] = match replaces {
        Some(old) => json!({"stevedore.dev/replaces": old}),
        None => json!({}),
    };
    store.lock().unwrap().put(CLAIMS, v.clone());
    ctl.state
        .write()
        .unwrap()
        .apply_claim(&serde_json::from_value(v).unwrap())
        .unwrap();
}

/// The claims in the API store other than `old`.
fn other_claims(s: &fake_api::Store, old: &str) -> Vec<NodeClaim> {
    s.objects
        .iter()
        .filter(|(k, _)| k.starts_with(CLAIMS) && !k.ends_with(&format!("/{old}")))
        .map(|(_, v)| serde_json::from_value(v.clone()).unwrap())
        .collect()
}

/// The one claim launched to replace `old` (it names `old`), which itself stays until the
/// replacement is ready; the event `reason` on it starts with `message`.
fn replacement_of(s: &fake_api::Store, old: &str, reason: &str, message: &str) -> NodeClaim {
    let new = other_claims(s, old);
    assert_eq!(new.len(), 1, "one replacement claim");
    let ann = new[0].metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann.get("stevedore.dev/replaces").map(String::as_str),
        Some(old)
    );
    assert!(
        claim_of(s, old).metadata.deletion_timestamp.is_none(),
        "the old claim stays until its replacement is ready"
    );
    assert!(s.objects.iter().any(|(k, v)| k.contains("/events/")
        && v["reason"] == reason
        && v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(message))));
    assert_all_granted(s);
    new[0].clone()
}

#[tokio::test]
async fn an_expired_claim_with_pods_is_replaced_first_and_retired_once_the_replacement_is_ready() {
    let (ctl, store, cat) = setup();
    let now = 1_900_000_000.0;
    ctl.cloud().set_now(now);
    ready_claim(
        &ctl,
        &mut store.lock().unwrap(),
        &cat,
        now,
        ("general-ancient", "n-ancient", 1),
        &["web-a", "web-b"],
    );
    // The bundled pools expire nodes after 720h.
    set_created(
        &ctl,
        &store,
        "general-ancient",
        now - 720.0 * 3600.0 + 60.0,
        None,
    );
    assert!(ctl.expiry_action(now).is_none(), "not expired yet");
    set_created(
        &ctl,
        &store,
        "general-ancient",
        now - 720.0 * 3600.0 - 1.0,
        None,
    );

    // Its pods fit nowhere else: a replacement naming it is launched first.
    let acted = tokio::time::timeout(LIMIT, ctl.expire(now)).await.unwrap();
    assert_eq!(acted.as_deref(), Some("general-ancient"));
    let new = replacement_of(
        &store.lock().unwrap(),
        "general-ancient",
        "Expired",
        "Expired: older than expireAfter 30days; replacing with ",
    );
    // The replacement is launching: nothing more is done, the old claim is not picked again.
    assert!(ctl.expiry_action(now + 10.0).is_none());

    // The replacement becomes ready (a node registered): a lifecycle pass retires the old.
    let name = new.metadata.name.clone().unwrap();
    ready_claim(
        &ctl,
        &mut store.lock().unwrap(),
        &cat,
        now,
        (&name, "n-repl", 2),
        &[],
    );
    set_created(&ctl, &store, &name, now, Some("general-ancient"));
    assert!(ctl
        .state
        .read()
        .unwrap()
        .claim("general-ancient")
        .is_some_and(|c| c.deleting_since.is_none()));
    tokio::time::timeout(LIMIT, ctl.reconcile(now + 20.0))
        .await
        .unwrap();
    let old = ctl.state.read().unwrap().claim("general-ancient").cloned();
    assert!(
        old.is_some_and(|c| c.deleting_since.is_some()),
        "the replaced claim is being deleted"
    );
}

#[tokio::test]
async fn an_expired_claim_whose_pods_fit_elsewhere_is_deleted_directly() {
    let (ctl, store, cat) = setup();
    let now = 1_900_000_000.0;
    ctl.cloud().set_now(now);
    let claims: [(&str, &str, u32, &[&str]); 2] = [
        ("general-ancient", "n-ancient", 1, &["web-a"][..]),
        ("general-young", "n-young", 2, &[][..]),
    ];
    for (claim, node, i, pods) in claims {
        ready_claim(
            &ctl,
            &mut store.lock().unwrap(),
            &cat,
            now,
            (claim, node, i),
            pods,
        );
    }
    set_created(&ctl, &store, "general-ancient", now - 721.0 * 3600.0, None);
    set_created(&ctl, &store, "general-young", now - 3600.0, None);
    let acted = tokio::time::timeout(LIMIT, ctl.expire(now)).await.unwrap();
    assert_eq!(acted.as_deref(), Some("general-ancient"));
    let s = store.lock().unwrap();
    assert_eq!(
        other_claims(&s, "general-ancient").len(),
        1,
        "no replacement claim"
    );
    assert!(s.objects.iter().any(|(k, v)| k.contains("/events/")
        && v["reason"] == "Expired"
        && v["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("its pods fit on other nodes; deleting"))));
    drop(s);
    let old = ctl.state.read().unwrap().claim("general-ancient").cloned();
    assert!(
        old.is_some_and(|c| c.deleting_since.is_some()),
        "deleted at once"
    );
    assert!(ctl
        .state
        .read()
        .unwrap()
        .claim("general-young")
        .is_some_and(|c| c.deleting_since.is_none()));
}

/// The whole controller as `stevedore run` starts it (watches, leader election, the
/// metrics server, the loop) against the fake API server: a pod that becomes
/// unschedulable gets a NodeClaim and a launch; the instance's Node registers and the
/// claim becomes Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_started_controller_watches_leads_launches_and_registers() {
    let (client, store) = fake_api::client();
    let cat = catalog();
    let launched: Arc<std::sync::Mutex<Vec<Instance>>> = Arc::default();
    let l = launched.clone();
    let cloud = SimulatedCloud::new(cat.clone())
        .with_hook(Box::new(move |i, _| l.lock().unwrap().push(i.clone())));
    let opts = Options {
        namespace: "stevedore".into(),
        identity: "pod-a".into(),
        lifecycle_every: Duration::from_millis(200),
        ..Options::default()
    };
    let addr = "127.0.0.1:0".parse().unwrap();
    let config = stevedore::config::bundled();
    let run = tokio::spawn(stevedore::controller::start(
        client,
        cloud,
        None::<stevedore::controller::NoInterruptions>,
        config,
        cat.clone(),
        opts,
        addr,
    ));
    store.lock().unwrap().put(
        "/api/v1/namespaces/shop/pods",
        pending_json("shop", "web-1", "1", "2Gi"),
    );
    let claim_with = |s: &fake_api::Store, cond: &str| -> Option<NodeClaim> {
        s.objects
            .iter()
            .filter(|(k, _)| k.starts_with(CLAIMS))
            .filter_map(|(_, v)| serde_json::from_value::<NodeClaim>(v.clone()).ok())
            .find(|c| c.status.as_ref().is_some_and(|st| st.condition(cond)))
    };
    let wait_for = |cond: &'static str| {
        let store = store.clone();
        async move {
            for _ in 0..300 {
                if let Some(c) = claim_with(&store.lock().unwrap(), cond) {
                    return c;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!(
                "no NodeClaim {cond} within 15 s: {:?}",
                store.lock().unwrap().calls
            );
        }
    };
    let claim = wait_for("Launched").await;
    let instance = launched.lock().unwrap()[0].clone();
    assert_eq!(
        claim.status.as_ref().unwrap().provider_id.as_deref(),
        Some(instance.provider_id.as_str())
    );
    store
        .lock()
        .unwrap()
        .put(NODES, node_json("ip-10-0-0-9", &instance, &cat, true));
    let ready = wait_for("Ready").await;
    assert_eq!(
        ready.status.unwrap().node_name.as_deref(),
        Some("ip-10-0-0-9")
    );
    assert_eq!(launched.lock().unwrap().len(), 1, "one launch for one pod");
    {
        let s = store.lock().unwrap();
        let lease = s
            .get(
                "/apis/coordination.k8s.io/v1/namespaces/stevedore/leases",
                "stevedore-leader",
            )
            .expect("the lease");
        assert_eq!(lease["spec"]["holderIdentity"], "pod-a");
        assert!(s.calls_to("GET", "/api/v1/pods") >= 2, "listed and watched");
        assert_all_granted(&s);
    }
    run.abort();
}

/// Two replicas on one API server: only the lease holder launches; when it dies (no
/// release), the follower, whose indexes are warm, takes over within the lease duration
/// and launches for the next pod, without relaunching the first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_takes_over_when_the_leader_dies() {
    type Launches = Arc<std::sync::Mutex<Vec<(&'static str, Instance)>>>;
    let (client_a, store) = fake_api::client();
    let client_b = fake_api::client_of(&store);
    let cat = catalog();
    let launched: Launches = Arc::default();
    let replica = |client: kube::Client, who: &'static str| {
        let l = launched.clone();
        let cloud = SimulatedCloud::new(cat.clone()).with_hook(Box::new(move |i, _| {
            l.lock().unwrap().push((who, i.clone()))
        }));
        let opts = Options {
            namespace: "stevedore".into(),
            identity: who.into(),
            lease_duration: Duration::from_secs(2),
            renew_every: Duration::from_millis(300),
            lease_poll: Duration::from_millis(100),
            lifecycle_every: Duration::from_millis(200),
            ..Options::default()
        };
        tokio::spawn(stevedore::controller::start(
            client,
            cloud,
            None::<stevedore::controller::NoInterruptions>,
            stevedore::config::bundled(),
            cat.clone(),
            opts,
            "127.0.0.1:0".parse().unwrap(),
        ))
    };
    let holder = |store: &Arc<std::sync::Mutex<fake_api::Store>>| {
        store
            .lock()
            .unwrap()
            .get(
                "/apis/coordination.k8s.io/v1/namespaces/stevedore/leases",
                "stevedore-leader",
            )
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
    };
    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..400 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not within 20 s: {what}");
    }
    let a = replica(client_a, "pod-a");
    until("a leads", || holder(&store).as_deref() == Some("pod-a")).await;
    let b = replica(client_b, "pod-b");
    store.lock().unwrap().put(
        "/api/v1/namespaces/shop/pods",
        pending_json("shop", "web-1", "1", "2Gi"),
    );
    until("web-1's claim launched", || {
        store
            .lock()
            .unwrap()
            .objects
            .iter()
            .any(|(k, v)| k.starts_with(CLAIMS) && v["status"]["providerID"].is_string())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        holder(&store).as_deref(),
        Some("pod-a"),
        "b follows a live leader"
    );
    assert_eq!(
        launched
            .lock()
            .unwrap()
            .iter()
            .map(|(w, _)| *w)
            .collect::<Vec<_>>(),
        vec!["pod-a"]
    );

    // a dies without releasing the lease.
    a.abort();
    let died = std::time::Instant::now();
    store.lock().unwrap().put(
        "/api/v1/namespaces/shop/pods",
        pending_json("shop", "big", "30", "100Gi"),
    );
    until("b launches for the new pod", || {
        launched.lock().unwrap().len() == 2
    })
    .await;
    let took = died.elapsed();
    assert_eq!(launched.lock().unwrap()[1].0, "pod-b");
    assert_eq!(holder(&store).as_deref(), Some("pod-b"));
    // Within one lease duration (2 s here) of the last renewal, and the new leader
    // decides at once on its warm indexes (no batch wait, no scan wait).
    assert!(took < Duration::from_secs(3), "took over in {took:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        launched.lock().unwrap().len(),
        2,
        "web-1 is not launched again"
    );
    assert_all_granted(&store.lock().unwrap());
    b.abort();
}

/// The command line the Helm chart is written against.
#[test]
fn the_cli_contract_holds() {
    let bin = env!("CARGO_BIN_EXE_stevedore");
    let help = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let run = help(&["run", "--help"]);
    for flag in [
        "--config",
        "--provider",
        "--cluster-name",
        "--namespace",
        "--metrics-addr",
        "--leader-elect",
        "--dry-run",
        "--log-format",
        "--mode",
    ] {
        assert!(run.contains(flag), "run lacks {flag}:\n{run}");
    }
    for value in [
        "aws",
        "fake",
        "simulated",
        "json",
        "text",
        "0.0.0.0:8080",
        "fleet",
        "node-groups",
    ] {
        assert!(run.contains(value), "run --help lacks {value}");
    }
    let record = help(&["record", "--help"]);
    assert!(
        record.contains("--out") && record.contains("--duration"),
        "{record}"
    );
    assert_eq!(help(&["crds"]), stevedore::cluster::crd::crds_yaml());
    // `--leader-elect` takes a value (the chart passes `--leader-elect=false`).
    let bad = std::process::Command::new(bin)
        .args([
            "run",
            "--provider",
            "fake",
            "--cluster-name",
            "x",
            "--leader-elect",
            "maybe",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    // The fake provider has no groups: refused before anything connects.
    let bad = std::process::Command::new(bin)
        .args([
            "run",
            "--provider",
            "fake",
            "--cluster-name",
            "x",
            "--mode",
            "node-groups",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--mode node-groups needs"), "{err}");
}

/// `stevedore record` through the watch: pods present at the start are added at t = 0,
/// later arrivals and departures at their time; the file reads back as a trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_writes_arrivals_and_departures_from_the_watch() {
    let (client, store) = fake_api::client();
    store.lock().unwrap().put(
        "/api/v1/namespaces/shop/pods",
        pending_json("shop", "before", "1", "1Gi"),
    );
    let out = std::env::temp_dir().join(format!("stevedore-record-{}.jsonl", std::process::id()));
    let path = out.clone();
    let rec = tokio::spawn(async move {
        stevedore::controller::record::record(client, &path, Some(Duration::from_millis(1500)))
            .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    store.lock().unwrap().put(
        "/api/v1/namespaces/shop/pods",
        pending_json("shop", "later", "500m", "1Gi"),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    store
        .lock()
        .unwrap()
        .remove("/api/v1/namespaces/shop/pods", "before");
    let n = tokio::time::timeout(LIMIT, rec)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(n, 3);
    let trace = stevedore::trace::read_path(&out).expect("reads back");
    let _ = std::fs::remove_file(&out);
    use stevedore::trace::EventKind;
    let kinds: Vec<(String, bool)> = trace
        .events
        .iter()
        .map(|e| match &e.kind {
            EventKind::PodAdded { pod, .. } => (pod.name.clone(), e.t == 0.0),
            EventKind::PodDeleted { name, .. } => (format!("-{name}"), e.t == 0.0),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("before".into(), true),
            ("later".into(), false),
            ("-before".into(), false)
        ]
    );
}

/// A NodePool object overrides the configuration's pool of the same name; an invalid
/// one is reported with the configuration loader's error and launches nothing.
#[tokio::test]
async fn cluster_node_pools_override_the_configuration() {
    use stevedore::cluster::crd::NodePool as NodePoolObject;
    let (ctl, _store, _cat) = setup();
    let np: NodePoolObject = serde_json::from_value(json!({
        "apiVersion": "stevedore.dev/v1", "kind": "NodePool",
        "metadata": {"name": "general"},
        "spec": {"template": {"spec": {"requirements": [
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large", "m5.xlarge"]},
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}]}}}
    }))
    .unwrap();
    ctl.state.write().unwrap().apply_pool(&np).unwrap();
    let bad: NodePoolObject = serde_json::from_value(json!({
        "apiVersion": "stevedore.dev/v1", "kind": "NodePool",
        "metadata": {"name": "broken"},
        "spec": {"weight": 100, "template": {"spec": {"requirements": [
            {"key": "karpenter.sh/capacity-type", "operator": "Sometimes", "values": ["spot"]}]}}}
    }))
    .unwrap();
    let err = ctl.state.write().unwrap().apply_pool(&bad).unwrap_err();
    assert!(err.to_string().contains("NodePool/broken"), "{err}");
    ctl.state
        .write()
        .unwrap()
        .apply_pod(&pod(pending_json("shop", "web-1", "1", "2Gi")), 1.0)
        .unwrap();
    let (plan, _) = ctl.decide(1.0);
    assert_eq!(plan.claims.len(), 1);
    let c = &plan.claims[0];
    assert_eq!(c.request.node_pool, "general");
    assert!(
        c.request
            .options
            .iter()
            .all(
                |o| (o.instance_type == "m5.large" || o.instance_type == "m5.xlarge")
                    && o.capacity_type == CapacityType::OnDemand
            ),
        "{:?}",
        c.request.options
    );
    // Deleting the object brings the configuration's pool back (Spot allowed again).
    ctl.state.write().unwrap().delete_pool("general");
    let (plan, _) = ctl.decide(1.0);
    assert!(plan.claims[0]
        .request
        .options
        .iter()
        .any(|o| o.capacity_type == CapacityType::Spot));
}

/// Registration puts the claim's labels, taints and startup taints on the node (keeping
/// the node's own), as Karpenter does.
#[tokio::test]
async fn registration_syncs_the_pools_labels_and_taints_onto_the_node() {
    let (ctl, store, cat) = setup();
    let now = 1_000.0;
    let instance = Instance {
        provider_id: "simulated:///us-east-1a/i-00000000000000007".into(),
        instance_type: "g4dn.xlarge".into(),
        zone: "us-east-1a".into(),
        capacity_type: CapacityType::OnDemand,
        state: InstanceState::Running,
        node_claim: Some("gpu-x".into()),
        node_pool: Some("gpu".into()),
        launched_at: now,
    };
    let claim = json!({
        "metadata": {"name": "gpu-x", "finalizers": [TERMINATION_FINALIZER], "uid": "u"},
        "spec": {"nodePool": "gpu", "labels": {"team": "ml"},
                 "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}],
                 "startupTaints": [{"key": "agent-not-ready", "effect": "NoExecute"}],
                 "options": [{"instanceType": "g4dn.xlarge", "zone": "us-east-1a", "capacityType": "on-demand", "pricePerHour": 0.526}]},
        "status": {"providerID": instance.provider_id, "launchedAt": now,
                   "conditions": [{"type": "Launched", "status": "True"}]}
    });
    let mut node = node_json("ip-gpu", &instance, &cat, false);
    node["spec"]["taints"] =
        json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]);
    {
        let mut s = store.lock().unwrap();
        s.put(CLAIMS, claim.clone());
        s.put(NODES, node.clone());
        let mut st = ctl.state.write().unwrap();
        st.apply_claim(&serde_json::from_value(claim).unwrap())
            .unwrap();
        st.apply_node(&serde_json::from_value(node).unwrap(), now)
            .unwrap();
    }
    tokio::time::timeout(LIMIT, ctl.reconcile(now + 1.0))
        .await
        .unwrap();
    let s = store.lock().unwrap();
    let n = s.get(NODES, "ip-gpu").unwrap();
    assert_eq!(n["metadata"]["labels"]["team"], "ml");
    assert_eq!(n["metadata"]["labels"]["stevedore.dev/nodeclaim"], "gpu-x");
    let keys: Vec<&str> = n["spec"]["taints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        vec![
            "node.kubernetes.io/not-ready",
            "nvidia.com/gpu",
            "agent-not-ready"
        ]
    );
    assert!(claim_of(&s, "gpu-x")
        .status
        .unwrap()
        .condition("Registered"));
}

/// A NodePool object allowing only m5.large, Spot or on-demand (so one claim's options
/// hold both, cheapest first: the Spot ones).
fn m5_large_pool(ctl: &Controller<SimulatedCloud>) {
    use stevedore::cluster::crd::NodePool as NodePoolObject;
    let np: NodePoolObject = serde_json::from_value(json!({
        "apiVersion": "stevedore.dev/v1", "kind": "NodePool",
        "metadata": {"name": "general"},
        "spec": {"template": {"spec": {"requirements": [
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"]}]}}}
    }))
    .unwrap();
    ctl.state.write().unwrap().apply_pool(&np).unwrap();
}

#[tokio::test]
async fn spot_offerings_a_launch_fell_back_from_are_marked_unavailable() {
    let (ctl, store, _cat) = setup();
    let now = 3_000.0;
    ctl.cloud().set_now(now);
    m5_large_pool(&ctl);
    let short_spot = |o: &stevedore::cloud::Offering| {
        o.instance_type == "m5.large"
            && o.zone == "us-east-1a"
            && o.capacity_type == CapacityType::Spot
    };
    ctl.state
        .write()
        .unwrap()
        .apply_pod(&pod(pending_json("shop", "web-1", "1500m", "1Gi")), now)
        .unwrap();
    let (plan, _) = ctl.decide(now);
    assert!(plan.claims[0].request.options.iter().any(short_spot));
    // A claim offering Spot, then on-demand (the core offers one capacity type per
    // claim, but a claim may come from elsewhere): the cloud falls back to on-demand.
    ctl.cloud()
        .add_shortage("m5.large", "us-east-1a", "spot", 3600.0);
    let claim = json!({
        "apiVersion": "stevedore.dev/v1", "kind": "NodeClaim",
        "metadata": {"name": "general-mixed", "finalizers": [TERMINATION_FINALIZER], "uid": "uid-mixed"},
        "spec": {"nodePool": "general", "options": [
            {"instanceType": "m5.large", "zone": "us-east-1a", "capacityType": "spot", "pricePerHour": 0.04},
            {"instanceType": "m5.large", "zone": "us-east-1a", "capacityType": "on-demand", "pricePerHour": 0.096}]}
    });
    store.lock().unwrap().put(CLAIMS, claim.clone());
    ctl.state
        .write()
        .unwrap()
        .apply_claim(&serde_json::from_value(claim).unwrap())
        .unwrap();
    tokio::time::timeout(LIMIT, ctl.reconcile(now))
        .await
        .unwrap();
    let instances = ctl.cloud().list().await.unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].capacity_type, CapacityType::OnDemand);
    assert!(
        ctl.cloud().take_capacity_failures().is_empty(),
        "taken by the controller"
    );
    // The launch succeeded, yet the short Spot offering is out of the next decision (for
    // a second pod: the first one fits on the launching claim).
    ctl.state
        .write()
        .unwrap()
        .apply_pod(&pod(pending_json("shop", "web-2", "1500m", "1Gi")), now)
        .unwrap();
    let (plan, _) = ctl.decide(now + 1.0);
    let options = &plan.claims[0].request.options;
    assert!(!options.is_empty());
    assert!(!options.iter().any(short_spot), "{options:?}");
    // After the TTL it is offered again.
    let ttl = stevedore::config::bundled()
        .settings
        .unavailable_offering_ttl
        .as_secs_f64();
    let (plan, _) = ctl.decide(now + ttl + 1.0);
    assert!(plan.claims[0].request.options.iter().any(short_spot));
    assert_all_granted(&store.lock().unwrap());
}

/// The `general` NodePool object: m5.large, with `labels` on its nodes and `budgets`.
fn general_pool(ctl: &Controller<SimulatedCloud>, labels: Value, budgets: Value) {
    use stevedore::cluster::crd::NodePool as NodePoolObject;
    let np: NodePoolObject = serde_json::from_value(json!({
        "apiVersion": "stevedore.dev/v1", "kind": "NodePool",
        "metadata": {"name": "general"},
        "spec": {"template": {"metadata": {"labels": labels}, "spec": {"requirements": [
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}]}},
            "disruption": {"budgets": budgets}}
    }))
    .unwrap();
    ctl.state.write().unwrap().apply_pool(&np).unwrap();
}

/// Records the current `general` pool's template hash on claim `name`, as creation does.
fn record_pool_hash(
    ctl: &Controller<SimulatedCloud>,
    store: &Arc<std::sync::Mutex<fake_api::Store>>,
    name: &str,
) {
    let m = ctl.model();
    let pool = m.pools.iter().find(|p| p.name == "general").unwrap();
    let hash = stevedore::core::disruption::template_hash(pool);
    let mut v = store.lock().unwrap().get(CLAIMS, name).unwrap().clone();
    v["metadata"]["annotations"] = json!({"stevedore.dev/pool-hash": format!("{hash:016x}")});
    store.lock().unwrap().put(CLAIMS, v.clone());
    ctl.state
        .write()
        .unwrap()
        .apply_claim(&serde_json::from_value(v).unwrap())
        .unwrap();
}

#[tokio::test]
async fn a_drifted_claim_is_replaced_first_within_the_drifted_budget() {
    let (ctl, store, cat) = setup();
    let now = 1_900_000_000.0;
    ctl.cloud().set_now(now);
    general_pool(&ctl, json!({}), json!([{"nodes": "1"}]));
    ready_claim(
        &ctl,
        &mut store.lock().unwrap(),
        &cat,
        now,
        ("general-drift", "n-drift", 1),
        &["web-a", "web-b"],
    );
    record_pool_hash(&ctl, &store, "general-drift");
    let claims = |s: &fake_api::Store| s.objects.keys().filter(|k| k.starts_with(CLAIMS)).count();
    // Launched from the current template: no drift.
    assert!(ctl.drift_action(now).is_none());

    // A label added to the pool: its budget for drift is zero, nothing happens.
    general_pool(
        &ctl,
        json!({"team": "a"}),
        json!([{"nodes": "0", "reasons": ["Drifted"]}]),
    );
    assert_eq!(
        tokio::time::timeout(LIMIT, ctl.drift(now)).await.unwrap(),
        None
    );
    assert_eq!(claims(&store.lock().unwrap()), 1);

    // With room in the budget the claim is replaced, replacement first.
    general_pool(
        &ctl,
        json!({"team": "a"}),
        json!([{"nodes": "1", "reasons": ["Drifted"]}]),
    );
    let acted = tokio::time::timeout(LIMIT, ctl.drift(now)).await.unwrap();
    assert_eq!(acted.as_deref(), Some("general-drift"));
    let s = store.lock().unwrap();
    let new = replacement_of(&s, "general-drift", "Drifted", "Drifted: ");
    let ann = new.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(new.spec.labels.get("team").map(String::as_str), Some("a"));
    let m = ctl.model();
    let pool = m.pools.iter().find(|p| p.name == "general").unwrap();
    let hash = stevedore::core::disruption::template_hash(pool);
    assert_eq!(
        ann.get("stevedore.dev/pool-hash"),
        Some(&format!("{hash:016x}"))
    );
    drop(s);
    // The replacement is launching: the cluster is not settled, nothing more is done.
    assert!(ctl.drift_action(now + 10.0).is_none());
}

fn group(name: &str, instance_type: &str, max: u32) -> stevedore::cloud::NodeGroup {
    stevedore::cloud::NodeGroup {
        name: name.into(),
        min_size: 0,
        max_size: max,
        desired: 0,
        instance_type: instance_type.into(),
        capacity_type: CapacityType::OnDemand,
        zones: vec!["us-east-1a".into()],
        labels: Default::default(),
        taints: Vec::new(),
        instances: Vec::new(),
    }
}

/// A ready Node for a group instance, as its kubelet registers it.
fn group_node_json(name: &str, provider_id: &str, instance_type: &str, cat: &Catalog) -> Value {
    let ty = &cat.types[cat.find(instance_type).unwrap()];
    json!({
        "metadata": {"name": name, "labels": {
            "node.kubernetes.io/instance-type": instance_type,
            "topology.kubernetes.io/zone": "us-east-1a",
            "karpenter.sh/capacity-type": "on-demand",
            "kubernetes.io/hostname": name}},
        "spec": {"providerID": provider_id},
        "status": {
            "allocatable": {"cpu": format!("{}m", ty.allocatable.cpu_milli), "memory": ty.allocatable.memory.to_string(), "pods": ty.allocatable.pods.to_string()},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    })
}

#[tokio::test]
async fn node_groups_scale_up_the_least_waste_group_once_and_skip_a_backed_off_one() {
    use stevedore::cloud::simulated::SimulatedGroups;
    let (ctl, store, _cat) = setup();
    let groups = SimulatedGroups::new(vec![
        group("big", "m5.4xlarge", 5),
        group("small", "m5.large", 5),
    ]);
    ctl.state
        .write()
        .unwrap()
        .apply_pod(&pod(pending_json("shop", "web-1", "1", "2Gi")), 1.0)
        .unwrap();
    let scan = tokio::time::timeout(LIMIT, ctl.scale_groups(&groups, 10.0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(scan.scaled_up, Some(("small".to_string(), 1)));
    assert_eq!(groups.calls(), vec!["set_desired small 1".to_string()]);
    let told = store.lock().unwrap().objects.iter().any(|(k, v)| {
        k.contains("/events/shop/")
            && v["reason"] == "TriggeredScaleUp"
            && v["involvedObject"]["name"] == "web-1"
    });
    assert!(told, "the pod hears of the scale-up");
    // Its instance has not registered yet: the pod counts on it, no second scale-up.
    let scan = ctl.scale_groups(&groups, 20.0).await.unwrap();
    assert_eq!(scan.scaled_up, None);
    assert_eq!(groups.calls().len(), 1);

    // A second pod that needs a node of its own, and the small group backs off (its
    // launches fail): its missing node is no longer counted on, and it is not asked;
    // the big group takes both pods.
    ctl.state
        .write()
        .unwrap()
        .apply_pod(&pod(pending_json("shop", "web-2", "1500m", "2Gi")), 21.0)
        .unwrap();
    groups.set_backed_off("small", true);
    let scan = ctl.scale_groups(&groups, 30.0).await.unwrap();
    assert_eq!(scan.scaled_up, Some(("big".to_string(), 1)));
    assert_eq!(groups.calls(), ["set_desired small 1", "set_desired big 1"]);
    // Its node counted on, the big group is not asked again.
    let scan = ctl.scale_groups(&groups, 40.0).await.unwrap();
    assert_eq!(scan.scaled_up, None);
    assert_all_granted(&store.lock().unwrap());
}

#[tokio::test]
async fn an_unneeded_group_node_is_drained_through_a_pdb_429_then_terminated() {
    use stevedore::cloud::simulated::SimulatedGroups;
    use stevedore::cloud::NodeGroupProvider;
    let (ctl, store, cat) = setup();
    let groups = SimulatedGroups::new(vec![group("small", "m5.large", 5)]);
    let ids: Vec<String> = (0..2)
        .map(|_| groups.add_instance("small").unwrap())
        .collect();
    {
        let mut s = store.lock().unwrap();
        let mut st = ctl.state.write().unwrap();
        for (i, id) in ids.iter().enumerate() {
            let name = format!("n{i}");
            let node = group_node_json(&name, id, "m5.large", &cat);
            st.apply_node(&serde_json::from_value(node.clone()).unwrap(), 0.0)
                .unwrap();
            s.put(NODES, node);
            let mut p = pending_json("shop", &format!("web-{i}"), "100m", "128Mi");
            p["spec"]["nodeName"] = json!(name);
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-7d9f", "uid": "rs-uid", "controller": true}]);
            p["status"] =
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
            st.apply_pod(&pod(p.clone()), 0.0).unwrap();
            s.put("/api/v1/namespaces/shop/pods", p);
        }
        s.evict_429 = 1;
    }
    let t0 = 1_000.0;
    // Under the threshold, but not yet for unneededTime (10 minutes).
    let scan = ctl.scale_groups(&groups, t0).await.unwrap();
    assert!(scan.draining.is_empty(), "{scan:?}");
    let scan = ctl.scale_groups(&groups, t0 + 300.0).await.unwrap();
    assert!(scan.draining.is_empty(), "{scan:?}");
    // Now: one node (its pod fits on the other) is tainted and drained; a PDB refuses
    // the first eviction.
    let scan = ctl.scale_groups(&groups, t0 + 601.0).await.unwrap();
    assert_eq!(scan.draining, vec!["n0".to_string()]);
    assert!(scan.terminated.is_empty(), "{scan:?}");
    let tainted = ctl
        .state
        .read()
        .unwrap()
        .node("n0")
        .unwrap()
        .taints
        .iter()
        .any(|t| t.key == DISRUPTED_TAINT);
    assert!(tainted);
    // The other node would have nowhere for its pod: it stays.
    let scan = ctl.scale_groups(&groups, t0 + 605.0).await.unwrap();
    assert!(scan.draining.is_empty(), "{scan:?}");
    assert_eq!(scan.terminated, vec!["n0".to_string()]);
    assert_eq!(groups.calls(), vec![format!("terminate {}", ids[0])]);
    let left = groups.groups().await.unwrap();
    assert_eq!(
        (left[0].desired, left[0].instances.clone()),
        (1, vec![ids[1].clone()])
    );
    let s = store.lock().unwrap();
    assert!(s.get(NODES, "n0").is_none(), "the Node object is deleted");
    assert!(
        s.calls_to("POST", "/eviction") >= 2,
        "evicted after the 429"
    );
    assert_all_granted(&s);
}

/// The simulator's node-groups mode and the controller's groups scans ask the same core
/// function: the same pods bring the same nodes of the same groups.
#[tokio::test]
async fn the_controller_and_the_simulator_scale_node_groups_alike() {
    use stevedore::cloud::simulated::SimulatedGroups;
    use stevedore::cloud::NodeGroupProvider;
    use stevedore::trace::TraceHeader;
    let (client, _store) = fake_api::client();
    let cat = catalog();
    let mut config = stevedore::config::bundled();
    let spec = |name: &str, ty: &str, max: u32| stevedore::config::NodeGroup {
        name: name.into(),
        instance_type: ty.into(),
        capacity_type: CapacityType::OnDemand,
        zones: vec!["us-east-1a".into(), "us-east-1b".into()],
        min_size: 0,
        max_size: max,
        labels: Default::default(),
        taints: Vec::new(),
    };
    // Three candidates; least waste picks one (the scan after it finds nothing to add).
    config.settings.node_groups = vec![
        spec("general", "m5.2xlarge", 10),
        spec("small", "m5.large", 3),
        spec("memory", "r5.xlarge", 10),
    ];
    let ctl = Controller::new(
        client,
        SimulatedCloud::new(cat.clone()),
        config.clone(),
        cat.clone(),
        Options::default(),
    );
    let mut events = Vec::new();
    for (s, (cpu, mem, n)) in [("1", "2Gi", 7), ("500m", "6Gi", 5)].iter().enumerate() {
        for i in 0..*n {
            let p = pending_json("shop", &format!("w{s}-{i}"), cpu, mem);
            add_to_both(&ctl, &mut events, p);
        }
    }
    // Something later, so the simulation runs past its first decisions (an offering no
    // group uses).
    events.push(RawEvent {
        t: 900.0,
        kind: RawEventKind::CapacityUnavailable {
            instance_type: "c5.large".into(),
            zone: "us-east-1c".into(),
            capacity_type: "spot".into(),
            for_s: 1.0,
        },
    });
    let mut buf = Vec::new();
    stevedore::trace::write_to(&mut buf, &TraceHeader::new("groups"), &events).unwrap();
    let trace =
        stevedore::trace::read_from(std::io::BufReader::new(&buf[..]), "groups.jsonl").unwrap();
    let opts = stevedore::sim::SimOptions {
        mode: stevedore::sim::Mode::NodeGroups,
        ..Default::default()
    };
    let report = stevedore::sim::run(&trace, "groups.jsonl", &config, &cat, &opts).unwrap();
    let mut sim: Vec<(String, u64)> = report
        .launched_by_type
        .iter()
        .map(|t| (t.instance_type.clone(), t.count))
        .collect();
    sim.sort();

    let groups = SimulatedGroups::from_settings(&config.settings.node_groups);
    for k in 0..10 {
        ctl.scale_groups(&groups, 10.0 * f64::from(k))
            .await
            .unwrap();
    }
    let mut ours: Vec<(String, u64)> = groups
        .groups()
        .await
        .unwrap()
        .into_iter()
        .filter(|g| g.desired > 0)
        .map(|g| (g.instance_type, u64::from(g.desired)))
        .collect();
    ours.sort();
    assert!(!ours.is_empty());
    assert_eq!(ours, sim);
}

/// `start_with` in node-groups mode: a pending pod scales the group (once, while its
/// instance boots) and no NodeClaim is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_started_controller_in_node_groups_mode_scales_a_group_and_makes_no_claims() {
    use stevedore::cloud::simulated::SimulatedGroups;
    use stevedore::controller::{Mode, NoInterruptions, Sources};
    let (client, store) = fake_api::client();
    let cat = catalog();
    let mut config = stevedore::config::bundled();
    config.settings.scan_interval = Duration::from_millis(200);
    let added: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let a = added.clone();
    let groups = SimulatedGroups::new(vec![group("small", "m5.large", 3)]).with_hook(Box::new(
        move |_, id| a.lock().unwrap().push(id.to_string()),
    ));
    let opts = Options {
        mode: Mode::NodeGroups,
        namespace: "stevedore".into(),
        identity: "pod-a".into(),
        ..Options::default()
    };
    let sources = Sources {
        cloud: SimulatedCloud::new(cat.clone()),
        interruptions: None::<NoInterruptions>,
        groups: Some(groups),
    };
    let addr = "127.0.0.1:0".parse().unwrap();
    let run = tokio::spawn(stevedore::controller::start_with(
        client, sources, config, cat, opts, addr,
    ));
    store.lock().unwrap().put(
        "/api/v1/namespaces/shop/pods",
        pending_json("shop", "web-1", "1", "2Gi"),
    );
    for _ in 0..300 {
        if !added.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(added.lock().unwrap().len(), 1, "the group was scaled up");
    // Several scans later: still one (the upcoming node holds the pod), and no claims.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(added.lock().unwrap().len(), 1);
    let s = store.lock().unwrap();
    assert!(
        !s.objects.keys().any(|k| k.starts_with(CLAIMS)),
        "no NodeClaims"
    );
    assert_all_granted(&s);
    drop(s);
    run.abort();
}

/// A controller (the clock at `now`) with ready empty claims `(claim, node, instance
/// number, age in hours)` created that long before `now`.
fn aged_claims(
    ctl: &Controller<SimulatedCloud>,
    store: &Arc<std::sync::Mutex<fake_api::Store>>,
    cat: &Catalog,
    now: f64,
    claims: &[(&str, &str, u32, f64)],
) {
    ctl.cloud().set_now(now);
    for &(claim, node, i, age_h) in claims {
        ready_claim(
            ctl,
            &mut store.lock().unwrap(),
            cat,
            now,
            (claim, node, i),
            &[],
        );
        set_created(ctl, store, claim, now - age_h * 3600.0, None);
    }
}

#[tokio::test]
async fn expiry_stays_within_the_expired_budget_oldest_first() {
    let (ctl, store, cat) = setup();
    let now = 1_900_000_000.0;
    let claims = [
        ("general-x", "n-x", 1, 800.0),
        ("general-y", "n-y", 2, 900.0),
    ];
    aged_claims(&ctl, &store, &cat, now, &claims);
    let deleting = |name: &str| {
        ctl.state
            .read()
            .unwrap()
            .claim(name)
            .is_some_and(|c| c.deleting_since.is_some())
    };
    // No node may expire now: nothing happens.
    general_pool(
        &ctl,
        json!({}),
        json!([{"nodes": "0", "reasons": ["Expired"]}]),
    );
    let acted = tokio::time::timeout(LIMIT, ctl.expire(now)).await.unwrap();
    assert_eq!(acted, None);
    assert!(!deleting("general-x") && !deleting("general-y"));

    // Dry-run: the event, no change.
    general_pool(&ctl, json!({}), json!([{"nodes": "1"}]));
    {
        let (client, dry_store) = fake_api::client();
        let opts = Options {
            dry_run: true,
            ..Options::default()
        };
        let dry = Controller::new(
            client,
            SimulatedCloud::new(cat.clone()),
            stevedore::config::bundled(),
            cat.clone(),
            opts,
        );
        aged_claims(
            &dry,
            &dry_store,
            &cat,
            now,
            &[("general-x", "n-x", 1, 800.0)],
        );
        let acted = tokio::time::timeout(LIMIT, dry.expire(now)).await.unwrap();
        assert_eq!(acted.as_deref(), Some("general-x"));
        let s = dry_store.lock().unwrap();
        assert_eq!(s.calls_to("DELETE", "nodeclaims"), 0);
        assert_eq!(s.calls_to("POST", "nodeclaims"), 0);
        assert_eq!(s.calls_to("POST", "/events"), 1);
    }

    // One node at a time: the older one goes (empty: deleted at once), general-x waits.
    let acted = tokio::time::timeout(LIMIT, ctl.expire(now)).await.unwrap();
    assert_eq!(acted.as_deref(), Some("general-y"), "the older one");
    assert!(deleting("general-y") && !deleting("general-x"));
    // general-y is being deleted (draining): the budget is spent, general-x waits.
    let acted = tokio::time::timeout(LIMIT, ctl.expire(now + 10.0))
        .await
        .unwrap();
    assert_eq!(acted, None);
    assert!(!deleting("general-x"));
}

#[tokio::test]
async fn a_claim_being_replaced_counts_against_the_expired_budget() {
    let (ctl, store, cat) = setup();
    let now = 1_900_000_000.0;
    // Three nodes: the default budget (10%, rounded up) allows one at a time; general-r
    // is y's ready replacement, y is not retired yet: it takes the budget.
    let claims = [
        ("general-x", "n-x", 1, 800.0),
        ("general-y", "n-y", 2, 900.0),
        ("general-r", "n-r", 3, 0.0),
    ];
    aged_claims(&ctl, &store, &cat, now, &claims);
    set_created(&ctl, &store, "general-r", now - 60.0, Some("general-y"));
    assert!(ctl.expiry_action(now).is_none());
    // Without the replacement, y (the oldest) may go.
    set_created(&ctl, &store, "general-r", now - 60.0, None);
    let action = ctl.expiry_action(now).expect("an expired claim");
    assert_eq!(action.claim, "general-y", "the oldest");
}

/// GET `path` from `addr` with a plain blocking client on another thread (the server runs
/// on the test's runtime); the body of a 200, else a panic with the response.
async fn http_get(addr: std::net::SocketAddr, path: &'static str) -> String {
    let out = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    let out = tokio::time::timeout(LIMIT, out).await.unwrap().unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let (_, body) = out.split_once("\r\n\r\n").expect("headers end");
    body.to_string()
}

/// A controller started on a mocked API server holding `pods` (pending before the
/// start, so the first decision sees them together), scanning every 200 ms, serving its
/// metrics on 127.0.0.1: its address, its task and the API server's store.
async fn started_with(
    pods: Vec<Value>,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<(), stevedore::controller::ControllerError>>,
    Arc<std::sync::Mutex<fake_api::Store>>,
) {
    let (client, store) = fake_api::client();
    let cat = catalog();
    let opts = Options {
        namespace: "stevedore".into(),
        leader_elect: false,
        lifecycle_every: Duration::from_millis(200),
        ..Options::default()
    };
    let mut config = stevedore::config::bundled();
    // Scans (which publish the cluster metrics) often enough for a test.
    config.settings.scan_interval = Duration::from_millis(200);
    for p in pods {
        store.lock().unwrap().put("/api/v1/namespaces/shop/pods", p);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sources = stevedore::controller::Sources {
        cloud: SimulatedCloud::new(cat.clone()),
        interruptions: None::<stevedore::controller::NoInterruptions>,
        groups: None::<stevedore::controller::NoGroups>,
    };
    let run = tokio::spawn(stevedore::controller::start_on(
        client, sources, config, cat, opts, listener,
    ));
    (addr, run, store)
}

/// The constrained bound keeps a pod pinned to on-demand on on-demand offerings: the
/// live gauge is above the shape bound's, which prices it at Spot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_constrained_bound_gauge_prices_a_pinned_pod_where_it_may_run() {
    let mut pinned = pending_json("shop", "web-od", "1", "2Gi");
    pinned["spec"]["nodeSelector"] = json!({"karpenter.sh/capacity-type": "on-demand"});
    let (addr, run, _store) = started_with(vec![pinned]).await;
    let mut bounds = (None, None);
    for _ in 0..300 {
        let text = http_get(addr, "/metrics").await;
        let f = prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let value = |name: &str| prom::value(&f, name, &[]).filter(|v| *v > 0.0);
        bounds = (
            value("stevedore_shape_bound_hourly_cost_dollars"),
            value("stevedore_constrained_bound_hourly_cost_dollars"),
        );
        if bounds.0.is_some() && bounds.1.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (Some(shape), Some(constrained)) = bounds else {
        panic!("no bounds published: {bounds:?}");
    };
    assert!(
        constrained > shape * 1.5,
        "constrained {constrained}, shape {shape}"
    );
    run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_started_controller_serves_strictly_valid_metrics_of_what_it_did() {
    let pods = ["web-1", "web-2", "web-3"]
        .iter()
        .map(|name| pending_json("shop", name, "1", "2Gi"))
        .collect();
    let (addr, run, store) = started_with(pods).await;
    // Until a scan has seen the three pods and a launch happened.
    let mut families = Default::default();
    for _ in 0..300 {
        let text = http_get(addr, "/metrics").await;
        families = prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let launched: f64 = prom::series(&families, "stevedore_launches_total")
            .iter()
            .map(|s| s.value)
            .sum();
        let pending = prom::value(&families, "stevedore_pending_pods", &[]);
        if launched >= 3.0 && pending == Some(3.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let f = &families;
    let kind = |name: &str| f.get(name).map(|fam| fam.kind.as_str());
    assert_eq!(kind("stevedore_pending_pods"), Some("gauge"));
    assert_eq!(kind("stevedore_leader"), Some("gauge"));
    assert_eq!(kind("stevedore_launches_total"), Some("counter"));
    assert_eq!(
        kind("stevedore_kube_request_duration_seconds"),
        Some("histogram")
    );
    assert_eq!(
        kind("stevedore_cloud_request_duration_seconds"),
        Some("histogram")
    );
    assert_eq!(
        prom::value(f, "stevedore_pending_pods", &[]),
        Some(3.0),
        "{f:?}"
    );
    assert_eq!(prom::value(f, "stevedore_leader", &[]), Some(1.0));
    let launches = prom::series(f, "stevedore_launches_total");
    // The cheapest node for a 1-core, 2 GiB pod holds one: three launches, one series.
    assert_eq!(launches.len(), 1, "{launches:?}");
    assert_eq!(launches[0].value, 3.0, "{launches:?}");
    assert_eq!(launches[0].labels["nodepool"], "general");
    // Every API call went through the metered client: the pod list, the claims created.
    let api = |verb: &str, resource: &str| {
        prom::value(
            f,
            "stevedore_kube_request_duration_seconds_count",
            &[("verb", verb), ("resource", resource)],
        )
        .unwrap_or(0.0)
    };
    assert!(api("list", "pods") >= 1.0, "{f:?}");
    assert_eq!(api("create", "nodeclaims"), 3.0);
    assert!(api("patch", "nodeclaims/status") >= 1.0);
    let cloud = prom::value(
        f,
        "stevedore_cloud_request_duration_seconds_count",
        &[("operation", "launch")],
    );
    assert_eq!(cloud, Some(3.0));
    // Three 1-core, 2 GiB pods cost something, and no more than the nodes launched.
    let lb = prom::value(f, "stevedore_lower_bound_hourly_cost_dollars", &[]).unwrap();
    let node_cost: f64 = prom::series(f, "stevedore_nodes_hourly_cost_dollars")
        .iter()
        .map(|s| s.value)
        .sum();
    assert!(lb > 0.0, "lower bound {lb}");
    assert!(
        node_cost == 0.0 || lb <= node_cost + 1e-9,
        "{lb} vs {node_cost}"
    );
    // The shape-aware bound keeps each pod whole: at least the fluid one, and still no
    // more than what the nodes cost.
    let shape = prom::value(f, "stevedore_shape_bound_hourly_cost_dollars", &[]).unwrap();
    assert!(
        shape >= lb - 1e-9,
        "shape bound {shape} below the fluid {lb}"
    );
    assert!(
        node_cost == 0.0 || shape <= node_cost + 1e-9,
        "{shape} vs {node_cost}"
    );
    // No pod here has a constraint that rules an offering out: the constrained bound is
    // the shape bound.
    let constrained =
        prom::value(f, "stevedore_constrained_bound_hourly_cost_dollars", &[]).unwrap();
    assert!(
        (constrained - shape).abs() < 1e-9,
        "{constrained} vs {shape}"
    );
    assert_all_granted(&store.lock().unwrap());
    run.abort();
}

/// A controller whose `general` pool keeps `spare_cpu` millicores (and 1 GiB) free.
fn with_headroom(
    spare_cpu: i64,
) -> (
    Controller<SimulatedCloud>,
    Arc<std::sync::Mutex<fake_api::Store>>,
    Arc<Catalog>,
) {
    use stevedore::core::headroom::HeadroomPolicy;
    use stevedore::core::resources::Resources;
    let (client, store) = fake_api::client();
    let cat = catalog();
    let mut config = stevedore::config::bundled();
    let general = config
        .pool_extras
        .iter_mut()
        .find(|e| e.name == "general")
        .expect("bundled general pool");
    general.headroom = Some(HeadroomPolicy {
        spare: Resources::new(spare_cpu, 1 << 30, 0),
        ..HeadroomPolicy::default()
    });
    let ctl = Controller::new(
        client,
        SimulatedCloud::new(cat.clone()),
        config,
        cat.clone(),
        Options::default(),
    );
    (ctl, store, cat)
}

#[tokio::test]
async fn headroom_launches_capacity_with_no_pending_pod_once() {
    let (ctl, store, _) = with_headroom(4000);
    let now = 1_000.0;
    let report = tokio::time::timeout(LIMIT, ctl.provision(now))
        .await
        .expect("in time");
    assert_eq!(report.pending, 0);
    assert!(report.claims_created >= 1, "{report:?}");
    assert_eq!(report.launched, report.claims_created);
    let claims: Vec<NodeClaim> = {
        let s = store.lock().unwrap();
        assert_all_granted(&s);
        s.objects
            .iter()
            .filter(|(k, _)| k.starts_with(CLAIMS))
            .map(|(_, v)| serde_json::from_value(v.clone()).unwrap())
            .collect()
    };
    assert_eq!(claims.len(), report.claims_created);
    // The claims ask for room for the 4 spare cores between them.
    let cores: f64 = claims
        .iter()
        .map(|c| {
            let cpu = &c.spec.resources.requests["cpu"].0;
            cpu.strip_suffix('m').map_or_else(
                || cpu.parse::<f64>().unwrap(),
                |m| m.parse::<f64>().unwrap() / 1000.0,
            )
        })
        .sum();
    assert!(cores >= 4.0, "{cores} cores requested");
    // The launching claims hold the spare now: a second decision launches nothing more.
    let again = tokio::time::timeout(LIMIT, ctl.provision(now + 10.0))
        .await
        .expect("in time");
    assert_eq!(again.claims_created, 0, "{again:?}");
    // The decision is counted with reason "headroom".
    let text = ctl.metrics.render();
    let f = prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let headroom: f64 = prom::series(&f, "stevedore_decisions_total")
        .iter()
        .filter(|s| s.labels["reason"] == "headroom")
        .map(|s| s.value)
        .sum();
    assert!(headroom >= 1.0, "{text}");
}

#[tokio::test]
async fn no_headroom_no_pending_pod_no_launch_and_an_empty_node_holding_the_spare_stays() {
    // Without headroom an empty cluster with nothing pending launches nothing.
    let (plain, store, _) = setup();
    let report = tokio::time::timeout(LIMIT, plain.provision(1_000.0))
        .await
        .unwrap();
    assert_eq!(report.claims_created, 0);
    assert_eq!(store.lock().unwrap().calls_to("POST", CLAIMS), 0);
    // With 1 spare core, one empty m5.large (2 vCPU) holds it: it is not launched for
    // again, and consolidation does not remove it (it would without headroom: see
    // consolidation_removes_an_empty_node_and_one_whose_pods_fit_elsewhere).
    let (ctl, store, cat) = with_headroom(1000);
    let now = 50_000.0;
    ready_claim(
        &ctl,
        &mut store.lock().unwrap(),
        &cat,
        now,
        ("general-spare", "n-spare", 1),
        &[],
    );
    let report = tokio::time::timeout(LIMIT, ctl.provision(now))
        .await
        .unwrap();
    assert_eq!(report.claims_created, 0, "{report:?}");
    tokio::time::timeout(LIMIT, ctl.consolidate(now))
        .await
        .unwrap()
        .unwrap();
    let deleting = ctl
        .state
        .read()
        .unwrap()
        .claims()
        .filter(|c| c.deleting_since.is_some())
        .count();
    assert_eq!(deleting, 0);
}
