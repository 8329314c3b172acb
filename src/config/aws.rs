//! `Settings.aws`: how the AWS provider finds and launches into the cluster's account.
//! Parsed with the same line-numbered errors as the rest of the settings.

use super::walk::{self, join, Ctx};
use super::yaml::Node;
use std::collections::BTreeMap;
use std::time::Duration;

const GI: i64 = 1 << 30;

/// The AWS provider's settings (the `aws:` block of `kind: Settings`).
#[derive(Clone, Debug, PartialEq)]
pub struct AwsSettings {
    /// The EKS cluster name: instances are tagged with it and it scopes discovery.
    pub cluster_name: String,
    /// API server endpoint, CA bundle (base64) and service CIDR for nodeadm's NodeConfig.
    /// Needed for fleet launches only; node groups bring their own user data.
    pub cluster_endpoint: Option<String>,
    pub cluster_certificate_authority: Option<String>,
    pub cluster_cidr: Option<String>,
    /// Subnets whose tags match all of these (`*` = any value). Default:
    /// `kubernetes.io/cluster/<cluster>: "*"`.
    pub subnet_selector: BTreeMap<String, String>,
    /// Security groups whose tags match all of these. Default as for subnets.
    pub security_group_selector: BTreeMap<String, String>,
    pub ami: AmiSelector,
    /// IAM instance profile name the nodes run with.
    pub instance_profile: Option<String>,
    pub root_volume: RootVolume,
    /// SQS queue fed by the EventBridge interruption rules; `None` disables the feed.
    pub interruption_queue: Option<String>,
    /// How often Spot prices are fetched again.
    pub spot_price_refresh: Duration,
    /// Auto Scaling groups to drive by name; empty = discover them by their
    /// `k8s.io/cluster-autoscaler/...` tags.
    pub auto_scaling_groups: Vec<String>,
    /// Attempts per API call (adaptive retry) before a throttled call gives up.
    pub api_max_attempts: u32,
    /// The kubelet's max pods on fleet nodes; `None` = nodeadm's ENI-based default.
    pub max_pods: Option<u32>,
}

