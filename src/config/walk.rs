//! Walking a positioned YAML tree: typed accessors that record an error (with line and
//! field path) and carry on, so one pass reports every mistake.

use super::error::ConfigError;
use super::yaml::{Node, Value};
use crate::core::labels::Labels;
use crate::core::quantity;
use crate::core::taints::{Taint, TaintEffect};
use std::time::Duration;

/// Where errors go while one document is walked.
pub struct Ctx<'a> {
    pub file: &'a str,
    /// `NodePool/general`, `Settings`, ...
    pub doc: String,
    pub errors: &'a mut Vec<ConfigError>,
}

impl Ctx<'_> {
    pub fn err(&mut self, line: usize, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            document: self.doc.clone(),
            path: path.to_string(),
            message: message.into(),
        });
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The fields of one mapping, checked against the allowed names.
pub struct Fields<'n> {
    pub line: usize,
    pairs: Vec<(&'n str, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The field's value; `None` when absent or null.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_null())
    }

    /// Like `get`, but a missing field is an error.
    pub fn required(&self, ctx: &mut Ctx, path: &str, key: &str) -> Option<&'n Node> {
        let v = self.get(key);
        if v.is_none() {
            ctx.err(self.line, path, format!("missing required field \"{key}\""));
        }
        v
    }
}

/// Reads a mapping whose keys must be among `allowed`. Null reads as an empty mapping.
/// Unknown and duplicate keys are reported (and skipped); a non-mapping gives `None`.
pub fn fields<'n>(
    ctx: &mut Ctx,
    node: &'n Node,
    path: &str,
    allowed: &[&str],
) -> Option<Fields<'n>> {
    let pairs = match &node.value {
        Value::Null => Vec::new(),
        Value::Map(pairs) => pairs.iter().collect(),
        _ => {
            ctx.err(
                node.line,
                path,
                format!("expected a mapping, got {}", node.kind()),
            );
            return None;
        }
    };
    let mut out = Fields {
        line: node.line,
        pairs: Vec::new(),
    };
    for (k, v) in pairs {
        let Value::Scalar { text: key, .. } = &k.value else {
            ctx.err(
                k.line,
                path,
                format!("field names must be strings, got {}", k.kind()),
            );
            continue;
        };
        if !allowed.contains(&key.as_str()) {
            ctx.err(
                k.line,
                &join(path, key),
                format!(
                    "unknown field \"{key}\" (expected one of: {})",
                    allowed.join(", ")
                ),
            );
        } else if out.pairs.iter().any(|(seen, _)| *seen == key) {
            ctx.err(k.line, &join(path, key), "duplicate field");
        } else {
            out.pairs.push((key.as_str(), v));
        }
    }
    Some(out)
}

/// Reads a mapping of arbitrary string keys (labels, limits) in file order, reporting
/// duplicates and non-scalar keys.
pub fn entries<'n>(ctx: &mut Ctx, node: &'n Node, path: &str) -> Vec<(&'n str, usize, &'n Node)> {
    let pairs = match &node.value {
        Value::Null => return Vec::new(),
        Value::Map(pairs) => pairs,
        _ => {
            ctx.err(
                node.line,
                path,
                format!("expected a mapping, got {}", node.kind()),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<(&str, usize, &Node)> = Vec::new();
    for (k, v) in pairs {
        let Value::Scalar { text: key, .. } = &k.value else {
            ctx.err(
                k.line,
                path,
                format!("keys must be strings, got {}", k.kind()),
            );
            continue;
        };
        if out.iter().any(|(seen, _, _)| *seen == key) {
            ctx.err(k.line, &join(path, key), "duplicate key");
            continue;
        }
        out.push((key.as_str(), k.line, v));
    }
    out
}

/// Reads a list; null reads as empty.
pub fn seq<'n>(ctx: &mut Ctx, node: &'n Node, path: &str) -> &'n [Node] {
    match &node.value {
        Value::Null => &[],
        Value::Seq(items) => items,
        _ => {
            ctx.err(
                node.line,
                path,
                format!("expected a list, got {}", node.kind()),
            );
            &[]
        }
    }
}

/// Any scalar, as written.
pub fn string(ctx: &mut Ctx, node: &Node, path: &str) -> Option<String> {
    match &node.value {
        Value::Scalar { text, .. } => Some(text.clone()),
        _ => {
            ctx.err(
                node.line,
                path,
                format!("expected a string, got {}", node.kind()),
            );
            None
        }
    }
}

/// An unquoted scalar (numbers and booleans must not be quoted).
fn plain<'n>(ctx: &mut Ctx, node: &'n Node, path: &str, what: &str) -> Option<&'n str> {
    match &node.value {
        Value::Scalar { text, plain: true } => Some(text),
        Value::Scalar { text, plain: false } => {
            ctx.err(
                node.line,
                path,
                format!("expected {what}, got the string {text:?} (remove the quotes)"),
            );
            None
        }
        _ => {
            ctx.err(
                node.line,
                path,
                format!("expected {what}, got {}", node.kind()),
            );
            None
        }
    }
}

pub fn int(ctx: &mut Ctx, node: &Node, path: &str) -> Option<i64> {
    let text = plain(ctx, node, path, "an integer")?;
    match text.parse::<i64>() {
        Ok(v) => Some(v),
        Err(_) => {
            ctx.err(
                node.line,
                path,
                format!("expected an integer, got {text:?}"),
            );
            None
        }
    }
}

/// An integer within `lo..=hi`.
pub fn int_in(ctx: &mut Ctx, node: &Node, path: &str, lo: i64, hi: i64) -> Option<i64> {
    let v = int(ctx, node, path)?;
    if v < lo || v > hi {
        ctx.err(
            node.line,
            path,
            format!("{v} is out of range (expected {lo} to {hi})"),
        );
        return None;
    }
    Some(v)
}

