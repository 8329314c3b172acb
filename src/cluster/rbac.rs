//! Every Kubernetes API call the controller makes, as (verb, group, resource,
//! subresource) and the namespaces it is made in. The chart's ClusterRole (calls in any
//! namespace or cluster-scoped) and Roles (calls in one namespace) must grant exactly
//! these; the mocked-API tests check every request the code sends against [`API_CALLS`]
//! (through [`classify`]) and fail on one that is missing, so this table cannot drift
//! from the code.

/// One kind of API call, in RBAC terms. `group` is `""` for the core group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiCall {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub namespace: Namespace,
}

/// Where a call is made, which decides how RBAC grants it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    /// Cluster-scoped objects, or objects in any namespace: a ClusterRole rule.
    Any,
    /// The controller's own namespace (the Helm release's): a Role there.
    Release,
    /// [`NODE_LEASE_NAMESPACE`], where kubelets (and the providers that stand in for
    /// them) keep node heartbeat Leases: a Role there.
    NodeLease,
}

/// The namespace of node heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

const fn call(
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    subresource: &'static str,
) -> ApiCall {
    ApiCall {
        verb,
        group,
        resource,
        subresource,
        namespace: Namespace::Any,
    }
}

impl ApiCall {
    /// The same call, made only in `namespace`.
    const fn in_namespace(self, namespace: Namespace) -> ApiCall {
        ApiCall { namespace, ..self }
    }

    /// Does this entry grant a request in `ns` (`None`: a cluster-scoped or all-namespace
    /// request)? The mocked API does not know the release namespace, so `Release` grants
    /// any namespace but the node-lease one; the controller only ever names its own.
    fn covers(&self, ns: Option<&str>) -> bool {
        match self.namespace {
            Namespace::Any => true,
            Namespace::Release => ns.is_some_and(|n| n != NODE_LEASE_NAMESPACE),
            Namespace::NodeLease => ns == Some(NODE_LEASE_NAMESPACE),
        }
    }
}

/// The calls the controller (and the `fake` provider, and `record`) make.
pub const API_CALLS: &[ApiCall] = &[
    // Watches feeding the in-memory indexes.
    call("list", "", "pods", ""),
    call("watch", "", "pods", ""),
    call("list", "", "nodes", ""),
    call("watch", "", "nodes", ""),
    call("list", "stevedore.dev", "nodepools", ""),
    call("watch", "stevedore.dev", "nodepools", ""),
    call("list", "stevedore.dev", "nodeclaims", ""),
    call("watch", "stevedore.dev", "nodeclaims", ""),
    call("list", "policy", "poddisruptionbudgets", ""),
    call("watch", "policy", "poddisruptionbudgets", ""),
    call("list", "apps", "daemonsets", ""),
    call("watch", "apps", "daemonsets", ""),
    // NodeClaims: one per launch, status as it progresses, finalizer removed at the end.
    call("create", "stevedore.dev", "nodeclaims", ""),
    call("patch", "stevedore.dev", "nodeclaims", ""),
    call("patch", "stevedore.dev", "nodeclaims", "status"),
    call("delete", "stevedore.dev", "nodeclaims", ""),
    // Nodes: pool labels and taints on registration, the disrupted taint, removal.
    call("patch", "", "nodes", ""),
    call("delete", "", "nodes", ""),
    // Drain: evictions (PDBs honoured), then deletion past terminationGracePeriod.
    call("create", "", "pods", "eviction"),
    call("delete", "", "pods", ""),
    // Pods: the deletion-cost annotation that steers ReplicaSet scale-downs.
    call("patch", "", "pods", ""),
    // Events on pods and NodeClaims.
    call("create", "", "events", ""),
    // Leader election: the Lease `stevedore-leader` in the release namespace.
    call("get", "coordination.k8s.io", "leases", "").in_namespace(Namespace::Release),
    call("create", "coordination.k8s.io", "leases", "").in_namespace(Namespace::Release),
    call("update", "coordination.k8s.io", "leases", "").in_namespace(Namespace::Release),
    // Providers that create Nodes (fake, simulated): Node objects without a kubelet, kept
    // Ready by heartbeats (the Ready condition and the node's Lease).
    call("create", "", "nodes", ""),
    call("get", "", "nodes", ""),
    call("patch", "", "nodes", "status"),
    call("get", "coordination.k8s.io", "leases", "").in_namespace(Namespace::NodeLease),
    call("create", "coordination.k8s.io", "leases", "").in_namespace(Namespace::NodeLease),
    call("update", "coordination.k8s.io", "leases", "").in_namespace(Namespace::NodeLease),
];

