//! The one error shape of every failed request: `{"error": {code, message, details, request_id}}`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use ratchet_service::ServiceError;
use ratchet_service::secrets::SecretError;
use ratchet_storage::QueueError;

tokio::task_local! {
    /// The id of the request being answered, set by the request-id middleware.
    pub static REQUEST_ID: String;
}

/// The request id of the request this task answers, or empty outside a request.
pub fn request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    /// Seconds to wait before retrying (429 and 503).
    pub retry_after: Option<u64>,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `not_found`, `invalid_input`, `rate_limited`...
    pub code: String,
    /// What went wrong and how to fix it, for people.
    pub message: String,
    /// Structured specifics (schema violations, limits), or null.
    #[schema(value_type = Object, nullable)]
    pub details: Value,
    /// Also in the `x-request-id` header; quote it when reporting a problem.
    pub request_id: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: Value::Null, retry_after: None }
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = code;
        self
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The body is larger than `server.max_body_bytes`.
    pub fn payload_too_large() -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than server.max_body_bytes",
        )
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// The generic error of a bare status (from a layer or the router), for the one shape.
    pub fn from_status(status: StatusCode) -> ApiError {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no such route; the API is under /api/v1 (see /docs)"),
            StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this route does not take that method"),
            StatusCode::PAYLOAD_TOO_LARGE => return ApiError::payload_too_large(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ("unsupported_media_type", "send the body as JSON with `content-type: application/json`")
            }
            StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
            StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests"),
            status if status.is_server_error() => ("internal", "the server failed to answer"),
            _ => ("bad_request", "the request is not valid"),
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                details: self.details,
                request_id: request_id(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> ApiError {
        match error {
            QueueError::NotFound(_) => ApiError::not_found(error.to_string()),
            QueueError::Final { .. } | QueueError::Conflict(_) | QueueError::Fenced { .. } => {
                ApiError::conflict(error.to_string())
            }
            QueueError::Invalid(message) => ApiError::invalid(message),
            other => {
                tracing::error!("storage failed answering a request: {other}");
                ApiError::unavailable(format!("the database failed: {other}")).retry_after(1)
            }
        }
    }
}

impl From<SecretError> for ApiError {
    fn from(error: SecretError) -> ApiError {
        match error {
            SecretError::NotFound(_) => ApiError::not_found(error.to_string()),
            SecretError::Invalid(message) => ApiError::invalid(message),
            SecretError::KeyMissing => ApiError::conflict(error.to_string()),
            SecretError::Store(error) => error.into(),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> ApiError {
        match error {
            ServiceError::UnknownTask { .. } => ApiError::not_found(error.to_string()),
            ServiceError::InvalidInput { ref violations, .. } => {
                let details = serde_json::json!({"violations": violations.iter().map(|v| serde_json::json!({
                    "pointer": v.pointer, "rule": v.rule, "message": v.message,
                })).collect::<Vec<_>>()});
                ApiError::invalid(error.to_string()).with_details(details)
            }
            ServiceError::InvalidBatch { ref problems, total } => {
                let problems: Vec<_> = problems
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "index": p.index,
                            "message": p.message,
                            "violations": p.violations.iter().map(|v| serde_json::json!({
                                "pointer": v.pointer, "rule": v.rule, "message": v.message,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                let details = serde_json::json!({"problems": problems, "total": total});
                ApiError::invalid(error.to_string()).with_details(details)
            }
            ServiceError::Schedule(_) | ServiceError::Time(_) => ApiError::invalid(error.to_string()),
            ServiceError::Queue(error) => error.into(),
            _ => ApiError::internal(error.to_string()),
        }
    }
}

/// A JSON body that fails in the one shape: 400 malformed, 413 too large, 415 not JSON,
/// 422 the wrong fields or types.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let status = rejection.status();
        let text = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) => ApiError::invalid(text),
            JsonRejection::JsonSyntaxError(_) => ApiError::bad_request(text),
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            }
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
            _ => ApiError::new(status, "bad_request", text),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::bad_request(rejection.body_text())
    }
}