/// Where the node image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmiSelector {
    /// A fixed image ID (`ami-...`): used for every architecture.
    Id(String),
    /// The EKS-optimized AL2023 image of this Kubernetes version, resolved by EC2 at
    /// launch from its public SSM parameter (`al2023@1.33`).
    Al2023 { kubernetes_version: String },
    /// Any SSM parameter holding an image ID (`ssm:/my/param`), resolved by EC2 at launch.
    Ssm(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootVolume {
    /// Bytes (rounded up to whole GiB when sent).
    pub size: i64,
    pub volume_type: String,
}

const VOLUME_TYPES: &[&str] = &["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"];

impl AwsSettings {
    /// Defaults for a cluster: selectors on the standard cluster tag.
    pub fn new(cluster_name: &str) -> Self {
        let selector = BTreeMap::from([(
            format!("kubernetes.io/cluster/{cluster_name}"),
            "*".to_string(),
        )]);
        AwsSettings {
            cluster_name: cluster_name.to_string(),
            cluster_endpoint: None,
            cluster_certificate_authority: None,
            cluster_cidr: None,
            subnet_selector: selector.clone(),
            security_group_selector: selector,
            ami: AmiSelector::Al2023 {
                kubernetes_version: "1.33".into(),
            },
            instance_profile: None,
            root_volume: RootVolume {
                size: 20 * GI,
                volume_type: "gp3".into(),
            },
            interruption_queue: None,
            spot_price_refresh: Duration::from_secs(600),
            auto_scaling_groups: Vec::new(),
            api_max_attempts: 5,
            max_pods: None,
        }
    }
}

impl AwsSettings {
    /// Fields fleet launches need (they go into the node's user data and launch
    /// template) that are not set. Node-group mode needs none of them.
    pub fn missing_for_fleet(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (name, v) in [
            ("clusterEndpoint", &self.cluster_endpoint),
            (
                "clusterCertificateAuthority",
                &self.cluster_certificate_authority,
            ),
            ("clusterCIDR", &self.cluster_cidr),
            ("instanceProfile", &self.instance_profile),
        ] {
            if v.is_none() {
                out.push(name);
            }
        }
        out
    }
}

const FIELDS: &[&str] = &[
    "clusterName",
    "clusterEndpoint",
    "clusterCertificateAuthority",
    "clusterCIDR",
    "subnetSelector",
    "securityGroupSelector",
    "ami",
    "instanceProfile",
    "rootVolume",
    "interruptionQueue",
    "spotPriceRefresh",
    "autoScalingGroups",
    "apiMaxAttempts",
    "maxPods",
];

/// Parses the `aws:` block; `None` when it is unusable (errors are in `ctx`).
pub fn parse(ctx: &mut Ctx, node: &Node) -> Option<AwsSettings> {
    let p = "aws";
    let f = walk::fields(ctx, node, p, FIELDS)?;
    let name_node = f.required(ctx, p, "clusterName")?;
    let name = walk::string(ctx, name_node, &join(p, "clusterName"))?;
    if !is_cluster_name(&name) {
        ctx.err(
            name_node.line,
            &join(p, "clusterName"),
            format!("invalid cluster name {name:?}: 1-100 of letters, digits, - and _, starting with a letter or digit"),
        );
    }
    let mut s = AwsSettings::new(&name);
    let text = |ctx: &mut Ctx, key: &str| {
        f.get(key)
            .and_then(|n| walk::string(ctx, n, &join(p, key)))
            .filter(|v| !v.is_empty())
    };
    s.cluster_endpoint = text(ctx, "clusterEndpoint");
    s.cluster_certificate_authority = text(ctx, "clusterCertificateAuthority");
    s.cluster_cidr = text(ctx, "clusterCIDR");
    s.instance_profile = text(ctx, "instanceProfile");
    s.interruption_queue = text(ctx, "interruptionQueue");
    check_endpoint(ctx, &f, &s);
    check_cidr(ctx, &f, &s);
    check_queue(ctx, &f, &s);
    for (key, slot) in [
        ("subnetSelector", &mut s.subnet_selector),
        ("securityGroupSelector", &mut s.security_group_selector),
    ] {
        if let Some(n) = f.get(key) {
            *slot = selector(ctx, n, &join(p, key));
        }
    }
    if let Some(n) = f.get("ami") {
        if let Some(a) = walk::string(ctx, n, "aws.ami").and_then(|t| ami(ctx, n.line, &t)) {
            s.ami = a;
        }
    }
    if let Some(n) = f.get("rootVolume") {
        s.root_volume = root_volume(ctx, n, s.root_volume.clone());
    }
    if let Some(n) = f.get("spotPriceRefresh") {
        match walk::duration(ctx, n, "aws.spotPriceRefresh") {
            Some(d) if d < Duration::from_secs(60) => ctx.err(
                n.line,
                "aws.spotPriceRefresh",
                "must be at least 1m (Spot prices change at most every few minutes)",
            ),
            Some(d) => s.spot_price_refresh = d,
            None => {}
        }
    }
    if let Some(n) = f.get("autoScalingGroups") {
        s.auto_scaling_groups = walk::strings(ctx, n, "aws.autoScalingGroups");
    }
    if let Some(n) = f.get("apiMaxAttempts") {
        if let Some(v) = walk::int_in(ctx, n, "aws.apiMaxAttempts", 1, 10) {
            s.api_max_attempts = v as u32;
        }
    }
    if let Some(n) = f.get("maxPods") {
        if let Some(v) = walk::int_in(ctx, n, "aws.maxPods", 1, 1000) {
            s.max_pods = Some(v as u32);
        }
    }
    Some(s)
}

/// EKS cluster names: 1-100 characters, `[0-9A-Za-z][A-Za-z0-9_-]*`.
fn is_cluster_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_endpoint(ctx: &mut Ctx, f: &walk::Fields, s: &AwsSettings) {
    if let Some(e) = &s.cluster_endpoint {
        if !e.starts_with("https://") {
            let line = f.get("clusterEndpoint").map_or(f.line, |n| n.line);
            ctx.err(
                line,
                "aws.clusterEndpoint",
                format!("{e:?} must be an https:// URL"),
            );
        }
    }
}

fn check_cidr(ctx: &mut Ctx, f: &walk::Fields, s: &AwsSettings) {
    if let Some(c) = &s.cluster_cidr {
        let ok = c.split_once('/').is_some_and(|(ip, bits)| {
            let v4 = ip.parse::<std::net::Ipv4Addr>().is_ok()
                && bits.parse::<u8>().is_ok_and(|b| b <= 32);
            let v6 = ip.parse::<std::net::Ipv6Addr>().is_ok()
                && bits.parse::<u8>().is_ok_and(|b| b <= 128);
            v4 || v6
        });
        if !ok {
            let line = f.get("clusterCIDR").map_or(f.line, |n| n.line);
            ctx.err(
                line,
                "aws.clusterCIDR",
                format!("{c:?} is not a CIDR (e.g. 10.100.0.0/16)"),
            );
        }
    }
}

/// SQS queue names: 1-80 of letters, digits, `-` and `_` (`.fifo` suffix allowed).
fn check_queue(ctx: &mut Ctx, f: &walk::Fields, s: &AwsSettings) {
    if let Some(q) = &s.interruption_queue {
        let base = q.strip_suffix(".fifo").unwrap_or(q);
        let ok = q.len() <= 80
            && !base.is_empty()
            && base
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            let line = f.get("interruptionQueue").map_or(f.line, |n| n.line);
            ctx.err(
                line,
                "aws.interruptionQueue",
                format!("invalid SQS queue name {q:?}"),
            );
        }
    }
}

