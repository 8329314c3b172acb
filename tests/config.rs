//! Configuration loading: the bundled file, every validation rule, error reporting, and
//! a no-panic property test.

use proptest::prelude::*;
use std::time::Duration;
use stevedore::config::{
    self, bundled, load_path, load_str, Config, ConfigError, ConfigErrors, ConsolidationPolicy,
    Settings,
};
use stevedore::core::budget::Reason;
use stevedore::core::cron::Schedule;
use stevedore::core::disruption::MinSavings;
use stevedore::core::instance::CapacityType;
use stevedore::core::pdb::{Budget, IntOrPercent};
use stevedore::core::requirements::Operator;
use stevedore::core::taints::TaintEffect;

const GI: i64 = 1 << 30;
const MI: i64 = 1 << 20;

fn ok(text: &str) -> Config {
    load_str(text, "test.yaml").unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

fn errs(text: &str) -> Vec<ConfigError> {
    match load_str(text, "test.yaml") {
        Ok(_) => panic!("expected errors, got none for:\n{text}"),
        Err(e) => e.errors,
    }
}

/// Asserts there is exactly one error, at `path`, with `needle` in its message; returns it.
fn one_err(text: &str, path: &str, needle: &str) -> ConfigError {
    let e = errs(text);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    assert_eq!(e[0].path, path, "{:#?}", e[0]);
    assert!(
        e[0].message.contains(needle),
        "{:?} does not contain {needle:?}",
        e[0].message
    );
    e.into_iter().next().unwrap()
}

/// A NodePool document whose `spec.template.spec` holds `tspec` (already indented by six).
fn pool_with(tspec: &str) -> String {
    format!(
        "apiVersion: stevedore.dev/v1\nkind: NodePool\nmetadata:\n  name: p\nspec:\n  template:\n    spec:\n{tspec}"
    )
}

fn req(key: &str, rest: &str) -> String {
    pool_with(&format!(
        "      requirements:\n        - {{key: {key}, {rest}}}\n"
    ))
}

const SETTINGS_HEAD: &str = "apiVersion: stevedore.dev/v1\nkind: Settings\n";

// ---------------------------------------------------------------------------------------
// Happy paths

#[test]
fn bundled_config_parses_with_documented_contents() {
    let c = bundled();
    let names: Vec<_> = c.node_pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["general", "gpu"]);
    assert_eq!(c.pool_extras[0].name, "general");
    let gpu = c.node_pool("gpu").unwrap();
    assert_eq!(gpu.taints.len(), 1);
    assert_eq!(gpu.taints[0].key, "nvidia.com/gpu");
    assert_eq!(gpu.taints[0].effect, TaintEffect::NoSchedule);
    assert!(
        gpu.requirements
            .iter()
            .any(|r| r.key == "karpenter.k8s.aws/instance-gpu-count"
                && r.operator == Operator::Exists)
    );
    let general = c.node_pool("general").unwrap();
    assert!(general.taints.is_empty());
    assert!(general
        .requirements
        .iter()
        .any(|r| r.key == "karpenter.k8s.aws/instance-gpu-count"
            && r.operator == Operator::DoesNotExist));
    assert_eq!(general.empty_node_after, Some(Duration::from_secs(30)));

    // The Settings written out in the bundled file are the defaults, plus node groups.
    let defaults = Settings::default();
    let s = &c.settings;
    assert_eq!(
        Settings {
            node_groups: Vec::new(),
            ..s.clone()
        },
        defaults
    );
    assert_eq!(s.node_groups.len(), 8);
    let arm = s
        .node_groups
        .iter()
        .find(|g| g.name == "m6g-2xlarge")
        .unwrap();
    assert_eq!(arm.instance_type, "m6g.2xlarge");
    let spot = s
        .node_groups
        .iter()
        .find(|g| g.name == "m5-2xlarge-spot")
        .unwrap();
    assert_eq!(spot.capacity_type, CapacityType::Spot);
    assert_eq!(spot.zones, s.zones);
    let g4 = s
        .node_groups
        .iter()
        .find(|g| g.name == "g4dn-xlarge")
        .unwrap();
    assert_eq!(g4.taints, gpu.taints);
    let g4x4 = s
        .node_groups
        .iter()
        .find(|g| g.name == "g4dn-12xlarge")
        .unwrap();
    assert_eq!(g4x4.taints, gpu.taints);
}

#[test]
fn defaults_match_the_documentation() {
    let s = Settings::default();
    assert_eq!(s.scan_interval, Duration::from_secs(10));
    assert_eq!(s.batch_idle, Duration::from_secs(1));
    assert_eq!(s.batch_max, Duration::from_secs(10));
    assert_eq!(s.boot_delay.min, Duration::from_secs(40));
    assert_eq!(s.boot_delay.max, Duration::from_secs(90));
    assert_eq!(s.unavailable_offering_ttl, Duration::from_secs(180));
    assert_eq!(s.max_launch_options, 60);
    assert_eq!(s.region, "us-east-1");
    assert_eq!(s.zones, ["us-east-1a", "us-east-1b", "us-east-1c"]);
    assert_eq!(s.overhead.vm_memory_overhead_percent, 0.075);
    assert_eq!(s.overhead.kube_reserved_memory_per_pod, 11 * MI);
    assert_eq!(s.overhead.kube_reserved_memory_base, 255 * MI);
    assert_eq!(s.overhead.eviction_memory, 100 * MI);
    assert_eq!(s.overhead.system_reserved_cpu_milli, 0);
    assert_eq!(s.node_group_scale_down.utilization_threshold, 0.5);
    assert_eq!(
        s.node_group_scale_down.unneeded_time,
        Duration::from_secs(600)
    );
    let aws_node = s.daemon_sets.iter().find(|d| d.name == "aws-node").unwrap();
    assert_eq!((aws_node.cpu_milli, aws_node.memory), (25, 0));
    assert!(aws_node.tolerate_all);
}

