//! Disruptions being carried out: the simulator executes the core's `Execution`
//! commands (cordon, launch replacements, drain through evictions that respect
//! PodDisruptionBudgets, refused ones retried each scan, terminate, or uncordon and back
//! off), and follows replacements becoming ready or being lost.

use super::disruption_pass::Kind;
use super::state::{NodeState, Sim};
use crate::core::disruption::{self, Command, Event, Execution, Phase};
use crate::core::resources::Resources;
use crate::core::scheduler::LaunchPlan;
use crate::sim::report::Mark;

/// One disruption being carried out.
#[derive(Clone, Debug)]
pub(super) struct InFlight {
    pub exec: Execution,
    pub kind: Kind,
    /// The nodes going away.
    pub nodes: Vec<usize>,
    /// Their replacements (launched first).
    pub replacements: Vec<usize>,
}

impl Sim<'_> {
    /// Starts a disruption: the core's execution says what to do first.
    pub(super) fn start(&mut self, kind: Kind, nodes: Vec<usize>, plans: Vec<LaunchPlan>) {
        let (exec, commands) = Execution::start(plans.len());
        let mut replacements = Vec::new();
        for plan in &plans {
            match self.launch(plan, false) {
                Some(n) => replacements.push(n),
                // No capacity: give up now, before anything was cordoned.
                None => return self.back_off(&nodes, &replacements),
            }
        }
        let mut flight = InFlight {
            exec,
            kind,
            nodes,
            replacements,
        };
        self.run_commands(&mut flight, commands);
        self.in_flight.push(flight);
    }

    fn back_off(&mut self, nodes: &[usize], launched: &[usize]) {
        for &n in launched {
            self.terminate(n);
        }
        let until = self.now + disruption::REPLACEMENT_BACKOFF_S;
        for &n in nodes {
            self.backoff.insert(n, until);
        }
    }

    fn run_commands(&mut self, flight: &mut InFlight, commands: Vec<Command>) {
        for c in commands {
            match c {
                Command::Cordon => {
                    for &n in &flight.nodes {
                        self.nodes[n].cordoned = true;
                        self.nodes[n].disrupting = true;
                    }
                    self.node_changes += 1;
                }
                // Launched in `start`, so a launch failure can abandon before cordoning.
                Command::LaunchReplacements => {}
                Command::Drain => self.drain_flight(flight),
                Command::Terminate => {
                    for n in flight.nodes.clone() {
                        self.count(flight.kind);
                        self.terminate(n);
                    }
                }
                Command::Uncordon => {
                    for &n in &flight.nodes {
                        self.nodes[n].cordoned = false;
                        self.nodes[n].disrupting = false;
                    }
                    self.node_changes += 1;
                }
                Command::BackOff { until } => {
                    for &n in &flight.nodes {
                        self.backoff.insert(n, until);
                    }
                }
            }
        }
    }

    fn count(&mut self, kind: Kind) {
        let d = &mut self.disruptions;
        match kind {
            Kind::Empty => d.empty += 1,
            Kind::Delete => d.deleted += 1,
            Kind::Replace => d.replaced += 1,
            Kind::MultiNode => d.multi_node += 1,
            Kind::Expired => d.expired += 1,
            Kind::Drifted => d.drifted += 1,
        }
        if matches!(
            kind,
            Kind::Empty | Kind::Delete | Kind::Replace | Kind::MultiNode
        ) {
            d.consolidated += 1;
        }
        self.marks.push(Mark {
            t: self.now,
            kind: kind.label(),
        });
    }

    /// Drains every disruption in its draining phase (each scan: refused evictions are
    /// retried), and the pods of interrupted Spot nodes that have somewhere to go.
    pub(super) fn drain(&mut self) {
        let mut flights = std::mem::take(&mut self.in_flight);
        for f in &mut flights {
            if f.exec.phase == Phase::Draining {
                self.drain_flight(f);
            }
        }
        flights.retain(|f| matches!(f.exec.phase, Phase::Launching | Phase::Draining));
        // Disruptions started while draining (none today) are kept.
        flights.append(&mut self.in_flight);
        self.in_flight = flights;
        self.drain_interrupted();
    }

    fn drain_flight(&mut self, flight: &mut InFlight) {
        let pods: Vec<usize> = flight
            .nodes
            .iter()
            .flat_map(|&n| self.nodes[n].pods.clone())
            .collect();
        self.evict(&pods);
        if flight.nodes.iter().all(|&n| self.nodes[n].pods.is_empty()) {
            let commands = flight.exec.on(Event::Drained, self.now);
            self.run_commands(flight, commands);
        }
    }

    /// A node became ready: the disruption waiting for it may drain.
    pub(super) fn replacement_ready(&mut self, n: usize) {
        let mut flights = std::mem::take(&mut self.in_flight);
        for f in flights.iter_mut().filter(|f| f.replacements.contains(&n)) {
            let ready = f
                .replacements
                .iter()
                .all(|&r| self.nodes[r].state == NodeState::Ready);
            if ready {
                let commands = f.exec.on(Event::ReplacementsReady, self.now);
                self.run_commands(f, commands);
            }
        }
        flights.retain(|f| matches!(f.exec.phase, Phase::Launching | Phase::Draining));
        flights.append(&mut self.in_flight);
        self.in_flight = flights;
    }

    /// Node `n` is going away outside a disruption's own plan (a Spot reclaim, a lost
    /// launch): a replacement lost before it was ready abandons its disruption (the old
    /// nodes serve on); a disrupted node that vanished is simply no longer waited for.
    pub(super) fn node_lost(&mut self, n: usize) {
        let mut flights = std::mem::take(&mut self.in_flight);
        for f in &mut flights {
            if f.exec.phase == Phase::Launching && f.replacements.contains(&n) {
                // Replacements already up stay as ordinary nodes (empty ones go when
                // their pool's consolidateAfter has passed).
                f.replacements.retain(|&r| r != n);
                let commands = f.exec.on(Event::ReplacementFailed, self.now);
                self.run_commands(f, commands);
            }
            f.nodes.retain(|&m| m != n);
        }
        flights.retain(|f| {
            !f.nodes.is_empty() && matches!(f.exec.phase, Phase::Launching | Phase::Draining)
        });
        flights.append(&mut self.in_flight);
        self.in_flight = flights;
    }

    /// The room a replacement keeps for the pods of the nodes it replaces.
    pub(super) fn reserved_on(&self, n: usize) -> Option<Resources> {
        let f = self
            .in_flight
            .iter()
            .find(|f| f.replacements.contains(&n))?;
        let mut r = Resources::default();
        for &old in &f.nodes {
            r.add(&self.nodes[old].requested);
        }
        Some(r)
    }
}
