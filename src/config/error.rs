//! Configuration errors: every problem found, each with its file, line and field path.

use std::fmt;
use thiserror::Error;

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or the `source_name` given to `load_str`).
    pub file: String,
    /// 1-based line of the offending node; 0 when the error concerns no line (an I/O
    /// error, a missing file).
    pub line: usize,
    /// The document: `NodePool/general`, `Settings`, or `document 3` when its kind or name
    /// is unknown. Empty for file-level errors.
    pub document: String,
    /// Field path inside the document, e.g. `spec.template.spec.requirements[1].operator`.
    /// Empty for document-level errors.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        write!(f, ": ")?;
        if !self.document.is_empty() {
            write!(f, "{}: ", self.document)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every error found while loading a configuration, in file and line order. Displays one
/// error per line.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{}", render(.errors))]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

fn render(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigErrors {
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}
