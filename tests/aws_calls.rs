//! The AWS calls the provider makes: the IAM policy grants exactly them, every one is
//! reachable, and how many a launch and a steady-state minute at 1,000 nodes cost.
#![cfg(feature = "aws")]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use stevedore::cloud::aws::{
    iam_action, ops, AwsNodeGroups, InterruptionQueue, AWS_CALLS, IMPLIED_PERMISSIONS,
};
use stevedore::cloud::{tags, CloudProvider, InterruptionSource, NodeGroupProvider};
use stevedore::core::instance::CapacityType;
use support::groups::arrange;
use support::{fleet_env, offerings, queue_with, request, settings, Env, CLUSTER};

fn policy_actions() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/iam-policy.json"))
            .expect("read docs/iam-policy.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("policy is JSON");
    let mut out = BTreeSet::new();
    for st in doc["Statement"].as_array().expect("statements") {
        assert_eq!(st["Effect"], "Allow", "{st}");
        for a in st["Action"].as_array().expect("action list") {
            let a = a.as_str().expect("action string");
            assert!(!a.contains('*'), "no wildcard actions: {a}");
            assert!(out.insert(a.to_string()), "{a} granted twice");
        }
    }
    out
}

#[test]
fn iam_policy_grants_exactly_the_calls_the_code_makes() {
    let mut wanted: BTreeSet<String> = AWS_CALLS
        .iter()
        .map(|c| iam_action(c).to_string())
        .collect();
    wanted.extend(IMPLIED_PERMISSIONS.iter().map(|p| p.to_string()));
    assert_eq!(policy_actions(), wanted);
    let why = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/aws.md"))
        .expect("docs/aws.md");
    for a in &wanted {
        assert!(
            why.contains(&format!("`{a}`")),
            "docs/aws.md does not explain {a}"
        );
    }
}

/// Runs every provider path once: the calls recorded must be exactly the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registered_call_is_made_and_nothing_else() {
    let (env, fleet) = fleet_env(3).await;
    fleet.offerings().await.expect("offerings");
    let inst = fleet
        .launch(&request(
            "claim-all",
            offerings(&["m5.large"], CapacityType::Spot),
        ))
        .await
        .expect("launch");
    fleet.list().await.expect("list");
    fleet.terminate(&inst.provider_id).await.expect("terminate");

    arrange(&env).await;
    let groups = AwsNodeGroups::new(
        env.clients.autoscaling.clone(),
        env.clients.ec2.clone(),
        settings(),
    );
    groups.set_desired("general", 2).await.expect("scale up");
    let g = groups.groups().await.expect("groups");
    let victim = g
        .iter()
        .find(|g| g.name == "general")
        .expect("general")
        .instances[0]
        .clone();
    groups
        .terminate_instance(&victim)
        .await
        .expect("terminate in group");

    let queue = interruption_queue(&env, &[&spot_warning("i-0123456789abcdef0")]).await;
    queue.poll().await.expect("poll");

    env.recorder.assert_registered();
    let called: BTreeSet<String> = env.recorder.calls().into_iter().collect();
    let table: BTreeSet<String> = AWS_CALLS.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        called, table,
        "a call in AWS_CALLS is never made (or vice versa)"
    );
}

fn spot_warning(instance: &str) -> String {
    format!(
        r#"{{"detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","time":"2026-11-22T12:00:00Z","resources":["arn:aws:ec2:us-east-1a:instance/{instance}"],"detail":{{"instance-id":"{instance}","instance-action":"terminate"}}}}"#
    )
}

async fn interruption_queue(env: &Env, bodies: &[&str]) -> InterruptionQueue {
    queue_with(env, "interruptions", bodies).await;
    InterruptionQueue::new(
        env.clients.sqs.clone(),
        env.clients.ec2.clone(),
        "interruptions",
    )
    .with_wait(Duration::from_secs(1))
}

/// `n` running instances tagged as ours, launched directly (one RunInstances).
async fn run_tagged(env: &Env, n: i32) {
    let t = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    env.setup
        .ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(InstanceType::M5Large)
        .min_count(n)
        .max_count(n)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(t(tags::CLUSTER, CLUSTER))
                .tags(t(tags::NODE_POOL, "general"))
                .tags(t(tags::NODE_CLAIM, "bulk"))
                .build(),
        )
        .send()
        .await
        .expect("run instances");
}

