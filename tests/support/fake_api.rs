//! A small in-memory Kubernetes API server behind `tower_test::mock::pair`, for the
//! controller tests: create/get/list/replace/merge-patch/delete with finalizers and
//! resourceVersion conflicts, evictions (with injectable 429s). Every request is checked
//! against `cluster::rbac::API_CALLS`: a call the table does not list fails the test.
// Shared by the tests and the figures example, which uses only part of it.
#![allow(dead_code)]

use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use stevedore::cluster::rbac;

#[derive(Default)]
pub struct Store {
    /// Objects by "collection path/name" (collection path ends with the resource).
    pub objects: BTreeMap<String, Value>,
    /// "METHOD path" of every request, in order.
    pub calls: Vec<String>,
    /// Calls the API_CALLS table does not grant (the test asserts this stays empty).
    pub ungranted: Vec<String>,
    /// The next this-many evictions answer 429 (a PodDisruptionBudget says no).
    pub evict_429: u32,
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

/// (collection path, name, subresource) of a request path.
fn locate(path: &str) -> (String, Option<String>, String) {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let start = if segs.first() == Some(&"api") { 2 } else { 3 };
    let mut i = start;
    if segs.get(i) == Some(&"namespaces") && segs.len() > i + 2 {
        i += 2;
    }
    let collection = format!("/{}", segs[..=i].join("/"));
    let name = segs.get(i + 1).map(|s| s.to_string());
    let sub = segs.get(i + 2).map(|s| s.to_string()).unwrap_or_default();
    (collection, name, sub)
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

impl Store {
    pub fn put(&mut self, collection: &str, obj: Value) {
        let name = obj["metadata"]["name"].as_str().expect("name").to_string();
        self.objects.insert(format!("{collection}/{name}"), obj);
    }

    pub fn get(&self, collection: &str, name: &str) -> Option<&Value> {
        self.objects.get(&format!("{collection}/{name}"))
    }

    /// Calls whose path contains `needle`, as "METHOD path".
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

    fn answer(&mut self, method: &str, uri: &str, body: Value) -> (u16, Value) {
        let path = uri.split('?').next().unwrap_or(uri);
        self.calls.push(format!("{method} {path}"));
        if !rbac::is_granted(method, uri) {
            self.ungranted.push(format!("{method} {uri}"));
            return (403, status(403, "Forbidden", "not in API_CALLS"));
        }
        let (collection, name, sub) = locate(path);
        let key = |n: &str| format!("{collection}/{n}");
        match (method, name.as_deref(), sub.as_str()) {
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
                self.bump(&mut obj);
                self.objects.insert(key(&n), obj.clone());
                (201, obj)
            }
            ("POST", Some(n), "eviction") => {
                let pod_key = key(n);
                if !self.objects.contains_key(&pod_key) {
                    return (404, status(404, "NotFound", "no pod"));
                }
                if self.evict_429 > 0 {
                    self.evict_429 -= 1;
                    return (
                        429,
                        status(
                            429,
                            "TooManyRequests",
                            "Cannot evict pod as it would violate the pod's disruption budget.",
                        ),
                    );
                }
                if let Some(p) = self.objects.get_mut(&pod_key) {
                    p["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                }
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
                let prefix = format!("{collection}/");
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
                    .map(|(_, v)| v.clone())
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
                    self.objects.remove(&key(n));
                } else {
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
                    }
                    self.objects.insert(key(n), obj.clone());
                } else {
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

/// A client whose requests the returned store answers.
pub fn client() -> (kube::Client, Arc<Mutex<Store>>) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let store = Arc::new(Mutex::new(Store::default()));
    let s = store.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let uri = parts.uri.to_string();
            let (code, out) = s.lock().unwrap().answer(parts.method.as_str(), &uri, body);
            let resp = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&out).unwrap()))
                .unwrap();
            send.send_response(resp);
        }
    });
    (kube::Client::new(svc, "default"), store)
}
