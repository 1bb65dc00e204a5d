//! `fetch`, natively. Both styles of the task contract work on the one returned object:
//!
//! - the original Ratchet's synchronous style: `fetch(url, {method, headers}, body)` returns
//!   `{ok, status, statusText, headers, body}` with a JSON body already parsed (text otherwise);
//! - the web style: `await fetch(url, init)` and `fetch(url).then(r => r.json())`, with
//!   `ok`, `status`, `headers.get()`, `json()` and `text()`.
//!
//! The response is a thenable whose `then` settles to a copy without `then` (else `await`
//! would unwrap it forever). Non-2xx answers are responses; failures throw the typed error
//! the kernel names (`NetworkError`, `TimeoutError`).

use boa_engine::object::builtins::JsPromise;
use boa_engine::object::{JsObject, ObjectInitializer};
use boa_engine::property::{Attribute, PropertyKey};
use boa_engine::{Context, JsNativeError, JsResult, JsString, JsValue, NativeFunction, js_string};
use worker_protocol::FetchOutcome;

/// `fetch(url, init, body)`. `stringify` is the realm's original `JSON.stringify`.
pub fn fetch(args: &[JsValue], stringify: &JsObject, context: &mut Context) -> JsResult<JsValue> {
    let url = text(args.first(), context)?;
    let init = args.get(1).and_then(JsValue::as_object);
    let method = match &init {
        Some(init) => match init.get(js_string!("method"), context)? {
            value if value.is_null_or_undefined() => "GET".to_owned(),
            value => text(Some(&value), context)?.to_ascii_uppercase(),
        },
        None => "GET".to_owned(),
    };
    let headers = match &init {
        Some(init) => header_pairs(&init.get(js_string!("headers"), context)?, context)?,
        None => Vec::new(),
    };
    let body = match args.get(2).filter(|b| !b.is_undefined()) {
        Some(body) => body.clone(),
        None => match &init {
            Some(init) => init.get(js_string!("body"), context)?,
            None => JsValue::undefined(),
        },
    };
    let body = request_body(&body, stringify, context)?;
    match crate::host::request(method, url.clone(), headers, body) {
        FetchOutcome::Response { status, status_text, headers, body } => {
            let reply = Reply { url, status, status_text, headers, body };
            let plain = reply.build(context)?;
            let response = reply.build(context)?;
            let then = NativeFunction::from_copy_closure_with_captures(settle_to, plain);
            let then = boa_engine::object::FunctionObjectBuilder::new(context.realm(), then)
                .name(js_string!("then"))
                .length(2)
                .build();
            response.define_property_or_throw(js_string!("then"), hidden(then.into()), context)?;
            Ok(response.into())
        }
        FetchOutcome::Failed { error } => {
            Err(crate::globals::typed_error(&error.name, &error.message, context)?)
        }
    }
}

struct Reply {
    url: String,
    status: u16,
    status_text: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn build(&self, context: &mut Context) -> JsResult<JsObject> {
        let headers = self.headers_object(context)?;
        let body = JsString::from(self.body.as_str());
        let parsed = match serde_json::from_str::<serde_json::Value>(&self.body) {
            Ok(json) => JsValue::from_json(&json, context)?,
            Err(_) => body.clone().into(),
        };
        let text = NativeFunction::from_copy_closure_with_captures(
            |_, _, body: &JsString, context| Ok(JsPromise::resolve(body.clone(), context)?.into()),
            body.clone(),
        );
        let json = NativeFunction::from_copy_closure_with_captures(parse_json, body);
        let ok = (200..300).contains(&self.status);
        let object = ObjectInitializer::new(context)
            .property(js_string!("ok"), ok, Attribute::all())
            .property(js_string!("status"), self.status, Attribute::all())
            .property(js_string!("statusText"), JsString::from(self.status_text.as_str()), Attribute::all())
            .property(js_string!("url"), JsString::from(self.url.as_str()), Attribute::all())
            .property(js_string!("headers"), headers, Attribute::all())
            .property(js_string!("body"), parsed, Attribute::all())
            .function(text, js_string!("text"), 0)
            .function(json, js_string!("json"), 0)
            .build();
        for method in ["text", "json"] {
            let function = object.get(JsString::from(method), context)?;
            object.define_property_or_throw(JsString::from(method), hidden(function), context)?;
        }
        Ok(object)
    }

