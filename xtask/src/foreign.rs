//! Plugins written in Python (componentize-py, from PyPI) and JavaScript (componentize-js, from
//! npm): the scaffolds of `cargo xtask new-plugin --lang python|js`, the pinned toolchains, and
//! `cargo xtask foreign-plugins`, which builds the examples under `plugins/python` and
//! `plugins/js` with their own one-line build, as their READMEs tell a plugin author to.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::root;

/// The componentize-py release scaffolds pin and the tests build with.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// The componentize-js release scaffolds pin and the tests build with.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
/// componentize-js 0.23.0 imports `@bytecodealliance/preview2-shim` at run time but lists it
/// only among its development dependencies; it is found by accident, through jco's optional
/// peer dependency, and npm prunes it as extraneous on the second `npm install` or `npm ci`.
/// Scaffolds depend on it themselves.
pub const PREVIEW2_SHIM_VERSION: &str = "0.25.0";
/// What a JavaScript plugin may reach besides the host's imports: nothing. componentize-js
/// otherwise imports WASI stdio, random, clocks and HTTP, which the host would have to grant.
const JS_DISABLED: &str = "stdio random clocks http fetch-event";

/// A language other than Rust that plugins are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Python,
    Js,
}

impl Lang {
    pub fn parse(text: &str) -> anyhow::Result<Option<Lang>> {
        match text {
            "rust" => Ok(None),
            "python" => Ok(Some(Lang::Python)),
            "js" | "javascript" => Ok(Some(Lang::Js)),
            _ => bail!("`--lang {text}` is not a plugin language; use rust, python or js"),
        }
    }

    fn folder(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

/// The newest WIT version folder (`wit/ratchet-plugin/X.Y.Z`): what new plugins are built
/// against.
pub fn latest_wit() -> anyhow::Result<PathBuf> {
    let versions = root().join("wit/ratchet-plugin");
    let mut found: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(&versions)
        .with_context(|| format!("cannot read {}", versions.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let parts: Option<Vec<u64>> = name.split('.').map(|p| p.parse().ok()).collect();
            parts.map(|parts| (parts, e.path()))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, path)| path).context("wit/ratchet-plugin holds no version folder")
}

/// Writes a plugin of `kind` in `lang` into `dir`. In the repository (`standalone` false) its
/// `wit` is a link to the released folder; elsewhere a copy, so the folder builds anywhere.
pub fn scaffold(name: &str, kind: &str, lang: Lang, dir: &Path, standalone: bool) -> anyhow::Result<()> {
    let world = format!("{kind}-plugin");
    let files: Vec<(&str, String)> = match lang {
        Lang::Python => vec![
            ("app.py", python_template(kind)?.replace("{name}", name)),
            ("requirements.txt", format!("{COMPONENTIZE_PY}\n")),
            ("build.sh", python_build(name, &world)),
            (".gitignore", ".venv/\n__pycache__/\n*.wasm\n".to_owned()),
        ],
        Lang::Js => vec![
            ("plugin.js", js_template(kind)?.replace("{name}", name)),
            ("package.json", js_package(name, &world)),
            (".gitignore", "node_modules/\n*.wasm\n".to_owned()),
        ],
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (file, text) in &files {
        std::fs::write(dir.join(file), text).with_context(|| format!("cannot write {file}"))?;
    }
    if lang == Lang::Python {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.join("build.sh"), std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::write(dir.join("README.md"), readme(name, kind, lang))?;
    let wit = latest_wit()?;
    if standalone {
        std::fs::create_dir_all(dir.join("wit"))?;
        for entry in std::fs::read_dir(&wit)? {
            let entry = entry?;
            std::fs::copy(entry.path(), dir.join("wit").join(entry.file_name()))?;
        }
    } else {
        let version = wit.file_name().context("the WIT folder has a name")?.to_string_lossy().into_owned();
        std::os::unix::fs::symlink(format!("../../../wit/ratchet-plugin/{version}"), dir.join("wit"))?;
    }
    Ok(())
}

/// The folder `new-plugin` writes a plugin in `lang` to when no `--path` is given.
pub fn default_dir(lang: Lang, name: &str) -> PathBuf {
    root().join("plugins").join(lang.folder()).join(name)
}

/// The one command that builds the plugin in its folder, as its README gives it.
pub fn build_hint(lang: Lang) -> &'static str {
    match lang {
        Lang::Python => "./build.sh",
        Lang::Js => "npm install && npm run build",
    }
}

fn python_build(name: &str, world: &str) -> String {
    format!(
        r#"#!/bin/sh
# Builds {name}.wasm. Uses componentize-py from $PATH when it is there, else installs the
# pinned release (requirements.txt) into .venv here first.
set -eu
cd "$(dirname "$0")"
if ! command -v componentize-py >/dev/null 2>&1; then
    if [ ! -x .venv/bin/componentize-py ]; then
        python3 -m venv .venv
        .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    fi
    PATH="$PWD/.venv/bin:$PATH"
fi
componentize-py -d wit -w {world} componentize app -o {name}.wasm
echo "built {name}.wasm; check it with: ratchet plugins test {name}.wasm"
"#
    )
}

fn js_package(name: &str, world: &str) -> String {
    format!(
        r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "scripts": {{
    "build": "componentize-js plugin.js --wit wit --world-name {world} --disable {JS_DISABLED} --out {name}.wasm",
    "test": "ratchet plugins test {name}.wasm"
  }},
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "{COMPONENTIZE_JS_VERSION}",
    "@bytecodealliance/preview2-shim": "{PREVIEW2_SHIM_VERSION}"
  }}
}}
"#
    )
}

