//! `kind: Settings`: controller and simulator settings, with their defaults.

use super::walk::{self, index, join, Ctx};
use super::yaml::Node;
use crate::core::instance::CapacityType;
use crate::core::labels::Labels;
use crate::core::taints::Taint;
use std::time::Duration;

const MI: i64 = 1 << 20;

/// Controller/simulator settings. `Default` gives the documented defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// How often the controller looks for pending pods and consolidation chances.
    pub scan_interval: Duration,
    /// A batch of pending pods closes once no new pod arrived for this long...
    pub batch_idle: Duration,
    /// ...or once it has been open this long.
    pub batch_max: Duration,
    /// Launch-to-ready delay, drawn uniformly from `min..=max`.
    pub boot_delay: BootDelay,
    /// How long an offering that failed with insufficient capacity is skipped.
    pub unavailable_offering_ttl: Duration,
    /// At most this many instance types are passed to one launch request.
    pub max_launch_options: usize,
    pub region: String,
    /// The region's zones nodes may launch in.
    pub zones: Vec<String>,
    /// Spot prices that replace the catalog's.
    pub spot_price_overrides: Vec<SpotPriceOverride>,
    /// How allocatable is derived from an instance type's capacity.
    pub overhead: Overhead,
    /// Fixed node groups for the simulator's `node-groups` (Cluster Autoscaler) mode.
    pub node_groups: Vec<NodeGroup>,
    pub node_group_scale_down: NodeGroupScaleDown,
    /// DaemonSet pods assumed on every node they tolerate and select.
    pub daemon_sets: Vec<DaemonSet>,
    /// The AWS provider's settings; `None` when the file has no `aws:` block.
    pub aws: Option<super::aws::AwsSettings>,
    /// Consolidation keeps the capacity the peak demand of this recent window needed
    /// (`consolidationWindow`; zero, the default, keeps nothing extra, as Karpenter).
    pub consolidation_window: Duration,
    /// Dollars one pod eviction costs (`evictionCost`): a consolidation acts only when
    /// its savings pay for its evictions (`core::consolidation::Payback`). Zero lets any
    /// saving act, as Karpenter.
    pub eviction_cost: f64,
    /// Steer the ReplicaSets' scale-downs into the nodes that empty soonest and save the
    /// most (`podDeletionCost`, `core::deletion_cost`): the controller writes each
    /// steered pod's `controller.kubernetes.io/pod-deletion-cost`.
    pub pod_deletion_cost: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootDelay {
    pub min: Duration,
    pub max: Duration,
}

/// The catalog's own override type: settings hand it over as it is.
pub use crate::catalog::SpotPriceOverride;

/// Reservations subtracted from capacity to get allocatable (the EKS AMI's formulas).
#[derive(Clone, Debug, PartialEq)]
pub struct Overhead {
    /// Fraction of memory the hypervisor/OS keeps (0.075 = 7.5%).
    pub vm_memory_overhead_percent: f64,
    /// kube-reserved memory per pod the type can hold, bytes.
    pub kube_reserved_memory_per_pod: i64,
    /// kube-reserved memory base, bytes.
    pub kube_reserved_memory_base: i64,
    /// Hard eviction threshold `memory.available`, bytes.
    pub eviction_memory: i64,
    pub system_reserved_cpu_milli: i64,
    /// Bytes.
    pub system_reserved_memory: i64,
}

/// A fixed-type node group (an auto scaling group, Cluster Autoscaler style).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeGroup {
    pub name: String,
    /// Not checked against the catalog here: the simulator must.
    pub instance_type: String,
    pub capacity_type: CapacityType,
    /// Resolved: `Settings::zones` when the file gives none.
    pub zones: Vec<String>,
    pub min_size: u32,
    pub max_size: u32,
    pub labels: Labels,
    pub taints: Vec<Taint>,
}

