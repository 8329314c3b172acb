//! Recorded workload traces (format version 1, `docs/trace-format.md`): the reader the
//! simulator replays from and the writer the `record` command uses.
//!
//! Reading rules (the contract, plus the choices it leaves open):
//! - JSON Lines, UTF-8; gzip-compressed input is recognised by its magic bytes (the file
//!   name does not matter), in [`read_path`] and [`read_from`] alike. Multi-member gzip
//!   files are read whole.
//! - Blank (whitespace-only) lines are allowed anywhere and skipped; line numbers in
//!   errors still count them. The header is the first non-blank line and must have
//!   `kind: "trace"` and `version: 1`. A UTF-8 byte-order mark before it is skipped.
//! - Every event needs a number `t` >= 0, not smaller than the previous event's.
//! - Unknown fields are ignored; an unknown `event`, a missing required field, a
//!   wrongly typed field, a bad quantity or a malformed line fails the whole file with a
//!   [`TraceError`] naming the line and the field.
//! - `spot_interruption` takes exactly one of `fraction` (0..=1) or `node`.
//!   `capacity_unavailable` needs `capacity_type` `spot`, `on-demand` or `*`, and
//!   `for_s` >= 0. `run_for_s`, when present, is >= 0.
//! - The reader does not check cross-event consistency (a `pod_deleted` for a pod never
//!   added, a pod added twice): that is the replay's business.
//!
//! The file is streamed line by line; only the parsed events are kept in memory. The parts
//! of a recorded pod that placement never reads (`status`, `metadata.managedFields`) are
//! skipped without being built.

mod json;
pub mod node;
pub mod pod;
mod prune;
mod write;

pub use node::{node_from_json, StaticNode};
pub use pod::{pod_from_json, FieldError};
pub use write::{write_to, RawEvent, RawEventKind};

use crate::core::pod::Pod;
use json::JPath;
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

/// The only trace format version this build reads and writes.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceHeader {
    /// `name` from the header; when absent, the file name without its directory and
    /// `.jsonl`/`.jsonl.gz`/`.gz` extension.
    pub name: String,
    pub source: Option<String>,
    /// `start`, as written (an RFC 3339 timestamp by convention; not interpreted).
    pub start: Option<String>,
    pub version: u32,
}

impl TraceHeader {
    /// A header for format [`VERSION`].
    pub fn new(name: impl Into<String>) -> Self {
        TraceHeader {
            name: name.into(),
            source: None,
            start: None,
            version: VERSION,
        }
    }
}

/// Which spot nodes a `spot_interruption` reclaims.
#[derive(Clone, Debug, PartialEq)]
pub enum SpotTarget {
    /// This fraction (0..=1) of the running spot nodes, chosen from the replay seed.
    Fraction(f64),
    /// The node with this name.
    Node(String),
}

// Most events of a trace are `PodAdded`, so boxing the pod would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    PodAdded {
        pod: Pod,
        /// Seconds after the pod starts running at which it finishes (batch work).
        run_for_s: Option<f64>,
    },
    PodDeleted {
        namespace: String,
        name: String,
    },
    NodeAdded {
        node: StaticNode,
    },
    CapacityUnavailable {
        /// An instance type name or `"*"`.
        instance_type: String,
        /// A zone name or `"*"`.
        zone: String,
        /// `"spot"`, `"on-demand"` or `"*"`.
        capacity_type: String,
        for_s: f64,
    },
    SpotInterruption(SpotTarget),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TraceEvent {
    /// Seconds since the trace start.
    pub t: f64,
    /// 1-based line number in the file.
    pub line: usize,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub header: TraceHeader,
    pub events: Vec<TraceEvent>,
}

/// Why a trace file was rejected. Displays as `FILE:LINE: FIELD: message` (without the
/// field part when no single field is to blame). `line` is 0 when the file could not be
/// opened at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {}{message}", field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct TraceError {
    pub file: String,
    pub line: usize,
    pub field: Option<String>,
    pub message: String,
}

