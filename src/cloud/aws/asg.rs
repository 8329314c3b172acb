//! Node-group mode: Auto Scaling groups discovered by tags (or named), scaled by count
//! as the Cluster Autoscaler does, with a back-off for groups whose scale-ups fail.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::{AutoScalingGroup, Filter, ScalingActivityStatusCode};

use super::errors;
use super::ops;
use crate::cloud::{aws_provider_id, instance_id, CloudError, NodeGroup, NodeGroupProvider};
use crate::config::AwsSettings;
use crate::core::instance::CapacityType;
use crate::core::taints::{Taint, TaintEffect};

pub const TAG_ENABLED: &str = "k8s.io/cluster-autoscaler/enabled";
pub const LABEL_TAG_PREFIX: &str = "k8s.io/cluster-autoscaler/node-template/label/";
pub const TAINT_TAG_PREFIX: &str = "k8s.io/cluster-autoscaler/node-template/taint/";

/// The tag every group of `cluster` carries.
pub fn cluster_tag(cluster: &str) -> String {
    format!("k8s.io/cluster-autoscaler/{cluster}")
}

/// Labels and taints from a group's `node-template` tags. A taint tag's value is
/// `value:Effect` (or just `Effect`); malformed ones are skipped.
pub fn node_template(tags: &[(String, String)]) -> (BTreeMap<String, String>, Vec<Taint>) {
    let mut labels = BTreeMap::new();
    let mut taints = Vec::new();
    for (k, v) in tags {
        if let Some(key) = k.strip_prefix(LABEL_TAG_PREFIX) {
            labels.insert(key.to_string(), v.clone());
        } else if let Some(key) = k.strip_prefix(TAINT_TAG_PREFIX) {
            let (value, effect) = v.rsplit_once(':').unwrap_or(("", v.as_str()));
            if let Some(effect) = TaintEffect::parse(effect) {
                taints.push(Taint {
                    key: key.to_string(),
                    value: value.to_string(),
                    effect,
                });
            }
        }
    }
    (labels, taints)
}

/// A scaling activity, reduced to what failure detection needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    pub group: String,
    pub failed: bool,
    /// Scale-up activities describe launches (`Launching a new EC2 instance...`).
    pub launching: bool,
    pub started_at: f64,
    pub message: String,
}

/// Applies launch activities started after `since` to the back-off in time order: a
/// failed launch backs the group off (further), a successful one clears it. Returns the
/// latest start time seen and the groups that failed.
pub fn apply_activities(
    backoff: &mut Backoff,
    activities: &[Activity],
    since: f64,
) -> (f64, Vec<String>) {
    let mut new: Vec<&Activity> = activities
        .iter()
        .filter(|a| a.launching && a.started_at > since)
        .collect();
    new.sort_by(|a, b| a.started_at.total_cmp(&b.started_at));
    let mut failed = Vec::new();
    for a in &new {
        if a.failed {
            backoff.fail(&a.group, a.started_at);
            if !failed.contains(&a.group) {
                failed.push(a.group.clone());
            }
        } else {
            backoff.succeed(&a.group);
            failed.retain(|g| g != &a.group);
        }
    }
    let latest = new.last().map_or(since, |a| a.started_at);
    (latest, failed)
}

/// Exponential back-off per group after failed scale-ups (the Cluster Autoscaler's
/// defaults: 5 minutes, doubling, at most 30), cleared by a successful scale-up.
#[derive(Clone, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    groups: HashMap<String, (u32, f64)>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(300),
            max: Duration::from_secs(1800),
            groups: HashMap::new(),
        }
    }
}

impl Backoff {
    /// Records a failure at `at`; returns when the group may scale up again.
    pub fn fail(&mut self, group: &str, at: f64) -> f64 {
        let (n, until) = self.groups.entry(group.to_string()).or_insert((0, 0.0));
        *n = n.saturating_add(1);
        let factor = 2f64.powi((*n - 1).min(30) as i32);
        let wait = (self.initial.as_secs_f64() * factor).min(self.max.as_secs_f64());
        *until = at + wait;
        *until
    }

    pub fn succeed(&mut self, group: &str) {
        self.groups.remove(group);
    }