#[test]
fn karpenter_style_pool_from_the_readme() {
    let c = ok(r#"
apiVersion: stevedore.dev/v1
kind: NodePool
metadata: {name: general}
spec:
  weight: 10
  template:
    metadata: {labels: {team: web}}
    spec:
      requirements:
        - {key: karpenter.sh/capacity-type, operator: In, values: [spot, on-demand]}
        - {key: karpenter.k8s.aws/instance-gpu-count, operator: DoesNotExist}
        - {key: team, operator: In, values: [web]}
        - {key: stevedore.dev/instance-cpu, operator: Gt, values: ["3"]}
      taints: [{key: nvidia.com/gpu, value: "true", effect: NoSchedule}]
      startupTaints: []
  limits: {cpu: "1000", memory: 4000Gi, nvidia.com/gpu: "16"}
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: 2m
"#);
    assert_eq!(c.settings, Settings::default());
    let p = &c.node_pools[0];
    assert_eq!(p.weight, 10);
    assert_eq!(p.labels.get("team").map(String::as_str), Some("web"));
    assert_eq!(p.requirements.len(), 4);
    assert_eq!(p.requirements[0].values, ["spot", "on-demand"]);
    assert_eq!(p.requirements[3].operator, Operator::Gt);
    assert_eq!(p.limits.cpu_milli, Some(1_000_000));
    assert_eq!(p.limits.memory, Some(4000 * GI));
    assert_eq!(p.limits.extended, vec![("nvidia.com/gpu".to_string(), 16)]);
    assert_eq!(p.empty_node_after, Some(Duration::from_secs(120)));
    assert_eq!(
        c.pool_extras[0].disruption.policy,
        ConsolidationPolicy::WhenEmpty
    );
}

#[test]
fn pool_defaults_and_never() {
    let c = ok(&pool_with("      requirements: []\n"));
    let p = &c.node_pools[0];
    assert_eq!(p.weight, 0);
    assert_eq!(p.empty_node_after, Some(config::DEFAULT_CONSOLIDATE_AFTER));
    assert_eq!(p.limits, Default::default());
    assert_eq!(
        c.pool_extras[0].disruption.policy,
        ConsolidationPolicy::WhenEmptyOrUnderutilized
    );
    let c = ok(&format!(
        "{}  disruption: {{consolidateAfter: Never}}\n",
        pool_with("      requirements: []\n")
    ));
    assert_eq!(c.node_pools[0].empty_node_after, None);
}

#[test]
fn a_karpenter_nodepool_loads_unchanged() {
    // As `kubectl get nodepool default -o yaml` prints it (trimmed).
    let c = ok(r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
  uid: 2b9c4c4e-0000-0000-0000-000000000000
  resourceVersion: "12345"
  generation: 3
  annotations: {karpenter.sh/nodepool-hash: "123"}
spec:
  template:
    metadata:
      annotations: {example.com/owner: team-a}
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      expireAfter: 720h
      terminationGracePeriod: 48h
      requirements:
        - {key: kubernetes.io/arch, operator: In, values: [amd64]}
        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [c, m, r], minValues: 2}
        - {key: karpenter.k8s.aws/instance-generation, operator: Gt, values: ["2"]}
  limits: {cpu: 1000}
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 1m
    budgets:
      - nodes: 10%
      - {nodes: "0", schedule: "0 9 * * mon-fri", duration: 8h, reasons: [Drifted]}
status:
  resources: {cpu: "0"}
"#);
    let e = &c.pool_extras[0];
    assert_eq!(
        e.min_values,
        vec![("karpenter.k8s.aws/instance-category".to_string(), 2)]
    );
    let budgets = &e.disruption.budgets;
    assert_eq!(budgets.len(), 2);
    assert_eq!(budgets[0].nodes, IntOrPercent::Percent(10));
    assert_eq!(budgets[1].nodes, IntOrPercent::Int(0));
    assert_eq!(budgets[1].reasons, [Reason::Drifted]);
    let (schedule, duration) = budgets[1].schedule.as_ref().unwrap();
    assert_eq!(*duration, 8 * 3600);
    assert_eq!(*schedule, Schedule::parse("0 9 * * 1-5").unwrap());
    assert_eq!(e.disruption.expire_after_s, Some(720.0 * 3600.0));
    assert_eq!(e.disruption.consolidate_after_s, Some(60.0));
    assert_eq!(
        e.termination_grace_period,
        Some(Duration::from_secs(48 * 3600))
    );
    assert_eq!(e.annotations.get("example.com/owner").unwrap(), "team-a");
    assert_eq!(c.node_pools[0].limits.cpu_milli, Some(1_000_000));
}

#[test]
fn pools_are_sorted_by_weight_then_name() {
    let doc = |name: &str, w: i32| {
        format!(
            "---\napiVersion: stevedore.dev/v1\nkind: NodePool\nmetadata: {{name: {name}}}\nspec:\n  weight: {w}\n  template: {{spec: {{}}}}\n"
        )
    };
    let c = ok(&[doc("b", 1), doc("c", 50), doc("a", 1)].concat());
    let names: Vec<_> = c.node_pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["c", "a", "b"]);
    let extras: Vec<_> = c.pool_extras.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(extras, names);
}

