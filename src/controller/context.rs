//! What every loop reads: the indexes, the pools' scheduling model (rebuilt when the
//! pools or DaemonSets change), the offerings out of capacity, claim names.

use super::provision::Decider;
use super::Controller;
use crate::cloud::{CloudError, CloudProvider};
use crate::cluster::state::ClusterState;
use crate::config::NodePoolExtras;
use crate::core::instance::CapacityType;
use crate::core::model::SchedulingModel;
use crate::core::nodepool::NodePool;
use crate::core::pod::Pod as CorePod;
use crate::core::unavailable::UnavailableOfferings;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The pools and the scheduling model, rebuilt when NodePools or DaemonSets change.
pub struct Model {
    pub(crate) generation: u64,
    pub pools: Vec<NodePool>,
    pub extras: Vec<NodePoolExtras>,
    pub model: SchedulingModel,
    /// `template_hash` of each pool, made once per model: every new NodeClaim records
    /// its pool's, and formatting the template per claim was most of building 455 claims.
    pub pool_hashes: Vec<u64>,
}

/// What a decision is made on, as versions: the indexes' change counter, the model's
/// generation and the unavailable offerings' version. Equal versions, equal inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Inputs {
    changes: u64,
    model: u64,
    unavailable: u64,
}

/// A poisoned lock still holds consistent data: every writer finishes its change in one
/// synchronous call.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<P: CloudProvider> Controller<P> {
    /// The loops' clock: seconds since the Unix epoch, advanced by tokio's monotonic
    /// clock (so a paused-time test moves it, and a wall-clock step does not).
    pub fn now(&self) -> f64 {
        let (wall, at) = self.epoch;
        wall + at.elapsed().as_secs_f64()
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, ClusterState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, ClusterState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// One cloud provider call, bounded by `cloud_timeout` and timed into the metrics.
    /// `NotFound` is not an error of the call: terminating what is already gone is the
    /// outcome the caller wanted.
    pub(crate) async fn cloud_call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, CloudError>>,
    ) -> Result<T, CloudError> {
        let started = Instant::now();
        let after = self.opts.cloud_timeout;
        let result = tokio::time::timeout(after, call).await.unwrap_or_else(|_| {
            Err(CloudError::Timeout {
                operation: operation.to_string(),
                after,
            })
        });
        let ok = matches!(&result, Ok(_) | Err(CloudError::NotFound { .. }));
        self.metrics
            .record_cloud_call(operation, started.elapsed().as_secs_f64(), ok);
        result
    }

    /// The pools (configuration's, overridden by NodePool objects of the same name) and
    /// the model for them and the cluster's DaemonSets (the configuration's when the
    /// cluster shows none).
    pub fn model(&self) -> Arc<Model> {
        let (generation, crd_pools, daemonsets) = {
            let st = self.read();
            (st.model_generation, st.valid_pools(), st.daemonsets())
        };
        let mut cached = lock(&self.model);
        if let Some(m) = cached.as_ref().filter(|m| m.generation == generation) {
            return m.clone();
        }
        let mut pools: Vec<(NodePool, NodePoolExtras)> = self
            .config
            .node_pools
            .iter()
            .cloned()
            .zip(self.config.pool_extras.iter().cloned())
            .filter(|(p, _)| !crd_pools.iter().any(|(c, _)| c.name == p.name))
            .collect();
        pools.extend(crd_pools);
        pools.sort_by(|(a, _), (b, _)| b.weight.cmp(&a.weight).then_with(|| a.name.cmp(&b.name)));
        let ds = self.daemonsets_or_configured(daemonsets);
        let ds_refs: Vec<&CorePod> = ds.iter().collect();
        let (pools, extras): (Vec<_>, Vec<_>) = pools.into_iter().unzip();
        let model = SchedulingModel::new(&self.catalog, &pools, &ds_refs);
        let pool_hashes = pools
            .iter()
            .map(crate::core::disruption::template_hash)
            .collect();
        let m = Arc::new(Model {
            generation,
            pools,
            extras,
            model,
            pool_hashes,
        });
        *cached = Some(m.clone());
        m
    }

    /// The cluster's DaemonSets as pods, or the configuration's when it shows none.
    fn daemonsets_or_configured(&self, daemonsets: Vec<CorePod>) -> Vec<CorePod> {
        if !daemonsets.is_empty() {
            return daemonsets;
        }
        self.config
            .settings
            .daemon_sets
            .iter()
            .map(crate::sim::setup::daemonset_pod)
            .collect()
    }

    /// What DaemonSets take on a new node (see [`Self::daemonsets_or_configured`]).
    pub(crate) fn daemonset_pods(&self) -> Vec<CorePod> {
        let ds = self.read().daemonsets();
        self.daemonsets_or_configured(ds)
    }

    pub(crate) fn next_name(&self, pool: &str) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = lock(&self.names);
        let suffix: String = (0..5)
            .map(|_| ALPHABET[rng.below(ALPHABET.len())] as char)
            .collect();
        format!("{pool}-{suffix}")
    }

    /// The offerings out of capacity now (expired entries dropped).
    pub(crate) fn unavailable_now(&self, now: f64) -> UnavailableOfferings {
        let mut u = lock(&self.unavailable);
        u.expire(now);
        u.clone()
    }

    /// The inputs' versions at `now`. Read before deciding: a change that lands while
    /// the decision runs then shows as a change at the next scan. Offerings whose
    /// unavailability ran out by `now` are dropped first, so that their expiry shows as
    /// a change too (the clock moves nothing else a decision reads).
    pub(crate) fn inputs_at(&self, now: f64) -> Inputs {
        self.unavailable_now(now);
        let st = self.read();
        Inputs {
            changes: st.changes,
            model: st.model_generation,
            unavailable: self.unavailable_version(),
        }
    }

    /// Changes whenever the offerings out of capacity change (marked, or expired by
    /// [`Self::unavailable_now`]): a decision depends on them.
    pub(crate) fn unavailable_version(&self) -> u64 {
        lock(&self.unavailable).generation()
    }

    pub(crate) fn mark_unavailable(&self, offerings: &[(&str, &str, CapacityType)], now: f64) {
        let ttl = self.config.settings.unavailable_offering_ttl.as_secs_f64();
        let mut u = lock(&self.unavailable);
        for (ty, zone, ct) in offerings {
            if let (Some(t), Some(z)) = (self.catalog.find(ty), self.catalog.zone_index(zone)) {
                u.mark(t, z, *ct, now, ttl);
            }
        }
    }

    pub(crate) fn decider<'a>(
        &'a self,
        m: &'a Model,
        unavailable: &'a UnavailableOfferings,
        now: f64,
    ) -> Decider<'a> {
        Decider {
            catalog: &self.catalog,
            pools: &m.pools,
            extras: &m.extras,
            model: &m.model,
            pool_hashes: &m.pool_hashes,
            unavailable,
            max_launch_options: self.config.settings.max_launch_options,
            now,
        }
    }
}
