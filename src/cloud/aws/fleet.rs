//! EC2 fleet mode: one `CreateFleet` (type `instant`) per NodeClaim.
//!
//! A launch first looks for an instance already tagged with the claim (so a retried or
//! repeated launch never creates a second one, even where `ClientToken` is not honoured),
//! then asks for Spot over every Spot option (`price-capacity-optimized`) and, when that
//! finds no capacity and the options include on-demand, for on-demand
//! (`lowest-price`). Each request lists one override per (instance type, subnet) the
//! options allow, at most [`MAX_OVERRIDES`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{
    CreateFleetError, CreateFleetInstance, DefaultTargetCapacityType,
    FleetLaunchTemplateConfigRequest, FleetLaunchTemplateOverridesRequest,
    FleetLaunchTemplateSpecificationRequest, FleetOnDemandAllocationStrategy, FleetType,
    InstanceLifecycle, InstanceType as Ec2InstanceType, OnDemandOptionsRequest, ResourceType,
    SpotAllocationStrategy, SpotOptionsRequest, Tag, TagSpecification,
    TargetCapacitySpecificationRequest,
};

use super::discovery::{self, Network};
use super::errors::{self, ErrorClass};
use super::instances;
use super::launch_template::{self, TemplateSpec};
use super::ops;
use super::pricing::{self, SpotCache};
use super::text::{fnv1a, sanitize};
use crate::cloud::{
    aws_provider_id, tags, CloudError, CloudProvider, Instance, InstanceState, LaunchRequest,
    Offering, OfferingUpdate,
};
use crate::config::AwsSettings;
use crate::core::instance::{CapacityType, Catalog};
use crate::core::labels;

/// CreateFleet accepts at most this many overrides per request (Karpenter's limit too).
pub const MAX_OVERRIDES: usize = 60;

/// One (instance type, subnet) a fleet request may use.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedOverride {
    pub arch: String,
    pub instance_type: String,
    pub subnet: String,
    pub zone: String,
}

/// The overrides for one capacity type's options, and the options no subnet can serve.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub overrides: Vec<PlannedOverride>,
    pub unservable: Vec<Offering>,
}

/// Every (type, subnet) pair the options allow, in option order (cheapest first), capped
/// at `max`. Options in zones without a selected subnet are `unservable`.
pub fn plan_overrides(
    options: &[Offering],
    network: &Network,
    arch_of: impl Fn(&str) -> String,
    max: usize,
) -> Plan {
    let mut plan = Plan::default();
    let mut seen = HashSet::new();
    for o in options {
        let subnets = network.subnets_in(&o.zone);
        if subnets.is_empty() {
            plan.unservable.push(o.clone());
            continue;
        }
        for s in subnets {
            if plan.overrides.len() >= max {
                return plan;
            }
            if seen.insert((o.instance_type.clone(), s.id.clone())) {
                plan.overrides.push(PlannedOverride {
                    arch: arch_of(&o.instance_type),
                    instance_type: o.instance_type.clone(),
                    subnet: s.id.clone(),
                    zone: o.zone.clone(),
                });
            }
        }
    }
    plan
}

/// The CreateFleet idempotency token of a claim's attempt at one capacity type with one
/// set of overrides (`overrides_key`): the same request after a lost response or a
/// restart gets the same token (EC2 returns the first result), while a retry with other
/// options (after a capacity failure) gets a new one, since EC2 rejects a token reused
/// with different parameters (`IdempotentParameterMismatch`). At most 64 characters.
pub fn client_token(
    cluster: &str,
    claim: &str,
    capacity: CapacityType,
    overrides_key: &str,
) -> String {
    let key = format!("{cluster}/{claim}/{}/{overrides_key}", capacity.as_str());
    let digest = fnv1a(key.as_bytes());
    let short = match capacity {
        CapacityType::Spot => "s",
        CapacityType::OnDemand => "od",
    };
    format!("{}-{short}-{digest:016x}", sanitize(claim, 40))
}