#[test]
fn settings_fields_parse() {
    let c = ok(&format!(
        r#"{SETTINGS_HEAD}
scanInterval: 5s
batchIdle: 500ms
batchMax: 1m
bootDelay: {{min: 1m, max: 2m}}
unavailableOfferingTTL: 10m
maxLaunchOptions: 20
region: eu-west-1
zones: [eu-west-1a, eu-west-1b]
spotPriceOverrides:
  - {{instanceType: m5.large, zone: eu-west-1a, pricePerHour: 0.04}}
  - {{instanceType: c5.large, pricePerHour: 0.03}}
overhead:
  vmMemoryOverheadPercent: 0.05
  kubeReservedMemoryPerPod: 10Mi
  kubeReservedMemoryBase: 200Mi
  evictionMemory: 50Mi
  systemReservedCPU: 100m
  systemReservedMemory: 1Gi
nodeGroups:
  - name: gpus
    instanceType: g5.xlarge
    capacityType: spot
    zones: [eu-west-1b]
    minSize: 1
    maxSize: 3
    labels: {{accelerator: nvidia}}
    taints: [{{key: nvidia.com/gpu, effect: NoExecute}}]
nodeGroupScaleDown: {{utilizationThreshold: 0.3, unneededTime: 5m}}
daemonSets:
  - {{name: fluent-bit, namespace: logging, cpu: 0.1, memory: 64Mi, tolerateAll: false, nodeSelector: {{kubernetes.io/os: linux}}}}
"#
    ));
    let s = &c.settings;
    assert_eq!(s.batch_idle, Duration::from_millis(500));
    assert_eq!(s.boot_delay.max, Duration::from_secs(120));
    assert_eq!(s.max_launch_options, 20);
    assert_eq!(s.zones, ["eu-west-1a", "eu-west-1b"]);
    assert_eq!(
        s.spot_price_overrides[0].zone.as_deref(),
        Some("eu-west-1a")
    );
    assert_eq!(s.spot_price_overrides[1].zone, None);
    assert_eq!(s.overhead.system_reserved_cpu_milli, 100);
    assert_eq!(s.overhead.system_reserved_memory, GI);
    let g = &s.node_groups[0];
    assert_eq!((g.min_size, g.max_size), (1, 3));
    assert_eq!(g.zones, ["eu-west-1b"]);
    assert_eq!(g.taints[0].value, "");
    assert_eq!(s.node_group_scale_down.utilization_threshold, 0.3);
    assert_eq!(s.daemon_sets.len(), 1);
    let d = &s.daemon_sets[0];
    assert_eq!(
        (d.cpu_milli, d.memory, d.tolerate_all),
        (100, 64 * MI, false)
    );
    assert_eq!(d.node_selector.len(), 1);
    assert!(c.node_pools.is_empty());
}

#[test]
fn explicit_empty_daemon_sets_means_none() {
    let c = ok(&format!("{SETTINGS_HEAD}daemonSets: []\n"));
    assert!(c.settings.daemon_sets.is_empty());
    let c = ok(&format!("{SETTINGS_HEAD}region: us-east-1\n"));
    assert_eq!(c.settings.daemon_sets, config::eks_default_daemon_sets());
}