/// Cluster Autoscaler's scale-down rule for node groups.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeGroupScaleDown {
    /// A node whose requested/allocatable (max of CPU and memory) is below this...
    pub utilization_threshold: f64,
    /// ...for this long is removed if its pods fit elsewhere.
    pub unneeded_time: Duration,
}

/// A DaemonSet whose pod runs on every node it may run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSet {
    pub name: String,
    pub namespace: String,
    pub cpu_milli: i64,
    /// Bytes.
    pub memory: i64,
    /// Tolerates every taint (as EKS add-ons do); when false it lands only on untainted
    /// nodes.
    pub tolerate_all: bool,
    /// The pod runs only on nodes with all these labels.
    pub node_selector: Labels,
}

impl DaemonSet {
    fn new(name: &str, cpu_milli: i64, memory: i64) -> Self {
        DaemonSet {
            name: name.into(),
            namespace: "kube-system".into(),
            cpu_milli,
            memory,
            tolerate_all: true,
            node_selector: Labels::new(),
        }
    }
}

/// The EKS add-on DaemonSets of a fresh cluster, with their default requests.
pub fn eks_default_daemon_sets() -> Vec<DaemonSet> {
    vec![
        // Amazon VPC CNI (aws-node): requests cpu 25m, no memory request.
        DaemonSet::new("aws-node", 25, 0),
        // kube-proxy EKS add-on: requests cpu 100m, no memory request.
        DaemonSet::new("kube-proxy", 100, 0),
        // EKS Pod Identity Agent: an estimate; check your cluster.
        DaemonSet::new("eks-pod-identity-agent", 25, 0),
        // EBS CSI node plugin: three containers of 10m / 40Mi each.
        DaemonSet::new("ebs-csi-node", 30, 120 * MI),
    ]
}

/// Default `evictionCost`, dollars per evicted pod (docs/configuration.md says why).
pub const DEFAULT_EVICTION_COST: f64 = 0.05;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            scan_interval: Duration::from_secs(10),
            batch_idle: Duration::from_secs(1),
            batch_max: Duration::from_secs(10),
            boot_delay: BootDelay {
                min: Duration::from_secs(40),
                max: Duration::from_secs(90),
            },
            unavailable_offering_ttl: Duration::from_secs(180),
            max_launch_options: 60,
            region: "us-east-1".into(),
            zones: ["us-east-1a", "us-east-1b", "us-east-1c"]
                .iter()
                .map(|z| z.to_string())
                .collect(),
            spot_price_overrides: Vec::new(),
            overhead: Overhead::default(),
            node_groups: Vec::new(),
            node_group_scale_down: NodeGroupScaleDown {
                utilization_threshold: 0.5,
                unneeded_time: Duration::from_secs(600),
            },
            daemon_sets: eks_default_daemon_sets(),
            aws: None,
            consolidation_window: Duration::ZERO,
            eviction_cost: DEFAULT_EVICTION_COST,
            pod_deletion_cost: true,
        }
    }
}

impl Default for Overhead {
    fn default() -> Self {
        Overhead {
            vm_memory_overhead_percent: 0.075,
            kube_reserved_memory_per_pod: 11 * MI,
            kube_reserved_memory_base: 255 * MI,
            eviction_memory: 100 * MI,
            system_reserved_cpu_milli: 0,
            system_reserved_memory: 0,
        }
    }
}

const FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "scanInterval",
    "batchIdle",
    "batchMax",
    "bootDelay",
    "unavailableOfferingTTL",
    "maxLaunchOptions",
    "region",
    "zones",
    "spotPriceOverrides",
    "overhead",
    "nodeGroups",
    "nodeGroupScaleDown",
    "daemonSets",
    "aws",
    "consolidationWindow",
    "evictionCost",
    "podDeletionCost",
];

