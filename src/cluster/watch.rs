//! Watch glue: each kind's watch stream is applied to the shared [`ClusterState`] as it
//! arrives. Bad objects are logged and skipped; the loop never stops for one. A relist
//! (`Init` ... `InitDone`) drops the objects that did not come back.
//!
//! A watch that fails or stays silent past its stall limit is dropped and started again
//! from a full list, and its kind counts as not synced until that list is in
//! ([`WatchSync`]): the loops decide nothing on indexes that may have missed events.

use super::state::ClusterState;
use super::wall_clock;
use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// What a watch tells the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// A pod became unschedulable: a batch opens (or stays open).
    PodPending,
    /// Something else changed (a node, a claim...): lifecycle steps may proceed.
    Changed,
    /// One watch finished its initial list.
    Synced(&'static str),
}

/// Which watches hold a complete, current list. Written by the watch tasks only; the
/// loops read it before every decision.
#[derive(Debug, Default)]
pub struct WatchSync {
    synced: Mutex<HashSet<&'static str>>,
    /// Every watch listed at least once (`/readyz`): stays true through a relist.
    listed: AtomicBool,
}

impl WatchSync {
    /// Every kind of [`WATCHED`] synced (tests that fill the indexes by hand).
    pub fn all_synced() -> WatchSync {
        let s = WatchSync::default();
        for k in WATCHED {
            s.set(k, true);
        }
        s
    }

    pub fn set(&self, kind: &'static str, synced: bool) {
        let mut set = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if synced {
            set.insert(kind);
        } else {
            set.remove(kind);
        }
        if WATCHED.iter().all(|k| set.contains(k)) {
            self.listed.store(true, Ordering::Relaxed);
        }
    }

    /// Every watch is synced now: the indexes may be decided on.
    pub fn current(&self) -> bool {
        let set = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        WATCHED.iter().all(|k| set.contains(k))
    }

    /// Every watch has listed once (a relist in progress does not unset it).
    pub fn listed(&self) -> bool {
        self.listed.load(Ordering::Relaxed)
    }
}

/// How long a watch may stay silent before it is dropped and re-listed. The API server
/// ends a watch after the watcher's timeout (290 s) and sends bookmarks meanwhile, so a
/// healthy watch is never silent this long.
pub const DEFAULT_STALL: Duration = Duration::from_secs(330);
/// Waits before a failed watch is listed again: first and longest.
const RELIST_BACKOFF_MIN: Duration = Duration::from_millis(500);
const RELIST_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How one kind goes into the state.
pub struct Kind<K> {
    pub name: &'static str,
    /// Applies an object; `Ok(true)` asks for a batch.
    pub apply: fn(&mut ClusterState, &K, f64) -> Result<bool, String>,
    pub delete: fn(&mut ClusterState, &str, &str, f64),
    /// The (namespace, name) of every object of this kind held now.
    pub keys: fn(&ClusterState) -> Vec<(String, String)>,
}

fn key<K: Resource>(o: &K) -> (String, String) {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// Applies one watch event; returns the signal to send, if any.
pub fn handle<K: Resource>(
    state: &RwLock<ClusterState>,
    kind: &Kind<K>,
    event: Event<K>,
    relist: &mut Option<HashSet<(String, String)>>,
) -> Option<Signal> {
    let now = wall_clock();
    let mut st = match state.write() {
        Ok(g) => g,
        // A panic elsewhere poisoned the lock; the data is still consistent per call.
        Err(p) => p.into_inner(),
    };
    let apply = |st: &mut ClusterState, o: &K| match (kind.apply)(st, o, now) {
        Ok(pending) => pending,
        Err(e) => {
            tracing::warn!(kind = kind.name, object = %o.name_any(), error = %e, "skipping a bad object");
            false
        }
    };
    match event {
        Event::Apply(o) => Some(if apply(&mut st, &o) {
            Signal::PodPending
        } else {
            Signal::Changed
        }),
        Event::Delete(o) => {
            let (ns, name) = key(&o);
            (kind.delete)(&mut st, &ns, &name, now);
            Some(Signal::Changed)
        }
        Event::Init => {
            *relist = Some(HashSet::new());
            None
        }
        Event::InitApply(o) => {
            if let Some(seen) = relist.as_mut() {
                seen.insert(key(&o));
            }
            apply(&mut st, &o).then_some(Signal::PodPending)
        }
        Event::InitDone => {
            if let Some(seen) = relist.take() {
                for (ns, name) in (kind.keys)(&st) {
                    if !seen.contains(&(ns.clone(), name.clone())) {
                        (kind.delete)(&mut st, &ns, &name, now);
                    }
                }
            }
            Some(Signal::Synced(kind.name))
        }
    }
}

/// Runs one kind's watch until the process ends. A watch error or a stall of `stall`
/// drops the stream and lists again (after a backoff); meanwhile the kind is not synced.
pub async fn run<K>(
    api: Api<K>,
    state: Arc<RwLock<ClusterState>>,
    kind: Kind<K>,
    signals: mpsc::UnboundedSender<Signal>,
    sync: Arc<WatchSync>,
    stall: Duration,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut backoff = RELIST_BACKOFF_MIN;
    loop {
        let why = follow(&api, &state, &kind, &signals, &sync, stall).await;
        sync.set(kind.name, false);
        if why == Ended::Listed {
            backoff = RELIST_BACKOFF_MIN;
        }
        tracing::warn!(kind = kind.name, reason = ?why, retry_in = ?backoff, "watch lost; listing again");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RELIST_BACKOFF_MAX);
    }
}