#[test]
fn anchors_and_aliases_are_expanded() {
    let c = ok(r#"
apiVersion: stevedore.dev/v1
kind: NodePool
metadata: {name: a}
spec:
  template:
    spec:
      taints: &gpu [{key: nvidia.com/gpu, value: "true", effect: NoSchedule}]
      startupTaints: *gpu
"#);
    assert_eq!(c.node_pools[0].taints, c.node_pools[0].startup_taints);
}

#[test]
fn empty_documents_and_comments_are_skipped() {
    let c = ok("# nothing\n---\n---\n# still nothing\n");
    assert!(c.node_pools.is_empty());
    assert_eq!(c.settings, Settings::default());
}

// ---------------------------------------------------------------------------------------
// Each validation rule

#[test]
fn unknown_operator() {
    let e = one_err(
        &req("kubernetes.io/arch", "operator: Into, values: [amd64]"),
        "spec.template.spec.requirements[0].operator",
        "unknown operator \"Into\" (expected In, NotIn, Exists, DoesNotExist, Gt, Lt)",
    );
    assert_eq!(e.line, 9);
    assert_eq!(e.document, "NodePool/p");
}

#[test]
fn in_and_not_in_need_values() {
    let p = "spec.template.spec.requirements[0].values";
    one_err(
        &req("kubernetes.io/arch", "operator: In"),
        p,
        "In needs at least one value",
    );
    one_err(
        &req("kubernetes.io/arch", "operator: NotIn, values: []"),
        p,
        "NotIn needs at least one value",
    );
}

#[test]
fn exists_and_does_not_exist_take_no_values() {
    let p = "spec.template.spec.requirements[0].values";
    one_err(
        &req(
            "karpenter.k8s.aws/instance-gpu-count",
            "operator: Exists, values: [\"1\"]",
        ),
        p,
        "Exists takes no values",
    );
    one_err(
        &req(
            "karpenter.k8s.aws/instance-gpu-count",
            "operator: DoesNotExist, values: [\"1\"]",
        ),
        p,
        "DoesNotExist takes no values",
    );
}

#[test]
fn gt_and_lt_need_one_integer() {
    let p = "spec.template.spec.requirements[0].values";
    let k = "karpenter.k8s.aws/instance-cpu";
    one_err(
        &req(k, "operator: Gt, values: [\"1\", \"2\"]"),
        p,
        "exactly one integer",
    );
    one_err(&req(k, "operator: Gt"), p, "exactly one integer");
    one_err(
        &req(k, "operator: Lt, values: [four]"),
        p,
        "needs an integer value, got \"four\"",
    );
    ok(&req(k, "operator: Lt, values: [\"64\"]"));
}

#[test]
fn requirement_keys_must_be_well_known_or_template_labels() {
    one_err(
        &req("example.com/team", "operator: In, values: [a]"),
        "spec.template.spec.requirements[0].key",
        "unknown requirement key \"example.com/team\"",
    );
    one_err(
        &req("karpenter.k8s.aws/instance-colour", "operator: Exists"),
        "spec.template.spec.requirements[0].key",
        "unknown requirement key",
    );
    one_err(
        &req("kubernetes.io/hostname", "operator: Exists"),
        "spec.template.spec.requirements[0].key",
        "cannot be a node pool requirement",
    );
    for key in [
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/zone",
        "kubernetes.io/os",
        "karpenter.sh/nodepool",
        "stevedore.dev/capacity-type",
        "stevedore.dev/instance-family",
        "karpenter.k8s.aws/instance-hypervisor",
    ] {
        ok(&req(key, "operator: Exists"));
    }
    ok(
        &pool_with("      requirements: [{key: example.com/team, operator: In, values: [a]}]\n")
            .replace(
                "  template:\n",
                "  template:\n    metadata: {labels: {example.com/team: a}}\n",
            ),
    );
}

#[test]
fn closed_value_sets_are_checked() {
    one_err(
        &req(
            "karpenter.sh/capacity-type",
            "operator: In, values: [spot, reserved]",
        ),
        "spec.template.spec.requirements[0].values",
        "\"reserved\" is not a value of karpenter.sh/capacity-type",
    );
    one_err(
        &req("kubernetes.io/arch", "operator: NotIn, values: [x86_64]"),
        "spec.template.spec.requirements[0].values",
        "expected amd64, arm64",
    );
}

#[test]
fn taint_effect_must_be_known() {
    one_err(
        &pool_with("      taints: [{key: a, value: b, effect: NoSchedulee}]\n"),
        "spec.template.spec.taints[0].effect",
        "unknown taint effect \"NoSchedulee\" (expected NoSchedule, PreferNoSchedule, NoExecute)",
    );
    one_err(
        &pool_with("      startupTaints: [{key: a}]\n"),
        "spec.template.spec.startupTaints[0]",
        "missing required field \"effect\"",
    );
    one_err(
        &pool_with("      taints: [{key: \"bad key!\", effect: NoSchedule}]\n"),
        "spec.template.spec.taints[0].key",
        "invalid taint key",
    );
}

#[test]
fn quantities_must_be_valid() {
    let base = pool_with("      requirements: []\n");
    one_err(
        &format!("{base}  limits: {{cpu: 10x}}\n"),
        "spec.limits.cpu",
        "invalid quantity \"10x\"",
    );
    one_err(
        &format!("{base}  limits: {{memory: \"-1Gi\"}}\n"),
        "spec.limits.memory",
        "negative",
    );
    one_err(
        &format!("{base}  limits: {{pods: \"10\"}}\n"),
        "spec.limits.pods",
        "unsupported limit",
    );
    one_err(
        &format!("{SETTINGS_HEAD}overhead: {{evictionMemory: lots}}\n"),
        "overhead.evictionMemory",
        "invalid quantity",
    );
    one_err(
        &format!("{SETTINGS_HEAD}daemonSets: [{{name: x, cpu: 1.2.3}}]\n"),
        "daemonSets[0].cpu",
        "invalid quantity",
    );
}

#[test]
fn names_must_be_dns1123() {
    for bad in ["General", "my_pool", "-a", "a-", &"a".repeat(64)] {
        let text =
            pool_with("      requirements: []\n").replace("name: p", &format!("name: {bad}"));
        one_err(&text, "metadata.name", "must be a DNS-1123 subdomain");
    }
    ok(&pool_with("      requirements: []\n").replace("name: p", "name: gpu.a-1"));
    one_err(
        &format!("{SETTINGS_HEAD}nodeGroups: [{{name: Big_Group, instanceType: m5.large, maxSize: 1}}]\n"),
        "nodeGroups[0].name",
        "invalid name",
    );
}

#[test]
fn weight_is_an_integer_from_0_to_100() {
    let with = |w: &str| {
        pool_with("      requirements: []\n").replace(
            "spec:\n  template",
            &format!("spec:\n  weight: {w}\n  template"),
        )
    };
    ok(&with("100"));
    one_err(
        &with("101"),
        "spec.weight",
        "out of range (expected 0 to 100)",
    );
    one_err(&with("-1"), "spec.weight", "out of range");
    one_err(&with("\"10\""), "spec.weight", "remove the quotes");
    one_err(&with("ten"), "spec.weight", "expected an integer");
}

#[test]
fn duplicate_pool_names_are_rejected() {
    let p = pool_with("      requirements: []\n");
    let e = errs(&format!("{p}---\n{p}"));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].path, "metadata.name");
    assert!(e[0]
        .message
        .contains("duplicate NodePool name (first defined at test.yaml:4)"));
    assert_eq!(e[0].line, 13);
}

