//! Discovery: subnets and security groups by tag selectors (zones come from the subnets),
//! and which instance types the region really offers in which zone, checked against the
//! bundled catalog.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use aws_sdk_ec2::types::{Filter, LocationType};

use super::errors;
use super::ops;
use crate::cloud::CloudError;
use crate::core::instance::{CapacityType, Catalog};

/// A subnet nodes may launch into.
#[derive(Clone, Debug, PartialEq)]
pub struct Subnet {
    pub id: String,
    pub zone: String,
    pub available_ips: i32,
}

/// Where instances go: subnets (by zone) and the security groups every node gets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Network {
    pub subnets: Vec<Subnet>,
    pub security_groups: Vec<String>,
}

impl Network {
    /// Subnets of a zone, the roomiest first (EC2 then fills the emptiest subnet).
    pub fn subnets_in(&self, zone: &str) -> Vec<&Subnet> {
        let mut out: Vec<&Subnet> = self.subnets.iter().filter(|s| s.zone == zone).collect();
        out.sort_by(|a, b| b.available_ips.cmp(&a.available_ips).then(a.id.cmp(&b.id)));
        out
    }

    pub fn zones(&self) -> BTreeSet<&str> {
        self.subnets.iter().map(|s| s.zone.as_str()).collect()
    }

    pub fn zone_of_subnet(&self, subnet: &str) -> Option<&str> {
        self.subnets
            .iter()
            .find(|s| s.id == subnet)
            .map(|s| s.zone.as_str())
    }
}

/// EC2 filters for a tag selector: `*` matches any value (`tag-key`), anything else the
/// exact value (`tag:KEY`). All must match.
pub fn selector_filters(selector: &BTreeMap<String, String>) -> Vec<Filter> {
    selector
        .iter()
        .map(|(k, v)| {
            if v == "*" {
                Filter::builder().name("tag-key").values(k).build()
            } else {
                Filter::builder().name(format!("tag:{k}")).values(v).build()
            }
        })
        .collect()
}

/// Subnets and security groups matching the selectors. Having none of either is an
/// error: nothing could launch.
pub async fn network(
    ec2: &aws_sdk_ec2::Client,
    subnet_selector: &BTreeMap<String, String>,
    sg_selector: &BTreeMap<String, String>,
) -> Result<Network, CloudError> {
    let subnets = ec2
        .describe_subnets()
        .set_filters(Some(selector_filters(subnet_selector)))
        .send()
        .await
        .map_err(|e| errors::map(ops::DESCRIBE_SUBNETS, e))?;
    let subnets: Vec<Subnet> = subnets
        .subnets()
        .iter()
        .filter_map(|s| {
            Some(Subnet {
                id: s.subnet_id()?.to_string(),
                zone: s.availability_zone()?.to_string(),
                available_ips: s.available_ip_address_count().unwrap_or(0),
            })
        })
        .collect();
    let groups = ec2
        .describe_security_groups()
        .set_filters(Some(selector_filters(sg_selector)))
        .send()
        .await
        .map_err(|e| errors::map(ops::DESCRIBE_SECURITY_GROUPS, e))?;
    let security_groups: Vec<String> = groups
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect();
    let missing = |what: &str, sel: &BTreeMap<String, String>| CloudError::Invalid {
        operation: "discovery".into(),
        message: format!("no {what} match the selector {sel:?}"),
    };
    if subnets.is_empty() {
        return Err(missing("subnets", subnet_selector));
    }
    if security_groups.is_empty() {
        return Err(missing("security groups", sg_selector));
    }
    Ok(Network {
        subnets,
        security_groups,
    })
}

