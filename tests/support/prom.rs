//! A strict parser of the Prometheus text exposition format (0.0.4): a malformed line, a
//! missing HELP or TYPE, a sample outside its family, a duplicate series or a
//! non-cumulative histogram fails. Shared by the metrics unit tests (src/metrics/tests.rs)
//! and the controller's scrape over HTTP (tests/controller.rs).
#![allow(dead_code)] // each user needs a different part

use std::collections::BTreeMap;

#[derive(Debug)]
pub struct Family {
    pub kind: String,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub fn valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

pub fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

pub fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// `name{a="x",b="y"} value`; returns the sample.
pub fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        loop {
            // label name up to '='
            let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            if r[start..].starts_with('}') {
                chars.next();
                break;
            }
            let eq = r[start..].find('=').ok_or("label without '='")? + start;
            let lname = &r[start..eq];
            if !valid_label_name(lname) {
                return Err(format!("bad label name {lname:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {lname} value not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    '"' => break,
                    '\n' => return Err("newline in label value".into()),
                    c => value.push(c),
                }
            }
            if labels.insert(lname.to_string(), value).is_some() {
                return Err(format!("label {lname} repeated"));
            }
            match chars.next().map(|(_, c)| c) {
                Some(',') => {}
                Some('}') => break,
                other => return Err(format!("expected ',' or '}}', got {other:?}")),
            }
        }
        let consumed = chars.peek().map_or(r.len(), |(i, _)| *i);
        rest = &r[consumed..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before value in {line:?}"))?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().unwrap_or(""))?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err(format!("trailing text in {line:?}"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses a whole exposition strictly: HELP then TYPE before a family's samples, each
/// family declared once, samples named after the family they follow, no duplicate series,
/// histograms cumulative with `+Inf` equal to `_count`.
pub fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("exposition does not end with a newline".into());
    }
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut helped: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    for (no, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", no + 1);
        if let Some(h) = line.strip_prefix("# HELP ") {
            let n = h.split(' ').next().unwrap_or("");
            if !valid_metric_name(n) || families.contains_key(n) {
                return Err(err(format!("bad or repeated HELP for {n}")));
            }
            helped = Some(n.to_string());
            continue;
        }
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut p = t.split(' ');
            let (n, k) = (p.next().unwrap_or(""), p.next().unwrap_or(""));
            if p.next().is_some()
                || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&k)
            {
                return Err(err("bad TYPE line".into()));
            }
            if helped.as_deref() != Some(n) {
                return Err(err(format!("TYPE for {n} without its HELP just before")));
            }
            if families.contains_key(n) {
                return Err(err(format!("{n} declared twice")));
            }
            families.insert(
                n.to_string(),
                Family {
                    kind: k.to_string(),
                    samples: Vec::new(),
                },
            );
            current = Some(n.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(err("unexpected comment or blank line".into()));
        }
        let s = parse_sample(line).map_err(err)?;
        let fam_name = current
            .clone()
            .ok_or_else(|| err("sample before any TYPE".into()))?;
        let fam = families.get_mut(&fam_name).expect("current family exists");
        let ok_name = match fam.kind.as_str() {
            "histogram" => [
                fam_name.clone(),
                format!("{fam_name}_bucket"),
                format!("{fam_name}_sum"),
                format!("{fam_name}_count"),
            ]
            .contains(&s.name),
            _ => s.name == fam_name,
        };
        if !ok_name || s.name == fam_name && fam.kind == "histogram" {
            return Err(err(format!(
                "sample {} does not belong to {fam_name}",
                s.name
            )));
        }
        if s.name.ends_with("_bucket") != s.labels.contains_key("le") {
            return Err(err("le label only and always on buckets".into()));
        }
        let key = format!("{}{:?}", s.name, s.labels);
        if !seen.insert(key) {
            return Err(err("duplicate series".into()));
        }
        fam.samples.push(s);
    }
    for (n, f) in &families {
        if f.kind == "histogram" {
            check_histogram(n, f)?;
        }
    }
    Ok(families)
}

pub fn check_histogram(name: &str, f: &Family) -> Result<(), String> {
    // Group buckets by their labels without `le`.
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for s in &f.samples {
        let mut l = s.labels.clone();
        let le = l.remove("le");
        let key = format!("{l:?}");
        if let Some(le) = le {
            series
                .entry(key)
                .or_default()
                .push((parse_value(&le)?, s.value));
        } else if s.name.ends_with("_count") {
            counts.insert(key, s.value);
        }
    }
    for (k, buckets) in &series {
        let mut prev = (f64::NEG_INFINITY, 0.0);
        for &(le, v) in buckets {
            if le <= prev.0 || v < prev.1 {
                return Err(format!("{name}{k}: buckets not increasing/cumulative"));
            }
            prev = (le, v);
        }
        if prev.0 != f64::INFINITY || Some(&prev.1) != counts.get(k) {
            return Err(format!("{name}{k}: +Inf bucket missing or != _count"));
        }
    }
    Ok(())
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The value of the one sample named `name` with exactly these labels.
pub fn value(f: &BTreeMap<String, Family>, name: &str, l: &[(&str, &str)]) -> Option<f64> {
    let want = labels(l);
    f.values()
        .flat_map(|fam| &fam.samples)
        .find(|s| s.name == name && s.labels == want)
        .map(|s| s.value)
}

pub fn series(f: &BTreeMap<String, Family>, name: &str) -> Vec<Sample> {
    f.values()
        .flat_map(|fam| &fam.samples)
        .filter(|s| s.name == name)
        .cloned()
        .collect()
}