#[test]
fn durations_and_policies() {
    let base = pool_with("      requirements: []\n");
    one_err(
        &format!("{base}  disruption: {{consolidateAfter: 30}}\n"),
        "spec.disruption.consolidateAfter",
        "invalid duration \"30\"",
    );
    one_err(
        &format!("{base}  disruption: {{consolidationPolicy: WhenUnderutilized}}\n"),
        "spec.disruption.consolidationPolicy",
        "unknown consolidation policy",
    );
    one_err(
        &format!("{base}  disruption: {{budgets: [{{nodes: 110%}}]}}\n"),
        "spec.disruption.budgets[0].nodes",
        "percentage",
    );
    one_err(
        &format!("{SETTINGS_HEAD}scanInterval: soon\n"),
        "scanInterval",
        "invalid duration",
    );
    one_err(
        &format!("{SETTINGS_HEAD}scanInterval: 0s\n"),
        "scanInterval",
        "greater than zero",
    );
    one_err(
        &format!("{SETTINGS_HEAD}batchIdle: 1m\n"),
        "batchIdle",
        "must not exceed batchMax",
    );
    one_err(
        &format!("{SETTINGS_HEAD}bootDelay: {{min: 2m, max: 1m}}\n"),
        "bootDelay",
        "min must not exceed max",
    );
}

#[test]
fn settings_validation_rules() {
    let h = SETTINGS_HEAD;
    one_err(
        &format!("{h}zones: [us-west-2a]\n"),
        "zones[0]",
        "not in region \"us-east-1\"",
    );
    one_err(
        &format!("{h}zones: [us-east-1a, us-east-1a]\n"),
        "zones[1]",
        "duplicate zone",
    );
    one_err(&format!("{h}zones: []\n"), "zones", "at least one zone");
    one_err(
        &format!("{h}maxLaunchOptions: 0\n"),
        "maxLaunchOptions",
        "out of range",
    );
    one_err(
        &format!("{h}overhead: {{vmMemoryOverheadPercent: 7.5}}\n"),
        "overhead.vmMemoryOverheadPercent",
        "fraction",
    );
    one_err(
        &format!("{h}nodeGroupScaleDown: {{utilizationThreshold: 2}}\n"),
        "nodeGroupScaleDown.utilizationThreshold",
        "between 0 and 1",
    );
    one_err(
        &format!("{h}spotPriceOverrides: [{{instanceType: m5.large, zone: us-east-1z, pricePerHour: 1}}]\n"),
        "spotPriceOverrides[0].zone",
        "not one of zones",
    );
    one_err(
        &format!("{h}spotPriceOverrides: [{{instanceType: m5.large, pricePerHour: 0}}]\n"),
        "spotPriceOverrides[0].pricePerHour",
        "must be positive",
    );
    let group =
        |extra: &str| format!("{h}nodeGroups:\n  - {{name: g, instanceType: m5.large, {extra}}}\n");
    one_err(
        &group("capacityType: reserved, maxSize: 1"),
        "nodeGroups[0].capacityType",
        "unknown capacity type",
    );
    one_err(
        &group("zones: [us-east-1q], maxSize: 1"),
        "nodeGroups[0].zones",
        "not one of zones",
    );
    one_err(
        &group("minSize: 5, maxSize: 1"),
        "nodeGroups[0].minSize",
        "exceeds maxSize",
    );
    one_err(
        &group("minSize: 0"),
        "nodeGroups[0]",
        "missing required field \"maxSize\"",
    );
    let e = errs(&format!(
        "{h}nodeGroups:\n  - {{name: g, instanceType: a, maxSize: 1}}\n  - {{name: g, instanceType: b, maxSize: 1}}\n"
    ));
    assert!(e[0].message.contains("duplicate node group"), "{e:#?}");
    one_err(
        &format!("{h}daemonSets: [{{name: x, tolerateAll: yes}}]\n"),
        "daemonSets[0].tolerateAll",
        "expected true or false",
    );
    one_err(
        &format!("{h}daemonSets: [{{name: x}}, {{name: x}}]\n"),
        "daemonSets[1]",
        "duplicate DaemonSet kube-system/x",
    );
}

#[test]
fn only_one_settings_document() {
    let e = errs(&format!("{SETTINGS_HEAD}---\n{SETTINGS_HEAD}"));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].message.contains("more than one Settings document"));
    assert_eq!(e[0].line, 5);
}

#[test]
fn document_level_errors() {
    one_err(
        "apiVersion: stevedore.dev/v1\nkind: ConfigMap\n",
        "kind",
        "unknown kind \"ConfigMap\"",
    );
    let e = errs("apiVersion: stevedore.dev/v2\nkind: Settings\n");
    assert_eq!(e[0].path, "apiVersion");
    assert!(e[0]
        .message
        .contains("unsupported apiVersion \"stevedore.dev/v2\""));
    one_err(
        "apiVersion: stevedore.dev/v1\n",
        "",
        "missing required field \"kind\"",
    );
    one_err(
        "kind: Settings\n",
        "",
        "missing required field \"apiVersion\"",
    );
    one_err("- a\n- b\n", "", "expected a mapping");
    // karpenter.sh/v1 is only an alias for NodePools.
    one_err(
        "apiVersion: karpenter.sh/v1\nkind: Settings\n",
        "apiVersion",
        "unsupported",
    );
    one_err(
        "apiVersion: stevedore.dev/v1\nkind: NodePool\nspec: {template: {spec: {}}}\n",
        "",
        "missing required field \"metadata\"",
    );
}

