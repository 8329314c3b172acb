//! A small in-memory Kubernetes API server behind `tower_test::mock::pair`, for the
//! controller tests: create/get/list/watch/replace/merge-patch/delete with finalizers and
//! resourceVersion conflicts, evictions (with injectable 429s). Every request is checked
//! against `cluster::rbac::API_CALLS`: a call the table does not list fails the test.
// Shared by the tests and the figures example, which uses only part of it.
#![allow(dead_code)]

use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stevedore::cluster::rbac;

#[derive(Default)]
pub struct Store {
    /// Objects by "resource path/namespace/name" (resource path without the namespace,
    /// e.g. `/api/v1/pods`; namespace empty for cluster-scoped objects).
    pub objects: BTreeMap<String, Value>,
    /// "METHOD path" of every request, in order.
    pub calls: Vec<String>,
    /// Calls the API_CALLS table does not grant (the test asserts this stays empty).
    pub ungranted: Vec<String>,
    /// The next this-many evictions answer 429 (a PodDisruptionBudget says no).
    pub evict_429: u32,
    /// Evictions are never answered (a hung API server, a lost connection).
    pub evict_hang: bool,
    /// A PodDisruptionBudget `(label, value, maxUnavailable)`: an eviction of a pod so
    /// labelled answers 429 while that many of them are not Ready or being deleted.
    pub evict_budget: Option<(String, String, usize)>,
    /// Per resource path (`/api/v1/pods`): how many more watches of it fail (500),
    /// those already open included.
    pub fail_watches: BTreeMap<String, u32>,
    /// Resource paths whose watches are never answered (a stalled connection).
    pub stall_watches: std::collections::BTreeSet<String>,
    /// Per resource path: how many more lists of it fail (500).
    pub fail_lists: BTreeMap<String, u32>,
    /// (resourceVersion, resource path, namespace, watch event) of every change, the
    /// event serialized as a watch sends it (`{"type":..,"object":..}`): a tree of
    /// `Value`s took several times the room, and a long run logs every object it made.
    log: Vec<(u64, String, String, Vec<u8>)>,
    rv: u64,
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Where a request path points.
struct Loc {
    /// `/api/v1/pods`, `/apis/stevedore.dev/v1/nodeclaims` (no namespace).
    resource: String,
    namespace: String,
    name: Option<String>,
    sub: String,
}

fn locate(path: &str) -> Loc {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let base = if segs.first() == Some(&"api") { 2 } else { 3 };
    let (namespace, rest) = match segs.get(base) {
        Some(&"namespaces") if segs.len() > base + 2 => {
            (segs[base + 1].to_string(), &segs[base + 2..])
        }
        _ => (String::new(), &segs[base..]),
    };
    Loc {
        resource: format!(
            "/{}/{}",
            segs[..base].join("/"),
            rest.first().copied().unwrap_or_default()
        ),
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()).unwrap_or_default(),
    }
}

fn query_param(uri: &str, key: &str) -> Option<String> {
    let q = uri.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%2F", "/")
        })
    })
}

fn selects(selector: Option<&str>, obj: &Value) -> bool {
    selector.is_none_or(|sel| {
        sel.split(',')
            .filter(|t| !t.is_empty())
            .all(|term| match term.split_once('=') {
                Some((k, v)) => obj["metadata"]["labels"][k].as_str() == Some(v),
                None => true,
            })
    })
}

/// A CPU quantity (`"100m"`, `"2"`) in millicores.
fn milli(q: &Value) -> u64 {
    let q = q.as_str().unwrap_or("0");
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(0),
        None => q.parse::<f64>().map_or(0, |c| (c * 1000.0) as u64),
    }
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// What the server does with one request.
enum Answer {
    Now(u16, Value),
    /// No answer, ever.
    Never,
    /// A watch from this resourceVersion (answered with what happened after it).
    Watch {
        resource: String,
        namespace: String,
        since: u64,
    },
}