pub fn float(ctx: &mut Ctx, node: &Node, path: &str) -> Option<f64> {
    let text = plain(ctx, node, path, "a number")?;
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Some(v),
        _ => {
            ctx.err(node.line, path, format!("expected a number, got {text:?}"));
            None
        }
    }
}

pub fn boolean(ctx: &mut Ctx, node: &Node, path: &str) -> Option<bool> {
    let text = plain(ctx, node, path, "true or false")?;
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => {
            ctx.err(
                node.line,
                path,
                format!("expected true or false, got {text:?}"),
            );
            None
        }
    }
}

/// A humantime duration (`30s`, `2m`, `1h 30m`).
pub fn duration(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Duration> {
    let text = string(ctx, node, path)?;
    match humantime::parse_duration(text.trim()) {
        Ok(d) => Some(d),
        Err(e) => {
            ctx.err(
                node.line,
                path,
                format!("invalid duration {text:?}: {e} (write e.g. 30s, 2m, 1h)"),
            );
            None
        }
    }
}

/// A duration or `Never` (`None`).
pub fn duration_or_never(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Option<Duration>> {
    if matches!(&node.value, Value::Scalar { text, .. } if text == "Never") {
        return Some(None);
    }
    duration(ctx, node, path).map(Some)
}

fn quantity_with(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    parse: fn(&str) -> Result<i64, quantity::QuantityError>,
) -> Option<i64> {
    let text = string(ctx, node, path)?;
    match parse(&text) {
        Ok(v) if v < 0 => {
            ctx.err(node.line, path, format!("quantity {text:?} is negative"));
            None
        }
        Ok(v) => Some(v),
        Err(e) => {
            ctx.err(node.line, path, e.to_string());
            None
        }
    }
}

/// A CPU quantity in millicores (non-negative).
pub fn cpu(ctx: &mut Ctx, node: &Node, path: &str) -> Option<i64> {
    quantity_with(ctx, node, path, quantity::parse_cpu_milli)
}

/// A memory/count quantity in base units (non-negative).
pub fn units(ctx: &mut Ctx, node: &Node, path: &str) -> Option<i64> {
    quantity_with(ctx, node, path, quantity::parse_units)
}

// ---------------------------------------------------------------------------------------
// Kubernetes name syntax

fn is_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// DNS-1123 label: at most 63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| is_alnum(c) || c == '-')
        && s.starts_with(is_alnum)
        && s.ends_with(is_alnum)
}

/// DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// A label value: empty, or at most 63 of `[A-Za-z0-9-_.]` starting and ending
/// alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.chars().all(is_name_char)
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// A qualified name (label key, taint key): `[prefix/]name`, the prefix a DNS subdomain.
pub fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

/// Reads a label map (`labels`, `nodeSelector`), checking key and value syntax.
pub fn labels(ctx: &mut Ctx, node: &Node, path: &str) -> Labels {
    let mut out = Labels::new();
    for (key, key_line, v) in entries(ctx, node, path) {
        let p = join(path, key);
        if !is_qualified_name(key) {
            ctx.err(key_line, &p, format!("invalid label key {key:?}"));
            continue;
        }
        let value = if v.is_null() {
            Some(String::new())
        } else {
            string(ctx, v, &p)
        };
        let Some(value) = value else { continue };
        if !is_label_value(&value) {
            ctx.err(
                v.line,
                &p,
                format!(
                    "invalid label value {value:?} (at most 63 characters of A-Z a-z 0-9 - _ ., \
                     starting and ending alphanumeric)"
                ),
            );
            continue;
        }
        out.insert(key.to_string(), value);
    }
    out
}

/// Reads a list of taints `{key, value, effect}`.
pub fn taints(ctx: &mut Ctx, node: &Node, path: &str) -> Vec<Taint> {
    let mut out = Vec::new();
    for (i, item) in seq(ctx, node, path).iter().enumerate() {
        let p = index(path, i);
        let Some(f) = fields(ctx, item, &p, &["key", "value", "effect"]) else {
            continue;
        };
        let key = f
            .required(ctx, &p, "key")
            .and_then(|n| string(ctx, n, &join(&p, "key")));
        if let Some(k) = &key {
            if !is_qualified_name(k) {
                ctx.err(
                    f.get("key").map_or(f.line, |n| n.line),
                    &join(&p, "key"),
                    format!("invalid taint key {k:?}"),
                );
            }
        }
        let value = match f.get("value") {
            Some(n) => string(ctx, n, &join(&p, "value")),
            None => Some(String::new()),
        };
        if let (Some(v), Some(n)) = (&value, f.get("value")) {
            if !is_label_value(v) {
                ctx.err(
                    n.line,
                    &join(&p, "value"),
                    format!("invalid taint value {v:?}"),
                );
            }
        }
        let effect = f.required(ctx, &p, "effect").and_then(|n| {
            let s = string(ctx, n, &join(&p, "effect"))?;
            let e = TaintEffect::parse(&s);
            if e.is_none() {
                ctx.err(
                    n.line,
                    &join(&p, "effect"),
                    format!(
                        "unknown taint effect {s:?} (expected NoSchedule, PreferNoSchedule, \
                         NoExecute)"
                    ),
                );
            }
            e
        });
        if let (Some(key), Some(value), Some(effect)) = (key, value, effect) {
            out.push(Taint { key, value, effect });
        }
    }
    out
}

/// A list of strings.
pub fn strings(ctx: &mut Ctx, node: &Node, path: &str) -> Vec<String> {
    seq(ctx, node, path)
        .iter()
        .enumerate()
        .filter_map(|(i, n)| string(ctx, n, &index(path, i)))
        .collect()
}