#[test]
fn syntax_errors_have_lines_and_earlier_documents_are_still_checked() {
    let text = format!("{SETTINGS_HEAD}scanInterval: nope\n---\na: [1, 2\nb: c\n");
    let e = errs(&text);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(e[0].path, "scanInterval");
    assert!(e[1].message.starts_with("YAML syntax error"));
    assert!(e[1].line >= 5, "{:?}", e[1]);
}

// ---------------------------------------------------------------------------------------
// Error reporting

#[test]
fn every_mistake_is_reported_with_line_and_path() {
    let text = r#"apiVersion: stevedore.dev/v1
kind: NodePool
metadata: {name: general}
spec:
  weight: 1000
  template:
    spec:
      requirements:
        - {key: karpenter.sh/capacity-type, operator: In, values: [spot]}
        - {key: kubernetes.io/arch, operator: Into, values: [amd64]}
      taints: [{key: a, value: b, effect: Sometimes}]
  limits: {cpu: lots}
  disruption: {consolidateAfter: 30, colour: blue}
---
apiVersion: stevedore.dev/v1
kind: Settings
bootDelay: {min: 1m, maxx: 2m}
zones: [us-east-1a]
nodeGroups:
  - {name: g, instanceType: m5.large, maxSize: many}
"#;
    let err: ConfigErrors = load_str(text, "cluster.yaml").unwrap_err();
    let got: Vec<(usize, &str)> = err.iter().map(|e| (e.line, e.path.as_str())).collect();
    assert_eq!(
        got,
        [
            (5, "spec.weight"),
            (10, "spec.template.spec.requirements[1].operator"),
            (11, "spec.template.spec.taints[0].effect"),
            (12, "spec.limits.cpu"),
            (13, "spec.disruption.colour"),
            (13, "spec.disruption.consolidateAfter"),
            (17, "bootDelay.maxx"),
            (20, "nodeGroups[0].maxSize"),
        ]
    );
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), 8, "{shown}");
    assert_eq!(
        shown.lines().nth(1).unwrap(),
        "cluster.yaml:10: NodePool/general: spec.template.spec.requirements[1].operator: \
         unknown operator \"Into\" (expected In, NotIn, Exists, DoesNotExist, Gt, Lt)"
    );
    assert!(shown
        .lines()
        .nth(6)
        .unwrap()
        .starts_with("cluster.yaml:17: Settings: bootDelay.maxx: unknown field \"maxx\" (expected one of: min, max)"));
}

#[test]
fn unknown_fields_are_errors_at_every_level() {
    let pool = |path: &str, text: &str| {
        let e = one_err(text, path, "unknown field");
        assert!(e.line > 0);
    };
    let base = "apiVersion: stevedore.dev/v1\nkind: NodePool\nmetadata: {name: p}\n";
    pool(
        "colour",
        &format!("{base}colour: red\nspec: {{template: {{spec: {{}}}}}}\n"),
    );
    pool(
        "metadata.colour",
        "apiVersion: stevedore.dev/v1\nkind: NodePool\nmetadata: {name: p, colour: red}\nspec: {template: {spec: {}}}\n",
    );
    pool(
        "spec.colour",
        &format!("{base}spec: {{colour: red, template: {{spec: {{}}}}}}\n"),
    );
    pool(
        "spec.template.colour",
        &format!("{base}spec: {{template: {{colour: red, spec: {{}}}}}}\n"),
    );
    pool(
        "spec.template.metadata.colour",
        &format!("{base}spec: {{template: {{metadata: {{colour: red}}, spec: {{}}}}}}\n"),
    );
    pool(
        "spec.template.spec.colour",
        &format!("{base}spec: {{template: {{spec: {{colour: red}}}}}}\n"),
    );
    pool(
        "spec.template.spec.requirements[0].colour",
        &req("kubernetes.io/os", "operator: Exists, colour: red"),
    );
    pool(
        "spec.template.spec.taints[0].colour",
        &pool_with("      taints: [{key: a, effect: NoSchedule, colour: red}]\n"),
    );
    pool(
        "spec.template.spec.nodeClassRef.colour",
        &pool_with("      nodeClassRef: {name: x, colour: red}\n"),
    );
    pool(
        "spec.disruption.budgets[0].colour",
        &format!("{base}spec: {{template: {{spec: {{}}}}, disruption: {{budgets: [{{nodes: \"1\", colour: red}}]}}}}\n"),
    );
    let h = SETTINGS_HEAD;
    pool("colour", &format!("{h}colour: red\n"));
    pool(
        "metadata.colour",
        &format!("{h}metadata: {{colour: red}}\n"),
    );
    pool(
        "bootDelay.colour",
        &format!("{h}bootDelay: {{colour: red}}\n"),
    );
    pool(
        "overhead.colour",
        &format!("{h}overhead: {{colour: red}}\n"),
    );
    pool(
        "nodeGroupScaleDown.colour",
        &format!("{h}nodeGroupScaleDown: {{colour: red}}\n"),
    );
    pool(
        "spotPriceOverrides[0].colour",
        &format!("{h}spotPriceOverrides: [{{instanceType: a, pricePerHour: 1, colour: red}}]\n"),
    );
    pool(
        "nodeGroups[0].colour",
        &format!("{h}nodeGroups: [{{name: g, instanceType: a, maxSize: 1, colour: red}}]\n"),
    );
    pool(
        "nodeGroups[0].taints[0].colour",
        &format!("{h}nodeGroups: [{{name: g, instanceType: a, maxSize: 1, taints: [{{key: a, effect: NoSchedule, colour: red}}]}}]\n"),
    );
    pool(
        "daemonSets[0].colour",
        &format!("{h}daemonSets: [{{name: a, colour: red}}]\n"),
    );
    // The line is the unknown key's own.
    let e = one_err(
        &format!("{h}\n\noverhead:\n  colour: red\n"),
        "overhead.colour",
        "unknown field",
    );
    assert_eq!(e.line, 6);
}

