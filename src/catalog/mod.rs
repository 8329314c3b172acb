//! The EC2 instance catalog: `config/catalog/instance-types.json` (see
//! `config/catalog/PROVENANCE.md`) turned into the core's [`Catalog`].
//!
//! Every type in the file becomes an [`InstanceType`], in file order (the file is sorted
//! by family, then name). Its labels, capacity and allocatable come from the file's
//! specs and the [`OverheadSettings`]; its offerings from the region's on-demand and
//! (estimated) Spot prices plus any [`SpotPriceOverride`]s. A type with no price in the
//! region gets no offering: it stays in the catalog (so a pod can be told why nothing
//! fits) but can never be launched.

mod overhead;

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::core::instance::{CapacityType, Catalog, InstanceType, Offering};
use crate::core::labels::{self, Labels};
use crate::core::resources::{Resources, GPU_NVIDIA};

pub use overhead::{
    allocatable, kube_reserved_cpu_milli, vm_memory_overhead_mib, OverheadSettings,
};

pub const GPU_AMD: &str = "amd.com/gpu";
pub const NEURON: &str = "aws.amazon.com/neuron";
pub const NEURON_CORE: &str = "aws.amazon.com/neuroncore";

/// Name under which [`load_embedded`] reports errors.
pub const EMBEDDED_SOURCE: &str = "config/catalog/instance-types.json";
const EMBEDDED_JSON: &str = include_str!("../../config/catalog/instance-types.json");

/// Replaces (or supplies) the Spot price of one instance type, in every zone
/// (`zone: None`) or in one zone. A zone-specific override beats a type-wide one; among
/// overrides with the same type and zone, the last one wins.
#[derive(Clone, Debug, PartialEq)]
pub struct SpotPriceOverride {
    pub instance_type: String,
    pub zone: Option<String>,
    pub price_per_hour: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CatalogOptions {
    /// Region whose prices are used (the file has on-demand prices for us-east-1 only).
    pub region: String,
    /// Zones to offer every priced type in; an offering's `zone` indexes this list.
    pub zones: Vec<String>,
    pub spot_price_overrides: Vec<SpotPriceOverride>,
    pub overhead: OverheadSettings,
}

impl Default for CatalogOptions {
    fn default() -> Self {
        CatalogOptions {
            region: "us-east-1".to_string(),
            zones: ["us-east-1a", "us-east-1b", "us-east-1c"]
                .iter()
                .map(|z| z.to_string())
                .collect(),
            spot_price_overrides: Vec::new(),
            overhead: OverheadSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{source_name}: not a valid instance-type catalog: {error}")]
    Json {
        source_name: String,
        #[source]
        error: serde_json::Error,
    },
    #[error("{source_name}: the catalog holds no instance types")]
    Empty { source_name: String },
    #[error("{source_name}: instance type `{instance_type}`: field `{field}`: {message}")]
    Field {
        source_name: String,
        instance_type: String,
        field: &'static str,
        message: String,
    },
    #[error("{source_name}: instance type `{instance_type}` appears more than once")]
    DuplicateType {
        source_name: String,
        instance_type: String,
    },
    #[error("catalog options: no zones configured for region `{region}`")]
    NoZones { region: String },
    #[error("catalog options: zone `{zone}` is listed more than once")]
    DuplicateZone { zone: String },
    #[error("spot price override: instance type `{instance_type}` is not in {source_name}")]
    UnknownOverrideType {
        source_name: String,
        instance_type: String,
    },
    #[error(
        "spot price override for `{instance_type}`: zone `{zone}` is not one of the configured zones"
    )]
    UnknownOverrideZone { instance_type: String, zone: String },
    #[error(
        "spot price override for `{instance_type}`: price {price} is not a finite, non-negative $/hour"
    )]
    InvalidOverridePrice { instance_type: String, price: f64 },
}

// ---------------------------------------------------------------------------------------
// The file's shape: only the fields stevedore uses. serde skips everything else.