/// Parses a `kind: Settings` document (apiVersion and kind already checked). Errors go
/// to `ctx`; the returned settings hold defaults where a field was wrong.
pub fn parse(ctx: &mut Ctx, root: &Node) -> Settings {
    let mut s = Settings::default();
    let Some(f) = walk::fields(ctx, root, "", FIELDS) else {
        return s;
    };
    if let Some(md) = f.get("metadata") {
        if let Some(m) = walk::fields(ctx, md, "metadata", &["name", "labels", "annotations"]) {
            if let Some(n) = m.get("name") {
                walk::string(ctx, n, "metadata.name");
            }
        }
    }
    let dur = |ctx: &mut Ctx, key: &str, slot: &mut Duration| {
        if let Some(n) = f.get(key) {
            if let Some(d) = walk::duration(ctx, n, key) {
                *slot = d;
            }
        }
    };
    dur(ctx, "scanInterval", &mut s.scan_interval);
    dur(ctx, "batchIdle", &mut s.batch_idle);
    dur(ctx, "batchMax", &mut s.batch_max);
    dur(ctx, "consolidationWindow", &mut s.consolidation_window);
    if let Some(n) = f.get("evictionCost") {
        match walk::float(ctx, n, "evictionCost") {
            Some(x) if x >= 0.0 => s.eviction_cost = x,
            Some(x) => ctx.err(n.line, "evictionCost", format!("{x} must not be negative")),
            None => {}
        }
    }
    if let Some(n) = f.get("podDeletionCost") {
        if let Some(b) = walk::boolean(ctx, n, "podDeletionCost") {
            s.pod_deletion_cost = b;
        }
    }
    dur(
        ctx,
        "unavailableOfferingTTL",
        &mut s.unavailable_offering_ttl,
    );
    for (key, d) in [("scanInterval", s.scan_interval), ("batchMax", s.batch_max)] {
        if d.is_zero() {
            let line = f.get(key).map_or(f.line, |n| n.line);
            ctx.err(line, key, "must be greater than zero");
        }
    }
    if s.batch_idle > s.batch_max {
        let line = f.get("batchIdle").map_or(f.line, |n| n.line);
        ctx.err(line, "batchIdle", "must not exceed batchMax");
    }
    if let Some(n) = f.get("bootDelay") {
        if let Some(b) = walk::fields(ctx, n, "bootDelay", &["min", "max"]) {
            if let Some(v) = b.get("min") {
                s.boot_delay.min =
                    walk::duration(ctx, v, "bootDelay.min").unwrap_or(s.boot_delay.min);
            }
            if let Some(v) = b.get("max") {
                s.boot_delay.max =
                    walk::duration(ctx, v, "bootDelay.max").unwrap_or(s.boot_delay.max);
            }
            if s.boot_delay.min > s.boot_delay.max {
                ctx.err(b.line, "bootDelay", "min must not exceed max");
            }
        }
    }
    if let Some(n) = f.get("maxLaunchOptions") {
        if let Some(v) = walk::int_in(ctx, n, "maxLaunchOptions", 1, 1000) {
            s.max_launch_options = v as usize;
        }
    }
    if let Some(n) = f.get("region") {
        if let Some(r) = walk::string(ctx, n, "region") {
            if walk::is_dns1123_label(&r) {
                s.region = r;
            } else {
                ctx.err(n.line, "region", format!("invalid region {r:?}"));
            }
        }
    }
    if let Some(n) = f.get("zones") {
        let zones = walk::strings(ctx, n, "zones");
        if zones.is_empty() {
            ctx.err(n.line, "zones", "needs at least one zone");
        } else {
            s.zones = zones;
        }
    }
    let zones_line = f.get("zones").map_or(f.line, |n| n.line);
    for (i, z) in s.zones.iter().enumerate() {
        if !z.starts_with(&s.region) || z.len() == s.region.len() {
            ctx.err(
                zones_line,
                &index("zones", i),
                format!("zone {z:?} is not in region {:?}", s.region),
            );
        }
        if s.zones[..i].contains(z) {
            ctx.err(
                zones_line,
                &index("zones", i),
                format!("duplicate zone {z:?}"),
            );
        }
    }
    if let Some(n) = f.get("spotPriceOverrides") {
        s.spot_price_overrides = spot_overrides(ctx, n, &s.zones);
    }
    if let Some(n) = f.get("overhead") {
        s.overhead = overhead(ctx, n);
    }
    if let Some(n) = f.get("nodeGroupScaleDown") {
        let p = "nodeGroupScaleDown";
        if let Some(g) = walk::fields(ctx, n, p, &["utilizationThreshold", "unneededTime"]) {
            if let Some(v) = g.get("utilizationThreshold") {
                let fp = join(p, "utilizationThreshold");
                match walk::float(ctx, v, &fp) {
                    Some(x) if (0.0..=1.0).contains(&x) => {
                        s.node_group_scale_down.utilization_threshold = x
                    }
                    Some(x) => ctx.err(v.line, &fp, format!("{x} is not between 0 and 1")),
                    None => {}
                }
            }
            if let Some(v) = g.get("unneededTime") {
                if let Some(d) = walk::duration(ctx, v, &join(p, "unneededTime")) {
                    s.node_group_scale_down.unneeded_time = d;
                }
            }
        }
    }
    if let Some(n) = f.get("nodeGroups") {
        s.node_groups = node_groups(ctx, n, &s.zones);
    }
    if let Some(n) = f.get("daemonSets") {
        s.daemon_sets = daemon_sets(ctx, n);
    }
    if let Some(n) = f.get("aws") {
        s.aws = super::aws::parse(ctx, n);
    }
    s
}