    /// When the group's back-off ends, if it is backed off at `now`.
    pub fn until(&self, group: &str, now: f64) -> Option<f64> {
        self.groups
            .get(group)
            .map(|(_, until)| *until)
            .filter(|until| *until > now)
    }
}

#[derive(Default)]
struct State {
    groups: HashMap<String, NodeGroup>,
    /// Launch template (id or name, version) -> (instance type, Spot?).
    templates: HashMap<(String, String), (String, bool)>,
    backoff: Backoff,
    /// Activities up to this time have been looked at.
    seen_until: f64,
    /// When activities were last read (`None`: never).
    activities_read: Option<Instant>,
}

/// The Auto Scaling node-group provider.
pub struct AwsNodeGroups {
    autoscaling: aws_sdk_autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
    settings: AwsSettings,
    state: Mutex<State>,
}

impl AwsNodeGroups {
    pub fn new(
        autoscaling: aws_sdk_autoscaling::Client,
        ec2: aws_sdk_ec2::Client,
        settings: AwsSettings,
    ) -> Self {
        let state = State {
            seen_until: super::now_secs(),
            ..State::default()
        };
        AwsNodeGroups {
            autoscaling,
            ec2,
            settings,
            state: Mutex::new(state),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the group may scale up again, if it is backed off.
    pub fn backed_off_until(&self, group: &str) -> Option<f64> {
        self.state().backoff.until(group, super::now_secs())
    }

    /// Applies scale-up failures (from `DescribeScalingActivities` or observed by the
    /// caller) to the back-off; returns the groups newly backed off.
    pub fn record_activities(&self, activities: &[Activity]) -> Vec<String> {
        let mut st = self.state();
        let since = st.seen_until;
        let (latest, failed) = apply_activities(&mut st.backoff, activities, since);
        st.seen_until = latest;
        failed
    }

    async fn describe(&self, names: &[String]) -> Result<Vec<AutoScalingGroup>, CloudError> {
        let mut req = self.autoscaling.describe_auto_scaling_groups();
        if names.is_empty() {
            let tag_filter = |key: String| Filter::builder().name("tag-key").values(key).build();
            req = req
                .filters(tag_filter(TAG_ENABLED.to_string()))
                .filters(tag_filter(cluster_tag(&self.settings.cluster_name)));
        } else {
            req = req.set_auto_scaling_group_names(Some(names.to_vec()));
        }
        let mut pages = req.max_records(100).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| errors::map(ops::DESCRIBE_AUTO_SCALING_GROUPS, e))?;
            out.extend(page.auto_scaling_groups().iter().cloned());
        }
        Ok(out)
    }

