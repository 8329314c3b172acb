//! Node-groups mode: the Cluster Autoscaler's way, on a [`NodeGroupProvider`] (EC2 Auto
//! Scaling groups, or the simulated groups). Each scan asks the core exactly as the
//! simulator's node-groups mode does: `core::node_groups::scale_up` (least waste) for
//! pending pods, then the unneeded rule (`utilization`, `movable`, `fits_elsewhere`)
//! for a node to remove, drained through the same eviction path as a NodeClaim's and
//! then terminated through the group. A node is draining while it carries our
//! disrupted taint, so a restarted controller finishes what the last one started.

use super::context::lock;
use super::events::{pod_ref, EVENTS_IN_FLIGHT};
use super::leader::Gate;
use super::{Controller, ControllerError};
use crate::cloud::{CloudError, CloudProvider, NodeGroup, NodeGroupProvider};
use crate::cluster::convert::{ClaimEntry, NodeEntry};
use crate::cluster::state::{self, DecisionInputs, Prepared, DISRUPTED_TAINT};
use crate::core::disruption;
use crate::core::model::SchedulingModel;
use crate::core::node_groups::{self, ScaleUp};
use crate::core::nodepool::NodePool;
use crate::core::pod::Pod;
use crate::core::resources::Resources;
use crate::core::scheduler::SolveEnv;
use crate::core::unavailable::UnavailableOfferings;
use std::collections::HashMap;
use std::sync::Arc;

/// What one node-groups scan did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupScan {
    /// (group, new desired size) of the scale-up asked for.
    pub scaled_up: Option<(String, u32)>,
    /// Nodes whose drain started this scan.
    pub draining: Vec<String>,
    /// Nodes whose instances were terminated (drained).
    pub terminated: Vec<String>,
}

/// The groups as the core sees them: one pool per group (same index), the model over
/// them, and which group each instance belongs to.
pub struct GroupView {
    pub groups: Vec<NodeGroup>,
    pub pools: Vec<NodePool>,
    pub model: SchedulingModel,
    pub group_of: HashMap<String, usize>,
    /// Names of the nodes each group will still get (desired above registered).
    upcoming: Vec<(usize, String, String)>,
}

impl GroupView {
    fn inputs<'a>(&'a self, catalog: &'a crate::core::instance::Catalog) -> DecisionInputs<'a> {
        DecisionInputs {
            catalog,
            pools: &self.pools,
            model: &self.model,
            group_of: Some(&self.group_of),
        }
    }
}

/// Requests of the pods on a node that are not DaemonSet pods (the unneeded rule's
/// utilization, as the simulator counts it).
fn pod_requests(st: &state::ClusterState, node: &str) -> Resources {
    let mut r = Resources::default();
    for p in st
        .pods_on(node)
        .filter(|p| !p.pod.is_daemonset() && !p.deleting)
    {
        r.add(&p.pod.requests);
    }
    r
}

/// `prepared` with node `i` gone as a target and its pods pending: what
/// `fits_elsewhere` asks about.
fn without_node<'p>(prepared: &'p Prepared, i: usize) -> crate::core::snapshot::Snapshot<'p> {
    let mut snapshot = prepared.snapshot();
    snapshot.nodes[i].schedulable = false;
    let (moving, staying): (Vec<_>, Vec<_>) = snapshot
        .bound
        .iter()
        .copied()
        .filter(|(p, _)| !p.is_daemonset())
        .partition(|(_, n)| *n == i);
    snapshot.bound = staying;
    snapshot.pending = moving.into_iter().map(|(p, _)| p).collect();
    snapshot
}

/// Nodes of each group already being drained (they carry our disrupted taint): they
/// count against the group's minimum before they are gone.
fn draining_per_group(st: &state::ClusterState, prepared: &Prepared, groups: usize) -> Vec<u32> {
    let mut draining = vec![0u32; groups];
    for n in &prepared.nodes {
        let tainted = st
            .node(n.name)
            .is_some_and(|e| e.taints.iter().any(|t| t.key == DISRUPTED_TAINT));
        if let (Some(g), true) = (n.pool, tainted) {
            draining[g] += 1;
        }
    }
    draining
}

