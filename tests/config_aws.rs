//! The `aws:` block of `kind: Settings`: defaults, every field, and line-numbered errors.

use std::collections::BTreeMap;
use std::time::Duration;
use stevedore::config::{load_str, AmiSelector, AwsSettings};

fn settings(aws_block: &str) -> Result<Option<AwsSettings>, Vec<(usize, String, String)>> {
    let text = format!("apiVersion: stevedore.dev/v1\nkind: Settings\naws:\n{aws_block}");
    load_str(&text, "aws.yaml")
        .map(|c| c.settings.aws)
        .map_err(|e| {
            e.errors
                .into_iter()
                .map(|e| (e.line, e.path, e.message))
                .collect()
        })
}

#[test]
fn minimal_block_takes_documented_defaults() {
    let s = settings("  clusterName: prod\n")
        .expect("valid")
        .expect("aws block");
    assert_eq!(s.cluster_name, "prod");
    let sel = BTreeMap::from([("kubernetes.io/cluster/prod".to_string(), "*".to_string())]);
    assert_eq!(s.subnet_selector, sel);
    assert_eq!(s.security_group_selector, sel);
    assert_eq!(
        s.ami,
        AmiSelector::Al2023 {
            kubernetes_version: "1.33".into()
        }
    );
    assert_eq!(s.root_volume.size, 20 << 30);
    assert_eq!(s.root_volume.volume_type, "gp3");
    assert_eq!(s.spot_price_refresh, Duration::from_secs(600));
    assert_eq!(s.interruption_queue, None);
    assert_eq!(s.api_max_attempts, 5);
    assert!(s.auto_scaling_groups.is_empty());
    assert_eq!(s.max_pods, None);
    assert_eq!(
        s.missing_for_fleet(),
        [
            "clusterEndpoint",
            "clusterCertificateAuthority",
            "clusterCIDR",
            "instanceProfile"
        ]
    );
    let none = load_str("apiVersion: stevedore.dev/v1\nkind: Settings\n", "x.yaml").expect("valid");
    assert_eq!(none.settings.aws, None, "no aws block, no AWS settings");
}

#[test]
fn every_field_is_read() {
    let s = settings(concat!(
        "  clusterName: prod_1\n",
        "  clusterEndpoint: https://ABC.gr7.us-east-1.eks.amazonaws.com\n",
        "  clusterCertificateAuthority: Q0E=\n",
        "  clusterCIDR: 172.20.0.0/16\n",
        "  subnetSelector: {karpenter.sh/discovery: prod, tier: \"*\"}\n",
        "  securityGroupSelector: {karpenter.sh/discovery: prod}\n",
        "  ami: ami-0123456789abcdef0\n",
        "  instanceProfile: prod-node\n",
        "  rootVolume: {size: 100Gi, type: io2}\n",
        "  interruptionQueue: prod-interruptions\n",
        "  spotPriceRefresh: 5m\n",
        "  autoScalingGroups: [a, b]\n",
        "  apiMaxAttempts: 3\n",
        "  maxPods: 110\n",
    ))
    .expect("valid")
    .expect("aws");
    assert_eq!(s.cluster_cidr.as_deref(), Some("172.20.0.0/16"));
    assert_eq!(s.subnet_selector.get("tier").map(String::as_str), Some("*"));
    assert_eq!(s.security_group_selector.len(), 1);
    assert_eq!(s.ami, AmiSelector::Id("ami-0123456789abcdef0".into()));
    assert_eq!(s.instance_profile.as_deref(), Some("prod-node"));
    assert_eq!(
        (s.root_volume.size, s.root_volume.volume_type.as_str()),
        (100 << 30, "io2")
    );
    assert_eq!(s.interruption_queue.as_deref(), Some("prod-interruptions"));
    assert_eq!(s.spot_price_refresh, Duration::from_secs(300));
    assert_eq!(s.auto_scaling_groups, ["a", "b"]);
    assert_eq!(s.api_max_attempts, 3);
    assert_eq!(s.max_pods, Some(110));
    assert!(s.missing_for_fleet().is_empty());
    let ssm = settings("  clusterName: p\n  ami: ssm:/my/ami\n")
        .expect("valid")
        .expect("aws");
    assert_eq!(ssm.ami, AmiSelector::Ssm("/my/ami".into()));
    let al = settings("  clusterName: p\n  ami: al2023@1.31\n")
        .expect("valid")
        .expect("aws");
    assert_eq!(
        al.ami,
        AmiSelector::Al2023 {
            kubernetes_version: "1.31".into()
        }
    );
}

