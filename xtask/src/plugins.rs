//! `cargo xtask build-plugins`: the WASM plugins under `plugins/wasm`, for wasm32-wasip2, copied
//! to `target/plugins/NAME.wasm`; and the check that a released WIT version never changes.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::root;

pub const TARGET: &str = "wasm32-wasip2";

/// Builds every WASM plugin; returns the paths of the components.
pub fn build() -> anyhow::Result<Vec<PathBuf>> {
    ensure_target()?;
    let workspace = root().join("plugins/wasm");
    let target_dir = root().join("target/wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("$ cargo build --release --target {TARGET} (in plugins/wasm)");
    let status = Command::new(&cargo)
        .args(["build", "--release", "--target", TARGET, "--workspace"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&workspace)
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("building the WASM plugins failed ({status})");
    }
    let built = target_dir.join(TARGET).join("release");
    let out = root().join("target/plugins");
    std::fs::create_dir_all(&out)?;
    let mut components = Vec::new();
    for entry in std::fs::read_dir(&built)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let destination = out.join(entry.file_name().to_string_lossy().replace('_', "-"));
            std::fs::copy(&path, &destination)
                .with_context(|| format!("cannot copy {} to {}", path.display(), destination.display()))?;
            println!("  {}", destination.display());
            components.push(destination);
        }
    }
    if components.is_empty() {
        bail!("the plugin build produced no .wasm files in {}", built.display());
    }
    Ok(components)
}

/// Installs the wasm32-wasip2 target when it is missing, failing loudly when it cannot.
fn ensure_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to install the wasm32-wasip2 target")?;
    if String::from_utf8_lossy(&installed.stdout).lines().any(|l| l.trim() == TARGET) {
        return Ok(());
    }
    println!("$ rustup target add {TARGET}");
    let status = Command::new("rustup").args(["target", "add", TARGET]).status()?;
    if !status.success() {
        bail!("`rustup target add {TARGET}` failed: the WASM plugins cannot be built without it");
    }
    Ok(())
}

/// Every released WIT version has its digest in `wit/FROZEN`; a folder whose files no longer
/// match was edited after release.
pub fn check_frozen() -> anyhow::Result<()> {
    let wit = root().join("wit");
    let frozen = std::fs::read_to_string(wit.join("FROZEN")).context("wit/FROZEN is missing")?;
    for line in frozen.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (folder, digest) =
            line.split_once(char::is_whitespace).context("wit/FROZEN: `FOLDER DIGEST` per line")?;
        let actual = folder_digest(&wit.join(folder.trim()))?;
        if actual != digest.trim() {
            bail!(
                "wit/{folder} is a released WIT version and changed (digest {actual}, frozen {}). \
                 Put the change in a new version folder instead.",
                digest.trim()
            );
        }
    }
    println!("wit: released versions unchanged");
    Ok(())
}