#[derive(Deserialize)]
struct RawType {
    name: String,
    family: Option<String>,
    vcpu: Option<i64>,
    memory_mib: Option<i64>,
    architecture: Option<String>,
    #[serde(default)]
    gpu_count: i64,
    gpu_model: Option<String>,
    gpu_manufacturer: Option<String>,
    gpu_memory_mib: Option<i64>,
    accelerator: Option<RawAccelerator>,
    category: Option<String>,
    generation: Option<i64>,
    size: Option<String>,
    cpu_manufacturer: Option<String>,
    hypervisor: Option<String>,
    local_nvme_gib: Option<i64>,
    network_bandwidth_mbps: Option<i64>,
    max_pods: Option<i64>,
    #[serde(default)]
    on_demand_price_usd_per_hour: BTreeMap<String, f64>,
    #[serde(default)]
    spot_advisor_linux: BTreeMap<String, RawSpotAdvice>,
    karpenter_allocatable_al2023: Option<RawKarpenterAllocatable>,
}

#[derive(Deserialize)]
struct RawAccelerator {
    count: i64,
    name: Option<String>,
    manufacturer: Option<String>,
}

#[derive(Deserialize)]
struct RawSpotAdvice {
    estimated_spot_price_usd_per_hour: Option<f64>,
}

/// Only the neuron-core count is taken from Karpenter's allocatable column: the file
/// has no other source for cores per Neuron device.
#[derive(Deserialize)]
struct RawKarpenterAllocatable {
    #[serde(rename = "aws.amazon.com/neuroncore")]
    neuroncore: Option<i64>,
}

// ---------------------------------------------------------------------------------------

/// The catalog compiled into the binary.
pub fn load_embedded(opts: &CatalogOptions) -> Result<Catalog, CatalogError> {
    parse(EMBEDDED_JSON, EMBEDDED_SOURCE, opts)
}

/// Parses a catalog file's contents. `source_name` names it in errors.
pub fn parse(
    json: &str,
    source_name: &str,
    opts: &CatalogOptions,
) -> Result<Catalog, CatalogError> {
    let raw: Vec<RawType> = serde_json::from_str(json).map_err(|error| CatalogError::Json {
        source_name: source_name.to_string(),
        error,
    })?;
    if raw.is_empty() {
        return Err(CatalogError::Empty {
            source_name: source_name.to_string(),
        });
    }
    if opts.zones.is_empty() {
        return Err(CatalogError::NoZones {
            region: opts.region.clone(),
        });
    }
    for (i, z) in opts.zones.iter().enumerate() {
        if opts.zones[..i].contains(z) {
            return Err(CatalogError::DuplicateZone { zone: z.clone() });
        }
    }

    let mut seen: HashMap<&str, ()> = HashMap::with_capacity(raw.len());
    for t in &raw {
        if seen.insert(t.name.as_str(), ()).is_some() {
            return Err(CatalogError::DuplicateType {
                source_name: source_name.to_string(),
                instance_type: t.name.clone(),
            });
        }
    }
    let overrides = resolve_overrides(opts, source_name, &seen)?;

    let mut types = Vec::with_capacity(raw.len());
    for t in &raw {
        types.push(build_type(t, source_name, opts, &overrides)?);
    }
    Ok(Catalog {
        region: opts.region.clone(),
        zones: opts.zones.clone(),
        types,
    })
}

/// Per instance type: (type-wide price, per-zone prices indexed like `opts.zones`).
type Overrides<'a> = HashMap<&'a str, (Option<f64>, Vec<Option<f64>>)>;

fn resolve_overrides<'a>(
    opts: &'a CatalogOptions,
    source_name: &str,
    known: &HashMap<&str, ()>,
) -> Result<Overrides<'a>, CatalogError> {
    let mut out: Overrides<'a> = HashMap::new();
    for o in &opts.spot_price_overrides {
        if !known.contains_key(o.instance_type.as_str()) {
            return Err(CatalogError::UnknownOverrideType {
                source_name: source_name.to_string(),
                instance_type: o.instance_type.clone(),
            });
        }
        if !(o.price_per_hour.is_finite() && o.price_per_hour >= 0.0) {
            return Err(CatalogError::InvalidOverridePrice {
                instance_type: o.instance_type.clone(),
                price: o.price_per_hour,
            });
        }
        let entry = out
            .entry(o.instance_type.as_str())
            .or_insert_with(|| (None, vec![None; opts.zones.len()]));
        match &o.zone {
            None => entry.0 = Some(o.price_per_hour),
            Some(z) => {
                let zi = opts.zones.iter().position(|x| x == z).ok_or_else(|| {
                    CatalogError::UnknownOverrideZone {
                        instance_type: o.instance_type.clone(),
                        zone: z.clone(),
                    }
                })?;
                entry.1[zi] = Some(o.price_per_hour);
            }
        }
    }
    Ok(out)
}

