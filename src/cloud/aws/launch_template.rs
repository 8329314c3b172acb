//! One launch template per (node pool, architecture): image, node role, security groups,
//! root volume, IMDSv2, and user data that joins the node to the EKS cluster with the
//! pool's labels and taints (nodeadm `NodeConfig`, AL2023).
//!
//! The template's name ends with a hash of its contents, so a changed pool or setting
//! yields a new template instead of mutating one that running launches depend on.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    Filter, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData, ResourceType, Tag,
    TagSpecification, VolumeType,
};

use super::errors;
use super::ops;
use super::text::{base64, fnv1a};
use crate::cloud::{tags, CloudError};
use crate::config::{AmiSelector, AwsSettings};
use crate::core::taints::{Taint, TaintEffect};

/// Everything a template depends on; equal specs give the same template name.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateSpec {
    pub cluster: String,
    pub pool: String,
    /// `amd64` or `arm64` (the Kubernetes arch label).
    pub arch: String,
    pub image_id: String,
    pub instance_profile: Option<String>,
    pub security_groups: Vec<String>,
    /// Plain-text user data (base64-encoded when sent).
    pub user_data: String,
    pub root_volume_gib: i32,
    pub root_volume_type: String,
}

impl TemplateSpec {
    /// `stevedore-<cluster>-<pool>-<arch>-<hash>`: unique per contents, at most 128
    /// characters as EC2 requires.
    pub fn name(&self) -> String {
        let digest = fnv1a(format!("{self:?}").as_bytes());
        let prefix: String = format!("stevedore-{}-{}-{}", self.cluster, self.pool, self.arch)
            .chars()
            .take(110)
            .collect();
        format!("{prefix}-{digest:016x}")
    }
}

/// The image for an architecture: a fixed ID, or an SSM parameter EC2 resolves at launch
/// (`resolve:ssm:`), so no SSM client is needed and the latest EKS AMI is picked up.
pub fn image_id(ami: &AmiSelector, arch: &str) -> String {
    match ami {
        AmiSelector::Id(id) => id.clone(),
        AmiSelector::Ssm(param) => format!("resolve:ssm:{param}"),
        AmiSelector::Al2023 { kubernetes_version } => {
            let machine = if arch == "arm64" { "arm64" } else { "x86_64" };
            format!(
                "resolve:ssm:/aws/service/eks/optimized-ami/{kubernetes_version}/amazon-linux-2023/{machine}/standard/recommended/image_id"
            )
        }
    }
}