/// FNV-1a over the sorted file names and contents of a folder.
pub fn folder_digest(folder: &std::path::Path) -> anyhow::Result<String> {
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(folder)
        .with_context(|| format!("cannot read {}", folder.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    files.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, file) in files {
        let contents = std::fs::read(&file)?;
        for byte in name.as_bytes().iter().chain([0u8].iter()).chain(contents.iter()) {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(format!("{hash:016x}"))
}

/// `cargo xtask new-plugin NAME --kind KIND [--lang rust|python|js] [--path DIR]`: a plugin
/// that builds, loads and passes `ratchet plugins test` as generated. Without `--path` a Rust
/// plugin joins `plugins/wasm`, a Python or JavaScript one `plugins/python` or `plugins/js`.
pub fn scaffold(args: &[String]) -> anyhow::Result<()> {
    let usage = "usage: cargo xtask new-plugin NAME --kind sink|error-pattern|auth|api-surface|loader \
                 [--lang rust|python|js] [--path DIR]";
    let name = args.first().filter(|n| !n.starts_with('-')).context(usage)?.clone();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let kind = value("--kind").context(usage)?;
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') || name.is_empty() {
        bail!("the plugin name `{name}` must be lowercase letters, digits and dashes");
    }
    let template = match kind.as_str() {
        "sink" => SINK_TEMPLATE,
        "error-pattern" => ERROR_PATTERN_TEMPLATE,
        "auth" => AUTH_TEMPLATE,
        "api-surface" => API_SURFACE_TEMPLATE,
        "loader" => LOADER_TEMPLATE,
        _ => bail!(
            "`--kind {kind}` is not a plugin kind; use sink, error-pattern, auth, api-surface or loader"
        ),
    };
    let standalone = value("--path").map(PathBuf::from);
    if let Some(lang) = crate::foreign::Lang::parse(value("--lang").as_deref().unwrap_or("rust"))? {
        let dir = standalone.clone().unwrap_or_else(|| crate::foreign::default_dir(lang, &name));
        if dir.exists() {
            bail!("{} already exists", dir.display());
        }
        crate::foreign::scaffold(&name, &kind, lang, &dir, standalone.is_some())?;
        println!("created the {kind} plugin {name} in {}", dir.display());
        println!("build it:  (cd {} && {})", dir.display(), crate::foreign::build_hint(lang));
        println!("check it:  ratchet plugins test {}", dir.join(format!("{name}.wasm")).display());
        return Ok(());
    }
    let dir = standalone.clone().unwrap_or_else(|| root().join("plugins/wasm").join(&name));
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    std::fs::create_dir_all(dir.join("src"))?;
    let plugin_api = root().join("plugin-api");
    let (dependencies, workspace) = match &standalone {
        Some(_) => (
            format!(
                "plugin-api = {{ path = {:?}, features = [\"guest\"] }}\n",
                plugin_api.display().to_string()
            ),
            "\n[workspace]\n\n[profile.release]\nopt-level = \"s\"\ndebug = false\nstrip = true\nlto = true\ncodegen-units = 1\npanic = \"abort\"\n"
                .to_owned(),
        ),
        None => ("plugin-api.workspace = true\n".to_owned(), String::new()),
    };
    let edition = if standalone.is_some() { "edition = \"2024\"" } else { "edition.workspace = true" };
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\npublish = false\n{edition}\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\n{dependencies}{workspace}"
        ),
    )?;
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    std::fs::write(dir.join("src/lib.rs"), template.replace("{name}", &name).replace("{Type}", &type_name))?;
    if standalone.is_none() {
        let manifest = root().join("plugins/wasm/Cargo.toml");
        let text = std::fs::read_to_string(&manifest)?;
        let updated = text.replacen("members = [", &format!("members = [\"{name}\", "), 1);
        std::fs::write(&manifest, updated)?;
    }
    println!("created the {kind} plugin {name} in {}", dir.display());
    // Cargo names the component after the crate with `_`; build-plugins copies it as NAME.wasm.
    let component = match standalone {
        Some(_) => {
            println!("build it:  (cd {} && cargo build --release --target {TARGET})", dir.display());
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| dir.join("target"), |t| dir.join(t));
            target.join(TARGET).join("release").join(format!("{}.wasm", name.replace('-', "_")))
        }
        None => {
            println!("build it:  cargo xtask build-plugins");
            root().join("target/plugins").join(format!("{name}.wasm"))
        }
    };
    println!("check it:  ratchet plugins test {}", component.display());
    Ok(())
}

const SINK_TEMPLATE: &str = r#"//! {name}: a Ratchet sink plugin. The kernel calls `write` with batches of events, in order.
//! Ask for capabilities in `manifest` (`.capability(Capability::Http)`; also Fs, Kv, Env); the
//! operator grants them in the plugin's `grants` in the configuration. See docs/plugins.md.

use plugin_api::guest::{Event, Manifest, PluginError, Sink};

struct {Type};

impl Sink for {Type} {
    fn manifest() -> Manifest {
        Manifest::new("{name}", env!("CARGO_PKG_VERSION"), "describe what this sink does")
    }

