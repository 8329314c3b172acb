//! Parses an event line into a `Value` while skipping the parts of a recorded pod that
//! placement never reads (`pod.status`, `pod.metadata.managedFields`). Recorded pods are
//! mostly those two; skipping them without building a tree keeps big traces fast.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

#[derive(Clone, Copy)]
enum Level {
    /// The event object: `pod` is pruned.
    Event,
    /// The pod: `status` is skipped, `metadata` is pruned.
    Pod,
    /// The pod's metadata: `managedFields` is skipped.
    PodMeta,
}

impl Level {
    fn child(self, key: &str) -> Option<Option<Level>> {
        match (self, key) {
            (Level::Event, "pod") => Some(Some(Level::Pod)),
            (Level::Pod, "status") | (Level::PodMeta, "managedFields") => Some(None),
            (Level::Pod, "metadata") => Some(Some(Level::PodMeta)),
            _ => None,
        }
    }
}

/// Parses one line, or `None` when the pruned shape does not fit (not an object at one of
/// the pruned levels, or malformed JSON): the caller then parses it as a plain `Value`
/// to report the error precisely.
pub(crate) fn parse_line(bytes: &[u8]) -> Option<Map<String, Value>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let map = Level::Event.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(map)
}

impl<'de> DeserializeSeed<'de> for Level {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Level {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            match self.child(&key) {
                Some(None) => {
                    access.next_value::<IgnoredAny>()?;
                }
                Some(Some(level)) => {
                    let v = access.next_value_seed(level)?;
                    map.insert(key, Value::Object(v));
                }
                None => {
                    let v = access.next_value::<Value>()?;
                    map.insert(key, v);
                }
            }
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_status_and_managed_fields_only() {
        let line = br#"{"t":1,"pod":{"metadata":{"name":"a","managedFields":[{"x":1}]},"status":{"phase":"Running"},"spec":{}},"status":"kept"}"#;
        let m = parse_line(line).unwrap();
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"t":1,"pod":{"metadata":{"name":"a"},"spec":{}},"status":"kept"})
        );
        assert!(parse_line(br#"{"pod":5}"#).is_none());
        assert!(parse_line(br#"{"t":1} x"#).is_none());
        assert!(parse_line(b"[1]").is_none());
    }
}
