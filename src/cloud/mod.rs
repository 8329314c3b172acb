//! The cloud seam: what the controller asks of a cloud, and nothing more.
//!
//! Two small traits, one per provisioning mode, so that each backend implements only what
//! its API really does:
//! - [`CloudProvider`]: launch one node from a list of offerings (EC2 `CreateFleet`, the
//!   simulated cloud, the `fake` provider that creates Node objects), terminate it, list
//!   what we launched, refresh offerings (prices, availability).
//! - [`NodeGroupProvider`]: fixed groups scaled by count (EC2 Auto Scaling groups, as the
//!   Cluster Autoscaler drives them).
//!
//! The traits use `impl Future` returns rather than boxed futures: the controller is
//! generic over its provider, so nothing here needs an async runtime or a trait object,
//! and the decision core stays free of both.

#[cfg(feature = "aws")]
pub mod aws;

use std::collections::BTreeMap;
use std::future::Future;

#[cfg(feature = "controller")]
pub mod fake;
#[cfg(feature = "controller")]
pub mod simulated;

use crate::core::instance::CapacityType;
use crate::core::taints::Taint;

/// Tag (or label) keys every provider puts on what it launches, so that state can be
/// rebuilt after a restart and orphans found.
pub mod tags {
    /// The cluster the instance belongs to (value: cluster name).
    pub const CLUSTER: &str = "stevedore.dev/cluster";
    /// The NodePool the instance was launched for.
    pub const NODE_POOL: &str = "stevedore.dev/nodepool";
    /// The NodeClaim the instance was launched for (one claim, one instance).
    pub const NODE_CLAIM: &str = "stevedore.dev/nodeclaim";
}

/// One offering a launch may use: an instance type in a zone at a capacity type.
#[derive(Clone, Debug, PartialEq)]
pub struct Offering {
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    /// The price the decision was made with, USD per hour.
    pub price_per_hour: f64,
}

/// Launch one node for one NodeClaim. Options come cheapest first, as the decision core
/// orders them; the provider may pick any of them (EC2 picks by its allocation strategy).
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchRequest {
    /// The NodeClaim name. Providers derive their idempotency token from it, so a retried
    /// or repeated launch of the same claim never creates a second instance.
    pub node_claim: String,
    pub node_pool: String,
    pub options: Vec<Offering>,
    /// Labels and taints the node must register with (the pool's, plus well-known ones).
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Taints the node starts with and drops once its agents are ready.
    pub startup_taints: Vec<Taint>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
}

/// An instance the provider launched (or found by its tags).
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// Kubernetes `spec.providerID` of the node it becomes, e.g.
    /// `aws:///us-east-1a/i-0123456789abcdef0`.
    pub provider_id: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    pub state: InstanceState,
    /// From the instance's tags; `None` for instances not launched for a claim.
    pub node_claim: Option<String>,
    pub node_pool: Option<String>,
    /// Launch time, seconds since the Unix epoch.
    pub launched_at: f64,
}

/// What a provider learned about offerings: current Spot prices, offerings it cannot
/// serve. The controller merges these into the catalog it hands the decision core.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OfferingUpdate {
    pub prices: Vec<Offering>,
    /// Offerings that exist in the catalog but not here (type not offered in a zone, or
    /// no subnet in a zone).
    pub unavailable: Vec<(String, String, CapacityType)>,
}

/// Errors mapped to what the decision core understands.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// No option had capacity. The listed offerings are marked unavailable for the TTL
    /// and the pods are decided again with the rest.
    #[error("insufficient capacity for {} offering(s): {}", .offerings.len(), describe(.offerings))]
    InsufficientCapacity { offerings: Vec<Offering> },
    /// A service quota (vCPU limit, instance count) stops the launch.
    #[error("quota exceeded: {message}")]
    QuotaExceeded { message: String },
    /// The credentials lack an IAM permission; `action` names it (e.g.
    /// `ec2:CreateFleet`) so the operator knows what to grant.
    #[error("not authorized to call {action}: {message}")]
    Unauthorized { action: String, message: String },
    /// The API throttled us past the retry budget; try again next scan.
    #[error("throttled calling {operation}")]
    Throttled { operation: String },
    /// The instance is already gone (termination is then a success for the caller).
    #[error("instance {provider_id} not found")]
    NotFound { provider_id: String },
    /// The request was malformed or referred to something missing (bad AMI, subnet...).
    #[error("{operation} rejected: {message}")]
    Invalid { operation: String, message: String },
    #[error("{operation} failed: {message}")]
    Other { operation: String, message: String },
    /// The call gave no answer in time (the controller bounds every cloud call).
    #[error("{operation}: no answer within {after:?}")]
    Timeout {
        operation: String,
        after: std::time::Duration,
    },
}

fn describe(offerings: &[Offering]) -> String {
    let names: Vec<String> = offerings
        .iter()
        .take(5)
        .map(|o| {
            format!(
                "{} {} {}",
                o.instance_type,
                o.capacity_type.as_str(),
                o.zone
            )
        })
        .collect();
    let more = offerings.len().saturating_sub(names.len());
    if more > 0 {
        format!("{} and {more} more", names.join(", "))
    } else {
        names.join(", ")
    }
}

/// A cloud that launches one instance per NodeClaim from a list of offerings.
pub trait CloudProvider: Send + Sync {
    /// Short name for logs and metrics (`aws`, `fake`, `simulated`).
    fn name(&self) -> &'static str;

