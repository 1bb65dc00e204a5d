//! The extractors of the surfaces: a JSON object body, and the request's trace.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use ratchet_core::trace::TraceContext;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::ApiError;

/// A request body that must be a JSON object, read as `T`; failures in the API's one error
/// shape (400 malformed, 413 too large, 415 not JSON, 422 wrong shape, fields or types).
///
/// Serde also reads a struct from an array of its fields in order, so `[{}]` would pass as
/// `{"input": {}}`; every body of the API is an object, and anything else is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonObject<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonObject<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<Value>::from_request(request, state).await?;
        if !value.is_object() {
            return Err(ApiError::invalid(format!(
                "the request body must be a JSON object, not {}",
                json_type(&value)
            )));
        }
        serde_path_to_error::deserialize(value).map(JsonObject).map_err(|error| {
            ApiError::invalid(format!("Failed to deserialize the JSON body into the target type: {error}"))
        })
    }
}

/// The trace a request belongs to: the caller's `traceparent` when it is valid, else a new
/// trace (set by the server's envelope on every request).
#[derive(Debug, Clone)]
pub struct Trace(pub TraceContext);

impl Trace {
    /// The trace of a request with these `parts` (for surfaces that read them whole).
    pub fn of(parts: &Parts) -> TraceContext {
        parts.extensions.get::<TraceContext>().cloned().unwrap_or_else(TraceContext::root)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Trace {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Trace(Trace::of(parts)))
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