fn field_error(source_name: &str, t: &RawType, field: &'static str, message: &str) -> CatalogError {
    CatalogError::Field {
        source_name: source_name.to_string(),
        instance_type: t.name.clone(),
        field,
        message: message.to_string(),
    }
}

fn positive(
    v: Option<i64>,
    source_name: &str,
    t: &RawType,
    field: &'static str,
) -> Result<i64, CatalogError> {
    match v {
        None => Err(field_error(source_name, t, field, "missing or null")),
        Some(x) if x <= 0 => Err(field_error(
            source_name,
            t,
            field,
            &format!("must be positive, got {x}"),
        )),
        Some(x) => Ok(x),
    }
}

fn price(
    v: Option<f64>,
    source_name: &str,
    t: &RawType,
    field: &'static str,
) -> Result<Option<f64>, CatalogError> {
    match v {
        Some(p) if !(p.is_finite() && p >= 0.0) => Err(field_error(
            source_name,
            t,
            field,
            &format!("price must be a finite, non-negative $/hour, got {p}"),
        )),
        other => Ok(other),
    }
}

/// Category and generation from the type name, the way Karpenter parses it
/// (`^([a-z]+)(-[0-9]+tb)?([0-9]+).*\.`): `m5d.large` -> (m, 5), `u-6tb1.metal` -> (u, 1).
/// Used only for the types whose record lacks them.
pub fn category_and_generation(name: &str) -> Option<(&str, i64)> {
    let family = &name[..name.find('.')?];
    let letters = family.bytes().take_while(u8::is_ascii_lowercase).count();
    if letters == 0 {
        return None;
    }
    let category = &family[..letters];
    let mut rest = &family[letters..];
    // Optional "-<digits>tb" (high-memory u-*tb* types).
    if let Some(after) = rest.strip_prefix('-') {
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with("tb") {
            rest = &after[digits + 2..];
        }
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    Some((category, rest[..digits].parse().ok()?))
}

fn set_attr(labels: &mut Labels, attr: &str, value: String) {
    labels.insert(
        format!("{}{attr}", labels::KARPENTER_AWS_PREFIX),
        value.clone(),
    );
    labels.insert(format!("{}{attr}", labels::STEVEDORE_PREFIX), value);
}

fn build_type(
    t: &RawType,
    source_name: &str,
    opts: &CatalogOptions,
    overrides: &Overrides<'_>,
) -> Result<InstanceType, CatalogError> {
    let vcpu = positive(t.vcpu, source_name, t, "vcpu")?;
    let memory_mib = positive(t.memory_mib, source_name, t, "memory_mib")?;
    let max_pods = positive(t.max_pods, source_name, t, "max_pods")?;
    let (arch_label, arm64) = match t.architecture.as_deref() {
        Some("x86_64") => ("amd64", false),
        Some("arm64") => ("arm64", true),
        Some(other) => {
            return Err(field_error(
                source_name,
                t,
                "architecture",
                &format!("expected x86_64 or arm64, got `{other}`"),
            ))
        }
        None => {
            return Err(field_error(
                source_name,
                t,
                "architecture",
                "missing or null",
            ))
        }
    };
    if t.gpu_count < 0 {
        return Err(field_error(
            source_name,
            t,
            "gpu_count",
            "must not be negative",
        ));
    }

    // Labels.
    let mut l = Labels::new();
    l.insert(labels::INSTANCE_TYPE.to_string(), t.name.clone());
    l.insert(labels::INSTANCE_TYPE_BETA.to_string(), t.name.clone());
    l.insert(labels::ARCH.to_string(), arch_label.to_string());
    l.insert(labels::OS.to_string(), "linux".to_string());
    let family = match &t.family {
        Some(f) => f.clone(),
        None => t.name.split('.').next().unwrap_or(&t.name).to_string(),
    };
    set_attr(&mut l, "instance-family", family);
    let parsed = category_and_generation(&t.name);
    if let Some(c) = t.category.as_deref().or(parsed.map(|p| p.0)) {
        set_attr(&mut l, "instance-category", c.to_string());
    }
    if let Some(g) = t.generation.or(parsed.map(|p| p.1)) {
        set_attr(&mut l, "instance-generation", g.to_string());
    }
    if let Some(s) = t
        .size
        .as_deref()
        .or_else(|| t.name.split_once('.').map(|p| p.1))
    {
        set_attr(&mut l, "instance-size", s.to_string());
    }
    set_attr(&mut l, "instance-cpu", vcpu.to_string());
    set_attr(&mut l, "instance-memory", memory_mib.to_string());
    if t.gpu_count > 0 {
        set_attr(&mut l, "instance-gpu-count", t.gpu_count.to_string());
        if let Some(m) = &t.gpu_model {
            set_attr(&mut l, "instance-gpu-name", m.clone());
        }
        if let Some(m) = &t.gpu_manufacturer {
            set_attr(&mut l, "instance-gpu-manufacturer", m.clone());
        }
        if let Some(m) = t.gpu_memory_mib {
            set_attr(&mut l, "instance-gpu-memory", m.to_string());
        }
    }
    if let Some(h) = &t.hypervisor {
        set_attr(&mut l, "instance-hypervisor", h.clone());
    }
    if let Some(m) = &t.cpu_manufacturer {
        set_attr(&mut l, "instance-cpu-manufacturer", m.clone());
    }
    if let Some(n) = t.local_nvme_gib {
        set_attr(&mut l, "instance-local-nvme", n.to_string());
    }
    if let Some(n) = t.network_bandwidth_mbps {
        set_attr(&mut l, "instance-network-bandwidth", n.to_string());
    }
    if let Some(a) = &t.accelerator {
        if a.count > 0 {
            set_attr(&mut l, "instance-accelerator-count", a.count.to_string());
            if let Some(n) = &a.name {
                set_attr(&mut l, "instance-accelerator-name", n.clone());
            }
            if let Some(m) = &a.manufacturer {
                set_attr(&mut l, "instance-accelerator-manufacturer", m.clone());
            }
        }
    }

    // Extended resources, shared by capacity and allocatable.
    let mut extended = Resources::default();
    if t.gpu_count > 0 {
        match t.gpu_manufacturer.as_deref() {
            Some("nvidia") => extended.set_extended(GPU_NVIDIA, t.gpu_count),
            Some("amd") => extended.set_extended(GPU_AMD, t.gpu_count),
            // Unknown manufacturer (p3.*, dl1.24xlarge): no device-plugin resource.
            _ => {}
        }
    }
    if let Some(a) = &t.accelerator {
        if a.manufacturer.as_deref() == Some("aws") && a.count > 0 {
            extended.set_extended(NEURON, a.count);
            if let Some(cores) = t
                .karpenter_allocatable_al2023
                .as_ref()
                .and_then(|k| k.neuroncore)
            {
                extended.set_extended(NEURON_CORE, cores.max(0));
            }
        }
    }

    let overhead = &opts.overhead;
    let capacity = Resources {
        cpu_milli: vcpu * 1000,
        memory: memory_mib << 20,
        ephemeral: overhead.root_volume_bytes,
        pods: max_pods,
        extended: extended.extended.clone(),
    };
    let visible_mib = if arm64 {
        memory_mib - overhead.arm64_reserved_memory_mib
    } else {
        memory_mib
    };
    let mut alloc = allocatable(vcpu, visible_mib, max_pods, overhead);
    alloc.extended = extended.extended;

    // Offerings.
    let region = opts.region.as_str();
    let on_demand = price(
        t.on_demand_price_usd_per_hour.get(region).copied(),
        source_name,
        t,
        "on_demand_price_usd_per_hour",
    )?;
    let catalog_spot = price(
        t.spot_advisor_linux
            .get(region)
            .and_then(|s| s.estimated_spot_price_usd_per_hour),
        source_name,
        t,
        "spot_advisor_linux.estimated_spot_price_usd_per_hour",
    )?;
    let ov = overrides.get(t.name.as_str());
    let mut offerings = Vec::new();
    for zone in 0..opts.zones.len() {
        let spot = ov
            .and_then(|(wide, per_zone)| per_zone[zone].or(*wide))
            .or(catalog_spot);
        if let Some(p) = spot {
            offerings.push(Offering {
                zone,
                capacity_type: CapacityType::Spot,
                price_per_hour: p,
            });
        }
        if let Some(p) = on_demand {
            offerings.push(Offering {
                zone,
                capacity_type: CapacityType::OnDemand,
                price_per_hour: p,
            });
        }
    }

    Ok(InstanceType {
        name: t.name.clone(),
        labels: l,
        capacity,
        allocatable: alloc,
        offerings,
    })
}

#[cfg(test)]
mod tests;