/// Reads a `.jsonl` or `.jsonl.gz` trace (gzip is detected from the content).
pub fn read_path(path: &Path) -> Result<Trace, TraceError> {
    let file_name = path.display().to_string();
    let f = File::open(path).map_err(|e| TraceError {
        file: file_name.clone(),
        line: 0,
        field: None,
        message: format!("cannot open: {e}"),
    })?;
    read_from(BufReader::with_capacity(1 << 16, f), &file_name)
}

/// Reads a trace from any buffered reader; gzip input is detected and decompressed.
/// `file_name` is used in errors and as the default trace name.
pub fn read_from<R: BufRead>(mut r: R, file_name: &str) -> Result<Trace, TraceError> {
    let is_gzip = match r.fill_buf() {
        Ok(buf) => buf.starts_with(&[0x1f, 0x8b]),
        Err(e) => return Err(io_error(file_name, 1, &e)),
    };
    if is_gzip {
        let dec = flate2::bufread::MultiGzDecoder::new(r);
        read_lines(BufReader::with_capacity(1 << 16, dec), file_name)
    } else {
        read_lines(r, file_name)
    }
}

fn io_error(file: &str, line: usize, e: &io::Error) -> TraceError {
    TraceError {
        file: file.to_string(),
        line,
        field: None,
        message: format!("read error: {e}"),
    }
}

fn default_name(file_name: &str) -> String {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let base = base.strip_suffix(".gz").unwrap_or(base);
    let base = base.strip_suffix(".jsonl").unwrap_or(base);
    base.to_string()
}

fn read_lines<R: BufRead>(mut r: R, file_name: &str) -> Result<Trace, TraceError> {
    let mut buf = Vec::with_capacity(4096);
    let mut line_no = 0usize;
    let mut header: Option<TraceHeader> = None;
    let mut events = Vec::new();
    let mut last_t = 0.0f64;
    let fail = |line: usize, e: FieldError| TraceError {
        file: file_name.to_string(),
        line,
        field: Some(e.path),
        message: e.message,
    };
    loop {
        buf.clear();
        let n = r
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_error(file_name, line_no + 1, &e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let mut bytes = buf.as_slice();
        if header.is_none() {
            bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let obj = match prune::parse_line(bytes) {
            Some(obj) => obj,
            // Not the expected shape: parse it plainly, for a precise error (or a
            // field-named one from the conversion below).
            None => match serde_json::from_slice(bytes) {
                Ok(Value::Object(obj)) => obj,
                Ok(_) => {
                    return Err(TraceError {
                        file: file_name.to_string(),
                        line: line_no,
                        field: None,
                        message: "expected a JSON object".to_string(),
                    })
                }
                Err(e) => {
                    return Err(TraceError {
                        file: file_name.to_string(),
                        line: line_no,
                        field: None,
                        message: malformed(&e),
                    })
                }
            },
        };
        match header {
            None => header = Some(parse_header(&obj, file_name).map_err(|e| fail(line_no, e))?),
            Some(_) => {
                let (t, kind) = parse_event(&obj, last_t).map_err(|e| fail(line_no, e))?;
                last_t = t;
                events.push(TraceEvent {
                    t,
                    line: line_no,
                    kind,
                });
            }
        }
    }
    let Some(header) = header else {
        return Err(TraceError {
            file: file_name.to_string(),
            line: line_no.max(1),
            field: None,
            message: "empty trace: no header line".to_string(),
        });
    };
    Ok(Trace { header, events })
}

/// serde_json's message without its "at line 1 column N" (we know the line better).
fn malformed(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let msg = s.rsplit_once(" at line ").map_or(s.as_str(), |(m, _)| m);
    format!("malformed JSON (column {}): {msg}", e.column())
}

fn parse_header(obj: &Map<String, Value>, file_name: &str) -> Result<TraceHeader, FieldError> {
    let kp = JPath::root("kind");
    let kind = match json::get(obj, "kind") {
        None => return Err(kp.err("missing required field (line 1 must be the trace header)")),
        Some(v) => json::string(v, &kp)?,
    };
    if kind != "trace" {
        return Err(kp.err(format!("expected \"trace\", found {kind:?}")));
    }
    let vp = JPath::root("version");
    let version = match json::get(obj, "version") {
        None => return Err(vp.missing()),
        Some(v) => json::int(v, &vp)?,
    };
    if version != i64::from(VERSION) {
        return Err(vp.err(format!(
            "unsupported trace version {version} (this build reads version {VERSION})"
        )));
    }
    let opt = |key: &str| -> Result<Option<String>, FieldError> {
        json::get(obj, key)
            .map(|v| json::string(v, &JPath::root(key)).map(str::to_string))
            .transpose()
    };
    Ok(TraceHeader {
        name: opt("name")?.unwrap_or_else(|| default_name(file_name)),
        source: opt("source")?,
        start: opt("start")?,
        version: VERSION,
    })
}

fn req<'v>(obj: &'v Map<String, Value>, key: &str) -> Result<&'v Value, FieldError> {
    json::get(obj, key).ok_or_else(|| JPath::root(key).missing())
}

