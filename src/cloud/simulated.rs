//! A simulated cloud for the controller: instances live in memory, IDs are
//! deterministic (`simulated:///<zone>/i-<n>`), launches are idempotent per NodeClaim,
//! and capacity shortages can be injected (the simulator's own [`SimCloud`] decides
//! which option has capacity, so both paths pick alike). A launch hook lets a test or
//! `run --provider simulated` turn instances into Nodes.

use super::{
    CloudError, CloudProvider, Instance, InstanceState, LaunchRequest, NodeGroup,
    NodeGroupProvider, Offering, OfferingUpdate,
};
use crate::core::instance::{CapacityType, Catalog};
use crate::core::scheduler::LaunchOption;
use crate::sim::cloud::SimCloud;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Called after every new launch (not for a repeated launch of the same claim).
pub type LaunchHook = Box<dyn Fn(&Instance, &LaunchRequest) + Send + Sync>;

#[derive(Default)]
struct Inner {
    /// Live instances by NodeClaim name.
    instances: BTreeMap<String, Instance>,
    counter: u64,
    shortages: SimCloud,
    /// Launch calls that created an instance (a repeated launch does not count).
    launches: u64,
    /// A fixed clock for tests; the wall clock otherwise.
    now: Option<f64>,
    /// Spot options a launch found short before it succeeded on-demand (as EC2 Fleet's
    /// fallback reports them), until taken.
    capacity_failures: Vec<Offering>,
}

pub struct SimulatedCloud {
    catalog: Arc<Catalog>,
    inner: Mutex<Inner>,
    hook: Option<LaunchHook>,
}

impl SimulatedCloud {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        SimulatedCloud {
            catalog,
            inner: Mutex::new(Inner::default()),
            hook: None,
        }
    }

    pub fn with_hook(mut self, hook: LaunchHook) -> Self {
        self.hook = Some(hook);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The data stays consistent across a panic in a hook; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fixes the clock (seconds since the Unix epoch) for launches and shortages.
    pub fn set_now(&self, now: f64) {
        self.lock().now = Some(now);
    }

    fn now(inner: &Inner) -> f64 {
        inner.now.unwrap_or_else(wall_clock)
    }

    /// No capacity for matching offerings (`*` matches all) for `for_s` seconds from now.
    pub fn add_shortage(&self, instance_type: &str, zone: &str, capacity_type: &str, for_s: f64) {
        let mut inner = self.lock();
        let now = Self::now(&inner);
        inner
            .shortages
            .add_shortage(instance_type, zone, capacity_type, now, for_s);
    }

    /// How many instances launches created (repeated launches of a claim excluded).
    pub fn launches(&self) -> u64 {
        self.lock().launches
    }

    /// Inserts an instance as if launched earlier (tests: an orphan, or an instance
    /// whose claim never got its status).
    pub fn insert(&self, instance: Instance) {
        let mut inner = self.lock();
        let claim = instance.node_claim.clone().unwrap_or_default();
        inner.instances.insert(claim, instance);
    }

    fn options(&self, request: &LaunchRequest) -> Vec<LaunchOption> {
        request
            .options
            .iter()
            .filter_map(|o| {
                Some(LaunchOption {
                    instance_type: self.catalog.find(&o.instance_type)?,
                    zone: self.catalog.zone_index(&o.zone)?,
                    capacity_type: o.capacity_type,
                    price_per_hour: o.price_per_hour,
                })
            })
            .collect()
    }

    /// The Spot options of a launch that have no capacity now: what a fleet tried
    /// before falling back to on-demand.
    fn short_spot(&self, inner: &Inner, options: &[Offering], now: f64) -> Vec<Offering> {
        options
            .iter()
            .filter(|o| o.capacity_type == CapacityType::Spot)
            .filter(|o| {
                let (Some(t), Some(z)) = (
                    self.catalog.find(&o.instance_type),
                    self.catalog.zone_index(&o.zone),
                ) else {
                    return false;
                };
                !inner
                    .shortages
                    .has_capacity(&self.catalog, t, z, o.capacity_type, now)
            })
            .cloned()
            .collect()
    }

    fn launch_now(&self, request: &LaunchRequest) -> Result<(Instance, bool), CloudError> {
        let mut inner = self.lock();
        if let Some(existing) = inner.instances.get(&request.node_claim) {
            return Ok((existing.clone(), false));
        }
        let options = self.options(request);
        let now = Self::now(&inner);
        let Some(i) = inner.shortages.launch(&self.catalog, &options, now) else {
            return Err(CloudError::InsufficientCapacity {
                offerings: request.options.clone(),
            });
        };
        let o: &Offering = request
            .options
            .iter()
            .find(|x| {
                self.catalog.find(&x.instance_type) == Some(options[i].instance_type)
                    && self.catalog.zone_index(&x.zone) == Some(options[i].zone)
                    && x.capacity_type == options[i].capacity_type
            })
            .ok_or_else(|| CloudError::Invalid {
                operation: "launch".into(),
                message: "no option".into(),
            })?;
        if o.capacity_type == CapacityType::OnDemand {
            let short = self.short_spot(&inner, &request.options[..], now);
            inner.capacity_failures.extend(short);
        }
        inner.counter += 1;
        inner.launches += 1;
        let instance = Instance {
            provider_id: format!("simulated:///{}/i-{:017x}", o.zone, inner.counter),
            instance_type: o.instance_type.clone(),
            zone: o.zone.clone(),
            capacity_type: o.capacity_type,
            state: InstanceState::Running,
            node_claim: Some(request.node_claim.clone()),
            node_pool: Some(request.node_pool.clone()),
            launched_at: now,
        };
        inner
            .instances
            .insert(request.node_claim.clone(), instance.clone());
        Ok((instance, true))
    }
}

fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl CloudProvider for SimulatedCloud {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Instance, CloudError> {
        let (instance, new) = self.launch_now(request)?;
        if new {
            if let Some(h) = &self.hook {
                h(&instance, request);
            }
        }
        Ok(instance)
    }

    async fn terminate(&self, provider_id: &str) -> Result<(), CloudError> {
        let mut inner = self.lock();
        let claim = inner
            .instances
            .iter()
            .find(|(_, i)| i.provider_id == provider_id)
            .map(|(c, _)| c.clone());
        match claim {
            Some(c) => {
                inner.instances.remove(&c);
                Ok(())
            }
            None => Err(CloudError::NotFound {
                provider_id: provider_id.to_string(),
            }),
        }
    }

    async fn list(&self) -> Result<Vec<Instance>, CloudError> {
        Ok(self.lock().instances.values().cloned().collect())
    }

    async fn offerings(&self) -> Result<OfferingUpdate, CloudError> {
        Ok(OfferingUpdate::default())
    }

    fn take_capacity_failures(&self) -> Vec<Offering> {
        std::mem::take(&mut self.lock().capacity_failures)
    }
}

/// Called when a simulated group gets a new instance (turns it into a Node for `run`).
pub type GroupHook = Box<dyn Fn(&NodeGroup, &str) + Send + Sync>;

#[derive(Default)]
struct GroupsInner {
    groups: Vec<NodeGroup>,
    counter: u64,
    /// Groups whose scale-ups are refused for capacity (as a backed-off Auto Scaling
    /// group is by `AwsNodeGroups`).
    backed_off: Vec<String>,
    /// `set_desired group n` / `terminate id`, in order.
    calls: Vec<String>,
}

/// Simulated fixed node groups: `set_desired` adds or removes instances at once
/// (deterministic IDs `simulated:///<zone>/i-<n>`, zones taken in turn), and
/// `terminate_instance` removes one and lowers the desired size, as Auto Scaling's
/// `TerminateInstanceInAutoScalingGroup` does.
pub struct SimulatedGroups {
    inner: Mutex<GroupsInner>,
    hook: Option<GroupHook>,
}

impl SimulatedGroups {
    /// Groups as given (their `instances` as listed).
    pub fn new(groups: Vec<NodeGroup>) -> Self {
        SimulatedGroups {
            inner: Mutex::new(GroupsInner {
                groups,
                ..Default::default()
            }),
            hook: None,
        }
    }

    /// Brings every group up to its minimum size (after `with_hook`, so that the hook
    /// sees those instances too).
    pub fn fill_to_min(&self) {
        let sizes: Vec<(String, u32)> = self
            .lock()
            .groups
            .iter()
            .map(|g| (g.name.clone(), g.desired.max(g.min_size)))
            .collect();
        for (name, size) in sizes {
            self.resize(&name, size);
        }
    }