#[test]
fn duplicate_fields_are_errors() {
    one_err(
        &format!("{SETTINGS_HEAD}region: us-east-1\nregion: us-east-1\n"),
        "region",
        "duplicate field",
    );
}

// ---------------------------------------------------------------------------------------
// Files and directories

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("stevedore-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn directory_loading_reads_yaml_files_in_order() {
    let dir = TempDir::new("dir");
    let pool = |name: &str| {
        format!("apiVersion: stevedore.dev/v1\nkind: NodePool\nmetadata: {{name: {name}}}\nspec: {{template: {{spec: {{}}}}}}\n")
    };
    std::fs::write(
        dir.0.join("10-settings.yaml"),
        format!("{SETTINGS_HEAD}maxLaunchOptions: 7\n"),
    )
    .unwrap();
    std::fs::write(dir.0.join("20-a.yml"), pool("a")).unwrap();
    std::fs::write(dir.0.join("30-b.yaml"), pool("b")).unwrap();
    std::fs::write(dir.0.join("README.md"), "not yaml: [").unwrap();
    let c = load_path(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.settings.max_launch_options, 7);
    assert_eq!(c.node_pools.len(), 2);
    assert!(c.pool_extras[0].file.ends_with("20-a.yml"));

    // A duplicate across files names both; errors from each file name their file.
    std::fs::write(dir.0.join("40-dup.yaml"), pool("a")).unwrap();
    std::fs::write(
        dir.0.join("50-bad.yaml"),
        format!("{SETTINGS_HEAD}bogus: 1\n"),
    )
    .unwrap();
    let e = load_path(&dir.0).unwrap_err();
    assert_eq!(e.len(), 3, "{e}");
    assert!(e.errors[0].file.ends_with("40-dup.yaml"));
    assert!(e.errors[0].message.contains("20-a.yml:3"), "{e}");
    assert!(e.errors[1].file.ends_with("50-bad.yaml"));
    assert!(e.errors[1].message.contains("more than one Settings"));
    assert!(e.errors[2].message.contains("unknown field \"bogus\""));

    // A single file.
    let c = load_path(&dir.0.join("30-b.yaml")).unwrap();
    assert_eq!(c.node_pools[0].name, "b");
}

#[test]
fn missing_and_empty_paths_are_errors() {
    let dir = TempDir::new("empty");
    let e = load_path(&dir.0).unwrap_err();
    assert!(e.to_string().contains("no *.yaml or *.yml files"), "{e}");
    let e = load_path(&dir.0.join("nope.yaml")).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
}

