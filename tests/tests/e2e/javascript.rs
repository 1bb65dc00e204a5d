//! What task code sees and how its results and failures come back (sandbox rows S3, S5, S7, S19).

use serde_json::json;
use tests::{check_task, run_code, task_with};

#[test]
fn function_expression_style() {
    check_task("(function (input) { return input.x + 1; })", json!({"x": 1}), Ok(json!(2)));
    check_task("(input => ({doubled: input.x * 2}))", json!({"x": 4}), Ok(json!({"doubled": 8})));
}

#[test]
fn declared_main_style_and_async_main() {
    check_task(
        "function main(input) { return [input, typeof input]; }",
        json!("s"),
        Ok(json!(["s", "string"])),
    );
    check_task(
        "async function main(input) { const v = await Promise.resolve(input.x); return v * 3; }",
        json!({"x": 2}),
        Ok(json!(6)),
    );
    check_task(
        "(function () { return new Promise(resolve => setTimeout(() => resolve('late'), 20)); })",
        json!(null),
        Ok(json!("late")),
    );
}

#[test]
fn the_context_argument_describes_the_run() {
    let envelope = run_code("(function (input, context) { return context; })", json!(null));
    let context = &envelope["output"];
    assert_eq!(context["attempt"], 1, "{envelope}");
    assert_eq!(context["taskId"], "test-task");
    assert_eq!(context["taskVersion"], "1.0.0");
    assert_eq!(context["executionId"], envelope["execution_id"]);
}

#[test]
fn a_typed_js_error_keeps_name_message_and_stack() {
    let envelope = check_task(
        "function main() {\n  throw new DataError('row 3 is malformed');\n}",
        json!(null),
        Err(("task_error", "DataError")),
    );
    assert_eq!(envelope["error"]["message"], "row 3 is malformed");
    assert!(envelope["error"]["stack"].as_str().unwrap().contains("main.js:2"), "{envelope}");
    for name in worker_protocol::TYPED_ERROR_CLASSES {
        let code = format!(
            "(function () {{ const e = new {name}('x'); if (!(e instanceof Error)) return 'bad'; throw e; }})"
        );
        check_task(&code, json!(null), Err(("task_error", name)));
    }
}

#[test]
fn typed_errors_behave_like_error_subclasses() {
    check_task(
        "(function () {
            class QuotaError extends RateLimitError {}
            const e = new QuotaError('over quota', { cause: 1 });
            return [e instanceof QuotaError, e instanceof RateLimitError, e instanceof Error, e.name,
                e.message, e.cause, Object.getPrototypeOf(DataError) === Error, String(new DataError('m'))];
        })",
        json!(null),
        Ok(json!([true, true, true, "RateLimitError", "over quota", 1, true, "DataError: m"])),
    );
    let envelope =
        check_task("(function () { DataError('no new'); })", json!(null), Err(("task_error", "TypeError")));
    assert!(envelope["error"]["message"].as_str().unwrap().contains("with `new`"), "{envelope}");
}

#[test]
fn rejected_promises_and_thrown_values_are_errors() {
    check_task(
        "async function main() { throw new TypeError('nope'); }",
        json!(null),
        Err(("task_error", "TypeError")),
    );
    let envelope =
        check_task("(function () { throw 'a string'; })", json!(null), Err(("task_error", "Error")));
    assert_eq!(envelope["error"]["message"], "uncaught a string");
    let envelope = check_task(
        "async function main() { await new Promise(() => {}); }",
        json!(null),
        Err(("task_error", "Error")),
    );
    assert!(envelope["error"]["message"].as_str().unwrap().contains("never settles"), "{envelope}");
}

#[test]
fn schemas_check_input_and_output_and_name_the_pointer() {
    let task = task_with(
        "(function (input) { return {total: input.items.length > 1 ? 'many' : 1}; })",
        json!({"type": "object", "properties": {"items": {"type": "array", "items": {"type": "integer"}}}, "required": ["items"]}),
        json!({"type": "object", "properties": {"total": {"type": "integer"}}}),
    );
    let (run, envelope) = tests::run_once(&task.path(), &json!({"items": [1, "two"]}));
    assert!(!run.success());
    assert_eq!(envelope["error"]["kind"], "invalid_input");
    let violation = &envelope["error"]["violations"][0];
    assert_eq!((violation["pointer"].as_str(), violation["rule"].as_str()), (Some("/items/1"), Some("type")));
    assert_eq!(violation["value"], "two");
    assert!(envelope["worker"].is_null(), "invalid input never reaches a worker");

    let (_, envelope) = tests::run_once(&task.path(), &json!({"items": [1, 2]}));
    assert_eq!(envelope["error"]["kind"], "invalid_output");
    assert_eq!(envelope["error"]["violations"][0]["pointer"], "/total");
    assert!(envelope["error"]["message"].as_str().unwrap().contains("at `/total`"), "{envelope}");
}

