//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it: the holder
//! renews `renewTime` every few seconds; another replica takes the lease over once it
//! has seen no renewal for `leaseDurationSeconds`, measured on its own clock from when it
//! last saw the record change (so clock skew between replicas does not matter). Writes
//! use the object's resourceVersion: of two replicas racing for an expired lease, one
//! gets a conflict and stays a follower.
//!
//! [`decide`] is the whole policy, pure; [`LeaderElector`] applies it to the API.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::time::Duration;

/// What the lease record says, as far as the decision goes.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseView {
    pub holder: Option<String>,
    pub duration_s: f64,
    /// Changes whenever the holder renews (the renew time, as written).
    pub renew_stamp: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LeaseDecision {
    /// No lease yet: create it, holding it.
    Create,
    /// We hold it: write a fresh renew time.
    Renew,
    /// Nobody renewed it for a whole lease duration (or it was released): take it.
    TakeOver,
    /// Someone else holds it and is alive.
    Follow { holder: String },
}

/// Should `me` create, renew, take over or follow? `observed_at` is when this replica
/// first saw the current `renew_stamp` (its own clock), `now` the same clock.
/// `poll_s` is how often this replica looks: the renewal may have happened up to that
/// long before it was seen, so the lease is taken that much earlier, which keeps the
/// hand-over within one lease duration of the holder's last renewal. (Safe while the
/// holder renews more often than `duration - 2 * poll`.)
pub fn decide(
    me: &str,
    lease: Option<&LeaseView>,
    observed_at: f64,
    now: f64,
    poll_s: f64,
) -> LeaseDecision {
    let Some(l) = lease else {
        return LeaseDecision::Create;
    };
    match l.holder.as_deref() {
        Some(h) if h == me => LeaseDecision::Renew,
        None | Some("") => LeaseDecision::TakeOver,
        Some(h) if now - observed_at >= l.duration_s - poll_s => {
            let _ = h;
            LeaseDecision::TakeOver
        }
        Some(h) => LeaseDecision::Follow {
            holder: h.to_string(),
        },
    }
}

fn view(l: &Lease) -> LeaseView {
    let spec = l.spec.clone().unwrap_or_default();
    LeaseView {
        holder: spec.holder_identity,
        duration_s: f64::from(spec.lease_duration_seconds.unwrap_or(15)),
        renew_stamp: spec.renew_time.map(|t| t.0.to_string()).unwrap_or_default(),
    }
}

/// Runs the election against the API.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// (renew stamp, when first seen on our clock).
    observed: Option<(String, f64)>,
    /// How often [`LeaderElector::step`] is called (see [`decide`]).
    poll: Duration,
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        LeaderElector {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            observed: None,
            poll: Duration::ZERO,
        }
    }

    /// Declares how often `step` is called, so a follower takes over within one lease
    /// duration of the last renewal rather than one duration plus a poll.
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn spec(&self, previous: Option<&LeaseSpec>, taking_over: bool) -> LeaseSpec {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: if taking_over || previous.is_none() {
                Some(now.clone())
            } else {
                previous.and_then(|p| p.acquire_time.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if taking_over {
                transitions + 1
            } else {
                transitions
            }),
            ..Default::default()
        }
    }

    /// One round: returns whether we hold the lease afterwards. `now` is a monotonic
    /// clock in seconds (only differences matter).
    pub async fn step(&mut self, now: f64) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let v = current.as_ref().map(view);
        if let Some(v) = &v {
            if self
                .observed
                .as_ref()
                .is_none_or(|(s, _)| *s != v.renew_stamp)
            {
                self.observed = Some((v.renew_stamp.clone(), now));
            }
        }
        let observed_at = self.observed.as_ref().map_or(now, |(_, t)| *t);
        let decision = decide(
            &self.identity,
            v.as_ref(),
            observed_at,
            now,
            self.poll.as_secs_f64(),
        );
        let pp = PostParams::default();
        let result = match (decision, current) {
            (LeaseDecision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(None, false)),
                };
                self.api.create(&pp, &lease).await.map(|_| true)
            }
            (LeaseDecision::Renew | LeaseDecision::TakeOver, Some(mut lease)) => {
                let taking_over = lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.as_deref())
                    != Some(self.identity.as_str());
                lease.spec = Some(self.spec(lease.spec.as_ref(), taking_over));
                // `replace` sends the resourceVersion we read: a concurrent writer wins.
                self.api
                    .replace(&self.name, &pp, &lease)
                    .await
                    .map(|_| true)
            }
            (LeaseDecision::Renew | LeaseDecision::TakeOver, None) => Ok(false),
            (LeaseDecision::Follow { .. }, _) => Ok(false),
        };
        match result {
            Ok(held) => Ok(held),
            // Someone else wrote first (409 Conflict, or 409 AlreadyExists on create).
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl LeaderElector {
    /// Gives the lease up if we hold it (on shutdown), so a follower takes over at once
    /// instead of after a whole lease duration.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.identity.as_str());
        if !ours {
            return Ok(());
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            // Someone else wrote in between: it is not ours to release any more.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(h: &str) -> LeaseView {
        LeaseView {
            holder: Some(h.into()),
            duration_s: 15.0,
            renew_stamp: "t1".into(),
        }
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide("a", None, 0.0, 0.0, 0.0), LeaseDecision::Create);
    }

    #[test]
    fn the_holder_renews() {
        assert_eq!(
            decide("a", Some(&held_by("a")), 0.0, 100.0, 0.0),
            LeaseDecision::Renew
        );
    }

    #[test]
    fn a_live_holder_is_followed_until_a_full_duration_passes_unrenewed() {
        let l = held_by("a");
        assert_eq!(
            decide("b", Some(&l), 10.0, 24.9, 0.0),
            LeaseDecision::Follow { holder: "a".into() }
        );
        assert_eq!(
            decide("b", Some(&l), 10.0, 25.0, 0.0),
            LeaseDecision::TakeOver
        );
    }

    #[test]
    fn a_follower_polling_every_second_takes_over_one_poll_early() {
        // The renewal was seen at 10.0 but may have happened up to 1 s before.
        let l = held_by("a");
        assert!(matches!(
            decide("b", Some(&l), 10.0, 23.9, 1.0),
            LeaseDecision::Follow { .. }
        ));
        assert_eq!(
            decide("b", Some(&l), 10.0, 24.0, 1.0),
            LeaseDecision::TakeOver
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut l = held_by("a");
        l.holder = None;
        assert_eq!(
            decide("b", Some(&l), 10.0, 10.0, 0.0),
            LeaseDecision::TakeOver
        );
        l.holder = Some(String::new());
        assert_eq!(
            decide("b", Some(&l), 10.0, 10.0, 0.0),
            LeaseDecision::TakeOver
        );
    }
}