#[test]
fn mistakes_are_reported_with_line_and_path() {
    // (block, line of the error in the document, path, words in the message)
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "  instanceProfile: x\n",
            4,
            "aws",
            "missing required field \"clusterName\"",
        ),
        (
            "  clusterName: -bad\n",
            4,
            "aws.clusterName",
            "invalid cluster name",
        ),
        (
            "  clusterName: p\n  clusterEndpoint: http://x\n",
            5,
            "aws.clusterEndpoint",
            "https://",
        ),
        (
            "  clusterName: p\n  clusterCIDR: 10.0.0.0/33\n",
            5,
            "aws.clusterCIDR",
            "not a CIDR",
        ),
        (
            "  clusterName: p\n  subnetSelector: {}\n",
            5,
            "aws.subnetSelector",
            "at least one tag",
        ),
        (
            "  clusterName: p\n  securityGroupSelector: {aws:x: y}\n",
            5,
            "aws.securityGroupSelector.aws:x",
            "may not start with aws:",
        ),
        (
            "  clusterName: p\n  ami: ubuntu\n",
            5,
            "aws.ami",
            "invalid AMI",
        ),
        (
            "  clusterName: p\n  ami: al2023@latest\n",
            5,
            "aws.ami",
            "invalid AMI",
        ),
        (
            "  clusterName: p\n  rootVolume: {size: 512Mi}\n",
            5,
            "aws.rootVolume.size",
            "between 1Gi and 16Ti",
        ),
        (
            "  clusterName: p\n  rootVolume:\n    type: gp9\n",
            6,
            "aws.rootVolume.type",
            "unknown volume type",
        ),
        (
            "  clusterName: p\n  interruptionQueue: a/b\n",
            5,
            "aws.interruptionQueue",
            "invalid SQS queue name",
        ),
        (
            "  clusterName: p\n  spotPriceRefresh: 10s\n",
            5,
            "aws.spotPriceRefresh",
            "at least 1m",
        ),
        (
            "  clusterName: p\n  spotPriceRefresh: soon\n",
            5,
            "aws.spotPriceRefresh",
            "invalid duration",
        ),
        (
            "  clusterName: p\n  apiMaxAttempts: 0\n",
            5,
            "aws.apiMaxAttempts",
            "out of range",
        ),
        (
            "  clusterName: p\n  subnets: [a]\n",
            5,
            "aws.subnets",
            "unknown field",
        ),
    ];
    for (block, line, path, needle) in cases {
        let errs = settings(block).expect_err(block);
        assert_eq!(errs.len(), 1, "{block}: {errs:#?}");
        let (l, p, m) = &errs[0];
        assert_eq!((l, p.as_str()), (line, *path), "{block}: {m}");
        assert!(m.contains(needle), "{block}: {m:?} lacks {needle:?}");
    }
}

#[test]
fn shipped_example_configures_the_aws_provider() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/settings.yaml");
    let c = stevedore::config::load_path(&path).unwrap_or_else(|e| panic!("{e}"));
    let aws = c.settings.aws.expect("the example has an aws block");
    assert_eq!(aws.cluster_name, "prod-eu");
    assert_eq!(
        aws.subnet_selector
            .get("karpenter.sh/discovery")
            .map(String::as_str),
        Some("prod-eu")
    );
    assert_eq!(aws.root_volume.size, 50 << 30);
    assert_eq!(
        aws.interruption_queue.as_deref(),
        Some("prod-eu-interruptions")
    );
}