/// The RBAC view of an HTTP request to the API server: verb from the method (and
/// `watch=true`), group, resource and subresource from the path. `None` for paths that
/// are not resource requests (discovery, `/version`).
pub fn classify(method: &str, path_and_query: &str) -> Option<(String, String, String, String)> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, name, sub) = match rest {
        [resource] => (*resource, None, ""),
        [resource, name] => (*resource, Some(*name), ""),
        [resource, name, sub] => (*resource, Some(*name), *sub),
        _ => return None,
    };
    let watch = query.split('&').any(|kv| kv == "watch=true");
    let verb = match (method, name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    // POST to a subresource (eviction) creates the subresource; POST to a collection
    // creates the resource.
    Some((verb.into(), group.into(), resource.into(), sub.into()))
}

/// The namespace a request path names (`/api/v1/namespaces/NS/...` with a resource
/// after it), `None` for cluster-scoped and all-namespace requests.
pub fn namespace_of(path_and_query: &str) -> Option<&str> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segs.as_slice() {
        ["api", _, rest @ ..] | ["apis", _, _, rest @ ..] => rest,
        _ => return None,
    };
    match rest {
        ["namespaces", ns, _, ..] => Some(ns),
        _ => None,
    }
}

/// The [`API_CALLS`] entry that grants this request, if any.
pub fn granting(method: &str, path_and_query: &str) -> Option<&'static ApiCall> {
    let (v, g, r, s) = classify(method, path_and_query)?;
    let ns = namespace_of(path_and_query);
    API_CALLS.iter().find(|c| {
        c.verb == v && c.group == g && c.resource == r && c.subresource == s && c.covers(ns)
    })
}

/// Is this request one [`API_CALLS`] grants?
pub fn is_granted(method: &str, path_and_query: &str) -> bool {
    granting(method, path_and_query).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_core_group_and_named_groups() {
        let c = |m, p| classify(m, p).map(|(v, g, r, s)| format!("{v} {g} {r} {s}"));
        assert_eq!(
            c("POST", "/api/v1/namespaces/shop/pods/web-1/eviction?").as_deref(),
            Some("create  pods eviction")
        );
        assert_eq!(
            c("GET", "/api/v1/pods?&watch=true&timeoutSeconds=290").as_deref(),
            Some("watch  pods ")
        );
        assert_eq!(c("GET", "/api/v1/nodes?").as_deref(), Some("list  nodes "));
        assert_eq!(
            c(
                "PATCH",
                "/apis/stevedore.dev/v1/nodeclaims/general-abc/status?"
            )
            .as_deref(),
            Some("patch stevedore.dev nodeclaims status")
        );
        assert_eq!(
            c(
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/stevedore-leader?"
            )
            .as_deref(),
            Some("update coordination.k8s.io leases ")
        );
        assert_eq!(c("GET", "/version"), None);
    }

    #[test]
    fn leases_are_granted_only_in_their_namespaces() {
        let lease = |ns: &str| format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/x?");
        for verb in ["GET", "PUT"] {
            let leader = granting(verb, &lease("stevedore")).expect("leader lease");
            assert_eq!(leader.namespace, Namespace::Release);
            let node = granting(verb, &lease(NODE_LEASE_NAMESPACE)).expect("node lease");
            assert_eq!(node.namespace, Namespace::NodeLease);
        }
        // Leases in every namespace at once (a list or watch) are not granted.
        assert!(!is_granted("GET", "/apis/coordination.k8s.io/v1/leases?"));
        assert_eq!(namespace_of("/api/v1/namespaces/shop/pods/a"), Some("shop"));
        assert_eq!(namespace_of("/api/v1/namespaces/shop"), None);
        assert_eq!(namespace_of("/api/v1/nodes/n1"), None);
    }

    #[test]
    fn only_listed_calls_are_granted() {
        assert!(is_granted("POST", "/apis/stevedore.dev/v1/nodeclaims?"));
        assert!(!is_granted("DELETE", "/api/v1/namespaces/x/secrets/y"));
        assert!(!is_granted("PUT", "/api/v1/nodes/n1"));
    }
}