/// One failed override of a CreateFleet response, reduced to what classification needs.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetFailure {
    pub code: String,
    pub message: String,
    pub instance_type: Option<String>,
    pub subnet: Option<String>,
}

/// Why a fleet request launched nothing: the first quota or permission error wins (no
/// other offering can help); otherwise the offerings named by capacity errors (all the
/// requested ones when EC2 names none) are out of capacity.
pub fn classify_failures(
    failures: &[FleetFailure],
    requested: &[Offering],
    network: &Network,
) -> CloudError {
    for f in failures {
        match errors::classify(&f.code) {
            ErrorClass::Capacity | ErrorClass::Other => {}
            _ => return errors::from_code(ops::CREATE_FLEET, &f.code, &f.message),
        }
    }
    let mut failed: Vec<Offering> = Vec::new();
    for f in failures
        .iter()
        .filter(|f| errors::classify(&f.code) == ErrorClass::Capacity)
    {
        let zone = f.subnet.as_deref().and_then(|s| network.zone_of_subnet(s));
        for o in requested {
            let type_ok = f
                .instance_type
                .as_deref()
                .is_none_or(|t| t == o.instance_type);
            let zone_ok = zone.is_none_or(|z| z == o.zone);
            if type_ok && zone_ok && !failed.contains(o) {
                failed.push(o.clone());
            }
        }
    }
    if failed.is_empty() {
        if let Some(f) = failures
            .first()
            .filter(|f| errors::classify(&f.code) == ErrorClass::Other)
        {
            return errors::from_code(ops::CREATE_FLEET, &f.code, &f.message);
        }
        failed = requested.to_vec();
    }
    CloudError::InsufficientCapacity { offerings: failed }
}

#[derive(Default)]
struct State {
    network: Option<Network>,
    /// Launch template name -> ID.
    templates: HashMap<String, String>,
    spot: SpotCache,
    known_types: HashSet<String>,
    type_offerings: HashSet<(String, String)>,
    /// Spot offerings that failed inside a launch that then succeeded on-demand.
    capacity_failures: Vec<Offering>,
}

/// The EC2 fleet provider.
pub struct AwsFleet {
    ec2: aws_sdk_ec2::Client,
    settings: AwsSettings,
    catalog: Catalog,
    state: Mutex<State>,
}

