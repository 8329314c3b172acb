//! The `fake` provider: "launching" creates a Node object directly, with capacity and
//! allocatable from the catalog, the pool's labels and taints, a Ready condition and
//! provider ID `fake:///<zone>/<name>`. Nothing backs it, so it keeps the node alive as
//! a kubelet would (see /work/shared/notes/real-clusters.md): it renews the node's Lease
//! in `kube-node-lease` and refreshes the Ready heartbeat every 10 s, else the node
//! lifecycle controller would mark it Unknown and taint it. Rehearse stevedore on any
//! cluster at full scale without a cloud bill.
//!
//! All state is in the API server (Node objects labelled for this cluster), so a
//! restarted controller finds every fake instance with [`CloudProvider::list`].

use super::{
    tags, CloudError, CloudProvider, Instance, InstanceState, LaunchRequest, OfferingUpdate,
};
use crate::cluster::convert::quantities;
use crate::core::instance::{CapacityType, Catalog};
use crate::core::labels;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Label marking nodes the fake provider created.
pub const FAKE_LABEL: &str = "stevedore.dev/fake";
/// How often heartbeats are written (a kubelet's default lease renewal).
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

pub struct FakeCloud {
    client: kube::Client,
    catalog: Arc<Catalog>,
    cluster: String,
}

fn api_error(operation: &str, e: kube::Error) -> CloudError {
    match e {
        kube::Error::Api(s) if s.code == 404 => CloudError::NotFound {
            provider_id: operation.to_string(),
        },
        kube::Error::Api(s) if s.code == 403 => CloudError::Unauthorized {
            action: operation.to_string(),
            message: s.message.clone(),
        },
        other => CloudError::Other {
            operation: operation.to_string(),
            message: other.to_string(),
        },
    }
}

fn ready_condition(now: &k8s_openapi::jiff::Timestamp) -> NodeCondition {
    NodeCondition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: Some("FakeKubeletReady".into()),
        message: Some("stevedore fake provider keeps this node ready".into()),
        last_heartbeat_time: Some(Time(*now)),
        last_transition_time: Some(Time(*now)),
    }
}

impl FakeCloud {
    pub fn new(client: kube::Client, catalog: Arc<Catalog>, cluster: &str) -> Self {
        FakeCloud {
            client,
            catalog,
            cluster: cluster.to_string(),
        }
    }

    fn selector(&self) -> String {
        format!("{FAKE_LABEL}=true,{}={}", tags::CLUSTER, self.cluster)
    }