/// Takes one of the failures `due` holds for `resource`, if any is left.
fn take_one(due: &mut BTreeMap<String, u32>, resource: &str) -> bool {
    match due.get_mut(resource) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

/// Pod `p` is Ready and not being deleted (a PodDisruptionBudget counts it healthy).
fn pod_healthy(p: &Value) -> bool {
    !p["metadata"]["deletionTimestamp"].is_string()
        && p["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

impl Store {
    /// For a pod under `evict_budget`: how many more of its set may be disrupted.
    fn disruptions_allowed(&self, pod_key: &str) -> Option<usize> {
        let (label, value, max) = self.evict_budget.as_ref()?;
        let covered = |p: &Value| p["metadata"]["labels"][label.as_str()].as_str() == Some(value);
        if !covered(self.objects.get(pod_key)?) {
            return None;
        }
        let unhealthy = self
            .pods()
            .filter(|(_, p)| covered(p) && !pod_healthy(p))
            .count();
        Some(max.saturating_sub(unhealthy))
    }

    /// Every pod, by key.
    fn pods(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.objects
            .iter()
            .filter(|(k, _)| k.starts_with("/api/v1/pods/"))
    }

    /// Takes one watch failure of `resource`, if one is due.
    fn watch_fails(&mut self, resource: &str) -> bool {
        take_one(&mut self.fail_watches, resource)
    }

    /// Objects of `resource` (`/api/v1/events`) whose `field` is `value`.
    pub fn objects_where(&self, resource: &str, field: &str, value: &str) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|(k, v)| k.starts_with(&format!("{resource}/")) && v[field] == value)
            .map(|(_, v)| v)
            .collect()
    }

    /// What kubelets, ReplicaSets and kube-scheduler would do, in one step: a pod being
    /// deleted goes and, if a ReplicaSet owns it, a replacement comes (Pending,
    /// Unschedulable); a pending pod binds to the first Ready node without a NoSchedule
    /// taint that has room for its CPU request, and runs (Ready).
    pub fn kube_step(&mut self) {
        let deleting: Vec<(String, Value)> = self
            .pods()
            .filter(|(_, p)| p["metadata"]["deletionTimestamp"].is_string())
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        for (key, p) in deleting {
            let ns = p["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let collection = format!("/api/v1/namespaces/{ns}/pods");
            self.remove(
                &collection,
                p["metadata"]["name"].as_str().unwrap_or_default(),
            );
            if p["metadata"]["ownerReferences"].is_array() {
                self.rv += 1;
                let name = format!("{}-r{}", key.rsplit('/').next().unwrap_or("pod"), self.rv);
                let mut r = p.clone();
                r["metadata"] = json!({"name": name, "namespace": ns,
                    "labels": p["metadata"]["labels"], "ownerReferences": p["metadata"]["ownerReferences"]});
                r["spec"].as_object_mut().map(|s| s.remove("nodeName"));
                r["status"] = json!({"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]});
                self.put(&collection, r);
            }
        }
        let pending: Vec<Value> = self
            .pods()
            .filter(|(_, p)| p["spec"]["nodeName"].is_null() && p["status"]["phase"] == "Pending")
            .map(|(_, p)| p.clone())
            .collect();
        for mut p in pending {
            let Some(node) = self.node_with_room(milli(
                &p["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            )) else {
                continue;
            };
            p["spec"]["nodeName"] = json!(node);
            p["status"] = json!({"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]});
            let ns = p["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            self.put(&format!("/api/v1/namespaces/{ns}/pods"), p);
        }
    }

    /// A Ready, untainted node whose pods leave `cpu` millicores free.
    fn node_with_room(&self, cpu: u64) -> Option<String> {
        let nodes = self
            .objects
            .iter()
            .filter(|(k, _)| k.starts_with("/api/v1/nodes/"));
        for (_, n) in nodes {
            let ready = n["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            let tainted = n["spec"]["taints"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["effect"] == "NoSchedule"));
            let name = n["metadata"]["name"].as_str().unwrap_or_default();
            let used: u64 = self
                .pods()
                .filter(|(_, p)| p["spec"]["nodeName"] == name)
                .map(|(_, p)| milli(&p["spec"]["containers"][0]["resources"]["requests"]["cpu"]))
                .sum();
            if ready && !tainted && used + cpu <= milli(&n["status"]["allocatable"]["cpu"]) {
                return Some(name.to_string());
            }
        }
        None
    }

    fn key(resource: &str, ns: &str, name: &str) -> String {
        format!("{resource}/{ns}/{name}")
    }

    /// Stores an object as the API server would have it; `collection` is a request path
    /// (`/api/v1/namespaces/shop/pods`, `/api/v1/nodes`).
    pub fn put(&mut self, collection: &str, mut obj: Value) {
        let loc = locate(&format!("{collection}/x"));
        let name = obj["metadata"]["name"].as_str().expect("name").to_string();
        if !loc.namespace.is_empty() {
            obj["metadata"]["namespace"] = json!(loc.namespace);
        }
        self.bump(&mut obj);
        let key = Self::key(&loc.resource, &loc.namespace, &name);
        let kind = if self.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.record(&loc.resource, &loc.namespace, kind, &obj);
        self.objects.insert(key, obj);
    }

    /// Deletes an object as the API server would once its finalizers are gone.
    pub fn remove(&mut self, collection: &str, name: &str) {
        let loc = locate(&format!("{collection}/x"));
        if let Some(mut obj) = self
            .objects
            .remove(&Self::key(&loc.resource, &loc.namespace, name))
        {
            self.bump(&mut obj);
            self.record(&loc.resource, &loc.namespace, "DELETED", &obj);
        }
    }

    pub fn get(&self, collection: &str, name: &str) -> Option<&Value> {
        let loc = locate(&format!("{collection}/x"));
        self.objects
            .get(&Self::key(&loc.resource, &loc.namespace, name))
    }

    /// Calls whose path contains `needle`, as "METHOD path".
    /// Forgets every object, call and watch event: a long measurement (the figures
    /// example) keeps the mock server's memory out of the controller's.
    pub fn forget_all(&mut self) {
        self.objects.clear();
        self.calls.clear();
        self.log.clear();
    }

    pub fn calls_to(&self, method: &str, needle: &str) -> usize {
        self.calls
            .iter()
            .filter(|c| c.starts_with(&format!("{method} ")) && c.contains(needle))
            .count()
    }

    fn bump(&mut self, obj: &mut Value) {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
    }

    fn record(&mut self, resource: &str, ns: &str, kind: &'static str, obj: &Value) {
        let mut event = format!(r#"{{"type":"{kind}","object":"#).into_bytes();
        serde_json::to_writer(&mut event, obj).expect("a Value serializes");
        event.push(b'}');
        event.shrink_to_fit();
        self.log.push((self.rv, resource.into(), ns.into(), event));
    }

    /// Watch events after `since`, as the newline-delimited body of a watch response.
    fn events_after(&self, resource: &str, ns: &str, since: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for (rv, r, n, event) in &self.log {
            if *rv > since && r == resource && (ns.is_empty() || n == ns) {
                out.extend_from_slice(event);
                out.push(b'\n');
            }
        }
        out
    }

    fn answer(&mut self, method: &str, uri: &str, body: Value) -> Answer {
        let path = uri.split('?').next().unwrap_or(uri);
        self.calls.push(format!("{method} {path}"));
        if !rbac::is_granted(method, uri) {
            self.ungranted.push(format!("{method} {uri}"));
            return Answer::Now(403, status(403, "Forbidden", "not in API_CALLS"));
        }
        let loc = locate(path);
        if method == "GET"
            && loc.name.is_none()
            && query_param(uri, "watch").as_deref() == Some("true")
        {
            if self.stall_watches.contains(&loc.resource) {
                return Answer::Never;
            }
            let since = query_param(uri, "resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            return Answer::Watch {
                resource: loc.resource,
                namespace: loc.namespace,
                since,
            };
        }
        if method == "GET" && loc.name.is_none() && take_one(&mut self.fail_lists, &loc.resource) {
            return Answer::Now(500, status(500, "InternalError", "list failed"));
        }
        if loc.sub == "eviction" && self.evict_hang {
            return Answer::Never;
        }
        let (code, v) = self.apply(method, uri, &loc, body);
        Answer::Now(code, v)
    }

    fn apply(&mut self, method: &str, uri: &str, loc: &Loc, body: Value) -> (u16, Value) {
        let (res, ns) = (loc.resource.clone(), loc.namespace.clone());
        let key = |n: &str| Self::key(&res, &ns, n);
        match (method, loc.name.as_deref(), loc.sub.as_str()) {
            ("POST", None, "") => {
                let mut obj = body;
                let Some(n) = obj["metadata"]["name"].as_str().map(String::from) else {
                    return (422, status(422, "Invalid", "name required"));
                };
                if self.objects.contains_key(&key(&n)) {
                    return (409, status(409, "AlreadyExists", "exists"));
                }
                obj["metadata"]["uid"] = json!(format!("uid-{n}"));
                obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
                if !ns.is_empty() {
                    obj["metadata"]["namespace"] = json!(ns);
                }
                self.bump(&mut obj);
                self.record(&res, &ns, "ADDED", &obj);
                self.objects.insert(key(&n), obj.clone());
                (201, obj)
            }
            ("POST", Some(n), "eviction") => {
                if !self.objects.contains_key(&key(n)) {
                    return (404, status(404, "NotFound", "no pod"));
                }
                let over_budget = self.disruptions_allowed(&key(n)) == Some(0);
                if self.evict_429 > 0 || over_budget {
                    self.evict_429 = self.evict_429.saturating_sub(1);
                    return (
                        429,
                        status(
                            429,
                            "TooManyRequests",
                            "Cannot evict pod as it would violate the pod's disruption budget.",
                        ),
                    );
                }
                let mut pod = self.objects[&key(n)].clone();
                pod["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                self.bump(&mut pod);
                self.record(&res, &ns, "MODIFIED", &pod);
                self.objects.insert(key(n), pod);
                (
                    201,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                )
            }
            ("GET", Some(n), "") => match self.objects.get(&key(n)) {
                Some(o) => (200, o.clone()),
                None => (404, status(404, "NotFound", "not found")),
            },
            ("GET", None, "") => {
                let selector = query_param(uri, "labelSelector");
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|(k, _)| {
                        let (r, rest) = k
                            .rsplit_once('/')
                            .map(|(a, _)| a)
                            .unwrap_or("")
                            .rsplit_once('/')
                            .unwrap_or(("", ""));
                        r == res && (ns.is_empty() || rest == ns)
                    })
                    .map(|(_, v)| v.clone())
                    .filter(|v| selects(selector.as_deref(), v))
                    .collect();
                (
                    200,
                    json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": self.rv.to_string()}, "items": items}),
                )
            }
            ("PUT", Some(n), "") => {
                let Some(current) = self.objects.get(&key(n)) else {
                    return (404, status(404, "NotFound", "not found"));
                };
                if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return (409, status(409, "Conflict", "the object has been modified"));
                }
                let mut obj = body;
                self.bump(&mut obj);
                self.record(&res, &ns, "MODIFIED", &obj);
                self.objects.insert(key(n), obj.clone());
                (200, obj)
            }
            ("PATCH", Some(n), "" | "status") => {
                let Some(mut obj) = self.objects.get(&key(n)).cloned() else {
                    return (404, status(404, "NotFound", "not found"));
                };
                merge(&mut obj, &body);
                self.bump(&mut obj);
                let finalized = obj["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(|f| f.is_empty());
                if obj["metadata"]["deletionTimestamp"].is_string() && finalized {
                    self.record(&res, &ns, "DELETED", &obj);
                    self.objects.remove(&key(n));
                } else {
                    self.record(&res, &ns, "MODIFIED", &obj);
                    self.objects.insert(key(n), obj.clone());
                }
                (200, obj)
            }
            ("DELETE", Some(n), "") => {
                let Some(mut obj) = self.objects.get(&key(n)).cloned() else {
                    return (404, status(404, "NotFound", "not found"));
                };
                let has_finalizers = obj["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
                if has_finalizers {
                    if !obj["metadata"]["deletionTimestamp"].is_string() {
                        obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                        self.bump(&mut obj);
                        self.record(&res, &ns, "MODIFIED", &obj);
                    }
                    self.objects.insert(key(n), obj.clone());
                } else {
                    self.bump(&mut obj);
                    self.record(&res, &ns, "DELETED", &obj);
                    self.objects.remove(&key(n));
                }
                (200, obj)
            }
            _ => (
                405,
                status(405, "MethodNotAllowed", "not supported by the fake"),
            ),
        }
    }
}

fn respond(code: u16, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// A client whose requests the returned store answers. A watch is answered after up
/// to 300 ms with the changes since its resourceVersion (then the stream ends and the
/// watcher watches again), so watches see changes as they happen.
pub fn client() -> (kube::Client, Arc<Mutex<Store>>) {
    let store = Arc::new(Mutex::new(Store::default()));
    (client_of(&store), store)
}

async fn serve_one(
    s: &Arc<Mutex<Store>>,
    req: Request<Body>,
    send: tower_test::mock::SendResponse<Response<Body>>,
) {
    let (parts, body) = req.into_parts();
    let bytes = body.collect_bytes().await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let uri = parts.uri.to_string();
    let answer = s.lock().unwrap().answer(parts.method.as_str(), &uri, body);
    match answer {
        Answer::Now(code, out) => {
            send.send_response(respond(code, serde_json::to_vec(&out).unwrap()))
        }
        // Never answered, never dropped (a dropped sender would answer with an error).
        Answer::Never => std::mem::forget(send),
        Answer::Watch {
            resource,
            namespace,
            since,
        } => {
            let s = s.clone();
            tokio::spawn(async move {
                let mut events = Vec::new();
                for _ in 0..15 {
                    events = s.lock().unwrap().events_after(&resource, &namespace, since);
                    if !events.is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if s.lock().unwrap().watch_fails(&resource) {
                    let failed = status(500, "InternalError", "watch failed");
                    send.send_response(respond(500, serde_json::to_vec(&failed).unwrap()));
                } else {
                    send.send_response(respond(200, events));
                }
            });
        }
    }
}

/// Another client of the same store (a second replica).
pub fn client_of(store: &Arc<Mutex<Store>>) -> kube::Client {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let s = store.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            serve_one(&s, req, send).await;
        }
    });
    kube::Client::new(svc, "default")
}