#[test]
fn output_uses_json_semantics() {
    check_task(
        "(function () { return {d: new Date(0), f() {}, u: undefined, n: NaN, nested: {toJSON() { return 'custom'; }}}; })",
        json!(null),
        Ok(json!({"d": "1970-01-01T00:00:00.000Z", "n": null, "nested": "custom"})),
    );
    check_task("(function () {})", json!(null), Ok(json!(null)));
    let envelope = check_task(
        "(function () { const a = {}; a.self = a; return a; })",
        json!(null),
        Err(("task_error", "TypeError")),
    );
    assert!(envelope["error"]["message"].as_str().unwrap().contains("cyclic"), "{envelope}");
}

#[test]
fn console_output_becomes_log_lines() {
    let envelope = check_task(
        "(function () { console.log('a', 1, {b: 2}); console.warn('w'); console.error(new DataError('e')); console.debug([1]); return 0; })",
        json!(null),
        Ok(json!(0)),
    );
    assert_eq!(
        envelope["logs"],
        json!([
            {"level": "info", "message": "a 1 {\"b\":2}"},
            {"level": "warn", "message": "w"},
            {"level": "error", "message": "DataError: e"},
            {"level": "debug", "message": "[1]"},
        ])
    );
}

#[test]
fn timers_fire_in_order_and_can_be_cleared() {
    check_task(
        "async function main() {
            const order = [];
            const cancelled = setTimeout(() => order.push('never'), 5);
            clearTimeout(cancelled);
            setTimeout((x) => order.push(x), 30, 'second');
            setTimeout(() => order.push('first'), 10);
            await new Promise(r => setTimeout(r, 50));
            return order;
        }",
        json!(null),
        Ok(json!(["first", "second"])),
    );
}

#[test]
fn nothing_of_the_host_is_reachable() {
    check_task(
        "(function () { return [typeof require, typeof process, typeof Deno, typeof module, typeof exports,
            typeof importScripts, typeof XMLHttpRequest, typeof print, typeof $boa, typeof ratchet]; })",
        json!(null),
        Ok(json!(vec!["undefined"; 10])),
    );
    // The global object holds the standard built-ins and the documented API, nothing else.
    let envelope = run_code("(function () { return Object.getOwnPropertyNames(globalThis); })", json!(null));
    let globals: Vec<&str> =
        envelope["output"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let documented = [
        "console",
        "fetch",
        "setTimeout",
        "clearTimeout",
        "NetworkError",
        "HttpError",
        "DataError",
        "ValidationError",
        "AuthenticationError",
        "AuthorizationError",
        "RateLimitError",
        "ConfigurationError",
        "ServiceUnavailableError",
        "NotFoundError",
        "TimeoutError",
    ];
    for name in documented {
        assert!(globals.contains(&name), "{name} missing from {globals:?}");
    }
    let standard = [
        "globalThis",
        "Infinity",
        "NaN",
        "undefined",
        "Function",
        "Object",
        "Math",
        "JSON",
        "Array",
        "Proxy",
        "ArrayBuffer",
        "SharedArrayBuffer",
        "BigInt",
        "Boolean",
        "Date",
        "DataView",
        "Map",
        "isFinite",
        "isNaN",
        "parseInt",
        "parseFloat",
        "Number",
        "eval",
        "Set",
        "String",
        "RegExp",
        "TypedArray",
        "Int8Array",
        "Uint8Array",
        "Uint8ClampedArray",
        "Int16Array",
        "Uint16Array",
        "Int32Array",
        "Uint32Array",
        "BigInt64Array",
        "BigUint64Array",
        "Float32Array",
        "Float64Array",
        "Symbol",
        "Error",
        "RangeError",
        "ReferenceError",
        "TypeError",
        "SyntaxError",
        "EvalError",
        "URIError",
        "AggregateError",
        "Reflect",
        "Promise",
        "encodeURI",
        "encodeURIComponent",
        "decodeURI",
        "decodeURIComponent",
        "WeakRef",
        "WeakMap",
        "WeakSet",
        "Iterator",
        "Atomics",
        "FinalizationRegistry",
    ];
    let unexpected: Vec<_> =
        globals.iter().filter(|g| !documented.contains(g) && !standard.contains(g)).collect();
    assert!(unexpected.is_empty(), "undocumented globals: {unexpected:?}");
}

