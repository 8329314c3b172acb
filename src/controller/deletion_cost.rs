//! The deletion-cost loop: every `scanInterval`, each pod whose scale-downs stevedore
//! steers ([`deletion_cost::steers`]) on a node stevedore manages gets, in its
//! `controller.kubernetes.io/pod-deletion-cost` annotation, [`deletion_cost::cost`] of
//! its node as the node is now. The simulator ranks a ReplicaSet's deletions by that cost
//! at the moment of each deletion, so the annotations must follow the nodes as pods come
//! and go. Writes only that annotation, only where the pod's value differs, and never on
//! a node stevedore does not manage. Off with `podDeletionCost: false`.
//!
//! Which pods need which value is a plain function of the indexes ([`updates`]); the loop
//! only sends the patches, in namespace/name order, at most [`MAX_PATCHES_PER_PASS`] a
//! pass and for one API timeout, so a first pass over a large cluster (no pod annotated
//! yet) or a slow API server spreads the writes over several passes instead of flooding
//! the API server or holding the loop.

use super::leader::Gate;
use super::{Controller, ControllerError};
use crate::cloud::CloudProvider;
use crate::cluster::convert::PodEntry;
use crate::cluster::state::{ClusterState, PreparedNode, Target};
use crate::core::deletion_cost::{self, ANNOTATION};
use crate::core::resources::Resources;
use crate::core::unavailable::UnavailableOfferings;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use std::sync::Arc;

const LOOP: &str = "deletion_cost";

/// Patches one pass sends at most; the pods left over go at the next pass.
pub const MAX_PATCHES_PER_PASS: usize = 500;

/// A pod whose deletion-cost annotation must be set to `cost`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CostUpdate {
    pub namespace: String,
    pub name: String,
    pub cost: i32,
}

/// What one pass of the loop did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CostPass {
    /// Pods whose annotation was written.
    pub patched: usize,
    /// Patches refused or not answered in time (sent again next pass).
    pub failed: usize,
    /// Pods left for the next pass: past the cap, or not reached within the pass's time
    /// (all of them in a dry run).
    pub deferred: usize,
}

/// A node whose pods stevedore steers: registered (a claim not registered yet holds no
/// pods), launched by stevedore or labelled with one of its pools, with a known price
/// (without one, [`deletion_cost::cost`] cannot rank the node).
fn managed(n: &PreparedNode) -> bool {
    matches!(n.target, Target::Node(_))
        && (n.claim.is_some() || n.pool.is_some())
        && n.price_per_hour > 0.0
}

