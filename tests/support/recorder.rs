//! An SDK interceptor that records every request's IAM action (`service:Operation`, as
//! sent on the wire) and injects faults moto cannot produce.
//!
//! A faulted request never reaches moto as itself: its body is swapped for a harmless
//! read-only call before transmission and the response replaced before
//! deserialization, so an injected "no capacity" really launched nothing.

use std::sync::{Arc, Mutex};

use aws_sdk_ec2::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
};
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{Storable, StoreReplace};

/// A canned response for the next `times` requests of `action` whose body contains
/// `when` (if set).
#[derive(Clone, Debug)]
pub struct Fault {
    pub action: String,
    pub when: Option<String>,
    pub times: u32,
    pub status: u16,
    pub body: String,
    /// The request still reaches moto (and takes effect); only the response is lost.
    pub pass_through: bool,
}

impl Fault {
    /// An EC2 (query protocol) error response.
    pub fn ec2_error(action: &str, code: &str, status: u16, times: u32) -> Fault {
        Fault {
            action: action.into(),
            when: None,
            times,
            status,
            pass_through: false,
            body: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>injected {code}</Message></Error></Errors><RequestID>injected</RequestID></Response>"
            ),
        }
    }

    /// A CreateFleet that launched nothing and reports `code` for each instance type.
    pub fn fleet_errors(lifecycle: &str, code: &str, instance_types: &[&str]) -> Fault {
        let items: String = instance_types
            .iter()
            .map(|t| {
                format!(
                    "<item><launchTemplateAndOverrides><launchTemplateSpecification><launchTemplateId>lt-injected</launchTemplateId><version>1</version></launchTemplateSpecification><overrides><instanceType>{t}</instanceType></overrides></launchTemplateAndOverrides><lifecycle>{lifecycle}</lifecycle><errorCode>{code}</errorCode><errorMessage>injected {code} for {t}</errorMessage></item>"
                )
            })
            .collect();
        Fault {
            action: "ec2:CreateFleet".into(),
            when: Some(format!(
                "DefaultTargetCapacityType={}",
                if lifecycle == "spot" { "spot" } else { "on-demand" }
            )),
            times: 1,
            status: 200,
            pass_through: false,
            body: format!(
                "<CreateFleetResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>injected</requestId><fleetId>fleet-injected</fleetId><errorSet>{items}</errorSet><fleetInstanceSet/></CreateFleetResponse>"
            ),
        }
    }
}

#[derive(Default)]
struct Inner {
    /// (action, request body) of every attempt.
    calls: Vec<(String, String)>,
    faults: Vec<Fault>,
}

#[derive(Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
}

/// The fault chosen for the current attempt (None: pass through).
#[derive(Clone, Debug)]
struct Injected(Option<(u16, String)>);

impl Storable for Injected {
    type Storer = StoreReplace<Self>;
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Every request so far (retries count), in order.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.iter().map(|(a, _)| a.clone()).collect()
    }

    /// Request bodies of `action`, in order.
    pub fn bodies(&self, action: &str) -> Vec<String> {
        self.lock()
            .calls
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, b)| b.clone())
            .collect()
    }

    pub fn count(&self, action: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|(a, _)| a == action)
            .count()
    }

    pub fn clear(&self) {
        self.lock().calls.clear();
    }

    /// Fails the test if any recorded action is missing from the provider's table.
    pub fn assert_registered(&self) {
        for c in self.calls() {
            assert!(
                stevedore::cloud::aws::AWS_CALLS.contains(&c.as_str()),
                "{c} was called but is not in AWS_CALLS (nor in the IAM policy)"
            );
        }
    }

    fn take_fault(&self, action: &str, body: &str) -> Option<((u16, String), bool)> {
        let mut inner = self.lock();
        let f = inner.faults.iter_mut().find(|f| {
            f.times > 0
                && f.action == action
                && f.when.as_ref().is_none_or(|w| body.contains(w.as_str()))
        })?;
        f.times -= 1;
        Some(((f.status, f.body.clone()), f.pass_through))
    }
}

/// `service:Operation` of a signed request: the service from the SigV4 credential
/// scope, the operation from the query `Action` or the JSON `X-Amz-Target`.
fn action_of(headers: &aws_smithy_runtime_api::http::Headers, body: &str) -> String {
    let service = headers
        .get("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown");
    let operation = match headers.get("x-amz-target") {
        Some(t) => t.rsplit('.').next().unwrap_or(t).to_string(),
        None => body
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or("unknown")
            .to_string(),
    };
    format!("{service}:{operation}")
}

/// A read-only call of the same service that replaces a faulted request.
fn harmless(action: &str) -> &'static str {
    if action.starts_with("autoscaling:") {
        "Action=DescribeAutoScalingGroups&Version=2011-01-01"
    } else {
        "Action=DescribeRegions&Version=2016-11-15"
    }
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "stevedore-test-recorder"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request_mut();
        let body = req
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let action = action_of(req.headers(), &body);
        self.lock().calls.push((action.clone(), body.clone()));
        let (fault, pass_through) = match self.take_fault(&action, &body) {
            Some((f, pass)) => (Some(f), pass),
            None => (None, false),
        };
        if fault.is_some() && !pass_through {
            let replacement = harmless(&action);
            req.headers_mut()
                .insert("content-length", replacement.len().to_string());
            *req.body_mut() = SdkBody::from(replacement);
        }
        cfg.interceptor_state().store_put(Injected(fault));
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Injected(Some((status, body)))) = cfg.load::<Injected>().cloned() {
            let resp = context.response_mut();
            *resp.status_mut() = StatusCode::try_from(status)?;
            resp.headers_mut().insert("content-type", "text/xml");
            resp.headers_mut().remove("content-length");
            *resp.body_mut() = SdkBody::from(body);
        }
        Ok(())
    }
}