#[test]
fn fetch_goes_through_the_kernel_and_fails_typed_until_egress_exists() {
    let envelope = run_code(
        "(function () { try { fetch('https://example.com/'); return 'no error'; } catch (e) { return [e.name, e instanceof NetworkError, e.message]; } })",
        json!(null),
    );
    assert_eq!(envelope["output"][0], "NetworkError", "{envelope}");
    assert_eq!(envelope["output"][1], true);
    assert!(envelope["output"][2].as_str().unwrap().contains("GET https://example.com/"), "{envelope}");
}

#[test]
fn unbounded_recursion_is_a_typed_error() {
    check_task(
        "(function f(n) { return f(n + 1) + 1; })",
        json!(0),
        Err(("task_error", "RecursionLimitError")),
    );
    // Catching it does not help: the limit error cannot be caught by the task.
    check_task(
        "(function () { function f() { return f(); } try { f(); } catch (e) { return 'caught'; } })",
        json!(null),
        Err(("task_error", "RecursionLimitError")),
    );
}

#[test]
fn deeply_nested_data_fails_cleanly() {
    let mut deep = json!(1);
    for _ in 0..110 {
        deep = json!([deep]);
    }
    let envelope =
        check_task("(function (input) { return input; })", deep, Err(("invalid_input", "ValidationError")));
    assert_eq!(envelope["error"]["violations"][0]["rule"], "maxDepth");
    let envelope = check_task(
        "(function () { let o = {}; for (let i = 0; i < 100000; i++) o = {o}; return o; })",
        json!(null),
        Err(("task_error", "DataError")),
    );
    assert!(envelope["error"]["message"].as_str().unwrap().contains("deeper than 100 levels"), "{envelope}");
    check_task(
        "(function () { let o = {}; for (let i = 0; i < 100000; i++) o = {o}; console.log(o); return 1; })",
        json!(null),
        Ok(json!(1)),
    );
}

#[test]
fn a_forged_frame_in_console_output_stays_a_log_line() {
    let forged = r#"{"protocol_version":2,"timestamp":0,"message":{"type":"TaskResult","correlation_id":1,"outcome":{"status":"success","output":"forged"},"stats":{"duration_us":0,"peak_rss_kib":0}}}"#;
    let code = format!("(function () {{ console.log({forged:?} + '\\n' + {forged:?}); return 'real'; }})");
    let envelope = check_task(&code, json!(null), Ok(json!("real")));
    assert_eq!(envelope["logs"][0]["message"], format!("{forged}\n{forged}"));
}

/// Boa's default module loader reads any module file under the worker's working directory;
/// the worker refuses every `import()` instead, naming the specifier and the fix.
#[test]
fn import_loads_no_module_from_the_disk() {
    let task = tests::task(
        "(async function (specifiers) {
            const tried = [];
            for (const specifier of specifiers) {
                try { tried.push((await import(specifier)).secret); } catch (e) { tried.push(`${e.name}: ${e.message}`); }
            }
            return tried;
        })",
    );
    task.write("lib.mjs", "export const secret = 'read from disk';");
    let absolute = task.path().join("lib.mjs");
    let specifiers = [absolute.to_str().unwrap(), "./lib.mjs", "node:fs"];
    let input = json!(specifiers).to_string();
    let path = task.path();
    // The task's folder is the working directory, so the module is inside the default loader's root.
    let run = tests::ratchet_in(
        &path,
        &["run-once", "--from-fs", path.to_str().unwrap(), "--input-json", &input, "--format", "json"],
        &[],
    );
    let envelope = run.json();
    let tried = envelope["output"].as_array().unwrap_or_else(|| panic!("no output: {envelope:#}"));
    assert_eq!(tried.len(), specifiers.len(), "{envelope:#}");
    for (outcome, specifier) in tried.iter().zip(specifiers) {
        let outcome = outcome.as_str().unwrap_or_default();
        assert!(
            outcome.starts_with("TypeError: import() is not available to tasks")
                && outcome.contains(&format!("`{specifier}`"))
                && outcome.contains("bundle"),
            "{specifier}: {outcome}"
        );
    }
}
