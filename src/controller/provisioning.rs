//! The provisioning loop: batches of pending pods (a batch closes after `batchIdle`
//! without a new pod, at most `batchMax` after it opened) and a scan every
//! `scanInterval`, each deciding with [`provision::plan`] and launching what it says.
//! It writes only new NodeClaims (and their launches); it reads the indexes.
//!
//! A decision is a function of the indexes, the scheduling model and the offerings out
//! of capacity (the clock only expires those). So when a decision asked for nothing and
//! none of the three has changed since, the next scan would decide the same nothing:
//! it returns at once instead of building the snapshot and solving again ([`Idle`]).

use super::context::{lock, Inputs};
use super::leader::Gate;
use super::provision::{self, Plan};
use super::{Controller, ControllerError};
use crate::cloud::{CloudError, CloudProvider};
use crate::cluster::wall_clock;
use crate::cluster::watch::Signal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Immediate re-decisions after launches that found no capacity (as the simulator).
const MAX_LAUNCH_ROUNDS: usize = 64;
/// This loop's name in `/healthz` and the metrics.
const LOOP: &str = "provisioning";

/// What one provisioning call did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProvisionReport {
    pub pending: usize,
    pub claims_created: usize,
    pub launched: usize,
    pub launch_failures: usize,
    /// Wall-clock milliseconds of each decision (core solve plus snapshot building).
    pub decision_ms: Vec<f64>,
    /// Nothing changed since the last decision, which asked for nothing: none was made.
    pub unchanged: bool,
}

/// The provisioning loop's memory between scans.
#[derive(Default)]
pub(crate) struct Idle {
    /// The inputs of the last decision, when it asked for nothing (no claim to make).
    asked_nothing_on: Mutex<Option<Inputs>>,
    /// Decisions made (each a snapshot built and, with pods pending, a solve).
    decisions: AtomicU64,
}

impl<P: CloudProvider> Controller<P> {
    /// How many provisioning decisions this controller has made (scans that found
    /// nothing changed make none).
    pub fn provisioning_decisions(&self) -> u64 {
        self.provisioning.decisions.load(Ordering::Relaxed)
    }

    /// One provisioning decision on the current indexes (no I/O).
    pub fn decide(&self, now: f64) -> (Plan, f64) {
        self.provisioning.decisions.fetch_add(1, Ordering::Relaxed);
        let m = self.model();
        let started = Instant::now();
        let unavailable = self.unavailable_now(now);
        let d = self.decider(&m, &unavailable, now);
        let st = self.read();
        let plan = provision::plan(&st, &d, &mut |pool| self.next_name(pool));
        (plan, started.elapsed().as_secs_f64() * 1000.0)
    }

    /// Decides and launches for the pending pods; a launch that finds no capacity marks
    /// its offerings unavailable and the pods are decided again at once.
    pub async fn provision(&self, now: f64) -> ProvisionReport {
        let mut report = ProvisionReport::default();
        let inputs = self.inputs_at(now);
        let idle = &self.provisioning.asked_nothing_on;
        if *lock(idle) == Some(inputs) {
            report.unchanged = true;
            return report;
        }
        let mut last = None;
        for _ in 0..MAX_LAUNCH_ROUNDS {
            let (plan, ms) = self.decide(now);
            report.decision_ms.push(ms);
            report.pending = report.pending.max(plan.pending);
            if plan.pending > 0 || plan.headroom {
                self.metrics
                    .record_decision(&provisioning_record(&plan, ms, self.opts.dry_run));
            }
            let mut failed = false;
            for claim in &plan.claims {
                if self.opts.dry_run {
                    tracing::info!(
                        claim = claim.name(),
                        pods = claim.pods.len(),
                        "dry run: would launch {}",
                        claim.summary()
                    );
                    continue;
                }
                match self.launch_new(claim, now).await {
                    Ok(()) => {
                        report.claims_created += 1;
                        report.launched += 1;
                    }
                    Err(ControllerError::Cloud(CloudError::InsufficientCapacity { .. })) => {
                        report.claims_created += 1;
                        report.launch_failures += 1;
                        failed = true;
                    }
                    Err(e) => {
                        report.launch_failures += 1;
                        tracing::warn!(claim = claim.name(), error = %e, "launch failed");
                    }
                }
            }
            last = Some(plan);
            if !failed || self.opts.dry_run {
                break;
            }
        }
        // A decision that asks for claims is made again next scan even on the same
        // inputs: its launches may have failed, or (dry run) not been made.
        let asked_nothing = last.as_ref().is_some_and(|p| p.claims.is_empty());
        *lock(idle) = asked_nothing.then_some(inputs);
        // Pods hear the outcome once, not once per round of a capacity shortage.
        if let Some(plan) = last {
            self.tell_pods(&plan).await;
        }
        report
    }
}

