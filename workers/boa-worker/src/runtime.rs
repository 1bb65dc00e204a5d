//! One run of a task in a fresh Boa realm.
//!
//! Every run builds a new `Context`: nothing a task does to globals or prototypes can reach
//! the next run. The prelude installs the documented globals; the task's code is evaluated;
//! its entry point is resolved and called; a returned promise is driven to completion by a
//! small event loop over Boa's job queue and the prelude's timers.

use std::time::Duration;

use boa_engine::builtins::promise::PromiseState;
use boa_engine::error::{EngineError, RuntimeLimitError};
use boa_engine::object::JsObject;
use boa_engine::{Context, JsError, JsResult, JsValue, Source, js_string};
use serde_json::Value;
use worker_protocol::{JsError as WireError, RunContext, RunMode, RunOutcome};

const PRELUDE: &str = include_str!("prelude.js");

/// Most nested calls a task may make before a `RecursionLimitError`.
const RECURSION_LIMIT: usize = 400;

/// Longest single timer sleep; the kernel's wall-clock timeout is the real bound.
const MAX_TIMER_SLEEP: Duration = Duration::from_millis(250);

pub struct Run<'a> {
    pub mode: RunMode,
    pub code: &'a str,
    pub input: &'a Value,
    pub context: &'a RunContext,
}

pub fn execute(run: &Run<'_>) -> RunOutcome {
    let mut context = Context::default();
    context
        .runtime_limits_mut()
        .set_recursion_limit(RECURSION_LIMIT);
    match execute_in(run, &mut context) {
        Ok(output) => RunOutcome::Success { output },
        Err(error) => RunOutcome::Error { error },
    }
}

fn execute_in(run: &Run<'_>, context: &mut Context) -> Result<Value, WireError> {
    let controller = install_prelude(context).map_err(|e| describe(e, context))?;
    let entry = resolve_entry(run.code, context)?;
    if run.mode == RunMode::Check {
        return Ok(Value::Null);
    }
    let result = call_entry(&entry, run, context).map_err(|e| describe(e, context))?;
    let settled = settle(result, &controller, context).map_err(|e| describe(e, context))?;
    to_output(&settled, &controller, context)
}

fn install_prelude(context: &mut Context) -> JsResult<JsObject> {
    let factory = context
        .eval(Source::from_bytes(PRELUDE).with_path(std::path::Path::new("ratchet:prelude")))?;
    let bridge = crate::host::bridge(context)?;
    let factory = callable(&factory, "the prelude")?;
    let controller = factory.call(&JsValue::undefined(), &[bridge], context)?;
    callable_or_object(&controller)
}

/// Evaluates `main.js` and finds the function to call.
fn resolve_entry(code: &str, context: &mut Context) -> Result<JsObject, WireError> {
    let source = Source::from_bytes(code).with_path(std::path::Path::new("main.js"));
    let completion = context
        .eval(source)
        .map_err(|e| locate_syntax_error(describe(e, context), code))?;
    if let Some(function) = completion.as_object().filter(JsObject::is_callable) {
        return Ok(function);
    }
    let main = context
        .global_object()
        .get(js_string!("main"), context)
        .map_err(|e| describe(e, context))?;
    main.as_object()
        .filter(JsObject::is_callable)
        .ok_or_else(|| WireError {
            name: "TaskDefinitionError".into(),
            message: "main.js must evaluate to a function, as in `(function(input) { ... })`, \
                  or declare `function main(input) { ... }`"
                .into(),
            stack: None,
        })
}

/// Boa reports a file that ends too early without a position; point at the end of the file.
fn locate_syntax_error(mut error: WireError, code: &str) -> WireError {
    if error.name == "SyntaxError" && !error.message.contains("line") {
        let line = code.lines().count().max(1);
        error.message = format!("{} at line {line} (the end of main.js)", error.message);
    }
    error
}

fn call_entry(entry: &JsObject, run: &Run<'_>, context: &mut Context) -> JsResult<JsValue> {
    let input = JsValue::from_json(run.input, context)?;
    let task_context = serde_json::json!({
        "executionId": run.context.execution_id,
        "attempt": run.context.attempt,
        "taskId": run.context.task_id,
        "taskVersion": run.context.task_version,
    });
    let task_context = JsValue::from_json(&task_context, context)?;
    entry.call(&JsValue::undefined(), &[input, task_context], context)
}

