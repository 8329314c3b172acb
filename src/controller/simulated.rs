//! Providers without a cloud behind them for runs against a real API server: the fake
//! provider's nodes kept alive, and simulated instances and groups whose instances
//! become Node objects.

use crate::cloud::{Instance, LaunchRequest};
use crate::core::instance::Catalog;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use std::sync::Arc;
use std::time::Duration;

/// How long one node create or heartbeat round may take before it is given up (the next
/// heartbeat comes anyway; a node never created shows as a registration timeout).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates `node` (with `provider_id` set) in the background, bounded by
/// [`CALL_TIMEOUT`]: a launch hook must not wait on the API server.
fn spawn_node_create(
    handle: &tokio::runtime::Handle,
    client: &kube::Client,
    mut node: Node,
    provider_id: &str,
    what: &'static str,
) {
    if let Some(spec) = node.spec.as_mut() {
        spec.provider_id = Some(provider_id.to_string());
    }
    let nodes: Api<Node> = Api::all(client.clone());
    handle.spawn(async move {
        let pp = PostParams::default();
        let create = nodes.create(&pp, &node);
        match tokio::time::timeout(CALL_TIMEOUT, create).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "{what}'s node not created"),
            Err(_) => tracing::warn!(after = ?CALL_TIMEOUT, "{what}'s node create: no answer"),
        }
    });
}

/// Keeps the fake provider's nodes Ready (heartbeats and node Leases every 10 s).
pub async fn keep_fake_nodes_alive(fake: Arc<crate::cloud::fake::FakeCloud>) {
    let mut ticker = tokio::time::interval(crate::cloud::fake::HEARTBEAT_EVERY);
    loop {
        ticker.tick().await;
        match tokio::time::timeout(CALL_TIMEOUT, fake.heartbeat()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "fake node heartbeat failed"),
            Err(_) => tracing::warn!(after = ?CALL_TIMEOUT, "fake node heartbeat: no answer"),
        }
    }
}

/// A simulated cloud whose instances become Node objects (built as the fake provider
/// builds them), for `run --provider simulated` against a real API server.
pub fn simulated_with_nodes(
    client: kube::Client,
    catalog: Arc<Catalog>,
    cluster: &str,
) -> (
    crate::cloud::simulated::SimulatedCloud,
    Arc<crate::cloud::fake::FakeCloud>,
) {
    let builder = Arc::new(crate::cloud::fake::FakeCloud::new(
        client.clone(),
        catalog.clone(),
        cluster,
    ));
    let b = builder.clone();
    let handle = tokio::runtime::Handle::current();
    let hook: crate::cloud::simulated::LaunchHook =
        Box::new(move |inst: &Instance, req: &LaunchRequest| {
            let mut req = req.clone();
            // The node is built from its first option: put the one the cloud chose first.
            req.options.retain(|o| {
                o.instance_type == inst.instance_type
                    && o.zone == inst.zone
                    && o.capacity_type == inst.capacity_type
            });
            let Ok(node) = b.node_object(&req) else {
                return;
            };
            spawn_node_create(
                &handle,
                &client,
                node,
                &inst.provider_id,
                "simulated instance",
            );
        });
    (
        crate::cloud::simulated::SimulatedCloud::new(catalog).with_hook(hook),
        builder,
    )
}

/// The settings' node groups, simulated, whose new instances become Node objects (built
/// as the fake provider builds them), for `run --mode node-groups --provider simulated`.
pub fn simulated_groups_with_nodes(
    client: kube::Client,
    groups: &[crate::config::NodeGroup],
    builder: Arc<crate::cloud::fake::FakeCloud>,
) -> crate::cloud::simulated::SimulatedGroups {
    let handle = tokio::runtime::Handle::current();
    let hook: crate::cloud::simulated::GroupHook =
        Box::new(move |group: &crate::cloud::NodeGroup, provider_id: &str| {
            // The zone is in the provider ID (`simulated:///<zone>/i-...`).
            let zone = provider_id.trim_start_matches("simulated:///");
            let zone = zone.split('/').next().unwrap_or_default();
            let request = LaunchRequest {
                node_claim: crate::cloud::instance_id(provider_id).to_string(),
                node_pool: group.name.clone(),
                options: vec![crate::cloud::Offering {
                    instance_type: group.instance_type.clone(),
                    zone: zone.to_string(),
                    capacity_type: group.capacity_type,
                    price_per_hour: 0.0,
                }],
                labels: group.labels.clone(),
                taints: group.taints.clone(),
                startup_taints: Vec::new(),
            };
            let Ok(node) = builder.node_object(&request) else {
                return;
            };
            spawn_node_create(
                &handle,
                &client,
                node,
                provider_id,
                "simulated group instance",
            );
        });
    let groups = crate::cloud::simulated::SimulatedGroups::from_settings(groups).with_hook(hook);
    groups.fill_to_min();
    groups
}