fn selector(ctx: &mut Ctx, node: &Node, path: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let entries = walk::entries(ctx, node, path);
    let given = !entries.is_empty();
    for (key, line, v) in entries {
        let Some(value) = walk::string(ctx, v, &join(path, key)) else {
            continue;
        };
        if key.is_empty() || key.len() > 128 || key.starts_with("aws:") {
            ctx.err(
                line,
                &join(path, key),
                "tag keys are 1-128 characters and may not start with aws:",
            );
            continue;
        }
        out.insert(key.to_string(), value);
    }
    if !given {
        ctx.err(
            node.line,
            path,
            "needs at least one tag (an empty selector would match every resource)",
        );
    }
    out
}

fn ami(ctx: &mut Ctx, line: usize, text: &str) -> Option<AmiSelector> {
    if let Some(id) = text.strip_prefix("ami-") {
        if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Some(AmiSelector::Id(text.to_string()));
        }
    } else if let Some(v) = text.strip_prefix("al2023@") {
        let numeric = v.split('.').count() == 2 && v.split('.').all(|p| p.parse::<u32>().is_ok());
        if numeric {
            return Some(AmiSelector::Al2023 {
                kubernetes_version: v.to_string(),
            });
        }
    } else if let Some(param) = text.strip_prefix("ssm:") {
        if param.starts_with('/') && param.len() > 1 {
            return Some(AmiSelector::Ssm(param.to_string()));
        }
    }
    ctx.err(
        line,
        "aws.ami",
        format!("invalid AMI {text:?} (expected ami-<hex>, al2023@<kubernetes version> or ssm:/parameter/path)"),
    );
    None
}

fn root_volume(ctx: &mut Ctx, node: &Node, mut v: RootVolume) -> RootVolume {
    let p = "aws.rootVolume";
    let Some(f) = walk::fields(ctx, node, p, &["size", "type"]) else {
        return v;
    };
    if let Some(n) = f.get("size") {
        match walk::units(ctx, n, &join(p, "size")) {
            Some(b) if (GI..=16384 * GI).contains(&b) => v.size = b,
            Some(_) => ctx.err(n.line, &join(p, "size"), "must be between 1Gi and 16Ti"),
            None => {}
        }
    }
    if let Some(n) = f.get("type") {
        if let Some(t) = walk::string(ctx, n, &join(p, "type")) {
            if VOLUME_TYPES.contains(&t.as_str()) {
                v.volume_type = t;
            } else {
                ctx.err(
                    n.line,
                    &join(p, "type"),
                    format!(
                        "unknown volume type {t:?} (expected one of: {})",
                        VOLUME_TYPES.join(", ")
                    ),
                );
            }
        }
    }
    v
}