#[test]
fn shipped_examples_and_bundled_file_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    load_path(&root.join("config/stevedore.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let examples = root.join("config/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            load_path(&p).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 4, "expected at least four examples, found {n}");
    // All examples together form one valid configuration too.
    load_path(&examples).unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------------------
// Never panics

fn mutate(base: &str, edits: &[(usize, u8, String)]) -> String {
    let mut s: Vec<char> = base.chars().collect();
    for (pos, op, text) in edits {
        if s.is_empty() {
            break;
        }
        let at = pos % s.len();
        match op % 4 {
            0 => {
                s.remove(at);
            }
            1 => {
                for (i, c) in text.chars().enumerate() {
                    s.insert(at + i, c);
                }
            }
            2 => s[at] = text.chars().next().unwrap_or(' '),
            _ => {
                // Duplicate or drop a line.
                let start = s[..at]
                    .iter()
                    .rposition(|c| *c == '\n')
                    .map_or(0, |i| i + 1);
                let end = s[at..]
                    .iter()
                    .position(|c| *c == '\n')
                    .map_or(s.len(), |i| at + i + 1);
                if text.len() % 2 == 0 {
                    s.drain(start..end);
                } else {
                    let line: Vec<char> = s[start..end].to_vec();
                    for (i, c) in line.into_iter().enumerate() {
                        s.insert(end + i, c);
                    }
                }
            }
        }
    }
    s.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = load_str(&text, "fuzz.yaml");
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = load_str(&String::from_utf8_lossy(&bytes), "fuzz.yaml");
    }

    #[test]
    fn yamlish_text_never_panics(text in "([a-zA-Z0-9 :\\-\\[\\]{},&*!|>'\"#\n]|---\n|  ){0,200}") {
        let _ = load_str(&text, "fuzz.yaml");
    }

    #[test]
    fn mutated_bundled_file_never_panics(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), "[ -~\n]{0,4}"), 1..8)
    ) {
        let text = mutate(config::BUNDLED_YAML, &edits);
        match load_str(&text, "mutated.yaml") {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(!e.is_empty());
                for err in &e {
                    prop_assert!(err.file == "mutated.yaml");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Disruption settings and PodDisruptionBudget documents

#[test]
fn disruption_policy_never_min_savings_and_window() {
    let base = pool_with("      requirements: []\n");
    let c = ok(&format!(
        "{base}  disruption: {{consolidationPolicy: Never, minSavings: \"12.5%\"}}\n"
    ));
    let d = &c.pool_extras[0].disruption;
    assert_eq!(d.policy, ConsolidationPolicy::Never);
    assert_eq!(d.min_savings, MinSavings::Fraction(0.125));
    // Never consolidating also keeps empty nodes.
    assert_eq!(c.node_pools[0].empty_node_after, None);
    let c = ok(&format!("{base}  disruption: {{minSavings: $0.05/h}}\n"));
    assert_eq!(
        c.pool_extras[0].disruption.min_savings,
        MinSavings::PerHour(0.05)
    );
    let c = ok(&format!(
        "{base}---\n{SETTINGS_HEAD}consolidationWindow: 0s\n"
    ));
    assert_eq!(c.settings.consolidation_window, Duration::ZERO);
    let c = ok(&format!("{base}---\n{SETTINGS_HEAD}evictionCost: 0.2\n"));
    assert_eq!(c.settings.eviction_cost, 0.2);
    one_err(
        &format!("{base}---\n{SETTINGS_HEAD}evictionCost: -1\n"),
        "evictionCost",
        "must not be negative",
    );
    for bad in ["10", "$5", "-3%", "101%", "$x/h"] {
        one_err(
            &format!("{base}  disruption: {{minSavings: \"{bad}\"}}\n"),
            "spec.disruption.minSavings",
            "expected a percentage",
        );
    }
}

#[test]
fn budget_schedules_and_reasons_are_validated() {
    let base = pool_with("      requirements: []\n");
    one_err(
        &format!("{base}  disruption: {{budgets: [{{nodes: \"1\", schedule: \"0 25 * * *\", duration: 1h}}]}}\n"),
        "spec.disruption.budgets[0].schedule",
        "hour",
    );
    one_err(
        &format!("{base}  disruption: {{budgets: [{{nodes: \"1\", reasons: [Bored]}}]}}\n"),
        "spec.disruption.budgets[0].reasons",
        "unknown reason \"Bored\"",
    );
    one_err(
        &format!("{base}  disruption: {{budgets: [{{nodes: \"1\", schedule: \"@daily\"}}]}}\n"),
        "spec.disruption.budgets[0]",
        "together",
    );
    let c = ok(&format!(
        "{base}  disruption: {{budgets: [{{nodes: \"3\", reasons: [Expired, Empty]}}]}}\n"
    ));
    let b = &c.pool_extras[0].disruption.budgets[0];
    assert_eq!(b.nodes, IntOrPercent::Int(3));
    assert_eq!(b.reasons, [Reason::Expired, Reason::Empty]);
}

const PDB_HEAD: &str =
    "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web, namespace: shop}\n";

#[test]
fn pod_disruption_budgets_load() {
    let c = ok(&format!(
        "{PDB_HEAD}spec:\n  minAvailable: \"50%\"\n  selector:\n    matchLabels: {{app: web}}\n    matchExpressions:\n      - {{key: tier, operator: NotIn, values: [batch]}}\n"
    ));
    let p = &c.pdbs[0];
    assert_eq!((p.namespace.as_str(), p.name.as_str()), ("shop", "web"));
    assert_eq!(p.budget, Budget::MinAvailable(IntOrPercent::Percent(50)));
    assert_eq!(p.selector.match_labels["app"], "web");
    assert_eq!(p.selector.match_expressions[0].operator, Operator::NotIn);
    let c = ok(&format!(
        "{PDB_HEAD}spec: {{maxUnavailable: 1, selector: {{}}}}\n"
    ));
    assert_eq!(
        c.pdbs[0].budget,
        Budget::MaxUnavailable(IntOrPercent::Int(1))
    );
}

#[test]
fn pod_disruption_budget_errors_name_their_path() {
    one_err(
        &format!("{PDB_HEAD}spec: {{minAvailable: 1, maxUnavailable: 1, selector: {{}}}}\n"),
        "spec",
        "cannot both be set",
    );
    one_err(
        &format!("{PDB_HEAD}spec: {{selector: {{}}}}\n"),
        "spec",
        "one of minAvailable or maxUnavailable",
    );
    one_err(
        &format!("{PDB_HEAD}spec: {{minAvailable: \"-1\", selector: {{}}}}\n"),
        "spec.minAvailable",
        "non-negative",
    );
    one_err(
        &format!("{PDB_HEAD}spec: {{minAvailable: 1}}\n"),
        "spec",
        "missing required field \"selector\"",
    );
    one_err(
        &format!("{PDB_HEAD}spec: {{minAvailable: 1, selector: {{matchExpressions: [{{key: a, operator: Gt, values: [\"1\"]}}]}}}}\n"),
        "spec.selector.matchExpressions[0].operator",
        "unknown operator",
    );
    one_err(
        &format!("{PDB_HEAD}spec: {{minAvailable: 1, selector: {{matchExpressions: [{{key: a, operator: In}}]}}}}\n"),
        "spec.selector.matchExpressions[0].values",
        "needs at least one value",
    );
    one_err(
        "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec: {minAvailable: 1, selector: {}}\n",
        "apiVersion",
        "policy/v1",
    );
    let dup = format!("{PDB_HEAD}spec: {{minAvailable: 1, selector: {{}}}}\n");
    one_err(
        &format!("{dup}---\n{dup}"),
        "metadata.name",
        "duplicate PodDisruptionBudget shop/web",
    );
}

#[test]
fn the_bundled_pdb_example_loads() {
    let c = load_path(std::path::Path::new("config/examples/pdbs.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.pdbs.is_empty());
}