/// Why one watch stream was given up.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// It failed or stalled before its list completed.
    Unlisted,
    /// It failed or stalled after a complete list (the next backoff starts small).
    Listed,
}

/// One watch stream from a fresh list until it fails or stalls.
async fn follow<K>(
    api: &Api<K>,
    state: &RwLock<ClusterState>,
    kind: &Kind<K>,
    signals: &mpsc::UnboundedSender<Signal>,
    sync: &WatchSync,
    stall: Duration,
) -> Ended
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let stream = watcher::watcher(api.clone(), watcher::Config::default());
    futures::pin_mut!(stream);
    let mut relist = None;
    let mut listed = Ended::Unlisted;
    loop {
        match tokio::time::timeout(stall, stream.next()).await {
            Ok(Some(Ok(event))) => {
                // The watcher lists again by itself after a desync (410 Gone): from
                // here until that list is done the kind is not current.
                if matches!(event, Event::Init) {
                    sync.set(kind.name, false);
                }
                if let Some(s) = handle(state, kind, event, &mut relist) {
                    if let Signal::Synced(k) = s {
                        sync.set(k, true);
                        listed = Ended::Listed;
                    }
                    let _ = signals.send(s);
                }
            }
            Ok(Some(Err(e))) => {
                tracing::warn!(kind = kind.name, error = %e, "watch error");
                return listed;
            }
            Ok(None) => return listed,
            Err(_) => {
                tracing::warn!(kind = kind.name, silent_for = ?stall, "watch stalled");
                return listed;
            }
        }
    }
}

use super::crd::{NodeClaim, NodePool};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

fn cluster_scoped(names: Vec<String>) -> Vec<(String, String)> {
    names.into_iter().map(|n| (String::new(), n)).collect()
}

pub fn pods() -> Kind<Pod> {
    Kind {
        name: "Pod",
        apply: |st, o, now| st.apply_pod(o, now).map_err(|e| e.to_string()),
        delete: |st, ns, name, now| st.delete_pod(ns, name, now),
        keys: |st| {
            st.pods()
                .map(|p| (p.pod.namespace.clone(), p.pod.name.clone()))
                .collect()
        },
    }
}

pub fn nodes() -> Kind<Node> {
    Kind {
        name: "Node",
        apply: |st, o, now| {
            st.apply_node(o, now)
                .map(|_| false)
                .map_err(|e| e.to_string())
        },
        delete: |st, _, name, _| st.delete_node(name),
        keys: |st| cluster_scoped(st.nodes().map(|n| n.name.clone()).collect()),
    }
}

pub fn node_claims() -> Kind<NodeClaim> {
    Kind {
        name: "NodeClaim",
        apply: |st, o, _| st.apply_claim(o).map(|_| false).map_err(|e| e.to_string()),
        delete: |st, _, name, _| st.delete_claim(name),
        keys: |st| cluster_scoped(st.claims().map(|c| c.name.clone()).collect()),
    }
}