fn spot_overrides(ctx: &mut Ctx, node: &Node, zones: &[String]) -> Vec<SpotPriceOverride> {
    let p = "spotPriceOverrides";
    let mut out = Vec::new();
    for (i, item) in walk::seq(ctx, node, p).iter().enumerate() {
        let ip = index(p, i);
        let Some(f) = walk::fields(ctx, item, &ip, &["instanceType", "zone", "pricePerHour"])
        else {
            continue;
        };
        let it = f
            .required(ctx, &ip, "instanceType")
            .and_then(|n| walk::string(ctx, n, &join(&ip, "instanceType")));
        let zone = f.get("zone").and_then(|n| {
            let z = walk::string(ctx, n, &join(&ip, "zone"))?;
            if !zones.contains(&z) {
                ctx.err(
                    n.line,
                    &join(&ip, "zone"),
                    format!("zone {z:?} is not one of zones ({})", zones.join(", ")),
                );
            }
            Some(z)
        });
        let price = f.required(ctx, &ip, "pricePerHour").and_then(|n| {
            let fp = join(&ip, "pricePerHour");
            let v = walk::float(ctx, n, &fp)?;
            if v <= 0.0 {
                ctx.err(n.line, &fp, format!("price {v} must be positive"));
                return None;
            }
            Some(v)
        });
        if let (Some(instance_type), Some(price_per_hour)) = (it, price) {
            out.push(SpotPriceOverride {
                instance_type,
                zone,
                price_per_hour,
            });
        }
    }
    out
}

