//! Renders the metrics and reads them back with a strict parser of the Prometheus text
//! exposition format (0.0.4), so a malformed line, a missing TYPE or a wrong number fails.

use super::*;
use std::collections::BTreeMap;

#[path = "../../tests/support/prom.rs"]
mod prom;
use prom::*;

/// (node pool, instance type, capacity type, zone).
type Place<'a> = (Option<&'a str>, &'a str, CapacityType, &'a str);

fn node(
    (pool, ty, ct, zone): Place,
    state: NodeState,
    alloc: Resources,
    req: Resources,
    price: Option<f64>,
) -> NodeObservation {
    NodeObservation {
        nodepool: pool.map(str::to_string),
        instance_type: ty.into(),
        capacity_type: ct,
        zone: zone.into(),
        state,
        allocatable: alloc,
        requested: req,
        price_per_hour: price,
    }
}

const GI: i64 = 1 << 30;

fn sample_cluster() -> ClusterObservation {
    let mut gpu_alloc = Resources::new(4000, 16 * GI, 29);
    gpu_alloc.set_extended(GPU_NVIDIA, 1);
    let mut gpu_req = Resources::new(1000, 4 * GI, 2);
    gpu_req.set_extended(GPU_NVIDIA, 1);
    ClusterObservation {
        pending_pods: 7,
        oldest_pending: Some(Duration::from_millis(42_500)),
        nodes: vec![
            node(
                (
                    Some("general"),
                    "m5.large",
                    CapacityType::Spot,
                    "us-east-1a",
                ),
                NodeState::Ready,
                Resources::new(2000, 8 * GI, 29),
                Resources::new(1500, 2 * GI, 10),
                Some(0.04),
            ),
            node(
                (
                    Some("general"),
                    "m5.large",
                    CapacityType::OnDemand,
                    "us-east-1b",
                ),
                NodeState::Launching,
                Resources::new(2000, 8 * GI, 29),
                Resources::new(500, 6 * GI, 4),
                Some(0.096),
            ),
            node(
                (
                    Some("gpu"),
                    "g4dn.xlarge",
                    CapacityType::OnDemand,
                    "us-east-1a",
                ),
                NodeState::Draining,
                gpu_alloc,
                gpu_req,
                Some(0.526),
            ),
            // Not managed by stevedore: counts cluster-wide only.
            node(
                (None, "t3.medium", CapacityType::OnDemand, "us-east-1c"),
                NodeState::Ready,
                Resources::new(2000, 4 * GI, 17),
                Resources::new(1000, GI, 5),
                Some(0.0416),
            ),
        ],
        lower_bound_per_hour: Some(0.31),
        shape_bound_per_hour: Some(0.42),
        constrained_bound_per_hour: Some(0.47),
        unavailable_offerings: 3,
    }
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9 * b.abs().max(1.0))
}

