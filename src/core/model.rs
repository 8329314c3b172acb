//! What each node pool can launch: the instance types its requirements allow, the zones
//! and capacity types, and the room left for pods once DaemonSet overhead is reserved.
//! Built once per (catalog, pools, DaemonSets) and reused by every decision.

use super::instance::{CapacityType, Catalog, InstanceType, Offering};
use super::labels::{self, Labels};
use super::nodepool::NodePool;
use super::pod::Pod;
use super::requirements::Requirement;
use super::resources::Resources;
use super::taints::tolerates_all;

/// Label lookup over a would-be node of a pool: pool labels, then the node pool name,
/// then instance-type labels. Zone and capacity type are handled as masks instead.
pub struct NodeLabels<'a> {
    pub pool_labels: &'a Labels,
    pub pool_name: &'a str,
    pub type_labels: &'a Labels,
}

impl NodeLabels<'_> {
    pub fn get(&self, key: &str) -> Option<&str> {
        if labels::is_nodepool_key(key) {
            return Some(self.pool_name);
        }
        self.pool_labels
            .get(key)
            .or_else(|| self.type_labels.get(key))
            .map(String::as_str)
    }

    /// Requirements on keys other than zone and capacity type.
    pub fn matches(&self, reqs: &[Requirement]) -> bool {
        reqs.iter()
            .filter(|r| !labels::is_zone_key(&r.key) && !labels::is_capacity_type_key(&r.key))
            .all(|r| r.matches_value(self.get(&r.key)))
    }
}

/// Zones (bit i = `catalog.zones[i]`) that satisfy every zone requirement in `reqs`.
pub fn zone_mask(reqs: &[Requirement], zones: &[String]) -> u32 {
    let mut mask = 0;
    for (i, z) in zones.iter().enumerate().take(32) {
        if reqs
            .iter()
            .filter(|r| labels::is_zone_key(&r.key))
            .all(|r| r.matches_value(Some(z)))
        {
            mask |= 1 << i;
        }
    }
    mask
}

/// Capacity types (`CapacityType::bit`) that satisfy every capacity-type requirement.
pub fn capacity_type_mask(reqs: &[Requirement]) -> u8 {
    let mut mask = 0;
    for ct in [CapacityType::Spot, CapacityType::OnDemand] {
        if reqs
            .iter()
            .filter(|r| labels::is_capacity_type_key(&r.key))
            .all(|r| r.matches_value(Some(ct.as_str())))
        {
            mask |= ct.bit();
        }
    }
    mask
}