impl AwsFleet {
    /// `catalog` gives architectures (one template per arch) and on-demand prices.
    pub fn new(ec2: aws_sdk_ec2::Client, settings: AwsSettings, catalog: Catalog) -> Self {
        AwsFleet {
            ec2,
            settings,
            catalog,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain data: keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spot offerings that ran out of capacity during launches that then succeeded
    /// on-demand; the controller marks them unavailable like any other failure.
    pub fn take_capacity_failures(&self) -> Vec<Offering> {
        std::mem::take(&mut self.state().capacity_failures)
    }

    fn arch_of(&self, instance_type: &str) -> String {
        self.catalog
            .find(instance_type)
            .and_then(|i| self.catalog.types[i].labels.get(labels::ARCH).cloned())
            .unwrap_or_else(|| "amd64".to_string())
    }

    /// The subnets and security groups, discovered once and refreshed by `offerings()`.
    async fn network(&self) -> Result<Network, CloudError> {
        if let Some(n) = self.state().network.clone() {
            return Ok(n);
        }
        self.refresh_network().await
    }

    async fn refresh_network(&self) -> Result<Network, CloudError> {
        let s = &self.settings;
        let n =
            discovery::network(&self.ec2, &s.subnet_selector, &s.security_group_selector).await?;
        self.state().network = Some(n.clone());
        Ok(n)
    }

    async fn template(
        &self,
        req: &LaunchRequest,
        arch: &str,
        network: &Network,
    ) -> Result<String, CloudError> {
        let mut taints = req.taints.clone();
        taints.extend(req.startup_taints.iter().cloned());
        let spec = TemplateSpec {
            cluster: self.settings.cluster_name.clone(),
            pool: req.node_pool.clone(),
            arch: arch.to_string(),
            image_id: launch_template::image_id(&self.settings.ami, arch),
            instance_profile: self.settings.instance_profile.clone(),
            security_groups: network.security_groups.clone(),
            user_data: launch_template::user_data(
                &self.settings,
                &req.labels,
                &taints,
                self.settings.max_pods,
            ),
            root_volume_gib: gib(self.settings.root_volume.size),
            root_volume_type: self.settings.root_volume.volume_type.clone(),
        };
        let name = spec.name();
        if let Some(id) = self.state().templates.get(&name) {
            return Ok(id.clone());
        }
        let id = launch_template::ensure(&self.ec2, &spec).await?;
        self.state().templates.insert(name, id.clone());
        Ok(id)
    }

    fn claim_tags(&self, req: &LaunchRequest) -> Vec<Tag> {
        let mut t = launch_template::pool_tags(&self.settings.cluster_name, &req.node_pool);
        t.push(
            Tag::builder()
                .key(tags::NODE_CLAIM)
                .value(&req.node_claim)
                .build(),
        );
        t.push(Tag::builder().key("Name").value(&req.node_claim).build());
        t
    }

    /// One CreateFleet over `options` (all of one capacity type).
    async fn fleet(
        &self,
        req: &LaunchRequest,
        capacity: CapacityType,
        options: &[Offering],
        network: &Network,
    ) -> Result<Instance, CloudError> {
        let plan = plan_overrides(options, network, |t| self.arch_of(t), MAX_OVERRIDES);
        if plan.overrides.is_empty() {
            return Err(CloudError::InsufficientCapacity {
                offerings: plan.unservable,
            });
        }
        let mut by_arch: BTreeMap<String, Vec<&PlannedOverride>> = BTreeMap::new();
        for o in &plan.overrides {
            by_arch.entry(o.arch.clone()).or_default().push(o);
        }
        let mut configs = Vec::new();
        for (arch, overrides) in &by_arch {
            let id = self.template(req, arch, network).await?;
            configs.push(launch_config(&id, overrides));
        }
        let out = match self
            .create_fleet_request(req, capacity, configs)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                if errors::code_of(&e).is_some_and(|c| c.starts_with("InvalidLaunchTemplate")) {
                    // Deleted behind our back: look the templates up again next time.
                    self.state().templates.clear();
                }
                return Err(errors::map(ops::CREATE_FLEET, e));
            }
        };
        if let Some(i) = out
            .instances()
            .iter()
            .find_map(|i| self.launched(req, i, network))
        {
            return Ok(i);
        }
        let failures: Vec<FleetFailure> = out.errors().iter().map(failure).collect();
        let attempted: Vec<Offering> = options
            .iter()
            .filter(|o| !plan.unservable.contains(o))
            .cloned()
            .collect();
        match classify_failures(&failures, &attempted, network) {
            // Options no subnet can serve failed too.
            CloudError::InsufficientCapacity { mut offerings } => {
                offerings.extend(plan.unservable);
                Err(CloudError::InsufficientCapacity { offerings })
            }
            other => Err(other),
        }
    }

    fn create_fleet_request(
        &self,
        req: &LaunchRequest,
        capacity: CapacityType,
        configs: Vec<FleetLaunchTemplateConfigRequest>,
    ) -> aws_sdk_ec2::operation::create_fleet::builders::CreateFleetFluentBuilder {
        let default_type = match capacity {
            CapacityType::Spot => DefaultTargetCapacityType::Spot,
            CapacityType::OnDemand => DefaultTargetCapacityType::OnDemand,
        };
        let mut r = self
            .ec2
            .create_fleet()
            .r#type(FleetType::Instant)
            .client_token(client_token(
                &self.settings.cluster_name,
                &req.node_claim,
                capacity,
                &format!("{configs:?}"),
            ))
            .set_launch_template_configs(Some(configs))
            .target_capacity_specification(
                TargetCapacitySpecificationRequest::builder()
                    .total_target_capacity(1)
                    .default_target_capacity_type(default_type)
                    .build(),
            )
            .spot_options(
                SpotOptionsRequest::builder()
                    .allocation_strategy(SpotAllocationStrategy::PriceCapacityOptimized)
                    .build(),
            )
            .on_demand_options(
                OnDemandOptionsRequest::builder()
                    .allocation_strategy(FleetOnDemandAllocationStrategy::LowestPrice)
                    .build(),
            );
        for rt in [ResourceType::Instance, ResourceType::Volume] {
            r = r.tag_specifications(
                TagSpecification::builder()
                    .resource_type(rt)
                    .set_tags(Some(self.claim_tags(req)))
                    .build(),
            );
        }
        r
    }

