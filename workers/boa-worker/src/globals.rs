//! The globals every task sees, installed natively into each fresh realm.
//!
//! Boa parses JavaScript at roughly 6 MB/s, so a 5 KB JS prelude cost ~0.8 ms on every run;
//! building the globals from Rust costs a few microseconds.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use boa_engine::object::{ConstructorBuilder, JsObject, ObjectInitializer};
use boa_engine::property::Attribute;
use boa_engine::{Context, JsNativeError, JsResult, JsString, JsValue, NativeFunction, js_string};
use worker_protocol::{LogLevel, MAX_VALUE_DEPTH, TYPED_ERROR_CLASSES};

/// Objects of the current run that Rust keeps: pending timers and the typed error classes.
/// Cleared before the run's `Context` is dropped.
#[derive(Default)]
struct RunState {
    timers: BTreeMap<u32, Timer>,
    next_timer_id: u32,
    /// The realm's own error classes, by name, whatever the task does to the globals.
    error_classes: Vec<(&'static str, JsObject)>,
    /// The replacer that bounds [`serialize`]'s depth ([`depth_guard`]).
    depth_guard: Option<JsObject>,
}

/// What [`depth_guard`] knows of the serialisation in progress: the depth of each object seen
/// (holders and values), and whether it stopped one for nesting too deep.
#[derive(Default)]
struct Nesting {
    depths: HashMap<JsObject, usize>,
    too_deep: bool,
}

struct Timer {
    due: Instant,
    callback: JsObject,
    args: Vec<JsValue>,
}

thread_local! {
    static STATE: RefCell<RunState> = RefCell::new(RunState::default());
    static NESTING: RefCell<Nesting> = RefCell::new(Nesting::default());
}

/// What the worker keeps of the fresh realm's own built-ins, before task code can touch them.
pub struct Installed {
    stringify: JsObject,
}

/// Installs the globals into `context`'s fresh realm.
pub fn install(context: &mut Context) -> JsResult<Installed> {
    reset();
    let stringify = original_stringify(context)?;
    for name in TYPED_ERROR_CLASSES {
        define_error_class(name, context)?;
    }
    install_console(context, &stringify)?;
    let guard = boa_engine::object::FunctionObjectBuilder::new(
        context.realm(),
        NativeFunction::from_fn_ptr(depth_guard),
    )
    .name(js_string!("depthGuard"))
    .length(2)
    .build();
    STATE.with(|state| state.borrow_mut().depth_guard = Some(guard.into()));
    let hidden = Attribute::WRITABLE | Attribute::CONFIGURABLE;
    let fetch = NativeFunction::from_copy_closure_with_captures(
        |_this, args, stringify: &JsObject, context| crate::fetch::fetch(args, stringify, context),
        stringify.clone(),
    );
    let functions: [(&str, usize, NativeFunction); 3] = [
        ("setTimeout", 2, NativeFunction::from_fn_ptr(set_timeout)),
        ("clearTimeout", 1, NativeFunction::from_fn_ptr(clear_timeout)),
        ("fetch", 2, fetch),
    ];
    for (name, length, function) in functions {
        let function = boa_engine::object::FunctionObjectBuilder::new(context.realm(), function)
            .name(js_string!(name))
            .length(length)
            .build();
        context.register_global_property(JsString::from(name), function, hidden)?;
    }
    Ok(Installed { stringify })
}

/// Drops every JS object the worker holds for the run.
pub fn reset() {
    STATE.with(|state| *state.borrow_mut() = RunState::default());
}

fn original_stringify(context: &mut Context) -> JsResult<JsObject> {
    let json = context.global_object().get(js_string!("JSON"), context)?;
    let stringify = json.as_object().map(|json| json.get(js_string!("stringify"), context)).transpose()?;
    stringify
        .and_then(|s| s.as_object())
        .ok_or_else(|| JsNativeError::typ().with_message("JSON.stringify is missing from the realm").into())
}

fn define_error_class(name: &'static str, context: &mut Context) -> JsResult<()> {
    let error = context.intrinsics().constructors().error().clone();
    let mut builder = ConstructorBuilder::new(context, NativeFunction::from_fn_ptr(construct_typed_error));
    builder.name(name).length(1).inherit(error.prototype()).custom_prototype(error.constructor()).property(
        js_string!("name"),
        JsString::from(name),
        Attribute::WRITABLE | Attribute::CONFIGURABLE,
    );
    let class = builder.build().constructor();
    STATE.with(|state| state.borrow_mut().error_classes.push((name, class.clone())));
    context.register_global_property(
        JsString::from(name),
        class,
        Attribute::WRITABLE | Attribute::CONFIGURABLE,
    )
}

/// A new instance of the typed error class `name` (or of `Error` for an unknown name).
pub fn typed_error(name: &str, message: &str, context: &mut Context) -> JsResult<boa_engine::JsError> {
    let class = STATE.with(|state| {
        let state = state.borrow();
        state.error_classes.iter().find(|(n, _)| *n == name).map(|(_, c)| c.clone())
    });
    let class = class.unwrap_or_else(|| context.intrinsics().constructors().error().constructor());
    let error = class.construct(&[JsString::from(message).into()], None, context)?;
    Ok(boa_engine::JsError::from_opaque(error.into()))
}

/// `new DataError(message, options)`: an `Error` whose prototype is `new.target.prototype`,
/// so subclasses and `instanceof` behave as for `class DataError extends Error {}`.
fn construct_typed_error(new_target: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let Some(new_target) = new_target.as_object().filter(JsObject::is_constructor) else {
        return Err(JsNativeError::typ().with_message("error classes must be called with `new`").into());
    };
    let error = context.intrinsics().constructors().error().constructor();
    Ok(error.construct(args, Some(&new_target), context)?.into())
}

fn install_console(context: &mut Context, stringify: &JsObject) -> JsResult<()> {
    let levels = [
        ("log", LogLevel::Info),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
        ("warn", LogLevel::Warn),
        ("error", LogLevel::Error),
    ];
    let mut console = ObjectInitializer::new(context);
    for (name, level) in levels {
        let method = NativeFunction::from_copy_closure_with_captures(
            move |_this, args, stringify: &JsObject, context| {
                let message = args.iter().map(|a| show(a, stringify, context)).collect::<Vec<_>>().join(" ");
                crate::host::log(level, message);
                Ok(JsValue::undefined())
            },
            stringify.clone(),
        );
        console.function(method, JsString::from(name), 0);
    }
    let console = console.build();
    context.register_global_property(
        js_string!("console"),
        console,
        Attribute::WRITABLE | Attribute::CONFIGURABLE,
    )
}

/// How `console.*` shows one argument: strings as they are, errors as `Name: message`,
/// the rest as JSON where possible.
fn show(value: &JsValue, stringify: &JsObject, context: &mut Context) -> String {
    if let Some(text) = value.as_string() {
        return text.to_std_string_escaped();
    }
    if let Some(error) = error_summary(value, context) {
        return error;
    }
    match serialize(value, stringify, context) {
        Ok(Some(json)) => json,
        Ok(None) => plain(value, context),
        Err(Serialize::TooDeep) => format!("[object nested deeper than {MAX_VALUE_DEPTH} levels]"),
        Err(Serialize::Thrown(_)) => plain(value, context),
    }
}

fn plain(value: &JsValue, context: &mut Context) -> String {
    value
        .to_string(context)
        .map_or_else(|_| "[value that cannot be shown]".into(), |s| s.to_std_string_escaped())
}

fn error_summary(value: &JsValue, context: &mut Context) -> Option<String> {
    let error_class: JsValue = context.intrinsics().constructors().error().constructor().into();
    if !value.instance_of(&error_class, context).unwrap_or(false) {
        return None;
    }
    let object = value.as_object()?;
    let mut field = |key: JsString| object.get(key, context).ok().map(|v| plain(&v, context));
    Some(format!("{}: {}", field(js_string!("name"))?, field(js_string!("message"))?))
}

pub enum Serialize {
    TooDeep,
    Thrown(boa_engine::JsError),
}

/// `JSON.stringify(value)` with the realm's original function, refusing values nested deeper
/// than the protocol carries. The depth is checked during serialisation, on the values
/// `toJSON` and getters give (Boa's stringify recurses natively: a deep enough value overflows
/// the worker's stack), by a replacer that stops the walk at [`MAX_VALUE_DEPTH`].
pub fn serialize(
    value: &JsValue,
    stringify: &JsObject,
    context: &mut Context,
) -> Result<Option<String>, Serialize> {
    let guard = STATE.with(|state| state.borrow().depth_guard.clone());
    let guard = guard.map_or(JsValue::undefined(), JsValue::from);
    // A `toJSON` may log, and so serialise, while a serialisation is in progress.
    let outer = NESTING.with(|nesting| nesting.replace(Nesting::default()));
    let json = stringify.call(&JsValue::undefined(), &[value.clone(), guard], context);
    let inner = NESTING.with(|nesting| nesting.replace(outer));
    if inner.too_deep {
        return Err(Serialize::TooDeep);
    }
    let json = json.map_err(Serialize::Thrown)?;
    Ok(json.as_string().map(|s| s.to_std_string_escaped()))
}

impl Installed {
    pub fn serialize(&self, value: &JsValue, context: &mut Context) -> Result<Option<String>, Serialize> {
        serialize(value, &self.stringify, context)
    }
}

/// `JSON.stringify`'s replacer in [`serialize`]: called with the holder as `this` for every
/// value after `toJSON`; an object one level below its holder past [`MAX_VALUE_DEPTH`] stops the
/// serialisation.
fn depth_guard(this: &JsValue, args: &[JsValue], _context: &mut Context) -> JsResult<JsValue> {
    let value = args.get(1).cloned().unwrap_or_default();
    let Some(object) = value.as_object() else {
        return Ok(value);
    };
    let too_deep = NESTING.with(|nesting| {
        let mut nesting = nesting.borrow_mut();
        let holder = this.as_object().and_then(|holder| nesting.depths.get(&holder).copied()).unwrap_or(0);
        let depth = holder + 1;
        nesting.too_deep |= depth > MAX_VALUE_DEPTH;
        if !nesting.too_deep {
            nesting.depths.insert(object.clone(), depth);
        }
        nesting.too_deep
    });
    if too_deep {
        return Err(JsNativeError::range()
            .with_message(format!("the value nests deeper than {MAX_VALUE_DEPTH} levels"))
            .into());
    }
    Ok(value)
}

fn set_timeout(_this: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let Some(callback) = args.first().and_then(JsValue::as_object).filter(JsObject::is_callable) else {
        return Err(JsNativeError::typ()
            .with_message("setTimeout expects a function as its first argument")
            .into());
    };
    let delay = match args.get(1) {
        Some(delay) => delay.to_number(context)?,
        None => 0.0,
    };
    let delay = timer_delay(delay);
    let rest = args.get(2..).unwrap_or_default().to_vec();
    let now = Instant::now();
    let due = now.checked_add(delay).unwrap_or(now);
    let id = STATE.with(|state| {
        let mut state = state.borrow_mut();
        state.next_timer_id += 1;
        let id = state.next_timer_id;
        state.timers.insert(id, Timer { due, callback, args: rest });
        id
    });
    Ok(JsValue::from(id))
}

/// The longest delay a timer takes, in milliseconds: the largest 32-bit signed integer, as in
/// browsers and Node.
const MAX_TIMER_DELAY_MS: f64 = i32::MAX as f64;

/// A `setTimeout` delay as browsers read it: negative, not a number, or too large for a 32-bit
/// signed integer of milliseconds fires at once.
fn timer_delay(delay_ms: f64) -> Duration {
    if delay_ms.is_finite() && delay_ms > 0.0 && delay_ms <= MAX_TIMER_DELAY_MS {
        Duration::from_millis(delay_ms as u64)
    } else {
        Duration::ZERO
    }
}

fn clear_timeout(_this: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    if let Some(id) = args.first() {
        let id = id.to_number(context)?;
        if id.is_finite() && id >= 0.0 && id <= f64::from(u32::MAX) {
            STATE.with(|state| state.borrow_mut().timers.remove(&(id as u32)));
        }
    }
    Ok(JsValue::undefined())
}

/// What the event loop should do about timers.
pub enum NextTimer {
    /// No timer is pending.
    None,
    /// The earliest timer is due in this long.
    Wait(Duration),
    /// A due timer ran.
    Fired,
}

/// Runs the earliest timer if it is due.
pub fn run_due_timer(context: &mut Context) -> JsResult<NextTimer> {
    let now = Instant::now();
    let due = STATE.with(|state| {
        let mut state = state.borrow_mut();
        let (&id, timer) = state.timers.iter().min_by_key(|(id, timer)| (timer.due, **id))?;
        if timer.due > now {
            return Some(Err(timer.due - now));
        }
        state.timers.remove(&id).map(Ok)
    });
    match due {
        None => Ok(NextTimer::None),
        Some(Err(wait)) => Ok(NextTimer::Wait(wait)),
        Some(Ok(timer)) => {
            timer.callback.call(&JsValue::undefined(), &timer.args, context)?;
            Ok(NextTimer::Fired)
        }
    }
}