/// The pods on `nodes` (a decision's prepared nodes, which carry each node's price)
/// whose deletion-cost annotation is not their node's cost, in namespace/name order.
/// A node's cost counts the requests of its pods that are neither DaemonSet pods nor
/// being deleted, against its allocatable less its DaemonSet pods': a pod being deleted
/// is already leaving, so the others get at once the cost their node has without it. A
/// pod being deleted is not written either.
pub fn updates(st: &ClusterState, nodes: &[PreparedNode]) -> Vec<CostUpdate> {
    let mut out = Vec::new();
    for n in nodes.iter().filter(|n| managed(n)) {
        let mut room = n.allocatable.clone();
        let mut used = Resources::default();
        let mut staying: Vec<&PodEntry> = Vec::new();
        for p in st.pods_on(n.name) {
            if p.pod.is_daemonset() {
                room.sub(&p.pod.requests);
            } else if !p.deleting {
                used.add(&p.pod.requests);
                staying.push(p);
            }
        }
        let cost = deletion_cost::cost(n.price_per_hour, deletion_cost::used_share(&used, &room));
        let value = cost.to_string();
        out.extend(
            staying
                .iter()
                .filter(|p| deletion_cost::steers(&p.pod))
                .filter(|p| p.pod.annotations.get(ANNOTATION) != Some(&value))
                .map(|p| CostUpdate {
                    namespace: p.pod.namespace.clone(),
                    name: p.pod.name.clone(),
                    cost,
                }),
        );
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

impl<P: CloudProvider + 'static> Controller<P> {
    pub async fn deletion_cost_loop(self: Arc<Self>, gate: Gate) {
        let every = self.config.settings.scan_interval;
        // The pass stops sending after one API timeout; the patch under way then may
        // take one more.
        let bound = self.opts.api_timeout * 2;
        super::health::every(&self.liveness, LOOP, every, bound, || async {
            if gate.acting() {
                self.steer_deletions().await;
            }
        })
        .await;
    }
}

impl<P: CloudProvider> Controller<P> {
    /// One pass: writes the deletion cost of the pods [`updates`] finds, the first
    /// [`MAX_PATCHES_PER_PASS`] of them, until one API timeout has passed. A refused or
    /// unanswered patch is counted and the pass goes on with the next pod.
    pub async fn steer_deletions(&self) -> CostPass {
        if !self.config.settings.pod_deletion_cost {
            return CostPass::default();
        }
        let mut todo = self.deletion_cost_updates();
        let mut pass = CostPass {
            deferred: todo.len().saturating_sub(MAX_PATCHES_PER_PASS),
            ..CostPass::default()
        };
        todo.truncate(MAX_PATCHES_PER_PASS);
        if self.opts.dry_run {
            if !todo.is_empty() {
                tracing::info!(pods = todo.len(), "dry run: would set pod deletion costs");
            }
            pass.deferred += todo.len();
            return pass;
        }
        let deadline = tokio::time::Instant::now() + self.opts.api_timeout;
        let mut first_error = None;
        for (i, update) in todo.iter().enumerate() {
            if tokio::time::Instant::now() >= deadline {
                pass.deferred += todo.len() - i;
                break;
            }
            match self.patch_deletion_cost(update).await {
                Ok(()) => pass.patched += 1,
                // Deleted since the indexes showed it: nothing left to steer.
                Err(e) if e.is_code(404) => {}
                Err(e) => {
                    pass.failed += 1;
                    first_error.get_or_insert((update, e));
                }
            }
        }
        if let Some((update, error)) = first_error {
            tracing::warn!(
                failed = pass.failed,
                namespace = %update.namespace,
                pod = %update.name,
                %error,
                "pod deletion cost patches failed; retried next pass"
            );
        }
        pass
    }

    /// [`updates`] over the indexes as a decision prepares them: the price of each node
    /// is read exactly as consolidation reads it.
    fn deletion_cost_updates(&self) -> Vec<CostUpdate> {
        let m = self.model();
        // Prices do not depend on which offerings are out of capacity.
        let unavailable = UnavailableOfferings::default();
        let d = self.decider(&m, &unavailable, self.now());
        let st = self.read();
        let prepared = st.prepare(&d.inputs());
        updates(&st, &prepared.nodes)
    }

    /// A JSON merge patch of the one annotation, leaving the pod's others as they are.
    /// The watch brings the patched pod into the indexes: applying the answer here could
    /// bring back a pod whose deletion the watch applied meanwhile.
    async fn patch_deletion_cost(&self, update: &CostUpdate) -> Result<(), ControllerError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &update.namespace);
        let patch = serde_json::json!({
            "metadata": {"annotations": {ANNOTATION: update.cost.to_string()}}
        });
        self.api(
            "patch pod deletion cost",
            api.patch(&update.name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::DecisionInputs;
    use crate::core::instance::{CapacityType, Catalog};
    use crate::core::model::SchedulingModel;
    use serde_json::{json, Value};

    const ON_DEMAND_POOL: &str = "general";

    fn catalog() -> Catalog {
        crate::sim::setup::load_catalog(&crate::config::bundled().settings).expect("catalog")
    }

    /// A Ready m5.large in us-east-1a, on demand; labelled with `pool` when given.
    fn node(
        name: &str,
        pool: Option<&str>,
        instance_type: &str,
    ) -> k8s_openapi::api::core::v1::Node {
        let mut labels = json!({"node.kubernetes.io/instance-type": instance_type,
            "topology.kubernetes.io/zone": "us-east-1a", "kubernetes.io/hostname": name});
        if let Some(p) = pool {
            labels["stevedore.dev/nodepool"] = json!(p);
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": "1930m", "memory": "7Gi", "pods": "29"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap()
    }

    /// A running pod on `node` owned by a `kind` (none when empty).
    fn pod(ns: &str, name: &str, node: &str, kind: &str) -> Value {
        let mut p = json!({
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]},
            "status": {"phase": "Running"}
        });
        if !kind.is_empty() {
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind, "name": "owner", "uid": "u", "controller": true}]);
        }
        p
    }

    fn apply(st: &mut ClusterState, p: Value) {
        st.apply_pod(&serde_json::from_value(p).unwrap(), 0.0)
            .unwrap();
    }

    fn updates_of(st: &ClusterState, cat: &Catalog) -> Vec<CostUpdate> {
        let config = crate::config::bundled();
        let model = SchedulingModel::new(cat, &config.node_pools, &[]);
        let inputs = DecisionInputs {
            catalog: cat,
            pools: &config.node_pools,
            model: &model,
            group_of: None,
        };
        updates(st, &st.prepare(&inputs).nodes)
    }

    fn on_demand_price(cat: &Catalog, ty: &str) -> f64 {
        let zone = cat.zone_index("us-east-1a").unwrap();
        cat.types[cat.find(ty).unwrap()]
            .offerings
            .iter()
            .find(|o| o.zone == zone && o.capacity_type == CapacityType::OnDemand)
            .unwrap()
            .price_per_hour
    }

    fn update(ns: &str, name: &str, cost: i32) -> CostUpdate {
        CostUpdate {
            namespace: ns.into(),
            name: name.into(),
            cost,
        }
    }

    #[test]
    fn only_replica_set_pods_without_spread_on_managed_priced_nodes_get_their_nodes_cost() {
        let cat = catalog();
        let mut st = ClusterState::new(vec!["default-scheduler".into()]);
        st.apply_node(&node("small", Some(ON_DEMAND_POOL), "m5.large"), 0.0)
            .unwrap();
        st.apply_node(&node("big", Some(ON_DEMAND_POOL), "m5.4xlarge"), 0.0)
            .unwrap();
        st.apply_node(&node("theirs", None, "m5.large"), 0.0)
            .unwrap();
        st.apply_node(&node("unpriced", Some(ON_DEMAND_POOL), "x9.unknown"), 0.0)
            .unwrap();
        for p in [
            pod("shop", "web-b", "small", "ReplicaSet"),
            pod("shop", "agent", "small", "DaemonSet"),
            pod("shop", "job", "small", "Job"),
            pod("api", "web-a", "big", "ReplicaSet"),
            pod("shop", "web-theirs", "theirs", "ReplicaSet"),
            pod("shop", "web-unpriced", "unpriced", "ReplicaSet"),
        ] {
            apply(&mut st, p);
        }
        let mut spread = pod("shop", "spread", "small", "ReplicaSet");
        spread["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "spread"}}}]);
        apply(&mut st, spread);

        // `small` holds web-b, the Job's pod and the spread pod, 100m each, in the room
        // its DaemonSet pod leaves (1830m of 1930m); only web-b is steered. `big` holds
        // web-a alone (100m of 1930m). The nodes that are not stevedore's, or have no
        // price, are left alone.
        let small = deletion_cost::cost(on_demand_price(&cat, "m5.large"), 300.0 / 1830.0);
        let big = deletion_cost::cost(on_demand_price(&cat, "m5.4xlarge"), 100.0 / 1930.0);
        assert_eq!(
            updates_of(&st, &cat),
            vec![update("api", "web-a", big), update("shop", "web-b", small)],
            "in namespace/name order"
        );
    }

    #[test]
    fn a_pod_carrying_its_cost_is_left_alone_and_a_leaving_pod_neither_counts_nor_is_written() {
        let cat = catalog();
        let mut st = ClusterState::new(vec!["default-scheduler".into()]);
        st.apply_node(&node("n1", Some(ON_DEMAND_POOL), "m5.large"), 0.0)
            .unwrap();
        let price = on_demand_price(&cat, "m5.large");
        // Two staying pods of 100m each on 1930m.
        let two = deletion_cost::cost(price, 200.0 / 1930.0);
        let mut current = pod("shop", "web-a", "n1", "ReplicaSet");
        current["metadata"]["annotations"] = json!({ANNOTATION: two.to_string()});
        let mut stale = pod("shop", "web-b", "n1", "ReplicaSet");
        stale["metadata"]["annotations"] = json!({ANNOTATION: "7"});
        let mut leaving = pod("shop", "web-c", "n1", "ReplicaSet");
        leaving["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        for p in [current, stale, leaving] {
            apply(&mut st, p);
        }
        assert_eq!(updates_of(&st, &cat), vec![update("shop", "web-b", two)]);

        // web-b leaves: web-a's node now holds one pod, and its cost moves.
        st.delete_pod("shop", "web-b", 1.0);
        let one = deletion_cost::cost(price, 100.0 / 1930.0);
        assert_ne!(one, two);
        assert_eq!(updates_of(&st, &cat), vec![update("shop", "web-a", one)]);
    }
}