    /// The instance a fleet response reports, in our terms.
    fn launched(
        &self,
        req: &LaunchRequest,
        i: &CreateFleetInstance,
        network: &Network,
    ) -> Option<Instance> {
        let id = i.instance_ids().first()?;
        let overrides = i
            .launch_template_and_overrides()
            .and_then(|l| l.overrides());
        let zone = overrides
            .and_then(|o| o.subnet_id())
            .and_then(|s| network.zone_of_subnet(s))
            .or_else(|| overrides.and_then(|o| o.availability_zone()))
            .or(i.availability_zone())?
            .to_string();
        let instance_type = i
            .instance_type()
            .or_else(|| overrides.and_then(|o| o.instance_type()))
            .map_or("", Ec2InstanceType::as_str)
            .to_string();
        let capacity_type = match i.lifecycle() {
            Some(InstanceLifecycle::Spot) => CapacityType::Spot,
            _ => CapacityType::OnDemand,
        };
        Some(Instance {
            provider_id: aws_provider_id(&zone, id),
            instance_type,
            zone,
            capacity_type,
            state: InstanceState::Pending,
            node_claim: Some(req.node_claim.clone()),
            node_pool: Some(req.node_pool.clone()),
            launched_at: super::now_secs(),
        })
    }

    async fn launch_inner(&self, req: &LaunchRequest) -> Result<Instance, CloudError> {
        let missing = self.settings.missing_for_fleet();
        if !missing.is_empty() {
            // A node without them could never join: fail before paying for one.
            return Err(CloudError::Invalid {
                operation: ops::CREATE_FLEET.into(),
                message: format!(
                    "settings aws.{} must be set for fleet launches",
                    missing.join(", aws.")
                ),
            });
        }
        let cluster = &self.settings.cluster_name;
        let existing = instances::describe(&self.ec2, cluster, Some(&req.node_claim)).await?;
        if let Some(i) = existing.into_iter().next() {
            return Ok(i);
        }
        let network = self.network().await?;
        let by_type = |c: CapacityType| -> Vec<Offering> {
            req.options
                .iter()
                .filter(|o| o.capacity_type == c)
                .cloned()
                .collect()
        };
        let attempts = [
            (CapacityType::Spot, by_type(CapacityType::Spot)),
            (CapacityType::OnDemand, by_type(CapacityType::OnDemand)),
        ];
        let mut failed = Vec::new();
        let mut last_error = None;
        for (capacity, options) in attempts.iter().filter(|(_, o)| !o.is_empty()) {
            match self.fleet(req, *capacity, options, &network).await {
                Ok(i) => {
                    self.state().capacity_failures.extend(failed);
                    return Ok(i);
                }
                Err(CloudError::InsufficientCapacity { offerings }) => failed.extend(offerings),
                // No Spot quota left: on-demand may still work.
                Err(e @ CloudError::QuotaExceeded { .. }) if *capacity == CapacityType::Spot => {
                    last_error = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        match last_error {
            Some(e) if failed.is_empty() => Err(e),
            _ => Err(CloudError::InsufficientCapacity { offerings: failed }),
        }
    }

    /// Spot prices are optional: without them the last known (at first the bundled)
    /// prices stay, so a missing permission or a throttled call does not stop launches.
    async fn refresh_offerings(&self, now: Instant) -> Result<(), CloudError> {
        let history = pricing::spot_history(&self.ec2).await;
        let offered = discovery::type_offerings(&self.ec2).await?;
        let known = discovery::instance_types(&self.ec2).await?;
        self.refresh_network().await?;
        let mut st = self.state();
        let history = history.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "Spot prices unavailable, keeping the last known ones");
            st.spot.history().clone()
        });
        st.spot.store(now, history);
        st.type_offerings = offered;
        st.known_types = known;
        Ok(())
    }
}