/// Every (instance type, zone) the region offers, one paginated call.
pub async fn type_offerings(
    ec2: &aws_sdk_ec2::Client,
) -> Result<HashSet<(String, String)>, CloudError> {
    let mut pages = ec2
        .describe_instance_type_offerings()
        .location_type(LocationType::AvailabilityZone)
        .max_results(1000)
        .into_paginator()
        .send();
    let mut out = HashSet::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| errors::map(ops::DESCRIBE_INSTANCE_TYPE_OFFERINGS, e))?;
        for o in page.instance_type_offerings() {
            if let (Some(t), Some(z)) = (o.instance_type(), o.location()) {
                out.insert((t.as_str().to_string(), z.to_string()));
            }
        }
    }
    Ok(out)
}

/// Names of every instance type the region's API knows (paginated, 100 a page).
pub async fn instance_types(ec2: &aws_sdk_ec2::Client) -> Result<HashSet<String>, CloudError> {
    let mut pages = ec2
        .describe_instance_types()
        .max_results(100)
        .into_paginator()
        .send();
    let mut out = HashSet::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| errors::map(ops::DESCRIBE_INSTANCE_TYPES, e))?;
        for t in page.instance_types() {
            if let Some(name) = t.instance_type() {
                out.insert(name.as_str().to_string());
            }
        }
    }
    Ok(out)
}

/// The catalog's offerings the account cannot launch: the type is unknown to the
/// region's API, not offered in the zone, or the zone has no selected subnet. Both
/// capacity types of such an offering are reported.
pub fn unavailable(
    catalog: &Catalog,
    known_types: &HashSet<String>,
    offered: &HashSet<(String, String)>,
    network: &Network,
) -> Vec<(String, String, CapacityType)> {
    let zones = network.zones();
    let mut out = Vec::new();
    for t in &catalog.types {
        for o in &t.offerings {
            let zone = &catalog.zones[o.zone];
            let ok = known_types.contains(&t.name)
                && zones.contains(zone.as_str())
                && offered.contains(&(t.name.clone(), zone.clone()));
            if !ok {
                out.push((t.name.clone(), zone.clone(), o.capacity_type));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{load_embedded, CatalogOptions};

    #[test]
    fn selector_any_value_uses_tag_key() {
        let sel = BTreeMap::from([
            ("kubernetes.io/cluster/prod".to_string(), "*".to_string()),
            ("tier".to_string(), "private".to_string()),
        ]);
        let f = selector_filters(&sel);
        assert_eq!(f[0].name(), Some("tag-key"));
        assert_eq!(f[0].values(), ["kubernetes.io/cluster/prod"]);
        assert_eq!(f[1].name(), Some("tag:tier"));
        assert_eq!(f[1].values(), ["private"]);
    }

    #[test]
    fn offerings_without_subnet_or_type_are_unavailable() {
        let catalog = load_embedded(&CatalogOptions::default()).unwrap();
        let network = Network {
            subnets: vec![Subnet {
                id: "subnet-a".into(),
                zone: "us-east-1a".into(),
                available_ips: 10,
            }],
            security_groups: vec!["sg-1".into()],
        };
        let known: HashSet<String> = HashSet::from(["m5.large".to_string()]);
        let offered = HashSet::from([("m5.large".to_string(), "us-east-1a".to_string())]);
        let out = unavailable(&catalog, &known, &offered, &network);
        let m5: Vec<_> = out.iter().filter(|(t, _, _)| t == "m5.large").collect();
        // m5.large is fine in 1a; 1b and 1c have no subnet: 2 zones x 2 capacity types.
        assert_eq!(m5.len(), 4, "{m5:?}");
        assert!(m5.iter().all(|(_, z, _)| z != "us-east-1a"));
        assert!(out
            .iter()
            .any(|(t, z, _)| t == "c5.large" && z == "us-east-1a"));
    }

    #[test]
    fn subnets_roomiest_first() {
        let s = |id: &str, ips| Subnet {
            id: id.into(),
            zone: "z".into(),
            available_ips: ips,
        };
        let n = Network {
            subnets: vec![s("a", 5), s("b", 50), s("c", 7)],
            security_groups: vec![],
        };
        let ids: Vec<&str> = n.subnets_in("z").iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["b", "c", "a"]);
    }
}
