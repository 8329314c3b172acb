//! The AWS calls the provider makes: the IAM policy grants exactly them, every one is
//! reachable, and how many a launch and a steady-state minute at 1,000 nodes cost.
#![cfg(feature = "aws")]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use stevedore::cloud::aws::{
    iam_action, ops, AwsFleet, AwsNodeGroups, InterruptionQueue, AWS_CALLS, IMPLIED_PERMISSIONS,
};
use stevedore::cloud::{tags, CloudProvider, InterruptionSource, NodeGroupProvider};
use stevedore::core::instance::CapacityType;
use support::groups::arrange;
use support::{fleet_env, offerings, queue_with, request, settings, Env, Fault, Recorder, CLUSTER};

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

/// Calls made by `f`, counted from a cleared recorder.
async fn counted<F: std::future::Future>(rec: &Recorder, f: F) -> (usize, F::Output) {
    rec.clear();
    let out = f.await;
    (rec.calls().len(), out)
}

/// Launch decisions: cold (discovery, template), warm, and warm with a Spot shortage
/// falling back to on-demand.
async fn launch_calls(env: &Env, fleet: &AwsFleet) -> (usize, usize, usize) {
    let opts = offerings(&["m5.large", "c5.large", "m5.xlarge"], CapacityType::Spot);
    let (cold, r) = counted(
        &env.recorder,
        fleet.launch(&request("claim-cold", opts.clone())),
    )
    .await;
    r.expect("cold launch");
    let (warm, r) = counted(
        &env.recorder,
        fleet.launch(&request("claim-warm", opts.clone())),
    )
    .await;
    r.expect("warm launch");
    env.recorder.inject(Fault::fleet_errors(
        "spot",
        "InsufficientInstanceCapacity",
        &["m5.large", "c5.large", "m5.xlarge"],
    ));
    let mut both = opts;
    both.extend(offerings(&["m5.large"], CapacityType::OnDemand));
    let (fallback, r) = counted(
        &env.recorder,
        fleet.launch(&request("claim-fallback", both)),
    )
    .await;
    assert_eq!(r.expect("fallback").capacity_type, CapacityType::OnDemand);
    (cold, warm, fallback)
}

/// `list()` with 1,000 instances of ours.
async fn list_calls(env: &Env, fleet: &AwsFleet) -> usize {
    let ours = fleet.list().await.expect("list").len() as i32;
    run_tagged(env, 1000 - ours).await;
    let (calls, listed) = counted(&env.recorder, fleet.list()).await;
    assert_eq!(listed.expect("list").len(), 1000);
    // Pages are as large as the API allows. (moto counts reservations, not instances,
    // per page, so a 1,001st instance cannot show a second page here.)
    let body = &env.recorder.bodies(ops::DESCRIBE_INSTANCES)[0];
    assert!(body.contains("MaxResults=1000"), "{body}");
    calls
}

/// An offerings refresh, then a minute of scans served from the cache.
async fn offerings_calls(env: &Env, fleet: &AwsFleet) -> usize {
    let (refresh, r) = counted(&env.recorder, fleet.offerings()).await;
    r.expect("refresh");
    env.recorder.clear();
    for _ in 0..SCANS_PER_MINUTE as usize {
        fleet.offerings().await.expect("cached");
    }
    assert_eq!(env.recorder.calls().len(), 0, "no call between refreshes");
    refresh
}

/// A warm `groups()` and interruption polls, empty and with one event to place.
async fn group_and_poll_calls(env: &Env) -> (usize, usize, usize) {
    arrange(env).await;
    let groups = AwsNodeGroups::new(
        env.clients.autoscaling.clone(),
        env.clients.ec2.clone(),
        settings(),
    );
    groups.groups().await.expect("groups (cold)");
    let (warm, r) = counted(&env.recorder, groups.groups()).await;
    r.expect("groups (warm)");
    let rebalance = r#"{"detail-type":"EC2 Instance Rebalance Recommendation","source":"aws.ec2","time":"2026-11-22T12:00:00Z","resources":[],"detail":{"instance-id":"i-0123456789abcdef0"}}"#;
    let queue = interruption_queue(env, &[rebalance]).await;
    queue.poll().await.expect("warm-up poll (queue URL)");
    env.setup
        .sqs
        .send_message()
        .queue_url(queue_url(env).await)
        .message_body(rebalance)
        .send()
        .await
        .expect("send");
    let (with_event, r) = counted(&env.recorder, queue.poll()).await;
    assert_eq!(r.expect("poll").len(), 1);
    let (empty, r) = counted(&env.recorder, queue.poll()).await;
    assert!(r.expect("poll").is_empty());
    (warm, empty, with_event)
}

async fn queue_url(env: &Env) -> String {
    let out = env
        .setup
        .sqs
        .get_queue_url()
        .queue_name("interruptions")
        .send()
        .await
        .expect("url");
    out.queue_url().expect("url").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_budget_per_launch_and_per_minute_at_1000_nodes() {
    let (env, fleet) = fleet_env(3).await;
    let (cold, warm, fallback) = launch_calls(&env, &fleet).await;
    assert_eq!(warm, 2, "DescribeInstances (claim tag) + CreateFleet");
    assert_eq!(fallback, 3, "+ the on-demand CreateFleet");
    assert!(cold <= 6, "cold launch: {cold}");
    let list = list_calls(&env, &fleet).await;
    assert_eq!(list, 1, "one page for 1,000 instances");
    let refresh = offerings_calls(&env, &fleet).await;
    let (groups, poll_empty, poll_event) = group_and_poll_calls(&env).await;
    assert_eq!(
        groups, 1,
        "DescribeAutoScalingGroups (activities: once a minute when settled)"
    );
    assert_eq!(poll_empty, 1, "ReceiveMessage only");
    assert_eq!(
        poll_event, 3,
        "ReceiveMessage + DescribeInstances (zone) + DeleteMessageBatch"
    );

    let ec2_per_minute = list as f64 + refresh as f64 * REFRESHES_PER_MINUTE;
    println!("launch decision: cold {cold}, warm {warm}, Spot short -> on-demand {fallback}");
    println!(
        "list() at 1,000 nodes: {list}; offerings refresh: {refresh} (every 10 min, 0 between)"
    );
    println!(
        "groups(): {groups}; interruption poll: empty {poll_empty}, with an event {poll_event}"
    );
    println!(
        "steady state per minute at 1,000 nodes: EC2 {ec2_per_minute:.1}, Auto Scaling {:.1}, SQS {:.1}",
        groups as f64 * SCANS_PER_MINUTE + 1.0,
        poll_empty as f64 * POLLS_PER_MINUTE
    );
    assert!(
        ec2_per_minute < DESCRIBE_REFILL_PER_MINUTE / 100.0,
        "{ec2_per_minute} EC2 calls/min"
    );
}