fn overhead(ctx: &mut Ctx, node: &Node) -> Overhead {
    let p = "overhead";
    let mut o = Overhead::default();
    let Some(f) = walk::fields(
        ctx,
        node,
        p,
        &[
            "vmMemoryOverheadPercent",
            "kubeReservedMemoryPerPod",
            "kubeReservedMemoryBase",
            "evictionMemory",
            "systemReservedCPU",
            "systemReservedMemory",
        ],
    ) else {
        return o;
    };
    if let Some(n) = f.get("vmMemoryOverheadPercent") {
        let fp = join(p, "vmMemoryOverheadPercent");
        match walk::float(ctx, n, &fp) {
            Some(x) if (0.0..1.0).contains(&x) => o.vm_memory_overhead_percent = x,
            Some(x) => ctx.err(
                n.line,
                &fp,
                format!("{x} is not a fraction in [0, 1) (0.075 means 7.5%)"),
            ),
            None => {}
        }
    }
    let mem = |ctx: &mut Ctx, key: &str, slot: &mut i64| {
        if let Some(n) = f.get(key) {
            if let Some(v) = walk::units(ctx, n, &join(p, key)) {
                *slot = v;
            }
        }
    };
    mem(
        ctx,
        "kubeReservedMemoryPerPod",
        &mut o.kube_reserved_memory_per_pod,
    );
    mem(
        ctx,
        "kubeReservedMemoryBase",
        &mut o.kube_reserved_memory_base,
    );
    mem(ctx, "evictionMemory", &mut o.eviction_memory);
    mem(ctx, "systemReservedMemory", &mut o.system_reserved_memory);
    if let Some(n) = f.get("systemReservedCPU") {
        if let Some(v) = walk::cpu(ctx, n, &join(p, "systemReservedCPU")) {
            o.system_reserved_cpu_milli = v;
        }
    }
    o
}

fn node_groups(ctx: &mut Ctx, node: &Node, all_zones: &[String]) -> Vec<NodeGroup> {
    let p = "nodeGroups";
    let mut out: Vec<NodeGroup> = Vec::new();
    for (i, item) in walk::seq(ctx, node, p).iter().enumerate() {
        let ip = index(p, i);
        let Some(f) = walk::fields(
            ctx,
            item,
            &ip,
            &[
                "name",
                "instanceType",
                "capacityType",
                "zones",
                "minSize",
                "maxSize",
                "labels",
                "taints",
            ],
        ) else {
            continue;
        };
        let before = ctx.errors.len();
        let name = f.required(ctx, &ip, "name").and_then(|n| {
            let s = walk::string(ctx, n, &join(&ip, "name"))?;
            if !walk::is_dns1123_subdomain(&s) || s.len() > 63 {
                ctx.err(
                    n.line,
                    &join(&ip, "name"),
                    format!(
                        "invalid name {s:?}: must be a DNS-1123 subdomain of at most 63 characters"
                    ),
                );
            } else if out.iter().any(|g| g.name == s) {
                ctx.err(
                    n.line,
                    &join(&ip, "name"),
                    format!("duplicate node group {s:?}"),
                );
            }
            Some(s)
        });
        let instance_type = f
            .required(ctx, &ip, "instanceType")
            .and_then(|n| walk::string(ctx, n, &join(&ip, "instanceType")));
        let capacity_type = match f.get("capacityType") {
            None => Some(CapacityType::OnDemand),
            Some(n) => walk::string(ctx, n, &join(&ip, "capacityType")).and_then(|s| {
                let c = CapacityType::parse(&s);
                if c.is_none() {
                    ctx.err(
                        n.line,
                        &join(&ip, "capacityType"),
                        format!("unknown capacity type {s:?} (expected spot, on-demand)"),
                    );
                }
                c
            }),
        };
        let zones = match f.get("zones") {
            None => all_zones.to_vec(),
            Some(n) => {
                let zp = join(&ip, "zones");
                let zs = walk::strings(ctx, n, &zp);
                if zs.is_empty() {
                    ctx.err(
                        n.line,
                        &zp,
                        "needs at least one zone (omit it for all zones)",
                    );
                }
                for z in &zs {
                    if !all_zones.contains(z) {
                        ctx.err(
                            n.line,
                            &zp,
                            format!("zone {z:?} is not one of zones ({})", all_zones.join(", ")),
                        );
                    }
                }
                zs
            }
        };
        let min_size = f.get("minSize").map_or(Some(0), |n| {
            walk::int_in(ctx, n, &join(&ip, "minSize"), 0, 100_000)
        });
        let max_size = f
            .required(ctx, &ip, "maxSize")
            .and_then(|n| walk::int_in(ctx, n, &join(&ip, "maxSize"), 1, 100_000));
        if let (Some(lo), Some(hi)) = (min_size, max_size) {
            if lo > hi {
                let line = f.get("minSize").map_or(f.line, |n| n.line);
                ctx.err(
                    line,
                    &join(&ip, "minSize"),
                    format!("minSize {lo} exceeds maxSize {hi}"),
                );
            }
        }
        let labels = f
            .get("labels")
            .map_or_else(Labels::new, |n| walk::labels(ctx, n, &join(&ip, "labels")));
        let taints = f
            .get("taints")
            .map_or_else(Vec::new, |n| walk::taints(ctx, n, &join(&ip, "taints")));
        if ctx.errors.len() > before {
            continue;
        }
        if let (Some(name), Some(instance_type), Some(capacity_type), Some(lo), Some(hi)) =
            (name, instance_type, capacity_type, min_size, max_size)
        {
            out.push(NodeGroup {
                name,
                instance_type,
                capacity_type,
                zones,
                min_size: lo as u32,
                max_size: hi as u32,
                labels,
                taints,
            });
        }
    }
    out
}

