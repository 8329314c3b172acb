//! Faults moto cannot produce, injected by the test interceptor (the faulted request
//! never reaches moto): insufficient capacity per offering, Spot shortage falling back to
//! on-demand, throttling with bounded retries, quotas and missing permissions.
#![cfg(feature = "aws")]

mod support;

use stevedore::cloud::aws::ops;
use stevedore::cloud::{CloudError, CloudProvider, Offering};
use stevedore::core::instance::CapacityType;
use support::{fleet_env as setup, instances_of, launch_templates, offerings, request, Env, Fault};

async fn live_instances(env: &Env, claim: &str) -> usize {
    instances_of(env, claim).await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_failure_names_the_failed_offerings_and_the_rest_still_launch() {
    let (env, fleet) = setup(3).await;
    env.recorder.inject(Fault::fleet_errors(
        "spot",
        "InsufficientInstanceCapacity",
        &["m5.large"],
    ));
    let options = offerings(&["m5.large", "c5.large"], CapacityType::Spot);
    let err = fleet
        .launch(&request("claim-ice", options.clone()))
        .await
        .expect_err("no capacity");
    let CloudError::InsufficientCapacity { offerings: failed } = err else {
        panic!("expected insufficient capacity, got {err:?}");
    };
    // Exactly m5.large in both zones: c5.large was not reported and stays usable.
    assert_eq!(failed, offerings(&["m5.large"], CapacityType::Spot));
    assert_eq!(
        live_instances(&env, "claim-ice").await,
        0,
        "nothing launched"
    );

    // The controller marks them unavailable and retries with the rest.
    let rest: Vec<Offering> = options
        .into_iter()
        .filter(|o| !failed.contains(o))
        .collect();
    let inst = fleet
        .launch(&request("claim-ice", rest))
        .await
        .expect("retry");
    assert_eq!(inst.instance_type, "c5.large");
    let bodies = env.recorder.bodies(ops::CREATE_FLEET);
    assert_eq!(bodies.len(), 2);
    assert_ne!(
        token(&bodies[0]),
        token(&bodies[1]),
        "other overrides, other token (EC2 rejects a reused token with new parameters)"
    );
    assert_eq!(live_instances(&env, "claim-ice").await, 1);
    env.recorder.assert_registered();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_shortage_falls_back_to_on_demand_in_the_same_launch() {
    let (env, fleet) = setup(3).await;
    env.recorder.inject(Fault::fleet_errors(
        "spot",
        "UnfulfillableCapacity",
        &["m5.large"],
    ));
    let mut options = offerings(&["m5.large"], CapacityType::Spot);
    options.extend(offerings(&["m5.large"], CapacityType::OnDemand));
    let inst = fleet
        .launch(&request("claim-fallback", options))
        .await
        .expect("fallback");
    assert_eq!(inst.capacity_type, CapacityType::OnDemand);
    let bodies = env.recorder.bodies(ops::CREATE_FLEET);
    assert_eq!(bodies.len(), 2);
    assert!(bodies[0].contains("DefaultTargetCapacityType=spot"));
    assert!(bodies[1].contains("DefaultTargetCapacityType=on-demand"));
    assert_ne!(
        token(&bodies[0]),
        token(&bodies[1]),
        "one token per attempt"
    );
    assert_eq!(
        fleet.take_capacity_failures(),
        offerings(&["m5.large"], CapacityType::Spot)
    );
    assert!(fleet.take_capacity_failures().is_empty(), "drained");
    assert_eq!(live_instances(&env, "claim-fallback").await, 1);
}

fn token(body: &str) -> &str {
    body.split('&')
        .find(|kv| kv.starts_with("ClientToken="))
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_within_the_budget_then_reported() {
    let (env, fleet) = setup(3).await;
    let opts = offerings(&["m5.large"], CapacityType::Spot);
    env.recorder.inject(Fault::ec2_error(
        ops::CREATE_FLEET,
        "RequestLimitExceeded",
        503,
        2,
    ));
    let inst = fleet
        .launch(&request("claim-slow", opts.clone()))
        .await
        .expect("third attempt works");
    assert_eq!(env.recorder.count(ops::CREATE_FLEET), 3);
    let bodies = env.recorder.bodies(ops::CREATE_FLEET);
    assert!(
        bodies.iter().all(|b| token(b) == token(&bodies[0])),
        "retries reuse the token"
    );
    assert_eq!(live_instances(&env, "claim-slow").await, 1);
    assert_eq!(inst.node_claim.as_deref(), Some("claim-slow"));

    env.recorder.inject(Fault::ec2_error(
        ops::CREATE_FLEET,
        "RequestLimitExceeded",
        503,
        10,
    ));
    let err = fleet
        .launch(&request("claim-throttled", opts))
        .await
        .expect_err("budget spent");
    assert!(
        matches!(&err, CloudError::Throttled { operation } if operation == ops::CREATE_FLEET),
        "{err:?}"
    );
    assert_eq!(
        env.recorder.count(ops::CREATE_FLEET),
        6,
        "3 more attempts, then stop"
    );
    assert_eq!(live_instances(&env, "claim-throttled").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_errors_are_reported_not_retried_elsewhere() {
    let (env, fleet) = setup(3).await;
    let od = offerings(&["m5.large", "c5.large"], CapacityType::OnDemand);
    env.recorder.inject(Fault::fleet_errors(
        "on-demand",
        "VcpuLimitExceeded",
        &["m5.large"],
    ));
    let err = fleet
        .launch(&request("claim-quota", od.clone()))
        .await
        .expect_err("quota");
    assert!(
        matches!(&err, CloudError::QuotaExceeded { message } if message.contains("VcpuLimitExceeded")),
        "{err:?}"
    );
    // The same code as an API error (not a fleet entry).
    env.recorder.inject(Fault::ec2_error(
        ops::CREATE_FLEET,
        "VcpuLimitExceeded",
        400,
        1,
    ));
    let err = fleet
        .launch(&request("claim-quota", od))
        .await
        .expect_err("quota");
    assert!(matches!(err, CloudError::QuotaExceeded { .. }), "{err:?}");
    assert_eq!(
        env.recorder.count(ops::CREATE_FLEET),
        2,
        "quota is not retried by the SDK"
    );

    // Spot quota exhausted: on-demand may still serve the claim.
    env.recorder.inject(Fault::fleet_errors(
        "spot",
        "MaxSpotInstanceCountExceeded",
        &["m5.large"],
    ));
    let mut both = offerings(&["m5.large"], CapacityType::Spot);
    both.extend(offerings(&["m5.large"], CapacityType::OnDemand));
    let inst = fleet
        .launch(&request("claim-spot-quota", both))
        .await
        .expect("on-demand");
    assert_eq!(inst.capacity_type, CapacityType::OnDemand);
    assert_eq!(live_instances(&env, "claim-quota").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_permissions_name_the_iam_action() {
    let (env, fleet) = setup(3).await;
    let opts = offerings(&["m5.large"], CapacityType::Spot);
    env.recorder.inject(Fault::ec2_error(
        ops::CREATE_FLEET,
        "UnauthorizedOperation",
        403,
        1,
    ));
    let err = fleet
        .launch(&request("claim-denied", opts.clone()))
        .await
        .expect_err("denied");
    match &err {
        CloudError::Unauthorized { action, .. } => assert_eq!(action, "ec2:CreateFleet"),
        other => panic!("expected unauthorized, got {other:?}"),
    }
    assert!(err.to_string().contains("ec2:CreateFleet"));
    env.recorder.inject(Fault::ec2_error(
        ops::DESCRIBE_INSTANCES,
        "UnauthorizedOperation",
        403,
        1,
    ));
    let err = fleet.list().await.expect_err("denied");
    assert!(
        matches!(&err, CloudError::Unauthorized { action, .. } if action == "ec2:DescribeInstances"),
        "{err:?}"
    );
    assert_eq!(live_instances(&env, "claim-denied").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_deleted_behind_our_back_is_recreated() {
    let (env, fleet) = setup(3).await;
    let opts = offerings(&["m5.large"], CapacityType::Spot);
    fleet
        .launch(&request("claim-first", opts.clone()))
        .await
        .expect("first");
    for t in launch_templates(&env).await {
        env.setup
            .ec2
            .delete_launch_template()
            .set_launch_template_id(t.launch_template_id().map(str::to_string))
            .send()
            .await
            .expect("delete");
    }
    // What EC2 answers for a fleet naming a deleted template.
    env.recorder.inject(Fault::ec2_error(
        ops::CREATE_FLEET,
        "InvalidLaunchTemplateId.NotFound",
        400,
        1,
    ));
    let err = fleet
        .launch(&request("claim-second", opts.clone()))
        .await
        .expect_err("stale template");
    assert!(matches!(err, CloudError::Invalid { .. }), "{err:?}");
    fleet
        .launch(&request("claim-second", opts))
        .await
        .expect("template recreated");
    assert_eq!(env.recorder.count(ops::CREATE_LAUNCH_TEMPLATE), 2);
    assert_eq!(live_instances(&env, "claim-second").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_in_zones_without_subnets_fail_with_the_rest() {
    let (env, fleet) = setup(3).await;
    let mut opts = offerings(&["m5.large"], CapacityType::Spot);
    let no_subnet = Offering {
        zone: "us-east-1c".into(),
        ..opts[0].clone()
    };
    opts.push(no_subnet.clone());
    env.recorder.inject(Fault::fleet_errors(
        "spot",
        "InsufficientInstanceCapacity",
        &["m5.large"],
    ));
    let err = fleet
        .launch(&request("claim-zones", opts.clone()))
        .await
        .expect_err("no capacity");
    let CloudError::InsufficientCapacity { offerings: failed } = err else {
        panic!("expected insufficient capacity, got {err:?}");
    };
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(failed.contains(&no_subnet));
    // The request never named the zone without a subnet.
    let body = &env.recorder.bodies(ops::CREATE_FLEET)[0];
    assert!(!body.contains("Overrides.3."), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_prices_denied_fall_back_to_the_bundled_estimates() {
    let (env, fleet) = setup(3).await;
    env.recorder.inject(Fault::ec2_error(
        ops::DESCRIBE_SPOT_PRICE_HISTORY,
        "UnauthorizedOperation",
        403,
        1,
    ));
    let update = fleet
        .offerings()
        .await
        .expect("offerings without Spot prices");
    let catalog = stevedore::catalog::load_embedded(&Default::default()).expect("catalog");
    let t = &catalog.types[catalog.find("c5.large").expect("c5.large")];
    for o in t.offerings.iter() {
        let zone = &catalog.zones[o.zone];
        let got = update
            .prices
            .iter()
            .find(|p| {
                p.instance_type == "c5.large"
                    && &p.zone == zone
                    && p.capacity_type == o.capacity_type
            })
            .expect("priced");
        assert_eq!(got.price_per_hour, o.price_per_hour);
    }
    assert_eq!(env.recorder.count(ops::DESCRIBE_SPOT_PRICE_HISTORY), 1);
}
