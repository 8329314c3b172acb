//! The interruption queue against moto's SQS: real EventBridge event shapes in, typed
//! interruptions out, every message deleted.
#![cfg(feature = "aws")]

mod support;

use aws_sdk_ec2::types::InstanceType;
use aws_sdk_sqs::types::QueueAttributeName;
use stevedore::cloud::aws::{ops, InterruptionQueue};
use stevedore::cloud::{aws_provider_id, InterruptionKind, InterruptionSource};
use support::{env, queue_with, Env};

const QUEUE: &str = "stevedore-interruptions";

async fn run_instance(env: &Env, zone: &str) -> String {
    let out = env
        .setup
        .ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(InstanceType::M5Large)
        .min_count(1)
        .max_count(1)
        .placement(
            aws_sdk_ec2::types::Placement::builder()
                .availability_zone(zone)
                .build(),
        )
        .send()
        .await
        .expect("run instance");
    out.instances()[0].instance_id().expect("id").to_string()
}

fn event(source: &str, detail_type: &str, resources: &str, detail: &str) -> String {
    format!(
        r#"{{"version":"0","id":"7bf73129-1428-4cd3-a780-95db273d1602","detail-type":"{detail_type}","source":"{source}","account":"123456789012","time":"2026-11-22T12:00:00Z","region":"us-east-1","resources":[{resources}],"detail":{detail}}}"#
    )
}

async fn in_queue(env: &Env, url: &str) -> (i64, i64) {
    let out = env
        .setup
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("attributes");
    let attr = |n: QueueAttributeName| {
        out.attributes()
            .and_then(|a| a.get(&n))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(-1)
    };
    (
        attr(QueueAttributeName::ApproximateNumberOfMessages),
        attr(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_become_interruptions_and_messages_are_deleted() {
    let env = env(3).await;
    let spot_id = run_instance(&env, "us-east-1b").await;
    let rebalance_id = run_instance(&env, "us-east-1c").await;
    let bodies = [
        event(
            "aws.ec2",
            "EC2 Spot Instance Interruption Warning",
            &format!(r#""arn:aws:ec2:us-east-1b:instance/{spot_id}""#),
            &format!(r#"{{"instance-id":"{spot_id}","instance-action":"terminate"}}"#),
        ),
        event(
            "aws.ec2",
            "EC2 Instance Rebalance Recommendation",
            &format!(r#""arn:aws:ec2:us-east-1:123456789012:instance/{rebalance_id}""#),
            &format!(r#"{{"instance-id":"{rebalance_id}"}}"#),
        ),
        event(
            "aws.health",
            "AWS Health Event",
            "",
            r#"{"service":"EC2","eventTypeCategory":"scheduledChange","eventTypeCode":"AWS_EC2_PERSISTENT_INSTANCE_RETIREMENT_SCHEDULED","affectedEntities":[{"entityValue":"i-0000000000000dead"}]}"#,
        ),
        event(
            "aws.ec2",
            "EC2 Instance State-change Notification",
            "",
            &format!(r#"{{"instance-id":"{rebalance_id}","state":"running"}}"#),
        ),
        "this is not an event".to_string(),
    ];
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let url = queue_with(&env, QUEUE, &refs).await;

    let queue = InterruptionQueue::new(env.clients.sqs.clone(), env.clients.ec2.clone(), QUEUE)
        .with_wait(std::time::Duration::from_secs(1));
    let mut got = Vec::new();
    // SQS may hand out fewer than all messages per receive: poll a bounded number of times.
    for _ in 0..5 {
        got.extend(queue.poll().await.expect("poll"));
        if in_queue(&env, &url).await == (0, 0) {
            break;
        }
    }
    got.sort_by(|a, b| a.provider_id.cmp(&b.provider_id));
    let kinds: Vec<(String, InterruptionKind)> = got
        .iter()
        .map(|i| (i.provider_id.clone(), i.kind.clone()))
        .collect();
    let mut want = vec![
        (
            aws_provider_id("us-east-1b", &spot_id),
            InterruptionKind::SpotInterruption,
        ),
        (
            aws_provider_id("us-east-1c", &rebalance_id),
            InterruptionKind::RebalanceRecommendation,
        ),
        // Already gone: no zone to find, the instance ID still matches the node.
        (
            aws_provider_id("", "i-0000000000000dead"),
            InterruptionKind::ScheduledChange,
        ),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(kinds, want);
    assert!(got.iter().all(|i| i.at == 1_795_348_800.0));
    assert_eq!(
        in_queue(&env, &url).await,
        (0, 0),
        "every message deleted, the junk too"
    );
    assert_eq!(env.recorder.count(ops::GET_QUEUE_URL), 1, "URL cached");
    assert!(env.recorder.count(ops::DELETE_MESSAGE_BATCH) >= 1);
    // Nothing left: a further poll returns nothing.
    assert!(queue.poll().await.expect("poll").is_empty());
    env.recorder.assert_registered();
}
