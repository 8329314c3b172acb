//! The controller as `stevedore run` starts it, on paused time, against the fake API
//! server with the faults of a real control plane: an eviction that never answers, a
//! PodDisruptionBudget that refuses forever, a watch that drops, and a budget that lets
//! one pod go at a time. Each scenario prints how long it took, virtual and wall. Then
//! the deletion-cost pass on its own, with pod patches refused or never answered.

use super::*;
use std::collections::BTreeMap;
use std::sync::Mutex;
use stevedore::controller::deletion_cost::CostPass;
use stevedore::controller::{NoGroups, NoInterruptions, Sources};
use stevedore::core::deletion_cost::{self, ANNOTATION};
use stevedore::core::resources::Resources;

type Store = Arc<Mutex<fake_api::Store>>;
const PODS: &str = "/api/v1/namespaces/shop/pods";
/// The fixture's instance number, clear of those the simulated cloud hands out (from 1).
const FIXTURE_INSTANCE: u32 = 900;

/// A started controller and what the test watches it through.
struct Run {
    store: Store,
    /// Every instance the simulated cloud launched, in order.
    launched: Arc<Mutex<Vec<Instance>>>,
    task: tokio::task::JoinHandle<Result<(), stevedore::controller::ControllerError>>,
    virtual_start: tokio::time::Instant,
    wall_start: std::time::Instant,
}

impl Run {
    /// The controller (no leader election, lifecycle steps every 500 ms) over `store`,
    /// `instances` already running in its cloud.
    async fn start(store: Store, instances: Vec<Instance>) -> Run {
        Run::start_with(store, instances, Options::default()).await
    }