    /// The configuration's groups (`settings.nodeGroups`), without instances.
    pub fn from_settings(groups: &[crate::config::NodeGroup]) -> Self {
        Self::new(
            groups
                .iter()
                .map(|g| NodeGroup {
                    name: g.name.clone(),
                    min_size: g.min_size,
                    max_size: g.max_size,
                    desired: 0,
                    instance_type: g.instance_type.clone(),
                    capacity_type: g.capacity_type,
                    zones: g.zones.clone(),
                    labels: g.labels.clone(),
                    taints: g.taints.clone(),
                    instances: Vec::new(),
                })
                .collect(),
        )
    }

    pub fn with_hook(mut self, hook: GroupHook) -> Self {
        self.hook = Some(hook);
        self
    }

    fn lock(&self) -> MutexGuard<'_, GroupsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuse (or accept again) the group's scale-ups for lack of capacity.
    pub fn set_backed_off(&self, group: &str, backed_off: bool) {
        let mut inner = self.lock();
        inner.backed_off.retain(|g| g != group);
        if backed_off {
            inner.backed_off.push(group.to_string());
        }
    }

    /// The calls made so far (`set_desired <group> <n>`, `terminate <id>`).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Adds an instance as if launched earlier; returns its provider ID.
    pub fn add_instance(&self, group: &str) -> Option<String> {
        let size = self.lock().groups.iter().find(|g| g.name == group)?.desired + 1;
        self.resize(group, size).pop()
    }

    /// Grows or shrinks the group to `size` instances; returns the new ones.
    fn resize(&self, group: &str, size: u32) -> Vec<String> {
        let (added, snapshot) = {
            let mut inner = self.lock();
            let mut counter = inner.counter;
            let Some(g) = inner.groups.iter_mut().find(|g| g.name == group) else {
                return Vec::new();
            };
            let mut added = Vec::new();
            while (g.instances.len() as u32) < size {
                counter += 1;
                let zone = g.zones.get(g.instances.len() % g.zones.len().max(1));
                let id = format!(
                    "simulated:///{}/i-{counter:017x}",
                    zone.map_or("", String::as_str)
                );
                g.instances.push(id.clone());
                added.push(id);
            }
            g.instances.truncate(size as usize);
            g.desired = size;
            let snapshot = g.clone();
            inner.counter = counter;
            (added, snapshot)
        };
        if let Some(h) = &self.hook {
            for id in &added {
                h(&snapshot, id);
            }
        }
        added
    }
}

impl NodeGroupProvider for SimulatedGroups {
    fn name(&self) -> &'static str {
        "simulated-groups"
    }

    fn backed_off(&self, group: &str) -> bool {
        self.lock().backed_off.iter().any(|g| g == group)
    }

    async fn groups(&self) -> Result<Vec<NodeGroup>, CloudError> {
        Ok(self.lock().groups.clone())
    }

    async fn set_desired(&self, group: &str, desired: u32) -> Result<(), CloudError> {
        let g = {
            let mut inner = self.lock();
            inner.calls.push(format!("set_desired {group} {desired}"));
            let g = inner.groups.iter().find(|g| g.name == group).cloned();
            let g = g.ok_or_else(|| CloudError::Invalid {
                operation: "set_desired".into(),
                message: format!("no group {group}"),
            })?;
            if desired > g.max_size || desired < g.min_size {
                return Err(CloudError::Invalid {
                    operation: "set_desired".into(),
                    message: format!("desired {desired} outside {}..={}", g.min_size, g.max_size),
                });
            }
            if desired > g.desired && inner.backed_off.contains(&g.name) {
                return Err(CloudError::InsufficientCapacity {
                    offerings: g.offerings(),
                });
            }
            g
        };
        self.resize(&g.name, desired);
        Ok(())
    }

    async fn terminate_instance(&self, provider_id: &str) -> Result<(), CloudError> {
        let mut inner = self.lock();
        inner.calls.push(format!("terminate {provider_id}"));
        let g = inner
            .groups
            .iter_mut()
            .find(|g| g.instances.iter().any(|i| i == provider_id));
        let Some(g) = g else {
            return Err(CloudError::NotFound {
                provider_id: provider_id.to_string(),
            });
        };
        g.instances.retain(|i| i != provider_id);
        g.desired = g.desired.saturating_sub(1);
        Ok(())
    }
}
