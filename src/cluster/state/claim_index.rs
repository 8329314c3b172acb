//! [`ClaimIndex`]: the claims by the node each one became ([`ClusterState::node_of`]),
//! kept up to date as claims and nodes change, so that a decision does not resolve
//! 10,000 claims to their nodes every time: the state copies what a decision reads of
//! each node's claim into the node's entry whenever this index changes for that node.
//!
//! [`ClusterState::node_of`]: super::ClusterState::node_of

use crate::cluster::convert::ClaimEntry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// See the module documentation. [`ClusterState`](super::ClusterState) files a claim
/// under the node it resolves to, and refiles the claims a node change concerns.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct ClaimIndex {
    /// Per node name, the claims that resolve to it, by claim name (almost always one).
    by_node: BTreeMap<String, Vec<Arc<ClaimEntry>>>,
    /// Claims that resolve to no known node (launching), by name.
    unregistered: BTreeMap<String, Arc<ClaimEntry>>,
    /// Claim names by the node name and the provider ID each claim names: the claims
    /// whose node may change when a node of that name or ID comes, goes or changes. One
    /// map for both kinds of key: a collision only refiles a claim that stays put.
    named_by: HashMap<String, Vec<String>>,
}

/// The keys of `named_by` a claim is listed under.
fn names_of(c: &ClaimEntry) -> impl Iterator<Item = &String> {
    c.node_name.iter().chain(c.provider_id.iter())
}

impl ClaimIndex {
    /// Files claim `c` under `node` (`None`: unregistered).
    pub fn insert(&mut self, c: &Arc<ClaimEntry>, node: Option<&str>) {
        for key in names_of(c) {
            // In name order, so that the index depends on the claims, not on the order
            // they came in (it is compared with one rebuilt from scratch).
            let names = self.named_by.entry(key.clone()).or_default();
            let at = names.partition_point(|n| n < &c.name);
            names.insert(at, c.name.clone());
        }
        self.file(c, node);
    }

    /// Takes out what [`Self::insert`] added for the same claim and `node`.
    pub fn remove(&mut self, c: &ClaimEntry, node: Option<&str>) {
        for key in names_of(c) {
            if let Some(names) = self.named_by.get_mut(key) {
                names.retain(|n| n != &c.name);
                if names.is_empty() {
                    self.named_by.remove(key);
                }
            }
        }
        self.unfile(&c.name, node);
    }

    /// Moves claim `c` from `from` to `to` (a node change moved it).
    pub fn refile(&mut self, c: &Arc<ClaimEntry>, from: Option<&str>, to: Option<&str>) {
        if from != to {
            self.unfile(&c.name, from);
            self.file(c, to);
        }
    }

    fn file(&mut self, c: &Arc<ClaimEntry>, node: Option<&str>) {
        let Some(node) = node else {
            self.unregistered.insert(c.name.clone(), c.clone());
            return;
        };
        let claims = self.by_node.entry(node.to_string()).or_default();
        let at = claims.partition_point(|x| x.name < c.name);
        claims.insert(at, c.clone());
    }

    fn unfile(&mut self, name: &str, node: Option<&str>) {
        let Some(node) = node else {
            self.unregistered.remove(name);
            return;
        };
        if let Some(claims) = self.by_node.get_mut(node) {
            claims.retain(|x| x.name != name);
            if claims.is_empty() {
                self.by_node.remove(node);
            }
        }
    }

    /// Names of the claims that name `key` as their node name or provider ID.
    pub fn naming(&self, key: &str) -> &[String] {
        self.named_by.get(key).map_or(&[], Vec::as_slice)
    }

    /// The claim that is node `node`: the last by name when several resolve to it (as a
    /// walk of the claims in name order would leave it).
    pub fn of_node(&self, node: &str) -> Option<&ClaimEntry> {
        self.by_node.get(node)?.last().map(|c| &**c)
    }

    /// Claims of no known node, in name order.
    pub fn unregistered(&self) -> impl Iterator<Item = &ClaimEntry> {
        self.unregistered.values().map(|c| &**c)
    }
}