fn req_str<'v>(obj: &'v Map<String, Value>, key: &str) -> Result<&'v str, FieldError> {
    json::string(req(obj, key)?, &JPath::root(key))
}

fn req_nonempty_str<'v>(obj: &'v Map<String, Value>, key: &str) -> Result<&'v str, FieldError> {
    let s = req_str(obj, key)?;
    if s.is_empty() {
        return Err(JPath::root(key).err("must not be empty"));
    }
    Ok(s)
}

/// A number >= 0 (and finite).
fn non_negative(v: &Value, key: &str) -> Result<f64, FieldError> {
    let p = JPath::root(key);
    let x = json::number(v, &p)?;
    if x < 0.0 {
        return Err(p.err(format!("must not be negative, found {x}")));
    }
    Ok(x)
}

fn parse_event(obj: &Map<String, Value>, last_t: f64) -> Result<(f64, EventKind), FieldError> {
    let t = non_negative(req(obj, "t")?, "t")?;
    if t < last_t {
        return Err(JPath::root("t").err(format!(
            "events are not sorted by time: {t} comes after {last_t}"
        )));
    }
    let event = req_str(obj, "event")?;
    let kind = match event {
        "pod_added" => {
            let pod = pod::pod_at(req(obj, "pod")?, &JPath::root("pod"))?;
            let run_for_s = json::get(obj, "run_for_s")
                .map(|v| non_negative(v, "run_for_s"))
                .transpose()?;
            EventKind::PodAdded { pod, run_for_s }
        }
        "pod_deleted" => EventKind::PodDeleted {
            namespace: req_nonempty_str(obj, "namespace")?.to_string(),
            name: req_nonempty_str(obj, "name")?.to_string(),
        },
        "node_added" => EventKind::NodeAdded {
            node: node::node_at(req(obj, "node")?, &JPath::root("node"))?,
        },
        "capacity_unavailable" => {
            let instance_type = req_nonempty_str(obj, "instance_type")?.to_string();
            let zone = req_nonempty_str(obj, "zone")?.to_string();
            let capacity_type = req_str(obj, "capacity_type")?;
            if !matches!(capacity_type, "spot" | "on-demand" | "*") {
                return Err(JPath::root("capacity_type").err(format!(
                    "expected \"spot\", \"on-demand\" or \"*\", found {capacity_type:?}"
                )));
            }
            let for_s = non_negative(req(obj, "for_s")?, "for_s")?;
            EventKind::CapacityUnavailable {
                instance_type,
                zone,
                capacity_type: capacity_type.to_string(),
                for_s,
            }
        }
        "spot_interruption" => match (json::get(obj, "fraction"), json::get(obj, "node")) {
            (Some(_), Some(_)) => {
                return Err(JPath::root("node").err("give either fraction or node, not both"))
            }
            (Some(f), None) => {
                let p = JPath::root("fraction");
                let x = json::number(f, &p)?;
                if !(0.0..=1.0).contains(&x) {
                    return Err(p.err(format!("must be between 0 and 1, found {x}")));
                }
                EventKind::SpotInterruption(SpotTarget::Fraction(x))
            }
            (None, Some(_)) => EventKind::SpotInterruption(SpotTarget::Node(
                req_nonempty_str(obj, "node")?.to_string(),
            )),
            (None, None) => {
                return Err(JPath::root("fraction").err("missing required field (or node)"))
            }
        },
        other => {
            return Err(JPath::root("event").err(format!("unknown event {:?}", other)));
        }
    };
    Ok((t, kind))
}
