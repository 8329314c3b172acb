//! Pod topology spread and inter-pod (anti-)affinity bookkeeping for one decision.
//!
//! Pods that share a selector share a counting group, so a decision over thousands of
//! pods keeps a handful of per-domain counters instead of rescanning placed pods.

use super::labels;
use super::pod::{Pod, PodAffinityTerm, TopologyKey, TopologySpread};
use super::requirements::LabelSelector;
use std::collections::HashMap;

/// Where a pod would land, as far as topology is concerned.
#[derive(Clone, Copy, Debug)]
pub struct Place<'p> {
    pub zone: Option<&'p str>,
    pub host: &'p str,
    /// Labels of an existing node (for topology keys other than zone and hostname).
    pub labels: Option<&'p labels::Labels>,
}

impl<'p> Place<'p> {
    pub fn value(&self, key: &str) -> Option<&'p str> {
        if labels::is_hostname_key(key) {
            Some(self.host)
        } else if labels::is_zone_key(key) {
            self.zone
        } else {
            self.labels.and_then(|l| l.get(key)).map(String::as_str)
        }
    }
}

#[derive(Debug)]
struct Group<'a> {
    /// Namespaces the selector counts in (already resolved from the owner pod).
    namespaces: Vec<String>,
    selector: &'a LabelSelector,
    key: String,
    counts: HashMap<String, i32>,
    total: i32,
}

impl Group<'_> {
    fn selects(&self, pod: &Pod) -> bool {
        self.namespaces.contains(&pod.namespace) && self.selector.matches(&pod.labels)
    }

    fn count(&self, value: &str) -> i32 {
        self.counts.get(value).copied().unwrap_or(0)
    }
}

#[derive(Debug)]
struct AntiEntry<'a> {
    owner: &'a Pod,
    term: &'a PodAffinityTerm,
}

fn namespaces_of(owner: &Pod, explicit: &[String]) -> Vec<String> {
    if explicit.is_empty() {
        vec![owner.namespace.clone()]
    } else {
        explicit.to_vec()
    }
}

/// Topology state of one decision.
#[derive(Debug, Default)]
pub struct Topology<'a> {
    groups: Vec<Group<'a>>,
    anti: Vec<AntiEntry<'a>>,
    /// Indices into `anti` by topology key, then domain value.
    anti_at: HashMap<String, HashMap<String, Vec<usize>>>,
    /// Whether any entry of `anti` is zone-keyed (most are per hostname).
    any_zone_anti: bool,
}

/// Which soft constraints to treat as hard (the first pass of a placement honours
/// preferences; the relaxed pass drops them, as Karpenter does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    Strict,
    Relaxed,
}

impl<'a> Topology<'a> {
    /// The topology of a decision for `pending` pods, starting from the pods already
    /// `placed`: a counting group for every constraint of a pending pod, then one pass
    /// over the placed pods (nothing of them is kept but their counts and anti-affinity
    /// terms, so a decision over a large cluster copies no list of its pods).
    pub fn new(
        placed: impl IntoIterator<Item = (&'a Pod, Place<'a>)>,
        pending: impl IntoIterator<Item = &'a Pod>,
    ) -> Self {
        let mut topology = Topology::default();
        for pod in pending {
            topology.register(pod);
        }
        // With no group to count in, only anti-affinity terms of placed pods matter.
        let counting = !topology.groups.is_empty();
        for (pod, place) in placed {
            if counting || !pod.anti_affinity.is_empty() {
                topology.place(pod, &place);
            }
        }
        topology
    }

    /// Remembers the anti-affinity terms of `pod` placed at `place`.
    fn record_anti(&mut self, pod: &'a Pod, place: &Place<'_>) {
        for t in &pod.anti_affinity {
            if let Some(v) = place.value(&t.topology_key) {
                self.any_zone_anti |= labels::is_zone_key(&t.topology_key);
                self.anti_at
                    .entry(t.topology_key.clone())
                    .or_default()
                    .entry(v.to_string())
                    .or_default()
                    .push(self.anti.len());
                self.anti.push(AntiEntry {
                    owner: pod,
                    term: t,
                });
            }
        }
    }

    fn group_index(
        &mut self,
        owner: &Pod,
        namespaces: &[String],
        selector: &'a LabelSelector,
        key: &str,
    ) -> usize {
        let ns = namespaces_of(owner, namespaces);
        if let Some(i) = self
            .groups
            .iter()
            .position(|g| g.key == key && g.namespaces == ns && *g.selector == *selector)
        {
            return i;
        }
        self.groups.push(Group {
            namespaces: ns,
            selector,
            key: key.to_string(),
            counts: HashMap::new(),
            total: 0,
        });
        self.groups.len() - 1
    }

    /// Makes sure every constraint of `pod` has its counting group (before any pod is
    /// placed: a group counts the pods placed after it is made).
    fn register(&mut self, pod: &'a Pod) {
        for s in &pod.spread {
            self.group_index(pod, &[], &s.selector, &s.topology_key);
        }
        for t in pod.affinity.iter().chain(&pod.anti_affinity) {
            self.group_index(pod, &t.namespaces, &t.selector, &t.topology_key);
        }
    }