    /// The instance type and market of a launch template version, cached (versions
    /// are immutable; `$Latest`/`$Default` are re-read only on a restart).
    async fn template_type(
        &self,
        id_or_name: &str,
        version: &str,
    ) -> Result<(String, bool), CloudError> {
        let key = (id_or_name.to_string(), version.to_string());
        if let Some(v) = self.state().templates.get(&key) {
            return Ok(v.clone());
        }
        let mut req = self
            .ec2
            .describe_launch_template_versions()
            .versions(version);
        req = if id_or_name.starts_with("lt-") {
            req.launch_template_id(id_or_name)
        } else {
            req.launch_template_name(id_or_name)
        };
        let out = req
            .send()
            .await
            .map_err(|e| errors::map(ops::DESCRIBE_LAUNCH_TEMPLATE_VERSIONS, e))?;
        let data = out
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data());
        let instance_type = data
            .and_then(|d| d.instance_type())
            .map_or(String::new(), |t| t.as_str().to_string());
        let spot = data
            .and_then(|d| d.instance_market_options())
            .and_then(|m| m.market_type())
            .is_some_and(|m| m.as_str() == "spot");
        self.state()
            .templates
            .insert(key, (instance_type.clone(), spot));
        Ok((instance_type, spot))
    }

    async fn to_group(&self, g: &AutoScalingGroup) -> Result<Option<NodeGroup>, CloudError> {
        let Some(name) = g.auto_scaling_group_name() else {
            return Ok(None);
        };
        let (instance_type, capacity_type) = self.instance_type_of(g).await?;
        if instance_type.is_empty() {
            // Without a type the group cannot be simulated (nor scaled from zero).
            return Err(CloudError::Invalid {
                operation: ops::DESCRIBE_AUTO_SCALING_GROUPS.into(),
                message: format!("group {name} names no instance type (launch configurations and attribute-based selection are not read)"),
            });
        }
        let tags: Vec<(String, String)> = g
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
            .collect();
        let (labels, taints) = node_template(&tags);
        let count = |v: Option<i32>| u32::try_from(v.unwrap_or(0)).unwrap_or(0);
        Ok(Some(NodeGroup {
            name: name.to_string(),
            min_size: count(g.min_size()),
            max_size: count(g.max_size()),
            desired: count(g.desired_capacity()),
            instance_type,
            capacity_type,
            zones: g.availability_zones().to_vec(),
            labels,
            taints,
            instances: g
                .instances()
                .iter()
                .filter_map(|i| Some(aws_provider_id(i.availability_zone()?, i.instance_id()?)))
                .collect(),
        }))
    }

    /// The type new nodes get: the first override of a mixed-instances policy, else the
    /// launch template's. Spot when the policy buys no on-demand (or the template asks
    /// for Spot).
    async fn instance_type_of(
        &self,
        g: &AutoScalingGroup,
    ) -> Result<(String, CapacityType), CloudError> {
        let mixed = g.mixed_instances_policy();
        let spec = mixed
            .and_then(|m| m.launch_template())
            .and_then(|l| l.launch_template_specification())
            .or(g.launch_template());
        let first_override = mixed
            .and_then(|m| m.launch_template())
            .and_then(|l| l.overrides().first())
            .and_then(|o| o.instance_type());
        let mixed_spot = mixed
            .and_then(|m| m.instances_distribution())
            .is_some_and(|d| {
                d.on_demand_base_capacity().unwrap_or(0) == 0
                    && d.on_demand_percentage_above_base_capacity().unwrap_or(100) == 0
            });
        let (mut instance_type, mut spot) = (first_override.unwrap_or("").to_string(), mixed_spot);
        if instance_type.is_empty() {
            if let Some(s) = spec {
                let id = s
                    .launch_template_id()
                    .or(s.launch_template_name())
                    .unwrap_or("");
                let (t, template_spot) = self
                    .template_type(id, s.version().unwrap_or("$Default"))
                    .await?;
                instance_type = t;
                spot |= template_spot;
            }
        }
        let capacity = if spot {
            CapacityType::Spot
        } else {
            CapacityType::OnDemand
        };
        Ok((instance_type, capacity))
    }

    async fn activities(&self) -> Result<Vec<Activity>, CloudError> {
        let out = self
            .autoscaling
            .describe_scaling_activities()
            .max_records(100)
            .send()
            .await
            .map_err(|e| errors::map(ops::DESCRIBE_SCALING_ACTIVITIES, e))?;
        Ok(out
            .activities()
            .iter()
            .filter_map(|a| {
                let failed = matches!(
                    a.status_code(),
                    Some(ScalingActivityStatusCode::Failed | ScalingActivityStatusCode::Cancelled)
                );
                Some(Activity {
                    group: a.auto_scaling_group_name()?.to_string(),
                    failed,
                    launching: a.description().is_some_and(|d| d.starts_with("Launching")),
                    started_at: a.start_time()?.as_secs_f64(),
                    message: a.status_message().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }

    async fn group(&self, name: &str) -> Result<NodeGroup, CloudError> {
        let found = self.describe(&[name.to_string()]).await?;
        match found.first() {
            Some(g) => self.to_group(g).await?.ok_or_else(|| not_found(name)),
            None => Err(not_found(name)),
        }
    }
}

fn not_found(group: &str) -> CloudError {
    CloudError::Invalid {
        operation: ops::SET_DESIRED_CAPACITY.into(),
        message: format!("Auto Scaling group {group} not found"),
    }
}

/// How often scaling activities are read when no group is launching.
pub const ACTIVITIES_EVERY: Duration = Duration::from_secs(60);

/// Scaling activities are worth reading while a group is launching (desired above its
/// instances: a failure can only come from there), and otherwise once a minute (a
/// launch that failed between two scans), not on every scan.
pub fn activities_due(groups: &[NodeGroup], read: Option<Instant>, now: Instant) -> bool {
    let launching = groups
        .iter()
        .any(|g| g.desired as usize > g.instances.len());
    launching || read.is_none_or(|t| now.saturating_duration_since(t) >= ACTIVITIES_EVERY)
}

/// A desired size the group accepts. Auto Scaling rejects sizes outside min..=max (moto
/// does not, so check here).
pub fn check_desired(g: &NodeGroup, desired: u32) -> Result<(), CloudError> {
    if desired > g.max_size || desired < g.min_size {
        return Err(CloudError::Invalid {
            operation: ops::SET_DESIRED_CAPACITY.into(),
            message: format!(
                "desired {desired} is outside {}'s bounds {}..={}",
                g.name, g.min_size, g.max_size
            ),
        });
    }
    Ok(())
}

impl NodeGroupProvider for AwsNodeGroups {
    fn name(&self) -> &'static str {
        "aws-autoscaling"
    }

    fn backed_off(&self, group: &str) -> bool {
        self.backed_off_until(group).is_some()
    }

    /// Groups by tag (or by configured name), and scale-up failures since the last call
    /// applied to the back-off.
    async fn groups(&self) -> Result<Vec<NodeGroup>, CloudError> {
        let raw = self.describe(&self.settings.auto_scaling_groups).await?;
        let mut out = Vec::new();
        for g in &raw {
            match self.to_group(g).await {
                Ok(group) => out.extend(group),
                // A group whose launch template is gone or malformed is left out; the
                // others still scale. Permission and throttling errors concern all.
                Err(e @ CloudError::Invalid { .. }) => {
                    tracing::warn!(group = g.auto_scaling_group_name(), error = %e, "skipping Auto Scaling group");
                }
                Err(e) => return Err(e),
            }
        }
        let read = self.state().activities_read;
        if activities_due(&out, read, Instant::now()) {
            let activities = self.activities().await?;
            self.record_activities(&activities);
            self.state().activities_read = Some(Instant::now());
        }
        let mut st = self.state();
        st.groups = out.iter().map(|g| (g.name.clone(), g.clone())).collect();
        Ok(out)
    }

    async fn set_desired(&self, group: &str, desired: u32) -> Result<(), CloudError> {
        let g = self.group(group).await?;
        check_desired(&g, desired)?;
        if desired > g.desired && self.backed_off_until(group).is_some() {
            return Err(CloudError::InsufficientCapacity {
                offerings: g.offerings(),
            });
        }
        self.autoscaling
            .set_desired_capacity()
            .auto_scaling_group_name(group)
            .desired_capacity(i32::try_from(desired).unwrap_or(i32::MAX))
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|e| errors::map(ops::SET_DESIRED_CAPACITY, e))?;
        Ok(())
    }

    /// Only instances of a known group are terminated (Auto Scaling answers an unknown
    /// ID with a server error in some emulators; this gives `NotFound` instead).
    async fn terminate_instance(&self, provider_id: &str) -> Result<(), CloudError> {
        let id = instance_id(provider_id);
        let belongs = |st: &State| {
            st.groups
                .values()
                .any(|g| g.instances.iter().any(|p| instance_id(p) == id))
        };
        if !belongs(&self.state()) {
            self.groups().await?;
            if !belongs(&self.state()) {
                return Err(CloudError::NotFound {
                    provider_id: provider_id.to_string(),
                });
            }
        }
        self.autoscaling
            .terminate_instance_in_auto_scaling_group()
            .instance_id(id)
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .map_err(|e| errors::map(ops::TERMINATE_INSTANCE_IN_ASG, e))?;
        let mut st = self.state();
        for g in st.groups.values_mut() {
            g.instances.retain(|p| instance_id(p) != id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_template_tags_become_labels_and_taints() {
        let t = |k: &str, v: &str| (k.to_string(), v.to_string());
        let (labels, taints) = node_template(&[
            t("k8s.io/cluster-autoscaler/node-template/label/team", "ml"),
            t(
                "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu",
                "true:NoSchedule",
            ),
            t(
                "k8s.io/cluster-autoscaler/node-template/taint/dedicated",
                "NoExecute",
            ),
            t(
                "k8s.io/cluster-autoscaler/node-template/taint/bad",
                "x:Sometimes",
            ),
            t("Name", "gpu"),
        ]);
        assert_eq!(
            labels,
            BTreeMap::from([("team".to_string(), "ml".to_string())])
        );
        assert_eq!(
            taints,
            [
                Taint {
                    key: "nvidia.com/gpu".into(),
                    value: "true".into(),
                    effect: TaintEffect::NoSchedule
                },
                Taint {
                    key: "dedicated".into(),
                    value: "".into(),
                    effect: TaintEffect::NoExecute
                },
            ]
        );
    }

    fn act(group: &str, failed: bool, launching: bool, at: f64) -> Activity {
        Activity {
            group: group.into(),
            failed,
            launching,
            started_at: at,
            message: format!("m{at}"),
        }
    }

    #[test]
    fn only_new_failed_launches_back_off_and_success_clears() {
        let mut b = Backoff::default();
        let acts = [
            act("a", true, true, 30.0),
            act("a", true, true, 10.0),
            act("b", false, true, 40.0),
            act("c", true, false, 40.0),
            act("d", true, true, 5.0),
            act("e", true, true, 20.0),
            act("e", false, true, 25.0),
        ];
        let (latest, failed) = apply_activities(&mut b, &acts, 6.0);
        assert_eq!(latest, 40.0);
        assert_eq!(failed, ["a"]);
        // Two failures of a: the second doubles the wait from its own start.
        assert_eq!(b.until("a", 0.0), Some(30.0 + 600.0));
        assert_eq!(b.until("d", 0.0), None, "before `since`");
        assert_eq!(b.until("c", 0.0), None, "not a launch");
        assert_eq!(b.until("e", 0.0), None, "a later success clears it");
        // Seen activities are not counted twice.
        let (_, again) = apply_activities(&mut b, &acts, latest);
        assert!(again.is_empty());
        assert_eq!(b.until("a", 0.0), Some(630.0));
    }

    #[test]
    fn backoff_doubles_caps_and_clears() {
        let mut b = Backoff::default();
        assert_eq!(b.fail("g", 0.0), 300.0);
        assert_eq!(b.fail("g", 100.0), 100.0 + 600.0);
        b.fail("g", 0.0);
        b.fail("g", 0.0);
        assert_eq!(b.fail("g", 0.0), 1800.0, "capped at 30 minutes");
        assert_eq!(b.until("g", 10.0), Some(1800.0));
        assert_eq!(b.until("g", 1800.0), None, "expired");
        assert_eq!(b.until("other", 0.0), None);
        b.succeed("g");
        assert_eq!(b.fail("g", 0.0), 300.0, "success resets the exponent");
    }

    #[test]
    fn activities_are_read_while_launching_or_once_a_minute() {
        let mut g = group();
        let t0 = Instant::now();
        let soon = t0 + Duration::from_secs(10);
        assert!(
            activities_due(std::slice::from_ref(&g), None, t0),
            "never read"
        );
        g.instances = vec!["a".into(), "b".into()];
        assert!(
            !activities_due(std::slice::from_ref(&g), Some(t0), soon),
            "settled"
        );
        assert!(activities_due(
            std::slice::from_ref(&g),
            Some(t0),
            t0 + ACTIVITIES_EVERY
        ));
        g.instances.pop();
        assert!(activities_due(&[g], Some(t0), soon), "a launch in progress");
    }

    fn group() -> NodeGroup {
        NodeGroup {
            name: "g".into(),
            min_size: 1,
            max_size: 3,
            desired: 2,
            instance_type: "m5.large".into(),
            capacity_type: CapacityType::OnDemand,
            zones: vec!["us-east-1a".into()],
            labels: BTreeMap::new(),
            taints: vec![],
            instances: vec![],
        }
    }

    #[test]
    fn desired_outside_bounds_is_rejected() {
        let g = group();
        assert!(check_desired(&g, 3).is_ok());
        assert!(check_desired(&g, 1).is_ok());
        assert!(matches!(
            check_desired(&g, 4),
            Err(CloudError::Invalid { .. })
        ));
        assert!(matches!(
            check_desired(&g, 0),
            Err(CloudError::Invalid { .. })
        ));
    }
}
