//! EC2 fleet mode against the moto emulator: launch templates, CreateFleet (Spot,
//! on-demand, overrides), tagging, idempotency, state rebuild, termination, garbage
//! collection and offerings.
#![cfg(feature = "aws")]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use stevedore::catalog::{load_embedded, CatalogOptions};
use stevedore::cloud::aws::{ops, AwsFleet};
use stevedore::cloud::{
    instance_id, tags, CloudError, CloudProvider, Instance, InstanceState, Offering,
};
use stevedore::core::instance::CapacityType;
use support::{
    env, fleet as provider, fleet_env as setup_with, instances_of, launch_templates, offerings,
    request, tag_network, Env, CLUSTER, ZONES,
};

async fn setup() -> (Env, AwsFleet) {
    setup_with(3).await
}

fn tag_value(i: &aws_sdk_ec2::types::Instance, key: &str) -> Option<String> {
    i.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
        .map(str::to_string)
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut n: u32 = 0;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(val(*c)) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// Provider IDs `list()` reports.
async fn listed_ids(fleet: &AwsFleet) -> Vec<String> {
    let all = fleet.list().await.expect("list");
    all.into_iter().map(|i| i.provider_id).collect()
}

/// Launches `claim` over `options` and checks the instance is one of them.
async fn launch_one_of(fleet: &AwsFleet, claim: &str, options: &[Offering]) -> Instance {
    let i = fleet
        .launch(&request(claim, options.to_vec()))
        .await
        .expect("launch");
    assert!(
        options.iter().any(|o| o.instance_type == i.instance_type
            && o.zone == i.zone
            && o.capacity_type == i.capacity_type),
        "{i:?} is not one of the options"
    );
    i
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_launch_creates_a_template_and_one_tagged_instance() {
    let (env, fleet) = setup().await;
    let options = offerings(&["m5.large", "c5.large", "m5.xlarge"], CapacityType::Spot);
    let inst = launch_one_of(&fleet, "claim-spot", &options).await;
    assert_eq!(inst.capacity_type, CapacityType::Spot);
    assert_eq!(inst.node_claim.as_deref(), Some("claim-spot"));
    assert!(
        inst.provider_id
            .starts_with(&format!("aws:///{}/i-", inst.zone)),
        "{}",
        inst.provider_id
    );

    // One fleet request: Spot, price-capacity-optimized, 3 types x 2 subnets, a token.
    assert_eq!(env.recorder.count(ops::CREATE_FLEET), 1);
    let body = &env.recorder.bodies(ops::CREATE_FLEET)[0];
    assert!(body.contains("Type=instant"), "{body}");
    assert!(body.contains("TargetCapacitySpecification.DefaultTargetCapacityType=spot"));
    assert!(body.contains("SpotOptions.AllocationStrategy=price-capacity-optimized"));
    assert!(body.contains("ClientToken=claim-spot-s-"));
    assert!(body.contains("LaunchTemplateConfigs.1.Overrides.6.SubnetId="));
    assert!(!body.contains("Overrides.7."));

    // moto launched exactly one instance, tagged for cluster, pool and claim, as Spot.
    let found = instances_of(&env, "claim-spot").await;
    assert_eq!(found.len(), 1);
    let i = &found[0];
    assert_eq!(i.instance_id(), Some(instance_id(&inst.provider_id)));
    assert_eq!(tag_value(i, tags::CLUSTER).as_deref(), Some(CLUSTER));
    assert_eq!(tag_value(i, tags::NODE_POOL).as_deref(), Some("general"));
    assert_eq!(
        tag_value(i, tags::NODE_CLAIM).as_deref(),
        Some("claim-spot")
    );
    assert_eq!(i.instance_lifecycle().map(|l| l.as_str()), Some("spot"));

    // The pool's launch template: IMDSv2 required, encrypted gp3 root, nodeadm user data.
    assert_eq!(env.recorder.count(ops::CREATE_LAUNCH_TEMPLATE), 1);
    let lt = env
        .setup
        .ec2
        .describe_launch_template_versions()
        .launch_template_name(template_name(&env).await)
        .versions("$Latest")
        .send()
        .await
        .expect("template versions");
    let data = lt.launch_template_versions()[0]
        .launch_template_data()
        .expect("data");
    let md = data.metadata_options().expect("metadata options");
    assert_eq!(md.http_tokens().map(|t| t.as_str()), Some("required"));
    let ebs = data.block_device_mappings()[0].ebs().expect("ebs");
    assert_eq!(ebs.volume_size(), Some(20));
    assert_eq!(ebs.volume_type().map(|t| t.as_str()), Some("gp3"));
    assert_eq!(
        data.iam_instance_profile().and_then(|p| p.name()),
        Some("stevedore-node")
    );
    assert!(data
        .image_id()
        .unwrap_or("")
        .starts_with("resolve:ssm:/aws/service/eks/"));
    let ud = String::from_utf8(base64_decode(data.user_data().expect("user data"))).expect("utf8");
    assert!(ud.contains("kind: NodeConfig"), "{ud}");
    assert!(ud.contains("maxPods: 58"), "{ud}");
    assert!(ud.contains("--node-labels=team=web"), "{ud}");
    assert!(
        ud.contains("--register-with-taints=dedicated=web:NoSchedule"),
        "{ud}"
    );
    env.recorder.assert_registered();
}

async fn template_name(env: &Env) -> String {
    let all = launch_templates(env).await;
    let names: Vec<&str> = all
        .iter()
        .filter_map(|t| t.launch_template_name())
        .filter(|n| n.starts_with("stevedore-test-cluster-general-amd64-"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names[0].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_launch_uses_lowest_price_and_one_template_per_architecture() {
    let (env, fleet) = setup().await;
    let options = offerings(&["m6g.large", "m5.large"], CapacityType::OnDemand);
    let inst = launch_one_of(&fleet, "claim-od", &options).await;
    assert_eq!(inst.capacity_type, CapacityType::OnDemand);
    let body = &env.recorder.bodies(ops::CREATE_FLEET)[0];
    assert!(body.contains("TargetCapacitySpecification.DefaultTargetCapacityType=on-demand"));
    assert!(body.contains("OnDemandOptions.AllocationStrategy=lowest-price"));
    // Graviton and x86 types need different images: two templates, two configs.
    assert_eq!(env.recorder.count(ops::CREATE_LAUNCH_TEMPLATE), 2);
    assert!(body.contains("LaunchTemplateConfigs.2.Overrides.2.InstanceType="));
    let found = instances_of(&env, "claim-od").await;
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].instance_lifecycle(),
        None,
        "on-demand has no lifecycle"
    );
    // A second claim of the same pool reuses the cached templates.
    fleet
        .launch(&request("claim-od-2", options))
        .await
        .expect("launch 2");
    assert_eq!(env.recorder.count(ops::CREATE_LAUNCH_TEMPLATE), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_launch_of_a_claim_returns_the_same_instance() {
    let (env, fleet) = setup().await;
    let req = request(
        "claim-idem",
        offerings(&["m5.large", "c5.large"], CapacityType::Spot),
    );
    let first = fleet.launch(&req).await.expect("first");
    let again = fleet.launch(&req).await.expect("again");
    assert_eq!(first.provider_id, again.provider_id);
    // After a restart (a fresh provider with empty caches) too.
    let restarted = provider(&env);
    let third = restarted.launch(&req).await.expect("after restart");
    assert_eq!(first.provider_id, third.provider_id);
    assert_eq!(env.recorder.count(ops::CREATE_FLEET), 1);
    assert_eq!(instances_of(&env, "claim-idem").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_response_is_not_relaunched() {
    let env = env(1).await;
    tag_network(&env.setup.ec2, ZONES).await;
    let fleet = provider(&env);
    // moto launches the instance but the response never arrives.
    let mut fault = support::Fault::ec2_error(ops::CREATE_FLEET, "InternalError", 500, 1);
    fault.pass_through = true;
    env.recorder.inject(fault);
    let req = request("claim-lost", offerings(&["m5.large"], CapacityType::Spot));
    let err = fleet.launch(&req).await.expect_err("response lost");
    assert!(matches!(err, CloudError::Other { .. }), "{err:?}");
    assert_eq!(
        instances_of(&env, "claim-lost").await.len(),
        1,
        "moto did launch it"
    );
    // The controller retries: the tag check finds the instance, no second fleet.
    let inst = fleet.launch(&req).await.expect("retry");
    assert_eq!(env.recorder.count(ops::CREATE_FLEET), 1);
    assert_eq!(instances_of(&env, "claim-lost").await.len(), 1);
    assert_eq!(inst.node_claim.as_deref(), Some("claim-lost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_rebuilds_state_after_restart_and_terminate_removes() {
    let (env, fleet) = setup().await;
    let mut launched = Vec::new();
    for c in ["claim-1", "claim-2", "claim-3"] {
        let i = fleet
            .launch(&request(c, offerings(&["m5.large"], CapacityType::Spot)))
            .await
            .expect("launch");
        launched.push(i);
    }
    let restarted = provider(&env);
    env.recorder.clear();
    let mut listed = restarted.list().await.expect("list");
    listed.sort_by(|a, b| a.node_claim.cmp(&b.node_claim));
    assert_eq!(env.recorder.count(ops::DESCRIBE_INSTANCES), 1, "one page");
    assert_eq!(listed.len(), 3);
    for (l, i) in listed.iter().zip(&launched) {
        assert_eq!(l.provider_id, i.provider_id);
        assert_eq!(l.node_claim, i.node_claim);
        assert_eq!(l.node_pool.as_deref(), Some("general"));
        assert_eq!(l.capacity_type, CapacityType::Spot);
        assert_eq!(l.instance_type, "m5.large");
        assert!(matches!(
            l.state,
            InstanceState::Pending | InstanceState::Running
        ));
        assert!(l.launched_at > 1.7e9, "{}", l.launched_at);
    }

    restarted
        .terminate(&launched[1].provider_id)
        .await
        .expect("terminate");
    let after = listed_ids(&restarted).await;
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&launched[1].provider_id));
    let missing = restarted
        .terminate("aws:///us-east-1a/i-0123456789abcdef0")
        .await;
    assert!(
        matches!(missing, Err(CloudError::NotFound { .. })),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_instance_is_garbage_collected() {
    let (env, fleet) = setup().await;
    let live = fleet
        .launch(&request(
            "claim-live",
            offerings(&["m5.large"], CapacityType::Spot),
        ))
        .await
        .expect("live");
    let orphan = fleet
        .launch(&request(
            "claim-gone",
            offerings(&["m5.large"], CapacityType::Spot),
        ))
        .await
        .expect("orphan");
    let claims = HashSet::from(["claim-live".to_string()]);

    // Within the grace period nothing is touched.
    let none = fleet
        .collect_garbage(&claims, Duration::from_secs(3600))
        .await
        .expect("gc");
    assert!(none.is_empty(), "{none:?}");
    let collected = fleet
        .collect_garbage(&claims, Duration::ZERO)
        .await
        .expect("gc");
    assert_eq!(collected, std::slice::from_ref(&orphan.provider_id));
    assert!(
        instances_of(&env, "claim-gone").await.is_empty(),
        "orphan terminated"
    );
    let left = listed_ids(&fleet).await;
    assert_eq!(left, [live.provider_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offerings_keep_estimates_for_bogus_spot_prices_and_flag_zones_without_subnets() {
    let (env, fleet) = setup().await;
    let catalog = load_embedded(&CatalogOptions::default()).expect("catalog");
    let update = fleet.offerings().await.expect("offerings");
    let t = &catalog.types[catalog.find("m5.large").expect("m5.large")];
    let estimate = t
        .offerings
        .iter()
        .find(|o| o.capacity_type == CapacityType::Spot && catalog.zones[o.zone] == "us-east-1a")
        .expect("spot offering")
        .price_per_hour;
    let spot_a = update
        .prices
        .iter()
        .find(|o| {
            o.instance_type == "m5.large"
                && o.zone == "us-east-1a"
                && o.capacity_type == CapacityType::Spot
        })
        .expect("price");
    // moto reports 0.00001 for every Spot price: the bundled estimate stays.
    assert_eq!(spot_a.price_per_hour, estimate);
    assert!(estimate > 0.01);
    // us-east-1c has no tagged subnet: its offerings are unavailable, 1a's are not.
    let unavailable: HashSet<(String, String, CapacityType)> =
        update.unavailable.iter().cloned().collect();
    assert!(unavailable.contains(&("m5.large".into(), "us-east-1c".into(), CapacityType::Spot)));
    assert!(!unavailable.contains(&("m5.large".into(), "us-east-1a".into(), CapacityType::Spot)));
    assert!(env.recorder.count(ops::DESCRIBE_SPOT_PRICE_HISTORY) >= 1);
    // Until the refresh interval passes, offerings() makes no call at all.
    let before = env.recorder.calls().len();
    let again = fleet.offerings().await.expect("offerings again");
    assert_eq!(env.recorder.calls().len(), before);
    assert_eq!(again, update);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_launch_without_cluster_connection_settings_launches_nothing() {
    let env = env(3).await;
    tag_network(&env.setup.ec2, ZONES).await;
    let mut s = support::settings();
    s.cluster_endpoint = None;
    s.instance_profile = None;
    let catalog = load_embedded(&CatalogOptions::default()).expect("catalog");
    let fleet = AwsFleet::new(env.clients.ec2.clone(), s, catalog);
    let err = fleet
        .launch(&request(
            "claim-x",
            offerings(&["m5.large"], CapacityType::Spot),
        ))
        .await
        .expect_err("cannot join");
    let text = err.to_string();
    assert!(
        text.contains("aws.clusterEndpoint, aws.instanceProfile"),
        "{text}"
    );
    assert!(env.recorder.calls().is_empty(), "no AWS call made");
}
