//! Auto Scaling groups for the node-group tests.

use aws_sdk_autoscaling::types::{
    InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides, LaunchTemplateSpecification,
    MixedInstancesPolicy, Tag,
};
use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};

use super::{tag_network, Env, CLUSTER, ZONES};

fn tag(group: &str, key: &str, value: &str) -> Tag {
    Tag::builder()
        .resource_id(group)
        .resource_type("auto-scaling-group")
        .key(key)
        .value(value)
        .propagate_at_launch(true)
        .build()
}

async fn template(env: &Env, name: &str, instance_type: &str) {
    env.setup
        .ec2
        .create_launch_template()
        .launch_template_name(name)
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .instance_type(InstanceType::from(instance_type))
                .build(),
        )
        .send()
        .await
        .expect("create template");
}

fn lt_spec(name: &str) -> LaunchTemplateSpecification {
    LaunchTemplateSpecification::builder()
        .launch_template_name(name)
        .version("$Latest")
        .build()
}

/// Three groups: `general` (plain template, tagged), `gpu` (mixed-instances Spot policy,
/// node-template tags, tagged) and `other` (not tagged for this cluster).
pub async fn arrange(env: &Env) -> String {
    let subnets = tag_network(&env.setup.ec2, ZONES).await;
    let vpc_zone = subnets
        .iter()
        .map(|(_, id)| id.as_str())
        .collect::<Vec<_>>()
        .join(",");
    template(env, "general-lt", "m5.large").await;
    template(env, "gpu-lt", "g4dn.xlarge").await;
    let asg = &env.setup.autoscaling;
    let ours = |g: &str| {
        vec![
            tag(g, "k8s.io/cluster-autoscaler/enabled", "true"),
            tag(g, &format!("k8s.io/cluster-autoscaler/{CLUSTER}"), "owned"),
        ]
    };
    asg.create_auto_scaling_group()
        .auto_scaling_group_name("general")
        .launch_template(lt_spec("general-lt"))
        .min_size(0)
        .max_size(3)
        .desired_capacity(1)
        .vpc_zone_identifier(&vpc_zone)
        .set_tags(Some(ours("general")))
        .send()
        .await
        .expect("general");
    let mut gpu_tags = ours("gpu");
    gpu_tags.push(tag(
        "gpu",
        "k8s.io/cluster-autoscaler/node-template/label/accelerator",
        "nvidia",
    ));
    gpu_tags.push(tag(
        "gpu",
        "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu",
        "true:NoSchedule",
    ));
    asg.create_auto_scaling_group()
        .auto_scaling_group_name("gpu")
        .mixed_instances_policy(
            MixedInstancesPolicy::builder()
                .launch_template(
                    LaunchTemplate::builder()
                        .launch_template_specification(lt_spec("gpu-lt"))
                        .overrides(
                            LaunchTemplateOverrides::builder()
                                .instance_type("g5.xlarge")
                                .build(),
                        )
                        .overrides(
                            LaunchTemplateOverrides::builder()
                                .instance_type("g4dn.xlarge")
                                .build(),
                        )
                        .build(),
                )
                .instances_distribution(
                    InstancesDistribution::builder()
                        .on_demand_base_capacity(0)
                        .on_demand_percentage_above_base_capacity(0)
                        .build(),
                )
                .build(),
        )
        .min_size(0)
        .max_size(2)
        .desired_capacity(0)
        .vpc_zone_identifier(&vpc_zone)
        .set_tags(Some(gpu_tags))
        .send()
        .await
        .expect("gpu");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name("other")
        .launch_template(lt_spec("general-lt"))
        .min_size(0)
        .max_size(5)
        .desired_capacity(0)
        .vpc_zone_identifier(&vpc_zone)
        .tags(tag("other", "k8s.io/cluster-autoscaler/enabled", "true"))
        .send()
        .await
        .expect("other");
    vpc_zone
}
