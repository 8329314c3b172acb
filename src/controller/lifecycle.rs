//! What a NodeClaim needs next, pure: launched? registered? ready? being deleted?

use crate::cluster::convert::{ClaimEntry, NodeEntry};

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// No instance recorded: launch (idempotent per claim, so after a restart this
    /// adopts the instance an interrupted launch created).
    Launch,
    /// The node with our provider ID appeared.
    Register {
        node: String,
    },
    /// The node is Ready.
    MarkReady,
    /// Launched long ago and no node came: give up on the offering.
    RegistrationTimeout,
    /// Being deleted and the node still runs pods: taint and evict.
    Drain {
        node: String,
    },
    /// Being deleted and drained (or no node): terminate, delete the node, release.
    Terminate,
    /// This replacement is ready: the claim it replaces can go.
    RetireReplaced {
        old: String,
    },
    Nothing,
}

/// The next step for `claim`, given the node it became (if any). `drained` says whether
/// the node has no pods left to evict.
pub fn step(
    claim: &ClaimEntry,
    node: Option<&NodeEntry>,
    drained: bool,
    now: f64,
    registration_timeout_s: f64,
) -> Step {
    if claim.deleting_since.is_some() {
        if !claim.has_finalizer {
            return Step::Nothing;
        }
        return match node {
            Some(n) if !drained => Step::Drain {
                node: n.name.clone(),
            },
            _ => Step::Terminate,
        };
    }
    if claim.provider_id.is_none() {
        return Step::Launch;
    }
    match node {
        None => {
            let since = claim.launched_at.unwrap_or(claim.created);
            if now - since >= registration_timeout_s {
                Step::RegistrationTimeout
            } else {
                Step::Nothing
            }
        }
        Some(n) if !claim.registered => Step::Register {
            node: n.name.clone(),
        },
        Some(n) if n.ready && !claim.ready => Step::MarkReady,
        Some(_) if claim.ready => match &claim.replaces {
            Some(old) => Step::RetireReplaced { old: old.clone() },
            None => Step::Nothing,
        },
        Some(_) => Step::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> ClaimEntry {
        ClaimEntry {
            name: "general-a".into(),
            has_finalizer: true,
            created: 100.0,
            ..Default::default()
        }
    }

    fn node(ready: bool) -> NodeEntry {
        NodeEntry {
            name: "n1".into(),
            labels: Default::default(),
            taints: vec![],
            allocatable: Default::default(),
            provider_id: Some("simulated:///z/i-1".into()),
            ready,
            unschedulable: false,
            deleting: false,
            created: 0.0,
            annotations: Default::default(),
        }
    }

    #[test]
    fn a_claim_walks_launch_register_ready() {
        let mut c = claim();
        assert_eq!(step(&c, None, true, 100.0, 900.0), Step::Launch);
        c.provider_id = Some("simulated:///z/i-1".into());
        c.launched_at = Some(100.0);
        assert_eq!(step(&c, None, true, 200.0, 900.0), Step::Nothing);
        assert_eq!(
            step(&c, Some(&node(false)), true, 200.0, 900.0),
            Step::Register { node: "n1".into() }
        );
        c.registered = true;
        assert_eq!(
            step(&c, Some(&node(false)), true, 200.0, 900.0),
            Step::Nothing
        );
        assert_eq!(
            step(&c, Some(&node(true)), true, 200.0, 900.0),
            Step::MarkReady
        );
    }

    #[test]
    fn no_node_within_the_timeout_gives_up() {
        let mut c = claim();
        c.provider_id = Some("p".into());
        c.launched_at = Some(100.0);
        assert_eq!(step(&c, None, true, 999.0, 900.0), Step::Nothing);
        assert_eq!(
            step(&c, None, true, 1000.0, 900.0),
            Step::RegistrationTimeout
        );
    }

    #[test]
    fn deletion_drains_then_terminates() {
        let mut c = claim();
        c.provider_id = Some("p".into());
        c.deleting_since = Some(500.0);
        assert_eq!(
            step(&c, Some(&node(true)), false, 500.0, 900.0),
            Step::Drain { node: "n1".into() }
        );
        assert_eq!(
            step(&c, Some(&node(true)), true, 500.0, 900.0),
            Step::Terminate
        );
        assert_eq!(step(&c, None, false, 500.0, 900.0), Step::Terminate);
        c.has_finalizer = false;
        assert_eq!(step(&c, None, false, 500.0, 900.0), Step::Nothing);
    }

    #[test]
    fn a_ready_replacement_retires_the_old_claim() {
        let mut c = claim();
        c.provider_id = Some("p".into());
        c.registered = true;
        c.ready = true;
        c.replaces = Some("general-old".into());
        assert_eq!(
            step(&c, Some(&node(true)), true, 500.0, 900.0),
            Step::RetireReplaced {
                old: "general-old".into()
            }
        );
    }
}
