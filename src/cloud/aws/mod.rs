//! The AWS provider: EC2 fleet launches ([`fleet::AwsFleet`]), Auto Scaling node groups
//! ([`asg::AwsNodeGroups`]) and the interruption queue ([`interruption::InterruptionQueue`]).
//!
//! Every AWS operation the code calls is named once in [`ops`] and listed in
//! [`AWS_CALLS`]; `docs/iam-policy.json` grants exactly their [`iam_action`]s (plus the
//! [`IMPLIED_PERMISSIONS`] EC2 checks on our behalf), and the emulator tests check that
//! every request on the wire is in the table. See docs/aws.md.

pub mod asg;
pub mod discovery;
pub mod errors;
pub mod fleet;
pub mod instances;
pub mod interruption;
pub mod launch_template;
pub mod pricing;
mod text;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

pub use asg::AwsNodeGroups;
pub use fleet::AwsFleet;
pub use interruption::InterruptionQueue;

/// IAM action names of the operations the provider calls (`service:Operation`).
pub mod ops {
    pub const CREATE_FLEET: &str = "ec2:CreateFleet";
    pub const CREATE_LAUNCH_TEMPLATE: &str = "ec2:CreateLaunchTemplate";
    pub const DESCRIBE_LAUNCH_TEMPLATES: &str = "ec2:DescribeLaunchTemplates";
    pub const DESCRIBE_LAUNCH_TEMPLATE_VERSIONS: &str = "ec2:DescribeLaunchTemplateVersions";
    pub const DESCRIBE_INSTANCES: &str = "ec2:DescribeInstances";
    pub const TERMINATE_INSTANCES: &str = "ec2:TerminateInstances";
    pub const DESCRIBE_SUBNETS: &str = "ec2:DescribeSubnets";
    pub const DESCRIBE_SECURITY_GROUPS: &str = "ec2:DescribeSecurityGroups";
    pub const DESCRIBE_INSTANCE_TYPE_OFFERINGS: &str = "ec2:DescribeInstanceTypeOfferings";
    pub const DESCRIBE_INSTANCE_TYPES: &str = "ec2:DescribeInstanceTypes";
    pub const DESCRIBE_SPOT_PRICE_HISTORY: &str = "ec2:DescribeSpotPriceHistory";
    pub const DESCRIBE_AUTO_SCALING_GROUPS: &str = "autoscaling:DescribeAutoScalingGroups";
    pub const DESCRIBE_SCALING_ACTIVITIES: &str = "autoscaling:DescribeScalingActivities";
    pub const SET_DESIRED_CAPACITY: &str = "autoscaling:SetDesiredCapacity";
    pub const TERMINATE_INSTANCE_IN_ASG: &str = "autoscaling:TerminateInstanceInAutoScalingGroup";
    pub const GET_QUEUE_URL: &str = "sqs:GetQueueUrl";
    pub const RECEIVE_MESSAGE: &str = "sqs:ReceiveMessage";
    pub const DELETE_MESSAGE_BATCH: &str = "sqs:DeleteMessageBatch";
}

/// Every operation the provider calls. Keep in step with `docs/iam-policy.json`.
pub const AWS_CALLS: &[&str] = &[
    ops::CREATE_FLEET,
    ops::CREATE_LAUNCH_TEMPLATE,
    ops::DESCRIBE_LAUNCH_TEMPLATES,
    ops::DESCRIBE_LAUNCH_TEMPLATE_VERSIONS,
    ops::DESCRIBE_INSTANCES,
    ops::TERMINATE_INSTANCES,
    ops::DESCRIBE_SUBNETS,
    ops::DESCRIBE_SECURITY_GROUPS,
    ops::DESCRIBE_INSTANCE_TYPE_OFFERINGS,
    ops::DESCRIBE_INSTANCE_TYPES,
    ops::DESCRIBE_SPOT_PRICE_HISTORY,
    ops::DESCRIBE_AUTO_SCALING_GROUPS,
    ops::DESCRIBE_SCALING_ACTIVITIES,
    ops::SET_DESIRED_CAPACITY,
    ops::TERMINATE_INSTANCE_IN_ASG,
    ops::GET_QUEUE_URL,
    ops::RECEIVE_MESSAGE,
    ops::DELETE_MESSAGE_BATCH,
];

/// The IAM action that authorizes an operation: the same name, except that SQS batch
/// operations are authorized by their single-message action.
pub fn iam_action(operation: &str) -> &str {
    match operation {
        ops::DELETE_MESSAGE_BATCH => "sqs:DeleteMessage",
        other => other,
    }
}

/// Permissions EC2 checks on the caller's behalf during `CreateFleet` although the code
/// never calls them directly: the fleet runs instances, tags them at launch, passes the
/// node role and resolves `resolve:ssm:` image IDs.
pub const IMPLIED_PERMISSIONS: &[&str] = &[
    "ec2:RunInstances",
    "ec2:CreateTags",
    "iam:PassRole",
    "ssm:GetParameters",
];

/// The three service clients the provider uses.
#[derive(Clone, Debug)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    pub fn from_config(config: &SdkConfig) -> Self {
        Clients {
            ec2: aws_sdk_ec2::Client::new(config),
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
        }
    }
}

/// The retry policy every client uses: adaptive mode (client-side rate limiting once
/// throttled) with a bounded number of attempts, so a throttled call fails within a
/// scan instead of stalling the controller.
pub fn retry_config(max_attempts: u32, initial_backoff: Duration) -> RetryConfig {
    RetryConfig::adaptive()
        .with_max_attempts(max_attempts.max(1))
        .with_initial_backoff(initial_backoff)
        .with_max_backoff(Duration::from_secs(5))
}

/// Per-attempt timeout: longer than the 20 s SQS long poll, short enough that a hung
/// connection costs a few scans, not the controller (the SDK sets no read timeout).
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(30))
        .build()
}

/// Loads the SDK configuration from the environment (IRSA / Pod Identity credentials,
/// region from settings) with the provider's retry policy.
pub async fn load_config(region: &str, max_attempts: u32) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(retry_config(max_attempts, Duration::from_millis(500)))
        .timeout_config(timeout_config())
        .load()
        .await
}

/// Seconds since the Unix epoch (instance launch times, interruption times).
pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
