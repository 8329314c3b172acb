//! Typed access to `serde_json::Value` trees that names the JSON path of a bad field.
//!
//! Paths are a chain of borrowed segments on the stack; the string is only built when an
//! error is reported, so the happy path of a 100,000-pod trace allocates nothing for them.

use super::pod::FieldError;
use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug)]
enum Seg<'a> {
    Root(&'a str),
    Key(&'a str),
    Index(usize),
}

/// A JSON path such as `pod.spec.containers[0].resources.requests.cpu`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JPath<'a> {
    parent: Option<&'a JPath<'a>>,
    seg: Seg<'a>,
}

impl<'a> JPath<'a> {
    pub(crate) fn root(name: &'a str) -> JPath<'a> {
        JPath {
            parent: None,
            seg: Seg::Root(name),
        }
    }

    pub(crate) fn key<'b>(&'b self, key: &'b str) -> JPath<'b> {
        JPath {
            parent: Some(self),
            seg: Seg::Key(key),
        }
    }

    pub(crate) fn index(&self, i: usize) -> JPath<'_> {
        JPath {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut cur = Some(self);
        while let Some(p) = cur {
            segs.push(p.seg);
            cur = p.parent;
        }
        let mut out = String::new();
        for seg in segs.iter().rev() {
            match seg {
                Seg::Root(name) => out.push_str(name),
                Seg::Key(k) if is_plain_key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                // Label and resource names hold dots and slashes: quote them so the path
                // stays unambiguous (`requests["nvidia.com/gpu"]`).
                Seg::Key(k) => {
                    out.push('[');
                    out.push_str(&Value::String((*k).to_string()).to_string());
                    out.push(']');
                }
                Seg::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    pub(crate) fn err(&self, message: impl Into<String>) -> FieldError {
        FieldError {
            path: self.render(),
            message: message.into(),
        }
    }

    pub(crate) fn missing(&self) -> FieldError {
        self.err("missing required field")
    }
}

fn is_plain_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A short, bounded rendering of a value for error messages.
pub(crate) fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 64 {
        let mut t: String = s.chars().take(61).collect();
        t.push_str("...");
        t
    } else {
        s
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected(p: &JPath, what: &str, v: &Value) -> FieldError {
    p.err(format!("expected {what}, found {}", type_name(v)))
}

/// `obj[key]`, with JSON `null` read as absent (the API server writes both).
pub(crate) fn get<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    }
}

pub(crate) fn object<'v>(v: &'v Value, p: &JPath) -> Result<&'v Map<String, Value>, FieldError> {
    v.as_object().ok_or_else(|| expected(p, "an object", v))
}

pub(crate) fn array<'v>(v: &'v Value, p: &JPath) -> Result<&'v Vec<Value>, FieldError> {
    v.as_array().ok_or_else(|| expected(p, "an array", v))
}

pub(crate) fn string<'v>(v: &'v Value, p: &JPath) -> Result<&'v str, FieldError> {
    v.as_str().ok_or_else(|| expected(p, "a string", v))
}

pub(crate) fn boolean(v: &Value, p: &JPath) -> Result<bool, FieldError> {
    v.as_bool().ok_or_else(|| expected(p, "a boolean", v))
}

pub(crate) fn int(v: &Value, p: &JPath) -> Result<i64, FieldError> {
    v.as_i64().ok_or_else(|| match v {
        Value::Number(_) => p.err(format!("expected an integer, found {}", show(v))),
        _ => expected(p, "an integer", v),
    })
}

pub(crate) fn int32(v: &Value, p: &JPath) -> Result<i32, FieldError> {
    let n = int(v, p)?;
    i32::try_from(n).map_err(|_| p.err(format!("{n} is out of range")))
}

/// A finite number (serde_json never yields NaN or infinities, but say so anyway).
pub(crate) fn number(v: &Value, p: &JPath) -> Result<f64, FieldError> {
    match v.as_f64() {
        Some(x) if x.is_finite() => Ok(x),
        Some(_) => Err(p.err("expected a finite number")),
        None => Err(expected(p, "a number", v)),
    }
}

/// An optional child object (absent or null gives `None`).
pub(crate) fn opt_object<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    p: &JPath,
) -> Result<Option<&'v Map<String, Value>>, FieldError> {
    get(obj, key).map(|v| object(v, &p.key(key))).transpose()
}

/// An optional child array; absent or null reads as empty.
pub(crate) fn opt_array<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    p: &JPath,
) -> Result<&'v [Value], FieldError> {
    match get(obj, key) {
        None => Ok(&[]),
        Some(v) => Ok(array(v, &p.key(key))?.as_slice()),
    }
}

pub(crate) fn opt_string<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    p: &JPath,
) -> Result<Option<&'v str>, FieldError> {
    get(obj, key).map(|v| string(v, &p.key(key))).transpose()
}

pub(crate) fn req_string<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    p: &JPath,
) -> Result<&'v str, FieldError> {
    match get(obj, key) {
        None => Err(p.key(key).missing()),
        Some(v) => string(v, &p.key(key)),
    }
}

/// A `map[string]string` (labels, annotations, nodeSelector); absent reads as empty.
pub(crate) fn string_map(
    obj: &Map<String, Value>,
    key: &str,
    p: &JPath,
) -> Result<crate::core::labels::Labels, FieldError> {
    let mut out = crate::core::labels::Labels::new();
    if let Some(m) = opt_object(obj, key, p)? {
        let mp = p.key(key);
        for (k, v) in m {
            let s = string(v, &mp.key(k))?;
            out.insert(k.clone(), s.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_paths() {
        let root = JPath::root("pod");
        let spec = root.key("spec");
        let c = spec.key("containers");
        let c0 = c.index(0);
        let r = c0.key("resources");
        let q = r.key("requests");
        assert_eq!(
            q.key("cpu").render(),
            "pod.spec.containers[0].resources.requests.cpu"
        );
        assert_eq!(
            q.key("nvidia.com/gpu").render(),
            "pod.spec.containers[0].resources.requests[\"nvidia.com/gpu\"]"
        );
    }
}