fn gib(bytes: i64) -> i32 {
    let g = (bytes + (1 << 30) - 1) >> 30;
    i32::try_from(g).unwrap_or(i32::MAX)
}

fn launch_config(
    template_id: &str,
    overrides: &[&PlannedOverride],
) -> FleetLaunchTemplateConfigRequest {
    let mut c = FleetLaunchTemplateConfigRequest::builder().launch_template_specification(
        FleetLaunchTemplateSpecificationRequest::builder()
            .launch_template_id(template_id)
            .version("$Latest")
            .build(),
    );
    for o in overrides {
        c = c.overrides(
            FleetLaunchTemplateOverridesRequest::builder()
                .instance_type(Ec2InstanceType::from(o.instance_type.as_str()))
                .subnet_id(&o.subnet)
                .build(),
        );
    }
    c.build()
}

fn failure(e: &CreateFleetError) -> FleetFailure {
    let overrides = e
        .launch_template_and_overrides()
        .and_then(|l| l.overrides());
    FleetFailure {
        code: e.error_code().unwrap_or("Unknown").to_string(),
        message: e.error_message().unwrap_or_default().to_string(),
        instance_type: overrides
            .and_then(|o| o.instance_type())
            .map(|t| t.as_str().to_string()),
        subnet: overrides.and_then(|o| o.subnet_id()).map(str::to_string),
    }
}

impl CloudProvider for AwsFleet {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn take_capacity_failures(&self) -> Vec<Offering> {
        // The inherent method (tests call it directly).
        AwsFleet::take_capacity_failures(self)
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Instance, CloudError> {
        self.launch_inner(request).await
    }

    async fn terminate(&self, provider_id: &str) -> Result<(), CloudError> {
        instances::terminate(&self.ec2, &[provider_id.to_string()]).await
    }

    async fn list(&self) -> Result<Vec<Instance>, CloudError> {
        instances::describe(&self.ec2, &self.settings.cluster_name, None).await
    }

