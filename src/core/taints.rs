//! Taints and tolerations, with the Kubernetes matching rules.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn parse(s: &str) -> Option<TaintEffect> {
        Some(match s {
            "NoSchedule" => TaintEffect::NoSchedule,
            "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
            "NoExecute" => TaintEffect::NoExecute,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: TaintEffect,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Toleration {
    /// Empty key with `Exists` tolerates everything.
    pub key: String,
    /// `true` for operator `Exists`, `false` for `Equal`.
    pub exists: bool,
    pub value: String,
    /// `None` tolerates every effect.
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if let Some(e) = self.effect {
            if e != taint.effect {
                return false;
            }
        }
        if self.key.is_empty() {
            return self.exists;
        }
        self.key == taint.key && (self.exists || self.value == taint.value)
    }
}

/// A pod may land on a node when every NoSchedule/NoExecute taint is tolerated
/// (PreferNoSchedule is only a preference).
pub fn tolerates_all(tolerations: &[Toleration], taints: &[Taint]) -> bool {
    taints
        .iter()
        .filter(|t| t.effect != TaintEffect::PreferNoSchedule)
        .all(|t| tolerations.iter().any(|tol| tol.tolerates(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toleration_matching() {
        let gpu = Taint {
            key: "nvidia.com/gpu".into(),
            value: "true".into(),
            effect: TaintEffect::NoSchedule,
        };
        let eq = Toleration {
            key: "nvidia.com/gpu".into(),
            exists: false,
            value: "true".into(),
            effect: Some(TaintEffect::NoSchedule),
        };
        let wrong_value = Toleration {
            value: "false".into(),
            ..eq.clone()
        };
        let any = Toleration {
            key: String::new(),
            exists: true,
            value: String::new(),
            effect: None,
        };
        assert!(tolerates_all(&[eq], std::slice::from_ref(&gpu)));
        assert!(!tolerates_all(&[wrong_value], std::slice::from_ref(&gpu)));
        assert!(tolerates_all(&[any], std::slice::from_ref(&gpu)));
        assert!(!tolerates_all(&[], std::slice::from_ref(&gpu)));
    }
}
