//! The interruption feed: EventBridge rules (Spot interruption warning, rebalance
//! recommendation, AWS Health scheduled change, instance state change) deliver events to
//! an SQS queue; each poll receives a batch, turns the events into [`Interruption`]s and
//! deletes the messages.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use serde_json::Value;

use super::errors;
use super::ops;
use crate::cloud::{
    aws_provider_id, CloudError, Interruption, InterruptionKind, InterruptionSource,
};

/// A message body that is not an event we understand.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("unhandled event {origin}/{detail_type}")]
    Unhandled { origin: String, detail_type: String },
}

/// One notice for one instance, before its zone is known.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub instance_id: String,
    /// From the event's resource ARN when it names one (`arn:aws:ec2:us-east-1b:instance/i-..`).
    pub zone: Option<String>,
    pub kind: InterruptionKind,
    pub at: f64,
}

/// States that mean the node is going away; `pending`/`running` notices are dropped.
const LEAVING_STATES: &[&str] = &["stopping", "stopped", "shutting-down", "terminated"];

/// Parses one EventBridge event (the SQS message body). A state change to a state that
/// does not take the node away gives no notice.
pub fn parse_event(body: &str) -> Result<Vec<Notice>, EventError> {
    let v: Value = serde_json::from_str(body).map_err(|e| EventError::Json(e.to_string()))?;
    let text = |key: &'static str| {
        v.get(key)
            .and_then(Value::as_str)
            .ok_or(EventError::Missing(key))
    };
    let source = text("source")?;
    let detail_type = text("detail-type")?;
    let detail = v.get("detail").ok_or(EventError::Missing("detail"))?;
    let at = v
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(super::now_secs, |d| d.as_secs_f64());
    let zone = resource_zone(&v);
    let one = |kind: InterruptionKind| -> Result<Vec<Notice>, EventError> {
        let id = detail
            .get("instance-id")
            .and_then(Value::as_str)
            .ok_or(EventError::Missing("detail.instance-id"))?;
        Ok(vec![Notice {
            instance_id: id.to_string(),
            zone: zone.clone(),
            kind,
            at,
        }])
    };
    match (source, detail_type) {
        ("aws.ec2", "EC2 Spot Instance Interruption Warning") => {
            one(InterruptionKind::SpotInterruption)
        }
        ("aws.ec2", "EC2 Instance Rebalance Recommendation") => {
            one(InterruptionKind::RebalanceRecommendation)
        }
        ("aws.ec2", "EC2 Instance State-change Notification") => {
            let state = detail
                .get("state")
                .and_then(Value::as_str)
                .ok_or(EventError::Missing("detail.state"))?;
            if !LEAVING_STATES.contains(&state) {
                return Ok(Vec::new());
            }
            one(InterruptionKind::StateChange {
                state: state.to_string(),
            })
        }
        ("aws.health", "AWS Health Event") => Ok(health_notices(detail, at)),
        _ => Err(EventError::Unhandled {
            origin: source.to_string(),
            detail_type: detail_type.to_string(),
        }),
    }
}

/// An AWS Health EC2 scheduled change names its instances in `affectedEntities`.
fn health_notices(detail: &Value, at: f64) -> Vec<Notice> {
    let is_ec2 = detail.get("service").and_then(Value::as_str) == Some("EC2");
    let scheduled =
        detail.get("eventTypeCategory").and_then(Value::as_str) == Some("scheduledChange");
    if !(is_ec2 && scheduled) {
        return Vec::new();
    }
    detail
        .get("affectedEntities")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("entityValue").and_then(Value::as_str))
        .filter(|id| id.starts_with("i-"))
        .map(|id| Notice {
            instance_id: id.to_string(),
            zone: None,
            kind: InterruptionKind::ScheduledChange,
            at,
        })
        .collect()
}

/// The zone in `arn:aws:ec2:<zone>:instance/i-...` (Spot warnings put the zone where
/// other ARNs put the region).
fn resource_zone(v: &Value) -> Option<String> {
    let arn = v.get("resources")?.as_array()?.first()?.as_str()?;
    let location = arn.split(':').nth(3)?;
    location
        .ends_with(|c: char| c.is_ascii_lowercase())
        .then(|| location.to_string())
}

