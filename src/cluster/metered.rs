//! Every Kubernetes API call the controller makes passes through one client; this wraps
//! that client so each request is timed and counted
//! (`stevedore_kube_request_duration_seconds`, `stevedore_kube_request_errors_total`)
//! at one choke point, watches and leader election included, instead of at every call
//! site. Labels come from [`super::rbac::API_CALLS`] (a closed set, so the series stay
//! bounded); a request outside it is labelled `other`.

use super::rbac;
use crate::metrics::Metrics;
use http::{Request, Response};
use kube::client::Body;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// The label for requests that are not resource calls of `API_CALLS`.
pub const OTHER: &str = "other";

/// `kube::Client` as a tower service that records each call's duration and outcome.
#[derive(Clone)]
pub struct Metered {
    inner: kube::Client,
    metrics: Arc<Metrics>,
}

impl tower_service::Service<Request<Body>> for Metered {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, kube::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner client waits for readiness itself in `send`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
        let (verb, resource) = labels(req.method().as_str(), &path);
        let (inner, metrics) = (self.inner.clone(), self.metrics.clone());
        Box::pin(async move {
            let started = Instant::now();
            let result = inner.send(req).await;
            // A status outside 2xx (404 on a missing Lease, 409 on a conflict, 429 on a
            // refused eviction) is an error of the call even when the caller expects it.
            let ok = matches!(&result, Ok(r) if r.status().is_success());
            metrics.record_api_call(verb, resource, started.elapsed().as_secs_f64(), ok);
            result
        })
    }
}

/// `client`, with every call it makes recorded in `metrics`.
pub fn client(client: kube::Client, metrics: Arc<Metrics>) -> kube::Client {
    let namespace = client.default_namespace().to_string();
    kube::Client::new(
        Metered {
            inner: client,
            metrics,
        },
        namespace,
    )
}

/// (verb, resource) labels of a request: the `API_CALLS` entry it matches, the resource
/// written `resource/subresource` (`pods/eviction`); `other` when none does.
pub fn labels(method: &str, path_and_query: &str) -> (&'static str, &'static str) {
    let Some(call) = rbac::granting(method, path_and_query) else {
        return (OTHER, OTHER);
    };
    let resource = if call.subresource.is_empty() {
        call.resource
    } else {
        SUBRESOURCE_LABELS
            .iter()
            .find(|(r, s, _)| *r == call.resource && *s == call.subresource)
            .map_or(OTHER, |(_, _, label)| *label)
    };
    (call.verb, resource)
}

/// `resource/subresource` labels of the subresources `API_CALLS` holds (a test checks
/// every one is here).
const SUBRESOURCE_LABELS: &[(&str, &str, &str)] = &[
    ("pods", "eviction", "pods/eviction"),
    ("nodeclaims", "status", "nodeclaims/status"),
    ("nodes", "status", "nodes/status"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_get_the_labels_of_their_api_call() {
        assert_eq!(
            labels("POST", "/api/v1/namespaces/shop/pods/web-1/eviction?"),
            ("create", "pods/eviction")
        );
        assert_eq!(
            labels("GET", "/api/v1/pods?&watch=true&timeoutSeconds=290"),
            ("watch", "pods")
        );
        assert_eq!(
            labels(
                "PATCH",
                "/apis/stevedore.dev/v1/nodeclaims/general-abc/status?"
            ),
            ("patch", "nodeclaims/status")
        );
        assert_eq!(labels("GET", "/version"), (OTHER, OTHER));
        assert_eq!(
            labels("GET", "/api/v1/namespaces/x/secrets/y"),
            (OTHER, OTHER)
        );
    }

    #[test]
    fn every_subresource_of_the_table_has_a_label() {
        for c in rbac::API_CALLS.iter().filter(|c| !c.subresource.is_empty()) {
            assert!(
                SUBRESOURCE_LABELS
                    .iter()
                    .any(|(r, s, _)| *r == c.resource && *s == c.subresource),
                "{c:?}"
            );
        }
    }
}