impl<P: CloudProvider + 'static> Controller<P> {
    /// Runs until `signals` closes or the election ends.
    pub async fn provisioning_loop(
        self: Arc<Self>,
        mut signals: mpsc::UnboundedReceiver<Signal>,
        mut gate: Gate,
    ) {
        let s = &self.config.settings;
        let (idle, max) = (s.batch_idle, s.batch_max);
        // `interval` panics on zero; a zero setting means "as often as sensible".
        let period = s.scan_interval.max(Duration::from_millis(100));
        let bound = self.opts.cloud_timeout + self.opts.api_timeout;
        self.liveness.register(LOOP, period, bound);
        let mut scan = tokio::time::interval(period);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Option<(tokio::time::Instant, tokio::time::Instant)> = None;
        let mut was_synced = false;
        loop {
            let deadline = batch.map(|(start, last)| (last + idle).min(start + max));
            let now_or = deadline.unwrap_or_else(tokio::time::Instant::now);
            let act = tokio::select! {
                sig = signals.recv() => match sig {
                    Some(Signal::PodPending) => {
                        let now = tokio::time::Instant::now();
                        batch = Some(batch.map_or((now, now), |(s, _)| (s, now)));
                        false
                    }
                    // The first time every watch is in, pods pending from before the
                    // start are decided at once.
                    Some(Signal::Synced(_)) => {
                        let first = !was_synced && gate.synced();
                        was_synced |= first;
                        first
                    }
                    Some(Signal::Changed) => false,
                    None => return,
                },
                changed = gate.leader_changed() => {
                    if !changed {
                        return; // the election ended (shutdown): act no more
                    }
                    // A new leader acts at once on what its warm indexes show.
                    true
                }
                _ = tokio::time::sleep_until(now_or), if deadline.is_some() => {
                    batch = None;
                    true
                }
                _ = scan.tick() => true,
            };
            if act && gate.acting() {
                self.provision(wall_clock()).await;
            }
            self.liveness.completed(LOOP);
        }
    }
}

/// The metrics record of one provisioning decision.
fn provisioning_record(plan: &Plan, ms: f64, dry_run: bool) -> crate::metrics::DecisionRecord {
    use crate::metrics::{DecisionKind, DecisionReason, DecisionRecord, DecisionResult};
    let mut nominated: std::collections::BTreeMap<String, u64> = Default::default();
    for c in &plan.claims {
        *nominated.entry(c.request.node_pool.clone()).or_default() += c.pods.len() as u64;
    }
    let cannot = plan.pod_messages.iter().any(|m| !m.3);
    let result = if dry_run {
        DecisionResult::DryRun
    } else if !plan.claims.is_empty() {
        DecisionResult::Acted
    } else if cannot {
        DecisionResult::Infeasible
    } else {
        DecisionResult::NoAction
    };
    DecisionRecord {
        kind: DecisionKind::Provisioning,
        result,
        // Pending pods are the first reason; headroom alone launches with none pending.
        reason: if plan.pending == 0 && plan.headroom {
            DecisionReason::Headroom
        } else {
            DecisionReason::PendingPods
        },
        duration: Duration::from_secs_f64(ms / 1000.0),
        nominated: nominated.into_iter().collect(),
    }
}