/// Labels the kubelet may set on itself. It refuses to start with labels under
/// `kubernetes.io`/`k8s.io` other than a few; per-instance labels (zone, type, capacity
/// type, arch) are set by the cloud provider or the controller, not baked into a
/// per-pool template.
pub fn kubelet_labels(labels: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    labels
        .iter()
        .filter(|(k, _)| kubelet_may_set(k) && !per_instance(k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn kubelet_may_set(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return true;
    };
    let restricted = |domain: &str| prefix == domain || prefix.ends_with(&format!(".{domain}"));
    if !restricted("kubernetes.io") && !restricted("k8s.io") {
        return true;
    }
    prefix == "node.kubernetes.io" || prefix == "node-restriction.kubernetes.io"
}

fn per_instance(key: &str) -> bool {
    use crate::core::labels as l;
    let fixed = [
        l::INSTANCE_TYPE,
        l::CAPACITY_TYPE,
        l::KARPENTER_CAPACITY_TYPE,
        l::HOSTNAME,
    ];
    fixed.contains(&key)
        || key.starts_with(l::KARPENTER_AWS_PREFIX)
        || l::INSTANCE_ATTRIBUTES
            .iter()
            .any(|a| key == format!("{}{a}", l::STEVEDORE_PREFIX))
}

fn effect(e: TaintEffect) -> &'static str {
    match e {
        TaintEffect::NoSchedule => "NoSchedule",
        TaintEffect::PreferNoSchedule => "PreferNoSchedule",
        TaintEffect::NoExecute => "NoExecute",
    }
}

/// A YAML double-quoted scalar (JSON strings are valid YAML).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The MIME multi-part user data holding nodeadm's `NodeConfig`: cluster connection,
/// kubelet labels, taints (startup taints included) and max pods.
pub fn user_data(
    settings: &AwsSettings,
    labels: &BTreeMap<String, String>,
    taints: &[Taint],
    max_pods: Option<u32>,
) -> String {
    let mut flags = Vec::new();
    let node_labels: Vec<String> = kubelet_labels(labels)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !node_labels.is_empty() {
        flags.push(format!("--node-labels={}", node_labels.join(",")));
    }
    let taint_list: Vec<String> = taints
        .iter()
        .map(|t| format!("{}={}:{}", t.key, t.value, effect(t.effect)))
        .collect();
    if !taint_list.is_empty() {
        flags.push(format!("--register-with-taints={}", taint_list.join(",")));
    }
    let mut doc = String::from(
        "---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n",
    );
    doc += &format!("    name: {}\n", quoted(&settings.cluster_name));
    let opt = |v: &Option<String>| quoted(v.as_deref().unwrap_or(""));
    doc += &format!(
        "    apiServerEndpoint: {}\n",
        opt(&settings.cluster_endpoint)
    );
    doc += &format!(
        "    certificateAuthority: {}\n",
        opt(&settings.cluster_certificate_authority)
    );
    doc += &format!("    cidr: {}\n", opt(&settings.cluster_cidr));
    doc += "  kubelet:\n    config:\n";
    doc += &match max_pods {
        Some(n) => format!("      maxPods: {n}\n"),
        None => "      {}\n".to_string(),
    };
    doc += "    flags:\n";
    for f in &flags {
        doc += &format!("      - {}\n", quoted(f));
    }
    if flags.is_empty() {
        doc += "      []\n";
    }
    format!(
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"//\"\n\n--//\nContent-Type: application/node.eks.aws\n\n{doc}\n--//--\n"
    )
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// Tags every resource of a pool carries (the NodeClaim tag is added per launch).
pub fn pool_tags(cluster: &str, pool: &str) -> Vec<Tag> {
    vec![
        tag(tags::CLUSTER, cluster),
        tag(tags::NODE_POOL, pool),
        tag(&format!("kubernetes.io/cluster/{cluster}"), "owned"),
    ]
}

fn template_data(spec: &TemplateSpec) -> RequestLaunchTemplateData {
    let metadata = LaunchTemplateInstanceMetadataOptionsRequest::builder()
        .http_tokens(LaunchTemplateHttpTokensState::Required)
        .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
        // One hop: pods on the node network cannot reach the node role's credentials.
        .http_put_response_hop_limit(1)
        .build();
    let root = LaunchTemplateBlockDeviceMappingRequest::builder()
        .device_name("/dev/xvda")
        .ebs(
            LaunchTemplateEbsBlockDeviceRequest::builder()
                .volume_size(spec.root_volume_gib)
                .volume_type(VolumeType::from(spec.root_volume_type.as_str()))
                .encrypted(true)
                .delete_on_termination(true)
                .build(),
        )
        .build();
    let mut data = RequestLaunchTemplateData::builder()
        .image_id(&spec.image_id)
        .set_security_group_ids(Some(spec.security_groups.clone()))
        .user_data(base64(spec.user_data.as_bytes()))
        .metadata_options(metadata)
        .block_device_mappings(root);
    if let Some(profile) = &spec.instance_profile {
        data = data.iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .name(profile)
                .build(),
        );
    }
    for rt in [ResourceType::Instance, ResourceType::Volume] {
        data = data.tag_specifications(
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(rt)
                .set_tags(Some(pool_tags(&spec.cluster, &spec.pool)))
                .build(),
        );
    }
    data.build()
}

/// The template's ID, creating it when no template of that name exists.
pub async fn ensure(ec2: &aws_sdk_ec2::Client, spec: &TemplateSpec) -> Result<String, CloudError> {
    let name = spec.name();
    if let Some(id) = find(ec2, &name).await? {
        return Ok(id);
    }
    let created = ec2
        .create_launch_template()
        .launch_template_name(&name)
        .launch_template_data(template_data(spec))
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::LaunchTemplate)
                .set_tags(Some(pool_tags(&spec.cluster, &spec.pool)))
                .build(),
        )
        .send()
        .await;
    match created {
        Ok(out) => out
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .map(str::to_string)
            .ok_or_else(|| CloudError::Other {
                operation: ops::CREATE_LAUNCH_TEMPLATE.into(),
                message: "response has no launch template ID".into(),
            }),
        // Another replica (or an earlier, interrupted call) created it first.
        Err(e)
            if errors::code_of(&e) == Some("InvalidLaunchTemplateName.AlreadyExistsException") =>
        {
            find(ec2, &name).await?.ok_or_else(|| CloudError::Other {
                operation: ops::DESCRIBE_LAUNCH_TEMPLATES.into(),
                message: format!("launch template {name} exists but cannot be described"),
            })
        }
        Err(e) => Err(errors::map(ops::CREATE_LAUNCH_TEMPLATE, e)),
    }
}