    /// The Node object for a launch of `request` as its first option. Errors when the
    /// option is not in the catalog.
    pub fn node_object(&self, request: &LaunchRequest) -> Result<Node, CloudError> {
        let o = request.options.first().ok_or_else(|| CloudError::Invalid {
            operation: "launch".into(),
            message: "no options".into(),
        })?;
        let ty = self
            .catalog
            .find(&o.instance_type)
            .ok_or_else(|| CloudError::Invalid {
                operation: "launch".into(),
                message: format!("instance type {} is not in the catalog", o.instance_type),
            })?;
        let it = &self.catalog.types[ty];
        let name = request.node_claim.clone();
        let mut l = it.labels.clone();
        l.extend(request.labels.clone());
        for (k, v) in [
            (labels::ZONE, o.zone.as_str()),
            (labels::REGION, self.catalog.region.as_str()),
            (labels::KARPENTER_CAPACITY_TYPE, o.capacity_type.as_str()),
            (labels::CAPACITY_TYPE, o.capacity_type.as_str()),
            (labels::KARPENTER_NODEPOOL, request.node_pool.as_str()),
            (labels::NODEPOOL, request.node_pool.as_str()),
            (labels::HOSTNAME, name.as_str()),
            (FAKE_LABEL, "true"),
            (tags::CLUSTER, self.cluster.as_str()),
            (tags::NODE_POOL, request.node_pool.as_str()),
            (tags::NODE_CLAIM, name.as_str()),
        ] {
            l.insert(k.to_string(), v.to_string());
        }
        let taints: Vec<Taint> = request
            .taints
            .iter()
            .chain(&request.startup_taints)
            .map(|t| Taint {
                key: t.key.clone(),
                value: (!t.value.is_empty()).then(|| t.value.clone()),
                effect: format!("{:?}", t.effect),
                time_added: None,
            })
            .collect();
        let now = k8s_openapi::jiff::Timestamp::now();
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "stevedore.dev/launched-at".to_string(),
            now.as_second().to_string(),
        );
        Ok(Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(l),
                annotations: Some(annotations),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                provider_id: Some(format!("fake:///{}/{}", o.zone, name)),
                taints: (!taints.is_empty()).then_some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                capacity: Some(quantities(&it.capacity)),
                allocatable: Some(quantities(&it.allocatable)),
                conditions: Some(vec![ready_condition(&now)]),
                ..Default::default()
            }),
        })
    }

    fn instance(n: &Node) -> Option<Instance> {
        let l = n.metadata.labels.as_ref()?;
        let launched_at = n
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("stevedore.dev/launched-at"))
            .and_then(|s| s.parse::<f64>().ok())
            .or_else(|| {
                n.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second() as f64)
            })
            .unwrap_or(0.0);
        Some(Instance {
            provider_id: n.spec.as_ref()?.provider_id.clone()?,
            instance_type: l.get(labels::INSTANCE_TYPE)?.clone(),
            zone: l.get(labels::ZONE)?.clone(),
            capacity_type: l
                .get(labels::KARPENTER_CAPACITY_TYPE)
                .and_then(|c| CapacityType::parse(c))
                .unwrap_or(CapacityType::OnDemand),
            state: if n.metadata.deletion_timestamp.is_some() {
                InstanceState::ShuttingDown
            } else {
                InstanceState::Running
            },
            node_claim: l.get(tags::NODE_CLAIM).cloned(),
            node_pool: l.get(tags::NODE_POOL).cloned(),
            launched_at,
        })
    }

    /// Refreshes every fake node's Ready heartbeat and its Lease, once.
    pub async fn heartbeat(&self) -> Result<usize, CloudError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let list = nodes
            .list(&ListParams::default().labels(&self.selector()))
            .await
            .map_err(|e| api_error("list nodes", e))?;
        let now = k8s_openapi::jiff::Timestamp::now();
        let mut n = 0;
        for node in list.items {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            let status = serde_json::json!({"status": {"conditions": [ready_condition(&now)]}});
            if let Err(e) = nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(status))
                .await
            {
                tracing::warn!(node = %name, error = %e, "fake heartbeat failed");
                continue;
            }
            if let Err(e) = self.renew_node_lease(&leases, &name, &node, now).await {
                tracing::warn!(node = %name, error = %e, "fake node lease renewal failed");
                continue;
            }
            n += 1;
        }
        Ok(n)
    }

    async fn renew_node_lease(
        &self,
        leases: &Api<Lease>,
        name: &str,
        node: &Node,
        now: k8s_openapi::jiff::Timestamp,
    ) -> Result<(), kube::Error> {
        let spec = LeaseSpec {
            holder_identity: Some(name.to_string()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        };
        match leases.get_opt(name).await? {
            Some(mut lease) => {
                lease.spec = Some(spec);
                leases.replace(name, &PostParams::default(), &lease).await?;
            }
            None => {
                let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.to_string(),
                    uid: node.metadata.uid.clone().unwrap_or_default(),
                    ..Default::default()
                };
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        owner_references: Some(vec![owner]),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                leases.create(&PostParams::default(), &lease).await?;
            }
        }
        Ok(())
    }
}

impl CloudProvider for FakeCloud {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Instance, CloudError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = self.node_object(request)?;
        let created = match nodes.create(&PostParams::default(), &node).await {
            Ok(n) => n,
            // Launched before (a retry, or a restart mid-launch): the same node.
            Err(kube::Error::Api(s)) if s.code == 409 => nodes
                .get(&request.node_claim)
                .await
                .map_err(|e| api_error("get node", e))?,
            Err(e) => return Err(api_error("create node", e)),
        };
        Self::instance(&created).ok_or_else(|| CloudError::Other {
            operation: "launch".into(),
            message: "created node lacks provider ID or labels".into(),
        })
    }

    async fn terminate(&self, provider_id: &str) -> Result<(), CloudError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let name = super::instance_id(provider_id);
        match nodes.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(CloudError::NotFound {
                provider_id: provider_id.to_string(),
            }),
            Err(e) => Err(api_error("delete node", e)),
        }
    }

    async fn list(&self) -> Result<Vec<Instance>, CloudError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let list = nodes
            .list(&ListParams::default().labels(&self.selector()))
            .await
            .map_err(|e| api_error("list nodes", e))?;
        Ok(list.items.iter().filter_map(Self::instance).collect())
    }

    async fn offerings(&self) -> Result<OfferingUpdate, CloudError> {
        Ok(OfferingUpdate::default())
    }
}