    /// [`Run::start`] with `opts` (its namespace, leader election and lifecycle period
    /// set as there).
    async fn start_with(store: Store, instances: Vec<Instance>, opts: Options) -> Run {
        let client = fake_api::client_of(&store);
        let cat = catalog();
        let launched: Arc<Mutex<Vec<Instance>>> = Arc::default();
        let l = launched.clone();
        let cloud = SimulatedCloud::new(cat.clone())
            .with_hook(Box::new(move |i, _| l.lock().unwrap().push(i.clone())));
        for i in instances {
            cloud.insert(i);
        }
        let opts = Options {
            namespace: "stevedore".into(),
            leader_elect: false,
            lifecycle_every: Duration::from_millis(500),
            ..opts
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sources = Sources {
            cloud,
            interruptions: None::<NoInterruptions>,
            groups: None::<NoGroups>,
        };
        let config = stevedore::config::bundled();
        let task = tokio::spawn(stevedore::controller::start_on(
            client, sources, config, cat, opts, listener,
        ));
        Run {
            store,
            launched,
            task,
            virtual_start: tokio::time::Instant::now(),
            wall_start: std::time::Instant::now(),
        }
    }

    /// Waits (virtual time, 100 ms steps) until `done` holds, for at most `limit`.
    async fn until(
        &self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&fake_api::Store) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(&self.store.lock().unwrap()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not within {limit:?}: {what}; calls: {:?}",
                self.store.lock().unwrap().calls
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn claims_created(&self) -> usize {
        self.store.lock().unwrap().calls_to("POST", "nodeclaims")
    }

    /// Prints the scenario's time (virtual and wall) and stops the controller.
    fn finish(self, scenario: &str) {
        eprintln!(
            "scenario {scenario}: {:.1} s virtual, {:.2} s wall",
            self.virtual_start.elapsed().as_secs_f64(),
            self.wall_start.elapsed().as_secs_f64()
        );
        self.task.abort();
    }
}

/// A store holding claim `general-drain` on node `n1` with `pods`, the claim already
/// being deleted (as `kubectl delete nodeclaim` leaves it); and its instance.
fn deleting_claim(pods: &[&str]) -> (Store, Instance) {
    let now = stevedore::cluster::wall_clock();
    let (instance, mut claim, node, pods) = claim_fixture(
        &catalog(),
        now,
        ("general-drain", "n1", FIXTURE_INSTANCE),
        pods,
    );
    claim["metadata"]["deletionTimestamp"] = json!(stevedore::cluster::rfc3339(now));
    let (_, store) = fake_api::client();
    {
        let mut s = store.lock().unwrap();
        s.put(CLAIMS, claim);
        s.put(NODES, node);
        for p in pods {
            s.put(PODS, p);
        }
    }
    (store, instance)
}

/// Events with `reason` whose message contains `needle`.
fn events(s: &fake_api::Store, reason: &str, needle: &str) -> usize {
    s.objects_where("/api/v1/events", "reason", reason)
        .iter()
        .filter(|e| e["message"].as_str().unwrap_or_default().contains(needle))
        .count()
}

/// A pod no m5.large holds: only a new claim can take it.
fn big_pending(name: &str) -> Value {
    pending_json("shop", name, "6", "8Gi")
}

#[tokio::test(start_paused = true)]
async fn an_eviction_that_never_answers_holds_only_its_claim() {
    let (store, instance) = deleting_claim(&["web-a", "web-b"]);
    store.lock().unwrap().evict_hang = true;
    let run = Run::start(store, vec![instance]).await;
    run.until("an eviction is sent", Duration::from_secs(10), |s| {
        s.calls_to("POST", "/eviction") >= 1
    })
    .await;
    let before = run.claims_created();
    run.store.lock().unwrap().put(PODS, big_pending("new-1"));
    let appeared = tokio::time::Instant::now();
    // batchIdle 1 s, batchMax 10 s: well within the batch window.
    run.until("a claim for the new pod", Duration::from_secs(10), |s| {
        s.calls_to("POST", "nodeclaims") > before
    })
    .await;
    let took = appeared.elapsed();
    assert!(
        took <= Duration::from_secs(2),
        "launched {took:?} after the pod"
    );
    // The hung eviction ends at the API timeout (30 s) with an error naming the call,
    // said on the claim; the drain goes on trying.
    run.until("the timeout is said", Duration::from_secs(40), |s| {
        events(s, "EvictionBlocked", "evict pod: no answer within 30s") >= 1
    })
    .await;
    assert!(run
        .store
        .lock()
        .unwrap()
        .get(CLAIMS, "general-drain")
        .is_some());
    run.finish("eviction never answers");
}

#[tokio::test(start_paused = true)]
async fn a_pdb_that_refuses_forever_loses_nothing_and_says_why() {
    let (store, instance) = deleting_claim(&["web-a", "web-b"]);
    store.lock().unwrap().evict_429 = u32::MAX;
    let run = Run::start(store, vec![instance]).await;
    tokio::time::sleep(Duration::from_secs(180)).await;
    let s = run.store.lock().unwrap();
    let claim = s.get(CLAIMS, "general-drain").expect("the claim waits");
    assert_eq!(claim["metadata"]["finalizers"][0], TERMINATION_FINALIZER);
    assert!(s.get(NODES, "n1").is_some(), "the node stays");
    for name in ["web-a", "web-b"] {
        let p = s.get(PODS, name).expect("the pod stays");
        assert!(
            p["metadata"]["deletionTimestamp"].is_null(),
            "{name} not deleted"
        );
    }
    // Retried with backoff (1 s doubling to 60 s: 8 or 9 tries each in 3 minutes),
    // not once per lifecycle step (360 each).
    let tries = s.calls_to("POST", "/eviction");
    assert!((10..=24).contains(&tries), "{tries} evictions");
    assert!(
        events(&s, "EvictionBlocked", "refused by a PodDisruptionBudget") >= 1,
        "an Event on the claim says why it waits"
    );
    // The waiting pods got capacity to go to, once: not a claim per scan.
    assert_eq!(s.calls_to("POST", "nodeclaims"), 1);
    drop(s);
    run.finish("PDB answers 429 forever");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_watch_is_listed_again_and_nothing_is_decided_on_stale_state() {
    let now = stevedore::cluster::wall_clock();
    let (instance, claim, node, _) =
        claim_fixture(&catalog(), now, ("general-a", "n1", FIXTURE_INSTANCE), &[]);
    let (_, store) = fake_api::client();
    {
        let mut s = store.lock().unwrap();
        s.put(CLAIMS, claim);
        s.put(NODES, node);
    }
    let run = Run::start(store, vec![instance]).await;
    run.until("the pods are watched", Duration::from_secs(5), |s| {
        s.calls_to("GET", "/api/v1/pods") >= 2
    })
    .await;
    // A pod the controller sees pending (a batch opens)...
    run.store
        .lock()
        .unwrap()
        .put(PODS, big_pending("gone-soon"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lists = |s: &fake_api::Store| s.calls.iter().filter(|c| *c == "GET /api/v1/pods").count();
    let listed = lists(&run.store.lock().unwrap());
    {
        // ...is deleted as the pod watch drops, and the lists that follow fail for a
        // few seconds (past the batch's close): the indexes still show it pending.
        let mut s = run.store.lock().unwrap();
        s.fail_watches.insert("/api/v1/pods".into(), 1);
        s.fail_lists.insert("/api/v1/pods".into(), 3);
        s.remove(PODS, "gone-soon");
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        run.claims_created(),
        0,
        "nothing launched for a pod that is gone"
    );
    let relisted = lists(&run.store.lock().unwrap()) - listed;
    assert!(
        relisted >= 4,
        "listed again until a list came back ({relisted})"
    );
    // The watch works again: a new pod gets its claim.
    run.store.lock().unwrap().put(PODS, big_pending("real"));
    run.until("a claim for the new pod", Duration::from_secs(12), |s| {
        s.calls_to("POST", "nodeclaims") == 1
    })
    .await;
    run.finish("watch drops");
}

#[tokio::test(start_paused = true)]
async fn a_pdb_pacing_one_eviction_at_a_time_empties_the_node_onto_new_capacity() {
    let names: Vec<String> = (0..6).map(|i| format!("web-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (store, instance) = deleting_claim(&refs);
    store.lock().unwrap().evict_budget = Some(("app".into(), "web".into(), 1));
    let run = Run::start(store, vec![instance]).await;
    let cat = catalog();
    let launched = run.launched.clone();
    let mut registered = 0;
    // Kubelets register the launched instances; ReplicaSets and the scheduler do
    // their part, every 200 ms.
    let all_moved = |s: &fake_api::Store| s.get(CLAIMS, "general-drain").is_none();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while !all_moved(&run.store.lock().unwrap()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not drained within 10 minutes"
        );
        {
            let mut s = run.store.lock().unwrap();
            for i in launched.lock().unwrap().iter().skip(registered) {
                s.put(
                    NODES,
                    node_json(&format!("new-{registered}"), i, &cat, true),
                );
                registered += 1;
            }
            s.kube_step();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = run.store.lock().unwrap();
    assert!(s.get(NODES, "n1").is_none(), "the drained node is deleted");
    let web: Vec<&Value> = s
        .objects
        .iter()
        .filter(|(k, _)| k.starts_with("/api/v1/pods/shop/"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(web.len(), 6, "every pod replaced once");
    for p in &web {
        assert_eq!(p["status"]["phase"], "Running", "{p}");
        assert!(
            p["spec"]["nodeName"].as_str().unwrap().starts_with("new-"),
            "{p}"
        );
    }
    assert!(s.calls_to("POST", "/eviction") >= 6);
    assert_eq!(
        s.calls_to("POST", "nodeclaims"),
        1,
        "one replacement, not one per pod"
    );
    drop(s);
    run.finish("PDB one at a time, 6 pods");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_watch_is_dropped_and_listed_again() {
    let (_, store) = fake_api::client();
    let opts = Options {
        watch_stall: Duration::from_secs(20),
        ..Options::default()
    };
    let run = Run::start_with(store, Vec::new(), opts).await;
    run.until("the pods are watched", Duration::from_secs(5), |s| {
        s.calls_to("GET", "/api/v1/pods") >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The next pod watch never answers; meanwhile a pod becomes pending.
    run.store
        .lock()
        .unwrap()
        .stall_watches
        .insert("/api/v1/pods".into());
    tokio::time::sleep(Duration::from_secs(1)).await;
    run.store
        .lock()
        .unwrap()
        .put(PODS, big_pending("during-stall"));
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(run.claims_created(), 0, "the stalled watch did not tell");
    run.store.lock().unwrap().stall_watches.clear();
    // Within the stall limit (20 s) and a relist backoff, the list brings the pod.
    run.until("a claim after the relist", Duration::from_secs(25), |s| {
        s.calls_to("POST", "nodeclaims") == 1
    })
    .await;
    run.finish("watch stalls");
}

// The deletion-cost pass on its own, against the fake API server and against a verifier
// that refuses or never answers pod patches.

/// The deletion-cost tests' cluster: on `n1` (claim `general-dc`, stevedore's) the
/// ReplicaSet pods `web-a`, `web-b` and `spread-a` (zone spread, so not steered); on
/// `theirs`, a node stevedore did not launch and whose pool it does not know, the
/// ReplicaSet pod `web-theirs`. Returns the claim, the nodes and the pods.
fn steering_cluster(now: f64) -> (Value, Vec<Value>, Vec<Value>) {
    let cat = catalog();
    let (_, claim, managed, mut pods) = claim_fixture(
        &cat,
        now,
        ("general-dc", "n1", FIXTURE_INSTANCE),
        &["web-a", "web-b", "spread-a"],
    );
    pods[2]["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}}}]);
    let (_, _, mut theirs, theirs_pods) = claim_fixture(
        &cat,
        now,
        ("unused", "theirs", FIXTURE_INSTANCE + 1),
        &["web-theirs"],
    );
    let labels = theirs["metadata"]["labels"].as_object_mut().unwrap();
    labels.remove("stevedore.dev/nodepool");
    pods.extend(theirs_pods);
    (claim, vec![managed, theirs], pods)
}

/// One deletion-cost pass, which must end within the tests' time limit.
async fn steer_in_time(ctl: &Controller<SimulatedCloud>) -> CostPass {
    tokio::time::timeout(LIMIT, ctl.steer_deletions())
        .await
        .expect("in time")
}

/// What the watches would bring: `claim`, `nodes` and `pods` into the indexes.
fn index(ctl: &Controller<SimulatedCloud>, claim: &Value, nodes: &[Value], pods: &[Value]) {
    let mut st = ctl.state.write().unwrap();
    st.apply_claim(&serde_json::from_value(claim.clone()).unwrap())
        .unwrap();
    for n in nodes {
        st.apply_node(&serde_json::from_value(n.clone()).unwrap(), 0.0)
            .unwrap();
    }
    for p in pods {
        st.apply_pod(&pod(p.clone()), 0.0).unwrap();
    }
}

/// The deletion cost `n1` gives its pods: the claim's launch price, three pods.
fn n1_cost(claim: &Value) -> String {
    let price = claim["spec"]["options"][0]["pricePerHour"]
        .as_f64()
        .unwrap();
    fixture_cost(price, 3).to_string()
}

/// The deletion cost of a fixture node (an m5.large, no DaemonSet pods) at `price` with
/// `pods` of the fixture's pods (100m, 128Mi) on it.
fn fixture_cost(price: f64, pods: usize) -> i32 {
    let cat = catalog();
    let room = &cat.types[cat.find("m5.large").unwrap()].allocatable;
    let n = pods as i64;
    let used = Resources::new(100 * n, (128 * n) << 20, n);
    deletion_cost::cost(price, deletion_cost::used_share(&used, room))
}

#[tokio::test]
async fn deletion_costs_are_written_once_and_only_on_steered_pods_of_managed_nodes() {
    let now = 5_000.0;
    let (claim, nodes, pods) = steering_cluster(now);
    let (client, store) = fake_api::client();
    {
        let mut s = store.lock().unwrap();
        s.put(CLAIMS, claim.clone());
        for n in &nodes {
            s.put(NODES, n.clone());
        }
        for p in &pods {
            s.put(PODS, p.clone());
        }
    }
    let cat = catalog();

    // Turned off, nothing is written.
    let mut config = stevedore::config::bundled();
    config.settings.pod_deletion_cost = false;
    let off = Controller::new(
        fake_api::client_of(&store),
        SimulatedCloud::new(cat.clone()),
        config,
        cat.clone(),
        Options::default(),
    );
    index(&off, &claim, &nodes, &pods);
    assert_eq!(off.steer_deletions().await, CostPass::default());
    assert_eq!(store.lock().unwrap().calls_to("PATCH", "/pods/"), 0);

    let ctl = controller(client, cat);
    index(&ctl, &claim, &nodes, &pods);
    let pass = steer_in_time(&ctl).await;
    assert_eq!(
        pass,
        CostPass {
            patched: 2,
            ..CostPass::default()
        }
    );
    let written = {
        let s = store.lock().unwrap();
        assert_all_granted(&s);
        let patches: Vec<&String> = s.calls.iter().filter(|c| c.starts_with("PATCH")).collect();
        assert_eq!(
            patches,
            [
                "PATCH /api/v1/namespaces/shop/pods/web-a",
                "PATCH /api/v1/namespaces/shop/pods/web-b"
            ],
            "in name order"
        );
        let cost = json!(n1_cost(&claim));
        for (name, want) in [
            ("web-a", &cost),
            ("web-b", &cost),
            ("spread-a", &Value::Null),
            ("web-theirs", &Value::Null),
        ] {
            let pod = s.get(PODS, name).unwrap();
            assert_eq!(&pod["metadata"]["annotations"][ANNOTATION], want, "{name}");
        }
        s.objects
            .iter()
            .filter(|(k, _)| k.starts_with("/api/v1/pods/"))
            .map(|(_, p)| p.clone())
            .collect::<Vec<Value>>()
    };
    // The patches are counted with the controller's other API calls.
    let metrics = prom::parse(&ctl.metrics.render()).unwrap();
    let patch_calls = prom::value(
        &metrics,
        "stevedore_kube_request_duration_seconds_count",
        &[("verb", "patch"), ("resource", "pods")],
    );
    assert_eq!(patch_calls, Some(2.0));

    // The watch brings the annotated pods; with nothing changed, nothing is written.
    index(&ctl, &claim, &nodes, &written);
    let again = steer_in_time(&ctl).await;
    assert_eq!(again, CostPass::default());
    assert_eq!(store.lock().unwrap().calls_to("PATCH", "/pods/"), 2);
}

/// A first pass over more steered pods than a pass may write sends the cap and leaves the
/// rest, which the next pass writes: the API server never gets more than the cap a pass.
#[tokio::test]
async fn a_pass_writes_at_most_its_cap_and_the_next_pass_the_rest() {
    let now = 5_000.0;
    let cat = catalog();
    let cap = stevedore::controller::deletion_cost::MAX_PATCHES_PER_PASS;
    let names: Vec<String> = (0..cap + 3).map(|i| format!("web-{i:04}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (_, claim, node, pods) =
        claim_fixture(&cat, now, ("general-cap", "n1", FIXTURE_INSTANCE), &names);
    let (client, store) = fake_api::client();
    {
        let mut s = store.lock().unwrap();
        s.put(CLAIMS, claim.clone());
        s.put(NODES, node.clone());
        for p in &pods {
            s.put(PODS, p.clone());
        }
    }
    let ctl = controller(client, cat);
    index(&ctl, &claim, std::slice::from_ref(&node), &pods);
    let first = steer_in_time(&ctl).await;
    assert_eq!(
        first,
        CostPass {
            patched: cap,
            failed: 0,
            deferred: 3
        }
    );
    assert_eq!(store.lock().unwrap().calls_to("PATCH", "/pods/"), cap);
    let written: Vec<Value> = {
        let s = store.lock().unwrap();
        names
            .iter()
            .map(|n| s.get(PODS, n).unwrap().clone())
            .collect()
    };
    index(&ctl, &claim, std::slice::from_ref(&node), &written);
    let second = steer_in_time(&ctl).await;
    assert_eq!(second.patched, 3, "{second:?}");
    let s = store.lock().unwrap();
    assert_eq!(s.calls_to("PATCH", "/pods/"), cap + 3);
    let price = claim["spec"]["options"][0]["pricePerHour"]
        .as_f64()
        .unwrap();
    let want = json!(fixture_cost(price, names.len()).to_string());
    for n in &names {
        assert_eq!(
            s.get(PODS, n).unwrap()["metadata"]["annotations"][ANNOTATION],
            want,
            "{n}"
        );
    }
}

/// How the patch verifier answers a pod patch.
#[derive(Clone, Copy)]
enum PatchReply {
    /// 429 Too Many Requests (API priority and fairness sheds load).
    Refuse,
    /// No answer, ever.
    Never,
}

/// What the patch verifier saw and holds.
#[derive(Default)]
struct Patched {
    /// The pods by name (one namespace), patched as the API server would.
    pods: BTreeMap<String, Value>,
    /// Names of the pods patch requests were sent for, in order.
    requests: Vec<String>,
    /// Requests the API_CALLS table does not grant.
    ungranted: Vec<String>,
}

/// A mocked API server for the deletion-cost pass, which sends nothing but pod patches:
/// the first patches get `script`'s replies, the others are applied and answered 200.
fn patch_verifier(pods: &[Value], script: Vec<PatchReply>) -> (kube::Client, Arc<Mutex<Patched>>) {
    use http::{Request, Response};
    use kube::client::Body;
    let state = Arc::new(Mutex::new(Patched {
        pods: pods
            .iter()
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap().to_string(),
                    p.clone(),
                )
            })
            .collect(),
        ..Patched::default()
    }));
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = state.clone();
    tokio::spawn(async move {
        let mut script = script.into_iter();
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let uri = parts.uri.to_string();
            let patch: Value =
                serde_json::from_slice(&body.collect_bytes().await.unwrap()).unwrap();
            let name = uri
                .split('?')
                .next()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string();
            let mut s = seen.lock().unwrap();
            if !stevedore::cluster::rbac::is_granted(parts.method.as_str(), &uri) {
                s.ungranted.push(format!("{} {uri}", parts.method));
            }
            assert_eq!(parts.method, "PATCH", "{uri}");
            s.requests.push(name.clone());
            let (code, out) = match script.next() {
                Some(PatchReply::Never) => {
                    // Never answered, never dropped (a dropped sender answers an error).
                    std::mem::forget(send);
                    continue;
                }
                Some(PatchReply::Refuse) => (
                    429,
                    json!({"kind": "Status", "apiVersion": "v1",
                    "status": "Failure", "reason": "TooManyRequests", "code": 429}),
                ),
                None => {
                    let pod = s.pods.get_mut(&name).expect("a known pod");
                    fake_api::merge(pod, &patch);
                    (200, pod.clone())
                }
            };
            let response = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&out).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    (kube::Client::new(svc, "default"), state)
}

/// A controller over [`patch_verifier`] with [`steering_cluster`] in its indexes.
fn steering_behind_verifier(
    script: Vec<PatchReply>,
) -> (
    Controller<SimulatedCloud>,
    Arc<Mutex<Patched>>,
    Value,
    Vec<Value>,
) {
    let (claim, nodes, pods) = steering_cluster(5_000.0);
    let (client, patched) = patch_verifier(&pods, script);
    let ctl = controller(client, catalog());
    index(&ctl, &claim, &nodes, &pods);
    (ctl, patched, claim, nodes)
}

/// The verifier's pods into the controller's indexes, as the pod watch would.
fn watch_patched(
    ctl: &Controller<SimulatedCloud>,
    patched: &Mutex<Patched>,
    claim: &Value,
    nodes: &[Value],
) {
    let pods: Vec<Value> = patched.lock().unwrap().pods.values().cloned().collect();
    index(ctl, claim, nodes, &pods);
}

#[tokio::test(start_paused = true)]
async fn a_refused_deletion_cost_patch_holds_no_other_and_is_sent_again_next_pass() {
    let (ctl, patched, claim, nodes) = steering_behind_verifier(vec![PatchReply::Refuse]);
    let pass = steer_in_time(&ctl).await;
    assert_eq!(
        pass,
        CostPass {
            patched: 1,
            failed: 1,
            deferred: 0
        },
        "web-a refused, web-b written all the same"
    );
    watch_patched(&ctl, &patched, &claim, &nodes);
    let next = steer_in_time(&ctl).await;
    assert_eq!(next.patched, 1);
    let p = patched.lock().unwrap();
    assert_eq!(p.requests, ["web-a", "web-b", "web-a"]);
    assert_eq!(
        p.pods["web-a"]["metadata"]["annotations"][ANNOTATION],
        json!(n1_cost(&claim))
    );
    assert!(p.ungranted.is_empty(), "{:?}", p.ungranted);
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_deletion_cost_patch_ends_the_pass_within_its_bound_and_is_sent_again() {
    let (ctl, patched, claim, nodes) = steering_behind_verifier(vec![PatchReply::Never]);
    let timeout = Options::default().api_timeout;
    let started = tokio::time::Instant::now();
    let pass = tokio::time::timeout(timeout * 2, ctl.steer_deletions())
        .await
        .expect("within two API timeouts");
    assert!(
        started.elapsed() >= timeout,
        "the patch had its API timeout"
    );
    assert_eq!(
        pass,
        CostPass {
            patched: 0,
            failed: 1,
            deferred: 1
        },
        "web-a unanswered, web-b left for the next pass"
    );
    watch_patched(&ctl, &patched, &claim, &nodes);
    let next = steer_in_time(&ctl).await;
    assert_eq!(next.patched, 2);
    let p = patched.lock().unwrap();
    assert_eq!(p.requests, ["web-a", "web-a", "web-b"]);
    for name in ["web-a", "web-b"] {
        assert_eq!(
            p.pods[name]["metadata"]["annotations"][ANNOTATION],
            json!(n1_cost(&claim))
        );
    }
    assert!(p.ungranted.is_empty(), "{:?}", p.ungranted);
}
