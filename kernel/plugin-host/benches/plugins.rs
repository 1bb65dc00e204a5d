//! Plugin host overhead (wasmtime 48): compiling a component vs loading it from the compiled
//! cache, instantiating from the pre-instantiated template, and one sink call with one event
//! on a warm instance (the hostile test plugin doing nothing: the call itself), an auth check
//! and an API-surface request on warm instances. Needs
//! `cargo xtask build-plugins`; run through `cargo xtask bench`.

use std::time::{Duration, Instant};

use ratchet_core::config::{EgressConfig, PluginConfig};
use ratchet_plugin_host::Event;
use ratchet_plugin_host::wasm::{SinkCalls, WasmHost};
use serde_json::json;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let plugin = root.join("target/plugins/test-programs.wasm");
    assert!(plugin.is_file(), "{} is missing: run `cargo xtask build-plugins`", plugin.display());
    let cache = std::env::temp_dir().join(format!("ratchet-bench-plugins-{}", std::process::id()));
    let host = WasmHost::new(&cache, &EgressConfig::default()).unwrap();

    let compile = median(5, || {
        let _ = std::fs::remove_dir_all(&cache);
        let started = Instant::now();
        host.component("bench", &plugin).unwrap();
        started.elapsed()
    });
    let cached = median(20, || {
        let started = Instant::now();
        let (_, hit) = host.component("bench", &plugin).unwrap();
        assert!(hit);
        started.elapsed()
    });
    println!(
        "plugins: compile a component {:.1} ms; load it from the compiled cache {:.3} ms",
        ms(compile),
        ms(cached)
    );

    let config = PluginConfig {
        name: "bench".into(),
        kind: plugin_api::PluginKind::Sink,
        source: plugin.display().to_string(),
        config: json!({}),
        grants: Default::default(),
        limits: Default::default(),
    };
    let mut sink = host.load_sink(&config).unwrap();
    let one = vec![Event::new("fine", Some("bench"), Some("run"), json!({"n": 1}))];
    sink.write_events(&one).unwrap();
    let mut calls: Vec<Duration> = (0..20_000)
        .map(|_| {
            let started = Instant::now();
            sink.write_events(&one).unwrap();
            started.elapsed()
        })
        .collect();
    calls.sort();
    println!(
        "plugins: sink write of one event, warm instance: median {:.2} µs, p99 {:.2} µs (20,000 calls)",
        us(calls[calls.len() / 2]),
        us(calls[calls.len() * 99 / 100])
    );
    let instantiate = median(200, || sink.fresh_instance_time().unwrap());
    println!(
        "plugins: instantiate from the pre-instantiated template (with its store): median {:.1} µs",
        us(instantiate)
    );
    auth_and_surface(&host, &root);
    let _ = std::fs::remove_dir_all(&cache);
}

/// An auth check (api-key-auth: hash the presented key, compare with the configured hashes)
/// and an API-surface request (hello-api: GET /hello) on warm instances.
fn auth_and_surface(host: &WasmHost, root: &std::path::Path) {
    let key_hash = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"; // sha256("secret")
    let config = PluginConfig {
        name: "keys".into(),
        kind: plugin_api::PluginKind::Auth,
        source: root.join("target/plugins/api-key-auth.wasm").display().to_string(),
        config: json!({"keys": [{"id": "bench", "sha256": key_hash, "role": "runner"}]}),
        grants: Default::default(),
        limits: Default::default(),
    };
    let mut auth = host.load_auth(&config).unwrap();
    let headers =
        vec![("x-api-key".to_owned(), "secret".to_owned()), ("accept".to_owned(), "*/*".to_owned())];
    assert_eq!(auth.authenticate(&headers).unwrap().id, "bench");
    let checks = timed(20_000, || {
        auth.authenticate(&headers).unwrap();
    });
    println!(
        "plugins: auth check (api-key-auth, SHA-256 of the key), warm instance: median {:.2} µs, p99 {:.2} µs (20,000 calls)",
        us(checks[checks.len() / 2]),
        us(checks[checks.len() * 99 / 100])
    );
    let config = PluginConfig {
        name: "hello".into(),
        kind: plugin_api::PluginKind::ApiSurface,
        source: root.join("target/plugins/hello-api.wasm").display().to_string(),
        config: json!({}),
        grants: Default::default(),
        limits: Default::default(),
    };
    let mut surface = host.load_api_surface(&config).unwrap();
    let request = || ratchet_plugin_host::wasm::SurfaceRequest {
        method: "GET".into(),
        path: "/hello".into(),
        query: Some("name=bench".into()),
        headers: Vec::new(),
        body: Vec::new(),
    };
    let calls = timed(20_000, || {
        assert_eq!(surface.handle(request()).unwrap().status, 200);
    });
    println!(
        "plugins: api-surface request (hello-api GET /hello), warm instance: median {:.2} µs, p99 {:.2} µs (20,000 calls)",
        us(calls[calls.len() / 2]),
        us(calls[calls.len() * 99 / 100])
    );
}

fn timed(runs: usize, mut call: impl FnMut()) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            call();
            started.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn median(runs: usize, mut measure: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..runs).map(|_| measure()).collect();
    times.sort();
    times[runs / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
