//! Label requirements (node affinity, node pool requirements) and label selectors.

use super::labels::Labels;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

impl Operator {
    pub fn parse(s: &str) -> Option<Operator> {
        Some(match s {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::Gt,
            "Lt" => Operator::Lt,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
            Operator::Gt => "Gt",
            Operator::Lt => "Lt",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    pub fn new(key: &str, operator: Operator, values: &[&str]) -> Self {
        Requirement {
            key: key.to_string(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    /// Does a label value (None = label absent) satisfy this requirement?
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt | Operator::Lt => {
                let (Some(v), Some(bound)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|b| b.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::Gt {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.key).map(String::as_str))
    }
}

/// All requirements must match (an AND); an empty list matches everything.
pub fn all_match(reqs: &[Requirement], labels: &Labels) -> bool {
    reqs.iter().all(|r| r.matches(labels))
}

/// A Kubernetes `LabelSelector` (matchLabels AND matchExpressions).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && all_match(&self.match_expressions, labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_follow_kubernetes_semantics() {
        let mut l = Labels::new();
        l.insert("cpu".into(), "8".into());
        l.insert("arch".into(), "arm64".into());
        assert!(Requirement::new("arch", Operator::In, &["arm64", "x"]).matches(&l));
        assert!(!Requirement::new("arch", Operator::NotIn, &["arm64"]).matches(&l));
        assert!(Requirement::new("missing", Operator::NotIn, &["a"]).matches(&l));
        assert!(Requirement::new("cpu", Operator::Gt, &["4"]).matches(&l));
        assert!(!Requirement::new("cpu", Operator::Lt, &["8"]).matches(&l));
        assert!(!Requirement::new("arch", Operator::Gt, &["1"]).matches(&l));
        assert!(Requirement::new("missing", Operator::DoesNotExist, &[]).matches(&l));
        assert!(!Requirement::new("missing", Operator::Exists, &[]).matches(&l));
    }
}