#[test]
fn fresh_registry_renders_valid_exposition_with_conventional_names() {
    let m = Metrics::new();
    let text = m.render();
    let f = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (name, fam) in &f {
        assert!(name.starts_with("stevedore_"), "{name} lacks the prefix");
        match fam.kind.as_str() {
            "counter" => assert!(name.ends_with("_total"), "counter {name}"),
            "histogram" => assert!(name.ends_with("_seconds"), "histogram {name}"),
            "gauge" => assert!(!name.ends_with("_total"), "gauge {name}"),
            k => panic!("{name} has unexpected type {k}"),
        }
    }
    assert_eq!(f["stevedore_pending_pods"].kind, "gauge");
    assert_eq!(value(&f, "stevedore_pending_pods", &[]), Some(0.0));
    assert_eq!(value(&f, "stevedore_leader", &[]), Some(0.0));
    assert_eq!(
        value(
            &f,
            "stevedore_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
}

#[test]
fn cluster_observation_sets_triggers_utilization_nodes_and_cost() {
    let m = Metrics::new();
    m.observe_cluster(&sample_cluster());
    let text = m.render();
    let f = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    assert_eq!(value(&f, "stevedore_pending_pods", &[]), Some(7.0));
    assert_eq!(
        value(&f, "stevedore_pending_pods_oldest_age_seconds", &[]),
        Some(42.5)
    );
    assert_eq!(value(&f, "stevedore_offerings_unavailable", &[]), Some(3.0));
    assert!(close(
        value(&f, "stevedore_lower_bound_hourly_cost_dollars", &[]),
        0.31
    ));
    assert!(close(
        value(&f, "stevedore_shape_bound_hourly_cost_dollars", &[]),
        0.42
    ));
    assert!(close(
        value(&f, "stevedore_constrained_bound_hourly_cost_dollars", &[]),
        0.47
    ));

    // Pool `general`: 2 cores of 4 requested, 8 GiB of 16, 14 pods of 58, no GPU.
    let g = |r| [("nodepool", "general"), ("resource", r)];
    assert_eq!(
        value(&f, "stevedore_nodepool_requested", &g("cpu")),
        Some(2.0)
    );
    assert_eq!(
        value(&f, "stevedore_nodepool_allocatable", &g("cpu")),
        Some(4.0)
    );
    assert_eq!(
        value(&f, "stevedore_nodepool_utilization_ratio", &g("cpu")),
        Some(0.5)
    );
    assert_eq!(
        value(&f, "stevedore_nodepool_requested", &g("memory")),
        Some((8 * GI) as f64)
    );
    assert!(close(
        value(&f, "stevedore_nodepool_utilization_ratio", &g("pods")),
        14.0 / 58.0
    ));
    assert_eq!(
        value(&f, "stevedore_nodepool_allocatable", &g("gpu")),
        Some(0.0)
    );
    // No GPU allocatable: no ratio rather than NaN.
    assert_eq!(
        value(&f, "stevedore_nodepool_utilization_ratio", &g("gpu")),
        None
    );
    assert_eq!(
        value(
            &f,
            "stevedore_nodepool_utilization_ratio",
            &[("nodepool", "gpu"), ("resource", "gpu")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &f,
            "stevedore_nodepool_pods_per_node",
            &[("nodepool", "general"), ("stat", "avg")]
        ),
        Some(7.0)
    );
    assert_eq!(
        value(
            &f,
            "stevedore_nodepool_pods_per_node",
            &[("nodepool", "general"), ("stat", "max")]
        ),
        Some(10.0)
    );

    // Cluster-wide includes the unmanaged node: 4 of 10 cores.
    assert_eq!(
        value(&f, "stevedore_cluster_requested", &[("resource", "cpu")]),
        Some(4.0)
    );
    assert!(close(
        value(
            &f,
            "stevedore_cluster_utilization_ratio",
            &[("resource", "cpu")]
        ),
        0.4
    ));

    // Nodes: only managed ones, one series per (pool, type, capacity type, zone).
    let nodes = series(&f, "stevedore_nodes");
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert_eq!(
        value(
            &f,
            "stevedore_nodes",
            &[
                ("nodepool", "general"),
                ("instance_type", "m5.large"),
                ("capacity_type", "on-demand"),
                ("zone", "us-east-1b")
            ]
        ),
        Some(1.0)
    );
    let st = |p, s| [("nodepool", p), ("state", s)];
    assert_eq!(
        value(&f, "stevedore_nodes_by_state", &st("general", "ready")),
        Some(1.0)
    );
    assert_eq!(
        value(&f, "stevedore_nodes_by_state", &st("general", "launching")),
        Some(1.0)
    );
    assert_eq!(
        value(&f, "stevedore_nodes_by_state", &st("general", "draining")),
        Some(0.0)
    );
    assert_eq!(
        value(&f, "stevedore_nodes_by_state", &st("gpu", "draining")),
        Some(1.0)
    );

    let cost = |p, c| [("nodepool", p), ("capacity_type", c)];
    assert!(close(
        value(
            &f,
            "stevedore_nodes_hourly_cost_dollars",
            &cost("general", "spot")
        ),
        0.04
    ));
    assert!(close(
        value(
            &f,
            "stevedore_nodes_hourly_cost_dollars",
            &cost("gpu", "on-demand")
        ),
        0.526
    ));
    // The unmanaged node's price is not stevedore's cost.
    assert_eq!(series(&f, "stevedore_nodes_hourly_cost_dollars").len(), 3);
}

#[test]
fn a_new_observation_drops_series_of_pools_that_are_gone() {
    let m = Metrics::new();
    m.observe_cluster(&sample_cluster());
    let mut obs = sample_cluster();
    obs.nodes.retain(|n| n.nodepool.as_deref() != Some("gpu"));
    obs.pending_pods = 0;
    obs.oldest_pending = None;
    m.observe_cluster(&obs);
    let f = parse(&m.render()).unwrap();
    for name in [
        "stevedore_nodes",
        "stevedore_nodes_by_state",
        "stevedore_nodepool_requested",
        "stevedore_nodes_hourly_cost_dollars",
    ] {
        assert!(
            series(&f, name)
                .iter()
                .all(|s| s.labels.get("nodepool").map(String::as_str) != Some("gpu")),
            "{name} still has pool gpu"
        );
    }
    assert_eq!(value(&f, "stevedore_pending_pods", &[]), Some(0.0));
    assert_eq!(
        value(&f, "stevedore_pending_pods_oldest_age_seconds", &[]),
        Some(0.0)
    );
}

#[test]
fn decisions_launches_calls_and_leader_are_counted() {
    let m = Metrics::new();
    m.record_decision(&DecisionRecord {
        kind: DecisionKind::Provisioning,
        result: DecisionResult::Acted,
        reason: DecisionReason::PendingPods,
        duration: Duration::from_millis(3),
        nominated: vec![("general".into(), 12), ("gpu".into(), 1)],
    });
    m.record_decision(&DecisionRecord {
        kind: DecisionKind::Provisioning,
        result: DecisionResult::Acted,
        reason: DecisionReason::PendingPods,
        duration: Duration::from_millis(300),
        nominated: vec![("general".into(), 3)],
    });
    m.record_decision(&DecisionRecord {
        kind: DecisionKind::Disruption,
        result: DecisionResult::Blocked,
        reason: DecisionReason::Underutilized,
        duration: Duration::from_micros(50),
        nominated: vec![],
    });
    let launch = |outcome| LaunchRecord {
        nodepool: "general",
        instance_type: "m5.large",
        capacity_type: CapacityType::Spot,
        zone: "us-east-1a",
        outcome,
    };
    m.record_launch(&launch(Ok(())));
    m.record_launch(&launch(Err(LaunchFailure::InsufficientCapacity)));
    m.record_launch(&launch(Err(LaunchFailure::InsufficientCapacity)));
    m.record_launch(&launch(Err(LaunchFailure::Quota)));
    m.record_cloud_call("CreateFleet", 1.5, true);
    m.record_cloud_call("CreateFleet", 0.2, false);
    m.record_api_call("create", "pods/eviction", 0.01, false);
    m.set_leader(true);

    let text = m.render();
    let f = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let d = |k, r, why| [("kind", k), ("result", r), ("reason", why)];
    assert_eq!(
        value(
            &f,
            "stevedore_decisions_total",
            &d("provisioning", "acted", "pending_pods")
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &f,
            "stevedore_decisions_total",
            &d("disruption", "blocked", "underutilized")
        ),
        Some(1.0)
    );
    assert_eq!(f["stevedore_decision_duration_seconds"].kind, "histogram");
    let k = [("kind", "provisioning")];
    assert_eq!(
        value(&f, "stevedore_decision_duration_seconds_count", &k),
        Some(2.0)
    );
    assert!(close(
        value(&f, "stevedore_decision_duration_seconds_sum", &k),
        0.303
    ));
    // 3 ms falls in le=0.005, 300 ms only from le=0.5.
    assert_eq!(
        value(
            &f,
            "stevedore_decision_duration_seconds_bucket",
            &[("kind", "provisioning"), ("le", "0.005")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &f,
            "stevedore_decision_duration_seconds_bucket",
            &[("kind", "provisioning"), ("le", "0.5")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &f,
            "stevedore_pods_nominated_total",
            &[("nodepool", "general")]
        ),
        Some(15.0)
    );
    let where_ = [
        ("nodepool", "general"),
        ("instance_type", "m5.large"),
        ("capacity_type", "spot"),
        ("zone", "us-east-1a"),
    ];
    assert_eq!(value(&f, "stevedore_launches_total", &where_), Some(1.0));
    let fail = |r| {
        [
            ("nodepool", "general"),
            ("capacity_type", "spot"),
            ("reason", r),
        ]
    };
    assert_eq!(
        value(
            &f,
            "stevedore_launch_failures_total",
            &fail("insufficient_capacity")
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&f, "stevedore_launch_failures_total", &fail("quota")),
        Some(1.0)
    );
    // Only capacity failures mark the offering unavailable.
    assert_eq!(
        value(
            &f,
            "stevedore_offerings_marked_unavailable_total",
            &[
                ("instance_type", "m5.large"),
                ("capacity_type", "spot"),
                ("zone", "us-east-1a")
            ]
        ),
        Some(2.0)
    );
    let op = [("operation", "CreateFleet")];
    assert_eq!(
        value(&f, "stevedore_cloud_request_duration_seconds_count", &op),
        Some(2.0)
    );
    assert_eq!(
        value(&f, "stevedore_cloud_request_errors_total", &op),
        Some(1.0)
    );
    assert_eq!(
        value(
            &f,
            "stevedore_kube_request_errors_total",
            &[("verb", "create"), ("resource", "pods/eviction")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&f, "stevedore_leader", &[]), Some(1.0));
    m.set_leader(false);
    assert_eq!(
        value(&parse(&m.render()).unwrap(), "stevedore_leader", &[]),
        Some(0.0)
    );
}

#[test]
fn label_values_are_escaped_and_read_back() {
    let m = Metrics::new();
    let mut obs = sample_cluster();
    obs.nodes[0].nodepool = Some("we\"ird\\pool".into());
    m.observe_cluster(&obs);
    let f = parse(&m.render()).unwrap();
    assert_eq!(
        value(
            &f,
            "stevedore_nodes_by_state",
            &[("nodepool", "we\"ird\\pool"), ("state", "ready")]
        ),
        Some(1.0)
    );
}

#[test]
fn the_parser_rejects_malformed_expositions() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"v\"} 1\n";
    assert!(parse(ok).is_ok());
    for bad in [
        "a_total 1\n",                                                   // no TYPE
        "# TYPE a_total counter\na_total 1\n",                           // no HELP
        "# HELP a_total x\n# TYPE a_total counter\na_total{l=v} 1\n",    // unquoted
        "# HELP a_total x\n# TYPE a_total counter\na_total 1\na_total 2\n", // duplicate
        "# HELP a_total x\n# TYPE a_total counter\nb_total 1\n",         // wrong family
        "# HELP a_total x\n# TYPE a_total counter\na_total one\n",       // bad number
        "# HELP a_total x\n# TYPE a_total counter\na_total 1",           // no final newline
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}

/// Every family, after every recording method ran once (a labelled family with no series
/// is not exported at all).
fn all_families() -> BTreeMap<String, Family> {
    let m = Metrics::new();
    m.observe_cluster(&sample_cluster());
    m.record_decision(&DecisionRecord {
        kind: DecisionKind::Disruption,
        result: DecisionResult::Acted,
        reason: DecisionReason::Empty,
        duration: Duration::from_millis(1),
        nominated: vec![("general".into(), 1)],
    });
    for outcome in [Ok(()), Err(LaunchFailure::InsufficientCapacity)] {
        m.record_launch(&LaunchRecord {
            nodepool: "general",
            instance_type: "m5.large",
            capacity_type: CapacityType::OnDemand,
            zone: "us-east-1a",
            outcome,
        });
    }
    m.record_cloud_call("CreateFleet", 0.1, false);
    m.record_api_call("patch", "nodes", 0.1, false);
    m.loop_completed("provisioning");
    m.set_drain_waiting(2);
    parse(&m.render()).unwrap()
}

/// Metric names in the first column of docs/metrics.md's tables.
fn documented() -> Vec<String> {
    include_str!("../../docs/metrics.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `stevedore_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("stevedore_{n}"))
        .collect()
}

#[test]
fn the_metrics_reference_documents_exactly_the_exported_families() {
    let families = all_families();
    let docs = documented();
    let exported: Vec<&String> = families.keys().collect();
    let mut sorted_docs = docs.clone();
    sorted_docs.sort();
    sorted_docs.dedup();
    assert_eq!(sorted_docs.len(), docs.len(), "a metric documented twice");
    assert_eq!(
        exported,
        sorted_docs.iter().collect::<Vec<_>>(),
        "docs/metrics.md and the registry disagree"
    );
    // The documented type matches the exported one.
    for line in include_str!("../../docs/metrics.md").lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((name, rest)) = rest.split_once('`') else {
            continue;
        };
        if let Some(fam) = families.get(name) {
            let ty = rest.trim_start_matches(" | ").split([' ', ',']).next();
            assert_eq!(ty, Some(fam.kind.as_str()), "{name} documented as {ty:?}");
        }
    }
}

#[test]
fn the_grafana_dashboard_only_queries_exported_metrics() {
    let families = all_families();
    let dashboard = include_str!("../../charts/stevedore/dashboards/stevedore.json");
    let mut used = 0;
    let mut rest = dashboard;
    while let Some(i) = rest.find("stevedore_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        rest = &tail[end..];
        // `stevedore-overview` (the uid) and the like are not metric names.
        if name == "stevedore_" {
            continue;
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| families.get(*b).is_some_and(|f| f.kind == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            families.contains_key(base),
            "dashboard queries unknown {name}"
        );
        used += 1;
    }
    assert!(
        used >= 20,
        "only {used} metric references found in the dashboard"
    );
}