    /// Launches one instance for `request.node_claim`, or returns the instance already
    /// launched for it (idempotent).
    fn launch(
        &self,
        request: &LaunchRequest,
    ) -> impl Future<Output = Result<Instance, CloudError>> + Send;

    /// Terminates the instance behind `provider_id`. `NotFound` means already gone.
    fn terminate(&self, provider_id: &str) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Every live instance this cluster's stevedore launched (found by tags), so state can
    /// be rebuilt after a restart and orphans (no NodeClaim) garbage-collected.
    fn list(&self) -> impl Future<Output = Result<Vec<Instance>, CloudError>> + Send;

    /// Current prices and offerings this provider cannot serve.
    fn offerings(&self) -> impl Future<Output = Result<OfferingUpdate, CloudError>> + Send;

    /// Offerings that ran out of capacity during launches that still succeeded (EC2
    /// Fleet fell back from Spot to on-demand), drained on read. A successful launch
    /// hides them from the caller, yet they are as short as any failed launch's: the
    /// controller marks them unavailable for the TTL. Providers that try one offering
    /// per launch have none.
    fn take_capacity_failures(&self) -> Vec<Offering> {
        Vec::new()
    }
}

/// One fixed node group (an Auto Scaling group) as the provider reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeGroup {
    pub name: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired: u32,
    /// The instance type new nodes get (the first of a mixed-instances policy).
    pub instance_type: String,
    pub capacity_type: CapacityType,
    pub zones: Vec<String>,
    /// Labels and taints of its nodes (from `k8s.io/cluster-autoscaler/node-template/...`
    /// tags), so the group can be scaled from zero.
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Provider IDs of its current instances.
    pub instances: Vec<String>,
}

impl NodeGroup {
    /// What the group launches: its instance type in each of its zones (marked
    /// unavailable together when the group is refused or backed off).
    pub fn offerings(&self) -> Vec<Offering> {
        self.zones
            .iter()
            .map(|z| Offering {
                instance_type: self.instance_type.clone(),
                zone: z.clone(),
                capacity_type: self.capacity_type,
                price_per_hour: 0.0,
            })
            .collect()
    }
}

/// Fixed groups scaled by count, as the Cluster Autoscaler drives them.
pub trait NodeGroupProvider: Send + Sync {
    fn name(&self) -> &'static str;

    /// The groups this cluster's autoscaler may scale.
    fn groups(&self) -> impl Future<Output = Result<Vec<NodeGroup>, CloudError>> + Send;

    /// Sets a group's desired size (scale up, or down without choosing the node).
    fn set_desired(
        &self,
        group: &str,
        desired: u32,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Removes one chosen instance from its group and lowers the desired size by one.
    fn terminate_instance(
        &self,
        provider_id: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Is the group backed off after failed launches (as of the last `groups()`)? Its
    /// missing nodes are then not counted on, and other groups are asked instead.
    fn backed_off(&self, _group: &str) -> bool {
        false
    }
}

/// Why the cloud is taking a node away, from the provider's interruption feed (EC2: the
/// EventBridge rules delivered to an SQS queue).
#[derive(Clone, Debug, PartialEq)]
pub enum InterruptionKind {
    /// Two-minute Spot interruption warning.
    SpotInterruption,
    /// Spot rebalance recommendation (elevated risk; optional to act on).
    RebalanceRecommendation,
    /// A scheduled maintenance event will stop or retire the instance.
    ScheduledChange,
    /// The instance is stopping or terminated outside our control.
    StateChange { state: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Interruption {
    pub provider_id: String,
    pub kind: InterruptionKind,
    /// Seconds since the Unix epoch when the event was raised.
    pub at: f64,
}

/// A feed of interruption notices.
pub trait InterruptionSource: Send + Sync {
    /// Waits briefly for the next batch of notices and acknowledges them.
    fn poll(&self) -> impl Future<Output = Result<Vec<Interruption>, CloudError>> + Send;
}

/// Builds the Kubernetes provider ID the AWS cloud provider gives a node.
pub fn aws_provider_id(zone: &str, instance_id: &str) -> String {
    format!("aws:///{zone}/{instance_id}")
}

/// The instance ID at the end of a provider ID (`aws:///us-east-1a/i-0abc` -> `i-0abc`).
pub fn instance_id(provider_id: &str) -> &str {
    provider_id.rsplit('/').next().unwrap_or(provider_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_id_round_trips_the_instance_id() {
        let id = aws_provider_id("us-east-1a", "i-0123456789abcdef0");
        assert_eq!(id, "aws:///us-east-1a/i-0123456789abcdef0");
        assert_eq!(instance_id(&id), "i-0123456789abcdef0");
        assert_eq!(instance_id("i-plain"), "i-plain");
    }

    #[test]
    fn insufficient_capacity_names_the_offerings() {
        let o = |t: &str| Offering {
            instance_type: t.into(),
            zone: "us-east-1a".into(),
            capacity_type: CapacityType::Spot,
            price_per_hour: 0.1,
        };
        let err = CloudError::InsufficientCapacity {
            offerings: (0..7).map(|i| o(&format!("m5.{i}xlarge"))).collect(),
        };
        let text = err.to_string();
        assert!(text.starts_with("insufficient capacity for 7 offering(s): m5.0xlarge spot"));
        assert!(text.ends_with("and 2 more"), "{text}");
    }
}