impl<P: CloudProvider + 'static> Controller<P> {
    /// Node-groups mode: a groups scan every `scanInterval` while acting.
    pub async fn groups_loop<G: NodeGroupProvider>(self: Arc<Self>, groups: G, gate: Gate) {
        let every = self.config.settings.scan_interval;
        let bound = self.opts.cloud_timeout * 2 + self.opts.api_timeout;
        super::health::every(&self.liveness, "groups", every, bound, || async {
            if gate.acting() {
                if let Err(e) = self.scale_groups(&groups, self.now()).await {
                    tracing::warn!(error = %e, "node-groups scan failed");
                }
            }
        })
        .await;
    }
}

impl<P: CloudProvider> Controller<P> {
    /// One node-groups scan: finish drains, scale up for pending pods, else start
    /// removing one unneeded node.
    pub async fn scale_groups<G: NodeGroupProvider>(
        &self,
        provider: &G,
        now: f64,
    ) -> Result<GroupScan, ControllerError> {
        let groups = self.cloud_call("list groups", provider.groups()).await?;
        let backed_off: Vec<bool> = groups
            .iter()
            .map(|g| provider.backed_off(&g.name))
            .collect();
        self.honour_backoff(&groups, &backed_off, now);
        let mut view = self.group_view(groups);
        // A backed-off group's missing nodes may never come: its pods look elsewhere.
        view.upcoming.retain(|(g, _, _)| !backed_off[*g]);
        let mut scan = GroupScan {
            terminated: self.finish_group_drains(provider, &view, now).await,
            ..Default::default()
        };
        scan.scaled_up = self.group_scale_up(provider, &view, now).await;
        if scan.scaled_up.is_none() {
            if let Some(node) = self.group_scale_down(&view, now) {
                self.start_group_drain(provider, &view, &node, now, &mut scan)
                    .await?;
            }
        }
        Ok(scan)
    }

    /// A backed-off group's offerings are unavailable for the TTL, so that the core's
    /// scale-up picks another group (as after a refused scale-up).
    fn honour_backoff(&self, groups: &[NodeGroup], backed_off: &[bool], now: f64) {
        for (g, _) in groups.iter().zip(backed_off).filter(|(_, b)| **b) {
            let keys: Vec<_> = g
                .zones
                .iter()
                .map(|z| (g.instance_type.as_str(), z.as_str(), g.capacity_type))
                .collect();
            self.mark_unavailable(&keys, now);
        }
    }

    /// The groups' pools and model, built per scan (groups change by the minute).
    pub fn group_view(&self, groups: Vec<NodeGroup>) -> GroupView {
        let pools: Vec<NodePool> = groups
            .iter()
            .map(|g| {
                node_groups::group_pool(
                    &g.name,
                    &g.instance_type,
                    g.capacity_type,
                    &g.zones,
                    &g.labels,
                    &g.taints,
                )
            })
            .collect();
        let ds = self.daemonset_pods();
        let ds_refs: Vec<&Pod> = ds.iter().collect();
        let model = SchedulingModel::new(&self.catalog, &pools, &ds_refs);
        let group_of: HashMap<String, usize> = groups
            .iter()
            .enumerate()
            .flat_map(|(g, group)| group.instances.iter().map(move |i| (i.clone(), g)))
            .collect();
        let upcoming = self.upcoming(&groups);
        GroupView {
            groups,
            pools,
            model,
            group_of,
            upcoming,
        }
    }

