//! The trace reader and writer against the format contract (docs/trace-format.md), the
//! pod conversion rules, and property tests that throw garbage at the reader and the
//! quantity parsers.

use proptest::prelude::*;
use serde_json::{json, Value};
use std::io::Write;
use stevedore::core::pod::TopologyKey;
use stevedore::core::quantity::{parse_cpu_milli, parse_units};
use stevedore::core::requirements::{Operator, Requirement};
use stevedore::core::resources::Resources;
use stevedore::core::taints::{TaintEffect, Toleration};
use stevedore::trace::{
    pod_from_json, read_from, read_path, write_to, EventKind, RawEvent, RawEventKind, SpotTarget,
    TraceError, TraceHeader,
};

const EXAMPLE: &str = r#"{"kind":"trace","version":1,"name":"tiny"}
{"t":0,"event":"pod_added","pod":{"metadata":{"name":"web-0","namespace":"shop","labels":{"app":"web"}},"spec":{"containers":[{"name":"app","resources":{"requests":{"cpu":"500m","memory":"1Gi"}}}]}}}
{"t":0,"event":"pod_added","run_for_s":600,"pod":{"metadata":{"name":"job-0","namespace":"batch"},"spec":{"containers":[{"name":"work","resources":{"requests":{"cpu":"2","memory":"4Gi"}}}],"tolerations":[{"key":"spot","operator":"Exists"}]}}}
{"t":900,"event":"spot_interruption","fraction":0.25}
{"t":3600,"event":"pod_deleted","namespace":"shop","name":"web-0"}
"#;

const GI: i64 = 1 << 30;
const MI: i64 = 1 << 20;

fn read_str(s: &str) -> Result<stevedore::trace::Trace, TraceError> {
    read_from(s.as_bytes(), "t.jsonl")
}

/// A trace of the header plus the given event lines.
fn trace_of(lines: &[&str]) -> String {
    let mut s = String::from("{\"kind\":\"trace\",\"version\":1}\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

fn err_of(lines: &[&str]) -> TraceError {
    read_str(&trace_of(lines)).expect_err("trace should be rejected")
}

fn pod_with_spec(spec: Value) -> stevedore::core::pod::Pod {
    pod_from_json(&json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}))
        .expect("pod converts")
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "stevedore-trace-test-{}-{name}",
        std::process::id()
    ))
}

// ---------------------------------------------------------------- the spec's example