fn daemon_sets(ctx: &mut Ctx, node: &Node) -> Vec<DaemonSet> {
    let p = "daemonSets";
    let mut out: Vec<DaemonSet> = Vec::new();
    for (i, item) in walk::seq(ctx, node, p).iter().enumerate() {
        let ip = index(p, i);
        let Some(f) = walk::fields(
            ctx,
            item,
            &ip,
            &[
                "name",
                "namespace",
                "cpu",
                "memory",
                "tolerateAll",
                "nodeSelector",
            ],
        ) else {
            continue;
        };
        let before = ctx.errors.len();
        let name = f.required(ctx, &ip, "name").and_then(|n| {
            let s = walk::string(ctx, n, &join(&ip, "name"))?;
            if !walk::is_dns1123_subdomain(&s) {
                ctx.err(n.line, &join(&ip, "name"), format!("invalid name {s:?}"));
            }
            Some(s)
        });
        let namespace = match f.get("namespace") {
            None => Some("kube-system".to_string()),
            Some(n) => walk::string(ctx, n, &join(&ip, "namespace")).inspect(|s| {
                if !walk::is_dns1123_label(s) {
                    ctx.err(
                        n.line,
                        &join(&ip, "namespace"),
                        format!("invalid namespace {s:?}"),
                    );
                }
            }),
        };
        if let (Some(n), Some(ns)) = (&name, &namespace) {
            if out.iter().any(|d| &d.name == n && &d.namespace == ns) {
                ctx.err(f.line, &ip, format!("duplicate DaemonSet {ns}/{n}"));
            }
        }
        let cpu = f
            .get("cpu")
            .map_or(Some(0), |n| walk::cpu(ctx, n, &join(&ip, "cpu")));
        let memory = f
            .get("memory")
            .map_or(Some(0), |n| walk::units(ctx, n, &join(&ip, "memory")));
        let tolerate_all = f.get("tolerateAll").map_or(Some(true), |n| {
            walk::boolean(ctx, n, &join(&ip, "tolerateAll"))
        });
        let node_selector = f.get("nodeSelector").map_or_else(Labels::new, |n| {
            walk::labels(ctx, n, &join(&ip, "nodeSelector"))
        });
        if ctx.errors.len() > before {
            continue;
        }
        if let (Some(name), Some(namespace), Some(cpu_milli), Some(memory), Some(tolerate_all)) =
            (name, namespace, cpu, memory, tolerate_all)
        {
            out.push(DaemonSet {
                name,
                namespace,
                cpu_milli,
                memory,
                tolerate_all,
                node_selector,
            });
        }
    }
    out
}
