//! Shared set-up of the AWS emulator tests.
#![allow(dead_code)] // each test binary uses a different part

pub mod moto;
pub mod recorder;

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, Tag};
use stevedore::catalog::{load_embedded, CatalogOptions};
use stevedore::cloud::aws::{AwsFleet, Clients};
use stevedore::cloud::{tags, LaunchRequest, Offering};
use stevedore::config::AwsSettings;
use stevedore::core::instance::CapacityType;
use stevedore::core::taints::{Taint, TaintEffect};

pub use moto::Moto;
#[allow(unused_imports)] // not every test binary injects faults
pub use recorder::{Fault, Recorder};

pub mod groups;

pub const CLUSTER: &str = "test-cluster";
/// Zones whose default subnets carry the cluster tag (us-east-1c has none).
pub const ZONES: &[&str] = &["us-east-1a", "us-east-1b"];

/// A moto server, clients that go through the recorder (what the provider uses) and
/// plain clients for arranging and inspecting state (not counted).
pub struct Env {
    pub moto: Moto,
    pub recorder: Recorder,
    pub clients: Clients,
    pub setup: Clients,
}

pub async fn env(max_attempts: u32) -> Env {
    let moto = Moto::start();
    let cfg = moto.sdk_config(max_attempts).await;
    let recorder = Recorder::default();
    let clients = Clients {
        ec2: aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::config::Builder::from(&cfg)
                .interceptor(recorder.clone())
                .build(),
        ),
        autoscaling: aws_sdk_autoscaling::Client::from_conf(
            aws_sdk_autoscaling::config::Builder::from(&cfg)
                .interceptor(recorder.clone())
                .build(),
        ),
        sqs: aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&cfg)
                .interceptor(recorder.clone())
                .build(),
        ),
    };
    let setup = Clients::from_config(&cfg);
    Env {
        moto,
        recorder,
        clients,
        setup,
    }
}

pub fn settings() -> AwsSettings {
    let mut s = AwsSettings::new(CLUSTER);
    s.cluster_endpoint = Some("https://example.eks.amazonaws.com".into());
    s.cluster_certificate_authority = Some("Q0E=".into());
    s.cluster_cidr = Some("10.100.0.0/16".into());
    s.instance_profile = Some("stevedore-node".into());
    s.max_pods = Some(58);
    s
}

/// Tags the default VPC's subnets in `zones` and its default security group with the
/// cluster tag the default selectors look for. Returns the subnet IDs by zone.
pub async fn tag_network(ec2: &aws_sdk_ec2::Client, zones: &[&str]) -> Vec<(String, String)> {
    let subnets = ec2
        .describe_subnets()
        .send()
        .await
        .expect("describe subnets");
    let mut chosen = Vec::new();
    for s in subnets.subnets() {
        let zone = s.availability_zone().unwrap_or_default();
        if zones.contains(&zone) {
            chosen.push((
                zone.to_string(),
                s.subnet_id().unwrap_or_default().to_string(),
            ));
        }
    }
    chosen.sort();
    let groups = ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("group-name")
                .values("default")
                .build(),
        )
        .send()
        .await
        .expect("describe security groups");
    let mut ids: Vec<String> = chosen.iter().map(|(_, id)| id.clone()).collect();
    ids.extend(
        groups
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string)),
    );
    ec2.create_tags()
        .set_resources(Some(ids))
        .tags(
            Tag::builder()
                .key(format!("kubernetes.io/cluster/{CLUSTER}"))
                .value("shared")
                .build(),
        )
        .send()
        .await
        .expect("tag network");
    chosen
}

/// Every type in every tagged zone at one capacity type.
pub fn offerings(types: &[&str], capacity: CapacityType) -> Vec<Offering> {
    types
        .iter()
        .flat_map(|t| {
            ZONES.iter().map(move |z| Offering {
                instance_type: t.to_string(),
                zone: z.to_string(),
                capacity_type: capacity,
                price_per_hour: 0.05,
            })
        })
        .collect()
}

/// A launch for `claim` in pool `general` with a label and a taint.
pub fn request(claim: &str, options: Vec<Offering>) -> LaunchRequest {
    LaunchRequest {
        node_claim: claim.into(),
        node_pool: "general".into(),
        options,
        labels: BTreeMap::from([("team".to_string(), "web".to_string())]),
        taints: vec![Taint {
            key: "dedicated".into(),
            value: "web".into(),
            effect: TaintEffect::NoSchedule,
        }],
        startup_taints: vec![],
    }
}

/// A fleet provider on the recorded clients (a fresh one models a restart).
pub fn fleet(env: &Env) -> AwsFleet {
    let catalog = load_embedded(&CatalogOptions::default()).expect("catalog");
    AwsFleet::new(env.clients.ec2.clone(), settings(), catalog)
}

/// moto with the tagged network and a fleet provider.
pub async fn fleet_env(max_attempts: u32) -> (Env, AwsFleet) {
    let env = env(max_attempts).await;
    tag_network(&env.setup.ec2, ZONES).await;
    let fleet = fleet(&env);
    (env, fleet)
}

/// Instances moto holds for a claim, any state but terminated (plain client).
pub async fn instances_of(env: &Env, claim: &str) -> Vec<aws_sdk_ec2::types::Instance> {
    let out = env
        .setup
        .ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name(format!("tag:{}", tags::NODE_CLAIM))
                .values(claim)
                .build(),
        )
        .send()
        .await
        .expect("describe");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances().iter().cloned())
        .filter(|i| {
            i.state()
                .and_then(|s| s.name())
                .is_some_and(|n| n.as_str() != "terminated")
        })
        .collect()
}

/// Creates an SQS queue holding `bodies`; returns its URL.
pub async fn queue_with(env: &Env, name: &str, bodies: &[&str]) -> String {
    let url = env
        .setup
        .sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_string();
    for b in bodies {
        env.setup
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body(*b)
            .send()
            .await
            .expect("send");
    }
    url
}

/// Every launch template moto holds (plain client).
pub async fn launch_templates(env: &Env) -> Vec<aws_sdk_ec2::types::LaunchTemplate> {
    let out = env
        .setup
        .ec2
        .describe_launch_templates()
        .send()
        .await
        .expect("templates");
    out.launch_templates().to_vec()
}
