//! Node-group mode against moto's Auto Scaling: discovery by tags, node templates from
//! launch templates / mixed-instances policies and tags, SetDesiredCapacity within
//! bounds, TerminateInstanceInAutoScalingGroup with decrement.
#![cfg(feature = "aws")]

mod support;

use std::collections::BTreeMap;

use stevedore::cloud::aws::asg::Activity;
use stevedore::cloud::aws::{ops, AwsNodeGroups};
use stevedore::cloud::{CloudError, NodeGroup, NodeGroupProvider};
use stevedore::core::instance::CapacityType;
use stevedore::core::taints::TaintEffect;
use support::groups::arrange;
use support::{env, settings, Env};

fn provider(env: &Env) -> AwsNodeGroups {
    AwsNodeGroups::new(
        env.clients.autoscaling.clone(),
        env.clients.ec2.clone(),
        settings(),
    )
}

fn by_name(groups: &[NodeGroup], name: &str) -> NodeGroup {
    groups
        .iter()
        .find(|g| g.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no group {name}"))
}

async fn desired(env: &Env, group: &str) -> (i32, usize) {
    let out = env
        .setup
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .expect("describe");
    let g = &out.auto_scaling_groups()[0];
    (g.desired_capacity().unwrap_or(-1), g.instances().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_discovered_by_tags_with_node_templates() {
    let env = env(3).await;
    arrange(&env).await;
    let groups = provider(&env).groups().await.expect("groups");
    let mut names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["general", "gpu"], "`other` lacks the cluster tag");

    let general = by_name(&groups, "general");
    assert_eq!(
        (general.min_size, general.max_size, general.desired),
        (0, 3, 1)
    );
    assert_eq!(
        general.instance_type, "m5.large",
        "from the launch template"
    );
    assert_eq!(general.capacity_type, CapacityType::OnDemand);
    assert_eq!(general.instances.len(), 1);
    assert!(
        general.instances[0].starts_with("aws:///us-east-1"),
        "{:?}",
        general.instances
    );
    assert!(general.labels.is_empty() && general.taints.is_empty());

    let gpu = by_name(&groups, "gpu");
    assert_eq!(
        gpu.instance_type, "g5.xlarge",
        "first override of the mixed policy"
    );
    assert_eq!(gpu.capacity_type, CapacityType::Spot, "0% on-demand");
    assert_eq!(
        gpu.labels,
        BTreeMap::from([("accelerator".to_string(), "nvidia".to_string())])
    );
    assert_eq!(gpu.taints.len(), 1);
    assert_eq!(gpu.taints[0].key, "nvidia.com/gpu");
    assert_eq!(gpu.taints[0].effect, TaintEffect::NoSchedule);
    assert!(gpu.instances.is_empty(), "scales from zero");
    // One DescribeAutoScalingGroups, one template lookup (the mixed policy names its
    // type), one DescribeScalingActivities.
    assert_eq!(env.recorder.count(ops::DESCRIBE_AUTO_SCALING_GROUPS), 1);
    assert_eq!(
        env.recorder.count(ops::DESCRIBE_LAUNCH_TEMPLATE_VERSIONS),
        1
    );
    assert_eq!(env.recorder.count(ops::DESCRIBE_SCALING_ACTIVITIES), 1);
    env.recorder.assert_registered();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_can_be_named_instead_of_tagged() {
    let env = env(3).await;
    arrange(&env).await;
    let mut s = settings();
    s.auto_scaling_groups = vec!["other".into()];
    let p = AwsNodeGroups::new(env.clients.autoscaling.clone(), env.clients.ec2.clone(), s);
    let groups = p.groups().await.expect("groups");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, "other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_desired_scales_within_bounds() {
    let env = env(3).await;
    arrange(&env).await;
    let p = provider(&env);
    p.set_desired("general", 3).await.expect("scale up");
    assert_eq!(desired(&env, "general").await, (3, 3));
    let err = p.set_desired("general", 4).await.expect_err("above max");
    assert!(matches!(err, CloudError::Invalid { .. }), "{err:?}");
    assert_eq!(desired(&env, "general").await.0, 3, "unchanged");
    p.set_desired("general", 2).await.expect("scale down");
    assert_eq!(desired(&env, "general").await, (2, 2));
    assert_eq!(
        env.recorder.count(ops::SET_DESIRED_CAPACITY),
        2,
        "the rejected one was never sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_a_chosen_node_decrements_the_group() {
    let env = env(3).await;
    arrange(&env).await;
    let p = provider(&env);
    p.set_desired("general", 3).await.expect("scale up");
    let groups = p.groups().await.expect("groups");
    let general = by_name(&groups, "general");
    assert_eq!(general.instances.len(), 3);
    let victim = general.instances[1].clone();
    p.terminate_instance(&victim).await.expect("terminate");
    assert_eq!(desired(&env, "general").await, (2, 2));
    let after = by_name(&p.groups().await.expect("groups"), "general");
    assert!(!after.instances.contains(&victim));
    assert_eq!(after.desired, 2);
    let err = p
        .terminate_instance("aws:///us-east-1a/i-0000000000000000f")
        .await
        .expect_err("unknown");
    assert!(matches!(err, CloudError::NotFound { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_scale_up_backs_the_group_off() {
    let env = env(3).await;
    arrange(&env).await;
    let p = provider(&env);
    // moto records no scaling activities: feed one as DescribeScalingActivities would.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let failed = p.record_activities(&[Activity {
        group: "gpu".into(),
        failed: true,
        launching: true,
        started_at: now + 1.0,
        message: "We currently do not have sufficient g5.xlarge capacity".into(),
    }]);
    assert_eq!(failed, ["gpu"]);
    assert!(p.backed_off_until("gpu").is_some_and(|t| t >= now + 300.0));
    let err = p.set_desired("gpu", 1).await.expect_err("backed off");
    let CloudError::InsufficientCapacity { offerings } = err else {
        panic!("expected insufficient capacity, got {err:?}");
    };
    assert!(offerings.iter().all(|o| o.instance_type == "g5.xlarge"));
    assert_eq!(desired(&env, "gpu").await.0, 0);
    // Scaling down (or other groups) is not blocked.
    p.set_desired("general", 2).await.expect("other group");
    assert_eq!(env.recorder.count(ops::SET_DESIRED_CAPACITY), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_template_is_gone_is_skipped_not_fatal() {
    let env = env(3).await;
    arrange(&env).await;
    env.setup
        .ec2
        .delete_launch_template()
        .launch_template_name("general-lt")
        .send()
        .await
        .expect("delete template");
    let groups = provider(&env).groups().await.expect("groups");
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    // `general` needs its template for the instance type; `gpu` names it in its policy.
    assert_eq!(names, ["gpu"]);
}
