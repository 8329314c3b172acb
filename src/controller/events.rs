//! Events on pods and NodeClaims, each said once until its message changes. Best
//! effort: a failed or unanswered Event is logged, never fatal, and bounded like every
//! other call.

use super::context::lock;
use super::provision::Plan;
use super::Controller;
use crate::cloud::CloudProvider;
use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use std::collections::HashMap;

/// Pod events posted concurrently.
pub(crate) const EVENTS_IN_FLIGHT: usize = 32;
/// Objects whose last event message is remembered (to not repeat it).
const MAX_REMEMBERED_EVENTS: usize = 200_000;

/// The last message said per object.
#[derive(Default)]
pub struct Said(HashMap<String, String>);

impl Said {
    /// Remembers `message` for `key`; false when it was the last thing said there.
    fn first_time(&mut self, key: String, message: &str) -> bool {
        if self.0.get(&key).is_some_and(|m| m == message) {
            return false;
        }
        // Bounded: objects come and go; forgetting only means an event said again.
        if self.0.len() >= MAX_REMEMBERED_EVENTS {
            self.0.clear();
        }
        self.0.insert(key, message.to_string());
        true
    }
}

/// The object an Event about a pod points at.
pub(crate) fn pod_ref(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        ..Default::default()
    }
}

impl<P: CloudProvider> Controller<P> {
    /// Events on the pods of a decision, each said once until it changes.
    pub(crate) async fn tell_pods(&self, plan: &Plan) {
        use futures::StreamExt;
        // Many at a time: a batch of 1,000 pods should not hold the loop for 1,000
        // round trips.
        futures::stream::iter(&plan.pod_messages)
            .for_each_concurrent(EVENTS_IN_FLIGHT, |(ns, name, message, normal)| async move {
                let (kind, reason) = if *normal {
                    ("Normal", "Nominated")
                } else {
                    ("Warning", "FailedProvisioning")
                };
                let prefix = if self.opts.dry_run { "dry run: " } else { "" };
                let target = pod_ref(ns, name);
                self.event(target, kind, reason, &format!("{prefix}{message}"))
                    .await;
            })
            .await;
    }

    pub(crate) async fn event_claim(&self, claim: &str, kind: &str, reason: &str, message: &str) {
        let uid = self.read().claim(claim).map(|c| c.uid.clone());
        let target = ObjectReference {
            api_version: Some("stevedore.dev/v1".into()),
            kind: Some("NodeClaim".into()),
            name: Some(claim.to_string()),
            uid,
            ..Default::default()
        };
        self.event(target, kind, reason, message).await;
    }

    /// Posts a core/v1 Event (best effort: a failure is logged, never fatal).
    pub(crate) async fn event(
        &self,
        target: ObjectReference,
        kind: &str,
        reason: &str,
        message: &str,
    ) {
        let (tk, tns, tname) = (
            target.kind.as_deref().unwrap_or_default(),
            target.namespace.as_deref().unwrap_or_default(),
            target.name.as_deref().unwrap_or_default(),
        );
        if !lock(&self.said).first_time(format!("{tk}/{tns}/{tname}"), message) {
            return;
        }
        tracing::info!(object = %format!("{tk}/{tname}"), reason, "{message}");
        // Cluster-scoped objects (NodeClaims) get their events in our own namespace.
        let ns = target
            .namespace
            .clone()
            .unwrap_or_else(|| self.opts.namespace.clone());
        let ev = self.event_object(target, &ns, kind, reason, message);
        let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), &ns);
        let pp = PostParams::default();
        if let Err(e) = self.api("create Event", api.create(&pp, &ev)).await {
            tracing::debug!(error = %e, "event not recorded");
        }
    }

    fn event_object(
        &self,
        target: ObjectReference,
        ns: &str,
        kind: &str,
        reason: &str,
        message: &str,
    ) -> CoreEvent {
        let now = k8s_openapi::jiff::Timestamp::now();
        let n = lock(&self.names).next_u64();
        let object = target.name.as_deref().unwrap_or("object");
        CoreEvent {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{n:016x}")),
                namespace: Some(ns.to_string()),
                ..Default::default()
            },
            involved_object: target,
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(kind.into()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            source: Some(EventSource {
                component: Some("stevedore".into()),
                host: None,
            }),
            reporting_component: Some("stevedore.dev/controller".into()),
            reporting_instance: Some(self.opts.identity.clone()),
            ..Default::default()
        }
    }
}