/// The steady-state model the figures assume (docs/aws.md): a scan every 10 s,
/// `list()` for reconciliation and GC once a minute, offerings refreshed every 10 min,
/// the interruption queue long-polled 20 s at a time.
const SCANS_PER_MINUTE: f64 = 6.0;
const POLLS_PER_MINUTE: f64 = 3.0;
const REFRESHES_PER_MINUTE: f64 = 0.1;
/// EC2's default request-rate refill for non-mutating (Describe*) calls, per minute.
const DESCRIBE_REFILL_PER_MINUTE: f64 = 20.0 * 60.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_budget_per_launch_and_per_minute_at_1000_nodes() {
    let (env, fleet) = fleet_env(3).await;
    let rec = &env.recorder;

    // A launch decision: cold (discovery, template) then warm.
    let opts = offerings(&["m5.large", "c5.large", "m5.xlarge"], CapacityType::Spot);
    fleet
        .launch(&request("claim-cold", opts.clone()))
        .await
        .expect("cold launch");
    let cold = rec.calls().len();
    rec.clear();
    fleet
        .launch(&request("claim-warm", opts))
        .await
        .expect("warm launch");
    let warm = rec.calls().len();
    assert_eq!(
        warm,
        2,
        "DescribeInstances (claim tag) + CreateFleet: {:?}",
        rec.calls()
    );
    assert!(cold <= 6, "cold launch: {:?}", rec.calls());

    // 1,000 nodes (plus the two above): list() pages 1,000 at a time.
    run_tagged(&env, 998).await;
    rec.clear();
    let listed = fleet.list().await.expect("list");
    assert_eq!(listed.len(), 1000);
    let list_1000 = rec.count(ops::DESCRIBE_INSTANCES);
    assert_eq!(list_1000, 1, "one page for 1,000 instances");
    // Pages are as large as the API allows. (moto counts reservations, not instances,
    // per page, so a 1,001st instance cannot show the second page here.)
    let body = &rec.bodies(ops::DESCRIBE_INSTANCES)[0];
    assert!(body.contains("MaxResults=1000"), "{body}");

    // Offerings: a refresh, then free until the interval passes.
    rec.clear();
    fleet.offerings().await.expect("refresh");
    let refresh = rec.calls().len();
    rec.clear();
    for _ in 0..SCANS_PER_MINUTE as usize {
        fleet.offerings().await.expect("cached");
    }
    assert_eq!(rec.calls().len(), 0);

    // Node groups: one refresh of every group.
    arrange(&env).await;
    let groups = AwsNodeGroups::new(
        env.clients.autoscaling.clone(),
        env.clients.ec2.clone(),
        settings(),
    );
    groups.groups().await.expect("groups (cold)");
    rec.clear();
    groups.groups().await.expect("groups (warm)");
    let groups_warm = rec.calls().len();
    assert_eq!(
        groups_warm, 2,
        "DescribeAutoScalingGroups + DescribeScalingActivities"
    );

    // The interruption queue: one empty long poll.
    let queue = interruption_queue(&env, &[]).await;
    queue.poll().await.expect("first poll");
    rec.clear();
    queue.poll().await.expect("empty poll");
    let poll_empty = rec.calls().len();
    assert_eq!(poll_empty, 1, "ReceiveMessage only");

    let ec2_per_minute = list_1000 as f64 + refresh as f64 * REFRESHES_PER_MINUTE;
    let asg_per_minute = groups_warm as f64 * SCANS_PER_MINUTE;
    let sqs_per_minute = poll_empty as f64 * POLLS_PER_MINUTE;
    println!("calls per launch decision: cold {cold}, warm {warm}");
    println!("list() at 1,000 nodes: {list_1000} DescribeInstances");
    println!("offerings refresh: {refresh} calls every 10 min, 0 between");
    println!("node groups refresh: {groups_warm} calls per scan");
    println!("interruption poll: {poll_empty} call per empty 20 s poll");
    println!(
        "steady state per minute at 1,000 nodes: EC2 {ec2_per_minute:.1}, Auto Scaling {asg_per_minute:.1}, SQS {sqs_per_minute:.1}"
    );
    assert!(
        ec2_per_minute < DESCRIBE_REFILL_PER_MINUTE / 100.0,
        "{ec2_per_minute} EC2 calls/min"
    );
}