    fn write(events: Vec<Event>) -> Result<(), PluginError> {
        for event in &events {
            plugin_api::guest::log::debug(&format!("{}: {}", event.kind, event.data));
        }
        Ok(())
    }
}

plugin_api::export_sink!({Type});
"#;

const ERROR_PATTERN_TEMPLATE: &str = r#"//! {name}: a Ratchet error-pattern plugin. The kernel asks it about every failed run and
//! stores what it says with the execution. See docs/plugins.md.

use plugin_api::guest::{Classification, ErrorPattern, Failure, Manifest};

struct {Type};

impl ErrorPattern for {Type} {
    fn manifest() -> Manifest {
        Manifest::new("{name}", env!("CARGO_PKG_VERSION"), "describe what this plugin recognises")
    }

    fn classify(failure: Failure) -> Vec<Classification> {
        if failure.kind == "timeout" {
            return vec![Classification {
                pattern: "slow-task".into(),
                category: "resources".into(),
                confidence: 0.9,
                suggestions: vec!["Raise the task's timeout, or split its work".into()],
            }];
        }
        Vec::new()
    }
}

plugin_api::export_error_pattern!({Type});
"#;

const AUTH_TEMPLATE: &str = r#"//! {name}: a Ratchet auth plugin. It turns a request's headers into a principal with roles
//! (`viewer`, `runner`, `admin`), or denies. The kernel fails closed. See docs/plugins.md.

use plugin_api::guest::{Auth, Manifest, PluginError, Principal};

struct {Type};

impl Auth for {Type} {
    fn manifest() -> Manifest {
        Manifest::new("{name}", env!("CARGO_PKG_VERSION"), "describe how this plugin authenticates")
    }

    fn authenticate(headers: Vec<(String, String)>) -> Result<Principal, PluginError> {
        let _ = headers;
        Err(PluginError::Denied("no credentials are accepted yet".into()))
    }
}

plugin_api::export_auth!({Type});
"#;

const API_SURFACE_TEMPLATE: &str = r##"//! {name}: a Ratchet API-surface plugin, mounted under `/plugins/NAME/` (NAME is the name the
//! operator gives it). The kernel checks the caller's credentials and role first: GET needs
//! a viewer, other methods a runner. See docs/plugins.md.

use plugin_api::guest::{ApiSurface, Manifest, Request, Response};

struct {Type};

impl ApiSurface for {Type} {
    fn manifest() -> Manifest {
        Manifest::new("{name}", env!("CARGO_PKG_VERSION"), "describe the routes this plugin serves")
    }

    fn handle(request: Request) -> Response {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/") => Response::json(200, r#"{"status": "ok"}"#),
            _ => Response::json(404, r#"{"error": {"code": "not_found", "message": "no such route", "details": null}}"#),
        }
    }
}

plugin_api::export_api_surface!({Type});
"##;

const LOADER_TEMPLATE: &str = r##"//! {name}: a Ratchet loader plugin: a source of tasks. The kernel loads each task folder it
//! lists with the same checks as a folder on disk. Ask for `http` or `kv` in `manifest` to
//! fetch tasks from elsewhere. See docs/plugins.md.

use plugin_api::guest::{Loader, Manifest, PluginError, TaskFiles};

struct {Type};

impl Loader for {Type} {
    fn manifest() -> Manifest {
        Manifest::new("{name}", env!("CARGO_PKG_VERSION"), "describe where these tasks come from")
    }

    fn list_tasks() -> Result<Vec<TaskFiles>, PluginError> {
        let file = |path: &str, text: &str| (path.to_owned(), text.as_bytes().to_vec());
        Ok(vec![TaskFiles {
            name: "hello".into(),
            files: vec![
                file("metadata.json", r#"{"version": "1.0.0", "description": "says hello"}"#),
                file("input.schema.json", r#"{"type": "object"}"#),
                file("output.schema.json", r#"{"type": "object"}"#),
                file("main.js", "function main(input) { return { hello: input.name || 'world' }; }"),
            ],
        }])
    }
}

plugin_api::export_loader!({Type});
"##;
