//! The trace writer (for the `record` command). Every line it writes is read back with
//! the reader's own rules before it is written, so a file it produces always reads.

use super::{parse_event, parse_header, SpotTarget, TraceHeader};
use serde_json::Value;
use std::io::{self, BufWriter, Write};

/// An event as recorded: the Kubernetes objects are kept as the API returned them, so
/// the file carries everything a later reader might want, not just today's `Pod` view.
#[derive(Clone, Debug, PartialEq)]
pub struct RawEvent {
    /// Seconds since the trace start; >= 0 and non-decreasing across events.
    pub t: f64,
    pub kind: RawEventKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RawEventKind {
    PodAdded {
        /// A `v1.Pod` object.
        pod: Value,
        run_for_s: Option<f64>,
    },
    PodDeleted {
        namespace: String,
        name: String,
    },
    NodeAdded {
        /// A `v1.Node` object.
        node: Value,
    },
    CapacityUnavailable {
        instance_type: String,
        zone: String,
        capacity_type: String,
        for_s: f64,
    },
    SpotInterruption(SpotTarget),
}

/// Writes a header line and one line per event, then flushes. Fails with
/// `io::ErrorKind::InvalidInput` (naming the event index and field) on anything the
/// reader would reject: a version other than [`super::VERSION`], unsorted or negative
/// `t`, an unconvertible pod or node, an out-of-range field. Nothing after the bad event
/// is written; the caller should discard the partial output.
pub fn write_to<W: Write>(w: W, header: &TraceHeader, events: &[RawEvent]) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 16, w);
    let mut line = Vec::with_capacity(1024);

    line.extend_from_slice(b"{\"kind\":\"trace\",\"version\":");
    serde_json::to_writer(&mut line, &header.version)?;
    field(&mut line, "name", &Value::from(header.name.as_str()))?;
    if let Some(s) = &header.source {
        field(&mut line, "source", &Value::from(s.as_str()))?;
    }
    if let Some(s) = &header.start {
        field(&mut line, "start", &Value::from(s.as_str()))?;
    }
    line.push(b'}');
    check(&line, "header", |obj| parse_header(obj, "").map(drop))?;
    line.push(b'\n');
    out.write_all(&line)?;

    let mut last_t = 0.0;
    for (i, ev) in events.iter().enumerate() {
        line.clear();
        line.extend_from_slice(b"{\"t\":");
        serde_json::to_writer(&mut line, &number(ev.t))?;
        match &ev.kind {
            RawEventKind::PodAdded { pod, run_for_s } => {
                field(&mut line, "event", &Value::from("pod_added"))?;
                if let Some(r) = run_for_s {
                    field(&mut line, "run_for_s", &number(*r))?;
                }
                field(&mut line, "pod", pod)?;
            }
            RawEventKind::PodDeleted { namespace, name } => {
                field(&mut line, "event", &Value::from("pod_deleted"))?;
                field(&mut line, "namespace", &Value::from(namespace.as_str()))?;
                field(&mut line, "name", &Value::from(name.as_str()))?;
            }
            RawEventKind::NodeAdded { node } => {
                field(&mut line, "event", &Value::from("node_added"))?;
                field(&mut line, "node", node)?;
            }
            RawEventKind::CapacityUnavailable {
                instance_type,
                zone,
                capacity_type,
                for_s,
            } => {
                field(&mut line, "event", &Value::from("capacity_unavailable"))?;
                field(
                    &mut line,
                    "instance_type",
                    &Value::from(instance_type.as_str()),
                )?;
                field(&mut line, "zone", &Value::from(zone.as_str()))?;
                field(
                    &mut line,
                    "capacity_type",
                    &Value::from(capacity_type.as_str()),
                )?;
                field(&mut line, "for_s", &number(*for_s))?;
            }
            RawEventKind::SpotInterruption(target) => {
                field(&mut line, "event", &Value::from("spot_interruption"))?;
                match target {
                    SpotTarget::Fraction(f) => field(&mut line, "fraction", &number(*f))?,
                    SpotTarget::Node(n) => field(&mut line, "node", &Value::from(n.as_str()))?,
                }
            }
        }
        line.push(b'}');
        check(&line, &format!("event {i}"), |obj| {
            parse_event(obj, last_t).map(|(t, _)| last_t = t)
        })?;
        line.push(b'\n');
        out.write_all(&line)?;
    }
    out.flush()
}

fn field(line: &mut Vec<u8>, key: &str, value: &Value) -> io::Result<()> {
    line.push(b',');
    serde_json::to_writer(&mut *line, key)?;
    line.push(b':');
    serde_json::to_writer(&mut *line, value)?;
    Ok(())
}

/// Integral values are written as integers (`"t":60`, not `60.0`); others in the
/// shortest form that reads back to the same `f64`. Non-finite values become `null`,
/// which the check then rejects as a missing field.
fn number(x: f64) -> Value {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::from(x as i64)
    } else {
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

fn check(
    line: &[u8],
    what: &str,
    f: impl FnOnce(&serde_json::Map<String, Value>) -> Result<(), super::FieldError>,
) -> io::Result<()> {
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
    let v: Value = serde_json::from_slice(line).map_err(|e| invalid(format!("{what}: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(format!("{what}: not an object")))?;
    f(obj).map_err(|e| invalid(format!("{what}: {e}")))
}