/// Turns a node selector into requirements (key In [value]).
pub fn selector_requirements(selector: &Labels) -> Vec<Requirement> {
    selector
        .iter()
        .map(|(k, v)| Requirement {
            key: k.clone(),
            operator: super::requirements::Operator::In,
            values: vec![v.clone()],
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct PoolType {
    /// Index into `Catalog::types`.
    pub ty: usize,
    /// Allocatable minus the DaemonSet pods that would run on such a node, per capacity
    /// type (`[spot, on-demand]`): a DaemonSet may select one of them.
    pub usable_by_ct: [Resources; 2],
    /// Component-wise maximum of `usable_by_ct`: what a filter may assume at best; the
    /// exact room is checked per offering.
    pub usable: Resources,
    /// The DaemonSet overhead reserved on such a node, per capacity type.
    pub daemon_overhead_by_ct: [Resources; 2],
}

/// Index of a capacity type in the `_by_ct` arrays.
pub fn ct_index(ct: CapacityType) -> usize {
    match ct {
        CapacityType::Spot => 0,
        CapacityType::OnDemand => 1,
    }
}

impl PoolType {
    pub fn usable_for(&self, ct: CapacityType) -> &Resources {
        &self.usable_by_ct[ct_index(ct)]
    }

    pub fn daemon_overhead(&self, ct: CapacityType) -> &Resources {
        &self.daemon_overhead_by_ct[ct_index(ct)]
    }
}

#[derive(Clone, Debug)]
pub struct PoolModel {
    pub pool: usize,
    pub types: Vec<PoolType>,
    /// Component-wise maximum of `types[].usable`: nothing larger fits any type.
    pub max_usable: Resources,
    pub zones: u32,
    pub capacity_types: u8,
}

#[derive(Clone, Debug)]
pub struct SchedulingModel {
    pub pools: Vec<PoolModel>,
    /// Pool indices, highest weight first (ties by name), the order new nodes try them.
    pub pool_order: Vec<usize>,
    /// Every offering the pools allow as (price, room for pods), cheapest first: the
    /// cheapest node that could hold some pods is the first whose room does.
    cheapest_first: Vec<(f64, Resources)>,
}

impl SchedulingModel {
    pub fn new(catalog: &Catalog, pools: &[NodePool], daemonsets: &[&Pod]) -> Self {
        let pools_model = pools
            .iter()
            .enumerate()
            .map(|(pi, pool)| build_pool(catalog, pi, pool, daemonsets))
            .collect();
        let mut order: Vec<usize> = (0..pools.len()).collect();
        order.sort_by(|&a, &b| {
            pools[b]
                .weight
                .cmp(&pools[a].weight)
                .then_with(|| pools[a].name.cmp(&pools[b].name))
        });
        let mut model = SchedulingModel {
            pools: pools_model,
            pool_order: order,
            cheapest_first: Vec::new(),
        };
        let mut offers = model.offering_options_for_ct(catalog);
        offers.sort_by(|a, b| a.0.total_cmp(&b.0));
        offers.dedup();
        model.cheapest_first = offers;
        model
    }

    /// The price of the cheapest offering the pools allow whose room (for its capacity
    /// type) holds `total`; `None` when none does.
    pub fn cheapest_holding(&self, total: &Resources) -> Option<f64> {
        self.cheapest_first
            .iter()
            .find(|(_, room)| total.fits_in(room))
            .map(|&(price, _)| price)
    }

    /// Every (price, room for pods of that capacity type) offering the pools allow.
    fn offering_options_for_ct(&self, catalog: &Catalog) -> Vec<(f64, Resources)> {
        self.allowed_offerings(catalog)
            .map(|(_, pt, o)| (o.price_per_hour, pt.usable_for(o.capacity_type).clone()))
            .collect()
    }

    /// Every offering the pools allow (its zone and capacity type), with its pool and
    /// pool type.
    fn allowed_offerings<'m, 'c: 'm>(
        &'m self,
        catalog: &'c Catalog,
    ) -> impl Iterator<Item = (&'m PoolModel, &'m PoolType, &'c Offering)> + 'm {
        self.pools.iter().flat_map(move |pm| {
            pm.types.iter().flat_map(move |pt| {
                catalog.types[pt.ty].offerings.iter().filter_map(move |o| {
                    (pm.zones & (1 << o.zone) != 0
                        && pm.capacity_types & o.capacity_type.bit() != 0)
                        .then_some((pm, pt, o))
                })
            })
        })
    }

    /// Per offering the pools allow (in [`Self::offering_options`]'s order), `keep` of it.
    pub fn offerings_where(
        &self,
        catalog: &Catalog,
        mut keep: impl FnMut(&PoolModel, &PoolType, &Offering) -> bool,
    ) -> Vec<bool> {
        self.allowed_offerings(catalog)
            .map(|(pm, pt, o)| keep(pm, pt, o))
            .collect()
    }

    /// Every (price, usable) offering the pools allow: the options of the fluid lower bound.
    pub fn offering_options(&self, catalog: &Catalog) -> Vec<(f64, Resources)> {
        self.allowed_offerings(catalog)
            .map(|(_, pt, o)| (o.price_per_hour, pt.usable.clone()))
            .collect()
    }
}

/// DaemonSet pods that would run on a node of `pool` with instance type `it`.
pub fn daemon_overhead(
    pool: &NodePool,
    it: &InstanceType,
    ct: CapacityType,
    zone_names: &[String],
    daemonsets: &[&Pod],
) -> Resources {
    let mut total = Resources::default();
    let view = NodeLabels {
        pool_labels: &pool.labels,
        pool_name: &pool.name,
        type_labels: &it.labels,
    };
    for ds in daemonsets {
        // A zone varies per offering: a DaemonSet selecting zones is reserved when any
        // allowed zone matches (reserving too much is safe, too little is not).
        let zones = zone_mask(&pool.requirements, zone_names);
        let selector_ok = ds.node_selector.iter().all(|(k, v)| {
            if labels::is_zone_key(k) {
                zone_names
                    .iter()
                    .enumerate()
                    .any(|(i, z)| zones & (1 << i) != 0 && z == v)
            } else if labels::is_capacity_type_key(k) {
                v == ct.as_str()
            } else {
                view.get(k) == Some(v.as_str())
            }
        });
        let affinity_ok = ds.required_node_terms.is_empty()
            || ds.required_node_terms.iter().any(|t| {
                view.matches(t)
                    && t.iter()
                        .filter(|r| labels::is_capacity_type_key(&r.key))
                        .all(|r| r.matches_value(Some(ct.as_str())))
            });
        if selector_ok && affinity_ok && tolerates_all(&ds.tolerations, &pool.taints) {
            total.add(&ds.requests);
        }
    }
    total
}

fn build_pool(catalog: &Catalog, pi: usize, pool: &NodePool, daemonsets: &[&Pod]) -> PoolModel {
    let zones = zone_mask(&pool.requirements, &catalog.zones);
    let capacity_types = capacity_type_mask(&pool.requirements);
    let types = catalog
        .types
        .iter()
        .enumerate()
        .filter(|(_, it)| {
            NodeLabels {
                pool_labels: &pool.labels,
                pool_name: &pool.name,
                type_labels: &it.labels,
            }
            .matches(&pool.requirements)
                && it.offerings.iter().any(|o| {
                    zones & (1 << o.zone) != 0 && capacity_types & o.capacity_type.bit() != 0
                })
        })
        .filter_map(|(ti, it)| {
            let overhead = [CapacityType::Spot, CapacityType::OnDemand]
                .map(|ct| daemon_overhead(pool, it, ct, &catalog.zones, daemonsets));
            let usable_by_ct = [0, 1].map(|i| it.allocatable.minus(&overhead[i]));
            let mut usable = usable_by_ct[0].clone();
            usable.max_with(&usable_by_ct[1]);
            (usable.cpu_milli > 0 && usable.memory > 0 && usable.pods > 0).then_some(PoolType {
                ty: ti,
                usable_by_ct,
                usable,
                daemon_overhead_by_ct: overhead,
            })
        })
        .collect::<Vec<PoolType>>();
    let mut max_usable = Resources::default();
    for t in &types {
        max_usable.max_with(&t.usable);
    }
    PoolModel {
        pool: pi,
        types,
        max_usable,
        zones,
        capacity_types,
    }
}