#[test]
fn spec_example_parses_to_the_right_events() {
    let tr = read_str(EXAMPLE).unwrap();
    assert_eq!(tr.header.name, "tiny");
    assert_eq!(tr.header.version, 1);
    assert_eq!(tr.header.source, None);
    assert_eq!(tr.events.len(), 4);

    let e = &tr.events[0];
    assert_eq!((e.t, e.line), (0.0, 2));
    let EventKind::PodAdded { pod, run_for_s } = &e.kind else {
        panic!("expected pod_added, got {:?}", e.kind)
    };
    assert_eq!(pod.key(), "shop/web-0");
    assert_eq!(pod.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(pod.requests, Resources::new(500, GI, 1));
    assert_eq!(*run_for_s, None);

    let e = &tr.events[1];
    assert_eq!((e.t, e.line), (0.0, 3));
    let EventKind::PodAdded { pod, run_for_s } = &e.kind else {
        panic!("expected pod_added")
    };
    assert_eq!(pod.key(), "batch/job-0");
    assert_eq!(pod.requests, Resources::new(2000, 4 * GI, 1));
    assert_eq!(*run_for_s, Some(600.0));
    assert_eq!(
        pod.tolerations,
        vec![Toleration {
            key: "spot".into(),
            exists: true,
            value: String::new(),
            effect: None
        }]
    );

    assert_eq!(tr.events[2].t, 900.0);
    assert_eq!(tr.events[2].line, 4);
    assert_eq!(
        tr.events[2].kind,
        EventKind::SpotInterruption(SpotTarget::Fraction(0.25))
    );
    assert_eq!(tr.events[3].t, 3600.0);
    assert_eq!(
        tr.events[3].kind,
        EventKind::PodDeleted {
            namespace: "shop".into(),
            name: "web-0".into()
        }
    );
}

#[test]
fn other_event_kinds_parse() {
    let tr = read_str(&trace_of(&[
        r#"{"t":0,"event":"node_added","node":{"metadata":{"name":"static-1","labels":{"a":"b"}},"spec":{"taints":[{"key":"dedicated","value":"infra","effect":"NoSchedule"}]},"status":{"allocatable":{"cpu":"4","memory":"16Gi","pods":"110"}}}}"#,
        r#"{"t":10.5,"event":"capacity_unavailable","instance_type":"*","zone":"us-east-1a","capacity_type":"spot","for_s":300}"#,
        r#"{"t":11,"event":"spot_interruption","node":"static-1"}"#,
    ]))
    .unwrap();
    let EventKind::NodeAdded { node } = &tr.events[0].kind else {
        panic!()
    };
    assert_eq!(node.name, "static-1");
    assert_eq!(node.allocatable, Resources::new(4000, 16 * GI, 110));
    assert_eq!(node.taints[0].effect, TaintEffect::NoSchedule);
    assert_eq!(
        tr.events[1].kind,
        EventKind::CapacityUnavailable {
            instance_type: "*".into(),
            zone: "us-east-1a".into(),
            capacity_type: "spot".into(),
            for_s: 300.0
        }
    );
    assert_eq!(
        tr.events[2].kind,
        EventKind::SpotInterruption(SpotTarget::Node("static-1".into()))
    );
}

#[test]
fn header_defaults_and_informational_fields() {
    let tr = read_from(
        &b"{\"kind\":\"trace\",\"version\":1,\"source\":\"x\",\"start\":\"2026-11-01T00:00:00Z\"}\n"[..],
        "dir/web-and-batch.jsonl.gz",
    )
    .unwrap();
    assert_eq!(tr.header.name, "web-and-batch");
    assert_eq!(tr.header.source.as_deref(), Some("x"));
    assert_eq!(tr.header.start.as_deref(), Some("2026-11-01T00:00:00Z"));
    assert!(tr.events.is_empty());
}

#[test]
fn blank_lines_and_unknown_fields_are_allowed() {
    let s = format!(
        "\n{}\n\n   \n{}\r\n",
        r#"{"kind":"trace","version":1,"future":{"x":1}}"#,
        r#"{"t":1,"event":"pod_deleted","namespace":"a","name":"b","why":"done"}"#
    );
    let tr = read_str(&s).unwrap();
    assert_eq!(tr.events.len(), 1);
    assert_eq!(tr.events[0].line, 5, "line numbers count blank lines");
}

// ---------------------------------------------------------------- errors

fn assert_err(e: &TraceError, line: usize, field: Option<&str>, msg_part: &str) {
    assert_eq!(e.line, line, "{e}");
    assert_eq!(e.field.as_deref(), field, "{e}");
    assert!(
        e.message.contains(msg_part),
        "{e} should mention {msg_part:?}"
    );
}

#[test]
fn unknown_event_names_line_and_field() {
    let e = err_of(&[
        r#"{"t":0,"event":"pod_deleted","namespace":"a","name":"b"}"#,
        r#"{"t":1,"event":"pod_exploded"}"#,
    ]);
    assert_err(&e, 3, Some("event"), "pod_exploded");
    assert_eq!(
        e.to_string(),
        "t.jsonl:3: event: unknown event \"pod_exploded\""
    );
}

#[test]
fn missing_required_fields_are_named() {
    assert_err(
        &err_of(&[r#"{"event":"pod_deleted"}"#]),
        2,
        Some("t"),
        "missing",
    );
    assert_err(&err_of(&[r#"{"t":0}"#]), 2, Some("event"), "missing");
    assert_err(
        &err_of(&[r#"{"t":0,"event":"pod_deleted","namespace":"a"}"#]),
        2,
        Some("name"),
        "missing",
    );
    assert_err(
        &err_of(&[r#"{"t":0,"event":"pod_added"}"#]),
        2,
        Some("pod"),
        "missing",
    );
    assert_err(
        &err_of(&[r#"{"t":0,"event":"pod_added","pod":{"metadata":{}}}"#]),
        2,
        Some("pod.metadata.name"),
        "missing",
    );
    assert_err(
        &err_of(&[r#"{"t":0,"event":"node_added","node":{"metadata":{"name":"n"}}}"#]),
        2,
        Some("node.status.allocatable"),
        "missing",
    );
    assert_err(
        &err_of(&[
            r#"{"t":0,"event":"capacity_unavailable","instance_type":"*","zone":"*","capacity_type":"spot"}"#,
        ]),
        2,
        Some("for_s"),
        "missing",
    );
    assert_err(
        &err_of(&[r#"{"t":0,"event":"spot_interruption"}"#]),
        2,
        Some("fraction"),
        "missing",
    );
}

#[test]
fn unsorted_and_bad_times_are_rejected() {
    let e = err_of(&[
        r#"{"t":5,"event":"pod_deleted","namespace":"a","name":"b"}"#,
        r#"{"t":5,"event":"pod_deleted","namespace":"a","name":"c"}"#,
        r#"{"t":4.5,"event":"pod_deleted","namespace":"a","name":"d"}"#,
    ]);
    assert_err(&e, 4, Some("t"), "not sorted");
    assert_err(
        &err_of(&[r#"{"t":-1,"event":"pod_deleted","namespace":"a","name":"b"}"#]),
        2,
        Some("t"),
        "negative",
    );
    assert_err(
        &err_of(&[r#"{"t":"0","event":"pod_deleted","namespace":"a","name":"b"}"#]),
        2,
        Some("t"),
        "number",
    );
}

#[test]
fn bad_quantity_names_the_json_path() {
    let e = err_of(&[
        r#"{"t":0,"event":"pod_added","pod":{"metadata":{"name":"p"},"spec":{"containers":[{"resources":{"requests":{"cpu":"abc"}}}]}}}"#,
    ]);
    assert_err(
        &e,
        2,
        Some("pod.spec.containers[0].resources.requests.cpu"),
        "invalid quantity \"abc\"",
    );
    assert_eq!(
        e.to_string(),
        "t.jsonl:2: pod.spec.containers[0].resources.requests.cpu: invalid quantity \"abc\": no number"
    );
    let e = err_of(&[
        r#"{"t":0,"event":"pod_added","pod":{"metadata":{"name":"p"},"spec":{"initContainers":[{"resources":{"limits":{"nvidia.com/gpu":"one"}}}]}}}"#,
    ]);
    assert_eq!(
        e.field.as_deref(),
        Some("pod.spec.initContainers[0].resources.limits[\"nvidia.com/gpu\"]")
    );
    let e = err_of(&[
        r#"{"t":0,"event":"pod_added","pod":{"metadata":{"name":"p"},"spec":{"overhead":{"memory":"1Zi"}}}}"#,
    ]);
    assert_eq!(e.field.as_deref(), Some("pod.spec.overhead.memory"));
}

#[test]
fn malformed_lines_name_the_line() {
    let e = err_of(&[
        r#"{"t":0,"event":"pod_deleted","namespace":"a","name":"b"}"#,
        r#"{"t":1,"event":"pod_deleted","namespace":"a","name":"b""#,
    ]);
    assert_err(&e, 3, None, "malformed JSON");
    assert_err(&err_of(&["[1,2,3]"]), 2, None, "JSON object");
    let e = read_from(
        &b"{\"kind\":\"trace\",\"version\":1}\n\xff\xfe\n"[..],
        "t.jsonl",
    )
    .unwrap_err();
    assert_err(&e, 2, None, "malformed JSON");
}

#[test]
fn header_errors() {
    assert_err(
        &read_str("{\"kind\":\"trace\",\"version\":2}\n").unwrap_err(),
        1,
        Some("version"),
        "unsupported trace version 2",
    );
    assert_err(
        &read_str("{\"kind\":\"trace\"}\n").unwrap_err(),
        1,
        Some("version"),
        "missing",
    );
    assert_err(
        &read_str("{\"t\":0,\"event\":\"pod_deleted\",\"namespace\":\"a\",\"name\":\"b\"}\n")
            .unwrap_err(),
        1,
        Some("kind"),
        "header",
    );
    assert_err(
        &read_str("{\"kind\":\"recording\",\"version\":1}\n").unwrap_err(),
        1,
        Some("kind"),
        "trace",
    );
    assert_err(&read_str("").unwrap_err(), 1, None, "no header");
    assert_err(&read_str("\n\n").unwrap_err(), 2, None, "no header");
}

#[test]
fn field_range_errors() {
    assert_err(
        &err_of(&[r#"{"t":0,"event":"spot_interruption","fraction":1.5}"#]),
        2,
        Some("fraction"),
        "between 0 and 1",
    );
    assert_err(
        &err_of(&[r#"{"t":0,"event":"spot_interruption","fraction":0.5,"node":"n"}"#]),
        2,
        Some("node"),
        "not both",
    );
    assert_err(
        &err_of(&[
            r#"{"t":0,"event":"capacity_unavailable","instance_type":"m5.large","zone":"*","capacity_type":"reserved","for_s":1}"#,
        ]),
        2,
        Some("capacity_type"),
        "reserved",
    );
    assert_err(
        &err_of(&[
            r#"{"t":0,"event":"capacity_unavailable","instance_type":"m5.large","zone":"*","capacity_type":"*","for_s":-1}"#,
        ]),
        2,
        Some("for_s"),
        "negative",
    );
    assert_err(
        &err_of(&[r#"{"t":0,"event":"pod_added","run_for_s":-3,"pod":{"metadata":{"name":"p"}}}"#]),
        2,
        Some("run_for_s"),
        "negative",
    );
}

#[test]
fn missing_file_is_an_error_not_a_panic() {
    let e = read_path(std::path::Path::new("/nonexistent/trace.jsonl")).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(e
        .to_string()
        .starts_with("/nonexistent/trace.jsonl:0: cannot open"));
}

// ---------------------------------------------------------------- writer round trips

fn sample_events() -> Vec<RawEvent> {
    let pod: Value = serde_json::from_str(EXAMPLE.lines().nth(2).unwrap()).unwrap();
    vec![
        RawEvent {
            t: 0.0,
            kind: RawEventKind::NodeAdded {
                node: json!({"metadata":{"name":"n1"},"status":{"allocatable":{"cpu":"2","memory":"8Gi","pods":"29"}}}),
            },
        },
        RawEvent {
            t: 0.25,
            kind: RawEventKind::PodAdded {
                pod: pod["pod"].clone(),
                run_for_s: Some(600.0),
            },
        },
        RawEvent {
            t: 0.1 + 0.2,
            kind: RawEventKind::CapacityUnavailable {
                instance_type: "m5.large".into(),
                zone: "*".into(),
                capacity_type: "on-demand".into(),
                for_s: 120.5,
            },
        },
        RawEvent {
            t: 900.0,
            kind: RawEventKind::SpotInterruption(SpotTarget::Fraction(1.0 / 3.0)),
        },
        RawEvent {
            t: 901.0,
            kind: RawEventKind::SpotInterruption(SpotTarget::Node("n1".into())),
        },
        RawEvent {
            t: 3600.0,
            kind: RawEventKind::PodDeleted {
                namespace: "batch".into(),
                name: "job-0".into(),
            },
        },
    ]
}

fn check_round_trip(tr: &stevedore::trace::Trace, header: &TraceHeader, events: &[RawEvent]) {
    assert_eq!(&tr.header, header);
    assert_eq!(tr.events.len(), events.len());
    for (i, (got, want)) in tr.events.iter().zip(events).enumerate() {
        assert_eq!(got.t, want.t, "t of event {i} survives exactly");
        assert_eq!(got.line, i + 2);
        match (&got.kind, &want.kind) {
            (
                EventKind::PodAdded { pod, run_for_s },
                RawEventKind::PodAdded {
                    pod: raw,
                    run_for_s: r,
                },
            ) => {
                assert_eq!(pod, &pod_from_json(raw).unwrap());
                assert_eq!(run_for_s, r);
            }
            (EventKind::NodeAdded { node }, RawEventKind::NodeAdded { node: raw }) => {
                assert_eq!(node, &stevedore::trace::node_from_json(raw).unwrap());
            }
            (
                EventKind::PodDeleted { namespace, name },
                RawEventKind::PodDeleted {
                    namespace: n2,
                    name: m2,
                },
            ) => {
                assert_eq!((namespace, name), (n2, m2));
            }
            (
                EventKind::CapacityUnavailable {
                    instance_type,
                    zone,
                    capacity_type,
                    for_s,
                },
                RawEventKind::CapacityUnavailable {
                    instance_type: a,
                    zone: b,
                    capacity_type: c,
                    for_s: d,
                },
            ) => {
                assert_eq!((instance_type, zone, capacity_type, for_s), (a, b, c, d));
            }
            (EventKind::SpotInterruption(a), RawEventKind::SpotInterruption(b)) => assert_eq!(a, b),
            (g, w) => panic!("event {i}: got {g:?}, wanted {w:?}"),
        }
    }
}

#[test]
fn plain_round_trip() {
    let header = TraceHeader {
        name: "rt".into(),
        source: Some("unit test".into()),
        start: Some("2026-11-01T00:00:00Z".into()),
        version: 1,
    };
    let events = sample_events();
    let mut buf = Vec::new();
    write_to(&mut buf, &header, &events).unwrap();
    let text = String::from_utf8(buf.clone()).unwrap();
    assert!(text.starts_with("{\"kind\":\"trace\",\"version\":1,\"name\":\"rt\""));
    assert!(
        text.contains("{\"t\":900,\"event\":\"spot_interruption\""),
        "{text}"
    );
    let tr = read_from(&buf[..], "rt.jsonl").unwrap();
    check_round_trip(&tr, &header, &events);
}

#[test]
fn gz_round_trip_through_a_file() {
    let header = TraceHeader::new("gz");
    let events = sample_events();
    // Named .jsonl on purpose for the second file: gzip is recognised by content.
    for name in ["rt.jsonl.gz", "rt-misnamed.jsonl"] {
        let path = temp_path(name);
        let f = std::fs::File::create(&path).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        write_to(&mut gz, &header, &events).unwrap();
        gz.finish().unwrap().flush().unwrap();
        let tr = read_path(&path);
        std::fs::remove_file(&path).unwrap();
        check_round_trip(&tr.unwrap(), &header, &events);
    }
}

#[test]
fn corrupt_gzip_is_an_error() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(EXAMPLE.as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    let truncated = &bytes[..bytes.len() / 2];
    let e = read_from(truncated, "t.jsonl.gz").unwrap_err();
    assert!(
        e.message.contains("read error") || e.message.contains("malformed"),
        "{e}"
    );
}

#[test]
fn writer_refuses_what_the_reader_would_reject() {
    let header = TraceHeader::new("bad");
    let unsorted = vec![
        RawEvent {
            t: 5.0,
            kind: RawEventKind::PodDeleted {
                namespace: "a".into(),
                name: "b".into(),
            },
        },
        RawEvent {
            t: 1.0,
            kind: RawEventKind::PodDeleted {
                namespace: "a".into(),
                name: "c".into(),
            },
        },
    ];
    let e = write_to(Vec::new(), &header, &unsorted).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("event 1"), "{e}");

    let bad_pod = vec![RawEvent {
        t: 0.0,
        kind: RawEventKind::PodAdded {
            pod: json!({"metadata":{"name":"p"},"spec":{"containers":[{"resources":{"requests":{"cpu":"x"}}}]}}),
            run_for_s: None,
        },
    }];
    let e = write_to(Vec::new(), &header, &bad_pod).unwrap_err();
    assert!(
        e.to_string()
            .contains("pod.spec.containers[0].resources.requests.cpu"),
        "{e}"
    );

    let nan = vec![RawEvent {
        t: f64::NAN,
        kind: RawEventKind::PodDeleted {
            namespace: "a".into(),
            name: "b".into(),
        },
    }];
    assert!(write_to(Vec::new(), &header, &nan).is_err());

    let v2 = TraceHeader {
        version: 2,
        ..header
    };
    assert!(write_to(Vec::new(), &v2, &[]).is_err());
}

// ---------------------------------------------------------------- request counting

fn c(requests: Value) -> Value {
    json!({"name": "c", "resources": {"requests": requests}})
}

#[test]
fn requests_sum_containers() {
    let p = pod_with_spec(json!({"containers": [
        c(json!({"cpu": "250m", "memory": "256Mi"})),
        c(json!({"cpu": "1", "memory": "1Gi", "ephemeral-storage": "2Gi"})),
    ]}));
    let mut want = Resources::new(1250, GI + 256 * MI, 1);
    want.ephemeral = 2 * GI;
    assert_eq!(p.requests, want);
}

#[test]
fn init_containers_count_by_their_max() {
    // A big init container dominates cpu; the app containers dominate memory.
    let p = pod_with_spec(json!({
        "initContainers": [c(json!({"cpu": "2", "memory": "100Mi"})), c(json!({"cpu": "3"}))],
        "containers": [c(json!({"cpu": "500m", "memory": "1Gi"})), c(json!({"cpu": "500m"}))],
    }));
    assert_eq!(p.requests, Resources::new(3000, GI, 1));
}

#[test]
fn sidecar_init_containers_add_to_the_pod_and_to_later_init_containers() {
    // Kubernetes 1.29+: a restartPolicy: Always init container keeps running, so it adds
    // to the app containers' sum and runs alongside every init container after it.
    let mut sidecar = c(json!({"cpu": "200m", "memory": "64Mi"}));
    sidecar["restartPolicy"] = json!("Always");
    let p = pod_with_spec(json!({
        "initContainers": [
            c(json!({"cpu": "1", "memory": "10Mi"})),   // before the sidecar: 1000m alone
            sidecar,
            c(json!({"cpu": "1500m", "memory": "1Gi"})), // 1500m + 200m, 1Gi + 64Mi
        ],
        "containers": [c(json!({"cpu": "1", "memory": "512Mi"}))], // 1200m with sidecar
    }));
    assert_eq!(p.requests, Resources::new(1700, GI + 64 * MI, 1));

    // Sidecar-only: it simply adds.
    let mut sidecar = c(json!({"cpu": "100m"}));
    sidecar["restartPolicy"] = json!("Always");
    let p = pod_with_spec(json!({
        "initContainers": [sidecar],
        "containers": [c(json!({"cpu": "1"}))],
    }));
    assert_eq!(p.requests.cpu_milli, 1100);

    // restartPolicy other than Always is an ordinary init container.
    let mut init = c(json!({"cpu": "100m"}));
    init["restartPolicy"] = json!("OnFailure");
    let p = pod_with_spec(json!({
        "initContainers": [init],
        "containers": [c(json!({"cpu": "1"}))],
    }));
    assert_eq!(p.requests.cpu_milli, 1000);
}

#[test]
fn overhead_is_added_after_the_max() {
    let p = pod_with_spec(json!({
        "overhead": {"cpu": "250m", "memory": "120Mi"},
        "initContainers": [c(json!({"cpu": "2"}))],
        "containers": [c(json!({"cpu": "1", "memory": "1Gi"}))],
    }));
    assert_eq!(p.requests, Resources::new(2250, GI + 120 * MI, 1));
}

#[test]
fn limits_stand_in_for_missing_requests_per_resource() {
    let p = pod_with_spec(json!({"containers": [
        {"name": "a", "resources": {"limits": {"cpu": "2", "memory": "2Gi"}}},
        {"name": "b", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "4", "memory": "1Gi"}}},
        {"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}},
    ]}));
    let mut want = Resources::new(2100, 3 * GI, 1);
    want.set_extended("nvidia.com/gpu", 1);
    assert_eq!(p.requests, want);
    // An init container's limits count too.
    let p = pod_with_spec(json!({
        "initContainers": [{"name": "i", "resources": {"limits": {"memory": "4Gi"}}}],
        "containers": [c(json!({"memory": "1Gi"}))],
    }));
    assert_eq!(p.requests.memory, 4 * GI);
}

#[test]
fn extended_resources_are_counts_and_pods_is_one() {
    let p = pod_with_spec(json!({"containers": [
        c(json!({"nvidia.com/gpu": "2", "aws.amazon.com/neuron": 1, "pods": "5"})),
        c(json!({"nvidia.com/gpu": "1"})),
    ]}));
    assert_eq!(p.requests.pods, 1);
    assert_eq!(
        p.requests.extended,
        vec![
            ("aws.amazon.com/neuron".into(), 1),
            ("nvidia.com/gpu".into(), 3)
        ]
    );
}

// ---------------------------------------------------------------- scheduling constraints

#[test]
fn metadata_owner_and_priority() {
    let p = pod_from_json(&json!({
        "metadata": {
            "name": "ds-x", "labels": {"a": "1"}, "annotations": {"note": "n"},
            "ownerReferences": [
                {"kind": "Node", "name": "n1"},
                {"kind": "DaemonSet", "name": "ds", "controller": true}
            ]
        },
        "spec": {"priorityClassName": "system-node-critical"}
    }))
    .unwrap();
    assert_eq!(p.namespace, "default");
    assert!(p.is_daemonset());
    assert_eq!(p.owner.as_ref().unwrap().name, "ds");
    assert_eq!(p.annotations["note"], "n");
    assert_eq!(p.priority, 2_000_001_000);
    let p = pod_with_spec(json!({"priority": -5, "priorityClassName": "system-cluster-critical"}));
    assert_eq!(p.priority, -5, "spec.priority wins over the class name");
    let p = pod_with_spec(json!({"priorityClassName": "system-cluster-critical"}));
    assert_eq!(p.priority, 2_000_000_000);
}

#[test]
fn node_affinity_conversion() {
    let p = pod_with_spec(json!({
        "nodeSelector": {"kubernetes.io/arch": "arm64"},
        "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [
                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]},
                    {"key": "gpu", "operator": "DoesNotExist"}
                ]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-7"]}]}
            ]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 40, "preference": {"matchExpressions": [
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}]}},
                {"weight": 5, "preference": {"matchExpressions": [
                    {"key": "cpu", "operator": "Gt", "values": ["8"]}]}}
            ]
        }}
    }));
    assert_eq!(p.node_selector["kubernetes.io/arch"], "arm64");
    assert_eq!(
        p.required_node_terms,
        vec![
            vec![
                Requirement::new("topology.kubernetes.io/zone", Operator::In, &["a", "b"]),
                Requirement::new("gpu", Operator::DoesNotExist, &[]),
            ],
            vec![Requirement::new(
                "kubernetes.io/hostname",
                Operator::In,
                &["node-7"]
            )],
        ]
    );
    assert_eq!(
        p.preferred_node_terms,
        vec![
            (
                40,
                vec![Requirement::new(
                    "karpenter.sh/capacity-type",
                    Operator::In,
                    &["spot"]
                )]
            ),
            (5, vec![Requirement::new("cpu", Operator::Gt, &["8"])]),
        ]
    );
    let mut labels = stevedore::core::labels::Labels::new();
    labels.insert("kubernetes.io/arch".into(), "arm64".into());
    labels.insert("kubernetes.io/hostname".into(), "node-7".into());
    assert!(p.node_affinity_matches(&labels));
}

#[test]
fn empty_node_selector_terms_match_nothing() {
    let p = pod_with_spec(json!({"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}}}));
    let mut labels = stevedore::core::labels::Labels::new();
    labels.insert("kubernetes.io/hostname".into(), "n".into());
    assert!(!p.node_affinity_matches(&labels));
}

#[test]
fn node_affinity_errors_name_the_path() {
    let e = pod_from_json(
        &json!({"metadata": {"name": "p"}, "spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "k", "operator": "Near", "values": ["x"]}]}]}}}}}),
    )
    .unwrap_err();
    assert_eq!(
        e.path,
        "pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator"
    );
    let e = pod_from_json(&json!({"metadata": {"name": "p"}, "spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "spec.unschedulable", "operator": "In", "values": ["x"]}]}]}}}}}))
    .unwrap_err();
    assert!(e.path.ends_with("matchFields[0].key"), "{e}");
}

#[test]
fn toleration_conversion() {
    let p = pod_with_spec(json!({"tolerations": [
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists"},
        {"operator": "Exists"},
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
    ]}));
    assert_eq!(
        p.tolerations,
        vec![
            Toleration {
                key: "dedicated".into(),
                exists: false,
                value: "gpu".into(),
                effect: Some(TaintEffect::NoSchedule)
            },
            Toleration {
                key: "spot".into(),
                exists: true,
                value: String::new(),
                effect: None
            },
            Toleration {
                key: String::new(),
                exists: true,
                value: String::new(),
                effect: None
            },
            Toleration {
                key: "node.kubernetes.io/not-ready".into(),
                exists: true,
                value: String::new(),
                effect: Some(TaintEffect::NoExecute)
            },
        ]
    );
    let e = pod_from_json(&json!({"metadata": {"name": "p"}, "spec": {"tolerations": [{"key": "k", "effect": "Sometimes"}]}}))
        .unwrap_err();
    assert_eq!(e.path, "pod.spec.tolerations[0].effect");
}

#[test]
fn topology_spread_conversion() {
    let p = pod_from_json(&json!({
        "metadata": {"name": "p", "labels": {"app": "web", "pod-template-hash": "abc"}},
        "spec": {"topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"app": "web"}}, "minDomains": 3, "matchLabelKeys": ["pod-template-hash"]},
            {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}},
            {"maxSkew": 1, "topologyKey": "karpenter.sh/capacity-type", "whenUnsatisfiable": "DoNotSchedule"}
        ]}
    }))
    .unwrap();
    let [zone, host, other] = &p.spread[..] else {
        panic!("{:?}", p.spread)
    };
    assert_eq!(
        (zone.max_skew, zone.kind, zone.hard, zone.min_domains),
        (1, TopologyKey::Zone, true, Some(3))
    );
    assert_eq!(zone.topology_key, "topology.kubernetes.io/zone");
    assert_eq!(zone.selector.match_labels["app"], "web");
    assert_eq!(
        zone.selector.match_expressions,
        vec![Requirement::new(
            "pod-template-hash",
            Operator::In,
            &["abc"]
        )]
    );
    assert!(zone.selector.matches(&p.labels));
    assert_eq!(
        (host.max_skew, host.kind, host.hard, host.min_domains),
        (2, TopologyKey::Hostname, false, None)
    );
    assert!(host.selector.matches(&p.labels));
    assert_eq!(other.kind, TopologyKey::Other);
    assert!(
        !other.selector.matches(&p.labels),
        "no labelSelector selects no pods"
    );

    let e = pod_with_spec_err(json!({"topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "k", "whenUnsatisfiable": "Whenever"}]}));
    assert_eq!(
        e.path,
        "pod.spec.topologySpreadConstraints[0].whenUnsatisfiable"
    );
    let e = pod_with_spec_err(json!({"topologySpreadConstraints": [
        {"topologyKey": "k", "whenUnsatisfiable": "DoNotSchedule"}]}));
    assert_eq!(e.path, "pod.spec.topologySpreadConstraints[0].maxSkew");
}

fn pod_with_spec_err(spec: Value) -> stevedore::trace::FieldError {
    pod_from_json(&json!({"metadata": {"name": "p"}, "spec": spec})).unwrap_err()
}

#[test]
fn pod_affinity_conversion() {
    let p = pod_from_json(&json!({
        "metadata": {"name": "p", "namespace": "shop", "labels": {"app": "web", "tenant": "t1"}},
        "spec": {"affinity": {
            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "topology.kubernetes.io/zone",
                 "namespaces": ["shop", "infra"]}
            ], "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}
            ]},
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                 "topologyKey": "kubernetes.io/hostname", "mismatchLabelKeys": ["tenant"]}
            ]}
        }}
    }))
    .unwrap();
    assert_eq!(p.affinity.len(), 1);
    let a = &p.affinity[0];
    assert_eq!(a.kind, TopologyKey::Zone);
    assert_eq!(a.namespaces, vec!["shop".to_string(), "infra".to_string()]);
    assert_eq!(a.selector.match_labels["app"], "cache");
    assert_eq!(p.anti_affinity.len(), 1);
    let aa = &p.anti_affinity[0];
    assert_eq!(aa.kind, TopologyKey::Hostname);
    assert!(aa.namespaces.is_empty());
    assert_eq!(
        aa.selector.match_expressions,
        vec![
            Requirement::new("app", Operator::In, &["web"]),
            Requirement::new("tenant", Operator::NotIn, &["t1"]),
        ]
    );
    assert!(
        !p.term_selects(aa, &p),
        "mismatchLabelKeys excludes the pod's own tenant"
    );

    let e = pod_with_spec_err(json!({"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {}}]}}}));
    assert_eq!(
        e.path,
        "pod.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey"
    );
}

#[test]
fn wrong_types_are_errors() {
    let e = pod_from_json(&json!({"metadata": {"name": "p", "labels": {"a": 1}}})).unwrap_err();
    assert_eq!(e.path, "pod.metadata.labels.a");
    let e = pod_with_spec_err(json!({"containers": {"name": "c"}}));
    assert_eq!(e.path, "pod.spec.containers");
    assert!(e.message.contains("expected an array"), "{e}");
    let e = pod_with_spec_err(json!({"containers": [c(json!({"cpu": true}))]}));
    assert_eq!(e.path, "pod.spec.containers[0].resources.requests.cpu");
    assert!(pod_from_json(&json!("pod")).is_err());
}

// ---------------------------------------------------------------- read speed

/// Prints how long reading a 250,000-line trace takes. Run in release:
/// `cargo test --release --test trace -- --ignored --nocapture read_speed`.
#[test]
#[ignore]
fn read_speed_250k_lines() {
    let path = temp_path("speed.jsonl.gz");
    let plain = temp_path("speed.jsonl");
    let header = TraceHeader::new("speed");
    let mut events = Vec::new();
    let pods = 125_000;
    for i in 0..pods {
        events.push(RawEvent {
            t: i as f64 * 0.5,
            kind: RawEventKind::PodAdded {
                pod: json!({
                    "metadata": {"name": format!("web-{i}"), "namespace": "shop",
                        "labels": {"app": format!("app-{}", i % 50), "pod-template-hash": "7d9f8c6b5"},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("app-{}-7d9f8c6b5", i % 50), "controller": true}],
                        "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                            "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                            "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:resources": {"f:requests": {"f:cpu": {}}}}}}}}]},
                    "spec": {
                        "containers": [{"name": "app", "image": "registry.example.com/app:1.2.3",
                            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}}],
                        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": format!("app-{}", i % 50)}}}],
                        "priority": 0
                    },
                    "status": {"phase": "Pending", "qosClass": "Burstable", "conditions": [
                        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                         "message": "0/3 nodes are available: 3 Insufficient cpu.", "lastTransitionTime": "2026-11-01T00:00:00Z"}]}
                }),
                run_for_s: None,
            },
        });
    }
    for i in 0..pods {
        events.push(RawEvent {
            t: pods as f64 * 0.5 + i as f64,
            kind: RawEventKind::PodDeleted {
                namespace: "shop".into(),
                name: format!("web-{i}"),
            },
        });
    }
    let f = std::fs::File::create(&path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    write_to(&mut gz, &header, &events).unwrap();
    gz.finish().unwrap();
    write_to(std::fs::File::create(&plain).unwrap(), &header, &events).unwrap();
    drop(events);

    for p in [&plain, &path] {
        let size = std::fs::metadata(p).unwrap().len();
        let start = std::time::Instant::now();
        let tr = read_path(p).unwrap();
        let took = start.elapsed();
        assert_eq!(tr.events.len(), 2 * pods);
        println!(
            "read {} lines ({:.1} MB on disk) from {} in {:.3} s",
            tr.events.len() + 1,
            size as f64 / 1e6,
            p.file_name().unwrap().to_string_lossy(),
            took.as_secs_f64()
        );
        std::fs::remove_file(p).unwrap();
    }
}

// ---------------------------------------------------------------- property tests

/// Applies byte edits (overwrite, insert, delete) at positions drawn from `edits`.
fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(pos, byte, op) in edits {
        let i = if v.is_empty() { 0 } else { pos % (v.len() + 1) };
        match op % 4 {
            0 if i < v.len() => v[i] = byte,
            1 => v.insert(i, byte),
            2 if i < v.len() => {
                v.remove(i);
            }
            // Swap a structural character in: JSON punctuation finds the deep paths.
            _ if i < v.len() => {
                const PUNCT: &[u8] = b"{}[]\":,0-.e\n ";
                v[i] = PUNCT[byte as usize % PUNCT.len()];
            }
            _ => {}
        }
    }
    v
}

fn quantity_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[+-]?[0-9]{0,32}(\\.[0-9]{0,12})?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]{1,3})?",
        "\\PC{0,24}",
        any::<i64>().prop_map(|n| n.to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn reader_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_from(&bytes[..], "fuzz.jsonl");
        let mut with_header = b"{\"kind\":\"trace\",\"version\":1}\n".to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = read_from(&with_header[..], "fuzz.jsonl");
    }

    #[test]
    fn reader_never_panics_on_mutated_traces(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8),
        rich in any::<bool>(),
    ) {
        let base: &[u8] = if rich { RICH.as_bytes() } else { EXAMPLE.as_bytes() };
        let bytes = mutate(base, &edits);
        if let Ok(tr) = read_from(&bytes[..], "fuzz.jsonl") {
            let mut last = 0.0;
            for ev in &tr.events {
                prop_assert!(ev.t >= last && ev.t.is_finite());
                last = ev.t;
            }
        }
        // The same bytes gzip-compressed read the same way.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        let compressed = gz.finish().unwrap();
        let a = read_from(&bytes[..], "f");
        let b = read_from(&compressed[..], "f");
        // A plain input starting with the gzip magic would be decompressed; skip it.
        if !bytes.starts_with(&[0x1f, 0x8b]) {
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn quantities_never_panic(s in quantity_like()) {
        let _ = parse_units(&s);
        let _ = parse_cpu_milli(&s);
    }

    #[test]
    fn printed_integers_round_trip(n in any::<i64>()) {
        prop_assert_eq!(parse_units(&format!("{n}")), Ok(n));
        prop_assert_eq!(parse_cpu_milli(&format!("{n}m")), Ok(n));
        if let Ok(m) = parse_cpu_milli(&format!("{n}")) {
            prop_assert_eq!(Some(m), n.checked_mul(1000));
        }
    }

    #[test]
    fn accepted_quantities_print_back(s in quantity_like()) {
        if let Ok(n) = parse_units(&s) {
            prop_assert_eq!(parse_units(&format!("{n}")), Ok(n));
        }
        if let Ok(m) = parse_cpu_milli(&s) {
            prop_assert_eq!(parse_cpu_milli(&format!("{m}m")), Ok(m));
        }
    }
}

/// A trace touching every event kind and most pod fields, for mutation.
const RICH: &str = r#"{"kind":"trace","version":1,"name":"rich","source":"s","start":"2026-11-01T00:00:00Z"}

{"t":0,"event":"node_added","node":{"metadata":{"name":"static-1","labels":{"topology.kubernetes.io/zone":"us-east-1a"}},"spec":{"taints":[{"key":"dedicated","value":"infra","effect":"NoSchedule"}]},"status":{"allocatable":{"cpu":"3920m","memory":"15Gi","pods":"58","nvidia.com/gpu":"1"}}}}
{"t":1.5,"event":"pod_added","pod":{"metadata":{"name":"a","ownerReferences":[{"kind":"ReplicaSet","name":"a-1","controller":true}]},"spec":{"priorityClassName":"system-node-critical","overhead":{"cpu":"250m"},"initContainers":[{"name":"proxy","restartPolicy":"Always","resources":{"requests":{"cpu":"100m"}}},{"name":"init","resources":{"limits":{"memory":"2Gi","nvidia.com/gpu":"1"}}}],"containers":[{"name":"c","resources":{"requests":{"cpu":"1","ephemeral-storage":"1G"},"limits":{"memory":"1Gi"}}}],"nodeSelector":{"kubernetes.io/arch":"arm64"},"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"karpenter.sh/capacity-type","operator":"In","values":["spot"]}],"matchFields":[{"key":"metadata.name","operator":"NotIn","values":["n1"]}]}]},"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":10,"preference":{"matchExpressions":[{"key":"cpu","operator":"Gt","values":["4"]}]}}]},"podAntiAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[{"labelSelector":{"matchLabels":{"app":"a"}},"topologyKey":"kubernetes.io/hostname","namespaces":["x"]}]}},"tolerations":[{"key":"k","value":"v","effect":"NoExecute"}],"topologySpreadConstraints":[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchExpressions":[{"key":"app","operator":"Exists"}]},"minDomains":3,"matchLabelKeys":["pod-template-hash"]}]}}}
{"t":2,"event":"capacity_unavailable","instance_type":"*","zone":"us-east-1b","capacity_type":"spot","for_s":300}
{"t":3,"event":"spot_interruption","node":"static-1"}
"#;

#[test]
fn rich_trace_reads() {
    let tr = read_str(RICH).unwrap();
    assert_eq!(tr.events.len(), 4);
    let EventKind::PodAdded { pod, .. } = &tr.events[1].kind else {
        panic!()
    };
    // containers: cpu 1000 + sidecar 100 = 1100; init: 2Gi + 100m sidecar; memory max(1Gi,
    // 2Gi) = 2Gi; overhead +250m.
    assert_eq!(pod.requests.cpu_milli, 1350);
    assert_eq!(pod.requests.memory, 2 * GI);
    assert_eq!(pod.requests.ephemeral, 1_000_000_000);
    assert_eq!(pod.requests.extended("nvidia.com/gpu"), 1);
    assert_eq!(pod.priority, 2_000_001_000);
}

#[test]
fn recorded_pod_noise_is_skipped_but_shape_errors_still_name_the_field() {
    let tr = read_str(&trace_of(&[
        r#"{"t":0,"event":"pod_added","pod":{"metadata":{"name":"p","managedFields":[{"manager":"x","fieldsV1":{"f:spec":{}}}]},"spec":{"containers":[{"resources":{"requests":{"cpu":"1"}}}]},"status":{"phase":"Pending","conditions":[]}}}"#,
    ]))
    .unwrap();
    let EventKind::PodAdded { pod, .. } = &tr.events[0].kind else {
        panic!()
    };
    assert_eq!(pod.requests.cpu_milli, 1000);
    assert_err(
        &err_of(&[r#"{"t":0,"event":"pod_added","pod":5}"#]),
        2,
        Some("pod"),
        "expected an object",
    );
    assert_err(
        &err_of(&[r#"{"t":0,"event":"pod_added","pod":{"metadata":[]}}"#]),
        2,
        Some("pod.metadata"),
        "expected an object",
    );
}
