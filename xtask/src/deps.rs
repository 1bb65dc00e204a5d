//! The architecture's dependency rules (docs/architecture.md), checked from `cargo metadata`
//! rather than by review: a rule broken fails `cargo xtask ci` naming the crate and the path
//! of dependencies that breaks it. Only normal and build dependencies count: a test may use
//! anything.

use std::collections::{BTreeMap, VecDeque};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// One rule: `package` must not reach any of `forbidden`, except through `through` (a
/// dependency whose own tree is accepted as a whole).
struct Rule {
    package: &'static str,
    forbidden: &'static [&'static str],
    through: &'static [&'static str],
    why: &'static str,
}

/// What every crate that hosts or serves may never bring into the core.
const NOT_IN_CORE: &[&str] = &[
    "axum",
    "tower",
    "tower-http",
    "async-graphql",
    "utoipa",
    "sea-orm",
    "sqlx",
    "wasmtime",
    "libloading",
    "clap",
    "boa_engine",
    "rmcp",
];

/// The kernel's own crates, which plugins and the plugin API never depend on.
const KERNEL: &[&str] = &[
    "ratchet-core",
    "ratchet-front",
    "ratchet-storage",
    "ratchet-plugin-host",
    "ratchet-service",
    "ratchet-server",
    "ratchet-cli",
    "ratchet-views",
    "ratchet-testing",
    "ratchet-rest",
    "ratchet-graphql",
    "ratchet-dashboard",
    "ratchet-mcp",
];

const RULES: &[Rule] = &[
    Rule {
        package: "ratchet-core",
        forbidden: NOT_IN_CORE,
        // The egress client (reqwest) uses tower and tower-http as client middleware.
        through: &["reqwest"],
        why: "the core links no database driver, HTTP server, WASM runtime, CLI parser or JS engine",
    },
    Rule {
        package: "ratchet-front",
        forbidden: &[
            "axum",
            "tower-http",
            "async-graphql",
            "utoipa",
            "sea-orm",
            "sqlx",
            "wasmtime",
            "libloading",
            "boa_engine",
            "rmcp",
            "ratchet-storage",
            "ratchet-plugin-host",
            "ratchet-service",
            "ratchet-server",
            "ratchet-cli",
        ],
        through: &["reqwest"],
        why: "`ratchet` runs run-once on the core alone: no database, server or plugin host in the binary a one-off run starts",
    },
    Rule {
        package: "ratchet-storage",
        forbidden: &["axum", "async-graphql", "utoipa", "wasmtime", "libloading", "clap", "boa_engine"],
        through: &["reqwest"],
        why: "storage knows nothing of the HTTP surfaces, the plugin host or the CLI",
    },
    Rule {
        package: "ratchet-testing",
        forbidden: &[
            "axum",
            "async-graphql",
            "utoipa",
            "sea-orm",
            "sqlx",
            "wasmtime",
            "libloading",
            "clap",
            "boa_engine",
            "ratchet-storage",
            "ratchet-plugin-host",
            "ratchet-service",
        ],
        through: &["reqwest"],
        why: "`ratchet test` runs on the core alone, like run-once: no database, server or plugin host",
    },
    Rule {
        package: "ratchet-plugin-host",
        forbidden: &["axum", "async-graphql", "utoipa", "sea-orm", "sqlx", "clap", "boa_engine"],
        through: &["reqwest"],
        why: "the plugin host knows nothing of storage, the HTTP surfaces or the CLI",
    },
    Rule {
        package: "ratchet-service",
        forbidden: &["axum", "async-graphql", "utoipa", "rmcp", "clap", "boa_engine"],
        through: &["reqwest"],
        why: "the service is the node without its HTTP surfaces or CLI",
    },
    Rule {
        package: "ratchet-server",
        forbidden: &[
            "async-graphql",
            "utoipa-swagger-ui",
            "clap",
            "boa_engine",
            "ratchet-rest",
            "ratchet-graphql",
            "ratchet-dashboard",
            "ratchet-mcp",
            "rmcp",
        ],
        // The views carry their GraphQL derives behind a feature only the GraphQL surface turns
        // on; cargo's feature unification shows it to every dependent of the views.
        through: &["ratchet-views"],
        why: "the server mounts surfaces through one contract; it does not know the built-in ones",
    },
    Rule {
        package: "plugin-api",
        forbidden: KERNEL,
        through: &[],
        why: "the plugin API is the public boundary: it depends on nothing in the kernel",
    },
];

