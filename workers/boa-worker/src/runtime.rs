//! One run of a task in a fresh Boa realm.
//!
//! Every run gets a new `Context`: nothing a task does to globals or prototypes can reach
//! the next run. Building one (every intrinsic, then [`globals::install`]) costs about a
//! quarter of a millisecond, so the worker builds the next run's realm as a [`FreshRealm`]
//! after it has answered the previous run, while the kernel records and replies; the run
//! itself only evaluates the task's code, resolves and calls its entry point, and drives a
//! returned promise to completion with a small event loop over Boa's job queue and the
//! timers, sleeping (not spinning) until the next timer is due.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use boa_engine::builtins::promise::PromiseState;
use boa_engine::error::{EngineError, RuntimeLimitError};
use boa_engine::module::{Module, ModuleLoader, ModuleRequest, Referrer};
use boa_engine::object::JsObject;
use boa_engine::{Context, JsError, JsNativeError, JsResult, JsValue, Source, js_string};

use crate::globals::{self, Installed, NextTimer, Serialize};
use serde_json::Value;
use worker_protocol::{JsError as WireError, RunContext, RunMode, RunOutcome};

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

/// A realm no task has touched yet: Boa's intrinsics and the documented globals.
pub struct FreshRealm {
    context: Context,
    installed: Installed,
}

impl FreshRealm {
    pub fn build() -> Result<FreshRealm, WireError> {
        let mut context =
            Context::builder().module_loader(Rc::new(NoModules)).build().map_err(|error| WireError {
                name: "EngineError".into(),
                message: format!("cannot build a realm: {error}"),
                stack: None,
            })?;
        context.runtime_limits_mut().set_recursion_limit(RECURSION_LIMIT);
        match globals::install(&mut context) {
            Ok(installed) => Ok(FreshRealm { context, installed }),
            Err(error) => Err(describe(error, &mut context)),
        }
    }
}

/// Refuses every `import()`. A task is its `main.js` alone, and Boa's default loader would
/// read and run any module file under the worker's working directory (all of the filesystem
/// when that is `/`).
struct NoModules;

impl ModuleLoader for NoModules {
    fn load_imported_module(
        self: Rc<Self>,
        _referrer: Referrer,
        request: ModuleRequest,
        _context: &RefCell<&mut Context>,
    ) -> impl Future<Output = JsResult<Module>> {
        let message = format!(
            "import() is not available to tasks: `{}` was not loaded; a task is its main.js alone, \
             so bundle what it needs into that file",
            request.specifier().to_std_string_escaped()
        );
        std::future::ready(Err(JsNativeError::typ().with_message(message).into()))
    }
}

/// Runs `run` in `realm`, which is used up: the caller drops it (see [`retire`]).
pub fn execute(run: &Run<'_>, realm: &mut FreshRealm) -> RunOutcome {
    let outcome = match execute_in(run, &mut realm.context, &realm.installed) {
        Ok(output) => RunOutcome::Success { output },
        Err(error) => RunOutcome::Error { error },
    };
    // Pending timers hold objects of this realm; drop them with it.
    globals::reset();
    outcome
}

/// Drops a used realm and collects its garbage now, between runs, rather than during the
/// next run's allocations.
pub fn retire(realm: FreshRealm) {
    drop(realm);
    boa_engine::gc::force_collect();
}

fn execute_in(run: &Run<'_>, context: &mut Context, installed: &Installed) -> Result<Value, WireError> {
    let entry = resolve_entry(run.code, context)?;
    if run.mode == RunMode::Check {
        return Ok(Value::Null);
    }
    let result = call_entry(&entry, run, context).map_err(|e| describe(e, context))?;
    let settled = settle(result, context).map_err(|e| describe(e, context))?;
    to_output(&settled, installed, context)
}

/// Evaluates `main.js` and finds the function to call.
fn resolve_entry(code: &str, context: &mut Context) -> Result<JsObject, WireError> {
    let source = Source::from_bytes(code).with_path(std::path::Path::new("main.js"));
    let completion = context.eval(source).map_err(|e| locate_syntax_error(describe(e, context), code))?;
    if let Some(function) = completion.as_object().filter(JsObject::is_callable) {
        return Ok(function);
    }
    let main = context.global_object().get(js_string!("main"), context).map_err(|e| describe(e, context))?;
    main.as_object().filter(JsObject::is_callable).ok_or_else(|| WireError {
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
        "secrets": run.context.secrets,
    });
    let task_context = JsValue::from_json(&task_context, context)?;
    entry.call(&JsValue::undefined(), &[input, task_context], context)
}

/// Drives promise jobs and timers until `value` (a promise or a plain value) settles.
fn settle(value: JsValue, context: &mut Context) -> JsResult<JsValue> {
    let Some(promise) = value.as_promise() else {
        return Ok(value);
    };
    loop {
        context.run_jobs()?;
        match promise.state() {
            PromiseState::Fulfilled(output) => return Ok(output),
            PromiseState::Rejected(reason) => return Err(JsError::from_opaque(reason)),
            PromiseState::Pending => {}
        }
        match globals::run_due_timer(context)? {
            NextTimer::Fired => {}
            NextTimer::Wait(wait) => std::thread::sleep(wait.min(MAX_TIMER_SLEEP)),
            NextTimer::None => {
                return Err(boa_engine::JsNativeError::error()
                    .with_message(
                        "the promise returned by the task never settles: no timer or request is pending",
                    )
                    .into());
            }
        }
    }
}

/// Converts the result with JSON semantics (`toJSON`, dropped functions and `undefined`),
/// through the realm's original `JSON.stringify` and a depth check.
fn to_output(value: &JsValue, installed: &Installed, context: &mut Context) -> Result<Value, WireError> {
    let data_error = |message: String| WireError { name: "DataError".into(), message, stack: None };
    let json = match installed.serialize(value, context) {
        Ok(Some(json)) => json,
        Ok(None) => return Ok(Value::Null),
        Err(Serialize::TooDeep) => {
            return Err(data_error(format!(
                "the task's output nests deeper than {} levels",
                worker_protocol::MAX_VALUE_DEPTH
            )));
        }
        Err(Serialize::Thrown(error)) => return Err(describe(error, context)),
    };
    serde_json::from_str(&json)
        .map_err(|e| data_error(format!("the task's output is not representable as JSON: {e}")))
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
        Err(error) => WireError { name: "Error".into(), message: error.to_string(), stack: None },
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
    WireError { name: name.into(), message: error.to_string(), stack: None }
}

fn describe_thrown(value: &JsValue, context: &mut Context) -> WireError {
    let Some(object) = value.as_object() else {
        let message = value
            .to_string(context)
            .map(|s| s.to_std_string_escaped())
            .unwrap_or_else(|_| "a value that cannot be shown".into());
        return WireError { name: "Error".into(), message: format!("uncaught {message}"), stack: None };
    };
    let mut property = |key: &str| -> Option<String> {
        let value = object.get(boa_engine::JsString::from(key), context).ok()?;
        if value.is_null_or_undefined() {
            return None;
        }
        value.to_string(context).ok().map(|s| s.to_std_string_escaped())
    };
    WireError {
        name: property("name").unwrap_or_else(|| "Error".into()),
        message: property("message").unwrap_or_default(),
        stack: property("stack").filter(|s| !s.is_empty()),
    }
}