pub fn node_pools() -> Kind<NodePool> {
    Kind {
        name: "NodePool",
        apply: |st, o, _| st.apply_pool(o).map(|_| false).map_err(|e| e.to_string()),
        delete: |st, _, name, _| st.delete_pool(name),
        keys: |st| cluster_scoped(st.pool_names()),
    }
}

pub fn pdbs() -> Kind<PodDisruptionBudget> {
    Kind {
        name: "PodDisruptionBudget",
        apply: |st, o, _| st.apply_pdb(o).map(|_| false).map_err(|e| e.to_string()),
        delete: |st, ns, name, _| st.delete_pdb(ns, name),
        keys: |st| st.pdb_keys(),
    }
}

pub fn daemonsets() -> Kind<DaemonSet> {
    Kind {
        name: "DaemonSet",
        apply: |st, o, _| {
            st.apply_daemonset(o)
                .map(|_| false)
                .map_err(|e| e.to_string())
        },
        delete: |st, ns, name, _| st.delete_daemonset(ns, name),
        keys: |st| st.daemonset_keys(),
    }
}

/// Starts every watch the controller needs; signals go to `signals`, sync state to
/// `sync`; a watch silent for `stall` is re-listed.
pub fn spawn_all(
    client: &kube::Client,
    state: &Arc<RwLock<ClusterState>>,
    signals: &mpsc::UnboundedSender<Signal>,
    sync: &Arc<WatchSync>,
    stall: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let c = client.clone();
    let (st, tx, sy) = (state, signals, sync);
    vec![
        tokio::spawn(run(
            Api::<Pod>::all(c.clone()),
            st.clone(),
            pods(),
            tx.clone(),
            sy.clone(),
            stall,
        )),
        tokio::spawn(run(
            Api::<Node>::all(c.clone()),
            st.clone(),
            nodes(),
            tx.clone(),
            sy.clone(),
            stall,
        )),
        tokio::spawn(run(
            Api::<NodeClaim>::all(c.clone()),
            st.clone(),
            node_claims(),
            tx.clone(),
            sy.clone(),
            stall,
        )),
        tokio::spawn(run(
            Api::<NodePool>::all(c.clone()),
            st.clone(),
            node_pools(),
            tx.clone(),
            sy.clone(),
            stall,
        )),
        tokio::spawn(run(
            Api::<PodDisruptionBudget>::all(c.clone()),
            st.clone(),
            pdbs(),
            tx.clone(),
            sy.clone(),
            stall,
        )),
        tokio::spawn(run(
            Api::<DaemonSet>::all(c),
            st.clone(),
            daemonsets(),
            tx.clone(),
            sy.clone(),
            stall,
        )),
    ]
}

/// The kinds [`spawn_all`] watches: readiness waits for each to sync once.
pub const WATCHED: &[&str] = &[
    "Pod",
    "Node",
    "NodeClaim",
    "NodePool",
    "PodDisruptionBudget",
    "DaemonSet",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi"}}
        }))
        .unwrap()
    }

    #[test]
    fn a_relist_drops_what_did_not_come_back() {
        let state = RwLock::new(ClusterState::default());
        let kind = nodes();
        let mut relist = None;
        for n in ["a", "b"] {
            handle(&state, &kind, Event::Apply(node(n)), &mut relist);
        }
        assert_eq!(handle(&state, &kind, Event::Init, &mut relist), None);
        handle(&state, &kind, Event::InitApply(node("b")), &mut relist);
        assert_eq!(
            handle(&state, &kind, Event::InitDone, &mut relist),
            Some(Signal::Synced("Node"))
        );
        let names: Vec<String> = state
            .read()
            .unwrap()
            .nodes()
            .map(|n| n.name.clone())
            .collect();
        assert_eq!(names, vec!["b".to_string()]);
    }

    #[test]
    fn a_newly_unschedulable_pod_opens_a_batch_once() {
        let state = RwLock::new(ClusterState::new(vec!["default-scheduler".into()]));
        let kind = pods();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "namespace": "x"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
        }))
        .unwrap();
        let mut relist = None;
        assert_eq!(
            handle(&state, &kind, Event::Apply(pod.clone()), &mut relist),
            Some(Signal::PodPending)
        );
        assert_eq!(
            handle(&state, &kind, Event::Apply(pod), &mut relist),
            Some(Signal::Changed)
        );
    }
}
