//! Configuration files: Kubernetes-style YAML documents (`kind: NodePool`, the Karpenter
//! v1 shape, and `kind: Settings`), validated with every error reported at once, each
//! with its file, line and field path. See docs/configuration.md.
//!
//! ```no_run
//! let config = stevedore::config::load_path(std::path::Path::new("config/"))
//!     .unwrap_or_else(|errors| panic!("{errors}"));
//! # let _ = config;
//! ```

mod aws;
mod disruption;
mod error;
mod headroom;
mod nodepool;
mod pdb;
mod settings;
mod walk;
mod yaml;

pub use aws::{AmiSelector, AwsSettings, RootVolume};
pub use error::{ConfigError, ConfigErrors};
pub use nodepool::{
    is_well_known_key, ConsolidationPolicy, NodePoolExtras, DEFAULT_CONSOLIDATE_AFTER,
    DEFAULT_EXPIRE_AFTER,
};
pub use settings::{
    eks_default_daemon_sets, BootDelay, DaemonSet, NodeGroup, NodeGroupScaleDown, Overhead,
    Settings, SpotPriceOverride,
};

use crate::core::nodepool::NodePool;
use crate::core::pdb::PodDisruptionBudget;
pub use pdb::PDB_API_VERSION;
use std::path::Path;
use walk::Ctx;
use yaml::{Node, Value};

/// The API version every document carries.
pub const API_VERSION: &str = "stevedore.dev/v1";
/// Also accepted on `kind: NodePool`, so Karpenter NodePools load unchanged.
pub const KARPENTER_API_VERSION: &str = "karpenter.sh/v1";

/// The bundled default configuration's text (`config/stevedore.yaml`).
pub const BUNDLED_YAML: &str = include_str!("../../config/stevedore.yaml");
/// The name the bundled configuration reports errors under.
pub const BUNDLED_NAME: &str = "config/stevedore.yaml";

/// A loaded, validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The `kind: Settings` document, or `Settings::default()` when there is none.
    pub settings: Settings,
    /// Node pools sorted by weight (highest first), then name.
    pub node_pools: Vec<NodePool>,
    /// What each pool's document says beyond `NodePool`; `pool_extras[i]` belongs to
    /// `node_pools[i]`.
    pub pool_extras: Vec<NodePoolExtras>,
    /// `kind: PodDisruptionBudget` documents (`policy/v1`): the simulator's evictions
    /// respect them (the controller reads the cluster's own).
    pub pdbs: Vec<PodDisruptionBudget>,
}

impl Config {
    pub fn node_pool(&self, name: &str) -> Option<&NodePool> {
        self.node_pools.iter().find(|p| p.name == name)
    }

    pub fn extras(&self, pool: &str) -> Option<&NodePoolExtras> {
        self.pool_extras.iter().find(|e| e.name == pool)
    }
}

/// The bundled default configuration.
pub fn bundled() -> Config {
    match load_str(BUNDLED_YAML, BUNDLED_NAME) {
        Ok(c) => c,
        Err(e) => panic!("the bundled configuration is invalid:\n{e}"),
    }
}

/// Loads one YAML file, or every `*.yaml`/`*.yml` file of a directory (sorted by name,
/// not recursing), as one configuration.
pub fn load_path(path: &Path) -> Result<Config, ConfigErrors> {
    let io_error = |p: &Path, message: String| ConfigErrors {
        errors: vec![ConfigError {
            file: p.display().to_string(),
            line: 0,
            document: String::new(),
            path: String::new(),
            message,
        }],
    };
    let files = if path.is_dir() {
        let entries = std::fs::read_dir(path)
            .map_err(|e| io_error(path, format!("cannot read directory: {e}")))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(path, format!("cannot read directory: {e}")))?;
            let p = entry.path();
            let is_yaml = p.extension().is_some_and(|x| x == "yaml" || x == "yml");
            if is_yaml && !p.is_dir() {
                files.push(p);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(io_error(
                path,
                "no *.yaml or *.yml files in directory".into(),
            ));
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut loader = Loader::default();
    for f in &files {
        let name = f.display().to_string();
        loader.files.push(name.clone());
        match std::fs::read(f) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => loader.add(&text, &name),
                Err(_) => loader
                    .errors
                    .push(io_error(f, "not UTF-8 text".into()).errors.remove(0)),
            },
            Err(e) => loader
                .errors
                .push(io_error(f, format!("cannot read: {e}")).errors.remove(0)),
        }
    }
    loader.finish()
}

/// Loads configuration text; `source_name` names it in errors.
pub fn load_str(text: &str, source_name: &str) -> Result<Config, ConfigErrors> {
    let mut loader = Loader::default();
    loader.add(text, source_name);
    loader.finish()
}

#[derive(Default)]
struct Loader {
    /// Files in load order.
    files: Vec<String>,
    errors: Vec<ConfigError>,
    settings: Option<(Settings, String, usize)>,
    pools: Vec<(NodePool, NodePoolExtras)>,
    pdbs: Vec<(PodDisruptionBudget, String, usize)>,
}

fn scalar_field<'n>(root: &'n Node, key: &str) -> Option<(&'n str, usize)> {
    let Value::Map(pairs) = &root.value else {
        return None;
    };
    pairs.iter().find_map(|(k, v)| match (&k.value, &v.value) {
        (Value::Scalar { text, .. }, Value::Scalar { text: val, .. }) if text == key => {
            Some((val.as_str(), v.line))
        }
        _ => None,
    })
}