/// The SQS-backed interruption feed.
pub struct InterruptionQueue {
    sqs: aws_sdk_sqs::Client,
    ec2: aws_sdk_ec2::Client,
    queue_name: String,
    wait: Duration,
    queue_url: Mutex<Option<String>>,
    /// Instance ID -> zone, learned from events and lookups.
    zones: Mutex<HashMap<String, String>>,
}

impl InterruptionQueue {
    pub fn new(sqs: aws_sdk_sqs::Client, ec2: aws_sdk_ec2::Client, queue_name: &str) -> Self {
        InterruptionQueue {
            sqs,
            ec2,
            queue_name: queue_name.to_string(),
            wait: Duration::from_secs(2),
            queue_url: Mutex::new(None),
            zones: Mutex::new(HashMap::new()),
        }
    }

    /// How long one poll long-polls for messages (SQS allows up to 20 s).
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait.min(Duration::from_secs(20));
        self
    }

    async fn url(&self) -> Result<String, CloudError> {
        if let Some(u) = lock(&self.queue_url).clone() {
            return Ok(u);
        }
        let out = self
            .sqs
            .get_queue_url()
            .queue_name(&self.queue_name)
            .send()
            .await
            .map_err(|e| errors::map(ops::GET_QUEUE_URL, e))?;
        let url = out
            .queue_url()
            .map(str::to_string)
            .ok_or_else(|| CloudError::Other {
                operation: ops::GET_QUEUE_URL.into(),
                message: "no queue URL in response".into(),
            })?;
        *lock(&self.queue_url) = Some(url.clone());
        Ok(url)
    }

    /// Zones of instances the events did not place, in one DescribeInstances call (the
    /// `instance-id` filter, unlike `InstanceIds`, tolerates instances already gone).
    async fn resolve_zones(&self, notices: &[Notice]) -> Result<(), CloudError> {
        let unknown: Vec<String> = {
            let zones = lock(&self.zones);
            let mut ids: Vec<String> = notices
                .iter()
                .filter(|n| n.zone.is_none() && !zones.contains_key(&n.instance_id))
                .map(|n| n.instance_id.clone())
                .collect();
            ids.sort();
            ids.dedup();
            ids
        };
        if unknown.is_empty() {
            return Ok(());
        }
        let out = self
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("instance-id")
                    .set_values(Some(unknown))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| errors::map(ops::DESCRIBE_INSTANCES, e))?;
        let mut zones = lock(&self.zones);
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            if let (Some(id), Some(z)) = (
                i.instance_id(),
                i.placement().and_then(|p| p.availability_zone()),
            ) {
                zones.insert(id.to_string(), z.to_string());
            }
        }
        Ok(())
    }

    fn to_interruption(&self, n: Notice) -> Interruption {
        let mut zones = lock(&self.zones);
        if let Some(z) = &n.zone {
            zones.insert(n.instance_id.clone(), z.clone());
        }
        // An instance gone before we could look it up keeps an empty zone; the
        // controller matches nodes by instance ID (`cloud::instance_id`).
        let zone = zones.get(&n.instance_id).cloned().unwrap_or_default();
        Interruption {
            provider_id: aws_provider_id(&zone, &n.instance_id),
            kind: n.kind,
            at: n.at,
        }
    }

    async fn delete(&self, url: &str, handles: Vec<String>) -> Result<(), CloudError> {
        for chunk in handles.chunks(10) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .build()
                        .ok()
                })
                .collect();
            self.sqs
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| errors::map(ops::DELETE_MESSAGE_BATCH, e))?;
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl InterruptionSource for InterruptionQueue {
    /// Receives up to 10 messages, deleting every one it read: events we do not handle
    /// (or cannot parse) would otherwise come back forever.
    async fn poll(&self) -> Result<Vec<Interruption>, CloudError> {
        let url = self.url().await?;
        let out = self
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(i32::try_from(self.wait.as_secs()).unwrap_or(20))
            .send()
            .await
            .map_err(|e| errors::map(ops::RECEIVE_MESSAGE, e))?;
        let mut notices = Vec::new();
        let mut handles = Vec::new();
        for m in out.messages() {
            if let Ok(n) = parse_event(m.body().unwrap_or_default()) {
                notices.extend(n);
            }
            handles.extend(m.receipt_handle().map(str::to_string));
        }
        self.resolve_zones(&notices).await?;
        let interruptions = notices
            .into_iter()
            .map(|n| self.to_interruption(n))
            .collect();
        if !handles.is_empty() {
            self.delete(&url, handles).await?;
        }
        Ok(interruptions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPOT: &str = r#"{"version":"0","id":"1e5527d7-bb36-4607-3370-4164db56a40e","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","account":"123456789012","time":"2026-11-22T12:00:00Z","region":"us-east-1","resources":["arn:aws:ec2:us-east-1b:instance/i-0b662ef9931388ba0"],"detail":{"instance-id":"i-0b662ef9931388ba0","instance-action":"terminate"}}"#;

    #[test]
    fn spot_warning_gives_instance_zone_and_time() {
        let n = parse_event(SPOT).unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].instance_id, "i-0b662ef9931388ba0");
        assert_eq!(n[0].zone.as_deref(), Some("us-east-1b"));
        assert_eq!(n[0].kind, InterruptionKind::SpotInterruption);
        assert_eq!(n[0].at, 1_795_348_800.0);
    }

    #[test]
    fn rebalance_state_change_and_health_events() {
        let rebalance = r#"{"detail-type":"EC2 Instance Rebalance Recommendation","source":"aws.ec2","time":"2026-11-22T12:00:00Z","region":"us-east-1","resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-1"],"detail":{"instance-id":"i-1"}}"#;
        let n = parse_event(rebalance).unwrap();
        assert_eq!(n[0].kind, InterruptionKind::RebalanceRecommendation);
        assert_eq!(n[0].zone, None, "a region ARN names no zone");
        let stopping = r#"{"detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","time":"2026-11-22T12:00:00Z","resources":[],"detail":{"instance-id":"i-2","state":"stopping"}}"#;
        assert_eq!(
            parse_event(stopping).unwrap()[0].kind,
            InterruptionKind::StateChange {
                state: "stopping".into()
            }
        );
        let running = stopping.replace("stopping", "running");
        assert!(parse_event(&running).unwrap().is_empty());
        let health = r#"{"detail-type":"AWS Health Event","source":"aws.health","time":"2026-11-22T12:00:00Z","detail":{"service":"EC2","eventTypeCategory":"scheduledChange","eventTypeCode":"AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED","affectedEntities":[{"entityValue":"i-3"},{"entityValue":"i-4"}]}}"#;
        let n = parse_event(health).unwrap();
        assert_eq!(n.len(), 2);
        assert!(n
            .iter()
            .all(|x| x.kind == InterruptionKind::ScheduledChange));
    }

    proptest::proptest! {
        /// Whatever lands in the queue, parsing returns (an error at worst).
        #[test]
        fn parsing_never_panics(cut in 0usize..400, junk in "[\\[\\]{}\":,a-z0-9 -]{0,20}") {
            let cut = cut.min(SPOT.len());
            let body = format!("{}{junk}{}", &SPOT[..cut], &SPOT[cut..]);
            let _ = parse_event(&body);
        }
    }

    #[test]
    fn malformed_and_foreign_events_are_errors() {
        assert!(matches!(parse_event("not json"), Err(EventError::Json(_))));
        assert_eq!(parse_event("{}"), Err(EventError::Missing("source")));
        let other = r#"{"detail-type":"Object Created","source":"aws.s3","detail":{}}"#;
        assert!(matches!(
            parse_event(other),
            Err(EventError::Unhandled { .. })
        ));
        let no_id = r#"{"detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","detail":{}}"#;
        assert_eq!(
            parse_event(no_id),
            Err(EventError::Missing("detail.instance-id"))
        );
    }
}