    fn find(
        &self,
        owner: &Pod,
        namespaces: &[String],
        selector: &LabelSelector,
        key: &str,
    ) -> Option<&Group<'a>> {
        // Compared in place: this runs for every constraint of every try.
        let ns_eq = |g: &Group| {
            if namespaces.is_empty() {
                g.namespaces.len() == 1 && g.namespaces[0] == owner.namespace
            } else {
                g.namespaces == namespaces
            }
        };
        self.groups
            .iter()
            .find(|g| g.key == key && ns_eq(g) && *g.selector == *selector)
    }

    /// Does `pod` have any constraint whose domain is the zone?
    pub fn has_zone_constraint(pod: &Pod) -> bool {
        pod.spread.iter().any(|s| s.kind == TopologyKey::Zone)
            || pod
                .affinity
                .iter()
                .chain(&pod.anti_affinity)
                .any(|t| t.kind == TopologyKey::Zone)
    }

    /// Does the zone of a new node matter for `pod`: its own zone-keyed constraints, or a
    /// placed pod's zone anti-affinity that selects it?
    pub fn zone_matters(&self, pod: &Pod) -> bool {
        Self::has_zone_constraint(pod)
            || (self.any_zone_anti
                && self.anti.iter().any(|e| {
                    labels::is_zone_key(&e.term.topology_key) && e.owner.term_selects(e.term, pod)
                }))
    }

    /// The spread count of the zone-keyed spread group of `pod` at `zone` (used to pick
    /// the least-loaded zone for a new node).
    pub fn zone_count(&self, pod: &Pod, zone: &str) -> i32 {
        pod.spread
            .iter()
            .filter(|s| s.kind == TopologyKey::Zone)
            .filter_map(|s| self.find(pod, &[], &s.selector, &s.topology_key))
            .map(|g| g.count(zone))
            .sum()
    }

    /// Would placing `pod` at `place` respect its spread constraints, its (anti-)affinity
    /// and the anti-affinity of pods already placed? `eligible_zones` are the zones the
    /// pod could be placed in at all (the domains of a zone spread).
    pub fn allows(
        &self,
        pod: &Pod,
        place: &Place,
        eligible_zones: &[&str],
        strictness: Strictness,
    ) -> Result<(), &'static str> {
        for s in &pod.spread {
            if !s.hard && strictness == Strictness::Relaxed {
                continue;
            }
            self.check_spread(pod, s, place, eligible_zones)?;
        }
        for t in &pod.affinity {
            let Some(v) = place.value(&t.topology_key) else {
                continue;
            };
            let Some(g) = self.find(pod, &t.namespaces, &t.selector, &t.topology_key) else {
                continue;
            };
            let self_match = pod.term_selects(t, pod);
            if g.count(v) == 0 && !(g.total == 0 && self_match) {
                return Err("pod affinity: no matching pod in the domain");
            }
        }
        for t in &pod.anti_affinity {
            let Some(v) = place.value(&t.topology_key) else {
                continue;
            };
            if let Some(g) = self.find(pod, &t.namespaces, &t.selector, &t.topology_key) {
                if g.count(v) > 0 {
                    return Err("pod anti-affinity: a matching pod is in the domain");
                }
            }
        }
        // Only the placed pods in this place's domains can object.
        for (key, by_value) in &self.anti_at {
            let Some(v) = place.value(key) else { continue };
            for &i in by_value.get(v).map_or(&[][..], Vec::as_slice) {
                let e = &self.anti[i];
                if e.owner.term_selects(e.term, pod) {
                    return Err("pod anti-affinity of a placed pod");
                }
            }
        }
        Ok(())
    }

    fn check_spread(
        &self,
        pod: &Pod,
        s: &TopologySpread,
        place: &Place,
        eligible_zones: &[&str],
    ) -> Result<(), &'static str> {
        let Some(v) = place.value(&s.topology_key) else {
            return Ok(());
        };
        let Some(g) = self.find(pod, &[], &s.selector, &s.topology_key) else {
            return Ok(());
        };
        // New nodes can always open an empty hostname (or other) domain, so the global
        // minimum there is 0; zones are a fixed set.
        let min = match s.kind {
            TopologyKey::Zone => {
                let mut m = eligible_zones.iter().map(|z| g.count(z)).min().unwrap_or(0);
                if let Some(md) = s.min_domains {
                    if (eligible_zones.len() as i32) < md {
                        m = 0;
                    }
                }
                m
            }
            _ => 0,
        };
        let own = i32::from(g.selects(pod));
        if g.count(v) + own - min > s.max_skew {
            return Err("topology spread: max skew exceeded");
        }
        Ok(())
    }

    /// Records `pod` at `place`.
    pub fn place(&mut self, pod: &'a Pod, place: &Place<'_>) {
        for g in &mut self.groups {
            if g.selects(pod) {
                if let Some(v) = place.value(&g.key) {
                    *g.counts.entry(v.to_string()).or_default() += 1;
                    g.total += 1;
                }
            }
        }
        self.record_anti(pod, place);
    }
}