    /// Spot prices, type offerings and subnets are fetched again every
    /// `spotPriceRefresh`; between refreshes this makes no API call.
    async fn offerings(&self) -> Result<OfferingUpdate, CloudError> {
        let now = Instant::now();
        let due = self.state().spot.due(now, self.settings.spot_price_refresh);
        if due {
            self.refresh_offerings(now).await?;
        }
        let st = self.state();
        let network = st.network.clone().unwrap_or_default();
        Ok(OfferingUpdate {
            prices: pricing::offering_prices(&self.catalog, st.spot.history()),
            unavailable: discovery::unavailable(
                &self.catalog,
                &st.known_types,
                &st.type_offerings,
                &network,
            ),
        })
    }
}

impl AwsFleet {
    /// Terminates instances we launched whose NodeClaim is gone (see
    /// [`instances::orphans`]); returns their provider IDs.
    pub async fn collect_garbage(
        &self,
        live_claims: &HashSet<String>,
        grace: Duration,
    ) -> Result<Vec<String>, CloudError> {
        let all = CloudProvider::list(self).await?;
        let orphans = instances::orphans(&all, live_claims, super::now_secs(), grace);
        if !orphans.is_empty() {
            instances::terminate(&self.ec2, &orphans).await?;
        }
        Ok(orphans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::aws::discovery::Subnet;

    fn net() -> Network {
        let s = |id: &str, zone: &str| Subnet {
            id: id.into(),
            zone: zone.into(),
            available_ips: 100,
        };
        Network {
            subnets: vec![
                s("subnet-a1", "us-east-1a"),
                s("subnet-a2", "us-east-1a"),
                s("subnet-b", "us-east-1b"),
            ],
            security_groups: vec!["sg-1".into()],
        }
    }

    fn offer(t: &str, zone: &str) -> Offering {
        Offering {
            instance_type: t.into(),
            zone: zone.into(),
            capacity_type: CapacityType::Spot,
            price_per_hour: 0.05,
        }
    }

    #[test]
    fn overrides_cover_type_by_subnet_and_skip_zones_without_subnets() {
        let opts = [
            offer("m5.large", "us-east-1a"),
            offer("m5.large", "us-east-1b"),
            offer("c5.large", "us-east-1c"),
        ];
        let plan = plan_overrides(&opts, &net(), |_| "amd64".into(), 60);
        let pairs: Vec<(&str, &str)> = plan
            .overrides
            .iter()
            .map(|o| (o.instance_type.as_str(), o.subnet.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("m5.large", "subnet-a1"),
                ("m5.large", "subnet-a2"),
                ("m5.large", "subnet-b")
            ]
        );
        assert_eq!(plan.unservable, [offer("c5.large", "us-east-1c")]);
    }

    #[test]
    fn overrides_are_capped() {
        let opts: Vec<Offering> = (0..100)
            .map(|i| offer(&format!("t{i}.large"), "us-east-1a"))
            .collect();
        let plan = plan_overrides(&opts, &net(), |_| "amd64".into(), MAX_OVERRIDES);
        assert_eq!(plan.overrides.len(), MAX_OVERRIDES);
        assert_eq!(plan.overrides[0].instance_type, "t0.large");
    }

    #[test]
    fn client_token_is_stable_bounded_and_per_capacity() {
        let long = "x".repeat(300);
        let token = |cluster, capacity, key| client_token(cluster, &long, capacity, key);
        let a = token("prod", CapacityType::Spot, "m5.large/subnet-a");
        assert!(a.len() <= 64, "{a}");
        assert_eq!(a, token("prod", CapacityType::Spot, "m5.large/subnet-a"));
        assert_ne!(
            a,
            token("prod", CapacityType::OnDemand, "m5.large/subnet-a")
        );
        assert_ne!(a, token("stage", CapacityType::Spot, "m5.large/subnet-a"));
        assert_ne!(a, token("prod", CapacityType::Spot, "c5.large/subnet-a"));
    }

    fn fail(code: &str, t: Option<&str>, subnet: Option<&str>) -> FleetFailure {
        FleetFailure {
            code: code.into(),
            message: "m".into(),
            instance_type: t.map(str::to_string),
            subnet: subnet.map(str::to_string),
        }
    }

    #[test]
    fn capacity_errors_name_exactly_the_failed_offerings() {
        let req = [
            offer("m5.large", "us-east-1a"),
            offer("m5.large", "us-east-1b"),
            offer("c5.large", "us-east-1a"),
        ];
        let f = [fail(
            "InsufficientInstanceCapacity",
            Some("m5.large"),
            Some("subnet-a2"),
        )];
        match classify_failures(&f, &req, &net()) {
            CloudError::InsufficientCapacity { offerings } => {
                assert_eq!(offerings, [offer("m5.large", "us-east-1a")])
            }
            e => panic!("unexpected {e:?}"),
        }
        // No detail at all: every requested offering failed.
        match classify_failures(&[], &req, &net()) {
            CloudError::InsufficientCapacity { offerings } => assert_eq!(offerings.len(), 3),
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn quota_and_permission_errors_win_over_capacity() {
        let req = [offer("m5.large", "us-east-1a")];
        let f = [
            fail("InsufficientInstanceCapacity", Some("m5.large"), None),
            fail("VcpuLimitExceeded", None, None),
        ];
        assert!(matches!(
            classify_failures(&f, &req, &net()),
            CloudError::QuotaExceeded { .. }
        ));
        let f = [fail("UnauthorizedOperation", None, None)];
        assert!(matches!(
            classify_failures(&f, &req, &net()),
            CloudError::Unauthorized { action, .. } if action == "ec2:CreateFleet"
        ));
    }
}