/// Drives promise jobs and timers until `value` (a promise or a plain value) settles.
fn settle(value: JsValue, controller: &JsObject, context: &mut Context) -> JsResult<JsValue> {
    let Some(promise) = value.as_promise() else {
        return Ok(value);
    };
    let tick = controller.get(js_string!("tick"), context)?;
    let tick = callable(&tick, "the timer loop")?;
    loop {
        context.run_jobs()?;
        match promise.state() {
            PromiseState::Fulfilled(output) => return Ok(output),
            PromiseState::Rejected(reason) => return Err(JsError::from_opaque(reason)),
            PromiseState::Pending => {}
        }
        let wait = tick.call(&JsValue::from(controller.clone()), &[], context)?;
        let wait = wait.to_number(context)?;
        if wait < 0.0 {
            return Err(boa_engine::JsNativeError::error()
                .with_message(
                    "the promise returned by the task never settles: no timer or request is pending",
                )
                .into());
        }
        if wait > 0.0 {
            std::thread::sleep(Duration::from_millis(wait as u64).min(MAX_TIMER_SLEEP));
        }
    }
}

/// Converts the result with JSON semantics (`toJSON`, dropped functions and `undefined`),
/// through the prelude's depth-checked serializer.
fn to_output(
    value: &JsValue,
    controller: &JsObject,
    context: &mut Context,
) -> Result<Value, WireError> {
    if value.is_undefined() {
        return Ok(Value::Null);
    }
    let json = controller
        .get(js_string!("serialize"), context)
        .and_then(|serialize| {
            callable(&serialize, "the serializer")?.call(
                &controller.clone().into(),
                &[value.clone()],
                context,
            )
        })
        .map_err(|e| describe(e, context))?;
    if json.is_undefined() {
        return Ok(Value::Null);
    }
    let text = json.to_string(context).map_err(|e| describe(e, context))?;
    serde_json::from_str(&text.to_std_string_escaped()).map_err(|e| WireError {
        name: "DataError".into(),
        message: format!("the task's output is not representable as JSON: {e}"),
        stack: None,
    })
}

fn callable(value: &JsValue, what: &str) -> JsResult<JsObject> {
    value
        .as_object()
        .filter(JsObject::is_callable)
        .ok_or_else(|| not_callable(what))
}

fn callable_or_object(value: &JsValue) -> JsResult<JsObject> {
    value
        .as_object()
        .ok_or_else(|| not_callable("the prelude controller"))
}

fn not_callable(what: &str) -> JsError {
    boa_engine::JsNativeError::typ()
        .with_message(format!("{what} is not callable"))
        .into()
}

/// Turns any thrown value or engine error into the wire's typed error.
pub fn describe(error: JsError, context: &mut Context) -> WireError {
    if let Some(engine) = error.as_engine() {
        return describe_engine(engine);
    }
    if let Some(value) = error.as_opaque().cloned() {
        return describe_thrown(&value, context);
    }
    match error.into_opaque(context) {
        Ok(value) => describe_thrown(&value, context),
        Err(error) => WireError {
            name: "Error".into(),
            message: error.to_string(),
            stack: None,
        },
    }
}

fn describe_engine(error: &EngineError) -> WireError {
    let name = match error {
        EngineError::RuntimeLimit(RuntimeLimitError::Recursion | RuntimeLimitError::StackSize) => {
            "RecursionLimitError"
        }
        EngineError::RuntimeLimit(_) => "RuntimeLimitError",
        _ => "EngineError",
    };
    WireError {
        name: name.into(),
        message: error.to_string(),
        stack: None,
    }
}

fn describe_thrown(value: &JsValue, context: &mut Context) -> WireError {
    let Some(object) = value.as_object() else {
        let message = value
            .to_string(context)
            .map(|s| s.to_std_string_escaped())
            .unwrap_or_else(|_| "a value that cannot be shown".into());
        return WireError {
            name: "Error".into(),
            message: format!("uncaught {message}"),
            stack: None,
        };
    };
    let mut property = |key: &str| -> Option<String> {
        let value = object.get(boa_engine::JsString::from(key), context).ok()?;
        if value.is_null_or_undefined() {
            return None;
        }
        value
            .to_string(context)
            .ok()
            .map(|s| s.to_std_string_escaped())
    };
    WireError {
        name: property("name").unwrap_or_else(|| "Error".into()),
        message: property("message").unwrap_or_default(),
        stack: property("stack").filter(|s| !s.is_empty()),
    }
}
