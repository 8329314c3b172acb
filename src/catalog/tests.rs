use super::*;
use std::time::Instant;

const MIB: i64 = 1 << 20;
const GIB: i64 = 1 << 30;

fn embedded() -> Catalog {
    load_embedded(&CatalogOptions::default()).expect("embedded catalog loads")
}

fn ty<'a>(c: &'a Catalog, name: &str) -> &'a InstanceType {
    &c.types[c.find(name).unwrap_or_else(|| panic!("{name} missing"))]
}

fn label<'a>(t: &'a InstanceType, key: &str) -> Option<&'a str> {
    t.labels.get(key).map(String::as_str)
}

fn json_records() -> Vec<serde_json::Value> {
    serde_json::from_str(EMBEDDED_JSON).unwrap()
}

/// Quantity strings as the Karpenter docs print ephemeral storage ("17Gi", "17936Mi").
fn parse_binary_quantity(s: &str) -> i64 {
    let (num, mult) = if let Some(n) = s.strip_suffix("Gi") {
        (n, GIB)
    } else if let Some(n) = s.strip_suffix("Mi") {
        (n, MIB)
    } else if let Some(n) = s.strip_suffix("Ki") {
        (n, 1024)
    } else {
        (s, 1)
    };
    num.parse::<i64>().unwrap() * mult
}

#[test]
fn loads_every_type_in_file_order() {
    let c = embedded();
    let recs = json_records();
    assert_eq!(c.types.len(), 1377);
    assert_eq!(c.types.len(), recs.len());
    for (t, r) in c.types.iter().zip(&recs) {
        assert_eq!(t.name, r["name"].as_str().unwrap());
    }
    assert_eq!(c.region, "us-east-1");
    assert_eq!(c.zones, vec!["us-east-1a", "us-east-1b", "us-east-1c"]);
}

#[test]
fn load_time_is_printed() {
    // Not asserted: the number is reported (`cargo test --release catalog -- --nocapture`).
    let opts = CatalogOptions::default();
    let _warm = load_embedded(&opts).unwrap();
    let runs = 5;
    let start = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(load_embedded(&opts).unwrap());
    }
    let per = start.elapsed().as_secs_f64() * 1000.0 / runs as f64;
    println!("catalog load_embedded: {per:.2} ms per load (mean of {runs})");
}