impl Loader {
    fn add(&mut self, text: &str, file: &str) {
        self.files.push(file.to_string());
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let (docs, syntax) = yaml::parse_documents(text);
        for (i, doc) in docs.iter().enumerate() {
            self.document(&doc.root, file, i + 1);
        }
        if let Some(e) = syntax {
            self.errors.push(ConfigError {
                file: file.to_string(),
                line: e.line,
                document: String::new(),
                path: String::new(),
                message: format!("YAML syntax error: {}", e.message),
            });
        }
    }

    fn document(&mut self, root: &Node, file: &str, number: usize) {
        if root.is_null() {
            return; // an empty document (comments only, a trailing `---`)
        }
        let mut ctx = Ctx {
            file,
            doc: format!("document {number}"),
            errors: &mut self.errors,
        };
        if !matches!(root.value, Value::Map(_)) {
            ctx.err(
                root.line,
                "",
                format!(
                    "expected a mapping with apiVersion and kind, got {}",
                    root.kind()
                ),
            );
            return;
        }
        let kind = scalar_field(root, "kind");
        let api = scalar_field(root, "apiVersion");
        match kind {
            Some(("NodePool", _)) => {
                if let Some(name) = nodepool::peek_name(root) {
                    ctx.doc = format!("NodePool/{name}");
                } else {
                    ctx.doc = "NodePool".into();
                }
            }
            Some(("Settings", _)) => ctx.doc = "Settings".into(),
            Some(("PodDisruptionBudget", _)) => {
                let name = nodepool::peek_name(root).unwrap_or_default();
                ctx.doc = format!("PodDisruptionBudget/{name}");
            }
            _ => {}
        }
        let kind_name = kind.map(|(k, _)| k);
        match api {
            None => ctx.err(root.line, "", "missing required field \"apiVersion\""),
            Some((API_VERSION, _)) => {}
            Some((KARPENTER_API_VERSION, _)) if kind_name == Some("NodePool") => {}
            Some((PDB_API_VERSION, _)) if kind_name == Some("PodDisruptionBudget") => {}
            Some((v, line)) if kind_name == Some("PodDisruptionBudget") => ctx.err(
                line,
                "apiVersion",
                format!("unsupported apiVersion {v:?} (expected {PDB_API_VERSION})"),
            ),
            Some((v, line)) => ctx.err(
                line,
                "apiVersion",
                format!("unsupported apiVersion {v:?} (expected {API_VERSION})"),
            ),
        }
        match kind {
            None => ctx.err(root.line, "", "missing required field \"kind\""),
            Some(("NodePool", _)) => {
                if let Some(p) = nodepool::parse(&mut ctx, root) {
                    self.pools.push(p);
                }
            }
            Some(("Settings", line)) => {
                let s = settings::parse(&mut ctx, root);
                if let Some((_, f, l)) = &self.settings {
                    let msg = format!(
                        "more than one Settings document (the first is at {f}:{l}); merge them"
                    );
                    ctx.err(line, "kind", msg);
                } else {
                    self.settings = Some((s, file.to_string(), line));
                }
            }
            Some(("PodDisruptionBudget", line)) => {
                if let Some(p) = pdb::parse(&mut ctx, root) {
                    self.pdbs.push((p, file.to_string(), line));
                }
            }
            Some((k, line)) => ctx.err(
                line,
                "kind",
                format!("unknown kind {k:?} (expected NodePool, Settings or PodDisruptionBudget)"),
            ),
        }
    }

    fn finish(mut self) -> Result<Config, ConfigErrors> {
        // Duplicate pool names, across documents and files.
        for i in 0..self.pools.len() {
            let (a, b) = self.pools.split_at(i);
            let e = &b[0].1;
            if let Some((_, first)) = a.iter().find(|(_, x)| x.name == e.name) {
                self.errors.push(ConfigError {
                    file: e.file.clone(),
                    line: e.line,
                    document: format!("NodePool/{}", e.name),
                    path: "metadata.name".into(),
                    message: format!(
                        "duplicate NodePool name (first defined at {}:{})",
                        first.file, first.line
                    ),
                });
            }
        }
        for i in 0..self.pdbs.len() {
            let (a, b) = self.pdbs.split_at(i);
            let (p, file, line) = &b[0];
            let same = |(q, _, _): &&(PodDisruptionBudget, String, usize)| {
                q.namespace == p.namespace && q.name == p.name
            };
            if let Some((_, f0, l0)) = a.iter().find(same) {
                self.errors.push(ConfigError {
                    file: file.clone(),
                    line: *line,
                    document: format!("PodDisruptionBudget/{}", p.name),
                    path: "metadata.name".into(),
                    message: format!(
                        "duplicate PodDisruptionBudget {}/{} (first defined at {f0}:{l0})",
                        p.namespace, p.name
                    ),
                });
            }
        }
        if !self.errors.is_empty() {
            // By file in load order, then line (the sort is stable).
            let files = &self.files;
            self.errors.sort_by_key(|e| {
                (
                    files
                        .iter()
                        .position(|f| *f == e.file)
                        .unwrap_or(usize::MAX),
                    e.line,
                )
            });
            return Err(ConfigErrors {
                errors: self.errors,
            });
        }
        let mut pools = self.pools;
        pools.sort_by(|(a, _), (b, _)| b.weight.cmp(&a.weight).then_with(|| a.name.cmp(&b.name)));
        let (node_pools, pool_extras) = pools.into_iter().unzip();
        Ok(Config {
            settings: self.settings.map(|(s, _, _)| s).unwrap_or_default(),
            node_pools,
            pool_extras,
            pdbs: self.pdbs.into_iter().map(|(p, _, _)| p).collect(),
        })
    }
}