async fn find(ec2: &aws_sdk_ec2::Client, name: &str) -> Result<Option<String>, CloudError> {
    let out = ec2
        .describe_launch_templates()
        .filters(
            Filter::builder()
                .name("launch-template-name")
                .values(name)
                .build(),
        )
        .send()
        .await
        .map_err(|e| errors::map(ops::DESCRIBE_LAUNCH_TEMPLATES, e))?;
    Ok(out
        .launch_templates()
        .iter()
        .find_map(|t| t.launch_template_id().map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AwsSettings {
        let mut s = AwsSettings::new("prod");
        s.cluster_endpoint = Some("https://ABC.gr7.us-east-1.eks.amazonaws.com".into());
        s.cluster_certificate_authority = Some("Q0E=".into());
        s.cluster_cidr = Some("10.100.0.0/16".into());
        s
    }

    #[test]
    fn user_data_carries_cluster_labels_taints_and_max_pods() {
        let labels = BTreeMap::from([
            ("team".to_string(), "web".to_string()),
            ("node.kubernetes.io/role".to_string(), "app".to_string()),
            ("kubernetes.io/secret".to_string(), "x".to_string()),
            (
                "topology.kubernetes.io/zone".to_string(),
                "us-east-1a".to_string(),
            ),
            ("karpenter.sh/capacity-type".to_string(), "spot".to_string()),
        ]);
        let taints = vec![Taint {
            key: "dedicated".into(),
            value: "web".into(),
            effect: TaintEffect::NoSchedule,
        }];
        let ud = user_data(&settings(), &labels, &taints, Some(58));
        assert!(ud.contains("Content-Type: application/node.eks.aws"));
        assert!(ud.contains("kind: NodeConfig"));
        assert!(ud.contains("name: \"prod\""));
        assert!(ud.contains("apiServerEndpoint: \"https://ABC.gr7.us-east-1.eks.amazonaws.com\""));
        assert!(ud.contains("cidr: \"10.100.0.0/16\""));
        assert!(ud.contains("maxPods: 58"));
        assert!(
            ud.contains("--node-labels=node.kubernetes.io/role=app,team=web\""),
            "{ud}"
        );
        assert!(ud.contains("--register-with-taints=dedicated=web:NoSchedule"));
        assert!(!ud.contains("kubernetes.io/secret"));
        assert!(!ud.contains("capacity-type"));
        assert!(ud.ends_with("--//--\n"));
    }

    #[test]
    fn al2023_alias_resolves_per_architecture() {
        let ami = AmiSelector::Al2023 {
            kubernetes_version: "1.33".into(),
        };
        assert!(image_id(&ami, "arm64").contains("/1.33/amazon-linux-2023/arm64/"));
        assert!(image_id(&ami, "amd64").contains("/amazon-linux-2023/x86_64/"));
        assert!(image_id(&ami, "amd64").starts_with("resolve:ssm:/aws/service/eks/"));
        assert_eq!(image_id(&AmiSelector::Id("ami-1".into()), "arm64"), "ami-1");
    }

    #[test]
    fn template_name_changes_with_contents_and_fits_ec2_limits() {
        let spec = TemplateSpec {
            cluster: "prod".into(),
            pool: "general".into(),
            arch: "amd64".into(),
            image_id: "ami-1".into(),
            instance_profile: None,
            security_groups: vec!["sg-1".into()],
            user_data: "x".into(),
            root_volume_gib: 20,
            root_volume_type: "gp3".into(),
        };
        let mut other = spec.clone();
        other.root_volume_gib = 40;
        assert!(spec.name().starts_with("stevedore-prod-general-amd64-"));
        assert_ne!(spec.name(), other.name());
        assert_eq!(spec.name(), spec.clone().name());
        let mut long = spec.clone();
        long.pool = "p".repeat(200);
        assert!(long.name().len() <= 128);
    }
}