/// Computed allocatable versus the `karpenter_allocatable_al2023` column, for every type
/// that has it. The 14 types without the column are named and their reason given.
#[test]
fn allocatable_matches_karpenter_for_every_type() {
    let c = embedded();
    // Extended resources Karpenter lists that stevedore deliberately does not model, and
    // why. Any other key in the column must match exactly.
    let not_modelled: &[(&str, &str)] = &[
        (
            "vpc.amazonaws.com/pod-eni",
            "needs the VPC CNI's security-groups-for-pods mode; pods in traces do not request it",
        ),
        (
            "vpc.amazonaws.com/efa",
            "needs the EFA device plugin; the file has no EFA count outside this column",
        ),
    ];
    let mut matched = 0;
    let mut without_reference = Vec::new();
    let mut mismatches = Vec::new();
    for r in json_records() {
        let name = r["name"].as_str().unwrap();
        let t = ty(&c, name);
        let k = &r["karpenter_allocatable_al2023"];
        if k.is_null() {
            without_reference.push(name.to_string());
            continue;
        }
        let a = &t.allocatable;
        let mut bad = Vec::new();
        if a.cpu_milli != k["cpu_millicores"].as_i64().unwrap() {
            bad.push(format!("cpu {} vs {}", a.cpu_milli, k["cpu_millicores"]));
        }
        if a.memory != k["memory_mib"].as_i64().unwrap() * MIB {
            bad.push(format!(
                "memory {}Mi vs {}",
                a.memory / MIB,
                k["memory_mib"]
            ));
        }
        if a.pods != k["pods"].as_i64().unwrap() {
            bad.push(format!("pods {} vs {}", a.pods, k["pods"]));
        }
        if a.ephemeral != parse_binary_quantity(k["ephemeral_storage"].as_str().unwrap()) {
            bad.push(format!(
                "ephemeral {} vs {}",
                a.ephemeral, k["ephemeral_storage"]
            ));
        }
        for (key, v) in k.as_object().unwrap() {
            if !key.contains('/') || not_modelled.iter().any(|(n, _)| n == key) {
                continue;
            }
            if a.extended(key) != v.as_i64().unwrap() {
                bad.push(format!("{key} {} vs {v}", a.extended(key)));
            }
        }
        for (key, v) in &a.extended {
            if k.get(&**key).is_none() {
                bad.push(format!("{key}={v} not in Karpenter's column"));
            }
        }
        if bad.is_empty() {
            matched += 1;
        } else {
            mismatches.push(format!("{name}: {}", bad.join(", ")));
        }
    }
    println!(
        "allocatable: {matched} types match Karpenter's column exactly (cpu, memory, pods, \
         ephemeral, GPU/Neuron extended resources); {} have no reference",
        without_reference.len()
    );
    assert!(
        mismatches.is_empty(),
        "mismatches:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(matched, 1363);
    // Exceptions: these 14 come only from cluster-autoscaler's table (README
    // `field_sources.specs = cluster-autoscaler`), which Karpenter's generated docs do not
    // cover, so there is nothing to compare against. Their allocatable is computed with the
    // same formula.
    let mut expected = vec![
        "dl1.24xlarge",
        "f1.16xlarge",
        "f1.2xlarge",
        "f1.4xlarge",
        "mac-m4.metal",
        "mac-m4pro.metal",
        "mac1.metal",
        "mac2.metal",
        "mac2-m1ultra.metal",
        "mac2-m2.metal",
        "mac2-m2pro.metal",
        "p3.16xlarge",
        "p3.2xlarge",
        "p3.8xlarge",
    ];
    expected.sort();
    without_reference.sort();
    assert_eq!(without_reference, expected);
}

#[test]
fn capacity_is_raw_specs() {
    let c = embedded();
    let t = ty(&c, "p5.48xlarge");
    assert_eq!(t.capacity.cpu_milli, 192_000);
    assert_eq!(t.capacity.memory, 2_097_152 * MIB);
    assert_eq!(t.capacity.pods, 100);
    assert_eq!(t.capacity.ephemeral, 20 * GIB);
    assert_eq!(t.capacity.extended(GPU_NVIDIA), 8);
    assert_eq!(t.allocatable.extended(GPU_NVIDIA), 8);
    let g = ty(&c, "g4ad.xlarge");
    assert_eq!(g.capacity.extended(GPU_AMD), 1);
    assert_eq!(g.capacity.extended(GPU_NVIDIA), 0);
    let inf = ty(&c, "inf2.xlarge");
    assert_eq!(inf.allocatable.extended(NEURON), 1);
    assert_eq!(inf.allocatable.extended(NEURON_CORE), 2);
    // GPU manufacturer unknown in the file: no device resource, but the count label.
    let p3 = ty(&c, "p3.2xlarge");
    assert!(p3.allocatable.extended.is_empty());
    assert_eq!(label(p3, "karpenter.k8s.aws/instance-gpu-count"), Some("1"));
    assert_eq!(label(p3, "karpenter.k8s.aws/instance-gpu-name"), None);
    // Qualcomm accelerators: labels only.
    let dl2q = ty(&c, "dl2q.24xlarge");
    assert!(dl2q.allocatable.extended.is_empty());
    assert_eq!(
        label(dl2q, "karpenter.k8s.aws/instance-accelerator-name"),
        Some("qualcomm-ai100")
    );
    // Graviton: 64 MiB CMA before the VM overhead. t4g.nano has 512 MiB, 4 pods.
    let nano = ty(&c, "t4g.nano");
    let visible: i64 = 512 - 64;
    let expect = visible - (visible * 3 + 39) / 40 - (11 * 4 + 255) - 100;
    assert_eq!(nano.allocatable.memory, expect * MIB);
}

#[test]
fn labels() {
    let c = embedded();
    let m5 = ty(&c, "m5.large");
    let expect = [
        ("node.kubernetes.io/instance-type", "m5.large"),
        ("beta.kubernetes.io/instance-type", "m5.large"),
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/os", "linux"),
        ("karpenter.k8s.aws/instance-family", "m5"),
        ("karpenter.k8s.aws/instance-category", "m"),
        ("karpenter.k8s.aws/instance-generation", "5"),
        ("karpenter.k8s.aws/instance-size", "large"),
        ("karpenter.k8s.aws/instance-cpu", "2"),
        ("karpenter.k8s.aws/instance-memory", "8192"),
        ("karpenter.k8s.aws/instance-hypervisor", "nitro"),
        ("karpenter.k8s.aws/instance-cpu-manufacturer", "intel"),
        ("stevedore.dev/instance-family", "m5"),
        ("stevedore.dev/instance-memory", "8192"),
    ];
    for (k, v) in expect {
        assert_eq!(label(m5, k), Some(v), "{k}");
    }
    assert_eq!(label(m5, "karpenter.k8s.aws/instance-gpu-count"), None);
    assert_eq!(label(m5, "karpenter.k8s.aws/instance-gpu-name"), None);

    let p5 = ty(&c, "p5.48xlarge");
    for prefix in ["karpenter.k8s.aws/", "stevedore.dev/"] {
        assert_eq!(
            label(p5, &format!("{prefix}instance-gpu-name")),
            Some("h100")
        );
        assert_eq!(label(p5, &format!("{prefix}instance-gpu-count")), Some("8"));
        assert_eq!(
            label(p5, &format!("{prefix}instance-gpu-manufacturer")),
            Some("nvidia")
        );
    }
    let inf = ty(&c, "inf2.xlarge");
    assert_eq!(
        label(inf, "karpenter.k8s.aws/instance-accelerator-name"),
        Some("inferentia2")
    );
    assert_eq!(
        label(inf, "karpenter.k8s.aws/instance-accelerator-count"),
        Some("1")
    );
    assert_eq!(
        label(inf, "karpenter.k8s.aws/instance-accelerator-manufacturer"),
        Some("aws")
    );

    assert_eq!(
        label(ty(&c, "t4g.micro"), "kubernetes.io/arch"),
        Some("arm64")
    );
    // Bare metal: hypervisor unknown, so no label.
    assert_eq!(
        label(ty(&c, "a1.metal"), "karpenter.k8s.aws/instance-hypervisor"),
        None
    );
    // Every attribute of every type is written under both prefixes, with the same value.
    for t in &c.types {
        for attr in labels::INSTANCE_ATTRIBUTES {
            let k = t.labels.get(&format!("karpenter.k8s.aws/{attr}"));
            let s = t.labels.get(&format!("stevedore.dev/{attr}"));
            assert_eq!(k, s, "{} {attr}", t.name);
        }
        for attr in ["instance-family", "instance-cpu", "instance-memory"] {
            assert!(
                t.labels.contains_key(&format!("stevedore.dev/{attr}")),
                "{}",
                t.name
            );
        }
    }
    // A type whose record lacks category/generation/size gets them from its name.
    let p3 = ty(&c, "p3.8xlarge");
    assert_eq!(label(p3, "karpenter.k8s.aws/instance-category"), Some("p"));
    assert_eq!(
        label(p3, "karpenter.k8s.aws/instance-generation"),
        Some("3")
    );
    assert_eq!(
        label(p3, "karpenter.k8s.aws/instance-size"),
        Some("8xlarge")
    );
}

#[test]
fn name_parsing_agrees_with_file() {
    let mut checked = 0;
    for r in json_records() {
        let name = r["name"].as_str().unwrap();
        if let Some(cat) = r.get("category").and_then(|v| v.as_str()) {
            let gen = r["generation"].as_i64().unwrap();
            assert_eq!(category_and_generation(name), Some((cat, gen)), "{name}");
            assert_eq!(name.split_once('.').unwrap().1, r["size"].as_str().unwrap());
            checked += 1;
        }
    }
    assert_eq!(checked, 1363);
    assert_eq!(category_and_generation("u-6tb1.metal"), Some(("u", 1)));
    assert_eq!(category_and_generation("mac-m4.metal"), None);
    assert_eq!(category_and_generation("mac2-m2.metal"), Some(("mac", 2)));
}

#[test]
fn offerings_from_prices() {
    let c = embedded();
    let m5 = ty(&c, "m5.large");
    assert_eq!(m5.offerings.len(), 6);
    for z in 0..3 {
        let od: Vec<_> = m5
            .offerings
            .iter()
            .filter(|o| o.zone == z && o.capacity_type == CapacityType::OnDemand)
            .collect();
        let spot: Vec<_> = m5
            .offerings
            .iter()
            .filter(|o| o.zone == z && o.capacity_type == CapacityType::Spot)
            .collect();
        assert_eq!(od.len(), 1);
        assert_eq!(spot.len(), 1);
        assert_eq!(od[0].price_per_hour, 0.096);
        assert_eq!(spot[0].price_per_hour, 0.03264);
    }
    // No on-demand price and no Spot estimate: no offering.
    assert!(ty(&c, "dl2q.24xlarge").offerings.is_empty());
    // Counts: 1,352 on-demand and 890 Spot-priced types in us-east-1.
    let count = |ct: CapacityType| {
        c.types
            .iter()
            .filter(|t| t.offerings.iter().any(|o| o.capacity_type == ct))
            .count()
    };
    assert_eq!(count(CapacityType::OnDemand), 1352);
    assert_eq!(count(CapacityType::Spot), 890);
    assert_eq!(
        c.types.iter().filter(|t| t.offerings.is_empty()).count(),
        25
    );
}

#[test]
fn spot_overrides() {
    let opts = CatalogOptions {
        spot_price_overrides: vec![
            SpotPriceOverride {
                instance_type: "m5.large".into(),
                zone: Some("us-east-1b".into()),
                price_per_hour: 0.02,
            },
            SpotPriceOverride {
                instance_type: "m5.large".into(),
                zone: None,
                price_per_hour: 0.03,
            },
            // dl2q.24xlarge has no Spot estimate: the override creates the offering.
            SpotPriceOverride {
                instance_type: "dl2q.24xlarge".into(),
                zone: Some("us-east-1c".into()),
                price_per_hour: 3.5,
            },
        ],
        ..CatalogOptions::default()
    };
    let c = load_embedded(&opts).unwrap();
    let spot = |t: &InstanceType, z: usize| {
        t.offerings
            .iter()
            .find(|o| o.zone == z && o.capacity_type == CapacityType::Spot)
            .map(|o| o.price_per_hour)
    };
    let m5 = ty(&c, "m5.large");
    assert_eq!(spot(m5, 0), Some(0.03));
    assert_eq!(spot(m5, 1), Some(0.02)); // zone-specific beats type-wide
    assert_eq!(spot(m5, 2), Some(0.03));
    let dl2q = ty(&c, "dl2q.24xlarge");
    assert_eq!(dl2q.offerings.len(), 1);
    assert_eq!(spot(dl2q, 2), Some(3.5));
}

#[test]
fn other_regions_have_no_prices_without_overrides() {
    let opts = CatalogOptions {
        region: "eu-west-1".into(),
        zones: vec!["eu-west-1a".into()],
        spot_price_overrides: vec![SpotPriceOverride {
            instance_type: "c6g.large".into(),
            zone: None,
            price_per_hour: 0.03,
        }],
        ..CatalogOptions::default()
    };
    let c = load_embedded(&opts).unwrap();
    assert_eq!(c.region, "eu-west-1");
    let priced: Vec<_> = c.types.iter().filter(|t| !t.offerings.is_empty()).collect();
    assert_eq!(priced.len(), 1);
    assert_eq!(priced[0].name, "c6g.large");
}

#[test]
fn errors_name_the_source_type_and_field() {
    let opts = CatalogOptions::default();
    let e = parse("[{", "x.json", &opts).unwrap_err().to_string();
    assert!(e.starts_with("x.json:"), "{e}");

    let e = parse(
        r#"[{"name": "z1.big", "memory_mib": 1024, "architecture": "x86_64", "max_pods": 8}]"#,
        "y.json",
        &opts,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("y.json") && e.contains("z1.big") && e.contains("vcpu"),
        "{e}"
    );

    let e = parse(
        r#"[{"name": "z1.big", "vcpu": 2, "memory_mib": 1024, "architecture": "sparc", "max_pods": 8}]"#,
        "y.json",
        &opts,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("architecture") && e.contains("sparc"), "{e}");

    let one = r#"{"name": "z1.big", "vcpu": 2, "memory_mib": 1024, "architecture": "x86_64", "max_pods": 8}"#;
    let e = parse(&format!("[{one},{one}]"), "d.json", &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than once") && e.contains("z1.big"), "{e}");
    assert!(matches!(
        parse("[]", "e.json", &opts),
        Err(CatalogError::Empty { .. })
    ));

    let bad_override = |o: SpotPriceOverride| {
        let opts = CatalogOptions {
            spot_price_overrides: vec![o],
            ..CatalogOptions::default()
        };
        load_embedded(&opts).unwrap_err().to_string()
    };
    let e = bad_override(SpotPriceOverride {
        instance_type: "m99.huge".into(),
        zone: None,
        price_per_hour: 1.0,
    });
    assert!(e.contains("m99.huge"), "{e}");
    let e = bad_override(SpotPriceOverride {
        instance_type: "m5.large".into(),
        zone: Some("us-west-2a".into()),
        price_per_hour: 1.0,
    });
    assert!(e.contains("us-west-2a") && e.contains("m5.large"), "{e}");
    let e = bad_override(SpotPriceOverride {
        instance_type: "m5.large".into(),
        zone: None,
        price_per_hour: f64::NAN,
    });
    assert!(e.contains("m5.large") && e.contains("price"), "{e}");

    let no_zones = CatalogOptions {
        zones: vec![],
        ..CatalogOptions::default()
    };
    assert!(matches!(
        load_embedded(&no_zones),
        Err(CatalogError::NoZones { .. })
    ));
}

#[test]
fn minimal_record_parses() {
    let json = r#"[{"name": "z1.big", "vcpu": 4, "memory_mib": 16384, "architecture": "arm64",
        "max_pods": 58, "on_demand_price_usd_per_hour": {"us-east-1": 0.5}}]"#;
    let c = parse(json, "min.json", &CatalogOptions::default()).unwrap();
    let t = &c.types[0];
    assert_eq!(t.offerings.len(), 3);
    assert_eq!(label(t, "karpenter.k8s.aws/instance-family"), Some("z1"));
    assert_eq!(label(t, "karpenter.k8s.aws/instance-category"), Some("z"));
    assert_eq!(t.allocatable.cpu_milli, 3920);
}