    /// Header names in lower case as properties, plus a case-insensitive `get(name)`.
    fn headers_object(&self, context: &mut Context) -> JsResult<JsObject> {
        let mut headers = ObjectInitializer::new(context);
        for (name, value) in &self.headers {
            headers.property(
                JsString::from(name.to_ascii_lowercase().as_str()),
                JsString::from(value.as_str()),
                Attribute::all(),
            );
        }
        let headers = headers.build();
        let get = boa_engine::object::FunctionObjectBuilder::new(
            context.realm(),
            NativeFunction::from_fn_ptr(header_get),
        )
        .name(js_string!("get"))
        .length(1)
        .build();
        headers.define_property_or_throw(js_string!("get"), hidden(get.into()), context)?;
        Ok(headers)
    }
}

/// Non-enumerable, so `JSON.stringify(response)` and `{...response}` show only the data.
fn hidden(value: JsValue) -> boa_engine::property::PropertyDescriptor {
    boa_engine::property::PropertyDescriptor::builder()
        .value(value)
        .writable(true)
        .enumerable(false)
        .configurable(true)
        .build()
}

/// `headers.get(name)`: the value, or `null`.
fn header_get(this: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let Some(headers) = this.as_object() else {
        return Ok(JsValue::null());
    };
    let name = text(args.first(), context)?.to_ascii_lowercase();
    let value = headers.get(JsString::from(name.as_str()), context)?;
    Ok(if value.is_undefined() { JsValue::null() } else { value })
}

/// `response.json()`: a promise of the parsed body, rejected with a `SyntaxError` if it is not JSON.
fn parse_json(
    _this: &JsValue,
    _args: &[JsValue],
    body: &JsString,
    context: &mut Context,
) -> JsResult<JsValue> {
    let promise = match serde_json::from_str::<serde_json::Value>(&body.to_std_string_escaped()) {
        Ok(json) => JsPromise::resolve(JsValue::from_json(&json, context)?, context)?,
        Err(error) => {
            let error =
                JsNativeError::syntax().with_message(format!("the response body is not JSON: {error}"));
            JsPromise::reject(error, context)?
        }
    };
    Ok(promise.into())
}

/// `response.then(onFulfilled, onRejected)`: settles with the copy of the response that has no `then`.
fn settle_to(
    _this: &JsValue,
    args: &[JsValue],
    plain: &JsObject,
    context: &mut Context,
) -> JsResult<JsValue> {
    let promise: JsObject = JsPromise::resolve(plain.clone(), context)?.into();
    let then = promise.get(js_string!("then"), context)?;
    let then = then.as_object().filter(JsObject::is_callable).ok_or_else(|| {
        JsNativeError::typ().with_message("Promise.prototype.then is not callable in this realm")
    })?;
    then.call(&promise.into(), args, context)
}

fn text(value: Option<&JsValue>, context: &mut Context) -> JsResult<String> {
    match value {
        Some(value) => Ok(value.to_string(context)?.to_std_string_escaped()),
        None => Ok("undefined".to_owned()),
    }
}

fn header_pairs(headers: &JsValue, context: &mut Context) -> JsResult<Vec<(String, String)>> {
    let Some(headers) = headers.as_object() else {
        return Ok(Vec::new());
    };
    let mut pairs = Vec::new();
    for key in headers.own_property_keys(context)? {
        let name = match &key {
            PropertyKey::String(name) => name.to_std_string_escaped(),
            PropertyKey::Index(index) => index.get().to_string(),
            PropertyKey::Symbol(_) => continue,
        };
        let value = headers.get(key, context)?;
        pairs.push((name, text(Some(&value), context)?));
    }
    Ok(pairs)
}

fn request_body(body: &JsValue, stringify: &JsObject, context: &mut Context) -> JsResult<Option<String>> {
    if body.is_null_or_undefined() {
        return Ok(None);
    }
    if let Some(text) = body.as_string() {
        return Ok(Some(text.to_std_string_escaped()));
    }
    match crate::globals::serialize(body, stringify, context) {
        Ok(json) => Ok(json),
        Err(crate::globals::Serialize::Thrown(error)) => Err(error),
        Err(crate::globals::Serialize::TooDeep) => Err(JsNativeError::typ()
            .with_message(format!(
                "fetch: the request body nests deeper than {} levels",
                worker_protocol::MAX_VALUE_DEPTH
            ))
            .into()),
    }
}
