//! `spec.headroom` of a NodePool (a stevedore extension; Karpenter has no such field):
//! utilization targets and spare capacity, turned into `core::headroom::HeadroomPolicy`.
//! Kept apart from `nodepool.rs` so the two evolve without touching each other.
//!
//! ```yaml
//! spec:
//!   headroom:
//!     maxUtilization: {cpu: 0.8, memory: 0.85, pods: 0.9}
//!     spare: {cpu: "4", memory: 16Gi, pods: 10, nvidia.com/gpu: 1}
//!     placeholderSize: {cpu: "1", memory: 4Gi}
//! ```

use super::walk::{self, join, Ctx};
use super::yaml::Node;
use crate::core::headroom::HeadroomPolicy;

/// Parses `spec.headroom`; `None` after an error (reported in `ctx`).
pub fn parse(ctx: &mut Ctx, node: &Node) -> Option<HeadroomPolicy> {
    let p = "spec.headroom";
    let before = ctx.errors.len();
    let f = walk::fields(
        ctx,
        node,
        p,
        &["maxUtilization", "spare", "placeholderSize"],
    )?;
    let mut policy = HeadroomPolicy::default();
    if f.get("maxUtilization").is_none() && f.get("spare").is_none() {
        // An empty block is almost certainly a mistake (a field nested one level wrong).
        ctx.err(
            f.line,
            p,
            "headroom needs maxUtilization or spare (or remove the block)",
        );
    }
    if let Some(n) = f.get("maxUtilization") {
        let up = join(p, "maxUtilization");
        if let Some(u) = walk::fields(ctx, n, &up, &["cpu", "memory", "pods"]) {
            let t = &mut policy.max_utilization;
            for (key, slot) in [
                ("cpu", &mut t.cpu),
                ("memory", &mut t.memory),
                ("pods", &mut t.pods),
            ] {
                let Some(v) = u.get(key) else { continue };
                let fp = join(&up, key);
                match walk::float(ctx, v, &fp) {
                    // 0 would ask for infinite spare; 1 means no target, allowed so a
                    // value can be switched off without deleting the line.
                    Some(x) if x > 0.0 && x <= 1.0 => *slot = Some(x),
                    Some(x) => ctx.err(
                        v.line,
                        &fp,
                        format!("{x} is not a ratio above 0 and at most 1 (e.g. 0.8 for 80%)"),
                    ),
                    None => {}
                }
            }
        }
    }
    if let Some(n) = f.get("spare") {
        let sp = join(p, "spare");
        for (name, line, v) in walk::entries(ctx, n, &sp) {
            let fp = join(&sp, name);
            match name {
                "cpu" => policy.spare.cpu_milli = walk::cpu(ctx, v, &fp).unwrap_or(0),
                "memory" => policy.spare.memory = walk::units(ctx, v, &fp).unwrap_or(0),
                "ephemeral-storage" => {
                    policy.spare.ephemeral = walk::units(ctx, v, &fp).unwrap_or(0)
                }
                // A count, written as a quantity like the other resources (`10`, or
                // `"10"` as a NodePool object's int-or-string value comes back).
                "pods" => match walk::units(ctx, v, &fp) {
                    Some(n) if n <= 100_000 => policy.spare.pods = n,
                    Some(n) => ctx.err(
                        v.line,
                        &fp,
                        format!("{n} is out of range (expected 0 to 100000)"),
                    ),
                    None => {}
                },
                _ if name.contains('/') && walk::is_qualified_name(name) => {
                    if let Some(q) = walk::units(ctx, v, &fp) {
                        policy.spare.set_extended(name, q);
                    }
                }
                _ => ctx.err(
                    line,
                    &fp,
                    format!(
                        "unsupported resource {name:?} (expected cpu, memory, \
                         ephemeral-storage, pods or an extended resource such as \
                         nvidia.com/gpu)"
                    ),
                ),
            }
        }
    }
    if let Some(n) = f.get("placeholderSize") {
        let pp = join(p, "placeholderSize");
        if let Some(s) = walk::fields(ctx, n, &pp, &["cpu", "memory"]) {
            if let Some(v) = s.get("cpu") {
                let fp = join(&pp, "cpu");
                match walk::cpu(ctx, v, &fp) {
                    Some(0) => ctx.err(v.line, &fp, "must be above 0"),
                    Some(c) => policy.placeholder_cpu_milli = c,
                    None => {}
                }
            }
            if let Some(v) = s.get("memory") {
                let fp = join(&pp, "memory");
                match walk::units(ctx, v, &fp) {
                    Some(0) => ctx.err(v.line, &fp, "must be above 0"),
                    Some(m) => policy.placeholder_memory = m,
                    None => {}
                }
            }
        }
    }
    (ctx.errors.len() == before).then_some(policy)
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;
    use crate::core::headroom::{HeadroomPolicy, UtilizationTargets};
    use crate::core::resources::{Resources, GPU_NVIDIA};

    fn pool_with(headroom: &str) -> String {
        format!(
            "apiVersion: stevedore.dev/v1\nkind: NodePool\nmetadata:\n  name: web\nspec:\n  \
             template:\n    spec:\n      requirements: []\n  headroom:\n{headroom}"
        )
    }

    #[test]
    fn a_full_headroom_block_loads_into_the_policy() {
        let text = pool_with(
            "    maxUtilization: {cpu: 0.8, memory: 0.85, pods: 0.9}\n    \
             spare: {cpu: \"4\", memory: 16Gi, pods: 10, nvidia.com/gpu: 1}\n    \
             placeholderSize: {cpu: 500m, memory: 2Gi}\n",
        );
        let c = load_str(&text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        let mut spare = Resources::new(4000, 16 << 30, 10);
        spare.set_extended(GPU_NVIDIA, 1);
        assert_eq!(
            c.extras("web").unwrap().headroom,
            Some(HeadroomPolicy {
                max_utilization: UtilizationTargets {
                    cpu: Some(0.8),
                    memory: Some(0.85),
                    pods: Some(0.9),
                },
                spare,
                placeholder_cpu_milli: 500,
                placeholder_memory: 2 << 30,
            })
        );
    }

    #[test]
    fn no_block_means_no_headroom() {
        let text = "apiVersion: stevedore.dev/v1\nkind: NodePool\nmetadata:\n  name: web\n\
                    spec:\n  template:\n    spec: {}\n";
        let c = load_str(text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.extras("web").unwrap().headroom, None);
    }

    #[test]
    fn every_mistake_is_reported_with_its_line_and_path() {
        let text = pool_with(
            "    maxUtilization: {cpu: 0, memory: 1.5, disk: 0.5}\n    \
             spare: {cpu: lots, pods: -1, ephemeral: 1Gi}\n    \
             placeholderSize: {cpu: \"0\"}\n",
        );
        let errs = load_str(&text, "t.yaml").unwrap_err();
        let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
        for want in [
            (10, "spec.headroom.maxUtilization.cpu"),
            (10, "spec.headroom.maxUtilization.memory"),
            (10, "spec.headroom.maxUtilization.disk"),
            (11, "spec.headroom.spare.cpu"),
            (11, "spec.headroom.spare.pods"),
            (11, "spec.headroom.spare.ephemeral"),
            (12, "spec.headroom.placeholderSize.cpu"),
        ] {
            assert!(got.contains(&want), "missing {want:?} in {errs}");
        }
        assert!(errs.iter().all(|e| e.document == "NodePool/web"), "{errs}");
    }

    #[test]
    fn spare_pods_may_be_quoted_as_a_nodepool_object_gives_it_back() {
        let c = load_str(&pool_with("    spare: {pods: \"10\"}\n"), "t.yaml")
            .unwrap_or_else(|e| panic!("{e}"));
        let policy = c.extras("web").unwrap().headroom.clone().unwrap();
        assert_eq!(policy.spare.pods, 10);
        let errs = load_str(&pool_with("    spare: {pods: 200k}\n"), "t.yaml").unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.path == "spec.headroom.spare.pods" && e.message.contains("range")),
            "{errs}"
        );
    }

    #[test]
    fn an_empty_block_is_an_error() {
        let errs = load_str(&pool_with("    {}\n"), "t.yaml").unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.path == "spec.headroom" && e.message.contains("maxUtilization")),
            "{errs}"
        );
    }
}
