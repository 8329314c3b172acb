//! Turns configuration into what the simulator runs: the catalog, node pools (or the
//! node groups as one-type pools) and DaemonSet overhead templates.

use crate::catalog::{self, CatalogOptions, OverheadSettings};
use crate::config::{Config, DaemonSet, Settings};
use crate::core::instance::Catalog;
use crate::core::nodepool::NodePool;
use crate::core::pod::{OwnerRef, Pod};
use crate::core::resources::Resources;
use crate::core::taints::Toleration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SetupError {
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    #[error("settings: nodeGroups[{index}] ({name}): instance type {instance_type:?} is not in the catalog")]
    UnknownGroupType {
        index: usize,
        name: String,
        instance_type: String,
    },
    #[error("settings: nodeGroups is empty: node-groups mode needs at least one group")]
    NoNodeGroups,
}

pub fn catalog_options(settings: &Settings) -> CatalogOptions {
    let o = &settings.overhead;
    let mib = |b: i64| b >> 20;
    CatalogOptions {
        region: settings.region.clone(),
        zones: settings.zones.clone(),
        spot_price_overrides: settings.spot_price_overrides.clone(),
        overhead: OverheadSettings {
            vm_memory_overhead_percent: o.vm_memory_overhead_percent,
            kube_reserved_memory_per_pod_mib: mib(o.kube_reserved_memory_per_pod),
            kube_reserved_memory_base_mib: mib(o.kube_reserved_memory_base),
            eviction_memory_mib: mib(o.eviction_memory),
            system_reserved_cpu_milli: o.system_reserved_cpu_milli,
            system_reserved_memory_mib: mib(o.system_reserved_memory),
            ..OverheadSettings::default()
        },
    }
}

pub fn load_catalog(settings: &Settings) -> Result<Catalog, SetupError> {
    Ok(catalog::load_embedded(&catalog_options(settings))?)
}

/// A settings DaemonSet as the pod template the core reserves room for.
pub fn daemonset_pod(ds: &DaemonSet) -> Pod {
    let mut requests = Resources::new(ds.cpu_milli, ds.memory, 1);
    requests.pods = 1;
    Pod {
        namespace: ds.namespace.clone(),
        name: ds.name.clone(),
        owner: Some(OwnerRef {
            kind: "DaemonSet".into(),
            name: ds.name.clone(),
        }),
        requests,
        node_selector: ds.node_selector.clone(),
        tolerations: if ds.tolerate_all {
            vec![Toleration {
                key: String::new(),
                exists: true,
                value: String::new(),
                effect: None,
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

/// The node groups of `node-groups` mode as node pools of one instance type and
/// capacity type each, so the same core packs them.
pub fn node_group_pools(config: &Config, catalog: &Catalog) -> Result<Vec<NodePool>, SetupError> {
    let groups = &config.settings.node_groups;
    if groups.is_empty() {
        return Err(SetupError::NoNodeGroups);
    }
    groups
        .iter()
        .enumerate()
        .map(|(index, g)| {
            if catalog.find(&g.instance_type).is_none() {
                return Err(SetupError::UnknownGroupType {
                    index,
                    name: g.name.clone(),
                    instance_type: g.instance_type.clone(),
                });
            }
            // The controller builds its groups' pools with the same function.
            Ok(crate::core::node_groups::group_pool(
                &g.name,
                &g.instance_type,
                g.capacity_type,
                &g.zones,
                &g.labels,
                &g.taints,
            ))
        })
        .collect()
}
