//! Well-known node label keys: Kubernetes', Karpenter's (so pods written for Karpenter
//! schedule unchanged) and stevedore's own equivalents.

use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

/// The node's zone (its `topology.kubernetes.io/zone` label), as a snapshot node carries it.
pub fn zone(labels: &Labels) -> Option<&str> {
    labels.get(ZONE).map(String::as_str)
}

pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const INSTANCE_TYPE_BETA: &str = "beta.kubernetes.io/instance-type";
pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const ZONE_BETA: &str = "failure-domain.beta.kubernetes.io/zone";
pub const REGION: &str = "topology.kubernetes.io/region";
pub const ARCH: &str = "kubernetes.io/arch";
pub const OS: &str = "kubernetes.io/os";
pub const HOSTNAME: &str = "kubernetes.io/hostname";

pub const KARPENTER_CAPACITY_TYPE: &str = "karpenter.sh/capacity-type";
pub const KARPENTER_NODEPOOL: &str = "karpenter.sh/nodepool";
pub const KARPENTER_AWS_PREFIX: &str = "karpenter.k8s.aws/";

pub const CAPACITY_TYPE: &str = "stevedore.dev/capacity-type";
pub const NODEPOOL: &str = "stevedore.dev/nodepool";
pub const STEVEDORE_PREFIX: &str = "stevedore.dev/";

/// Instance-type attribute labels, written under both `karpenter.k8s.aws/` and
/// `stevedore.dev/` prefixes.
pub const INSTANCE_ATTRIBUTES: &[&str] = &[
    "instance-family",
    "instance-category",
    "instance-generation",
    "instance-size",
    "instance-cpu",
    "instance-memory",
    "instance-gpu-name",
    "instance-gpu-count",
    "instance-gpu-manufacturer",
    "instance-hypervisor",
    "instance-cpu-manufacturer",
];

/// Keys whose value differs per zone/capacity type rather than per instance type; the
/// scheduler narrows them separately.
pub fn is_zone_key(key: &str) -> bool {
    key == ZONE || key == ZONE_BETA
}

pub fn is_capacity_type_key(key: &str) -> bool {
    key == KARPENTER_CAPACITY_TYPE || key == CAPACITY_TYPE
}

pub fn is_nodepool_key(key: &str) -> bool {
    key == KARPENTER_NODEPOOL || key == NODEPOOL
}

pub fn is_hostname_key(key: &str) -> bool {
    key == HOSTNAME
}