    /// (group, name, zone) of each node a group is still to get: its desired size
    /// less its instances that are registered nodes.
    fn upcoming(&self, groups: &[NodeGroup]) -> Vec<(usize, String, String)> {
        let st = self.read();
        let registered = |g: &NodeGroup| {
            st.nodes()
                .filter(|n| {
                    n.provider_id
                        .as_ref()
                        .is_some_and(|p| g.instances.contains(p))
                })
                .count()
        };
        let mut out = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            let missing = (g.desired as usize).saturating_sub(registered(g));
            let zone = g.zones.first().cloned().unwrap_or_default();
            out.extend((0..missing).map(|k| (i, format!("{}-upcoming-{k}", g.name), zone.clone())));
        }
        out
    }

    fn group_env<'a>(
        &'a self,
        view: &'a GroupView,
        unavailable: &'a UnavailableOfferings,
        now: f64,
    ) -> SolveEnv<'a> {
        SolveEnv {
            catalog: &self.catalog,
            pools: &view.pools,
            model: &view.model,
            unavailable,
            now,
            max_launch_options: self.config.settings.max_launch_options,
            pool_filter: None,
            allow_new_nodes: true,
            use_launching_nodes: true,
            split_claims: true,
            exclude_node: None,
        }
    }

    /// The core's scale-up for the pending pods (upcoming nodes counted), if any, with
    /// the (namespace, name) of the pods it is for.
    pub fn group_decision(
        &self,
        view: &GroupView,
        now: f64,
    ) -> Option<(ScaleUp, Vec<(String, String)>)> {
        let unavailable = self.unavailable_now(now);
        let st = self.read();
        let inputs = view.inputs(&self.catalog);
        let mut prepared = st.prepare(&inputs);
        if prepared.pending.is_empty() {
            return None;
        }
        for (g, name, zone) in &view.upcoming {
            prepared
                .nodes
                .extend(state::upcoming_node(&inputs, *g, zone, name));
        }
        let room: Vec<usize> = view
            .groups
            .iter()
            .map(|g| g.max_size.saturating_sub(g.desired) as usize)
            .collect();
        let env = self.group_env(view, &unavailable, now);
        let up = node_groups::scale_up(&env, &prepared.snapshot(), &room)?;
        let pods = up
            .plans
            .iter()
            .flat_map(|p| &p.pods)
            .filter_map(|&i| prepared.pending.get(i))
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .collect();
        Some((up, pods))
    }

    /// Asks the chosen group for more nodes. A refusal for capacity (a group backed off
    /// after failed launches) takes its offerings out for the TTL: the next scan picks
    /// another group.
    async fn group_scale_up<G: NodeGroupProvider>(
        &self,
        provider: &G,
        view: &GroupView,
        now: f64,
    ) -> Option<(String, u32)> {
        let (up, pods) = self.group_decision(view, now)?;
        let group = &view.groups[up.group];
        let desired = group.desired + up.plans.len() as u32;
        tracing::info!(group = %group.name, desired, pods = up.helped, waste = up.waste, "scaling up a node group");
        let message = format!(
            "triggered scale-up of node group {} to {desired} (max {})",
            group.name, group.max_size
        );
        if self.opts.dry_run {
            self.tell_group_pods(&pods, &format!("dry run: {message}"))
                .await;
            return Some((group.name.clone(), desired));
        }
        let set = provider.set_desired(&group.name, desired);
        match self.cloud_call("set desired", set).await {
            Ok(()) => {
                self.tell_group_pods(&pods, &message).await;
                Some((group.name.clone(), desired))
            }
            Err(CloudError::InsufficientCapacity { offerings }) => {
                let keys: Vec<_> = offerings
                    .iter()
                    .map(|o| (o.instance_type.as_str(), o.zone.as_str(), o.capacity_type))
                    .collect();
                self.mark_unavailable(&keys, now);
                tracing::info!(group = %group.name, "group backed off; trying others next scan");
                None
            }
            Err(e) => {
                tracing::warn!(group = %group.name, error = %e, "scale-up failed");
                None
            }
        }
    }

    /// `TriggeredScaleUp` on each pod a scale-up is for (as the Cluster Autoscaler says
    /// it), each said once until it changes.
    async fn tell_group_pods(&self, pods: &[(String, String)], message: &str) {
        use futures::StreamExt;
        futures::stream::iter(pods)
            .for_each_concurrent(EVENTS_IN_FLIGHT, |(ns, name)| async move {
                self.event(pod_ref(ns, name), "Normal", "TriggeredScaleUp", message)
                    .await;
            })
            .await;
    }

    /// The node to remove, if one has been unneeded for `unneededTime` (below the
    /// utilization threshold) and its pods may move and fit on the other ready nodes,
    /// its group staying at or above its minimum. Updates the unneeded clocks.
    pub fn group_scale_down(&self, view: &GroupView, now: f64) -> Option<String> {
        let rule = &self.config.settings.node_group_scale_down;
        let unavailable = self.unavailable_now(now);
        let st = self.read();
        let inputs = view.inputs(&self.catalog);
        let prepared = st.prepare(&inputs);
        let env = self.group_env(view, &unavailable, now);
        let mut unneeded = lock(&self.unneeded);
        // Nodes gone by other hands leave no clock behind.
        unneeded.retain(|name, _| st.node(name).is_some());
        let draining = draining_per_group(&st, &prepared, view.groups.len());
        let mut chosen = None;
        for (i, n) in prepared.nodes.iter().enumerate() {
            let Some(entry) = st.node(n.name) else {
                continue;
            };
            // Only a group's own instances (a node merely labelled like a group, e.g. a
            // NodeClaim's, is not the group's to remove).
            let Some(&g) = entry
                .provider_id
                .as_ref()
                .and_then(|p| view.group_of.get(p))
            else {
                continue;
            };
            if !n.ready || !n.schedulable {
                unneeded.remove(n.name);
                continue;
            }
            let u = node_groups::utilization(&pod_requests(&st, n.name), &n.allocatable);
            if u >= rule.utilization_threshold {
                unneeded.remove(n.name);
                continue;
            }
            let since = *unneeded.entry(n.name.to_string()).or_insert(now);
            let group = &view.groups[g];
            let above_min = group.desired.saturating_sub(draining[g]) > group.min_size;
            if chosen.is_some() || now - since < rule.unneeded_time.as_secs_f64() || !above_min {
                continue;
            }
            if self.removable(&st, &prepared, &env, i, entry) {
                chosen = Some(n.name.to_string());
            }
        }
        chosen
    }

    /// May node `i` go: no do-not-disrupt annotation, pods movable, and they fit on the
    /// other ready nodes.
    fn removable(
        &self,
        st: &state::ClusterState,
        prepared: &Prepared,
        env: &SolveEnv,
        i: usize,
        entry: &NodeEntry,
    ) -> bool {
        if disruption::node_blocks_disruption(&entry.annotations) {
            return false;
        }
        let pods: Vec<&Pod> = st
            .pods_on(&entry.name)
            .filter(|p| !p.pod.is_daemonset() && !p.deleting)
            .map(|p| &p.pod)
            .collect();
        node_groups::movable(&pods) && node_groups::fits_elsewhere(env, &without_node(prepared, i))
    }

    async fn start_group_drain<G: NodeGroupProvider>(
        &self,
        provider: &G,
        view: &GroupView,
        node: &str,
        now: f64,
        scan: &mut GroupScan,
    ) -> Result<(), ControllerError> {
        tracing::info!(
            node,
            "node unneeded: draining it, then removing it from its group"
        );
        if self.opts.dry_run {
            return Ok(());
        }
        scan.draining.push(node.to_string());
        let Some(entry) = self.read().node(node).cloned() else {
            return Ok(());
        };
        // Same eviction path as a NodeClaim's (taint, evictions, 429s retried).
        self.drain(&ClaimEntry::default(), &entry, now).await?;
        if let Some(done) = self.terminate_if_drained(provider, view, node).await? {
            scan.terminated.push(done);
        }
        Ok(())
    }

    /// One drain pass over every node carrying our disrupted taint; drained ones are
    /// terminated through their group. Returns the nodes terminated.
    async fn finish_group_drains<G: NodeGroupProvider>(
        &self,
        provider: &G,
        view: &GroupView,
        now: f64,
    ) -> Vec<String> {
        let draining: Vec<NodeEntry> = self
            .read()
            .nodes()
            .filter(|n| n.taints.iter().any(|t| t.key == DISRUPTED_TAINT))
            .filter(|n| {
                n.provider_id
                    .as_ref()
                    .is_some_and(|p| view.group_of.contains_key(p))
            })
            .cloned()
            .collect();
        let mut done = Vec::new();
        if self.opts.dry_run {
            return done;
        }
        for n in draining {
            let result = match self.drain(&ClaimEntry::default(), &n, now).await {
                Ok(()) => self.terminate_if_drained(provider, view, &n.name).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(Some(name)) => done.push(name),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(node = %n.name, error = %e, "node-group drain failed; retrying")
                }
            }
        }
        done
    }

    /// Once only DaemonSet (or already deleting) pods are left: the instance goes
    /// through its group (which lowers its desired size), then the Node object.
    async fn terminate_if_drained<G: NodeGroupProvider>(
        &self,
        provider: &G,
        view: &GroupView,
        node: &str,
    ) -> Result<Option<String>, ControllerError> {
        let (drained, provider_id) = {
            let st = self.read();
            let drained = st.pods_on(node).all(|p| p.drain_exempt || p.deleting);
            (drained, st.node(node).and_then(|n| n.provider_id.clone()))
        };
        let Some(id) = provider_id.filter(|p| view.group_of.contains_key(p)) else {
            return Ok(None);
        };
        if !drained {
            return Ok(None);
        }
        let terminate = provider.terminate_instance(&id);
        match self.cloud_call("terminate group instance", terminate).await {
            Ok(()) | Err(CloudError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.delete_node(node).await?;
        lock(&self.unneeded).remove(node);
        tracing::info!(node, instance = %id, "removed an unneeded node from its group");
        Ok(Some(node.to_string()))
    }
}