fn readme(name: &str, kind: &str, lang: Lang) -> String {
    let (language, source, needs, build) = match lang {
        Lang::Python => (
            "Python",
            "app.py",
            "Python 3.10 or newer (the build installs componentize-py from PyPI into `.venv`)",
            "./build.sh",
        ),
        Lang::Js => (
            "JavaScript",
            "plugin.js",
            "Node.js 18 or newer and npm (the build installs componentize-js from npm)",
            "npm install && npm run build",
        ),
    };
    format!(
        "# {name}\n\nA Ratchet {kind} plugin in {language}: `{source}` implements the `{kind}-plugin` world of the \
         WIT in `wit/` (Ratchet's plugin interface; never edit it).\n\n\
         Needs {needs}.\n\n\
         ## Build and check\n\n```sh\n{build}\nratchet plugins test {name}.wasm\n```\n\n\
         The first command writes `{name}.wasm`, a WebAssembly component; the second runs the conformance \
         checks every plugin of its kind must pass.\n\n\
         ## Enable\n\n```yaml\nplugins:\n  - name: {name}\n    kind: {kind}\n    source: /path/to/{name}.wasm\n    \
         # grants: {{dir: /var/lib/ratchet/{name}}}   # what the manifest asks for: fs, http, kv, env\n```\n\n\
         The first start after a new build compiles the component (seconds for a {language} plugin: it \
         carries its interpreter); the compiled form is cached in the data folder, and \
         `ratchet plugins test` fills the same cache. See Ratchet's docs/plugins.md.\n"
    )
}

fn python_template(kind: &str) -> anyhow::Result<&'static str> {
    Ok(match kind {
        "sink" => PY_SINK,
        "error-pattern" => PY_ERROR_PATTERN,
        "auth" => PY_AUTH,
        "api-surface" => PY_API_SURFACE,
        "loader" => PY_LOADER,
        _ => bail!(
            "`--kind {kind}` is not a plugin kind; use sink, error-pattern, auth, api-surface or loader"
        ),
    })
}

fn js_template(kind: &str) -> anyhow::Result<&'static str> {
    Ok(match kind {
        "sink" => JS_SINK,
        "error-pattern" => JS_ERROR_PATTERN,
        "auth" => JS_AUTH,
        "api-surface" => JS_API_SURFACE,
        "loader" => JS_LOADER,
        _ => bail!(
            "`--kind {kind}` is not a plugin kind; use sink, error-pattern, auth, api-surface or loader"
        ),
    })
}