/// The one crate that may link the JS engine.
const JS_WORKER: &str = "boa-worker";

/// Plugins (built-in surfaces excepted) depend on plugin-api only, never on the kernel: the
/// native ones, and the error patterns the kernel links in and the WASM plugin builds.
const PLUGIN_FOLDERS: &[&str] = &["plugins/native/", "plugins/builtin/error-patterns"];

pub fn check() -> anyhow::Result<()> {
    let graph = Graph::load()?;
    let mut broken = Vec::new();
    for rule in RULES {
        broken.extend(graph.violations(rule.package, rule.forbidden, rule.through, rule.why)?);
    }
    for plugin in graph.packages_under(PLUGIN_FOLDERS) {
        broken.extend(graph.violations(&plugin, KERNEL, &[], "plugins depend on plugin-api only")?);
    }
    for member in graph.members.keys().filter(|m| m.as_str() != JS_WORKER) {
        broken.extend(graph.violations(member, &["boa_engine"], &[], "Boa runs only in the worker")?);
    }
    if !broken.is_empty() {
        bail!("dependency rules broken (docs/architecture.md):\n  {}", broken.join("\n  "));
    }
    println!(
        "dependency rules hold ({} rules, {} plugins)",
        RULES.len(),
        graph.packages_under(PLUGIN_FOLDERS).len()
    );
    Ok(())
}

/// The resolved dependency graph: package name to the names it depends on (normal and build).
struct Graph {
    edges: BTreeMap<String, Vec<String>>,
    /// Workspace packages and their manifest folders.
    members: BTreeMap<String, String>,
}

impl Graph {
    fn load() -> anyhow::Result<Graph> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1"])
            .current_dir(crate::root())
            .output()
            .context("cannot run cargo metadata")?;
        if !output.status.success() {
            bail!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let metadata: Value =
            serde_json::from_slice(&output.stdout).context("cargo metadata printed no JSON")?;
        let names: BTreeMap<&str, &str> = metadata["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
            .collect();
        let root = crate::root().display().to_string();
        let members = metadata["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["source"].is_null())
            .filter_map(|p| {
                let manifest = p["manifest_path"].as_str()?;
                let folder =
                    manifest.trim_end_matches("Cargo.toml").trim_start_matches(&root).trim_start_matches('/');
                Some((p["name"].as_str()?.to_owned(), folder.to_owned()))
            })
            .collect();
        let mut edges = BTreeMap::new();
        for node in metadata["resolve"]["nodes"].as_array().into_iter().flatten() {
            let Some(name) = node["id"].as_str().and_then(|id| names.get(id)) else { continue };
            let deps: Vec<String> = node["deps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|dep| {
                    dep["dep_kinds"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|kind| kind["kind"].as_str() != Some("dev"))
                })
                .filter_map(|dep| dep["pkg"].as_str().and_then(|id| names.get(id)).map(|n| (*n).to_owned()))
                .collect();
            edges.entry((*name).to_owned()).or_insert_with(Vec::new).extend(deps);
        }
        Ok(Graph { edges, members })
    }

    fn packages_under(&self, folders: &[&str]) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, folder)| folders.iter().any(|f| folder.starts_with(f)))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Each forbidden package `package` reaches, with the path that reaches it.
    fn violations(
        &self,
        package: &str,
        forbidden: &[&str],
        through: &[&str],
        why: &str,
    ) -> anyhow::Result<Vec<String>> {
        if !self.edges.contains_key(package) {
            bail!(
                "the dependency rules name `{package}`, which is not in the workspace: update xtask/src/deps.rs"
            );
        }
        let mut found = Vec::new();
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([package]);
        while let Some(current) = queue.pop_front() {
            for dep in self.edges.get(current).into_iter().flatten() {
                if parent.contains_key(dep.as_str()) || dep == package {
                    continue;
                }
                parent.insert(dep, current);
                if forbidden.contains(&dep.as_str()) {
                    found.push(format!("{package} reaches {dep} ({}): {why}", path(&parent, package, dep)));
                } else if !through.contains(&dep.as_str()) {
                    queue.push_back(dep);
                }
            }
        }
        Ok(found)
    }
}

/// `package -> ... -> target` from the BFS parents.
fn path(parent: &BTreeMap<&str, &str>, package: &str, target: &str) -> String {
    let mut chain = vec![target];
    let mut at = target;
    while let Some(&up) = parent.get(at) {
        chain.push(up);
        if up == package {
            break;
        }
        at = up;
    }
    chain.reverse();
    chain.join(" -> ")
}