/// The pinned toolchains, shared by the tests' scaffold builds: a virtualenv with
/// componentize-py (`target/tools/componentize-py`) and an npm folder with componentize-js
/// (`target/tools/componentize-js`), each made when missing or pinned to another release.
pub fn toolchains() -> anyhow::Result<()> {
    crate::python::venv("componentize-py", COMPONENTIZE_PY)?;
    let js = root().join("target/tools/componentize-js");
    let packages = [
        format!("@bytecodealliance/componentize-js@{COMPONENTIZE_JS_VERSION}"),
        format!("@bytecodealliance/preview2-shim@{PREVIEW2_SHIM_VERSION}"),
    ];
    let pin = packages.join(" ");
    let pinned = js.join(".pinned");
    let installed = js.join("node_modules/.bin/componentize-js").exists()
        && std::fs::read_to_string(&pinned).is_ok_and(|p| p == pin);
    if !installed {
        std::fs::create_dir_all(&js)?;
        run(
            Command::new("npm")
                .args(["install", "--no-fund", "--no-audit", "--no-save", "--prefix"])
                .arg(&js)
                .args(&packages),
            "npm install componentize-js (Node.js and npm must be installed, and the npm registry reachable)",
        )?;
        std::fs::write(&pinned, &pin)?;
    }
    Ok(())
}

/// `cargo xtask foreign-plugins`: builds every plugin under `plugins/python` and `plugins/js`
/// with the command its README gives, and copies each to `target/plugins/NAME.wasm`.
pub fn build_examples() -> anyhow::Result<Vec<PathBuf>> {
    let out = root().join("target/plugins");
    std::fs::create_dir_all(&out)?;
    let mut built = Vec::new();
    for lang in [Lang::Python, Lang::Js] {
        let folder = root().join("plugins").join(lang.folder());
        let mut plugins: Vec<PathBuf> = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot read {}", folder.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        plugins.sort();
        for dir in plugins {
            let name = dir.file_name().context("a plugin folder has a name")?.to_string_lossy().into_owned();
            println!("$ {} (in plugins/{}/{name})", build_hint(lang), lang.folder());
            match lang {
                Lang::Python => run(Command::new("sh").arg("build.sh").current_dir(&dir), &name)?,
                Lang::Js => {
                    // The lockfile pins the whole tree: `npm ci` installs exactly it.
                    let install = if dir.join("package-lock.json").is_file() { "ci" } else { "install" };
                    run(
                        Command::new("npm").args([install, "--no-fund", "--no-audit"]).current_dir(&dir),
                        &format!("npm {install} for {name} (the npm registry must be reachable)"),
                    )?;
                    run(Command::new("npm").args(["run", "--silent", "build"]).current_dir(&dir), &name)?;
                }
            }
            let component = dir.join(format!("{name}.wasm"));
            let destination = out.join(format!("{name}.wasm"));
            std::fs::copy(&component, &destination)
                .with_context(|| format!("the build of {name} wrote no {}", component.display()))?;
            println!("  {}", destination.display());
            built.push(destination);
        }
    }
    Ok(built)
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("cannot start the build of {what}"))?;
    if !status.success() {
        bail!("{what}: the build failed ({status})");
    }
    Ok(())
}

const PY_SINK: &str = r#""""{name}: a Ratchet sink plugin. The kernel calls `write` with batches of events, in order.

Ask for capabilities in `describe` ("fs", "http", "kv", "env"); the operator grants them in the
plugin's `grants`. Refuse a batch by raising Err(types.PluginError_...): an uncaught exception
traps, and the kernel logs it and carries on (sinks fail open). See Ratchet's docs/plugins.md.
"""

from wit_world import exports
from wit_world.imports import host, types


class Sink(exports.Sink):
    def describe(self) -> types.Manifest:
        return types.Manifest(
            name="{name}",
            version="0.1.0",
            description="describe what this sink does",
            capabilities=[],
        )

    def write(self, events: list[types.Event]) -> None:
        for event in events:
            host.log(host.Level.DEBUG, f"{event.kind}: {event.data}")
"#;

const PY_ERROR_PATTERN: &str = r#""""{name}: a Ratchet error-pattern plugin. The kernel asks it about every failed run and
stores what it says with the execution. See Ratchet's docs/plugins.md.
"""

from wit_world import exports
from wit_world.exports import error_pattern
from wit_world.imports import types


class ErrorPattern(exports.ErrorPattern):
    def describe(self) -> types.Manifest:
        return types.Manifest(
            name="{name}",
            version="0.1.0",
            description="describe what this plugin recognises",
            capabilities=[],
        )

    def classify(self, failure: error_pattern.Failure) -> list[error_pattern.Classification]:
        if failure.kind == "timeout":
            return [
                error_pattern.Classification(
                    pattern="slow-task",
                    category="resources",
                    confidence=0.9,
                    suggestions=["Raise the task's timeout, or split its work"],
                )
            ]
        return []
"#;

const PY_AUTH: &str = r#""""{name}: a Ratchet auth plugin. It turns a request's headers into a principal with roles
(`viewer`, `runner`, `admin`), or denies by raising Err(types.PluginError_Denied(...)). The
kernel fails closed: an exception is a denial too. See Ratchet's docs/plugins.md.
"""

from wit_world import exports
from componentize_py_types import Err
from wit_world.exports import auth
from wit_world.imports import types


class Auth(exports.Auth):
    def describe(self) -> types.Manifest:
        return types.Manifest(
            name="{name}",
            version="0.1.0",
            description="describe how this plugin authenticates",
            capabilities=[],
        )

    def authenticate(self, headers: list[tuple[str, str]]) -> auth.Principal:
        raise Err(types.PluginError_Denied("no credentials are accepted yet"))
"#;

const PY_API_SURFACE: &str = r#""""{name}: a Ratchet API-surface plugin, mounted under `/plugins/NAME/` (NAME is the name the
operator gives it). The kernel checks the caller's credentials and role first: GET needs a
viewer, other methods a runner. See Ratchet's docs/plugins.md.
"""

import json

from wit_world import exports
from wit_world.exports import api_surface
from wit_world.imports import types


def reply(status: int, body: dict) -> api_surface.Response:
    return api_surface.Response(
        status=status,
        headers=[("content-type", "application/json")],
        body=json.dumps(body).encode(),
    )


class ApiSurface(exports.ApiSurface):
    def describe(self) -> types.Manifest:
        return types.Manifest(
            name="{name}",
            version="0.1.0",
            description="describe the routes this plugin serves",
            capabilities=[],
        )

    def handle(self, request: api_surface.Request) -> api_surface.Response:
        if request.method == "GET" and request.path == "/":
            return reply(200, {"status": "ok"})
        error = {"code": "not_found", "message": "no such route", "details": None}
        return reply(404, {"error": error})
"#;

const PY_LOADER: &str = r#""""{name}: a Ratchet loader plugin: a source of tasks. The kernel loads each task folder it
lists with the same checks as a folder on disk. Ask for "http" or "kv" in `describe` to fetch
tasks from elsewhere. See Ratchet's docs/plugins.md.
"""

from wit_world import exports
from wit_world.exports import loader
from wit_world.imports import types


def file(path: str, text: str) -> loader.File:
    return loader.File(path=path, contents=text.encode())


class Loader(exports.Loader):
    def describe(self) -> types.Manifest:
        return types.Manifest(
            name="{name}",
            version="0.1.0",
            description="describe where these tasks come from",
            capabilities=[],
        )

    def list_tasks(self) -> list[loader.TaskFiles]:
        return [
            loader.TaskFiles(
                name="hello",
                files=[
                    file("metadata.json", '{"version": "1.0.0", "description": "says hello"}'),
                    file("input.schema.json", '{"type": "object"}'),
                    file("output.schema.json", '{"type": "object"}'),
                    file("main.js", "function main(input) { return { hello: input.name || 'world' }; }"),
                ],
            )
        ]
"#;

const JS_SINK: &str = r#"// {name}: a Ratchet sink plugin. The kernel calls `write` with batches of events, in order.
// Ask for capabilities in `describe` ('fs' is not available to JavaScript plugins; 'http', 'kv');
// the operator grants them in the plugin's `grants`. Refuse a batch by throwing a plugin error,
// e.g. `throw { tag: 'failed', val: 'why' }`. See Ratchet's docs/plugins.md.

import { log } from 'ratchet:plugin/host@0.1.0';

export const sink = {
  describe() {
    return { name: '{name}', version: '0.1.0', description: 'describe what this sink does', capabilities: [] };
  },

  write(events) {
    for (const event of events) {
      log('debug', `${event.kind}: ${event.data}`);
    }
  },
};
"#;

const JS_ERROR_PATTERN: &str = r#"// {name}: a Ratchet error-pattern plugin. The kernel asks it about every failed run and
// stores what it says with the execution. See Ratchet's docs/plugins.md.

export const errorPattern = {
  describe() {
    return { name: '{name}', version: '0.1.0', description: 'describe what this plugin recognises', capabilities: [] };
  },

  classify(failure) {
    if (failure.kind === 'timeout') {
      return [{
        pattern: 'slow-task',
        category: 'resources',
        confidence: 0.9,
        suggestions: ["Raise the task's timeout, or split its work"],
      }];
    }
    return [];
  },
};
"#;

const JS_AUTH: &str = r#"// {name}: a Ratchet auth plugin. It turns a request's headers into a principal with roles
// (`viewer`, `runner`, `admin`), or denies by throwing `{ tag: 'denied', val: 'why' }`. The
// kernel fails closed: any other exception is a denial too. See Ratchet's docs/plugins.md.

export const auth = {
  describe() {
    return { name: '{name}', version: '0.1.0', description: 'describe how this plugin authenticates', capabilities: [] };
  },

  authenticate(headers) {
    throw { tag: 'denied', val: 'no credentials are accepted yet' };
  },
};
"#;

const JS_API_SURFACE: &str = r#"// {name}: a Ratchet API-surface plugin, mounted under `/plugins/NAME/` (NAME is the name the
// operator gives it). The kernel checks the caller's credentials and role first: GET needs a
// viewer, other methods a runner. See Ratchet's docs/plugins.md.

const encoder = new TextEncoder();

function reply(status, body) {
  return { status, headers: [['content-type', 'application/json']], body: encoder.encode(JSON.stringify(body)) };
}

export const apiSurface = {
  describe() {
    return { name: '{name}', version: '0.1.0', description: 'describe the routes this plugin serves', capabilities: [] };
  },

  handle(request) {
    if (request.method === 'GET' && request.path === '/') {
      return reply(200, { status: 'ok' });
    }
    return reply(404, { error: { code: 'not_found', message: 'no such route', details: null } });
  },
};
"#;

const JS_LOADER: &str = r#"// {name}: a Ratchet loader plugin: a source of tasks. The kernel loads each task folder it
// lists with the same checks as a folder on disk. Ask for 'http' or 'kv' in `describe` to fetch
// tasks from elsewhere. See Ratchet's docs/plugins.md.

const encoder = new TextEncoder();
const file = (path, text) => ({ path, contents: encoder.encode(text) });

export const loader = {
  describe() {
    return { name: '{name}', version: '0.1.0', description: 'describe where these tasks come from', capabilities: [] };
  },

  listTasks() {
    return [{
      name: 'hello',
      files: [
        file('metadata.json', '{"version": "1.0.0", "description": "says hello"}'),
        file('input.schema.json', '{"type": "object"}'),
        file('output.schema.json', '{"type": "object"}'),
        file('main.js', "function main(input) { return { hello: input.name || 'world' }; }"),
      ],
    }];
  },
};
"#;
